//! `kubetempura run`: the applier process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use kube::ResourceExt;
use kubetempura_common::policy::{DEFAULT_APPLIER_SERVICE_ACCOUNT, GroupKind, ObjectPolicy};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cache::{AppChanged, Caches};
use crate::consumer::{Consumer, ConsumerConfig};
use crate::feedback::FeedbackSender;
use crate::metrics::Metrics;
use crate::reconcile::{Ctx, Trigger, event_from_pr, is_finished_tombstone, reconcile};
use crate::rollout::{Worker, Workloads};
use crate::tenancy::{DEFAULT_DENIED_NAMESPACES, IN_CLUSTER_NAMESPACE_FILE, Tenancy};

/// Arguments of `kubetempura run`. Every flag has an environment fallback.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// URL of the SQS FIFO queue the webhook function writes to.
    #[arg(long, env = "QUEUE_URL")]
    pub queue_url: String,
    /// URL of the SQS FIFO queue environment states go to (deploying, ready, failed, closed,
    /// skipped, waiting, blocked, queued, expired), for the notifier to show on the pull request. Needs only sqs:SendMessage on
    /// it. Absent: nothing is sent.
    #[arg(long, env = "FEEDBACK_QUEUE_URL", value_name = "URL")]
    pub feedback_queue_url: Option<String>,
    /// This cluster's (or applier's) name: in feedback, one pull request's environments in
    /// several clusters become separate GitHub deployments (`<cluster>/<environment>`) and
    /// comment rows; at start, a queue tagged `kubetempura:applier` for another name (terraform's
    /// `appliers` map tags each queue) is warned about as possibly shared.
    #[arg(long, env = "KUBETEMPURA_CLUSTER_NAME", value_name = "NAME", value_parser = cluster_name)]
    pub cluster_name: Option<String>,
    /// Pull requests processed at once (messages of one pull request are always sequential).
    #[arg(long, env = "KUBETEMPURA_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Field manager for server-side apply (and the Events' reporting controller).
    #[arg(long, env = "KUBETEMPURA_FIELD_MANAGER", default_value = "kubetempura")]
    pub field_manager: String,
    /// When adopting an object of an environment that kubetempura did not create (owned by its
    /// `PR` object, as the original KubeTempura leaves them), first hand over the fields this
    /// field manager wrote (the original's binary is named `manager`), so that what later
    /// renders no longer produce is removed. Empty: nothing is handed over.
    #[arg(
        long,
        env = "KUBETEMPURA_ADOPT_FIELD_MANAGER",
        default_value = crate::reconcile::ORIGINAL_FIELD_MANAGER,
        value_name = "NAME"
    )]
    pub adopt_field_manager: String,
    /// Allow a cluster-scoped or privilege-bearing kind in templates (Kind.group, e.g.
    /// ClusterRole.rbac.authorization.k8s.io). Repeatable, or comma-separated in the variable.
    #[arg(
        long = "allow-kind",
        env = "KUBETEMPURA_ALLOW_KINDS",
        value_delimiter = ',',
        value_name = "KIND.GROUP"
    )]
    pub allow_kinds: Vec<GroupKind>,
    /// Watch ReviewApps and PRs in this namespace only (default: all namespaces).
    #[arg(long, env = "KUBETEMPURA_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of the /healthz, /readyz and /metrics server.
    #[arg(long, env = "KUBETEMPURA_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Long-poll wait per receive, in seconds (0-20).
    #[arg(long, env = "KUBETEMPURA_WAIT_TIME_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(i32).range(0..=20))]
    pub wait_time_seconds: i32,
    /// Messages per receive (1-10).
    #[arg(long, env = "KUBETEMPURA_MAX_MESSAGES", default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=10))]
    pub max_messages: i32,
    /// First delay before retrying a transient failure, in seconds; doubles per attempt (and
    /// per receive once a message went back to the queue).
    #[arg(long, env = "KUBETEMPURA_RETRY_BASE_SECONDS", default_value_t = 5)]
    pub retry_base_seconds: u64,
    /// Longest retry delay, in seconds.
    #[arg(long, env = "KUBETEMPURA_RETRY_MAX_SECONDS", default_value_t = 300)]
    pub retry_max_seconds: u64,
    /// How long a transient failure is retried in process (the message and the later messages
    /// of its pull request held, no receive counted) before the message returns to the queue
    /// with a backoff, one receive counted towards the dead-letter queue; in seconds (0: one
    /// attempt per receive).
    #[arg(long, env = "KUBETEMPURA_RETRY_BUDGET_SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(0..=36_000))]
    pub retry_budget_seconds: u64,
    /// Timeout of every Kubernetes API request, in seconds (like kubectl's --request-timeout);
    /// the watches of the caches are long requests and keep kube's defaults.
    #[arg(long, env = "KUBETEMPURA_REQUEST_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_seconds: u64,
    /// /readyz fails when the consumer holds messages and finished none of them for this long,
    /// in seconds (0: never).
    #[arg(long, env = "KUBETEMPURA_STALL_SECONDS", default_value_t = 600)]
    pub stall_seconds: u64,
    /// How long a closed pull request's tombstone `PR` object is kept, in seconds. Must be at
    /// least the message retention of the queue and of its dead-letter queue (checked at
    /// start): default 14 days, the longest SQS keeps a message.
    #[arg(long, env = "KUBETEMPURA_TOMBSTONE_RETENTION_SECONDS", default_value_t = MAX_SQS_RETENTION_SECONDS)]
    pub tombstone_retention_seconds: u64,
    /// Start even when --tombstone-retention-seconds is shorter than the message retention of
    /// the queue or its dead-letter queue, with a warning (tests and demos with short
    /// retentions; a late event may then resurrect a closed environment).
    #[arg(long, env = "KUBETEMPURA_ALLOW_SHORT_TOMBSTONE_RETENTION")]
    pub allow_short_tombstone_retention: bool,
    /// Period of the full resync of every environment against its ReviewApp, in seconds (0: off).
    #[arg(long, env = "KUBETEMPURA_RESYNC_SECONDS", default_value_t = 600)]
    pub resync_seconds: u64,
    /// Period of the lifecycle sweep, in seconds: environments idle for their ReviewApp's
    /// `expireAfter` are expired, and queued environments take the slots `maxActive` frees.
    /// Only ReviewApps using those fields are looked at; the sweep reads the caches and writes
    /// only what changes.
    #[arg(long, env = "KUBETEMPURA_LIFECYCLE_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lifecycle_seconds: u64,
    /// On SIGTERM, how long in-flight work may take before the process exits, in seconds.
    #[arg(long, env = "KUBETEMPURA_SHUTDOWN_GRACE_SECONDS", default_value_t = 25)]
    pub shutdown_grace_seconds: u64,
    /// Refuse ReviewApps in this namespace: recorded on their status, nothing applied.
    /// Repeatable, or comma-separated in the variable. Setting it replaces the default (list
    /// kube-system again to keep it); the applier's own namespace is always refused.
    #[arg(
        long = "deny-namespace",
        env = "KUBETEMPURA_DENY_NAMESPACES",
        value_delimiter = ',',
        default_value = DEFAULT_DENIED_NAMESPACES,
        value_name = "NAMESPACE"
    )]
    pub deny_namespaces: Vec<String>,
    /// The applier's own namespace, whose ReviewApps are always refused. The Deployment sets
    /// it from the downward API (metadata.namespace); default: the namespace file of the pod's
    /// service-account volume. The kubeconfig's namespace is never used.
    #[arg(long, env = "POD_NAMESPACE", value_name = "NAMESPACE")]
    pub applier_namespace: Option<String>,
    /// The applier's ServiceAccount: pod templates naming it (in any namespace) are refused.
    /// The Deployment sets it from the downward API (spec.serviceAccountName).
    #[arg(long, env = "SERVICE_ACCOUNT_NAME", default_value = DEFAULT_APPLIER_SERVICE_ACCOUNT, value_name = "NAME")]
    pub applier_service_account: String,
}

