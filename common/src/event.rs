//! The queue message: a small, versioned, normalised pull-request event.
//!
//! The webhook function turns a GitHub `pull_request` delivery (which can be megabytes) into a
//! [`PrEvent`] of a few hundred bytes and puts it on the queue; the applier reads it back. The
//! function forwards facts only (fork, draft, labels, author association, merged); every policy
//! decision is the applier's.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::naming::RepoKey;

/// The version of the [`PrEvent`] schema written by this code. A reader refuses other versions.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// Longest PR title carried in an event, in bytes (GitHub allows 256 characters).
pub const MAX_TITLE_BYTES: usize = 1024;

/// What happened to the pull request, reduced to the actions kubetempura acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrAction {
    Opened,
    Reopened,
    Synchronize,
    Closed,
    Labeled,
    Unlabeled,
    ReadyForReview,
    ConvertedToDraft,
    /// `edited` deliveries are forwarded only when the base branch changed.
    Edited,
}

impl PrAction {
    /// The GitHub spelling of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Reopened => "reopened",
            Self::Synchronize => "synchronize",
            Self::Closed => "closed",
            Self::Labeled => "labeled",
            Self::Unlabeled => "unlabeled",
            Self::ReadyForReview => "ready_for_review",
            Self::ConvertedToDraft => "converted_to_draft",
            Self::Edited => "edited",
        }
    }

    fn from_github(action: &str) -> Option<Self> {
        Some(match action {
            "opened" => Self::Opened,
            "reopened" => Self::Reopened,
            "synchronize" => Self::Synchronize,
            "closed" => Self::Closed,
            "labeled" => Self::Labeled,
            "unlabeled" => Self::Unlabeled,
            "ready_for_review" => Self::ReadyForReview,
            "converted_to_draft" => Self::ConvertedToDraft,
            "edited" => Self::Edited,
            _ => return None,
        })
    }
}

impl std::fmt::Display for PrAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The repository the pull request targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    /// `owner/name` as GitHub spells it.
    pub full_name: String,
    pub owner: String,
    pub name: String,
    /// The repository's web URL, e.g. `https://github.com/mercari/not-exists`.
    pub html_url: String,
}

impl Repository {
    /// The case-insensitive key ReviewApps are matched by.
    pub fn key(&self) -> Option<RepoKey> {
        RepoKey::parse(&self.html_url)
    }
}

/// The normalised event put on the queue (schema version [`EVENT_SCHEMA_VERSION`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrEvent {
    /// Schema version, always [`EVENT_SCHEMA_VERSION`] when written by this code.
    pub version: u32,
    /// `X-GitHub-Delivery` of the delivery this event came from.
    pub delivery_id: String,
    /// The GitHub event name; always `pull_request` today.
    pub event: String,
    pub action: PrAction,
    pub repository: Repository,
    pub number: u64,
    pub title: String,
    /// Full 40-character head commit SHA.
    pub head_sha: String,
    /// Head branch name (without `refs/heads/`).
    pub head_ref: String,
    /// `owner/name` of the repository the head branch lives in; absent when it was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_repository: Option<String>,
    pub base_ref: String,
    /// True when the head branch lives in another repository (a fork) or its repository is gone.
    pub fork: bool,
    pub draft: bool,
    /// `open` or `closed`.
    pub state: String,
    pub merged: bool,
    pub labels: Vec<String>,
    /// Login of the pull request's author.
    pub author: String,
    /// GitHub's `author_association` (OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, NONE …).
    pub author_association: String,
    /// Login of whoever caused the delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// The pull request's `updated_at`: orders events of one PR.
    pub updated_at: DateTime<Utc>,
    /// When the function received the delivery.
    pub received_at: DateTime<Utc>,
}

impl PrEvent {
    /// The FIFO message group: `owner/name#number`, so one PR's events stay in order (bounded
    /// to SQS's 128 characters by [`bounded_group`]).
    pub fn message_group_id(&self) -> String {
        bounded_group(&self.repository.full_name, &format!("#{}", self.number))
    }

    /// True for actions that end the environment.
    pub fn is_close(&self) -> bool {
        self.action == PrAction::Closed
    }

