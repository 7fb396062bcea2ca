//! The test harness: starts each local part on free loopback ports, waits for readiness on
//! a condition (never a fixed sleep), and stops everything it started when dropped — also when
//! a test panics.
//!
//! - [`sqs::SqsEmulator`]: `ministack` speaking the real SQS (and SNS, Secrets Manager)
//!   protocol; [`fanout`] puts a topic before a queue per applier on it.
//! - [`lambda::WebhookFunction`]: the webhook binary under `cargo lambda watch`, served as a
//!   function URL; [`notifier::NotifierFunction`]: the notifier binary under it too, fed from a
//!   queue by a stand-in for the SQS event source mapping.
//! - [`controlplane::Cluster`]: the real Kubernetes control plane (shared by the test run, or
//!   started for the process), [`install`] puts infra/'s RBAC on it for each test, and
//!   [`faultproxy::FaultProxy`] injects API errors and hangs between the applier and it.
//! - [`github_api::GitHubStandIn`]: GitHub's REST API for the notifier on loopback, holding
//!   requests and its own responses to GitHub's published OpenAPI description.
//! - [`tools`]: where the pinned tools installed by `make deps` live.

pub mod applier;
pub mod controlplane;
pub mod fanout;
pub mod faultproxy;
pub mod faults;
pub mod github;
pub mod github_api;
pub mod install;
pub mod kubeapi;
pub mod lambda;
pub mod notifier;
pub mod process;
pub mod runtime_api;
pub mod sqs;
pub mod stack;
pub mod tls;
pub mod tools;

use std::future::Future;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Polls `check` until it yields `Some`, or panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut interval = Duration::from_millis(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_millis(250));
    }
}

/// Serves HTTP/1.1 connections from `listener` with `handle` until the task running it is
/// aborted; the connections in flight end with it (dropping the JoinSet aborts them).
pub async fn serve_http1<H, Fut, B>(listener: tokio::net::TcpListener, handle: H)
where
    H: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = http::Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let handle = handle.clone();
                    let svc = hyper::service::service_fn(move |req| {
                        let answer = handle(req);
                        async move { Ok::<_, std::convert::Infallible>(answer.await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                    conns.spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Waits until an HTTP GET of `url` answers with any status below 500.
pub async fn wait_http(what: &str, url: &str, timeout: Duration) {
    let client = http();
    wait_for(what, timeout, || {
        let req = client.get(url).timeout(Duration::from_secs(2));
        async move {
            req.send()
                .await
                .ok()
                .filter(|r| r.status().as_u16() < 500)
                .map(|_| ())
        }
    })
    .await;
}

/// An HTTP client for the tests. The workspace's `reqwest` is built with rustls and no built-in
/// crypto provider (the notifier's TLS, unified into every crate of a workspace build), so the
/// process default — aws-lc-rs, the provider kube uses — is installed first.
pub fn http() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::new()
}

/// Makes aws-lc-rs the test process's rustls provider. A workspace build links `ring` too (the
/// webhook function's TLS), and rustls refuses to guess between two.
pub fn install_crypto_provider() {
    kubetempura_applier::kube_client::install_crypto_provider();
}
