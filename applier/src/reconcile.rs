//! From one event to the cluster: the `PR` object, the rendered objects, pruning, deletion on
//! close, status, Events.
//!
//! Kubernetes API requests for an open pull request: one server-side apply of the `PR` object,
//! one per rendered object, one status apply and one Event (plus a delete per pruned object).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use kubetempura_common::crd::{
    Condition, InventoryEntry, PR, PRSpec, PRStatus, Phase, ReviewApp, ReviewAppStatus,
};
use kubetempura_common::event::{EVENT_SCHEMA_VERSION, PrAction, PrEvent, Repository};
use kubetempura_common::naming::{RepoKey, pr_object_name};
use kubetempura_common::policy::{Decision, ObjectPolicy, Scope, decide};
use kubetempura_common::render::{RenderContext, Variables, render_resources, short_sha};
use serde_json::json;

use crate::cache::Caches;
use crate::kubeapi::{self, Discovery, Failure, classify};
use crate::metrics::Metrics;

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
        }
    }
}

type EnvLock = Arc<tokio::sync::Mutex<()>>;

/// The `PR` objects this process wrote, kept until the watch cache shows them.
struct Written {
    entries: HashMap<(String, String), (Instant, Arc<PR>)>,
    last_sweep: Instant,
}

/// How often [`Written`] drops the copies the watch cache has caught up with.
const WRITTEN_SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Longest a copy is kept even when the watch has not shown it (a broken watch recovers by
/// relisting well within this).
const WRITTEN_MAX_AGE: Duration = Duration::from_secs(300);

/// Everything reconciliation needs, built once at start-up.
pub struct Ctx {
    pub client: Client,
    pub discovery: Discovery,
    pub caches: Caches,
    pub policy: ObjectPolicy,
    pub field_manager: String,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The `PR` objects this process wrote last (fresher than the watch cache).
    written: Mutex<Written>,
    /// One lock per environment, so a re-render and an event never interleave.
    locks: Mutex<HashMap<(String, String), EnvLock>>,
}

impl Ctx {
    pub fn new(
        client: Client,
        caches: Caches,
        policy: ObjectPolicy,
        field_manager: String,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: field_manager.clone(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            discovery: Discovery::new(client.clone()),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            caches,
            policy,
            field_manager,
            metrics,
            written: Mutex::new(Written {
                entries: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            locks: Mutex::default(),
        }
    }

    /// The lock of one environment (`PR` object): events, re-renders and tombstone collection
    /// of the same environment never interleave.
    pub fn lock_for(&self, ns: &str, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks
            .entry((ns.to_owned(), name.to_owned()))
            .or_default()
            .clone()
    }

    /// The freshest known `PR` object: this process's last write or the watch cache, whichever
    /// recorded the later event.
    pub fn current_pr(&self, ns: &str, name: &str) -> Option<Arc<PR>> {
        let written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entries
            .get(&(ns.to_owned(), name.to_owned()))
            .map(|(_, pr)| pr.clone());
        let cached = self.caches.pr(ns, name);
        match (written, cached) {
            (Some(w), Some(c)) => Some(if event_time(&c) > event_time(&w) {
                c
            } else {
                w
            }),
            (w, c) => w.or(c),
        }
    }

    fn remember(&self, mut pr: PR) {
        pr.managed_fields_mut().clear();
        let key = (pr.namespace().unwrap_or_default(), pr.name_any());
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        written.entries.insert(key, (Instant::now(), Arc::new(pr)));
        // Our copy only matters until the watch cache has caught up with the write; dropping
        // it then keeps one copy of each environment in memory, not two.
        if written.last_sweep.elapsed() >= WRITTEN_SWEEP_INTERVAL {
            written.last_sweep = Instant::now();
            let caches = &self.caches;
            written.entries.retain(|(ns, name), (at, pr)| {
                let caught_up = caches
                    .pr(ns, name)
                    .is_some_and(|c| c.resource_version() == pr.resource_version());
                !caught_up && at.elapsed() < WRITTEN_MAX_AGE
            });
        }
    }

    /// Forgets an environment this process wrote (after its tombstone was collected).
    pub fn forget(&self, ns: &str, name: &str) {
        let key = (ns.to_owned(), name.to_owned());
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entries
            .remove(&key);
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key);
    }
}

fn event_time(pr: &PR) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&pr.spec.last_event_at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
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

/// Why a reconcile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A queue message.
    Event,
    /// The ReviewApp changed, or a periodic resync: re-render from the recorded `PR` spec.
    Rerender,
}

/// Reconciles one ReviewApp's environment for one event.
pub async fn reconcile(
    ctx: &Ctx,
    app: &ReviewApp,
    event: &PrEvent,
    trigger: Trigger,
) -> Result<Outcome, Failure> {
    let ns = app.namespace().unwrap_or_else(|| "default".to_owned());
    let app_name = app.name_any();
    let pr_name = pr_object_name(&app_name, event.number);
    let lock = ctx.lock_for(&ns, &pr_name);
    let _guard = lock.lock().await;
    let existing = ctx.current_pr(&ns, &pr_name);
    if let Some(pr) = &existing
        && let Some(last) = event_time(pr)
    {
        if event.updated_at < last {
            return Ok(Outcome::Stale(format!(
                "event updated_at {} is older than {} recorded on PR {pr_name}",
                event.updated_at.to_rfc3339(),
                pr.spec.last_event_at
            )));
        }
        // A closed pull request stays closed until GitHub says it is open again: a reopened
        // event, or a later event of an open pull request (the reopened one went missing).
        if pr.spec.closed
            && event.action != PrAction::Reopened
            && (event.updated_at <= last || trigger == Trigger::Rerender || !is_open(event))
        {
            if !is_finished_tombstone(pr) {
                // A close that did not finish (its deletes failed, the process died): finish it.
                return finish_close(ctx, app, (**pr).clone(), "closed").await;
            }
            return Ok(Outcome::Stale(format!(
                "PR {pr_name} is closed; only a later reopened event brings it back"
            )));
        }
    }
    if event.is_close() || !is_open(event) {
        if !event.is_close() && existing.as_ref().is_none_or(|p| p.spec.closed) {
            // Labeled, edited … after the close, with no environment to remove.
            return Ok(Outcome::Stale(format!(
                "pull request {} is closed; nothing to deploy",
                event.number
            )));
        }
        return close(ctx, app, event, &ns, &pr_name).await;
    }
    match decide(app.spec.policy.as_ref(), event) {
        Decision::Skip(reason) => {
            skip(ctx, app, event, &ns, &pr_name, existing.as_deref(), reason).await
        }
        Decision::Deploy => deploy(ctx, app, event, &ns, &pr_name, existing.as_deref()).await,
    }
}

fn pr_spec(app_name: &str, event: &PrEvent, closed: bool) -> PRSpec {
    PRSpec {
        review_app: app_name.to_owned(),
        repository: event.repository.html_url.clone(),
        number: event.number,
        head_sha: event.head_sha.clone(),
        head_branch: event.head_ref.clone(),
        base_branch: event.base_ref.clone(),
        author: Some(event.author.clone()),
        title: Some(event.title.clone()),
        labels: event.labels.clone(),
        draft: event.draft,
        fork: event.fork,
        last_event_at: event
            .updated_at
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        last_delivery_id: Some(event.delivery_id.clone()),
        closed,
    }
}

/// Server-side-applies the `PR` object's spec (owned by its ReviewApp); returns it with its uid.
async fn apply_pr(
    ctx: &Ctx,
    app: &ReviewApp,
    ns: &str,
    name: &str,
    spec: PRSpec,
) -> Result<PR, Failure> {
    let mut owner = app.controller_owner_ref(&()).ok_or_else(|| {
        Failure::Transient(format!("ReviewApp {} has no uid yet", app.name_any()))
    })?;
    owner.block_owner_deletion = Some(true);
    let body = json!({
        "apiVersion": PR::api_version(&()),
        "kind": PR::kind(&()),
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": kubetempura_common::crd::object_labels(&app.name_any(), spec.number),
            "annotations": kubetempura_common::crd::object_annotations(&app.name_any()),
            "ownerReferences": [owner],
        },
        "spec": spec,
    });
    let api: Api<PR> = Api::namespaced(ctx.client.clone(), ns);
    api.patch(
        name,
        &PatchParams::apply(&ctx.field_manager).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| classify(&format!("apply PR {name}"), &e))
}

