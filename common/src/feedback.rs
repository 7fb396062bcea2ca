//! The outbound queue message: an environment's state, for the notifier to show on the pull
//! request.
//!
//! The applier sends one [`FeedbackEvent`] per change of an environment's state (a ReviewApp × a
//! pull request) to the feedback queue, a FIFO queue whose message group is the pull request
//! ([`FeedbackEvent::message_group_id`]), so one pull request's events stay in order while
//! pull requests proceed in parallel. The notifier turns them into GitHub deployment statuses
//! and one comment per pull request. The cluster holds no GitHub credential: this message is
//! all that leaves it.
//!
//! An event is a fact with a time: the notifier ignores an event older than what it already
//! shows for the same environment ([`FeedbackEvent::is_newer_than`]), so a redelivered or
//! late event never overwrites a newer state. Sending the same state twice yields the same
//! message and the same deduplication id ([`FeedbackEvent::deduplication_id`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version of the [`FeedbackEvent`] schema written by this code. A reader refuses other
/// versions.
pub const FEEDBACK_SCHEMA_VERSION: u32 = 1;

/// Longest message carried in an event, in bytes; longer messages are cut at a character
/// boundary and end with `…`.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// An environment's state as the pull request shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackState {
    /// Objects applied for the head commit; workloads still rolling out.
    Deploying,
    /// Every workload rolled out.
    Ready,
    /// Applying failed, or the rollout did not finish within the ReviewApp's timeout.
    Failed,
    /// The pull request was closed (or merged) and the environment removed.
    Closed,
    /// The ReviewApp's policy does not deploy this pull request (fork, draft, labels, branches);
    /// any environment it had was removed.
    Skipped,
    /// The head commit waits for the ReviewApp's `waitFor` checks (the message names them); the
    /// previous commit, if any, still serves.
    Waiting,
    /// An awaited check failed on the head commit (the message names it, with its link); the
    /// previous commit, if any, still serves.
    Blocked,
    /// The ReviewApp's `maxActive` environments are deployed; this one waits for a slot (the
    /// message says how many are ahead).
    Queued,
    /// Removed after the ReviewApp's `expireAfter` without a push (the message says how to
    /// wake it).
    Expired,
}

impl FeedbackState {
    /// The state's spelling in events and on GitHub comments.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploying => "deploying",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Closed => "closed",
            Self::Skipped => "skipped",
            Self::Waiting => "waiting",
            Self::Blocked => "blocked",
            Self::Queued => "queued",
            Self::Expired => "expired",
        }
    }

    /// Whether the environment is gone in this state (its GitHub deployment becomes inactive).
    pub fn is_removed(self) -> bool {
        matches!(self, Self::Closed | Self::Skipped | Self::Expired)
    }
}

impl std::fmt::Display for FeedbackState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One environment state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackEvent {
    /// Always [`FEEDBACK_SCHEMA_VERSION`] when written by this code.
    pub version: u32,
    /// The cluster the environment runs in (`kubetempura run --cluster-name`), when named: one
    /// pull request can have environments in several clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The ReviewApp's namespace.
    pub namespace: String,
    /// The ReviewApp's name.
    pub review_app: String,
    /// The environment's name: the `PR` object's name (`<reviewapp>-pr<number>`). The GitHub
    /// deployment environment is derived from it (see [`FeedbackEvent::github_environment`]).
    pub environment: String,
    /// `owner/name` as GitHub spells it.
    pub repository: String,
    pub pr_number: u64,
    /// The commit the state is about (full SHA).
    pub head_sha: String,
    pub state: FeedbackState,
    /// For humans: the error, what is being waited for, or what was done.
    #[serde(default)]
    pub message: String,
    /// Where the environment answers (the ReviewApp's rendered `environmentURL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_url: Option<String>,
    /// Where to read more (logs, a dashboard), when the platform team configured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// When the environment entered this state. Events of one environment are ordered by it.
    pub time: DateTime<Utc>,
}

/// Why a queue message is not a [`FeedbackEvent`] this code can act on.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackDecodeError {
    #[error("feedback event is not valid JSON of the expected shape: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error(
        "feedback event schema version {found} is not supported (this build reads {FEEDBACK_SCHEMA_VERSION})"
    )]
    Version { found: u32 },
    #[error("feedback event field {field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: &'static str,
    },
}

impl FeedbackEvent {
    /// The FIFO message group: the pull request, so its events stay in order.
    pub fn message_group_id(&self) -> String {
        message_group_id(&self.repository, self.pr_number)
    }

