//! Following the upstream's chain head: poll the latest block (`eth_getBlockByNumber
//! latest`, rather than `eth_blockNumber`, so a reorg at the same height is seen and the
//! node's total difficulty comes with it), fetch the new headers (each
//! one rebuilt and hash-checked by [`Upstream`]), detect reorgs by walking back to the
//! common ancestor, keep a window of the recent canonical chain for fast by-number serving,
//! and sign each new head once for every client session to share.
//!
//! Reorg depth follows docs/post-merge-rule.md: a new head replacing the blocks above the
//! common ancestor `a` of the previous head `last` is announced with
//! `depth = last.number - a.number`, and a head that falls back to (or below) the previous
//! height is announced with at least `last.number - new.number + 1`, so the client discards
//! the votes it can no longer trust.
//!
//! A client may miss intermediate heads (it only ever sees the latest [`HeadUpdate`]), so
//! each update also carries the recent reorg history; [`HeadUpdate::reorg_depth_since`]
//! gives the depth that is right for a client whose last announced head was an older one.

use crate::metrics::Metrics;
use crate::upstream::{Head, Upstream, UpstreamError};
use alloy_primitives::{B256, U256};
use les::announce::{AnnouncedHead, SignedAnnouncement};
use les::chain::SealedHeader;
use les::crypto::NodeKey;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// How many recent canonical headers the window keeps (geth's light clients rarely ask
/// deeper than this, and a reorg deeper than this is treated as a reset).
pub const CANONICAL_WINDOW: u64 = 1024;

/// How many recent reorgs a [`HeadUpdate`] remembers for clients that missed updates.
const REORG_HISTORY: usize = 64;

/// A new head as every session announces it.
#[derive(Debug, Clone)]
pub struct HeadUpdate {
    /// Position of this update among all published ones (1, 2, ...).
    pub seq: u64,
    /// The new head's header.
    pub header: SealedHeader,
    /// The head signed once with the server's node key.
    pub announcement: SignedAnnouncement,
    /// The reorg depth relative to the previous update.
    pub reorg_depth: u64,
    /// Recent reorgs, oldest first: `(seq, first replaced block number)`.
    reorgs: Arc<VecDeque<(u64, u64)>>,
    /// Updates with a seq below this may have had reorgs no longer in `reorgs`.
    history_from: u64,
}

impl HeadUpdate {
    /// The announced head (hash, number, TD).
    pub fn head(&self) -> &AnnouncedHead {
        &self.announcement.head
    }

    /// The reorg depth to announce this head with to a client whose last announced head was
    /// `last` = (update seq, block number); `None` if it has had no head announced yet.
    ///
    /// Conservative when updates were skipped: the depth reaches down to the lowest block
    /// any skipped reorg replaced, and always covers a fall-back below the client's head.
    pub fn reorg_depth_since(&self, last: Option<(u64, u64)>) -> u64 {
        let Some((last_seq, last_number)) = last else { return 0 };
        if last_seq >= self.seq {
            return 0;
        }
        if last_seq.saturating_add(1) == self.seq {
            return self.reorg_depth;
        }
        let first_replaced = if last_seq.saturating_add(1) < self.history_from {
            // Reorgs may have been forgotten: declare everything the client knew replaced.
            Some(0)
        } else {
            self.reorgs.iter().filter(|(seq, _)| *seq > last_seq).map(|(_, first)| *first).min()
        };
        let from_reorgs =
            first_replaced.map_or(0, |first| last_number.saturating_add(1).saturating_sub(first));
        let fall_back = if self.header.number() <= last_number {
            last_number - self.header.number() + 1
        } else {
            0
        };
        from_reorgs.max(fall_back)
    }
}

/// The recent canonical chain, newest [`CANONICAL_WINDOW`] headers.
#[derive(Debug, Default)]
pub struct CanonicalWindow {
    by_number: BTreeMap<u64, SealedHeader>,
    by_hash: HashMap<B256, u64>,
}

impl CanonicalWindow {
    /// The canonical header at `number`, if it is inside the window.
    pub fn by_number(&self, number: u64) -> Option<SealedHeader> {
        self.by_number.get(&number).cloned()
    }

