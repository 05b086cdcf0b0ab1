//! [`IdbStore`]: the client's [`Store`] in IndexedDB, so a page reload resumes from the last
//! accepted head instead of waiting for a fresh quorum (design §5).
//!
//! One database per chain (`ulc-<chainId>`), one object store per [`Table`], the database
//! version is [`SCHEMA_VERSION`] (the upgrade creates whatever table is missing), keys are
//! strings and values `Uint8Array`s. A batch is one readwrite transaction over every table it
//! touches, committed explicitly: IndexedDB applies all of it or none. A write the browser
//! refuses for lack of space (`QuotaExceededError`) is [`StoreError::Quota`], so the core can
//! prune and retry instead of failing.

use crate::store::{SCHEMA_VERSION, Store, StoreError, StoreWrite, Table};
use crate::web::websocket::js_error_text;
use futures_util::future::LocalBoxFuture;
use indexed_db_futures::database::Database;
use indexed_db_futures::error::{Error as IdbError, OpenDbError};
use indexed_db_futures::internals::SystemRepr;
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::TransactionMode;
use std::collections::BTreeSet;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

/// The IndexedDB database name of a chain's store.
pub fn database_name(chain_id: u64) -> String {
    format!("ulc-{chain_id}")
}

/// The client's store in one IndexedDB database; see the module documentation.
#[derive(Debug, Clone)]
pub struct IdbStore {
    db: Database,
}

impl IdbStore {
    /// Opens (creating or upgrading it if needed) the store of `chain_id`.
    pub async fn open(chain_id: u64) -> Result<Self, StoreError> {
        Self::open_named(&database_name(chain_id)).await
    }

    /// Opens the database `name` with the current schema (tests use names of their own).
    pub async fn open_named(name: &str) -> Result<Self, StoreError> {
        let db = Database::open(name)
            .with_version(SCHEMA_VERSION)
            .with_on_upgrade_needed(|_event, db: Database| {
                // Forward migration: every version so far only adds tables, so creating the
                // missing ones upgrades any older database; data in existing ones is kept.
                let existing: BTreeSet<String> = db.object_store_names().collect();
                for table in Table::ALL {
                    if !existing.contains(table.name()) {
                        db.create_object_store(table.name()).build()?;
                    }
                }
                Ok(())
            })
            .await
            .map_err(|e| StoreError::Open(open_error_text(&e)))?;
        // Another tab opening a newer schema waits until every older connection closes, so
        // this one steps aside (its later calls fail as Backend errors, and the page should
        // reload). The handler finds the database through the event, capturing nothing, and
        // is owned by JS, so it goes when the database does.
        let on_version_change =
            Closure::<dyn FnMut(web_sys::Event)>::new(|event: web_sys::Event| {
                if let Some(db) =
                    event.target().and_then(|t| t.dyn_into::<web_sys::IdbDatabase>().ok())
                {
                    db.close();
                }
            });
        raw_db(&db).set_onversionchange(Some(on_version_change.into_js_value().unchecked_ref()));
        Ok(Self { db })
    }

    /// The database's name.
    pub fn name(&self) -> String {
        self.db.name()
    }

    /// Closes the database connection (pending transactions still complete); later calls
    /// fail with [`StoreError::Backend`].
    pub fn close(&self) {
        raw_db(&self.db).close();
    }

    /// Deletes the database `name` (tests; a "forget everything" button). Waits until it is
    /// gone, which is blocked while some connection to it is still open.
    pub async fn delete_database(name: &str) -> Result<(), StoreError> {
        Database::delete_by_name(name)
            .map_err(|e| StoreError::Open(open_error_text(&e)))?
            .await
            .map_err(|e| StoreError::Backend(error_text(&e)))
    }
}

fn raw_db(db: &Database) -> web_sys::IdbDatabase {
    db.as_sys().clone().unchecked_into()
}

