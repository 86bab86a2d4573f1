//! The next-hop router toward the backends replaced (a new MAC at the
//! same address, announced by no gratuitous ARP or unsolicited NA): the
//! data plane sends by the kernel's neighbour entry, which nothing else on
//! the LB uses, so the entry stays STALE with the old router's MAC for as
//! long as it lives (the kernel never collects it below `gc_thresh1`).
//! lbd probes its gateways' STALE entries, as it does its DSR backends',
//! so new connections follow the new router.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_tests::{
    http::burst,
    router_swap::{lb_neighbour, next_hop_router, replace_router, short_neighbour_timers},
    support::{nonzero, status_on},
    tunnel::{self, TunnelSpec, TunnelVip},
};

use crate::setup::start_lbd;

/// How long new connections may take to follow the new router: the LB's
/// entry turns STALE within 1.5 × the lab's 1 s reachable time, lbd probes
/// it at its next scan (5 s), the kernel gives the old MAC 1 s and three
/// 300 ms unicast probes before it asks again by broadcast / multicast.
const FOLLOW_LIMIT: Duration = Duration::from_secs(40);

#[test]
fn tunnel_new_connections_follow_a_replaced_next_hop_router() {
    let started = Instant::now();
    let mut lab = tunnel::start_lab(1, 1).expect("tunnel lab");
    let lb = lab.lb.clone();
    short_neighbour_timers(&lb.netns, "eth0");
    let vips = [TunnelVip::V4, TunnelVip::V6];
    let spec = TunnelSpec {
        vips: vips.to_vec(),
        ..TunnelSpec::new("xdp", "ipip", &["b1"])
    };
    start_lbd(&mut lab, &lb, "lbd", &spec);
    let (router, leg) = next_hop_router(&lab);
    let gateway = |vip: &TunnelVip| {
        if vip.v6_backends {
            IpAddr::V6(leg.ipv6)
        } else {
            IpAddr::V4(leg.ipv4)
        }
    };
    for vip in &vips {
        let warm = burst(&lab.client.netns, vip.address, 1);
        assert_eq!(
            warm.failed,
            0,
            "{}: before the router was replaced: {warm:?}; counters {:?}",
            vip.label(),
            nonzero(&status_on(&lab, &lb))
        );
    }
    let old: Vec<String> = vips
        .iter()
        .map(|v| lb_neighbour(&lab, gateway(v)))
        .collect();
    let mac = "02:00:00:00:7e:11";
    replace_router(&lab, &router, &leg, mac, &[]);
    let t = Instant::now();
    let mut report = Vec::new();
    for (vip, old) in vips.iter().zip(&old) {
        let (what, gateway) = (vip.label(), gateway(vip));
        let mut attempts = 0;
        loop {
            attempts += 1;
            let run = burst(&lab.client.netns, vip.address, 1);
            if run.failed == 0 {
                break;
            }
            assert!(
                t.elapsed() < FOLLOW_LIMIT,
                "{what}: no new connection {FOLLOW_LIMIT:?} after the next hop {gateway} was replaced by {mac}: {:?}; the LB's entry was {old:?}, is {:?}; counters {:?}\nlbd:\n{}",
                run.errors,
                lb_neighbour(&lab, gateway),
                nonzero(&status_on(&lab, &lb)),
                lab.log("lbd")
            );
        }
        let entry = lb_neighbour(&lab, gateway);
        assert!(
            entry.contains(mac),
            "{what}: connected, but the LB's entry for {gateway} is {entry:?}, not {mac}"
        );
        report.push(format!(
            "{what}: following {gateway}'s new MAC {} ms after the change ({attempts} attempts)",
            t.elapsed().as_millis()
        ));
    }
    lab.interrupt("lbd").expect("lbd stops");
    eprintln!(
        "replaced next hop: {}; took {:?}",
        report.join("; "),
        started.elapsed()
    );
}
