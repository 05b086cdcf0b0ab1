//! The client core: one LES session per configured server, the ULC quorum over the trusted
//! ones, and verified access to the chain behind the accepted head ([`Chain`]).
//!
//! Trust flows one way. Only signed announcements from trusted servers move the head (the
//! rule is `les::ulc`); the head's header is fetched by its hash and checked against it;
//! older canonical headers are checked by the parent-hash chain back from the head; bodies,
//! receipts, proofs and code are checked against those headers by `les::chain`. A server
//! whose data fails a check is demoted and the request goes to the next server: the answer
//! is verified or it is an error, never unverified data.
//!
//! Requests go to servers that are established, serve data, have flow-control budget
//! (the session refuses a request that would overrun its estimate), ranked by their
//! [`metrics::ValueRecord`]. Disconnected servers are redialled with exponential backoff.

pub mod metrics;
mod peer;
mod persist;

use crate::chain::{
    AccountState, Chain, ChainFuture, ChainResult, ClientError, ClientEvent, HeadInfo, VerifiedBody,
};
use crate::config::ResolvedConfig;
use crate::runtime::Runtime;
use crate::store::{Store, StoreError};
use crate::transport::Transport;
use alloy_eips::BlockHashOrNumber;
use alloy_primitives::{Address, B256, Bytes, KECCAK256_EMPTY, keccak256};
use alloy_trie::EMPTY_ROOT_HASH;
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures_channel::oneshot;
use futures_util::future::{Either, LocalBoxFuture, join_all, select};
use les::announce::{AnnouncedHead, SignedAnnouncement};
use les::chain::{BlockBody, BlockReceipts, NodeSet, SealedHeader, verify_code};
use les::crypto::{NodeId, NodeKey};
use les::msg::{
    AnnounceType, CodeRequest, GetBlockBodies, GetBlockHeaders, GetContractCodes, GetProofsV2,
    GetReceipts, GetTxStatus, LesMessage, ProofRequest, SendTxV2, TxLookup, TxState, limits,
};
use les::p2p::DisconnectReason;
use les::session::{self, Event, RemotePeer, Role, Session, SessionConfig};
use les::time::Timestamp;
use les::ulc::{Ulc, UlcEvent};
use metrics::Counters;
use peer::{AttemptError, Peer};
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

/// Canonical headers kept (and verifiable) below the head; older blocks are refused with a
/// limit error rather than walked back to without bound.
pub const MAX_HISTORY: u64 = 8192;
/// Servers a transaction is sent to at least (when that many are connected).
pub const TX_FANOUT: usize = 2;
/// Redial backoff: from this, doubling per failed attempt, up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A session that lasted this long resets the redial backoff.
const STABLE_SESSION: Duration = Duration::from_secs(30);
/// Rounds of attempts when every server is briefly out of flow-control budget.
const BUDGET_ROUNDS: usize = 5;
const BUDGET_WAIT: Duration = Duration::from_millis(200);
/// Tries at fetching an accepted head's header before waiting for the next announcement.
const HEAD_FETCH_ATTEMPTS: usize = 3;
/// Heads between prunings of the stored header window.
const PRUNE_EVERY: u64 = 64;

/// The light client: implements [`Chain`] for the provider.
pub struct Client<T: Transport, S: Store, R: Runtime> {
    inner: Rc<Inner<T, S, R>>,
}

struct Inner<T: Transport, S: Store, R: Runtime> {
    config: ResolvedConfig,
    transport: T,
    store: S,
    runtime: R,
    /// Our RLPx identity for this client's lifetime.
    key: NodeKey,
    peers: Vec<Rc<Peer>>,
    state: RefCell<State>,
    next_request_id: Cell<u64>,
    stopped: Cell<bool>,
    started: Timestamp,
    install_millis: u64,
}

struct State {
    ulc: Ulc,
    head: Option<SealedHeader>,
    /// Incremented per accepted head; a header fetch for an older one is discarded.
    head_generation: u64,
    /// Canonical headers by number, contiguous by parent hash up to `head`.
    canonical: BTreeMap<u64, SealedHeader>,
    code: HashMap<B256, Bytes>,
    subscribers: Vec<UnboundedSender<ClientEvent>>,
    waiters: Vec<oneshot::Sender<()>>,
    /// Whether the provider was told it can serve (EIP-1193 connect/disconnect).
    connected: bool,
    counters: Counters,
    disagreements: u64,
}

/// What a reply is, once checked.
enum Checked<V> {
    /// Verified data.
    Good(V),
    /// The server does not have it (an empty answer): ask the next.
    Absent,
    /// The data failed verification: demote the server, ask the next.
    Bad(String),
}

