//! Command-line interface of the `kubetempura` binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::render_cmd;

/// kubetempura: per-pull-request review environments on Kubernetes.
///
/// The applier (`kubetempura run`) runs in the cluster and needs no inbound exposure: it
/// long-polls an SQS FIFO queue fed by the webhook function and server-side-applies the
/// objects of every matching ReviewApp.
#[derive(Debug, Parser)]
#[command(name = "kubetempura", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the ReviewApp and PR CustomResourceDefinitions as multi-document YAML.
    Crd,
    /// Render a ReviewApp for one pull request and print the objects that would be applied
    /// (namespace forced, labels added), like `helm template`; on stderr, preview what its
    /// lifecycle policy does with that pull request (filters, waitFor gate, expiry, cap). Works
    /// offline.
    Render(Box<render_cmd::RenderArgs>),
    /// Run the applier: long-poll the queue and apply ReviewApps (in the cluster, or locally
    /// with KUBECONFIG and the standard AWS environment).
    Run(Box<crate::run::RunArgs>),
    /// Sign and POST a synthetic pull_request or check result delivery to a webhook URL.
    ///
    /// A pull_request by default; --event check_run, check_suite, workflow_run or status sends a
    /// check result, as the checks a build-gated ReviewApp (spec.waitFor) awaits.
    ///
    /// Examples:
    ///   kubetempura send-event --repository https://github.com/o/r --sha <40-hex> --pr 7
    ///   kubetempura send-event --repository https://github.com/o/r --sha <40-hex> --pr 7 \
    ///     --event check_run --check-name build --conclusion success
    ///   kubetempura send-event --repository https://github.com/o/r --sha <40-hex> \
    ///     --event status --check-name 'ci/circleci: build' --conclusion failure
    #[command(verbatim_doc_comment)]
    SendEvent(Box<crate::send_event::SendEventArgs>),
}

/// Runs a parsed command line; errors are printed as one line on stderr.
pub fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Crd => print_crds(),
        Command::Render(args) => render_cmd::run(
            &args,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        ),
        Command::Run(args) => {
            init_tracing();
            runtime().and_then(|rt| rt.block_on(crate::run::run(*args)))
        }
        Command::SendEvent(args) => runtime()
            .and_then(|rt| rt.block_on(crate::send_event::run(&args, &mut std::io::stdout()))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Logs to stderr, `info` unless `RUST_LOG` says otherwise; JSON with `KUBETEMPURA_LOG_FORMAT=json`.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("KUBETEMPURA_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn print_crds() -> anyhow::Result<()> {
    print!("{}", kubetempura_common::crd::crds_yaml()?);
    Ok(())
}

/// A path argument that may be `-` for standard input.
pub fn read_input(path: &PathBuf) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
