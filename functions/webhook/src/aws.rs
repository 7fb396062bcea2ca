//! The AWS clients' configuration, from what Lambda puts in a function's environment.
//!
//! Not `aws_config::load_defaults`: its provider chains (profile files, SSO, web identity and
//! role assumption through STS, ECS, IMDS) are reachable code whichever source answers, and
//! made up a fifth of the function's binary (BENCHMARKS.md, "The deployable function"). A
//! Lambda function needs none of them: Lambda gives the execution role's credentials and the
//! region as environment variables. What is read:
//!
//! | Variable | Use |
//! |---|---|
//! | `AWS_REGION` (else `AWS_DEFAULT_REGION`) | the region; required |
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | credentials, read per signing (`aws_config`'s environment provider) |
//! | `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL_SNS`, `AWS_ENDPOINT_URL_SECRETS_MANAGER` | endpoint overrides (an emulator); the service's own wins |
//! | `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` | `true` ignores the four above |
//! | `AWS_USE_FIPS_ENDPOINT`, `AWS_USE_DUALSTACK_ENDPOINT` | `true` / `false` |
//!
//! The names and precedence are the AWS SDKs' shared ones ("Service-specific endpoints",
//! "Dual-stack and FIPS endpoints" in the AWS SDKs and Tools Reference Guide).

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::{SharedCredentialsProvider, SharedHttpClient};

use crate::config::ConfigError;

/// The one HTTPS client every AWS client of the function shares (one connection pool): hyper 1
/// and rustls on the ring provider, trusting the system's roots (the Lambda image's). The
/// SDK's default client would link aws-lc-rs, far larger for the same TLS 1.2 and 1.3.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// An AWS service the function calls, with its SDK service id's environment suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Sqs,
    Sns,
    SecretsManager,
}

impl Service {
    /// `AWS_ENDPOINT_URL_<this>`.
    pub fn env_suffix(self) -> &'static str {
        match self {
            Self::Sqs => "SQS",
            Self::Sns => "SNS",
            Self::SecretsManager => "SECRETS_MANAGER",
        }
    }
}

/// What the AWS clients are configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub region: String,
    /// `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// `AWS_ENDPOINT_URL_<SERVICE>`, per service.
    pub service_endpoints: Vec<(Service, String)>,
    pub use_fips: Option<bool>,
    pub use_dual_stack: Option<bool>,
}

fn flag(name: &'static str, value: Option<String>) -> Result<Option<bool>, ConfigError> {
    match value.as_deref().map(str::trim) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(ConfigError::BadFlag(name, v.to_owned())),
    }
}

impl AwsSettings {
    /// Reads the settings through `var` (the process environment in production).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let region = set("AWS_REGION")
            .or_else(|| set("AWS_DEFAULT_REGION"))
            .ok_or(ConfigError::MissingRegion)?;
        let ignore_endpoints = flag(
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
            set("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"),
        )?
        .unwrap_or(false);
        let (endpoint_url, service_endpoints) = if ignore_endpoints {
            (None, Vec::new())
        } else {
            let services = [Service::Sqs, Service::Sns, Service::SecretsManager];
            let overrides = services
                .into_iter()
                .filter_map(|s| {
                    set(&format!("AWS_ENDPOINT_URL_{}", s.env_suffix())).map(|url| (s, url))
                })
                .collect();
            (set("AWS_ENDPOINT_URL"), overrides)
        };
        Ok(Self {
            region,
            endpoint_url,
            service_endpoints,
            use_fips: flag("AWS_USE_FIPS_ENDPOINT", set("AWS_USE_FIPS_ENDPOINT"))?,
            use_dual_stack: flag(
                "AWS_USE_DUALSTACK_ENDPOINT",
                set("AWS_USE_DUALSTACK_ENDPOINT"),
            )?,
        })
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The endpoint override of `service`, if any: its own, else the global one.
    pub fn endpoint_for(&self, service: Service) -> Option<&str> {
        self.service_endpoints
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, url)| url.as_str())
            .or(self.endpoint_url.as_deref())
    }

    /// The SDK configuration every client of the function starts from, with `http_client`,
    /// `timeouts` and `retry` (the endpoint is set per client: [`Self::endpoint_for`]).
    pub fn sdk_config(
        &self,
        http_client: SharedHttpClient,
        timeouts: aws_config::timeout::TimeoutConfig,
        retry: aws_config::retry::RetryConfig,
    ) -> SdkConfig {
        let mut builder = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(SharedCredentialsProvider::new(
                EnvironmentVariableCredentialsProvider::new(),
            ))
            .http_client(http_client)
            .timeout_config(timeouts)
            .retry_config(retry);
        builder.set_use_fips(self.use_fips);
        builder.set_use_dual_stack(self.use_dual_stack);
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<AwsSettings, ConfigError> {
        AwsSettings::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn lambdas_environment_gives_the_region_and_no_overrides() {
        let s = read(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ])
        .unwrap();
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.endpoint_for(Service::Sqs), None);
        assert_eq!((s.use_fips, s.use_dual_stack), (None, None));
        let s = read(&[("AWS_DEFAULT_REGION", "us-east-1")]).unwrap();
        assert_eq!(s.region, "us-east-1");
    }

    #[test]
    fn no_region_is_a_clear_error() {
        let err = read(&[("AWS_REGION", "  ")]).unwrap_err();
        assert_eq!(err, ConfigError::MissingRegion);
        assert!(err.to_string().contains("AWS_REGION"), "{err}");
    }

    #[test]
    fn a_services_own_endpoint_wins_over_the_global_one() {
        let s = read(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:9000"),
        ])
        .unwrap();
        assert_eq!(
            s.endpoint_for(Service::SecretsManager),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(s.endpoint_for(Service::Sqs), Some("http://127.0.0.1:4566"));
        assert_eq!(s.endpoint_for(Service::Sns), Some("http://127.0.0.1:4566"));
    }

    #[test]
    fn configured_endpoints_can_be_ignored() {
        let s = read(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:4567"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "TRUE"),
        ])
        .unwrap();
        assert_eq!(s.endpoint_for(Service::Sqs), None);
    }

    #[test]
    fn fips_and_dual_stack_are_booleans() {
        let s = read(&[
            ("AWS_REGION", "us-gov-west-1"),
            ("AWS_USE_FIPS_ENDPOINT", "true"),
            ("AWS_USE_DUALSTACK_ENDPOINT", "False"),
        ])
        .unwrap();
        assert_eq!((s.use_fips, s.use_dual_stack), (Some(true), Some(false)));
        let err = read(&[("AWS_REGION", "x"), ("AWS_USE_FIPS_ENDPOINT", "yes")]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::BadFlag("AWS_USE_FIPS_ENDPOINT", "yes".to_owned())
        );
        assert!(err.to_string().contains("true or false"), "{err}");
    }

    #[test]
    fn the_sdk_config_carries_the_settings() {
        let s = read(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_USE_DUALSTACK_ENDPOINT", "true"),
        ])
        .unwrap();
        let config = s.sdk_config(
            https_client(),
            aws_config::timeout::TimeoutConfig::builder().build(),
            aws_config::retry::RetryConfig::standard().with_max_attempts(2),
        );
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(config.use_dual_stack(), Some(true));
        assert_eq!(config.use_fips(), None);
        assert!(config.credentials_provider().is_some());
        assert!(config.http_client().is_some());
        assert_eq!(config.retry_config().map(|r| r.max_attempts()), Some(2));
    }
}
