//! Browser tests against a real devnet (anvil, three lesd, one les-bridge): the WebSocket
//! transport carrying a real RLPx/LES handshake through the bridge, the bridge's refusal
//! surfacing as a close code, and the whole client through its wasm-bindgen surface
//! (answers checked against anvil, a warm start from IndexedDB).
//!
//! The devnet's `devnet.json` comes in at compile time through `ULC_DEVNET_JSON`
//! (scripts/test.sh starts the devnet and sets it). Without it every test here skips with a
//! message, and fails under `CI=true`, so CI cannot pass by skipping them.
#![cfg(target_arch = "wasm32")]

use futures_util::future::{Either, select};
use serde_json::{Value, json};
use std::time::Duration;
use ulc::chain::Chain;
use ulc::config::{ClientConfig, ResolvedConfig, Server, ServerSpec};
use ulc::les::crypto::NodeKey;
use ulc::les::msg::AnnounceType;
use ulc::les::session::{self, Event, Role, Session, SessionConfig};
use ulc::runtime::Runtime;
use ulc::transport::{Connection, Transport, TransportError};
use ulc::web::{IdbStore, WasmClient, WebRuntime, WebSocketTransport};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// The devnet, or `None` (after saying why) when the tests are to skip.
fn devnet() -> Option<Value> {
    match option_env!("ULC_DEVNET_JSON") {
        Some(text) if !text.trim().is_empty() => match serde_json::from_str(text) {
            Ok(value) => Some(value),
            Err(e) => panic!("ULC_DEVNET_JSON is not JSON: {e}"),
        },
        _ if option_env!("CI") == Some("true") => {
            panic!(
                "ULC_DEVNET_JSON was not set at build time, and CI=true: the devnet tests must run"
            )
        }
        _ => {
            console_log!(
                "skipped: ULC_DEVNET_JSON not set at build time (scripts/test.sh sets it)"
            );
            None
        }
    }
}

