//! Template rendering, compatible with the original KubeTempura.
//!
//! Placeholders `{{NAME}}` (whitespace inside the braces allowed) are replaced in string values
//! only — never in keys — after the template was parsed, so no branch name or title can change
//! the structure of an object. `{{ … }}` text that is not one of our variables (Go templates in
//! a ConfigMap, Prometheus annotations) is left verbatim; an unknown placeholder shaped like a
//! variable (`{{UPPER_SNAKE}}`) is left verbatim too and reported as a warning.
//!
//! The environment's `envVars` (a `PR`'s `spec.envVars`) are set, rendered the same way, in
//! every container and init container of the kinds that run pods, before the object policy.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Map, Value};

use crate::crd::{
    ANNOTATION_ENVIRONMENT, InventoryEntry, environment_id, object_annotations, object_labels,
};
use crate::event::PrEvent;
use crate::naming::branch_slug;
use crate::naming::pr_object_name;
use crate::policy::{GroupKind, ObjectPolicy, PolicyError, Scope, pod_spec_path};

/// The variables a template may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variables {
    pub pr_number: u64,
    /// Full head commit SHA.
    pub commit_ref: String,
    pub head_branch: String,
    pub base_branch: String,
    pub repository_owner: String,
    pub repository_name: String,
    pub author: String,
    pub title: String,
    pub review_app: String,
    pub namespace: String,
}

/// Every variable name, for documentation and `--help`.
pub const VARIABLE_NAMES: &[&str] = &[
    "PR_NUMBER",
    "COMMIT_REF",
    "COMMIT_REF_SHORT",
    "HEAD_BRANCH",
    "HEAD_BRANCH_SLUG",
    "BASE_BRANCH",
    "REPOSITORY_OWNER",
    "REPOSITORY_NAME",
    "PR_AUTHOR",
    "PR_TITLE",
    "REVIEWAPP_NAME",
    "NAMESPACE",
];

impl Variables {
    /// The variables of one event, for the ReviewApp `review_app` in `namespace`.
    pub fn from_event(event: &PrEvent, review_app: &str, namespace: &str) -> Self {
        Self {
            pr_number: event.number,
            commit_ref: event.head_sha.clone(),
            head_branch: event.head_ref.clone(),
            base_branch: event.base_ref.clone(),
            repository_owner: event.repository.owner.clone(),
            repository_name: event.repository.name.clone(),
            author: event.author.clone(),
            title: event.title.clone(),
            review_app: review_app.to_owned(),
            namespace: namespace.to_owned(),
        }
    }

    /// The value of one variable, `None` when `name` is not a variable.
    pub fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        Some(match name {
            "PR_NUMBER" => Cow::Owned(self.pr_number.to_string()),
            "COMMIT_REF" => Cow::Borrowed(&self.commit_ref),
            "COMMIT_REF_SHORT" => Cow::Borrowed(short_sha(&self.commit_ref)),
            "HEAD_BRANCH" => Cow::Borrowed(&self.head_branch),
            "HEAD_BRANCH_SLUG" => Cow::Owned(branch_slug(&self.head_branch)),
            "BASE_BRANCH" => Cow::Borrowed(&self.base_branch),
            "REPOSITORY_OWNER" => Cow::Borrowed(&self.repository_owner),
            "REPOSITORY_NAME" => Cow::Borrowed(&self.repository_name),
            "PR_AUTHOR" => Cow::Borrowed(&self.author),
            "PR_TITLE" => Cow::Borrowed(&self.title),
            "REVIEWAPP_NAME" => Cow::Borrowed(&self.review_app),
            "NAMESPACE" => Cow::Borrowed(&self.namespace),
            _ => return None,
        })
    }
}

/// The first 7 characters of a commit id (`COMMIT_REF_SHORT`).
pub fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn is_variable_shaped(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Replaces our placeholders in one string. Unknown variable-shaped placeholders are added to
/// `warnings` and left as they are; any other `{{ … }}` is left untouched.
pub fn render_str<'a>(
    s: &'a str,
    vars: &Variables,
    warnings: &mut BTreeSet<String>,
) -> Cow<'a, str> {
    if !s.contains("{{") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 32);
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else { break };
        let inner = after[..close].trim();
        out.push_str(&rest[..open]);
        match vars.get(inner) {
            Some(v) => out.push_str(&v),
            None => {
                if is_variable_shaped(inner) {
                    warnings.insert(format!("unknown variable {{{{{inner}}}}} left verbatim"));
                }
                out.push_str(&rest[open..open + 2 + close + 2]);
            }
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Renders a ReviewApp's `environmentURL` for one pull request: every placeholder must be a
/// known variable, and the result an absolute `http` or `https` URL with a host.
pub fn render_environment_url(template: &str, vars: &Variables) -> Result<String, String> {
    render_url("environmentURL", template, vars)
}

/// Renders a URL field of a ReviewApp (`field` names it in errors) like
/// [`render_environment_url`].
pub fn render_url(field: &str, template: &str, vars: &Variables) -> Result<String, String> {
    let mut unknown = BTreeSet::new();
    let rendered = render_str(template, vars, &mut unknown);
    if let Some(first) = unknown.into_iter().next() {
        return Err(format!("{field} {template:?}: {first}"));
    }
    let url = url::Url::parse(&rendered)
        .map_err(|e| format!("{field} {template:?} renders to {rendered:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "{field} {template:?} renders to {rendered:?}, not an http(s) URL with a host"
        ));
    }
    Ok(rendered.into_owned())
}

