//! The bridge over real sockets on 127.0.0.1 (OS-chosen ports): a WebSocket client on one
//! side, real TCP targets on the other, and the bridge's `serve` in between.

use futures_util::{SinkExt, StreamExt};
use les_bridge::ws::{WsByteStream, WsStreamError};
use les_bridge::{AllowList, BridgeConfig, Target};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};

type Client = WebSocketStream<TcpStream>;

/// Every wait in these tests is bounded, so a hang is a failure, not a stuck run.
const WAIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// A running bridge; dropping it (or calling `stop`) shuts it down.
struct Bridge {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Bridge {
    async fn start(config: BridgeConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind bridge");
        let addr = listener.local_addr().expect("bridge address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(les_bridge::serve(config, listener, async move {
            let _ = stopped.await;
        }));
        Self { addr, stop: Some(stop), task }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        within("serve to return after shutdown", &mut self.task).await.expect("serve task");
    }
}

fn config_allowing(targets: &[SocketAddr]) -> BridgeConfig {
    BridgeConfig::new(targets.iter().copied().map(Target::from_socket_addr).collect::<AllowList>())
}

/// A TCP server that echoes every byte on every connection.
async fn echo_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    addr
}

/// A TCP server that hands each accepted connection to the test.
async fn manual_target() -> (SocketAddr, mpsc::UnboundedReceiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
    let addr = listener.local_addr().expect("target address");
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if sender.send(stream).is_err() {
                return;
            }
        }
    });
    (addr, receiver)
}

async fn connect_from(source: IpAddr, bridge: SocketAddr, path: &str) -> Client {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source, 0)).expect("bind client");
    let tcp = within("tcp connect", socket.connect(bridge)).await.expect("tcp connect");
    let url = format!("ws://{bridge}{path}");
    let (ws, response) =
        within("ws handshake", tokio_tungstenite::client_async(url, tcp)).await.expect("upgrade");
    assert_eq!(response.status(), 101, "refusals come after the upgrade, never as HTTP errors");
    ws
}

async fn connect(bridge: SocketAddr, target: SocketAddr) -> Client {
    connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), bridge, &format!("/{target}")).await
}

/// Reads binary messages until `len` bytes have arrived.
async fn read_bytes(ws: &mut Client, len: usize) -> Vec<u8> {
    let mut received = Vec::with_capacity(len);
    while received.len() < len {
        match within("data from the bridge", ws.next()).await {
            Some(Ok(Message::Binary(data))) => received.extend_from_slice(&data),
            other => panic!("expected data, got {other:?}"),
        }
    }
    assert_eq!(received.len(), len, "no more bytes than were sent");
    received
}

