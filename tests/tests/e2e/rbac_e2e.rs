//! Least privilege, both ways: the applier runs under the identity infra/ gives it (never as an
//! administrator), and that identity grants exactly the verbs the applier calls. Every request
//! the applier sends through the fault proxy is mapped to the permission RBAC checks for it, the
//! way kube-apiserver's request-info resolver does, and compared with the rules of infra/base's
//! ClusterRoles: a permission used and not granted fails the test by name (the API server would
//! have refused the request with 403 first), and so does one granted and never used, save the
//! few grants no request exercises ([`UNEXERCISED_GRANTS`], each with its reason).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kubetempura_applier::send_event::Delivery;
use kubetempura_common::crd::{PR, Phase, ReviewApp};
use kubetempura_tests::harness::applier::stop_gracefully;
use kubetempura_tests::harness::faults::RequestRecord;
use kubetempura_tests::harness::install::kustomize;
use kubetempura_tests::harness::kubeapi::{apply_value, read_documents};
use kubetempura_tests::harness::stack::{Stack, StackOptions, workspace_file};
use kubetempura_tests::harness::wait_for;
use kubetempura_tests::walkthrough::{SHA_1, play};
use serde_json::{Value, json};

/// The ClusterRole of the applier's own resources.
const OWN_ROLE: &str = "kubetempura-applier";
/// The Role of the check ledger, in the applier's namespace (its grants count as the own role's:
/// this test compares group, resource and verb, not namespaces).
const LEDGER_ROLE: &str = "kubetempura-applier-ledger";
/// The ClusterRole of the kinds templates may create.
const TEMPLATE_ROLE: &str = "kubetempura-applier-objects";

/// Grants of [`OWN_ROLE`] that are needed and that no request of the applier can exercise.
const UNEXERCISED_GRANTS: &[(&str, &str, &str, &str)] = &[
    // The applier sets blockOwnerDeletion on the owner references of PRs (owner: the ReviewApp)
    // and of rendered objects (owner: the PR). Where the OwnerReferencesPermissionEnforcement
    // admission plugin runs (OpenShift, hardened clusters; not kube-apiserver's defaults, so
    // not the test control plane), that plugin asks the authorizer for `update` on the owner's
    // finalizers while admitting the apply: a check without a request of its own.
    (
        "kubetempura.mercari.com",
        "reviewapps/finalizers",
        "update",
        "blockOwnerDeletion on a PR's owner reference",
    ),
    (
        "kubetempura.mercari.com",
        "prs/finalizers",
        "update",
        "blockOwnerDeletion on a rendered object's owner reference",
    ),
    // The finalizer of a ReviewApp whose environments hold cluster-scoped objects, which the
    // base install does not allow (no --allow-kind): exercised by tenancy_e2e's
    // deleting_a_reviewapp_closes_its_environments_and_their_cluster_scoped_objects.
    (
        "kubetempura.mercari.com",
        "reviewapps",
        "patch",
        "the finalizer, only with cluster-scoped templates (tenancy_e2e)",
    ),
];

/// What RBAC authorizes: a verb on a resource (`prs/status` for a subresource) of an API group
/// (`""` for the core group).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Permission {
    group: String,
    resource: String,
    verb: String,
}

impl Permission {
    fn new(group: &str, resource: &str, verb: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
            verb: verb.to_owned(),
        }
    }

    /// (group, resource) without the verb.
    fn kind(&self) -> (&str, &str) {
        (&self.group, &self.resource)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {group} {}", self.verb, self.resource)
    }
}

/// The permission RBAC checks for a request, as kube-apiserver's request-info resolver
/// (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go) derives it; `None` for a
/// non-resource request (`/api`, `/apis`, `/apis/<group>`, `/apis/<group>/<version>`,
/// `/version`, `/openapi/…`, health checks).
fn permission(method: &str, path: &str, query: &str) -> Option<Permission> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    // The verb: from a path prefix (deprecated `/watch/…`, `/proxy/…`) or from the method.
    let (mut verb, rest) = match rest {
        [] => return None,
        [special @ ("watch" | "proxy"), rest @ ..] => (*special, rest),
        _ => (
            match method {
                "POST" => "create",
                "GET" | "HEAD" => "get",
                "PUT" => "update",
                "PATCH" => "patch",
                "DELETE" => "delete",
                _ => "",
            },
            rest,
        ),
    };
    // `namespaces/<ns>/<resource>/…`, except the namespace's own subresources.
    let rest = match rest {
        ["namespaces", _ns, next, ..] if !matches!(*next, "status" | "finalize") => &rest[2..],
        _ => rest,
    };
    let (resource, name, subresource) = match rest {
        [] => return None,
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, subresource, ..] if verb != "proxy" => {
            (*resource, Some(*name), Some(*subresource))
        }
        [resource, name, ..] => (*resource, Some(*name), None),
    };
    if name.is_none() && verb == "get" {
        verb = if is_watch(query) { "watch" } else { "list" };
    }
    if name.is_none() && verb == "delete" {
        verb = "deletecollection";
    }
    let resource = match subresource {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    Some(Permission::new(group, &resource, verb))
}

