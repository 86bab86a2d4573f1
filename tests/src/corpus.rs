//! The crafted-packet corpus: malformed and hostile frames, each with the
//! verdict the XDP program must give it. `generate` builds it, `render`
//! writes it as `tests/corpus/packets.txt` (kept in the repository, so it
//! can be reviewed and diffed), `parse` reads the file back; the `corpus`
//! test target checks the file equals the generator's output and runs every
//! entry through BPF_PROG_TEST_RUN, plus every truncation of every valid
//! frame and all 256 TCP flag bytes. Nothing goes to a backend unless it is
//! valid traffic of a VIP flow (entries with a `flow`).
//!
//! Decisions (the data plane's side is in `lb-ebpf/src/parse.rs`):
//! - **Truncated or inconsistent headers** are `DROP drop_malformed`,
//!   whoever they are for: IHL < 5 or past the total length, IP version
//!   not matching the ethertype, total / payload length past the frame or
//!   cutting a header, TCP data offset < 5 or past the packet, UDP length
//!   < 8 (zero-length UDP) or past the packet, an extension header or ICMP
//!   header past the packet, hop-by-hop not first, an ICMP error quoting
//!   less than an IP header plus 8 bytes. A frame cut anywhere inside its IP
//!   packet is therefore dropped; cut in its Ethernet padding it is still
//!   whole and forwarded. With the IP length fixed to match the cut (a
//!   "consistent" cut), it is dropped until the last header the data plane
//!   reads is whole: the TCP header (the payload may be short), the UDP
//!   datagram (its length field covers the payload), or the quoted IP
//!   header plus 8 bytes of an ICMP error.
//! - **Valid but not balanced** goes up the stack (`PASS`): non-IP
//!   (`pass_not_ip`, also a third VLAN tag), not a VIP (`pass_not_vip`),
//!   fragments (`pass_fragment`: IPv4 first, middle and last; IPv6 with a
//!   fragment header, atomic fragments included), IPv6 chains longer than
//!   four extension headers or with a routing header not yet done
//!   (`pass_ipv6_ext`), other protocols and ICMP that is not an error about
//!   a VIP flow (`pass_unsupported_l4`).
//! - **VLAN**: one 802.1Q tag, an 802.1ad tag, or QinQ (0x88a8 or 0x8100
//!   outer, 0x8100 inner) are forwarded with their tags.
//! - **IPv4 options** (any IHL up to 15) and **IPv6 extension headers** (up
//!   to four of hop-by-hop, done routing, destination options) are
//!   forwarded; the flow's protocol is the one after them.
//! - **Not read, not judged**: checksums (IP, TCP, UDP, ICMP) and the
//!   contents of IPv4 options, TCP options and payloads. The frame reaches
//!   the backend unchanged and its stack checks them, as it would without
//!   a load balancer; "valid" here means valid in every field the data
//!   plane reads.
//! - **TTL / hop limit 0 or 1** are forwarded unchanged: the frame is sent
//!   on at L2 to the backend, which is the destination host, not a hop.
//! - **UDP** of length exactly 8 (empty payload) is valid; shorter is
//!   malformed; shorter than the IP payload is valid (the stack trims it).
//! - **TCP flags**: to a VIP, no control bit, SYN+FIN, SYN+RST, FIN+RST and
//!   FIN+PSH+URG without ACK are `DROP drop_tcp_flags` (what firewalls call
//!   null, SYN-FIN, Xmas scans); ECE/CWR do not matter. Every other
//!   combination is forwarded, FIN alone and non-SYN packets of unknown
//!   flows included (that is how flows survive a failover). To other
//!   addresses, flags are not judged (`pass_not_vip`).
//! - **ICMP errors** (ICMP unreachable incl. fragmentation needed, time
//!   exceeded; ICMPv6 unreachable, packet too big, time exceeded) sent to a
//!   VIP address and quoting a TCP/UDP packet from that VIP's service are
//!   `TX forwarded_icmp_error`, unchanged but for the MACs, to the backend
//!   of the client-to-VIP flow they quote (tracked, else Maglev's pick; no
//!   entry created). Quoting another sender, or a port that is no VIP:
//!   `pass_not_vip`; quoting ICMP, a later IPv4 fragment or an IPv6 packet
//!   with extension headers, and every other ICMP type: `pass_unsupported_l4`.

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
};