impl<T: Transport, S: Store, R: Runtime> Client<T, S, R> {
    /// Opens the store (restoring the last accepted head, stale, if it still verifies under
    /// this configuration) and starts one connection task per server.
    pub fn start(
        config: ResolvedConfig,
        transport: T,
        store: S,
        runtime: R,
    ) -> LocalBoxFuture<'static, Result<Rc<Self>, StoreError>> {
        Box::pin(async move {
            let install_millis = persist::open(&store, runtime.unix_millis()).await?;
            let restored = persist::restore(&store, &config.ulc).await?;
            let key = NodeKey::random().map_err(|e| StoreError::Backend(format!("rng: {e}")))?;
            let mut state = State {
                ulc: Ulc::new(config.ulc.clone()),
                head: None,
                head_generation: 0,
                canonical: BTreeMap::new(),
                code: HashMap::new(),
                subscribers: Vec::new(),
                waiters: Vec::new(),
                connected: false,
                counters: Counters::default(),
                disagreements: 0,
            };
            if let Some(restored) = restored {
                state.ulc = restored.ulc;
                for header in restored.ancestors {
                    state.canonical.insert(header.number(), header);
                }
                state.canonical.insert(restored.head.number(), restored.head.clone());
                state.head = Some(restored.head);
            }
            let peers = config.servers.iter().cloned().map(|s| Rc::new(Peer::new(s))).collect();
            let inner = Rc::new(Inner {
                started: runtime.now(),
                config,
                transport,
                store,
                runtime,
                key,
                peers,
                state: RefCell::new(state),
                next_request_id: Cell::new(1),
                stopped: Cell::new(false),
                install_millis,
            });
            for peer in &inner.peers {
                let task = run_peer(inner.clone(), peer.clone());
                inner.runtime.spawn(Box::pin(task));
            }
            Ok(Rc::new(Client { inner }))
        })
    }

    /// Disconnects every server and ends the connection tasks.
    pub fn stop(&self) {
        self.inner.stop();
    }
}

impl<T: Transport, S: Store, R: Runtime> Drop for Client<T, S, R> {
    fn drop(&mut self) {
        self.inner.stop();
    }
}

/// Dials `peer` and runs sessions with it until the client stops, redialling with backoff.
async fn run_peer<T: Transport, S: Store, R: Runtime>(inner: Rc<Inner<T, S, R>>, peer: Rc<Peer>) {
    while !inner.stopped.get() {
        let dialled = inner.runtime.now();
        match inner.transport.connect(&peer.server).await {
            Ok(connection) => {
                match Session::connect(
                    inner.session_config(&peer),
                    peer.server.enode.public_key,
                    inner.runtime.now(),
                ) {
                    Ok(session) => {
                        let on_event = |event| inner.on_peer_event(&peer, event);
                        let _why =
                            peer::drive(&peer, connection, session, &inner.runtime, &on_event)
                                .await;
                    }
                    Err(_) => peer.record.borrow_mut().failures += 1,
                }
                inner.on_peer_down(&peer);
            }
            Err(_) => peer.record.borrow_mut().failures += 1,
        }
        if inner.stopped.get() {
            break;
        }
        // Only a session that lasted resets the backoff: a server that breaks the protocol
        // right after the handshake must not be redialled at the minimum interval forever.
        let lasted = inner.runtime.now().saturating_duration_since(dialled) >= STABLE_SESSION;
        let attempts = if lasted { 1 } else { peer.attempts.get().saturating_add(1) };
        peer.attempts.set(attempts);
        let backoff = MIN_BACKOFF.saturating_mul(1 << attempts.min(7)).min(MAX_BACKOFF);
        inner.runtime.sleep(backoff).await;
    }
}

impl<T: Transport, S: Store, R: Runtime> Inner<T, S, R> {
    fn stop(&self) {
        if self.stopped.replace(true) {
            return;
        }
        for peer in &self.peers {
            peer.disconnect(DisconnectReason::Quitting);
        }
        let mut state = self.state.borrow_mut();
        state.subscribers.clear();
        state.waiters.clear();
    }

    fn session_config(&self, peer: &Peer) -> SessionConfig {
        let trusted = peer.server.spec.trusted;
        let announce_type = if trusted { AnnounceType::Signed } else { AnnounceType::Simple };
        let mut config = SessionConfig::new(
            self.key.clone(),
            Role::Client(session::ClientConfig { announce_type, trusted }),
            self.config.chain_id,
            self.config.fork_schedule.clone(),
        );
        config.client_id = concat!("ulc/v", env!("CARGO_PKG_VERSION")).to_string();
        if let Some(head) = &self.state.borrow().head {
            config.head_number = head.number();
            config.head_time = head.header().timestamp;
        }
        config
    }

