//! The Ultra Light Client trust rule: which chain head the client accepts, decided only by
//! signed announcements from a configured set of trusted servers.
//!
//! [`Ulc`] is a deterministic state machine with no I/O and no clock. The driver feeds it
//! every head announcement it receives from a server ([`Ulc::on_announcement`], with the
//! node ID the RLPx handshake authenticated, the 65-byte signature taken from the
//! announcement's `"sign"` entry and the announced reorg depth) and acts on the returned
//! [`UlcEvent`]s. Untrusted servers still serve data, but nothing they announce counts here.
//!
//! # The rule (design §3; a deliberate deviation from geth for the post-merge chain)
//!
//! geth's ULC requires each server's announced total difficulty to increase strictly. After
//! the merge TD is frozen at the terminal value, so that rule would drop every server that
//! keeps announcing. Our servers announce every new head with the unchanged TD and the
//! client applies this rule instead, per trusted server, comparing an announcement with
//! that server's previous one (`last`):
//!
//! 1. **Signature.** The signature must recover to the announcing server's node ID
//!    ([`crate::announce`]). Otherwise the announcement is refused with
//!    [`UlcError::BadSignature`] and nothing changes (a replayed signature of another head
//!    or of another server is caught here). The driver should disconnect, as geth does.
//! 2. **Duplicate.** The same `(hash, number, td)` as `last` is ignored: no event, no second
//!    vote.
//! 3. **TD never decreases.** `td < last.td` drops the server
//!    ([`DropReason::TdDecreased`]). Post-merge it stays equal; pre-merge it grows.
//! 4. **One hash, one block.** A hash the server already announced (and still holds) with a
//!    different number or TD drops it ([`DropReason::InconsistentHash`]).
//! 5. **Progress or reorg.** Accepted when `number > last.number`, or, at the same or a
//!    lower number (the hash then necessarily differs), when the announced reorg depth
//!    reaches below the new head: `reorg_depth >= last.number - number + 1`. Anything else
//!    is going backwards without a reorg and drops the server
//!    ([`DropReason::BackwardsWithoutReorg`]); this includes equivocation, i.e. a second
//!    hash at one height with no reorg depth. Consequently a server whose head falls back to
//!    an ancestor of its previous head must announce a depth of at least
//!    `last.number - number + 1` (it abandons the blocks above, including its old vote for
//!    the height it returns to, and then votes for that height again).
//!
//! Whenever `reorg_depth > 0` the server's common ancestor with its previous head is at
//! `fork = last.number - reorg_depth` (saturating) and every cached announcement of that
//! server above `fork` is discarded before the new one is stored. That always covers every
//! entry at or above the new number, so a server votes for at most one hash per height: this
//! is how equivocation *with* a reorg depth is neutralised (the new hash replaces the old
//! vote).
//!
//! A dropped server's cached announcements are discarded and its further announcements are
//! refused with [`UlcError::DroppedServer`] until the driver calls [`Ulc::reset_server`],
//! which it does when it connects to that server again. A reset starts the server's history
//! afresh (its first announcement afterwards is accepted as a baseline, as on a first
//! connection).
//!
//! # Accepting a head
//!
//! Each trusted server holds a FIFO of its last [`ANNOUNCEMENT_CACHE_SIZE`] accepted
//! announcements; after the pruning above it is the server's *current* chain, numbers
//! strictly increasing. A head is **quorum-backed** when
//! `100 * agreeing / trusted_count >= fraction` in integer arithmetic, exactly as geth:
//! `agreeing` counts trusted, non-dropped servers whose FIFO holds exactly that head, and
//! `trusted_count` is the number of *configured* trusted servers, connected or not. With 3
//! trusted servers at 67 % two agreeing give `66 < 67`, so all three are needed. We compare
//! the whole `(hash, number, td)` rather than geth's `(hash, number)` so that every piece of
//! evidence signs one identical value; honest servers announce the same TD for a block.
//!
//! The candidate is the quorum-backed head with the highest number. If two different heads
//! are quorum-backed at that height (possible only with a fraction of 50 or less) the
//! servers disagree on the very block we would accept, and nothing moves. Otherwise the
//! accepted head becomes the candidate when
//! - there is no accepted head yet, or the accepted head is a stale one from
//!   [`Ulc::restore`] (a fresh quorum always wins, even on the same or a lower head); or
//! - the candidate's number is higher than the accepted head's; or
//! - the candidate is at the same or a lower number and a quorum of its backers have left
//!   the accepted head's chain: each such server holds a different head at the accepted
//!   height, or has announced since the acceptance a reorg whose fork point is below the
//!   accepted height and not announced the accepted head again. This is a reorg that a
//!   quorum followed, and the head follows it, downwards if need be.
//!
//! A head that merely loses support (servers dropped, reset or reconnected, or a quorum of
//! lagging servers backing a lower block of the same chain) is kept: the head never goes
//! back without a quorum of servers saying the chain changed. Every change emits
//! [`UlcEvent::HeadAccepted`] with the backers' signed announcements as evidence; the
//! client persists them and re-verifies them at start-up with [`Ulc::restore`].
//!
//! # Disagreement
//!
//! When trusted servers hold different hashes at one height, [`UlcEvent::Disagreement`] is
//! emitted once for that height (again only if the height later vanishes from every FIFO and
//! comes back) and [`Ulc::disagreement_count`] grows. A disagreement by itself never moves
//! the head; the quorum rule above decides.

