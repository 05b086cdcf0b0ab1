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
//!
//! Every session also offers `lespay/1`. With a server that shares it, the client asks for
//! its prices and our balance, keeps what the server pushes (`pay::service`), re-sends a
//! cheque left unacknowledged by a crash or a lost reply, and, once the dapp set a payment
//! policy, runs it every tick (`pay::policy`): paying through the channel payer
//! (`pay::channel`, state stored before each cheque is sent) and asking for capacity.

pub mod metrics;
mod peer;
mod persist;

use crate::chain::{
    AccountState, Chain, ChainFuture, ChainResult, ClientError, ClientEvent, HeadInfo, VerifiedBody,
};
use crate::config::ResolvedConfig;
use crate::pay::PayError;
use crate::pay::channel::{ChannelPayer, ChannelState, Opening, Payer, SessionKey};
use crate::pay::open::{
    ChannelCall, ChannelOpener, FundedKey, OPEN_GAS_LIMIT, OpenRequest, Submission,
    TOP_UP_GAS_LIMIT,
};
use crate::pay::policy::{Action, ChannelView, PaymentPolicy, Planner, ServerView};
use crate::pay::service::hex_wei;
use crate::runtime::Runtime;
use crate::store::{Store, StoreError};
use crate::transport::Transport;
use alloy_eips::BlockHashOrNumber;
use alloy_primitives::{Address, B256, Bytes, KECCAK256_EMPTY, U256, keccak256};
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
use les::pay::messages::{self as lespay, ErrorCode, LESPAY, LespayMessage};
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
/// Rounds of attempts at sending a transaction when every server is briefly out of
/// flow-control budget.
const BUDGET_ROUNDS: usize = 5;
/// The pause before asking again a server that was not ready (frozen by Stop, or its
/// recharge time unknown).
const BUDGET_WAIT: Duration = Duration::from_millis(200);
/// The shortest pause before asking a server again whose buffer estimate was too low (its
/// recharge time can be microseconds; polling faster only burns CPU).
const MIN_BUDGET_WAIT: Duration = Duration::from_millis(5);
/// Tries at fetching an accepted head's header before waiting for the next announcement.
const HEAD_FETCH_ATTEMPTS: usize = 3;
/// Heads between prunings of the stored header window.
const PRUNE_EVERY: u64 = 64;
/// How often the payment policy runs, unless configured.
const PAY_TICK: Duration = Duration::from_secs(1);
/// A paid (or to be paid) server's balance is asked for this often.
const BALANCE_REFRESH: Duration = Duration::from_secs(5);
/// How long `open_channel` waits for the opening transaction's verified receipt.
const OPEN_WAIT: Duration = Duration::from_secs(120);
/// The tip offered by the opening transaction (1 gwei).
const OPEN_TIP: u128 = 1_000_000_000;

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
    pay: Payments,
}

/// The client's payment side: the channel payer (with a configured key or wallet), how
/// channels are opened, and the policy the dapp set.
struct Payments {
    payer: Option<Rc<ChannelPayer>>,
    opener: Option<Rc<dyn ChannelOpener>>,
    /// The funding account, once known (a wallet's is asked for at the first opening).
    payer_address: Cell<Option<Address>>,
    planner: RefCell<Option<Planner>>,
    /// When each server's balance was last asked for.
    balance_asked: RefCell<HashMap<NodeId, Timestamp>>,
    tick: Duration,
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
            let pay = Payments::load(&config, &store).await?;
            let key = node_key(&store, config.payment.key.is_some()).await?;
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
                pay,
            });
            for peer in &inner.peers {
                let task = run_peer(inner.clone(), peer.clone());
                inner.runtime.spawn(Box::pin(task));
            }
            inner.runtime.spawn(Box::pin(run_payments(inner.clone())));
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

