//! `lbctl acl`: deny and allow lists of source prefixes, global or per
//! VIP (`add`, `del` or `remove`, `list` with the packets each rule
//! matched). Deny
//! wins over allow; a VIP's own allow list replaces the global one. A
//! reload puts the config file's rules back (runtime changes go).

use lb_userspace::{
    api::{client::Client, schema::GuardStatus},
    guard::{AclRule, Action, Cidr, Scope},
    vip_id::VipId,
};

use crate::{output, Failure};

/// `lbctl acl ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Every rule, and the limits of new flows, with their counts.
    List(ListArgs),
    /// Add a rule (nothing changes if it is there).
    Add(RuleArgs),
    /// Remove a rule.
    #[command(visible_alias = "remove")]
    Del(RuleArgs),
}

/// Arguments of `lbctl acl list`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lbctl acl add` and `del`.
#[derive(Debug, clap::Args)]
pub(crate) struct RuleArgs {
    /// `deny` or `allow`.
    #[arg(value_parser = |s: &str| s.parse::<Action>().map_err(|e| e.to_string()))]
    action: Action,
    /// Source prefix (`198.18.66.0/24`, `2001:2:0:66::/64`) or one address.
    #[arg(value_parser = |s: &str| s.parse::<Cidr>().map_err(|e| e.to_string()))]
    source: Cidr,
    /// Only this VIP (`ADDRESS:PORT[/tcp|udp]`); without it, every VIP.
    #[arg(long)]
    vip: Option<VipId>,
    /// Check and show the result; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl RuleArgs {
    fn rule(&self) -> AclRule {
        AclRule {
            scope: self.vip.map_or(Scope::Global, Scope::Vip),
            action: self.action,
            source: self.source,
        }
    }
}

/// Runs `lbctl acl ...`.
pub(crate) async fn run(client: &Client, command: Command) -> Result<(), Failure> {
    let (status, json) = match command {
        Command::List(args) => (client.guard().await?, args.json),
        Command::Add(args) => (client.add_acl(args.rule(), args.dry_run).await?, args.json),
        Command::Del(args) => (
            client.remove_acl(args.rule(), args.dry_run).await?,
            args.json,
        ),
    };
    if json {
        output::json(&status);
    } else {
        print(&status);
    }
    Ok(())
}

/// The guards as text: rules with their counts, limits, drops.
pub(crate) fn print(status: &GuardStatus) {
    if status.dry_run {
        outln!("dry run: nothing changed; the guards would be:");
    }
    if status.rules.is_empty() {
        outln!("acl: no rules (every source)");
    } else {
        outln!("acl: {} rule(s)", status.rules.len());
        // Wide enough for an IPv6 VIP's scope, so rows stay aligned.
        let sw = status
            .rules
            .iter()
            .map(|r| r.scope.to_string().len())
            .max()
            .unwrap_or(0)
            .max(28);
        for rule in &status.rules {
            let id = rule.id.map_or("-".to_owned(), |id| format!("#{id}"));
            let idle = if status.counts_unread {
                " (counters not read: see lbd's log)"
            } else if rule.id.is_none() {
                " (not in force: its VIP is not served)"
            } else {
                ""
            };
            outln!(
                "  {:<5} {:<6} {:<43} {:<sw$} {} packets{idle}",
                id,
                rule.action.to_string(),
                rule.source.to_string(),
                rule.scope.to_string(),
                rule.packets
            );
        }
    }
    if status.limits.is_empty() {
        outln!("limits: none (new flows are not limited)");
    } else {
        outln!("limits of new flows:");
        let sw = status
            .limits
            .iter()
            .map(|l| l.scope.to_string().len())
            .max()
            .unwrap_or(0)
            .max(28);
        for limit in &status.limits {
            let l = &limit.limits;
            let rate = |r: Option<lb_userspace::guard::RateLimit>| {
                r.map_or("-".to_owned(), |r| {
                    format!("{}/s burst {}", r.per_s, r.burst)
                })
            };
            outln!(
                "  {:<sw$} per source {:<22} per prefix (/{} v4, /{} v6) {}",
                limit.scope.to_string(),
                rate(l.source),
                l.prefix_v4,
                l.prefix_v6,
                rate(l.prefix)
            );
        }
    }
    let d = status.dropped;
    outln!(
        "dropped: {} denied, {} not allowed, {} new flows over a limit",
        d.denied,
        d.not_allowed,
        d.rate_limited
    );
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    /// `acl remove` is `acl del`, as `vip remove` and `backend remove`
    /// name the same verb; the help shows it.
    #[test]
    fn remove_is_an_alias_of_del() {
        let cli = crate::Cli::try_parse_from(["lbctl", "acl", "remove", "deny", "198.18.66.0/24"])
            .map_err(|e| e.to_string())
            .unwrap();
        assert!(
            matches!(cli.command, crate::Command::Acl(Command::Del(_))),
            "{cli:?}"
        );
        let mut command = crate::Cli::command();
        let help = command
            .find_subcommand_mut("acl")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("alias: remove"), "{help}");
    }

    /// The README says which of `acl` and `limit` take `--dry-run` as
    /// the commands do: the changes do, the lists take `--json` only.
    #[test]
    fn the_readme_says_which_take_dry_run() {
        let parses =
            |args: &[&str]| crate::Cli::try_parse_from([&["lbctl"], args].concat()).is_ok();
        for args in [
            &[
                "acl",
                "add",
                "deny",
                "198.18.66.0/24",
                "--dry-run",
                "--json",
            ][..],
            &[
                "acl",
                "del",
                "deny",
                "198.18.66.0/24",
                "--dry-run",
                "--json",
            ],
            &["limit", "set", "--source-rate", "20", "--dry-run", "--json"],
            &["limit", "clear", "--dry-run", "--json"],
            &["acl", "list", "--json"],
            &["limit", "list", "--json"],
        ] {
            assert!(parses(args), "{args:?}");
        }
        for args in [
            &["acl", "list", "--dry-run"][..],
            &["limit", "list", "--dry-run"],
        ] {
            assert!(!parses(args), "{args:?}");
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            !readme.contains("`lbctl limit clear [--vip VIP]` (each takes `--dry-run`"),
            "the README still says every acl and limit command takes --dry-run"
        );
        assert!(
            readme.contains("(the changes take `--dry-run`; all of them, and `lbctl acl list` and `lbctl limit list`, take `--json`)"),
            "the README does not say which acl and limit commands take --dry-run"
        );
    }
}
