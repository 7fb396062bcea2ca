//! The custom resources: `ReviewApp` (what to create per pull request) and `PR` (the record of
//! one environment). Group `kubetempura.mercari.com`, version `v1`, compatible with the
//! original KubeTempura's `ReviewApp`.

use std::collections::BTreeMap;

use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod wire;

/// A ReviewApp: the templates of the objects to create for every pull request of one
/// repository. Fields beyond `githubRepository` and `resources` are kubetempura additions; each
/// defaults to the original KubeTempura behaviour.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubetempura.mercari.com",
    version = "v1",
    kind = "ReviewApp",
    plural = "reviewapps",
    shortname = "ra",
    namespaced,
    status = "ReviewAppStatus",
    printcolumn = r#"{"name":"Repository","type":"string","jsonPath":".spec.githubRepository"}"#,
    printcolumn = r#"{"name":"Active","type":"integer","jsonPath":".status.activePRs"}"#,
    printcolumn = r#"{"name":"Waiting","type":"integer","jsonPath":".status.waitingPRs","priority":1}"#,
    printcolumn = r#"{"name":"Queued","type":"integer","jsonPath":".status.queuedPRs","priority":1}"#,
    printcolumn = r#"{"name":"Expired","type":"integer","jsonPath":".status.expiredPRs","priority":1}"#,
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"TemplateValid\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReviewAppSpec {
    /// URL of the GitHub repository whose pull requests get environments, e.g.
    /// `https://github.com/mercari/not-exists` (matched case-insensitively; a trailing `/` or
    /// `.git` is tolerated).
    pub github_repository: String,
    /// Templates of the objects to create for each pull request. String values may use
    /// `{{PR_NUMBER}}`, `{{COMMIT_REF}}`, `{{COMMIT_REF_SHORT}}` and the other variables in the
    /// README.
    #[schemars(schema_with = "templates_schema")]
    pub resources: Vec<serde_json::Value>,
    /// Which pull requests get an environment. Absent: every non-fork pull request, as the
    /// original KubeTempura did for trusted PRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ReviewAppPolicy>,
    /// The URL of each environment, rendered with the template variables, e.g.
    /// `https://pr{{PR_NUMBER}}.review.example.com`: an absolute `http` or `https` URL once
    /// rendered. Recorded on the `PR` status. Absent: environments have no URL.
    #[serde(
        default,
        rename = "environmentURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub environment_url: Option<String>,
    /// Where to read each environment's logs (a dashboard, a log search), rendered like
    /// `environmentURL`, e.g. `https://grafana.example.com/explore?ns=review&pr={{PR_NUMBER}}`.
    /// Linked from the pull request's deployment statuses. Absent: no link.
    #[serde(default, rename = "logURL", skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// How long the environment's workloads (Deployments, StatefulSets, DaemonSets) may take to
    /// roll out after an apply before the environment counts as failed, as a duration such as
    /// `10m`, `90s` or `1h30m`. Absent: 10 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_schema")]
    pub readiness_timeout: Option<String>,
    /// Checks that must have succeeded for a head commit before it is deployed (build-gated
    /// rollout): until then the environment stays on its previous commit (phase `Waiting`), and
    /// a failed check stops it there (phase `Blocked`). Absent: every push deploys at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<WaitFor>,
    /// Remove an environment after this long without a push (idle expiry), as a duration such
    /// as `48h`: its objects are deleted, its `PR` record stays in phase `Expired`, and the next
    /// push (or adding `wakeLabel`) brings it back. Absent: environments live until closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_schema")]
    pub expire_after: Option<String>,
    /// A label that, when added to the pull request, brings back an expired environment (and
    /// counts as a push for `expireAfter`), e.g. `preview`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_schema")]
    pub wake_label: Option<String>,
    /// At most this many environments of this ReviewApp are deployed at once; the others wait in
    /// phase `Queued`, oldest pull request first, until one closes, expires or stops passing
    /// the policy. Absent: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "max_active_schema")]
    pub max_active: Option<u32>,
}

