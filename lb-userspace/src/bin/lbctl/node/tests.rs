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
        let change: NodeStatus =
            serde_json::from_str(&lines[0]).unwrap_or_else(|e| panic!("{tag}: {e}: {}", lines[0]));
        assert_eq!(change.state, NodeState::Drained, "{tag}");
        let last: serde_json::Value =
            serde_json::from_str(&lines[1]).unwrap_or_else(|e| panic!("{tag}: {e}: {}", lines[1]));
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
    let (lines, code) = json_wait_against("json-unexported", 60, vec![not_exported, change]).await;
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
