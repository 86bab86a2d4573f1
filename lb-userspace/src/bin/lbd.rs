//! lbd: the load balancer daemon.

use std::path::PathBuf;

use clap::{CommandFactory as _, Parser};
use lb_userspace::{
    config::Config,
    daemon::{EarlySignals, Stopped},
    logging::LogFormat,
};

/// eBPF/XDP L4 load balancer daemon.
#[derive(Debug, Parser)]
#[command(
    name = "lbd",
    version = lb_userspace::VERSION,
    after_help = "Exit status: 0 done; 1 failed (under the systemd unit, lbd is started again); 2 bad usage; 10 a stop for good (SIGINT) that ended with errors, which the log names (the unit does not start lbd again: RestartPreventExitStatus=10); 11 a stop for a restart (SIGUSR1, the unit's RestartKillSignal: the pinned program and the BGP announcements stay for the next lbd, which the unit always starts: RestartForceExitStatus=11); 12 the config refused (what `lbctl config check` says) and 13 this build's data plane object refused by the kernel (the verifier): a start that would fail again, which the unit does not repeat (RestartPreventExitStatus=12 13; the previous lbd's pinned program keeps forwarding). A panic is logged and aborts lbd (SIGABRT): a crash, which the unit restarts."
)]
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

/// Installs lbd's panic hook: a panic anywhere in lbd, a tokio task's
/// included (a VRRP instance's driver, a health check, replication), is
/// logged (message, location, thread) and aborts the process. Tokio would
/// otherwise end the task alone and lbd run on without it (a VRRP
/// instance still reported master, its adverts stopped). Aborted, lbd
/// ends as after any crash: the pinned data plane keeps forwarding, and
/// systemd (`Restart=on-failure`) starts a new lbd, which adopts it.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(a panic without a message)");
        let location = info
            .location()
            .map_or_else(|| "an unknown location".to_owned(), ToString::to_string);
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("<unnamed>");
        let backtrace = std::backtrace::Backtrace::capture();
        let backtrace = match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => format!("\n{backtrace}"),
            _ => String::new(),
        };
        if tracing::dispatcher::has_been_set() {
            tracing::error!(
                thread,
                %location,
                "lbd panicked: {message}; aborting (a task must not die while lbd runs on without it){backtrace}"
            );
        } else {
            eprintln!(
                "lbd: panicked in thread {thread} at {location}: {message}; aborting{backtrace}"
            );
        }
        std::process::abort();
    }));
}

/// lbd's exit code for `result`: the stop's (0, or
/// [`lb_userspace::daemon::EXIT_STOPPED_FOR_RESTART`]), or
/// [`lb_userspace::daemon::exit_status`].
fn exit_code(result: &anyhow::Result<Stopped>) -> std::process::ExitCode {
    match result {
        Ok(stopped) => std::process::ExitCode::from(stopped.exit_status()),
        Err(error) => std::process::ExitCode::from(lb_userspace::daemon::exit_status(error)),
    }
}