impl Payments {
    async fn load(config: &ResolvedConfig, store: &impl Store) -> Result<Self, StoreError> {
        let payment = &config.payment;
        let (opener, payer_address) = match (&payment.key, &payment.opener) {
            (Some(_), Some(_)) => {
                return Err(StoreError::Open(
                    crate::config::ConfigError::PaymentKeyAndWallet.to_string(),
                ));
            }
            (Some(key), None) => {
                let funded = FundedKey::new(key.clone());
                let address = funded.address();
                (Some(Rc::new(funded) as Rc<dyn ChannelOpener>), Some(address))
            }
            (None, Some(opener)) => (Some(opener.0.clone()), None),
            (None, None) if payment.wallet => {
                return Err(StoreError::Open(
                    crate::config::ConfigError::MissingWallet.to_string(),
                ));
            }
            (None, None) => (None, None),
        };
        let payer = match opener {
            Some(_) => {
                // Records that do not decode are left in the store untouched (and unused).
                let (payer, _skipped) = ChannelPayer::load(store).await.map_err(|e| match e {
                    PayError::Store(e) => e,
                    other => StoreError::Backend(other.to_string()),
                })?;
                Some(Rc::new(payer))
            }
            None => None,
        };
        let planner = match &payment.policy {
            Some(policy) => {
                policy.validate().map_err(|e| StoreError::Open(format!("payment policy: {e}")))?;
                Some(Planner::new(policy.clone()))
            }
            None => None,
        };
        Ok(Self {
            payer,
            opener,
            payer_address: Cell::new(payer_address),
            planner: RefCell::new(planner),
            balance_asked: RefCell::new(HashMap::new()),
            tick: payment.tick.unwrap_or(PAY_TICK),
        })
    }
}

/// Store key (in `payments`) of the node key a paying client keeps.
const NODE_KEY: &str = "nodeKey";

/// Our RLPx identity: fresh per start, unless the client pays. A server credits a channel's
/// cheques to the node ID that first presented one, so a paying client keeps its node key
/// in the store to be the same client after a restart.
async fn node_key(store: &impl Store, pays: bool) -> Result<NodeKey, StoreError> {
    let rng = |e: les::crypto::CryptoError| StoreError::Backend(format!("rng: {e}"));
    if !pays {
        return NodeKey::random().map_err(rng);
    }
    let stored = store.get(crate::store::Table::Payments, NODE_KEY).await?;
    if let Some(key) = stored
        .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
        .and_then(|bytes| NodeKey::from_bytes(&bytes).ok())
    {
        return Ok(key);
    }
    let key = NodeKey::random().map_err(rng)?;
    store
        .write(vec![crate::store::StoreWrite::Put(
            crate::store::Table::Payments,
            NODE_KEY.into(),
            key.to_bytes().to_vec(),
        )])
        .await?;
    Ok(key)
}

