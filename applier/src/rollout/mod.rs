//! After the apply: whether each environment's workloads rolled out, and telling the pull
//! request.
//!
//! Readiness is watched, not polled: the environment's Deployments, StatefulSets and
//! DaemonSets are cached by watches selecting kubetempura's `pr` label (only environment
//! workloads are held in memory), and a change of one re-examines its environment. An
//! environment whose rollout is `Progressing` becomes `Complete` when every workload of its
//! inventory is ready, or `TimedOut` at its start plus the ReviewApp's `readinessTimeout` (a
//! deadline computed from the recorded start, so it survives restarts). Both land on the `PR`
//! status (`rollout` and the `RolledOut` condition) by the same conditional write as
//! reconciliation, under the environment's lock. With a feedback queue configured, each
//! environment's state change is then sent once ([`crate::feedback`]).
//!
//! A reconcile that applies a commit starts its rollout (or finds none to wait for) in the
//! status it writes anyway; this worker writes only when a rollout finishes, and never without
//! a workload change, a deadline or a feedback to record — so an event costs no extra request.

pub mod readiness;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use kubetempura_common::crd::{
    ANNOTATION_ENVIRONMENT, InventoryEntry, LABEL_PR, PR, Phase, Rollout, RolloutState,
};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::deadlines::{Deadlines, sleep_until};
use crate::feedback::FeedbackSender;
use crate::kubeapi::{Class, Failure};
use crate::reconcile::{Ctx, with_rollout, write_pr_status};
use readiness::Progress;

/// An environment: the namespace and name of its `PR` record.
type Key = (String, String);

/// The environment workloads, cached by label-selected watches.
#[derive(Clone)]
pub struct Workloads {
    deployments: Store<Deployment>,
    stateful_sets: Store<StatefulSet>,
    daemon_sets: Store<DaemonSet>,
}

impl Workloads {
    /// Starts the watches; each changed workload's environment is sent to `changed`.
    pub fn start(
        client: &Client,
        namespace: Option<&str>,
        changed: mpsc::UnboundedSender<Key>,
    ) -> Self {
        Self {
            deployments: watch::<Deployment>(client, namespace, changed.clone()),
            stateful_sets: watch::<StatefulSet>(client, namespace, changed.clone()),
            daemon_sets: watch::<DaemonSet>(client, namespace, changed),
        }
    }

    async fn wait_synced(&self) {
        let _ = self.deployments.wait_until_ready().await;
        let _ = self.stateful_sets.wait_until_ready().await;
        let _ = self.daemon_sets.wait_until_ready().await;
    }

    /// Where one workload of an inventory stands (`None` for other kinds).
    fn progress(&self, entry: &InventoryEntry) -> Option<Progress> {
        if !entry.is_workload() {
            return None;
        }
        let found = match entry.kind.as_str() {
            "Deployment" => lookup(&self.deployments, entry).map(|d| readiness::deployment(&d)),
            "StatefulSet" => {
                lookup(&self.stateful_sets, entry).map(|s| readiness::stateful_set(&s))
            }
            _ => lookup(&self.daemon_sets, entry).map(|d| readiness::daemon_set(&d)),
        };
        Some(found.unwrap_or_else(|| Progress {
            ready: false,
            detail: format!("{} {}: not found", entry.kind, entry.name),
        }))
    }
}

/// The cached workload of `entry`, if it is still the object that was applied (same uid when
/// the inventory recorded one).
fn lookup<K>(store: &Store<K>, entry: &InventoryEntry) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    let ns = entry.namespace.as_deref().unwrap_or_default();
    let found = store.get(&ObjectRef::new(&entry.name).within(ns))?;
    match (&entry.uid, found.meta().uid.as_ref()) {
        (Some(want), Some(have)) if want != have => None,
        _ => Some(found),
    }
}

fn watch<K>(
    client: &Client,
    namespace: Option<&str>,
    changed: mpsc::UnboundedSender<Key>,
) -> Store<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    let config = watcher::Config::default().labels(LABEL_PR);
    tokio::spawn(
        watcher(api, config)
            .default_backoff()
            .modify(|o: &mut K| o.meta_mut().managed_fields = None)
            .reflect(writer)
            .for_each(move |r| {
                match r {
                    Err(e) => tracing::warn!(kind = %K::kind(&()), error = %e, "workload watch error; retrying"),
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o)) => {
                        if let Some(key) = environment_of(o.meta()) {
                            let _ = changed.send(key);
                        }
                    }
                    Ok(_) => {}
                }
                futures::future::ready(())
            }),
    );
    store
}

/// The environment an object was rendered for (its `kubetempura.mercari.com/environment`
/// annotation, `<namespace>/<PR name>`).
fn environment_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<Key> {
    let value = meta.annotations.as_ref()?.get(ANNOTATION_ENVIRONMENT)?;
    let (ns, name) = value.split_once('/')?;
    Some((ns.to_owned(), name.to_owned()))
}

/// What the worker does for one environment, and when to look again.
enum Next {
    Done,
    /// Look again at this time (a readiness deadline).
    At(Instant),
    /// Retry after a transient failure.
    Retry,
}

