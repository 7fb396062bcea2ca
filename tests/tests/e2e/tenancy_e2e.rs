//! Tenancy and ownership on the real control plane, under infra/'s RBAC: ReviewApps in the
//! applier's own namespace or in a denied namespace are refused (recorded on their status and as
//! a Warning Event, the message acknowledged, nothing applied, resyncs skip them); a pod
//! template running as the applier's ServiceAccount is refused by the object policy; a
//! cluster-scoped object gets no owner reference (the garbage collector would report it and never
//! collect it) and is deleted by the close.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use std::time::Duration;

use guarantees_support::*;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kubetempura_common::crd::{Condition, PR, Phase, ReviewApp};
use kubetempura_tests::harness::applier::{ApplierProcess, stop_gracefully};
use kubetempura_tests::harness::install::SERVICE_ACCOUNT;
use kubetempura_tests::harness::kubeapi::{apply_file, apply_value};
use kubetempura_tests::harness::stack::{Stack, StackOptions, unique_namespace, workspace_file};
use kubetempura_tests::harness::wait_for;
use serde_json::json;

/// Waits until the ReviewApp's status carries the condition `type_`; returns it.
async fn wait_condition(stack: &Stack, ns: &str, app: &str, type_: &str) -> Condition {
    let apps: Api<ReviewApp> = Api::namespaced(stack.client.clone(), ns);
    wait_for(
        &format!("condition {type_} on ReviewApp {ns}/{app}"),
        Duration::from_secs(60),
        || {
            let apps = apps.clone();
            async move {
                let app = apps.get(app).await.ok()?;
                app.status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == type_)
            }
        },
    )
    .await
}

/// Waits for an events.k8s.io Event of `reason` about the object `name` in `ns`.
async fn wait_event(stack: &Stack, ns: &str, reason: &str, name: &str) -> serde_json::Value {
    let events = stack.api("events.k8s.io/v1", "Event", ns).await;
    wait_for(
        &format!("a {reason} Event about {name} in {ns}"),
        Duration::from_secs(30),
        || {
            let events = events.clone();
            async move {
                let list = events.list(&ListParams::default()).await.ok()?;
                list.items
                    .into_iter()
                    .find(|e| e.data["reason"] == reason && e.data["regarding"]["name"] == name)
                    .map(|e| e.data)
            }
        },
    )
    .await
}

/// Creates the ReviewApp `name` for the sample repository in the test's namespace.
async fn create_review_app(stack: &Stack, name: &str, resources: serde_json::Value) {
    let app = json!({
        "apiVersion": "kubetempura.mercari.com/v1",
        "kind": "ReviewApp",
        "metadata": {"name": name},
        "spec": {"githubRepository": REPO, "resources": resources}
    });
    apply_value(&stack.client, &app, Some(&stack.ns))
        .await
        .unwrap();
}