    fn next_id(&self) -> u64 {
        let id = self.next_request_id.get();
        self.next_request_id.set(id.wrapping_add(1).max(1));
        id
    }

    fn emit(&self, event: ClientEvent) {
        self.state.borrow_mut().subscribers.retain(|s| s.unbounded_send(event.clone()).is_ok());
    }

    fn wake_waiters(&self) {
        for waiter in self.state.borrow_mut().waiters.drain(..) {
            let _ = waiter.send(());
        }
    }

    fn any_established(&self) -> bool {
        self.peers.iter().any(|p| p.is_established())
    }

    /// Tells the provider when the client starts or stops being able to serve.
    fn update_connectivity(&self) {
        let up = self.state.borrow().head.is_some() && self.any_established();
        let was = self.state.borrow().connected;
        if up && !was {
            self.state.borrow_mut().connected = true;
            self.emit(ClientEvent::Connected);
        } else if !up && was && !self.any_established() {
            self.state.borrow_mut().connected = false;
            self.emit(ClientEvent::Disconnected {
                code: 1006,
                reason: "every LES server is unreachable".into(),
            });
        }
    }

    fn on_peer_event(self: &Rc<Self>, peer: &Rc<Peer>, event: Event) {
        match event {
            Event::Established(info) => {
                let RemotePeer::Server(offer) = info.remote else { return };
                peer::set_offer(peer, offer);
                peer.record.borrow_mut().connects += 1;
                if peer.server.spec.trusted {
                    let events = self.state.borrow_mut().ulc.reset_server(&info.node_id);
                    if let Ok(events) = events {
                        self.on_ulc_events(events);
                    }
                }
                self.update_connectivity();
                self.wake_waiters();
            }
            Event::Announcement { announce, signed } => {
                peer.record.borrow_mut().messages_in += 1;
                // Only signed announcements of trusted servers count; the session has
                // already checked the signature against the server's authenticated key.
                let (true, Some(signed)) = (peer.server.spec.trusted, signed) else { return };
                let result = self.state.borrow_mut().ulc.on_announcement(
                    peer.server.node_id(),
                    signed.head,
                    &signed.signature,
                    announce.reorg_depth,
                );
                if let Ok(events) = result {
                    self.on_ulc_events(events);
                }
            }
            Event::Reply(reply) => {
                peer.record.borrow_mut().messages_in += 1;
                peer.deliver(reply);
            }
            Event::Stopped => peer.fail_pending(),
            _ => {}
        }
    }

    fn on_peer_down(&self, peer: &Peer) {
        *peer.link.borrow_mut() = None;
        self.update_connectivity();
    }

    fn on_ulc_events(self: &Rc<Self>, events: Vec<UlcEvent>) {
        for event in events {
            match event {
                UlcEvent::HeadAccepted { head, evidence } => {
                    let generation = {
                        let mut state = self.state.borrow_mut();
                        state.head_generation += 1;
                        state.head_generation
                    };
                    let inner = self.clone();
                    self.runtime.spawn(Box::pin(async move {
                        inner.adopt_head(generation, head, evidence).await;
                    }));
                }
                UlcEvent::ServerDropped { server, .. } => {
                    if let Some(peer) = self.peers.iter().find(|p| p.server.node_id() == server) {
                        peer.disconnect(DisconnectReason::UselessPeer);
                    }
                }
                UlcEvent::Disagreement { number, .. } => {
                    self.state.borrow_mut().disagreements += 1;
                    self.emit(ClientEvent::Disagreement { number });
                }
            }
        }
    }

    /// Fetches the header of a newly accepted head by its hash and makes it the head.
    async fn adopt_head(
        self: Rc<Self>,
        generation: u64,
        head: AnnouncedHead,
        evidence: Vec<(NodeId, SignedAnnouncement)>,
    ) {
        let mut header = None;
        for _ in 0..HEAD_FETCH_ATTEMPTS {
            if self.state.borrow().head_generation != generation {
                return;
            }
            if let Ok(Some(found)) = self.fetch_header_by_hash(head.hash).await {
                header = Some(found);
                break;
            }
            self.runtime.sleep(BUDGET_WAIT).await;
        }
        let Some(header) = header else { return };
        if header.number() != head.number {
            return;
        }
        if self.state.borrow().head_generation != generation {
            return;
        }
        let writes = persist::head_writes(&header, &evidence);
        let prune = {
            let mut state = self.state.borrow_mut();
            let parent = header.number().checked_sub(1).and_then(|n| state.canonical.get(&n));
            if parent.is_some_and(|p| p.hash() == header.parent_hash()) {
                state.canonical.split_off(&header.number());
            } else {
                state.canonical.clear();
            }
            state.canonical.insert(header.number(), header.clone());
            let low = header.number().saturating_sub(MAX_HISTORY);
            state.canonical = state.canonical.split_off(&low);
            state.head = Some(header.clone());
            state.counters.heads_accepted += 1;
            state.counters.heads_accepted.is_multiple_of(PRUNE_EVERY)
        };
        // The head is persisted with its evidence before anyone is told of it.
        let _ = self.store.write(writes).await;
        if prune {
            let _ = persist::prune(&self.store, header.number()).await;
        }
        self.update_connectivity();
        self.emit(ClientEvent::NewHead(Box::new(header)));
        self.wake_waiters();
    }