/// Reads until the close frame; then the connection must end.
async fn expect_close(ws: &mut Client) -> CloseFrame {
    let frame = loop {
        match within("close frame", ws.next()).await {
            Some(Ok(Message::Close(Some(frame)))) => break frame,
            Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert!(within("end after close", ws.next()).await.is_none(), "nothing after the close");
    frame
}

/// After our close: the bridge echoes it and ends the connection.
async fn expect_close_reply(ws: &mut Client) {
    match within("close reply", ws.next()).await {
        Some(Ok(Message::Close(_))) => {}
        other => panic!("expected the close reply, got {other:?}"),
    }
    assert!(within("end after the close reply", ws.next()).await.is_none());
}

/// Reads from a target-side socket until end of stream; returns what arrived.
async fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    within("target to see end of stream", stream.read_to_end(&mut received))
        .await
        .expect("target read");
    received
}

/// Deterministic bytes that differ from message to message (xorshift).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test]
async fn relays_many_small_messages_and_a_1mib_message_unchanged_both_ways() {
    let echo = echo_target().await;
    let bridge = Bridge::start(config_allowing(&[echo])).await;
    let ws = connect(bridge.addr, echo).await;
    let (mut sink, mut stream) = ws.split();

    let mut messages: Vec<Vec<u8>> =
        (0..2000u64).map(|i| pattern(i, 1 + (i as usize * 37) % 300)).collect();
    messages.push(pattern(9999, 1 << 20));
    let sent: Vec<u8> = messages.concat();

    // Send and receive at once: the echo pushes back while we are still sending.
    let sender = async {
        for message in messages {
            sink.send(Message::Binary(message.into())).await.expect("send");
        }
        sink
    };
    let receiver = async {
        let mut received = Vec::with_capacity(sent.len());
        while received.len() < sent.len() {
            match stream.next().await {
                Some(Ok(Message::Binary(data))) => received.extend_from_slice(&data),
                other => panic!("expected data, got {other:?}"),
            }
        }
        received
    };
    let (sink, received) =
        within("echo of everything", async { tokio::join!(sender, receiver) }).await;
    assert_eq!(received.len(), sent.len());
    assert!(received == sent, "the bytes came back unchanged and in order");

    let mut ws = sink.reunite(stream).expect("same socket");
    ws.close(None).await.expect("close");
    bridge.stop().await;
}

#[tokio::test]
async fn refuses_a_target_not_on_the_allow_list_with_the_reason_and_never_dials_it() {
    let echo = echo_target().await;
    let unlisted = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let unlisted_addr = unlisted.local_addr().expect("address");
    let bridge = Bridge::start(config_allowing(&[echo])).await;

    for target in [unlisted_addr.to_string(), "1.2.3.4:5".to_string()] {
        let mut ws =
            connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), bridge.addr, &format!("/{target}")).await;
        let frame = expect_close(&mut ws).await;
        assert_eq!(frame.code, CloseCode::Policy);
        assert!(frame.reason.contains(&target), "reason names the target: {}", frame.reason);
        assert!(frame.reason.contains("allow-list"), "reason says why: {}", frame.reason);
    }
    let dialed = tokio::time::timeout(Duration::from_millis(300), unlisted.accept()).await;
    assert!(dialed.is_err(), "the bridge never connected to the unlisted target");
    bridge.stop().await;
}

#[tokio::test]
async fn refuses_a_path_that_is_not_host_port() {
    let echo = echo_target().await;
    let bridge = Bridge::start(config_allowing(&[echo])).await;
    for path in ["/", "/127.0.0.1", "/127.0.0.1:0", "/a/b:1"] {
        let mut ws = connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), bridge.addr, path).await;
        let frame = expect_close(&mut ws).await;
        assert_eq!(frame.code, CloseCode::Policy, "{path}");
        assert!(frame.reason.contains("HOST:PORT"), "{path}: {}", frame.reason);
    }
    bridge.stop().await;
}

/// Sends `payload` and expects it echoed: proof that the connection is relayed.
async fn assert_echoes(ws: &mut Client, payload: &[u8]) {
    ws.send(Message::Binary(Bytes::copy_from_slice(payload))).await.expect("send");
    assert_eq!(read_bytes(ws, payload.len()).await, payload);
}

#[tokio::test]
async fn per_ip_limit_refuses_the_extra_connection_but_not_other_addresses() {
    let echo = echo_target().await;
    let mut config = config_allowing(&[echo]);
    config.max_per_ip = 1;
    let bridge = Bridge::start(config).await;
    let path = format!("/{echo}");
    let first_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let other_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    let mut first = connect_from(first_ip, bridge.addr, &path).await;
    assert_echoes(&mut first, b"first").await;

    let mut second = connect_from(first_ip, bridge.addr, &path).await;
    let frame = expect_close(&mut second).await;
    assert_eq!(frame.code, CloseCode::Policy);
    assert!(frame.reason.contains("too many connections from 127.0.0.1"), "{}", frame.reason);
    assert!(frame.reason.contains("limit is 1"), "{}", frame.reason);

    let mut other = connect_from(other_ip, bridge.addr, &path).await;
    assert_echoes(&mut other, b"another address has its own quota").await;
    assert_echoes(&mut first, b"the first is unaffected").await;
    bridge.stop().await;
}

