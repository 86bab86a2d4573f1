use std::time::{Duration, Instant};

use lb_common::Mode;
use lb_userspace::{
    api::schema::{BackendStatus, HealthStatus},
    model::FlowCount,
    vrrp::driver::InstanceStatus,
};
use serde_json::json;

use super::{
    drain_end::{drain_end, DrainEnd, DrainWatch},
    drain_report::{
        drained_text, failed_line, outcome_line, progress_line, timed_out_text, went_down_text,
    },
    drain_wait::{
        drain_deadline, drain_result, unanswered_bound, wait_failed, wait_for_drain, Watching,
        LONGEST_UNANSWERED_WITHOUT_DEADLINE,
    },
    vrrp_note::not_master_note,
    *,
};
use crate::wait::{
    after_poll_error,
    tests::{Answer, FakeLbd},
    AfterPollError,
};

fn backend(state: BackendState, live: u64, timed_out: bool) -> BackendStatus {
    BackendStatus {
        address: "198.18.0.11".parse().unwrap(),
        mac: None,
        port: None,
        weight: 100,
        backup: false,
        state,
        health: HealthStatus::Up,
        alive: true,
        share: 0.0,
        flows: FlowCount {
            live,
            closing: 0,
            idle: 0,
        },
        flows_counting: false,
        packets: 0,
        bytes: 0,
        new_flows: 0,
        traffic_read: true,
        drain_remaining_s: None,
        drain_timed_out: timed_out,
        held_s: None,
        slow_start: None,
        state_from: None,
        check: None,
        runtime: false,
    }
}

/// lbd's answer about the VIP, its one backend `b`, as JSON.
fn vip_answer(b: &BackendStatus) -> String {
    serde_json::json!({
        "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
        "all_down": false, "runtime": false, "packets": 0, "bytes": 0,
        "new_flows": 0, "backends": [b],
    })
    .to_string()
}

/// Runs `drain --wait` for 198.18.0.11 against a fake lbd giving
/// `answers`: its exit code and message (0: drained), and how many
/// times it asked.
async fn drain_wait_against(tag: &str, answers: Vec<Answer>) -> (u8, String, usize) {
    let lbd = FakeLbd::start(tag, answers);
    let client = Client::new(&lbd.path, Duration::from_millis(300));
    let vip: VipId = "198.18.0.100:80/tcp".parse().unwrap();
    let address = "198.18.0.11".parse().unwrap();
    let (code, message) =
        match wait_for_drain(&client, (vip, address), None, Watching::Made, Some(&[])).await {
            Ok(()) => (0, String::new()),
            Err(failure) => (failure.code, failure.message),
        };
    (code, message, lbd.asked())
}

/// The drain is made when `--wait` starts: lbd restarting meanwhile
/// (503 while it shuts down) or an answer slower than `--api-timeout`
/// is waited through, not exit 5 ("nothing was done; try again
/// later", which a script would take as its cue to drain again).
#[tokio::test]
async fn a_drain_wait_keeps_waiting_through_a_restarting_lbd() {
    let look = |live| Answer::Ok(vip_answer(&backend(BackendState::Draining, live, false)));
    let answers = vec![
        look(2),
        Answer::Error(503),
        Answer::Stall(Duration::from_secs(2)),
        Answer::Error(503),
        look(1),
        look(0),
    ];
    let (code, message, asked) = drain_wait_against("restart", answers).await;
    assert_eq!((code, message.as_str()), (0, ""), "{message}");
    assert_eq!(asked, 6);
}

/// lbd closing a look's connection without answering (it crashed,
/// or stopped, mid-request; systemd starts it again) is lbd being
/// unavailable for a while, waited through like a 503, not a garbled
/// answer that ends the wait with exit 1.
#[tokio::test]
async fn a_drain_wait_keeps_waiting_through_a_connection_lbd_drops() {
    let look = |live| Answer::Ok(vip_answer(&backend(BackendState::Draining, live, false)));
    let answers = vec![look(2), Answer::Close, look(0)];
    let (code, message, asked) = drain_wait_against("dropped", answers).await;
    assert_eq!((code, message.as_str()), (0, ""), "{message}");
    assert_eq!(asked, 3);
}

