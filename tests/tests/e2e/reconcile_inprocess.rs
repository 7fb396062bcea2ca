//! `reconcile` in process, against the real control plane under the RBAC `infra/` installs:
//! the returned outcome and the objects, for each path of an environment's life. (What crosses
//! processes — the queue, retries, two replicas — is in the `guarantees_*` suites.)

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;

use chrono::{DateTime, Duration as Minutes, TimeZone, Utc};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use kubetempura_applier::cache::Caches;
use kubetempura_applier::metrics::Metrics;
use kubetempura_applier::reconcile::{Ctx, Outcome, Trigger, reconcile};
use kubetempura_applier::send_event::Delivery;
use kubetempura_common::crd::{ANNOTATION_ENVIRONMENT, PR, Phase, ReviewApp};
use kubetempura_common::event::PrEvent;
use kubetempura_common::policy::ObjectPolicy;
use kubetempura_tests::harness::controlplane::Cluster;
use kubetempura_tests::harness::install::applier_namespace;
use kubetempura_tests::harness::kubeapi::{apply_value, dynamic_api};
use kubetempura_tests::harness::stack::event_of;
use serde_json::{Value, json};

const REPO: &str = "https://github.com/o/inprocess";

/// A namespace of the test's own, the applier's RBAC installed, and a `Ctx` built as
/// `kubetempura run` builds it, with the applier's ServiceAccount token.
struct Fixture {
    ns: String,
    admin: Client,
    ctx: Ctx,
}

impl Fixture {
    async fn new() -> Self {
        let cluster = Cluster::connect(None).await;
        let admin = cluster.client.clone();
        let (ns, client, _) = applier_namespace(&cluster).await;
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let caches = Caches::start(client.clone(), Some(&ns), tx);
        caches.wait_synced().await;
        let ctx = Ctx::new(
            client,
            caches,
            ObjectPolicy::default(),
            "kubetempura".to_owned(),
            Arc::new(Metrics::new()),
        );
        Self { ns, admin, ctx }
    }

    /// Creates a ReviewApp of [`REPO`] with `resources`; returns it as the API server has it.
    async fn app(&self, name: &str, resources: Value) -> ReviewApp {
        self.app_with_url(name, resources, None).await
    }

    /// [`Fixture::app`] with an `environmentURL`.
    async fn app_with_url(&self, name: &str, resources: Value, url: Option<&str>) -> ReviewApp {
        let mut body = json!({
            "apiVersion": "kubetempura.mercari.com/v1",
            "kind": "ReviewApp",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"githubRepository": REPO, "resources": resources},
        });
        if let Some(url) = url {
            body["spec"]["environmentURL"] = url.into();
        }
        apply_value(&self.admin, &body, Some(&self.ns))
            .await
            .unwrap();
        Api::<ReviewApp>::namespaced(self.admin.clone(), &self.ns)
            .get(name)
            .await
            .unwrap()
    }

    async fn get(
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

    async fn run(&self, app: &ReviewApp, event: &PrEvent, trigger: Trigger) -> Outcome {
        reconcile(&self.ctx, app, event, trigger)
            .await
            .unwrap_or_else(|e| panic!("reconcile failed: {e}"))
    }

    async fn record(&self, name: &str) -> PR {
        Api::<PR>::namespaced(self.admin.clone(), &self.ns)
            .get(name)
            .await
            .unwrap()
    }
}

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap() + Minutes::minutes(minute)
}

/// A `pull_request` event of [`REPO`] at `minute`.
fn event(pr: u64, sha: char, action: &str, minute: i64) -> PrEvent {
    let mut d = Delivery::new(REPO, pr, &sha.to_string().repeat(40), action);
    d.updated_at = at(minute);
    event_of(&d, &format!("{action}-{pr}-{minute}"))
}