#[tokio::test]
async fn total_limit_refuses_when_full_and_a_closed_connection_frees_its_slot() {
    let echo = echo_target().await;
    let mut config = config_allowing(&[echo]);
    config.max_connections = 1;
    let bridge = Bridge::start(config).await;

    let mut first = connect(bridge.addr, echo).await;
    assert_echoes(&mut first, b"one").await;
    let mut second = connect(bridge.addr, echo).await;
    let frame = expect_close(&mut second).await;
    assert_eq!(frame.code, CloseCode::Again);
    assert!(frame.reason.contains("limit of 1 connections"), "{}", frame.reason);

    first.close(None).await.expect("close");
    expect_close_reply(&mut first).await;
    // The slot is returned once the bridge has finished closing; retry until then.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut next = connect(bridge.addr, echo).await;
        next.send(Message::Binary(Bytes::from_static(b"again"))).await.expect("send");
        match within("reply", next.next()).await {
            Some(Ok(Message::Binary(data))) => {
                assert_eq!(&data[..], b"again");
                break;
            }
            Some(Ok(Message::Close(Some(frame)))) if frame.code == CloseCode::Again => {
                assert!(Instant::now() < deadline, "the slot was never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    bridge.stop().await;
}

#[tokio::test]
async fn idle_timeout_closes_both_sides_and_traffic_keeps_the_connection_open() {
    let (target, mut accepted) = manual_target().await;
    let idle = Duration::from_millis(400);
    let mut config = config_allowing(&[target]);
    config.idle_timeout = idle;
    let bridge = Bridge::start(config).await;

    let mut ws = connect(bridge.addr, target).await;
    let mut server = within("target accepts", accepted.recv()).await.expect("connection");
    // Data every 150 ms for 1.2 s, three times the idle timeout: the connection must stay up.
    // The bridge saw the last data no earlier than it was sent, so its idle period cannot
    // end before `idle` after the last send (reading it at the target happens later still,
    // so that would be no bound).
    let mut last_sent = Instant::now();
    for round in 0..8u8 {
        last_sent = Instant::now();
        ws.send(Message::Binary(Bytes::copy_from_slice(&[round]))).await.expect("send");
        let mut byte = [0u8; 1];
        within("byte at target", server.read_exact(&mut byte)).await.expect("read");
        assert_eq!(byte, [round]);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let frame = expect_close(&mut ws).await;
    assert!(last_sent.elapsed() >= idle, "closed only after a full idle period");
    assert_eq!(frame.code, CloseCode::Normal);
    assert!(frame.reason.contains("idle"), "{}", frame.reason);
    assert!(read_to_eof(&mut server).await.is_empty(), "the target side was closed too");
    bridge.stop().await;
}

#[tokio::test]
async fn target_closing_closes_the_websocket_after_its_last_bytes() {
    let (target, mut accepted) = manual_target().await;
    let bridge = Bridge::start(config_allowing(&[target])).await;
    let mut ws = connect(bridge.addr, target).await;
    let mut server = within("target accepts", accepted.recv()).await.expect("connection");

    let last_words = pattern(7, 200_000);
    server.write_all(&last_words).await.expect("write");
    drop(server);
    assert_eq!(read_bytes(&mut ws, last_words.len()).await, last_words);
    let frame = expect_close(&mut ws).await;
    assert_eq!(frame.code, CloseCode::Normal);
    assert!(frame.reason.contains("target closed"), "{}", frame.reason);
    bridge.stop().await;
}

#[tokio::test]
async fn browser_closing_closes_the_target_after_its_last_bytes() {
    let (target, mut accepted) = manual_target().await;
    let bridge = Bridge::start(config_allowing(&[target])).await;
    let mut ws = connect(bridge.addr, target).await;
    let mut server = within("target accepts", accepted.recv()).await.expect("connection");

    let last_words = pattern(8, 100_000);
    ws.send(Message::Binary(last_words.clone().into())).await.expect("send");
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "done".into() }))
        .await
        .expect("close");
    assert_eq!(read_to_eof(&mut server).await, last_words);
    expect_close_reply(&mut ws).await;
    bridge.stop().await;
}

#[tokio::test]
async fn oversized_message_is_refused_and_a_message_at_the_limit_passes() {
    let (target, mut accepted) = manual_target().await;
    let mut config = config_allowing(&[target]);
    config.max_message_size = NonZeroUsize::new(1024).expect("non-zero");
    let bridge = Bridge::start(config).await;
    let mut ws = connect(bridge.addr, target).await;
    let mut server = within("target accepts", accepted.recv()).await.expect("connection");

    let at_limit = pattern(1, 1024);
    ws.send(Message::Binary(at_limit.clone().into())).await.expect("send");
    let mut received = vec![0u8; 1024];
    within("message at the limit", server.read_exact(&mut received)).await.expect("read");
    assert_eq!(received, at_limit);

    ws.send(Message::Binary(pattern(2, 1025).into())).await.expect("send");
    let frame = expect_close(&mut ws).await;
    assert_eq!(frame.code, CloseCode::Size);
    assert!(frame.reason.contains("1025") && frame.reason.contains("1024"), "{}", frame.reason);
    assert!(read_to_eof(&mut server).await.is_empty(), "nothing of the oversized message relayed");
    bridge.stop().await;
}

#[tokio::test]
async fn a_text_message_closes_with_unsupported_data() {
    let (target, mut accepted) = manual_target().await;
    let bridge = Bridge::start(config_allowing(&[target])).await;
    let mut ws = connect(bridge.addr, target).await;
    let mut server = within("target accepts", accepted.recv()).await.expect("connection");

    ws.send(Message::text("hello")).await.expect("send");
    let frame = expect_close(&mut ws).await;
    assert_eq!(frame.code, CloseCode::Unsupported);
    assert!(frame.reason.contains("binary"), "{}", frame.reason);
    assert!(read_to_eof(&mut server).await.is_empty(), "text is never relayed");
    bridge.stop().await;
}

#[tokio::test]
async fn an_allowed_but_unreachable_target_is_reported() {
    let vacant = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("address")
    };
    let bridge = Bridge::start(config_allowing(&[vacant])).await;
    let mut ws = connect(bridge.addr, vacant).await;
    let frame = expect_close(&mut ws).await;
    assert_eq!(frame.code, CloseCode::Error);
    assert!(frame.reason.contains(&vacant.to_string()), "{}", frame.reason);
    assert!(frame.reason.contains("unreachable"), "{}", frame.reason);
    bridge.stop().await;
}

