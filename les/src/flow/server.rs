//! Server side: one client's buffer, as the server accounts for it (geth
//! `flowcontrol.ClientNode` with the recharge at exactly MRR).
//!
//! Per request the server: accepts it if its maximum cost fits the buffer (taking the
//! maximum cost out), serves it, refunds what serving did not use, and replies with
//! `BV_now + (maximum costs of requests accepted after this one)`; the client subtracts
//! those later costs itself. An les/3+ client that overruns its buffer is frozen (the
//! server sends StopMsg) and resumed (ResumeMsg) once its buffer has recovered.

use super::RechargeClock;
use super::cost::FlowParams;
use crate::time::Timestamp;
use std::collections::HashMap;
use std::time::Duration;

/// A capacity decrease takes effect this long after it is decided, so the client hears
/// about it (in an announcement) before it is enforced (geth `DecParamDelay`).
pub const PARAM_DECREASE_DELAY: Duration = Duration::from_secs(2);

/// A frozen client stays frozen at least this long (geth: 700 ms plus up to 600 ms of
/// random jitter, then polls until the buffer has recovered).
pub const FREEZE_MIN_DELAY: Duration = Duration::from_millis(700);

/// The largest random extra delay added to [`FREEZE_MIN_DELAY`].
pub const FREEZE_MAX_JITTER: Duration = Duration::from_millis(600);

/// A frozen client is resumed once its buffer holds more than `BL / this`.
pub const RESUME_THRESHOLD_DIVISOR: u64 = 8;

/// Why a request was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    /// The client is frozen; geth drops such requests without reply (charging only
    /// their incoming size, see [`ClientBuffer::charge`]).
    #[error("client is frozen")]
    Frozen,
    /// The cost table has no entry for this message code.
    #[error("no cost entry for request code {0:#x}")]
    UnknownRequestCode(u64),
    /// Buffer underrun: the request's maximum cost exceeds the buffer. les/2 clients are
    /// disconnected (useless peer); les/3+ clients are frozen ([`ClientBuffer::freeze`]).
    #[error("buffer underrun: request costs up to {max_cost}, buffer holds {buffer_value}")]
    Underrun {
        /// The request's maximum cost.
        max_cost: u64,
        /// The buffer value when it arrived.
        buffer_value: u64,
    },
}

/// Proof that a request was accepted; hand it back to [`ClientBuffer::complete`] when
/// the request has been served. Deliberately neither `Clone` nor `Copy`, so each
/// acceptance is completed once.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestTicket {
    seq: u64,
    max_cost: u64,
}