/// Renders every string value of a JSON tree; keys are never touched.
pub fn render_value(v: &Value, vars: &Variables, warnings: &mut BTreeSet<String>) -> Value {
    match v {
        Value::String(s) => Value::String(render_str(s, vars, warnings).into_owned()),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render_value(i, vars, warnings))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render_value(v, vars, warnings)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Why a ReviewApp's templates could not be rendered. These are permanent: retrying cannot fix
/// them, the ReviewApp must be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("resources[{index}]: {reason}")]
    Invalid { index: usize, reason: String },
    #[error("resources[{index}] ({kind} {name}): {source}")]
    Refused {
        index: usize,
        kind: String,
        name: String,
        #[source]
        source: PolicyError,
    },
    #[error("resources[{index}] ({kind} {name}): kind is not served by the cluster")]
    UnknownKind {
        index: usize,
        kind: String,
        name: String,
    },
    #[error("resources[{index}] and resources[{first}] both render to {kind} {name}")]
    Duplicate {
        index: usize,
        first: usize,
        kind: String,
        name: String,
    },
}

/// One object ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedObject {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub scope: Scope,
    /// The whole object, namespace forced and labels added.
    pub object: Value,
}

impl RenderedObject {
    pub fn group_kind(&self) -> GroupKind {
        GroupKind::from_api_version(&self.api_version, &self.kind)
    }

    pub fn inventory_entry(&self) -> InventoryEntry {
        InventoryEntry {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: None,
        }
    }
}

/// All objects of one ReviewApp for one pull request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rendered {
    pub objects: Vec<RenderedObject>,
    /// Unknown placeholders, to report on the ReviewApp status.
    pub warnings: Vec<String>,
}

/// What rendering needs besides the variables.
pub struct RenderContext<'a> {
    /// The operator's object policy.
    pub policy: &'a ObjectPolicy,
    /// The scope of a kind (`None`: not served). The applier asks discovery; offline rendering
    /// uses [`crate::policy::builtin_scope`].
    pub scope_of: &'a (dyn Fn(&str, &str) -> Option<Scope> + Sync),
    /// Owner reference to the `PR` object, when known; set on namespaced objects only.
    pub owner: Option<&'a OwnerReference>,
    /// The environment's `envVars`, set in every container and init container of every workload
    /// that has a pod spec ([`crate::policy::pod_spec_path`]); their placeholders are
    /// substituted like the templates'. Empty: the workloads are left as the templates say.
    pub env_vars: &'a [EnvVar],
}

/// Sets `entries` in the string map `metadata[key]` (created when absent or null); `Err` when
/// the template holds something else than a map there.
fn merge_strings(
    metadata: &mut Map<String, Value>,
    key: &str,
    entries: &BTreeMap<String, String>,
) -> Result<(), ()> {
    let slot = metadata
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    let map = slot.as_object_mut().ok_or(())?;
    for (k, v) in entries {
        map.insert(k.clone(), Value::String(v.clone()));
    }
    Ok(())
}

/// Metadata fields that only a live object carries, removed from templates at render.
const LIVE_METADATA: &[&str] = &[
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Sets `env_vars` (rendered `EnvVar`s) in the `env` of every container and init container of
/// the pod spec at `path` in `object`. An entry of the same name is replaced whole (so a `value`
/// can become a `valueFrom`), every such entry if the template repeats the name; the others are
/// appended in the order of `env_vars`, a later one of the same name winning. A missing or null
/// pod spec, `containers` or `env` is no error; anything else not shaped like a pod spec is,
/// naming its path.
fn inject_env_vars(
    object: &mut Map<String, Value>,
    path: &[&str],
    env_vars: &[Value],
) -> Result<(), String> {
    let mut pod_spec = object;
    for (depth, key) in path.iter().enumerate() {
        match pod_spec.get_mut(*key) {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Object(next)) => pod_spec = next,
            Some(_) => return Err(format!("{} must be an object", path[..=depth].join("."))),
        }
    }
    let at = path.join(".");
    for field in ["containers", "initContainers"] {
        let containers = match pod_spec.get_mut(field) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(items)) => items,
            Some(_) => return Err(format!("{at}.{field} must be a list")),
        };
        for (i, container) in containers.iter_mut().enumerate() {
            let container = container
                .as_object_mut()
                .ok_or_else(|| format!("{at}.{field}[{i}] must be an object"))?;
            let env = container.entry("env").or_insert(Value::Null);
            if env.is_null() {
                *env = Value::Array(Vec::new());
            }
            let env = env
                .as_array_mut()
                .ok_or_else(|| format!("{at}.{field}[{i}].env must be a list"))?;
            for var in env_vars {
                let mut replaced = false;
                for entry in env.iter_mut().filter(|e| e["name"] == var["name"]) {
                    entry.clone_from(var);
                    replaced = true;
                }
                if !replaced {
                    env.push(var.clone());
                }
            }
        }
    }
    Ok(())
}

