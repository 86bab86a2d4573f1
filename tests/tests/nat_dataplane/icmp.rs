//! ICMP errors about NAT'd flows, translated to the other side's view
//! as IPVS does (fragmentation needed, packet too big, port unreachable), every checksum
//! checked, also through an entry whose next hop is not looked up yet;
//! errors about no translation pass.

use std::net::IpAddr;

use etherparse::{
    icmpv4::DestUnreachableHeader, Icmpv4Type, Icmpv6Type, LinkHeader, NetHeaders, PacketBuilder,
    PacketHeaders, TransportHeader,
};
use lb_common::{consts::AF_INET6, stats::Counter, FlowKey, NatEntry};
use lb_tests::{
    natbed::{
        addr, client_flow, frame, words_to_addr, NatBed, BACKENDS4, GATEWAY4, GATEWAY6, IN_MAC,
        NAT4, NAT6, OUT_MAC,
    },
    packet::{self, Flow, Tcp, CLIENT_MAC, SYN},
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
            // The same as sent but for TTL (byte 8) and header checksum (10, 11).
            for (i, (got, want)) in quote.iter().zip(original).enumerate() {
                let tcp_csum =
                    quoted.protocol == etherparse::IpNumber::TCP && (36..38).contains(&i);
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

lb_tests::on_both_hooks!(
    an_icmp_error_looks_up_an_unset_next_hop,
    icmp_errors_v4,
    icmp_errors_v6,
    icmp_errors_about_unknown_flows_pass,
    icmp_unreachables,
);