use crate::announce::{AnnounceError, AnnouncedHead, SignedAnnouncement};
use crate::crypto::{Enode, EnodeError, NodeId, RecoverableSignature};
use alloy_primitives::{B256, U256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How many of its most recent accepted announcements are kept per trusted server (geth
/// `cachedAnnosThreshold`).
pub const ANNOUNCEMENT_CACHE_SIZE: usize = 64;

/// The smallest fraction (percent) a configuration can hold; lower values are raised to it.
pub const MIN_FRACTION: u32 = 1;

/// The largest fraction (percent) a configuration can hold; higher values are lowered to it.
pub const MAX_FRACTION: u32 = 100;

/// Something that names a trusted server: its node ID or its enode URL.
pub trait TrustedServerId {
    /// The server's node ID.
    fn trusted_node_id(&self) -> NodeId;
}

impl TrustedServerId for B256 {
    fn trusted_node_id(&self) -> NodeId {
        *self
    }
}

impl TrustedServerId for Enode {
    fn trusted_node_id(&self) -> NodeId {
        self.node_id()
    }
}

impl<T: TrustedServerId + ?Sized> TrustedServerId for &T {
    fn trusted_node_id(&self) -> NodeId {
        (**self).trusted_node_id()
    }
}

/// Why a ULC configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UlcConfigError {
    /// The trusted set is empty; ULC needs at least one trusted server.
    #[error("no trusted servers configured")]
    NoTrustedServers,
    /// One of the trusted-server URLs does not parse.
    #[error("trusted server #{index} ({url:?}) is not a valid enode URL: {source}")]
    InvalidEnode {
        /// Position of the URL in the list, from 0.
        index: usize,
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        #[source]
        source: EnodeError,
    },
}

/// The trusted servers and the percentage of them that must sign the same head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UlcConfig {
    trusted: BTreeSet<NodeId>,
    fraction: u32,
}

impl UlcConfig {
    /// Builds a configuration from node IDs or enodes. Duplicates collapse into one server.
    ///
    /// `fraction` is a percentage clamped to [`MIN_FRACTION`]`..=`[`MAX_FRACTION`]: 0 would
    /// accept a head nobody signed and more than 100 could never be met (geth's own range
    /// check is dead code and passes such values through).
    pub fn new<I>(trusted: I, fraction: u32) -> Result<Self, UlcConfigError>
    where
        I: IntoIterator,
        I::Item: TrustedServerId,
    {
        let trusted: BTreeSet<NodeId> =
            trusted.into_iter().map(|server| server.trusted_node_id()).collect();
        if trusted.is_empty() {
            return Err(UlcConfigError::NoTrustedServers);
        }
        Ok(Self { trusted, fraction: fraction.clamp(MIN_FRACTION, MAX_FRACTION) })
    }