/// Renders a ReviewApp's `resources` for one pull request: substitutes variables, sets the
/// environment's `envVars` in the workloads' containers, forces namespaced objects into
/// `vars.namespace`, applies the object policy, adds the labels and, to namespaced objects
/// only, the owner reference.
pub fn render_resources(
    templates: &[Value],
    vars: &Variables,
    ctx: &RenderContext<'_>,
) -> Result<Rendered, RenderError> {
    let mut warnings = BTreeSet::new();
    let mut objects: Vec<RenderedObject> = Vec::with_capacity(templates.len());
    let mut seen: BTreeMap<(String, String, Option<String>, String), usize> = BTreeMap::new();
    let labels = object_labels(&vars.review_app, vars.pr_number);
    let mut annotations = object_annotations(&vars.review_app);
    annotations.insert(
        ANNOTATION_ENVIRONMENT.to_owned(),
        environment_id(
            &vars.namespace,
            &pr_object_name(&vars.review_app, vars.pr_number),
        ),
    );
    // The envVars with their placeholders substituted, once for every workload. An `EnvVar`
    // always serialises; were one not to, the first workload would report it.
    let env_vars: Result<Vec<Value>, String> = ctx
        .env_vars
        .iter()
        .map(|var| {
            serde_json::to_value(var)
                .map(|v| render_value(&v, vars, &mut warnings))
                .map_err(|e| format!("envVars: {e}"))
        })
        .collect();
    for (index, template) in templates.iter().enumerate() {
        let invalid = |reason: &str| RenderError::Invalid {
            index,
            reason: reason.to_owned(),
        };
        if !template.is_object() {
            return Err(invalid("not an object"));
        }
        let mut obj = render_value(template, vars, &mut warnings);
        let Some(map) = obj.as_object_mut() else {
            return Err(invalid("not an object"));
        };
        let mut live_fields: Vec<&str> = Vec::new();
        if map.remove("status").is_some() {
            live_fields.push("status");
        }
        let api_version = non_empty_str(map.get("apiVersion"))
            .ok_or_else(|| invalid("apiVersion must be a non-empty string"))?;
        let kind = non_empty_str(map.get("kind"))
            .ok_or_else(|| invalid("kind must be a non-empty string"))?;
        let gk = GroupKind::from_api_version(&api_version, &kind);
        // Before the policy checks below, which must see the containers as they are applied.
        if !ctx.env_vars.is_empty()
            && let Some(path) = pod_spec_path(&gk)
        {
            let env_vars = env_vars.as_deref().map_err(|e| invalid(e))?;
            inject_env_vars(map, path, env_vars).map_err(|reason| invalid(&reason))?;
        }
        let metadata = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| invalid("metadata must be an object"))?;
        let name = non_empty_str(metadata.get("name"))
            .ok_or_else(|| invalid("metadata.name must be a non-empty string"))?;
        if name.len() > 253 || name.contains('/') || name == "." || name == ".." {
            return Err(invalid(&format!(
                "metadata.name {name:?} is not a valid object name"
            )));
        }
        // Fields only a live object has (a template copied from `kubectl get -o yaml`): the API
        // server would refuse them in an apply (managedFields) or treat them as preconditions
        // that can never hold (resourceVersion, uid). Removed, with a warning on the status.
        for field in LIVE_METADATA {
            if metadata.remove(*field).is_some() {
                live_fields.push(field);
            }
        }
        if !live_fields.is_empty() {
            warnings.insert(format!(
                "resources[{index}] ({kind} {name}): removed {} (fields of a live object, as copied from `kubectl get -o yaml`)",
                live_fields.join(", ")
            ));
        }
        let scope =
            (ctx.scope_of)(&api_version, &kind).ok_or_else(|| RenderError::UnknownKind {
                index,
                kind: gk.to_string(),
                name: name.clone(),
            })?;
        let namespace = match scope {
            Scope::Namespaced => {
                metadata.insert(
                    "namespace".to_owned(),
                    Value::String(vars.namespace.clone()),
                );
                Some(vars.namespace.clone())
            }
            Scope::Cluster => {
                metadata.remove("namespace");
                None
            }
        };
        merge_strings(metadata, "labels", &labels)
            .map_err(|()| invalid("metadata.labels must be a map"))?;
        if !annotations.is_empty() {
            merge_strings(metadata, "annotations", &annotations)
                .map_err(|()| invalid("metadata.annotations must be a map"))?;
        }
        // Owner references are kubetempura's: a namespaced object gets exactly one, to its PR.
        // A cluster-scoped object gets none — a namespaced owner is invalid for it (the garbage
        // collector reports OwnerRefInvalidNamespace and never collects it) — and is deleted
        // explicitly from the PR's inventory on prune and close instead.
        match (scope, ctx.owner) {
            (Scope::Namespaced, Some(owner)) => {
                let owner = serde_json::to_value(owner).map_err(|e| invalid(&e.to_string()))?;
                metadata.insert("ownerReferences".to_owned(), Value::Array(vec![owner]));
            }
            (Scope::Namespaced, None) => {}
            (Scope::Cluster, _) => {
                metadata.remove("ownerReferences");
            }
        }
        ctx.policy
            .check_object(&gk, scope, &obj)
            .map_err(|source| RenderError::Refused {
                index,
                kind: gk.to_string(),
                name: name.clone(),
                source,
            })?;
        let key = (
            gk.group.clone(),
            kind.clone(),
            namespace.clone(),
            name.clone(),
        );
        if let Some(&first) = seen.get(&key) {
            return Err(RenderError::Duplicate {
                index,
                first,
                kind: gk.to_string(),
                name,
            });
        }
        seen.insert(key, index);
        objects.push(RenderedObject {
            api_version,
            kind,
            name,
            namespace,
            scope,
            object: obj,
        });
    }
    Ok(Rendered {
        objects,
        warnings: warnings.into_iter().collect(),
    })
}

