//! Shared by the `guarantees_*` end-to-end suites: synthetic deliveries for the sample
//! ReviewApp (https://github.com/mercari/not-exists, Deployment + Service
//! `reviewapp-sample-pr<N>` in the test's namespace), a stack without the webhook function (events go
//! straight to the queue), and readers of the applier's metrics and log.

#![allow(dead_code)] // Each suite uses a different part of it.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::time::Duration;

use chrono::{DateTime, Duration as Minutes, TimeZone, Utc};
use kube::Api;
use kube::api::DynamicObject;
use kubetempura_applier::send_event::Delivery;
use kubetempura_common::crd::PR;
use kubetempura_tests::harness::applier::ApplierProcess;
use kubetempura_tests::harness::faults::FaultRule;
use kubetempura_tests::harness::stack::{Stack, StackOptions, workspace_file};
use kubetempura_tests::harness::wait_for;

pub const REPO: &str = "https://github.com/mercari/not-exists";

/// The API path of the Deployments in the test's namespace (for fault rules).
pub fn deployments(stack: &Stack) -> String {
    format!("/apis/apps/v1/namespaces/{}/deployments", stack.ns)
}

/// A full head commit SHA, distinct per `n` (its short form is `c0000<n>` padded to 7).
pub fn sha(n: u32) -> String {
    format!("{:07x}{}", 0x0c0_0000 + n, "e".repeat(33))
}

/// The object name of PR `pr`'s Deployment and Service.
pub fn env_name(pr: u64) -> String {
    format!("reviewapp-sample-pr{pr}")
}

/// The image the sample ReviewApp renders for `pr` at `sha`.
pub fn image(pr: u64, sha: &str) -> String {
    format!("ghcr.io/stefanprodan/podinfo:pr{pr}-{}", &sha[..7])
}

/// A fixed point in time plus `minute` minutes (the pull request's `updated_at`).
pub fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap() + Minutes::minutes(minute)
}

/// A `pull_request` delivery for the sample repository, updated at `minute`.
pub fn delivery(pr: u64, sha: &str, action: &str, minute: i64) -> Delivery {
    let mut d = Delivery::new(REPO, pr, sha, action);
    d.branch = format!("feature-{pr}");
    d.updated_at = at(minute);
    d
}

#[allow(unused_imports)] // Only some suites use it.
pub use kubetempura_tests::harness::stack::event_of;

#[allow(unused_imports)] // Only some suites use it.
pub use kubetempura_tests::walkthrough::sample_app_with;

