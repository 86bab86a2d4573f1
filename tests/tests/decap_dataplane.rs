//! lb-decap's program under BPF_PROG_TEST_RUN, at both hooks (`xdp_decap`
//! and `tc_decap`): every accepted form comes out as the inner packet
//! behind a correct Ethernet header (checked byte for byte and by
//! etherparse, checksums included); every refusal gives its verdict and
//! counter and leaves the bytes as they were. Needs root.

use std::net::IpAddr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use lb_common::{
    decap::{DecapCounter, DECAP_F_GUE, DECAP_F_IPIP},
    tunnel::GUE_PORT_DEFAULT,
};
use lb_tests::{
    craft::checksum,
    decapbed::{
        ethernet, gue0_header, ip_of, outer_ip, settings, tunnel_packet, DecapBed, Encap,
        BACKEND_V4, BACKEND_V6, LB_OUTER_V4, LB_OUTER_V6,
    },
    packet::{self, Flow, ACK, CLIENT_MAC, LB_MAC, SYN},
    testbed::{action, skb_refuses, Hook},
};

const VIP4: &str = "198.18.0.100";
const VIP6: &str = "2001:2::100";
const CLIENT4: &str = "198.18.1.10";
const CLIENT6: &str = "2001:2:0:1::10";
const VIPS: [&str; 3] = [
    "198.18.0.100:80/tcp",
    "198.18.0.100:53/udp",
    "[2001:2::100]:80/tcp",
];

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

fn bed(hook: Hook) -> DecapBed {
    DecapBed::new(&settings(&VIPS), hook).expect("decap bed (root needed)")
}

fn flow(src: &str, dst: &str, dport: u16) -> Flow {
    Flow {
        src: ip(src),
        dst: ip(dst),
        sport: 40_000,
        dport,
    }
}

/// Inner TCP SYN (IP packet, no Ethernet) from the client to `vip:port`.
fn inner_tcp(vip: &str, port: u16) -> Vec<u8> {
    let client = if vip.contains(':') { CLIENT6 } else { CLIENT4 };
    ip_of(&packet::tcp(&flow(client, vip, port), SYN, None, b""))
}

/// Inner UDP datagram from the client to `vip:port`.
fn inner_udp(vip: &str, port: u16) -> Vec<u8> {
    let client = if vip.contains(':') { CLIENT6 } else { CLIENT4 };
    ip_of(&packet::udp(&flow(client, vip, port), None, b"query"))
}

/// A tunnel frame from the balancer to `dst`.
fn frame(dst: &str, encap: Encap, inner: &[u8]) -> Vec<u8> {
    let src = if dst.contains(':') {
        LB_OUTER_V6
    } else {
        LB_OUTER_V4
    };
    ethernet(
        CLIENT_MAC,
        LB_MAC,
        &tunnel_packet(ip(src), ip(dst), encap, inner),
    )
}

fn gue1() -> Encap {
    Encap::Gue1 {
        port: GUE_PORT_DEFAULT,
        csum: false,
    }
}

fn gue0(inner: &[u8]) -> Encap {
    Encap::Gue0 {
        port: GUE_PORT_DEFAULT,
        header: gue0_header(inner),
    }
}

