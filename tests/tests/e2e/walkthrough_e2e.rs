//! The announcement's walkthrough (../shared/examples/WALKTHROUGH.md) across real processes:
//! the SQS emulator, the webhook function under `cargo lambda watch`, `kubetempura run` under
//! infra/'s RBAC, and a real Kubernetes control plane (or, with `KUBETEMPURA_E2E_KUBECONFIG`,
//! any cluster) with the generated CRDs and the example ReviewApp applied. Signed deliveries are
//! POSTed to the function URL as GitHub sends them.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use kubetempura_tests::harness::stack::{Stack, StackOptions, workspace_file};
use kubetempura_tests::walkthrough::play;

async fn play_walkthrough(stack: &Stack, extra_kinds: &[(&str, &str)]) {
    play(stack, extra_kinds, async |_| {}).await;
    // The labels and owner references are in place on what remains.
    let dep = stack
        .api("apps/v1", "Deployment", &stack.ns)
        .await
        .get("reviewapp-sample-pr124")
        .await
        .unwrap();
    assert_eq!(
        dep.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
        "kubetempura"
    );
    assert_eq!(
        dep.metadata.labels.as_ref().unwrap()["kubetempura.mercari.com/pr"],
        "124"
    );
    let owner = &dep.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("PR", "reviewapp-sample-pr124")
    );
}

/// On the control plane of the test run; on any cluster with `KUBETEMPURA_E2E_KUBECONFIG`
/// (`make test-real-cluster`: kind, k3d, GKE, EKS …), in namespaces of its own that it deletes.
#[tokio::test(flavor = "multi_thread")]
async fn the_sample_reviewapp_walkthrough_runs_end_to_end() {
    let stack = Stack::start(StackOptions {
        queue: "walkthrough".into(),
        manifests: vec![workspace_file("infra/examples/reviewapp-sample.yaml")],
        kubeconfig: std::env::var_os("KUBETEMPURA_E2E_KUBECONFIG").map(Into::into),
        ..StackOptions::default()
    })
    .await;
    play_walkthrough(&stack, &[]).await;
    let applied = stack
        .applier()
        .metric("kubetempura_objects_applied_total")
        .await;
    assert_eq!(applied, 6.0, "2 objects x 3 renders");
    assert_eq!(
        stack
            .applier()
            .metric("kubetempura_objects_deleted_total")
            .await,
        2.0
    );
    stack.delete_namespaces().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_istio_reviewapp_walkthrough_applies_a_crd_kind_end_to_end() {
    let stack = Stack::start(StackOptions {
        queue: "walkthrough-istio".into(),
        manifests: vec![
            workspace_file("tests/fixtures/virtualservice-crd.yaml"),
            workspace_file("infra/examples/reviewapp-istio.yaml"),
        ],
        install: workspace_file("tests/fixtures/install-mesh"),
        ..StackOptions::default()
    })
    .await;
    play_walkthrough(&stack, &[("networking.istio.io/v1beta1", "VirtualService")]).await;
    let vs = stack
        .api("networking.istio.io/v1beta1", "VirtualService", &stack.ns)
        .await
        .get("reviewapp-sample-pr124")
        .await
        .unwrap();
    assert_eq!(vs.data["spec"]["hosts"][0], "pr124.review-app.example");
}

/// The walkthrough with PR feedback on: the webhook function, the applier with
/// `--feedback-queue-url`, the notifier under the Lambda runtime emulator fed by the event source
/// mapping's stand-in, and GitHub's stand-in validating every request against GitHub's published
/// OpenAPI description. Readiness is driven by setting each Deployment's status as its
/// controller would (the control plane has no kubelet).
#[tokio::test(flavor = "multi_thread")]
async fn the_walkthrough_ends_with_deployment_statuses_and_one_comment_per_pull_request_on_github()
{
    use kubetempura_tests::walkthrough::{Feedback, SHA_1, SHA_2, sample_with_url};

    let manifest = sample_with_url();
    let stack = Stack::start(StackOptions {
        queue: "walkthrough-feedback".into(),
        manifests: vec![manifest.path().to_owned()],
        feedback: true,
        ..StackOptions::default()
    })
    .await;
    let feedback = Feedback::start(&stack).await;
    play(&stack, &[], async |step| match step {
        0 => feedback.follow(&stack, 123, SHA_1, true).await,
        1 => feedback.follow(&stack, 124, SHA_1, true).await,
        2 => feedback.follow(&stack, 123, SHA_2, true).await,
        _ => {}
    })
    .await;
    stack
        .wait_feedback_sent("reviewapp-sample-pr123", "closed", SHA_2)
        .await;
    feedback.drain(&stack).await;
    let github = &feedback.github;

    // GitHub: a deployment per environment and commit, with its statuses in order.
    let statuses = |environment: &str, sha: &str| -> Vec<String> {
        let found: Vec<_> = github
            .deployments()
            .into_iter()
            .filter(|d| d.environment == environment && d.sha == sha)
            .collect();
        assert_eq!(found.len(), 1, "{environment}@{sha}: {found:#?}");
        let d = &found[0];
        assert!(
            d.transient_environment && !d.production_environment,
            "{d:#?}"
        );
        d.statuses
            .iter()
            .map(|s| match s.state.as_str() {
                "success" => format!("success {} {}", s.environment_url, s.log_url),
                other => other.to_owned(),
            })
            .collect()
    };
    let ok = |pr: u64| {
        format!("success https://pr{pr}.review.example.com https://logs.example.com/review?pr={pr}")
    };
    assert_eq!(github.deployments().len(), 3, "{:#?}", github.deployments());
    assert_eq!(
        statuses("reviewapp-sample-pr123", SHA_1),
        ["in_progress".to_owned(), ok(123), "inactive".to_owned()]
    );
    assert_eq!(
        statuses("reviewapp-sample-pr123", SHA_2),
        ["in_progress".to_owned(), ok(123), "inactive".to_owned()]
    );
    assert_eq!(
        statuses("reviewapp-sample-pr124", SHA_1),
        ["in_progress".to_owned(), ok(124)]
    );
    // One comment per pull request, its row current.
    let comment = |pr: u64| feedback.comment(pr).expect("a comment");
    let merged = comment(123);
    assert!(
        merged.contains("| `reviewapp-sample-pr123` | — | [`d0451ad`]")
            && merged.contains("**Removed**: pull request merged"),
        "{merged}"
    );
    let open = comment(124);
    assert!(
        open.contains("| `reviewapp-sample-pr124` | [pr124.review.example.com](https://pr124.review.example.com/) | [`32f7bfe`]")
            && open.contains("**Ready**: 1 workload(s) rolled out"),
        "{open}"
    );
    github.assert_no_violations();
}