fn condition(
    previous: Option<&PRStatus>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last_transition_time = previous
        .and_then(|p| {
            p.conditions
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
        })
        .map_or_else(now, |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time,
        observed_generation: generation,
    }
}

/// Server-side-applies the `PR` status.
async fn apply_status(ctx: &Ctx, mut pr: PR, status: PRStatus) -> Result<PR, Failure> {
    let name = pr.name_any();
    let ns = pr.namespace().unwrap_or_default();
    let body = json!({
        "apiVersion": PR::api_version(&()),
        "kind": PR::kind(&()),
        "metadata": {"name": name, "namespace": ns},
        "status": status,
    });
    let api: Api<PR> = Api::namespaced(ctx.client.clone(), &ns);
    let out = api
        .patch_status(
            &name,
            &PatchParams::apply(&ctx.field_manager).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| classify(&format!("apply status of PR {name}"), &e))?;
    pr = out;
    ctx.remember(pr.clone());
    Ok(pr)
}

async fn publish(ctx: &Ctx, pr: &PR, type_: EventType, reason: &str, action: &str, note: String) {
    let ev = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate(note, 1000)),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &pr.object_ref(&())).await {
        // Events are best effort: the status already records the outcome.
        tracing::warn!(pr = %pr.name_any(), error = %e, "could not publish Kubernetes Event");
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn owner_ref(pr: &PR) -> Result<OwnerReference, Failure> {
    let mut owner = pr
        .controller_owner_ref(&())
        .ok_or_else(|| Failure::Transient(format!("PR {} has no uid", pr.name_any())))?;
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}

async fn deploy(
    ctx: &Ctx,
    app: &ReviewApp,
    event: &PrEvent,
    ns: &str,
    pr_name: &str,
    existing: Option<&PR>,
) -> Result<Outcome, Failure> {
    let app_name = app.name_any();
    let generation = app.metadata.generation;
    let previous_status = existing.and_then(|p| p.status.as_ref());
    // Resolve every kind first: discovery gives the scope the renderer needs.
    let mut scopes: HashMap<(String, String), Scope> = HashMap::new();
    for t in &app.spec.resources {
        if let (Some(av), Some(kind)) = (
            t.get("apiVersion").and_then(|v| v.as_str()),
            t.get("kind").and_then(|v| v.as_str()),
        ) && let Some((_, scope)) = ctx.discovery.resolve(av, kind).await?
        {
            scopes.insert((av.to_owned(), kind.to_owned()), scope);
        }
    }
    let pr = apply_pr(ctx, app, ns, pr_name, pr_spec(&app_name, event, false)).await?;
    let owner = owner_ref(&pr)?;
    let vars = Variables::from_event(event, &app_name, ns);
    let scope_of = |av: &str, kind: &str| scopes.get(&(av.to_owned(), kind.to_owned())).copied();
    let result = render_resources(
        &app.spec.resources,
        &vars,
        &RenderContext {
            policy: &ctx.policy,
            scope_of: &scope_of,
            owner: Some(&owner),
        },
    );
    let rendered = match result {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("ReviewApp {app_name}: {e}");
            update_app_status(ctx, app, Err(&msg), &[]).await?;
            // Keep what exists so a later successful render can prune it.
            let inventory = previous_status
                .map(|s| s.inventory.clone())
                .unwrap_or_default();
            return record_failure(
                ctx,
                pr,
                previous_status,
                generation,
                ("InvalidTemplate", "Render"),
                msg,
                inventory,
            )
            .await;
        }
    };
    let started = std::time::Instant::now();
    let results = futures::future::join_all(
        rendered
            .objects
            .iter()
            .map(|o| kubeapi::apply(&ctx.discovery, &ctx.field_manager, o)),
    )
    .await;
    ctx.metrics.observe_apply(started.elapsed());
    let mut transient = None;
    let mut permanent = Vec::new();
    // Only what the API server accepted is recorded: an object it refused does not exist (or is
    // not ours to manage), and a close must not fail on deleting it.
    let mut new_inventory: Vec<InventoryEntry> = Vec::new();
    for (r, o) in results.into_iter().zip(&rendered.objects) {
        match r {
            Ok(()) => new_inventory.push(o.inventory_entry()),
            Err(f @ Failure::Transient(_)) => transient = Some(f),
            Err(Failure::Permanent(m)) => permanent.push(m),
        }
    }
    if let Some(f) = transient {
        return Err(f);
    }
    if !permanent.is_empty() {
        let msg = permanent.join("; ");
        // What was there before, unless this render addresses the same object (perhaps by
        // another version), then what this render produced.
        let mut inventory: Vec<InventoryEntry> = previous_status
            .map(|s| s.inventory.clone())
            .unwrap_or_default();
        inventory.retain(|old| !new_inventory.iter().any(|n| n.identity() == old.identity()));
        inventory.extend(new_inventory);
        return record_failure(
            ctx,
            pr,
            previous_status,
            generation,
            ("ApplyFailed", "Apply"),
            msg,
            inventory,
        )
        .await;
    }
    ctx.metrics.objects_applied(rendered.objects.len());
    // Prune what the templates no longer produce.
    // By identity (group, kind, namespace, name): a template moved to another version of its
    // kind addresses the object just applied, which must not be pruned.
    let keep: BTreeSet<_> = new_inventory.iter().map(InventoryEntry::identity).collect();
    let mut pruned = 0;
    for old in previous_status
        .map(|s| s.inventory.as_slice())
        .unwrap_or_default()
    {
        if !keep.contains(&old.identity())
            && kubeapi::delete(
                &ctx.discovery,
                &old.api_version,
                &old.kind,
                old.namespace.as_deref(),
                &old.name,
            )
            .await?
        {
            pruned += 1;
        }
    }
    ctx.metrics.objects_deleted(pruned);
    let msg = format!(
        "{} object(s) applied at {}",
        rendered.objects.len(),
        short_sha(&event.head_sha)
    );
    let status = PRStatus {
        phase: Some(Phase::Applied),
        commit_short: Some(short_sha(&event.head_sha).to_owned()),
        applied_commit: Some(event.head_sha.clone()),
        applied_generation: generation,
        inventory: new_inventory,
        message: Some(msg.clone()),
        closed_at: None,
        conditions: vec![condition(
            previous_status,
            "Ready",
            true,
            "Applied",
            &msg,
            generation,
        )],
    };
    let pr = apply_status(ctx, pr, status).await?;
    update_app_status(ctx, app, Ok(()), &rendered.warnings).await?;
    publish(ctx, &pr, EventType::Normal, "Applied", "Apply", msg).await;
    Ok(Outcome::Applied {
        applied: rendered.objects.len(),
        pruned,
    })
}

