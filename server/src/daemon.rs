//! A whole lesd in one value: upstream, head follower, listeners and metrics, the service
//! model (client pool, payment receivers, redeemer, admin endpoint), started together and
//! shut down together. The `lesd` binary is this plus the command line; tests and
//! benchmarks run it in-process on OS-chosen ports.
//!
//! [`Daemon::start`] runs the service model with its defaults (free service only, no admin
//! endpoint); [`Daemon::start_with`] takes a [`ServiceConfig`].

use crate::follow::{Follower, HeadReceiver};
use crate::metrics::Metrics;
use crate::node::{Node, NodeConfig};
use crate::pay::chain::{ChainError, ChannelContract, PayeeKey};
use crate::pay::channel::{ChannelConfig, ChannelReceiver, ConfigError};
use crate::pay::ledger::{Ledger, LedgerError};
use crate::pay::receiver::Receivers;
use crate::pay::redeem::{RedeemConfig, Redeemer};
use crate::pay::service::{PayService, ServiceConfig};
use crate::serve::Server;
use crate::store::{Store, StoreError};
use crate::upstream::{Upstream, UpstreamError};
use les::crypto::{CryptoError, Enode, NodeKey};
use les::session::ServeOffer;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long [`Daemon::shutdown`] waits for clients to take their Disconnect.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything a lesd needs to start.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The upstream's JSON-RPC URL.
    pub upstream: String,
    /// Where the header/receipt cache lives; `None` runs without one.
    pub datadir: Option<PathBuf>,
    /// The node key.
    pub key: NodeKey,
    /// TCP listen address (port 0: the OS picks).
    pub listen: SocketAddr,
    /// Optional WebSocket listen address.
    pub ws: Option<SocketAddr>,
    /// Optional Prometheus endpoint address.
    pub metrics: Option<SocketAddr>,
    /// Most clients at once.
    pub max_clients: usize,
    /// Most requests of all clients served at once ([`crate::queue`]);
    /// [`crate::node::default_serving_slots`] unless the operator says otherwise.
    pub serving_slots: usize,
    /// Upstream head polling interval.
    pub poll_interval: Duration,
}