/// The checks a build-gated ReviewApp waits for. Names are matched exactly, as GitHub shows
/// them; a check is satisfied when its latest result for the head commit is `success`,
/// `neutral` or `skipped`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitFor {
    /// Check runs, by name (the `check_run` event), e.g. `build`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub check_runs: Vec<String>,
    /// Check suites, by the slug of the GitHub App that runs them (the `check_suite` event),
    /// e.g. `github-actions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub check_suites: Vec<String>,
    /// GitHub Actions workflow runs, by workflow name (the `workflow_run` event), e.g. `CI`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workflows: Vec<String>,
    /// Commit statuses, by context (the `status` event), e.g. `ci/circleci: build`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<String>,
}

/// The readiness timeout when a ReviewApp names none.
pub const DEFAULT_READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

impl ReviewAppSpec {
    /// The readiness timeout (a value the schema's pattern let through but that overflows falls
    /// back to the default).
    pub fn readiness_timeout(&self) -> std::time::Duration {
        self.readiness_timeout
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(DEFAULT_READINESS_TIMEOUT)
    }

    /// The idle expiry, if any (a value that overflows counts as none).
    pub fn expire_after(&self) -> Option<std::time::Duration> {
        self.expire_after.as_deref().and_then(parse_duration)
    }

    /// The build gate, if it awaits anything.
    pub fn gate(&self) -> Option<&WaitFor> {
        self.wait_for.as_ref().filter(|w| !w.is_empty())
    }
}

/// Parses a duration in Go's (and Kubernetes') notation restricted to whole units: `90s`, `10m`,
/// `1h30m`, `250ms`. `None` for anything else.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let mut total = std::time::Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (std::time::Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (std::time::Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (std::time::Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (std::time::Duration::from_secs(3600), 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
    }
    Some(total)
}

/// A duration string the API server checks before the applier sees it.
fn duration_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": "^([0-9]+(ms|s|m|h))+$",
        "maxLength": 32
    })
}

/// A label name as GitHub allows it (at most 50 characters).
fn label_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 50
    })
}

fn max_active_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "integer",
        "format": "int32",
        "minimum": 1
    })
}

/// Filters deciding which pull requests get an environment. Every field is optional and the
/// defaults deploy every pull request that is not from a fork.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewAppPolicy {
    /// Deploy pull requests whose head branch is in another repository (a fork). Off by
    /// default: a fork's author could otherwise run code in your cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_forks: Option<bool>,
    /// Deploy draft pull requests (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_drafts: Option<bool>,
    /// Deploy only pull requests carrying every one of these labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_labels: Vec<String>,
    /// Never deploy pull requests carrying any of these labels (e.g. `no-preview`); an
    /// excluded label wins over a required one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_labels: Vec<String>,
    /// Deploy only pull requests whose head branch matches one of these glob patterns (`*` any
    /// run of characters, `?` one character). Empty: any branch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub head_branches: Vec<String>,
    /// Deploy only pull requests whose base branch matches one of these glob patterns. Empty:
    /// any branch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base_branches: Vec<String>,
}

/// Observed state of a ReviewApp.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewAppStatus {
    /// The generation of the spec the applier last rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many pull requests currently have a live environment.
    #[serde(default, rename = "activePRs", skip_serializing_if = "Option::is_none")]
    pub active_prs: Option<i64>,
    /// How many environments wait for checks (`Waiting`) or were stopped by one (`Blocked`).
    #[serde(default, rename = "waitingPRs", skip_serializing_if = "is_zero")]
    pub waiting_prs: i64,
    #[serde(default, rename = "blockedPRs", skip_serializing_if = "is_zero")]
    pub blocked_prs: i64,
    /// How many environments wait for a free slot under `maxActive` (`Queued`).
    #[serde(default, rename = "queuedPRs", skip_serializing_if = "is_zero")]
    pub queued_prs: i64,
    /// How many environments were removed after `expireAfter` without a push (`Expired`).
    #[serde(default, rename = "expiredPRs", skip_serializing_if = "is_zero")]
    pub expired_prs: i64,
    /// Placeholders that look like variables but are not known (left verbatim).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// `TemplateValid` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference.
fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The record of one pull request's environment for one ReviewApp, named
/// `<reviewapp>-pr<number>` and owned by the ReviewApp.
///
/// The stored spec holds kubetempura's fields and the original KubeTempura's (see [`wire`] for
/// the mapping); this is the normalised view of both.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "kubetempura.mercari.com",
    version = "v1",
    kind = "PR",
    plural = "prs",
    singular = "pr",
    namespaced,
    status = "PRStatus",
    printcolumn = r#"{"name":"ReviewApp","type":"string","jsonPath":".spec.reviewApp"}"#,
    printcolumn = r#"{"name":"PR","type":"integer","jsonPath":".spec.number"}"#,
    printcolumn = r#"{"name":"Branch","type":"string","jsonPath":".spec.headBranch"}"#,
    printcolumn = r#"{"name":"Commit","type":"string","jsonPath":".status.commitShort"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Rollout","type":"string","jsonPath":".status.conditions[?(@.type==\"RolledOut\")].reason"}"#,
    printcolumn = r#"{"name":"Queue","type":"integer","jsonPath":".status.queuePosition","priority":1}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.environmentURL","priority":1}"#,
    printcolumn = r#"{"name":"Origin","type":"string","jsonPath":".spec.origin","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(try_from = "wire::PRSpecWire", into = "wire::PRSpecWire")]
pub struct PRSpec {
    /// Name of the ReviewApp (same namespace) this environment belongs to.
    pub review_app: String,
    /// Repository URL as GitHub reports it; empty until an event (or the PR object itself,
    /// from its ReviewApp) was recorded.
    pub repository: String,
    /// Pull request number.
    pub number: u64,
    /// Full SHA of the head commit to deploy: `headCommitRef` when stored, else `headSha`;
    /// lowercase.
    pub head_sha: String,
    /// `headSha` as stored: the head commit kubetempura last recorded. Differs from
    /// `head_sha` after a person edited `headCommitRef`; ignored when writing.
    pub recorded_head: Option<String>,
    /// Head branch of the latest event; empty when not known.
    pub head_branch: String,
    /// Base branch of the latest event; empty when not known.
    pub base_branch: String,
    /// Login of the pull request's author.
    pub author: Option<String>,
    /// Pull request title of the latest event.
    pub title: Option<String>,
    /// Labels of the latest event (for the ReviewApp's policy on re-render).
    pub labels: Vec<String>,
    /// Whether the pull request was a draft at the latest event.
    pub draft: bool,
    /// Whether the head branch lives in a fork.
    pub fork: bool,
    /// The pull request's `updated_at` of the latest event applied (orders events); empty
    /// when kubetempura never recorded one (an object of the original, or made with kubectl).
    pub last_event_at: String,
    /// The `updated_at` of the latest push (opened, reopened, a new head commit) or wake
    /// (`wakeLabel` added): `expireAfter` counts from it. Absent in records written before it
    /// was recorded (`lastEventAt` counts then).
    pub last_push_at: Option<String>,
    /// `X-GitHub-Delivery` of the latest event applied.
    pub last_delivery_id: Option<String>,
    /// True once the pull request was closed or merged; the object is then a tombstone.
    pub closed: bool,
    /// Environment variables set in every container and init container of the environment's
    /// workloads (`envVars`, as in the original). A person's: the applier never writes them.
    pub env_vars: Vec<k8s_openapi::api::core::v1::EnvVar>,
    /// Whether GitHub's events or the object itself drive the environment.
    pub origin: Origin,
}

/// What drives an environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Origin {
    /// GitHub's pull request events.
    #[default]
    Webhook,
    /// The `PR` object: applied with kubectl, or left by the original KubeTempura. Its
    /// ReviewApp's filters and `expireAfter` do not apply; it lives until the object is deleted
    /// or an event for its pull request takes it over.
    Manual,
}

impl PR {
    /// What the status's inventory lists (empty without a status).
    pub fn inventory(&self) -> &[InventoryEntry] {
        self.status
            .as_ref()
            .map(|s| s.inventory.as_slice())
            .unwrap_or_default()
    }

    /// True when the environment is deployed with other `envVars` than its spec holds now (a
    /// person edited them): it is to be rendered again.
    pub fn env_vars_changed(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            s.phase == Some(Phase::Applied) && s.applied_env_vars != self.spec.env_vars_digest()
        })
    }
}

impl PRSpec {
    /// A digest of `env_vars` (`None` when there are none), as recorded in
    /// [`PRStatus::applied_env_vars`].
    pub fn env_vars_digest(&self) -> Option<String> {
        use sha2::Digest as _;
        if self.env_vars.is_empty() {
            return None;
        }
        let json = serde_json::to_vec(&self.env_vars).unwrap_or_default();
        Some(hex::encode(&sha2::Sha256::digest(&json)[..12]))
    }

