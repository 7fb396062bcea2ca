//! The Kubernetes install under `infra/` and every example under `infra/examples/`, applied with
//! the real kubectl (`make deps` installs it into `.venv`) to the real control plane of the test
//! run (tests/controlplane), which validates every object as a cluster does:
//!
//! - every example ReviewApp applies server-side and reads back unchanged, and what it renders
//!   (`kubetempura render`, in process) applies too, custom kinds included (with the fixture
//!   CRDs for Istio's VirtualService and the Gateway API's HTTPRoute);
//! - Go-template and Prometheus `{{ ... }}` text survives rendering and the API round trip byte
//!   for byte while `{{PR_NUMBER}}` is replaced;
//! - `kubectl apply -k infra/` and every overlay of `infra/overlays/` install, and every object
//!   they render exists afterwards; the invariants other parts rely on hold (terraform's
//!   namespace and service account, the settings ConfigMap, the drain fitting the grace period,
//!   no wildcard RBAC, the credential overlays' paths).
//!
//! `make test-infra` runs this with the static checks (kubernetes-validate, checkov).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kubetempura_applier::render_cmd::{self, RenderArgs};
use kubetempura_tests::harness::controlplane::Cluster;
use kubetempura_tests::harness::{tools, wait_for};
use serde_json::{Value, json};

const SHA: &str = "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7";
const PR: &str = "1";

fn workspace() -> PathBuf {
    tools::workspace_root()
}

fn fixture(name: &str) -> PathBuf {
    workspace().join("tests/fixtures").join(name)
}

