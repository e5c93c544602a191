//! `ecr-credd`: parses arguments, sets up logging, and hands off to the library.

use clap::Parser;
use ecr_credd::cmd::{self, Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Run { log_level, .. } = &cli.command {
        ecr_credd::logging::init(log_level);
    }
    cmd::execute(cli.command).unwrap_or_else(|e| {
        eprintln!("ecr-credd: {e:#}");
        std::process::ExitCode::FAILURE
    })
}
