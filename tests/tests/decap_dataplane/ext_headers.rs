//! Inner IPv6 extension headers are walked as the balancer walks them.

use lb_common::decap::DecapCounter;
use lb_tests::{
    decapbed::{tunnel_frame, Encap, BACKEND_V6},
    testbed::{action, Hook},
};

use crate::{
    bed,
    checks::{assert_refused, assert_unwrapped, run_case},
    gue1, ip, CLIENT6, VIP6,
};

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
                tunnel_frame(BACKEND_V6, Encap::Ipip, &accepted),
            ),
            (
                "gue with extension headers",
                tunnel_frame(BACKEND_V6, gue1(), &accepted),
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
                &tunnel_frame(BACKEND_V6, Encap::Ipip, inner),
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
            &tunnel_frame(BACKEND_V6, Encap::Ipip, &cut),
            action::DROP,
            DecapCounter::DropMalformed,
        );
    }
}