/// The client configuration for the devnet, as a page would write it.
fn config_json(devnet: &Value, storage: &str) -> String {
    let servers: Vec<Value> = devnet["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| json!({ "enode": s["enode"], "bridge": s["bridgeUrl"] }))
        .collect();
    json!({
        "chainId": devnet["chainId"],
        "genesisHash": devnet["genesisHash"],
        "servers": servers,
        "fraction": devnet["fraction"],
        "storage": storage,
    })
    .to_string()
}

fn resolved(devnet: &Value) -> ResolvedConfig {
    ClientConfig::from_json(&config_json(devnet, "memory"))
        .expect("config")
        .resolve()
        .expect("resolve")
}

async fn sleep_ms(ms: u64) {
    WebRuntime::new().sleep(Duration::from_millis(ms)).await;
}

/// `fut`, or `None` after `ms`.
async fn within<T>(ms: u64, fut: impl std::future::Future<Output = T>) -> Option<T> {
    match select(Box::pin(fut), Box::pin(sleep_ms(ms))).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}

/// A JSON-RPC call to anvil from the page (anvil answers CORS preflights).
async fn anvil(url: &str, method: &str, params: Value) -> Value {
    let fetch = js_sys::Function::new_with_args(
        "url, body",
        "return fetch(url, {method: 'POST', headers: {'content-type': 'application/json'}, body}).then(r => r.text())",
    );
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string();
    let promise =
        fetch.call2(&wasm_bindgen::JsValue::NULL, &url.into(), &body.into()).expect("call fetch");
    let text = wasm_bindgen_futures::JsFuture::from(
        promise.dyn_into::<js_sys::Promise>().expect("promise"),
    )
    .await
    .expect("fetch anvil");
    let reply: Value = serde_json::from_str(&text.as_string().expect("text")).expect("anvil JSON");
    reply["result"].clone()
}

/// Sends `request` through the client and returns its parsed `{"result"}`/`{"error"}`.
async fn call(client: &WasmClient, method: &str, params: Value) -> Value {
    let text = client.request_text(json!({ "method": method, "params": params }).to_string()).await;
    serde_json::from_str(&text).expect("response JSON")
}

fn quantity(value: &Value) -> u64 {
    let text = value.as_str().expect("hex quantity");
    u64::from_str_radix(text.trim_start_matches("0x"), 16).expect("hex")
}

/// Polls `eth_blockNumber` until the client has a head above 0 (a quorum formed).
async fn wait_for_head(client: &WasmClient, seconds: u64) -> u64 {
    for _ in 0..seconds * 4 {
        let reply = call(client, "eth_blockNumber", json!([])).await;
        if let Some(result) = reply.get("result") {
            let number = quantity(result);
            if number > 0 {
                return number;
            }
        }
        sleep_ms(250).await;
    }
    panic!("no head within {seconds} s");
}

#[wasm_bindgen_test]
async fn websocket_carries_a_les_handshake_through_the_bridge() {
    let Some(devnet) = devnet() else { return };
    let config = resolved(&devnet);
    let server = &config.servers[0];
    let runtime = WebRuntime::new();
    let mut connection =
        WebSocketTransport::new().connect(server).await.expect("connect through the bridge");

    let session_config = SessionConfig::new(
        NodeKey::random().expect("key"),
        Role::Client(session::ClientConfig { announce_type: AnnounceType::Signed, trusted: true }),
        config.chain_id,
        config.fork_schedule.clone(),
    );
    let mut session =
        Session::connect(session_config, server.enode.public_key, runtime.now()).expect("session");
    let deadline = runtime.now().saturating_add(Duration::from_secs(15));
    let info = 'established: loop {
        while let Some(bytes) = session.poll_transmit() {
            connection.send(bytes).await.expect("send");
        }
        while let Some(event) = session.poll_event() {
            match event {
                Event::Established(info) => break 'established info,
                Event::Disconnected { reason, error, .. } => {
                    panic!("disconnected: {reason:?} {error:?}")
                }
                _ => {}
            }
        }
        assert!(runtime.now() < deadline, "no Established within 15 s");
        // recv is cancel-safe, so racing it against a timer loses nothing.
        if let Some(received) = within(100, connection.recv()).await {
            session.handle_input(&received.expect("recv"), runtime.now());
        }
        if session.poll_timeout().is_some_and(|t| t <= runtime.now()) {
            session.handle_timeout(runtime.now());
        }
    };
    assert_eq!(info.node_id, server.node_id(), "RLPx authenticated the configured key");
    assert_eq!(info.status.network_id, config.chain_id);
    connection.close();
    assert!(matches!(connection.recv().await, Err(TransportError::Closed { .. })));
    assert!(connection.send(vec![1]).await.is_err());
}

