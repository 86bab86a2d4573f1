//! The compiled packet path under BPF_PROG_TEST_RUN, one crafted frame per
//! branch. Each case asserts the verdict and the bytes that come out, and
//! runs on both entry points (`xdp_lb` and `tc_lb`; see `on_both_hooks!`).
//! Needs root (CAP_BPF, CAP_SYS_ADMIN).

use std::collections::HashSet;

use lb_common::stats::Counter;
use lb_tests::{
    corpus,
    packet::{self, Flow, ACK, SYN},
    testbed::{action, backend, skb_refuses, Hook, TestBed},
};
use lb_userspace::config::{Protocol, VipConfig};

use lb_tests::testbed::{vip4_tcp, vip4_udp, vip6_tcp, VIP4, VIP6};

fn bed(hook: Hook) -> TestBed {
    TestBed::with_hook(&[vip4_tcp(), vip4_udp(), vip6_tcp()], hook).expect("test bed")
}

fn flow4(sport: u16, dport: u16) -> Flow {
    Flow {
        src: "198.18.0.10".parse().expect("addr"),
        dst: VIP4.parse().expect("addr"),
        sport,
        dport,
    }
}

fn flow6(sport: u16) -> Flow {
    Flow {
        src: "2001:2::10".parse().expect("addr"),
        dst: VIP6.parse().expect("addr"),
        sport,
        dport: 80,
    }
}

/// Asserts `frame` is forwarded to Maglev's backend for `flow`, with only
/// the MACs rewritten.
fn assert_forwarded(bed: &mut TestBed, vip: &VipConfig, flow: &Flow, frame: &[u8]) {
    let (_, mac) = bed.maglev_backend(vip, flow).expect("expected backend");
    let (verdict, out) = bed.run(frame).expect("test run");
    assert_eq!(verdict, action::TX, "verdict for {flow:?}");
    assert_eq!(
        out,
        packet::forwarded(frame, mac),
        "output frame for {flow:?}"
    );
}

fn assert_untouched(bed: &mut TestBed, frame: &[u8], expected: u32, what: &str) {
    let (verdict, out) = bed
        .run(frame)
        .unwrap_or_else(|e| panic!("test run for {what}: {e:#}"));
    assert_eq!(verdict, expected, "verdict for {what}");
    assert_eq!(out, frame, "{what} must leave the frame unchanged");
}

/// The SYN is held half-open (counted there, not in the connection
/// table); the ACK moves the flow into the connection table.
fn tcp_syn_then_ack_v4_go_to_the_maglev_backend_and_join_conntrack(hook: Hook) {
    let mut bed = bed(hook);
    let flow = flow4(40000, 80);
    assert_forwarded(
        &mut bed,
        &vip4_tcp(),
        &flow,
        &packet::tcp(&flow, SYN, None, b""),
    );
    assert_eq!(
        bed.counter(Counter::ConntrackHalfOpenNew).expect("counter"),
        1
    );
    assert_eq!(bed.counter(Counter::ConntrackNew).expect("counter"), 0);
    assert_forwarded(
        &mut bed,
        &vip4_tcp(),
        &flow,
        &packet::tcp(&flow, ACK, None, b"GET /"),
    );
    assert_eq!(
        bed.counter(Counter::ConntrackHalfOpenPromoted)
            .expect("counter"),
        1
    );
    assert_eq!(bed.counter(Counter::ConntrackNew).expect("counter"), 1);
    // A later packet hits the connection table.
    assert_forwarded(
        &mut bed,
        &vip4_tcp(),
        &flow,
        &packet::tcp(&flow, ACK, None, b"more"),
    );
    assert_eq!(bed.counter(Counter::ConntrackHit).expect("counter"), 1);
    assert_eq!(bed.counter(Counter::Forwarded).expect("counter"), 3);
}

fn tcp_syn_then_ack_v6_go_to_the_maglev_backend_and_join_conntrack(hook: Hook) {
    let mut bed = bed(hook);
    let flow = flow6(40001);
    assert_forwarded(
        &mut bed,
        &vip6_tcp(),
        &flow,
        &packet::tcp(&flow, SYN, None, b""),
    );
    assert_forwarded(
        &mut bed,
        &vip6_tcp(),
        &flow,
        &packet::tcp(&flow, ACK, None, b"x"),
    );
    assert_forwarded(
        &mut bed,
        &vip6_tcp(),
        &flow,
        &packet::tcp(&flow, ACK, None, b"y"),
    );
    assert_eq!(
        bed.counter(Counter::ConntrackHalfOpenNew).expect("counter"),
        1
    );
    assert_eq!(
        bed.counter(Counter::ConntrackHalfOpenPromoted)
            .expect("counter"),
        1
    );
    assert_eq!(bed.counter(Counter::ConntrackNew).expect("counter"), 1);
    assert_eq!(bed.counter(Counter::ConntrackHit).expect("counter"), 1);
}

