//! `lbctl limit`: limits of new flows per source address and per source
//! prefix (a default for every VIP, or per VIP), changed at run time.
//! Packets of tracked flows are never limited. A reload puts the config
//! file's limits back. `limit set` changes what its flags give and keeps
//! the rest of the scope's limits (it reads them first); `--replace`
//! sets the flags given as the whole limits.

use lb_common::guard::RATE_MAX;
use lb_userspace::{
    api::client::{Client, ClientError},
    config::value,
    guard::{GuardError, Limits, RateLimit, Scope},
    vip_id::VipId,
};

use crate::{acl, flag_names, output, Failure};

/// `lbctl limit ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// The limits in force (and the deny/allow rules), of every scope.
    List(ListArgs),
    /// Set the limits of every VIP (without limits of its own) or of one.
    ///
    /// The flags given change the scope's limits; the rest keep their
    /// values (lbctl reads them first): `limit set --source-rate 20`
    /// adds a per-source limit to a prefix limit already set. With
    /// --replace the flags given are the whole limits (a rate not given
    /// is removed, prefix lengths not given are 24 and 64). A VIP
    /// without limits of its own starts from none: its own limits
    /// replace the global ones for it.
    Set(SetArgs),
    /// Remove the limits of every VIP (the default) or of one.
    Clear(ScopeArgs),
}

/// Arguments of `lbctl limit list`: it shows every scope, and changes
/// nothing (so it takes neither `--vip` nor `--dry-run`).
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments naming a scope.
#[derive(Debug, clap::Args)]
pub(crate) struct ScopeArgs {
    /// Only this VIP (`ADDRESS:PORT[/tcp|udp]`); without it, the default of
    /// every VIP.
    #[arg(long)]
    vip: Option<VipId>,
    /// Check and show the result; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lbctl limit set`.
#[derive(Debug, clap::Args)]
pub(crate) struct SetArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// New flows per second per source address (1..=1000000).
    #[arg(long, value_parser = parse_rate, allow_negative_numbers = true)]
    source_rate: Option<u32>,
    /// At once per source address (default: the rate).
    #[arg(long, requires = "source_rate", value_parser = parse_rate, allow_negative_numbers = true)]
    source_burst: Option<u32>,
    /// New flows per second per source prefix.
    #[arg(long, value_parser = parse_rate, allow_negative_numbers = true)]
    prefix_rate: Option<u32>,
    /// At once per source prefix (default: the rate).
    #[arg(long, requires = "prefix_rate", value_parser = parse_rate, allow_negative_numbers = true)]
    prefix_burst: Option<u32>,
    /// Prefix length of IPv4 sources (1..=32; default: the scope's,
    /// else 24).
    #[arg(long, value_parser = |t: &str| parse_prefix(t, 32), allow_negative_numbers = true)]
    prefix_v4: Option<u8>,
    /// Prefix length of IPv6 sources (1..=128; default: the scope's,
    /// else 64).
    #[arg(long, value_parser = |t: &str| parse_prefix(t, 128), allow_negative_numbers = true)]
    prefix_v6: Option<u8>,
    /// Replace the scope's limits whole with the flags given, rather
    /// than change only what they give.
    #[arg(long)]
    replace: bool,
}

impl SetArgs {
    /// The limits to send: `current` (the scope's own, None when it has
    /// none; not read with `--replace`) with what the flags give changed.
    fn merged(&self, current: Option<Limits>) -> Result<Limits, GuardError> {
        let base = if self.replace {
            Limits::default()
        } else {
            current.unwrap_or_default()
        };
        let rate = |rate: Option<u32>, burst, what, kept| match rate {
            Some(r) => RateLimit::new(r, burst, what).map(Some),
            None => Ok(kept),
        };
        Ok(Limits {
            source: rate(self.source_rate, self.source_burst, "source", base.source)?,
            prefix: rate(self.prefix_rate, self.prefix_burst, "prefix", base.prefix)?,
            prefix_v4: self.prefix_v4.unwrap_or(base.prefix_v4),
            prefix_v6: self.prefix_v6.unwrap_or(base.prefix_v6),
        })
    }
}

