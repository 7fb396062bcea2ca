//! The original announcement's walkthrough (../shared/examples/WALKTHROUGH.md), played against a
//! running [`Stack`] with signed deliveries, checking the cluster after each step. Shared by the
//! end-to-end tests and `make demo`.

use chrono::{DateTime, Duration as Minutes, Utc};
use kubetempura_applier::send_event::Delivery;
use kubetempura_common::crd::Phase;

use crate::harness::stack::Stack;

/// Repository of the example ReviewApps.
pub const REPO: &str = "https://github.com/mercari/not-exists";
/// The head commit PRs 123 and 124 are opened at.
pub const SHA_1: &str = "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7";
/// The commit pushed to PR 123.
pub const SHA_2: &str = "d0451ad4d774c8fbc843d3251530dcabb3c635a9";

/// A delivery of the walkthrough, `minute` minutes after `start` (GitHub's `updated_at`).
pub fn delivery(start: DateTime<Utc>, pr: u64, sha: &str, action: &str, minute: i64) -> Delivery {
    let mut d = Delivery::new(REPO, pr, sha, action);
    d.branch = format!("feature/pr-{pr}");
    d.updated_at = start + Minutes::minutes(minute);
    d
}

/// The four steps' titles, for printing.
pub const STEPS: [&str; 4] = [
    "1. PR 123 is opened at 32f7bfe (signed pull_request delivery, action opened)",
    "2. PR 124 is opened",
    "3. A new commit d0451ad is pushed to PR 123 (action synchronize)",
    "4. PR 123 is merged (action closed, merged true)",
];

/// Plays the walkthrough. `extra_kinds` are the other objects each environment has (by
/// apiVersion and kind, named `reviewapp-sample-pr<N>`, e.g. Istio's VirtualService).
/// `after_step` runs after each step's checks passed, with the step's index.
pub async fn play(
    stack: &Stack,
    extra_kinds: &[(&str, &str)],
    mut after_step: impl AsyncFnMut(usize),
) {
    let start = Utc::now();
    let id = |n: u32| {
        format!(
            "walkthrough-{}-{}-{n}",
            std::process::id(),
            start.timestamp_millis()
        )
    };
    let exists = |kind: &str| format!("{kind} of PR 123");

    // 1. PR 123 is opened.
    stack
        .deliver(&delivery(start, 123, SHA_1, "opened", 0), &id(1))
        .await;
    stack
        .wait_deployment_image(
            &stack.ns,
            "reviewapp-sample-pr123",
            "ghcr.io/stefanprodan/podinfo:pr123-32f7bfe",
        )
        .await;
    stack
        .wait_object(
            &exists("Service"),
            "v1",
            "Service",
            &stack.ns,
            "reviewapp-sample-pr123",
            |o| o.is_some(),
        )
        .await;
    for (api_version, kind) in extra_kinds {
        stack
            .wait_object(
                &exists(kind),
                api_version,
                kind,
                &stack.ns,
                "reviewapp-sample-pr123",
                |o| o.is_some(),
            )
            .await;
    }
    let pr = stack
        .wait_pr_phase(&stack.ns, "reviewapp-sample-pr123", Phase::Applied)
        .await;
    let status = pr.status.unwrap_or_default();
    assert_eq!(status.commit_short.as_deref(), Some("32f7bfe"));
    assert_eq!(status.inventory.len(), 2 + extra_kinds.len());
    after_step(0).await;

    // 2. PR 124 is opened beside it.
    stack
        .deliver(&delivery(start, 124, SHA_1, "opened", 1), &id(2))
        .await;
    stack
        .wait_deployment_image(
            &stack.ns,
            "reviewapp-sample-pr124",
            "ghcr.io/stefanprodan/podinfo:pr124-32f7bfe",
        )
        .await;
    stack
        .wait_object(
            "Service of PR 124",
            "v1",
            "Service",
            &stack.ns,
            "reviewapp-sample-pr124",
            |o| o.is_some(),
        )
        .await;
    stack
        .wait_pr_phase(&stack.ns, "reviewapp-sample-pr124", Phase::Applied)
        .await;
    after_step(1).await;

    // 3. A new commit is pushed to PR 123.
    stack
        .deliver(&delivery(start, 123, SHA_2, "synchronize", 2), &id(3))
        .await;
    stack
        .wait_deployment_image(
            &stack.ns,
            "reviewapp-sample-pr123",
            "ghcr.io/stefanprodan/podinfo:pr123-d0451ad",
        )
        .await;
    after_step(2).await;

    // 4. PR 123 is merged: everything created for it is gone; PR 124's objects remain.
    let mut merged = delivery(start, 123, SHA_2, "closed", 3);
    merged.merged = true;
    stack.deliver(&merged, &id(4)).await;
    stack
        .wait_gone("apps/v1", "Deployment", &stack.ns, "reviewapp-sample-pr123")
        .await;
    stack
        .wait_gone("v1", "Service", &stack.ns, "reviewapp-sample-pr123")
        .await;
    for (api_version, kind) in extra_kinds {
        stack
            .wait_gone(api_version, kind, &stack.ns, "reviewapp-sample-pr123")
            .await;
    }
    let tombstone = stack
        .wait_pr_phase(&stack.ns, "reviewapp-sample-pr123", Phase::Closed)
        .await;
    assert!(tombstone.status.unwrap_or_default().inventory.is_empty());
    assert_eq!(
        stack.names("apps/v1", "Deployment", &stack.ns).await,
        ["reviewapp-sample-pr124"]
    );
    assert_eq!(
        stack
            .names("v1", "Service", &stack.ns)
            .await
            .into_iter()
            .filter(|n| n != "kubernetes")
            .collect::<Vec<_>>(),
        ["reviewapp-sample-pr124"]
    );
    stack
        .wait_deployment_image(
            &stack.ns,
            "reviewapp-sample-pr124",
            "ghcr.io/stefanprodan/podinfo:pr124-32f7bfe",
        )
        .await;
    for (api_version, kind) in extra_kinds {
        assert_eq!(
            stack.names(api_version, kind, &stack.ns).await,
            ["reviewapp-sample-pr124"]
        );
    }
    stack.wait_queue_drained().await;
    after_step(3).await;
}

