//! Conformance of the kube-standin API server with the real Kubernetes API, as seen by the
//! unmodified kube-rs client: discovery, server-side apply, watches, garbage collection,
//! finalizers, the status subresource, optimistic concurrency, selectors, Status errors and
//! fault injection. Every test starts its own stand-in on a free loopback port.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::client::Body;
use kube::discovery::Scope;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Discovery, ResourceExt};
use kubetempura_tests::standin::{FaultRule, Options, StandIn};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const DEADLINE: Duration = Duration::from_secs(15);
const FIELD_MANAGER: &str = "conformance";

async fn start() -> (StandIn, Client) {
    start_with(Options::default()).await
}

async fn start_with(options: Options) -> (StandIn, Client) {
    let standin = StandIn::start_with("127.0.0.1:0".parse().expect("addr"), options)
        .await
        .expect("stand-in starts");
    let client = Client::try_from(standin.kube_config().expect("config")).expect("client");
    let probe = client.clone();
    eventually("the stand-in answers /version", move || {
        let c = probe.clone();
        async move { c.apiserver_version().await.is_ok() }
    })
    .await;
    (standin, client)
}

/// Poll `check` until it holds or the deadline passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dynamic(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("a valid object")
}

fn api_error(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn crd_docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read CRD file");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

const PROJECT_CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/crds/crds.yaml");

async fn apply_crds(client: &Client, docs: &[Value]) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in docs {
        let crd: CustomResourceDefinition = serde_json::from_value(doc.clone()).expect("CRD");
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply CRD");
    }
}

fn widget_crd(scope: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": scope,
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}}
            }]
        }
    })
}

fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    )
}

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"}
    }))
    .expect("configmap")
}

fn owned_cm(name: &str, owner: &ConfigMap) -> ConfigMap {
    owned(
        name,
        "v1",
        "ConfigMap",
        &owner.name_any(),
        &owner.uid().expect("owner uid"),
    )
}

fn owned(
    name: &str,
    api_version: &str,
    kind: &str,
    owner_name: &str,
    owner_uid: &str,
) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": [{
            "apiVersion": api_version, "kind": kind, "name": owner_name, "uid": owner_uid,
            "blockOwnerDeletion": true
        }]},
    }))
    .expect("configmap")
}

async fn gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    matches!(api.get_opt(name).await, Ok(None))
}

/// A raw request through the kube client (for bodies kube would never send).
async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, http::HeaderMap, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(Body::from(body.to_vec()))
        .expect("request");
    let resp = client.send(req).await.expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect_bytes().await.expect("body");
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, v)
}

#[tokio::test]
async fn discovery_serves_builtin_kinds_and_registers_and_unregisters_crds() {
    let (_standin, client) = start().await;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    for (g, v, k) in [
        ("", "v1", "ConfigMap"),
        ("", "v1", "Namespace"),
        ("", "v1", "Event"),
        ("events.k8s.io", "v1", "Event"),
        ("apps", "v1", "Deployment"),
        ("batch", "v1", "CronJob"),
        ("networking.k8s.io", "v1", "Ingress"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
    ] {
        assert!(
            discovery
                .resolve_gvk(&GroupVersionKind::gvk(g, v, k))
                .is_some(),
            "{g}/{v} {k} discovered"
        );
    }
    let (_, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Namespace"))
        .expect("namespaces");
    assert_eq!(caps.scope, Scope::Cluster);

    apply_crds(&client, &crd_docs(PROJECT_CRDS)).await;
    apply_crds(&client, &[widget_crd("Cluster")]).await;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk(
            "kubetempura.mercari.com",
            "v1",
            "ReviewApp",
        ))
        .expect("ReviewApp registered by its CRD");
    assert_eq!(ar.plural, "reviewapps");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(
        caps.subresources
            .iter()
            .any(|(sub, _)| sub.plural == "status")
    );
    assert!(
        discovery
            .resolve_gvk(&GroupVersionKind::gvk(
                "kubetempura.mercari.com",
                "v1",
                "PR"
            ))
            .is_some()
    );
    let (_, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .expect("Widget");
    assert_eq!(caps.scope, Scope::Cluster);

    // The CRD is Established, as clients waiting for it expect.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("widgets.example.com").await.expect("crd");
    let established = crd
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);

    // Objects of the kind exist while the CRD does; deleting the CRD unregisters the kind.
    let widgets: Api<DynamicObject> = Api::all_with(client.clone(), &widget_resource());
    widgets
        .create(&PostParams::default(), &dynamic(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})))
        .await
        .expect("widget");
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .expect("delete CRD");
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    assert!(
        discovery
            .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
            .is_none()
    );
    let err = api_error(widgets.get("w").await.expect_err("kind is gone"));
    assert_eq!(err.code, 404);
}

