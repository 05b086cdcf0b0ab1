//! LES flow control: the server's accounting of each client's request buffer
//! ([`ClientBuffer`]) and the client's lower estimate of that buffer
//! ([`ServerBufferEstimate`]), plus the cost table both sides use ([`CostTable`]).
//!
//! The model: the server gives each client a buffer of at most `buffer_limit` (BL) cost
//! units that recharges by at least `min_recharge` (MRR) units per millisecond. Every
//! request costs up to `base_cost + request_cost * items` (its maximum cost, from the cost
//! table the server announced); the server refuses requests the buffer cannot cover,
//! refunds what serving did not use, and reports its buffer value (BV) in every reply.
//! The client keeps an estimate that never exceeds the real value, so it never sends a
//! request the server would refuse.
//!
//! Time comes in as [`Timestamp`]; nothing here sets timers. Where something should
//! happen later (resuming a frozen client, applying a capacity decrease) the relevant
//! type says when, and the driver calls back.

mod client;
mod cost;
mod server;

pub use client::{SendDelay, ServerBufferEstimate, UnknownRequest};
pub use cost::{BUF_LIMIT_RATIO, CostTable, FlowParams, MIN_BUFFER_MULTIPLIER};
pub use server::{
    AcceptError, ClientBuffer, FREEZE_MAX_JITTER, FREEZE_MIN_DELAY, PARAM_DECREASE_DELAY,
    RESUME_THRESHOLD_DIVISOR, RequestTicket,
};

use crate::time::Timestamp;
use std::time::Duration;

/// MRR is given per millisecond; timestamps are in nanoseconds.
const NANOS_PER_MILLI: u128 = 1_000_000;

/// Turns elapsed time into recharge at a per-millisecond rate.
///
/// The fraction of a cost unit left over by each step is carried to the next one, so the
/// total recharge does not depend on how often the owner asks for it (geth drops the
/// fraction on every update, which under-recharges when updates are frequent). All
/// arithmetic is in u128, where `rate * nanoseconds` cannot overflow.
#[derive(Debug, Clone)]
struct RechargeClock {
    /// The time up to which recharge has been counted. Never moves backwards.
    last: Timestamp,
    /// Leftover `rate * nanoseconds` below one cost unit; always `< NANOS_PER_MILLI`.
    carry: u128,
}

impl RechargeClock {
    fn new(now: Timestamp) -> Self {
        Self { last: now, carry: 0 }
    }

    /// Moves the clock to `now` and returns the whole cost units earned at `rate` per ms
    /// since the last call. A `now` earlier than the last one earns nothing.
    fn advance(&mut self, now: Timestamp, rate: u64) -> u64 {
        if now <= self.last {
            return 0;
        }
        let elapsed = u128::from(now.as_nanos() - self.last.as_nanos());
        self.last = now;
        let total = u128::from(rate) * elapsed + self.carry;
        self.carry = total % NANOS_PER_MILLI;
        u64::try_from(total / NANOS_PER_MILLI).unwrap_or(u64::MAX)
    }

    /// Forgets the fractional unit, for when the buffer is full (nothing accrues beyond
    /// the limit) or recharge is paused.
    fn clear_carry(&mut self) {
        self.carry = 0;
    }

    /// How long from the last `advance` until `amount` more units are earned at `rate`;
    /// `None` if `rate` is zero and `amount` is not.
    fn time_to_earn(&self, amount: u64, rate: u64) -> Option<Duration> {
        if amount == 0 {
            return Some(Duration::ZERO);
        }
        if rate == 0 {
            return None;
        }
        let needed = (u128::from(amount) * NANOS_PER_MILLI).saturating_sub(self.carry);
        let nanos = needed.div_ceil(u128::from(rate));
        Some(Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recharge_is_rate_per_millisecond_and_keeps_fractions() {
        let mut clock = RechargeClock::new(Timestamp::ZERO);
        assert_eq!(clock.advance(Timestamp::from_millis(3), 16_000), 48_000);
        // 1 unit per ms, asked every 0.4 ms: 0, 0, 1 (1.2 accrued), then 0.6 -> 1 at 2.0 ms.
        let mut clock = RechargeClock::new(Timestamp::ZERO);
        let gains: Vec<u64> = [400_000u64, 800_000, 1_200_000, 1_600_000, 2_000_000]
            .iter()
            .map(|&ns| clock.advance(Timestamp::from_nanos(ns), 1))
            .collect();
        assert_eq!(gains, [0, 0, 1, 0, 1]);
    }

    #[test]
    fn recharge_never_overflows_or_runs_backwards() {
        let mut clock = RechargeClock::new(Timestamp::ZERO);
        assert_eq!(clock.advance(Timestamp::from_nanos(u64::MAX), u64::MAX), u64::MAX);
        assert_eq!(clock.advance(Timestamp::from_nanos(5), 1_000), 0);
        assert_eq!(clock.last, Timestamp::from_nanos(u64::MAX));
    }

    #[test]
    fn time_to_earn_rounds_up_and_uses_the_carry() {
        let mut clock = RechargeClock::new(Timestamp::ZERO);
        // 3 units at 2 per ms: 1.5 ms.
        assert_eq!(clock.time_to_earn(3, 2), Some(Duration::from_micros(1_500)));
        // 1 unit at 3 per ms: 333,333.33 ns -> 333,334 ns.
        assert_eq!(clock.time_to_earn(1, 3), Some(Duration::from_nanos(333_334)));
        assert_eq!(clock.time_to_earn(0, 0), Some(Duration::ZERO));
        assert_eq!(clock.time_to_earn(1, 0), None);
        // After 0.25 ms at 2 per ms, half a unit is carried: one more unit needs 0.25 ms.
        assert_eq!(clock.advance(Timestamp::from_nanos(250_000), 2), 0);
        assert_eq!(clock.time_to_earn(1, 2), Some(Duration::from_micros(250)));
        assert_eq!(clock.time_to_earn(u64::MAX, 1), Some(Duration::from_nanos(u64::MAX)));
    }
}
