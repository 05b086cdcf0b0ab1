//! `les-bridge`: a WebSocket <-> TCP relay that lets browsers reach LES servers.
//!
//! Browsers cannot open TCP connections, and LES servers speak RLPx over TCP. The bridge
//! accepts a WebSocket at `ws://BRIDGE/HOST:PORT`, checks `HOST:PORT` against its
//! allow-list, opens a TCP connection to it, and copies bytes both ways: binary messages
//! from the browser to the socket, socket reads to the browser as binary messages.
//!
//! - It never parses what it carries. The RLPx handshake establishes keys that only the
//!   browser and the LES server hold, so everything after it is ciphertext to the bridge;
//!   the handshake itself is relayed as opaque bytes too. A bridge can drop or delay a
//!   connection, never read or forge its messages.
//! - It dials only allow-listed targets, so it cannot be used to reach arbitrary hosts.
//!   Refusals complete the WebSocket handshake and then close with a code and a reason a
//!   page can read from `CloseEvent` (an HTTP 403 would reach the page as a bare 1006):
//!   1008 for a target not on the list, a malformed path or too many connections from one
//!   address, 1013 when the bridge is full, 1011 when the target is unreachable or fails,
//!   1003 for a text message, 1009 for an oversized message, 1000 when the target closes or
//!   the connection is idle, 1001 on shutdown. See [`CloseCause`].
//! - Backpressure both ways: the next chunk is read from one side only once the other side
//!   has taken the previous one.
//!
//! [`serve`] runs the bridge in-process; [`ws::WsByteStream`] (with [`ws::accept`]) lets a
//! server such as `lesd --ws` speak RLPx over a WebSocket directly, as over TCP.
#![deny(missing_docs)]

pub mod config;
pub mod relay;
mod server;
pub mod shutdown;
pub mod target;
pub mod ws;

pub use config::BridgeConfig;
pub use relay::CloseCause;
pub use server::serve;
pub use target::{AllowList, AllowListError, Target, TargetError};
pub use ws::WsByteStream;
