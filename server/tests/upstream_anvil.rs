//! The upstream against a real anvil: every kind of data lesd serves is fetched through
//! `Upstream`, checked with the light client's own verifiers (`les::chain`), and compared with
//! what anvil reports through its plain JSON-RPC answers.

mod common;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, Signature, TxKind, U256, keccak256};
use common::{
    ANVIL_CHAIN_ID, Anvil, DEV_ADDRESS_0, DEV_ADDRESS_1, DEV_ADDRESS_2, DEV_KEY_0, quantity,
    temp_dir,
};
use les::chain::{
    BlockBody, BlockReceipts, verify_account_and_storage, verify_account_proof, verify_code,
};
use les::crypto::NodeKey;
use les::msg::{TxLookup, TxState};
use lesd::store::Store;
use lesd::upstream::{DataMismatch, Upstream, UpstreamError};
use serde_json::{Value, json};
use std::str::FromStr;

/// Init code that stores 0x2a in slot 0 and deploys the runtime `return sload(0)`
/// (`PUSH1 0 SLOAD PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN`).
const INIT_CODE: &str = "0x602a600055600b6011600039600b6000f360005460005260206000f3";
const RUNTIME_CODE: &str = "0x60005460005260206000f3";
const STORED_VALUE: u64 = 0x2a;

fn address(text: &str) -> Address {
    Address::from_str(text).unwrap()
}

fn b256(value: &Value) -> B256 {
    B256::from_str(value.as_str().unwrap()).unwrap()
}

/// Sends several transaction types into one block (automine off, then one `anvil_mine`):
/// legacy, EIP-2930, EIP-1559 value transfers and a contract deployment. Returns the block
/// number, its hash, the contract address and the transaction hashes in submission order.
async fn mine_mixed_block(anvil: &Anvil) -> (u64, B256, Address, Vec<B256>) {
    // Mine once so the state root in headers matches anvil's proofs (see toolchain research).
    anvil.mine(1).await;
    anvil.rpc("evm_setAutomine", json!([false])).await;
    let requests = [
        json!({"from": DEV_ADDRESS_0, "to": DEV_ADDRESS_1, "value": "0x1000", "gasPrice": "0x77359400", "type": "0x0"}),
        json!({"from": DEV_ADDRESS_1, "to": DEV_ADDRESS_2, "value": "0x2000", "gasPrice": "0x77359400", "type": "0x1",
               "accessList": [{"address": DEV_ADDRESS_2, "storageKeys": [format!("{:#x}", B256::ZERO)]}]}),
        json!({"from": DEV_ADDRESS_0, "to": DEV_ADDRESS_2, "value": "0x3000", "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x1", "type": "0x2"}),
        json!({"from": DEV_ADDRESS_2, "data": INIT_CODE, "gas": "0x30000"}),
    ];
    let mut hashes = Vec::new();
    for request in requests {
        hashes.push(b256(&anvil.rpc("eth_sendTransaction", json!([request])).await));
    }
    anvil.mine(1).await;
    anvil.rpc("evm_setAutomine", json!([true])).await;
    let receipt = anvil.rpc("eth_getTransactionReceipt", json!([hashes[3]])).await;
    assert_eq!(receipt["status"], "0x1", "deployment failed: {receipt}");
    let contract = address(receipt["contractAddress"].as_str().unwrap());
    let number = quantity(&receipt["blockNumber"]);
    for hash in &hashes {
        let receipt = anvil.rpc("eth_getTransactionReceipt", json!([hash])).await;
        assert_eq!(quantity(&receipt["blockNumber"]), number, "all transactions in one block");
    }
    (number, b256(&receipt["blockHash"]), contract, hashes)
}

