//! Configuration, read once at cold start from the environment.

use kubetempura_common::signature::{SignatureError, WebhookSecrets};

/// URL of the SQS FIFO queue events are sent to (one applier, or appliers sharing nothing).
pub const ENV_QUEUE_URL: &str = "QUEUE_URL";
/// ARN of the SNS FIFO topic events are published to when they fan out to a queue per applier
/// (Terraform's `appliers`); exactly one of this and [`ENV_QUEUE_URL`] is set.
pub const ENV_TOPIC_ARN: &str = "TOPIC_ARN";
/// Webhook secret(s) given directly (local use); several comma-separated values during rotation.
pub const ENV_WEBHOOK_SECRET: &str = "WEBHOOK_SECRET";
/// ARN of an AWS Secrets Manager secret holding the webhook secret(s) (production).
pub const ENV_WEBHOOK_SECRET_ARN: &str = "WEBHOOK_SECRET_ARN";
/// Largest request body accepted, in bytes (optional; defaults to [`DEFAULT_MAX_BODY_BYTES`]).
pub const ENV_MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";

/// Every variable the function reads itself (the AWS SDK reads its own standard ones).
pub const ENV_VARS: &[&str] = &[
    ENV_QUEUE_URL,
    ENV_TOPIC_ARN,
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

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An SQS FIFO queue (`QUEUE_URL`).
    Queue(String),
    /// An SNS FIFO topic (`TOPIC_ARN`) with a queue per applier subscribed to it.
    Topic(String),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Queue(url) => write!(f, "queue {url}"),
            Self::Topic(arn) => write!(f, "topic {arn}"),
        }
    }
}

/// The function's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub destination: Destination,
    pub secret: SecretSource,
    pub max_body_bytes: usize,
}

/// Missing or contradictory configuration: the cold start fails with this message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "neither {ENV_QUEUE_URL} nor {ENV_TOPIC_ARN} is set: one must name where events go, the SQS FIFO queue (https://sqs.<region>.amazonaws.com/<account>/<name>.fifo) or the SNS FIFO topic the appliers' queues subscribe to (arn:<partition>:sns:<region>:<account>:<name>.fifo)"
    )]
    MissingDestination,
    #[error(
        "both {ENV_QUEUE_URL} and {ENV_TOPIC_ARN} are set: set exactly one (the topic when appliers fan out, else the queue)"
    )]
    ContradictoryDestination,
    #[error("{ENV_QUEUE_URL} {0:?} does not name a FIFO queue (its name must end in .fifo)")]
    NotFifo(String),
    #[error(
        "{ENV_TOPIC_ARN} {0:?} is not the ARN of an SNS FIFO topic (arn:<partition>:sns:<region>:<account>:<name>.fifo)"
    )]
    BadTopicArn(String),
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
    #[error(
        "AWS_REGION is not set (nor AWS_DEFAULT_REGION): Lambda sets it; elsewhere set it to the queue's region"
    )]
    MissingRegion,
    #[error("{0} is {1:?}: set true or false")]
    BadFlag(&'static str, String),
}

impl ConfigError {
    /// The `errorType` Lambda records for a cold start failing with this error (what
    /// `/runtime/init/error` is told, and what shows as the function's init error).
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::SecretFetch(_) => "kubetempura.SecretFetchError",
            _ => "kubetempura.ConfigError",
        }
    }
}

impl Config {
    /// Reads the configuration through `var` (the process environment in production).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let destination = match (set(ENV_QUEUE_URL), set(ENV_TOPIC_ARN)) {
            (Some(_), Some(_)) => return Err(ConfigError::ContradictoryDestination),
            (None, None) => return Err(ConfigError::MissingDestination),
            (Some(url), None) => {
                let url = url.trim().to_owned();
                if !url.trim_end_matches('/').ends_with(".fifo") {
                    return Err(ConfigError::NotFifo(url));
                }
                Destination::Queue(url)
            }
            (None, Some(arn)) => {
                let arn = arn.trim().to_owned();
                let parts: Vec<&str> = arn.split(':').collect();
                if parts.len() != 6
                    || parts[0] != "arn"
                    || parts[2] != "sns"
                    || !parts[5].ends_with(".fifo")
                {
                    return Err(ConfigError::BadTopicArn(arn));
                }
                Destination::Topic(arn)
            }
        };
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
            destination,
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
    const T: &str = "arn:aws:sns:eu-west-1:123456789012:kubetempura-events.fifo";

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
        assert_eq!(c.destination, Destination::Queue(Q.into()));
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
            Err(ConfigError::MissingDestination)
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
    fn a_topic_arn_is_read_instead_of_a_queue_url() {
        let c = config(&[(ENV_TOPIC_ARN, T), (ENV_WEBHOOK_SECRET, "a")]).unwrap();
        assert_eq!(c.destination, Destination::Topic(T.into()));
        assert_eq!(c.destination.to_string(), format!("topic {T}"));
    }

    #[test]
    fn exactly_one_of_queue_url_and_topic_arn_is_required() {
        let both = config(&[
            (ENV_QUEUE_URL, Q),
            (ENV_TOPIC_ARN, T),
            (ENV_WEBHOOK_SECRET, "a"),
        ]);
        assert_eq!(both, Err(ConfigError::ContradictoryDestination));
        let msg = ConfigError::ContradictoryDestination.to_string();
        assert!(
            msg.contains("QUEUE_URL") && msg.contains("TOPIC_ARN"),
            "{msg}"
        );
        // Blank counts as unset, as for every other variable.
        let neither = config(&[(ENV_QUEUE_URL, " "), (ENV_WEBHOOK_SECRET, "a")]);
        assert_eq!(neither, Err(ConfigError::MissingDestination));
        let msg = ConfigError::MissingDestination.to_string();
        assert!(
            msg.contains("QUEUE_URL") && msg.contains("TOPIC_ARN"),
            "{msg}"
        );
    }

    #[test]
    fn a_topic_arn_must_name_an_sns_fifo_topic() {
        for bad in [
            "arn:aws:sns:eu-west-1:123456789012:kubetempura-events",
            "arn:aws:sqs:eu-west-1:123456789012:kubetempura-events.fifo",
            "arn:aws:sns:eu-west-1:123456789012:kubetempura-events.fifo:3fbbd62d",
            "kubetempura-events.fifo",
        ] {
            assert_eq!(
                config(&[(ENV_TOPIC_ARN, bad), (ENV_WEBHOOK_SECRET, "a")]),
                Err(ConfigError::BadTopicArn(bad.into())),
                "{bad}"
            );
        }
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
