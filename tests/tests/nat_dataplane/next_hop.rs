//! Next hops by FIB: the same interface (bounced), a missing neighbour
//! (dropped and named to lbd; at a refresh, a cached hop kept and used,
//! in the tunnel modes too), a changed one (looked up again when the
//! entry is touched), no route and every unusable one (blackhole,
//! unreachable, prohibit, forwarding off); the route's MTU (a packet too
//! big for it answered with ICMP or dropped, never taken for a missing
//! route; at tc a GSO packet judged by its segments); and traffic that is
//! no VIP's still passes.

use std::net::IpAddr;

use aya::maps::{PerCpuArray, PerCpuValues};
use etherparse::{IpNumber, LinkHeader, NetHeaders, PacketHeaders};
use lb_common::{
    consts::{names, AF_INET, AF_INET6, EVENT_NO_NEIGHBOUR, EVENT_NO_ROUTE},
    stats::Counter,
    DataplaneEvent, FlowKey, Mode, NatEntry, TunnelHop,
};
use lb_tests::{
    natbed::{
        addr, client_flow, nat_vip, neighbour_mac, words_to_addr, FibNetns, NatBed, BACKENDS4,
        BACKENDS6, BEHIND_GATEWAY4, BEHIND_GATEWAY6, CLIENT4, CLIENT6, GATEWAY4, GATEWAY6, IN_DEV,
        IN_MAC, NAT4, NAT6, OUT_DEV, OUT_MAC, SAME_IF4, SAME_IF6, UNROUTED4, UNROUTED6,
    },
    packet::{self, Flow, ACK, CLIENT_MAC, SYN},
    support::ip,
    testbed::{flow_key, Hook, VIP4, VIP6},
    tunnelbed::{tunnel_vip, TunnelBed},
};
use lb_userspace::{config::Protocol, reconcile::addr_words};

