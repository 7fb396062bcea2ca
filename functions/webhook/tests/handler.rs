//! In-process handler tests: every row of the response table, every real `pull_request` example
//! signed as GitHub signs it, real check results (`check_run`, `check_suite`, `workflow_run`,
//! `status`), and both Lambda payload formats (function URL and API Gateway HTTP API). The queue is a recording stand-in here; the cross-process tests in `tests/` use
//! the SQS emulator.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use kubetempura_common::check::{CheckEvent, CheckKind, CheckState, QueueMessage};
use kubetempura_common::event::PrEvent;
use kubetempura_common::signature::{WebhookSecrets, sign};
use kubetempura_common::testing::{examples, pull_request_examples};
use kubetempura_webhook::handler::{App, Facts, Reply, handle, process};
use kubetempura_webhook::queue::{EventQueue, QueueError, attributes};

const SECRET: &str = "It's a Secret to Everybody";
const ACTED_ON: &[&str] = &[
    "opened",
    "reopened",
    "synchronize",
    "closed",
    "labeled",
    "unlabeled",
    "ready_for_review",
    "converted_to_draft",
];

#[derive(Default)]
struct Recording {
    sent: Mutex<Vec<QueueMessage>>,
    /// Refuse every message once this many were taken (`Some(0)`: a queue that is down).
    fail_after: Option<usize>,
}

impl Recording {
    fn failing_after(taken: usize) -> Self {
        Self {
            fail_after: Some(taken),
            ..Default::default()
        }
    }

    /// The messages sent, each read by `pick` (which panics on a message of the other kind).
    fn sent<T>(&self, pick: impl Fn(&QueueMessage) -> Option<T>) -> Vec<T> {
        let sent = self.sent.lock().unwrap();
        sent.iter()
            .map(|m| pick(m).unwrap_or_else(|| panic!("unexpected message {m:?}")))
            .collect()
    }

    /// The pull-request events sent.
    fn events(&self) -> Vec<PrEvent> {
        self.sent(|m| match m {
            QueueMessage::PullRequest(e) => Some((**e).clone()),
            QueueMessage::Check(_) => None,
        })
    }

    /// The check events sent.
    fn checks(&self) -> Vec<CheckEvent> {
        self.sent(|m| match m {
            QueueMessage::Check(c) => Some((**c).clone()),
            QueueMessage::PullRequest(_) => None,
        })
    }

    fn len(&self) -> usize {
        self.sent.lock().unwrap().len()
    }
}

impl EventQueue for Recording {
    fn send<'a>(
        &'a self,
        message: &'a QueueMessage,
    ) -> Pin<Box<dyn Future<Output = Result<String, QueueError>> + Send + 'a>> {
        Box::pin(async move {
            let mut sent = self.sent.lock().unwrap();
            if self.fail_after.is_some_and(|n| sent.len() >= n) {
                return Err(QueueError("connection refused".into()));
            }
            sent.push(message.clone());
            Ok(format!("msg-{}", sent.len()))
        })
    }
}

fn app(queue: Arc<Recording>) -> App {
    App {
        secrets: WebhookSecrets::from_comma_separated(&format!("rotated-new,{SECRET}")).unwrap(),
        queue,
        max_body_bytes: 64 * 1024,
    }
}

fn headers(event: &str, body: &[u8], secret: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-github-event", HeaderValue::from_str(event).unwrap());
    h.insert(
        "x-github-delivery",
        HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    );
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&sign(secret.as_bytes(), body)).unwrap(),
    );
    h
}

async fn call(app: &App, method: Method, h: &HeaderMap, body: &[u8]) -> Reply {
    process(app, &method, h, body, &mut Facts::default()).await
}

fn small_pr(action: &str) -> Vec<u8> {
    pull_request_examples()
        .into_iter()
        .find(|e| e.action == action && e.body.len() < 60 * 1024)
        .expect("example")
        .body
}