impl ScopeArgs {
    fn scope(&self) -> Scope {
        self.vip.map_or(Scope::Global, Scope::Vip)
    }
}

/// A rate or burst of new flows, 1..=`RATE_MAX` as the file's: a
/// negative or out-of-range one is refused naming the flag and the range
/// (clap alone takes `-1` for an unknown argument).
fn parse_rate(text: &str) -> Result<u32, String> {
    let n: i64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    let max = u32::try_from(RATE_MAX).unwrap_or(u32::MAX);
    value::integer(n, 1..=max).map_err(|e| e.to_string())
}

/// A source prefix length, 1..=`bits`, refused like [`parse_rate`].
fn parse_prefix(text: &str, bits: u8) -> Result<u8, String> {
    let n: i64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    value::integer(n, 1..=bits).map_err(|e| e.to_string())
}

/// Runs `lbctl limit ...`.
pub(crate) async fn run(client: &Client, command: Command) -> Result<(), Failure> {
    // The checks lbctl shares with lbd name the API keys: said in flags.
    let bad = |e: GuardError| {
        Failure::new(
            ClientError::EXIT_USAGE,
            flag_names::in_flags(&e.to_string(), flag_names::LIMIT_SET, false),
        )
    };
    let (status, json) = match command {
        Command::List(args) => (client.guard().await?, args.json),
        Command::Set(args) => {
            let scope = args.scope.scope();
            // The flags' own values are checked before lbd is asked.
            args.merged(None).map_err(bad)?;
            let current = if args.replace {
                None
            } else {
                client
                    .guard()
                    .await?
                    .limits
                    .into_iter()
                    .find(|l| l.scope == scope)
                    .map(|l| l.limits)
            };
            let limits = args.merged(current).map_err(bad)?;
            limits.check().map_err(bad)?;
            if let Some((key, why)) = limits.unused_prefix_length(&args.scope.scope()) {
                return Err(Failure::new(
                    ClientError::EXIT_USAGE,
                    flag_names::in_flags(&format!("{key}: {why}"), flag_names::LIMIT_SET, false),
                ));
            }
            let status = client
                .set_limits(args.scope.scope(), limits, args.scope.dry_run)
                .await
                .map_err(|e| flag_names::refused(e, flag_names::LIMIT_SET, false))?;
            (status, args.scope.json)
        }
        Command::Clear(args) => (
            client.clear_limits(args.scope(), args.dry_run).await?,
            args.json,
        ),
    };
    if json {
        output::json(&status);
    } else {
        acl::print(&status);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::wait::tests::{Answer, FakeLbd};

    /// lbd's answer listing `limits` of the global scope, as JSON.
    fn guard_answer(limits: serde_json::Value) -> String {
        serde_json::json!({
            "rules": [],
            "limits": [{"scope": "global", "limits": limits}],
            "dropped": {"denied": 0, "not_allowed": 0, "rate_limited": 0},
        })
        .to_string()
    }

    /// A negative or out-of-range number given to `limit set` is refused
    /// on the command line naming its flag and range (clap alone took `-1`
    /// for an unknown argument, naming no flag).
    #[test]
    fn limit_numbers_are_refused_naming_the_flag_and_its_range() {
        use clap::Parser as _;
        let parse = |args: &[&str]| {
            crate::Cli::try_parse_from(["lbctl", "limit", "set"].iter().chain(args))
                .map(|cli| format!("{cli:?}"))
                .map_err(|e| e.to_string())
        };
        let text = parse(&[
            "--source-rate",
            "20",
            "--prefix-rate",
            "5",
            "--prefix-v4",
            "16",
        ])
        .unwrap();
        assert!(text.contains("source_rate: Some(20)"), "{text}");
        for (args, flag, range) in [
            (&["--source-rate", "-1"][..], "--source-rate", "1..=1000000"),
            (&["--source-rate", "0"][..], "--source-rate", "1..=1000000"),
            (
                &["--source-rate", "5", "--source-burst", "-1"][..],
                "--source-burst",
                "1..=1000000",
            ),
            (
                &["--prefix-rate", "1000001"][..],
                "--prefix-rate",
                "1..=1000000",
            ),
            (
                &["--prefix-rate", "5", "--prefix-burst", "-3"][..],
                "--prefix-burst",
                "1..=1000000",
            ),
            (
                &["--prefix-rate", "5", "--prefix-v4", "-1"][..],
                "--prefix-v4",
                "1..=32",
            ),
            (
                &["--prefix-rate", "5", "--prefix-v4", "33"][..],
                "--prefix-v4",
                "1..=32",
            ),
            (
                &["--prefix-rate", "5", "--prefix-v6", "-1"][..],
                "--prefix-v6",
                "1..=128",
            ),
            (
                &["--prefix-rate", "5", "--prefix-v6", "0"][..],
                "--prefix-v6",
                "1..=128",
            ),
        ] {
            let error = parse(args).unwrap_err();
            assert!(error.contains(flag), "{args:?}: {error}");
            assert!(
                error.contains(&format!("out of range {range}")),
                "{args:?}: {error}"
            );
        }
    }

    /// Runs `lbctl limit ARGS` against a fake lbd giving `answers`: its
    /// exit code and message, and the requests it made.
    async fn limit_command_against(
        tag: &str,
        answers: Vec<Answer>,
        args: &[&str],
    ) -> (u8, String, Vec<String>) {
        use clap::Parser as _;
        let lbd = FakeLbd::start(tag, answers);
        let cli = crate::Cli::try_parse_from(["lbctl", "limit"].iter().chain(args)).unwrap();
        let crate::Command::Limit(command) = cli.command else {
            panic!("not a limit command: {args:?}");
        };
        let client = Client::new(&lbd.path, Duration::from_millis(300));
        let (code, message) = match run(&client, command).await {
            Ok(()) => (0, String::new()),
            Err(failure) => (failure.code, failure.message),
        };
        (code, message, lbd.requests())
    }

    /// The body of a request, as JSON.
    fn body(request: &str) -> serde_json::Value {
        let (_, body) = request.split_once("\r\n\r\n").expect("a body");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// `limit set --source-rate 20` on a scope with a per-/16 prefix
    /// limit keeps it (and its length); `--replace` sets only the flags.
    #[tokio::test]
    async fn limit_set_keeps_what_its_flags_do_not_give() {
        let held = guard_answer(serde_json::json!({
            "prefix": {"per_s": 500, "burst": 500}, "prefix_v4": 16, "prefix_v6": 64,
        }));
        let (code, message, requests) = limit_command_against(
            "limit-merge",
            vec![Answer::Ok(held.clone()), Answer::Ok(held.clone())],
            &["set", "--source-rate", "20"],
        )
        .await;
        assert_eq!((code, message.as_str()), (0, ""), "{message}");
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert!(requests[0].starts_with("GET "), "{}", requests[0]);
        assert!(requests[1].starts_with("PUT "), "{}", requests[1]);
        let sent = body(&requests[1]);
        assert_eq!(sent["prefix"]["per_s"], 500, "{sent}");
        assert_eq!(sent["prefix_v4"], 16, "{sent}");
        assert_eq!(sent["source"]["per_s"], 20, "{sent}");
        // --replace: no look, and only what the flags give.
        let (code, message, requests) = limit_command_against(
            "limit-replace",
            vec![Answer::Ok(held)],
            &["set", "--source-rate", "20", "--replace"],
        )
        .await;
        assert_eq!((code, message.as_str()), (0, ""), "{message}");
        assert_eq!(requests.len(), 1, "{requests:?}");
        let sent = body(&requests[0]);
        assert!(sent["prefix"].is_null(), "{sent}");
        assert_eq!(sent["prefix_v4"], 24, "{sent}");
    }

    /// The help says which: kept, or replaced with --replace.
    #[test]
    fn the_limit_set_help_says_what_it_keeps() {
        use clap::CommandFactory as _;
        let mut command = crate::Cli::command();
        let set = command
            .find_subcommand_mut("limit")
            .and_then(|c| c.find_subcommand_mut("set"))
            .expect("limit set");
        let help = set.render_long_help().to_string();
        assert!(help.contains("the rest keep their values"), "{help}");
        assert!(help.contains("--replace"), "{help}");
    }
}