use crate::{
    counter,
    frames::{check, check_too_big, check_too_big_gso, check_too_big_quoting, entries, Expected},
    in_netns, vips, BACKEND_PORT, EVENT_GAP, PORTS,
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

/// Backends behind an IPv4 route through an IPv6 gateway (RFC 5549).
const BEHIND_V6_GATEWAY4: &str = "198.19.3.10";

/// A next hop without a neighbour entry: dropped (never passed up, where
/// the stack would reset the connection), counted, and lbd told which
/// gateway to resolve, of which family, on which interface (an IPv4
/// route may go through an IPv6 gateway).
fn a_missing_neighbour_drops_and_names_the_gateway(hook: Hook) {
    let vips = vec![
        nat_vip(
            VIP4,
            81,
            Protocol::Tcp,
            &[(BEHIND_V6_GATEWAY4, None)],
            NAT4,
            PORTS,
        ),
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
        ip(&[
            "route",
            "add",
            "198.19.3.0/24",
            "via",
            "inet6",
            GATEWAY6,
            "dev",
            OUT_DEV,
        ]);
        for (vip, port, gateway, family) in [
            (VIP4, 80, GATEWAY4, AF_INET),
            (VIP6, 80, GATEWAY6, AF_INET6),
            (VIP4, 81, GATEWAY6, AF_INET6),
        ] {
            // Events of a kind are rate-limited to one a second per CPU.
            std::thread::sleep(EVENT_GAP);
            let frame = packet::tcp(&client_flow(vip, port, 40_008), SYN, None, b"");
            let (verdict, out) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.drop);
            assert_eq!(out, frame, "a dropped frame is not rewritten");
            let events = bed.bed.dataplane.drain_events();
            let event = events
                .iter()
                .find(|e| e.kind == EVENT_NO_NEIGHBOUR)
                .unwrap_or_else(|| panic!("no neighbour event in {events:?}"));
            assert_eq!(event.flow.family, family, "{vip}:{port}");
            assert_eq!(event.flow.dst, addr_words(addr(gateway)).0, "{vip}:{port}");
            assert_eq!(event.flow.src[0], bed.out_if, "the egress interface");
        }
        assert_eq!(counter(bed, Counter::DropNoNeighbour), 3);
        // The translation stays (its port reserved): once lbd got the
        // gateway resolved, the retransmitted SYN finds it and looks the
        // next hop up again.
        assert_eq!(bed.flows().len(), 6);
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
        assert_eq!(counter(bed, Counter::NatNew), 3);
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

/// `key`'s entry (either direction's) aged past the touch interval, as
/// time would: its next packet refreshes its next hop.
fn age_entry(bed: &mut NatBed, key: &FlowKey) {
    let entry = bed.bed.dataplane.nat().flow(key).expect("the entry to age");
    let aged = NatEntry {
        last_seen_ns: 0,
        ..entry
    };
    bed.bed
        .dataplane
        .nat_mut()
        .install_flow(key, &aged)
        .expect("age");
}

/// Whether `events` name `next_hop` as missing on interface `ifindex`.
fn names_next_hop(events: &[DataplaneEvent], next_hop: &str, ifindex: u32) -> bool {
    let (words, family) = addr_words(addr(next_hop));
    events.iter().any(|e| {
        e.kind == EVENT_NO_NEIGHBOUR
            && e.flow.dst == words
            && e.flow.family == family
            && e.flow.src[0] == ifindex
    })
}

/// The kernel never refreshes a neighbour entry only XDP uses, so above
/// `gc_thresh1` it collects it about a minute after it was made. A
/// refresh of a live flow's next hop that then finds no neighbour entry
/// (the route unchanged) keeps the hop its entry caches: the packet is
/// sent with the cached MACs, in both directions, lbd is told to get the
/// neighbour resolved, and nothing counts as dropped. A new flow to the
/// same host, which has no cached hop, is still dropped and counted.
fn a_refresh_without_a_neighbour_keeps_the_cached_next_hop(hook: Hook) {
    let vips = vec![
        nat_vip(
            VIP4,
            80,
            Protocol::Tcp,
            &[(BACKENDS4[0], Some(BACKEND_PORT))],
            NAT4,
            PORTS,
        ),
        nat_vip(
            VIP6,
            80,
            Protocol::Tcp,
            &[(BACKENDS6[0], Some(BACKEND_PORT))],
            NAT6,
            PORTS,
        ),
    ];
    in_netns(hook, vips, |bed| {
        let mut sent = 0;
        for (vip, nat, client, backend) in [
            (VIP4, NAT4, CLIENT4, BACKENDS4[0]),
            (VIP6, NAT6, CLIENT6, BACKENDS6[0]),
        ] {
            let flow = client_flow(vip, 80, 40_060);
            let key = flow_key(&flow, Protocol::Tcp);
            let (verdict, _) = bed
                .run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("syn");
            assert_eq!(verdict, bed.verdicts.redirect, "{vip}");
            let (forward, reply_key, _) = entries(bed, &key);
            let back = Flow {
                src: addr(backend),
                dst: addr(nat),
                sport: BACKEND_PORT,
                dport: u16::from_be(forward.sport),
            };
            let answer = packet::tcp(&back, ACK, None, b"");
            let (verdict, _) = bed.run_on(bed.out_if, &answer).expect("reply");
            assert_eq!(verdict, bed.verdicts.redirect, "{vip}");
            let reply = entries(bed, &key).2;
            assert_eq!(reply.ifindex, bed.in_if, "the reply's hop cached");
            sent += 2;
            // Both neighbours collected, both entries due for a refresh.
            ip(&["neigh", "del", backend, "dev", OUT_DEV]);
            ip(&["neigh", "del", client, "dev", IN_DEV]);
            age_entry(bed, &key);
            age_entry(bed, &reply_key);
            // Events of a kind are rate-limited to one a second per CPU.
            std::thread::sleep(EVENT_GAP);
            let segment = packet::tcp(&flow, ACK, None, b"");
            let (verdict, out) = bed.run_on(bed.in_if, &segment).expect("ack");
            assert_eq!(verdict, bed.verdicts.redirect, "{vip}: sent");
            check(&out, &translated(&flow, &forward));
            assert_eq!(&out[..6], &neighbour_mac(backend).expect("mac"));
            let events = bed.bed.dataplane.drain_events();
            assert!(
                names_next_hop(&events, backend, bed.out_if),
                "{vip}: lbd told to resolve {backend}: {events:?}"
            );
            let (refreshed, _, _) = entries(bed, &key);
            assert_ne!(refreshed.last_seen_ns, 0, "{vip}: touched");
            assert_eq!(
                (
                    refreshed.ifindex,
                    refreshed.dmac,
                    refreshed.smac,
                    refreshed.mtu
                ),
                (forward.ifindex, forward.dmac, forward.smac, forward.mtu),
                "{vip}: the cached hop kept"
            );
            std::thread::sleep(EVENT_GAP);
            let (verdict, out) = bed.run_on(bed.out_if, &answer).expect("reply");
            assert_eq!(verdict, bed.verdicts.redirect, "{vip}: reply sent");
            check(
                &out,
                &Expected {
                    smac: IN_MAC,
                    dmac: CLIENT_MAC,
                    src: addr(vip),
                    dst: addr(client),
                    sport: 80,
                    dport: flow.sport,
                    ttl: 63,
                    udp_zero: false,
                },
            );
            let events = bed.bed.dataplane.drain_events();
            assert!(
                names_next_hop(&events, client, bed.in_if),
                "{vip}: lbd told to resolve {client}: {events:?}"
            );
            assert_eq!(entries(bed, &key).2.dmac, reply.dmac, "{vip}");
            sent += 2;
            assert_eq!(counter(bed, Counter::DropNoNeighbour), 0, "{vip}");
            assert_eq!(
                counter(bed, Counter::Forwarded) + counter(bed, Counter::ForwardedNatReply),
                sent,
                "{vip}"
            );
        }
        // A new flow has no hop to keep: dropped, counted, as before.
        for (dropped, vip) in (1..).zip([VIP4, VIP6]) {
            let frame = packet::tcp(&client_flow(vip, 80, 40_061), SYN, None, b"");
            let (verdict, out) = bed.run_on(bed.in_if, &frame).expect("syn");
            assert_eq!(verdict, bed.verdicts.drop, "{vip}");
            assert_eq!(out, frame, "a dropped frame is not rewritten");
            assert_eq!(counter(bed, Counter::DropNoNeighbour), dropped, "{vip}");
        }
    });
}

/// The tunnel modes look their next hops up through the same core
/// (`fib::run`): a backend's cached hop whose refresh finds no neighbour
/// entry (the route unchanged) is kept too, and the flow's packets are
/// still wrapped and sent with its MACs; lbd is told, nothing dropped.
fn a_tunnel_refresh_without_a_neighbour_keeps_the_cached_next_hop(hook: Hook) {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            // The hop cache is per CPU: every run on the same one.
            lb_tests::bench::xdp::pin_to_cpu(0).expect("pin to CPU 0");
            let backend = BACKENDS4[0];
            let vips = vec![tunnel_vip(VIP4, 80, Protocol::Tcp, &[backend], Mode::Ipip)];
            let mut bed = TunnelBed::new(hook, &vips, in_if, out_if).expect("bed");
            let id = bed.backend_id(&vips[0], addr(backend)).expect("id");
            let flow = client_flow(VIP4, 80, 40_062);
            let (verdict, _) = bed
                .run_on(in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("syn");
            assert_eq!(verdict, bed.verdicts().redirect);
            ip(&["neigh", "del", backend, "dev", OUT_DEV]);
            // Stale, as a second later: the next packet looks it up again.
            let mut hops = bed.hops(id).expect("hops");
            let cached = hops[0];
            assert_ne!(cached.resolved_ns, 0, "looked up on CPU 0");
            hops[0].resolved_ns = 1;
            let mut map: PerCpuArray<_, TunnelHop> = PerCpuArray::try_from(
                bed.nat
                    .bed
                    .dataplane
                    .ebpf_mut()
                    .map_mut(names::MAP_TUNNEL_HOPS)
                    .expect("the hop cache"),
            )
            .expect("a per-CPU array");
            map.set(id, PerCpuValues::try_from(hops).expect("values"), 0)
                .expect("age the hop");
            let (verdict, out) = bed
                .run_on(in_if, &packet::tcp(&flow, ACK, None, b""))
                .expect("ack");
            assert_eq!(verdict, bed.verdicts().redirect, "sent");
            let headers = PacketHeaders::from_ethernet_slice(&out).expect("etherparse");
            let Some(LinkHeader::Ethernet2(eth)) = &headers.link else {
                panic!("no Ethernet header");
            };
            assert_eq!(
                (eth.source, eth.destination),
                (OUT_MAC, neighbour_mac(backend).expect("mac")),
                "the cached hop's MACs"
            );
            let Some(NetHeaders::Ipv4(outer, _)) = &headers.net else {
                panic!("no outer IPv4 header");
            };
            assert_eq!(IpAddr::from(outer.destination), addr(backend));
            assert_eq!(outer.protocol, IpNumber::IPV4, "IPIP");
            let kept = bed.hops(id).expect("hops")[0];
            assert!(kept.resolved_ns > 1, "asked again an interval later");
            assert_eq!(
                (
                    kept.ifindex,
                    kept.dmac,
                    kept.smac,
                    kept.mtu,
                    kept.generation
                ),
                (
                    cached.ifindex,
                    cached.dmac,
                    cached.smac,
                    cached.mtu,
                    cached.generation
                ),
            );
            let events = bed.nat.bed.dataplane.drain_events();
            assert!(names_next_hop(&events, backend, out_if), "{events:?}");
            let counter = |c| bed.nat.bed.counter(c).expect("counter");
            assert_eq!(counter(Counter::DropNoNeighbour), 0);
            assert_eq!(counter(Counter::TunnelEncap), 2);
        })
        .expect("the test body (see its panic above)");
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

/// `flow`'s entry aged past the touch interval, as time would: its next
/// packet looks the next hop up again.
fn age(bed: &mut NatBed, flow: &Flow) {
    let key = flow_key(flow, Protocol::Tcp);
    let aged = NatEntry {
        last_seen_ns: 0,
        ..entries(bed, &key).0
    };
    bed.bed
        .dataplane
        .nat_mut()
        .install_flow(&key, &aged)
        .expect("age");
}

/// A TCP segment of `flow` with ACK whose IP packet is `len` bytes long.
fn segment_of(flow: &Flow, len: usize) -> Vec<u8> {
    let headers = if flow.src.is_ipv4() { 40 } else { 60 };
    let frame = packet::tcp(flow, ACK, None, &vec![0x5a; len - headers]);
    assert_eq!(frame.len(), 14 + len);
    frame
}

/// What a translated segment of `flow` (forward entry `forward`) must
/// look like.
fn translated(flow: &Flow, forward: &NatEntry) -> Expected {
    let family = if flow.src.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    };
    Expected {
        smac: OUT_MAC,
        dmac: forward.dmac,
        src: words_to_addr(forward.src, family),
        dst: words_to_addr(forward.dst, family),
        sport: u16::from_be(forward.sport),
        dport: BACKEND_PORT,
        ttl: 63,
        udp_zero: false,
    }
}

/// At tc a GRO'd skb (3000 bytes of IP packet, segments of 1448 bytes)
/// that refreshes its entry's next hop is sent: its segments fit the
/// route's MTU (1500). The FIB is asked with a probe length, not the
/// packet's own (which it would answer with "fragmentation needed", once
/// a second per flow and direction, reported as no route). Segments of
/// 1480 bytes would not fit: that skb is answered (one packet).
#[test]
fn tc_sends_a_refreshing_gso_packet_whose_segments_fit() {
    in_netns(Hook::Tc, vips(), |bed| {
        let flow = client_flow(VIP4, 80, 40_020);
        bed.run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("syn");
        age(bed, &flow);
        let big = segment_of(&flow, 3000);
        let (verdict, out) = bed.run_tc_gso(bed.in_if, &big, 1448, 3).expect("run");
        assert_eq!(verdict, bed.verdicts.redirect);
        let (forward, _, _) = entries(bed, &flow_key(&flow, Protocol::Tcp));
        assert_ne!(forward.last_seen_ns, 0, "refreshed");
        assert_eq!(forward.mtu, 1500, "the route's MTU, cached");
        assert_eq!(&out[..6], &forward.dmac);
        check(&out, &translated(&flow, &forward));
        assert_eq!(counter(bed, Counter::DropNoRoute), 0);
        assert_eq!(counter(bed, Counter::Forwarded), 2);
        let events = bed.bed.dataplane.drain_events();
        assert!(
            !events.iter().any(|e| e.kind == EVENT_NO_ROUTE),
            "{events:?}"
        );
        let (verdict, out) = bed.run_tc_gso(bed.in_if, &big, 1480, 3).expect("run");
        assert_eq!(verdict, bed.verdicts.bounce);
        check_too_big_gso(&out, &big, 1500);
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 1);
    });
}

