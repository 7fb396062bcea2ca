//! Check results: the second kind of queue message, and the gate they open.
//!
//! A build-gated ReviewApp (`spec.waitFor`) deploys a head commit only once named checks have
//! succeeded for that exact SHA. The webhook function normalises GitHub's `check_run`,
//! `check_suite`, `workflow_run` and `status` deliveries into [`CheckEvent`]s: one per pull
//! request the payload names, in that pull request's FIFO group (so it is ordered with the pull
//! request's own events), or one with no pull request (a fork's checks name none) in a group of
//! its commit, for which the applier finds the environments by head SHA.
//!
//! A check result is a fact about a commit: the applier records it (see the applier's check
//! ledger) whether or not an environment is at that commit yet, so its order relative to pushes
//! does not matter.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crd::WaitFor;
use crate::event::{
    EVENT_SCHEMA_VERSION, EventError, Normalized, Repository, bounded_group, is_full_sha,
    truncate_utf8,
};

/// Longest check name carried in an event, in bytes. GitHub documents no limit for check run
/// names, workflow names or status contexts (real ones are a few words); the bound keeps one
/// message small whatever a payload holds. A longer name is cut on a character boundary.
pub const MAX_CHECK_NAME_BYTES: usize = 1024;
/// Longest check URL carried, in bytes; a longer one is dropped rather than cut (a cut URL
/// leads nowhere).
pub const MAX_CHECK_URL_BYTES: usize = 2048;
/// Longest raw conclusion or status state carried (GitHub's are single words).
const MAX_CONCLUSION_BYTES: usize = 64;

/// Which kind of GitHub check a result is of, and how `spec.waitFor` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckKind {
    /// A check run (`check_run`), named by its name (e.g. `build`).
    CheckRun,
    /// A check suite (`check_suite`), named by its GitHub App's slug (e.g. `github-actions`).
    CheckSuite,
    /// A GitHub Actions workflow run (`workflow_run`), named by the workflow's name.
    Workflow,
    /// A commit status (`status`), named by its context (e.g. `ci/circleci: build`).
    Status,
}

impl CheckKind {
    /// The words used in statuses and PR comments: "check run `build`".
    pub fn describe(self) -> &'static str {
        match self {
            Self::CheckRun => "check run",
            Self::CheckSuite => "check suite",
            Self::Workflow => "workflow",
            Self::Status => "status",
        }
    }

    /// The GitHub event (`X-GitHub-Event`) results of this kind come from.
    pub fn github_event(self) -> &'static str {
        match self {
            Self::CheckRun => "check_run",
            Self::CheckSuite => "check_suite",
            Self::Workflow => "workflow_run",
            Self::Status => "status",
        }
    }

    /// The kind of a GitHub event name, if it is one of the four.
    pub fn from_github_event(event: &str) -> Option<Self> {
        Some(match event {
            "check_run" => Self::CheckRun,
            "check_suite" => Self::CheckSuite,
            "workflow_run" => Self::Workflow,
            "status" => Self::Status,
            _ => return None,
        })
    }
}

/// A check's state reduced to what a gate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    /// Queued, in progress, or a `pending` status.
    Pending,
    /// Concluded `success`, `neutral` or `skipped` (what GitHub accepts for a required check),
    /// or a `success` status.
    Success,
    /// Any other conclusion (`failure`, `cancelled`, `timed_out`, `action_required`, `stale`,
    /// `startup_failure`), or a `failure` / `error` status.
    Failure,
}

impl CheckState {
    /// The state as a word: `pending`, `success` or `failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }

    /// The state of a check run, check suite or workflow run from GitHub's `status` and
    /// `conclusion`.
    pub fn from_run(status: &str, conclusion: Option<&str>) -> Self {
        if status != "completed" {
            return Self::Pending;
        }
        match conclusion {
            Some("success" | "neutral" | "skipped") => Self::Success,
            // Completed without a conclusion does not happen; waiting is the safe reading.
            None => Self::Pending,
            Some(_) => Self::Failure,
        }
    }

    /// The state of a commit status from its `state`.
    pub fn from_status(state: &str) -> Self {
        match state {
            "success" => Self::Success,
            "failure" | "error" => Self::Failure,
            _ => Self::Pending,
        }
    }
}

/// The normalised check result put on the queue (schema version [`EVENT_SCHEMA_VERSION`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckEvent {
    /// Schema version, always [`EVENT_SCHEMA_VERSION`] when written by this code.
    pub version: u32,
    /// `X-GitHub-Delivery` of the delivery (suffixed `#<number>` when one delivery names several
    /// pull requests, so each message has its own deduplication id).
    pub delivery_id: String,
    /// The GitHub event name: `check_run`, `check_suite`, `workflow_run` or `status`.
    pub event: String,
    pub kind: CheckKind,
    pub repository: Repository,
    /// Full 40-character commit SHA the result is about (lowercase).
    pub head_sha: String,
    /// The check's name as `spec.waitFor` names it (see [`CheckKind`]).
    pub name: String,
    pub state: CheckState,
    /// GitHub's raw conclusion or status state (`failure`, `timed_out`, `error` …), for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
    /// Where to see the check (its `html_url`, `details_url` or `target_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The pull request this message is for (its FIFO group); absent when the payload names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
    /// When the check reached this state (its `completed_at`, `started_at`, `updated_at` …):
    /// orders results of one check on one commit (a re-run supersedes an older result).
    pub updated_at: DateTime<Utc>,
    /// When the function received the delivery.
    pub received_at: DateTime<Utc>,
}