    /// The header with `hash`, if it is canonical and inside the window.
    pub fn by_hash(&self, hash: &B256) -> Option<SealedHeader> {
        self.by_hash.get(hash).and_then(|number| self.by_number.get(number)).cloned()
    }

    /// The newest header.
    pub fn head(&self) -> Option<&SealedHeader> {
        self.by_number.values().next_back()
    }

    /// The oldest block number held.
    pub fn floor(&self) -> Option<u64> {
        self.by_number.keys().next().copied()
    }

    /// Number of headers held.
    pub fn len(&self) -> usize {
        self.by_number.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.by_number.is_empty()
    }

    /// Drops every header above `number` (they were replaced by a reorg).
    fn truncate_above(&mut self, number: u64) {
        let replaced = self.by_number.split_off(&number.saturating_add(1));
        for header in replaced.values() {
            self.by_hash.remove(&header.hash());
        }
    }

    fn clear(&mut self) {
        self.by_number.clear();
        self.by_hash.clear();
    }

    /// Appends `header` as the new head and trims the window to its size.
    fn push(&mut self, header: SealedHeader) {
        self.truncate_above(header.number().saturating_sub(1));
        self.by_hash.insert(header.hash(), header.number());
        self.by_number.insert(header.number(), header);
        while u64::try_from(self.by_number.len()).unwrap_or(u64::MAX) > CANONICAL_WINDOW {
            if let Some((_, oldest)) = self.by_number.pop_first() {
                self.by_hash.remove(&oldest.hash());
            }
        }
    }
}

/// The shared, read-mostly canonical window.
pub type SharedWindow = Arc<RwLock<CanonicalWindow>>;

/// Where the follower publishes heads: the latest [`HeadUpdate`], `None` before the first.
pub type HeadReceiver = watch::Receiver<Option<Arc<HeadUpdate>>>;

/// Follows the upstream head and publishes one signed [`HeadUpdate`] per new head.
#[derive(Debug)]
pub struct Follower {
    upstream: Upstream,
    key: NodeKey,
    poll_interval: Duration,
    window: SharedWindow,
    sender: watch::Sender<Option<Arc<HeadUpdate>>>,
    metrics: Metrics,
    seq: u64,
    reorgs: VecDeque<(u64, u64)>,
    history_from: u64,
}

impl Follower {
    /// A follower of `upstream` that signs with `key` and polls every `poll_interval`.
    pub fn new(
        upstream: Upstream,
        key: NodeKey,
        poll_interval: Duration,
        metrics: Metrics,
    ) -> Self {
        let (sender, _) = watch::channel(None);
        Self {
            upstream,
            key,
            poll_interval,
            window: SharedWindow::default(),
            sender,
            metrics,
            seq: 0,
            reorgs: VecDeque::new(),
            history_from: 1,
        }
    }

    /// The canonical window this follower maintains.
    pub fn window(&self) -> SharedWindow {
        Arc::clone(&self.window)
    }

    /// A receiver of every published head.
    pub fn subscribe(&self) -> HeadReceiver {
        self.sender.subscribe()
    }

