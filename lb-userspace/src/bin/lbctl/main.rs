//! lbctl: the operator's command line for lbd, over its admin socket. One
//! file per subcommand. The exit codes scripts can rely on are
//! [`EXIT_STATUS`], shown by `--help` and in lbctl(8), and copied in the
//! README (a test keeps the copy the same).

#![warn(unreachable_pub)]
// The doc comments of the subcommands' arguments are clap's help text,
// shown verbatim by `--help` and in the man pages: `[ADDRESS]` and
// `[,mac=MAC]` there mean "optional", not links.
#![allow(rustdoc::broken_intra_doc_links)]
// Output goes through `out!`/`outln!`, which check each write (see
// closed_output): `print!` would panic on a full disk.
#![deny(clippy::print_stdout)]

/// `print!`, with a failed write ending lbctl as
/// [`closed_output::write_stdout`] says rather than by a panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::closed_output::write_stdout(format_args!($($arg)*))
    };
}

/// `println!`, with a failed write ending lbctl as
/// [`closed_output::write_stdout`] says rather than by a panic.
macro_rules! outln {
    () => {
        $crate::closed_output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::closed_output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod acl;
mod backend;
mod closed_output;
mod completions;
mod config_check;
mod config_dump;
mod config_import;
mod flag_names;
mod flow;
mod health_flags;
mod limit;
mod man;
mod node;
mod output;
mod reload;
mod status;
// The library's scratch directories for tests, the same file: the
// library builds its copy only for its own tests, out of lbctl's reach.
#[cfg(test)]
#[path = "../../test_scratch.rs"]
mod test_scratch;
mod vip;
mod wait;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use lb_userspace::api::client::{Client, ClientError};

/// lbctl's exit statuses: the one list of them, shown after `--help`
/// (clap's `after_help`) and in lbctl(8) (its EXTRA section), and copied
/// verbatim in the README's lbctl section; tests check that every exit
/// code lbctl uses is here and that the README has this text. Every line
/// but the heading is indented, so that the man page keeps the lines.
const EXIT_STATUS: &str = "\
Exit status:
  0  done
  1  other failure (also: output that could not be written)
  2  bad usage (also: --socket is not a socket, or no permission
     on it), or a request lbd refused; nothing changed
  3  no such VIP, backend, ACL rule or limit
  4  exists already
  5  lbd not reachable (not running, or nothing listens on its
     socket), too busy, or shutting down (a restart): nothing was
     done; try again later
  6  a drain's timeout ended it (its flows cut; a NAT VIP's stay
     until they end), or `node drain --wait` gave up at its
     --timeout (the node still forwards, BIRD has not taken the
     withdrawal, or lbd did not answer; it stays drained)
  7  a drain that --wait watched was ended by another change
     (undrained, put in maintenance, removed; a node made active
     again)
  8  lbd did not answer a change (within --api-timeout, or its
     connection ended first), or its engine stopped while carrying
     it out; lbd finishes a change whose caller has gone, so
     it may be applied: look at `lbctl status` before trying again
  9  a drain that --wait watched ran out of live flows because its
     backend went down (failed its health checks): its flows were
     moved to other backends, not finished on it
  10  `node drain --wait` found the node announcing through no
      Established BGP session (none up, or none exporting lbd's
      addresses): the routers sent it nothing, so there was
      nothing to drain; it is drained now
  When its output is closed early (`lbctl vip list | head -1`),
  lbctl ends quietly by SIGPIPE (status 141 in a shell, as `cat`
  does).";

/// Control and inspect the lbd load balancer.
#[derive(Debug, Parser)]
#[command(name = "lbctl", version = lb_userspace::VERSION, after_help = EXIT_STATUS)]
pub struct Cli {
    /// lbd's admin socket.
    #[arg(long, global = true, env = "LBCTL_SOCKET", default_value = lb_userspace::config::DEFAULT_ADMIN_SOCKET)]
    socket: PathBuf,
    /// Seconds to wait for lbd's answer to each request (not a drain's
    /// timeout: that is `backend drain --timeout`).
    #[arg(long, global = true, env = "LBCTL_API_TIMEOUT", default_value_t = 10, value_parser = parse_api_timeout, allow_negative_numbers = true)]
    api_timeout: u64,
    #[command(subcommand)]
    command: Command,
}

/// `--api-timeout` in seconds, 1..=3600: a negative or out-of-range one
/// is refused naming the flag and the range (clap alone takes `-1` for an
/// unknown argument and advises `-- -1`).
fn parse_api_timeout(text: &str) -> Result<u64, String> {
    let n: i64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of seconds"))?;
    lb_userspace::config::value::integer::<u32>(n, 1..=3600)
        .map(u64::from)
        .map_err(|e| e.to_string())
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

/// The command line, or the end of lbctl: `--help` and `--version`
/// printed (exit 0), or a usage error (exit 2), as `Cli::parse` does, but
/// with a failed write to stdout reported (exit 1), which clap ignores.
fn parse_or_exit() -> Cli {
    use std::io::Write as _;
    let error = match Cli::try_parse() {
        Ok(cli) => return cli,
        Err(error) => error,
    };
    let printed = error
        .print()
        .and_then(|()| std::io::stdout().lock().flush());
    if let Err(failed) = printed {
        if !error.use_stderr() {
            closed_output::output_failed(&failed);
        }
    }
    std::process::exit(error.exit_code())
}

fn main() -> ExitCode {
    closed_output::die_quietly_on_closed_stdout();
    let cli = parse_or_exit();
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
            Command::Config(ConfigCommand::Check(args)) => config_check::run(&args),
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;
    use lb_userspace::api::client::ClientError;

    use super::*;

    /// The codes [`EXIT_STATUS`] lists, in its order.
    fn listed() -> Vec<u8> {
        EXIT_STATUS
            .lines()
            .filter_map(|line| line.strip_prefix("  ")?.split_once("  ")?.0.parse().ok())
            .collect()
    }

    /// A negative, zero or too long `--api-timeout` is refused naming the
    /// flag and its range, wherever it stands on the line; a good one is
    /// taken.
    #[test]
    fn an_api_timeout_out_of_range_names_the_flag() {
        for args in [
            &["lbctl", "--api-timeout", "-1", "status"][..],
            &["lbctl", "status", "--api-timeout", "-1"],
            &["lbctl", "--api-timeout", "0", "status"],
            &["lbctl", "--api-timeout", "3601", "status"],
        ] {
            let error = Cli::try_parse_from(args).unwrap_err().to_string();
            assert!(
                error.contains("--api-timeout") && error.contains("1..=3600"),
                "{args:?}: {error}"
            );
        }
        let error = Cli::try_parse_from(["lbctl", "--api-timeout", "x", "status"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--api-timeout") && error.contains("whole number"),
            "{error}"
        );
        let cli = Cli::try_parse_from(["lbctl", "--api-timeout", "3600", "status"]).unwrap();
        assert_eq!(cli.api_timeout, 3600);
    }

    /// Every exit code lbctl uses (the constants its subcommands and the
    /// client fail with, and clap's usage error) is in the list, and the
    /// list has no code lbctl does not use.
    #[test]
    fn every_exit_code_lbctl_uses_is_listed() {
        let used = [
            0, // ExitCode::SUCCESS
            ClientError::EXIT_OTHER,
            closed_output::EXIT_OUTPUT_FAILED,
            ClientError::EXIT_USAGE,
            u8::try_from(
                Cli::try_parse_from(["lbctl", "--bogus"])
                    .unwrap_err()
                    .exit_code(),
            )
            .unwrap(),
            ClientError::EXIT_NOT_FOUND,
            ClientError::EXIT_CONFLICT,
            ClientError::EXIT_UNAVAILABLE,
            backend::EXIT_DRAIN_TIMED_OUT,
            node::EXIT_STILL_FORWARDING,
            backend::EXIT_DRAIN_ENDED_ELSEWHERE,
            node::EXIT_MADE_ACTIVE,
            ClientError::EXIT_CHANGE_UNANSWERED,
            backend::EXIT_DRAIN_WENT_DOWN,
            node::EXIT_NOT_ANNOUNCED,
        ];
        let listed = listed();
        for code in used {
            assert!(
                listed.contains(&code),
                "exit code {code} is not in {EXIT_STATUS}"
            );
        }
        assert_eq!(listed, (0..=10).collect::<Vec<u8>>(), "{EXIT_STATUS}");
        for code in &listed {
            assert!(used.contains(code), "{code} is listed but not used");
        }
    }

    /// The text of exit code `code`'s entry in [`EXIT_STATUS`], its
    /// lines joined.
    fn entry(code: u8) -> String {
        let mut text = Vec::new();
        let mut inside = false;
        for line in EXIT_STATUS.lines() {
            let numbered = line
                .strip_prefix("  ")
                .and_then(|l| l.split_once("  "))
                .and_then(|(n, _)| n.parse::<u8>().ok());
            match numbered {
                Some(n) => inside = n == code,
                None if !line.starts_with("     ") => inside = false,
                None => {}
            }
            if inside {
                text.push(line.trim());
            }
        }
        text.join(" ")
    }

    /// A socket path that is no socket and a missing permission do not
    /// mend by waiting: they are bad usage (2), not 5 ("try again
    /// later"); a change lbd's engine stopped in the middle of may be
    /// applied: 8.
    #[test]
    fn the_exit_statuses_say_what_each_failure_means() {
        let usage = entry(2);
        assert!(
            usage.contains("not a socket") && usage.contains("no permission"),
            "{usage}"
        );
        let unavailable = entry(5);
        assert!(
            !unavailable.contains("permission") && unavailable.contains("try again later"),
            "{unavailable}"
        );
        let unanswered = entry(8);
        assert!(
            unanswered.contains("engine stopped while carrying it out"),
            "{unanswered}"
        );
    }

    /// `lbctl --help` and lbctl(8) show the list.
    #[test]
    fn help_and_man_page_show_the_exit_statuses() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains(EXIT_STATUS), "{help}");
        let dir = crate::test_scratch::ScratchDir::new("lbctl-man-exit");
        lb_manpage::write_pages(Cli::command(), dir.path()).unwrap();
        let page = std::fs::read_to_string(dir.join("lbctl.8")).unwrap();
        for text in [
            "Exit status:",
            "0  done",
            "it may be applied: look at",
            "8  lbd did not answer a change (within",
        ] {
            let text = text.replace('-', "\\-");
            assert!(page.contains(&text), "{text:?} not in {page}");
        }
    }

    /// The README's lbctl section has the list as it is here.
    #[test]
    fn the_readme_has_the_exit_statuses_as_they_are() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        assert!(
            readme.contains(&format!("```text\n{EXIT_STATUS}\n```")),
            "README.md does not have this text as it is (in a ```text block):\n{EXIT_STATUS}"
        );
    }
}
