//! Polled filters (`eth_newFilter`, `eth_newBlockFilter`, `eth_getFilterChanges`,
//! `eth_getFilterLogs`, `eth_uninstallFilter`) and `eth_subscribe ["logs"]` subscriptions,
//! with `removed: true` for the logs of blocks a reorg undid.
//!
//! Polled filters remember the next block number to report; a poll answers from the
//! verified blocks between it and the head (logs through [`super::logs::range_logs`], so
//! complete by construction). A filter expires when it has not been polled for
//! [`FILTER_TIMEOUT_SECS`] (geth's 5 minutes). The provider has no clock of its own, so
//! time is the accepted head's timestamp: on a stalled chain filters live on.
//!
//! Log subscriptions are fed by [`super::Provider::handle_event`] (which only records the
//! newest head) and [`process`] (which the embedding layer runs after each event: it fetches
//! and verifies the receipts of the new blocks and sends the notices). Each subscription
//! keeps the hashes and logs of the last [`REORG_MEMORY`] blocks it delivered; a new head
//! whose ancestry leaves that chain undoes the blocks above the fork point: their logs are
//! re-sent with `removed: true` (newest first) before the new blocks' logs (oldest first).

use super::error::{RpcError, codes};
use super::logs::{self, FilterCriteria, LogFilter};
use super::params::{BlockTag, Params};
use super::{Provider, ProviderNotice, RpcFuture};
use crate::chain::{Chain, VerifiedBody};
use alloy_primitives::B256;
use futures_util::FutureExt;
use futures_util::future::{LocalBoxFuture, ready};
use les::chain::{BlockReceipts, SealedHeader};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// A polled filter not polled for this long (by the head's clock) is removed, as in geth.
pub const FILTER_TIMEOUT_SECS: u64 = 300;
/// How many delivered blocks a log subscription remembers to undo in a reorg.
pub const REORG_MEMORY: usize = 64;

/// Filter and log-subscription state of one provider.
#[derive(Default)]
pub(super) struct FilterState {
    next_id: Cell<u64>,
    polled: RefCell<HashMap<String, Polled>>,
    /// Live log subscriptions, in creation order.
    subscriptions: RefCell<Vec<(String, LogSubscription)>>,
    /// The newest head not yet processed for the log subscriptions (older unprocessed ones
    /// need no record: [`process`] walks back from the newest to what each subscription
    /// delivered).
    pending_head: RefCell<Option<SealedHeader>>,
    busy: Cell<bool>,
}

struct Polled {
    kind: PolledKind,
    /// The head's timestamp at the last poll (or creation).
    last_poll: u64,
}

enum PolledKind {
    Logs { criteria: FilterCriteria, next: u64 },
    Blocks { next: u64 },
}

/// One delivered block of a log subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// Block hash.
    pub hash: B256,
    /// Block number.
    pub number: u64,
    /// The logs sent for it (`removed: false`).
    pub logs: Vec<Value>,
}

struct LogSubscription {
    filter: LogFilter,
    recent: VecDeque<Delivered>,
}

fn not_found() -> RpcError {
    RpcError::new(codes::INVALID_INPUT, "filter not found")
}

fn filter_id(p: &Params) -> Result<String, RpcError> {
    p.arity(1, 1)?;
    let id = p.required(0, "filter id")?;
    // IDs are compared case-insensitively (some libraries change the case of hex).
    id.as_str()
        .map(str::to_lowercase)
        .ok_or_else(|| RpcError::invalid_params("invalid filter id: expected a hex string"))
}

impl FilterState {
    fn new_id(&self) -> String {
        let n = self.next_id.get() + 1;
        self.next_id.set(n);
        format!("0x{n:032x}")
    }

    /// Drops polled filters idle for longer than [`FILTER_TIMEOUT_SECS`] at time `now`.
    fn expire(&self, now: u64) {
        self.polled
            .borrow_mut()
            .retain(|_, filter| now.saturating_sub(filter.last_poll) <= FILTER_TIMEOUT_SECS);
    }

