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
