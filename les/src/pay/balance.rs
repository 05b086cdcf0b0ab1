//! Service-token balances: the two balances a client has (`pos`, paid tokens, and `neg`,
//! debt run up by free use), how they are charged for connection time and served
//! requests, and how they expire.
//!
//! Units are those of the `lespay/1` wire contract: tokens are whole `u64`s capped at
//! [`MAX_BALANCE`]; [`PriceFactors`] are given per second (time), per second per 1e6
//! capacity units (capacity) and per cost unit × 1e6 (request). Charging is exact integer
//! math: every rate is turned into a numerator over [`CHARGE_SCALE`] (1e15, so one unit is
//! a femto-token per nanosecond of connection) and the fraction below one token is carried
//! from one charge to the next in a [`ChargeCarry`]. The result therefore does not depend
//! on how often the owner settles, and a split between `pos` and `neg` when `pos` runs out
//! is exact up to the final floor to whole tokens.
//!
//! Expiry ([`Expirer`], [`ExpiredValue`]) keeps geth's idea of one global logarithmic
//! offset per balance type, so stored records never need rewriting and the offset can be
//! saved and restored across restarts (downtime is then not counted as expiry). Unlike
//! geth, a record is stored as its plain amount at the offset it was written (decay on
//! read) rather than as a mantissa inflated by `2^offset`: with `tau = 0` (no expiry, the
//! production default) every value stays an exact integer, and with expiry the one float
//! step, `amount * 2^-Δoffset`, is accurate to about 1e-16 relative.

use std::time::Duration;

use alloy_primitives::U256;

use crate::time::Timestamp;

/// The largest balance either side may hold (`2^63 - 1`, geth's limit).
pub const MAX_BALANCE: u64 = i64::MAX as u64;

/// Charge numerators are in units of `1 / CHARGE_SCALE` tokens.
pub const CHARGE_SCALE: u128 = 1_000_000_000_000_000;

/// Nanoseconds per second, for the time factor given per second.
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The capacity factor is per 1e6 capacity units; the request factor is × 1e6.
const MILLION: u128 = 1_000_000;

/// Fraction bits of a [`LogOffset`] (geth's fixed-point `Fixed64` uses the same).
pub const LOG_OFFSET_FRACTION_BITS: u32 = 24;

/// The balance-related errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BalanceError {
    /// The sum would exceed [`MAX_BALANCE`]; the balance was left unchanged.
    #[error("balance overflow: {current} + {add} exceeds 2^63-1")]
    Overflow {
        /// The balance before the attempted addition.
        current: u64,
        /// The amount that was to be added.
        add: i64,
    },
}

/// `value + delta` under geth's rules: above [`MAX_BALANCE`] fails, below zero gives zero.
pub fn add_signed(value: u64, delta: i64) -> Result<u64, BalanceError> {
    let sum = i128::from(value) + i128::from(delta);
    if sum > i128::from(MAX_BALANCE) {
        return Err(BalanceError::Overflow { current: value, add: delta });
    }
    Ok(u64::try_from(sum.max(0)).unwrap_or(0))
}

/// The price of service for one balance type, in `lespay/1` wire units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PriceFactors {
    /// Tokens per second of being connected, whatever the capacity.
    pub time: u64,
    /// Tokens per second per 1e6 capacity units held.
    pub capacity: u64,
    /// Tokens per cost unit of served requests, × 1e6 (1_000_000 = one token per unit).
    pub request: u64,
}

impl PriceFactors {
    /// geth v1.12's defaults for both balances: 1 token per ns per 1e6 capacity
    /// (= 1e9 per second), no time factor, one token per cost unit.
    pub const GETH_DEFAULT: Self = Self { time: 0, capacity: 1_000_000_000, request: 1_000_000 };

    /// The connection charge at `capacity`, in `1/CHARGE_SCALE` tokens per nanosecond:
    /// `time * 1e6 + capacity * capacity_factor`.
    pub fn time_rate(&self, capacity: u64) -> u128 {
        u128::from(self.time) * MILLION + u128::from(capacity) * u128::from(self.capacity)
    }