    fn head_info(&self) -> Option<HeadInfo> {
        let state = self.state.borrow();
        let header = state.head.clone()?;
        let accepted = state.ulc.accepted_head();
        Some(HeadInfo {
            stale: accepted.is_none_or(|a| a.is_stale() || a.head().hash != header.hash()),
            signers: accepted
                .map(|a| a.evidence().iter().map(|(id, _)| *id).collect())
                .unwrap_or_default(),
            header,
        })
    }

    /// The head once one is accepted and a server is connected, waiting up to
    /// [`Timing::head_wait`](crate::config::Timing).
    async fn wait_head(&self) -> ChainResult<HeadInfo> {
        let deadline = self.runtime.now().saturating_add(self.config.timing.head_wait);
        loop {
            if self.stopped.get() {
                return Err(ClientError::Stopped);
            }
            let connected = self.any_established();
            if let (true, Some(head)) = (connected, self.head_info()) {
                return Ok(head);
            }
            let now = self.runtime.now();
            if now >= deadline {
                let why = if connected {
                    "no head accepted by the quorum yet"
                } else {
                    "no LES server connected"
                };
                return Err(ClientError::Disconnected(why.into()));
            }
            let (sender, receiver) = oneshot::channel();
            self.state.borrow_mut().waiters.push(sender);
            let timer = self.runtime.sleep(deadline.saturating_duration_since(now));
            let _ = select(receiver, timer).await;
        }
    }

    /// The servers to try, best first.
    fn ranked_peers(&self) -> Vec<Rc<Peer>> {
        let now = self.runtime.now();
        let mut peers: Vec<(usize, Rc<Peer>)> =
            self.peers.iter().cloned().enumerate().filter(|(_, p)| p.can_serve()).collect();
        peers.sort_by_key(|(index, p)| (p.record.borrow().rank(now), *index));
        peers.into_iter().map(|(_, p)| p).collect()
    }

    /// One request to one server, with the timeout.
    async fn attempt(
        &self,
        peer: &Peer,
        build: &dyn Fn(u64) -> LesMessage,
    ) -> Result<(LesMessage, Duration), AttemptError> {
        let request = build(self.next_id());
        let request_id = request.request_id().unwrap_or_default();
        let sent = self.runtime.now();
        let receiver = peer.send(request, &self.runtime)?;
        let timer = self.runtime.sleep(self.config.timing.request_timeout);
        match select(receiver, timer).await {
            Either::Left((Ok(reply), _)) => {
                Ok((reply, self.runtime.now().saturating_duration_since(sent)))
            }
            Either::Left((Err(_), _)) => {
                peer.record.borrow_mut().failures += 1;
                Err(AttemptError::Lost)
            }
            Either::Right(_) => {
                peer.abandon(request_id);
                peer.record.borrow_mut().timeouts += 1;
                Err(AttemptError::Timeout)
            }
        }
    }