/// Why lesd could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The node key file could not be read or written.
    #[error("node key file {path}: {source}")]
    NodeKeyIo {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The node key file is not 64 hex characters.
    #[error("node key file {path} does not hold 32 hex-encoded bytes")]
    NodeKeyFormat {
        /// The file.
        path: PathBuf,
    },
    /// The key bytes are not a valid secp256k1 secret key, or no randomness.
    #[error("node key: {0}")]
    NodeKey(#[from] CryptoError),
    /// The cache could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The upstream could not be reached or answered nonsense.
    #[error("upstream: {0}")]
    Upstream(#[from] UpstreamError),
    /// The payment ledger could not be opened or read.
    #[error("payment ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// Payments were configured without a data directory for the ledger.
    #[error("payments need a data directory for the payment ledger")]
    PaymentsNeedDatadir,
    /// The payee key could not be loaded.
    #[error("payee key: {0}")]
    PayeeKey(#[source] Box<ChainError>),
    /// The channel receiver's settings are unusable.
    #[error("payment channel settings: {0}")]
    Channel(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The bind failure.
        source: std::io::Error,
    },
}

/// A running lesd.
#[derive(Debug)]
pub struct Daemon {
    node: Node,
    metrics: Metrics,
    heads: HeadReceiver,
    local_addr: SocketAddr,
    ws_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    upstream: Upstream,
    service: Option<PayService>,
    admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener =
        TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
    let local = listener.local_addr().map_err(|source| StartError::Listen { addr, source })?;
    Ok((listener, local))
}

impl Daemon {
    /// Connects to the upstream, binds every listener and starts serving, with the service
    /// model's defaults.
    pub async fn start(config: DaemonConfig) -> Result<Self, StartError> {
        Self::start_with(config, ServiceConfig::default()).await
    }

    /// [`Daemon::start`] with the service model configured by `service`.
    pub async fn start_with(
        config: DaemonConfig,
        service_config: ServiceConfig,
    ) -> Result<Self, StartError> {
        let store = config.datadir.as_deref().map(Store::open).transpose()?;
        let upstream = Upstream::connect(&config.upstream, store).await?;
        let metrics = Metrics::new();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let follower = Follower::new(
            upstream.clone(),
            config.key.clone(),
            config.poll_interval.max(Duration::from_millis(1)),
            metrics.clone(),
        );
        let heads = follower.subscribe();
        let server =
            Server::new(upstream.clone(), follower.window(), heads.clone(), metrics.clone());
        // The upstream is taken to be an archive node (state at every block), as anvil is.
        let mut node_config = NodeConfig::new(
            config.key.clone(),
            upstream.network_id(),
            upstream.genesis(),
            ServeOffer::ARCHIVE,
        );
        node_config.max_clients = config.max_clients;
        node_config.serving_slots = config.serving_slots;
        let mut tasks = Vec::new();
        let service = if service_config.enabled {
            let service = start_service(&config, &service_config, &upstream, &metrics)?;
            node_config.flow = service.initial_flow();
            Some(service)
        } else {
            None
        };
        let node = Node::new(
            node_config,
            server,
            heads.clone(),
            upstream.genesis().clone(),
            metrics.clone(),
            service.clone(),
            shutdown_rx.clone(),
        );
        let (listener, local_addr) = bind(config.listen).await?;
        if let Some(service) = &service {
            tasks.push(tokio::spawn(service.clone().run(shutdown_rx.clone())));
        }
        let admin_addr = match (&service, service_config.admin) {
            (Some(service), Some(addr)) => {
                let (listener, local) = bind(addr).await?;
                tasks.push(tokio::spawn(crate::pay::admin::serve(
                    service.clone(),
                    listener,
                    shutdown_rx.clone(),
                )));
                tracing::info!(%local, "admin API listening");
                Some(local)
            }
            _ => None,
        };
        let metrics_addr = match config.metrics {
            Some(addr) => {
                let (listener, local) = bind(addr).await?;
                tasks.push(tokio::spawn(metrics.clone().serve(listener, shutdown_rx.clone())));
                Some(local)
            }
            None => None,
        };
        let ws_addr = match config.ws {
            Some(addr) => {
                let (listener, local) = bind(addr).await?;
                let node = node.clone();
                tasks.push(tokio::spawn(async move { node.run_ws(listener).await }));
                Some(local)
            }
            None => None,
        };
        tasks.push(tokio::spawn(follower.run(shutdown_rx)));
        let accept = node.clone();
        tasks.push(tokio::spawn(async move { accept.run_tcp(listener).await }));
        tracing::info!(%local_addr, upstream = %config.upstream, "lesd listening");
        Ok(Self {
            node,
            metrics,
            heads,
            local_addr,
            ws_addr,
            metrics_addr,
            upstream,
            service,
            admin_addr,
            shutdown,
            tasks,
        })
    }

    /// The admin endpoint's address, if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The service model, if it runs.
    pub fn service(&self) -> Option<&PayService> {
        self.service.as_ref()
    }

    /// The enode URL clients dial.
    pub fn enode(&self) -> Enode {
        self.node.enode(self.local_addr)
    }

    /// The TCP listen address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The WebSocket listen address, if any.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// The metrics endpoint address, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The published heads.
    pub fn heads(&self) -> HeadReceiver {
        self.heads.clone()
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The accepting node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Disconnects every client with Quitting, stops the listeners and the follower, and
    /// waits (at most [`SHUTDOWN_GRACE`]) for the client tasks to flush and end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, self.node.wait_for_clients()).await.is_err() {
            tracing::warn!(left = self.node.connections(), "clients still open at shutdown");
        }
        // After the clients: their last charges are in the pool, so they are in the final
        // checkpoint.
        if let Some(service) = &self.service {
            service.shutdown().await;
        }
    }
}

/// The pool, its ledger (under the data directory) and the payment receivers.
fn start_service(
    config: &DaemonConfig,
    service_config: &ServiceConfig,
    upstream: &Upstream,
    metrics: &Metrics,
) -> Result<PayService, StartError> {
    let ledger = config.datadir.as_deref().map(Ledger::open).transpose()?;
    let service =
        PayService::new(service_config, config.max_clients, ledger.clone(), metrics.clone())?;
    let mut receivers = Receivers::new();
    let mut terms = None;
    if let Some(payment) = &service_config.payment {
        let ledger = ledger.ok_or(StartError::PaymentsNeedDatadir)?;
        let key = PayeeKey::load_or_create(&payment.payee_key)
            .map_err(|error| StartError::PayeeKey(Box::new(error)))?;
        let contract = ChannelContract::new(upstream.clone(), payment.contract);
        let receiver = ChannelReceiver::new(
            ChannelConfig {
                payee: key.address(),
                confirmations: payment.confirmations,
                accept_margin: payment.accept_margin,
                rate: service_config.tokens_per_wei,
                min_deposit: payment.min_deposit,
                cache_ttl: Duration::from_secs(10),
            },
            contract.clone(),
            ledger.clone(),
            service.balance_sink(),
        )?;
        terms = Some(receiver.terms());
        receivers.insert(Arc::new(receiver));
        tracing::info!(payee = %key.address(), contract = %payment.contract, "accepting channel cheques");
        let redeem =
            RedeemConfig { redeem_margin: payment.redeem_margin, ..RedeemConfig::default() };
        // Not among the tasks shutdown waits for: it stops on its handle's shutdown, which
        // the service sends after the clients are gone.
        let (handle, _task) = Redeemer::new(redeem, ledger, contract, key).spawn();
        service.set_redeemer(handle);
    }
    service.set_receivers(receivers, terms);
    Ok(service)
}

/// Reads the node key (64 hex characters, optional `0x`) from `path`, or creates a random
/// one there (mode 0600 on Unix) if the file does not exist.
pub fn load_or_create_key(path: &Path) -> Result<NodeKey, StartError> {
    let io = |source| StartError::NodeKeyIo { path: path.to_owned(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = parse_hex32(text.trim())
                .ok_or_else(|| StartError::NodeKeyFormat { path: path.to_owned() })?;
            Ok(NodeKey::from_bytes(&bytes)?)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = NodeKey::random()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let hex: String = key.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
            write_private(path, &hex).map_err(io)?;
            tracing::info!(path = %path.display(), "generated a new node key");
            Ok(key)
        }
        Err(error) => Err(io(error)),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.strip_prefix("0x").unwrap_or(text);
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_key_is_created_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("lesd-key-test-{}", std::process::id()));
        let path = dir.join("nodekey");
        let _ = std::fs::remove_file(&path);
        let created = load_or_create_key(&path).expect("created");
        let read = load_or_create_key(&path).expect("read back");
        assert_eq!(created.to_bytes(), read.to_bytes());
        std::fs::write(&path, "not hex").expect("overwrite");
        assert!(matches!(load_or_create_key(&path), Err(StartError::NodeKeyFormat { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hex_keys_parse_strictly() {
        let hex = "11".repeat(32);
        assert_eq!(parse_hex32(&hex), Some([0x11; 32]));
        assert_eq!(parse_hex32(&format!("0x{hex}")), Some([0x11; 32]));
        assert_eq!(parse_hex32(&hex[..62]), None);
        assert_eq!(parse_hex32(&"zz".repeat(32)), None);
        assert_eq!(parse_hex32(&"é".repeat(32)), None);
    }
}
