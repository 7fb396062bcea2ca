//! Prometheus metrics and the probe endpoints: `/healthz`, `/readyz`, `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// The applier's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    received: Counter,
    acknowledged: Family<OutcomeLabel, Counter>,
    failed: Family<OutcomeLabel, Counter>,
    apply_seconds: Histogram,
    message_age_seconds: Histogram,
    applied: Counter,
    deleted: Counter,
    in_flight: Gauge,
    /// Set by the consumer: the last queue call succeeded.
    pub queue_ok: AtomicBool,
    /// Set once the watch caches are synced.
    pub caches_synced: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kubetempura");
        let received = Counter::default();
        let acknowledged = Family::<OutcomeLabel, Counter>::default();
        let failed = Family::<OutcomeLabel, Counter>::default();
        let apply_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let message_age_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 18));
        let applied = Counter::default();
        let deleted = Counter::default();
        let in_flight = Gauge::default();
        registry.register(
            "messages_received",
            "Queue messages received",
            received.clone(),
        );
        registry.register(
            "messages_acknowledged",
            "Queue messages deleted after their work completed, by outcome",
            acknowledged.clone(),
        );
        registry.register(
            "messages_failed",
            "Queue messages released for retry, by failure kind",
            failed.clone(),
        );
        registry.register(
            "apply_duration_seconds",
            "Time to server-side-apply one environment's objects",
            apply_seconds.clone(),
        );
        registry.register(
            "message_age_seconds",
            "Age of a message (since it was sent) when processing starts",
            message_age_seconds.clone(),
        );
        registry.register(
            "objects_applied",
            "Objects server-side-applied",
            applied.clone(),
        );
        registry.register(
            "objects_deleted",
            "Objects deleted (closed pull requests and pruning)",
            deleted.clone(),
        );
        registry.register(
            "messages_in_flight",
            "Messages being processed",
            in_flight.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            received,
            acknowledged,
            failed,
            apply_seconds,
            message_age_seconds,
            applied,
            deleted,
            in_flight,
            queue_ok: AtomicBool::new(false),
            caches_synced: AtomicBool::new(false),
        }
    }

    pub fn received(&self, n: usize) {
        self.received.inc_by(n as u64);
    }

    pub fn acknowledged(&self, outcome: &str) {
        self.acknowledged
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn failed(&self, kind: &str) {
        self.failed
            .get_or_create(&OutcomeLabel {
                outcome: kind.to_owned(),
            })
            .inc();
    }

    pub fn observe_apply(&self, d: Duration) {
        self.apply_seconds.observe(d.as_secs_f64());
    }

    pub fn observe_age(&self, d: Duration) {
        self.message_age_seconds.observe(d.as_secs_f64());
    }

    pub fn objects_applied(&self, n: usize) {
        self.applied.inc_by(n as u64);
    }

    pub fn objects_deleted(&self, n: usize) {
        self.deleted.inc_by(n as u64);
    }

    pub fn in_flight(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }

    /// Ready: caches synced and the queue reachable.
    pub fn is_ready(&self) -> bool {
        self.caches_synced.load(Ordering::SeqCst) && self.queue_ok.load(Ordering::SeqCst)
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.is_ready() {
        (StatusCode::OK, "ready\n")
    } else if !m.caches_synced.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "watch caches not synced\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "queue not reachable\n")
    }
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}

/// Binds the probe and metrics server; returns the bound address and the serving future.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let fut = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    };
    Ok((bound, fut))
}
