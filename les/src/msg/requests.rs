//! Requests `[reqID, [...]]` and replies `[reqID, BV, [...]]` (BV = the server's buffer
//! value after serving) for every les/2-4 request type, plus ResumeMsg.
//!
//! Chain data in replies (headers, bodies, receipts, proof nodes, transactions) is kept as
//! the raw RLP items received, so verification hashes exactly the bytes that came.

use super::MsgError;
use super::codec::{Item, ListOf, ListReader, RawList, encode_as_list, exactly_one_item};
use alloy_eips::BlockHashOrNumber;
use alloy_primitives::{Address, B256, Bytes, keccak256};
use alloy_rlp::{BufMut, Encodable, Header, RlpDecodable, RlpEncodable};

/// `[message, message reqID, message BV, message body]` contexts for errors.
macro_rules! contexts {
    ($message:literal, $body:literal) => {
        [
            $message,
            concat!($message, " reqID"),
            concat!($message, " BV"),
            concat!($message, " ", $body),
        ]
    };
}

/// Opens `[reqID, [..]]`.
fn open_request<'a>(
    payload: &'a [u8],
    [message, request_id, _, body]: [&'static str; 4],
) -> Result<(u64, ListReader<'a>), MsgError> {
    let mut frame = ListReader::top_level(payload, message)?.with_count(2)?;
    Ok((frame.value(request_id)?, frame.list(body)?))
}

/// Opens `[reqID, BV, [..]]`.
fn open_reply<'a>(
    payload: &'a [u8],
    [message, request_id, buffer_value, body]: [&'static str; 4],
) -> Result<(u64, u64, ListReader<'a>), MsgError> {
    let mut frame = ListReader::top_level(payload, message)?.with_count(3)?;
    Ok((frame.value(request_id)?, frame.value(buffer_value)?, frame.list(body)?))
}

fn raw_list_item(item: Item<'_>, context: &'static str) -> Result<Bytes, MsgError> {
    item.list(context)?;
    Ok(Bytes::copy_from_slice(item.raw))
}

fn raw_item(item: Item<'_>) -> Bytes {
    Bytes::copy_from_slice(item.raw)
}

fn string_item(item: Item<'_>, context: &'static str) -> Result<Bytes, MsgError> {
    Ok(Bytes::copy_from_slice(item.string(context)?))
}

/// GetBlockHeaders (0x02): `[reqID, [origin, maxHeaders, skip, reverse]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetBlockHeaders {
    /// Request ID, echoed in the reply.
    pub request_id: u64,
    /// First header: by hash (a 32-byte string) or number (an integer of at most 8 bytes).
    pub origin: BlockHashOrNumber,
    /// Most headers wanted (the request's item count).
    pub max_headers: u64,
    /// Headers skipped between two returned ones (step = skip + 1).
    pub skip: u64,
    /// Walk towards genesis.
    pub reverse: bool,
}

impl GetBlockHeaders {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, query) = open_request(payload, contexts!("GetBlockHeaders", "query"))?;
        let mut query = query.with_count(4)?;
        let origin_item = query.item("GetBlockHeaders origin")?;
        let origin = match origin_item.string("GetBlockHeaders origin")?.len() {
            32 => BlockHashOrNumber::Hash(origin_item.decode("GetBlockHeaders origin")?),
            0..=8 => BlockHashOrNumber::Number(origin_item.decode("GetBlockHeaders origin")?),
            found => {
                return Err(MsgError::InvalidLength { context: "GetBlockHeaders origin", found });
            }
        };
        Ok(Self {
            request_id,
            origin,
            max_headers: query.value("GetBlockHeaders maxHeaders")?,
            skip: query.value("GetBlockHeaders skip")?,
            reverse: query.value("GetBlockHeaders reverse")?,
        })
    }
}

encode_as_list!(GetBlockHeaders, |this| [
    &this.request_id,
    &ListOf(&[&this.origin, &this.max_headers, &this.skip, &this.reverse]),
]);