    /// True when the object asks for something kubetempura has not recorded: no event was
    /// recorded on it (an original or hand-made object), or `headCommitRef` was edited.
    pub fn needs_recording(&self) -> bool {
        self.last_event_at.is_empty() || self.recorded_head.as_deref() != Some(&self.head_sha)
    }
}

/// Why a stored `PR` object cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PR {namespace}/{name} cannot be read: {reason}")]
pub struct Unreadable {
    pub namespace: String,
    pub name: String,
    pub reason: String,
}

/// Reads a stored `PR` object, checking what the API server checks on writes (stored objects
/// are not re-validated: an object written before the schema, or under a looser one, may break
/// any rule).
pub fn parse_pr(obj: kube::core::DynamicObject) -> Result<PR, Unreadable> {
    let namespace = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let fail = |reason: String| Unreadable {
        namespace: namespace.clone(),
        name: name.clone(),
        reason,
    };
    // Field by field and by value (kube's `try_parse` serialises the whole object again first).
    let kube::core::DynamicObject {
        metadata, mut data, ..
    } = obj;
    let mut take = |field: &str| {
        data.get_mut(field)
            .map(serde_json::Value::take)
            .filter(|v| !v.is_null())
    };
    let spec: PRSpec = serde_json::from_value(take("spec").unwrap_or_default())
        .map_err(|e| fail(format!("spec: {e}")))?;
    let status: Option<PRStatus> = take("status")
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| fail(format!("status: {e}")))?;
    let pr = PR {
        metadata,
        spec,
        status,
    };
    let expected = crate::naming::pr_object_name(&pr.spec.review_app, pr.spec.number);
    if name != expected {
        return Err(fail(format!(
            "its name is not {expected} (<parentReviewApp>-pr<prNumber>)"
        )));
    }
    Ok(pr)
}

/// The `PR` CRD. (The object's name is checked by the reader, [`parse_pr`]: a CEL rule on
/// `metadata.name` exceeds the API server's cost budget.)
pub fn pr_crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    let mut crd = PR::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            // Spec fields are absent or set, never null: a null would satisfy `has()` in the
            // rules and then fail them.
            let spec = schema.properties.as_mut().and_then(|p| p.get_mut("spec"));
            for field in spec
                .and_then(|s| s.properties.as_mut())
                .into_iter()
                .flat_map(|p| p.values_mut())
            {
                field.nullable = None;
            }
        }
    }
    crd
}

/// Lifecycle of an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Every object of the last render was applied.
    Applied,
    /// The last render or apply failed; see the conditions.
    Failed,
    /// The pull request does not pass the ReviewApp's policy; nothing is deployed.
    Skipped,
    /// The pull request is closed; its objects were deleted.
    Closed,
    /// The head commit waits for the ReviewApp's `waitFor` checks; the previous commit (if any)
    /// stays deployed.
    Waiting,
    /// An awaited check failed on the head commit; the previous commit (if any) stays deployed.
    Blocked,
    /// The ReviewApp's `maxActive` environments are deployed; this one waits for a free slot.
    Queued,
    /// No push for the ReviewApp's `expireAfter`: the objects were deleted, the next push (or
    /// the wake label) brings them back.
    Expired,
}

impl Phase {
    /// The phase as `kubectl get prs` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "Applied",
            Self::Failed => "Failed",
            Self::Skipped => "Skipped",
            Self::Closed => "Closed",
            Self::Waiting => "Waiting",
            Self::Blocked => "Blocked",
            Self::Queued => "Queued",
            Self::Expired => "Expired",
        }
    }
}

