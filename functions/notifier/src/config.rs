//! Configuration, read once at cold start from the environment.

/// ARN of an AWS Secrets Manager secret whose string is `{"appId": ..., "privateKey": "..."}`
/// (production).
pub const ENV_GITHUB_APP_SECRET_ARN: &str = "GITHUB_APP_SECRET_ARN";
/// The GitHub App's id, given directly (with [`ENV_GITHUB_APP_PRIVATE_KEY`]; local use).
pub const ENV_GITHUB_APP_ID: &str = "GITHUB_APP_ID";
/// The GitHub App's private key, PEM (PKCS#1 or PKCS#8), given directly (local use).
pub const ENV_GITHUB_APP_PRIVATE_KEY: &str = "GITHUB_APP_PRIVATE_KEY";
/// Base URL of the GitHub REST API (optional; defaults to [`DEFAULT_GITHUB_API_URL`]).
pub const ENV_GITHUB_API_URL: &str = "GITHUB_API_URL";
/// URL of the SQS FIFO feedback queue the function consumes (for ChangeMessageVisibility).
pub const ENV_FEEDBACK_QUEUE_URL: &str = "FEEDBACK_QUEUE_URL";

/// Every variable the function reads itself (the AWS SDK reads its own standard ones).
pub const ENV_VARS: &[&str] = &[
    ENV_GITHUB_APP_SECRET_ARN,
    ENV_GITHUB_APP_ID,
    ENV_GITHUB_APP_PRIVATE_KEY,
    ENV_GITHUB_API_URL,
    ENV_FEEDBACK_QUEUE_URL,
];

/// github.com's API. GitHub Enterprise Server answers at `https://HOST/api/v3`.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";

/// The GitHub App's identity: its id and private key.
#[derive(Clone, PartialEq, Eq)]
pub struct AppCredentials {
    /// The App's numeric id, as a string (the JWT's `iss`).
    pub app_id: String,
    /// PEM text of the App's RSA private key.
    pub private_key: String,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("private_key", &"redacted")
            .finish()
    }
}

/// Where the App's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Given in `GITHUB_APP_ID` and `GITHUB_APP_PRIVATE_KEY`.
    Inline(AppCredentials),
    /// A Secrets Manager secret ARN, fetched once per cold start.
    SecretsManager(String),
}

/// The function's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub queue_url: String,
    /// The REST API's base URL, without a trailing `/`.
    pub api_url: String,
    pub credentials: CredentialSource,
}

/// Missing or contradictory configuration: the cold start fails with this message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "{ENV_FEEDBACK_QUEUE_URL} is not set: it must name the SQS FIFO feedback queue (https://sqs.<region>.amazonaws.com/<account>/<name>.fifo)"
    )]
    MissingQueueUrl,
    #[error(
        "{ENV_FEEDBACK_QUEUE_URL} {0:?} does not name a FIFO queue (its name must end in .fifo)"
    )]
    NotFifo(String),
    #[error(
        "no GitHub App credentials: set {ENV_GITHUB_APP_SECRET_ARN}, or both {ENV_GITHUB_APP_ID} and {ENV_GITHUB_APP_PRIVATE_KEY}"
    )]
    MissingCredentials,
    #[error(
        "{ENV_GITHUB_APP_SECRET_ARN} and {ENV_GITHUB_APP_ID}/{ENV_GITHUB_APP_PRIVATE_KEY} are both set: give the App's credentials one way only"
    )]
    ContradictoryCredentials,
    #[error("{0} is set but {1} is not: the App's id and private key go together")]
    HalfCredentials(&'static str, &'static str),
    #[error(
        "{ENV_GITHUB_APP_SECRET_ARN} {0:?} is not a Secrets Manager ARN (arn:<partition>:secretsmanager:...)"
    )]
    BadSecretArn(String),
    #[error("the GitHub App id {0:?} is not a positive whole number")]
    BadAppId(String),
    #[error("the GitHub App private key is not an RSA private key in PEM (PKCS#1 or PKCS#8): {0}")]
    BadPrivateKey(String),
    #[error(
        "{ENV_GITHUB_API_URL} {0:?} is not an http(s) URL (https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server)"
    )]
    BadApiUrl(String),
    #[error(
        "the secret from {ENV_GITHUB_APP_SECRET_ARN} is not JSON {{\"appId\": ..., \"privateKey\": \"...\"}}: {0}"
    )]
    BadSecretValue(String),
    #[error("the secret from {ENV_GITHUB_APP_SECRET_ARN} could not be read: {0}")]
    SecretFetch(String),
    #[error("the HTTP client could not be built: {0}")]
    HttpClient(String),
}