/// BlockHeaders (0x03): `[reqID, BV, [header, ...]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeaders {
    /// The request's ID.
    pub request_id: u64,
    /// Server buffer value after serving.
    pub buffer_value: u64,
    /// Each header's consensus RLP (a list), exactly as received.
    pub headers: Vec<Bytes>,
}

impl BlockHeaders {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, buffer_value, headers) =
            open_reply(payload, contexts!("BlockHeaders", "headers"))?;
        let headers = headers.collect(|item| raw_list_item(item, "BlockHeaders header"))?;
        Ok(Self { request_id, buffer_value, headers })
    }
}

encode_as_list!(BlockHeaders, |this| [
    &this.request_id,
    &this.buffer_value,
    &RawList(&this.headers)
]);

/// GetBlockBodies (0x04): `[reqID, [blockHash, ...]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetBlockBodies {
    /// Request ID.
    pub request_id: u64,
    /// Blocks whose bodies are wanted.
    pub block_hashes: Vec<B256>,
}

impl GetBlockBodies {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, hashes) = open_request(payload, contexts!("GetBlockBodies", "hashes"))?;
        let block_hashes = hashes.collect(|item| item.decode("GetBlockBodies hash"))?;
        Ok(Self { request_id, block_hashes })
    }
}

encode_as_list!(GetBlockBodies, |this| [&this.request_id, &this.block_hashes]);

/// BlockBodies (0x05): `[reqID, BV, [body, ...]]`, body = `[txs, uncles(, withdrawals)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockBodies {
    /// The request's ID.
    pub request_id: u64,
    /// Server buffer value after serving.
    pub buffer_value: u64,
    /// Each body's RLP (a list), exactly as received.
    pub bodies: Vec<Bytes>,
}

impl BlockBodies {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, buffer_value, bodies) =
            open_reply(payload, contexts!("BlockBodies", "bodies"))?;
        let bodies = bodies.collect(|item| raw_list_item(item, "BlockBodies body"))?;
        Ok(Self { request_id, buffer_value, bodies })
    }
}

encode_as_list!(BlockBodies, |this| [&this.request_id, &this.buffer_value, &RawList(&this.bodies)]);

/// GetReceipts (0x06): `[reqID, [blockHash, ...]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetReceipts {
    /// Request ID.
    pub request_id: u64,
    /// Blocks whose receipts are wanted.
    pub block_hashes: Vec<B256>,
}

impl GetReceipts {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, hashes) = open_request(payload, contexts!("GetReceipts", "hashes"))?;
        let block_hashes = hashes.collect(|item| item.decode("GetReceipts hash"))?;
        Ok(Self { request_id, block_hashes })
    }
}

encode_as_list!(GetReceipts, |this| [&this.request_id, &this.block_hashes]);

/// Receipts (0x07): `[reqID, BV, [[receipt, ...], ...]]`, one list per block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipts {
    /// The request's ID.
    pub request_id: u64,
    /// Server buffer value after serving.
    pub buffer_value: u64,
    /// Per block, each receipt's consensus encoding as received (a list for legacy
    /// receipts, a byte string `type || rlp(...)` for typed ones).
    pub receipts: Vec<Vec<Bytes>>,
}

impl Receipts {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, buffer_value, blocks) =
            open_reply(payload, contexts!("Receipts", "blocks"))?;
        let receipts = blocks.collect(|block| {
            block.list("Receipts block")?.collect(|receipt| Ok(raw_item(receipt)))
        })?;
        Ok(Self { request_id, buffer_value, receipts })
    }
}

/// A list of lists of raw items.
struct RawLists<'a>(&'a [Vec<Bytes>]);

impl RawLists<'_> {
    fn payload_length(&self) -> usize {
        self.0.iter().map(|items| RawList(items).length()).sum()
    }
}

impl Encodable for RawLists<'_> {
    fn encode(&self, out: &mut dyn BufMut) {
        Header { list: true, payload_length: self.payload_length() }.encode(out);
        for items in self.0 {
            RawList(items).encode(out);
        }
    }

    fn length(&self) -> usize {
        let payload_length = self.payload_length();
        payload_length + alloy_rlp::length_of_length(payload_length)
    }
}

