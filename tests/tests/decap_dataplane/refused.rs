//! What the program must not unwrap: tunnel packets to another address
//! (passed untouched), inner packets for no VIP (dropped), what is no
//! tunnel packet (passed), an encapsulation turned off, and GUE it does
//! not speak: a tunnel is not an open relay.

use lb_common::{
    decap::{DecapCounter, DECAP_F_GUE, DECAP_F_IPIP},
    tunnel::GUE_PORT_DEFAULT,
};
use lb_tests::{
    decapbed::{
        ethernet, ip_of, outer_ip, settings, tunnel_frame, DecapBed, Encap, BACKEND_V4, BACKEND_V6,
        LB_OUTER_V4,
    },
    packet::{self, CLIENT_MAC, LB_MAC, SYN},
    testbed::{action, Hook},
};

use crate::{
    bed, checks::assert_refused, flow, gue0, gue1, inner_icmp_error, inner_tcp, inner_udp, ip,
    CLIENT4, VIP4, VIP6, VIPS,
};

#[test]
fn tunnel_packets_to_another_address_pass_untouched() {
    let tcp4 = inner_tcp(VIP4, 80);
    let tcp6 = inner_tcp(VIP6, 80);
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for (what, frame) in [
            (
                "ipip to another v4",
                tunnel_frame("198.19.2.99", Encap::Ipip, &tcp4),
            ),
            (
                "ip6ip6 to another v6",
                tunnel_frame("2001:2:0:2::99", Encap::Ipip, &tcp6),
            ),
            (
                "4in6 to another v6",
                tunnel_frame("2001:2:0:2::99", Encap::Ipip, &tcp4),
            ),
            (
                "gue to another v4",
                tunnel_frame("198.19.2.99", gue1(), &tcp4),
            ),
            (
                "gue to another v6",
                tunnel_frame("2001:2:0:2::99", gue0(&tcp6), &tcp6),
            ),
            (
                "ipip to a VIP address itself",
                tunnel_frame(VIP4, Encap::Ipip, &tcp4),
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
                &tunnel_frame(dst, Encap::Ipip, inner),
                action::DROP,
                DecapCounter::DropNotVip,
            );
            assert_refused(
                &mut bed,
                what,
                &tunnel_frame(dst, gue1(), inner),
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
                tunnel_frame(
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
                tunnel_frame(
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
            &tunnel_frame(BACKEND_V4, Encap::Ipip, &tcp4),
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
            &tunnel_frame(BACKEND_V4, gue1(), &tcp4),
            action::PASS,
            DecapCounter::PassNotTunnel,
        );
        // And a VIP removed from the config is refused from then on.
        bed.apply(&settings(&VIPS[1..])).expect("apply");
        assert_refused(
            &mut bed,
            "a removed VIP",
            &tunnel_frame(BACKEND_V4, Encap::Ipip, &tcp4),
            action::DROP,
            DecapCounter::DropNotVip,
        );
    }
}

#[test]
fn gue_it_does_not_speak_is_dropped() {
    let tcp4 = inner_tcp(VIP4, 80);
    let header = |h: [u8; 4]| {
        tunnel_frame(
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
            (
                "variant 1 not ip",
                tunnel_frame(BACKEND_V4, gue1(), &version5),
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
    }
}
