//! What only a real control plane can show: the cluster's garbage collector removes a deleted
//! ReviewApp's environments through the owner references the applier sets (with no applier
//! running), `kubectl get prs` prints the CRD's printer columns, the applier re-establishes
//! its watches when the API server ends them, and the per-namespace install is enough for it.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use std::collections::BTreeMap;
use std::time::Duration;

use guarantees_support::*;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use kubetempura_common::crd::{Phase, ReviewApp};
use kubetempura_tests::harness::applier::stop_gracefully;
use kubetempura_tests::harness::install::SERVICE_ACCOUNT;
use kubetempura_tests::harness::kubeapi::read_documents;
use kubetempura_tests::harness::stack::{Stack, StackOptions, workspace_file};
use kubetempura_tests::harness::{tools, wait_for};
use serde_json::{Value, json};

const APP: &str = "reviewapp-sample";

/// Asserts that `refs` is exactly one controller reference to `owner`, blocking its deletion.
fn assert_controlled_by<K: Resource<DynamicType = ()>>(
    what: &str,
    refs: &[OwnerReference],
    owner: &K,
) {
    let expected = OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap(),
        uid: owner.meta().uid.clone().unwrap(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    assert_eq!(refs, [expected], "owner references of {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_reviewapp_removes_its_prs_and_their_objects_by_the_garbage_collector() {
    let mut stack = Stack::start(options("gc", &[])).await;
    let apps: Api<ReviewApp> = Api::namespaced(stack.client.clone(), &stack.ns);
    let app = apps.get(APP).await.unwrap();
    let prs = [60, 61];
    for pr in prs {
        let object = open_applied(&stack, pr).await;
        // The chain the garbage collector follows: Deployment and Service → PR → ReviewApp.
        assert_controlled_by(&format!("PR {pr}"), object.owner_references(), &app);
        for (api_version, kind) in [("apps/v1", "Deployment"), ("v1", "Service")] {
            let dependent = get(&stack, api_version, kind, &env_name(pr)).await.unwrap();
            assert_controlled_by(
                &format!("the {kind} of PR {pr}"),
                dependent.owner_references(),
                &object,
            );
        }
    }
    stack.wait_queue_drained().await;

    // Only the cluster can act from now on.
    stop_gracefully(stack.applier.as_mut().unwrap(), Duration::from_secs(30));
    let requests = stack.proxy.requests().len();
    // No propagationPolicy: the API server's default for custom resources, Background.
    apps.delete(APP, &DeleteParams::default()).await.unwrap();
    let kinds = [
        ("kubetempura.mercari.com/v1", "PR"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
    ];
    // The garbage collector notices a CRD's kind at its next discovery sync (every 30 s).
    wait_for(
        "the garbage collector to delete the PRs, Deployments and Services",
        Duration::from_secs(120),
        || async {
            for (api_version, kind) in kinds {
                let left = stack.names(api_version, kind, &stack.ns).await;
                if left.iter().any(|n| n.starts_with("reviewapp-sample-pr")) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    assert!(apps.get_opt(APP).await.unwrap().is_none());
    assert_eq!(
        stack.proxy.requests().len(),
        requests,
        "nothing reached the API server with the applier's identity after it stopped"
    );
}

/// The printer columns of the `prs` CRD in infra/crds/crds.yaml: (name, jsonPath, type,
/// priority).
fn pr_printer_columns() -> Vec<(String, String, String, i64)> {
    let crd = read_documents(&workspace_file("infra/crds/crds.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "CustomResourceDefinition" && d["spec"]["names"]["plural"] == "prs")
        .expect("the prs CRD in infra/crds/crds.yaml");
    let version = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["served"] == true && v["storage"] == true)
        .expect("a served storage version");
    let columns: Vec<_> = version["additionalPrinterColumns"]
        .as_array()
        .expect("additionalPrinterColumns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["jsonPath"].as_str().unwrap().to_owned(),
                c["type"].as_str().unwrap().to_owned(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        !columns.is_empty(),
        "the prs CRD declares no printer column"
    );
    columns
}

/// The value at a `.a.b.c` JSONPath, or one with a single equality filter
/// (`.a.list[?(@.key=="value")].field`), as kubectl prints it.
fn at_path<'a>(object: &'a Value, path: &str) -> &'a Value {
    let simple = |v: &'a Value, p: &str| -> &'a Value {
        assert!(
            !p.contains(['[', '*', '?']),
            "only simple paths and one equality filter are evaluated here: {path}"
        );
        p.trim_start_matches('.')
            .split('.')
            .filter(|k| !k.is_empty())
            .fold(v, |v, key| &v[key])
    };
    let filter = regex::Regex::new(r#"^(.*)\[\?\(@\.(\w+)=="([^"]*)"\)\](.*)$"#).unwrap();
    let Some(c) = filter.captures(path) else {
        return simple(object, path);
    };
    static NULL: Value = Value::Null;
    let list = simple(object, &c[1]);
    let found = list
        .as_array()
        .and_then(|items| items.iter().find(|i| i[&c[2]] == c[3]));
    found.map_or(&NULL, |item| simple(item, &c[4]))
}

fn printed(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        // An absent field is an empty cell in the table the API server builds.
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `kubectl get prs` with `extra` arguments, as the administrator; header and rows split into
/// cells at the header's column starts.
async fn kubectl_get_prs(stack: &Stack, extra: &[&str]) -> Vec<Vec<String>> {
    let out = tokio::process::Command::new(tools::kubectl())
        .arg("--kubeconfig")
        .arg(&stack.kubeconfig)
        .args(["-n", &stack.ns, "get", "prs"])
        .args(extra)
        .output()
        .await
        .expect("run kubectl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl get prs {extra:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Columns start where their header starts (kubectl aligns them); a cell may be empty.
    let mut lines = stdout.lines();
    let header = lines.next().unwrap_or_default();
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|&(i, c)| c != ' ' && (i == 0 || header.as_bytes()[i - 1] == b' '))
        .map(|(i, _)| i)
        .collect();
    let split = |line: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(n, &start)| {
                let end = starts
                    .get(n + 1)
                    .copied()
                    .unwrap_or(line.len())
                    .min(line.len());
                line.get(start.min(line.len())..end)
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
            .collect()
    };
    std::iter::once(split(header))
        .chain(lines.map(split))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_get_prs_prints_the_printer_columns() {
    let stack = Stack::start(options("printer-columns", &[])).await;
    let pr = 62;
    let object = open_applied(&stack, pr).await;
    let object = serde_json::to_value(&object).unwrap();
    let columns = pr_printer_columns();
    let age = regex::Regex::new(r"^(\d+[smhdy])+$").unwrap();

    for (extra, max_priority) in [(&[][..], 0), (&["-o", "wide"][..], i64::MAX)] {
        let table = kubectl_get_prs(&stack, extra).await;
        let shown: Vec<_> = columns.iter().filter(|c| c.3 <= max_priority).collect();
        let header: Vec<String> = std::iter::once("NAME".to_owned())
            .chain(shown.iter().map(|c| c.0.to_uppercase()))
            .collect();
        assert_eq!(table[0], header, "header of kubectl get prs {extra:?}");
        assert_eq!(table.len(), 2, "one PR, one row: {table:?}");
        let row = &table[1];
        assert_eq!(row.len(), header.len(), "{row:?}");
        assert_eq!(row[0], env_name(pr));
        for (column, cell) in shown.iter().zip(&row[1..]) {
            let (name, path, kind, _) = column;
            if kind == "date" {
                assert!(age.is_match(cell), "{name}: {cell} is not an age");
            } else {
                assert_eq!(cell, &printed(at_path(&object, path)), "{name} ({path})");
            }
        }
        // The values themselves, found by what the columns show.
        let cell = |path: &str| {
            let i = shown.iter().position(|c| c.1 == path).unwrap();
            row[i + 1].as_str()
        };
        assert_eq!(cell(".spec.number"), pr.to_string());
        assert_eq!(cell(".status.commitShort"), &sha(1)[..7]);
        assert_eq!(cell(".status.phase"), "Applied");
        // The sample's Deployment never rolls out here (no kubelet): the rollout is in progress.
        assert_eq!(
            cell(r#".status.conditions[?(@.type=="RolledOut")].reason"#),
            "Progressing"
        );
        assert_eq!(cell(".spec.reviewApp"), APP);
    }
}

/// Watch requests the applier made that the API server answered, for one resource (`prs`,
/// `reviewapps`).
fn watches(stack: &Stack, resource: &str) -> usize {
    let suffix = format!("/{resource}");
    stack
        .proxy
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.status == 200 && r.path.ends_with(&suffix))
        .filter(|r| {
            url::form_urlencoded::parse(r.query.as_bytes())
                .any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
        })
        .count()
}

/// Ends every open watch and waits until the applier watches ReviewApps and PRs again.
async fn drop_watches_and_wait_for_new_ones(stack: &Stack) {
    let before = (watches(stack, "reviewapps"), watches(stack, "prs"));
    assert!(
        before.0 > 0 && before.1 > 0,
        "the applier watches ReviewApps and PRs: {before:?}"
    );
    stack.proxy.drop_watches();
    wait_for(
        "new ReviewApp and PR watches after the drop",
        Duration::from_secs(60),
        || async {
            let now = (watches(stack, "reviewapps"), watches(stack, "prs"));
            (now.0 > before.0 && now.1 > before.1).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_applier_recovers_when_its_watches_are_dropped() {
    // No periodic resync: only a live ReviewApp watch can bring the edit in.
    let stack = Stack::start(options("watch-drop", &["--resync-seconds", "3600"])).await;
    open_applied(&stack, 63).await;
    drop_watches_and_wait_for_new_ones(&stack).await;
    drop_watches_and_wait_for_new_ones(&stack).await;
    // Only a live PR watch puts a PR opened now into the cache the re-render walks.
    open_applied(&stack, 64).await;
    stack.wait_queue_drained().await;
    let received = stack.applier().metric(RECEIVED).await;

    let text =
        std::fs::read_to_string(workspace_file("infra/examples/reviewapp-sample.yaml")).unwrap();
    let mut app: Value = serde_yaml::from_str(&text).unwrap();
    app["metadata"]["namespace"] = json!(stack.ns);
    app["spec"]["resources"][0]["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("ghcr.io/stefanprodan/podinfo:redrawn-pr{{PR_NUMBER}}");
    let apps: Api<ReviewApp> = Api::namespaced(stack.client.clone(), &stack.ns);
    let edited = apps
        .patch(
            APP,
            &PatchParams::apply("kubetempura-tests").force(),
            &Patch::Apply(&app),
        )
        .await
        .unwrap();
    assert_eq!(edited.metadata.generation, Some(2));
    for pr in [63, 64] {
        stack
            .wait_deployment_image(
                &stack.ns,
                &env_name(pr),
                &format!("ghcr.io/stefanprodan/podinfo:redrawn-pr{pr}"),
            )
            .await;
    }
    assert_eq!(
        stack.applier().metric(RECEIVED).await,
        received,
        "re-rendered without a webhook"
    );
}

/// Whether the applier's ServiceAccount may create Deployments in `namespace`, as the API
/// server's authorizer decides.
async fn applier_may_create_deployments(stack: &Stack, namespace: &str) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!(
                "system:serviceaccount:{}:{SERVICE_ACCOUNT}",
                stack.identity.namespace
            )),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.into()),
                verb: Some("create".into()),
                group: Some("apps".into()),
                resource: Some("deployments".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(stack.client.clone());
    let answer = api.create(&PostParams::default(), &review).await.unwrap();
    answer.status.unwrap().allowed
}

#[tokio::test(flavor = "multi_thread")]
async fn the_applier_works_under_the_per_namespace_install() {
    let stack = Stack::start(StackOptions {
        install: workspace_file("infra/overlays/per-namespace"),
        install_namespaces: BTreeMap::from([
            ("team-a".to_owned(), "{ns}".to_owned()),
            ("team-b".to_owned(), "{ns}-b".to_owned()),
        ]),
        ..options("per-namespace", &[])
    })
    .await;
    let ns = stack.ns.clone();
    let pr = 65;
    open_applied(&stack, pr).await;
    assert!(get(&stack, "v1", "Service", &env_name(pr)).await.is_some());
    stack
        .enqueue(&delivery(pr, &sha(1), "closed", 1), "close-65")
        .await;
    stack
        .wait_gone("apps/v1", "Deployment", &ns, &env_name(pr))
        .await;
    stack.wait_gone("v1", "Service", &ns, &env_name(pr)).await;
    let tombstone = stack.wait_pr_phase(&ns, &env_name(pr), Phase::Closed).await;
    assert!(tombstone.status.unwrap().inventory.is_empty());

    // What made it possible: the overlay's RoleBindings, not the base's ClusterRoleBinding.
    for bound in [ns.clone(), format!("{ns}-b")] {
        let api: Api<RoleBinding> = Api::namespaced(stack.client.clone(), &bound);
        let binding = api
            .get_opt("kubetempura-applier-objects")
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no RoleBinding kubetempura-applier-objects in {bound}"));
        assert_eq!(binding.role_ref.kind, "ClusterRole");
        assert_eq!(
            binding.role_ref.name,
            format!("kubetempura-applier-objects-{ns}")
        );
        let subject = &binding.subjects.unwrap()[0];
        assert_eq!(
            (subject.name.as_str(), subject.namespace.as_deref()),
            (SERVICE_ACCOUNT, Some(stack.identity.namespace.as_str()))
        );
    }
    let cluster_bindings: Api<ClusterRoleBinding> = Api::all(stack.client.clone());
    assert!(
        cluster_bindings
            .get_opt(&format!("kubetempura-applier-objects-{ns}"))
            .await
            .unwrap()
            .is_none(),
        "the overlay deletes the cluster-wide objects binding"
    );
    assert!(
        cluster_bindings
            .get_opt(&format!("kubetempura-applier-{ns}"))
            .await
            .unwrap()
            .is_some(),
        "the applier still watches ReviewApps and PRs cluster-wide"
    );
    assert!(applier_may_create_deployments(&stack, &ns).await);
    assert!(
        !applier_may_create_deployments(&stack, &stack.identity.namespace).await,
        "outside the listed namespaces the applier may create nothing"
    );
}
