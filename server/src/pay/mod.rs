//! lesd's paid service: the durable payment ledger, the payment receivers (payment-channel
//! cheques and operator credit), on-chain channel reads and the redemption of cheques.
//!
//! The money path, in order: a lespay `Pay` message reaches a [`receiver::PaymentReceiver`]
//! ([`channel::ChannelReceiver`] for cheques); it verifies the proof (reading the channel
//! through [`chain::ChannelContract`]), commits the credit in one fsynced
//! [`ledger::Ledger`] transaction and only then returns the receipt that is acknowledged.
//! [`redeem::Redeemer`] later turns accepted cheques into on-chain payouts;
//! [`credit::OperatorCredit`] is the admin API's `les_addBalance`.
//! The sans-IO parts (cheque digests, messages, balances, the pool) are in [`les::pay`].
//!
//! [`service::PayService`] drives the pool in the running server (admission, charges,
//! kicks, `lespay/1` requests, balance checkpoints) and [`admin`] is the operator's
//! JSON-RPC endpoint (`--admin`).

pub mod admin;
pub mod chain;
pub mod channel;
pub mod credit;
pub mod ledger;
pub mod receiver;
pub mod redeem;
pub mod service;
