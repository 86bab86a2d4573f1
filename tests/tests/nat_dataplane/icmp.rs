//! ICMP errors about NAT'd flows, translated to the other side's view
//! as IPVS does (fragmentation needed, packet too big, port unreachable), every checksum
//! checked, also through an entry whose next hop is not looked up yet,
//! behind IPv4 options (quoted and outer), and with the quoted UDP
//! checksum's edge cases (none stays none, one computing to 0 goes as
//! 0xffff); errors about no translation pass, and so does one behind an
//! IPv6 extension chain longer than the NAT path reads; an error too big
//! for its route, or with TTL / hop limit 1, is dropped.

use std::net::IpAddr;

use etherparse::{
    icmpv4::DestUnreachableHeader, Icmpv4Type, Icmpv6Type, LinkHeader, NetHeaders, PacketBuilder,
    PacketHeaders, TransportHeader,
};
use lb_common::{consts::AF_INET6, stats::Counter, FlowKey, NatEntry};
use lb_tests::{
    craft::{frame_bytes, ipv4_options, tcp_flag, Ext, Ip, Upper},
    natbed::{
        addr, client_flow, frame, words_to_addr, NatBed, BACKENDS4, CLIENT4, CLIENT6, GATEWAY4,
        GATEWAY6, IN_DEV, IN_MAC, NAT4, NAT6, OUT_MAC,
    },
    packet::{self, Flow, Tcp, ACK, CLIENT_MAC, SYN},
    support::ip,
    testbed::{flow_key, Hook, VIP4, VIP6},
};
use lb_userspace::config::Protocol;

use crate::{
    counter,
    frames::{entries, proto_of, Expected},
    in_netns, vips, BACKEND_PORT,
};

/// Which ICMP error a router sends.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// IPv4 fragmentation needed, IPv6 packet too big.
    TooBig,
    /// Destination (port) unreachable.
    Unreachable,
}

/// An ICMP error about `sent` (a frame the data plane put out) from
/// `router`, arriving for `sent`'s source: IPv4 fragmentation needed or
/// IPv6 packet too big, quoting all of `sent`'s IP packet.
fn icmp_error(router: &str, sent: &[u8]) -> Vec<u8> {
    icmp_error_of(Kind::TooBig, router, sent)
}

/// `icmp_error` of `kind`.
fn icmp_error_of(kind: Kind, router: &str, sent: &[u8]) -> Vec<u8> {
    let headers = PacketHeaders::from_ethernet_slice(sent).expect("parse");
    let quote = &sent[14..];
    // To this node's MAC (`LbConfig::iface_mac`, `IN_MAC`), as every
    // frame the bed crafts on either interface: lbd runs on one
    // interface and translates only frames addressed to it; one for
    // another MAC is another host's, passed up
    // (`translation::a_reply_for_another_hosts_mac_is_left_alone`).
    let eth = PacketBuilder::ethernet2([0x02, 0, 0, 0, 0xfe, 0xfe], IN_MAC);
    let mut out = Vec::new();
    match headers.net {
        Some(NetHeaders::Ipv4(ip, _)) => {
            let router: std::net::Ipv4Addr = router.parse().expect("router");
            let header = match kind {
                Kind::TooBig => DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
                Kind::Unreachable => DestUnreachableHeader::Port,
            };
            let builder = eth
                .ipv4(router.octets(), ip.source, 64)
                .icmpv4(Icmpv4Type::DestinationUnreachable(header));
            builder.write(&mut out, quote).expect("icmp");
        }
        Some(NetHeaders::Ipv6(ip, _)) => {
            let router: std::net::Ipv6Addr = router.parse().expect("router");
            let icmp = match kind {
                Kind::TooBig => Icmpv6Type::PacketTooBig { mtu: 1280 },
                Kind::Unreachable => Icmpv6Type::DestinationUnreachable(
                    etherparse::icmpv6::DestUnreachableCode::Port,
                ),
            };
            let builder = eth.ipv6(router.octets(), ip.source, 64).icmpv6(icmp);
            builder.write(&mut out, quote).expect("icmp");
        }
        other => panic!("{other:?}"),
    }
    out
}

