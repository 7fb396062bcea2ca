//! Writes the seed corpora `corpus/<target>/` from the `@octokit/webhooks-examples` payloads
//! (`make deps` installs them) and the ReviewApps of `infra/examples/`, in the input formats of
//! the targets. A handful of files per target: the fuzzer grows its own corpus from them.
//!
//! Run from `fuzz/`: `cargo run --example seed-corpora` (`make fuzz-seeds`).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use kubetempura_common::event::{Normalized, normalize};
use kubetempura_common::signature::{SIGNATURE_HEADER, sign};
use kubetempura_common::testing::examples;
use kubetempura_fuzz::request::{
    BASE64, FORM, RAW_EVENT, SIGN, SMALL_LIMIT, encode, function_url_event,
};
use kubetempura_fuzz::{KINDS, SECRET};
use serde_json::{Value, json};

const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

/// A seed's file name: `event-action`, or `event` for events without an action.
fn seed_name(event: &str, action: &str) -> String {
    if action.is_empty() {
        event.to_owned()
    } else {
        format!("{event}-{action}")
    }
}

/// The first example of `event` with `action` (any action when empty).
fn example(event: &str, action: &str) -> Vec<u8> {
    examples(event)
        .into_iter()
        .find(|e| action.is_empty() || e.action == action)
        .unwrap_or_else(|| panic!("no {event} {action} example"))
        .body
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create the corpus folder");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
}

fn webhook_request(dir: &Path) {
    let headers = |event: &'static str| {
        vec![
            ("x-github-event", event),
            ("x-github-delivery", DELIVERY),
            ("content-type", "application/json"),
            ("user-agent", "GitHub-Hookshot/044aadd"),
        ]
    };
    let seeds: [(&str, u8, &str, &str); 8] = [
        ("pull_request-opened", SIGN, "pull_request", "opened"),
        (
            "pull_request-synchronize-form",
            SIGN | FORM,
            "pull_request",
            "synchronize",
        ),
        (
            "check_run-completed-base64",
            SIGN | BASE64,
            "check_run",
            "completed",
        ),
        ("check_suite-completed", SIGN, "check_suite", "completed"),
        (
            "workflow_run-form-base64",
            SIGN | FORM | BASE64,
            "workflow_run",
            "completed",
        ),
        ("ping", SIGN, "ping", ""),
        ("ping-too-large", SIGN | SMALL_LIMIT, "ping", ""),
        ("pull_request-closed-unsigned", 0, "pull_request", "closed"),
    ];
    for (name, flags, event, action) in seeds {
        let body = example(event, action);
        let mut headers = headers(event);
        if flags & SIGN == 0 {
            headers.push((SIGNATURE_HEADER, "sha256=00"));
        }
        write(dir, name, &encode(flags, &headers, &body));
    }
    // A raw function-URL event (signed by the target over the body lambda_http gives).
    let body = example("status", "");
    let headers: Vec<(String, String)> = headers("status")
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut raw = vec![SIGN | RAW_EVENT];
    raw.extend_from_slice(function_url_event("POST", &headers, &body, false).as_bytes());
    write(dir, "status-function-url-event", &raw);
    // The same event signed by hand: the target's RAW_EVENT without SIGN keeps its header.
    let mut signed = headers;
    signed.push((SIGNATURE_HEADER.to_owned(), sign(SECRET, &body)));
    let mut raw = vec![RAW_EVENT];
    raw.extend_from_slice(function_url_event("POST", &signed, &body, true).as_bytes());
    write(dir, "status-function-url-event-base64", &raw);
}

fn normalize_seeds(dir: &Path) {
    let seeds = [
        ("pull_request", "opened"),
        ("pull_request", "synchronize"),
        ("pull_request", "closed"),
        ("check_run", "completed"),
        ("check_suite", "completed"),
        ("workflow_run", "completed"),
        ("status", ""),
    ];
    for (event, action) in seeds {
        let kind = KINDS.iter().position(|k| *k == event).expect("a kind");
        let mut input = vec![u8::try_from(kind).expect("five kinds")];
        input.extend_from_slice(&example(event, action));
        write(dir, &seed_name(event, action), &input);
    }
}

fn render(dir: &Path, examples_dir: &Path) {
    let vars = |head: &str, title: &str| {
        [
            "123",
            head,
            "main",
            title,
            "octocat",
            "mercari",
            "not-exists",
            "0123456789abcdef0123456789abcdef01234567",
            "reviewapp-sample",
            "reviews",
        ]
        .join("\0")
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir)
        .expect("infra/examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for (i, file) in files.iter().enumerate() {
        let text = std::fs::read_to_string(file).expect("read an example");
        let review_app: Value = serde_yaml::from_str(&text).expect("an example is YAML");
        let resources = &review_app["spec"]["resources"];
        let (head, title) = if i % 2 == 0 {
            ("feature/login", "Add login")
        } else {
            (
                "Feature/ÜNICODE__--x.y",
                "{{PR_NUMBER}}: a: b\n- c\n---\n\"quoted\" '{{",
            )
        };
        let mut input = vars(head, title).into_bytes();
        input.push(0);
        input.extend_from_slice(resources.to_string().as_bytes());
        let name = file.file_stem().expect("a file name").to_string_lossy();
        write(dir, &name, &input);
    }
}

fn queue_message(dir: &Path) {
    let at: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().expect("a time");
    for (event, action) in [
        ("pull_request", "opened"),
        ("check_run", "completed"),
        ("status", ""),
    ] {
        let messages = match normalize(event, DELIVERY, &example(event, action), at) {
            Ok(Normalized::Event(e)) => vec![e.to_json()],
            Ok(Normalized::Checks(c)) => c.iter().map(|c| c.to_json()).collect(),
            other => panic!("{event} {action}: {other:?}"),
        };
        write(dir, &seed_name(event, action), messages[0].as_bytes());
    }
    let seeds = [
        (
            "feedback-ready",
            json!({"version": 1, "namespace": "team-a", "reviewApp": "web", "environment": "web-pr12",
                   "repository": "Mercari/Web", "prNumber": 12,
                   "headSha": "0123456789abcdef0123456789abcdef01234567", "state": "ready",
                   "message": "1 of 1 replicas available",
                   "environmentUrl": "https://pr12.review.example.com", "time": "2026-12-01T10:00:00Z"}),
        ),
        (
            "policy-deployment-applier-sa",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                   "spec": {"template": {"spec": {"serviceAccountName": "kubetempura-applier"}}}}),
        ),
        (
            "policy-secret-sa-token",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"},
                   "type": "kubernetes.io/service-account-token"}),
        ),
        (
            "policy-own-kind",
            json!({"apiVersion": "kubetempura.mercari.com/v1", "kind": "ReviewApp",
                   "metadata": {"name": "r"}}),
        ),
    ];
    for (name, value) in seeds {
        write(dir, name, value.to_string().as_bytes());
    }
    write(dir, "group-kind", b"ClusterRole.rbac.authorization.k8s.io");
    write(dir, "glob", b"feature/*-?\nfeature/login-2");
}

fn main() {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = fuzz.join("corpus");
    webhook_request(&corpus.join("webhook_request"));
    normalize_seeds(&corpus.join("normalize"));
    render(&corpus.join("render"), &fuzz.join("../infra/examples"));
    queue_message(&corpus.join("queue_message"));
    println!("seed corpora written to {}", corpus.display());
}
