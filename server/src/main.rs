//! `lesd`: a LES server in front of any Ethereum JSON-RPC node.
//!
//! Prints exactly one line to stdout, the node's enode URL, once it listens; everything
//! else (tracing, filtered by `RUST_LOG`) goes to stderr. SIGINT or SIGTERM shut it down
//! gracefully: clients are sent Disconnect(Quitting), pending writes are flushed, exit 0.

use clap::Parser;
use lesd::daemon::{Daemon, DaemonConfig, StartError, load_or_create_key};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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

/// Why lesd stopped with an error.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
}

async fn run(cli: Cli) -> Result<(), RunError> {
    let key_path = cli.nodekey.clone().unwrap_or_else(|| cli.datadir.join("nodekey"));
    let key = load_or_create_key(&key_path)?;
    let daemon = Daemon::start(DaemonConfig {
        upstream: cli.upstream,
        datadir: Some(cli.datadir),
        key,
        listen: cli.listen,
        ws: cli.ws,
        metrics: cli.metrics,
        max_clients: cli.max_clients,
        poll_interval: Duration::from_millis(cli.poll_interval_ms),
    })
    .await?;
    let signals = les_bridge::shutdown::ShutdownSignals::install().map_err(RunError::Signal)?;
    // The one line on stdout: what a supervisor (devnet, tests) reads to dial us.
    println!("{}", daemon.enode());
    signals.wait().await;
    tracing::info!("shutting down");
    daemon.shutdown().await;
    Ok(())
}