/// Runs the payment policy every tick until the client stops.
async fn run_payments<T: Transport, S: Store, R: Runtime>(inner: Rc<Inner<T, S, R>>) {
    while !inner.stopped.get() {
        inner.runtime.sleep(inner.pay.tick).await;
        if inner.stopped.get() {
            break;
        }
        inner.pay_tick().await;
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
        config.extra_capabilities.push(lespay::capability());
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
                let offered = info.capabilities.iter().any(|c| c.name == LESPAY);
                peer.service.borrow_mut().on_session(offered);
                if offered {
                    let (inner, peer) = (self.clone(), peer.clone());
                    self.runtime.spawn(Box::pin(async move { inner.service_hello(&peer).await }));
                }
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
            Event::CapabilityMessage { capability, code, payload } if capability == LESPAY => {
                peer.record.borrow_mut().messages_in += 1;
                match LespayMessage::decode(code, &payload) {
                    Ok(message) => {
                        let mut service = peer.service.borrow_mut();
                        service.on_message(message);
                        let paid = service.is_paid();
                        drop(service);
                        peer.record.borrow_mut().paid = paid;
                    }
                    Err(_) => peer.service.borrow_mut().bad_messages += 1,
                }
            }
            _ => {}
        }
    }

    fn on_peer_down(&self, peer: &Peer) {
        *peer.link.borrow_mut() = None;
        peer.service.borrow_mut().on_session_end();
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
                peer.record.borrow_mut().on_timeout();
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
        // when its buffer should have recharged (so an honest server that was merely busy
        // still gets its turn after another said it has nothing). A client held to a small
        // (free) capacity is thus paced by flow control rather than failed: it waits, up to
        // the request timeout, for as long as the servers' recharge says.
        let deadline = started.saturating_add(self.config.timing.request_timeout);
        let mut waiting: Option<Vec<Rc<Peer>>> = None;
        loop {
            let peers = waiting.take().unwrap_or_else(|| self.ranked_peers());
            if peers.is_empty() {
                break;
            }
            let mut busy = Vec::new();
            let mut wait = BUDGET_WAIT;
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
                    Err(AttemptError::Budget(recharge)) => {
                        wait = wait.min(recharge.max(MIN_BUDGET_WAIT));
                        busy.push(peer);
                    }
                    Err(AttemptError::Lost | AttemptError::Timeout) => failed += 1,
                }
            }
            if busy.is_empty() || self.runtime.now().saturating_add(wait) > deadline {
                break;
            }
            waiting = Some(busy);
            self.runtime.sleep(wait).await;
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
                    Err(AttemptError::NotReady | AttemptError::Budget(_)) => {
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
            "payments": self.pay.payer.is_some(),
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

/// Why a lespay request produced no reply.
#[derive(Debug)]
enum LespayFailure {
    /// Not sent: no session, lespay not shared, or the message too large.
    NotSent,
    /// No reply in time, or the session ended first.
    NoReply,
}

impl<T: Transport, S: Store, R: Runtime> Inner<T, S, R> {
    /// One lespay request to `peer` and its reply (a lespay `Error` is a reply too).
    async fn lespay_request(
        &self,
        peer: &Peer,
        build: impl FnOnce(u64) -> LespayMessage,
    ) -> Result<LespayMessage, LespayFailure> {
        let req_id = self.next_id();
        let receiver = peer.service.borrow_mut().expect_reply(req_id);
        if peer.send_lespay(&build(req_id)).is_err() {
            peer.service.borrow_mut().abandon(req_id);
            return Err(LespayFailure::NotSent);
        }
        let timer = self.runtime.sleep(self.config.timing.request_timeout);
        match select(receiver, timer).await {
            Either::Left((Ok(reply), _)) => Ok(reply),
            Either::Left((Err(_), _)) => Err(LespayFailure::NoReply),
            Either::Right(_) => {
                peer.service.borrow_mut().abandon(req_id);
                Err(LespayFailure::NoReply)
            }
        }
    }

    /// A new session that shares lespay: learn the prices and our balance, and re-send a
    /// cheque the server has not acknowledged.
    async fn service_hello(&self, peer: &Rc<Peer>) {
        let _ = self.lespay_request(peer, |req_id| LespayMessage::PriceQuery { req_id }).await;
        let _ = self.lespay_request(peer, |req_id| LespayMessage::BalanceQuery { req_id }).await;
        self.pay.balance_asked.borrow_mut().insert(peer.server.node_id(), self.runtime.now());
        let pending = self.pay.payer.as_ref().and_then(|p| p.pending(&peer.server.node_id()));
        if pending.is_some() && !peer.service.borrow().busy {
            self.pay_server(peer, 0).await;
        }
    }

    /// One run of the payment policy.
    async fn pay_tick(&self) {
        if self.pay.planner.borrow().is_none() {
            return;
        }
        let now = self.runtime.now();
        // Fresh balances first: the server charges continuously and pushes only changes.
        for peer in &self.peers {
            let node = peer.server.node_id();
            let (idle, has_prices) = {
                let service = peer.service.borrow();
                (service.offered && !service.busy, service.prices.is_some())
            };
            if !idle {
                continue;
            }
            let fresh = has_prices
                && self
                    .pay
                    .balance_asked
                    .borrow()
                    .get(&node)
                    .is_some_and(|at| now.saturating_duration_since(*at) < BALANCE_REFRESH);
            let no_prices = !has_prices;
            if fresh {
                continue;
            }
            if no_prices {
                let _ =
                    self.lespay_request(peer, |req_id| LespayMessage::PriceQuery { req_id }).await;
            }
            let _ =
                self.lespay_request(peer, |req_id| LespayMessage::BalanceQuery { req_id }).await;
            self.pay.balance_asked.borrow_mut().insert(node, now);
        }
        // Unacknowledged cheques go out again before anything new is planned.
        if let Some(payer) = &self.pay.payer {
            for peer in &self.peers {
                let idle = {
                    let service = peer.service.borrow();
                    service.offered && !service.busy
                };
                if idle && payer.pending(&peer.server.node_id()).is_some() {
                    self.pay_server(peer, 0).await;
                }
            }
        }
        let views = self.server_views();
        let signed = self.pay.payer.as_ref().map_or(U256::ZERO, |p| p.signed_total());
        let unix_secs = self.runtime.unix_millis() / 1000;
        let actions = match self.pay.planner.borrow_mut().as_mut() {
            Some(planner) => planner.plan(now, unix_secs, &views, signed),
            None => return,
        };
        for action in actions {
            let node = match &action {
                Action::Pay { server, .. } | Action::RequestCapacity { server, .. } => *server,
            };
            let Some(peer) = self.peers.iter().find(|p| p.server.node_id() == node) else {
                continue;
            };
            match action {
                Action::Pay { tokens, .. } => self.pay_server(peer, tokens).await,
                Action::RequestCapacity { capacity, .. } => {
                    peer.service.borrow_mut().busy = true;
                    let _ = self
                        .lespay_request(peer, |req_id| LespayMessage::CapacityRequest {
                            req_id,
                            capacity,
                        })
                        .await;
                    peer.service.borrow_mut().busy = false;
                    let paid = peer.service.borrow().is_paid();
                    peer.record.borrow_mut().paid = paid;
                }
            }
        }
    }

    /// The servers as the policy sees them.
    fn server_views(&self) -> Vec<ServerView> {
        self.peers
            .iter()
            .filter(|p| p.service.borrow().offered)
            .map(|peer| {
                let node = peer.server.node_id();
                let service = peer.service.borrow();
                let channel = self.pay.payer.as_ref().and_then(|p| p.channel(&node)).map(|c| {
                    ChannelView { deposit: c.deposit, signed: c.highest_signed, expiry: c.expiry }
                });
                ServerView {
                    node,
                    value: peer.record.borrow().value(),
                    prices: service.prices.clone(),
                    balance: service.balance,
                    channel,
                    busy: service.busy,
                }
            })
            .collect()
    }

    /// Pays `tokens` to `peer` (or re-sends the pending cheque): the cheque is stored by the
    /// payer before it is sent; the acknowledgement commits it, a refusal rolls it back, and
    /// no reply leaves it pending for the next try.
    async fn pay_server(&self, peer: &Peer, tokens: u64) {
        let Some(payer) = &self.pay.payer else { return };
        let node = peer.server.node_id();
        let Some(prices) = peer.service.borrow().prices.clone() else { return };
        peer.service.borrow_mut().busy = true;
        let payment = match payer.prepare(&self.store, node, &prices, tokens).await {
            Ok(payment) => payment,
            Err(error) => {
                let mut service = peer.service.borrow_mut();
                service.busy = false;
                service.last_error = Some((ErrorCode::Internal, format!("not paid: {error}")));
                return;
            }
        };
        if !payment.resend
            && let Some(planner) = self.pay.planner.borrow_mut().as_mut()
        {
            planner.record_spend(self.runtime.now(), payment.wei);
        }
        peer.record.borrow_mut().wei_signed = payment.cumulative;
        let receiver = payment.receiver.clone();
        let proof = payment.proof.clone();
        let reply = self
            .lespay_request(peer, |req_id| LespayMessage::Pay { req_id, receiver, proof })
            .await;
        match reply {
            Ok(LespayMessage::PayReply { credited, receipt, .. }) => {
                let committed = payer.commit(&self.store, node, &receipt).await;
                if committed.is_ok() {
                    peer.record.borrow_mut().tokens_bought += credited;
                }
            }
            Ok(LespayMessage::Error {
                code: ErrorCode::UnknownReceiver | ErrorCode::BadProof | ErrorCode::Rejected,
                ..
            }) => {
                let _ = payer.rollback(&self.store, node).await;
            }
            // Not synced, rate-limited, internal trouble, no reply: the cheque stays pending
            // and is re-sent; the server counts an equal cumulative once.
            _ => {}
        }
        peer.service.borrow_mut().busy = false;
    }

    fn service_status(&self) -> Value {
        let now = self.runtime.now();
        let planner = self.pay.planner.borrow_mut().clone();
        let servers: Vec<Value> = self
            .peers
            .iter()
            .map(|peer| {
                let node = peer.server.node_id();
                let record = peer.record.borrow();
                let mut entry = peer.service.borrow().to_json();
                entry["nodeId"] = json!(format!("{node}"));
                entry["connected"] = json!(peer.is_established());
                entry["value"] = json!(record.value());
                entry["serviceValue"] = json!(record.service_value);
                entry["softTimeoutMs"] = json!(record.soft_timeout().as_millis() as u64);
                entry["spent"] = json!({
                    "weiSigned": hex_wei(record.wei_signed),
                    "tokensBought": record.tokens_bought,
                });
                let channel = self.pay.payer.as_ref().and_then(|p| p.channel(&node));
                entry["channel"] = channel.map_or(Value::Null, |c| channel_json(&c));
                entry["hold"] =
                    json!(planner.as_ref().and_then(|p| p.hold(&node)).map(|h| h.as_str()));
                entry
            })
            .collect();
        let (policy, spent_hour) = match planner {
            Some(mut planner) => (
                serde_json::to_value(planner.policy()).unwrap_or(Value::Null),
                Some(hex_wei(planner.spent_last_hour(now))),
            ),
            None => (Value::Null, None),
        };
        json!({
            "payments": self.pay.payer.is_some(),
            "payer": self.pay.payer_address.get().map(|a| format!("{a}")),
            "openings": self.pay.payer.as_ref().map_or(Vec::new(), |p| {
                p.openings().iter().map(opening_json).collect::<Vec<_>>()
            }),
            "policy": policy,
            "signedTotalWei": hex_wei(self.pay.payer.as_ref().map_or(U256::ZERO, |p| p.signed_total())),
            "spentLastHourWei": spent_hour,
            "servers": servers,
        })
    }

    /// Opens a channel to `server` (see [`Chain::open_channel`]).
    async fn open_channel(
        &self,
        server: NodeId,
        deposit: U256,
        lifetime_secs: u64,
    ) -> ChainResult<Value> {
        let (Some(payer), Some(opener)) = (&self.pay.payer, &self.pay.opener) else {
            return Err(ClientError::Unavailable("no payment key or wallet configured".into()));
        };
        let Some(peer) = self.peers.iter().find(|p| p.server.node_id() == server) else {
            return Err(ClientError::Rejected(format!("{server} is not a configured server")));
        };
        let head = self.wait_head().await?.header;
        if !peer.service.borrow().offered {
            return Err(ClientError::Unavailable(format!("{server} does not offer lespay")));
        }
        if peer.service.borrow().prices.is_none() {
            let _ = self.lespay_request(peer, |req_id| LespayMessage::PriceQuery { req_id }).await;
        }
        let terms = peer.service.borrow().prices.as_ref().and_then(|p| p.channel.clone());
        let Some(terms) = terms else {
            return Err(ClientError::Unavailable(format!("{server} sells no channel capacity")));
        };
        if terms.chain_id != self.config.chain_id {
            return Err(ClientError::Rejected(format!(
                "{server}'s channel contract is on chain {}",
                terms.chain_id
            )));
        }
        if deposit < terms.min_deposit || deposit.is_zero() {
            return Err(ClientError::Rejected(format!(
                "deposit below the server's minimum of {} wei",
                terms.min_deposit
            )));
        }
        if lifetime_secs <= terms.accept_margin_secs {
            return Err(ClientError::Rejected(format!(
                "lifetime must exceed the server's accept margin of {} s",
                terms.accept_margin_secs
            )));
        }
        if payer.channel(&server).is_some_and(|c| c.is_pending()) {
            return Err(ClientError::Rejected(PayError::Pending.to_string()));
        }
        let rejected = |e: PayError| ClientError::Rejected(e.to_string());
        let (from, nonce, max_fee_per_gas) = self.funding(opener.as_ref(), &head).await?;
        let expiry = head.header().timestamp.saturating_add(lifetime_secs);
        let session = SessionKey::generate().map_err(rejected)?;
        let request = OpenRequest {
            chain_id: self.config.chain_id,
            contract: terms.contract,
            payer: from,
            call: ChannelCall::Open { payee: terms.payee, signer: session.address(), expiry },
            deposit,
            nonce,
            max_fee_per_gas,
            max_priority_fee_per_gas: OPEN_TIP,
            gas_limit: OPEN_GAS_LIMIT,
        };
        // The session key is stored before anything is signed or sent: whatever happens
        // next, a funded channel's cheques can still be signed.
        let terms_state = ChannelState::opened(
            terms.chain_id,
            terms.contract,
            terms.payee,
            B256::ZERO,
            deposit,
            expiry,
            session.clone(),
        );
        let opening = Opening { server, payer: from, state: terms_state, transaction: None };
        payer.begin_open(&self.store, opening.clone()).await.map_err(rejected)?;
        let hash = match opener.submit(request).await {
            Ok(Submission::Raw(raw)) => {
                if let Err(error) = payer.opening_sent(&self.store, &opening, keccak256(&raw)).await
                {
                    // Not sent, and now it will not be.
                    let _ = payer.abandon_open(&self.store, &opening).await;
                    return Err(rejected(error));
                }
                self.send_raw_transaction(raw).await?
            }
            Ok(Submission::Sent(hash)) => {
                // Out already: a failed write of the hash must not hide the channel.
                let _ = payer.opening_sent(&self.store, &opening, hash).await;
                hash
            }
            Err(error) => {
                // Only a submission that certainly sent nothing gives up the session key: a
                // wallet that failed after eth_sendTransaction may have funded the channel.
                if error.nothing_sent() {
                    let _ = payer.abandon_open(&self.store, &opening).await;
                }
                return Err(rejected(error));
            }
        };
        let receipt = self.verified_receipt(hash).await?;
        if !alloy_consensus::TxReceipt::status(&receipt) {
            // A reverted open kept the deposit with the payer.
            let _ = payer.abandon_open(&self.store, &opening).await;
        }
        let opened = crate::pay::open::find_opened(
            &receipt,
            terms.contract,
            from,
            terms.payee,
            session.address(),
        )
        .map_err(rejected)?;
        let state = ChannelState::opened(
            terms.chain_id,
            terms.contract,
            terms.payee,
            opened.channel_id,
            opened.deposit,
            opened.expiry,
            session,
        );
        payer.add_channel(&self.store, server, state.clone()).await.map_err(rejected)?;
        let mut out = channel_json(&state);
        out["transactionHash"] = json!(format!("{hash}"));
        Ok(out)
    }

    /// Who funds a channel transaction and with what: the opener's account (a wallet is
    /// asked), its next nonce from the proven account when the opener signs locally, and the
    /// fee cap (2 × the head's base fee + the tip).
    async fn funding(
        &self,
        opener: &dyn ChannelOpener,
        head: &SealedHeader,
    ) -> ChainResult<(Address, u64, u128)> {
        let from = opener.payer().await.map_err(|e| ClientError::Rejected(e.to_string()))?;
        self.pay.payer_address.set(Some(from));
        let nonce = if opener.needs_nonce() {
            self.account(head, from, Vec::new()).await?.account.map_or(0, |a| a.nonce)
        } else {
            0
        };
        let base_fee = u128::from(head.header().base_fee_per_gas.unwrap_or(0));
        Ok((from, nonce, base_fee.saturating_mul(2).saturating_add(OPEN_TIP)))
    }

    async fn top_up_channel(&self, server: NodeId, deposit: U256) -> ChainResult<Value> {
        let (Some(payer), Some(opener)) = (&self.pay.payer, &self.pay.opener) else {
            return Err(ClientError::Unavailable("no payment key or wallet configured".into()));
        };
        let Some(channel) = payer.channel(&server) else {
            return Err(ClientError::Rejected(PayError::NoChannel.to_string()));
        };
        let head = self.wait_head().await?.header;
        if head.header().timestamp >= channel.expiry {
            return Err(ClientError::Rejected("the channel has expired: open a new one".into()));
        }
        let rejected = |e: PayError| ClientError::Rejected(e.to_string());
        let (from, nonce, max_fee_per_gas) = self.funding(opener.as_ref(), &head).await?;
        let request = OpenRequest {
            chain_id: channel.chain_id,
            contract: channel.contract,
            payer: from,
            call: ChannelCall::TopUp { channel_id: channel.channel_id },
            deposit,
            nonce,
            max_fee_per_gas,
            max_priority_fee_per_gas: OPEN_TIP,
            gas_limit: TOP_UP_GAS_LIMIT,
        };
        // Nothing to store first: a top-up that is lost only leaves more deposit on chain,
        // which the payer reclaims after expiry; cheques stay within the deposit known here.
        let hash = match opener.submit(request).await.map_err(rejected)? {
            Submission::Raw(raw) => self.send_raw_transaction(raw).await?,
            Submission::Sent(hash) => hash,
        };
        let receipt = self.verified_receipt(hash).await?;
        let total =
            crate::pay::open::find_topped_up(&receipt, channel.contract, channel.channel_id)
                .map_err(rejected)?;
        let state = payer
            .set_deposit(&self.store, server, channel.channel_id, total)
            .await
            .map_err(rejected)?;
        let mut out = channel_json(&state);
        out["transactionHash"] = json!(format!("{hash}"));
        Ok(out)
    }

    /// The receipt of transaction `hash` once it is included, verified as for
    /// `eth_getTransactionReceipt`: the servers' location is checked against the canonical
    /// block's verified body, the receipt against its receipts root.
    async fn verified_receipt(&self, hash: B256) -> ChainResult<alloy_consensus::ReceiptEnvelope> {
        let deadline = self.runtime.now().saturating_add(OPEN_WAIT);
        loop {
            if let Some(location) = self.transaction_location(hash).await? {
                let header = self.fetch_header_by_hash(location.block_hash).await?;
                if let Some(header) = header.filter(|h| h.number() == location.block_number) {
                    let canonical = self
                        .header_by_number(header.number())
                        .await?
                        .is_some_and(|h| h.hash() == header.hash());
                    let index = usize::try_from(location.index).unwrap_or(usize::MAX);
                    if canonical {
                        let body = self.body(&header).await?;
                        let found = body
                            .body
                            .transactions()
                            .get(index)
                            .is_some_and(|tx| *tx.tx_hash() == hash);
                        if found {
                            let receipts = self.receipts(&header).await?;
                            if let Some(receipt) = receipts.receipts().get(index) {
                                return Ok(receipt.clone());
                            }
                        }
                    }
                }
            }
            if self.runtime.now() >= deadline {
                return Err(ClientError::Unavailable(format!(
                    "transaction {hash} not included within {} s",
                    OPEN_WAIT.as_secs()
                )));
            }
            self.runtime.sleep(BUDGET_WAIT.saturating_mul(5)).await;
        }
    }
}

/// A channel as `ulc_serviceStatus` shows it.
fn channel_json(c: &ChannelState) -> Value {
    json!({
        "chainId": c.chain_id,
        "contract": format!("{}", c.contract),
        "payee": format!("{}", c.payee),
        "channelId": format!("{}", c.channel_id),
        "depositWei": hex_wei(c.deposit),
        "expiry": c.expiry,
        "signedWei": hex_wei(c.signed),
        "highestSignedWei": hex_wei(c.highest_signed),
        "acceptedWei": hex_wei(c.accepted),
        "pending": c.is_pending(),
        "signer": format!("{}", c.signer()),
    })
}

/// An unfinished opening as `ulc_serviceStatus` shows it (never the session secret).
fn opening_json(o: &Opening) -> Value {
    json!({
        "server": format!("{}", o.server),
        "payer": format!("{}", o.payer),
        "signer": format!("{}", o.state.signer()),
        "depositWei": hex_wei(o.state.deposit),
        "expiry": o.state.expiry,
        "transactionHash": o.transaction.map(|h| format!("{h}")),
    })
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

    fn service_status(&self) -> Value {
        self.inner.service_status()
    }

    fn set_payment_policy(&self, policy: Option<PaymentPolicy>) -> ChainResult<()> {
        if let Some(policy) = &policy {
            policy.validate().map_err(|e| ClientError::Rejected(e.to_string()))?;
        }
        *self.inner.pay.planner.borrow_mut() = policy.map(Planner::new);
        Ok(())
    }

    fn open_channel(
        &self,
        server: NodeId,
        deposit: U256,
        lifetime_secs: u64,
    ) -> ChainFuture<Value> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.open_channel(server, deposit, lifetime_secs).await })
    }

    fn top_up_channel(&self, server: NodeId, deposit: U256) -> ChainFuture<Value> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.top_up_channel(server, deposit).await })
    }
}
