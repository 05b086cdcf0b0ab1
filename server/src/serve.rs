//! Answering LES requests from the upstream JSON-RPC node, with the real serving cost.
//!
//! [`Server::serve`] takes one accepted request and returns its reply (buffer value left at
//! 0: the session fills it in) and the cost to charge. An upstream that is down or refuses
//! a call never fails a request: the reply carries what could be served before the failure
//! (possibly nothing), so the client stays connected and can ask elsewhere.
//!
//! Real cost: one cost unit is one nanosecond of serving time, the unit of geth's cost table
//! (its defaults are twice the average serving time in ns). The time measured is the wall
//! time from the start of serving to the reply being ready, upstream round trips included,
//! since that is the capacity the request took; it is capped at the ticket's maximum cost,
//! so a client is never charged more than the cost table promised:
//! `real_cost = min(max_cost, serving_time_ns)`.
//!
//! State proofs (GetProofsV2) and the storage-key deviation: geth's LES server proves trie
//! keys against its local trie, and LES carries the *hashed* keys (keccak256 of address or
//! slot). A JSON-RPC backend proves by address and *raw* slot (`eth_getProof`) and exposes
//! no preimages, so a hashed key cannot be served. lesd therefore reads an entry as:
//! - `[block, "", address (20 bytes), _]` or `[block, address, "", _]`: the account proof;
//! - `[block, address, slot (32 bytes), _]`: the account proof and the storage proof of the
//!   **raw** slot (our wire deviation: geth clients send keccak256(slot) there);
//! - any hashed account (`[block, "", keccak(address)]`, or a 32-byte account key):
//!   unanswerable, skipped.
//!
//! The reply is one node set: the union, without duplicates, of every proof's account and
//! storage nodes (docs/lesd.md has the operator view).

use crate::follow::{HeadReceiver, SharedWindow};
use crate::metrics::Metrics;
use crate::upstream::{Upstream, UpstreamError};
use alloy_primitives::{Address, B256, Bytes};
use les::chain::SealedHeader;
use les::msg::{
    AccountKey, BlockBodies, BlockHashOrNumber, BlockHeaders, ContractCodes, GetBlockBodies,
    GetBlockHeaders, GetContractCodes, GetProofsV2, GetReceipts, GetTxStatus, HelperTrieProofs,
    LesMessage, ProofTarget, ProofsV2, Receipts, SOFT_RESPONSE_LIMIT, SendTxV2, TxState, TxStatus,
    TxStatusEntry, limits,
};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// A reply and what serving it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The reply, with buffer value 0 (the session sets it).
    pub reply: LesMessage,
    /// The real cost to charge, at most the ticket's maximum.
    pub cost: u64,
}

/// The real cost of a request that took `serving_time`, never above `max_cost`.
pub fn real_cost(serving_time: Duration, max_cost: u64) -> u64 {
    u64::try_from(serving_time.as_nanos()).unwrap_or(u64::MAX).min(max_cost)
}

/// The error text of a TxStatus entry when the upstream could not be asked.
const UPSTREAM_UNAVAILABLE: &str = "upstream unavailable";

/// Serves requests from an [`Upstream`] and the follower's canonical window.
#[derive(Debug, Clone)]
pub struct Server {
    upstream: Upstream,
    window: SharedWindow,
    heads: HeadReceiver,
    metrics: Metrics,
}

impl Server {
    /// A server reading from `upstream`, the canonical `window` and the published `heads`.
    pub fn new(
        upstream: Upstream,
        window: SharedWindow,
        heads: HeadReceiver,
        metrics: Metrics,
    ) -> Self {
        Self { upstream, window, heads, metrics }
    }