#[tokio::test]
async fn server_side_apply_through_discovery_creates_and_reapply_removes_omitted_fields() {
    let (_standin, client) = start().await;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let (ar, _) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
        .expect("deployments");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let mut obj = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "extra": "yes"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "app", "image": "nginx:1", "args": ["a", "b"]},
                {"name": "sidecar", "image": "envoy:1"}
            ]}}
        }
    });
    let pp = PatchParams::apply("x").force();
    let created = api
        .patch("web", &pp, &Patch::Apply(dynamic(obj.clone())))
        .await
        .expect("apply creates");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.uid().is_some());
    let mf = created.metadata.managed_fields.clone().unwrap_or_default();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("x"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    assert_eq!(mf[0].fields_type.as_deref(), Some("FieldsV1"));
    let fields = serde_json::to_value(&mf[0].fields_v1).expect("fieldsV1");
    assert!(fields.pointer("/f:spec/f:replicas").is_some());
    assert!(
        fields
            .pointer("/f:spec/f:template/f:spec/f:containers/k:{\"name\":\"app\"}/f:image")
            .is_some()
    );

    // Idempotent: the same apply changes nothing.
    let again = api
        .patch("web", &pp, &Patch::Apply(dynamic(obj.clone())))
        .await
        .expect("reapply");
    assert_eq!(again.resource_version(), created.resource_version());

    // Re-apply with fields removed: they disappear.
    obj["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("replicas");
    obj["metadata"]["labels"]
        .as_object_mut()
        .expect("labels")
        .remove("extra");
    obj["spec"]["template"]["spec"]["containers"] = json!([{"name": "app", "image": "nginx:2"}]);
    let updated = api
        .patch("web", &pp, &Patch::Apply(dynamic(obj)))
        .await
        .expect("reapply");
    assert!(
        updated.data.pointer("/spec/replicas").is_none(),
        "replicas removed"
    );
    assert_eq!(updated.labels().get("extra"), None);
    assert_eq!(
        updated.data["spec"]["template"]["spec"]["containers"],
        json!([{"name": "app", "image": "nginx:2"}])
    );
    assert_eq!(updated.metadata.generation, Some(2));

    // The typed API agrees.
    let typed: Api<Deployment> = Api::default_namespaced(client.clone());
    let d = typed.get("web").await.expect("typed get");
    assert_eq!(d.spec.replicas, None);
}

#[tokio::test]
async fn apply_conflicts_between_managers_are_409_unless_forced() {
    let (_standin, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"key": "one", "mine": "a"}});
    cms.patch(
        "shared",
        &PatchParams::apply("alice"),
        &Patch::Apply(&first),
    )
    .await
    .expect("alice applies");

    // Same value: shared ownership, no conflict.
    let same = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"key": "one"}});
    cms.patch("shared", &PatchParams::apply("carol"), &Patch::Apply(&same))
        .await
        .expect("same value is fine");

    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"key": "two"}});
    let err = api_error(
        cms.patch("shared", &PatchParams::apply("bob"), &Patch::Apply(&other))
            .await
            .expect_err("conflict"),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    let causes = err.details.expect("details").causes;
    assert!(
        causes
            .iter()
            .any(|c| c.field == ".data.key" && c.message.contains("alice")),
        "{causes:?}"
    );
    assert!(
        causes.iter().any(|c| c.message.contains("carol")),
        "{causes:?}"
    );
    assert_eq!(
        cms.get("shared").await.expect("get").data.expect("data")["key"],
        "one"
    );

    let forced = cms
        .patch(
            "shared",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&other),
        )
        .await
        .expect("forced");
    assert_eq!(forced.data.clone().expect("data")["key"], "two");
    let owners = |m: &str| {
        forced
            .metadata
            .managed_fields
            .clone()
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.manager.as_deref() == Some(m))
            .map(|e| serde_json::to_value(e.fields_v1).expect("fields"))
    };
    assert!(
        owners("bob")
            .and_then(|f| f.pointer("/f:data/f:key").cloned())
            .is_some()
    );
    assert!(
        owners("alice")
            .and_then(|f| f.pointer("/f:data/f:key").cloned())
            .is_none()
    );
    assert!(
        owners("alice")
            .and_then(|f| f.pointer("/f:data/f:mine").cloned())
            .is_some()
    );
    assert!(
        owners("carol").is_none(),
        "carol owned only the moved field"
    );

    // Apply without a field manager is rejected like a real server does.
    let (code, _, body) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/shared",
        "application/apply-patch+yaml",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"shared"}}"#,
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (422, Some("Invalid")));
}

