//! The service model in the running lesd: the one [`ClientPool`] every client session is
//! admitted to, charged by and kicked from, the `lespay/1` requests of those sessions, and
//! the checkpoints that carry balances across restarts.
//!
//! The pool (sans-IO, in [`les::pay::pool`]) is the only decision maker; this module feeds it
//! and carries out what it decides:
//! - A session that completes its Status exchange is [`PayService::connect`]ed under its
//!   node id and its free-client id ([`FreeIdRule`]). A rejection disconnects it with
//!   TooManyPeers; the returned [`ClientHandle`] disconnects it from the pool when dropped.
//! - Every served request is charged at its real cost ([`ClientHandle::request_served`]).
//! - Pool events become [`Command`]s on the session's channel: a capacity change is applied
//!   to the session's flow control (MRR = capacity, BL = 6000 × capacity) and pushed as a
//!   lespay `CapacityUpdate`; a deactivation is pushed as `CapacityUpdate(0)` and followed by
//!   a TooManyPeers disconnect.
//! - A timer task runs the pool's own timers (balances running out, the 10 s refresh) and
//!   writes a balance checkpoint to the payment ledger every [`ServiceConfig::checkpoint_interval`]
//!   and at shutdown; the last checkpoint (plus every payment logged since, which the ledger
//!   adds on top) is loaded into the pool at startup, so a restart loses at most one
//!   interval of time charges and never a payment.
//!
//! The pool lives behind one `std::sync::Mutex`, held only for a pool call and the dispatch
//! of its events (no await inside). A payment's ledger write (fsynced) runs under it as well,
//! from a blocking thread, because [`BalanceSink::update_with`] must hold off every other
//! change to the balance while the credit becomes durable; payments are rare.
//!
//! Free-client ids are the remote IP address (new node keys are free, addresses are not),
//! except for loopback peers, which get their node id as geth does; on a devnet every
//! client comes from 127.0.0.1, so [`FreeIdRule::NodeId`] keys debt by node id always.

use crate::metrics::Metrics;
use crate::pay::credit::{AddBalance, CreditError, OperatorCredit};
use crate::pay::ledger::{Checkpoint, Ledger, LedgerError, LogEntry, unix_ms};
use crate::pay::receiver::{BalanceSink, PaymentError, Receivers};
use alloy_primitives::B256;
use les::crypto::NodeId;
use les::flow::{CostTable, FlowParams};
use les::pay::balance::{ExpiredValue, LogOffset};
use les::pay::messages::{
    self, Balance as WireBalance, ChannelTerms, ErrorCode, ExchangeRate, LespayMessage,
    MAX_PAYLOAD_SIZE, PriceFactors, PriceList,
};
use les::pay::pool::{
    self, BalanceSnapshot, ClientPool, FreeId, PoolConfig, PoolError, PoolEvent, PriorityClass,
    ServerInfo,
};
use les::time::Timestamp;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Notify, mpsc, watch};

/// Ledger metadata key of the positive-balance expiry offset.
const META_POS_OFFSET: &str = "pool/pos_offset";
/// Ledger metadata key of the negative-balance expiry offset.
const META_NEG_OFFSET: &str = "pool/neg_offset";

/// How a client's free-client id (the key of its debt) is derived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FreeIdRule {
    /// The remote IP address; the node id for loopback peers (geth's rule).
    #[default]
    Address,
    /// The node id, always (devnets, where every client is on 127.0.0.1).
    NodeId,
}

impl FreeIdRule {
    /// The free-client id of `node` connecting from `peer`.
    pub fn free_id(self, node: NodeId, peer: SocketAddr) -> FreeId {
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match (self, ip) {
            (FreeIdRule::NodeId, _) => node.0.to_vec(),
            (FreeIdRule::Address, ip) if ip.is_loopback() => node.0.to_vec(),
            (FreeIdRule::Address, IpAddr::V4(v4)) => v4.octets().to_vec(),
            (FreeIdRule::Address, IpAddr::V6(v6)) => v6.octets().to_vec(),
        }
    }
}

/// A free-client id as the ledger's 32-byte key: a node id as it is; an address (4 or 16
/// bytes) right-aligned behind 15 zero bytes and its length, a pattern a keccak output
/// shows with probability 2^-128.
fn free_id_key(id: &[u8]) -> Option<B256> {
    if id.len() == 32 {
        return Some(B256::from_slice(id));
    }
    let len = u8::try_from(id.len()).ok().filter(|&len| len == 4 || len == 16)?;
    let mut key = [0u8; 32];
    key[15] = len;
    key[32 - id.len()..].copy_from_slice(id);
    Some(B256::from(key))
}

/// The inverse of [`free_id_key`].
fn free_id_of_key(key: &B256) -> FreeId {
    let bytes = key.as_slice();
    let len = usize::from(bytes[15]);
    if bytes[..15].iter().all(|&b| b == 0)
        && (len == 4 || len == 16)
        && bytes[16..32 - len].iter().all(|&b| b == 0)
    {
        return bytes[32 - len..].to_vec();
    }
    bytes.to_vec()
}

/// How many lespay requests a client may send: a bucket of `burst` that refills at
/// `per_second`; requests beyond it get Error(6), and a client that keeps sending while
/// refused (`max_refused` refusals within [`RATE_WINDOW`]) is disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests that may come back to back.
    pub burst: u32,
    /// Sustained requests per second.
    pub per_second: u32,
    /// Refusals within [`RATE_WINDOW`] that end the session.
    pub max_refused: u32,
}

/// The window in which refused lespay requests are counted.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

impl Default for RateLimit {
    fn default() -> Self {
        Self { burst: 32, per_second: 16, max_refused: 64 }
    }
}

