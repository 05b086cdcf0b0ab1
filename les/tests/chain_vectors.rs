//! `les::chain` against real Ethereum mainnet data: the vectors in `shared/vectors` (see its
//! README for where every item comes from). Headers are rebuilt from their JSON fields, bodies
//! and receipt lists are assembled in LES network form from the transactions' `raw` and the
//! receipts' `encoded`, and every proof is checked both as ordered EIP-1186 proofs and as a
//! shuffled, de-duplicated LES node set. Each tampered variant the vectors README lists must
//! be rejected.
//!
//! The vectors live outside the crate: `<CARGO_MANIFEST_DIR>/../../shared/vectors`, or
//! `LES_VECTORS_DIR`. Without them the tests skip, unless `CI=true`, where they fail.

use alloy_consensus::{EthereumTxEnvelope, Header, TxReceipt, TxType, Typed2718};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_eips::eip4895::Withdrawal;
use alloy_primitives::{Address, B64, B256, Bloom, Bytes, Signature, U256, hex, keccak256};
use les::chain::{
    BlockBody, BlockReceipts, BlockTransaction, BodyError, ChainError, Commitment, HeaderError,
    NodeSet, ProofError, RootMismatch, SealedHeader, account_key, recover_authority,
    recover_sender, verify_account, verify_account_and_storage, verify_account_proof, verify_chain,
    verify_code, verify_storage, verify_storage_proof,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------
// Loading and JSON helpers
// ---------------------------------------------------------------------------------------

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

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn data(v: &Value) -> Vec<u8> {
    hex::decode(text(v)).unwrap()
}

fn b256(v: &Value) -> B256 {
    text(v).parse().unwrap()
}

fn address(v: &Value) -> Address {
    text(v).parse().unwrap()
}

fn u64_qty(v: &Value) -> u64 {
    u64::from_str_radix(text(v).trim_start_matches("0x"), 16).unwrap()
}

fn u256_qty(v: &Value) -> U256 {
    U256::from_str_radix(text(v).trim_start_matches("0x"), 16).unwrap()
}

/// A storage key as `eth_getProof` echoes it, left-padded to a 32-byte slot.
fn slot(v: &Value) -> B256 {
    let bytes = data(v);
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    B256::from(out)
}

fn nodes(v: &Value) -> Vec<Bytes> {
    v.as_array().unwrap().iter().map(|node| Bytes::from(data(node))).collect()
}

fn rlp_list(items: &[Vec<u8>]) -> Vec<u8> {
    let payload: Vec<u8> = items.concat();
    let mut out = Vec::new();
    alloy_rlp::Header { list: true, payload_length: payload.len() }.encode(&mut out);
    out.extend_from_slice(&payload);
    out
}

/// An EIP-2718 consensus encoding in the form it takes inside an RLP list: legacy (an RLP
/// list) as is, typed (`type || payload`) wrapped in a byte string.
fn network_form(consensus: &[u8]) -> Vec<u8> {
    if consensus[0] >= 0xc0 { consensus.to_vec() } else { alloy_rlp::encode(consensus) }
}

/// The header built from its JSON-RPC fields alone (never from `rlp`).
fn header_from_fields(h: &Value) -> Header {
    let opt_u64 = |key: &str| h.get(key).map(u64_qty);
    let opt_b256 = |key: &str| h.get(key).map(b256);
    Header {
        parent_hash: b256(&h["parentHash"]),
        ommers_hash: b256(&h["sha3Uncles"]),
        beneficiary: address(&h["miner"]),
        state_root: b256(&h["stateRoot"]),
        transactions_root: b256(&h["transactionsRoot"]),
        receipts_root: b256(&h["receiptsRoot"]),
        logs_bloom: Bloom::from_slice(&data(&h["logsBloom"])),
        difficulty: u256_qty(&h["difficulty"]),
        number: u64_qty(&h["number"]),
        gas_limit: u64_qty(&h["gasLimit"]),
        gas_used: u64_qty(&h["gasUsed"]),
        timestamp: u64_qty(&h["timestamp"]),
        extra_data: Bytes::from(data(&h["extraData"])),
        mix_hash: b256(&h["mixHash"]),
        nonce: B64::from_slice(&data(&h["nonce"])),
        base_fee_per_gas: opt_u64("baseFeePerGas"),
        withdrawals_root: opt_b256("withdrawalsRoot"),
        blob_gas_used: opt_u64("blobGasUsed"),
        excess_blob_gas: opt_u64("excessBlobGas"),
        parent_beacon_block_root: opt_b256("parentBeaconBlockRoot"),
        requests_hash: opt_b256("requestsHash"),
        block_access_list_hash: None,
        slot_number: None,
    }
}

fn field_count(header: &Header) -> usize {
    15 + [
        header.base_fee_per_gas.is_some(),
        header.withdrawals_root.is_some(),
        header.blob_gas_used.is_some(),
        header.excess_blob_gas.is_some(),
        header.parent_beacon_block_root.is_some(),
        header.requests_hash.is_some(),
    ]
    .iter()
    .filter(|present| **present)
    .count()
}

/// Verified headers of mainnet-headers.json by block hash (each checked against its `hash`).
fn verified_headers(dir: &Path) -> BTreeMap<B256, SealedHeader> {
    load(dir, "mainnet-headers.json")
        .iter()
        .map(|h| {
            let sealed =
                SealedHeader::decode_expecting(&data(&h["rlp"]), b256(&h["hash"])).unwrap();
            (sealed.hash(), sealed)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------

#[test]
fn headers_rebuilt_from_fields_encode_to_rlp_and_hash() {
    let Some(dir) = vectors_dir() else { return };
    let entries = load(&dir, "mainnet-headers.json");
    assert_eq!(entries.len(), 30);
    let mut layouts = BTreeSet::new();
    for entry in &entries {
        let label = text(&entry["label"]);
        let rlp = data(&entry["rlp"]);
        let hash = b256(&entry["hash"]);
        let header = header_from_fields(entry);

        assert_eq!(alloy_rlp::encode(&header), rlp, "{label}: encoding from fields");
        let sealed = SealedHeader::seal(header.clone());
        assert_eq!(sealed.hash(), hash, "{label}: hash of the rebuilt header");

        let decoded = SealedHeader::decode(&rlp).unwrap();
        assert_eq!(decoded.header(), &header, "{label}: decoding rlp");
        assert_eq!(decoded.hash(), hash, "{label}: hash of rlp");
        assert_eq!(decoded.number(), u64_qty(&entry["number"]));
        layouts.insert(field_count(&header));

        // Negative control: gasUsed + 1 is a different header.
        let tampered = Header { gas_used: header.gas_used + 1, ..header };
        let tampered_rlp = alloy_rlp::encode(&tampered);
        assert_ne!(SealedHeader::seal(tampered).hash(), hash, "{label}: gasUsed+1");
        assert_eq!(
            SealedHeader::decode_expecting(&tampered_rlp, hash),
            Err(HeaderError::HashMismatch { expected: hash, got: keccak256(&tampered_rlp) }),
            "{label}: gasUsed+1 requested by the real hash"
        );
        // Strict decoding: a trailing byte is not a header.
        let mut trailing = rlp.clone();
        trailing.push(0x80);
        assert!(matches!(SealedHeader::decode(&trailing), Err(HeaderError::Rlp(_))), "{label}");
    }
    // Frontier..Berlin, London, Shanghai, Cancun, Prague.
    assert_eq!(layouts, BTreeSet::from([15, 16, 17, 20, 21]));
}

#[test]
fn consecutive_mainnet_headers_link_by_parent_hash() {
    let Some(dir) = vectors_dir() else { return };
    let headers = verified_headers(&dir);
    let by_number = |n: u64| headers.values().find(|h| h.number() == n).unwrap().clone();
    let parent = by_number(499_999);
    let anchor = by_number(500_000);
    assert_eq!(verify_chain(std::slice::from_ref(&parent), &anchor), Ok(()));

    // gasUsed + 1 in the parent breaks the link.
    let tampered = SealedHeader::seal(Header {
        gas_used: parent.header().gas_used + 1,
        ..parent.header().clone()
    });
    assert_eq!(
        verify_chain(std::slice::from_ref(&tampered), &anchor),
        Err(ChainError::ParentHashMismatch {
            child_number: 500_000,
            expected: parent.hash(),
            got: tampered.hash(),
        })
    );
    // The wrong direction, and an unrelated header, are not ancestors.
    assert!(verify_chain(std::slice::from_ref(&anchor), &parent).is_err());
    assert!(verify_chain(&[by_number(200_000)], &anchor).is_err());
}

// ---------------------------------------------------------------------------------------
// Transactions, bodies, withdrawals
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TxKind {
    LegacyPre155,
    Legacy155,
    Eip2930,
    Eip1559,
    Eip4844,
    Eip7702,
}

fn kind(tx: &BlockTransaction) -> TxKind {
    match tx {
        EthereumTxEnvelope::Legacy(signed) if signed.tx().chain_id.is_none() => {
            TxKind::LegacyPre155
        }
        EthereumTxEnvelope::Legacy(_) => TxKind::Legacy155,
        EthereumTxEnvelope::Eip2930(_) => TxKind::Eip2930,
        EthereumTxEnvelope::Eip1559(_) => TxKind::Eip1559,
        EthereumTxEnvelope::Eip4844(_) => TxKind::Eip4844,
        EthereumTxEnvelope::Eip7702(_) => TxKind::Eip7702,
    }
}

/// The same transaction with `s + 1`.
fn with_changed_s(tx: &BlockTransaction) -> BlockTransaction {
    fn bump(signature: &Signature) -> Signature {
        Signature::new(signature.r(), signature.s() + U256::from(1), signature.v())
    }
    use alloy_consensus::SignableTransaction;
    match tx.clone() {
        EthereumTxEnvelope::Legacy(s) => s.tx().clone().into_signed(bump(s.signature())).into(),
        EthereumTxEnvelope::Eip2930(s) => s.tx().clone().into_signed(bump(s.signature())).into(),
        EthereumTxEnvelope::Eip1559(s) => s.tx().clone().into_signed(bump(s.signature())).into(),
        EthereumTxEnvelope::Eip4844(s) => s.tx().clone().into_signed(bump(s.signature())).into(),
        EthereumTxEnvelope::Eip7702(s) => s.tx().clone().into_signed(bump(s.signature())).into(),
    }
}

struct Block {
    label: String,
    header: SealedHeader,
    raws: Vec<Vec<u8>>,
    senders: Vec<Address>,
    withdrawals: Option<Vec<Withdrawal>>,
}

fn blocks_with_transactions(dir: &Path) -> Vec<Block> {
    load(dir, "mainnet-blocks.json")
        .iter()
        .filter(|block| block.get("transactions").is_some())
        .map(|block| {
            let h = &block["header"];
            let header =
                SealedHeader::decode_expecting(&data(&h["rlp"]), b256(&h["hash"])).unwrap();
            assert_eq!(header.header(), &header_from_fields(h));
            let txs = block["transactions"].as_array().unwrap();
            let withdrawals = block.get("withdrawals").map(|list| {
                list.as_array()
                    .unwrap()
                    .iter()
                    .map(|w| Withdrawal {
                        index: u64_qty(&w["index"]),
                        validator_index: u64_qty(&w["validatorIndex"]),
                        address: address(&w["address"]),
                        amount: u64_qty(&w["amount"]),
                    })
                    .collect()
            });
            Block {
                label: text(&block["label"]).to_owned(),
                header,
                raws: txs.iter().map(|tx| data(&tx["raw"])).collect(),
                senders: txs.iter().map(|tx| address(&tx["from"])).collect(),
                withdrawals,
            }
        })
        .collect()
}

/// A body in LES network form: `[transactions, uncles]` or `[transactions, uncles, withdrawals]`.
fn body_rlp(raws: &[Vec<u8>], withdrawals: Option<&Vec<Withdrawal>>) -> Vec<u8> {
    let transactions = rlp_list(&raws.iter().map(|raw| network_form(raw)).collect::<Vec<_>>());
    let mut parts = vec![transactions, rlp_list(&[])];
    if let Some(withdrawals) = withdrawals {
        parts.push(alloy_rlp::encode(withdrawals));
    }
    rlp_list(&parts)
}

#[test]
fn every_transaction_decodes_reencodes_hashes_and_recovers_its_sender() {
    let Some(dir) = vectors_dir() else { return };
    let mut kinds = BTreeMap::new();
    let mut authorities = 0;
    let mut total = 0;
    for block in load(&dir, "mainnet-blocks.json") {
        let Some(txs) = block.get("transactions") else {
            continue;
        };
        for tx_json in txs.as_array().unwrap() {
            let raw = data(&tx_json["raw"]);
            let hash = b256(&tx_json["hash"]);
            let tx = BlockTransaction::decode_2718_exact(&raw).unwrap();
            assert_eq!(tx.encoded_2718(), raw, "{hash}: re-encoding");
            assert_eq!(keccak256(&raw), hash, "{hash}: keccak(raw)");
            assert_eq!(*tx.tx_hash(), hash, "{hash}: alloy's hash");
            assert_eq!(u64_qty(&tx_json["type"]), u64::from(u8::from(tx.tx_type())));
            let from = address(&tx_json["from"]);
            assert_eq!(recover_sender(&tx), Ok(from), "{hash}: sender");

            if let EthereumTxEnvelope::Eip7702(signed) = &tx {
                let expected = tx_json["authorizationList"].as_array().unwrap();
                for (auth, json) in signed.tx().authorization_list.iter().zip(expected) {
                    assert_eq!(recover_authority(auth), Ok(address(&json["authority"])));
                    authorities += 1;
                }
            }
            *kinds.entry(kind(&tx)).or_insert(0) += 1;
            total += 1;
        }
    }
    assert_eq!(total, 385);
    assert_eq!(authorities, 1);
    assert_eq!(kinds.len(), 6, "every signature scheme is covered: {kinds:?}");
    assert_eq!(kinds[&TxKind::Eip2930], 1);
    assert_eq!(kinds[&TxKind::Eip1559], 259);
    assert_eq!(kinds[&TxKind::Eip4844], 3);
    assert_eq!(kinds[&TxKind::Eip7702], 1);
    assert_eq!(kinds[&TxKind::LegacyPre155] + kinds[&TxKind::Legacy155], 121);
    assert_eq!(TxType::Eip7702 as u8, 4);
}

#[test]
fn bodies_verify_against_their_headers_and_recover_senders() {
    let Some(dir) = vectors_dir() else { return };
    let blocks = blocks_with_transactions(&dir);
    assert_eq!(blocks.len(), 5);
    for block in &blocks {
        let label = &block.label;
        let header = block.header.header();
        let body = BlockBody::decode(&body_rlp(&block.raws, block.withdrawals.as_ref())).unwrap();
        assert_eq!(body.transactions().len(), block.raws.len(), "{label}");
        assert_eq!(body.transactions_root(), header.transactions_root, "{label}: transactionsRoot");
        assert_eq!(body.ommers_hash(), header.ommers_hash, "{label}: ommersHash");
        assert_eq!(body.withdrawals_root(), header.withdrawals_root, "{label}: withdrawalsRoot");
        assert_eq!(body.verify(header), Ok(()), "{label}");
        assert_eq!(body.recover_senders().as_ref(), Ok(&block.senders), "{label}: senders");
        assert_eq!(BlockBody::decode(&body.encode()).as_ref(), Ok(&body), "{label}: re-encoding");
    }
}

#[test]
fn tampered_bodies_are_rejected() {
    let Some(dir) = vectors_dir() else { return };
    for block in blocks_with_transactions(&dir) {
        let label = &block.label;
        let header = block.header.header();

        // Two transactions swapped.
        let mut swapped = block.raws.clone();
        swapped.swap(0, 1);
        let body = BlockBody::decode(&body_rlp(&swapped, block.withdrawals.as_ref())).unwrap();
        assert_eq!(
            body.verify(header),
            Err(BodyError::Mismatch(RootMismatch {
                commitment: Commitment::TransactionsRoot,
                expected: header.transactions_root,
                got: body.transactions_root(),
            })),
            "{label}: swapped"
        );

        // A changed signature s: another sender, another hash, another root.
        let last = block.raws.len() - 1;
        let original = BlockTransaction::decode_2718_exact(&block.raws[last]).unwrap();
        let forged = with_changed_s(&original);
        assert_ne!(recover_sender(&forged).ok(), Some(block.senders[last]), "{label}: s+1");
        let mut raws = block.raws.clone();
        raws[last] = forged.encoded_2718();
        let body = BlockBody::decode(&body_rlp(&raws, block.withdrawals.as_ref())).unwrap();
        assert!(
            matches!(
                body.verify(header),
                Err(BodyError::Mismatch(RootMismatch {
                    commitment: Commitment::TransactionsRoot,
                    ..
                }))
            ),
            "{label}: s+1 body"
        );

        // An uncle the header does not commit to.
        let uncle = rlp_list(&[block.header.encoded()]);
        let transactions =
            rlp_list(&block.raws.iter().map(|raw| network_form(raw)).collect::<Vec<_>>());
        let mut parts = vec![transactions, uncle];
        if let Some(withdrawals) = &block.withdrawals {
            parts.push(alloy_rlp::encode(withdrawals));
        }
        let body = BlockBody::decode(&rlp_list(&parts)).unwrap();
        assert_eq!(body.uncles().len(), 1);
        assert!(
            matches!(
                body.verify(header),
                Err(BodyError::Mismatch(RootMismatch { commitment: Commitment::OmmersHash, .. }))
            ),
            "{label}: extra uncle"
        );

        // Withdrawals present/absent must follow the header.
        match &block.withdrawals {
            Some(withdrawals) => {
                let body = BlockBody::decode(&body_rlp(&block.raws, None)).unwrap();
                assert_eq!(body.verify(header), Err(BodyError::MissingWithdrawals), "{label}");
                let mut fewer = withdrawals.clone();
                fewer.pop();
                let body = BlockBody::decode(&body_rlp(&block.raws, Some(&fewer))).unwrap();
                assert!(matches!(
                    body.verify(header),
                    Err(BodyError::Mismatch(RootMismatch {
                        commitment: Commitment::WithdrawalsRoot,
                        ..
                    }))
                ));
            }
            None => {
                let body = BlockBody::decode(&body_rlp(&block.raws, Some(&vec![]))).unwrap();
                assert_eq!(body.verify(header), Err(BodyError::UnexpectedWithdrawals), "{label}");
            }
        }

        // A typed transaction not wrapped as a byte string is not the network form.
        if let Some(typed) = block.raws.iter().position(|raw| raw[0] < 0xc0) {
            let mut parts: Vec<Vec<u8>> = block.raws.iter().map(|raw| network_form(raw)).collect();
            parts[typed] = block.raws[typed].clone();
            let body = rlp_list(&[
                rlp_list(&parts),
                rlp_list(&[]),
                alloy_rlp::encode(Vec::<Withdrawal>::new()),
            ]);
            assert!(matches!(BlockBody::decode(&body), Err(BodyError::Transactions(_))), "{label}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Receipts
// ---------------------------------------------------------------------------------------

#[test]
fn receipts_rebuild_the_receipts_root_of_block_21925176() {
    let Some(dir) = vectors_dir() else { return };
    let blocks = load(&dir, "mainnet-blocks.json");
    let block = blocks.iter().find(|b| b.get("receipts").is_some()).unwrap();
    let h = &block["header"];
    let header = SealedHeader::decode_expecting(&data(&h["rlp"]), b256(&h["hash"])).unwrap();
    assert_eq!(header.number(), 21_925_176);
    // The same header is the anchor in mainnet-headers.json.
    assert!(verified_headers(&dir).contains_key(&header.hash()));

    let json = block["receipts"].as_array().unwrap();
    let encoded: Vec<Vec<u8>> = json.iter().map(|r| data(&r["encoded"])).collect();
    let network: Vec<Vec<u8>> = encoded.iter().map(|e| network_form(e)).collect();
    let receipts = BlockReceipts::decode(&rlp_list(&network)).unwrap();
    assert_eq!(receipts.receipts().len(), 202);
    assert_eq!(receipts.receipts_root(), header.header().receipts_root);
    assert_eq!(receipts.verify(header.header()), Ok(()));

    // Decoded fields agree with the JSON-RPC receipt.
    let mut legacy = 0;
    for (receipt, r) in receipts.receipts().iter().zip(json) {
        assert_eq!(u64::from(receipt.tx_type() as u8), u64_qty(&r["type"]));
        legacy += usize::from(receipt.is_legacy());
        assert_eq!(receipt.status(), u64_qty(&r["status"]) == 1);
        assert_eq!(
            u128::from(receipt.cumulative_gas_used()),
            u128::from(u64_qty(&r["cumulativeGasUsed"]))
        );
        assert_eq!(receipt.logs().len(), r["logs"].as_array().unwrap().len());
        assert_eq!(receipt.bloom(), Bloom::from_slice(&data(&r["logsBloom"])));
    }
    assert_eq!(legacy, 12);

    // Negative controls: two receipts swapped, one dropped.
    let mut swapped = network.clone();
    swapped.swap(0, 1);
    let receipts = BlockReceipts::decode(&rlp_list(&swapped)).unwrap();
    assert!(matches!(
        receipts.verify(header.header()),
        Err(les::chain::ReceiptsError::Mismatch(RootMismatch {
            commitment: Commitment::ReceiptsRoot,
            ..
        }))
    ));
    let receipts = BlockReceipts::decode(&rlp_list(&network[1..])).unwrap();
    assert!(receipts.verify(header.header()).is_err());
}

// ---------------------------------------------------------------------------------------
// State proofs
// ---------------------------------------------------------------------------------------

struct ProofCase {
    label: String,
    root: B256,
    address: Address,
    /// `None` for the absent account.
    account: Option<(u64, U256, B256, B256)>,
    account_proof: Vec<Bytes>,
    /// slot, value, ordered proof
    storage: Vec<(B256, U256, Vec<Bytes>)>,
}

fn proof_cases(dir: &Path) -> Vec<ProofCase> {
    let headers = verified_headers(dir);
    load(dir, "mainnet-proofs.json")
        .iter()
        .map(|entry| {
            let label = text(&entry["label"]).to_owned();
            let account_proof = nodes(&entry["accountProof"]);
            let root = match entry["blockHash"].as_str() {
                Some(_) => {
                    // Anchored: the state root comes from the verified header.
                    let header = &headers[&b256(&entry["blockHash"])];
                    assert_eq!(header.header().state_root, b256(&entry["stateRoot"]), "{label}");
                    header.header().state_root
                }
                None => {
                    let root = b256(&entry["stateRoot"]);
                    assert_eq!(keccak256(&account_proof[0]), root, "{label}");
                    root
                }
            };
            let account = match text(&entry["expect"]) {
                "present" => Some((
                    u64_qty(&entry["nonce"]),
                    u256_qty(&entry["balance"]),
                    b256(&entry["storageHash"]),
                    b256(&entry["codeHash"]),
                )),
                "absent" => None,
                other => panic!("{label}: expect {other}"),
            };
            let storage = entry["storageProof"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (slot(&s["key"]), u256_qty(&s["value"]), nodes(&s["proof"])))
                .collect();
            ProofCase {
                label,
                root,
                address: address(&entry["address"]),
                account,
                account_proof,
                storage,
            }
        })
        .collect()
}

/// The LES form of a set of proofs: their nodes de-duplicated and in an order unrelated to
/// the paths (sorted by node hash).
fn node_set(proofs: &[&[Bytes]]) -> Vec<Bytes> {
    let by_hash: BTreeMap<B256, Bytes> = proofs
        .iter()
        .flat_map(|proof| proof.iter())
        .map(|node| (keccak256(node), node.clone()))
        .collect();
    by_hash.into_values().collect()
}

fn case_node_set(case: &ProofCase) -> Vec<Bytes> {
    let mut proofs: Vec<&[Bytes]> = vec![&case.account_proof];
    proofs.extend(case.storage.iter().map(|(_, _, proof)| proof.as_slice()));
    node_set(&proofs)
}

fn account_tuple(account: Option<alloy_trie::TrieAccount>) -> Option<(u64, U256, B256, B256)> {
    account.map(|a| (a.nonce, a.balance, a.storage_root, a.code_hash))
}

#[test]
fn ordered_eip1186_proofs_verify_to_the_recorded_values() {
    let Some(dir) = vectors_dir() else { return };
    let cases = proof_cases(&dir);
    assert_eq!(cases.len(), 7);
    assert_eq!(cases.iter().filter(|c| c.account.is_none()).count(), 1);
    assert_eq!(cases.iter().map(|c| c.storage.len()).sum::<usize>(), 4);
    for case in &cases {
        let label = &case.label;
        let account = verify_account_proof(case.root, &case.address, &case.account_proof).unwrap();
        assert_eq!(account_tuple(account), case.account, "{label}");
        for (slot, value, proof) in &case.storage {
            let storage_root = case.account.unwrap().2;
            assert_eq!(
                verify_storage_proof(storage_root, slot, proof),
                Ok(*value),
                "{label}: {slot}"
            );
        }
        if let Some((_, _, _, code_hash)) = case.account
            && code_hash == alloy_trie::KECCAK_EMPTY
        {
            assert_eq!(verify_code(code_hash, &[]), Ok(()), "{label}: EOA has empty code");
        }
    }
}

#[test]
fn les_node_sets_verify_through_the_walker() {
    let Some(dir) = vectors_dir() else { return };
    let cases = proof_cases(&dir);
    for case in &cases {
        let label = &case.label;
        // Account alone.
        let account_nodes = node_set(&[&case.account_proof]);
        let account = verify_account(case.root, &case.address, &account_nodes).unwrap();
        assert_eq!(account_tuple(account), case.account, "{label}");
        // Each slot alone.
        for (slot, value, proof) in &case.storage {
            let storage_root = case.account.unwrap().2;
            assert_eq!(
                verify_storage(storage_root, slot, &node_set(&[proof])),
                Ok(*value),
                "{label}"
            );
        }
        // Everything in one reply, as GetProofsV2 with several entries returns it.
        let slots: Vec<B256> = case.storage.iter().map(|(slot, _, _)| *slot).collect();
        let values: Vec<U256> = case.storage.iter().map(|(_, value, _)| *value).collect();
        let all = case_node_set(case);
        let (account, got) =
            verify_account_and_storage(case.root, &case.address, &slots, &all).unwrap();
        assert_eq!(account_tuple(account), case.account, "{label}");
        assert_eq!(got, values, "{label}");
        // Duplicates in the reply collapse.
        let mut doubled = all.clone();
        doubled.extend(all.iter().rev().cloned());
        assert_eq!(
            verify_account_and_storage(case.root, &case.address, &slots, &doubled).map(|r| r.1),
            Ok(values)
        );
    }

    // Two accounts proven from one shared node set (same block: the deposit contract and the
    // fee recipient of 21925176 share the upper trie levels).
    let shared: Vec<&ProofCase> = cases.iter().filter(|c| c.root == cases[0].root).collect();
    assert_eq!(shared.len(), 2);
    let merged = node_set(&[&shared[0].account_proof, &shared[1].account_proof]);
    assert!(merged.len() < shared[0].account_proof.len() + shared[1].account_proof.len());
    let mut set = NodeSet::new(merged.iter().cloned());
    for case in &shared {
        assert_eq!(account_tuple(set.account(case.root, &case.address).unwrap()), case.account);
    }
    assert_eq!(set.finish(), Ok(()));
    // One of the two accounts alone leaves the other's nodes unused.
    assert!(matches!(
        verify_account(shared[0].root, &shared[0].address, &merged),
        Err(ProofError::UnusedNodes { .. })
    ));
}

#[test]
fn tampered_proofs_are_rejected() {
    let Some(dir) = vectors_dir() else { return };
    let cases = proof_cases(&dir);
    for (index, case) in cases.iter().enumerate() {
        let label = &case.label;

        // balance + 1: the proof yields the real balance, not the claimed one.
        if let Some((nonce, balance, storage_root, code_hash)) = case.account {
            let claimed = Some((nonce, balance + U256::from(1), storage_root, code_hash));
            let proven =
                verify_account_proof(case.root, &case.address, &case.account_proof).unwrap();
            assert_ne!(account_tuple(proven), claimed, "{label}: balance+1");
        }

        // One flipped bit in each node in turn.
        for position in 0..case.account_proof.len() {
            let mut flipped = case.account_proof.clone();
            let mut node = flipped[position].to_vec();
            let middle = node.len() / 2;
            node[middle] ^= 0x01;
            flipped[position] = Bytes::from(node);
            assert!(
                verify_account_proof(case.root, &case.address, &flipped).is_err(),
                "{label}: bit flipped in ordered node {position}"
            );
            let set = node_set(&[&flipped]);
            assert!(
                verify_account(case.root, &case.address, &set).is_err(),
                "{label}: bit flipped in node-set node {position}"
            );
        }

        // A missing node: drop the last node of the path.
        let original = keccak256(case.account_proof.last().unwrap());
        let truncated = &case.account_proof[..case.account_proof.len() - 1];
        assert!(verify_account_proof(case.root, &case.address, truncated).is_err(), "{label}");
        assert_eq!(
            verify_account(case.root, &case.address, &node_set(&[truncated])).unwrap_err(),
            ProofError::MissingNode {
                root: case.root,
                key: account_key(&case.address),
                hash: original
            },
            "{label}: missing node"
        );

        // An extra node no key uses (a real node from another proof).
        let other = &cases[(index + 1) % cases.len()];
        let extra = other.account_proof.last().unwrap().clone();
        let mut padded = node_set(&[&case.account_proof]);
        padded.push(extra.clone());
        assert_eq!(
            verify_account(case.root, &case.address, &padded).unwrap_err(),
            ProofError::UnusedNodes { unused: vec![keccak256(&extra)] },
            "{label}: extra node"
        );
        // In ordered form the extra node after the leaf is rejected by alloy's verifier.
        let mut ordered_padded = case.account_proof.clone();
        ordered_padded.push(extra);
        assert!(
            verify_account_proof(case.root, &case.address, &ordered_padded).is_err(),
            "{label}"
        );

        // Ordered proofs must be in path order.
        let mut reversed = case.account_proof.clone();
        reversed.reverse();
        assert!(verify_account_proof(case.root, &case.address, &reversed).is_err(), "{label}");

        // Storage value + 1, and a flipped bit in a storage node.
        for (slot, value, proof) in &case.storage {
            let storage_root = case.account.unwrap().2;
            assert_ne!(verify_storage_proof(storage_root, slot, proof), Ok(*value + U256::from(1)));
            let mut flipped = proof.clone();
            let mut leaf = flipped.last().unwrap().to_vec();
            let last = leaf.len() - 1;
            leaf[last] ^= 0x01;
            *flipped.last_mut().unwrap() = Bytes::from(leaf);
            assert!(verify_storage_proof(storage_root, slot, &flipped).is_err(), "{label}");
            assert!(verify_storage(storage_root, slot, &node_set(&[&flipped])).is_err(), "{label}");
        }

        // The proof does not prove the account against another block's state root.
        let wrong_root = cases[(index + 1) % cases.len()].root;
        if wrong_root != case.root {
            assert!(
                verify_account(wrong_root, &case.address, &node_set(&[&case.account_proof]))
                    .is_err()
            );
        }
    }
}
