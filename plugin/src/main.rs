//! `kubectl-hort`: parses the command line, runs it, and exits with its code.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = kubectl_hort::cli::Cli::parse();
    if let Err(e) = kubectl_hort::run(cli).await {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
