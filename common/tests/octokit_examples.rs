//! Every `pull_request`, `check_run`, `check_suite`, `workflow_run` and `status` example of
//! `@octokit/webhooks-examples` normalises, or is ignored with a stated reason; none errors.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use chrono::Utc;
use kubetempura_common::check::{CheckKind, CheckState, QueueMessage};
use kubetempura_common::event::{Normalized, PrEvent, normalize};
use kubetempura_common::testing::{examples, pull_request_examples};

const ACTED_ON: &[&str] = &[
    "opened",
    "reopened",
    "synchronize",
    "closed",
    "labeled",
    "unlabeled",
    "ready_for_review",
    "converted_to_draft",
];

/// An ignored example is of an action not acted on, and the reason names that action.
fn assert_ignored_for_its_action(source: &str, action: &str, acted_on: &[&str], reason: &str) {
    assert!(
        !acted_on.contains(&action),
        "{source} was ignored: {reason}"
    );
    assert!(
        reason.contains(action),
        "{source}: reason {reason:?} does not name the action"
    );
}

#[test]
fn every_octokit_pull_request_example_normalises_or_is_ignored_with_a_reason() {
    let examples = pull_request_examples();
    let public = examples
        .iter()
        .filter(|e| e.source.starts_with("api.github.com#"))
        .count();
    assert!(
        public >= 29,
        "expected at least 29 api.github.com examples, found {public}"
    );
    assert!(examples.len() > public, "expected ghes-* examples too");
    let (mut events, mut ignored) = (0, 0);
    for ex in &examples {
        let n = normalize("pull_request", "delivery-1", &ex.body, Utc::now())
            .unwrap_or_else(|e| panic!("{}: {e}", ex.source));
        match n {
            Normalized::Event(e) => {
                events += 1;
                assert_eq!(e.action.as_str(), ex.action, "{}", ex.source);
                let raw: serde_json::Value = serde_json::from_slice(&ex.body).unwrap();
                assert_eq!(e.number, raw["number"].as_u64().unwrap(), "{}", ex.source);
                assert_eq!(
                    e.head_sha,
                    raw["pull_request"]["head"]["sha"].as_str().unwrap(),
                    "{}",
                    ex.source
                );
                assert_eq!(
                    e.repository.full_name,
                    raw["repository"]["full_name"].as_str().unwrap()
                );
                assert_eq!(
                    e.merged,
                    raw["pull_request"]["merged"].as_bool().unwrap_or(false),
                    "{}",
                    ex.source
                );
                // The queue message is small and reads back identically.
                let json = e.to_json();
                assert!(
                    json.len() < 4096,
                    "{}: message is {} bytes",
                    ex.source,
                    json.len()
                );
                assert_eq!(PrEvent::from_json(&json).unwrap(), *e);
            }
            Normalized::Checks(c) => panic!("{}: check events {c:?}", ex.source),
            Normalized::Ignored(reason) => {
                ignored += 1;
                assert_ignored_for_its_action(&ex.source, &ex.action, ACTED_ON, &reason);
            }
        }
    }
    assert!(
        events >= 15 && ignored >= 10,
        "events {events}, ignored {ignored}"
    );
}

/// The object of a check payload that holds the result (the payload itself for `status`).
fn check_object<'a>(event: &str, raw: &'a serde_json::Value) -> &'a serde_json::Value {
    match event {
        "status" => raw,
        _ => &raw[event],
    }
}

#[test]
fn every_octokit_check_example_normalises_or_is_ignored_with_a_reason() {
    // What each event forwards; everything else must be ignored (see `normalize_check`).
    let forwarded: &[(&str, &[&str])] = &[
        ("check_run", &["created", "completed"]),
        ("check_suite", &["requested", "completed"]),
        ("workflow_run", &["requested", "in_progress", "completed"]),
        ("status", &[""]),
    ];
    let (mut commit_grouped, mut other_repo_dropped) = (0, 0);
    for (event, acted_on) in forwarded {
        let kind = CheckKind::from_github_event(event).unwrap();
        let all = examples(event);
        assert!(all.len() >= 5, "{event}: only {} examples", all.len());
        let (mut queued, mut ignored) = (0, 0);
        for ex in &all {
            let raw: serde_json::Value = serde_json::from_slice(&ex.body).unwrap();
            let obj = check_object(event, &raw);
            let n = normalize(event, "delivery-1", &ex.body, Utc::now())
                .unwrap_or_else(|e| panic!("{event} {}: {e}", ex.source));
            let events = match n {
                Normalized::Checks(events) => events,
                Normalized::Ignored(reason) => {
                    ignored += 1;
                    let source = format!("{event} {}", ex.source);
                    assert_ignored_for_its_action(&source, &ex.action, acted_on, &reason);
                    continue;
                }
                Normalized::Event(e) => panic!("{event} {}: a pull_request event {e:?}", ex.source),
            };
            queued += 1;
            assert!(
                acted_on.contains(&ex.action.as_str()),
                "{event} {}",
                ex.source
            );
            let sha = obj[if *event == "status" {
                "sha"
            } else {
                "head_sha"
            }]
            .as_str()
            .unwrap();
            let repo = raw["repository"]["full_name"].as_str().unwrap();
            let repo_id = raw["repository"]["id"].as_u64().unwrap();
            let own_prs: Vec<u64> = obj["pull_requests"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["base"]["repo"]["id"].as_u64() == Some(repo_id))
                .map(|p| p["number"].as_u64().unwrap())
                .collect();
            if obj["pull_requests"]
                .as_array()
                .is_some_and(|a| a.len() > own_prs.len())
            {
                other_repo_dropped += 1;
            }
            let want_state = if *event == "status" {
                CheckState::from_status(raw["state"].as_str().unwrap())
            } else {
                CheckState::from_run(
                    obj["status"].as_str().unwrap_or_default(),
                    obj["conclusion"].as_str(),
                )
            };
            let groups: Vec<String> = events.iter().map(|c| c.message_group_id()).collect();
            if own_prs.is_empty() {
                commit_grouped += 1;
                assert_eq!(groups, [format!("{repo}@{}", sha.to_ascii_lowercase())]);
            } else {
                let want: Vec<String> = own_prs.iter().map(|n| format!("{repo}#{n}")).collect();
                assert_eq!(groups, want, "{event} {}", ex.source);
            }
            for c in &events {
                assert_eq!(c.kind, kind);
                assert_eq!(c.event, *event);
                assert_eq!(c.head_sha, sha.to_ascii_lowercase());
                assert_eq!(c.repository.full_name, repo);
                assert_eq!(c.state, want_state, "{event} {}", ex.source);
                assert!(!c.name.is_empty(), "{event} {}", ex.source);
                let json = c.to_json();
                assert!(
                    json.len() < 4096,
                    "{event} {}: {} bytes",
                    ex.source,
                    json.len()
                );
                assert_eq!(
                    QueueMessage::from_json(&json).unwrap(),
                    QueueMessage::Check(Box::new(c.clone()))
                );
            }
        }
        assert!(queued >= 2, "{event}: queued {queued}, ignored {ignored}");
        if *event != "status" && *event != "workflow_run" {
            assert!(ignored >= 1, "{event}: no example was ignored");
        }
    }
    // The fixtures hold a fork's (PR-less) results and a workflow run listing another
    // repository's pull request: both end up in their commit's group.
    assert!(commit_grouped >= 3, "{commit_grouped}");
    assert!(other_repo_dropped >= 1, "{other_repo_dropped}");
}
