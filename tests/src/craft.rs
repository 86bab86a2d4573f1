//! Frames built layer by layer, for the crafted-packet corpus: every header
//! is its own named byte string, so a test can bend one field of one header,
//! cut a frame inside a given header, or fix the IP length after a cut, and
//! the corpus file shows each header on its own line. Lengths and checksums
//! are computed for the well-formed frames; the bent ones keep them as they
//! were, bar the IPv4 header checksum.

use std::net::IpAddr;

use crate::packet::{CLIENT_MAC, LB_MAC};

/// What a layer of a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Ethernet II header (destination, source, ethertype).
    Eth,
    /// A VLAN tag (TCI, then the next ethertype).
    Vlan,
    /// IPv4 header, options included.
    Ipv4,
    /// IPv6 fixed header.
    Ipv6,
    /// IPv6 hop-by-hop options header.
    HopByHop,
    /// IPv6 routing header.
    Routing,
    /// IPv6 destination options header.
    DestOpts,
    /// IPv6 fragment header.
    Fragment,
    /// TCP header, options included.
    Tcp,
    /// UDP header.
    Udp,
    /// ICMP header (type, code, checksum, 4 more bytes).
    Icmp,
    /// ICMPv6 header (the same shape).
    Icmpv6,
    /// Transport payload, or the body of a protocol not parsed here.
    Payload,
    /// The IPv4 header an ICMP error quotes.
    QuotedIpv4,
    /// The IPv6 header an ICMPv6 error quotes.
    QuotedIpv6,
    /// What an ICMP error quotes after the IP header.
    QuotedData,
    /// Bytes of the frame past the IP packet (Ethernet padding).
    Padding,
}

impl Kind {
    /// Every kind, for parsing names.
    pub const ALL: [Kind; 17] = [
        Kind::Eth,
        Kind::Vlan,
        Kind::Ipv4,
        Kind::Ipv6,
        Kind::HopByHop,
        Kind::Routing,
        Kind::DestOpts,
        Kind::Fragment,
        Kind::Tcp,
        Kind::Udp,
        Kind::Icmp,
        Kind::Icmpv6,
        Kind::Payload,
        Kind::QuotedIpv4,
        Kind::QuotedIpv6,
        Kind::QuotedData,
        Kind::Padding,
    ];

    /// The name used in the corpus file.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Eth => "eth",
            Kind::Vlan => "vlan",
            Kind::Ipv4 => "ipv4",
            Kind::Ipv6 => "ipv6",
            Kind::HopByHop => "hop-by-hop",
            Kind::Routing => "routing",
            Kind::DestOpts => "dest-opts",
            Kind::Fragment => "fragment",
            Kind::Tcp => "tcp",
            Kind::Udp => "udp",
            Kind::Icmp => "icmp",
            Kind::Icmpv6 => "icmpv6",
            Kind::Payload => "payload",
            Kind::QuotedIpv4 => "quoted-ipv4",
            Kind::QuotedIpv6 => "quoted-ipv6",
            Kind::QuotedData => "quoted-data",
            Kind::Padding => "padding",
        }
    }

    /// The kind with this corpus-file name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One header (or payload) of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// What it is.
    pub kind: Kind,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl Layer {
    /// A layer of `kind` holding `bytes`.
    pub fn new(kind: Kind, bytes: Vec<u8>) -> Self {
        Self { kind, bytes }
    }
}

/// The bytes of a frame made of `layers`.
pub fn bytes(layers: &[Layer]) -> Vec<u8> {
    layers
        .iter()
        .flat_map(|l| l.bytes.iter().copied())
        .collect()
}

/// Offset of the first layer of `kind`, if any.
pub fn offset_of(layers: &[Layer], kind: Kind) -> Option<usize> {
    let mut offset = 0;
    for layer in layers {
        if layer.kind == kind {
            return Some(offset);
        }
        offset += layer.bytes.len();
    }
    None
}

/// Offset just past the first layer of `kind`, if any.
pub fn end_of(layers: &[Layer], kind: Kind) -> Option<usize> {
    let start = offset_of(layers, kind)?;
    let layer = layers.iter().find(|l| l.kind == kind)?;
    Some(start + layer.bytes.len())
}

/// Ethertypes of the tags and network layers built here.
pub mod ethertype {
    /// 802.1Q customer tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// ARP.
    pub const ARP: u16 = 0x0806;
}

/// IP protocol / IPv6 next-header numbers used here.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 hop-by-hop options.
    pub const HOP_BY_HOP: u8 = 0;
    /// IPv6 routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const FRAGMENT: u8 = 44;
    /// ESP.
    pub const ESP: u8 = 50;
    /// AH.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const NO_NEXT: u8 = 59;
    /// IPv6 destination options.
    pub const DEST_OPTS: u8 = 60;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// TCP flag bits.
