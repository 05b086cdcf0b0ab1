//! `eth_getLogs`: log filters (EIP-1474 filter objects, EIP-234 `blockHash`), their bloom
//! pre-check, and the search of a block range that is complete by construction.
//!
//! Every block of the range is either excluded by the `logsBloom` of its verified header
//! (the bloom is part of the header the parent-hash chain ties to the ULC head, so a bloom
//! that cannot contain the filter proves the block has no matching log) or has its receipts
//! fetched, verified against `receiptsRoot`, and filtered log by log. Nothing a server says
//! about which blocks hold logs is used. The body is fetched too (verified by
//! `transactionsRoot`) for the transaction hashes.

use super::encode::{self, TxContext};
use super::error::{RpcError, codes};
use super::params::{self, BlockTag, Params};
use super::{RpcFuture, internal};
use crate::chain::{Chain, VerifiedBody};
use alloy_primitives::{Address, B256, Bloom, BloomInput, Log};
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use les::chain::{BlockReceipts, SealedHeader};
use serde_json::{Map, Value};
use std::rc::Rc;

/// The most blocks one `eth_getLogs` (or one filter poll) may span. Each block the bloom
/// cannot exclude costs two requests (receipts and body), so the bound keeps a query's cost
/// within what free service allows; beyond it -32005.
pub const MAX_LOG_RANGE: u64 = 1000;

/// How many matching blocks are fetched at once.
const CONCURRENT_FETCHES: usize = 4;

/// Geth's limit on topic positions.
const MAX_TOPICS: usize = 4;

/// The address and topic part of a filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Any of these emitters; empty = any address.
    pub addresses: Vec<Address>,
    /// Per topic position, any of these values; `None` = any value (a wildcard).
    pub topics: Vec<Option<Vec<B256>>>,
}

impl LogFilter {
    /// Whether a block with this bloom may hold a matching log. `false` is a proof that it
    /// holds none (a bloom has no false negatives).
    pub fn may_match(&self, bloom: &Bloom) -> bool {
        let has = |item: &[u8]| bloom.contains_input(BloomInput::Raw(item));
        (self.addresses.is_empty() || self.addresses.iter().any(|a| has(a.as_slice())))
            && self.topics.iter().flatten().all(|set| set.iter().any(|t| has(t.as_slice())))
    }

    /// Whether `log` matches (geth's rule: a filter with more topic positions than the log
    /// has topics does not match it, even if the extra positions are wildcards).
    pub fn matches(&self, log: &Log) -> bool {
        if !self.addresses.is_empty() && !self.addresses.contains(&log.address) {
            return false;
        }
        let topics = log.topics();
        if self.topics.len() > topics.len() {
            return false;
        }
        self.topics
            .iter()
            .zip(topics)
            .all(|(wanted, topic)| wanted.as_ref().is_none_or(|set| set.contains(topic)))
    }
}

/// Which blocks a filter covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockRange {
    /// `fromBlock` to `toBlock` (both default `latest`).
    Numbers {
        /// First block.
        from: BlockTag,
        /// Last block.
        to: BlockTag,
    },
    /// EIP-234: exactly the block with this hash.
    Hash(B256),
}

/// A whole filter object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterCriteria {
    /// The blocks.
    pub range: BlockRange,
    /// The logs within them.
    pub filter: LogFilter,
}

fn bad(why: impl std::fmt::Display) -> RpcError {
    RpcError::invalid_params(format!("invalid filter: {why}"))
}

/// Parses the `address` and `topics` members of a filter object.
pub fn parse_log_filter(object: &Map<String, Value>) -> Result<LogFilter, RpcError> {
    let addresses = match object.get("address") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, a)| params::address(a, &format!("filter.address[{i}]")))
            .collect::<Result<_, _>>()?,
        Some(one) => vec![params::address(one, "filter.address")?],
    };
    let topics = match object.get("topics") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(positions)) => {
            if positions.len() > MAX_TOPICS {
                return Err(bad(format!(
                    "{} topic positions, at most {MAX_TOPICS}",
                    positions.len()
                )));
            }
            positions
                .iter()
                .enumerate()
                .map(|(i, position)| topic_position(position, i))
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err(bad("topics must be an array")),
    };
    Ok(LogFilter { addresses, topics })
}