/// The payment-channel receiver's settings (`--payee-key`, `--channel-contract`, ...).
#[derive(Debug, Clone)]
pub struct PaymentConfig {
    /// The payee key file (created if missing).
    pub payee_key: std::path::PathBuf,
    /// The PaymentChannel contract.
    pub contract: alloy_primitives::Address,
    /// Tokens per wei.
    pub rate: ExchangeRate,
    /// Cheques are refused this close to their channel's expiry.
    pub accept_margin: Duration,
    /// Channels are redeemed at the latest this long before expiry.
    pub redeem_margin: Duration,
    /// Blocks a channel's on-chain state must be buried under.
    pub confirmations: u64,
    /// The smallest channel deposit accepted, in wei.
    pub min_deposit: alloy_primitives::U256,
}

/// The service model's settings.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Run the pool and offer `lespay/1` (default); off: every client gets the minimum
    /// capacity and nothing is charged, as before the service model.
    pub enabled: bool,
    /// The total capacity; default `max_clients × min_capacity` (research §1.3).
    pub total_capacity: Option<u64>,
    /// The minimum (free-client) capacity; default from geth's cost table (16,000).
    pub min_capacity: Option<u64>,
    /// Admission bias.
    pub connected_bias: Duration,
    /// Price of positive balance.
    pub pos_factors: PriceFactors,
    /// Price of negative balance (debt of free use).
    pub neg_factors: PriceFactors,
    /// Expiry time constant of positive balances (zero: never).
    pub pos_expiry: Duration,
    /// Expiry time constant of negative balances (zero: never).
    pub neg_expiry: Duration,
    /// How free-client ids are formed.
    pub free_id: FreeIdRule,
    /// How often balances are checkpointed to the ledger.
    pub checkpoint_interval: Duration,
    /// The per-client lespay rate limit.
    pub rate_limit: RateLimit,
    /// The exchange rate advertised (and used by the channel receiver).
    pub tokens_per_wei: ExchangeRate,
    /// The channel receiver, if payments are accepted.
    pub payment: Option<PaymentConfig>,
    /// The admin JSON-RPC endpoint.
    pub admin: Option<SocketAddr>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        let geth = PriceFactors::GETH_DEFAULT;
        Self {
            enabled: true,
            total_capacity: None,
            min_capacity: None,
            connected_bias: pool::DEFAULT_CONNECTED_BIAS,
            pos_factors: geth,
            neg_factors: geth,
            pos_expiry: Duration::ZERO,
            neg_expiry: Duration::ZERO,
            free_id: FreeIdRule::Address,
            checkpoint_interval: Duration::from_secs(10),
            rate_limit: RateLimit::default(),
            tokens_per_wei: ExchangeRate { num: 1, den: 1 },
            payment: None,
            admin: None,
        }
    }
}

impl ServiceConfig {
    /// The minimum capacity in force.
    pub fn min_capacity(&self) -> u64 {
        self.min_capacity.unwrap_or_else(pool::default_min_capacity).max(1)
    }

    /// The pool configuration for `max_clients` clients.
    pub fn pool_config(&self, max_clients: usize) -> PoolConfig {
        let min = self.min_capacity();
        let count = u64::try_from(max_clients).unwrap_or(u64::MAX);
        let total = self.total_capacity.unwrap_or_else(|| min.saturating_mul(count)).max(min);
        let mut config = PoolConfig::new(total, max_clients);
        config.min_capacity = min;
        config.connected_bias = self.connected_bias;
        config.pos_factors = self.pos_factors;
        config.neg_factors = self.neg_factors;
        config.pos_tau = self.pos_expiry;
        config.neg_tau = self.neg_expiry;
        config
    }
}

/// What the service tells a client task to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The pool changed the client's capacity or class: apply the flow parameters of
    /// `capacity` and push a `CapacityUpdate`.
    Capacity {
        /// The capacity now.
        capacity: u64,
        /// The client's standing now.
        balance: WireBalance,
    },
    /// The client lost its place: push `CapacityUpdate(0)`, then disconnect (TooManyPeers).
    Kick {
        /// The client's standing.
        balance: WireBalance,
    },
    /// Send this lespay message (the answer to a request that took time, like Pay).
    Send(LespayMessage),
}

/// What a client task does with one lespay message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LespayOutcome {
    /// Send this reply.
    Reply(LespayMessage),
    /// Apply the flow parameters of `capacity`, then send `reply` (CapacityGranted).
    Granted {
        /// The capacity now held.
        capacity: u64,
        /// The reply.
        reply: LespayMessage,
    },
    /// The answer comes later, as a [`Command::Send`].
    Pending,
    /// The client ignored the rate limit for too long: disconnect it.
    Disconnect,
}

/// Why a client was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The pool is full and the client does not outrank the weakest one.
    #[error("no room in the client pool")]
    Rejected,
    /// A session with this node id is connected already.
    #[error("node {0} is already connected")]
    AlreadyConnected(NodeId),
}

/// Why an admin or service call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The node is not connected.
    #[error("client {0} is not connected")]
    NotConnected(NodeId),
    /// A capacity above the minimum needs a positive balance.
    #[error("client {0} has no positive balance")]
    NoPriority(NodeId),
    /// The capacity asked for cannot be had now.
    #[error("capacity {wanted} not available; at most {max} can be granted")]
    CapacityUnavailable {
        /// What was asked for.
        wanted: u64,
        /// What the pool granted (and the client holds now).
        max: u64,
    },
    /// The balance change is out of range.
    #[error(transparent)]
    Credit(#[from] CreditError),
    /// The pool refused the call.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The call needs the payment ledger, which needs a data directory.
    #[error("no payment ledger: lesd runs without --datadir")]
    NoLedger,
    /// The call needs the channel receiver, which is not configured.
    #[error("payment channels are not configured (--channel-contract)")]
    NoChannels,
    /// Something else failed.
    #[error("{0}")]
    Other(String),
}