/// A cluster name: a DNS label, as it becomes part of GitHub deployment environment names.
fn cluster_name(s: &str) -> Result<String, String> {
    if kubetempura_common::naming::is_dns_label(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a DNS label (lowercase letters, digits and '-', at most 63)"
        ))
    }
}

/// The longest message retention SQS allows (14 days), in seconds.
pub const MAX_SQS_RETENTION_SECONDS: u64 = 14 * 24 * 3600;

/// Runs the applier until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    metrics.set_stall_after(Duration::from_secs(args.stall_seconds));
    let shutdown = CancellationToken::new();
    let (bound, server) =
        crate::metrics::serve(args.metrics_addr, metrics.clone(), shutdown.clone())
            .await
            .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    tracing::info!(%bound, "serving /healthz, /readyz and /metrics");
    let server = tokio::spawn(server);

    let clients = crate::kube_client::clients(Duration::from_secs(args.request_timeout_seconds))
        .await
        .context("cannot build a Kubernetes client")?;
    let client = clients.requests;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let visibility_timeout = check_queue(&sqs, &args).await?;

    let (changes_tx, changes_rx) = mpsc::unbounded_channel();
    let tenancy = tenancy(&args);
    let (workload_tx, workload_rx) = mpsc::unbounded_channel();
    let workloads = Workloads::start(&clients.watches, args.namespace.as_deref(), workload_tx);
    let caches =
        Caches::start(clients.watches, args.namespace.as_deref(), changes_tx).with_tenancy(tenancy);
    let pr_changes = caches.subscribe_prs();
    let pr_object_changes = caches.subscribe_prs();
    let policy = ObjectPolicy::allowing(args.allow_kinds.iter().cloned())
        .with_applier_service_account(&args.applier_service_account);
    let mut ctx = Ctx::new(
        client,
        caches.clone(),
        policy,
        args.field_manager.clone(),
        metrics.clone(),
    );
    ctx.adopt_field_manager = Some(args.adopt_field_manager.clone())
        .filter(|m| !m.is_empty() && *m != args.field_manager);
    let ctx = Arc::new(ctx);
    let feedback = args.feedback_queue_url.as_ref().map(|url| {
        tracing::info!(queue = %url, cluster = ?args.cluster_name, "sending environment states to the feedback queue");
        FeedbackSender::new(sqs.clone(), url.clone(), args.cluster_name.clone())
    });
    let consumer = Arc::new(Consumer::new(
        sqs,
        ConsumerConfig {
            queue_url: args.queue_url.clone(),
            wait_time_seconds: args.wait_time_seconds,
            max_messages: args.max_messages,
            concurrency: usize::from(args.concurrency),
            retry_base: Duration::from_secs(args.retry_base_seconds.max(1)),
            retry_max: Duration::from_secs(args.retry_max_seconds.max(1)),
            retry_budget: Duration::from_secs(args.retry_budget_seconds),
            visibility_timeout,
        },
        ctx.clone(),
    ));

    spawn_signal_handler(shutdown.clone());
    tokio::select! {
        () = caches.wait_synced() => {}
        () = shutdown.cancelled() => return Ok(()),
    }
    metrics.caches_synced.store(true, Ordering::SeqCst);
    // Started once the caches are synced: each looks at every environment once, then at what
    // changes.
    let rollouts = tokio::spawn(Worker::new(ctx.clone(), workloads, feedback).run(
        pr_changes,
        workload_rx,
        shutdown.clone(),
    ));
    let pr_objects = tokio::spawn(
        crate::pr_objects::Worker::new(ctx.clone()).run(pr_object_changes, shutdown.clone()),
    );
    match consumer.probe().await {
        Ok(()) => metrics.queue_ok.store(true, Ordering::SeqCst),
        Err(e) => {
            tracing::warn!(error = %e, queue = %args.queue_url, "the queue is not reachable yet; will keep trying")
        }
    }
    tracing::info!(reviewapps = caches.app_count(), queue = %args.queue_url, "caches synced; consuming");

    let maintenance = tokio::spawn(maintain(
        ctx.clone(),
        changes_rx,
        args.clone(),
        shutdown.clone(),
    ));
    consumer
        .run(
            shutdown.clone(),
            Duration::from_secs(args.shutdown_grace_seconds),
        )
        .await;
    shutdown.cancel();
    let _ = maintenance.await;
    let _ = rollouts.await;
    let _ = pr_objects.await;
    let _ = server.await;
    tracing::info!("stopped");
    Ok(())
}

