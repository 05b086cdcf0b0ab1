//! [`WebSocketTransport`]: the browser's way to a LES server, a binary WebSocket to a
//! les-bridge (`ws://bridge/host:port`) that relays the RLPx bytes to the server's TCP port.
//!
//! The browser delivers WebSocket events to callbacks; they are turned into messages on an
//! unbounded channel, so [`Connection::recv`] is a channel read and therefore cancel-safe
//! (the core selects between it and its timers). The bridge applies its own backpressure
//! towards us; towards the bridge we wait while `bufferedAmount` is above a high-water mark,
//! so a fast producer cannot queue unbounded memory in the browser.

use crate::config::Server;
use crate::transport::{Connection, Transport, TransportError};
use futures_channel::mpsc;
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

/// `send` waits while more than this many bytes are queued in the browser.
pub const SEND_HIGH_WATER: u32 = 4 << 20;
/// How often `send` looks at `bufferedAmount` again while it waits (the browser has no event
/// for "buffer drained").
const DRAIN_POLL_MS: u32 = 10;
/// The close code a browser reports when a connection ended without a close frame.
const ABNORMAL_CLOSURE: u16 = 1006;

/// Opens WebSockets to the bridges named in the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebSocketTransport;

impl WebSocketTransport {
    /// The transport.
    pub fn new() -> Self {
        Self
    }
}

impl Transport for WebSocketTransport {
    type Connection = WebSocketConnection;

    fn connect(
        &self,
        server: &Server,
    ) -> LocalBoxFuture<'static, Result<WebSocketConnection, TransportError>> {
        let url = server.spec.bridge.clone().filter(|url| !url.trim().is_empty());
        let enode = server.spec.enode.clone();
        Box::pin(async move {
            let Some(url) = url else {
                return Err(TransportError::Unsupported(format!(
                    "{enode}: a browser needs a bridge URL (ws://bridge/host:port)"
                )));
            };
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return Err(TransportError::Unsupported(format!(
                    "{url}: not a ws:// or wss:// URL"
                )));
            }
            WebSocketConnection::open(&url).await
        })
    }
}

/// What the callbacks tell the connection.
enum WsEvent {
    Open,
    Data(Vec<u8>),
    /// A message that is not binary: the bridge never sends one, so the stream is unusable.
    Unexpected(String),
    Closed {
        code: u16,
        reason: String,
    },
}

/// The callbacks registered on the socket; kept alive as long as the socket may call them.
struct Callbacks {
    _open: Closure<dyn FnMut(Event)>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
    _error: Closure<dyn FnMut(Event)>,
}

/// One open WebSocket; see the module documentation.
pub struct WebSocketConnection {
    url: String,
    socket: WebSocket,
    events: mpsc::UnboundedReceiver<WsEvent>,
    callbacks: Option<Callbacks>,
    /// Set once the stream has ended: what every later call returns.
    ended: Option<TransportError>,
}