    /// Asks the ranked servers in turn until one answers with data that verifies.
    /// `Ok(None)` when every server that answered said it does not have it.
    async fn fetch<V>(
        &self,
        what: &str,
        build: &dyn Fn(u64) -> LesMessage,
        check: &dyn Fn(LesMessage) -> Checked<V>,
    ) -> ChainResult<Option<V>> {
        let started = self.runtime.now();
        let mut absent = false;
        let mut bad: Option<ClientError> = None;
        let mut failed = 0usize;
        // Each server is asked once; one that was out of flow-control budget is asked again
        // in a later round, so an honest server that was merely busy still gets its turn
        // after another said it has nothing.
        let mut waiting: Option<Vec<Rc<Peer>>> = None;
        for round in 0..BUDGET_ROUNDS {
            let peers = waiting.take().unwrap_or_else(|| self.ranked_peers());
            if peers.is_empty() {
                break;
            }
            let mut busy = Vec::new();
            for peer in peers {
                match self.attempt(&peer, build).await {
                    Ok((reply, latency)) => match check(reply) {
                        Checked::Good(value) => {
                            peer.record.borrow_mut().on_success(latency);
                            let elapsed = self.runtime.now().saturating_duration_since(started);
                            self.state.borrow_mut().counters.on_request(elapsed);
                            return Ok(Some(value));
                        }
                        Checked::Absent => absent = true,
                        Checked::Bad(reason) => {
                            peer.record.borrow_mut().on_bad_data(self.runtime.now());
                            self.state.borrow_mut().counters.verification_failures += 1;
                            bad = Some(ClientError::Verification {
                                server: format!("{}", peer.server.node_id()),
                                reason: format!("{what}: {reason}"),
                            });
                        }
                    },
                    Err(AttemptError::NotReady) => busy.push(peer),
                    Err(AttemptError::Lost | AttemptError::Timeout) => failed += 1,
                }
            }
            if busy.is_empty() || round + 1 == BUDGET_ROUNDS {
                break;
            }
            waiting = Some(busy);
            self.runtime.sleep(BUDGET_WAIT).await;
        }
        if let Some(error) = bad {
            return Err(error);
        }
        if absent {
            return Ok(None);
        }
        if !self.any_established() {
            return Err(ClientError::Disconnected("no LES server connected".into()));
        }
        Err(ClientError::Unavailable(format!(
            "{what}: no server answered ({failed} failed or timed out)"
        )))
    }

    async fn fetch_header_by_hash(&self, hash: B256) -> ChainResult<Option<SealedHeader>> {
        let build = |request_id| {
            LesMessage::GetBlockHeaders(GetBlockHeaders {
                request_id,
                origin: BlockHashOrNumber::Hash(hash),
                max_headers: 1,
                skip: 0,
                reverse: false,
            })
        };
        let check = |reply| {
            let LesMessage::BlockHeaders(reply) = reply else {
                return Checked::Bad("not BlockHeaders".into());
            };
            match reply.headers.as_slice() {
                [] => Checked::Absent,
                [rlp] => match SealedHeader::decode_expecting(rlp, hash) {
                    Ok(header) => Checked::Good(header),
                    Err(error) => Checked::Bad(error.to_string()),
                },
                more => Checked::Bad(format!("{} headers for one", more.len())),
            }
        };
        self.fetch("header", &build, &check).await
    }

    async fn header_by_number(&self, number: u64) -> ChainResult<Option<SealedHeader>> {
        let head = self.wait_head().await?.header;
        if number > head.number() {
            return Ok(None);
        }
        if head.number() - number > MAX_HISTORY {
            return Err(ClientError::Limit(format!(
                "block {number} is more than {MAX_HISTORY} blocks below the head {}",
                head.number()
            )));
        }
        loop {
            let lowest = {
                let state = self.state.borrow();
                if let Some(header) = state.canonical.get(&number) {
                    return Ok(Some(header.clone()));
                }
                match state.canonical.first_key_value() {
                    Some((_, header)) => header.clone(),
                    None => return Err(ClientError::Disconnected("no head".into())),
                }
            };
            if lowest.number() < number {
                // The window moved (a new head after a reorg); start again from it.
                continue;
            }
            let count = (lowest.number() - number).min(limits::MAX_HEADER_FETCH);
            let origin = lowest.parent_hash();
            let build = |request_id| {
                LesMessage::GetBlockHeaders(GetBlockHeaders {
                    request_id,
                    origin: BlockHashOrNumber::Hash(origin),
                    max_headers: count,
                    skip: 0,
                    reverse: true,
                })
            };
            let check = |reply| {
                let LesMessage::BlockHeaders(reply) = reply else {
                    return Checked::Bad("not BlockHeaders".into());
                };
                if reply.headers.is_empty() {
                    return Checked::Absent;
                }
                if reply.headers.len() as u64 > count {
                    return Checked::Bad(format!("{} headers for {count}", reply.headers.len()));
                }
                let mut expected = origin;
                let mut chain = Vec::with_capacity(reply.headers.len());
                for rlp in &reply.headers {
                    match SealedHeader::decode_expecting(rlp, expected) {
                        Ok(header) => {
                            expected = header.parent_hash();
                            chain.push(header);
                        }
                        Err(error) => return Checked::Bad(format!("parent-hash chain: {error}")),
                    }
                }
                Checked::Good(chain)
            };
            let Some(chain) = self.fetch("headers", &build, &check).await? else {
                return Err(ClientError::Unavailable(format!(
                    "no server has the headers below {}",
                    lowest.number()
                )));
            };
            let mut state = self.state.borrow_mut();
            // Only extend the window if it still ends where the request started.
            if state.canonical.first_key_value().is_some_and(|(_, h)| h.hash() == lowest.hash()) {
                for (offset, header) in chain.into_iter().enumerate() {
                    if header.number() + 1 + offset as u64 != lowest.number() {
                        break;
                    }
                    state.canonical.insert(header.number(), header);
                }
            }
        }
    }

