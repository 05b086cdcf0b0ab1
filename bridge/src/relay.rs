//! One browser connection, from WebSocket handshake to close: admission (limits, the URL
//! path's target, the allow-list), the TCP connection to the target, the byte relay with
//! backpressure both ways, and the closing of both sides with a reason the browser can read.
//!
//! The bridge never looks inside the bytes: after the RLPx handshake they are ciphertext it
//! has no key for, and the handshake itself is relayed as opaque bytes too.
//!
//! Refusals complete the WebSocket handshake first and then close with a code and reason,
//! because a browser's `WebSocket` API hides HTTP error responses (an HTTP 403 shows up
//! only as close code 1006 with no reason); a close frame's code and reason reach
//! `CloseEvent.code` and `CloseEvent.reason`.

use crate::config::BridgeConfig;
use crate::target::{Target, TargetError};
use crate::ws::{close_frame, ws_config};
use futures_util::{SinkExt, StreamExt};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Bytes, Message, error::CapacityError};

/// Largest chunk read from a target before it is sent to the browser as one message.
pub const RELAY_CHUNK_SIZE: usize = 64 * 1024;

/// Why the bridge closed (or refused) a browser connection. Its `Display` is the close
/// reason the browser sees; [`CloseCause::code`] is the close code.
#[derive(Debug, thiserror::Error)]
pub enum CloseCause {
    /// The URL path does not name a target.
    #[error("the URL path must be /HOST:PORT (got {path:?}): {error}")]
    BadPath {
        /// The path as requested.
        path: String,
        /// What is wrong with it.
        error: TargetError,
    },
    /// The target is not on the allow-list.
    #[error("target {0} is not on this bridge's allow-list")]
    NotAllowed(Target),
    /// The browser's address already has as many connections as allowed.
    #[error("too many connections from {ip}: the limit is {limit} per address")]
    TooManyFromIp {
        /// The browser's address.
        ip: IpAddr,
        /// The per-address limit.
        limit: usize,
    },
    /// The bridge already relays as many connections as allowed.
    #[error("the bridge is at its limit of {limit} connections; try again later")]
    Full {
        /// The total limit.
        limit: usize,
    },
    /// The target could not be connected to.
    #[error("target {target} is unreachable: {error}")]
    Unreachable {
        /// The target.
        target: Target,
        /// The connect error (or timeout).
        error: io::Error,
    },
    /// The target closed its side.
    #[error("target closed the connection")]
    TargetClosed,
    /// Reading from or writing to the target failed.
    #[error("connection to the target failed: {0}")]
    TargetFailed(io::Error),
    /// The browser closed the WebSocket (the close is echoed, no new reason is sent).
    #[error("the browser closed the connection")]
    BrowserClosed,
    /// The browser sent a text message.
    #[error("text messages are not accepted: send the bytes in binary messages")]
    TextMessage,
    /// The browser sent a message or frame over the size limit.
    #[error("message of {size} bytes is over this bridge's limit of {max_size} bytes")]
    MessageTooLarge {
        /// The size announced by the browser.
        size: usize,
        /// The limit.
        max_size: usize,
    },
    /// The WebSocket failed (protocol violation, reset, ...).
    #[error("websocket error: {0}")]
    WebSocket(tungstenite::Error),
    /// No data moved either way for the idle timeout.
    #[error("idle timeout: no data either way for {} s", .0.as_secs())]
    Idle(Duration),
    /// The bridge is shutting down.
    #[error("the bridge is shutting down")]
    ShuttingDown,
}

impl CloseCause {
    /// The WebSocket close code sent with this cause.
    pub fn code(&self) -> CloseCode {
        match self {
            Self::BadPath { .. } | Self::NotAllowed(_) | Self::TooManyFromIp { .. } => {
                CloseCode::Policy
            }
            Self::Full { .. } => CloseCode::Again,
            Self::Unreachable { .. } | Self::TargetFailed(_) => CloseCode::Error,
            Self::TargetClosed | Self::BrowserClosed | Self::Idle(_) => CloseCode::Normal,
            Self::TextMessage => CloseCode::Unsupported,
            Self::MessageTooLarge { .. } => CloseCode::Size,
            Self::WebSocket(_) => CloseCode::Protocol,
            Self::ShuttingDown => CloseCode::Away,
        }
    }

