//! Prometheus metrics of a running lesd, and the small HTTP endpoint (`--metrics ADDR`)
//! that exposes them in the OpenMetrics text format at any path.
//!
//! [`Metrics`] is cheap to clone (every metric is an `Arc` inside) and is updated from the
//! client tasks, the serving code and the head follower.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The label of per-request-type metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabel {
    request: &'static str,
}

/// The label of per-class metrics: `paid` or `free`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: &'static str,
}

/// The label of payment outcomes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Every lesd metric.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    clients: Gauge,
    requests: Family<RequestLabel, Counter>,
    serving_seconds: Family<RequestLabel, Counter<f64, AtomicU64>>,
    queued: Family<ClassLabel, Counter>,
    queue_seconds: Family<ClassLabel, Counter<f64, AtomicU64>>,
    queue_paid_ahead: Counter,
    overloads: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    announcements: Counter,
    upstream_errors: Counter,
    head: Gauge,
    pool_active: Gauge,
    pool_priority_capacity: Gauge,
    pool_total_capacity: Gauge,
    pool_connected_capacity: Gauge,
    pool_rejected: Counter,
    pool_kicks: Counter,
    payments: Family<OutcomeLabel, Counter>,
    tokens_credited: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, registered under the `lesd_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lesd");
        let clients = Gauge::default();
        registry.register("clients", "LES clients connected now", clients.clone());
        let requests = Family::<RequestLabel, Counter>::default();
        registry.register("requests", "LES requests served, by type", requests.clone());
        let serving_seconds = Family::<RequestLabel, Counter<f64, AtomicU64>>::default();
        registry.register(
            "serving_seconds",
            "Time spent serving LES requests (upstream round trips included), by type",
            serving_seconds.clone(),
        );
        let queued = Family::<ClassLabel, Counter>::default();
        registry.register(
            "queued_requests",
            "LES requests that waited for a serving slot, by client class (paid, free)",
            queued.clone(),
        );
        let queue_seconds = Family::<ClassLabel, Counter<f64, AtomicU64>>::default();
        registry.register(
            "queue_seconds",
            "Time the waiting LES requests spent waiting for a serving slot, by client class",
            queue_seconds.clone(),
        );
        let queue_paid_ahead = Counter::default();
        registry.register(
            "queue_paid_ahead",
            "Serving slots given to a paying client's request while free clients' requests waited",
            queue_paid_ahead.clone(),
        );
        let overloads = Counter::default();
        registry.register(
            "overloads",
            "Free clients frozen because the serving queue was full (each lowers the total capacity)",
            overloads.clone(),
        );
        let bytes_in = Counter::default();
        registry.register("bytes_in", "Bytes received from clients", bytes_in.clone());
        let bytes_out = Counter::default();
        registry.register("bytes_out", "Bytes sent to clients", bytes_out.clone());
        let announcements = Counter::default();
        registry.register(
            "announcements",
            "Head announcements sent to clients",
            announcements.clone(),
        );
        let upstream_errors = Counter::default();
        registry.register(
            "upstream_errors",
            "Failed or refused upstream JSON-RPC calls",
            upstream_errors.clone(),
        );
        let head = Gauge::default();
        registry.register("head_number", "Number of the announced head block", head.clone());
        let pool_active = Gauge::default();
        registry.register(
            "pool_active_clients",
            "Clients active in the client pool (holding capacity)",
            pool_active.clone(),
        );
        let pool_priority_capacity = Gauge::default();
        registry.register(
            "pool_priority_capacity",
            "Capacity held by clients with a positive (paid) balance (updated every checkpoint)",
            pool_priority_capacity.clone(),
        );
        let pool_total_capacity = Gauge::default();
        registry.register(
            "pool_total_capacity",
            "Capacity the pool may hand out now (cost units per ms)",
            pool_total_capacity.clone(),
        );
        let pool_connected_capacity = Gauge::default();
        registry.register(
            "pool_connected_capacity",
            "Capacity held by active clients (cost units per ms)",
            pool_connected_capacity.clone(),
        );
        let pool_rejected = Counter::default();
        registry.register(
            "pool_rejected",
            "Clients refused admission to the pool (disconnected with TooManyPeers)",
            pool_rejected.clone(),
        );
        let pool_kicks = Counter::default();
        registry.register(
            "pool_kicks",
            "Active clients deactivated by the pool (disconnected with TooManyPeers)",
            pool_kicks.clone(),
        );
        let payments = Family::<OutcomeLabel, Counter>::default();
        registry.register("payments", "lespay Pay messages, by outcome", payments.clone());
        let tokens_credited = Counter::default();
        registry.register(
            "tokens_credited",
            "Service tokens credited by payments and operator credit",
            tokens_credited.clone(),
        );
        Self {
            registry: Arc::new(registry),
            clients,
            requests,
            serving_seconds,
            queued,
            queue_seconds,
            queue_paid_ahead,
            overloads,
            bytes_in,
            bytes_out,
            announcements,
            upstream_errors,
            head,
            pool_active,
            pool_priority_capacity,
            pool_total_capacity,
            pool_connected_capacity,
            pool_rejected,
            pool_kicks,
            payments,
            tokens_credited,
        }
    }

    /// The client pool's state now.
    pub fn set_pool(&self, pool: &crate::pay::service::PoolGauges) {
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.pool_active.set(gauge(u64::try_from(pool.active).unwrap_or(u64::MAX)));
        self.pool_total_capacity.set(gauge(pool.total_capacity));
        self.pool_connected_capacity.set(gauge(pool.connected_capacity));
    }

    /// The capacity paid clients hold.
    pub fn set_priority_capacity(&self, capacity: u64) {
        self.pool_priority_capacity.set(i64::try_from(capacity).unwrap_or(i64::MAX));
    }

    /// Clients active in the pool now.
    pub fn pool_active(&self) -> i64 {
        self.pool_active.get()
    }

    /// Capacity held by active clients now.
    pub fn pool_connected_capacity(&self) -> i64 {
        self.pool_connected_capacity.get()
    }

    /// A client was refused admission.
    pub fn client_rejected(&self) {
        self.pool_rejected.inc();
    }

    /// Clients refused admission so far.
    pub fn clients_rejected(&self) -> u64 {
        self.pool_rejected.get()
    }

    /// An active client was kicked.
    pub fn client_kicked(&self) {
        self.pool_kicks.inc();
    }

    /// Clients kicked so far.
    pub fn clients_kicked(&self) -> u64 {
        self.pool_kicks.get()
    }

    /// A Pay message ended with `outcome` ("accepted" or "rejected").
    pub fn payment(&self, outcome: &'static str) {
        self.payments.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Pay messages with `outcome` so far.
    pub fn payments(&self, outcome: &'static str) -> u64 {
        self.payments.get_or_create(&OutcomeLabel { outcome }).get()
    }

    /// Tokens were credited.
    pub fn tokens_credited(&self, tokens: u64) {
        self.tokens_credited.inc_by(tokens);
    }

    /// A client connected (`true`) or left (`false`).
    pub fn client_connected(&self, connected: bool) {
        if connected {
            self.clients.inc();
        } else {
            self.clients.dec();
        }
    }

    /// Clients connected now.
    pub fn clients(&self) -> i64 {
        self.clients.get()
    }

    /// One request of type `request` was served in `took`.
    pub fn request_served(&self, request: &'static str, took: Duration) {
        let label = RequestLabel { request };
        self.requests.get_or_create(&label).inc();
        self.serving_seconds.get_or_create(&label).inc_by(took.as_secs_f64());
    }

    /// Requests of type `request` served so far.
    pub fn requests(&self, request: &'static str) -> u64 {
        self.requests.get_or_create(&RequestLabel { request }).get()
    }

    /// A request of a `class` client waited `took` for a serving slot.
    pub fn queue_wait(&self, class: &'static str, took: Duration) {
        let label = ClassLabel { class };
        self.queued.get_or_create(&label).inc();
        self.queue_seconds.get_or_create(&label).inc_by(took.as_secs_f64());
    }

    /// Requests of `class` clients queued so far and the seconds they waited in all.
    pub fn queue_totals(&self, class: &'static str) -> (u64, f64) {
        let label = ClassLabel { class };
        (self.queued.get_or_create(&label).get(), self.queue_seconds.get_or_create(&label).get())
    }

    /// The counter the serving queue bumps when a paying client's request goes ahead of
    /// waiting free ones.
    pub fn queue_paid_ahead_counter(&self) -> Counter {
        self.queue_paid_ahead.clone()
    }

    /// Slots given to a paying client's request while free ones waited, so far.
    pub fn queue_paid_ahead(&self) -> u64 {
        self.queue_paid_ahead.get()
    }

    /// A free client was frozen because the serving queue was full.
    pub fn overload(&self) {
        self.overloads.inc();
    }

    /// Overload freezes so far.
    pub fn overloads(&self) -> u64 {
        self.overloads.get()
    }

    /// Bytes received from a client.
    pub fn bytes_in(&self, bytes: usize) {
        self.bytes_in.inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// Bytes sent to a client.
    pub fn bytes_out(&self, bytes: usize) {
        self.bytes_out.inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// A head announcement was queued for a client.
    pub fn announcement_sent(&self) {
        self.announcements.inc();
    }

    /// Announcements sent so far.
    pub fn announcements(&self) -> u64 {
        self.announcements.get()
    }

    /// An upstream call failed.
    pub fn upstream_error(&self) {
        self.upstream_errors.inc();
    }

    /// Upstream failures so far.
    pub fn upstream_errors(&self) -> u64 {
        self.upstream_errors.get()
    }

    /// A new head was published.
    pub fn set_head(&self, number: u64) {
        self.head.set(i64::try_from(number).unwrap_or(i64::MAX));
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Serves the metrics over HTTP/1 on `listener` until `shutdown` turns true.
    pub async fn serve(self, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        crate::http::serve("metrics", listener, shutdown, move |_request: Request<Incoming>| {
            let body = self.render();
            async move {
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                response
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_text_carries_every_metric() {
        let metrics = Metrics::new();
        metrics.client_connected(true);
        metrics.request_served("GetBlockHeaders", Duration::from_millis(2));
        metrics.set_head(42);
        let text = metrics.render();
        assert!(text.contains("lesd_clients 1"), "{text}");
        assert!(text.contains("lesd_requests_total{request=\"GetBlockHeaders\"} 1"), "{text}");
        assert!(text.contains("lesd_head_number 42"), "{text}");
        assert!(text.contains("lesd_upstream_errors_total 0"), "{text}");
        metrics.set_pool(&crate::pay::service::PoolGauges {
            active: 2,
            total_capacity: 32_000,
            connected_capacity: 16_000,
        });
        metrics.client_kicked();
        metrics.payment("accepted");
        let text = metrics.render();
        assert!(text.contains("lesd_pool_active_clients 2"), "{text}");
        assert!(text.contains("lesd_pool_total_capacity 32000"), "{text}");
        assert!(text.contains("lesd_pool_connected_capacity 16000"), "{text}");
        assert!(text.contains("lesd_pool_kicks_total 1"), "{text}");
        assert!(text.contains("lesd_payments_total{outcome=\"accepted\"} 1"), "{text}");
    }
}
