//! Ownership: the applier changes or deletes only objects of its own environment. A template
//! without `{{PR_NUMBER}}` in a name does not take over (or delete) an object that exists for
//! another reason, and two environments rendering the same name do not share or delete each
//! other's object. Real processes: the SQS emulator, `kubetempura run`, the control plane.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use guarantees_support::*;
use kube::api::{Patch, PatchParams};
use kubetempura_applier::send_event::Delivery;
use kubetempura_common::crd::{ANNOTATION_ENVIRONMENT, Phase};
use kubetempura_tests::harness::kubeapi::apply_file;
use kubetempura_tests::harness::stack::{Stack, StackOptions};
use serde_json::json;

const APP_REPO: &str = "https://github.com/o/shared-config";

/// A ReviewApp whose `app-config` ConfigMap has the same name in every environment, beside a
/// per-PR one.
const REVIEWAPP: &str = "apiVersion: kubetempura.mercari.com/v1
kind: ReviewApp
metadata: {name: shared}
spec:
  githubRepository: https://github.com/o/shared-config
  resources:
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: app-config}, data: {env: 'review-{{PR_NUMBER}}'}}
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: 'own-{{PR_NUMBER}}'}, data: {a: b}}
";

async fn stack(queue: &str) -> Stack {
    let stack = Stack::start(StackOptions {
        manifests: vec![],
        ..options(queue, &[])
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ra.yaml");
    std::fs::write(&path, REVIEWAPP).unwrap();
    apply_file(&stack.client, &path, Some(&stack.ns)).await;
    stack
}

/// Creates (or updates) a ConfigMap as another tool would, with field manager `manager`.
async fn put_config_map(stack: &Stack, name: &str, manager: &str, data: serde_json::Value) {
    stack
        .api("v1", "ConfigMap", &stack.ns)
        .await
        .patch(
            name,
            &PatchParams::apply(manager),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name},
                "data": data,
            })),
        )
        .await
        .unwrap();
}

fn event(pr: u64, action: &str, minute: i64) -> Delivery {
    let mut d = Delivery::new(APP_REPO, pr, &sha(1), action);
    d.updated_at = at(minute);
    d
}

async fn config_data(stack: &Stack) -> Option<(String, Option<String>)> {
    let cm = get(stack, "v1", "ConfigMap", "app-config").await?;
    Some((
        cm.data["data"]["env"].as_str().unwrap().to_owned(),
        cm.metadata
            .annotations
            .and_then(|a| a.get(ANNOTATION_ENVIRONMENT).cloned()),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_that_exists_for_another_reason_is_neither_taken_over_nor_deleted() {
    let stack = stack("own-prod").await;
    // Production's own app-config, created before any review environment.
    put_config_map(
        &stack,
        "app-config",
        "production-pipeline",
        json!({"env": "production"}),
    )
    .await;

    stack.enqueue(&event(1, "opened", 0), "open-1").await;
    let pr = stack
        .wait_pr_phase(&stack.ns, "shared-pr1", Phase::Failed)
        .await;
    let status = pr.status.unwrap();
    let message = status.message.unwrap();
    assert!(
        message.contains("ConfigMap app-config already exists")
            && message.contains("not created by this environment"),
        "{message}"
    );
    assert_eq!(
        config_data(&stack).await,
        Some(("production".to_owned(), None)),
        "production's object was changed"
    );
    // The rest of the environment was applied and is the only thing recorded.
    assert!(get(&stack, "v1", "ConfigMap", "own-1").await.is_some());
    let names: Vec<&str> = status.inventory.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["own-1"]);

    stack.enqueue(&event(1, "closed", 1), "close-1").await;
    stack
        .wait_pr_phase(&stack.ns, "shared-pr1", Phase::Closed)
        .await;
    stack.wait_gone("v1", "ConfigMap", &stack.ns, "own-1").await;
    assert_eq!(
        config_data(&stack).await,
        Some(("production".to_owned(), None)),
        "closing the environment touched production's object"
    );
    stack.wait_queue_drained().await;
    assert_eq!(dlq_depth(&stack).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_environments_rendering_one_name_conflict_and_closing_one_keeps_the_others_object() {
    let stack = stack("own-two").await;
    let first = format!("{}/shared-pr1", stack.ns);

    stack.enqueue(&event(1, "opened", 0), "open-1").await;
    stack
        .wait_pr_phase(&stack.ns, "shared-pr1", Phase::Applied)
        .await;
    assert_eq!(
        config_data(&stack).await,
        Some(("review-1".to_owned(), Some(first.clone())))
    );

    stack.enqueue(&event(2, "opened", 0), "open-2").await;
    let pr2 = stack
        .wait_pr_phase(&stack.ns, "shared-pr2", Phase::Failed)
        .await;
    let message = pr2.status.unwrap().message.unwrap();
    assert!(
        message.contains(&format!("belongs to the environment {first}")),
        "{message}"
    );
    assert_eq!(
        config_data(&stack).await,
        Some(("review-1".to_owned(), Some(first.clone()))),
        "the second environment took the first one's object"
    );

    // Closing the second environment leaves the first one's object alone…
    stack.enqueue(&event(2, "closed", 1), "close-2").await;
    stack
        .wait_pr_phase(&stack.ns, "shared-pr2", Phase::Closed)
        .await;
    stack.wait_gone("v1", "ConfigMap", &stack.ns, "own-2").await;
    assert_eq!(
        config_data(&stack).await,
        Some(("review-1".to_owned(), Some(first.clone())))
    );
    // …and closing the first deletes it.
    stack.enqueue(&event(1, "closed", 1), "close-1").await;
    stack
        .wait_pr_phase(&stack.ns, "shared-pr1", Phase::Closed)
        .await;
    stack
        .wait_gone("v1", "ConfigMap", &stack.ns, "app-config")
        .await;
    stack.wait_queue_drained().await;
    assert_eq!(dlq_depth(&stack).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_replaced_under_the_same_name_is_not_deleted_on_close() {
    let stack = stack("own-replaced").await;
    stack.enqueue(&event(3, "opened", 0), "open-3").await;
    stack
        .wait_pr_phase(&stack.ns, "shared-pr3", Phase::Applied)
        .await;
    // Someone deletes the environment's object and creates their own under the same name.
    let cms = stack.api("v1", "ConfigMap", &stack.ns).await;
    cms.delete("own-3", &Default::default()).await.unwrap();
    stack.wait_gone("v1", "ConfigMap", &stack.ns, "own-3").await;
    put_config_map(&stack, "own-3", "someone-else", json!({"mine": "yes"})).await;

    stack.enqueue(&event(3, "closed", 1), "close-3").await;
    let pr = stack
        .wait_pr_phase(&stack.ns, "shared-pr3", Phase::Closed)
        .await;
    let message = pr.status.unwrap().message.unwrap();
    assert!(message.contains("own-3 was replaced"), "{message}");
    stack
        .wait_gone("v1", "ConfigMap", &stack.ns, "app-config")
        .await;
    let kept = get(&stack, "v1", "ConfigMap", "own-3").await.unwrap();
    assert_eq!(kept.data["data"]["mine"], "yes");
}
