//! Template changes: an object a ReviewApp stops producing is pruned from every live
//! environment (and nothing the applier did not create is touched); an edited ReviewApp is
//! re-rendered into every open environment without a webhook; a deleted ReviewApp takes its
//! environments with it (owner references).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use std::time::Duration;

use guarantees_support::*;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kubetempura_common::crd::{PR, Phase, ReviewApp};
use kubetempura_tests::harness::stack::{Stack, StackOptions, workspace_file};
use kubetempura_tests::harness::wait_for;
use serde_json::{Value, json};

fn sample_app() -> Value {
    let text =
        std::fs::read_to_string(workspace_file("infra/examples/reviewapp-sample.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// Applies the ReviewApp as `kubectl apply --server-side` would; returns its new generation.
async fn apply_app(stack: &Stack, app: &Value) -> i64 {
    let mut app = app.clone();
    app["metadata"]["namespace"] = Value::from(stack.ns.clone());
    let api: Api<ReviewApp> = Api::namespaced(stack.client.clone(), &stack.ns);
    let out = api
        .patch(
            "reviewapp-sample",
            &PatchParams::apply("kubetempura-tests").force(),
            &Patch::Apply(&app),
        )
        .await
        .unwrap();
    out.metadata.generation.unwrap()
}

async fn create(stack: &Stack, api_version: &str, kind: &str, body: Value) -> DynamicObject {
    let name = body["metadata"]["name"].as_str().unwrap().to_owned();
    stack
        .api(api_version, kind, &stack.ns)
        .await
        .patch(
            &name,
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap()
}

async fn open(stack: &Stack, pr: u64) {
    stack
        .enqueue(&delivery(pr, &sha(1), "opened", 0), &format!("open-{pr}"))
        .await;
}

async fn wait_applied_generation(stack: &Stack, pr: u64, generation: i64) -> PR {
    wait_for(
        &format!("PR {pr} rendered from ReviewApp generation {generation}"),
        Duration::from_secs(60),
        || async {
            get_pr(stack, pr).await.filter(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.phase == Some(Phase::Applied) && s.applied_generation == Some(generation)
                })
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_a_template_stops_producing_are_pruned_and_nothing_else_is_touched() {
    let stack = Stack::start(options("prune", &[])).await;
    let labels = json!({
        "app.kubernetes.io/managed-by": "kubetempura",
        "kubetempura.mercari.com/reviewapp": "reviewapp-sample",
        "kubetempura.mercari.com/pr": "40",
    });
    // Objects the applier did not create, beside the environments: the same name as an
    // environment's objects, a similar name, even the applier's labels.
    let foreign = [
        create(&stack, "v1", "ConfigMap", json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": env_name(40)}, "data": {"k": "v"}}))
        .await,
        create(&stack, "v1", "ConfigMap", json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("{}-config", env_name(40)), "labels": labels}, "data": {"k": "v"}}))
        .await,
        create(&stack, "v1", "Service", json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("{}-db", env_name(40)), "labels": labels},
            "spec": {"ports": [{"port": 5432}]}}))
        .await,
    ];
    open(&stack, 40).await;
    open(&stack, 41).await;
    for pr in [40, 41] {
        wait_applied_generation(&stack, pr, 1).await;
        assert!(get(&stack, "v1", "Service", &env_name(pr)).await.is_some());
    }

    // The ReviewApp no longer has the Service.
    let mut app = sample_app();
    app["spec"]["resources"].as_array_mut().unwrap().remove(1);
    let generation = apply_app(&stack, &app).await;
    assert_eq!(generation, 2);
    for pr in [40, 41] {
        stack
            .wait_gone("v1", "Service", &stack.ns, &env_name(pr))
            .await;
        let status = wait_applied_generation(&stack, pr, 2).await.status.unwrap();
        assert_eq!(status.inventory.len(), 1);
        assert_eq!(status.inventory[0].kind, "Deployment");
        assert!(
            get(&stack, "apps/v1", "Deployment", &env_name(pr))
                .await
                .is_some()
        );
    }

    // Closing PR 40 deletes its environment, still nothing else.
    stack
        .enqueue(&delivery(40, &sha(1), "closed", 1), "close-40")
        .await;
    stack
        .wait_gone("apps/v1", "Deployment", &stack.ns, &env_name(40))
        .await;
    stack.wait_queue_drained().await;
    for before in &foreign {
        let kind = &before.types.as_ref().unwrap().kind;
        let api_version = &before.types.as_ref().unwrap().api_version;
        let name = before.metadata.name.as_deref().unwrap();
        let after = get(&stack, api_version, kind, name)
            .await
            .unwrap_or_else(|| panic!("{kind} {name} was deleted"));
        assert_eq!(versions(&after), versions(before), "{kind} {name} changed");
    }
    assert_eq!(
        stack.names("v1", "Service", &stack.ns).await,
        [format!("{}-db", env_name(40))]
    );
    assert_eq!(
        stack
            .applier()
            .metric("kubetempura_objects_deleted_total")
            .await,
        3.0,
        "two pruned Services and PR 40's Deployment"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_a_reviewapp_rerenders_every_open_environment_without_a_webhook() {
    let stack = Stack::start(options("rollout", &[])).await;
    for pr in [42, 43, 44] {
        open(&stack, pr).await;
        wait_applied_generation(&stack, pr, 1).await;
    }
    stack
        .enqueue(&delivery(44, &sha(1), "closed", 1), "close-44")
        .await;
    stack
        .wait_pr_phase(&stack.ns, &env_name(44), Phase::Closed)
        .await;
    stack.wait_queue_drained().await;
    let received = stack.applier().metric(RECEIVED).await;

    let mut app = sample_app();
    app["spec"]["resources"][0]["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("ghcr.io/stefanprodan/podinfo:edited-pr{{PR_NUMBER}}-{{COMMIT_REF_SHORT}}");
    let generation = apply_app(&stack, &app).await;
    assert_eq!(generation, 2);
    for pr in [42, 43] {
        stack
            .wait_deployment_image(
                &stack.ns,
                &env_name(pr),
                &format!(
                    "ghcr.io/stefanprodan/podinfo:edited-pr{pr}-{}",
                    &sha(1)[..7]
                ),
            )
            .await;
        wait_applied_generation(&stack, pr, 2).await;
    }
    // No webhook was involved, and the closed environment stayed closed.
    assert_eq!(stack.applier().metric(RECEIVED).await, received);
    assert!(
        get(&stack, "apps/v1", "Deployment", &env_name(44))
            .await
            .is_none()
    );
    let closed = get_pr(&stack, 44).await.unwrap();
    assert_eq!(closed.status.unwrap().phase, Some(Phase::Closed));
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_reviewapp_removes_its_environments() {
    let stack = Stack::start(options("remove-app", &[])).await;
    for pr in [45, 46] {
        open(&stack, pr).await;
        wait_applied_generation(&stack, pr, 1).await;
    }
    let api: Api<ReviewApp> = Api::namespaced(stack.client.clone(), &stack.ns);
    api.delete("reviewapp-sample", &DeleteParams::default())
        .await
        .unwrap();
    for pr in [45, 46] {
        stack
            .wait_gone("apps/v1", "Deployment", &stack.ns, &env_name(pr))
            .await;
        stack
            .wait_gone("v1", "Service", &stack.ns, &env_name(pr))
            .await;
        // The garbage collector deletes the PR objects. In a control plane younger than its
        // 30-second discovery resync it may not watch the PR kind yet: allow for that.
        wait_for(
            &format!("PR object {pr} to be deleted"),
            Duration::from_secs(120),
            || async { get_pr(&stack, pr).await.is_none().then_some(()) },
        )
        .await;
    }
    // A later event for a removed ReviewApp's repository creates nothing.
    stack
        .enqueue(&delivery(45, &sha(2), "synchronize", 1), "after-removal")
        .await;
    wait_metric(&stack, &acked("no_reviewapp"), 1.0).await;
    stack.wait_queue_drained().await;
    assert!(
        stack
            .names("apps/v1", "Deployment", &stack.ns)
            .await
            .is_empty()
    );
    assert!(get_pr(&stack, 45).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn moving_a_template_to_another_version_of_its_kind_keeps_the_object() {
    let stack = Stack::start(StackOptions {
        manifests: vec![
            workspace_file("tests/fixtures/virtualservice-crd.yaml"),
            workspace_file("infra/examples/reviewapp-istio.yaml"),
        ],
        install: workspace_file("tests/fixtures/install-mesh"),
        ..options("version-move", &[])
    })
    .await;
    open(&stack, 46).await;
    wait_applied_generation(&stack, 46, 1).await;
    let before = get(
        &stack,
        "networking.istio.io/v1beta1",
        "VirtualService",
        &env_name(46),
    )
    .await
    .expect("the VirtualService applied at v1beta1");

    // The platform team moves the template to v1, the same kind of the same group.
    let text =
        std::fs::read_to_string(workspace_file("infra/examples/reviewapp-istio.yaml")).unwrap();
    let mut app: Value = serde_yaml::from_str(&text).unwrap();
    let vs = app["spec"]["resources"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["kind"] == "VirtualService")
        .expect("the example has a VirtualService template");
    vs["apiVersion"] = json!("networking.istio.io/v1");
    let generation = apply_app(&stack, &app).await;
    let pr = wait_applied_generation(&stack, 46, generation).await;

    let after = get(
        &stack,
        "networking.istio.io/v1",
        "VirtualService",
        &env_name(46),
    )
    .await
    .expect("the VirtualService survives the move to v1");
    assert_eq!(
        after.metadata.uid, before.metadata.uid,
        "the same object, never recreated"
    );
    let inventory = pr.status.unwrap().inventory;
    let vs_entries: Vec<&str> = inventory
        .iter()
        .filter(|e| e.kind == "VirtualService")
        .map(|e| e.api_version.as_str())
        .collect();
    assert_eq!(vs_entries, ["networking.istio.io/v1"], "{inventory:?}");
    assert_eq!(
        stack
            .applier()
            .metric("kubetempura_objects_deleted_total")
            .await,
        0.0,
        "nothing pruned"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn re_pointing_a_reviewapp_to_another_repository_retires_the_old_repositorys_environments() {
    const OTHER: &str = "https://github.com/mercari/other-repository";
    let stack = Stack::start(options("repoint", &[])).await;
    open(&stack, 47).await;
    wait_applied_generation(&stack, 47, 1).await;

    let mut app = sample_app();
    app["spec"]["githubRepository"] = Value::from(OTHER);
    apply_app(&stack, &app).await;
    let tombstone = stack
        .wait_pr_phase(&stack.ns, &env_name(47), Phase::Closed)
        .await;
    let message = tombstone.status.unwrap().message.unwrap();
    assert!(
        message.contains(&format!("now follows {OTHER}")),
        "{message}"
    );
    stack
        .wait_gone("apps/v1", "Deployment", &stack.ns, &env_name(47))
        .await;
    stack
        .wait_gone("v1", "Service", &stack.ns, &env_name(47))
        .await;

    // The old repository's events do not bring it back…
    stack
        .enqueue(&delivery(47, &sha(2), "synchronize", 2), "old-repo-push")
        .await;
    wait_metric(&stack, &acked("no_reviewapp"), 1.0).await;
    assert!(
        get(&stack, "apps/v1", "Deployment", &env_name(47))
            .await
            .is_none()
    );
    // …and the same number in the followed repository starts afresh.
    let mut d = delivery(47, &sha(3), "opened", 3);
    d.repository = OTHER.to_owned();
    stack.enqueue(&d, "new-repo-open").await;
    stack
        .wait_deployment_image(&stack.ns, &env_name(47), &image(47, &sha(3)))
        .await;
    let record = stack
        .wait_pr_phase(&stack.ns, &env_name(47), Phase::Applied)
        .await;
    assert_eq!(record.spec.repository, OTHER);
    stack.wait_queue_drained().await;
    assert_eq!(dlq_depth(&stack).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reviewapp_deleted_and_recreated_keeps_the_protection_of_its_tombstones() {
    let stack = Stack::start(options("recreate-app", &[])).await;
    open(&stack, 48).await;
    wait_applied_generation(&stack, 48, 1).await;
    stack
        .enqueue(&delivery(48, &sha(1), "closed", 1), "close-48")
        .await;
    stack
        .wait_pr_phase(&stack.ns, &env_name(48), Phase::Closed)
        .await;
    open(&stack, 49).await;
    wait_applied_generation(&stack, 49, 1).await;

    let api: Api<ReviewApp> = Api::namespaced(stack.client.clone(), &stack.ns);
    api.delete("reviewapp-sample", &DeleteParams::default())
        .await
        .unwrap();
    // The live environment goes with its ReviewApp (allowing for the GC's discovery resync).
    wait_for(
        "PR object 49 to be deleted",
        Duration::from_secs(120),
        || async { get_pr(&stack, 49).await.is_none().then_some(()) },
    )
    .await;
    stack
        .wait_gone("apps/v1", "Deployment", &stack.ns, &env_name(49))
        .await;

    // Re-created under the same name, a late redelivery of the closed pull request's
    // `opened` finds the tombstone and is stale.
    apply_app(&stack, &sample_app()).await;
    stack
        .enqueue(&delivery(48, &sha(1), "opened", 0), "late-open-48")
        .await;
    wait_metric(&stack, &acked("stale"), 1.0).await;
    stack.wait_queue_drained().await;
    assert!(
        get(&stack, "apps/v1", "Deployment", &env_name(48))
            .await
            .is_none()
    );
    let tombstone = get_pr(&stack, 48)
        .await
        .expect("the tombstone outlived its ReviewApp");
    assert!(tombstone.spec.closed);
    assert!(
        tombstone
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
}