/// The pool and the sessions it commands.
struct State {
    pool: ClientPool,
    sessions: HashMap<NodeId, Slot>,
    /// The pool timer the timer task sleeps until.
    armed: Option<Timestamp>,
}

struct Slot {
    /// Tells this connection apart from a later one of the same node.
    serial: u64,
    tx: mpsc::UnboundedSender<Command>,
    connected_at: Instant,
}

/// The part shared with the balance sink (no cycle through the receivers).
struct Core {
    state: Mutex<State>,
    started: Instant,
    wake: Notify,
    metrics: Metrics,
    serial: AtomicU64,
}

impl Core {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn instant_of(&self, at: Timestamp) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.started) + Duration::from_nanos(at.as_nanos())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock leaves the pool in whatever state one call left it, which is
        // consistent (every call restores its invariants before returning).
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Delivers the pool's events, updates the metrics and re-arms the timer task.
    fn settle(&self, state: &mut State, now: Timestamp) {
        while let Some(event) = state.pool.poll_event() {
            match event {
                PoolEvent::CapacityChanged { id, capacity, class } => {
                    let balance = standing(&mut state.pool, id, now)
                        .unwrap_or_else(|| wire_balance(0, 0, capacity, class));
                    if let Some(slot) = state.sessions.get(&id) {
                        let _ = slot.tx.send(Command::Capacity { capacity, balance });
                    }
                }
                PoolEvent::Deactivated { id } => {
                    self.metrics.client_kicked();
                    let pos = state.pool.pos_balance(id, now);
                    let class = if pos > 0 { PriorityClass::Paid } else { PriorityClass::Free };
                    if let Some(slot) = state.sessions.remove(&id) {
                        let _ =
                            slot.tx.send(Command::Kick { balance: wire_balance(pos, 0, 0, class) });
                    }
                }
            }
        }
        let info = state.pool.server_info();
        self.metrics.set_pool(&PoolGauges {
            active: info.active_count,
            total_capacity: info.total_capacity,
            connected_capacity: info.active_capacity,
        });
        let next = state.pool.poll_timeout();
        if next.is_some_and(|at| state.armed.is_none_or(|armed| at < armed)) {
            state.armed = next;
            self.wake.notify_one();
        }
    }
}

/// The numbers the metrics show of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGauges {
    /// Active clients.
    pub active: usize,
    /// The pool's total capacity now.
    pub total_capacity: u64,
    /// The capacity active clients hold.
    pub connected_capacity: u64,
}

fn wire_balance(pos: u64, neg: u64, capacity: u64, class: PriorityClass) -> WireBalance {
    WireBalance { pos, neg, capacity, priority_class: class }
}

/// A connected client's standing, or `None` if it is not in the pool.
fn standing(pool: &mut ClientPool, id: NodeId, now: Timestamp) -> Option<WireBalance> {
    pool.client_info(id, now)
        .map(|info| wire_balance(info.balance.pos, info.balance.neg, info.capacity, info.class))
}

/// The pool's side of a payment ([`BalanceSink`]): the pool's positive balance, changed
/// only after the ledger write succeeded, under the pool lock.
struct PoolSink(Arc<Core>);

impl BalanceSink for PoolSink {
    fn positive(&self, node: NodeId) -> u64 {
        let now = self.0.now();
        let mut state = self.0.lock();
        let pos = state.pool.pos_balance(node, now);
        self.0.settle(&mut state, now);
        pos
    }

    fn update_with(
        &self,
        node: NodeId,
        update: &mut dyn FnMut(u64) -> Result<u64, PaymentError>,
    ) -> Result<u64, PaymentError> {
        let now = self.0.now();
        let mut state = self.0.lock();
        let current = state.pool.pos_balance(node, now);
        let new = update(current)?;
        // Both are at most 2^63-1, so the difference fits an i64.
        let delta = i64::try_from(i128::from(new) - i128::from(current)).unwrap_or(0);
        let applied = state.pool.add_balance(node, delta, now);
        self.0.settle(&mut state, now);
        match applied {
            Ok((_, new)) => Ok(new),
            // The ledger holds the credit; the pool picks it up at the next restart.
            Err(error) => Err(PaymentError::Internal(format!("pool refused the credit: {error}"))),
        }
    }
}

/// The running service model; cheap to clone.
#[derive(Clone)]
pub struct PayService {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<Core>,
    costs: CostTable,
    free_id: FreeIdRule,
    rate_limit: RateLimit,
    checkpoint_interval: Duration,
    ledger: Option<Ledger>,
    receivers: OnceLock<Receivers>,
    credit: OnceLock<OperatorCredit>,
    channel_terms: OnceLock<ChannelTerms>,
    redeem: OnceLock<crate::pay::redeem::RedeemHandle>,
    tokens_per_wei: ExchangeRate,
    /// Node ids whose positive balance the last checkpoint or restore stored.
    stored: Mutex<(HashSet<NodeId>, HashSet<B256>)>,
}

impl std::fmt::Debug for PayService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayService").field("ledger", &self.inner.ledger).finish_non_exhaustive()
    }
}

