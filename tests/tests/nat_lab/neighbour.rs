//! The next hop's neighbour missing, at xdp and at tc: with r2 off the
//! LAN and the LB's neighbours flushed, the client's first packets are
//! dropped and counted; once r2 is back lbd gets it resolved and the
//! connection goes through. And r2 replaced by a router with a new MAC
//! that announces nothing: established and new connections follow it.

use std::{
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    http::{burst, Conn},
    lab::{VIP4, VIP6},
    router_swap::{lb_neighbour, next_hop_router, replace_router, short_neighbour_timers},
    support::{grown, ip, nonzero},
};

use crate::{
    observe::{neighbour, status},
    setup::{nat_lab, start_nat_lbd, Spec},
    NAT4, NAT6,
};

#[test]
fn nat_at_xdp_missing_next_hop_neighbour_is_dropped_counted_and_resolved() {
    missing_neighbour("xdp");
}

#[test]
fn nat_at_tc_missing_next_hop_neighbour_is_dropped_counted_and_resolved() {
    missing_neighbour("tc");
}

fn missing_neighbour(attach: &str) {
    let started = Instant::now();
    let mut lab = nat_lab(1, 1);
    lab.for_attach(attach);
    start_nat_lbd(
        &mut lab,
        &Spec {
            attach,
            backends: &["b1"],
            ..Spec::default()
        },
    );
    let (r1, r2) = (lab.routers[0].clone(), lab.routers[1].clone());
    let lan = lab.topology.lbs[0].network;
    let (r1_leg, r2_leg) = (
        r1.leg_on(lan).expect("r1 on the LAN").clone(),
        r2.leg_on(lan).expect("r2 on the LAN").clone(),
    );
    // lbd keeps the gateways resolved ahead of need and re-resolves a
    // flushed entry within milliseconds; to be sure the client's first
    // packets meet a missing entry, r2 is off the LAN (its switch port out
    // of the bridge) from the flush until those packets were dropped.
    let switch = format!("{}-sw", lab.prefix);
    let r2_port = format!(
        "p-{}-{}",
        r2.name,
        r2.legs
            .iter()
            .position(|l| l.network == lan)
            .expect("r2 on the LAN")
    );
    let bridge = format!("br{lan}");
    let mut report = Vec::new();
    for (family, vip, r2_hop, r1_hop) in [
        (
            "-4",
            IpAddr::V4(VIP4),
            IpAddr::V4(r2_leg.ipv4),
            IpAddr::V4(r1_leg.ipv4),
        ),
        (
            "-6",
            IpAddr::V6(VIP6),
            IpAddr::V6(r2_leg.ipv6),
            IpAddr::V6(r1_leg.ipv6),
        ),
    ] {
        ip(&["-n", &switch, "link", "set", &r2_port, "nomaster"]);
        ip(&["-n", &lab.lb.netns, family, "neigh", "flush", "dev", "eth0"]);
        let entry = neighbour(&lab, r2_hop);
        assert!(
            entry.is_empty() || entry.contains("FAILED") || entry.contains("INCOMPLETE"),
            "{r2_hop} still resolved after the flush: {entry}"
        );
        let before = status(&lab);
        let t = Instant::now();
        // The kernel retransmits the SYN after 1 s, 3 s, 7 s; the first
        // two meet the missing entry, lbd has until the later ones to get
        // it resolved once r2 is back.
        let netns = lab.client.netns.clone();
        let connecting = thread::spawn(move || Conn::open(&netns, vip, 1, Duration::from_secs(10)));
        thread::sleep(Duration::from_millis(1500));
        let dropped = grown(&before, &status(&lab), "drop_no_neighbour");
        ip(&["-n", &switch, "link", "set", &r2_port, "master", &bridge]);
        let conn = connecting.join().expect("connecting thread");
        let took = t.elapsed();
        let mut conn = conn.unwrap_or_else(|e| {
            panic!(
                "{vip}: no connection after the next hop's neighbour was flushed ({e:#}); drop_no_neighbour +{dropped} before r2 came back, {:?} now\nlbd:\n{}",
                nonzero(&status(&lab)),
                lab.log("lbd")
            )
        });
        assert!(
            dropped >= 1,
            "{vip}: drop_no_neighbour did not grow while {r2_hop} could not be resolved"
        );
        assert_eq!(conn[0].first.peer.ip().is_ipv4(), vip.is_ipv4());
        conn[0].get().expect("a second request");
        for hop in [r2_hop, r1_hop] {
            let entry = neighbour(&lab, hop);
            assert!(
                !entry.is_empty() && !entry.contains("FAILED") && !entry.contains("INCOMPLETE"),
                "{vip}: next hop {hop} not resolved: {entry:?}"
            );
        }
        report.push(format!(
            "{vip}: connected in {} ms, drop_no_neighbour +{dropped} while r2 was away, next hops {:?}",
            took.as_millis(),
            [r2_hop, r1_hop].map(|h| neighbour(&lab, h))
        ));
    }
    eprintln!(
        "NAT neighbours ({attach}): {}; took {:?}",
        report.join("; "),
        started.elapsed()
    );
}

