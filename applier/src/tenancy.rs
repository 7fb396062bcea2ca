//! Tenancy: the namespaces whose ReviewApps the applier refuses.
//!
//! A ReviewApp makes the applier create objects in its own namespace with the applier's rights.
//! In the applier's own namespace that would reach its ServiceAccount, its settings and its
//! credentials; in `kube-system`, the cluster's own components. ReviewApps there are refused: the
//! watch cache never hands them to reconciliation, re-renders and resyncs never see them, and an
//! event for their repository ends as a permanent failure recorded on their status (condition
//! `Accepted=False`, reason `NamespaceDenied`) and as a Warning Event; the message is
//! acknowledged. Nothing is applied or deleted in such a namespace.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{SecondsFormat, Utc};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Resource, ResourceExt};
use kubetempura_common::crd::{Condition, ReviewApp, ReviewAppStatus};
use kubetempura_common::naming::RepoKey;
use serde_json::json;

use crate::kubeapi::{Failure, is_not_found};
use crate::reconcile::{Ctx, Outcome};

/// Where a pod finds its namespace (the service-account volume every pod with a token mounts).
pub const IN_CLUSTER_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The deny list when the operator sets none.
pub const DEFAULT_DENIED_NAMESPACES: &str = "kube-system";

/// The condition type on a refused ReviewApp's status.
pub const CONDITION_ACCEPTED: &str = "Accepted";
/// The reason of that condition, and of the Warning Event.
pub const REASON_NAMESPACE_DENIED: &str = "NamespaceDenied";

/// The namespaces whose ReviewApps are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenancy {
    own_namespace: Option<String>,
    denied: BTreeSet<String>,
}

impl Tenancy {
    /// Refuses `denied` (empty names are ignored) and, always, the applier's own namespace.
    pub fn new(denied: impl IntoIterator<Item = String>, own_namespace: Option<String>) -> Self {
        let mut denied: BTreeSet<String> = denied
            .into_iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        denied.extend(own_namespace.clone());
        Self {
            own_namespace,
            denied,
        }
    }

    /// The applier's own namespace, when known.
    pub fn own_namespace(&self) -> Option<&str> {
        self.own_namespace.as_deref()
    }

    /// Every refused namespace (the deny list and the applier's own).
    pub fn denied(&self) -> &BTreeSet<String> {
        &self.denied
    }

    /// True when ReviewApps in `namespace` are refused.
    pub fn is_denied(&self, namespace: &str) -> bool {
        self.denied.contains(namespace)
    }

    /// Why ReviewApps in `namespace` are refused; `None` when they are not.
    pub fn refusal(&self, namespace: &str) -> Option<String> {
        if self.own_namespace.as_deref() == Some(namespace) {
            Some(format!(
                "namespace {namespace} is the applier's own namespace (its ServiceAccount, settings and credentials live there)"
            ))
        } else if self.denied.contains(namespace) {
            Some(format!(
                "namespace {namespace} is on the applier's deny list (--deny-namespace, KUBETEMPURA_DENY_NAMESPACES)"
            ))
        } else {
            None
        }
    }
}

