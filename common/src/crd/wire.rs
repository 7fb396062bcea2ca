//! The `PR` spec as it is stored: kubetempura's fields beside the original KubeTempura's
//! (`parentReviewApp`, `prNumber`, `headCommitRef`, `envVars`), read into one normalised
//! [`PRSpec`] and written back with both sets.
//!
//! | [`PRSpec`] | stored, kubetempura | stored, original | when both are stored |
//! |---|---|---|---|
//! | `review_app` | `reviewApp` | `parentReviewApp` | must be equal |
//! | `number` | `number` (integer) | `prNumber` (decimal string) | must be equal |
//! | `head_sha` | `headSha` | `headCommitRef` | `headCommitRef` wins: it is the field people edit |
//! | `recorded_head` | `headSha` | — | what kubetempura last recorded |
//! | `env_vars` | — | `envVars` | shared; never written by the applier |
//!
//! The API server checks the same rules (see [`spec_rules`]) on every write; the reader checks
//! them again because stored objects are not re-validated.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::EnvVar;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Origin, PRSpec};

/// The record of one pull request's environment for one ReviewApp: kubetempura's fields and
/// the original KubeTempura's (`parentReviewApp`, `prNumber`, `headCommitRef`, `envVars`).
/// Either set may be given; kubetempura writes both.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PRSpecWire {
    /// Name of the ReviewApp (same namespace) this environment belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    review_app: Option<String>,
    /// The original KubeTempura's name for `reviewApp`; either may be given, both are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    parent_review_app: Option<String>,
    /// Repository URL as GitHub reports it (absent until kubetempura records an event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repository: Option<String>,
    /// Pull request number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::pr_number_schema")]
    number: Option<u64>,
    /// The original KubeTempura's pull request number, a decimal string; either may be given,
    /// both are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pr_number_string_schema")]
    pr_number: Option<String>,
    /// Full SHA of the head commit kubetempura recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    head_sha: Option<String>,
    /// Full SHA of the commit to deploy (the original KubeTempura's field). Edit it to roll the
    /// environment to another commit; it wins over `headSha`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "commit_schema")]
    head_commit_ref: Option<String>,
    /// Head branch of the latest event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head_branch: Option<String>,
    /// Base branch of the latest event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base_branch: Option<String>,
    /// Login of the pull request's author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    author: Option<String>,
    /// Pull request title of the latest event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    /// Labels of the latest event (for the ReviewApp's policy on re-render).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    labels: Vec<String>,
    /// Whether the pull request was a draft at the latest event.
    #[serde(default)]
    draft: bool,
    /// Whether the head branch lives in a fork.
    #[serde(default)]
    fork: bool,
    /// The pull request's `updated_at` of the latest event applied (orders events); absent
    /// until kubetempura records one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_event_at: Option<String>,
    /// The `updated_at` of the latest push (opened, reopened, a new head commit) or wake
    /// (`wakeLabel` added): `expireAfter` counts from it. Absent in records written before it
    /// was recorded (`lastEventAt` counts then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_push_at: Option<String>,
    /// `X-GitHub-Delivery` of the latest event applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_delivery_id: Option<String>,
    /// True once the pull request was closed or merged; the object is then a tombstone.
    #[serde(default)]
    closed: bool,
    /// Environment variables set in every container and init container of the environment's
    /// workloads (by name: an existing one is replaced, a new one appended). Kept across pushes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "env_vars_schema")]
    env_vars: Vec<EnvVar>,
    /// `Webhook`: kept up to date from GitHub's events. `Manual`: the object itself (made with
    /// kubectl, or by the original KubeTempura) drives the environment until an event for
    /// the pull request arrives. Absent: `Webhook` once an event was recorded, else `Manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<Origin>,
}

/// Why a stored spec cannot be read.
fn missing(what: &str) -> String {
    format!("spec.{what} is required")
}

impl TryFrom<PRSpecWire> for PRSpec {
    type Error = String;