impl CheckEvent {
    /// The FIFO message group: the pull request's own group (`owner/name#number`) when the event
    /// names one, else `owner/name@<sha>`.
    pub fn message_group_id(&self) -> String {
        match self.pull_request {
            Some(number) => bounded_group(&self.repository.full_name, &format!("#{number}")),
            None => bounded_group(&self.repository.full_name, &format!("@{}", self.head_sha)),
        }
    }

    /// A fact to record: the result of one check on one commit.
    pub fn fact(&self) -> CheckFact {
        CheckFact {
            kind: self.kind,
            name: self.name.clone(),
            state: self.state,
            url: self.url.clone(),
            conclusion: self.conclusion.clone(),
            at: self.updated_at,
        }
    }

    /// Serialises the event as the queue message body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("CheckEvent serialises: {e}"))
    }
}

/// The result of one check on one commit, as the applier records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckFact {
    pub kind: CheckKind,
    pub name: String,
    pub state: CheckState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
    /// When the check reached this state.
    pub at: DateTime<Utc>,
}

impl CheckFact {
    /// "check run `build`".
    pub fn describe(&self) -> String {
        format!("{} `{}`", self.kind.describe(), self.name)
    }
}

/// Merges `fact` into the facts of one commit: the newest result of each check wins, so a
/// re-run supersedes its earlier result and a late, older delivery changes nothing. Returns
/// whether anything changed.
pub fn merge_fact(facts: &mut Vec<CheckFact>, fact: CheckFact) -> bool {
    match facts
        .iter_mut()
        .find(|f| f.kind == fact.kind && f.name == fact.name)
    {
        Some(known) if known.at > fact.at || *known == fact => false,
        // The same instant: a completed result wins over the pending one GitHub sent with it.
        Some(known) if known.at == fact.at && fact.state == CheckState::Pending => false,
        Some(known) => {
            *known = fact;
            true
        }
        None => {
            facts.push(fact);
            true
        }
    }
}

/// Where a commit stands against a ReviewApp's `spec.waitFor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Every awaited check succeeded (or nothing is awaited).
    Passed,
    /// Some awaited checks have not succeeded yet (none failed): their descriptions.
    Pending(Vec<String>),
    /// An awaited check failed: the first failure.
    Failed { check: CheckFact },
}

impl WaitFor {
    /// The awaited checks, as (kind, name).
    pub fn awaited(&self) -> impl Iterator<Item = (CheckKind, &str)> {
        self.check_runs
            .iter()
            .map(|n| (CheckKind::CheckRun, n.as_str()))
            .chain(
                self.check_suites
                    .iter()
                    .map(|n| (CheckKind::CheckSuite, n.as_str())),
            )
            .chain(
                self.workflows
                    .iter()
                    .map(|n| (CheckKind::Workflow, n.as_str())),
            )
            .chain(
                self.statuses
                    .iter()
                    .map(|n| (CheckKind::Status, n.as_str())),
            )
    }

    /// True when nothing is awaited.
    pub fn is_empty(&self) -> bool {
        self.awaited().next().is_none()
    }

    /// Whether a result of `kind` named `name` is one this gate waits for.
    pub fn awaits(&self, kind: CheckKind, name: &str) -> bool {
        self.awaited().any(|(k, n)| k == kind && n == name)
    }

    /// Evaluates the gate against the recorded results of one commit.
    pub fn evaluate(&self, facts: &[CheckFact]) -> Gate {
        let mut pending = Vec::new();
        for (kind, name) in self.awaited() {
            match facts.iter().find(|f| f.kind == kind && f.name == name) {
                Some(f) if f.state == CheckState::Failure => {
                    return Gate::Failed { check: f.clone() };
                }
                Some(f) if f.state == CheckState::Success => {}
                _ => pending.push(format!("{} `{name}`", kind.describe())),
            }
        }
        if pending.is_empty() {
            Gate::Passed
        } else {
            Gate::Pending(pending)
        }
    }
}

/// A queue message: a pull-request event or a check result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueMessage {
    PullRequest(Box<crate::event::PrEvent>),
    Check(Box<CheckEvent>),
}

impl QueueMessage {
    /// Parses a queue message body, refusing unknown schema versions and event names.
    pub fn from_json(body: &str) -> Result<Self, EventError> {
        #[derive(Deserialize)]
        struct Head {
            version: u32,
            #[serde(default)]
            event: Option<String>,
        }
        let head: Head = serde_json::from_str(body).map_err(EventError::Message)?;
        if head.version != EVENT_SCHEMA_VERSION {
            return Err(EventError::UnsupportedVersion(head.version));
        }
        match head.event.as_deref() {
            Some(e) if CheckKind::from_github_event(e).is_some() => {
                let check: CheckEvent = serde_json::from_str(body).map_err(EventError::Message)?;
                if !crate::event::is_full_sha(&check.head_sha) {
                    return Err(EventError::Field {
                        field: "headSha",
                        reason: "not a 40-character hex commit id".to_owned(),
                    });
                }
                Ok(Self::Check(Box::new(check)))
            }
            _ => crate::event::PrEvent::from_json(body).map(|e| Self::PullRequest(Box::new(e))),
        }
    }

    /// The delivery the message came from.
    pub fn delivery_id(&self) -> &str {
        match self {
            Self::PullRequest(e) => &e.delivery_id,
            Self::Check(c) => &c.delivery_id,
        }
    }
}