/// Reads the queue's attributes, refuses a tombstone retention shorter than its messages live
/// (unless allowed), and returns the visibility timeout the consumer's heartbeat works with.
/// When they cannot be read (a missing permission, the queue unreachable), says so and goes on
/// with SQS's default visibility timeout, without the retention check.
async fn check_queue(sqs: &aws_sdk_sqs::Client, args: &RunArgs) -> anyhow::Result<Duration> {
    match crate::consumer::read_queue_tags(sqs, &args.queue_url).await {
        Ok(tags) => {
            if let Some(problem) =
                crate::consumer::queue_sharing_problem(&tags, args.cluster_name.as_deref())
            {
                tracing::warn!("{problem}");
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the queue's tags (sqs:ListQueueTags): whether another applier's queue is consumed is not checked")
        }
    }
    let attrs = match crate::consumer::read_queue_attributes(sqs, &args.queue_url).await {
        Ok(attrs) => attrs,
        Err(e) => {
            tracing::warn!(
                error = %e,
                assumed_visibility_timeout = ?crate::consumer::DEFAULT_VISIBILITY_TIMEOUT,
                "cannot read the queue's attributes (the applier needs sqs:GetQueueAttributes on it): the tombstone retention is not checked against the queue's message retention, and the heartbeat assumes SQS's default visibility timeout"
            );
            return Ok(crate::consumer::DEFAULT_VISIBILITY_TIMEOUT);
        }
    };
    tracing::info!(
        visibility_timeout = ?attrs.visibility_timeout,
        retention = ?attrs.retention,
        max_receive_count = ?attrs.max_receive_count,
        dead_letter_queue = ?attrs.dead_letter.as_ref().map(|d| d.name()),
        "queue attributes"
    );
    if let Some(dlq) = &attrs.dead_letter
        && let Err(e) = &dlq.retention
    {
        tracing::warn!(
            error = %e,
            dead_letter_queue = dlq.name(),
            "cannot read the dead-letter queue's message retention (the applier needs sqs:GetQueueUrl and sqs:GetQueueAttributes on it): the tombstone retention is checked against the queue's only"
        );
    }
    if let Err(problem) = tombstone_retention_problem(
        Duration::from_secs(args.tombstone_retention_seconds),
        &attrs,
    ) {
        anyhow::ensure!(args.allow_short_tombstone_retention, "{problem}");
        tracing::warn!("{problem} (accepted: --allow-short-tombstone-retention)");
    }
    Ok(attrs.visibility_timeout)
}

/// Why `retention` is too short for the queue, if it is: a tombstone must outlive any message
/// that could still be delivered, or a late event of a closed pull request (one that went to the
/// dead-letter queue and is redriven, say) would find no tombstone and resurrect it.
pub fn tombstone_retention_problem(
    retention: Duration,
    queue: &crate::consumer::QueueAttributes,
) -> Result<(), String> {
    let dlq = queue
        .dead_letter
        .as_ref()
        .and_then(|d| d.retention.as_ref().ok().map(|r| (d.name(), *r)));
    let needed = dlq.map_or(queue.retention, |(_, r)| r.max(queue.retention));
    if retention >= needed {
        return Ok(());
    }
    let queues = match dlq {
        Some((name, r)) => format!(
            "the queue's message retention ({} s) and its dead-letter queue {name}'s ({} s)",
            queue.retention.as_secs(),
            r.as_secs()
        ),
        None => format!(
            "the queue's message retention ({} s)",
            queue.retention.as_secs()
        ),
    };
    Err(format!(
        "--tombstone-retention-seconds (KUBETEMPURA_TOMBSTONE_RETENTION_SECONDS) is {} s, shorter than {queues}: a late event could resurrect a closed environment after its tombstone is collected. Set --tombstone-retention-seconds to at least {} or shorten the queues' MessageRetentionPeriod (terraform: message_retention_seconds, dlq_message_retention_seconds); --allow-short-tombstone-retention (KUBETEMPURA_ALLOW_SHORT_TOMBSTONE_RETENTION=true) starts anyway with a warning",
        retention.as_secs(),
        needed.as_secs()
    ))
}

/// The namespaces whose ReviewApps are refused, logged once at start.
fn tenancy(args: &RunArgs) -> Tenancy {
    let own = crate::tenancy::own_namespace(
        args.applier_namespace.as_deref(),
        std::path::Path::new(IN_CLUSTER_NAMESPACE_FILE),
    );
    if own.is_none() {
        tracing::warn!(
            "the applier's own namespace is unknown (POD_NAMESPACE unset, not in a pod): only the deny list refuses ReviewApps"
        );
    }
    let tenancy = Tenancy::new(args.deny_namespaces.iter().cloned(), own);
    tracing::info!(denied = ?tenancy.denied(), service_account = %args.applier_service_account, "ReviewApps in denied namespaces are refused; pod templates may not run as the applier's ServiceAccount");
    if let Some(ns) = &args.namespace
        && tenancy.is_denied(ns)
    {
        tracing::warn!(namespace = %ns, "the watched namespace (--namespace) is denied: every ReviewApp there will be refused");
    }
    tenancy
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        }
        shutdown.cancel();
    });
}

