//! From one event to the cluster: the `PR` record, the rendered objects, pruning, deletion on
//! close, status, Events.
//!
//! - [`context`]: what every reconcile shares (clients, caches, locks).
//! - [`environment`]: one environment and its operations (deploy, skip, close).
//! - [`objects`]: applying and deleting objects, and the ownership rule.
//! - [`finalizer`]: closing the environments of a ReviewApp being deleted.
//! - [`record`] and [`status`]: the `PR` record's spec and status, the ReviewApp status.
//!
//! Kubernetes API requests for an open pull request: one server-side apply of the `PR` record,
//! one per rendered object (plus one read per object not yet in the inventory), one status
//! apply and one Event (plus a delete per pruned object).
//!
//! **Concurrency.** Within a process, one lock per environment serialises events, re-renders
//! and tombstone collection. Across processes (a rolling update runs two appliers; more
//! replicas are safe), every write of a `PR` record is conditional on the resourceVersion its
//! decision was made from: the stale check and the write are one atomic step. A writer that
//! loses the race re-reads the record and decides again; if another process recorded a newer
//! event meanwhile, whatever the loser applied is re-rendered from that newer record, so the
//! objects always end at the newest event.

mod context;
mod environment;
pub mod finalizer;
pub mod lifecycle;
mod objects;
mod record;
mod status;

use std::borrow::Cow;
use std::sync::Arc;

use kube::ResourceExt;
use kubetempura_common::check::{CheckEvent, QueueMessage};
use kubetempura_common::crd::{PR, Phase, ReviewApp, has_cluster_scoped_finalizer};
use kubetempura_common::event::PrEvent;
use kubetempura_common::naming::RepoKey;

pub use context::Ctx;
use environment::Environment;
pub use record::{event_from_pr, is_finished_tombstone};
pub use status::{CONDITION_ROLLED_OUT, refresh_app_counts, with_rollout, write_pr_status};

use crate::cache::Stranded;
use crate::kubeapi::{Class, Failure};

/// What happened to one (ReviewApp, event) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Objects applied (count), objects pruned (count).
    Applied { applied: usize, pruned: usize },
    /// The pull request was closed; objects deleted (count).
    Closed { deleted: usize },
    /// The ReviewApp's policy does not deploy this pull request.
    Skipped(String),
    /// The event is older than what the `PR` object recorded (or the PR is closed).
    Stale(String),
    /// No ReviewApp matches the repository.
    NoReviewApp,
    /// A permanent failure, recorded on the statuses and as an Event.
    Failed(String),
    /// The head commit waits for the ReviewApp's checks (`Waiting`), or one failed (`Blocked`).
    Gated(String),
    /// The ReviewApp's `maxActive` environments are deployed; this one is queued.
    Queued(String),
    /// Removed after the ReviewApp's `expireAfter` without a push.
    Expired(String),
    /// A check result: recorded (or not awaited), no environment to move.
    Recorded(String),
    /// The environment's `PR` object cannot be read (see
    /// [`kubetempura_common::crd::parse_pr`]): nothing is done until someone fixes it.
    Unreadable(String),
}

impl Outcome {
    /// The metric label of the outcome.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Applied { .. } => "applied",
            Self::Closed { .. } => "closed",
            Self::Skipped(_) => "skipped",
            Self::Stale(_) => "stale",
            Self::NoReviewApp => "no_reviewapp",
            Self::Failed(_) => "failed",
            Self::Gated(_) => "gated",
            Self::Queued(_) => "queued",
            Self::Expired(_) => "expired",
            Self::Recorded(_) => "check_recorded",
            Self::Unreadable(_) => "unreadable",
        }
    }
}

/// Why a reconcile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A queue message.
    Event,
    /// The ReviewApp changed, or a periodic resync: re-render from the recorded `PR` spec.
    Rerender,
    /// The `PR` object asks for what it has not recorded (made with kubectl or by the original
    /// KubeTempura, or its `headCommitRef` edited): the event is rebuilt from the object under
    /// the environment's lock (see [`record::manual_event`]).
    Manual,
}

/// The field manager of the original KubeTempura (its binary is named `manager`): the default of
/// `--adopt-field-manager`.
pub const ORIGINAL_FIELD_MANAGER: &str = "manager";

