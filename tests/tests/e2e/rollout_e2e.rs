//! Readiness and feedback on the real control plane: an environment is `ready` once its
//! Deployment rolled out (the test sets the Deployment's status, as the Deployment controller
//! and kubelets would: the control plane runs neither), `failed` with the reason when it does
//! not roll out within the ReviewApp's `readinessTimeout`, and each state change reaches the
//! feedback queue once, in order, in the pull request's message group.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use std::time::Duration;

use guarantees_support::*;
use kubetempura_common::crd::{PR, RolloutState};
use kubetempura_common::feedback::{FeedbackEvent, FeedbackState};
use kubetempura_tests::harness::stack::{Stack, StackOptions};
use kubetempura_tests::harness::wait_for;

/// The sample ReviewApp with `replicas` replicas and the given readiness timeout.
fn sample_with(replicas: i64, timeout: Option<&str>) -> tempfile::NamedTempFile {
    sample_app_with(|app| {
        app["spec"]["resources"][0]["spec"]["replicas"] = replicas.into();
        if let Some(t) = timeout {
            app["spec"]["readinessTimeout"] = t.into();
        }
    })
}

fn options_with(queue: &str, app: &tempfile::NamedTempFile, feedback: bool) -> StackOptions {
    StackOptions {
        manifests: vec![app.path().to_owned()],
        feedback,
        ..options(queue, &[])
    }
}

async fn wait_rollout(stack: &Stack, pr: u64, state: RolloutState, commit: &str) -> PR {
    wait_for(
        &format!("PR {pr}'s rollout of {commit} {state:?}"),
        Duration::from_secs(60),
        || async {
            get_pr(stack, pr).await.filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.rollout.as_ref())
                    .is_some_and(|r| r.state == state && r.commit == commit)
            })
        },
    )
    .await
}

fn condition(pr: &PR, type_: &str) -> (String, String, String) {
    let c = pr
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition on {:?}", pr.status));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// The next event on the feedback queue (deleted from it).
async fn next_feedback(stack: &Stack) -> FeedbackEvent {
    let url = &stack.feedback_queues.as_ref().unwrap().url;
    let body = stack
        .sqs
        .take(url, Duration::from_secs(60))
        .await
        .expect("a feedback event within 60 s");
    FeedbackEvent::from_json(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_environment_is_ready_once_its_deployment_rolled_out_and_rolls_again_on_a_push() {
    let app = sample_with(2, None);
    let stack = Stack::start(options_with("rollout-ready", &app, false)).await;
    let pr = open_applied(&stack, 1).await;
    let rollout = pr.status.as_ref().unwrap().rollout.clone().unwrap();
    assert_eq!(rollout.state, RolloutState::Progressing, "{rollout:?}");
    assert_eq!(condition(&pr, "RolledOut").1, "Progressing");

    stack.set_deployment_available(&env_name(1), 1).await;
    // One of two available is not a rollout; the whole one is.
    let partial = get_pr(&stack, 1).await.unwrap();
    assert_eq!(
        partial.status.unwrap().rollout.unwrap().state,
        RolloutState::Progressing
    );
    stack.set_deployment_available(&env_name(1), 2).await;
    let ready = wait_rollout(&stack, 1, RolloutState::Complete, &sha(1)).await;
    assert_eq!(
        condition(&ready, "RolledOut"),
        (
            "True".into(),
            "RolledOut".into(),
            "1 workload(s) rolled out".into()
        )
    );
    assert_eq!(condition(&ready, "Ready").0, "True");

    // A push applies a new template generation of the Deployment: rolling out again.
    stack
        .enqueue(&delivery(1, &sha(2), "synchronize", 1), "push-1")
        .await;
    wait_applied(&stack, 1, &sha(2)).await;
    let rolling = wait_rollout(&stack, 1, RolloutState::Progressing, &sha(2)).await;
    assert_eq!(condition(&rolling, "RolledOut").1, "Progressing");
    stack.set_deployment_available(&env_name(1), 2).await;
    wait_rollout(&stack, 1, RolloutState::Complete, &sha(2)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_that_does_not_finish_within_the_timeout_fails_with_the_reason() {
    let app = sample_with(3, Some("3s"));
    let stack = Stack::start(options_with("rollout-timeout", &app, false)).await;
    open_applied(&stack, 1).await;
    stack.set_deployment_available(&env_name(1), 2).await;
    let late = wait_rollout(&stack, 1, RolloutState::TimedOut, &sha(1)).await;
    let expected = format!(
        "Deployment {}: 2 of 3 replicas available after 3s",
        env_name(1)
    );
    assert_eq!(
        condition(&late, "RolledOut"),
        ("False".into(), "RolloutTimeout".into(), expected)
    );
    // The objects stay: a timed-out rollout is reported, not rolled back.
    assert!(
        stack
            .names("apps/v1", "Deployment", &stack.ns)
            .await
            .contains(&env_name(1))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_state_change_reaches_the_feedback_queue_once_in_order() {
    let app = sample_with(1, None);
    let stack = Stack::start(options_with("rollout-feedback", &app, true)).await;
    open_applied(&stack, 7).await;
    let deploying = next_feedback(&stack).await;
    assert_eq!(deploying.state, FeedbackState::Deploying);
    assert_eq!(
        (
            deploying.repository.as_str(),
            deploying.pr_number,
            deploying.head_sha.as_str(),
            deploying.environment.as_str(),
            deploying.namespace.as_str(),
        ),
        (
            "mercari/not-exists",
            7,
            sha(1).as_str(),
            env_name(7).as_str(),
            stack.ns.as_str()
        )
    );
    assert_eq!(deploying.review_app, "reviewapp-sample");

    stack.set_deployment_available(&env_name(7), 1).await;
    let ready = next_feedback(&stack).await;
    assert_eq!(ready.state, FeedbackState::Ready);
    assert_eq!(ready.message, "1 workload(s) rolled out");
    assert!(ready.time > deploying.time, "{ready:?} after {deploying:?}");
    let recorded = get_pr(&stack, 7).await.unwrap();
    let sent = recorded.status.unwrap().feedback.unwrap();
    assert_eq!(
        (sent.state.as_str(), sent.commit.as_str()),
        ("ready", sha(1).as_str())
    );

    stack
        .enqueue(&delivery(7, &sha(1), "closed", 2), "close-7")
        .await;
    let closed = next_feedback(&stack).await;
    assert_eq!(closed.state, FeedbackState::Closed);
    assert!(closed.message.contains("closed"), "{}", closed.message);
    assert_eq!(closed.environment_url, None);

    // Nothing else: each state once, however many times the record was written.
    let url = &stack.feedback_queues.as_ref().unwrap().url;
    assert_eq!(stack.sqs.take(url, Duration::from_secs(3)).await, None);
}