#[tokio::test]
async fn a_target_that_stops_reading_stops_the_bridge_reading_the_browser() {
    let (target, mut accepted) = manual_target().await;
    let bridge = Bridge::start(config_allowing(&[target])).await;
    let mut ws = connect(bridge.addr, target).await;
    let mut server = within("target accepts", accepted.recv()).await.expect("connection");

    // The target reads nothing. Without backpressure the bridge would swallow all 256 MiB;
    // with it, sending stalls once the socket buffers on the way are full.
    let chunk = Bytes::from(pattern(3, 1 << 20));
    let mut sent = 0usize;
    let mut stalled = false;
    for _ in 0..256 {
        let send = ws.send(Message::Binary(chunk.clone()));
        match tokio::time::timeout(Duration::from_secs(1), send).await {
            Ok(result) => {
                result.expect("send");
                sent += chunk.len();
            }
            Err(_) => {
                stalled = true;
                break;
            }
        }
    }
    assert!(stalled, "sending never stalled: {} MiB taken by the bridge", sent >> 20);
    assert!(sent < 128 << 20, "{} MiB taken before stalling", sent >> 20);

    // Once the target reads, everything arrives (the stalled message included): the client
    // keeps flushing it while the target drains.
    let flushing = tokio::spawn(async move {
        ws.flush().await.expect("flush");
        ws
    });
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    while received < sent + chunk.len() {
        let n = within("target drains", server.read(&mut buf)).await.expect("read");
        assert!(n > 0, "target side closed early");
        received += n;
    }
    assert_eq!(received, sent + chunk.len());
    let _ws = within("flush", flushing).await.expect("flush task");
    bridge.stop().await;
}