/// Asserts the refusal recorded on the ReviewApp `reviewapp-sample` in `ns`.
async fn assert_refused(stack: &Stack, ns: &str, why: &str) {
    let accepted = wait_condition(stack, ns, "reviewapp-sample", "Accepted").await;
    assert_eq!(accepted.status, "False", "{accepted:?}");
    assert_eq!(accepted.reason, "NamespaceDenied", "{accepted:?}");
    assert!(
        accepted.message.contains(why) && accepted.message.contains("nothing is applied"),
        "{accepted:?}"
    );
    let event = wait_event(stack, ns, "NamespaceDenied", "reviewapp-sample").await;
    assert_eq!(event["type"], "Warning", "{event}");
    assert_eq!(event["regarding"]["kind"], "ReviewApp", "{event}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reviewapp_in_the_applier_s_own_namespace_is_refused_recorded_and_acknowledged() {
    // The applier runs in `<ns>-system` (its POD_NAMESPACE, as the downward API gives it) and,
    // here, watches that very namespace.
    let ns = unique_namespace();
    let own = format!("{ns}-system");
    let stack = Stack::start(StackOptions {
        namespace: Some(ns.clone()),
        manifests: Vec::new(),
        ..options("tenancy-own", &["--namespace", own.as_str()])
    })
    .await;
    apply_file(
        &stack.client,
        &workspace_file("infra/examples/reviewapp-sample.yaml"),
        Some(&own),
    )
    .await;
    stack
        .enqueue(&delivery(1, &sha(1), "opened", 0), "own-1")
        .await;

    wait_metric(&stack, &acked("failed"), 1.0).await;
    stack.wait_queue_drained().await;
    assert_refused(&stack, &own, "the applier's own namespace").await;
    // Nothing applied: no environment record, no object.
    let prs: Api<PR> = Api::namespaced(stack.client.clone(), &own);
    assert!(
        prs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        !stack
            .names("apps/v1", "Deployment", &own)
            .await
            .contains(&env_name(1))
    );
    assert_eq!(stack.applier().metric(&acked("applied")).await, 0.0);
    assert_eq!(stack.applier().metric(&failed("transient")).await, 0.0);
    assert_eq!(dlq_depth(&stack).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reviewapp_in_a_denied_namespace_is_refused_and_resyncs_leave_its_environments_alone() {
    let mut stack = Stack::start(StackOptions {
        // A long poll of the stopped applier may still be pending at the queue and take the
        // next message with it: it is visible again after this, not after 30 s.
        visibility_timeout_secs: 5,
        ..options("tenancy-denied", &[])
    })
    .await;
    let pr = open_applied(&stack, 1).await;
    assert_eq!(pr.spec.head_sha, sha(1));
    stop_gracefully(stack.applier.as_mut().unwrap(), Duration::from_secs(30));
    // Drift a resync would heal: the Deployment is gone.
    stack
        .api("apps/v1", "Deployment", &stack.ns)
        .await
        .delete(&env_name(1), &DeleteParams::background())
        .await
        .unwrap();
    stack
        .wait_gone("apps/v1", "Deployment", &stack.ns, &env_name(1))
        .await;

    // The operator denies the namespace (through the variable, as infra/'s ConfigMap would).
    let mut env = stack.applier_env();
    env.push((
        "KUBETEMPURA_DENY_NAMESPACES".into(),
        format!("kube-system,{}", stack.ns),
    ));
    stack.applier = Some(
        ApplierProcess::start(
            &stack.queues.url,
            &stack.applier_kubeconfig,
            &env,
            &stack.applier_args(),
        )
        .await,
    );
    // The refusal is recorded after the start-up resync (one task, in that order).
    assert_refused(&stack, &stack.ns, "deny list").await;
    assert!(
        get(&stack, "apps/v1", "Deployment", &env_name(1))
            .await
            .is_none(),
        "the start-up resync re-created the Deployment of a denied namespace"
    );

    // An event of the denied ReviewApp's repository: refused, acknowledged, nothing applied.
    stack
        .enqueue(&delivery(1, &sha(2), "synchronize", 1), "denied-2")
        .await;
    wait_metric(&stack, &acked("failed"), 1.0).await;
    stack.wait_queue_drained().await;
    let pr = get_pr(&stack, 1).await.unwrap();
    assert_eq!(pr.spec.head_sha, sha(1), "the PR record was not touched");
    assert!(
        get(&stack, "apps/v1", "Deployment", &env_name(1))
            .await
            .is_none()
    );
    assert_eq!(stack.applier().metric(&acked("applied")).await, 0.0);
    assert_eq!(dlq_depth(&stack).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_template_running_as_the_applier_s_service_account_is_refused() {
    let stack = Stack::start(StackOptions {
        manifests: Vec::new(),
        ..options("tenancy-sa", &[])
    })
    .await;
    create_review_app(
        &stack,
        "sneaky",
        json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-{{PR_NUMBER}}"}, "data": {"a": "b"}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sneaky-{{PR_NUMBER}}"},
             "spec": {"selector": {"matchLabels": {"app": "sneaky"}},
                      "template": {"metadata": {"labels": {"app": "sneaky"}},
                                   "spec": {"serviceAccountName": SERVICE_ACCOUNT,
                                            "containers": [{"name": "c", "image": "busybox"}]}}}}
        ]),
    )
    .await;
    stack
        .enqueue(&delivery(3, &sha(1), "opened", 0), "sneaky-1")
        .await;

    let pr = stack
        .wait_pr_phase(&stack.ns, "sneaky-pr3", Phase::Failed)
        .await;
    let message = pr.status.unwrap().message.unwrap_or_default();
    assert!(
        message.contains("spec.template.spec.serviceAccountName")
            && message.contains("the applier's own identity"),
        "{message}"
    );
    let valid = wait_condition(&stack, &stack.ns, "sneaky", "TemplateValid").await;
    assert_eq!(valid.status, "False", "{valid:?}");
    let event = wait_event(&stack, &stack.ns, "InvalidTemplate", "sneaky-pr3").await;
    assert_eq!(event["type"], "Warning", "{event}");
    stack.wait_queue_drained().await;
    assert!(
        !stack
            .names("apps/v1", "Deployment", &stack.ns)
            .await
            .contains(&"sneaky-3".to_owned())
    );
    assert_eq!(stack.applier().metric(&acked("failed")).await, 1.0);
    assert_eq!(dlq_depth(&stack).await, 0);
}

/// A stack whose applier may create PriorityClasses (allowed kind, extra RBAC), not started
/// yet, with the ReviewApp `app`: a ConfigMap and a PriorityClass per pull request.
async fn cluster_scoped_stack(queue: &str, app: &str) -> Stack {
    let stack = Stack::start(StackOptions {
        applier: false,
        manifests: Vec::new(),
        ..options(queue, &["--allow-kind", "PriorityClass.scheduling.k8s.io"])
    })
    .await;
    grant_priority_classes(&stack).await;
    create_review_app(
        &stack,
        app,
        json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-{{PR_NUMBER}}"}, "data": {"a": "b"}},
            {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
             "metadata": {"name": "{{NAMESPACE}}-pr{{PR_NUMBER}}"}, "value": 1000,
             "description": "review environment of PR {{PR_NUMBER}}"}
        ]),
    )
    .await;
    stack
}

