//! The JSON of headers, blocks, transactions, receipts and proofs as geth and anvil answer
//! them (EIP-1474 encodings: minimal hex quantities, `0x` data, lower-case addresses), built
//! by hand from verified alloy values so the wasm build needs no RPC-types crate.
//!
//! Deliberate differences from anvil: no `totalDifficulty` (post-merge geth and the mainnet
//! vectors omit it, and a light client cannot verify it), and `blobGasPrice` only where the
//! chain's blob schedule is known (mainnet).

use crate::chain::{AccountState, VerifiedBody};
use alloy_consensus::{EthereumTxEnvelope, ReceiptEnvelope, Transaction, TxReceipt, Typed2718};
use alloy_eips::eip7840::BlobParams;
use alloy_primitives::{Address, B256, Bytes, Log, hex};
use les::chain::{BlockTransaction, SealedHeader};
use serde_json::{Map, Value, json};
use std::fmt::LowerHex;

/// A QUANTITY: `0x` and minimal hex, zero as `0x0`.
pub fn qty<T: LowerHex>(value: T) -> Value {
    Value::String(format!("{value:#x}"))
}

/// DATA: `0x` and two lower-case hex digits per byte (addresses and hashes too).
pub fn data(bytes: impl AsRef<[u8]>) -> Value {
    Value::String(hex::encode_prefixed(bytes))
}

fn opt_data(bytes: Option<impl AsRef<[u8]>>) -> Value {
    bytes.map_or(Value::Null, data)
}

/// The verified data does not fit together (e.g. receipts and transactions of one block
/// disagree in number): the core broke the `Chain` contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Receipts and transactions differ in number.
    #[error("block {block}: {receipts} receipts for {transactions} transactions")]
    ReceiptCount {
        /// Block hash.
        block: B256,
        /// Receipts.
        receipts: usize,
        /// Transactions.
        transactions: usize,
    },
    /// Senders and transactions differ in number.
    #[error("block {block}: {senders} senders for {transactions} transactions")]
    SenderCount {
        /// Block hash.
        block: B256,
        /// Senders.
        senders: usize,
        /// Transactions.
        transactions: usize,
    },
    /// A receipt's cumulative gas is below its predecessor's.
    #[error("block {block}: cumulative gas decreases at receipt {index}")]
    CumulativeGas {
        /// Block hash.
        block: B256,
        /// Position of the receipt.
        index: usize,
    },
}

/// The header fields of a block object, as `newHeads` notifications carry them. Fork fields
/// appear exactly when the header has them.
pub fn header_object(sealed: &SealedHeader) -> Map<String, Value> {
    let h = sealed.header();
    let mut out = Map::new();
    let mut put = |key: &str, value: Value| {
        out.insert(key.to_owned(), value);
    };
    put("hash", data(sealed.hash()));
    put("parentHash", data(h.parent_hash));
    put("sha3Uncles", data(h.ommers_hash));
    put("miner", data(h.beneficiary));
    put("stateRoot", data(h.state_root));
    put("transactionsRoot", data(h.transactions_root));
    put("receiptsRoot", data(h.receipts_root));
    put("logsBloom", data(h.logs_bloom));
    put("difficulty", qty(h.difficulty));
    put("number", qty(h.number));
    put("gasLimit", qty(h.gas_limit));
    put("gasUsed", qty(h.gas_used));
    put("timestamp", qty(h.timestamp));
    put("extraData", data(&h.extra_data));
    put("mixHash", data(h.mix_hash));
    put("nonce", data(h.nonce));
    if let Some(v) = h.base_fee_per_gas {
        put("baseFeePerGas", qty(v));
    }
    if let Some(v) = h.withdrawals_root {
        put("withdrawalsRoot", data(v));
    }
    if let Some(v) = h.blob_gas_used {
        put("blobGasUsed", qty(v));
    }
    if let Some(v) = h.excess_blob_gas {
        put("excessBlobGas", qty(v));
    }
    if let Some(v) = h.parent_beacon_block_root {
        put("parentBeaconBlockRoot", data(v));
    }
    if let Some(v) = h.requests_hash {
        put("requestsHash", data(v));
    }
    if let Some(v) = h.block_access_list_hash {
        put("blockAccessListHash", data(v));
    }
    if let Some(v) = h.slot_number {
        put("slotNumber", qty(v));
    }
    out
}

/// The length of the block's RLP `[header, transactions, uncles, withdrawals?]` (geth's
/// `size`): the body's list payload with the header in front, under one list header.
pub fn block_size(header: &SealedHeader, body: &VerifiedBody) -> usize {
    let body_rlp = body.body.encode();
    let body_payload =
        alloy_rlp::Header::decode(&mut body_rlp.as_slice()).map_or(0, |list| list.payload_length);
    let payload = alloy_rlp::Encodable::length(header.header()) + body_payload;
    alloy_rlp::length_of_length(payload) + payload
}