/// `watch` as the API server decodes the parameter: present and neither `0` nor `false`.
fn is_watch(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "watch")
        .is_some_and(|(_, v)| v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Every permission a logged request needed: a server-side apply that created the object (201)
/// was also authorized for `create`. Faulted requests never reached the API server.
fn permissions(r: &RequestRecord) -> Vec<Permission> {
    if r.faulted {
        return Vec::new();
    }
    let Some(p) = permission(&r.method, &r.path, &r.query) else {
        return Vec::new();
    };
    let apply = r
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/apply-patch"));
    if p.verb == "patch" && apply && r.status == 201 {
        let create = Permission {
            verb: "create".to_owned(),
            ..p.clone()
        };
        vec![p, create]
    } else {
        vec![p]
    }
}

/// The permissions each ClusterRole of infra/base grants, by role name.
fn granted() -> BTreeMap<String, BTreeSet<Permission>> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut roles = BTreeMap::new();
    for role in kustomize(&workspace_file("infra/base")) {
        if role["kind"] != "ClusterRole" && role["kind"] != "Role" {
            continue;
        }
        let mut grants = BTreeSet::new();
        for rule in role["rules"].as_array().unwrap() {
            assert!(
                rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
                "this test reads group/resource/verb rules only: {rule}"
            );
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        grants.insert(Permission::new(&group, &resource, &verb));
                    }
                }
            }
        }
        roles.insert(
            role["metadata"]["name"].as_str().unwrap().to_owned(),
            grants,
        );
    }
    roles
}

/// Applies a build-gated copy of the sample ReviewApp and sends two results of its check; waits
/// until the ledger holds the second.
async fn record_check_results(stack: &Stack) {
    let mut app: Value = serde_yaml::from_str(
        &std::fs::read_to_string(workspace_file("infra/examples/reviewapp-sample.yaml")).unwrap(),
    )
    .unwrap();
    app["metadata"]["name"] = "gated".into();
    app["spec"]["waitFor"] = json!({"checkRuns": ["build"]});
    apply_value(&stack.client, &app, Some(&stack.ns))
        .await
        .unwrap();
    let repo =
        kubetempura_common::naming::RepoKey::parse(kubetempura_tests::walkthrough::REPO).unwrap();
    let ledger = kubetempura_applier::ledger::ledger_name(&repo);
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(stack.client.clone(), &stack.identity.namespace);
    for (i, (state, conclusion)) in [("in_progress", None), ("completed", Some("success"))]
        .into_iter()
        .enumerate()
    {
        let check = json!({
            "version": 1, "deliveryId": format!("rbac-check-{i}"), "event": "check_run",
            "kind": "checkRun",
            "repository": {"fullName": "mercari/not-exists", "owner": "mercari",
                "name": "not-exists", "htmlUrl": kubetempura_tests::walkthrough::REPO},
            "headSha": SHA_1, "name": "build",
            "state": if conclusion.is_some() { "success" } else { "pending" },
            "conclusion": conclusion.unwrap_or(state),
            "updatedAt": format!("2026-12-01T00:00:0{i}Z"), "receivedAt": "2026-12-01T00:00:09Z",
        });
        stack
            .enqueue_raw(
                &check.to_string(),
                "mercari/not-exists#999",
                &format!("rbac-check-{i}"),
            )
            .await;
        wait_for(
            &format!("check result {i} in the ledger"),
            Duration::from_secs(60),
            || {
                let configmaps = configmaps.clone();
                let ledger = ledger.clone();
                async move {
                    let cm = configmaps.get_opt(&ledger).await.ok()??;
                    cm.data?
                        .get(SHA_1)?
                        .contains(if i == 0 { "pending" } else { "success" })
                        .then_some(())
                }
            },
        )
        .await;
    }
}