/// One topic position: `null` (any), a hash, or an array of hashes (any of them; an empty
/// array or one containing `null` is any, as in geth).
fn topic_position(value: &Value, index: usize) -> Result<Option<Vec<B256>>, RpcError> {
    let name = format!("filter.topics[{index}]");
    match value {
        Value::Null => Ok(None),
        Value::Array(options) => {
            let mut set = Vec::with_capacity(options.len());
            for (j, option) in options.iter().enumerate() {
                if option.is_null() {
                    return Ok(None);
                }
                set.push(params::hash(option, &format!("{name}[{j}]"))?);
            }
            Ok((!set.is_empty()).then_some(set))
        }
        one => Ok(Some(vec![params::hash(one, &name)?])),
    }
}

/// Parses a filter object `{fromBlock?, toBlock?, blockHash?, address?, topics?}`; other keys
/// are refused (strict parsing, like every parameter here).
pub fn parse_criteria(value: &Value) -> Result<FilterCriteria, RpcError> {
    let Value::Object(object) = value else {
        return Err(bad("expected an object {fromBlock, toBlock, blockHash, address, topics}"));
    };
    if let Some(key) = object.keys().find(|key| {
        !matches!(key.as_str(), "fromBlock" | "toBlock" | "blockHash" | "address" | "topics")
    }) {
        return Err(bad(format!("unknown key {key:?}")));
    }
    let tag = |key: &str| -> Result<Option<BlockTag>, RpcError> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => params::block_tag(value, &format!("filter.{key}")).map(Some),
        }
    };
    let (from, to) = (tag("fromBlock")?, tag("toBlock")?);
    let range = match object.get("blockHash").filter(|v| !v.is_null()) {
        Some(hash) if from.is_none() && to.is_none() => {
            BlockRange::Hash(params::hash(hash, "filter.blockHash")?)
        }
        Some(_) => return Err(bad("give blockHash or fromBlock/toBlock, not both")),
        None => BlockRange::Numbers {
            from: from.unwrap_or(BlockTag::Latest),
            to: to.unwrap_or(BlockTag::Latest),
        },
    };
    Ok(FilterCriteria { range, filter: parse_log_filter(object)? })
}

/// A block tag as a number, given the head.
pub fn tag_number(tag: BlockTag, head: u64) -> u64 {
    match tag {
        BlockTag::Latest => head,
        BlockTag::Earliest => 0,
        BlockTag::Number(n) => n,
    }
}

/// The blocks `from..=to` names under `head`: `fromBlock > toBlock` is -32602 (geth's
/// "invalid block range params"), `toBlock` above the head clamps to it (as geth), a range
/// wholly above the head is empty (`None`), more than [`MAX_LOG_RANGE`] blocks is -32005.
pub fn resolve_range(
    from: BlockTag,
    to: BlockTag,
    head: u64,
) -> Result<Option<(u64, u64)>, RpcError> {
    let (from, to) = (tag_number(from, head), tag_number(to, head));
    if from > to {
        return Err(RpcError::invalid_params(format!(
            "invalid block range params: fromBlock {from} is after toBlock {to}"
        )));
    }
    let to = to.min(head);
    if from > to {
        return Ok(None);
    }
    check_span(from, to)?;
    Ok(Some((from, to)))
}

/// -32005 if `from..=to` spans more than [`MAX_LOG_RANGE`] blocks.
pub fn check_span(from: u64, to: u64) -> Result<(), RpcError> {
    let span = to - from + 1;
    if span > MAX_LOG_RANGE {
        return Err(RpcError::new(
            codes::LIMIT_EXCEEDED,
            format!(
                "limit exceeded: blocks {from} to {to} are {span} blocks, at most \
                 {MAX_LOG_RANGE} per query (each block the bloom cannot exclude is fetched and \
                 verified); split the range"
            ),
        ));
    }
    Ok(())
}

/// `eth_getLogs [filter]`.
pub fn get_logs<C: Chain>(chain: Rc<C>, p: &Params) -> Result<RpcFuture, RpcError> {
    p.arity(1, 1)?;
    let criteria = parse_criteria(p.required(0, "filter")?)?;
    Ok(async move { criteria_logs(&*chain, &criteria).await.map(Value::Array) }.boxed_local())
}

