//! A loopback implementation of the AWS Lambda Runtime API (version 2018-06-01), the protocol a
//! function's runtime speaks to Lambda: `GET /runtime/invocation/next` (long-polls for the next
//! event), `POST /runtime/invocation/{id}/response`, `POST /runtime/invocation/{id}/error` and
//! `POST /runtime/init/error`. A function binary started with [`RuntimeApi::env`] runs against
//! it as it would in Lambda, so its cold start (process start → first `next`) and invocations
//! can be timed and their answers checked (`coldstart`, `lambda_runtime_e2e`).
//!
//! Every request is recorded with the instant it arrived, as an [`Observed`]. Invocations are
//! queued with [`RuntimeApi::invoke`]; a `next` with nothing queued waits, as Lambda's does
//! between invocations. An unknown path is answered 404 and recorded, so a protocol mistake of
//! either side shows in the test that made it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use kubetempura_common::signature::sign;
use kubetempura_common::testing::{function_url_event, pull_request_examples};

use super::serve_http1;

/// The Runtime API's version prefix.
pub const PREFIX: &str = "/2018-06-01/runtime";

/// What the function under test did, in arrival order.
#[derive(Debug, Clone)]
pub enum Observed {
    /// `GET …/invocation/next`: the runtime is ready for an event (the first one ends init).
    Next { at: Instant },
    /// `POST …/invocation/{id}/response`.
    Response {
        at: Instant,
        request_id: String,
        body: Bytes,
    },
    /// `POST …/invocation/{id}/error`.
    InvocationError {
        at: Instant,
        request_id: String,
        error_type: Option<String>,
        body: Bytes,
    },
    /// `POST …/init/error`.
    InitError {
        at: Instant,
        error_type: Option<String>,
        body: Bytes,
    },
    /// Anything else (answered 404).
    Unknown {
        at: Instant,
        method: Method,
        path: String,
    },
}

/// One queued invocation.
struct Invocation {
    request_id: String,
    event: Bytes,
}

struct Shared {
    pending: Mutex<mpsc::UnboundedReceiver<Invocation>>,
    observed: mpsc::UnboundedSender<Observed>,
    function_arn: String,
}

/// A running Runtime API on 127.0.0.1.
pub struct RuntimeApi {
    addr: SocketAddr,
    queue: mpsc::UnboundedSender<Invocation>,
    observed: mpsc::UnboundedReceiver<Observed>,
    task: JoinHandle<()>,
    invocations: u64,
}

impl RuntimeApi {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the Runtime API listener");
        let addr = listener.local_addr().expect("listener address");
        let (queue, pending) = mpsc::unbounded_channel();
        let (observed_tx, observed) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pending: Mutex::new(pending),
            observed: observed_tx,
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:kubetempura-webhook"
                .to_owned(),
        });
        let task = tokio::spawn(serve_http1(listener, move |req| {
            let shared = shared.clone();
            async move { handle(&shared, req).await }
        }));
        Self {
            addr,
            queue,
            observed,
            task,
            invocations: 0,
        }
    }

    /// `127.0.0.1:PORT`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The environment Lambda gives a function process (Runtime API address, function name,
    /// version, memory, log group and stream), for `memory_mb` of memory.
    pub fn env(&self, memory_mb: u32) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", self.address()),
            ("AWS_LAMBDA_FUNCTION_NAME", "kubetempura-webhook".to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                "/aws/lambda/kubetempura-webhook".to_owned(),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/12/02/[$LATEST]loopback".to_owned(),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Queues an invocation with `event` (JSON); returns its request id.
    pub fn invoke(&mut self, event: &serde_json::Value) -> String {
        self.invocations += 1;
        let request_id = format!("00000000-0000-4000-8000-{:012}", self.invocations);
        let invocation = Invocation {
            request_id: request_id.clone(),
            event: Bytes::from(event.to_string()),
        };
        self.queue
            .send(invocation)
            .expect("the Runtime API task is running");
        request_id
    }

    /// The next request the function made, or `None` after `timeout`.
    pub async fn observe(&mut self, timeout: Duration) -> Option<Observed> {
        tokio::time::timeout(timeout, self.observed.recv())
            .await
            .ok()
            .flatten()
    }
}

impl RuntimeApi {
    /// A request already recorded, without waiting.
    pub fn try_observe(&mut self) -> Option<Observed> {
        self.observed.try_recv().ok()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A function-URL event carrying octokit's `pull_request` `opened` example as GitHub delivers
/// it: JSON, delivery id `delivery`, signed with `secret`.
pub fn signed_pull_request_event(secret: &str, delivery: &str) -> serde_json::Value {
    let body = pull_request_examples()
        .into_iter()
        .find(|e| e.action == "opened")
        .expect("an opened example")
        .body;
    let headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("x-github-event".to_owned(), "pull_request".to_owned()),
        ("x-github-delivery".to_owned(), delivery.to_owned()),
        (
            "x-hub-signature-256".to_owned(),
            sign(secret.as_bytes(), &body),
        ),
    ];
    function_url_event("POST", &headers, &body, false)
}

type Body = Full<Bytes>;

fn answer(status: StatusCode, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap_or_else(|_| Response::new(Full::default()))
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let at = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let error_type = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let rest = path.strip_prefix(PREFIX).unwrap_or("");
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let observed = match (&method, segments.as_slice()) {
        (&Method::GET, ["invocation", "next"]) => {
            let _ = shared.observed.send(Observed::Next { at });
            return next(shared).await;
        }
        (&Method::POST, ["invocation", id, "response"]) => Observed::Response {
            at,
            request_id: (*id).to_owned(),
            body,
        },
        (&Method::POST, ["invocation", id, "error"]) => Observed::InvocationError {
            at,
            request_id: (*id).to_owned(),
            error_type,
            body,
        },
        (&Method::POST, ["init", "error"]) => Observed::InitError {
            at,
            error_type,
            body,
        },
        _ => {
            let _ = shared.observed.send(Observed::Unknown { at, method, path });
            return answer(
                StatusCode::NOT_FOUND,
                r#"{"errorMessage":"unknown Runtime API path","errorType":"InvalidRequest"}"#,
            );
        }
    };
    let _ = shared.observed.send(observed);
    answer(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

/// Answers `next` with the next queued invocation, waiting for one as long as it takes.
async fn next(shared: &Shared) -> Response<Body> {
    let invocation = shared.pending.lock().await.recv().await;
    let Some(invocation) = invocation else {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, r#"{"status":"closed"}"#);
    };
    let deadline = SystemTime::now()
        .checked_add(Duration::from_secs(10))
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis());
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            "lambda-runtime-aws-request-id",
            invocation.request_id.as_str(),
        )
        .header("lambda-runtime-deadline-ms", deadline.to_string())
        .header(
            "lambda-runtime-invoked-function-arn",
            shared.function_arn.as_str(),
        )
        .header(
            "lambda-runtime-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
        )
        .body(Full::new(invocation.event))
        .unwrap_or_else(|_| Response::new(Full::default()))
}