    /// Serialises the event as the queue message body.
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers, booleans and timestamps always serialises.
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("PrEvent serialises: {e}"))
    }

    /// Parses a queue message body, refusing unknown schema versions.
    pub fn from_json(body: &str) -> Result<Self, EventError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_str(body).map_err(EventError::Message)?;
        if v.version != EVENT_SCHEMA_VERSION {
            return Err(EventError::UnsupportedVersion(v.version));
        }
        serde_json::from_str(body).map_err(EventError::Message)
    }
}

/// A FIFO message group of `full_name` followed by `suffix` (`#number`, `@sha`). SQS takes at
/// most 128 characters and GitHub allows a 39-character owner and a 100-character repository
/// name: a longer group keeps the first characters of the repository, then `~` and 16 hex digits
/// of the full name's SHA-256 (deterministic, so every message of one pull request or commit
/// lands in the same group), then the suffix.
pub fn bounded_group(full_name: &str, suffix: &str) -> String {
    const MAX: usize = 128;
    let full = format!("{full_name}{suffix}");
    if full.len() <= MAX {
        return full;
    }
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(full_name.as_bytes()));
    let suffix = format!("~{}{suffix}", &digest[..16]);
    let mut keep = MAX.saturating_sub(suffix.len());
    while !full_name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &full_name[..keep])
}

/// Errors of normalising a delivery or reading a queue message.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("payload is not a valid delivery of its event: {0}")]
    Payload(#[source] serde_json::Error),
    #[error("payload field {field} is invalid: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("queue message is not a valid kubetempura event: {0}")]
    Message(#[source] serde_json::Error),
    #[error(
        "queue message has unsupported schema version {0} (this build reads {EVENT_SCHEMA_VERSION})"
    )]
    UnsupportedVersion(u32),
}

/// What normalising a delivery gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Normalized {
    /// An event to enqueue.
    Event(Box<PrEvent>),
    /// Check results to enqueue (never empty): see [`crate::check::normalize_check`].
    Checks(Vec<crate::check::CheckEvent>),
    /// Nothing to do, with the reason (for the 202 "ignored" answer and the log line).
    Ignored(String),
}

// The subset of GitHub's `pull_request` payload we read. Unknown fields are skipped by serde,
// so parsing cost is one pass over the bytes without building a tree.
#[derive(Deserialize)]
struct Payload {
    action: String,
    number: u64,
    pull_request: PullRequest,
    repository: PayloadRepo,
    #[serde(default)]
    sender: Option<User>,
    #[serde(default)]
    changes: Option<Changes>,
}

#[derive(Deserialize)]
struct PullRequest {
    #[serde(default)]
    title: String,
    state: String,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merged_at: Option<String>,
    updated_at: DateTime<Utc>,
    #[serde(default)]
    labels: Vec<Label>,
    user: User,
    #[serde(default)]
    author_association: Option<String>,
    head: Ref,
    base: Ref,
}

#[derive(Deserialize)]
struct Ref {
    #[serde(rename = "ref")]
    git_ref: String,
    sha: String,
    #[serde(default)]
    repo: Option<RefRepo>,
}

#[derive(Deserialize)]
struct RefRepo {
    full_name: String,
}