    /// The charge for a request of `real_cost` cost units, in `1/CHARGE_SCALE` tokens.
    pub fn request_charge(&self, real_cost: u64) -> u128 {
        u128::from(real_cost) * u128::from(self.request) * (CHARGE_SCALE / MILLION)
    }

    /// Tokens per second at `capacity` (rounded down), for display.
    pub fn tokens_per_second(&self, capacity: u64) -> u128 {
        self.time_rate(capacity).saturating_mul(NANOS_PER_SEC) / CHARGE_SCALE
    }
}

/// Sub-token remainders of past charges, in `1/CHARGE_SCALE` tokens (each `< CHARGE_SCALE`).
/// Belongs to one connection; dropping it forgives less than one token per balance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChargeCarry {
    pos: u128,
    neg: u128,
}

/// What a charge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeOutcome {
    /// Whole tokens taken from `pos`.
    pub from_pos: u64,
    /// Whole tokens added to `neg`.
    pub to_neg: u64,
    /// `pos` went from positive to zero during this charge.
    pub depleted: bool,
}

/// A client's two balances at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Balance {
    /// Paid service tokens (keyed by node id).
    pub pos: u64,
    /// Debt from free use (keyed by the free-client id).
    pub neg: u64,
}

/// Whole tokens in `num` (a `1/CHARGE_SCALE` numerator), the rest back into `carry`.
fn take_whole(num: u128, carry: &mut u128) -> u64 {
    let total = num.saturating_add(*carry);
    *carry = total % CHARGE_SCALE;
    u64::try_from(total / CHARGE_SCALE).unwrap_or(u64::MAX)
}

impl Balance {
    /// geth's `balanceToPriority`: `floor(pos / capacity)` while `pos > 0`, else `-neg`.
    /// Every payer therefore ranks at or above every free client.
    pub fn priority(&self, capacity: u64) -> i64 {
        if self.pos > 0 {
            i64::try_from(self.pos / capacity.max(1)).unwrap_or(i64::MAX)
        } else {
            -i64::try_from(self.neg).unwrap_or(i64::MAX)
        }
    }

    /// Adds `delta` to `pos` ([`add_signed`]); returns `(old, new)`.
    pub fn add_pos(&mut self, delta: i64) -> Result<(u64, u64), BalanceError> {
        let old = self.pos;
        self.pos = add_signed(old, delta)?;
        Ok((old, self.pos))
    }

    fn add_neg(&mut self, num: u128, carry: &mut ChargeCarry) -> u64 {
        let whole = take_whole(num, &mut carry.neg);
        let new = self.neg.saturating_add(whole).min(MAX_BALANCE);
        let added = new - self.neg;
        self.neg = new;
        added
    }

    /// Takes a charge of `num` (`1/CHARGE_SCALE` tokens at the `pos` price) from `pos`;
    /// whatever `pos` cannot cover is converted to the `neg` price by `neg_num / pos_num`
    /// (the same fraction of time or of the request) and added to `neg`.
    fn charge(&mut self, carry: &mut ChargeCarry, pos_num: u128, neg_num: u128) -> ChargeOutcome {
        let was_positive = self.pos > 0;
        if self.pos == 0 || pos_num == 0 {
            // Nothing to take from pos: the whole charge is debt (when pos_num == 0 and pos
            // is positive, the service is free for payers, so nothing is charged).
            let to_neg = if self.pos == 0 { self.add_neg(neg_num, carry) } else { 0 };
            return ChargeOutcome { from_pos: 0, to_neg, depleted: false };
        }
        let total = pos_num.saturating_add(carry.pos);
        let available = u128::from(self.pos) * CHARGE_SCALE;
        if total <= available {
            let whole = take_whole(pos_num, &mut carry.pos);
            self.pos -= whole;
            return ChargeOutcome {
                from_pos: whole,
                to_neg: 0,
                depleted: was_positive && self.pos == 0,
            };
        }
        // pos runs out partway: the uncovered part `total - available` (at the pos price)
        // is the fraction `(total - available) / pos_num` of the charge.
        let from_pos = self.pos;
        let uncovered = total - available;
        self.pos = 0;
        carry.pos = 0;
        let neg_part = mul_div(uncovered, neg_num, pos_num);
        let to_neg = self.add_neg(neg_part, carry);
        ChargeOutcome { from_pos, to_neg, depleted: was_positive }
    }

