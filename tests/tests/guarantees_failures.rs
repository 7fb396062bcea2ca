//! Transient failures are retried (and end in the dead-letter queue when they never stop);
//! poison messages reach the dead-letter queue quickly without holding back their pull
//! request. Real processes: the SQS emulator, `kubetempura run`, the control plane behind the fault proxy.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod guarantees_support;

use std::time::{Duration, Instant};

use guarantees_support::*;
use kubetempura_common::crd::Phase;
use kubetempura_common::event::PrEvent;
use kubetempura_tests::harness::faults::FaultRule;
use kubetempura_tests::harness::stack::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_api_errors_is_retried_until_the_environment_is_correct() {
    let stack = Stack::start(StackOptions {
        max_receive_count: 5,
        ..options("burst", &[])
    })
    .await;
    stack
        .proxy
        .add_fault(fault_on(
            "PATCH",
            &deployments(&stack),
            &env_name(10),
            503,
            3,
        ))
        .unwrap();
    stack
        .enqueue(&delivery(10, &sha(1), "opened", 0), "burst-1")
        .await;
    stack
        .wait_deployment_image(&stack.ns, &env_name(10), &image(10, &sha(1)))
        .await;
    let pr = stack
        .wait_pr_phase(&stack.ns, &env_name(10), Phase::Applied)
        .await;
    assert_eq!(pr.status.unwrap().inventory.len(), 2);
    assert!(get(&stack, "v1", "Service", &env_name(10)).await.is_some());
    stack.wait_queue_drained().await;
    assert_eq!(stack.applier().metric(&failed("transient")).await, 3.0);
    assert_eq!(stack.applier().metric(&acked("applied")).await, 1.0);
    assert_eq!(dlq_depth(&stack).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_api_error_ends_in_the_dead_letter_queue_logged_and_counted() {
    let stack = Stack::start(StackOptions {
        max_receive_count: 3,
        ..options("permanent", &[])
    })
    .await;
    stack
        .proxy
        .add_fault(FaultRule {
            count: None,
            ..fault_on("PATCH", &deployments(&stack), &env_name(11), 503, 0)
        })
        .unwrap();
    stack
        .enqueue(&delivery(11, &sha(1), "opened", 0), "broken-1")
        .await;
    // Another pull request is not affected.
    stack
        .enqueue(&delivery(12, &sha(2), "opened", 0), "healthy-1")
        .await;
    stack
        .wait_deployment_image(&stack.ns, &env_name(12), &image(12, &sha(2)))
        .await;

    let bodies = wait_dlq(&stack, Duration::from_secs(60)).await;
    let dead: Vec<String> = bodies
        .iter()
        .map(|b| PrEvent::from_json(b).unwrap().delivery_id)
        .collect();
    assert_eq!(dead, ["broken-1"]);
    stack.wait_queue_drained().await;
    assert_eq!(dlq_depth(&stack).await, 1);

    assert_eq!(stack.applier().metric(&failed("transient")).await, 3.0);
    assert_eq!(stack.applier().metric(&acked("applied")).await, 1.0);
    assert!(
        get(&stack, "apps/v1", "Deployment", &env_name(11))
            .await
            .is_none()
    );
    let log = log(&stack);
    let failures = log
        .lines()
        .filter(|l| {
            l.contains("transient failure") && l.contains("delivery=broken-1") && l.contains("503")
        })
        .count();
    assert_eq!(failures, 3, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_reaches_the_dead_letter_queue_quickly_without_holding_back_its_pr() {
    let stack = Stack::start(StackOptions {
        max_receive_count: 3,
        ..options("poison", &[])
    })
    .await;
    let started = Instant::now();
    // Garbage, then a valid event, in the group of PR 13; an unknown schema version, then a
    // valid event, in the group of PR 14.
    let garbage = "this is not a kubetempura event";
    let future = r#"{"version":999,"delivery_id":"from-the-future"}"#;
    stack
        .enqueue_raw(garbage, "mercari/not-exists#13", "poison-1")
        .await;
    stack
        .enqueue(&delivery(13, &sha(1), "opened", 0), "valid-13")
        .await;
    stack
        .enqueue_raw(future, "mercari/not-exists#14", "poison-2")
        .await;
    stack
        .enqueue(&delivery(14, &sha(2), "opened", 0), "valid-14")
        .await;

    stack
        .wait_deployment_image(&stack.ns, &env_name(13), &image(13, &sha(1)))
        .await;
    stack
        .wait_deployment_image(&stack.ns, &env_name(14), &image(14, &sha(2)))
        .await;
    let valid_applied = started.elapsed();
    stack.wait_queue_drained().await;
    let mut dead = wait_dlq(&stack, Duration::from_secs(30)).await;
    if dead.len() < 2 {
        dead.extend(wait_dlq(&stack, Duration::from_secs(30)).await);
    }
    dead.sort();
    let mut want = vec![garbage.to_owned(), future.to_owned()];
    want.sort();
    assert_eq!(dead, want);
    let all_dead = started.elapsed();

    assert!(
        valid_applied < Duration::from_secs(10),
        "the valid events waited {valid_applied:?} behind the poison"
    );
    assert!(
        all_dead < Duration::from_secs(20),
        "the poison took {all_dead:?} to reach the DLQ"
    );
    assert_eq!(dlq_depth(&stack).await, 2);
    assert_eq!(stack.applier().metric(&failed("poison")).await, 6.0);
    assert_eq!(stack.applier().metric(&acked("applied")).await, 2.0);
    let log = log(&stack);
    assert!(
        log.lines().filter(|l| l.contains("poison message")).count() >= 6,
        "{log}"
    );
}