    /// Answers `request`, charging at most `max_cost`. `None` for messages that are not
    /// requests. GetHelperTrieProofs gets an empty reply: a JSON-RPC backend has no CHT.
    pub async fn serve(&self, request: LesMessage, max_cost: u64) -> Option<Served> {
        let started = Instant::now();
        let (kind, reply) = match request {
            LesMessage::GetBlockHeaders(query) => {
                ("GetBlockHeaders", LesMessage::BlockHeaders(self.headers(&query).await))
            }
            LesMessage::GetBlockBodies(query) => {
                ("GetBlockBodies", LesMessage::BlockBodies(self.bodies(&query).await))
            }
            LesMessage::GetReceipts(query) => {
                ("GetReceipts", LesMessage::Receipts(self.receipts(&query).await))
            }
            LesMessage::GetProofsV2(query) => {
                ("GetProofsV2", LesMessage::ProofsV2(self.proofs(&query).await))
            }
            LesMessage::GetContractCodes(query) => {
                ("GetContractCodes", LesMessage::ContractCodes(self.codes(&query).await))
            }
            LesMessage::SendTxV2(query) => {
                ("SendTxV2", LesMessage::TxStatus(self.send_transactions(&query).await))
            }
            LesMessage::GetTxStatus(query) => {
                ("GetTxStatus", LesMessage::TxStatus(self.tx_statuses(&query).await))
            }
            LesMessage::GetHelperTrieProofs(query) => (
                "GetHelperTrieProofs",
                LesMessage::HelperTrieProofs(HelperTrieProofs {
                    request_id: query.request_id,
                    buffer_value: 0,
                    nodes: Vec::new(),
                    aux_data: Vec::new(),
                }),
            ),
            _ => return None,
        };
        let took = started.elapsed();
        self.metrics.request_served(kind, took);
        Some(Served { reply, cost: real_cost(took, max_cost) })
    }

    fn upstream_failed(&self, what: &'static str, error: &UpstreamError) {
        self.metrics.upstream_error();
        tracing::warn!(%error, what, "upstream call failed; replying with what was served");
    }

    /// The number of the announced head, if one was published.
    fn head_number(&self) -> Option<u64> {
        self.heads.borrow().as_ref().map(|update| update.header.number())
    }

    /// The canonical header at `number`: from the window, else the upstream; nothing above
    /// the announced head, so replies never run ahead of announcements.
    async fn canonical(&self, number: u64) -> Result<Option<SealedHeader>, UpstreamError> {
        if self.head_number().is_some_and(|head| number > head) {
            return Ok(None);
        }
        let cached = self.window.read().unwrap_or_else(|p| p.into_inner()).by_number(number);
        match cached {
            Some(header) => Ok(Some(header)),
            None => self.upstream.header_by_number(number).await,
        }
    }

    async fn by_hash(&self, hash: B256) -> Result<Option<SealedHeader>, UpstreamError> {
        let cached = self.window.read().unwrap_or_else(|p| p.into_inner()).by_hash(&hash);
        match cached {
            Some(header) => Ok(Some(header)),
            None => self.upstream.header_by_hash(hash).await,
        }
    }

    async fn is_canonical(&self, header: &SealedHeader) -> Result<bool, UpstreamError> {
        Ok(self.canonical(header.number()).await?.is_some_and(|c| c.hash() == header.hash()))
    }

