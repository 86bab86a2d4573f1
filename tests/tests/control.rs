//! The control plane end to end in the namespace lab, driven through
//! lbctl: health checks taking a dead backend out, drain with its finish
//! line, a backend added at run time, reloads, and lbctl's answers to bad
//! input. Needs root.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    client::{self, KeepAlive},
    lab::{Lab, VIP4},
    support::{
        backend, ip, kept_alive_on, lbctl_in_background, lbctl_ok, maglev_choice, sources_by_move,
        sources_moving_between, status, MaglevModel,
    },
};
use lb_userspace::api::{
    flow_schema::{FlowDecision, FlowExplanation},
    schema::{BackendState, BackendStatus, HealthStatus, Status},
};

const VIP: &str = "198.18.0.100:80/tcp";
/// A liveness bound for the detection test, not a target (how long
/// detection takes is reported; timing targets live in the benchmarks):
/// ten times the nominal 400 ms of [`DETECTION_CHECKS`]. It tells
/// "marked down by its checks" from "never"; the cause is asserted from
/// the check's own status.
const DETECTION_LIVENESS: Duration = Duration::from_millis(10 * 400);
/// HTTP checks that a loaded 2-core machine cannot fail by delaying a
/// probe or two (500 ms to answer, 3 failures in a row): a healthy
/// backend taken out would move or break the kept-alive connections the
/// tests watch. Only the dead-backend test measures detection; it has
/// [`DETECTION_CHECKS`].
const CHECKS: &str = "[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 2\nfall = 3\n";
/// Fast checks for the detection test: a stopped nginx refuses at once,
/// so it is out after the 200 ms interval and two 100 ms fast intervals,
/// about 400 ms. A healthy backend would have to miss three 200 ms
/// timeouts in a row, 800 ms of a loaded machine not answering.
const DETECTION_CHECKS: &str = "[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 200\nfast_interval_ms = 100\ntimeout_ms = 200\nrise = 2\nfall = 3\n";

/// Per VIP: each backend's address, admin state, weight and share.
type State = Vec<(String, Vec<(IpAddr, BackendState, u32, f64)>)>;

/// Status without the parts that move on their own (counters, checks).
fn state_of(status: &Status) -> State {
    status
        .vips
        .iter()
        .map(|v| {
            (
                v.vip.clone(),
                v.backends
                    .iter()
                    .map(|b| (b.address, b.state, b.weight, b.share))
                    .collect(),
            )
        })
        .collect()
}

fn start(backends: usize, serving: &[&str]) -> Lab {
    start_with(backends, serving, CHECKS)
}

/// [`start`] with the health checks `checks`.
fn start_with(backends: usize, serving: &[&str], checks: &str) -> Lab {
    let mut lab = Lab::start(backends).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let config = lab.lbd_config_for(serving, checks);
    lab.start_lbd(&config).expect("lbd");
    // Every backend checked up before the scenario starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(&lab);
        if s.vips[0]
            .backends
            .iter()
            .all(|b| b.health == HealthStatus::Up)
        {
            break;
        }
        assert!(Instant::now() < deadline, "backends not up: {s:?}");
        thread::sleep(Duration::from_millis(50));
    }
    lab
}