#[tokio::test]
async fn a_silent_connection_holds_a_handshake_place_only_until_the_handshake_timeout() {
    let echo = echo_target().await;
    let mut config = config_allowing(&[echo]);
    config.max_pending_handshakes = 1;
    config.handshake_timeout = Duration::from_millis(300);
    let bridge = Bridge::start(config).await;

    // A TCP connection that never sends its handshake takes the only place.
    let mut silent = TcpStream::connect(bridge.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let tcp = TcpStream::connect(bridge.addr).await.expect("connect");
    let url = format!("ws://{}/{echo}", bridge.addr);
    let refused = within("dropped handshake", tokio_tungstenite::client_async(url, tcp)).await;
    assert!(refused.is_err(), "a connection over the handshake limit is dropped unanswered");

    // After the timeout the silent one is dropped and its place is free again.
    let mut rest = Vec::new();
    within("silent connection dropped", silent.read_to_end(&mut rest)).await.expect("read");
    let mut ws = connect(bridge.addr, echo).await;
    assert_echoes(&mut ws, b"in").await;
    bridge.stop().await;
}

#[tokio::test]
async fn shutdown_closes_open_connections_with_going_away() {
    let echo = echo_target().await;
    let bridge = Bridge::start(config_allowing(&[echo])).await;
    let bridge_addr = bridge.addr;
    let mut ws = connect(bridge.addr, echo).await;
    assert_echoes(&mut ws, b"before").await;

    let stopping = tokio::spawn(bridge.stop());
    let frame = expect_close(&mut ws).await;
    assert_eq!(frame.code, CloseCode::Away);
    assert!(frame.reason.contains("shutting down"), "{}", frame.reason);
    within("serve returns", stopping).await.expect("stop");
    assert!(TcpStream::connect(bridge_addr).await.is_err(), "no longer listening");
}

// ---- WsByteStream ----

/// A WebSocket server on 127.0.0.1 with the library's accept helper; returns its address and
/// a receiver of accepted byte streams.
async fn ws_byte_server(
    max_message_size: usize,
) -> (SocketAddr, mpsc::UnboundedReceiver<WsByteStream<TcpStream>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let ws = les_bridge::ws::accept(tcp, max_message_size).await.expect("accept");
            if sender.send(WsByteStream::new(ws)).is_err() {
                return;
            }
        }
    });
    (addr, receiver)
}

/// A WebSocket client whose own limits match the server's (as `WsByteStream` cuts writes
/// to its own socket's limit).
async fn raw_client(addr: SocketAddr, max_message_size: usize) -> Client {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let config = les_bridge::ws::ws_config(max_message_size);
    let url = format!("ws://{addr}/");
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(url, tcp, Some(config)).await.expect("ws");
    ws
}

