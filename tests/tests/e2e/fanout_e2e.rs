//! One webhook, many clusters (issue 15), across real processes: signed deliveries through the
//! webhook function (`TOPIC_ARN`) to the emulator's SNS FIFO topic, a FIFO queue per applier
//! subscribed with raw delivery and the filter policy terraform/modules/appliers computes
//! (tests/fixtures/fanout/appliers.json), and two `kubetempura run` processes standing for two
//! clusters: each watches a namespace of the control plane of its own, reads its own queue and
//! has its own `--cluster-name`.
//!
//! - `cluster-a` serves `mercari/not-exists` (exact); its namespace has the sample ReviewApp.
//! - `cluster-b` serves every `mercari/` repository (prefix); its namespace has the sample
//!   ReviewApp and one for `mercari/other`.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use std::time::Duration;

use guarantees_support::*;
use kubetempura_applier::send_event::Delivery;
use kubetempura_common::crd::Phase;
use kubetempura_tests::harness::fanout::{Fanout, terraform_filter_policies};
use kubetempura_tests::harness::stack::{ExtraApplier, Stack, StackOptions, workspace_file};
use kubetempura_tests::harness::wait_for;
use nix::sys::signal::Signal;

const A: &str = "cluster-a";
const B: &str = "cluster-b";
const OTHER: &str = "https://github.com/mercari/other";

/// The log line of an applier started on a queue tagged for another applier.
fn sharing_warning(tagged: &str, me: &str) -> String {
    format!(
        "the queue is tagged kubetempura:applier=\"{tagged}\" but this applier is --cluster-name \"{me}\""
    )
}

/// The stack (function publishing to the topic, no applier of its own) and cluster-b's
/// namespace; cluster-a's is the stack's.
async fn start(queue: &str) -> (Stack, String) {
    let policies = terraform_filter_policies();
    let stack = Stack::start(StackOptions {
        function: true,
        applier: false,
        fanout: [A, B]
            .into_iter()
            .map(|name| (name.to_owned(), policies[name].clone()))
            .collect(),
        // A message taken by the killed applier's last long poll comes back soon.
        visibility_timeout_secs: 5,
        ..options(queue, &[])
    })
    .await;
    let ns_b = format!("{}-b", stack.ns);
    let sample = workspace_file("infra/examples/reviewapp-sample.yaml");
    let other = sample_app_with(|app| {
        app["metadata"]["name"] = "reviewapp-other".into();
        app["spec"]["githubRepository"] = OTHER.into();
    });
    stack
        .create_namespace_with(&ns_b, &[&sample, other.path()])
        .await;
    (stack, ns_b)
}

fn fanout(stack: &Stack) -> &Fanout {
    stack.fanout.as_ref().unwrap()
}

/// Waits until `pr`'s Deployment in `namespace` runs the image of `sha`.
async fn wait_image(stack: &Stack, namespace: &str, pr: u64, sha: &str) {
    stack
        .wait_deployment_image(namespace, &env_name(pr), &image(pr, sha))
        .await;
}

/// Waits until `cluster`'s queue holds no message, visible or in flight, and its dead-letter
/// queue none at all.
async fn wait_drained_nothing_dead(stack: &Stack, cluster: &str) {
    let queues = fanout(stack).queues(cluster);
    wait_for(
        &format!("the queue of {cluster} to drain"),
        Duration::from_secs(90),
        || async { (stack.sqs.depth(&queues.url).await == (0, 0)).then_some(()) },
    )
    .await;
    assert_eq!(
        stack.sqs.depth(&queues.dlq_url).await,
        (0, 0),
        "messages in the dead-letter queue of {cluster}"
    );
}

/// Waits until a metric of an applier reaches at least `at_least`.
async fn wait_metric_of(applier: &ExtraApplier, sample: &str, at_least: f64) {
    wait_for(
        &format!("{sample} >= {at_least}"),
        Duration::from_secs(60),
        || async { (applier.process.metric(sample).await >= at_least).then_some(()) },
    )
    .await;
}

