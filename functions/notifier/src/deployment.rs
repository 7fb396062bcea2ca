//! The GitHub deployment and deployment status an event becomes (request bodies only).

use kubetempura_common::feedback::{FeedbackEvent, FeedbackState};
use serde_json::{Value, json};

/// GitHub's limit on a deployment status description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 140;

/// The deployment status `state` for an environment state (GitHub accepts `error`, `failure`,
/// `inactive`, `in_progress`, `queued`, `pending` and `success`).
///
/// - A head commit waiting for its checks is `pending`: its deployment exists and has not
///   started. A commit queued behind `maxActive` is `queued`, GitHub's word for exactly that.
/// - A failed awaited check is `error`, not `failure`: the deployment never ran because
///   something before it failed (as a commit status's `error` means "could not run"), while
///   `failure` stays what it was, "kubetempura deployed and the environment failed". A reader of
///   `deployment_status` events can tell "fix the build" from "fix the environment".
/// - None of these is `success`, so none touches the deployment of the commit that still
///   serves: it keeps its `success` (GitHub's `auto_inactive` acts on a `success` only, and
///   never on transient environments like ours).
/// - An expired environment is removed like a closed one: `inactive` (GitHub shows a transient
///   deployment set `inactive` as destroyed).
pub fn status_state(state: FeedbackState) -> &'static str {
    match state {
        FeedbackState::Deploying => "in_progress",
        FeedbackState::Ready => "success",
        FeedbackState::Failed => "failure",
        FeedbackState::Waiting => "pending",
        FeedbackState::Blocked => "error",
        FeedbackState::Queued => "queued",
        FeedbackState::Closed | FeedbackState::Skipped | FeedbackState::Expired => "inactive",
    }
}

/// `text` cut to `max` characters (at a character boundary), ending with `…` when cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The status description: the event's message, or a sentence for its state.
pub fn description(event: &FeedbackEvent) -> String {
    let message = event
        .message
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let text = if message.is_empty() {
        match event.state {
            FeedbackState::Deploying => "Deploying".to_owned(),
            FeedbackState::Ready => "Environment ready".to_owned(),
            FeedbackState::Failed => "Deployment failed".to_owned(),
            FeedbackState::Closed => "Environment removed".to_owned(),
            FeedbackState::Skipped => "Not deployed by policy; environment removed".to_owned(),
            FeedbackState::Waiting => "Waiting for the required checks".to_owned(),
            FeedbackState::Blocked => "A required check failed; not deployed".to_owned(),
            FeedbackState::Queued => "Queued: the ReviewApp's maxActive is reached".to_owned(),
            FeedbackState::Expired => "Expired without a push; environment removed".to_owned(),
        }
    } else {
        message
    };
    truncate_chars(&text, MAX_DESCRIPTION_CHARS)
}

/// `POST /repos/{owner}/{repo}/deployments` body for the event's commit and environment.
pub fn create_deployment_body(event: &FeedbackEvent, environment: &str) -> Value {
    let mut payload = json!({
        "reviewApp": event.review_app,
        "namespace": event.namespace,
        "pr": event.pr_number,
    });
    if let Some(cluster) = &event.cluster {
        payload["cluster"] = json!(cluster);
    }
    json!({
        "ref": event.head_sha,
        "environment": environment,
        "transient_environment": true,
        "production_environment": false,
        "auto_merge": false,
        "required_contexts": [],
        "description": format!("kubetempura review environment {}", event.review_app),
        "payload": payload,
    })
}

