//! The server's client pool: who is connected, at what capacity, and who is kicked when
//! there is not room for everyone. It is the service model's auction (research notes
//! §2.4–§3.3): capacity goes to the clients with the most paid tokens per unit of capacity,
//! then to free clients with the least recent debt, and the marginal active client sets
//! the price of entry. `lesd` drives it; this module is sans-IO (time comes in as
//! [`Timestamp`], effects go out as [`PoolEvent`]s and return values).
//!
//! Model, following geth's `vflux/server` where it is sound:
//! - Every connected client is active with at least `min_capacity`; the pool keeps
//!   `sum(capacity) <= total capacity` and `count <= max_count` after every call. A
//!   client that loses its place is removed and reported as [`PoolEvent::Deactivated`]
//!   (LES/4 has no inactive allowance, so the driver disconnects it). Free clients
//!   (`pos == 0`) hold exactly `min_capacity`.
//! - Priority ([`Balance::priority`]): `floor(pos / capacity)` for payers, `-neg` for free
//!   clients. A newcomer, or a client asking for more capacity, is valued at
//!   [`Balance::estimate_priority`] with the connected bias: it must still outrank every
//!   client it would squeeze *after* paying for `bias` of connection. Incumbents are valued
//!   at their priority as of their last settlement. Ties go to the incumbent.
//! - Squeezing takes the lowest-priority active client first: a payer above
//!   `min_capacity` loses a quarter of its capacity (geth `capacityStepDiv`) and is
//!   re-ranked, anyone else is deactivated. Admission, capacity requests, capacity queries
//!   and total-capacity drops all run this one procedure, so a capacity query's answer is
//!   exactly what a capacity request at the same moment would get.
//! - Charging is lazy: a client is settled (charged up to `now`) whenever it is touched,
//!   when its paid balance is due to run out (a timer), and at every refresh (every
//!   `refresh_period`, geth's 10 s), when all active clients are settled and re-ranked.
//!   Incumbents' priorities are therefore at most one refresh period old, like geth's
//!   lazy queue; with `refresh_period == 0` every call that moves time settles everyone
//!   (exact, O(n log n) per call). Everything else is O(log n) per step.
//!
//! Balances are kept here (the pool is their only writer while the server runs): `pos`
//! by node id, `neg` by the free-client id the driver derives from the address.
//! [`ClientPool::balances`] exports them with the expiry offsets for checkpointing and
//! [`ClientPool::restore`] loads them at startup. Paid balances are never dropped for
//! being small.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use alloy_primitives::map::B256Map;

use crate::crypto::NodeId;
use crate::flow::{BUF_LIMIT_RATIO, CostTable, FlowParams};
use crate::pay::balance::{
    Balance, BalanceError, ChargeCarry, ExpiredValue, Expirer, LogOffset, PriceFactors, add_signed,
};
use crate::time::Timestamp;

/// The key of a client's negative balance: bytes the driver derives from the remote
/// address (IP octets; the node id for loopback peers), because new node keys are free but
/// addresses are not.
pub type FreeId = Vec<u8>;

/// geth's `defaultConnectedBias`: a challenger must still outrank an incumbent after
/// paying for this much connection.
pub const DEFAULT_CONNECTED_BIAS: Duration = Duration::from_secs(180);

/// How often all active clients are charged and re-ranked (geth's lazy-queue refresh).
pub const DEFAULT_REFRESH_PERIOD: Duration = Duration::from_secs(10);

/// A payer above the minimum loses `capacity / CAPACITY_STEP_DIV` per squeeze step.
pub const CAPACITY_STEP_DIV: u64 = 4;

/// On a freeze, `ln(total)` drops by this times the frozen share of connected capacity.
pub const CAPACITY_DROP_FACTOR: f64 = 0.1;

/// Without freezes, `ln(total)` rises by one per this much time (geth `capacityRaiseTC`).
pub const CAPACITY_RAISE_TC: Duration = Duration::from_secs(3 * 3600);

/// The smallest capacity whose buffer (capacity × [`BUF_LIMIT_RATIO`]) holds
/// `min_buffer_limit`; research §1.2.
pub fn min_capacity(min_buffer_limit: u64) -> u64 {
    min_buffer_limit.div_ceil(BUF_LIMIT_RATIO)
}

/// The minimum (and free-client) capacity with geth's default cost table: 16,000.
pub fn default_min_capacity() -> u64 {
    min_capacity(CostTable::geth_min_buffer_limit())
}

/// The flow-control parameters that go with a pool capacity (MRR = capacity, BL = 6000 ×
/// capacity). The mapping itself lives in [`FlowParams::for_capacity`]; the pool's users
/// call this so a capacity never reaches flow control another way.
pub fn flow_params(capacity: u64, costs: CostTable) -> FlowParams {
    FlowParams::for_capacity(capacity, costs)
}

/// The pool's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// The least capacity an active client holds, and what every free client gets.
    pub min_capacity: u64,
    /// The most capacity all active clients may hold together (the starting total
    /// capacity; freezes lower the current total below it).
    pub max_capacity: u64,
    /// The most clients active at once.
    pub max_count: usize,
    /// How much future connection a challenger must be able to pay for.
    pub connected_bias: Duration,
    /// The price charged to `pos`.
    pub pos_factors: PriceFactors,
    /// The price at which debt accrues to `neg`.
    pub neg_factors: PriceFactors,
    /// Expiry time constant of `pos` (zero: never).
    pub pos_tau: Duration,
    /// Expiry time constant of `neg` (zero: never).
    pub neg_tau: Duration,
    /// How often all active clients are settled and re-ranked (zero: on every call).
    pub refresh_period: Duration,
}

impl PoolConfig {
    /// `max_count` clients sharing `max_capacity`, with geth's defaults for the rest:
    /// minimum capacity 16,000, bias 3 min, default price factors, no expiry.
    pub fn new(max_capacity: u64, max_count: usize) -> Self {
        Self {
            min_capacity: default_min_capacity(),
            max_capacity,
            max_count,
            connected_bias: DEFAULT_CONNECTED_BIAS,
            pos_factors: PriceFactors::GETH_DEFAULT,
            neg_factors: PriceFactors::GETH_DEFAULT,
            pos_tau: Duration::ZERO,
            neg_tau: Duration::ZERO,
            refresh_period: DEFAULT_REFRESH_PERIOD,
        }
    }
}

/// Whether a client is served because it pays (`lespay/1` `priority_class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PriorityClass {
    /// No paid balance: exactly the minimum capacity, ranked by debt.
    Free = 0,
    /// A positive paid balance: may hold more, ranked by balance per capacity.
    Paid = 1,
}

impl PriorityClass {
    fn of(balance: &Balance) -> Self {
        if balance.pos > 0 { Self::Paid } else { Self::Free }
    }
}

/// Something the driver must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    /// A connected client's capacity or class changed without it asking (squeezed by a
    /// newcomer, or its paid balance ran out): push a `CapacityUpdate` and apply
    /// [`flow_params`] of the new capacity.
    CapacityChanged {
        /// The client.
        id: NodeId,
        /// Its capacity now.
        capacity: u64,
        /// Its class now.
        class: PriorityClass,
    },
    /// The client lost its place and is no longer in the pool: send `CapacityUpdate(0)`
    /// and disconnect it.
    Deactivated {
        /// The client.
        id: NodeId,
    },
}

/// One connected client as the pool sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// Its capacity.
    pub capacity: u64,
    /// Its balances.
    pub balance: Balance,
    /// Its class.
    pub class: PriorityClass,
    /// Its priority at its capacity.
    pub priority: i64,
}

/// The pool as a whole (for `PriceReply` and the admin API).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    /// The minimum capacity.
    pub min_capacity: u64,
    /// The capacity active clients may hold now.
    pub total_capacity: u64,
    /// The configured upper bound of `total_capacity`.
    pub max_capacity: u64,
    /// The capacity active clients hold.
    pub active_capacity: u64,
    /// `total_capacity - active_capacity`.
    pub free_capacity: u64,
    /// Active clients.
    pub active_count: usize,
    /// The most active clients.
    pub max_count: usize,
    /// The `pos` price.
    pub pos_factors: PriceFactors,
    /// The `neg` price.
    pub neg_factors: PriceFactors,
    /// The connected bias.
    pub connected_bias: Duration,
}

/// Why a pool call did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// `connect` for a client already in the pool.
    #[error("client {0} is already connected")]
    AlreadyConnected(NodeId),
    /// A call for a client not in the pool.
    #[error("client {0} is not connected")]
    NotConnected(NodeId),
    /// No room: the newcomer does not outrank the clients it would have to squeeze.
    /// The driver disconnects it.
    #[error("client {0} rejected: the pool is full and it does not outrank the weakest client")]
    Rejected(NodeId),
    /// A capacity request from a client without a paid balance (`lespay/1` error 4).
    #[error("client {0} has no paid balance and cannot hold more than the minimum capacity")]
    NoPriority(NodeId),
    /// A balance change was refused; nothing changed.
    #[error("balance of {id}: {source}")]
    Balance {
        /// The client.
        id: NodeId,
        /// What was wrong.
        source: BalanceError,
    },
    /// `restore` while clients are connected.
    #[error("balances can only be restored while no client is connected ({0} are)")]
    RestoreWhileConnected(usize),
}