impl QueueMessage {
    /// Serialises the message as the queue message body.
    pub fn to_json(&self) -> String {
        match self {
            Self::PullRequest(e) => e.to_json(),
            Self::Check(c) => c.to_json(),
        }
    }

    /// The FIFO message group (see [`crate::event::PrEvent::message_group_id`] and
    /// [`CheckEvent::message_group_id`]).
    pub fn message_group_id(&self) -> String {
        match self {
            Self::PullRequest(e) => e.message_group_id(),
            Self::Check(c) => c.message_group_id(),
        }
    }

    /// The GitHub event name (`pull_request`, `check_run` …).
    pub fn event(&self) -> &str {
        match self {
            Self::PullRequest(e) => &e.event,
            Self::Check(c) => &c.event,
        }
    }

    /// The delivery's action, where the event has one (a `status` delivery has none; a check
    /// event keeps only its state, so its action is not carried).
    pub fn action(&self) -> Option<&str> {
        match self {
            Self::PullRequest(e) => Some(e.action.as_str()),
            Self::Check(_) => None,
        }
    }

    /// The repository the message is about.
    pub fn repository(&self) -> &Repository {
        match self {
            Self::PullRequest(e) => &e.repository,
            Self::Check(c) => &c.repository,
        }
    }
}

// The subsets of GitHub's `check_run`, `check_suite`, `workflow_run` and `status` payloads we
// read (see the octokit/webhooks schemas). A run, suite and workflow run share one shape here:
// each reads the fields it has.
#[derive(Deserialize)]
struct CheckRunPayload {
    action: String,
    check_run: Run,
    repository: CheckRepo,
}

#[derive(Deserialize)]
struct CheckSuitePayload {
    action: String,
    check_suite: Run,
    repository: CheckRepo,
}

#[derive(Deserialize)]
struct WorkflowRunPayload {
    action: String,
    workflow_run: Run,
    workflow: Option<Named>,
    repository: CheckRepo,
}

#[derive(Deserialize)]
struct StatusPayload {
    sha: String,
    context: String,
    state: String,
    target_url: Option<String>,
    updated_at: Option<DateTime<Utc>>,
    repository: CheckRepo,
}

#[derive(Deserialize)]
struct Run {
    name: Option<String>,
    head_sha: String,
    status: Option<String>,
    conclusion: Option<String>,
    html_url: Option<String>,
    details_url: Option<String>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    pull_requests: Option<Vec<PullRequestRef>>,
    /// A check suite's GitHub App.
    app: Option<App>,
}

#[derive(Deserialize)]
struct Named {
    name: Option<String>,
}

#[derive(Deserialize)]
struct App {
    slug: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct CheckRepo {
    id: Option<u64>,
    url: Option<String>,
    name: String,
    full_name: String,
    html_url: String,
    owner: Owner,
}

#[derive(Deserialize)]
struct Owner {
    login: String,
}

// GitHub's "repo-ref": `{id, number, url, head: {ref, sha, repo}, base: {ref, sha, repo}}`,
// where `repo` is `{id, url, name}` (no owner).
#[derive(Deserialize)]
struct PullRequestRef {
    number: u64,
    base: Option<BaseRef>,
}

#[derive(Deserialize)]
struct BaseRef {
    repo: Option<RepoRef>,
}

#[derive(Deserialize)]
struct RepoRef {
    id: Option<u64>,
    url: Option<String>,
}

impl PullRequestRef {
    /// Whether the pull request targets `repo`. GitHub lists the open pull requests whose head
    /// is the checked commit, which can include pull requests of other repositories (a fork's
    /// pull request into its own parent, say); only those into the delivery's repository are
    /// ours. Compared by repository id, else API URL; a pull request without a base repository
    /// is taken as ours.
    fn targets(&self, repo: &CheckRepo) -> bool {
        let Some(base) = self.base.as_ref().and_then(|b| b.repo.as_ref()) else {
            return true;
        };
        match ((base.id, repo.id), (&base.url, &repo.url)) {
            ((Some(a), Some(b)), _) => a == b,
            (_, (Some(a), Some(b))) => a.eq_ignore_ascii_case(b),
            _ => true,
        }
    }
}

/// One check result read from a payload, before it is fanned out per pull request.
struct Reading {
    kind: CheckKind,
    repository: CheckRepo,
    sha: String,
    name: String,
    state: CheckState,
    conclusion: Option<String>,
    url: Option<String>,
    at: Option<DateTime<Utc>>,
    pull_requests: Vec<PullRequestRef>,
}

impl Reading {
    fn of_run(kind: CheckKind, run: Run, name: Option<String>, repo: CheckRepo) -> Self {
        let state = CheckState::from_run(
            run.status.as_deref().unwrap_or_default(),
            run.conclusion.as_deref(),
        );
        let (url, at) = match kind {
            CheckKind::CheckRun => (
                run.html_url.or(run.details_url),
                run.completed_at.or(run.started_at),
            ),
            // A suite has no page of its own: the commit's checks page shows it.
            CheckKind::CheckSuite => (
                Some(format!(
                    "{}/commit/{}/checks",
                    repo.html_url.trim_end_matches('/'),
                    run.head_sha.to_ascii_lowercase()
                )),
                run.updated_at,
            ),
            CheckKind::Workflow | CheckKind::Status => (run.html_url, run.updated_at),
        };
        Self {
            kind,
            sha: run.head_sha,
            name: name.unwrap_or_default(),
            state,
            conclusion: run.conclusion,
            url,
            at,
            pull_requests: run.pull_requests.unwrap_or_default(),
            repository: repo,
        }
    }