pub mod tcp_flag {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// An IPv6 extension header: its kind and the bytes after its first two
/// (next header and length), which are filled in when the chain is built.
#[derive(Debug, Clone)]
pub struct Ext {
    /// `HopByHop`, `Routing`, `DestOpts` or `Fragment`.
    pub kind: Kind,
    /// Bytes after the next-header and length bytes; with them, a multiple
    /// of 8 bytes.
    pub body: Vec<u8>,
}

impl Ext {
    /// Hop-by-hop options holding only padding (PadN): 8 bytes.
    pub fn hop_by_hop() -> Self {
        Self {
            kind: Kind::HopByHop,
            body: vec![1, 4, 0, 0, 0, 0],
        }
    }

    /// Destination options holding padding; `words` 8-byte units long.
    pub fn dest_opts(words: usize) -> Self {
        let len = words * 8 - 2;
        let mut body = vec![1, u8::try_from(len - 2).expect("PadN length")];
        body.resize(len, 0);
        Self {
            kind: Kind::DestOpts,
            body,
        }
    }

    /// A segment routing header (type 4) with one segment, `segments_left`
    /// of them still to visit: 24 bytes.
    pub fn routing(segments_left: u8, segment: [u8; 16]) -> Self {
        let mut body = vec![4, segments_left, 0, 0, 0, 0];
        body.extend_from_slice(&segment);
        Self {
            kind: Kind::Routing,
            body,
        }
    }

    /// A fragment header: offset in 8-byte units, more-fragments flag.
    pub fn fragment(offset_units: u16, more: bool) -> Self {
        let field = (offset_units << 3) | u16::from(more);
        let mut body = field.to_be_bytes().to_vec();
        body.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        Self {
            kind: Kind::Fragment,
            body,
        }
    }

    fn number(&self) -> u8 {
        match self.kind {
            Kind::HopByHop => proto::HOP_BY_HOP,
            Kind::Routing => proto::ROUTING,
            Kind::Fragment => proto::FRAGMENT,
            _ => proto::DEST_OPTS,
        }
    }
}

/// The IP header of a crafted packet.
#[derive(Debug, Clone)]
pub struct Ip {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// IPv4 options (a multiple of 4 bytes).
    pub options: Vec<u8>,
    /// IPv4 flags and fragment offset field (DF by default).
    pub frag: u16,
    /// IPv6 extension headers, in order.
    pub ext: Vec<Ext>,
}

impl Ip {
    /// A plain header from `src` to `dst` (TTL 64, DF, nothing else).
    pub fn new(src: IpAddr, dst: IpAddr) -> Self {
        Self {
            src,
            dst,
            ttl: 64,
            options: Vec::new(),
            frag: 0x4000,
            ext: Vec::new(),
        }
    }

    fn is_v4(&self) -> bool {
        self.src.is_ipv4()
    }
}

/// What an IP packet carries.
#[derive(Debug, Clone)]
pub enum Upper {
    /// A TCP segment (20-byte header).
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Flags byte.
        flags: u8,
        /// Payload.
        payload: Vec<u8>,
    },
    /// A UDP datagram.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Payload.
        payload: Vec<u8>,
    },
    /// An ICMP (IPv4) or ICMPv6 (IPv6) message.
    Icmp {
        /// Type.
        kind: u8,
        /// Code.
        code: u8,
        /// The 4 bytes after the checksum (MTU, identifier, ...).
        rest: [u8; 4],
        /// The body: for errors, the quoted packet's layers.
        body: Vec<Layer>,
    },
    /// Anything else: protocol number and bytes.
    Other {
        /// IP protocol / next header.
        proto: u8,
        /// The bytes.
        bytes: Vec<u8>,
    },
}

impl Upper {
    fn proto(&self, v4: bool) -> u8 {
        match self {
            Upper::Tcp { .. } => proto::TCP,
            Upper::Udp { .. } => proto::UDP,
            Upper::Icmp { .. } if v4 => proto::ICMP,
            Upper::Icmp { .. } => proto::ICMPV6,
            Upper::Other { proto, .. } => *proto,
        }
    }
}

/// The internet checksum of the concatenation of `parts`.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let data: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn addr_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn pseudo_header(ip: &Ip, proto: u8, len: usize) -> Vec<u8> {
    let mut out = addr_bytes(ip.src);
    out.extend(addr_bytes(ip.dst));
    if ip.is_v4() {
        out.extend([0, proto]);
        out.extend(u16::try_from(len).expect("length").to_be_bytes());
    } else {
        out.extend(u32::try_from(len).expect("length").to_be_bytes());
        out.extend([0, 0, 0, proto]);
    }
    out
}

