use super::super::probe::{FailureReason, Outcome};
use super::super::{
    probe::CheckKind,
    testing::{serve, Behavior, TestServer},
};
use super::*;
use super::{
    blame::{blame, discounted, SecondaryDown},
    local_failures::{LocalFailures, LocalLog},
    pacing::{next_wait, start_delay, Jitter},
};
use std::time::Instant;

/// Fast probes; a timeout long enough that a loaded machine does not
/// turn the test server's answers into timeouts (every probe here is
/// answered at once).
fn settings() -> CheckSettings {
    CheckSettings {
        interval: Duration::from_millis(50),
        fast_interval: Duration::from_millis(20),
        timeout: Duration::from_secs(2),
        rise: 2,
        fall: 2,
    }
}

fn target(server: &TestServer) -> ProbeTarget {
    ProbeTarget {
        tls: false,
        through: None,
        address: server.addr,
        kind: CheckKind::Http {
            path: "/health".into(),
            host: None,
            expect_status: 200,
            expect_body: None,
        },
    }
}

async fn next(rx: &mut mpsc::Receiver<HealthEvent<&'static str>>) -> HealthEvent<&'static str> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no health event within 5 s")
        .expect("event channel closed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_down_up_in_order() {
    let server = serve(Behavior::Status).await;
    let (tx, mut rx) = mpsc::channel(16);
    let mut checker = HealthChecker::new(tx);
    checker.set("b1", target(&server), settings(), Health::Unknown);

    let e = next(&mut rx).await;
    assert_eq!(e.key, "b1");
    assert_eq!(
        (e.transition.from, e.transition.to),
        (Health::Unknown, Health::Up)
    );
    assert_eq!(e.result.outcome, Outcome::Success);

    server.set_healthy(false);
    let e = next(&mut rx).await;
    assert_eq!(
        (e.transition.from, e.transition.to),
        (Health::Up, Health::Down)
    );
    assert_eq!(
        e.transition.reason,
        "2 consecutive failures, last: HTTP status 503, expected 200"
    );
    let status = checker.status(&"b1").unwrap();
    assert_eq!(status.health, Health::Down);
    assert!(status.failures >= 2, "{status:?}");
    assert_eq!(
        status.failures_by_reason.get("http_status"),
        Some(&status.failures)
    );
    assert!(status.last_latency().is_some());

    server.set_healthy(true);
    let e = next(&mut rx).await;
    assert_eq!(
        (e.transition.from, e.transition.to),
        (Health::Down, Health::Up)
    );

    let snapshot = checker.snapshot();
    assert_eq!(snapshot.len(), 1);
    let (key, status) = &snapshot[0];
    assert_eq!(*key, "b1");
    assert_eq!(status.health, Health::Up);
    assert!(status.checks >= 6, "{status:?}");
    assert!(status.consecutive_successes >= 2, "{status:?}");
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.target, target(&server));
}

