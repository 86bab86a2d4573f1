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
    wait::{after_poll_error, note_unanswered, AfterPollError},
    Failure,
};

/// How often `drain --wait` asks lbd.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
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
mod tests {
    use lb_userspace::bgp::{BgpSession, Opened};

    use super::*;
    use crate::wait::tests::{Answer, FakeLbd};

    fn status(in_sync: bool, idle_ms: u64) -> NodeStatus {
        NodeStatus {
            dry_run: false,
            state: NodeState::Drained,
            forwarded: 10,
            idle_ms: Some(idle_ms),
            bgp: Some(BgpStatus {
                announced: Vec::new(),
                withheld: Vec::new(),
                startup: StartupStatus::Open(Opened::NoPeers),
                in_sync,
                applies: 1,
                failures: 1,
                last_error: (!in_sync)
                    .then(|| "connecting to BIRD's control socket /run/bird/bird.ctl".into()),
                bird_config_error: None,
                disabled: Vec::new(),
                sessions: None,
                sessions_error: None,
                exporting: Vec::new(),
                bird_socket: "/run/bird/bird.ctl".into(),
                routes_file: "/run/lbd-bgp/vips.conf".into(),
            }),
        }
    }

    #[test]
    fn a_drain_is_done_only_once_bird_took_the_withdrawal_and_the_node_is_quiet() {
        assert_eq!(
            drain_progress(&status(true, 5_000), 3_000, 5_000),
            Progress::Done
        );
        let Progress::Waiting(why) = drain_progress(&status(false, 5_000), 3_000, 5_000) else {
            panic!("done while BIRD still announces");
        };
        assert!(why.contains("BIRD") && why.contains("bird.ctl"), "{why}");
        let Progress::Waiting(why) = drain_progress(&status(true, 1_000), 3_000, 5_000) else {
            panic!("done while forwarding");
        };
        assert!(why.contains("still forwarded packets 1000 ms ago"), "{why}");
        let mut no_bgp = status(true, 5_000);
        no_bgp.bgp = None;
        assert_eq!(drain_progress(&no_bgp, 3_000, 5_000), Progress::Done);
    }

    /// An address says how many Established sessions export it; one no
    /// session exports says so; nothing is said while that is unknown.
    #[test]
    fn an_address_says_how_many_established_sessions_export_it() {
        let mut bgp = status(true, 0).bgp.unwrap();
        let a: std::net::IpAddr = "198.18.0.100".parse().unwrap();
        assert_eq!(exported(&bgp, a), "");
        bgp.exporting = vec![lb_userspace::bgp::AddressExports {
            address: a,
            sessions: 0,
        }];
        assert!(exported(&bgp, a).contains("NOT exported by any Established BGP session"));
        bgp.exporting[0].sessions = 2;
        assert_eq!(
            exported(&bgp, a),
            "  exported by 2 Established BGP sessions"
        );
    }

    /// Quiet since the drain but not for `--quiet` yet: the wait says the
    /// drain is recent, not that the node forwarded (nor "0 ms ago" when
    /// it forwarded nothing at all).
    #[test]
    fn a_recent_drain_is_not_called_forwarding() {
        let mut idle = status(true, 60_000);
        let Progress::Waiting(why) = drain_progress(&idle, 3_000, 1_500) else {
            panic!("done 1.5 s after the drain");
        };
        assert!(why.contains("drained only 1.5 s ago"), "{why}");
        assert!(!why.contains("forwarded packets"), "{why}");
        idle.idle_ms = None;
        let Progress::Waiting(why) = drain_progress(&idle, 3_000, 1_500) else {
            panic!("done 1.5 s after the drain");
        };
        assert!(why.contains("drained only 1.5 s ago"), "{why}");
        assert!(!why.contains("0 ms ago"), "{why}");
        assert_eq!(drain_progress(&idle, 3_000, 3_000), Progress::Done);
    }

