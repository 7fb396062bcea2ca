//! The kubetempura webhook function: verify, filter, normalise, enqueue.
//!
//! A stateless AWS Lambda function behind a function URL (or an API Gateway HTTP API). It
//! checks GitHub's `X-Hub-Signature-256` over the raw body, turns `pull_request` deliveries and
//! check results (`check_run`, `check_suite`, `workflow_run`, `status`) into small versioned
//! events and puts them on an SQS FIFO queue, one message group per pull request (or per commit
//! for a check result that names no pull request) and the delivery id as deduplication id; or,
//! when appliers fan out (one queue per applier), publishes them the same way to an SNS FIFO
//! topic those queues subscribe to.

pub mod aws;
pub mod config;
pub mod handler;
pub mod logging;
pub mod queue;

use std::sync::Arc;

use aws::{AwsSettings, Service};
use config::{Config, ConfigError, Destination, SecretSource, parse_secret_value};
use kubetempura_common::signature::WebhookSecrets;

/// How long one SQS (or SNS) call may take before the delivery is answered 503 (GitHub waits 10 s).
pub const QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// Builds the handler's state from configuration: AWS clients built once, secrets fetched once.
pub async fn build_app(config: &Config, aws: &AwsSettings) -> Result<handler::App, ConfigError> {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_timeout(QUEUE_TIMEOUT)
        .connect_timeout(std::time::Duration::from_secs(2))
        .build();
    let retry = aws_config::retry::RetryConfig::standard().with_max_attempts(2);
    let sdk = aws.sdk_config(aws::https_client(), timeouts, retry);
    let secrets = match &config.secret {
        SecretSource::Inline(list) => {
            WebhookSecrets::from_comma_separated(list).map_err(|_| ConfigError::EmptySecret)?
        }
        SecretSource::SecretsManager(arn) => {
            let mut conf = aws_sdk_secretsmanager::config::Builder::from(&sdk);
            conf.set_endpoint_url(aws.endpoint_for(Service::SecretsManager).map(str::to_owned));
            let client = aws_sdk_secretsmanager::Client::from_conf(conf.build());
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
    // Every client starts from the same configuration; AWS_ENDPOINT_URL (an emulator) reaches
    // each unless its service has its own.
    let queue: Arc<dyn queue::EventQueue> = match &config.destination {
        Destination::Queue(url) => {
            let mut conf = aws_sdk_sqs::config::Builder::from(&sdk);
            conf.set_endpoint_url(aws.endpoint_for(Service::Sqs).map(str::to_owned));
            Arc::new(queue::SqsQueue::new(
                aws_sdk_sqs::Client::from_conf(conf.build()),
                url.clone(),
            ))
        }
        Destination::Topic(arn) => {
            let mut conf = aws_sdk_sns::config::Builder::from(&sdk);
            conf.set_endpoint_url(aws.endpoint_for(Service::Sns).map(str::to_owned));
            Arc::new(queue::SnsTopic::new(
                aws_sdk_sns::Client::from_conf(conf.build()),
                arn.clone(),
            ))
        }
    };
    Ok(handler::App {
        secrets,
        queue,
        max_body_bytes: config.max_body_bytes,
    })
}

/// Tells Lambda why the cold start failed, through the Runtime API's `/runtime/init/error`
/// (errorType from [`ConfigError::error_type`], errorMessage the error), as a managed runtime
/// does: the failure then shows as the function's init error instead of a bare exit status.
/// Outside Lambda (no `AWS_LAMBDA_RUNTIME_API`) it does nothing; a failed report is logged.
pub async fn report_init_error(error: &ConfigError) {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return;
    }
    let body = serde_json::json!({
        "errorType": error.error_type(),
        "errorMessage": error.to_string(),
    })
    .to_string();
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri("/2018-06-01/runtime/init/error")
        .header("lambda-runtime-function-error-type", error.error_type())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(lambda_runtime_api_client::body::Body::from(body));
    let outcome = match (
        request,
        lambda_runtime_api_client::Client::builder().build(),
    ) {
        (Ok(request), Ok(client)) => client
            .call(request)
            .await
            .map_err(|e| e.to_string())
            .and_then(|answer| {
                if answer.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("the Runtime API answered {}", answer.status()))
                }
            }),
        (Err(e), _) => Err(e.to_string()),
        (_, Err(e)) => Err(e.to_string()),
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, "could not report the init error to the Lambda Runtime API");
    }
}
