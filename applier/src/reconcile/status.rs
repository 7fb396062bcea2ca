//! Statuses: the `PR` status of each outcome, and the ReviewApp status.

use chrono::{SecondsFormat, Utc};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use kubetempura_common::crd::{
    Condition, GateStatus, InventoryEntry, PR, PRStatus, Phase, ReviewApp, ReviewAppStatus,
    Rollout, RolloutState,
};
use serde_json::json;

use super::Ctx;
use crate::kubeapi::{self, Failure};

pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The condition type mirroring [`PRStatus::rollout`].
pub const CONDITION_ROLLED_OUT: &str = "RolledOut";

/// A `metav1.Condition`-shaped condition, keeping its transition time while its status holds.
fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
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

/// Builds the `PR` status of each outcome from the previous one.
pub struct StatusBuilder<'a> {
    pub previous: Option<&'a PRStatus>,
    /// The ReviewApp generation the outcome was computed from.
    pub generation: Option<i64>,
}

impl StatusBuilder<'_> {
    fn ready(&self, status: bool, reason: &str, message: &str) -> Vec<Condition> {
        let previous = self
            .previous
            .map(|p| p.conditions.as_slice())
            .unwrap_or_default();
        vec![condition(
            previous,
            "Ready",
            status,
            reason,
            message,
            self.generation,
        )]
    }

    /// The rollout after applying `inventory` for `head_sha`: the previous one when it is of
    /// the same commit and generation, else a new one (complete at once without workloads).
    fn rollout(&self, head_sha: &str, inventory: &[InventoryEntry]) -> Rollout {
        if let Some(previous) = self.previous.and_then(|p| p.rollout.as_ref())
            && previous.commit == head_sha
            && previous.generation == self.generation
        {
            return previous.clone();
        }
        let workloads = inventory.iter().filter(|e| e.is_workload()).count();
        let started_at = now();
        if workloads == 0 {
            return Rollout {
                commit: head_sha.to_owned(),
                generation: self.generation,
                state: RolloutState::Complete,
                message: "no workloads to wait for".to_owned(),
                finished_at: Some(started_at.clone()),
                started_at,
            };
        }
        Rollout {
            commit: head_sha.to_owned(),
            generation: self.generation,
            state: RolloutState::Progressing,
            message: format!("waiting for {workloads} workload(s) to roll out"),
            started_at,
            finished_at: None,
        }
    }

    /// Every object applied for `head_sha`; the environment answers at `url`, if it has one.
    pub fn applied(
        &self,
        head_sha: &str,
        inventory: Vec<InventoryEntry>,
        message: &str,
        (url, log_url): (Option<String>, Option<String>),
    ) -> PRStatus {
        let rollout = self.rollout(head_sha, &inventory);
        let mut conditions = self.ready(true, "Applied", message);
        conditions.push(rollout_condition(self.previous, &rollout, self.generation));
        PRStatus {
            phase: Some(Phase::Applied),
            commit_short: Some(kubetempura_common::render::short_sha(head_sha).to_owned()),
            applied_commit: Some(head_sha.to_owned()),
            applied_generation: self.generation,
            inventory,
            message: Some(message.to_owned()),
            closed_at: None,
            conditions,
            environment_url: url,
            log_url,
            rollout: Some(rollout),
            ..PRStatus::default()
        }
    }

    /// A permanent failure: the previous commit and generation are kept, with `inventory`, so a
    /// later success can prune what exists.
    pub fn failed(&self, reason: &str, message: &str, inventory: Vec<InventoryEntry>) -> PRStatus {
        let mut conditions = self.ready(false, reason, message);
        // The previous commit's workloads still run: their rollout stays visible.
        if let Some(rollout) = self.previous.and_then(|p| p.rollout.as_ref()) {
            conditions.push(rollout_condition(
                self.previous,
                rollout,
                rollout.generation,
            ));
        }
        PRStatus {
            phase: Some(Phase::Failed),
            message: Some(message.to_owned()),
            conditions,
            inventory,
            ..self.kept()
        }
    }

    /// Closed: nothing left.
    pub fn closed(&self, message: &str) -> PRStatus {
        PRStatus {
            phase: Some(Phase::Closed),
            message: Some(message.to_owned()),
            closed_at: Some(now()),
            inventory: Vec::new(),
            conditions: self.ready(false, "Closed", message),
            ..self.kept()
        }
    }

    /// Skipped by the ReviewApp's policy: nothing deployed.
    pub fn skipped(&self, reason: &str) -> PRStatus {
        PRStatus {
            phase: Some(Phase::Skipped),
            message: Some(reason.to_owned()),
            conditions: self.ready(false, "SkippedByPolicy", reason),
            ..PRStatus::default()
        }
    }

    /// The head commit held at the build gate (`Waiting` or `Blocked`): whatever is deployed
    /// stays, with its status; the gate says what is missing.
    pub fn held(&self, phase: Phase, message: &str, gate: GateStatus) -> PRStatus {
        let mut next = self.previous.cloned().unwrap_or_default();
        if matches!(
            next.phase,
            Some(Phase::Skipped | Phase::Expired | Phase::Queued | Phase::Closed)
        ) {
            // Nothing is deployed: nothing of the previous outcome is worth showing.
            next = PRStatus {
                inventory: next.inventory,
                ..PRStatus::default()
            };
        }
        PRStatus {
            phase: Some(phase),
            message: Some(message.to_owned()),
            gate: Some(gate),
            queue_position: None,
            expired_at: None,
            feedback: None,
            ..next
        }
    }

    /// Waiting for a free slot under the ReviewApp's `maxActive`: nothing deployed.
    pub fn queued(&self, message: &str, position: u32, inventory: Vec<InventoryEntry>) -> PRStatus {
        PRStatus {
            phase: Some(Phase::Queued),
            message: Some(message.to_owned()),
            conditions: self.ready(false, "Queued", message),
            queue_position: Some(position),
            inventory,
            ..PRStatus::default()
        }
    }

    /// Removed after the ReviewApp's `expireAfter`: nothing deployed, the commit it ran kept.
    pub fn expired(&self, message: &str) -> PRStatus {
        let expired_at = self
            .previous
            .filter(|p| p.phase == Some(Phase::Expired))
            .and_then(|p| p.expired_at.clone())
            .unwrap_or_else(now);
        PRStatus {
            phase: Some(Phase::Expired),
            message: Some(message.to_owned()),
            conditions: self.ready(false, "Expired", message),
            expired_at: Some(expired_at),
            inventory: Vec::new(),
            applied_commit: self.previous.and_then(|s| s.applied_commit.clone()),
            commit_short: self.previous.and_then(|s| s.commit_short.clone()),
            ..PRStatus::default()
        }
    }

    /// What an outcome that deploys nothing keeps of the previous status.
    fn kept(&self) -> PRStatus {
        let p = self.previous;
        PRStatus {
            applied_commit: p.and_then(|s| s.applied_commit.clone()),
            commit_short: p.and_then(|s| s.commit_short.clone()),
            applied_generation: p.and_then(|s| s.applied_generation),
            rollout: p.and_then(|s| s.rollout.clone()),
            ..PRStatus::default()
        }
    }
}