encode_as_list!(Receipts, |this| [&this.request_id, &this.buffer_value, &RawLists(&this.receipts)]);

/// Which trie a GetProofsV2 / GetContractCodes entry addresses (the entry's second field).
///
/// geth <= v1.12.0 sends keccak256(address) there; v1.12.1 - v1.13.5 the raw address (and
/// its server reads any value as an address). We send the address and understand both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountKey {
    /// Empty string: the block's account trie itself (proofs only).
    AccountTrie,
    /// The account's 20-byte address (geth v1.12.1+, and what we send).
    Address(Address),
    /// keccak256 of the address, the account's secure-trie key (geth <= v1.12.0).
    Hashed(B256),
}

impl AccountKey {
    /// The bytes on the wire.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            AccountKey::AccountTrie => &[],
            AccountKey::Address(address) => address.as_slice(),
            AccountKey::Hashed(hash) => hash.as_slice(),
        }
    }

    /// The account's secure-trie key, if this names an account.
    pub fn hashed(&self) -> Option<B256> {
        match self {
            AccountKey::AccountTrie => None,
            AccountKey::Address(address) => Some(keccak256(address)),
            AccountKey::Hashed(hash) => Some(*hash),
        }
    }

    fn decode(item: Item<'_>, context: &'static str) -> Result<Self, MsgError> {
        let bytes = item.string(context)?;
        match bytes.len() {
            0 => Ok(AccountKey::AccountTrie),
            20 => Ok(AccountKey::Address(Address::from_slice(bytes))),
            32 => Ok(AccountKey::Hashed(B256::from_slice(bytes))),
            found => Err(MsgError::InvalidLength { context, found }),
        }
    }
}

impl Encodable for AccountKey {
    fn encode(&self, out: &mut dyn BufMut) {
        self.as_slice().encode(out);
    }

    fn length(&self) -> usize {
        self.as_slice().length()
    }
}

/// One GetProofsV2 entry: `[blockHash, accountKey, key, fromLevel]`.
///
/// **Our key forms** (docs/lesd.md, "wire deviation"): geth put secure-trie keys on the wire
/// (`keccak256(address)`, `keccak256(slot)`), which only a node holding the tries can prove.
/// Our servers answer from a JSON-RPC node, which proves by address and raw slot
/// (`eth_getProof`), so our entries carry those: an account proof is
/// `[blockHash, "", address(20)]` (or `[blockHash, address, ""]`), a storage proof
/// `[blockHash, address, slot(32)]`. [`ProofRequest::target`] reads exactly these; a geth
/// form's hashed key is never misread as one of ours except as a raw slot, whose proof then
/// fails the client's verification (no wrong value can pass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofRequest {
    /// Block whose state is proved.
    pub block_hash: B256,
    /// Account trie, or the account whose storage trie is proved.
    pub account: AccountKey,
    /// The address (account trie) or the raw slot (storage trie); see the type docs.
    pub key: Bytes,
    /// Nodes nearest the root to leave out (ignored by geth since v1.12.1; send 0).
    pub from_level: u64,
}

/// What a [`ProofRequest`] asks to prove, in our key forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofTarget {
    /// The account of this address.
    Account(Address),
    /// The account and one raw storage slot of it.
    Storage {
        /// The account.
        address: Address,
        /// The slot as `eth_getStorageAt` names it (not hashed).
        slot: B256,
    },
}

impl ProofRequest {
    /// Proof of `address`'s account in the state of `block_hash`.
    pub fn account(block_hash: B256, address: Address) -> Self {
        Self {
            block_hash,
            account: AccountKey::AccountTrie,
            key: Bytes::copy_from_slice(address.as_slice()),
            from_level: 0,
        }
    }

    /// Proof of storage `slot` of `address` (and of the account) in the state of `block_hash`.
    pub fn storage(block_hash: B256, address: Address, slot: B256) -> Self {
        Self {
            block_hash,
            account: AccountKey::Address(address),
            key: Bytes::copy_from_slice(slot.as_slice()),
            from_level: 0,
        }
    }

