//! `lb-decap`: unwraps tunnelled direct-server-return packets on a backend
//! (see the library's doc and README "Running lb-decap on a backend").

mod cli;

use clap::Parser as _;
use lb_decap::{
    config::{Attach, Settings},
    dataplane,
    pins::PinDir,
    signals::Signals,
    status,
};
use tracing::{info, warn};

use crate::cli::{apply, foreground, warn_not_local, write_man_pages, Cli, Command};

/// Blocks SIGHUP, SIGTERM and SIGINT before anything else (see
/// [`Signals`]): until `run` waits on them, SIGHUP's default action would
/// end lb-decap while it starts (a `systemctl reload` right after
/// `systemctl start`), an exit systemd counts as clean and does not
/// restart. Commands other than `run` put the mask back (`run`).
fn block_signals_first() -> anyhow::Result<Signals> {
    Signals::block()
}

fn main() -> std::process::ExitCode {
    let signals = match block_signals_first() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("lb-decap: error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Cli::parse(), signals) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-decap: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the command of `cli`; `signals` (blocked first thing in `main`)
/// go to `run`'s loop, and any other command puts the mask back first.
fn run(cli: Cli, signals: Signals) -> anyhow::Result<()> {
    if let Some(dir) = &cli.generate_man {
        signals.restore()?;
        return write_man_pages(dir);
    }
    let pins = PinDir::new(&cli.pin_dir);
    let command = match (cli.cleanup, cli.command) {
        (true, None) => Command::Cleanup,
        (true, Some(command)) => {
            anyhow::bail!("--cleanup takes no command (got {command:?}); use `lb-decap cleanup`")
        }
        (false, Some(command)) => command,
        (false, None) => {
            anyhow::bail!("no command given (run, apply, check, status, cleanup; see --help)")
        }
    };
    // Only `run` waits on the signals: the other commands put the mask
    // back, so they end on them at once, as before.
    match command {
        Command::Run { config } => foreground(&config, &pins, signals),
        Command::Apply { config } => {
            signals.restore()?;
            apply(&config, &pins, None).map(drop)
        }
        Command::Check { config } => {
            signals.restore()?;
            let settings = Settings::load(&config)?;
            for warning in settings.warnings() {
                warn!("{}: {warning}", config.display());
            }
            warn_not_local(&config, &settings.vips);
            let mode = match settings.attach {
                Attach::Xdp => format!(" (xdp mode {})", settings.xdp_mode),
                Attach::Tc => String::new(),
            };
            let interfaces = match settings.interfaces.as_slice() {
                [one] => format!("interface {one}"),
                _ => format!("interfaces {}", settings.interface_names()),
            };
            println!(
                "{}: valid; {interfaces}, attach {}{mode}",
                config.display(),
                settings.attach,
            );
            print!(
                "{}",
                status::describe(
                    &settings.config,
                    &settings.addresses,
                    &settings.sources,
                    &settings.vips
                )
            );
            Ok(())
        }
        Command::Status => {
            signals.restore()?;
            print!("{}", status::report(&pins)?);
            Ok(())
        }
        Command::Cleanup => {
            signals.restore()?;
            let removed = dataplane::cleanup(&pins)?;
            info!(removed, dir = %pins.root().display(), "cleaned up");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    /// Set in the children the tests below run: which test's child part.
    const SIGNAL_CHILD: &str = "LB_DECAP_TEST_EARLY_SIGNAL_CHILD";

    /// Runs the test `name` again in a child process with [`SIGNAL_CHILD`]
    /// set; returns how it ended and its output.
    fn run_child(name: &str) -> (std::process::ExitStatus, String) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(SIGNAL_CHILD, "1")
            .output()
            .unwrap();
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, output)
    }

    /// A SIGHUP (`systemctl reload lb-decap` right after `systemctl start`:
    /// with Type=simple the start returns at the fork) that arrives while
    /// lb-decap still starts must not end it: killed by SIGHUP, it would
    /// exit in a way systemd counts as clean and does not restart, with
    /// nothing applied. `main` blocks the signals before anything else (as
    /// the child does here), and the SIGHUP waits for `run` (taken before
    /// its first apply, which reads the file, or by its loop: a reload).
    #[test]
    fn a_sighup_before_the_arguments_are_read_does_not_kill_lb_decap() {
        if std::env::var_os(SIGNAL_CHILD).is_some() {
            let signals = block_signals_first().unwrap();
            // SAFETY: raise(3) on this thread.
            assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
            println!("survived the SIGHUP");
            let waiting = signals.next_within(std::time::Duration::ZERO).unwrap();
            println!("then waited for: {waiting:?}");
            return;
        }
        let (status, output) =
            run_child("tests::a_sighup_before_the_arguments_are_read_does_not_kill_lb_decap");
        assert_eq!(status.signal(), None, "{output}");
        assert!(status.success(), "{output}");
        assert!(output.contains("survived the SIGHUP"), "{output}");
        assert!(output.contains("then waited for: Some(Reload)"), "{output}");
        // And `main` does so first, before the logging and the arguments.
        let source = include_str!("main.rs");
        let body = source
            .split("\nfn main() -> std::process::ExitCode {\n")
            .nth(1)
            .expect("main");
        let first = body
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("//"))
            .expect("a statement");
        assert!(first.contains("block_signals_first()"), "{first}");
    }

    /// Only `run` waits on the blocked signals: any other command (here
    /// `check`, failing on a missing file) puts the mask back first, so a
    /// SIGTERM or SIGINT still ends a one-shot `cleanup` or `apply` at
    /// once, as before.
    #[test]
    fn commands_other_than_run_stay_killable() {
        if std::env::var_os(SIGNAL_CHILD).is_some() {
            let signals = block_signals_first().unwrap();
            let cli = Cli::parse_from([
                "lb-decap",
                "check",
                "--config",
                "/nonexistent/lb-decap-test.toml",
            ]);
            let error = run(cli, signals).expect_err("no such file");
            println!("check failed: {error:#}");
            // SAFETY: raise(3) on this thread.
            assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
            println!("survived the SIGTERM");
            return;
        }
        let (status, output) = run_child("tests::commands_other_than_run_stay_killable");
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{output}");
        assert!(output.contains("check failed"), "{output}");
        assert!(!output.contains("survived"), "{output}");
    }
}
