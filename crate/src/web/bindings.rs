//! The wasm-bindgen exports the npm package's `index.js` wraps: [`WasmClient`], one light
//! client with its EIP-1193 provider, started from the JSON configuration a dapp passes to
//! `createProvider`.
//!
//! JS sees strings only (request and response JSON, notices as a kind plus JSON), which
//! keeps the boundary small and the generated glue tiny; `index.js` turns them into the
//! EIP-1193 objects (`ProviderRpcError`, event payloads).

use crate::chain::Chain;
use crate::client::Client;
use crate::config::{ClientConfig, ConfigError, Opener, StorageKind};
use crate::provider::{Provider, ProviderNotice};
use crate::store::{MemoryStore, Store, StoreError, StoreWrite, Table};
use crate::web::idb::{self, IdbStore};
use crate::web::runtime::WebRuntime;
use crate::web::wallet::WalletOpener;
use crate::web::websocket::WebSocketTransport;
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// Notices kept for a page that has not registered its callback yet (the first `connect`
/// can come before `createProvider` returns); the oldest go first beyond this.
const PENDING_NOTICES: usize = 256;

/// The store the configuration picked: one concrete type, so the client is one type.
#[derive(Clone)]
pub enum AnyStore {
    /// IndexedDB (`storage: "indexeddb"`, the default).
    Idb(IdbStore),
    /// Memory (`storage: "memory"`).
    Memory(MemoryStore),
}

impl Store for AnyStore {
    fn get(
        &self,
        table: Table,
        key: &str,
    ) -> LocalBoxFuture<'static, Result<Option<Vec<u8>>, StoreError>> {
        match self {
            AnyStore::Idb(store) => store.get(table, key),
            AnyStore::Memory(store) => store.get(table, key),
        }
    }

    fn keys(&self, table: Table) -> LocalBoxFuture<'static, Result<Vec<String>, StoreError>> {
        match self {
            AnyStore::Idb(store) => store.keys(table),
            AnyStore::Memory(store) => store.keys(table),
        }
    }

    fn write(&self, batch: Vec<StoreWrite>) -> LocalBoxFuture<'static, Result<(), StoreError>> {
        match self {
            AnyStore::Idb(store) => store.write(batch),
            AnyStore::Memory(store) => store.write(batch),
        }
    }
}

/// The client type the browser runs.
pub type WebClient = Client<WebSocketTransport, AnyStore, WebRuntime>;

/// Where notices go: the page's callback once it has registered one, a queue until then.
#[derive(Default)]
struct NoticeSink {
    callback: Option<js_sys::Function>,
    pending: VecDeque<(&'static str, String)>,
}

impl NoticeSink {
    /// Queues the notice if no callback is registered yet; otherwise returns the callback,
    /// to be called once this sink is no longer borrowed (a listener may call back in).
    fn take_or_queue(&mut self, kind: &'static str, payload: &str) -> Option<js_sys::Function> {
        if self.callback.is_none() {
            if self.pending.len() == PENDING_NOTICES {
                self.pending.pop_front();
            }
            self.pending.push_back((kind, payload.to_string()));
        }
        self.callback.clone()
    }
}

fn call_notice(callback: &js_sys::Function, kind: &str, payload: &str) {
    // A throwing listener is the page's bug; it must not stop the event pump.
    if let Err(error) =
        callback.call2(&JsValue::NULL, &JsValue::from_str(kind), &JsValue::from_str(payload))
    {
        web_sys::console::error_2(&"ulc: notice callback threw".into(), &error);
    }
}

/// `(kind, payload JSON)` of a notice, as `index.js` expects them.
fn encode_notice(notice: ProviderNotice) -> (&'static str, String) {
    match notice {
        ProviderNotice::Connect { chain_id } => {
            ("connect", json!({ "chainId": chain_id }).to_string())
        }
        ProviderNotice::Disconnect { code, message } => {
            ("disconnect", json!({ "code": code, "message": message }).to_string())
        }
        ProviderNotice::ChainChanged(chain_id) => {
            ("chainChanged", Value::String(chain_id).to_string())
        }
        ProviderNotice::Message { subscription, result } => {
            ("message", json!({ "subscription": subscription, "result": result }).to_string())
        }
    }
}

/// A running light client and its EIP-1193 provider (exported to JS).
#[wasm_bindgen]
pub struct WasmClient {
    client: Rc<WebClient>,
    provider: Rc<Provider<WebClient>>,
    runtime: WebRuntime,
    sink: Rc<RefCell<NoticeSink>>,
    storage: StorageKind,
}

#[wasm_bindgen]
impl WasmClient {
    /// Parses and checks `configJson` (`{chainId, genesisHash?, servers: [{enode, bridge}],
    /// fraction?, storage?, payment?}`), opens the store and starts connecting. `wallet` is
    /// the EIP-1193 wallet of `payment.wallet: true` (undefined otherwise): it funds the
    /// payment channels. Rejects with an Error saying what is wrong with the configuration or
    /// why the store could not be opened.
    pub async fn start(config_json: String, wallet: JsValue) -> Result<WasmClient, JsError> {
        let wallet = (!wallet.is_undefined() && !wallet.is_null()).then_some(wallet);
        Self::start_with_wallet(&config_json, wallet)
            .await
            .map_err(|message| JsError::new(&message))
    }