/// How many times one reconcile re-reads its record after losing a race to another writer.
const MAX_RECORD_CONFLICTS: usize = 5;

/// Handles one queue message: a pull-request event or a check result.
pub async fn handle_message(ctx: &Ctx, message: &QueueMessage) -> Result<Vec<Outcome>, Failure> {
    match message {
        QueueMessage::PullRequest(event) => handle_event(ctx, event).await,
        QueueMessage::Check(check) => handle_check(ctx, check).await,
    }
}

/// Handles a check result: records it in the check ledger when a ReviewApp of the repository
/// waits for that check, then re-decides every environment of those ReviewApps whose head
/// commit it is about and that is not deployed at that commit (`Waiting`, `Blocked`, or being
/// decided). A queued, expired or skipped environment is not moved by a check.
/// Environments are found by head SHA, so a result naming no pull
/// request (a fork's) moves them too; one that arrives before the push it is about is in the
/// ledger when that push is handled.
pub async fn handle_check(ctx: &Ctx, check: &CheckEvent) -> Result<Vec<Outcome>, Failure> {
    let Some(repo) = RepoKey::parse(&check.repository.html_url) else {
        return Ok(vec![Outcome::NoReviewApp]);
    };
    let apps: Vec<_> = ctx
        .caches
        .apps_for(&repo)
        .into_iter()
        .filter(|app| {
            app.spec
                .gate()
                .is_some_and(|w| w.awaits(check.kind, &check.name))
        })
        .collect();
    let fact = check.fact();
    if apps.is_empty() {
        return Ok(vec![Outcome::Recorded(format!(
            "no ReviewApp of {repo} waits for {}",
            fact.describe()
        ))]);
    }
    let changed = crate::ledger::record(ctx, &repo, &check.head_sha, &fact).await?;
    if !changed {
        return Ok(vec![Outcome::Recorded(format!(
            "{} on {} is already recorded (or older than the result recorded)",
            fact.describe(),
            kubetempura_common::render::short_sha(&check.head_sha)
        ))]);
    }
    let mut outcomes = Vec::new();
    for app in apps {
        for pr in lifecycle::environments(ctx, &app) {
            // At the gate, or about to be: a push to this commit being handled right now has
            // written its record but not its status yet (the reconcile then waits for it on
            // the environment's lock and decides from the ledger this result is in).
            let pending = pr.spec.head_sha == check.head_sha
                && pr.status.as_ref().is_none_or(|s| {
                    !lifecycle::is_deployed_at(s, &check.head_sha)
                        && !matches!(
                            s.phase,
                            Some(Phase::Queued | Phase::Expired | Phase::Skipped | Phase::Closed)
                        )
                });
            if !pending {
                continue;
            }
            let Some(event) = event_from_pr(&pr) else {
                continue;
            };
            outcomes.push(reconcile(ctx, &app, &event, Trigger::Rerender).await?);
        }
    }
    if outcomes.is_empty() {
        outcomes.push(Outcome::Recorded(format!(
            "{} on {} recorded; no environment is at that commit yet",
            fact.describe(),
            kubetempura_common::render::short_sha(&check.head_sha)
        )));
    }
    Ok(outcomes)
}

/// Handles one event for every ReviewApp of its repository. A transient failure of any of them
/// fails the whole event (it is retried; applying again is idempotent).
pub async fn handle_event(ctx: &Ctx, event: &PrEvent) -> Result<Vec<Outcome>, Failure> {
    let Some(repo) = RepoKey::parse(&event.repository.html_url) else {
        return Ok(vec![Outcome::NoReviewApp]);
    };
    // Tenancy: ReviewApps in denied namespaces are refused and recorded, never reconciled.
    let mut outcomes = crate::tenancy::refuse(ctx, &repo).await?;
    let apps = ctx.caches.apps_for(&repo);
    if apps.is_empty() && outcomes.is_empty() {
        return Ok(vec![Outcome::NoReviewApp]);
    }
    for app in apps {
        outcomes.push(reconcile(ctx, &app, event, Trigger::Event).await?);
    }
    Ok(outcomes)
}

/// Reconciles the environment of a `PR` object that asks for what it has not recorded (see
/// [`Trigger::Manual`]).
pub async fn reconcile_object(ctx: &Ctx, app: &ReviewApp, pr: &PR) -> Result<Outcome, Failure> {
    reconcile(ctx, app, &manual_event(pr, app)?, Trigger::Manual).await
}

