//! lb-decap's program under BPF_PROG_TEST_RUN, at both hooks (`xdp_decap`
//! and `tc_decap`): every accepted form comes out as the inner packet
//! behind a correct Ethernet header (checked byte for byte and by
//! etherparse, checksums included); every refusal gives its verdict and
//! counter and leaves the bytes as they were; with `sources`, only the
//! balancers' outer sources are unwrapped. Needs root.

mod accepted;
mod checks;
mod ecn;
mod ext_headers;
mod fragments;
mod malformed;
mod refused;
mod sources;

use std::net::IpAddr;

use lb_common::tunnel::GUE_PORT_DEFAULT;
use lb_tests::{
    craft::{bytes, ip_packet, proto as craft_proto, Ip, Layer, Upper},
    decapbed::{gue0_header, ip_of, settings, DecapBed, Encap},
    packet::{self, Flow, ACK, CLIENT_MAC, LB_MAC, SYN},
    testbed::Hook,
};

/// The VIPs the backend serves (on `lo`), and the clients behind them.
pub(crate) const VIP4: &str = "198.18.0.100";
pub(crate) const VIP6: &str = "2001:2::100";
pub(crate) const CLIENT4: &str = "198.18.1.10";
pub(crate) const CLIENT6: &str = "2001:2:0:1::10";
/// lb-decap's configured VIPs: only packets for these are unwrapped.
pub(crate) const VIPS: [&str; 3] = [
    "198.18.0.100:80/tcp",
    "198.18.0.100:53/udp",
    "[2001:2::100]:80/tcp",
];

/// An address of the fixtures.
pub(crate) fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// A fresh decap program at `hook`, configured for `VIPS`.
pub(crate) fn bed(hook: Hook) -> DecapBed {
    DecapBed::new(&settings(&VIPS), hook).expect("decap bed (root needed)")
}

/// A client flow from `src` to `dst`:`dport`.
pub(crate) fn flow(src: &str, dst: &str, dport: u16) -> Flow {
    Flow {
        src: ip(src),
        dst: ip(dst),
        sport: 40_000,
        dport,
    }
}

/// Inner TCP SYN (IP packet, no Ethernet) from the client to `vip:port`.
pub(crate) fn inner_tcp(vip: &str, port: u16) -> Vec<u8> {
    let client = if vip.contains(':') { CLIENT6 } else { CLIENT4 };
    ip_of(&packet::tcp(&flow(client, vip, port), SYN, None, b""))
}

/// Inner UDP datagram from the client to `vip:port`.
pub(crate) fn inner_udp(vip: &str, port: u16) -> Vec<u8> {
    let client = if vip.contains(':') { CLIENT6 } else { CLIENT4 };
    ip_of(&packet::udp(&flow(client, vip, port), None, b"query"))
}

/// GUE variant 1 (no GUE header: the inner IP packet right after UDP) on
/// the default port.
pub(crate) fn gue1() -> Encap {
    Encap::Gue1 {
        port: GUE_PORT_DEFAULT,
        csum: false,
    }
}

/// GUE variant 0 (a GUE header naming the inner protocol) on the default
/// port.
pub(crate) fn gue0(inner: &[u8]) -> Encap {
    Encap::Gue0 {
        port: GUE_PORT_DEFAULT,
        header: gue0_header(inner),
    }
}

/// An ICMP error (IPv4 fragmentation needed / ICMPv6 packet too big) from
/// a router to the VIP, quoting the VIP's reply to the client from
/// `vip:port` (what the balancer forwards to the backend owning the flow).
pub(crate) fn inner_icmp_error(vip: &str, port: u16, quoted_src: &str) -> Vec<u8> {
    let v6 = vip.contains(':');
    let client = if v6 { CLIENT6 } else { CLIENT4 };
    let reply = Flow {
        src: ip(quoted_src),
        dst: ip(client),
        sport: port,
        dport: 40_000,
    };
    let quoted = ip_of(&packet::tcp(&reply, ACK, None, b"data"));
    let router = if v6 { "2001:2:0:9::1" } else { "198.18.9.1" };
    let builder = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC);
    let mut out = Vec::new();
    if v6 {
        let IpAddr::V6(r) = ip(router) else {
            unreachable!()
        };
        let IpAddr::V6(d) = ip(vip) else {
            unreachable!()
        };
        builder
            .ipv6(r.octets(), d.octets(), 64)
            .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1400 })
            .write(&mut out, &quoted)
            .expect("icmpv6");
    } else {
        let IpAddr::V4(r) = ip(router) else {
            unreachable!()
        };
        let IpAddr::V4(d) = ip(vip) else {
            unreachable!()
        };
        builder
            .ipv4(r.octets(), d.octets(), 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1400,
                },
            ))
            .write(&mut out, &quoted)
            .expect("icmpv4");
    }
    ip_of(&out)
}

/// The VIP's reply from `vip`:`port` to the client over `proto` (TCP or
/// UDP), as a router quotes it in an error about it; `frag`: the IPv4
/// fragment field (IPv6 ignores it).
pub(crate) fn vip_reply(vip: &str, port: u16, proto: u8, frag: u16) -> Vec<Layer> {
    let client = if vip.contains(':') { CLIENT6 } else { CLIENT4 };
    let mut header = Ip::new(ip(vip), ip(client));
    header.frag = frag;
    let upper = match proto {
        craft_proto::TCP => Upper::Tcp {
            sport: port,
            dport: 40_000,
            flags: lb_tests::craft::tcp_flag::ACK,
            payload: b"data".to_vec(),
        },
        craft_proto::UDP => Upper::Udp {
            sport: port,
            dport: 40_000,
            payload: b"answer".to_vec(),
        },
        other => Upper::Other {
            proto: other,
            bytes: vec![0; 16],
        },
    };
    ip_packet(&header, &upper)
}

/// An ICMP (IPv4 VIP) or ICMPv6 (IPv6 VIP) message of `kind`/`code` from
/// a router to `vip`, quoting `quoted`: the inner IP packet.
pub(crate) fn inner_icmp(vip: &str, kind: u8, code: u8, quoted: Vec<Layer>) -> Vec<u8> {
    let router = if vip.contains(':') {
        "2001:2:0:9::1"
    } else {
        "198.18.9.1"
    };
    bytes(&ip_packet(
        &Ip::new(ip(router), ip(vip)),
        &Upper::Icmp {
            kind,
            code,
            rest: [0, 0, 5, 0x78],
            body: quoted,
        },
    ))
}
