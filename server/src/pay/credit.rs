//! Operator-granted credit: the admin API's `les_addBalance`, the second way money enters
//! the ledger. Logged like any payment (receiver `"operator"`), fsynced before it returns, and
//! idempotent by the operator's reference, in the spirit of geth v1.9's `meta` argument: a
//! retried call with the same reference changes nothing and returns the first result.
//!
//! Not a [`crate::pay::receiver::PaymentReceiver`]: clients cannot invoke it over lespay.

use crate::pay::ledger::{Ledger, LedgerError, unix_ms};
use crate::pay::receiver::{BalanceSink, PaymentError, update_balance};
use les::crypto::NodeId;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The receiver name operator credits are logged under.
pub const OPERATOR: &str = "operator";

/// The result of [`OperatorCredit::add_balance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddBalance {
    /// The positive balance before.
    pub old: u64,
    /// The positive balance after.
    pub new: u64,
    /// True when the reference had been applied before (nothing changed now).
    pub duplicate: bool,
}

/// Why an operator credit failed; the balance is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    /// The result would exceed 2^63-1.
    #[error("balance overflow: {old} + {amount} > 2^63-1")]
    Overflow {
        /// The balance.
        old: u64,
        /// The amount asked for.
        amount: i64,
    },
    /// The ledger failed.
    #[error("payment ledger: {0}")]
    Ledger(LedgerError),
    /// A worker task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Operator credit over the ledger and the pool.
pub struct OperatorCredit {
    ledger: Ledger,
    sink: Arc<dyn BalanceSink>,
}

impl std::fmt::Debug for OperatorCredit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorCredit").field("ledger", &self.ledger).finish_non_exhaustive()
    }
}

impl OperatorCredit {
    /// Credit written to `ledger` and applied to the pool through `sink`.
    pub fn new(ledger: Ledger, sink: Arc<dyn BalanceSink>) -> Self {
        Self { ledger, sink }
    }

    /// Adds `amount` (negative: takes it, clamping at 0) to `node`'s positive balance,
    /// durably, unless `reference` was applied before. `now` stamps the log entry.
    pub async fn add_balance(
        &self,
        node: NodeId,
        amount: i64,
        reference: Option<String>,
        now: SystemTime,
    ) -> Result<AddBalance, CreditError> {
        let reference = reference.unwrap_or_default();
        let ledger = self.ledger.clone();
        let time_ms = unix_ms(now);
        let result = Arc::new(Mutex::new(None));
        let slot = result.clone();
        let outcome = update_balance(self.sink.clone(), node, move |current| {
            let (outcome, duplicate) = ledger
                .operator_adjust(node, amount, &reference, current, time_ms)
                .map_err(PaymentError::Ledger)?;
            // A duplicate leaves the pool's balance as it is now.
            let new = if duplicate { current } else { outcome.new };
            *slot.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(AddBalance { old: outcome.old, new: outcome.new, duplicate });
            Ok(new)
        })
        .await;
        match outcome {
            Ok(_) => result
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .ok_or_else(|| CreditError::Internal("credit outcome missing".to_owned())),
            Err(PaymentError::Ledger(LedgerError::BalanceOverflow { balance, .. })) => {
                Err(CreditError::Overflow { old: balance, amount })
            }
            Err(PaymentError::Ledger(error)) => Err(CreditError::Ledger(error)),
            Err(error) => Err(CreditError::Internal(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pay::ledger::PaymentReference;
    use crate::pay::receiver::LedgerSink;
    use alloy_primitives::B256;

    #[tokio::test]
    async fn operator_credit_is_logged_idempotent_and_refuses_overflow() {
        let dir = std::env::temp_dir().join(format!(
            "lesd-credit-{}-{}",
            std::process::id(),
            les::crypto::random_bytes::<8>().unwrap().map(|b| format!("{b:02x}")).concat()
        ));
        let ledger = Ledger::open(&dir).unwrap();
        let credit = OperatorCredit::new(ledger.clone(), Arc::new(LedgerSink::new(ledger.clone())));
        let node = B256::repeat_byte(5);
        let now = SystemTime::now();
        let first = credit.add_balance(node, 999_999, Some("inv-7".into()), now).await.unwrap();
        assert_eq!(first, AddBalance { old: 0, new: 999_999, duplicate: false });
        let again = credit.add_balance(node, 999_999, Some("inv-7".into()), now).await.unwrap();
        assert_eq!(again, AddBalance { duplicate: true, ..first });
        assert_eq!(ledger.positive(node).unwrap(), 999_999);
        let overflow = credit.add_balance(node, i64::MAX, None, now).await;
        assert!(matches!(overflow, Err(CreditError::Overflow { old: 999_999, .. })));
        let debit = credit.add_balance(node, -2_000_000, None, now).await.unwrap();
        assert_eq!((debit.old, debit.new), (999_999, 0));
        let log = ledger.log(0, 10).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].receiver, OPERATOR);
        assert_eq!(log[0].reference, PaymentReference::Operator { reference: "inv-7".into() });
        drop((credit, ledger));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
