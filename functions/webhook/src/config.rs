//! Configuration, read once at cold start from the environment.

/// URL of the SQS FIFO queue events are sent to.
pub const ENV_QUEUE_URL: &str = "QUEUE_URL";
/// Webhook secret(s) given directly (local use); several comma-separated values during rotation.
pub const ENV_WEBHOOK_SECRET: &str = "WEBHOOK_SECRET";
/// ARN of an AWS Secrets Manager secret holding the webhook secret(s) (production).
pub const ENV_WEBHOOK_SECRET_ARN: &str = "WEBHOOK_SECRET_ARN";
/// Largest request body accepted, in bytes (optional; defaults to [`DEFAULT_MAX_BODY_BYTES`]).
pub const ENV_MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";

/// Every variable the function reads itself (the AWS SDK reads its own standard ones).
pub const ENV_VARS: &[&str] = &[ENV_QUEUE_URL, ENV_WEBHOOK_SECRET, ENV_WEBHOOK_SECRET_ARN, ENV_MAX_BODY_BYTES];

/// Default body limit, 5 MiB. GitHub caps payloads at 25 MB, but a Lambda invocation payload
/// (the whole event: headers, and the body base64-encoded when it is not text) is at most 6 MB;
/// 5 MiB keeps clear of it so an over-large delivery gets our clear 413.
pub const DEFAULT_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
