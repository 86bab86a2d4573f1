//! Corpus section: every IPv4 header field the data plane reads.

use super::*;

pub(super) fn ipv4_fields(g: &mut Gen) {
    let fl = flow(Protocol::Tcp, false, g.port());
    let mut ip = from_client4(VIP4);
    // Router alert, then NOPs and an end-of-options byte: IHL 8.
    ip.options = vec![0x94, 0x04, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0];
    g.forwarded(
        "ipv4-options-tcp",
        "IPv4 options (router alert): IHL 8",
        fl,
        craft::frame(
            &[],
            craft::ip_packet(&ip, &tcp(fl.client.port(), TCP_PORT, f::SYN, b"")),
        ),
    );
    let sport = g.port();
    let mut ip = from_client4(VIP4);
    ip.options = vec![1; 40];
    g.forwarded(
        "ipv4-options-max-udp",
        "the most options IPv4 allows: IHL 15",
        flow(Protocol::Udp, false, sport),
        craft::frame(&[], craft::ip_packet(&ip, &udp(sport, UDP_PORT, b"query"))),
    );
    let sport = g.port();
    let mut ip = from_client4(VIP4);
    // A timestamp option whose length (40) runs past the 4 bytes it has.
    ip.options = vec![0x44, 40, 5, 0];
    g.forwarded(
        "ipv4-options-bogus-contents",
        "option contents are not read (like TCP options): the backend's stack judges them",
        flow(Protocol::Tcp, false, sport),
        craft::frame(
            &[],
            craft::ip_packet(&ip, &tcp(sport, TCP_PORT, f::SYN, b"")),
        ),
    );
    let (fl, p) = tcp_packet(false, g.port(), f::SYN, b"");
    let mut p = craft::frame(&[], p);
    p[1].bytes[10] ^= 0xff;
    g.forwarded(
        "ipv4-bad-header-checksum",
        "checksums are not verified: the backend's stack does (the frame is not changed)",
        fl,
        p,
    );
    let (_, base) = tcp_packet(false, g.port(), f::SYN, b"");
    let base = craft::frame(&[], base);
    let cases: [(&str, &str, u8); 4] = [
        ("ipv4-ihl-0", "IHL 0", 0x40),
        ("ipv4-ihl-4", "IHL 4: shorter than the fixed header", 0x44),
        (
            "ipv4-ihl-15-past-total-length",
            "IHL 15 (60 bytes) in a 40-byte packet",
            0x4f,
        ),
        (
            "ipv4-version-5",
            "IP version 5 behind ethertype 0x0800",
            0x55,
        ),
    ];
    for (name, about, vihl) in cases {
        g.malformed(name, about, set(&base, Kind::Ipv4, 0, &[vihl]));
    }
    let total_len = |len: u16| len.to_be_bytes();
    let lengths: [(&str, &str, u16); 6] = [
        (
            "ipv4-total-length-past-frame",
            "total length one byte past the frame",
            41,
        ),
        ("ipv4-total-length-max", "total length 65535", 65_535),
        ("ipv4-total-length-0", "total length 0", 0),
        (
            "ipv4-total-length-below-ihl",
            "total length 19, shorter than its own header",
            19,
        ),
        (
            "ipv4-total-length-cuts-tcp",
            "total length ends 10 bytes into the TCP header",
            30,
        ),
        (
            "ipv4-total-length-no-transport",
            "total length 20: a bare header that claims TCP",
            20,
        ),
    ];
    for (name, about, len) in lengths {
        g.malformed(name, about, set(&base, Kind::Ipv4, 2, &total_len(len)));
    }
    let sport = g.port();
    g.passed(
        "ipv4-sctp-to-vip",
        "SCTP to a VIP address: no TCP/UDP service",
        Counter::PassUnsupportedL4,
        craft::frame(
            &[],
            craft::ip_packet(
                &from_client4(VIP4),
                &Upper::Other {
                    proto: proto::SCTP,
                    bytes: [sport.to_be_bytes(), TCP_PORT.to_be_bytes(), [0; 2], [0; 2]].concat(),
                },
            ),
        ),
    );
}