/// The pool's balances and expiry offsets, for a checkpoint or shutdown. Records are
/// [`ExpiredValue`]s against the offsets, so a checkpoint taken at any time can be loaded
/// with the offsets saved later and still read correctly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BalanceSnapshot {
    /// Paid balances by node id (zero balances are left out).
    pub pos: Vec<(NodeId, ExpiredValue)>,
    /// Debts by free-client id (zero debts are left out).
    pub neg: Vec<(FreeId, ExpiredValue)>,
    /// The `pos` expiry offset.
    pub pos_offset: LogOffset,
    /// The `neg` expiry offset.
    pub neg_offset: LogOffset,
}

#[derive(Debug, Clone)]
struct Client {
    free_id: FreeId,
    capacity: u64,
    carry: ChargeCarry,
    /// Charged up to here.
    settled: Timestamp,
    /// The priority it is ranked under in `index`.
    key: i64,
    /// When its paid balance runs out at its current capacity (a timer).
    depletion: Option<Timestamp>,
}

/// The total capacity as it moves with overloads (research §1.3), in the log domain.
#[derive(Debug, Clone)]
struct TotalCapacity {
    max: u64,
    ln: f64,
    ln_min: f64,
    ln_max: f64,
    updated: Timestamp,
}

impl TotalCapacity {
    fn new(min: u64, max: u64, now: Timestamp) -> Self {
        let ln_max = (max.max(1) as f64).ln();
        Self { max, ln: ln_max, ln_min: (min.max(1) as f64).ln().min(ln_max), ln_max, updated: now }
    }

    fn value(&self) -> u64 {
        // `as` saturates; the log is clamped to the configured maximum anyway.
        (self.ln.exp().round() as u64).min(self.max)
    }

    /// Recovery: `ln` rises by `dt / CAPACITY_RAISE_TC`, but not beyond what the
    /// connected clients justify (`max(active + 2·min, 1.125·active)`).
    fn recover(&mut self, active: u64, min_capacity: u64, now: Timestamp) {
        let dt = now.saturating_duration_since(self.updated);
        self.updated = self.updated.max(now);
        let limit = (active.saturating_add(min_capacity.saturating_mul(2)) as f64)
            .max(1.125 * active as f64);
        let ln_limit = limit.max(1.0).ln().min(self.ln_max);
        if self.ln < ln_limit {
            let raised = self.ln + dt.as_secs_f64() / CAPACITY_RAISE_TC.as_secs_f64();
            self.ln = raised.min(ln_limit);
        }
    }

    fn freeze(&mut self, frozen: u64, active: u64) {
        let ratio = if active == 0 { 1.0 } else { (frozen as f64 / active as f64).min(1.0) };
        self.ln = (self.ln - CAPACITY_DROP_FACTOR * ratio).max(self.ln_min);
    }
}

/// One squeeze step.
#[derive(Debug, Clone, Copy)]
enum Step {
    Cut { id: NodeId, to: u64 },
    Deactivate { id: NodeId },
}

/// The lowest-priority-first squeeze of the active set, on a scratch copy of the clients
/// it has touched. `free` and `count` describe the active set without `exclude` (the
/// client whose own admission or raise is being tested, whose capacity counts as free).
struct Squeeze<'a> {
    pool: &'a ClientPool,
    base: std::iter::Peekable<std::collections::btree_set::Iter<'a, (i64, NodeId)>>,
    cut: BTreeSet<(i64, NodeId)>,
    caps: B256Map<u64>,
    exclude: Option<NodeId>,
    free: i128,
    count: usize,
    now: Timestamp,
}

impl<'a> Squeeze<'a> {
    fn new(pool: &'a ClientPool, exclude: Option<NodeId>, now: Timestamp) -> Self {
        let mut free = i128::from(pool.total.value()) - i128::from(pool.active_capacity);
        let mut count = pool.clients.len();
        if let Some(c) = exclude.and_then(|id| pool.clients.get(&id)) {
            free += i128::from(c.capacity);
            count -= 1;
        }
        Self {
            pool,
            base: pool.index.iter().peekable(),
            cut: BTreeSet::new(),
            caps: B256Map::default(),
            exclude,
            free,
            count,
            now,
        }
    }

    /// Whether `capacity` more (and, if `slot`, one more client) fits now.
    fn fits(&self, capacity: u64, slot: bool) -> bool {
        self.free >= i128::from(capacity)
            && if slot {
                self.count < self.pool.config.max_count
            } else {
                self.count <= self.pool.config.max_count
            }
    }

    /// Squeezes the weakest client once; returns its priority before the step and the step.
    fn step(&mut self, slot: bool) -> Option<(i64, Step)> {
        while self.base.peek().is_some_and(|(_, id)| Some(*id) == self.exclude) {
            self.base.next();
        }
        let from_cut = match (self.base.peek(), self.cut.first()) {
            (None, None) => return None,
            (Some(b), Some(c)) => c < *b,
            (None, Some(_)) => true,
            (Some(_), None) => false,
        };
        let (priority, id) = if from_cut { self.cut.pop_first()? } else { *self.base.next()? };
        // Only clients already cut have a scratch capacity.
        let cap =
            if from_cut { *self.caps.get(&id)? } else { self.pool.clients.get(&id)?.capacity };
        let min = self.pool.config.min_capacity;
        let over_count = if slot {
            self.count >= self.pool.config.max_count
        } else {
            self.count > self.pool.config.max_count
        };
        if over_count || cap <= min {
            self.free += i128::from(cap);
            self.count -= 1;
            if from_cut {
                self.caps.remove(&id);
            }
            return Some((priority, Step::Deactivate { id }));
        }
        let to = (cap - cap / CAPACITY_STEP_DIV).max(min);
        self.free += i128::from(cap - to);
        self.caps.insert(id, to);
        // Only payers are above the minimum, so `pos` alone gives the priority.
        let pos = self.pool.pos_balance_at(&id, self.now);
        self.cut.insert((Balance { pos, neg: 0 }.priority(to), id));
        Some((priority, Step::Cut { id, to }))
    }

    /// The steps that make room for `capacity` (and a slot, if `slot`) for a client of
    /// `priority`, or `None` if a client at least as strong would have to be squeezed.
    fn plan(mut self, capacity: u64, slot: bool, priority: i64) -> Option<Vec<Step>> {
        let mut steps = Vec::new();
        while !self.fits(capacity, slot) {
            let (victim, step) = self.step(slot)?;
            if victim >= priority {
                return None;
            }
            steps.push(step);
        }
        Some(steps)
    }
}

/// A point of the capacity curve: after some squeeze steps, `free` capacity (and a slot,
/// if `slot`) is available, and `threshold` is the highest priority squeezed to get there.
#[derive(Debug, Clone, Copy)]
struct CurvePoint {
    free: i128,
    slot: bool,
    threshold: i64,
}

/// The room a challenger could make at each priority, as the squeeze frees it. Built only
/// as far as `stop` (no challenger priority above it is asked about).
fn capacity_curve(
    pool: &ClientPool,
    exclude: Option<NodeId>,
    stop: i64,
    now: Timestamp,
) -> Vec<CurvePoint> {
    let mut sq = Squeeze::new(pool, exclude, now);
    let mut threshold = i64::MIN;
    let mut points = vec![CurvePoint { free: sq.free, slot: sq.fits(0, true), threshold }];
    while threshold < stop {
        let Some((victim, _)) = sq.step(true) else { break };
        threshold = threshold.max(victim);
        points.push(CurvePoint { free: sq.free, slot: sq.fits(0, true), threshold });
    }
    points
}

/// Whether `points` (built to `stop`) reached its end: the squeeze ran out of clients.
fn curve_complete(points: &[CurvePoint], stop: i64) -> bool {
    points.last().is_none_or(|p| p.threshold < stop)
}

/// A capacity curve kept for repeated queries. Valid while `generation` matches: the pool
/// bumps it whenever membership, a capacity, a paid balance or the total changes, and at
/// every refresh; request charges between refreshes only make the real squeeze easier
/// than the kept curve says, so a promise made from it still holds.
#[derive(Debug, Clone)]
struct CurveCache {
    generation: u64,
    exclude: Option<NodeId>,
    /// Built as far as this challenger priority, or to the end if `complete`.
    stop: i64,
    complete: bool,
    points: Vec<CurvePoint>,
}

/// Whether a challenger of `priority` at `capacity` gets in: at the first point with room,
/// it must outrank everyone squeezed so far (the same test as [`Squeeze::plan`]).
fn curve_admits(points: &[CurvePoint], capacity: u64, priority: i64) -> bool {
    let k = points.partition_point(|p| !(p.slot && p.free >= i128::from(capacity)));
    points.get(k).is_some_and(|p| priority > p.threshold)
}

/// The server's client pool. See the module documentation.
#[derive(Debug, Clone)]
pub struct ClientPool {
    config: PoolConfig,
    clients: B256Map<Client>,
    /// Active clients by `(priority, id)`, weakest first.
    index: BTreeSet<(i64, NodeId)>,
    depletions: BTreeSet<(Timestamp, NodeId)>,
    pos: B256Map<ExpiredValue>,
    neg: HashMap<FreeId, ExpiredValue>,
    pos_expirer: Expirer,
    neg_expirer: Expirer,
    active_capacity: u64,
    total: TotalCapacity,
    refreshed: Timestamp,
    now: Timestamp,
    events: VecDeque<PoolEvent>,
    generation: u64,
    curve_cache: Option<CurveCache>,
}