/// Re-renders environments when their ReviewApp changes, resyncs periodically, runs the
/// lifecycle sweep (expiry, the `maxActive` queue), and collects expired tombstones.
async fn maintain(
    ctx: Arc<Ctx>,
    mut changes: mpsc::UnboundedReceiver<AppChanged>,
    args: RunArgs,
    shutdown: CancellationToken,
) {
    let resync = if args.resync_seconds == 0 {
        Duration::from_secs(u64::MAX / 4)
    } else {
        Duration::from_secs(args.resync_seconds)
    };
    let mut ticker = tokio::time::interval(resync);
    ticker.tick().await;
    let mut lifecycle = tokio::time::interval(Duration::from_secs(args.lifecycle_seconds));
    lifecycle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Resync at start: whatever changed while no applier ran (an object deleted or edited behind
    // its back, a close left half-done) is repaired without waiting for a webhook or a tick.
    tokio::select! {
        () = shutdown.cancelled() => return,
        () = rerender_app(&ctx, None) => {}
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            Some(change) = changes.recv() => rerender_app(&ctx, Some((&change.namespace, &change.name))).await,
            _ = lifecycle.tick() => crate::reconcile::lifecycle::sweep(&ctx).await,
            _ = ticker.tick() => {
                rerender_app(&ctx, None).await;
                collect_tombstones(&ctx, Duration::from_secs(args.tombstone_retention_seconds)).await;
                crate::reconcile::refresh_app_counts(&ctx).await;
            }
        }
    }
}

