//! Client side: the lower estimate (BLE) of a server's buffer for us (geth
//! `flowcontrol.ServerNode`).
//!
//! The client cannot see the server's buffer, only the BV in each reply, which already
//! includes the maximum costs of requests the server accepted after the answered one.
//! Subtracting what we sent after it gives a value the real buffer cannot be below.
//! Recharge is only counted while `recharging` is on: after a send from a full buffer we
//! do not know when the server took the cost out, so we wait for a reply to restart it.

use super::RechargeClock;
use super::cost::{CostTable, FlowParams};
use crate::time::Timestamp;
use std::collections::HashMap;
use std::time::Duration;

/// Why a request may not be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendDelay {
    /// The estimate is too low; at the current recharge it suffices after this long
    /// (`Duration::MAX` if the server gives no recharge). While no reply is outstanding
    /// to restart the recharge this is the server's recharge time, not ours: ask again.
    #[error("buffer estimate too low, wait {0:?}")]
    Wait(Duration),
    /// The server sent StopMsg; nothing may be sent until ResumeMsg.
    #[error("server has frozen us")]
    Frozen,
}

/// A reply for a request ID we are not waiting for (answered already, never sent, or
/// cleared by ResumeMsg). geth counts these as bad replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("reply to unknown request id {0}")]
pub struct UnknownRequest(pub u64);

/// Our estimate of one server's buffer for us.
#[derive(Debug, Clone)]
pub struct ServerBufferEstimate {
    params: FlowParams,
    estimate: u64,
    recharging: bool,
    clock: RechargeClock,
    /// Sum of the costs of all requests sent. Only differences are used, so it wraps.
    sum_cost: u64,
    /// request ID -> `sum_cost` right after sending it, for unanswered requests.
    pending: HashMap<u64, u64>,
    frozen: bool,
}

impl ServerBufferEstimate {
    /// The estimate after the Status exchange: full buffer, not recharging.
    pub fn new(params: FlowParams, now: Timestamp) -> Self {
        Self {
            estimate: params.buffer_limit,
            params,
            recharging: false,
            clock: RechargeClock::new(now),
            sum_cost: 0,
            pending: HashMap::new(),
            frozen: false,
        }
    }

    /// The server's parameters as we know them.
    pub fn params(&self) -> &FlowParams {
        &self.params
    }

    fn recharge(&mut self, now: Timestamp) {
        let gain = self.clock.advance(now, self.params.min_recharge);
        if !self.recharging {
            self.clock.clear_carry();
            return;
        }
        self.estimate = self.estimate.saturating_add(gain);
        if self.estimate >= self.params.buffer_limit {
            self.estimate = self.params.buffer_limit;
            self.recharging = false;
            self.clock.clear_carry();
        }
    }

    /// BLE at `now`.
    pub fn buffer_estimate(&mut self, now: Timestamp) -> u64 {
        self.recharge(now);
        self.estimate
    }

    /// Whether the estimate is currently counting recharge.
    pub fn is_recharging(&self) -> bool {
        self.recharging
    }

    /// Whether the server has sent StopMsg and not yet ResumeMsg.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Number of requests sent and not yet answered.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// The cost to budget for a request: the server's maximum cost, capped at BL (as
    /// geth does, so that an oversized request can still be sent from a full buffer).
    /// `None` if the server announced no cost for `code`.
    pub fn request_cost(&self, code: u64, items: u64) -> Option<u64> {
        self.params.costs.max_cost(code, items).map(|cost| cost.min(self.params.buffer_limit))
    }

    /// Whether a request of `cost` may be sent at `now`: BLE must cover
    /// `min(BL, cost + MRR)`, the cost plus one millisecond of recharge as a margin for
    /// timing differences between us and the server.
    pub fn can_send(&mut self, cost: u64, now: Timestamp) -> Result<(), SendDelay> {
        if self.frozen {
            return Err(SendDelay::Frozen);
        }
        self.recharge(now);
        let needed = cost.saturating_add(self.params.min_recharge).min(self.params.buffer_limit);
        if self.estimate >= needed {
            return Ok(());
        }
        let shortfall = needed - self.estimate;
        let carry_clock =
            if self.recharging { self.clock.clone() } else { RechargeClock::new(now) };
        Err(SendDelay::Wait(
            carry_clock.time_to_earn(shortfall, self.params.min_recharge).unwrap_or(Duration::MAX),
        ))
    }