impl PayService {
    /// A service over a fresh pool for `max_clients` clients, restoring balances from
    /// `ledger` (the last checkpoint plus later payments) when there is one.
    pub fn new(
        config: &ServiceConfig,
        max_clients: usize,
        ledger: Option<Ledger>,
        metrics: Metrics,
    ) -> Result<Self, LedgerError> {
        let started = Instant::now();
        let now = Timestamp::from_nanos(0);
        let mut pool = ClientPool::new(config.pool_config(max_clients), now);
        let mut stored = (HashSet::new(), HashSet::new());
        if let Some(ledger) = &ledger {
            let pos_offset = LogOffset(ledger.meta_u64(META_POS_OFFSET)?.unwrap_or(0));
            let neg_offset = LogOffset(ledger.meta_u64(META_NEG_OFFSET)?.unwrap_or(0));
            let positive = ledger.positive_balances()?;
            let negative = ledger.negative_balances()?;
            stored.0 = positive.iter().map(|(id, _)| *id).collect();
            stored.1 = negative.iter().map(|(id, _)| *id).collect();
            let snapshot = BalanceSnapshot {
                pos: positive
                    .into_iter()
                    .map(|(id, value)| (id, ExpiredValue::new(value, pos_offset)))
                    .collect(),
                neg: negative
                    .into_iter()
                    .map(|(key, value)| {
                        (free_id_of_key(&key), ExpiredValue::new(value, neg_offset))
                    })
                    .collect(),
                pos_offset,
                neg_offset,
            };
            let restored = (snapshot.pos.len(), snapshot.neg.len());
            // A fresh pool has no clients, the one case restore refuses.
            if let Err(error) = pool.restore(snapshot, now) {
                tracing::error!(%error, "balances not restored");
            } else {
                tracing::info!(positive = restored.0, negative = restored.1, "balances restored");
            }
        }
        let core = Arc::new(Core {
            state: Mutex::new(State { pool, sessions: HashMap::new(), armed: None }),
            started,
            wake: Notify::new(),
            metrics,
            serial: AtomicU64::new(0),
        });
        {
            let mut state = core.lock();
            core.settle(&mut state, now);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                core,
                costs: CostTable::geth_default(),
                free_id: config.free_id,
                rate_limit: config.rate_limit,
                checkpoint_interval: config.checkpoint_interval.max(Duration::from_millis(100)),
                ledger,
                receivers: OnceLock::new(),
                credit: OnceLock::new(),
                channel_terms: OnceLock::new(),
                redeem: OnceLock::new(),
                tokens_per_wei: config.tokens_per_wei,
                stored: Mutex::new(stored),
            }),
        })
    }

    /// The sink payment receivers credit the pool through.
    pub fn balance_sink(&self) -> Arc<dyn BalanceSink> {
        Arc::new(PoolSink(Arc::clone(&self.inner.core)))
    }

    /// Offers `receivers` (set once, before clients connect); `terms` are the channel
    /// receiver's for the price list.
    pub fn set_receivers(&self, receivers: Receivers, terms: Option<ChannelTerms>) {
        let _ = self.inner.receivers.set(receivers);
        if let Some(terms) = terms {
            let _ = self.inner.channel_terms.set(terms);
        }
        if let Some(ledger) = &self.inner.ledger {
            let _ = self.inner.credit.set(OperatorCredit::new(ledger.clone(), self.balance_sink()));
        }
    }

    /// Hands the redeemer's handle to the service (for the admin API and shutdown).
    pub fn set_redeemer(&self, handle: crate::pay::redeem::RedeemHandle) {
        let _ = self.inner.redeem.set(handle);
    }

    /// The redeemer, if payment channels are configured.
    pub fn redeemer(&self) -> Option<&crate::pay::redeem::RedeemHandle> {
        self.inner.redeem.get()
    }

    /// The ledger, if lesd has a data directory.
    pub fn ledger(&self) -> Option<&Ledger> {
        self.inner.ledger.as_ref()
    }

    /// The service clock (the pool's).
    pub fn now(&self) -> Timestamp {
        self.inner.core.now()
    }

    /// The flow parameters of `capacity`, with the cost table every session advertises.
    pub fn flow_params(&self, capacity: u64) -> FlowParams {
        pool::flow_params(capacity, self.inner.costs.clone())
    }

    /// The flow parameters a session starts with (its Status): the minimum capacity's, which
    /// is what the pool admits every client at.
    pub fn initial_flow(&self) -> FlowParams {
        let min = self.inner.core.lock().pool.config().min_capacity;
        self.flow_params(min)
    }

    /// Admits `node` connecting from `peer`, at the capacity the returned handle carries.
    pub fn connect(&self, node: NodeId, peer: SocketAddr) -> Result<ClientHandle, AdmitError> {
        let core = &self.inner.core;
        let free_id = self.inner.free_id.free_id(node, peer);
        let now = core.now();
        let (tx, rx) = mpsc::unbounded_channel();
        let serial = core.serial.fetch_add(1, Ordering::Relaxed);
        let mut state = core.lock();
        let result = state.pool.connect(node, free_id, now);
        let outcome = match result {
            Ok(capacity) => {
                state
                    .sessions
                    .insert(node, Slot { serial, tx: tx.clone(), connected_at: Instant::now() });
                let class = state
                    .pool
                    .client_info(node, now)
                    .map_or(PriorityClass::Free, |info| info.class);
                Ok((capacity, class))
            }
            Err(PoolError::AlreadyConnected(id)) => Err(AdmitError::AlreadyConnected(id)),
            Err(error) => {
                tracing::debug!(%error, "client not admitted");
                Err(AdmitError::Rejected)
            }
        };
        core.settle(&mut state, now);
        drop(state);
        match outcome {
            Ok((capacity, class)) => Ok(ClientHandle {
                service: self.clone(),
                node,
                serial,
                capacity,
                class,
                tx,
                rx,
                limiter: Limiter::new(self.inner.rate_limit, Instant::now()),
                paying: Arc::new(AtomicBool::new(false)),
            }),
            Err(error) => {
                core.metrics.client_rejected();
                Err(error)
            }
        }
    }

    fn disconnect(&self, node: NodeId, serial: u64) {
        let core = &self.inner.core;
        let now = core.now();
        let mut state = core.lock();
        if state.sessions.get(&node).is_some_and(|slot| slot.serial == serial) {
            state.sessions.remove(&node);
            let _ = state.pool.disconnect(node, now);
        }
        core.settle(&mut state, now);
    }

    /// Runs the pool's timers and the periodic checkpoint until `shutdown`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let core = Arc::clone(&self.inner.core);
        let mut checkpoint = tokio::time::interval(self.inner.checkpoint_interval);
        checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        checkpoint.tick().await;
        loop {
            let deadline = core.lock().armed.map(|at| core.instant_of(at));
            enum Wake {
                Timer,
                Rearm,
                Checkpoint,
                Stop,
            }
            let wake = tokio::select! {
                _ = sleep_until(deadline) => Wake::Timer,
                _ = core.wake.notified() => Wake::Rearm,
                _ = checkpoint.tick() => Wake::Checkpoint,
                _ = shutdown.wait_for(|stop| *stop) => Wake::Stop,
            };
            match wake {
                Wake::Timer => {
                    let now = core.now();
                    let mut state = core.lock();
                    state.armed = None;
                    state.pool.handle_timeout(now);
                    core.settle(&mut state, now);
                    // settle re-arms only when the timer moved earlier; arm it in any case.
                    state.armed = state.pool.poll_timeout();
                }
                Wake::Rearm => {}
                Wake::Checkpoint => {
                    // O(clients): with the checkpoint, not with every request.
                    let paid = core.lock().pool.paid_capacity();
                    core.metrics.set_priority_capacity(paid);
                    if let Err(error) = self.checkpoint().await {
                        tracing::warn!(%error, "balance checkpoint failed");
                    }
                }
                Wake::Stop => return,
            }
        }
    }

    /// Writes every balance to the ledger (fsynced); a no-op without a ledger.
    pub async fn checkpoint(&self) -> Result<(), LedgerError> {
        let Some(ledger) = self.inner.ledger.clone() else { return Ok(()) };
        let core = &self.inner.core;
        let now = core.now();
        let (snapshot, as_of_seq) = {
            let mut state = core.lock();
            let snapshot = state.pool.balances(now);
            // Read under the lock: a payment's ledger write also runs under it, so every
            // payment logged at or after this seq is missing from the snapshot.
            let as_of_seq = ledger.next_seq();
            core.settle(&mut state, now);
            (snapshot, as_of_seq?)
        };
        let service = self.clone();
        tokio::task::spawn_blocking(move || service.write_checkpoint(&ledger, snapshot, as_of_seq))
            .await
            .map_err(|error| LedgerError::Io(std::io::Error::other(error.to_string())))?
    }

    fn write_checkpoint(
        &self,
        ledger: &Ledger,
        snapshot: BalanceSnapshot,
        as_of_seq: u64,
    ) -> Result<(), LedgerError> {
        let mut positive: Vec<(NodeId, u64)> = snapshot
            .pos
            .iter()
            .map(|(id, value)| (*id, value.value(snapshot.pos_offset)))
            .collect();
        let mut negative: Vec<(B256, u64)> = snapshot
            .neg
            .iter()
            .filter_map(|(id, value)| Some((free_id_key(id)?, value.value(snapshot.neg_offset))))
            .collect();
        // Rows stored before (by a checkpoint, a restore or a payment) whose balance is now
        // gone are written as 0 (removed); a payment logged since is re-added by the ledger.
        let in_pos: HashSet<NodeId> = positive.iter().map(|(id, _)| *id).collect();
        let in_neg: HashSet<B256> = negative.iter().map(|(id, _)| *id).collect();
        let on_disk: Vec<NodeId> =
            ledger.positive_balances()?.into_iter().map(|(id, _)| id).collect();
        let mut stored = self.inner.stored.lock().unwrap_or_else(|p| p.into_inner());
        for id in on_disk.iter().chain(stored.0.iter()) {
            if !in_pos.contains(id) {
                positive.push((*id, 0));
            }
        }
        for key in &stored.1 {
            if !in_neg.contains(key) {
                negative.push((*key, 0));
            }
        }
        positive.sort_unstable();
        positive.dedup();
        let checkpoint = Checkpoint {
            as_of_seq,
            time_ms: unix_ms(SystemTime::now()),
            positive,
            negative,
            meta: vec![
                (META_POS_OFFSET.to_owned(), snapshot.pos_offset.0.to_be_bytes().to_vec()),
                (META_NEG_OFFSET.to_owned(), snapshot.neg_offset.0.to_be_bytes().to_vec()),
            ],
        };
        ledger.checkpoint(&checkpoint)?;
        *stored = (in_pos, in_neg);
        Ok(())
    }

    /// The final checkpoint and the redeemer's stop (after the clients are gone).
    pub async fn shutdown(&self) {
        if let Err(error) = self.checkpoint().await {
            tracing::error!(%error, "final balance checkpoint failed");
        }
        if let Some(redeem) = self.inner.redeem.get() {
            redeem.shutdown().await;
        }
    }

    // --- what the price list and the admin API read --------------------------------------

    /// The pool as a whole.
    pub fn server_info(&self) -> ServerInfo {
        self.inner.core.lock().pool.server_info()
    }

    /// The capacity held by connected paid clients.
    pub fn priority_capacity(&self) -> u64 {
        self.inner.core.lock().pool.paid_capacity()
    }

    /// The receivers offered (names).
    pub fn receiver_names(&self) -> Vec<String> {
        self.inner.receivers.get().map(Receivers::names).unwrap_or_default()
    }

    /// The channel terms, if channels are accepted.
    pub fn channel_terms(&self) -> Option<ChannelTerms> {
        self.inner.channel_terms.get().cloned()
    }

    /// The exchange rate.
    pub fn tokens_per_wei(&self) -> ExchangeRate {
        self.inner.tokens_per_wei
    }

    /// The `PriceList` of a PriceReply.
    pub fn price_list(&self) -> PriceList {
        let info = self.server_info();
        PriceList {
            min_capacity: info.min_capacity,
            total_capacity: info.total_capacity,
            free_capacity: info.free_capacity,
            pos_factors: info.pos_factors,
            neg_factors: info.neg_factors,
            tokens_per_wei: self.inner.tokens_per_wei,
            connected_bias_secs: info.connected_bias.as_secs(),
            receivers: self.receiver_names(),
            channel: self.channel_terms(),
        }
    }

    /// The standing of each of `ids` (empty: every connected client); `None` for an id
    /// neither connected nor holding a balance.
    pub fn client_info(&self, ids: &[NodeId]) -> Vec<(NodeId, ClientStatus)> {
        let core = &self.inner.core;
        let now = core.now();
        let mut state = core.lock();
        let ids: Vec<NodeId> =
            if ids.is_empty() { state.sessions.keys().copied().collect() } else { ids.to_vec() };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let connected_for = state.sessions.get(&id).map(|slot| slot.connected_at.elapsed());
            let status = match state.pool.client_info(id, now) {
                Some(info) => ClientStatus {
                    connected: connected_for.is_some(),
                    connection_time: connected_for,
                    capacity: info.capacity,
                    pos: info.balance.pos,
                    neg: info.balance.neg,
                    priority: info.priority,
                    class: info.class,
                },
                None => {
                    // Not connected (or unknown: zero balances, so every id asked for
                    // gets an answer).
                    let pos = state.pool.pos_balance(id, now);
                    ClientStatus {
                        connected: false,
                        connection_time: None,
                        capacity: 0,
                        pos,
                        neg: 0,
                        priority: 0,
                        class: if pos > 0 { PriorityClass::Paid } else { PriorityClass::Free },
                    }
                }
            };
            out.push((id, status));
        }
        core.settle(&mut state, now);
        out
    }

    /// Operator credit (`les_addBalance`): durable, idempotent by `reference`.
    pub async fn add_balance(
        &self,
        node: NodeId,
        amount: i64,
        reference: Option<String>,
    ) -> Result<AddBalance, ServiceError> {
        let credit = self.inner.credit.get().ok_or(ServiceError::NoLedger)?;
        let outcome = credit.add_balance(node, amount, reference, SystemTime::now()).await?;
        if !outcome.duplicate && outcome.new > outcome.old {
            self.inner.core.metrics.tokens_credited(outcome.new - outcome.old);
        }
        Ok(outcome)
    }

    /// Sets a paid client's capacity (the path of lespay CapacityRequest); returns the
    /// capacity held now and the client's standing.
    pub fn set_capacity(
        &self,
        node: NodeId,
        capacity: u64,
    ) -> Result<(u64, WireBalance), ServiceError> {
        let core = &self.inner.core;
        let now = core.now();
        let mut state = core.lock();
        let result = state.pool.set_capacity(node, capacity, now);
        let balance = standing(&mut state.pool, node, now);
        // The session applies the new flow parameters when told; admin calls and lespay
        // requests alike go through its channel.
        if let (Ok(granted), Some(balance), Some(slot)) =
            (&result, balance, state.sessions.get(&node))
        {
            let _ = slot.tx.send(Command::Capacity { capacity: *granted, balance });
        }
        core.settle(&mut state, now);
        drop(state);
        match result {
            Ok(granted) => {
                let balance =
                    balance.unwrap_or_else(|| wire_balance(0, 0, granted, PriorityClass::Paid));
                Ok((granted, balance))
            }
            Err(PoolError::NotConnected(id)) => Err(ServiceError::NotConnected(id)),
            Err(PoolError::NoPriority(id)) => Err(ServiceError::NoPriority(id)),
            Err(error) => Err(ServiceError::Pool(error)),
        }
    }

    /// Changes the price factors (`les_setPriceFactors`); a factor set not given stays.
    /// Everyone is charged at the old prices up to now. Returns the factors in force.
    pub fn set_price_factors(
        &self,
        positive: Option<PriceFactors>,
        negative: Option<PriceFactors>,
    ) -> Result<(PriceFactors, PriceFactors), ServiceError> {
        let core = &self.inner.core;
        let now = core.now();
        let mut state = core.lock();
        let config = state.pool.config();
        let pos = positive.unwrap_or(config.pos_factors);
        let neg = negative.unwrap_or(config.neg_factors);
        state.pool.set_price_factors(pos, neg, now);
        core.settle(&mut state, now);
        Ok((pos, neg))
    }

    /// Changes the connected bias (`les_setConnectedBias`); returns it in seconds.
    pub fn set_connected_bias(&self, secs: u64) -> Result<u64, ServiceError> {
        let core = &self.inner.core;
        let now = core.now();
        let mut state = core.lock();
        state.pool.set_connected_bias(Duration::from_secs(secs));
        core.settle(&mut state, now);
        Ok(secs)
    }

    /// The payment log from `from` on, at most `count` entries.
    pub fn payment_log(&self, from: u64, count: usize) -> Result<Vec<LogEntry>, ServiceError> {
        let ledger = self.inner.ledger.as_ref().ok_or(ServiceError::NoLedger)?;
        Ok(ledger.log(from, count)?)
    }

    /// Whether `node` is connected now.
    pub fn is_connected(&self, node: NodeId) -> bool {
        self.inner.core.lock().sessions.contains_key(&node)
    }
}