#[wasm_bindgen_test]
async fn bridge_refusal_is_a_close_with_code_1008() {
    let Some(devnet) = devnet() else { return };
    let bridge = devnet["bridgeUrl"].as_str().expect("bridgeUrl");
    let mut server = resolved(&devnet).servers[0].clone();
    // Port 9 on loopback is on no devnet allow-list.
    server.spec.bridge = Some(format!("{bridge}/127.0.0.1:9"));
    let outcome = match WebSocketTransport::new().connect(&server).await {
        Ok(mut connection) => connection.recv().await.map(|_| ()),
        Err(error) => Err(error),
    };
    match outcome {
        Err(TransportError::Closed { code: 1008, reason }) => {
            assert!(reason.contains("127.0.0.1:9"), "the reason names the target: {reason}")
        }
        other => panic!("expected Closed(1008), got {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn transport_needs_a_ws_bridge_url() {
    let Some(devnet) = devnet() else { return };
    let enode = devnet["servers"][0]["enode"].as_str().expect("enode").to_string();
    let parsed: ulc::les::crypto::Enode = enode.parse().expect("enode");
    for bridge in [None, Some(String::new()), Some("http://127.0.0.1:1/x".to_string())] {
        let server = Server {
            spec: ServerSpec { enode: enode.clone(), bridge, trusted: true },
            enode: parsed.clone(),
        };
        match WebSocketTransport::new().connect(&server).await {
            Err(TransportError::Unsupported(_)) => {}
            other => panic!("expected Unsupported, got {:?}", other.map(|_| ())),
        }
    }
    // A bridge that is not there: a connect error after the browser gives up, no panic.
    let server = Server {
        spec: ServerSpec {
            enode: enode.clone(),
            bridge: Some("ws://127.0.0.1:9/x:1".into()),
            trusted: true,
        },
        enode: parsed,
    };
    match WebSocketTransport::new().connect(&server).await {
        Err(TransportError::Connect { .. }) => {}
        other => panic!("expected Connect, got {:?}", other.map(|_| ())),
    }
}

#[wasm_bindgen_test]
async fn provider_answers_verified_data_that_matches_anvil() {
    let Some(devnet) = devnet() else { return };
    let rpc = devnet["rpcUrl"].as_str().expect("rpcUrl").to_string();
    let client = WasmClient::start_native(&config_json(&devnet, "memory")).await.expect("start");

    let chain_id = call(&client, "eth_chainId", json!([])).await;
    assert_eq!(
        chain_id["result"],
        json!(format!("{:#x}", devnet["chainId"].as_u64().expect("chainId")))
    );

    let head = wait_for_head(&client, 40).await;
    let anvil_head = quantity(&anvil(&rpc, "eth_blockNumber", json!([])).await);
    assert!(head <= anvil_head + 1 && head + 5 >= anvil_head, "head {head}, anvil at {anvil_head}");

    // Balances move every block (the trickle), so both are asked at the same block.
    let account = devnet["devAccounts"][1]["address"].as_str().expect("dev account");
    let at = format!("{head:#x}");
    let ours = call(&client, "eth_getBalance", json!([account, at])).await;
    let theirs = anvil(&rpc, "eth_getBalance", json!([account, at])).await;
    assert_eq!(ours["result"], theirs, "{ours}");

    let block = call(&client, "eth_getBlockByNumber", json!([at, false])).await;
    let anvil_block = anvil(&rpc, "eth_getBlockByNumber", json!([at, false])).await;
    assert_eq!(block["result"]["hash"], anvil_block["hash"]);

    let unknown = call(&client, "eth_noSuchMethod", json!([])).await;
    assert_eq!(unknown["error"]["code"], json!(4200), "{unknown}");

    let metrics = call(&client, "ulc_metrics", json!([])).await;
    let environment = &metrics["result"]["environment"];
    assert!(environment["wasmMemoryBytes"].as_u64().unwrap_or(0) > 0, "{metrics}");
    assert!(environment["cpuMs"].as_f64().unwrap_or(0.0) > 0.0, "{metrics}");
    assert_eq!(environment["storage"], json!("memory"));
    client.stop();
}

#[wasm_bindgen_test]
async fn indexeddb_warm_start_restores_the_head() {
    let Some(devnet) = devnet() else { return };
    let chain_id = devnet["chainId"].as_u64().expect("chainId");
    IdbStore::delete_database(&ulc::web::idb::database_name(chain_id))
        .await
        .expect("delete old database");
    let config = config_json(&devnet, "indexeddb");

    let first = WasmClient::start_native(&config).await.expect("start");
    assert!(first.client().current_head().is_none(), "a new database has no head");
    let head = wait_for_head(&first, 40).await;
    // The head is written to the store after it is accepted; give the write a moment.
    sleep_ms(1000).await;
    first.stop();
    drop(first);

    let second = WasmClient::start_native(&config).await.expect("restart");
    // At once, before any server could have answered: the stored head, marked stale.
    let restored = second.client().current_head().expect("a restored head");
    assert!(restored.stale, "not yet confirmed by a fresh quorum");
    assert!(restored.header.number() >= head, "restored {} < {head}", restored.header.number());
    let reply = call(&second, "eth_blockNumber", json!([])).await;
    assert!(quantity(&reply["result"]) >= head, "{reply}");
    let metrics = call(&second, "ulc_metrics", json!([])).await;
    assert_eq!(metrics["result"]["environment"]["storage"], json!("indexeddb"));
    assert!(metrics["result"]["environment"]["storageUsageBytes"].as_u64().is_some(), "{metrics}");
    second.stop();
}