/// [`record::manual_event`], or why there is none.
fn manual_event(pr: &PR, app: &ReviewApp) -> Result<PrEvent, Failure> {
    record::manual_event(pr, app).ok_or_else(|| {
        Failure::permanent(format!(
            "PR {}: its ReviewApp names no GitHub repository ({:?})",
            kube::ResourceExt::name_any(pr),
            app.spec.github_repository
        ))
    })
}

/// A `PR` object being deleted that holds the finalizer, readable or not, whatever its
/// ReviewApp: [`finalizer::finalize_deleted_pr`] under the environment's lock. `Stale` when the
/// object is not, or no longer, such a one.
pub async fn finalize_pr_object(ctx: &Ctx, ns: &str, name: &str) -> Result<Outcome, Failure> {
    let lock = ctx.lock_for(ns, name);
    let _guard = lock.lock().await;
    let found = match ctx.caches.unreadable_pr(ns, name) {
        Some(bad) => bad
            .stranded
            .map(|stranded| (bad.reference.resource_version, stranded)),
        None => ctx
            .current_pr(ns, name)
            .filter(|pr| {
                pr.metadata.deletion_timestamp.is_some() && has_cluster_scoped_finalizer(&**pr)
            })
            .map(|pr| (pr.resource_version(), Stranded::of_record(&pr))),
    };
    match found {
        Some((resource_version, stranded)) => {
            finalizer::finalize_deleted_pr(ctx, ns, name, resource_version, stranded).await
        }
        None => Ok(Outcome::Stale(format!(
            "PR {name} has nothing left to finalize"
        ))),
    }
}

/// Reconciles one ReviewApp's environment for one event, under the environment's lock.
pub async fn reconcile(
    ctx: &Ctx,
    app: &ReviewApp,
    event: &PrEvent,
    trigger: Trigger,
) -> Result<Outcome, Failure> {
    let env = Environment::new(ctx, app, event.number);
    let lock = ctx.lock_for(&env.ns, &env.pr_name);
    let _guard = lock.lock().await;
    if let Some(bad) = ctx.caches.unreadable_pr(&env.ns, &env.pr_name) {
        return Ok(Outcome::Unreadable(format!(
            "PR {} cannot be read: {}",
            env.pr_name, bad.reason
        )));
    }
    let mut existing = match ctx.current_pr(&env.ns, &env.pr_name) {
        Some(pr) => Some(pr),
        // Not in the watch cache yet is not "absent": another process may have just written it.
        None => env.read_record().await?.map(Arc::new),
    };
    let mut event = Cow::Borrowed(event);
    let mut trigger = trigger;
    for _ in 0..MAX_RECORD_CONFLICTS {
        if trigger == Trigger::Manual {
            // What the object asks for now, decided under the lock.
            match existing.as_deref() {
                None => {
                    return Ok(Outcome::Stale(format!(
                        "PR {} no longer exists",
                        env.pr_name
                    )));
                }
                Some(pr) if !pr.spec.needs_recording() => {
                    return Ok(Outcome::Stale(format!(
                        "PR {} is recorded at {}",
                        env.pr_name,
                        kubetempura_common::render::short_sha(&pr.spec.head_sha)
                    )));
                }
                Some(pr) => event = Cow::Owned(manual_event(pr, app)?),
            }
        }
        match env.reconcile(&event, trigger, existing.as_deref()).await {
            Err(f) if f.class() == Class::RecordConflict => {
                let fresh = env.read_record().await?;
                tracing::info!(pr = %env.pr_name, error = %f, "the PR record changed meanwhile; deciding again from the current one");
                if trigger != Trigger::Manual
                    && let Some(newer) = fresh.as_ref().and_then(event_from_pr)
                    && newer.updated_at > event.updated_at
                {
                    // Another process recorded a newer event while this one was applying: what
                    // this one applied is brought back to the newer record.
                    event = Cow::Owned(newer);
                    trigger = Trigger::Rerender;
                }
                existing = fresh.map(Arc::new);
            }
            other => return other,
        }
    }
    Err(Failure::transient(format!(
        "PR {} kept changing under this reconcile ({MAX_RECORD_CONFLICTS} conflicts)",
        env.pr_name
    )))
}