#[tokio::test]
async fn ws_byte_stream_round_trips_bytes_both_ways() {
    let (addr, mut accepted) = ws_byte_server(64 * 1024).await;
    let client_ws = raw_client(addr, 64 * 1024).await;
    let mut server = within("accept", accepted.recv()).await.expect("stream");
    // The server echoes through the adapter, flushing after each write.
    tokio::spawn(async move {
        let mut buf = vec![0u8; 10_000];
        loop {
            match server.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if server.write_all(&buf[..n]).await.is_err() || server.flush().await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = server.shutdown().await;
    });

    let client = WsByteStream::new(client_ws);
    let (mut reader, mut writer) = tokio::io::split(client);
    let mut sent = pattern(11, 1 << 20);
    for i in 0..500u64 {
        sent.extend(pattern(i, 1 + (i as usize * 13) % 200));
    }
    let to_send = sent.clone();
    let writing = tokio::spawn(async move {
        // Uneven writes, so message boundaries and read sizes never line up.
        for piece in to_send.chunks(77_777) {
            writer.write_all(piece).await.expect("write");
        }
        writer.flush().await.expect("flush");
        writer
    });
    let mut received = vec![0u8; sent.len()];
    within("echo", reader.read_exact(&mut received)).await.expect("read");
    assert!(received == sent, "bytes unchanged and in order");

    let mut writer = within("writer", writing).await.expect("writer task");
    writer.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    within("end of stream", reader.read_to_end(&mut rest)).await.expect("eof");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn ws_byte_stream_cuts_writes_at_the_message_limit_and_closes_on_text() {
    let (addr, mut accepted) = ws_byte_server(1000).await;
    let mut client = raw_client(addr, 1000).await;
    let mut server = within("accept", accepted.recv()).await.expect("stream");

    let payload = pattern(5, 2500);
    server.write_all(&payload).await.expect("write");
    server.flush().await.expect("flush");
    let mut sizes = Vec::new();
    let mut received = Vec::new();
    while received.len() < payload.len() {
        match within("message", client.next()).await {
            Some(Ok(Message::Binary(data))) => {
                sizes.push(data.len());
                received.extend_from_slice(&data);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sizes, [1000, 1000, 500]);
    assert_eq!(received, payload);

    client.send(Message::text("not bytes")).await.expect("send");
    let mut buf = [0u8; 16];
    let error = within("read", server.read(&mut buf)).await.expect_err("text is an error");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    let inner = error.get_ref().and_then(|e| e.downcast_ref::<WsStreamError>());
    assert!(matches!(inner, Some(WsStreamError::TextMessage)), "{error}");
    server.shutdown().await.expect("shutdown");
    let frame = expect_close(&mut client).await;
    assert_eq!(frame.code, CloseCode::Unsupported);
}

#[tokio::test]
async fn ws_byte_stream_accept_enforces_the_message_limit() {
    let (addr, mut accepted) = ws_byte_server(1000).await;
    let mut client = raw_client(addr, 1000).await;
    let mut server = within("accept", accepted.recv()).await.expect("stream");

    client.send(Message::Binary(pattern(6, 1000).into())).await.expect("send");
    let mut buf = vec![0u8; 1000];
    within("at the limit", server.read_exact(&mut buf)).await.expect("read");
    assert_eq!(buf, pattern(6, 1000));

    client.send(Message::Binary(pattern(6, 1001).into())).await.expect("send");
    let error = within("read", server.read(&mut buf)).await.expect_err("too large");
    let inner = error.get_ref().and_then(|e| e.downcast_ref::<WsStreamError>());
    assert!(
        matches!(inner, Some(WsStreamError::MessageTooLarge { size: 1001, max_size: 1000 })),
        "{error}"
    );
    server.shutdown().await.expect("shutdown");
    let frame = expect_close(&mut client).await;
    assert_eq!(frame.code, CloseCode::Size);
}

// ---- A real RLPx + LES handshake through the bridge ----

mod rlpx {
    use super::*;
    use alloy_consensus::Header;
    use alloy_primitives::{B256, U256, keccak256};
    use les::announce::AnnouncedHead;
    use les::chain::SealedHeader;
    use les::crypto::NodeKey;
    use les::flow::FlowParams;
    use les::msg::{
        AnnounceType, BlockHashOrNumber, BlockHeaders, ForkSchedule, GetBlockHeaders, LesMessage,
    };
    use les::session::{
        ClientConfig, Event, PeerInfo, Role, ServeOffer, ServerConfig, Session, SessionConfig,
    };
    use les::time::Timestamp;
    use tokio::io::{AsyncRead, AsyncWrite};

    const NETWORK_ID: u64 = 4242;
    const HEADERS: u64 = 64;

    fn chain() -> Vec<SealedHeader> {
        let mut chain: Vec<SealedHeader> = Vec::new();
        for number in 0..HEADERS {
            let header = Header {
                parent_hash: chain.last().map_or(B256::ZERO, SealedHeader::hash),
                number,
                gas_limit: 30_000_000,
                timestamp: 1_700_000_000 + 12 * number,
                extra_data: pattern(number, 32).into(),
                base_fee_per_gas: Some(1_000_000_000),
                ..Default::default()
            };
            chain.push(SealedHeader::seal(header));
        }
        chain
    }

    fn session_config(role: Role) -> SessionConfig {
        let genesis = keccak256(b"bridge test genesis");
        let key = NodeKey::random().expect("randomness");
        SessionConfig::new(key, role, NETWORK_ID, ForkSchedule::new(genesis, 0, [], []))
    }

    fn now(start: Instant) -> Timestamp {
        Timestamp::from_nanos(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// Moves bytes and time between a stream and a session (the tokio twin of the loopback
    /// example's driver) until `on_event` returns false or the session closes.
    async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
        stream: &mut S,
        session: &mut Session,
        start: Instant,
        mut on_event: impl FnMut(&mut Session, Event, Timestamp) -> bool,
    ) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(bytes) = session.poll_transmit() {
                stream.write_all(&bytes).await.expect("write");
            }
            stream.flush().await.expect("flush");
            let mut handled_events = false;
            while let Some(event) = session.poll_event() {
                handled_events = true;
                if let Event::Disconnected { reason, error, .. } = &event {
                    panic!("disconnected: {reason} {error:?}");
                }
                if !on_event(session, event, now(start)) {
                    while let Some(bytes) = session.poll_transmit() {
                        stream.write_all(&bytes).await.expect("write");
                    }
                    stream.flush().await.expect("flush");
                    return;
                }
            }
            if handled_events {
                // Handling an event may have queued bytes (a request, a reply): send them first.
                continue;
            }
            let wake = session
                .poll_timeout()
                .map(|at| start + Duration::from_nanos(at.as_nanos()))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) => panic!("stream ended"),
                    Ok(n) => session.handle_input(&buf[..n], now(start)),
                    Err(error) => panic!("read: {error}"),
                },
                () = tokio::time::sleep_until(wake) => {
                    if session.poll_timeout().is_some_and(|at| at <= now(start)) {
                        session.handle_timeout(now(start));
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn an_rlpx_les_session_runs_end_to_end_through_the_bridge() {
        let start = Instant::now();
        let chain = chain();
        let tip = chain.last().cloned().expect("chain");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server_addr = listener.local_addr().expect("address");
        let bridge = Bridge::start(config_allowing(&[server_addr])).await;

        // LES server on plain TCP.
        let role = Role::Server(ServerConfig {
            head: AnnouncedHead { hash: tip.hash(), number: tip.number(), td: U256::from(1u64) },
            flow: FlowParams::geth_default(),
            offer: ServeOffer::ARCHIVE,
        });
        let server_config = session_config(role);
        let server_key = server_config.key.public_key();
        let (server_established, server_peer) = oneshot::channel::<Box<PeerInfo>>();
        let served_chain = chain.clone();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let mut session = Session::accept(server_config, now(start)).expect("session");
            let mut established = Some(server_established);
            drive(&mut tcp, &mut session, start, |session, event, at| {
                match event {
                    Event::Established(info) => {
                        if let Some(sender) = established.take() {
                            let _ = sender.send(info);
                        }
                    }
                    Event::Request { ticket, request: LesMessage::GetBlockHeaders(query) } => {
                        let headers = served_chain
                            .iter()
                            .take(usize::try_from(query.max_headers).unwrap_or(0))
                            .map(|h| h.encoded().into())
                            .collect();
                        let reply = LesMessage::BlockHeaders(BlockHeaders {
                            request_id: query.request_id,
                            buffer_value: 0,
                            headers,
                        });
                        session.reply(ticket, reply, 0, at).expect("reply");
                    }
                    _ => {}
                }
                true
            })
            .await;
        });

        // LES client over a WebSocket to the bridge, as a browser would connect.
        let ws = connect(bridge.addr, server_addr).await;
        let mut stream = WsByteStream::new(ws);
        let role =
            Role::Client(ClientConfig { announce_type: AnnounceType::Signed, trusted: true });
        let client_config = session_config(role);
        let client_node = client_config.key.node_id();
        let mut session = Session::connect(client_config, server_key, now(start)).expect("session");
        let mut client_peer = None;
        let mut headers = None;
        within(
            "client session",
            drive(&mut stream, &mut session, start, |session, event, at| {
                match event {
                    Event::Established(info) => {
                        client_peer = Some(info);
                        let query = LesMessage::GetBlockHeaders(GetBlockHeaders {
                            request_id: 7,
                            origin: BlockHashOrNumber::Number(0),
                            max_headers: HEADERS,
                            skip: 0,
                            reverse: false,
                        });
                        session.send_request(query, at).expect("request");
                    }
                    Event::Reply(LesMessage::BlockHeaders(reply)) => {
                        headers = Some(reply);
                        return false;
                    }
                    _ => {}
                }
                true
            }),
        )
        .await;

        let client_peer = client_peer.expect("client established");
        assert_eq!(client_peer.public_key, server_key, "RLPx authenticated the server's key");
        let server_peer = within("server established", server_peer).await.expect("server info");
        assert_eq!(server_peer.node_id, client_node, "the server authenticated the client");
        assert_eq!(server_peer.version, client_peer.version);

        let reply = headers.expect("reply");
        assert_eq!(reply.request_id, 7);
        let decoded: Vec<SealedHeader> =
            reply.headers.iter().map(|rlp| SealedHeader::decode(rlp).expect("header")).collect();
        assert_eq!(decoded.len(), chain.len());
        assert!(
            decoded.iter().zip(&chain).all(|(got, sent)| got.hash() == sent.hash()),
            "every header arrived intact through the bridge"
        );
        server.abort();
        bridge.stop().await;
    }
}