/// Checks a translated ICMP error: outer header and MACs as `outer`
/// says (ports unused), every checksum (outer IPv4, ICMP/ICMPv6 with its
/// pseudo-header, quoted IPv4 header, quoted UDP), and that the quote is
/// `original` (the packet its receiver really sent) but for the TTL /
/// hop limit and, for TCP, the quoted checksum (left, as IPVS does).
fn check_error(frame: &[u8], outer: &Expected, original: &[u8]) {
    let headers = PacketHeaders::from_ethernet_slice(frame).expect("etherparse parses the output");
    let Some(LinkHeader::Ethernet2(eth)) = &headers.link else {
        panic!("no Ethernet header");
    };
    assert_eq!(
        (eth.source, eth.destination),
        (outer.smac, outer.dmac),
        "MACs"
    );
    let quote = headers.payload.slice();
    let original = &original[14..];
    assert_eq!(quote.len(), original.len(), "quote length");
    match (&headers.net, &headers.transport) {
        (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Icmpv4(icmp))) => {
            assert_eq!(
                (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                (outer.src, outer.dst),
                "outer addresses"
            );
            assert_eq!(ip.time_to_live, outer.ttl, "TTL");
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "outer IPv4 checksum"
            );
            assert_eq!(
                icmp.checksum,
                icmp.icmp_type.calc_checksum(quote),
                "ICMP checksum"
            );
            let (quoted, _) = etherparse::Ipv4Header::from_slice(quote).expect("quoted IPv4");
            assert_eq!(
                quoted.header_checksum,
                quoted.calc_header_checksum(),
                "quoted IPv4 checksum"
            );
            // The same as sent but for TTL (byte 8) and header checksum
            // (10, 11), and TCP's checksum behind the quoted header and
            // its options.
            let tcp_csum_at = quoted.header_len() + 16;
            for (i, (got, want)) in quote.iter().zip(original).enumerate() {
                let tcp_csum = quoted.protocol == etherparse::IpNumber::TCP
                    && (tcp_csum_at..tcp_csum_at + 2).contains(&i);
                if ![8, 10, 11].contains(&i) && !tcp_csum {
                    assert_eq!(got, want, "quoted byte {i}");
                }
            }
        }
        (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Icmpv6(icmp))) => {
            assert_eq!(
                (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                (outer.src, outer.dst),
                "outer addresses"
            );
            assert_eq!(ip.hop_limit, outer.ttl, "hop limit");
            assert_eq!(
                icmp.checksum,
                icmp.icmp_type
                    .calc_checksum(ip.source, ip.destination, quote)
                    .expect("size"),
                "ICMPv6 checksum"
            );
            let tcp = original[6] == 6;
            for (i, (got, want)) in quote.iter().zip(original).enumerate() {
                if i != 7 && !(tcp && (56..58).contains(&i)) {
                    assert_eq!(got, want, "quoted byte {i}");
                }
            }
        }
        other => panic!("not an ICMP error: {other:?}"),
    }
}

/// What an ICMP error must not change in a flow's entries: the marks,
/// the ages and the translation (the next-hop cache may be filled).
type FlowState = Vec<(u8, u64, [u32; 4], [u32; 4], u16, u16)>;

/// The `FlowState` of `key`'s flow.
fn flow_state(bed: &NatBed, key: &FlowKey) -> FlowState {
    let (forward, _, reply) = entries(bed, key);
    [forward, reply]
        .iter()
        .map(|e| (e.flags, e.last_seen_ns, e.src, e.dst, e.sport, e.dport))
        .collect()
}

/// ICMP errors about a NAT'd flow, as IPVS translates them: one from the
/// backends' side (to the NAT address, quoting NAT address -> backend)
/// reaches the client quoting what the client sent; one from the clients'
/// side (to the VIP, quoting VIP -> client) reaches the backend quoting
/// what the backend sent. The flow's entries do not change.
pub(crate) fn icmp_errors_reach_the_other_side(bed: &mut NatBed, vip: &str, port: u16) {
    icmp_errors_of_kind_reach_the_other_side(Kind::TooBig, bed, vip, port);
}

