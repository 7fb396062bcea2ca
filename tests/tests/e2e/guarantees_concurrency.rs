//! Two appliers at once (a rolling update runs two; more replicas are documented as safe): an
//! older head is never written over a newer one. Real processes: the SQS emulator, two
//! `kubetempura run`, the control plane behind a fault proxy each.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use std::time::Duration;

use guarantees_support::*;
use kubetempura_tests::harness::faults::FaultRule;
use kubetempura_tests::harness::stack::Stack;
use kubetempura_tests::harness::wait_for;

/// The path of one `PR` record (spec writes; the status is `<path>/status`).
fn pr_path(stack: &Stack, pr: u64) -> String {
    format!(
        "/apis/kubetempura.mercari.com/v1/namespaces/{}/prs/{}",
        stack.ns,
        env_name(pr)
    )
}

/// Replica A re-renders the environment from its recorded event all the time (a resync every
/// second); one of its writes of the record is held for 5 s by its proxy, and replica B, which
/// consumes the queue, records a newer push meanwhile. A's writes decided from the older record must not
/// land over B's: the environment ends at the newer head, and stays there.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_deciding_from_an_older_record_never_writes_over_a_newer_head() {
    let stack = Stack::start(options("two-replicas", &[])).await;
    let pr = 60;
    open_applied(&stack, pr).await;

    let idle = stack
        .sqs
        .create_fifo_with_dlq("two-replicas-idle", 3, 30)
        .await;
    let a = stack
        .start_extra_applier(
            &idle.url,
            &["--resync-seconds", "1", "--wait-time-seconds", "1"].map(str::to_owned),
        )
        .await;
    let a_record_writes = |status: Option<u16>| {
        let path = pr_path(&stack, pr);
        a.proxy
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && r.path == path)
            .filter(|r| status.is_none_or(|s| r.status == s))
            .count()
    };
    // A has re-rendered once: it has the record in its cache and writes it every second.
    wait_for(
        "replica A's first re-render",
        Duration::from_secs(60),
        || async { (a_record_writes(None) >= 1).then_some(()) },
    )
    .await;
    // Hold A's next write of the record for 5 s, and wait until it is underway (a counted rule
    // leaves the list when its last use begins): A decided from the older record.
    a.proxy
        .add_fault(FaultRule {
            method: Some("PATCH".into()),
            path_regex: Some(format!("^{}$", pr_path(&stack, pr))),
            delay_ms: Some(5000),
            count: Some(1),
            ..FaultRule::default()
        })
        .unwrap();
    wait_for(
        "replica A's held write",
        Duration::from_secs(60),
        || async { a.proxy.faults().is_empty().then_some(()) },
    )
    .await;

    stack
        .enqueue(&delivery(pr, &sha(2), "synchronize", 1), "sync-2")
        .await;
    stack
        .wait_deployment_image(&stack.ns, &env_name(pr), &image(pr, &sha(2)))
        .await;
    // Every write A had underway when B recorded the push has landed, and A has decided again
    // since: two more of its record writes completed.
    let seen = a_record_writes(None);
    wait_for(
        "two more writes of replica A",
        Duration::from_secs(60),
        || async { (a_record_writes(None) >= seen + 2).then_some(()) },
    )
    .await;

    let record = get_pr(&stack, pr).await.unwrap();
    assert_eq!(
        record.spec.head_sha,
        sha(2),
        "the record went back to the older head"
    );
    let deployment = get(&stack, "apps/v1", "Deployment", &env_name(pr))
        .await
        .unwrap();
    assert_eq!(
        deployment.data["spec"]["template"]["spec"]["containers"][0]["image"],
        image(pr, &sha(2)),
        "the environment went back to the older head"
    );
    // The race did happen: A's write decided from the older record was refused (409).
    assert!(a_record_writes(Some(409)) >= 1, "{:?}", a.proxy.requests());
    stack.wait_queue_drained().await;
    assert_eq!(dlq_depth(&stack).await, 0);
}
