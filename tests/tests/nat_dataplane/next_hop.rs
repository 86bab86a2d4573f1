//! Next hops by FIB: the same interface (bounced), a missing neighbour
//! (dropped and named to lbd), a changed one (looked up again when the
//! entry is touched), no route; and traffic that is no VIP's still
//! passes.

use lb_common::{
    consts::{AF_INET, AF_INET6, EVENT_NO_NEIGHBOUR, EVENT_NO_ROUTE},
    stats::Counter,
    NatEntry,
};
use lb_tests::{
    natbed::{
        addr, client_flow, nat_vip, neighbour_mac, words_to_addr, BACKENDS4, BEHIND_GATEWAY4,
        BEHIND_GATEWAY6, GATEWAY4, GATEWAY6, IN_MAC, NAT4, NAT6, OUT_DEV, SAME_IF4, SAME_IF6,
        UNROUTED4, UNROUTED6,
    },
    packet::{self, Flow, ACK, SYN},
    support::ip,
    testbed::{flow_key, Hook, VIP4, VIP6},
};
use lb_userspace::{config::Protocol, reconcile::addr_words};

use crate::{
    counter,
    frames::{check, entries, Expected},
    in_netns, vips, EVENT_GAP, PORTS,
};

/// A backend on the interface the client came in on: sent back out of it
/// (XDP_TX, not a redirect), to the backend's MAC from that interface's.
fn next_hop_on_the_ingress_interface_bounces(hook: Hook) {
    let vips = vec![
        nat_vip(VIP4, 80, Protocol::Tcp, &[(SAME_IF4, None)], NAT4, PORTS),
        nat_vip(VIP6, 80, Protocol::Tcp, &[(SAME_IF6, None)], NAT6, PORTS),
    ];
    in_netns(hook, vips, |bed| {
        for (vip, backend, nat) in [(VIP4, SAME_IF4, NAT4), (VIP6, SAME_IF6, NAT6)] {
            let flow = client_flow(vip, 80, 40_007);
            let (verdict, out) = bed
                .run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("test run");
            assert_eq!(verdict, bed.verdicts.bounce);
            let (forward, _, _) = entries(bed, &flow_key(&flow, Protocol::Tcp));
            assert_eq!(forward.ifindex, bed.in_if);
            check(
                &out,
                &Expected {
                    smac: IN_MAC,
                    dmac: neighbour_mac(backend).expect("mac"),
                    src: addr(nat),
                    dst: addr(backend),
                    sport: u16::from_be(forward.sport),
                    dport: 80,
                    ttl: 63,
                    udp_zero: false,
                },
            );
        }
    });
}

/// A next hop without a neighbour entry: dropped (never passed up, where
/// the stack would reset the connection), counted, and lbd told which
/// gateway to resolve.
fn a_missing_neighbour_drops_and_names_the_gateway(hook: Hook) {
    let vips = vec![
        nat_vip(
            VIP4,
            80,
            Protocol::Tcp,
            &[(BEHIND_GATEWAY4, None)],
            NAT4,
            PORTS,
        ),
        nat_vip(
            VIP6,
            80,
            Protocol::Tcp,
            &[(BEHIND_GATEWAY6, None)],
            NAT6,
            PORTS,
        ),
    ];
    in_netns(hook, vips, |bed| {
        for (vip, gateway, family) in [(VIP4, GATEWAY4, AF_INET), (VIP6, GATEWAY6, AF_INET6)] {
            // Events of a kind are rate-limited to one a second per CPU.
            std::thread::sleep(EVENT_GAP);
            let frame = packet::tcp(&client_flow(vip, 80, 40_008), SYN, None, b"");
            let (verdict, out) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.drop);
            assert_eq!(out, frame, "a dropped frame is not rewritten");
            let events = bed.bed.dataplane.drain_events();
            let event = events
                .iter()
                .find(|e| e.kind == EVENT_NO_NEIGHBOUR)
                .unwrap_or_else(|| panic!("no neighbour event in {events:?}"));
            assert_eq!(event.flow.family, family);
            assert_eq!(event.flow.dst, addr_words(addr(gateway)).0);
        }
        assert_eq!(counter(bed, Counter::DropNoNeighbour), 2);
        // The translation stays (its port reserved): once lbd got the
        // gateway resolved, the retransmitted SYN finds it and looks the
        // next hop up again.
        assert_eq!(bed.flows().len(), 4);
        assert_eq!(counter(bed, Counter::Forwarded), 0);
        ip(&[
            "neigh",
            "add",
            GATEWAY4,
            "lladdr",
            "02:00:00:00:fe:fe",
            "dev",
            OUT_DEV,
        ]);
        let flow = client_flow(VIP4, 80, 40_008);
        let (verdict, out) = bed
            .run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("test run");
        assert_eq!(verdict, bed.verdicts.redirect);
        assert_eq!(&out[..6], &[0x02, 0, 0, 0, 0xfe, 0xfe], "the gateway's MAC");
        assert_eq!(counter(bed, Counter::NatNew), 2);
        assert_eq!(counter(bed, Counter::NatHit), 1);
    });
}