    /// One event per pull request of this repository the payload names, or one for the commit.
    fn into_events(
        self,
        delivery_id: &str,
        received_at: DateTime<Utc>,
    ) -> Result<Normalized, EventError> {
        if !is_full_sha(&self.sha) {
            return Err(EventError::Field {
                field: match self.kind {
                    CheckKind::CheckRun => "check_run.head_sha",
                    CheckKind::CheckSuite => "check_suite.head_sha",
                    CheckKind::Workflow => "workflow_run.head_sha",
                    CheckKind::Status => "sha",
                },
                reason: "not a 40-character hex commit id".to_owned(),
            });
        }
        if self.name.trim().is_empty() {
            return Ok(Normalized::Ignored(format!(
                "{} without a name cannot be awaited",
                self.kind.github_event()
            )));
        }
        let mut numbers: Vec<u64> = Vec::new();
        for pr in &self.pull_requests {
            if pr.targets(&self.repository) && !numbers.contains(&pr.number) {
                numbers.push(pr.number);
            }
        }
        let targets: Vec<Option<u64>> = if numbers.is_empty() {
            vec![None]
        } else {
            numbers.into_iter().map(Some).collect()
        };
        let several = targets.len() > 1;
        let mut name = self.name;
        truncate_utf8(&mut name, MAX_CHECK_NAME_BYTES);
        let mut conclusion = self.conclusion;
        if let Some(c) = conclusion.as_mut() {
            truncate_utf8(c, MAX_CONCLUSION_BYTES);
        }
        let url = self.url.filter(|u| u.len() <= MAX_CHECK_URL_BYTES);
        let repository = Repository {
            full_name: self.repository.full_name,
            owner: self.repository.owner.login,
            name: self.repository.name,
            html_url: self.repository.html_url,
        };
        let head_sha = self.sha.to_ascii_lowercase();
        let events = targets
            .into_iter()
            .map(|pull_request| CheckEvent {
                version: EVENT_SCHEMA_VERSION,
                delivery_id: match pull_request {
                    Some(n) if several => format!("{delivery_id}#{n}"),
                    _ => delivery_id.to_owned(),
                },
                event: self.kind.github_event().to_owned(),
                kind: self.kind,
                repository: repository.clone(),
                head_sha: head_sha.clone(),
                name: name.clone(),
                state: self.state,
                conclusion: conclusion.clone(),
                url: url.clone(),
                pull_request,
                updated_at: self.at.unwrap_or(received_at),
                received_at,
            })
            .collect();
        Ok(Normalized::Checks(events))
    }
}

/// Normalises a `check_run`, `check_suite`, `workflow_run` or `status` delivery into the check
/// events to enqueue: one per pull request of the delivery's repository the payload names (each
/// in that pull request's FIFO group, its delivery id suffixed `#<number>` when there are
/// several), or one for the commit when it names none (a fork's checks never name one).
///
/// Which actions are forwarded: every payload carries the check's state with its own time, and
/// the applier keeps the newest result of a check ([`merge_fact`]), so forwarding is safe; what
/// is ignored is what carries no new state:
/// - `check_run`: `created` and `completed`. `rerequested` describes the old run (a re-run is a
///   new check run, whose `created` delivery makes the check pending again) and
///   `requested_action` is a button pressed on the run: both ignored.
/// - `check_suite`: `requested` (pending) and `completed`. `rerequested` is ignored: the payload
///   holds the previous result and the re-run ends with a new `completed`.
/// - `workflow_run`: `requested`, `in_progress` and `completed`.
/// - `status`: every delivery (it has no action).
///
/// The check's time is the run's `completed_at`, else `started_at` (check runs), or the
/// `updated_at` of a suite, workflow run or status; `received_at` when the payload has none.
pub fn normalize_check(
    event: &str,
    delivery_id: &str,
    body: &[u8],
    received_at: DateTime<Utc>,
) -> Result<Normalized, EventError> {
    let ignored = |action: &str, why: &str| {
        Ok(Normalized::Ignored(format!(
            "{event} action {action:?} is not handled: {why}"
        )))
    };
    let parse_err = EventError::Payload;
    let reading = match CheckKind::from_github_event(event) {
        None => {
            return Ok(Normalized::Ignored(format!(
                "event {event:?} is not handled"
            )));
        }
        Some(kind @ CheckKind::CheckRun) => {
            let p: CheckRunPayload = serde_json::from_slice(body).map_err(parse_err)?;
            match p.action.as_str() {
                "created" | "completed" => {}
                "rerequested" => {
                    return ignored(&p.action, "the re-run reports as a new check run");
                }
                "requested_action" => return ignored(&p.action, "the run's state is unchanged"),
                _ => return ignored(&p.action, "not a state change"),
            }
            let name = p.check_run.name.clone();
            Reading::of_run(kind, p.check_run, name, p.repository)
        }
        Some(kind @ CheckKind::CheckSuite) => {
            let p: CheckSuitePayload = serde_json::from_slice(body).map_err(parse_err)?;
            match p.action.as_str() {
                "requested" | "completed" => {}
                "rerequested" => {
                    return ignored(
                        &p.action,
                        "the re-run reports with a new completed delivery",
                    );
                }
                _ => return ignored(&p.action, "not a state change"),
            }
            // Suites are named by their App's slug; the name stands in on payloads without one.
            let name = p
                .check_suite
                .app
                .as_ref()
                .and_then(|a| a.slug.clone().or_else(|| a.name.clone()));
            Reading::of_run(kind, p.check_suite, name, p.repository)
        }
        Some(kind @ CheckKind::Workflow) => {
            let p: WorkflowRunPayload = serde_json::from_slice(body).map_err(parse_err)?;
            match p.action.as_str() {
                "requested" | "in_progress" | "completed" => {}
                _ => return ignored(&p.action, "not a state change"),
            }
            // The run's name is the workflow's; some payloads leave it empty but name the
            // workflow beside it.
            let name = p
                .workflow_run
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .or_else(|| p.workflow.and_then(|w| w.name));
            Reading::of_run(kind, p.workflow_run, name, p.repository)
        }
        Some(CheckKind::Status) => {
            let p: StatusPayload = serde_json::from_slice(body).map_err(parse_err)?;
            Reading {
                kind: CheckKind::Status,
                sha: p.sha,
                name: p.context,
                state: CheckState::from_status(&p.state),
                conclusion: Some(p.state),
                url: p.target_url,
                at: p.updated_at,
                // A status names no pull request: it is grouped by its commit.
                pull_requests: Vec::new(),
                repository: p.repository,
            }
        }
    };
    reading.into_events(delivery_id, received_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(kind: CheckKind, name: &str, state: CheckState, minute: i64) -> CheckFact {
        CheckFact {
            kind,
            name: name.to_owned(),
            state,
            url: Some(format!("https://ci.example.com/{name}")),
            conclusion: None,
            at: DateTime::<Utc>::from_timestamp(1_790_000_000 + minute * 60, 0).unwrap(),
        }
    }

    fn wait_for() -> WaitFor {
        WaitFor {
            check_runs: vec!["build".into()],
            workflows: vec!["CI".into()],
            ..WaitFor::default()
        }
    }

    #[test]
    fn run_and_status_states_reduce_like_githubs_required_checks() {
        assert_eq!(CheckState::from_run("queued", None), CheckState::Pending);
        assert_eq!(
            CheckState::from_run("in_progress", None),
            CheckState::Pending
        );
        for ok in ["success", "neutral", "skipped"] {
            assert_eq!(
                CheckState::from_run("completed", Some(ok)),
                CheckState::Success
            );
        }
        for bad in [
            "failure",
            "cancelled",
            "timed_out",
            "action_required",
            "stale",
        ] {
            assert_eq!(
                CheckState::from_run("completed", Some(bad)),
                CheckState::Failure,
                "{bad}"
            );
        }
        assert_eq!(CheckState::from_status("pending"), CheckState::Pending);
        assert_eq!(CheckState::from_status("success"), CheckState::Success);
        assert_eq!(CheckState::from_status("error"), CheckState::Failure);
        assert_eq!(CheckState::from_status("failure"), CheckState::Failure);
        for state in [
            CheckState::Pending,
            CheckState::Success,
            CheckState::Failure,
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }

    #[test]
    fn the_gate_passes_only_when_every_awaited_check_succeeded() {
        let w = wait_for();
        assert_eq!(
            w.evaluate(&[]),
            Gate::Pending(vec!["check run `build`".into(), "workflow `CI`".into()])
        );
        let mut facts = vec![fact(CheckKind::CheckRun, "build", CheckState::Success, 1)];
        assert_eq!(
            w.evaluate(&facts),
            Gate::Pending(vec!["workflow `CI`".into()])
        );
        // A check of the same name but another kind is not the awaited one.
        facts.push(fact(CheckKind::Status, "CI", CheckState::Success, 1));
        assert!(matches!(w.evaluate(&facts), Gate::Pending(_)));
        facts.push(fact(CheckKind::Workflow, "CI", CheckState::Success, 2));
        assert_eq!(w.evaluate(&facts), Gate::Passed);
        // Checks nobody waits for do not matter, even failed.
        facts.push(fact(CheckKind::CheckRun, "lint", CheckState::Failure, 3));
        assert_eq!(w.evaluate(&facts), Gate::Passed);
        assert_eq!(WaitFor::default().evaluate(&[]), Gate::Passed);
        assert!(WaitFor::default().is_empty() && !w.is_empty());
    }

    #[test]
    fn a_failed_awaited_check_blocks_even_with_others_pending() {
        let w = wait_for();
        let facts = vec![fact(CheckKind::Workflow, "CI", CheckState::Failure, 1)];
        let Gate::Failed { check } = w.evaluate(&facts) else {
            panic!("not failed")
        };
        assert_eq!(check.describe(), "workflow `CI`");
    }

    #[test]
    fn the_newest_result_of_a_check_wins_whatever_the_delivery_order() {
        let pending = fact(CheckKind::CheckRun, "build", CheckState::Pending, 1);
        let failed = fact(CheckKind::CheckRun, "build", CheckState::Failure, 2);
        let rerun_ok = fact(CheckKind::CheckRun, "build", CheckState::Success, 3);
        let orders = [
            [pending.clone(), failed.clone(), rerun_ok.clone()],
            [rerun_ok.clone(), pending.clone(), failed.clone()],
            [failed.clone(), rerun_ok.clone(), pending.clone()],
        ];
        for order in orders {
            let mut facts = Vec::new();
            for f in order {
                merge_fact(&mut facts, f);
            }
            assert_eq!(facts, vec![rerun_ok.clone()]);
        }
        let mut facts = vec![rerun_ok.clone()];
        assert!(!merge_fact(&mut facts, rerun_ok.clone()), "no change");
        let same_instant_pending = CheckFact {
            state: CheckState::Pending,
            ..rerun_ok.clone()
        };
        assert!(!merge_fact(&mut facts, same_instant_pending));
    }

    fn check_event(pull_request: Option<u64>) -> CheckEvent {
        CheckEvent {
            version: EVENT_SCHEMA_VERSION,
            delivery_id: "d".into(),
            event: "check_run".into(),
            kind: CheckKind::CheckRun,
            repository: Repository {
                full_name: "o/r".into(),
                owner: "o".into(),
                name: "r".into(),
                html_url: "https://github.com/o/r".into(),
            },
            head_sha: "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7".into(),
            name: "build".into(),
            state: CheckState::Success,
            conclusion: Some("success".into()),
            url: None,
            pull_request,
            updated_at: Utc::now(),
            received_at: Utc::now(),
        }
    }

    #[test]
    fn a_check_naming_a_pull_request_shares_its_group_else_its_commits() {
        assert_eq!(check_event(Some(7)).message_group_id(), "o/r#7");
        assert_eq!(
            check_event(None).message_group_id(),
            "o/r@32f7bfe8b7279912ce1eb6dfb6653ee297936cf7"
        );
    }

    #[test]
    fn queue_messages_of_both_kinds_round_trip_and_bad_ones_are_refused() {
        let c = check_event(Some(7));
        assert_eq!(
            QueueMessage::from_json(&c.to_json()).unwrap(),
            QueueMessage::Check(Box::new(c.clone()))
        );
        let mut bad = c.clone();
        bad.head_sha = "abc".into();
        assert!(QueueMessage::from_json(&bad.to_json()).is_err());
        assert!(matches!(
            QueueMessage::from_json(r#"{"version":9,"event":"check_run"}"#),
            Err(EventError::UnsupportedVersion(9))
        ));
        assert!(QueueMessage::from_json(r#"{"version":1,"event":"check_run"}"#).is_err());
    }

    const SHA: &str = "EC26C3E57CA3A959CA5AAD62DE7213C562F8C821";
    const SHA_LOWER: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

    /// The repository object of a delivery, as GitHub sends it (the fields we read and a few).
    fn repository() -> serde_json::Value {
        serde_json::json!({
            "id": 186853002, "name": "Hello-World", "full_name": "Codertocat/Hello-World",
            "url": "https://api.github.com/repos/Codertocat/Hello-World",
            "html_url": "https://github.com/Codertocat/Hello-World",
            "owner": {"login": "Codertocat", "id": 21031067}, "private": false
        })
    }

    /// A pull request of the `pull_requests` list ("repo-ref": the base repository is
    /// `{id, url, name}`).
    fn pr_ref(number: u64, base_repo_id: u64) -> serde_json::Value {
        serde_json::json!({
            "url": format!("https://api.github.com/repos/Codertocat/Hello-World/pulls/{number}"),
            "id": 279147437, "number": number,
            "head": {"ref": "changes", "sha": SHA_LOWER,
                     "repo": {"id": 186853002, "url": "https://api.github.com/repos/Codertocat/Hello-World", "name": "Hello-World"}},
            "base": {"ref": "main", "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
                     "repo": {"id": base_repo_id, "url": "https://api.github.com/repos/x/Hello-World", "name": "Hello-World"}}
        })
    }

    fn check_run(action: &str, prs: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "action": action,
            "check_run": {
                "id": 128620228, "head_sha": SHA, "external_id": "",
                "url": "https://api.github.com/repos/Codertocat/Hello-World/check-runs/128620228",
                "html_url": "https://github.com/Codertocat/Hello-World/runs/128620228",
                "details_url": "https://ci.example.com/build/1",
                "status": "completed", "conclusion": "failure",
                "started_at": "2026-01-02T03:04:05Z", "completed_at": "2026-01-02T03:09:05Z",
                "name": "build", "pull_requests": prs,
                "check_suite": {"id": 118578147, "head_sha": SHA, "status": "completed"},
                "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"}
            },
            "repository": repository(),
            "sender": {"login": "Codertocat"}
        })
    }

    fn checks(event: &str, body: &serde_json::Value) -> Vec<CheckEvent> {
        let body = serde_json::to_vec(body).unwrap();
        match normalize_check(event, "d-1", &body, at(0)).unwrap() {
            Normalized::Checks(c) => c,
            other => panic!("not checks: {other:?}"),
        }
    }

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000 + minute * 60, 0).unwrap()
    }

    fn ts(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_completed_check_run_gives_one_event_per_pull_request_of_its_repository() {
        // PR 2 and 5 target this repository; PR 9 is another repository's (GitHub lists the
        // open pull requests whose head is the commit, wherever they are).
        let body = check_run(
            "completed",
            serde_json::json!([
                pr_ref(2, 186853002),
                pr_ref(9, 1296269),
                pr_ref(5, 186853002)
            ]),
        );
        let events = checks("check_run", &body);
        let summary: Vec<(Option<u64>, &str, String)> = events
            .iter()
            .map(|c| (c.pull_request, c.delivery_id.as_str(), c.message_group_id()))
            .collect();
        assert_eq!(
            summary,
            [
                (Some(2), "d-1#2", "Codertocat/Hello-World#2".to_owned()),
                (Some(5), "d-1#5", "Codertocat/Hello-World#5".to_owned()),
            ]
        );
        let c = &events[0];
        assert_eq!(c.kind, CheckKind::CheckRun);
        assert_eq!(c.event, "check_run");
        assert_eq!(c.name, "build");
        assert_eq!(c.head_sha, SHA_LOWER);
        assert_eq!(c.state, CheckState::Failure);
        assert_eq!(c.conclusion.as_deref(), Some("failure"));
        assert_eq!(
            c.url.as_deref(),
            Some("https://github.com/Codertocat/Hello-World/runs/128620228")
        );
        assert_eq!(c.updated_at, ts("2026-01-02T03:09:05Z"));
        assert_eq!(c.received_at, at(0));
        assert_eq!(c.repository.full_name, "Codertocat/Hello-World");
        assert_eq!(c.repository.owner, "Codertocat");
        assert_eq!(
            c.repository.html_url,
            "https://github.com/Codertocat/Hello-World"
        );
        // One pull request: the delivery id is the deduplication id as it is.
        let one = checks(
            "check_run",
            &check_run("completed", serde_json::json!([pr_ref(2, 186853002)])),
        );
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].delivery_id, "d-1");
    }

