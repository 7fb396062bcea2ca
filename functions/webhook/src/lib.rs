//! The kubetempura webhook function: verify, filter, normalise, enqueue.
//!
//! A stateless AWS Lambda function behind a function URL (or an API Gateway HTTP API). It
//! checks GitHub's `X-Hub-Signature-256` over the raw body, turns `pull_request` deliveries and
//! check results (`check_run`, `check_suite`, `workflow_run`, `status`) into small versioned
//! events and puts them on an SQS FIFO queue, one message group per pull request (or per commit
//! for a check result that names no pull request) and the delivery id as deduplication id; or,
//! when appliers fan out (one queue per applier), publishes them the same way to an SNS FIFO
//! topic those queues subscribe to.

pub mod config;
pub mod handler;
pub mod queue;

use std::sync::Arc;

use config::{Config, ConfigError, Destination, SecretSource, parse_secret_value};
use kubetempura_common::signature::WebhookSecrets;

/// How long one SQS (or SNS) call may take before the delivery is answered 503 (GitHub waits 10 s).
pub const QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// Builds the handler's state from configuration: AWS clients built once, secrets fetched once.
pub async fn build_app(config: &Config) -> Result<handler::App, ConfigError> {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_timeout(QUEUE_TIMEOUT)
        .connect_timeout(std::time::Duration::from_secs(2))
        .build();
    let retry = aws_config::retry::RetryConfig::standard().with_max_attempts(2);
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(retry)
        .load()
        .await;
    let secrets = match &config.secret {
        SecretSource::Inline(list) => {
            WebhookSecrets::from_comma_separated(list).map_err(|_| ConfigError::EmptySecret)?
        }
        SecretSource::SecretsManager(arn) => {
            let client = aws_sdk_secretsmanager::Client::new(&aws);
            let out = client
                .get_secret_value()
                .secret_id(arn)
                .send()
                .await
                .map_err(|e| {
                    ConfigError::SecretFetch(
                        aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
                    )
                })?;
            let value = out.secret_string().ok_or_else(|| {
                ConfigError::SecretFetch("the secret has no string value".to_owned())
            })?;
            parse_secret_value(value).map_err(|e| ConfigError::SecretFetch(e.to_string()))?
        }
    };
    // Both clients read the same configuration, so AWS_ENDPOINT_URL (an emulator) reaches both.
    let queue: Arc<dyn queue::EventQueue> = match &config.destination {
        Destination::Queue(url) => Arc::new(queue::SqsQueue::new(
            aws_sdk_sqs::Client::new(&aws),
            url.clone(),
        )),
        Destination::Topic(arn) => Arc::new(queue::SnsTopic::new(
            aws_sdk_sns::Client::new(&aws),
            arn.clone(),
        )),
    };
    Ok(handler::App {
        secrets,
        queue,
        max_body_bytes: config.max_body_bytes,
    })
}
