//! Building the Kubernetes clients.
//!
//! kube's rustls uses the `aws-lc-rs` provider (the same one the AWS SDK links). A workspace
//! build unifies features, and the webhook function's rustls brings `ring` too, so a binary
//! built with the whole workspace links two providers: [`clients`] installs aws-lc-rs as the
//! process default first, so building a client cannot panic with "Could not automatically
//! determine the process-level CryptoProvider", however the binary was built.

use std::time::Duration;

/// The applier's two clients, from one inferred configuration.
#[derive(Clone)]
pub struct Clients {
    /// For every request the applier makes (apply, delete, status, Events, discovery): each is
    /// bounded by the request timeout, so a hung API server fails the request (a transient
    /// failure, retried) and frees its environment and its worker.
    pub requests: kube::Client,
    /// For the watches of the caches: kube's defaults. A watch is one long request (minutes of
    /// silence are normal), which a request timeout would cut; the watcher has its own idle
    /// timeout and relists after any error.
    pub watches: kube::Client,
}

/// Makes aws-lc-rs the process's rustls provider (a no-op when one is installed already).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Infers the configuration (in-cluster, then `KUBECONFIG`/`~/.kube/config`) and builds both
/// clients; `request_timeout` bounds each request of [`Clients::requests`].
///
/// kube's own retry of 429/503/504 is off in both: it retries without bound and hides failures
/// from the consumer, which retries with its own backoff and budget and counts every attempt.
pub async fn clients(request_timeout: Duration) -> Result<Clients, kube::Error> {
    install_crypto_provider();
    let mut config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    config.default_retry = false;
    Ok(Clients {
        requests: bounded_client(config.clone(), request_timeout)?,
        watches: kube::Client::try_from(config)?,
    })
}

/// A client whose every request fails after `timeout` without an answer, like kubectl's
/// `--request-timeout`: the whole exchange up to the response head is bounded, with an error
/// that says so ("request timed out"). The connection's own timeouts, twice as long so that
/// they never pre-empt that clear error, bound what comes after the head (reading the body).
pub fn bounded_client(
    mut config: kube::Config,
    timeout: Duration,
) -> Result<kube::Client, kube::Error> {
    let backstop = timeout.saturating_mul(2);
    config.connect_timeout = Some(backstop);
    config.write_timeout = Some(backstop);
    config.read_timeout = Some(backstop);
    // The read timeout counts from the request, not from when its pooled connection went idle.
    config.reset_reader_on_write = true;
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::timeout::TimeoutLayer::new(timeout))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    /// This test binary links aws-sdk-sqs; building an HTTPS kube client must not panic over
    /// an ambiguous rustls crypto provider.
    #[tokio::test]
    async fn kube_https_client_builds_beside_the_aws_sdk() {
        let _sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
                .region(aws_sdk_sqs::config::Region::new("us-east-1"))
                .endpoint_url("https://127.0.0.1:1")
                .build(),
        );
        let config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        let client = kube::Client::try_from(config.clone());
        assert!(client.is_ok(), "{:?}", client.err());
        let bounded = bounded_client(config, Duration::from_secs(1));
        assert!(bounded.is_ok(), "{:?}", bounded.err());
    }

    /// A server that accepts the connection and never answers: the request fails after the
    /// timeout with an error that says so.
    #[tokio::test]
    async fn a_request_to_a_server_that_never_answers_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        let client = bounded_client(config, Duration::from_millis(300)).unwrap();
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "default");
        let started = std::time::Instant::now();
        let err = api.get("anything").await.unwrap_err();
        let took = started.elapsed();
        server.abort();
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert!(err.to_string().contains("timed out"), "{err}");
    }
}