/// A 404 for an endpoint lbd does not have (an older lbd) is not the
/// backend's VIP having been removed (exit 7): the wait ends as for
/// any other answer it cannot use, saying the drain was made.
#[tokio::test]
async fn a_drain_wait_does_not_take_a_missing_endpoint_for_a_removed_vip() {
    let look = Answer::Ok(vip_answer(&backend(BackendState::Draining, 2, false)));
    for (tag, code) in [
        ("no-endpoint", "no_endpoint"),
        ("no-endpoint-old", "not_found"),
    ] {
        let no_endpoint = Answer::Body(
            404,
            format!(
                r#"{{"error":{{"code":"{code}","message":"no such endpoint: GET /v1/vips/x"}}}}"#
            ),
        );
        let (exit, message, asked) = drain_wait_against(tag, vec![look.clone(), no_endpoint]).await;
        assert_eq!(exit, ClientError::EXIT_OTHER, "{tag}: {message}");
        assert!(message.contains("the drain was made"), "{tag}: {message}");
        assert_eq!(asked, 2);
    }
    // The VIP itself gone: the drain was ended by that removal.
    let no_vip = Answer::Body(
        404,
        r#"{"error":{"code":"not_found","message":"no VIP 198.18.0.100:80/tcp"}}"#.to_owned(),
    );
    let (exit, message, _) = drain_wait_against("no-vip", vec![look, no_vip]).await;
    assert_eq!(exit, EXIT_DRAIN_ENDED_ELSEWHERE, "{message}");
}

/// `--json`'s stdout ends with an outcome line however the wait ends:
/// a failed wait (exit 1) says so there too, with the message; the
/// other ends printed theirs already.
#[test]
fn a_failed_drain_wait_ends_its_json_with_an_outcome_line() {
    let backend: IpAddr = "198.18.0.11".parse().unwrap();
    let failed = Failure::new(ClientError::EXIT_OTHER, "the drain was made; lbd: boom");
    let line = failed_line(backend, &failed, &["a note".to_owned()]).expect("a line");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        value,
        json!({"outcome": "failed", "backend": "198.18.0.11", "exit_code": 1,
               "message": "the drain was made; lbd: boom", "warnings": ["a note"]})
    );
    assert!(!line.trim_end().contains('\n'), "one line: {line:?}");
    for code in [
        EXIT_DRAIN_TIMED_OUT,
        EXIT_DRAIN_ENDED_ELSEWHERE,
        EXIT_DRAIN_WENT_DOWN,
    ] {
        assert_eq!(failed_line(backend, &Failure::new(code, "x"), &[]), None);
    }
}

/// A look failing otherwise ends the wait with exit 1, saying that the
/// drain was made (not 5: nothing done).
#[tokio::test]
async fn a_drain_wait_that_fails_says_the_drain_was_made() {
    let look = Answer::Ok(vip_answer(&backend(BackendState::Draining, 2, false)));
    let (code, message, asked) = drain_wait_against("fails", vec![look, Answer::Error(500)]).await;
    assert_eq!(code, ClientError::EXIT_OTHER, "{message}");
    assert!(message.contains("the drain was made"), "{message}");
    assert!(message.contains("do not drain again"), "{message}");
    assert!(
        message.contains("lbctl backend wait 198.18.0.100:80/tcp 198.18.0.11"),
        "{message}"
    );
    assert!(
        message.contains("lbctl backend list 198.18.0.100:80/tcp"),
        "{message}"
    );
    assert_eq!(asked, 2);
}

/// An lbd that does not answer past the drain's deadline (and the
/// grace after it) ends the wait, exit 1, saying so.
#[test]
fn a_drain_wait_past_the_deadline_without_lbd_says_why_it_stopped() {
    let vip: VipId = "198.18.0.100:80/tcp".parse().unwrap();
    let error = ClientError::NotRunning {
        path: "/run/lbd/lbd.sock".into(),
    };
    let failure = wait_failed(
        (vip, "198.18.0.11".parse().unwrap()),
        &error,
        AfterPollError::OutOfTime,
        (Some(Instant::now()), Some(Instant::now())),
    );
    assert_eq!(failure.code, ClientError::EXIT_OTHER);
    assert!(
        failure.message.contains("deadline passed")
            && failure.message.contains("the drain was made")
            && failure.message.contains("lbd is not running"),
        "{}",
        failure.message
    );
}

