//! The pay-as-you-go policy: which servers to pay and when, as a pure function of what the
//! client knows (price lists, balances, capacities, channel state, value) and the time, which
//! the caller passes in. It keeps the capacity the dapp asked for: when a paid server's
//! balance would last less than `lowBalanceSecs` at the current charge, it buys
//! `topUpSecs` worth of tokens; when the capacity is below the target and there is a positive
//! balance, it asks for the target. It never lets the signed total pass the budget, a
//! channel's deposit, or the hourly spending limit.

use alloy_primitives::{U256, U512};
use les::crypto::NodeId;
use les::pay::messages::{Balance, ExchangeRate, PriceFactors, PriceList, RECEIVER_CHANNEL};
use les::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Capacity units of one serving thread (geth's unit): the price list's `capacity` factor is
/// per this many units.
pub const CAPACITY_UNIT: u64 = 1_000_000;
/// A capacity request to one server is not repeated sooner than this.
pub const CAPACITY_RETRY: Duration = Duration::from_secs(10);
/// The window of `maxSpendWeiPerHour`.
pub const SPEND_WINDOW: Duration = Duration::from_secs(3600);
/// At most this many servers are paid at once.
pub const MAX_PAID_SERVERS: usize = 16;

/// Which servers to pay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ServerChoice {
    /// The `n` servers of highest value (free service received) that sell capacity.
    Best(usize),
    /// These servers (node IDs), in this order, as far as they sell capacity.
    Listed(Vec<NodeId>),
}

impl Default for ServerChoice {
    fn default() -> Self {
        ServerChoice::Best(1)
    }
}

/// What the dapp asks for (`ulc_setPaymentPolicy`), as JSON:
/// `{budgetWei, maxSpendWeiPerHour?, targetCapacity, servers?, lowBalanceSecs?, topUpSecs?}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentPolicy {
    /// The most wei the client may have signed over, in all channels together (hex string).
    pub budget_wei: U256,
    /// The most wei signed over within any hour (hex string); none: only the budget limits.
    #[serde(default)]
    pub max_spend_wei_per_hour: Option<U256>,
    /// The capacity (cost units per ms; 1,000,000 = one serving thread) wanted from each paid
    /// server.
    pub target_capacity: u64,
    /// Which servers to pay (default: the best one).
    #[serde(default)]
    pub servers: ServerChoice,
    /// Pay when the balance would last less than this at the current charge.
    #[serde(default = "default_low_balance_secs")]
    pub low_balance_secs: u64,
    /// Each payment buys tokens for this long at the target capacity.
    #[serde(default = "default_top_up_secs")]
    pub top_up_secs: u64,
}

fn default_low_balance_secs() -> u64 {
    60
}

fn default_top_up_secs() -> u64 {
    600
}

/// A policy that cannot be followed, with the parameter that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `targetCapacity` is 0.
    #[error("targetCapacity must be positive")]
    ZeroCapacity,
    /// `lowBalanceSecs` is 0 or `topUpSecs` is not above it.
    #[error("topUpSecs ({top_up}) must be above lowBalanceSecs ({low}), which must be positive")]
    Periods {
        /// `lowBalanceSecs`.
        low: u64,
        /// `topUpSecs`.
        top_up: u64,
    },
    /// `servers` names no server, too many, or one twice.
    #[error("servers: {0}")]
    Servers(String),
    /// `maxSpendWeiPerHour` above the budget, or zero.
    #[error("maxSpendWeiPerHour must be positive and at most budgetWei")]
    HourlyLimit,
}