    /// GetBlockHeaders: walks from the origin by `skip + 1` along the canonical chain and
    /// stops at the first missing header, at `maxHeaders` (at most 192) or once the reply
    /// reaches the soft response limit. A non-canonical origin given by hash is followed
    /// by parent hashes when walking back without skips, else only the origin is served.
    /// Headers outside the canonical window are fetched in one batched upstream call.
    async fn headers(&self, query: &GetBlockHeaders) -> BlockHeaders {
        let mut reply =
            BlockHeaders { request_id: query.request_id, buffer_value: 0, headers: Vec::new() };
        let max = usize::try_from(query.max_headers.min(limits::MAX_HEADER_FETCH)).unwrap_or(0);
        let mut collector = HeaderCollector { max, bytes: 0, headers: &mut reply.headers };
        let walk = |number: u64| {
            let step = query.skip.checked_add(1)?;
            if query.reverse { number.checked_sub(step) } else { number.checked_add(step) }
        };
        let start = match query.origin {
            BlockHashOrNumber::Number(number) => Some(number),
            BlockHashOrNumber::Hash(hash) => {
                let origin = match self.by_hash(hash).await {
                    Ok(Some(header)) => header,
                    Ok(None) => return reply,
                    Err(error) => {
                        self.upstream_failed("header", &error);
                        return reply;
                    }
                };
                let canonical = self.is_canonical(&origin).await.unwrap_or_else(|error| {
                    self.upstream_failed("header", &error);
                    false
                });
                let next = walk(origin.number());
                collector.push(&origin);
                if !canonical {
                    if query.reverse && query.skip == 0 {
                        self.follow_parents(origin, &mut collector).await;
                    }
                    return reply;
                }
                next
            }
        };
        let Some(start) = start else { return reply };
        let head = self.head_number();
        let numbers: Vec<u64> = std::iter::successors(Some(start), |&n| walk(n))
            .take(collector.room())
            .take_while(|&n| head.is_none_or(|head| n <= head))
            .collect();
        for header in self.canonical_many(&numbers).await {
            if !collector.push(&header) {
                break;
            }
        }
        reply
    }

    /// Walks a non-canonical branch back by parent hashes.
    async fn follow_parents(&self, mut header: SealedHeader, collector: &mut HeaderCollector<'_>) {
        while collector.room() > 0 && header.number() > 0 {
            match self.by_hash(header.parent_hash()).await {
                Ok(Some(parent)) => {
                    if !collector.push(&parent) {
                        return;
                    }
                    header = parent;
                }
                Ok(None) => return,
                Err(error) => {
                    self.upstream_failed("header", &error);
                    return;
                }
            }
        }
    }

    /// The canonical headers at `numbers`, in order, up to the first one missing: from the
    /// window where it has them, the rest in one batched upstream call.
    async fn canonical_many(&self, numbers: &[u64]) -> Vec<SealedHeader> {
        let cached: Vec<Option<SealedHeader>> = {
            let window = self.window.read().unwrap_or_else(|p| p.into_inner());
            numbers.iter().map(|&n| window.by_number(n)).collect()
        };
        let missing: Vec<u64> = numbers
            .iter()
            .zip(&cached)
            .filter(|(_, cached)| cached.is_none())
            .map(|(&n, _)| n)
            .collect();
        let mut fetched = if missing.is_empty() {
            Vec::new()
        } else {
            match self.upstream.headers_by_numbers(&missing).await {
                Ok(fetched) => fetched,
                Err(error) => {
                    self.upstream_failed("headers", &error);
                    Vec::new()
                }
            }
        }
        .into_iter();
        let mut out = Vec::with_capacity(numbers.len());
        for cached in cached {
            match cached.or_else(|| fetched.next().flatten()) {
                Some(header) => out.push(header),
                None => break,
            }
        }
        out
    }

    /// GetBlockBodies: missing bodies are skipped (as geth does).
    async fn bodies(&self, query: &GetBlockBodies) -> BlockBodies {
        let mut reply =
            BlockBodies { request_id: query.request_id, buffer_value: 0, bodies: Vec::new() };
        let mut bytes = 0usize;
        for hash in &query.block_hashes {
            if bytes >= SOFT_RESPONSE_LIMIT {
                break;
            }
            match self.upstream.body(*hash).await {
                Ok(Some(body)) => {
                    bytes = bytes.saturating_add(body.len());
                    reply.bodies.push(body);
                }
                Ok(None) => {}
                Err(error) => {
                    self.upstream_failed("body", &error);
                    break;
                }
            }
        }
        reply
    }