#[tokio::test]
async fn headers_bodies_receipts_proofs_and_code_verify_and_match_anvil() {
    let anvil = Anvil::spawn();
    let (number, block_hash, contract, tx_hashes) = mine_mixed_block(&anvil).await;
    let datadir = temp_dir("upstream-data");
    let store = Store::open(&datadir).unwrap();
    let upstream = Upstream::connect(anvil.url(), Some(store)).await.unwrap();

    assert_eq!(upstream.chain_id(), ANVIL_CHAIN_ID);
    assert_eq!(upstream.network_id(), ANVIL_CHAIN_ID);
    let anvil_genesis = anvil.rpc("eth_getBlockByNumber", json!(["0x0", false])).await;
    assert_eq!(upstream.genesis().hash(), b256(&anvil_genesis["hash"]));
    assert_eq!(upstream.latest_number().await.unwrap(), number);
    let head = upstream.head().await.unwrap();
    assert_eq!(head.header.hash(), block_hash);
    assert_eq!(head.total_difficulty, U256::ZERO, "anvil is post-merge");

    // Headers by number and by hash hash to anvil's block hashes and link up.
    let mut parent = None;
    for n in 0..=number {
        let anvil_block =
            anvil.rpc("eth_getBlockByNumber", json!([format!("{n:#x}"), false])).await;
        let by_number = upstream.header_by_number(n).await.unwrap().unwrap();
        assert_eq!(by_number.hash(), b256(&anvil_block["hash"]));
        assert_eq!(by_number.number(), n);
        let by_hash = upstream.header_by_hash(by_number.hash()).await.unwrap().unwrap();
        assert_eq!(by_hash, by_number);
        if let Some(parent_hash) = parent {
            assert_eq!(by_number.parent_hash(), parent_hash);
        }
        parent = Some(by_number.hash());
    }
    assert_eq!(upstream.header_by_number(number + 1).await.unwrap(), None);
    // The batched form gives the same headers, in the order asked, `None` past the head.
    let asked = [number, 0, number + 1, 1];
    let batched = upstream.headers_by_numbers(&asked).await.unwrap();
    for (n, header) in asked.iter().zip(&batched) {
        assert_eq!(header, &upstream.header_by_number(*n).await.unwrap());
    }
    assert!(batched[2].is_none() && batched[0].is_some());
    let header = upstream.header_by_hash(block_hash).await.unwrap().unwrap();

    // The body decodes as a light client decodes it, verifies against the header and holds
    // exactly anvil's transactions, of the four kinds sent.
    let body_rlp = upstream.body(block_hash).await.unwrap().unwrap();
    let body = BlockBody::decode(&body_rlp).unwrap();
    body.verify(header.header()).unwrap();
    let anvil_block = anvil.rpc("eth_getBlockByHash", json!([block_hash, false])).await;
    let anvil_tx_hashes: Vec<B256> =
        anvil_block["transactions"].as_array().unwrap().iter().map(b256).collect();
    let body_tx_hashes: Vec<B256> = body.transactions().iter().map(|tx| *tx.tx_hash()).collect();
    assert_eq!(body_tx_hashes, anvil_tx_hashes);
    let mut sorted_sent = tx_hashes.clone();
    sorted_sent.sort();
    let mut sorted_body = body_tx_hashes.clone();
    sorted_body.sort();
    assert_eq!(sorted_body, sorted_sent);
    let mut types: Vec<u8> = body.transactions().iter().map(|tx| tx.tx_type() as u8).collect();
    types.sort();
    types.dedup();
    assert_eq!(types, vec![0, 1, 2]);
    assert!(body.uncles().is_empty());
    assert_eq!(body.withdrawals().map(<[_]>::len), Some(0), "anvil is post-Shanghai");
    let senders = body.recover_senders().unwrap();
    assert!(senders.contains(&address(DEV_ADDRESS_2)));

    // Receipts verify against receiptsRoot, one per transaction, all successful.
    let receipts = upstream.receipts(block_hash).await.unwrap().unwrap();
    assert_eq!(receipts.len(), anvil_tx_hashes.len());
    let mut list = Vec::new();
    alloy_rlp::Header { list: true, payload_length: receipts.iter().map(|r| r.len()).sum() }
        .encode(&mut list);
    receipts.iter().for_each(|receipt| list.extend_from_slice(receipt));
    let decoded = BlockReceipts::decode(&list).unwrap();
    decoded.verify(header.header()).unwrap();
    assert!(decoded.receipts().iter().all(|receipt| receipt.status()));
    // An empty block has the empty receipt list (and body).
    let genesis_receipts = upstream.receipts(upstream.genesis().hash()).await.unwrap().unwrap();
    assert!(genesis_receipts.is_empty());

    // The contract's account and slot 0, proven against the state root, agree with anvil.
    let slot = B256::ZERO;
    let proof = upstream.proof(block_hash, contract, &[slot]).await.unwrap().unwrap();
    let state_root = header.header().state_root;
    let ordered = verify_account_proof(state_root, &contract, &proof.account).unwrap().unwrap();
    let nodes: Vec<Bytes> =
        proof.account.iter().chain(proof.storage.iter().flatten()).cloned().collect();
    let (account, values) =
        verify_account_and_storage(state_root, &contract, &[slot], &nodes).unwrap();
    let account = account.unwrap();
    assert_eq!(account, ordered);
    assert_eq!(values, vec![U256::from(STORED_VALUE)]);
    let anvil_slot =
        anvil.rpc("eth_getStorageAt", json!([contract, slot, block_hash_ref(block_hash)])).await;
    assert_eq!(b256(&anvil_slot), B256::from(U256::from(STORED_VALUE)));
    let anvil_balance =
        anvil.rpc("eth_getBalance", json!([contract, block_hash_ref(block_hash)])).await;
    assert_eq!(account.balance, U256::from_str(anvil_balance.as_str().unwrap()).unwrap());

    // A dev account (no storage) proves its balance and nonce.
    let sender = address(DEV_ADDRESS_0);
    let proof = upstream.proof(block_hash, sender, &[]).await.unwrap().unwrap();
    assert!(proof.storage.is_empty());
    let dev = verify_account_proof(state_root, &sender, &proof.account).unwrap().unwrap();
    let anvil_balance =
        anvil.rpc("eth_getBalance", json!([sender, block_hash_ref(block_hash)])).await;
    assert_eq!(dev.balance, U256::from_str(anvil_balance.as_str().unwrap()).unwrap());
    let anvil_nonce =
        anvil.rpc("eth_getTransactionCount", json!([sender, block_hash_ref(block_hash)])).await;
    assert_eq!(dev.nonce, quantity(&anvil_nonce));
    assert_eq!(dev.nonce, 2);

    // Code matches anvil's and the proven code hash; an account without code has none.
    let code = upstream.code(block_hash, contract).await.unwrap().unwrap();
    assert_eq!(code, Bytes::from_str(RUNTIME_CODE).unwrap());
    let anvil_code = anvil.rpc("eth_getCode", json!([contract, block_hash_ref(block_hash)])).await;
    assert_eq!(code, Bytes::from_str(anvil_code.as_str().unwrap()).unwrap());
    verify_code(account.code_hash, &code).unwrap();
    assert_eq!(keccak256(&code), account.code_hash);
    assert_eq!(upstream.code(block_hash, sender).await.unwrap(), Some(Bytes::new()));

    // A block anvil does not have is `None` everywhere.
    let unknown = B256::repeat_byte(0xab);
    assert_eq!(upstream.header_by_hash(unknown).await.unwrap(), None);
    assert_eq!(upstream.body(unknown).await.unwrap(), None);
    assert_eq!(upstream.receipts(unknown).await.unwrap(), None);
    assert_eq!(upstream.proof(unknown, contract, &[slot]).await.unwrap(), None);
    assert_eq!(upstream.code(unknown, contract).await.unwrap(), None);

    drop(upstream);
    std::fs::remove_dir_all(&datadir).unwrap();
}