#[tokio::test]
async fn watcher_and_reflector_over_a_crd_kind_see_add_modify_delete() {
    let (_standin, client) = start().await;
    apply_crds(&client, &[widget_crd("Namespaced")]).await;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &widget_resource());

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watched = api.clone();
    let watch_task = tokio::spawn(async move {
        let mut stream = watcher(watched, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            if tx.send(ev.map_err(|e| e.to_string())).is_err() {
                return;
            }
        }
    });
    let writer = reflector::store::Writer::<DynamicObject>::new(widget_resource());
    let reader = writer.as_reader();
    let reflected = api.clone();
    let reflector_task = tokio::spawn(async move {
        reflector(
            writer,
            watcher(reflected, watcher::Config::default().streaming_lists()),
        )
        .applied_objects()
        .for_each(|_| async {})
        .await;
    });

    let mut next = async |what: &str, pred: &dyn Fn(&watcher::Event<DynamicObject>) -> bool| {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = tokio::time::timeout(left, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("watcher running")
                .expect("no watcher error");
            if pred(&ev) {
                return ev;
            }
        }
    };
    next("initial list done", &|e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;
    reader.wait_until_ready().await.expect("reflector ready");

    let w = dynamic(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 1}}),
    );
    api.create(&PostParams::default(), &w)
        .await
        .expect("create");
    next(
        "w1 added",
        &|e| matches!(e, watcher::Event::Apply(o) if o.name_any() == "w1"),
    )
    .await;

    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 2}})),
    )
    .await
    .expect("modify");
    next(
        "w1 modified",
        &|e| matches!(e, watcher::Event::Apply(o) if o.data["spec"]["size"] == 2),
    )
    .await;
    let r = reader.clone();
    eventually("the reflector sees size 2", move || {
        let r = r.clone();
        async move { r.state().iter().any(|o| o.data["spec"]["size"] == 2) }
    })
    .await;

    api.delete("w1", &DeleteParams::default())
        .await
        .expect("delete");
    next(
        "w1 deleted",
        &|e| matches!(e, watcher::Event::Delete(o) if o.name_any() == "w1"),
    )
    .await;
    let r = reader.clone();
    eventually("the reflector drops w1", move || {
        let r = r.clone();
        async move { r.state().is_empty() }
    })
    .await;
    watch_task.abort();
    reflector_task.abort();
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_gets_410_expired() {
    let (standin, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let a = cms
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .expect("a");
    let old_rv = a.resource_version().expect("rv");

    // Within the window: resuming from the old version replays what happened since.
    cms.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .expect("b");
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &old_rv)
        .await
        .expect("watch")
        .boxed();
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Added(o)) => assert_eq!(o.name_any(), "b"),
        other => panic!("expected ADDED b, got {other:?}"),
    }

    standin.compact_watch_history();
    let mut stream = cms
        .watch(&WatchParams::default(), &old_rv)
        .await
        .expect("watch")
        .boxed();
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Error(status)) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_sends_bookmarks_and_honours_timeout_seconds() {
    let options = Options {
        bookmark_interval: Duration::from_millis(200),
        ..Options::default()
    };
    let (_standin, client) = start_with(options).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let started = Instant::now();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(2), "0")
        .await
        .expect("watch")
        .boxed();
    let mut bookmarks = 0;
    while let Some(ev) = tokio::time::timeout(DEADLINE, stream.try_next())
        .await
        .expect("stream ends by itself")
        .expect("event")
    {
        if matches!(ev, WatchEvent::Bookmark(_)) {
            bookmarks += 1;
        }
    }
    assert!(bookmarks >= 1, "no bookmark received");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "watch lasted {took:?}"
    );
}