use anyhow::{anyhow, bail, Context as _};
use lb_common::stats::Counter;
use lb_userspace::config::Protocol;

use crate::{
    craft::{
        self, bytes, end_of, ethertype, offset_of, proto, quote, tcp_flag as f, Ext, Ip, Kind,
        Layer, Upper,
    },
    testbed::{VIP4, VIP6},
};

/// Where the corpus file lives, relative to the `tests` crate.
pub const FILE: &str = "corpus/packets.txt";
/// Set to write the corpus file instead of comparing it.
pub const WRITE_ENV: &str = "LB_WRITE_CORPUS";

/// The client of the crafted flows (IPv4).
pub const CLIENT4: &str = "198.18.0.10";
/// The client of the crafted flows (IPv6).
pub const CLIENT6: &str = "2001:2::10";
/// An address of the load balancer's host that is no VIP (IPv4).
pub const HOST4: &str = "198.18.0.2";
/// An address of the load balancer's host that is no VIP (IPv6).
pub const HOST6: &str = "2001:2::2";
/// The router that reports ICMP errors (IPv4).
pub const ROUTER4: &str = "198.18.0.1";
/// The router that reports ICMP errors (IPv6).
pub const ROUTER6: &str = "2001:2::1";
/// Port of the TCP VIPs.
pub const TCP_PORT: u16 = 80;
/// Port of the UDP VIPs.
pub const UDP_PORT: u16 = 53;

/// An XDP verdict as the corpus names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// XDP_PASS: up the stack, untouched.
    Pass,
    /// XDP_DROP.
    Drop,
    /// XDP_TX: to a backend, MACs rewritten.
    Tx,
}

impl Verdict {
    /// Its name in the file.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Drop => "DROP",
            Verdict::Tx => "TX",
        }
    }

    /// The XDP action BPF_PROG_TEST_RUN returns for it.
    pub const fn action(self) -> u32 {
        match self {
            Verdict::Drop => crate::testbed::action::DROP,
            Verdict::Pass => crate::testbed::action::PASS,
            Verdict::Tx => crate::testbed::action::TX,
        }
    }

    /// The verdict of an XDP action, if it is one of these.
    pub fn of_action(action: u32) -> Option<Verdict> {
        [Verdict::Pass, Verdict::Drop, Verdict::Tx]
            .into_iter()
            .find(|v| v.action() == action)
    }
}

/// The client-to-VIP flow a valid packet belongs to (or an ICMP error
/// quotes the reply of).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipFlow {
    /// The VIP's protocol.
    pub protocol: Protocol,
    /// The client's address and port.
    pub client: SocketAddr,
    /// The VIP's address and port.
    pub vip: SocketAddr,
}

impl VipFlow {
    /// The flow as the test bed's packet builders describe it.
    pub fn flow(&self) -> crate::packet::Flow {
        crate::packet::Flow {
            src: self.client.ip(),
            dst: self.vip.ip(),
            sport: self.client.port(),
            dport: self.vip.port(),
        }
    }
}

/// One crafted frame and what must happen to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unique name.
    pub name: String,
    /// What it is and why it gets its verdict.
    pub about: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The verdict counter it bumps.
    pub counter: Counter,
    /// Present iff the frame is valid VIP traffic: its flow. Only these
    /// may be TX (to that flow's backend).
    pub flow: Option<VipFlow>,
    /// The frame, header by header.
    pub layers: Vec<Layer>,
}

impl Entry {
    /// The frame's bytes.
    pub fn frame(&self) -> Vec<u8> {
        bytes(&self.layers)
    }
}

fn addr(s: &str) -> IpAddr {
    s.parse().expect("corpus address")
}

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(addr(ip), port)
}

fn from_client4(dst: &str) -> Ip {
    Ip::new(addr(CLIENT4), addr(dst))
}