/// A drain without a deadline (never cut) has no bound of its own: an
/// lbd that stops answering (stopped for good, its socket gone) is
/// waited for a while, not forever.
#[test]
fn a_drain_without_a_deadline_waits_for_an_unanswering_lbd_only_so_long() {
    let error = ClientError::NotRunning {
        path: "/run/lbd/lbd.sock".into(),
    };
    let now = Instant::now();
    let since = now - LONGEST_UNANSWERED_WITHOUT_DEADLINE;
    assert_eq!(
        after_poll_error(&error, now, unanswered_bound(None, None)),
        AfterPollError::KeepWaiting,
        "the first failed look starts the outage"
    );
    assert_eq!(
        after_poll_error(&error, now, unanswered_bound(None, Some(now))),
        AfterPollError::KeepWaiting
    );
    assert_eq!(
        after_poll_error(&error, now, unanswered_bound(None, Some(since))),
        AfterPollError::OutOfTime
    );
    // A deadline bounds the wait itself, however long the outage.
    let later = now + Duration::from_secs(3600);
    assert_eq!(
        after_poll_error(&error, now, unanswered_bound(Some(later), Some(since))),
        AfterPollError::KeepWaiting
    );
    let vip: VipId = "198.18.0.100:80/tcp".parse().unwrap();
    let failure = wait_failed(
        (vip, "198.18.0.11".parse().unwrap()),
        &error,
        AfterPollError::OutOfTime,
        (Some(since), None),
    );
    assert!(
        failure.message.contains("no deadline") && failure.message.contains("the drain was made"),
        "{}",
        failure.message
    );
}

/// Runs `lbctl backend ARGS` against a fake lbd giving `answers`: its
/// exit code and message (0: done), and how many requests it made.
async fn backend_command_against(
    tag: &str,
    answers: Vec<Answer>,
    args: &[&str],
) -> (u8, String, usize) {
    use clap::Parser as _;
    let lbd = FakeLbd::start(tag, answers);
    let cli = crate::Cli::try_parse_from(["lbctl", "backend"].iter().chain(args)).unwrap();
    let crate::Command::Backend(command) = cli.command else {
        panic!("not a backend command: {args:?}");
    };
    let client = Client::new(&lbd.path, Duration::from_millis(300));
    let (code, message) = match run(&client, command).await {
        Ok(()) => (0, String::new()),
        Err(failure) => (failure.code, failure.message),
    };
    (code, message, lbd.asked())
}

/// lbd's answer to a drain whose timeout is `timeout_s`.
fn drain_answer(timeout_s: u64) -> String {
    serde_json::json!({
        "dry_run": false, "plan": [],
        "drain": {"timeout_s": timeout_s, "from": "request", "cuts_flows": true},
    })
    .to_string()
}

/// A drain timeout in lbd's answer past any drain's (a week) is not
/// trusted: `drain --wait` ends with exit 1 naming the value and
/// saying the drain was made, not a panic adding it to the clock.
#[tokio::test]
async fn a_drain_wait_refuses_an_absurd_timeout_in_lbds_answer() {
    let args = ["drain", "198.18.0.100:80", "198.18.0.11", "--wait"];
    let (code, message, asked) = backend_command_against(
        "absurd-timeout",
        vec![Answer::Ok(drain_answer(u64::MAX))],
        &args,
    )
    .await;
    assert_eq!(code, ClientError::EXIT_OTHER, "{message}");
    assert!(
        message.contains(&format!("timeout_s of {} s", u64::MAX))
            && message.contains("the drain was made"),
        "{message}"
    );
    assert_eq!(asked, 1);
    // A week is a drain lbd may give: waited for.
    let week = 7 * 86_400;
    assert!(drain_deadline(Instant::now(), week, "timeout_s", (vip(), addr())).is_ok());
    assert!(drain_deadline(Instant::now(), 0, "drain_remaining_s", (vip(), addr())).is_ok());
    let past = drain_deadline(Instant::now(), week + 1, "timeout_s", (vip(), addr()));
    assert!(past.is_err());
}