    /// The account and slot this entry names in our key forms, or `None` for a form that
    /// names neither (a hashed account, a key of another length).
    pub fn target(&self) -> Option<ProofTarget> {
        match (&self.account, self.key.len()) {
            (AccountKey::AccountTrie, 20) => {
                Some(ProofTarget::Account(Address::from_slice(&self.key)))
            }
            (AccountKey::Address(address), 0) => Some(ProofTarget::Account(*address)),
            (AccountKey::Address(address), 32) => {
                Some(ProofTarget::Storage { address: *address, slot: B256::from_slice(&self.key) })
            }
            _ => None,
        }
    }

    fn decode(item: Item<'_>) -> Result<Self, MsgError> {
        let mut entry = item.list("GetProofsV2 entry")?.with_count(4)?;
        Ok(Self {
            block_hash: entry.value("GetProofsV2 entry blockHash")?,
            account: AccountKey::decode(
                entry.item("GetProofsV2 entry accountKey")?,
                "GetProofsV2 entry accountKey",
            )?,
            key: string_item(entry.item("GetProofsV2 entry key")?, "GetProofsV2 entry key")?,
            from_level: entry.value("GetProofsV2 entry fromLevel")?,
        })
    }
}

encode_as_list!(ProofRequest, |this| [
    &this.block_hash,
    &this.account,
    &this.key,
    &this.from_level
]);

/// GetProofsV2 (0x0f): `[reqID, [[blockHash, accountKey, key, fromLevel], ...]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetProofsV2 {
    /// Request ID.
    pub request_id: u64,
    /// The proofs wanted; the reply is one node set covering all of them.
    pub requests: Vec<ProofRequest>,
}

impl GetProofsV2 {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, entries) = open_request(payload, contexts!("GetProofsV2", "entries"))?;
        let requests = entries.collect(ProofRequest::decode)?;
        Ok(Self { request_id, requests })
    }
}

encode_as_list!(GetProofsV2, |this| [&this.request_id, &this.requests]);

/// ProofsV2 (0x10): `[reqID, BV, [node, ...]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofsV2 {
    /// The request's ID.
    pub request_id: u64,
    /// Server buffer value after serving.
    pub buffer_value: u64,
    /// One de-duplicated set of trie nodes, each the node's own RLP embedded as received
    /// (its database key is keccak256 of these bytes).
    pub nodes: Vec<Bytes>,
}

impl ProofsV2 {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, buffer_value, nodes) =
            open_reply(payload, contexts!("ProofsV2", "nodes"))?;
        let nodes = nodes.collect(|item| Ok(raw_item(item)))?;
        Ok(Self { request_id, buffer_value, nodes })
    }
}

encode_as_list!(ProofsV2, |this| [&this.request_id, &this.buffer_value, &RawList(&this.nodes)]);

/// One GetContractCodes entry: `[blockHash, accountKey]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRequest {
    /// Block whose state holds the account.
    pub block_hash: B256,
    /// The account.
    pub account: AccountKey,
}

impl CodeRequest {
    /// The code of `address` in the state of `block_hash`.
    pub fn new(block_hash: B256, address: Address) -> Self {
        Self { block_hash, account: AccountKey::Address(address) }
    }

    fn decode(item: Item<'_>) -> Result<Self, MsgError> {
        let mut entry = item.list("GetContractCodes entry")?.with_count(2)?;
        Ok(Self {
            block_hash: entry.value("GetContractCodes entry blockHash")?,
            account: AccountKey::decode(
                entry.item("GetContractCodes entry accountKey")?,
                "GetContractCodes entry accountKey",
            )?,
        })
    }
}

encode_as_list!(CodeRequest, |this| [&this.block_hash, &this.account]);

/// GetContractCodes (0x0a): `[reqID, [[blockHash, accountKey], ...]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetContractCodes {
    /// Request ID.
    pub request_id: u64,
    /// The codes wanted.
    pub requests: Vec<CodeRequest>,
}