    /// Records a new head for the log subscriptions and expires idle filters.
    pub(super) fn on_new_head(&self, header: &SealedHeader) {
        self.expire(header.header().timestamp);
        if !self.subscriptions.borrow().is_empty() {
            *self.pending_head.borrow_mut() = Some(header.clone());
        }
    }

    /// Adds a log subscription under `id`; `options` is `{address?, topics?}` (a range makes
    /// no sense for a stream of new blocks and is refused).
    pub(super) fn subscribe_logs(
        &self,
        id: String,
        options: Option<&Value>,
    ) -> Result<(), RpcError> {
        let filter = match options {
            None => LogFilter::default(),
            Some(Value::Object(object)) => {
                if let Some(key) =
                    object.keys().find(|key| !matches!(key.as_str(), "address" | "topics"))
                {
                    return Err(RpcError::invalid_params(format!(
                        "invalid logs subscription: unknown key {key:?} (only address and topics)"
                    )));
                }
                logs::parse_log_filter(object)?
            }
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "invalid logs subscription: expected an object {address, topics}",
                ));
            }
        };
        self.subscriptions
            .borrow_mut()
            .push((id, LogSubscription { filter, recent: VecDeque::new() }));
        Ok(())
    }

    /// Removes a log subscription; whether it existed.
    pub(super) fn unsubscribe_logs(&self, id: &str) -> bool {
        let mut subscriptions = self.subscriptions.borrow_mut();
        let before = subscriptions.len();
        subscriptions.retain(|(live, _)| live != id);
        subscriptions.len() != before
    }
}

/// The time filters are aged by: the accepted head's timestamp.
fn clock<C: Chain>(chain: &C) -> u64 {
    chain.current_head().map_or(0, |head| head.header.header().timestamp)
}

/// `eth_newFilter [filter]`: reports logs of blocks accepted after now (within the filter's
/// `fromBlock`/`toBlock`, if numbers). A `blockHash` filter is refused: it never changes
/// (use `eth_getLogs`).
pub fn new_filter<C: Chain>(provider: &Provider<C>, p: &Params) -> Result<RpcFuture, RpcError> {
    p.arity(1, 1)?;
    let criteria = logs::parse_criteria(p.required(0, "filter")?)?;
    if matches!(criteria.range, logs::BlockRange::Hash(_)) {
        return Err(RpcError::invalid_params(
            "invalid filter: a blockHash filter never changes; use eth_getLogs",
        ));
    }
    let (chain, state) = (provider.chain.clone(), provider.state.clone());
    Ok(async move {
        let head = chain.head().await?.header;
        let filters = &state.filters;
        let id = filters.new_id();
        filters.expire(head.header().timestamp);
        let kind = PolledKind::Logs { criteria, next: head.number() + 1 };
        filters
            .polled
            .borrow_mut()
            .insert(id.clone(), Polled { kind, last_poll: head.header().timestamp });
        Ok(Value::String(id))
    }
    .boxed_local())
}

/// `eth_newBlockFilter []`: reports the hashes of blocks accepted after now.
pub fn new_block_filter<C: Chain>(
    provider: &Provider<C>,
    p: &Params,
) -> Result<RpcFuture, RpcError> {
    p.arity(0, 0)?;
    let (chain, state) = (provider.chain.clone(), provider.state.clone());
    Ok(async move {
        let head = chain.head().await?.header;
        let filters = &state.filters;
        let id = filters.new_id();
        filters.expire(head.header().timestamp);
        let kind = PolledKind::Blocks { next: head.number() + 1 };
        filters
            .polled
            .borrow_mut()
            .insert(id.clone(), Polled { kind, last_poll: head.header().timestamp });
        Ok(Value::String(id))
    }
    .boxed_local())
}

