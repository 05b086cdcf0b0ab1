//! `lesd`: a LES server in front of any Ethereum JSON-RPC node.
//!
//! Prints exactly one line to stdout, the node's enode URL, once it listens; everything
//! else (tracing, filtered by `RUST_LOG`) goes to stderr. SIGINT or SIGTERM shut it down
//! gracefully: clients are sent Disconnect(Quitting), pending writes are flushed, exit 0.

use clap::Parser;
use lesd::daemon::{Daemon, DaemonConfig, StartError, load_or_create_key};
use lesd::les::pay::messages::{ExchangeRate, PriceFactors};
use lesd::pay::service::{FreeIdRule, PaymentConfig, ServiceConfig};
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
    /// Most requests of all clients served at once; more wait, paying clients' first.
    /// Default: four per core, at least eight.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    serving_slots: Option<u16>,
    /// Serve Prometheus metrics over HTTP on this address.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// How often to poll the upstream for a new head, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_interval_ms: u64,
    #[command(flatten)]
    service: ServiceArgs,
}

/// The service model: capacity, prices, payments, admin API.
#[derive(Debug, clap::Args)]
struct ServiceArgs {
    /// Serve without the service model: no client pool, no lespay, no charges; every client
    /// gets the minimum capacity.
    #[arg(long)]
    no_service: bool,
    /// Serve the admin JSON-RPC API (les_ namespace) over HTTP on this address.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Allow --admin on an address other than loopback (whoever reaches it can credit
    /// balances).
    #[arg(long)]
    admin_allow_remote: bool,
    /// Capacity shared by all clients, in cost units per ms [default: max-clients ×
    /// min-capacity].
    #[arg(long)]
    total_capacity: Option<u64>,
    /// Minimum (free-client) capacity, in cost units per ms [default: 16000, from geth's
    /// cost table].
    #[arg(long)]
    min_capacity: Option<u64>,
    /// A newcomer must outrank an incumbent even after paying for this much connection.
    #[arg(long, default_value_t = 180)]
    connected_bias_secs: u64,
    /// Positive-balance price: tokens per second connected.
    #[arg(long, default_value_t = 0)]
    price_pos_time: u64,
    /// Positive-balance price: tokens per second per 1e6 capacity units.
    #[arg(long, default_value_t = 1_000_000_000)]
    price_pos_capacity: u64,
    /// Positive-balance price: tokens per cost unit served, × 1e6.
    #[arg(long, default_value_t = 1_000_000)]
    price_pos_request: u64,
    /// Negative-balance (free use) price: tokens per second connected.
    #[arg(long, default_value_t = 0)]
    price_neg_time: u64,
    /// Negative-balance price: tokens per second per 1e6 capacity units.
    #[arg(long, default_value_t = 1_000_000_000)]
    price_neg_capacity: u64,
    /// Negative-balance price: tokens per cost unit served, × 1e6.
    #[arg(long, default_value_t = 1_000_000)]
    price_neg_request: u64,
    /// Expiry time constant of positive balances in seconds (0: never expire).
    #[arg(long, default_value_t = 0)]
    expiry_pos_secs: u64,
    /// Expiry time constant of negative balances in seconds (0: never expire).
    #[arg(long, default_value_t = 0)]
    expiry_neg_secs: u64,
    /// Key of free clients' debt: `address` (remote IP; node id for loopback, as geth) or
    /// `node` (always the node id; for devnets where every client is on 127.0.0.1).
    #[arg(long, default_value = "address", value_parser = parse_free_id)]
    free_id: FreeIdRule,
    /// How often balances are checkpointed to the payment ledger, in seconds.
    #[arg(long, default_value_t = 10)]
    checkpoint_secs: u64,
    /// The PaymentChannel contract; accepting channel cheques ("channel" receiver) needs it.
    #[arg(long)]
    channel_contract: Option<alloy_primitives::Address>,
    /// The payee key (64 hex characters); default <datadir>/payeekey, created if missing.
    /// Fund its address for the gas of redemptions.
    #[arg(long)]
    payee_key: Option<PathBuf>,
    /// Tokens credited per wei, as NUM/DEN (or NUM).
    #[arg(long, default_value = "1/1", value_parser = parse_rate)]
    tokens_per_wei: ExchangeRate,
    /// Cheques are refused when their channel expires within this many seconds.
    #[arg(long, default_value_t = 24 * 3600)]
    accept_margin_secs: u64,
    /// Channels are redeemed at the latest this many seconds before they expire.
    #[arg(long, default_value_t = 12 * 3600)]
    redeem_margin_secs: u64,
    /// Blocks a channel's on-chain state must be buried under before it counts.
    #[arg(long, default_value_t = 12)]
    confirmations: u64,
    /// The smallest channel deposit accepted, in wei.
    #[arg(long, default_value = "0")]
    min_deposit: alloy_primitives::U256,
}