impl RequestTicket {
    /// Position of the request among those this buffer accepted.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The maximum cost taken from the buffer on acceptance.
    pub fn max_cost(&self) -> u64 {
        self.max_cost
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ScheduledChange {
    at: Timestamp,
    buffer_limit: u64,
    min_recharge: u64,
}

/// One client's buffer as the server sees it.
#[derive(Debug, Clone)]
pub struct ClientBuffer {
    params: FlowParams,
    value: u64,
    clock: RechargeClock,
    /// Sum of the maximum costs of all accepted requests. Only differences of this
    /// counter are used, so it wraps (modular differences stay exact).
    sum_cost: u64,
    next_seq: u64,
    /// seq -> `sum_cost` right after that request was accepted, for unanswered requests.
    accepted: HashMap<u64, u64>,
    /// While frozen: the earliest time the client may be resumed.
    frozen_until: Option<Timestamp>,
    /// Pending capacity decreases, in time order, with decreasing MRR.
    scheduled: Vec<ScheduledChange>,
}

impl ClientBuffer {
    /// A newly connected client: the buffer starts full.
    pub fn new(params: FlowParams, now: Timestamp) -> Self {
        Self {
            value: params.buffer_limit,
            params,
            clock: RechargeClock::new(now),
            sum_cost: 0,
            next_seq: 0,
            accepted: HashMap::new(),
            frozen_until: None,
            scheduled: Vec::new(),
        }
    }

    /// The parameters in force (pending decreases not yet applied).
    pub fn params(&self) -> &FlowParams {
        &self.params
    }

    fn recharge(&mut self, now: Timestamp) {
        let gain = self.clock.advance(now, self.params.min_recharge);
        self.value = self.value.saturating_add(gain);
        if self.value >= self.params.buffer_limit {
            self.value = self.params.buffer_limit;
            self.clock.clear_carry();
        }
    }

    fn apply_capacity(&mut self, buffer_limit: u64, min_recharge: u64) {
        if buffer_limit > self.params.buffer_limit {
            self.value = self.value.saturating_add(buffer_limit - self.params.buffer_limit);
        }
        self.value = self.value.min(buffer_limit);
        self.params.buffer_limit = buffer_limit;
        self.params.min_recharge = min_recharge;
    }

    /// Brings the buffer up to `now`: due capacity changes are applied at their own
    /// time, with recharge before each at the rate then in force.
    fn update(&mut self, now: Timestamp) {
        let due = self.scheduled.iter().take_while(|change| change.at <= now).count();
        let changes: Vec<ScheduledChange> = self.scheduled.drain(..due).collect();
        for change in changes {
            self.recharge(change.at);
            self.apply_capacity(change.buffer_limit, change.min_recharge);
        }
        self.recharge(now);
    }

    /// The buffer value at `now`.
    pub fn buffer_value(&mut self, now: Timestamp) -> u64 {
        self.update(now);
        self.value
    }

    /// Accepts a request of `items` items of message `code`, taking its maximum cost
    /// from the cost table. Item-count limits are the caller's business (geth drops
    /// requests with 0 or too many items before flow control sees them).
    pub fn accept(
        &mut self,
        code: u64,
        items: u64,
        now: Timestamp,
    ) -> Result<RequestTicket, AcceptError> {
        let max_cost =
            self.params.costs.max_cost(code, items).ok_or(AcceptError::UnknownRequestCode(code))?;
        self.accept_cost(max_cost, now)
    }

    /// Accepts a request whose maximum cost the caller computed. On error the buffer is
    /// unchanged.
    pub fn accept_cost(
        &mut self,
        max_cost: u64,
        now: Timestamp,
    ) -> Result<RequestTicket, AcceptError> {
        self.update(now);
        if self.frozen_until.is_some() {
            return Err(AcceptError::Frozen);
        }
        if max_cost > self.value {
            return Err(AcceptError::Underrun { max_cost, buffer_value: self.value });
        }
        self.value -= max_cost;
        self.sum_cost = self.sum_cost.wrapping_add(max_cost);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.accepted.insert(seq, self.sum_cost);
        Ok(RequestTicket { seq, max_cost })
    }

    /// Takes `cost` out of the buffer without accepting a request, stopping at zero:
    /// geth charges the incoming size of dropped requests this way.
    pub fn charge(&mut self, cost: u64, now: Timestamp) {
        self.update(now);
        self.value = self.value.saturating_sub(cost);
    }

    /// The BV to put in the reply to `ticket`'s request if it were sent at `now`: the
    /// current value plus the maximum costs of requests accepted after it.
    pub fn reply_buffer_value(&mut self, ticket: &RequestTicket, now: Timestamp) -> u64 {
        self.update(now);
        let accepted_later = self
            .accepted
            .get(&ticket.seq)
            .map_or(0, |&sum_at_accept| self.sum_cost.wrapping_sub(sum_at_accept));
        self.value.saturating_add(accepted_later)
    }

    /// Finishes a request: refunds `max_cost - real_cost` (nothing if serving cost more
    /// than the maximum) and returns the BV for the reply. Requests dropped without a
    /// reply are completed too (with whatever cost the caller charges), so the
    /// bookkeeping for them ends.
    pub fn complete(&mut self, ticket: RequestTicket, real_cost: u64, now: Timestamp) -> u64 {
        self.update(now);
        let refund = ticket.max_cost - real_cost.min(ticket.max_cost);
        self.value = self.value.saturating_add(refund).min(self.params.buffer_limit);
        let reply = self.reply_buffer_value(&ticket, now);
        self.accepted.remove(&ticket.seq);
        reply
    }

    /// Number of accepted requests not yet completed.
    pub fn outstanding(&self) -> usize {
        self.accepted.len()
    }

    /// Freezes the client after an underrun (les/3+): the caller sends StopMsg. `jitter`
    /// is the random part of the delay, clamped to [`FREEZE_MAX_JITTER`]. Returns the
    /// earliest time a resume may happen. Freezing a frozen client keeps the later of
    /// the two times.
    pub fn freeze(&mut self, now: Timestamp, jitter: Duration) -> Timestamp {
        self.update(now);
        let until =
            now.saturating_add(FREEZE_MIN_DELAY).saturating_add(jitter.min(FREEZE_MAX_JITTER));
        let until = self.frozen_until.map_or(until, |earlier| earlier.max(until));
        self.frozen_until = Some(until);
        until
    }

    /// Whether the client is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen_until.is_some()
    }

    fn resume_threshold(&self) -> u64 {
        self.params.buffer_limit / RESUME_THRESHOLD_DIVISOR
    }

    /// When a frozen client can be resumed, at the current parameters: the end of the
    /// freeze delay or the moment the buffer exceeds BL/8, whichever is later. `None`
    /// if not frozen. With MRR 0 and too low a buffer, the end of the clock. Call
    /// [`ClientBuffer::try_resume`] then; a capacity change in between can move it.
    pub fn resume_at(&self) -> Option<Timestamp> {
        let until = self.frozen_until?;
        let threshold = self.resume_threshold();
        if self.value > threshold {
            return Some(until);
        }
        let needed = threshold - self.value + 1;
        let recovered = match self.clock.time_to_earn(needed, self.params.min_recharge) {
            Some(wait) => self.clock.last.saturating_add(wait),
            None => Timestamp::from_nanos(u64::MAX),
        };
        Some(until.max(recovered))
    }

    /// Resumes a frozen client if its time has come and its buffer exceeds BL/8;
    /// returns the BV to send in ResumeMsg.
    pub fn try_resume(&mut self, now: Timestamp) -> Option<u64> {
        self.update(now);
        let until = self.frozen_until?;
        if now < until || self.value <= self.resume_threshold() {
            return None;
        }
        self.frozen_until = None;
        Some(self.value)
    }

    /// Changes the client's capacity. If the new MRR is not lower than the current one
    /// the change applies now (pending decreases are dropped); otherwise it applies
    /// [`PARAM_DECREASE_DELAY`] from now. On a BL increase the buffer grows by the
    /// difference; on a decrease it is clipped. The cost table is not touched.
    pub fn update_capacity(&mut self, buffer_limit: u64, min_recharge: u64, now: Timestamp) {
        self.update(now);
        if min_recharge >= self.params.min_recharge {
            self.scheduled.clear();
            self.apply_capacity(buffer_limit, min_recharge);
            return;
        }
        // The schedule has decreasing MRR. A new value at least as high as a scheduled
        // one takes that one's slot and makes the later (lower) ones moot.
        if let Some(pos) =
            self.scheduled.iter().position(|change| min_recharge >= change.min_recharge)
        {
            self.scheduled.truncate(pos + 1);
            if let Some(change) = self.scheduled.get_mut(pos) {
                change.buffer_limit = buffer_limit;
                change.min_recharge = min_recharge;
            }
            return;
        }
        self.scheduled.push(ScheduledChange {
            at: now.saturating_add(PARAM_DECREASE_DELAY),
            buffer_limit,
            min_recharge,
        });
    }

    /// When the next pending capacity decrease applies.
    pub fn next_capacity_change(&self) -> Option<Timestamp> {
        self.scheduled.first().map(|change| change.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::CostTable;
    use crate::msg::RequestCost;

    const CODE: u64 = 0x02;

    fn ms(millis: u64) -> Timestamp {
        Timestamp::from_millis(millis)
    }

    /// BL 1000, MRR 10/ms, one request type costing 100 + 10 per item.
    fn params() -> FlowParams {
        let costs =
            [RequestCost { code: CODE, base_cost: 100, request_cost: 10 }].into_iter().collect();
        FlowParams { buffer_limit: 1000, min_recharge: 10, costs }
    }

    #[test]
    fn starts_full_and_recharges_at_mrr() {
        let mut buf = ClientBuffer::new(params(), ms(0));
        assert_eq!(buf.buffer_value(ms(0)), 1000);
        let ticket = buf.accept(CODE, 20, ms(0)).unwrap(); // 100 + 200
        assert_eq!(ticket.max_cost(), 300);
        assert_eq!(buf.buffer_value(ms(0)), 700);
        assert_eq!(buf.buffer_value(ms(7)), 770);
        assert_eq!(buf.buffer_value(Timestamp::from_nanos(7_550_000)), 775);
        assert_eq!(buf.buffer_value(ms(100)), 1000);
        assert_eq!(buf.buffer_value(ms(1000)), 1000);
    }

    #[test]
    fn reply_values_follow_the_later_accepted_costs() {
        // research §5.2 step 5, worked by hand.
        let mut buf = ClientBuffer::new(params(), ms(0));
        let a = buf.accept_cost(300, ms(0)).unwrap(); // BV 700, sum 300
        let b = buf.accept_cost(200, ms(0)).unwrap(); // BV 500, sum 500
        let c = buf.accept_cost(100, ms(0)).unwrap(); // BV 400, sum 600
        assert_eq!(buf.outstanding(), 3);
        // At 10 ms: BV 400 + 100 recharge = 500.
        assert_eq!(buf.reply_buffer_value(&a, ms(10)), 500 + 300);
        assert_eq!(buf.reply_buffer_value(&b, ms(10)), 500 + 100);
        assert_eq!(buf.reply_buffer_value(&c, ms(10)), 500);
        // A served for 100 of its 300: refund 200 -> BV 700; reply 700 + (600 - 300).
        assert_eq!(buf.complete(a, 100, ms(10)), 1000);
        // C served at full cost: no refund; nothing accepted after it.
        assert_eq!(buf.complete(c, 100, ms(10)), 700);
        // B at 20 ms: 700 + 100 recharge + 150 refund = 950; C (accepted later) adds 100.
        assert_eq!(buf.complete(b, 50, ms(20)), 1050);
        assert_eq!(buf.outstanding(), 0);
        assert_eq!(buf.buffer_value(ms(20)), 950);
    }

    #[test]
    fn refund_is_capped_by_max_cost_and_limit() {
        let mut buf = ClientBuffer::new(params(), ms(0));
        let t = buf.accept_cost(500, ms(0)).unwrap();
        // Serving cost more than the maximum: no refund, no extra charge.
        assert_eq!(buf.complete(t, 10_000, ms(0)), 500);
        let t = buf.accept_cost(100, ms(0)).unwrap();
        // 400 + 550 recharge + 100 refund, clipped at BL.
        assert_eq!(buf.complete(t, 0, ms(55)), 1000);
    }

    #[test]
    fn underrun_leaves_the_buffer_alone() {
        let mut buf = ClientBuffer::new(params(), ms(0));
        let _t = buf.accept_cost(600, ms(0)).unwrap();
        assert_eq!(
            buf.accept_cost(401, ms(0)),
            Err(AcceptError::Underrun { max_cost: 401, buffer_value: 400 })
        );
        assert_eq!(buf.buffer_value(ms(0)), 400);
        assert!(buf.accept_cost(400, ms(0)).is_ok());
        assert_eq!(buf.accept(0x99, 1, ms(0)), Err(AcceptError::UnknownRequestCode(0x99)));
        assert_eq!(
            buf.accept(CODE, u64::MAX, ms(0)),
            Err(AcceptError::Underrun { max_cost: u64::MAX, buffer_value: 0 })
        );
    }

    #[test]
    fn freeze_and_resume() {
        let params = FlowParams { buffer_limit: 100_000, ..params() };
        let mut buf = ClientBuffer::new(params, ms(0));
        let t = buf.accept_cost(100_000, ms(0)).unwrap();
        assert!(matches!(buf.accept_cost(1, ms(0)), Err(AcceptError::Underrun { .. })));
        assert!(buf.resume_at().is_none());
        assert_eq!(buf.freeze(ms(0), Duration::from_millis(100)), ms(800));
        assert!(buf.is_frozen());
        assert_eq!(buf.accept_cost(1, ms(1)), Err(AcceptError::Frozen));
        // BV must exceed 100,000 / 8 = 12,500: 12,501 units at 10/ms take 1250.1 ms,
        // which is later than the 800 ms freeze delay.
        let resume = Timestamp::from_nanos(1_250_100_000);
        assert_eq!(buf.resume_at(), Some(resume));
        assert_eq!(buf.try_resume(ms(800)), None);
        assert_eq!(buf.try_resume(ms(1250)), None);
        assert_eq!(buf.try_resume(resume), Some(12_501));
        assert!(!buf.is_frozen());
        assert!(buf.accept_cost(1, resume).is_ok());
        // The request accepted before the freeze can still be completed; the 1-unit
        // request accepted after it counts in its reply.
        assert_eq!(buf.complete(t, 100_000, resume), 12_501);
    }

    #[test]
    fn freeze_delay_binds_when_the_buffer_is_fine() {
        let mut buf = ClientBuffer::new(params(), ms(0));
        // Jitter is clamped to 600 ms.
        assert_eq!(buf.freeze(ms(5), Duration::from_secs(60)), ms(1305));
        assert_eq!(buf.resume_at(), Some(ms(1305)));
        assert_eq!(buf.try_resume(ms(1304)), None);
        assert_eq!(buf.try_resume(ms(1305)), Some(1000));
    }

    #[test]
    fn charging_dropped_requests() {
        let mut buf = ClientBuffer::new(params(), ms(0));
        buf.charge(300, ms(0));
        assert_eq!(buf.buffer_value(ms(0)), 700);
        buf.charge(u64::MAX, ms(0));
        assert_eq!(buf.buffer_value(ms(0)), 0);
    }

    #[test]
    fn capacity_increase_applies_now() {
        let mut buf = ClientBuffer::new(params(), ms(0));
        buf.charge(500, ms(0));
        buf.update_capacity(2000, 20, ms(0));
        assert_eq!(buf.buffer_value(ms(0)), 1500);
        assert_eq!(buf.buffer_value(ms(10)), 1700);
        assert_eq!(buf.params().buffer_limit, 2000);
        assert_eq!(buf.next_capacity_change(), None);
    }

    #[test]
    fn capacity_decrease_waits() {
        let mut buf = ClientBuffer::new(params(), ms(0));
        buf.charge(1000, ms(0));
        buf.update_capacity(500, 5, ms(0));
        assert_eq!(buf.next_capacity_change(), Some(ms(2000)));
        assert_eq!(buf.params().min_recharge, 10);
        // Still the old rate until 2 s: 10/ms for 40 ms.
        assert_eq!(buf.buffer_value(ms(40)), 400);
        // At 2 s the buffer would have been full (1000) and is clipped to the new 500;
        // afterwards it is full at the new limit.
        assert_eq!(buf.buffer_value(ms(3000)), 500);
        assert_eq!(buf.params().min_recharge, 5);
        buf.charge(500, ms(3000));
        assert_eq!(buf.buffer_value(ms(3010)), 50);
    }

    #[test]
    fn decrease_is_applied_at_its_own_time_within_a_long_gap() {
        let mut buf = ClientBuffer::new(params(), ms(0));
        buf.charge(1000, ms(0));
        buf.update_capacity(1000, 1, ms(0));
        buf.charge(1000, ms(1950));
        // One call at 2.1 s: 50 ms at the old 10/ms until 2 s, then 100 ms at 1/ms.
        assert_eq!(buf.buffer_value(ms(2100)), 500 + 100);
    }

    #[test]
    fn schedule_merging() {
        let mut buf = ClientBuffer::new(params(), ms(0));
        buf.update_capacity(800, 8, ms(0)); // at 2000
        buf.update_capacity(600, 6, ms(500)); // at 2500
        buf.update_capacity(700, 7, ms(600)); // replaces the 6 entry, keeps 2500
        assert_eq!(buf.buffer_value(ms(2000)), 800);
        assert_eq!(buf.buffer_value(ms(2499)), 800);
        assert_eq!(buf.buffer_value(ms(2500)), 700);
        assert_eq!(buf.params().min_recharge, 7);
        assert_eq!(buf.next_capacity_change(), None);
        buf.update_capacity(600, 6, ms(3000));
        buf.update_capacity(2000, 20, ms(3001)); // increase drops the pending decrease
        assert_eq!(buf.next_capacity_change(), None);
        assert_eq!(buf.buffer_value(ms(6000)), 2000);
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let costs = [RequestCost { code: CODE, base_cost: u64::MAX, request_cost: u64::MAX }]
            .into_iter()
            .collect::<CostTable>();
        let params = FlowParams { buffer_limit: u64::MAX, min_recharge: u64::MAX, costs };
        let mut buf = ClientBuffer::new(params, Timestamp::ZERO);
        let t = buf.accept(CODE, 0, Timestamp::ZERO).unwrap();
        assert_eq!(buf.buffer_value(Timestamp::ZERO), 0);
        assert_eq!(buf.buffer_value(Timestamp::from_nanos(u64::MAX)), u64::MAX);
        let t2 = buf.accept_cost(u64::MAX, Timestamp::from_nanos(u64::MAX)).unwrap();
        // Two u64::MAX costs outstanding: the wrapping counter still yields the exact
        // later cost for the first ticket.
        assert_eq!(buf.reply_buffer_value(&t, Timestamp::from_nanos(u64::MAX)), u64::MAX);
        assert_eq!(buf.complete(t2, 0, Timestamp::from_nanos(u64::MAX)), u64::MAX);
        assert_eq!(buf.complete(t, 0, Timestamp::from_nanos(u64::MAX)), u64::MAX);
        assert_eq!(
            buf.freeze(Timestamp::from_nanos(u64::MAX), Duration::MAX),
            Timestamp::from_nanos(u64::MAX)
        );
    }
}
