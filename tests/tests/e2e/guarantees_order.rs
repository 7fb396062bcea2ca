//! Per-PR order, stale events and duplicates, across real processes: the SQS emulator (FIFO
//! queue + DLQ), `kubetempura run` and the control plane behind the fault-injecting proxy.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use guarantees_support::*;
use kubetempura_common::crd::Phase;
use kubetempura_tests::harness::stack::{Stack, StackOptions};

/// Sends `count` synchronize events for `pr` (commits sha(base+1..), minutes 1..), delivery
/// ids `<prefix>-1..`; returns the delivery ids in queue order.
async fn push_commits(stack: &Stack, pr: u64, base: u32, count: u32, prefix: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 1..=count {
        let id = format!("{prefix}-{i}");
        stack
            .enqueue(
                &delivery(pr, &sha(base + i), "synchronize", i64::from(i)),
                &id,
            )
            .await;
        ids.push(id);
    }
    ids
}

fn applied_in_order(ids: &[String]) -> Vec<(String, String)> {
    ids.iter()
        .map(|id| (id.clone(), "applied".to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_of_one_pr_in_one_receive_batch_are_applied_in_queue_order() {
    let mut stack = Stack::start(StackOptions {
        applier: false,
        ..options("order-batch", &[])
    })
    .await;
    // Interleave two pull requests so the first receive batch holds several messages of each.
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 1..=5u32 {
        let id = format!("a-{i}");
        stack
            .enqueue(&delivery(1, &sha(i), "synchronize", i64::from(i)), &id)
            .await;
        a.push(id);
        if i <= 4 {
            let id = format!("b-{i}");
            stack
                .enqueue(
                    &delivery(2, &sha(100 + i), "synchronize", i64::from(i)),
                    &id,
                )
                .await;
            b.push(id);
        }
    }
    stack.start_applier().await;
    stack.wait_queue_drained().await;
    wait_acked(&stack, 9.0).await;

    let log = log(&stack);
    assert_eq!(handled_for(&log, 1), applied_in_order(&a), "{log}");
    assert_eq!(handled_for(&log, 2), applied_in_order(&b), "{log}");
    assert_eq!(stack.applier().metric(&acked("stale")).await, 0.0);
    assert_eq!(stack.applier().metric(RECEIVED).await, 9.0);
    stack
        .wait_deployment_image(&stack.ns, &env_name(1), &image(1, &sha(5)))
        .await;
    stack
        .wait_deployment_image(&stack.ns, &env_name(2), &image(2, &sha(104)))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_message_holds_back_the_later_messages_of_its_pr() {
    let mut stack = Stack::start(StackOptions {
        applier: false,
        ..options("order-failure", &[])
    })
    .await;
    let ids = push_commits(&stack, 3, 0, 4, "c").await;
    // Another pull request in the same batch is not held back.
    stack
        .enqueue(&delivery(4, &sha(50), "opened", 1), "other-1")
        .await;
    // The first two applies of PR 3's Deployment fail: its first message fails twice.
    stack
        .proxy
        .add_fault(fault_on(
            "PATCH",
            &deployments(&stack),
            &env_name(3),
            503,
            2,
        ))
        .unwrap();
    stack.start_applier().await;
    stack
        .wait_deployment_image(&stack.ns, &env_name(4), &image(4, &sha(50)))
        .await;
    stack.wait_queue_drained().await;
    wait_acked(&stack, 5.0).await;

    let log = log(&stack);
    // Each later message ran only after the first one succeeded: none was applied ahead of it
    // (which would have made the first one stale when it was retried).
    assert_eq!(handled_for(&log, 3), applied_in_order(&ids), "{log}");
    assert_eq!(stack.applier().metric(&failed("transient")).await, 2.0);
    assert_eq!(stack.applier().metric(&acked("stale")).await, 0.0);
    let first_success = log
        .lines()
        .position(|l| l.contains("event handled") && l.contains("delivery=c-1"))
        .unwrap();
    let failures: Vec<usize> = log
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("transient failure") && l.contains("delivery=c-1"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failures.len(), 2, "{log}");
    assert!(failures.iter().all(|&i| i < first_success), "{log}");
    stack
        .wait_deployment_image(&stack.ns, &env_name(3), &image(3, &sha(4)))
        .await;
    assert_eq!(dlq_depth(&stack).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_older_than_the_recorded_one_is_acknowledged_as_stale() {
    let stack = Stack::start(options("stale", &[])).await;
    // Commit A is pushed, then B; GitHub delivers B's synchronize first.
    let (a, b) = (sha(1), sha(2));
    stack
        .enqueue(&delivery(5, &b, "synchronize", 2), "push-b")
        .await;
    stack
        .enqueue(&delivery(5, &a, "synchronize", 1), "push-a")
        .await;
    wait_acked(&stack, 2.0).await;
    stack.wait_queue_drained().await;

    let dep = stack
        .wait_deployment_image(&stack.ns, &env_name(5), &image(5, &b))
        .await;
    assert_eq!(dep.metadata.generation, Some(1), "A was never applied");
    let pr = stack
        .wait_pr_phase(&stack.ns, &env_name(5), Phase::Applied)
        .await;
    assert_eq!(pr.spec.head_sha, b);
    assert_eq!(
        pr.status.unwrap().applied_commit.as_deref(),
        Some(b.as_str())
    );
    assert_eq!(stack.applier().metric(&acked("applied")).await, 1.0);

    let log = log(&stack);
    assert_eq!(
        handled_for(&log, 5),
        [
            ("push-b".to_owned(), "applied".to_owned()),
            ("push-a".to_owned(), "stale".to_owned())
        ],
        "{log}"
    );
    let line = handled(&log)
        .into_iter()
        .find(|h| h.delivery == "push-a")
        .unwrap()
        .line;
    assert!(
        line.contains("reason=") && line.contains("older than"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_deliveries_leave_the_cluster_as_one_delivery_would() {
    let stack = Stack::start(options("duplicates", &[])).await;
    let d = delivery(6, &sha(1), "opened", 0);
    let event = stack.enqueue(&d, "dup-1").await;
    stack
        .wait_deployment_image(&stack.ns, &env_name(6), &image(6, &sha(1)))
        .await;
    stack
        .wait_pr_phase(&stack.ns, &env_name(6), Phase::Applied)
        .await;
    stack.wait_queue_drained().await;
    let dep = get(&stack, "apps/v1", "Deployment", &env_name(6))
        .await
        .unwrap();
    let svc = get(&stack, "v1", "Service", &env_name(6)).await.unwrap();
    let pr_before = get_pr(&stack, 6).await.unwrap();

    // GitHub redelivers inside the FIFO deduplication window (same delivery id) …
    stack.enqueue(&d, "dup-1").await;
    // … and after it (the same body under a new deduplication id).
    stack
        .enqueue_raw(&event.to_json(), &event.message_group_id(), "dup-1-later")
        .await;
    wait_acked(&stack, 2.0).await;
    stack.wait_queue_drained().await;

    // The in-window duplicate never reached the applier; the later one changed nothing.
    assert_eq!(stack.applier().metric(RECEIVED).await, 2.0);
    let dep2 = get(&stack, "apps/v1", "Deployment", &env_name(6))
        .await
        .unwrap();
    let svc2 = get(&stack, "v1", "Service", &env_name(6)).await.unwrap();
    assert_eq!(versions(&dep2), versions(&dep));
    assert_eq!(dep2.metadata.generation, Some(1));
    assert_eq!(versions(&svc2), versions(&svc));
    let pr_after = get_pr(&stack, 6).await.unwrap();
    assert_eq!(pr_after.spec, pr_before.spec);
    assert_eq!(pr_after.status.unwrap().inventory.len(), 2);
    assert_eq!(
        stack.names("apps/v1", "Deployment", &stack.ns).await,
        [env_name(6)]
    );
    assert_eq!(stack.names("v1", "Service", &stack.ns).await, [env_name(6)]);
    assert_eq!(dlq_depth(&stack).await, 0);
}