impl PaymentPolicy {
    /// Checks the parameters against each other.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.target_capacity == 0 {
            return Err(PolicyError::ZeroCapacity);
        }
        if self.low_balance_secs == 0 || self.top_up_secs <= self.low_balance_secs {
            return Err(PolicyError::Periods {
                low: self.low_balance_secs,
                top_up: self.top_up_secs,
            });
        }
        match &self.servers {
            ServerChoice::Best(n) if *n == 0 || *n > MAX_PAID_SERVERS => {
                return Err(PolicyError::Servers(format!("between 1 and {MAX_PAID_SERVERS}")));
            }
            ServerChoice::Listed(ids) => {
                if ids.is_empty() || ids.len() > MAX_PAID_SERVERS {
                    return Err(PolicyError::Servers(format!(
                        "list 1 to {MAX_PAID_SERVERS} node IDs"
                    )));
                }
                let mut seen = ids.clone();
                seen.sort();
                seen.dedup();
                if seen.len() != ids.len() {
                    return Err(PolicyError::Servers("a node ID is listed twice".into()));
                }
            }
            ServerChoice::Best(_) => {}
        }
        if self.max_spend_wei_per_hour.is_some_and(|h| h.is_zero() || h > self.budget_wei) {
            return Err(PolicyError::HourlyLimit);
        }
        Ok(())
    }
}

/// A channel as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelView {
    /// On-chain deposit.
    pub deposit: U256,
    /// The cumulative amount signed so far (at risk: the payee holds that cheque).
    pub signed: U256,
    /// Unix seconds at which the channel expires.
    pub expiry: u64,
}

/// One server as the policy sees it.
#[derive(Debug, Clone)]
pub struct ServerView {
    /// Its node ID.
    pub node: NodeId,
    /// Its value to us from free service ([`crate::client::metrics::ValueRecord::value`]).
    pub value: f64,
    /// Its price list, if it offers lespay and answered a price query.
    pub prices: Option<PriceList>,
    /// Its last reported balance.
    pub balance: Option<Balance>,
    /// Our channel to it, if one is open.
    pub channel: Option<ChannelView>,
    /// A payment or capacity request to it is in flight: plan nothing new for it.
    pub busy: bool,
}

/// What the policy wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Pay `tokens` (worth at most `wei`) to the server.
    Pay {
        /// The server.
        server: NodeId,
        /// Tokens wanted.
        tokens: u64,
        /// Their price in wei (rounded up), within every limit.
        wei: U256,
    },
    /// Ask the server for `capacity`.
    RequestCapacity {
        /// The server.
        server: NodeId,
        /// Cost units per ms.
        capacity: u64,
    },
}

/// Why a chosen server is not paid now (for `ulc_serviceStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// No channel to it is open.
    NoChannel,
    /// The channel expires too soon for the server to accept cheques.
    Expiring,
    /// The deposit is used up.
    DepositUsed,
    /// The budget is used up.
    BudgetUsed,
    /// The hourly limit is reached.
    HourlyLimit,
}

impl Hold {
    /// A short name for status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::NoChannel => "noChannel",
            Hold::Expiring => "channelExpiring",
            Hold::DepositUsed => "depositUsed",
            Hold::BudgetUsed => "budgetUsed",
            Hold::HourlyLimit => "hourlyLimit",
        }
    }
}

/// The policy with its memory: recent spending and capacity requests.
#[derive(Debug, Clone)]
pub struct Planner {
    policy: PaymentPolicy,
    spends: VecDeque<(Timestamp, U256)>,
    capacity_requests: HashMap<NodeId, Timestamp>,
    holds: HashMap<NodeId, Hold>,
}

/// The charge per second at `capacity` under `factors`: the time factor plus the capacity
/// factor per [`CAPACITY_UNIT`] (requests are charged on top as they come; the margin of
/// `lowBalanceSecs` covers them).
pub fn charge_per_sec(factors: &PriceFactors, capacity: u64) -> u64 {
    let per_capacity =
        (factors.capacity as u128 * capacity as u128).div_ceil(CAPACITY_UNIT as u128);
    (factors.time as u128 + per_capacity).min(u64::MAX as u128) as u64
}