    fn try_from(w: PRSpecWire) -> Result<Self, String> {
        let review_app = match (w.review_app, w.parent_review_app) {
            (Some(ours), Some(theirs)) if ours != theirs => {
                return Err(format!(
                    "spec.reviewApp {ours:?} and spec.parentReviewApp {theirs:?} differ"
                ));
            }
            (Some(name), _) | (None, Some(name)) => name,
            (None, None) => return Err(missing("parentReviewApp (or spec.reviewApp)")),
        };
        if review_app.is_empty() {
            return Err("spec.parentReviewApp is empty".to_owned());
        }
        let parsed = w.pr_number.as_deref().map(parse_pr_number).transpose()?;
        let number = match (w.number, parsed) {
            (Some(ours), Some(theirs)) if ours != theirs => {
                return Err(format!(
                    "spec.number {ours} and spec.prNumber {theirs:?} differ"
                ));
            }
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => return Err(missing("prNumber (or spec.number)")),
        };
        if number == 0 {
            return Err("spec.number must be positive".to_owned());
        }
        let head_sha = match (&w.head_commit_ref, &w.head_sha) {
            (Some(sha), _) | (None, Some(sha)) => sha.to_ascii_lowercase(),
            (None, None) => return Err(missing("headCommitRef (or spec.headSha)")),
        };
        if head_sha.is_empty() {
            return Err("spec.headCommitRef is empty".to_owned());
        }
        Ok(Self {
            review_app,
            repository: w.repository.unwrap_or_default(),
            number,
            head_sha,
            recorded_head: w.head_sha,
            head_branch: w.head_branch.unwrap_or_default(),
            base_branch: w.base_branch.unwrap_or_default(),
            author: w.author,
            title: w.title,
            labels: w.labels,
            draft: w.draft,
            fork: w.fork,
            origin: w.origin.unwrap_or(if w.last_event_at.is_some() {
                Origin::Webhook
            } else {
                Origin::Manual
            }),
            last_event_at: w.last_event_at.unwrap_or_default(),
            last_push_at: w.last_push_at,
            last_delivery_id: w.last_delivery_id,
            closed: w.closed,
            env_vars: w.env_vars,
        })
    }
}

/// `prNumber` as the original writes it: a positive decimal without sign or leading zeros.
fn parse_pr_number(s: &str) -> Result<u64, String> {
    let canonical = !s.is_empty()
        && !s.starts_with('0')
        && s.len() <= 18
        && s.bytes().all(|b| b.is_ascii_digit());
    if !canonical {
        return Err(format!(
            "spec.prNumber {s:?} is not a pull request number (a positive decimal)"
        ));
    }
    s.parse()
        .map_err(|_| format!("spec.prNumber {s:?} is out of range"))
}

impl From<PRSpec> for PRSpecWire {
    fn from(s: PRSpec) -> Self {
        let non_empty = |v: String| (!v.is_empty()).then_some(v);
        Self {
            parent_review_app: Some(s.review_app.clone()),
            review_app: Some(s.review_app),
            repository: non_empty(s.repository),
            number: Some(s.number),
            pr_number: Some(s.number.to_string()),
            head_commit_ref: Some(s.head_sha.clone()),
            head_sha: Some(s.head_sha),
            head_branch: non_empty(s.head_branch),
            base_branch: non_empty(s.base_branch),
            author: s.author,
            title: s.title,
            labels: s.labels,
            draft: s.draft,
            fork: s.fork,
            last_event_at: non_empty(s.last_event_at),
            last_push_at: s.last_push_at,
            last_delivery_id: s.last_delivery_id,
            closed: s.closed,
            env_vars: s.env_vars,
            origin: Some(s.origin),
        }
    }
}