fn non_empty_str(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::builtin_scope;
    use k8s_openapi::api::core::v1::{EnvVarSource, SecretKeySelector};
    use proptest::prelude::*;
    use serde_json::json;

    fn vars() -> Variables {
        Variables {
            pr_number: 123,
            commit_ref: "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7".into(),
            head_branch: "feature/Login".into(),
            base_branch: "main".into(),
            repository_owner: "mercari".into(),
            repository_name: "not-exists".into(),
            author: "alice".into(),
            title: "Add login".into(),
            review_app: "reviewapp-sample".into(),
            namespace: "team-a".into(),
        }
    }

    fn offline_scope(api_version: &str, kind: &str) -> Option<Scope> {
        Some(builtin_scope(&GroupKind::from_api_version(
            api_version,
            kind,
        )))
    }

    fn render(templates: &[Value]) -> Result<Rendered, RenderError> {
        render_with_env(templates, &[])
    }

    fn render_with_env(templates: &[Value], env_vars: &[EnvVar]) -> Result<Rendered, RenderError> {
        let policy = ObjectPolicy::default();
        render_resources(
            templates,
            &vars(),
            &RenderContext {
                policy: &policy,
                scope_of: &offline_scope,
                owner: None,
                env_vars,
            },
        )
    }

    fn r(s: &str) -> (String, Vec<String>) {
        let mut w = BTreeSet::new();
        let out = render_str(s, &vars(), &mut w).into_owned();
        (out, w.into_iter().collect())
    }

    #[test]
    fn original_variables_render() {
        assert_eq!(r("pr{{PR_NUMBER}}-{{COMMIT_REF_SHORT}}").0, "pr123-32f7bfe");
        assert_eq!(
            r("{{COMMIT_REF}}").0,
            "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7"
        );
        assert_eq!(r("{{ PR_NUMBER }}/{{\tPR_NUMBER}}").0, "123/123");
    }

    #[test]
    fn added_variables_render() {
        assert_eq!(
            r("{{HEAD_BRANCH}} {{HEAD_BRANCH_SLUG}} {{BASE_BRANCH}} {{REPOSITORY_OWNER}}/{{REPOSITORY_NAME}} {{PR_AUTHOR}} {{PR_TITLE}} {{REVIEWAPP_NAME}} {{NAMESPACE}}").0,
            "feature/Login feature-login main mercari/not-exists alice Add login reviewapp-sample team-a"
        );
        for name in VARIABLE_NAMES {
            assert!(vars().get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn unknown_variable_placeholders_warn_and_stay() {
        let (out, w) = r("x-{{ NOT_A_VAR }}-{{PR_NUMBER}}");
        assert_eq!(out, "x-{{ NOT_A_VAR }}-123");
        assert_eq!(w, vec!["unknown variable {{NOT_A_VAR}} left verbatim"]);
    }

    #[test]
    fn go_templates_and_other_braces_are_untouched_without_warning() {
        for s in [
            "{{ .Values.x }}",
            "{{ $labels.instance }}",
            "{{- range .Items }}{{ end -}}",
            "{{",
            "}}{{",
            "{{{PR_NUMBER}}}",
        ] {
            let (out, w) = r(s);
            if s == "{{{PR_NUMBER}}}" {
                // The first "{{" opens; its inner text "{PR_NUMBER" is not a variable.
                assert_eq!(out, s);
            } else {
                assert_eq!(out, s);
            }
            assert!(w.is_empty(), "{s}: {w:?}");
        }
    }

    #[test]
    fn keys_are_never_rendered() {
        let out = render_value(
            &json!({"{{PR_NUMBER}}": "{{PR_NUMBER}}"}),
            &vars(),
            &mut BTreeSet::new(),
        );
        assert_eq!(out, json!({"{{PR_NUMBER}}": "123"}));
    }

    #[test]
    fn non_string_values_are_kept() {
        let t = json!({"a": 1, "b": true, "c": null, "d": [1.5, "{{PR_NUMBER}}"]});
        assert_eq!(
            render_value(&t, &vars(), &mut BTreeSet::new()),
            json!({"a": 1, "b": true, "c": null, "d": [1.5, "123"]})
        );
    }

    #[test]
    fn own_kinds_and_service_account_token_secrets_are_refused_whatever_is_allowed() {
        let refused = |t: Value| render(&[t]).unwrap_err().to_string();
        let e = refused(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "t", "annotations": {"kubernetes.io/service-account.name": "kubetempura-applier"}},
            "type": "kubernetes.io/service-account-token"}));
        assert!(e.contains("service-account-token"), "{e}");
        let e = refused(
            json!({"apiVersion": "kubetempura.mercari.com/v1", "kind": "PR",
            "metadata": {"name": "forged-pr1"}, "spec": {}}),
        );
        assert!(e.contains("kubetempura's own kind"), "{e}");
        let e = refused(
            json!({"apiVersion": "kubetempura.mercari.com/v1", "kind": "ReviewApp",
            "metadata": {"name": "child"}, "spec": {}}),
        );
        assert!(e.contains("kubetempura's own kind"), "{e}");
        // An ordinary Secret is fine.
        render(&[
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "type": "Opaque", "stringData": {"a": "b"}}),
        ])
        .unwrap();
    }

    #[test]
    fn fields_of_a_live_object_are_removed_with_a_warning() {
        let out = render(&[json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c-{{PR_NUMBER}}", "resourceVersion": "123", "uid": "abc",
                "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [{"manager": "kubectl"}],
                "annotations": {"keep": "me"}},
            "data": {"a": "b"}, "status": {"phase": "x"}})])
        .unwrap();
        let meta = &out.objects[0].object["metadata"];
        for gone in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
        ] {
            assert!(meta.get(gone).is_none(), "{gone} kept: {meta}");
        }
        assert!(out.objects[0].object.get("status").is_none());
        assert_eq!(meta["annotations"]["keep"], "me");
        assert_eq!(out.objects[0].object["data"]["a"], "b");
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
        assert!(
            out.warnings[0]
                .contains("status, resourceVersion, uid, creationTimestamp, managedFields"),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn namespace_is_forced_and_labels_added() {
        let out = render(&[json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s-{{PR_NUMBER}}", "namespace": "kube-system", "labels": {"app": "x", "kubetempura.mercari.com/pr": "999"}}})]).unwrap();
        let o = &out.objects[0];
        assert_eq!(o.namespace.as_deref(), Some("team-a"));
        assert_eq!(o.object["metadata"]["namespace"], "team-a");
        assert_eq!(o.object["metadata"]["labels"]["app"], "x");
        assert_eq!(
            o.object["metadata"]["labels"]["kubetempura.mercari.com/pr"],
            "123"
        );
        assert_eq!(
            o.object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "kubetempura"
        );
        assert_eq!(o.name, "s-123");
    }

    /// Renders with an owner reference to the `PR` object `ra-pr1` (uid `u-1`).
    fn render_owned(policy: &ObjectPolicy, templates: &[Value]) -> Rendered {
        let owner = OwnerReference {
            api_version: "kubetempura.mercari.com/v1".into(),
            kind: "PR".into(),
            name: "ra-pr1".into(),
            uid: "u-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        render_resources(
            templates,
            &vars(),
            &RenderContext {
                policy,
                scope_of: &offline_scope,
                owner: Some(&owner),
                env_vars: &[],
            },
        )
        .unwrap()
    }

    #[test]
    fn owner_reference_is_set_when_given() {
        let out = render_owned(
            &ObjectPolicy::default(),
            &[json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})],
        );
        assert_eq!(
            out.objects[0].object["metadata"]["ownerReferences"][0]["uid"],
            "u-1"
        );
    }

    #[test]
    fn cluster_scoped_objects_get_no_owner_reference() {
        let policy = ObjectPolicy::allowing([GroupKind::new("scheduling.k8s.io", "PriorityClass")]);
        let out = render_owned(
            &policy,
            &[
                json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                    "metadata": {"name": "pr-{{PR_NUMBER}}",
                        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u-2"}]},
                    "value": 1000}),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
            ],
        );
        let cluster = &out.objects[0];
        assert_eq!(cluster.scope, Scope::Cluster);
        assert!(
            cluster.object["metadata"].get("ownerReferences").is_none(),
            "{}",
            cluster.object
        );
        assert_eq!(
            cluster.object["metadata"]["labels"]["kubetempura.mercari.com/pr"],
            "123"
        );
        assert_eq!(
            out.objects[1].object["metadata"]["ownerReferences"][0]["uid"],
            "u-1"
        );
    }

    #[test]
    fn a_deployment_running_as_the_applier_is_refused() {
        let err = render(&[json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d-{{PR_NUMBER}}"},
            "spec": {"template": {"spec": {"serviceAccountName": "kubetempura-applier",
                "containers": [{"name": "c", "image": "i"}]}}}})])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "resources[0] (Deployment.apps d-123): spec.template.spec.serviceAccountName names ServiceAccount \"kubetempura-applier\", the applier's own identity: pods of a template cannot run as the applier; refused"
        );
    }

    #[test]
    fn refused_kinds_are_clear_errors() {
        let err = render(&[json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "x"}})]).unwrap_err();
        assert!(
            matches!(err, RenderError::Refused { index: 0, .. }),
            "{err}"
        );
        let err = render(&[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "pr-{{PR_NUMBER}}"}})]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "resources[0] (Namespace pr-123): Namespace is cluster-scoped; the applier creates only namespaced objects unless its operator allows the kind (--allow-kind Namespace)"
        );
    }

    #[test]
    fn allowed_cluster_scoped_kinds_lose_their_namespace() {
        let policy = ObjectPolicy::allowing([GroupKind::new("", "Namespace")]);
        let out = render_resources(&[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "pr-{{PR_NUMBER}}", "namespace": "x"}})], &vars(), &RenderContext { policy: &policy, scope_of: &offline_scope, owner: None, env_vars: &[] }).unwrap();
        assert_eq!(out.objects[0].namespace, None);
        assert!(out.objects[0].object["metadata"].get("namespace").is_none());
    }

    #[test]
    fn malformed_templates_are_clear_errors() {
        let cases = [
            (json!("string"), "resources[0]: not an object"),
            (
                json!({"kind": "Service", "metadata": {"name": "a"}}),
                "resources[0]: apiVersion must be a non-empty string",
            ),
            (
                json!({"apiVersion": "v1", "metadata": {"name": "a"}}),
                "resources[0]: kind must be a non-empty string",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Service"}),
                "resources[0]: metadata.name must be a non-empty string",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Service", "metadata": []}),
                "resources[0]: metadata must be an object",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a/b"}}),
                "resources[0]: metadata.name \"a/b\" is not a valid object name",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "labels": "x"}}),
                "resources[0]: metadata.labels must be a map",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(render(&[t]).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn unknown_kinds_are_reported() {
        let policy = ObjectPolicy::default();
        let none = |_: &str, _: &str| None;
        let err = render_resources(
            &[json!({"apiVersion": "x.io/v1", "kind": "Foo", "metadata": {"name": "a"}})],
            &vars(),
            &RenderContext {
                policy: &policy,
                scope_of: &none,
                owner: None,
                env_vars: &[],
            },
        )
        .unwrap_err();
        assert!(matches!(err, RenderError::UnknownKind { .. }));
    }

    #[test]
    fn duplicate_objects_are_refused() {
        let t = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}});
        let err = render(&[t.clone(), t]).unwrap_err();
        assert!(
            matches!(
                err,
                RenderError::Duplicate {
                    index: 1,
                    first: 0,
                    ..
                }
            ),
            "{err}"
        );
    }

    /// Every built-in kind that runs pods ([`crate::policy::POD_SPECS`]): apiVersion, kind and
    /// the path to its pod spec.
    fn workloads() -> impl Iterator<Item = (String, &'static str, &'static [&'static str])> {
        crate::policy::POD_SPECS.iter().map(|(group, kind, path)| {
            let api_version = if group.is_empty() {
                "v1".to_owned()
            } else {
                format!("{group}/v1")
            };
            (api_version, *kind, *path)
        })
    }

    /// A `kind` object named `w` whose pod spec, at `path`, is `pod_spec`.
    fn workload(api_version: &str, kind: &str, path: &[&str], pod_spec: Value) -> Value {
        let mut nested = pod_spec;
        for key in path[1..].iter().rev() {
            nested = json!({ *key: nested });
        }
        let mut obj = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "w"}});
        obj[path[0]] = nested;
        obj
    }

    fn at<'v>(obj: &'v Value, path: &[&str]) -> &'v Value {
        path.iter().fold(obj, |v, key| &v[*key])
    }

    fn env_var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.into(),
                    key: key.into(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        }
    }

    #[test]
    fn env_vars_override_by_name_and_append_in_containers_and_init_containers() {
        let env_vars = [from_secret("B", "db", "password"), env_var("C", "3")];
        for (api_version, kind, path) in workloads() {
            let template = workload(
                &api_version,
                kind,
                path,
                json!({
                    "containers": [
                        {"name": "app", "image": "i", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                        {"name": "sidecar", "image": "s", "env": null},
                    ],
                    "initContainers": [{"name": "migrate", "image": "m"}],
                }),
            );
            let out = render_with_env(&[template], &env_vars).unwrap();
            let pod_spec = at(&out.objects[0].object, path);
            let b = json!({"name": "B", "valueFrom": {"secretKeyRef": {"key": "password", "name": "db"}}});
            let c = json!({"name": "C", "value": "3"});
            assert_eq!(
                pod_spec["containers"][0],
                json!({"name": "app", "image": "i",
                    "env": [{"name": "A", "value": "1"}, b, c]}),
                "{kind}"
            );
            assert_eq!(
                pod_spec["containers"][1],
                json!({"name": "sidecar", "image": "s", "env": [b, c]}),
                "{kind}"
            );
            assert_eq!(
                pod_spec["initContainers"][0],
                json!({"name": "migrate", "image": "m", "env": [b, c]}),
                "{kind}"
            );
        }
    }

    #[test]
    fn a_later_env_var_of_the_same_name_wins_and_every_entry_of_that_name_is_replaced() {
        let template = workload(
            "apps/v1",
            "Deployment",
            &["spec", "template", "spec"],
            json!({"containers": [{"name": "app", "env": [
                {"name": "A", "value": "1"}, {"name": "X", "value": "x"}, {"name": "A", "value": "2"}]}]}),
        );
        let out = render_with_env(
            &[template],
            &[
                env_var("A", "first"),
                env_var("D", "d1"),
                env_var("A", "last"),
                env_var("D", "d2"),
            ],
        )
        .unwrap();
        assert_eq!(
            out.objects[0].object["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "last"}, {"name": "X", "value": "x"},
                {"name": "A", "value": "last"}, {"name": "D", "value": "d2"}])
        );
    }

    #[test]
    fn placeholders_in_env_var_values_are_substituted() {
        let template = workload(
            "v1",
            "Pod",
            &["spec"],
            json!({"containers": [{"name": "app"}]}),
        );
        let out = render_with_env(
            &[template],
            &[
                env_var(
                    "URL",
                    "https://pr{{PR_NUMBER}}.example.com/{{ HEAD_BRANCH_SLUG }}",
                ),
                from_secret("DB_PASSWORD", "db-pr{{PR_NUMBER}}", "password"),
                env_var("KEEP", "{{NOT_A_VAR}} and {{ .Go }}"),
            ],
        )
        .unwrap();
        assert_eq!(
            out.objects[0].object["spec"]["containers"][0]["env"],
            json!([
                {"name": "URL", "value": "https://pr123.example.com/feature-login"},
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"key": "password", "name": "db-pr123"}}},
                {"name": "KEEP", "value": "{{NOT_A_VAR}} and {{ .Go }}"},
            ])
        );
        assert_eq!(
            out.warnings,
            ["unknown variable {{NOT_A_VAR}} left verbatim"]
        );
    }

    #[test]
    fn kinds_without_a_pod_spec_are_untouched() {
        let pod_spec_shaped = json!({"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "A", "value": "1"}]}]}}});
        let templates = [
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": pod_spec_shaped}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"env": "x"}}),
            // A CRD of the same shape (and one borrowing a built-in kind's name): not ours to change.
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "r"}, "spec": pod_spec_shaped}),
            json!({"apiVersion": "example.com/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": pod_spec_shaped}),
        ];
        assert_eq!(
            render_with_env(&templates, &[env_var("A", "2"), env_var("B", "3")]).unwrap(),
            render(&templates).unwrap()
        );
    }

    #[test]
    fn workloads_without_a_pod_spec_or_containers_are_left_alone() {
        let templates = [
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "no-spec"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "no-template"}, "spec": {"replicas": 1}}),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "null-pod-spec"}, "spec": {"template": {"spec": null}}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "no-containers"}, "spec": {"containers": null}}),
        ];
        assert_eq!(
            render_with_env(&templates, &[env_var("A", "1")]).unwrap(),
            render(&templates).unwrap()
        );
    }

    #[test]
    fn a_non_list_env_is_an_invalid_template() {
        let deployment = |pod_spec: Value| {
            workload(
                "apps/v1",
                "Deployment",
                &["spec", "template", "spec"],
                pod_spec,
            )
        };
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let cases = [
            (
                deployment(json!({"containers": [{"name": "app", "env": "A=1"}]})),
                "spec.template.spec.containers[0].env must be a list",
            ),
            (
                deployment(json!({"containers": [{"name": "app"}],
                    "initContainers": [{"name": "init"}, {"name": "m", "env": {"A": "1"}}]})),
                "spec.template.spec.initContainers[1].env must be a list",
            ),
            (
                deployment(json!({"containers": {"app": {"image": "i"}}})),
                "spec.template.spec.containers must be a list",
            ),
            (
                deployment(json!({"containers": ["app"]})),
                "spec.template.spec.containers[0] must be an object",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
                    "spec": {"template": "app"}}),
                "spec.template must be an object",
            ),
        ];
        for (template, reason) in cases {
            let templates = [cm.clone(), template];
            let err = render_with_env(&templates, &[env_var("A", "2")]).unwrap_err();
            assert_eq!(
                err,
                RenderError::Invalid {
                    index: 1,
                    reason: reason.to_owned()
                }
            );
            assert_eq!(err.to_string(), format!("resources[1]: {reason}"));
            // Without envVars the renderer does not look at containers, as before.
            render(&templates).unwrap();
        }
    }

    #[test]
    fn empty_env_vars_leave_the_workloads_as_the_templates_say() {
        for (api_version, kind, path) in workloads() {
            let pod_spec = json!({
                "containers": [{"name": "app"}, {"name": "b", "env": null}, {"name": "c", "env": "odd"}],
                "initContainers": [{"name": "init", "env": [{"name": "A", "value": "1"}]}],
            });
            let template = workload(&api_version, kind, path, pod_spec.clone());
            let out = render_with_env(&[template], &[]).unwrap();
            assert_eq!(at(&out.objects[0].object, path), &pod_spec, "{kind}");
        }
    }

    #[test]
    fn short_sha_of_short_input_is_whole() {
        assert_eq!(short_sha("abc"), "abc");
    }

    /// The shape of a tree: keys and structure, with every string replaced by a marker.
    fn shape(v: &Value) -> Value {
        match v {
            Value::String(_) => Value::String(String::new()),
            Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
            }
            other => other.clone(),
        }
    }

    /// An `EnvVar` of a few names (so that they collide), set by value or from a Secret.
    fn arbitrary_env_var() -> impl Strategy<Value = EnvVar> {
        ("[ABCD]", "[a-z0-9{}]{0,6}", any::<bool>()).prop_map(|(name, v, by_value)| {
            if by_value {
                env_var(&name, &v)
            } else {
                from_secret(&name, "s", &v)
            }
        })
    }

    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("\"quoted\": value\n- item\n---\n...\n".to_owned()),
            Just("{{PR_NUMBER}}{{ COMMIT_REF }}{{".to_owned()),
            Just("a: b\nc: [d, {e: f}]\n".to_owned()),
            Just("'\"\\\n\r\t#&*!|>%@`".to_owned()),
            Just("x".repeat(10 * 1024)),
            Just("--- !!map\n? key\n: value".to_owned()),
            "\\PC{0,64}",
            ".{0,64}",
        ]
    }

    proptest! {
        #[test]
        fn hostile_branches_and_titles_cannot_change_the_shape(branch in hostile(), base in hostile(), title in hostile(), author in hostile()) {
            let template = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c-{{PR_NUMBER}}", "annotations": {"branch": "{{HEAD_BRANCH}}"}},
                "data": {
                    "all": VARIABLE_NAMES.iter().map(|v| format!("{{{{{v}}}}}")).collect::<Vec<_>>().join(" "),
                    "title": "{{PR_TITLE}}",
                    "base": "{{ BASE_BRANCH }}",
                    "author": "{{PR_AUTHOR}}",
                    "list": ["{{HEAD_BRANCH}}", {"nested": "{{PR_TITLE}}"}],
                }
            });
            let mut v = vars();
            v.head_branch = branch.clone();
            v.base_branch = base;
            v.title = title.clone();
            v.author = author;
            let policy = ObjectPolicy::default();
            let out = render_resources(std::slice::from_ref(&template), &v, &RenderContext { policy: &policy, scope_of: &offline_scope, owner: None, env_vars: &[] }).unwrap();
            let rendered = &out.objects[0].object;
            // Keys and structure are those of the template plus what rendering adds (namespace, labels).
            let mut expected = shape(&template);
            expected["metadata"]["namespace"] = Value::String(String::new());
            expected["metadata"]["labels"] = shape(&json!(object_labels("x", 1)));
            expected["metadata"]["annotations"][ANNOTATION_ENVIRONMENT] = Value::String(String::new());
            prop_assert_eq!(shape(rendered), expected);
            prop_assert_eq!(rendered["data"]["title"].as_str(), Some(title.as_str()));
            prop_assert_eq!(rendered["metadata"]["annotations"]["branch"].as_str(), Some(branch.as_str()));
            // What is printed and applied as YAML parses back to the very same tree.
            let yaml = serde_yaml::to_string(rendered).unwrap();
            let back: Value = serde_yaml::from_str(&yaml).unwrap();
            prop_assert_eq!(&back, rendered);
        }

        #[test]
        fn injecting_env_vars_twice_changes_nothing_more(
            env_vars in proptest::collection::vec(arbitrary_env_var(), 0..6),
            app_env in proptest::collection::vec(arbitrary_env_var(), 0..6),
            init_env in proptest::option::of(proptest::collection::vec(arbitrary_env_var(), 0..3)),
        ) {
            let env_vars: Vec<Value> = env_vars.iter().map(|e| serde_json::to_value(e).unwrap()).collect();
            let mut init = json!({"name": "init"});
            if let Some(env) = init_env {
                init["env"] = serde_json::to_value(env).unwrap();
            }
            let path = ["spec", "template", "spec"];
            let mut obj = workload("apps/v1", "Deployment", &path, json!({
                "containers": [{"name": "app", "env": app_env}],
                "initContainers": [init],
            }));
            let obj = obj.as_object_mut().unwrap();
            inject_env_vars(obj, &path, &env_vars).unwrap();
            let once = obj.clone();
            inject_env_vars(obj, &path, &env_vars).unwrap();
            prop_assert_eq!(&*obj, &once);
            // Every container holds each injected name with the last value given for it.
            for container in once["spec"]["template"]["spec"]["containers"].as_array().unwrap()
                .iter().chain(once["spec"]["template"]["spec"]["initContainers"].as_array().unwrap())
            {
                for var in &env_vars {
                    let last = env_vars.iter().rfind(|v| v["name"] == var["name"]).unwrap();
                    let entries: Vec<&Value> = container["env"].as_array().unwrap()
                        .iter().filter(|e| e["name"] == var["name"]).collect();
                    prop_assert!(!entries.is_empty());
                    prop_assert!(entries.iter().all(|e| *e == last));
                }
            }
        }

        #[test]
        fn strings_without_placeholders_are_unchanged(s in "[^{]{0,200}") {
            prop_assert_eq!(r(&s).0, s);
        }
    }

    #[test]
    fn the_environment_url_is_rendered_and_must_be_an_http_url() {
        let v = vars();
        assert_eq!(
            render_environment_url("https://pr{{PR_NUMBER}}.review.example.com/", &v),
            Ok("https://pr123.review.example.com/".to_owned())
        );
        for bad in [
            "pr{{PR_NUMBER}}.review.example.com",
            "ftp://pr{{PR_NUMBER}}.example.com",
            "https://{{NOT_A_VARIABLE}}.example.com",
        ] {
            let e = render_environment_url(bad, &v).unwrap_err();
            assert!(e.contains("environmentURL"), "{bad}: {e}");
            let e = render_url("logURL", bad, &v).unwrap_err();
            assert!(e.starts_with("logURL"), "{bad}: {e}");
        }
    }
}
