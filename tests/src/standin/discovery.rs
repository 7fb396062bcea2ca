//! Discovery documents: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>`.
//!
//! Only the unaggregated formats are served. A client asking for aggregated discovery
//! (`as=APIGroupDiscoveryList`) also lists `application/json` and gets these documents with
//! `Content-Type: application/json`, which is how a server without aggregated discovery
//! answers; kubectl and client-go then fall back to per-group discovery.

use serde_json::{Value, json};

use super::registry::{Registry, ResourceType};

/// The Kubernetes minor version the stand-in claims: the one k8s-openapi's `latest` feature
/// and the pinned kubectl (1.37) are built for.
pub const SERVER_MINOR: &str = "37";

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": SERVER_MINOR,
        "emulationMajor": "1",
        "emulationMinor": SERVER_MINOR,
        "gitVersion": format!("v1.{SERVER_MINOR}.0-standin"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `/apis`.
pub fn groups(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .into_iter()
        .map(|(name, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                .collect();
            let preferred = vs.first().cloned().unwrap_or(Value::Null);
            json!({"name": name, "versions": vs, "preferredVersion": preferred})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>` (one group).
pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    let (name, versions) = reg.groups().into_iter().find(|(g, _)| g == name)?;
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": vs, "preferredVersion": preferred}),
    )
}

fn resource_entry(rt: &ResourceType) -> Value {
    let mut e = json!({
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": VERBS,
    });
    if let Some(m) = e.as_object_mut() {
        if !rt.short_names.is_empty() {
            m.insert("shortNames".into(), json!(rt.short_names));
        }
        if !rt.categories.is_empty() {
            m.insert("categories".into(), json!(rt.categories));
        }
    }
    e
}

/// `/api/v1` or `/apis/<group>/<version>`; None if nothing is served there.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = reg.in_group_version(group, version);
    if types.is_empty() && !(group.is_empty() && version == "v1") {
        return None;
    }
    let mut resources = Vec::new();
    for rt in types {
        resources.push(resource_entry(rt));
        if rt.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", rt.plural),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_list_has_status_subresources() {
        let r = Registry::with_builtins();
        let l = resource_list(&r, "", "v1").expect("core");
        let names: Vec<&str> = l["resources"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(names.contains(&"configmaps"));
        assert!(names.contains(&"services/status"));
        assert!(resource_list(&r, "nope.example.com", "v1").is_none());
    }

    #[test]
    fn groups_have_preferred_versions() {
        let r = Registry::with_builtins();
        let g = groups(&r);
        let apps = g["groups"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "apps"))
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(apps["preferredVersion"]["groupVersion"], "apps/v1");
    }
}
