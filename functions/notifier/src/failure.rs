//! Why a message could not be handled, and what the queue should do about it.
//!
//! Every failure is reported in the batch response, so nothing is dropped silently: a rate
//! limit comes back when GitHub said it may, a transient failure after the queue's visibility
//! timeout, and a permanent one too, until the queue's redrive policy moves it to the
//! dead-letter queue after `maxReceiveCount` receives.

use std::time::Duration;

use kubetempura_common::feedback::FeedbackDecodeError;
use reqwest::header::HeaderMap;

/// Shortest delay asked of the queue, in seconds.
pub const MIN_DELAY_SECS: u64 = 1;
/// Longest delay the queue allows (`ChangeMessageVisibility` takes at most 12 hours).
pub const MAX_DELAY_SECS: u64 = 43_200;
/// The wait when GitHub says "secondary rate limit" without saying how long (GitHub's advice:
/// at least a minute).
pub const SECONDARY_LIMIT_SECS: u64 = 60;

/// What to do with a message that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// GitHub asked us to wait: the message comes back after this delay (already clamped).
    RateLimited(Duration),
    /// Might work on redelivery (5xx, network).
    Transient,
    /// Will not work by retrying; redelivered until the queue dead-letters it.
    Permanent,
}

/// A message that could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(
        "{call} was rate limited by GitHub (HTTP {status}, request id {request_id}): retry in {delay_secs} s"
    )]
    RateLimited {
        call: &'static str,
        status: u16,
        request_id: String,
        delay_secs: u64,
    },
    #[error("{call} failed on GitHub's side (HTTP {status}, request id {request_id}): {message}")]
    Server {
        call: &'static str,
        status: u16,
        request_id: String,
        message: String,
    },
    #[error("{call} could not reach GitHub")]
    Network {
        call: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{call} was refused by GitHub (HTTP {status}, request id {request_id}): {message}")]
    Refused {
        call: &'static str,
        status: u16,
        request_id: String,
        message: String,
    },
    #[error(
        "{call} got a response this code does not understand (request id {request_id}): {problem}"
    )]
    Unexpected {
        call: &'static str,
        request_id: String,
        problem: String,
    },
    #[error("the message is not a feedback event")]
    Undecodable(#[source] FeedbackDecodeError),
    #[error("the message has no body")]
    EmptyBody,
    #[error("the GitHub App JWT could not be signed")]
    Jwt(#[source] jsonwebtoken::errors::Error),
}

impl Failure {
    /// What the queue should do with the message.
    pub fn class(&self) -> Class {
        match self {
            Self::RateLimited { delay_secs, .. } => Class::RateLimited(Duration::from_secs(
                (*delay_secs).clamp(MIN_DELAY_SECS, MAX_DELAY_SECS),
            )),
            Self::Server { .. } | Self::Network { .. } => Class::Transient,
            Self::Refused { .. }
            | Self::Unexpected { .. }
            | Self::Undecodable(_)
            | Self::EmptyBody
            | Self::Jwt(_) => Class::Permanent,
        }
    }

    /// GitHub's `x-github-request-id` of the failed call, when there was a response.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::RateLimited { request_id, .. }
            | Self::Server { request_id, .. }
            | Self::Refused { request_id, .. }
            | Self::Unexpected { request_id, .. } => Some(request_id),
            _ => None,
        }
    }

    /// The HTTP status GitHub answered, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::RateLimited { status, .. }
            | Self::Server { status, .. }
            | Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// GitHub's request id of a response (`-` when absent), for logs and failures.
pub fn request_id(headers: &HeaderMap) -> String {
    header(headers, "x-github-request-id")
        .unwrap_or("-")
        .to_owned()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The `message` of a GitHub error body, or the start of the body when it is not JSON.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .chars()
                .take(200)
                .collect::<String>()
        })
}