/// Records a permanent failure on the `PR` status — keeping the previous commit, generation and
/// the given inventory, so a later success can prune what exists — and as a Warning Event.
async fn record_failure(
    ctx: &Ctx,
    pr: PR,
    previous: Option<&PRStatus>,
    generation: Option<i64>,
    (reason, action): (&str, &str),
    msg: String,
    inventory: Vec<InventoryEntry>,
) -> Result<Outcome, Failure> {
    let status = PRStatus {
        phase: Some(Phase::Failed),
        message: Some(msg.clone()),
        conditions: vec![condition(
            previous, "Ready", false, reason, &msg, generation,
        )],
        inventory,
        applied_commit: previous.and_then(|s| s.applied_commit.clone()),
        commit_short: previous.and_then(|s| s.commit_short.clone()),
        applied_generation: previous.and_then(|s| s.applied_generation),
        closed_at: None,
    };
    let pr = apply_status(ctx, pr, status).await?;
    publish(ctx, &pr, EventType::Warning, reason, action, msg.clone()).await;
    Ok(Outcome::Failed(msg))
}

/// Deletes every object of the inventory, concurrently. A transient failure is returned (the
/// message is retried); what the API server refuses for good (a 403 …) is left alone and
/// reported in the returned list, so the close still completes.
async fn delete_inventory(ctx: &Ctx, existing: Option<&PR>) -> Result<Deleted, Failure> {
    let inventory = existing
        .and_then(|p| p.status.as_ref())
        .map(|s| s.inventory.as_slice())
        .unwrap_or_default();
    // Concurrently: a close costs one round trip, not one per object.
    let results = futures::future::join_all(inventory.iter().map(|e| {
        kubeapi::delete(
            &ctx.discovery,
            &e.api_version,
            &e.kind,
            e.namespace.as_deref(),
            &e.name,
        )
    }))
    .await;
    let mut done = Deleted::default();
    for r in results {
        match r {
            Ok(true) => done.count += 1,
            Ok(false) => {}
            Err(f @ Failure::Transient(_)) => return Err(f),
            Err(Failure::Permanent(m)) => done.refused.push(m),
        }
    }
    ctx.metrics.objects_deleted(done.count);
    Ok(done)
}

