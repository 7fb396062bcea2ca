//! The announcement's walkthrough (../shared/examples/WALKTHROUGH.md) across real processes:
//! the SQS emulator, the webhook function under `cargo lambda watch`, `kubetempura run`, and
//! the Kubernetes stand-in with the generated CRDs and the example ReviewApp applied. Signed
//! deliveries are POSTed to the function URL as GitHub sends them.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use chrono::{Duration as Minutes, TimeZone, Utc};
use kubetempura_applier::send_event::Delivery;
use kubetempura_common::crd::Phase;
use kubetempura_tests::harness::stack::{Stack, StackOptions, workspace_file};

const REPO: &str = "https://github.com/mercari/not-exists";
const SHA_1: &str = "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7";
const SHA_2: &str = "d0451ad4d774c8fbc843d3251530dcabb3c635a9";

fn delivery(pr: u64, sha: &str, action: &str, minute: i64) -> Delivery {
    let mut d = Delivery::new(REPO, pr, sha, action);
    d.branch = format!("feature-{pr}");
    d.updated_at = Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap() + Minutes::minutes(minute);
    d
}

async fn play_walkthrough(stack: &Stack, extra_kinds: &[(&str, &str)]) {
    // 1. PR 123 is opened.
    stack
        .deliver(&delivery(123, SHA_1, "opened", 0), "d-1")
        .await;
    stack
        .wait_deployment_image(
            "default",
            "reviewapp-sample-pr123",
            "ghcr.io/stefanprodan/podinfo:pr123-32f7bfe",
        )
        .await;
    stack
        .wait_object(
            "Service pr123",
            "v1",
            "Service",
            "default",
            "reviewapp-sample-pr123",
            |o| o.is_some(),
        )
        .await;
    for (api_version, kind) in extra_kinds {
        stack
            .wait_object(
                &format!("{kind} pr123"),
                api_version,
                kind,
                "default",
                "reviewapp-sample-pr123",
                |o| o.is_some(),
            )
            .await;
    }
    let pr = stack
        .wait_pr_phase("default", "reviewapp-sample-pr123", Phase::Applied)
        .await;
    assert_eq!(
        pr.status.as_ref().unwrap().commit_short.as_deref(),
        Some("32f7bfe")
    );
    assert_eq!(
        pr.status.as_ref().unwrap().inventory.len(),
        2 + extra_kinds.len()
    );

    // 2. PR 124 is opened beside it.
    stack
        .deliver(&delivery(124, SHA_1, "opened", 1), "d-2")
        .await;
    stack
        .wait_deployment_image(
            "default",
            "reviewapp-sample-pr124",
            "ghcr.io/stefanprodan/podinfo:pr124-32f7bfe",
        )
        .await;
    stack
        .wait_object(
            "Service pr124",
            "v1",
            "Service",
            "default",
            "reviewapp-sample-pr124",
            |o| o.is_some(),
        )
        .await;

    // 3. A new commit is pushed to PR 123.
    stack
        .deliver(&delivery(123, SHA_2, "synchronize", 2), "d-3")
        .await;
    stack
        .wait_deployment_image(
            "default",
            "reviewapp-sample-pr123",
            "ghcr.io/stefanprodan/podinfo:pr123-d0451ad",
        )
        .await;

    // 4. PR 123 is merged: everything created for it is gone; PR 124's objects remain.
    let mut merged = delivery(123, SHA_2, "closed", 3);
    merged.merged = true;
    stack.deliver(&merged, "d-4").await;
    stack
        .wait_gone("apps/v1", "Deployment", "default", "reviewapp-sample-pr123")
        .await;
    stack
        .wait_gone("v1", "Service", "default", "reviewapp-sample-pr123")
        .await;
    for (api_version, kind) in extra_kinds {
        stack
            .wait_gone(api_version, kind, "default", "reviewapp-sample-pr123")
            .await;
    }
    let tombstone = stack
        .wait_pr_phase("default", "reviewapp-sample-pr123", Phase::Closed)
        .await;
    assert!(tombstone.status.unwrap().inventory.is_empty());
    assert_eq!(
        stack.names("apps/v1", "Deployment", "default").await,
        ["reviewapp-sample-pr124"]
    );
    assert_eq!(
        stack.names("v1", "Service", "default").await,
        ["reviewapp-sample-pr124"]
    );
    stack
        .wait_deployment_image(
            "default",
            "reviewapp-sample-pr124",
            "ghcr.io/stefanprodan/podinfo:pr124-32f7bfe",
        )
        .await;
    for (api_version, kind) in extra_kinds {
        assert_eq!(
            stack.names(api_version, kind, "default").await,
            ["reviewapp-sample-pr124"]
        );
    }

    // Every message was acknowledged; the labels and owner references are in place.
    stack.wait_queue_drained().await;
    let dep = stack
        .api("apps/v1", "Deployment", "default")
        .await
        .get("reviewapp-sample-pr124")
        .await
        .unwrap();
    assert_eq!(
        dep.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
        "kubetempura"
    );
    assert_eq!(
        dep.metadata.owner_references.as_ref().unwrap()[0].name,
        "reviewapp-sample-pr124"
    );
    assert_eq!(
        dep.metadata.owner_references.as_ref().unwrap()[0].kind,
        "PR"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sample_reviewapp_walkthrough_runs_end_to_end() {
    let stack = Stack::start(StackOptions {
        queue: "walkthrough".into(),
        manifests: vec![workspace_file("infra/examples/reviewapp-sample.yaml")],
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
}

#[tokio::test(flavor = "multi_thread")]
async fn the_istio_reviewapp_walkthrough_applies_a_crd_kind_end_to_end() {
    let stack = Stack::start(StackOptions {
        queue: "walkthrough-istio".into(),
        manifests: vec![
            workspace_file("tests/fixtures/virtualservice-crd.yaml"),
            workspace_file("infra/examples/reviewapp-istio.yaml"),
        ],
        ..StackOptions::default()
    })
    .await;
    play_walkthrough(&stack, &[("networking.istio.io/v1beta1", "VirtualService")]).await;
    let vs = stack
        .api("networking.istio.io/v1beta1", "VirtualService", "default")
        .await
        .get("reviewapp-sample-pr124")
        .await
        .unwrap();
    assert_eq!(vs.data["spec"]["hosts"][0], "pr124.review-app.example");
}

/// The same walkthrough against a real cluster (kind, k3d, GKE, EKS …): set
/// `KUBETEMPURA_E2E_KUBECONFIG` and run `make test-real-cluster`. The CRDs and the sample
/// ReviewApp are applied to that cluster's `default` namespace.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real cluster: set KUBETEMPURA_E2E_KUBECONFIG and run `make test-real-cluster`"]
async fn the_sample_reviewapp_walkthrough_runs_against_a_real_cluster() {
    let kubeconfig = std::env::var_os("KUBETEMPURA_E2E_KUBECONFIG")
        .expect("KUBETEMPURA_E2E_KUBECONFIG must name a kubeconfig");
    let stack = Stack::start(StackOptions {
        queue: "walkthrough-real".into(),
        manifests: vec![workspace_file("infra/examples/reviewapp-sample.yaml")],
        kubeconfig: Some(kubeconfig.into()),
        ..StackOptions::default()
    })
    .await;
    play_walkthrough(&stack, &[]).await;
    // Leave the cluster as it was: PR 124's environment and both PR objects.
    let prs: kube::Api<kubetempura_common::crd::PR> =
        kube::Api::namespaced(stack.client.clone(), "default");
    for name in ["reviewapp-sample-pr123", "reviewapp-sample-pr124"] {
        let _ = prs.delete(name, &Default::default()).await;
    }
}
