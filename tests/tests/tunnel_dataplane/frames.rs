//! The test side's own view of frames: ICMP errors from routers, and the
//! independent parser (etherparse) every wrapped frame goes through: MACs,
//! the outer header, GUE's UDP header and checksum, the inner packet byte
//! for byte. (Client flows and frames come from `lb_tests::natbed`.)

use std::net::IpAddr;

use etherparse::{
    icmpv4::DestUnreachableHeader, Icmpv4Type, Icmpv6Type, LinkHeader, NetHeaders, PacketBuilder,
    PacketHeaders, PayloadSlice, TransportHeader,
};
use lb_common::{
    consts::{AF_INET, AF_INET6},
    hash::flow_hash,
    tunnel::{self, TunnelConfig, IPPROTO_IPIP, IPPROTO_IPV6, OUTER_TTL},
    FlowKey, Mode,
};
use lb_tests::{
    natbed::{neighbour_mac, words_to_addr, IN_MAC, OUT_MAC},
    packet::Flow,
    testbed::flow_key,
    tunnelbed::TunnelBed,
};
use lb_userspace::config::VipConfig;

/// What a wrapped frame must be.
pub(crate) struct Wrapped<'a> {
    /// Next hop's MAC.
    pub(crate) dmac: [u8; 6],
    /// Outer source and destination.
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    /// GUE: (source port, destination port); IPIP: None.
    pub(crate) gue: Option<(u16, u16)>,
    /// GUE over IPv6: whether the checksum must be 0 (the inner packet
    /// gives none).
    pub(crate) zero_csum: bool,
    /// The inner IP packet, exactly.
    pub(crate) inner: &'a [u8],
    /// IPv6 outer flow label.
    pub(crate) flow_label: u32,
}

/// Parses `out` with etherparse and checks it against `want`.
pub(crate) fn check_wrapped(out: &[u8], want: &Wrapped) {
    let headers = PacketHeaders::from_ethernet_slice(out).expect("etherparse parses the output");
    let Some(LinkHeader::Ethernet2(eth)) = &headers.link else {
        panic!("no Ethernet header");
    };
    assert_eq!((eth.source, eth.destination), (OUT_MAC, want.dmac), "MACs");
    let inner_v4 = want.inner[0] >> 4 == 4;
    let tos = if inner_v4 {
        want.inner[1]
    } else {
        (want.inner[0] << 4) | (want.inner[1] >> 4)
    };
    let payload: &[u8] = match &headers.payload {
        PayloadSlice::Ip(ip) => ip.payload,
        PayloadSlice::Udp(p) => p,
        other => panic!("payload {other:?}"),
    };
    assert_eq!(payload, want.inner, "the inner packet is untouched");
    match &headers.net {
        Some(NetHeaders::Ipv4(ip, _)) => {
            assert_eq!(
                (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                (want.src, want.dst),
                "outer addresses"
            );
            assert_eq!(ip.time_to_live, OUTER_TTL);
            assert!(ip.dont_fragment, "DF");
            assert_eq!(ip.dscp.value() << 2 | ip.ecn.value(), tos, "TOS copied");
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "IPv4 checksum"
            );
            let proto = if want.gue.is_some() { 17 } else { IPPROTO_IPIP };
            assert_eq!(ip.protocol.0, proto);
            if let Some((sport, dport)) = want.gue {
                let Some(TransportHeader::Udp(udp)) = &headers.transport else {
                    panic!("no UDP header");
                };
                assert_eq!((udp.source_port, udp.destination_port), (sport, dport));
                assert_eq!(usize::from(udp.length), 8 + want.inner.len());
                assert_eq!(udp.checksum, 0, "GUE over IPv4 carries no checksum");
            }
        }
        Some(NetHeaders::Ipv6(ip, _)) => {
            assert_eq!(
                (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                (want.src, want.dst),
                "outer addresses"
            );
            assert_eq!(ip.hop_limit, OUTER_TTL);
            assert_eq!(ip.traffic_class, tos, "traffic class copied");
            assert_eq!(ip.flow_label.value(), want.flow_label, "flow label");
            if let Some((sport, dport)) = want.gue {
                assert_eq!(ip.next_header.0, 17);
                let Some(TransportHeader::Udp(udp)) = &headers.transport else {
                    panic!("no UDP header");
                };
                assert_eq!((udp.source_port, udp.destination_port), (sport, dport));
                assert_eq!(usize::from(udp.length), 8 + want.inner.len());
                if want.zero_csum {
                    assert_eq!(udp.checksum, 0);
                } else {
                    // The full computation over the whole datagram.
                    let full = udp.calc_checksum_ipv6(ip, want.inner).expect("size");
                    assert_eq!(udp.checksum, full, "GUE UDP checksum over IPv6");
                    assert_ne!(udp.checksum, 0);
                }
            } else {
                let proto = if inner_v4 { IPPROTO_IPIP } else { IPPROTO_IPV6 };
                assert_eq!(ip.next_header.0, proto);
            }
        }
        other => panic!("outer {other:?}"),
    }
}

/// An ICMP error from `router` to the sender of `sent`, quoting it.
pub(crate) fn icmp_error(router: &str, sent: &[u8]) -> Vec<u8> {
    let headers = PacketHeaders::from_ethernet_slice(sent).expect("parse");
    let quote = &sent[14..];
    let eth = PacketBuilder::ethernet2([0x02, 0, 0, 0, 0xfe, 0xfe], IN_MAC);
    let mut out = Vec::new();
    match headers.net {
        Some(NetHeaders::Ipv4(ip, _)) => {
            let router: std::net::Ipv4Addr = router.parse().expect("router");
            eth.ipv4(router.octets(), ip.source, 64)
                .icmpv4(Icmpv4Type::DestinationUnreachable(
                    DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
                ))
                .write(&mut out, quote)
                .expect("icmp");
        }
        Some(NetHeaders::Ipv6(ip, _)) => {
            let router: std::net::Ipv6Addr = router.parse().expect("router");
            eth.ipv6(router.octets(), ip.source, 64)
                .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 })
                .write(&mut out, quote)
                .expect("icmp");
        }
        other => panic!("{other:?}"),
    }
    out
}

