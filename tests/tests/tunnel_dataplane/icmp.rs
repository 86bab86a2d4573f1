//! ICMP on the tunnel path: an error about a flow goes wrapped to its
//! backend (dropped as too big when it would not fit once wrapped); a
//! packet too big for the path once wrapped is answered with
//! fragmentation needed / packet too big (path MTU discovery works), one
//! that just fits is wrapped, and at tc a GRO'd skb is judged by its
//! segments.

use std::net::IpAddr;

use etherparse::{
    icmpv4::DestUnreachableHeader, Icmpv4Type, Icmpv6Type, LinkHeader, NetHeaders, PacketHeaders,
    TransportHeader,
};
use lb_common::{
    consts::AF_INET,
    hash::flow_hash,
    stats::Counter,
    tunnel::{self},
};
use lb_tests::{
    natbed::{
        addr, client_flow, neighbour_mac, CLIENT4, CLIENT6, GATEWAY4, GATEWAY6, IN_MAC, OUT_DEV,
    },
    packet::{self, Flow, ACK, CLIENT_MAC, SYN},
    support::ip,
    testbed::{flow_key, Hook, VIP4, VIP6},
};
use lb_userspace::config::Protocol;

use crate::{
    counter, find,
    frames::{check_wrapped, icmp_error, outer_source, Wrapped},
    in_netns, vips, GUE, GUE_4IN6, IPIP,
};

/// An ICMP error about a flow (to the VIP, quoting its reply) goes to the
/// flow's backend, wrapped, without touching the flow's entry.
fn icmp_error_about_a_flow_goes_wrapped_to_its_backend(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        for (vip, router) in [(VIP4, GATEWAY4), (VIP6, GATEWAY6)] {
            let flow = client_flow(vip, GUE, 40_003);
            let key = flow_key(&flow, Protocol::Tcp);
            bed.run_on(bed.nat.in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("syn");
            let config = find(vips, vip, GUE, Protocol::Tcp);
            // Half-open: the error follows the SYN's backend all the same.
            let entry = bed.nat.bed.handshake(&key).expect("held half-open");
            let backend = bed
                .backend_address(config, entry.backend_id)
                .expect("backend");
            let reply = packet::tcp(
                &Flow {
                    src: flow.dst,
                    dst: flow.src,
                    sport: flow.dport,
                    dport: flow.sport,
                },
                SYN,
                None,
                b"a reply from the backend",
            );
            let error = icmp_error(router, &reply);
            let (verdict, out) = bed.run_on(bed.nat.in_if, &error).expect("test run");
            assert_eq!(verdict, bed.verdicts().redirect, "{vip}");
            let hash = flow_hash(&key);
            check_wrapped(
                &out,
                &Wrapped {
                    dmac: neighbour_mac(&backend.to_string()).expect("neighbour"),
                    src: outer_source(&bed.config, &key, key.family == AF_INET),
                    dst: backend,
                    gue: Some((
                        u16::from_be(tunnel::gue_source_port(hash)),
                        tunnel::GUE_PORT_DEFAULT,
                    )),
                    zero_csum: false,
                    inner: &error[14..],
                    flow_label: hash & 0xf_ffff,
                },
            );
            let after = bed.nat.bed.handshake(&key).expect("still half-open");
            assert_eq!(after, entry, "an error does not touch the flow's entry");
        }
        assert_eq!(counter(bed, Counter::ForwardedIcmpError), 2);
        assert_eq!(counter(bed, Counter::TunnelEncap), 4);
    });
}

