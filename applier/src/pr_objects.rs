//! The `PR` object drives its environment, as in the original KubeTempura: one applied with
//! kubectl (the original's fields or ours), one the original left behind, or one whose
//! `headCommitRef` a person edited is rendered from its ReviewApp at the commit it names
//! ([`crate::reconcile::Trigger::Manual`]). An edit of its `envVars` renders it again. Deleting
//! the object removes the environment through the garbage collector (the objects are owned by
//! it).
//!
//! The same worker reports the `PR` objects the applier cannot read: a log line and a Warning
//! Event `Unreadable` once per version of the object, and the gauge
//! `kubetempura_unreadable_prs`. They are skipped; nothing else waits for them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Event as KubeEvent, EventType};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::deadlines::{Deadlines, sleep_until};
use kubetempura_common::crd::{PR, has_cluster_scoped_finalizer};

use crate::kubeapi::Failure;
use crate::reconcile::{
    Ctx, Outcome, Trigger, event_from_pr, finalize_pr_object, reconcile, reconcile_object,
};

type Key = (String, String);

/// First retry of a transient failure; doubled up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// Watches `PR` objects for those that ask for what they have not recorded, and for those that
/// cannot be read.
pub struct Worker {
    ctx: Arc<Ctx>,
    /// The resourceVersion of each unreadable object already reported.
    reported: HashMap<Key, Option<String>>,
    /// The delay of the next retry of each object whose reconcile failed transiently.
    backoff: HashMap<Key, Duration>,
}

impl Worker {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Self {
            ctx,
            reported: HashMap::new(),
            backoff: HashMap::new(),
        }
    }

    /// Runs until `shutdown`. Start it once the caches are synced: it looks at every object
    /// once, then at each one the watch shows changed.
    pub async fn run(mut self, mut changes: broadcast::Receiver<Key>, shutdown: CancellationToken) {
        let mut pending: BTreeSet<Key> = self.ctx.caches.pr_keys();
        let mut deadlines: Deadlines<Key> = Deadlines::default();
        loop {
            while let Some(key) = pending.pop_first() {
                if shutdown.is_cancelled() {
                    return;
                }
                if let Some(at) = self.handle(&key).await {
                    deadlines.insert(at, key);
                }
            }
            self.ctx
                .metrics
                .set_unreadable_prs(self.ctx.caches.unreadable_pr_count());
            let next = deadlines.next();
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = changes.recv() => match changed {
                    Ok(key) => { pending.insert(key); }
                    Err(broadcast::error::RecvError::Lagged(_)) => pending.extend(self.ctx.caches.pr_keys()),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = sleep_until(next) => pending.extend(deadlines.take_due(Instant::now())),
            }
        }
    }

    /// Looks at one object; `Some` when it is to be looked at again then.
    async fn handle(&mut self, key: &Key) -> Option<Instant> {
        let (ns, name) = key;
        let caches = &self.ctx.caches;
        if let Some(bad) = caches.unreadable_pr(ns, name) {
            let stranded = bad.stranded.is_some();
            self.report(key, bad).await;
            if stranded {
                // Being deleted, and its deletion waits for the applier's finalizer: that must
                // not wait for a fix of the spec.
                let result = finalize_pr_object(&self.ctx, ns, name).await;
                return self.finish(key, "", result);
            }
            return None;
        }
        self.reported.remove(key);
        let deleting = |pr: &PR| pr.metadata.deletion_timestamp.is_some();
        let Some(pr) = caches
            .pr(ns, name)
            .filter(|pr| !deleting(pr) || has_cluster_scoped_finalizer(&**pr))
        else {
            // Deleted, or being deleted: the garbage collector removes what it owned.
            self.backoff.remove(key);
            return None;
        };
        if deleting(&pr) {
            // Its environment holds cluster-scoped objects, which no garbage collector reaches.
            let result = finalize_pr_object(&self.ctx, ns, name).await;
            return self.finish(key, &pr.spec.head_sha, result);
        }
        let needs_recording = pr.spec.needs_recording();
        let env_vars_changed = !needs_recording && pr.env_vars_changed();
        if !needs_recording && !env_vars_changed {
            self.backoff.remove(key);
            return None;
        }
        let Some(app) = caches.app(ns, &pr.spec.review_app) else {
            // Picked up when the ReviewApp appears (its first render looks at every record).
            tracing::warn!(namespace = %ns, pr = %name, reviewapp = %pr.spec.review_app, "the PR object's ReviewApp does not exist (or its namespace is refused); nothing to render");
            return None;
        };
        let result = if env_vars_changed {
            // Its envVars were edited: rendered again from the record, as a resync would.
            match event_from_pr(&pr) {
                Some(event) => reconcile(&self.ctx, &app, &event, Trigger::Rerender).await,
                None => return None,
            }
        } else {
            reconcile_object(&self.ctx, &app, &pr).await
        };
        self.finish(key, &pr.spec.head_sha, result)
    }

    /// Logs and counts the outcome of a reconcile of the object `key` (at `commit`, if known);
    /// `Some` when it is to be retried then.
    fn finish(
        &mut self,
        key: &Key,
        commit: &str,
        result: Result<Outcome, Failure>,
    ) -> Option<Instant> {
        let (ns, name) = key;
        match result {
            Ok(outcome) => {
                self.backoff.remove(key);
                self.ctx.metrics.reconciled_object(outcome.label());
                tracing::info!(namespace = %ns, pr = %name, commit = %commit, outcome = outcome.label(), ?outcome, "reconciled from the PR object");
                None
            }
            Err(e) if e.is_transient() => {
                let delay = self
                    .backoff
                    .get(key)
                    .map_or(RETRY_FIRST, |d| (*d * 2).min(RETRY_MAX));
                self.backoff.insert(key.clone(), delay);
                self.ctx.metrics.reconciled_object("transient_error");
                tracing::warn!(namespace = %ns, pr = %name, error = %e, retry_in = ?delay, "reconcile from the PR object failed; will retry");
                Some(Instant::now() + delay)
            }
            Err(e) => {
                self.backoff.remove(key);
                self.ctx.metrics.reconciled_object("failed");
                tracing::error!(namespace = %ns, pr = %name, error = %e, "reconcile from the PR object failed");
                None
            }
        }
    }

    /// Reports an unreadable object once per version of it.
    async fn report(&mut self, key: &Key, bad: crate::cache::UnreadablePr) {
        let version = bad.reference.resource_version.clone();
        if self.reported.get(key) == Some(&version) {
            return;
        }
        self.reported.insert(key.clone(), version);
        tracing::warn!(namespace = %key.0, pr = %key.1, reason = %bad.reason, "PR object cannot be read; skipped until it is fixed");
        let ev = KubeEvent {
            type_: EventType::Warning,
            reason: "Unreadable".to_owned(),
            note: Some(format!(
                "kubetempura cannot read this PR object and skips it: {}",
                bad.reason
            )),
            action: "Read".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.ctx.recorder.publish(&ev, &bad.reference).await {
            tracing::warn!(pr = %key.1, error = %e, "could not publish Kubernetes Event");
        }
    }
}
