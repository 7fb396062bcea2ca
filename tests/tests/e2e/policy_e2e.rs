//! The ReviewApp's pull-request filters on the real control plane, one test per transition: a
//! pull request that starts passing the policy gets its environment, one that stops passing
//! loses its objects (the record stays, `Skipped`, saying why), and comes back when it passes
//! again. An excluded label wins over a required one. Every delivery goes through the webhook
//! function (signed, under the Lambda emulator), and the applier is killed and restarted in the
//! middle of each test.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use guarantees_support::*;
use kubetempura_common::crd::{PR, Phase};
use kubetempura_tests::harness::stack::{Stack, StackOptions};

/// A stack whose sample ReviewApp has `policy`.
async fn start(queue: &str, policy: serde_json::Value) -> Stack {
    let app = sample_app_with(|app| app["spec"]["policy"] = policy);
    Stack::start(StackOptions {
        manifests: vec![app.path().to_owned()],
        function: true,
        ..options(queue, &[])
    })
    .await
}

/// Sends `d` (as the `n`th delivery) through the webhook function and waits until PR 1 is in
/// `phase` with its Deployment present (Applied) or gone (Skipped).
async fn expect(
    stack: &Stack,
    d: &kubetempura_applier::send_event::Delivery,
    n: u32,
    phase: Phase,
) -> PR {
    stack.deliver(d, &format!("policy-{n}")).await;
    outcome(stack, d, phase).await
}

/// As [`expect`], with the applier killed before the delivery and a new one started after it.
async fn expect_across_crash(
    stack: &mut Stack,
    d: &kubetempura_applier::send_event::Delivery,
    n: u32,
    phase: Phase,
) -> PR {
    kill(stack);
    stack.deliver(d, &format!("policy-{n}")).await;
    stack.start_applier().await;
    outcome(stack, d, phase).await
}

async fn outcome(stack: &Stack, d: &kubetempura_applier::send_event::Delivery, phase: Phase) -> PR {
    match phase {
        Phase::Applied => wait_applied(stack, 1, &d.sha).await,
        _ => {
            wait_env_gone(stack, 1).await;
            stack.wait_pr_phase(&stack.ns, &env_name(1), phase).await
        }
    }
}

fn message(pr: &PR) -> String {
    pr.status
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn labels_added_and_removed_deploy_and_remove_the_environment() {
    let mut stack = start(
        "policy-labels",
        serde_json::json!({"requiredLabels": ["preview"], "excludedLabels": ["no-preview"]}),
    )
    .await;
    let mut d = delivery(1, &sha(1), "opened", 0);
    let skipped = expect(&stack, &d, 1, Phase::Skipped).await;
    assert!(
        message(&skipped).contains("lacks required label(s): preview"),
        "{}",
        message(&skipped)
    );

    d = delivery(1, &sha(1), "labeled", 1);
    d.labels = vec!["preview".into()];
    expect(&stack, &d, 2, Phase::Applied).await;

    // The excluded label wins over the required one.
    d = delivery(1, &sha(1), "labeled", 2);
    d.labels = vec!["preview".into(), "no-preview".into()];
    let excluded = expect_across_crash(&mut stack, &d, 3, Phase::Skipped).await;
    assert!(
        message(&excluded).contains("excluded label(s): no-preview"),
        "{}",
        message(&excluded)
    );

    d = delivery(1, &sha(1), "unlabeled", 3);
    d.labels = vec!["preview".into()];
    expect(&stack, &d, 4, Phase::Applied).await;

    d = delivery(1, &sha(1), "unlabeled", 4);
    expect(&stack, &d, 5, Phase::Skipped).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_draft_made_ready_is_deployed_and_made_draft_again_is_removed() {
    let mut stack = start("policy-drafts", serde_json::json!({"deployDrafts": false})).await;
    let mut d = delivery(1, &sha(1), "opened", 0);
    d.draft = true;
    let skipped = expect(&stack, &d, 1, Phase::Skipped).await;
    assert!(message(&skipped).contains("draft"), "{}", message(&skipped));

    d = delivery(1, &sha(1), "ready_for_review", 1);
    expect_across_crash(&mut stack, &d, 2, Phase::Applied).await;

    d = delivery(1, &sha(1), "converted_to_draft", 2);
    d.draft = true;
    expect(&stack, &d, 3, Phase::Skipped).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_base_branch_edited_out_of_and_back_into_the_policy_removes_and_restores() {
    let mut stack = start("policy-base", serde_json::json!({"baseBranches": ["main"]})).await;
    let mut d = delivery(1, &sha(1), "opened", 0);
    expect(&stack, &d, 1, Phase::Applied).await;

    d = delivery(1, &sha(1), "edited", 1);
    d.base = "release/1.0".into();
    d.base_from = Some("main".into());
    let skipped = expect_across_crash(&mut stack, &d, 2, Phase::Skipped).await;
    assert!(
        message(&skipped).contains("base branch \"release/1.0\""),
        "{}",
        message(&skipped)
    );

    d = delivery(1, &sha(1), "edited", 2);
    d.base_from = Some("release/1.0".into());
    expect(&stack, &d, 3, Phase::Applied).await;
}
