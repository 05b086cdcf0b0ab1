//! The LES service model's sans-IO parts: the `lespay/1` capability's messages, EIP-712
//! payment-channel cheques, service-token balances with exponential expiry, and the server's
//! client pool (capacity, priority, the active set, the capacity auction).
//!
//! The spec is docs/service-model.md; the formulas come from
//! ../shared/research/service-model.md. Both lesd and the light client use these types, so
//! each protocol fact lives here once.

pub mod balance;
pub mod cheque;
pub mod messages;
pub mod pool;