    /// Builds a configuration from enode URLs (geth's `--ulc.servers`). Unlike geth, which
    /// skips unparsable entries with a warning, any bad URL is an error.
    pub fn from_enode_urls<I>(urls: I, fraction: u32) -> Result<Self, UlcConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let enodes = urls
            .into_iter()
            .enumerate()
            .map(|(index, url)| {
                let url = url.as_ref();
                url.parse::<Enode>().map_err(|source| UlcConfigError::InvalidEnode {
                    index,
                    url: url.to_string(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(enodes, fraction)
    }

    /// The (clamped) percentage of trusted servers that must agree.
    pub fn fraction(&self) -> u32 {
        self.fraction
    }

    /// The trusted node IDs, in ascending order.
    pub fn trusted(&self) -> impl Iterator<Item = &NodeId> {
        self.trusted.iter()
    }

    /// How many distinct trusted servers are configured (never 0).
    pub fn trusted_count(&self) -> usize {
        self.trusted.len()
    }

    /// Whether `server` is one of the trusted servers.
    pub fn is_trusted(&self, server: &NodeId) -> bool {
        self.trusted.contains(server)
    }

    /// Whether `agreeing` trusted servers are enough: `100 * agreeing / trusted_count >=
    /// fraction`, integer division as in geth.
    pub fn is_quorum(&self, agreeing: usize) -> bool {
        // Saturation only matters for trusted sets far beyond any memory; it can only make
        // the percentage smaller, never accept more.
        let fraction = usize::try_from(self.fraction).unwrap_or(usize::MAX);
        agreeing
            .saturating_mul(100)
            .checked_div(self.trusted.len())
            .is_some_and(|percent| percent >= fraction)
    }

    /// The smallest number of agreeing trusted servers that [`is_quorum`](Self::is_quorum).
    pub fn quorum_size(&self) -> usize {
        (1..=self.trusted.len())
            .find(|&agreeing| self.is_quorum(agreeing))
            .unwrap_or(self.trusted.len())
    }
}

/// Why a trusted server's announcements stopped counting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// It announced a lower total difficulty than before.
    TdDecreased {
        /// Its previous announcement.
        previous: AnnouncedHead,
        /// The offending announcement.
        announced: AnnouncedHead,
    },
    /// It announced a hash it had announced before with another number or TD.
    InconsistentHash {
        /// The earlier announcement of that hash.
        previous: AnnouncedHead,
        /// The offending announcement.
        announced: AnnouncedHead,
    },
    /// It announced another head at the same or a lower number without a reorg depth that
    /// reaches below it.
    BackwardsWithoutReorg {
        /// Its previous announcement.
        previous: AnnouncedHead,
        /// The offending announcement.
        announced: AnnouncedHead,
        /// The reorg depth it gave.
        reorg_depth: u64,
    },
}

/// What the driver learns from the ULC state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UlcEvent {
    /// The accepted head changed (or a restored, stale head was confirmed by a fresh
    /// quorum). `evidence` holds every backing server's signed announcement, by node ID.
    HeadAccepted {
        /// The newly accepted head.
        head: AnnouncedHead,
        /// `(server, its signed announcement of head)` for each backing server.
        evidence: Vec<(NodeId, SignedAnnouncement)>,
    },
    /// A trusted server broke the announcement rule; its announcements no longer count
    /// until [`Ulc::reset_server`]. The driver should disconnect it.
    ServerDropped {
        /// The dropped server.
        server: NodeId,
        /// What it did.
        reason: DropReason,
    },
    /// Trusted servers currently hold different hashes at one height.
    Disagreement {
        /// The height.
        number: u64,
        /// Each non-dropped server holding an announcement at that height, and its hash.
        heads: Vec<(NodeId, B256)>,
    },
}

/// Why an announcement was not taken into account. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UlcError {
    /// The sender is not a trusted server; its announcements never count.
    #[error("announcement from untrusted server {server} ignored")]
    UntrustedServer {
        /// The sender.
        server: NodeId,
    },
    /// The sender was dropped and has not been reset since ([`Ulc::drop_reason`] says
    /// why).
    #[error("announcement from dropped server {server} ignored")]
    DroppedServer {
        /// The sender.
        server: NodeId,
    },
    /// The signature does not show that the sender signed this head.
    #[error("bad announcement signature from {server}: {source}")]
    BadSignature {
        /// The sender.
        server: NodeId,
        /// What is wrong with the signature.
        #[source]
        source: AnnounceError,
    },
}

/// Why persisted evidence could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// A piece of evidence names a server that is not trusted (any more).
    #[error("evidence from untrusted server {server}")]
    UntrustedSigner {
        /// The server.
        server: NodeId,
    },
    /// A server appears twice in the evidence.
    #[error("server {server} appears twice in the evidence")]
    DuplicateSigner {
        /// The server.
        server: NodeId,
    },
    /// A piece of evidence signs another head than the one restored.
    #[error("evidence from {server} is for another head")]
    EvidenceForOtherHead {
        /// The server.
        server: NodeId,
    },
    /// A signature in the evidence does not verify.
    #[error("evidence from {server} does not verify: {source}")]
    BadSignature {
        /// The server.
        server: NodeId,
        /// What is wrong with the signature.
        #[source]
        source: AnnounceError,
    },
    /// The evidence is valid but does not reach the configured quorum.
    #[error("evidence has {agreeing} trusted signers, {required} needed")]
    NoQuorum {
        /// Valid trusted signers in the evidence.
        agreeing: usize,
        /// Signers the current configuration needs.
        required: usize,
    },
}

