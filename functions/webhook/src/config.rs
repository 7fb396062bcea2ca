//! Configuration, read once at cold start from the environment.

use kubetempura_common::signature::{SignatureError, WebhookSecrets};

/// URL of the SQS FIFO queue events are sent to.
pub const ENV_QUEUE_URL: &str = "QUEUE_URL";
/// Webhook secret(s) given directly (local use); several comma-separated values during rotation.
pub const ENV_WEBHOOK_SECRET: &str = "WEBHOOK_SECRET";
/// ARN of an AWS Secrets Manager secret holding the webhook secret(s) (production).
pub const ENV_WEBHOOK_SECRET_ARN: &str = "WEBHOOK_SECRET_ARN";
/// Largest request body accepted, in bytes (optional; defaults to [`DEFAULT_MAX_BODY_BYTES`]).
pub const ENV_MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";

/// Every variable the function reads itself (the AWS SDK reads its own standard ones).
pub const ENV_VARS: &[&str] = &[
    ENV_QUEUE_URL,
    ENV_WEBHOOK_SECRET,
    ENV_WEBHOOK_SECRET_ARN,
    ENV_MAX_BODY_BYTES,
];

/// Default body limit, 5 MiB. GitHub caps payloads at 25 MB, but a Lambda invocation payload
/// (the whole event: headers, and the body base64-encoded when it is not text) is at most 6 MB;
/// 5 MiB keeps clear of it so an over-large delivery that does arrive gets our clear 413.
pub const DEFAULT_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
/// The function URL's own request limit; a larger `MAX_BODY_BYTES` could never take effect.
pub const FUNCTION_URL_LIMIT_BYTES: usize = 6_000_000;

/// Where the webhook secret(s) come from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Given in `WEBHOOK_SECRET` (comma-separated during rotation).
    Inline(String),
    /// A Secrets Manager secret ARN, fetched once per cold start.
    SecretsManager(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Inline(redacted)"),
            Self::SecretsManager(arn) => write!(f, "SecretsManager({arn})"),
        }
    }
}

/// The function's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub queue_url: String,
    pub secret: SecretSource,
    pub max_body_bytes: usize,
}

/// Missing or contradictory configuration: the cold start fails with this message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "{ENV_QUEUE_URL} is not set: it must name the SQS FIFO queue (https://sqs.<region>.amazonaws.com/<account>/<name>.fifo)"
    )]
    MissingQueueUrl,
    #[error("{ENV_QUEUE_URL} {0:?} does not name a FIFO queue (its name must end in .fifo)")]
    NotFifo(String),
    #[error(
        "neither {ENV_WEBHOOK_SECRET} nor {ENV_WEBHOOK_SECRET_ARN} is set: one must give the webhook secret"
    )]
    MissingSecret,
    #[error("both {ENV_WEBHOOK_SECRET} and {ENV_WEBHOOK_SECRET_ARN} are set: set exactly one")]
    ContradictorySecret,
    #[error("{ENV_WEBHOOK_SECRET} holds no usable secret")]
    EmptySecret,
    #[error(
        "{ENV_WEBHOOK_SECRET_ARN} {0:?} is not a Secrets Manager ARN (arn:<partition>:secretsmanager:...)"
    )]
    BadSecretArn(String),
    #[error(
        "{ENV_MAX_BODY_BYTES} {0:?} must be a whole number of bytes from 1024 to {FUNCTION_URL_LIMIT_BYTES}"
    )]
    BadMaxBody(String),
    #[error("the secret from {ENV_WEBHOOK_SECRET_ARN} could not be read: {0}")]
    SecretFetch(String),
}

