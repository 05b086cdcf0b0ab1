//! What the bridge costs: round-trip latency of a small message through the bridge versus
//! straight over TCP, and throughput of 64 KiB messages each way. Everything runs on
//! 127.0.0.1 in this process: a target server, the bridge (`les_bridge::serve`), and the
//! client. Run with `cargo bench -p les-bridge` (under a minute).
//!
//! Before criterion's own figures it prints p50/p99 of individually timed round trips,
//! which criterion's averages over batches cannot show: as many rounds of 5,000 as
//! `RELAY_BENCH_ROUNDS` says (default one), then one machine-readable line `BENCH_JSON {...}`
//! with every round's figures in µs, for scripts/bench-report.mjs (criterion's own results
//! go where criterion puts them: target/criterion/, or `CRITERION_HOME`).

use criterion::{Criterion, Throughput};
use futures_util::{SinkExt, StreamExt};
use les_bridge::{AllowList, BridgeConfig, Target};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// Size of the round-trip message: about an RLPx-framed LES request.
const PING_SIZE: usize = 64;
/// Size of each message in the throughput runs.
const CHUNK_SIZE: usize = 64 * 1024;
/// Bytes moved per throughput iteration.
const TRANSFER_SIZE: usize = 16 * 1024 * 1024;
/// Round trips timed one by one for the percentiles.
const LATENCY_SAMPLES: usize = 5000;

/// The target's commands (first byte of each exchange).
const CMD_ECHO: u8 = b'E';
const CMD_UPLOAD: u8 = b'U';
const CMD_DOWNLOAD: u8 = b'D';