    /// Polls until `shutdown` turns true (or its sender is dropped). Upstream failures are
    /// logged and counted; the previous head stays published and polling goes on.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(self.poll_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
            }
            if let Err(error) = self.poll_once().await {
                self.metrics.upstream_error();
                tracing::warn!(%error, "following the upstream head");
            }
        }
    }

    /// One poll: fetches the upstream head and, if it changed, publishes it.
    pub async fn poll_once(&mut self) -> Result<(), FollowError> {
        let Head { header: head, total_difficulty } = self.upstream.head().await?;
        let previous = self.read_window(|window| window.head().cloned());
        if previous.as_ref().is_some_and(|previous| previous.hash() == head.hash()) {
            return Ok(());
        }
        let link = match &previous {
            None => Link { chain: vec![head], depth: 0, first_replaced: None, reset: true },
            Some(previous) => self.link(previous, head).await?,
        };
        let Some(new_head) = link.chain.last().cloned() else { return Ok(()) };
        {
            let mut window = self.window.write().unwrap_or_else(|poison| poison.into_inner());
            if link.reset {
                window.clear();
            }
            for header in link.chain {
                window.push(header);
            }
        }
        self.publish(new_head, total_difficulty, link.depth, link.first_replaced);
        Ok(())
    }

    /// Walks from `head` back by parent hash until it meets the window.
    async fn link(&self, previous: &SealedHeader, head: SealedHeader) -> Result<Link, FollowError> {
        let mut chain = vec![head];
        while let Some(oldest) = chain.last() {
            let parent_number = oldest.number().checked_sub(1);
            let linked = parent_number.is_some_and(|n| {
                self.read_window(|w| w.by_number(n))
                    .is_some_and(|h| h.hash() == oldest.parent_hash())
            });
            if linked {
                break;
            }
            let below_window = parent_number
                .is_none_or(|n| self.read_window(|w| w.floor()).is_none_or(|floor| n < floor))
                || u64::try_from(chain.len()).unwrap_or(u64::MAX) >= CANONICAL_WINDOW;
            if below_window {
                // No common ancestor inside the window: the window restarts from these
                // headers, and everything we announced counts as replaced unless the
                // upstream still has our previous head canonical.
                chain.reverse();
                let still_canonical = self
                    .upstream
                    .header_by_number(previous.number())
                    .await?
                    .is_some_and(|h| h.hash() == previous.hash());
                let extends = still_canonical
                    && chain.first().is_some_and(|h| h.number() > previous.number());
                return Ok(if extends {
                    Link { chain, depth: 0, first_replaced: None, reset: true }
                } else {
                    let depth = previous.number().saturating_add(1);
                    Link { chain, depth, first_replaced: Some(0), reset: true }
                });
            }
            let parent = oldest.parent_hash();
            let Some(parent) = self.upstream.header_by_hash(parent).await? else {
                return Err(FollowError::MissingParent(parent));
            };
            chain.push(parent);
        }
        chain.reverse();
        let first_new = chain.first().map_or(0, SealedHeader::number);
        let head_number = chain.last().map_or(0, SealedHeader::number);
        let replaced = previous.number() >= first_new;
        let depth = if replaced {
            // The common ancestor is first_new - 1; falling back to the previous height or
            // below must cover the previous head itself.
            let to_ancestor = previous.number().saturating_add(1).saturating_sub(first_new);
            let fall_back = if head_number <= previous.number() {
                previous.number() - head_number + 1
            } else {
                0
            };
            to_ancestor.max(fall_back)
        } else {
            0
        };
        Ok(Link { chain, depth, first_replaced: replaced.then_some(first_new), reset: false })
    }

    fn read_window<T>(&self, read: impl FnOnce(&CanonicalWindow) -> T) -> T {
        read(&self.window.read().unwrap_or_else(|poison| poison.into_inner()))
    }

    fn publish(
        &mut self,
        header: SealedHeader,
        td: U256,
        reorg_depth: u64,
        first_replaced: Option<u64>,
    ) {
        self.seq = self.seq.saturating_add(1);
        if let Some(first) = first_replaced {
            self.reorgs.push_back((self.seq, first));
            if self.reorgs.len() > REORG_HISTORY
                && let Some((seq, _)) = self.reorgs.pop_front()
            {
                self.history_from = seq.saturating_add(1);
            }
        }
        let head = AnnouncedHead { hash: header.hash(), number: header.number(), td };
        let announcement = head.signed(&self.key);
        tracing::info!(number = head.number, hash = %head.hash, reorg_depth, "new head");
        self.metrics.set_head(head.number);
        let update = HeadUpdate {
            seq: self.seq,
            header,
            announcement,
            reorg_depth,
            reorgs: Arc::new(self.reorgs.clone()),
            history_from: self.history_from,
        };
        self.sender.send_replace(Some(Arc::new(update)));
    }
}

/// How a new upstream head connects to the window.
struct Link {
    /// The new canonical headers, oldest first, ending with the new head.
    chain: Vec<SealedHeader>,
    /// Reorg depth relative to the previous head.
    depth: u64,
    /// The lowest replaced block number, if announced blocks were replaced.
    first_replaced: Option<u64>,
    /// The window restarts from `chain` (no common ancestor inside it).
    reset: bool,
}

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The upstream failed or sent something invalid.
    #[error("upstream: {0}")]
    Upstream(#[from] UpstreamError),
    /// A new header's parent is unknown to the upstream (it reorged again meanwhile).
    #[error("parent {0} of a new header is unknown upstream")]
    MissingParent(B256),
}