    async fn body(&self, header: &SealedHeader) -> ChainResult<VerifiedBody> {
        let hash = header.hash();
        let build = |request_id| {
            LesMessage::GetBlockBodies(GetBlockBodies { request_id, block_hashes: vec![hash] })
        };
        let check = |reply| {
            let LesMessage::BlockBodies(reply) = reply else {
                return Checked::Bad("not BlockBodies".into());
            };
            match reply.bodies.as_slice() {
                [] => Checked::Absent,
                [rlp] => {
                    let verified = BlockBody::decode(rlp).and_then(|body| {
                        body.verify(header.header())?;
                        let senders = body.recover_senders()?;
                        Ok(VerifiedBody { body, senders })
                    });
                    match verified {
                        Ok(body) => Checked::Good(body),
                        Err(error) => Checked::Bad(error.to_string()),
                    }
                }
                more => Checked::Bad(format!("{} bodies for one", more.len())),
            }
        };
        self.fetch("body", &build, &check)
            .await?
            .ok_or_else(|| ClientError::Unavailable(format!("no server has the body of {hash}")))
    }

    async fn receipts(&self, header: &SealedHeader) -> ChainResult<BlockReceipts> {
        let hash = header.hash();
        let build = |request_id| {
            LesMessage::GetReceipts(GetReceipts { request_id, block_hashes: vec![hash] })
        };
        let check = |reply| {
            let LesMessage::Receipts(reply) = reply else {
                return Checked::Bad("not Receipts".into());
            };
            match reply.receipts.as_slice() {
                [] => Checked::Absent,
                [items] => match BlockReceipts::from_items(items)
                    .and_then(|r| r.verify(header.header()).map(|()| r))
                {
                    Ok(receipts) => Checked::Good(receipts),
                    Err(error) => Checked::Bad(error.to_string()),
                },
                more => Checked::Bad(format!("{} receipt lists for one", more.len())),
            }
        };
        self.fetch("receipts", &build, &check).await?.ok_or_else(|| {
            ClientError::Unavailable(format!("no server has the receipts of {hash}"))
        })
    }

    async fn account(
        &self,
        header: &SealedHeader,
        address: Address,
        slots: Vec<B256>,
    ) -> ChainResult<AccountState> {
        if slots.len() as u64 >= limits::MAX_PROOFS_FETCH {
            return Err(ClientError::Limit(format!(
                "at most {} storage slots per request",
                limits::MAX_PROOFS_FETCH - 1
            )));
        }
        let hash = header.hash();
        let state_root = header.header().state_root;
        let build = |request_id| {
            let mut requests = vec![ProofRequest::account(hash, address)];
            requests.extend(slots.iter().map(|slot| ProofRequest::storage(hash, address, *slot)));
            LesMessage::GetProofsV2(GetProofsV2 { request_id, requests })
        };
        let check = |reply| {
            let LesMessage::ProofsV2(reply) = reply else {
                return Checked::Bad("not ProofsV2".into());
            };
            // An empty node set is a server without this state, as for the other requests
            // (an empty state root needs no nodes and is proven below).
            if reply.nodes.is_empty() && state_root != EMPTY_ROOT_HASH {
                return Checked::Absent;
            }
            let mut set = NodeSet::new(reply.nodes);
            let proven = (|| {
                let (account, account_proof) = set.account_with_proof(state_root, &address)?;
                let storage_root = account.map_or(EMPTY_ROOT_HASH, |a| a.storage_root);
                let mut storage = Vec::with_capacity(slots.len());
                for slot in &slots {
                    let (value, proof) = set.storage_with_proof(storage_root, slot)?;
                    storage.push((*slot, value, proof));
                }
                Ok::<_, les::chain::ProofError>(AccountState { account, account_proof, storage })
            })();
            match proven.and_then(|state| set.finish().map(|()| state)) {
                Ok(state) => Checked::Good(state),
                Err(error) => Checked::Bad(error.to_string()),
            }
        };
        self.fetch("proof", &build, &check)
            .await?
            .ok_or_else(|| ClientError::Unavailable("no server proved the account".into()))
    }

