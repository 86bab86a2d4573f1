//! Truncated headers, cut at every byte with the outer lengths made to
//! match, are dropped as malformed: never read past, never unwrapped.

use lb_common::decap::DecapCounter;
use lb_tests::{
    craft::checksum,
    decapbed::{
        ethernet, outer_ip, tunnel_frame, Encap, BACKEND_V4, BACKEND_V6, LB_OUTER_V4, LB_OUTER_V6,
    },
    packet::{self, CLIENT_MAC, LB_MAC},
    testbed::{action, Hook},
};

use crate::{bed, checks::assert_refused, gue0, gue1, inner_icmp_error, inner_tcp, ip, VIP4, VIP6};

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
        ("ipip", tunnel_frame(BACKEND_V4, Encap::Ipip, &tcp4)),
        ("ip6ip6", tunnel_frame(BACKEND_V6, Encap::Ipip, &tcp6)),
        ("gue0 v4", tunnel_frame(BACKEND_V4, gue0(&tcp4), &tcp4)),
        ("gue1 v6", tunnel_frame(BACKEND_V6, gue1(), &tcp6)),
        (
            "ipip icmp error",
            tunnel_frame(BACKEND_V4, Encap::Ipip, &icmp4),
        ),
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
                // An IPv6 payload length of 0 is not a tunnel packet (BIG
                // TCP's mark, see `zero_lengths`): passed, not judged.
                let (verdict, counter) = if k == 0 && outer_len == 40 {
                    (action::PASS, DecapCounter::PassNotTunnel)
                } else {
                    (action::DROP, DecapCounter::DropMalformed)
                };
                assert_refused(
                    &mut bed,
                    &format!("{what} with {k} payload bytes"),
                    cut,
                    verdict,
                    counter,
                );
            }
        }
        // Outer headers that lie about themselves.
        let ipip = tunnel_frame(BACKEND_V4, Encap::Ipip, &tcp4);
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

/// BIG TCP's GRO aggregates (longer than 64 KiB) carry an IPv4 total
/// length or IPv6 payload length of 0: never a packet the balancer sends,
/// so not a tunnel packet; passed untouched at both hooks, whatever
/// follows, never dropped as malformed.
#[test]
fn zero_lengths_pass_untouched() {
    let tcp4 = inner_tcp(VIP4, 80);
    let tcp6 = inner_tcp(VIP6, 80);
    let zero_length = |frame: Vec<u8>| {
        let at = if frame[14] >> 4 == 4 { 16 } else { 18 };
        let mut frame = frame;
        frame[at] = 0;
        frame[at + 1] = 0;
        frame
    };
    let forms = [
        ("ipip", tunnel_frame(BACKEND_V4, Encap::Ipip, &tcp4)),
        ("gue0 v4", tunnel_frame(BACKEND_V4, gue0(&tcp4), &tcp4)),
        ("ip6ip6", tunnel_frame(BACKEND_V6, Encap::Ipip, &tcp6)),
        ("gue1 v6", tunnel_frame(BACKEND_V6, gue1(), &tcp6)),
        (
            "plain tcp v4",
            packet::tcp(
                &crate::flow(crate::CLIENT4, VIP4, 80),
                packet::SYN,
                None,
                &[0u8; 200],
            ),
        ),
    ];
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for (what, frame) in &forms {
            assert_refused(
                &mut bed,
                &format!("{what} with a zero length field"),
                &zero_length(frame.clone()),
                action::PASS,
                DecapCounter::PassNotTunnel,
            );
        }
    }
}