impl ClientPool {
    /// An empty pool at `now`.
    pub fn new(config: PoolConfig, now: Timestamp) -> Self {
        let total = TotalCapacity::new(config.min_capacity, config.max_capacity, now);
        Self {
            pos_expirer: Expirer::new(config.pos_tau, now),
            neg_expirer: Expirer::new(config.neg_tau, now),
            config,
            clients: B256Map::default(),
            index: BTreeSet::new(),
            depletions: BTreeSet::new(),
            pos: B256Map::default(),
            neg: HashMap::new(),
            active_capacity: 0,
            total,
            refreshed: now,
            now,
            events: VecDeque::new(),
            generation: 0,
            curve_cache: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    // --- balances ---------------------------------------------------------------------

    fn load(&self, id: &NodeId, free_id: &FreeId, now: Timestamp) -> Balance {
        Balance {
            pos: self.pos.get(id).map_or(0, |v| v.value(self.pos_expirer.offset(now))),
            neg: self.neg.get(free_id).map_or(0, |v| v.value(self.neg_expirer.offset(now))),
        }
    }

    fn stored_balance(&self, id: &NodeId, now: Timestamp) -> Balance {
        match self.clients.get(id) {
            Some(c) => self.load(id, &c.free_id, now),
            None => Balance { pos: self.pos_balance_at(id, now), neg: 0 },
        }
    }

    fn pos_balance_at(&self, id: &NodeId, now: Timestamp) -> u64 {
        self.pos.get(id).map_or(0, |v| v.value(self.pos_expirer.offset(now)))
    }

    fn save(&mut self, id: &NodeId, free_id: &FreeId, balance: Balance, now: Timestamp) {
        if balance.pos == 0 {
            self.pos.remove(id);
        } else {
            self.pos.insert(*id, ExpiredValue::new(balance.pos, self.pos_expirer.offset(now)));
        }
        if balance.neg == 0 {
            self.neg.remove(free_id);
        } else {
            let value = ExpiredValue::new(balance.neg, self.neg_expirer.offset(now));
            match self.neg.get_mut(free_id) {
                Some(v) => *v = value,
                None => {
                    self.neg.insert(free_id.clone(), value);
                }
            }
        }
    }

    /// The paid balance of any node id, connected or not.
    pub fn pos_balance(&mut self, id: NodeId, now: Timestamp) -> u64 {
        self.advance(now);
        self.settle(id, now);
        self.pos_balance_at(&id, now)
    }

    // --- time -------------------------------------------------------------------------

    /// Charges `id` up to `now` and re-ranks it; a paid balance running out demotes it.
    fn settle(&mut self, id: NodeId, now: Timestamp) {
        let Some(c) = self.clients.get(&id) else { return };
        if now > c.settled {
            let elapsed = now.saturating_duration_since(c.settled);
            let (capacity, free_id, mut carry) = (c.capacity, c.free_id.clone(), c.carry);
            // Read at `now`, so expiry up to now applies before the charge.
            let mut balance = self.load(&id, &free_id, now);
            let out = balance.charge_time(
                &mut carry,
                elapsed,
                capacity,
                &self.config.pos_factors,
                &self.config.neg_factors,
            );
            self.save(&id, &free_id, balance, now);
            if let Some(c) = self.clients.get_mut(&id) {
                c.carry = carry;
                c.settled = now;
            }
            if out.depleted {
                self.demote(id);
            }
        }
        self.rekey(id, now);
    }

    /// A client whose paid balance ran out drops to the minimum and becomes free.
    fn demote(&mut self, id: NodeId) {
        self.generation += 1;
        let min = self.config.min_capacity;
        let Some(c) = self.clients.get_mut(&id) else { return };
        self.active_capacity = self.active_capacity - c.capacity + min;
        c.capacity = min;
        c.carry = ChargeCarry::default();
        self.events.push_back(PoolEvent::CapacityChanged {
            id,
            capacity: min,
            class: PriorityClass::Free,
        });
    }

    /// Puts `id` under its current priority in the index and its depletion timer.
    fn rekey(&mut self, id: NodeId, now: Timestamp) {
        let Some(c) = self.clients.get(&id) else { return };
        let balance = self.load(&id, &c.free_id, now);
        let key = balance.priority(c.capacity);
        let depletion = balance
            .time_to_deplete(&c.carry, c.capacity, &self.config.pos_factors)
            .map(|d| c.settled.saturating_add(d));
        let (old_key, old_depletion) = (c.key, c.depletion);
        if key != old_key {
            self.index.remove(&(old_key, id));
            self.index.insert((key, id));
        }
        if depletion != old_depletion {
            if let Some(t) = old_depletion {
                self.depletions.remove(&(t, id));
            }
            if let Some(t) = depletion {
                self.depletions.insert((t, id));
            }
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.key = key;
            c.depletion = depletion;
        }
    }

    /// Brings the pool up to `now`: total-capacity recovery, paid balances that ran out
    /// (each at its own time), the periodic refresh, and the limits.
    fn advance(&mut self, now: Timestamp) {
        let now = now.max(self.now);
        self.total.recover(self.active_capacity, self.config.min_capacity, now);
        while let Some(&(at, id)) = self.depletions.first() {
            if at > now {
                break;
            }
            self.depletions.remove(&(at, id));
            if let Some(c) = self.clients.get_mut(&id) {
                c.depletion = None;
            }
            self.settle(id, at.max(self.now));
        }
        let due = self.refreshed.saturating_add(self.config.refresh_period);
        if now >= due && now > self.refreshed {
            let ids: Vec<NodeId> = self.clients.keys().copied().collect();
            for id in ids {
                self.settle(id, now);
            }
            self.refreshed = now;
            self.generation += 1;
        }
        self.now = now;
        self.enforce_limits(now);
    }

    /// Squeezes until the limits hold (after the total capacity dropped).
    fn enforce_limits(&mut self, now: Timestamp) {
        let steps = {
            let sq = Squeeze::new(self, None, now);
            if sq.fits(0, false) {
                return;
            }
            sq.plan(0, false, i64::MAX).unwrap_or_default()
        };
        self.commit(steps, now);
    }

    fn commit(&mut self, steps: Vec<Step>, now: Timestamp) {
        let mut cuts: Vec<(NodeId, u64)> = Vec::new();
        for step in steps {
            match step {
                Step::Cut { id, to } => match cuts.iter_mut().find(|(c, _)| *c == id) {
                    Some(entry) => entry.1 = to,
                    None => cuts.push((id, to)),
                },
                Step::Deactivate { id } => {
                    cuts.retain(|(c, _)| *c != id);
                    self.remove(id, now);
                    self.events.push_back(PoolEvent::Deactivated { id });
                }
            }
        }
        for (id, to) in cuts {
            if let Some(capacity) = self.set_cap(id, to, now) {
                let class = PriorityClass::of(&self.stored_balance(&id, now));
                self.events.push_back(PoolEvent::CapacityChanged { id, capacity, class });
            }
        }
    }

    /// Settles `id` and sets its capacity (free clients stay at the minimum); returns the
    /// capacity it got.
    fn set_cap(&mut self, id: NodeId, capacity: u64, now: Timestamp) -> Option<u64> {
        self.generation += 1;
        self.settle(id, now);
        let paid = self.stored_balance(&id, now).pos > 0;
        let min = self.config.min_capacity;
        let c = self.clients.get_mut(&id)?;
        let capacity = if paid { capacity.max(min) } else { min };
        self.active_capacity = self.active_capacity - c.capacity + capacity;
        c.capacity = capacity;
        self.rekey(id, now);
        Some(capacity)
    }

    fn remove(&mut self, id: NodeId, now: Timestamp) -> Option<ClientInfo> {
        self.generation += 1;
        self.settle(id, now);
        let info = self.info(&id, now)?;
        let c = self.clients.remove(&id)?;
        self.index.remove(&(c.key, id));
        if let Some(t) = c.depletion {
            self.depletions.remove(&(t, id));
        }
        self.active_capacity -= c.capacity;
        Some(info)
    }

    fn info(&self, id: &NodeId, now: Timestamp) -> Option<ClientInfo> {
        let c = self.clients.get(id)?;
        let balance = self.load(id, &c.free_id, now);
        Some(ClientInfo {
            capacity: c.capacity,
            balance,
            class: PriorityClass::of(&balance),
            priority: balance.priority(c.capacity),
        })
    }

    fn estimate(&self, balance: &Balance, add: i64, bias: Duration, capacity: u64) -> i64 {
        balance.estimate_priority(
            add,
            bias,
            capacity,
            &self.config.pos_factors,
            &self.config.neg_factors,
        )
    }

    // --- the driver's calls ------------------------------------------------------------

    /// Admits a newly connected client at the minimum capacity, squeezing weaker clients
    /// if the pool is full; `Err(Rejected)` means it did not outrank them (after paying
    /// for the connected bias) and the driver must disconnect it.
    pub fn connect(
        &mut self,
        id: NodeId,
        free_id: FreeId,
        now: Timestamp,
    ) -> Result<u64, PoolError> {
        self.advance(now);
        if self.clients.contains_key(&id) {
            return Err(PoolError::AlreadyConnected(id));
        }
        let min = self.config.min_capacity;
        let balance = self.load(&id, &free_id, now);
        let priority = self.estimate(&balance, 0, self.config.connected_bias, min);
        let steps = Squeeze::new(self, None, now)
            .plan(min, true, priority)
            .ok_or(PoolError::Rejected(id))?;
        self.commit(steps, now);
        self.clients.insert(
            id,
            Client {
                free_id,
                capacity: min,
                carry: ChargeCarry::default(),
                settled: now,
                key: balance.priority(min),
                depletion: None,
            },
        );
        self.index.insert((balance.priority(min), id));
        self.active_capacity += min;
        self.generation += 1;
        self.rekey(id, now);
        Ok(min)
    }

    /// Removes a client that went away; its balances stay.
    pub fn disconnect(&mut self, id: NodeId, now: Timestamp) -> Result<ClientInfo, PoolError> {
        self.advance(now);
        self.remove(id, now).ok_or(PoolError::NotConnected(id))
    }

    /// Adds `amount` tokens (negative: takes them) to `id`'s paid balance, connected or not.
    /// Fails without change above 2^63-1; a larger negative amount leaves zero. Returns
    /// `(old, new)`.
    pub fn add_balance(
        &mut self,
        id: NodeId,
        amount: i64,
        now: Timestamp,
    ) -> Result<(u64, u64), PoolError> {
        self.advance(now);
        self.settle(id, now);
        let old = self.pos_balance_at(&id, now);
        let new = add_signed(old, amount).map_err(|source| PoolError::Balance { id, source })?;
        self.generation += 1;
        if new == 0 {
            self.pos.remove(&id);
        } else {
            self.pos.insert(id, ExpiredValue::new(new, self.pos_expirer.offset(now)));
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.carry = ChargeCarry::default();
            let capacity = c.capacity;
            if old == 0 && new > 0 {
                self.events.push_back(PoolEvent::CapacityChanged {
                    id,
                    capacity,
                    class: PriorityClass::Paid,
                });
            } else if old > 0 && new == 0 {
                self.demote(id);
            }
            self.rekey(id, now);
        }
        Ok((old, new))
    }

    /// A paid client asks for `capacity` (0: back to the minimum; below the minimum is
    /// raised to it). Decreases apply at once; an increase is granted only if the capacity
    /// curve says the client can afford it (with the bias), within `[0.95 × capacity,
    /// capacity]`; otherwise nothing changes. Returns the capacity it now holds.
    pub fn set_capacity(
        &mut self,
        id: NodeId,
        capacity: u64,
        now: Timestamp,
    ) -> Result<u64, PoolError> {
        self.advance(now);
        self.settle(id, now);
        let current = self.clients.get(&id).ok_or(PoolError::NotConnected(id))?.capacity;
        let balance = self.stored_balance(&id, now);
        if balance.pos == 0 {
            return Err(PoolError::NoPriority(id));
        }
        let wanted = capacity.max(self.config.min_capacity);
        if wanted <= current {
            return Ok(self.set_cap(id, wanted, now).unwrap_or(current));
        }
        let bias = self.config.connected_bias;
        let affordable = self.max_capacity_for(id, &balance, 0, bias, now);
        let target = affordable.min(wanted);
        if target <= current || target < wanted - wanted / 20 {
            return Ok(current);
        }
        let priority = self.estimate(&balance, 0, bias, target);
        let Some(steps) = Squeeze::new(self, Some(id), now).plan(target, true, priority) else {
            return Ok(current);
        };
        self.commit(steps, now);
        Ok(self.set_cap(id, target, now).unwrap_or(current))
    }

    /// The largest capacity `id` could hold if `add` tokens were added to its balance, with
    /// the bias; 0 if not even the minimum. Its own capacity counts as free.
    fn max_capacity_for(
        &self,
        id: NodeId,
        balance: &Balance,
        add: i64,
        bias: Duration,
        now: Timestamp,
    ) -> u64 {
        let min = self.config.min_capacity;
        let best = self.estimate(balance, add, bias, min);
        let points = capacity_curve(self, Some(id), best, now);
        self.search(&points, balance, add, bias)
    }

    fn search(&self, points: &[CurvePoint], balance: &Balance, add: i64, bias: Duration) -> u64 {
        let min = self.config.min_capacity;
        // Above the minimum the paid balance must also last through the bias: capacity
        // beyond the free share is sold, never lent against future debt.
        let admits = |c: u64| {
            let future =
                balance.estimate(add, bias, c, &self.config.pos_factors, &self.config.neg_factors);
            (c <= min || future.pos > 0) && curve_admits(points, c, future.priority(c))
        };
        if !admits(min) {
            return 0;
        }
        let paid = i128::from(balance.pos) + i128::from(add) > 0;
        if !paid {
            return min;
        }
        // `admits` holds for a prefix of capacities: the challenger's priority falls and
        // the threshold rises as the capacity grows.
        let (mut lo, mut hi) = (min, self.total.value().max(min));
        if admits(hi) {
            return hi;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if admits(mid) { lo = mid } else { hi = mid }
        }
        lo
    }

    /// `lespay/1` CapacityQuery: for each amount in `add` (IntOrInf clamped to i64, ±inf as
    /// the extremes), the largest capacity `id` could get if that many tokens were added
    /// to its balance, with `bias = max(bias_secs, connected bias)`. 0 means it could not
    /// even hold the minimum. Replies never decrease as `add` grows.
    pub fn capacity_query(
        &mut self,
        id: NodeId,
        bias_secs: u64,
        add: &[i64],
        now: Timestamp,
    ) -> Vec<u64> {
        self.advance(now);
        self.settle(id, now);
        let balance = self.stored_balance(&id, now);
        let bias = Duration::from_secs(bias_secs).max(self.config.connected_bias);
        let Some(&largest) = add.iter().max() else { return Vec::new() };
        let best = self.estimate(&balance, largest, bias, self.config.min_capacity);
        let cache = match self.curve_cache.take() {
            Some(c)
                if c.generation == self.generation
                    && c.exclude == Some(id)
                    && (c.complete || c.stop >= best) =>
            {
                c
            }
            _ => {
                let points = capacity_curve(self, Some(id), best, now);
                CurveCache {
                    generation: self.generation,
                    exclude: Some(id),
                    stop: best,
                    complete: curve_complete(&points, best),
                    points,
                }
            }
        };
        let replies = add.iter().map(|&a| self.search(&cache.points, &balance, a, bias)).collect();
        self.curve_cache = Some(cache);
        replies
    }

    /// A served request of `real_cost` cost units: charged at the request factors.
    pub fn request_served(&mut self, id: NodeId, real_cost: u64, now: Timestamp) {
        self.advance(now);
        self.settle(id, now);
        let Some(c) = self.clients.get(&id) else { return };
        let (free_id, mut carry) = (c.free_id.clone(), c.carry);
        let mut balance = self.load(&id, &free_id, now);
        let out = balance.charge_request(
            &mut carry,
            real_cost,
            &self.config.pos_factors,
            &self.config.neg_factors,
        );
        self.save(&id, &free_id, balance, now);
        if let Some(c) = self.clients.get_mut(&id) {
            c.carry = carry;
        }
        if out.depleted {
            self.demote(id);
        }
        self.rekey(id, now);
    }

    /// Flow control froze `id` (an overload): the total capacity drops by
    /// `exp(-0.1 × its share of the connected capacity)` and the weakest clients are
    /// squeezed to fit.
    pub fn freeze(&mut self, id: NodeId, now: Timestamp) {
        self.advance(now);
        let Some(c) = self.clients.get(&id) else { return };
        self.total.freeze(c.capacity, self.active_capacity);
        self.generation += 1;
        self.enforce_limits(now);
    }

    /// Changes the price factors (admin `les_setPriceFactors`): everyone is charged at the
    /// old prices up to `now`, and at the new ones from then on.
    pub fn set_price_factors(&mut self, pos: PriceFactors, neg: PriceFactors, now: Timestamp) {
        self.advance(now);
        let ids: Vec<NodeId> = self.clients.keys().copied().collect();
        for &id in &ids {
            self.settle(id, now);
        }
        self.config.pos_factors = pos;
        self.config.neg_factors = neg;
        // Depletion times follow the new prices.
        for id in ids {
            self.rekey(id, now);
        }
        self.generation += 1;
    }

    /// Changes the connected bias (admin `les_setConnectedBias`); applies to the next
    /// admission, capacity request and query.
    pub fn set_connected_bias(&mut self, bias: Duration) {
        self.config.connected_bias = bias;
        self.generation += 1;
    }

    /// The capacity held by paid clients (O(n); for the admin API, not per request).
    pub fn paid_capacity(&self) -> u64 {
        self.clients
            .iter()
            .filter(|(id, _)| self.pos.get(*id).is_some_and(|v| v.amount > 0))
            .map(|(_, c)| c.capacity)
            .sum()
    }

    /// Runs what is due at `now` (balances running out, the refresh).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
    }

    /// When [`ClientPool::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let depletion = self.depletions.first().map(|&(t, _)| t);
        let refresh = (!self.clients.is_empty() && !self.config.refresh_period.is_zero())
            .then(|| self.refreshed.saturating_add(self.config.refresh_period));
        match (depletion, refresh) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        self.events.pop_front()
    }