/// The applier's own namespace: `configured` (POD_NAMESPACE, from the downward API), else the
/// namespace file of the pod's service-account volume. Never the kubeconfig's default namespace:
/// that says where kubectl points, not where the applier runs. `None` outside a pod when nothing
/// is configured.
pub fn own_namespace(configured: Option<&str>, in_cluster_file: &Path) -> Option<String> {
    configured
        .map(str::to_owned)
        .or_else(|| std::fs::read_to_string(in_cluster_file).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
}

fn message(app: &ReviewApp, reason: &str) -> String {
    format!(
        "ReviewApp {}/{} is refused: {reason}; nothing is applied. Create it in another namespace.",
        app.namespace().unwrap_or_default(),
        app.name_any()
    )
}

/// The event hook: records the refusal of every ReviewApp of `repo` in a denied namespace, one
/// `Failed` outcome each (the message is acknowledged). Only a transient failure of the status
/// write is returned (the event is retried); a permanent one (the applier may not write there)
/// is logged, the outcome stays `Failed`.
pub async fn refuse(ctx: &Ctx, repo: &RepoKey) -> Result<Vec<Outcome>, Failure> {
    let mut outcomes = Vec::new();
    for app in ctx.caches.denied_apps_for(repo) {
        let ns = app.namespace().unwrap_or_default();
        let Some(reason) = ctx.caches.tenancy().refusal(&ns) else {
            continue;
        };
        let msg = message(&app, &reason);
        match record(ctx, &app, &msg).await {
            Ok(_) => {}
            Err(f) if f.is_transient() => return Err(f),
            Err(f) => {
                tracing::warn!(reviewapp = %app.name_any(), namespace = %ns, error = %f, "could not record the refusal on the ReviewApp's status")
            }
        }
        publish(ctx, &app, &msg).await;
        outcomes.push(Outcome::Failed(msg));
    }
    Ok(outcomes)
}

/// The re-render hook: true when the ReviewApp `namespace/name` is refused (its status then
/// records it, with a Warning Event when the status changed), so the caller skips it.
pub async fn refuse_rerender(ctx: &Ctx, namespace: &str, name: &str) -> bool {
    let Some(reason) = ctx.caches.tenancy().refusal(namespace) else {
        return false;
    };
    let Some(app) = ctx.caches.denied_app(namespace, name) else {
        return true;
    };
    let msg = message(&app, &reason);
    match record(ctx, &app, &msg).await {
        Ok(true) => publish(ctx, &app, &msg).await,
        Ok(false) => {}
        Err(f) => {
            tracing::warn!(reviewapp = %name, %namespace, error = %f, "could not record the refusal on the ReviewApp's status; the next event or change retries")
        }
    }
    tracing::info!(reviewapp = %name, %namespace, "ReviewApp refused: {reason}");
    true
}

/// Writes the refusal on the ReviewApp's status unless it is already there; true when written.
async fn record(ctx: &Ctx, app: &ReviewApp, msg: &str) -> Result<bool, Failure> {
    let previous = app.status.clone().unwrap_or_default();
    let last_transition_time = previous
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_ACCEPTED && c.status == "False")
        .map_or_else(
            || Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            |c| c.last_transition_time.clone(),
        );
    let wanted = ReviewAppStatus {
        observed_generation: app.metadata.generation,
        active_prs: None,
        warnings: Vec::new(),
        conditions: vec![Condition {
            type_: CONDITION_ACCEPTED.to_owned(),
            status: "False".to_owned(),
            reason: REASON_NAMESPACE_DENIED.to_owned(),
            message: msg.to_owned(),
            last_transition_time,
            observed_generation: app.metadata.generation,
        }],
        ..ReviewAppStatus::default()
    };
    if wanted == previous {
        return Ok(false);
    }
    let ns = app.namespace().unwrap_or_default();
    let name = app.name_any();
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
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(Failure::from_kube(
            &format!("apply status of ReviewApp {name}"),
            e,
        )),
    }
}

/// A Warning Event on the ReviewApp, best effort (the status already records the refusal).
async fn publish(ctx: &Ctx, app: &ReviewApp, msg: &str) {
    let ev = KubeEvent {
        type_: EventType::Warning,
        reason: REASON_NAMESPACE_DENIED.to_owned(),
        note: Some(msg.chars().take(1000).collect()),
        action: "Admit".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &app.object_ref(&())).await {
        tracing::warn!(reviewapp = %app.name_any(), error = %e, "could not publish Kubernetes Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Run {
        #[command(flatten)]
        args: crate::run::RunArgs,
    }

    fn tenancy_of(argv: &[&str]) -> Tenancy {
        let run = Run::try_parse_from(
            ["kubetempura", "--queue-url", "https://q.example/x.fifo"]
                .iter()
                .chain(argv),
        )
        .unwrap();
        Tenancy::new(run.args.deny_namespaces, run.args.applier_namespace)
    }

    #[test]
    fn kube_system_is_denied_by_default_and_the_own_namespace_always() {
        let t = tenancy_of(&["--applier-namespace", "kubetempura"]);
        assert!(t.is_denied("kube-system"));
        assert!(t.is_denied("kubetempura"));
        assert!(!t.is_denied("team-a"));
        assert!(t.refusal("team-a").is_none());
        // A deny list replaces the default; the own namespace is still added.
        let t = tenancy_of(&[
            "--deny-namespace",
            "kube-public,monitoring",
            "--deny-namespace",
            "kube-system",
            "--applier-namespace",
            "kubetempura",
        ]);
        assert_eq!(
            t.denied().iter().map(String::as_str).collect::<Vec<_>>(),
            ["kube-public", "kube-system", "kubetempura", "monitoring"]
        );
    }

    #[test]
    fn refusals_say_why() {
        let t = Tenancy::new(
            ["kube-system".to_owned(), " ".to_owned()],
            Some("kubetempura".into()),
        );
        assert_eq!(t.denied().len(), 2, "{t:?}");
        let own = t.refusal("kubetempura").unwrap();
        assert!(own.contains("the applier's own namespace"), "{own}");
        let listed = t.refusal("kube-system").unwrap();
        assert!(listed.contains("deny list (--deny-namespace"), "{listed}");
    }

    #[test]
    fn the_own_namespace_comes_from_the_setting_then_the_in_cluster_file() {
        let file = std::env::temp_dir().join(format!(
            "kubetempura-tenancy-test-{}-namespace",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&file);
        assert_eq!(own_namespace(None, &file), None);
        std::fs::write(&file, "kubetempura\n").unwrap();
        assert_eq!(own_namespace(None, &file).as_deref(), Some("kubetempura"));
        assert_eq!(
            own_namespace(Some("from-env"), &file).as_deref(),
            Some("from-env")
        );
        std::fs::remove_file(&file).unwrap();
    }
}
