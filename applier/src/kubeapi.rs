//! The Kubernetes side: discovery of arbitrary kinds (cached), server-side apply with one field
//! manager, reads and deletes with uid preconditions, and the classification of API errors into
//! retryable and permanent.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope as KubeScope};
use kubetempura_common::crd::InventoryEntry;
use kubetempura_common::policy::{GroupKind, Scope};
use kubetempura_common::render::RenderedObject;
use tokio::sync::RwLock;

/// How a failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Retrying may help (API 5xx, 429, timeouts, connection errors): the consumer retries the
    /// message with a growing delay.
    Transient,
    /// Retrying cannot help (invalid template, refused kind, an object the API server refused
    /// or that belongs to someone else): recorded on the `PR` and `ReviewApp` status and as an
    /// Event; the message is acknowledged.
    Permanent,
    /// Another writer changed our own `PR` record since we read it (a resourceVersion
    /// precondition failed): the reconcile re-reads the record and decides again.
    RecordConflict,
}

/// A failed step of a reconcile: its class, the HTTP status of the API answer when there was
/// one, a message for humans, and the client error it came from.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    class: Class,
    status: Option<u16>,
    message: String,
    #[source]
    source: Option<Arc<kube::Error>>,
}

impl Failure {
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(Class::Transient, message)
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(Class::Permanent, message)
    }

    fn new(class: Class, message: impl Into<String>) -> Self {
        Self {
            class,
            status: None,
            message: message.into(),
            source: None,
        }
    }

    /// Classifies a kube client error met while doing `context`.
    pub fn from_kube(context: &str, e: kube::Error) -> Self {
        let (class, status, message) = match &e {
            kube::Error::Api(s) => {
                let class = match s.code {
                    408 | 409 | 425 | 429 | 500..=599 => Class::Transient,
                    _ => Class::Permanent,
                };
                (
                    class,
                    Some(s.code),
                    format!("{context}: {} ({} {})", s.message, s.code, s.reason),
                )
            }
            kube::Error::HyperError(_)
            | kube::Error::Service(_)
            | kube::Error::ReadEvents(_)
            | kube::Error::SerdeError(_) => (Class::Transient, None, format!("{context}: {e}")),
            _ => (Class::Permanent, None, format!("{context}: {e}")),
        };
        Self {
            class,
            status,
            message,
            source: Some(Arc::new(e)),
        }
    }

    /// A 409 on our own record: the reconcile re-reads it and decides again.
    #[must_use]
    pub fn on_record(self) -> Self {
        if self.status == Some(409) {
            Self {
                class: Class::RecordConflict,
                ..self
            }
        } else {
            self
        }
    }

    /// A 409 on an object: it is not ours (a uid precondition failed), which retrying cannot
    /// change.
    #[must_use]
    pub fn conflict_is_permanent(self) -> Self {
        if self.status == Some(409) {
            Self {
                class: Class::Permanent,
                ..self
            }
        } else {
            self
        }
    }

    pub fn class(&self) -> Class {
        self.class
    }

    /// True unless retrying cannot help (a record conflict is retried too).
    pub fn is_transient(&self) -> bool {
        self.class != Class::Permanent
    }

    /// The HTTP status of the API server's answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
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
            Err(e) => Err(Failure::from_kube(
                &format!("discovery of {kind}.{group}/{version}"),
                e,
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

/// The resource of a kind the cluster serves, or a permanent failure naming what is not served.
async fn served(
    discovery: &Discovery,
    api_version: &str,
    kind: &str,
    name: &str,
) -> Result<ApiResource, Failure> {
    let (ar, _) = discovery.resolve(api_version, kind).await?.ok_or_else(|| {
        Failure::permanent(format!(
            "{} {name} is not served by the cluster",
            GroupKind::from_api_version(api_version, kind)
        ))
    })?;
    Ok(ar)
}

/// Reads one object; `Ok(None)` when it does not exist (or its kind is not served any more).
pub async fn get(
    discovery: &Discovery,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<DynamicObject>, Failure> {
    let Some((ar, _)) = discovery.resolve(api_version, kind).await? else {
        return Ok(None);
    };
    discovery
        .api(&ar, namespace)
        .get_opt(name)
        .await
        .map_err(|e| Failure::from_kube(&format!("get {kind} {name}"), e))
}

/// Hands the fields `from` wrote with updates (not applies) on `live` over to `to`, as a
/// server-side apply of `to`, the way `kubectl`'s client-side-apply upgrade does: `to`'s next
/// apply then owns them, and removes those it no longer sets. Nothing is done when `from` wrote
/// nothing or `to` already manages the object. Conditional on `live`'s resourceVersion: a change
/// in between is transient (the object is read again on the retry).
pub async fn hand_over_fields(
    discovery: &Discovery,
    obj: &RenderedObject,
    live: &DynamicObject,
    from: &str,
    to: &str,
) -> Result<(), Failure> {
    let Some(fields) = live.metadata.managed_fields.as_deref() else {
        return Ok(());
    };
    let is_from = |f: &ManagedFieldsEntry| {
        f.manager.as_deref() == Some(from)
            && f.operation.as_deref() == Some("Update")
            && f.subresource.as_deref().unwrap_or_default().is_empty()
    };
    if !fields.iter().any(is_from) || fields.iter().any(|f| f.manager.as_deref() == Some(to)) {
        return Ok(());
    }
    let handed: Vec<ManagedFieldsEntry> = fields
        .iter()
        .map(|f| {
            if is_from(f) {
                ManagedFieldsEntry {
                    manager: Some(to.to_owned()),
                    operation: Some("Apply".to_owned()),
                    ..f.clone()
                }
            } else {
                f.clone()
            }
        })
        .collect();
    let ar = served(discovery, &obj.api_version, &obj.kind, &obj.name).await?;
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": live.metadata.resource_version, "managedFields": handed},
    });
    let what = format!("{} {}", obj.group_kind(), obj.name);
    match discovery
        .api(&ar, obj.namespace.as_deref())
        .patch(&obj.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(object = %what, from, to, "adopted: field ownership handed over");
            Ok(())
        }
        Err(e) => {
            let f = Failure::from_kube(&format!("hand over the fields of {what}"), e);
            if f.status() == Some(409) {
                Err(Failure::transient(format!(
                    "{what} changed while it was adopted: {f}"
                )))
            } else {
                Err(f)
            }
        }
    }
}