/// The logs a whole filter matches, in block order.
pub async fn criteria_logs<C: Chain>(
    chain: &C,
    criteria: &FilterCriteria,
) -> Result<Vec<Value>, RpcError> {
    match criteria.range {
        BlockRange::Hash(hash) => {
            let header = chain
                .header_by_hash(hash)
                .await?
                .ok_or_else(|| RpcError::new(codes::INVALID_INPUT, "unknown block"))?;
            if !criteria.filter.may_match(&header.header().logs_bloom) {
                return Ok(Vec::new());
            }
            block_logs(chain, &header, &criteria.filter).await
        }
        BlockRange::Numbers { from, to } => {
            let head = chain.head().await?.header.number();
            match resolve_range(from, to, head)? {
                None => Ok(Vec::new()),
                Some((from, to)) => range_logs(chain, from, to, &criteria.filter).await,
            }
        }
    }
}

/// The matching logs of the canonical blocks `from..=to` (at or below the head).
pub async fn range_logs<C: Chain>(
    chain: &C,
    from: u64,
    to: u64,
    filter: &LogFilter,
) -> Result<Vec<Value>, RpcError> {
    check_span(from, to)?;
    // Headers from the top down: the core verifies them by the parent-hash chain from the
    // head, so the first one fetched brings the rest of the window with it.
    let mut candidates = Vec::new();
    for number in (from..=to).rev() {
        let header = chain.header_by_number(number).await?.ok_or_else(|| {
            RpcError::new(codes::INVALID_INPUT, format!("block {number} is above the head"))
        })?;
        if filter.may_match(&header.header().logs_bloom) {
            candidates.push(header);
        }
    }
    candidates.reverse();
    let per_block: Vec<Vec<Value>> = futures_util::stream::iter(candidates)
        .map(|header| async move { block_logs(chain, &header, filter).await })
        .buffered(CONCURRENT_FETCHES)
        .try_collect()
        .await?;
    Ok(per_block.into_iter().flatten().collect())
}

/// The matching logs of one block, from its verified receipts and body.
pub async fn block_logs<C: Chain>(
    chain: &C,
    header: &SealedHeader,
    filter: &LogFilter,
) -> Result<Vec<Value>, RpcError> {
    let (body, receipts) =
        futures_util::future::try_join(chain.body(header), chain.receipts(header)).await?;
    matching_logs(header, &body, &receipts, filter)
}