/// At tc a UDP GSO skb (3000 bytes of IP packet) is judged by its
/// segments too, each its IP and UDP headers and `gso_size` bytes of
/// payload: segments of 1500 bytes fit the route (MTU 1500) and the skb
/// is translated; one byte more each and it is answered.
#[test]
fn tc_judges_a_udp_gso_packet_by_its_segments() {
    in_netns(Hook::Tc, vips(), |bed| {
        for (answered, (vip, headers)) in (1..).zip([(VIP4, 28), (VIP6, 48)]) {
            let flow = client_flow(vip, 53, 40_050);
            let big = packet::udp(&flow, None, &vec![0x5a; 3000 - headers]);
            let (verdict, out) = bed
                .run_tc_gso(bed.in_if, &big, 1500 - headers as u32, 3)
                .expect("run");
            assert_eq!(verdict, bed.verdicts.redirect, "{vip}");
            let (forward, _, _) = entries(bed, &flow_key(&flow, Protocol::Udp));
            assert_eq!(forward.mtu, 1500, "{vip}");
            check(
                &out,
                &Expected {
                    dport: 53,
                    ..translated(&flow, &forward)
                },
            );
            let (verdict, out) = bed
                .run_tc_gso(bed.in_if, &big, 1501 - headers as u32, 3)
                .expect("run");
            assert_eq!(verdict, bed.verdicts.bounce, "{vip}");
            check_too_big_gso(&out, &big, 1500);
            assert_eq!(counter(bed, Counter::SentIcmpTooBig), answered);
        }
    });
}