fn applied(ids: &[&str]) -> Vec<(String, String)> {
    ids.iter()
        .map(|id| ((*id).to_owned(), "applied".to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_signed_delivery_reaches_exactly_the_appliers_whose_filter_matches() {
    let (stack, ns_b) = start("fanout-route").await;
    let mut third = Delivery::new("https://github.com/mercari/third", 3, &sha(3), "opened");
    third.branch = "feature-3".into();
    let mut elsewhere = Delivery::new("https://github.com/someone/else", 4, &sha(4), "opened");
    elsewhere.branch = "feature-4".into();
    let mut other = Delivery::new(OTHER, 2, &sha(2), "opened");
    other.branch = "feature-2".into();
    // Nothing reads the queues yet. The emulator delivers to the subscribed queues inside
    // Publish, which the function awaits before it answers: after each 202 the queues hold
    // exactly what the filters let through.
    let depths = async || {
        let f = fanout(&stack);
        (
            stack.sqs.depth(&f.queues(A).url).await,
            stack.sqs.depth(&f.queues(B).url).await,
        )
    };
    stack.deliver(&elsewhere, "route-elsewhere").await;
    assert_eq!(
        depths().await,
        ((0, 0), (0, 0)),
        "someone/else matches neither"
    );
    stack.deliver(&third, "route-third").await;
    assert_eq!(
        depths().await,
        ((0, 0), (1, 0)),
        "mercari/third: B's prefix only"
    );
    stack.deliver(&other, "route-other").await;
    assert_eq!(
        depths().await,
        ((0, 0), (2, 0)),
        "mercari/other: B's prefix only"
    );
    stack
        .deliver(&delivery(1, &sha(1), "opened", 0), "route-sample")
        .await;
    assert_eq!(depths().await, ((1, 0), (3, 0)), "mercari/not-exists: both");

    let a = stack.start_fanout_applier(A, &stack.ns, A).await;
    let b = stack.start_fanout_applier(B, &ns_b, B).await;
    wait_image(&stack, &stack.ns, 1, &sha(1)).await;
    wait_image(&stack, &ns_b, 1, &sha(1)).await;
    wait_image(&stack, &ns_b, 2, &sha(2)).await;
    // mercari/third has no ReviewApp in cluster-b: acknowledged and counted, not retried.
    wait_metric_of(&b, &acked("no_reviewapp"), 1.0).await;
    wait_drained_nothing_dead(&stack, A).await;
    wait_drained_nothing_dead(&stack, B).await;

    assert_eq!(a.process.metric(RECEIVED).await, 1.0);
    assert_eq!(a.process.metric(&acked("no_reviewapp")).await, 0.0);
    assert_eq!(b.process.metric(RECEIVED).await, 3.0);
    assert_eq!(b.process.metric(&acked("no_reviewapp")).await, 1.0);
    assert_eq!(
        stack.names("apps/v1", "Deployment", &stack.ns).await,
        [env_name(1)]
    );
    assert_eq!(
        stack.names("apps/v1", "Deployment", &ns_b).await,
        [env_name(1), env_name(2)]
    );
    // Each applier reads the queue tagged with its own name: no warning.
    for (applier, name) in [(&a, A), (&b, B)] {
        let log = process_log(&applier.process);
        assert!(
            !log.contains("is tagged kubetempura:applier"),
            "{name}: {log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn both_clusters_keep_per_pr_order_and_a_stopped_one_catches_up_with_nothing_lost() {
    let (stack, ns_b) = start("fanout-order").await;
    let mut a = stack.start_fanout_applier(A, &stack.ns, A).await;
    let b = stack.start_fanout_applier(B, &ns_b, B).await;
    stack
        .deliver(&delivery(1, &sha(1), "opened", 0), "order-open")
        .await;
    stack
        .deliver(&delivery(1, &sha(2), "synchronize", 2), "order-2")
        .await;
    wait_image(&stack, &stack.ns, 1, &sha(2)).await;
    // Nothing of cluster-a's in flight when it dies.
    wait_drained_nothing_dead(&stack, A).await;
    a.process.signal(Signal::SIGKILL);
    assert!(
        !a.process
            .wait_exit(Duration::from_secs(10))
            .expect("killed")
            .success()
    );
    let before_kill = process_log(&a.process);
    assert_eq!(
        handled_for(&before_kill, 1),
        applied(&["order-open", "order-2"])
    );

    // The burst, while cluster-a is down: cluster-b is not held back.
    let burst: Vec<String> = (3..=8).map(|i| format!("order-{i}")).collect();
    for (i, id) in (3..=8u32).zip(&burst) {
        stack
            .deliver(&delivery(1, &sha(i), "synchronize", i64::from(i)), id)
            .await;
    }
    wait_image(&stack, &ns_b, 1, &sha(8)).await;
    stack
        .wait_pr_phase(&ns_b, &env_name(1), Phase::Applied)
        .await;
    wait_drained_nothing_dead(&stack, B).await;
    // cluster-a's share waits in its own queue (one may be in flight: the killed applier's last
    // long poll, still open at the emulator, can take a message, which returns after the
    // visibility timeout, holding its group back until then).
    let (visible, in_flight) = stack.sqs.depth(&fanout(&stack).queues(A).url).await;
    assert_eq!(
        visible + in_flight,
        6,
        "{visible} visible, {in_flight} in flight"
    );

    let restarted = stack.start_fanout_applier(A, &stack.ns, A).await;
    wait_image(&stack, &stack.ns, 1, &sha(8)).await;
    stack
        .wait_pr_phase(&stack.ns, &env_name(1), Phase::Applied)
        .await;
    wait_drained_nothing_dead(&stack, A).await;

    // Every event once, in order, in both clusters.
    let burst: Vec<&str> = burst.iter().map(String::as_str).collect();
    assert_eq!(
        handled_for(&process_log(&restarted.process), 1),
        applied(&burst)
    );
    assert_eq!(restarted.process.metric(RECEIVED).await, 6.0);
    let all: Vec<&str> = ["order-open", "order-2"].into_iter().chain(burst).collect();
    let log_b = process_log(&b.process);
    assert_eq!(handled_for(&log_b, 1), applied(&all), "{log_b}");
    assert_eq!(b.process.metric(RECEIVED).await, 8.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_applier_reading_a_queue_tagged_for_another_cluster_warns_at_start() {
    let (stack, _) = start("fanout-warn").await;
    let wrong = stack.start_fanout_applier(A, &stack.ns, "cluster-x").await;
    let expected = sharing_warning(A, "cluster-x");
    wait_for(
        "the queue-sharing warning",
        Duration::from_secs(30),
        || async {
            process_log(&wrong.process)
                .contains(&expected)
                .then_some(())
        },
    )
    .await;
}
