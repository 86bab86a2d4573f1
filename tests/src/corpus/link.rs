//! Corpus section: what the link layer may carry (VLAN tags, other
//! ethertypes, short and padded frames).

use super::*;

pub(super) fn link_layer(g: &mut Gen) {
    let (fl, p) = tcp_packet(false, g.port(), f::SYN, b"");
    g.forwarded(
        "vlan-ipv4-tcp",
        "one 802.1Q tag, kept",
        fl,
        craft::frame(&[ethertype::VLAN], p),
    );
    let (fl, p) = udp_packet(true, g.port(), b"query");
    g.forwarded(
        "vlan-ipv6-udp",
        "one 802.1Q tag, kept",
        fl,
        craft::frame(&[ethertype::VLAN], p),
    );
    let (fl, p) = tcp_packet(false, g.port(), f::SYN, b"");
    g.forwarded(
        "qinq-ipv4-tcp",
        "QinQ: an 802.1ad service tag, then an 802.1Q tag",
        fl,
        craft::frame(&[ethertype::QINQ, ethertype::VLAN], p),
    );
    let (fl, p) = tcp_packet(true, g.port(), f::ACK | f::PSH, DATA);
    g.forwarded(
        "qinq-ipv6-tcp",
        "QinQ: an 802.1ad service tag, then an 802.1Q tag",
        fl,
        craft::frame(&[ethertype::QINQ, ethertype::VLAN], p),
    );
    let (fl, p) = udp_packet(false, g.port(), b"query");
    g.forwarded(
        "double-vlan-ipv4-udp",
        "two 802.1Q tags (QinQ the old way)",
        fl,
        craft::frame(&[ethertype::VLAN, ethertype::VLAN], p),
    );
    let (fl, p) = tcp_packet(false, g.port(), f::SYN, b"");
    g.forwarded(
        "svlan-ipv4-tcp",
        "a lone 802.1ad service tag",
        fl,
        craft::frame(&[ethertype::QINQ], p),
    );
    let (_, p) = tcp_packet(false, g.port(), f::SYN, b"");
    g.passed(
        "three-vlan-tags-ipv4-tcp",
        "a third tag is not parsed: not IP as far as the data plane goes",
        Counter::PassNotIp,
        craft::frame(&[ethertype::QINQ, ethertype::VLAN, ethertype::VLAN], p),
    );
    let (_, p) = tcp_packet(false, g.port(), f::SYN, b"");
    g.passed(
        "svlan-svlan-ipv4-tcp",
        "802.1ad inside 802.1ad is no QinQ",
        Counter::PassNotIp,
        craft::frame(&[ethertype::QINQ, ethertype::QINQ], p),
    );
    let arp = crate::packet::arp_request()[14..].to_vec();
    g.passed(
        "arp-request",
        "ARP goes up the stack",
        Counter::PassNotIp,
        craft::frame_with_type(
            &[],
            ethertype::ARP,
            vec![Layer::new(Kind::Payload, arp.clone())],
        ),
    );
    g.passed(
        "vlan-arp-request",
        "ARP in a VLAN goes up the stack",
        Counter::PassNotIp,
        craft::frame_with_type(
            &[ethertype::VLAN],
            ethertype::ARP,
            vec![Layer::new(Kind::Payload, arp)],
        ),
    );
    g.passed(
        "lldp",
        "another ethertype",
        Counter::PassNotIp,
        craft::frame_with_type(
            &[],
            ETH_P_LLDP,
            vec![Layer::new(
                Kind::Payload,
                vec![0x02, 0x07, 0x04, 0, 0, 0, 0, 0, 1],
            )],
        ),
    );
    let (_, p) = tcp_packet(true, g.port(), f::SYN, b"");
    g.malformed(
        "ipv6-packet-in-ipv4-ethertype",
        "IP version 6 behind ethertype 0x0800",
        craft::frame_with_type(&[], ethertype::IPV4, p),
    );
    let (_, p) = tcp_packet(false, g.port(), f::SYN, b"");
    g.malformed(
        "ipv4-packet-in-ipv6-ethertype",
        "IP version 4 behind ethertype 0x86dd",
        craft::frame_with_type(&[], ethertype::IPV6, p),
    );
}
