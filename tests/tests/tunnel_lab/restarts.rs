//! Restarts of lbd under kept-alive connections (kill -9, then SIGTERM):
//! lbd adopts the pinned connection table, so no connection breaks or
//! loses its backend.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_tests::{
    http::{burst, Conn, Talker},
    lab::{VIP4, VIP6},
    support::{nonzero, restart_both_ways, status_on},
    tunnel::{self, TunnelSpec},
};

use crate::{observe::client_address, DROPS};

/// Kept-alive connections through both VIPs ask every 100 ms while lbd
/// is killed (kill -9) and started again, then stopped (SIGTERM) and
/// started again: each keeps its backend throughout (the pinned
/// connection table is adopted, the program swapped in on the pinned
/// link, the next hops looked up again), and new connections go through
/// afterwards.
fn connections_survive_restarts(forwarding: &str, attach: &str) {
    let started = Instant::now();
    let what = format!("{forwarding} at {attach}");
    let mut lab = tunnel::start_lab(1, 3).expect("tunnel lab");
    lab.for_attach(attach);
    let lb = lab.lb.clone();
    let spec = TunnelSpec::new(attach, forwarding, &["b1", "b2", "b3"]);
    let config = tunnel::lbd_config(&lab, &lb, &spec).expect("lbd config");
    lab.start_lbd_on(&lb, "lbd", &config).expect("lbd");
    let mut conns = Vec::new();
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let opened = Conn::open(&lab.client.netns, vip, 8, Duration::from_secs(5)).expect("open");
        for conn in &opened {
            assert_eq!(
                conn.first.peer.ip(),
                client_address(&lab, vip),
                "{what}: nginx saw another client"
            );
        }
        conns.extend(opened);
    }
    let total = conns.len();
    let backends: BTreeSet<String> = conns.iter().map(|c| c.first.backend.clone()).collect();
    let talker = Talker::start(conns);

    let running = restart_both_ways(&mut lab, &lb, "lbd", &config, |_| {});
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let after = burst(&lab.client.netns, vip, 200);
        assert_eq!(
            after.failed, 0,
            "{what}: {vip} after the restarts: {:?}",
            after.errors
        );
        assert_eq!(after.peers, BTreeSet::from([client_address(&lab, vip)]));
    }
    let (rounds, errors) = talker.finish();
    let last = status_on(&lab, &lb);
    assert!(
        errors.is_empty(),
        "{what}: kept-alive connections broke across the restarts: {errors:?}\ncounters: {:?}\nlbd3:\n{}",
        nonzero(&last),
        lab.log(&running)
    );
    assert!(rounds >= 15, "{what}: only {rounds} rounds of requests");
    let drops: BTreeMap<&str, u64> = nonzero(&last)
        .into_iter()
        .filter(|(k, _)| DROPS.contains(k))
        .collect();
    assert!(
        drops.is_empty(),
        "{what}: drops across the restarts: {drops:?}"
    );
    eprintln!(
        "tunnel {what}: {total} kept-alive connections (IPv4 and IPv6) on {backends:?}, {rounds} rounds across kill -9 + restart and SIGTERM + restart, 0 failed; took {:?}",
        started.elapsed()
    );
}

#[test]
fn tunnel_connections_survive_kill_9_and_sigterm_restarts() {
    // Both modes and both hooks, each pairing once.
    connections_survive_restarts("ipip", "tc");
    connections_survive_restarts("gue", "xdp");
}