    #[test]
    fn a_check_run_naming_no_pull_request_of_its_repository_is_grouped_by_commit() {
        for prs in [
            serde_json::json!([]),
            serde_json::json!(null),
            serde_json::json!([pr_ref(9, 1296269)]),
        ] {
            let events = checks("check_run", &check_run("completed", prs.clone()));
            assert_eq!(events.len(), 1, "{prs}");
            assert_eq!(events[0].pull_request, None);
            assert_eq!(events[0].delivery_id, "d-1");
            assert_eq!(
                events[0].message_group_id(),
                format!("Codertocat/Hello-World@{SHA_LOWER}")
            );
        }
        // A pull request without a base repository is taken as the delivery's.
        let mut bare = pr_ref(4, 1);
        bare["base"] = serde_json::json!({"ref": "main"});
        let events = checks(
            "check_run",
            &check_run("completed", serde_json::json!([bare])),
        );
        assert_eq!(events[0].pull_request, Some(4));
    }

    #[test]
    fn a_created_check_run_is_pending_since_it_started_and_links_its_details() {
        let mut body = check_run("created", serde_json::json!([]));
        let run = &mut body["check_run"];
        run["status"] = "queued".into();
        run["conclusion"] = serde_json::Value::Null;
        run["completed_at"] = serde_json::Value::Null;
        run.as_object_mut().unwrap().remove("html_url");
        let c = &checks("check_run", &body)[0];
        assert_eq!(c.state, CheckState::Pending);
        assert_eq!(c.conclusion, None);
        assert_eq!(c.updated_at, ts("2026-01-02T03:04:05Z"));
        assert_eq!(c.url.as_deref(), Some("https://ci.example.com/build/1"));
        // No time at all: when it was received.
        body["check_run"]["started_at"] = serde_json::Value::Null;
        assert_eq!(checks("check_run", &body)[0].updated_at, at(0));
    }

