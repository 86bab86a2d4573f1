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
    lab::{Lab, VIP4, VIP6},
    support::{assert_tracked_on, nonzero, restart_both_ways, status_on},
    tunnel::{self, TunnelSpec, TunnelVip, VIP4_IN6},
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
    // Two more per VIP stay idle across the restarts: the backends are the
    // same before and after, so a lost connection table would only show as
    // these flows missing from the restarted lbd's table until their next
    // packet (which then takes Maglev's same pick).
    let mut idle = Vec::new();
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let mut opened =
            Conn::open(&lab.client.netns, vip, 10, Duration::from_secs(5)).expect("open");
        for conn in &opened {
            assert_eq!(
                conn.first.peer.ip(),
                client_address(&lab, vip),
                "{what}: nginx saw another client"
            );
        }
        idle.extend(opened.drain(8..).map(|c| (vip, c)));
        conns.extend(opened);
    }
    let total = conns.len() + idle.len();
    let backends: BTreeSet<String> = conns.iter().map(|c| c.first.backend.clone()).collect();
    let talker = Talker::start(conns);
    // The idle connections' flows are tracked to their backends by the
    // lbd running (the peer nginx saw is the client's end: no NAT here).
    let assert_idle_tracked = |lab: &Lab, when: &str| {
        for (vip, conn) in &idle {
            let when = format!("{what}: {when}");
            assert_tracked_on(lab, &lb, *vip, conn.first.peer, &conn.first.backend, &when);
        }
    };
    assert_idle_tracked(&lab, "before the restarts");

    let running = restart_both_ways(&mut lab, &lb, "lbd", &config, |lab| {
        assert_idle_tracked(lab, "after kill -9 + restart");
    });
    assert_idle_tracked(&lab, "after SIGTERM + restart");
    for (vip, conn) in &mut idle {
        let seen = conn
            .get()
            .unwrap_or_else(|e| panic!("{what}: idle via {vip}: {e:#}"));
        assert_eq!(seen, conn.first, "{what}: an idle connection via {vip}");
    }
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

/// An address the test adds to the LB's interface on the LB network
/// (2001:2::/64) before restarting lbd.
const ADDED6: &str = "2001:2::50/64";

/// Without `[tunnel] source_ipv6`, the outer IPv6 source is the LB
/// interface's own global address, and the backends' lb-decap allow only
/// that one (as production would). An address added to the interface
/// before lbd restarts is the newest, which the kernel lists first: the
/// restarted lbd (kill -9, then SIGTERM) keeps the source the adopted
/// data plane used, so kept-alive 6in6 and 4in6 connections survive, new
/// ones go through, and no backend drops a packet for its outer source.
/// Before, the restarted lbd picked the added address, and every backend
/// dropped all IPv6 tunnel traffic (`drop_not_source`).
#[test]
fn the_interface_source_stays_across_restarts_after_an_address_is_added() {
    let started = Instant::now();
    let what = "ipip at xdp, IPv6 outer source from the interface";
    let mut lab = tunnel::start_lab(1, 3).expect("tunnel lab");
    lab.for_attach("xdp");
    let lb = lab.lb.clone();
    let own = format!("{}/128", lb.ipv6);
    for backend in lab.backends.clone() {
        tunnel::set_decap_sources(&lab, &backend, &[tunnel::SOURCE4, &own])
            .expect("lb-decap sources");
    }
    let mut spec = TunnelSpec::new("xdp", "ipip", &["b1", "b2", "b3"]);
    spec.vips.push(TunnelVip::V4_IN_6);
    let config = tunnel::lbd_config(&lab, &lb, &spec).expect("lbd config");
    let source6 = format!("source_ipv6 = \"{}\"\n", tunnel::SOURCE6);
    assert!(config.contains(&source6), "{config}");
    let config = config.replacen(&source6, "", 1);
    lab.start_lbd_on(&lb, "lbd", &config).expect("lbd");
    let source = |lab: &Lab| status_on(lab, &lb).tunnel.and_then(|t| t.source_ipv6);
    assert_eq!(source(&lab), Some(own.clone()), "{what}: the picked source");
    let vips = [IpAddr::V6(VIP6), IpAddr::V4(VIP4_IN6)];
    let mut conns = Vec::new();
    for vip in vips {
        conns.extend(Conn::open(&lab.client.netns, vip, 6, Duration::from_secs(5)).expect("open"));
    }
    let talker = Talker::start(conns);
    tunnel::add_address(&lb, ADDED6).expect("address added");

    let running = restart_both_ways(&mut lab, &lb, "lbd", &config, |_| {});
    for vip in vips {
        let after = burst(&lab.client.netns, vip, 100);
        assert_eq!(
            after.failed, 0,
            "{what}: {vip} after the restarts: {:?}",
            after.errors
        );
    }
    let (rounds, errors) = talker.finish();
    assert!(
        errors.is_empty(),
        "{what}: kept-alive connections broke across the restarts: {errors:?}\nlbd3:\n{}",
        lab.log(&running)
    );
    assert!(rounds >= 15, "{what}: only {rounds} rounds of requests");
    for backend in &lab.backends {
        let counters = tunnel::decap_counters(&lab, backend).expect("decap counters");
        // Present and zero: a renamed counter must not read as zero.
        assert_eq!(
            counters.get("drop_not_source"),
            Some(&0),
            "{what}: {}'s lb-decap {counters:?}",
            backend.name
        );
    }
    assert_eq!(
        source(&lab),
        Some(own.clone()),
        "{what}: the source after the restarts\n{}",
        lab.log(&running)
    );
    eprintln!(
        "tunnel {what}: the source stayed {own} across kill -9 + restart and SIGTERM + restart with {ADDED6} added, {rounds} rounds, 0 failed; took {:?}",
        started.elapsed()
    );
}
