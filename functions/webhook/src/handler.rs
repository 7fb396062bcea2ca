//! The request handler: verify → filter → normalise → enqueue.
//!
//! The signature is checked over the raw request bytes before anything is parsed. Responses are
//! short JSON documents with a reason; the payload is never echoed and never logged.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use http::{HeaderMap, Method, StatusCode};
use kubetempura_common::event::{Normalized, PrEvent, normalize};
use kubetempura_common::signature::{SIGNATURE_HEADER, WebhookSecrets};
use serde::Serialize;

use crate::queue::EventQueue;

/// Everything the handler needs, built once per cold start.
#[derive(Clone)]
pub struct App {
    pub secrets: WebhookSecrets,
    pub queue: Arc<dyn EventQueue>,
    pub max_body_bytes: usize,
}

/// The answer to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: ReplyBody,
}

/// The JSON body of every answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyBody {
    /// `queued`, `ignored`, `pong` or `error`.
    pub status: &'static str,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

impl Reply {
    fn new(status: StatusCode, kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            body: ReplyBody {
                status: kind,
                reason: reason.into(),
                message_id: None,
            },
        }
    }

    fn error(status: StatusCode, reason: impl Into<String>) -> Self {
        Self::new(status, "error", reason)
    }

    /// The body as JSON text.
    pub fn json(&self) -> String {
        serde_json::to_string(&self.body).unwrap_or_else(|_| String::from("{\"status\":\"error\"}"))
    }
}

/// Facts about a delivery for the log line (never the body or the secret).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Facts {
    pub delivery: String,
    pub event: String,
    pub action: String,
    pub repository: String,
    pub pr: Option<u64>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_form(headers: &HeaderMap) -> bool {
    header(headers, "content-type").is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    })
}

/// Extracts the JSON payload: the body itself, or the `payload` field of a form-encoded body.
fn payload_bytes<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
) -> Result<std::borrow::Cow<'a, [u8]>, &'static str> {
    if !is_form(headers) {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| std::borrow::Cow::Owned(v.into_owned().into_bytes()))
        .ok_or("form-encoded body has no payload field")
}

/// What a verified delivery asks for.
#[derive(Debug)]
pub enum Prepared {
    /// Answer at once (errors, ping, ignored events).
    Reply(Reply),
    /// Send this event to the queue.
    Enqueue(Box<PrEvent>),
}

/// Everything before the queue call: method, size, signature over the raw bytes, payload
/// extraction, normalisation. Pure and synchronous.
pub fn prepare(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    facts: &mut Facts,
) -> Prepared {
    let reply = |r: Reply| Prepared::Reply(r);
    facts.delivery = header(headers, "x-github-delivery")
        .unwrap_or_default()
        .to_owned();
    facts.event = header(headers, "x-github-event")
        .unwrap_or_default()
        .to_owned();
    if method != Method::POST {
        return reply(Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only POST is accepted",
        ));
    }
    if body.len() > app.max_body_bytes {
        return reply(Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body of {} bytes exceeds the limit of {} bytes",
                body.len(),
                app.max_body_bytes
            ),
        ));
    }
    if let Err(e) = app.secrets.verify(body, header(headers, SIGNATURE_HEADER)) {
        return reply(Reply::error(StatusCode::UNAUTHORIZED, e.to_string()));
    }
    let payload = match payload_bytes(headers, body) {
        Ok(p) => p,
        Err(reason) => return reply(Reply::error(StatusCode::BAD_REQUEST, reason)),
    };
    if facts.event.is_empty() {
        return reply(Reply::error(
            StatusCode::BAD_REQUEST,
            "missing X-GitHub-Event header",
        ));
    }
    if facts.event != "pull_request" {
        // Still refuse a body that is not JSON, as for any delivery.
        if serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
            return reply(Reply::error(StatusCode::BAD_REQUEST, "body is not JSON"));
        }
        if facts.event == "ping" {
            return reply(Reply::new(
                StatusCode::OK,
                "pong",
                "ping received; deliveries are verified",
            ));
        }
    }
    if facts.delivery.is_empty() {
        return reply(Reply::error(
            StatusCode::BAD_REQUEST,
            "missing X-GitHub-Delivery header",
        ));
    }
    match normalize(&facts.event, &facts.delivery, &payload, Utc::now()) {
        Err(e) => reply(Reply::error(StatusCode::BAD_REQUEST, e.to_string())),
        Ok(Normalized::Ignored(reason)) => {
            reply(Reply::new(StatusCode::ACCEPTED, "ignored", reason))
        }
        Ok(Normalized::Event(event)) => {
            facts.action = event.action.as_str().to_owned();
            facts.repository = event.repository.full_name.clone();
            facts.pr = Some(event.number);
            Prepared::Enqueue(event)
        }
    }
}

/// Handles one delivery: [`prepare`], then the queue call.
pub async fn process(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    facts: &mut Facts,
) -> Reply {
    let event = match prepare(app, method, headers, body, facts) {
        Prepared::Reply(r) => return r,
        Prepared::Enqueue(e) => e,
    };
    match app.queue.send(&event).await {
        Ok(id) => {
            let mut reply = Reply::new(
                StatusCode::ACCEPTED,
                "queued",
                format!("pull_request {} queued", event.action),
            );
            reply.body.message_id = Some(id);
            reply
        }
        Err(e) => {
            tracing::error!(delivery = %facts.delivery, error = %e, "queue refused the event");
            Reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue unavailable; redeliver later",
            )
        }
    }
}

/// Handles one lambda_http request (function URL or API Gateway HTTP API payload) and writes
/// the log line.
pub async fn handle(
    app: &App,
    req: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    let started = Instant::now();
    let mut facts = Facts::default();
    let reply = process(
        app,
        req.method(),
        req.headers(),
        req.body().as_ref(),
        &mut facts,
    )
    .await;
    tracing::info!(
        delivery = %facts.delivery,
        event = %facts.event,
        action = %facts.action,
        repository = %facts.repository,
        pr = facts.pr,
        outcome = reply.body.status,
        status = reply.status.as_u16(),
        reason = %reply.body.reason,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "webhook delivery"
    );
    lambda_http::Response::builder()
        .status(reply.status)
        .header("content-type", "application/json")
        .body(lambda_http::Body::Text(reply.json()))
        .unwrap_or_else(|_| lambda_http::Response::new(lambda_http::Body::Empty))
}