/// `icmp_errors_reach_the_other_side` with errors of `kind`.
fn icmp_errors_of_kind_reach_the_other_side(kind: Kind, bed: &mut NatBed, vip: &str, port: u16) {
    let protocol = proto_of(port);
    let flow = client_flow(vip, port, 40_011);
    let key = flow_key(&flow, protocol);
    let sent = frame(&flow, protocol, SYN, b"a request of some length");
    let (_, to_backend) = bed.run_on(bed.in_if, &sent).expect("forward");
    let (forward, _, _) = entries(bed, &key);
    let state = flow_state(bed, &key);
    let backend = words_to_addr(forward.dst, key.family);
    let v6 = key.family == AF_INET6;
    let nat = addr(if v6 { NAT6 } else { NAT4 });
    let backend_side_router = if v6 { GATEWAY6 } else { GATEWAY4 };
    let error = icmp_error_of(kind, backend_side_router, &to_backend);
    let (verdict, out) = bed
        .run_on(bed.out_if, &error)
        .expect("error from the backend side");
    assert_eq!(verdict, bed.verdicts.redirect);
    check_error(
        &out,
        &Expected {
            smac: IN_MAC,
            dmac: CLIENT_MAC,
            src: addr(vip),
            dst: flow.src,
            sport: 0,
            dport: 0,
            ttl: 63,
            udp_zero: false,
        },
        &sent,
    );
    assert_eq!(counter(bed, Counter::ForwardedNatIcmpError), 1);
    assert_eq!(flow_state(bed, &key), state, "unchanged");

    let back = Flow {
        src: backend,
        dst: nat,
        sport: u16::from_be(forward.dport),
        dport: u16::from_be(forward.sport),
    };
    let syn_ack = Tcp {
        syn: true,
        ack: true,
        ..Tcp::default()
    };
    let answered = frame(&back, protocol, syn_ack, b"an answer");
    let (_, to_client) = bed.run_on(bed.out_if, &answered).expect("reply");
    let state = flow_state(bed, &key);
    let client_side_router = if v6 { "2001:2::254" } else { "198.18.0.254" };
    let error = icmp_error_of(kind, client_side_router, &to_client);
    let (verdict, out) = bed
        .run_on(bed.in_if, &error)
        .expect("error from the client side");
    assert_eq!(verdict, bed.verdicts.redirect);
    check_error(
        &out,
        &Expected {
            smac: OUT_MAC,
            dmac: forward.dmac,
            src: nat,
            dst: backend,
            sport: 0,
            dport: 0,
            ttl: 63,
            udp_zero: false,
        },
        &answered,
    );
    assert_eq!(counter(bed, Counter::ForwardedNatIcmpError), 2);
    assert_eq!(flow_state(bed, &key), state, "unchanged");
}

fn icmp_errors_v4(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        icmp_errors_reach_the_other_side(bed, VIP4, 80)
    });
    in_netns(hook, vips(), |bed| {
        icmp_errors_reach_the_other_side(bed, VIP4, 53)
    });
}

fn icmp_errors_v6(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        icmp_errors_reach_the_other_side(bed, VIP6, 80)
    });
    in_netns(hook, vips(), |bed| {
        icmp_errors_reach_the_other_side(bed, VIP6, 53)
    });
}

/// An ICMP error about no translation is not the NAT path's: it goes up
/// as before.
fn icmp_errors_about_unknown_flows_pass(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let never_sent = packet::tcp(
            &Flow {
                src: addr(NAT4),
                dst: addr(BACKENDS4[0]),
                sport: 20_000,
                dport: BACKEND_PORT,
            },
            SYN,
            None,
            b"",
        );
        let error = icmp_error(GATEWAY4, &never_sent);
        let (verdict, out) = bed.run_on(bed.out_if, &error).expect("test run");
        assert_eq!(verdict, bed.verdicts.pass);
        assert_eq!(out, error);
        assert_eq!(counter(bed, Counter::PassNotVip), 1);
    });
}