/// `eth_newPendingTransactionFilter`: refused (-32004). The client sees verified blocks,
/// not the servers' transaction pools; an always-empty filter would claim there are none.
pub fn new_pending_transaction_filter(p: &Params) -> Result<RpcFuture, RpcError> {
    p.arity(0, 0)?;
    Err(RpcError::new(
        codes::METHOD_NOT_SUPPORTED,
        "eth_newPendingTransactionFilter is not supported: a light client does not see \
         pending transactions",
    ))
}

/// `eth_uninstallFilter [id]`: whether the filter existed.
pub fn uninstall<C: Chain>(provider: &Provider<C>, p: &Params) -> Result<RpcFuture, RpcError> {
    let id = filter_id(p)?;
    let removed = provider.state.filters.polled.borrow_mut().remove(&id).is_some();
    Ok(ready(Ok(Value::Bool(removed))).boxed_local())
}

/// `eth_getFilterLogs [id]`: every log the filter's criteria match now (as `eth_getLogs`).
pub fn filter_logs<C: Chain>(provider: &Provider<C>, p: &Params) -> Result<RpcFuture, RpcError> {
    let id = filter_id(p)?;
    let filters = &provider.state.filters;
    filters.expire(clock(&*provider.chain));
    let criteria = {
        let mut polled = filters.polled.borrow_mut();
        let filter = polled.get_mut(&id).ok_or_else(not_found)?;
        filter.last_poll = clock(&*provider.chain);
        match &filter.kind {
            PolledKind::Logs { criteria, .. } => criteria.clone(),
            PolledKind::Blocks { .. } => return Err(not_found()),
        }
    };
    let chain = provider.chain.clone();
    Ok(async move { logs::criteria_logs(&*chain, &criteria).await.map(Value::Array) }.boxed_local())
}

/// `eth_getFilterChanges [id]`: what happened since the last poll: new logs, or new block
/// hashes (at most [`logs::MAX_LOG_RANGE`] of them, the newest).
pub fn filter_changes<C: Chain>(provider: &Provider<C>, p: &Params) -> Result<RpcFuture, RpcError> {
    let id = filter_id(p)?;
    let filters = &provider.state.filters;
    filters.expire(clock(&*provider.chain));
    if let Some(filter) = filters.polled.borrow_mut().get_mut(&id) {
        filter.last_poll = clock(&*provider.chain);
    } else {
        return Err(not_found());
    }
    let (chain, state) = (provider.chain.clone(), provider.state.clone());
    Ok(async move {
        let head = chain.head().await?.header.number();
        // Claim the blocks up to the head before fetching, so a concurrent poll does not
        // report them twice; give them back if the fetch fails.
        let claimed = {
            let mut polled = state.filters.polled.borrow_mut();
            let filter = polled.get_mut(&id).ok_or_else(not_found)?;
            match &mut filter.kind {
                PolledKind::Logs { criteria, next } => {
                    let start = *next;
                    *next = head.max(start.saturating_sub(1)) + 1;
                    (start, Some(criteria.clone()))
                }
                PolledKind::Blocks { next } => {
                    let start = *next;
                    *next = head.max(start.saturating_sub(1)) + 1;
                    (start, None)
                }
            }
        };
        let (start, criteria) = claimed;
        let result = match &criteria {
            Some(criteria) => changed_logs(&*chain, criteria, start, head).await,
            None => new_block_hashes(&*chain, start, head).await,
        };
        if result.is_err() {
            let mut polled = state.filters.polled.borrow_mut();
            if let Some(Polled {
                kind: PolledKind::Logs { next, .. } | PolledKind::Blocks { next },
                ..
            }) = polled.get_mut(&id)
            {
                *next = (*next).min(start);
            }
        }
        result.map(Value::Array)
    }
    .boxed_local())
}