/// An ICMP error (IPv4 fragmentation needed / ICMPv6 packet too big) from
/// a router to the VIP, quoting the VIP's reply to the client from
/// `vip:port` (what the balancer forwards to the backend owning the flow).
fn inner_icmp_error(vip: &str, port: u16, quoted_src: &str) -> Vec<u8> {
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

/// Checks with etherparse that `out` is an Ethernet frame holding exactly
/// `inner`, with the right Ethernet type and valid checksums.
fn assert_unwrapped(out: &[u8], inner: &[u8], what: &str) {
    assert_eq!(
        out,
        ethernet(CLIENT_MAC, LB_MAC, inner),
        "{what}: output frame"
    );
    let parsed =
        SlicedPacket::from_ethernet(out).unwrap_or_else(|e| panic!("{what}: etherparse: {e}"));
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &parsed.link else {
        panic!("{what}: no Ethernet header");
    };
    assert_eq!(eth.source(), CLIENT_MAC, "{what}");
    assert_eq!(eth.destination(), LB_MAC, "{what}");
    let (src, dst, pseudo_proto): (Vec<u8>, Vec<u8>, bool) = match &parsed.net {
        Some(NetSlice::Ipv4(v4)) => {
            assert_eq!(eth.ether_type(), etherparse::EtherType::IPV4, "{what}");
            let h = v4.header();
            let mut bytes = h.slice().to_vec();
            bytes[10] = 0;
            bytes[11] = 0;
            assert_eq!(
                checksum(&[&bytes]),
                h.header_checksum(),
                "{what}: inner IPv4 checksum"
            );
            (h.source().to_vec(), h.destination().to_vec(), false)
        }
        Some(NetSlice::Ipv6(v6)) => {
            assert_eq!(eth.ether_type(), etherparse::EtherType::IPV6, "{what}");
            let h = v6.header();
            (h.source().to_vec(), h.destination().to_vec(), true)
        }
        _ => panic!("{what}: no inner IP header"),
    };
    // The transport checksum, over the pseudo-header, must still verify.
    let (proto, segment) = match &parsed.transport {
        Some(TransportSlice::Tcp(t)) => (6u8, t.slice().to_vec()),
        Some(TransportSlice::Udp(u)) => (17u8, u.slice().to_vec()),
        Some(TransportSlice::Icmpv4(i)) => {
            assert_eq!(checksum(&[i.slice()]), 0, "{what}: ICMP checksum");
            return;
        }
        Some(TransportSlice::Icmpv6(i)) => (58u8, i.slice().to_vec()),
        _ => panic!("{what}: no TCP, UDP or ICMP header"),
    };
    let len = segment.len() as u32;
    let pseudo = if pseudo_proto {
        [src, dst, len.to_be_bytes().to_vec(), vec![0, 0, 0, proto]].concat()
    } else {
        [
            src,
            dst,
            vec![0, proto],
            (len as u16).to_be_bytes().to_vec(),
        ]
        .concat()
    };
    assert_eq!(
        checksum(&[&pseudo, &segment]),
        0,
        "{what}: transport checksum"
    );
}

/// The accepted forms: (name, frame, inner packet, counter).
fn accepted() -> Vec<(&'static str, Vec<u8>, Vec<u8>, DecapCounter)> {
    let tcp4 = inner_tcp(VIP4, 80);
    let udp4 = inner_udp(VIP4, 53);
    let tcp6 = inner_tcp(VIP6, 80);
    let icmp4 = inner_icmp_error(VIP4, 80, VIP4);
    let icmp6 = inner_icmp_error(VIP6, 80, VIP6);
    vec![
        (
            "ipip v4",
            frame(BACKEND_V4, Encap::Ipip, &tcp4),
            tcp4.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "ip6ip6",
            frame(BACKEND_V6, Encap::Ipip, &tcp6),
            tcp6.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "4in6",
            frame(BACKEND_V6, Encap::Ipip, &tcp4),
            tcp4.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "gue1 v4 udp",
            frame(BACKEND_V4, gue1(), &udp4),
            udp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue1 v4 tcp",
            frame(BACKEND_V4, gue1(), &tcp4),
            tcp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue1 v6, zero checksum",
            frame(BACKEND_V6, gue1(), &tcp6),
            tcp6.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue1 v6, checksum",
            frame(
                BACKEND_V6,
                Encap::Gue1 {
                    port: GUE_PORT_DEFAULT,
                    csum: true,
                },
                &tcp6,
            ),
            tcp6.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue1 4in6",
            frame(BACKEND_V6, gue1(), &tcp4),
            tcp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue0 v4",
            frame(BACKEND_V4, gue0(&tcp4), &tcp4),
            tcp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue0 v6",
            frame(BACKEND_V6, gue0(&tcp6), &tcp6),
            tcp6.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue0 4in6",
            frame(BACKEND_V6, gue0(&tcp4), &tcp4),
            tcp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "ipip v4, outer header with options",
            packet::with_ipv4_options(
                &frame(BACKEND_V4, Encap::Ipip, &tcp4),
                &[1, 1, 1, 0, 7, 3, 4, 0],
            ),
            tcp4.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "gue v4, outer header with options",
            packet::with_ipv4_options(&frame(BACKEND_V4, gue1(), &udp4), &[1, 1, 1, 0]),
            udp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "ipip icmp frag-needed about a VIP flow",
            frame(BACKEND_V4, Encap::Ipip, &icmp4),
            icmp4.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "ip6ip6 icmpv6 too-big about a VIP flow",
            frame(BACKEND_V6, Encap::Ipip, &icmp6),
            icmp6.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "gue1 icmpv6 too-big",
            frame(BACKEND_V6, gue1(), &icmp6),
            icmp6,
            DecapCounter::DecapGue,
        ),
    ]
}

/// Runs `frame` and checks verdict, counter (exactly one, `counter`) and,
/// for refusals, that the bytes did not change.
fn run_case(
    bed: &mut DecapBed,
    what: &str,
    frame: &[u8],
    verdict: u32,
    counter: DecapCounter,
) -> Vec<u8> {
    let before = bed.counters().expect("counters");
    let (raw, out) = bed.run(frame).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    let got = bed.hook.as_xdp_action(raw).expect("verdict");
    assert_eq!(got, verdict, "{what} ({:?}): verdict", bed.hook);
    let after = bed.counters().expect("counters");
    for ((c, b), (_, a)) in before.iter().zip(&after) {
        let want = u64::from(*c == counter);
        assert_eq!(a - b, want, "{what} ({:?}): counter {}", bed.hook, c.name());
    }
    out
}

fn assert_refused(
    bed: &mut DecapBed,
    what: &str,
    frame: &[u8],
    verdict: u32,
    counter: DecapCounter,
) {
    if bed.hook == Hook::Tc && skb_refuses(frame) {
        return;
    }
    let out = run_case(bed, what, frame, verdict, counter);
    assert_eq!(
        out, frame,
        "{what} ({:?}): the frame must be unchanged",
        bed.hook
    );
}

#[test]
fn every_accepted_form_comes_out_as_its_inner_packet() {
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for (what, frame, inner, counter) in accepted() {
            let out = run_case(&mut bed, what, &frame, action::PASS, counter);
            assert_unwrapped(&out, &inner, &format!("{what} ({hook:?})"));
        }
    }
}