    /// Charges `elapsed` of connection at `capacity`: from `pos` at the `pos_factors` rate,
    /// and for any part of `elapsed` after `pos` reached zero, to `neg` at `neg_factors`.
    pub fn charge_time(
        &mut self,
        carry: &mut ChargeCarry,
        elapsed: Duration,
        capacity: u64,
        pos_factors: &PriceFactors,
        neg_factors: &PriceFactors,
    ) -> ChargeOutcome {
        let ns = elapsed.as_nanos();
        let pos_num = ns.saturating_mul(pos_factors.time_rate(capacity));
        let neg_num = ns.saturating_mul(neg_factors.time_rate(capacity));
        self.charge(carry, pos_num, neg_num)
    }

    /// Charges a served request of `real_cost` cost units: `real_cost * RF` from `pos`, and
    /// the uncovered fraction of it at the `neg` request factor to `neg`.
    pub fn charge_request(
        &mut self,
        carry: &mut ChargeCarry,
        real_cost: u64,
        pos_factors: &PriceFactors,
        neg_factors: &PriceFactors,
    ) -> ChargeOutcome {
        self.charge(
            carry,
            pos_factors.request_charge(real_cost),
            neg_factors.request_charge(real_cost),
        )
    }

    /// How long until `pos` reaches zero when connected at `capacity` with no requests;
    /// `None` if `pos` is already zero or the connection is free.
    pub fn time_to_deplete(
        &self,
        carry: &ChargeCarry,
        capacity: u64,
        pos_factors: &PriceFactors,
    ) -> Option<Duration> {
        let rate = pos_factors.time_rate(capacity);
        if self.pos == 0 || rate == 0 {
            return None;
        }
        let need = (u128::from(self.pos) * CHARGE_SCALE).saturating_sub(carry.pos);
        let ns = need.div_ceil(rate);
        Some(Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)))
    }

    /// This balance after adding `add` tokens to `pos` (clamped to `0..=MAX_BALANCE`) and
    /// then `bias` of connection at `capacity` without requests.
    pub fn estimate(
        &self,
        add: i64,
        bias: Duration,
        capacity: u64,
        pos_factors: &PriceFactors,
        neg_factors: &PriceFactors,
    ) -> Balance {
        let mut future = *self;
        future.pos = u64::try_from(
            (i128::from(self.pos) + i128::from(add)).clamp(0, i128::from(MAX_BALANCE)),
        )
        .unwrap_or(0);
        let mut carry = ChargeCarry::default();
        future.charge_time(&mut carry, bias, capacity, pos_factors, neg_factors);
        future
    }

    /// The priority of [`Balance::estimate`] at `capacity`: the one priority estimate the
    /// pool uses for admission, capacity requests and capacity queries.
    pub fn estimate_priority(
        &self,
        add: i64,
        bias: Duration,
        capacity: u64,
        pos_factors: &PriceFactors,
        neg_factors: &PriceFactors,
    ) -> i64 {
        self.estimate(add, bias, capacity, pos_factors, neg_factors).priority(capacity)
    }
}

/// `a * b / c` rounded down (saturating), through 256 bits: the product of a charge and a
/// rate overflows u128 for long intervals.
fn mul_div(a: u128, b: u128, c: u128) -> u128 {
    if c == 0 {
        return 0;
    }
    let q = U256::from(a) * U256::from(b) / U256::from(c);
    u128::try_from(q).unwrap_or(u128::MAX)
}