    /// A connected client's state at `now`.
    pub fn client_info(&mut self, id: NodeId, now: Timestamp) -> Option<ClientInfo> {
        self.advance(now);
        self.settle(id, now);
        self.info(&id, now)
    }

    /// The pool as a whole.
    pub fn server_info(&self) -> ServerInfo {
        let total = self.total.value();
        ServerInfo {
            min_capacity: self.config.min_capacity,
            total_capacity: total,
            max_capacity: self.config.max_capacity,
            active_capacity: self.active_capacity,
            free_capacity: total.saturating_sub(self.active_capacity),
            active_count: self.clients.len(),
            max_count: self.config.max_count,
            pos_factors: self.config.pos_factors,
            neg_factors: self.config.neg_factors,
            connected_bias: self.config.connected_bias,
        }
    }

    /// All balances as of `now` (active clients charged up to `now`), with the offsets.
    pub fn balances(&mut self, now: Timestamp) -> BalanceSnapshot {
        self.advance(now);
        let ids: Vec<NodeId> = self.clients.keys().copied().collect();
        for id in ids {
            self.settle(id, now);
        }
        let mut pos: Vec<_> = self.pos.iter().map(|(k, v)| (*k, *v)).collect();
        let mut neg: Vec<_> = self.neg.iter().map(|(k, v)| (k.clone(), *v)).collect();
        pos.sort_unstable_by_key(|a| a.0);
        neg.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        BalanceSnapshot {
            pos,
            neg,
            pos_offset: self.pos_expirer.offset(now),
            neg_offset: self.neg_expirer.offset(now),
        }
    }

