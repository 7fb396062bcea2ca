//! Closed stays closed: the tombstone left by a close is kept for the retention period, late
//! or redelivered events cannot resurrect the environment meanwhile, a `reopened` event brings
//! it back, and the tombstone is collected once the retention is over.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use std::time::Duration;

use guarantees_support::*;
use kubetempura_common::crd::Phase;
use kubetempura_tests::harness::stack::Stack;
use kubetempura_tests::harness::wait_for;

const RETENTION_SECS: i64 = 6;

async fn assert_no_objects(stack: &Stack) {
    assert!(
        stack
            .names("apps/v1", "Deployment", &stack.ns)
            .await
            .is_empty()
    );
    assert!(stack.names("v1", "Service", &stack.ns).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_pr_stays_closed_until_reopened_and_its_tombstone_is_collected_after_the_retention()
 {
    let stack = Stack::start(options(
        "closed",
        &[
            "--tombstone-retention-seconds",
            &RETENTION_SECS.to_string(),
            "--allow-short-tombstone-retention",
            "--resync-seconds",
            "1",
        ],
    ))
    .await;
    let pr = 20;
    let name = env_name(pr);
    stack
        .enqueue(&delivery(pr, &sha(1), "opened", 0), "open")
        .await;
    stack
        .wait_deployment_image(&stack.ns, &name, &image(pr, &sha(1)))
        .await;

    // Closed at minute 10: everything goes, a tombstone stays.
    let close = stack
        .enqueue(&delivery(pr, &sha(1), "closed", 10), "close")
        .await;
    stack
        .wait_gone("apps/v1", "Deployment", &stack.ns, &name)
        .await;
    stack.wait_gone("v1", "Service", &stack.ns, &name).await;
    let tombstone = stack.wait_pr_phase(&stack.ns, &name, Phase::Closed).await;
    assert!(tombstone.spec.closed);
    assert!(tombstone.status.as_ref().unwrap().inventory.is_empty());
    assert!(tombstone.status.as_ref().unwrap().closed_at.is_some());

    // Late and redelivered events inside the retention: a push from before the close, the
    // close itself again (after the deduplication window), a label added after the close.
    stack
        .enqueue(&delivery(pr, &sha(2), "synchronize", 5), "late-push")
        .await;
    stack
        .enqueue_raw(&close.to_json(), &close.message_group_id(), "close-again")
        .await;
    // GitHub sends `labeled` for a closed pull request with its state `closed`.
    let mut labeled = event_of(&delivery(pr, &sha(1), "labeled", 11), "label-after-close");
    labeled.state = "closed".into();
    stack
        .enqueue_raw(
            &labeled.to_json(),
            &labeled.message_group_id(),
            "label-after-close",
        )
        .await;
    wait_acked(&stack, 5.0).await;
    stack.wait_queue_drained().await;
    assert_no_objects(&stack).await;
    let still = get_pr(&stack, pr).await.expect("tombstone kept");
    assert_eq!(still.spec, tombstone.spec);
    assert_eq!(still.status.unwrap().phase, Some(Phase::Closed));
    let log = log(&stack);
    let late: Vec<(String, String)> = handled_for(&log, pr).into_iter().skip(2).collect();
    assert_eq!(
        late,
        [
            ("late-push".to_owned(), "stale".to_owned()),
            // The redelivered body names the original delivery.
            ("close".to_owned(), "stale".to_owned()),
            ("label-after-close".to_owned(), "stale".to_owned()),
        ],
        "{log}"
    );

    // Reopened: the environment comes back.
    stack
        .enqueue(&delivery(pr, &sha(1), "reopened", 12), "reopen")
        .await;
    stack
        .wait_deployment_image(&stack.ns, &name, &image(pr, &sha(1)))
        .await;
    let reopened = stack.wait_pr_phase(&stack.ns, &name, Phase::Applied).await;
    assert!(!reopened.spec.closed);
    assert!(get(&stack, "v1", "Service", &name).await.is_some());

    // Closed again: the tombstone is collected once the retention is over, not before.
    stack
        .enqueue(&delivery(pr, &sha(1), "closed", 13), "close-2")
        .await;
    let tombstone = stack.wait_pr_phase(&stack.ns, &name, Phase::Closed).await;
    let closed_at = chrono::DateTime::parse_from_rfc3339(
        tombstone.status.unwrap().closed_at.as_deref().unwrap(),
    )
    .unwrap();
    wait_for(
        "the tombstone to be collected",
        Duration::from_secs(30),
        || async { get_pr(&stack, pr).await.is_none().then_some(()) },
    )
    .await;
    let kept = chrono::Utc::now().signed_duration_since(closed_at);
    assert!(
        kept >= chrono::Duration::seconds(RETENTION_SECS),
        "tombstone collected after {kept}, retention is {RETENTION_SECS}s"
    );
    assert_no_objects(&stack).await;
    assert_eq!(dlq_depth(&stack).await, 0);
}
