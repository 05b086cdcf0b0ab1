//! Client benchmarks on loopback (`cargo bench -p ulc --bench client_bench`): a real anvil,
//! three real lesd, the client core with its EIP-1193 provider over TCP. Prints the median,
//! min and max of repeated runs for:
//! - cold start (empty store) to the first quorum-accepted head, and warm start (restored
//!   store) to the first head confirmed by a fresh quorum;
//! - per-method latency of provider requests (eth_chainId, eth_blockNumber, eth_getBalance,
//!   eth_getBlockByNumber, eth_getCode, eth_getStorageAt, eth_getTransactionReceipt);
//! - eth_call (DemoToken.balanceOf) cold and warm, with proof requests and rounds per call;
//! - eth_getLogs (the token's logs over the newest 10 blocks, receipts verified);
//! - idle network bytes with three servers, over `ULC_BENCH_IDLE_SECS` (default 60),
//!   extrapolated to an hour.
//!
//! Repetitions from the environment: `ULC_BENCH_STARTS` (default 7) cold/warm starts,
//! `ULC_BENCH_REQUESTS` (default 50) requests per method. The last line of the output is
//! `BENCH_JSON {...}`, every figure as {median, min, max, n} in ms, for
//! scripts/bench-report.mjs.
//!
//! Not timed tests: nothing here asserts a figure.
#![cfg(not(target_arch = "wasm32"))] // native: real lesd and anvil processes

#[path = "../tests/support/mod.rs"]
mod support;

use alloy_primitives::B256;
use serde_json::{Value, json};
use std::str::FromStr;
use std::time::{Duration, Instant};
use support::common::{self, Anvil, DEV_ADDRESS_0};
use support::{NativeClient, start_client as start, start_lesd};
use ulc::chain::Chain;
use ulc::config::{ClientConfig, ServerSpec, StorageKind};
use ulc::provider::Provider;
use ulc::store::MemoryStore;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&v| v > 0).unwrap_or(default)
}

fn main() {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    tokio::task::LocalSet::new().block_on(&runtime, bench());
}