    /// A deduplication id that is the same for the same event sent twice (a retried send, two
    /// applier replicas) and differs for anything else.
    pub fn deduplication_id(&self) -> String {
        let body = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&body))
    }

    /// The name of the GitHub deployment environment: the environment's name, prefixed by the
    /// cluster's when there is one (`<cluster>/<environment>`).
    pub fn github_environment(&self) -> String {
        match &self.cluster {
            Some(cluster) if !cluster.is_empty() => format!("{cluster}/{}", self.environment),
            _ => self.environment.clone(),
        }
    }

    /// Whether `self` should replace a state recorded at `shown` for the same environment: later
    /// events win; an event with the same time as the shown one is a redelivery.
    pub fn is_newer_than(&self, shown: DateTime<Utc>) -> bool {
        self.time > shown
    }

    /// Encodes the event as the queue message body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes and checks a queue message body.
    pub fn from_json(body: &str) -> Result<Self, FeedbackDecodeError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let Version { version } = serde_json::from_str(body)?;
        if version != FEEDBACK_SCHEMA_VERSION {
            return Err(FeedbackDecodeError::Version { found: version });
        }
        let event: Self = serde_json::from_str(body)?;
        event.validate()?;
        Ok(event)
    }

    fn validate(&self) -> Result<(), FeedbackDecodeError> {
        let invalid = |field, problem| Err(FeedbackDecodeError::Invalid { field, problem });
        if !is_owner_slash_name(&self.repository) {
            return invalid("repository", "must be owner/name");
        }
        if self.pr_number == 0 {
            return invalid("prNumber", "must be a positive number");
        }
        if self.head_sha.len() < 7 || !self.head_sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return invalid("headSha", "must be a commit SHA (hex)");
        }
        if self.environment.is_empty() || self.review_app.is_empty() {
            return invalid("environment", "must not be empty");
        }
        Ok(())
    }
}

/// `owner/name` with GitHub's characters for both.
fn is_owner_slash_name(repository: &str) -> bool {
    let part = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    matches!(repository.split_once('/'), Some((owner, name)) if part(owner) && part(name))
}

/// What an environment's `PR` record says the pull request should show: the state of the
/// environment, derived from the record alone so that it can be recomputed after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub state: FeedbackState,
    pub commit: String,
    pub message: String,
    pub environment_url: Option<String>,
    pub log_url: Option<String>,
}

impl Desired {
    /// What the record of the environment (`status.feedback`) keeps of what was sent: a change
    /// of state, commit, message or URL is sent again.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.state.as_str(),
            &self.commit,
            &self.message,
            self.environment_url.as_deref().unwrap_or_default(),
            self.log_url.as_deref().unwrap_or_default(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..12])
    }

    /// The event to send for the environment `pr`, stamped `time`.
    pub fn event(
        &self,
        pr: &crate::crd::PR,
        cluster: Option<&str>,
        time: DateTime<Utc>,
    ) -> Option<FeedbackEvent> {
        use kube::ResourceExt;
        let (_, owner, name) = crate::naming::split_repository_url(&pr.spec.repository)?;
        Some(FeedbackEvent {
            version: FEEDBACK_SCHEMA_VERSION,
            cluster: cluster.map(str::to_owned),
            namespace: pr.namespace().unwrap_or_default(),
            review_app: pr.spec.review_app.clone(),
            environment: pr.name_any(),
            repository: format!("{owner}/{name}"),
            pr_number: pr.spec.number,
            head_sha: self.commit.clone(),
            state: self.state,
            message: bounded_message(&self.message),
            environment_url: self.environment_url.clone(),
            log_url: self.log_url.clone(),
            time,
        })
    }
}

/// The state the pull request should show for the environment recorded by `pr`; `None` while
/// the record has no outcome yet, and for an environment made by hand (`Origin::Manual`).
pub fn desired(pr: &crate::crd::PR) -> Option<Desired> {
    use crate::crd::{Origin, Phase, RolloutState};
    if pr.spec.origin == Origin::Manual {
        // Made by hand: there may be no such pull request, or not at this commit.
        return None;
    }
    let status = pr.status.as_ref()?;
    let message = status.message.clone().unwrap_or_default();
    let head = pr.spec.head_sha.clone();
    let (state, commit, message) = match status.phase? {
        Phase::Applied => {
            let rollout = status.rollout.as_ref();
            let commit = status.applied_commit.clone().unwrap_or(head);
            match rollout.map(|r| (r.state, r.message.clone())) {
                Some((RolloutState::Complete, m)) => (FeedbackState::Ready, commit, m),
                Some((RolloutState::TimedOut, m)) => (FeedbackState::Failed, commit, m),
                Some((RolloutState::Progressing, m)) => (FeedbackState::Deploying, commit, m),
                // Applied by a version that did not track rollouts: the objects exist.
                None => (FeedbackState::Ready, commit, message),
            }
        }
        Phase::Failed => (FeedbackState::Failed, head, message),
        Phase::Closed => (FeedbackState::Closed, head, message),
        Phase::Skipped => (FeedbackState::Skipped, head, message),
        Phase::Waiting => (FeedbackState::Waiting, head, message),
        Phase::Blocked => (FeedbackState::Blocked, head, message),
        Phase::Queued => (FeedbackState::Queued, head, message),
        Phase::Expired => (
            FeedbackState::Expired,
            status.applied_commit.clone().unwrap_or(head),
            message,
        ),
    };
    let (environment_url, log_url) = match state {
        FeedbackState::Closed
        | FeedbackState::Skipped
        | FeedbackState::Expired
        | FeedbackState::Queued => (None, None),
        _ => (status.environment_url.clone(), status.log_url.clone()),
    };
    Some(Desired {
        state,
        commit,
        message,
        environment_url,
        log_url,
    })
}

