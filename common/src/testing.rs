//! Test support: the real GitHub webhook payloads (`pull_request`, `check_run`, `status` …) of the
//! npm package `@octokit/webhooks-examples` (installed by `make deps` into `node_modules/`).

use std::path::PathBuf;

/// One example delivery.
#[derive(Debug, Clone)]
pub struct Example {
    /// Where it came from, e.g. `api.github.com#3 (closed)`.
    pub source: String,
    /// `action` of the payload (empty for events without one, such as `status`).
    pub action: String,
    /// The payload, serialised as GitHub would send it.
    pub body: Vec<u8>,
}

/// The folder of the installed package (override with `OCTOKIT_WEBHOOKS_EXAMPLES`).
pub fn examples_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OCTOKIT_WEBHOOKS_EXAMPLES") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../node_modules/@octokit/webhooks-examples")
}

/// Every `pull_request` example of every folder (api.github.com and ghes-*), sorted by folder.
///
/// # Panics
/// When the package is not installed: run `make deps` (or `npm ci`) first.
pub fn pull_request_examples() -> Vec<Example> {
    examples("pull_request")
}

/// Every example of the webhook event `event` (`X-GitHub-Event`: `check_run`, `status` …) of
/// every folder (api.github.com and ghes-*), sorted by folder.
///
/// # Panics
/// When the package is not installed: run `make deps` (or `npm ci`) first.
pub fn examples(event: &str) -> Vec<Example> {
    let dir = examples_dir();
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `make deps` to install @octokit/webhooks-examples",
                dir.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("index.json").is_file())
        .collect();
    folders.sort();
    let mut out = Vec::new();
    for folder in folders {
        let name = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(folder.join("index.json"))
            .unwrap_or_else(|e| panic!("{}: {e}", folder.display()));
        let index: Vec<serde_json::Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", folder.display()));
        for entry in index.iter().filter(|e| e["name"] == event) {
            for (i, ex) in entry["examples"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let action = ex["action"].as_str().unwrap_or_default().to_owned();
                out.push(Example {
                    source: format!("{name}#{i} ({action})"),
                    action,
                    body: serde_json::to_vec(ex).unwrap_or_else(|e| panic!("{e}")),
                });
            }
        }
    }
    out
}

/// The largest example payload, for benchmarks.
pub fn largest_pull_request_example() -> Example {
    pull_request_examples()
        .into_iter()
        .max_by_key(|e| e.body.len())
        .unwrap_or_else(|| {
            panic!(
                "no pull_request examples found in {}",
                examples_dir().display()
            )
        })
}

/// A Lambda function-URL event (payload format 2.0, as API Gateway HTTP APIs send it too)
/// carrying one HTTP request; the body base64-encoded when `base64` (as AWS does for bodies
/// that are not text).
pub fn function_url_event(
    method: &str,
    headers: &[(String, String)],
    body: &[u8],
    base64: bool,
) -> serde_json::Value {
    use base64::Engine as _;
    let headers: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let body = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "kubetempura",
            "domainName": "kubetempura.lambda-url.eu-west-1.on.aws",
            "domainPrefix": "kubetempura",
            "http": {
                "method": method,
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1",
                "userAgent": "GitHub-Hookshot/kubetempura"
            },
            "requestId": "kubetempura",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000u64
        },
        "body": body,
        "isBase64Encoded": base64
    })
}