fn udp_to_a_vip_is_forwarded_and_tracked(hook: Hook) {
    let mut bed = bed(hook);
    let flow = flow4(5353, 53);
    let frame = packet::udp(&flow, None, b"query");
    assert_forwarded(&mut bed, &vip4_udp(), &flow, &frame);
    assert_forwarded(&mut bed, &vip4_udp(), &flow, &frame);
    assert_eq!(bed.counter(Counter::ConntrackNew).expect("counter"), 1);
    assert_eq!(bed.counter(Counter::ConntrackHit).expect("counter"), 1);
}

fn flows_spread_over_every_backend_and_counters_add_up(hook: Hook) {
    let mut bed = bed(hook);
    let vip = vip4_tcp();
    let mut seen = HashSet::new();
    let mut bytes = 0u64;
    for sport in 10_000..10_300 {
        let flow = flow4(sport, 80);
        let frame = packet::tcp(&flow, SYN, None, b"");
        bytes += frame.len() as u64;
        assert_forwarded(&mut bed, &vip, &flow, &frame);
        seen.insert(bed.maglev_backend(&vip, &flow).expect("backend").0);
    }
    assert_eq!(seen.len(), 3, "300 flows reached {seen:?}");
    let applied = &bed.balancer.vips()[&lb_userspace::reconcile::VipId::of(&vip)];
    let traffic = bed.dataplane.vip_traffic(applied.id).expect("vip stats");
    assert_eq!(
        (traffic.packets, traffic.bytes, traffic.new_flows),
        (300, bytes, 300)
    );
    let per_backend: u64 = applied
        .backends
        .values()
        .map(|b| {
            bed.dataplane
                .backend_traffic(b.id)
                .expect("backend stats")
                .packets
        })
        .sum();
    assert_eq!(per_backend, 300);
}

fn vlan_tagged_frames_keep_their_tag_and_are_forwarded(hook: Hook) {
    let mut bed = bed(hook);
    let flow = flow4(40002, 80);
    let frame = packet::tcp(&flow, SYN, Some(42), b"");
    assert_eq!(&frame[12..14], &[0x81, 0x00]);
    assert_forwarded(&mut bed, &vip4_tcp(), &flow, &frame);
    let flow = flow6(40003);
    assert_forwarded(
        &mut bed,
        &vip6_tcp(),
        &flow,
        &packet::tcp(&flow, SYN, Some(7), b""),
    );
}

fn ipv4_with_options_is_forwarded(hook: Hook) {
    let mut bed = bed(hook);
    let flow = flow4(40004, 80);
    // Router alert (4 bytes), then NOP padding to 12 bytes of options.
    let options = [0x94, 0x04, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0];
    let frame = packet::with_ipv4_options(&packet::tcp(&flow, SYN, None, b""), &options);
    assert_eq!(frame[14] & 0x0f, 8, "IHL with options");
    assert_forwarded(&mut bed, &vip4_tcp(), &flow, &frame);
    // The most options IPv4 allows: IHL 15.
    let frame = packet::with_ipv4_options(&packet::tcp(&flow, ACK, None, b""), &[1; 40]);
    assert_forwarded(&mut bed, &vip4_tcp(), &flow, &frame);
}

/// Fragments to a VIP are never forwarded, nor passed to the node's stack
/// (which holds the VIP): dropped. The rest is in `fragments.rs`.
fn fragments_to_a_vip_are_dropped_not_forwarded(hook: Hook) {
    let mut bed = bed(hook);
    let flow = flow4(40005, 80);
    let whole = packet::tcp(&flow, ACK, None, &[7; 64]);
    let first = packet::as_ipv4_fragment(&whole, true, 0);
    let middle = packet::as_ipv4_fragment(&whole, true, 185);
    let last = packet::as_ipv4_fragment(&whole, false, 370);
    for (frame, what) in [
        (&first, "first fragment"),
        (&middle, "middle fragment"),
        (&last, "last fragment"),
    ] {
        assert_untouched(&mut bed, frame, action::DROP, what);
    }
    assert_eq!(bed.counter(Counter::DropFragment).expect("counter"), 3);
    assert_eq!(bed.counter(Counter::PassFragment).expect("counter"), 0);
    assert_eq!(bed.counter(Counter::Forwarded).expect("counter"), 0);
}

