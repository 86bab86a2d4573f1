//! What the program must not unwrap: tunnel packets to another address
//! (passed untouched), inner packets for no VIP (dropped), what is no
//! tunnel packet (passed), an encapsulation turned off, and GUE it does
//! not speak: a tunnel is not an open relay.

use std::net::IpAddr;

use lb_common::{
    decap::{DecapCounter, DECAP_F_GUE, DECAP_F_IPIP, DECAP_VIPS_MAX},
    tunnel::GUE_PORT_DEFAULT,
};
use lb_tests::{
    craft::{frame_bytes, proto, Ext, Ip, Kind, Layer, Upper},
    decapbed::{
        ethernet, ip_of, outer_ip, settings, tunnel_frame, DecapBed, Encap, BACKEND_V4, BACKEND_V6,
        LB_OUTER_V4,
    },
    packet::{self, CLIENT_MAC, LB_MAC, SYN},
    testbed::{action, Hook},
};

use crate::{
    bed,
    checks::{assert_refused, assert_unwrapped, run_case},
    flow, gue0, gue1, inner_icmp, inner_icmp_error, inner_tcp, inner_udp, ip, vip_reply, CLIENT4,
    CLIENT6, VIP4, VIP6, VIPS,
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
        (
            "icmp error quoting the VIP's icmp",
            inner_icmp(VIP4, 3, 4, vip_reply(VIP4, 80, proto::ICMP, 0x4000)),
        ),
        (
            "icmp error quoting a non-first fragment",
            inner_icmp(VIP4, 3, 4, vip_reply(VIP4, 80, proto::TCP, 0x0010)),
        ),
        (
            "icmp time-exceeded about an unserved udp port",
            inner_icmp(VIP4, 11, 0, vip_reply(VIP4, 54, proto::UDP, 0x4000)),
        ),
        (
            "icmpv6 error quoting the VIP's icmpv6",
            inner_icmp(VIP6, 2, 0, vip_reply(VIP6, 80, proto::ICMPV6, 0)),
        ),
        (
            "icmpv6 echo request to the VIP",
            inner_icmp(
                VIP6,
                128,
                0,
                vec![Layer::new(Kind::Payload, b"ping".to_vec())],
            ),
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
            (
                "plain tcp v6 to the backend",
                packet::tcp(&flow(CLIENT6, BACKEND_V6, 22), SYN, None, b""),
            ),
            (
                "udp v6 to the backend's other port",
                packet::udp(&flow(CLIENT6, BACKEND_V6, 53), None, b"q"),
            ),
            ("icmpv6 neighbour solicitation", icmpv6_to_backend(135)),
            ("icmpv6 echo request", icmpv6_to_backend(128)),
            (
                "tcp v6 behind a hop-by-hop header",
                v6_to_backend(vec![Ext::hop_by_hop()], tcp_to_backend()),
            ),
            (
                "tcp v6 first fragment",
                v6_to_backend(vec![Ext::fragment(0, true)], tcp_to_backend()),
            ),
            (
                "udp v6 first fragment to another port",
                v6_to_backend(
                    vec![Ext::fragment(0, true)],
                    Upper::Udp {
                        sport: 40_000,
                        dport: 53,
                        payload: b"query".to_vec(),
                    },
                ),
            ),
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

/// An IPv6 frame from the client to the backend's own address with
/// extension headers `ext`, carrying `upper`.
fn v6_to_backend(ext: Vec<Ext>, upper: Upper) -> Vec<u8> {
    let mut header = Ip::new(ip(CLIENT6), ip(BACKEND_V6));
    header.ext = ext;
    frame_bytes(&[], &header, &upper)
}

/// A TCP SYN to the backend's port 22.
fn tcp_to_backend() -> Upper {
    Upper::Tcp {
        sport: 40_000,
        dport: 22,
        flags: lb_tests::craft::tcp_flag::SYN,
        payload: Vec::new(),
    }
}

/// An ICMPv6 message of `kind` from the backend's router to its address
/// (neighbour discovery, ping): never a tunnel packet.
fn icmpv6_to_backend(kind: u8) -> Vec<u8> {
    let IpAddr::V6(target) = ip(BACKEND_V6) else {
        unreachable!()
    };
    let mut header = Ip::new(ip("2001:2:0:2::1"), ip(BACKEND_V6));
    header.ttl = 255;
    frame_bytes(
        &[],
        &header,
        &Upper::Icmp {
            kind,
            code: 0,
            rest: [0; 4],
            body: vec![Layer::new(Kind::Payload, target.octets().to_vec())],
        },
    )
}

/// `DECAP_VIPS_MAX` TCP port 80 VIPs from 198.18.4.0 + `first` on.
fn many_vips(first: u32) -> Vec<String> {
    let base = u32::from_be_bytes([198, 18, 4, 0]);
    (first..first + DECAP_VIPS_MAX)
        .map(|i| format!("{}:80/tcp", std::net::Ipv4Addr::from(base + i)))
        .collect()
}

/// A full VIP map (`DECAP_VIPS_MAX`) takes a reload that changes one VIP
/// and one that changes them all: the new VIPs are unwrapped, the removed
/// ones dropped as no VIP's (a map that added before removing refused the
/// first new key: E2BIG, half applied).
#[test]
fn a_full_vip_map_takes_a_change_of_one_and_of_all() {
    let vip_of =
        |i: u32| std::net::Ipv4Addr::from(u32::from_be_bytes([198, 18, 4, 0]) + i).to_string();
    let max = DECAP_VIPS_MAX;
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    for hook in Hook::ALL {
        let full = many_vips(0);
        let mut bed = DecapBed::new(&settings(&refs(&full)), hook).expect("a full bed");
        for (vips, added, removed) in [(many_vips(1), max, 0), (many_vips(max + 1), 2 * max, 1)] {
            bed.apply(&settings(&refs(&vips)))
                .unwrap_or_else(|e| panic!("{hook:?}: a change at the limit: {e:#}"));
            let inner = inner_tcp(&vip_of(added), 80);
            let what = format!("the new VIP {} ({hook:?})", vip_of(added));
            let out = run_case(
                &mut bed,
                &what,
                &tunnel_frame(BACKEND_V4, Encap::Ipip, &inner),
                action::PASS,
                DecapCounter::DecapIpip,
            );
            assert_unwrapped(&out, &inner, &what);
            assert_refused(
                &mut bed,
                &format!("the removed VIP {}", vip_of(removed)),
                &tunnel_frame(BACKEND_V4, Encap::Ipip, &inner_tcp(&vip_of(removed), 80)),
                action::DROP,
                DecapCounter::DropNotVip,
            );
        }
    }
}