#[tokio::test]
async fn background_deletion_collects_dependents_through_chains() {
    let (_standin, client) = start().await;
    apply_crds(&client, &crd_docs(PROJECT_CRDS)).await;
    let prs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("kubetempura.mercari.com", "v1", "PR"),
            "prs",
        ),
    );
    let pr = prs
        .create(
            &PostParams::default(),
            &dynamic(json!({
                "apiVersion": "kubetempura.mercari.com/v1", "kind": "PR",
                "metadata": {"name": "sample-pr7"},
                "spec": {"reviewApp": "sample", "number": 7, "repository": "r", "headSha": "abc", "headBranch": "b", "baseBranch": "main", "lastEventAt": "2024-01-01T00:00:00Z"}
            })),
        )
        .await
        .expect("PR");
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let dep: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web-pr7", "ownerReferences": [{"apiVersion": "kubetempura.mercari.com/v1", "kind": "PR", "name": "sample-pr7", "uid": pr.uid().expect("uid")}]},
        "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    }))
    .expect("deployment");
    let dep = deployments
        .create(&PostParams::default(), &dep)
        .await
        .expect("deployment");
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(
        &PostParams::default(),
        &owned(
            "leaf",
            "apps/v1",
            "Deployment",
            "web-pr7",
            &dep.uid().expect("uid"),
        ),
    )
    .await
    .expect("leaf");
    cms.create(&PostParams::default(), &cm("bystander", json!({})))
        .await
        .expect("bystander");

    prs.delete("sample-pr7", &DeleteParams::background())
        .await
        .expect("delete PR");
    assert!(gone(&prs, "sample-pr7").await, "the owner goes at once");
    let (d, c) = (deployments.clone(), cms.clone());
    eventually("the chain is collected", move || {
        let (d, c) = (d.clone(), c.clone());
        async move { gone(&d, "web-pr7").await && gone(&c, "leaf").await }
    })
    .await;
    assert!(cms.get("bystander").await.is_ok());
}