/// A client as the admin API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientStatus {
    /// Connected now.
    pub connected: bool,
    /// For how long, if connected.
    pub connection_time: Option<Duration>,
    /// Capacity held (0 if not connected).
    pub capacity: u64,
    /// Positive balance.
    pub pos: u64,
    /// Negative balance (0 for a disconnected client: debt is keyed by address).
    pub neg: u64,
    /// Priority at its capacity.
    pub priority: i64,
    /// Paid or free.
    pub class: PriorityClass,
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The per-client lespay rate limit ([`RateLimit`]).
#[derive(Debug)]
struct Limiter {
    limit: RateLimit,
    /// Tokens × 1000, so refill needs no floats.
    milli_tokens: u64,
    last: Instant,
    window_start: Instant,
    refused: u32,
}

/// What the limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Serve,
    Refuse,
    Disconnect,
}

impl Limiter {
    fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            milli_tokens: u64::from(limit.burst) * 1000,
            last: now,
            window_start: now,
            refused: 0,
        }
    }

    fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        let refill = u64::try_from(elapsed.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(self.limit.per_second));
        self.milli_tokens =
            self.milli_tokens.saturating_add(refill).min(u64::from(self.limit.burst) * 1000);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            return Verdict::Serve;
        }
        if now.saturating_duration_since(self.window_start) > RATE_WINDOW {
            self.window_start = now;
            self.refused = 0;
        }
        self.refused = self.refused.saturating_add(1);
        if self.refused > self.limit.max_refused { Verdict::Disconnect } else { Verdict::Refuse }
    }
}