async fn bench() {
    let starts = env_usize("ULC_BENCH_STARTS", 7);
    let requests = env_usize("ULC_BENCH_REQUESTS", 50);
    let mut figures = serde_json::Map::new();
    let anvil = Anvil::with_block_time(2);
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(start_lesd(anvil.url()).await);
    }
    let genesis = anvil.rpc("eth_getBlockByNumber", json!(["0x0", false])).await;
    let genesis = B256::from_str(genesis["hash"].as_str().expect("hash")).expect("genesis");
    let config = ClientConfig {
        chain_id: common::ANVIL_CHAIN_ID,
        genesis_hash: Some(genesis),
        servers: servers
            .iter()
            .map(|d| ServerSpec { enode: d.enode().to_string(), bridge: None, trusted: true })
            .collect(),
        fraction: 75,
        storage: StorageKind::Memory,
        payment: None,
    };
    println!("ulc client bench: anvil (2 s blocks) + 3 lesd on 127.0.0.1, fraction 75 % (3 of 3)");

    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..starts {
        let store = MemoryStore::new();
        let started = Instant::now();
        let client = start(&config, store.clone()).await;
        client.head().await.expect("cold head");
        cold.push(started.elapsed());
        client.stop();
        drop(client);
        let started = Instant::now();
        let client = start(&config, store).await;
        loop {
            if client.head().await.is_ok_and(|head| !head.stale) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        warm.push(started.elapsed());
        client.stop();
    }
    figures.insert("coldStartMs".into(), report("cold start to first quorum head", &cold));
    figures.insert(
        "warmStartMs".into(),
        report("warm start (restored store) to a fresh quorum head", &warm),
    );
    let mut latency = serde_json::Map::new();

    let client = start(&config, MemoryStore::new()).await;
    client.head().await.expect("head");
    let provider = Provider::new(client.clone());
    let contract = "0x4242424242424242424242424242424242424242";
    anvil.rpc("anvil_setCode", json!([contract, "0x6001600055"])).await;
    anvil
        .rpc(
            "anvil_setStorageAt",
            json!([contract, format!("{}", B256::ZERO), format!("{}", B256::with_last_byte(1))]),
        )
        .await;
    let tx = anvil
        .rpc(
            "eth_sendTransaction",
            json!([{"from": DEV_ADDRESS_0, "to": contract, "value": "0x1"}]),
        )
        .await;
    anvil.mine(1).await;
    let mined = common::quantity(&anvil.rpc("eth_blockNumber", json!([])).await);
    while client.head().await.map(|head| head.header.number()).unwrap_or(0) < mined {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let calls: Vec<(&str, Value)> = vec![
        ("eth_chainId", json!([])),
        ("eth_blockNumber", json!([])),
        ("eth_getBalance", json!([DEV_ADDRESS_0, "latest"])),
        ("eth_getBlockByNumber", json!(["latest", false])),
        ("eth_getBlockByNumber (full txs)", json!(["latest", true])),
        ("eth_getCode", json!([contract, "latest"])),
        ("eth_getStorageAt", json!([contract, "0x0", "latest"])),
        ("eth_getTransactionReceipt", json!([tx])),
    ];
    for (name, params) in calls {
        let method = name.split(' ').next().unwrap_or(name);
        let mut samples = Vec::new();
        for _ in 0..requests {
            let started = Instant::now();
            let result = provider.request(method, params.clone()).await;
            samples.push(started.elapsed());
            match result {
                Ok(Value::Null) => panic!("{name}: null"),
                Ok(_) => {}
                Err(error) => panic!("{name}: {error:?}"),
            }
        }
        latency.insert(name.into(), report(name, &samples));
    }

    // eth_call (revm over proven state): DemoToken.balanceOf, cold (a fresh provider, so
    // an empty state cache: every proof and the code fetched) and warm (all cached).
    let artifact: Value =
        serde_json::from_str(include_str!("../../contracts/artifacts/DemoToken.json"))
            .expect("artifact");
    let deploy =
        format!("{}{:064x}", artifact["bytecode"].as_str().expect("bytecode"), 1_000_000u64);
    let deploy_tx =
        anvil.rpc("eth_sendTransaction", json!([{"from": DEV_ADDRESS_0, "data": deploy}])).await;
    anvil.mine(1).await;
    let receipt = anvil.rpc("eth_getTransactionReceipt", json!([deploy_tx])).await;
    let token = receipt["contractAddress"].as_str().expect("deployed").to_string();
    let mined = common::quantity(&anvil.rpc("eth_blockNumber", json!([])).await);
    while client.head().await.map(|head| head.header.number()).unwrap_or(0) < mined {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let holder = DEV_ADDRESS_0.trim_start_matches("0x").to_lowercase();
    // At a fixed block: "latest" would move to a new block (whose state is fetched anew)
    // with every head.
    let at = format!("{mined:#x}");
    let call = json!([{"to": token, "data": format!("0x70a08231{holder:0>64}")}, at]);
    let mut cold = Vec::new();
    let (mut proofs, mut rounds) = (0, 0);
    for _ in 0..10 {
        let fresh = Provider::new(client.clone());
        let started = Instant::now();
        fresh.request("eth_call", call.clone()).await.expect("cold eth_call");
        cold.push(started.elapsed());
        let stats = evm_stats(&fresh).await;
        proofs += stats["proofRequests"].as_u64().unwrap_or(0);
        rounds += stats["rounds"].as_u64().unwrap_or(0);
    }
    latency.insert(
        "eth_call (cold)".into(),
        report("eth_call balanceOf, cold (empty state cache)", &cold),
    );
    figures.insert(
        "ethCallCold".into(),
        json!({
            "proofRequestsPerCall": proofs as f64 / cold.len() as f64,
            "roundsPerCall": rounds as f64 / cold.len() as f64,
        }),
    );
    println!(
        "eth_call balanceOf, cold: {:.1} proof requests and {:.1} fetch rounds per call",
        proofs as f64 / cold.len() as f64,
        rounds as f64 / cold.len() as f64
    );
    let warm_provider = Provider::new(client.clone());
    warm_provider.request("eth_call", call.clone()).await.expect("first eth_call");
    let before = evm_stats(&warm_provider).await;
    let mut warm = Vec::new();
    for _ in 0..requests {
        let started = Instant::now();
        warm_provider.request("eth_call", call.clone()).await.expect("warm eth_call");
        warm.push(started.elapsed());
    }
    let after = evm_stats(&warm_provider).await;
    latency
        .insert("eth_call (warm)".into(), report("eth_call balanceOf, warm (state cached)", &warm));
    println!(
        "eth_call balanceOf, warm: {} proof requests over {} calls",
        after["proofRequests"].as_u64().unwrap_or(0)
            - before["proofRequests"].as_u64().unwrap_or(0),
        warm.len()
    );

    // eth_getLogs: the token's logs (its mint is in the deploy block) over the newest 10
    // blocks, every block the bloom cannot exclude with its receipts verified.
    let filter = json!([{
        "address": token,
        "fromBlock": format!("{:#x}", mined.saturating_sub(9)),
        "toBlock": at,
    }]);
    let mut samples = Vec::new();
    let mut found = 0;
    for _ in 0..requests {
        let started = Instant::now();
        let logs = provider.request("eth_getLogs", filter.clone()).await.expect("eth_getLogs");
        samples.push(started.elapsed());
        found = logs.as_array().map_or(0, Vec::len);
    }
    latency.insert(
        "eth_getLogs".into(),
        report(&format!("eth_getLogs (10 blocks, token, {found} logs)"), &samples),
    );
    figures.insert("latencyMs".into(), Value::Object(latency));

    let idle_secs: u64 =
        std::env::var("ULC_BENCH_IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let before = client.metrics();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let after = client.metrics();
    let delta = |key: &str| after[key].as_u64().unwrap_or(0) - before[key].as_u64().unwrap_or(0);
    let per_hour = |bytes: u64| bytes as f64 * 3600.0 / idle_secs as f64;
    println!(
        "idle {idle_secs} s, 3 servers (a block every 2 s): in {} B, out {} B; per hour (extrapolated): in {:.0} KiB, out {:.0} KiB",
        delta("bytesIn"),
        delta("bytesOut"),
        per_hour(delta("bytesIn")) / 1024.0,
        per_hour(delta("bytesOut")) / 1024.0
    );
    figures.insert(
        "idle".into(),
        json!({
            "secs": idle_secs,
            "servers": 3,
            "bytesIn": delta("bytesIn"),
            "bytesOut": delta("bytesOut"),
            "bytesInPerHour": per_hour(delta("bytesIn")),
            "bytesOutPerHour": per_hour(delta("bytesOut")),
        }),
    );
    figures.insert("settings".into(), json!({"starts": starts, "requests": requests}));
    println!("BENCH_JSON {}", Value::Object(figures));
    client.stop();
    for server in servers {
        server.shutdown().await;
    }
}

/// The provider's `ulc_metrics.evm` counters.
async fn evm_stats(provider: &Provider<NativeClient>) -> Value {
    provider.request("ulc_metrics", json!([])).await.expect("metrics")["evm"].clone()
}

/// Prints one figure's median, min and max, and returns them as JSON (ms).
fn report(name: &str, samples: &[Duration]) -> Value {
    let mut sorted: Vec<Duration> = samples.to_vec();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = if sorted.len() % 2 == 1 {
        ms(sorted[sorted.len() / 2])
    } else {
        (ms(sorted[sorted.len() / 2 - 1]) + ms(sorted[sorted.len() / 2])) / 2.0
    };
    println!(
        "{name:<62} median {:>9.3} ms  min {:>9.3} ms  max {:>9.3} ms  (n={})",
        median,
        ms(sorted[0]),
        ms(sorted[sorted.len() - 1]),
        sorted.len()
    );
    json!({
        "median": median,
        "min": ms(sorted[0]),
        "max": ms(sorted[sorted.len() - 1]),
        "n": sorted.len(),
    })
}
