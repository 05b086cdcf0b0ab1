//! A WebSocket seen as a byte stream: [`WsByteStream`] turns a
//! [`WebSocketStream`] into a tokio [`AsyncRead`] + [`AsyncWrite`] so that code written for a
//! TCP socket (an RLPx session driver, for instance) runs unchanged over a browser's
//! WebSocket. Bytes travel in binary messages; message boundaries carry no meaning.
//!
//! [`accept`] performs the server side of the WebSocket handshake with the message-size
//! limit applied, and [`close_frame`] builds close frames whose reason fits the protocol's
//! 123-byte limit. The relay in [`crate::relay`] and `lesd --ws` both use them.

use futures_util::{Sink, SinkExt, Stream};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Bytes, Message, error::CapacityError};

/// The longest close reason a close frame can carry: a control frame's payload is at most
/// 125 bytes (RFC 6455 §5.5), two of which are the status code.
pub const MAX_CLOSE_REASON_LEN: usize = 123;

/// The WebSocket configuration the bridge and `lesd --ws` use: no message or frame larger
/// than `max_message_size` is accepted (a larger one fails the read with a capacity error
/// before its payload is buffered), and every written message goes to the socket at once
/// rather than waiting in a write buffer, because RLPx handshakes and pings are small.
pub fn ws_config(max_message_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size))
        .write_buffer_size(0)
}

/// Completes the server side of a WebSocket handshake on `stream` with [`ws_config`]`(max_message_size)`.
pub async fn accept<S>(
    stream: S,
    max_message_size: usize,
) -> Result<WebSocketStream<S>, tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio_tungstenite::accept_async_with_config(stream, Some(ws_config(max_message_size))).await
}

/// A close frame with `reason` cut to [`MAX_CLOSE_REASON_LEN`] bytes at a character boundary,
/// so a long host name in a reason can never make the frame invalid.
pub fn close_frame(code: CloseCode, reason: &str) -> CloseFrame {
    let mut end = reason.len().min(MAX_CLOSE_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    let reason = reason.get(..end).unwrap_or_default();
    CloseFrame { code, reason: reason.to_owned().into() }
}

/// What went wrong on a [`WsByteStream`]; carried inside the [`io::Error`] its reads and
/// writes return (get it back with [`io::Error::get_ref`] and `downcast_ref`).
#[derive(Debug, thiserror::Error)]
pub enum WsStreamError {
    /// The peer sent a text message; this stream carries bytes in binary messages only.
    #[error("the peer sent a text message; only binary messages carry bytes")]
    TextMessage,
    /// The peer sent a message larger than the configured limit.
    #[error("the peer sent a message of {size} bytes, over the limit of {max_size} bytes")]
    MessageTooLarge {
        /// The announced size.
        size: usize,
        /// The limit.
        max_size: usize,
    },
    /// Any other WebSocket failure.
    #[error("websocket: {0}")]
    WebSocket(#[source] tungstenite::Error),
}

/// A [`WebSocketStream`] as a byte stream: [`AsyncRead`] yields the payloads of incoming
/// binary messages in order, [`AsyncWrite`] sends each write as one binary message (cut to
/// the stream's maximum message size).
///
/// - Reading ends (returns 0 bytes) when the peer closes the WebSocket; the close reply is
///   sent at once.
/// - A text message or an oversized message fails the read with an [`io::Error`] carrying a
///   [`WsStreamError`]; call `shutdown()` afterwards and the close frame sent names the
///   problem (1003 unsupported data, 1009 message too big).
/// - Backpressure: a write is accepted only once the previous message has been handed to the
///   socket, so at most one message is ever buffered here.
/// - `shutdown()` sends a close frame (the one set with [`WsByteStream::set_close_frame`], or
///   one without a code) and then shuts down the writing side of the socket underneath.
/// - Pings are answered by tungstenite and never surface as data.
pub struct WsByteStream<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last binary message.
    pending: Bytes,
    /// Reads return end-of-stream from now on.
    read_done: bool,
    /// The frame `shutdown()` sends.
    close_with: Option<CloseFrame>,
    /// Writes are cut into messages of at most this many bytes.
    max_write: usize,
}

impl<S> WsByteStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    /// Wraps an accepted (or connected) WebSocket. Outgoing messages are cut to the socket's
    /// configured maximum message size.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        // The peer is assumed to enforce the same limit as this end was configured with.
        let max_write = ws.get_config().max_message_size.unwrap_or(usize::MAX).max(1);
        Self { ws, pending: Bytes::new(), read_done: false, close_with: None, max_write }
    }

    /// Sets the close frame that `shutdown()` will send, e.g. 1001 "server shutting down".
    pub fn set_close_frame(&mut self, code: CloseCode, reason: &str) {
        self.close_with = Some(close_frame(code, reason));
    }

    /// The WebSocket inside.
    pub fn get_ref(&self) -> &WebSocketStream<S> {
        &self.ws
    }

    /// The WebSocket inside; bytes already received but not yet read are dropped.
    pub fn into_inner(self) -> WebSocketStream<S> {
        self.ws
    }

    /// Remembers the close frame matching a read failure, so that `shutdown()` reports it.
    fn fail_read(&mut self, error: WsStreamError) -> io::Error {
        self.read_done = true;
        let (code, kind) = match &error {
            WsStreamError::TextMessage => (CloseCode::Unsupported, io::ErrorKind::InvalidData),
            WsStreamError::MessageTooLarge { .. } => (CloseCode::Size, io::ErrorKind::InvalidData),
            WsStreamError::WebSocket(_) => (CloseCode::Protocol, io::ErrorKind::InvalidData),
        };
        if self.close_with.is_none() {
            self.close_with = Some(close_frame(code, &error.to_string()));
        }
        io::Error::new(kind, error)
    }
}

