pub mod coldstart;
pub mod demo;
pub mod harness;
pub mod loadbench;
pub mod walkthrough;

/// Logging of the benchmark and demo binaries: to stderr (stdout carries their report),
/// `RUST_LOG` or else warnings only.
pub fn init_tool_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
}
