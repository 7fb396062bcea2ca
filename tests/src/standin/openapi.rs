//! A minimal OpenAPI v3 index (`/openapi/v3`) and per-group-version documents.
//!
//! kubectl (1.27+) validates `apply`/`create` input server-side (`fieldValidation=Strict`)
//! only after checking, in the group-version's OpenAPI v3 document, that the PATCH operation
//! of the kind accepts a `fieldValidation` query parameter; without `/openapi/v3` it refuses
//! ("failed to download openapi"). These documents carry exactly that: one path per kind whose
//! operations are tagged with `x-kubernetes-group-version-kind` and list the query
//! parameters the stand-in honours. They have no schemas (the stand-in does not validate
//! objects against schemas, so unknown fields are kept rather than rejected). `/openapi/v2`
//! answers 404, which kubectl copes with for everything above.

use serde_json::{Map, Value, json};

use super::registry::{Registry, ResourceType};

fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016X}")
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn param(name: &str, type_: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": type_, "uniqueItems": true}})
}

fn operations(rt: &ResourceType, version: &str) -> Value {
    let gvk = json!({"group": rt.group, "version": version, "kind": rt.kind});
    let ok = json!({"200": {"description": "OK"}});
    let common = vec![
        param("dryRun", "string"),
        param("fieldManager", "string"),
        param("fieldValidation", "string"),
    ];
    let mut patch_params = common.clone();
    patch_params.push(param("force", "boolean"));
    json!({
        "get": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "get", "responses": ok},
        "put": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "put", "parameters": common, "responses": ok},
        "patch": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "patch", "parameters": patch_params, "responses": ok},
        "delete": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "delete", "responses": ok},
    })
}

/// The document of one group/version, if it is served.
pub fn group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = reg.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let base = gv_path(group, version);
    for rt in types {
        let item = if rt.namespaced {
            format!("/{base}/namespaces/{{namespace}}/{}/{{name}}", rt.plural)
        } else {
            format!("/{base}/{}/{{name}}", rt.plural)
        };
        paths.insert(item, operations(rt, version));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", super::discovery::SERVER_MINOR)},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

/// `/openapi/v3`: the index of group/version documents with content hashes.
pub fn index(reg: &Registry) -> Value {
    let mut gvs: Vec<(String, String)> = vec![(String::new(), "v1".to_string())];
    for (g, versions) in reg.groups() {
        for v in versions {
            gvs.push((g.clone(), v));
        }
    }
    let mut paths = Map::new();
    for (g, v) in gvs {
        if let Some(doc) = group_version(reg, &g, &v) {
            let p = gv_path(&g, &v);
            let url = format!("/openapi/v3/{p}?hash={}", fnv(&doc.to_string()));
            paths.insert(p, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lists_core_and_groups_with_hashes() {
        let r = Registry::with_builtins();
        let idx = index(&r);
        let url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap_or_default();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        assert!(idx["paths"]["api/v1"].is_object());
    }

    #[test]
    fn patch_operations_declare_field_validation() {
        let r = Registry::with_builtins();
        let doc = group_version(&r, "apps", "v1").expect("apps");
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        let names: Vec<&str> = op["parameters"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(names.contains(&"fieldValidation"));
    }
}