#[test]
fn tunnel_packets_to_another_address_pass_untouched() {
    let tcp4 = inner_tcp(VIP4, 80);
    let tcp6 = inner_tcp(VIP6, 80);
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for (what, frame) in [
            (
                "ipip to another v4",
                frame("198.19.2.99", Encap::Ipip, &tcp4),
            ),
            (
                "ip6ip6 to another v6",
                frame("2001:2:0:2::99", Encap::Ipip, &tcp6),
            ),
            (
                "4in6 to another v6",
                frame("2001:2:0:2::99", Encap::Ipip, &tcp4),
            ),
            ("gue to another v4", frame("198.19.2.99", gue1(), &tcp4)),
            (
                "gue to another v6",
                frame("2001:2:0:2::99", gue0(&tcp6), &tcp6),
            ),
            (
                "ipip to a VIP address itself",
                frame(VIP4, Encap::Ipip, &tcp4),
            ),
        ] {
            assert_refused(
                &mut bed,
                what,
                &frame,
                action::PASS,
                DecapCounter::PassNotOurs,
            );
        }
    }
}

#[test]
fn inner_packets_for_no_vip_are_dropped() {
    let cases = [
        ("tcp to an unserved port", inner_tcp(VIP4, 81)),
        ("udp to a tcp-only port", inner_udp(VIP4, 80)),
        ("tcp to an unserved address", inner_tcp("198.18.0.101", 80)),
        (
            "v6 tcp to an unserved address",
            inner_tcp("2001:2::101", 80),
        ),
        (
            "icmp echo to the VIP",
            ip_of(&packet::icmp_echo([198, 18, 1, 10], [198, 18, 0, 100])),
        ),
        (
            "icmp error quoting another source",
            inner_icmp_error(VIP4, 80, "198.18.0.101"),
        ),
        (
            "icmp error about an unserved port",
            inner_icmp_error(VIP4, 8080, VIP4),
        ),
        (
            "icmpv6 error quoting another source",
            inner_icmp_error(VIP6, 80, "2001:2::101"),
        ),
    ];
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for (what, inner) in &cases {
            let dst = if inner[0] >> 4 == 6 {
                BACKEND_V6
            } else {
                BACKEND_V4
            };
            assert_refused(
                &mut bed,
                what,
                &frame(dst, Encap::Ipip, inner),
                action::DROP,
                DecapCounter::DropNotVip,
            );
            assert_refused(
                &mut bed,
                what,
                &frame(dst, gue1(), inner),
                action::DROP,
                DecapCounter::DropNotVip,
            );
        }
    }
}