/// An error about a flow whose entry for it has no next hop yet (as lbd
/// installs entries it learned from a peer): the FIB is asked, the answer
/// kept in the entry, and the error translated and sent on.
fn an_icmp_error_looks_up_an_unset_next_hop(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let flow = client_flow(VIP4, 80, 40_012);
        let key = flow_key(&flow, Protocol::Tcp);
        let sent = frame(&flow, Protocol::Tcp, SYN, b"a request");
        let (_, to_backend) = bed.run_on(bed.in_if, &sent).expect("forward");
        let (_, reply_key, reply) = entries(bed, &key);
        let unset = NatEntry {
            ifindex: 0,
            dmac: [0; 6],
            smac: [0; 6],
            mtu: 0,
            ..reply
        };
        bed.bed
            .dataplane
            .nat_mut()
            .install_flow(&reply_key, &unset)
            .expect("unset the next hop");
        let error = icmp_error(GATEWAY4, &to_backend);
        let (verdict, out) = bed.run_on(bed.out_if, &error).expect("error");
        assert_eq!(verdict, bed.verdicts.redirect);
        check_error(
            &out,
            &Expected {
                smac: IN_MAC,
                dmac: CLIENT_MAC,
                src: addr(VIP4),
                dst: flow.src,
                sport: 0,
                dport: 0,
                ttl: 63,
                udp_zero: false,
            },
            &sent,
        );
        let (_, _, looked_up) = entries(bed, &key);
        assert_eq!(
            (looked_up.ifindex, looked_up.dmac, looked_up.mtu),
            (bed.in_if, CLIENT_MAC, 1500)
        );
        assert_eq!(counter(bed, Counter::ForwardedNatIcmpError), 1);
    });
}

/// A port unreachable (a host's answer, not a router's MTU report) is
/// translated the same way, both directions, v4 and v6, TCP and UDP.
fn icmp_unreachables(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        icmp_errors_of_kind_reach_the_other_side(Kind::Unreachable, bed, VIP4, 80)
    });
    in_netns(hook, vips(), |bed| {
        icmp_errors_of_kind_reach_the_other_side(Kind::Unreachable, bed, VIP4, 53)
    });
    in_netns(hook, vips(), |bed| {
        icmp_errors_of_kind_reach_the_other_side(Kind::Unreachable, bed, VIP6, 80)
    });
    in_netns(hook, vips(), |bed| {
        icmp_errors_of_kind_reach_the_other_side(Kind::Unreachable, bed, VIP6, 53)
    });
}

/// The router on the backends' side of `vip`'s family.
fn backend_side_router(vip: &str) -> &'static str {
    if addr(vip).is_ipv4() {
        GATEWAY4
    } else {
        GATEWAY6
    }
}

/// What a translated error from the backends' side about the client's
/// `flow` must look like outside: from the VIP to the client, TTL / hop
/// limit less one (ports unused).
fn to_client(flow: &Flow, vip: &str) -> Expected {
    Expected {
        smac: IN_MAC,
        dmac: CLIENT_MAC,
        src: addr(vip),
        dst: flow.src,
        sport: 0,
        dport: 0,
        ttl: 63,
        udp_zero: false,
    }
}

/// Sends the client's `sent` (a flow's first packet, or one of it) and
/// returns the frame that left for the backend.
fn forwarded_to_backend(bed: &mut NatBed, sent: &[u8]) -> Vec<u8> {
    let (verdict, out) = bed.run_on(bed.in_if, sent).expect("forward");
    assert_eq!(verdict, bed.verdicts.redirect, "the client's packet");
    out
}

/// An error from the backends' side about a flow whose answer does not
/// fit the route back to the client (MTU 1400, locked; the error 1448 /
/// 1468 bytes, quoting a 1420-byte segment that fit the backend's route):
/// dropped untouched as too big (never an ICMP error about an ICMP error),
/// not translated, not taken for a missing route. IPv4 and IPv6.
fn an_icmp_error_too_big_for_its_route_is_dropped_as_too_big(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        ip(&[
            "route", "add", CLIENT4, "dev", IN_DEV, "mtu", "lock", "1400",
        ]);
        ip(&[
            "route", "add", CLIENT6, "dev", IN_DEV, "mtu", "lock", "1400",
        ]);
        for (dropped, vip) in (1..).zip([VIP4, VIP6]) {
            let flow = client_flow(vip, 80, 40_030);
            forwarded_to_backend(bed, &frame(&flow, Protocol::Tcp, SYN, b""));
            let headers = if vip == VIP4 { 40 } else { 60 };
            let segment = packet::tcp(&flow, ACK, None, &vec![0x5a; 1420 - headers]);
            let sent = forwarded_to_backend(bed, &segment);
            let error = icmp_error(backend_side_router(vip), &sent);
            assert!(error.len() - 14 > 1400, "{vip}: {} bytes", error.len());
            let (verdict, out) = bed.run_on(bed.out_if, &error).expect("error");
            assert_eq!(verdict, bed.verdicts.drop, "{vip}");
            assert_eq!(out, error, "{vip}: not rewritten");
            assert_eq!(counter(bed, Counter::DropTooBig), dropped, "{vip}");
            let (_, _, reply) = entries(bed, &flow_key(&flow, Protocol::Tcp));
            assert_eq!(reply.mtu, 1400, "{vip}: the route back, looked up");
        }
        assert_eq!(counter(bed, Counter::ForwardedNatIcmpError), 0);
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 0);
        assert_eq!(counter(bed, Counter::DropNoRoute), 0);
    });
}