/// The CEL rules of the stored spec: one of each pair is required, and when both are given they
/// agree. A change of `headSha` alone, beside a `headCommitRef` that says otherwise, is refused
/// (it would be ignored: `headCommitRef` wins).
pub(super) fn spec_rules() -> serde_json::Value {
    serde_json::json!([
        {
            "rule": "has(self.parentReviewApp) || has(self.reviewApp)",
            "message": "spec.parentReviewApp (or spec.reviewApp) is required"
        },
        {
            "rule": "has(self.prNumber) || has(self.number)",
            "message": "spec.prNumber (or spec.number) is required"
        },
        {
            "rule": "has(self.headCommitRef) || has(self.headSha)",
            "message": "spec.headCommitRef (or spec.headSha) is required"
        },
        {
            "rule": "!has(self.reviewApp) || !has(self.parentReviewApp) || self.reviewApp == self.parentReviewApp",
            "message": "spec.reviewApp and spec.parentReviewApp must be equal"
        },
        {
            "rule": "!has(self.number) || !has(self.prNumber) || string(self.number) == self.prNumber",
            "message": "spec.number and spec.prNumber must be equal"
        },
        {
            "rule": "!has(oldSelf.headSha) || !has(self.headSha) || self.headSha == oldSelf.headSha || !has(self.headCommitRef) || self.headCommitRef == self.headSha",
            "message": "edit spec.headCommitRef to change the commit (it wins over spec.headSha)"
        }
    ])
}

fn pr_number_string_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": "^[1-9][0-9]{0,17}$",
        "maxLength": 18
    })
}

fn commit_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": "^[0-9a-fA-F]{40}$",
        "maxLength": 40
    })
}

/// `envVars`: Kubernetes `EnvVar`s. `valueFrom` is kept as given: the API server checks it
/// where it lands, in the workloads.
fn env_vars_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 100,
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 256},
                "value": {"type": "string"},
                "valueFrom": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }
        }
    })
}

