//! What the applier and the notifier decode from their queues (unknown versions, truncated
//! JSON, wrong types) and the object policy on arbitrary objects.
//!
//! Properties: a decoded message encodes back to itself; the policy always refuses this
//! project's own kinds and service-account-token Secrets, whatever it allows; a parsed
//! `Kind.group` prints back to itself; a glob matches itself.
#![no_main]

use kubetempura_common::API_GROUP;
use kubetempura_common::check::QueueMessage;
use kubetempura_common::feedback::FeedbackEvent;
use kubetempura_common::policy::{GroupKind, ObjectPolicy, builtin_scope, decide, glob_match};
use kubetempura_fuzz::assert_message_round_trips;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn messages(text: &str) {
    if let Ok(message) = QueueMessage::from_json(text) {
        assert_message_round_trips(&message);
        if let QueueMessage::PullRequest(event) = &message {
            let _ = decide(None, event);
        }
    }
    if let Ok(event) = FeedbackEvent::from_json(text) {
        let json = event.to_json();
        let back = FeedbackEvent::from_json(&json)
            .unwrap_or_else(|e| panic!("a feedback event the applier sends is refused: {e}"));
        assert_eq!(back, event);
        let _ = (event.message_group_id(), event.deduplication_id());
        let _ = event.github_environment();
    }
}

fn policy(text: &str) {
    if let Ok(gk) = text.parse::<GroupKind>() {
        assert_eq!(gk.to_string().parse::<GroupKind>(), Ok(gk));
    }
    let (pattern, subject) = text.split_once('\n').unwrap_or((text, ""));
    let _ = glob_match(pattern, subject);
    assert!(
        glob_match(pattern, pattern),
        "{pattern:?} does not match itself"
    );
    assert!(glob_match("*", subject));

    let Ok(object) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let gk = GroupKind::from_api_version(api_version, kind);
    let scope = builtin_scope(&gk);
    let always_refused = gk.group == API_GROUP
        || (gk.group.is_empty()
            && gk.kind == "Secret"
            && object["type"] == "kubernetes.io/service-account-token");
    for policy in [
        ObjectPolicy::default(),
        ObjectPolicy::allowing([gk.clone()]).with_applier_service_account("fuzz-applier"),
    ] {
        let result = policy.check_object(&gk, scope, &object);
        if always_refused {
            assert!(result.is_err(), "{gk} was allowed");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    messages(&text);
    policy(&text);
});
