//! The payment-receiver interface: a lespay `Pay` proof in, credited tokens and a receipt out
//! (research §7.1, after the draft token sale's `deposit(proof) -> (credited, reply)`), and
//! the registry of receivers lesd offers by name.
//!
//! A receiver credits the pool itself, through [`BalanceSink::update_with`], after its
//! ledger write is durable: when [`PaymentReceiver::receive`] returns `Ok`, the payment is on
//! disk, in the pool, and may be acknowledged. The pool's positive balance is the running
//! value (it is charged between checkpoints), so the ledger stores `balance after = pool's
//! current pos + credit`, read and updated while the sink holds off other changes.

use crate::pay::chain::ChainError;
use crate::pay::channel::Rejection;
use crate::pay::ledger::{Ledger, LedgerError};
use les::crypto::NodeId;
use les::pay::messages::{ErrorCode, LespayError, LespayMessage};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What a receiver answers for an accepted payment (a lespay `PayReply`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Tokens added by this payment (0 for a duplicate).
    pub credited: u64,
    /// The client's positive balance after it.
    pub balance: u64,
    /// The receiver's reply (for "channel": RLP `[accepted_cumulative]`).
    pub reply: Vec<u8>,
}

/// Why a payment was not taken. Every variant leaves balances, channels and the log as they
/// were.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// No receiver of that name is offered.
    #[error("unknown payment receiver {0:?}")]
    UnknownReceiver(String),
    /// The proof does not decode.
    #[error("malformed proof: {0}")]
    BadProof(#[from] LespayError),
    /// The proof decodes but fails verification; the reason names the check.
    #[error("{0}")]
    Rejected(#[from] Rejection),
    /// The chain could not be read, so the proof could not be checked; try again later.
    #[error("cannot read the chain: {0}")]
    ChainUnavailable(#[from] ChainError),
    /// The ledger failed to write.
    #[error("payment ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// A worker task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PaymentError {
    /// The lespay error code (wire.md 0x0b).
    pub fn code(&self) -> ErrorCode {
        match self {
            PaymentError::UnknownReceiver(_) => ErrorCode::UnknownReceiver,
            PaymentError::BadProof(_) => ErrorCode::BadProof,
            PaymentError::Rejected(_) => ErrorCode::Rejected,
            PaymentError::ChainUnavailable(_) => ErrorCode::NotSynced,
            PaymentError::Ledger(_) | PaymentError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The lespay `Error` message answering request `req_id` (reason cut to 256 bytes).
    pub fn to_message(&self, req_id: u64) -> LespayMessage {
        LespayMessage::error(req_id, self.code(), self.to_string())
    }
}

/// The future [`PaymentReceiver::receive`] returns (boxed, so receivers are `dyn`).
pub type ReceiveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Receipt, PaymentError>> + Send + 'a>>;

/// A way of paying for service.
pub trait PaymentReceiver: Send + Sync {
    /// The name clients use in `Pay` and see in `PriceList.receivers`.
    fn name(&self) -> &'static str;

    /// Verifies `proof` from `client` and, if it is good, credits it durably and to the pool
    /// before returning. `now` is the wall clock.
    fn receive<'a>(&'a self, client: NodeId, proof: &'a [u8], now: SystemTime)
    -> ReceiveFuture<'a>;
}

/// The pool's side of a payment. The pool implements it; lesd without a pool uses
/// [`LedgerSink`]. Called from a blocking thread (the ledger write fsyncs).
pub trait BalanceSink: Send + Sync {
    /// The client's current positive balance as the pool sees it.
    fn positive(&self, node: NodeId) -> u64;

    /// Holds off every other change to `node`'s positive balance, calls `update` with its
    /// current value (`update` writes the ledger and returns the new value), and on `Ok(new)`
    /// sets the balance to `new` and returns it. On `Err` nothing changes.
    fn update_with(
        &self,
        node: NodeId,
        update: &mut dyn FnMut(u64) -> Result<u64, PaymentError>,
    ) -> Result<u64, PaymentError>;
}

/// A [`BalanceSink`] over the ledger alone, for a lesd without a client pool (and tests of
/// the money path): the ledger's stored positive balance is the current one.
#[derive(Debug)]
pub struct LedgerSink {
    ledger: Ledger,
    lock: Mutex<()>,
}

impl LedgerSink {
    /// A sink reading balances from `ledger`.
    pub fn new(ledger: Ledger) -> Self {
        Self { ledger, lock: Mutex::new(()) }
    }
}

impl BalanceSink for LedgerSink {
    fn positive(&self, node: NodeId) -> u64 {
        self.ledger.positive(node).unwrap_or_else(|error| {
            tracing::warn!(%error, "ledger read failed");
            0
        })
    }

    fn update_with(
        &self,
        node: NodeId,
        update: &mut dyn FnMut(u64) -> Result<u64, PaymentError>,
    ) -> Result<u64, PaymentError> {
        // A poisoned lock only means another update panicked; the ledger itself is consistent.
        let _guard = self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.ledger.positive(node)?;
        update(current)
    }
}

/// The receivers lesd offers, by name.
#[derive(Clone, Default)]
pub struct Receivers {
    by_name: HashMap<String, Arc<dyn PaymentReceiver>>,
}

impl std::fmt::Debug for Receivers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receivers").field("names", &self.names()).finish()
    }
}

impl Receivers {
    /// No receivers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers `receiver` under its name (replacing one of the same name).
    pub fn insert(&mut self, receiver: Arc<dyn PaymentReceiver>) {
        self.by_name.insert(receiver.name().to_owned(), receiver);
    }

    /// The receiver called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<dyn PaymentReceiver>, PaymentError> {
        self.by_name
            .get(name)
            .cloned()
            .ok_or_else(|| PaymentError::UnknownReceiver(name.to_owned()))
    }

    /// The names offered, sorted (for `PriceList.receivers`).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }

    /// Hands `proof` to the receiver called `name`.
    pub async fn receive(
        &self,
        name: &str,
        client: NodeId,
        proof: &[u8],
        now: SystemTime,
    ) -> Result<Receipt, PaymentError> {
        self.get(name)?.receive(client, proof, now).await
    }
}

/// Runs `update_with` on a blocking thread (the ledger write fsyncs).
pub(crate) async fn update_balance(
    sink: Arc<dyn BalanceSink>,
    node: NodeId,
    mut update: impl FnMut(u64) -> Result<u64, PaymentError> + Send + 'static,
) -> Result<u64, PaymentError> {
    tokio::task::spawn_blocking(move || sink.update_with(node, &mut update))
        .await
        .map_err(|error| PaymentError::Internal(format!("ledger task: {error}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named;
    impl PaymentReceiver for Named {
        fn name(&self) -> &'static str {
            "named"
        }
        fn receive<'a>(&'a self, _: NodeId, proof: &'a [u8], _: SystemTime) -> ReceiveFuture<'a> {
            Box::pin(async move {
                Ok(Receipt { credited: proof.len() as u64, balance: 0, reply: proof.to_vec() })
            })
        }
    }

    #[tokio::test]
    async fn the_registry_dispatches_by_name_and_refuses_unknown_names() {
        let mut receivers = Receivers::new();
        receivers.insert(Arc::new(Named));
        assert_eq!(receivers.names(), vec!["named".to_owned()]);
        let receipt =
            receivers.receive("named", NodeId::ZERO, b"abc", SystemTime::now()).await.unwrap();
        assert_eq!(receipt.credited, 3);
        let error = receivers
            .receive("lottery", NodeId::ZERO, b"abc", SystemTime::now())
            .await
            .unwrap_err();
        assert!(matches!(&error, PaymentError::UnknownReceiver(name) if name == "lottery"));
        assert_eq!(error.code(), ErrorCode::UnknownReceiver);
    }
}