fn block_hash_ref(hash: B256) -> Value {
    json!({"blockHash": hash})
}

/// Signs an EIP-1559 transfer with a dev key, as a wallet would.
fn signed_transfer(nonce: u64, to: Address, value: u64) -> Vec<u8> {
    let tx = TxEip1559 {
        chain_id: ANVIL_CHAIN_ID,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1,
        to: TxKind::Call(to),
        value: U256::from(value),
        ..TxEip1559::default()
    };
    let key = NodeKey::from_bytes(&DEV_KEY_0).unwrap();
    let signature = key.sign_prehash(&tx.signature_hash());
    let (rs, v) = signature.split_at(64);
    let signature = Signature::from_bytes_and_parity(rs, v == [1]);
    TxEnvelope::Eip1559(tx.into_signed(signature)).encoded_2718()
}

#[tokio::test]
async fn sent_transactions_are_pending_then_included() {
    let anvil = Anvil::spawn();
    anvil.mine(1).await;
    let upstream = Upstream::connect(anvil.url(), None).await.unwrap();
    anvil.rpc("evm_setAutomine", json!([false])).await;

    let sender = address(DEV_ADDRESS_0);
    let nonce = quantity(&anvil.rpc("eth_getTransactionCount", json!([sender, "pending"])).await);
    let raw = signed_transfer(nonce, address(DEV_ADDRESS_1), 12345);
    let hash = upstream.send_raw_transaction(&raw).await.unwrap();
    assert_eq!(hash, keccak256(&raw));

    let pending = upstream.tx_status(hash).await.unwrap();
    assert_eq!(pending.status, TxState::Pending);
    assert_eq!(pending.lookup, None);

    // The same transaction again is refused, with the node's reason.
    match upstream.send_raw_transaction(&raw).await {
        Err(UpstreamError::Rpc { message, .. }) => assert!(!message.is_empty()),
        other => panic!("expected an RPC refusal, got {other:?}"),
    }

    anvil.mine(1).await;
    let included = upstream.tx_status(hash).await.unwrap();
    let receipt = anvil.rpc("eth_getTransactionReceipt", json!([hash])).await;
    assert_eq!(included.status, TxState::Included);
    assert_eq!(
        included.lookup,
        Some(TxLookup {
            block_hash: b256(&receipt["blockHash"]),
            block_number: quantity(&receipt["blockNumber"]),
            index: 0,
        })
    );
    assert!(included.error.is_empty());
    let header =
        upstream.header_by_number(quantity(&receipt["blockNumber"])).await.unwrap().unwrap();
    assert_eq!(Some(header.hash()), included.lookup.map(|lookup| lookup.block_hash));
    let body = BlockBody::decode(&upstream.body(header.hash()).await.unwrap().unwrap()).unwrap();
    assert_eq!(body.transactions().iter().map(|tx| *tx.tx_hash()).collect::<Vec<_>>(), vec![hash]);

    let unknown = upstream.tx_status(B256::repeat_byte(0x11)).await.unwrap();
    assert_eq!(unknown.status, TxState::Unknown);
    assert_eq!(unknown.lookup, None);
}