/// True when writing `next` over `previous` would change nothing (the feedback record aside,
/// which the write keeps).
pub fn is_unchanged(previous: Option<&PRStatus>, next: &PRStatus) -> bool {
    previous.is_some_and(|p| {
        *p == PRStatus {
            feedback: p.feedback.clone(),
            ..next.clone()
        }
    })
}

/// The `RolledOut` condition of `rollout`.
fn rollout_condition(
    previous: Option<&PRStatus>,
    rollout: &Rollout,
    generation: Option<i64>,
) -> Condition {
    let (status, reason) = match rollout.state {
        RolloutState::Progressing => (false, "Progressing"),
        RolloutState::Complete => (true, "RolledOut"),
        RolloutState::TimedOut => (false, "RolloutTimeout"),
    };
    condition(
        previous
            .map(|p| p.conditions.as_slice())
            .unwrap_or_default(),
        CONDITION_ROLLED_OUT,
        status,
        reason,
        &rollout.message,
        generation,
    )
}

/// `status` with `rollout` and its condition in place of the previous ones.
pub fn with_rollout(status: &PRStatus, rollout: Rollout) -> PRStatus {
    let mut next = status.clone();
    let condition = rollout_condition(Some(status), &rollout, rollout.generation);
    next.conditions.retain(|c| c.type_ != CONDITION_ROLLED_OUT);
    next.conditions.push(condition);
    next.rollout = Some(rollout);
    next
}