/// A check through the tunnel while its path is not attached goes
/// down with the reason, unsent (the server would have passed it),
/// and comes back once the path is attached; a
/// direct check of the same server is not held back meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_through_an_unattached_path_fail_with_the_reason_until_it_is_attached() {
    let server = serve(Behavior::Status).await;
    let (tx, mut rx) = mpsc::channel(16);
    let mut checker = HealthChecker::new(tx);
    let through = ProbeTarget {
        tls: false,
        through: Some(crate::health::TunnelPath {
            mark: lb_common::tunnel::HC_MARK_BASE | 1,
            backend: server.addr.ip(),
            source: Some(server.addr.ip()),
        }),
        ..target(&server)
    };
    let reason = "tc_hc_encap not on the egress of eth0".to_owned();
    checker.set_unattached(HashMap::from([(server.addr.ip(), reason)]));
    checker.set("through", through, settings(), Health::Up);
    checker.set("direct", target(&server), settings(), Health::Unknown);

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = next(&mut rx).await;
        seen.push((e.key, e.transition.to, e.transition.reason));
    }
    seen.sort_by_key(|e| e.0);
    assert_eq!(seen[0].0, "direct");
    assert_eq!(seen[0].1, Health::Up);
    assert_eq!(
        seen[1],
        (
            "through",
            Health::Down,
            "2 consecutive failures, last: check path not attached: tc_hc_encap not on the egress of eth0".into()
        )
    );
    let status = checker.status(&"through").unwrap();
    assert_eq!(
        status.failures_by_reason.get("path_not_attached"),
        Some(&status.failures)
    );

    checker.set_unattached(HashMap::new());
    let e = next(&mut rx).await;
    assert_eq!((e.key, e.transition.to), ("through", Health::Up));
    assert_eq!(e.result.outcome, Outcome::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_stops_the_task() {
    let server = serve(Behavior::Status).await;
    let (tx, mut rx) = mpsc::channel(16);
    let mut checker = HealthChecker::new(tx);
    checker.set("b1", target(&server), settings(), Health::Unknown);
    assert_eq!(next(&mut rx).await.transition.to, Health::Up);

    let seen = server.connections();
    checker.remove(&"b1");
    server.set_healthy(false);
    assert!(checker.snapshot().is_empty());
    // A probe in flight when removed may still reach the server, however
    // late: one at most. A task still running probes every 50 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = server.connections();
    assert!(now <= seen + 1, "probes after remove: {seen} -> {now}");
    assert!(rx.try_recv().is_err(), "event after remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_a_replaced_task_is_stale_and_health_settles() {
    let server = serve(Behavior::Status).await;
    let (tx, mut rx) = mpsc::channel(16);
    let mut checker = HealthChecker::new(tx);
    checker.set("b1", target(&server), settings(), Health::Unknown);
    let old = next(&mut rx).await;
    assert_eq!(old.transition.to, Health::Up);
    assert!(checker.is_current(&old));
    assert_eq!(checker.settled(), [("b1", Health::Up)]);
    // New settings: a new task, in the state the old one settled on.
    let slower = CheckSettings {
        rise: 3,
        ..settings()
    };
    checker.set("b1", target(&server), slower, Health::Unknown);
    assert!(!checker.is_current(&old), "the old task's event is stale");
    assert_eq!(checker.settled(), [("b1", Health::Up)]);
    server.set_healthy(false);
    let new = next(&mut rx).await;
    assert_eq!(
        (new.transition.from, new.transition.to),
        (Health::Up, Health::Down)
    );
    assert!(checker.is_current(&new));
    checker.remove(&"b1");
    assert!(!checker.is_current(&new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_and_drop_stop_tasks() {
    let kept = serve(Behavior::Status).await;
    let dropped = serve(Behavior::Status).await;
    let (tx, mut rx) = mpsc::channel(16);
    let mut checker = HealthChecker::new(tx);
    checker.set("kept", target(&kept), settings(), Health::Unknown);
    checker.set("dropped", target(&dropped), settings(), Health::Unknown);
    next(&mut rx).await;
    next(&mut rx).await;

    let dropped_seen = dropped.connections();
    checker.retain(|k| *k == "kept");
    let keys: Vec<_> = checker.snapshot().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["kept"]);
    // A probe in flight when stopped may still arrive, however late:
    // one at most. A task still running probes every 50 ms.
    let kept_seen = kept.connections();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dropped_now = dropped.connections();
    assert!(
        dropped_now <= dropped_seen + 1,
        "probes after retain: {dropped_seen} -> {dropped_now}"
    );
    assert!(kept.connections() > kept_seen, "kept backend not probed");

    let kept_seen = kept.connections();
    drop(checker);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept_now = kept.connections();
    assert!(
        kept_now <= kept_seen + 1,
        "probes after drop: {kept_seen} -> {kept_now}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_settings_keep_state_new_settings_restart() {
    let server = serve(Behavior::Status).await;
    let (tx, mut rx) = mpsc::channel(16);
    let mut checker = HealthChecker::new(tx);
    checker.set("b1", target(&server), settings(), Health::Unknown);
    assert_eq!(next(&mut rx).await.transition.to, Health::Up);
    let before = checker.status(&"b1").unwrap();
    assert_eq!(before.health, Health::Up);

    // Same target and settings: nothing restarts (a restart would show
    // Unknown with no checks at once, then a second Unknown -> Up).
    checker.set("b1", target(&server), settings(), Health::Unknown);
    let after = checker.status(&"b1").unwrap();
    assert_eq!(after.health, Health::Up);
    assert!(after.checks >= before.checks, "{after:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.try_recv().is_err(), "unexpected event after no-op set");
    let later = checker.status(&"b1").unwrap();
    assert!(later.checks > before.checks, "{later:?}");

    // New settings: a fresh task, counters carried over, in the state
    // the old one settled on (not `initial`); a healthy backend stays Up.
    let changed = CheckSettings {
        interval: Duration::from_millis(60),
        ..settings()
    };
    checker.set("b1", target(&server), changed, Health::Unknown);
    let restarted = checker.status(&"b1").unwrap();
    assert_eq!(restarted.health, Health::Up);
    assert!(restarted.checks >= later.checks, "{restarted:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.try_recv().is_err(), "unexpected event after restart");
    assert!(checker.status(&"b1").unwrap().checks > restarted.checks);

    // A key whose check settled on nothing yet starts from `initial`.
    let silent = serve(Behavior::Silent).await;
    checker.set("b2", target(&silent), settings(), Health::Unknown);
    checker.set("b2", target(&silent), changed, Health::Down);
    assert_eq!(checker.status(&"b2").unwrap().health, Health::Down);
}

/// A reload that changes a backend's check settings restarts its
/// task, but its counters go on: `lbd_health_checks_total` and
/// `lbd_health_check_failures_total{reason}` keep their series, and a
/// counter that went down without a restart of lbd would read as a
/// reset (and the probes it counted as lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_check_carries_its_counters_over() {
    let server = serve(Behavior::Status).await;
    server.set_healthy(false);
    let (tx, mut rx) = mpsc::channel(16);
    let mut checker = HealthChecker::new(tx);
    checker.set("b1", target(&server), settings(), Health::Unknown);
    assert_eq!(next(&mut rx).await.transition.to, Health::Down);
    let deadline = Instant::now() + Duration::from_secs(5);
    while checker.status(&"b1").unwrap().checks < 3 {
        assert!(Instant::now() < deadline, "no 3 probes in 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = checker.status(&"b1").unwrap();
    assert_eq!(before.failures, before.checks, "{before:?}");
    let changed = CheckSettings {
        interval: Duration::from_millis(60),
        ..settings()
    };
    checker.set("b1", target(&server), changed, Health::Unknown);
    let restarted = checker.status(&"b1").unwrap();
    assert!(restarted.checks >= before.checks, "{restarted:?}");
    assert!(restarted.failures >= before.failures, "{restarted:?}");
    assert_eq!(
        restarted.failures_by_reason, before.failures_by_reason,
        "{restarted:?}"
    );
    // The new task counts on from there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = checker.status(&"b1").unwrap();
    assert!(later.checks > before.checks, "{later:?}");
    assert_eq!(later.failures, later.checks, "{later:?}");
}

/// A change of health whose event waits in the channel (the daemon
/// busy) survives a restart of the check with new settings, both ways:
/// the new task starts in the state the old one reached, not the
/// caller's stale `initial`, so the caller finds it in `settled`
/// although the event is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_a_change_whose_event_is_still_queued() {
    let fast = CheckSettings {
        rise: 1,
        fall: 1,
        ..settings()
    };
    let restarted = CheckSettings {
        interval: Duration::from_secs(60),
        ..fast
    };
    for (healthy, before, after) in [
        (false, Health::Up, Health::Down),
        (true, Health::Down, Health::Up),
    ] {
        let server = serve(Behavior::Status).await;
        server.set_healthy(healthy);
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx);
        checker.set("b1", target(&server), fast, before);
        let started = Instant::now();
        while checker.status(&"b1").map(|s| s.health) != Some(after) {
            assert!(started.elapsed() < Duration::from_secs(5), "never {after}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The caller has not read the event: it restarts the check
        // from the health it knows.
        checker.set("b1", target(&server), restarted, before);
        assert_eq!(checker.status(&"b1").unwrap().health, after);
        assert_eq!(checker.settled(), [("b1", after)]);
        let queued = rx.try_recv().expect("the change is queued");
        assert_eq!(
            (queued.transition.from, queued.transition.to),
            (before, after)
        );
        assert!(!checker.is_current(&queued));
    }
}

/// A backend that joins with a long `interval` is not kept waiting a
/// quarter of it for its first probe: while its health is unknown the
/// machine checks it `fast_interval` apart, and so does the first
/// probe's spread (a backend added at run time takes no flows until
/// its checks pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_backend_is_first_probed_within_fast_interval() {
    let slow = CheckSettings {
        interval: Duration::from_secs(60),
        rise: 1,
        ..settings()
    };
    // A key that a spread over the whole interval would hold back for
    // seconds.
    let key = ["b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10"]
        .into_iter()
        .find(|k| start_delay(k, slow.interval) >= Duration::from_secs(5))
        .expect("a key with a long spread");
    let server = serve(Behavior::Status).await;
    let (tx, mut rx) = mpsc::channel(16);
    let mut checker = HealthChecker::new(tx);
    checker.set(key, target(&server), slow, Health::Unknown);
    let e = tokio::time::timeout(Duration::from_secs(1), rx.recv())
        .await
        .expect("no health event within 1 s")
        .expect("event channel closed");
    assert_eq!(
        (e.key, e.transition.from, e.transition.to),
        (key, Health::Unknown, Health::Up)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_receiver_stops_tasks() {
    let server = serve(Behavior::Status).await;
    let (tx, rx) = mpsc::channel(16);
    drop(rx);
    let mut checker = HealthChecker::new(tx);
    checker.set("b1", target(&server), settings(), Health::Unknown);
    // Up after `rise` probes; the event cannot be sent, so it stops:
    // two probes (waited for: a loaded machine is slow), and no more.
    let started = Instant::now();
    while server.connections() < 2 {
        assert!(started.elapsed() < Duration::from_secs(5), "no 2 probes");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.connections(), 2);
}

/// A check that cannot run locally warns at once, then at most once a
/// minute (counting the failures in between), and says when checks
/// run again; a later run of failures warns at once again.
#[test]
fn local_failures_warn_at_once_then_once_a_minute() {
    let start = Instant::now();
    let at = |s: u64| start + Duration::from_secs(s);
    let mut local = LocalFailures::default();
    assert_eq!(local.on_result(false, at(0)), LocalLog::Quiet);
    assert_eq!(local.on_result(true, at(1)), LocalLog::Warn { repeated: 1 });
    for s in 2..61 {
        assert_eq!(local.on_result(true, at(s)), LocalLog::Quiet, "{s}");
    }
    assert_eq!(
        local.on_result(true, at(61)),
        LocalLog::Warn { repeated: 60 }
    );
    assert_eq!(local.on_result(true, at(62)), LocalLog::Quiet);
    assert_eq!(
        local.on_result(false, at(70)),
        LocalLog::Recovered {
            after: Duration::from_secs(69)
        }
    );
    assert_eq!(local.on_result(false, at(71)), LocalLog::Quiet);
    assert_eq!(
        local.on_result(true, at(72)),
        LocalLog::Warn { repeated: 1 }
    );
}

/// The first probes of many backends are spread over the whole
/// interval, not bunched into a part of it.
#[test]
fn start_delay_is_deterministic_and_spread_over_the_interval() {
    let interval = Duration::from_secs(2);
    let delays: Vec<Duration> = (0..1000u32).map(|k| start_delay(&k, interval)).collect();
    for (key, d) in (0..1000u32).zip(&delays) {
        assert!(*d < interval, "{d:?}");
        assert_eq!(*d, start_delay(&key, interval));
    }
    let spread: std::collections::HashSet<_> = delays.iter().collect();
    assert!(spread.len() > 990);
    // Each quarter of the interval has its share.
    for quarter in 0..4u32 {
        let (from, to) = (interval * quarter / 4, interval * (quarter + 1) / 4);
        let n = delays.iter().filter(|d| (from..to).contains(*d)).count();
        assert!(n > 150, "{n} first probes in quarter {quarter}");
    }
    assert_eq!(start_delay(&1u32, Duration::ZERO), Duration::ZERO);
}

/// Each wait between checks is moved by up to 10 % either way, by
/// a seeded source: the same seed gives the same waits.
#[test]
fn waits_between_checks_are_jittered_by_ten_percent() {
    let mut machine = HealthMachine::new(
        CheckSettings {
            interval: Duration::from_secs(2),
            ..settings()
        },
        Health::Up,
    );
    assert_eq!(machine.next_check_in(), Duration::from_secs(2));
    let waits = |seed: u64, machine: &HealthMachine| {
        let mut jitter = Jitter::new(seed);
        (0..1000)
            .map(|_| next_wait(machine, &mut jitter))
            .collect::<Vec<_>>()
    };
    let got = waits(7, &machine);
    assert_eq!(got, waits(7, &machine), "not deterministic");
    assert_ne!(got, waits(8, &machine), "the seed changes nothing");
    let (low, high) = (Duration::from_millis(1800), Duration::from_millis(2200));
    assert!(got.iter().all(|w| (low..=high).contains(w)), "{got:?}");
    // Spread over the whole range, both ways.
    assert!(got.iter().any(|w| *w < Duration::from_millis(1820)));
    assert!(got.iter().any(|w| *w > Duration::from_millis(2180)));
    // The fast interval while in doubt is jittered the same way.
    machine.record(
        &ProbeResult {
            outcome: Outcome::Failure(FailureReason::Refused),
            latency: Duration::ZERO,
        },
        Instant::now(),
    );
    let fast = waits(7, &machine);
    assert!(fast
        .iter()
        .all(|w| (Duration::from_millis(18)..=Duration::from_millis(22)).contains(w)));
    assert!(fast.iter().any(|w| *w != Duration::from_millis(20)));
}

/// The interface a failed check's route leaves by, as a test says
/// (None: no route), with the addresses and marks asked about.
#[derive(Default)]
struct Routes {
    egress: Mutex<Option<crate::netlink::Egress>>,
    asked: Mutex<Vec<(std::net::IpAddr, u32)>>,
}

impl Routes {
    fn leave_by(&self, name: &str, up: bool) {
        *self.egress.lock().unwrap() = Some(crate::netlink::Egress {
            name: name.into(),
            up,
        });
    }

    fn lookup(self: &Arc<Self>) -> EgressLookup {
        let routes = self.clone();
        Arc::new(move |destination, mark| {
            routes.asked.lock().unwrap().push((destination, mark));
            let egress = routes.egress.lock().unwrap().clone();
            Box::pin(async move { Ok(egress) })
        })
    }
}

/// Waits for `n` checks of `key`.
async fn checks(checker: &HealthChecker<&'static str>, key: &'static str, n: u64) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while checker.status(&key).map_or(0, |s| s.checks) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("checks within 5 s");
}

/// lbd's own interface (eth0) is down, but the backend's route leaves
/// by eth1, which is up: its failures are its own and take it down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_over_another_interface_count_while_lbds_own_is_down() {
    let server = serve(Behavior::Status).await;
    server.set_healthy(false);
    let routes = Arc::new(Routes::default());
    routes.leave_by("eth1", true);
    let (tx, mut rx) = mpsc::channel(16);
    let mut checker = HealthChecker::new(tx)
        .with_jitter_seed(1)
        .with_egress(routes.lookup());
    checker.set_link(Link::Down {
        interface: "eth0".into(),
    });
    checker.set("b1", target(&server), settings(), Health::Up);
    let e = next(&mut rx).await;
    assert_eq!(
        (e.transition.from, e.transition.to),
        (Health::Up, Health::Down)
    );
    assert_eq!(
        e.transition.reason,
        "2 consecutive failures, last: HTTP status 503, expected 200"
    );
    assert_eq!(routes.asked.lock().unwrap()[0], (server.addr.ip(), 0));
}

/// lbd's own interface is up, but the backend's route leaves by eth1,
/// which is down: the failures are this node's and move no streak
/// (within the grace, `fall` × `interval`, 5 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_over_another_interface_that_is_down_move_no_streak() {
    let server = serve(Behavior::Status).await;
    server.set_healthy(false);
    let routes = Arc::new(Routes::default());
    routes.leave_by("eth1", false);
    let (tx, mut rx) = mpsc::channel(16);
    let mut checker = HealthChecker::new(tx)
        .with_jitter_seed(1)
        .with_egress(routes.lookup());
    checker.set_link(Link::Up {
        interface: "lo".into(),
    });
    let patient = CheckSettings {
        fall: 100,
        ..settings()
    };
    checker.set("b1", target(&server), patient, Health::Up);
    checks(&checker, "b1", 6).await;
    assert!(rx.try_recv().is_err(), "a health change while eth1 is down");
    let status = checker.status(&"b1").unwrap();
    assert_eq!(status.health, Health::Up);
    assert_eq!(
        status.last_result.unwrap().outcome.to_string(),
        "not counted, interface eth1 is down: HTTP status 503, expected 200"
    );
}

/// eth1, behind which the backend is, stays without carrier: its
/// failures are not counted for a grace (`fall` × `interval`, 100 ms
/// here), then they are, and the backend goes down: a link that does
/// not come back must not keep it up (its new flows black-holed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_over_another_interface_without_carrier_count_after_a_grace() {
    let server = serve(Behavior::Status).await;
    server.set_healthy(false);
    let routes = Arc::new(Routes::default());
    routes.leave_by("eth1", false);
    let (tx, mut rx) = mpsc::channel(16);
    let mut checker = HealthChecker::new(tx)
        .with_jitter_seed(1)
        .with_egress(routes.lookup());
    checker.set_link(Link::Up {
        interface: "lo".into(),
    });
    checker.set("b1", target(&server), settings(), Health::Up);
    let e = next(&mut rx).await;
    assert_eq!(
        (e.transition.from, e.transition.to),
        (Health::Up, Health::Down)
    );
    let status = checker.status(&"b1").unwrap();
    assert!(
        status.failures_by_reason.contains_key("interface_down"),
        "discounted within the grace: {status:?}"
    );
}

/// A route lookup that never answers (a netlink reply lost) does not
/// stall the check: it is given up after the check's timeout (at most
/// 1 s), the failure counts, and the backend goes down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_lookup_that_never_answers_does_not_stall_the_check() {
    let server = serve(Behavior::Status).await;
    server.set_healthy(false);
    let never: EgressLookup = Arc::new(|_, _| Box::pin(std::future::pending()));
    let (tx, mut rx) = mpsc::channel(16);
    let mut checker = HealthChecker::new(tx)
        .with_jitter_seed(1)
        .with_egress(never);
    checker.set("b1", target(&server), settings(), Health::Up);
    let e = next(&mut rx).await;
    assert_eq!(
        (e.transition.from, e.transition.to),
        (Health::Up, Health::Down)
    );
}

/// Within the grace a failure over another interface without carrier
/// is discounted and warned of once; after it, it counts; lbd's own
/// interface is discounted for as long as it is down; an interface
/// that works again starts the next grace afresh.
#[test]
fn another_interface_without_carrier_is_discounted_for_a_grace_and_warned_of_once() {
    let start = Instant::now();
    let at = |ms: u64| start + Duration::from_millis(ms);
    let grace = Duration::from_millis(100);
    let eth1 = || Some("eth1".to_owned());
    let mut down = SecondaryDown::default();
    assert_eq!(
        down.bounded(eth1(), Some("eth0"), at(0), grace),
        (eth1(), true)
    );
    assert_eq!(
        down.bounded(eth1(), Some("eth0"), at(99), grace),
        (eth1(), false)
    );
    assert_eq!(
        down.bounded(eth1(), Some("eth0"), at(100), grace),
        (None, false)
    );
    assert_eq!(
        down.bounded(eth1(), Some("eth0"), at(5000), grace),
        (None, false)
    );
    // lbd's own: no bound, nothing to warn of (the engine does).
    let eth0 = || Some("eth0".to_owned());
    assert_eq!(
        down.bounded(eth0(), Some("eth0"), at(9000), grace),
        (eth0(), false)
    );
    // eth1 works again (a failure not blamed on it, or a success).
    assert_eq!(
        down.bounded(None, Some("eth0"), at(9100), grace),
        (None, false)
    );
    assert_eq!(
        down.bounded(eth1(), Some("eth0"), at(9200), grace),
        (eth1(), true)
    );
}

#[test]
fn the_interface_blamed_is_the_one_the_route_leaves_by() {
    let by = |name: &str, up: bool| -> anyhow::Result<Option<crate::netlink::Egress>> {
        Ok(Some(crate::netlink::Egress {
            name: name.into(),
            up,
        }))
    };
    let eth0 = || Some("eth0".to_owned());
    assert_eq!(blame(&by("eth1", false), None), Some("eth1".into()));
    assert_eq!(blame(&by("eth1", true), eth0()), None);
    assert_eq!(blame(&by("eth1", true), None), None);
    // lbd's link came back while the check waited.
    assert_eq!(blame(&by("eth0", true), eth0()), eth0());
    // Its routes went with lbd's link, taken down.
    assert_eq!(blame(&Ok(None), eth0()), eth0());
    assert_eq!(blame(&Ok(None), None), None);
    // The kernel could not be asked: the failure counts.
    assert_eq!(blame(&Err(anyhow::anyhow!("no socket")), eth0()), None);
}

/// While the interface checks leave by is down, failed checks count
/// against no backend: a healthy-looking backend that fails them all
/// stays up; once the link is back, its failures count again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_while_the_interface_is_down_move_no_streak() {
    let server = serve(Behavior::Status).await;
    server.set_healthy(false);
    let routes = Arc::new(Routes::default());
    routes.leave_by("eth0", false);
    let (tx, mut rx) = mpsc::channel(16);
    let mut checker = HealthChecker::new(tx)
        .with_jitter_seed(1)
        .with_egress(routes.lookup());
    checker.set_link(Link::Down {
        interface: "eth0".into(),
    });
    checker.set("b1", target(&server), settings(), Health::Up);
    let started = Instant::now();
    while checker.status(&"b1").map_or(0, |s| s.checks) < 6 {
        assert!(started.elapsed() < Duration::from_secs(5), "no 6 checks");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        rx.try_recv().is_err(),
        "a health change while the link is down"
    );
    let status = checker.status(&"b1").unwrap();
    assert_eq!(status.health, Health::Up);
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(
        status.failures_by_reason.get("interface_down"),
        Some(&status.failures),
        "{status:?}"
    );
    assert_eq!(
        status.last_result.unwrap().outcome.to_string(),
        "not counted, interface eth0 is down: HTTP status 503, expected 200"
    );

    routes.leave_by("eth0", true);
    checker.set_link(Link::Up {
        interface: "eth0".into(),
    });
    let e = next(&mut rx).await;
    assert_eq!(
        (e.transition.from, e.transition.to),
        (Health::Up, Health::Down)
    );
    assert_eq!(
        e.transition.reason,
        "2 consecutive failures, last: HTTP status 503, expected 200"
    );
}

#[test]
fn a_success_or_a_local_failure_is_not_discounted() {
    let ok = ProbeResult {
        outcome: Outcome::Success,
        latency: Duration::ZERO,
    };
    assert_eq!(discounted(ok.clone(), Some("eth0".into())), ok);
    let local = ProbeResult {
        outcome: Outcome::Failure(FailureReason::Local("no port".into())),
        latency: Duration::ZERO,
    };
    assert_eq!(discounted(local.clone(), Some("eth0".into())), local);
    let refused = ProbeResult {
        outcome: Outcome::Failure(FailureReason::Refused),
        latency: Duration::ZERO,
    };
    assert_eq!(discounted(refused.clone(), None), refused);
}

#[test]
fn set_outside_a_runtime_does_not_panic() {
    let (tx, _rx) = mpsc::channel::<HealthEvent<u32>>(1);
    let mut checker = HealthChecker::new(tx);
    let target = ProbeTarget {
        tls: false,
        through: None,
        address: "127.0.0.1:1".parse().unwrap(),
        kind: CheckKind::Tcp,
    };
    checker.set(1, target, settings(), Health::Unknown);
    assert!(checker.snapshot().is_empty());
}

/// A body without the `expect_body` text takes a backend down and is
/// counted under `http_body`, the label metrics and `lbctl status` show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_the_text_goes_down_counted_as_body() {
    let server = serve(Behavior::Status).await;
    let (tx, mut rx) = mpsc::channel(16);
    let mut checker = HealthChecker::new(tx);
    let mut lacking = target(&server);
    if let CheckKind::Http { expect_body, .. } = &mut lacking.kind {
        // The server answers 200 with "ok".
        *expect_body = Some("READY".into());
    }
    checker.set("b1", lacking, settings(), Health::Unknown);
    let e = next(&mut rx).await;
    assert_eq!(
        (e.transition.from, e.transition.to),
        (Health::Unknown, Health::Down)
    );
    assert_eq!(
        e.transition.reason,
        "2 consecutive failures, last: HTTP body lacks \"READY\" (first 16 KiB read)"
    );
    let status = checker.status(&"b1").unwrap();
    assert_eq!(
        status.failures_by_reason.get("http_body"),
        Some(&status.failures)
    );
}