/// A point on an expiry scale: `log2` of how much all values of one type have shrunk,
/// fixed point with [`LOG_OFFSET_FRACTION_BITS`] fraction bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogOffset(pub u64);

/// The clock of one balance type's expiry: its [`LogOffset`] grows by `1 / (tau * ln 2)`
/// per unit of time, so that a value read one `tau` later has shrunk by `e`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expirer {
    tau: Duration,
    anchor_time: Timestamp,
    anchor_offset: LogOffset,
}

impl Expirer {
    /// Starts at offset zero. `tau == Duration::ZERO` means values never expire.
    pub fn new(tau: Duration, now: Timestamp) -> Self {
        Self::restore(tau, LogOffset::default(), now)
    }

    /// Continues from an `offset` saved earlier (at shutdown or a checkpoint) as of `now`.
    pub fn restore(tau: Duration, offset: LogOffset, now: Timestamp) -> Self {
        Self { tau, anchor_time: now, anchor_offset: offset }
    }

    /// The time constant (zero: no expiry).
    pub fn tau(&self) -> Duration {
        self.tau
    }

    /// The offset at `now`. Computed from a fixed anchor rather than accumulated, so it
    /// does not depend on how often it is read; never moves backwards.
    pub fn offset(&self, now: Timestamp) -> LogOffset {
        let tau = self.tau.as_nanos();
        if tau == 0 || now <= self.anchor_time {
            return self.anchor_offset;
        }
        let elapsed = (now.as_nanos() - self.anchor_time.as_nanos()) as f64;
        let growth = elapsed / (tau as f64 * std::f64::consts::LN_2)
            * f64::from(1u32 << LOG_OFFSET_FRACTION_BITS);
        // `as` saturates for huge values, which is the right end of the scale.
        LogOffset(self.anchor_offset.0.saturating_add(growth as u64))
    }
}

/// A balance record: `amount` as it was when the expiry scale stood at `offset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ExpiredValue {
    /// The value at `offset`.
    pub amount: u64,
    /// Where the expiry scale stood when `amount` was written.
    pub offset: LogOffset,
}

impl ExpiredValue {
    /// `amount` written at `offset`.
    pub fn new(amount: u64, offset: LogOffset) -> Self {
        Self { amount, offset }
    }

