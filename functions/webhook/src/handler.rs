//! The request handler: verify → filter → normalise → enqueue.
//!
//! The signature is checked over the raw request bytes before anything is parsed. Responses are
//! short JSON documents with a reason; the payload is never echoed and never logged. A
//! `pull_request` delivery gives one message; a check result (`check_run`, `check_suite`,
//! `workflow_run`, `status`) gives one per pull request it names, or one for its commit.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use http::{HeaderMap, Method, StatusCode};
use kubetempura_common::check::{CheckEvent, QueueMessage};
use kubetempura_common::event::{Normalized, normalize};
use kubetempura_common::signature::{SIGNATURE_HEADER, WebhookSecrets};
use serde::Serialize;

use crate::queue::EventQueue;

/// Everything the handler needs, built once per cold start.
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
    /// The queue's id of the (first) message sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Every message id, when the delivery gave more than one message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub message_ids: Vec<String>,
}

impl Reply {
    fn new(status: StatusCode, kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            body: ReplyBody {
                status: kind,
                reason: reason.into(),
                message_id: None,
                message_ids: Vec::new(),
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
    /// A check result: "check run `build`: failure".
    pub check: String,
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
    /// Send these messages (one or more) to the queue, then answer `queued` with `reason`.
    Enqueue {
        messages: Vec<QueueMessage>,
        reason: String,
    },
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
            Prepared::Enqueue {
                reason: format!("pull_request {} queued", event.action),
                messages: vec![QueueMessage::PullRequest(event)],
            }
        }
        Ok(Normalized::Checks(checks)) => {
            let Some(first) = checks.first() else {
                return reply(Reply::new(
                    StatusCode::ACCEPTED,
                    "ignored",
                    "the delivery gave no check result",
                ));
            };
            facts.repository = first.repository.full_name.clone();
            facts.check = format!("{}: {}", first.fact().describe(), first.state.as_str());
            facts.pr = first.pull_request.filter(|_| checks.len() == 1);
            Prepared::Enqueue {
                reason: format!("{} queued for {}", facts.check, check_targets(&checks)),
                messages: checks
                    .into_iter()
                    .map(|c| QueueMessage::Check(Box::new(c)))
                    .collect(),
            }
        }
    }
}

/// "pull requests #2, #5" or "commit ec26c3e".
fn check_targets(checks: &[CheckEvent]) -> String {
    let numbers: Vec<String> = checks
        .iter()
        .filter_map(|c| c.pull_request.map(|n| format!("#{n}")))
        .collect();
    match (numbers.len(), checks.first()) {
        (0, Some(c)) => format!("commit {}", c.head_sha.get(..7).unwrap_or(&c.head_sha)),
        (1, _) => format!("pull request {}", numbers[0]),
        _ => format!("pull requests {}", numbers.join(", ")),
    }
}

/// Handles one delivery: [`prepare`], then the queue calls.
///
/// The messages of one delivery are sent one after the other, and the first refusal answers 503
/// at once: GitHub then shows the delivery as failed and it can be redelivered whole. The
/// messages already sent are dropped by the queue's deduplication on redelivery (their ids are
/// derived from the delivery id), and a check result recorded twice changes nothing after it.
/// Sequential sends keep a failing queue's answer within one call's timeout; a delivery names
/// one or two pull requests in practice.
pub async fn process(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    facts: &mut Facts,
) -> Reply {
    let (messages, reason) = match prepare(app, method, headers, body, facts) {
        Prepared::Reply(r) => return r,
        Prepared::Enqueue { messages, reason } => (messages, reason),
    };
    let mut ids = Vec::with_capacity(messages.len());
    for message in &messages {
        match app.queue.send(message).await {
            Ok(id) => ids.push(id),
            Err(e) => {
                tracing::error!(
                    delivery = %message.delivery_id(),
                    sent = ids.len(),
                    messages = messages.len(),
                    error = %e,
                    "queue refused the event"
                );
                return Reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "queue unavailable; redeliver later",
                );
            }
        }
    }
    let mut reply = Reply::new(StatusCode::ACCEPTED, "queued", reason);
    reply.body.message_id = ids.first().cloned();
    if ids.len() > 1 {
        reply.body.message_ids = ids;
    }
    reply
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
        check = %facts.check,
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