/// Observed state of an environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PRStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// First 7 characters of the head commit applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_short: Option<String>,
    /// Full head commit applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_commit: Option<String>,
    /// The ReviewApp generation the objects were rendered from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_generation: Option<i64>,
    /// Digest of the `spec.envVars` the objects were rendered with (absent: none), so an edit
    /// of them re-renders the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_env_vars: Option<String>,
    /// The objects created for this environment (deleted on close, pruned on re-render).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<InventoryEntry>,
    /// Human-readable summary of the last outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the pull request was closed (for tombstone retention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The environment's URL (the ReviewApp's `environmentURL`, rendered), while it is deployed.
    #[serde(
        default,
        rename = "environmentURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub environment_url: Option<String>,
    /// Where to read the environment's logs (the ReviewApp's `logURL`, rendered).
    #[serde(default, rename = "logURL", skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// The rollout of the applied commit: whether its workloads are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// The build gate of the head commit, while it is not passed (`Waiting`, `Blocked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateStatus>,
    /// Position in the ReviewApp's `maxActive` queue (1: deployed next), while `Queued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "queue_position_schema")]
    pub queue_position: Option<u32>,
    /// When the environment expired (RFC 3339), while `Expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<String>,
    /// The last environment state sent to the feedback queue (`kubetempura run
    /// --feedback-queue-url`), so each change is sent once, after restarts too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<FeedbackRecord>,
}

/// The build gate of a head commit that is not deployed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateStatus {
    /// The head commit waiting.
    pub commit: String,
    /// The awaited checks that have not succeeded yet, e.g. "check run `build`".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// The awaited check that failed, e.g. "check run `build`".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// Where to see the failed check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Where the rollout of an applied commit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutState {
    /// Workloads are rolling out.
    Progressing,
    /// Every workload rolled out (or the environment has none).
    Complete,
    /// The workloads did not roll out within the ReviewApp's readiness timeout.
    TimedOut,
}

/// The rollout of the applied commit and ReviewApp generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// The commit being rolled out.
    pub commit: String,
    /// The ReviewApp generation rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    pub state: RolloutState,
    /// What is being waited for, or what rolled out.
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time of the apply that started the rollout.
    pub started_at: String,
    /// RFC 3339 time it completed or timed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// An environment state sent to the feedback queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackRecord {
    /// `deploying`, `ready`, `failed`, `closed`, `skipped`, `waiting`, `blocked`, `queued` or
    /// `expired`.
    pub state: String,
    /// The commit the state was about.
    pub commit: String,
    /// A digest of what was sent (state, commit, message, URL): a change of any sends again.
    pub digest: String,
    /// RFC 3339 time of the event sent.
    pub time: String,
}

/// One object the applier created.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct InventoryEntry {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// The object's uid when it was applied: deletes carry it as a precondition, so an object
    /// deleted and re-created by someone else under the same name is never deleted. Absent in
    /// inventories written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl InventoryEntry {
    /// Whether readiness waits for this object: a Deployment, StatefulSet or DaemonSet (other
    /// kinds count as ready once applied).
    pub fn is_workload(&self) -> bool {
        self.identity().0 == "apps"
            && matches!(
                self.kind.as_str(),
                "Deployment" | "StatefulSet" | "DaemonSet"
            )
    }

    /// What identifies the object in the cluster: API group, kind, namespace and name. The
    /// version is only how it was addressed: `networking.istio.io/v1beta1` and `/v1` name the
    /// same VirtualService, so pruning and de-duplication compare this, never `api_version`.
    pub fn identity(&self) -> (&str, &str, Option<&str>, &str) {
        let group = self
            .api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group);
        (group, &self.kind, self.namespace.as_deref(), &self.name)
    }
}

/// A status condition, shaped like `metav1.Condition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time the status last changed.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// An int64 (the formats Kubernetes knows): schemars' `uint64` makes kube-apiserver warn
/// "unrecognized format" on every apply of the CRD.
fn pr_number_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "integer",
        "format": "int64",
        "minimum": 1
    })
}

/// An int32: schemars' `uint32` makes kube-apiserver warn "unrecognized format" on every apply
/// of the CRD.
fn queue_position_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "integer",
        "format": "int32",
        "minimum": 1
    })
}

fn templates_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true
        }
    })
}

/// Both CRDs as multi-document YAML, as committed under `infra/crds/`.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::from(
        "# Generated by `kubetempura crd` from common/src/crd.rs. Do not edit by hand:\n# run `make crds`.\n",
    );
    for crd in [ReviewApp::crd(), pr_crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

/// Labels every rendered object carries (see DESIGN.md).
pub fn object_labels(review_app: &str, number: u64) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            crate::MANAGER_NAME.to_owned(),
        ),
        (LABEL_REVIEWAPP.to_owned(), label_value(review_app)),
        (LABEL_PR.to_owned(), number.to_string()),
    ])
}