/// The head the client currently trusts, with the signed announcements that back it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedHead {
    head: AnnouncedHead,
    evidence: Vec<(NodeId, SignedAnnouncement)>,
    stale: bool,
}

impl AcceptedHead {
    /// The accepted head.
    pub fn head(&self) -> &AnnouncedHead {
        &self.head
    }

    /// `(server, its signed announcement of the head)` for each backing server, by node ID.
    pub fn evidence(&self) -> &[(NodeId, SignedAnnouncement)] {
        &self.evidence
    }

    /// True for a head restored from storage that no fresh quorum has confirmed or replaced
    /// yet: it was trustworthy once, but may be far behind.
    pub fn is_stale(&self) -> bool {
        self.stale
    }
}

/// What is known about one trusted server.
#[derive(Debug, Clone, Default)]
struct ServerState {
    /// Its current chain as announced: the last accepted announcements, oldest first,
    /// numbers strictly increasing, at most [`ANNOUNCEMENT_CACHE_SIZE`].
    chain: VecDeque<SignedAnnouncement>,
    /// Set once it broke the rule; cleared only by [`Ulc::reset_server`].
    dropped: Option<DropReason>,
    /// It announced a reorg below the accepted head's height since that head was accepted.
    reorged_below_accepted: bool,
}

/// How an announcement relates to the server's previous ones.
enum Classified {
    Duplicate,
    Violation(DropReason),
    /// Store it, first discarding entries above the fork point if there is one.
    Store {
        fork_point: Option<u64>,
    },
}

impl ServerState {
    fn classify(&self, head: &AnnouncedHead, reorg_depth: u64) -> Classified {
        let Some(last) = self.chain.back().map(|entry| entry.head) else {
            return Classified::Store { fork_point: None };
        };
        if last == *head {
            return Classified::Duplicate;
        }
        if head.td < last.td {
            return Classified::Violation(DropReason::TdDecreased {
                previous: last,
                announced: *head,
            });
        }
        if let Some(previous) =
            self.chain.iter().map(|entry| entry.head).find(|earlier| earlier.hash == head.hash)
            && (previous.number != head.number || previous.td != head.td)
        {
            return Classified::Violation(DropReason::InconsistentHash {
                previous,
                announced: *head,
            });
        }
        let fork_point = (reorg_depth > 0).then(|| last.number.saturating_sub(reorg_depth));
        // At the same or a lower number the depth must reach below the new head:
        // reorg_depth >= last.number - number + 1, written so it cannot overflow.
        if head.number > last.number || reorg_depth > last.number - head.number {
            Classified::Store { fork_point }
        } else {
            Classified::Violation(DropReason::BackwardsWithoutReorg {
                previous: last,
                announced: *head,
                reorg_depth,
            })
        }
    }