impl Config {
    /// Reads the configuration through `var` (the process environment in production).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let queue_url = set(ENV_FEEDBACK_QUEUE_URL)
            .ok_or(ConfigError::MissingQueueUrl)?
            .trim()
            .to_owned();
        if !queue_url.trim_end_matches('/').ends_with(".fifo") {
            return Err(ConfigError::NotFifo(queue_url));
        }
        let api_url = match set(ENV_GITHUB_API_URL) {
            None => DEFAULT_GITHUB_API_URL.to_owned(),
            Some(v) => parse_api_url(&v)?,
        };
        let credentials = match (
            set(ENV_GITHUB_APP_SECRET_ARN),
            set(ENV_GITHUB_APP_ID),
            set(ENV_GITHUB_APP_PRIVATE_KEY),
        ) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(ConfigError::ContradictoryCredentials);
            }
            (None, None, None) => return Err(ConfigError::MissingCredentials),
            (None, Some(_), None) => {
                return Err(ConfigError::HalfCredentials(
                    ENV_GITHUB_APP_ID,
                    ENV_GITHUB_APP_PRIVATE_KEY,
                ));
            }
            (None, None, Some(_)) => {
                return Err(ConfigError::HalfCredentials(
                    ENV_GITHUB_APP_PRIVATE_KEY,
                    ENV_GITHUB_APP_ID,
                ));
            }
            (None, Some(id), Some(key)) => CredentialSource::Inline(AppCredentials {
                app_id: parse_app_id(&id)?,
                private_key: normalise_pem(&key),
            }),
            (Some(arn), None, None) => {
                let arn = arn.trim().to_owned();
                let parts: Vec<&str> = arn.splitn(6, ':').collect();
                if parts.len() != 6 || parts[0] != "arn" || parts[2] != "secretsmanager" {
                    return Err(ConfigError::BadSecretArn(arn));
                }
                CredentialSource::SecretsManager(arn)
            }
        };
        Ok(Self {
            queue_url,
            api_url,
            credentials,
        })
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// An http(s) URL without query or fragment, returned without its trailing `/`.
fn parse_api_url(value: &str) -> Result<String, ConfigError> {
    let trimmed = value.trim().trim_end_matches('/');
    let bad = || ConfigError::BadApiUrl(value.to_owned());
    let url = url::Url::parse(trimmed).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(bad());
    }
    Ok(trimmed.to_owned())
}

/// GitHub App ids are positive integers; the JWT carries them as a string.
fn parse_app_id(value: &str) -> Result<String, ConfigError> {
    let id = value.trim();
    match id.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n.to_string()),
        _ => Err(ConfigError::BadAppId(value.to_owned())),
    }
}

/// A PEM pasted into a single-line variable often arrives with literal `\n`: restore the lines.
fn normalise_pem(value: &str) -> String {
    let value = value.trim();
    if !value.contains('\n') && value.contains("\\n") {
        value.replace("\\n", "\n")
    } else {
        value.to_owned()
    }
}