/// An error about a NAT'd flow arriving with TTL / hop limit 1 would
/// leave with 0: dropped untouched (`DropTtlExceeded`), IPv4 and IPv6.
fn an_icmp_error_with_ttl_1_is_dropped(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        for (dropped, vip) in (1..).zip([VIP4, VIP6]) {
            let flow = client_flow(vip, 80, 40_031);
            let sent = forwarded_to_backend(bed, &frame(&flow, Protocol::Tcp, SYN, b""));
            let mut error = icmp_error(backend_side_router(vip), &sent);
            if vip == VIP4 {
                error[14 + 8] = 1;
                packet::fix_ipv4_checksum(&mut error);
            } else {
                error[14 + 7] = 1;
            }
            let (verdict, out) = bed.run_on(bed.out_if, &error).expect("error");
            assert_eq!(verdict, bed.verdicts.drop, "{vip}");
            assert_eq!(out, error, "{vip}: not rewritten");
            assert_eq!(counter(bed, Counter::DropTtlExceeded), dropped, "{vip}");
        }
        assert_eq!(counter(bed, Counter::ForwardedNatIcmpError), 0);
    });
}

/// The client's TCP or UDP packet to `vip`:`port` from `sport` with
/// IPv4 options (`options` bytes), as `ip_options.rs` crafts them.
fn with_options(vip: &str, port: u16, sport: u16, options: usize) -> (Flow, Vec<u8>) {
    let flow = client_flow(vip, port, sport);
    let mut header = Ip::new(flow.src, flow.dst);
    header.options = ipv4_options(options);
    let upper = if port == 53 {
        Upper::Udp {
            sport,
            dport: port,
            payload: b"a datagram behind options".to_vec(),
        }
    } else {
        Upper::Tcp {
            sport,
            dport: port,
            flags: tcp_flag::SYN,
            payload: b"a segment behind options".to_vec(),
        }
    };
    (flow, frame_bytes(&[], &header, &upper))
}

/// An error quoting a packet whose IPv4 header carries options (12 and
/// 40 bytes: the quoted transport header 32 and 60 bytes into the quote),
/// TCP and UDP: the quoted ports and UDP checksum are rewritten behind
/// the options, the options left; and the same error with options in its
/// own (outer) IPv4 header (8 bytes). Every checksum checked.
fn icmp_errors_behind_ipv4_options_are_translated(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let mut sport = 40_040;
        let mut translated = 0;
        for port in [80, 53] {
            for options in [12, 40] {
                sport += 1;
                let (flow, sent) = with_options(VIP4, port, sport, options);
                assert_eq!(sent[14] & 0x0f, 5 + options as u8 / 4, "IHL");
                let out = forwarded_to_backend(bed, &sent);
                let error = icmp_error(GATEWAY4, &out);
                for outer in [None, Some(8)] {
                    let error = match outer {
                        Some(len) => packet::with_ipv4_options(&error, &ipv4_options(len)),
                        None => error.clone(),
                    };
                    let (verdict, out) = bed.run_on(bed.out_if, &error).expect("error");
                    assert_eq!(
                        verdict, bed.verdicts.redirect,
                        ":{port}, {options} quoted, {outer:?} outer"
                    );
                    let outer_len = 20 + outer.unwrap_or(0);
                    assert_eq!(
                        &out[14 + 20..14 + outer_len],
                        &error[14 + 20..14 + outer_len],
                        "outer options kept"
                    );
                    check_error(&out, &to_client(&flow, VIP4), &sent);
                    translated += 1;
                    assert_eq!(counter(bed, Counter::ForwardedNatIcmpError), translated);
                }
            }
        }
    });
}

