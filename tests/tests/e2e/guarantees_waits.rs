//! Bounded waits: a hung Kubernetes API call fails after the request timeout and is retried; work
//! that outlives the queue's visibility timeout keeps its message (a heartbeat extends it), so it
//! is never received twice; `/readyz` fails while the consumer holds messages and finishes none.
//! Real processes: the SQS emulator, `kubetempura run`, the control plane behind the fault proxy.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use std::time::{Duration, Instant};

use guarantees_support::*;
use kubetempura_tests::harness::faults::FaultRule;
use kubetempura_tests::harness::stack::{Stack, StackOptions};
use kubetempura_tests::harness::wait_for;

/// `/readyz`: status and body.
async fn readyz(stack: &Stack) -> (u16, String) {
    let resp = kubetempura_tests::harness::http()
        .get(format!("{}/readyz", stack.applier().metrics_url))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_api_call_times_out_and_is_retried_until_the_environment_is_applied() {
    let stack = Stack::start(options("hung", &["--request-timeout-seconds", "2"])).await;
    let pr = 60;
    // Every apply of the Deployment hangs (ten minutes) until the fault is cleared.
    stack
        .proxy
        .add_fault(FaultRule {
            count: None,
            ..delay_on("PATCH", &deployments(&stack), &env_name(pr), 600_000, 0)
        })
        .unwrap();
    stack
        .enqueue(&delivery(pr, &sha(1), "opened", 0), "hung-1")
        .await;
    // Each hung attempt fails after the request timeout, frees the environment and is retried.
    let timeouts = || {
        log(&stack)
            .lines()
            .filter(|l| {
                l.contains("transient failure")
                    && l.contains("delivery=hung-1")
                    && l.contains("timed out")
            })
            .count()
    };
    wait_for(
        "two timed-out attempts",
        Duration::from_secs(60),
        || async { (timeouts() >= 2).then_some(()) },
    )
    .await;

    stack.proxy.clear_faults();
    wait_applied(&stack, pr, &sha(1)).await;
    assert_drained_nothing_dead(&stack).await;
    assert_eq!(stack.applier().metric(RECEIVED).await, 1.0);
    let log = log(&stack);
    assert_eq!(
        handled_for(&log, pr),
        [("hung-1".to_owned(), "applied".to_owned())]
    );
    // Every failed attempt says why.
    assert!(
        log.lines()
            .filter(|l| l.contains("transient failure"))
            .all(|l| l.contains("request timed out")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn work_longer_than_the_visibility_timeout_is_not_received_twice() {
    let stack = Stack::start(StackOptions {
        visibility_timeout_secs: 4,
        ..options("long-work", &[])
    })
    .await;
    let pr = 61;
    // The first apply of the Deployment takes 10 s: more than twice the visibility timeout.
    stack
        .proxy
        .add_fault(delay_on(
            "PATCH",
            &deployments(&stack),
            &env_name(pr),
            10_000,
            1,
        ))
        .unwrap();
    let sent = Instant::now();
    stack
        .enqueue(&delivery(pr, &sha(1), "opened", 0), "long-1")
        .await;
    wait_applied(&stack, pr, &sha(1)).await;
    assert!(
        sent.elapsed() >= Duration::from_secs(10),
        "the slow apply did not happen"
    );
    assert_drained_nothing_dead(&stack).await;
    assert_eq!(stack.applier().metric(RECEIVED).await, 1.0);
    let log = log(&stack);
    assert_eq!(
        handled_for(&log, pr),
        [("long-1".to_owned(), "applied".to_owned())],
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_fails_while_the_consumer_finishes_nothing_and_recovers_after() {
    let stack = Stack::start(options("stall", &["--stall-seconds", "3"])).await;
    assert_eq!(readyz(&stack).await.0, 200);
    let pr = 62;
    stack
        .proxy
        .add_fault(FaultRule {
            count: None,
            ..fault_on("PATCH", &deployments(&stack), &env_name(pr), 503, 0)
        })
        .unwrap();
    stack
        .enqueue(&delivery(pr, &sha(1), "opened", 0), "stall-1")
        .await;
    let body = wait_for("/readyz to fail", Duration::from_secs(60), || async {
        let (status, body) = readyz(&stack).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(
        body.contains("consumer stalled") && body.contains("holding 1"),
        "{body}"
    );
    assert!(stack.applier().metric(&failed("transient")).await >= 1.0);

    stack.proxy.clear_faults();
    wait_applied(&stack, pr, &sha(1)).await;
    wait_for("/readyz to recover", Duration::from_secs(60), || async {
        (readyz(&stack).await.0 == 200).then_some(())
    })
    .await;
    assert_drained_nothing_dead(&stack).await;
}
