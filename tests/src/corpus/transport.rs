//! Corpus sections: TCP and UDP headers, and every TCP flags byte that
//! matters.

use super::*;

pub(super) fn transport(g: &mut Gen) {
    let (_, base) = tcp_packet(false, g.port(), f::SYN, b"");
    let base = craft::frame(&[], base);
    let offsets: [(&str, &str, u8); 3] = [
        ("tcp-data-offset-0", "TCP data offset 0", 0x00),
        (
            "tcp-data-offset-4",
            "TCP data offset 4: shorter than the fixed header",
            0x40,
        ),
        (
            "tcp-data-offset-15-past-packet",
            "TCP data offset 15 (60 bytes) in a 20-byte segment",
            0xf0,
        ),
    ];
    for (name, about, byte) in offsets {
        g.malformed(name, about, set(&base, Kind::Tcp, 12, &[byte]));
    }
    let (fl, p) = udp_packet(false, g.port(), b"");
    g.forwarded(
        "udp-empty",
        "UDP length 8: an empty datagram is valid",
        fl,
        craft::frame(&[], p),
    );
    let (fl, p) = udp_packet(false, g.port(), b"0123456789abcdef");
    let p = set(&craft::frame(&[], p), Kind::Udp, 4, &8u16.to_be_bytes());
    g.forwarded(
        "udp-length-short-of-packet",
        "UDP length 8 in a 24-byte IP payload: valid, the stack trims the rest",
        fl,
        p,
    );
    let (_, p) = udp_packet(false, g.port(), b"query");
    let base = craft::frame(&[], p);
    let lengths: [(&str, &str, u16); 3] = [
        ("udp-length-0", "zero-length UDP", 0),
        ("udp-length-7", "UDP length 7: shorter than its header", 7),
        (
            "udp-length-past-packet",
            "UDP length one byte past the packet",
            14,
        ),
    ];
    for (name, about, len) in lengths {
        g.malformed(name, about, set(&base, Kind::Udp, 4, &len.to_be_bytes()));
    }
    let (_, p) = udp_packet(true, g.port(), b"query");
    g.malformed(
        "ipv6-udp-length-0",
        "zero-length UDP over IPv6 (no jumbograms)",
        set(&craft::frame(&[], p), Kind::Udp, 4, &[0, 0]),
    );

    let sport = g.port();
    g.passed(
        "ipv4-tcp-to-host",
        "TCP to the host's own address",
        Counter::PassNotVip,
        craft::frame(
            &[],
            craft::ip_packet(&from_client4(HOST4), &tcp(sport, TCP_PORT, f::SYN, b"")),
        ),
    );
    g.passed(
        "ipv6-tcp-to-host",
        "TCP to the host's own address",
        Counter::PassNotVip,
        craft::frame(
            &[],
            craft::ip_packet(&from_client6(HOST6), &tcp(sport, TCP_PORT, f::SYN, b"")),
        ),
    );
    g.passed(
        "ipv4-tcp-other-port",
        "TCP to a port of the VIP address that is no service",
        Counter::PassNotVip,
        craft::frame(
            &[],
            craft::ip_packet(&from_client4(VIP4), &tcp(sport, 8080, f::SYN, b"")),
        ),
    );
    g.passed(
        "ipv4-udp-to-tcp-port",
        "UDP to the port of a TCP VIP",
        Counter::PassNotVip,
        craft::frame(
            &[],
            craft::ip_packet(&from_client4(VIP4), &udp(sport, TCP_PORT, b"x")),
        ),
    );
    g.passed(
        "ipv4-tcp-null-to-host",
        "no TCP flags, to the host: flags are judged for VIPs only",
        Counter::PassNotVip,
        craft::frame(
            &[],
            craft::ip_packet(&from_client4(HOST4), &tcp(sport, TCP_PORT, 0, b"")),
        ),
    );
}

pub(super) fn tcp_flags(g: &mut Gen) {
    let valid: [(&str, u8); 11] = [
        ("syn-ack", f::SYN | f::ACK),
        ("fin-ack", f::FIN | f::ACK),
        ("rst", f::RST),
        ("rst-ack", f::RST | f::ACK),
        ("psh-ack", f::PSH | f::ACK),
        ("urg-ack", f::URG | f::ACK),
        ("fin-psh-urg-ack", f::FIN | f::PSH | f::URG | f::ACK),
        ("syn-ece-cwr", f::SYN | f::ECE | f::CWR),
        ("fin-alone", f::FIN),
        ("psh-alone", f::PSH),
        ("syn-urg", f::SYN | f::URG),
    ];
    for (name, flags) in valid {
        let (fl, p) = tcp_packet(false, g.port(), flags, b"");
        g.forwarded(
            &format!("tcp-flags-{name}"),
            "a flag combination stacks send (or that is only odd): forwarded",
            fl,
            craft::frame(&[], p),
        );
    }
    let invalid: [(&str, &str, u8, bool); 11] = [
        ("null", "no flags at all (null scan)", 0, false),
        ("null-v6", "no flags at all (null scan)", 0, true),
        (
            "ece-cwr-only",
            "only ECN bits: no control bit",
            f::ECE | f::CWR,
            false,
        ),
        ("syn-fin", "SYN+FIN", f::SYN | f::FIN, false),
        (
            "syn-fin-ack",
            "SYN+FIN+ACK",
            f::SYN | f::FIN | f::ACK,
            false,
        ),
        ("syn-rst", "SYN+RST", f::SYN | f::RST, false),
        (
            "syn-rst-ack-v6",
            "SYN+RST+ACK",
            f::SYN | f::RST | f::ACK,
            true,
        ),
        ("fin-rst", "FIN+RST", f::FIN | f::RST, false),
        (
            "xmas",
            "FIN+PSH+URG without ACK (Xmas scan)",
            f::FIN | f::PSH | f::URG,
            false,
        ),
        (
            "xmas-v6",
            "FIN+PSH+URG without ACK (Xmas scan)",
            f::FIN | f::PSH | f::URG,
            true,
        ),
        ("all", "every flag bit", 0xff, false),
    ];
    for (name, about, flags, v6) in invalid {
        let (_, p) = tcp_packet(v6, g.port(), flags, b"");
        g.dropped(
            &format!("tcp-flags-{name}"),
            &format!("{about} to a VIP: no stack sends it"),
            Counter::DropTcpFlags,
            craft::frame(&[], p),
        );
    }
}