    /// The value at `now`: `amount * 2^-(now - offset)`, exactly `amount` when the scale
    /// has not moved. A record from a later offset than `now` (an older offset restored
    /// after a crash) is read at face value rather than inflated.
    pub fn value(&self, now: LogOffset) -> u64 {
        if now <= self.offset || self.amount == 0 {
            return self.amount;
        }
        let shift = (now.0 - self.offset.0) as f64 / f64::from(1u32 << LOG_OFFSET_FRACTION_BITS);
        let v = (self.amount as f64 * (-shift).exp2()).floor();
        // `as` saturates; the result is at most `amount`.
        (v as u64).min(self.amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel_close(a: f64, b: f64) -> bool {
        // research §8: relative error ≤ 0.05 % ((a+b)/2000, geth's checkDiff).
        (a - b).abs() <= (a + b) / 2000.0
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn check_05_time_charge_while_positive() {
        // C = 16,000 at TF = 7 tokens/s and CF = 1e9 per 1e6 units per s:
        // per second 7 + 16,000 * 1e9 / 1e6 = 16,000,007 tokens.
        let f = PriceFactors { time: 7, capacity: 1_000_000_000, request: 1_000_000 };
        let mut b = Balance { pos: 1_000_000_000_000, neg: 0 };
        let mut carry = ChargeCarry::default();
        let out = b.charge_time(&mut carry, 10 * SEC, 16_000, &f, &f);
        assert_eq!(out.from_pos, 160_000_070);
        assert_eq!(b.pos, 1_000_000_000_000 - 160_000_070);
        assert_eq!(b.neg, 0);
        assert!(!out.depleted);
    }

    #[test]
    fn check_05_time_charge_does_not_depend_on_settle_frequency() {
        // 3 tokens/s charged in 1 ms steps: each step is 0.003 tokens; carries add up.
        let f = PriceFactors { time: 3, capacity: 0, request: 0 };
        let mut a = Balance { pos: 1_000, neg: 0 };
        let mut ca = ChargeCarry::default();
        for _ in 0..10_000 {
            a.charge_time(&mut ca, Duration::from_millis(1), 16_000, &f, &f);
        }
        let mut b = Balance { pos: 1_000, neg: 0 };
        let mut cb = ChargeCarry::default();
        b.charge_time(&mut cb, 10 * SEC, 16_000, &f, &f);
        assert_eq!(a, b);
        assert_eq!(a.pos, 1_000 - 30);
    }

    #[test]
    fn check_05_time_charge_splits_into_debt() {
        // pos lasts 2.5 s of the 10 s at 1e6 tokens/s; the other 7.5 s go to neg at
        // 3e6 tokens/s (the negative factors), i.e. 22,500,000 tokens of debt.
        let pf = PriceFactors { time: 1_000_000, capacity: 0, request: 0 };
        let nf = PriceFactors { time: 3_000_000, capacity: 0, request: 0 };
        let mut b = Balance { pos: 2_500_000, neg: 11 };
        let mut carry = ChargeCarry::default();
        let out = b.charge_time(&mut carry, 10 * SEC, 16_000, &pf, &nf);
        assert!(out.depleted);
        assert_eq!(out.from_pos, 2_500_000);
        assert_eq!(b.pos, 0);
        assert_eq!(out.to_neg, 22_500_000);
        assert_eq!(b.neg, 11 + 22_500_000);
        // Once free, the whole time goes to neg.
        let out = b.charge_time(&mut carry, SEC, 16_000, &pf, &nf);
        assert_eq!(out.to_neg, 3_000_000);
        assert!(!out.depleted);
    }

    #[test]
    fn check_06_request_charge_and_exact_split() {
        // RF = 2.5 tokens per cost unit.
        let pf = PriceFactors { time: 0, capacity: 0, request: 2_500_000 };
        let nf = PriceFactors { time: 0, capacity: 0, request: 4_000_000 };
        let mut b = Balance { pos: 10_000, neg: 0 };
        let mut carry = ChargeCarry::default();
        let out = b.charge_request(&mut carry, 1_000, &pf, &nf);
        assert_eq!(out.from_pos, 2_500);
        assert_eq!(b.pos, 7_500);
        // 4,000 units cost 10,000 at RF: pos covers 7,500 (3/4); 1/4 of 4,000 units at
        // 4 tokens/unit = 4,000 tokens of debt.
        let out = b.charge_request(&mut carry, 4_000, &pf, &nf);
        assert_eq!(out.from_pos, 7_500);
        assert!(out.depleted);
        assert_eq!(b, Balance { pos: 0, neg: 4_000 });
        // RF 3: one unit costs 3 tokens, pos 1 covers a third of it; the uncovered 2/3 unit
        // at 9 tokens per unit is 6 tokens of debt.
        let pf = PriceFactors { time: 0, capacity: 0, request: 3_000_000 };
        let nf = PriceFactors { time: 0, capacity: 0, request: 9_000_000 };
        let mut b = Balance { pos: 1, neg: 0 };
        let mut carry = ChargeCarry::default();
        b.charge_request(&mut carry, 1, &pf, &nf);
        assert_eq!(b, Balance { pos: 0, neg: 6 });
    }

    #[test]
    fn check_07_expiry_one_tau_is_one_over_e() {
        let tau = Duration::from_secs(3600);
        let e = Expirer::new(tau, Timestamp::ZERO);
        let v = ExpiredValue::new(1_000_000_000_000, e.offset(Timestamp::ZERO));
        let later = Timestamp::from_nanos(3600 * 1_000_000_000);
        let got = v.value(e.offset(later)) as f64;
        assert!(rel_close(got, 1e12 / std::f64::consts::E), "{got}");
        let two = Timestamp::from_nanos(7200 * 1_000_000_000);
        let got = v.value(e.offset(two)) as f64;
        assert!(rel_close(got, 1e12 / std::f64::consts::E.powi(2)), "{got}");
    }

    #[test]
    fn check_07_expiry_zero_tau_changes_nothing() {
        let e = Expirer::new(Duration::ZERO, Timestamp::ZERO);
        let v = ExpiredValue::new(MAX_BALANCE, e.offset(Timestamp::ZERO));
        let later = Timestamp::from_nanos(u64::MAX);
        assert_eq!(e.offset(later), LogOffset(0));
        assert_eq!(v.value(e.offset(later)), MAX_BALANCE);
    }

    #[test]
    fn check_07_expiry_offset_survives_restart() {
        let tau = Duration::from_secs(1000);
        let e = Expirer::new(tau, Timestamp::ZERO);
        let v = ExpiredValue::new(1_000_000_000, LogOffset(0));
        // Run 500 s, save, "restart" in a new process whose clock starts at 0 again,
        // stay down (not counted), run another 500 s: one tau in total.
        let saved = e.offset(Timestamp::from_nanos(500_000_000_000));
        let e2 = Expirer::restore(tau, saved, Timestamp::ZERO);
        assert_eq!(e2.offset(Timestamp::ZERO), saved);
        let got = v.value(e2.offset(Timestamp::from_nanos(500_000_000_000))) as f64;
        assert!(rel_close(got, 1e9 / std::f64::consts::E), "{got}");
        // An older offset than a record's is read at face value, not inflated.
        assert_eq!(ExpiredValue::new(5, LogOffset(100)).value(LogOffset(50)), 5);
    }

    #[test]
    fn check_08_add_balance_limits() {
        let mut b = Balance { pos: MAX_BALANCE - 10, neg: 0 };
        assert_eq!(b.add_pos(10), Ok((MAX_BALANCE - 10, MAX_BALANCE)));
        assert_eq!(b.add_pos(1), Err(BalanceError::Overflow { current: MAX_BALANCE, add: 1 }));
        assert_eq!(b.pos, MAX_BALANCE);
        let mut b = Balance { pos: 100, neg: 0 };
        assert_eq!(b.add_pos(-101), Ok((100, 0)));
        assert_eq!(b.add_pos(i64::MIN), Ok((0, 0)));
        // Small credits are kept exactly (no 1e6 threshold).
        assert_eq!(b.add_pos(1), Ok((0, 1)));
    }

    #[test]
    fn priority_rule() {
        assert_eq!(Balance { pos: 1_000, neg: 50 }.priority(300), 3);
        assert_eq!(Balance { pos: 0, neg: 50 }.priority(300), -50);
        assert_eq!(Balance { pos: 1, neg: 0 }.priority(300), 0);
        let f = PriceFactors::GETH_DEFAULT;
        // 10 s of bias at 16,000 is 1.6e8 tokens.
        let b = Balance { pos: 1_600_000_000, neg: 0 };
        assert_eq!(b.estimate_priority(0, 10 * SEC, 16_000, &f, &f), 1_440_000_000 / 16_000);
        assert_eq!(b.estimate_priority(-1_600_000_000, SEC, 16_000, &f, &f), -16_000_000);
    }

    #[test]
    fn time_to_deplete_is_exact() {
        let f = PriceFactors { time: 3, capacity: 0, request: 0 };
        let b = Balance { pos: 10, neg: 0 };
        let d = b.time_to_deplete(&ChargeCarry::default(), 1, &f).unwrap();
        assert_eq!(d.as_nanos(), 3_333_333_334);
        let mut c = b;
        let mut carry = ChargeCarry::default();
        let out = c.charge_time(&mut carry, d, 1, &f, &f);
        assert!(out.depleted);
        let mut c = b;
        let mut carry = ChargeCarry::default();
        c.charge_time(&mut carry, d - Duration::from_nanos(1), 1, &f, &f);
        assert_eq!(c.pos, 1);
    }
}
