//! infra/ installed for one test, and the applier's identity from it.
//!
//! The applier never runs as a cluster administrator in the tests: [`install`] applies what
//! `kubectl kustomize <infra dir>` renders (the RBAC of the real install) and [`Identity`] holds
//! a token of the applier's ServiceAccount, obtained through the TokenRequest API as
//! `kubectl create token` does. Tests share one control plane, so the install is renamed to
//! belong to the test: the namespace `kubetempura` becomes `<ns>-system`, every ClusterRole and
//! ClusterRoleBinding gets the suffix `-<ns>` (role references follow), and namespaces named in
//! `namespaces` are mapped as given. Rules, verbs and subjects are otherwise exactly infra/'s,
//! so a verb the applier needs and infra/ lacks fails the test that needs it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};
use serde::Deserialize;
use serde_json::Value;

use super::kubeapi::apply_value;
use super::tools;

/// The namespace infra/ installs the applier into.
const INFRA_NAMESPACE: &str = "kubetempura";
/// The applier's ServiceAccount in infra/.
pub const SERVICE_ACCOUNT: &str = "kubetempura-applier";
/// Kinds [`install`] applies when asked for the RBAC only.
pub const RBAC_KINDS: &[&str] = &[
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// The applier's identity in an installed copy of infra/.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The namespace of its ServiceAccount (`<ns>-system`).
    pub namespace: String,
    /// A bearer token of the ServiceAccount.
    pub token: String,
}

/// `kubectl kustomize <dir>`, one JSON value per document.
pub fn kustomize(dir: &Path) -> Vec<Value> {
    let out = Command::new(tools::kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("kubectl kustomize {}: {e}", dir.display()));
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|doc| Value::deserialize(doc).ok())
        .filter(|v| !v.is_null())
        .collect()
}

/// Renames one rendered object of infra/ so that it belongs to the test of namespace `ns`.
pub fn rename_for_test(obj: &mut Value, ns: &str, namespaces: &BTreeMap<String, String>) {
    let system = format!("{ns}-system");
    let map_ns = |n: &str| -> String {
        if n == INFRA_NAMESPACE {
            system.clone()
        } else {
            namespaces.get(n).cloned().unwrap_or_else(|| n.to_owned())
        }
    };
    let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
    if kind == "Namespace" {
        if let Some(name) = obj["metadata"]["name"].as_str() {
            obj["metadata"]["name"] = Value::from(map_ns(name));
        }
    } else if let Some(n) = obj["metadata"]["namespace"].as_str() {
        obj["metadata"]["namespace"] = Value::from(map_ns(n));
    }
    if matches!(kind.as_str(), "ClusterRole" | "ClusterRoleBinding")
        && let Some(name) = obj["metadata"]["name"].as_str()
    {
        obj["metadata"]["name"] = Value::from(format!("{name}-{ns}"));
    }
    if obj["roleRef"]["kind"] == "ClusterRole"
        && let Some(name) = obj["roleRef"]["name"].as_str()
    {
        obj["roleRef"]["name"] = Value::from(format!("{name}-{ns}"));
    }
    // `get_mut`, not `obj["subjects"]`: indexing a JSON object mutably inserts a null member,
    // which the API server rightly refuses as a field its schema does not declare.
    if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects {
            if let Some(n) = s["namespace"].as_str() {
                s["namespace"] = Value::from(map_ns(n));
            }
        }
    }
}

/// Creates a namespace (no error if it exists).
pub async fn create_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"kubetempura.test/namespace": "true"}}
    }))
    .expect("namespace");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
}

/// Installs `dir` (an infra/ kustomization) for the test of namespace `ns`: the objects of
/// `kinds` (all when empty), renamed by [`rename_for_test`]. Creates the namespaces the
/// objects land in. Returns the applier's identity.
pub async fn install(
    client: &Client,
    dir: &Path,
    ns: &str,
    namespaces: &BTreeMap<String, String>,
    kinds: &[&str],
) -> Identity {
    let mut objects = kustomize(dir);
    for o in &mut objects {
        rename_for_test(o, ns, namespaces);
    }
    objects.retain(|o| kinds.is_empty() || kinds.contains(&o["kind"].as_str().unwrap_or("")));
    let mut targets: Vec<String> = objects
        .iter()
        .filter_map(|o| o["metadata"]["namespace"].as_str().map(str::to_owned))
        .collect();
    targets.sort();
    targets.dedup();
    for t in &targets {
        create_namespace(client, t).await;
    }
    for o in &objects {
        apply_value(client, o, None)
            .await
            .unwrap_or_else(|e| panic!("install {}: {e}", dir.display()));
    }
    let namespace = format!("{ns}-system");
    let token = service_account_token(client, &namespace, SERVICE_ACCOUNT).await;
    Identity { namespace, token }
}

