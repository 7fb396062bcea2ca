//! One environment — a ReviewApp for one pull request — and what an event does to it: deploy,
//! skip, close. Its `PR` record is written conditionally (see [`Environment::write_record`]).

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Resource, ResourceExt};
use kubetempura_common::check::Gate;
use kubetempura_common::crd::{
    GateStatus, InventoryEntry, Origin, PR, PRStatus, Phase, ReviewApp, environment_id,
    has_cluster_scoped_finalizer, object_annotations, object_labels, parse_pr,
};
use kubetempura_common::event::{PrAction, PrEvent};
use kubetempura_common::naming::{RepoKey, pr_object_name};
use kubetempura_common::policy::{Decision, Scope, decide};
use kubetempura_common::render::{
    RenderContext, Variables, render_environment_url, render_resources, render_url, short_sha,
};
use serde_json::json;

use super::finalizer;
use super::lifecycle;
use super::objects::{self, Identity};
use super::record::{
    event_from_pr, event_time, is_finished_tombstone, is_open, last_push_at, pr_spec,
};
use super::status::{StatusBuilder, is_unchanged, update_app_status, write_pr_status};
use super::{Ctx, Outcome, Trigger};
use crate::cache::Stranded;
use crate::kubeapi::Failure;

/// A ReviewApp's environment for one pull request.
pub struct Environment<'a> {
    ctx: &'a Ctx,
    app: &'a ReviewApp,
    app_name: String,
    /// The namespace of the ReviewApp, its `PR` record and its objects.
    pub ns: String,
    /// The name of the `PR` record.
    pub pr_name: String,
}

impl<'a> Environment<'a> {
    pub fn new(ctx: &'a Ctx, app: &'a ReviewApp, number: u64) -> Self {
        let app_name = app.name_any();
        Self {
            ctx,
            app,
            pr_name: pr_object_name(&app_name, number),
            ns: app.namespace().unwrap_or_else(|| "default".to_owned()),
            app_name,
        }
    }