    /// `node drain --wait --quiet 1 --timeout T` against a fake lbd
    /// giving `answers`: its exit code and message (0: done), and how
    /// many times it asked.
    async fn wait_against(tag: &str, timeout: u64, answers: Vec<Answer>) -> (u8, String, usize) {
        use clap::Parser as _;
        let lbd = FakeLbd::start(tag, answers);
        let client = Client::new(&lbd.path, Duration::from_millis(300));
        let timeout = timeout.to_string();
        let cli = crate::Cli::try_parse_from([
            "lbctl",
            "node",
            "drain",
            "--wait",
            "--quiet",
            "1",
            "--timeout",
            &timeout,
        ])
        .unwrap();
        let crate::Command::Node(Command::Drain(args)) = cli.command else {
            panic!("not node drain");
        };
        let (code, message) = match wait_quiet(&client, &args).await {
            Ok(_) => (0, String::new()),
            Err(failure) => (failure.code, failure.message),
        };
        (code, message, lbd.asked())
    }

    /// The node's drain is made when `--wait` starts: lbd restarting
    /// meanwhile (503 while it shuts down, an answer slower than
    /// `--api-timeout`) is waited through, not exit 5 ("nothing was
    /// done"); an lbd still away at `--timeout` ends it as `--timeout`
    /// does (exit 6, the node drained); any other failure is exit 1,
    /// saying the node was drained.
    #[tokio::test]
    async fn a_node_drain_wait_keeps_waiting_through_a_restarting_lbd() {
        let answer = |idle_ms| Answer::Ok(serde_json::to_string(&status(true, idle_ms)).unwrap());
        let answers = vec![
            answer(100),
            Answer::Error(503),
            Answer::Stall(Duration::from_secs(2)),
            Answer::Error(503),
            answer(5_000),
        ];
        let (code, message, asked) = wait_against("node-restart", 60, answers).await;
        assert_eq!((code, message.as_str()), (0, ""), "{message}");
        assert_eq!(asked, 5);

        let (code, message, _) =
            wait_against("node-away", 2, vec![answer(100), Answer::Error(503)]).await;
        assert_eq!(code, EXIT_STILL_FORWARDING, "{message}");
        assert!(
            message.contains("lbd does not answer") && message.contains("stays drained"),
            "{message}"
        );

        let (code, message, asked) =
            wait_against("node-fails", 60, vec![answer(100), Answer::Error(500)]).await;
        assert_eq!(code, ClientError::EXIT_OTHER, "{message}");
        assert!(message.contains("the node was drained"), "{message}");
        assert_eq!(asked, 2);
    }

    /// `node drain --wait --json --quiet 1 --timeout T` against a fake lbd
    /// giving `answers` (the first, the node before the drain; the
    /// second, the drain's): its stdout as lines, and its exit code (0:
    /// done).
    async fn json_wait_against(tag: &str, timeout: u64, answers: Vec<Answer>) -> (Vec<String>, u8) {
        use clap::Parser as _;
        let lbd = FakeLbd::start(tag, answers);
        let client = Client::new(&lbd.path, Duration::from_millis(300));
        let timeout = timeout.to_string();
        let cli = crate::Cli::try_parse_from([
            "lbctl",
            "node",
            "drain",
            "--wait",
            "--json",
            "--quiet",
            "1",
            "--timeout",
            &timeout,
        ])
        .unwrap();
        let crate::Command::Node(Command::Drain(args)) = cli.command else {
            panic!("not node drain");
        };
        let mut lines = Vec::new();
        let code = match drain_and_wait(&client, &args, &mut |line| lines.push(line)).await {
            Ok(()) => 0,
            Err(failure) => failure.code,
        };
        (lines, code)
    }