fn traffic_not_for_a_vip_passes_untouched(hook: Hook) {
    let mut bed = bed(hook);
    let mut other_host = flow4(40006, 80);
    other_host.dst = "198.18.0.2".parse().expect("addr");
    assert_untouched(
        &mut bed,
        &packet::tcp(&other_host, SYN, None, b""),
        action::PASS,
        "other address",
    );
    let other_port = flow4(40006, 8080);
    assert_untouched(
        &mut bed,
        &packet::tcp(&other_port, SYN, None, b""),
        action::PASS,
        "other port",
    );
    let wrong_protocol = flow4(40006, 80);
    assert_untouched(
        &mut bed,
        &packet::udp(&wrong_protocol, None, b"x"),
        action::PASS,
        "UDP to a TCP VIP",
    );
    assert_eq!(bed.counter(Counter::PassNotVip).expect("counter"), 3);
    assert_untouched(&mut bed, &packet::arp_request(), action::PASS, "ARP");
    assert_eq!(bed.counter(Counter::PassNotIp).expect("counter"), 1);
    assert_untouched(
        &mut bed,
        &packet::icmp_echo([198, 18, 0, 10], [198, 18, 0, 100]),
        action::PASS,
        "ICMP to the VIP",
    );
    assert_eq!(bed.counter(Counter::PassUnsupportedL4).expect("counter"), 1);
}

/// A VIP's packet in a frame for another host's MAC (a switch flooding
/// frames for an ECMP peer whose link went down) is that host's to
/// balance: passed up untouched (the kernel drops it as another host's),
/// tracking nothing, counted as such (`PassForeignMac`, not as traffic
/// for no VIP); the same packet sent to this node is balanced.
fn a_vips_packet_for_another_hosts_mac_is_left_alone(hook: Hook) {
    let mut bed = bed(hook);
    let vip = vip4_tcp();
    let flow = flow4(40007, 80);
    let mut frame = packet::tcp(&flow, SYN, None, b"");
    let ours = frame.clone();
    frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0x0e, 0x07]);
    assert_untouched(&mut bed, &frame, action::PASS, "a frame for another MAC");
    assert_eq!(bed.counter(Counter::PassForeignMac).expect("counter"), 1);
    assert_eq!(bed.counter(Counter::PassNotVip).expect("counter"), 0);
    assert_eq!(bed.handshakes(), 0, "nothing tracked");
    for counter in [Counter::ConntrackHalfOpenNew, Counter::ConntrackNew] {
        assert_eq!(bed.counter(counter).expect("counter"), 0, "{counter:?}");
    }
    assert_forwarded(&mut bed, &vip, &flow, &ours);
}

fn truncated_frames_are_dropped_at_every_length(hook: Hook) {
    let mut bed = bed(hook);
    let frames = [
        ("TCP/IPv4", packet::tcp(&flow4(40007, 80), SYN, None, b"")),
        (
            "TCP/IPv4/VLAN",
            packet::tcp(&flow4(40007, 80), SYN, Some(5), b""),
        ),
        ("UDP/IPv4", packet::udp(&flow4(40007, 53), None, b"")),
        ("TCP/IPv6", packet::tcp(&flow6(40007), SYN, None, b"")),
        ("UDP/IPv6/VLAN", packet::udp(&flow6(40007), Some(5), b"")),
    ];
    let mut cases = 0;
    for (what, frame) in &frames {
        // BPF_PROG_TEST_RUN takes no frame shorter than an Ethernet header,
        // and at tc not the ones it builds no skb from (`skb_refuses`).
        for len in 14..frame.len() {
            let cut = &frame[..len];
            if hook == Hook::Tc && skb_refuses(cut) {
                assert!(bed.run(cut).is_err(), "the kernel took {what} cut at {len}");
                continue;
            }
            assert_untouched(
                &mut bed,
                cut,
                action::DROP,
                &format!("{what} cut at {len} bytes"),
            );
            cases += 1;
        }
    }
    assert_eq!(bed.counter(Counter::DropMalformed).expect("counter"), cases);
    assert_eq!(bed.counter(Counter::Forwarded).expect("counter"), 0);
}

