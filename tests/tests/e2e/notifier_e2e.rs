//! The notifier function across processes: the binary under `cargo lambda watch`, fed SQS
//! event payloads from the feedback FIFO queue (on the SQS emulator) by a stand-in for the
//! event source mapping, talking to the GitHub stand-in as the test App. No Kubernetes.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kubetempura_common::feedback::{FEEDBACK_SCHEMA_VERSION, FeedbackEvent, FeedbackState};
use kubetempura_tests::harness::github_api::{APP_KEYS_DIR, GitHubStandIn, RateLimit};
use kubetempura_tests::harness::notifier::{Delivery, NotifierFunction};
use kubetempura_tests::harness::sqs::{Queues, SqsEmulator};

const APP_ID: u64 = 424_242;
const REPO: &str = "acme/shop";
const PR: u64 = 12;
const SHA1: &str = "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA2: &str = "2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
/// Receives before the queue dead-letters a message.
const MAX_RECEIVES: u32 = 2;
const DRAIN: Duration = Duration::from_secs(60);

/// One test's parts: the queues, GitHub with the App installed on [`REPO`], the function.
struct Stack {
    sqs: SqsEmulator,
    queues: Queues,
    github: GitHubStandIn,
    notifier: NotifierFunction,
}

impl Stack {
    /// Everything started; the feedback queue hides a received message `visibility_secs`.
    async fn start(name: &str, visibility_secs: u32) -> Stack {
        let sqs = SqsEmulator::start().await;
        let queues = sqs
            .create_fifo_with_dlq(name, MAX_RECEIVES, visibility_secs)
            .await;
        let github = GitHubStandIn::start_test_app(APP_ID).await;
        github.install(REPO);
        let pem =
            std::fs::read_to_string(format!("{APP_KEYS_DIR}/test-app-private-key.pem")).unwrap();
        let mut env = sqs.env();
        env.extend(
            [
                ("GITHUB_APP_ID", APP_ID.to_string()),
                ("GITHUB_APP_PRIVATE_KEY", pem),
                ("GITHUB_API_URL", github.url()),
                ("FEEDBACK_QUEUE_URL", queues.url.clone()),
                ("RUST_LOG", "info".into()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let notifier = NotifierFunction::start(&env).await;
        Stack {
            sqs,
            queues,
            github,
            notifier,
        }
    }

    /// Sends `event` as the applier does: group per pull request, content-based dedup id.
    async fn send(&self, event: &FeedbackEvent) {
        let (group, dedup) = (event.message_group_id(), event.deduplication_id());
        (self.sqs)
            .send_fifo(&self.queues.url, &event.to_json(), &group, &dedup)
            .await;
    }

    /// Sends `events` in order, drains the queue and checks that none failed.
    async fn apply(&self, events: &[FeedbackEvent]) {
        for e in events {
            self.send(e).await;
        }
        self.assert_all_handled(&self.drain().await);
    }

    /// Pumps the queue through the function until it is empty.
    async fn drain(&self) -> Vec<Delivery> {
        let (url, arn) = (&self.queues.url, &self.queues.arn);
        let deliveries = self
            .notifier
            .pump_until_empty(&self.sqs, url, arn, DRAIN)
            .await;
        assert!(!deliveries.is_empty(), "nothing was delivered");
        deliveries
    }

    /// The statuses of the deployment of (environment, sha), oldest first, as `state: detail`
    /// (the environment URL for a success, the description for a failure or an error).
    fn statuses(&self, environment: &str, sha: &str) -> Vec<String> {
        let found: Vec<_> = (self.github.deployments().into_iter())
            .filter(|d| d.environment == environment && d.sha == sha)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one deployment of {environment} at {sha}: {found:#?}"
        );
        (found[0].statuses.iter())
            .map(|s| match s.state.as_str() {
                "success" => format!("success: {}", s.environment_url),
                "failure" | "error" => format!("{}: {}", s.state, s.description),
                other => other.to_owned(),
            })
            .collect()
    }

    /// The one comment on the pull request `repo`#`pr`, its table rows as cells.
    fn rows(&self, repo: &str, pr: u64) -> Vec<Vec<String>> {
        let comments = self.github.comments(repo, pr);
        assert_eq!(comments.len(), 1, "exactly one comment: {comments:#?}");
        table_rows(&comments[0].body)
    }

    /// Asserts that the comment on [`REPO`]#[`PR`] has one row, [`row`]`(app, sha, url, state)`.
    fn assert_row(&self, app: &str, sha: &str, url: bool, state: &str) {
        assert_rows(&self.rows(REPO, PR), &[row(app, sha, url, state)]);
    }

    /// Panics with the function's output when a delivery failed.
    fn assert_all_handled(&self, deliveries: &[Delivery]) {
        let failed: Vec<_> = deliveries.iter().filter(|d| d.failed).collect();
        assert!(failed.is_empty(), "{failed:#?}\n{}", self.notifier.output());
    }
}

/// The cells of each table row of a comment: environment, URL, commit, state (the time left
/// out).
fn table_rows(body: &str) -> Vec<Vec<String>> {
    (body.lines())
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells = l
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned());
            cells.take(4).collect()
        })
        .collect()
}