/// What [`delete_inventory`] did.
#[derive(Debug, Default)]
struct Deleted {
    /// Objects deleted.
    count: usize,
    /// Objects the API server refused to delete, with its reason.
    refused: Vec<String>,
}

impl Deleted {
    /// For humans: "2 object(s) deleted", plus what could not be.
    fn describe(&self) -> String {
        if self.refused.is_empty() {
            format!("{} object(s) deleted", self.count)
        } else {
            format!(
                "{} object(s) deleted; not deleted: {}",
                self.count,
                self.refused.join("; ")
            )
        }
    }
}

/// False only when GitHub reported the pull request as closed (an event without a state, as
/// from an older producer, counts as open).
fn is_open(event: &PrEvent) -> bool {
    event.state != "closed"
}

/// True when a closed `PR` object's close completed: phase Closed, nothing left in the inventory.
pub fn is_finished_tombstone(pr: &PR) -> bool {
    pr.status
        .as_ref()
        .is_some_and(|s| s.phase == Some(Phase::Closed) && s.inventory.is_empty())
}

/// Closes an environment. The tombstone (`spec.closed`) is written first, so that if deleting
/// fails or the process dies half-way, the `PR` object records a close still to be finished
/// (its inventory lists what is left) and late events cannot resurrect it meanwhile; the
/// redelivered message or the resync finishes it.
async fn close(
    ctx: &Ctx,
    app: &ReviewApp,
    event: &PrEvent,
    ns: &str,
    pr_name: &str,
) -> Result<Outcome, Failure> {
    let pr = apply_pr(ctx, app, ns, pr_name, pr_spec(&app.name_any(), event, true)).await?;
    ctx.remember(pr.clone());
    let how = if event.merged { "merged" } else { "closed" };
    finish_close(ctx, app, pr, how).await
}

