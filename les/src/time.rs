//! Time as the sans-IO core sees it: the driver passes a monotonic [`Timestamp`] into every
//! call that needs one, because the core has no clock of its own (and
//! `std::time::Instant::now` panics on wasm32-unknown-unknown).

use std::time::Duration;

/// A point on the driver's monotonic clock, in nanoseconds since an origin the driver
/// picks (process start, page load). Only differences between timestamps mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The origin.
    pub const ZERO: Self = Self(0);

    /// From nanoseconds since the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// From milliseconds since the origin (what `performance.now()` gives, rounded).
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at the end of the clock.
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let a = Timestamp::from_millis(5);
        let b = a.saturating_add(Duration::from_millis(10));
        assert_eq!(b.as_nanos(), 15_000_000);
        assert_eq!(b.saturating_duration_since(a), Duration::from_millis(10));
        assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
        assert_eq!(
            Timestamp::from_nanos(u64::MAX).saturating_add(Duration::from_secs(1)).as_nanos(),
            u64::MAX
        );
    }
}
