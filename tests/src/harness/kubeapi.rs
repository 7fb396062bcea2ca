//! Kubernetes API helpers of the harness: the dynamic API of any kind through discovery, and
//! server-side apply of YAML documents as `kubectl apply --server-side` does.

use std::path::Path;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde_json::Value;

/// The field manager of everything the harness applies.
pub const FIELD_MANAGER: &str = "kubetempura-tests";

/// The dynamic API of a kind (found through discovery) and whether it is namespaced.
pub async fn discover(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Result<(Api<DynamicObject>, bool), kube::Error> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let (ar, caps) =
        kube::discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, kind)).await?;
    Ok(match (caps.scope, namespace) {
        (Scope::Namespaced, Some(ns)) => (Api::namespaced_with(client.clone(), ns, &ar), true),
        (Scope::Namespaced, None) => (Api::all_with(client.clone(), &ar), true),
        (Scope::Cluster, _) => (Api::all_with(client.clone(), &ar), false),
    })
}

/// The dynamic API of a kind, found through discovery (panics when the kind is not served).
pub async fn dynamic_api(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    discover(client, api_version, kind, namespace)
        .await
        .unwrap_or_else(|e| panic!("discovery of {kind} {api_version}: {e}"))
        .0
}

/// Server-side-applies one object. A namespaced object goes to `namespace` when given (it
/// replaces the one in the document), else to its own, else to `default`.
pub async fn apply_value(
    client: &Client,
    value: &Value,
    namespace: Option<&str>,
) -> Result<DynamicObject, kube::Error> {
    let mut value = value.clone();
    let api_version = value["apiVersion"].as_str().unwrap_or_default().to_owned();
    let kind = value["kind"].as_str().unwrap_or_default().to_owned();
    let own = value["metadata"]["namespace"].as_str().map(str::to_owned);
    let ns = namespace
        .map(str::to_owned)
        .or(own)
        .unwrap_or_else(|| "default".into());
    let (api, namespaced) = discover(client, &api_version, &kind, Some(&ns)).await?;
    if namespaced {
        value["metadata"]["namespace"] = Value::from(ns);
    }
    let name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&value),
    )
    .await
}

/// The documents of a YAML file (null documents skipped).
pub fn read_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// Server-side-applies every document of a YAML file, namespaced objects into `namespace` when
/// given (see [`apply_value`]). Panics naming the object that was refused.
pub async fn apply_file(client: &Client, path: &Path, namespace: Option<&str>) {
    for value in read_documents(path) {
        let obj = apply_value(client, &value, namespace)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "apply {} {} from {}: {e}",
                    value["kind"],
                    value["metadata"]["name"],
                    path.display()
                )
            });
        tracing::debug!(name = %obj.name_any(), "applied");
    }
}
