//! lbd: the load balancer daemon.

use std::path::PathBuf;

use clap::{CommandFactory as _, Parser};
use lb_userspace::{config::Config, logging::LogFormat};

/// eBPF/XDP L4 load balancer daemon.
#[derive(Debug, Parser)]
#[command(name = "lbd", version = lb_userspace::VERSION)]
struct Args {
    /// Configuration file (TOML).
    #[arg(short, long, default_value = "/etc/lbd/lbd.toml")]
    config: PathBuf,
    /// Log format (default: the config's `log_format`).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Take the data plane a previous lbd left running off the node, then
    /// exit: it removes that lbd's VIP addresses, its BGP announcements
    /// (the routes file emptied), every pin in its pin directory (the XDP
    /// or tc link, which detaches the program, and the maps with the
    /// connection table), the tc filters it left, its admin socket if
    /// nobody listens on it, its VRRP state files, and, once all that is
    /// done, its record of what it held; it puts back the interface
    /// settings it switched on (`forwarding`, `accept_local`). It acts on
    /// what that lbd recorded it held, even if the config changed or no
    /// longer parses since. It keeps the node state file (a node drain) and
    /// the backend state file (backends' drain and maintenance), which the
    /// next lbd restores. Refused while an lbd owns this data plane.
    #[arg(long, conflicts_with = "release_vips")]
    cleanup: bool,
    /// Remove the VIP addresses the lbd that ran may have held from its
    /// interface and withdraw its BGP announcements (unless it stopped for
    /// a restart), then exit (the systemd unit's ExecStopPost): what it
    /// recorded it held, even if the config changed or no longer parses
    /// since. The data plane stays. Refused while an lbd owns this data
    /// plane.
    #[arg(long)]
    release_vips: bool,
    /// Write lbd's man page (lbd.8) into DIR and exit (for packaging).
    #[arg(long, value_name = "DIR", hide = true)]
    generate_man: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.generate_man {
        return match lb_manpage::write_pages(Args::command(), dir) {
            Ok(_) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("lbd: {error:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    // Without privileges nothing below can work: say so once, before the
    // config (often readable by root only) is read.
    if let Err(error) = lb_userspace::privilege::check_can_start() {
        eprintln!("lbd: {error}");
        return std::process::ExitCode::FAILURE;
    }
    let offline = if args.cleanup {
        Some(lb_userspace::daemon::Offline::Cleanup)
    } else if args.release_vips {
        Some(lb_userspace::daemon::Offline::ReleaseVips)
    } else {
        None
    };
    // The config is read first so it can set up logging; its errors go
    // straight to stderr. An offline action goes on without it: it undoes
    // what the lbd that ran recorded it held (the unit's stop path must
    // release the VIPs even after the file was broken).
    let config = match Config::load(&args.config) {
        Ok(config) => Some(config),
        Err(error) if offline.is_some() => {
            eprintln!("lbd: {error}");
            lb_userspace::logging::init(args.log_format.unwrap_or_default(), "info");
            tracing::warn!(
                file = %args.config.display(),
                "the config was not read: releasing what the record of the lbd that ran says it held"
            );
            None
        }
        Err(error) => {
            eprintln!("lbd: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(config) = &config {
        lb_userspace::logging::init(
            args.log_format.unwrap_or(config.log_format),
            &config.log_level,
        );
    }
    let result = match (offline, config) {
        (Some(action), config) => {
            lb_userspace::daemon::offline(&args.config, config.as_ref(), action).await
        }
        (None, Some(config)) => {
            for warning in lb_userspace::config::warnings(&config) {
                tracing::warn!(file = %args.config.display(), "config: {warning}");
            }
            lb_userspace::daemon::run(&args.config, config).await
        }
        // Refused above.
        (None, None) => return std::process::ExitCode::FAILURE,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
