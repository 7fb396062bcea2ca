//! `coldstart`: the cold-start benchmark of the webhook function on a loopback Lambda Runtime
//! API. See `kubetempura_tests::coldstart` and BENCHMARKS.md.

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use kubetempura_tests::coldstart::{Args, render, run};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    kubetempura_tests::init_tool_logging();
    let args = Args::parse();
    let reports = run(&args).await.context("cold-start benchmark")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", render(&reports)).context("writing to stdout")?;
    Ok(())
}