fn at(secs: i64) -> DateTime<Utc> {
    "2026-12-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::seconds(secs)
}

fn url_of(app: &str) -> String {
    format!("https://{app}-pr{PR}.review.example.com/")
}

/// The event the applier sends for ReviewApp `app` of [`REPO`]#[`PR`].
fn event(app: &str, sha: &str, state: FeedbackState, secs: i64) -> FeedbackEvent {
    let message = match state {
        FeedbackState::Deploying => "waiting for the rollout",
        FeedbackState::Ready => "",
        FeedbackState::Failed => "rollout of Deployment/api did not finish within 10m",
        FeedbackState::Closed | FeedbackState::Skipped => "pull request closed",
        FeedbackState::Waiting => "waiting for check run `build`",
        FeedbackState::Blocked => "check run `build` failed: https://ci.example.com/runs/7",
        FeedbackState::Queued => "queued: 2 ahead (maxActive 3)",
        FeedbackState::Expired => "expired after 48h without a push: push or add `preview` to wake",
    };
    FeedbackEvent {
        version: FEEDBACK_SCHEMA_VERSION,
        cluster: None,
        namespace: "team-shop".into(),
        review_app: app.into(),
        environment: format!("{app}-pr{PR}"),
        repository: REPO.into(),
        pr_number: PR,
        head_sha: sha.into(),
        state,
        message: message.into(),
        // The applier sends no URL for an environment that has none yet (common::feedback).
        environment_url: (state != FeedbackState::Queued).then(|| url_of(app)),
        log_url: None,
        time: at(secs),
    }
}

/// A row as the comment shows it: environment, URL, short commit, state word (and message).
fn row(app: &str, sha: &str, url: bool, state: &str) -> Vec<String> {
    let link = url_of(app);
    let text = link.trim_start_matches("https://").trim_end_matches('/');
    vec![
        format!("`{app}-pr{PR}`"),
        if url {
            format!("[{text}]({link})")
        } else {
            "—".into()
        },
        format!("[`{}`](http://", &sha[..7]),
        state.into(),
    ]
}

