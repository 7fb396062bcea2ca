//! The `PR` record of an environment: its spec built from an event, and back.

use chrono::{DateTime, SecondsFormat, Utc};
use kube::ResourceExt;
use kubetempura_common::crd::{Origin, PR, PRSpec, Phase, ReviewApp};
use kubetempura_common::event::{EVENT_SCHEMA_VERSION, PrAction, PrEvent, Repository};
use kubetempura_common::naming::split_repository_url;

/// The time of the event a record was last written from.
pub fn event_time(pr: &PR) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&pr.spec.last_event_at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The record's spec for `event`; `last_push_at` is the time expiry counts from (see
/// [`last_push_at`]).
///
/// `env_vars` stay empty: they are a person's (see [`PRSpec::env_vars`]), and the applier's
/// server-side apply never names them, so it neither owns nor removes them.
pub fn pr_spec(
    app_name: &str,
    event: &PrEvent,
    closed: bool,
    last_push_at: String,
    origin: Origin,
) -> PRSpec {
    PRSpec {
        recorded_head: Some(event.head_sha.clone()),
        env_vars: Vec::new(),
        origin,
        review_app: app_name.to_owned(),
        repository: event.repository.html_url.clone(),
        number: event.number,
        head_sha: event.head_sha.clone(),
        head_branch: event.head_ref.clone(),
        base_branch: event.base_ref.clone(),
        author: Some(event.author.clone()),
        title: Some(event.title.clone()),
        labels: event.labels.clone(),
        draft: event.draft,
        fork: event.fork,
        last_event_at: event
            .updated_at
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        last_push_at: Some(last_push_at),
        last_delivery_id: Some(event.delivery_id.clone()),
        closed,
    }
}

/// The time of the latest push or wake after `event` (`pushed`: the event comes from GitHub, not
/// a re-render): the event's own time when it opens, reopens or moves the head commit, or adds
/// `wake_label`; otherwise what `existing` recorded.
pub fn last_push_at(
    existing: Option<&PR>,
    event: &PrEvent,
    pushed: bool,
    wake_label: Option<&str>,
) -> String {
    let recorded = existing.map(|pr| {
        pr.spec
            .last_push_at
            .clone()
            .unwrap_or_else(|| pr.spec.last_event_at.clone())
    });
    let now = || {
        event
            .updated_at
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    };
    let Some(pr) = existing else {
        return now();
    };
    if !pushed {
        return recorded.unwrap_or_else(now);
    }
    let woken = wake_label.is_some_and(|l| {
        event.labels.iter().any(|x| x == l) && !pr.spec.labels.iter().any(|x| x == l)
    });
    let pushed = matches!(
        event.action,
        PrAction::Opened | PrAction::Reopened | PrAction::Synchronize
    ) || pr.spec.head_sha != event.head_sha
        || pr.spec.closed;
    if pushed || woken {
        now()
    } else {
        recorded.unwrap_or_else(now)
    }
}