    #[test]
    fn check_run_actions_without_a_new_state_are_ignored_with_the_reason() {
        for action in ["rerequested", "requested_action", "someday_new"] {
            let body = serde_json::to_vec(&check_run(action, serde_json::json!([]))).unwrap();
            let n = normalize_check("check_run", "d", &body, at(0)).unwrap();
            assert!(
                matches!(&n, Normalized::Ignored(r) if r.contains(action) && r.contains("check_run")),
                "{action}: {n:?}"
            );
        }
    }

    #[test]
    fn a_check_suite_is_named_by_its_apps_slug_and_links_the_commits_checks() {
        let body = serde_json::json!({
            "action": "completed",
            "check_suite": {
                "id": 118578147, "head_branch": "changes", "head_sha": SHA,
                "status": "completed", "conclusion": "success",
                "url": "https://api.github.com/repos/Codertocat/Hello-World/check-suites/118578147",
                "pull_requests": [pr_ref(2, 186853002)],
                "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
                "created_at": "2026-01-02T03:00:00Z", "updated_at": "2026-01-02T03:10:00Z"
            },
            "repository": repository()
        });
        let c = &checks("check_suite", &body)[0];
        assert_eq!(
            (c.kind, c.name.as_str()),
            (CheckKind::CheckSuite, "github-actions")
        );
        assert_eq!(c.state, CheckState::Success);
        assert_eq!(c.pull_request, Some(2));
        assert_eq!(c.updated_at, ts("2026-01-02T03:10:00Z"));
        assert_eq!(
            c.url.as_deref(),
            Some(
                format!("https://github.com/Codertocat/Hello-World/commit/{SHA_LOWER}/checks")
                    .as_str()
            )
        );
        let mut requested = body.clone();
        requested["action"] = "requested".into();
        requested["check_suite"]["status"] = "queued".into();
        requested["check_suite"]["conclusion"] = serde_json::Value::Null;
        assert_eq!(
            checks("check_suite", &requested)[0].state,
            CheckState::Pending
        );
        let mut rerequested = body;
        rerequested["action"] = "rerequested".into();
        let n = normalize_check(
            "check_suite",
            "d",
            &serde_json::to_vec(&rerequested).unwrap(),
            at(0),
        );
        assert!(matches!(n, Ok(Normalized::Ignored(r)) if r.contains("rerequested")));
    }