/// The logs of blocks `start..=head` within the filter's own numeric bounds.
async fn changed_logs<C: Chain>(
    chain: &C,
    criteria: &FilterCriteria,
    start: u64,
    head: u64,
) -> Result<Vec<Value>, RpcError> {
    let logs::BlockRange::Numbers { from, to } = criteria.range else {
        return Ok(Vec::new());
    };
    // For a polled filter `latest` means no bound (geth).
    let from = match from {
        BlockTag::Number(n) => start.max(n),
        BlockTag::Latest | BlockTag::Earliest => start,
    };
    let to = match to {
        BlockTag::Number(n) => head.min(n),
        BlockTag::Latest | BlockTag::Earliest => head,
    };
    if from > to {
        return Ok(Vec::new());
    }
    logs::range_logs(chain, from, to, &criteria.filter).await
}

/// The hashes of blocks `start..=head`, oldest first, at most the newest
/// [`logs::MAX_LOG_RANGE`].
async fn new_block_hashes<C: Chain>(
    chain: &C,
    start: u64,
    head: u64,
) -> Result<Vec<Value>, RpcError> {
    let start = start.max((head + 1).saturating_sub(logs::MAX_LOG_RANGE));
    let mut hashes = Vec::new();
    for number in (start..=head).rev() {
        if let Some(header) = chain.header_by_number(number).await? {
            hashes.push(super::encode::data(header.hash()));
        }
    }
    hashes.reverse();
    Ok(hashes)
}

/// Resets the busy flag however [`process`] ends (also if its future is dropped).
struct Busy<'a>(&'a Cell<bool>);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// What a new head means for one subscription: the delivered blocks it undoes (newest
/// first) and the new blocks to deliver (oldest first), given `known` (what was delivered,
/// oldest first) and `segment` (the new head and its ancestors, newest first, walked back
/// until a parent is in `known` or the walk gave up).
pub fn reorg_plan(
    known: &[Delivered],
    segment: &[SealedHeader],
) -> (Vec<Delivered>, Vec<SealedHeader>) {
    let Some(oldest_new) = segment.last() else { return (Vec::new(), Vec::new()) };
    let removed = known.iter().rev().filter(|d| d.number >= oldest_new.number()).cloned().collect();
    (removed, segment.iter().rev().cloned().collect())
}

/// Block data fetched during one [`process`] run, shared by the subscriptions.
#[derive(Default)]
struct Fetched {
    headers: HashMap<B256, SealedHeader>,
    blocks: HashMap<B256, Rc<(VerifiedBody, BlockReceipts)>>,
}

/// Walks back from `head` to a block `known` holds (at most [`REORG_MEMORY`] blocks, and
/// not below the oldest known block). Newest first. A header that cannot be had is an error:
/// the head is then left for the next one, whose walk covers it.
async fn segment<C: Chain>(
    chain: &C,
    fetched: &mut Fetched,
    known: &[Delivered],
    head: &SealedHeader,
) -> Result<Vec<SealedHeader>, RpcError> {
    let mut segment = vec![head.clone()];
    let Some(lowest) = known.first().map(|d| d.number) else { return Ok(segment) };
    loop {
        let cursor = &segment[segment.len() - 1];
        let parent = cursor.parent_hash();
        if known.iter().any(|d| d.hash == parent)
            || segment.len() >= REORG_MEMORY
            || cursor.number() <= lowest
        {
            return Ok(segment);
        }
        let header = match fetched.headers.get(&parent) {
            Some(header) => header.clone(),
            None => {
                let header = chain.header_by_hash(parent).await?.ok_or_else(|| {
                    RpcError::new(codes::RESOURCE_UNAVAILABLE, format!("parent {parent} unknown"))
                })?;
                fetched.headers.insert(parent, header.clone());
                header
            }
        };
        segment.push(header);
    }
}

/// Runs the log subscriptions' work for the newest head [`Provider::handle_event`] recorded:
/// for each subscription, the logs of the blocks up to it (receipts verified against
/// `receiptsRoot`), after the `removed: true` logs of the blocks a reorg undid. Returns at
/// once if another run is under way (that run picks the new head up).
pub fn process<C: Chain>(provider: Provider<C>) -> LocalBoxFuture<'static, ()> {
    if provider.state.filters.busy.replace(true) {
        return ready(()).boxed_local();
    }
    async move {
        let state = provider.state.clone();
        let _busy = Busy(&state.filters.busy);
        loop {
            let Some(head) = state.filters.pending_head.borrow_mut().take() else { break };
            let mut fetched = Fetched::default();
            let ids: Vec<String> =
                state.filters.subscriptions.borrow().iter().map(|(id, _)| id.clone()).collect();
            for id in ids {
                let notices = process_one(&provider, &mut fetched, &id, &head).await;
                provider.notify(notices);
            }
        }
    }
    .boxed_local()
}

