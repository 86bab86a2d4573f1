//! lbd: the load balancer daemon.

use std::path::PathBuf;

use clap::Parser;

/// eBPF/XDP L4 load balancer daemon.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML).
    #[arg(short, long, default_value = "/etc/lbd/lbd.toml")]
    config: PathBuf,
    /// Log format.
    #[arg(long, value_enum, default_value_t = lb_userspace::logging::LogFormat::Text)]
    log_format: lb_userspace::logging::LogFormat,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    lb_userspace::logging::init(args.log_format);
    match lb_userspace::daemon::run(&args.config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