#[test]
fn what_is_no_tunnel_packet_passes_untouched() {
    let tcp4 = inner_tcp(VIP4, 80);
    let tcp6 = inner_tcp(VIP6, 80);
    let plain = packet::tcp(&flow(CLIENT4, BACKEND_V4, 22), SYN, None, b"");
    let sixin4 = ethernet(
        CLIENT_MAC,
        LB_MAC,
        &[
            outer_ip(ip(LB_OUTER_V4), ip(BACKEND_V4), 41, tcp6.len()),
            tcp6.clone(),
        ]
        .concat(),
    );
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for (what, frame) in [
            ("plain tcp to the backend", plain.clone()),
            (
                "udp to the backend's other port",
                packet::udp(&flow(CLIENT4, BACKEND_V4, 53), None, b"q"),
            ),
            ("arp", packet::arp_request()),
            (
                "gue to the wrong port (v4)",
                frame(
                    BACKEND_V4,
                    Encap::Gue1 {
                        port: 6081,
                        csum: false,
                    },
                    &tcp4,
                ),
            ),
            (
                "gue to the wrong port (v6)",
                frame(
                    BACKEND_V6,
                    Encap::Gue1 {
                        port: 6081,
                        csum: true,
                    },
                    &tcp6,
                ),
            ),
            ("6in4 (sit)", sixin4.clone()),
        ] {
            assert_refused(
                &mut bed,
                what,
                &frame,
                action::PASS,
                DecapCounter::PassNotTunnel,
            );
        }
    }
}

#[test]
fn a_turned_off_encapsulation_is_not_unwrapped() {
    let tcp4 = inner_tcp(VIP4, 80);
    for hook in Hook::ALL {
        let mut only_gue = settings(&VIPS);
        only_gue.config.flags = DECAP_F_GUE;
        let mut bed = DecapBed::new(&only_gue, hook).expect("bed");
        assert_refused(
            &mut bed,
            "ipip with ipip off",
            &frame(BACKEND_V4, Encap::Ipip, &tcp4),
            action::PASS,
            DecapCounter::PassNotTunnel,
        );
        let mut only_ipip = settings(&VIPS);
        only_ipip.config = lb_common::decap::DecapConfig {
            gue_port: 0,
            flags: DECAP_F_IPIP,
        };
        bed.apply(&only_ipip).expect("apply");
        assert_refused(
            &mut bed,
            "gue with gue off",
            &frame(BACKEND_V4, gue1(), &tcp4),
            action::PASS,
            DecapCounter::PassNotTunnel,
        );
        // And a VIP removed from the config is refused from then on.
        bed.apply(&settings(&VIPS[1..])).expect("apply");
        assert_refused(
            &mut bed,
            "a removed VIP",
            &frame(BACKEND_V4, Encap::Ipip, &tcp4),
            action::DROP,
            DecapCounter::DropNotVip,
        );
    }
}

/// Sets the IPv4 fragment field of the outer header of an untagged frame.
fn outer_v4_fragment(frame: &[u8], field: u16) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[14 + 6..14 + 8].copy_from_slice(&field.to_be_bytes());
    packet::fix_ipv4_checksum(&mut out);
    out
}

/// An outer IPv6 packet with a fragment header (offset `offset_units`,
/// more fragments) in front of `proto` and `payload`.
fn outer_v6_fragment(proto: u8, offset_units: u16, payload: &[u8]) -> Vec<u8> {
    let mut frag = vec![proto, 0];
    frag.extend_from_slice(&((offset_units << 3) | 1).to_be_bytes());
    frag.extend_from_slice(&[0, 0, 0, 7]);
    let body = [frag, payload.to_vec()].concat();
    ethernet(
        CLIENT_MAC,
        LB_MAC,
        &[
            outer_ip(ip(LB_OUTER_V6), ip(BACKEND_V6), 44, body.len()),
            body,
        ]
        .concat(),
    )
}

