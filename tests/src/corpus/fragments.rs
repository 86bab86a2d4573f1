//! Corpus section: IPv4 and IPv6 fragments. To a VIP address they are
//! dropped (`drop_fragment`: the node holds the address and would answer
//! for the backend); to the node's own address they go up the stack
//! (`pass_fragment`).

use super::*;

pub(super) fn fragments(g: &mut Gen) {
    // IPv4: the fragments of one 1000-byte TCP segment.
    let (_, whole) = tcp_packet(false, g.port(), f::ACK | f::PSH, &[7; 64]);
    let whole = craft::frame(&[], whole);
    let v4 = [
        (
            "ipv4-first-fragment",
            "first fragment (MF, offset 0): holds the ports, but the rest cannot follow",
            0x2000u16,
        ),
        (
            "ipv4-middle-fragment",
            "middle fragment (MF, offset 185 units)",
            0x2000 | 185,
        ),
        (
            "ipv4-last-fragment",
            "last fragment (offset 370 units)",
            370,
        ),
        (
            "ipv4-fragment-df-mf",
            "DF and MF both set: still a fragment",
            0x6000,
        ),
    ];
    for (name, about, field) in v4 {
        g.dropped(
            name,
            &format!("{about}; to a VIP address"),
            Counter::DropFragment,
            set(&whole, Kind::Ipv4, 6, &field.to_be_bytes()),
        );
    }
    for (name, about, field) in &v4[..3] {
        let mut ip = from_client4(HOST4);
        ip.frag = *field;
        let sport = g.port();
        g.passed(
            &format!("{name}-to-host"),
            &format!("{about}; to the node's own address: up the stack"),
            Counter::PassFragment,
            craft::frame(
                &[],
                craft::ip_packet(&ip, &tcp(sport, TCP_PORT, f::ACK, &[7; 64])),
            ),
        );
    }
    let v6: [(&str, &str, Vec<Ext>); 5] = [
        (
            "ipv6-first-fragment",
            "fragment header, offset 0, more to come",
            vec![Ext::fragment(0, true)],
        ),
        (
            "ipv6-middle-fragment",
            "fragment header, offset 185 units, more to come",
            vec![Ext::fragment(185, true)],
        ),
        (
            "ipv6-last-fragment",
            "fragment header, offset 370 units, the last",
            vec![Ext::fragment(370, false)],
        ),
        (
            "ipv6-atomic-fragment",
            "fragment header with offset 0 and no more (RFC 6946): like any fragment",
            vec![Ext::fragment(0, false)],
        ),
        (
            "ipv6-hop-by-hop-then-fragment",
            "a fragment header behind hop-by-hop options",
            vec![Ext::hop_by_hop(), Ext::fragment(0, true)],
        ),
    ];
    for (name, about, ext) in &v6 {
        let sport = g.port();
        let mut ip = from_client6(VIP6);
        ip.ext.clone_from(ext);
        g.dropped(
            name,
            &format!("{about}; to a VIP address"),
            Counter::DropFragment,
            craft::frame(
                &[],
                craft::ip_packet(&ip, &tcp(sport, TCP_PORT, f::ACK, &[7; 64])),
            ),
        );
    }
    for (name, about, ext) in &v6[..4] {
        let sport = g.port();
        let mut ip = from_client6(HOST6);
        ip.ext.clone_from(ext);
        g.passed(
            &format!("{name}-to-host"),
            &format!("{about}; to the node's own address: up the stack"),
            Counter::PassFragment,
            craft::frame(
                &[],
                craft::ip_packet(&ip, &tcp(sport, TCP_PORT, f::ACK, &[7; 64])),
            ),
        );
    }
}