    fn at_height(&self, number: u64) -> Option<&SignedAnnouncement> {
        self.chain.iter().find(|entry| entry.head.number == number)
    }

    /// Whether this server's current chain has moved away from `accepted`.
    fn has_left(&self, accepted: &AnnouncedHead) -> bool {
        match self.at_height(accepted.number) {
            Some(entry) => entry.head != *accepted,
            None => self.reorged_below_accepted,
        }
    }
}

/// The ULC quorum state machine (see the module documentation for the rule).
#[derive(Debug, Clone)]
pub struct Ulc {
    config: UlcConfig,
    servers: BTreeMap<NodeId, ServerState>,
    accepted: Option<AcceptedHead>,
    /// Heights already reported as disagreements and still present in some FIFO.
    reported_disagreements: BTreeSet<u64>,
    disagreements: u64,
}

impl Ulc {
    /// A fresh state with no accepted head.
    pub fn new(config: UlcConfig) -> Self {
        let servers = config.trusted().map(|id| (*id, ServerState::default())).collect();
        Self {
            config,
            servers,
            accepted: None,
            reported_disagreements: BTreeSet::new(),
            disagreements: 0,
        }
    }

    /// A warm start from a persisted accepted head and its evidence.
    ///
    /// Every piece of evidence must be a valid signature of exactly `head` by a distinct
    /// server trusted in `config`, and together they must reach the quorum of `config`. The
    /// head is then accepted but [stale](AcceptedHead::is_stale): the first fresh quorum
    /// replaces it (or confirms it) with a [`UlcEvent::HeadAccepted`]. The evidence is not
    /// counted as live announcements.
    pub fn restore(
        config: UlcConfig,
        head: AnnouncedHead,
        evidence: Vec<(NodeId, SignedAnnouncement)>,
    ) -> Result<Self, RestoreError> {
        let mut verified = BTreeMap::new();
        for (server, announcement) in evidence {
            if !config.is_trusted(&server) {
                return Err(RestoreError::UntrustedSigner { server });
            }
            if announcement.head != head {
                return Err(RestoreError::EvidenceForOtherHead { server });
            }
            announcement
                .verify(&server)
                .map_err(|source| RestoreError::BadSignature { server, source })?;
            if verified.insert(server, announcement).is_some() {
                return Err(RestoreError::DuplicateSigner { server });
            }
        }
        if !config.is_quorum(verified.len()) {
            return Err(RestoreError::NoQuorum {
                agreeing: verified.len(),
                required: config.quorum_size(),
            });
        }
        let mut ulc = Self::new(config);
        ulc.accepted =
            Some(AcceptedHead { head, evidence: verified.into_iter().collect(), stale: true });
        Ok(ulc)
    }

    /// The configuration.
    pub fn config(&self) -> &UlcConfig {
        &self.config
    }

    /// The head the client currently trusts, with its evidence, if any.
    pub fn accepted_head(&self) -> Option<&AcceptedHead> {
        self.accepted.as_ref()
    }

    /// How many disagreements (heights with conflicting trusted hashes) were reported.
    pub fn disagreement_count(&self) -> u64 {
        self.disagreements
    }

    /// Why a trusted server is dropped, if it is.
    pub fn drop_reason(&self, server: &NodeId) -> Option<&DropReason> {
        self.servers.get(server).and_then(|state| state.dropped.as_ref())
    }

    /// The latest announcement counted for a trusted, non-dropped server: where its
    /// current chain ends.
    pub fn latest_announcement(&self, server: &NodeId) -> Option<&SignedAnnouncement> {
        self.servers.get(server).and_then(|state| state.chain.back())
    }