/// Parses the Secrets Manager secret's string: `{"appId": "123" | 123, "privateKey": "PEM"}`.
pub fn parse_app_secret(value: &str) -> Result<AppCredentials, ConfigError> {
    let json: serde_json::Value = serde_json::from_str(value.trim())
        .map_err(|e| ConfigError::BadSecretValue(format!("not JSON ({e})")))?;
    let app_id = match json.get("appId") {
        Some(serde_json::Value::String(s)) => parse_app_id(s)?,
        Some(serde_json::Value::Number(n)) => parse_app_id(&n.to_string())?,
        Some(_) => {
            return Err(ConfigError::BadSecretValue(
                "appId must be a number or a string of digits".to_owned(),
            ));
        }
        None => return Err(ConfigError::BadSecretValue("appId is missing".to_owned())),
    };
    let private_key = match json.get("privateKey") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => normalise_pem(s),
        _ => {
            return Err(ConfigError::BadSecretValue(
                "privateKey must be the PEM text of the App's private key".to_owned(),
            ));
        }
    };
    Ok(AppCredentials {
        app_id,
        private_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const Q: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/kubetempura-feedback.fifo";
    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kubetempura-app-AbCdEf";
    const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----";

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn inline_credentials_and_default_api_url_are_read() {
        let c = config(&[
            (ENV_FEEDBACK_QUEUE_URL, Q),
            (ENV_GITHUB_APP_ID, " 123456 "),
            (ENV_GITHUB_APP_PRIVATE_KEY, PEM),
        ])
        .unwrap();
        assert_eq!(c.queue_url, Q);
        assert_eq!(c.api_url, DEFAULT_GITHUB_API_URL);
        assert_eq!(
            c.credentials,
            CredentialSource::Inline(AppCredentials {
                app_id: "123456".into(),
                private_key: PEM.into()
            })
        );
    }

    #[test]
    fn secret_arn_and_an_enterprise_api_url_are_read() {
        let c = config(&[
            (ENV_FEEDBACK_QUEUE_URL, Q),
            (ENV_GITHUB_APP_SECRET_ARN, ARN),
            (ENV_GITHUB_API_URL, "https://ghe.example.com/api/v3/"),
        ])
        .unwrap();
        assert_eq!(c.credentials, CredentialSource::SecretsManager(ARN.into()));
        assert_eq!(c.api_url, "https://ghe.example.com/api/v3");
        let local = config(&[
            (ENV_FEEDBACK_QUEUE_URL, Q),
            (ENV_GITHUB_APP_SECRET_ARN, ARN),
            (ENV_GITHUB_API_URL, "http://127.0.0.1:8443"),
        ])
        .unwrap();
        assert_eq!(local.api_url, "http://127.0.0.1:8443");
    }

    #[test]
    fn missing_half_or_contradictory_credentials_fail_clearly() {
        let q = (ENV_FEEDBACK_QUEUE_URL, Q);
        assert_eq!(config(&[q]), Err(ConfigError::MissingCredentials));
        let msg = ConfigError::MissingCredentials.to_string();
        for name in [
            ENV_GITHUB_APP_SECRET_ARN,
            ENV_GITHUB_APP_ID,
            ENV_GITHUB_APP_PRIVATE_KEY,
        ] {
            assert!(msg.contains(name), "{msg}");
        }
        assert_eq!(
            config(&[q, (ENV_GITHUB_APP_ID, "1")]),
            Err(ConfigError::HalfCredentials(
                ENV_GITHUB_APP_ID,
                ENV_GITHUB_APP_PRIVATE_KEY
            ))
        );
        assert_eq!(
            config(&[q, (ENV_GITHUB_APP_PRIVATE_KEY, PEM)]),
            Err(ConfigError::HalfCredentials(
                ENV_GITHUB_APP_PRIVATE_KEY,
                ENV_GITHUB_APP_ID
            ))
        );
        assert_eq!(
            config(&[
                q,
                (ENV_GITHUB_APP_SECRET_ARN, ARN),
                (ENV_GITHUB_APP_ID, "1")
            ]),
            Err(ConfigError::ContradictoryCredentials)
        );
        assert_eq!(
            config(&[
                q,
                (ENV_GITHUB_APP_SECRET_ARN, ARN),
                (ENV_GITHUB_APP_PRIVATE_KEY, PEM)
            ]),
            Err(ConfigError::ContradictoryCredentials)
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let q = (ENV_FEEDBACK_QUEUE_URL, Q);
        let arn = (ENV_GITHUB_APP_SECRET_ARN, ARN);
        assert_eq!(config(&[arn]), Err(ConfigError::MissingQueueUrl));
        assert_eq!(
            config(&[(ENV_FEEDBACK_QUEUE_URL, "https://sqs/q"), arn]),
            Err(ConfigError::NotFifo("https://sqs/q".into()))
        );
        assert_eq!(
            config(&[
                q,
                (ENV_GITHUB_APP_ID, "my-app"),
                (ENV_GITHUB_APP_PRIVATE_KEY, PEM)
            ]),
            Err(ConfigError::BadAppId("my-app".into()))
        );
        assert_eq!(
            config(&[
                q,
                (ENV_GITHUB_APP_ID, "0"),
                (ENV_GITHUB_APP_PRIVATE_KEY, PEM)
            ]),
            Err(ConfigError::BadAppId("0".into()))
        );
        assert_eq!(
            config(&[q, (ENV_GITHUB_APP_SECRET_ARN, "arn:aws:s3:::bucket")]),
            Err(ConfigError::BadSecretArn("arn:aws:s3:::bucket".into()))
        );
        for url in [
            "api.github.com",
            "ftp://api.github.com",
            "https://x/?a=b",
            "http://",
        ] {
            assert_eq!(
                config(&[q, arn, (ENV_GITHUB_API_URL, url)]),
                Err(ConfigError::BadApiUrl(url.into())),
                "{url}"
            );
        }
    }

    #[test]
    fn a_single_line_pem_with_escaped_newlines_is_restored() {
        let c = config(&[
            (ENV_FEEDBACK_QUEUE_URL, Q),
            (ENV_GITHUB_APP_ID, "7"),
            (ENV_GITHUB_APP_PRIVATE_KEY, &PEM.replace('\n', "\\n")),
        ])
        .unwrap();
        match c.credentials {
            CredentialSource::Inline(creds) => assert_eq!(creds.private_key, PEM),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_output_never_shows_a_private_key() {
        let c = config(&[
            (ENV_FEEDBACK_QUEUE_URL, Q),
            (ENV_GITHUB_APP_ID, "7"),
            (ENV_GITHUB_APP_PRIVATE_KEY, PEM),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("MIIE"), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
    }

    #[test]
    fn the_secret_value_takes_the_app_id_as_number_or_string() {
        let pem_json = serde_json::to_string(PEM).unwrap();
        let s =
            parse_app_secret(&format!(r#"{{"appId": 123456, "privateKey": {pem_json}}}"#)).unwrap();
        assert_eq!(s.app_id, "123456");
        assert_eq!(s.private_key, PEM);
        let s =
            parse_app_secret(&format!(r#"{{"appId": "42", "privateKey": {pem_json}}}"#)).unwrap();
        assert_eq!(s.app_id, "42");
    }

    #[test]
    fn malformed_secret_values_are_refused() {
        for value in [
            "-----BEGIN RSA PRIVATE KEY-----",
            r#"{"privateKey": "x"}"#,
            r#"{"appId": true, "privateKey": "x"}"#,
            r#"{"appId": 1}"#,
            r#"{"appId": 1, "privateKey": "  "}"#,
        ] {
            assert!(
                matches!(parse_app_secret(value), Err(ConfigError::BadSecretValue(_))),
                "{value}"
            );
        }
        assert_eq!(
            parse_app_secret(r#"{"appId": -3, "privateKey": "x"}"#),
            Err(ConfigError::BadAppId("-3".into()))
        );
    }
}