/// At XDP a frame longer than the MTU of the device it came in on cannot
/// have come off the wire as one packet: it is an aggregate generic XDP
/// sees after GRO (no segment size at XDP), its packets no longer than
/// that MTU. A 3000-byte one in on `in0` (MTU 1500) through a route of
/// MTU 1500 is translated and sent, not answered; once `in0` admits
/// 9000-byte packets, the same frame may be one packet too big for the
/// route, and is answered.
#[test]
fn xdp_sends_an_aggregate_longer_than_its_ingress_mtu() {
    in_netns(Hook::Xdp, vips(), |bed| {
        let flows: Vec<Flow> = [VIP4, VIP6]
            .into_iter()
            .map(|vip| client_flow(vip, 80, 40_040))
            .collect();
        for flow in &flows {
            bed.run_on(bed.in_if, &packet::tcp(flow, SYN, None, b""))
                .expect("syn");
            let big = segment_of(flow, 3000);
            let (verdict, out) = bed.run_on(bed.in_if, &big).expect("aggregate");
            assert_eq!(verdict, bed.verdicts.redirect, "{flow:?}");
            let (forward, _, _) = entries(bed, &flow_key(flow, Protocol::Tcp));
            assert_eq!(forward.mtu, 1500, "the route's MTU, cached");
            assert_eq!(out.len(), big.len());
            check(&out, &translated(flow, &forward));
        }
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 0);
        ip(&["link", "set", IN_DEV, "mtu", "9000"]);
        for (answered, flow) in (1..).zip(&flows) {
            let big = segment_of(flow, 3000);
            let (verdict, out) = bed.run_on(bed.in_if, &big).expect("too big");
            assert_eq!(verdict, bed.verdicts.bounce, "{flow:?}");
            check_too_big(&out, &big, 1500);
            assert_eq!(counter(bed, Counter::SentIcmpTooBig), answered);
        }
    });
}