fn inconsistent_header_fields_are_dropped(hook: Hook) {
    let mut bed = bed(hook);
    let syn = packet::tcp(&flow4(40008, 80), SYN, None, b"");
    let udp = packet::udp(&flow4(40008, 53), None, b"data");
    let cases = [
        ("IHL below 5", packet::with_byte(&syn, 14, 0x44)),
        ("IP version 5", packet::with_byte(&syn, 14, 0x55)),
        (
            "total length beyond the frame",
            packet::with_byte(&syn, 16, 0x10),
        ),
        (
            "TCP data offset below 5",
            packet::with_byte(&syn, 14 + 20 + 12, 0x40),
        ),
        (
            "TCP data offset beyond the packet",
            packet::with_byte(&syn, 14 + 20 + 12, 0xf0),
        ),
        (
            "UDP length below 8",
            packet::with_byte(&udp, 14 + 20 + 5, 4),
        ),
        (
            "UDP length beyond the packet",
            packet::with_byte(&udp, 14 + 20 + 5, 200),
        ),
    ];
    for (what, frame) in &cases {
        assert_untouched(&mut bed, frame, action::DROP, what);
    }
    assert_eq!(
        bed.counter(Counter::DropMalformed).expect("counter"),
        cases.len() as u64
    );
}

fn a_vip_without_backends_drops_its_packets(hook: Hook) {
    let mut empty = vip4_tcp();
    empty.backends.iter_mut().for_each(|b| b.weight = 0);
    let mut bed = TestBed::with_hook(&[empty], hook).expect("test bed");
    let frame = packet::tcp(&flow4(40009, 80), SYN, None, b"");
    assert_untouched(
        &mut bed,
        &frame,
        action::DROP,
        "SYN to a VIP with no backend",
    );
    assert_eq!(bed.counter(Counter::DropNoBackend).expect("counter"), 1);
    // The drop is reported to lbd's log once, however many packets follow
    // (rate limit: one a second per CPU).
    for _ in 0..10 {
        bed.run(&frame).expect("run");
    }
    let events = bed.dataplane.drain_events();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        !events.is_empty() && events.len() <= cpus,
        "one per CPU at most: {events:?}"
    );
    assert_eq!(events[0].kind, lb_common::consts::EVENT_NO_BACKEND);
    assert_eq!(events[0].flow.sport, 40009u16.to_be());
    assert_eq!(bed.counter(Counter::DropNoBackend).expect("counter"), 11);
}

fn established_flows_keep_their_backend_when_one_is_added_and_rehash_when_theirs_is_removed(
    hook: Hook,
) {
    let mut bed = bed(hook);
    let mut vip = vip4_tcp();
    let flows: Vec<Flow> = (20_000..20_200).map(|p| flow4(p, 80)).collect();
    let mut pinned = Vec::new();
    for flow in &flows {
        let (address, mac) = bed.maglev_backend(&vip, flow).expect("backend");
        assert_forwarded(&mut bed, &vip, flow, &packet::tcp(flow, SYN, None, b""));
        pinned.push((address, mac));
    }

    // A fourth backend changes the table; every tracked flow stays put.
    vip.backends.push(backend("198.18.0.14", 0x14, 100));
    bed.apply(&[vip.clone(), vip4_udp(), vip6_tcp()])
        .expect("apply");
    let mut would_move = 0;
    for (flow, (address, mac)) in flows.iter().zip(&pinned) {
        if bed.maglev_backend(&vip, flow).expect("backend").0 != *address {
            would_move += 1;
        }
        let frame = packet::tcp(flow, ACK, None, b"");
        let (verdict, out) = bed.run(&frame).expect("run");
        assert_eq!(verdict, action::TX);
        assert_eq!(
            out,
            packet::forwarded(&frame, *mac),
            "tracked flow moved after an add"
        );
    }
    assert!(
        would_move > 0,
        "the add must have changed some slots of these flows"
    );

    // Removing backend .12: its flows are hashed again, the others stay.
    let removed: std::net::IpAddr = "198.18.0.12".parse().expect("addr");
    vip.backends.retain(|b| b.address != removed);
    bed.apply(&[vip.clone(), vip4_udp(), vip6_tcp()])
        .expect("apply");
    let mut rehashed = 0;
    for (flow, (address, mac)) in flows.iter().zip(&pinned) {
        let frame = packet::tcp(flow, ACK, None, b"");
        let (verdict, out) = bed.run(&frame).expect("run");
        assert_eq!(verdict, action::TX);
        if *address == removed {
            let (now, now_mac) = bed.maglev_backend(&vip, flow).expect("backend");
            assert_ne!(now, removed);
            assert_eq!(out, packet::forwarded(&frame, now_mac));
            rehashed += 1;
        } else {
            assert_eq!(
                out,
                packet::forwarded(&frame, *mac),
                "flow of a kept backend moved"
            );
        }
    }
    assert!(rehashed > 0);
    assert_eq!(
        bed.counter(Counter::ConntrackRehash).expect("counter"),
        rehashed
    );
}