/// A tracked flow keeps its cached next hop until its entry is touched
/// again (at most once per `FLOW_TOUCH_INTERVAL_NS`); then the FIB is asked
/// again and a changed neighbour is picked up.
fn the_next_hop_is_looked_up_again_when_the_entry_is_touched(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let flow = client_flow(VIP4, 80, 40_010);
        let key = flow_key(&flow, Protocol::Tcp);
        bed.run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("syn");
        let (forward, _, _) = entries(bed, &key);
        let backend = words_to_addr(forward.dst, AF_INET).to_string();
        let moved = [0x02, 0, 0, 0, 0xbe, 0x99];
        ip(&[
            "neigh",
            "replace",
            &backend,
            "lladdr",
            "02:00:00:00:be:99",
            "dev",
            OUT_DEV,
        ]);
        let ack = packet::tcp(&flow, ACK, None, b"");
        let (_, out) = bed.run_on(bed.in_if, &ack).expect("test run");
        assert_eq!(&out[..6], &forward.dmac, "cached next hop");
        assert_eq!(entries(bed, &key).0.last_seen_ns, forward.last_seen_ns);
        // Age the entry past the touch interval, as time would.
        let aged = NatEntry {
            last_seen_ns: 0,
            ..entries(bed, &key).0
        };
        bed.bed
            .dataplane
            .nat_mut()
            .install_flow(&key, &aged)
            .expect("age");
        let (verdict, out) = bed.run_on(bed.in_if, &ack).expect("test run");
        assert_eq!(verdict, bed.verdicts.redirect);
        assert_eq!(&out[..6], &moved, "looked up again");
        let touched = entries(bed, &key).0;
        assert_eq!(touched.dmac, moved);
        assert_ne!(touched.last_seen_ns, 0, "touched");
    });
}

/// A backend no route leads to: dropped, counted, reported.
fn no_route_drops_and_reports(hook: Hook) {
    let vips = vec![
        nat_vip(VIP4, 80, Protocol::Tcp, &[(UNROUTED4, None)], NAT4, PORTS),
        nat_vip(VIP6, 80, Protocol::Tcp, &[(UNROUTED6, None)], NAT6, PORTS),
    ];
    in_netns(hook, vips, |bed| {
        for vip in [VIP4, VIP6] {
            let frame = packet::tcp(&client_flow(vip, 80, 40_009), SYN, None, b"");
            let (verdict, _) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.drop);
        }
        assert_eq!(counter(bed, Counter::DropNoRoute), 2);
        let events = bed.bed.dataplane.drain_events();
        assert!(
            events.iter().any(|e| e.kind == EVENT_NO_ROUTE),
            "{events:?}"
        );
    });
}

/// With NAT on, packets for no VIP and no translation still go up the
/// stack untouched (the node's own traffic).
fn other_traffic_still_passes(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let to_node = Flow {
            src: addr(BACKENDS4[0]),
            dst: addr("198.19.1.1"),
            sport: 22,
            dport: 50_000,
        };
        let frame = packet::tcp(&to_node, ACK, None, b"");
        let (verdict, out) = bed.run_on(bed.out_if, &frame).expect("test run");
        assert_eq!(verdict, bed.verdicts.pass);
        assert_eq!(out, frame);
        assert_eq!(counter(bed, Counter::PassNotVip), 1);
    });
}

lb_tests::on_both_hooks!(
    next_hop_on_the_ingress_interface_bounces,
    a_missing_neighbour_drops_and_names_the_gateway,
    no_route_drops_and_reports,
    other_traffic_still_passes,
    the_next_hop_is_looked_up_again_when_the_entry_is_touched,
);
