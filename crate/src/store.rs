//! Persistent client state (design §5): a small key-value interface with named tables and
//! atomic batches, implemented by IndexedDB in the browser and by memory everywhere.
//!
//! Tables and what the core keeps in them:
//! - `meta`: the schema version;
//! - `head`: the accepted head with the signed announcements that prove it;
//! - `headers`: recent canonical headers (hash -> RLP), bounded;
//! - `servers`: per-server value records (latency, failures, timeouts);
//! - `code`: contract code by code hash;
//! - `metrics`: install time and counters;
//! - `payments`: per-server payment-channel state (the last cheque signed and accepted),
//!   written before each cheque is sent (`pay::channel`), and a paying client's node key.

use futures_util::future::LocalBoxFuture;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// The schema version written into `meta`; a store with an older one is migrated forward.
/// Version 2 added `payments` (IndexedDB creates a missing object store only on an upgrade,
/// so adding a table needs a new version).
pub const SCHEMA_VERSION: u32 = 2;

/// The store's tables (IndexedDB object stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Schema version and other bookkeeping.
    Meta,
    /// The accepted head and its evidence.
    Head,
    /// Recent headers.
    Headers,
    /// Per-server records.
    Servers,
    /// Contract code by hash.
    Code,
    /// Install time and counters.
    Metrics,
    /// Payment-channel state by server.
    Payments,
}

impl Table {
    /// Every table, for creating them.
    pub const ALL: [Table; 7] = [
        Table::Meta,
        Table::Head,
        Table::Headers,
        Table::Servers,
        Table::Code,
        Table::Metrics,
        Table::Payments,
    ];

    /// The object store's name.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Head => "head",
            Table::Headers => "headers",
            Table::Servers => "servers",
            Table::Code => "code",
            Table::Metrics => "metrics",
            Table::Payments => "payments",
        }
    }
}

/// One change in an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreWrite {
    /// Sets `key` to the value.
    Put(Table, String, Vec<u8>),
    /// Removes `key`.
    Delete(Table, String),
}

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened (e.g. IndexedDB unavailable or blocked).
    #[error("open: {0}")]
    Open(String),
    /// The browser refused the write for lack of space; the caller prunes and retries.
    #[error("storage quota exceeded")]
    Quota,
    /// Any other backend failure.
    #[error("storage: {0}")]
    Backend(String),
}

/// The client's persistent key-value store.
pub trait Store: 'static {
    /// The value under `key`, if any.
    fn get(
        &self,
        table: Table,
        key: &str,
    ) -> LocalBoxFuture<'static, Result<Option<Vec<u8>>, StoreError>>;
    /// Every key of `table`, in ascending order.
    fn keys(&self, table: Table) -> LocalBoxFuture<'static, Result<Vec<String>, StoreError>>;
    /// Applies every write or none (one IndexedDB transaction).
    fn write(&self, batch: Vec<StoreWrite>) -> LocalBoxFuture<'static, Result<(), StoreError>>;
}

/// A store in memory: nothing survives the process (or the page).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    tables: Rc<RefCell<Tables>>,
}

type Tables = BTreeMap<(Table, String), Vec<u8>>;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn get(
        &self,
        table: Table,
        key: &str,
    ) -> LocalBoxFuture<'static, Result<Option<Vec<u8>>, StoreError>> {
        let value = self.tables.borrow().get(&(table, key.to_string())).cloned();
        Box::pin(async move { Ok(value) })
    }

    fn keys(&self, table: Table) -> LocalBoxFuture<'static, Result<Vec<String>, StoreError>> {
        let keys = self
            .tables
            .borrow()
            .keys()
            .filter(|(t, _)| *t == table)
            .map(|(_, key)| key.clone())
            .collect();
        Box::pin(async move { Ok(keys) })
    }

    fn write(&self, batch: Vec<StoreWrite>) -> LocalBoxFuture<'static, Result<(), StoreError>> {
        let mut tables = self.tables.borrow_mut();
        for write in batch {
            match write {
                StoreWrite::Put(table, key, value) => {
                    tables.insert((table, key), value);
                }
                StoreWrite::Delete(table, key) => {
                    tables.remove(&(table, key));
                }
            }
        }
        Box::pin(async { Ok(()) })
    }
}
