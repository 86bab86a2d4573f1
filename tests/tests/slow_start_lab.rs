//! Slow start (`slow_start_s`) with real nginx backends: a backend back up
//! after failing its checks takes new connections in steps, not its whole
//! share at once. Nothing ramps at lbd's start. While it ramps, its share
//! of the Maglev table (the status) starts far below its full share and
//! grows step by step, the others' weights scaled to make room for it;
//! `lbctl status` and the metrics say so; a burst of new connections from
//! several client addresses reaches it far less than one after the ramp.
//! Downloads in flight on the other backends, from flows whose table slot
//! goes to the returning backend during the ramp, stay where they are to
//! their end. When the ramp is over the shares are those from before the
//! failure, lbd logs it and the metric reads 1. Out of maintenance, a
//! backend ramps too.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    http::{Burst, LongStream},
    lab::{Lab, HTTP_PORT, VIP4},
    shares::{add_client_addresses, backend_named, burst_over, fraction, metric_value, scrape},
    support::{
        lbctl_ok, sources_moving_between, vip_status, wait_every_backend_up, wait_until,
        MaglevModel,
    },
};
use lb_userspace::api::schema::{BackendState, HealthStatus, SlowStartStatus, Status};

/// The VIP's ramp, seconds (ten steps of one second).
const SLOW_START_S: u64 = 10;
/// Fast HTTP checks of nginx's `/health`.
const CHECKS: &str = "[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 2\nfall = 2\n";
/// Client addresses the bursts come from, at once.
const CLIENTS: u8 = 8;
/// New connections from each client address in a burst.
const PER_CLIENT: u32 = 50;
/// Downloads held across the return and the whole ramp.
const DOWNLOADS: usize = 4;
/// The backend that fails and returns.
const RETURNING: &str = "b3";

/// The share of the table a backend at `percent` of its weight has beside
/// two at their full weight (all three configured alike): `p / (2 + p)`.
fn ramp_share(percent: u32) -> f64 {
    let p = f64::from(percent) / 100.0;
    p / (2.0 + p)
}

/// The returning backend's address.
fn returning_address(lab: &Lab) -> String {
    lab.backends
        .iter()
        .find(|b| b.name == RETURNING)
        .map(|b| b.ipv4.to_string())
        .expect("the returning backend")
}

/// The returning backend's share of the table, ramp and health in
/// `status`.
fn returning(lab: &Lab, status: &Status) -> (f64, Option<SlowStartStatus>, HealthStatus) {
    let b = backend_named(lab, status, RETURNING);
    (b.share, b.slow_start, b.health)
}

/// `lbctl status`'s text: the VIP's line and the returning backend's.
fn status_lines(lab: &Lab) -> (String, String) {
    let text = lbctl_ok(lab, &["status"]);
    let address = returning_address(lab);
    let vip = text
        .lines()
        .find(|l| l.starts_with(&format!("VIP {VIP4}:")))
        .unwrap_or_else(|| panic!("no line of VIP {VIP4} in:\n{text}"));
    let backend = text
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == address))
        .unwrap_or_else(|| panic!("no line of {address} in:\n{text}"));
    (vip.to_owned(), backend.to_owned())
}

/// The returning backend's `lbd_backend_slow_start_ratios`.
fn ramp_metric(lab: &Lab) -> f64 {
    let vip = format!("{VIP4}:{HTTP_PORT}/tcp");
    let backend = returning_address(lab);
    metric_value(
        &scrape(lab),
        "lbd_backend_slow_start_ratios",
        &[("vip", &vip), ("backend", &backend)],
    )
}

/// A burst from every client address, each request answered.
fn burst(lab: &Lab, clients: &[std::net::Ipv4Addr]) -> Burst {
    let burst = burst_over(lab, clients, PER_CLIENT);
    assert_eq!(burst.failed, 0, "requests failed: {:?}", burst.errors);
    burst
}