/// The same for the remaining time lbd gives while the wait polls.
#[tokio::test]
async fn a_drain_wait_refuses_an_absurd_remaining_time_in_lbds_answer() {
    let mut draining = backend(BackendState::Draining, 2, false);
    draining.drain_remaining_s = Some(u64::MAX);
    let (code, message, asked) =
        drain_wait_against("absurd-remaining", vec![Answer::Ok(vip_answer(&draining))]).await;
    assert_eq!(code, ClientError::EXIT_OTHER, "{message}");
    assert!(
        message.contains(&format!("drain_remaining_s of {} s", u64::MAX))
            && message.contains("the drain was made"),
        "{message}"
    );
    assert_eq!(asked, 1);
}

/// `maintenance --off` ends maintenance only: on a draining backend
/// it is refused (exit 2, naming `undrain`) before any change is
/// sent, rather than sending `enabled`, which would end the drain.
#[tokio::test]
async fn maintenance_off_does_not_end_a_drain() {
    let args = ["maintenance", "198.18.0.100:80", "198.18.0.11", "--off"];
    let change = Answer::Ok(r#"{"dry_run": false, "plan": []}"#.to_owned());
    let look = |state| Answer::Ok(vip_answer(&backend(state, 1, false)));
    let (code, message, asked) = backend_command_against(
        "off-draining",
        vec![look(BackendState::Draining), change.clone()],
        &args,
    )
    .await;
    assert_eq!(code, ClientError::EXIT_USAGE, "{message}");
    assert!(
        message.contains("is draining, not in maintenance")
            && message.contains("nothing was changed")
            && message.contains("lbctl backend undrain 198.18.0.100:80/tcp 198.18.0.11"),
        "{message}"
    );
    assert_eq!(asked, 1, "only looked: no change sent");
    // In maintenance (or enabled: nothing to end, as before): sent.
    for state in [BackendState::Maintenance, BackendState::Enabled] {
        let (code, message, asked) = backend_command_against(
            &format!("off-{state}"),
            vec![look(state), change.clone()],
            &args,
        )
        .await;
        assert_eq!((code, message.as_str(), asked), (0, "", 2), "{state}");
    }
}

/// `maintenance --off` sends its look's state as the change's
/// precondition (`from`), so that lbd refuses it (409) when a drain
/// lands between the look and the change rather than ending that
/// drain; lbd's refusal is reported as such, exit 4.
#[tokio::test]
async fn maintenance_off_makes_its_look_a_precondition_of_the_change() {
    use clap::Parser as _;
    let look = Answer::Ok(vip_answer(&backend(BackendState::Maintenance, 0, false)));
    let conflict = Answer::Body(
        409,
        r#"{"error":{"code":"conflict","message":"backend 198.18.0.11 of VIP 198.18.0.100:80/tcp is draining, not maintenance: nothing was changed"}}"#
            .to_owned(),
    );
    let lbd = FakeLbd::start("off-raced", vec![look, conflict]);
    let cli = crate::Cli::try_parse_from([
        "lbctl",
        "backend",
        "maintenance",
        "198.18.0.100:80",
        "198.18.0.11",
        "--off",
    ])
    .unwrap();
    let crate::Command::Backend(command) = cli.command else {
        panic!("not a backend command");
    };
    let client = Client::new(&lbd.path, Duration::from_millis(300));
    let failure = run(&client, command).await.unwrap_err();
    assert_eq!(
        failure.code,
        ClientError::EXIT_CONFLICT,
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("is draining"),
        "{}",
        failure.message
    );
    let requests = lbd.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests[1].starts_with("PUT ")
            && requests[1].contains(r#""state":"enabled""#)
            && requests[1].contains(r#""from":"maintenance""#),
        "{}",
        requests[1]
    );
}

fn vip() -> VipId {
    "198.18.0.100:80/tcp".parse().unwrap()
}

fn addr() -> IpAddr {
    "198.18.0.11".parse().unwrap()
}

#[test]
fn a_drain_refuses_to_wait_for_a_dry_run() {
    use clap::Parser as _;
    let parse = |extra: &[&str]| {
        let mut args = vec![
            "lbctl",
            "backend",
            "drain",
            "198.18.0.100:80",
            "198.18.0.11",
        ];
        args.extend_from_slice(extra);
        crate::Cli::try_parse_from(args).map_err(|e| e.to_string())
    };
    let error = parse(&["--wait", "--dry-run"]).unwrap_err();
    assert!(error.contains("--dry-run"), "{error}");
    assert!(parse(&["--wait"]).is_ok());
    assert!(parse(&["--dry-run"]).is_ok());
}

#[test]
fn a_nat_backend_is_not_drained_while_its_flows_are_being_counted() {
    let mut counting = backend(BackendState::Draining, 0, false);
    counting.flows_counting = true;
    assert_eq!(drain_end(Some(&counting), Mode::Nat), None);
    counting.flows_counting = false;
    assert_eq!(
        drain_end(Some(&counting), Mode::Nat),
        Some(DrainEnd::Drained)
    );
}

#[test]
fn a_drain_ends_in_one_of_three_ways() {
    let dsr = Mode::DsrL2;
    assert_eq!(
        drain_end(Some(&backend(BackendState::Draining, 3, false)), dsr),
        None
    );
    assert_eq!(
        drain_end(Some(&backend(BackendState::Draining, 0, false)), dsr),
        Some(DrainEnd::Drained)
    );
    // The timeout moved it to maintenance and cut flows: no live flow is
    // counted any more, and that is not "drained".
    assert_eq!(
        drain_end(Some(&backend(BackendState::Maintenance, 0, true)), dsr),
        Some(DrainEnd::TimedOut { flows_cut: true })
    );
    assert_eq!(
        drain_end(Some(&backend(BackendState::Enabled, 2, false)), dsr),
        Some(DrainEnd::EndedElsewhere)
    );
    assert_eq!(
        drain_end(Some(&backend(BackendState::Maintenance, 0, false)), dsr),
        Some(DrainEnd::EndedElsewhere)
    );
    assert_eq!(drain_end(None, dsr), Some(DrainEnd::EndedElsewhere));
}

/// A draining backend that fails its checks is taken out (not alive):
/// its tracked flows are moved to other backends as their packets
/// come, so its count falls to 0 without its flows having finished.
/// That is not "drained".
#[test]
fn a_drain_emptied_by_the_backend_going_down_is_not_drained() {
    let mut down = backend(BackendState::Draining, 0, false);
    down.health = HealthStatus::Down;
    down.alive = false;
    assert_eq!(
        drain_end(Some(&down), Mode::DsrL2),
        Some(DrainEnd::WentDown)
    );
    let text = went_down_text(down.address);
    assert!(text.contains("not drained"), "{text}");
    assert!(text.contains("went down"), "{text}");
    assert!(text.contains("moved to other backends"), "{text}");
    // A NAT VIP's connections stay on a down backend until they end,
    // and a VIP that fails open keeps its down backends alive: their
    // flows finished there.
    assert_eq!(drain_end(Some(&down), Mode::Nat), Some(DrainEnd::Drained));
    down.alive = true;
    assert_eq!(drain_end(Some(&down), Mode::DsrL2), Some(DrainEnd::Drained));
}

/// A backend down for the whole drain: waited for while flows are
/// pinned to it, then not "drained" when none is left.
#[test]
fn a_backend_down_for_the_whole_drain_is_not_drained() {
    let mut down = backend(BackendState::Draining, 2, false);
    down.health = HealthStatus::Down;
    down.alive = false;
    assert_eq!(drain_end(Some(&down), Mode::Ipip), None);
    down.flows.live = 0;
    assert_eq!(drain_end(Some(&down), Mode::Ipip), Some(DrainEnd::WentDown));
    // The same looks through `--wait`'s watch.
    let mut watch = DrainWatch::default();
    down.flows.live = 2;
    assert_eq!(watch.look(Some(&down), Mode::Ipip), None);
    down.flows.live = 0;
    assert_eq!(
        watch.look(Some(&down), Mode::Ipip),
        Some(DrainEnd::WentDown)
    );
}

/// A backend that went down during the drain and came back up before
/// its count reached 0 had flows moved off it all the same.
#[test]
fn a_backend_that_went_down_and_up_during_the_drain_is_not_drained() {
    let mut b = backend(BackendState::Draining, 5, false);
    let mut watch = DrainWatch::default();
    assert_eq!(watch.look(Some(&b), Mode::Gue), None);
    (b.health, b.alive, b.flows.live) = (HealthStatus::Down, false, 2);
    assert_eq!(watch.look(Some(&b), Mode::Gue), None);
    (b.health, b.alive, b.flows.live) = (HealthStatus::Up, true, 0);
    assert_eq!(watch.look(Some(&b), Mode::Gue), Some(DrainEnd::WentDown));
    // Without a look at it down, the same end is a clean drain.
    assert_eq!(
        DrainWatch::default().look(Some(&b), Mode::Gue),
        Some(DrainEnd::Drained)
    );
    // Another change ends it: that is what is said.
    b.state = BackendState::Enabled;
    assert_eq!(
        watch.look(Some(&b), Mode::Gue),
        Some(DrainEnd::EndedElsewhere)
    );
}

/// `drain --wait --json` writes NDJSON: every line of its stdout (the
/// change, the progress, the outcome) is one JSON object, the last the
/// outcome, by the names of the exit codes.
#[test]
fn a_drain_wait_in_json_is_one_object_a_line_ending_with_the_outcome() {
    use lb_userspace::{
        api::schema::{Change, DrainPlan},
        model::{DrainTimeoutSource, PlanChange, VipPlan},
    };
    let address: IpAddr = "198.18.0.11".parse().unwrap();
    let change = Change {
        dry_run: false,
        plan: vec![VipPlan {
            vip: "198.18.0.100:80/tcp".into(),
            change: PlanChange::Changed,
            before: [(address, 1.0)].into_iter().collect(),
            after: [(address, 0.0)].into_iter().collect(),
            moved_fraction: Some(1.0),
            affinity: None,
            slow_start: None,
        }],
        undone: Vec::new(),
        drain: Some(DrainPlan {
            timeout_s: Some(30),
            from: DrainTimeoutSource::Request,
            cuts_flows: true,
            draining_for_s: None,
        }),
        warnings: vec!["a warning".into()],
    };
    let ends = [
        (DrainEnd::Drained, "drained", None, 0),
        (
            DrainEnd::WentDown,
            "went_down",
            Some(BackendState::Draining),
            EXIT_DRAIN_WENT_DOWN,
        ),
        (
            DrainEnd::TimedOut { flows_cut: false },
            "timed_out",
            Some(BackendState::Maintenance),
            EXIT_DRAIN_TIMED_OUT,
        ),
        (
            DrainEnd::EndedElsewhere,
            "ended_elsewhere",
            Some(BackendState::Enabled),
            EXIT_DRAIN_ENDED_ELSEWHERE,
        ),
        (
            DrainEnd::EndedElsewhere,
            "ended_elsewhere",
            None,
            EXIT_DRAIN_ENDED_ELSEWHERE,
        ),
    ];
    let vip: VipId = "198.18.0.100:80/tcp".parse().unwrap();
    let warnings = ["a warning".to_owned(), "a note".to_owned()];
    for (end, name, state, code) in ends {
        let now = state.map(|s| backend(s, 0, false));
        let result = drain_result((vip, address), end, (0, 0), now.as_ref(), false);
        let stdout = [
            output::json_line(&change),
            progress_line(
                address,
                FlowCount {
                    live: 3,
                    closing: 1,
                    idle: 0,
                },
                false,
                0,
            ),
            progress_line(
                address,
                FlowCount {
                    live: 0,
                    closing: 1,
                    idle: 5,
                },
                true,
                2,
            ),
            outcome_line(address, end, (0, 0), state, (&result, &warnings)),
        ]
        .map(|line| line + "\n")
        .concat();
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect();
        assert_eq!(lines.len(), 4, "{stdout}");
        let first: Change = serde_json::from_value(lines[0].clone()).unwrap();
        assert_eq!(first, change);
        assert_eq!(lines[1]["live_flows"], 3);
        assert_eq!(lines[2]["idle_flows"], 5);
        let last = &lines[3];
        assert_eq!(last["outcome"], name, "{stdout}");
        assert_eq!(last["backend"], "198.18.0.11");
        // The exit code on every outcome, 0 included; the message
        // lbctl puts on stderr on the others; the command's warnings
        // on all.
        assert_eq!(last["exit_code"], code, "{stdout}");
        assert_eq!(last.get("message").is_some(), code != 0, "{stdout}");
        assert_eq!(last["warnings"], json!(warnings), "{stdout}");
    }
}

/// A NAT VIP's drain timeout cuts nothing: `--wait` says its
/// connections are still there, not that they were cut.
#[test]
fn a_nat_drain_timeout_does_not_claim_its_flows_were_cut() {
    let timed_out = backend(BackendState::Maintenance, 4, true);
    let end = drain_end(Some(&timed_out), Mode::Nat).unwrap();
    assert_eq!(end, DrainEnd::TimedOut { flows_cut: false });
    let text = timed_out_text(timed_out.address, end, 4);
    assert!(!text.contains("cut"), "{text}");
    assert!(text.contains("4 live connections left"), "{text}");
    let cut = drain_end(Some(&timed_out), Mode::Gue).unwrap();
    assert!(timed_out_text(timed_out.address, cut, 0).contains("cut its remaining flows"));
}

/// `backend drain --timeout` takes 0 (never) and the VIP's range, and
/// refuses the rest on the command line, naming the flag.
#[test]
fn a_drain_timeout_out_of_range_is_refused_naming_the_flag() {
    use clap::Parser as _;
    let parse = |timeout: &str| {
        crate::Cli::try_parse_from([
            "lbctl",
            "backend",
            "drain",
            "198.18.0.100:80",
            "198.18.0.11",
            "--timeout",
            timeout,
        ])
        .map(|cli| format!("{cli:?}"))
        .map_err(|e| e.to_string())
    };
    for (good, shown) in [
        ("0", "Some(0)"),
        ("300", "Some(300)"),
        ("604800", "Some(604800)"),
    ] {
        let text = parse(good).unwrap();
        assert!(text.contains(&format!("timeout: {shown}")), "{text}");
    }
    for bad in ["700000", "604801", "-1", "x"] {
        let error = parse(bad).unwrap_err();
        assert!(error.contains("--timeout"), "{bad}: {error}");
        assert!(!error.contains("timeout_s"), "{bad}: {error}");
    }
    assert!(parse("700000")
        .unwrap_err()
        .contains("out of range 1..=604800 (or 0: never)"));
}

/// `backend remove --help` says what a removal does to a NAT VIP's
/// connections: they end, not "hashed to others".
#[test]
fn the_remove_help_says_what_happens_to_a_nat_vips_connections() {
    use clap::CommandFactory as _;
    let mut command = crate::Cli::command();
    let remove = command
        .find_subcommand_mut("backend")
        .and_then(|c| c.find_subcommand_mut("remove"))
        .expect("backend remove");
    let help = remove.render_long_help().to_string();
    assert!(help.contains("NAT VIP's connections end"), "{help}");
}

/// A drain's help says what draining again does, and the wait's
/// how idle flows count.
#[test]
fn the_drain_help_says_what_draining_again_does() {
    use clap::CommandFactory as _;
    let mut command = crate::Cli::command();
    let drain = command
        .find_subcommand_mut("backend")
        .and_then(|c| c.find_subcommand_mut("drain"))
        .expect("backend drain");
    let help = drain.render_long_help().to_string();
    assert!(
        help.contains("keeps its drain's start and deadline"),
        "{help}"
    );
    assert!(help.contains("lbctl backend wait"), "{help}");
    assert!(help.contains("Idle flows"), "{help}");
    assert!(help.contains("Drains reach the sync peers"), "{help}");
}

/// "Drained" with idle flows left says they are still pinned to the
/// backend and break if it stops (the exit stays 0: they may stay
/// silent for hours); without any, the short text.
#[test]
fn a_drain_with_idle_flows_left_says_they_are_still_pinned_here() {
    let address = addr();
    let text = drained_text(address, 300);
    assert!(
        text.starts_with(
            "198.18.0.11 is drained: no live flow left; 300 idle flows still pinned here"
        ),
        "{text}"
    );
    assert!(text.contains("break if the backend stops"), "{text}");
    assert_eq!(
        drained_text(address, 0),
        "198.18.0.11 is drained: no live flow left"
    );
    let mut idle = backend(BackendState::Draining, 0, false);
    idle.flows.idle = 300;
    assert_eq!(drain_end(Some(&idle), Mode::DsrL2), Some(DrainEnd::Drained));
    let line: serde_json::Value = serde_json::from_str(&outcome_line(
        address,
        DrainEnd::Drained,
        (0, 300),
        Some(BackendState::Draining),
        (&Ok(()), &[]),
    ))
    .unwrap();
    assert_eq!(line["idle_flows"], 300, "{line}");
}

/// `backend wait` watches a drain already running and changes
/// nothing (no PUT); one of a backend not draining ends at once,
/// exit 7, saying there is no drain to wait for.
#[tokio::test]
async fn a_backend_wait_watches_a_drain_without_making_one() {
    let args = ["wait", "198.18.0.100:80", "198.18.0.11"];
    let look = |state, live| Answer::Ok(vip_answer(&backend(state, live, false)));
    // The first request is the status, for the VRRP note (an error:
    // no note).
    let answers = vec![
        Answer::Error(500),
        look(BackendState::Draining, 2),
        look(BackendState::Draining, 0),
    ];
    let lbd = FakeLbd::start("wait-existing", answers);
    let (code, message) = {
        use clap::Parser as _;
        let cli = crate::Cli::try_parse_from(["lbctl", "backend"].iter().chain(&args)).unwrap();
        let crate::Command::Backend(command) = cli.command else {
            panic!("not a backend command");
        };
        let client = Client::new(&lbd.path, Duration::from_millis(300));
        match run(&client, command).await {
            Ok(()) => (0, String::new()),
            Err(failure) => (failure.code, failure.message),
        }
    };
    assert_eq!((code, message.as_str()), (0, ""), "{message}");
    let requests = lbd.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(
        requests.iter().all(|r| r.starts_with("GET ")),
        "{requests:?}"
    );
    let (code, message, asked) = backend_command_against(
        "wait-none",
        vec![Answer::Error(500), look(BackendState::Enabled, 0)],
        &args,
    )
    .await;
    assert_eq!(code, EXIT_DRAIN_ENDED_ELSEWHERE, "{message}");
    assert!(
        message.contains("is not draining (enabled): there is no drain to wait for"),
        "{message}"
    );
    assert_eq!(asked, 2);
}

/// A node that is VRRP backup for the VIP's address is noted: its
/// counts are not the master's. Master, or no instance moving the
/// address: nothing.
#[test]
fn a_wait_on_a_vrrp_backup_notes_it_is_not_the_master() {
    let instance = |state: &str, addresses: &[&str]| -> InstanceStatus {
        serde_json::from_value(json!({
            "vrid": 51, "state": state, "configured_priority": 100, "priority": 100,
            "master": "198.18.2.12", "addresses": addresses,
            "counters": lb_userspace::vrrp::Counters::default(), "ignored": {},
        }))
        .unwrap()
    };
    let note = not_master_note(&[instance("backup", &["198.18.0.100"])], vip()).expect("a note");
    assert!(
        note.starts_with("this node is not the VRRP master of 198.18.0.100:80/tcp's address (vrid 51 is backup, master 198.18.2.12)"),
        "{note}"
    );
    assert_eq!(
        not_master_note(&[instance("master", &["198.18.0.100"])], vip()),
        None
    );
    assert_eq!(
        not_master_note(&[instance("backup", &["198.18.0.200"])], vip()),
        None
    );
}
