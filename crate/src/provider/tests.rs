//! The provider against a fixture [`Chain`] holding verified data: real mainnet blocks,
//! receipts, headers and proofs from `shared/vectors` (each checked with `les::chain` when the
//! fixture is built), plus small signed blocks made here where the vectors have no data
//! (a block with both bodies and receipts, creations, reorgs).
//!
//! The vectors live outside the crate: `<CARGO_MANIFEST_DIR>/../../shared/vectors`, or
//! `LES_VECTORS_DIR`. Without them the vector tests skip, unless `CI=true`, where they fail.

use super::*;
use crate::chain::{AccountState, ChainFuture, ChainResult, ClientError, HeadInfo};
use alloy_consensus::{
    Header, Receipt, ReceiptEnvelope, ReceiptWithBloom, SignableTransaction, TxEip1559, TxLegacy,
};
use alloy_eips::eip2718::Encodable2718;
use alloy_eips::eip4895::Withdrawal;
use alloy_primitives::{Address, Bytes, Log, LogData, Signature, TxKind, U256, hex};
use futures_channel::mpsc::UnboundedReceiver;
use les::chain::{
    BlockBody, BlockReceipts, BlockTransaction, verify_account_proof, verify_storage_proof,
};
use les::crypto::NodeKey;
use les::msg::TxLookup;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::task::{Context, Poll, Waker};

// ---------------------------------------------------------------------------------------
// Fixture chain and helpers
// ---------------------------------------------------------------------------------------

/// Verified data in memory; every future is ready.
#[derive(Default)]
struct Fixture {
    chain_id: u64,
    head: Option<SealedHeader>,
    /// Canonical headers (the head's chain), any subset.
    canonical: Vec<SealedHeader>,
    /// Known by hash but not canonical.
    side: Vec<SealedHeader>,
    bodies: HashMap<B256, VerifiedBody>,
    receipts: HashMap<B256, BlockReceipts>,
    /// Per (block, address): the account, its proof, and every slot the fixture can prove.
    accounts: HashMap<(B256, Address), AccountState>,
    locations: HashMap<B256, TxLookup>,
    /// When set, every core call fails with it.
    failure: RefCell<Option<ClientError>>,
    sent: RefCell<Vec<Bytes>>,
    code_requests: RefCell<Vec<(Address, B256)>>,
}

fn answer<T: 'static>(result: ChainResult<T>) -> ChainFuture<T> {
    ready(result).boxed_local()
}

fn missing<T: 'static>(what: &str) -> ChainFuture<T> {
    answer(Err(ClientError::Unavailable(format!("fixture has no {what}"))))
}

impl Fixture {
    fn is_disconnected(&self) -> bool {
        matches!(*self.failure.borrow(), Some(ClientError::Disconnected(_)))
    }

    fn fail<T: 'static>(&self) -> Option<ChainFuture<T>> {
        self.failure.borrow().clone().map(|error| answer(Err(error)))
    }

    fn known(&self, hash: B256) -> Option<&SealedHeader> {
        self.canonical.iter().chain(&self.side).find(|h| h.hash() == hash)
    }
}

impl Chain for Fixture {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }
    fn current_head(&self) -> Option<HeadInfo> {
        if self.is_disconnected() {
            return None;
        }
        let header = self.head.clone()?;
        Some(HeadInfo { header, stale: false, signers: vec![B256::repeat_byte(7)] })
    }
    fn connected_servers(&self) -> usize {
        usize::from(self.head.is_some() && !self.is_disconnected())
    }
    fn head(&self) -> ChainFuture<HeadInfo> {
        if let Some(f) = self.fail() {
            return f;
        }
        match &self.head {
            Some(header) => answer(Ok(HeadInfo {
                header: header.clone(),
                stale: false,
                signers: vec![B256::repeat_byte(7)],
            })),
            None => answer(Err(ClientError::Disconnected("no head yet".into()))),
        }
    }
    fn header_by_number(&self, number: u64) -> ChainFuture<Option<SealedHeader>> {
        if let Some(f) = self.fail() {
            return f;
        }
        let Some(head) = &self.head else { return missing("head") };
        if number > head.number() {
            return answer(Ok(None));
        }
        match self.canonical.iter().find(|h| h.number() == number) {
            Some(header) => answer(Ok(Some(header.clone()))),
            None => missing("header at that number"),
        }
    }
    fn header_by_hash(&self, hash: B256) -> ChainFuture<Option<SealedHeader>> {
        self.fail().unwrap_or_else(|| answer(Ok(self.known(hash).cloned())))
    }
    fn is_canonical(&self, header: &SealedHeader) -> ChainFuture<bool> {
        let canonical = self.canonical.iter().any(|h| h == header);
        self.fail().unwrap_or_else(|| answer(Ok(canonical)))
    }
    fn body(&self, header: &SealedHeader) -> ChainFuture<VerifiedBody> {
        if let Some(f) = self.fail() {
            return f;
        }
        match self.bodies.get(&header.hash()) {
            Some(body) => answer(Ok(body.clone())),
            None => missing("body"),
        }
    }
    fn receipts(&self, header: &SealedHeader) -> ChainFuture<BlockReceipts> {
        if let Some(f) = self.fail() {
            return f;
        }
        match self.receipts.get(&header.hash()) {
            Some(receipts) => answer(Ok(receipts.clone())),
            None => missing("receipts"),
        }
    }
    fn account(
        &self,
        header: &SealedHeader,
        address: Address,
        slots: Vec<B256>,
    ) -> ChainFuture<AccountState> {
        if let Some(f) = self.fail() {
            return f;
        }
        let Some(state) = self.accounts.get(&(header.hash(), address)) else {
            return missing("account proof");
        };
        let mut storage = Vec::new();
        for slot in slots {
            match state.storage.iter().find(|(s, _, _)| *s == slot) {
                Some(entry) => storage.push(entry.clone()),
                None => return missing("storage proof"),
            }
        }
        answer(Ok(AccountState { storage, ..state.clone() }))
    }
    fn code(&self, _: &SealedHeader, address: Address, code_hash: B256) -> ChainFuture<Bytes> {
        self.code_requests.borrow_mut().push((address, code_hash));
        missing("code")
    }
    fn send_raw_transaction(&self, raw: Bytes) -> ChainFuture<B256> {
        if let Some(f) = self.fail() {
            return f;
        }
        self.sent.borrow_mut().push(raw.clone());
        answer(Ok(alloy_primitives::keccak256(&raw)))
    }
    fn transaction_location(&self, hash: B256) -> ChainFuture<Option<TxLookup>> {
        self.fail().unwrap_or_else(|| answer(Ok(self.locations.get(&hash).cloned())))
    }
    fn events(&self) -> UnboundedReceiver<ClientEvent> {
        futures_channel::mpsc::unbounded().1
    }
    fn metrics(&self) -> Value {
        json!({"requests": 3})
    }
}