/// How long a NAT'd flow may take to follow a replaced next-hop router:
/// see the tunnel lab's `next_hop` (the LB's entry turns STALE, lbd
/// probes it at its next scan, the old MAC fails its probes, the new one
/// answers a broadcast), plus TCP's retransmission backoff on a kept-alive
/// connection.
const FOLLOW_LIMIT: Duration = Duration::from_secs(45);

/// The next-hop router toward the backends replaced under established
/// NAT'd connections (a new MAC at the same addresses, announced by
/// nothing): each kept-alive connection goes on with its backend and NAT
/// port, and new connections go through, once lbd had the LB's STALE
/// entry for the router probed. Before, nothing on the LB ever asked
/// again: every flow through the router was black-holed for as long as
/// the entry lived.
#[test]
fn nat_connections_follow_a_replaced_next_hop_router() {
    let started = Instant::now();
    let mut lab = nat_lab(1, 1);
    short_neighbour_timers(&lab.lb.netns, "eth0");
    start_nat_lbd(
        &mut lab,
        &Spec {
            backends: &["b1"],
            ..Spec::default()
        },
    );
    let (router, leg) = next_hop_router(&lab);
    let mut conns = Vec::new();
    for (vip, gateway) in [
        (IpAddr::V4(VIP4), IpAddr::V4(leg.ipv4)),
        (IpAddr::V6(VIP6), IpAddr::V6(leg.ipv6)),
    ] {
        let mut opened = Conn::open(&lab.client.netns, vip, 1, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{vip}: a connection before the change: {e:#}"));
        let conn = opened.pop().expect("one connection");
        conn.set_read_timeout(FOLLOW_LIMIT).expect("read timeout");
        conns.push((vip, gateway, lb_neighbour(&lab, gateway), conn));
    }
    let mac = "02:00:00:00:7e:21";
    replace_router(
        &lab,
        &router,
        &leg,
        mac,
        &[IpAddr::V4(NAT4), IpAddr::V6(NAT6)],
    );
    let t = Instant::now();
    let mut report = Vec::new();
    for (vip, gateway, old, mut conn) in conns {
        let seen = conn.get().unwrap_or_else(|e| {
            panic!(
                "{vip}: the kept-alive connection got no answer {:?} after the next hop {gateway} was replaced by {mac} ({e:#}); the LB's entry was {old:?}, is {:?}; counters {:?}\nlbd:\n{}",
                t.elapsed(),
                lb_neighbour(&lab, gateway),
                nonzero(&status(&lab)),
                lab.log("lbd")
            )
        });
        assert_eq!(
            (seen.backend.as_str(), seen.peer),
            (conn.first.backend.as_str(), conn.first.peer),
            "{vip}: the connection kept its backend and NAT port"
        );
        let fresh = burst(&lab.client.netns, vip, 1);
        assert_eq!(
            fresh.failed, 0,
            "{vip}: a new connection: {:?}",
            fresh.errors
        );
        let entry = lb_neighbour(&lab, gateway);
        assert!(
            entry.contains(mac),
            "{vip}: answered, but the LB's entry for {gateway} is {entry:?}, not {mac}"
        );
        report.push(format!(
            "{vip}: answered {} ms after the change",
            t.elapsed().as_millis()
        ));
    }
    eprintln!(
        "NAT across a replaced next hop: {}; took {:?}",
        report.join("; "),
        started.elapsed()
    );
}