/// Grants the test's applier identity `verbs` on PriorityClasses (infra/'s base RBAC does not),
/// and waits until the API server's authorizer says so.
async fn grant_priority_classes(stack: &Stack) {
    let name = format!("kubetempura-test-priorityclasses-{}", stack.ns);
    let user = format!(
        "system:serviceaccount:{}:{SERVICE_ACCOUNT}",
        stack.identity.namespace
    );
    for obj in [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [{"apiGroups": ["scheduling.k8s.io"], "resources": ["priorityclasses"],
                       "verbs": ["get", "create", "patch", "delete"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT,
                          "namespace": stack.identity.namespace}]}),
    ] {
        apply_value(&stack.client, &obj, None).await.unwrap();
    }
    let reviews: Api<SubjectAccessReview> = Api::all(stack.client.clone());
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {"user": user, "resourceAttributes":
            {"group": "scheduling.k8s.io", "resource": "priorityclasses", "verb": "delete"}}
    }))
    .unwrap();
    wait_for(
        "the PriorityClass grant to take effect",
        Duration::from_secs(30),
        || {
            let reviews = reviews.clone();
            let review = review.clone();
            async move {
                let answer = reviews.create(&PostParams::default(), &review).await.ok()?;
                answer.status?.allowed.then_some(())
            }
        },
    )
    .await;
}

/// The garbage collector's OwnerRefInvalidNamespace Events about a cluster-scoped object (they
/// land in the namespace `default`).
async fn invalid_owner_events(stack: &Stack, name: &str) -> Vec<CoreEvent> {
    let events: Api<CoreEvent> = Api::namespaced(stack.client.clone(), "default");
    events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("OwnerRefInvalidNamespace"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_scoped_object_has_no_owner_reference_the_garbage_collector_accepts_it_and_the_close_deletes_it()
 {
    let mut stack = cluster_scoped_stack("tenancy-cluster", "clustered").await;
    stack.start_applier().await;
    stack
        .enqueue(&delivery(4, &sha(1), "opened", 0), "clustered-1")
        .await;
    let pr = stack
        .wait_pr_phase(&stack.ns, "clustered-pr4", Phase::Applied)
        .await;
    let class = format!("{}-pr4", stack.ns);
    assert!(has_finalizer(&pr), "{:?}", pr.finalizers());
    let inventory = pr.status.clone().unwrap().inventory;
    assert!(
        inventory
            .iter()
            .any(|e| e.kind == "PriorityClass" && e.name == class && e.namespace.is_none()),
        "{inventory:?}"
    );

    // Only the namespaced object is owned by the PR record.
    let priority_classes = stack
        .api("scheduling.k8s.io/v1", "PriorityClass", &stack.ns)
        .await;
    let applied = priority_classes.get(&class).await.unwrap();
    assert!(
        applied
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(Vec::is_empty),
        "a cluster-scoped object with a namespaced owner: {:?}",
        applied.metadata.owner_references
    );
    assert_eq!(
        applied.metadata.labels.as_ref().unwrap()["kubetempura.mercari.com/pr"],
        "4"
    );
    let cm = get(&stack, "v1", "ConfigMap", "cm-4").await.unwrap();
    assert_eq!(
        cm.metadata.owner_references.unwrap()[0].uid,
        pr.metadata.uid.clone().unwrap()
    );

    // The garbage collector handles graph changes in order, one at a time. A witness made after
    // the applier's object, with an owner in a namespace (the `kubernetes` Service, which the
    // collector has watched since the control plane started), is reported at once: once it is,
    // the collector has seen the applier's object, and must not have reported it.
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(stack.client.clone(), "default");
    let owner = services.get("kubernetes").await.unwrap();
    let witness = format!("{}-witness", stack.ns);
    apply_value(
        &stack.client,
        &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": witness, "ownerReferences": [{
                "apiVersion": "v1", "kind": "Service",
                "name": "kubernetes", "uid": owner.metadata.uid.unwrap()}]},
            "value": 1001}),
        None,
    )
    .await
    .unwrap();
    wait_for(
        "the garbage collector to report the witness's namespaced owner",
        Duration::from_secs(120),
        || async { (!invalid_owner_events(&stack, &witness).await.is_empty()).then_some(()) },
    )
    .await;
    let reported = invalid_owner_events(&stack, &class).await;
    assert!(
        reported.is_empty(),
        "the garbage collector reported {class}: {reported:?}"
    );
    priority_classes
        .delete(&witness, &DeleteParams::background())
        .await
        .unwrap();

    // The close deletes it explicitly (no garbage collection can).
    stack
        .enqueue(&delivery(4, &sha(1), "closed", 1), "clustered-2")
        .await;
    let tombstone = stack
        .wait_pr_phase(&stack.ns, "clustered-pr4", Phase::Closed)
        .await;
    stack
        .wait_gone("scheduling.k8s.io/v1", "PriorityClass", &stack.ns, &class)
        .await;
    stack.wait_gone("v1", "ConfigMap", &stack.ns, "cm-4").await;
    // Nothing is left for a deletion of the tombstone to wait for.
    assert!(!has_finalizer(&tombstone), "{:?}", tombstone.finalizers());
    assert_eq!(dlq_depth(&stack).await, 0);
}

