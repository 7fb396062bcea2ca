//! In-place upgrade from the original KubeTempura: on a control plane of its own (the test
//! swaps cluster-wide CRDs), an installation as the original leaves it — its CRDs, a ReviewApp,
//! a `PR` object owned by it (with `envVars`), a Deployment and a Service owned by the `PR`,
//! all written by the original's field manager `manager` — gets kubetempura's CRDs (replaced, as
//! docs/migrating-from-kubetempura.md says) and applier. The environment is adopted: nothing is
//! recreated (uids unchanged), then the walkthrough's pushes and closes work.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Mutex;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use kube::{Client, ResourceExt};
use kubetempura_common::crd::{ANNOTATION_ENVIRONMENT, Origin, PR, Phase};
use kubetempura_tests::harness::controlplane::{Cluster, ControlPlane};
use kubetempura_tests::harness::install::create_namespace;
use kubetempura_tests::harness::kubeapi::{dynamic_api, read_documents};
use kubetempura_tests::harness::stack::{
    Stack, StackOptions, apply_crds, unique_namespace, workspace_file,
};
use kubetempura_tests::walkthrough::{SHA_1, play};
use serde_json::{Value, json};

/// The original's field manager (its binary is named `manager`).
const ORIGINAL_MANAGER: &str = "manager";
const APP: &str = "reviewapp-sample";
const PR_NAME: &str = "reviewapp-sample-pr123";

/// Creates `obj` in `ns` as the original's controller does (an Update by `manager`).
async fn create_as_original(client: &Client, ns: &str, obj: Value) -> DynamicObject {
    let api_version = obj["apiVersion"].as_str().unwrap().to_owned();
    let kind = obj["kind"].as_str().unwrap().to_owned();
    let api = dynamic_api(client, &api_version, &kind, Some(ns)).await;
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    let params = PostParams {
        field_manager: Some(ORIGINAL_MANAGER.to_owned()),
        ..PostParams::default()
    };
    api.create(&params, &obj)
        .await
        .unwrap_or_else(|e| panic!("create {kind}: {e}"))
}

fn owner(obj: &DynamicObject, kind: &str, api_version: &str) -> Value {
    json!([{
        "apiVersion": api_version, "kind": kind, "name": obj.name_any(),
        "uid": obj.uid().unwrap(), "controller": true, "blockOwnerDeletion": true,
    }])
}

/// The original installation: its CRDs, the sample ReviewApp, PR 123 at SHA_1 with `envVars`,
/// and what the original rendered for it. Returns the uids of the PR, Deployment and Service.
async fn install_original(client: &Client, ns: &str) -> (String, String, String) {
    apply_crds(client, &workspace_file("tests/fixtures/original-crds.yaml")).await;
    let mut app = read_documents(&workspace_file("infra/examples/reviewapp-sample.yaml"))
        .pop()
        .unwrap();
    app["metadata"]["namespace"] = ns.into();
    for resource in app["spec"]["resources"].as_array_mut().unwrap() {
        resource["metadata"]["namespace"] = ns.into();
    }
    let app = create_as_original(client, ns, app).await;
    let mut pr = json!({
        "apiVersion": "kubetempura.mercari.com/v1", "kind": "PR",
        "metadata": {"name": PR_NAME, "namespace": ns},
        "spec": {
            "parentReviewApp": APP, "prNumber": "123", "headCommitRef": SHA_1,
            "envVars": [{"name": "FEATURE_FLAG", "value": "on"}],
        },
    });
    pr["metadata"]["ownerReferences"] = owner(&app, "ReviewApp", "kubetempura.mercari.com/v1");
    let pr = create_as_original(client, ns, pr).await;
    let pr_owner = owner(&pr, "PR", "kubetempura.mercari.com/v1");
    // As the original renders: placeholders substituted, envVars set, owned by the PR, no
    // labels or annotations of kubetempura.
    let deployment = create_as_original(
        client,
        ns,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            // An annotation the current template no longer produces.
            "metadata": {"name": PR_NAME, "namespace": ns, "ownerReferences": pr_owner,
                         "annotations": {"example.com/rendered-by": "an older template"}},
            "spec": {
                "selector": {"matchLabels": {"app": PR_NAME}},
                "template": {
                    "metadata": {"labels": {"app": PR_NAME}},
                    "spec": {"containers": [{
                        "name": "sample",
                        "image": "ghcr.io/stefanprodan/podinfo:pr123-32f7bfe",
                        "ports": [{"name": "http", "containerPort": 9898, "protocol": "TCP"}],
                        "env": [{"name": "FEATURE_FLAG", "value": "on"}],
                    }]},
                },
            },
        }),
    )
    .await;
    let service = create_as_original(
        client,
        ns,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": PR_NAME, "namespace": ns, "ownerReferences": pr_owner},
            "spec": {
                "ports": [{"name": "http", "port": 9898, "protocol": "TCP", "targetPort": "http"}],
                "selector": {"app": PR_NAME},
            },
        }),
    )
    .await;
    (
        pr.uid().unwrap(),
        deployment.uid().unwrap(),
        service.uid().unwrap(),
    )
}