fn icmp_errors_reach_the_backend_that_owns_the_quoted_flow(hook: Hook) {
    let mut bed = bed(hook);
    let mut vip = vip4_tcp();
    let flows: Vec<corpus::VipFlow> = (21_000..21_200)
        .map(|p| corpus::vip_flow(Protocol::Tcp, false, p))
        .collect();
    let mut pinned = Vec::new();
    for flow in &flows {
        let (_, mac) = bed.maglev_backend(&vip, &flow.flow()).expect("backend");
        bed.run(&packet::tcp(&flow.flow(), SYN, None, b""))
            .expect("run");
        pinned.push(mac);
    }
    // A fourth backend moves some flows' Maglev slot; their ICMP errors
    // still follow the SYN's backend (the flows are half-open: handshakes
    // in the connection table, which an error reads).
    vip.backends.push(backend("198.18.0.14", 0x14, 100));
    bed.apply(&[vip.clone(), vip4_udp(), vip6_tcp()])
        .expect("apply");
    let mut moved = 0;
    for (flow, mac) in flows.iter().zip(&pinned) {
        if bed.maglev_backend(&vip, &flow.flow()).expect("backend").1 != *mac {
            moved += 1;
        }
        let frame = corpus::frag_needed(flow);
        let (verdict, out) = bed.run(&frame).expect("run");
        assert_eq!(verdict, action::TX, "{flow:?}");
        assert_eq!(out, packet::forwarded(&frame, *mac), "{flow:?}");
    }
    assert!(moved > 0, "the add must have moved some of these flows");
    assert_eq!(
        bed.counter(Counter::ForwardedIcmpError).expect("counter"),
        200
    );
    // Reading the tables is all an ICMP error does.
    assert_eq!(bed.counter(Counter::ConntrackHit).expect("counter"), 0);
    assert_eq!(bed.counter(Counter::ConntrackNew).expect("counter"), 0);
    assert_eq!(
        bed.counter(Counter::ConntrackHalfOpenNew).expect("counter"),
        200
    );
    assert_eq!(bed.handshakes(), 200);
}

fn icmp_errors_neither_create_nor_re_pin_flows(hook: Hook) {
    let mut bed = bed(hook);
    let mut vip = vip6_tcp();
    // An unknown flow: Maglev's backend, and no entry afterwards.
    let flow = corpus::vip_flow(Protocol::Tcp, true, 22_000);
    let frame = corpus::frag_needed(&flow);
    let (_, mac) = bed.maglev_backend(&vip, &flow.flow()).expect("backend");
    let (verdict, out) = bed.run(&frame).expect("run");
    assert_eq!(verdict, action::TX);
    assert_eq!(out, packet::forwarded(&frame, mac));
    assert_eq!(bed.counter(Counter::ConntrackNew).expect("counter"), 0);
    assert_eq!(bed.dataplane.half_open_count(), 0);
    assert_forwarded(
        &mut bed,
        &vip,
        &flow.flow(),
        &packet::tcp(&flow.flow(), SYN, None, b""),
    );
    assert_eq!(
        bed.counter(Counter::ConntrackHalfOpenNew).expect("counter"),
        1
    );
    // The VIP's traffic counts the error (no new flow) and the SYN.
    let applied = &bed.balancer.vips()[&lb_userspace::reconcile::VipId::of(&vip)];
    let traffic = bed.dataplane.vip_traffic(applied.id).expect("vip stats");
    assert_eq!((traffic.packets, traffic.new_flows), (2, 1));

    // Its backend removed: the error goes to Maglev's new pick, and the
    // half-open entry is left for the flow's own next packet (its ACK) to
    // take out and hash again.
    let (address, _) = bed.maglev_backend(&vip, &flow.flow()).expect("backend");
    vip.backends.retain(|b| b.address != address);
    bed.apply(&[vip4_tcp(), vip4_udp(), vip.clone()])
        .expect("apply");
    let (_, new_mac) = bed.maglev_backend(&vip, &flow.flow()).expect("backend");
    let (verdict, out) = bed.run(&frame).expect("run");
    assert_eq!(verdict, action::TX);
    assert_eq!(out, packet::forwarded(&frame, new_mac));
    assert_eq!(bed.counter(Counter::ConntrackRehash).expect("counter"), 0);
    assert_forwarded(
        &mut bed,
        &vip,
        &flow.flow(),
        &packet::tcp(&flow.flow(), ACK, None, b""),
    );
    assert_eq!(bed.counter(Counter::ConntrackRehash).expect("counter"), 1);
}