/// Re-renders the live environments of one ReviewApp (or of all), from their recorded spec.
pub async fn rerender_app(ctx: &Ctx, only: Option<(&str, &str)>) {
    if let Some((ns, name)) = only
        && crate::tenancy::refuse_rerender(ctx, ns, name).await
    {
        return;
    }
    // A ReviewApp being deleted closes its environments first (see reconcile::finalizer).
    crate::reconcile::finalizer::finalize_deleted(ctx, only).await;
    for pr in ctx.caches.all_prs() {
        let ns = pr.namespace().unwrap_or_default();
        if let Some((want_ns, want_name)) = only
            && (ns != want_ns || pr.spec.review_app != want_name)
        {
            continue;
        }
        let Some(app) = ctx.caches.app(&ns, &pr.spec.review_app) else {
            continue;
        };
        let current = ctx.current_pr(&ns, &pr.name_any()).unwrap_or(pr);
        if current.spec.closed {
            // Closed environments are not re-rendered; a close left half-done is finished.
            if is_finished_tombstone(&current) {
                continue;
            }
        } else {
            let up_to_date = current.status.as_ref().and_then(|s| s.applied_generation)
                == app.metadata.generation
                && only.is_some();
            if up_to_date {
                continue;
            }
        }
        let result = if current.spec.needs_recording() {
            // Made by hand or by the original KubeTempura, or its commit edited: the object
            // drives the environment.
            crate::reconcile::reconcile_object(ctx, &app, &current).await
        } else {
            let Some(event) = event_from_pr(&current) else {
                continue;
            };
            reconcile(ctx, &app, &event, Trigger::Rerender).await
        };
        match result {
            Ok(outcome) => {
                tracing::info!(pr = %current.name_any(), outcome = outcome.label(), "re-rendered")
            }
            Err(e) => {
                tracing::warn!(pr = %current.name_any(), error = %e, "re-render failed; the next resync retries")
            }
        }
    }
}