#[test]
fn outer_fragments_are_dropped_and_inner_ones_too() {
    let tcp4 = inner_tcp(VIP4, 80);
    let tcp6 = inner_tcp(VIP6, 80);
    let ipip = frame(BACKEND_V4, Encap::Ipip, &tcp4);
    let gue = frame(BACKEND_V4, gue1(), &tcp4);
    let gue_packet6 = tunnel_packet(ip(LB_OUTER_V6), ip(BACKEND_V6), gue1(), &tcp6);
    let mut inner_fragment = tcp4.clone();
    inner_fragment[6] = 0x20; // more fragments
    let c = {
        let mut h = inner_fragment[..20].to_vec();
        h[10] = 0;
        h[11] = 0;
        checksum(&[&h])
    };
    inner_fragment[10..12].copy_from_slice(&c.to_be_bytes());
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for (what, frame) in [
            ("ipip first fragment", outer_v4_fragment(&ipip, 0x2000)),
            ("ipip later fragment", outer_v4_fragment(&ipip, 0x0010)),
            ("gue first fragment", outer_v4_fragment(&gue, 0x2000)),
            (
                "ip6ip6 in a fragment header",
                outer_v6_fragment(41, 0, &tcp6),
            ),
            ("4in6 later fragment", outer_v6_fragment(4, 3, &tcp4)),
            (
                "gue v6 first fragment",
                outer_v6_fragment(17, 0, &gue_packet6[40..]),
            ),
            (
                "inner fragment",
                frame(BACKEND_V4, Encap::Ipip, &inner_fragment),
            ),
        ] {
            assert_refused(
                &mut bed,
                what,
                &frame,
                action::DROP,
                DecapCounter::DropUnsupported,
            );
        }
        // A later UDP fragment has no port to tell: the stack's business.
        assert_refused(
            &mut bed,
            "later udp fragment",
            &outer_v4_fragment(&gue, 0x0010),
            action::PASS,
            DecapCounter::PassNotTunnel,
        );
        assert_refused(
            &mut bed,
            "later v6 udp fragment",
            &outer_v6_fragment(17, 2, &gue_packet6[40..]),
            action::PASS,
            DecapCounter::PassNotTunnel,
        );
        // Fragments not to us are not ours to judge.
        let other = frame("198.19.2.99", Encap::Ipip, &tcp4);
        assert_refused(
            &mut bed,
            "fragment to another address",
            &outer_v4_fragment(&other, 0x2000),
            action::PASS,
            DecapCounter::PassNotOurs,
        );
    }
}

#[test]
fn gue_it_does_not_speak_is_dropped() {
    let tcp4 = inner_tcp(VIP4, 80);
    let header = |h: [u8; 4]| {
        frame(
            BACKEND_V4,
            Encap::Gue0 {
                port: GUE_PORT_DEFAULT,
                header: h,
            },
            &tcp4,
        )
    };
    let mut version5 = tcp4.clone();
    version5[0] = 0x55;
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for (what, frame) in [
            ("version 2", header([0x80, 4, 0, 0])),
            ("version 3", header([0xc0, 4, 0, 0])),
            ("control message", header([0x20, 4, 0, 0])),
            ("options (hlen 1)", header([0x01, 4, 0, 0])),
            ("flags", header([0, 4, 0x80, 0])),
            ("flags (low byte)", header([0, 4, 0, 1])),
            ("proto udp", header([0, 17, 0, 0])),
            ("variant 1 not ip", frame(BACKEND_V4, gue1(), &version5)),
        ] {
            assert_refused(
                &mut bed,
                what,
                &frame,
                action::DROP,
                DecapCounter::DropUnsupported,
            );
        }
    }
}

/// Every truncation of `packet` (an outer IP packet of `outer_len` header
/// bytes and protocol `proto`) whose outer length fields are made to
/// match: the cut falls inside each inner header in turn.
fn consistent_truncations(packet: &[u8], outer_len: usize, proto: u8) -> Vec<Vec<u8>> {
    let (src, dst) = if outer_len == 20 {
        (ip(LB_OUTER_V4), ip(BACKEND_V4))
    } else {
        (ip(LB_OUTER_V6), ip(BACKEND_V6))
    };
    (0..packet.len() - outer_len)
        .map(|k| {
            let body = &packet[outer_len..outer_len + k];
            ethernet(
                CLIENT_MAC,
                LB_MAC,
                &[outer_ip(src, dst, proto, k), body.to_vec()].concat(),
            )
        })
        .collect()
}