    /// Loads balances saved by [`ClientPool::balances`] (at startup, before any connect);
    /// replaces all balances and continues expiry from the saved offsets.
    pub fn restore(&mut self, snapshot: BalanceSnapshot, now: Timestamp) -> Result<(), PoolError> {
        if !self.clients.is_empty() {
            return Err(PoolError::RestoreWhileConnected(self.clients.len()));
        }
        self.advance(now);
        self.pos_expirer = Expirer::restore(self.config.pos_tau, snapshot.pos_offset, now);
        self.neg_expirer = Expirer::restore(self.config.neg_tau, snapshot.neg_offset, now);
        self.pos = snapshot.pos.into_iter().filter(|(_, v)| v.amount > 0).collect();
        self.neg = snapshot.neg.into_iter().filter(|(_, v)| v.amount > 0).collect();
        self.generation += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::ClientBuffer;
    use alloy_primitives::B256;

    const SEC: u64 = 1_000_000_000;
    const MIN: u64 = 16_000;

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_nanos(secs * SEC)
    }

    fn node(i: u64) -> NodeId {
        B256::left_padding_from(&i.to_be_bytes())
    }

    fn addr(i: u64) -> FreeId {
        format!("10.0.{}.{}", i / 256, i % 256).into_bytes()
    }

    /// geth's clientpool tests: capacity 1 per client, 1 token per ns of connection.
    fn geth_test_config(slots: u64) -> PoolConfig {
        let f = PriceFactors { time: SEC, capacity: 0, request: 1_000_000 };
        PoolConfig {
            min_capacity: 1,
            max_capacity: slots,
            max_count: slots as usize,
            pos_factors: f,
            neg_factors: f,
            ..PoolConfig::new(slots, slots as usize)
        }
    }

    fn events(pool: &mut ClientPool) -> Vec<PoolEvent> {
        std::iter::from_fn(|| pool.poll_event()).collect()
    }

    /// research §8.2 and §8.3, checked against the pool's own records.
    fn assert_invariants(pool: &ClientPool) {
        let info = pool.server_info();
        let sum: u64 = pool.clients.values().map(|c| c.capacity).sum();
        assert_eq!(sum, pool.active_capacity, "active capacity bookkeeping");
        assert!(sum <= info.total_capacity, "sum {sum} > total {}", info.total_capacity);
        assert!(pool.clients.len() <= pool.config.max_count, "count over the limit");
        assert_eq!(pool.index.len(), pool.clients.len());
        for (id, c) in &pool.clients {
            assert!(c.capacity >= pool.config.min_capacity, "active below the minimum");
            assert!(pool.index.contains(&(c.key, *id)), "client missing from the index");
            let b = pool.load(id, &c.free_id, pool.now);
            if b.pos == 0 {
                assert_eq!(c.capacity, pool.config.min_capacity, "free client above the minimum");
            }
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= (a + b) / 2000.0
    }

    #[test]
    fn check_01_flow_params_follow_capacity() {
        let mut pool = ClientPool::new(PoolConfig::new(1_600_000, 100), at(0));
        let id = node(1);
        let cap = pool.connect(id, addr(1), at(0)).unwrap();
        let mut buffer = ClientBuffer::new(flow_params(cap, CostTable::geth_default()), at(0));
        assert_eq!(buffer.params().min_recharge, MIN);
        assert_eq!(buffer.params().buffer_limit, 6000 * MIN);
        pool.add_balance(id, 1_000_000_000_000, at(0)).unwrap();
        // Increase: applies at once.
        let granted = pool.set_capacity(id, 100_000, at(0)).unwrap();
        assert_eq!(granted, 100_000);
        let p = flow_params(granted, CostTable::geth_default());
        assert_eq!((p.min_recharge, p.buffer_limit), (granted, 6000 * granted));
        buffer.update_capacity(p.buffer_limit, p.min_recharge, at(1));
        assert_eq!(buffer.params().min_recharge, 100_000);
        // Decrease: in force only 2 s later.
        let granted = pool.set_capacity(id, 50_000, at(2)).unwrap();
        assert_eq!(granted, 50_000);
        let p = flow_params(granted, CostTable::geth_default());
        buffer.update_capacity(p.buffer_limit, p.min_recharge, at(2));
        assert_eq!(buffer.params().min_recharge, 100_000);
        assert_eq!(buffer.next_capacity_change(), Some(at(4)));
        buffer.buffer_value(at(4));
        assert_eq!(buffer.params().min_recharge, 50_000);
        assert_eq!(buffer.params().buffer_limit, 6000 * 50_000);
    }

    /// A small deterministic generator (SplitMix64) so simulations are reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn check_02_invariants_after_every_event() {
        let mut config = PoolConfig::new(20 * MIN, 12);
        config.neg_tau = Duration::from_secs(600);
        let mut pool = ClientPool::new(config, at(0));
        let mut rng = Rng(7);
        let mut now = 0u64;
        let mut kicked = 0;
        let mut raised = 0;
        for _ in 0..20_000 {
            now += rng.below(3 * SEC);
            let t = Timestamp::from_nanos(now);
            let i = rng.below(40);
            match rng.below(8) {
                0 | 1 => {
                    let _ = pool.connect(node(i), addr(i % 25), t);
                }
                2 => {
                    let _ = pool.disconnect(node(i), t);
                }
                3 => {
                    let _ = pool.add_balance(
                        node(i),
                        rng.below(2_000_000_000_000) as i64 - 200_000_000_000,
                        t,
                    );
                }
                4 => {
                    if let Ok(c) = pool.set_capacity(node(i), MIN + rng.below(6 * MIN), t) {
                        raised += u64::from(c > MIN);
                    }
                }
                5 => pool.request_served(node(i), rng.below(50_000_000), t),
                6 => {
                    if rng.below(20) == 0 {
                        pool.freeze(node(i), t);
                    }
                }
                _ => pool.handle_timeout(t),
            }
            for e in events(&mut pool) {
                if let PoolEvent::Deactivated { id } = e {
                    kicked += 1;
                    assert!(!pool.clients.contains_key(&id), "a deactivated client keeps capacity");
                }
            }
            assert_invariants(&pool);
        }
        // The run exercised squeezing and raises, not just the empty paths.
        assert!(kicked > 50, "{kicked}");
        assert!(raised > 50, "{raised}");
    }

    #[test]
    fn check_03_free_clients_get_exactly_min_capacity() {
        assert_eq!(default_min_capacity(), 16_000);
        assert_eq!(min_capacity(96_000_001), 16_001);
        let mut pool = ClientPool::new(PoolConfig::new(1_600_000, 100), at(0));
        for i in 0..5 {
            assert_eq!(pool.connect(node(i), addr(i), at(0)), Ok(MIN));
        }
        assert_eq!(pool.set_capacity(node(0), 50_000, at(1)), Err(PoolError::NoPriority(node(0))));
        assert_eq!(pool.client_info(node(0), at(1)).unwrap().capacity, MIN);
        assert_eq!(pool.client_info(node(0), at(1)).unwrap().class, PriorityClass::Free);
        assert_invariants(&pool);
    }

    #[test]
    fn check_04_freeze_lowers_total_capacity_and_it_recovers() {
        let mut pool = ClientPool::new(PoolConfig::new(100_000, 10), at(0));
        pool.connect(node(1), addr(1), at(0)).unwrap();
        pool.connect(node(2), addr(2), at(0)).unwrap();
        // One of two equal clients: ratio 0.5, factor exp(-0.05).
        pool.freeze(node(1), at(0));
        let total = pool.server_info().total_capacity as f64;
        assert!(close(total, 100_000.0 * (-0.05f64).exp()), "{total}");
        for _ in 0..19 {
            pool.freeze(node(1), at(0));
        }
        let total = pool.server_info().total_capacity as f64;
        assert!(close(total, 100_000.0 * (-1.0f64).exp()), "{total}");
        // One hour without freezes: ln rises by 1/3.
        pool.handle_timeout(at(3600));
        let total = pool.server_info().total_capacity as f64;
        assert!(close(total, 100_000.0 * (-1.0f64 + 1.0 / 3.0).exp()), "{total}");
        // Three more hours would give e×, but the raise stops at active + 2·min = 64,000.
        pool.handle_timeout(at(4 * 3600));
        assert_eq!(pool.server_info().total_capacity, 64_000);
        // Freezes that take the total below what is connected squeeze the weakest.
        pool.add_balance(node(2), 1_000_000_000_000, at(4 * 3600)).unwrap();
        for _ in 0..40 {
            pool.freeze(node(2), at(4 * 3600));
            assert_invariants(&pool);
        }
        assert_eq!(pool.server_info().total_capacity, MIN);
        assert!(events(&mut pool).contains(&PoolEvent::Deactivated { id: node(1) }));
        assert!(pool.client_info(node(2), at(4 * 3600)).is_some());
    }