    /// GetReceipts: one list per known block; unknown blocks are skipped (as geth does).
    async fn receipts(&self, query: &GetReceipts) -> Receipts {
        let mut reply =
            Receipts { request_id: query.request_id, buffer_value: 0, receipts: Vec::new() };
        let mut bytes = 0usize;
        for hash in &query.block_hashes {
            if bytes >= SOFT_RESPONSE_LIMIT {
                break;
            }
            match self.upstream.receipts(*hash).await {
                Ok(Some(receipts)) => {
                    // Already in their LES form (legacy lists, typed ones as byte strings).
                    bytes = bytes.saturating_add(receipts.iter().map(|r| r.len()).sum::<usize>());
                    reply.receipts.push(receipts);
                }
                Ok(None) => {}
                Err(error) => {
                    self.upstream_failed("receipts", &error);
                    break;
                }
            }
        }
        reply
    }

    /// GetProofsV2: entries grouped by block and account, one `eth_getProof` per group, the
    /// union of all proof nodes as the reply (see the module docs for the key forms).
    async fn proofs(&self, query: &GetProofsV2) -> ProofsV2 {
        let mut reply =
            ProofsV2 { request_id: query.request_id, buffer_value: 0, nodes: Vec::new() };
        let mut groups: Vec<ProofGroup> = Vec::new();
        for entry in &query.requests {
            let (address, slot) = match entry.target() {
                Some(ProofTarget::Account(address)) => (address, None),
                Some(ProofTarget::Storage { address, slot }) => (address, Some(slot)),
                None => {
                    tracing::debug!(account = ?entry.account, "unanswerable proof entry (hashed key)");
                    continue;
                }
            };
            let group = match groups
                .iter_mut()
                .find(|g| g.block == entry.block_hash && g.address == address)
            {
                Some(group) => group,
                None => {
                    groups.push(ProofGroup { block: entry.block_hash, address, slots: Vec::new() });
                    let Some(group) = groups.last_mut() else { continue };
                    group
                }
            };
            if let Some(slot) = slot
                && !group.slots.contains(&slot)
            {
                group.slots.push(slot);
            }
        }
        let mut seen: HashSet<Bytes> = HashSet::new();
        let mut bytes = 0usize;
        for group in groups {
            if bytes >= SOFT_RESPONSE_LIMIT {
                break;
            }
            match self.upstream.proof(group.block, group.address, &group.slots).await {
                Ok(Some(proof)) => {
                    for node in proof.account.into_iter().chain(proof.storage.into_iter().flatten())
                    {
                        if seen.insert(node.clone()) {
                            bytes = bytes.saturating_add(node.len());
                            reply.nodes.push(node);
                        }
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    self.upstream_failed("proof", &error);
                    break;
                }
            }
        }
        reply
    }

    /// GetContractCodes: by address; hashed account keys are unanswerable and skipped.
    async fn codes(&self, query: &GetContractCodes) -> ContractCodes {
        let mut reply =
            ContractCodes { request_id: query.request_id, buffer_value: 0, codes: Vec::new() };
        let mut bytes = 0usize;
        for entry in &query.requests {
            if bytes >= SOFT_RESPONSE_LIMIT {
                break;
            }
            let AccountKey::Address(address) = entry.account else { continue };
            match self.upstream.code(entry.block_hash, address).await {
                Ok(Some(code)) => {
                    bytes = bytes.saturating_add(code.len());
                    reply.codes.push(code);
                }
                Ok(None) => {}
                Err(error) => {
                    self.upstream_failed("code", &error);
                    break;
                }
            }
        }
        reply
    }

    /// SendTxV2: each transaction goes to `eth_sendRawTransaction`; the reply has one
    /// status per transaction, with the node's rejection reason in the error field.
    async fn send_transactions(&self, query: &SendTxV2) -> TxStatus {
        let mut statuses = Vec::with_capacity(query.transactions.len());
        for item in &query.transactions {
            let entry = match transaction_encoding(item) {
                None => unknown_with_error("transaction is not a valid RLP item"),
                Some(raw) => match self.upstream.send_raw_transaction(&raw).await {
                    Ok(hash) => match self.upstream.tx_status(hash).await {
                        Ok(entry) => entry,
                        Err(error) => {
                            self.upstream_failed("tx status", &error);
                            // Accepted by the node: it is in the pool as far as we know.
                            TxStatusEntry {
                                status: TxState::Pending,
                                lookup: None,
                                error: String::new(),
                            }
                        }
                    },
                    Err(UpstreamError::Rpc { message, .. }) => unknown_with_error(&message),
                    Err(error) => {
                        self.upstream_failed("send transaction", &error);
                        unknown_with_error(UPSTREAM_UNAVAILABLE)
                    }
                },
            };
            statuses.push(entry);
        }
        TxStatus { request_id: query.request_id, buffer_value: 0, statuses }
    }

    /// GetTxStatus: one entry per hash; Unknown when the upstream cannot be asked.
    async fn tx_statuses(&self, query: &GetTxStatus) -> TxStatus {
        let mut statuses = Vec::with_capacity(query.tx_hashes.len());
        let mut upstream_down = false;
        for hash in &query.tx_hashes {
            let entry = if upstream_down {
                unknown_with_error(UPSTREAM_UNAVAILABLE)
            } else {
                match self.upstream.tx_status(*hash).await {
                    Ok(entry) => entry,
                    Err(error) => {
                        self.upstream_failed("tx status", &error);
                        upstream_down = true;
                        unknown_with_error(UPSTREAM_UNAVAILABLE)
                    }
                }
            };
            statuses.push(entry);
        }
        TxStatus { request_id: query.request_id, buffer_value: 0, statuses }
    }
}

/// Collects a header reply within the item and soft size limits.
struct HeaderCollector<'a> {
    max: usize,
    bytes: usize,
    headers: &'a mut Vec<Bytes>,
}

