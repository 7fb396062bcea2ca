//! The Kubernetes side: discovery of arbitrary kinds (cached), server-side apply with one field
//! manager, deletes, and the classification of API errors into retryable and permanent.

use std::collections::HashMap;
use std::sync::Arc;

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope as KubeScope};
use kubetempura_common::policy::Scope;
use kubetempura_common::render::RenderedObject;
use tokio::sync::RwLock;

/// How a failure is handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Retrying may help (API 5xx, 429, 409, timeouts, connection errors): the message goes back
    /// to the queue with a growing delay and, after the queue's max receive count, to the DLQ.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help (invalid template, refused kind, object refused by the API server):
    /// recorded on the `PR` and `ReviewApp` status and as an Event; the message is acknowledged.
    #[error("{0}")]
    Permanent(String),
}

impl Failure {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// Classifies a kube client error.
pub fn classify(context: &str, e: &kube::Error) -> Failure {
    let msg = format!("{context}: {e}");
    match e {
        kube::Error::Api(status) => match status.code {
            408 | 409 | 425 | 429 | 500..=599 => Failure::Transient(msg),
            _ => Failure::Permanent(format!(
                "{context}: {} ({} {})",
                status.message, status.code, status.reason
            )),
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            Failure::Transient(msg)
        }
        kube::Error::SerdeError(_) => Failure::Transient(msg),
        _ => Failure::Permanent(msg),
    }
}

/// True when the error is the API's 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Discovered kinds, cached for the life of the process (a miss asks the API server once).
#[derive(Clone)]
pub struct Discovery {
    client: Client,
    cache: Arc<RwLock<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>>,
}

impl Discovery {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: Arc::default(),
        }
    }

    /// The resource and scope of `apiVersion`/`kind`; `Ok(None)` when the cluster does not serve it.
    pub async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<(ApiResource, Scope)>, Failure> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        if let Some((ar, caps)) = self.cache.read().await.get(&gvk) {
            return Ok(Some((ar.clone(), scope_of(caps))));
        }
        match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok((ar, caps)) => {
                let scope = scope_of(&caps);
                self.cache.write().await.insert(gvk, (ar.clone(), caps));
                Ok(Some((ar, scope)))
            }
            Err(kube::Error::Discovery(_)) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(classify(
                &format!("discovery of {kind}.{group}/{version}"),
                &e,
            )),
        }
    }

    /// Forgets a kind (after the API server said it does not serve it any more).
    pub async fn forget(&self, api_version: &str, kind: &str) {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.cache
            .write()
            .await
            .remove(&GroupVersionKind::gvk(group, version, kind));
    }

    /// The dynamic API for a resource in `namespace` (or cluster-wide).
    pub fn api(&self, ar: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        }
    }
}

fn scope_of(caps: &ApiCapabilities) -> Scope {
    match caps.scope {
        KubeScope::Namespaced => Scope::Namespaced,
        KubeScope::Cluster => Scope::Cluster,
    }
}

/// Server-side-applies one rendered object with `manager`, forcing ownership.
pub async fn apply(
    discovery: &Discovery,
    manager: &str,
    obj: &RenderedObject,
) -> Result<(), Failure> {
    let (ar, _) = discovery
        .resolve(&obj.api_version, &obj.kind)
        .await?
        .ok_or_else(|| {
            Failure::Permanent(format!(
                "{} {} is not served by the cluster",
                obj.group_kind(),
                obj.name
            ))
        })?;
    let api = discovery.api(&ar, obj.namespace.as_deref());
    let params = PatchParams::apply(manager).force();
    match api
        .patch(&obj.name, &params, &Patch::Apply(&obj.object))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            if is_not_found(&e) {
                discovery.forget(&obj.api_version, &obj.kind).await;
            }
            Err(classify(
                &format!("apply {} {}", obj.group_kind(), obj.name),
                &e,
            ))
        }
    }
}

/// Deletes one object (background propagation); an object already gone is success.
pub async fn delete(
    discovery: &Discovery,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<bool, Failure> {
    let Some((ar, _)) = discovery.resolve(api_version, kind).await? else {
        // The kind is gone from the cluster, and its objects with it.
        return Ok(false);
    };
    let api = discovery.api(&ar, namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(classify(&format!("delete {kind} {name}"), &e)),
    }
}