/// The sample ReviewApp, no webhook function (events are sent straight to the queue), fast
/// retries, and `extra` applier arguments.
pub fn options(queue: &str, extra: &[&str]) -> StackOptions {
    let mut args: Vec<String> = [
        "--retry-base-seconds",
        "1",
        "--retry-max-seconds",
        "2",
        "--wait-time-seconds",
        "2",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    StackOptions {
        queue: queue.into(),
        function: false,
        manifests: vec![workspace_file("infra/examples/reviewapp-sample.yaml")],
        applier_args: args,
        ..StackOptions::default()
    }
}

/// `kubetempura_messages_acknowledged_total{outcome="<outcome>"}`.
pub fn acked(outcome: &str) -> String {
    format!("kubetempura_messages_acknowledged_total{{outcome=\"{outcome}\"}}")
}

/// `kubetempura_messages_failed_total{outcome="<kind>"}`.
pub fn failed(kind: &str) -> String {
    format!("kubetempura_messages_failed_total{{outcome=\"{kind}\"}}")
}

pub const RECEIVED: &str = "kubetempura_messages_received_total";

/// Waits until a metric of the running applier reaches at least `at_least`; returns it.
pub async fn wait_metric(stack: &Stack, sample: &str, at_least: f64) -> f64 {
    wait_for(
        &format!("{sample} >= {at_least}"),
        Duration::from_secs(60),
        || async {
            let v = stack.applier().metric(sample).await;
            (v >= at_least).then_some(v)
        },
    )
    .await
}

/// Acknowledged messages, all outcomes together.
pub async fn acked_total(stack: &Stack) -> f64 {
    let text = stack.applier().metrics().await;
    text.lines()
        .filter(|l| l.starts_with("kubetempura_messages_acknowledged_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `n` messages were acknowledged, whatever their outcome.
pub async fn wait_acked(stack: &Stack, n: f64) {
    wait_for(
        &format!("{n} acknowledged messages"),
        Duration::from_secs(60),
        || async { (acked_total(stack).await >= n).then_some(()) },
    )
    .await;
}

/// The applier's log without ANSI colour codes.
pub fn log(stack: &Stack) -> String {
    process_log(stack.applier())
}

/// An applier process's log without ANSI colour codes.
pub fn process_log(applier: &ApplierProcess) -> String {
    let re = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap();
    re.replace_all(&applier.output(), "").into_owned()
}

/// One "event handled" log line: the delivery id and the outcome label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub delivery: String,
    pub pr: u64,
    pub outcome: String,
    pub line: String,
}

/// Every "event handled" line of a log, in log order.
pub fn handled(log: &str) -> Vec<Handled> {
    let delivery = regex::Regex::new(r"delivery=([^\s}]+)").unwrap();
    let pr = regex::Regex::new(r"\bpr=(\d+)").unwrap();
    let outcome = regex::Regex::new(r#"outcome="?([a-z_]+)"?"#).unwrap();
    log.lines()
        .filter(|l| l.contains("event handled"))
        .map(|l| Handled {
            delivery: delivery.captures(l).unwrap()[1].to_owned(),
            pr: pr.captures(l).unwrap()[1].parse().unwrap(),
            outcome: outcome.captures(l).unwrap()[1].to_owned(),
            line: l.to_owned(),
        })
        .collect()
}

/// The delivery ids handled for `pr`, in the order they were handled.
pub fn handled_for(log: &str, pr: u64) -> Vec<(String, String)> {
    handled(log)
        .into_iter()
        .filter(|h| h.pr == pr)
        .map(|h| (h.delivery, h.outcome))
        .collect()
}

/// A fault rule for one object's path (`<collection>/<name>`), exact match.
pub fn fault_on(method: &str, collection: &str, name: &str, status: u16, count: u32) -> FaultRule {
    FaultRule {
        method: Some(method.into()),
        path_regex: Some(format!("^{collection}/{name}$")),
        status: Some(status),
        count: Some(count),
        ..FaultRule::default()
    }
}

/// A delay for one object's path, for its first `count` requests of `method`.
pub fn delay_on(method: &str, collection: &str, name: &str, ms: u64, count: u32) -> FaultRule {
    FaultRule {
        method: Some(method.into()),
        path_regex: Some(format!("^{collection}/{name}$")),
        delay_ms: Some(ms),
        count: Some(count),
        ..FaultRule::default()
    }
}

/// The proxy's active fault rules (a counted rule disappears when its last use begins, so
/// an empty list after a delay rule means the delayed request is being served right now).
pub fn active_faults(stack: &Stack) -> Vec<FaultRule> {
    stack.proxy.faults()
}

/// The object, if it exists.
pub async fn get(
    stack: &Stack,
    api_version: &str,
    kind: &str,
    name: &str,
) -> Option<DynamicObject> {
    stack
        .api(api_version, kind, &stack.ns)
        .await
        .get_opt(name)
        .await
        .unwrap()
}

/// The `PR` object, if it exists.
pub async fn get_pr(stack: &Stack, pr: u64) -> Option<PR> {
    let api: Api<PR> = Api::namespaced(stack.client.clone(), &stack.ns);
    api.get_opt(&env_name(pr)).await.unwrap()
}

/// Waits until the dead-letter queue holds a message; returns its bodies.
pub async fn wait_dlq(stack: &Stack, timeout: Duration) -> Vec<String> {
    wait_for("a message in the dead-letter queue", timeout, || async {
        let msgs = stack.sqs.receive(&stack.queues.dlq_url, 1).await;
        (!msgs.is_empty()).then(|| msgs.into_iter().filter_map(|m| m.body).collect())
    })
    .await
}

/// Visible + in-flight messages in the dead-letter queue.
pub async fn dlq_depth(stack: &Stack) -> u64 {
    let (visible, in_flight) = stack.sqs.depth(&stack.queues.dlq_url).await;
    visible + in_flight
}

/// Visible + in-flight messages in the main queue.
pub async fn queue_depth(stack: &Stack) -> u64 {
    let (visible, in_flight) = stack.sqs.depth(&stack.queues.url).await;
    visible + in_flight
}

/// resourceVersion and generation of an object.
pub fn versions(o: &DynamicObject) -> (String, Option<i64>) {
    (
        o.metadata.resource_version.clone().unwrap(),
        o.metadata.generation,
    )
}

/// Opens `pr` at `sha(1)` and waits until its environment is applied; the `PR` object then.
pub async fn open_applied(stack: &Stack, pr: u64) -> PR {
    stack
        .enqueue(&delivery(pr, &sha(1), "opened", 0), &format!("open-{pr}"))
        .await;
    wait_applied(stack, pr, &sha(1)).await
}

/// Waits until `pr`'s Deployment runs the image of `sha` and its `PR` object is Applied.
pub async fn wait_applied(stack: &Stack, pr: u64, sha: &str) -> PR {
    stack
        .wait_deployment_image(&stack.ns, &env_name(pr), &image(pr, sha))
        .await;
    stack
        .wait_pr_phase(
            &stack.ns,
            &env_name(pr),
            kubetempura_common::crd::Phase::Applied,
        )
        .await
}

/// Waits until `pr`'s Deployment and Service are gone.
pub async fn wait_env_gone(stack: &Stack, pr: u64) {
    stack
        .wait_gone("apps/v1", "Deployment", &stack.ns, &env_name(pr))
        .await;
    stack
        .wait_gone("v1", "Service", &stack.ns, &env_name(pr))
        .await;
}

/// Kills the applier (SIGKILL: nothing in memory survives).
pub fn kill(stack: &mut Stack) {
    stack.applier().signal(nix::sys::signal::Signal::SIGKILL);
    stack
        .applier
        .as_mut()
        .unwrap()
        .wait_exit(Duration::from_secs(10))
        .expect("killed");
}

/// Kills the applier and starts a new one.
pub async fn crash_and_restart(stack: &mut Stack) {
    kill(stack);
    stack.start_applier().await;
}

/// Waits until the queue is drained, and checks nothing went to the dead-letter queue.
pub async fn assert_drained_nothing_dead(stack: &Stack) {
    stack.wait_queue_drained().await;
    assert_eq!(
        dlq_depth(stack).await,
        0,
        "messages in the dead-letter queue"
    );
}