#[tokio::test]
async fn foreground_deletion_keeps_the_owner_until_dependents_are_gone() {
    let (_standin, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let owner = cms
        .create(&PostParams::default(), &cm("owner", json!({})))
        .await
        .expect("owner");
    let mut held = owned_cm("held", &owner);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held)
        .await
        .expect("held dependent");
    cms.create(&PostParams::default(), &owned_cm("free", &owner))
        .await
        .expect("free dependent");

    cms.delete("owner", &DeleteParams::foreground())
        .await
        .expect("delete");
    let o = cms.get("owner").await.expect("owner still there");
    assert!(o.metadata.deletion_timestamp.is_some());
    assert_eq!(o.finalizers(), ["foregroundDeletion".to_string()]);
    assert!(gone(&cms, "free").await, "free dependent deleted");
    let h = cms
        .get("held")
        .await
        .expect("held dependent waits for its finalizer");
    assert!(h.metadata.deletion_timestamp.is_some());

    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    let c = cms.clone();
    eventually("owner and dependent are gone", move || {
        let c = c.clone();
        async move { gone(&c, "held").await && gone(&c, "owner").await }
    })
    .await;
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_and_strips_their_owner_reference() {
    let (_standin, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let owner = cms
        .create(&PostParams::default(), &cm("owner", json!({})))
        .await
        .expect("owner");
    cms.create(&PostParams::default(), &owned_cm("dep", &owner))
        .await
        .expect("dep");
    cms.delete("owner", &DeleteParams::orphan())
        .await
        .expect("delete");
    assert!(gone(&cms, "owner").await);
    let dep = cms.get("dep").await.expect("dependent kept");
    assert!(dep.owner_references().is_empty());
}

#[tokio::test]
async fn finalizers_hold_deletion_until_an_update_removes_them() {
    let (_standin, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let mut c = cm("fin", json!({}));
    c.metadata.finalizers = Some(vec!["example.com/a".into(), "example.com/b".into()]);
    cms.create(&PostParams::default(), &c)
        .await
        .expect("create");
    let deleted = cms
        .delete("fin", &DeleteParams::default())
        .await
        .expect("delete");
    let still = deleted
        .left()
        .expect("the object comes back while finalizers remain");
    assert!(still.metadata.deletion_timestamp.is_some());

    let mut cur = cms.get("fin").await.expect("get");
    cur.metadata.finalizers = Some(vec!["example.com/b".into()]);
    cms.replace("fin", &PostParams::default(), &cur)
        .await
        .expect("drop one");
    assert!(cms.get("fin").await.is_ok(), "one finalizer left");

    let mut cur = cms.get("fin").await.expect("get");
    cur.metadata.finalizers = Some(vec![]);
    cms.replace("fin", &PostParams::default(), &cur)
        .await
        .expect("drop last");
    assert!(gone(&cms, "fin").await);

    // Immediate deletion answers with a Success Status.
    cms.create(&PostParams::default(), &cm("plain", json!({})))
        .await
        .expect("create");
    let out = cms
        .delete("plain", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(out.is_right(), "a Status for an object deleted at once");
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status_writes() {
    let (_standin, client) = start().await;
    apply_crds(&client, &[widget_crd("Namespaced")]).await;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &widget_resource());
    let created = api
        .create(
            &PostParams::default(),
            &dynamic(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}, "status": {"phase": "Bogus"}})),
        )
        .await
        .expect("create");
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create"
    );

    let st = api
        .patch_status("w", &PatchParams::apply("ctl").force(), &Patch::Apply(json!({"apiVersion": "example.com/v1", "kind": "Widget", "status": {"phase": "Ready"}, "spec": {"size": 99}})))
        .await
        .expect("status apply");
    assert_eq!(st.data["status"]["phase"], "Ready");
    assert_eq!(st.data["spec"]["size"], 1, "status writes ignore spec");
    assert_eq!(
        st.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );
    let sub = st
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.manager.as_deref() == Some("ctl"))
        .and_then(|e| e.subresource);
    assert_eq!(sub.as_deref(), Some("status"));

    let main = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}, "status": {"phase": "Hacked"}})),
        )
        .await
        .expect("main write");
    assert_eq!(
        main.data["status"]["phase"], "Ready",
        "main writes ignore status"
    );
    assert_eq!(
        main.metadata.generation,
        Some(2),
        "spec change bumps generation"
    );

    // replace_status on a built-in kind with a status subresource.
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let d: Deployment = serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}}}})).expect("d");
    let mut d = deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    d.status = Some(serde_json::from_value(json!({"readyReplicas": 1})).expect("status"));
    let d = deployments
        .replace_status("d", &PostParams::default(), &d)
        .await
        .expect("replace status");
    assert_eq!(d.status.and_then(|s| s.ready_replicas), Some(1));
}