fn icmp_errors_for_a_vip_without_backends_are_dropped(hook: Hook) {
    let mut empty = vip4_tcp();
    empty.backends.iter_mut().for_each(|b| b.weight = 0);
    let mut bed = TestBed::with_hook(&[empty], hook).expect("test bed");
    let frame = corpus::frag_needed(&corpus::vip_flow(Protocol::Tcp, false, 23_000));
    assert_untouched(&mut bed, &frame, action::DROP, "ICMP error, no backend");
    assert_eq!(bed.counter(Counter::DropNoBackend).expect("counter"), 1);
}

fn a_retransmitted_syn_stays_on_its_tracked_backend_and_a_dead_ones_is_rehashed(hook: Hook) {
    let mut bed = bed(hook);
    let mut vip = vip4_tcp();
    let flows: Vec<Flow> = (30_000..30_100).map(|p| flow4(p, 80)).collect();
    let mut pinned = Vec::new();
    for flow in &flows {
        let (address, mac) = bed.maglev_backend(&vip, flow).expect("backend");
        assert_forwarded(&mut bed, &vip, flow, &packet::tcp(flow, SYN, None, b""));
        pinned.push((address, mac));
    }
    assert_eq!(
        bed.counter(Counter::ConntrackHalfOpenNew).expect("counter"),
        100
    );

    // After a change of the table, the SYNs come again (retransmitted):
    // each goes where its half-open flow's first SYN went, not where
    // Maglev says now.
    vip.backends.push(backend("198.18.0.14", 0x14, 100));
    bed.apply(&[vip.clone(), vip4_udp(), vip6_tcp()])
        .expect("apply");
    let mut would_move = 0;
    for (flow, (address, mac)) in flows.iter().zip(&pinned) {
        if bed.maglev_backend(&vip, flow).expect("backend").0 != *address {
            would_move += 1;
        }
        let frame = packet::tcp(flow, SYN, None, b"");
        let (verdict, out) = bed.run(&frame).expect("run");
        assert_eq!(verdict, action::TX);
        assert_eq!(
            out,
            packet::forwarded(&frame, *mac),
            "retransmitted SYN moved"
        );
    }
    assert!(would_move > 0, "the add must have changed some slots");
    assert_eq!(
        bed.counter(Counter::ConntrackHalfOpenNew).expect("counter"),
        100,
        "a retransmitted SYN adds nothing"
    );
    assert_eq!(bed.counter(Counter::ConntrackNew).expect("counter"), 0);
    assert_eq!(bed.handshakes(), 100);

    // Backend .11 removed: its flows' SYNs are hashed again (their
    // handshakes re-pinned in place).
    let removed: std::net::IpAddr = "198.18.0.11".parse().expect("addr");
    vip.backends.retain(|b| b.address != removed);
    bed.apply(&[vip.clone(), vip4_udp(), vip6_tcp()])
        .expect("apply");
    let mut rehashed = 0;
    for (flow, (address, _)) in flows.iter().zip(&pinned) {
        if *address == removed {
            let (_, now_mac) = bed.maglev_backend(&vip, flow).expect("backend");
            let frame = packet::tcp(flow, SYN, None, b"");
            let (verdict, out) = bed.run(&frame).expect("run");
            assert_eq!(verdict, action::TX);
            assert_eq!(out, packet::forwarded(&frame, now_mac));
            rehashed += 1;
        }
    }
    assert!(rehashed > 0);
    assert_eq!(
        bed.counter(Counter::ConntrackRehash).expect("counter"),
        rehashed
    );
    assert_eq!(
        bed.counter(Counter::ConntrackHalfOpenNew).expect("counter"),
        100
    );
    assert_eq!(bed.handshakes(), 100);
}

