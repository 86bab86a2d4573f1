//! Chaos under load in the namespace lab: a backend flapping, the
//! connection table overflowing, and a hundred reloads, each while
//! requests flow. (kill -9 of lbd is in restart.rs, a backend's death in
//! control.rs.) Each test prints a `RELIABILITY:` line with what it
//! measured, for RELIABILITY.md. Needs root.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_tests::{
    client::{self, KeepAlive},
    lab::{Lab, VIP4},
    support::{counter, load, status, wait_health},
};
use lb_userspace::api::schema::HealthStatus;

const CHECKS: &str = "[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 100\nfast_interval_ms = 50\ntimeout_ms = 100\nrise = 2\nfall = 2\n";

/// b3's link goes down and up 20 times, each time long enough for the
/// checks to take it out and bring it back: every kept-alive connection
/// to b1 and b2 answers from its own backend after every flap.
#[test]
fn a_flapping_backend_moves_no_flow_of_a_healthy_one() {
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("backends");
    lab.start_lbd(&lab.lbd_config_for(&["b1", "b2", "b3"], CHECKS))
        .expect("lbd");
    for b in ["198.18.0.11", "198.18.0.12", "198.18.0.13"] {
        wait_health(&lab, b, HealthStatus::Up);
    }
    let mut conns = KeepAlive::open(&lab.client.netns, IpAddr::V4(VIP4), 48).expect("open");
    let mut healthy: Vec<(KeepAlive, String)> = Vec::new();
    for mut conn in conns.drain(..) {
        let backend = conn.request().expect("request");
        if backend != "b3" {
            healthy.push((conn, backend));
        }
    }
    assert!(healthy.len() >= 20, "{} healthy connections", healthy.len());
    let b3 = lab.backends[2].clone();
    let load_started = Instant::now();
    let load = load(&lab, Duration::from_secs(120));
    let mut requests = 0;
    let mut windows = Vec::new();
    for _ in 0..20 {
        let down = load_started.elapsed();
        lab.set_link(&b3, false).expect("down");
        wait_health(&lab, "198.18.0.13", HealthStatus::Down);
        windows.push((down, load_started.elapsed()));
        lab.set_link(&b3, true).expect("up");
        wait_health(&lab, "198.18.0.13", HealthStatus::Up);
        for (conn, backend) in &mut healthy {
            assert_eq!(
                &conn.request().expect("request on a healthy backend"),
                backend,
                "a flow of a healthy backend moved"
            );
            requests += 1;
        }
    }
    let results = load.finish().expect("load");
    let failed = results.iter().filter(|t| t.result.is_err()).count();
    // Failures only while b3 was down and not yet taken out (plus the 2 s
    // client timeout of a request that started then).
    let outside: Vec<_> = results
        .iter()
        .filter(|t| t.result.is_err())
        .filter(|t| {
            !windows.iter().any(|(down, out)| {
                t.at + Duration::from_millis(50) >= *down
                    && t.at <= *out + Duration::from_millis(100)
            })
        })
        .collect();
    assert!(
        outside.is_empty(),
        "requests failed outside b3's detection windows: {outside:?}"
    );
    let transitions = status(&lab).vips[0]
        .backends
        .iter()
        .find(|b| b.address.to_string() == "198.18.0.13")
        .and_then(|b| b.check.as_ref().map(|c| c.transitions))
        .unwrap_or(0);
    assert!(transitions >= 40, "{transitions} transitions of b3");
    eprintln!(
        "RELIABILITY: flap x20: {} kept-alive connections to b1/b2, {requests} requests on them, 0 moved; \
         {} new connections alongside, {failed} failed, all while b3 was down and not yet detected; {transitions} health transitions",
        healthy.len(),
        results.len()
    );
}

/// More new flows than the table holds: closed, then the least recently
/// seen flows go, no insert fails, nothing errors, and the kept-alive connections whose
/// entries were evicted still reach their backends through Maglev.
#[test]
fn overflowing_the_connection_table_evicts_quietly_and_keeps_flows_on_their_backends() {
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("backends");
    let config = lab
        .lbd_config_for(&["b1", "b2", "b3"], CHECKS)
        .replace("conntrack_size = 65536", "conntrack_size = 1024");
    assert!(config.contains("conntrack_size = 1024"));
    lab.start_lbd(&config).expect("lbd");
    let mut conns = KeepAlive::open(&lab.client.netns, IpAddr::V4(VIP4), 32).expect("open");
    let first: Vec<String> = conns
        .iter_mut()
        .map(|c| c.request().expect("request"))
        .collect();

    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 3000).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    let after = status(&lab);
    assert_eq!(counter(&after, "conntrack_insert_failed"), 0);
    // The bucket table keeps 1024 live flows in twice as many slots.
    let slots = 1024 * u64::from(lb_common::flow_table::FLOW_HEADROOM);
    assert!(
        after.conntrack.entries <= slots,
        "{} entries in a table of 1024 flows ({slots} slots)",
        after.conntrack.entries
    );
    assert!(counter(&after, "conntrack_new") > 3000);
    for (conn, backend) in conns.iter_mut().zip(&first) {
        assert_eq!(
            &conn.request().expect("request after the overflow"),
            backend,
            "an evicted flow moved"
        );
    }
    eprintln!(
        "RELIABILITY: overflow: 3000 new flows into a table of 1024 ({} entries after), 0 failed requests, 0 failed inserts; 32 kept-alive connections, 0 moved",
        after.conntrack.entries
    );
}

/// A hundred reloads while serving, alternating two files (a weight
/// change): every reload applies, no request fails, and kept-alive
/// connections stay where they are.
#[test]
fn a_hundred_reloads_under_load_lose_nothing() {
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("backends");
    let even = lab.lbd_config_for(&["b1", "b2", "b3"], CHECKS);
    let uneven = even.replacen(
        "  address = \"198.18.0.13\"\n",
        "  address = \"198.18.0.13\"\n  weight = 300\n",
        1,
    );
    assert_ne!(even, uneven);
    lab.start_lbd(&even).expect("lbd");
    let mut conns = KeepAlive::open(&lab.client.netns, IpAddr::V4(VIP4), 24).expect("open");
    let first: Vec<String> = conns
        .iter_mut()
        .map(|c| c.request().expect("request"))
        .collect();
    let load = load(&lab, Duration::from_secs(120));
    let started = Instant::now();
    for i in 0..100 {
        let config = if i % 2 == 0 { &uneven } else { &even };
        lab.write_lbd_config(config).expect("write");
        let out = lab.lbctl(&["reload"]).expect("lbctl reload");
        assert!(
            out.status.success(),
            "reload {i}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let took = started.elapsed();
    let results = load.finish().expect("load");
    let failed: Vec<_> = results.iter().filter(|t| t.result.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        results.len()
    );
    for (conn, backend) in conns.iter_mut().zip(&first) {
        assert_eq!(&conn.request().expect("request"), backend);
    }
    let reloads = status(&lab).reloads;
    assert_eq!(reloads.succeeded, 100, "{reloads:?}");
    assert_eq!(reloads.failed, 0);
    eprintln!(
        "RELIABILITY: 100 reloads in {:.1} s: {} requests alongside, 0 failed; 24 kept-alive connections, 0 moved",
        took.as_secs_f64(),
        results.len()
    );
}
