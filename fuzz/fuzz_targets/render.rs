//! The renderer on arbitrary template trees and variable values, and the branch slug.
//!
//! Input: ten NUL-separated fields (PR number in decimal, head branch, base branch, title,
//! author, owner, repository name, commit, ReviewApp name, namespace), then the templates as
//! JSON (one object or an array of them). Properties: rendering keeps keys and shape and only
//! changes strings with a placeholder; a placeholder becomes the variable's value verbatim; the
//! branch slug is always a DNS label; rendered objects are in the namespace, pass the policy
//! and print as YAML that parses back to the same tree. Rendered again with envVars made of
//! the input's fields: kinds without a pod spec are unchanged, and every container and init
//! container of a workload holds each envVar, rendered, with the last value given for its name.
#![no_main]

use std::collections::BTreeSet;
use std::sync::LazyLock;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use kubetempura_common::naming::{branch_slug, is_dns_label};
use kubetempura_common::policy::{GroupKind, ObjectPolicy, Scope, builtin_scope, pod_spec_path};
use kubetempura_common::render::{
    RenderContext, VARIABLE_NAMES, Variables, render_environment_url, render_resources,
    render_value,
};
use kubetempura_fuzz::shape;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

/// Every variable, in values and in keys (keys are never rendered).
static EVERY_VARIABLE: LazyLock<Value> = LazyLock::new(|| {
    let all: Vec<String> = VARIABLE_NAMES
        .iter()
        .map(|v| format!("{{{{{v}}}}}"))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c-{{PR_NUMBER}}", "labels": {"{{HEAD_BRANCH}}": "{{HEAD_BRANCH_SLUG}}"}},
        "data": {
            "all": all.join(" "),
            "branch": "{{HEAD_BRANCH}}",
            "title": "{{ PR_TITLE }}",
            "list": ["{{BASE_BRANCH}}", {"{{PR_AUTHOR}}": "{{PR_AUTHOR}}"}, 1, null, true],
        }
    })
});

/// Walks a template and its rendering together: same keys and shape; a string without `{{`
/// is unchanged.
fn check_rendered(template: &Value, rendered: &Value) {
    match (template, rendered) {
        (Value::String(t), Value::String(r)) => {
            if !t.contains("{{") {
                assert_eq!(t, r, "a string without a placeholder changed");
            }
        }
        (Value::Array(t), Value::Array(r)) => {
            assert_eq!(t.len(), r.len());
            t.iter().zip(r).for_each(|(t, r)| check_rendered(t, r));
        }
        (Value::Object(t), Value::Object(r)) => {
            assert!(t.keys().eq(r.keys()), "keys changed");
            t.values()
                .zip(r.values())
                .for_each(|(t, r)| check_rendered(t, r));
        }
        (t, r) => assert_eq!(t, r, "a non-string value changed"),
    }
}