    async fn code(
        &self,
        header: &SealedHeader,
        address: Address,
        code_hash: B256,
    ) -> ChainResult<Bytes> {
        if code_hash == KECCAK256_EMPTY {
            return Ok(Bytes::new());
        }
        if let Some(code) = self.state.borrow().code.get(&code_hash) {
            return Ok(code.clone());
        }
        let hash = header.hash();
        let build = |request_id| {
            LesMessage::GetContractCodes(GetContractCodes {
                request_id,
                requests: vec![CodeRequest::new(hash, address)],
            })
        };
        let check = |reply| {
            let LesMessage::ContractCodes(reply) = reply else {
                return Checked::Bad("not ContractCodes".into());
            };
            match reply.codes.as_slice() {
                [] => Checked::Absent,
                [code] => match verify_code(code_hash, code) {
                    Ok(()) => Checked::Good(code.clone()),
                    Err(error) => Checked::Bad(error.to_string()),
                },
                more => Checked::Bad(format!("{} codes for one", more.len())),
            }
        };
        let code = self
            .fetch("code", &build, &check)
            .await?
            .ok_or_else(|| ClientError::Unavailable(format!("no server has code {code_hash}")))?;
        self.state.borrow_mut().code.insert(code_hash, code.clone());
        Ok(code)
    }

    async fn send_raw_transaction(&self, raw: Bytes) -> ChainResult<B256> {
        let hash = keccak256(&raw);
        // Typed transactions travel as an RLP byte string, legacy ones as their list.
        let item = if raw.first().is_some_and(|b| *b >= alloy_rlp::EMPTY_LIST_CODE) {
            raw.clone()
        } else {
            Bytes::from(alloy_rlp::encode(&raw[..]))
        };
        // Every connected server gets it (at least TX_FANOUT when that many are up); one out
        // of flow-control budget is tried again after a pause.
        let mut pending = self.ranked_peers();
        if pending.is_empty() {
            return Err(ClientError::Disconnected("no LES server connected".into()));
        }
        let build = |request_id| {
            LesMessage::SendTxV2(SendTxV2 { request_id, transactions: vec![item.clone()] })
        };
        let mut refusals = Vec::new();
        let mut accepted = 0usize;
        for round in 0..BUDGET_ROUNDS {
            let replies = join_all(pending.iter().map(|peer| self.attempt(peer, &build))).await;
            let mut busy = Vec::new();
            for (peer, reply) in pending.iter().zip(replies) {
                let status = match reply {
                    Ok((LesMessage::TxStatus(status), _)) => status,
                    Err(AttemptError::NotReady) => {
                        busy.push(peer.clone());
                        continue;
                    }
                    _ => continue,
                };
                let Some(entry) = status.statuses.first() else { continue };
                match entry.status {
                    TxState::Pending | TxState::Queued | TxState::Included
                        if entry.error.is_empty() =>
                    {
                        accepted += 1
                    }
                    _ if !entry.error.is_empty() => refusals.push(entry.error.clone()),
                    _ => {}
                }
            }
            if busy.is_empty() || accepted >= TX_FANOUT || round + 1 == BUDGET_ROUNDS {
                break;
            }
            pending = busy;
            self.runtime.sleep(BUDGET_WAIT).await;
        }
        if accepted > 0 {
            return Ok(hash);
        }
        match refusals.into_iter().next() {
            Some(reason) => Err(ClientError::Rejected(reason)),
            None => Err(ClientError::Unavailable("no server took the transaction".into())),
        }
    }

    /// Asks the servers in turn (waiting for flow-control budget like any fetch) until one
    /// reports the transaction included; `None` when every server that answered does not
    /// know it as included. The location is a hint the caller verifies.
    async fn transaction_location(&self, hash: B256) -> ChainResult<Option<TxLookup>> {
        let build =
            |request_id| LesMessage::GetTxStatus(GetTxStatus { request_id, tx_hashes: vec![hash] });
        let check = |reply| {
            let LesMessage::TxStatus(status) = reply else {
                return Checked::Bad("not TxStatus".into());
            };
            match status.statuses.as_slice() {
                [entry] => match (entry.status, entry.lookup) {
                    (TxState::Included, Some(lookup)) => Checked::Good(lookup),
                    _ => Checked::Absent,
                },
                other => Checked::Bad(format!("{} statuses for one transaction", other.len())),
            }
        };
        self.fetch("transaction status", &build, &check).await
    }