/// An ICMP error to an IPv4 VIP whose backends are IPv6 (GUE 4in6): it
/// goes wrapped to the flow's backend in GUE over IPv6, whose UDP
/// checksum (mandatory over IPv6) the data plane builds from the ICMP
/// message's share (0: a finished ICMPv4 message sums to 0) and the
/// independent parser checks over the whole datagram.
fn icmp_error_to_an_ipv4_vip_goes_in_gue_over_ipv6_with_its_udp_checksum(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        let flow = client_flow(VIP4, GUE_4IN6, 40_006);
        let key = flow_key(&flow, Protocol::Tcp);
        bed.run_on(bed.nat.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("syn");
        let config = find(vips, VIP4, GUE_4IN6, Protocol::Tcp);
        let entry = bed.nat.bed.handshake(&key).expect("held half-open");
        let backend = bed
            .backend_address(config, entry.backend_id)
            .expect("backend");
        assert!(backend.is_ipv6(), "{backend}");
        let reply = packet::tcp(
            &Flow {
                src: flow.dst,
                dst: flow.src,
                sport: flow.dport,
                dport: flow.sport,
            },
            SYN,
            None,
            b"a reply from the backend, odd length",
        );
        let error = icmp_error(GATEWAY4, &reply);
        let (verdict, out) = bed.run_on(bed.nat.in_if, &error).expect("test run");
        assert_eq!(verdict, bed.verdicts().redirect);
        let hash = flow_hash(&key);
        check_wrapped(
            &out,
            &Wrapped {
                dmac: neighbour_mac(&backend.to_string()).expect("neighbour"),
                src: outer_source(&bed.config, &key, false),
                dst: backend,
                gue: Some((
                    u16::from_be(tunnel::gue_source_port(hash)),
                    tunnel::GUE_PORT_DEFAULT,
                )),
                zero_csum: false,
                inner: &error[14..],
                flow_label: hash & 0xf_ffff,
            },
        );
        assert_eq!(counter(bed, Counter::ForwardedIcmpError), 1);
        assert_eq!(counter(bed, Counter::TunnelEncap), 2);
    });
}