    /// `node drain --wait --json` writes NDJSON, as `backend drain --wait`
    /// does: the change (lbd's answer to the drain) on one line at once,
    /// then, however the wait ends, its outcome on one line, by the name
    /// of the exit code; a script piping it to `jq -c` has the change
    /// logged even when the wait times out.
    #[tokio::test]
    async fn a_node_drain_wait_in_json_is_one_object_a_line_on_every_end() {
        let answer = |state: NodeState, idle_ms| {
            let mut node = status(true, idle_ms);
            node.state = state;
            Answer::Ok(serde_json::to_string(&node).unwrap())
        };
        let forwarding = answer(NodeState::Drained, 100);
        let quiet = answer(NodeState::Drained, 5_000);
        let ends = [
            (
                "json-timeout",
                2,
                vec![forwarding.clone()],
                EXIT_STILL_FORWARDING,
                "timed_out",
            ),
            (
                "json-drained",
                60,
                vec![forwarding.clone(), quiet],
                0,
                "drained",
            ),
            (
                "json-active",
                60,
                vec![forwarding.clone(), answer(NodeState::Active, 5_000)],
                EXIT_MADE_ACTIVE,
                "made_active",
            ),
            (
                "json-failed",
                60,
                vec![forwarding.clone(), Answer::Error(500)],
                ClientError::EXIT_OTHER,
                "failed",
            ),
            (
                "json-away",
                2,
                vec![forwarding.clone(), Answer::Error(503)],
                EXIT_STILL_FORWARDING,
                "timed_out",
            ),
        ];
        for (tag, timeout, mut answers, exit, outcome) in ends {
            answers.insert(0, exported_before());
            let (lines, code) = json_wait_against(tag, timeout, answers).await;
            assert_eq!(code, exit, "{tag}: {lines:?}");
            assert_eq!(lines.len(), 2, "{tag}: {lines:?}");
            let change: NodeStatus = serde_json::from_str(&lines[0])
                .unwrap_or_else(|e| panic!("{tag}: {e}: {}", lines[0]));
            assert_eq!(change.state, NodeState::Drained, "{tag}");
            let last: serde_json::Value = serde_json::from_str(&lines[1])
                .unwrap_or_else(|e| panic!("{tag}: {e}: {}", lines[1]));
            assert_eq!(last["outcome"], outcome, "{tag}: {last}");
            assert_eq!(last["exit_code"], exit, "{tag}: {last}");
            if exit == 0 {
                assert_eq!(last["node"]["state"], "drained", "{tag}: {last}");
            } else {
                assert!(
                    last["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{tag}: {last}"
                );
            }
        }
    }

    /// The node before its drain: active, announcing 198.18.0.100, with
    /// `sessions` (None: not known).
    fn before(sessions: Option<Vec<BgpSession>>) -> NodeStatus {
        let mut node = status(true, 0);
        node.state = NodeState::Active;
        let bgp = node.bgp.as_mut().unwrap();
        bgp.announced = vec!["198.18.0.100".parse().unwrap()];
        bgp.exporting = sessions
            .iter()
            .map(|all| lb_userspace::bgp::AddressExports {
                address: "198.18.0.100".parse().unwrap(),
                sessions: u32::try_from(
                    all.iter()
                        .filter(|s| s.established && !s.exports.is_empty())
                        .count(),
                )
                .unwrap(),
            })
            .collect();
        bgp.sessions = sessions;
        node
    }

    fn session(name: &str, established: bool, exports: &[&str]) -> BgpSession {
        BgpSession {
            name: name.into(),
            established,
            info: if established { "Established" } else { "Active" }.into(),
            exports: exports.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    /// lbd's answer before a drain whose node a session exports.
    fn exported_before() -> Answer {
        let node = before(Some(vec![session("r1", true, &["198.18.0.100"])]));
        Answer::Ok(serde_json::to_string(&node).unwrap())
    }

    /// A node no Established BGP session exported anything from had
    /// nothing a drain could move: `--wait` says so (exit 10) rather than
    /// claim a drain; a node some session exports from, one whose
    /// sessions are not known, one drained already and one without
    /// `[bgp]` are waited for as before, and so is one whose BIRD was not
    /// in sync (the wait says why).
    #[test]
    fn a_node_no_session_exports_from_has_nothing_to_drain() {
        let failure = nothing_to_drain(&before(Some(Vec::new()))).expect("no session at all");
        assert_eq!(failure.code, EXIT_NOT_ANNOUNCED);
        assert!(
            failure.message.contains("no Established BGP session")
                && failure.message.contains("nothing to drain")
                && failure.message.contains("stays drained"),
            "{}",
            failure.message
        );
        let down = before(Some(vec![
            session("r1", false, &[]),
            session("r2", true, &[]),
        ]));
        assert!(
            nothing_to_drain(&down).is_some(),
            "one down, one exporting none"
        );
        let exported = before(Some(vec![
            session("r1", false, &[]),
            session("r2", true, &["198.18.0.100"]),
        ]));
        assert!(nothing_to_drain(&exported).is_none());
        assert!(nothing_to_drain(&before(None)).is_none(), "not known");
        let mut out_of_sync = before(Some(Vec::new()));
        out_of_sync.bgp.as_mut().unwrap().in_sync = false;
        assert!(nothing_to_drain(&out_of_sync).is_none(), "not in sync");
        let mut drained = before(Some(Vec::new()));
        drained.state = NodeState::Drained;
        assert!(nothing_to_drain(&drained).is_none(), "drained before");
        let mut no_bgp = before(None);
        no_bgp.bgp = None;
        assert!(nothing_to_drain(&no_bgp).is_none());
    }

    /// `node drain --wait --json` on a node no session exports from: the
    /// drain is made (its answer first), then the outcome
    /// `not_announced` with exit code 10 and its message, at once (lbd is
    /// asked nothing more).
    #[tokio::test]
    async fn a_node_drain_wait_on_a_node_nothing_exports_says_so_in_json() {
        let not_exported = Answer::Ok(serde_json::to_string(&before(Some(Vec::new()))).unwrap());
        let change = Answer::Ok(serde_json::to_string(&status(true, 100)).unwrap());
        let (lines, code) =
            json_wait_against("json-unexported", 60, vec![not_exported, change]).await;
        assert_eq!(code, EXIT_NOT_ANNOUNCED, "{lines:?}");
        assert_eq!(lines.len(), 2, "{lines:?}");
        let last: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(last["outcome"], "not_announced", "{last}");
        assert_eq!(last["exit_code"], EXIT_NOT_ANNOUNCED, "{last}");
        assert!(
            last["message"]
                .as_str()
                .is_some_and(|m| m.contains("nothing to drain")),
            "{last}"
        );
    }

    /// `--quiet` not below `--timeout` is refused before lbd is asked
    /// (no lbd here: asking would be exit 5), naming both flags.
    #[tokio::test]
    async fn a_quiet_the_timeout_cannot_fit_is_refused_before_asking() {
        use clap::Parser as _;
        let client = Client::new("/nonexistent/lbctl-test/lbd.sock", Duration::from_secs(1));
        let drain = |quiet: &str, timeout: &str| {
            let cli = crate::Cli::try_parse_from([
                "lbctl",
                "node",
                "drain",
                "--wait",
                "--quiet",
                quiet,
                "--timeout",
                timeout,
            ])
            .unwrap();
            let crate::Command::Node(command) = cli.command else {
                panic!("not node");
            };
            command
        };
        for (quiet, timeout) in [("5", "5"), ("10", "5")] {
            let failure = run(&client, drain(quiet, timeout)).await.err().unwrap();
            assert_eq!(failure.code, 2, "{}", failure.message);
            assert!(
                failure.message.contains(&format!("--quiet {quiet}"))
                    && failure.message.contains(&format!("--timeout {timeout}")),
                "{}",
                failure.message
            );
        }
        // A quiet that fits asks lbd (not running here).
        let failure = run(&client, drain("4", "5")).await.err().unwrap();
        assert_eq!(failure.code, 5, "{}", failure.message);
    }
}