/// The sample ReviewApp with another image, applied as `kubectl apply --server-side` would.
async fn edit_sample(stack: &Stack) {
    let mut app = read_documents(&workspace_file("infra/examples/reviewapp-sample.yaml"))
        .pop()
        .unwrap();
    app["spec"]["resources"][0]["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("ghcr.io/stefanprodan/podinfo:edited-pr{{PR_NUMBER}}");
    apply_value(&stack.client, &app, Some(&stack.ns))
        .await
        .unwrap();
}

/// A ReviewApp whose template has a kind the applier refuses, and PR 7 of its repository.
async fn open_refused_kind(stack: &Stack) {
    let app = json!({
        "apiVersion": "kubetempura.mercari.com/v1",
        "kind": "ReviewApp",
        "metadata": {"name": "risky"},
        "spec": {
            "githubRepository": "https://github.com/o/risky",
            "resources": [{
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "pwn-{{PR_NUMBER}}"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "User", "name": "mallory"}],
            }],
        },
    });
    apply_value(&stack.client, &app, Some(&stack.ns))
        .await
        .unwrap();
    stack
        .enqueue(
            &Delivery::new("https://github.com/o/risky", 7, SHA_1, "opened"),
            "refused-7",
        )
        .await;
}

/// Waits until `check` holds for the PR object `name` (given `None` once it is gone).
async fn wait_pr(stack: &Stack, what: &str, name: &str, check: impl Fn(Option<&PR>) -> bool) {
    let api: Api<PR> = Api::namespaced(stack.client.clone(), &stack.ns);
    wait_for(what, Duration::from_secs(120), || {
        let api = api.clone();
        let check = &check;
        async move { check(api.get_opt(name).await.ok()?.as_ref()).then_some(()) }
    })
    .await;
}

