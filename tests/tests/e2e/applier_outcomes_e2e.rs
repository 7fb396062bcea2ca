//! The applier's permanent outcomes across real processes: an invalid template or refused kind
//! is recorded on the `PR` and `ReviewApp` status and as an Event and the message is
//! acknowledged; a pull request from a fork is not deployed by default and says why; a
//! repository without a ReviewApp is acknowledged and counted.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::time::Duration;

use kube::Api;
use kubetempura_applier::send_event::Delivery;
use kubetempura_common::crd::{Phase, ReviewApp};
use kubetempura_tests::harness::kubeapi::apply_file;
use kubetempura_tests::harness::stack::{Stack, StackOptions};
use kubetempura_tests::harness::wait_for;

const SHA: &str = "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7";

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

async fn stack(queue: &str) -> Stack {
    Stack::start(StackOptions {
        queue: queue.into(),
        function: false,
        ..StackOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_kind_is_recorded_on_both_statuses_and_as_an_event_and_the_message_is_acknowledged()
 {
    let stack = stack("outcome-refused").await;
    let dir = tempfile::tempdir().unwrap();
    let ra = write(
        &dir,
        "ra.yaml",
        "apiVersion: kubetempura.mercari.com/v1\nkind: ReviewApp\nmetadata: {name: risky, namespace: default}\nspec:\n  githubRepository: https://github.com/o/risky\n  resources:\n  - {apiVersion: v1, kind: ConfigMap, metadata: {name: 'cm-{{PR_NUMBER}}'}, data: {a: b}}\n  - {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: 'pwn-{{PR_NUMBER}}'}, roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}, subjects: [{kind: User, name: mallory}]}\n",
    );
    apply_file(&stack.client, &ra, Some(&stack.ns)).await;
    stack
        .enqueue(
            &Delivery::new("https://github.com/o/risky", 7, SHA, "opened"),
            "refused-1",
        )
        .await;

    let pr = stack
        .wait_pr_phase(&stack.ns, "risky-pr7", Phase::Failed)
        .await;
    let message = pr.status.unwrap().message.unwrap();
    assert!(
        message.contains("ClusterRoleBinding.rbac.authorization.k8s.io grants privileges"),
        "{message}"
    );
    let apps: Api<ReviewApp> = Api::namespaced(stack.client.clone(), &stack.ns);
    let app = wait_for(
        "the ReviewApp's TemplateValid=False",
        Duration::from_secs(30),
        || {
            let apps = apps.clone();
            async move {
                let app = apps.get("risky").await.ok()?;
                let valid = app
                    .status
                    .as_ref()?
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "TemplateValid")?
                    .clone();
                (valid.status == "False").then_some(app)
            }
        },
    )
    .await;
    assert!(
        app.status.unwrap().conditions[0]
            .message
            .contains("grants privileges")
    );
    // Nothing of the environment was created, not even the harmless ConfigMap.
    assert!(
        stack
            .names("v1", "ConfigMap", &stack.ns)
            .await
            .iter()
            .all(|n| n != "cm-7")
    );
    // A Warning Event names the PR object.
    let events = stack.api("events.k8s.io/v1", "Event", &stack.ns).await;
    let warning = wait_for("the InvalidTemplate Event", Duration::from_secs(30), || {
        let events = events.clone();
        async move {
            let list = events.list(&Default::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.data["reason"] == "InvalidTemplate" && e.data["regarding"]["name"] == "risky-pr7"
            })
        }
    })
    .await;
    assert_eq!(warning.data["type"], "Warning");
    // Retrying cannot help: the message was acknowledged, not retried.
    stack.wait_queue_drained().await;
    assert_eq!(
        stack
            .applier()
            .metric("kubetempura_messages_acknowledged_total{outcome=\"failed\"}")
            .await,
        1.0
    );
    assert_eq!(
        stack
            .applier()
            .metric("kubetempura_messages_failed_total{outcome=\"transient\"}")
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fork_prs_are_skipped_by_default_with_the_reason_and_no_reviewapp_is_counted() {
    let stack = Stack::start(StackOptions {
        queue: "outcome-fork".into(),
        function: false,
        manifests: vec![kubetempura_tests::harness::stack::workspace_file(
            "infra/examples/reviewapp-sample.yaml",
        )],
        ..StackOptions::default()
    })
    .await;
    let mut fork = Delivery::new("https://github.com/mercari/not-exists", 9, SHA, "opened");
    fork.fork = true;
    fork.author = "mallory".into();
    stack.enqueue(&fork, "fork-1").await;
    let pr = stack
        .wait_pr_phase(&stack.ns, "reviewapp-sample-pr9", Phase::Skipped)
        .await;
    let message = pr.status.unwrap().message.unwrap();
    assert!(
        message.contains("fork") && message.contains("allowForks"),
        "{message}"
    );
    assert!(
        stack
            .names("apps/v1", "Deployment", &stack.ns)
            .await
            .is_empty()
    );

    stack
        .enqueue(
            &Delivery::new("https://github.com/someone/else", 1, SHA, "opened"),
            "other-repo-1",
        )
        .await;
    stack.wait_queue_drained().await;
    wait_for(
        "the no_reviewapp count",
        Duration::from_secs(30),
        || async {
            (stack
                .applier()
                .metric("kubetempura_messages_acknowledged_total{outcome=\"no_reviewapp\"}")
                .await
                == 1.0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        stack
            .applier()
            .metric("kubetempura_messages_acknowledged_total{outcome=\"skipped\"}")
            .await,
        1.0
    );
}

/// The Istio example under infra/base's RBAC, which has no VirtualService rule: the API server
/// answers 403 for the VirtualService. That is permanent: recorded, acknowledged, never retried
/// towards the dead-letter queue; the refused object is not in the inventory, so the close
/// deletes what was created and leaves its tombstone.
#[tokio::test(flavor = "multi_thread")]
async fn a_kind_rbac_does_not_grant_fails_the_open_for_good_and_the_close_still_completes() {
    let stack = Stack::start(StackOptions {
        queue: "outcome-forbidden".into(),
        function: false,
        manifests: vec![
            kubetempura_tests::harness::stack::workspace_file(
                "tests/fixtures/virtualservice-crd.yaml",
            ),
            kubetempura_tests::harness::stack::workspace_file(
                "infra/examples/reviewapp-istio.yaml",
            ),
        ],
        ..StackOptions::default()
    })
    .await;
    let repo = "https://github.com/mercari/not-exists";
    let name = "reviewapp-sample-pr70";
    let opened = Delivery::new(repo, 70, SHA, "opened");
    stack.enqueue(&opened, "forbidden-open").await;
    let pr = stack.wait_pr_phase(&stack.ns, name, Phase::Failed).await;
    let status = pr.status.unwrap();
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("forbidden") && message.contains("403"),
        "{message}"
    );
    let kinds: Vec<&str> = status.inventory.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["Deployment", "Service"],
        "only what the API accepted"
    );
    stack
        .wait_object(
            "the Deployment",
            "apps/v1",
            "Deployment",
            &stack.ns,
            name,
            |o| o.is_some(),
        )
        .await;

    let mut closed = Delivery::new(repo, 70, SHA, "closed");
    closed.updated_at = opened.updated_at + chrono::Duration::minutes(1);
    stack.enqueue(&closed, "forbidden-close").await;
    let tombstone = stack.wait_pr_phase(&stack.ns, name, Phase::Closed).await;
    assert!(tombstone.status.unwrap().inventory.is_empty());
    stack
        .wait_gone("apps/v1", "Deployment", &stack.ns, name)
        .await;
    stack.wait_gone("v1", "Service", &stack.ns, name).await;
    stack.wait_queue_drained().await;
    assert_eq!(
        stack.sqs.depth(&stack.queues.dlq_url).await,
        (0, 0),
        "nothing dead-lettered"
    );
    assert_eq!(
        stack
            .applier()
            .metric("kubetempura_messages_failed_total{outcome=\"transient\"}")
            .await,
        0.0,
        "a 403 is never retried"
    );
}

/// A ReviewApp name may be 253 characters, a label value only 63: the API server refuses the
/// long label, so kubetempura labels objects with a bounded form and keeps the full name in an
/// annotation.
#[tokio::test(flavor = "multi_thread")]
async fn a_reviewapp_name_longer_than_a_label_value_still_deploys() {
    let stack = stack("outcome-long-name").await;
    let long = "reviewapp-of-the-payments-team-for-the-checkout-service-in-europe-west";
    assert!(long.len() > 63);
    let text = std::fs::read_to_string(kubetempura_tests::harness::stack::workspace_file(
        "infra/examples/reviewapp-sample.yaml",
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ra = write(
        &dir,
        "ra.yaml",
        &text.replacen("name: reviewapp-sample\n", &format!("name: {long}\n"), 1),
    );
    apply_file(&stack.client, &ra, Some(&stack.ns)).await;
    stack
        .enqueue(
            &Delivery::new("https://github.com/mercari/not-exists", 71, SHA, "opened"),
            "long-name-1",
        )
        .await;
    let pr = stack
        .wait_pr_phase(&stack.ns, &format!("{long}-pr71"), Phase::Applied)
        .await;
    let label = pr.metadata.labels.unwrap()["kubetempura.mercari.com/reviewapp"].clone();
    assert!(
        label.len() <= 63 && label.starts_with("reviewapp-of-the-payments"),
        "{label}"
    );
    let dep = stack
        .api("apps/v1", "Deployment", &stack.ns)
        .await
        .get("reviewapp-sample-pr71")
        .await
        .unwrap();
    assert_eq!(
        dep.metadata.labels.as_ref().unwrap()["kubetempura.mercari.com/reviewapp"],
        label
    );
    assert_eq!(
        dep.metadata.annotations.as_ref().unwrap()["kubetempura.mercari.com/reviewapp"],
        long
    );
}

/// A template copied from `kubectl get -o yaml` carries fields of a live object
/// (resourceVersion, uid, managedFields, status …) that the API server refuses in an apply:
/// they are removed at render and named in a warning on the ReviewApp's status.
#[tokio::test(flavor = "multi_thread")]
async fn a_template_copied_from_a_live_object_is_cleaned_and_deploys_with_a_warning() {
    let stack = stack("outcome-live-copy").await;
    let dir = tempfile::tempdir().unwrap();
    let ra = write(
        &dir,
        "ra.yaml",
        "apiVersion: kubetempura.mercari.com/v1\nkind: ReviewApp\nmetadata: {name: copied}\nspec:\n  githubRepository: https://github.com/o/copied\n  resources:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: 'copied-{{PR_NUMBER}}'\n      resourceVersion: '4711'\n      uid: 0b6e1f9c-1111-2222-3333-444455556666\n      creationTimestamp: '2026-01-01T00:00:00Z'\n      managedFields: [{manager: kubectl, operation: Update, apiVersion: v1}]\n    data: {a: b}\n    status: {}\n",
    );
    apply_file(&stack.client, &ra, Some(&stack.ns)).await;
    stack
        .enqueue(
            &Delivery::new("https://github.com/o/copied", 8, SHA, "opened"),
            "copied-1",
        )
        .await;
    stack
        .wait_pr_phase(&stack.ns, "copied-pr8", Phase::Applied)
        .await;
    let cm = stack
        .api("v1", "ConfigMap", &stack.ns)
        .await
        .get("copied-8")
        .await
        .unwrap();
    assert_ne!(
        cm.metadata.uid.as_deref(),
        Some("0b6e1f9c-1111-2222-3333-444455556666")
    );
    let apps: Api<ReviewApp> = Api::namespaced(stack.client.clone(), &stack.ns);
    let warnings = wait_for(
        "the ReviewApp's warning",
        Duration::from_secs(30),
        || async {
            let app = apps.get("copied").await.ok()?;
            let warnings = app.status?.warnings;
            (!warnings.is_empty()).then_some(warnings)
        },
    )
    .await;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("resourceVersion") && w.contains("managedFields")),
        "{warnings:?}"
    );
}

/// A ReviewApp author must not get a token of a ServiceAccount (the applier's, say) by
/// templating a `kubernetes.io/service-account-token` Secret: refused by the object policy,
/// recorded, nothing created.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_account_token_secret_in_a_template_is_refused() {
    let stack = stack("outcome-sa-token").await;
    let dir = tempfile::tempdir().unwrap();
    let ra = write(
        &dir,
        "ra.yaml",
        "apiVersion: kubetempura.mercari.com/v1\nkind: ReviewApp\nmetadata: {name: grabby}\nspec:\n  githubRepository: https://github.com/o/grabby\n  resources:\n  - {apiVersion: v1, kind: ConfigMap, metadata: {name: 'cm-{{PR_NUMBER}}'}, data: {a: b}}\n  - apiVersion: v1\n    kind: Secret\n    metadata:\n      name: 'token-{{PR_NUMBER}}'\n      annotations: {kubernetes.io/service-account.name: default}\n    type: kubernetes.io/service-account-token\n",
    );
    apply_file(&stack.client, &ra, Some(&stack.ns)).await;
    stack
        .enqueue(
            &Delivery::new("https://github.com/o/grabby", 9, SHA, "opened"),
            "grabby-1",
        )
        .await;
    let pr = stack
        .wait_pr_phase(&stack.ns, "grabby-pr9", Phase::Failed)
        .await;
    let message = pr.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("service-account-token"), "{message}");
    stack.wait_queue_drained().await;
    let secrets = stack.names("v1", "Secret", &stack.ns).await;
    assert!(
        !secrets.iter().any(|s| s == "token-9"),
        "no token Secret created: {secrets:?}"
    );
}