impl JsonSchema for PRSpec {
    fn schema_name() -> Cow<'static, str> {
        "PRSpec".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = PRSpecWire::json_schema(generator);
        schema.insert("x-kubernetes-validations".to_owned(), spec_rules());
        schema
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Origin, PR, PRSpec, parse_pr, pr_crd};
    use serde_json::json;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn spec(v: serde_json::Value) -> Result<PRSpec, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn a_spec_with_only_the_originals_fields_reads_like_ours() {
        let original = spec(json!({
            "parentReviewApp": "web",
            "prNumber": "123",
            "headCommitRef": SHA,
            "envVars": [{"name": "FLAG", "value": "on"}],
        }))
        .unwrap();
        assert_eq!(original.review_app, "web");
        assert_eq!(original.number, 123);
        assert_eq!(original.head_sha, SHA);
        assert_eq!(original.recorded_head, None);
        assert_eq!(original.repository, "");
        assert_eq!(original.last_event_at, "");
        assert_eq!(original.origin, Origin::Manual);
        assert_eq!(original.env_vars.len(), 1);
        assert_eq!(original.env_vars[0].value.as_deref(), Some("on"));
        assert!(original.needs_recording());

        let ours = spec(json!({
            "reviewApp": "web", "number": 123, "headSha": SHA,
            "repository": "https://github.com/o/r", "headBranch": "f", "baseBranch": "main",
            "lastEventAt": "2026-12-01T00:00:00Z",
        }))
        .unwrap();
        assert_eq!(ours.review_app, "web");
        assert_eq!(ours.number, 123);
        assert_eq!(
            ours.origin,
            Origin::Webhook,
            "records written before `origin`"
        );
        assert!(!ours.needs_recording());
    }

    #[test]
    fn records_written_by_the_applier_carry_both_sets_and_no_env_vars() {
        let mut s = spec(json!({
            "reviewApp": "web", "number": 7, "headSha": SHA,
            "lastEventAt": "2026-12-01T00:00:00Z",
        }))
        .unwrap();
        s.env_vars.clear();
        let written = serde_json::to_value(&s).unwrap();
        assert_eq!(written["parentReviewApp"], "web");
        assert_eq!(written["reviewApp"], "web");
        assert_eq!(written["prNumber"], "7");
        assert_eq!(written["number"], 7);
        assert_eq!(written["headCommitRef"], SHA);
        assert_eq!(written["headSha"], SHA);
        assert_eq!(written["origin"], "Webhook");
        assert!(written.get("envVars").is_none(), "{written}");
        assert!(
            written.get("repository").is_none(),
            "empty is not written: {written}"
        );
        assert_eq!(spec(written).unwrap(), s, "round trip");
    }

    #[test]
    fn head_commit_ref_wins_and_is_lowercased() {
        let edited = spec(json!({
            "reviewApp": "web", "number": 7, "headSha": SHA,
            "headCommitRef": "ABCDEF0123456789ABCDEF0123456789ABCDEF01",
            "lastEventAt": "2026-12-01T00:00:00Z",
        }))
        .unwrap();
        assert_eq!(edited.head_sha, "abcdef0123456789abcdef0123456789abcdef01");
        assert_eq!(edited.recorded_head.as_deref(), Some(SHA));
        assert!(
            edited.needs_recording(),
            "an edited headCommitRef asks for a deploy"
        );
    }

    #[test]
    fn pr_numbers_must_be_canonical_positive_decimals() {
        for bad in [
            "",
            "0",
            "012",
            "-1",
            "+1",
            "1e3",
            "12a",
            "1234567890123456789",
        ] {
            let r = spec(json!({"parentReviewApp": "web", "prNumber": bad, "headCommitRef": SHA}));
            assert!(r.is_err(), "{bad:?}");
        }
        let disagree = spec(json!({
            "reviewApp": "web", "parentReviewApp": "web", "number": 7, "prNumber": "8",
            "headSha": SHA,
        }));
        assert!(disagree.unwrap_err().to_string().contains("differ"));
        let other_app = spec(json!({
            "reviewApp": "web", "parentReviewApp": "api", "number": 7, "headSha": SHA,
        }));
        assert!(other_app.unwrap_err().to_string().contains("differ"));
        for missing in [
            json!({"prNumber": "7", "headCommitRef": SHA}),
            json!({"parentReviewApp": "web", "headCommitRef": SHA}),
            json!({"parentReviewApp": "web", "prNumber": "7"}),
        ] {
            let e = spec(missing.clone()).unwrap_err().to_string();
            assert!(e.contains("is required"), "{missing}: {e}");
        }
    }

    fn object(name: &str, spec: serde_json::Value) -> kube::core::DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "kubetempura.mercari.com/v1", "kind": "PR",
            "metadata": {"name": name, "namespace": "ns", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn a_name_that_is_not_reviewapp_pr_number_is_unreadable() {
        let spec = json!({"parentReviewApp": "web", "prNumber": "7", "headCommitRef": SHA});
        let pr: PR = parse_pr(object("web-pr7", spec.clone())).unwrap();
        assert_eq!(pr.spec.number, 7);
        let e = parse_pr(object("web-7", spec)).unwrap_err();
        assert_eq!((e.namespace.as_str(), e.name.as_str()), ("ns", "web-7"));
        assert!(e.reason.contains("web-pr7"), "{e}");
    }

    #[test]
    fn unreadable_objects_say_why() {
        let e = parse_pr(object(
            "web-pr7",
            json!({"parentReviewApp": "web", "prNumber": "abc", "headCommitRef": SHA}),
        ))
        .unwrap_err();
        assert!(e.reason.contains("abc"), "{e}");
        let mut bad_phase = object(
            "web-pr7",
            json!({"parentReviewApp": "web", "prNumber": "7", "headCommitRef": SHA}),
        );
        bad_phase.data["status"] = json!({"phase": "Hibernating"});
        let e = parse_pr(bad_phase).unwrap_err();
        assert!(e.reason.contains("Hibernating"), "{e}");
    }

    #[test]
    fn the_pr_schema_carries_the_rules_and_no_nullable_spec_field() {
        let crd = serde_json::to_value(pr_crd()).unwrap();
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let spec = &root["properties"]["spec"];
        assert!(spec.get("required").is_none(), "either set may be given");
        let rules: Vec<&str> = spec["x-kubernetes-validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap())
            .collect();
        assert_eq!(rules.len(), 6);
        assert!(rules.iter().any(|r| r.contains("oldSelf.headSha")));
        for (name, prop) in spec["properties"].as_object().unwrap() {
            assert!(prop.get("nullable").is_none(), "{name}");
        }
        for original in ["parentReviewApp", "prNumber", "headCommitRef", "envVars"] {
            assert!(spec["properties"].get(original).is_some(), "{original}");
        }
    }
}
