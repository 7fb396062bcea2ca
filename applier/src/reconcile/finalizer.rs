//! Deleting a ReviewApp. Its live `PR` records are owned by it, and their namespaced objects by
//! them, so the garbage collector removes those. Cluster-scoped objects cannot have a
//! namespaced owner: a ReviewApp whose environments hold any carries
//! [`FINALIZER_CLUSTER_SCOPED`], and its deletion waits until the applier has closed every one
//! of its environments (deleting what their inventories list), then the finalizer is removed.
//! ReviewApps without cluster-scoped objects never get it.
//!
//! A `PR` object whose environment holds cluster-scoped objects carries the same finalizer, so
//! that deleting the object (`kubectl delete pr`, a manual environment's end) deletes them too:
//! the applier deletes what its inventory lists, then removes the finalizer. A close removes it
//! (the inventory is then empty). An unreadable `PR` object being deleted is let go the same
//! way ([`finalize_deleted_pr`]).

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use kubetempura_common::crd::{
    FINALIZER_CLUSTER_SCOPED, PR, ReviewApp, environment_id, has_cluster_scoped_finalizer,
};
use serde_json::json;

use super::objects::{self, Identity};
use super::record::{event_from_pr, is_finished_tombstone};
use super::{Ctx, Outcome, Trigger, reconcile};
use crate::cache::Stranded;
use crate::kubeapi::Failure;

/// The field manager of the finalizer (a ReviewApp's spec is its authors').
fn manager(ctx: &Ctx) -> String {
    format!("{}-finalizer", ctx.field_manager)
}

/// Applies `finalizers` (ours, or none) on the ReviewApp with the finalizer's field manager.
async fn apply_finalizers(ctx: &Ctx, app: &ReviewApp, finalizers: &[&str]) -> Result<(), Failure> {
    let name = app.name_any();
    let body = json!({
        "apiVersion": ReviewApp::api_version(&()),
        "kind": ReviewApp::kind(&()),
        "metadata": {"name": name, "namespace": app.namespace(), "finalizers": finalizers},
    });
    Api::<ReviewApp>::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default())
        .patch(
            &name,
            &PatchParams::apply(&manager(ctx)).force(),
            &Patch::Apply(&body),
        )
        .await
        .map(|_| ())
        .map_err(|e| Failure::from_kube(&format!("set the finalizer of ReviewApp {name}"), e))
}

/// Puts the finalizer on `app` unless it is there.
pub async fn ensure(ctx: &Ctx, app: &ReviewApp) -> Result<(), Failure> {
    if has_cluster_scoped_finalizer(app) {
        return Ok(());
    }
    apply_finalizers(ctx, app, &[FINALIZER_CLUSTER_SCOPED]).await
}

/// For every ReviewApp being deleted that carries the finalizer (all, or the one named):
/// closes its environments, then removes the finalizer. Failures are logged; the next resync
/// retries.
pub async fn finalize_deleted(ctx: &Ctx, only: Option<(&str, &str)>) {
    for app in ctx.caches.all_apps() {
        let ns = app.namespace().unwrap_or_default();
        let name = app.name_any();
        if only.is_some_and(|(n, a)| (n, a) != (ns.as_str(), name.as_str()))
            || app.metadata.deletion_timestamp.is_none()
            || !has_cluster_scoped_finalizer(&*app)
        {
            continue;
        }
        match finalize(ctx, &app).await {
            Ok(closed) => {
                tracing::info!(reviewapp = %name, namespace = %ns, closed, "ReviewApp deleted: its environments are closed, finalizer removed");
            }
            Err(e) => {
                tracing::warn!(reviewapp = %name, namespace = %ns, error = %e, "closing the environments of a deleted ReviewApp failed; the next resync retries");
            }
        }
    }
}

async fn finalize(ctx: &Ctx, app: &ReviewApp) -> Result<usize, Failure> {
    let ns = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let mut closed = 0;
    for pr in ctx.caches.all_prs() {
        if pr.namespace().as_deref() != Some(ns.as_str())
            || pr.spec.review_app != name
            || is_finished_tombstone(&pr)
        {
            continue;
        }
        let Some(event) = event_from_pr(&pr) else {
            continue;
        };
        reconcile(ctx, app, &event, Trigger::Rerender).await?;
        closed += 1;
    }
    apply_finalizers(ctx, app, &[]).await?;
    Ok(closed)
}