fn has_finalizer(pr: &PR) -> bool {
    pr.finalizers()
        .iter()
        .any(|f| f == kubetempura_common::crd::FINALIZER_CLUSTER_SCOPED)
}

/// `kubectl delete pr` of an environment that holds a cluster-scoped object: the PR object's
/// finalizer holds the deletion until the applier has deleted what the inventory lists. A push
/// delivered while the object is still being deleted (here a second finalizer, a person's,
/// holds it) fails transiently and is retried; it starts a new environment once the object is
/// gone.
#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_pr_object_deletes_its_cluster_scoped_objects() {
    const HOLD: &str = "kubetempura.test/hold";
    let mut stack = cluster_scoped_stack("tenancy-pr-delete", "dropped").await;
    stack.start_applier().await;
    stack
        .enqueue(&delivery(6, &sha(1), "opened", 0), "dropped-1")
        .await;
    let pr = stack
        .wait_pr_phase(&stack.ns, "dropped-pr6", Phase::Applied)
        .await;
    assert!(has_finalizer(&pr), "{:?}", pr.finalizers());
    let class = format!("{}-pr6", stack.ns);
    let prs: Api<PR> = Api::namespaced(stack.client.clone(), &stack.ns);
    let uid = pr.metadata.uid.clone().unwrap();
    let mut finalizers = pr.finalizers().to_vec();
    finalizers.push(HOLD.to_owned());
    let hold = |finalizers: Vec<String>| {
        kube::api::Patch::Merge(json!({"metadata": {"finalizers": finalizers}}))
    };
    prs.patch("dropped-pr6", &Default::default(), &hold(finalizers))
        .await
        .unwrap();

    prs.delete("dropped-pr6", &DeleteParams::background())
        .await
        .unwrap();
    stack
        .wait_gone("scheduling.k8s.io/v1", "PriorityClass", &stack.ns, &class)
        .await;
    stack.wait_gone("v1", "ConfigMap", &stack.ns, "cm-6").await;
    let terminating = wait_for(
        "the applier to remove its finalizer",
        Duration::from_secs(60),
        || async {
            let pr = prs.get("dropped-pr6").await.unwrap();
            (!has_finalizer(&pr)).then_some(pr)
        },
    )
    .await;
    assert_eq!(terminating.finalizers(), [HOLD]);
    assert!(terminating.metadata.deletion_timestamp.is_some());

    // A push now finds the object still being deleted: retried, not applied to it.
    let transient = stack.applier().metric(&failed("transient")).await;
    stack
        .enqueue(&delivery(6, &sha(2), "synchronize", 10), "dropped-2")
        .await;
    wait_metric(&stack, &failed("transient"), transient + 1.0).await;
    assert!(
        get(&stack, "scheduling.k8s.io/v1", "PriorityClass", &class)
            .await
            .is_none()
    );

    // The person lets go: the object goes, and the retried push starts a new environment.
    prs.patch("dropped-pr6", &Default::default(), &hold(Vec::new()))
        .await
        .unwrap();
    let again = wait_for(
        "a new PR object applied at the push's commit",
        Duration::from_secs(90),
        || async {
            prs.get_opt("dropped-pr6").await.unwrap().filter(|p| {
                p.metadata.uid.as_deref() != Some(uid.as_str())
                    && p.status
                        .as_ref()
                        .is_some_and(|s| s.phase == Some(Phase::Applied))
            })
        },
    )
    .await;
    assert_eq!(again.spec.head_sha, sha(2));
    assert!(has_finalizer(&again), "{:?}", again.finalizers());
    assert!(
        get(&stack, "scheduling.k8s.io/v1", "PriorityClass", &class)
            .await
            .is_some()
    );
    stack.wait_queue_drained().await;
    assert_eq!(dlq_depth(&stack).await, 0);
}

