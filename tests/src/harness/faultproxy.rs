//! A fault-injecting reverse proxy in front of a real kube-apiserver.
//!
//! Clients talk plain HTTP to [`FaultProxy::url`] on loopback; every request (method, path,
//! query, headers including `Authorization`, body) is forwarded over TLS to the API server and
//! its response streamed back frame by frame, so watches stay live. A matching [`FaultRule`]
//! delays a request and/or answers it with a Kubernetes `Status` instead of forwarding it;
//! [`FaultProxy::drop_watches`] ends the watches in flight as an API server restart would.
//! Upgraded connections (exec, port-forward) are not proxied.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::{CertificateDer, pem::PemObject};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::faults::{FaultError, FaultRule, Faults, RequestRecord};
use super::serve_http1;

/// The client requests are forwarded with; it speaks HTTPS and plain HTTP.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Incoming>;

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

const LOG_LIMIT: usize = 100_000;

/// Headers of one hop (RFC 9110 §7.6.1): never forwarded, in either direction.
const HOP_BY_HOP: &str =
    "connection keep-alive proxy-connection te trailer transfer-encoding upgrade";

struct Shared {
    upstream: String,
    client: UpstreamClient,
    faults: Mutex<Faults>,
    /// Bumped by `drop_watches`; each streaming watch body ends when it changes.
    watch_epoch: watch::Sender<u64>,
}

impl Shared {
    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running proxy on `127.0.0.1`; it stops serving when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Proxy to `upstream` (`https://127.0.0.1:PORT`), trusting only the CA in `ca_pem`.
    pub async fn start(upstream: &str, ca_pem: &[u8]) -> FaultProxy {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.expect("upstream CA PEM parses");
            roots.add(cert).expect("upstream CA certificate is usable");
        }
        assert!(!roots.is_empty(), "no certificate in the upstream CA PEM");
        FaultProxy::start_with_client(upstream, client(roots)).await
    }

    /// Proxy to `upstream` through `client` (built once, reused for every request).
    pub async fn start_with_client(upstream: &str, client: UpstreamClient) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
            faults: Mutex::new(Faults::new(LOG_LIMIT)),
            watch_epoch: watch::Sender::new(0),
        });
        let handler = shared.clone();
        let task = tokio::spawn(serve_http1(listener, move |req| {
            let shared = handler.clone();
            async move { handle(&shared, req).await }
        }));
        tracing::info!(%addr, upstream, "fault proxy listening");
        FaultProxy { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Add a fault rule.
    pub fn add_fault(&self, rule: FaultRule) -> Result<(), FaultError> {
        self.shared.faults().add(rule)
    }

    /// Remove every fault rule.
    pub fn clear_faults(&self) {
        self.shared.faults().clear();
    }

    /// The rules still active (counted rules disappear once used up).
    pub fn faults(&self) -> Vec<FaultRule> {
        self.shared.faults().rules()
    }

    /// The request log, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.faults().log()
    }

    /// Empty the request log.
    pub fn clear_requests(&self) {
        self.shared.faults().clear_log();
    }

    /// End every watch response streaming now: its body closes cleanly, as when an API server
    /// restarts, and the upstream connection is released. Later watches are unaffected.
    pub fn drop_watches(&self) {
        self.shared.watch_epoch.send_modify(|epoch| *epoch += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP/1.1 client trusting `roots` (aws-lc-rs, as kube); it also speaks plain HTTP.
fn client(roots: rustls::RootCertStore) -> UpstreamClient {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    Client::builder(TokioExecutor::new()).build(https.enable_http1().build())
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let time = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let action = shared.faults().take(&method, &path);
    if let Some(ms) = action.and_then(|a| a.delay_ms) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let (resp, faulted) = match action.and_then(|a| a.status.map(|s| (s, a.retry_after))) {
        Some((code, retry_after)) => {
            let message = format!("injected fault: {code} for {method} {path}");
            let retry_after = matches!(code, 429 | 503).then_some(retry_after);
            (status_response(code, &message, retry_after), true)
        }
        None => (forward(shared, req, is_watch(&query)).await, false),
    };
    let status = resp.status().as_u16();
    tracing::debug!(%method, %path, %query, status, faulted, "proxied");
    shared.faults().record(RequestRecord {
        method,
        path,
        query,
        status,
        time,
        faulted,
        content_type,
    });
    resp
}

fn is_watch(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
}

async fn forward(shared: &Shared, mut req: Request<Incoming>, watch: bool) -> Response<Body> {
    // Subscribed before the request leaves, so a drop while waiting for the head counts too.
    let mut epoch = shared.watch_epoch.subscribe();
    let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let target = format!("{}{path_and_query}", shared.upstream);
    match target.parse::<Uri>() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(e) => return status_response(400, &format!("bad request target {target}: {e}"), None),
    }
    strip_hop_by_hop(req.headers_mut());
    // The client sets the upstream's own Host.
    req.headers_mut().remove(header::HOST);
    let resp = match shared.client.request(req).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(error = ?e, upstream = %shared.upstream, "upstream request failed");
            return status_response(503, &format!("upstream unreachable: {e:?}"), None);
        }
    };
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = if watch {
        parts.headers.remove(header::CONTENT_LENGTH);
        let dropped = async move {
            // Err means the proxy is gone: end the stream as well.
            let _ = epoch.changed().await;
        };
        StreamBody::new(BodyStream::new(body).take_until(dropped)).boxed_unsync()
    } else {
        body.boxed_unsync()
    };
    Response::from_parts(parts, body)
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP.split(' ') {
        headers.remove(name);
    }
}