    #[test]
    fn check_05_time_charge_splits_into_debt() {
        let mut config = PoolConfig::new(1_600_000, 100);
        // neg accrues at twice the pos rate: 3.2e7 tokens/s at the minimum.
        config.neg_factors = PriceFactors { time: 0, capacity: 2_000_000_000, request: 1_000_000 };
        let mut pool = ClientPool::new(config, at(0));
        let id = node(1);
        // 1.6e7 tokens/s at 16,000: 8e7 tokens last 5 s.
        pool.add_balance(id, 80_000_000, at(0)).unwrap();
        pool.connect(id, addr(1), at(0)).unwrap();
        let b = pool.client_info(id, Timestamp::from_millis(2_500)).unwrap().balance;
        assert_eq!(b, Balance { pos: 40_000_000, neg: 0 });
        assert_eq!(pool.poll_timeout(), Some(at(5)));
        // Called late: the 5 s of debt after depletion is still exact.
        pool.handle_timeout(at(10));
        let info = pool.client_info(id, at(10)).unwrap();
        assert_eq!(info.balance, Balance { pos: 0, neg: 5 * 32_000_000 });
        assert_eq!(info.class, PriorityClass::Free);
        // At a higher capacity the charge follows C·CF: 64,000 costs 6.4e7 tokens/s.
        let id = node(2);
        pool.add_balance(id, 20_000_000_000, at(10)).unwrap();
        pool.connect(id, addr(2), at(10)).unwrap();
        assert_eq!(pool.set_capacity(id, 64_000, at(10)), Ok(64_000));
        let b = pool.client_info(id, at(13)).unwrap().balance;
        assert_eq!(b.pos, 20_000_000_000 - 3 * 64_000_000);
    }

    #[test]
    fn check_06_request_charge_and_split() {
        let mut config = PoolConfig::new(1_600_000, 100);
        config.pos_factors = PriceFactors { time: 0, capacity: 0, request: 2_000_000 };
        config.neg_factors = PriceFactors { time: 0, capacity: 0, request: 5_000_000 };
        let mut pool = ClientPool::new(config, at(0));
        let id = node(1);
        pool.add_balance(id, 1_000, at(0)).unwrap();
        pool.connect(id, addr(1), at(0)).unwrap();
        pool.request_served(id, 300, at(1));
        assert_eq!(pool.client_info(id, at(1)).unwrap().balance, Balance { pos: 400, neg: 0 });
        // 300 units cost 600; pos covers 400 (2/3), 100 units at 5 = 500 of debt.
        pool.request_served(id, 300, at(2));
        let info = pool.client_info(id, at(2)).unwrap();
        assert_eq!(info.balance, Balance { pos: 0, neg: 500 });
        assert_eq!(info.class, PriorityClass::Free);
        assert!(events(&mut pool).contains(&PoolEvent::CapacityChanged {
            id,
            capacity: MIN,
            class: PriorityClass::Free
        }));
    }

    #[test]
    fn check_07_expiry_and_offset_survive_restart() {
        let mut config = PoolConfig::new(1_600_000, 100);
        config.pos_tau = Duration::from_secs(1000);
        config.neg_tau = Duration::from_secs(500);
        let mut pool = ClientPool::new(config.clone(), at(0));
        pool.add_balance(node(1), 1_000_000_000_000, at(0)).unwrap();
        pool.connect(node(2), addr(2), at(0)).unwrap();
        pool.disconnect(node(2), at(100)).unwrap(); // 1.6e9 debt, decaying meanwhile
        let pos_500 = pool.pos_balance(node(1), at(500)) as f64;
        assert!(close(pos_500, 1e12 * (-0.5f64).exp()), "{pos_500}");
        let snapshot = pool.balances(at(500));
        // A new process: its clock starts at 0 again and the downtime is not counted.
        let mut pool = ClientPool::new(config.clone(), at(0));
        pool.restore(snapshot.clone(), at(0)).unwrap();
        let pos = pool.pos_balance(node(1), at(500)) as f64;
        assert!(close(pos, 1e12 / std::f64::consts::E), "{pos}");
        let neg = pool.balances(at(500)).neg[0].1;
        let neg_now = neg.value(pool.neg_expirer.offset(at(500))) as f64;
        let expected = snapshot.neg[0].1.value(snapshot.neg_offset) as f64 * (-1.0f64).exp();
        assert!(close(neg_now, expected), "{neg_now} {expected}");
        // τ = 0: nothing changes, exactly.
        let mut pool = ClientPool::new(PoolConfig::new(1_600_000, 100), at(0));
        pool.add_balance(node(1), 123_456_789, at(0)).unwrap();
        assert_eq!(pool.pos_balance(node(1), at(10_000_000)), 123_456_789);
        assert_eq!(pool.restore(BalanceSnapshot::default(), at(1)), Ok(()));
        pool.connect(node(3), addr(3), at(1)).unwrap();
        assert_eq!(
            pool.restore(BalanceSnapshot::default(), at(1)),
            Err(PoolError::RestoreWhileConnected(1))
        );
    }

    #[test]
    fn check_08_add_balance_overflow_and_underflow() {
        let mut pool = ClientPool::new(PoolConfig::new(1_600_000, 100), at(0));
        let id = node(1);
        pool.add_balance(id, i64::MAX - 5, at(0)).unwrap();
        pool.connect(id, addr(1), at(0)).unwrap();
        // 1 s at the minimum charges 1.6e7, so 1.6e7 + 5 fits exactly and one more does not.
        assert!(matches!(
            pool.add_balance(id, 16_000_006, at(1)),
            Err(PoolError::Balance { source: BalanceError::Overflow { .. }, .. })
        ));
        assert_eq!(pool.pos_balance(id, at(1)), i64::MAX as u64 - 5 - 16_000_000);
        assert_eq!(
            pool.add_balance(id, 16_000_005, at(1)),
            Ok((i64::MAX as u64 - 16_000_005, i64::MAX as u64))
        );
        assert_eq!(pool.add_balance(id, i64::MIN, at(1)), Ok((i64::MAX as u64, 0)));
        assert_eq!(pool.client_info(id, at(1)).unwrap().class, PriorityClass::Free);
        // Small paid balances are kept.
        assert_eq!(pool.add_balance(node(9), 3, at(1)), Ok((0, 3)));
        assert_eq!(pool.balances(at(2)).pos, vec![(node(9), ExpiredValue::new(3, LogOffset(0)))]);
    }

    #[test]
    fn check_09_active_set_is_the_top_by_priority() {
        let mut config = PoolConfig::new(8 * MIN, 8);
        // Settle everyone on every call, so the check compares exact current priorities.
        config.refresh_period = Duration::ZERO;
        let bias = config.connected_bias;
        let (pf, nf) = (config.pos_factors, config.neg_factors);
        let mut pool = ClientPool::new(config, at(0));
        let mut rng = Rng(99);
        let (mut rejected, mut displaced) = (0, 0);
        for step in 0..2_000u64 {
            let t = at(step);
            let i = rng.below(30);
            if pool.clients.contains_key(&node(i)) {
                if rng.below(3) == 0 {
                    pool.disconnect(node(i), t).unwrap();
                }
                continue;
            }
            if i < 15 && rng.below(2) == 0 {
                pool.add_balance(node(i), (rng.below(50) as i64 + 1) * 10_000_000_000, t).unwrap();
            }
            pool.handle_timeout(t);
            events(&mut pool);
            let before: HashMap<NodeId, i64> =
                pool.clients.keys().map(|id| (*id, pool.info(id, t).unwrap().priority)).collect();
            let full = before.len() == pool.config.max_count;
            let newcomer =
                pool.load(&node(i), &addr(i), t).estimate_priority(0, bias, MIN, &pf, &nf);
            let result = pool.connect(node(i), addr(i), t);
            let kicked: Vec<NodeId> = events(&mut pool)
                .into_iter()
                .filter_map(|e| match e {
                    PoolEvent::Deactivated { id } => Some(id),
                    PoolEvent::CapacityChanged { .. } => None,
                })
                .collect();
            let weakest = before.values().copied().min().unwrap_or(i64::MAX);
            match result {
                Err(_) => {
                    // Rejected only when full and not above the weakest after the bias.
                    assert!(full && newcomer <= weakest, "step {step}: wrongly rejected");
                    assert!(kicked.is_empty());
                    rejected += 1;
                }
                Ok(_) if full => {
                    // Exactly one goes, the weakest, and it ranked below the newcomer.
                    assert_eq!(kicked.len(), 1, "step {step}");
                    assert_eq!(before[&kicked[0]], weakest, "step {step}: not the weakest");
                    assert!(weakest < newcomer, "step {step}");
                    displaced += 1;
                }
                Ok(_) => assert!(kicked.is_empty(), "step {step}: kicked with room to spare"),
            }
            assert_invariants(&pool);
        }
        assert!(rejected > 50 && displaced > 50, "{rejected} {displaced}");
    }

