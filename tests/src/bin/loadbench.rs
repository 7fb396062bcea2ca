//! `loadbench`: the load benchmark of the whole local chain (webhook function -> SQS -> applier
//! -> kube-apiserver). See `kubetempura_tests::loadbench` and BENCHMARKS.md.

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use kubetempura_tests::loadbench::{Args, render, run};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    kubetempura_tests::init_tool_logging();
    let args = Args::parse();
    let reports = run(&args).await.context("load benchmark")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", render(&reports)).context("writing to stdout")?;
    Ok(())
}
