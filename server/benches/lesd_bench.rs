//! lesd load figures, against a real anvil and the release `lesd` binary in a child process
//! (so its memory is measured alone):
//! 1. idle clients one lesd holds, with lesd's resident memory per client (VmRSS delta);
//! 2. header requests per second served from the canonical window (pipelined);
//! 3. time to fan one announcement out to N clients;
//! 4. the serving queue under contention: a paying client and N free ones (lespay/1, paid
//!    balance granted over the admin API) each send a burst of account proofs at once, the
//!    payer last; the response-time medians per class, and lesd's mean queue wait per class.
//!
//! `cargo bench -p lesd --bench lesd_bench`; sizes from the environment:
//! LESD_BENCH_CLIENTS (default 2000), LESD_BENCH_FANOUT (default 1000),
//! LESD_BENCH_SECONDS (default 3), LESD_BENCH_QUEUE_FREE (default 8 free clients),
//! LESD_BENCH_QUEUE_BURST (default 24 proofs each). The last line of the output is `BENCH_JSON {...}` with the
//! same figures, for scripts/bench-report.mjs.

#[path = "../tests/common/burst.rs"]
mod burst;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/lesd_client/mod.rs"]
mod lesd_client;
#[path = "../tests/common/pay/mod.rs"]
mod pay_support;

use common::Anvil;
use les::crypto::{Enode, NodeKey};
use les::msg::{AnnounceType, BlockHashOrNumber, GetBlockHeaders, LesMessage, LesVersion};
use les::session::ServeOffer;
use lesd::node::NodeConfig;
use lesd::upstream::Upstream;
use lesd_client::{ChainInfo, LesClient};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct LesdProcess(Child);

impl Drop for LesdProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

