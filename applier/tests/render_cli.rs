//! `kubetempura render` as a user runs it: the shared examples render to the names and images of
//! the announcement's walkthrough, hostile input cannot change the output's structure, and bad
//! input exits non-zero with a one-line error.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::PathBuf;
use std::process::{Command, Output};

const SHA_1: &str = "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7";
const SHA_2: &str = "d0451ad4d774c8fbc843d3251530dcabb3c635a9";

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../infra/examples")
        .join(name)
}

fn kubetempura(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubetempura"))
        .args(args)
        .output()
        .expect("run kubetempura")
}

fn render(file: &str, pr: &str, sha: &str, extra: &[&str]) -> Vec<serde_yaml::Value> {
    let mut args = vec!["render", "-f", file, "--pr", pr, "--sha", sha];
    args.extend_from_slice(extra);
    let out = kubetempura(&args);
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn summary(objs: &[serde_yaml::Value]) -> Vec<(String, String, String)> {
    objs.iter()
        .map(|o| {
            let image = o["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            (
                o["kind"].as_str().unwrap().to_owned(),
                o["metadata"]["name"].as_str().unwrap().to_owned(),
                image,
            )
        })
        .collect()
}

fn err_line(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "error is not one line: {err:?}"
    );
    err
}

#[test]
fn sample_renders_the_walkthrough_names_and_images() {
    let sample = example("reviewapp-sample.yaml");
    let f = sample.to_str().unwrap();
    let step1 = render(f, "123", SHA_1, &[]);
    assert_eq!(
        summary(&step1),
        [
            (
                "Deployment".into(),
                "reviewapp-sample-pr123".into(),
                "ghcr.io/stefanprodan/podinfo:pr123-32f7bfe".into()
            ),
            (
                "Service".into(),
                "reviewapp-sample-pr123".into(),
                String::new()
            ),
        ]
    );
    let step2 = render(f, "124", SHA_1, &[]);
    assert_eq!(summary(&step2)[0].1, "reviewapp-sample-pr124");
    let step3 = render(f, "123", SHA_2, &[]);
    assert_eq!(
        summary(&step3)[0].2,
        "ghcr.io/stefanprodan/podinfo:pr123-d0451ad"
    );
    for o in &step1 {
        assert_eq!(o["metadata"]["namespace"], "default");
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "kubetempura"
        );
        assert_eq!(o["metadata"]["labels"]["kubetempura.mercari.com/pr"], "123");
    }
}

#[test]
fn istio_example_renders_the_virtual_service_too() {
    let istio = example("reviewapp-istio.yaml");
    let objs = render(istio.to_str().unwrap(), "123", SHA_1, &[]);
    let s = summary(&objs);
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].2, "ghcr.io/stefanprodan/podinfo:pr123-32f7bfe");
    assert_eq!(
        (s[2].0.as_str(), s[2].1.as_str()),
        ("VirtualService", "reviewapp-sample-pr123")
    );
    assert_eq!(objs[2]["spec"]["hosts"][0], "pr123.review-app.example");
    assert_eq!(
        objs[2]["spec"]["http"][0]["route"][0]["destination"]["host"],
        "reviewapp-sample-pr123.default.svc.cluster.local"
    );
}