/// A token of a ServiceAccount (TokenRequest, as `kubectl create token`), valid for 6 hours.
pub async fn service_account_token(client: &Client, namespace: &str, name: &str) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(6 * 3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let answer = api
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("token of ServiceAccount {namespace}/{name}: {e}"));
    answer
        .status
        .and_then(|s| s.token)
        .unwrap_or_else(|| panic!("no token for ServiceAccount {namespace}/{name}"))
}

/// A kubeconfig for a bearer token at `server`.
pub fn token_kubeconfig(server: &str, ca_pem: &[u8], token: &str, namespace: &str) -> String {
    use base64::Engine as _;
    let ca = if server.starts_with("https://") && !ca_pem.is_empty() {
        format!(
            "\n    certificate-authority-data: {}",
            base64::engine::general_purpose::STANDARD.encode(ca_pem)
        )
    } else {
        String::new()
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}{ca}\nusers:\n- name: applier\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: applier\n    namespace: {namespace}\ncurrent-context: test\n"
    )
}

/// A namespace of the test's own on `cluster`, the CRDs, infra/base's RBAC installed for it,
/// and a client acting as the applier's ServiceAccount there (as `kubetempura run` in the
/// cluster does). Returns the namespace, the client and the applier's identity.
pub async fn applier_namespace(
    cluster: &super::controlplane::Cluster,
) -> (String, Client, Identity) {
    let admin = &cluster.client;
    let ns = super::stack::unique_namespace();
    create_namespace(admin, &ns).await;
    super::stack::apply_crds(admin, &super::stack::workspace_file("infra/crds/crds.yaml")).await;
    let identity = install(
        admin,
        &super::stack::workspace_file("infra/base"),
        &ns,
        &BTreeMap::new(),
        RBAC_KINDS,
    )
    .await;
    let kubeconfig = token_kubeconfig(&cluster.server, &cluster.ca_pem, &identity.token, &ns);
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("the applier's kubeconfig");
    let client = Client::try_from(config).expect("the applier's client");
    (ns, client, identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_install_is_renamed_into_the_test_and_keeps_its_rules() {
        let mut crb = serde_json::json!({
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "kubetempura-applier"},
            "roleRef": {"kind": "ClusterRole", "name": "kubetempura-applier"},
            "subjects": [{"kind": "ServiceAccount", "name": "kubetempura-applier", "namespace": "kubetempura"}]
        });
        let mut rb = serde_json::json!({
            "kind": "RoleBinding",
            "metadata": {"name": "objects", "namespace": "team-a"},
            "roleRef": {"kind": "ClusterRole", "name": "kubetempura-applier-objects"},
            "subjects": [{"kind": "ServiceAccount", "name": "kubetempura-applier", "namespace": "kubetempura"}]
        });
        let mut role = serde_json::json!({
            "kind": "ClusterRole", "metadata": {"name": "r"}, "rules": [{"verbs": ["get"]}]
        });
        let map = BTreeMap::from([("team-a".to_owned(), "t1".to_owned())]);
        let mut namespace =
            serde_json::json!({"kind": "Namespace", "metadata": {"name": "kubetempura"}});
        rename_for_test(&mut namespace, "t1", &map);
        assert_eq!(
            namespace,
            serde_json::json!({"kind": "Namespace", "metadata": {"name": "t1-system"}})
        );
        rename_for_test(&mut crb, "t1", &map);
        rename_for_test(&mut rb, "t1", &map);
        rename_for_test(&mut role, "t1", &map);
        assert_eq!(crb["metadata"]["name"], "kubetempura-applier-t1");
        assert_eq!(crb["roleRef"]["name"], "kubetempura-applier-t1");
        assert_eq!(crb["subjects"][0]["namespace"], "t1-system");
        assert_eq!(rb["metadata"]["namespace"], "t1");
        assert_eq!(rb["metadata"]["name"], "objects");
        assert_eq!(rb["roleRef"]["name"], "kubetempura-applier-objects-t1");
        assert_eq!(role["metadata"]["name"], "r-t1");
        assert_eq!(role["rules"][0]["verbs"][0], "get");
    }
}