/// Deletes what a tombstone's inventory still lists and records the close on its status.
async fn finish_close(ctx: &Ctx, app: &ReviewApp, pr: PR, how: &str) -> Result<Outcome, Failure> {
    let deleted = delete_inventory(ctx, Some(&pr)).await?;
    let msg = format!("pull request {how}; {}", deleted.describe());
    let previous_status = pr.status.clone();
    let previous_status = previous_status.as_ref();
    let status = PRStatus {
        phase: Some(Phase::Closed),
        message: Some(msg.clone()),
        closed_at: Some(now()),
        applied_commit: previous_status.and_then(|s| s.applied_commit.clone()),
        commit_short: previous_status.and_then(|s| s.commit_short.clone()),
        applied_generation: previous_status.and_then(|s| s.applied_generation),
        inventory: Vec::new(),
        conditions: vec![condition(
            previous_status,
            "Ready",
            false,
            "Closed",
            &msg,
            app.metadata.generation,
        )],
    };
    let pr = apply_status(ctx, pr, status).await?;
    let kind = if deleted.refused.is_empty() {
        EventType::Normal
    } else {
        EventType::Warning
    };
    publish(ctx, &pr, kind, "Closed", "Delete", msg).await;
    Ok(Outcome::Closed {
        deleted: deleted.count,
    })
}

async fn skip(
    ctx: &Ctx,
    app: &ReviewApp,
    event: &PrEvent,
    ns: &str,
    pr_name: &str,
    existing: Option<&PR>,
    reason: String,
) -> Result<Outcome, Failure> {
    // A pull request that no longer passes the policy (a label removed …) loses its objects.
    delete_inventory(ctx, existing).await?;
    let pr = apply_pr(
        ctx,
        app,
        ns,
        pr_name,
        pr_spec(&app.name_any(), event, false),
    )
    .await?;
    let previous_status = existing.and_then(|p| p.status.as_ref());
    let status = PRStatus {
        phase: Some(Phase::Skipped),
        message: Some(reason.clone()),
        conditions: vec![condition(
            previous_status,
            "Ready",
            false,
            "SkippedByPolicy",
            &reason,
            app.metadata.generation,
        )],
        ..PRStatus::default()
    };
    let pr = apply_status(ctx, pr, status).await?;
    publish(
        ctx,
        &pr,
        EventType::Normal,
        "Skipped",
        "Policy",
        reason.clone(),
    )
    .await;
    Ok(Outcome::Skipped(reason))
}

/// Records the template outcome on the ReviewApp status, only when it changes. A change of the
/// active count alone is left to [`refresh_app_counts`] (the periodic resync), so an event costs
/// no extra request for it.
async fn update_app_status(
    ctx: &Ctx,
    app: &ReviewApp,
    result: Result<(), &str>,
    warnings: &[String],
) -> Result<(), Failure> {
    write_app_status(ctx, app, result, warnings, false).await
}