/// The outer source the data plane derives for `key`'s flow from the
/// client's address and port (`lb_common::tunnel`), in the outer family:
/// IPv4 when `outer_v4`.
pub(crate) fn outer_source(config: &TunnelConfig, key: &FlowKey, outer_v4: bool) -> IpAddr {
    if outer_v4 {
        let source = tunnel::outer_source_v4(config, key.src[0], key.sport);
        words_to_addr([source, 0, 0, 0], AF_INET)
    } else {
        words_to_addr(
            tunnel::outer_source_v6(config, &key.src, key.sport),
            AF_INET6,
        )
    }
}

/// What the wrap of `inner` (the IP packet of the client's `flow` to the
/// VIP `vip`) must be for a new flow: for the backend Maglev gives the
/// flow (worked out from the control plane's table, not read from the
/// data plane), its neighbour's MAC, the outer source the flow's address
/// and port give, GUE's ports and the flow label from the flow hash.
/// `zero_csum`: GUE over IPv6 must carry checksum 0.
pub(crate) fn wrapped_for<'a>(
    bed: &TunnelBed,
    vip: &VipConfig,
    flow: &Flow,
    inner: &'a [u8],
    zero_csum: bool,
) -> Wrapped<'a> {
    let id = bed
        .nat
        .bed
        .maglev_backend_id(vip, flow)
        .expect("Maglev's pick");
    let backend = bed.backend_address(vip, id).expect("backend");
    let key = flow_key(flow, vip.protocol);
    let hash = flow_hash(&key);
    Wrapped {
        dmac: neighbour_mac(&backend.to_string()).expect("a backend neighbour"),
        src: outer_source(&bed.config, &key, backend.is_ipv4()),
        dst: backend,
        gue: (vip.forwarding == Mode::Gue).then(|| {
            (
                u16::from_be(tunnel::gue_source_port(hash)),
                tunnel::GUE_PORT_DEFAULT,
            )
        }),
        zero_csum,
        inner,
        flow_label: hash & 0xf_ffff,
    }
}

