//! `lesd`: a LES server in front of any Ethereum JSON-RPC node.
//!
//! Prints exactly one line to stdout, the node's enode URL, once it listens; everything
//! else (tracing, filtered by `RUST_LOG`) goes to stderr. SIGINT or SIGTERM shut it down
//! gracefully: clients are sent Disconnect(Quitting), pending writes are flushed, exit 0.

use clap::Parser;
use les::crypto::NodeKey;
use les::session::ServeOffer;
use lesd::follow::Follower;
use lesd::metrics::Metrics;
use lesd::node::{Node, NodeConfig};
use lesd::serve::Server;
use lesd::store::Store;
use lesd::upstream::Upstream;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long shutdown waits for clients to take their Disconnect.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A LES server (les/2, les/3, les/4) in front of an Ethereum JSON-RPC node.
#[derive(Debug, Parser)]
#[command(name = "lesd", version, about)]
struct Cli {
    /// The upstream node's JSON-RPC URL (http:// only). An archive node serves state at
    /// every block; anvil is one.
    #[arg(long, env = "LESD_UPSTREAM")]
    upstream: String,
    /// Directory for the node key and the header/receipt cache.
    #[arg(long, default_value = "./lesd-data")]
    datadir: PathBuf,
    /// TCP address to accept LES clients on.
    #[arg(long, default_value = "127.0.0.1:30303")]
    listen: SocketAddr,
    /// Also accept LES clients over WebSocket on this address (binary messages carry the
    /// RLPx byte stream, as les-bridge relays it).
    #[arg(long)]
    ws: Option<SocketAddr>,
    /// File holding the node key as 64 hex characters; default <datadir>/nodekey,
    /// generated on first start.
    #[arg(long)]
    nodekey: Option<PathBuf>,
    /// Most clients served at once; more are disconnected with TooManyPeers.
    #[arg(long, default_value_t = 10_000)]
    max_clients: usize,
    /// Serve Prometheus metrics over HTTP on this address.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// How often to poll the upstream for a new head, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_interval_ms: u64,
}

/// Why lesd could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("node key file {path}: {source}")]
    NodeKeyIo { path: PathBuf, source: std::io::Error },
    #[error("node key file {path} does not hold 32 hex-encoded bytes")]
    NodeKeyFormat { path: PathBuf },
    #[error("node key: {0}")]
    NodeKey(#[from] les::crypto::CryptoError),
    #[error("store: {0}")]
    Store(#[from] lesd::store::StoreError),
    #[error("upstream: {0}")]
    Upstream(#[from] lesd::upstream::UpstreamError),
    #[error("listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "lesd failed");
            ExitCode::FAILURE
        }
    }
}

/// Reads the node key from `path`, or creates it there (mode 0600 on Unix) if absent.
fn load_or_create_key(path: &Path) -> Result<NodeKey, StartError> {
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

async fn run(cli: Cli) -> Result<(), StartError> {
    let key_path = cli.nodekey.clone().unwrap_or_else(|| cli.datadir.join("nodekey"));
    let key = load_or_create_key(&key_path)?;
    let store = Store::open(&cli.datadir)?;
    let upstream = Upstream::connect(&cli.upstream, Some(store)).await?;
    let metrics = Metrics::new();
    let (shutdown_tx, shutdown) = watch::channel(false);

    let follower = Follower::new(
        upstream.clone(),
        key.clone(),
        Duration::from_millis(cli.poll_interval_ms.max(1)),
        metrics.clone(),
    );
    let server =
        Server::new(upstream.clone(), follower.window(), follower.subscribe(), metrics.clone());
    // The upstream is assumed to be an archive node (state at every block), as anvil is.
    let mut config =
        NodeConfig::new(key, upstream.network_id(), upstream.genesis(), ServeOffer::ARCHIVE);
    config.max_clients = cli.max_clients;
    let node = Node::new(
        config,
        server,
        follower.subscribe(),
        upstream.genesis().clone(),
        metrics.clone(),
        shutdown.clone(),
    );

    let listener = TcpListener::bind(cli.listen)
        .await
        .map_err(|source| StartError::Listen { addr: cli.listen, source })?;
    let local =
        listener.local_addr().map_err(|source| StartError::Listen { addr: cli.listen, source })?;
    if let Some(addr) = cli.metrics {
        let metrics_listener =
            TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
        tokio::spawn(metrics.clone().serve(metrics_listener, shutdown.clone()));
        tracing::info!(%addr, "metrics endpoint");
    }
    if let Some(addr) = cli.ws {
        let ws_listener =
            TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
        let _ = ws_listener; // TODO(bridge merge)
        tracing::info!(%addr, "WebSocket listener");
    }
    let follow_task = tokio::spawn(follower.run(shutdown.clone()));
    println!("{}", node.enode(local));
    tracing::info!(%local, upstream = %cli.upstream, "lesd listening");

    let accept_node = node.clone();
    let accept_task = tokio::spawn(async move { accept_node.run_tcp(listener).await });
    wait_for_signal().await?;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    let _ = accept_task.await;
    let _ = follow_task.await;
    if tokio::time::timeout(SHUTDOWN_GRACE, node.wait_for_clients()).await.is_err() {
        tracing::warn!(left = node.connections(), "clients still open at exit");
    }
    Ok(())
}

async fn wait_for_signal() -> Result<(), StartError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).map_err(StartError::Signal)?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.map_err(StartError::Signal),
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(StartError::Signal)
    }
}
