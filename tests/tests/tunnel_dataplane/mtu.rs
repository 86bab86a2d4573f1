//! The MTU edge of every tunnel mode and outer family: the largest inner
//! packet the route's MTU (1500) carries once wrapped (1500 less the
//! overhead) is wrapped whole, its bytes checked by the independent
//! parser (a new flow, then a tracked packet, which takes the lean path
//! for IPIP over IPv4 once the next hop is cached); one byte more is
//! answered with fragmentation needed / packet too big. On a route whose
//! MTU is below 576 the answer quotes 68 bytes; a packet shorter than
//! that, still too big once wrapped, is dropped.

use lb_common::stats::Counter;
use lb_tests::{
    craft::tcp_flag,
    natbed::{addr, client_flow, BACKENDS4, IN_DEV, OUT_DEV},
    support::ip,
    testbed::{Hook, VIP4},
};
use lb_userspace::config::Protocol;

use crate::{
    counter, find,
    frames::{check_too_big, check_too_big_quoting, check_wrapped, wrapped_for},
    in_netns, vips,
    vlan::{client_segment, MODES},
    IPIP,
};

/// IP and TCP headers of a client's segment to `vip`.
fn headers_of(vip: &str) -> usize {
    if addr(vip).is_ipv4() {
        40
    } else {
        60
    }
}

/// 1500 - overhead bytes of inner packet: wrapped, 1500 bytes of outer
/// packet, every byte as the parser expects, no answer.
fn the_largest_packet_that_fits_is_wrapped_whole(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        let mut sport = 43_000;
        for (vip, port, overhead) in MODES {
            sport += 1;
            let inner = 1500 - overhead;
            let config = find(vips, vip, port, Protocol::Tcp);
            let flow = client_flow(vip, port, sport);
            for flags in [tcp_flag::SYN, tcp_flag::ACK] {
                let sent = client_segment(&[], vip, port, sport, flags, inner - headers_of(vip));
                assert_eq!(sent.len(), 14 + inner);
                let (verdict, out) = bed.run_on(bed.nat.in_if, &sent).expect("test run");
                assert_eq!(verdict, bed.verdicts().redirect, "{vip}:{port}");
                assert_eq!(out.len(), 14 + 1500, "{vip}:{port}");
                check_wrapped(&out, &wrapped_for(bed, config, &flow, &sent[14..], false));
            }
        }
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 0);
        assert_eq!(counter(bed, Counter::TunnelEncap), 2 * MODES.len() as u64);
    });
}

/// One byte more than fits: answered (after a packet of the flow that
/// fit, so for IPIP over IPv4 the lean path has the next hop cached and
/// must hand the packet on), nothing wrapped.
fn one_byte_more_than_fits_is_answered(hook: Hook) {
    in_netns(hook, vips(), |bed, _| {
        let mut sport = 44_000;
        for (vip, port, overhead) in MODES {
            sport += 1;
            let inner = 1500 - overhead;
            let fits = client_segment(
                &[],
                vip,
                port,
                sport,
                tcp_flag::SYN,
                inner - headers_of(vip),
            );
            let (verdict, _) = bed.run_on(bed.nat.in_if, &fits).expect("test run");
            assert_eq!(verdict, bed.verdicts().redirect, "{vip}:{port}");
            let encapsulated = counter(bed, Counter::TunnelEncap);
            let answered = counter(bed, Counter::SentIcmpTooBig);
            let sent = client_segment(
                &[],
                vip,
                port,
                sport,
                tcp_flag::ACK,
                inner + 1 - headers_of(vip),
            );
            assert_eq!(sent.len(), 14 + inner + 1);
            let (verdict, out) = bed.run_on(bed.nat.in_if, &sent).expect("test run");
            assert_eq!(verdict, bed.verdicts().bounce, "{vip}:{port}");
            let mtu = u16::try_from(1500 - overhead).expect("MTU");
            check_too_big(&out, &sent, 14, mtu);
            assert_eq!(counter(bed, Counter::SentIcmpTooBig), answered + 1);
            assert_eq!(counter(bed, Counter::TunnelEncap), encapsulated);
        }
    });
}