impl WebSocketConnection {
    /// Opens `url` and waits until the socket is open.
    pub async fn open(url: &str) -> Result<Self, TransportError> {
        let connect_error =
            |reason: String| TransportError::Connect { target: url.to_string(), reason };
        let socket = WebSocket::new(url).map_err(|e| connect_error(js_error_text(&e)))?;
        socket.set_binary_type(BinaryType::Arraybuffer);
        let (sender, events) = mpsc::unbounded();

        // A failed send only means the connection was dropped and nobody listens any more.
        let open = {
            let sender = sender.clone();
            Closure::<dyn FnMut(Event)>::new(move |_: Event| {
                let _ = sender.unbounded_send(WsEvent::Open);
            })
        };
        let message = {
            let sender = sender.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let data = event.data();
                let item = match data.dyn_into::<js_sys::ArrayBuffer>() {
                    Ok(buffer) => WsEvent::Data(js_sys::Uint8Array::new(&buffer).to_vec()),
                    Err(other) => WsEvent::Unexpected(if other.is_string() {
                        "the bridge sent a text message".to_string()
                    } else {
                        "the bridge sent a message that is not an ArrayBuffer".to_string()
                    }),
                };
                let _ = sender.unbounded_send(item);
            })
        };
        let close = {
            let sender = sender.clone();
            Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
                let _ = sender
                    .unbounded_send(WsEvent::Closed { code: event.code(), reason: event.reason() });
            })
        };
        // The browser gives an error event no detail and always follows it with a close
        // event, which carries the code; so the error itself needs no message.
        let error = Closure::<dyn FnMut(Event)>::new(move |_: Event| {});
        socket.set_onopen(Some(open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(close.as_ref().unchecked_ref()));
        socket.set_onerror(Some(error.as_ref().unchecked_ref()));
        drop(sender);

        let mut connection = Self {
            url: url.to_string(),
            socket,
            events,
            callbacks: Some(Callbacks {
                _open: open,
                _message: message,
                _close: close,
                _error: error,
            }),
            ended: None,
        };
        match connection.events.next().await {
            Some(WsEvent::Open) => Ok(connection),
            // A bridge that refuses a target completes the handshake first, so a close before
            // open means the bridge itself could not be reached (the browser says 1006).
            Some(WsEvent::Closed { code, reason }) if code == ABNORMAL_CLOSURE => {
                connection.shutdown();
                Err(connect_error(if reason.is_empty() {
                    "connection failed (1006)".to_string()
                } else {
                    reason
                }))
            }
            Some(WsEvent::Closed { code, reason }) => {
                connection.shutdown();
                Err(TransportError::Closed { code, reason })
            }
            Some(WsEvent::Unexpected(reason)) => {
                connection.shutdown();
                Err(connect_error(reason))
            }
            Some(WsEvent::Data(_)) | None => {
                connection.shutdown();
                Err(connect_error("the socket gave no open event".to_string()))
            }
        }
    }

    /// The URL this connection was opened to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Bytes queued in the browser and not yet sent.
    pub fn buffered_amount(&self) -> u32 {
        self.socket.buffered_amount()
    }

    /// Closes the socket (if still open) and releases the callbacks. The handlers are
    /// unset first: a dropped callback that the browser still called would throw.
    fn shutdown(&mut self) {
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        self.socket.set_onerror(None);
        let state = self.socket.ready_state();
        if state == WebSocket::CONNECTING || state == WebSocket::OPEN {
            // close() can only throw for an invalid code or reason; these are valid.
            let _ = self.socket.close_with_code_and_reason(1000, "client closed");
        }
        self.callbacks = None;
    }

    fn end(&mut self, error: TransportError) -> TransportError {
        self.shutdown();
        self.ended = Some(error.clone());
        error
    }
}

impl Connection for WebSocketConnection {
    fn send(&mut self, bytes: Vec<u8>) -> LocalBoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            if let Some(error) = &self.ended {
                return Err(error.clone());
            }
            while self.socket.buffered_amount() > SEND_HIGH_WATER
                && self.socket.ready_state() == WebSocket::OPEN
            {
                gloo_timers::future::TimeoutFuture::new(DRAIN_POLL_MS).await;
            }
            if self.socket.ready_state() != WebSocket::OPEN {
                // The close event (with its code) is on its way or already queued; report it
                // rather than a bare "not open" if it is there.
                return Err(match self.events.try_recv() {
                    Ok(WsEvent::Closed { code, reason }) => {
                        self.end(TransportError::Closed { code, reason })
                    }
                    _ => TransportError::Io("the WebSocket is not open".to_string()),
                });
            }
            self.socket
                .send_with_u8_array(&bytes)
                .map_err(|e| TransportError::Io(js_error_text(&e)))
        })
    }

    fn recv(&mut self) -> LocalBoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            if let Some(error) = &self.ended {
                return Err(error.clone());
            }
            // Only `next()` is awaited: dropping this future before it completes leaves every
            // message in the channel.
            loop {
                return match self.events.next().await {
                    Some(WsEvent::Data(bytes)) => Ok(bytes),
                    Some(WsEvent::Open) => continue,
                    Some(WsEvent::Unexpected(reason)) => Err(self.end(TransportError::Io(reason))),
                    Some(WsEvent::Closed { code, reason }) => {
                        Err(self.end(TransportError::Closed { code, reason }))
                    }
                    None => Err(self.end(TransportError::Closed {
                        code: ABNORMAL_CLOSURE,
                        reason: "connection dropped".to_string(),
                    })),
                };
            }
        })
    }

    fn close(&mut self) {
        if self.ended.is_none() {
            self.end(TransportError::Closed { code: 1000, reason: "closed locally".to_string() });
        }
    }
}

impl Drop for WebSocketConnection {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The message of a JS exception, or its string form.
pub(crate) fn js_error_text(value: &wasm_bindgen::JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}
