//! The kinds the stand-in serves: the built-in ones and those registered by
//! `CustomResourceDefinition` objects.
//!
//! Simplifications: every kind has one storage; a CRD with several served versions serves the
//! same stored objects under each of them with only `apiVersion` rewritten (what a CRD with
//! `conversion: None` does). Core `v1 Event` and `events.k8s.io/v1 Event` are stored separately.

use std::collections::BTreeMap;

use serde_json::Value;

use super::status::{ApiError, Cause};

/// One additional printer column of a CRD version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type (`string`, `integer`, `date`, ...).
    pub type_: String,
    /// `format`, if any.
    pub format: String,
    /// Simple JSONPath evaluated against each object.
    pub json_path: String,
    /// Description.
    pub description: String,
    /// Priority (0 = shown by default).
    pub priority: i64,
}

/// A served kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group (`""` for core).
    pub group: String,
    /// Served versions; the first is the preferred/storage one.
    pub versions: Vec<String>,
    /// Kind.
    pub kind: String,
    /// Plural resource name (URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// kubectl categories (`all`).
    pub categories: Vec<String>,
    /// Whether `/status` is a subresource (main writes then ignore status).
    pub status_subresource: bool,
    /// CRD printer columns (empty: Name and Age).
    pub printer_columns: Vec<PrinterColumn>,
    /// Built-in kinds treat lists of objects with a `name` key as associative lists in
    /// server-side apply; custom kinds treat every list as atomic.
    pub builtin: bool,
    /// For custom kinds, the CRD's name.
    pub crd: Option<String>,
}

impl ResourceType {
    /// `group/version` (or `v1` for core) of a version.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// The storage version.
    pub fn storage_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }

    /// Whether `version` is served.
    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    all: bool,
    status: bool,
) -> ResourceType {
    ResourceType {
        group: group.to_string(),
        versions: vec![version.to_string()],
        kind: kind.to_string(),
        plural: plural.to_string(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: if all {
            vec!["all".to_string()]
        } else {
            Vec::new()
        },
        status_subresource: status,
        printer_columns: Vec::new(),
        builtin: true,
        crd: None,
    }
}

/// The registry: (group, plural) → kind.
#[derive(Debug, Clone)]
pub struct Registry {
    types: BTreeMap<(String, String), ResourceType>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_builtins()
    }
}

impl Registry {
    /// The built-in kinds.
    pub fn with_builtins() -> Self {
        let list = vec![
            builtin(
                "",
                "v1",
                "Namespace",
                "namespaces",
                false,
                &["ns"],
                false,
                true,
            ),
            builtin(
                "",
                "v1",
                "ConfigMap",
                "configmaps",
                true,
                &["cm"],
                false,
                false,
            ),
            builtin("", "v1", "Secret", "secrets", true, &[], false, false),
            builtin("", "v1", "Service", "services", true, &["svc"], true, true),
            builtin(
                "",
                "v1",
                "ServiceAccount",
                "serviceaccounts",
                true,
                &["sa"],
                false,
                false,
            ),
            builtin("", "v1", "Event", "events", true, &["ev"], false, false),
            builtin(
                "events.k8s.io",
                "v1",
                "Event",
                "events",
                true,
                &["ev"],
                false,
                false,
            ),
            builtin(
                "apps",
                "v1",
                "Deployment",
                "deployments",
                true,
                &["deploy"],
                true,
                true,
            ),
            builtin("batch", "v1", "Job", "jobs", true, &[], true, true),
            builtin(
                "batch",
                "v1",
                "CronJob",
                "cronjobs",
                true,
                &["cj"],
                true,
                true,
            ),
            builtin(
                "networking.k8s.io",
                "v1",
                "Ingress",
                "ingresses",
                true,
                &["ing"],
                false,
                true,
            ),
            builtin(
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
                "networkpolicies",
                true,
                &["netpol"],
                false,
                false,
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "Role",
                "roles",
                true,
                &[],
                false,
                false,
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "RoleBinding",
                "rolebindings",
                true,
                &[],
                false,
                false,
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRole",
                "clusterroles",
                false,
                &[],
                false,
                false,
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRoleBinding",
                "clusterrolebindings",
                false,
                &[],
                false,
                false,
            ),
            builtin(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
                &["crd", "crds"],
                false,
                true,
            ),
        ];
        let mut types = BTreeMap::new();
        for t in list {
            types.insert((t.group.clone(), t.plural.clone()), t);
        }
        Registry { types }
    }

