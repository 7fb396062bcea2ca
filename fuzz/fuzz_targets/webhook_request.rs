//! The webhook function's request path, from raw Lambda event or HTTP request to queue
//! messages: headers, JSON or form-encoded `payload=` bodies, base64 bodies, oversized and
//! truncated inputs. Part of the inputs are signed inside the target so the fuzzer gets past
//! the HMAC. Every answer is one of the defined replies, and every message the function would
//! send is read back unchanged by the applier.
#![no_main]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use kubetempura_common::check::QueueMessage;
use kubetempura_common::signature::{SIGNATURE_HEADER, WebhookSecrets, sign};
use kubetempura_fuzz::request::{
    BASE64, FORM, NOT_POST, RAW_EVENT, SIGN, SMALL_LIMIT, SMALL_LIMIT_BYTES, function_url_event,
    split,
};
use kubetempura_fuzz::{SECRET, assert_message_round_trips};
use kubetempura_webhook::config::DEFAULT_MAX_BODY_BYTES;
use kubetempura_webhook::handler::{App, Facts, Prepared, Reply, prepare};
use kubetempura_webhook::queue::{EventQueue, QueueError};
use libfuzzer_sys::fuzz_target;

/// `prepare` never reaches the queue; the handler's state needs one.
struct NoQueue;

impl EventQueue for NoQueue {
    fn send<'a>(
        &'a self,
        _message: &'a QueueMessage,
    ) -> Pin<Box<dyn Future<Output = Result<String, QueueError>> + Send + 'a>> {
        Box::pin(async { Err(QueueError("the fuzz target has no queue".to_owned())) })
    }
}

fn app(max_body_bytes: usize) -> App {
    App {
        secrets: WebhookSecrets::new([SECRET]).expect("a non-empty secret"),
        queue: Arc::new(NoQueue),
        max_body_bytes,
    }
}

static APP: LazyLock<App> = LazyLock::new(|| app(DEFAULT_MAX_BODY_BYTES));
static SMALL_APP: LazyLock<App> = LazyLock::new(|| app(SMALL_LIMIT_BYTES));

/// The request the handler sees: what lambda_http gives for a Lambda event.
///
/// An event that says its body is base64 but whose body is not is skipped: lambda_http panics
/// on it by design (`Body::from_maybe_encoded`), and AWS, which writes the event around the
/// raw request bytes, never sends one — a stranger controls the bytes, not their encoding.
fn from_event(event: &str) -> Option<(Method, HeaderMap, Vec<u8>)> {
    use base64::Engine as _;
    let value: serde_json::Value = serde_json::from_str(event).ok()?;
    if value["isBase64Encoded"] == true {
        if let Some(body) = value["body"].as_str() {
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .ok()?;
        }
    }
    let request = lambda_http::request::from_str(event).ok()?;
    let (parts, body) = request.into_parts();
    Some((parts.method, parts.headers, body.as_ref().to_vec()))
}

fn request(flags: u8, rest: &[u8]) -> Option<(Method, HeaderMap, Vec<u8>)> {
    if flags & RAW_EVENT != 0 {
        let (method, mut headers, body) = from_event(std::str::from_utf8(rest).ok()?)?;
        if flags & SIGN != 0 {
            let signature = HeaderValue::from_str(&sign(SECRET, &body)).ok()?;
            headers.insert(SIGNATURE_HEADER, signature);
        }
        return Some((method, headers, body));
    }
    let (head, body) = split(rest);
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let mut body = body.to_vec();
    if flags & FORM != 0 {
        body = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &String::from_utf8_lossy(&body))
            .finish()
            .into_bytes();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
    }
    if flags & SIGN != 0 {
        let signature = HeaderValue::from_str(&sign(SECRET, &body)).ok()?;
        headers.insert(SIGNATURE_HEADER, signature);
    }
    let method = if flags & NOT_POST != 0 {
        Method::GET
    } else {
        Method::POST
    };
    if flags & BASE64 != 0 {
        // Through the Lambda event GitHub's delivery arrives in: a function URL base64-encodes
        // bodies it does not consider text.
        let pairs: Vec<(String, String)> = headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let event = function_url_event(method.as_str(), &pairs, &body, true);
        let (method, headers, decoded) = from_event(&event).expect("our own event parses");
        assert_eq!(
            decoded, body,
            "lambda_http decodes a base64 body to its bytes"
        );
        return Some((method, headers, decoded));
    }
    Some((method, headers, body))
}

fn check_reply(reply: &Reply) {
    let defined = matches!(
        (reply.status, reply.body.status),
        (StatusCode::OK, "pong")
            | (StatusCode::ACCEPTED, "ignored")
            | (
                StatusCode::BAD_REQUEST
                    | StatusCode::UNAUTHORIZED
                    | StatusCode::METHOD_NOT_ALLOWED
                    | StatusCode::PAYLOAD_TOO_LARGE,
                "error"
            )
    );
    assert!(defined, "undefined reply {reply:?}");
    let body: serde_json::Value = serde_json::from_str(&reply.json()).expect("reply is JSON");
    assert_eq!(body["status"], reply.body.status);
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((method, headers, body)) = request(flags, rest) else {
        return;
    };
    let app = if flags & SMALL_LIMIT != 0 {
        &*SMALL_APP
    } else {
        &*APP
    };
    let mut facts = Facts::default();
    match prepare(app, &method, &headers, &body, &mut facts) {
        Prepared::Reply(reply) => {
            check_reply(&reply);
            let signed = headers
                .get(SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == sign(SECRET, &body));
            if signed && method == Method::POST && body.len() <= app.max_body_bytes {
                assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
            }
        }
        Prepared::Enqueue { messages, reason } => {
            assert!(!messages.is_empty(), "{reason}: nothing to enqueue");
            for message in &messages {
                assert!(message.delivery_id().starts_with(&facts.delivery));
                assert_message_round_trips(message);
            }
        }
    }
});