/// The request id of a lespay payload that did not decode, if its first list element is
/// one (so the Error reply can still be matched); 0 otherwise.
fn salvage_req_id(payload: &[u8]) -> u64 {
    let mut buf = payload;
    match alloy_rlp::Header::decode(&mut buf) {
        Ok(header) if header.list => <u64 as alloy_rlp::Decodable>::decode(&mut buf).unwrap_or(0),
        _ => 0,
    }
}

/// One client session's link to the service; dropping it removes the client from the pool.
#[derive(Debug)]
pub struct ClientHandle {
    service: PayService,
    node: NodeId,
    serial: u64,
    capacity: u64,
    class: PriorityClass,
    tx: mpsc::UnboundedSender<Command>,
    rx: mpsc::UnboundedReceiver<Command>,
    limiter: Limiter,
    paying: Arc<AtomicBool>,
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        self.service.disconnect(self.node, self.serial);
    }
}

impl ClientHandle {
    /// The capacity the client was admitted at.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The class the client was admitted in (later changes come as [`Command::Capacity`]).
    pub fn class(&self) -> PriorityClass {
        self.class
    }

    /// The node id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The service.
    pub fn service(&self) -> &PayService {
        &self.service
    }

    /// The next command for the session (never ends while the handle lives).
    pub async fn next_command(&mut self) -> Option<Command> {
        self.rx.recv().await
    }