fn parse_free_id(text: &str) -> Result<FreeIdRule, String> {
    match text {
        "address" => Ok(FreeIdRule::Address),
        "node" => Ok(FreeIdRule::NodeId),
        other => Err(format!("{other:?}: expected `address` or `node`")),
    }
}

fn parse_rate(text: &str) -> Result<ExchangeRate, String> {
    let (num, den) = text.split_once('/').unwrap_or((text, "1"));
    let num: u64 = num.trim().parse().map_err(|_| format!("{text:?}: numerator is not a u64"))?;
    let den: u64 = den.trim().parse().map_err(|_| format!("{text:?}: denominator is not a u64"))?;
    if den == 0 {
        return Err(format!("{text:?}: the denominator must not be 0"));
    }
    Ok(ExchangeRate { num, den })
}

impl ServiceArgs {
    fn config(&self, datadir: &std::path::Path) -> ServiceConfig {
        let payment = self.channel_contract.map(|contract| PaymentConfig {
            payee_key: self.payee_key.clone().unwrap_or_else(|| datadir.join("payeekey")),
            contract,
            rate: self.tokens_per_wei,
            accept_margin: Duration::from_secs(self.accept_margin_secs),
            redeem_margin: Duration::from_secs(self.redeem_margin_secs),
            confirmations: self.confirmations,
            min_deposit: self.min_deposit,
        });
        ServiceConfig {
            enabled: !self.no_service,
            total_capacity: self.total_capacity,
            min_capacity: self.min_capacity,
            connected_bias: Duration::from_secs(self.connected_bias_secs),
            pos_factors: PriceFactors {
                time: self.price_pos_time,
                capacity: self.price_pos_capacity,
                request: self.price_pos_request,
            },
            neg_factors: PriceFactors {
                time: self.price_neg_time,
                capacity: self.price_neg_capacity,
                request: self.price_neg_request,
            },
            pos_expiry: Duration::from_secs(self.expiry_pos_secs),
            neg_expiry: Duration::from_secs(self.expiry_neg_secs),
            free_id: self.free_id,
            checkpoint_interval: Duration::from_secs(self.checkpoint_secs.max(1)),
            tokens_per_wei: self.tokens_per_wei,
            payment,
            admin: self.admin,
            ..ServiceConfig::default()
        }
    }
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
    #[error("--admin {0} is not a loopback address; add --admin-allow-remote to serve it there")]
    AdminNotLoopback(SocketAddr),
}

async fn run(cli: Cli) -> Result<(), RunError> {
    let key_path = cli.nodekey.clone().unwrap_or_else(|| cli.datadir.join("nodekey"));
    let key = load_or_create_key(&key_path)?;
    if let Some(addr) = cli.service.admin
        && !addr.ip().is_loopback()
        && !cli.service.admin_allow_remote
    {
        return Err(RunError::AdminNotLoopback(addr));
    }
    let service = cli.service.config(&cli.datadir);
    let daemon = Daemon::start_with(
        DaemonConfig {
            upstream: cli.upstream,
            datadir: Some(cli.datadir),
            key,
            listen: cli.listen,
            ws: cli.ws,
            metrics: cli.metrics,
            max_clients: cli.max_clients,
            serving_slots: cli
                .serving_slots
                .map_or_else(lesd::node::default_serving_slots, usize::from),
            poll_interval: Duration::from_millis(cli.poll_interval_ms),
        },
        service,
    )
    .await?;
    let signals = les_bridge::shutdown::ShutdownSignals::install().map_err(RunError::Signal)?;
    // The one line on stdout: what a supervisor (devnet, tests) reads to dial us.
    println!("{}", daemon.enode());
    signals.wait().await;
    tracing::info!("shutting down");
    daemon.shutdown().await;
    Ok(())
}