#[tokio::test]
async fn the_store_serves_cached_data_when_anvil_is_gone_and_after_a_restart() {
    let mut anvil = Anvil::spawn();
    let (_, block_hash, _, _) = mine_mixed_block(&anvil).await;
    let datadir = temp_dir("upstream-restart");
    let upstream =
        Upstream::connect(anvil.url(), Some(Store::open(&datadir).unwrap())).await.unwrap();
    let header = upstream.header_by_hash(block_hash).await.unwrap().unwrap();
    let receipts = upstream.receipts(block_hash).await.unwrap().unwrap();
    assert_eq!(receipts.len(), 4);

    anvil.stop();
    // Cached, by hash: still served.
    assert_eq!(upstream.header_by_hash(block_hash).await.unwrap(), Some(header.clone()));
    assert_eq!(upstream.receipts(block_hash).await.unwrap(), Some(receipts.clone()));
    // Everything else needs the node, and fails as "unavailable", not with a panic: a refused
    // connection is `Unreachable`; a request that went out on a keep-alive connection the
    // dying node closed under it is `Transport` (hyper's IncompleteMessage). Both tell the
    // caller to keep its clients and retry later.
    let started = std::time::Instant::now();
    for error in [
        upstream.latest_number().await.unwrap_err(),
        upstream.header_by_number(1).await.unwrap_err(),
        upstream.body(block_hash).await.unwrap_err(),
        upstream.tx_status(B256::ZERO).await.unwrap_err(),
        upstream.send_raw_transaction(&[0xc0]).await.unwrap_err(),
    ] {
        assert!(
            matches!(error, UpstreamError::Unreachable(_) | UpstreamError::Transport(_)),
            "{error:?}"
        );
        assert!(error.is_unavailable());
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "refused connections fail fast");
    drop(upstream);

    // A new Upstream on the same datadir, in front of a different chain that has never seen
    // this block, still knows it from the store.
    let other = Anvil::spawn();
    let store = Store::open(&datadir).unwrap();
    assert_eq!(store.header(block_hash).unwrap(), Some(header.clone()));
    let restarted = Upstream::connect(other.url(), Some(store)).await.unwrap();
    assert_eq!(restarted.genesis().hash(), genesis_hash_of(&other).await);
    assert_eq!(
        other.rpc("eth_getBlockByHash", json!([block_hash, false])).await,
        Value::Null,
        "the new anvil does not know the block"
    );
    assert_eq!(restarted.header_by_hash(block_hash).await.unwrap(), Some(header));
    assert_eq!(restarted.receipts(block_hash).await.unwrap(), Some(receipts));
    drop(restarted);
    std::fs::remove_dir_all(&datadir).unwrap();
}