/// The transport layers of `upper`, checksums computed for `ip`.
fn upper_layers(ip: &Ip, upper: &Upper) -> Vec<Layer> {
    let v4 = ip.is_v4();
    let proto = upper.proto(v4);
    match upper {
        Upper::Tcp {
            sport,
            dport,
            flags,
            payload,
        } => {
            let mut h = Vec::with_capacity(20);
            h.extend(sport.to_be_bytes());
            h.extend(dport.to_be_bytes());
            h.extend(1000u32.to_be_bytes());
            let ack = if flags & tcp_flag::ACK != 0 {
                2000u32
            } else {
                0
            };
            h.extend(ack.to_be_bytes());
            h.extend([0x50, *flags]);
            h.extend(64240u16.to_be_bytes());
            h.extend([0, 0, 0, 0]);
            let pseudo = pseudo_header(ip, proto, h.len() + payload.len());
            let sum = checksum(&[&pseudo, &h, payload]);
            h[16..18].copy_from_slice(&sum.to_be_bytes());
            with_payload(Layer::new(Kind::Tcp, h), payload)
        }
        Upper::Udp {
            sport,
            dport,
            payload,
        } => {
            let len = 8 + payload.len();
            let mut h = Vec::with_capacity(8);
            h.extend(sport.to_be_bytes());
            h.extend(dport.to_be_bytes());
            h.extend(u16::try_from(len).expect("UDP length").to_be_bytes());
            h.extend([0, 0]);
            let pseudo = pseudo_header(ip, proto, len);
            let sum = match checksum(&[&pseudo, &h, payload]) {
                0 => 0xffff,
                s => s,
            };
            h[6..8].copy_from_slice(&sum.to_be_bytes());
            with_payload(Layer::new(Kind::Udp, h), payload)
        }
        Upper::Icmp {
            kind,
            code,
            rest,
            body,
        } => {
            let mut h = vec![*kind, *code, 0, 0];
            h.extend(rest);
            let body_bytes = bytes(body);
            let sum = if v4 {
                checksum(&[&h, &body_bytes])
            } else {
                let pseudo = pseudo_header(ip, proto, h.len() + body_bytes.len());
                checksum(&[&pseudo, &h, &body_bytes])
            };
            h[2..4].copy_from_slice(&sum.to_be_bytes());
            let kind = if v4 { Kind::Icmp } else { Kind::Icmpv6 };
            let mut out = vec![Layer::new(kind, h)];
            out.extend(body.iter().cloned());
            out
        }
        Upper::Other { bytes, .. } if bytes.is_empty() => Vec::new(),
        Upper::Other { bytes, .. } => vec![Layer::new(Kind::Payload, bytes.clone())],
    }
}

fn with_payload(header: Layer, payload: &[u8]) -> Vec<Layer> {
    let mut out = vec![header];
    if !payload.is_empty() {
        out.push(Layer::new(Kind::Payload, payload.to_vec()));
    }
    out
}

/// An IP packet (no link layer): IP header, extension headers, transport.
pub fn ip_packet(ip: &Ip, upper: &Upper) -> Vec<Layer> {
    let v4 = ip.is_v4();
    let upper_proto = upper.proto(v4);
    let upper = upper_layers(ip, upper);
    let upper_len: usize = upper.iter().map(|l| l.bytes.len()).sum();
    let mut out = Vec::new();
    if v4 {
        let header_len = 20 + ip.options.len();
        assert_eq!(ip.options.len() % 4, 0, "options fill 32-bit words");
        let mut h = Vec::with_capacity(header_len);
        h.push(0x40 | u8::try_from(header_len / 4).expect("IHL"));
        h.push(0);
        h.extend(
            u16::try_from(header_len + upper_len)
                .expect("total length")
                .to_be_bytes(),
        );
        h.extend(0x0101u16.to_be_bytes());
        h.extend(ip.frag.to_be_bytes());
        h.extend([ip.ttl, upper_proto, 0, 0]);
        h.extend(addr_bytes(ip.src));
        h.extend(addr_bytes(ip.dst));
        h.extend(&ip.options);
        let sum = checksum(&[&h]);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        out.push(Layer::new(Kind::Ipv4, h));
    } else {
        let ext_len: usize = ip.ext.iter().map(|e| 2 + e.body.len()).sum();
        let first = ip.ext.first().map_or(upper_proto, Ext::number);
        let mut h = vec![0x60, 0, 0, 0];
        h.extend(
            u16::try_from(ext_len + upper_len)
                .expect("payload length")
                .to_be_bytes(),
        );
        h.extend([first, ip.ttl]);
        h.extend(addr_bytes(ip.src));
        h.extend(addr_bytes(ip.dst));
        out.push(Layer::new(Kind::Ipv6, h));
        for (i, ext) in ip.ext.iter().enumerate() {
            let next = ip.ext.get(i + 1).map_or(upper_proto, Ext::number);
            let total = 2 + ext.body.len();
            assert_eq!(total % 8, 0, "extension headers fill 8-byte units");
            let len_byte = if ext.kind == Kind::Fragment {
                0
            } else {
                u8::try_from(total / 8 - 1).expect("extension length")
            };
            let mut bytes = vec![next, len_byte];
            bytes.extend(&ext.body);
            out.push(Layer::new(ext.kind, bytes));
        }
    }
    out.extend(upper);
    out
}

