//! The light client's side of the service model (design §7; research §5 and §7): paying
//! servers for priority capacity over `lespay/1`.
//!
//! - [`policy`]: the pay-as-you-go policy, pure logic with the time passed in: which
//!   servers to pay (best free service first), when and how much, within the budget.
//! - [`channel`]: the [`channel::Payer`] interface and the payment-channel payer, whose
//!   cheque state goes to the store before a cheque is sent; cheques are signed by a session
//!   key per channel, stored before the channel is opened.
//! - [`open`]: opening a channel through a [`open::ChannelOpener`]: a funded key that signs
//!   the `open` transaction locally, or an EIP-1193 wallet (`web::wallet`) that sends it.
//! - [`service`]: what the client knows of each server's service (price list, balance,
//!   capacity) and its lespay requests in flight.
//!
//! The messages and cheques themselves are `les::pay::{messages, cheque}`, shared with lesd.
//! The client core (`client`) routes lespay messages here and runs the policy.

pub mod channel;
pub mod open;
pub mod policy;
pub mod service;

use crate::store::StoreError;
use alloy_primitives::U256;
use les::pay::messages::LespayError;

/// Why a payment (or channel opening) could not be made. Nothing is sent after an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayError {
    /// No channel to this server is open.
    #[error("no payment channel to this server")]
    NoChannel,
    /// The server's price list names no channel terms.
    #[error("the server's price list offers no payment channel")]
    NoChannelTerms,
    /// The server's channel terms (chain, contract, payee) differ from our channel's.
    #[error("the server's channel terms changed since the channel was opened")]
    TermsChanged,
    /// The exchange rate is zero or undefined.
    #[error("the server's exchange rate is zero")]
    Rate,
    /// The cheque would pass the deposit.
    #[error("cumulative {cumulative} wei would pass the deposit of {deposit} wei")]
    DepositExhausted {
        /// The deposit.
        deposit: U256,
        /// The cumulative amount wanted.
        cumulative: U256,
    },
    /// The amount asked for is zero and no cheque is pending.
    #[error("nothing to pay")]
    NothingToPay,
    /// A cheque is pending (signed, not acknowledged).
    #[error("a cheque to this server is still unacknowledged")]
    Pending,
    /// The server acknowledged more than we signed.
    #[error("the server acknowledged {accepted} wei, more than the {signed} wei signed")]
    AcceptedAboveSigned {
        /// What it said it accepted.
        accepted: U256,
        /// What we signed.
        signed: U256,
    },
    /// The receipt did not decode.
    #[error("payment receipt: {0}")]
    Receipt(#[from] LespayError),
    /// The store refused the write: the cheque was not sent.
    #[error("payment state not stored: {0}")]
    Store(#[from] StoreError),
    /// The state could not be encoded.
    #[error("payment state encoding: {0}")]
    Encoding(String),
    /// The session key could not be made (no randomness).
    #[error("signer: {0}")]
    Signer(String),
    /// The wallet refused (code 4001: its user did) or failed a request.
    #[error("wallet {method}: {message}{}", code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    Wallet {
        /// The EIP-1193 method asked.
        method: &'static str,
        /// The error's code, if it had one.
        code: Option<i64>,
        /// What it said.
        message: String,
    },
    /// The wallet is on another chain than the client: it would fund a channel there.
    #[error("the wallet is on chain {wallet}, the client on {ours}")]
    WalletChain {
        /// The wallet's `eth_chainId` answer.
        wallet: String,
        /// Our chain ID.
        ours: u64,
    },
    /// Opening the channel failed on chain or on the way there.
    #[error("opening the channel: {0}")]
    Open(String),
}

/// EIP-1193 "user rejected the request".
pub const USER_REJECTED: i64 = 4001;

impl PayError {
    /// Whether a failed submission certainly sent nothing: a refusal (the wallet's user said
    /// no, the wallet is on another chain) or a failure before any transaction was made. Any
    /// other wallet failure may come after the wallet sent it, so what was stored for it stays.
    pub fn nothing_sent(&self) -> bool {
        match self {
            PayError::Wallet { method, code, .. } => {
                *method != "eth_sendTransaction" || *code == Some(USER_REJECTED)
            }
            PayError::WalletChain { .. } | PayError::Signer(_) => true,
            _ => false,
        }
    }
}

/// Polls once: for tests whose futures (memory store, local signer) are ready at once.
#[cfg(test)]
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("a future did not complete at once"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_certain_refusals_count_as_nothing_sent() {
        let wallet = |method, code| PayError::Wallet { method, code, message: "x".into() };
        assert!(wallet("eth_sendTransaction", Some(USER_REJECTED)).nothing_sent());
        assert!(wallet("eth_requestAccounts", Some(-32603)).nothing_sent());
        assert!(!wallet("eth_sendTransaction", Some(-32603)).nothing_sent());
        assert!(!wallet("eth_sendTransaction", None).nothing_sent());
        assert!(PayError::WalletChain { wallet: "0x1".into(), ours: 5 }.nothing_sent());
        assert!(!PayError::Open("reverted".into()).nothing_sent());
    }
}