/// A packet that would not fit the route's MTU (1500) once wrapped is
/// answered: ICMP fragmentation-needed / ICMPv6 packet-too-big from the
/// VIP to the client, back out of the ingress interface, quoting as much
/// as the reply may carry, every checksum right.
fn too_big_is_answered_with_icmp(hook: Hook) {
    in_netns(hook, vips(), |bed, _| {
        for (vip, port, overhead) in [
            (VIP4, IPIP, 20),
            (VIP4, GUE, 28),
            (VIP6, IPIP, 40),
            (VIP6, GUE, 48),
            (VIP4, GUE_4IN6, 48),
        ] {
            let flow = client_flow(vip, port, 40_004);
            let header = if vip == VIP4 { 20 + 20 } else { 40 + 20 };
            let payload = vec![0x5a; 1500 - header];
            let big = packet::tcp(&flow, ACK, None, &payload);
            assert_eq!(big.len(), 14 + 1500);
            let before = counter(bed, Counter::SentIcmpTooBig);
            let (verdict, out) = bed.run_on(bed.nat.in_if, &big).expect("test run");
            assert_eq!(verdict, bed.verdicts().bounce, "{vip}:{port}");
            assert_eq!(counter(bed, Counter::SentIcmpTooBig), before + 1);
            let headers = PacketHeaders::from_ethernet_slice(&out).expect("parse");
            let Some(LinkHeader::Ethernet2(eth)) = &headers.link else {
                panic!("no Ethernet");
            };
            assert_eq!(
                (eth.source, eth.destination),
                (IN_MAC, CLIENT_MAC),
                "MACs swapped"
            );
            let mtu = 1500 - overhead;
            let quoted = headers.payload.slice();
            match (&headers.net, &headers.transport) {
                (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Icmpv4(icmp))) => {
                    assert_eq!(out.len(), 14 + 576, "an IPv4 error is 576 bytes");
                    assert_eq!(
                        (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                        (addr(vip), addr(CLIENT4))
                    );
                    assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                    assert_eq!(
                        icmp.icmp_type,
                        Icmpv4Type::DestinationUnreachable(
                            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: mtu }
                        )
                    );
                    assert_eq!(
                        icmp.checksum,
                        icmp.icmp_type.calc_checksum(quoted),
                        "ICMP checksum"
                    );
                    assert_eq!(quoted, &big[14..14 + 548], "the quote");
                }
                (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Icmpv6(icmp))) => {
                    assert_eq!(out.len(), 14 + 1280, "an IPv6 error is 1280 bytes");
                    assert_eq!(
                        (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                        (addr(vip), addr(CLIENT6))
                    );
                    assert_eq!(
                        icmp.icmp_type,
                        Icmpv6Type::PacketTooBig {
                            mtu: u32::from(mtu)
                        }
                    );
                    let computed = icmp
                        .icmp_type
                        .calc_checksum(ip.source, ip.destination, quoted)
                        .expect("size");
                    assert_eq!(icmp.checksum, computed, "ICMPv6 checksum");
                    assert_eq!(quoted, &big[14..14 + 1232], "the quote");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(counter(bed, Counter::TunnelEncap), 0);
    });
}

/// An ICMP error about a flow that would not fit the backend's route
/// once wrapped (1280 bytes of error, the route's MTU 1280) is never
/// answered (no ICMP error about an ICMP error, RFC 1122): dropped and
/// counted as too big, as NAT counts the same case, not as a missing
/// route. Every mode and family, IPv4 fragmentation-needed and ICMPv6
/// packet-too-big alike.
fn an_icmp_error_too_big_once_wrapped_is_dropped_as_too_big(hook: Hook) {
    in_netns(hook, vips(), |bed, _| {
        // IPv6's minimum: the IPv6 backends keep their addresses.
        ip(&["link", "set", OUT_DEV, "mtu", "1280"]);
        let mut sport = 40_020;
        for (vip, port, router) in [
            (VIP4, IPIP, GATEWAY4),
            (VIP4, GUE, GATEWAY4),
            (VIP6, IPIP, GATEWAY6),
            (VIP6, GUE, GATEWAY6),
            (VIP4, GUE_4IN6, GATEWAY4),
        ] {
            sport += 1;
            let flow = client_flow(vip, port, sport);
            let (verdict, _) = bed
                .run_on(bed.nat.in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("syn");
            assert_eq!(verdict, bed.verdicts().redirect, "{vip}:{port} SYN");
            // The reply the error quotes, sized for an error of 1280
            // bytes: IP and ICMP headers (28 / 48) and the reply's IP and
            // TCP headers (40 / 60).
            let payload = if vip == VIP4 {
                1280 - 28 - 40
            } else {
                1280 - 48 - 60
            };
            let reply = packet::tcp(
                &Flow {
                    src: flow.dst,
                    dst: flow.src,
                    sport: flow.dport,
                    dport: flow.sport,
                },
                ACK,
                None,
                &vec![0x5a; payload],
            );
            let error = icmp_error(router, &reply);
            assert_eq!(error.len(), 14 + 1280, "{vip}:{port}");
            let too_big = counter(bed, Counter::DropTooBig);
            let encapsulated = counter(bed, Counter::TunnelEncap);
            let (verdict, _) = bed.run_on(bed.nat.in_if, &error).expect("test run");
            assert_eq!(verdict, bed.verdicts().drop, "{vip}:{port}");
            assert_eq!(
                counter(bed, Counter::DropTooBig),
                too_big + 1,
                "{vip}:{port}: counted as too big"
            );
            assert_eq!(counter(bed, Counter::TunnelEncap), encapsulated);
        }
        assert_eq!(counter(bed, Counter::DropNoRoute), 0, "not a missing route");
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 0, "never answered");
        assert_eq!(counter(bed, Counter::ForwardedIcmpError), 0);
    });
}

/// A packet that fits once wrapped is not answered: 1500 - overhead.
fn a_packet_that_just_fits_is_wrapped(hook: Hook) {
    in_netns(hook, vips(), |bed, _| {
        let flow = client_flow(VIP4, IPIP, 40_005);
        let big = packet::tcp(&flow, ACK, None, &vec![1; 1480 - 40]);
        let (verdict, out) = bed.run_on(bed.nat.in_if, &big).expect("test run");
        assert_eq!(verdict, bed.verdicts().redirect);
        assert_eq!(out.len(), 14 + 1500);
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 0);
    });
}

/// At tc a GRO'd skb bigger than the MTU is judged by its segments: the
/// answer comes only when one segment (headers + `gso_size` + overhead)
/// would not fit, with the MTU left for the inner packet; the answer is a
/// single packet.
#[test]
fn tc_judges_a_gso_packet_by_its_segments() {
    in_netns(Hook::Tc, vips(), |bed, _| {
        let flow = client_flow(VIP4, IPIP, 40_010);
        // 3000 bytes of IP packet, TCP segments of 1448 bytes (40 bytes
        // of headers): 1488 + 20 > 1500.
        let big = packet::tcp(&flow, ACK, None, &vec![7; 3000 - 40]);
        let (verdict, out) = bed.run_tc_gso(bed.nat.in_if, &big, 1448, 3).expect("run");
        assert_eq!(verdict, bed.verdicts().bounce);
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 1);
        assert_eq!(out.len(), 14 + 576);
        let headers = PacketHeaders::from_ethernet_slice(&out).expect("parse");
        let Some(TransportHeader::Icmpv4(icmp)) = &headers.transport else {
            panic!("no ICMP");
        };
        assert_eq!(
            icmp.icmp_type,
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: 1480
            })
        );
        // Segments of 1400 bytes fit (1440 + 20): no answer, whatever the
        // skb's length (the wrap itself needs a GSO type the test run
        // cannot set, see `run_tc_gso`).
        let (verdict, _) = bed.run_tc_gso(bed.nat.in_if, &big, 1400, 3).expect("run");
        assert_ne!(verdict, bed.verdicts().bounce);
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 1);
    });
}

