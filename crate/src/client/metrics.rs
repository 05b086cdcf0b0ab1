//! What the client counts: per-server traffic and value records, request latencies, and
//! verification failures. `ulc_metrics` reads it; server choice reads the value records.
//!
//! The value record is also the client's value tracker (research §5.1, simplified): each
//! answer adds `cos(pi/2 * t/timeout)` (+1 at once, 0 at the soft timeout, -1 from twice the
//! timeout on), each timeout -1; the soft timeout is `max(500 ms, 2 * median)` of recent
//! replies. What accrues while the server serves us in its free class is the *free value*,
//! the measure by which the payment policy picks whom to pay. Simplified against geth: one
//! request is one unit of service (no per-type basket), and nothing decays.

use les::time::Timestamp;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;

/// Latency samples kept for the percentiles.
const LATENCY_SAMPLES: usize = 1024;
/// How long a server that sent data failing verification is ranked last.
pub const DEMOTION: Duration = Duration::from_secs(600);
/// Weight of a new latency sample in the moving average.
const LATENCY_WEIGHT: f64 = 0.2;
/// Reply times kept per server for the soft timeout.
const TIMEOUT_SAMPLES: usize = 64;
/// The soft timeout's floor (geth's minimum).
pub const MIN_SOFT_TIMEOUT: Duration = Duration::from_millis(500);
/// The soft timeout before any reply was seen (geth seeds its statistics with 2 s).
pub const INITIAL_SOFT_TIMEOUT: Duration = Duration::from_secs(2);

/// The value of one reply after `latency` under `timeout`: `cos(pi/2 * t/timeout)` before
/// twice the timeout, -1 from then on.
pub fn reply_weight(latency: Duration, timeout: Duration) -> f64 {
    let t = latency.as_secs_f64() / timeout.as_secs_f64().max(f64::MIN_POSITIVE);
    if t < 2.0 { (std::f64::consts::FRAC_PI_2 * t).cos() } else { -1.0 }
}

/// How well one server has served us: the basis of server choice.
#[derive(Debug, Clone, Default)]
pub struct ValueRecord {
    /// Requests answered with data that verified.
    pub successes: u64,
    /// Requests that failed (disconnection, refusal, empty answer where data was due).
    pub failures: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Answers that failed verification.
    pub verification_failures: u64,
    /// Moving average of reply latency, milliseconds.
    pub latency_ms: Option<f64>,
    /// Ranked last until then.
    pub demoted_until: Option<Timestamp>,
    /// Connections established.
    pub connects: u64,
    /// Bytes received and sent on the stream (ciphertext, as the network sees it).
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// LES messages received (replies and announcements) and requests sent.
    pub messages_in: u64,
    /// Requests sent.
    pub messages_out: u64,
    /// Recent reply times, milliseconds (for the soft timeout).
    pub reply_times: VecDeque<f64>,
    /// Sum of the reply weights and timeout penalties.
    pub service_value: f64,
    /// The part of `service_value` earned while the server served us as a free client.
    pub free_value: f64,
    /// Whether the server currently serves us in its paid class (from its lespay balance).
    pub paid: bool,
    /// Service tokens credited to us by payments.
    pub tokens_bought: u64,
    /// Wei signed over to this server (the cumulative of the last cheque).
    pub wei_signed: alloy_primitives::U256,
    /// Requests held back because the estimate of the server's flow-control buffer was too
    /// low for their cost: how often this server throttled us.
    pub budget_waits: u64,
}

impl ValueRecord {
    /// Records a verified answer after `latency`.
    pub fn on_success(&mut self, latency: Duration) {
        self.successes += 1;
        self.add_value(reply_weight(latency, self.soft_timeout()));
        let sample = latency.as_secs_f64() * 1000.0;
        if self.reply_times.len() == TIMEOUT_SAMPLES {
            self.reply_times.pop_front();
        }
        self.reply_times.push_back(sample);
        self.latency_ms = Some(match self.latency_ms {
            Some(average) => average + LATENCY_WEIGHT * (sample - average),
            None => sample,
        });
    }

    /// Records a request that got no reply within the (hard) request timeout.
    pub fn on_timeout(&mut self) {
        self.timeouts += 1;
        self.add_value(-1.0);
    }

    fn add_value(&mut self, weight: f64) {
        self.service_value += weight;
        if !self.paid {
            self.free_value += weight;
        }
    }

    /// `max(500 ms, 2 * median)` of the recent reply times (2 s before the first).
    pub fn soft_timeout(&self) -> Duration {
        if self.reply_times.is_empty() {
            return INITIAL_SOFT_TIMEOUT;
        }
        let mut sorted: Vec<f64> = self.reply_times.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        Duration::from_secs_f64(2.0 * median / 1000.0).max(MIN_SOFT_TIMEOUT)
    }

    /// The server's value to us from free service: `max(0, free_value)`.
    pub fn value(&self) -> f64 {
        self.free_value.max(0.0)
    }

    /// Records bad data from this server: it is ranked last for [`DEMOTION`].
    pub fn on_bad_data(&mut self, now: Timestamp) {
        self.verification_failures += 1;
        self.demoted_until = Some(now.saturating_add(DEMOTION));
    }