/// Polls once: the fixture's futures are all ready, so every request completes at once.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("a fixture request did not complete at once"),
    }
}

fn call(provider: &Provider<Fixture>, method: &str, params: Value) -> Result<Value, RpcError> {
    block_on(provider.request(method, params))
}

fn code_of(result: Result<Value, RpcError>) -> i64 {
    result.expect_err("expected an error").code
}

fn provider(fixture: Fixture) -> Provider<Fixture> {
    Provider::new(Rc::new(fixture))
}

fn vectors_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("LES_VECTORS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("shared").join("vectors")
    });
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("mainnet test vectors not found: looked in {} (set LES_VECTORS_DIR)", dir.display());
    }
    eprintln!("skipped: mainnet test vectors not found in {} (set LES_VECTORS_DIR)", dir.display());
    None
}

fn load(dir: &Path, name: &str) -> Vec<Value> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match serde_json::from_str(&text).unwrap() {
        Value::Array(items) => items,
        _ => panic!("{name}: expected a JSON array"),
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn b256(v: &Value) -> B256 {
    v.as_str().unwrap().parse().unwrap()
}

fn address(v: &Value) -> Address {
    v.as_str().unwrap().parse().unwrap()
}

fn u64_of(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn u128_of(v: &Value) -> u128 {
    u128::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// `ours` has every field of `recorded` (but `skip`) with the same value, and no field beyond
/// them but `extra`.
fn assert_fields(ours: &Value, recorded: &Value, skip: &[&str], extra: &[&str], what: &str) {
    let (Some(ours_map), Some(recorded_map)) = (ours.as_object(), recorded.as_object()) else {
        panic!("{what}: not objects: {ours} / {recorded}");
    };
    for (key, value) in recorded_map {
        if !skip.contains(&key.as_str()) {
            assert_eq!(ours_map.get(key), Some(value), "{what}: field {key}");
        }
    }
    for key in ours_map.keys() {
        assert!(
            recorded_map.contains_key(key) || extra.contains(&key.as_str()),
            "{what}: unexpected field {key}"
        );
    }
}

/// A header and verified body built from a mainnet-blocks.json entry: the header from its
/// RLP (checked against its hash), transactions from `raw`, withdrawals from their fields;
/// the body checked against the header's roots and the senders recovered by `les`.
fn vector_block(entry: &Value) -> (SealedHeader, VerifiedBody) {
    let h = &entry["header"];
    let header = SealedHeader::decode_expecting(&bytes(&h["rlp"]), b256(&h["hash"])).unwrap();
    let transactions: Vec<BlockTransaction> = entry["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tx| BlockTransaction::decode_2718_exact(&bytes(&tx["raw"])).unwrap())
        .collect();
    let withdrawals = entry.get("withdrawals").map(|list| {
        list.as_array()
            .unwrap()
            .iter()
            .map(|w| Withdrawal {
                index: u64_of(&w["index"]),
                validator_index: u64_of(&w["validatorIndex"]),
                address: address(&w["address"]),
                amount: u64_of(&w["amount"]),
            })
            .collect()
    });
    let body = BlockBody::new(transactions, vec![], withdrawals);
    body.verify(header.header()).unwrap();
    let senders = body.recover_senders().unwrap();
    (header, VerifiedBody { body, senders })
}

fn single_block_fixture(header: &SealedHeader, body: VerifiedBody) -> Fixture {
    Fixture {
        chain_id: 1,
        head: Some(header.clone()),
        canonical: vec![header.clone()],
        bodies: HashMap::from([(header.hash(), body)]),
        ..Fixture::default()
    }
}

fn sign<T: SignableTransaction<Signature>>(key: &NodeKey, tx: T) -> alloy_consensus::Signed<T> {
    let raw = key.sign_prehash(&tx.signature_hash());
    tx.into_signed(Signature::from_bytes_and_parity(&raw[..64], raw[64] == 1))
}

// ---------------------------------------------------------------------------------------
// Blocks and transactions against mainnet JSON
// ---------------------------------------------------------------------------------------

#[test]
fn mainnet_blocks_encode_as_recorded() {
    let Some(dir) = vectors_dir() else { return };
    let entries = load(&dir, "mainnet-blocks.json");
    let mut checked = 0;
    for entry in entries.iter().filter(|e| e.get("transactions").is_some()) {
        let label = entry["label"].as_str().unwrap();
        let (header, body) = vector_block(entry);
        let recorded_txs = entry["transactions"].as_array().unwrap();
        let provider = provider(single_block_fixture(&header, body));
        let number = qty(header.number());

        let full = call(&provider, "eth_getBlockByNumber", json!([number, true])).unwrap();
        assert_fields(
            &full,
            &entry["header"],
            &["rlp", "totalDifficulty"],
            &["transactions", "withdrawals"],
            label,
        );
        assert_eq!(full.get("withdrawals"), entry.get("withdrawals"), "{label}: withdrawals");
        let ours_txs = full["transactions"].as_array().unwrap();
        assert_eq!(ours_txs.len(), recorded_txs.len(), "{label}");
        for (ours, recorded) in ours_txs.iter().zip(recorded_txs) {
            let what = format!("{label}: tx {}", recorded["hash"]);
            // The vectors' authorization tuples carry the recovered `authority`, which geth
            // does not send; compare the rest.
            let mut recorded = recorded.clone();
            if let Some(Value::Array(list)) = recorded.get_mut("authorizationList") {
                list.iter_mut().for_each(|auth| {
                    auth.as_object_mut().unwrap().remove("authority");
                });
            }
            // geth sends `chainId` for replay-protected legacy transactions and `yParity` for
            // EIP-7702 ones; these recordings do not.
            assert_fields(
                ours,
                &recorded,
                &["raw"],
                &["blockTimestamp", "chainId", "yParity"],
                &what,
            );
            if recorded["type"] != "0x0" {
                assert_eq!(ours["yParity"], ours["v"], "{what}");
            }
            assert_eq!(ours["blockTimestamp"], full["timestamp"], "{what}");
            if recorded.get("chainId").is_none() {
                let v = u64_of(&recorded["v"]);
                let expected = if v >= 35 { Some(qty(1u64)) } else { None };
                assert_eq!(ours.get("chainId"), expected.as_ref(), "{what}: legacy chainId");
            }
            checked += 1;
        }

        // Hashes only; by hash gives the same block.
        let hashes = call(&provider, "eth_getBlockByNumber", json!([number, false])).unwrap();
        let recorded_hashes: Vec<Value> =
            recorded_txs.iter().map(|tx| tx["hash"].clone()).collect();
        assert_eq!(hashes["transactions"], Value::Array(recorded_hashes), "{label}");
        assert_eq!(hashes["size"], entry["header"]["size"], "{label}");
        let by_hash =
            call(&provider, "eth_getBlockByHash", json!([data(header.hash()), false])).unwrap();
        assert_eq!(by_hash, hashes, "{label}");
        assert_eq!(call(&provider, "eth_getBlockByNumber", json!(["latest"])).unwrap(), hashes);
    }
    assert_eq!(checked, 385);
}

#[test]
fn mainnet_headers_encode_as_recorded() {
    let Some(dir) = vectors_dir() else { return };
    let entries = load(&dir, "mainnet-headers.json");
    assert_eq!(entries.len(), 30);
    for entry in &entries {
        let header =
            SealedHeader::decode_expecting(&bytes(&entry["rlp"]), b256(&entry["hash"])).unwrap();
        let ours = Value::Object(encode::header_object(&header));
        let skip = ["rlp", "size", "totalDifficulty", "uncles", "label", "fork", "source", "note"];
        assert_fields(&ours, entry, &skip, &[], entry["label"].as_str().unwrap());
    }
}

#[test]
fn transaction_by_hash_checks_the_reported_location() {
    let Some(dir) = vectors_dir() else { return };
    let entries = load(&dir, "mainnet-blocks.json");
    let entry = entries.iter().find(|e| e["header"]["number"] == "0x1564570").unwrap();
    let (header, body) = vector_block(entry);
    let recorded = &entry["transactions"][0x74]; // the EIP-7702 transaction
    assert_eq!(recorded["type"], "0x4");
    let wanted = b256(&recorded["hash"]);
    let other = b256(&entry["transactions"][0]["hash"]);
    let lookup =
        |index| TxLookup { block_hash: header.hash(), block_number: header.number(), index };
    // A side block with the same body: known by hash, not canonical.
    let side = SealedHeader::seal(Header {
        extra_data: Bytes::from_static(b"side"),
        ..header.header().clone()
    });
    let side_hash = B256::repeat_byte(0x5d);
    let mut fixture = single_block_fixture(&header, body.clone());
    fixture.bodies.insert(side.hash(), body);
    fixture.side.push(side.clone());
    fixture.locations.insert(wanted, lookup(0x74));
    // Servers claiming the wrong index, the wrong number, a side block, an unknown block.
    fixture.locations.insert(other, lookup(1));
    fixture.locations.insert(B256::repeat_byte(1), TxLookup { block_number: 5, ..lookup(0) });
    fixture.locations.insert(side_hash, TxLookup { block_hash: side.hash(), ..lookup(0) });
    fixture
        .locations
        .insert(B256::repeat_byte(2), TxLookup { block_hash: B256::ZERO, ..lookup(0) });
    fixture.locations.insert(B256::repeat_byte(3), lookup(10_000));
    let provider = provider(fixture);

    let ours = call(&provider, "eth_getTransactionByHash", json!([data(wanted)])).unwrap();
    assert_eq!(ours["hash"], recorded["hash"]);
    assert_eq!(ours["from"], recorded["from"]);
    assert_eq!(
        ours["authorizationList"][0]["address"],
        recorded["authorizationList"][0]["address"]
    );
    assert_eq!(ours["transactionIndex"], "0x74");
    for hash in [
        other,
        B256::repeat_byte(1),
        side_hash,
        B256::repeat_byte(2),
        B256::repeat_byte(3),
        B256::repeat_byte(4),
    ] {
        assert_eq!(
            call(&provider, "eth_getTransactionByHash", json!([data(hash)])),
            Ok(Value::Null),
            "{hash}"
        );
        assert_eq!(
            call(&provider, "eth_getTransactionReceipt", json!([data(hash)])),
            Ok(Value::Null),
            "{hash}"
        );
    }
    // The side block itself is answered by hash (geth does too), but not by a canonical query.
    assert!(
        call(&provider, "eth_getBlockByHash", json!([data(side.hash()), false]))
            .unwrap()
            .is_object()
    );
    let canonical = json!([{"blockHash": data(side.hash()), "requireCanonical": true}]);
    assert_eq!(code_of(call(&provider, "eth_getBlockReceipts", canonical)), -32000);
}

// ---------------------------------------------------------------------------------------
// Receipts
// ---------------------------------------------------------------------------------------

#[test]
fn mainnet_receipts_encode_as_recorded() {
    let Some(dir) = vectors_dir() else { return };
    let entries = load(&dir, "mainnet-blocks.json");
    let entry = entries.iter().find(|e| e.get("receipts").is_some()).unwrap();
    let header = SealedHeader::decode_expecting(
        &bytes(&entry["header"]["rlp"]),
        b256(&entry["header"]["hash"]),
    )
    .unwrap();
    let recorded = entry["receipts"].as_array().unwrap();
    // The network form of the list: legacy receipts as lists, typed ones as byte strings.
    let items: Vec<Vec<u8>> = recorded
        .iter()
        .map(|r| {
            let encoded = bytes(&r["encoded"]);
            if encoded[0] >= 0xc0 { encoded } else { alloy_rlp::encode(encoded.as_slice()) }
        })
        .collect();
    let payload = items.concat();
    let mut list = Vec::new();
    alloy_rlp::Header { list: true, payload_length: payload.len() }.encode(&mut list);
    list.extend_from_slice(&payload);
    let receipts = BlockReceipts::decode(&list).unwrap();
    receipts.verify(header.header()).unwrap();

    // The block's bodies are not in the vectors, so the per-transaction facts come from the
    // recording; everything else (gasUsed, logIndex, logs, bloom, status, type, block
    // fields) is derived here from the verified receipts.
    let hashes = entry["transactionHashes"].as_array().unwrap();
    let facts: Vec<TxFacts> = recorded
        .iter()
        .zip(hashes)
        .map(|(r, hash)| TxFacts {
            hash: b256(hash),
            from: address(&r["from"]),
            to: r["to"].as_str().map(|_| address(&r["to"])),
            contract_address: r["contractAddress"].as_str().map(|_| address(&r["contractAddress"])),
            effective_gas_price: u128_of(&r["effectiveGasPrice"]),
            blob_gas_used: None,
        })
        .collect();
    let ours = encode::block_receipts(&header, &facts, receipts.receipts(), None).unwrap();
    assert_eq!(ours.len(), 202);
    let timestamp = qty(header.header().timestamp);
    let mut logs = 0;
    for (ours, recorded) in ours.iter().zip(recorded) {
        let what = format!("receipt {}", recorded["transactionHash"]);
        assert_fields(ours, recorded, &["encoded", "logs"], &[], &what);
        let (ours_logs, recorded_logs) =
            (ours["logs"].as_array().unwrap(), recorded["logs"].as_array().unwrap());
        assert_eq!(ours_logs.len(), recorded_logs.len(), "{what}");
        for (ours_log, recorded_log) in ours_logs.iter().zip(recorded_logs) {
            assert_fields(ours_log, recorded_log, &[], &["blockTimestamp"], &what);
            assert_eq!(ours_log["blockTimestamp"], timestamp);
            logs += 1;
        }
    }
    assert!(logs > 400, "{logs} logs");
    // One receipt out of order no longer adds up.
    let mut swapped = receipts.receipts().to_vec();
    swapped.swap(0, 1);
    assert!(matches!(
        encode::block_receipts(&header, &facts, &swapped, None),
        Err(encode::EncodeError::CumulativeGas { index: 1, .. })
    ));
    assert!(matches!(
        encode::block_receipts(&header, &facts[1..], receipts.receipts(), None),
        Err(encode::EncodeError::ReceiptCount { .. })
    ));
}

/// A block of three signed transactions (EIP-1559 call, legacy creation, legacy call) with
/// receipts, its header committing to both.
fn receipt_block() -> (Fixture, Vec<BlockTransaction>, Address) {
    let key = NodeKey::from_bytes(&[0x42; 32]).unwrap();
    let sender = les::chain::address_from_public_key(&key.public_key());
    let gwei = 1_000_000_000u128;
    let token = Address::repeat_byte(0x70);
    let transactions: Vec<BlockTransaction> = vec![
        sign(
            &key,
            TxEip1559 {
                chain_id: 1,
                nonce: 7,
                gas_limit: 60_000,
                max_fee_per_gas: 100 * gwei,
                max_priority_fee_per_gas: 2 * gwei,
                to: TxKind::Call(token),
                ..Default::default()
            },
        )
        .into(),
        sign(
            &key,
            TxLegacy {
                chain_id: Some(1),
                nonce: 8,
                gas_price: 20 * gwei,
                gas_limit: 200_000,
                to: TxKind::Create,
                input: Bytes::from_static(&[0x60, 0x00]),
                ..Default::default()
            },
        )
        .into(),
        sign(
            &key,
            TxLegacy {
                chain_id: None,
                nonce: 9,
                gas_price: 20 * gwei,
                gas_limit: 21_000,
                to: TxKind::Call(token),
                ..Default::default()
            },
        )
        .into(),
    ];
    let log = |n: u8| Log {
        address: token,
        data: LogData::new_unchecked(vec![B256::repeat_byte(n)], Bytes::from(vec![n])),
    };
    let receipt = |ok: bool, cumulative, logs| {
        ReceiptWithBloom::from(Receipt { status: ok.into(), cumulative_gas_used: cumulative, logs })
    };
    let receipts = vec![
        ReceiptEnvelope::Eip1559(receipt(true, 50_000, vec![log(1), log(2)])),
        ReceiptEnvelope::Legacy(receipt(true, 150_000, vec![log(3)])),
        ReceiptEnvelope::Legacy(receipt(false, 171_000, vec![])),
    ];
    let receipts = BlockReceipts::decode(&alloy_rlp::encode(&receipts)).unwrap();
    let body = BlockBody::new(transactions.clone(), vec![], Some(vec![]));
    let header = SealedHeader::seal(Header {
        number: 100,
        timestamp: 1_700_000_000,
        base_fee_per_gas: Some(10 * gwei as u64),
        transactions_root: body.transactions_root(),
        ommers_hash: body.ommers_hash(),
        withdrawals_root: body.withdrawals_root(),
        receipts_root: receipts.receipts_root(),
        gas_used: 171_000,
        ..Header::default()
    });
    body.verify(header.header()).unwrap();
    receipts.verify(header.header()).unwrap();
    let senders = body.recover_senders().unwrap();
    assert_eq!(senders, vec![sender; 3]);
    let mut fixture = single_block_fixture(&header, VerifiedBody { body, senders });
    fixture.receipts.insert(header.hash(), receipts);
    for (index, tx) in transactions.iter().enumerate() {
        fixture.locations.insert(
            *tx.tx_hash(),
            TxLookup { block_hash: header.hash(), block_number: 100, index: index as u64 },
        );
    }
    (fixture, transactions, sender)
}

#[test]
fn receipts_derive_gas_log_indices_prices_and_creations() {
    let (fixture, transactions, sender) = receipt_block();
    let provider = provider(fixture);
    let get = |tx: &BlockTransaction| {
        call(&provider, "eth_getTransactionReceipt", json!([data(tx.tx_hash())])).unwrap()
    };
    let first = get(&transactions[0]);
    assert_eq!(first["gasUsed"], "0xc350");
    assert_eq!(first["effectiveGasPrice"], qty(12_000_000_000u64)); // base 10 + tip 2 gwei
    assert_eq!(first["type"], "0x2");
    assert_eq!(first["status"], "0x1");
    assert_eq!(first["contractAddress"], Value::Null);
    assert_eq!(first["from"], data(sender));
    assert_eq!(first["to"], data(Address::repeat_byte(0x70)));
    assert_eq!(first["logs"][1]["logIndex"], "0x1");
    assert_eq!(first["logs"][1]["topics"], json!([data(B256::repeat_byte(2))]));

    let creation = get(&transactions[1]);
    assert_eq!(creation["gasUsed"], qty(100_000u64));
    assert_eq!(creation["cumulativeGasUsed"], qty(150_000u64));
    assert_eq!(creation["effectiveGasPrice"], qty(20_000_000_000u64));
    assert_eq!(creation["to"], Value::Null);
    assert_eq!(creation["contractAddress"], data(sender.create(8)));
    assert_eq!(creation["logs"][0]["logIndex"], "0x2"); // counted across the block
    assert_eq!(creation["logs"][0]["transactionIndex"], "0x1");

    let failed = get(&transactions[2]);
    assert_eq!(failed["status"], "0x0");
    assert_eq!(failed["gasUsed"], qty(21_000u64));

    let all = call(&provider, "eth_getBlockReceipts", json!(["latest"])).unwrap();
    assert_eq!(all, json!([first, creation, failed]));
    assert_eq!(call(&provider, "eth_getBlockReceipts", json!(["0x65"])), Ok(Value::Null));

    // A full block carries the same transactions, the pre-EIP-155 one with v 27/28.
    let block = call(&provider, "eth_getBlockByNumber", json!(["0x64", true])).unwrap();
    assert_eq!(block["transactions"][0]["gasPrice"], first["effectiveGasPrice"]);
    assert_eq!(block["transactions"][1]["chainId"], "0x1");
    assert!(block["transactions"][2].get("chainId").is_none());
    assert!(matches!(block["transactions"][2]["v"].as_str(), Some("0x1b" | "0x1c")));
    assert_eq!(block["withdrawals"], json!([]));
}

#[test]
fn contract_address_is_sender_and_nonce() {
    // The example of the Ethereum yellow paper's CREATE rule that is widely quoted.
    let sender: Address = "0x6ac7ea33f8831ea9dcc53393aaa88b25a785dbf0".parse().unwrap();
    let tx: BlockTransaction = TxLegacy { nonce: 1, to: TxKind::Create, ..Default::default() }
        .into_signed(Signature::test_signature())
        .into();
    let facts = TxFacts::of(&tx, sender, None);
    assert_eq!(
        facts.contract_address,
        Some("0x343c43a37d37dff08ae8c4a11544c718abb4fcf8".parse().unwrap())
    );
}

#[test]
fn blob_gas_price_follows_the_mainnet_schedule() {
    let Some(dir) = vectors_dir() else { return };
    let entries = load(&dir, "mainnet-blocks.json");
    let header = |number: &str| {
        let e = entries.iter().find(|e| e["header"]["number"] == number).unwrap();
        SealedHeader::decode(&bytes(&e["header"]["rlp"])).unwrap()
    };
    let cancun = header("0x156456a"); // 2 blocks before Prague
    let prague = header("0x1564570");
    let excess = |h: &SealedHeader| h.header().excess_blob_gas.unwrap();
    assert_eq!(
        encode::blob_gas_price(1, &cancun),
        Some(alloy_eips::eip4844::calc_blob_gasprice(excess(&cancun)))
    );
    assert_eq!(
        encode::blob_gas_price(1, &prague),
        Some(alloy_eips::eip7691::calc_blob_gasprice(excess(&prague)))
    );
    assert_ne!(
        encode::blob_gas_price(1, &prague),
        encode::blob_gas_price(
            1,
            &SealedHeader::seal(Header {
                timestamp: cancun.header().timestamp,
                ..prague.header().clone()
            })
        )
    );
    assert_eq!(encode::blob_gas_price(31337, &prague), None);
    assert_eq!(encode::blob_gas_price(1, &header("0xed14f2")), None); // pre-Cancun
}

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

/// An AccountState from a recorded eth_getProof, checked with `les` against `state_root`.
fn proven_state(entry: &Value, state_root: B256) -> (Address, AccountState) {
    let nodes =
        |v: &Value| v.as_array().unwrap().iter().map(|n| Bytes::from(bytes(n))).collect::<Vec<_>>();
    let who = address(&entry["address"]);
    let account_proof = nodes(&entry["accountProof"]);
    let account = verify_account_proof(state_root, &who, &account_proof).unwrap();
    let storage_root = account.map_or(alloy_consensus::EMPTY_ROOT_HASH, |a| a.storage_root);
    let storage = entry["storageProof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let slot = params::slot(&s["key"], "key").unwrap().slot;
            let proof = nodes(&s["proof"]);
            let value = verify_storage_proof(storage_root, &slot, &proof).unwrap();
            (slot, value, proof)
        })
        .collect();
    (who, AccountState { account, account_proof, storage })
}

#[test]
fn state_methods_answer_from_mainnet_proofs() {
    let Some(dir) = vectors_dir() else { return };
    let proofs = load(&dir, "mainnet-proofs.json");
    let headers = load(&dir, "mainnet-headers.json");
    let anchored: Vec<&Value> = proofs
        .iter()
        .filter(|p| {
            p["blockHash"] == "0x92dabfa3f61ff1c349d12f5fd0dd4c99760a0a41b77dee8f0a80f83efdcb307a"
        })
        .collect();
    assert_eq!(anchored.len(), 2);
    let h = headers.iter().find(|h| h["hash"] == anchored[0]["blockHash"]).unwrap();
    let header = SealedHeader::decode_expecting(&bytes(&h["rlp"]), b256(&h["hash"])).unwrap();
    let mut fixture = Fixture {
        chain_id: 1,
        head: Some(header.clone()),
        canonical: vec![header.clone()],
        ..Fixture::default()
    };
    for entry in &anchored {
        let (who, state) = proven_state(entry, header.header().state_root);
        fixture.accounts.insert((header.hash(), who), state);
    }
    let provider = provider(fixture);
    let number = qty(header.number());
    for entry in &anchored {
        let label = entry["label"].as_str().unwrap();
        let keys: Vec<Value> =
            entry["storageProof"].as_array().unwrap().iter().map(|s| s["key"].clone()).collect();
        let ours =
            call(&provider, "eth_getProof", json!([entry["address"], keys, number])).unwrap();
        let skip = [
            "label",
            "source",
            "note",
            "blockNumber",
            "blockHash",
            "stateRoot",
            "stateRootSource",
            "expect",
            "proves",
        ];
        assert_fields(&ours, entry, &skip, &[], label);
        let addr = &entry["address"];
        assert_eq!(
            call(&provider, "eth_getBalance", json!([addr, "latest"])).unwrap(),
            entry["balance"]
        );
        assert_eq!(call(&provider, "eth_getBalance", json!([addr])).unwrap(), entry["balance"]);
        assert_eq!(
            call(&provider, "eth_getTransactionCount", json!([addr, "pending"])).unwrap(),
            entry["nonce"]
        );
        let by_hash = json!({"blockHash": data(header.hash()), "requireCanonical": true});
        assert_eq!(
            call(&provider, "eth_getTransactionCount", json!([addr, by_hash])).unwrap(),
            entry["nonce"]
        );
        for s in entry["storageProof"].as_array().unwrap() {
            let value = quantity_to_word(&s["value"]);
            assert_eq!(
                call(&provider, "eth_getStorageAt", json!([addr, s["key"], "latest"])).unwrap(),
                value
            );
        }
    }
    // The EOA has no code: answered without asking for any.
    let eoa = json!("0x4838b106fce9647bdf1e7877bf73ce8b0bad5f97");
    assert_eq!(call(&provider, "eth_getCode", json!([eoa, "latest"])), Ok(json!("0x")));
    assert!(provider.chain().code_requests.borrow().is_empty());
    // The deposit contract's code is asked for by its proven code hash.
    let deposit = anchored[0];
    assert_eq!(
        code_of(call(&provider, "eth_getCode", json!([deposit["address"], "latest"]))),
        -32002
    );
    assert_eq!(
        provider.chain().code_requests.borrow().as_slice(),
        &[(address(&deposit["address"]), b256(&deposit["codeHash"]))]
    );
    // Slot 1 given as a quantity is echoed as one; the value is the same.
    let short =
        call(&provider, "eth_getProof", json!([deposit["address"], ["0x1"], "latest"])).unwrap();
    assert_eq!(short["storageProof"][0]["key"], "0x1");
    assert_eq!(short["storageProof"][0]["value"], deposit["storageProof"][0]["value"]);
    // Above the head and unknown hashes: "header not found".
    let above = qty(header.number() + 1);
    assert_eq!(code_of(call(&provider, "eth_getBalance", json!([eoa, above]))), -32000);
    let unknown = json!({"blockHash": data(B256::repeat_byte(9))});
    assert_eq!(code_of(call(&provider, "eth_getBalance", json!([eoa, unknown]))), -32000);
    assert_eq!(call(&provider, "eth_getBlockByNumber", json!([above, false])), Ok(Value::Null));
}

fn quantity_to_word(v: &Value) -> Value {
    let value = U256::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    data(value.to_be_bytes::<32>())
}

#[test]
fn absent_account_has_the_empty_defaults() {
    let Some(dir) = vectors_dir() else { return };
    let proofs = load(&dir, "mainnet-proofs.json");
    let entry = proofs.iter().find(|p| p["expect"] == "absent").unwrap();
    // The proof is real but unanchored: a header committing to its root stands in for one.
    let header =
        SealedHeader::seal(Header { state_root: b256(&entry["stateRoot"]), ..Header::default() });
    let (who, state) = proven_state(entry, header.header().state_root);
    assert_eq!(state.account, None);
    let mut fixture = single_block_fixture(
        &header,
        VerifiedBody { body: BlockBody::new(vec![], vec![], None), senders: vec![] },
    );
    fixture.accounts.insert((header.hash(), who), state);
    let provider = provider(fixture);
    let ours = call(&provider, "eth_getProof", json!([entry["address"], [], "latest"])).unwrap();
    let skip = [
        "label",
        "source",
        "note",
        "blockNumber",
        "blockHash",
        "stateRoot",
        "stateRootSource",
        "expect",
        "proves",
    ];
    assert_fields(&ours, entry, &skip, &[], "absent account");
    assert_eq!(call(&provider, "eth_getCode", json!([entry["address"]])), Ok(json!("0x")));
    assert_eq!(
        call(&provider, "eth_getBalance", json!([entry["address"], "earliest"])),
        Ok(json!("0x0"))
    );
}

// ---------------------------------------------------------------------------------------
// Dispatch, errors, the JSON envelope, subscriptions
// ---------------------------------------------------------------------------------------

fn small_fixture() -> Fixture {
    let (fixture, _, _) = receipt_block();
    Fixture { chain_id: 1, ..fixture }
}

#[test]
fn local_methods_and_refusals() {
    let provider = provider(Fixture { chain_id: 31337, ..small_fixture() });
    assert_eq!(call(&provider, "eth_chainId", Value::Null), Ok(json!("0x7a69")));
    assert_eq!(call(&provider, "eth_chainId", json!({})), Ok(json!("0x7a69")));
    assert_eq!(code_of(call(&provider, "eth_chainId", json!([1]))), -32602);
    assert_eq!(call(&provider, "net_version", json!([])), Ok(json!("31337")));
    assert_eq!(
        call(&provider, "web3_clientVersion", json!([])),
        Ok(json!(concat!("ulc/", env!("CARGO_PKG_VERSION"))))
    );
    assert_eq!(call(&provider, "eth_accounts", json!([])), Ok(json!([])));
    assert_eq!(call(&provider, "eth_blockNumber", json!([])), Ok(json!("0x64")));
    let evm = json!({"calls": 0, "executions": 0, "rounds": 0, "proofRequests": 0,
                     "codeRequests": 0, "headerRequests": 0});
    assert_eq!(call(&provider, "ulc_metrics", json!([])), Ok(json!({"requests": 3, "evm": evm})));
    for method in [
        "eth_requestAccounts",
        "eth_sendTransaction",
        "eth_sign",
        "personal_sign",
        "eth_signTypedData_v4",
    ] {
        assert_eq!(code_of(call(&provider, method, json!([]))), 4100, "{method}");
    }
    assert_eq!(code_of(call(&provider, "eth_fillTransaction", json!([{}]))), -32601);
    let unknown = call(&provider, "eth_frobnicate", json!([])).unwrap_err();
    assert_eq!(unknown.code, 4200);
    assert!(unknown.message.contains("eth_frobnicate"));
    assert_eq!(code_of(call(&provider, "eth_getBalance", json!(["0x12", "latest"]))), -32602);
    assert_eq!(code_of(call(&provider, "eth_getBalance", json!({"address": "0x"}))), -32602);
    assert_eq!(code_of(call(&provider, "eth_getBalance", json!([]))), -32602);
    assert_eq!(code_of(call(&provider, "eth_getBlockByNumber", json!(["0x01", false]))), -32602);
    assert_eq!(
        code_of(call(&provider, "eth_getBlockByNumber", json!(["latest", false, 1]))),
        -32602
    );
    let status = call(&provider, "ulc_status", json!([])).unwrap();
    assert_eq!(status["connected"], true);
    assert_eq!(status["head"]["number"], "0x64");
    assert_eq!(status["head"]["signers"], json!([data(B256::repeat_byte(7))]));
}

#[test]
fn core_errors_keep_their_codes() {
    let provider = provider(small_fixture());
    let cases = [
        (ClientError::Disconnected("all servers down".into()), 4900),
        (ClientError::Unavailable("timeout".into()), -32002),
        (ClientError::Verification { server: "0xab".into(), reason: "bad proof".into() }, -32050),
        (ClientError::Limit("too old".into()), -32005),
    ];
    for (error, code) in cases {
        *provider.chain().failure.borrow_mut() = Some(error);
        let answer = call(&provider, "eth_getBalance", json!([data(Address::ZERO), "latest"]));
        assert_eq!(code_of(answer.clone()), code);
        if code == -32050 {
            assert_eq!(
                answer.unwrap_err().data,
                Some(json!({"server": "0xab", "reason": "bad proof"}))
            );
        }
    }
    *provider.chain().failure.borrow_mut() = Some(ClientError::Disconnected("none".into()));
    let status = call(&provider, "ulc_status", json!([])).unwrap();
    assert_eq!((status["connected"].clone(), status["head"].clone()), (json!(false), Value::Null));
    // Local answers need no core.
    assert_eq!(call(&provider, "eth_chainId", json!([])), Ok(json!("0x1")));
}

#[test]
fn raw_transactions_are_decoded_before_sending() {
    let (fixture, transactions, _) = receipt_block();
    let provider = provider(fixture);
    for garbage in ["0x", "0x00", "0x02c0", "0xdeadbeef"] {
        assert_eq!(
            code_of(call(&provider, "eth_sendRawTransaction", json!([garbage]))),
            -32602,
            "{garbage}"
        );
    }
    assert_eq!(code_of(call(&provider, "eth_sendRawTransaction", json!(["0x0"]))), -32602);
    assert!(provider.chain().sent.borrow().is_empty());
    let raw = transactions[0].encoded_2718();
    let hash = call(&provider, "eth_sendRawTransaction", json!([data(&raw)])).unwrap();
    assert_eq!(hash, data(transactions[0].tx_hash()));
    assert_eq!(provider.chain().sent.borrow().as_slice(), &[Bytes::from(raw.clone())]);
    // Signed for another chain.
    let other = provider_for_chain(5);
    assert_eq!(code_of(call(&other, "eth_sendRawTransaction", json!([data(&raw)]))), -32602);
    *provider.chain().failure.borrow_mut() = Some(ClientError::Rejected("nonce too low".into()));
    assert_eq!(code_of(call(&provider, "eth_sendRawTransaction", json!([data(&raw)]))), -32003);
}

fn provider_for_chain(chain_id: u64) -> Provider<Fixture> {
    provider(Fixture { chain_id, ..small_fixture() })
}

#[test]
fn json_envelope() {
    let provider = provider(small_fixture());
    let ask = |text: &str| -> Value {
        serde_json::from_str(&block_on(provider.request_json(text))).unwrap()
    };
    assert_eq!(ask(r#"{"method":"eth_chainId"}"#), json!({"result": "0x1"}));
    assert_eq!(
        ask(r#"{"jsonrpc":"2.0","id":4,"method":"eth_chainId","params":[]}"#),
        json!({"result": "0x1"})
    );
    assert_eq!(ask("{nope")["error"]["code"], -32700);
    assert_eq!(ask("[1]")["error"]["code"], -32600);
    assert_eq!(ask(r#"{"params":[]}"#)["error"]["code"], -32600);
    assert_eq!(ask(r#"{"method":7}"#)["error"]["code"], -32600);
    let error = ask(r#"{"method":"eth_getBalance","params":["0x00"]}"#);
    assert_eq!(error["error"]["code"], -32602);
    assert!(error["error"]["message"].as_str().unwrap().contains("address"));
    assert!(error.get("result").is_none());
    assert_eq!(
        ask(r#"{"method":"eth_getBlockByNumber","params":["0x99",false]}"#),
        json!({"result": null})
    );
    *provider.chain().failure.borrow_mut() =
        Some(ClientError::Verification { server: "s".into(), reason: "r".into() });
    let error = ask(r#"{"method":"eth_blockNumber"}"#);
    assert_eq!(error["error"]["data"], json!({"server": "s", "reason": "r"}));
}

#[test]
fn new_heads_subscriptions_and_connection_notices() {
    let provider = provider(small_fixture());
    let seen: Rc<RefCell<Vec<ProviderNotice>>> = Rc::default();
    let sink = seen.clone();
    provider.set_notifier(Box::new(move |notice| sink.borrow_mut().push(notice)));

    provider.handle_event(&ClientEvent::Connected);
    provider.handle_event(&ClientEvent::Connected);
    let a = call(&provider, "eth_subscribe", json!(["newHeads"])).unwrap();
    let b = call(&provider, "eth_subscribe", json!(["newHeads"])).unwrap();
    assert_ne!(a, b);
    assert!(a.as_str().unwrap().starts_with("0x"));
    let head =
        SealedHeader::seal(Header { number: 101, base_fee_per_gas: Some(7), ..Header::default() });
    provider.handle_event(&ClientEvent::NewHead(Box::new(head.clone())));
    assert_eq!(call(&provider, "eth_unsubscribe", json!([a])), Ok(json!(true)));
    assert_eq!(call(&provider, "eth_unsubscribe", json!([a])), Ok(json!(false)));
    provider.handle_event(&ClientEvent::NewHead(Box::new(head.clone())));
    provider.handle_event(&ClientEvent::Disagreement { number: 5 });
    provider.handle_event(&ClientEvent::Disconnected { code: 1013, reason: "all down".into() });
    provider.handle_event(&ClientEvent::Disconnected { code: 1013, reason: "all down".into() });
    provider.handle_event(&ClientEvent::Connected);

    let header = Value::Object(encode::header_object(&head));
    assert_eq!(header["number"], "0x65");
    assert_eq!(header["baseFeePerGas"], "0x7");
    let message = |id: &Value| ProviderNotice::Message {
        subscription: id.as_str().unwrap().into(),
        result: header.clone(),
    };
    let connect = ProviderNotice::Connect { chain_id: "0x1".into() };
    assert_eq!(
        *seen.borrow(),
        vec![
            connect.clone(),
            message(&a),
            message(&b),
            message(&b),
            ProviderNotice::Disconnect { code: 1013, message: "all down".into() },
            connect,
        ]
    );

    assert_eq!(
        code_of(call(&provider, "eth_subscribe", json!(["logs", {"fromBlock": "0x1"}]))),
        -32602
    );
    let logs = call(&provider, "eth_subscribe", json!(["logs", {"topics": [null]}]));
    let logs = logs.expect("logs subscription");
    assert_eq!(call(&provider, "eth_unsubscribe", json!([logs])), Ok(json!(true)));
    assert_eq!(
        code_of(call(&provider, "eth_subscribe", json!(["newPendingTransactions"]))),
        -32602
    );
    assert_eq!(code_of(call(&provider, "eth_subscribe", json!([]))), -32602);
    assert_eq!(code_of(call(&provider, "eth_unsubscribe", json!([1]))), -32602);
}

#[test]
fn a_notifier_may_call_back_into_the_provider() {
    let provider = provider(small_fixture());
    let inner = provider.clone();
    let ids: Rc<RefCell<Vec<Value>>> = Rc::default();
    let sink = ids.clone();
    provider.set_notifier(Box::new(move |_| {
        sink.borrow_mut()
            .push(block_on(inner.request("eth_subscribe", json!(["newHeads"]))).unwrap());
    }));
    provider.handle_event(&ClientEvent::Connected);
    assert_eq!(ids.borrow().len(), 1);
}