/// A block object: the header fields, `size`, `uncles` (hashes), `transactions` (hashes, or
/// full objects with `full`), and `withdrawals` when the body has them.
pub fn block_object(
    header: &SealedHeader,
    body: &VerifiedBody,
    full: bool,
) -> Result<Value, EncodeError> {
    let transactions = body.body.transactions();
    if body.senders.len() != transactions.len() {
        return Err(EncodeError::SenderCount {
            block: header.hash(),
            senders: body.senders.len(),
            transactions: transactions.len(),
        });
    }
    let mut out = header_object(header);
    out.insert("size".into(), qty(block_size(header, body)));
    out.insert(
        "uncles".into(),
        body.body.uncles().iter().map(|uncle| data(uncle.hash())).collect(),
    );
    let list: Vec<Value> = if full {
        transactions
            .iter()
            .zip(&body.senders)
            .enumerate()
            .map(|(index, (tx, from))| {
                transaction_object(tx, *from, &TxContext::new(header, index as u64))
            })
            .collect()
    } else {
        transactions.iter().map(|tx| data(tx.tx_hash())).collect()
    };
    out.insert("transactions".into(), Value::Array(list));
    if let Some(withdrawals) = body.body.withdrawals() {
        let list = withdrawals
            .iter()
            .map(|w| {
                json!({
                    "index": qty(w.index),
                    "validatorIndex": qty(w.validator_index),
                    "address": data(w.address),
                    "amount": qty(w.amount),
                })
            })
            .collect();
        out.insert("withdrawals".into(), Value::Array(list));
    }
    Ok(Value::Object(out))
}

/// Where a transaction sits: what its JSON says about the including block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxContext {
    /// The block hash.
    pub block_hash: B256,
    /// The block number.
    pub block_number: u64,
    /// The block timestamp.
    pub block_timestamp: u64,
    /// The block's base fee (London on), for the effective gas price.
    pub base_fee: Option<u64>,
    /// The transaction's index in the block.
    pub index: u64,
}

impl TxContext {
    /// The context of transaction `index` of the block with this header.
    pub fn new(header: &SealedHeader, index: u64) -> Self {
        Self {
            block_hash: header.hash(),
            block_number: header.number(),
            block_timestamp: header.header().timestamp,
            base_fee: header.header().base_fee_per_gas,
            index,
        }
    }
}

fn access_list_json(tx: &BlockTransaction) -> Value {
    tx.access_list().map_or(Value::Null, |list| {
        list.iter()
            .map(|item| {
                json!({
                    "address": data(item.address),
                    "storageKeys": item.storage_keys.iter().map(data).collect::<Vec<_>>(),
                })
            })
            .collect()
    })
}

/// A mined transaction object as geth encodes it: the common fields, then those of its
/// type. Typed transactions carry both `v` and `yParity` (equal); legacy ones carry `v`
/// (27/28, or EIP-155 `chainId * 2 + 35/36`) and `chainId` only when replay-protected.
/// `gasPrice` of a dynamic-fee transaction is the effective price paid in this block.
pub fn transaction_object(tx: &BlockTransaction, from: Address, ctx: &TxContext) -> Value {
    let signature = tx.signature();
    let mut out = Map::new();
    let mut put = |key: &str, value: Value| {
        out.insert(key.to_owned(), value);
    };
    put("type", qty(tx.ty()));
    put("hash", data(tx.tx_hash()));
    put("nonce", qty(tx.nonce()));
    put("blockHash", data(ctx.block_hash));
    put("blockNumber", qty(ctx.block_number));
    put("blockTimestamp", qty(ctx.block_timestamp));
    put("transactionIndex", qty(ctx.index));
    put("from", data(from));
    put("to", opt_data(tx.to()));
    put("value", qty(tx.value()));
    put("gas", qty(tx.gas_limit()));
    put("input", data(tx.input()));
    put("r", qty(signature.r()));
    put("s", qty(signature.s()));
    if let EthereumTxEnvelope::Legacy(signed) = tx {
        let chain_id = signed.tx().chain_id;
        put("v", qty(alloy_consensus::transaction::to_eip155_value(signature.v(), chain_id)));
        if let Some(id) = chain_id {
            put("chainId", qty(id));
        }
        put("gasPrice", qty(signed.tx().gas_price));
        return Value::Object(out);
    }
    let parity = u8::from(signature.v());
    put("v", qty(parity));
    put("yParity", qty(parity));
    if let Some(id) = tx.chain_id() {
        put("chainId", qty(id));
    }
    put("accessList", access_list_json(tx));
    if tx.is_dynamic_fee() {
        put("maxFeePerGas", qty(tx.max_fee_per_gas()));
        put("maxPriorityFeePerGas", qty(tx.max_priority_fee_per_gas().unwrap_or_default()));
    }
    put("gasPrice", qty(tx.effective_gas_price(ctx.base_fee)));
    if let Some(fee) = tx.max_fee_per_blob_gas() {
        put("maxFeePerBlobGas", qty(fee));
    }
    if let Some(hashes) = tx.blob_versioned_hashes() {
        put("blobVersionedHashes", hashes.iter().map(data).collect());
    }
    if let Some(list) = tx.authorization_list() {
        let list = list
            .iter()
            .map(|auth| {
                json!({
                    "chainId": qty(auth.chain_id),
                    "address": data(auth.address),
                    "nonce": qty(auth.nonce),
                    "yParity": qty(auth.y_parity()),
                    "r": qty(auth.r()),
                    "s": qty(auth.s()),
                })
            })
            .collect();
        put("authorizationList", list);
    }
    Value::Object(out)
}

