//! Browser tests of the web drivers that need nothing but the browser: the IndexedDB store
//! (reads, writes, key order, batches across tables, persistence across a close and reopen,
//! stepping aside for another tab's upgrade, errors instead of panics), the memory store,
//! the runtime's clock and timers, and the storage estimate. Run in headless Chromium by
//! wasm-bindgen-test-runner (`cargo test -p ulc --target wasm32-unknown-unknown --test web`;
//! see scripts/test.sh).
#![cfg(target_arch = "wasm32")]

use std::time::Duration;
use ulc::runtime::Runtime;
use ulc::store::{MemoryStore, Store, StoreError, StoreWrite, Table};
use ulc::web::{IdbStore, WebRuntime, storage_estimate};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// A database name no other test uses, removed first in case a previous run left it.
async fn fresh_db(name: &str) -> IdbStore {
    IdbStore::delete_database(name).await.expect("delete old database");
    IdbStore::open_named(name).await.expect("open database")
}

fn put(table: Table, key: &str, value: &[u8]) -> StoreWrite {
    StoreWrite::Put(table, key.to_string(), value.to_vec())
}

/// What every store must do; run against IndexedDB and memory alike.
async fn exercise_store(store: &impl Store) {
    assert_eq!(store.get(Table::Head, "missing").await, Ok(None));
    assert_eq!(store.keys(Table::Headers).await, Ok(vec![]));

    store
        .write(vec![put(Table::Headers, "b", b"two"), put(Table::Headers, "a", &[])])
        .await
        .expect("write");
    assert_eq!(store.get(Table::Headers, "b").await, Ok(Some(b"two".to_vec())));
    // An empty value is a value, not an absence.
    assert_eq!(store.get(Table::Headers, "a").await, Ok(Some(vec![])));
    // Tables are separate namespaces.
    assert_eq!(store.get(Table::Code, "b").await, Ok(None));

    // Fixed-width hex keys (what the core uses for header numbers) come back in order.
    let mut batch = Vec::new();
    for n in [0x1234u64, 0x2, 0xff, 0x10000] {
        batch.push(put(Table::Servers, &format!("{n:016x}"), &n.to_be_bytes()));
    }
    store.write(batch).await.expect("write keys");
    let keys = store.keys(Table::Servers).await.expect("keys");
    let expected: Vec<String> =
        [0x2u64, 0xff, 0x1234, 0x10000].iter().map(|n| format!("{n:016x}")).collect();
    assert_eq!(keys, expected);

    // Overwrite, delete, and a batch's writes applied in order (put then delete = gone).
    store
        .write(vec![
            put(Table::Headers, "b", b"TWO"),
            StoreWrite::Delete(Table::Headers, "a".into()),
            put(Table::Meta, "gone", b"x"),
            StoreWrite::Delete(Table::Meta, "gone".into()),
            StoreWrite::Delete(Table::Meta, "never-there".into()),
        ])
        .await
        .expect("batch");
    assert_eq!(store.get(Table::Headers, "b").await, Ok(Some(b"TWO".to_vec())));
    assert_eq!(store.get(Table::Headers, "a").await, Ok(None));
    assert_eq!(store.get(Table::Meta, "gone").await, Ok(None));
    assert_eq!(store.keys(Table::Headers).await, Ok(vec!["b".to_string()]));

    // An empty batch is fine.
    store.write(vec![]).await.expect("empty batch");

    // A value of some size survives byte for byte.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    store.write(vec![put(Table::Code, "big", &big)]).await.expect("big write");
    assert_eq!(store.get(Table::Code, "big").await, Ok(Some(big)));
}

#[wasm_bindgen_test]
async fn memory_store_behaves_like_a_store() {
    exercise_store(&MemoryStore::new()).await;
}

#[wasm_bindgen_test]
async fn idb_store_put_get_keys_delete() {
    let store = fresh_db("ulc-test-basic").await;
    assert_eq!(store.name(), "ulc-test-basic");
    exercise_store(&store).await;
    store.close();
}

#[wasm_bindgen_test]
async fn idb_batch_across_tables_is_one_transaction() {
    let store = fresh_db("ulc-test-batch").await;
    // The head and its evidence go in together, as the core writes them.
    let batch = vec![
        put(Table::Head, "header", b"h"),
        put(Table::Head, "evidence", b"e"),
        put(Table::Headers, "0000000000000005", b"5"),
        put(Table::Metrics, "installTime", &7u64.to_be_bytes()),
    ];
    // Issued without waiting, then read at once: IndexedDB orders the read transaction after
    // the write over the same tables, so the reads see all of the batch, never a part.
    let write = store.write(batch);
    let reads = futures_util::future::join4(
        store.get(Table::Head, "header"),
        store.get(Table::Head, "evidence"),
        store.get(Table::Headers, "0000000000000005"),
        store.get(Table::Metrics, "installTime"),
    );
    let (written, (a, b, c, d)) = futures_util::future::join(write, reads).await;
    written.expect("batch");
    assert_eq!(
        (a, b, c, d),
        (
            Ok(Some(b"h".to_vec())),
            Ok(Some(b"e".to_vec())),
            Ok(Some(b"5".to_vec())),
            Ok(Some(7u64.to_be_bytes().to_vec()))
        )
    );
    store.close();
}