/// `inner` (an IP packet) cut to `len` bytes with its own length field
/// made to match (and, for IPv4, its checksum).
fn inner_cut(inner: &[u8], len: usize) -> Vec<u8> {
    let mut out = inner[..len].to_vec();
    if out[0] >> 4 == 4 {
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        out[10] = 0;
        out[11] = 0;
        let c = checksum(&[&out[..20]]);
        out[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        out[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    }
    out
}

/// Sets the UDP length of the GUE frame `frame` (outer IPv4 without
/// options, or IPv6).
fn with_udp_len(frame: &[u8], len: u16) -> Vec<u8> {
    let at = if frame[14] >> 4 == 4 {
        14 + 20
    } else {
        14 + 40
    };
    let mut out = frame.to_vec();
    out[at + 4..at + 6].copy_from_slice(&len.to_be_bytes());
    out
}

/// Length fields that contradict each other, outer or inner, each alone
/// in an otherwise whole packet: dropped as malformed at both hooks.
#[test]
fn lengths_that_contradict_each_other_are_dropped_as_malformed() {
    let tcp4 = inner_tcp(VIP4, 80);
    let tcp6 = inner_tcp(VIP6, 80);
    let udp4 = crate::inner_udp(VIP4, 53);
    let udp6 = crate::inner_udp(VIP6, 53);
    let ipip = tunnel_frame(BACKEND_V4, Encap::Ipip, &tcp4);
    let ip6ip6 = tunnel_frame(BACKEND_V6, Encap::Ipip, &tcp6);
    let gue4 = tunnel_frame(BACKEND_V4, gue1(), &tcp4);
    let gue6 = tunnel_frame(BACKEND_V6, gue1(), &tcp6);
    let mut short_total = ipip.clone();
    short_total[16..18].copy_from_slice(&19u16.to_be_bytes());
    packet::fix_ipv4_checksum(&mut short_total);
    // An outer IPv6 fragment header of 8 bytes in a payload of 4: cut by
    // the frame's end, or by the payload length with bytes after it.
    let fragment_cut = |present: usize| {
        let mut payload = vec![4, 0, 0, 0];
        payload.resize(present, 0);
        let mut outer = outer_ip(ip(LB_OUTER_V6), ip(BACKEND_V6), 44, payload.len());
        outer[4..6].copy_from_slice(&4u16.to_be_bytes());
        ethernet(CLIENT_MAC, LB_MAC, &[outer, payload].concat())
    };
    let mut inner_short_total = tcp4.clone();
    inner_short_total[2..4].copy_from_slice(&19u16.to_be_bytes());
    let cases = [
        (
            "outer version 4 in an ipv6 frame",
            packet::with_byte(&ip6ip6, 14, 0x40),
        ),
        ("outer total length below its header", short_total),
        ("v6 fragment header cut by the frame", fragment_cut(4)),
        (
            "v6 fragment header cut by the payload length",
            fragment_cut(12),
        ),
        ("gue v4 udp length 0", with_udp_len(&gue4, 0)),
        ("gue v4 udp length 4", with_udp_len(&gue4, 4)),
        ("gue v6 udp length 7", with_udp_len(&gue6, 7)),
        (
            "gue v4 udp length one short of the inner packet",
            with_udp_len(&gue4, (8 + tcp4.len() - 1) as u16),
        ),
        (
            "gue v6 udp length one short of the inner packet",
            with_udp_len(&gue6, (8 + tcp6.len() - 1) as u16),
        ),
        ("inner ihl 4", packet::with_byte(&ipip, 34, 0x44)),
        (
            "inner total length below its header",
            tunnel_frame(BACKEND_V4, Encap::Ipip, &inner_short_total),
        ),
        (
            "inner udp header cut short",
            tunnel_frame(BACKEND_V4, Encap::Ipip, &inner_cut(&udp4, 20 + 4)),
        ),
        (
            "inner udp header cut short, in gue",
            tunnel_frame(BACKEND_V4, gue1(), &inner_cut(&udp4, 20 + 7)),
        ),
        (
            "inner tcp header cut short",
            tunnel_frame(BACKEND_V4, Encap::Ipip, &inner_cut(&tcp4, 20 + 19)),
        ),
        (
            "inner v6 udp header cut short",
            tunnel_frame(BACKEND_V6, Encap::Ipip, &inner_cut(&udp6, 40 + 4)),
        ),
        (
            "inner v6 tcp header cut short, in gue",
            tunnel_frame(BACKEND_V6, gue1(), &inner_cut(&tcp6, 40 + 12)),
        ),
    ];
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for (what, frame) in &cases {
            assert_refused(
                &mut bed,
                what,
                frame,
                action::DROP,
                DecapCounter::DropMalformed,
            );
        }
    }
}

/// `frame` with its outer IPv4 header checksum off by one bit.
fn with_wrong_outer_checksum(frame: &[u8]) -> Vec<u8> {
    packet::with_byte(frame, 14 + 11, frame[14 + 11] ^ 0x01)
}

/// The outer IPv4 header checksum is verified before a tunnel packet to us
/// is unwrapped, as the kernel's `ip_rcv_core` would: a header that does
/// not sum to 0xffff (over its options too, up to IHL 15) is dropped as
/// malformed, not unwrapped. Before the check, each of these came out
/// unwrapped (`decap_ipip`/`decap_gue`). Packets that are not tunnel
/// packets to us are not judged: the stack checks them itself.
#[test]
fn a_wrong_outer_ipv4_checksum_is_dropped_as_malformed() {
    let tcp4 = inner_tcp(VIP4, 80);
    let udp4 = crate::inner_udp(VIP4, 53);
    // IHL 15: the longest header, every option word summed.
    let longest: Vec<u8> = (0..40u8)
        .map(|i| if i % 4 == 3 { 0 } else { 7 + i })
        .collect();
    let ipip_longest =
        packet::with_ipv4_options(&tunnel_frame(BACKEND_V4, Encap::Ipip, &tcp4), &longest);
    assert_eq!(ipip_longest[14], 0x4f, "IHL 15");
    let gue_options =
        packet::with_ipv4_options(&tunnel_frame(BACKEND_V4, gue1(), &udp4), &[1, 1, 1, 0]);
    let wrong = [
        (
            "ipip",
            with_wrong_outer_checksum(&tunnel_frame(BACKEND_V4, Encap::Ipip, &tcp4)),
        ),
        (
            "ipip icmp error",
            with_wrong_outer_checksum(&tunnel_frame(
                BACKEND_V4,
                Encap::Ipip,
                &inner_icmp_error(VIP4, 80, VIP4),
            )),
        ),
        (
            "gue1 v4",
            with_wrong_outer_checksum(&tunnel_frame(BACKEND_V4, gue1(), &tcp4)),
        ),
        (
            "gue0 v4",
            with_wrong_outer_checksum(&tunnel_frame(BACKEND_V4, gue0(&udp4), &udp4)),
        ),
        (
            "gue v4 with options",
            with_wrong_outer_checksum(&gue_options),
        ),
        ("ipip, ihl 15", with_wrong_outer_checksum(&ipip_longest)),
        // The checksum field right, an option word changed after it was
        // computed: the options are summed, the last one too.
        (
            "ipip, ihl 15, first option word changed",
            packet::with_byte(&ipip_longest, 14 + 20, ipip_longest[14 + 20] ^ 0x10),
        ),
        (
            "ipip, ihl 15, last option word changed",
            packet::with_byte(&ipip_longest, 14 + 58, ipip_longest[14 + 58] ^ 0x10),
        ),
    ];
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        // The same frames with their checksums right are unwrapped.
        for (what, frame, counter) in [
            ("ipip, ihl 15", &ipip_longest, DecapCounter::DecapIpip),
            ("gue v4 with options", &gue_options, DecapCounter::DecapGue),
        ] {
            crate::checks::run_case(&mut bed, what, frame, action::PASS, counter);
        }
        for (what, frame) in &wrong {
            assert_refused(
                &mut bed,
                &format!("{what}, wrong outer checksum"),
                frame,
                action::DROP,
                DecapCounter::DropMalformed,
            );
        }
        // Not ours to judge: passed untouched, as before.
        for (what, frame, counter) in [
            (
                "ipip to another address",
                tunnel_frame("198.19.2.99", Encap::Ipip, &tcp4),
                DecapCounter::PassNotOurs,
            ),
            (
                "plain tcp",
                packet::tcp(
                    &crate::flow(crate::CLIENT4, VIP4, 80),
                    packet::SYN,
                    None,
                    b"",
                ),
                DecapCounter::PassNotTunnel,
            ),
        ] {
            assert_refused(
                &mut bed,
                &format!("{what}, wrong checksum"),
                &with_wrong_outer_checksum(&frame),
                action::PASS,
                counter,
            );
        }
    }
}