impl HeaderCollector<'_> {
    /// Headers that may still be added.
    fn room(&self) -> usize {
        if self.bytes >= SOFT_RESPONSE_LIMIT {
            0
        } else {
            self.max.saturating_sub(self.headers.len())
        }
    }

    /// Adds `header` if there is room; false once the reply is full.
    fn push(&mut self, header: &SealedHeader) -> bool {
        if self.room() == 0 {
            return false;
        }
        let encoded: Bytes = header.encoded().into();
        self.bytes = self.bytes.saturating_add(encoded.len());
        self.headers.push(encoded);
        self.room() > 0
    }
}

/// One `eth_getProof` call: an account at a block, with the raw slots wanted.
struct ProofGroup {
    block: B256,
    address: Address,
    slots: Vec<B256>,
}

/// The EIP-2718 encoding `eth_sendRawTransaction` wants from an LES transaction item: a
/// legacy transaction (an RLP list) as it is, a typed one unwrapped from its byte string.
fn transaction_encoding(item: &[u8]) -> Option<Bytes> {
    if item.first().is_some_and(|&b| b >= alloy_rlp::EMPTY_LIST_CODE) {
        return Some(Bytes::copy_from_slice(item));
    }
    let mut buf = item;
    let payload = alloy_rlp::Header::decode_bytes(&mut buf, false).ok()?;
    buf.is_empty().then(|| Bytes::copy_from_slice(payload))
}

fn unknown_with_error(error: &str) -> TxStatusEntry {
    TxStatusEntry { status: TxState::Unknown, lookup: None, error: error.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_cost_is_serving_nanoseconds_capped_at_the_maximum() {
        assert_eq!(real_cost(Duration::from_micros(3), 1_000_000), 3_000);
        assert_eq!(real_cost(Duration::from_secs(1), 1_000_000), 1_000_000);
        assert_eq!(real_cost(Duration::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn typed_items_are_unwrapped_and_legacy_lists_kept() {
        let legacy = alloy_rlp::encode(vec![1u8, 2, 3]);
        assert_eq!(transaction_encoding(&legacy), Some(Bytes::from(legacy.clone())));
        let typed = [0x02u8, 0xc1, 0x80];
        let wrapped = alloy_rlp::encode(&typed[..]);
        assert_eq!(transaction_encoding(&wrapped), Some(Bytes::copy_from_slice(&typed)));
        // A truncated string is refused.
        assert_eq!(transaction_encoding(&[0x83, 0x01]), None);
    }
}