#[wasm_bindgen_test]
async fn idb_store_persists_across_reopen() {
    let name = "ulc-test-persist";
    let store = fresh_db(name).await;
    store
        .write(vec![
            put(Table::Head, "header", b"persisted"),
            put(Table::Meta, "schema", &1u32.to_be_bytes()),
        ])
        .await
        .expect("write");
    store.close();
    drop(store);

    // A new connection (what a reloaded page opens) sees what the old one committed, and
    // opening at the same schema version runs no upgrade that could lose it.
    let reopened = IdbStore::open_named(name).await.expect("reopen");
    assert_eq!(reopened.get(Table::Head, "header").await, Ok(Some(b"persisted".to_vec())));
    assert_eq!(reopened.keys(Table::Meta).await, Ok(vec!["schema".to_string()]));
    reopened.close();

    // Deleting the database really forgets it.
    IdbStore::delete_database(name).await.expect("delete");
    let empty = IdbStore::open_named(name).await.expect("open after delete");
    assert_eq!(empty.get(Table::Head, "header").await, Ok(None));
    empty.close();
}

#[wasm_bindgen_test]
async fn idb_store_by_chain_id_uses_its_own_database() {
    let store = IdbStore::open(999_999_001).await.expect("open");
    assert_eq!(store.name(), "ulc-999999001");
    store.close();
    IdbStore::delete_database("ulc-999999001").await.expect("delete");
}

#[wasm_bindgen_test]
async fn idb_store_fails_cleanly_once_closed() {
    let store = fresh_db("ulc-test-closed").await;
    store.write(vec![put(Table::Head, "k", b"v")]).await.expect("write");
    store.close();
    // Errors, not panics, and nothing written.
    assert!(matches!(
        store.write(vec![put(Table::Head, "k", b"other")]).await,
        Err(StoreError::Backend(_))
    ));
    assert!(matches!(store.get(Table::Head, "k").await, Err(StoreError::Backend(_))));
    assert!(matches!(store.keys(Table::Head).await, Err(StoreError::Backend(_))));
    let reopened = IdbStore::open_named("ulc-test-closed").await.expect("reopen");
    assert_eq!(reopened.get(Table::Head, "k").await, Ok(Some(b"v".to_vec())));
    reopened.close();
}

#[wasm_bindgen_test]
async fn idb_open_connection_steps_aside_for_another_tab() {
    let name = "ulc-test-versionchange";
    let store = fresh_db(name).await;
    store.write(vec![put(Table::Head, "k", b"v")]).await.expect("write");
    // Still open here: deleting (like a newer schema's upgrade in another tab) fires
    // versionchange, the store closes itself, and the deletion is not blocked.
    IdbStore::delete_database(name).await.expect("delete while open");
    assert!(matches!(store.get(Table::Head, "k").await, Err(StoreError::Backend(_))));
}

#[wasm_bindgen_test]
async fn storage_estimate_reports_usage_and_quota() {
    let (usage, quota) = storage_estimate().await.expect("navigator.storage.estimate()");
    assert!(quota > 0, "quota {quota}");
    assert!(usage <= quota, "usage {usage} > quota {quota}");
}

#[wasm_bindgen_test]
async fn runtime_clock_timers_and_tasks() {
    let runtime = WebRuntime::new();
    let t0 = runtime.now();
    let wall = runtime.unix_millis();
    // After 2020-01-01 and before 2100: a millisecond Unix time, not seconds or nanoseconds.
    assert!((1_577_836_800_000..4_102_444_800_000).contains(&wall), "{wall}");

    runtime.sleep(Duration::from_millis(30)).await;
    let slept = runtime.now().saturating_duration_since(t0);
    assert!(slept >= Duration::from_millis(29), "slept only {slept:?}");
    assert!(slept < Duration::from_secs(5), "slept {slept:?}");

    // Monotonic and sub-millisecond where the browser allows it.
    let a = runtime.now();
    let b = runtime.now();
    assert!(b >= a);

    // A spawned task runs, and its time is counted as client CPU time.
    let (tx, rx) = futures_channel::oneshot::channel();
    runtime.spawn(Box::pin(async move {
        let start = js_sys::Date::now();
        while js_sys::Date::now() - start < 20.0 {}
        let _ = tx.send(());
    }));
    rx.await.expect("task ran");
    assert!(runtime.cpu_ms() >= 15.0, "cpu {} ms", runtime.cpu_ms());

    // Over-long sleeps are clamped rather than panicking or firing at once.
    let long = runtime.sleep(Duration::from_secs(u64::MAX / 4));
    let quick = runtime.sleep(Duration::from_millis(1));
    match futures_util::future::select(long, quick).await {
        futures_util::future::Either::Right(_) => {}
        futures_util::future::Either::Left(_) => panic!("a clamped long sleep ended first"),
    }
}