/// A target speaking a tiny protocol: `E` + 64 bytes -> the 64 bytes back; `U` + 16 MiB ->
/// one byte `K` once all arrived; `D` -> 16 MiB.
async fn target_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
    let addr = listener.local_addr().expect("target address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; CHUNK_SIZE];
                let payload = vec![0x5a; CHUNK_SIZE];
                loop {
                    let mut command = [0u8; 1];
                    if stream.read_exact(&mut command).await.is_err() {
                        return;
                    }
                    let done = match command[0] {
                        CMD_ECHO => {
                            let ping = &mut buf[..PING_SIZE];
                            stream.read_exact(ping).await.is_err()
                                || stream.write_all(ping).await.is_err()
                        }
                        CMD_UPLOAD => {
                            let mut left = TRANSFER_SIZE;
                            while left > 0 {
                                match stream.read(&mut buf[..left.min(CHUNK_SIZE)]).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => left -= n,
                                }
                            }
                            stream.write_all(b"K").await.is_err()
                        }
                        CMD_DOWNLOAD => {
                            let mut failed = false;
                            for _ in 0..TRANSFER_SIZE / CHUNK_SIZE {
                                failed |= stream.write_all(&payload).await.is_err();
                            }
                            failed
                        }
                        _ => true,
                    };
                    if done {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A client connection: straight TCP, or a WebSocket through the bridge.
enum Connection {
    Tcp(TcpStream),
    Bridge(Box<WebSocketStream<TcpStream>>),
}

impl Connection {
    async fn send(&mut self, bytes: Bytes) {
        match self {
            Self::Tcp(tcp) => tcp.write_all(&bytes).await.expect("tcp write"),
            Self::Bridge(ws) => ws.send(Message::Binary(bytes)).await.expect("ws send"),
        }
    }

    /// Receives exactly `len` bytes, whatever the message boundaries.
    async fn receive(&mut self, len: usize, buf: &mut Vec<u8>) {
        buf.clear();
        match self {
            Self::Tcp(tcp) => {
                buf.resize(len, 0);
                tcp.read_exact(buf).await.expect("tcp read");
            }
            Self::Bridge(ws) => {
                while buf.len() < len {
                    match ws.next().await {
                        Some(Ok(Message::Binary(data))) => buf.extend_from_slice(&data),
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
        }
    }

    async fn round_trip(&mut self, ping: &Bytes, buf: &mut Vec<u8>) {
        self.send(ping.clone()).await;
        self.receive(PING_SIZE, buf).await;
    }

    async fn upload(&mut self, chunk: &Bytes, buf: &mut Vec<u8>) {
        self.send(Bytes::from_static(&[CMD_UPLOAD])).await;
        for _ in 0..TRANSFER_SIZE / CHUNK_SIZE {
            self.send(chunk.clone()).await;
        }
        self.receive(1, buf).await;
    }

    async fn download(&mut self, buf: &mut Vec<u8>) {
        self.send(Bytes::from_static(&[CMD_DOWNLOAD])).await;
        self.receive(TRANSFER_SIZE, buf).await;
    }
}

struct Setup {
    runtime: Runtime,
    target: SocketAddr,
    bridge: SocketAddr,
}

impl Setup {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (target, bridge) = runtime.block_on(async {
            let target = target_server().await;
            let allow: AllowList = [Target::from_socket_addr(target)].into_iter().collect();
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind bridge");
            let bridge = listener.local_addr().expect("bridge address");
            tokio::spawn(les_bridge::serve(
                BridgeConfig::new(allow),
                listener,
                std::future::pending(),
            ));
            (target, bridge)
        });
        Self { runtime, target, bridge }
    }

    fn direct(&self) -> Connection {
        self.runtime.block_on(async {
            let tcp = TcpStream::connect(self.target).await.expect("connect target");
            tcp.set_nodelay(true).expect("nodelay");
            Connection::Tcp(tcp)
        })
    }

    fn through_bridge(&self) -> Connection {
        self.runtime.block_on(async {
            let tcp = TcpStream::connect(self.bridge).await.expect("connect bridge");
            tcp.set_nodelay(true).expect("nodelay");
            let url = format!("ws://{}/{}", self.bridge, self.target);
            let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.expect("ws handshake");
            Connection::Bridge(Box::new(ws))
        })
    }
}

fn ping_message() -> Bytes {
    let mut ping = vec![CMD_ECHO];
    ping.extend((0..PING_SIZE).map(|i| i as u8));
    Bytes::from(ping)
}

/// Times `LATENCY_SAMPLES` round trips one by one; returns (p50, p99).
fn percentiles(setup: &Setup, connection: &mut Connection) -> (Duration, Duration) {
    let ping = ping_message();
    let mut buf = Vec::new();
    let mut samples = setup.runtime.block_on(async {
        for _ in 0..200 {
            connection.round_trip(&ping, &mut buf).await;
        }
        let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
        for _ in 0..LATENCY_SAMPLES {
            let started = Instant::now();
            connection.round_trip(&ping, &mut buf).await;
            samples.push(started.elapsed());
        }
        samples
    });
    samples.sort_unstable();
    let at = |fraction: f64| {
        samples[((samples.len() as f64 * fraction) as usize).min(samples.len() - 1)]
    };
    (at(0.50), at(0.99))
}

fn report_percentiles(setup: &Setup) {
    let rounds = std::env::var("RELAY_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1);
    let mut figures = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        if rounds > 1 {
            println!("round {round} of {rounds}:");
        }
        figures.push(report_round(setup));
    }
    // serde_json is no dependency of the bridge: the numbers are formatted by hand.
    let list = |pick: fn(&[Duration; 4]) -> Duration| {
        let items: Vec<String> =
            figures.iter().map(|f| format!("{:.3}", pick(f).as_secs_f64() * 1e6)).collect();
        format!("[{}]", items.join(","))
    };
    println!(
        "BENCH_JSON {{\"pingBytes\":{PING_SIZE},\"samples\":{LATENCY_SAMPLES},\"directP50Us\":{},\"directP99Us\":{},\"bridgeP50Us\":{},\"bridgeP99Us\":{}}}",
        list(|f| f[0]),
        list(|f| f[1]),
        list(|f| f[2]),
        list(|f| f[3]),
    );
}

/// One round of percentiles, printed; returns direct p50, p99, bridge p50, p99.
fn report_round(setup: &Setup) -> [Duration; 4] {
    let (direct_p50, direct_p99) = percentiles(setup, &mut setup.direct());
    let (bridge_p50, bridge_p99) = percentiles(setup, &mut setup.through_bridge());
    println!("round trip of {PING_SIZE} bytes, {LATENCY_SAMPLES} samples each:");
    println!("  direct TCP      p50 {direct_p50:>10.1?}  p99 {direct_p99:>10.1?}");
    println!("  through bridge  p50 {bridge_p50:>10.1?}  p99 {bridge_p99:>10.1?}");
    println!(
        "  added by bridge p50 {:>10.1?}  p99 {:>10.1?}",
        bridge_p50.saturating_sub(direct_p50),
        bridge_p99.saturating_sub(direct_p99)
    );
    [direct_p50, direct_p99, bridge_p50, bridge_p99]
}

fn bench_latency(c: &mut Criterion, setup: &Setup) {
    let mut group = c.benchmark_group("round_trip_64B");
    let ping = ping_message();
    for (name, mut connection) in
        [("direct_tcp", setup.direct()), ("bridge", setup.through_bridge())]
    {
        let mut buf = Vec::new();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                setup.runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        connection.round_trip(&ping, &mut buf).await;
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
}

fn bench_throughput(c: &mut Criterion, setup: &Setup) {
    let mut group = c.benchmark_group("throughput_64KiB_messages");
    group.throughput(Throughput::Bytes(TRANSFER_SIZE as u64));
    group.sample_size(10);
    let chunk = Bytes::from(vec![0xa5; CHUNK_SIZE]);
    for (name, mut connection) in
        [("direct_tcp", setup.direct()), ("bridge", setup.through_bridge())]
    {
        let mut buf = Vec::new();
        group.bench_function(format!("upload/{name}"), |b| {
            b.iter_custom(|iters| {
                setup.runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        connection.upload(&chunk, &mut buf).await;
                    }
                    started.elapsed()
                })
            })
        });
        group.bench_function(format!("download/{name}"), |b| {
            b.iter_custom(|iters| {
                setup.runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        connection.download(&mut buf).await;
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
}

fn main() {
    let setup = Setup::new();
    report_percentiles(&setup);
    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_latency(&mut criterion, &setup);
    bench_throughput(&mut criterion, &setup);
    criterion.final_summary();
}
