//! The ReviewApp's lifecycle policies on the real control plane: the build gate (`waitFor`),
//! idle expiry (`expireAfter`, `wakeLabel`) and the cap (`maxActive`), each with the applier
//! killed and restarted in the middle. Every delivery (pull requests and check results) goes
//! through the webhook function (signed, under the Lambda emulator). Time is the test's: expiry counts from the pull
//! request's `updated_at`, which the test sets; waits are on observed state, never sleeps.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use std::time::Duration;

use chrono::Utc;
use guarantees_support::*;
use kube::Api;
use kubetempura_applier::send_event::CheckDelivery;
use kubetempura_common::check::{CheckKind, CheckState};
use kubetempura_common::crd::{PR, Phase, ReviewApp};
use kubetempura_tests::harness::stack::{Stack, StackOptions};
use kubetempura_tests::harness::wait_for;

/// A stack whose sample ReviewApp is edited by `edit`, with a one-second lifecycle sweep.
async fn start(queue: &str, feedback: bool, edit: impl FnOnce(&mut serde_json::Value)) -> Stack {
    let app = sample_app_with(edit);
    Stack::start(StackOptions {
        manifests: vec![app.path().to_owned()],
        feedback,
        function: true,
        ..options(
            queue,
            &["--lifecycle-seconds", "1", "--resync-seconds", "3"],
        )
    })
    .await
}

/// When the suite started: check results are timed from it (the ledger keeps 30 days).
static START: std::sync::LazyLock<chrono::DateTime<Utc>> = std::sync::LazyLock::new(Utc::now);

/// A check run's result on the sample repository, naming `pr` (or none, as a fork's), at
/// `second` after the suite started.
fn check(sha: &str, name: &str, state: CheckState, pr: Option<u64>, second: i64) -> CheckDelivery {
    let mut c = CheckDelivery::new(REPO, sha, CheckKind::CheckRun, name);
    c.conclusion = match state {
        CheckState::Success => Some("success".into()),
        CheckState::Failure => Some("failure".into()),
        CheckState::Pending => None,
    };
    c.url = Some(format!(
        "https://github.com/mercari/not-exists/runs/{second}"
    ));
    c.pull_requests = pr.into_iter().collect();
    c.updated_at = *START + chrono::TimeDelta::seconds(second);
    c
}

/// Sends a check result through the webhook function, signed as GitHub would.
async fn send_check(stack: &Stack, c: &CheckDelivery) {
    let id = format!(
        "check-{}-{}-{}",
        c.name,
        &c.sha[..7],
        c.updated_at.timestamp()
    );
    stack.deliver_check(c, &id).await;
}

fn status(pr: &PR) -> &kubetempura_common::crd::PRStatus {
    pr.status.as_ref().unwrap()
}

/// Waits until PR `n` is in `phase` with its gate on `commit`.
async fn wait_gate(stack: &Stack, n: u64, phase: Phase, commit: &str) -> PR {
    let api: Api<PR> = Api::namespaced(stack.client.clone(), &stack.ns);
    wait_for(
        &format!("PR {n} {phase:?} at the gate of {commit}"),
        Duration::from_secs(60),
        || async {
            api.get_opt(&env_name(n)).await.ok().flatten().filter(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.phase == Some(phase) && s.gate.as_ref().is_some_and(|g| g.commit == commit)
                })
            })
        },
    )
    .await
}

