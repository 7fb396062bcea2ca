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
    render_with_preview(file, pr, sha, extra).0
}

/// The objects `render` prints on stdout, and its stderr (warnings and the policy preview).
fn render_with_preview(
    file: &str,
    pr: &str,
    sha: &str,
    extra: &[&str],
) -> (Vec<serde_yaml::Value>, String) {
    let mut args = vec!["render", "-f", file, "--pr", pr, "--sha", sha];
    args.extend_from_slice(extra);
    let out = kubetempura(&args);
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let objects = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    (objects, String::from_utf8(out.stderr).unwrap())
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

/// A ReviewApp with every lifecycle setting: filters, a build gate, expiry, a cap.
const GATED: &str = "apiVersion: kubetempura.mercari.com/v1
kind: ReviewApp
metadata: {name: web, namespace: team}
spec:
  githubRepository: https://github.com/o/r
  policy:
    deployDrafts: false
    requiredLabels: [preview]
    excludedLabels: [no-preview]
    headBranches: ['feature/*']
    baseBranches: [main]
  waitFor:
    checkRuns: [build]
    workflows: [CI]
  expireAfter: 48h
  wakeLabel: preview
  maxActive: 3
  resources:
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: 'web-{{PR_NUMBER}}'}}
";

/// Renders [`GATED`] for PR 7 on `feature/x` with `extra` flags: the objects and the preview.
fn render_gated(extra: &[&str]) -> (Vec<serde_yaml::Value>, String) {
    let dir = std::env::temp_dir().join(format!(
        "kt-render-gated-{}-{}",
        std::process::id(),
        extra.join("_").replace(['/', ':', '='], "-")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("web.yaml");
    std::fs::write(&path, GATED).unwrap();
    let mut args = vec!["--branch", "feature/x"];
    args.extend_from_slice(extra);
    let rendered = render_with_preview(path.to_str().unwrap(), "7", SHA_1, &args);
    std::fs::remove_dir_all(&dir).unwrap();
    rendered
}

/// Asserts that `preview` holds each of `lines` (trimmed) as a whole line.
fn assert_lines(preview: &str, lines: &[&str]) {
    let have: Vec<&str> = preview.lines().map(str::trim).collect();
    for line in lines {
        assert!(have.contains(line), "no line {line:?} in:\n{preview}");
    }
}

#[test]
fn a_pull_request_meeting_the_filters_waits_for_passes_or_is_blocked_by_the_gate() {
    let label = ["--label", "preview"];
    let (pending_objects, pending) =
        render_gated(&[&label[..], &["--check", "check-run:build=success"]].concat());
    assert_lines(
        &pending,
        &[
            r#"ReviewApp team/web, pull request #7 (head "feature/x", base "main", labels ["preview"], draft: no, fork: no):"#,
            "policy: deploys this pull request",
            "forks (allowForks: false): met",
            "drafts (deployDrafts: false): met",
            "labels (required: preview; excluded: no-preview): met",
            "head branch (headBranches: feature/*): met",
            "base branch (baseBranches: main): met",
            "gate: pending: waiting for workflow `CI`",
            "check run `build`: success",
            "workflow `CI`: no result",
            "expireAfter 48h: removed after 48h without a push (phase Expired); a push or adding the label \"preview\" brings it back",
            "maxActive 3: at most 3 environments of this ReviewApp are deployed at once; the others wait in phase Queued",
            "phase: Waiting: the objects printed are applied once the gate passes (waiting for workflow `CI`)",
        ],
    );

    // A later result of the same check wins, as a re-run does; an unawaited check is named.
    let (passed_objects, passed) = render_gated(
        &[
            &label[..],
            &[
                "--check",
                "check-run:build=failure",
                "--check",
                "check-run:build=success",
                "--check",
                "workflow:CI=success",
                "--check",
                "status:ci/lint: go=failure",
            ],
        ]
        .concat(),
    );
    assert_lines(
        &passed,
        &[
            "gate: passed",
            "check run `build`: success",
            "workflow `CI`: success",
            "--check status `ci/lint: go`: not awaited, ignored",
            "phase: Applied: the objects printed (Queued instead while 3 environments of this ReviewApp are deployed)",
        ],
    );

    let (blocked_objects, blocked) = render_gated(
        &[
            &label[..],
            &[
                "--check",
                "workflow:CI=failure",
                "--check",
                "check-run:build=pending",
            ],
        ]
        .concat(),
    );
    assert_lines(
        &blocked,
        &[
            "gate: failed: workflow `CI` failed",
            "check run `build`: pending",
            "phase: Blocked: workflow `CI` failed; the objects printed are not applied (an earlier commit keeps serving)",
        ],
    );

    // Whatever the gate says, stdout is the same objects.
    assert_eq!(
        summary(&pending_objects),
        [("ConfigMap".into(), "web-7".into(), String::new())]
    );
    assert_eq!(passed_objects, pending_objects);
    assert_eq!(blocked_objects, pending_objects);
}

#[test]
fn an_excluded_label_skips_the_pull_request_and_says_which_filter() {
    let (objects, preview) = render_gated(&["--label", "preview", "--label", "no-preview"]);
    assert_lines(
        &preview,
        &[
            "policy: SKIPS this pull request: pull request carries excluded label(s): no-preview",
            "forks (allowForks: false): met",
            "labels (required: preview; excluded: no-preview): not met: pull request carries excluded label(s): no-preview",
            "phase: Skipped: the applier would apply none of the objects printed",
        ],
    );
    assert_eq!(objects.len(), 1, "the objects still print, for review");
}

#[test]
fn a_draft_skips_the_pull_request_and_every_unmet_filter_is_listed() {
    // A draft without the required label, from a fork: every filter it fails is named; the
    // verdict is the applier's first reason.
    let (_, preview) = render_gated(&["--draft", "--fork", "--author", "mallory"]);
    assert_lines(
        &preview,
        &[
            "policy: SKIPS this pull request: pull request comes from a fork (mallory/r); set spec.policy.allowForks to deploy forks",
            "drafts (deployDrafts: false): not met: pull request is a draft and spec.policy.deployDrafts is false",
            "labels (required: preview; excluded: no-preview): not met: pull request lacks required label(s): preview",
            "head branch (headBranches: feature/*): met",
            "phase: Skipped: the applier would apply none of the objects printed",
        ],
    );
    let (_, preview) = render_gated(&["--draft", "--label", "preview"]);
    assert_lines(
        &preview,
        &[
            "policy: SKIPS this pull request: pull request is a draft and spec.policy.deployDrafts is false",
        ],
    );
}

#[test]
fn a_reviewapp_without_lifecycle_settings_deploys_at_once_and_a_bad_check_flag_is_refused() {
    let sample = example("reviewapp-sample.yaml");
    let f = sample.to_str().unwrap();
    let (_, preview) =
        render_with_preview(f, "123", SHA_1, &["--check", "check-run:build=failure"]);
    assert_lines(
        &preview,
        &[
            "policy: deploys this pull request",
            "gate: none (spec.waitFor awaits nothing: every push deploys at once)",
            "--check check run `build`: not awaited, ignored",
            "phase: Applied: the objects printed",
        ],
    );
    assert!(
        !preview.contains("expireAfter") && !preview.contains("maxActive"),
        "{preview}"
    );
    for (bad, why) in [
        ("build=success", "is not KIND:NAME=STATE"),
        ("job:build=success", "is not a check kind"),
        ("check-run:build=done", "is not a check state"),
    ] {
        let out = kubetempura(&[
            "render", "-f", f, "--pr", "1", "--sha", SHA_1, "--check", bad,
        ]);
        assert!(!out.status.success(), "{bad} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[test]
fn env_flags_set_every_container_of_the_sample_s_workloads_and_nothing_else() {
    let sample = example("reviewapp-sample.yaml");
    let f = sample.to_str().unwrap();
    let plain = render(f, "123", SHA_1, &[]);
    let objs = render(
        f,
        "123",
        SHA_1,
        &[
            "--env",
            "LOG_LEVEL=debug",
            "--env",
            "PUBLIC_URL=https://pr{{PR_NUMBER}}.review.example",
            "--env",
            "EMPTY=",
            "--env",
            "LOG_LEVEL=info",
        ],
    );
    let want: serde_yaml::Value = serde_yaml::from_str(
        "[{name: LOG_LEVEL, value: info}, {name: PUBLIC_URL, value: 'https://pr123.review.example'}, {name: EMPTY, value: ''}]",
    )
    .unwrap();
    let mut containers = 0;
    let mut stripped = objs.clone();
    for o in &mut stripped {
        // Looked up with get_mut: indexing a mapping inserts the keys it lacks.
        let list = ["spec", "template", "spec", "containers"]
            .iter()
            .try_fold(o, |v, key| v.get_mut(key))
            .and_then(serde_yaml::Value::as_sequence_mut);
        let Some(list) = list else { continue };
        for c in list {
            assert_eq!(c["env"], want, "{c:?}");
            c.as_mapping_mut().unwrap().remove("env");
            containers += 1;
        }
    }
    assert_eq!(containers, 1, "the sample's Deployment has one container");
    // Without their env the objects are those rendered without --env: the Service untouched.
    assert_eq!(stripped, plain);
}

#[test]
fn a_bad_env_flag_exits_2_with_clap_s_one_line_error() {
    let sample = example("reviewapp-sample.yaml");
    let f = sample.to_str().unwrap();
    for (bad, why) in [
        ("FOO", "\"FOO\" is not NAME=VALUE (e.g. LOG_LEVEL=debug)"),
        ("=debug", "\"=debug\" is not NAME=VALUE: the name is empty"),
    ] {
        let out = kubetempura(&["render", "-f", f, "--pr", "1", "--sha", SHA_1, "--env", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad} was accepted");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines,
            [
                format!("error: invalid value '{bad}' for '--env <NAME=VALUE>': {why}").as_str(),
                "For more information, try '--help'.",
            ],
            "{bad}"
        );
    }
}