    /// What `event` means for the environment whose record is `existing`, done.
    pub async fn reconcile(
        &self,
        event: &PrEvent,
        trigger: Trigger,
        existing: Option<&PR>,
    ) -> Result<Outcome, Failure> {
        if let Some(pr) = existing
            && pr.metadata.deletion_timestamp.is_some()
        {
            return self.deleting(pr, trigger).await;
        }
        if self.app.metadata.deletion_timestamp.is_some() {
            // The ReviewApp is being deleted: its environments close, nothing is deployed.
            return match existing {
                Some(pr) if !is_finished_tombstone(pr) => {
                    self.retire(pr, "closed (its ReviewApp is being deleted)")
                        .await
                }
                _ => Ok(Outcome::Stale(format!(
                    "ReviewApp {} is being deleted",
                    self.app_name
                ))),
            };
        }
        let mut existing = existing;
        if let Some(pr) = existing
            && !self.follows(pr)
        {
            // The record is of a repository the ReviewApp no longer follows (its
            // `githubRepository` was re-pointed): that environment is retired, and a number of
            // the new repository starts afresh.
            if trigger == Trigger::Rerender || !self.follows_event(event) {
                return if is_finished_tombstone(pr) {
                    Ok(Outcome::Stale(format!(
                        "PR {} is a tombstone of {}, which the ReviewApp no longer follows",
                        self.pr_name, pr.spec.repository
                    )))
                } else {
                    self.retire(pr, &self.repointed()).await
                };
            }
            if !is_finished_tombstone(pr) {
                self.retire(pr, &self.repointed()).await?;
            }
            existing = None;
        }
        if let Some(pr) = existing
            && let Some(last) = event_time(pr)
        {
            if event.updated_at < last {
                return Ok(Outcome::Stale(format!(
                    "event updated_at {} is older than {} recorded on PR {}",
                    event.updated_at.to_rfc3339(),
                    pr.spec.last_event_at,
                    self.pr_name
                )));
            }
            // A closed pull request stays closed until GitHub says it is open again: a
            // reopened event, or a later event of an open pull request (the reopened one went
            // missing).
            if pr.spec.closed
                && event.action != PrAction::Reopened
                && (event.updated_at <= last || trigger != Trigger::Event || !is_open(event))
            {
                if !is_finished_tombstone(pr) {
                    // A close that did not finish (its deletes failed, the process died): finish it.
                    return self.finish_close(pr.clone(), "closed").await;
                }
                if trigger == Trigger::Manual {
                    // An edit of a tombstone's headCommitRef: the pull request is closed.
                    let msg = format!(
                        "PR {} is the tombstone of a closed pull request: delete it (or use another number) to create an environment by hand",
                        self.pr_name
                    );
                    self.publish(pr, EventType::Warning, "Closed", "Record", msg.clone())
                        .await;
                    return Ok(Outcome::Stale(msg));
                }
                return Ok(Outcome::Stale(format!(
                    "PR {} is closed; only a later reopened event brings it back",
                    self.pr_name
                )));
            }
        }
        if event.is_close() || !is_open(event) {
            if !event.is_close() && existing.is_none_or(|p| p.spec.closed) {
                // Labeled, edited … after the close, with no environment to remove.
                return Ok(Outcome::Stale(format!(
                    "pull request {} is closed; nothing to deploy",
                    event.number
                )));
            }
            return self.close(event, existing).await;
        }
        // A PR object made by a person is trusted like the ReviewApp itself (creating one needs
        // the same RBAC): the ReviewApp's filters are for GitHub's pull requests.
        let decision = if is_manual(trigger, existing) {
            Decision::Deploy
        } else {
            decide(self.app.spec.policy.as_ref(), event)
        };
        match decision {
            Decision::Skip(reason) => self.skip(event, existing, reason, trigger).await,
            Decision::Deploy => self.admit(event, existing, trigger).await,
        }
    }

    /// The lifecycle policies between passing the filters and deploying, in order: idle expiry
    /// (`expireAfter`), the build gate (`waitFor`), the cap (`maxActive`). Each is computed
    /// from the record and the check ledger, never from timers in memory, so a restart decides
    /// the same.
    async fn admit(
        &self,
        event: &PrEvent,
        existing: Option<&PR>,
        trigger: Trigger,
    ) -> Result<Outcome, Failure> {
        let spec = &self.app.spec;
        // An environment made by hand lives until its PR object is deleted.
        if let Some(ttl) = spec.expire_after()
            && !is_manual(trigger, existing)
        {
            let pushed_at = last_push_at(
                existing,
                event,
                trigger != Trigger::Rerender,
                spec.wake_label.as_deref(),
            );
            if lifecycle::is_expired(&pushed_at, ttl, chrono::Utc::now()) {
                return self.expire(event, existing, trigger, ttl).await;
            }
        }
        if let Some(wait_for) = spec.gate() {
            let deployed = existing
                .and_then(|p| p.status.as_ref())
                .is_some_and(|s| lifecycle::is_deployed_at(s, &event.head_sha));
            if !deployed {
                let repo = RepoKey::parse(&event.repository.html_url).ok_or_else(|| {
                    Failure::permanent(format!(
                        "{} is not a repository URL",
                        event.repository.html_url
                    ))
                })?;
                let facts = crate::ledger::facts(self.ctx, &repo, &event.head_sha).await?;
                let sha = short_sha(&event.head_sha);
                match wait_for.evaluate(&facts) {
                    Gate::Passed => {}
                    Gate::Pending(missing) => {
                        let msg = format!("waiting for {} on {sha}", missing.join(", "));
                        let gate = GateStatus {
                            commit: event.head_sha.clone(),
                            pending: missing,
                            failed: None,
                            url: None,
                        };
                        return self
                            .hold(event, existing, trigger, (Phase::Waiting, gate), msg)
                            .await;
                    }
                    Gate::Failed { check } => {
                        let how = check.conclusion.as_deref().unwrap_or("failure");
                        let mut msg = format!("{} failed ({how}) on {sha}", check.describe());
                        if let Some(url) = &check.url {
                            msg = format!("{msg}: {url}");
                        }
                        let gate = GateStatus {
                            commit: event.head_sha.clone(),
                            pending: Vec::new(),
                            failed: Some(check.describe()),
                            url: check.url.clone(),
                        };
                        return self
                            .hold(event, existing, trigger, (Phase::Blocked, gate), msg)
                            .await;
                    }
                }
            }
        }
        let Some(max) = spec.max_active else {
            return self.deploy(event, existing, trigger).await;
        };
        if existing
            .and_then(|p| p.status.as_ref())
            .is_some_and(lifecycle::occupies_slot)
        {
            return self.deploy(event, existing, trigger).await;
        }
        // Deciding for a slot and taking it is one step within this process: environments of
        // one capped ReviewApp are admitted one at a time.
        let lock = self
            .ctx
            .lock_for(&self.ns, &format!("reviewapp:{}", self.app_name));
        let _guard = lock.lock().await;
        let others: Vec<_> = lifecycle::environments(self.ctx, self.app)
            .into_iter()
            .filter(|p| p.name_any() != self.pr_name)
            .collect();
        let slot = lifecycle::slot(max, event.number, others.iter().map(AsRef::as_ref));
        match slot {
            Ok(()) => self.deploy(event, existing, trigger).await,
            Err(position) => self.queue(event, existing, trigger, position, max).await,
        }
    }