    /// The close frame for this cause.
    pub fn frame(&self) -> CloseFrame {
        close_frame(self.code(), &self.to_string())
    }
}

/// The bridge-wide state a connection consults.
pub(crate) struct Shared {
    pub(crate) config: BridgeConfig,
    pub(crate) slots: crate::server::Slots,
}

/// Bytes moved, for the log line at the end of a connection.
#[derive(Default)]
struct Traffic {
    to_target: AtomicU64,
    to_browser: AtomicU64,
}

/// The time of the last data, as milliseconds since the connection started.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self { start: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Serves one accepted TCP connection from a browser until both sides are closed.
/// `handshake_permit` is held through the WebSocket handshake and, for a refused connection,
/// until the refusal is delivered; an admitted connection releases it.
pub(crate) async fn handle_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    handshake_permit: OwnedSemaphorePermit,
) {
    let config = &shared.config;
    // The slot is taken before the handshake, so the order of arrival decides who gets it.
    let slot = shared.slots.try_take(peer.ip());
    let _ = tcp.set_nodelay(true);

    let mut path = String::new();
    // The signature is tungstenite's handshake callback; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let record_path = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        path = request.uri().path().to_owned();
        if let Some(origin) = request.headers().get("origin").and_then(|v| v.to_str().ok()) {
            tracing::debug!(%peer, origin, "websocket handshake");
        }
        Ok(response)
    };
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(
        tcp,
        record_path,
        Some(ws_config(config.max_message_size.get())),
    );
    let ws = tokio::select! {
        result = tokio::time::timeout(config.handshake_timeout, handshake) => match result {
            Ok(Ok(ws)) => ws,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "websocket handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "websocket handshake timed out");
                return;
            }
        },
        _ = shutdown.wait_for(|stop| *stop) => return,
    };
    let admitted = slot.and_then(|slot| {
        let target = path
            .strip_prefix('/')
            .map(|p| p.strip_suffix('/').unwrap_or(p))
            .unwrap_or(&path)
            .parse::<Target>()
            .map_err(|error| CloseCause::BadPath { path: path.clone(), error })?;
        if config.allow.contains(&target) {
            Ok((slot, target))
        } else {
            Err(CloseCause::NotAllowed(target))
        }
    });
    let (slot, target) = match admitted {
        Ok(admitted) => {
            drop(handshake_permit);
            admitted
        }
        Err(cause) => {
            tracing::info!(%peer, path, reason = %cause, "refused");
            close_browser(ws, Some(cause.frame()), config.close_grace).await;
            return;
        }
    };

    let connect = tokio::time::timeout(config.connect_timeout, target.connect());
    let tcp_target = tokio::select! {
        result = connect => match result {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(CloseCause::Unreachable { target: target.clone(), error }),
            Err(_) => Err(CloseCause::Unreachable {
                target: target.clone(),
                error: io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            }),
        },
        _ = shutdown.wait_for(|stop| *stop) => Err(CloseCause::ShuttingDown),
    };
    let tcp_target = match tcp_target {
        Ok(stream) => stream,
        Err(cause) => {
            tracing::info!(%peer, %target, reason = %cause, "could not reach target");
            close_browser(ws, Some(cause.frame()), config.close_grace).await;
            return;
        }
    };
    let _ = tcp_target.set_nodelay(true);
    tracing::info!(%peer, %target, "relaying");

    let started = Instant::now();
    let traffic = Traffic::default();
    let (cause, ws) = relay(ws, tcp_target, config, &mut shutdown, &traffic).await;
    let frame = match cause {
        // tungstenite queued the close reply when the browser's close arrived.
        CloseCause::BrowserClosed => None,
        ref other => Some(other.frame()),
    };
    tracing::info!(
        %peer,
        %target,
        reason = %cause,
        to_target = traffic.to_target.load(Ordering::Relaxed),
        to_browser = traffic.to_browser.load(Ordering::Relaxed),
        seconds = started.elapsed().as_secs_f64(),
        "closed"
    );
    // The slot is held until the browser side is fully closed.
    if let Some(ws) = ws {
        close_browser(ws, frame, config.close_grace).await;
    }
    drop(slot);
}