fn failed(outcome: Outcome) -> String {
    match outcome {
        Outcome::Failed(message) => message,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn config_map(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

#[tokio::test(flavor = "multi_thread")]
async fn an_environment_is_applied_updated_pruned_and_closed() {
    let f = Fixture::new().await;
    let app = f
        .app(
            "life",
            json!([
                config_map("a-{{PR_NUMBER}}", json!({"sha": "{{COMMIT_REF_SHORT}}"})),
                config_map("b-{{PR_NUMBER}}", json!({})),
            ]),
        )
        .await;
    let opened = f
        .run(&app, &event(1, 'a', "opened", 0), Trigger::Event)
        .await;
    assert_eq!(
        opened,
        Outcome::Applied {
            applied: 2,
            pruned: 0
        }
    );
    let a = f.get("v1", "ConfigMap", "a-1").await.unwrap();
    assert_eq!(a.data["data"]["sha"], "aaaaaaa");
    assert_eq!(
        a.annotations().get(ANNOTATION_ENVIRONMENT),
        Some(&format!("{}/life-pr1", f.ns))
    );
    let record = f.record("life-pr1").await;
    let inventory = record.status.unwrap().inventory;
    assert_eq!(inventory.len(), 2);
    assert_eq!(inventory[0].uid, a.uid(), "the inventory records the uid");

    // A push after the template dropped `b`: updated, and `b` pruned.
    let app = f
        .app(
            "life",
            json!([config_map(
                "a-{{PR_NUMBER}}",
                json!({"sha": "{{COMMIT_REF_SHORT}}"})
            )]),
        )
        .await;
    let pushed = f
        .run(&app, &event(1, 'b', "synchronize", 1), Trigger::Event)
        .await;
    assert_eq!(
        pushed,
        Outcome::Applied {
            applied: 1,
            pruned: 1
        }
    );
    assert_eq!(
        f.get("v1", "ConfigMap", "a-1").await.unwrap().data["data"]["sha"],
        "bbbbbbb"
    );
    assert!(f.get("v1", "ConfigMap", "b-1").await.is_none());

    // An older event is stale; the close deletes; a late event after it is stale too.
    let late = f
        .run(&app, &event(1, 'a', "synchronize", 0), Trigger::Event)
        .await;
    assert!(matches!(late, Outcome::Stale(_)));
    let closed = f
        .run(&app, &event(1, 'b', "closed", 2), Trigger::Event)
        .await;
    assert_eq!(closed, Outcome::Closed { deleted: 1 });
    assert!(f.get("v1", "ConfigMap", "a-1").await.is_none());
    let record = f.record("life-pr1").await;
    assert!(record.spec.closed);
    assert_eq!(record.status.unwrap().phase, Some(Phase::Closed));
    let again = f
        .run(&app, &event(1, 'b', "synchronize", 2), Trigger::Rerender)
        .await;
    assert!(matches!(again, Outcome::Stale(_)));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_of_someone_else_fails_the_environment_and_is_left_as_it_was() {
    let f = Fixture::new().await;
    dynamic_api(&f.admin, "v1", "ConfigMap", Some(&f.ns))
        .await
        .patch(
            "shared",
            &PatchParams::apply("production"),
            &Patch::Apply(config_map("shared", json!({"env": "production"}))),
        )
        .await
        .unwrap();
    let app = f
        .app(
            "taker",
            json!([config_map("shared", json!({"env": "review"}))]),
        )
        .await;
    let outcome = f
        .run(&app, &event(2, 'a', "opened", 0), Trigger::Event)
        .await;
    let message = failed(outcome);
    assert!(
        message.contains("not created by this environment"),
        "{message}"
    );
    let shared = f.get("v1", "ConfigMap", "shared").await.unwrap();
    assert_eq!(shared.data["data"]["env"], "production");
    assert!(shared.annotations().get(ANNOTATION_ENVIRONMENT).is_none());
    let closed = f
        .run(&app, &event(2, 'a', "closed", 1), Trigger::Event)
        .await;
    assert_eq!(closed, Outcome::Closed { deleted: 0 });
    assert!(f.get("v1", "ConfigMap", "shared").await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_of_the_api_server_is_permanent_and_keeps_its_status_code() {
    let f = Fixture::new().await;
    // infra's base RBAC grants nothing on PersistentVolumeClaims.
    let app = f
        .app(
            "denied",
            json!([{
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data-{{PR_NUMBER}}"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }]),
        )
        .await;
    let outcome = f
        .run(&app, &event(3, 'a', "opened", 0), Trigger::Event)
        .await;
    let message = failed(outcome);
    assert!(message.contains("403"), "{message}");
    let status = f.record("denied-pr3").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed));
    assert!(status.inventory.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_environment_url_is_rendered_onto_the_record_and_an_invalid_one_fails_the_render() {
    let f = Fixture::new().await;
    let resources = json!([config_map("web-{{PR_NUMBER}}", json!({}))]);
    let url = "https://pr{{PR_NUMBER}}.review.example.com";
    let app = f.app_with_url("linked", resources.clone(), Some(url)).await;
    assert_eq!(
        f.run(&app, &event(4, 'a', "opened", 0), Trigger::Event)
            .await,
        Outcome::Applied {
            applied: 1,
            pruned: 0
        }
    );
    let status = f.record("linked-pr4").await.status.unwrap();
    assert_eq!(
        status.environment_url.as_deref(),
        Some("https://pr4.review.example.com"),
        "the API server kept the field (it is in the CRD schema)"
    );

    let app = f
        .app_with_url(
            "linked",
            resources,
            Some("pr{{PR_NUMBER}}.review.example.com"),
        )
        .await;
    let message = failed(
        f.run(&app, &event(4, 'b', "synchronize", 1), Trigger::Event)
            .await,
    );
    assert!(message.contains("environmentURL"), "{message}");
    let status = f.record("linked-pr4").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed));
}