/// Brings every ReviewApp's `activePRs` up to date (run with the periodic resync).
pub async fn refresh_app_counts(ctx: &Ctx) {
    for app in ctx.caches.all_apps() {
        let status = app.status.clone().unwrap_or_default();
        let valid = status
            .conditions
            .iter()
            .find(|c| c.type_ == "TemplateValid")
            .map(|c| (c.status == "True", c.message.clone()));
        let result = match &valid {
            Some((false, message)) => Err(message.as_str()),
            _ => Ok(()),
        };
        if let Err(e) = write_app_status(ctx, &app, result, &status.warnings, true).await {
            tracing::warn!(reviewapp = %app.name_any(), error = %e, "updating the active count failed; the next resync retries");
        }
    }
}

async fn write_app_status(
    ctx: &Ctx,
    app: &ReviewApp,
    result: Result<(), &str>,
    warnings: &[String],
    count_changes: bool,
) -> Result<(), Failure> {
    let ns = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let active = ctx
        .caches
        .all_prs()
        .iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(ns.as_str())
                && p.spec.review_app == name
                && !p.spec.closed
        })
        .count();
    let previous = app.status.clone().unwrap_or_default();
    let (valid, reason, message) = match result {
        Ok(()) => (true, "Rendered", "templates render".to_owned()),
        Err(m) => (false, "InvalidTemplate", m.to_owned()),
    };
    let status_str = if valid { "True" } else { "False" };
    let last_transition_time = previous
        .conditions
        .iter()
        .find(|c| c.type_ == "TemplateValid" && c.status == status_str)
        .map_or_else(now, |c| c.last_transition_time.clone());
    let wanted = ReviewAppStatus {
        observed_generation: app.metadata.generation,
        active_prs: Some(i64::try_from(active).unwrap_or(i64::MAX)),
        warnings: warnings.to_vec(),
        conditions: vec![Condition {
            type_: "TemplateValid".to_owned(),
            status: status_str.to_owned(),
            reason: reason.to_owned(),
            message,
            last_transition_time,
            observed_generation: app.metadata.generation,
        }],
    };
    let same_but_count = ReviewAppStatus {
        active_prs: previous.active_prs,
        ..wanted.clone()
    } == previous;
    if wanted == previous || (!count_changes && same_but_count && previous.active_prs.is_some()) {
        return Ok(());
    }
    let body = json!({
        "apiVersion": ReviewApp::api_version(&()),
        "kind": ReviewApp::kind(&()),
        "metadata": {"name": name, "namespace": ns},
        "status": wanted,
    });
    let api: Api<ReviewApp> = Api::namespaced(ctx.client.clone(), &ns);
    match api
        .patch_status(
            &name,
            &PatchParams::apply(&ctx.field_manager).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if kubeapi::is_not_found(&e) => Ok(()),
        Err(e) => Err(classify(&format!("apply status of ReviewApp {name}"), &e)),
    }
}

/// Rebuilds the event an environment was last rendered from, for a re-render without a webhook.
pub fn event_from_pr(pr: &PR) -> Option<PrEvent> {
    let updated_at = event_time(pr)?;
    let path = pr.spec.repository.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let mut parts = path.rsplit('/');
    let name = parts.next()?.to_owned();
    let owner = parts.next()?.to_owned();
    Some(PrEvent {
        version: EVENT_SCHEMA_VERSION,
        delivery_id: format!("rerender-{}", pr.name_any()),
        event: "pull_request".to_owned(),
        action: if pr.spec.closed {
            PrAction::Closed
        } else {
            PrAction::Synchronize
        },
        repository: Repository {
            full_name: format!("{owner}/{name}"),
            owner,
            name,
            html_url: pr.spec.repository.clone(),
        },
        number: pr.spec.number,
        title: pr.spec.title.clone().unwrap_or_default(),
        head_sha: pr.spec.head_sha.clone(),
        head_ref: pr.spec.head_branch.clone(),
        head_repository: None,
        base_ref: pr.spec.base_branch.clone(),
        fork: pr.spec.fork,
        draft: pr.spec.draft,
        state: if pr.spec.closed { "closed" } else { "open" }.to_owned(),
        merged: false,
        labels: pr.spec.labels.clone(),
        author: pr.spec.author.clone().unwrap_or_default(),
        author_association: String::new(),
        sender: None,
        updated_at,
        received_at: Utc::now(),
    })
}