/// Compares rows with `expected`, whose commit cell is a prefix (the stand-in's URL varies).
fn assert_rows(actual: &[Vec<String>], expected: &[Vec<String>]) {
    let matches = actual.len() == expected.len()
        && actual.iter().zip(expected).all(|(a, e)| {
            a.len() == 4 && a[0] == e[0] && a[1] == e[1] && a[2].starts_with(&e[2]) && a[3] == e[3]
        });
    assert!(matches, "rows\n{actual:#?}\nexpected\n{expected:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_request_walkthrough_ends_with_a_deployment_per_environment_and_sha_and_one_comment_saying_removed()
 {
    let stack = Stack::start("walkthrough", 2).await;
    use FeedbackState::{Closed, Deploying, Failed, Ready};

    // Opened: web becomes ready, api fails.
    stack
        .apply(&[
            event("web", SHA1, Deploying, 0),
            event("api", SHA1, Deploying, 1),
            event("web", SHA1, Ready, 10),
            event("api", SHA1, Failed, 600),
        ])
        .await;
    assert_rows(
        &stack.rows(REPO, PR),
        &[
            row(
                "api",
                SHA1,
                true,
                "**Failed**: rollout of Deployment/api did not finish within 10m",
            ),
            row("web", SHA1, true, "**Ready**"),
        ],
    );

    // A push: both deploy the new commit and become ready.
    stack
        .apply(&[
            event("web", SHA2, Deploying, 700),
            event("api", SHA2, Deploying, 701),
            event("web", SHA2, Ready, 710),
            event("api", SHA2, Ready, 711),
        ])
        .await;
    assert_rows(
        &stack.rows(REPO, PR),
        &[
            row("api", SHA2, true, "**Ready**"),
            row("web", SHA2, true, "**Ready**"),
        ],
    );

    // Closed.
    stack
        .apply(&[
            event("web", SHA2, Closed, 800),
            event("api", SHA2, Closed, 801),
        ])
        .await;

    let web = format!("success: {}", url_of("web"));
    let api = format!("success: {}", url_of("api"));
    let failure = "failure: rollout of Deployment/api did not finish within 10m".to_owned();
    let seq = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        stack.github.deployments().len(),
        4,
        "a deployment per environment and SHA"
    );
    assert_eq!(
        stack.statuses("web-pr12", SHA1),
        seq(&["in_progress", &web, "inactive"])
    );
    assert_eq!(
        stack.statuses("web-pr12", SHA2),
        seq(&["in_progress", &web, "inactive"])
    );
    assert_eq!(
        stack.statuses("api-pr12", SHA1),
        seq(&["in_progress", &failure, "inactive"])
    );
    assert_eq!(
        stack.statuses("api-pr12", SHA2),
        seq(&["in_progress", &api, "inactive"])
    );
    let rows = stack.rows(REPO, PR);
    assert_rows(
        &rows,
        &[
            row("api", SHA2, false, "**Removed**: pull request closed"),
            row("web", SHA2, false, "**Removed**: pull request closed"),
        ],
    );
    let body = &stack.github.comments(REPO, PR)[0].body;
    assert!(
        body.contains("All review environments of this pull request have been removed."),
        "{body}"
    );
    stack.github.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread")]
async fn gated_queued_and_expired_states_leave_the_serving_commits_success_until_the_environment_is_gone()
 {
    let stack = Stack::start("lifecycle", 2).await;
    use FeedbackState::{Blocked, Expired, Queued, Ready, Waiting};
    let seq = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let success = format!("success: {}", url_of("web"));
    let blocked = "error: check run `build` failed: https://ci.example.com/runs/7";

    // Opened over the ReviewApp's maxActive: queued, shown although never deployed.
    stack.apply(&[event("web", SHA1, Queued, 0)]).await;
    stack.assert_row(
        "web",
        SHA1,
        false,
        r"**Queued**: queued: 2 ahead (maxActive 3)",
    );
    assert_eq!(stack.statuses("web-pr12", SHA1), ["queued"]);

    // A slot frees: the commit waits for its build, which passes.
    stack.apply(&[event("web", SHA1, Waiting, 100)]).await;
    stack.assert_row(
        "web",
        SHA1,
        true,
        r"**Waiting**: waiting for check run \`build\`",
    );
    stack.apply(&[event("web", SHA1, Ready, 200)]).await;
    assert_eq!(
        stack.statuses("web-pr12", SHA1),
        seq(&["queued", "pending", &success])
    );

    // A push whose build fails: the new commit waits, then is blocked, while the first commit
    // still serves and its deployment keeps its success.
    stack
        .apply(&[
            event("web", SHA2, Waiting, 300),
            event("web", SHA2, Blocked, 400),
        ])
        .await;
    assert_eq!(
        stack.statuses("web-pr12", SHA1),
        seq(&["queued", "pending", &success]),
        "the serving commit's deployment is left alone"
    );
    assert_eq!(stack.statuses("web-pr12", SHA2), seq(&["pending", blocked]));
    stack.assert_row(
        "web",
        SHA2,
        true,
        r"**Blocked**: check run \`build\` failed: https://ci.example.com/runs/7",
    );

    // No push for 48 hours: the environment (still on the first commit) expires, and every
    // deployment of it becomes inactive, the blocked one's too.
    stack.apply(&[event("web", SHA1, Expired, 173_000)]).await;
    assert_eq!(
        stack.statuses("web-pr12", SHA1),
        seq(&["queued", "pending", &success, "inactive"])
    );
    assert_eq!(
        stack.statuses("web-pr12", SHA2),
        seq(&["pending", blocked, "inactive"])
    );
    assert_eq!(stack.github.deployments().len(), 2, "one per commit");
    stack.assert_row(
        "web",
        SHA1,
        false,
        r"**Expired**: expired after 48h without a push: push or add \`preview\` to wake",
    );
    let body = &stack.github.comments(REPO, PR)[0].body;
    assert!(
        body.contains("All review environments of this pull request have been removed."),
        "{body}"
    );
    stack.github.assert_no_violations();
}

/// The queue's own visibility timeout in the rate-limit test: well above GitHub's delays there,
/// so a redelivery before it proves the function changed the message's visibility.
const LONG_VISIBILITY_SECS: u32 = 10;

/// Sends `event`, drains the queue, and checks that the event failed once (rate limited), came
/// back after at least `delay` but before the queue's visibility timeout, and was then applied.
async fn assert_rate_limited_then_applied(stack: &Stack, event: &FeedbackEvent, delay: Duration) {
    stack.send(event).await;
    let deliveries = stack.drain().await;
    let body = event.to_json();
    let of: Vec<&Delivery> = deliveries.iter().filter(|d| d.body == body).collect();
    assert_eq!(of.len(), 2, "delivered twice: {deliveries:#?}");
    assert_eq!((of[0].receive_count, of[1].receive_count), (1, 2));
    assert!(
        of[0].failed && !of[1].failed,
        "failed, then applied: {of:#?}"
    );
    let waited = of[1].at - of[0].at;
    assert!(
        waited >= delay && waited < Duration::from_secs(LONG_VISIBILITY_SECS.into()),
        "redelivered after {waited:?}\n{}",
        stack.notifier.output()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_message_comes_back_after_githubs_delay_not_the_queues_and_is_applied() {
    let stack = Stack::start("rate-limit", LONG_VISIBILITY_SECS).await;

    // A secondary rate limit with retry-after: 2 s.
    stack
        .github
        .rate_limit_next(1, RateLimit::Secondary { retry_after: 2 });
    let deploying = event("web", SHA1, FeedbackState::Deploying, 0);
    assert_rate_limited_then_applied(&stack, &deploying, Duration::from_millis(1900)).await;
    assert_eq!(stack.statuses("web-pr12", SHA1), ["in_progress"]);

    // A primary rate limit: the quota is spent until x-ratelimit-reset, 4 s from now (the
    // function reads whole seconds: it waits 3 or 4).
    stack.github.reset_rate_limit_in(Duration::from_secs(4));
    stack.github.rate_limit_next(1, RateLimit::Primary);
    let ready = event("web", SHA1, FeedbackState::Ready, 10);
    assert_rate_limited_then_applied(&stack, &ready, Duration::from_millis(2900)).await;
    let success = format!("success: {}", url_of("web"));
    assert_eq!(
        stack.statuses("web-pr12", SHA1),
        ["in_progress", success.as_str()]
    );

    let limited = (stack.github.requests().into_iter()).filter(|r| r.status == 403);
    assert_eq!(limited.count(), 2, "both rate limits were answered");
    let dlq = stack.sqs.depth(&stack.queues.dlq_url).await;
    assert_eq!(dlq, (0, 0), "nothing dead-lettered");
    stack.github.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_installation_token_is_replaced_without_failing_the_message() {
    let stack = Stack::start("token-expiry", 2).await;
    let deploying = event("web", SHA1, FeedbackState::Deploying, 0);
    stack.apply(&[deploying]).await;

    stack.github.expire_tokens();
    stack
        .send(&event("web", SHA1, FeedbackState::Ready, 10))
        .await;
    let deliveries = stack.drain().await;
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    stack.assert_all_handled(&deliveries);

    let success = format!("success: {}", url_of("web"));
    assert_eq!(
        stack.statuses("web-pr12", SHA1),
        ["in_progress", success.as_str()]
    );
    let requests = stack.github.requests();
    let refused = requests.iter().position(|r| r.status == 401);
    let refused = refused.expect("the cached, expired token was refused");
    let minted = (requests.iter())
        .filter(|r| r.operation.as_deref() == Some("apps/create-installation-access-token"))
        .count();
    assert_eq!(minted, 2, "a second token was minted: {requests:#?}");
    assert_eq!(
        requests[refused + 1].operation.as_deref(),
        Some("apps/create-installation-access-token"),
        "a new token right after the 401"
    );
    stack.github.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_repository_fails_its_message_on_every_receive_into_the_dlq_and_other_groups_go_on()
 {
    let stack = Stack::start("denied", 2).await;
    let other_repo = "acme/docs";
    stack.github.install(other_repo);
    stack.github.deny(REPO);
    let denied = event("web", SHA1, FeedbackState::Deploying, 0);
    let mut other = event("docs", SHA1, FeedbackState::Deploying, 0);
    other.repository = other_repo.into();
    other.pr_number = 3;
    stack.send(&denied).await;
    stack.send(&other).await;

    let deliveries = stack.drain().await;
    let of = |e: &FeedbackEvent| -> Vec<&Delivery> {
        let body = e.to_json();
        deliveries.iter().filter(|d| d.body == body).collect()
    };
    let (denied_deliveries, other_deliveries) = (of(&denied), of(&other));
    assert_eq!(
        denied_deliveries.len(),
        MAX_RECEIVES as usize,
        "{deliveries:#?}"
    );
    assert!(
        denied_deliveries.iter().all(|d| d.failed),
        "{deliveries:#?}"
    );
    assert_eq!(other_deliveries.len(), 1, "{deliveries:#?}");
    assert!(!other_deliveries[0].failed, "{}", stack.notifier.output());
    assert_eq!(
        denied_deliveries[0].batch, other_deliveries[0].batch,
        "one batch held both"
    );

    let dead = stack
        .sqs
        .take(&stack.queues.dlq_url, Duration::from_secs(5))
        .await;
    assert_eq!(
        dead,
        Some(denied.to_json()),
        "the denied message is dead-lettered"
    );
    assert!(
        !stack.github.deployments().iter().any(|d| d.repo == REPO),
        "nothing applied on the denied repository"
    );
    assert!(stack.github.comments(REPO, PR).is_empty());
    assert_eq!(stack.statuses("docs-pr12", SHA1), ["in_progress"]);
    assert_eq!(stack.rows(other_repo, 3).len(), 1);
    let forbidden = stack
        .github
        .requests()
        .into_iter()
        .filter(|r| r.status == 403)
        .count();
    assert_eq!(
        forbidden, MAX_RECEIVES as usize,
        "one refused call a receive"
    );
    stack.github.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_event_arriving_after_a_newer_one_changes_neither_the_comment_nor_the_deployment()
{
    let stack = Stack::start("out-of-order", 2).await;
    let ready = event("web", SHA1, FeedbackState::Ready, 10);
    let deploying = event("web", SHA1, FeedbackState::Deploying, 0);
    stack.send(&ready).await;
    stack.send(&deploying).await;
    let deliveries = stack.drain().await;
    assert_eq!(deliveries.len(), 2, "both were delivered: {deliveries:#?}");
    assert_eq!(
        deliveries[1].body,
        deploying.to_json(),
        "the older one last"
    );
    stack.assert_all_handled(&deliveries);

    let success = format!("success: {}", url_of("web"));
    assert_eq!(stack.statuses("web-pr12", SHA1), [success.as_str()]);
    assert_rows(
        &stack.rows(REPO, PR),
        &[row("web", SHA1, true, "**Ready**")],
    );
    stack.github.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undecodable_message_fails_into_the_dlq_and_other_messages_are_applied() {
    let stack = Stack::start("undecodable", 2).await;
    let garbage = "{\"version\": 1, \"this is\": \"not a feedback event\"}";
    (stack.sqs)
        .send_fifo(&stack.queues.url, garbage, "acme/shop#99", "garbage-1")
        .await;
    stack
        .send(&event("web", SHA1, FeedbackState::Deploying, 0))
        .await;
    stack
        .send(&event("web", SHA1, FeedbackState::Ready, 10))
        .await;

    let deliveries = stack.drain().await;
    let (bad, good): (Vec<&Delivery>, Vec<&Delivery>) =
        deliveries.iter().partition(|d| d.body == garbage);
    assert_eq!(bad.len(), MAX_RECEIVES as usize, "{deliveries:#?}");
    assert!(bad.iter().all(|d| d.failed), "{deliveries:#?}");
    assert_eq!(good.len(), 2, "{deliveries:#?}");
    assert!(
        good.iter().all(|d| !d.failed),
        "{}",
        stack.notifier.output()
    );

    let dead = stack
        .sqs
        .take(&stack.queues.dlq_url, Duration::from_secs(5))
        .await;
    assert_eq!(dead.as_deref(), Some(garbage));
    let success = format!("success: {}", url_of("web"));
    assert_eq!(
        stack.statuses("web-pr12", SHA1),
        ["in_progress", success.as_str()]
    );
    assert_rows(
        &stack.rows(REPO, PR),
        &[row("web", SHA1, true, "**Ready**")],
    );
    stack.github.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_close_of_an_environment_never_shown_adds_no_comment() {
    // What an applier sends for the closed records it finds when feedback is first turned on.
    let stack = Stack::start("never-shown", 2).await;
    stack
        .apply(&[event("web", SHA1, FeedbackState::Closed, 0)])
        .await;
    assert!(
        stack.github.comments(REPO, PR).is_empty(),
        "{:#?}",
        stack.github.comments(REPO, PR)
    );
    assert!(stack.github.deployments().is_empty(), "nothing to retire");
    // Once an environment is shown, its close is shown too.
    stack
        .apply(&[
            event("api", SHA1, FeedbackState::Ready, 10),
            event("api", SHA1, FeedbackState::Closed, 20),
        ])
        .await;
    assert_rows(
        &stack.rows(REPO, PR),
        &[row("api", SHA1, false, "**Removed**: pull request closed")],
    );
    stack.github.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_skip_or_an_expiry_of_an_environment_never_shown_is_shown() {
    // A pull request the policy does not deploy (a draft …) says so; an expiry says how to wake
    // the environment, even when the comment never showed it (feedback turned on later).
    let stack = Stack::start("skip-shown", 2).await;
    stack
        .apply(&[
            event("web", SHA1, FeedbackState::Skipped, 0),
            event("api", SHA1, FeedbackState::Expired, 1),
        ])
        .await;
    let rows = stack.rows(REPO, PR);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0][3].starts_with("**Expired**"), "{rows:?}");
    assert!(rows[1][3].starts_with("**Skipped**"), "{rows:?}");
    assert!(stack.github.deployments().is_empty(), "nothing to retire");
    stack.github.assert_no_violations();
}