#[test]
fn truncated_headers_are_dropped_as_malformed_at_every_cut() {
    let tcp4 = inner_tcp(VIP4, 80);
    let tcp6 = inner_tcp(VIP6, 80);
    let icmp4 = inner_icmp_error(VIP4, 80, VIP4);
    let forms = [
        ("ipip", frame(BACKEND_V4, Encap::Ipip, &tcp4)),
        ("ip6ip6", frame(BACKEND_V6, Encap::Ipip, &tcp6)),
        ("gue0 v4", frame(BACKEND_V4, gue0(&tcp4), &tcp4)),
        ("gue1 v6", frame(BACKEND_V6, gue1(), &tcp6)),
        ("ipip icmp error", frame(BACKEND_V4, Encap::Ipip, &icmp4)),
    ];
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for (what, full) in &forms {
            // The frame cut short, length fields untouched: from the
            // outer IP header on (Ethernet alone is the smallest frame).
            for len in 14..full.len() {
                assert_refused(
                    &mut bed,
                    &format!("{what} cut at {len}"),
                    &full[..len],
                    action::DROP,
                    DecapCounter::DropMalformed,
                );
            }
            // Lengths consistent with the cut: each inner header cut.
            let packet = &full[14..];
            let (outer_len, proto) = if packet[0] >> 4 == 4 {
                (20, packet[9])
            } else {
                (40, packet[6])
            };
            for (k, cut) in consistent_truncations(packet, outer_len, proto)
                .iter()
                .enumerate()
            {
                assert_refused(
                    &mut bed,
                    &format!("{what} with {k} payload bytes"),
                    cut,
                    action::DROP,
                    DecapCounter::DropMalformed,
                );
            }
        }
        // Outer headers that lie about themselves.
        let ipip = frame(BACKEND_V4, Encap::Ipip, &tcp4);
        for (what, frame) in [
            ("outer ihl 4", packet::with_byte(&ipip, 14, 0x44)),
            (
                "outer version 6 in an ipv4 frame",
                packet::with_byte(&ipip, 14, 0x65),
            ),
            (
                "inner version 6 in ipip",
                packet::with_byte(&ipip, 34, 0x65),
            ),
        ] {
            assert_refused(
                &mut bed,
                what,
                &frame,
                action::DROP,
                DecapCounter::DropMalformed,
            );
        }
    }
}

/// An inner IPv6 TCP SYN to the VIP carrying extension headers `ext`.
fn inner_with_ext(ext: Vec<lb_tests::craft::Ext>) -> Vec<u8> {
    use lb_tests::craft::{bytes, ip_packet, tcp_flag, Ip, Upper};
    let mut header = Ip::new(ip(CLIENT6), ip(VIP6));
    header.ext = ext;
    bytes(&ip_packet(
        &header,
        &Upper::Tcp {
            sport: 40_000,
            dport: 80,
            flags: tcp_flag::SYN,
            payload: Vec::new(),
        },
    ))
}

#[test]
fn inner_ipv6_extension_headers_are_walked_as_the_balancer_does() {
    use lb_tests::craft::Ext;
    let accepted = inner_with_ext(vec![
        Ext::hop_by_hop(),
        Ext::dest_opts(2),
        Ext::routing(0, [0; 16]),
    ]);
    let refusals = [
        (
            "routing with segments left",
            inner_with_ext(vec![Ext::routing(1, [0; 16])]),
            DecapCounter::DropNotVip,
        ),
        (
            "five extension headers",
            inner_with_ext(vec![Ext::dest_opts(1); 5]),
            DecapCounter::DropUnsupported,
        ),
        (
            "fragment header",
            inner_with_ext(vec![Ext::fragment(0, true)]),
            DecapCounter::DropUnsupported,
        ),
        (
            "hop-by-hop second",
            inner_with_ext(vec![Ext::dest_opts(1), Ext::hop_by_hop()]),
            DecapCounter::DropMalformed,
        ),
    ];
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for (what, frame) in [
            (
                "ip6ip6 with extension headers",
                frame(BACKEND_V6, Encap::Ipip, &accepted),
            ),
            (
                "gue with extension headers",
                frame(BACKEND_V6, gue1(), &accepted),
            ),
        ] {
            let counter = if what.starts_with("gue") {
                DecapCounter::DecapGue
            } else {
                DecapCounter::DecapIpip
            };
            let out = run_case(&mut bed, what, &frame, action::PASS, counter);
            assert_unwrapped(&out, &accepted, &format!("{what} ({hook:?})"));
        }
        for (what, inner, counter) in &refusals {
            assert_refused(
                &mut bed,
                what,
                &frame(BACKEND_V6, Encap::Ipip, inner),
                action::DROP,
                *counter,
            );
        }
        // An extension header cut by the packet's end.
        let mut cut = accepted.clone();
        cut.truncate(40 + 4);
        cut[4..6].copy_from_slice(&4u16.to_be_bytes());
        assert_refused(
            &mut bed,
            "extension header cut short",
            &frame(BACKEND_V6, Encap::Ipip, &cut),
            action::DROP,
            DecapCounter::DropMalformed,
        );
    }
}
