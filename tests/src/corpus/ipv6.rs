//! Corpus section: IPv6 headers and extension-header chains.

use super::*;

pub(super) fn ipv6_headers(g: &mut Gen) {
    let vip6: [u8; 16] = match addr(VIP6) {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => unreachable!("VIP6 is IPv6"),
    };
    let chains: Vec<(&str, &str, Vec<Ext>, bool)> = vec![
        (
            "ipv6-hop-by-hop-tcp",
            "hop-by-hop options, then TCP",
            vec![Ext::hop_by_hop()],
            true,
        ),
        (
            "ipv6-routing-done-tcp",
            "a segment routing header with no segment left: the VIP is the final destination",
            vec![Ext::routing(0, vip6)],
            true,
        ),
        (
            "ipv6-dest-opts-udp",
            "destination options (16 bytes), then UDP",
            vec![Ext::dest_opts(2)],
            false,
        ),
        (
            "ipv6-chain-of-4-tcp",
            "four extension headers: the most the data plane walks",
            vec![
                Ext::hop_by_hop(),
                Ext::dest_opts(1),
                Ext::routing(0, vip6),
                Ext::dest_opts(3),
            ],
            true,
        ),
    ];
    for (name, about, ext, is_tcp) in chains {
        let sport = g.port();
        let mut ip = from_client6(VIP6);
        ip.ext = ext;
        let (fl, upper) = if is_tcp {
            (
                flow(Protocol::Tcp, true, sport),
                tcp(sport, TCP_PORT, f::ACK | f::PSH, DATA),
            )
        } else {
            (
                flow(Protocol::Udp, true, sport),
                udp(sport, UDP_PORT, b"query"),
            )
        };
        g.forwarded(
            name,
            about,
            fl,
            craft::frame(&[], craft::ip_packet(&ip, &upper)),
        );
    }
    let sport = g.port();
    let mut ip = from_client6(VIP6);
    ip.ext = vec![Ext::dest_opts(1)];
    g.forwarded(
        "vlan-ipv6-dest-opts-tcp",
        "a VLAN tag and an extension header",
        flow(Protocol::Tcp, true, sport),
        craft::frame(
            &[ethertype::VLAN],
            craft::ip_packet(&ip, &tcp(sport, TCP_PORT, f::SYN, b"")),
        ),
    );

    let sport = g.port();
    let mut bad = |name: &str, about: &str, counter: Counter, ext: Vec<Ext>, upper: Upper| {
        let mut ip = from_client6(VIP6);
        ip.ext = ext;
        let layers = craft::frame(&[], craft::ip_packet(&ip, &upper));
        if counter == Counter::DropMalformed {
            g.malformed(name, about, layers);
        } else {
            g.passed(name, about, counter, layers);
        }
    };
    bad(
        "ipv6-chain-of-5-tcp",
        "five extension headers: past the bound, up the stack",
        Counter::PassIpv6Ext,
        vec![
            Ext::hop_by_hop(),
            Ext::dest_opts(1),
            Ext::routing(0, vip6),
            Ext::dest_opts(1),
            Ext::dest_opts(1),
        ],
        tcp(sport, TCP_PORT, f::SYN, b""),
    );
    bad(
        "ipv6-routing-segments-left-tcp",
        "a routing header with a segment left: the VIP is not the final destination",
        Counter::PassIpv6Ext,
        vec![Ext::routing(1, vip6)],
        tcp(sport, TCP_PORT, f::SYN, b""),
    );
    bad(
        "ipv6-hop-by-hop-not-first-tcp",
        "hop-by-hop after destination options (RFC 8200: only first)",
        Counter::DropMalformed,
        vec![Ext::dest_opts(1), Ext::hop_by_hop()],
        tcp(sport, TCP_PORT, f::SYN, b""),
    );
    bad(
        "ipv6-esp",
        "ESP: no ports to read",
        Counter::PassUnsupportedL4,
        vec![],
        Upper::Other {
            proto: proto::ESP,
            bytes: vec![0, 0, 1, 0, 0, 0, 0, 1, 0xab, 0xcd, 0xef, 0x01],
        },
    );
    bad(
        "ipv6-hop-by-hop-ah",
        "AH after hop-by-hop: not walked",
        Counter::PassUnsupportedL4,
        vec![Ext::hop_by_hop()],
        Upper::Other {
            proto: proto::AH,
            bytes: ah_header(),
        },
    );
    bad(
        "ipv6-no-next-header",
        "destination options followed by nothing (next header 59)",
        Counter::PassUnsupportedL4,
        vec![Ext::dest_opts(1)],
        Upper::Other {
            proto: proto::NO_NEXT,
            bytes: vec![],
        },
    );
    // An extension header whose length runs past the packet.
    let mut ip = from_client6(VIP6);
    ip.ext = vec![Ext::dest_opts(1)];
    let layers = craft::frame(
        &[],
        craft::ip_packet(&ip, &tcp(sport, TCP_PORT, f::SYN, b"")),
    );
    g.malformed(
        "ipv6-ext-length-past-packet",
        "destination options claiming 88 bytes in a 36-byte payload",
        set(&layers, Kind::DestOpts, 1, &[10]),
    );

    let (_, p) = tcp_packet(true, g.port(), f::ACK | f::PSH, DATA);
    let base = craft::frame(&[], p);
    let payload_len = |len: u16| len.to_be_bytes();
    let cases: [(&str, &str, u16); 4] = [
        (
            "ipv6-payload-length-past-frame",
            "payload length one byte past the frame",
            u16::try_from(20 + DATA.len() + 1).expect("length"),
        ),
        ("ipv6-payload-length-max", "payload length 65535", 65_535),
        (
            "ipv6-payload-length-0",
            "payload length 0 with TCP next (no jumbograms)",
            0,
        ),
        (
            "ipv6-payload-length-cuts-tcp",
            "payload length ends 10 bytes into the TCP header",
            10,
        ),
    ];
    for (name, about, len) in cases {
        g.malformed(name, about, set(&base, Kind::Ipv6, 4, &payload_len(len)));
    }
    g.malformed(
        "ipv6-version-4",
        "IP version 4 in an IPv6 header behind 0x86dd",
        set(&base, Kind::Ipv6, 0, &[0x40]),
    );
}