#[derive(Deserialize)]
struct PayloadRepo {
    name: String,
    full_name: String,
    html_url: String,
    owner: User,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct Label {
    name: String,
}

#[derive(Deserialize)]
struct Changes {
    #[serde(default)]
    base: Option<serde::de::IgnoredAny>,
}

/// Normalises one GitHub delivery.
///
/// `event` is the `X-GitHub-Event` header, `delivery_id` the `X-GitHub-Delivery` header and
/// `body` the JSON payload. Events and actions kubetempura does not act on are
/// [`Normalized::Ignored`] with a reason; a payload that lacks what we need is an error.
/// `check_run`, `check_suite`, `workflow_run` and `status` deliveries are check results
/// ([`crate::check::normalize_check`]).
pub fn normalize(
    event: &str,
    delivery_id: &str,
    body: &[u8],
    received_at: DateTime<Utc>,
) -> Result<Normalized, EventError> {
    if crate::check::CheckKind::from_github_event(event).is_some() {
        return crate::check::normalize_check(event, delivery_id, body, received_at);
    }
    if event != "pull_request" {
        return Ok(Normalized::Ignored(format!(
            "event {event:?} is not handled"
        )));
    }
    let p: Payload = serde_json::from_slice(body).map_err(EventError::Payload)?;
    let Some(action) = PrAction::from_github(&p.action) else {
        return Ok(Normalized::Ignored(format!(
            "pull_request action {:?} is not handled",
            p.action
        )));
    };
    if action == PrAction::Edited && p.changes.as_ref().and_then(|c| c.base.as_ref()).is_none() {
        return Ok(Normalized::Ignored(
            "pull_request edited without a base branch change".to_owned(),
        ));
    }
    let pr = p.pull_request;
    if !is_full_sha(&pr.head.sha) {
        return Err(EventError::Field {
            field: "pull_request.head.sha",
            reason: "not a 40-character hex commit id".to_owned(),
        });
    }
    let base_repo = pr.base.repo.as_ref().map(|r| r.full_name.as_str());
    let head_repository = pr.head.repo.map(|r| r.full_name);
    let fork = match (&head_repository, base_repo) {
        (Some(head), Some(base)) => !head.eq_ignore_ascii_case(base),
        (Some(head), None) => !head.eq_ignore_ascii_case(&p.repository.full_name),
        (None, _) => true,
    };
    let merged = pr.merged.unwrap_or(pr.merged_at.is_some());
    let mut title = pr.title;
    truncate_utf8(&mut title, MAX_TITLE_BYTES);
    Ok(Normalized::Event(Box::new(PrEvent {
        version: EVENT_SCHEMA_VERSION,
        delivery_id: delivery_id.to_owned(),
        event: event.to_owned(),
        action,
        repository: Repository {
            full_name: p.repository.full_name,
            owner: p.repository.owner.login,
            name: p.repository.name,
            html_url: p.repository.html_url,
        },
        number: p.number,
        title,
        head_sha: pr.head.sha.to_ascii_lowercase(),
        head_ref: pr.head.git_ref,
        head_repository,
        base_ref: pr.base.git_ref,
        fork,
        draft: pr.draft,
        state: pr.state,
        merged,
        labels: pr.labels.into_iter().map(|l| l.name).collect(),
        author: pr.user.login,
        author_association: pr.author_association.unwrap_or_else(|| "NONE".to_owned()),
        sender: p.sender.map(|s| s.login),
        updated_at: pr.updated_at,
        received_at,
    })))
}

/// True for a full 40-character hexadecimal commit id.
pub fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(action: &str, extra: &str) -> String {
        format!(
            r#"{{"action":"{action}","number":7,{extra}
            "pull_request":{{"title":"t","state":"open","draft":false,"merged":false,
              "updated_at":"2026-01-02T03:04:05Z","labels":[{{"name":"preview"}}],
              "user":{{"login":"alice"}},"author_association":"MEMBER",
              "head":{{"ref":"feature/x","sha":"32F7BFE8B7279912CE1EB6DFB6653EE297936CF7","repo":{{"full_name":"o/r"}}}},
              "base":{{"ref":"main","sha":"d0451ad4d774c8fbc843d3251530dcabb3c635a9","repo":{{"full_name":"o/r"}}}}}},
            "repository":{{"name":"r","full_name":"o/r","html_url":"https://github.com/o/r","owner":{{"login":"o"}}}},
            "sender":{{"login":"bob"}}}}"#
        )
    }

    fn event_of(n: Normalized) -> PrEvent {
        match n {
            Normalized::Event(e) => *e,
            other => panic!("not a pull_request event: {other:?}"),
        }
    }

    #[test]
    fn opened_delivery_normalises_with_all_fields() {
        let now = Utc::now();
        let e = event_of(
            normalize("pull_request", "d-1", payload("opened", "").as_bytes(), now).unwrap(),
        );
        assert_eq!(e.action, PrAction::Opened);
        assert_eq!(e.number, 7);
        assert_eq!(e.head_sha, "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7");
        assert_eq!(e.head_ref, "feature/x");
        assert_eq!(e.base_ref, "main");
        assert!(!e.fork);
        assert_eq!(e.labels, vec!["preview"]);
        assert_eq!(e.author, "alice");
        assert_eq!(e.author_association, "MEMBER");
        assert_eq!(e.sender.as_deref(), Some("bob"));
        assert_eq!(e.message_group_id(), "o/r#7");
        // The longest names GitHub allows exceed SQS's 128 characters: bounded, deterministic,
        // distinct per repository and per number.
        let mut long = e.clone();
        long.repository.full_name = format!("{}/{}", "o".repeat(39), "r".repeat(100));
        long.number = 4_000_000_000;
        let group = long.message_group_id();
        assert_eq!(group.len(), 128, "{group}");
        assert!(
            group.starts_with("ooo") && group.ends_with("#4000000000"),
            "{group}"
        );
        assert_eq!(group, long.message_group_id());
        let mut other = long.clone();
        other.repository.full_name.push('x');
        assert_ne!(group, other.message_group_id());
        other.repository.full_name = long.repository.full_name.clone();
        other.number = 4_000_000_001;
        assert_ne!(group, other.message_group_id());
        assert_eq!(e.received_at, now);
    }

    #[test]
    fn event_round_trips_through_json() {
        let e = event_of(
            normalize(
                "pull_request",
                "d-1",
                payload("closed", "").as_bytes(),
                Utc::now(),
            )
            .unwrap(),
        );
        let back = PrEvent::from_json(&e.to_json()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn unknown_schema_version_is_refused() {
        let err = PrEvent::from_json(r#"{"version":2}"#).unwrap_err();
        assert!(matches!(err, EventError::UnsupportedVersion(2)), "{err}");
        assert!(PrEvent::from_json("not json").is_err());
    }

    #[test]
    fn other_events_and_actions_are_ignored_with_reason() {
        let n = normalize("push", "d", b"{}", Utc::now()).unwrap();
        assert!(matches!(n, Normalized::Ignored(ref r) if r.contains("push")));
        let n = normalize(
            "pull_request",
            "d",
            payload("assigned", "").as_bytes(),
            Utc::now(),
        )
        .unwrap();
        assert!(matches!(n, Normalized::Ignored(ref r) if r.contains("assigned")));
    }

    #[test]
    fn edited_is_forwarded_only_when_base_changed() {
        let n = normalize(
            "pull_request",
            "d",
            payload("edited", r#""changes":{"title":{"from":"a"}},"#).as_bytes(),
            Utc::now(),
        )
        .unwrap();
        assert!(matches!(n, Normalized::Ignored(_)));
        let n = normalize(
            "pull_request",
            "d",
            payload("edited", r#""changes":{"base":{"ref":{"from":"dev"}}},"#).as_bytes(),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(event_of(n).action, PrAction::Edited);
    }

    #[test]
    fn fork_is_detected_from_head_repository() {
        let body = payload("opened", "").replace(
            r#""head":{"ref":"feature/x","sha":"32F7BFE8B7279912CE1EB6DFB6653EE297936CF7","repo":{"full_name":"o/r"}}"#,
            r#""head":{"ref":"feature/x","sha":"32F7BFE8B7279912CE1EB6DFB6653EE297936CF7","repo":{"full_name":"mallory/r"}}"#,
        );
        assert!(
            event_of(normalize("pull_request", "d", body.as_bytes(), Utc::now()).unwrap()).fork
        );
        let body =
            payload("opened", "").replace(r#""repo":{"full_name":"o/r"}},"#, r#""repo":null},"#);
        assert!(
            event_of(normalize("pull_request", "d", body.as_bytes(), Utc::now()).unwrap()).fork
        );
    }

    #[test]
    fn malformed_pull_request_payloads_are_errors() {
        assert!(matches!(
            normalize("pull_request", "d", b"{", Utc::now()),
            Err(EventError::Payload(_))
        ));
        assert!(matches!(
            normalize("pull_request", "d", br#"{"action":"opened"}"#, Utc::now()),
            Err(EventError::Payload(_))
        ));
        let body =
            payload("opened", "").replace("32F7BFE8B7279912CE1EB6DFB6653EE297936CF7", "nothex");
        assert!(matches!(
            normalize("pull_request", "d", body.as_bytes(), Utc::now()),
            Err(EventError::Field { .. })
        ));
    }

    #[test]
    fn long_titles_are_truncated_on_a_char_boundary() {
        let mut s = "é".repeat(1000);
        truncate_utf8(&mut s, 1023);
        assert_eq!(s.len(), 1022);
    }
}
