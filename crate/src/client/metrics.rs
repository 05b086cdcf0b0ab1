//! What the client counts: per-server traffic and value records, request latencies, and
//! verification failures. `ulc_metrics` reads it; server choice reads the value records.

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
}

impl ValueRecord {
    /// Records a verified answer after `latency`.
    pub fn on_success(&mut self, latency: Duration) {
        self.successes += 1;
        let sample = latency.as_secs_f64() * 1000.0;
        self.latency_ms = Some(match self.latency_ms {
            Some(average) => average + LATENCY_WEIGHT * (sample - average),
            None => sample,
        });
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
