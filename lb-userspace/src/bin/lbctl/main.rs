//! lbctl: the operator's command line for lbd. One file per subcommand.

mod config_check;

use clap::{Parser, Subcommand};

/// Control and inspect the lbd load balancer.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with lbd configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file and show each backend's share of new flows
    /// (exit 1 and the offending line when it is invalid).
    Check(config_check::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config(ConfigCommand::Check(args)) => config_check::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lbctl: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
