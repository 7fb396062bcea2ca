//! Prometheus metrics and the probe endpoints: `/healthz`, `/readyz`, `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    held: Gauge,
    unreadable_prs: Gauge,
    reconciled_objects: Family<OutcomeLabel, Counter>,
    /// When this value was built: the origin of `last_progress_ms`.
    started: Instant,
    /// When a held message was last finished (deleted or given back), or the consumer began
    /// holding messages after holding none, in milliseconds since `started`.
    last_progress_ms: AtomicU64,
    /// `/readyz` fails when nothing finished for this long while messages are held (0: never).
    stall_after_ms: AtomicU64,
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
        let held = Gauge::default();
        let unreadable_prs = Gauge::default();
        let reconciled_objects = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "unreadable_prs",
            "PR objects the applier cannot read (set aside: see the Warning Events `Unreadable`)",
            unreadable_prs.clone(),
        );
        registry.register(
            "pr_objects_reconciled",
            "Environments reconciled because their PR object asked for it (made with kubectl or by the original KubeTempura, or headCommitRef edited), by outcome",
            reconciled_objects.clone(),
        );
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
            "Failed attempts (transient: each attempt of an in-process retry) and messages given back to the queue (poison, receive_error, delete_error), by kind",
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
        registry.register(
            "messages_held",
            "Messages received and not yet deleted or given back (being processed, retried, or waiting behind their pull request or for a worker); their visibility is extended while held",
            held.clone(),
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
            held,
            unreadable_prs,
            reconciled_objects,
            started: Instant::now(),
            last_progress_ms: AtomicU64::new(0),
            stall_after_ms: AtomicU64::new(0),
            queue_ok: AtomicBool::new(false),
            caches_synced: AtomicBool::new(false),
        }
    }

    /// How many `PR` objects cannot be read now.
    pub fn set_unreadable_prs(&self, n: usize) {
        self.unreadable_prs
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// One environment reconciled from its `PR` object.
    pub fn reconciled_object(&self, outcome: &str) {
        self.reconciled_objects
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
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

    /// `n` messages received and now held by the consumer.
    pub fn hold(&self, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        if self.held.inc_by(n) == 0 {
            // The stall clock starts when there is something to make progress on.
            self.progressed();
        }
    }

    /// `n` held messages finished: deleted, or given back to the queue.
    pub fn let_go(&self, n: usize) {
        self.held.dec_by(i64::try_from(n).unwrap_or(i64::MAX));
        self.progressed();
    }

    fn progressed(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_progress_ms.store(now, Ordering::SeqCst);
    }

    /// How long the consumer may hold messages without finishing any before `/readyz` fails
    /// (zero: never).
    pub fn set_stall_after(&self, d: Duration) {
        self.stall_after_ms.store(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// The consumer's stall, if any: how long no held message finished, and how many are held.
    pub fn stalled(&self) -> Option<Stall> {
        self.stalled_at(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// [`Self::stalled`] at `now` (milliseconds since this value was built).
    fn stalled_at(&self, now: u64) -> Option<Stall> {
        let after = self.stall_after_ms.load(Ordering::SeqCst);
        let held = self.held.get();
        if after == 0 || held <= 0 {
            return None;
        }
        let since = now.saturating_sub(self.last_progress_ms.load(Ordering::SeqCst));
        (since >= after).then(|| Stall {
            since: Duration::from_millis(since),
            held,
            limit: Duration::from_millis(after),
        })
    }

    /// Ready: caches synced, the queue reachable, and the consumer not stalled.
    pub fn is_ready(&self) -> bool {
        self.caches_synced.load(Ordering::SeqCst)
            && self.queue_ok.load(Ordering::SeqCst)
            && self.stalled().is_none()
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

/// A consumer that holds messages and finished none of them for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// Since the last message finished (or since messages were first held).
    pub since: Duration,
    /// Messages held.
    pub held: i64,
    /// The configured limit (`--stall-seconds`).
    pub limit: Duration,
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "consumer stalled: no message finished for {}s while holding {} (--stall-seconds {})",
            self.since.as_secs(),
            self.held,
            self.limit.as_secs()
        )
    }
}

async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    let stall = m.stalled();
    if m.is_ready() {
        (StatusCode::OK, "ready\n".to_owned())
    } else if !m.caches_synced.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "watch caches not synced\n".to_owned(),
        )
    } else if !m.queue_ok.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "queue not reachable\n".to_owned(),
        )
    } else {
        let why = stall.map_or_else(|| "not ready".to_owned(), |s| s.to_string());
        (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_only_while_holding_messages_and_finishing_none() {
        let m = Metrics::new();
        m.set_stall_after(Duration::from_secs(10));
        // Nothing held: never stalled, however long.
        assert_eq!(m.stalled_at(3_600_000), None);
        m.hold(2);
        let t0 = m.last_progress_ms.load(Ordering::SeqCst);
        assert_eq!(m.stalled_at(t0 + 9_999), None);
        let stall = m.stalled_at(t0 + 12_000).unwrap();
        assert_eq!((stall.since, stall.held), (Duration::from_secs(12), 2));
        assert_eq!(
            stall.to_string(),
            "consumer stalled: no message finished for 12s while holding 2 (--stall-seconds 10)"
        );
        // One finished: the clock restarts.
        m.let_go(1);
        let t1 = m.last_progress_ms.load(Ordering::SeqCst);
        assert_eq!(m.stalled_at(t1 + 9_999), None);
        assert!(m.stalled_at(t1 + 10_000).is_some());
        // Off.
        m.set_stall_after(Duration::ZERO);
        assert_eq!(m.stalled_at(t1 + 3_600_000), None);
    }
}