/// Every `infra/examples/*.yaml`, sorted; never empty (the test must not pass vacuously).
fn examples() -> Vec<PathBuf> {
    let dir = workspace().join("infra/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "reviewapp-sample.yaml",
        "reviewapp-istio.yaml",
        "reviewapp-gateway-api.yaml",
        "reviewapp-go-template.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
    files
}

/// The YAML documents of `text` as JSON values (empty documents skipped).
fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The argument `kubectl get` resolves to exactly this kind and version.
fn resource_arg(obj: &Value) -> String {
    let api_version = obj["apiVersion"].as_str().unwrap();
    let kind = obj["kind"].as_str().unwrap().to_ascii_lowercase();
    match api_version.split_once('/') {
        Some((group, version)) => format!("{kind}.{version}.{group}"),
        None => kind,
    }
}

/// Replaces the one variable the Go-template example uses, as the renderer does
/// (`{{PR_NUMBER}}`, whitespace inside the braces allowed), and nothing else.
fn substitute_pr_number(text: &str) -> String {
    regex::Regex::new(r"\{\{\s*PR_NUMBER\s*\}\}")
        .unwrap()
        .replace_all(text, PR)
        .into_owned()
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// The control plane and a kubectl configured for it (as its administrator), with private
/// cache and home directories.
struct Kubectl {
    _cluster: Cluster,
    bin: PathBuf,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    async fn start() -> Kubectl {
        let cluster = Cluster::connect(None).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = cluster.kubeconfig.clone();
        let k = Kubectl {
            _cluster: cluster,
            bin: tools::kubectl(),
            kubeconfig,
            dir,
        };
        wait_for(
            "kubectl to reach the control plane",
            Duration::from_secs(20),
            || {
                let k = &k;
                async move { k.run(&["version", "-o", "json"]).await.ok.then_some(()) }
            },
        )
        .await;
        k
    }

    async fn run(&self, args: &[&str]) -> Out {
        let out = tokio::process::Command::new(&self.bin)
            .args(args)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .current_dir(workspace())
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `make deps`", self.bin.display()));
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.ok,
            "kubectl {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    async fn get(&self, obj: &Value) -> Value {
        let name = obj["metadata"]["name"].as_str().unwrap();
        let mut args = vec!["get".to_owned(), resource_arg(obj), name.to_owned()];
        if let Some(ns) = obj["metadata"]["namespace"].as_str() {
            args.extend(["-n".to_owned(), ns.to_owned()]);
        }
        args.extend(["-o".to_owned(), "json".to_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        serde_json::from_str(&self.ok(&args).await).expect("kubectl JSON output")
    }

    async fn apply_file(&self, path: &Path) -> String {
        self.ok(&["apply", "--server-side", "-f", path.to_str().unwrap()])
            .await
    }

    /// Applies CRDs and waits until each is Established.
    async fn apply_crds(&self, path: &Path) {
        self.apply_file(path).await;
        for crd in documents(&read(path)) {
            let name = format!("crd/{}", crd["metadata"]["name"].as_str().unwrap());
            self.ok(&[
                "wait",
                "--for",
                "condition=Established",
                "--timeout=20s",
                &name,
            ])
            .await;
        }
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).expect("write manifest");
        p
    }
}

/// Renders `path` for PR 1 as `kubetempura render` does, labelled `preview` with its `build`
/// check run and `CI` workflow passed (what reviewapp-lifecycle.yaml's policy and gate ask
/// for); panics on an error or a warning.
fn render(path: &Path) -> String {
    let args = RenderArgs {
        file: path.to_path_buf(),
        pr: PR.into(),
        sha: SHA.into(),
        branch: "feature/x".into(),
        base: "main".into(),
        author: "octocat".into(),
        title: "A pull request".into(),
        namespace: "default".into(),
        allow_kinds: Vec::new(),
        labels: vec!["preview".into()],
        draft: false,
        fork: false,
        checks: ["check-run:build=success", "workflow:CI=success"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect(),
        env: Vec::new(),
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    render_cmd::run(&args, &mut out, &mut err)
        .unwrap_or_else(|e| panic!("{} does not render: {e:#}", path.display()));
    // Besides warnings, stderr holds the policy preview: the examples deploy every pull request.
    let err = String::from_utf8(err).unwrap();
    assert!(
        !err.contains("warning:") && err.contains("phase: Applied"),
        "{} renders with warnings or is not deployed:\n{err}",
        path.display()
    );
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn every_example_and_what_it_renders_apply_server_side_to_the_control_plane() {
    let k = Kubectl::start().await;
    k.apply_crds(&workspace().join("infra/crds/crds.yaml"))
        .await;
    k.apply_crds(&fixture("virtualservice-crd.yaml")).await;
    k.apply_crds(&fixture("httproute-crd.yaml")).await;

    for example in examples() {
        let file = example.file_name().unwrap().to_string_lossy().into_owned();
        // The ReviewApp itself: applied, and read back with its templates unchanged.
        let out = k.apply_file(&example).await;
        for app in documents(&read(&example)) {
            let name = app["metadata"]["name"].as_str().unwrap();
            assert!(
                out.contains(&format!(
                    "reviewapp.kubetempura.mercari.com/{name} serverside-applied"
                )),
                "{file}: {out}"
            );
            let live = k.get(&app).await;
            assert_eq!(
                live["spec"]["resources"], app["spec"]["resources"],
                "{file}: the templates changed on the way through the API"
            );
        }

        // What it renders for PR 1: applied, and every object exists with kubetempura's labels.
        let rendered = render(&example);
        let objects = documents(&rendered);
        assert!(!objects.is_empty(), "{file} renders nothing");
        let path = k.write(&format!("rendered-{file}"), &rendered);
        k.apply_file(&path).await;
        for obj in &objects {
            let live = k.get(obj).await;
            assert_eq!(live["metadata"]["name"], obj["metadata"]["name"], "{file}");
            assert_eq!(
                live["metadata"]["labels"]["app.kubernetes.io/managed-by"], "kubetempura",
                "{file}: {live}"
            );
        }
    }

    // Gateway API: the HTTPRoute is served and attached to the shared Gateway for pr1's host.
    let route = k
        .ok(&[
            "get",
            "httproutes.v1.gateway.networking.k8s.io",
            "reviewapp-gateway-api-pr1",
            "-o",
            "json",
        ])
        .await;
    let route: Value = serde_json::from_str(&route).unwrap();
    assert_eq!(
        route["spec"]["hostnames"],
        json!(["pr1.review.example.com"])
    );
    assert_eq!(route["spec"]["parentRefs"][0]["name"], "review-apps");
    assert_eq!(
        route["spec"]["rules"][0]["backendRefs"][0]["name"],
        "reviewapp-gateway-api-pr1"
    );
}

#[tokio::test]
async fn go_template_text_survives_rendering_and_the_api_byte_for_byte() {
    let example = workspace().join("infra/examples/reviewapp-go-template.yaml");
    let app = documents(&read(&example)).remove(0);
    let template = app["spec"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "ConfigMap")
        .expect("the example has a ConfigMap template")
        .clone();
    // The example must really carry foreign template text and our variable, or this test
    // proves nothing.
    let all_text = serde_json::to_string(&template).unwrap();
    for marker in [
        "{{ .Values.foo }}",
        "{{- range .Items }}",
        "{{ $labels.instance }}",
        "{{PR_NUMBER}}",
        "{{ PR_NUMBER }}",
    ] {
        assert!(
            all_text.contains(marker),
            "{marker} missing from the example"
        );
    }
    let expected = |v: &Value| -> Value {
        let map = v.as_object().unwrap();
        Value::Object(
            map.iter()
                .map(|(key, val)| {
                    (
                        key.clone(),
                        Value::String(substitute_pr_number(val.as_str().unwrap())),
                    )
                })
                .collect(),
        )
    };
    let want_data = expected(&template["data"]);
    let want_annotations = expected(&template["metadata"]["annotations"]);
    assert_ne!(want_data, template["data"], "{{{{PR_NUMBER}}}} is replaced");

    // After rendering (what `kubetempura render` prints) ...
    let rendered = documents(&render(&example));
    let cm = rendered
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .expect("a rendered ConfigMap");
    assert_eq!(cm["metadata"]["name"], "reviewapp-go-template-pr1");
    assert_eq!(cm["data"], want_data, "rendered data differs");
    for (key, value) in want_annotations.as_object().unwrap() {
        assert_eq!(
            &cm["metadata"]["annotations"][key], value,
            "annotation {key}"
        );
    }

    // ... and after a server-side apply and a read back.
    let k = Kubectl::start().await;
    let path = k.write("rendered.yaml", &render(&example));
    k.apply_file(&path).await;
    let live = k.get(cm).await;
    assert_eq!(live["data"], want_data, "data changed through the API");
    for (key, value) in want_annotations.as_object().unwrap() {
        assert_eq!(
            &live["metadata"]["annotations"][key], value,
            "annotation {key}"
        );
    }
}

/// Objects rendered by `kubectl kustomize dir`.
async fn kustomize(k: &Kubectl, dir: &str) -> Vec<Value> {
    documents(&k.ok(&["kustomize", dir]).await)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} not rendered"))
}

fn find_prefix<'a>(objects: &'a [Value], kind: &str, prefix: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("{kind} {prefix}* not rendered"))
}

/// The applier container and the data of the ConfigMap its envFrom names, both as applied.
async fn applier_settings(k: &Kubectl, objects: &[Value]) -> (Value, Value) {
    let deployment = k
        .get(find(objects, "Deployment", "kubetempura-applier"))
        .await;
    let container = deployment["spec"]["template"]["spec"]["containers"][0].clone();
    let cm_name = container["envFrom"][0]["configMapRef"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let cm = k
        .get(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": cm_name, "namespace": "kubetempura"}}))
        .await;
    (deployment, cm["data"].clone())
}

#[tokio::test]
async fn the_install_and_every_overlay_apply_server_side_to_the_control_plane() {
    let k = Kubectl::start().await;

    // The base: `kubectl apply -k infra/`.
    let out = k.ok(&["apply", "--server-side", "-k", "infra/"]).await;
    let base = kustomize(&k, "infra/").await;
    assert_eq!(
        out.lines()
            .filter(|l| l.ends_with("serverside-applied"))
            .count(),
        base.len(),
        "{out}"
    );
    for obj in &base {
        k.get(obj).await;
    }
    let kinds: Vec<&str> = base.iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in [
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from the install");
    }
    assert!(
        !base
            .iter()
            .any(|o| o["kind"] == "Ingress" || o["spec"]["type"] == "LoadBalancer"),
        "the applier needs no inbound exposure"
    );

    // The names terraform/ trusts (applier_namespace, applier_service_account).
    let sa = k
        .get(find(&base, "ServiceAccount", "kubetempura-applier"))
        .await;
    assert_eq!(sa["metadata"]["namespace"], "kubetempura");
    let (deployment, settings) = applier_settings(&k, &base).await;
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "kubetempura-applier");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let container = &pod["containers"][0];
    assert_eq!(container["args"], json!(["run"]));
    assert_eq!(container["image"], "ghcr.io/kubetempura/kubetempura:latest");
    assert!(settings["QUEUE_URL"].as_str().is_some(), "{settings}");
    // The drain fits in the grace period.
    let drain: u64 = settings["KUBETEMPURA_SHUTDOWN_GRACE_SECONDS"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        pod["terminationGracePeriodSeconds"].as_u64().unwrap() > drain,
        "terminationGracePeriodSeconds must exceed the applier's drain of {drain} s"
    );

    // Every RBAC rule names its groups, resources and verbs.
    for role in base.iter().filter(|o| o["kind"] == "ClusterRole") {
        let live = k.get(role).await;
        for rule in live["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                let values = rule[field].as_array().unwrap();
                assert!(!values.is_empty(), "{rule}");
                assert!(!values.contains(&json!("*")), "wildcard in {rule}");
            }
        }
    }

    // Every overlay applies on top, and all it renders exists.
    k.apply_file(&k.write(
        "team-namespaces.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n",
    ))
    .await;
    let overlays_dir = workspace().join("infra/overlays");
    let mut overlays: Vec<String> = std::fs::read_dir(&overlays_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    overlays.sort();
    assert_eq!(
        overlays,
        ["eks-irsa", "per-namespace", "static-keys", "web-identity"]
    );
    for overlay in &overlays {
        let dir = format!("infra/overlays/{overlay}");
        k.ok(&["apply", "--server-side", "-k", &dir]).await;
        let objects = kustomize(&k, &dir).await;
        for obj in &objects {
            k.get(obj).await;
        }
        match overlay.as_str() {
            "eks-irsa" => {
                let sa = k
                    .get(find(&objects, "ServiceAccount", "kubetempura-applier"))
                    .await;
                assert!(
                    sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
                        .as_str()
                        .is_some_and(|a| a.starts_with("arn:aws:iam::")),
                    "{sa}"
                );
            }
            "web-identity" => {
                let (deployment, settings) = applier_settings(&k, &objects).await;
                let pod = &deployment["spec"]["template"]["spec"];
                let source = &pod["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
                assert_eq!(source["audience"], "sts.amazonaws.com");
                let mount = pod["containers"][0]["volumeMounts"][0]["mountPath"]
                    .as_str()
                    .unwrap();
                assert_eq!(
                    settings["AWS_WEB_IDENTITY_TOKEN_FILE"],
                    format!("{mount}/{}", source["path"].as_str().unwrap())
                );
                assert!(settings["AWS_ROLE_ARN"].as_str().is_some(), "{settings}");
                assert!(
                    settings["QUEUE_URL"].as_str().is_some(),
                    "merged, not replaced"
                );
            }
            "static-keys" => {
                let (deployment, settings) = applier_settings(&k, &objects).await;
                let pod = &deployment["spec"]["template"]["spec"];
                let secret = &pod["volumes"][0]["secret"];
                assert_eq!(secret["secretName"], "kubetempura-aws-credentials");
                let mount = pod["containers"][0]["volumeMounts"][0]["mountPath"]
                    .as_str()
                    .unwrap();
                assert_eq!(
                    settings["AWS_SHARED_CREDENTIALS_FILE"],
                    format!("{mount}/{}", secret["items"][0]["path"].as_str().unwrap())
                );
                assert!(
                    !settings
                        .as_object()
                        .unwrap()
                        .keys()
                        .any(|k| k.contains("SECRET")),
                    "no key in the ConfigMap: {settings}"
                );
            }
            "per-namespace" => {
                for ns in ["team-a", "team-b"] {
                    let rb = objects
                        .iter()
                        .find(|o| o["kind"] == "RoleBinding" && o["metadata"]["namespace"] == ns)
                        .unwrap_or_else(|| panic!("no RoleBinding in {ns}"));
                    assert_eq!(rb["roleRef"]["name"], "kubetempura-applier-objects");
                }
                assert!(
                    !objects.iter().any(|o| o["kind"] == "ClusterRoleBinding"
                        && o["metadata"]["name"] == "kubetempura-applier-objects"),
                    "the cluster-wide objects binding is removed"
                );
                find(&objects, "ClusterRoleBinding", "kubetempura-applier");
            }
            other => panic!("overlay {other} has no assertions: add them here"),
        }
        find_prefix(&objects, "ConfigMap", "kubetempura-applier-");
    }
}