async fn genesis_hash_of(anvil: &Anvil) -> B256 {
    b256(&anvil.rpc("eth_getBlockByNumber", json!(["0x0", false])).await["hash"])
}

/// How the lying proxy alters anvil's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lie {
    /// Pass everything through.
    None,
    /// Change `gasUsed` of every block answer (headers no longer hash to their hash).
    HeaderField,
    /// Change the value of the first transaction in full blocks.
    TransactionValue,
    /// Change `cumulativeGasUsed` of the first receipt.
    ReceiptGas,
    /// Drop the last node of every account proof.
    TruncatedProof,
    /// Append a byte to returned code.
    Code,
    /// Answer with something that is not JSON.
    NotJson,
}

/// An adversary: an HTTP proxy in front of anvil that alters answers according to `lie`.
struct LyingProxy {
    url: String,
    lie: std::sync::Arc<std::sync::Mutex<Lie>>,
    task: tokio::task::JoinHandle<()>,
}

impl LyingProxy {
    async fn start(anvil_url: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let lie = std::sync::Arc::new(std::sync::Mutex::new(Lie::None));
        let shared = lie.clone();
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (client, anvil_url, lie) = (client.clone(), anvil_url.clone(), shared.clone());
                tokio::spawn(async move {
                    let _ = serve_one(stream, &client, &anvil_url, &lie).await;
                });
            }
        });
        Self { url, lie, task }
    }

    fn set(&self, lie: Lie) {
        *self.lie.lock().unwrap() = lie;
    }
}

