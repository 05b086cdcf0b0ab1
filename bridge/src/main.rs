//! The `les-bridge` command: a WebSocket <-> TCP relay that lets browsers reach the LES
//! servers on its allow-list. Prints `ws://<addr>` on stdout once listening; logs go to
//! stderr (filter with RUST_LOG). SIGINT or SIGTERM closes every connection and exits 0.

use clap::Parser;
use les_bridge::config::{
    DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PER_IP,
};
use les_bridge::{AllowList, BridgeConfig, Target};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// WebSocket <-> TCP relay that lets browsers reach LES servers.
///
/// A browser opens ws://BRIDGE/HOST:PORT (for example ws://127.0.0.1:8546/127.0.0.1:30303);
/// the bridge connects to HOST:PORT only if it is on the allow-list and then copies bytes
/// both ways (binary messages only). It never parses them: after the RLPx handshake they
/// are ciphertext it has no key for. Refusals complete the WebSocket handshake and close
/// with a code and a reason the page can read (1008 not allowed / malformed path / too
/// many from this address, 1013 bridge full, 1011 target unreachable or failed, 1003 text message,
/// 1009 message too big, 1000 target closed or idle, 1001 shutting down).
#[derive(Debug, Parser)]
#[command(name = "les-bridge", version)]
struct Cli {
    /// Address to accept WebSocket connections on (ip:port; port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// A target browsers may reach, as HOST:PORT (IPv4, [IPv6] or DNS name); repeatable.
    /// Matched textually against the URL path, without DNS lookups.
    #[arg(long = "allow", value_name = "HOST:PORT")]
    allow: Vec<Target>,

    /// A file of allowed targets: one HOST:PORT per line, blank lines and # comments
    /// ignored; repeatable; adds to --allow.
    #[arg(long, value_name = "FILE")]
    allow_file: Vec<PathBuf>,

    /// Most connections relayed at once; more are refused with close 1013.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// Most connections relayed at once from one IP address; more are refused with close 1008.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PER_IP)]
    max_per_ip: usize,

    /// Close a connection (both sides) after this many seconds without data either way.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_IDLE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_secs: u64,

    /// Largest WebSocket message or frame accepted from a browser, in bytes; a larger one
    /// closes the connection with 1009.
    #[arg(long, value_name = "BYTES", default_value_t = default_max_message_size())]
    max_message_size: NonZeroUsize,
}

fn default_max_message_size() -> NonZeroUsize {
    NonZeroUsize::new(DEFAULT_MAX_MESSAGE_SIZE).unwrap_or(NonZeroUsize::MIN)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();

    let mut allow: AllowList = cli.allow.into_iter().collect();
    for file in &cli.allow_file {
        if let Err(error) = allow.extend_from_file(file) {
            eprintln!("les-bridge: {error}");
            return ExitCode::FAILURE;
        }
    }
    if allow.is_empty() {
        eprintln!("les-bridge: nothing is allowed: give --allow HOST:PORT or --allow-file FILE");
        return ExitCode::FAILURE;
    }
    let mut config = BridgeConfig::new(allow);
    config.max_connections = cli.max_connections;
    config.max_per_ip = cli.max_per_ip;
    config.idle_timeout = Duration::from_secs(cli.idle_timeout_secs);
    config.max_message_size = cli.max_message_size;

    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("les-bridge: cannot listen on {}: {error}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            eprintln!("les-bridge: {error}");
            return ExitCode::FAILURE;
        }
    };
    let signals = match les_bridge::shutdown::ShutdownSignals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("les-bridge: cannot install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "ws://{addr}");
    let _ = stdout.flush();

    les_bridge::serve(config, listener, signals.wait()).await;
    ExitCode::SUCCESS
}