/// The wei that buy at least `tokens` at `rate` (rounded up); `None` for a zero rate.
pub fn wei_for_tokens(rate: &ExchangeRate, tokens: u64) -> Option<U256> {
    if rate.num == 0 || rate.den == 0 {
        return None;
    }
    let product = U512::from(tokens) * U512::from(rate.den);
    let wei = product.div_ceil(U512::from(rate.num));
    Some(U256::from(wei))
}

/// The tokens `wei` buy at `rate` (rounded down).
pub fn tokens_for_wei(rate: &ExchangeRate, wei: U256) -> u64 {
    rate.tokens(wei).map_or(0, |t| t.saturating_to::<u64>())
}

impl Planner {
    /// A planner following a validated `policy`.
    pub fn new(policy: PaymentPolicy) -> Self {
        Self {
            policy,
            spends: VecDeque::new(),
            capacity_requests: HashMap::new(),
            holds: HashMap::new(),
        }
    }

    /// The policy followed.
    pub fn policy(&self) -> &PaymentPolicy {
        &self.policy
    }

    /// Why a server is not being paid, if it is chosen and held back.
    pub fn hold(&self, server: &NodeId) -> Option<Hold> {
        self.holds.get(server).copied()
    }

    /// Records `wei` signed over at `now` (for the hourly limit).
    pub fn record_spend(&mut self, now: Timestamp, wei: U256) {
        self.spends.push_back((now, wei));
    }