#[test]
fn a_dead_backend_is_taken_out_after_fall_failed_checks() {
    let mut lab = start_with(3, &["b1", "b2", "b3"], DETECTION_CHECKS);
    let stop = Arc::new(AtomicBool::new(false));
    let netns = lab.client.netns.clone();
    // Taken before the load starts, so its requests' `at` (from their
    // run's start, a little later) never place a request that started
    // before b2 was marked down after it.
    let run_start = Instant::now();
    let load = {
        let stop = stop.clone();
        thread::spawn(move || {
            client::run_until(&netns, IpAddr::V4(VIP4), stop, Duration::from_secs(20))
        })
    };
    thread::sleep(Duration::from_millis(500));
    let refused = |b2: &BackendStatus| {
        b2.check
            .as_ref()
            .and_then(|c| c.failures_by_reason.get("refused").copied())
            .unwrap_or(0)
    };
    let refused_before = refused(&backend(&status(&lab), "198.18.0.12"));
    lab.terminate("nginx-b2").expect("stop nginx in b2");
    // From nginx gone (terminate waits for it to exit), not from the signal:
    // its shutdown on a loaded machine is not lbd's detection time.
    let stopped = Instant::now();
    let (detected, b2_down) = loop {
        let b2 = backend(&status(&lab), "198.18.0.12");
        if b2.health == HealthStatus::Down {
            break (stopped.elapsed(), b2);
        }
        assert!(
            stopped.elapsed() < DETECTION_LIVENESS,
            "b2 not marked down {DETECTION_LIVENESS:?} after nginx stopped: {b2:?}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    // The cause: b2's own checks, failed fall (3) times in a row since
    // nginx went, the last refused (a check in flight while nginx shut
    // down may fail as `http` first: its connection taken, its answer cut).
    let check = b2_down.check.as_ref().expect("b2's check status");
    assert!(
        check.consecutive_failures >= 3
            && refused(&b2_down) > refused_before
            && check.last.as_deref() == Some("connection refused"),
        "b2 marked down without fall (3) failed checks, the last refused: {check:?}"
    );
    thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let results = load.join().expect("load thread").expect("load");
    let down_at = (stopped + detected) - run_start;
    let failed_during: Vec<_> = results
        .iter()
        .filter(|r| r.result.is_err() && r.at < down_at)
        .collect();
    let failed_after: Vec<_> = results
        .iter()
        .filter(|r| r.result.is_err() && r.at >= down_at)
        .collect();
    let after = results.iter().filter(|r| r.at >= down_at).count();
    println!(
        "RELIABILITY: backend killed under load: b2 marked down {} ms after nginx stopped (nominal: 200 ms interval + 2 x 100 ms fast interval = 400 ms); \
         {} requests, {} failed during detection, {} after it ({} requests after)",
        detected.as_millis(),
        results.len(),
        failed_during.len(),
        failed_after.len(),
        after
    );
    assert!(after > 10, "too few requests after detection to judge");
    assert!(
        failed_after.is_empty(),
        "requests failed after detection: {failed_after:?}"
    );
    let s = status(&lab);
    let b2 = backend(&s, "198.18.0.12");
    assert!(!b2.alive && b2.share == 0.0, "{b2:?}");
    assert!(results
        .iter()
        .filter(|r| r.at >= down_at)
        .all(|r| r.result.as_deref() != Ok("b2")));
}

/// Keeps `connections` busy (a request every 50 ms each) until `stop`;
/// returns, per connection, the backends that answered and any errors.
fn keep_busy(
    mut connections: Vec<KeepAlive>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<(Vec<String>, Vec<String>)>> {
    thread::spawn(move || {
        let mut seen = vec![(Vec::new(), Vec::new()); connections.len()];
        while !stop.load(Ordering::Relaxed) {
            for (connection, (answers, errors)) in connections.iter_mut().zip(seen.iter_mut()) {
                match connection.request() {
                    Ok(backend) => answers.push(backend),
                    Err(error) => errors.push(error.to_string()),
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        drop(connections);
        seen
    })
}

/// Kept-alive connections from `sources`, each checked to land on the
/// Maglev pick of the lab's first `backends` backends.
fn open_from(lab: &Lab, sources: &[SocketAddr], backends: usize) -> Vec<KeepAlive> {
    sources
        .iter()
        .map(|from| kept_alive_on(lab, *from, &maglev_choice(lab, *from, backends)).0)
        .collect()
}

#[test]
fn a_drained_backend_keeps_its_connections_takes_no_new_ones_and_reports_when_empty() {
    let lab = start(3, &["b1", "b2", "b3"]);
    let connections =
        KeepAlive::open(&lab.client.netns, IpAddr::V4(VIP4), 24).expect("connections");
    let stop = Arc::new(AtomicBool::new(false));
    let busy = keep_busy(connections, stop.clone());
    thread::sleep(Duration::from_millis(300));
    let before = backend(&status(&lab), "198.18.0.11");
    assert!(
        before.flows.live > 0,
        "b1 has no long-lived connection to drain: {before:?}"
    );

    let dry = lbctl_ok(&lab, &["backend", "drain", VIP, "198.18.0.11", "--dry-run"]);
    assert!(
        dry.contains("dry run") && dry.contains("198.18.0.11"),
        "{dry}"
    );
    assert_eq!(
        backend(&status(&lab), "198.18.0.11").state,
        BackendState::Enabled,
        "dry run changed the state"
    );
    lbctl_ok(&lab, &["backend", "drain", VIP, "198.18.0.11"]);
    let drained = backend(&status(&lab), "198.18.0.11");
    assert_eq!(
        (drained.state, drained.share),
        (BackendState::Draining, 0.0)
    );

    // New connections avoid b1; its established ones keep working.
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 300).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert!(
        !tally.by_backend.contains_key("b1"),
        "a new connection reached the draining b1: {tally:?}"
    );
    thread::sleep(Duration::from_millis(500));
    assert!(backend(&status(&lab), "198.18.0.11").flows.live > 0);

    // The finish line: close the connections, drain --wait returns 0.
    let waiter = lbctl_in_background(&lab, &["backend", "drain", VIP, "198.18.0.11", "--wait"]);
    thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    let seen = busy.join().expect("busy thread");
    let out = waiter.join().expect("waiter");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("drain --wait said:\n{report}");
    assert!(
        out.status.success(),
        "drain --wait: {}\n{report}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("is drained"), "{report}");
    assert_eq!(backend(&status(&lab), "198.18.0.11").flows.live, 0);

    // No connection moved or failed.
    let mut per_backend: BTreeMap<String, usize> = BTreeMap::new();
    for (answers, errors) in &seen {
        assert!(
            errors.is_empty(),
            "a long-lived connection failed: {errors:?}"
        );
        let first = answers.first().expect("answers");
        assert!(
            answers.iter().all(|a| a == first),
            "a connection moved: {answers:?}"
        );
        *per_backend.entry(first.clone()).or_default() += 1;
    }
    println!("long-lived connections per backend: {per_backend:?}");
    assert!(per_backend.contains_key("b1"));
}

/// b4 joins three backends while 12 kept-alive connections are busy: 8
/// of them from source ports whose Maglev pick changes when b4 joins
/// (so only the connection table keeps them where they are; a lost or
/// ignored table would move them and break them), 4 whose pick does not.
#[test]
fn a_backend_added_at_run_time_takes_a_quarter_and_established_connections_stay() {
    let lab = start(4, &["b1", "b2", "b3"]);
    let connections = open_from(&lab, &sources_by_move(&lab, 8, 4), 3);
    let stop = Arc::new(AtomicBool::new(false));
    let busy = keep_busy(connections, stop.clone());
    thread::sleep(Duration::from_millis(200));

    let dry = lbctl_ok(
        &lab,
        &["backend", "add", VIP, "198.18.0.14", "--dry-run", "--json"],
    );
    let plan: serde_json::Value = serde_json::from_str(&dry).expect("plan JSON");
    let after = plan["plan"][0]["after"]["198.18.0.14"]
        .as_f64()
        .expect("share after");
    assert!((after - 0.25).abs() < 0.01, "planned share {after}");
    lbctl_ok(&lab, &["backend", "add", VIP, "198.18.0.14"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend(&status(&lab), "198.18.0.14").health != HealthStatus::Up {
        assert!(Instant::now() < deadline, "b4 never came up");
        thread::sleep(Duration::from_millis(50));
    }
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 1000).expect("burst");
    println!("after adding b4: {tally:?}");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    let share = *tally.by_backend.get("b4").unwrap_or(&0) as f64 / 1000.0;
    assert!(
        (0.17..=0.33).contains(&share),
        "b4 got {:.1}% of new connections",
        share * 100.0
    );

    stop.store(true, Ordering::Relaxed);
    for (answers, errors) in busy.join().expect("busy thread") {
        assert!(errors.is_empty(), "{errors:?}");
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "an established connection moved: {answers:?}"
        );
    }
    let s = status(&lab);
    assert!(backend(&s, "198.18.0.14").runtime);
    let dump = lbctl_ok(&lab, &["config", "dump"]);
    assert!(dump.contains("198.18.0.14"), "{dump}");
}

/// Backends leave while connections to the others are busy: `lbctl
/// backend remove` takes b4 out of four, then a reload of a file without
/// b3 takes b3 out. The busy kept-alive connections, all on b1 and b2,
/// come from source ports whose Maglev pick changes at the remove (4 of
/// them) or by the end (4 more), so only the connection table keeps them
/// on their backends: each answers from its first backend throughout and
/// once more at the end. A new connection after each change shows the
/// smaller table serves. The connections of a removed backend do not
/// stay (README: a flow whose backend is gone is hashed again): `lbctl
/// flow` says theirs is not tracked and names Maglev's new pick, and
/// their next request, sent there, is reset.
#[test]
fn removing_a_backend_keeps_established_connections_on_the_others() {
    let lab = start(4, &["b1", "b2", "b3", "b4"]);
    let weights = |names: &[&'static str]| names.iter().map(|n| (*n, 100)).collect::<Vec<_>>();
    let four = MaglevModel::new(&lab, &weights(&["b1", "b2", "b3", "b4"]));
    let three = MaglevModel::new(&lab, &weights(&["b1", "b2", "b3"]));
    let two = MaglevModel::new(&lab, &weights(&["b1", "b2"]));
    let stays = ["b1", "b2"];
    let mut sources = sources_moving_between(&lab, &four, &three, &stays, 2_000..18_000, 4);
    sources.extend(sources_moving_between(
        &lab,
        &four,
        &two,
        &stays,
        18_000..32_000,
        4,
    ));
    let open = |lab: &Lab, from: SocketAddr, model: &MaglevModel| {
        kept_alive_on(lab, from, &model.pick(from))
    };
    let kept: Vec<(KeepAlive, String)> = sources
        .iter()
        .map(|from| open(&lab, *from, &four))
        .collect();
    let first: Vec<String> = kept.iter().map(|(_, b)| b.clone()).collect();
    // One connection each on b4 and b3, the backends that leave.
    let on = |name: &str, ports: std::ops::Range<u16>| {
        ports
            .map(|p| SocketAddr::new(IpAddr::V4(lab.client.ipv4), p))
            .find(|s| four.pick(*s) == name)
            .expect("a source")
    };
    let (from_b4, from_b3) = (on("b4", 1_100..1_300), on("b3", 1_300..1_500));
    let (mut conn_b4, _) = open(&lab, from_b4, &four);
    let (mut conn_b3, _) = open(&lab, from_b3, &four);
    let stop = Arc::new(AtomicBool::new(false));
    let busy = keep_busy(kept.into_iter().map(|(c, _)| c).collect(), stop.clone());
    thread::sleep(Duration::from_millis(200));
    // A removed backend's connection: not tracked, sent to the new pick,
    // which resets it.
    let gone =
        |lab: &Lab, conn: &mut KeepAlive, from: SocketAddr, model: &MaglevModel, what: &str| {
            let answer: FlowExplanation =
                serde_json::from_str(&lbctl_ok(lab, &["flow", VIP, &from.to_string(), "--json"]))
                    .expect("flow JSON");
            assert_eq!(answer.decision, FlowDecision::Maglev, "{what}: {answer:?}");
            let pick = model.pick(from);
            let address = lab
                .backends
                .iter()
                .find(|b| b.name == pick)
                .expect("backend")
                .ipv4;
            assert_eq!(
                answer.backend.as_ref().map(|b| b.address),
                Some(IpAddr::V4(address)),
                "{what}: {answer:?}"
            );
            let next = conn.request();
            assert!(next.is_err(), "{what}'s connection answered: {next:?}");
        };

    lbctl_ok(&lab, &["backend", "remove", VIP, "198.18.0.14"]);
    let control = sources_moving_between(&lab, &four, &three, &["b4"], 1_500..1_700, 1);
    drop(open(&lab, control[0], &three));
    thread::sleep(Duration::from_millis(300));
    gone(&lab, &mut conn_b4, from_b4, &three, "b4 (removed)");
    assert_eq!(conn_b3.request().expect("b3's connection"), "b3");

    let config = lab.lbd_config_for(&["b1", "b2"], CHECKS);
    lab.write_lbd_config(&config).expect("write config");
    lbctl_ok(&lab, &["reload"]);
    let control = sources_moving_between(&lab, &three, &two, &["b3"], 1_700..1_900, 1);
    drop(open(&lab, control[0], &two));
    thread::sleep(Duration::from_millis(300));
    gone(&lab, &mut conn_b3, from_b3, &two, "b3 (reloaded away)");

    stop.store(true, Ordering::Relaxed);
    let seen = busy.join().expect("busy thread");
    for ((answers, errors), (from, backend)) in seen.iter().zip(sources.iter().zip(&first)) {
        assert!(
            errors.is_empty(),
            "the connection from {from} failed: {errors:?}"
        );
        assert!(
            answers.len() >= 5 && answers.iter().all(|a| a == backend),
            "the connection from {from} moved from {backend}: {answers:?}"
        );
    }
    let s = status(&lab);
    assert_eq!(
        s.vips[0]
            .backends
            .iter()
            .map(|b| b.address.to_string())
            .collect::<Vec<_>>(),
        ["198.18.0.11", "198.18.0.12"]
    );
}

#[test]
fn a_reload_applies_only_the_difference_and_a_bad_file_changes_nothing() {
    let mut lab = start(3, &["b1", "b2", "b3"]);
    let unchanged = lbctl_ok(&lab, &["reload"]);
    assert!(
        unchanged.contains("no VIP's new flows change"),
        "{unchanged}"
    );

    // b3 leaves the file, b1's weight doubles.
    let mut config = lab.lbd_config_for(&["b1", "b2"], CHECKS);
    config = config.replacen(
        "  address = \"198.18.0.11\"\n",
        "  address = \"198.18.0.11\"\n  weight = 200\n",
        1,
    );
    lab.write_lbd_config(&config).expect("write config");
    let dry = lbctl_ok(&lab, &["reload", "--dry-run", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&dry).expect("plan JSON");
    assert_eq!(plan["dry_run"], true);
    let b1_after = plan["plan"][0]["after"]["198.18.0.11"]
        .as_f64()
        .expect("b1 share");
    assert!((b1_after - 2.0 / 3.0).abs() < 0.01, "b1 planned {b1_after}");
    assert_eq!(
        backend(&status(&lab), "198.18.0.13").state,
        BackendState::Enabled,
        "dry run applied"
    );

    lab.signal("lbd", libc::SIGHUP).expect("SIGHUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&lab).vips[0].backends.len() != 2 {
        assert!(Instant::now() < deadline, "SIGHUP reload not applied");
        thread::sleep(Duration::from_millis(50));
    }
    let s = status(&lab);
    assert_eq!(backend(&s, "198.18.0.11").weight, 200);
    assert!((backend(&s, "198.18.0.11").share - 2.0 / 3.0).abs() < 0.01);

    // A broken file is refused with its line; nothing changes.
    let before = state_of(&status(&lab));
    lab.write_lbd_config(&config.replace("weight = 200", "weight = -1"))
        .expect("write config");
    let out = lab.lbctl(&["reload"]).expect("lbctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("lbd.toml:") && stderr.contains("weight"),
        "{stderr}"
    );
    assert_eq!(
        state_of(&status(&lab)),
        before,
        "a refused reload changed the state"
    );
}

/// A checked backend added at run time takes no new flows before its
/// checks pass: one whose server is not up yet refuses no client.
#[test]
fn a_checked_backend_added_at_run_time_takes_no_flows_before_its_checks_pass() {
    let mut lab = start(4, &["b1", "b2", "b3"]);
    lab.terminate("nginx-b4").expect("stop nginx in b4");
    let added = lbctl_ok(&lab, &["backend", "add", VIP, "198.18.0.14", "--json"]);
    let answer: serde_json::Value = serde_json::from_str(&added).expect("change JSON");
    assert!(
        answer["warnings"]
            .to_string()
            .contains("once its checks pass"),
        "{added}"
    );
    // At once, before any check of it has run.
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 400).expect("burst");
    println!("right after adding b4 (not serving): {tally:?}");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert_eq!(tally.by_backend.get("b4"), None);
}

/// A backend that arrives by reload, unchecked and with no `mac`, on a
/// node that has never spoken to it: the reload resolves its MAC (asks the
/// kernel, waits briefly) as an edit does, and it takes its share at once.
/// Before, nothing ever made the kernel resolve it: no traffic, no log.
#[test]
fn a_backend_added_by_reload_with_no_checks_resolves_its_mac_and_takes_traffic() {
    let mut lab = Lab::start(4).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let unchecked = "[vip.health]\ncheck = \"none\"\n";
    let config = lab.lbd_config_for(&["b1", "b2", "b3"], unchecked);
    lab.start_lbd(&config).expect("lbd");
    // The LB node has no neighbour entry for b4 (nothing checks it).
    ip(&["-n", &lab.lb.netns, "neigh", "flush", "to", "198.18.0.14"]);

    let config = lab.lbd_config_for(&["b1", "b2", "b3", "b4"], unchecked);
    lab.write_lbd_config(&config).expect("write config");
    lbctl_ok(&lab, &["reload"]);
    assert_eq!(status(&lab).vips[0].backends.len(), 4);
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 800).expect("burst");
    println!("after the reload: {tally:?}");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    let share = *tally.by_backend.get("b4").unwrap_or(&0) as f64 / 800.0;
    assert!(
        (0.15..=0.35).contains(&share),
        "b4 got {:.1}% of new connections after the reload",
        share * 100.0
    );
}

#[test]
fn lbctl_refuses_bad_input_clearly_and_changes_nothing() {
    let mut lab = start(1, &["b1"]);
    let before = state_of(&status(&lab));
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["backend", "weight", VIP, "198.18.0.11", "20000"],
            2,
            "out of range",
        ),
        (
            &["backend", "drain", "198.18.0.100:81/tcp", "198.18.0.11"],
            3,
            "no VIP",
        ),
        (&["backend", "drain", VIP, "198.18.0.99"], 3, "no backend"),
        (
            &["backend", "add", VIP, "198.18.0.11"],
            4,
            "already has backend",
        ),
        (
            &["backend", "add", VIP, "2001:2::11"],
            2,
            "lbctl: address: 2001:2::11 is IPv6 but the VIP 198.18.0.100 is IPv4",
        ),
        (
            &["backend", "add", VIP, "198.18.0.15,mac=zz:00:00:00:00:01"],
            2,
            "mac",
        ),
        (&["vip", "add", "198.18.0.100:80/tcp"], 4, "exists already"),
        (
            &["vip", "add", "198.18.0.101:80", "--table-size", "1000"],
            2,
            "not a prime",
        ),
        (
            &["backend", "drain", "198.18.0.100", "198.18.0.11"],
            2,
            "not a VIP",
        ),
        (
            &["backend", "weight", VIP, "not-an-ip", "5"],
            2,
            "invalid value",
        ),
        (&["frobnicate"], 2, "unrecognized subcommand"),
    ];
    for (args, code, message) in cases {
        let out = lab.lbctl(args).expect("lbctl");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "lbctl {args:?}: {stderr}");
        assert!(
            stderr.contains(message),
            "lbctl {args:?} said {stderr:?}, expected {message:?}"
        );
    }
    assert_eq!(
        state_of(&status(&lab)),
        before,
        "a refused command changed the state"
    );

    lab.terminate("lbd").expect("stop lbd");
    let out = lab.lbctl(&["status"]).expect("lbctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("not running"), "{stderr}");
}

/// The data plane's idle horizons, as lbd `pid` wrote them.
fn idle_horizons_of(pid: u32) -> u64 {
    let map = lb_tests::lbd_maps::open_map(pid, lb_common::consts::names::MAP_IDLE_HORIZONS)
        .expect("IDLE_HORIZONS");
    let array = aya::maps::Array::<_, u64>::try_from(aya::maps::Map::Array(map)).expect("an array");
    array.get(&0, 0).expect("its entry")
}

/// The word lbd writes for idle timeouts of `tcp_s` and `udp_s` seconds.
fn horizons_word(tcp_s: u64, udp_s: u64) -> u64 {
    use lb_common::flow_table::{horizon_ticks, idle_horizons_word};
    idle_horizons_word(
        horizon_ticks(tcp_s * 1_000_000_000),
        horizon_ticks(udp_s * 1_000_000_000),
    )
}

/// `tcp_idle_timeout_s` and `udp_idle_timeout_s` reach the data plane (a
/// SYN on an idle tuple, a UDP flow's next packet and eviction judge
/// flows by them) when lbd starts, and again when a reload changes them;
/// a refused file changes nothing.
#[test]
fn the_idle_timeouts_reach_the_data_plane_at_start_and_at_a_reload() {
    let mut lab = Lab::start(1).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let base = lab.lbd_config_for(&["b1"], "");
    let with = |tcp: u64, udp: u64| {
        base.replacen(
            "conntrack_size = 65536\n",
            &format!(
                "conntrack_size = 65536\ntcp_idle_timeout_s = {tcp}\nudp_idle_timeout_s = {udp}\n"
            ),
            1,
        )
    };
    let pid = lab.start_lbd(&with(600, 40)).expect("lbd");
    assert_eq!(idle_horizons_of(pid), horizons_word(600, 40), "at start");
    lab.write_lbd_config(&with(1200, 20)).expect("config");
    lbctl_ok(&lab, &["reload"]);
    assert_eq!(
        idle_horizons_of(pid),
        horizons_word(1200, 20),
        "after the reload"
    );
    lab.write_lbd_config(&with(1200, 20).replacen("[[vip]]", "[[vip]]\nbogus = 1", 1))
        .expect("config");
    assert!(!lab.lbctl(&["reload"]).expect("lbctl").status.success());
    assert_eq!(
        idle_horizons_of(pid),
        horizons_word(1200, 20),
        "a refused reload"
    );
}