    /// Keeps the environment on what it runs while its head commit waits at the build gate.
    async fn hold(
        &self,
        event: &PrEvent,
        existing: Option<&PR>,
        trigger: Trigger,
        (phase, gate): (Phase, GateStatus),
        msg: String,
    ) -> Result<Outcome, Failure> {
        let pr = self.write_record(event, false, existing, trigger).await?;
        let previous = existing.and_then(|p| p.status.as_ref());
        let unchanged =
            previous.is_some_and(|s| s.phase == Some(phase) && s.gate.as_ref() == Some(&gate));
        let status = self.statuses(previous).held(phase, &msg, gate);
        if is_unchanged(previous, &status) {
            return Ok(Outcome::Gated(msg));
        }
        let pr = self.write_status(pr, status).await?;
        if !unchanged {
            let (kind, reason) = match phase {
                Phase::Blocked => (EventType::Warning, "Blocked"),
                _ => (EventType::Normal, "Waiting"),
            };
            self.publish(&pr, kind, reason, "Gate", msg.clone()).await;
        }
        Ok(Outcome::Gated(msg))
    }

    /// Queues the environment behind the ReviewApp's `maxActive` deployed ones.
    async fn queue(
        &self,
        event: &PrEvent,
        existing: Option<&PR>,
        trigger: Trigger,
        position: u32,
        max: u32,
    ) -> Result<Outcome, Failure> {
        let pr = self.write_record(event, false, existing, trigger).await?;
        let previous = existing.and_then(|p| p.status.as_ref());
        let msg = format!(
            "queued: {} ahead ({max} of maxActive {max} deployed)",
            position - 1
        );
        let unchanged = previous
            .is_some_and(|s| s.phase == Some(Phase::Queued) && s.queue_position == Some(position));
        let inventory = previous.map(|s| s.inventory.clone()).unwrap_or_default();
        let status = self.statuses(previous).queued(&msg, position, inventory);
        if is_unchanged(previous, &status) {
            return Ok(Outcome::Queued(msg));
        }
        let pr = self.write_status(pr, status).await?;
        if !unchanged {
            self.publish(&pr, EventType::Normal, "Queued", "Queue", msg.clone())
                .await;
        }
        Ok(Outcome::Queued(msg))
    }