/// At XDP a frame longer than the MTU of the device it came in on is an
/// aggregate generic XDP sees after GRO, its packets no longer than that
/// MTU: with a route of MTU 1600, a 3000-byte inner packet in on `in0`
/// (MTU 1500), whose packets wrapped fit, is wrapped whole, not answered;
/// once `in0` admits 9000-byte packets the same frame may be one packet
/// too big for the route, and is answered.
#[test]
fn xdp_wraps_an_aggregate_longer_than_its_ingress_mtu() {
    in_netns(Hook::Xdp, vips(), |bed, vips| {
        ip(&["link", "set", OUT_DEV, "mtu", "1600"]);
        let mut sport = 45_000;
        let mut sent_all = Vec::new();
        for (vip, port, overhead) in MODES {
            sport += 1;
            let config = find(vips, vip, port, Protocol::Tcp);
            let flow = client_flow(vip, port, sport);
            let sent = client_segment(&[], vip, port, sport, tcp_flag::SYN, 3000 - headers_of(vip));
            let (verdict, out) = bed.run_on(bed.nat.in_if, &sent).expect("test run");
            assert_eq!(verdict, bed.verdicts().redirect, "{vip}:{port}");
            assert_eq!(out.len(), 14 + overhead + 3000, "{vip}:{port}");
            check_wrapped(&out, &wrapped_for(bed, config, &flow, &sent[14..], false));
            sent_all.push((sent, overhead));
        }
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 0);
        ip(&["link", "set", IN_DEV, "mtu", "9000"]);
        for (answered, (sent, overhead)) in (1..).zip(&sent_all) {
            let (verdict, out) = bed.run_on(bed.nat.in_if, sent).expect("test run");
            assert_eq!(verdict, bed.verdicts().bounce);
            let mtu = u16::try_from(1600 - overhead).expect("MTU");
            check_too_big(&out, sent, 14, mtu);
            assert_eq!(counter(bed, Counter::SentIcmpTooBig), answered);
        }
    });
}

/// Routes of `mtu` (locked) to every IPv4 backend.
fn lock_backend_routes(mtu: &str) {
    for backend in BACKENDS4 {
        ip(&["route", "add", backend, "dev", OUT_DEV, "mtu", "lock", mtu]);
    }
}

/// Routes of MTU 500 (below 576) to the backends: a 500-byte IPv4
/// packet, too big once wrapped in IPIP (520), is shorter than the 548
/// bytes a full quote takes, and is answered quoting its first 68 bytes
/// (`too_big::reply`'s short quote), reporting 480, every checksum right.
fn a_route_below_576_is_answered_with_a_68_byte_quote(hook: Hook) {
    in_netns(hook, vips(), |bed, _| {
        lock_backend_routes("500");
        let sent = client_segment(&[], VIP4, IPIP, 46_001, tcp_flag::ACK, 500 - 40);
        assert_eq!(sent.len(), 14 + 500);
        let (verdict, out) = bed.run_on(bed.nat.in_if, &sent).expect("test run");
        assert_eq!(verdict, bed.verdicts().bounce);
        check_too_big_quoting(&out, &sent, 14, 480, 68);
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 1);
        assert_eq!(counter(bed, Counter::TunnelEncap), 0);
    });
}

/// Routes of MTU 80 to the backends: a 64-byte IPv4 packet is too big
/// once wrapped in IPIP (84) but shorter than the 68 bytes the shortest
/// quote takes: dropped (`DropMalformed`), not answered, not wrapped;
/// one of 60 bytes fits (80) and is wrapped.
fn a_too_big_packet_shorter_than_68_bytes_is_dropped(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        lock_backend_routes("80");
        let sent = client_segment(&[], VIP4, IPIP, 46_002, tcp_flag::ACK, 64 - 40);
        assert_eq!(sent.len(), 14 + 64);
        let (verdict, _) = bed.run_on(bed.nat.in_if, &sent).expect("test run");
        assert_eq!(verdict, bed.verdicts().drop);
        assert_eq!(counter(bed, Counter::DropMalformed), 1);
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 0);
        assert_eq!(counter(bed, Counter::TunnelEncap), 0);
        let fits = client_segment(&[], VIP4, IPIP, 46_002, tcp_flag::ACK, 60 - 40);
        let (verdict, out) = bed.run_on(bed.nat.in_if, &fits).expect("test run");
        assert_eq!(verdict, bed.verdicts().redirect);
        assert_eq!(out.len(), 14 + 80);
        let config = find(vips, VIP4, IPIP, Protocol::Tcp);
        let flow = client_flow(VIP4, IPIP, 46_002);
        check_wrapped(&out, &wrapped_for(bed, config, &flow, &fits[14..], false));
        assert_eq!(counter(bed, Counter::TunnelEncap), 1);
    });
}

lb_tests::on_both_hooks!(
    the_largest_packet_that_fits_is_wrapped_whole,
    one_byte_more_than_fits_is_answered,
    a_route_below_576_is_answered_with_a_68_byte_quote,
    a_too_big_packet_shorter_than_68_bytes_is_dropped,
);