#[tokio::test]
async fn stale_resource_version_update_is_409_conflict() {
    let (_standin, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let v1 = cms
        .create(&PostParams::default(), &cm("c", json!({})))
        .await
        .expect("create");
    let mut fresh = v1.clone();
    fresh.data = Some([("k".to_string(), "new".to_string())].into());
    cms.replace("c", &PostParams::default(), &fresh)
        .await
        .expect("update with current rv");
    let mut stale = v1;
    stale.data = Some([("k".to_string(), "stale".to_string())].into());
    let err = api_error(
        cms.replace("c", &PostParams::default(), &stale)
            .await
            .expect_err("stale"),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists_and_namespaces_are_isolated() {
    let (_standin, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for (name, labels) in [
        ("web", json!({"app": "web", "tier": "front"})),
        ("db", json!({"app": "db", "tier": "back"})),
        ("plain", json!({})),
    ] {
        cms.create(&PostParams::default(), &cm(name, labels))
            .await
            .expect("create");
    }
    let names = |sel: &'static str, fields: bool| {
        let cms = cms.clone();
        async move {
            let lp = if fields {
                ListParams::default().fields(sel)
            } else {
                ListParams::default().labels(sel)
            };
            let mut n: Vec<String> = cms
                .list(&lp)
                .await
                .expect("list")
                .items
                .iter()
                .map(|c| c.name_any())
                .collect();
            n.sort();
            n
        }
    };
    assert_eq!(names("app=web", false).await, ["web"]);
    assert_eq!(names("app==web", false).await, ["web"]);
    assert_eq!(names("app!=web", false).await, ["db", "plain"]);
    assert_eq!(names("tier in (front,back)", false).await, ["db", "web"]);
    assert_eq!(names("tier notin (front)", false).await, ["db", "plain"]);
    assert_eq!(names("tier", false).await, ["db", "web"]);
    assert_eq!(names("!tier", false).await, ["plain"]);
    assert_eq!(
        names("app=web,tier=back", false).await,
        Vec::<String>::new()
    );
    assert_eq!(names("metadata.name=db", true).await, ["db"]);

    // Pagination.
    let page = cms
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().expect("continue token");
    let rest = cms
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(rest.items.len(), 1);
    assert!(rest.metadata.continue_.as_deref().is_none_or(str::is_empty));

    // Namespaces: same name, separate objects; a missing namespace is 404.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "other"}})).expect("ns"),
        )
        .await
        .expect("namespace");
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "other");
    other
        .create(&PostParams::default(), &cm("web", json!({"app": "other"})))
        .await
        .expect("same name elsewhere");
    assert_eq!(
        other
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default().labels("app"))
            .await
            .expect("all")
            .items
            .len(),
        3
    );
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "missing");
    let err = api_error(
        missing
            .create(&PostParams::default(), &cm("x", json!({})))
            .await
            .expect_err("no ns"),
    );
    assert_eq!(err.code, 404);
    for ns in ["default", "kube-system"] {
        assert!(namespaces.get(ns).await.is_ok(), "{ns} exists");
    }
}

