//! `kubetempura-demo`: the walkthrough on a local copy of the whole system (`make demo`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = kubetempura_tests::demo::DemoArgs::parse();
    kubetempura_tests::demo::run(args).await
}
