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
use crate::event::{EVENT_SCHEMA_VERSION, EventError, Repository, bounded_group};

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
}