    /// Takes in one head announcement from the server `from` (the node ID authenticated by
    /// RLPx), with the signature from its `"sign"` entry and its reorg depth.
    ///
    /// `Err` means it was not taken into account and the state is unchanged. `Ok` carries
    /// what changed, in this order: [`UlcEvent::ServerDropped`], [`UlcEvent::Disagreement`],
    /// [`UlcEvent::HeadAccepted`]; an empty list for a duplicate or an announcement that
    /// moved nothing.
    pub fn on_announcement(
        &mut self,
        from: NodeId,
        head: AnnouncedHead,
        signature: &RecoverableSignature,
        reorg_depth: u64,
    ) -> Result<Vec<UlcEvent>, UlcError> {
        let accepted_number = self.accepted.as_ref().map(|accepted| accepted.head.number);
        let server =
            self.servers.get_mut(&from).ok_or(UlcError::UntrustedServer { server: from })?;
        if server.dropped.is_some() {
            return Err(UlcError::DroppedServer { server: from });
        }
        head.verify(signature, &from)
            .map_err(|source| UlcError::BadSignature { server: from, source })?;

        let mut events = Vec::new();
        match server.classify(&head, reorg_depth) {
            Classified::Duplicate => return Ok(events),
            Classified::Violation(reason) => {
                server.chain.clear();
                server.dropped = Some(reason.clone());
                events.push(UlcEvent::ServerDropped { server: from, reason });
            }
            Classified::Store { fork_point } => {
                if let Some(fork_point) = fork_point {
                    server.chain.retain(|entry| entry.head.number <= fork_point);
                    if accepted_number.is_some_and(|number| fork_point < number) {
                        server.reorged_below_accepted = true;
                    }
                }
                server.chain.push_back(SignedAnnouncement { head, signature: *signature });
                while server.chain.len() > ANNOUNCEMENT_CACHE_SIZE {
                    server.chain.pop_front();
                }
                events.extend(self.check_disagreement(head.number));
            }
        }
        self.after_change(&mut events);
        Ok(events)
    }

    /// Starts a trusted server's history afresh: re-admits it if it was dropped and forgets
    /// its cached announcements. The driver calls this when it (re)connects to the server.
    /// Forgetting its votes never moves the head back; it can only settle a contested height.
    pub fn reset_server(&mut self, server: &NodeId) -> Result<Vec<UlcEvent>, UlcError> {
        let state =
            self.servers.get_mut(server).ok_or(UlcError::UntrustedServer { server: *server })?;
        *state = ServerState::default();
        let mut events = Vec::new();
        self.after_change(&mut events);
        Ok(events)
    }

    fn after_change(&mut self, events: &mut Vec<UlcEvent>) {
        self.forget_vanished_disagreements();
        events.extend(self.reevaluate());
    }

    fn counting_servers(&self) -> impl Iterator<Item = (&NodeId, &ServerState)> {
        self.servers.iter().filter(|(_, state)| state.dropped.is_none())
    }

    fn check_disagreement(&mut self, number: u64) -> Option<UlcEvent> {
        let heads: Vec<(NodeId, B256)> = self
            .counting_servers()
            .filter_map(|(id, state)| state.at_height(number).map(|entry| (*id, entry.head.hash)))
            .collect();
        let distinct: BTreeSet<&B256> = heads.iter().map(|(_, hash)| hash).collect();
        if distinct.len() < 2 || !self.reported_disagreements.insert(number) {
            return None;
        }
        self.disagreements = self.disagreements.saturating_add(1);
        Some(UlcEvent::Disagreement { number, heads })
    }

    /// Keeps the "already reported" set bounded by what the FIFOs hold.
    fn forget_vanished_disagreements(&mut self) {
        let present: BTreeSet<u64> = self
            .counting_servers()
            .flat_map(|(_, state)| state.chain.iter().map(|entry| entry.head.number))
            .collect();
        self.reported_disagreements.retain(|number| present.contains(number));
    }