/// The image PR `n`'s Deployment runs now.
async fn running_image(stack: &Stack, n: u64) -> String {
    let d = stack
        .api("apps/v1", "Deployment", &stack.ns)
        .await
        .get(&env_name(n))
        .await
        .unwrap();
    d.data["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gated_commit_deploys_once_its_checks_pass_and_a_push_waits_again() {
    let mut stack = start("lifecycle-gate", true, |app| {
        app["spec"]["waitFor"] = serde_json::json!({"checkRuns": ["build", "test"]});
    })
    .await;
    // The first deployment waits too: nothing is created.
    stack
        .deliver(&delivery(1, &sha(1), "opened", 0), "gate-open")
        .await;
    let waiting = wait_gate(&stack, 1, Phase::Waiting, &sha(1)).await;
    assert_eq!(
        status(&waiting).gate.as_ref().unwrap().pending,
        ["check run `build`", "check run `test`"]
    );
    assert!(
        stack
            .names("apps/v1", "Deployment", &stack.ns)
            .await
            .is_empty()
    );
    stack
        .wait_feedback_sent(&env_name(1), "waiting", &sha(1))
        .await;

    // One check passes: still waiting for the other. Then the second passes: deployed.
    send_check(
        &stack,
        &check(&sha(1), "build", CheckState::Success, Some(1), 10),
    )
    .await;
    wait_for("only `test` pending", Duration::from_secs(60), || {
        let api: Api<PR> = Api::namespaced(stack.client.clone(), &stack.ns);
        async move {
            let p = api.get(&env_name(1)).await.ok()?;
            let s = p.status?;
            (s.phase == Some(Phase::Waiting) && s.gate?.pending == ["check run `test`"])
                .then_some(())
        }
    })
    .await;
    send_check(
        &stack,
        &check(&sha(1), "test", CheckState::Success, Some(1), 20),
    )
    .await;
    let applied = wait_applied(&stack, 1, &sha(1)).await;
    assert_eq!(status(&applied).gate, None);

    // A push: the new commit waits, the old one keeps running.
    stack
        .deliver(&delivery(1, &sha(2), "synchronize", 1), "gate-push-2")
        .await;
    let waiting = wait_gate(&stack, 1, Phase::Waiting, &sha(2)).await;
    assert_eq!(running_image(&stack, 1).await, image(1, &sha(1)));
    assert_eq!(
        status(&waiting).applied_commit.as_deref(),
        Some(sha(1).as_str())
    );

    // A failed check blocks it, with the check's link; the old commit still runs.
    send_check(
        &stack,
        &check(&sha(2), "build", CheckState::Failure, Some(1), 30),
    )
    .await;
    let blocked = wait_gate(&stack, 1, Phase::Blocked, &sha(2)).await;
    let gate = status(&blocked).gate.clone().unwrap();
    assert_eq!(gate.failed.as_deref(), Some("check run `build`"));
    assert_eq!(
        gate.url.as_deref(),
        Some("https://github.com/mercari/not-exists/runs/30")
    );
    assert!(
        status(&blocked)
            .message
            .as_deref()
            .unwrap()
            .contains("check run `build` failed (failure)"),
        "{:?}",
        status(&blocked).message
    );
    assert_eq!(running_image(&stack, 1).await, image(1, &sha(1)));
    stack
        .wait_feedback_sent(&env_name(1), "blocked", &sha(2))
        .await;

    // A push while blocked replaces the awaited commit. The applier dies; the results of the
    // new commit arrive while it is down (one in the pull request's group, one naming no pull
    // request, as a fork's would); the new applier deploys from the ledger and the record.
    stack
        .deliver(&delivery(1, &sha(3), "synchronize", 2), "gate-push-3")
        .await;
    wait_gate(&stack, 1, Phase::Waiting, &sha(3)).await;
    kill(&mut stack);
    send_check(
        &stack,
        &check(&sha(3), "build", CheckState::Success, Some(1), 40),
    )
    .await;
    send_check(
        &stack,
        &check(&sha(3), "test", CheckState::Success, None, 41),
    )
    .await;
    stack.start_applier().await;
    wait_applied(&stack, 1, &sha(3)).await;
    assert_drained_nothing_dead(&stack).await;

    // The Events say what happened.
    let events = stack.api("events.k8s.io/v1", "Event", &stack.ns).await;
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| e.data["regarding"]["name"] == env_name(1).as_str())
        .map(|e| e.data["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    for reason in ["Waiting", "Blocked", "Applied"] {
        assert!(reasons.iter().any(|r| r == reason), "{reason}: {reasons:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_results_may_arrive_before_the_push_or_the_pull_request() {
    let stack = start("lifecycle-order", false, |app| {
        app["spec"]["waitFor"] = serde_json::json!({"checkRuns": ["build"]});
    })
    .await;
    // Before the pull request is opened (CI ran on the branch first): it deploys at once.
    send_check(
        &stack,
        &check(&sha(5), "build", CheckState::Success, Some(2), 1),
    )
    .await;
    stack.wait_queue_drained().await;
    stack
        .deliver(&delivery(2, &sha(5), "opened", 0), "order-open-2")
        .await;
    let applied = wait_applied(&stack, 2, &sha(5)).await;
    assert_eq!(status(&applied).gate, None);

    // Before the push that makes its commit the head, naming no pull request.
    send_check(
        &stack,
        &check(&sha(6), "build", CheckState::Success, None, 2),
    )
    .await;
    stack.wait_queue_drained().await;
    stack
        .deliver(&delivery(2, &sha(6), "synchronize", 1), "order-push-6")
        .await;
    wait_applied(&stack, 2, &sha(6)).await;

    // A late, older result of the same check changes nothing: the newest result wins.
    send_check(
        &stack,
        &check(&sha(6), "build", CheckState::Failure, None, 1),
    )
    .await;
    stack.wait_queue_drained().await;
    let pr = stack
        .wait_pr_phase(&stack.ns, &env_name(2), Phase::Applied)
        .await;
    assert_eq!(status(&pr).applied_commit.as_deref(), Some(sha(6).as_str()));
    assert_drained_nothing_dead(&stack).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_environment_expires_survives_a_restart_expired_and_wakes() {
    let mut stack = start("lifecycle-expiry", true, |app| {
        app["spec"]["expireAfter"] = "1h".into();
        app["spec"]["wakeLabel"] = "preview".into();
    })
    .await;
    // Opened 20 seconds short of the expiry: deployed, then expired by the sweep.
    let mut d = delivery(1, &sha(1), "opened", 0);
    d.updated_at = Utc::now() - chrono::TimeDelta::seconds(3600 - 20);
    stack.deliver(&d, "expiry-open-1").await;
    wait_applied(&stack, 1, &sha(1)).await;
    let expired = stack
        .wait_pr_phase(&stack.ns, &env_name(1), Phase::Expired)
        .await;
    wait_env_gone(&stack, 1).await;
    assert_eq!(
        status(&expired).message.as_deref(),
        Some("expired after 1h without a push: push or add `preview` to wake")
    );
    assert!(status(&expired).expired_at.is_some());
    assert!(status(&expired).inventory.is_empty());
    stack
        .wait_feedback_sent(&env_name(1), "expired", &sha(1))
        .await;

    // Opened long ago (an old pull request's first event after kubetempura was installed):
    // expired at once, nothing created.
    let mut d2 = delivery(2, &sha(2), "opened", 0);
    d2.updated_at = Utc::now() - chrono::TimeDelta::hours(5);
    stack.deliver(&d2, "expiry-open-2").await;
    stack
        .wait_pr_phase(&stack.ns, &env_name(2), Phase::Expired)
        .await;

    // A restart changes nothing: expiry is computed from the recorded push time. A label other
    // than the wake label keeps it expired.
    crash_and_restart(&mut stack).await;
    let mut other = d.clone();
    other.action = "labeled".into();
    other.labels = vec!["unrelated".into()];
    other.updated_at = Utc::now();
    stack.deliver(&other, "expiry-label-other").await;
    stack.wait_queue_drained().await;
    wait_for(
        "the unrelated label recorded",
        Duration::from_secs(60),
        || {
            let api: Api<PR> = Api::namespaced(stack.client.clone(), &stack.ns);
            async move {
                let p = api.get(&env_name(1)).await.ok()?;
                (p.spec.labels == ["unrelated"]).then_some(p)
            }
        },
    )
    .await;
    let still = stack
        .wait_pr_phase(&stack.ns, &env_name(1), Phase::Expired)
        .await;
    assert_eq!(status(&still).expired_at, status(&expired).expired_at);
    assert!(
        stack
            .names("apps/v1", "Deployment", &stack.ns)
            .await
            .is_empty()
    );

    // The wake label brings PR 1 back; a push brings PR 2 back.
    let mut wake = other.clone();
    wake.labels = vec!["unrelated".into(), "preview".into()];
    wake.updated_at = Utc::now();
    stack.deliver(&wake, "expiry-wake").await;
    wait_applied(&stack, 1, &sha(1)).await;
    let mut push = d2.clone();
    push.action = "synchronize".into();
    push.sha = sha(3);
    push.updated_at = Utc::now();
    stack.deliver(&push, "expiry-push-2").await;
    let back = wait_applied(&stack, 2, &sha(3)).await;
    assert_eq!(status(&back).expired_at, None);
    assert_drained_nothing_dead(&stack).await;
}

/// Waits until PR `n` is queued at `position`.
async fn wait_queued(stack: &Stack, n: u64, position: u32) -> PR {
    let api: Api<PR> = Api::namespaced(stack.client.clone(), &stack.ns);
    wait_for(
        &format!("PR {n} queued at {position}"),
        Duration::from_secs(60),
        || async {
            let p = api.get(&env_name(n)).await.ok()?;
            let s = p.status.as_ref()?;
            (s.phase == Some(Phase::Queued) && s.queue_position == Some(position)).then_some(p)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_max_active_environments_queue_oldest_first() {
    let mut stack = start("lifecycle-cap", false, |app| {
        app["spec"]["maxActive"] = 1.into();
    })
    .await;
    // Two pull requests opened at once (two message groups, handled concurrently): one slot.
    stack
        .deliver(&delivery(1, &sha(1), "opened", 0), "cap-open-1")
        .await;
    stack
        .deliver(&delivery(2, &sha(2), "opened", 0), "cap-open-2")
        .await;
    let api: Api<PR> = Api::namespaced(stack.client.clone(), &stack.ns);
    let phases = wait_for("PRs 1 and 2 decided", Duration::from_secs(60), || async {
        let mut phases = Vec::new();
        for n in [1, 2] {
            phases.push(api.get(&env_name(n)).await.ok()?.status?.phase?);
        }
        Some(phases)
    })
    .await;
    let (first, second) = match phases.as_slice() {
        [Phase::Applied, Phase::Queued] => (1, 2),
        [Phase::Queued, Phase::Applied] => (2, 1),
        other => panic!("one slot, two pull requests: {other:?}"),
    };
    wait_queued(&stack, second, 1).await;

    // PR 5 is opened before PR 3 is, but PR 3 is the older pull request: it goes ahead.
    stack
        .deliver(&delivery(5, &sha(5), "opened", 1), "cap-open-5")
        .await;
    wait_queued(&stack, 5, 2).await;
    stack
        .deliver(&delivery(3, &sha(3), "opened", 2), "cap-open-3")
        .await;
    wait_queued(&stack, 3, 2).await;
    let five = wait_queued(&stack, 5, 3).await;
    assert_eq!(
        status(&five).message.as_deref(),
        Some("queued: 2 ahead (1 of maxActive 1 deployed)")
    );
    let apps: Api<ReviewApp> = Api::namespaced(stack.client.clone(), &stack.ns);
    wait_for(
        "the ReviewApp counts 3 queued",
        Duration::from_secs(60),
        || async {
            let app = apps.get("reviewapp-sample").await.ok()?;
            let s = app.status?;
            (s.queued_prs == 3 && s.active_prs == Some(4)).then_some(())
        },
    )
    .await;

    // The deployed one closes while no applier runs: the next applier gives its slot to the
    // first in the queue, and the others move up.
    kill(&mut stack);
    stack
        .enqueue(
            &delivery(first, &sha(first as u32), "closed", 3),
            "cap-close-first",
        )
        .await;
    stack.start_applier().await;
    wait_env_gone(&stack, first).await;
    wait_applied(&stack, second, &sha(second as u32)).await;
    wait_queued(&stack, 3, 1).await;
    wait_queued(&stack, 5, 2).await;
    assert_eq!(
        stack.names("apps/v1", "Deployment", &stack.ns).await,
        [env_name(second)]
    );
    // Then the next, and so on.
    stack
        .enqueue(
            &delivery(second, &sha(second as u32), "closed", 4),
            "cap-close-second",
        )
        .await;
    wait_applied(&stack, 3, &sha(3)).await;
    wait_queued(&stack, 5, 1).await;
    assert_drained_nothing_dead(&stack).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_refuses_malformed_lifecycle_fields_by_name() {
    let stack = start("lifecycle-schema", false, |_| {}).await;
    let base: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(kubetempura_tests::harness::stack::workspace_file(
            "infra/examples/reviewapp-lifecycle.yaml",
        ))
        .unwrap(),
    )
    .unwrap();
    // The example itself is accepted.
    kubetempura_tests::harness::kubeapi::apply_value(&stack.client, &base, Some(&stack.ns))
        .await
        .unwrap();
    let cases: [(&str, serde_json::Value, &str); 5] = [
        ("expireAfter", "2d".into(), "spec.expireAfter"),
        ("expireAfter", "48".into(), "spec.expireAfter"),
        ("maxActive", 0.into(), "spec.maxActive"),
        ("wakeLabel", "".into(), "spec.wakeLabel"),
        (
            "waitFor",
            serde_json::json!({"checkRuns": "build"}),
            "spec.waitFor.checkRuns",
        ),
    ];
    for (field, value, path) in cases {
        let mut app = base.clone();
        app["metadata"]["name"] = format!("bad-{}", field.to_lowercase()).into();
        app["spec"][field] = value.clone();
        let err =
            kubetempura_tests::harness::kubeapi::apply_value(&stack.client, &app, Some(&stack.ns))
                .await
                .expect_err(&format!("{field}: {value} accepted"));
        assert!(err.to_string().contains(path), "{field}={value}: {err}");
    }
}