/// The seconds GitHub asks us to wait before calling again, if the response is a rate limit:
/// `retry-after` first, then an exhausted primary limit's `x-ratelimit-reset`, then a 403 or
/// 429 that says "secondary rate limit" (or any 429) without either.
pub fn rate_limit_delay(status: u16, headers: &HeaderMap, message: &str, now: i64) -> Option<u64> {
    if status != 403 && status != 429 {
        return None;
    }
    if let Some(secs) = header(headers, "retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(secs);
    }
    if header(headers, "x-ratelimit-remaining") == Some("0")
        && let Some(reset) =
            header(headers, "x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok())
    {
        return Some(u64::try_from(reset - now).unwrap_or(0));
    }
    if status == 429
        || message
            .to_ascii_lowercase()
            .contains("secondary rate limit")
    {
        return Some(SECONDARY_LIMIT_SECS);
    }
    None
}

/// Classifies a non-success response of `call`; `now` is seconds since the epoch.
pub fn classify(
    call: &'static str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Failure {
    let request_id = request_id(headers);
    let message = error_message(body);
    if let Some(delay_secs) = rate_limit_delay(status, headers, &message, now) {
        return Failure::RateLimited {
            call,
            status,
            request_id,
            delay_secs,
        };
    }
    if status >= 500 {
        Failure::Server {
            call,
            status,
            request_id,
            message,
        }
    } else {
        Failure::Refused {
            call,
            status,
            request_id,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    const NOW: i64 = 1_800_000_000;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert("x-github-request-id", HeaderValue::from_static("AB12:CD34"));
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn class_of(status: u16, pairs: &[(&'static str, &str)], body: &str) -> Class {
        classify("test call", status, &headers(pairs), body.as_bytes(), NOW).class()
    }

    #[test]
    fn retry_after_sets_the_delay_on_403_and_429() {
        for status in [403, 429] {
            assert_eq!(
                class_of(status, &[("retry-after", "30")], "{}"),
                Class::RateLimited(Duration::from_secs(30))
            );
        }
    }

    #[test]
    fn an_exhausted_primary_limit_waits_until_its_reset() {
        let reset = (NOW + 1234).to_string();
        assert_eq!(
            class_of(
                403,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &reset)
                ],
                r#"{"message":"API rate limit exceeded for installation ID 1."}"#
            ),
            Class::RateLimited(Duration::from_secs(1234))
        );
    }

    #[test]
    fn a_reset_in_the_past_still_waits_the_minimum() {
        let reset = (NOW - 5).to_string();
        assert_eq!(
            class_of(
                429,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &reset)
                ],
                "{}"
            ),
            Class::RateLimited(Duration::from_secs(MIN_DELAY_SECS))
        );
    }

    #[test]
    fn a_delay_beyond_twelve_hours_is_clamped_to_the_queue_maximum() {
        assert_eq!(
            class_of(403, &[("retry-after", "999999")], "{}"),
            Class::RateLimited(Duration::from_secs(MAX_DELAY_SECS))
        );
    }

    #[test]
    fn a_secondary_rate_limit_without_headers_waits_a_minute() {
        let body = r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#;
        assert_eq!(
            class_of(403, &[], body),
            Class::RateLimited(Duration::from_secs(60))
        );
        assert_eq!(
            class_of(429, &[], "{}"),
            Class::RateLimited(Duration::from_secs(60))
        );
    }

    #[test]
    fn remaining_quota_is_not_a_rate_limit() {
        let reset = (NOW + 100).to_string();
        let f = classify(
            "c",
            403,
            &headers(&[
                ("x-ratelimit-remaining", "4999"),
                ("x-ratelimit-reset", &reset),
            ]),
            br#"{"message":"Resource not accessible by integration"}"#,
            NOW,
        );
        assert_eq!(f.class(), Class::Permanent);
        assert_eq!(f.request_id(), Some("AB12:CD34"));
        assert!(
            f.to_string()
                .contains("Resource not accessible by integration"),
            "{f}"
        );
    }

    #[test]
    fn server_errors_are_transient_and_other_client_errors_permanent() {
        for status in [500, 502, 503, 504] {
            assert_eq!(class_of(status, &[], "oops"), Class::Transient, "{status}");
        }
        for status in [400, 401, 404, 409, 410, 422] {
            assert_eq!(
                class_of(status, &[], r#"{"message":"Validation Failed"}"#),
                Class::Permanent,
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_on_other_statuses_is_not_a_rate_limit() {
        assert_eq!(
            class_of(503, &[("retry-after", "5")], "{}"),
            Class::Transient
        );
    }

    #[test]
    fn error_messages_come_from_json_or_the_start_of_the_body() {
        assert_eq!(error_message(br#"{"message":"Not Found"}"#), "Not Found");
        assert_eq!(
            error_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_message(&[b'x'; 500]).len(), 200);
    }
}
