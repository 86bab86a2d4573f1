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
//! - **Fragments** (IPv4 first, middle and last; IPv6 with a fragment
//!   header, atomic fragments included) to a VIP address are `DROP
//!   drop_fragment` (ICMP errors that are fragments too): the node holds
//!   the address and would answer for the backend. To the node's own
//!   address they go up (`pass_fragment`).
//! - **Valid but not balanced** goes up the stack (`PASS`): non-IP
//!   (`pass_not_ip`, also a third VLAN tag), not a VIP (`pass_not_vip`),
//!   fragments to other addresses (`pass_fragment`), IPv6 chains longer than
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

mod cuts;
mod file;
mod fragments;
mod icmp;
mod ipv4;
mod ipv6;
mod link;
mod transport;

pub use cuts::{cuts, Cut, MIN_FRAME};
pub use file::{parse, render};
use fragments::fragments;
use icmp::icmp_errors;
use ipv4::ipv4_fields;
use ipv6::ipv6_headers;
use link::link_layer;
use transport::{tcp_flags, transport};

/// Where the corpus file lives, relative to the `tests` crate.
pub const FILE: &str = "corpus/packets.txt";
/// Set to write the corpus file when it differs from what the generator
/// writes (the test then fails, for the rewrite to be reviewed).
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