    /// A request was served at `real_cost` cost units: charge it.
    pub fn request_served(&self, real_cost: u64) {
        let core = &self.service.inner.core;
        let now = core.now();
        let mut state = core.lock();
        state.pool.request_served(self.node, real_cost, now);
        core.settle(&mut state, now);
    }

    /// lesd was overloaded and froze this client: the pool lowers the total capacity by the
    /// client's share (research §1.3) and squeezes the weakest clients to fit.
    pub fn overloaded(&self) {
        let core = &self.service.inner.core;
        let now = core.now();
        let mut state = core.lock();
        state.pool.freeze(self.node, now);
        core.settle(&mut state, now);
    }

    /// Handles one lespay message from the client.
    pub fn lespay(&mut self, code: u64, payload: &[u8]) -> LespayOutcome {
        let message = if payload.len() > MAX_PAYLOAD_SIZE {
            Err(messages::LespayError::TooLarge { size: payload.len() })
        } else {
            LespayMessage::decode(code, payload)
        };
        match self.limiter.check(Instant::now()) {
            Verdict::Serve => {}
            Verdict::Refuse => {
                let req_id = message.as_ref().ok().and_then(LespayMessage::req_id).unwrap_or(0);
                return LespayOutcome::Reply(LespayMessage::error(
                    req_id,
                    ErrorCode::TooManyRequests,
                    "too many lespay requests; slow down",
                ));
            }
            Verdict::Disconnect => return LespayOutcome::Disconnect,
        }
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                let req_id =
                    if payload.len() > MAX_PAYLOAD_SIZE { 0 } else { salvage_req_id(payload) };
                return LespayOutcome::Reply(LespayMessage::error(
                    req_id,
                    ErrorCode::BadProof,
                    format!("malformed lespay message: {error}"),
                ));
            }
        };
        let service = &self.service;
        let core = &service.inner.core;
        let node = self.node;
        match message {
            LespayMessage::PriceQuery { req_id } => {
                LespayOutcome::Reply(LespayMessage::PriceReply {
                    req_id,
                    prices: Box::new(service.price_list()),
                })
            }
            LespayMessage::CapacityQuery { req_id, bias_secs, add_tokens } => {
                let add: Vec<i64> = add_tokens.iter().map(|a| a.clamp_i64()).collect();
                let now = core.now();
                let mut state = core.lock();
                let capacities = state.pool.capacity_query(node, bias_secs, &add, now);
                core.settle(&mut state, now);
                LespayOutcome::Reply(LespayMessage::CapacityReply { req_id, capacities })
            }
            LespayMessage::BalanceQuery { req_id } => {
                let now = core.now();
                let mut state = core.lock();
                let balance = standing(&mut state.pool, node, now);
                core.settle(&mut state, now);
                match balance {
                    Some(balance) => {
                        LespayOutcome::Reply(LespayMessage::BalanceReply { req_id, balance })
                    }
                    None => LespayOutcome::Reply(LespayMessage::error(
                        req_id,
                        ErrorCode::Internal,
                        "not in the client pool",
                    )),
                }
            }
            LespayMessage::CapacityRequest { req_id, capacity } => {
                let now = core.now();
                let mut state = core.lock();
                let result = state.pool.set_capacity(node, capacity, now);
                let balance = standing(&mut state.pool, node, now);
                core.settle(&mut state, now);
                drop(state);
                match (result, balance) {
                    (Ok(granted), Some(balance)) => LespayOutcome::Granted {
                        capacity: granted,
                        reply: LespayMessage::CapacityGranted {
                            req_id,
                            capacity: granted,
                            balance,
                        },
                    },
                    (Err(PoolError::NoPriority(_)), _) => {
                        LespayOutcome::Reply(LespayMessage::error(
                            req_id,
                            ErrorCode::NotPriority,
                            "capacity above the minimum needs a positive balance",
                        ))
                    }
                    (Ok(_), None) | (Err(_), _) => LespayOutcome::Reply(LespayMessage::error(
                        req_id,
                        ErrorCode::Internal,
                        "not in the client pool",
                    )),
                }
            }
            LespayMessage::Pay { req_id, receiver, proof } => self.pay(req_id, receiver, proof),
            other => LespayOutcome::Reply(LespayMessage::error(
                other.req_id().unwrap_or(0),
                ErrorCode::BadProof,
                "not a lespay request",
            )),
        }
    }

    /// Pay: verified and credited by the receiver (the ledger write is durable and the pool
    /// credited before it returns), answered as a [`Command::Send`]. One at a time.
    fn pay(
        &mut self,
        req_id: u64,
        receiver: String,
        proof: alloy_primitives::Bytes,
    ) -> LespayOutcome {
        let Some(receivers) = self.service.inner.receivers.get().cloned() else {
            return LespayOutcome::Reply(LespayMessage::error(
                req_id,
                ErrorCode::UnknownReceiver,
                format!("unknown payment receiver {receiver:?}: this server accepts no payments"),
            ));
        };
        if receivers.get(&receiver).is_err() {
            return LespayOutcome::Reply(
                PaymentError::UnknownReceiver(receiver).to_message(req_id),
            );
        }
        if self.paying.swap(true, Ordering::AcqRel) {
            return LespayOutcome::Reply(LespayMessage::error(
                req_id,
                ErrorCode::TooManyRequests,
                "a payment of this client is being processed",
            ));
        }
        let paying = Arc::clone(&self.paying);
        let tx = self.tx.clone();
        let node = self.node;
        let metrics = self.service.inner.core.metrics.clone();
        tokio::spawn(async move {
            let reply = match receivers.receive(&receiver, node, &proof, SystemTime::now()).await {
                Ok(receipt) => {
                    metrics.payment("accepted");
                    metrics.tokens_credited(receipt.credited);
                    LespayMessage::PayReply {
                        req_id,
                        credited: receipt.credited,
                        balance: receipt.balance,
                        receipt: receipt.reply.into(),
                    }
                }
                Err(error) => {
                    metrics.payment("rejected");
                    tracing::debug!(%node, %error, "payment not taken");
                    error.to_message(req_id)
                }
            };
            paying.store(false, Ordering::Release);
            let _ = tx.send(Command::Send(reply));
        });
        LespayOutcome::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ids_follow_the_rule() {
        let node = NodeId::repeat_byte(7);
        let remote: SocketAddr = "10.1.2.3:30303".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:30303".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:1".parse().unwrap();
        assert_eq!(FreeIdRule::Address.free_id(node, remote), vec![10, 1, 2, 3]);
        assert_eq!(FreeIdRule::Address.free_id(node, mapped), vec![10, 1, 2, 3]);
        assert_eq!(FreeIdRule::Address.free_id(node, loopback), node.0.to_vec());
        assert_eq!(FreeIdRule::NodeId.free_id(node, remote), node.0.to_vec());
    }

    #[test]
    fn free_id_keys_round_trip() {
        for id in [vec![10, 1, 2, 3], vec![0xfe; 16], NodeId::repeat_byte(9).0.to_vec()] {
            let key = free_id_key(&id).expect("encodable");
            assert_eq!(free_id_of_key(&key), id);
        }
        assert_eq!(free_id_key(&[1; 40]), None);
        assert_eq!(free_id_key(&[1; 5]), None, "only IPv4, IPv6 and node ids");
    }

    #[test]
    fn the_limiter_refuses_then_disconnects_and_refills() {
        let limit = RateLimit { burst: 2, per_second: 1, max_refused: 2 };
        let start = Instant::now();
        let mut limiter = Limiter::new(limit, start);
        assert_eq!(limiter.check(start), Verdict::Serve);
        assert_eq!(limiter.check(start), Verdict::Serve);
        assert_eq!(limiter.check(start), Verdict::Refuse);
        assert_eq!(limiter.check(start), Verdict::Refuse);
        assert_eq!(limiter.check(start), Verdict::Disconnect);
        let later = start + Duration::from_secs(1);
        assert_eq!(limiter.check(later), Verdict::Serve);
    }

    #[test]
    fn request_ids_are_salvaged_from_malformed_payloads() {
        // [7, <garbage>]: a list whose first element is the id.
        assert_eq!(salvage_req_id(&[0xc3, 0x07, 0xff, 0xff]), 7);
        assert_eq!(salvage_req_id(&[0x07]), 0);
        assert_eq!(salvage_req_id(&[]), 0);
    }
}