/// A `PR` object holding the finalizer that a person made unreadable (its ReviewApp fields no
/// longer match its name) and then deletes: the deletion does not wait for a fix of the spec.
/// The applier reads the inventory on its own, deletes what it lists and lets the object go.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_pr_object_being_deleted_is_let_go_with_its_objects() {
    let mut stack = cluster_scoped_stack("tenancy-pr-unreadable", "broken").await;
    stack.start_applier().await;
    stack
        .enqueue(&delivery(7, &sha(1), "opened", 0), "broken-1")
        .await;
    let pr = stack
        .wait_pr_phase(&stack.ns, "broken-pr7", Phase::Applied)
        .await;
    assert!(has_finalizer(&pr), "{:?}", pr.finalizers());
    let class = format!("{}-pr7", stack.ns);
    let prs: Api<PR> = Api::namespaced(stack.client.clone(), &stack.ns);
    prs.patch(
        "broken-pr7",
        &Default::default(),
        &kube::api::Patch::Merge(
            json!({"spec": {"reviewApp": "other", "parentReviewApp": "other"}}),
        ),
    )
    .await
    .unwrap();
    wait_event(&stack, &stack.ns, "Unreadable", "broken-pr7").await;

    prs.delete("broken-pr7", &DeleteParams::background())
        .await
        .unwrap();
    stack
        .wait_gone("scheduling.k8s.io/v1", "PriorityClass", &stack.ns, &class)
        .await;
    stack.wait_gone("v1", "ConfigMap", &stack.ns, "cm-7").await;
    wait_for(
        "the PR object to be gone",
        Duration::from_secs(60),
        || async {
            prs.get_opt("broken-pr7")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert_eq!(dlq_depth(&stack).await, 0);
}

/// No garbage collector reaches a cluster-scoped object (it cannot have a namespaced owner):
/// deleting its ReviewApp waits on the applier's finalizer until the environments are closed.
#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_reviewapp_closes_its_environments_and_their_cluster_scoped_objects() {
    let mut stack = cluster_scoped_stack("tenancy-finalizer", "finalized").await;
    stack.start_applier().await;
    stack
        .enqueue(&delivery(5, &sha(1), "opened", 0), "finalized-1")
        .await;
    stack
        .wait_pr_phase(&stack.ns, "finalized-pr5", Phase::Applied)
        .await;
    let apps: Api<ReviewApp> = Api::namespaced(stack.client.clone(), &stack.ns);
    let app = apps.get("finalized").await.unwrap();
    assert!(
        app.finalizers()
            .iter()
            .any(|f| f == kubetempura_common::crd::FINALIZER_CLUSTER_SCOPED),
        "{:?}",
        app.finalizers()
    );

    apps.delete("finalized", &DeleteParams::background())
        .await
        .unwrap();
    let class = format!("{}-pr5", stack.ns);
    stack
        .wait_gone("scheduling.k8s.io/v1", "PriorityClass", &stack.ns, &class)
        .await;
    stack.wait_gone("v1", "ConfigMap", &stack.ns, "cm-5").await;
    wait_for(
        "the ReviewApp to be gone",
        Duration::from_secs(60),
        || async {
            apps.get_opt("finalized")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    // The environment was closed, not just collected: its tombstone stays.
    let tombstone = stack
        .wait_pr_phase(&stack.ns, "finalized-pr5", Phase::Closed)
        .await;
    let message = tombstone.status.unwrap().message.unwrap();
    assert!(message.contains("ReviewApp is being deleted"), "{message}");
    assert_eq!(dlq_depth(&stack).await, 0);
}