/// Routes of MTU 1400 (locked) to a backend and to the client: a packet that fits
/// is translated; one of 1500 bytes (IPv4 with DF, or IPv6) is answered
/// with fragmentation needed / packet too big toward its sender (the
/// client from the VIP, the backend from the NAT address), counted apart
/// from missing routes and never reported as one; IPv4 without DF, which
/// a router would fragment, is dropped (`DropTooBig`).
fn too_big_for_the_route_is_answered(hook: Hook) {
    let vips = vec![
        nat_vip(
            VIP4,
            80,
            Protocol::Tcp,
            &[(BACKENDS4[0], Some(BACKEND_PORT))],
            NAT4,
            PORTS,
        ),
        nat_vip(
            VIP6,
            80,
            Protocol::Tcp,
            &[(BACKENDS6[0], Some(BACKEND_PORT))],
            NAT6,
            PORTS,
        ),
    ];
    in_netns(hook, vips, |bed| {
        for (to, dev) in [
            (BACKENDS4[0], OUT_DEV),
            (BACKENDS6[0], OUT_DEV),
            (CLIENT4, IN_DEV),
            (CLIENT6, IN_DEV),
        ] {
            // Locked: Linux routes forwarded IPv4 by a route's MTU only
            // then (or with `ip_forward_use_pmtu`), and so does the FIB
            // lookup.
            ip(&["route", "add", to, "dev", dev, "mtu", "lock", "1400"]);
        }
        let mut answered = 0;
        for (vip, nat) in [(VIP4, NAT4), (VIP6, NAT6)] {
            let flow = client_flow(vip, 80, 40_021);
            let (verdict, _) = bed
                .run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("syn");
            assert_eq!(verdict, bed.verdicts.redirect, "{vip}");
            let (forward, _, reply) = entries(bed, &flow_key(&flow, Protocol::Tcp));
            assert_eq!(forward.mtu, 1400, "{vip}");
            let fits = segment_of(&flow, 1400);
            let (verdict, out) = bed.run_on(bed.in_if, &fits).expect("fits");
            assert_eq!(verdict, bed.verdicts.redirect, "{vip}");
            check(&out, &translated(&flow, &forward));
            let big = segment_of(&flow, 1500);
            if vip == VIP4 {
                assert_ne!(big[14 + 6] & 0x40, 0, "DF set");
            }
            let (verdict, out) = bed.run_on(bed.in_if, &big).expect("too big");
            assert_eq!(verdict, bed.verdicts.bounce, "{vip}");
            check_too_big(&out, &big, 1400);
            answered += 1;
            assert_eq!(counter(bed, Counter::SentIcmpTooBig), answered);
            // The backend's reply, too big for the route to the client.
            let back = Flow {
                src: words_to_addr(forward.dst, flow_key(&flow, Protocol::Tcp).family),
                dst: addr(nat),
                sport: BACKEND_PORT,
                dport: u16::from_be(forward.sport),
            };
            let big = segment_of(&back, 1500);
            let (verdict, out) = bed.run_on(bed.out_if, &big).expect("reply");
            assert_eq!(verdict, bed.verdicts.bounce, "{vip}");
            assert_eq!(entries(bed, &flow_key(&flow, Protocol::Tcp)).2.mtu, 1400);
            assert_eq!(reply.direction, lb_common::consts::NAT_DIR_REPLY);
            check_too_big(&out, &big, 1400);
            answered += 1;
            assert_eq!(counter(bed, Counter::SentIcmpTooBig), answered);
        }
        // IPv4 without DF: dropped, untouched.
        let flow = client_flow(VIP4, 80, 40_021);
        let mut big = segment_of(&flow, 1500);
        big[14 + 6] &= !0x40;
        packet::fix_ipv4_checksum(&mut big);
        let (verdict, out) = bed.run_on(bed.in_if, &big).expect("no DF");
        assert_eq!(verdict, bed.verdicts.drop);
        assert_eq!(out, big);
        assert_eq!(counter(bed, Counter::DropTooBig), 1);
        assert_eq!(counter(bed, Counter::DropNoRoute), 0);
        let events = bed.bed.dataplane.drain_events();
        assert!(
            !events.iter().any(|e| e.kind == EVENT_NO_ROUTE),
            "{events:?}"
        );
    });
}