/// `POST /repos/{owner}/{repo}/deployments/{id}/statuses` body for the event, in `state`
/// (normally [`status_state`] of the event's).
pub fn status_body(event: &FeedbackEvent, environment: &str, state: &str) -> Value {
    let mut body = json!({
        "state": state,
        "description": description(event),
        "environment": environment,
    });
    if !event.state.is_removed()
        && let Some(url) = &event.environment_url
    {
        body["environment_url"] = json!(url);
    }
    if let Some(url) = &event.log_url {
        body["log_url"] = json!(url);
    }
    if state == "success" {
        // GitHub then marks the environment's older successful deployments inactive.
        body["auto_inactive"] = json!(true);
    }
    body
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kubetempura_common::feedback::FEEDBACK_SCHEMA_VERSION;

    pub(crate) fn event(state: FeedbackState) -> FeedbackEvent {
        FeedbackEvent {
            version: FEEDBACK_SCHEMA_VERSION,
            cluster: None,
            namespace: "team-a".into(),
            review_app: "web".into(),
            environment: "web-pr12".into(),
            repository: "Mercari/Web".into(),
            pr_number: 12,
            head_sha: "0123456789abcdef0123456789abcdef01234567".into(),
            state,
            message: "1 of 1 replicas available".into(),
            environment_url: Some("https://pr12.review.example.com".into()),
            log_url: Some("https://logs.example.com/web-pr12".into()),
            time: "2026-12-01T10:00:00Z".parse().expect("time"),
        }
    }

    #[test]
    fn each_environment_state_maps_to_a_github_status_state() {
        assert_eq!(status_state(FeedbackState::Deploying), "in_progress");
        assert_eq!(status_state(FeedbackState::Ready), "success");
        assert_eq!(status_state(FeedbackState::Failed), "failure");
        assert_eq!(status_state(FeedbackState::Closed), "inactive");
        assert_eq!(status_state(FeedbackState::Skipped), "inactive");
        assert_eq!(status_state(FeedbackState::Waiting), "pending");
        assert_eq!(status_state(FeedbackState::Blocked), "error");
        assert_eq!(status_state(FeedbackState::Queued), "queued");
        assert_eq!(status_state(FeedbackState::Expired), "inactive");
    }

    /// Every state, for tests that must cover each.
    pub(crate) const ALL_STATES: [FeedbackState; 9] = [
        FeedbackState::Deploying,
        FeedbackState::Ready,
        FeedbackState::Failed,
        FeedbackState::Closed,
        FeedbackState::Skipped,
        FeedbackState::Waiting,
        FeedbackState::Blocked,
        FeedbackState::Queued,
        FeedbackState::Expired,
    ];

    #[test]
    fn only_ready_posts_success_so_nothing_else_retires_the_serving_deployment() {
        for state in ALL_STATES {
            let body = status_body(&event(state), "web-pr12", status_state(state));
            assert_eq!(
                body.get("auto_inactive").is_some(),
                state == FeedbackState::Ready,
                "{state}: {body}"
            );
        }
    }

    #[test]
    fn every_state_has_its_own_sentence_for_an_empty_message() {
        let sentences: std::collections::HashSet<String> = ALL_STATES
            .iter()
            .map(|&state| {
                let mut e = event(state);
                e.message = " \n ".into();
                let d = description(&e);
                assert!(
                    !d.trim().is_empty() && d.chars().count() <= MAX_DESCRIPTION_CHARS,
                    "{state}: {d:?}"
                );
                d
            })
            .collect();
        assert_eq!(sentences.len(), ALL_STATES.len(), "{sentences:?}");
        let mut e = event(FeedbackState::Blocked);
        e.message = String::new();
        assert_eq!(description(&e), "A required check failed; not deployed");
        e.message = "check run `build` failed on 0123456: https://ci.example.com/build/7".into();
        assert_eq!(description(&e), e.message, "the applier's words win");
    }

    #[test]
    fn descriptions_are_cut_to_140_characters_at_a_character_boundary() {
        let mut e = event(FeedbackState::Failed);
        e.message = "é".repeat(300);
        let d = description(&e);
        assert_eq!(d.chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(d.ends_with('…'));
        e.message = "x".repeat(140);
        assert_eq!(description(&e), "x".repeat(140));
        assert_eq!(truncate_chars("abc", 2), "a…");
    }

    #[test]
    fn an_empty_message_gets_a_sentence_and_whitespace_is_collapsed() {
        let mut e = event(FeedbackState::Ready);
        e.message = String::new();
        assert_eq!(description(&e), "Environment ready");
        e.message = "apply failed:\n  Deployment/web\tinvalid".into();
        assert_eq!(description(&e), "apply failed: Deployment/web invalid");
    }

    #[test]
    fn a_success_status_carries_urls_and_auto_inactive() {
        let e = event(FeedbackState::Ready);
        let body = status_body(&e, "web-pr12", "success");
        assert_eq!(body["state"], "success");
        assert_eq!(body["environment"], "web-pr12");
        assert_eq!(body["environment_url"], "https://pr12.review.example.com");
        assert_eq!(body["log_url"], "https://logs.example.com/web-pr12");
        assert_eq!(body["auto_inactive"], true);
    }

    #[test]
    fn other_statuses_leave_auto_inactive_to_github_and_removed_ones_have_no_url() {
        let body = status_body(&event(FeedbackState::Deploying), "web-pr12", "in_progress");
        assert!(body.get("auto_inactive").is_none(), "{body}");
        assert_eq!(body["environment_url"], "https://pr12.review.example.com");
        for removed in [FeedbackState::Closed, FeedbackState::Expired] {
            let body = status_body(&event(removed), "web-pr12", "inactive");
            assert!(body.get("environment_url").is_none(), "{body}");
            assert!(body.get("auto_inactive").is_none(), "{body}");
        }
    }

    #[test]
    fn a_deployment_is_transient_not_production_and_never_merges() {
        let mut e = event(FeedbackState::Deploying);
        e.cluster = Some("tokyo-1".into());
        let body = create_deployment_body(&e, "tokyo-1/web-pr12");
        assert_eq!(body["ref"], e.head_sha);
        assert_eq!(body["environment"], "tokyo-1/web-pr12");
        assert_eq!(body["transient_environment"], true);
        assert_eq!(body["production_environment"], false);
        assert_eq!(body["auto_merge"], false);
        assert_eq!(body["required_contexts"], json!([]));
        assert_eq!(body["description"], "kubetempura review environment web");
        assert_eq!(
            body["payload"],
            json!({"reviewApp": "web", "namespace": "team-a", "pr": 12, "cluster": "tokyo-1"})
        );
    }
}