#[tokio::test]
async fn every_octokit_example_signed_gives_the_expected_status_and_message() {
    let queue = Arc::new(Recording::default());
    let mut app = app(queue.clone());
    app.max_body_bytes = 5 * 1024 * 1024;
    let examples = pull_request_examples();
    for ex in &examples {
        let before = queue.len();
        let reply = call(
            &app,
            Method::POST,
            &headers("pull_request", &ex.body, SECRET),
            &ex.body,
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::ACCEPTED,
            "{}: {:?}",
            ex.source,
            reply.body
        );
        let sent = queue.events();
        if ACTED_ON.contains(&ex.action.as_str()) {
            assert_eq!(reply.body.status, "queued", "{}", ex.source);
            assert_eq!(sent.len(), before + 1, "{}", ex.source);
            let ev = sent.last().unwrap();
            assert_eq!(ev.action.as_str(), ex.action);
            assert_eq!(
                reply.body.message_id.as_deref(),
                Some(format!("msg-{}", sent.len()).as_str())
            );
            let raw: serde_json::Value = serde_json::from_slice(&ex.body).unwrap();
            assert_eq!(ev.number, raw["number"].as_u64().unwrap());
            assert_eq!(
                ev.message_group_id(),
                format!(
                    "{}#{}",
                    raw["repository"]["full_name"].as_str().unwrap(),
                    ev.number
                )
            );
            assert_eq!(ev.delivery_id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
        } else {
            assert_eq!(reply.body.status, "ignored", "{}", ex.source);
            assert!(reply.body.reason.contains(&ex.action));
            assert_eq!(sent.len(), before, "{}", ex.source);
        }
    }
}

#[tokio::test]
async fn githubs_published_test_vector_is_accepted_over_the_raw_body() {
    // "Hello, World!" is not JSON: the signature passes, then the body is refused as 400 —
    // proving the check ran over the raw bytes before any parsing.
    let body = b"Hello, World!";
    let mut h = headers("push", body, SECRET);
    h.insert(
        "x-hub-signature-256",
        HeaderValue::from_static(
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
    );
    let reply = call(&app(Arc::default()), Method::POST, &h, body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", reply.body);
}

#[tokio::test]
async fn not_post_is_405() {
    for m in [Method::GET, Method::PUT, Method::DELETE] {
        let reply = call(
            &app(Arc::default()),
            m,
            &headers("ping", b"{}", SECRET),
            b"{}",
        )
        .await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    }
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let body = vec![b' '; 64 * 1024 + 1];
    let reply = call(
        &app(Arc::default()),
        Method::POST,
        &headers("pull_request", &body, SECRET),
        &body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn missing_or_invalid_signature_is_401() {
    let queue = Arc::new(Recording::default());
    let app = app(queue.clone());
    let body = small_pr("opened");
    let reply = call(
        &app,
        Method::POST,
        &headers("pull_request", &body, "wrong secret"),
        &body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.body.reason.contains("does not match"));
    let mut h = headers("pull_request", &body, SECRET);
    h.remove("x-hub-signature-256");
    let reply = call(&app, Method::POST, &h, &body).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let reply = call(
        &app,
        Method::POST,
        &headers("pull_request", &body, SECRET),
        &tampered,
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(queue.len(), 0);
}

#[tokio::test]
async fn rotated_secrets_are_both_accepted() {
    let app = app(Arc::default());
    for secret in ["rotated-new", SECRET] {
        let reply = call(&app, Method::POST, &headers("ping", b"{}", secret), b"{}").await;
        assert_eq!(reply.status, StatusCode::OK, "{secret}");
    }
}

#[tokio::test]
async fn valid_signature_over_non_json_is_400() {
    let app = app(Arc::default());
    for event in ["pull_request", "ping", "issues"] {
        let body = b"not json at all";
        let reply = call(&app, Method::POST, &headers(event, body, SECRET), body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{event}");
    }
    // Form-encoded without a payload field.
    let body = b"other=1";
    let mut h = headers("pull_request", body, SECRET);
    h.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    assert_eq!(
        call(&app, Method::POST, &h, body).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn form_encoded_deliveries_are_verified_over_the_raw_form_body() {
    let queue = Arc::new(Recording::default());
    let app = app(queue.clone());
    let json = small_pr("synchronize");
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&json).unwrap())
        .finish();
    let mut h = headers("pull_request", form.as_bytes(), SECRET);
    h.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let reply = call(&app, Method::POST, &h, form.as_bytes()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    assert_eq!(queue.len(), 1);
    // Signed over the JSON instead of the form body: refused.
    h.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&sign(SECRET.as_bytes(), &json)).unwrap(),
    );
    assert_eq!(
        call(&app, Method::POST, &h, form.as_bytes()).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn ping_is_200() {
    let body = br#"{"zen":"Design for failure.","hook_id":1}"#;
    let reply = call(
        &app(Arc::default()),
        Method::POST,
        &headers("ping", body, SECRET),
        body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.status, "pong");
}

#[tokio::test]
async fn other_events_and_actions_are_202_ignored_with_reason() {
    let queue = Arc::new(Recording::default());
    let app = app(queue.clone());
    let body = br#"{"ref":"refs/heads/main"}"#;
    let reply = call(&app, Method::POST, &headers("push", body, SECRET), body).await;
    assert_eq!(
        (reply.status, reply.body.status),
        (StatusCode::ACCEPTED, "ignored")
    );
    assert!(reply.body.reason.contains("push"));
    let body = small_pr("assigned");
    let reply = call(
        &app,
        Method::POST,
        &headers("pull_request", &body, SECRET),
        &body,
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.status),
        (StatusCode::ACCEPTED, "ignored")
    );
    assert_eq!(queue.len(), 0);
}

#[tokio::test]
async fn edited_is_queued_only_when_the_base_changed() {
    let queue = Arc::new(Recording::default());
    let app = app(queue.clone());
    let mut v: serde_json::Value = serde_json::from_slice(&small_pr("opened")).unwrap();
    v["action"] = "edited".into();
    v["changes"] = serde_json::json!({"title": {"from": "old"}});
    let body = serde_json::to_vec(&v).unwrap();
    assert_eq!(
        call(
            &app,
            Method::POST,
            &headers("pull_request", &body, SECRET),
            &body
        )
        .await
        .body
        .status,
        "ignored"
    );
    v["changes"] = serde_json::json!({"base": {"ref": {"from": "develop"}}});
    let body = serde_json::to_vec(&v).unwrap();
    assert_eq!(
        call(
            &app,
            Method::POST,
            &headers("pull_request", &body, SECRET),
            &body
        )
        .await
        .body
        .status,
        "queued"
    );
}

#[tokio::test]
async fn malformed_pull_request_is_400() {
    let body = br#"{"action":"opened","number":"x"}"#;
    let reply = call(
        &app(Arc::default()),
        Method::POST,
        &headers("pull_request", body, SECRET),
        body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        !reply.json().contains("\"number\":\"x\""),
        "reply echoes the payload: {}",
        reply.json()
    );
}

#[tokio::test]
async fn missing_delivery_id_is_400() {
    let body = small_pr("opened");
    let mut h = headers("pull_request", &body, SECRET);
    h.remove("x-github-delivery");
    assert_eq!(
        call(&app(Arc::default()), Method::POST, &h, &body)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn queue_failure_is_503() {
    let queue = Arc::new(Recording::failing_after(0));
    let body = small_pr("opened");
    let reply = call(
        &app(queue),
        Method::POST,
        &headers("pull_request", &body, SECRET),
        &body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !reply.json().contains("connection refused"),
        "internal error leaked: {}",
        reply.json()
    );
}

fn lambda_event(template: &str, body: &[u8], base64: bool) -> lambda_http::Request {
    use base64::Engine as _;
    let sig = sign(SECRET.as_bytes(), body);
    let (body_field, flag) = if base64 {
        (base64::engine::general_purpose::STANDARD.encode(body), true)
    } else {
        (String::from_utf8(body.to_vec()).unwrap(), false)
    };
    let text = template
        .replace("@SIG@", &sig)
        .replace("\"@BODY@\"", &serde_json::to_string(&body_field).unwrap())
        .replace("\"@B64@\"", if flag { "true" } else { "false" });
    lambda_http::request::from_str(&text).expect("lambda event")
}

const FUNCTION_URL_EVENT: &str = r#"{
  "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
  "headers": {"content-type": "application/json", "x-github-event": "pull_request",
              "x-github-delivery": "d-fn-url", "x-hub-signature-256": "@SIG@", "host": "abc.lambda-url.eu-west-1.on.aws"},
  "requestContext": {"accountId": "anonymous", "apiId": "abc", "domainName": "abc.lambda-url.eu-west-1.on.aws",
    "domainPrefix": "abc", "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "GitHub-Hookshot/1"},
    "requestId": "r1", "routeKey": "$default", "stage": "$default", "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 1767225600000},
  "body": "@BODY@", "isBase64Encoded": "@B64@"
}"#;

const HTTP_API_EVENT: &str = r#"{
  "version": "2.0", "routeKey": "POST /webhook", "rawPath": "/webhook", "rawQueryString": "",
  "headers": {"Content-Type": "application/json", "X-GitHub-Event": "pull_request",
              "X-GitHub-Delivery": "d-http-api", "X-Hub-Signature-256": "@SIG@"},
  "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "api.execute-api.eu-west-1.amazonaws.com",
    "domainPrefix": "api", "http": {"method": "POST", "path": "/webhook", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "GitHub-Hookshot/1"},
    "requestId": "r2", "routeKey": "POST /webhook", "stage": "$default", "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 1767225600000},
  "body": "@BODY@", "isBase64Encoded": "@B64@"
}"#;

#[tokio::test]
async fn function_url_and_http_api_payloads_both_work() {
    let queue = Arc::new(Recording::default());
    let app = app(queue.clone());
    let body = small_pr("opened");
    for (template, b64, delivery) in [
        (FUNCTION_URL_EVENT, true, "d-fn-url"),
        (FUNCTION_URL_EVENT, false, "d-fn-url"),
        (HTTP_API_EVENT, false, "d-http-api"),
    ] {
        let resp = handle(&app, lambda_event(template, &body, b64)).await;
        assert_eq!(
            resp.status(),
            StatusCode::ACCEPTED,
            "{delivery} base64={b64}"
        );
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(queue.events().last().unwrap().delivery_id, delivery);
    }
    assert_eq!(queue.len(), 3);
}

/// The first api.github.com example of `event` with `action` (`""` for `status`).
fn check_example(event: &str, action: &str) -> serde_json::Value {
    let ex = examples(event)
        .into_iter()
        .find(|e| e.action == action && e.source.starts_with("api.github.com#"))
        .unwrap_or_else(|| panic!("no {event} {action:?} example"));
    serde_json::from_slice(&ex.body).unwrap()
}

async fn deliver(app: &App, event: &str, payload: &serde_json::Value) -> Reply {
    let body = serde_json::to_vec(payload).unwrap();
    call(app, Method::POST, &headers(event, &body, SECRET), &body).await
}

const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

#[tokio::test]
async fn each_check_event_is_queued_in_its_pull_requests_group_or_its_commits() {
    // (event, action, kind, name, state, group) of real octokit examples.
    let cases = [
        (
            "check_run",
            "completed",
            CheckKind::CheckRun,
            "Octocoders-linter",
            CheckState::Failure,
            "Codertocat/Hello-World#2",
        ),
        (
            "check_suite",
            "completed",
            CheckKind::CheckSuite,
            "octocoders-linter",
            CheckState::Success,
            "Codertocat/Hello-World#2",
        ),
        // Names a pull request of another repository only: grouped by its commit.
        (
            "workflow_run",
            "completed",
            CheckKind::Workflow,
            "Manually triggered workflow",
            CheckState::Pending,
            "Codertocat/Hello-World@5779607b49aab1200488439f02372c57b4f75444",
        ),
        (
            "status",
            "",
            CheckKind::Status,
            "default",
            CheckState::Success,
            "Codertocat/Hello-World@6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        ),
    ];
    for (event, action, kind, name, state, group) in cases {
        let queue = Arc::new(Recording::default());
        let reply = deliver(&app(queue.clone()), event, &check_example(event, action)).await;
        assert_eq!(
            (reply.status, reply.body.status),
            (StatusCode::ACCEPTED, "queued"),
            "{event}: {:?}",
            reply.body
        );
        assert_eq!(reply.body.message_id.as_deref(), Some("msg-1"));
        assert!(reply.body.message_ids.is_empty(), "{event}");
        assert!(
            reply.body.reason.contains(name),
            "{event}: {}",
            reply.body.reason
        );
        let checks = queue.checks();
        assert_eq!(checks.len(), 1, "{event}");
        let c = &checks[0];
        assert_eq!(
            (
                c.kind,
                c.name.as_str(),
                c.state,
                c.message_group_id().as_str()
            ),
            (kind, name, state, group),
            "{event}"
        );
        assert_eq!(c.event, event);
        assert_eq!(c.delivery_id, DELIVERY);
    }
}

#[tokio::test]
async fn a_forks_check_run_naming_no_pull_request_is_grouped_by_its_commit() {
    let queue = Arc::new(Recording::default());
    let mut payload = check_example("check_run", "completed");
    // GitHub lists no pull request for a check on a fork's commit.
    payload["check_run"]["pull_requests"] = serde_json::json!([]);
    let reply = deliver(&app(queue.clone()), "check_run", &payload).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    assert!(
        reply.body.reason.contains("commit ec26c3e"),
        "{}",
        reply.body.reason
    );
    let checks = queue.checks();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].pull_request, None);
    assert_eq!(
        checks[0].message_group_id(),
        "Codertocat/Hello-World@ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    );
}

/// A completed check run naming pull requests 2 and 5 of its repository.
fn check_run_of_two_pull_requests() -> serde_json::Value {
    let mut payload = check_example("check_run", "completed");
    let mut second = payload["check_run"]["pull_requests"][0].clone();
    second["number"] = 5.into();
    payload["check_run"]["pull_requests"]
        .as_array_mut()
        .unwrap()
        .push(second);
    payload
}

#[tokio::test]
async fn a_check_run_naming_two_pull_requests_is_queued_once_for_each() {
    let queue = Arc::new(Recording::default());
    let reply = deliver(
        &app(queue.clone()),
        "check_run",
        &check_run_of_two_pull_requests(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    assert_eq!(reply.body.message_id.as_deref(), Some("msg-1"));
    assert_eq!(reply.body.message_ids, ["msg-1", "msg-2"]);
    assert!(
        reply.json().contains(r#""messageIds":["msg-1","msg-2"]"#),
        "{}",
        reply.json()
    );
    assert!(
        reply.body.reason.contains("#2, #5"),
        "{}",
        reply.body.reason
    );
    let sent: Vec<(String, String)> = queue
        .checks()
        .iter()
        .map(|c| (c.message_group_id(), c.delivery_id.clone()))
        .collect();
    assert_eq!(
        sent,
        [
            (
                "Codertocat/Hello-World#2".to_owned(),
                format!("{DELIVERY}#2")
            ),
            (
                "Codertocat/Hello-World#5".to_owned(),
                format!("{DELIVERY}#5")
            ),
        ]
    );
}

#[tokio::test]
async fn a_partly_queued_check_delivery_is_503_so_github_redelivers_it_whole() {
    let queue = Arc::new(Recording::failing_after(1));
    let reply = deliver(
        &app(queue.clone()),
        "check_run",
        &check_run_of_two_pull_requests(),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.body.status, "error");
    assert_eq!(reply.body.message_id, None);
    assert!(
        !reply.json().contains("connection refused"),
        "{}",
        reply.json()
    );
    assert_eq!(queue.len(), 1, "the first message went out");
}

#[tokio::test]
async fn a_check_delivery_with_a_bad_signature_is_401_and_queues_nothing() {
    let queue = Arc::new(Recording::default());
    let body = serde_json::to_vec(&check_example("check_run", "completed")).unwrap();
    let reply = call(
        &app(queue.clone()),
        Method::POST,
        &headers("check_run", &body, "wrong secret"),
        &body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(queue.len(), 0);
}

#[tokio::test]
async fn malformed_check_payloads_are_400() {
    let queue = Arc::new(Recording::default());
    let app = app(queue.clone());
    let mut no_sha = check_example("check_run", "completed");
    no_sha["check_run"]
        .as_object_mut()
        .unwrap()
        .remove("head_sha");
    let mut short_sha = check_example("status", "");
    short_sha["sha"] = "6113728".into();
    for (event, payload) in [
        ("check_run", no_sha),
        ("status", short_sha),
        ("check_suite", serde_json::json!({"action": "completed"})),
        ("workflow_run", serde_json::json!([1, 2])),
    ] {
        let reply = deliver(&app, event, &payload).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{event}: {:?}",
            reply.body
        );
    }
    let body = b"not json";
    let reply = call(
        &app,
        Method::POST,
        &headers("check_run", body, SECRET),
        body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(queue.len(), 0);
}

#[tokio::test]
async fn check_actions_that_change_no_state_are_202_ignored() {
    let queue = Arc::new(Recording::default());
    let app = app(queue.clone());
    for (event, action) in [
        ("check_run", "rerequested"),
        ("check_run", "requested_action"),
        ("check_suite", "rerequested"),
    ] {
        let reply = deliver(&app, event, &check_example(event, action)).await;
        assert_eq!(
            (reply.status, reply.body.status),
            (StatusCode::ACCEPTED, "ignored"),
            "{event} {action}"
        );
        assert!(reply.body.reason.contains(action), "{}", reply.body.reason);
    }
    assert_eq!(queue.len(), 0);
}

#[tokio::test]
async fn every_queued_message_carries_the_attributes_the_appliers_filters_route_on() {
    // Terraform's modules/appliers filters on `repository` (owner/name as GitHub spells it) and
    // `owner` (the login); both the queue and the topic send these attributes.
    let queue = Arc::new(Recording::default());
    let app = app(queue.clone());
    let mut events = 0;
    for event in [
        "pull_request",
        "check_run",
        "check_suite",
        "workflow_run",
        "status",
    ] {
        for ex in examples(event).iter().filter(|e| e.body.len() < 60 * 1024) {
            let before = queue.len();
            call(
                &app,
                Method::POST,
                &headers(event, &ex.body, SECRET),
                &ex.body,
            )
            .await;
            events += usize::from(queue.len() > before);
        }
    }
    assert!(events > 10, "only {events} examples were queued");
    for m in queue.sent.lock().unwrap().iter() {
        let attrs: std::collections::BTreeMap<_, _> = attributes(m).into_iter().collect();
        let repository = &m.repository().full_name;
        let (owner, _) = repository.split_once('/').unwrap();
        assert_eq!(attrs["repository"], repository.as_str());
        assert_eq!(attrs["owner"], owner, "{repository}");
        assert_eq!(attrs["event"], m.event());
        assert_eq!(attrs.get("action").copied(), m.action());
    }
}