/// A route of MTU 500 (below 576, locked) to the backend: a 520-byte
/// packet with DF, too big for it, is shorter than the 548 bytes a full
/// IPv4 quote takes, and is answered quoting its first 68 bytes (the
/// longest IPv4 header and 8, `too_big::reply`'s short quote), reporting
/// 500, every checksum right. (A too-big packet shorter than 68 bytes, the
/// answer's `DropMalformed` case, cannot reach NAT: the FIB lookup's probe
/// is 68 bytes, so a route of a smaller MTU is no route.)
fn a_route_below_576_is_answered_with_a_68_byte_quote(hook: Hook) {
    let vips = vec![nat_vip(
        VIP4,
        80,
        Protocol::Tcp,
        &[(BACKENDS4[0], Some(BACKEND_PORT))],
        NAT4,
        PORTS,
    )];
    in_netns(hook, vips, |bed| {
        ip(&[
            "route",
            "add",
            BACKENDS4[0],
            "dev",
            OUT_DEV,
            "mtu",
            "lock",
            "500",
        ]);
        let flow = client_flow(VIP4, 80, 40_022);
        let (verdict, _) = bed
            .run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("syn");
        assert_eq!(verdict, bed.verdicts.redirect);
        let (forward, _, _) = entries(bed, &flow_key(&flow, Protocol::Tcp));
        assert_eq!(forward.mtu, 500, "the route's MTU, cached");
        let big = segment_of(&flow, 520);
        assert_ne!(big[14 + 6] & 0x40, 0, "DF set");
        let (verdict, out) = bed.run_on(bed.in_if, &big).expect("too big");
        assert_eq!(verdict, bed.verdicts.bounce);
        check_too_big_quoting(&out, &big, 500, 68);
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 1);
        assert_eq!(counter(bed, Counter::DropMalformed), 0);
        assert_eq!(counter(bed, Counter::DropInternal), 0);
    });
}

