//! Every `pull_request` example of `@octokit/webhooks-examples` normalises, or is ignored with a
//! stated reason; none errors.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use chrono::Utc;
use kubetempura_common::event::{Normalized, PrEvent, normalize};
use kubetempura_common::testing::pull_request_examples;

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
            Normalized::Ignored(reason) => {
                ignored += 1;
                assert!(
                    !ACTED_ON.contains(&ex.action.as_str()),
                    "{} was ignored: {reason}",
                    ex.source
                );
                assert!(
                    reason.contains(&ex.action),
                    "{}: reason {reason:?} does not name the action",
                    ex.source
                );
            }
        }
    }
    assert!(
        events >= 15 && ignored >= 10,
        "events {events}, ignored {ignored}"
    );
}