    #[test]
    fn a_workflow_run_is_named_by_its_workflow() {
        let mut body = serde_json::json!({
            "action": "in_progress",
            "workflow_run": {
                "id": 289782451, "name": "CI", "head_branch": "changes", "head_sha": SHA,
                "status": "in_progress", "conclusion": null,
                "html_url": "https://github.com/Codertocat/Hello-World/actions/runs/289782451",
                "pull_requests": [pr_ref(3, 186853002)],
                "created_at": "2026-01-02T03:00:00Z", "updated_at": "2026-01-02T03:01:00Z"
            },
            "workflow": {"id": 3000, "name": "CI", "path": ".github/workflows/ci.yml"},
            "repository": repository()
        });
        let c = &checks("workflow_run", &body)[0];
        assert_eq!((c.kind, c.name.as_str()), (CheckKind::Workflow, "CI"));
        assert_eq!(c.state, CheckState::Pending);
        assert_eq!(c.message_group_id(), "Codertocat/Hello-World#3");
        assert_eq!(
            c.url.as_deref(),
            Some("https://github.com/Codertocat/Hello-World/actions/runs/289782451")
        );
        assert_eq!(c.updated_at, ts("2026-01-02T03:01:00Z"));
        // An empty run name falls back to the workflow's.
        body["workflow_run"]["name"] = "".into();
        body["workflow"]["name"] = "Build and test".into();
        assert_eq!(checks("workflow_run", &body)[0].name, "Build and test");
        // No name anywhere: nothing could await it.
        body["workflow"]["name"] = serde_json::Value::Null;
        let n = normalize_check(
            "workflow_run",
            "d",
            &serde_json::to_vec(&body).unwrap(),
            at(0),
        );
        assert!(matches!(n, Ok(Normalized::Ignored(r)) if r.contains("name")),);
    }