/// Server-side-applies one rendered object with `manager`, forcing field ownership. With `uid`,
/// the API server applies only to that very object (a precondition: a 409 when the name now
/// belongs to another object). Returns the uid of the object applied.
pub async fn apply(
    discovery: &Discovery,
    manager: &str,
    obj: &RenderedObject,
    uid: Option<&str>,
) -> Result<String, Failure> {
    let ar = served(discovery, &obj.api_version, &obj.kind, &obj.name).await?;
    let api = discovery.api(&ar, obj.namespace.as_deref());
    let params = PatchParams::apply(manager).force();
    let mut body = obj.object.clone();
    if let (Some(uid), Some(metadata)) = (
        uid,
        body.get_mut("metadata").and_then(|m| m.as_object_mut()),
    ) {
        metadata.insert("uid".to_owned(), uid.into());
    }
    match api.patch(&obj.name, &params, &Patch::Apply(&body)).await {
        Ok(applied) => Ok(applied.metadata.uid.unwrap_or_default()),
        Err(e) => {
            if is_not_found(&e) {
                discovery.forget(&obj.api_version, &obj.kind).await;
            }
            Err(Failure::from_kube(
                &format!("apply {} {}", obj.group_kind(), obj.name),
                e,
            ))
        }
    }
}

/// Deletes one object (background propagation), only if its uid is still `uid`; `Ok(false)`
/// when it was already gone.
pub async fn delete(
    discovery: &Discovery,
    entry: &InventoryEntry,
    uid: &str,
) -> Result<bool, Failure> {
    let Some((ar, _)) = discovery.resolve(&entry.api_version, &entry.kind).await? else {
        // The kind is gone from the cluster, and its objects with it.
        return Ok(false);
    };
    let api = discovery.api(&ar, entry.namespace.as_deref());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&entry.name, &params).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(Failure::from_kube(
            &format!("delete {} {}", entry.kind, entry.name),
            e,
        )),
    }
}
