//! Resync: on start and periodically, every `PR` object is reconciled against its ReviewApp
//! without a webhook — drift is repaired and a half-done close is finished.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use std::time::Duration;

use guarantees_support::*;
use kube::api::{DeleteParams, Patch, PatchParams};
use kubetempura_common::crd::Phase;
use kubetempura_common::event::PrEvent;
use kubetempura_tests::harness::applier::stop_gracefully;
use kubetempura_tests::harness::faults::FaultRule;
use kubetempura_tests::harness::stack::{Stack, StackOptions};
use serde_json::json;

async fn delete_deployment(stack: &Stack, pr: u64) {
    stack
        .api("apps/v1", "Deployment", &stack.ns)
        .await
        .delete(&env_name(pr), &DeleteParams::default())
        .await
        .unwrap();
    stack
        .wait_gone("apps/v1", "Deployment", &stack.ns, &env_name(pr))
        .await;
}

/// Another field manager takes the image over.
async fn change_image(stack: &Stack, pr: u64) {
    let body = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": env_name(pr), "namespace": &stack.ns},
        "spec": {"template": {"spec": {"containers": [{"name": "sample", "image": "intruder:latest"}]}}},
    });
    stack
        .api("apps/v1", "Deployment", &stack.ns)
        .await
        .patch(
            &env_name(pr),
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
    stack
        .wait_deployment_image(&stack.ns, &env_name(pr), "intruder:latest")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resync_on_start_restores_what_changed_while_the_applier_was_down() {
    // The periodic resync is far away: only the one at start can repair.
    let mut stack = Stack::start(options("resync-start", &["--resync-seconds", "3600"])).await;
    open_applied(&stack, 50).await;
    open_applied(&stack, 51).await;
    stack.wait_queue_drained().await;
    stop_gracefully(stack.applier.as_mut().unwrap(), Duration::from_secs(30));

    delete_deployment(&stack, 50).await;
    change_image(&stack, 51).await;
    stack.start_applier().await;
    stack
        .wait_deployment_image(&stack.ns, &env_name(50), &image(50, &sha(1)))
        .await;
    stack
        .wait_deployment_image(&stack.ns, &env_name(51), &image(51, &sha(1)))
        .await;
    assert_eq!(stack.applier().metric(RECEIVED).await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn periodic_resync_repairs_drift_without_a_webhook() {
    let stack = Stack::start(options("resync-periodic", &["--resync-seconds", "2"])).await;
    open_applied(&stack, 52).await;
    delete_deployment(&stack, 52).await;
    stack
        .wait_deployment_image(&stack.ns, &env_name(52), &image(52, &sha(1)))
        .await;
    change_image(&stack, 52).await;
    stack
        .wait_deployment_image(&stack.ns, &env_name(52), &image(52, &sha(1)))
        .await;
    assert_eq!(stack.applier().metric(RECEIVED).await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn resync_finishes_a_half_done_close() {
    let stack = Stack::start(StackOptions {
        max_receive_count: 2,
        ..options(
            "resync-close",
            &["--resync-seconds", "2", "--retry-budget-seconds", "1"],
        )
    })
    .await;
    open_applied(&stack, 53).await;
    // The close cannot delete the Deployment: it is retried for the budget on each receive,
    // then dead-lettered.
    stack
        .proxy
        .add_fault(FaultRule {
            count: None,
            ..fault_on("DELETE", &deployments(&stack), &env_name(53), 503, 0)
        })
        .unwrap();
    stack
        .enqueue(&delivery(53, &sha(1), "closed", 1), "close-53")
        .await;
    let dead = wait_dlq(&stack, Duration::from_secs(60)).await;
    assert_eq!(
        PrEvent::from_json(&dead[0]).unwrap().delivery_id,
        "close-53"
    );
    // Half done: the PR is a tombstone whose inventory still exists.
    let pr = get_pr(&stack, 53).await.unwrap();
    assert!(pr.spec.closed, "{pr:?}");
    assert!(
        get(&stack, "apps/v1", "Deployment", &env_name(53))
            .await
            .is_some()
    );

    // The API recovers; the resync finishes the close without any new event.
    let received = stack.applier().metric(RECEIVED).await;
    stack.proxy.clear_faults();
    wait_env_gone(&stack, 53).await;
    let tombstone = stack
        .wait_pr_phase(&stack.ns, &env_name(53), Phase::Closed)
        .await;
    let status = tombstone.status.unwrap();
    assert!(status.inventory.is_empty());
    assert!(status.closed_at.is_some());
    assert_eq!(stack.applier().metric(RECEIVED).await, received);
}
