//! Native drivers of the client core, for tests, benchmarks and command-line use: a tokio
//! current-thread runtime (the core is single-threaded: run it inside a `LocalSet`), and a
//! transport that dials a server directly over TCP or, when the server has a bridge URL,
//! through les-bridge over WebSocket exactly as a browser does.

use crate::config::Server;
use crate::runtime::Runtime;
use crate::transport::{Connection, Transport, TransportError};
use futures_util::future::LocalBoxFuture;
use futures_util::{SinkExt, StreamExt};
use les::time::Timestamp;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Read buffer per TCP connection.
const READ_CHUNK: usize = 64 * 1024;

/// The tokio runtime of the current thread; tasks are spawned with `spawn_local`, so the
/// client must run inside a [`tokio::task::LocalSet`].
#[derive(Debug, Clone)]
pub struct TokioRuntime {
    epoch: Instant,
}

impl TokioRuntime {
    /// A runtime whose monotonic clock starts now.
    pub fn new() -> Self {
        Self { epoch: Instant::now() }
    }
}

impl Default for TokioRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime for TokioRuntime {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(self.epoch.elapsed().as_nanos() as u64)
    }

    fn unix_millis(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }

    fn sleep(&self, duration: Duration) -> LocalBoxFuture<'static, ()> {
        // tokio's timer wheel refuses durations of centuries; a year is "never" here.
        Box::pin(tokio::time::sleep(duration.min(Duration::from_secs(86_400 * 365))))
    }

    fn spawn(&self, task: LocalBoxFuture<'static, ()>) {
        tokio::task::spawn_local(task);
    }
}

/// Dials servers natively: through the bridge URL if the server has one, else TCP to the
/// host and port of its enode URL.
#[derive(Debug, Clone, Default)]
pub struct NativeTransport;

/// An open native stream.
pub enum NativeConnection {
    /// Direct TCP, with its read buffer.
    Tcp(TcpStream, Box<[u8]>),
    /// WebSocket through les-bridge (binary messages carry the bytes).
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
}

impl Transport for NativeTransport {
    type Connection = NativeConnection;

    fn connect(
        &self,
        server: &Server,
    ) -> LocalBoxFuture<'static, Result<NativeConnection, TransportError>> {
        let bridge = server.spec.bridge.clone().filter(|url| !url.is_empty());
        let address = server.enode.socket_addr();
        let enode = server.spec.enode.clone();
        Box::pin(async move {
            match bridge {
                Some(url) => {
                    let (stream, _) =
                        tokio_tungstenite::connect_async(url.as_str()).await.map_err(|e| {
                            TransportError::Connect { target: url.clone(), reason: e.to_string() }
                        })?;
                    Ok(NativeConnection::Ws(Box::new(stream)))
                }
                None => {
                    let address = address.ok_or(TransportError::Unsupported(enode))?;
                    let stream =
                        TcpStream::connect(address).await.map_err(|e| TransportError::Connect {
                            target: address.to_string(),
                            reason: e.to_string(),
                        })?;
                    let _ = stream.set_nodelay(true);
                    Ok(NativeConnection::Tcp(stream, vec![0u8; READ_CHUNK].into_boxed_slice()))
                }
            }
        })
    }
}

impl Connection for NativeConnection {
    fn send(&mut self, bytes: Vec<u8>) -> LocalBoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            match self {
                NativeConnection::Tcp(stream, _) => {
                    stream.write_all(&bytes).await.map_err(|e| TransportError::Io(e.to_string()))
                }
                NativeConnection::Ws(stream) => stream
                    .send(Message::Binary(bytes.into()))
                    .await
                    .map_err(|e| TransportError::Io(e.to_string())),
            }
        })
    }

    fn recv(&mut self) -> LocalBoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            match self {
                // `read` is cancel-safe: no bytes are consumed unless it completes.
                NativeConnection::Tcp(stream, buffer) => match stream.read(buffer).await {
                    Ok(0) => {
                        Err(TransportError::Closed { code: 1006, reason: "stream ended".into() })
                    }
                    Ok(n) => Ok(buffer[..n].to_vec()),
                    Err(e) => Err(TransportError::Io(e.to_string())),
                },
                // `StreamExt::next` on a WebSocketStream is cancel-safe as well.
                NativeConnection::Ws(stream) => loop {
                    match stream.next().await {
                        Some(Ok(Message::Binary(data))) => return Ok(data.to_vec()),
                        Some(Ok(Message::Close(frame))) => {
                            let (code, reason) = frame.map_or((1005, String::new()), |f| {
                                (u16::from(f.code), f.reason.to_string())
                            });
                            return Err(TransportError::Closed { code, reason });
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(TransportError::Io(e.to_string())),
                        None => {
                            return Err(TransportError::Closed {
                                code: 1006,
                                reason: "stream ended".into(),
                            });
                        }
                    }
                },
            }
        })
    }

    fn close(&mut self) {
        if let NativeConnection::Tcp(stream, _) = self {
            // Shutting down the write half tells the server at once; the socket closes on drop.
            let _ = futures_util::FutureExt::now_or_never(stream.shutdown());
        }
    }
}