    /// Removes the environment's objects after `ttl` without a push; the record stays.
    async fn expire(
        &self,
        event: &PrEvent,
        existing: Option<&PR>,
        trigger: Trigger,
        ttl: std::time::Duration,
    ) -> Result<Outcome, Failure> {
        let pr = self.write_record(event, false, existing, trigger).await?;
        let previous = existing.and_then(|p| p.status.as_ref());
        let inventory = previous.map(|s| s.inventory.as_slice()).unwrap_or_default();
        let deleted =
            objects::delete_all(&self.ctx.discovery, &self.identity(&pr), inventory).await?;
        self.ctx.metrics.objects_deleted(deleted.count);
        let wake = match &self.app.spec.wake_label {
            Some(label) => format!("push or add `{label}` to wake"),
            None => "push to wake".to_owned(),
        };
        let mut msg = format!(
            "expired after {} without a push: {wake}",
            lifecycle::human_duration(ttl)
        );
        if !deleted.refused.is_empty() {
            msg = format!("{msg}; not deleted: {}", deleted.refused.join("; "));
        }
        let was_expired = previous.is_some_and(|s| s.phase == Some(Phase::Expired));
        let status = self.statuses(previous).expired(&msg);
        if is_unchanged(previous, &status) {
            return Ok(Outcome::Expired(msg));
        }
        let pr = self.write_status(pr, status).await?;
        if !was_expired {
            self.publish(&pr, EventType::Normal, "Expired", "Delete", msg.clone())
                .await;
        }
        Ok(Outcome::Expired(msg))
    }

    /// True when `pr` records a pull request of the repository the ReviewApp follows now.
    fn follows(&self, pr: &PR) -> bool {
        // A record that names no repository (made by hand, or by the original KubeTempura)
        // belongs to whatever its ReviewApp follows.
        pr.spec.repository.is_empty()
            || RepoKey::parse(&pr.spec.repository)
                == RepoKey::parse(&self.app.spec.github_repository)
    }

    fn follows_event(&self, event: &PrEvent) -> bool {
        RepoKey::parse(&event.repository.html_url)
            == RepoKey::parse(&self.app.spec.github_repository)
    }

    fn repointed(&self) -> String {
        format!(
            "retired (the ReviewApp now follows {})",
            self.app.spec.github_repository
        )
    }

    /// Closes an environment without an event of its pull request (its ReviewApp follows
    /// another repository, or is being deleted); `how` says why.
    async fn retire(&self, pr: &PR, how: &str) -> Result<Outcome, Failure> {
        let Some(mut event) = event_from_pr(pr) else {
            return Err(Failure::permanent(format!(
                "PR {} records no event time; it cannot be retired",
                self.pr_name
            )));
        };
        event.action = PrAction::Closed;
        event.state = "closed".to_owned();
        let tombstone = self
            .write_record(&event, true, Some(pr), Trigger::Rerender)
            .await?;
        self.finish_close(tombstone, how).await
    }

    /// The record as the API server has it now.
    /// One the applier cannot read (see [`parse_pr`]) is a permanent failure: retrying cannot
    /// help until someone fixes it, which the PR watch notices.
    pub async fn read_record(&self) -> Result<Option<PR>, Failure> {
        let resource = ApiResource::erase::<PR>(&());
        let obj =
            Api::<DynamicObject>::namespaced_with(self.ctx.client.clone(), &self.ns, &resource)
                .get_opt(&self.pr_name)
                .await
                .map_err(|e| Failure::from_kube(&format!("get PR {}", self.pr_name), e))?;
        obj.map(parse_pr)
            .transpose()
            .map_err(|e| Failure::permanent(e.to_string()))
    }