/// Annotations kubetempura adds beside [`object_labels`]: the full ReviewApp name under
/// [`ANNOTATION_REVIEWAPP`] when its label had to be shortened (a name can be 253 characters, a
/// label value 63), and nothing otherwise.
pub fn object_annotations(review_app: &str) -> BTreeMap<String, String> {
    if label_value(review_app) == review_app {
        BTreeMap::new()
    } else {
        BTreeMap::from([(ANNOTATION_REVIEWAPP.to_owned(), review_app.to_owned())])
    }
}

/// The finalizer the applier puts on a ReviewApp whose environments hold cluster-scoped
/// objects, and on each such environment's `PR` object: no garbage collector deletes those
/// (they cannot have a namespaced owner), so the deletion of either waits until the applier has
/// deleted them.
pub const FINALIZER_CLUSTER_SCOPED: &str = "kubetempura.mercari.com/cluster-scoped-objects";

/// True when `obj` (a ReviewApp or a `PR`, typed or not) carries [`FINALIZER_CLUSTER_SCOPED`].
pub fn has_cluster_scoped_finalizer(obj: &impl kube::ResourceExt) -> bool {
    obj.finalizers()
        .iter()
        .any(|f| f == FINALIZER_CLUSTER_SCOPED)
}

/// The annotation naming the environment (`<namespace>/<PR object name>`) every rendered object
/// belongs to: what the applier checks before it applies over, or deletes, an existing object.
pub const ANNOTATION_ENVIRONMENT: &str = "kubetempura.mercari.com/environment";

/// The value of [`ANNOTATION_ENVIRONMENT`] for the environment `pr_name` in `namespace`.
pub fn environment_id(namespace: &str, pr_name: &str) -> String {
    format!("{namespace}/{pr_name}")
}

/// The annotation with the full ReviewApp name (see [`object_annotations`]).
pub const ANNOTATION_REVIEWAPP: &str = "kubetempura.mercari.com/reviewapp";

/// A Kubernetes label value (at most 63 characters) for an object name (a DNS subdomain, so its
/// characters are valid in a label): the name itself when it fits, else its first 52 characters
/// (ending alphanumeric) and `-` and 10 hex digits of its SHA-256, so distinct names stay
/// distinct and the same name always gives the same value.
pub fn label_value(name: &str) -> String {
    const MAX: usize = 63;
    if name.len() <= MAX {
        return name.to_owned();
    }
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    let cut = name
        .char_indices()
        .map(|(i, _)| i)
        .take_while(|i| *i <= 52)
        .last()
        .unwrap_or(0);
    let head = name[..cut].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{head}-{}", &digest[..10])
}