    /// Look a kind up by group, version and plural.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .get(&(group.to_string(), plural.to_string()))
            .filter(|t| t.serves(version))
    }

    /// Look a kind up by group and kind name (any served version).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .values()
            .find(|t| t.group == group && t.kind == kind)
    }

    /// Every kind.
    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    /// Groups (non-core) with their served versions, preferred first, sorted by name
    /// (built-in groups first in a fixed order like a real server, then CRD groups).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        let mut push = |t: &ResourceType| {
            if t.group.is_empty() {
                return;
            }
            if let Some((_, versions)) = out.iter_mut().find(|(g, _)| *g == t.group) {
                for v in &t.versions {
                    if !versions.contains(v) {
                        versions.push(v.clone());
                    }
                }
            } else {
                out.push((t.group.clone(), t.versions.clone()));
            }
        };
        for t in self.types.values().filter(|t| t.builtin) {
            push(t);
        }
        for t in self.types.values().filter(|t| !t.builtin) {
            push(t);
        }
        out
    }

    /// Kinds served in one group/version.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<&ResourceType> {
        self.types
            .values()
            .filter(|t| t.group == group && t.serves(version))
            .collect()
    }

    /// Register (or re-register) the kind a CRD object describes.
    pub fn register_crd(&mut self, rt: ResourceType) {
        self.types.insert((rt.group.clone(), rt.plural.clone()), rt);
    }

    /// Remove the kind registered by the named CRD; returns it.
    pub fn unregister_crd(&mut self, crd_name: &str) -> Option<ResourceType> {
        let key = self
            .types
            .iter()
            .find(|(_, t)| t.crd.as_deref() == Some(crd_name))
            .map(|(k, _)| k.clone())?;
        self.types.remove(&key)
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Validate a CRD object and derive the kind it registers.
pub fn crd_to_type(crd: &Value) -> Result<ResourceType, ApiError> {
    let name = str_at(crd, &["metadata", "name"])
        .unwrap_or_default()
        .to_string();
    let mut causes = Vec::new();
    let mut require = |path: &[&str], field: &str| -> String {
        match str_at(crd, path) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => {
                causes.push(Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: field.into(),
                });
                String::new()
            }
        }
    };
    let group = require(&["spec", "group"], "spec.group");
    let plural = require(&["spec", "names", "plural"], "spec.names.plural");
    let kind = require(&["spec", "names", "kind"], "spec.names.kind");
    let scope = require(&["spec", "scope"], "spec.scope");
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
            ),
            field: "metadata.name".into(),
        });
    }
    if !scope.is_empty() && scope != "Namespaced" && scope != "Cluster" {
        causes.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: \"{scope}\": supported values: \"Cluster\", \"Namespaced\""
            ),
            field: "spec.scope".into(),
        });
    }
    let empty = Vec::new();
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let served: Vec<&Value> = versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(true))
        .collect();
    if served.is_empty() {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: "Invalid value: must have at least one served version".into(),
            field: "spec.versions".into(),
        });
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            &name,
            causes,
        ));
    }
    // Storage version first.
    let mut ordered: Vec<&Value> = served.clone();
    ordered.sort_by_key(|v| !v.get("storage").and_then(Value::as_bool).unwrap_or(false));
    let storage = ordered.first().copied();
    let version_names: Vec<String> = ordered
        .iter()
        .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let status_subresource = storage
        .and_then(|v| v.pointer("/subresources/status"))
        .is_some()
        || crd.pointer("/spec/subresources/status").is_some();
    let printer_columns = storage
        .and_then(|v| v.get("additionalPrinterColumns"))
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .map(|c| PrinterColumn {
                    name: c
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    type_: c
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("string")
                        .to_string(),
                    format: c
                        .get("format")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    json_path: c
                        .get("jsonPath")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    description: c
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    let singular = str_at(crd, &["spec", "names", "singular"])
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    Ok(ResourceType {
        group,
        versions: version_names,
        kind,
        plural,
        singular,
        namespaced: scope == "Namespaced",
        short_names: strings(crd.pointer("/spec/names/shortNames")),
        categories: strings(crd.pointer("/spec/names/categories")),
        status_subresource,
        printer_columns,
        builtin: false,
        crd: Some(name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
                "scope": "Cluster",
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                     "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]}
                ]
            }
        })
    }

    #[test]
    fn crd_registers_storage_version_first_with_status_and_columns() {
        let t = crd_to_type(&crd()).expect("valid");
        assert_eq!(t.versions, vec!["v1", "v1beta1"]);
        assert!(!t.namespaced);
        assert!(t.status_subresource);
        assert_eq!(t.printer_columns[0].json_path, ".spec.size");
        assert_eq!(t.singular, "widget");
        let mut r = Registry::with_builtins();
        r.register_crd(t);
        assert!(r.lookup("example.com", "v1beta1", "widgets").is_some());
        assert!(r.groups().iter().any(|(g, _)| g == "example.com"));
        assert!(r.unregister_crd("widgets.example.com").is_some());
        assert!(r.lookup("example.com", "v1", "widgets").is_none());
    }

    #[test]
    fn crd_name_must_be_plural_dot_group() {
        let mut c = crd();
        c["metadata"]["name"] = json!("wrong");
        let err = crd_to_type(&c).expect_err("invalid");
        assert_eq!(err.code, 422);
        assert_eq!(err.causes[0].field, "metadata.name");
    }

    #[test]
    fn builtins_are_served() {
        let r = Registry::with_builtins();
        assert!(
            r.lookup("", "v1", "configmaps")
                .is_some_and(|t| t.namespaced)
        );
        assert!(
            r.lookup("apps", "v1", "deployments")
                .is_some_and(|t| t.status_subresource)
        );
        assert!(r.lookup("apps", "v2", "deployments").is_none());
        assert!(
            r.by_kind("rbac.authorization.k8s.io", "ClusterRole")
                .is_some_and(|t| !t.namespaced)
        );
    }
}