    /// Records a request sent with ID `req_id` and cost `cost` (normally after
    /// [`ServerBufferEstimate::can_send`] allowed it). Does not start the recharge. A
    /// reused ID replaces the older pending entry.
    pub fn on_send(&mut self, req_id: u64, cost: u64, now: Timestamp) {
        self.recharge(now);
        self.estimate = self.estimate.saturating_sub(cost);
        self.sum_cost = self.sum_cost.wrapping_add(cost);
        self.pending.insert(req_id, self.sum_cost);
    }

    /// Applies the BV of a reply to `req_id`: the estimate becomes `BV − (costs sent
    /// after req_id)` (floored at 0) if that is higher than the current one; a late
    /// reply never lowers it. BV is capped at BL. Recharge runs while below BL.
    pub fn on_reply(
        &mut self,
        req_id: u64,
        buffer_value: u64,
        now: Timestamp,
    ) -> Result<(), UnknownRequest> {
        self.recharge(now);
        let sum_at_send = self.pending.remove(&req_id).ok_or(UnknownRequest(req_id))?;
        let buffer_value = buffer_value.min(self.params.buffer_limit);
        let sent_after = self.sum_cost.wrapping_sub(sum_at_send);
        let estimate = buffer_value.saturating_sub(sent_after);
        if estimate > self.estimate {
            self.estimate = estimate;
            // The fraction of a unit accrued so far belonged to the old estimate; the
            // server's fraction behind BV is unknown, so count from zero.
            self.clock.clear_carry();
        }
        self.recharging = self.estimate < self.params.buffer_limit;
        Ok(())
    }

    /// StopMsg: send nothing until ResumeMsg. Unanswered requests will never be
    /// answered; they stay pending until ResumeMsg clears them.
    pub fn on_stop(&mut self) {
        self.frozen = true;
    }

    /// ResumeMsg(BV): all pending requests are forgotten and the estimate is set to BV
    /// (capped at BL). Also valid without a preceding StopMsg, as a plain buffer update.
    pub fn on_resume(&mut self, buffer_value: u64, now: Timestamp) {
        self.recharge(now);
        self.pending.clear();
        self.frozen = false;
        self.estimate = buffer_value.min(self.params.buffer_limit);
        self.clock.clear_carry();
        self.recharging = self.estimate < self.params.buffer_limit;
    }

    /// New BL and MRR announced by the server (both keys present): on a BL increase the
    /// estimate grows by the difference, on a decrease it is clipped.
    pub fn on_params(&mut self, buffer_limit: u64, min_recharge: u64, now: Timestamp) {
        self.recharge(now);
        if buffer_limit > self.params.buffer_limit {
            self.estimate = self.estimate.saturating_add(buffer_limit - self.params.buffer_limit);
        }
        self.estimate = self.estimate.min(buffer_limit);
        self.params.buffer_limit = buffer_limit;
        self.params.min_recharge = min_recharge;
        if self.estimate >= buffer_limit {
            self.recharging = false;
            self.clock.clear_carry();
        }
    }