/// Server-side-applies the status of `pr`, conditional on the record being still `pr` (its
/// resourceVersion): a writer that lost a race gets a
/// [`crate::kubeapi::Class::RecordConflict`]. The status is written whole, by one field
/// manager; the feedback already sent is kept unless `status` says otherwise.
pub async fn write_pr_status(ctx: &Ctx, pr: &PR, mut status: PRStatus) -> Result<PR, Failure> {
    let name = pr.name_any();
    let ns = pr.namespace().unwrap_or_default();
    if status.feedback.is_none() {
        status.feedback = pr.status.as_ref().and_then(|s| s.feedback.clone());
    }
    let body = json!({
        "apiVersion": PR::api_version(&()),
        "kind": PR::kind(&()),
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": pr.resource_version(),
        },
        "status": status,
    });
    let pr = Api::<PR>::namespaced(ctx.client.clone(), &ns)
        .patch_status(
            &name,
            &PatchParams::apply(&ctx.field_manager).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| Failure::from_kube(&format!("apply status of PR {name}"), e).on_record())?;
    ctx.remember(pr.clone());
    Ok(pr)
}

/// Records the template outcome on the ReviewApp status, only when it changes. A change of the
/// active count alone is left to [`refresh_app_counts`] (the periodic resync), so an event costs
/// no extra request for it.
pub async fn update_app_status(
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
    let mut counts = ReviewAppStatus::default();
    let mut active = 0_i64;
    for p in ctx.caches.all_prs().iter().filter(|p| {
        p.namespace().as_deref() == Some(ns.as_str()) && p.spec.review_app == name && !p.spec.closed
    }) {
        active += 1;
        match p.status.as_ref().and_then(|s| s.phase) {
            Some(Phase::Waiting) => counts.waiting_prs += 1,
            Some(Phase::Blocked) => counts.blocked_prs += 1,
            Some(Phase::Queued) => counts.queued_prs += 1,
            Some(Phase::Expired) => counts.expired_prs += 1,
            _ => {}
        }
    }
    let previous = app.status.clone().unwrap_or_default();
    let (valid, reason, message) = match result {
        Ok(()) => (true, "Rendered", "templates render".to_owned()),
        Err(m) => (false, "InvalidTemplate", m.to_owned()),
    };
    let wanted = ReviewAppStatus {
        observed_generation: app.metadata.generation,
        active_prs: Some(active),
        waiting_prs: counts.waiting_prs,
        blocked_prs: counts.blocked_prs,
        queued_prs: counts.queued_prs,
        expired_prs: counts.expired_prs,
        warnings: warnings.to_vec(),
        conditions: vec![condition(
            &previous.conditions,
            "TemplateValid",
            valid,
            reason,
            &message,
            app.metadata.generation,
        )],
    };
    let same_but_count = ReviewAppStatus {
        active_prs: previous.active_prs,
        waiting_prs: previous.waiting_prs,
        blocked_prs: previous.blocked_prs,
        queued_prs: previous.queued_prs,
        expired_prs: previous.expired_prs,
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
        Err(e) => Err(Failure::from_kube(
            &format!("apply status of ReviewApp {name}"),
            e,
        )),
    }
}