impl GetContractCodes {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, entries) =
            open_request(payload, contexts!("GetContractCodes", "entries"))?;
        let requests = entries.collect(CodeRequest::decode)?;
        Ok(Self { request_id, requests })
    }
}

encode_as_list!(GetContractCodes, |this| [&this.request_id, &this.requests]);

/// ContractCodes (0x0b): `[reqID, BV, [code, ...]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractCodes {
    /// The request's ID.
    pub request_id: u64,
    /// Server buffer value after serving.
    pub buffer_value: u64,
    /// The codes (byte strings), in request order, missing ones skipped.
    pub codes: Vec<Bytes>,
}

impl ContractCodes {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, buffer_value, codes) =
            open_reply(payload, contexts!("ContractCodes", "codes"))?;
        let codes = codes.collect(|item| string_item(item, "ContractCodes code"))?;
        Ok(Self { request_id, buffer_value, codes })
    }
}

encode_as_list!(ContractCodes, |this| [&this.request_id, &this.buffer_value, &this.codes]);

/// One GetHelperTrieProofs entry: `[subType, sectionIdx, key, fromLevel, auxReq]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperTrieRequest {
    /// Which helper trie: [`Self::CHT`] or [`Self::BLOOM_TRIE`].
    pub trie_type: u64,
    /// The trie's index (CHT or bloom-trie section number).
    pub section_index: u64,
    /// Trie key (CHT: the block number as 8 bytes big-endian).
    pub key: Bytes,
    /// Nodes nearest the root to leave out.
    pub from_level: u64,
    /// Extra data wanted: [`Self::AUX_NONE`], [`Self::AUX_ROOT`] or [`Self::AUX_HEADER`].
    pub aux_request: u64,
}

impl HelperTrieRequest {
    /// `subType` of the canonical hash trie.
    pub const CHT: u64 = 0;
    /// `subType` of the bloom-bits trie.
    pub const BLOOM_TRIE: u64 = 1;
    /// `auxReq`: nothing extra.
    pub const AUX_NONE: u64 = 0;
    /// `auxReq`: the trie root (in the spec; deprecated, geth does not implement it).
    pub const AUX_ROOT: u64 = 1;
    /// `auxReq`: the header of the block the CHT key names.
    pub const AUX_HEADER: u64 = 2;

    /// CHT proof of `block_number` in CHT `section_index`, with that block's header.
    pub fn cht_with_header(section_index: u64, block_number: u64) -> Self {
        Self {
            trie_type: Self::CHT,
            section_index,
            key: Bytes::copy_from_slice(&block_number.to_be_bytes()),
            from_level: 0,
            aux_request: Self::AUX_HEADER,
        }
    }

    fn decode(item: Item<'_>) -> Result<Self, MsgError> {
        let mut entry = item.list("GetHelperTrieProofs entry")?.with_count(5)?;
        Ok(Self {
            trie_type: entry.value("GetHelperTrieProofs entry subType")?,
            section_index: entry.value("GetHelperTrieProofs entry sectionIdx")?,
            key: string_item(
                entry.item("GetHelperTrieProofs entry key")?,
                "GetHelperTrieProofs entry key",
            )?,
            from_level: entry.value("GetHelperTrieProofs entry fromLevel")?,
            aux_request: entry.value("GetHelperTrieProofs entry auxReq")?,
        })
    }
}

encode_as_list!(HelperTrieRequest, |this| [
    &this.trie_type,
    &this.section_index,
    &this.key,
    &this.from_level,
    &this.aux_request,
]);

/// GetHelperTrieProofs (0x11): `[reqID, [[subType, sectionIdx, key, fromLevel, auxReq], ...]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetHelperTrieProofs {
    /// Request ID.
    pub request_id: u64,
    /// The proofs wanted.
    pub requests: Vec<HelperTrieRequest>,
}

impl GetHelperTrieProofs {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, entries) =
            open_request(payload, contexts!("GetHelperTrieProofs", "entries"))?;
        let requests = entries.collect(HelperTrieRequest::decode)?;
        Ok(Self { request_id, requests })
    }
}