    /// Wei signed over in the last hour.
    pub fn spent_last_hour(&mut self, now: Timestamp) -> U256 {
        while self
            .spends
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= SPEND_WINDOW)
        {
            self.spends.pop_front();
        }
        self.spends.iter().fold(U256::ZERO, |sum, (_, wei)| sum.saturating_add(*wei))
    }

    /// The servers to pay, best first: those selling capacity through a channel, by the
    /// value of their free service (or in the listed order).
    pub fn chosen<'a>(&self, servers: &'a [ServerView]) -> Vec<&'a ServerView> {
        let sells = |s: &&ServerView| {
            s.prices.as_ref().is_some_and(|p| {
                p.channel.is_some() && p.receivers.iter().any(|r| r == RECEIVER_CHANNEL)
            })
        };
        match &self.policy.servers {
            ServerChoice::Best(n) => {
                let mut candidates: Vec<&ServerView> = servers.iter().filter(sells).collect();
                // Stable: equal values keep configuration order.
                candidates.sort_by(|a, b| b.value.total_cmp(&a.value));
                candidates.truncate(*n);
                candidates
            }
            ServerChoice::Listed(ids) => ids
                .iter()
                .filter_map(|id| servers.iter().find(|s| s.node == *id))
                .filter(sells)
                .collect(),
        }
    }

    /// The payment that buys `topUpSecs` at `rate`, within every limit; `Err(Some(hold))`
    /// when a limit leaves nothing to pay.
    #[allow(clippy::too_many_arguments)]
    fn top_up(
        &self,
        server: &ServerView,
        terms: &les::pay::messages::ChannelTerms,
        pos: u64,
        rate: u64,
        unix_secs: u64,
        budget_left: U256,
        hour_left: Option<U256>,
    ) -> Result<Action, Option<Hold>> {
        let prices = server.prices.as_ref().ok_or(None)?;
        let channel = server.channel.ok_or(Some(Hold::NoChannel))?;
        if channel.expiry.saturating_sub(unix_secs) <= terms.accept_margin_secs {
            return Err(Some(Hold::Expiring));
        }
        let wanted = rate.saturating_mul(self.policy.top_up_secs).saturating_sub(pos).max(1);
        let price = wei_for_tokens(&prices.tokens_per_wei, wanted).ok_or(None)?;
        let deposit_left = channel.deposit.saturating_sub(channel.signed);
        let mut wei = price.min(deposit_left).min(budget_left);
        if let Some(hour) = hour_left {
            wei = wei.min(hour);
        }
        // Whole tokens only: the price of what the capped amount buys, rounded up, is
        // within the cap again.
        let tokens = tokens_for_wei(&prices.tokens_per_wei, wei);
        let wei = wei_for_tokens(&prices.tokens_per_wei, tokens).unwrap_or(U256::ZERO);
        if tokens == 0 || wei.is_zero() {
            let hold = if deposit_left < price && deposit_left <= budget_left {
                Hold::DepositUsed
            } else if budget_left < price && hour_left.is_none_or(|h| budget_left <= h) {
                Hold::BudgetUsed
            } else {
                Hold::HourlyLimit
            };
            return Err(Some(hold));
        }
        Ok(Action::Pay { server: server.node, tokens, wei })
    }

    /// What to do now. `unix_secs` is wall-clock time (channel expiry); `signed_total` the
    /// cumulative amounts signed over in every channel (the budget's measure).
    pub fn plan(
        &mut self,
        now: Timestamp,
        unix_secs: u64,
        servers: &[ServerView],
        signed_total: U256,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        self.holds.clear();
        let hour_left = self
            .policy
            .max_spend_wei_per_hour
            .map(|limit| limit.saturating_sub(self.spent_last_hour(now)));
        let mut budget_left = self.policy.budget_wei.saturating_sub(signed_total);
        let mut hour_left = hour_left;
        let target = self.policy.target_capacity;
        for server in self.chosen(servers) {
            if server.busy {
                continue;
            }
            let Some(prices) = &server.prices else { continue };
            let Some(terms) = &prices.channel else { continue };
            let balance = server.balance;
            let capacity = balance.map_or(0, |b| b.capacity);
            let pos = balance.map_or(0, |b| b.pos);
            let target = target.min(prices.total_capacity.max(prices.min_capacity));
            let rate = charge_per_sec(&prices.pos_factors, capacity.max(target));
            let low = rate.saturating_mul(self.policy.low_balance_secs);
            let mut paying = false;
            if pos < low || (pos == 0 && rate == 0) {
                match self.top_up(server, terms, pos, rate, unix_secs, budget_left, hour_left) {
                    Ok(Action::Pay { server, tokens, wei }) => {
                        budget_left = budget_left.saturating_sub(wei);
                        hour_left = hour_left.map(|h| h.saturating_sub(wei));
                        paying = true;
                        actions.push(Action::Pay { server, tokens, wei });
                    }
                    Ok(_) => {}
                    Err(Some(hold)) => {
                        self.holds.insert(server.node, hold);
                    }
                    Err(None) => {}
                }
            }
            // With a balance (or one being paid for), ask for the target; the server grants
            // what the balance supports.
            if capacity < target && (pos > 0 || paying) {
                let recent = self
                    .capacity_requests
                    .get(&server.node)
                    .is_some_and(|at| now.saturating_duration_since(*at) < CAPACITY_RETRY);
                if !recent {
                    self.capacity_requests.insert(server.node, now);
                    actions.push(Action::RequestCapacity { server: server.node, capacity: target });
                }
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Address;
    use les::pay::messages::{ChannelTerms, PriorityClass};

    const SECOND: Duration = Duration::from_secs(1);

    fn prices() -> PriceList {
        PriceList {
            min_capacity: 100_000,
            total_capacity: 4_000_000,
            free_capacity: 3_000_000,
            // 10 tokens/s plus 1,000 tokens/s per serving thread.
            pos_factors: PriceFactors { time: 10, capacity: 1_000, request: 1_000_000 },
            neg_factors: PriceFactors { time: 0, capacity: 0, request: 1_000_000 },
            // 1 token per 1,000 wei.
            tokens_per_wei: ExchangeRate { num: 1, den: 1_000 },
            connected_bias_secs: 60,
            receivers: vec![RECEIVER_CHANNEL.to_string()],
            channel: Some(ChannelTerms {
                chain_id: 31337,
                contract: Address::repeat_byte(0xcc),
                payee: Address::repeat_byte(0xee),
                accept_margin_secs: 3_600,
                min_deposit: U256::from(1u64),
            }),
        }
    }

    fn policy() -> PaymentPolicy {
        PaymentPolicy {
            budget_wei: U256::from(10_000_000_000u64),
            max_spend_wei_per_hour: None,
            target_capacity: 1_000_000,
            servers: ServerChoice::Best(1),
            low_balance_secs: 60,
            top_up_secs: 600,
        }
    }

    fn server(byte: u8, value: f64) -> ServerView {
        ServerView {
            node: NodeId::repeat_byte(byte),
            value,
            prices: Some(prices()),
            balance: Some(Balance {
                pos: 0,
                neg: 0,
                capacity: 100_000,
                priority_class: PriorityClass::Free,
            }),
            channel: Some(ChannelView {
                deposit: U256::from(100_000_000_000u64),
                signed: U256::ZERO,
                expiry: 1_000_000,
            }),
            busy: false,
        }
    }

    /// A paid server as the simulation's "server side": charges per second at its capacity.
    struct SimServer {
        view: ServerView,
    }

    impl SimServer {
        fn tick(&mut self, secs: u64) {
            let balance = self.view.balance.as_mut().expect("balance");
            let rate = charge_per_sec(&prices().pos_factors, balance.capacity);
            balance.pos = balance.pos.saturating_sub(rate * secs);
            if balance.pos == 0 {
                balance.capacity = 100_000;
                balance.priority_class = PriorityClass::Free;
            }
        }

        fn apply(&mut self, action: &Action) -> U256 {
            let balance = self.view.balance.as_mut().expect("balance");
            match action {
                Action::Pay { tokens, wei, .. } => {
                    let channel = self.view.channel.as_mut().expect("channel");
                    channel.signed += *wei;
                    let credit = prices().tokens_per_wei.tokens(*wei).expect("rate");
                    balance.pos += credit.saturating_to::<u64>();
                    assert!(credit >= U256::from(*tokens), "the wei buy the tokens asked for");
                    *wei
                }
                Action::RequestCapacity { capacity, .. } => {
                    if balance.pos > 0 {
                        balance.capacity = *capacity;
                        balance.priority_class = PriorityClass::Paid;
                    }
                    U256::ZERO
                }
            }
        }
    }

    #[test]
    fn pays_the_best_free_server_and_keeps_the_target_capacity() {
        let mut planner = Planner::new(policy());
        let mut servers = [server(1, 3.0), server(2, 9.0), server(3, 1.0)];
        servers[0].prices = None; // offers no lespay
        let actions = planner.plan(Timestamp::ZERO, 0, &servers, U256::ZERO);
        // rate at target: 10 + 1000 = 1010 tokens/s; 600 s = 606,000 tokens = 606,000,000 wei;
        // and the target capacity, which the payment will support.
        assert_eq!(
            actions,
            vec![
                Action::Pay {
                    server: NodeId::repeat_byte(2),
                    tokens: 606_000,
                    wei: U256::from(606_000_000u64)
                },
                Action::RequestCapacity { server: NodeId::repeat_byte(2), capacity: 1_000_000 },
            ]
        );
    }

    #[test]
    fn simulated_hour_keeps_capacity_and_never_passes_the_budget() {
        let budget = U256::from(2_000_000_000u64);
        let mut planner = Planner::new(PaymentPolicy { budget_wei: budget, ..policy() });
        let mut sim = SimServer { view: server(7, 1.0) };
        let mut now = Timestamp::ZERO;
        let (mut paid_seconds, mut payments, mut requests) = (0u64, 0, 0);
        for second in 0..3_600u64 {
            let signed = sim.view.channel.expect("channel").signed;
            for action in planner.plan(now, second, std::slice::from_ref(&sim.view), signed) {
                let wei = sim.apply(&action);
                match action {
                    Action::Pay { .. } => {
                        payments += 1;
                        planner.record_spend(now, wei);
                    }
                    Action::RequestCapacity { .. } => requests += 1,
                }
            }
            if sim.view.balance.expect("balance").capacity >= 1_000_000 {
                paid_seconds += 1;
            }
            sim.tick(1);
            now = now.saturating_add(SECOND);
        }
        let signed = sim.view.channel.expect("channel").signed;
        assert!(signed <= budget, "signed {signed} over budget {budget}");
        // 2e9 wei buy 2,000,000 tokens = about 1,980 s at 1010 tokens/s; three payments of
        // 606,000 tokens, then a last one capped by the budget.
        assert_eq!(payments, 4);
        assert_eq!(signed, budget);
        assert!(requests >= 1);
        assert!((1_900..=2_000).contains(&paid_seconds), "paid capacity for {paid_seconds} s");
        assert_eq!(planner.hold(&NodeId::repeat_byte(7)), Some(Hold::BudgetUsed));
    }

    #[test]
    fn pays_again_only_when_the_balance_runs_low() {
        let mut planner = Planner::new(policy());
        let mut view = server(1, 1.0);
        view.balance = Some(Balance {
            pos: 1010 * 61,
            neg: 0,
            capacity: 1_000_000,
            priority_class: PriorityClass::Paid,
        });
        assert!(
            planner.plan(Timestamp::ZERO, 0, std::slice::from_ref(&view), U256::ZERO).is_empty()
        );
        view.balance.as_mut().expect("balance").pos = 1010 * 59;
        let actions = planner.plan(Timestamp::ZERO, 0, std::slice::from_ref(&view), U256::ZERO);
        assert_eq!(
            actions,
            vec![Action::Pay {
                server: view.node,
                tokens: 1010 * (600 - 59),
                wei: U256::from(1010u64 * (600 - 59) * 1000)
            }]
        );
    }

    #[test]
    fn hourly_limit_and_deposit_cap_payments() {
        let hourly = U256::from(100_000_000u64);
        let mut planner =
            Planner::new(PaymentPolicy { max_spend_wei_per_hour: Some(hourly), ..policy() });
        let view = server(1, 1.0);
        let now = Timestamp::ZERO;
        let actions = planner.plan(now, 0, std::slice::from_ref(&view), U256::ZERO);
        assert_eq!(
            actions,
            vec![
                Action::Pay { server: view.node, tokens: 100_000, wei: hourly },
                Action::RequestCapacity { server: view.node, capacity: 1_000_000 },
            ]
        );
        planner.record_spend(now, hourly);
        let later = now.saturating_add(Duration::from_secs(1800));
        assert!(planner.plan(later, 1800, std::slice::from_ref(&view), hourly).is_empty());
        assert_eq!(planner.hold(&view.node), Some(Hold::HourlyLimit));
        let hour_on = now.saturating_add(SPEND_WINDOW);
        let pays = |actions: Vec<Action>| {
            actions.into_iter().filter(|a| matches!(a, Action::Pay { .. })).count()
        };
        assert_eq!(pays(planner.plan(hour_on, 3600, std::slice::from_ref(&view), hourly)), 1);

        let mut planner = Planner::new(policy());
        let mut small = server(1, 1.0);
        small.channel = Some(ChannelView {
            deposit: U256::from(5_500u64),
            signed: U256::from(1_000u64),
            expiry: 1_000_000,
        });
        let actions = planner.plan(now, 0, std::slice::from_ref(&small), U256::from(1_000u64));
        assert_eq!(
            actions[0],
            Action::Pay { server: small.node, tokens: 4, wei: U256::from(4_000u64) }
        );
        small.channel.as_mut().expect("channel").signed = U256::from(5_000u64);
        assert!(
            planner.plan(now, 0, std::slice::from_ref(&small), U256::from(5_000u64)).is_empty()
        );
        assert_eq!(planner.hold(&small.node), Some(Hold::DepositUsed));
    }

    #[test]
    fn holds_servers_without_a_usable_channel() {
        let mut planner = Planner::new(policy());
        let mut none = server(1, 2.0);
        none.channel = None;
        let mut expiring = server(2, 1.0);
        expiring.channel.as_mut().expect("channel").expiry = 3_000;
        let mut planner2 =
            Planner::new(PaymentPolicy { servers: ServerChoice::Best(2), ..policy() });
        assert!(
            planner2
                .plan(Timestamp::ZERO, 0, &[none.clone(), expiring.clone()], U256::ZERO)
                .is_empty()
        );
        assert_eq!(planner2.hold(&none.node), Some(Hold::NoChannel));
        assert_eq!(planner2.hold(&expiring.node), Some(Hold::Expiring));
        // Listed order wins over value.
        let mut listed = Planner::new(PaymentPolicy {
            servers: ServerChoice::Listed(vec![NodeId::repeat_byte(3)]),
            ..policy()
        });
        let actions =
            listed.plan(Timestamp::ZERO, 0, &[server(2, 9.0), server(3, 0.0)], U256::ZERO);
        assert!(
            matches!(actions.as_slice(), [Action::Pay { server, .. }, Action::RequestCapacity { .. }] if *server == NodeId::repeat_byte(3))
        );
        let _ = planner.plan(Timestamp::ZERO, 0, &[], U256::ZERO);
    }

    #[test]
    fn capacity_requests_are_not_repeated_within_the_retry_interval() {
        let mut planner = Planner::new(policy());
        let mut view = server(1, 1.0);
        view.balance = Some(Balance {
            pos: 10_000_000,
            neg: 0,
            capacity: 100_000,
            priority_class: PriorityClass::Paid,
        });
        let now = Timestamp::ZERO;
        let want = vec![Action::RequestCapacity { server: view.node, capacity: 1_000_000 }];
        assert_eq!(planner.plan(now, 0, std::slice::from_ref(&view), U256::ZERO), want);
        assert!(
            planner
                .plan(now.saturating_add(SECOND), 1, std::slice::from_ref(&view), U256::ZERO)
                .is_empty()
        );
        let later = now.saturating_add(CAPACITY_RETRY);
        assert_eq!(planner.plan(later, 10, std::slice::from_ref(&view), U256::ZERO), want);
        view.busy = true;
        assert!(
            planner
                .plan(
                    later.saturating_add(CAPACITY_RETRY),
                    20,
                    std::slice::from_ref(&view),
                    U256::ZERO
                )
                .is_empty()
        );
    }

    #[test]
    fn bad_policies_are_refused_with_the_parameter() {
        assert_eq!(
            PaymentPolicy { target_capacity: 0, ..policy() }.validate(),
            Err(PolicyError::ZeroCapacity)
        );
        assert!(matches!(
            PaymentPolicy { top_up_secs: 60, ..policy() }.validate(),
            Err(PolicyError::Periods { .. })
        ));
        assert!(matches!(
            PaymentPolicy { servers: ServerChoice::Best(0), ..policy() }.validate(),
            Err(PolicyError::Servers(_))
        ));
        let twice = ServerChoice::Listed(vec![NodeId::repeat_byte(1), NodeId::repeat_byte(1)]);
        assert!(matches!(
            PaymentPolicy { servers: twice, ..policy() }.validate(),
            Err(PolicyError::Servers(_))
        ));
        let over = Some(U256::from(20_000_000_000u64));
        assert_eq!(
            PaymentPolicy { max_spend_wei_per_hour: over, ..policy() }.validate(),
            Err(PolicyError::HourlyLimit)
        );
        assert_eq!(policy().validate(), Ok(()));
        let parsed: PaymentPolicy = serde_json::from_value(serde_json::json!({
            "budgetWei": "0x2540be400", "targetCapacity": 1_000_000, "servers": 1,
            "lowBalanceSecs": 60, "topUpSecs": 600
        }))
        .expect("policy JSON");
        assert_eq!(parsed, policy());
        assert!(
            serde_json::from_value::<PaymentPolicy>(serde_json::json!({
                "budgetWei": "0x1", "targetCapacity": 1, "extra": 1
            }))
            .is_err()
        );
    }
}