/// True when `pr` is a finished tombstone closed more than `retention` ago.
fn tombstone_expired(pr: &kubetempura_common::crd::PR, retention: Duration) -> bool {
    let closed_at = pr
        .status
        .as_ref()
        .and_then(|s| s.closed_at.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let Some(closed_at) = closed_at else {
        return false;
    };
    pr.spec.closed
        && is_finished_tombstone(pr)
        && (chrono::Utc::now() - closed_at.with_timezone(&chrono::Utc))
            .to_std()
            .unwrap_or_default()
            >= retention
}

/// Deletes tombstones older than the retention.
async fn collect_tombstones(ctx: &Ctx, retention: Duration) {
    for pr in ctx.caches.all_prs() {
        if !tombstone_expired(&pr, retention) {
            continue;
        }
        let ns = pr.namespace().unwrap_or_default();
        let name = pr.name_any();
        // Under the environment's lock, from the freshest copy, and only if the object is still
        // that copy: a reopened event that just brought the environment back is never collected.
        let lock = ctx.lock_for(&ns, &name);
        let _guard = lock.lock().await;
        let Some(current) = ctx.current_pr(&ns, &name) else {
            continue;
        };
        if !tombstone_expired(&current, retention) {
            continue;
        }
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: current.uid(),
                resource_version: current.resource_version(),
            }),
            ..kube::api::DeleteParams::background()
        };
        let api: kube::Api<kubetempura_common::crd::PR> =
            kube::Api::namespaced(ctx.client.clone(), &ns);
        match api.delete(&name, &params).await {
            Ok(_) => {
                tracing::info!(pr = %name, "tombstone collected");
                ctx.forget(&ns, &name);
            }
            Err(e) => {
                tracing::warn!(pr = %name, error = %e, "collecting a tombstone failed; the next resync retries")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::{DeadLetterQueue, QueueAttributes};

    fn queue(retention: u64, dlq: Option<Result<u64, &str>>) -> QueueAttributes {
        QueueAttributes {
            visibility_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(retention),
            max_receive_count: Some(5),
            dead_letter: dlq.map(|r| DeadLetterQueue {
                arn: "arn:aws:sqs:us-east-1:111122223333:events-dlq.fifo".to_owned(),
                retention: r.map(Duration::from_secs).map_err(str::to_owned),
            }),
        }
    }

    #[test]
    fn the_tombstone_retention_must_cover_the_queue_and_its_dead_letter_queue() {
        let check = |retention, q: &QueueAttributes| {
            tombstone_retention_problem(Duration::from_secs(retention), q)
        };
        // terraform's defaults: 4 days, 14 days; the applier's default covers them.
        let defaults = queue(345_600, Some(Ok(1_209_600)));
        assert_eq!(check(MAX_SQS_RETENTION_SECONDS, &defaults), Ok(()));
        let err = check(604_800, &defaults).unwrap_err();
        for part in [
            "604800 s",
            "345600 s",
            "events-dlq.fifo's (1209600 s)",
            "at least 1209600",
            "--tombstone-retention-seconds",
            "--allow-short-tombstone-retention",
        ] {
            assert!(err.contains(part), "{part:?} not in {err}");
        }
        // The queue alone (no redrive policy, or its DLQ unreadable).
        assert_eq!(check(345_600, &queue(345_600, None)), Ok(()));
        assert_eq!(check(345_600, &queue(345_600, Some(Err("denied")))), Ok(()));
        let err = check(60, &queue(345_600, None)).unwrap_err();
        assert!(
            err.contains("queue's message retention (345600 s):"),
            "{err}"
        );
    }
}