    #[test]
    fn check_10_paid_newcomer_displaces_the_lowest_priority_client() {
        // geth TestPaidClientKickedOut: ten payers with 10 s each, connected 1 ms apart,
        // all run out; the first to run out has the most debt and is kicked for a free
        // newcomer.
        let mut pool = ClientPool::new(geth_test_config(10), at(0));
        let mut t = Timestamp::ZERO;
        for i in 0..10 {
            pool.add_balance(node(i), 10_000_000_000, t).unwrap();
            pool.connect(node(i), addr(i), t).unwrap();
            t = t.saturating_add(Duration::from_millis(1));
        }
        t = t.saturating_add(DEFAULT_CONNECTED_BIAS + Duration::from_secs(11));
        pool.handle_timeout(t);
        events(&mut pool);
        assert_eq!(pool.connect(node(11), addr(11), t), Ok(1));
        assert_eq!(events(&mut pool), vec![PoolEvent::Deactivated { id: node(0) }]);
        assert_invariants(&pool);

        // A free client goes before any payer.
        let mut pool = ClientPool::new(geth_test_config(3), at(0));
        pool.add_balance(node(1), 1_000_000_000_000, at(0)).unwrap();
        pool.add_balance(node(2), 2_000_000_000_000, at(0)).unwrap();
        pool.connect(node(1), addr(1), at(0)).unwrap();
        pool.connect(node(2), addr(2), at(0)).unwrap();
        pool.connect(node(3), addr(3), at(0)).unwrap();
        pool.add_balance(node(4), 500_000_000_000, at(1)).unwrap();
        assert_eq!(pool.connect(node(4), addr(4), at(1)), Ok(1));
        assert_eq!(events(&mut pool), vec![PoolEvent::Deactivated { id: node(3) }]);
        // Among payers, the lowest balance per capacity goes.
        pool.add_balance(node(5), 1_500_000_000_000, at(2)).unwrap();
        assert_eq!(pool.connect(node(5), addr(5), at(2)), Ok(1));
        assert_eq!(events(&mut pool), vec![PoolEvent::Deactivated { id: node(4) }]);
    }

    #[test]
    fn check_10_payers_above_min_are_cut_in_quarter_steps_before_kicks() {
        let mut pool = ClientPool::new(PoolConfig::new(10 * MIN, 10), at(0));
        pool.add_balance(node(1), 1_000_000_000_000, at(0)).unwrap();
        pool.connect(node(1), addr(1), at(0)).unwrap();
        assert_eq!(pool.set_capacity(node(1), 6 * MIN, at(0)), Ok(6 * MIN));
        for i in 2..6 {
            pool.connect(node(i), addr(i), at(0)).unwrap();
        }
        // Full: 6 + 4 = 10 × MIN. A rich newcomer squeezes the weakest: the free clients
        // (debt 0 at t=0, priority 0) rank below the payer; the first goes.
        pool.add_balance(node(7), 9_000_000_000_000, at(0)).unwrap();
        pool.connect(node(7), addr(7), at(0)).unwrap();
        let ev = events(&mut pool);
        assert_eq!(ev.len(), 1);
        assert!(matches!(ev[0], PoolEvent::Deactivated { .. }));
        // Now make the payer the weakest: all free clients leave, others are richer.
        for i in 2..6 {
            let _ = pool.disconnect(node(i), at(0));
        }
        for i in 10..14 {
            pool.add_balance(node(i), 9_000_000_000_000, at(0)).unwrap();
            pool.connect(node(i), addr(i), at(0)).unwrap();
        }
        // 6 + 1 + 4 = 11 > 10: the payer at 96,000 is cut by a quarter to 72,000, which
        // frees enough.
        let ev = events(&mut pool);
        assert_eq!(
            ev,
            vec![PoolEvent::CapacityChanged {
                id: node(1),
                capacity: 72_000,
                class: PriorityClass::Paid
            }]
        );
        assert_invariants(&pool);
    }

    #[test]
    fn check_11_bias_boundary() {
        let config = PoolConfig::new(4 * MIN, 4);
        let mut pool = ClientPool::new(config, at(0));
        for i in 0..4 {
            // priorities 1000, 2000, 3000, 4000 (tokens per capacity unit)
            pool.add_balance(node(i), (i as i64 + 1) * 1000 * MIN as i64, at(0)).unwrap();
            pool.connect(node(i), addr(i), at(0)).unwrap();
        }
        let p_star = 1000;
        // 180 s at 1.6e7 tokens/s.
        let bias_cost = 180 * 16_000_000i64;
        // The newcomer must be at least one priority unit above P* after the bias.
        let just_enough = MIN as i64 * (p_star + 1) + bias_cost;
        pool.add_balance(node(10), just_enough - 1, at(0)).unwrap();
        assert_eq!(pool.connect(node(10), addr(10), at(0)), Err(PoolError::Rejected(node(10))));
        assert!(events(&mut pool).is_empty());
        pool.add_balance(node(10), 1, at(0)).unwrap();
        assert_eq!(pool.connect(node(10), addr(10), at(0)), Ok(MIN));
        assert_eq!(events(&mut pool), vec![PoolEvent::Deactivated { id: node(0) }]);
    }

    #[test]
    fn check_12_free_newcomer_needs_the_incumbents_to_owe_more_than_the_bias() {
        let mut pool = ClientPool::new(geth_test_config(10), at(0));
        for i in 0..10 {
            pool.connect(node(i), addr(i), at(0)).unwrap();
        }
        assert!(pool.connect(node(11), addr(11), at(0)).is_err());
        assert!(pool.connect(node(12), addr(12), at(60)).is_err());
        let t = at(300).saturating_add(Duration::from_millis(1));
        assert_eq!(pool.connect(node(13), addr(13), t), Ok(1));
        assert_invariants(&pool);
        // A spare slot goes to a free client at once, whatever its debt.
        let mut pool = ClientPool::new(geth_test_config(2), at(0));
        pool.connect(node(1), addr(1), at(0)).unwrap();
        pool.disconnect(node(1), at(1000)).unwrap();
        assert_eq!(pool.connect(node(1), addr(1), at(1000)), Ok(1));
    }

    /// geth `testClientPool`: `slots` slots, `clients` clients, the first `paid` of which
    /// get enough balance for half the run at a quarter of it.
    fn fairness(slots: u64, clients: u64, paid: u64, random_disconnect: bool, seed: u64) {
        const TICKS: u64 = 100_000;
        let mut config = geth_test_config(slots);
        config.connected_bias = Duration::ZERO;
        config.neg_tau = Duration::from_secs(1000);
        let mut pool = ClientPool::new(config, at(0));
        let mut rng = Rng(seed);
        let mut connected = vec![false; clients as usize];
        let mut ticks = vec![0i64; clients as usize];
        for i in 0..slots {
            pool.connect(node(i), addr(i), at(0)).unwrap();
            connected[i as usize] = true;
        }
        for tick in 0..TICKS {
            let t = at(tick + 1);
            if tick == TICKS / 4 {
                for i in 0..paid {
                    pool.add_balance(node(i), (TICKS / 2 * SEC) as i64, t).unwrap();
                }
            }
            let i = rng.below(clients);
            let u = i as usize;
            if connected[u] {
                if random_disconnect {
                    pool.disconnect(node(i), t).unwrap();
                    connected[u] = false;
                    ticks[u] += tick as i64;
                }
            } else if pool.connect(node(i), addr(i), t).is_ok() {
                connected[u] = true;
                ticks[u] -= tick as i64;
            }
            pool.handle_timeout(t);
            for e in events(&mut pool) {
                if let PoolEvent::Deactivated { id } = e {
                    let j = u64::from_be_bytes(id[24..].try_into().unwrap()) as usize;
                    if connected[j] {
                        connected[j] = false;
                        ticks[j] += tick as i64;
                    }
                }
            }
            assert_invariants(&pool);
        }
        let t = TICKS as i64;
        let (l, c, p) = (slots as i64, clients as i64, paid as i64);
        let free_exp = t / 2 * l / c + t / 2 * (l - p) / (c - p);
        let paid_exp = t / 2 * l / c + t / 2;
        for (i, &on) in connected.iter().enumerate() {
            let got = ticks[i] + if on { t } else { 0 };
            let exp = if (i as u64) < paid { paid_exp } else { free_exp };
            assert!(
                (got - exp).abs() <= exp / 5,
                "client {i}: connected {got} ticks, expected {exp} ± 20 %"
            );
        }
    }

    #[test]
    fn check_13_fairness_l10_c100_free() {
        fairness(10, 100, 0, true, 1);
    }

    #[test]
    fn check_13_fairness_l10_c100_p4() {
        fairness(10, 100, 4, false, 2);
    }

    #[test]
    fn check_13_fairness_l40_c200_p30() {
        fairness(40, 200, 30, false, 3);
    }