encode_as_list!(GetHelperTrieProofs, |this| [&this.request_id, &this.requests]);

/// HelperTrieProofs (0x12): `[reqID, BV, [[node, ...], [auxData, ...]]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperTrieProofs {
    /// The request's ID.
    pub request_id: u64,
    /// Server buffer value after serving.
    pub buffer_value: u64,
    /// One de-duplicated node set (raw node RLPs) covering all requested proofs.
    pub nodes: Vec<Bytes>,
    /// One byte string per request with `auxReq` 2: the header's RLP (double-wrapped).
    pub aux_data: Vec<Bytes>,
}

impl HelperTrieProofs {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, buffer_value, body) =
            open_reply(payload, contexts!("HelperTrieProofs", "proofs"))?;
        let mut body = body.with_count(2)?;
        let nodes = body.list("HelperTrieProofs nodes")?.collect(|item| Ok(raw_item(item)))?;
        let aux_data = body
            .list("HelperTrieProofs auxData")?
            .collect(|item| string_item(item, "HelperTrieProofs auxData"))?;
        Ok(Self { request_id, buffer_value, nodes, aux_data })
    }
}

encode_as_list!(HelperTrieProofs, |this| [
    &this.request_id,
    &this.buffer_value,
    &ListOf(&[&RawList(&this.nodes), &this.aux_data]),
]);

/// SendTxV2 (0x13): `[reqID, [tx, ...]]`; the server answers with TxStatus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendTxV2 {
    /// Request ID.
    pub request_id: u64,
    /// Each transaction as on the wire: a list (legacy) or a byte string `type || payload`
    /// (EIP-2718).
    pub transactions: Vec<Bytes>,
}

impl SendTxV2 {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, txs) = open_request(payload, contexts!("SendTxV2", "transactions"))?;
        let transactions = txs.collect(|item| Ok(raw_item(item)))?;
        Ok(Self { request_id, transactions })
    }
}

encode_as_list!(SendTxV2, |this| [&this.request_id, &RawList(&this.transactions)]);

/// GetTxStatus (0x14): `[reqID, [txHash, ...]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetTxStatus {
    /// Request ID.
    pub request_id: u64,
    /// Transactions asked about.
    pub tx_hashes: Vec<B256>,
}

impl GetTxStatus {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, hashes) = open_request(payload, contexts!("GetTxStatus", "hashes"))?;
        let tx_hashes = hashes.collect(|item| item.decode("GetTxStatus hash"))?;
        Ok(Self { request_id, tx_hashes })
    }
}

encode_as_list!(GetTxStatus, |this| [&this.request_id, &this.tx_hashes]);

/// A transaction's state in a TxStatus entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxState {
    /// 0: not known (geth also uses this, with an error text, for refused transactions).
    Unknown,
    /// 1: in the pool, not executable yet.
    Queued,
    /// 2: in the pool, executable.
    Pending,
    /// 3: in the canonical chain.
    Included,
    /// 4: error (in the spec; geth never sends it).
    Error,
}

impl TxState {
    /// The value on the wire.
    pub const fn value(self) -> u64 {
        match self {
            TxState::Unknown => 0,
            TxState::Queued => 1,
            TxState::Pending => 2,
            TxState::Included => 3,
            TxState::Error => 4,
        }
    }

    /// The state with this wire value.
    pub const fn from_value(value: u64) -> Option<Self> {
        match value {
            0 => Some(TxState::Unknown),
            1 => Some(TxState::Queued),
            2 => Some(TxState::Pending),
            3 => Some(TxState::Included),
            4 => Some(TxState::Error),
            _ => None,
        }
    }
}

/// Where an included transaction is: `[blockHash, blockNumber, txIndex]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct TxLookup {
    /// The including block's hash.
    pub block_hash: B256,
    /// The including block's number.
    pub block_number: u64,
    /// The transaction's index in the block.
    pub index: u64,
}