/// Filters and encodes a block's logs. `logIndex` counts every log of the block, matching
/// or not; a receipt count other than the transaction count is an internal error (the core
/// verified both, so they cannot disagree unless it broke its contract).
pub fn matching_logs(
    header: &SealedHeader,
    body: &VerifiedBody,
    receipts: &BlockReceipts,
    filter: &LogFilter,
) -> Result<Vec<Value>, RpcError> {
    let transactions = body.body.transactions();
    let receipts = receipts.receipts();
    if receipts.len() != transactions.len() {
        return Err(internal(encode::EncodeError::ReceiptCount {
            block: header.hash(),
            receipts: receipts.len(),
            transactions: transactions.len(),
        }));
    }
    let mut out = Vec::new();
    let mut log_index = 0u64;
    for (index, (receipt, tx)) in receipts.iter().zip(transactions).enumerate() {
        let ctx = TxContext::new(header, index as u64);
        for log in receipt.logs() {
            if filter.matches(log) {
                out.push(encode::log_object(log, &ctx, *tx.tx_hash(), log_index));
            }
            log_index += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Bytes, LogData};
    use serde_json::json;

    fn log(address: Address, topics: &[B256]) -> Log {
        Log { address, data: LogData::new_unchecked(topics.to_vec(), Bytes::new()) }
    }

    fn filter(value: Value) -> LogFilter {
        parse_criteria(&value).expect("filter parses").filter
    }

    const A: Address = Address::repeat_byte(0xaa);
    const B: Address = Address::repeat_byte(0xbb);
    const T1: B256 = B256::repeat_byte(1);
    const T2: B256 = B256::repeat_byte(2);
    const T3: B256 = B256::repeat_byte(3);

    #[test]
    fn bloom_excludes_only_what_cannot_match() {
        let mut bloom = Bloom::default();
        bloom.accrue_log(&log(A, &[T1, T2]));
        let yes = [
            json!({}),
            json!({"address": A}),
            json!({"address": [B, A]}),
            json!({"topics": [T1]}),
            json!({"topics": [null, T2]}),
            json!({"topics": [[T3, T1], [T2]]}),
            json!({"address": A, "topics": [T1, [T2, T3]]}),
        ];
        for value in yes {
            assert!(filter(value.clone()).may_match(&bloom), "{value}");
        }
        let no = [
            json!({"address": B}),
            json!({"topics": [T3]}),
            json!({"topics": [T1, T3]}),
            json!({"address": [B], "topics": [T1]}),
        ];
        for value in no {
            assert!(!filter(value.clone()).may_match(&bloom), "{value}");
        }
        // An empty bloom excludes any filter that names something, and nothing else.
        assert!(!filter(json!({"address": A})).may_match(&Bloom::default()));
        assert!(filter(json!({"topics": [null]})).may_match(&Bloom::default()));
    }

    #[test]
    fn topic_filters_follow_geth() {
        let l = log(A, &[T1, T2]);
        let cases = [
            (json!({}), true),
            (json!({"topics": []}), true),
            (json!({"topics": [T1]}), true),
            (json!({"topics": [T2]}), false),
            (json!({"topics": [null, T2]}), true),
            (json!({"topics": [[T3, T1], [T2, T3]]}), true),
            (json!({"topics": [[T3], null]}), false),
            (json!({"topics": [[], T2]}), true),
            (json!({"topics": [[T3, null], T2]}), true),
            // More positions than the log has topics: no match, even with a wildcard.
            (json!({"topics": [T1, T2, null]}), false),
            (json!({"address": [B, A], "topics": [T1]}), true),
            (json!({"address": B}), false),
        ];
        for (value, expected) in cases {
            assert_eq!(filter(value.clone()).matches(&l), expected, "{value}");
        }
    }

    #[test]
    fn filter_objects_are_parsed_strictly() {
        let h = format!("0x{}", "ab".repeat(32));
        assert_eq!(
            parse_criteria(&json!({"blockHash": h})).unwrap().range,
            BlockRange::Hash(B256::repeat_byte(0xab))
        );
        assert_eq!(
            parse_criteria(&json!({"fromBlock": "0x1"})).unwrap().range,
            BlockRange::Numbers { from: BlockTag::Number(1), to: BlockTag::Latest }
        );
        for bad in [
            json!({"blockHash": h, "fromBlock": "0x1"}),
            json!({"address": "0x12"}),
            json!({"topics": "0x12"}),
            json!({"topics": [T1, T1, T1, T1, T1]}),
            json!({"topics": [["0x12"]]}),
            json!({"fromBlock": "0x01"}),
            json!({"limit": 5}),
            json!([]),
        ] {
            let error = parse_criteria(&bad).expect_err(&bad.to_string());
            assert_eq!(error.code, codes::INVALID_PARAMS, "{bad}");
        }
    }

    #[test]
    fn ranges_clamp_to_the_head_and_are_bounded() {
        use BlockTag::{Earliest, Latest, Number};
        assert_eq!(resolve_range(Latest, Latest, 50).unwrap(), Some((50, 50)));
        assert_eq!(resolve_range(Number(10), Number(900), 50).unwrap(), Some((10, 50)));
        assert_eq!(resolve_range(Earliest, Latest, 999).unwrap(), Some((0, 999)));
        assert_eq!(resolve_range(Number(60), Number(70), 50).unwrap(), None);
        assert_eq!(resolve_range(Latest, Number(10), 50).unwrap_err().code, codes::INVALID_PARAMS);
        assert_eq!(
            resolve_range(Number(5), Number(4), 50).unwrap_err().message,
            "invalid block range params: fromBlock 5 is after toBlock 4"
        );
        let error = resolve_range(Earliest, Latest, 1000).unwrap_err();
        assert_eq!(error.code, codes::LIMIT_EXCEEDED);
        assert!(error.message.contains("at most 1000"), "{}", error.message);
    }
}