/// Drives every code path of the applier that needs a permission.
async fn exercise_the_applier(stack: &mut Stack) {
    // Open two pull requests, push, merge one: caches listed and watched, PRs and rendered
    // objects server-side-applied (created, then patched), both statuses applied, the merged
    // environment deleted, Events created (and patched when repeated for the same PR).
    play(stack, &[], async |_| {}).await;

    // A build-gated ReviewApp of the same repository: check results go to the ledger in the
    // applier's namespace (created on the first result, replaced on the next, read each time).
    record_check_results(stack).await;

    // An edited ReviewApp is re-rendered into PR 124 without a webhook.
    edit_sample(stack).await;
    stack
        .wait_deployment_image(
            &stack.ns,
            "reviewapp-sample-pr124",
            "ghcr.io/stefanprodan/podinfo:edited-pr124",
        )
        .await;
    wait_pr(
        stack,
        "PR 124 rendered from generation 2",
        "reviewapp-sample-pr124",
        |p| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.applied_generation == Some(2))
        },
    )
    .await;

    // Why the finalizers grants stay: the owner references block their owner's deletion.
    let pr = stack
        .wait_pr_phase(&stack.ns, "reviewapp-sample-pr124", Phase::Applied)
        .await;
    let deployment = stack
        .api("apps/v1", "Deployment", &stack.ns)
        .await
        .get("reviewapp-sample-pr124")
        .await
        .unwrap();
    for refs in [pr.owner_references(), deployment.owner_references()] {
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].block_owner_deletion, Some(true), "{refs:?}");
    }

    // A refused kind: recorded on both statuses and as a Warning Event.
    open_refused_kind(stack).await;
    stack
        .wait_pr_phase(&stack.ns, "risky-pr7", Phase::Failed)
        .await;
    let events = stack.api("events.k8s.io/v1", "Event", &stack.ns).await;
    wait_for("the InvalidTemplate Event", Duration::from_secs(60), || {
        let events = events.clone();
        async move {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.data["reason"] == "InvalidTemplate"
                        && e.data["regarding"]["name"] == "risky-pr7"
                })
                .then_some(())
        }
    })
    .await;
    stack.wait_queue_drained().await;

    // Closed environments' tombstones are collected by the periodic resync: restart the applier
    // with a one-second resync and no retention, and PR 123's tombstone is deleted.
    stop_gracefully(stack.applier.as_mut().unwrap(), Duration::from_secs(30));
    stack.options.applier_args.extend(
        [
            "--resync-seconds",
            "1",
            "--tombstone-retention-seconds",
            "0",
            "--allow-short-tombstone-retention",
        ]
        .map(String::from),
    );
    stack.start_applier().await;
    wait_pr(
        stack,
        "PR 123's tombstone to be collected",
        "reviewapp-sample-pr123",
        |p| p.is_none(),
    )
    .await;

    // A deleted ReviewApp takes its environments with it (the cluster's garbage collector
    // follows the owner references; the applier only forgets the ReviewApp).
    let apps: Api<ReviewApp> = Api::namespaced(stack.client.clone(), &stack.ns);
    apps.delete("reviewapp-sample", &DeleteParams::default())
        .await
        .unwrap();
    wait_pr(
        stack,
        "PR 124 to be deleted with its ReviewApp",
        "reviewapp-sample-pr124",
        |p| p.is_none(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_applier_uses_exactly_the_verbs_infra_grants_it() {
    let mut stack = Stack::start(StackOptions {
        queue: "rbac".into(),
        manifests: vec![workspace_file("infra/examples/reviewapp-sample.yaml")],
        ..StackOptions::default()
    })
    .await;
    // A missing grant shows as a 403 and a wait that times out: name the permission first.
    let exercised = AssertUnwindSafe(exercise_the_applier(&mut stack))
        .catch_unwind()
        .await;

    let mut used: BTreeMap<Permission, usize> = BTreeMap::new();
    for r in stack.proxy.requests() {
        for p in permissions(&r) {
            *used.entry(p).or_default() += 1;
        }
    }
    eprintln!("permissions the applier used (requests):");
    for (p, n) in &used {
        eprintln!("  {:<52} {n:>5}", p.to_string());
    }
    eprintln!("granted, exercised by no request:");
    for (group, resource, verb, why) in UNEXERCISED_GRANTS {
        eprintln!(
            "  {:<52} {why}",
            Permission::new(group, resource, verb).to_string()
        );
    }

    let roles = granted();
    let own: &BTreeSet<Permission> = &roles[OWN_ROLE]
        .union(&roles[LEDGER_ROLE])
        .cloned()
        .collect();
    let templates = &roles[TEMPLATE_ROLE];
    let all: BTreeSet<&Permission> = roles.values().flatten().collect();

    // (a) Every permission used is granted.
    let missing: Vec<String> = used
        .keys()
        .filter(|p| !all.contains(p))
        .map(ToString::to_string)
        .collect();
    assert!(
        missing.is_empty(),
        "the applier used permissions infra/base/rbac.yaml does not grant:\n  {}",
        missing.join("\n  ")
    );
    if let Err(panic) = exercised {
        std::panic::resume_unwind(panic);
    }

    // (b) Every permission of the applier's own role is used, but the unexercised grants, which
    // must still be granted and indeed unused.
    let exempt: BTreeSet<Permission> = UNEXERCISED_GRANTS
        .iter()
        .map(|(g, r, v, _)| Permission::new(g, r, v))
        .collect();
    for p in &exempt {
        assert!(
            own.contains(p),
            "{p} is exempt but not granted by {OWN_ROLE}"
        );
        assert!(
            !used.contains_key(p),
            "{p} was used: drop it from UNEXERCISED_GRANTS"
        );
    }
    let unused: Vec<String> = own
        .iter()
        .filter(|p| !used.contains_key(*p) && !exempt.contains(*p))
        .map(ToString::to_string)
        .collect();
    assert!(
        unused.is_empty(),
        "{OWN_ROLE} grants permissions the applier never uses (remove them from \
         infra/base/rbac.yaml):\n  {}",
        unused.join("\n  ")
    );

    // (b) The template kinds: the applier treats every kind alike (server-side apply, delete),
    // so every kind of the template role is granted exactly the verbs it used on the kinds the
    // sample renders.
    let template_kinds: BTreeSet<(&str, &str)> = templates.iter().map(Permission::kind).collect();
    let exercised: BTreeSet<(&str, &str)> = used
        .keys()
        .filter(|p| !own.contains(p))
        .map(Permission::kind)
        .filter(|k| template_kinds.contains(k))
        .collect();
    assert_eq!(
        exercised,
        BTreeSet::from([("", "services"), ("apps", "deployments")]),
        "the sample renders a Deployment and a Service"
    );
    // (The applier's own role also lists and watches workloads, to follow their rollout: those
    // requests are the own role's, not the template role's.)
    let template_verbs: BTreeSet<&str> = used
        .keys()
        .filter(|p| template_kinds.contains(&p.kind()) && !own.contains(p))
        .map(|p| p.verb.as_str())
        .collect();
    for kind in &template_kinds {
        let verbs: BTreeSet<&str> = templates
            .iter()
            .filter(|p| p.kind() == *kind)
            .map(|p| p.verb.as_str())
            .collect();
        assert_eq!(
            verbs, template_verbs,
            "{TEMPLATE_ROLE} grants {kind:?} other verbs than the applier uses on template kinds"
        );
    }
}

/// `permission` of `"METHOD /path?query"`, as `"verb group resource"`.
fn resolve(request: &str) -> Option<String> {
    let (method, target) = request.split_once(' ').unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    permission(method, path, query).map(|p| p.to_string())
}

#[test]
fn requests_map_to_the_permissions_rbac_checks() {
    for (request, expected) in [
        ("GET /api/v1/namespaces/n/services/s", "get core services"),
        ("GET /api/v1/namespaces/n/services", "list core services"),
        (
            "GET /apis/apps/v1/deployments?limit=500",
            "list apps deployments",
        ),
        (
            "GET /apis/g.io/v1/namespaces/n/prs?watch=true&resourceVersion=9",
            "watch g.io prs",
        ),
        ("GET /api/v1/pods?watch=1", "watch core pods"),
        ("GET /api/v1/pods?watch=false", "list core pods"),
        ("GET /api/v1/pods?watch=0", "list core pods"),
        ("GET /api/v1/watch/namespaces/n/pods", "watch core pods"),
        (
            "POST /apis/events.k8s.io/v1/namespaces/n/events",
            "create events.k8s.io events",
        ),
        (
            "PUT /apis/apps/v1/namespaces/n/deployments/d",
            "update apps deployments",
        ),
        (
            "PATCH /apis/apps/v1/namespaces/n/deployments/d?force=true",
            "patch apps deployments",
        ),
        (
            "PATCH /apis/g.io/v1/namespaces/n/prs/p/status",
            "patch g.io prs/status",
        ),
        (
            "DELETE /api/v1/namespaces/n/services/s",
            "delete core services",
        ),
        (
            "DELETE /api/v1/namespaces/n/services",
            "deletecollection core services",
        ),
        // Namespaces themselves, and their own subresources.
        ("GET /api/v1/namespaces", "list core namespaces"),
        ("GET /api/v1/namespaces/n", "get core namespaces"),
        (
            "PUT /api/v1/namespaces/n/finalize",
            "update core namespaces/finalize",
        ),
        (
            "PATCH /api/v1/namespaces/n/status",
            "patch core namespaces/status",
        ),
        // A subresource named proxy, and the deprecated proxy verb (which has none).
        ("GET /api/v1/nodes/x/proxy/metrics", "get core nodes/proxy"),
        ("GET /api/v1/proxy/nodes/x/metrics", "proxy core nodes"),
    ] {
        assert_eq!(resolve(request).as_deref(), Some(expected), "{request}");
    }
    for request in [
        "GET /api",
        "GET /api/v1",
        "GET /apis",
        "GET /apis/apps",
        "GET /apis/apps/v1",
        "GET /apis/kubetempura.mercari.com/v1/",
        "GET /version",
        "GET /openapi/v3",
        "GET /openapi/v3/apis/apps/v1",
        "GET /healthz",
    ] {
        assert_eq!(resolve(request), None, "{request}");
    }
}

#[test]
fn a_server_side_apply_that_creates_also_needs_create() {
    let record = |method: &str, status: u16, content_type: &str| RequestRecord {
        method: method.into(),
        path: "/apis/apps/v1/namespaces/n/deployments/d".into(),
        query: "fieldManager=kubetempura&force=true".into(),
        status,
        time: String::new(),
        faulted: false,
        content_type: Some(content_type.into()),
    };
    let patch = Permission::new("apps", "deployments", "patch");
    let create = Permission::new("apps", "deployments", "create");
    let apply = "application/apply-patch+yaml";
    assert_eq!(
        permissions(&record("PATCH", 201, apply)),
        [patch.clone(), create]
    );
    assert_eq!(
        permissions(&record("PATCH", 200, apply)),
        std::slice::from_ref(&patch)
    );
    assert_eq!(
        permissions(&record("PATCH", 201, "application/merge-patch+json")),
        [patch]
    );
    let faulted = RequestRecord {
        faulted: true,
        ..record("PATCH", 503, apply)
    };
    assert!(permissions(&faulted).is_empty());
}