/// One TxStatus entry. geth sends `[status, lookup | c0, error]`, which is what we encode;
/// the spec's `[status, data]` is accepted too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxStatusEntry {
    /// The transaction's state.
    pub status: TxState,
    /// Its location, for [`TxState::Included`].
    pub lookup: Option<TxLookup>,
    /// Why the server refused it (SendTxV2); empty if nothing went wrong.
    pub error: String,
}

impl TxStatusEntry {
    fn decode(item: Item<'_>) -> Result<Self, MsgError> {
        const CONTEXT: &str = "TxStatus entry";
        let entry = item.list(CONTEXT)?;
        let found = entry.count()?;
        let mut entry = match found {
            2 | 3 => entry,
            _ => {
                return Err(MsgError::WrongElementCount { context: CONTEXT, expected: 3, found });
            }
        };
        let value: u64 = entry.value("TxStatus entry status")?;
        let status = TxState::from_value(value)
            .ok_or(MsgError::UnknownValue { context: "TxStatus entry status", value })?;
        let second = entry.item("TxStatus entry lookup")?;
        let (lookup, error) = if found == 3 {
            (decode_lookup(second)?, decode_text(entry.string("TxStatus entry error")?)?)
        } else if second.is_list {
            (decode_lookup(second)?, String::new())
        } else if status == TxState::Included {
            // Spec form: the data string holds rlp([blockHash, blockNumber, txIndex]).
            let data = second.string("TxStatus entry data")?;
            let lookup =
                exactly_one_item(data, "TxStatus entry data")?.decode("TxStatus entry data")?;
            (Some(lookup), String::new())
        } else {
            (None, decode_text(second.string("TxStatus entry data")?)?)
        };
        Ok(Self { status, lookup, error })
    }
}

fn decode_lookup(item: Item<'_>) -> Result<Option<TxLookup>, MsgError> {
    let list = item.list("TxStatus entry lookup")?;
    if list.is_empty() {
        return Ok(None);
    }
    Ok(Some(item.decode("TxStatus entry lookup")?))
}

fn decode_text(bytes: &[u8]) -> Result<String, MsgError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| MsgError::InvalidUtf8 { context: "TxStatus entry error" })
}

/// The empty list geth writes for "no lookup".
struct EmptyList;

impl Encodable for EmptyList {
    fn encode(&self, out: &mut dyn BufMut) {
        out.put_u8(alloy_rlp::EMPTY_LIST_CODE);
    }

    fn length(&self) -> usize {
        1
    }
}

encode_as_list!(TxStatusEntry, |this| [
    &this.status.value(),
    match &this.lookup {
        Some(lookup) => lookup as &dyn Encodable,
        None => &EmptyList,
    },
    &this.error.as_bytes(),
]);

/// TxStatus (0x15): `[reqID, BV, [entry, ...]]`, one entry per transaction asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxStatus {
    /// The request's ID.
    pub request_id: u64,
    /// Server buffer value after serving.
    pub buffer_value: u64,
    /// The entries, in request order.
    pub statuses: Vec<TxStatusEntry>,
}

impl TxStatus {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let (request_id, buffer_value, entries) =
            open_reply(payload, contexts!("TxStatus", "entries"))?;
        let statuses = entries.collect(TxStatusEntry::decode)?;
        Ok(Self { request_id, buffer_value, statuses })
    }
}

encode_as_list!(TxStatus, |this| [&this.request_id, &this.buffer_value, &this.statuses]);

/// ResumeMsg (0x17, les/3+): the buffer value, sent by geth as a bare integer (the spec's
/// one-element list `[BV]` is accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resume {
    /// Server buffer value.
    pub buffer_value: u64,
}

impl Resume {
    /// Decodes the payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let item = exactly_one_item(payload, "ResumeMsg")?;
        let buffer_value = if item.is_list {
            item.list("ResumeMsg")?.with_count(1)?.value("ResumeMsg BV")?
        } else {
            item.decode("ResumeMsg BV")?
        };
        Ok(Self { buffer_value })
    }
}

impl Encodable for Resume {
    fn encode(&self, out: &mut dyn BufMut) {
        self.buffer_value.encode(out);
    }

    fn length(&self) -> usize {
        self.buffer_value.length()
    }
}