impl LesdProcess {
    fn vm_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

fn start_lesd(anvil: &Anvil, datadir: &std::path::Path, extra: &[String]) -> (LesdProcess, Enode) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lesd"))
        .args(["--upstream", anvil.url(), "--listen", "127.0.0.1:0"])
        .args(["--poll-interval-ms", "5", "--max-clients", "20000"])
        .args(extra)
        .arg("--datadir")
        .arg(datadir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("lesd starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).expect("enode line");
    (LesdProcess(child), Enode::from_str(line.trim()).expect("enode"))
}

/// Connects `count` clients, `parallel` handshakes at a time; each then idles in its task.
async fn connect_many(
    enode: &Enode,
    chain: &ChainInfo,
    count: usize,
    announce_type: AnnounceType,
    announcements: Option<mpsc::UnboundedSender<Instant>>,
) -> (JoinSet<()>, Duration) {
    let started = Instant::now();
    let mut idle = JoinSet::new();
    let mut connecting = JoinSet::new();
    let mut launched = 0;
    let parallel = 64;
    while launched < count || !connecting.is_empty() {
        while launched < count && connecting.len() < parallel {
            let (enode, chain) = (enode.clone(), chain.clone());
            connecting.spawn(async move {
                LesClient::connect(&enode, &chain, announce_type, LesVersion::ALL.to_vec()).await
            });
            launched += 1;
        }
        if let Some(Ok(Ok(client))) = connecting.join_next().await {
            idle.spawn(client.run_idle(announcements.clone()));
        }
    }
    (idle, started.elapsed())
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let clients = env_usize("LESD_BENCH_CLIENTS", 2000);
    let fanout = env_usize("LESD_BENCH_FANOUT", 1000);
    let seconds = env_usize("LESD_BENCH_SECONDS", 3);
    let anvil = Anvil::spawn();
    anvil.mine(10).await;
    let upstream = Upstream::connect(anvil.url(), None).await.expect("upstream");
    let config = NodeConfig::new(
        NodeKey::random().expect("rng"),
        upstream.network_id(),
        upstream.genesis(),
        ServeOffer::ARCHIVE,
    );
    let chain = ChainInfo { network_id: upstream.network_id(), schedule: config.fork_schedule };
    let datadir = common::temp_dir("bench");
    let (lesd, enode) = start_lesd(&anvil, &datadir, &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. Idle clients and memory.
    let before = lesd.vm_rss_kib();
    let (idle, took) = connect_many(&enode, &chain, clients, AnnounceType::None, None).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = lesd.vm_rss_kib();
    let held = idle.len();
    let per_client_kib = after.saturating_sub(before) as f64 / held.max(1) as f64;
    println!(
        "idle clients: {held}/{clients} connected in {took:.1?} ({:.0}/s); lesd VmRSS {before} KiB -> {after} KiB: {:.1} KiB per client",
        held as f64 / took.as_secs_f64(),
        per_client_kib,
    );

    // 2. Header requests per second from the window (16 pipelined per client).
    let mut workers = JoinSet::new();
    for _ in 0..4 {
        let (enode, chain) = (enode.clone(), chain.clone());
        workers.spawn(async move {
            let mut client =
                LesClient::connect(&enode, &chain, AnnounceType::None, LesVersion::ALL.to_vec())
                    .await
                    .expect("client");
            let query = |request_id| {
                LesMessage::GetBlockHeaders(GetBlockHeaders {
                    request_id,
                    origin: BlockHashOrNumber::Number(10),
                    max_headers: 1,
                    skip: 0,
                    reverse: false,
                })
            };
            let deadline = Instant::now() + Duration::from_secs(seconds as u64);
            let mut pending = std::collections::VecDeque::new();
            let mut served = 0u64;
            while Instant::now() < deadline {
                while pending.len() < 16 {
                    match client.send(query).await {
                        Ok(id) => pending.push_back(id),
                        Err(_) => break,
                    }
                }
                let Some(id) = pending.pop_front() else { continue };
                if client.reply(id, Duration::from_secs(5)).await.is_ok() {
                    served += 1;
                }
            }
            served
        });
    }
    let mut total = 0;
    while let Some(Ok(served)) = workers.join_next().await {
        total += served;
    }
    println!(
        "header requests from the window: {total} in {seconds} s = {:.0}/s (4 clients, 16 in flight each)",
        total as f64 / seconds as f64
    );
    drop(idle);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 3. Announcement fan-out.
    let (sender, mut arrivals) = mpsc::unbounded_channel();
    let (listeners, _) =
        connect_many(&enode, &chain, fanout, AnnounceType::Signed, Some(sender)).await;
    let connected = listeners.len();
    // Drain the announcements sent right after each handshake.
    tokio::time::sleep(Duration::from_secs(1)).await;
    while arrivals.try_recv().is_ok() {}
    let mined = Instant::now();
    anvil.mine(1).await;
    let mut first = None;
    let mut last = mined;
    let mut received = 0;
    while received < connected {
        match tokio::time::timeout(Duration::from_secs(10), arrivals.recv()).await {
            Ok(Some(at)) => {
                first.get_or_insert(at);
                last = last.max(at);
                received += 1;
            }
            _ => break,
        }
    }
    let first = first.unwrap_or(mined);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    drop(listeners);
    let queue = queue_contention(&anvil).await;
    let figures = serde_json::json!({
        "idle": {
            "clients": clients,
            "held": held,
            "connectSecs": took.as_secs_f64(),
            "rssBeforeKiB": before,
            "rssAfterKiB": after,
            "kibPerClient": per_client_kib,
        },
        "headerRequests": {
            "served": total,
            "secs": seconds,
            "perSec": total as f64 / seconds as f64,
            "clients": 4,
            "inFlight": 16,
        },
        "fanout": {
            "clients": fanout,
            "connected": connected,
            "received": received,
            "firstMs": ms(first.duration_since(mined)),
            "spreadMs": ms(last.duration_since(first)),
        },
        "queue": queue,
    });
    println!(
        "fan-out: {received}/{connected} signed clients got the new head; first {:.1?} after anvil_mine (5 ms polling), all within {:.1?} of the first",
        first.duration_since(mined),
        last.duration_since(first),
    );
    println!("BENCH_JSON {figures}");
    drop(lesd);
    let _ = std::fs::remove_dir_all(&datadir);
}

/// Section 4: its own lesd (pool sized for the clients, admin endpoint, default serving
/// slots), a payer at four times the minimum capacity and `LESD_BENCH_QUEUE_FREE` free
/// clients, one burst each, the free ones first.
async fn queue_contention(anvil: &Anvil) -> serde_json::Value {
    const MIN_CAP: u64 = 16_000;
    let free_count = env_usize("LESD_BENCH_QUEUE_FREE", 8);
    let burst_len = env_usize("LESD_BENCH_QUEUE_BURST", 24);
    // Two free ports, held together so they differ, released for lesd.
    let ports: Vec<std::net::TcpListener> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    let [admin_port, metrics_port] = [0, 1].map(|i| ports[i].local_addr().expect("bound").port());
    drop(ports);
    let total = 4 * MIN_CAP + free_count as u64 * MIN_CAP;
    let datadir = common::temp_dir("bench-queue");
    let extra = [
        "--admin".to_string(),
        format!("127.0.0.1:{admin_port}"),
        "--free-id".into(),
        "node".into(),
        "--total-capacity".into(),
        total.to_string(),
        "--metrics".into(),
        format!("127.0.0.1:{metrics_port}"),
    ];
    let (lesd, enode) = start_lesd(anvil, &datadir, &extra);
    let admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let admin = |method: &'static str, params: serde_json::Value| async move {
        let reply = pay_support::client::admin_call(admin_addr, method, params).await;
        assert!(reply.get("error").is_none(), "{method}: {reply}");
    };
    let chain = pay_support::client::PayChain::of_upstream(anvil.url()).await;
    let paid_key = NodeKey::random().expect("rng");
    let paid_id = format!("{}", les::crypto::node_id(&paid_key.public_key()));
    admin("les_addBalance", serde_json::json!([paid_id, "100000000000000"])).await;
    let mut paid = pay_support::client::PayClient::connect_to(&enode, &chain, paid_key)
        .await
        .expect("paid client admitted");
    admin("les_setCapacity", serde_json::json!([paid_id, 4 * MIN_CAP])).await;
    paid.pump_for(Duration::from_millis(300)).await.expect("still connected");
    let mut free = Vec::new();
    for _ in 0..free_count {
        let key = NodeKey::random().expect("rng");
        free.push(
            pay_support::client::PayClient::connect_to(&enode, &chain, key)
                .await
                .expect("free client admitted"),
        );
    }
    let head = anvil.rpc("eth_getBlockByNumber", serde_json::json!(["latest", false])).await;
    let block =
        alloy_primitives::B256::from_str(head["hash"].as_str().expect("hash")).expect("hash");
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let queue_totals = || async {
        let text = reqwest::get(&metrics_url).await.expect("metrics").text().await.expect("text");
        let value = |name: &str, class: &str| -> f64 {
            let prefix = format!("lesd_{name}_total{{class=\"{class}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        ["paid", "free"].map(|c| (value("queued_requests", c), value("queue_seconds", c)))
    };

    let t0 = Instant::now();
    let mut free_ids = Vec::new();
    for client in &mut free {
        free_ids.push(burst::send_proofs(client, block, burst_len).await);
    }
    let paid_ids = burst::send_proofs(&mut paid, block, burst_len).await;
    let sent_free: usize = free_ids.iter().map(Vec::len).sum();
    let sent_paid = paid_ids.len();
    let mut waiting = JoinSet::new();
    waiting.spawn(async move { (true, burst::replies(paid, paid_ids, t0).await.1) });
    for (client, ids) in free.into_iter().zip(free_ids) {
        waiting.spawn(async move { (false, burst::replies(client, ids, t0).await.1) });
    }
    let (mut paid_at, mut free_at) = (Vec::new(), Vec::new());
    while let Some(Ok((is_paid, at))) = waiting.join_next().await {
        if is_paid { paid_at.extend(at) } else { free_at.extend(at) }
    }
    let [(paid_queued, paid_secs), (free_queued, free_secs)] = queue_totals().await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (paid_ms, free_ms) = (ms(burst::median(&paid_at)), ms(burst::median(&free_at)));
    let mean_ms = |secs: f64, count: f64| if count > 0.0 { secs / count * 1000.0 } else { 0.0 };
    println!(
        "serving queue: 1 paid + {free_count} free clients, {sent_paid} + {sent_free} proofs at once (payer last): \
         response median paid {paid_ms:.1} ms, free {free_ms:.1} ms ({:.2}x); mean queue wait paid {:.2} ms, free {:.2} ms",
        free_ms / paid_ms.max(f64::MIN_POSITIVE),
        mean_ms(paid_secs, paid_queued),
        mean_ms(free_secs, free_queued),
    );
    drop(lesd);
    let _ = std::fs::remove_dir_all(&datadir);
    serde_json::json!({
        "freeClients": free_count,
        "sentPaid": sent_paid,
        "sentFree": sent_free,
        "paidMedianMs": paid_ms,
        "freeMedianMs": free_ms,
        "freeOverPaid": free_ms / paid_ms.max(f64::MIN_POSITIVE),
        "paidQueueMs": mean_ms(paid_secs, paid_queued),
        "freeQueueMs": mean_ms(free_secs, free_queued),
    })
}
