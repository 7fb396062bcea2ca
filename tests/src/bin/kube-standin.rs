//! `kube-standin`: serve the loopback Kubernetes API stand-in until SIGTERM/SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kubetempura_tests::standin::StandIn;
use tracing_subscriber::EnvFilter;

/// A loopback Kubernetes API server for tests and the local demo (not a real cluster).
#[derive(Debug, Parser)]
#[command(name = "kube-standin", version)]
struct Args {
    /// Address to listen on; loopback only. Port 0 picks a free port.
    #[arg(long, env = "KUBE_STANDIN_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write a kubeconfig pointing at the server to this path.
    #[arg(long, env = "KUBE_STANDIN_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let standin = StandIn::start(args.listen)
        .await
        .context("starting the stand-in")?;
    if let Some(path) = &args.kubeconfig {
        standin
            .write_kubeconfig(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", standin.addr()).context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    drop(standin);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Args::command().debug_assert();
    }
}
