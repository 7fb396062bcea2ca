//! Building the Kubernetes client.
//!
//! kube's rustls uses the `aws-lc-rs` provider (the same one the AWS SDK links), so a process
//! linking both has exactly one rustls crypto provider and building a client cannot panic with
//! "Could not automatically determine the process-level CryptoProvider".

/// Infers the configuration (in-cluster, then `KUBECONFIG`/`~/.kube/config`) and builds a client.
///
/// kube's own retry of 429/503/504 is off: it retries without bound and hides failures from
/// the consumer, so a permanently failing API server would hold a message (past its visibility
/// timeout) instead of letting it back off and reach the dead-letter queue. Retrying is the
/// queue's job.
pub async fn infer_client() -> Result<kube::Client, kube::Error> {
    let mut config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    config.default_retry = false;
    kube::Client::try_from(config)
}

#[cfg(test)]
mod tests {
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
        let client = kube::Client::try_from(config);
        assert!(client.is_ok(), "{:?}", client.err());
    }
}
