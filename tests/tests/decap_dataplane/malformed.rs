//! Truncated headers, cut at every byte with the outer lengths made to
//! match, are dropped as malformed: never read past, never unwrapped.

use lb_common::decap::DecapCounter;
use lb_tests::{
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