/// Catches SIGHUP and SIGUSR1 before anything else (see
/// [`lb_userspace::daemon::EarlySignals`]): their default action would end
/// lbd while it still reads its config: for SIGHUP an exit systemd counts
/// as clean and does not restart, for SIGUSR1 (the unit's
/// RestartKillSignal) one before the restart marker is written, so the
/// unit's stop path withdraws the BGP announcements. SIGINT and SIGTERM
/// keep their default action until the daemon runs.
fn catch_early_signals() -> anyhow::Result<EarlySignals> {
    EarlySignals::register()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    install_panic_hook();
    // First of all: a SIGHUP or SIGUSR1 from here on waits for the loop
    // (a reload, a stop for a restart).
    let early = match catch_early_signals() {
        Ok(early) => early,
        Err(error) => {
            eprintln!("lbd: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
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
            return std::process::ExitCode::from(lb_userspace::daemon::config_exit_status(&error));
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
            lb_userspace::daemon::offline(&args.config, config.as_ref(), action)
                .await
                .map(|()| Stopped::Done)
        }
        (None, Some(config)) => {
            for warning in lb_userspace::config::warnings(&config) {
                tracing::warn!(file = %args.config.display(), "config: {warning}");
            }
            lb_userspace::daemon::run(&args.config, config, early).await
        }
        // Refused above.
        (None, None) => return std::process::ExitCode::FAILURE,
    };
    if let Err(error) = &result {
        tracing::error!("{error:#}");
    }
    exit_code(&result)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;

    use super::*;

    #[test]
    fn a_stop_for_good_that_failed_exits_with_its_own_code() {
        use lb_userspace::daemon::{StoppedForGoodWithErrors, EXIT_STOPPED_FOR_GOOD_WITH_ERRORS};
        let code = |result: anyhow::Result<Stopped>| format!("{:?}", exit_code(&result));
        assert_eq!(
            code(Ok(Stopped::Done)),
            format!("{:?}", std::process::ExitCode::SUCCESS)
        );
        assert_eq!(
            code(Err(anyhow::anyhow!("start-up failed"))),
            format!("{:?}", std::process::ExitCode::FAILURE)
        );
        assert_eq!(
            code(Err(anyhow::anyhow!("BIRD did not take the withdrawal")
                .context(StoppedForGoodWithErrors))),
            format!(
                "{:?}",
                std::process::ExitCode::from(EXIT_STOPPED_FOR_GOOD_WITH_ERRORS)
            )
        );
    }

    /// SIGUSR1 (the unit's RestartKillSignal) left the routes for the
    /// next lbd: its exit status is the one the unit always restarts.
    #[test]
    fn a_stop_for_a_restart_exits_with_the_status_the_unit_restarts() {
        use lb_userspace::daemon::EXIT_STOPPED_FOR_RESTART;
        assert_eq!(
            format!("{:?}", exit_code(&Ok(Stopped::ForRestart))),
            format!(
                "{:?}",
                std::process::ExitCode::from(EXIT_STOPPED_FOR_RESTART)
            )
        );
        let help = Args::command().render_long_help().to_string();
        assert!(
            help.contains(&format!(
                "; {EXIT_STOPPED_FOR_RESTART} a stop for a restart"
            )) && help.contains(&format!(
                "RestartForceExitStatus={EXIT_STOPPED_FOR_RESTART}"
            )),
            "{help}"
        );
    }

    /// A start that would fail again (the config or the object refused)
    /// exits with a status of its own, which the help names with the
    /// unit setting that keeps it from being repeated.
    #[test]
    fn the_help_names_the_exit_statuses_of_a_refused_start() {
        use lb_userspace::daemon::{EXIT_CONFIG_REFUSED, EXIT_OBJECT_REFUSED};
        let help = Args::command().render_long_help().to_string();
        for said in [
            format!("{EXIT_CONFIG_REFUSED} the config refused"),
            format!("{EXIT_OBJECT_REFUSED} this build's data plane object refused"),
            format!("RestartPreventExitStatus={EXIT_CONFIG_REFUSED} {EXIT_OBJECT_REFUSED}"),
        ] {
            assert!(help.contains(&said), "{said}: {help}");
        }
    }

    #[test]
    fn the_help_names_the_exit_status_of_a_stop_for_good_that_failed() {
        let help = Args::command().render_long_help().to_string();
        let code = lb_userspace::daemon::EXIT_STOPPED_FOR_GOOD_WITH_ERRORS;
        assert!(
            help.contains(&format!("; {code} a stop for good"))
                && help.contains(&format!("RestartPreventExitStatus={code}")),
            "{help}"
        );
    }

    /// Runs test `test` again in a child process with `child_env` set, where
    /// it raises `signal` (named `name`) after catching the early signals
    /// as `main` does; asserts the child lived through it.
    fn assert_an_early_signal_is_survived(
        child_env: &str,
        test: &str,
        signal: libc::c_int,
        name: &str,
    ) {
        if std::env::var_os(child_env).is_some() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let _early = catch_early_signals().unwrap();
                // SAFETY: raise(3) on this process. Its handler, if any,
                // has run when raise returns.
                assert_eq!(unsafe { libc::raise(signal) }, 0);
                println!("survived the {name}");
            });
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(child_env, "1")
            .output()
            .unwrap();
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.signal(), None, "{output}");
        assert!(out.status.success(), "{output}");
        assert!(output.contains(&format!("survived the {name}")), "{output}");
    }

    /// A SIGHUP (a reload: `kill -HUP $(pidof lbd)` from a hook racing a
    /// restart) that arrives while lbd still reads its config must not
    /// end it: killed by SIGHUP, lbd would exit in a way systemd counts
    /// as clean and does not restart. `main` catches SIGHUP before
    /// anything else (as the child does here), and the signal waits for
    /// the loop, a reload once started (see the daemon's
    /// `a_sighup_caught_first_is_a_reload_for_the_loop`).
    #[test]
    fn a_sighup_before_the_config_is_read_does_not_kill_lbd() {
        assert_an_early_signal_is_survived(
            "LBD_TEST_EARLY_HANGUP_CHILD",
            "tests::a_sighup_before_the_config_is_read_does_not_kill_lbd",
            libc::SIGHUP,
            "SIGHUP",
        );
    }

    /// A SIGUSR1 (the unit's RestartKillSignal: a `systemctl restart`
    /// racing a start) that arrives while lbd still reads its config must
    /// not kill it by its default action: dead before it wrote the restart
    /// marker, lbd's stop path would withdraw the BGP announcements. `main`
    /// catches it with SIGHUP before anything else (as the child does
    /// here), and the loop, once it runs, takes it as a restart (see the
    /// daemon's `a_sigusr1_caught_first_is_a_restart_for_the_loop`).
    #[test]
    fn a_sigusr1_before_the_config_is_read_does_not_kill_lbd() {
        assert_an_early_signal_is_survived(
            "LBD_TEST_EARLY_RESTART_CHILD",
            "tests::a_sigusr1_before_the_config_is_read_does_not_kill_lbd",
            libc::SIGUSR1,
            "SIGUSR1",
        );
    }

    /// Set in the child the test below runs.
    const PANIC_CHILD: &str = "LBD_TEST_PANIC_HOOK_CHILD";

    /// A panic in a spawned task (as a VRRP driver's would be) must not
    /// leave lbd running without it: the hook logs it and aborts.
    #[test]
    fn a_panic_in_a_task_is_logged_and_aborts_lbd() {
        if std::env::var_os(PANIC_CHILD).is_some() {
            lb_userspace::logging::init(LogFormat::Text, "info");
            install_panic_hook();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let task = tokio::spawn(async { panic!("the VRRP driver broke") });
                let _ = task.await;
                // Without the hook lbd would run on here.
                tracing::info!("still running after the panic");
            });
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::a_panic_in_a_task_is_logged_and_aborts_lbd",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PANIC_CHILD, "1")
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
        assert!(
            !stderr.contains("still running after the panic"),
            "{stderr}"
        );
        let logged = stderr
            .lines()
            .find(|line| line.contains("lbd panicked: the VRRP driver broke"))
            .unwrap_or_else(|| panic!("the panic was not logged: {stderr}"));
        assert!(
            logged.contains("ERROR")
                && logged.contains("lbd.rs:")
                // The thread: one of tokio's workers, not the test's.
                && logged.contains("thread=\"tokio-"),
            "{logged}"
        );
    }
}