impl Drop for LyingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP request, forwards its body to anvil, alters the answer, replies and closes.
async fn serve_one(
    mut stream: tokio::net::TcpStream,
    client: &reqwest::Client,
    anvil_url: &str,
    lie: &std::sync::Mutex<Lie>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = Vec::new();
    let body = loop {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&buffer).to_string();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0usize);
            if rest.len() >= length {
                break rest[..length].to_string();
            }
        }
    };
    let answer = client
        .post(anvil_url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(std::io::Error::other)?
        .text()
        .await
        .map_err(std::io::Error::other)?;
    let lie = *lie.lock().unwrap();
    let answer = if lie == Lie::NotJson {
        "<html>bad gateway</html>".to_string()
    } else {
        let mut value: Value = serde_json::from_str(&answer).map_err(std::io::Error::other)?;
        match &mut value {
            Value::Array(responses) => responses.iter_mut().for_each(|r| alter(r, lie)),
            response => alter(response, lie),
        }
        value.to_string()
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn alter(response: &mut Value, lie: Lie) {
    let Some(result) = response.get_mut("result") else { return };
    match lie {
        Lie::HeaderField
            if result.get("gasUsed").is_some()
                && result.get("logsBloom").is_some()
                && result.get("miner").is_some() =>
        {
            result["gasUsed"] = json!("0x1234");
        }
        Lie::TransactionValue => {
            if let Some(first) = result.get_mut("transactions").and_then(|txs| txs.get_mut(0))
                && first.is_object()
            {
                first["value"] = json!("0x1");
            }
        }
        Lie::ReceiptGas => {
            if let Some(first) = result.as_array_mut().and_then(|receipts| receipts.first_mut())
                && first.get("cumulativeGasUsed").is_some()
            {
                first["cumulativeGasUsed"] = json!("0x1");
            }
        }
        Lie::TruncatedProof => {
            if let Some(proof) = result.get_mut("accountProof").and_then(Value::as_array_mut) {
                proof.pop();
            }
        }
        Lie::Code => {
            if let Some(code) = result.as_str()
                && code.starts_with("0x6000")
            {
                *result = json!(format!("{code}00"));
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn a_lying_upstream_is_caught_and_never_served() {
    let anvil = Anvil::spawn();
    let (number, block_hash, contract, _) = mine_mixed_block(&anvil).await;
    let proxy = LyingProxy::start(anvil.url().to_owned()).await;
    // No store: every answer comes from the liar.
    let upstream = Upstream::connect(&proxy.url, None).await.unwrap();
    // Honest so far: the header is fetched and verified (proofs need it).
    assert!(upstream.body(block_hash).await.unwrap().is_some());

    proxy.set(Lie::HeaderField);
    match upstream.header_by_number(number).await {
        Err(UpstreamError::HeaderHashMismatch { number: n, claimed, rebuilt }) => {
            assert_eq!(n, number);
            assert_eq!(claimed, block_hash);
            assert_ne!(rebuilt, block_hash);
        }
        other => panic!("expected HeaderHashMismatch, got {other:?}"),
    }
    assert!(matches!(
        upstream.header_by_hash(block_hash).await,
        Err(UpstreamError::HeaderHashMismatch { .. })
    ));

    proxy.set(Lie::TransactionValue);
    assert!(matches!(
        mismatch(block_hash, upstream.body(block_hash).await),
        DataMismatch::TransactionHash { index: 0, .. }
    ));

    // The remaining lies need the header, which the proxy passes through honestly.
    proxy.set(Lie::ReceiptGas);
    assert!(matches!(
        mismatch(block_hash, upstream.receipts(block_hash).await),
        DataMismatch::Receipts(_)
    ));

    proxy.set(Lie::TruncatedProof);
    assert!(matches!(
        mismatch(block_hash, upstream.proof(block_hash, contract, &[B256::ZERO]).await),
        DataMismatch::Proof(_)
    ));
    assert!(matches!(
        mismatch(block_hash, upstream.code(block_hash, contract).await),
        DataMismatch::Proof(_)
    ));

    proxy.set(Lie::Code);
    assert!(matches!(
        mismatch(block_hash, upstream.code(block_hash, contract).await),
        DataMismatch::Code(_)
    ));

    proxy.set(Lie::NotJson);
    assert!(matches!(upstream.latest_number().await, Err(UpstreamError::Malformed { .. })));

    // Honest again: everything verifies.
    proxy.set(Lie::None);
    assert!(upstream.receipts(block_hash).await.unwrap().is_some());
    assert!(upstream.proof(block_hash, contract, &[B256::ZERO]).await.unwrap().is_some());
    assert!(upstream.code(block_hash, contract).await.unwrap().is_some());
}

/// The reason of a `RootMismatch` about `block`; panics on any other outcome.
fn mismatch<T: std::fmt::Debug>(block: B256, result: Result<T, UpstreamError>) -> DataMismatch {
    match result {
        Err(UpstreamError::RootMismatch { block: about, reason }) if about == block => *reason,
        other => panic!("expected a RootMismatch about {block}, got {other:?}"),
    }
}