    #[test]
    fn a_status_is_named_by_its_context_and_grouped_by_its_commit() {
        let body = serde_json::json!({
            "id": 6805126730_u64, "sha": SHA, "name": "Codertocat/Hello-World",
            "target_url": "https://ci.example.com/build/7", "context": "ci/circleci: build",
            "description": null, "state": "error",
            "commit": {"sha": SHA_LOWER},
            "branches": [],
            "created_at": "2026-01-02T03:00:00+00:00", "updated_at": "2026-01-02T03:05:00+00:00",
            "repository": repository(),
            "sender": {"login": "Codertocat"}
        });
        let events = checks("status", &body);
        assert_eq!(events.len(), 1);
        let c = &events[0];
        assert_eq!(
            (c.kind, c.name.as_str()),
            (CheckKind::Status, "ci/circleci: build")
        );
        assert_eq!(c.state, CheckState::Failure);
        assert_eq!(c.conclusion.as_deref(), Some("error"));
        assert_eq!(c.url.as_deref(), Some("https://ci.example.com/build/7"));
        assert_eq!(c.updated_at, ts("2026-01-02T03:05:00Z"));
        assert_eq!(c.pull_request, None);
        assert_eq!(
            c.message_group_id(),
            format!("Codertocat/Hello-World@{SHA_LOWER}")
        );
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary_and_long_urls_dropped() {
        let mut body = check_run("completed", serde_json::json!([]));
        body["check_run"]["name"] = "é".repeat(MAX_CHECK_NAME_BYTES).into();
        body["check_run"]["html_url"] =
            format!("https://ci.example.com/{}", "x".repeat(MAX_CHECK_URL_BYTES)).into();
        let c = &checks("check_run", &body)[0];
        assert_eq!(c.name.len(), MAX_CHECK_NAME_BYTES);
        assert!(c.name.chars().all(|ch| ch == 'é'));
        assert_eq!(c.url, None);
    }

    #[test]
    fn malformed_check_payloads_are_errors() {
        let mut bad_sha = check_run("completed", serde_json::json!([]));
        bad_sha["check_run"]["head_sha"] = "ec26c3e".into();
        let err = normalize_check(
            "check_run",
            "d",
            &serde_json::to_vec(&bad_sha).unwrap(),
            at(0),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                EventError::Field {
                    field: "check_run.head_sha",
                    ..
                }
            ),
            "{err}"
        );
        let status = br#"{"sha":"nothex","context":"c","state":"success","repository":{"name":"r","full_name":"o/r","html_url":"https://github.com/o/r","owner":{"login":"o"}}}"#;
        assert!(matches!(
            normalize_check("status", "d", status, at(0)),
            Err(EventError::Field { field: "sha", .. })
        ));
        for event in ["check_run", "check_suite", "workflow_run", "status"] {
            for body in [
                &b"{"[..],
                br#"{"action":"completed"}"#,
                br#"{"action":"completed","check_run":{"head_sha":1}}"#,
            ] {
                assert!(
                    matches!(
                        normalize_check(event, "d", body, at(0)),
                        Err(EventError::Payload(_))
                    ),
                    "{event} {}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn normalize_dispatches_the_four_check_events() {
        let body = serde_json::to_vec(&check_run("completed", serde_json::json!([]))).unwrap();
        assert!(matches!(
            crate::event::normalize("check_run", "d", &body, at(0)),
            Ok(Normalized::Checks(c)) if c.len() == 1
        ));
        assert!(matches!(
            normalize_check("push", "d", b"{}", at(0)),
            Ok(Normalized::Ignored(r)) if r.contains("push")
        ));
    }

    #[test]
    fn queue_messages_name_their_event_group_and_action() {
        let c = QueueMessage::Check(Box::new(check_event(Some(7))));
        assert_eq!(
            (c.event(), c.action(), c.message_group_id().as_str()),
            ("check_run", None, "o/r#7")
        );
        assert_eq!(c.repository().full_name, "o/r");
        assert_eq!(QueueMessage::from_json(&c.to_json()).unwrap(), c);
    }
}
