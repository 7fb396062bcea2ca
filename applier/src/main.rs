use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = kubetempura_applier::cli::Cli::parse();
    kubetempura_applier::cli::main(cli)
}