/// Every FIB answer that leaves no usable route (a blackhole, unreachable
/// or prohibit route to the backend; forwarding off on the ingress
/// interface): dropped untouched, counted as no route.
fn unusable_routes_drop_as_no_route(hook: Hook) {
    let vips = vec![
        nat_vip(VIP4, 80, Protocol::Tcp, &[(UNROUTED4, None)], NAT4, PORTS),
        nat_vip(VIP6, 80, Protocol::Tcp, &[(UNROUTED6, None)], NAT6, PORTS),
        nat_vip(
            VIP4,
            81,
            Protocol::Tcp,
            &[(BACKENDS4[0], Some(BACKEND_PORT))],
            NAT4,
            PORTS,
        ),
        nat_vip(
            VIP6,
            81,
            Protocol::Tcp,
            &[(BACKENDS6[0], Some(BACKEND_PORT))],
            NAT6,
            PORTS,
        ),
    ];
    in_netns(hook, vips, |bed| {
        let mut dropped = 0;
        let mut sport = 40_030;
        let mut send = |bed: &mut NatBed, vip: &str, port: u16, sport: u16| {
            let frame = packet::tcp(&client_flow(vip, port, sport), SYN, None, b"");
            let (verdict, out) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.drop, "{vip}:{port}");
            assert_eq!(out, frame, "a dropped frame is not rewritten");
            dropped += 1;
            assert_eq!(counter(bed, Counter::DropNoRoute), dropped);
        };
        for kind in ["blackhole", "unreachable", "prohibit"] {
            ip(&["route", "replace", kind, UNROUTED4]);
            ip(&["-6", "route", "replace", kind, UNROUTED6]);
            for vip in [VIP4, VIP6] {
                sport += 1;
                send(bed, vip, 80, sport);
            }
        }
        // Routed, but forwarding off where the packets come in.
        for vip in [VIP4, VIP6] {
            let family = if vip == VIP4 { "ipv4" } else { "ipv6" };
            sysctl(&format!("net.{family}.conf.all.forwarding=0"));
            sysctl(&format!("net.{family}.conf.{IN_DEV}.forwarding=0"));
            sport += 1;
            send(bed, vip, 81, sport);
        }
        assert_eq!(counter(bed, Counter::Forwarded), 0);
    });
}

/// Sets a sysctl of the caller's network namespace (`key=value`).
fn sysctl(setting: &str) {
    let status = std::process::Command::new("sysctl")
        .args(["-qw", setting])
        .status()
        .expect("run sysctl");
    assert!(status.success(), "sysctl {setting}");
}

lb_tests::on_both_hooks!(
    too_big_for_the_route_is_answered,
    a_route_below_576_is_answered_with_a_68_byte_quote,
    unusable_routes_drop_as_no_route,
    next_hop_on_the_ingress_interface_bounces,
    a_missing_neighbour_drops_and_names_the_gateway,
    no_route_drops_and_reports,
    other_traffic_still_passes,
    the_next_hop_is_looked_up_again_when_the_entry_is_touched,
    a_refresh_without_a_neighbour_keeps_the_cached_next_hop,
    a_tunnel_refresh_without_a_neighbour_keeps_the_cached_next_hop,
);
