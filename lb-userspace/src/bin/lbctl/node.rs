//! `lbctl node`: this node's part in an active-active group. `drain`
//! withdraws every BGP announcement so the routers move the node's flows
//! to the other nodes (which have them, replicated); with `--wait` it
//! returns once BIRD has taken the withdrawal and the node has forwarded
//! nothing for `--quiet` seconds (with `[bgp]`: for the addresses it
//! announced; VRRP-held VIPs keep their traffic), so the node can be
//! stopped for maintenance without breaking a flow.
//! `undrain` announces again.

use std::time::{Duration, Instant};

use lb_userspace::{
    api::{
        client::{Client, ClientError},
        schema::NodeStatus,
    },
    bgp::{BgpStatus, NodeState, StartupStatus},
};
use serde_json::json;

use crate::{
    output,
    wait::{after_poll_error, note_unanswered, AfterPollError, POLL_INTERVAL},
    Failure,
};

/// Exit code when `drain --wait` gave up before the node went quiet.
pub(crate) const EXIT_STILL_FORWARDING: u8 = 6;
/// Exit code when the node was made active again during `drain --wait`.
pub(crate) const EXIT_MADE_ACTIVE: u8 = 7;
/// Exit code when `drain --wait` found the node announcing through no
/// Established BGP session: the drain is made, but it had nothing to
/// move, so there was nothing to wait for.
pub(crate) const EXIT_NOT_ANNOUNCED: u8 = 10;

/// `lbctl node ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// The node's state, traffic and BGP announcements.
    Status(StatusArgs),
    /// Withdraw every announcement; the node keeps forwarding what still
    /// reaches it.
    Drain(DrainArgs),
    /// Announce again what the node can serve.
    Undrain(ChangeArgs),
}

