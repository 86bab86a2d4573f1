//! Every form the program must unwrap (IPIP, IP6IP6, 4in6, GUE variants 0
//! and 1, TCP, UDP and ICMP errors inside) comes out as its inner packet.

use lb_common::{decap::DecapCounter, tunnel::GUE_PORT_DEFAULT};
use lb_tests::{
    craft::proto as craft_proto,
    decapbed::{ethernet, tunnel_frame, Encap, BACKEND_V4, BACKEND_V6},
    packet::{self},
    testbed::{action, Hook},
};

use crate::{
    bed,
    checks::{assert_unwrapped, run_case},
    gue0, gue1, inner_icmp, inner_icmp_error, inner_tcp, inner_udp, vip_reply, VIP4, VIP6,
};

/// ICMP and ICMPv6 type numbers of the errors taken.
const ICMP_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMPV6_UNREACH: u8 = 1;
const ICMPV6_TIME_EXCEEDED: u8 = 3;

/// The accepted forms: (name, frame, inner packet, counter).
pub(crate) fn accepted() -> Vec<(&'static str, Vec<u8>, Vec<u8>, DecapCounter)> {
    let tcp4 = inner_tcp(VIP4, 80);
    let udp4 = inner_udp(VIP4, 53);
    let tcp6 = inner_tcp(VIP6, 80);
    let icmp4 = inner_icmp_error(VIP4, 80, VIP4);
    let icmp6 = inner_icmp_error(VIP6, 80, VIP6);
    let (tcp, udp) = (craft_proto::TCP, craft_proto::UDP);
    let time_exceeded4 = inner_icmp(
        VIP4,
        ICMP_TIME_EXCEEDED,
        0,
        vip_reply(VIP4, 80, tcp, 0x4000),
    );
    let port_unreach_udp4 = inner_icmp(VIP4, ICMP_UNREACH, 3, vip_reply(VIP4, 53, udp, 0x4000));
    // A first fragment (more fragments, offset 0) holds the ports.
    let first_fragment4 = inner_icmp(VIP4, ICMP_UNREACH, 4, vip_reply(VIP4, 80, tcp, 0x2000));
    let unreach6 = inner_icmp(VIP6, ICMPV6_UNREACH, 4, vip_reply(VIP6, 80, tcp, 0));
    let time_exceeded6 = inner_icmp(VIP6, ICMPV6_TIME_EXCEEDED, 0, vip_reply(VIP6, 80, tcp, 0));
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
        (
            "ipip icmp time-exceeded about a VIP flow",
            tunnel_frame(BACKEND_V4, Encap::Ipip, &time_exceeded4),
            time_exceeded4.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "gue1 icmp port-unreachable about the UDP VIP",
            tunnel_frame(BACKEND_V4, gue1(), &port_unreach_udp4),
            port_unreach_udp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "ipip icmp error quoting a first fragment",
            tunnel_frame(BACKEND_V4, Encap::Ipip, &first_fragment4),
            first_fragment4,
            DecapCounter::DecapIpip,
        ),
        (
            "ip6ip6 icmpv6 destination-unreachable about a VIP flow",
            tunnel_frame(BACKEND_V6, Encap::Ipip, &unreach6),
            unreach6.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "gue0 icmpv6 time-exceeded about a VIP flow",
            tunnel_frame(BACKEND_V6, gue0(&time_exceeded6), &time_exceeded6),
            time_exceeded6,
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

/// A GUE packet whose UDP length is shorter than the outer IP payload
/// (bytes after the datagram, as padding leaves them): the inner packet
/// ends inside the UDP length, so it is unwrapped; the bytes past it stay
/// behind it (the stack trims a packet to its own length field).
#[test]
fn gue_with_bytes_past_its_udp_length_is_unwrapped() {
    let tcp4 = inner_tcp(VIP4, 80);
    let tcp6 = inner_tcp(VIP6, 80);
    let trailer = [0xee_u8; 6];
    let padded = |frame: Vec<u8>| -> Vec<u8> {
        let mut frame = [frame, trailer.to_vec()].concat();
        if frame[14] >> 4 == 4 {
            let total = u16::from_be_bytes([frame[16], frame[17]]) + trailer.len() as u16;
            frame[16..18].copy_from_slice(&total.to_be_bytes());
            packet::fix_ipv4_checksum(&mut frame);
        } else {
            let payload = u16::from_be_bytes([frame[18], frame[19]]) + trailer.len() as u16;
            frame[18..20].copy_from_slice(&payload.to_be_bytes());
        }
        frame
    };
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for (what, frame, inner) in [
            (
                "gue1 v4, padded",
                padded(tunnel_frame(BACKEND_V4, gue1(), &tcp4)),
                &tcp4,
            ),
            (
                "gue0 v6, padded",
                padded(tunnel_frame(BACKEND_V6, gue0(&tcp6), &tcp6)),
                &tcp6,
            ),
        ] {
            let out = run_case(&mut bed, what, &frame, action::PASS, DecapCounter::DecapGue);
            let unwrapped = ethernet(packet::CLIENT_MAC, packet::LB_MAC, inner);
            assert_eq!(
                out,
                [unwrapped.clone(), trailer.to_vec()].concat(),
                "{what} ({hook:?}): the inner packet, the bytes past the datagram behind it"
            );
            assert_unwrapped(
                &out[..unwrapped.len()],
                inner,
                &format!("{what} ({hook:?})"),
            );
        }
    }
}
