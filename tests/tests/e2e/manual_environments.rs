//! The `PR` object drives its environment, as in the original KubeTempura: one applied by hand
//! (the original's fields or ours) is rendered from its ReviewApp at the commit it names; editing
//! `headCommitRef` rolls it; deleting it removes the environment; a webhook event takes it over.
//! In process, with the applier's PR-object worker running, against the real control plane
//! (its garbage collector included) under the RBAC `infra/` installs.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kubetempura_applier::cache::Caches;
use kubetempura_applier::metrics::Metrics;
use kubetempura_applier::pr_objects::Worker;
use kubetempura_applier::reconcile::{Ctx, Outcome, Trigger, reconcile, reconcile_object};
use kubetempura_applier::send_event::Delivery;
use kubetempura_common::crd::{Origin, PR, Phase, ReviewApp};
use kubetempura_common::event::PrEvent;
use kubetempura_common::policy::ObjectPolicy;
use kubetempura_tests::harness::controlplane::Cluster;
use kubetempura_tests::harness::install::applier_namespace;
use kubetempura_tests::harness::kubeapi::{apply_value, dynamic_api};
use kubetempura_tests::harness::stack::event_of;
use kubetempura_tests::harness::wait_for;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const REPO: &str = "https://github.com/o/manual";
const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const WAIT: Duration = Duration::from_secs(30);

struct Fixture {
    ns: String,
    /// The namespace of the applier's ServiceAccount.
    applier_ns: String,
    admin: Client,
    ctx: Arc<Ctx>,
    stop: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Fixture {
    /// A namespace of the test's own, the applier's RBAC, and the PR-object worker running
    /// with the applier's ServiceAccount token, as `kubetempura run` starts it.
    async fn new() -> Self {
        let cluster = Cluster::connect(None).await;
        let admin = cluster.client.clone();
        let (ns, client, identity) = applier_namespace(&cluster).await;
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let caches = Caches::start(client.clone(), Some(&ns), tx);
        let changes = caches.subscribe_prs();
        caches.wait_synced().await;
        let ctx = Arc::new(Ctx::new(
            client,
            caches,
            ObjectPolicy::default(),
            "kubetempura".to_owned(),
            Arc::new(Metrics::new()),
        ));
        let stop = CancellationToken::new();
        tokio::spawn(Worker::new(ctx.clone()).run(changes, stop.clone()));
        Self {
            ns,
            applier_ns: identity.namespace,
            admin,
            ctx,
            stop,
        }
    }

    /// A ReviewApp of [`REPO`] with one ConfigMap recording the commit, plus `spec`.
    async fn app(&self, name: &str, spec: Value) -> ReviewApp {
        let mut body = json!({
            "apiVersion": "kubetempura.mercari.com/v1",
            "kind": "ReviewApp",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"githubRepository": REPO, "resources": [{
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cm-{{PR_NUMBER}}"},
                "data": {"commit": "{{COMMIT_REF}}"},
            }]},
        });
        for (k, v) in spec.as_object().unwrap() {
            body["spec"][k] = v.clone();
        }
        apply_value(&self.admin, &body, Some(&self.ns))
            .await
            .unwrap();
        let app = Api::<ReviewApp>::namespaced(self.admin.clone(), &self.ns)
            .get(name)
            .await
            .unwrap();
        let key = (self.ns.clone(), name.to_owned());
        wait_for("the ReviewApp in the cache", WAIT, || async {
            self.ctx.caches.app(&key.0, &key.1).map(|_| ())
        })
        .await;
        app
    }