impl Store for IdbStore {
    fn get(
        &self,
        table: Table,
        key: &str,
    ) -> LocalBoxFuture<'static, Result<Option<Vec<u8>>, StoreError>> {
        let db = self.db.clone();
        let key = key.to_string();
        Box::pin(async move {
            let tx = db.transaction(table.name()).build().map_err(backend)?;
            let store = tx.object_store(table.name()).map_err(backend)?;
            let value: Option<JsValue> =
                store.get(key).primitive().map_err(backend)?.await.map_err(backend)?;
            match value {
                None => Ok(None),
                Some(value) => match value.dyn_into::<js_sys::Uint8Array>() {
                    Ok(bytes) => Ok(Some(bytes.to_vec())),
                    // Only this module writes the database; anything else is not ours.
                    Err(_) => Err(StoreError::Backend(format!(
                        "{}: a value that is not a Uint8Array",
                        table.name()
                    ))),
                },
            }
        })
    }

    fn keys(&self, table: Table) -> LocalBoxFuture<'static, Result<Vec<String>, StoreError>> {
        let db = self.db.clone();
        Box::pin(async move {
            let tx = db.transaction(table.name()).build().map_err(backend)?;
            let store = tx.object_store(table.name()).map_err(backend)?;
            let keys = store
                .get_all_keys::<String>()
                .primitive()
                .map_err(backend)?
                .await
                .map_err(backend)?;
            let mut keys = keys.collect::<Result<Vec<String>, _>>().map_err(backend)?;
            // IndexedDB orders strings by UTF-16 code units; the trait promises Rust's order.
            keys.sort_unstable();
            Ok(keys)
        })
    }

    fn write(&self, batch: Vec<StoreWrite>) -> LocalBoxFuture<'static, Result<(), StoreError>> {
        let db = self.db.clone();
        Box::pin(async move {
            let tables: BTreeSet<&'static str> = batch
                .iter()
                .map(|w| match w {
                    StoreWrite::Put(table, ..) | StoreWrite::Delete(table, _) => table.name(),
                })
                .collect();
            if tables.is_empty() {
                return Ok(());
            }
            let names: Vec<&str> = tables.into_iter().collect();
            let tx = db
                .transaction(names.as_slice())
                .with_mode(TransactionMode::Readwrite)
                .build()
                .map_err(write_error)?;
            // Kept to read the abort reason: `commit` consumes the wrapper and reports an
            // abort (which is how a quota failure arrives) without the DOMException.
            let raw: web_sys::IdbTransaction = tx.as_sys().clone().unchecked_into();
            // Requests go out as they are built; their completion is covered by the commit
            // (a failed request aborts the whole transaction), so none is awaited singly.
            for write in batch {
                match write {
                    StoreWrite::Put(table, key, value) => {
                        let store = tx.object_store(table.name()).map_err(write_error)?;
                        let bytes = js_sys::Uint8Array::from(value.as_slice());
                        let _request = store
                            .put(JsValue::from(bytes))
                            .with_key(key)
                            .primitive()
                            .map_err(write_error)?;
                    }
                    StoreWrite::Delete(table, key) => {
                        let store = tx.object_store(table.name()).map_err(write_error)?;
                        let _request = store.delete(key).primitive().map_err(write_error)?;
                    }
                }
            }
            match tx.commit().await {
                Ok(()) => Ok(()),
                Err(error) => match raw.error() {
                    Some(dom) if dom.name() == "QuotaExceededError" => Err(StoreError::Quota),
                    Some(dom) => {
                        Err(StoreError::Backend(format!("{}: {}", dom.name(), dom.message())))
                    }
                    None => Err(write_error(error)),
                },
            }
        })
    }
}

fn backend(error: impl Into<IdbError>) -> StoreError {
    StoreError::Backend(error_text(&error.into()))
}

fn write_error(error: impl Into<IdbError>) -> StoreError {
    let error = error.into();
    if let IdbError::DomException(dom) = &error
        && dom.as_sys().name() == "QuotaExceededError"
    {
        return StoreError::Quota;
    }
    StoreError::Backend(error_text(&error))
}

fn error_text(error: &IdbError) -> String {
    match error {
        IdbError::DomException(dom) => {
            let dom = dom.as_sys();
            format!("{}: {}", dom.name(), dom.message())
        }
        IdbError::Unknown(js) => js_error_text(js.as_ref()),
        other => other.to_string(),
    }
}

fn open_error_text(error: &OpenDbError) -> String {
    match error {
        OpenDbError::Base(base) => error_text(base),
        other => other.to_string(),
    }
}

/// `(usage, quota)` in bytes from `navigator.storage.estimate()`, for the origin as a whole;
/// `None` where the browser does not offer it (no StorageManager, insecure context).
pub async fn storage_estimate() -> Option<(u64, u64)> {
    let global = js_sys::global();
    let navigator = js_sys::Reflect::get(&global, &"navigator".into()).ok()?;
    let storage = js_sys::Reflect::get(&navigator, &"storage".into()).ok()?;
    let storage = storage.dyn_into::<web_sys::StorageManager>().ok()?;
    let promise = storage.estimate().ok()?;
    let estimate = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    let number = |name: &str| {
        js_sys::Reflect::get(&estimate, &name.into())
            .ok()
            .and_then(|v| v.as_f64())
            .map(|v| v.max(0.0) as u64)
    };
    Some((number("usage")?, number("quota")?))
}
