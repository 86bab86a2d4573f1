//! A VIP that fails open (`on_all_down = "keep"`: every backend failing
//! its checks, so all take flows) and then stops, as one backend passes
//! its checks again: the established connections of the backends still
//! failing theirs finish (held as drained: no new flows), none is reset.
//! The usual reason to fail open is a check that fails while the service
//! works, as here (the check's port is closed, the web server serves).

use std::{
    net::{IpAddr, SocketAddr, TcpListener},
    time::Duration,
};

use lb_tests::{
    http::{cut_streams, open_stream},
    lab::{http_get, in_netns, Lab, HTTP_PORT, VIP4},
    support::{vip_status, wait_until},
};
use lb_userspace::api::schema::HealthStatus;

/// The port the VIP's TCP check connects to: closed on every backend
/// until the test opens it on b1.
const CHECK_PORT: u16 = 9099;

#[test]
fn a_keep_vip_that_stops_failing_open_cuts_no_established_connection() {
    let mut lab = Lab::start(2).expect("lab");
    let checks = format!(
        "on_all_down = \"keep\"\n[vip.health]\ncheck = \"tcp\"\nport = {CHECK_PORT}\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 2\nfall = 2\n"
    );
    let config = lab.lbd_config_for(&["b1", "b2"], &checks);
    lab.start_lbd(&config).expect("lbd");
    let vip = IpAddr::V4(VIP4);
    wait_until(
        "both backends down and the VIP failing open",
        Duration::from_secs(20),
        || {
            let status = lab.status().expect("status");
            let v = vip_status(&status, vip);
            v.all_down
                && v.backends
                    .iter()
                    .all(|b| b.health == HealthStatus::Down && b.alive)
        },
    );

    // Long-lived connections (six seconds each) on both backends.
    let netns = lab.client.netns.clone();
    let mut streams = Vec::new();
    while streams.len() < 32 && !(streams.len() >= 8 && on(&streams, "b2") >= 2) {
        streams.push(open_stream(&netns, vip));
    }
    let on_b2 = on(&streams, "b2");
    assert!(
        on_b2 >= 2,
        "only {on_b2} of {} streams on b2",
        streams.len()
    );

    // b1's check passes: the VIP stops failing open, b2 still fails.
    let b1 = lab.backends[0].clone();
    let address = SocketAddr::new(IpAddr::V4(b1.ipv4), CHECK_PORT);
    let _listener = in_netns(&b1.netns, move || TcpListener::bind(address))
        .expect("b1's namespace")
        .expect("listening on b1's check port");
    wait_until(
        "b1 up and the VIP no longer failing open",
        Duration::from_secs(10),
        || {
            let status = lab.status().expect("status");
            let v = vip_status(&status, vip);
            !v.all_down
                && v.backends
                    .iter()
                    .any(|b| b.address == IpAddr::V4(b1.ipv4) && b.health == HealthStatus::Up)
        },
    );
    let status = lab.status().expect("status");
    let b2 = vip_status(&status, vip)
        .backends
        .iter()
        .find(|b| b.address != IpAddr::V4(b1.ipv4))
        .cloned()
        .expect("b2");
    assert_eq!(b2.health, HealthStatus::Down, "{b2:?}");
    assert!(b2.alive && b2.share == 0.0, "held as drained: {b2:?}");
    // Status says why a down backend still carries flows, and until when
    // (no drain_timeout_s: the five-minute grace).
    assert!(
        b2.held_s.is_some_and(|left| (1..=300).contains(&left)),
        "held, with its grace left: {b2:?}"
    );

    let total = streams.len();
    let cut = cut_streams(streams);
    assert!(
        cut.is_empty(),
        "{} of {total} connections ({on_b2} on b2) cut when the VIP stopped failing open: {cut:?}",
        cut.len()
    );
    // New connections go to b1 alone.
    for _ in 0..10 {
        let (code, body) =
            http_get(&netns, &format!("http://{VIP4}:{HTTP_PORT}/")).expect("a new request");
        assert_eq!((code, body.trim()), (200, "b1"));
    }
    println!("{total} connections ({on_b2} on b2) kept when the VIP stopped failing open");
}

/// How many of `streams` `backend` serves.
fn on(streams: &[lb_tests::http::Stream], backend: &str) -> usize {
    streams.iter().filter(|s| s.backend == backend).count()
}
