//! Fragments: an outer fragment, or an inner one, is never unwrapped.

use lb_common::decap::DecapCounter;
use lb_tests::{
    craft::checksum,
    decapbed::{
        ethernet, outer_ip, tunnel_frame, tunnel_packet, Encap, BACKEND_V4, BACKEND_V6, LB_OUTER_V6,
    },
    packet::{self, CLIENT_MAC, LB_MAC},
    testbed::{action, Hook},
};

use crate::{bed, checks::assert_refused, gue1, inner_tcp, ip, VIP4, VIP6};

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
    let ipip = tunnel_frame(BACKEND_V4, Encap::Ipip, &tcp4);
    let gue = tunnel_frame(BACKEND_V4, gue1(), &tcp4);
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
                tunnel_frame(BACKEND_V4, Encap::Ipip, &inner_fragment),
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
        let other = tunnel_frame("198.19.2.99", Encap::Ipip, &tcp4);
        assert_refused(
            &mut bed,
            "fragment to another address",
            &outer_v4_fragment(&other, 0x2000),
            action::PASS,
            DecapCounter::PassNotOurs,
        );
    }
}