    /// Registers the notice callback `(kind, payloadJson) => void`; kinds are `connect`,
    /// `disconnect`, `chainChanged` and `message`. Notices from before the call are
    /// delivered at once, in order.
    #[wasm_bindgen(js_name = onNotice)]
    pub fn on_notice(&self, callback: js_sys::Function) {
        let pending = {
            let mut sink = self.sink.borrow_mut();
            sink.callback = Some(callback.clone());
            std::mem::take(&mut sink.pending)
        };
        // Outside the borrow: the callback may call back into this client.
        for (kind, payload) in pending {
            call_notice(&callback, kind, &payload);
        }
    }

    /// Answers one request `{"method", "params"?}` (JSON text) with `{"result"}` or
    /// `{"error": {code, message, data?}}` (JSON text).
    pub fn request(&self, json: String) -> js_sys::Promise {
        let future = self.request_text(json);
        wasm_bindgen_futures::future_to_promise(async move { Ok(JsValue::from_str(&future.await)) })
    }

    /// The core's metrics merged with figures from the environment, as JSON text (what
    /// `ulc_metrics` answers).
    pub fn metrics(&self) -> js_sys::Promise {
        let future = self.metrics_value();
        wasm_bindgen_futures::future_to_promise(async move {
            Ok(JsValue::from_str(&future.await.to_string()))
        })
    }

    /// Disconnects every server; later requests fail with 4900.
    pub fn stop(&self) {
        self.client.stop();
    }
}

impl WasmClient {
    /// [`WasmClient::start`] for Rust callers (the browser tests), with the error as text.
    pub async fn start_native(config_json: &str) -> Result<WasmClient, String> {
        Self::start_with_wallet(config_json, None).await
    }