/// One subscription's notices for `head`; records what it delivered.
async fn process_one<C: Chain>(
    provider: &Provider<C>,
    fetched: &mut Fetched,
    id: &str,
    head: &SealedHeader,
) -> Vec<ProviderNotice> {
    let chain = &*provider.chain;
    let subscriptions = &provider.state.filters.subscriptions;
    let snapshot = subscriptions
        .borrow()
        .iter()
        .find(|(live, _)| live == id)
        .map(|(_, sub)| (sub.filter.clone(), sub.recent.iter().cloned().collect::<Vec<_>>()));
    let Some((filter, known)) = snapshot else { return Vec::new() };
    if let Some(position) = known.iter().position(|d| d.hash == head.hash()) {
        // Already delivered: the same head again, or a reorg back to one of its ancestors,
        // which undoes the blocks delivered above it.
        let undone = &known[position + 1..];
        let notices = undone.iter().rev().flat_map(|block| removed_notices(id, block)).collect();
        if let Some((_, sub)) = subscriptions.borrow_mut().iter_mut().find(|(live, _)| live == id) {
            sub.recent.retain(|d| d.number <= head.number());
        }
        return notices;
    }
    let Ok(segment) = segment(chain, fetched, &known, head).await else { return Vec::new() };
    let (removed, new_blocks) = reorg_plan(&known, &segment);
    let mut delivered = Vec::new();
    for header in new_blocks {
        let logs = if filter.may_match(&header.header().logs_bloom) {
            let data = match fetched.blocks.get(&header.hash()) {
                Some(data) => data.clone(),
                None => {
                    let both = futures_util::future::try_join(
                        chain.body(&header),
                        chain.receipts(&header),
                    )
                    .await;
                    // Not fetched: stop here; the next head's walk comes back for it.
                    let Ok(both) = both else { break };
                    let data = Rc::new(both);
                    fetched.blocks.insert(header.hash(), data.clone());
                    data
                }
            };
            match logs::matching_logs(&header, &data.0, &data.1, &filter) {
                Ok(logs) => logs,
                Err(_) => break,
            }
        } else {
            Vec::new()
        };
        delivered.push(Delivered { hash: header.hash(), number: header.number(), logs });
    }
    if delivered.is_empty() && !removed.is_empty() {
        // Nothing new could be had: keep the old blocks rather than announce an undo
        // without its replacement; the next head retries.
        return Vec::new();
    }
    let mut notices = Vec::new();
    for block in &removed {
        notices.extend(removed_notices(id, block));
    }
    for block in &delivered {
        notices.extend(block.logs.iter().map(|log| message(id, log.clone())));
    }
    let mut subscriptions = subscriptions.borrow_mut();
    let Some((_, sub)) = subscriptions.iter_mut().find(|(live, _)| live == id) else {
        return Vec::new(); // unsubscribed meanwhile
    };
    if let Some(first) = delivered.first() {
        sub.recent.retain(|d| d.number < first.number);
    }
    sub.recent.extend(delivered);
    while sub.recent.len() > REORG_MEMORY {
        sub.recent.pop_front();
    }
    notices
}

/// The logs of an undone block with `removed: true`, last log first.
fn removed_notices(id: &str, block: &Delivered) -> Vec<ProviderNotice> {
    block
        .logs
        .iter()
        .rev()
        .map(|log| {
            let mut log = log.clone();
            if let Value::Object(map) = &mut log {
                map.insert("removed".into(), Value::Bool(true));
            }
            message(id, log)
        })
        .collect()
}