impl Config {
    /// Reads the configuration through `var` (the process environment in production).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let queue_url = set(ENV_QUEUE_URL)
            .ok_or(ConfigError::MissingQueueUrl)?
            .trim()
            .to_owned();
        if !queue_url.trim_end_matches('/').ends_with(".fifo") {
            return Err(ConfigError::NotFifo(queue_url));
        }
        let secret = match (set(ENV_WEBHOOK_SECRET), set(ENV_WEBHOOK_SECRET_ARN)) {
            (Some(_), Some(_)) => return Err(ConfigError::ContradictorySecret),
            (None, None) => return Err(ConfigError::MissingSecret),
            (Some(s), None) => {
                if WebhookSecrets::from_comma_separated(&s).is_err() {
                    return Err(ConfigError::EmptySecret);
                }
                SecretSource::Inline(s)
            }
            (None, Some(arn)) => {
                let arn = arn.trim().to_owned();
                let parts: Vec<&str> = arn.splitn(6, ':').collect();
                if parts.len() != 6 || parts[0] != "arn" || parts[2] != "secretsmanager" {
                    return Err(ConfigError::BadSecretArn(arn));
                }
                SecretSource::SecretsManager(arn)
            }
        };
        let max_body_bytes = match set(ENV_MAX_BODY_BYTES) {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1024..=FUNCTION_URL_LIMIT_BYTES).contains(n))
                .ok_or(ConfigError::BadMaxBody(v))?,
        };
        Ok(Self {
            queue_url,
            secret,
            max_body_bytes,
        })
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// Parses the value of a Secrets Manager secret: a plain string (comma-separated during
/// rotation), a JSON array of strings, or a JSON object with `secret` or `secrets`.
pub fn parse_secret_value(value: &str) -> Result<WebhookSecrets, SignatureError> {
    let trimmed = value.trim();
    if (trimmed.starts_with('[') || trimmed.starts_with('{'))
        && let Ok(json) = serde_json::from_str::<serde_json::Value>(trimmed)
    {
        {
            let list: Vec<String> = match &json {
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                serde_json::Value::Object(map) => match (map.get("secrets"), map.get("secret")) {
                    (Some(serde_json::Value::Array(items)), _) => items
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                    (_, Some(serde_json::Value::String(s))) => vec![s.clone()],
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            };
            return WebhookSecrets::new(list.iter().map(|s| s.trim()));
        }
    }
    WebhookSecrets::from_comma_separated(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const Q: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/kubetempura-events.fifo";

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn inline_secret_configuration_is_read() {
        let c = config(&[(ENV_QUEUE_URL, Q), (ENV_WEBHOOK_SECRET, "a,b")]).unwrap();
        assert_eq!(c.queue_url, Q);
        assert_eq!(c.secret, SecretSource::Inline("a,b".into()));
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn secret_arn_configuration_is_read() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kubetempura-webhook-AbCdEf";
        let c = config(&[
            (ENV_QUEUE_URL, Q),
            (ENV_WEBHOOK_SECRET_ARN, arn),
            (ENV_MAX_BODY_BYTES, "2048"),
        ])
        .unwrap();
        assert_eq!(c.secret, SecretSource::SecretsManager(arn.into()));
        assert_eq!(c.max_body_bytes, 2048);
    }

    #[test]
    fn missing_or_contradictory_configuration_fails_clearly() {
        assert_eq!(
            config(&[(ENV_WEBHOOK_SECRET, "a")]),
            Err(ConfigError::MissingQueueUrl)
        );
        assert_eq!(
            config(&[(ENV_QUEUE_URL, "https://sqs/q"), (ENV_WEBHOOK_SECRET, "a")]),
            Err(ConfigError::NotFifo("https://sqs/q".into()))
        );
        assert_eq!(
            config(&[(ENV_QUEUE_URL, Q)]),
            Err(ConfigError::MissingSecret)
        );
        assert_eq!(
            config(&[
                (ENV_QUEUE_URL, Q),
                (ENV_WEBHOOK_SECRET, "a"),
                (
                    ENV_WEBHOOK_SECRET_ARN,
                    "arn:aws:secretsmanager:r:1:secret:x"
                )
            ]),
            Err(ConfigError::ContradictorySecret)
        );
        assert_eq!(
            config(&[(ENV_QUEUE_URL, Q), (ENV_WEBHOOK_SECRET, " , ")]),
            Err(ConfigError::EmptySecret)
        );
        assert_eq!(
            config(&[
                (ENV_QUEUE_URL, Q),
                (ENV_WEBHOOK_SECRET_ARN, "arn:aws:s3:::bucket")
            ]),
            Err(ConfigError::BadSecretArn("arn:aws:s3:::bucket".into()))
        );
        assert_eq!(
            config(&[
                (ENV_QUEUE_URL, Q),
                (ENV_WEBHOOK_SECRET, "a"),
                (ENV_MAX_BODY_BYTES, "7000000")
            ]),
            Err(ConfigError::BadMaxBody("7000000".into()))
        );
        let msg = ConfigError::MissingSecret.to_string();
        assert!(
            msg.contains("WEBHOOK_SECRET") && msg.contains("WEBHOOK_SECRET_ARN"),
            "{msg}"
        );
    }

    #[test]
    fn debug_output_never_shows_an_inline_secret() {
        let c = config(&[(ENV_QUEUE_URL, Q), (ENV_WEBHOOK_SECRET, "hunter2")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn secret_values_in_all_documented_forms() {
        assert_eq!(parse_secret_value("new, old").unwrap().len(), 2);
        assert_eq!(parse_secret_value(r#"["new","old"]"#).unwrap().len(), 2);
        assert_eq!(
            parse_secret_value(r#"{"secrets":["a","b","c"]}"#)
                .unwrap()
                .len(),
            3
        );
        assert_eq!(parse_secret_value(r#"{"secret":"a"}"#).unwrap().len(), 1);
        assert!(parse_secret_value(r#"{"other":"a"}"#).is_err());
        assert!(parse_secret_value("").is_err());
    }
}
