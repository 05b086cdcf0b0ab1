//! Test support shared by lesd's integration tests: a real anvil node on a free local port,
//! stopped when dropped, plus a small JSON-RPC helper to drive it.
//!
//! anvil comes from `node_modules/.bin/anvil` in the workspace root (installed by
//! `scripts/setup.sh` from the pinned package.json).
#![allow(dead_code)] // each test binary uses its own subset

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// anvil's chain id (and network id).
pub const ANVIL_CHAIN_ID: u64 = 31337;

/// anvil's first dev account and its private key (the well-known "test test ... junk" mnemonic).
pub const DEV_ADDRESS_0: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
/// Private key of [`DEV_ADDRESS_0`].
pub const DEV_KEY_0: [u8; 32] =
    hex32("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
/// anvil's second dev account.
pub const DEV_ADDRESS_1: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
/// anvil's third dev account.
pub const DEV_ADDRESS_2: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

/// How long anvil may take to answer its first request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts at finding a free port (another process may grab the one we picked).
const PORT_ATTEMPTS: usize = 5;

const fn hex32(text: &str) -> [u8; 32] {
    let bytes = text.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(bytes[2 * i]) << 4) | nibble(bytes[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not a lowercase hex digit"),
    }
}

/// Options for [`Anvil::spawn_with`].
#[derive(Debug, Clone, Default)]
pub struct AnvilOptions {
    /// Mine a block every this many seconds (`--block-time`); default: mine on each tx.
    pub block_time_secs: Option<u64>,
    /// Extra command-line arguments.
    pub extra_args: Vec<String>,
}

/// A running anvil, killed when dropped.
#[derive(Debug)]
pub struct Anvil {
    child: Option<Child>,
    port: u16,
    url: String,
}

/// The anvil binary in the workspace's node_modules.
pub fn anvil_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("node_modules/.bin/anvil")
}

impl Anvil {
    /// Starts anvil with default options (automine).
    pub fn spawn() -> Self {
        Self::spawn_with(AnvilOptions::default())
    }

    /// Starts anvil mining a block every `secs` seconds.
    pub fn with_block_time(secs: u64) -> Self {
        Self::spawn_with(AnvilOptions { block_time_secs: Some(secs), ..AnvilOptions::default() })
    }

    /// Starts anvil on a free 127.0.0.1 port and waits until it answers `eth_chainId`.
    pub fn spawn_with(options: AnvilOptions) -> Self {
        let path = anvil_path();
        if !path.exists() {
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!(
                    "anvil is required in CI but {} is missing: run scripts/setup.sh",
                    path.display()
                );
            }
            panic!("anvil not found at {}: run scripts/setup.sh", path.display());
        }
        for _ in 0..PORT_ATTEMPTS {
            // anvil cannot be told to pick a port itself; take one the OS considers free and
            // release it. If someone grabs it first, anvil exits and we try another.
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("bind 127.0.0.1:0")
                .port();
            let mut command = Command::new(&path);
            command
                .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent"])
                .args(&options.extra_args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(secs) = options.block_time_secs {
                command.args(["--block-time", &secs.to_string()]);
            }
            let child = command.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", path.display()));
            let mut anvil =
                Anvil { child: Some(child), port, url: format!("http://127.0.0.1:{port}") };
            if anvil.wait_ready() {
                return anvil;
            }
            anvil.stop();
        }
        panic!("anvil did not start after {PORT_ATTEMPTS} attempts");
    }

    /// Polls `eth_chainId` until it answers; false if anvil exited or never answered.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if blocking_rpc(self.port, "eth_chainId", json!([])).is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The HTTP JSON-RPC URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills anvil and waits for it to exit (also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Calls `method` and returns its result; panics on a transport or JSON-RPC error.
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        match self.try_rpc(method, params.clone()).await {
            Ok(result) => result,
            Err(error) => panic!("anvil {method}({params}) failed: {error}"),
        }
    }

    /// Calls `method`; `Err` carries the JSON-RPC error object (or the transport error).
    pub async fn try_rpc(&self, method: &str, params: Value) -> Result<Value, Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let response = reqwest::Client::new()
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| json!(e.to_string()))?;
        let mut reply: Value = response.json().await.map_err(|e| json!(e.to_string()))?;
        match reply.get_mut("error") {
            Some(error) => Err(error.take()),
            None => Ok(reply.get_mut("result").map(Value::take).unwrap_or(Value::Null)),
        }
    }

    /// Mines `blocks` blocks now.
    pub async fn mine(&self, blocks: u64) {
        self.rpc("anvil_mine", json!([format!("{blocks:#x}")])).await;
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One JSON-RPC call over a plain HTTP/1.1 connection, for the readiness probe (usable before
/// any async runtime exists). `None` on any failure.
fn blocking_rpc(port: u16, method: &str, params: Value) -> Option<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (_, json_text) = response.split_once("\r\n\r\n")?;
    let reply: Value = serde_json::from_str(json_text).ok()?;
    reply.get("result").cloned()
}

/// Parses a JSON hex quantity.
pub fn quantity(value: &Value) -> u64 {
    let text = value.as_str().unwrap_or_else(|| panic!("not a quantity: {value}"));
    u64::from_str_radix(text.trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("bad quantity {text}"))
}

/// A fresh, empty temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("lesd-test-{name}-{}-{nonce}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// An EIP-1559 transaction from [`DEV_ADDRESS_0`] on anvil's chain (10 gwei fee cap, 1 gwei
/// tip), signed with its key: the EIP-2718 bytes `eth_sendRawTransaction` takes.
pub fn dev_transaction(
    nonce: u64,
    gas_limit: u64,
    to: alloy_primitives::Address,
    value: alloy_primitives::U256,
    input: alloy_primitives::Bytes,
) -> alloy_primitives::Bytes {
    use alloy_consensus::{SignableTransaction, TxEip1559};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::{Signature, TxKind, U256};
    let tx = TxEip1559 {
        chain_id: ANVIL_CHAIN_ID,
        nonce,
        gas_limit,
        max_fee_per_gas: 10_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(to),
        value,
        input,
        ..Default::default()
    };
    let key = les::crypto::NodeKey::from_bytes(&DEV_KEY_0).expect("dev key");
    let sig = key.sign_prehash(&tx.signature_hash());
    let signature = Signature::new(
        U256::from_be_slice(&sig[..32]),
        U256::from_be_slice(&sig[32..64]),
        sig[64] == 1,
    );
    tx.into_signed(signature).encoded_2718().into()
}