#[tokio::test]
async fn errors_are_status_objects_with_real_codes_and_reasons() {
    let (_standin, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let err = api_error(cms.get("nope").await.expect_err("missing"));
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(err.message, "configmaps \"nope\" not found");
    assert_eq!(err.details.as_ref().map(|d| d.name.as_str()), Some("nope"));

    cms.create(&PostParams::default(), &cm("dup", json!({})))
        .await
        .expect("create");
    let err = api_error(
        cms.create(&PostParams::default(), &cm("dup", json!({})))
            .await
            .expect_err("dup"),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));

    let path = "/api/v1/namespaces/default/configmaps";
    let (code, _, body) = raw(
        &client,
        "POST",
        path,
        "application/json",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#,
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["details"]["causes"][0]["field"], "metadata.name");

    let (code, _, body) = raw(&client, "POST", path, "application/json", b"{not json").await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));

    let (code, _, body) = raw(&client, "PUT", path, "application/json", b"{}").await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );

    let (code, _, body) = raw(
        &client,
        "PUT",
        "/api/v1/namespaces/default/configmaps/dup",
        "application/json",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other"}}"#,
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));

    let (code, _, body) = raw(
        &client,
        "POST",
        path,
        "application/json",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"kube-system"}}"#,
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));

    let (code, _, _) = raw(
        &client,
        "GET",
        "/apis/nope.example.com/v1/things",
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn injected_faults_answer_with_status_bodies_and_requests_are_logged() {
    let (standin, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("c", json!({})))
        .await
        .expect("create");

    // kube 5 clients retry 429/503/504 by default (honouring Retry-After): one injected 503
    // is invisible to them, but shows in the request log.
    standin.clear_requests();
    standin
        .add_fault(FaultRule {
            retry_after_seconds: Some(0),
            ..FaultRule::fail("GET", "/api/v1/namespaces/default/configmaps/c", 503, 1)
        })
        .expect("fault");
    cms.get("c").await.expect("retried transparently");
    let statuses: Vec<(u16, bool)> = standin
        .requests()
        .iter()
        .map(|r| (r.status, r.faulted))
        .collect();
    assert_eq!(statuses, [(503, true), (200, false)]);

    // Without the retry layer the Status reaches the caller; the fault is then used up.
    let mut config = standin.kube_config().expect("config");
    config.default_retry = false;
    let plain_client = Client::try_from(config).expect("client");
    let no_retry: Api<ConfigMap> = Api::default_namespaced(plain_client.clone());
    standin
        .add_fault(FaultRule::fail(
            "GET",
            "/api/v1/namespaces/default/configmaps/c",
            503,
            1,
        ))
        .expect("fault");
    let err = api_error(no_retry.get("c").await.expect_err("faulted"));
    assert_eq!((err.code, err.reason.as_str()), (503, "ServiceUnavailable"));
    assert!(no_retry.get("c").await.is_ok(), "the fault was used up");

    // Over HTTP: a 429 with Retry-After on creates.
    let rule = br#"{"method":"POST","path_regex":"/configmaps$","status":429,"count":1,"retry_after_seconds":3}"#;
    let (code, _, _) = raw(
        &client,
        "POST",
        "/__standin/faults",
        "application/json",
        rule,
    )
    .await;
    assert_eq!(code, 201);
    let (code, headers, body) = raw(
        &plain_client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"later"}}"#,
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (429, Some("TooManyRequests"))
    );
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("3")
    );
    assert_eq!(body["details"]["retryAfterSeconds"], 3);

    // A 500 from a regex rule through kube-rs.
    standin
        .add_fault(FaultRule {
            path_regex: Some("/configmaps/c$".into()),
            status: Some(500),
            count: Some(1),
            ..Default::default()
        })
        .expect("fault");
    let err = api_error(cms.get("c").await.expect_err("faulted"));
    assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));

    // Delays.
    standin
        .add_fault(FaultRule::delay(
            "GET",
            "/api/v1/namespaces/default/configmaps/c",
            300,
            1,
        ))
        .expect("delay");
    let t = Instant::now();
    cms.get("c").await.expect("delayed but served");
    assert!(t.elapsed() >= Duration::from_millis(300));

    // The log, in process and over HTTP.
    let log = standin.requests();
    assert!(
        log.iter()
            .any(|r| r.method == "POST" && r.status == 429 && r.faulted)
    );
    assert!(log.iter().any(|r| r.method == "GET"
        && r.path.ends_with("/configmaps/c")
        && r.status == 200
        && !r.faulted));
    let (code, _, body) = raw(
        &client,
        "GET",
        "/__standin/requests",
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 200);
    let entries = body.as_array().expect("log");
    assert!(
        entries
            .iter()
            .any(|r| r["status"] == 503 && r["faulted"] == true && r["time"].is_string())
    );

    standin
        .add_fault(FaultRule::fail("GET", "/api", 503, 100))
        .expect("fault");
    let (code, _, _) = raw(
        &client,
        "DELETE",
        "/__standin/faults",
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 200);
    assert!(cms.get("c").await.is_ok(), "faults cleared");
}