    /// Lets the applier manage `resources` of `group` in the test's namespace, as a platform
    /// team grants the kinds its templates use beyond infra/'s defaults.
    async fn grant(&self, group: &str, resources: &[&str]) {
        let name = format!("extra-{}", if group.is_empty() { "core" } else { group });
        for body in [
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": name, "namespace": self.ns},
                   "rules": [{"apiGroups": [group], "resources": resources,
                              "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": name, "namespace": self.ns},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                   "subjects": [{"kind": "ServiceAccount", "name": "kubetempura-applier",
                                 "namespace": self.applier_ns}]}),
        ] {
            apply_value(&self.admin, &body, Some(&self.ns))
                .await
                .unwrap();
        }
    }

    fn prs(&self) -> Api<PR> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    /// Creates a `PR` object as a person would, with `spec` as given.
    async fn create_pr(&self, name: &str, spec: Value) -> Result<PR, kube::Error> {
        let body: PR = serde_json::from_value(json!({
            "apiVersion": "kubetempura.mercari.com/v1", "kind": "PR",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        }))
        .unwrap();
        self.prs().create(&PostParams::default(), &body).await
    }

    /// Creates a `PR` object from raw JSON (bypassing the typed spec, as kubectl does).
    async fn create_raw(&self, name: &str, spec: Value) -> Result<(), kube::Error> {
        let api = dynamic_api(
            &self.admin,
            "kubetempura.mercari.com/v1",
            "PR",
            Some(&self.ns),
        )
        .await;
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kubetempura.mercari.com/v1", "kind": "PR",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        }))
        .unwrap();
        api.create(&PostParams::default(), &obj).await.map(|_| ())
    }

    /// An object of the test's namespace, if it exists.
    async fn object(
        &self,
        api_version: &str,
        kind: &str,
        name: &str,
    ) -> Option<kube::api::DynamicObject> {
        dynamic_api(&self.admin, api_version, kind, Some(&self.ns))
            .await
            .get_opt(name)
            .await
            .unwrap()
    }

    async fn config_map(&self, name: &str) -> Option<Value> {
        self.object("v1", "ConfigMap", name).await.map(|o| o.data)
    }

    /// Waits until the ConfigMap of the environment records `sha`.
    async fn wait_commit(&self, cm: &str, sha: &str) -> Value {
        wait_for(&format!("{cm} at {sha}"), WAIT, || async {
            self.config_map(cm)
                .await
                .filter(|d| d["data"]["commit"] == sha)
        })
        .await
    }

    async fn wait_phase(&self, pr: &str, phase: Phase) -> PR {
        wait_for(&format!("{pr} {phase:?}"), WAIT, || async {
            self.prs()
                .get(pr)
                .await
                .ok()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase) == Some(phase))
        })
        .await
    }
}

fn original_spec(app: &str, number: u64, sha: &str) -> Value {
    json!({"parentReviewApp": app, "prNumber": number.to_string(), "headCommitRef": sha})
}