/// Relays until one side ends, then closes the target side and returns why it ended, with
/// the WebSocket for the caller to close.
async fn relay(
    ws: WebSocketStream<TcpStream>,
    mut target: TcpStream,
    config: &BridgeConfig,
    shutdown: &mut watch::Receiver<bool>,
    traffic: &Traffic,
) -> (CloseCause, Option<WebSocketStream<TcpStream>>) {
    let (mut to_browser, mut from_browser) = ws.split();
    let (mut from_target, mut to_target) = target.split();
    let activity = Activity::new();
    let chunk = RELAY_CHUNK_SIZE.min(config.max_message_size.get());

    let upstream = async {
        while let Some(message) = from_browser.next().await {
            match message {
                Ok(Message::Binary(data)) => {
                    activity.touch();
                    // Awaiting the write before reading the next message is the backpressure:
                    // a slow target stops us reading the browser's socket.
                    if let Err(error) = to_target.write_all(&data).await {
                        return CloseCause::TargetFailed(error);
                    }
                    let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
                    traffic.to_target.fetch_add(len, Ordering::Relaxed);
                }
                Ok(Message::Text(_)) => return CloseCause::TextMessage,
                Ok(Message::Close(_)) => return CloseCause::BrowserClosed,
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(tungstenite::Error::Capacity(CapacityError::MessageTooLong {
                    size,
                    max_size,
                })) => return CloseCause::MessageTooLarge { size, max_size },
                Err(error) => return CloseCause::WebSocket(error),
            }
        }
        CloseCause::BrowserClosed
    };
    let downstream = async {
        let mut buf = vec![0u8; chunk];
        loop {
            let n = match from_target.read(&mut buf).await {
                Ok(0) => return CloseCause::TargetClosed,
                Ok(n) => n,
                Err(error) => return CloseCause::TargetFailed(error),
            };
            activity.touch();
            let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
            // `send` returns once the message is on the socket: the same backpressure the
            // other way round.
            if let Err(error) = to_browser.send(Message::Binary(data)).await {
                return CloseCause::WebSocket(error);
            }
            traffic.to_browser.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    };
    let idle = async {
        loop {
            let deadline = activity.last() + config.idle_timeout;
            if Instant::now() >= deadline {
                return CloseCause::Idle(config.idle_timeout);
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    let cause = tokio::select! {
        cause = upstream => cause,
        cause = downstream => cause,
        cause = idle => cause,
        _ = shutdown.wait_for(|stop| *stop) => CloseCause::ShuttingDown,
    };
    // Closing the target first: the browser side may take the close grace period.
    let _ = to_target.shutdown().await;
    drop(target);
    (cause, from_browser.reunite(to_browser).ok())
}

/// Closes the browser side: sends `frame` (or flushes the queued reply to the browser's
/// close), waits up to `grace` for the browser's close reply, then closes the TCP connection
/// first as RFC 6455 §7.1.1 asks of servers, reading whatever is left so the close is a
/// clean FIN rather than a reset that could destroy the close frame in flight.
async fn close_browser(
    mut ws: WebSocketStream<TcpStream>,
    frame: Option<CloseFrame>,
    grace: Duration,
) {
    let closing = async move {
        let _ = ws.close(frame).await;
        while let Some(Ok(_)) = ws.next().await {}
        let mut tcp = ws.into_inner();
        let _ = tcp.shutdown().await;
        let mut sink = [0u8; 4096];
        while let Ok(1..) = tcp.read(&mut sink).await {}
    };
    let _ = tokio::time::timeout(grace, closing).await;
}
