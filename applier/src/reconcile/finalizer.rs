//! Deleting a ReviewApp. Its live `PR` records are owned by it, and their namespaced objects by
//! them, so the garbage collector removes those. Cluster-scoped objects cannot have a
//! namespaced owner: a ReviewApp whose environments hold any carries
//! [`FINALIZER_CLUSTER_SCOPED`], and its deletion waits until the applier has closed every one
//! of its environments (deleting what their inventories list), then the finalizer is removed.
//! ReviewApps without cluster-scoped objects never get it.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use kubetempura_common::crd::{FINALIZER_CLUSTER_SCOPED, ReviewApp};
use serde_json::json;

use super::record::{event_from_pr, is_finished_tombstone};
use super::{Ctx, Trigger, reconcile};
use crate::kubeapi::Failure;

/// The field manager of the finalizer (a ReviewApp's spec is its authors').
fn manager(ctx: &Ctx) -> String {
    format!("{}-finalizer", ctx.field_manager)
}

fn has_finalizer(app: &ReviewApp) -> bool {
    app.finalizers()
        .iter()
        .any(|f| f == FINALIZER_CLUSTER_SCOPED)
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
    if has_finalizer(app) {
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
            || !has_finalizer(&app)
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
