//! Transient failures are retried in process, charging no receive (and end in the dead-letter
//! queue when they outlast the retry budget on every receive); an outage never drags a pull
//! request's later messages into the dead-letter queue; poison messages reach the dead-letter
//! queue quickly without holding back their pull request. Real processes: the SQS emulator,
//! `kubetempura run`, the control plane behind the fault proxy.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use std::time::{Duration, Instant};

use guarantees_support::*;
use kubetempura_common::crd::Phase;
use kubetempura_common::event::PrEvent;
use kubetempura_tests::harness::faults::FaultRule;
use kubetempura_tests::harness::stack::{Stack, StackOptions};

/// Lines of the log about a failed attempt of `delivery`.
fn failed_attempts(log: &str, delivery: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("transient failure") && l.contains(&format!("delivery={delivery}")))
        .map(str::to_owned)
        .collect()
}

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
    // Retried in process: the message was received once, and each attempt is logged.
    assert_eq!(stack.applier().metric(RECEIVED).await, 1.0);
    let log = log(&stack);
    let attempts = failed_attempts(&log, "burst-1");
    assert_eq!(attempts.len(), 3, "{log}");
    for (n, line) in attempts.iter().enumerate() {
        assert!(line.contains(&format!("attempt={}", n + 1)), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_outage_longer_than_the_receive_budget_drags_no_message_of_the_pr_into_the_dead_letter_queue()
 {
    let stack = Stack::start(StackOptions {
        max_receive_count: 2,
        ..options("outage", &[])
    })
    .await;
    let pr = 15;
    open_applied(&stack, pr).await;
    // The API server answers 503 to everything the applier asks, while the pull request gets a
    // push and is closed: two messages of one group.
    stack
        .proxy
        .add_fault(FaultRule {
            status: Some(503),
            ..FaultRule::default()
        })
        .unwrap();
    stack
        .enqueue(&delivery(pr, &sha(2), "synchronize", 1), "outage-push")
        .await;
    stack
        .enqueue(&delivery(pr, &sha(2), "closed", 2), "outage-close")
        .await;
    // Far more failed attempts than the queue's max receive count, over longer than max receive
    // count × the longest retry delay (2 × 2 s): had each attempt been a receive, both messages
    // would be in the dead-letter queue by now.
    wait_metric(&stack, &failed("transient"), 6.0).await;
    assert_eq!(dlq_depth(&stack).await, 0);

    stack.proxy.clear_faults();
    stack
        .wait_pr_phase(&stack.ns, &env_name(pr), Phase::Closed)
        .await;
    wait_env_gone(&stack, pr).await;
    assert_drained_nothing_dead(&stack).await;
    // Each message was received once: the outage charged no receive to any of them.
    assert_eq!(stack.applier().metric(RECEIVED).await, 3.0);
    let log = log(&stack);
    assert_eq!(
        handled_for(&log, pr),
        [
            (format!("open-{pr}"), "applied".to_owned()),
            ("outage-push".to_owned(), "applied".to_owned()),
            ("outage-close".to_owned(), "closed".to_owned()),
        ],
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_error_that_never_stops_ends_in_the_dead_letter_queue_after_the_retry_budget_logged_and_counted()
 {
    let stack = Stack::start(StackOptions {
        max_receive_count: 3,
        ..options("never-stops", &["--retry-budget-seconds", "2"])
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

    assert_eq!(stack.applier().metric(&acked("applied")).await, 1.0);
    assert!(
        get(&stack, "apps/v1", "Deployment", &env_name(11))
            .await
            .is_none()
    );
    // Each receive retried in process (1 s, then the next delay of 2 s would overrun the 2 s
    // budget) before the message went back to the queue: three receives, then the DLQ.
    let log = log(&stack);
    let failures = failed_attempts(&log, "broken-1");
    assert!(failures.iter().all(|l| l.contains("503")), "{log}");
    let given_back = failures
        .iter()
        .filter(|l| l.contains("retry budget spent"))
        .count();
    assert_eq!(given_back, 3, "{log}");
    assert!(failures.len() > given_back, "no retry in process:\n{log}");
    assert_eq!(
        stack.applier().metric(&failed("transient")).await,
        failures.len() as f64
    );
    assert_eq!(stack.applier().metric(RECEIVED).await, 4.0);
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
