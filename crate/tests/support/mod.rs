//! What the client core's integration tests share: a real anvil (from lesd's test support),
//! real lesd in front of it, the client over TCP on a current-thread runtime, and
//! [`adversary`], an in-process LES server that lies when told to.
#![allow(dead_code)] // each test binary uses its own subset

#[path = "../../../server/tests/common/mod.rs"]
pub mod common;

pub mod adversary;

use alloy_primitives::B256;
use common::Anvil;
use les::crypto::NodeKey;
use serde_json::{Value, json};
use std::rc::Rc;
use std::str::FromStr;
use std::time::Duration;
use ulc::chain::{Chain, ClientEvent};
use ulc::client::Client;
use ulc::config::{ClientConfig, ServerSpec, StorageKind};
use ulc::native::{NativeTransport, TokioRuntime};
use ulc::store::MemoryStore;

/// How long a test waits for something that should happen within a few blocks.
pub const WAIT: Duration = Duration::from_secs(20);

/// The client core as native tests run it.
pub type NativeClient = Client<NativeTransport, MemoryStore, TokioRuntime>;

/// anvil plus `count` lesd in front of it.
pub struct Devnet {
    /// The node.
    pub anvil: Anvil,
    /// The honest servers.
    pub servers: Vec<lesd::daemon::Daemon>,
    /// anvil's genesis hash.
    pub genesis: B256,
}

impl Devnet {
    /// anvil with 1 s blocks and `count` lesd.
    pub async fn start(count: usize) -> Self {
        let anvil = Anvil::with_block_time(1);
        let mut servers = Vec::new();
        for _ in 0..count {
            servers.push(start_lesd(anvil.url()).await);
        }
        let genesis = anvil.rpc("eth_getBlockByNumber", json!(["0x0", false])).await;
        let genesis =
            B256::from_str(genesis["hash"].as_str().expect("hash")).expect("genesis hash");
        Self { anvil, servers, genesis }
    }

    /// A configuration trusting every lesd of this devnet.
    pub fn config(&self, fraction: u32) -> ClientConfig {
        let servers = self.servers.iter().map(|d| trusted(&d.enode().to_string())).collect();
        self.config_with(servers, fraction)
    }

    /// A configuration with exactly these servers, in this order.
    pub fn config_with(&self, servers: Vec<ServerSpec>, fraction: u32) -> ClientConfig {
        ClientConfig {
            chain_id: common::ANVIL_CHAIN_ID,
            genesis_hash: Some(self.genesis),
            servers,
            fraction,
            storage: StorageKind::Memory,
            payment: None,
        }
    }

    /// The hash anvil has for block `number`.
    pub async fn block_hash(&self, number: u64) -> String {
        let block =
            self.anvil.rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), false])).await;
        hex(&block["hash"])
    }

    /// Shuts every lesd down (anvil stops when dropped).
    pub async fn shutdown(self) {
        for server in self.servers {
            server.shutdown().await;
        }
    }
}

/// A trusted server with a direct TCP connection.
pub fn trusted(enode: &str) -> ServerSpec {
    ServerSpec { enode: enode.to_string(), bridge: None, trusted: true }
}

/// A lesd in front of `anvil_url` on an OS-chosen port.
pub async fn start_lesd(anvil_url: &str) -> lesd::daemon::Daemon {
    let any_port = || "127.0.0.1:0".parse().expect("address");
    lesd::daemon::Daemon::start(lesd::daemon::DaemonConfig {
        upstream: anvil_url.to_string(),
        datadir: None,
        key: NodeKey::random().expect("rng"),
        listen: any_port(),
        ws: None,
        metrics: None,
        max_clients: 100,
        serving_slots: lesd::node::default_serving_slots(),
        poll_interval: Duration::from_millis(50),
    })
    .await
    .expect("lesd starts")
}

/// Starts the client core with `config` over native TCP.
pub async fn start_client(config: &ClientConfig, store: MemoryStore) -> Rc<NativeClient> {
    let resolved = config.resolve().expect("config resolves");
    Client::start(resolved, NativeTransport, store, TokioRuntime::new())
        .await
        .expect("client starts")
}

/// Runs an async test body on a current-thread runtime inside a LocalSet (the core is
/// single-threaded, as in the browser).
pub fn run<F: std::future::Future<Output = ()>>(body: F) {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    tokio::task::LocalSet::new().block_on(&runtime, body);
}

/// A JSON string, lowercased (hex from anvil).
pub fn hex(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}")).to_lowercase()
}

/// Reading a client's event stream with a timeout.
pub trait NextEvent {
    /// The next event, or `None` after [`WAIT`].
    async fn next_event(&mut self) -> Option<ClientEvent>;

    /// Skips events until one matches `wanted`; `None` if none does within [`WAIT`].
    async fn wait_for(&mut self, wanted: impl Fn(&ClientEvent) -> bool) -> Option<ClientEvent>;
}

impl NextEvent for futures_channel::mpsc::UnboundedReceiver<ClientEvent> {
    async fn next_event(&mut self) -> Option<ClientEvent> {
        use futures_util::StreamExt;
        tokio::time::timeout(WAIT, self.next()).await.ok().flatten()
    }

    async fn wait_for(&mut self, wanted: impl Fn(&ClientEvent) -> bool) -> Option<ClientEvent> {
        use futures_util::StreamExt;
        let skip = async {
            while let Some(event) = self.next().await {
                if wanted(&event) {
                    return Some(event);
                }
            }
            None
        };
        tokio::time::timeout(WAIT, skip).await.ok().flatten()
    }
}

/// Every field of `ours` must be in `theirs` (anvil's answer) with the same value, hex
/// compared without case, recursively; arrays must have equal lengths.
///
/// Except a block's `size`: anvil leaves the (empty) withdrawals list out of the RLP it
/// measures, one byte less than the block's real encoding, which mainnet's recorded sizes
/// confirm (the provider's unit tests check `size` against them).
pub fn assert_same(path: &str, ours: &Value, theirs: &Value) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                if key == "size" && a.contains_key("withdrawalsRoot") {
                    continue;
                }
                let other = b.get(key).unwrap_or_else(|| {
                    panic!("{path}.{key}: anvil has no such field (ours: {value})")
                });
                assert_same(&format!("{path}.{key}"), value, other);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: lengths differ: ours {ours}, anvil {theirs}");
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                assert_same(&format!("{path}[{index}]"), x, y);
            }
        }
        (Value::String(a), Value::String(b)) => {
            assert_eq!(a.to_lowercase(), b.to_lowercase(), "{path}")
        }
        _ => assert_eq!(ours, theirs, "{path}"),
    }
}

/// Notices a provider sent, in order.
pub type Notices = Rc<std::cell::RefCell<Vec<ulc::provider::ProviderNotice>>>;

/// The provider over `client`, with the event pump the embedding layer runs (each event to
/// `handle_event`, then `process` spawned) and every notice it sends collected.
pub fn start_provider(
    client: &Rc<NativeClient>,
) -> (ulc::provider::Provider<NativeClient>, Notices, tokio::task::JoinHandle<()>) {
    use futures_util::StreamExt;
    let provider = ulc::provider::Provider::new(client.clone());
    let notices: Notices = Rc::default();
    let sink = notices.clone();
    provider.set_notifier(Box::new(move |notice| sink.borrow_mut().push(notice)));
    let mut events = client.events();
    let pumped = provider.clone();
    let pump = tokio::task::spawn_local(async move {
        while let Some(event) = events.next().await {
            pumped.handle_event(&event);
            tokio::task::spawn_local(pumped.process());
        }
    });
    (provider, notices, pump)
}