/// When expiry counts from for `pr`.
pub fn pushed_at(pr: &PR) -> Option<DateTime<Utc>> {
    let t = pr
        .spec
        .last_push_at
        .as_deref()
        .unwrap_or(&pr.spec.last_event_at);
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// False only when GitHub reported the pull request as closed (an event without a state, as
/// from an older producer, counts as open).
pub fn is_open(event: &PrEvent) -> bool {
    event.state != "closed"
}

/// True when a closed `PR` object's close completed: phase Closed, nothing left in the inventory.
pub fn is_finished_tombstone(pr: &PR) -> bool {
    pr.status
        .as_ref()
        .is_some_and(|s| s.phase == Some(Phase::Closed) && s.inventory.is_empty())
}

/// Rebuilds the event an environment was last rendered from, for a re-render without a webhook.
pub fn event_from_pr(pr: &PR) -> Option<PrEvent> {
    let updated_at = event_time(pr)?;
    let mut event = recorded_event(pr, &pr.spec.repository, updated_at)?;
    event.delivery_id = format!("rerender-{}", pr.name_any());
    if pr.spec.closed {
        event.action = PrAction::Closed;
        "closed".clone_into(&mut event.state);
    }
    Some(event)
}

/// The event a `PR` object that needs recording (see [`PRSpec::needs_recording`]) stands for:
/// its commit, for its ReviewApp's repository, at a time just after what it recorded (its
/// creation time when it recorded nothing). The time follows the record, not the clock, so
/// every replica builds the same event, a later GitHub event still wins, and an older one is
/// still stale.
pub fn manual_event(pr: &PR, app: &ReviewApp) -> Option<PrEvent> {
    let created = pr.metadata.creation_timestamp.as_ref().and_then(|t| {
        DateTime::<Utc>::from_timestamp(
            t.0.as_second(),
            u32::try_from(t.0.subsec_nanosecond()).unwrap_or(0),
        )
    });
    let after_record = event_time(pr).map(|t| t + chrono::Duration::milliseconds(1));
    let updated_at = match (after_record, created) {
        (Some(a), Some(c)) => a.max(c),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return None,
    };
    let html_url = app.spec.github_repository.trim_end_matches('/');
    let mut event = recorded_event(pr, html_url, updated_at)?;
    event.delivery_id = format!("manual-{}", pr.name_any());
    Some(event)
}

/// A `synchronize` event of an open pull request of `html_url`, from what `pr` records.
fn recorded_event(pr: &PR, html_url: &str, updated_at: DateTime<Utc>) -> Option<PrEvent> {
    let (_, owner, name) = split_repository_url(html_url)?;
    Some(PrEvent {
        version: EVENT_SCHEMA_VERSION,
        delivery_id: String::new(),
        event: "pull_request".to_owned(),
        action: PrAction::Synchronize,
        repository: Repository {
            full_name: format!("{owner}/{name}"),
            owner,
            name,
            html_url: html_url.to_owned(),
        },
        number: pr.spec.number,
        title: pr.spec.title.clone().unwrap_or_default(),
        head_sha: pr.spec.head_sha.clone(),
        head_ref: pr.spec.head_branch.clone(),
        head_repository: None,
        base_ref: pr.spec.base_branch.clone(),
        fork: pr.spec.fork,
        draft: pr.spec.draft,
        state: "open".to_owned(),
        merged: false,
        labels: pr.spec.labels.clone(),
        author: pr.spec.author.clone().unwrap_or_default(),
        author_association: String::new(),
        sender: None,
        updated_at,
        received_at: Utc::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn app() -> ReviewApp {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubetempura.mercari.com/v1", "kind": "ReviewApp",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"githubRepository": "https://github.com/o/r/", "resources": []},
        }))
        .unwrap()
    }

    fn pr(spec: serde_json::Value, created: &str) -> PR {
        let mut pr: PR = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubetempura.mercari.com/v1", "kind": "PR",
            "metadata": {"name": "web-pr7", "namespace": "ns"},
            "spec": spec,
        }))
        .unwrap();
        pr.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        pr
    }

    #[test]
    fn the_manual_event_time_follows_the_record_not_the_clock() {
        // Nothing recorded: the object's creation time.
        let made = pr(
            serde_json::json!({"parentReviewApp": "web", "prNumber": "7", "headCommitRef": SHA}),
            "2026-12-01T10:00:00Z",
        );
        let event = manual_event(&made, &app()).unwrap();
        assert_eq!(event.updated_at.to_rfc3339(), "2026-12-01T10:00:00+00:00");
        assert_eq!(event.repository.full_name, "o/r");
        assert_eq!(event.repository.html_url, "https://github.com/o/r");
        assert_eq!((event.number, event.head_sha.as_str()), (7, SHA));
        assert_eq!(event.action, PrAction::Synchronize);
        // An edit after a recorded event: just after it, so a later GitHub event still wins.
        let edited = pr(
            serde_json::json!({"reviewApp": "web", "number": 7, "headSha": SHA,
                               "headCommitRef": "a".repeat(40),
                               "lastEventAt": "2026-12-01T12:00:00Z"}),
            "2026-12-01T10:00:00Z",
        );
        let event = manual_event(&edited, &app()).unwrap();
        assert_eq!(
            event
                .updated_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            "2026-12-01T12:00:00.001Z"
        );
        assert_eq!(event.head_sha, "a".repeat(40));
        let again = manual_event(&edited, &app()).unwrap();
        assert_eq!(again.updated_at, event.updated_at, "deterministic");
    }

    #[test]
    fn a_recorded_event_is_rebuilt_and_a_tombstone_is_a_close() {
        let mut closed = pr(
            serde_json::json!({"reviewApp": "web", "number": 7, "headSha": SHA,
                               "repository": "https://github.com/o/r",
                               "lastEventAt": "2026-12-01T12:00:00Z", "closed": true}),
            "2026-12-01T10:00:00Z",
        );
        let event = event_from_pr(&closed).unwrap();
        assert_eq!(
            (event.action, event.state.as_str()),
            (PrAction::Closed, "closed")
        );
        assert_eq!(event.delivery_id, "rerender-web-pr7");
        closed.spec.closed = false;
        let event = event_from_pr(&closed).unwrap();
        assert_eq!(
            (event.action, event.state.as_str()),
            (PrAction::Synchronize, "open")
        );
        closed.spec.last_event_at = String::new();
        assert!(
            event_from_pr(&closed).is_none(),
            "nothing recorded: no event to rebuild"
        );
    }
}