fn from_client6(dst: &str) -> Ip {
    Ip::new(addr(CLIENT6), addr(dst))
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Upper {
    Upper::Tcp {
        sport,
        dport,
        flags,
        payload: payload.to_vec(),
    }
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Upper {
    Upper::Udp {
        sport,
        dport,
        payload: payload.to_vec(),
    }
}

fn icmp(kind: u8, code: u8, rest: [u8; 4], body: Vec<Layer>) -> Upper {
    Upper::Icmp {
        kind,
        code,
        rest,
        body,
    }
}

/// `layers` with `value` written at `index` of the first layer of `kind`
/// (the IPv4 header checksum refreshed).
fn set(layers: &[Layer], kind: Kind, index: usize, value: &[u8]) -> Vec<Layer> {
    let mut out = layers.to_vec();
    let layer = out
        .iter_mut()
        .find(|l| l.kind == kind)
        .expect("layer to bend");
    layer.bytes[index..index + value.len()].copy_from_slice(value);
    craft::fix_ipv4_checksum(&mut out);
    out
}

/// `layers` with `extra` appended as Ethernet padding.
fn padded(layers: &[Layer], extra: usize) -> Vec<Layer> {
    let mut out = layers.to_vec();
    out.push(Layer::new(Kind::Padding, vec![0; extra]));
    out
}

/// An AH header (RFC 4302) protecting TCP: 24 bytes, SPI 1, sequence 1,
/// a zero ICV.
fn ah_header() -> Vec<u8> {
    let mut ah = vec![proto::TCP, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
    ah.resize(24, 0);
    ah
}

/// Payload of crafted segments (and the quoted replies).
const DATA: &[u8] = b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n";
/// Ethertype of LLDP (a non-IP frame that is no ARP).
const ETH_P_LLDP: u16 = 0x88cc;

/// Builds the corpus entries in order.
struct Gen {
    entries: Vec<Entry>,
    port: u16,
}

impl Gen {
    /// A fresh client port, so entries spread over the backends.
    fn port(&mut self) -> u16 {
        self.port += 1;
        self.port
    }

    fn push(
        &mut self,
        name: &str,
        about: &str,
        verdict: Verdict,
        counter: Counter,
        flow: Option<VipFlow>,
        layers: Vec<Layer>,
    ) {
        assert!(
            self.entries.iter().all(|e| e.name != name),
            "duplicate corpus entry {name}"
        );
        self.entries.push(Entry {
            name: name.to_owned(),
            about: about.to_owned(),
            verdict,
            counter,
            flow,
            layers,
        });
    }

    fn forwarded(&mut self, name: &str, about: &str, flow: VipFlow, layers: Vec<Layer>) {
        self.push(
            name,
            about,
            Verdict::Tx,
            Counter::Forwarded,
            Some(flow),
            layers,
        );
    }

    fn icmp_forwarded(&mut self, name: &str, about: &str, flow: VipFlow, layers: Vec<Layer>) {
        self.push(
            name,
            about,
            Verdict::Tx,
            Counter::ForwardedIcmpError,
            Some(flow),
            layers,
        );
    }

    fn passed(&mut self, name: &str, about: &str, counter: Counter, layers: Vec<Layer>) {
        self.push(name, about, Verdict::Pass, counter, None, layers);
    }

    fn dropped(&mut self, name: &str, about: &str, counter: Counter, layers: Vec<Layer>) {
        self.push(name, about, Verdict::Drop, counter, None, layers);
    }

    fn malformed(&mut self, name: &str, about: &str, layers: Vec<Layer>) {
        self.dropped(name, about, Counter::DropMalformed, layers);
    }
}

fn flow(protocol: Protocol, v6: bool, sport: u16) -> VipFlow {
    let (client, vip) = if v6 { (CLIENT6, VIP6) } else { (CLIENT4, VIP4) };
    let port = match protocol {
        Protocol::Tcp => TCP_PORT,
        Protocol::Udp => UDP_PORT,
    };
    VipFlow {
        protocol,
        client: sock(client, sport),
        vip: sock(vip, port),
    }
}

/// A TCP segment of a v4 or v6 VIP flow: (flow, IP packet layers).
fn tcp_packet(v6: bool, sport: u16, flags: u8, payload: &[u8]) -> (VipFlow, Vec<Layer>) {
    let ip = if v6 {
        from_client6(VIP6)
    } else {
        from_client4(VIP4)
    };
    let packet = craft::ip_packet(&ip, &tcp(sport, TCP_PORT, flags, payload));
    (flow(Protocol::Tcp, v6, sport), packet)
}

/// A UDP datagram of a v4 or v6 VIP flow.
fn udp_packet(v6: bool, sport: u16, payload: &[u8]) -> (VipFlow, Vec<Layer>) {
    let ip = if v6 {
        from_client6(VIP6)
    } else {
        from_client4(VIP4)
    };
    let packet = craft::ip_packet(&ip, &udp(sport, UDP_PORT, payload));
    (flow(Protocol::Udp, v6, sport), packet)
}

/// The backend's reply of `flow` (from the VIP, 1400 bytes of payload) as
/// an IP packet, with `ip` tweaks applied to its header.
fn reply(flow: &VipFlow, tweak: impl FnOnce(&mut Ip)) -> Vec<Layer> {
    let mut ip = Ip::new(flow.vip.ip(), flow.client.ip());
    tweak(&mut ip);
    let payload = vec![0x5a; 1400];
    let upper = match flow.protocol {
        Protocol::Tcp => tcp(
            flow.vip.port(),
            flow.client.port(),
            f::ACK | f::PSH,
            &payload,
        ),
        Protocol::Udp => udp(flow.vip.port(), flow.client.port(), &payload),
    };
    craft::ip_packet(&ip, &upper)
}

/// An ICMP (v4) or ICMPv6 error from the router to `to`, quoting `quoted`.
fn icmp_error(to: IpAddr, kind: u8, code: u8, rest: [u8; 4], quoted: Vec<Layer>) -> Vec<Layer> {
    let router = if to.is_ipv4() { ROUTER4 } else { ROUTER6 };
    craft::ip_packet(&Ip::new(addr(router), to), &icmp(kind, code, rest, quoted))
}

/// The 4 bytes after the checksum of fragmentation-needed (unused, then
/// the next-hop MTU) and packet-too-big (a 32-bit MTU): the same bytes for
/// MTUs below 65536.
fn mtu(mtu: u16) -> [u8; 4] {
    let [a, b] = mtu.to_be_bytes();
    [0, 0, a, b]
}

/// The shortest IPv4 quote (RFC 792): the header and 8 bytes.
const QUOTE_MIN4: usize = 20 + 8;
/// IPv6 header and 8 bytes.
const QUOTE_MIN6: usize = 40 + 8;

/// The whole corpus, in file order.
pub fn generate() -> Vec<Entry> {
    let mut g = Gen {
        entries: Vec::new(),
        port: 41_000,
    };
    let sections: [fn(&mut Gen); 8] = [
        well_formed,
        link_layer,
        ipv4_fields,
        ipv6_headers,
        fragments,
        transport,
        tcp_flags,
        icmp_errors,
    ];
    // Each section numbers its client ports from its own base, so adding
    // an entry changes no other section's frames in the file.
    for (base, section) in (41_000..).step_by(100).zip(sections) {
        g.port = base;
        section(&mut g);
        assert!(g.port < base + 100, "a section ran out of ports");
    }
    g.entries
}

fn well_formed(g: &mut Gen) {
    let (fl, p) = tcp_packet(false, g.port(), f::SYN, b"");
    g.forwarded(
        "ipv4-tcp-syn",
        "a SYN to the IPv4 TCP VIP",
        fl,
        craft::frame(&[], p),
    );
    let (fl, p) = tcp_packet(false, g.port(), f::ACK | f::PSH, DATA);
    g.forwarded(
        "ipv4-tcp-data",
        "data of a flow the table does not know: Maglev still sends it on",
        fl,
        craft::frame(&[], p),
    );
    let (fl, p) = udp_packet(false, g.port(), b"query");
    g.forwarded(
        "ipv4-udp",
        "a datagram to the IPv4 UDP VIP",
        fl,
        craft::frame(&[], p),
    );
    let (fl, p) = tcp_packet(true, g.port(), f::SYN, b"");
    g.forwarded(
        "ipv6-tcp-syn",
        "a SYN to the IPv6 TCP VIP",
        fl,
        craft::frame(&[], p),
    );
    let (fl, p) = udp_packet(true, g.port(), b"query");
    g.forwarded(
        "ipv6-udp",
        "a datagram to the IPv6 UDP VIP",
        fl,
        craft::frame(&[], p),
    );
    let (fl, p) = tcp_packet(false, g.port(), f::SYN, b"");
    g.forwarded(
        "ipv4-tcp-ethernet-padding",
        "a 54-byte SYN padded to the 60-byte Ethernet minimum: the IP length rules",
        fl,
        padded(&craft::frame(&[], p), 6),
    );
    let (fl, p) = tcp_packet(true, g.port(), f::ACK, b"");
    g.forwarded(
        "ipv6-tcp-trailing-bytes",
        "bytes after the IPv6 packet in the frame are not part of it",
        fl,
        padded(&craft::frame(&[], p), 8),
    );
    for (ttl, v6) in [(0, false), (1, false), (0, true), (1, true)] {
        let sport = g.port();
        let (fl, mut ip) = if v6 {
            (flow(Protocol::Tcp, true, sport), from_client6(VIP6))
        } else {
            (flow(Protocol::Tcp, false, sport), from_client4(VIP4))
        };
        ip.ttl = ttl;
        let family = if v6 { "ipv6-hop-limit" } else { "ipv4-ttl" };
        g.forwarded(
            &format!("{family}-{ttl}"),
            "TTL / hop limit not looked at: forwarded at L2 to the destination host, not routed",
            fl,
            craft::frame(
                &[],
                craft::ip_packet(&ip, &tcp(sport, TCP_PORT, f::SYN, b"")),
            ),
        );
    }
}

fn link_layer(g: &mut Gen) {
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

fn ipv4_fields(g: &mut Gen) {
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

fn ipv6_headers(g: &mut Gen) {
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

fn fragments(g: &mut Gen) {
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
        g.passed(
            name,
            about,
            Counter::PassFragment,
            set(&whole, Kind::Ipv4, 6, &field.to_be_bytes()),
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
            "fragment header with offset 0 and no more (RFC 6946): passed like any fragment",
            vec![Ext::fragment(0, false)],
        ),
        (
            "ipv6-hop-by-hop-then-fragment",
            "a fragment header behind hop-by-hop options",
            vec![Ext::hop_by_hop(), Ext::fragment(0, true)],
        ),
    ];
    for (name, about, ext) in v6 {
        let sport = g.port();
        let mut ip = from_client6(VIP6);
        ip.ext = ext;
        g.passed(
            name,
            about,
            Counter::PassFragment,
            craft::frame(
                &[],
                craft::ip_packet(&ip, &tcp(sport, TCP_PORT, f::ACK, &[7; 64])),
            ),
        );
    }
}

fn transport(g: &mut Gen) {
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

fn tcp_flags(g: &mut Gen) {
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

fn icmp_errors(g: &mut Gen) {
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
    g.passed(
        "icmp4-frag-needed-fragmented",
        "an ICMP error that is itself a first fragment: fragments go up",
        Counter::PassFragment,
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

/// The corpus as the file holds it.
pub fn render(entries: &[Entry]) -> String {
    let mut out = String::from(HEADER);
    for e in entries {
        let _ = writeln!(out, "\n[{}]", e.name);
        let _ = writeln!(out, "about = {}", e.about);
        let _ = writeln!(out, "expect = {} {}", e.verdict.name(), e.counter.name());
        if let Some(flow) = &e.flow {
            let _ = writeln!(
                out,
                "flow = {} {} > {}",
                flow.protocol, flow.client, flow.vip
            );
        }
        for layer in &e.layers {
            let hex: String = layer.bytes.iter().map(|b| format!("{b:02x}")).collect();
            let _ = writeln!(out, "{} = {hex}", layer.kind.name());
        }
    }
    out
}

const HEADER: &str = "\
# Crafted frames for the XDP load balancer, each with the verdict it must get.
# Generated by lb_tests::corpus::generate (tests/src/corpus.rs: the decisions
# behind each verdict are there); do not edit by hand. To regenerate:
#   LB_WRITE_CORPUS=1 cargo test -p lb-tests --test corpus corpus_file
# The `corpus` test target runs every entry through the compiled program
# (BPF_PROG_TEST_RUN) with VIPs 198.18.0.100 and 2001:2::100, TCP port 80 and
# UDP port 53, three backends each (tests/src/testbed.rs).
#
# [name]
# about  = what the frame is, why it gets its verdict
# expect = XDP verdict (PASS, DROP, TX) and the verdict counter it bumps
# flow   = only on valid VIP traffic, the only frames that may be TX: the
#          client-to-VIP flow it belongs to, or that an ICMP error quotes the
#          reply of; TX goes to that flow's backend
# <layer> = hex bytes, one header per line, in frame order
";

/// Reads a corpus file.
pub fn parse(text: &str) -> anyhow::Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let at = || format!("line {}", number + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            entries.push(Entry {
                name: name.to_owned(),
                about: String::new(),
                verdict: Verdict::Pass,
                counter: Counter::PassNotIp,
                flow: None,
                layers: Vec::new(),
            });
            continue;
        }
        let entry = entries
            .last_mut()
            .ok_or_else(|| anyhow!("{}: a field before the first [entry]", at()))?;
        let (key, value) = line
            .split_once(" = ")
            .ok_or_else(|| anyhow!("{}: expected `key = value`", at()))?;
        match key {
            "about" => entry.about = value.to_owned(),
            "expect" => {
                let (verdict, counter) = value
                    .split_once(' ')
                    .ok_or_else(|| anyhow!("{}: expected `VERDICT counter`", at()))?;
                entry.verdict = [Verdict::Pass, Verdict::Drop, Verdict::Tx]
                    .into_iter()
                    .find(|v| v.name() == verdict)
                    .ok_or_else(|| anyhow!("{}: unknown verdict {verdict}", at()))?;
                entry.counter = Counter::ALL
                    .into_iter()
                    .find(|c| c.name() == counter)
                    .ok_or_else(|| anyhow!("{}: unknown counter {counter}", at()))?;
            }
            "flow" => entry.flow = Some(parse_flow(value).with_context(at)?),
            kind => {
                let kind = Kind::from_name(kind)
                    .ok_or_else(|| anyhow!("{}: unknown field or layer {kind}", at()))?;
                entry
                    .layers
                    .push(Layer::new(kind, parse_hex(value).with_context(at)?));
            }
        }
    }
    Ok(entries)
}

fn parse_flow(value: &str) -> anyhow::Result<VipFlow> {
    let mut words = value.split(' ');
    let (Some(protocol), Some(client), Some(">"), Some(vip), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        bail!("expected `tcp|udp CLIENT:PORT > VIP:PORT`, got {value}");
    };
    let protocol = match protocol {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => bail!("unknown protocol {other}"),
    };
    Ok(VipFlow {
        protocol,
        client: client.parse().context("client address")?,
        vip: vip.parse().context("VIP address")?,
    })
}

fn parse_hex(value: &str) -> anyhow::Result<Vec<u8>> {
    if !value.len().is_multiple_of(2) {
        bail!("odd number of hex digits");
    }
    (0..value.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&value[i..i + 2], 16)
                .with_context(|| format!("bad hex byte {}", &value[i..i + 2]))
        })
        .collect()
}

/// A frame derived from an entry by cutting it, and what must happen to it.
#[derive(Debug, Clone)]
pub struct Cut {
    /// The frame as cut (and, for a consistent cut, with its IP length
    /// fixed).
    pub frame: Vec<u8>,
    /// Whether the cut frame is still valid VIP traffic (TX expected, to the
    /// entry's flow's backend); otherwise `DROP drop_malformed`.
    pub valid: bool,
    /// Whether this is a consistent cut.
    pub consistent: bool,
}

/// Offset and kind of the (outer) IP header.
fn ip_layer(layers: &[Layer]) -> Option<(usize, Kind)> {
    [Kind::Ipv4, Kind::Ipv6]
        .into_iter()
        .find_map(|k| offset_of(layers, k).map(|o| (o, k)))
}

/// Where the IP packet ends according to its length field.
fn ip_end(layers: &[Layer]) -> Option<usize> {
    let (off, kind) = ip_layer(layers)?;
    let frame = bytes(layers);
    let field = |at: usize| usize::from(u16::from_be_bytes([frame[at], frame[at + 1]]));
    Some(match kind {
        Kind::Ipv4 => off + field(off + 2),
        _ => off + 40 + field(off + 4),
    })
}

/// The shortest IP packet end at which a valid entry stays valid: the end
/// of the last header the data plane reads (see the module comment).
fn min_valid_end(layers: &[Layer]) -> Option<usize> {
    if let Some(end) = end_of(layers, Kind::Tcp) {
        return Some(end);
    }
    if let Some(off) = offset_of(layers, Kind::Udp) {
        let udp = &layers.iter().find(|l| l.kind == Kind::Udp)?.bytes;
        return Some(off + usize::from(u16::from_be_bytes([udp[4], udp[5]])));
    }
    [Kind::QuotedIpv4, Kind::QuotedIpv6]
        .into_iter()
        .find_map(|k| end_of(layers, k))
        .map(|end| end + 8)
}

/// The smallest frame BPF_PROG_TEST_RUN takes: an Ethernet header.
pub const MIN_FRAME: usize = 14;

/// Every cut of `entry`'s frame, from `MIN_FRAME` bytes to one byte short:
/// plain cuts (the frame ends early, its length fields unchanged), and for
/// valid entries also consistent ones (the IP length field set to match,
/// wherever the cut leaves it whole).
pub fn cuts(entry: &Entry) -> Vec<Cut> {
    let frame = entry.frame();
    let ip_end = ip_end(&entry.layers);
    let mut out = Vec::new();
    for len in MIN_FRAME..frame.len() {
        out.push(Cut {
            frame: frame[..len].to_vec(),
            valid: entry.flow.is_some() && ip_end.is_some_and(|end| len >= end),
            consistent: false,
        });
    }
    let (Some((ip_off, kind)), Some(min_end), Some(_)) = (
        ip_layer(&entry.layers),
        min_valid_end(&entry.layers),
        entry.flow,
    ) else {
        return out;
    };
    for len in MIN_FRAME..frame.len() {
        let mut cut = frame[..len].to_vec();
        match kind {
            Kind::Ipv4 if len >= ip_off + 4 => {
                let total = u16::try_from(len - ip_off).expect("length");
                cut[ip_off + 2..ip_off + 4].copy_from_slice(&total.to_be_bytes());
            }
            Kind::Ipv6 if len >= ip_off + 40 => {
                let payload = u16::try_from(len - ip_off - 40).expect("length");
                cut[ip_off + 4..ip_off + 6].copy_from_slice(&payload.to_be_bytes());
            }
            _ => continue,
        }
        out.push(Cut {
            frame: cut,
            valid: len >= min_end,
            consistent: true,
        });
    }
    out
}

/// The rule the data plane applies to TCP flags to a VIP, written out
/// independently of it: true when the flags byte is a combination no stack
/// sends.
pub fn tcp_flags_impossible(flags: u8) -> bool {
    let has = |bit: u8| flags & bit != 0;
    let control = flags & !(f::ECE | f::CWR);
    control == 0
        || (has(f::SYN) && has(f::FIN))
        || (has(f::SYN) && has(f::RST))
        || (has(f::FIN) && has(f::RST))
        || (has(f::FIN) && has(f::PSH) && has(f::URG) && !has(f::ACK))
}

/// A SYN-shaped TCP frame of a fresh VIP flow with the flags byte `flags`:
/// (flow, frame).
pub fn tcp_with_flags(v6: bool, sport: u16, flags: u8) -> (VipFlow, Vec<u8>) {
    let (fl, p) = tcp_packet(v6, sport, flags, b"");
    (fl, bytes(&craft::frame(&[], p)))
}

/// An ICMP fragmentation-needed (IPv4) or packet-too-big (IPv6) frame about
/// `flow`, quoting its backend's reply as a router would.
pub fn frag_needed(flow: &VipFlow) -> Vec<u8> {
    let v4 = flow.vip.is_ipv4();
    let (kind, code, mtu_value, quote_len) = if v4 {
        (3, 4, 1400, QUOTE_MIN4)
    } else {
        (2, 0, 1280, QUOTE_MIN6)
    };
    bytes(&craft::frame(
        &[],
        icmp_error(
            flow.vip.ip(),
            kind,
            code,
            mtu(mtu_value),
            quote(&reply(flow, |_| {}), quote_len),
        ),
    ))
}

/// A TCP/UDP VIP flow from the corpus client (for tests that build frames
/// with the corpus builders).
pub fn vip_flow(protocol: Protocol, v6: bool, sport: u16) -> VipFlow {
    flow(protocol, v6, sport)
}