    fn metrics(&self) -> Value {
        let now = self.runtime.now();
        let state = self.state.borrow();
        let head = state.head.as_ref().map(|h| {
            let age_ms = self
                .runtime
                .unix_millis()
                .saturating_sub(h.header().timestamp.saturating_mul(1000));
            json!({ "number": h.number(), "hash": format!("{}", h.hash()), "ageMs": age_ms })
        });
        let servers: Vec<Value> = self
            .peers
            .iter()
            .map(|p| {
                let mut record = p.record.borrow().to_json();
                record["nodeId"] = json!(format!("{}", p.server.node_id()));
                record["bridge"] = json!(p.server.spec.bridge);
                record["trusted"] = json!(p.server.spec.trusted);
                record["connected"] = json!(p.is_established());
                record
            })
            .collect();
        let total = |field: fn(&metrics::ValueRecord) -> u64| {
            self.peers.iter().map(|p| field(&p.record.borrow())).sum::<u64>()
        };
        json!({
            "installTime": self.install_millis,
            "uptimeMs": now.saturating_duration_since(self.started).as_millis() as u64,
            "head": head,
            "headLagMs": head.as_ref().and_then(|h| h["ageMs"].as_u64()),
            "bytesIn": total(|r| r.bytes_in),
            "bytesOut": total(|r| r.bytes_out),
            "messagesIn": total(|r| r.messages_in),
            "messagesOut": total(|r| r.messages_out),
            "requests": state.counters.latency_json(),
            "headsAccepted": state.counters.heads_accepted,
            "verificationFailures": state.counters.verification_failures,
            "disagreements": state.disagreements,
            "servers": servers,
        })
    }
}

impl<T: Transport, S: Store, R: Runtime> Chain for Client<T, S, R> {
    fn chain_id(&self) -> u64 {
        self.inner.config.chain_id
    }

    fn head(&self) -> ChainFuture<HeadInfo> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.wait_head().await })
    }

    fn current_head(&self) -> Option<HeadInfo> {
        self.inner.head_info()
    }

    fn connected_servers(&self) -> usize {
        self.inner.peers.iter().filter(|p| p.is_established()).count()
    }

    fn header_by_number(&self, number: u64) -> ChainFuture<Option<SealedHeader>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.header_by_number(number).await })
    }

    fn header_by_hash(&self, hash: B256) -> ChainFuture<Option<SealedHeader>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner.wait_head().await?;
            let known =
                inner.state.borrow().canonical.values().rev().find(|h| h.hash() == hash).cloned();
            match known {
                Some(header) => Ok(Some(header)),
                None => inner.fetch_header_by_hash(hash).await,
            }
        })
    }

    fn is_canonical(&self, header: &SealedHeader) -> ChainFuture<bool> {
        let inner = self.inner.clone();
        let (number, hash) = (header.number(), header.hash());
        Box::pin(async move {
            Ok(inner.header_by_number(number).await?.is_some_and(|h| h.hash() == hash))
        })
    }

    fn body(&self, header: &SealedHeader) -> ChainFuture<VerifiedBody> {
        let inner = self.inner.clone();
        let header = header.clone();
        Box::pin(async move { inner.body(&header).await })
    }

    fn receipts(&self, header: &SealedHeader) -> ChainFuture<BlockReceipts> {
        let inner = self.inner.clone();
        let header = header.clone();
        Box::pin(async move { inner.receipts(&header).await })
    }

    fn account(
        &self,
        header: &SealedHeader,
        address: Address,
        slots: Vec<B256>,
    ) -> ChainFuture<AccountState> {
        let inner = self.inner.clone();
        let header = header.clone();
        Box::pin(async move { inner.account(&header, address, slots).await })
    }

    fn code(&self, header: &SealedHeader, address: Address, code_hash: B256) -> ChainFuture<Bytes> {
        let inner = self.inner.clone();
        let header = header.clone();
        Box::pin(async move { inner.code(&header, address, code_hash).await })
    }

    fn send_raw_transaction(&self, raw: Bytes) -> ChainFuture<B256> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner.wait_head().await?;
            inner.send_raw_transaction(raw).await
        })
    }

    fn transaction_location(&self, hash: B256) -> ChainFuture<Option<TxLookup>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner.wait_head().await?;
            inner.transaction_location(hash).await
        })
    }

    fn events(&self) -> UnboundedReceiver<ClientEvent> {
        let (sender, receiver) = unbounded();
        let mut state = self.inner.state.borrow_mut();
        // A subscriber that arrives after the connection learns of it at once.
        if state.connected {
            let _ = sender.unbounded_send(ClientEvent::Connected);
        }
        state.subscribers.push(sender);
        receiver
    }

    fn metrics(&self) -> Value {
        self.inner.metrics()
    }
}
