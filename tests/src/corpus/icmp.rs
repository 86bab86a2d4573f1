//! Corpus section: ICMP errors about VIP flows and the ones to leave
//! alone.

use super::*;

pub(super) fn icmp_errors(g: &mut Gen) {
    let vip4 = addr(VIP4);
    let vip6 = addr(VIP6);

    // Errors about VIP flows: to the flow's backend.
    let fl = flow(Protocol::Tcp, false, g.port());
    g.icmp_forwarded(
        "icmp4-frag-needed-tcp",
        "fragmentation needed (MTU 1400) quoting the IP header and 8 bytes of a TCP reply from the VIP",
        fl,
        craft::frame(&[], icmp_error(vip4, 3, 4, mtu(1400), quote(&reply(&fl, |_| {}), QUOTE_MIN4))),
    );
    let fl = flow(Protocol::Tcp, false, g.port());
    g.icmp_forwarded(
        "icmp4-host-unreachable-long-quote",
        "host unreachable quoting the whole TCP header and 64 bytes more (RFC 1812)",
        fl,
        craft::frame(
            &[],
            icmp_error(vip4, 3, 1, [0; 4], quote(&reply(&fl, |_| {}), 20 + 20 + 64)),
        ),
    );
    let fl = flow(Protocol::Udp, false, g.port());
    g.icmp_forwarded(
        "icmp4-port-unreachable-udp",
        "port unreachable quoting a UDP reply from the VIP",
        fl,
        craft::frame(
            &[],
            icmp_error(vip4, 3, 3, [0; 4], quote(&reply(&fl, |_| {}), QUOTE_MIN4)),
        ),
    );
    let fl = flow(Protocol::Tcp, false, g.port());
    g.icmp_forwarded(
        "icmp4-time-exceeded-tcp",
        "time exceeded in transit quoting a TCP reply from the VIP",
        fl,
        craft::frame(
            &[],
            icmp_error(vip4, 11, 0, [0; 4], quote(&reply(&fl, |_| {}), QUOTE_MIN4)),
        ),
    );
    let fl = flow(Protocol::Tcp, false, g.port());
    let quoted = quote(&reply(&fl, |ip| ip.options = vec![1, 1, 1, 0]), 24 + 8);
    g.icmp_forwarded(
        "icmp4-frag-needed-quoted-options",
        "the quoted header has options (IHL 6)",
        fl,
        craft::frame(&[], icmp_error(vip4, 3, 4, mtu(1400), quoted)),
    );
    let fl = flow(Protocol::Tcp, false, g.port());
    let quoted = quote(&reply(&fl, |ip| ip.frag = 0x2000), QUOTE_MIN4);
    g.icmp_forwarded(
        "icmp4-frag-needed-quoted-first-fragment",
        "the quoted packet is a first fragment: its ports are there",
        fl,
        craft::frame(&[], icmp_error(vip4, 3, 4, mtu(1400), quoted)),
    );
    let fl = flow(Protocol::Tcp, false, g.port());
    g.icmp_forwarded(
        "vlan-icmp4-frag-needed-tcp",
        "fragmentation needed in a VLAN",
        fl,
        craft::frame(
            &[ethertype::VLAN],
            icmp_error(
                vip4,
                3,
                4,
                mtu(1400),
                quote(&reply(&fl, |_| {}), QUOTE_MIN4),
            ),
        ),
    );
    let fl = flow(Protocol::Tcp, true, g.port());
    g.icmp_forwarded(
        "icmp6-packet-too-big-tcp",
        "packet too big (MTU 1280) quoting the IPv6 header and 8 bytes of a TCP reply from the VIP",
        fl,
        craft::frame(
            &[],
            icmp_error(
                vip6,
                2,
                0,
                mtu(1280),
                quote(&reply(&fl, |_| {}), QUOTE_MIN6),
            ),
        ),
    );
    let fl = flow(Protocol::Tcp, true, g.port());
    g.icmp_forwarded(
        "icmp6-packet-too-big-long-quote",
        "packet too big quoting the whole TCP header and 64 bytes more",
        fl,
        craft::frame(
            &[],
            icmp_error(
                vip6,
                2,
                0,
                mtu(1280),
                quote(&reply(&fl, |_| {}), 40 + 20 + 64),
            ),
        ),
    );
    let fl = flow(Protocol::Udp, true, g.port());
    g.icmp_forwarded(
        "icmp6-port-unreachable-udp",
        "destination unreachable (port) quoting a UDP reply from the VIP",
        fl,
        craft::frame(
            &[],
            icmp_error(vip6, 1, 4, [0; 4], quote(&reply(&fl, |_| {}), QUOTE_MIN6)),
        ),
    );
    let fl = flow(Protocol::Tcp, true, g.port());
    g.icmp_forwarded(
        "icmp6-time-exceeded-tcp",
        "time exceeded quoting a TCP reply from the VIP",
        fl,
        craft::frame(
            &[],
            icmp_error(vip6, 3, 0, [0; 4], quote(&reply(&fl, |_| {}), QUOTE_MIN6)),
        ),
    );
    let fl = flow(Protocol::Tcp, true, g.port());
    let mut outer = Ip::new(addr(ROUTER6), vip6);
    outer.ext = vec![Ext::hop_by_hop()];
    g.icmp_forwarded(
        "qinq-ipv6-hop-by-hop-icmp6-packet-too-big",
        "packet too big behind QinQ and a hop-by-hop header",
        fl,
        craft::frame(
            &[ethertype::QINQ, ethertype::VLAN],
            craft::ip_packet(
                &outer,
                &icmp(2, 0, mtu(1280), quote(&reply(&fl, |_| {}), QUOTE_MIN6)),
            ),
        ),
    );

    let fl = flow(Protocol::Tcp, false, g.port());
    let mut outer = Ip::new(addr(ROUTER4), vip4);
    outer.options = vec![0x94, 0x04, 0, 0];
    g.icmp_forwarded(
        "icmp4-frag-needed-outer-options",
        "fragmentation needed in a packet with IPv4 options",
        fl,
        craft::frame(
            &[],
            craft::ip_packet(
                &outer,
                &icmp(3, 4, mtu(1400), quote(&reply(&fl, |_| {}), QUOTE_MIN4)),
            ),
        ),
    );
    let fl = flow(Protocol::Tcp, false, g.port());
    let mut outer = Ip::new(addr(ROUTER4), vip4);
    outer.frag = 0x2000;
    g.dropped(
        "icmp4-frag-needed-fragmented",
        "an ICMP error to a VIP that is itself a first fragment: dropped like any fragment to a VIP address",
        Counter::DropFragment,
        craft::frame(
            &[],
            craft::ip_packet(
                &outer,
                &icmp(3, 4, mtu(1400), quote(&reply(&fl, |_| {}), QUOTE_MIN4)),
            ),
        ),
    );

    // Errors the data plane does not take.
    let fl = flow(Protocol::Tcp, false, g.port());
    let about_fl = quote(&reply(&fl, |_| {}), QUOTE_MIN4);
    let echo = |v6: bool| {
        icmp(
            if v6 { 128 } else { 8 },
            0,
            [0, 1, 0, 1],
            vec![Layer::new(Kind::Payload, b"ping".to_vec())],
        )
    };
    g.passed(
        "icmp4-echo-request-to-vip",
        "ping to a VIP: the host answers",
        Counter::PassUnsupportedL4,
        craft::frame(&[], craft::ip_packet(&from_client4(VIP4), &echo(false))),
    );
    g.passed(
        "icmp6-echo-request-to-vip",
        "ping to a VIP: the host answers",
        Counter::PassUnsupportedL4,
        craft::frame(&[], craft::ip_packet(&from_client6(VIP6), &echo(true))),
    );
    g.passed(
        "icmp6-neighbour-solicitation",
        "neighbour discovery is the host's",
        Counter::PassUnsupportedL4,
        craft::frame(
            &[],
            craft::ip_packet(
                &from_client6(VIP6),
                &icmp(
                    135,
                    0,
                    [0; 4],
                    vec![Layer::new(
                        Kind::Payload,
                        match vip6 {
                            IpAddr::V6(a) => a.octets().to_vec(),
                            IpAddr::V4(_) => unreachable!("VIP6 is IPv6"),
                        },
                    )],
                ),
            ),
        ),
    );
    g.passed(
        "icmp4-redirect-quoting-vip-flow",
        "a redirect is no error the backend needs",
        Counter::PassUnsupportedL4,
        craft::frame(
            &[],
            icmp_error(vip4, 5, 1, [198, 18, 0, 1], about_fl.clone()),
        ),
    );
    g.passed(
        "icmp4-parameter-problem-quoting-vip-flow",
        "parameter problem is not taken",
        Counter::PassUnsupportedL4,
        craft::frame(
            &[],
            icmp_error(vip4, 12, 0, [20, 0, 0, 0], about_fl.clone()),
        ),
    );
    g.passed(
        "icmp4-frag-needed-to-host",
        "sent to the host's address, quoting a packet from the VIP: not from the address it reports to",
        Counter::PassNotVip,
        craft::frame(&[], icmp_error(addr(HOST4), 3, 4, mtu(1400), about_fl.clone())),
    );
    let other_port = VipFlow {
        vip: sock(VIP4, 8080),
        ..fl
    };
    g.passed(
        "icmp4-frag-needed-other-port",
        "quotes a reply from a port of the VIP address that is no service",
        Counter::PassNotVip,
        craft::frame(
            &[],
            icmp_error(
                vip4,
                3,
                4,
                mtu(1400),
                quote(&reply(&other_port, |_| {}), QUOTE_MIN4),
            ),
        ),
    );
    let wrong_protocol = VipFlow {
        protocol: Protocol::Udp,
        vip: sock(VIP4, TCP_PORT),
        ..fl
    };
    g.passed(
        "icmp4-port-unreachable-udp-to-tcp-port",
        "quotes UDP from the port of a TCP VIP",
        Counter::PassNotVip,
        craft::frame(
            &[],
            icmp_error(
                vip4,
                3,
                3,
                [0; 4],
                quote(&reply(&wrong_protocol, |_| {}), QUOTE_MIN4),
            ),
        ),
    );
    let toward_vip = quote(
        &craft::ip_packet(
            &from_client4(VIP4),
            &tcp(fl.client.port(), TCP_PORT, f::SYN, b""),
        ),
        QUOTE_MIN4,
    );
    g.passed(
        "icmp4-frag-needed-quoting-client-packet",
        "sent to the VIP but quoting a packet to it (from the client): a forgery",
        Counter::PassNotVip,
        craft::frame(&[], icmp_error(vip4, 3, 4, mtu(1400), toward_vip)),
    );
    let echo_reply = quote(
        &craft::ip_packet(
            &Ip::new(vip4, addr(CLIENT4)),
            &icmp(
                0,
                0,
                [0, 1, 0, 1],
                vec![Layer::new(Kind::Payload, b"ping".to_vec())],
            ),
        ),
        QUOTE_MIN4,
    );
    g.passed(
        "icmp4-unreachable-quoting-icmp",
        "quotes the VIP's echo reply: no ports",
        Counter::PassUnsupportedL4,
        craft::frame(&[], icmp_error(vip4, 3, 1, [0; 4], echo_reply)),
    );
    let later = quote(&reply(&fl, |ip| ip.frag = 0x2000 | 185), QUOTE_MIN4);
    g.passed(
        "icmp4-frag-needed-quoting-later-fragment",
        "quotes a non-first fragment: what follows its header is no transport header",
        Counter::PassUnsupportedL4,
        craft::frame(&[], icmp_error(vip4, 3, 4, mtu(1400), later)),
    );
    let fl6 = flow(Protocol::Tcp, true, g.port());
    let with_ext = quote(
        &reply(&fl6, |ip| ip.ext = vec![Ext::dest_opts(1)]),
        QUOTE_MIN6 + 8,
    );
    g.passed(
        "icmp6-packet-too-big-quoting-ext-header",
        "the quoted IPv6 packet has an extension header: not walked",
        Counter::PassUnsupportedL4,
        craft::frame(&[], icmp_error(vip6, 2, 0, mtu(1280), with_ext)),
    );
    g.passed(
        "icmp6-packet-too-big-to-host",
        "sent to the host's address, quoting a packet from the VIP",
        Counter::PassNotVip,
        craft::frame(
            &[],
            icmp_error(
                addr(HOST6),
                2,
                0,
                mtu(1280),
                quote(&reply(&fl6, |_| {}), QUOTE_MIN6),
            ),
        ),
    );
    g.passed(
        "icmp6-parameter-problem-quoting-vip-flow",
        "parameter problem is not taken",
        Counter::PassUnsupportedL4,
        craft::frame(
            &[],
            icmp_error(
                vip6,
                4,
                0,
                [0, 0, 0, 40],
                quote(&reply(&fl6, |_| {}), QUOTE_MIN6),
            ),
        ),
    );

    // Malformed ICMP.
    let short_header = craft::ip_packet(
        &Ip::new(addr(ROUTER4), vip4),
        &Upper::Other {
            proto: proto::ICMP,
            bytes: vec![3, 4, 0, 0],
        },
    );
    g.malformed(
        "icmp4-header-cut",
        "an ICMP message of 4 bytes: shorter than its header",
        craft::frame(&[], short_header),
    );
    let short_header6 = craft::ip_packet(
        &Ip::new(addr(ROUTER6), vip6),
        &Upper::Other {
            proto: proto::ICMPV6,
            bytes: vec![2, 0, 0, 0, 0, 0],
        },
    );
    g.malformed(
        "icmp6-header-cut",
        "an ICMPv6 message of 6 bytes: shorter than its header",
        craft::frame(&[], short_header6),
    );
    let whole = reply(&fl, |_| {});
    g.malformed(
        "icmp4-quote-cut-in-ip-header",
        "quotes 12 bytes of an IP header",
        craft::frame(&[], icmp_error(vip4, 3, 4, mtu(1400), quote(&whole, 12))),
    );
    g.malformed(
        "icmp4-quote-without-ports",
        "quotes the IP header and 3 bytes: the ports are not all there",
        craft::frame(&[], icmp_error(vip4, 3, 4, mtu(1400), quote(&whole, 23))),
    );
    let bent = |index: usize, value: u8| {
        let mut q = quote(&whole, QUOTE_MIN4);
        q[0].bytes[index] = value;
        craft::frame(&[], icmp_error(vip4, 3, 4, mtu(1400), q))
    };
    g.malformed(
        "icmp4-quote-ihl-4",
        "the quoted header's IHL is 4",
        bent(0, 0x44),
    );
    g.malformed(
        "icmp4-quote-version-6",
        "the quoted IPv4 header says version 6",
        bent(0, 0x65),
    );
    g.malformed(
        "icmp4-quote-ihl-past-quote",
        "the quoted header's IHL (60 bytes) runs past the 28-byte quote",
        bent(0, 0x4f),
    );
    let whole6 = reply(&fl6, |_| {});
    g.malformed(
        "icmp6-quote-without-ports",
        "quotes the IPv6 header and 3 bytes",
        craft::frame(&[], icmp_error(vip6, 2, 0, mtu(1280), quote(&whole6, 43))),
    );
    g.malformed(
        "icmp6-quote-cut-in-ip-header",
        "quotes 30 bytes of an IPv6 header",
        craft::frame(&[], icmp_error(vip6, 2, 0, mtu(1280), quote(&whole6, 30))),
    );
    let mut q = quote(&whole6, QUOTE_MIN6);
    q[0].bytes[0] = 0x45;
    g.malformed(
        "icmp6-quote-version-4",
        "the quoted IPv6 header says version 4",
        craft::frame(&[], icmp_error(vip6, 2, 0, mtu(1280), q)),
    );
}
