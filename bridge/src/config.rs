//! The bridge's settings and their defaults (the CLI's defaults come from here too).

use crate::target::AllowList;
use std::num::NonZeroUsize;
use std::time::Duration;

/// Default listen address: loopback only, so a bridge is never exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8546";
/// Default cap on relayed connections at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default cap on relayed connections at once from one IP address.
pub const DEFAULT_MAX_PER_IP: usize = 16;
/// Default idle timeout in seconds: twice the LES session's 30 s read timeout, so a healthy
/// session (which pings every 15 s) is never cut, and an abandoned one frees its slot.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// Default largest WebSocket message (and frame) accepted from a browser: 16 MiB, the size
/// of the largest RLPx frame (its length field has 24 bits). The relay is a byte stream, so
/// this bounds what one message may buffer in the bridge, not what the protocol may carry.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 24;
/// Default time allowed to open the TCP connection to a target.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed for a browser's WebSocket handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on WebSocket handshakes (and refusals being delivered) in progress;
/// connections beyond it are dropped unanswered, which bounds what a flood of half-open or
/// refused connections can hold.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 256;
/// Time a closing connection is given to complete the WebSocket closing handshake.
pub const DEFAULT_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Everything [`crate::serve`] needs to know.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The targets browsers may reach.
    pub allow: AllowList,
    /// Relayed connections at once; more are refused (close 1013, try again later).
    pub max_connections: usize,
    /// Relayed connections at once from one IP address; more are refused (close 1008).
    pub max_per_ip: usize,
    /// A connection with no data either way for this long is closed on both sides.
    pub idle_timeout: Duration,
    /// Largest WebSocket message or frame accepted from a browser; a larger one closes the
    /// connection (1009). Messages to the browser are never larger either.
    pub max_message_size: NonZeroUsize,
    /// Time allowed to open the TCP connection to a target.
    pub connect_timeout: Duration,
    /// Time allowed for a browser's WebSocket handshake.
    pub handshake_timeout: Duration,
    /// WebSocket handshakes (and refusals being delivered) in progress at once; connections
    /// beyond it are dropped unanswered.
    pub max_pending_handshakes: usize,
    /// Time a closing connection is given to complete the WebSocket closing handshake.
    pub close_grace: Duration,
}

impl BridgeConfig {
    /// The defaults above, with the given allow-list.
    pub fn new(allow: AllowList) -> Self {
        Self {
            allow,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_ip: DEFAULT_MAX_PER_IP,
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            max_message_size: NonZeroUsize::new(DEFAULT_MAX_MESSAGE_SIZE)
                .unwrap_or(NonZeroUsize::MIN),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            close_grace: DEFAULT_CLOSE_GRACE,
        }
    }
}