/// The rollout and feedback worker.
pub struct Worker {
    ctx: Arc<Ctx>,
    workloads: Workloads,
    feedback: Option<FeedbackSender>,
}

/// How long a transient failure (an API or SQS error) waits before the environment is looked at
/// again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

impl Worker {
    pub fn new(ctx: Arc<Ctx>, workloads: Workloads, feedback: Option<FeedbackSender>) -> Self {
        Self {
            ctx,
            workloads,
            feedback,
        }
    }

    /// Runs until `shutdown`: every environment once at start, then each one its record or a
    /// workload changes, or a deadline comes.
    pub async fn run(
        self,
        mut prs: broadcast::Receiver<Key>,
        mut workloads: mpsc::UnboundedReceiver<Key>,
        shutdown: CancellationToken,
    ) {
        // Started after the `PR` and ReviewApp caches synced (see `run`).
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = self.workloads.wait_synced() => {}
        }
        let mut pending: BTreeSet<Key> = self.all_environments();
        let mut deadlines: Deadlines<Key> = Deadlines::default();
        loop {
            while let Some(key) = pending.pop_first() {
                if shutdown.is_cancelled() {
                    return;
                }
                let at = match self.handle(&key).await {
                    Next::Done => None,
                    Next::At(at) => Some(at),
                    Next::Retry => Some(Instant::now() + RETRY_AFTER),
                };
                if let Some(at) = at {
                    deadlines.insert(at, key);
                }
            }
            let next_deadline = deadlines.next();
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = prs.recv() => match changed {
                    Ok(key) => { pending.insert(key); }
                    Err(broadcast::error::RecvError::Lagged(_)) => pending.extend(self.all_environments()),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some(key) = workloads.recv() => { pending.insert(key); }
                () = sleep_until(next_deadline) => pending.extend(deadlines.take_due(Instant::now())),
            }
        }
    }

    fn all_environments(&self) -> BTreeSet<Key> {
        self.ctx
            .caches
            .all_prs()
            .iter()
            .map(|p| (p.namespace().unwrap_or_default(), p.name_any()))
            .collect()
    }

    async fn handle(&self, (ns, name): &Key) -> Next {
        let lock = self.ctx.lock_for(ns, name);
        let _held = lock.lock().await;
        let Some(pr) = self.ctx.current_pr(ns, name) else {
            return Next::Done;
        };
        let (pr, next) = match self.rollout(PR::clone(&pr)).await {
            Ok(done) => done,
            Err(f) => return self.failed(ns, name, "rollout", &f),
        };
        if let Some(feedback) = &self.feedback
            && let Err(f) = feedback.sync(&self.ctx, pr).await
        {
            return self.failed(ns, name, "feedback", &f);
        }
        next
    }

    fn failed(&self, ns: &str, name: &str, what: &str, f: &Failure) -> Next {
        if f.class() == Class::RecordConflict {
            // Someone wrote the record meanwhile: its watch event brings this environment back.
            tracing::debug!(namespace = ns, pr = name, error = %f, "{what}: record changed meanwhile");
            return Next::Done;
        }
        tracing::warn!(namespace = ns, pr = name, error = %f, "{what} failed; retrying");
        Next::Retry
    }

    /// Finishes the rollout of `pr` when its workloads are ready or its deadline passed;
    /// otherwise says when the deadline comes.
    async fn rollout(&self, pr: PR) -> Result<(PR, Next), Failure> {
        let Some(status) = pr.status.as_ref() else {
            return Ok((pr, Next::Done));
        };
        let Some(rollout) = status.rollout.as_ref() else {
            return Ok((pr, Next::Done));
        };
        if status.phase != Some(Phase::Applied) || rollout.state != RolloutState::Progressing {
            return Ok((pr, Next::Done));
        }
        let progress: Vec<Progress> = status
            .inventory
            .iter()
            .filter_map(|e| self.workloads.progress(e))
            .collect();
        let (ready, message) = readiness::summarize(&progress);
        let timeout = self
            .ctx
            .caches
            .app(&pr.namespace().unwrap_or_default(), &pr.spec.review_app)
            .map_or(kubetempura_common::crd::DEFAULT_READINESS_TIMEOUT, |a| {
                a.spec.readiness_timeout()
            });
        let started = DateTime::parse_from_rfc3339(&rollout.started_at)
            .map_or_else(|_| Utc::now(), |t| t.with_timezone(&Utc));
        let elapsed = (Utc::now() - started).to_std().unwrap_or_default();
        let finished = if ready {
            Some((RolloutState::Complete, message))
        } else if elapsed >= timeout {
            let after = readiness::format_duration(timeout);
            Some((RolloutState::TimedOut, format!("{message} after {after}")))
        } else {
            None
        };
        let Some((state, message)) = finished else {
            return Ok((pr, Next::At(Instant::now() + (timeout - elapsed))));
        };
        let next = Rollout {
            state,
            message,
            finished_at: Some(Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)),
            ..rollout.clone()
        };
        tracing::info!(pr = %pr.name_any(), state = ?next.state, message = %next.message, "rollout finished");
        let status = with_rollout(status, next);
        let pr = write_pr_status(&self.ctx, &pr, status).await?;
        Ok((pr, Next::Done))
    }
}