/// Parses `out` with etherparse as the too-big answer to `sent` (its IP
/// packet at `l3_off`, after Ethernet and any VLAN tags) and checks every
/// field the answer's contract names: MACs swapped, the tags kept, from
/// the VIP (the quote's destination) to the client (its source), IPv4
/// (TOS 0xc0, TTL 64, no DF, id 0, header checksum) or IPv6 (hop limit
/// 64), fragmentation needed / packet too big reporting `mtu`, the quote
/// (548 / 1232 bytes of `sent`'s IP packet) and the ICMP checksum over
/// all of it.
pub(crate) fn check_too_big(out: &[u8], sent: &[u8], l3_off: usize, mtu: u16) {
    let quote = if sent[l3_off] >> 4 == 4 { 548 } else { 1232 };
    check_too_big_quoting(out, sent, l3_off, mtu, quote);
}

/// `check_too_big` for an answer quoting `quote` bytes of `sent` (an
/// IPv4 packet shorter than a full quote, on a route whose MTU is below
/// 576, is quoted by its first 68 bytes).
pub(crate) fn check_too_big_quoting(
    out: &[u8],
    sent: &[u8],
    l3_off: usize,
    mtu: u16,
    quote: usize,
) {
    let headers = PacketHeaders::from_ethernet_slice(out).expect("etherparse parses the answer");
    let Some(LinkHeader::Ethernet2(eth)) = &headers.link else {
        panic!("no Ethernet header");
    };
    assert_eq!(
        (eth.source.as_slice(), eth.destination.as_slice()),
        (&sent[0..6], &sent[6..12]),
        "MACs swapped"
    );
    assert_eq!(&out[12..l3_off], &sent[12..l3_off], "the VLAN tags kept");
    assert_eq!(
        headers.link_exts.len(),
        (l3_off - 14) / 4,
        "etherparse sees the tags"
    );
    let quoted = headers.payload.slice();
    let sent_ip = &sent[l3_off..];
    match (&headers.net, &headers.transport) {
        (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Icmpv4(icmp))) => {
            assert_eq!(
                out.len(),
                l3_off + 28 + quote,
                "IP and ICMP headers and the quote"
            );
            assert_eq!(
                (ip.source, ip.destination),
                (
                    <[u8; 4]>::try_from(&sent_ip[16..20]).expect("4 bytes"),
                    <[u8; 4]>::try_from(&sent_ip[12..16]).expect("4 bytes"),
                ),
                "from the VIP to the client"
            );
            assert_eq!(ip.dscp.value() << 2 | ip.ecn.value(), 0xc0, "TOS");
            assert_eq!(
                (ip.time_to_live, ip.dont_fragment, ip.identification),
                (64, false, 0)
            );
            assert!(ip.options.is_empty());
            assert_eq!(ip.header_checksum, ip.calc_header_checksum());
            assert_eq!(
                icmp.icmp_type,
                Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: mtu
                })
            );
            assert_eq!(
                icmp.checksum,
                icmp.icmp_type.calc_checksum(quoted),
                "ICMP checksum"
            );
            assert_eq!(quoted, &sent_ip[..quote], "the quote");
        }
        (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Icmpv6(icmp))) => {
            assert_eq!(
                out.len(),
                l3_off + 48 + quote,
                "IP and ICMPv6 headers and the quote"
            );
            assert_eq!(
                (ip.source, ip.destination),
                (
                    <[u8; 16]>::try_from(&sent_ip[24..40]).expect("16 bytes"),
                    <[u8; 16]>::try_from(&sent_ip[8..24]).expect("16 bytes"),
                ),
                "from the VIP to the client"
            );
            assert_eq!(ip.hop_limit, 64);
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
            assert_eq!(quoted, &sent_ip[..quote], "the quote");
        }
        other => panic!("not a too-big answer: {other:?}"),
    }
}
