//! The kubetempura notifier function: environment states in, GitHub deployments and one
//! comment per pull request out.
//!
//! An AWS Lambda function fed by the feedback queue (an SQS FIFO queue, one message group per
//! pull request) through an event source mapping with `ReportBatchItemFailures`. Each message
//! is a [`kubetempura_common::feedback::FeedbackEvent`]; the function acts as a GitHub App, so
//! the cluster that sent the event never holds a GitHub credential.

pub mod comment;
pub mod config;
pub mod deployment;
pub mod failure;
pub mod github;
pub mod handler;
pub mod jwt;
pub mod queue;

use config::{AppCredentials, Config, ConfigError, CredentialSource, parse_app_secret};

/// How long one AWS call (the secret at cold start, a visibility change) may take.
pub const AWS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Builds the handler's state from parts: the App's credentials, the REST API's base URL, an
/// SQS client and the feedback queue's URL. Tests use it with a GitHub stand-in's URL and an
/// SQS client pointed at an emulator.
pub fn app_from_parts(
    credentials: &AppCredentials,
    api_url: &str,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
) -> Result<handler::App, ConfigError> {
    let key = jwt::AppKey::new(credentials)?;
    Ok(handler::App {
        github: github::GitHub::new(api_url, key)?,
        queue: queue::FeedbackQueue::new(sqs, queue_url),
    })
}

/// Builds the handler's state from configuration: AWS clients built once (from the standard
/// AWS environment, `AWS_ENDPOINT_URL_SQS` included), the App's secret fetched once.
pub async fn build_app(config: &Config) -> Result<handler::App, ConfigError> {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_timeout(AWS_TIMEOUT)
        .connect_timeout(std::time::Duration::from_secs(2))
        .build();
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    let credentials = match &config.credentials {
        CredentialSource::Inline(credentials) => credentials.clone(),
        CredentialSource::SecretsManager(arn) => {
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
            parse_app_secret(value)?
        }
    };
    app_from_parts(
        &credentials,
        &config.api_url,
        aws_sdk_sqs::Client::new(&aws),
        config.queue_url.clone(),
    )
}