    /// Server-side-applies the record's spec for `event` (owned by the ReviewApp). The write is
    /// conditional on the record being still `existing` (its resourceVersion): the stale check
    /// made against `existing` and this write are one atomic step, and a writer that lost the
    /// race gets a [`crate::kubeapi::Class::RecordConflict`] and decides again.
    async fn write_record(
        &self,
        event: &PrEvent,
        closed: bool,
        existing: Option<&PR>,
        trigger: Trigger,
    ) -> Result<PR, Failure> {
        let mut owner = self.app.controller_owner_ref(&()).ok_or_else(|| {
            Failure::transient(format!("ReviewApp {} has no uid yet", self.app_name))
        })?;
        owner.block_owner_deletion = Some(true);
        let pushed_at = last_push_at(
            existing,
            event,
            trigger != Trigger::Rerender,
            self.app.spec.wake_label.as_deref(),
        );
        let origin = if is_manual(trigger, existing) {
            Origin::Manual
        } else {
            Origin::Webhook
        };
        let spec = pr_spec(&self.app_name, event, closed, pushed_at, origin);
        let mut body = json!({
            "apiVersion": PR::api_version(&()),
            "kind": PR::kind(&()),
            "metadata": {
                "name": self.pr_name,
                "namespace": self.ns,
                "labels": object_labels(&self.app_name, spec.number),
                "annotations": object_annotations(&self.app_name),
            },
            "spec": spec,
        });
        // A live environment is owned by its ReviewApp (deleting the ReviewApp collects it); a
        // tombstone is owned by no one, so it outlives a deleted ReviewApp and still protects
        // one re-created under the same name against late events, until tombstone collection
        // (an owner reference another manager shares is removed after the apply).
        if !closed {
            body["metadata"]["ownerReferences"] = json!([owner]);
        }
        if let Some(rv) = existing.and_then(ResourceExt::resource_version) {
            body["metadata"]["resourceVersion"] = rv.into();
        }
        let pr = Api::<PR>::namespaced(self.ctx.client.clone(), &self.ns)
            .patch(
                &self.pr_name,
                &PatchParams::apply(&self.ctx.field_manager).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|e| {
                Failure::from_kube(&format!("apply PR {}", self.pr_name), e).on_record()
            })?;
        self.ctx.remember(pr.clone());
        if closed {
            return self.orphan_tombstone(pr).await;
        }
        Ok(pr)
    }

    /// Removes the ReviewApp's owner reference from a tombstone when the closing apply left it:
    /// another field manager shares it (the original KubeTempura's `manager`, or a person's
    /// kubectl, created the object with it), and server-side apply only gives up our share.
    /// Conditional on the tombstone being still `pr`, like every write of the record.
    async fn orphan_tombstone(&self, pr: PR) -> Result<PR, Failure> {
        let app_uid = self.app.uid();
        let refs = pr.owner_references();
        if !refs.iter().any(|r| Some(&r.uid) == app_uid.as_ref()) {
            return Ok(pr);
        }
        let kept: Vec<_> = refs
            .iter()
            .filter(|r| Some(&r.uid) != app_uid.as_ref())
            .cloned()
            .collect();
        // A merge patch naming the resourceVersion is refused (409) if the record changed.
        let patch = json!({
            "metadata": {"resourceVersion": pr.resource_version(), "ownerReferences": kept},
        });
        let pr = Api::<PR>::namespaced(self.ctx.client.clone(), &self.ns)
            .patch(
                &self.pr_name,
                &PatchParams {
                    field_manager: Some(self.ctx.field_manager.clone()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| {
                Failure::from_kube(&format!("orphan tombstone PR {}", self.pr_name), e).on_record()
            })?;
        self.ctx.remember(pr.clone());
        Ok(pr)
    }

    /// Server-side-applies the record's status, conditional on the record being still `pr`.
    async fn write_status(&self, pr: PR, status: PRStatus) -> Result<PR, Failure> {
        write_pr_status(self.ctx, &pr, status).await
    }

    /// The environment's URL and log URL, rendered from the ReviewApp's fields.
    fn render_urls(&self, vars: &Variables) -> Result<(Option<String>, Option<String>), String> {
        let spec = &self.app.spec;
        let url = spec
            .environment_url
            .as_deref()
            .map(|t| render_environment_url(t, vars))
            .transpose()?;
        let log_url = spec
            .log_url
            .as_deref()
            .map(|t| render_url("logURL", t, vars))
            .transpose()?;
        Ok((url, log_url))
    }

    /// Who owns this environment's objects.
    fn identity(&self, pr: &PR) -> Identity {
        Identity {
            environment: environment_id(&self.ns, &self.pr_name),
            pr_uid: pr.uid().unwrap_or_default(),
        }
    }

    fn statuses<'s>(&self, previous: Option<&'s PRStatus>) -> StatusBuilder<'s> {
        StatusBuilder {
            previous,
            generation: self.app.metadata.generation,
        }
    }