/// Arguments of `lbctl node status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lbctl node undrain`.
#[derive(Debug, clap::Args)]
pub(crate) struct ChangeArgs {
    /// Show what would be announced; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lbctl node drain`.
#[derive(Debug, clap::Args)]
pub(crate) struct DrainArgs {
    #[command(flatten)]
    change: ChangeArgs,
    /// Return only once the node has forwarded no packet for `--quiet`
    /// seconds: every flow moved to another node or ended. With --json,
    /// stdout is NDJSON (one object a line): lbd's answer to the drain,
    /// then the outcome (`drained`, `timed_out`, `made_active`,
    /// `not_announced`, `failed`). A node that announced through no
    /// Established BGP session had nothing to drain: exit code 10, at
    /// once (the node stays drained).
    #[arg(long, conflicts_with = "dry_run")]
    wait: bool,
    /// Seconds without a forwarded packet that count as drained.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=3600), requires = "wait")]
    quiet: u64,
    /// Give up waiting after this many seconds (exit code 6; the node stays
    /// drained).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400), requires = "wait")]
    timeout: u64,
}

/// Runs `lbctl node ...`.
pub(crate) async fn run(client: &Client, command: Command) -> Result<(), Failure> {
    match command {
        Command::Status(args) => {
            let status = client.node().await?;
            print(&status, args.json);
        }
        Command::Undrain(args) => {
            let status = client
                .set_node_state(NodeState::Active, args.dry_run)
                .await?;
            print(&status, args.json);
        }
        Command::Drain(args) => {
            check_wait(&args)?;
            if args.wait && args.change.json {
                return drain_and_wait(client, &args, &mut |line| outln!("{line}")).await;
            }
            // What the node announced through which session, before the
            // drain withdraws it (nothing done if lbd does not answer).
            let before = if args.wait {
                Some(client.node().await?)
            } else {
                None
            };
            let status = client
                .set_node_state(NodeState::Drained, args.change.dry_run)
                .await?;
            let Some(before) = before else {
                print(&status, args.change.json);
                return Ok(());
            };
            if let Some(failure) = nothing_to_drain(&before) {
                print(&status, args.change.json);
                return Err(failure);
            }
            let status = wait_quiet(client, &args).await?;
            print(&status, args.change.json);
        }
    }
    Ok(())
}

/// `node drain --wait --json`: NDJSON, as `backend drain --wait --json`
/// writes, each line passed to `emit`. lbd's answer to the drain (the
/// change) goes first, at once, so a script has it logged however the
/// wait ends; then, on every end of the wait, its outcome (see
/// [`outcome_line`]). A drain lbd refused or did not answer is an error
/// like any other command's (nothing on stdout: nothing was done).
async fn drain_and_wait(
    client: &Client,
    args: &DrainArgs,
    emit: &mut dyn FnMut(String),
) -> Result<(), Failure> {
    let before = client.node().await?;
    let change = client
        .set_node_state(NodeState::Drained, args.change.dry_run)
        .await?;
    emit(output::json_line(&change));
    let result = match nothing_to_drain(&before) {
        Some(failure) => Err(failure),
        None => wait_quiet(client, args).await,
    };
    emit(outcome_line(&result));
    result.map(|_| ())
}

/// Whether the node, as `before` shows it just before its drain, had
/// nothing a drain could move: active, yet announcing through no BGP
/// session (none Established, or none of them exporting any of lbd's
/// addresses), so the routers sent it nothing over BGP and `--wait`
/// would only confirm a quiet it always had. Then the failure that says
/// so (exit [`EXIT_NOT_ANNOUNCED`]). None when sessions are not known
/// (BIRD not asked yet, or its answer failed), when BIRD was not in sync
/// (the wait's own messages say why), when the node was drained
/// already, or without `[bgp]`: those are waited for as before. A session
/// counts once lbd saw it export (every 10 s, and after each
/// reconfigure).
fn nothing_to_drain(before: &NodeStatus) -> Option<Failure> {
    if before.state != NodeState::Active {
        return None;
    }
    let bgp = before.bgp.as_ref().filter(|b| b.in_sync)?;
    let sessions = bgp.sessions.as_ref()?;
    let established = sessions.iter().filter(|s| s.established).count();
    if sessions
        .iter()
        .any(|s| s.established && !s.exports.is_empty())
    {
        return None;
    }
    let how = match (sessions.len(), established) {
        (0, _) => "BIRD has no BGP session".to_owned(),
        (all, 0) => format!("none of BIRD's {all} BGP sessions is Established"),
        (_, up) => format!(
            "none of the {up} Established BGP sessions exports any of lbd's addresses (check their export filters)"
        ),
    };
    Some(Failure::new(
        EXIT_NOT_ANNOUNCED,
        format!(
            "the node was announcing through no Established BGP session ({how}), so the routers sent it nothing and there was nothing to drain; it stays drained (`lbctl node undrain` announces again), and `lbctl node status` shows its sessions"
        ),
    ))
}

/// The last line of `node drain --wait --json` (one JSON object): how the
/// wait ended, by the name of its exit code (`drained` 0 with the node's
/// status, `timed_out` 6, `made_active` 7, `not_announced` 10, `failed`
/// 1), with the exit
/// code and, when it did not drain, the message lbctl puts on stderr, so
/// a script reading stdout alone has it.
fn outcome_line(result: &Result<NodeStatus, Failure>) -> String {
    let line = match result {
        Ok(node) => json!({"outcome": "drained", "exit_code": 0, "node": node}),
        Err(failure) => json!({
            "outcome": match failure.code {
                EXIT_STILL_FORWARDING => "timed_out",
                EXIT_MADE_ACTIVE => "made_active",
                EXIT_NOT_ANNOUNCED => "not_announced",
                _ => "failed",
            },
            "exit_code": failure.code,
            "message": failure.message,
        }),
    };
    output::json_line(&line)
}

/// Refuses (exit 2, before the drain is asked for) a `--wait` that could
/// only time out: quiet for `--quiet` seconds counts from the drain, so
/// it cannot be reached before a `--timeout` that is not longer.
fn check_wait(args: &DrainArgs) -> Result<(), Failure> {
    if args.wait && args.quiet >= args.timeout {
        return Err(Failure::new(
            ClientError::EXIT_USAGE,
            format!(
                "--quiet {} is not shorter than --timeout {}: the node must be quiet for --quiet seconds after the drain, within --timeout seconds of it, so the wait could only time out; give a --quiet below --timeout (nothing was changed)",
                args.quiet, args.timeout
            ),
        ));
    }
    Ok(())
}

/// Polls until BIRD has taken the withdrawal and the node has been quiet
/// for `--quiet` seconds. The drain is made (and kept across a restart of
/// lbd): an lbd that does not answer for a while (a restart, a slow
/// answer) is waited for until `--timeout` (exit 6, as when the node
/// still forwards then), and any other failed look ends the wait with
/// exit 1, never 5 (which says nothing was done).
async fn wait_quiet(client: &Client, args: &DrainArgs) -> Result<NodeStatus, Failure> {
    let quiet_ms = args.quiet.saturating_mul(1000);
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    // Quiet counts from the drain on: traffic that stopped before it says
    // nothing about the flows the drain moves.
    let drained_at = Instant::now();
    let mut unanswered: Option<Instant> = None;
    loop {
        let status = match client.node().await {
            Ok(status) => status,
            Err(error) => match after_poll_error(&error, Instant::now(), Some(deadline)) {
                AfterPollError::KeepWaiting => {
                    note_unanswered(&error, &mut unanswered, "the node's drain");
                    tokio::time::sleep(POLL_INTERVAL).await;
                    continue;
                }
                AfterPollError::OutOfTime => {
                    return Err(Failure::new(
                        EXIT_STILL_FORWARDING,
                        format!(
                            "gave up after --timeout {} s: lbd does not answer ({error}), so whether the node still forwards is not known; the node stays drained",
                            args.timeout
                        ),
                    ));
                }
                AfterPollError::GiveUp => {
                    return Err(Failure::new(
                        ClientError::EXIT_OTHER,
                        format!(
                            "the node was drained (it stays drained, across a restart of lbd too), but waiting for it failed: {error}; follow it with `lbctl node status`"
                        ),
                    ));
                }
            },
        };
        unanswered = None;
        if status.state != NodeState::Drained {
            return Err(Failure::new(
                EXIT_MADE_ACTIVE,
                "the node was made active again while waiting for its drain",
            ));
        }
        let since_drain = u64::try_from(drained_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        match drain_progress(&status, quiet_ms, since_drain) {
            Progress::Done => return Ok(status),
            Progress::Waiting(why) if Instant::now() >= deadline => {
                return Err(Failure::new(
                    EXIT_STILL_FORWARDING,
                    format!(
                        "gave up after --timeout {} s: {why}; the node stays drained",
                        args.timeout
                    ),
                ));
            }
            Progress::Waiting(_) => {}
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Where a node drain stands.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// Withdrawn in BIRD and quiet long enough.
    Done,
    /// Not yet, and why.
    Waiting(String),
}

/// Whether `status`, `since_drain_ms` after the drain, is drained: BIRD
/// took the withdrawal (else the routers still send traffic), and nothing
/// was forwarded for `quiet_ms`.
fn drain_progress(status: &NodeStatus, quiet_ms: u64, since_drain_ms: u64) -> Progress {
    if let Some(bgp) = status.bgp.as_ref().filter(|b| !b.in_sync) {
        return Progress::Waiting(format!(
            "BIRD has not taken the withdrawal ({}), so the node is still announced",
            bgp.last_error
                .as_deref()
                .unwrap_or("no answer from BIRD yet")
        ));
    }
    // No packet since lbd started: quiet since the drain.
    let idle_ms = status.idle_ms.unwrap_or(u64::MAX);
    if idle_ms.min(since_drain_ms) >= quiet_ms {
        return Progress::Done;
    }
    let quiet_s = quiet_ms / 1000;
    Progress::Waiting(if idle_ms < since_drain_ms {
        format!("the node still forwarded packets {idle_ms} ms ago (--quiet {quiet_s} wants none for {quiet_s} s)")
    } else {
        format!(
            "the node was drained only {:.1} s ago, less than --quiet {quiet_s} s (it has forwarded nothing since)",
            since_drain_ms as f64 / 1000.0
        )
    })
}

fn print(status: &NodeStatus, as_json: bool) {
    if as_json {
        output::json(status);
        return;
    }
    if status.dry_run {
        outln!("dry run: nothing changed; the node would be:");
    }
    outln!("node: {}", status.state.name());
    match status.idle_ms {
        Some(ms) => outln!(
            "forwarded: {} packets, the last {:.1} s ago",
            status.forwarded,
            ms as f64 / 1000.0
        ),
        None => outln!(
            "forwarded: {} packets (none since lbd started)",
            status.forwarded
        ),
    }
    let Some(bgp) = &status.bgp else {
        outln!("bgp: not configured");
        return;
    };
    let startup = match bgp.startup {
        StartupStatus::Waiting => {
            "waiting for the peers' flows and the first health checks".to_owned()
        }
        StartupStatus::Kept => "open for the routes a restart kept; the other addresses wait for their first health checks".to_owned(),
        StartupStatus::Open(reason) => format!("open ({})", reason.name()),
    };
    outln!(
        "bgp: start-up {startup}, BIRD {}",
        if bgp.in_sync {
            "in sync"
        } else {
            "NOT in sync"
        }
    );
    // What lbd wants: BIRD does it only once in sync; the routers hear
    // of it only through an Established session that exports it.
    for address in &bgp.announced {
        outln!("  wanted announced  {address}{}", exported(bgp, *address));
    }
    for withheld in &bgp.withheld {
        outln!(
            "  wanted withdrawn  {}  ({}){}",
            withheld.address,
            withheld.reason.name(),
            exported(bgp, withheld.address)
        );
    }
    print_sessions(bgp);
    if !bgp.in_sync {
        outln!("  (BIRD has not taken what lbd wants, so it may announce otherwise until it does: see the last error)");
    }
    if let Some(error) = &bgp.bird_config_error {
        outln!(
            "  BIRD refuses its config (fix bird.conf: `birdc configure` must succeed): {error}"
        );
    }
    if !bgp.disabled.is_empty() {
        outln!(
            "  disabled   {} (withdrawn that way while BIRD refuses its config)",
            bgp.disabled.join(", ")
        );
    }
    if let Some(error) = &bgp.last_error {
        outln!("  last error: {error}");
    }
}

/// What BIRD's sessions do with `address`, for its line: how many
/// Established sessions export it (nothing while unknown).
fn exported(bgp: &BgpStatus, address: std::net::IpAddr) -> String {
    match bgp.exporting.iter().find(|e| e.address == address) {
        Some(e) if e.sessions == 0 => "  NOT exported by any Established BGP session".to_owned(),
        Some(e) => format!(
            "  exported by {} Established BGP session{}",
            e.sessions,
            if e.sessions == 1 { "" } else { "s" }
        ),
        None => String::new(),
    }
}

/// BIRD's BGP sessions, one a line, as lbd last read them.
fn print_sessions(bgp: &BgpStatus) {
    if let Some(error) = &bgp.sessions_error {
        outln!("  BGP sessions unknown: {error}");
    }
    let Some(sessions) = &bgp.sessions else {
        return;
    };
    if sessions.is_empty() {
        outln!("  BIRD has no BGP session: the routers hear of nothing");
    }
    for session in sessions {
        outln!(
            "  session {}  {}  exports {} of lbd's addresses",
            session.name,
            if session.established {
                "Established".to_owned()
            } else {
                format!("NOT established ({})", session.info)
            },
            session.exports.len()
        );
    }
}

#[cfg(test)]
mod tests;
