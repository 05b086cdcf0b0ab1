//! How the client reaches a LES server: a byte stream that carries RLPx end to end. In the
//! browser it is a WebSocket to a les-bridge (`ws://bridge/host:port`); natively a TCP
//! connection or the same WebSocket. The transport never interprets the bytes.

use crate::config::Server;
use futures_util::future::LocalBoxFuture;

/// Why a connection could not be made or broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The server (or bridge) could not be reached.
    #[error("connect to {target}: {reason}")]
    Connect {
        /// The URL or address dialled.
        target: String,
        /// What failed.
        reason: String,
    },
    /// The stream failed after it was open.
    #[error("connection: {0}")]
    Io(String),
    /// The remote end closed the stream (for a WebSocket: the close code and reason).
    #[error("closed ({code}): {reason}")]
    Closed {
        /// WebSocket close code, or 1006 when the stream simply ended.
        code: u16,
        /// The close reason given, if any.
        reason: String,
    },
    /// This transport cannot reach this server (e.g. no bridge URL in a browser).
    #[error("unsupported server address: {0}")]
    Unsupported(String),
}

/// Opens connections to servers.
pub trait Transport: 'static {
    /// One open byte stream.
    type Connection: Connection;
    /// Opens a stream to `server`.
    fn connect(
        &self,
        server: &Server,
    ) -> LocalBoxFuture<'static, Result<Self::Connection, TransportError>>;
}

/// An open byte stream to one server.
pub trait Connection: 'static {
    /// Writes `bytes` (one or more RLPx packets) to the stream.
    fn send(&mut self, bytes: Vec<u8>) -> LocalBoxFuture<'_, Result<(), TransportError>>;
    /// The next chunk of bytes from the stream; `Err(Closed)` once it has ended.
    ///
    /// Must be cancel-safe: dropping the future before it completes loses no bytes (the
    /// driver selects between this and its other inputs).
    fn recv(&mut self) -> LocalBoxFuture<'_, Result<Vec<u8>, TransportError>>;
    /// Closes the stream; further calls fail.
    fn close(&mut self);
}