/// Label naming the ReviewApp an object was rendered from.
pub const LABEL_REVIEWAPP: &str = "kubetempura.mercari.com/reviewapp";
/// Label carrying the pull request number an object was rendered for.
pub const LABEL_PR: &str = "kubetempura.mercari.com/pr";

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = include_str!("../../../infra/crds/crds.yaml");

    #[test]
    fn durations_are_read_in_go_notation_and_anything_else_is_refused() {
        let secs = |s| parse_duration(s).map(|d| d.as_millis());
        assert_eq!(secs("90s"), Some(90_000));
        assert_eq!(secs("10m"), Some(600_000));
        assert_eq!(secs("1h30m"), Some(5_400_000));
        assert_eq!(secs("250ms"), Some(250));
        for bad in ["", "10", "m", "1.5h", "-1m", "10 m", "1d", "99999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        let spec = |t: Option<&str>| ReviewAppSpec {
            github_repository: "https://github.com/o/r".into(),
            resources: Vec::new(),
            policy: None,
            environment_url: None,
            log_url: None,
            readiness_timeout: t.map(str::to_owned),
            wait_for: None,
            expire_after: Some("48h".into()),
            wake_label: None,
            max_active: None,
        };
        assert_eq!(spec(None).readiness_timeout(), DEFAULT_READINESS_TIMEOUT);
        assert_eq!(spec(Some("2m")).readiness_timeout().as_secs(), 120);
        assert_eq!(
            spec(None).expire_after().map(|d| d.as_secs()),
            Some(48 * 3600)
        );
        assert_eq!(spec(None).gate(), None);
    }

    #[test]
    fn committed_crd_yaml_matches_the_types() {
        let generated = crds_yaml().unwrap();
        assert!(
            generated == COMMITTED,
            "infra/crds/crds.yaml drifted from common/src/crd.rs: run `make crds` and commit the result"
        );
    }

    #[test]
    fn long_reviewapp_names_get_a_bounded_label_and_the_full_name_in_an_annotation() {
        let short = "reviewapp-sample";
        assert_eq!(label_value(short), short);
        assert!(object_annotations(short).is_empty());
        let long = format!("{}.example.team", "a".repeat(60));
        let value = label_value(&long);
        assert!(value.len() <= 63, "{value}");
        assert!(value.starts_with(&"a".repeat(52)), "{value}");
        assert!(
            value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        );
        assert!(value.ends_with(|c: char| c.is_ascii_alphanumeric()));
        assert_eq!(value, label_value(&long), "deterministic");
        assert_ne!(
            value,
            label_value(&format!("{long}x")),
            "distinct names stay distinct"
        );
        assert_eq!(object_annotations(&long)[ANNOTATION_REVIEWAPP], long);
        assert_eq!(object_labels(&long, 7)[LABEL_REVIEWAPP], value);
        // A name whose 52nd character is a dot or dash still ends the head alphanumeric.
        let dotted = format!("{}.{}", "b".repeat(51), "c".repeat(40));
        let v = label_value(&dotted);
        assert!(v.starts_with(&format!("{}-", "b".repeat(51))), "{v}");
    }

    #[test]
    fn an_inventory_entry_is_identified_without_its_version() {
        let entry = |api_version: &str, name: &str| InventoryEntry {
            api_version: api_version.into(),
            kind: "VirtualService".into(),
            namespace: Some("default".into()),
            name: name.into(),
            uid: None,
        };
        let old = entry("networking.istio.io/v1beta1", "a");
        assert_eq!(
            old.identity(),
            entry("networking.istio.io/v1", "a").identity()
        );
        assert_ne!(
            old.identity(),
            entry("networking.istio.io/v1", "b").identity()
        );
        assert_ne!(old.identity(), entry("other.io/v1beta1", "a").identity());
        let core = InventoryEntry {
            api_version: "v1".into(),
            kind: "Service".into(),
            namespace: None,
            name: "s".into(),
            uid: Some("u".into()),
        };
        assert_eq!(core.identity(), ("", "Service", None, "s"));
    }

    #[test]
    fn crds_have_the_original_group_names_and_columns() {
        let ra = ReviewApp::crd();
        assert_eq!(
            ra.metadata.name.as_deref(),
            Some("reviewapps.kubetempura.mercari.com")
        );
        assert_eq!(ra.spec.scope, "Namespaced");
        let pr = PR::crd();
        assert_eq!(
            pr.metadata.name.as_deref(),
            Some("prs.kubetempura.mercari.com")
        );
        let cols: Vec<String> = pr.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(
            cols,
            [
                "ReviewApp",
                "PR",
                "Branch",
                "Commit",
                "Phase",
                "Rollout",
                "Queue",
                "URL",
                "Origin",
                "Age"
            ]
        );
        // The URL, the queue position and the origin are kubetempura additions: shown by
        // `-o wide` only, so the default columns stay the original ones.
        for wide in ["URL", "Queue", "Origin"] {
            let column = pr.spec.versions[0]
                .additional_printer_columns
                .iter()
                .flatten()
                .find(|c| c.name == wide)
                .unwrap();
            assert_eq!(column.priority, Some(1), "{wide}");
        }
        assert!(
            pr.spec.versions[0]
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
    }

    #[test]
    fn templates_keep_unknown_fields() {
        let yaml = crds_yaml().unwrap();
        assert!(yaml.contains("x-kubernetes-preserve-unknown-fields: true"));
    }

    #[test]
    fn original_reviewapps_deserialize_unchanged() {
        let ra: ReviewApp = serde_yaml::from_str(include_str!(
            "../../../infra/examples/reviewapp-sample.yaml"
        ))
        .unwrap();
        assert_eq!(
            ra.spec.github_repository,
            "https://github.com/mercari/not-exists"
        );
        assert_eq!(ra.spec.resources.len(), 2);
        assert_eq!(ra.spec.policy, None);
    }
}