/// A `pull_request` event of [`REPO`], `minutes` from now.
fn event(pr: u64, sha: &str, action: &str, minutes: i64) -> PrEvent {
    let mut d = Delivery::new(REPO, pr, sha, action);
    d.updated_at = chrono::Utc::now() + chrono::Duration::minutes(minutes);
    event_of(&d, &format!("{action}-{pr}-{minutes}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pr_applied_by_hand_with_the_originals_fields_creates_its_environment() {
    let f = Fixture::new().await;
    f.app("web", json!({})).await;
    let created = f
        .create_pr("web-pr5", original_spec("web", 5, SHA_A))
        .await
        .unwrap();
    f.wait_commit("cm-5", SHA_A).await;
    let pr = f.wait_phase("web-pr5", Phase::Applied).await;
    assert_eq!(pr.uid(), created.uid(), "the person's object is the record");
    assert_eq!(pr.spec.origin, Origin::Manual);
    assert_eq!(pr.spec.repository, REPO, "filled in from the ReviewApp");
    assert_eq!(pr.spec.recorded_head.as_deref(), Some(SHA_A));
    assert!(!pr.spec.last_event_at.is_empty());
    let status = pr.status.unwrap();
    assert_eq!(status.inventory.len(), 1);
    assert_eq!(status.applied_commit.as_deref(), Some(SHA_A));
    // The original's fields are kept beside ours.
    let raw = f
        .object("kubetempura.mercari.com/v1", "PR", "web-pr5")
        .await
        .unwrap();
    assert_eq!(raw.data["spec"]["parentReviewApp"], "web");
    assert_eq!(raw.data["spec"]["prNumber"], "5");
    assert_eq!(raw.data["spec"]["headCommitRef"], SHA_A);
    assert_eq!(raw.data["spec"]["number"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pr_applied_by_hand_with_our_fields_creates_its_environment_and_edits_roll_it() {
    let f = Fixture::new().await;
    f.app("web", json!({})).await;
    f.create_raw(
        "web-pr6",
        json!({"reviewApp": "web", "number": 6, "headSha": SHA_A}),
    )
    .await
    .unwrap();
    f.wait_commit("cm-6", SHA_A).await;
    let first = f.wait_phase("web-pr6", Phase::Applied).await;

    // Editing headCommitRef rolls the environment to that commit.
    f.prs()
        .patch(
            "web-pr6",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"headCommitRef": SHA_B}})),
        )
        .await
        .unwrap();
    f.wait_commit("cm-6", SHA_B).await;
    let rolled =
        wait_for("the record at B", WAIT, || async {
            f.prs().get("web-pr6").await.ok().filter(|p| {
                p.status.as_ref().and_then(|s| s.applied_commit.as_deref()) == Some(SHA_B)
            })
        })
        .await;
    assert_eq!(rolled.spec.recorded_head.as_deref(), Some(SHA_B));
    let time = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    assert!(
        time(&rolled.spec.last_event_at) > time(&first.spec.last_event_at),
        "{} after {}",
        rolled.spec.last_event_at,
        first.spec.last_event_at
    );

    // A lone headSha edit would be ignored (headCommitRef wins): the API server refuses it.
    let refused = f
        .prs()
        .patch(
            "web-pr6",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"headSha": SHA_A}})),
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("headCommitRef"), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_pr_object_removes_its_environment() {
    let f = Fixture::new().await;
    f.app("web", json!({})).await;
    f.create_pr("web-pr7", original_spec("web", 7, SHA_A))
        .await
        .unwrap();
    f.wait_commit("cm-7", SHA_A).await;
    f.wait_phase("web-pr7", Phase::Applied).await;
    f.prs()
        .delete("web-pr7", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_for("the garbage collector to delete cm-7", WAIT, || async {
        f.config_map("cm-7").await.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_webhook_event_takes_over_and_an_older_one_is_stale() {
    let f = Fixture::new().await;
    let app = f.app("web", json!({})).await;
    f.create_pr("web-pr8", original_spec("web", 8, SHA_A))
        .await
        .unwrap();
    f.wait_phase("web-pr8", Phase::Applied).await;
    let older = reconcile(
        &f.ctx,
        &app,
        &event(8, SHA_B, "synchronize", -60),
        Trigger::Event,
    )
    .await
    .unwrap();
    assert!(matches!(older, Outcome::Stale(_)), "{older:?}");
    assert_eq!(f.config_map("cm-8").await.unwrap()["data"]["commit"], SHA_A);

    let later = reconcile(
        &f.ctx,
        &app,
        &event(8, SHA_B, "synchronize", 1),
        Trigger::Event,
    )
    .await
    .unwrap();
    assert!(matches!(later, Outcome::Applied { .. }), "{later:?}");
    let pr = f.prs().get("web-pr8").await.unwrap();
    assert_eq!(pr.spec.origin, Origin::Webhook, "GitHub drives it now");
    assert_eq!(f.config_map("cm-8").await.unwrap()["data"]["commit"], SHA_B);
    let closed = reconcile(&f.ctx, &app, &event(8, SHA_B, "closed", 2), Trigger::Event)
        .await
        .unwrap();
    assert_eq!(closed, Outcome::Closed { deleted: 1 });
    assert!(f.config_map("cm-8").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_environments_bypass_the_filters_and_never_expire() {
    let f = Fixture::new().await;
    let app = f
        .app(
            "web",
            json!({"policy": {"requiredLabels": ["preview"]}, "expireAfter": "1s"}),
        )
        .await;
    f.create_pr("web-pr9", original_spec("web", 9, SHA_A))
        .await
        .unwrap();
    f.wait_commit("cm-9", SHA_A).await;
    // Neither the label filter nor expiry applies: the sweep and a re-render leave it deployed.
    kubetempura_applier::reconcile::lifecycle::sweep(&f.ctx).await;
    let pr = f.prs().get("web-pr9").await.unwrap();
    let rerender = reconcile(
        &f.ctx,
        &app,
        &kubetempura_applier::reconcile::event_from_pr(&pr).unwrap(),
        Trigger::Rerender,
    )
    .await
    .unwrap();
    assert!(matches!(rerender, Outcome::Applied { .. }), "{rerender:?}");
    let pr = f.prs().get("web-pr9").await.unwrap();
    assert_eq!(pr.status.unwrap().phase, Some(Phase::Applied));
    assert!(f.config_map("cm-9").await.is_some());

    // A webhook event without the label takes over: the ReviewApp's policy applies again.
    let taken = reconcile(
        &f.ctx,
        &app,
        &event(9, SHA_B, "synchronize", 1),
        Trigger::Event,
    )
    .await
    .unwrap();
    assert!(matches!(taken, Outcome::Skipped(_)), "{taken:?}");
    assert!(f.config_map("cm-9").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_of_a_tombstone_is_refused() {
    let f = Fixture::new().await;
    let app = f.app("web", json!({})).await;
    reconcile(&f.ctx, &app, &event(10, SHA_A, "opened", 0), Trigger::Event)
        .await
        .unwrap();
    let closed = reconcile(&f.ctx, &app, &event(10, SHA_A, "closed", 1), Trigger::Event)
        .await
        .unwrap();
    assert_eq!(closed, Outcome::Closed { deleted: 1 });
    let tombstone = f
        .prs()
        .patch(
            "web-pr10",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"headCommitRef": SHA_B}})),
        )
        .await
        .unwrap();
    assert!(tombstone.spec.needs_recording());
    // The applier acts on what its watch shows (the worker does the same in the background).
    wait_for("the edit in the cache", WAIT, || async {
        f.ctx
            .caches
            .pr(&f.ns, "web-pr10")
            .filter(|p| p.spec.needs_recording())
    })
    .await;
    let outcome = reconcile_object(&f.ctx, &app, &tombstone).await.unwrap();
    match outcome {
        Outcome::Stale(msg) => assert!(msg.contains("tombstone"), "{msg}"),
        other => panic!("expected stale, got {other:?}"),
    }
    assert!(f.config_map("cm-10").await.is_none(), "nothing deployed");
    let pr = f.prs().get("web-pr10").await.unwrap();
    assert!(pr.spec.closed);
    assert_eq!(pr.status.unwrap().phase, Some(Phase::Closed));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_refuses_missing_and_disagreeing_fields() {
    let f = Fixture::new().await;
    let cases = [
        (
            "web-pr1",
            json!({"prNumber": "1", "headCommitRef": SHA_A}),
            "parentReviewApp",
        ),
        (
            "web-pr1",
            json!({"parentReviewApp": "web", "headCommitRef": SHA_A}),
            "prNumber",
        ),
        (
            "web-pr1",
            json!({"parentReviewApp": "web", "prNumber": "1"}),
            "headCommitRef",
        ),
        (
            "web-pr1",
            json!({"parentReviewApp": "web", "prNumber": "01", "headCommitRef": SHA_A}),
            "prNumber",
        ),
        (
            "web-pr1",
            json!({"parentReviewApp": "web", "prNumber": "1", "headCommitRef": "main"}),
            "headCommitRef",
        ),
        (
            "web-pr1",
            json!({"parentReviewApp": "web", "reviewApp": "api", "prNumber": "1", "headCommitRef": SHA_A}),
            "must be equal",
        ),
        (
            "web-pr1",
            json!({"parentReviewApp": "web", "prNumber": "1", "number": 2, "headCommitRef": SHA_A}),
            "must be equal",
        ),
    ];
    for (name, spec, says) in cases {
        let e = f.create_raw(name, spec.clone()).await.unwrap_err();
        match &e {
            kube::Error::Api(s) => {
                assert_eq!(s.code, 422, "{spec}: {e}");
                assert!(s.message.contains(says), "{spec}: {}", s.message);
            }
            other => panic!("{spec}: {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pr_object_the_applier_cannot_read_is_reported_and_skipped_beside_healthy_ones() {
    let f = Fixture::new().await;
    let app = f.app("web", json!({})).await;
    // Valid for the API server, but not `<parentReviewApp>-pr<prNumber>`: the environment it
    // names would be another object.
    f.create_raw("web-7", original_spec("web", 7, SHA_A))
        .await
        .unwrap();
    f.create_pr("web-pr8", original_spec("web", 8, SHA_A))
        .await
        .unwrap();
    f.wait_commit("cm-8", SHA_A).await;
    let bad = wait_for("web-7 set aside", WAIT, || async {
        f.ctx.caches.unreadable_pr(&f.ns, "web-7")
    })
    .await;
    assert!(bad.reason.contains("web-pr7"), "{}", bad.reason);
    assert!(f.ctx.caches.is_synced());
    assert!(
        f.config_map("cm-7").await.is_none(),
        "nothing rendered for it"
    );
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(f.admin.clone(), &f.ns);
    let warning = wait_for("the Warning Event on web-7", WAIT, || async {
        events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("Unreadable")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("web-7")
            })
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(
        warning
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("web-pr7"),
        "{:?}",
        warning.note
    );
    wait_for("the gauge at 1", WAIT, || async {
        f.ctx
            .metrics
            .encode()
            .contains("kubetempura_unreadable_prs 1")
            .then_some(())
    })
    .await;
    // One that is named right but holds what the applier cannot parse: an event for its
    // environment is acknowledged as `unreadable`, and nothing is written over it.
    f.create_raw(
        "web-pr7",
        json!({"parentReviewApp": "web", "prNumber": "7", "headCommitRef": SHA_A,
               "envVars": [{"name": "X", "valueFrom": {"secretKeyRef": "not-an-object"}}]}),
    )
    .await
    .unwrap();
    wait_for("web-pr7 set aside", WAIT, || async {
        f.ctx.caches.unreadable_pr(&f.ns, "web-pr7")
    })
    .await;
    let outcome = reconcile(
        &f.ctx,
        &app,
        &event(7, SHA_B, "synchronize", 1),
        Trigger::Event,
    )
    .await
    .unwrap();
    assert!(matches!(outcome, Outcome::Unreadable(_)), "{outcome:?}");
    assert_eq!(outcome.label(), "unreadable");
    assert!(
        f.config_map("cm-7").await.is_none(),
        "nothing rendered for it"
    );
    wait_for("the gauge at 2", WAIT, || async {
        f.ctx
            .metrics
            .encode()
            .contains("kubetempura_unreadable_prs 2")
            .then_some(())
    })
    .await;
    // Still working: an event for another number deploys.
    let other = reconcile(&f.ctx, &app, &event(9, SHA_B, "opened", 0), Trigger::Event)
        .await
        .unwrap();
    assert!(matches!(other, Outcome::Applied { .. }), "{other:?}");
    // Fixed (deleted), it is no longer reported.
    f.prs()
        .delete("web-7", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("web-7 gone from the unreadable set", WAIT, || async {
        f.ctx
            .caches
            .unreadable_pr(&f.ns, "web-7")
            .is_none()
            .then_some(())
    })
    .await;
}

/// A ReviewApp with one object of each workload kind, every container named `app` with
/// `FLAG=off` and `KEEP=1`, and an init container without `env`. Only the Deployment changes
/// with the commit (Jobs' and Pods' specs are immutable).
fn workloads_app() -> Value {
    let pod_spec = json!({
        "restartPolicy": "Never",
        "initContainers": [{"name": "init", "image": "busybox:1"}],
        "containers": [{"name": "app", "image": "busybox:1",
                        "env": [{"name": "FLAG", "value": "off"}, {"name": "KEEP", "value": "1"}]}],
    });
    let mut always = pod_spec.clone();
    always["restartPolicy"] = "Always".into();
    let labels = json!({"app": "w-{{PR_NUMBER}}"});
    let template = |spec: &Value| json!({"metadata": {"labels": labels}, "spec": spec});
    json!([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w-{{PR_NUMBER}}"},
         "spec": {"selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels, "annotations": {"commit": "{{COMMIT_REF_SHORT}}"}},
             "spec": always}}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "w-{{PR_NUMBER}}"},
         "spec": {"serviceName": "w", "selector": {"matchLabels": labels}, "template": template(&always)}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "w-{{PR_NUMBER}}"},
         "spec": {"selector": {"matchLabels": labels}, "template": template(&always)}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "w-{{PR_NUMBER}}"},
         "spec": {"template": {"spec": pod_spec}}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "w-{{PR_NUMBER}}"},
         "spec": {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w-{{PR_NUMBER}}"}, "spec": pod_spec},
    ])
}

/// Where each kind of [`workloads_app`] keeps its pod spec.
const POD_SPECS: [(&str, &str, &str); 6] = [
    ("apps/v1", "Deployment", "/spec/template/spec"),
    ("apps/v1", "StatefulSet", "/spec/template/spec"),
    ("apps/v1", "DaemonSet", "/spec/template/spec"),
    ("batch/v1", "Job", "/spec/template/spec"),
    (
        "batch/v1",
        "CronJob",
        "/spec/jobTemplate/spec/template/spec",
    ),
    ("v1", "Pod", "/spec"),
];

#[tokio::test(flavor = "multi_thread")]
async fn env_vars_reach_every_workload_kind_override_append_and_survive_a_push() {
    let f = Fixture::new().await;
    f.grant("apps", &["statefulsets", "daemonsets"]).await;
    f.grant("", &["pods"]).await;
    let app = f.app("web", json!({"resources": workloads_app()})).await;
    f.create_raw(
        "web-pr11",
        json!({
            "parentReviewApp": "web", "prNumber": "11", "headCommitRef": SHA_A,
            "envVars": [
                {"name": "FLAG", "value": "on-{{PR_NUMBER}}"},
                {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ],
        }),
    )
    .await
    .unwrap();
    let pr = wait_for("web-pr11 decided", WAIT, || async {
        f.prs()
            .get("web-pr11")
            .await
            .ok()
            .filter(|p| p.status.as_ref().is_some_and(|s| s.phase.is_some()))
    })
    .await;
    let status = pr.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Applied), "{:?}", status.message);
    let expected_app = json!([
        {"name": "FLAG", "value": "on-11"},
        {"name": "KEEP", "value": "1"},
        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]);
    let expected_init = json!([
        {"name": "FLAG", "value": "on-11"},
        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]);
    let check = async |label: &str| {
        for (api_version, kind, path) in POD_SPECS {
            let obj = f.object(api_version, kind, "w-11").await.unwrap();
            let pod = serde_json::to_value(&obj.data).unwrap();
            let pod = pod.pointer(path).unwrap();
            let env = |c: &str| pod[c][0]["env"].clone();
            assert_eq!(
                env("containers"),
                expected_app,
                "{label}: {kind} containers"
            );
            assert_eq!(
                env("initContainers"),
                expected_init,
                "{label}: {kind} initContainers"
            );
        }
    };
    check("manual").await;

    // A push from GitHub takes the environment over: the person's envVars stay.
    let pushed = reconcile(
        &f.ctx,
        &app,
        &event(11, SHA_B, "synchronize", 1),
        Trigger::Event,
    )
    .await
    .unwrap();
    assert!(matches!(pushed, Outcome::Applied { .. }), "{pushed:?}");
    let pr = f.prs().get("web-pr11").await.unwrap();
    assert_eq!(pr.spec.env_vars.len(), 2, "kept on the record");
    let deployment = f.object("apps/v1", "Deployment", "w-11").await.unwrap();
    assert_eq!(
        deployment.data["spec"]["template"]["metadata"]["annotations"]["commit"],
        "bbbbbbb"
    );
    check("after the push").await;

    // Editing envVars renders again: a changed value rolls, a removed variable leaves the
    // workloads (server-side apply merges `env` by name), the template's own stay.
    f.prs()
        .patch(
            "web-pr11",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"envVars": [{"name": "FLAG", "value": "edited"}]}})),
        )
        .await
        .unwrap();
    wait_for("the Deployment with the edited envVars", WAIT, || async {
        let d = f.object("apps/v1", "Deployment", "w-11").await?;
        let env = d.data["spec"]["template"]["spec"]["containers"][0]["env"].clone();
        (env == json!([{"name": "FLAG", "value": "edited"}, {"name": "KEEP", "value": "1"}]))
            .then_some(())
    })
    .await;
    // The pod templates of Jobs and bare Pods are immutable: the API server refuses the new
    // env there (recorded on the status, as for any refused object), and nothing loops.
    let pr = f.wait_phase("web-pr11", Phase::Failed).await;
    let message = pr
        .status
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap_or_default();
    for refused in ["Job.batch w-11", "Pod w-11", "immutable"] {
        assert!(message.contains(refused), "{refused}: {message}");
    }
    assert!(!message.contains("Deployment"), "{message}");
    assert!(!pr.env_vars_changed());
}