    /// New request costs announced by the server, merged code by code.
    pub fn on_costs(&mut self, update: &CostTable) {
        self.params.costs.merge(update);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::RequestCost;

    fn ms(millis: u64) -> Timestamp {
        Timestamp::from_millis(millis)
    }

    /// BL 1000, MRR 10/ms, one request type costing 100 + 10 per item.
    fn params() -> FlowParams {
        let costs =
            [RequestCost { code: 2, base_cost: 100, request_cost: 10 }].into_iter().collect();
        FlowParams { buffer_limit: 1000, min_recharge: 10, costs }
    }

    #[test]
    fn send_reply_recharge_sequence() {
        let mut est = ServerBufferEstimate::new(params(), ms(0));
        assert_eq!(est.buffer_estimate(ms(0)), 1000);
        assert!(!est.is_recharging());
        assert_eq!(est.can_send(300, ms(0)), Ok(()));
        est.on_send(1, 300, ms(0));
        // Sending does not start the recharge.
        assert_eq!(est.buffer_estimate(ms(50)), 700);
        est.on_send(2, 200, ms(50));
        assert_eq!(est.buffer_estimate(ms(50)), 500);
        // Reply to 1 with BV 900; 200 was sent after it: 700 > 500.
        assert_eq!(est.on_reply(1, 900, ms(60)), Ok(()));
        assert_eq!(est.buffer_estimate(ms(60)), 700);
        assert!(est.is_recharging());
        assert_eq!(est.buffer_estimate(ms(70)), 800);
        // Reply to 2 with BV 650 would mean 650 < 800: a late reply never lowers BLE.
        assert_eq!(est.on_reply(2, 650, ms(70)), Ok(()));
        assert_eq!(est.buffer_estimate(ms(70)), 800);
        assert_eq!(est.buffer_estimate(ms(90)), 1000);
        assert!(!est.is_recharging());
        assert_eq!(est.pending_requests(), 0);
        assert_eq!(est.on_reply(2, 1000, ms(90)), Err(UnknownRequest(2)));
    }

    #[test]
    fn can_send_keeps_a_one_millisecond_margin() {
        let mut est = ServerBufferEstimate::new(params(), ms(0));
        est.on_send(1, 500, ms(0));
        est.on_reply(1, 500, ms(0)).unwrap();
        // BLE 500, recharging. 490 + 10 = 500 fits; 491 needs 1 more unit = 0.1 ms.
        assert_eq!(est.can_send(490, ms(0)), Ok(()));
        assert_eq!(est.can_send(491, ms(0)), Err(SendDelay::Wait(Duration::from_micros(100))));
        // 600 needs 610: 110 units at 10/ms = 11 ms.
        assert_eq!(est.can_send(600, ms(0)), Err(SendDelay::Wait(Duration::from_millis(11))));
        assert_eq!(est.can_send(600, ms(11)), Ok(()));
        // Near the limit the margin is capped: a cost of BL may be sent from a full buffer.
        assert_eq!(est.can_send(1000, ms(11)), Err(SendDelay::Wait(Duration::from_millis(39))));
        assert_eq!(est.can_send(1000, ms(50)), Ok(()));
        assert_eq!(est.request_cost(2, 1_000_000), Some(1000));
        assert_eq!(est.request_cost(2, 3), Some(130));
        assert_eq!(est.request_cost(4, 1), None);
    }

    #[test]
    fn reordered_replies() {
        let mut est = ServerBufferEstimate::new(params(), ms(0));
        est.on_send(1, 300, ms(0));
        est.on_send(2, 200, ms(0));
        est.on_send(3, 100, ms(0));
        assert_eq!(est.buffer_estimate(ms(0)), 400);
        // Server answers 3 first at 10 ms with BV 500 (nothing sent after 3).
        est.on_reply(3, 500, ms(10)).unwrap();
        assert_eq!(est.buffer_estimate(ms(10)), 500);
        // Then 1 with BV 1000: 300 sent after it -> 700.
        est.on_reply(1, 1000, ms(10)).unwrap();
        assert_eq!(est.buffer_estimate(ms(10)), 700);
        // Then 2 at 20 ms with BV 1050 (capped to 1000), 100 sent after -> 900 vs 800.
        est.on_reply(2, 1050, ms(20)).unwrap();
        assert_eq!(est.buffer_estimate(ms(20)), 900);
    }

    #[test]
    fn a_new_estimate_from_a_reply_does_not_inherit_the_old_fraction() {
        let mut est = ServerBufferEstimate::new(FlowParams { min_recharge: 1, ..params() }, ms(0));
        est.on_send(1, 500, ms(0));
        est.on_send(2, 100, ms(0));
        est.on_reply(1, 500, ms(0)).unwrap(); // 500 - 100 = 400, recharging at 1/ms
        // Half a unit accrues by 0.5 ms; then a reply raises the estimate to 600.
        assert_eq!(est.buffer_estimate(Timestamp::from_nanos(500_000)), 400);
        est.on_reply(2, 600, Timestamp::from_nanos(500_000)).unwrap();
        // The server's own fraction is unknown: 0.5 ms later is still 600, not 601.
        assert_eq!(est.buffer_estimate(ms(1)), 600);
        assert_eq!(est.buffer_estimate(Timestamp::from_nanos(1_500_000)), 601);
    }

    #[test]
    fn stop_and_resume() {
        let mut est = ServerBufferEstimate::new(params(), ms(0));
        est.on_send(1, 900, ms(0));
        est.on_send(2, 100, ms(0));
        est.on_stop();
        assert!(est.is_frozen());
        assert_eq!(est.can_send(1, ms(5)), Err(SendDelay::Frozen));
        est.on_resume(400, ms(1000));
        assert!(!est.is_frozen());
        assert_eq!(est.pending_requests(), 0);
        assert_eq!(est.buffer_estimate(ms(1000)), 400);
        assert!(est.is_recharging());
        assert_eq!(est.buffer_estimate(ms(1010)), 500);
        // Replies to requests from before the freeze are unknown now.
        assert_eq!(est.on_reply(1, 1000, ms(1010)), Err(UnknownRequest(1)));
        // Resume with more than BL: capped, not recharging.
        est.on_resume(5000, ms(1020));
        assert_eq!(est.buffer_estimate(ms(1020)), 1000);
        assert!(!est.is_recharging());
    }

    #[test]
    fn parameter_updates() {
        let mut est = ServerBufferEstimate::new(params(), ms(0));
        est.on_send(1, 600, ms(0));
        est.on_reply(1, 400, ms(0)).unwrap();
        est.on_params(2000, 20, ms(0));
        assert_eq!(est.buffer_estimate(ms(0)), 1400);
        assert_eq!(est.buffer_estimate(ms(10)), 1600);
        est.on_params(500, 5, ms(10));
        assert_eq!(est.buffer_estimate(ms(10)), 500);
        assert!(!est.is_recharging());
        assert_eq!(est.params().buffer_limit, 500);
        assert_eq!(est.request_cost(2, 100), Some(500));
        let update = [RequestCost { code: 2, base_cost: 1, request_cost: 1 }].into_iter().collect();
        est.on_costs(&update);
        assert_eq!(est.request_cost(2, 100), Some(101));
    }

    #[test]
    fn no_recharge_means_waiting_forever() {
        let mut est = ServerBufferEstimate::new(FlowParams { min_recharge: 0, ..params() }, ms(0));
        est.on_send(1, 1000, ms(0));
        est.on_reply(1, 0, ms(0)).unwrap();
        assert_eq!(est.can_send(1, ms(1_000_000)), Err(SendDelay::Wait(Duration::MAX)));
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let params =
            FlowParams { buffer_limit: u64::MAX, min_recharge: u64::MAX, costs: CostTable::new() };
        let mut est = ServerBufferEstimate::new(params, Timestamp::ZERO);
        assert_eq!(est.can_send(u64::MAX, Timestamp::ZERO), Ok(()));
        est.on_send(1, u64::MAX, Timestamp::ZERO);
        est.on_send(2, u64::MAX, Timestamp::ZERO);
        assert_eq!(est.buffer_estimate(Timestamp::ZERO), 0);
        est.on_reply(1, u64::MAX, Timestamp::ZERO).unwrap();
        assert_eq!(est.buffer_estimate(Timestamp::ZERO), 0);
        est.on_reply(2, 5, Timestamp::ZERO).unwrap();
        assert_eq!(est.buffer_estimate(Timestamp::ZERO), 5);
        assert_eq!(est.buffer_estimate(Timestamp::from_nanos(u64::MAX)), u64::MAX);
        est.on_params(1, u64::MAX, Timestamp::from_nanos(u64::MAX));
        assert_eq!(est.buffer_estimate(Timestamp::from_nanos(u64::MAX)), 1);
    }
}
