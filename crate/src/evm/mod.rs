//! Local EVM execution for `eth_call`, `eth_estimateGas` and `eth_createAccessList`: revm
//! runs inside the client over state fetched lazily through [`Chain::account`] and
//! [`Chain::code`], so every value the EVM reads is proven against the block's state root
//! (or checked against its code hash) before it is used.
//!
//! [`Chain::account`]: crate::chain::Chain::account
//! [`Chain::code`]: crate::chain::Chain::code
//!
//! revm's [`revm::Database`] is synchronous and the proofs come over the network, so a call
//! is *re-executed*: each run reads from a per-block cache through [`db::CallDb`], which
//! answers what it lacks with a placeholder (an absent account, a zero slot, empty code) and
//! records it. A run that recorded anything is thrown away; everything it lacked is fetched
//! in one batch (accounts concurrently, all slots of one account in one proof request) and
//! the call runs again, until a run completes with nothing missing — only that run's result
//! is answered. Placeholders let one run discover several missing items where stopping at the
//! first would cost a round trip each. The rounds are bounded ([`MAX_ROUNDS`]).
//!
//! - [`spec`]: the revm spec and block environment from a verified header.
//! - [`db`]: the caches and the recording database.
//! - [`exec`]: the executor: runs, geth's gas estimation, the access-list inspector.

pub mod db;
pub mod exec;
pub mod spec;

pub use exec::{AccessListResult, CallOutcome, CallRequest, Evm};

use crate::chain::ClientError;
use alloy_primitives::{Address, B256, Bytes, U256};
use std::collections::BTreeMap;

/// How many fetch rounds one execution may take before it is given up (-32005): each round
/// follows at least one new storage or account read, so this bounds the round trips of a
/// call whose reads depend on reads (a linked list walked in storage, say).
pub const MAX_ROUNDS: u32 = 64;

/// Why a call produced no result (a revert or halt is a result: [`CallOutcome`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvmError {
    /// The state could not be had verified.
    #[error(transparent)]
    Chain(#[from] ClientError),
    /// The transaction is invalid in this state (geth: a -32000 "invalid input"): nonce,
    /// funds, fee caps, intrinsic gas.
    #[error("{0}")]
    Invalid(String),
    /// `eth_estimateGas`: the call reverts even at the cap (geth answers code 3 with the
    /// revert data).
    #[error("{}", exec::revert_message(.0))]
    Reverted(Bytes),
    /// More than [`MAX_ROUNDS`] fetch rounds.
    #[error("eth_call needed more than {0} rounds of state fetches")]
    TooManyRounds(u32),
    /// `eth_estimateGas`: the call fails for lack of gas even at the cap.
    #[error("gas required exceeds allowance ({0})")]
    GasRequired(u64),
    /// `BLOCKHASH` in a block that is not on the accepted head's chain: the hashes before it
    /// are verified only along the canonical chain.
    #[error("BLOCKHASH is served only in canonical blocks")]
    NonCanonicalBlockHash,
    /// The EVM or the core broke an invariant.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a call may replace in the state it runs on (the third parameter of `eth_call`,
/// geth's `StateOverride`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountOverride {
    /// Replaces the balance.
    pub balance: Option<U256>,
    /// Replaces the nonce.
    pub nonce: Option<u64>,
    /// Replaces the code.
    pub code: Option<Bytes>,
    /// Replaces the whole storage: slots not listed read as zero.
    pub state: Option<BTreeMap<B256, B256>>,
    /// Replaces these slots; the others keep their proven values.
    pub state_diff: Option<BTreeMap<B256, B256>>,
}

/// State overrides by address.
pub type StateOverrides = BTreeMap<Address, AccountOverride>;

/// Counters of the EVM's work, for `ulc_metrics` (`"evm"`) and the benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvmStats {
    /// Requests served (`eth_call`, `eth_estimateGas`, `eth_createAccessList`).
    pub calls: u64,
    /// EVM runs, including the ones thrown away for missing state.
    pub executions: u64,
    /// Fetch rounds (batches of proofs and code).
    pub rounds: u64,
    /// Proof requests (`Chain::account`, one per account per round).
    pub proof_requests: u64,
    /// Code requests (`Chain::code`).
    pub code_requests: u64,
    /// Header requests for `BLOCKHASH`.
    pub header_requests: u64,
}

impl EvmStats {
    /// As the `"evm"` object of `ulc_metrics`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "calls": self.calls,
            "executions": self.executions,
            "rounds": self.rounds,
            "proofRequests": self.proof_requests,
            "codeRequests": self.code_requests,
            "headerRequests": self.header_requests,
        })
    }
}