/// Adds or removes the finalizer on the record `pr` and returns the record as written. A merge
/// patch naming the resourceVersion: refused (409, a record conflict) if the record changed, and
/// it never creates an object that is gone.
async fn set_pr_finalizer(ctx: &Ctx, pr: PR, present: bool) -> Result<PR, Failure> {
    if has_cluster_scoped_finalizer(&pr) == present {
        return Ok(pr);
    }
    let name = pr.name_any();
    let ns = pr.namespace().unwrap_or_default();
    let mut finalizers: Vec<&str> = pr
        .finalizers()
        .iter()
        .map(String::as_str)
        .filter(|f| *f != FINALIZER_CLUSTER_SCOPED)
        .collect();
    if present {
        finalizers.push(FINALIZER_CLUSTER_SCOPED);
    }
    let what = if present { "set" } else { "remove" };
    let api = Api::<PR>::namespaced(ctx.client.clone(), &ns);
    let pr = patch_finalizers(ctx, &api, &name, pr.resource_version(), &finalizers, what).await?;
    ctx.remember(pr.clone());
    Ok(pr)
}

/// Sets the finalizers of the `PR` object `name` to `finalizers`: a merge patch naming the
/// resourceVersion, refused (409, a record conflict) if the object changed since, and never
/// creating one that is gone.
async fn patch_finalizers<K>(
    ctx: &Ctx,
    api: &Api<K>,
    name: &str,
    resource_version: Option<String>,
    finalizers: &[&str],
    what: &str,
) -> Result<K, Failure>
where
    K: Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let patch =
        json!({"metadata": {"resourceVersion": resource_version, "finalizers": finalizers}});
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(manager(ctx)),
            ..PatchParams::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| Failure::from_kube(&format!("{what} the finalizer of PR {name}"), e).on_record())
}

/// Puts the finalizer on the record `pr` (before any cluster-scoped object of its environment
/// exists) unless it is there.
pub async fn ensure_pr(ctx: &Ctx, pr: PR) -> Result<PR, Failure> {
    set_pr_finalizer(ctx, pr, true).await
}

/// Removes the finalizer from the record `pr` if it is there (its inventory is empty).
pub async fn release_pr(ctx: &Ctx, pr: PR) -> Result<PR, Failure> {
    set_pr_finalizer(ctx, pr, false).await
}

/// A `PR` object being deleted that holds the finalizer ([`Stranded`]; for an unreadable one,
/// what the watch could read of it): what its inventory lists is deleted (the cluster-scoped
/// objects, which no garbage collector reaches, and the namespaced ones, which it would), then
/// the finalizer is removed so the deletion completes: an untyped merge patch (the object may not
/// read as a `PR`), conditional on `resource_version`. Call it under the environment's lock.
pub async fn finalize_deleted_pr(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    resource_version: Option<String>,
    stranded: Stranded,
) -> Result<Outcome, Failure> {
    let identity = Identity {
        environment: environment_id(ns, name),
        pr_uid: stranded.uid,
    };
    let deleted = objects::delete_all(&ctx.discovery, &identity, &stranded.inventory).await?;
    ctx.metrics.objects_deleted(deleted.count);
    let kept: Vec<&str> = stranded
        .finalizers
        .iter()
        .map(String::as_str)
        .filter(|f| *f != FINALIZER_CLUSTER_SCOPED)
        .collect();
    let api = Api::<DynamicObject>::namespaced_with(
        ctx.client.clone(),
        ns,
        &ApiResource::erase::<PR>(&()),
    );
    patch_finalizers(ctx, &api, name, resource_version, &kept, "remove").await?;
    // The API server removes the object now: no copy of it is to outlive it here.
    ctx.forget_written(ns, name);
    tracing::info!(namespace = %ns, pr = %name, deleted = %deleted.describe(), "PR object deleted: its environment's objects are deleted, finalizer removed");
    Ok(Outcome::Closed {
        deleted: deleted.count,
    })
}
