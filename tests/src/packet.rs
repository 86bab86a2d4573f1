//! Crafted frames: etherparse builds the well-formed ones, small helpers
//! bend them into the odd shapes the data plane must survive.

use std::net::IpAddr;

use etherparse::{PacketBuilder, PacketBuilderStep, TcpHeader, VlanId};

/// MAC of the client in crafted frames.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// MAC of the load balancer's interface in crafted frames.
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// TCP flags of a crafted segment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tcp {
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
}

/// SYN.
pub const SYN: Tcp = Tcp {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};
/// Bare ACK.
pub const ACK: Tcp = Tcp {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};

/// A 5-tuple (protocol chosen by the builder used).
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

fn base(flow: &Flow, vlan: Option<u16>) -> PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC);
    match (vlan, flow.src, flow.dst) {
        (None, IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (None, IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        (Some(v), IpAddr::V4(s), IpAddr::V4(d)) => eth
            .single_vlan(VlanId::try_new(v).unwrap_or(VlanId::ZERO))
            .ipv4(s.octets(), d.octets(), 64),
        (Some(v), IpAddr::V6(s), IpAddr::V6(d)) => eth
            .single_vlan(VlanId::try_new(v).unwrap_or(VlanId::ZERO))
            .ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed address families in {flow:?}"),
    }
}

/// A TCP segment of `flow` with `flags` and `payload`.
pub fn tcp(flow: &Flow, flags: Tcp, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut header = TcpHeader::new(flow.sport, flow.dport, 1000, 64240);
    header.syn = flags.syn;
    header.ack = flags.ack;
    header.fin = flags.fin;
    header.rst = flags.rst;
    if flags.ack {
        header.acknowledgment_number = 2000;
    }
    let builder = base(flow, vlan).tcp_header(header);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut out, payload)
        .expect("writing a crafted TCP frame");
    out
}

/// A UDP datagram of `flow` with `payload`.
pub fn udp(flow: &Flow, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let builder = base(flow, vlan).udp(flow.sport, flow.dport);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut out, payload)
        .expect("writing a crafted UDP frame");
    out
}

/// An ICMP echo request from `src` to `dst` (IPv4).
pub fn icmp_echo(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .ipv4(src, dst, 64)
        .icmpv4_echo_request(1, 1);
    let mut out = Vec::new();
    builder
        .write(&mut out, b"ping")
        .expect("writing a crafted ICMP frame");
    out
}

/// An ARP request frame (a non-IP ethertype).
pub fn arp_request() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&[0xff; 6]);
    out.extend_from_slice(&CLIENT_MAC);
    out.extend_from_slice(&0x0806u16.to_be_bytes());
    out.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    out.extend_from_slice(&CLIENT_MAC);
    out.extend_from_slice(&[198, 18, 0, 10]);
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&[198, 18, 0, 100]);
    out
}

/// Offset of the IPv4 header in an untagged frame.
const L3: usize = 14;

/// Inserts IPv4 `options` (a multiple of 4 bytes) after the fixed header
/// of an untagged IPv4 frame, fixing IHL, total length and checksum.
pub fn with_ipv4_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "options must fill 32-bit words");
    let ihl = usize::from(frame[L3] & 0x0f) * 4;
    let mut out = frame[..L3 + ihl].to_vec();
    out.extend_from_slice(options);
    out.extend_from_slice(&frame[L3 + ihl..]);
    let new_ihl = (ihl + options.len()) / 4;
    out[L3] = 0x40 | u8::try_from(new_ihl).expect("IHL fits");
    let total = u16::from_be_bytes([out[L3 + 2], out[L3 + 3]]) + options.len() as u16;
    out[L3 + 2..L3 + 4].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_checksum(&mut out);
    out
}

/// Sets the IPv4 "more fragments" flag and fragment offset (in 8-byte
/// units) of an untagged IPv4 frame.
pub fn as_ipv4_fragment(frame: &[u8], more_fragments: bool, offset_units: u16) -> Vec<u8> {
    let mut out = frame.to_vec();
    let field = (if more_fragments { 0x2000 } else { 0 }) | (offset_units & 0x1fff);
    out[L3 + 6..L3 + 8].copy_from_slice(&field.to_be_bytes());
    fix_ipv4_checksum(&mut out);
    out
}

/// Overwrites byte `index` of the frame (for bogus header fields).
pub fn with_byte(frame: &[u8], index: usize, value: u8) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[index] = value;
    out
}

/// Recomputes the IPv4 header checksum of an untagged frame.
pub fn fix_ipv4_checksum(frame: &mut [u8]) {
    let ihl = usize::from(frame[L3] & 0x0f) * 4;
    frame[L3 + 10] = 0;
    frame[L3 + 11] = 0;
    let mut sum: u32 = 0;
    for pair in frame[L3..L3 + ihl].chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !(sum as u16);
    frame[L3 + 10..L3 + 12].copy_from_slice(&checksum.to_be_bytes());
}

/// Finishes the TCP or UDP checksum of a `CHECKSUM_PARTIAL` skb's frame as
/// the NIC or the kernel's `skb_checksum_help` does once a program is done
/// with it: the complement of the one's-complement sum from the L4 header
/// at `l4` to the frame's end (the checksum field, at `field` past it,
/// holding what it held) is stored in the field (0 sent as 0xffff). A
/// test run's skb is never partial, so a test finishes a GSO packet's
/// output itself to see it as it would leave.
pub fn finish_partial_checksum(frame: &mut [u8], l4: usize, field: usize) {
    let mut sum: u64 = frame[l4..]
        .chunks(2)
        .map(|w| u64::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let finished = match !(sum as u16) {
        0 => 0xffff,
        c => c,
    };
    frame[l4 + field..l4 + field + 2].copy_from_slice(&finished.to_be_bytes());
}

/// The frame as the load balancer should send it on: same bytes, MACs
/// rewritten to `backend_mac` from `LB_MAC`.
pub fn forwarded(frame: &[u8], backend_mac: [u8; 6]) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[0..6].copy_from_slice(&backend_mac);
    out[6..12].copy_from_slice(&LB_MAC);
    out
}