/// PR feedback beside a [`Stack`] started with `feedback: true`: GitHub's stand-in (every
/// request validated against GitHub's OpenAPI description) with a test App installed on the
/// walkthrough's repository, and the notifier function under the Lambda runtime emulator, fed
/// from the feedback queue as AWS's event source mapping would.
pub struct Feedback {
    pub github: crate::harness::github_api::GitHubStandIn,
    pub notifier: crate::harness::notifier::NotifierFunction,
    queue: crate::harness::sqs::Queues,
}

/// The GitHub App of the walkthrough's feedback.
pub const APP_ID: u64 = 123_123;

/// The sample ReviewApp changed by `edit`, written to a file a [`Stack`] applies (keep the file
/// until the stack started).
pub fn sample_app_with(edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(crate::harness::stack::workspace_file(
        "infra/examples/reviewapp-sample.yaml",
    ))
    .expect("read the sample ReviewApp");
    let mut app: serde_json::Value = serde_yaml::from_str(&text).expect("sample ReviewApp");
    edit(&mut app);
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        file.path(),
        serde_yaml::to_string(&app).expect("ReviewApp YAML"),
    )
    .expect("write the ReviewApp");
    file
}

/// The sample ReviewApp with an `environmentURL` and a `logURL`.
pub fn sample_with_url() -> tempfile::NamedTempFile {
    sample_app_with(|app| {
        app["spec"]["environmentURL"] = "https://pr{{PR_NUMBER}}.review.example.com".into();
        app["spec"]["logURL"] = "https://logs.example.com/review?pr={{PR_NUMBER}}".into();
    })
}

/// The walkthrough's repository as `owner/name`, as GitHub names it.
fn full_name() -> String {
    let (_, owner, name) =
        kubetempura_common::naming::split_repository_url(REPO).expect("repository URL");
    format!("{owner}/{name}")
}

impl Feedback {
    /// Starts GitHub's stand-in and the notifier for `stack`'s feedback queue.
    pub async fn start(stack: &Stack) -> Self {
        use crate::harness::github_api::{APP_KEYS_DIR, GitHubStandIn};
        let github = GitHubStandIn::start_test_app(APP_ID).await;
        github.install(&full_name());
        let queue = stack
            .feedback_queues
            .clone()
            .expect("a stack started with feedback: true");
        let key = std::fs::read_to_string(format!("{APP_KEYS_DIR}/test-app-private-key.pem"))
            .expect("the test App's key");
        let mut env = stack.sqs.env();
        env.extend(
            [
                ("GITHUB_APP_ID", APP_ID.to_string()),
                ("GITHUB_APP_PRIVATE_KEY", key),
                ("GITHUB_API_URL", github.url()),
                ("FEEDBACK_QUEUE_URL", queue.url.clone()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let notifier = crate::harness::notifier::NotifierFunction::start(&env).await;
        Self {
            github,
            notifier,
            queue,
        }
    }

    /// Hands everything on the feedback queue to the notifier; panics when it failed one.
    pub async fn drain(&self, stack: &Stack) {
        let deliveries = self
            .notifier
            .pump_until_empty(
                &stack.sqs,
                &self.queue.url,
                &self.queue.arn,
                std::time::Duration::from_secs(60),
            )
            .await;
        let failed: Vec<_> = deliveries.iter().filter(|d| d.failed).collect();
        assert!(failed.is_empty(), "{failed:#?}\n{}", self.notifier.output());
    }

    /// PR `pr`'s environment at `sha`: `deploying` once applied; with `roll_out`, its Deployment
    /// is then marked available as its controller would (the control plane has no kubelet) and
    /// the environment becomes `ready`. Both reach GitHub.
    pub async fn follow(&self, stack: &Stack, pr: u64, sha: &str, roll_out: bool) {
        let name = format!("reviewapp-sample-pr{pr}");
        stack.wait_feedback_sent(&name, "deploying", sha).await;
        if roll_out {
            stack.set_deployment_available(&name, 1).await;
            stack.wait_feedback_sent(&name, "ready", sha).await;
        }
        self.drain(stack).await;
    }

    /// The body of the one comment on pull request `pr`, if there is one (panics on several).
    pub fn comment(&self, pr: u64) -> Option<String> {
        let comments = self.github.comments(&full_name(), pr);
        assert!(comments.len() <= 1, "PR {pr}: {comments:#?}");
        comments.first().map(|c| c.body.clone())
    }
}