/// An error quoting a UDP datagram without a checksum (0, IPv4) leaves
/// the quoted checksum 0: the quote the client gets is what it sent.
fn an_icmp_error_quoting_udp_without_checksum_keeps_none(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let flow = client_flow(VIP4, 53, 40_050);
        let mut sent = packet::udp(&flow, None, b"no checksum");
        let csum = 14 + 20 + 6;
        sent[csum..csum + 2].copy_from_slice(&[0, 0]);
        let out = forwarded_to_backend(bed, &sent);
        assert_eq!(&out[csum..csum + 2], &[0, 0], "none to the backend");
        let error = icmp_error(GATEWAY4, &out);
        let (verdict, out) = bed.run_on(bed.out_if, &error).expect("error");
        assert_eq!(verdict, bed.verdicts.redirect);
        let quoted_csum = 14 + 28 + 20 + 6;
        assert_eq!(&out[quoted_csum..quoted_csum + 2], &[0, 0], "still none");
        check_error(&out, &to_client(&flow, VIP4), &sent);
    });
}

/// An error quoting a UDP datagram whose checksum computes to 0 once the
/// quote is translated back to the client's view (the client's datagram
/// sums to all ones, its checksum sent as 0xffff): the quoted checksum
/// is written as 0xffff, not 0 (none), so the quote is what the client
/// sent; the ICMP checksum covers it. IPv4 and IPv6.
fn an_icmp_error_quoting_udp_whose_checksum_computes_to_0_quotes_ffff(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        for vip in [VIP4, VIP6] {
            let flow = client_flow(vip, 53, 40_051);
            // The payload's first word is the checksum of the datagram
            // with a zero word there: then the datagram sums to all ones.
            let mut payload = [0u8; 16];
            let header = etherparse::UdpHeader {
                source_port: flow.sport,
                destination_port: flow.dport,
                length: 8 + payload.len() as u16,
                checksum: 0,
            };
            let word = match (flow.src, flow.dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => header
                    .calc_checksum_ipv4_raw(s.octets(), d.octets(), &payload)
                    .expect("size"),
                (IpAddr::V6(s), IpAddr::V6(d)) => header
                    .calc_checksum_ipv6_raw(s.octets(), d.octets(), &payload)
                    .expect("size"),
                _ => unreachable!(),
            };
            payload[..2].copy_from_slice(&word.to_be_bytes());
            let sent = packet::udp(&flow, None, &payload);
            let csum = if vip == VIP4 {
                14 + 20 + 6
            } else {
                14 + 40 + 6
            };
            assert_eq!(&sent[csum..csum + 2], &[0xff, 0xff], "{vip}: sums to 0");
            let out = forwarded_to_backend(bed, &sent);
            assert_ne!(&out[csum..csum + 2], &[0xff, 0xff], "{vip}: translated");
            let error = icmp_error(backend_side_router(vip), &out);
            let (verdict, out) = bed.run_on(bed.out_if, &error).expect("error");
            assert_eq!(verdict, bed.verdicts.redirect, "{vip}");
            let head = if vip == VIP4 { 28 } else { 48 };
            let quoted_csum = csum + head;
            assert_eq!(
                &out[quoted_csum..quoted_csum + 2],
                &[0xff, 0xff],
                "{vip}: the quoted checksum"
            );
            check_error(&out, &to_client(&flow, vip), &sent);
        }
    });
}

/// `frame` (Ethernet and an IPv6 packet) with a destination-options
/// header of `words` 8-byte units (padding only) spliced in right after
/// the fixed IPv6 header at `l3_off`, the payload length grown by it.
fn with_dest_options(frame: &[u8], l3_off: usize, words: usize) -> Vec<u8> {
    let after = l3_off + 40;
    let mut ext = vec![frame[l3_off + 6], u8::try_from(words - 1).expect("words")];
    ext.extend_from_slice(&Ext::dest_opts(words).body);
    assert_eq!(ext.len(), words * 8);
    let mut out = frame[..after].to_vec();
    out[l3_off + 6] = lb_tests::craft::proto::DEST_OPTS;
    let payload = u16::from_be_bytes([frame[l3_off + 4], frame[l3_off + 5]]);
    let payload = payload + u16::try_from(ext.len()).expect("length");
    out[l3_off + 4..l3_off + 6].copy_from_slice(&payload.to_be_bytes());
    out.extend_from_slice(&ext);
    out.extend_from_slice(&frame[after..]);
    out
}