#[test]
fn shipped_examples_equal_the_shared_acceptance_inputs() {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/examples");
    if !shared.is_dir() {
        // CI and developer machines lay shared/ beside the clone; a bare clone elsewhere has no copy.
        eprintln!("no ../shared/examples beside the checkout; comparing nothing");
        return;
    }
    for name in ["reviewapp-sample.yaml", "reviewapp-istio.yaml"] {
        assert_eq!(
            std::fs::read_to_string(example(name)).unwrap(),
            std::fs::read_to_string(shared.join(name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn hostile_branch_names_cannot_change_the_structure() {
    let dir = std::env::temp_dir().join(format!("kt-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ra.yaml");
    std::fs::write(
        &file,
        "apiVersion: kubetempura.mercari.com/v1\nkind: ReviewApp\nmetadata: {name: ra, namespace: team}\nspec:\n  githubRepository: https://github.com/o/r\n  resources:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: cm-{{HEAD_BRANCH_SLUG}}\n    data:\n      branch: \"{{HEAD_BRANCH}}\"\n      title: \"{{ PR_TITLE }}\"\n",
    )
    .unwrap();
    let hostile = "x\"\n---\nkind: ClusterRoleBinding\nmetadata: {name: pwn}\n: {{PR_NUMBER}} # ";
    let objs = render(
        file.to_str().unwrap(),
        "5",
        SHA_1,
        &["--branch", hostile, "--title", "a: b\n- c\n..."],
    );
    assert_eq!(objs.len(), 1, "the hostile branch produced extra documents");
    let o = &objs[0];
    assert_eq!(o["kind"], "ConfigMap");
    assert_eq!(o["data"]["branch"].as_str(), Some(hostile));
    assert_eq!(o["data"]["title"].as_str(), Some("a: b\n- c\n..."));
    let keys: Vec<&str> = o["data"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, ["branch", "title"]);
    let name = o["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("cm-x-kind-clusterrolebinding"), "{name}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_exits_non_zero_with_a_one_line_error() {
    let sample = example("reviewapp-sample.yaml");
    let f = sample.to_str().unwrap();
    let e = err_line(&kubetempura(&[
        "render", "-f", f, "--pr", "12a", "--sha", SHA_1,
    ]));
    assert!(
        e.contains("--pr \"12a\" is not a pull request number"),
        "{e}"
    );
    let e = err_line(&kubetempura(&[
        "render", "-f", f, "--pr", "1", "--sha", "32f7bfe",
    ]));
    assert!(e.contains("not a full 40-character hex commit SHA"), "{e}");
    let e = err_line(&kubetempura(&[
        "render",
        "-f",
        "/nonexistent.yaml",
        "--pr",
        "1",
        "--sha",
        SHA_1,
    ]));
    assert!(e.contains("cannot read /nonexistent.yaml"), "{e}");

    let dir = std::env::temp_dir().join(format!("kt-render-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "notra.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "expected a kubetempura.mercari.com/v1 ReviewApp",
        ),
        ("badyaml.yaml", "apiVersion: [unclosed\n", "invalid YAML"),
        (
            "refused.yaml",
            "apiVersion: kubetempura.mercari.com/v1\nkind: ReviewApp\nmetadata: {name: ra}\nspec:\n  githubRepository: https://github.com/o/r\n  resources:\n  - {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: x}}\n",
            "ClusterRoleBinding.rbac.authorization.k8s.io grants privileges",
        ),
        (
            "norepo.yaml",
            "apiVersion: kubetempura.mercari.com/v1\nkind: ReviewApp\nmetadata: {name: ra}\nspec:\n  githubRepository: not-a-url\n  resources: []\n",
            "is not a repository URL",
        ),
    ];
    for (name, text, want) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let e = err_line(&kubetempura(&[
            "render",
            "-f",
            path.to_str().unwrap(),
            "--pr",
            "1",
            "--sha",
            SHA_1,
        ]));
        assert!(e.contains(want), "{name}: {e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn allow_kind_lets_the_operator_permit_a_refused_kind() {
    let dir = std::env::temp_dir().join(format!("kt-render-allow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ns.yaml");
    std::fs::write(&path, "apiVersion: kubetempura.mercari.com/v1\nkind: ReviewApp\nmetadata: {name: ra}\nspec:\n  githubRepository: https://github.com/o/r\n  resources:\n  - {apiVersion: v1, kind: Namespace, metadata: {name: 'pr-{{PR_NUMBER}}'}}\n").unwrap();
    let objs = render(
        path.to_str().unwrap(),
        "9",
        SHA_1,
        &["--allow-kind", "Namespace"],
    );
    assert_eq!(objs[0]["metadata"]["name"], "pr-9");
    assert!(objs[0]["metadata"].get("namespace").is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn crd_subcommand_prints_the_committed_crds() {
    let out = kubetempura(&["crd"]);
    assert!(out.status.success());
    let committed = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/crds/crds.yaml"),
    )
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed);
}
