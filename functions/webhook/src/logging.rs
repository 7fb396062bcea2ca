//! The function's log setup, as Lambda's advanced logging controls expect it: the level from
//! `AWS_LAMBDA_LOG_LEVEL` (or else `RUST_LOG`, or else `INFO`), JSON lines when
//! `AWS_LAMBDA_LOG_FORMAT` is `JSON`, text otherwise, no timestamps (CloudWatch adds them).
//!
//! The same behaviour as `lambda_http::tracing::init_default_subscriber`, with a
//! [`Targets`] filter (`level` or `target=level` directives, comma-separated) instead of an
//! `EnvFilter`, whose regex engine would make up a tenth of the function's binary.

use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The level when nothing (or nothing readable) is configured.
pub const DEFAULT_LEVEL: LevelFilter = LevelFilter::INFO;

/// The filter for a configured level: Lambda's level names (`TRACE` … `ERROR`, and `FATAL`,
/// which is `ERROR` here) or a `RUST_LOG`-style list such as `warn,kubetempura_webhook=debug`.
/// Anything else gives the default level and the reason, to be logged once the logger runs.
pub fn filter(configured: Option<&str>) -> (Targets, Option<String>) {
    let default = || Targets::new().with_default(DEFAULT_LEVEL);
    let Some(text) = configured.map(str::trim).filter(|t| !t.is_empty()) else {
        return (default(), None);
    };
    let text = if text.eq_ignore_ascii_case("fatal") {
        "error"
    } else {
        text
    };
    match Targets::from_str(text) {
        // A list of only `target=level` directives keeps INFO for everything else.
        Ok(targets) if targets.default_level().is_none() => {
            (targets.with_default(DEFAULT_LEVEL), None)
        }
        Ok(targets) => (targets, None),
        Err(e) => (
            default(),
            Some(format!(
                "ignoring log level {text:?} ({e}); logging at INFO"
            )),
        ),
    }
}

/// Installs the global subscriber. Call once, first thing at cold start.
pub fn init() {
    let configured = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let (targets, problem) = filter(configured.as_deref());
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_writer(std::io::stdout);
    if json {
        tracing_subscriber::registry()
            .with(fmt.json())
            .with(targets)
            .init();
    } else {
        tracing_subscriber::registry()
            .with(fmt)
            .with(targets)
            .init();
    }
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn enabled(targets: &Targets, target: &str, level: Level) -> bool {
        targets.would_enable(target, &level)
    }

    #[test]
    fn nothing_configured_is_info() {
        for configured in [None, Some(""), Some("  ")] {
            let (t, problem) = filter(configured);
            assert!(problem.is_none());
            assert!(enabled(&t, "kubetempura_webhook", Level::INFO));
            assert!(!enabled(&t, "kubetempura_webhook", Level::DEBUG));
        }
    }

    #[test]
    fn lambda_level_names_in_any_case() {
        let (t, _) = filter(Some("DEBUG"));
        assert!(enabled(&t, "aws_smithy_runtime", Level::DEBUG));
        assert!(!enabled(&t, "aws_smithy_runtime", Level::TRACE));
        let (t, problem) = filter(Some("FATAL"));
        assert!(problem.is_none());
        assert!(enabled(&t, "x", Level::ERROR));
        assert!(!enabled(&t, "x", Level::WARN));
        let (t, _) = filter(Some("trace"));
        assert!(enabled(&t, "x", Level::TRACE));
    }

    #[test]
    fn rust_log_directives() {
        let (t, problem) = filter(Some("warn,kubetempura_webhook=debug"));
        assert!(problem.is_none());
        assert!(enabled(&t, "kubetempura_webhook::handler", Level::DEBUG));
        assert!(!enabled(&t, "aws_smithy_runtime", Level::INFO));
        assert!(enabled(&t, "aws_smithy_runtime", Level::WARN));
        // Only per-target directives: everything else stays at INFO.
        let (t, _) = filter(Some("kubetempura_webhook=trace"));
        assert!(enabled(&t, "kubetempura_webhook", Level::TRACE));
        assert!(enabled(&t, "hyper", Level::INFO));
        assert!(!enabled(&t, "hyper", Level::DEBUG));
    }

    #[test]
    fn unreadable_level_falls_back_to_info_with_a_reason() {
        let (t, problem) = filter(Some("kubetempura_webhook=loud"));
        let problem = problem.expect("a reason");
        assert!(
            problem.contains("\"kubetempura_webhook=loud\""),
            "{problem}"
        );
        assert!(enabled(&t, "x", Level::INFO));
        assert!(!enabled(&t, "x", Level::DEBUG));
    }
}