/// Maps a tungstenite error on the write path to an [`io::Error`] of a fitting kind.
fn write_error(error: tungstenite::Error) -> io::Error {
    match error {
        tungstenite::Error::Io(error) => error,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, WsStreamError::WebSocket(error))
        }
        other => io::Error::other(WsStreamError::WebSocket(other)),
    }
}

impl<S> AsyncRead for WsByteStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.pending.is_empty() {
                let taken = this.pending.split_to(buf.remaining().min(this.pending.len()));
                buf.put_slice(&taken);
                return Poll::Ready(Ok(()));
            }
            if this.read_done {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.pending = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(this.fail_read(WsStreamError::TextMessage)));
                }
                Some(Ok(Message::Close(_))) => {
                    this.read_done = true;
                    // tungstenite has queued the close reply; push it out now rather than on
                    // the next write, which may never come. A failure here changes nothing:
                    // the stream has ended either way.
                    let _ = Pin::new(&mut this.ws).poll_flush(cx);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(tungstenite::Error::Capacity(CapacityError::MessageTooLong {
                    size,
                    max_size,
                }))) => {
                    let error = WsStreamError::MessageTooLarge { size, max_size };
                    return Poll::Ready(Err(this.fail_read(error)));
                }
                Some(Err(tungstenite::Error::Io(error))) => {
                    this.read_done = true;
                    return Poll::Ready(Err(error));
                }
                Some(Err(error)) => {
                    return Poll::Ready(Err(this.fail_read(WsStreamError::WebSocket(error))));
                }
                None => this.read_done = true,
            }
        }
    }
}

impl<S> AsyncWrite for WsByteStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = &mut *self;
        // Backpressure: the previous message must be on the socket before we take more.
        ready!(this.ws.poll_ready_unpin(cx)).map_err(write_error)?;
        ready!(this.ws.poll_flush_unpin(cx)).map_err(write_error)?;
        let len = buf.len().min(this.max_write);
        let chunk = Bytes::copy_from_slice(buf.get(..len).unwrap_or(buf));
        this.ws.start_send_unpin(Message::Binary(chunk)).map_err(write_error)?;
        // Start writing now; if the socket is full the next write or flush finishes the job.
        if let Poll::Ready(Err(error)) = this.ws.poll_flush_unpin(cx) {
            return Poll::Ready(Err(write_error(error)));
        }
        Poll::Ready(Ok(len))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.ws.poll_flush_unpin(cx).map_err(write_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.close_with.is_some() {
            match ready!(this.ws.poll_ready_unpin(cx)) {
                Ok(()) => {
                    let frame = this.close_with.take();
                    match this.ws.start_send_unpin(Message::Close(frame)) {
                        Ok(()) => {}
                        Err(
                            tungstenite::Error::ConnectionClosed
                            | tungstenite::Error::AlreadyClosed,
                        ) => {
                            return Poll::Ready(Ok(()));
                        }
                        Err(error) => return Poll::Ready(Err(write_error(error))),
                    }
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Poll::Ready(Ok(()));
                }
                Err(error) => return Poll::Ready(Err(write_error(error))),
            }
        }
        match ready!(Pin::new(&mut this.ws).poll_close(cx)) {
            Ok(())
            | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {}
            Err(error) => return Poll::Ready(Err(write_error(error))),
        }
        // End the byte stream underneath too: the peer waits for the TCP close after the
        // close frames (RFC 6455 §7.1.1), and a half-closed socket still lets its reply in.
        Pin::new(this.ws.get_mut()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_cut_to_the_frame_limit_at_a_character_boundary() {
        let short = close_frame(CloseCode::Policy, "no");
        assert_eq!(short.reason.as_str(), "no");
        // 122 ASCII bytes then a 2-byte character: cutting at 123 would split it.
        let long = format!("{}é and more", "a".repeat(122));
        let frame = close_frame(CloseCode::Policy, &long);
        assert_eq!(frame.reason.as_str(), "a".repeat(122));
        let exact = "b".repeat(200);
        assert_eq!(close_frame(CloseCode::Away, &exact).reason.len(), MAX_CLOSE_REASON_LEN);
    }
}