/// A Kubernetes `Status` failure response.
fn status_response(code: u16, message: &str, retry_after: Option<u32>) -> Response<Body> {
    let reason = match code {
        400 => "BadRequest",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    };
    let mut status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    if let (Some(secs), Some(obj)) = (retry_after, status.as_object_mut()) {
        obj.insert("details".into(), json!({ "retryAfterSeconds": secs }));
    }
    let body = Full::new(Bytes::from(status.to_string()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use std::convert::Infallible;

    use hyper::body::Frame;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use serde_json::Value;
    use tokio::sync::mpsc;
    use tokio::task::JoinSet;

    use super::*;

    /// When the test upstream was reached, and the sender feeding its open watch.
    #[derive(Default)]
    struct Seen {
        arrivals: Vec<Instant>,
        watch: Option<mpsc::Sender<Bytes>>,
    }

    type Upstream = Arc<Mutex<Seen>>;

    /// A proxy in front of a plain-HTTP upstream that streams `?watch=true` from chunks the
    /// test sends and otherwise echoes method, path, query, `Authorization`, Host and body.
    async fn proxy() -> (FaultProxy, String, Upstream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Upstream::default();
        let state = seen.clone();
        tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let seen = state.clone();
                let svc = service_fn(move |req| upstream(seen.clone(), req));
                conns.spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
            }
        });
        let proxy = FaultProxy::start_with_client(&url, client(rustls::RootCertStore::empty()));
        (proxy.await, url, seen)
    }

    async fn upstream(
        seen: Upstream,
        req: Request<Incoming>,
    ) -> Result<Response<UnsyncBoxBody<Bytes, Infallible>>, hyper::Error> {
        seen.lock().expect("seen").arrivals.push(Instant::now());
        let query = req.uri().query().unwrap_or_default().to_string();
        if is_watch(&query) {
            let (tx, rx) = mpsc::channel(8);
            tx.send(Bytes::from_static(b"ADDED\n")).await.expect("send");
            seen.lock().expect("seen").watch = Some(tx);
            let frames = futures::stream::unfold(rx, |mut rx| async move {
                Some((Ok(Frame::data(rx.recv().await?)), rx))
            });
            return Ok(Response::new(StreamBody::new(frames).boxed_unsync()));
        }
        let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        let head = json!([
            req.method().as_str(),
            req.uri().path(),
            query,
            header(header::AUTHORIZATION),
            header(header::HOST)
        ]);
        let body = req.into_body().collect().await?.to_bytes();
        let echo = json!({ "head": head, "body": String::from_utf8_lossy(&body) });
        Ok(Response::new(
            Full::new(Bytes::from(echo.to_string())).boxed_unsync(),
        ))
    }

    async fn next_chunk(resp: &mut reqwest::Response) -> Option<Bytes> {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk());
        chunk
            .await
            .expect("a chunk or the end in time")
            .expect("body")
    }

    #[tokio::test]
    async fn forwards_method_path_query_authorization_and_body() {
        let (proxy, upstream_url, _) = proxy().await;
        let url = format!(
            "{}/api/v1/namespaces/d/configmaps?fieldManager=t",
            proxy.url()
        );
        let resp = crate::harness::http()
            .post(url)
            .bearer_auth("s3cret")
            .header(header::CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let echo: Value = resp.json().await.expect("echo");
        let host = upstream_url.trim_start_matches("http://");
        let head = json!([
            "POST",
            "/api/v1/namespaces/d/configmaps",
            "fieldManager=t",
            "Bearer s3cret",
            host
        ]);
        assert_eq!(echo, json!({ "head": head, "body": "{}" }));
        let log = proxy.requests();
        assert_eq!((log.len(), log[0].status, log[0].faulted), (1, 200, false));
        assert_eq!(log[0].query, "fieldManager=t");
        assert_eq!(log[0].content_type.as_deref(), Some("application/json"));
        chrono::DateTime::parse_from_rfc3339(&log[0].time).expect("RFC 3339 time");
    }

    #[tokio::test]
    async fn counted_503_answers_a_status_with_retry_after_then_is_consumed() {
        let (proxy, _, seen) = proxy().await;
        let rule = FaultRule {
            retry_after_seconds: Some(3),
            ..FaultRule::fail("GET", "/api/", 503, 1)
        };
        proxy.add_fault(rule).expect("rule");
        let url = format!("{}/api/v1/namespaces/d/configmaps/c", proxy.url());
        let resp = crate::harness::http().get(&url).send().await.expect("send");
        assert_eq!(
            (resp.status().as_u16(), &resp.headers()[header::RETRY_AFTER]),
            (503, &HeaderValue::from(3))
        );
        let status: Value = resp.json().await.expect("status");
        assert_eq!(
            (&status["kind"], &status["status"], &status["code"]),
            (&json!("Status"), &json!("Failure"), &json!(503))
        );
        assert_eq!(status["reason"], "ServiceUnavailable");
        assert_eq!(status["details"]["retryAfterSeconds"], 3);
        assert!(
            seen.lock().expect("seen").arrivals.is_empty(),
            "a faulted request reached the upstream"
        );
        assert!(proxy.faults().is_empty(), "the counted rule is used up");
        assert_eq!(
            crate::harness::http()
                .get(&url)
                .send()
                .await
                .expect("send")
                .status(),
            200
        );
        let log: Vec<_> = proxy
            .requests()
            .iter()
            .map(|r| (r.status, r.faulted))
            .collect();
        assert_eq!(log, vec![(503, true), (200, false)]);
        proxy.clear_requests();
        assert!(proxy.requests().is_empty());
    }

    #[tokio::test]
    async fn delay_rule_holds_the_request_before_forwarding_it() {
        let (proxy, _, seen) = proxy().await;
        proxy
            .add_fault(FaultRule::delay("GET", "/api/", 300, 1))
            .expect("rule");
        let sent = Instant::now();
        let resp = crate::harness::http()
            .get(format!("{}/api/v1/namespaces", proxy.url()))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let reached = seen.lock().expect("seen").arrivals[0].duration_since(sent);
        assert!(
            reached >= Duration::from_millis(300),
            "the upstream was reached after {reached:?}"
        );
        let log = proxy.requests();
        assert_eq!((log[0].status, log[0].faulted), (200, false));
        assert!(proxy.faults().is_empty());
    }

    #[tokio::test]
    async fn drop_watches_ends_an_open_watch_stream() {
        let (proxy, _, seen) = proxy().await;
        let url = format!("{}/api/v1/configmaps?watch=true", proxy.url());
        let mut resp = crate::harness::http().get(url).send().await.expect("send");
        assert_eq!(
            next_chunk(&mut resp).await.as_deref(),
            Some(&b"ADDED\n"[..])
        );
        assert_eq!(
            proxy.requests()[0].status,
            200,
            "logged while the body streams"
        );
        let tx = seen
            .lock()
            .expect("seen")
            .watch
            .clone()
            .expect("open watch");
        tx.send(Bytes::from_static(b"MODIFIED\n"))
            .await
            .expect("send");
        assert_eq!(
            next_chunk(&mut resp).await.as_deref(),
            Some(&b"MODIFIED\n"[..])
        );
        proxy.drop_watches();
        assert_eq!(next_chunk(&mut resp).await, None, "the watch stream ended");
        let released = tokio::time::timeout(Duration::from_secs(10), tx.closed());
        released.await.expect("the upstream watch is released");
    }

    #[tokio::test]
    #[should_panic(expected = "no certificate in the upstream CA PEM")]
    async fn start_refuses_a_ca_pem_without_certificates() {
        FaultProxy::start("https://127.0.0.1:1", b"not a PEM").await;
    }
}