#[tokio::test]
async fn binary_prints_its_address_writes_a_kubeconfig_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("standin-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let kubeconfig = dir.join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-standin"))
        .args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kube-standin");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("address line in time")
        .expect("read")
        .expect("a line");
    let addr = line.strip_prefix("listening on ").expect("listening line");
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );

    let kc = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    assert_eq!(
        config.cluster_url.to_string().trim_end_matches('/'),
        format!("http://{addr}")
    );
    let client = Client::try_from(config).expect("client");
    let namespaces: Api<Namespace> = Api::all(client);
    let probe = namespaces.clone();
    eventually("the binary serves namespaces", move || {
        let n = probe.clone();
        async move { n.get("default").await.is_ok() }
    })
    .await;

    let pid = child.id().expect("pid");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-standin"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .await
        .expect("run");
    assert!(
        !out.status.success(),
        "non-loopback listen addresses are refused"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("non-loopback"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn watcher_resumes_across_server_side_watch_timeouts_without_missing_events() {
    let (standin, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let writer = reflector::store::Writer::<ConfigMap>::default();
    let reader = writer.as_reader();
    // Each watch ends after one second; the watcher re-watches from its last resourceVersion.
    let task = tokio::spawn(
        reflector(
            writer,
            watcher(cms.clone(), watcher::Config::default().timeout(1)),
        )
        .applied_objects()
        .for_each(|_| async {}),
    );
    reader.wait_until_ready().await.expect("reflector ready");
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        cms.create(&PostParams::default(), &cm(&format!("c{n}"), json!({})))
            .await
            .expect("create");
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = reader.clone();
    eventually("the reflector has every object", move || {
        let r = r.clone();
        async move { r.state().len() == n }
    })
    .await;
    let watches = standin
        .requests()
        .iter()
        .filter(|r| r.query.contains("watch=true"))
        .count();
    assert!(watches >= 3, "only {watches} watch requests");
    task.abort();
}

#[tokio::test]
async fn json_patch_and_merge_patch_edit_objects() {
    let (_standin, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("p", json!({"a": "1"})))
        .await
        .expect("create");
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/data/extra", "value": "x"},
        {"op": "replace", "path": "/metadata/labels/a", "value": "2"}
    ]))
    .expect("patch");
    let p = cms
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .expect("json patch");
    assert_eq!(p.data.clone().expect("data")["extra"], "x");
    assert_eq!(p.labels()["a"], "2");
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/k", "value": "nope"}]))
            .expect("patch");
    let err = api_error(
        cms.patch("p", &PatchParams::default(), &Patch::<()>::Json(failing))
            .await
            .expect_err("test op fails"),
    );
    assert_eq!(err.code, 422);
    let m = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"extra": null}})),
        )
        .await
        .expect("strategic patch treated as merge patch");
    assert!(!m.data.expect("data").contains_key("extra"));
    let err = api_error(
        cms.patch("missing", &PatchParams::default(), &Patch::Merge(json!({})))
            .await
            .expect_err("missing"),
    );
    assert_eq!(err.code, 404);
}