/// The bound of `nat::error`'s `headers` on an ICMPv6 error about a NAT'd
/// flow behind an extension chain of its own (from the backends' side,
/// packet too big): with 200 bytes of destination options the ICMPv6
/// header is at frame offset 254, within the 256 the NAT path reads
/// (`scratch::L4_OFF_MAX`), and the error is translated (etherparse: the
/// chain kept, every checksum); with 208 (offset 262, the next a chain of
/// 8-byte units reaches) it goes up untouched (`PassIpv6Ext`). The flow's
/// entries do not change either way. The quote's own bound
/// (`QUOTE_L4_OFF_MAX`, 324) is not reachable by itself: a quote's
/// transport header sits 48 bytes after the ICMPv6 header (an IPv6 quote
/// with extension headers is no VIP's, `PassUnsupportedL4`, as checked
/// here too), so an error over it is over `L4_OFF_MAX` first.
fn an_icmpv6_error_behind_a_long_extension_chain_goes_up(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let flow = client_flow(VIP6, 80, 40_060);
        let key = flow_key(&flow, Protocol::Tcp);
        let sent = frame(&flow, Protocol::Tcp, SYN, b"a request");
        let to_backend = forwarded_to_backend(bed, &sent);
        let state = flow_state(bed, &key);
        let error = icmp_error(GATEWAY6, &to_backend);

        let within = with_dest_options(&error, 14, 25);
        let icmp_at = 14 + 40 + 25 * 8;
        assert_eq!(
            (icmp_at, within[icmp_at]),
            (254, 2),
            "packet too big at 254"
        );
        let (verdict, out) = bed.run_on(bed.out_if, &within).expect("within");
        assert_eq!(
            verdict, bed.verdicts.redirect,
            "translated within the bound"
        );
        assert_eq!(out[20], 60, "the chain stays");
        assert_eq!(&out[54..icmp_at], &within[54..icmp_at], "the options kept");
        check_error(&out, &to_client(&flow, VIP6), &sent);
        assert_eq!(counter(bed, Counter::ForwardedNatIcmpError), 1);
        assert_eq!(flow_state(bed, &key), state, "unchanged");

        let beyond = with_dest_options(&error, 14, 26);
        assert_eq!(beyond[14 + 40 + 26 * 8], 2, "packet too big at 262");
        let (verdict, out) = bed.run_on(bed.out_if, &beyond).expect("beyond");
        assert_eq!(verdict, bed.verdicts.pass, "passed beyond the bound");
        assert_eq!(out, beyond, "untouched");
        assert_eq!(counter(bed, Counter::PassIpv6Ext), 1);
        assert_eq!(counter(bed, Counter::ForwardedNatIcmpError), 1);
        assert_eq!(flow_state(bed, &key), state, "unchanged");

        // The quoted packet with an extension header of its own.
        let quoting_ext = icmp_error(GATEWAY6, &with_dest_options(&to_backend, 14, 1));
        let (verdict, out) = bed.run_on(bed.out_if, &quoting_ext).expect("quote");
        assert_eq!(verdict, bed.verdicts.pass, "a quote with extensions");
        assert_eq!(out, quoting_ext, "untouched");
        assert_eq!(counter(bed, Counter::PassUnsupportedL4), 1);
        assert_eq!(counter(bed, Counter::PassIpv6Ext), 1);
        assert_eq!(counter(bed, Counter::ForwardedNatIcmpError), 1);
        assert_eq!(flow_state(bed, &key), state, "unchanged");
    });
}

lb_tests::on_both_hooks!(
    an_icmp_error_looks_up_an_unset_next_hop,
    icmp_errors_v4,
    icmp_errors_v6,
    icmp_errors_about_unknown_flows_pass,
    icmp_unreachables,
    an_icmp_error_too_big_for_its_route_is_dropped_as_too_big,
    an_icmp_error_with_ttl_1_is_dropped,
    icmp_errors_behind_ipv4_options_are_translated,
    an_icmp_error_quoting_udp_without_checksum_keeps_none,
    an_icmp_error_quoting_udp_whose_checksum_computes_to_0_quotes_ffff,
    an_icmpv6_error_behind_a_long_extension_chain_goes_up,
);