/// A load verifies the program of its hook only (lbd's `attach`): a node
/// at tc never waits for `xdp_lb`'s verification, nor one at XDP for
/// `tc_lb`'s. The other hook's program is verified when first used, and
/// then forwards as its hook's own would.
#[test]
fn a_load_verifies_its_hooks_program_and_the_other_on_first_use() {
    for (hook, other) in [(Hook::Xdp, Hook::Tc), (Hook::Tc, Hook::Xdp)] {
        let mut bed = bed(hook);
        let loaded = |bed: &mut TestBed, hook: Hook| {
            let name = match hook {
                Hook::Xdp => lb_common::consts::names::PROG_LB,
                Hook::Tc => lb_common::consts::names::PROG_TC_LB,
            };
            let program = bed.dataplane.ebpf_mut().program(name);
            program.expect("the object has the program").fd().is_ok()
        };
        assert!(loaded(&mut bed, hook), "{hook:?}: its program is loaded");
        assert!(!loaded(&mut bed, other), "{hook:?}: {other:?}'s is not");
        bed.hook = other;
        let flow = flow4(40001, 80);
        let frame = packet::tcp(&flow, SYN, None, b"");
        assert_forwarded(&mut bed, &vip4_tcp(), &flow, &frame);
        assert!(
            loaded(&mut bed, other),
            "{hook:?}: {other:?}'s on first use"
        );
    }
}

lb_tests::on_both_hooks!(
    tcp_syn_then_ack_v4_go_to_the_maglev_backend_and_join_conntrack,
    tcp_syn_then_ack_v6_go_to_the_maglev_backend_and_join_conntrack,
    udp_to_a_vip_is_forwarded_and_tracked,
    flows_spread_over_every_backend_and_counters_add_up,
    vlan_tagged_frames_keep_their_tag_and_are_forwarded,
    ipv4_with_options_is_forwarded,
    fragments_to_a_vip_are_dropped_not_forwarded,
    traffic_not_for_a_vip_passes_untouched,
    a_vips_packet_for_another_hosts_mac_is_left_alone,
    truncated_frames_are_dropped_at_every_length,
    inconsistent_header_fields_are_dropped,
    a_vip_without_backends_drops_its_packets,
    established_flows_keep_their_backend_when_one_is_added_and_rehash_when_theirs_is_removed,
    icmp_errors_reach_the_backend_that_owns_the_quoted_flow,
    icmp_errors_neither_create_nor_re_pin_flows,
    icmp_errors_for_a_vip_without_backends_are_dropped,
    a_retransmitted_syn_stays_on_its_tracked_backend_and_a_dead_ones_is_rehashed,
);

/// The bench's table-write pass (`cargo xtask bench --only maglev`) runs
/// on a loaded data plane and counts what lbd's reconcile writes: a new
/// VIP's two table copies whole; when one of three backends leaves or
/// comes back, its third of each copy (Maglev moves about 1/N); and the
/// tables read back alike one slot at a time, in batches and in place.
#[test]
fn the_maglev_write_bench_counts_the_slots_a_reconcile_writes() {
    let writes = lb_tests::bench::maglev_writes::run(2, 1).expect("the pass");
    let table = u64::from(writes.table_size);
    let slots: Vec<u64> = writes.changes.iter().map(|c| c.slots).collect();
    assert_eq!(slots.len(), 3, "{writes:?}");
    assert_eq!(slots[0], 2 * 2 * table, "two VIPs, two copies each");
    for moved in &slots[1..] {
        let share = *moved as f64 / (2 * 2 * table) as f64;
        assert!((0.30..0.37).contains(&share), "{share} of the slots moved");
    }
    let read = writes.read_back.expect("the tables read back");
    assert_eq!(read.slots, 2 * table, "one copy of each VIP's table");
    for change in &writes.changes {
        assert!(change.apply_ms.median > 0.0, "{change:?}");
        assert!(
            change.per_slot_ms.median > 0.0 && change.batched_ms.median > 0.0,
            "{change:?}"
        );
    }
}