    #[test]
    fn check_14_depleted_payer_drops_to_min_and_starts_debt() {
        let mut config = PoolConfig::new(1_600_000, 100);
        // No bias, so a raise needs no more than the balance itself.
        config.connected_bias = Duration::ZERO;
        let mut pool = ClientPool::new(config, at(0));
        let id = node(1);
        // 4 × MIN costs 6.4e7 tokens/s: 6.4e8 last 10 s.
        pool.add_balance(id, 640_000_000, at(0)).unwrap();
        pool.connect(id, addr(1), at(0)).unwrap();
        assert_eq!(pool.set_capacity(id, 4 * MIN, at(0)), Ok(4 * MIN));
        assert_eq!(pool.poll_timeout(), Some(at(10)));
        pool.handle_timeout(at(10));
        assert_eq!(
            events(&mut pool),
            vec![PoolEvent::CapacityChanged { id, capacity: MIN, class: PriorityClass::Free }]
        );
        let info = pool.client_info(id, at(10)).unwrap();
        assert_eq!(info.balance, Balance { pos: 0, neg: 0 });
        let info = pool.client_info(id, at(12)).unwrap();
        assert_eq!((info.capacity, info.balance.neg), (MIN, 2 * 16_000_000));
        assert_eq!(info.priority, -32_000_000);
    }

    /// A full pool of payers at various capacities and a requester.
    fn market(competitor_balance: i64, competitors: u64) -> ClientPool {
        let mut pool = ClientPool::new(PoolConfig::new(80 * MIN, 40), at(0));
        for i in 0..competitors {
            let id = node(100 + i);
            pool.add_balance(id, competitor_balance * (i as i64 % 5 + 1), at(0)).unwrap();
            pool.connect(id, addr(100 + i), at(0)).unwrap();
            pool.set_capacity(id, MIN * (1 + i % 4), at(0)).unwrap();
        }
        pool
    }

    #[test]
    fn check_15_capacity_query_is_monotone_and_delivers() {
        let mut pool = market(2_000_000_000_000, 20);
        events(&mut pool);
        let me = node(1);
        pool.connect(me, addr(1), at(0)).unwrap();
        let ladder: Vec<i64> = vec![
            i64::MIN,
            0,
            1_000_000_000,
            10_000_000_000,
            100_000_000_000,
            1_000_000_000_000,
            5_000_000_000_000,
            20_000_000_000_000,
            100_000_000_000_000,
            i64::MAX,
        ];
        let replies = pool.capacity_query(me, 0, &ladder, at(0));
        assert_eq!(replies.len(), ladder.len());
        assert!(replies.windows(2).all(|w| w[0] <= w[1]), "{replies:?}");
        // Without tokens it holds the minimum as a free client; its own slot counts as free.
        assert_eq!(replies[0], MIN);
        assert_eq!(replies[1], MIN);
        assert!(replies[7] > 4 * MIN, "{replies:?}");
        // Query, pay, request: at least the promised capacity is delivered.
        let promised = replies[6];
        assert!(promised > 2 * MIN, "{replies:?}");
        pool.add_balance(me, ladder[6], at(0)).unwrap();
        assert_eq!(pool.set_capacity(me, promised, at(0)), Ok(promised));
        assert_invariants(&pool);
        // An outsider into a pool full of stronger payers gets 0 without tokens.
        let mut pool = market(2_000_000_000_000, 40);
        assert_eq!(pool.capacity_query(node(2), 180, &[0, 1], at(0)), vec![0, 0]);
        assert!(pool.capacity_query(node(2), 180, &[i64::MAX], at(0))[0] >= MIN);
    }

    #[test]
    fn check_15_query_promises_hold_on_random_pools() {
        let mut delivered = 0;
        for seed in 0..40 {
            let mut rng = Rng(1000 + seed);
            let slots = 5 + rng.below(20);
            let mut pool = ClientPool::new(
                PoolConfig::new((slots + rng.below(20)) * MIN, slots as usize),
                at(0),
            );
            for i in 0..slots + rng.below(10) {
                if rng.below(2) == 0 {
                    pool.add_balance(
                        node(100 + i),
                        (rng.below(1_000) as i64 + 1) * 10_000_000_000,
                        at(0),
                    )
                    .unwrap();
                }
                if pool.connect(node(100 + i), addr(100 + i), at(i)).is_ok() && rng.below(2) == 0 {
                    let _ = pool.set_capacity(node(100 + i), MIN * (1 + rng.below(5)), at(i));
                }
            }
            let t = at(100);
            let me = node(1);
            pool.add_balance(me, 1_000_000_000_000, t).unwrap();
            if pool.connect(me, addr(1), t).is_err() {
                continue;
            }
            let mut ladder: Vec<i64> = (0..16).map(|_| rng.below(1 << 45) as i64).collect();
            ladder.sort_unstable();
            let replies = pool.capacity_query(me, rng.below(600), &ladder, t);
            assert!(replies.windows(2).all(|w| w[0] <= w[1]), "seed {seed}: {replies:?}");
            let k = rng.below(16) as usize;
            if replies[k] <= MIN {
                continue;
            }
            // The query's bias may exceed the connected bias; ask again with the one
            // set_capacity uses, pay, and request exactly that.
            let promised = pool.capacity_query(me, 0, &[ladder[k]], t)[0];
            pool.add_balance(me, ladder[k], t).unwrap();
            let granted = pool.set_capacity(me, promised, t).unwrap();
            assert!(granted >= promised, "seed {seed}: promised {promised}, granted {granted}");
            assert_invariants(&pool);
            delivered += 1;
        }
        assert!(delivered > 10, "{delivered}");
    }

    /// The least tokens to add for the query to promise `capacity` (binary search on the
    /// query, which is monotone by check 15).
    fn tokens_needed(pool: &mut ClientPool, id: NodeId, capacity: u64) -> i64 {
        let (mut lo, mut hi) = (0i64, 1i64 << 60);
        assert!(pool.capacity_query(id, 0, &[hi], at(0))[0] >= capacity);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if pool.capacity_query(id, 0, &[mid], at(0))[0] >= capacity {
                hi = mid
            } else {
                lo = mid
            }
        }
        hi
    }

    #[test]
    fn check_16_price_follows_demand() {
        let mut pool = ClientPool::new(PoolConfig::new(40 * MIN, 40), at(0));
        let me = node(1);
        pool.connect(me, addr(1), at(0)).unwrap();
        let want = 8 * MIN;
        let base = tokens_needed(&mut pool, me, want);
        // Spare capacity: only the bias has to be paid (180 s at 8 × MIN), plus one token
        // left over so the balance survives it.
        assert_eq!(base, 180 * 8 * 16_000_000 + 1);
        let mut last = base;
        for round in 1..=4u64 {
            for j in 0..8 {
                let id = node(1000 + round * 100 + j);
                pool.add_balance(id, (round * 400_000_000_000) as i64, at(0)).unwrap();
                if pool.connect(id, addr(1000 + round * 100 + j), at(0)).is_ok() {
                    let _ = pool.set_capacity(id, 2 * MIN, at(0));
                }
            }
            events(&mut pool);
            let need = tokens_needed(&mut pool, me, want);
            assert!(need >= last, "round {round}: {need} < {last}");
            last = need;
        }
        assert!(last > base * 10, "demand did not raise the price: {base} → {last}");
        for round in 1..=4u64 {
            for j in 0..8 {
                let _ = pool.disconnect(node(1000 + round * 100 + j), at(0));
            }
        }
        assert_eq!(tokens_needed(&mut pool, me, want), base);
    }

    #[test]
    fn new_prices_apply_from_the_change_on() {
        let mut pool = ClientPool::new(PoolConfig::new(1_600_000, 100), at(0));
        let id = node(1);
        pool.add_balance(id, 1_000_000_000, at(0)).unwrap();
        pool.connect(id, addr(1), at(0)).unwrap();
        assert_eq!(pool.poll_timeout(), Some(at(10))); // refresh (depletion at 62.5 s)
        let double = PriceFactors { time: 0, capacity: 2_000_000_000, request: 1_000_000 };
        pool.set_price_factors(double, double, at(10));
        // 10 s at 1.6e7/s, then 10 s at 3.2e7/s.
        let info = pool.client_info(id, at(20)).unwrap();
        assert_eq!(info.balance.pos, 1_000_000_000 - 160_000_000 - 320_000_000);
        // The depletion timer moved with the price: 5.2e8 left at 3.2e7/s = 16.25 s.
        assert_eq!(pool.depletions.first().map(|d| d.0), Some(Timestamp::from_millis(36_250)));
        assert_eq!(pool.paid_capacity(), MIN);
        pool.set_connected_bias(Duration::ZERO);
        assert_eq!(pool.server_info().connected_bias, Duration::ZERO);
    }

    #[test]
    fn snapshot_round_trip_keeps_every_balance() {
        let mut pool = ClientPool::new(PoolConfig::new(1_600_000, 100), at(0));
        pool.add_balance(node(1), 5, at(0)).unwrap();
        pool.add_balance(node(2), 7_000_000_000, at(0)).unwrap();
        pool.connect(node(2), addr(2), at(0)).unwrap();
        pool.connect(node(3), addr(3), at(0)).unwrap();
        let snap = pool.balances(at(1));
        let mut fresh = ClientPool::new(PoolConfig::new(1_600_000, 100), at(0));
        fresh.restore(snap.clone(), at(0)).unwrap();
        assert_eq!(fresh.pos_balance(node(1), at(0)), 5);
        assert_eq!(fresh.pos_balance(node(2), at(0)), 7_000_000_000 - 16_000_000);
        assert_eq!(fresh.balances(at(0)), snap);
        fresh.connect(node(3), addr(3), at(0)).unwrap();
        assert_eq!(fresh.client_info(node(3), at(0)).unwrap().balance.neg, 16_000_000);
    }
}