/// A frame: Ethernet from the client's MAC to the load balancer's, `tags`
/// (the TPIDs of the VLAN tags, outermost first), then `packet`.
pub fn frame(tags: &[u16], packet: Vec<Layer>) -> Vec<Layer> {
    let l3_type = match packet.first().map(|l| l.kind) {
        Some(Kind::Ipv6) => ethertype::IPV6,
        _ => ethertype::IPV4,
    };
    frame_with_type(tags, l3_type, packet)
}

/// A frame whose innermost ethertype is `l3_type` (for non-IP payloads).
pub fn frame_with_type(tags: &[u16], l3_type: u16, packet: Vec<Layer>) -> Vec<Layer> {
    let first = tags.first().copied().unwrap_or(l3_type);
    let mut eth = LB_MAC.to_vec();
    eth.extend(CLIENT_MAC);
    eth.extend(first.to_be_bytes());
    let mut out = vec![Layer::new(Kind::Eth, eth)];
    for (i, _) in tags.iter().enumerate() {
        let next = tags.get(i + 1).copied().unwrap_or(l3_type);
        let vid = 100 + u16::try_from(i).expect("tag index");
        let mut tag = vid.to_be_bytes().to_vec();
        tag.extend(next.to_be_bytes());
        out.push(Layer::new(Kind::Vlan, tag));
    }
    out.extend(packet);
    out
}

/// The first `len` bytes of an IP packet, as an ICMP error quotes it: its
/// IP header becomes `QuotedIpv4`/`QuotedIpv6`, the rest `QuotedData`.
pub fn quote(packet: &[Layer], len: usize) -> Vec<Layer> {
    let all = bytes(packet);
    let header_len = packet.first().map_or(0, |l| l.bytes.len());
    let kind = match packet.first().map(|l| l.kind) {
        Some(Kind::Ipv6) => Kind::QuotedIpv6,
        _ => Kind::QuotedIpv4,
    };
    let len = len.min(all.len());
    let mut out = vec![Layer::new(kind, all[..header_len.min(len)].to_vec())];
    if len > header_len {
        out.push(Layer::new(Kind::QuotedData, all[header_len..len].to_vec()));
    }
    out
}

/// Recomputes the checksum of the (first) IPv4 header in `layers` over the
/// bytes its IHL names (at least 20, at most the layer).
pub fn fix_ipv4_checksum(layers: &mut [Layer]) {
    if let Some(layer) = layers.iter_mut().find(|l| l.kind == Kind::Ipv4) {
        let h = &mut layer.bytes;
        if h.len() < 20 {
            return;
        }
        let ihl = (usize::from(h[0] & 0x0f) * 4).clamp(20, h.len());
        h[10] = 0;
        h[11] = 0;
        let sum = checksum(&[&h[..ihl]]);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
    }
}

/// IPv4 options `len` bytes long (a multiple of 4, from 4 to 40): a
/// router alert (RFC 2113, 4 bytes), then no-operations, the last byte an
/// end-of-options.
pub fn ipv4_options(len: usize) -> Vec<u8> {
    assert!(
        len.is_multiple_of(4) && (4..=40).contains(&len),
        "{len} bytes"
    );
    let mut out = vec![0x94, 0x04, 0, 0];
    out.resize(len, 1);
    if len > 4 {
        out[len - 1] = 0;
    }
    out
}

/// The bytes of a frame from the client: Ethernet, VLAN tags of `tags`
/// (their TPIDs, outermost first), then `ip` carrying `upper`, every
/// length and checksum computed.
pub fn frame_bytes(tags: &[u16], ip: &Ip, upper: &Upper) -> Vec<u8> {
    bytes(&frame(tags, ip_packet(ip, upper)))
}
