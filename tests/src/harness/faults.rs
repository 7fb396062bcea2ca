//! Fault injection and the request log.
//!
//! A rule matches a request by method and path (regex or prefix) and either delays it, fails
//! it with a proper `Status` body (429 with `Retry-After`, 500, 503 ...), or both, for its
//! first `count` matches (or forever). [`super::faultproxy::FaultProxy`] consults the rules
//! before forwarding each request and appends every request to the log.

use std::collections::VecDeque;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// A rule that cannot be added.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The rule's path regex does not compile.
    #[error("invalid fault path regex {pattern:?}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// The cause.
        #[source]
        source: regex::Error,
    },
    /// The rule neither fails nor delays.
    #[error("a fault rule needs a status or a delay_ms")]
    Empty,
}

/// A fault to inject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    /// HTTP method to match (any if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Regex the path must match (searched, not anchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// Prefix the path must start with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Answer with this status instead of serving the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How many matching requests to affect (unlimited if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Delay before answering (or before serving, without `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// `Retry-After` seconds for 429/503 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u32>,
}

impl FaultRule {
    /// Fail requests of `method` under `prefix` with `status`, `count` times.
    pub fn fail(method: &str, prefix: &str, status: u16, count: u32) -> Self {
        FaultRule {
            method: Some(method.to_string()),
            path_prefix: Some(prefix.to_string()),
            status: Some(status),
            count: Some(count),
            ..Default::default()
        }
    }

    /// Delay requests of `method` under `prefix` by `delay_ms`, `count` times.
    pub fn delay(method: &str, prefix: &str, delay_ms: u64, count: u32) -> Self {
        FaultRule {
            method: Some(method.to_string()),
            path_prefix: Some(prefix.to_string()),
            delay_ms: Some(delay_ms),
            count: Some(count),
            ..Default::default()
        }
    }
}

/// What to do with a request that matched a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultAction {
    /// Fail with this status.
    pub status: Option<u16>,
    /// Sleep this long first.
    pub delay_ms: Option<u64>,
    /// Retry-After seconds.
    pub retry_after: u32,
}

struct ActiveRule {
    rule: FaultRule,
    regex: Option<Regex>,
    remaining: Option<u32>,
}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Response status (for watches: of the response head).
    pub status: u16,
    /// RFC 3339 time (millisecond precision) the request arrived.
    pub time: String,
    /// Whether an injected fault answered it.
    pub faulted: bool,
    /// The request's Content-Type, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// Rules and log.
pub struct Faults {
    rules: Vec<ActiveRule>,
    log: VecDeque<RequestRecord>,
    log_limit: usize,
}

impl Faults {
    /// Empty, keeping at most `log_limit` log entries.
    pub fn new(log_limit: usize) -> Self {
        Faults {
            rules: Vec::new(),
            log: VecDeque::new(),
            log_limit,
        }
    }

    /// Add a rule.
    pub fn add(&mut self, rule: FaultRule) -> Result<(), FaultError> {
        let regex = match &rule.path_regex {
            Some(r) => Some(Regex::new(r).map_err(|source| FaultError::Regex {
                pattern: r.clone(),
                source,
            })?),
            None => None,
        };
        if rule.status.is_none() && rule.delay_ms.is_none() {
            return Err(FaultError::Empty);
        }
        self.rules.push(ActiveRule {
            remaining: rule.count,
            rule,
            regex,
        });
        Ok(())
    }

    /// Remove every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The active rules.
    pub fn rules(&self) -> Vec<FaultRule> {
        self.rules.iter().map(|r| r.rule.clone()).collect()
    }

    /// The first rule matching this request, consuming one of its uses.
    pub fn take(&mut self, method: &str, path: &str) -> Option<FaultAction> {
        let idx = self.rules.iter().position(|r| {
            r.rule
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && r.rule
                    .path_prefix
                    .as_deref()
                    .is_none_or(|p| path.starts_with(p))
                && r.regex.as_ref().is_none_or(|re| re.is_match(path))
                && r.remaining != Some(0)
        })?;
        let r = self.rules.get_mut(idx)?;
        if let Some(n) = r.remaining.as_mut() {
            *n -= 1;
        }
        let action = FaultAction {
            status: r.rule.status,
            delay_ms: r.rule.delay_ms,
            retry_after: r.rule.retry_after_seconds.unwrap_or(1),
        };
        if r.remaining == Some(0) {
            self.rules.remove(idx);
        }
        Some(action)
    }

    /// Append to the log.
    pub fn record(&mut self, rec: RequestRecord) {
        self.log.push_back(rec);
        while self.log.len() > self.log_limit {
            self.log.pop_front();
        }
    }

    /// The log, oldest first.
    pub fn log(&self) -> Vec<RequestRecord> {
        self.log.iter().cloned().collect()
    }

    /// Empty the log.
    pub fn clear_log(&mut self) {
        self.log.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_rule_is_consumed() {
        let mut f = Faults::new(10);
        f.add(FaultRule::fail("PATCH", "/api/v1", 503, 2))
            .expect("add");
        assert_eq!(f.take("GET", "/api/v1/x"), None);
        assert_eq!(
            f.take("patch", "/api/v1/x").and_then(|a| a.status),
            Some(503)
        );
        assert!(f.take("PATCH", "/api/v1/y").is_some());
        assert_eq!(f.take("PATCH", "/api/v1/z"), None);
        assert!(f.rules().is_empty());
    }

    #[test]
    fn regex_rules_and_validation() {
        let mut f = Faults::new(10);
        assert!(matches!(
            f.add(FaultRule {
                path_regex: Some("(".into()),
                status: Some(500),
                ..Default::default()
            }),
            Err(FaultError::Regex { .. })
        ));
        assert!(matches!(
            f.add(FaultRule {
                path_regex: Some("x".into()),
                ..Default::default()
            }),
            Err(FaultError::Empty)
        ));
        f.add(FaultRule {
            path_regex: Some("/configmaps/c[0-9]$".into()),
            status: Some(500),
            ..Default::default()
        })
        .expect("add");
        assert!(
            f.take("GET", "/api/v1/namespaces/d/configmaps/c1")
                .is_some()
        );
        assert!(
            f.take("GET", "/api/v1/namespaces/d/configmaps/c1x")
                .is_none()
        );
        // Unlimited rules stay.
        assert!(
            f.take("PUT", "/api/v1/namespaces/d/configmaps/c2")
                .is_some()
        );
    }

    #[test]
    fn log_is_bounded() {
        let mut f = Faults::new(2);
        for i in 0..3 {
            f.record(RequestRecord {
                method: "GET".into(),
                path: format!("/{i}"),
                query: String::new(),
                status: 200,
                time: String::new(),
                faulted: false,
                content_type: None,
            });
        }
        let paths: Vec<String> = f.log().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, vec!["/1", "/2"]);
    }
}
