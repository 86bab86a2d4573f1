//! Every form the program must unwrap (IPIP, IP6IP6, 4in6, GUE variants 0
//! and 1, TCP, UDP and ICMP errors inside) comes out as its inner packet.

use lb_common::{decap::DecapCounter, tunnel::GUE_PORT_DEFAULT};
use lb_tests::{
    decapbed::{tunnel_frame, Encap, BACKEND_V4, BACKEND_V6},
    packet::{self},
    testbed::{action, Hook},
};

use crate::{
    bed,
    checks::{assert_unwrapped, run_case},
    gue0, gue1, inner_icmp_error, inner_tcp, inner_udp, VIP4, VIP6,
};

/// The accepted forms: (name, frame, inner packet, counter).
pub(crate) fn accepted() -> Vec<(&'static str, Vec<u8>, Vec<u8>, DecapCounter)> {
    let tcp4 = inner_tcp(VIP4, 80);
    let udp4 = inner_udp(VIP4, 53);
    let tcp6 = inner_tcp(VIP6, 80);
    let icmp4 = inner_icmp_error(VIP4, 80, VIP4);
    let icmp6 = inner_icmp_error(VIP6, 80, VIP6);
    vec![
        (
            "ipip v4",
            tunnel_frame(BACKEND_V4, Encap::Ipip, &tcp4),
            tcp4.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "ip6ip6",
            tunnel_frame(BACKEND_V6, Encap::Ipip, &tcp6),
            tcp6.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "4in6",
            tunnel_frame(BACKEND_V6, Encap::Ipip, &tcp4),
            tcp4.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "gue1 v4 udp",
            tunnel_frame(BACKEND_V4, gue1(), &udp4),
            udp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue1 v4 tcp",
            tunnel_frame(BACKEND_V4, gue1(), &tcp4),
            tcp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue1 v6, zero checksum",
            tunnel_frame(BACKEND_V6, gue1(), &tcp6),
            tcp6.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue1 v6, checksum",
            tunnel_frame(
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
            tunnel_frame(BACKEND_V6, gue1(), &tcp4),
            tcp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue0 v4",
            tunnel_frame(BACKEND_V4, gue0(&tcp4), &tcp4),
            tcp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue0 v6",
            tunnel_frame(BACKEND_V6, gue0(&tcp6), &tcp6),
            tcp6.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue0 4in6",
            tunnel_frame(BACKEND_V6, gue0(&tcp4), &tcp4),
            tcp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "ipip v4, outer header with options",
            packet::with_ipv4_options(
                &tunnel_frame(BACKEND_V4, Encap::Ipip, &tcp4),
                &[1, 1, 1, 0, 7, 3, 4, 0],
            ),
            tcp4.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "gue v4, outer header with options",
            packet::with_ipv4_options(&tunnel_frame(BACKEND_V4, gue1(), &udp4), &[1, 1, 1, 0]),
            udp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "ipip icmp frag-needed about a VIP flow",
            tunnel_frame(BACKEND_V4, Encap::Ipip, &icmp4),
            icmp4.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "ip6ip6 icmpv6 too-big about a VIP flow",
            tunnel_frame(BACKEND_V6, Encap::Ipip, &icmp6),
            icmp6.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "gue1 icmpv6 too-big",
            tunnel_frame(BACKEND_V6, gue1(), &icmp6),
            icmp6,
            DecapCounter::DecapGue,
        ),
    ]
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
