//! Crash safety: a SIGKILL in the middle of a batch loses no message; SIGTERM stops receiving,
//! finishes the work in flight and exits 0 within the grace period.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use std::time::{Duration, Instant};

use guarantees_support::*;
use kubetempura_common::crd::Phase;
use kubetempura_tests::harness::stack::{Stack, StackOptions};
use kubetempura_tests::harness::wait_for;
use nix::sys::signal::Signal;

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_in_the_middle_of_a_batch_loses_no_message() {
    let mut stack = Stack::start(StackOptions {
        applier: false,
        visibility_timeout_secs: 4,
        ..options("crash", &["--concurrency", "2"])
    })
    .await;
    let prs = [30u64, 31, 32, 33];
    for pr in prs {
        // Each first apply of a Deployment is slow.
        stack
            .proxy
            .add_fault(delay_on(
                "PATCH",
                &deployments(&stack),
                &env_name(pr),
                2_000,
                1,
            ))
            .unwrap();
        stack
            .enqueue(
                &delivery(pr, &sha(u32::try_from(pr).unwrap()), "opened", 0),
                &format!("open-{pr}"),
            )
            .await;
    }
    stack.start_applier().await;
    // A delay rule is used up when its request arrives: kill while it is being served.
    wait_for(
        "a delayed Deployment apply in progress",
        Duration::from_secs(30),
        || async { (active_faults(&stack).len() < prs.len()).then_some(()) },
    )
    .await;
    stack.applier().signal(Signal::SIGKILL);
    let status = stack
        .applier
        .as_mut()
        .unwrap()
        .wait_exit(Duration::from_secs(10))
        .expect("killed");
    assert!(!status.success());
    let (_, in_flight) = stack.sqs.depth(&stack.queues.url).await;
    assert!(
        in_flight >= 1,
        "the crash happened with no message in flight"
    );

    let before_crash = log(&stack);

    stack.start_applier().await;
    for pr in prs {
        stack
            .wait_deployment_image(
                &stack.ns,
                &env_name(pr),
                &image(pr, &sha(u32::try_from(pr).unwrap())),
            )
            .await;
        stack
            .wait_pr_phase(&stack.ns, &env_name(pr), Phase::Applied)
            .await;
    }
    stack.wait_queue_drained().await;
    assert_eq!(dlq_depth(&stack).await, 0);
    assert!(stack.applier().metric(&acked("applied")).await >= in_flight as f64);
    // No message was lost: each one was handled to the end, before the crash or after it (the
    // resync at start could repair an environment whose message was lost; this could not).
    let after_restart = log(&stack);
    let mut handled_ids: Vec<String> = handled(&before_crash)
        .into_iter()
        .chain(handled(&after_restart))
        .filter(|h| h.outcome == "applied")
        .map(|h| h.delivery)
        .collect();
    handled_ids.sort();
    handled_ids.dedup();
    let want: Vec<String> = prs.iter().map(|pr| format!("open-{pr}")).collect();
    assert_eq!(
        handled_ids, want,
        "before the crash:\n{before_crash}\nafter the restart:\n{after_restart}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_receiving_finishes_in_flight_work_and_exits_within_the_grace_period() {
    const GRACE: Duration = Duration::from_secs(10);
    let mut stack = Stack::start(options(
        "sigterm",
        &["--shutdown-grace-seconds", &GRACE.as_secs().to_string()],
    ))
    .await;
    stack
        .proxy
        .add_fault(delay_on(
            "PATCH",
            &deployments(&stack),
            &env_name(35),
            3_000,
            1,
        ))
        .unwrap();
    stack
        .enqueue(&delivery(35, &sha(1), "opened", 0), "in-flight")
        .await;
    wait_for(
        "the delayed Deployment apply in progress",
        Duration::from_secs(30),
        || async { active_faults(&stack).is_empty().then_some(()) },
    )
    .await;
    let signalled = Instant::now();
    stack.applier().signal(Signal::SIGTERM);
    // Sent after SIGTERM: must stay in the queue.
    stack
        .enqueue(&delivery(36, &sha(2), "opened", 0), "after-sigterm")
        .await;
    let status = stack
        .applier
        .as_mut()
        .unwrap()
        .wait_exit(GRACE + Duration::from_secs(5))
        .expect("exited");
    let took = signalled.elapsed();
    let log = log(&stack);
    assert!(status.success(), "{status}\n{log}");
    assert!(took < GRACE, "exit took {took:?}");
    assert!(
        took >= Duration::from_secs(1),
        "exited after {took:?}, before the in-flight apply could finish"
    );

    // The in-flight event was applied completely and acknowledged.
    stack
        .wait_deployment_image(&stack.ns, &env_name(35), &image(35, &sha(1)))
        .await;
    let pr = stack
        .wait_pr_phase(&stack.ns, &env_name(35), Phase::Applied)
        .await;
    assert_eq!(pr.status.unwrap().inventory.len(), 2);
    assert_eq!(handled_for(&log, 35).len(), 1, "{log}");
    // The later one was not taken: it is the only message left.
    assert_eq!(queue_depth(&stack).await, 1);
    assert!(
        get(&stack, "apps/v1", "Deployment", &env_name(36))
            .await
            .is_none()
    );
    assert!(log.contains("stopped receiving"), "{log}");
}