    async fn publish(&self, pr: &PR, type_: EventType, reason: &str, action: &str, note: String) {
        let ev = KubeEvent {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(note, 1000)),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.ctx.recorder.publish(&ev, &pr.object_ref(&())).await {
            // Events are best effort: the status already records the outcome.
            tracing::warn!(pr = %pr.name_any(), error = %e, "could not publish Kubernetes Event");
        }
    }

    /// Records a permanent failure on the `PR` status and as a Warning Event.
    async fn record_failure(
        &self,
        pr: PR,
        status: PRStatus,
        (reason, action): (&str, &str),
        msg: String,
    ) -> Result<Outcome, Failure> {
        let pr = self.write_status(pr, status).await?;
        self.publish(&pr, EventType::Warning, reason, action, msg.clone())
            .await;
        Ok(Outcome::Failed(msg))
    }

    /// Renders the templates for `event` and applies what they produce; prunes what they no
    /// longer produce.
    async fn deploy(
        &self,
        event: &PrEvent,
        existing: Option<&PR>,
        trigger: Trigger,
    ) -> Result<Outcome, Failure> {
        let ctx = self.ctx;
        let previous = existing.and_then(|p| p.status.as_ref());
        let statuses = self.statuses(previous);
        let previous_inventory = previous.map(|s| s.inventory.as_slice()).unwrap_or_default();
        // Resolve every kind first: discovery gives the scope the renderer needs.
        let mut scopes: HashMap<(String, String), Scope> = HashMap::new();
        for t in &self.app.spec.resources {
            if let (Some(av), Some(kind)) = (
                t.get("apiVersion").and_then(|v| v.as_str()),
                t.get("kind").and_then(|v| v.as_str()),
            ) && let Some((_, scope)) = ctx.discovery.resolve(av, kind).await?
            {
                scopes.insert((av.to_owned(), kind.to_owned()), scope);
            }
        }
        let mut pr = self.write_record(event, false, existing, trigger).await?;
        let owner = owner_ref(&pr)?;
        let vars = Variables::from_event(event, &self.app_name, &self.ns);
        let scope_of =
            |av: &str, kind: &str| scopes.get(&(av.to_owned(), kind.to_owned())).copied();
        let result = render_resources(
            &self.app.spec.resources,
            &vars,
            &RenderContext {
                policy: &ctx.policy,
                scope_of: &scope_of,
                owner: Some(&owner),
                // The record just written: a person's latest edit of `envVars` counts.
                env_vars: &pr.spec.env_vars,
            },
        );
        let rendered = match result {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("ReviewApp {}: {e}", self.app_name);
                update_app_status(ctx, self.app, Err(&msg), &[]).await?;
                // Keep what exists so a later successful render can prune it.
                let status = statuses.failed("InvalidTemplate", &msg, previous_inventory.to_vec());
                return self
                    .record_failure(pr, status, ("InvalidTemplate", "Render"), msg)
                    .await;
            }
        };
        if rendered.objects.iter().any(|o| o.namespace.is_none()) {
            // Before any cluster-scoped object exists, so none can outlive the ReviewApp or
            // the PR object.
            finalizer::ensure(ctx, self.app).await?;
            pr = finalizer::ensure_pr(ctx, pr).await?;
        }
        let urls = match self.render_urls(&vars) {
            Ok(urls) => urls,
            Err(e) => {
                let msg = format!("ReviewApp {}: {e}", self.app_name);
                update_app_status(ctx, self.app, Err(&msg), &[]).await?;
                let status = statuses.failed("InvalidTemplate", &msg, previous_inventory.to_vec());
                return self
                    .record_failure(pr, status, ("InvalidTemplate", "Render"), msg)
                    .await;
            }
        };
        let identity = self.identity(&pr);
        let started = std::time::Instant::now();
        let results = futures::future::join_all(rendered.objects.iter().map(|o| {
            let id = o.inventory_entry();
            let known = previous_inventory
                .iter()
                .find(|e| e.identity() == id.identity());
            objects::apply_owned(
                &ctx.discovery,
                (&ctx.field_manager, ctx.adopt_field_manager.as_deref()),
                &identity,
                o,
                known,
            )
        }))
        .await;
        ctx.metrics.observe_apply(started.elapsed());
        let mut transient = None;
        let mut permanent = Vec::new();
        // Only what the API server accepted is recorded: an object it refused does not exist (or
        // is not ours to manage), and a close must not fail on deleting it.
        let mut applied: Vec<InventoryEntry> = Vec::new();
        for r in results {
            match r {
                Ok(entry) => applied.push(entry),
                Err(f) if f.is_transient() => transient = Some(f),
                Err(f) => permanent.push(f.to_string()),
            }
        }
        if let Some(f) = transient {
            return Err(f);
        }
        if !permanent.is_empty() {
            let msg = permanent.join("; ");
            // What was there before, unless this render addresses the same object (perhaps by
            // another version), then what this render applied.
            let mut inventory = previous_inventory.to_vec();
            inventory.retain(|old| !applied.iter().any(|n| n.identity() == old.identity()));
            inventory.extend(applied);
            let status = statuses.failed("ApplyFailed", &msg, inventory);
            return self
                .record_failure(pr, status, ("ApplyFailed", "Apply"), msg)
                .await;
        }
        ctx.metrics.objects_applied(rendered.objects.len());
        // Prune what the templates no longer produce, by identity (group, kind, namespace,
        // name): a template moved to another version of its kind addresses the object just
        // applied, which must not be pruned.
        let keep: BTreeSet<_> = applied.iter().map(InventoryEntry::identity).collect();
        let pruned = objects::delete_all(
            &ctx.discovery,
            &identity,
            previous_inventory
                .iter()
                .filter(|old| !keep.contains(&old.identity())),
        )
        .await?;
        ctx.metrics.objects_deleted(pruned.count);
        let mut msg = format!(
            "{} object(s) applied at {}",
            rendered.objects.len(),
            short_sha(&event.head_sha)
        );
        if !pruned.refused.is_empty() {
            msg = format!("{msg}; not pruned: {}", pruned.refused.join("; "));
        }
        let mut status = statuses.applied(&event.head_sha, applied, &msg, urls);
        status.applied_env_vars = pr.spec.env_vars_digest();
        let pr = self.write_status(pr, status).await?;
        update_app_status(ctx, self.app, Ok(()), &rendered.warnings).await?;
        self.publish(&pr, EventType::Normal, "Applied", "Apply", msg)
            .await;
        Ok(Outcome::Applied {
            applied: rendered.objects.len(),
            pruned: pruned.count,
        })
    }

    /// The pull request no longer passes the ReviewApp's policy (a label removed …): its
    /// objects go, its record says why.
    async fn skip(
        &self,
        event: &PrEvent,
        existing: Option<&PR>,
        reason: String,
        trigger: Trigger,
    ) -> Result<Outcome, Failure> {
        let pr = self.write_record(event, false, existing, trigger).await?;
        let inventory = existing.map(PR::inventory).unwrap_or_default();
        let deleted =
            objects::delete_all(&self.ctx.discovery, &self.identity(&pr), inventory).await?;
        self.ctx.metrics.objects_deleted(deleted.count);
        let mut note = reason.clone();
        if !deleted.refused.is_empty() {
            note = format!("{note}; not deleted: {}", deleted.refused.join("; "));
        }
        let status = self
            .statuses(existing.and_then(|p| p.status.as_ref()))
            .skipped(&note);
        let pr = self.write_status(pr, status).await?;
        self.publish(&pr, EventType::Normal, "Skipped", "Policy", note)
            .await;
        Ok(Outcome::Skipped(reason))
    }

    /// The `PR` object is being deleted (`kubectl delete pr`): nothing is deployed to it. If it
    /// carries the finalizer, what its inventory lists is deleted and the finalizer removed. An
    /// event is retried (a transient failure) until the object is gone, and then starts a new
    /// environment; a re-render or an edit has nothing left to do.
    async fn deleting(&self, pr: &PR, trigger: Trigger) -> Result<Outcome, Failure> {
        let outcome = if has_cluster_scoped_finalizer(pr) {
            finalizer::finalize_deleted_pr(
                self.ctx,
                &self.ns,
                &self.pr_name,
                pr.resource_version(),
                Stranded::of_record(pr),
            )
            .await?
        } else {
            Outcome::Stale(format!("PR {} is being deleted", self.pr_name))
        };
        if trigger == Trigger::Event {
            return Err(Failure::transient(format!(
                "PR {} is being deleted; the event is retried once it is gone",
                self.pr_name
            )));
        }
        Ok(outcome)
    }

    /// Closes the environment. The tombstone (`spec.closed`) is written first, so that if
    /// deleting fails or the process dies half-way, the record says a close is still to be
    /// finished (its inventory lists what is left) and late events cannot resurrect it
    /// meanwhile; the redelivered message or the resync finishes it.
    async fn close(&self, event: &PrEvent, existing: Option<&PR>) -> Result<Outcome, Failure> {
        let pr = self
            .write_record(event, true, existing, Trigger::Event)
            .await?;
        let how = if event.merged { "merged" } else { "closed" };
        self.finish_close(pr, how).await
    }

    /// Deletes what a tombstone's inventory still lists and records the close on its status.
    async fn finish_close(&self, pr: PR, how: &str) -> Result<Outcome, Failure> {
        let inventory = pr.inventory();
        let deleted =
            objects::delete_all(&self.ctx.discovery, &self.identity(&pr), inventory).await?;
        self.ctx.metrics.objects_deleted(deleted.count);
        let msg = format!("pull request {how}; {}", deleted.describe());
        // Nothing of the environment is left for a deletion of the object to wait for: the
        // finalizer goes before the record says `Closed`, so a closed record never holds it.
        let pr = finalizer::release_pr(self.ctx, pr).await?;
        let status = self.statuses(pr.status.as_ref()).closed(&msg);
        let pr = self.write_status(pr, status).await?;
        let kind = if deleted.refused.is_empty() {
            EventType::Normal
        } else {
            EventType::Warning
        };
        self.publish(&pr, kind, "Closed", "Delete", msg).await;
        Ok(Outcome::Closed {
            deleted: deleted.count,
        })
    }
}

/// True when the PR object, not GitHub, drives this reconcile: it was made or edited by hand
/// ([`Trigger::Manual`]), or it is re-rendered and was last recorded from such an edit.
fn is_manual(trigger: Trigger, existing: Option<&PR>) -> bool {
    match trigger {
        Trigger::Manual => true,
        Trigger::Rerender => existing.is_some_and(|p| p.spec.origin == Origin::Manual),
        Trigger::Event => false,
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
        .ok_or_else(|| Failure::transient(format!("PR {} has no uid", pr.name_any())))?;
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}