/// `kubectl replace -f infra/crds/crds.yaml`, as the migration document says; then the live
/// schema must be kubetempura's, with nothing of the original's left over.
async fn replace_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in read_documents(&workspace_file("infra/crds/crds.yaml")) {
        let mut ours: CustomResourceDefinition = serde_json::from_value(doc).unwrap();
        let name = ours.name_any();
        let live = api.get(&name).await.unwrap();
        ours.metadata.resource_version = live.resource_version();
        api.replace(&name, &PostParams::default(), &ours)
            .await
            .unwrap_or_else(|e| panic!("replace CRD {name}: {e}"));
        let live = api.get(&name).await.unwrap();
        assert_eq!(
            serde_json::to_value(&live.spec.versions[0].schema).unwrap(),
            serde_json::to_value(&ours.spec.versions[0].schema).unwrap(),
            "the live schema of {name} is kubetempura's"
        );
    }
}

fn env_of(deployment: &DynamicObject) -> Value {
    deployment.data["spec"]["template"]["spec"]["containers"][0]["env"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_original_installation_is_adopted_in_place_and_the_walkthrough_runs() {
    let cp = ControlPlane::start().await;
    let admin = Cluster::connect(Some(&cp.kubeconfig())).await.client;
    let ns = unique_namespace();
    create_namespace(&admin, &ns).await;
    let (pr_uid, deployment_uid, service_uid) = install_original(&admin, &ns).await;

    replace_crds(&admin).await;
    // The original's objects read under the new schema: both field sets kept.
    let original = Api::<PR>::namespaced(admin.clone(), &ns)
        .get(PR_NAME)
        .await
        .unwrap();
    assert_eq!(original.spec.number, 123);
    assert_eq!(original.spec.origin, Origin::Manual);
    assert!(original.spec.needs_recording());

    let stack = Stack::start(StackOptions {
        queue: "migration".into(),
        kubeconfig: Some(cp.kubeconfig()),
        namespace: Some(ns.clone()),
        ..StackOptions::default()
    })
    .await;

    // Adopted at start-up: the record and the objects are the original's, now in the inventory.
    let adopted = stack.wait_pr_phase(&ns, PR_NAME, Phase::Applied).await;
    assert_eq!(adopted.uid().as_deref(), Some(pr_uid.as_str()));
    assert_eq!(
        adopted.spec.repository,
        "https://github.com/mercari/not-exists"
    );
    let inventory = adopted.status.unwrap().inventory;
    let mut uids: Vec<String> = inventory.iter().filter_map(|e| e.uid.clone()).collect();
    uids.sort();
    let mut expected = vec![deployment_uid.clone(), service_uid.clone()];
    expected.sort();
    assert_eq!(uids, expected, "the inventory lists the original's objects");
    let deployments = stack.api("apps/v1", "Deployment", &ns).await;
    let deployment = deployments.get(PR_NAME).await.unwrap();
    assert_eq!(deployment.uid().as_deref(), Some(deployment_uid.as_str()));
    assert_eq!(
        deployment.annotations().get(ANNOTATION_ENVIRONMENT),
        Some(&format!("{ns}/{PR_NAME}")),
        "now marked as kubetempura's"
    );
    assert_eq!(
        env_of(&deployment),
        json!([{"name": "FEATURE_FLAG", "value": "on"}])
    );
    // The original's fields were handed over to kubetempura before its first apply, so what
    // the template no longer produces is gone, and no field is left to `manager`.
    assert!(
        !deployment
            .annotations()
            .contains_key("example.com/rendered-by"),
        "{:?}",
        deployment.annotations()
    );
    let managers: Vec<_> = deployment
        .managed_fields()
        .iter()
        .filter_map(|f| f.manager.clone())
        .collect();
    assert!(
        !managers.iter().any(|m| m == ORIGINAL_MANAGER),
        "{managers:?}"
    );

    // The walkthrough: PR 123's later events (opened again by a delivery, a push, the merge)
    // act on the adopted objects; PR 124 starts afresh.
    let seen = Mutex::new(Vec::new());
    play(&stack, &[], async |step| {
        if step < 3 {
            let d = deployments.get(PR_NAME).await.unwrap();
            assert_eq!(
                d.uid().as_deref(),
                Some(deployment_uid.as_str()),
                "step {step}: not recreated"
            );
            assert_eq!(
                env_of(&d),
                json!([{"name": "FEATURE_FLAG", "value": "on"}]),
                "step {step}: the PR's envVars are kept across pushes"
            );
            let pr = Api::<PR>::namespaced(admin.clone(), &ns)
                .get(PR_NAME)
                .await
                .unwrap();
            assert_eq!(pr.uid().as_deref(), Some(pr_uid.as_str()));
            assert_eq!(pr.spec.env_vars.len(), 1, "the person's envVars are kept");
            seen.lock().unwrap().push(step);
        }
    })
    .await;
    assert_eq!(*seen.lock().unwrap(), [0, 1, 2]);
    let tombstone = Api::<PR>::namespaced(admin.clone(), &ns)
        .get(PR_NAME)
        .await
        .unwrap();
    assert!(tombstone.spec.closed);
    assert_eq!(tombstone.uid().as_deref(), Some(pr_uid.as_str()));
    assert!(
        tombstone.owner_references().is_empty(),
        "a tombstone outlives its ReviewApp: {:?}",
        tombstone.owner_references()
    );
}