    /// [`WasmClient::start`] with the wallet as an option, the error as text.
    pub async fn start_with_wallet(
        config_json: &str,
        wallet: Option<JsValue>,
    ) -> Result<WasmClient, String> {
        let config = ClientConfig::from_json(config_json).map_err(|e| e.to_string())?;
        let mut resolved = config.resolve().map_err(|e| e.to_string())?;
        match (resolved.payment.wallet, wallet) {
            (true, Some(wallet)) => {
                let opener = WalletOpener::new(wallet)?;
                resolved.payment.opener = Some(Opener(Rc::new(opener)));
            }
            (true, None) => return Err(ConfigError::MissingWallet.to_string()),
            (false, Some(_)) => {
                return Err("a wallet was passed without payment.wallet: true".into());
            }
            (false, None) => {}
        }
        let storage = resolved.storage;
        let store = match storage {
            StorageKind::Indexeddb => {
                AnyStore::Idb(IdbStore::open(resolved.chain_id).await.map_err(|e| e.to_string())?)
            }
            StorageKind::Memory => AnyStore::Memory(MemoryStore::new()),
        };
        let runtime = WebRuntime::new();
        let client = Client::start(resolved, WebSocketTransport::new(), store, runtime.clone())
            .await
            .map_err(|e| e.to_string())?;
        let provider = Rc::new(Provider::new(client.clone()));
        let sink = Rc::new(RefCell::new(NoticeSink::default()));
        let notifier_sink = Rc::downgrade(&sink);
        provider.set_notifier(Box::new(move |notice| {
            if let Some(sink) = notifier_sink.upgrade() {
                let (kind, payload) = encode_notice(notice);
                let callback = sink.borrow_mut().take_or_queue(kind, &payload);
                if let Some(callback) = callback {
                    call_notice(&callback, kind, &payload);
                }
            }
        }));
        // The pump ends when the client stops (its event senders go away); it holds the
        // provider, not the WasmClient, so dropping the WasmClient stops everything.
        let mut events = client.events();
        let pump_provider = provider.clone();
        let pump_runtime = runtime.clone();
        wasm_bindgen_futures::spawn_local(async move {
            while let Some(event) = events.next().await {
                pump_runtime.time(|| pump_provider.handle_event(&event));
                // Log subscriptions fetch receipts for a new head; spawned so the pump
                // keeps delivering events meanwhile.
                wasm_bindgen_futures::spawn_local(pump_provider.process());
            }
        });
        Ok(WasmClient { client, provider, runtime, sink, storage })
    }

    /// The client core (tests look at its head directly).
    pub fn client(&self) -> &Rc<WebClient> {
        &self.client
    }

    /// [`WasmClient::request`] as a Rust future.
    pub fn request_text(&self, json: String) -> LocalBoxFuture<'static, String> {
        if is_metrics_request(&json) {
            let metrics = self.metrics_value();
            return Box::pin(async move { json!({ "result": metrics.await }).to_string() });
        }
        let future = self.runtime.time(|| self.provider.request_json(&json));
        Box::pin(self.runtime.timed(future))
    }

    /// The metrics as a JSON value: the core's, plus `environment` with the wasm memory size,
    /// the origin's storage use and quota, and the main-thread time spent in the client.
    pub fn metrics_value(&self) -> LocalBoxFuture<'static, Value> {
        let mut metrics = self.client.metrics();
        let runtime = self.runtime.clone();
        let storage = self.storage;
        Box::pin(async move {
            let memory_bytes = wasm_bindgen::memory()
                .dyn_into::<js_sys::WebAssembly::Memory>()
                .ok()
                .and_then(|memory| memory.buffer().dyn_into::<js_sys::ArrayBuffer>().ok())
                .map(|buffer| buffer.byte_length());
            let estimate = match storage {
                StorageKind::Indexeddb => idb::storage_estimate().await,
                StorageKind::Memory => None,
            };
            let environment = json!({
                "wasmMemoryBytes": memory_bytes,
                "storage": match storage { StorageKind::Indexeddb => "indexeddb", StorageKind::Memory => "memory" },
                "storageUsageBytes": estimate.map(|(usage, _)| usage),
                "storageQuotaBytes": estimate.map(|(_, quota)| quota),
                "cpuMs": (runtime.cpu_ms() * 1000.0).round() / 1000.0,
            });
            match &mut metrics {
                Value::Object(object) => {
                    object.insert("environment".into(), environment);
                }
                other => *other = json!({ "core": other.take(), "environment": environment }),
            }
            metrics
        })
    }
}

/// Whether a request is `ulc_metrics` (answered here, where the environment is known).
fn is_metrics_request(json: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Method<'a> {
        #[serde(borrow)]
        method: std::borrow::Cow<'a, str>,
    }
    // A cheap look before the provider parses it fully; anything odd goes to the provider,
    // which produces the proper error.
    json.contains("ulc_metrics")
        && serde_json::from_str::<Method>(json).is_ok_and(|m| m.method == "ulc_metrics")
}

impl Drop for WasmClient {
    fn drop(&mut self) {
        self.client.stop();
    }
}