/// The FIFO message group of a pull request's events.
pub fn message_group_id(repository: &str, pr_number: u64) -> String {
    format!("{}#{pr_number}", repository.to_ascii_lowercase())
}

/// Cuts `message` to [`MAX_MESSAGE_BYTES`] at a character boundary.
pub fn bounded_message(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE_BYTES - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> FeedbackEvent {
        FeedbackEvent {
            version: FEEDBACK_SCHEMA_VERSION,
            cluster: None,
            namespace: "team-a".into(),
            review_app: "web".into(),
            environment: "web-pr12".into(),
            repository: "Mercari/Web".into(),
            pr_number: 12,
            head_sha: "0123456789abcdef0123456789abcdef01234567".into(),
            state: FeedbackState::Ready,
            message: "1 of 1 replicas available".into(),
            environment_url: Some("https://pr12.review.example.com".into()),
            log_url: None,
            time: "2026-12-01T10:00:00Z".parse().expect("time"),
        }
    }

    #[test]
    fn an_event_round_trips_through_its_json() {
        let e = event();
        let json = e.to_json();
        assert!(json.contains(r#""state":"ready""#), "{json}");
        assert!(json.contains(r#""prNumber":12"#), "{json}");
        assert!(
            !json.contains("logUrl"),
            "absent fields are omitted: {json}"
        );
        assert_eq!(FeedbackEvent::from_json(&json).expect("decode"), e);
    }

    #[test]
    fn other_versions_truncations_and_wrong_types_are_refused() {
        let json = event().to_json();
        let v2 = json.replace(r#""version":1"#, r#""version":2"#);
        assert!(matches!(
            FeedbackEvent::from_json(&v2),
            Err(FeedbackDecodeError::Version { found: 2 })
        ));
        assert!(matches!(
            FeedbackEvent::from_json(&json[..json.len() / 2]),
            Err(FeedbackDecodeError::Malformed(_))
        ));
        let wrong = json.replace(r#""prNumber":12"#, r#""prNumber":"12""#);
        assert!(matches!(
            FeedbackEvent::from_json(&wrong),
            Err(FeedbackDecodeError::Malformed(_))
        ));
        let state = json.replace(r#""state":"ready""#, r#""state":"exploded""#);
        assert!(FeedbackEvent::from_json(&state).is_err());
        let sha = json.replace("0123456789abcdef0123456789abcdef01234567", "main");
        assert!(matches!(
            FeedbackEvent::from_json(&sha),
            Err(FeedbackDecodeError::Invalid {
                field: "headSha",
                ..
            })
        ));
        let repo = json.replace("Mercari/Web", "no-slash");
        assert!(matches!(
            FeedbackEvent::from_json(&repo),
            Err(FeedbackDecodeError::Invalid {
                field: "repository",
                ..
            })
        ));
    }

    #[test]
    fn one_pull_request_is_one_message_group_whatever_the_case() {
        let mut a = event();
        let mut b = event();
        b.review_app = "api".into();
        b.environment = "api-pr12".into();
        a.repository = "mercari/web".into();
        assert_eq!(a.message_group_id(), b.message_group_id());
        b.pr_number = 13;
        assert_ne!(a.message_group_id(), b.message_group_id());
    }

    #[test]
    fn the_same_event_has_the_same_deduplication_id_and_any_change_another() {
        let a = event();
        assert_eq!(a.deduplication_id(), event().deduplication_id());
        let mut b = event();
        b.state = FeedbackState::Failed;
        assert_ne!(a.deduplication_id(), b.deduplication_id());
        let mut c = event();
        c.time = "2026-12-01T10:00:01Z".parse().expect("time");
        assert_ne!(a.deduplication_id(), c.deduplication_id());
        assert!(
            a.deduplication_id().len() <= 128,
            "SQS allows 128 characters"
        );
    }

    #[test]
    fn only_a_later_event_replaces_a_shown_state() {
        let e = event();
        assert!(e.is_newer_than("2026-12-01T09:59:59Z".parse().expect("t")));
        assert!(!e.is_newer_than(e.time));
        assert!(!e.is_newer_than("2026-12-01T10:00:01Z".parse().expect("t")));
    }

    #[test]
    fn the_github_environment_names_the_cluster_when_there_is_one() {
        let mut e = event();
        assert_eq!(e.github_environment(), "web-pr12");
        e.cluster = Some("tokyo-1".into());
        assert_eq!(e.github_environment(), "tokyo-1/web-pr12");
    }

    fn pr(status: serde_json::Value) -> crate::crd::PR {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubetempura.mercari.com/v1",
            "kind": "PR",
            "metadata": {"name": "web-pr12", "namespace": "team-a"},
            "spec": {
                "reviewApp": "web", "repository": "https://github.com/Mercari/Web", "number": 12,
                "headSha": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "headBranch": "f",
                "baseBranch": "main", "lastEventAt": "2026-12-01T10:00:00Z"
            },
            "status": status,
        }))
        .expect("PR")
    }

    fn rollout(state: &str, message: &str) -> serde_json::Value {
        serde_json::json!({"commit": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "state": state,
            "message": message, "startedAt": "2026-12-01T10:00:00Z"})
    }

    #[test]
    fn an_applied_environment_is_deploying_ready_or_failed_by_its_rollout() {
        let applied = |r| {
            pr(
                serde_json::json!({"phase": "Applied", "message": "2 object(s) applied",
                "appliedCommit": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "environmentURL": "https://pr12.example.com", "logURL": "https://logs.example.com/12",
                "rollout": r}),
            )
        };
        let d = desired(&applied(rollout("Progressing", "waiting"))).expect("desired");
        assert_eq!(d.state, FeedbackState::Deploying);
        assert_eq!(
            d.commit, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "the applied commit"
        );
        assert_eq!(d.message, "waiting");
        let ready = desired(&applied(rollout("Complete", "1 workload(s) rolled out"))).expect("d");
        assert_eq!(ready.state, FeedbackState::Ready);
        assert_eq!(
            ready.log_url.as_deref(),
            Some("https://logs.example.com/12")
        );
        assert_eq!(
            ready.environment_url.as_deref(),
            Some("https://pr12.example.com")
        );
        let late = desired(&applied(rollout("TimedOut", "0 of 1 after 10m"))).expect("d");
        assert_eq!(late.state, FeedbackState::Failed);
        assert_eq!(late.message, "0 of 1 after 10m");
        assert_ne!(d.digest(), ready.digest());
        assert_ne!(ready.digest(), late.digest());
    }

    #[test]
    fn failures_closes_and_skips_are_about_the_recorded_head() {
        let failed = desired(&pr(
            serde_json::json!({"phase": "Failed", "message": "boom",
            "appliedCommit": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}),
        ))
        .expect("d");
        assert_eq!(
            (
                failed.state,
                failed.commit.as_str(),
                failed.message.as_str()
            ),
            (
                FeedbackState::Failed,
                "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                "boom"
            )
        );
        let closed = desired(&pr(
            serde_json::json!({"phase": "Closed", "message": "merged",
            "environmentURL": "https://pr12.example.com"}),
        ))
        .expect("d");
        assert_eq!(closed.state, FeedbackState::Closed);
        assert_eq!(
            closed.environment_url, None,
            "a removed environment has no URL"
        );
        let skipped = desired(&pr(
            serde_json::json!({"phase": "Skipped", "message": "draft"}),
        ));
        assert_eq!(skipped.map(|d| d.state), Some(FeedbackState::Skipped));
        assert_eq!(desired(&pr(serde_json::json!({}))), None, "no outcome yet");
    }

    #[test]
    fn the_event_names_the_repository_as_owner_slash_name_and_the_environment() {
        let record = pr(serde_json::json!({"phase": "Closed", "message": "merged"}));
        let d = desired(&record).expect("desired");
        let time = "2026-12-01T11:00:00Z".parse().expect("time");
        let e = d.event(&record, Some("tokyo"), time).expect("event");
        assert_eq!(e.repository, "Mercari/Web");
        assert_eq!(
            (
                e.namespace.as_str(),
                e.review_app.as_str(),
                e.environment.as_str()
            ),
            ("team-a", "web", "web-pr12")
        );
        assert_eq!(e.github_environment(), "tokyo/web-pr12");
        assert_eq!(e.time, time);
        FeedbackEvent::from_json(&e.to_json()).expect("the event is valid");
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = bounded_message(&long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(bounded_message("short"), "short");
    }
}