/// envVars a stranger shapes: a name and values from the input's fields, placeholders, and a
/// name given twice (the later one wins).
fn env_vars(vars: &Variables) -> Vec<EnvVar> {
    vec![
        EnvVar {
            name: vars.author.clone(),
            value: Some(vars.title.clone()),
            value_from: None,
        },
        EnvVar {
            name: "PR_URL".to_owned(),
            value: Some("https://pr{{PR_NUMBER}}.{{ HEAD_BRANCH_SLUG }}.example".to_owned()),
            value_from: None,
        },
        EnvVar {
            name: vars.author.clone(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "db-{{PR_NUMBER}}".to_owned(),
                    key: vars.base_branch.clone(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        },
    ]
}

/// Checks a workload rendered with `env_vars` (rendered): every container and init container of
/// its pod spec at `path` holds each name, only with the last value given for it.
fn check_env(object: &Value, path: &[&str], env_vars: &[Value]) {
    let Some(pod_spec) = path.iter().try_fold(object, |v, key| v.get(key)) else {
        return;
    };
    for field in ["containers", "initContainers"] {
        for container in pod_spec[field].as_array().into_iter().flatten() {
            let env = container["env"].as_array().expect("env became a list");
            for var in env_vars {
                let last = env_vars.iter().rfind(|v| v["name"] == var["name"]);
                let mut entries = env.iter().filter(|e| e["name"] == var["name"]).peekable();
                assert!(entries.peek().is_some(), "{var} not set in {container}");
                assert!(
                    entries.all(|e| Some(e) == last),
                    "{var}: not the last value"
                );
            }
        }
    }
}

fn offline_scope(api_version: &str, kind: &str) -> Option<Scope> {
    Some(builtin_scope(&GroupKind::from_api_version(
        api_version,
        kind,
    )))
}

fuzz_target!(|data: &[u8]| {
    let mut fields = data.splitn(11, |b| *b == 0);
    let mut next = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let pr_number = next().trim().parse().unwrap_or(1);
    let vars = Variables {
        pr_number,
        head_branch: next(),
        base_branch: next(),
        title: next(),
        author: next(),
        repository_owner: next(),
        repository_name: next(),
        commit_ref: next(),
        review_app: next(),
        namespace: next(),
    };
    let templates = fields.next().unwrap_or_default();

    for branch in [&vars.head_branch, &vars.base_branch, &vars.title] {
        let slug = branch_slug(branch);
        assert!(is_dns_label(&slug), "{branch:?} gives the slug {slug:?}");
    }
    let _ = render_environment_url(&vars.title, &vars);

    let mut warnings = BTreeSet::new();
    let rendered = render_value(&EVERY_VARIABLE, &vars, &mut warnings);
    check_rendered(&EVERY_VARIABLE, &rendered);
    assert_eq!(shape(&rendered), shape(&EVERY_VARIABLE));
    assert_eq!(
        rendered["data"]["branch"].as_str(),
        Some(vars.head_branch.as_str())
    );
    assert_eq!(
        rendered["data"]["title"].as_str(),
        Some(vars.title.as_str())
    );

    let Ok(template) = serde_json::from_slice::<Value>(templates) else {
        return;
    };
    let rendered = render_value(&template, &vars, &mut warnings);
    check_rendered(&template, &rendered);

    let templates = match template {
        Value::Array(items) => items,
        one => vec![one],
    };
    let policy = ObjectPolicy::default();
    let ctx = RenderContext {
        policy: &policy,
        scope_of: &offline_scope,
        owner: None,
        env_vars: &[],
    };
    let Ok(out) = render_resources(&templates, &vars, &ctx) else {
        return;
    };
    assert_eq!(out.objects.len(), templates.len());
    for object in &out.objects {
        let metadata = &object.object["metadata"];
        match object.scope {
            Scope::Namespaced => {
                assert_eq!(
                    metadata["namespace"].as_str(),
                    Some(vars.namespace.as_str())
                );
            }
            Scope::Cluster => assert!(metadata.get("namespace").is_none()),
        }
        assert_eq!(metadata["name"].as_str(), Some(object.name.as_str()));
        policy
            .check_object(&object.group_kind(), object.scope, &object.object)
            .expect("a rendered object passes the policy it was rendered with");
        // What `kubetempura render` prints parses back to the very tree that is applied.
        let yaml = serde_yaml::to_string(&object.object).expect("a JSON tree prints as YAML");
        let back: Value = serde_yaml::from_str(&yaml).expect("printed YAML parses");
        assert_eq!(
            back, object.object,
            "YAML round trip changed the object:\n{yaml}"
        );
    }

    let env_vars = env_vars(&vars);
    let with_env = RenderContext {
        env_vars: &env_vars,
        ..ctx
    };
    // Containers not shaped like a pod spec's are an error only with envVars.
    let Ok(injected) = render_resources(&templates, &vars, &with_env) else {
        return;
    };
    let rendered_env: Vec<Value> = env_vars
        .iter()
        .map(|e| {
            let e = serde_json::to_value(e).expect("an EnvVar serialises");
            render_value(&e, &vars, &mut BTreeSet::new())
        })
        .collect();
    for (plain, injected) in out.objects.iter().zip(&injected.objects) {
        match pod_spec_path(&plain.group_kind()) {
            None => assert_eq!(plain, injected, "envVars changed a kind without a pod spec"),
            Some(path) => check_env(&injected.object, path, &rendered_env),
        }
    }
});