    /// The sort key of server choice: lower is better. Demoted servers come last; then
    /// servers by recent trouble per request and by latency.
    pub fn rank(&self, now: Timestamp) -> (bool, u64, u64) {
        let demoted = self.demoted_until.is_some_and(|until| until > now);
        let requests = self.successes + self.failures + self.timeouts + 1;
        let trouble = (self.failures + 3 * self.timeouts) * 1000 / requests;
        let latency = self.latency_ms.map_or(1000, |ms| ms as u64);
        (demoted, trouble, latency)
    }

    /// The record as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "successes": self.successes,
            "failures": self.failures,
            "timeouts": self.timeouts,
            "verificationFailures": self.verification_failures,
            "latencyMs": self.latency_ms,
            "connects": self.connects,
            "bytesIn": self.bytes_in,
            "bytesOut": self.bytes_out,
            "messagesIn": self.messages_in,
            "messagesOut": self.messages_out,
            "value": self.value(),
            "serviceValue": self.service_value,
            "softTimeoutMs": self.soft_timeout().as_millis() as u64,
            "tokensBought": self.tokens_bought,
            "weiSigned": self.wei_signed,
            "budgetWaits": self.budget_waits,
        })
    }
}

/// Client-wide counters.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Recent request latencies in milliseconds (whole fetches, including retries).
    latencies: VecDeque<f64>,
    /// Fetches made.
    pub requests: u64,
    /// Answers that failed verification (each also counts on its server).
    pub verification_failures: u64,
    /// Heads accepted by the quorum.
    pub heads_accepted: u64,
}

impl Counters {
    /// Records one fetch's latency.
    pub fn on_request(&mut self, latency: Duration) {
        self.requests += 1;
        if self.latencies.len() == LATENCY_SAMPLES {
            self.latencies.pop_front();
        }
        self.latencies.push_back(latency.as_secs_f64() * 1000.0);
    }

    /// `{count, p50, p90, p99}` of the kept samples, milliseconds.
    pub fn latency_json(&self) -> Value {
        let mut sorted: Vec<f64> = self.latencies.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let percentile = |p: f64| -> Option<f64> {
            if sorted.is_empty() {
                return None;
            }
            let index = ((sorted.len() - 1) as f64 * p).round() as usize;
            sorted.get(index).copied()
        };
        json!({
            "count": self.requests,
            "p50Ms": percentile(0.5),
            "p90Ms": percentile(0.9),
            "p99Ms": percentile(0.99),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demoted_servers_rank_last_until_the_demotion_ends() {
        let now = Timestamp::from_millis(1_000);
        let mut good = ValueRecord::default();
        good.on_success(Duration::from_millis(500));
        let mut bad = ValueRecord::default();
        bad.on_success(Duration::from_millis(1));
        bad.on_bad_data(now);
        assert!(good.rank(now) < bad.rank(now));
        let later = now.saturating_add(DEMOTION + Duration::from_millis(1));
        assert!(bad.rank(later) < good.rank(later), "faster once the demotion is over");
    }

    #[test]
    fn timeouts_weigh_more_than_latency() {
        let now = Timestamp::ZERO;
        let mut slow = ValueRecord::default();
        slow.on_success(Duration::from_millis(900));
        let mut flaky = ValueRecord::default();
        flaky.on_success(Duration::from_millis(5));
        flaky.timeouts += 1;
        assert!(slow.rank(now) < flaky.rank(now));
    }

    #[test]
    fn reply_weights_follow_the_cosine_and_timeouts_cost_one() {
        let timeout = Duration::from_secs(1);
        assert_eq!(reply_weight(Duration::ZERO, timeout), 1.0);
        assert!(reply_weight(timeout, timeout).abs() < 1e-12);
        assert!((reply_weight(Duration::from_millis(500), timeout) - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((reply_weight(Duration::from_millis(1999), timeout) + 1.0).abs() < 1e-4);
        assert_eq!(reply_weight(Duration::from_secs(5), timeout), -1.0);

        let mut fast = ValueRecord::default();
        let mut slow = ValueRecord::default();
        for _ in 0..10 {
            fast.on_success(Duration::from_millis(20));
            slow.on_success(Duration::from_millis(20));
        }
        // Soft timeout: max(500 ms, 2 * 20 ms) = 500 ms.
        assert_eq!(fast.soft_timeout(), MIN_SOFT_TIMEOUT);
        slow.on_timeout();
        slow.on_timeout();
        assert!(fast.value() > slow.value());
        assert!((fast.value() - slow.value() - 2.0).abs() < 1e-9);
    }

    #[test]
    fn only_free_service_counts_as_free_value() {
        let mut record = ValueRecord::default();
        record.on_success(Duration::ZERO);
        record.paid = true;
        record.on_success(Duration::ZERO);
        record.on_success(Duration::ZERO);
        assert_eq!(record.value(), 1.0);
        assert_eq!(record.service_value, 3.0);
        record.paid = false;
        for _ in 0..5 {
            record.on_timeout();
        }
        assert_eq!(record.value(), 0.0, "never below zero");
    }

    #[test]
    fn percentiles_of_the_samples() {
        let mut counters = Counters::default();
        for ms in 1..=100 {
            counters.on_request(Duration::from_millis(ms));
        }
        let json = counters.latency_json();
        assert_eq!(json["count"], 100);
        assert_eq!(json["p50Ms"].as_f64().map(f64::round), Some(51.0));
        assert_eq!(json["p99Ms"].as_f64().map(f64::round), Some(99.0));
    }
}