/// A kernel helper that refuses is the data plane's failure, not the
/// sender's: the room helper refuses to wrap a GSO skb whose GSO type a
/// test run cannot set (see `run_tc_gso`), so a well-formed packet whose
/// segments fit is dropped and counted `DropInternal`, never
/// `DropMalformed`, nor as sent or as the VIP's traffic; the frame, as
/// etherparse reads it, is the client's packet still.
#[test]
fn a_helper_refusal_is_counted_internal_not_malformed() {
    in_netns(Hook::Tc, vips(), |bed, vips| {
        let config = find(vips, VIP4, IPIP, Protocol::Tcp);
        let id = bed.nat.bed.balancer.vips()[&lb_userspace::reconcile::VipId::of(config)].id;
        let flow = client_flow(VIP4, IPIP, 40_012);
        let big = packet::tcp(&flow, ACK, None, &vec![7; 3000 - 40]);
        let (verdict, out) = bed.run_tc_gso(bed.nat.in_if, &big, 1400, 3).expect("run");
        assert_eq!(verdict, bed.verdicts().drop);
        assert_eq!(counter(bed, Counter::DropInternal), 1);
        assert_eq!(counter(bed, Counter::DropMalformed), 0);
        assert_eq!(counter(bed, Counter::Forwarded), 0);
        assert_eq!(counter(bed, Counter::TunnelEncap), 0);
        let traffic = bed.nat.bed.dataplane.vip_traffic(id).expect("VIP stats");
        assert_eq!(traffic.packets, 0, "no traffic counted");
        let headers = PacketHeaders::from_ethernet_slice(&out).expect("parse");
        let Some(TransportHeader::Tcp(tcp)) = &headers.transport else {
            panic!("not the client's TCP segment");
        };
        assert_eq!((tcp.source_port, tcp.destination_port), (40_012, IPIP));
    });
}

/// A GSO skb is `CHECKSUM_PARTIAL` at its TCP header, and its answer
/// stays so: the NIC (or `skb_checksum_help`) finishes the quoted TCP
/// checksum after the program, over the quote from that header on. (A
/// test run's skb is not partial, so the output is finished here as the
/// kernel would.) The ICMP checksum is right for the answer as it leaves,
/// IPv4 and IPv6, so the client takes it at once.
#[test]
fn tc_answers_a_gso_packet_with_a_checksum_right_once_the_kernel_finishes_the_quote() {
    in_netns(Hook::Tc, vips(), |bed, _| {
        for (vip, headers_len, head, quoted_ip) in [(VIP4, 40, 28, 20), (VIP6, 60, 48, 40)] {
            let flow = client_flow(vip, IPIP, 40_011);
            let big = packet::tcp(&flow, ACK, None, &vec![7; 3000 - headers_len]);
            let (verdict, mut out) = bed.run_tc_gso(bed.nat.in_if, &big, 1448, 3).expect("run");
            assert_eq!(verdict, bed.verdicts().bounce, "{vip}");
            // The quoted TCP header's checksum, finished as the kernel
            // would.
            packet::finish_partial_checksum(&mut out, 14 + head + quoted_ip, 16);
            let headers = PacketHeaders::from_ethernet_slice(&out).expect("parse");
            let quoted = headers.payload.slice();
            match (&headers.net, &headers.transport) {
                (Some(NetHeaders::Ipv4(_, _)), Some(TransportHeader::Icmpv4(icmp))) => {
                    assert_eq!(
                        icmp.checksum,
                        icmp.icmp_type.calc_checksum(quoted),
                        "ICMP checksum of the answer as it leaves"
                    );
                }
                (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Icmpv6(icmp))) => {
                    let computed = icmp
                        .icmp_type
                        .calc_checksum(ip.source, ip.destination, quoted)
                        .expect("size");
                    assert_eq!(
                        icmp.checksum, computed,
                        "ICMPv6 checksum of the answer as it leaves"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 2);
    });
}

lb_tests::on_both_hooks!(
    icmp_error_about_a_flow_goes_wrapped_to_its_backend,
    icmp_error_to_an_ipv4_vip_goes_in_gue_over_ipv6_with_its_udp_checksum,
    too_big_is_answered_with_icmp,
    an_icmp_error_too_big_once_wrapped_is_dropped_as_too_big,
    a_packet_that_just_fits_is_wrapped,
);