/// What a receipt's JSON needs from its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxFacts {
    /// Transaction hash.
    pub hash: B256,
    /// Recovered sender.
    pub from: Address,
    /// Recipient; `None` for a contract creation.
    pub to: Option<Address>,
    /// For a creation, the new contract: `keccak256(rlp([sender, nonce]))[12..]`.
    pub contract_address: Option<Address>,
    /// The price per gas paid: the gas price, or `min(maxFee, baseFee + maxPriorityFee)`.
    pub effective_gas_price: u128,
    /// Blob gas of a blob transaction (blobs × 2^17).
    pub blob_gas_used: Option<u64>,
}

impl TxFacts {
    /// The facts of `tx`, sent by `from`, in a block with this base fee.
    pub fn of(tx: &BlockTransaction, from: Address, base_fee: Option<u64>) -> Self {
        Self {
            hash: *tx.tx_hash(),
            from,
            to: tx.to(),
            contract_address: tx.is_create().then(|| from.create(tx.nonce())),
            effective_gas_price: tx.effective_gas_price(base_fee),
            blob_gas_used: tx.blob_gas_used(),
        }
    }
}

/// The blob base fee of a block (`blobGasPrice` in receipts), where the chain's blob schedule
/// is known: mainnet, by the fork active at the block's timestamp (the timestamps are
/// `les::msg::MAINNET_TIME_FORKS`). Other chains: `None`, and the field is left out rather
/// than guessed.
pub fn blob_gas_price(chain_id: u64, header: &SealedHeader) -> Option<u128> {
    let excess = header.header().excess_blob_gas?;
    Some(blob_params(chain_id, header.header().timestamp)?.calc_blob_fee(excess))
}

/// The blob parameters in force at `timestamp`, where the chain's blob schedule is known
/// (mainnet: the latest fork active then that sets them); `None` elsewhere.
pub fn blob_params(chain_id: u64, timestamp: u64) -> Option<BlobParams> {
    if chain_id != les::msg::MAINNET_NETWORK_ID {
        return None;
    }
    les::msg::MAINNET_TIME_FORKS.iter().rev().filter(|(_, time)| timestamp >= *time).find_map(
        |(name, _)| match *name {
            "Cancun" => Some(BlobParams::cancun()),
            "Prague" => Some(BlobParams::prague()),
            "Osaka" => Some(BlobParams::osaka()),
            "BPO1" => Some(BlobParams::bpo1()),
            "BPO2" => Some(BlobParams::bpo2()),
            _ => None,
        },
    )
}

/// A log object as receipts, `eth_getLogs`, filters and `logs` subscriptions carry it:
/// `logIndex` counts across the block, `transactionIndex` is `ctx.index`, `removed: false`.
pub fn log_object(log: &Log, ctx: &TxContext, tx_hash: B256, log_index: u64) -> Value {
    json!({
        "address": data(log.address),
        "topics": log.topics().iter().map(data).collect::<Vec<_>>(),
        "data": data(&log.data.data),
        "blockHash": data(ctx.block_hash),
        "blockNumber": qty(ctx.block_number),
        "blockTimestamp": qty(ctx.block_timestamp),
        "transactionHash": data(tx_hash),
        "transactionIndex": qty(ctx.index),
        "logIndex": qty(log_index),
        "removed": false,
    })
}