#[test]
fn a_backend_back_up_ramps_to_its_share_and_no_download_moves() {
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let clients = add_client_addresses(&lab, CLIENTS);
    let config = lab.lbd_config_for(
        &["b1", "b2", "b3"],
        &format!("slow_start_s = {SLOW_START_S}\n{CHECKS}"),
    );
    lab.start_lbd(&config).expect("lbd");
    let vip = IpAddr::V4(VIP4);
    wait_every_backend_up(&lab, vip);

    // Nothing ramps at lbd's start; the VIP says it has slow start.
    let status = lab.status().expect("status");
    let v = vip_status(&status, vip);
    assert_eq!(v.slow_start_s, Some(SLOW_START_S), "{v:?}");
    assert!(
        v.backends.iter().all(|b| b.slow_start.is_none()),
        "a ramp at lbd's start: {:?}",
        v.backends
    );
    let (full, _, _) = returning(&lab, &status);
    assert!((0.30..=0.37).contains(&full), "three backends: {full}");
    let (vip_line, _) = status_lines(&lab);
    assert!(
        vip_line.contains(&format!("  slow start {SLOW_START_S}s  ")),
        "{vip_line}"
    );

    // The returning backend fails its checks.
    lab.terminate(&format!("nginx-{RETURNING}"))
        .expect("stop nginx");
    wait_until(
        "the returning backend down",
        Duration::from_secs(10),
        || {
            let status = lab.status().expect("status");
            let (share, _, health) = returning(&lab, &status);
            health == HealthStatus::Down && share == 0.0
        },
    );

    // Downloads on the two others, from flows that the returning backend
    // takes once its weight is back (their slot goes to it during the
    // ramp): only the connection table keeps them where they are.
    let without = MaglevModel::new(&lab, &[("b1", 100), ("b2", 100)]);
    let with = MaglevModel::new(&lab, &[("b1", 100), ("b2", 100), ("b3", 100)]);
    let sources = sources_moving_between(
        &lab,
        &without,
        &with,
        &["b1", "b2"],
        20_000..30_000,
        DOWNLOADS,
    );
    let over = Arc::new(AtomicBool::new(false));
    let downloads: Vec<(SocketAddr, LongStream)> = sources
        .iter()
        .map(|from| {
            let stream = LongStream::open(&lab.client.netns, vip, Some(*from), &over, "ramp's end");
            assert_eq!(
                stream.first.backend,
                without.pick(*from),
                "lbd's choice for {from} differs from the model's"
            );
            (*from, stream)
        })
        .collect();

    // It passes its checks again: it ramps, from far below its share.
    lab.restart_nginx(RETURNING).expect("nginx again");
    wait_until("the returning backend up", Duration::from_secs(10), || {
        let status = lab.status().expect("status");
        returning(&lab, &status).2 == HealthStatus::Up
    });
    let back = Instant::now();
    let status = lab.status().expect("status");
    let (share, ramp, _) = returning(&lab, &status);
    let ramp = ramp.unwrap_or_else(|| panic!("no ramp once back up: {status:?}"));
    assert!(
        ramp.percent < 100 && ramp.left_s <= SLOW_START_S,
        "{ramp:?}"
    );
    assert!(
        share < full / 2.0,
        "back up at {ramp:?} with {share} of the table, full {full}"
    );
    assert!(
        vip_status(&status, vip)
            .backends
            .iter()
            .filter(|b| b.slow_start.is_some())
            .count()
            == 1,
        "only the returning backend ramps: {status:?}"
    );
    let (vip_line, backend_line) = status_lines(&lab);
    assert!(
        vip_line.contains(&format!("  slow start {SLOW_START_S}s  ")),
        "{vip_line}"
    );
    let percent: u32 = backend_line
        .split_once("enabled slow start ")
        .and_then(|(_, rest)| rest.split_once('%'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no slow start in the state column: {backend_line}"));
    assert!(percent < 100, "{backend_line}");
    let metric = ramp_metric(&lab);
    assert!(metric > 0.0 && metric < 1.0, "ramp metric {metric}");

    // New connections: far fewer on it than its share.
    let early = burst(&lab, &clients);
    let early_fraction = fraction(&early, RETURNING);
    let after_early = returning(&lab, &lab.status().expect("status"));

    // Its share grows step by step to the end of the ramp, the others'
    // weights scaled so that each step is its part of the weight.
    let mut samples: Vec<(u32, f64)> = Vec::new();
    let end = loop {
        let status = lab.status().expect("status");
        let (share, ramp, health) = returning(&lab, &status);
        assert_eq!(health, HealthStatus::Up);
        let Some(ramp) = ramp else {
            break back.elapsed();
        };
        assert!(
            (share - ramp_share(ramp.percent)).abs() < 0.03,
            "{share} of the table at {ramp:?} (expected {:.3})",
            ramp_share(ramp.percent)
        );
        samples.push((ramp.percent, share));
        assert!(
            back.elapsed() < Duration::from_secs(SLOW_START_S + 5),
            "still ramping {:?} after the return: {samples:?}",
            back.elapsed()
        );
        thread::sleep(Duration::from_millis(300));
    };
    assert!(
        samples
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1),
        "the ramp went back: {samples:?}"
    );
    let mut steps: Vec<u32> = samples.iter().map(|(p, _)| *p).collect();
    steps.dedup();
    assert!(steps.len() >= 4, "steps seen: {samples:?}");
    assert!(
        end >= Duration::from_secs(SLOW_START_S - 2),
        "the ramp ended {end:?} after the return: {samples:?}"
    );
    over.store(true, Ordering::SeqCst);
    eprintln!(
        "ramp over {end:?} after the return; (percent, share) seen: {samples:?}; \
         early burst {early:?}, the ramp at {:?} after it",
        after_early.1
    );

    // The ramp is over: the share from before, the status, the log and
    // the metric say so, and new connections reach it as the others.
    let status = lab.status().expect("status");
    let (share, ramp, _) = returning(&lab, &status);
    assert_eq!(ramp, None);
    assert!(
        (share - full).abs() < 1e-9,
        "share {share} after the ramp, {full} before the failure"
    );
    let (vip_line, backend_line) = status_lines(&lab);
    assert!(!backend_line.contains("slow start"), "{backend_line}");
    assert!(
        vip_line.contains(&format!("  slow start {SLOW_START_S}s  ")),
        "{vip_line}"
    );
    let address = returning_address(&lab);
    let log = lab.log("lbd");
    assert!(
        log.lines().any(
            |l| l.contains("slow start over: the backend takes its full weight")
                && l.contains(&address)
        ),
        "no end of the ramp in lbd's log:\n{log}"
    );
    assert_eq!(ramp_metric(&lab), 1.0);
    let late = burst(&lab, &clients);
    let late_fraction = fraction(&late, RETURNING);
    eprintln!(
        "late burst {late:?}: {RETURNING} took {early_fraction:.3} early, {late_fraction:.3} late"
    );
    assert!(
        (0.22..=0.45).contains(&late_fraction),
        "after the ramp: {late:?}"
    );
    assert!(
        early_fraction < 0.2 && early_fraction + 0.1 < late_fraction,
        "{RETURNING} took {early_fraction:.3} of an early burst ({early:?}; the ramp at {:?} \
         after it), {late_fraction:.3} of one after the ramp ({late:?})",
        after_early.1
    );

    // Every download ran through the return and the whole ramp on its
    // backend, to its end.
    let mut cut = Vec::new();
    for (from, stream) in downloads {
        match stream.handle.join() {
            Ok(Ok((bodies, _))) if bodies >= 2 => {}
            Ok(Ok((bodies, _))) => cut.push(format!("{from}: {bodies} bodies only")),
            Ok(Err(e)) => cut.push(format!("{from} on {}: {e}", stream.first.backend)),
            Err(_) => cut.push(format!("{from}: the reader panicked")),
        }
    }
    assert!(cut.is_empty(), "downloads cut: {cut:?}");

    // Out of maintenance, it ramps again.
    let vip_arg = format!("{VIP4}:{HTTP_PORT}");
    lbctl_ok(&lab, &["backend", "maintenance", &vip_arg, &address]);
    wait_until(
        "the returning backend in maintenance",
        Duration::from_secs(10),
        || {
            let status = lab.status().expect("status");
            let b = backend_named(&lab, &status, RETURNING);
            b.state == BackendState::Maintenance && b.share == 0.0
        },
    );
    lbctl_ok(
        &lab,
        &["backend", "maintenance", "--off", &vip_arg, &address],
    );
    let status = lab.status().expect("status");
    let (share, ramp, _) = returning(&lab, &status);
    let ramp = ramp.unwrap_or_else(|| panic!("no ramp out of maintenance: {status:?}"));
    assert!(ramp.percent < 100, "{ramp:?}");
    assert!(
        share < full / 2.0,
        "out of maintenance at {ramp:?}: {share}"
    );
}