    /// Applies the acceptance rule of the module documentation.
    fn reevaluate(&mut self) -> Option<UlcEvent> {
        type Backers = Vec<(NodeId, SignedAnnouncement)>;
        let mut tally: BTreeMap<(u64, B256, U256), Backers> = BTreeMap::new();
        for (id, state) in self.counting_servers() {
            for entry in &state.chain {
                let head = entry.head;
                tally.entry((head.number, head.hash, head.td)).or_default().push((*id, *entry));
            }
        }
        let mut quorum_backed =
            tally.into_iter().rev().filter(|(_, backers)| self.config.is_quorum(backers.len()));
        let ((number, hash, td), backers) = quorum_backed.next()?;
        if quorum_backed.next().is_some_and(|((other_number, _, _), _)| other_number == number) {
            return None;
        }
        let candidate = AnnouncedHead { hash, number, td };

        let moves = match &self.accepted {
            None => true,
            Some(accepted) if accepted.stale => true,
            Some(accepted) if accepted.head == candidate => false,
            Some(accepted) if candidate.number > accepted.head.number => true,
            Some(accepted) => {
                let left = backers
                    .iter()
                    .filter(|(id, _)| {
                        self.servers.get(id).is_some_and(|state| state.has_left(&accepted.head))
                    })
                    .count();
                self.config.is_quorum(left)
            }
        };
        if !moves {
            return None;
        }
        for state in self.servers.values_mut() {
            state.reorged_below_accepted = false;
        }
        self.accepted =
            Some(AcceptedHead { head: candidate, evidence: backers.clone(), stale: false });
        Some(UlcEvent::HeadAccepted { head: candidate, evidence: backers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::NodeKey;
    use alloy_primitives::keccak256;

    fn key(seed: u8) -> NodeKey {
        NodeKey::from_bytes(&keccak256([seed]).0).unwrap()
    }

    #[test]
    fn quorum_arithmetic_matches_geth() {
        let ids = |n: u8| (0..n).map(|i| key(i).node_id()).collect::<Vec<_>>();
        let three_at_67 = UlcConfig::new(ids(3), 67).unwrap();
        assert!(!three_at_67.is_quorum(2));
        assert!(three_at_67.is_quorum(3));
        assert_eq!(three_at_67.quorum_size(), 3);
        let four_at_75 = UlcConfig::new(ids(4), 75).unwrap();
        assert!(!four_at_75.is_quorum(2));
        assert!(four_at_75.is_quorum(3));
        assert_eq!(four_at_75.quorum_size(), 3);
        let three_at_66 = UlcConfig::new(ids(3), 66).unwrap();
        assert_eq!(three_at_66.quorum_size(), 2);
        let one = UlcConfig::new(ids(1), 100).unwrap();
        assert!(!one.is_quorum(0));
        assert!(one.is_quorum(1));
    }

    #[test]
    fn fraction_is_clamped_and_duplicates_collapse() {
        let a = key(1).node_id();
        let b = key(2).node_id();
        let config = UlcConfig::new([a, b, a], 0).unwrap();
        assert_eq!(config.trusted_count(), 2);
        assert_eq!(config.fraction(), MIN_FRACTION);
        assert_eq!(UlcConfig::new([a], 150).unwrap().fraction(), MAX_FRACTION);
        assert_eq!(UlcConfig::new([a], 67).unwrap().fraction(), 67);
        assert_eq!(UlcConfig::new(Vec::<NodeId>::new(), 50), Err(UlcConfigError::NoTrustedServers));
    }

    #[test]
    fn config_from_enode_urls() {
        let url = |seed: u8| {
            format!(
                "enode://{}@127.0.0.1:3030{seed}",
                alloy_primitives::hex::encode(key(seed).public_key())
            )
        };
        let config = UlcConfig::from_enode_urls([url(1), url(2), url(1)], 75).unwrap();
        assert_eq!(config.trusted_count(), 2);
        assert!(config.is_trusted(&key(1).node_id()));
        assert!(config.is_trusted(&key(2).node_id()));
        let enodes: Vec<Enode> = [url(3)].iter().map(|u| u.parse().unwrap()).collect();
        assert!(UlcConfig::new(&enodes, 75).unwrap().is_trusted(&key(3).node_id()));

        match UlcConfig::from_enode_urls([url(1), "enode://nothex@1.2.3.4:1".to_string()], 75) {
            Err(UlcConfigError::InvalidEnode {
                index: 1,
                source: EnodeError::PublicKeyHex,
                ..
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            UlcConfig::from_enode_urls(Vec::<String>::new(), 75),
            Err(UlcConfigError::NoTrustedServers)
        );
    }
}