fn message(id: &str, result: Value) -> ProviderNotice {
    ProviderNotice::Message { subscription: id.to_owned(), result }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::Header;
    use serde_json::json;

    /// A chain of headers `from..=to` forking off `parent`, marked by `extra`.
    fn chain_from(parent: B256, from: u64, to: u64, extra: u8) -> Vec<SealedHeader> {
        let mut parent = parent;
        (from..=to)
            .map(|number| {
                let header = SealedHeader::seal(Header {
                    parent_hash: parent,
                    number,
                    extra_data: vec![extra].into(),
                    ..Default::default()
                });
                parent = header.hash();
                header
            })
            .collect()
    }

    fn delivered(headers: &[SealedHeader]) -> Vec<Delivered> {
        headers
            .iter()
            .map(|h| Delivered {
                hash: h.hash(),
                number: h.number(),
                logs: vec![json!({"blockNumber": h.number(), "removed": false})],
            })
            .collect()
    }

    #[test]
    fn an_extension_removes_nothing() {
        let old = chain_from(B256::ZERO, 1, 5, 0);
        let next = chain_from(old[4].hash(), 6, 7, 0);
        let segment: Vec<SealedHeader> = next.iter().rev().cloned().collect();
        let (removed, new) = reorg_plan(&delivered(&old), &segment);
        assert!(removed.is_empty());
        assert_eq!(new.iter().map(|h| h.number()).collect::<Vec<_>>(), vec![6, 7]);
    }

    #[test]
    fn a_reorg_undoes_the_blocks_above_the_fork_newest_first() {
        let old = chain_from(B256::ZERO, 1, 5, 0);
        // A fork off block 3: new 4', 5', 6'.
        let fork = chain_from(old[2].hash(), 4, 6, 1);
        let segment: Vec<SealedHeader> = fork.iter().rev().cloned().collect();
        let (removed, new) = reorg_plan(&delivered(&old), &segment);
        assert_eq!(removed.iter().map(|d| d.number).collect::<Vec<_>>(), vec![5, 4]);
        assert_eq!(removed[0].hash, old[4].hash());
        assert_eq!(
            new.iter().map(|h| h.hash()).collect::<Vec<_>>(),
            vec![fork[0].hash(), fork[1].hash(), fork[2].hash()]
        );
        // A shorter replacement: a new 5' off 4 undoes only 5.
        let short = chain_from(old[3].hash(), 5, 5, 2);
        let (removed, new) = reorg_plan(&delivered(&old), &short);
        assert_eq!(removed.iter().map(|d| d.number).collect::<Vec<_>>(), vec![5]);
        assert_eq!(new.len(), 1);
    }

    #[test]
    fn subscription_options_take_only_address_and_topics() {
        let state = FilterState::default();
        assert!(state.subscribe_logs("0x1".into(), None).is_ok());
        assert!(
            state
                .subscribe_logs(
                    "0x2".into(),
                    Some(&json!({
                        "address": "0x00000000000000000000000000000000000000aa",
                        "topics": [null]
                    }))
                )
                .is_ok()
        );
        let error = state
            .subscribe_logs("0x3".into(), Some(&json!({"fromBlock": "0x1"})))
            .expect_err("range refused");
        assert_eq!(error.code, codes::INVALID_PARAMS);
        assert!(state.unsubscribe_logs("0x1"));
        assert!(!state.unsubscribe_logs("0x1"));
    }

    #[test]
    fn idle_filters_expire_after_five_minutes() {
        let state = FilterState::default();
        let kind = PolledKind::Blocks { next: 1 };
        state.polled.borrow_mut().insert("0xa".into(), Polled { kind, last_poll: 1000 });
        state.expire(1000 + FILTER_TIMEOUT_SECS);
        assert!(state.polled.borrow().contains_key("0xa"));
        state.expire(1001 + FILTER_TIMEOUT_SECS);
        assert!(state.polled.borrow().is_empty());
    }
}
