//! lbctl: the operator's command line for lbd, over its admin socket. One
//! file per subcommand. Exit codes scripts can rely on: 0 done, 1 other
//! failure, 2 bad usage or refused request, 3 no such VIP/backend, 4
//! exists already, 5 lbd not reachable (or shutting down), 6 a drain's
//! timeout ended it (its flows cut; a NAT VIP's stay until they end), 7 a
//! drain waited on was ended by another change
//! (undrained, maintenance, removed); for `node drain --wait`, 6 means
//! the node still forwarded at the timeout and 7 that it was made active
//! again; 8 lbd did not answer a change in time (it may be applied).
//! When its output is closed (`| head -1`), lbctl ends quietly by SIGPIPE,
//! as other Unix filters do.

#![warn(unreachable_pub)]
// The doc comments of the subcommands' arguments are clap's help text,
// shown verbatim by `--help` and in the man pages: `[ADDRESS]` and
// `[,mac=MAC]` there mean "optional", not links.
#![allow(rustdoc::broken_intra_doc_links)]

mod acl;
mod backend;
mod closed_output;
mod completions;
mod config_check;
mod config_dump;
mod config_import;
mod flow;
mod health_flags;
mod limit;
mod man;
mod node;
mod output;
mod reload;
mod status;
mod vip;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use lb_userspace::api::client::{Client, ClientError};

/// Control and inspect the lbd load balancer.
#[derive(Debug, Parser)]
#[command(name = "lbctl", version = lb_userspace::VERSION)]
pub struct Cli {
    /// lbd's admin socket.
    #[arg(long, global = true, env = "LBCTL_SOCKET", default_value = lb_userspace::config::DEFAULT_ADMIN_SOCKET)]
    socket: PathBuf,
    /// Seconds to wait for lbd's answer to each request (not a drain's
    /// timeout: that is `backend drain --timeout`).
    #[arg(long, global = true, env = "LBCTL_API_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    api_timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// VIPs, backends, their state, health, share of new flows, flows and
    /// traffic.
    Status(status::Args),
    /// Add, remove and list VIPs.
    #[command(subcommand)]
    Vip(vip::Command),
    /// Add, remove, drain, weigh and list backends.
    #[command(subcommand)]
    Backend(backend::Command),
    /// Which backend a flow goes to, and why (tracked, Maglev, dropped).
    Flow(flow::Args),
    /// This node in an active-active group: status, drain, undrain.
    #[command(subcommand)]
    Node(node::Command),
    /// Deny and allow lists of source prefixes, global or per VIP.
    #[command(subcommand)]
    Acl(acl::Command),
    /// Limits of new flows per source address and prefix.
    #[command(subcommand)]
    Limit(limit::Command),
    /// Make lbd re-read its config file (only the difference is applied).
    Reload(reload::Args),
    /// Work with config files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print shell completions.
    Completions(completions::Args),
    /// Write lbctl's man pages (lbctl.8 and one per subcommand) into a
    /// directory.
    Man(man::Args),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file and show each backend's share of new flows.
    Check(config_check::Args),
    /// Print lbd's running configuration (with runtime changes) as TOML.
    ///
    /// Exits 1, the text still printed and the reason on stderr, when the
    /// text would not load as a config file. A shell redirect has emptied
    /// its file before lbctl runs, so save to a temporary file and move it
    /// over the config file on exit 0 only:
    /// `lbctl config dump > lbd.toml.new && mv lbd.toml.new lbd.toml`.
    Dump,
    /// Write an existing keepalived + HAProxy or nginx setup as lbd.toml.
    Import(config_import::Args),
}

/// What a subcommand failed with, and the exit code it means.
pub struct Failure {
    message: String,
    code: u8,
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Failure {
            code: error.exit_code(),
            message: error.to_string(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure {
            code: 1,
            message: format!("{error:#}"),
        }
    }
}

impl Failure {
    /// A failure with an explicit exit code.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    closed_output::die_quietly_on_closed_stdout();
    let cli = Cli::parse();
    let client = Client::new(&cli.socket, Duration::from_secs(cli.api_timeout));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("lbctl: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), Failure> = runtime.block_on(async {
        match cli.command {
            Command::Status(args) => status::run(&client, &args).await,
            Command::Vip(command) => vip::run(&client, command).await,
            Command::Backend(command) => backend::run(&client, command).await,
            Command::Flow(args) => flow::run(&client, &args).await,
            Command::Node(command) => node::run(&client, command).await,
            Command::Acl(command) => acl::run(&client, command).await,
            Command::Limit(command) => limit::run(&client, command).await,
            Command::Reload(args) => reload::run(&client, &args).await,
            Command::Config(ConfigCommand::Check(args)) => {
                config_check::run(&args).map_err(Failure::from)
            }
            Command::Config(ConfigCommand::Dump) => config_dump::run(&client).await,
            Command::Config(ConfigCommand::Import(args)) => config_import::run(&args),
            Command::Completions(args) => {
                completions::run(&args);
                Ok(())
            }
            Command::Man(args) => man::run(&args).map_err(Failure::from),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("lbctl: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
