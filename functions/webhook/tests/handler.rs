//! In-process handler tests: every row of the response table, every real `pull_request` example
//! signed as GitHub signs it, and both Lambda payload formats (function URL and API Gateway
//! HTTP API). The queue is a recording stand-in here; the cross-process tests in `tests/` use
//! the SQS emulator.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use kubetempura_common::event::PrEvent;
use kubetempura_common::signature::{WebhookSecrets, sign};
use kubetempura_common::testing::pull_request_examples;
use kubetempura_webhook::handler::{App, Facts, Reply, handle, process};
use kubetempura_webhook::queue::{EventQueue, QueueError};

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
    sent: Mutex<Vec<PrEvent>>,
    fail: bool,
}

impl EventQueue for Recording {
    fn send<'a>(
        &'a self,
        event: &'a PrEvent,
    ) -> Pin<Box<dyn Future<Output = Result<String, QueueError>> + Send + 'a>> {
        Box::pin(async move {
            if self.fail {
                return Err(QueueError("connection refused".into()));
            }
            let mut sent = self.sent.lock().unwrap();
            sent.push(event.clone());
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
        let before = queue.sent.lock().unwrap().len();
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
        let sent = queue.sent.lock().unwrap();
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
    assert!(queue.sent.lock().unwrap().is_empty());
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
    assert_eq!(queue.sent.lock().unwrap().len(), 1);
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
    assert!(queue.sent.lock().unwrap().is_empty());
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
    let queue = Arc::new(Recording {
        fail: true,
        ..Default::default()
    });
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
        assert_eq!(
            queue.sent.lock().unwrap().last().unwrap().delivery_id,
            delivery
        );
    }
    assert_eq!(queue.sent.lock().unwrap().len(), 3);
}
