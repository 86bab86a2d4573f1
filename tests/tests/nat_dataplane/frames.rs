//! The test side's own view of what the NAT path wrote: the independent
//! parser (etherparse) every translated frame goes through (MACs,
//! addresses, ports, TTL / hop limit and every checksum) and a flow's two
//! entries. Shared by every case. (Client flows and frames come from
//! `lb_tests::natbed`.)

use std::net::IpAddr;

use etherparse::{
    icmpv4::DestUnreachableHeader, Icmpv4Type, Icmpv6Type, LinkHeader, NetHeaders, PacketHeaders,
    TransportHeader,
};
use lb_common::{consts::IPPROTO_TCP, nat::counterpart_key, FlowKey, NatEntry};
use lb_tests::{natbed::NatBed, packet};
use lb_userspace::config::Protocol;

/// What a translated frame must look like.
#[derive(Debug)]
pub(crate) struct Expected {
    pub(crate) smac: [u8; 6],
    pub(crate) dmac: [u8; 6],
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) ttl: u8,
    /// A UDP checksum of 0 (none, IPv4) must stay 0.
    pub(crate) udp_zero: bool,
}

/// Parses `frame` with etherparse and checks every field and checksum.
pub(crate) fn check(frame: &[u8], want: &Expected) {
    let headers = PacketHeaders::from_ethernet_slice(frame).expect("etherparse parses the output");
    let Some(LinkHeader::Ethernet2(eth)) = &headers.link else {
        panic!("no Ethernet header");
    };
    assert_eq!(
        (eth.source, eth.destination),
        (want.smac, want.dmac),
        "MACs"
    );
    let payload = headers.payload.slice();
    let transport = headers.transport.as_ref().expect("a transport header");
    let (sport, dport, checksum, computed) = match (&headers.net, transport) {
        (Some(NetHeaders::Ipv4(ip, _)), t) => {
            assert_eq!(
                (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                (want.src, want.dst),
                "addresses"
            );
            assert_eq!(ip.time_to_live, want.ttl, "TTL");
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "IPv4 header checksum"
            );
            match t {
                TransportHeader::Tcp(tcp) => (
                    tcp.source_port,
                    tcp.destination_port,
                    tcp.checksum,
                    tcp.calc_checksum_ipv4(ip, payload).expect("size"),
                ),
                TransportHeader::Udp(udp) => (
                    udp.source_port,
                    udp.destination_port,
                    udp.checksum,
                    if want.udp_zero {
                        0
                    } else {
                        udp.calc_checksum_ipv4(ip, payload).expect("size")
                    },
                ),
                other => panic!("transport {other:?}"),
            }
        }
        (Some(NetHeaders::Ipv6(ip, _)), t) => {
            assert_eq!(
                (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                (want.src, want.dst),
                "addresses"
            );
            assert_eq!(ip.hop_limit, want.ttl, "hop limit");
            match t {
                TransportHeader::Tcp(tcp) => (
                    tcp.source_port,
                    tcp.destination_port,
                    tcp.checksum,
                    tcp.calc_checksum_ipv6(ip, payload).expect("size"),
                ),
                TransportHeader::Udp(udp) => (
                    udp.source_port,
                    udp.destination_port,
                    udp.checksum,
                    udp.calc_checksum_ipv6(ip, payload).expect("size"),
                ),
                other => panic!("transport {other:?}"),
            }
        }
        other => panic!("network headers {other:?}"),
    };
    assert_eq!((sport, dport), (want.sport, want.dport), "ports");
    assert_eq!(checksum, computed, "TCP/UDP checksum of {want:?}");
}

/// The protocol of the cases' VIP ports: UDP for 53, else TCP.
pub(crate) fn proto_of(port: u16) -> Protocol {
    if port == 53 {
        Protocol::Udp
    } else {
        Protocol::Tcp
    }
}

/// The forward entry of `flow` and its reply key.
pub(crate) fn entries(bed: &NatBed, key: &FlowKey) -> (NatEntry, FlowKey, NatEntry) {
    let forward = bed.bed.dataplane.nat().flow(key).expect("forward entry");
    let reply_key = counterpart_key(key, &forward);
    let reply = bed
        .bed
        .dataplane
        .nat()
        .flow(&reply_key)
        .expect("reply entry");
    (forward, reply_key, reply)
}

/// The transport ports of a frame (etherparse).
pub(crate) fn ports_of(frame: &[u8]) -> (u16, u16) {
    let headers = PacketHeaders::from_ethernet_slice(frame).expect("etherparse parses the output");
    match headers.transport.expect("a transport header") {
        TransportHeader::Tcp(tcp) => (tcp.source_port, tcp.destination_port),
        TransportHeader::Udp(udp) => (udp.source_port, udp.destination_port),
        other => panic!("{other:?}"),
    }
}

/// `check_too_big` for the answer to a GSO packet (`sent`), which leaves
/// `CHECKSUM_PARTIAL` at the quoted TCP or UDP header: checked as it
/// leaves, that checksum finished as the kernel would (in the answer and
/// in what it quotes of `sent`).
pub(crate) fn check_too_big_gso(out: &[u8], sent: &[u8], mtu: u16) {
    let v4 = sent[14] >> 4 == 4;
    let (head, ip_len, proto) = if v4 {
        (28, usize::from(sent[14] & 0x0f) * 4, sent[14 + 9])
    } else {
        (48, 40, sent[14 + 6])
    };
    let field = if proto == IPPROTO_TCP { 16 } else { 6 };
    let mut out = out.to_vec();
    let l4 = 14 + head + ip_len;
    packet::finish_partial_checksum(&mut out, l4, field);
    let mut sent = sent.to_vec();
    sent[14 + ip_len + field..14 + ip_len + field + 2]
        .copy_from_slice(&out[l4 + field..l4 + field + 2]);
    check_too_big(&out, &sent, mtu);
}

/// Parses the answer `out` to the untagged frame `sent` (too big for a
/// route of MTU `mtu`) with etherparse: back to the sender (MACs
/// swapped), from the address it was sent to, ICMP fragmentation-needed /
/// ICMPv6 packet-too-big carrying `mtu`, quoting the start of `sent`,
/// every checksum right.
pub(crate) fn check_too_big(out: &[u8], sent: &[u8], mtu: u16) {
    let quote = if sent[14] >> 4 == 4 { 548 } else { 1232 };
    check_too_big_quoting(out, sent, mtu, quote);
}

/// `check_too_big` for an answer quoting `quote` bytes of `sent` (an
/// IPv4 packet shorter than a full quote, on a route whose MTU is below
/// 576, is quoted by its first 68 bytes).
pub(crate) fn check_too_big_quoting(out: &[u8], sent: &[u8], mtu: u16, quote: usize) {
    let headers = PacketHeaders::from_ethernet_slice(out).expect("etherparse parses the answer");
    let Some(LinkHeader::Ethernet2(eth)) = &headers.link else {
        panic!("no Ethernet header");
    };
    assert_eq!(
        (eth.source.as_slice(), eth.destination.as_slice()),
        (&sent[0..6], &sent[6..12]),
        "MACs swapped"
    );
    let quoted = headers.payload.slice();
    let ip = &sent[14..];
    match (&headers.net, &headers.transport) {
        (Some(NetHeaders::Ipv4(header, _)), Some(TransportHeader::Icmpv4(icmp))) => {
            assert_eq!(
                out.len(),
                14 + 28 + quote,
                "IP and ICMP headers and the quote"
            );
            assert_eq!(
                (header.source.as_slice(), header.destination.as_slice()),
                (&ip[16..20], &ip[12..16]),
                "from the address it was sent to, to its sender"
            );
            assert_eq!(header.header_checksum, header.calc_header_checksum());
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
            assert_eq!(quoted, &ip[..quote], "the quote");
        }
        (Some(NetHeaders::Ipv6(header, _)), Some(TransportHeader::Icmpv6(icmp))) => {
            assert_eq!(
                out.len(),
                14 + 48 + quote,
                "IP and ICMPv6 headers and the quote"
            );
            assert_eq!(
                (header.source.as_slice(), header.destination.as_slice()),
                (&ip[24..40], &ip[8..24]),
                "from the address it was sent to, to its sender"
            );
            assert_eq!(
                icmp.icmp_type,
                Icmpv6Type::PacketTooBig {
                    mtu: u32::from(mtu)
                }
            );
            let computed = icmp
                .icmp_type
                .calc_checksum(header.source, header.destination, quoted)
                .expect("size");
            assert_eq!(icmp.checksum, computed, "ICMPv6 checksum");
            assert_eq!(quoted, &ip[..quote], "the quote");
        }
        other => panic!("{other:?}"),
    }
}