/// Every receipt of a block as `eth_getBlockReceipts` answers: `gasUsed` is the difference
/// of consecutive cumulative figures, `logIndex` counts across the block, `status` (or the
/// pre-Byzantium `root`) comes from the receipt, the rest from the transaction facts.
pub fn block_receipts(
    header: &SealedHeader,
    facts: &[TxFacts],
    receipts: &[ReceiptEnvelope],
    blob_gas_price: Option<u128>,
) -> Result<Vec<Value>, EncodeError> {
    if facts.len() != receipts.len() {
        return Err(EncodeError::ReceiptCount {
            block: header.hash(),
            receipts: receipts.len(),
            transactions: facts.len(),
        });
    }
    let mut previous_cumulative = 0u64;
    let mut log_index = 0u64;
    let mut out = Vec::with_capacity(receipts.len());
    for (index, (receipt, tx)) in receipts.iter().zip(facts).enumerate() {
        let cumulative = receipt.cumulative_gas_used();
        let gas_used = cumulative
            .checked_sub(previous_cumulative)
            .ok_or(EncodeError::CumulativeGas { block: header.hash(), index })?;
        previous_cumulative = cumulative;
        let ctx = TxContext::new(header, index as u64);
        let logs: Vec<Value> = receipt
            .logs()
            .iter()
            .map(|log| {
                let value = log_object(log, &ctx, tx.hash, log_index);
                log_index += 1;
                value
            })
            .collect();
        let mut object = json!({
            "type": qty(receipt.ty()),
            "transactionHash": data(tx.hash),
            "transactionIndex": qty(ctx.index),
            "blockHash": data(ctx.block_hash),
            "blockNumber": qty(ctx.block_number),
            "from": data(tx.from),
            "to": opt_data(tx.to),
            "contractAddress": opt_data(tx.contract_address),
            "cumulativeGasUsed": qty(cumulative),
            "gasUsed": qty(gas_used),
            "effectiveGasPrice": qty(tx.effective_gas_price),
            "logs": logs,
            "logsBloom": data(receipt.bloom()),
        });
        if let Value::Object(map) = &mut object {
            match receipt.status_or_post_state() {
                alloy_consensus::Eip658Value::Eip658(ok) => {
                    map.insert("status".into(), qty(u8::from(ok)));
                }
                alloy_consensus::Eip658Value::PostState(root) => {
                    map.insert("root".into(), data(root));
                }
            }
            if let Some(blob_gas) = tx.blob_gas_used {
                map.insert("blobGasUsed".into(), qty(blob_gas));
                if let Some(price) = blob_gas_price {
                    map.insert("blobGasPrice".into(), qty(price));
                }
            }
        }
        out.push(object);
    }
    Ok(out)
}

/// An `eth_getProof` (EIP-1186) result. An absent account has zero balance and nonce, the
/// empty code hash and the empty storage root. Each storage key is echoed as geth does: as
/// given when it was the full 32 bytes, else as a quantity.
pub fn proof_object(address: Address, state: &AccountState, full_width_keys: &[bool]) -> Value {
    // TrieAccount's default is exactly the empty account (empty code hash and storage root).
    let account = state.account.unwrap_or_default();
    let proof = |nodes: &[Bytes]| nodes.iter().map(data).collect::<Vec<_>>();
    let storage: Vec<Value> = state
        .storage
        .iter()
        .enumerate()
        .map(|(i, (slot, value, nodes))| {
            let key = if full_width_keys.get(i).copied().unwrap_or(true) {
                data(slot)
            } else {
                qty(alloy_primitives::U256::from_be_bytes(slot.0))
            };
            json!({ "key": key, "value": qty(*value), "proof": proof(nodes) })
        })
        .collect();
    json!({
        "address": data(address),
        "accountProof": proof(&state.account_proof),
        "balance": qty(account.balance),
        "codeHash": data(account.code_hash),
        "nonce": qty(account.nonce),
        "storageHash": data(account.storage_root),
        "storageProof": storage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::U256;

    #[test]
    fn quantities_and_data_follow_eip1474() {
        assert_eq!(qty(0u64), json!("0x0"));
        assert_eq!(qty(255u64), json!("0xff"));
        assert_eq!(qty(U256::ZERO), json!("0x0"));
        assert_eq!(qty(U256::from(0x1234u64)), json!("0x1234"));
        assert_eq!(qty(u128::MAX), json!(format!("0x{}", "f".repeat(32))));
        assert_eq!(data([0u8; 0]), json!("0x"));
        assert_eq!(data([0u8, 0xab]), json!("0x00ab"));
        let checksummed: Address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".parse().unwrap();
        assert_eq!(data(checksummed), json!("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"));
    }

    #[test]
    fn absent_account_proof_has_empty_defaults() {
        let state = AccountState {
            account: None,
            account_proof: vec![Bytes::from(vec![0xc0])],
            storage: vec![(B256::with_last_byte(1), U256::ZERO, vec![])],
        };
        let object = proof_object(Address::ZERO, &state, &[false]);
        assert_eq!(object["balance"], "0x0");
        assert_eq!(object["nonce"], "0x0");
        assert_eq!(
            object["codeHash"],
            "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
        assert_eq!(
            object["storageHash"],
            "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"
        );
        assert_eq!(object["accountProof"], json!(["0xc0"]));
        assert_eq!(object["storageProof"], json!([{"key": "0x1", "value": "0x0", "proof": []}]));
    }
}
