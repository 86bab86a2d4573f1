//! The one place that reads headers: Ethernet (+ one 802.1Q tag), IPv4 (any
//! valid IHL), IPv6, TCP and UDP. Every read is bounds-checked against
//! `data_end` right before it, as the verifier requires. What cannot be
//! balanced comes back as the counter that names why.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use lb_common::{
    consts::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    stats::Counter,
    FlowKey,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
/// IPv4 "more fragments" flag and fragment offset bits of `frags`.
const IPV4_FRAG_MASK: u16 = 0x3fff;
/// TCP flag bits (in the flags byte).
pub const TCP_FIN: u8 = 0x01;
/// TCP RST bit.
pub const TCP_RST: u8 = 0x04;
/// TCP SYN bit.
pub const TCP_SYN: u8 = 0x02;
/// TCP ACK bit.
pub const TCP_ACK: u8 = 0x10;

/// What the packet path needs to know about a balanced packet.
pub struct Packet {
    /// The 5-tuple, as the connection table and the flow hash key it.
    pub key: FlowKey,
    /// TCP flags byte (0 for UDP).
    pub tcp_flags: u8,
}

/// Pointer to a `T` at `offset` in the packet, if the whole `T` is inside.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Parses the headers of a frame down to its 5-tuple.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, Counter> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Counter::DropMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let mut l3_off = EthHdr::LEN;
    if ether_type == ETH_P_8021Q {
        let vlan: *const VlanHdr = ptr_at(ctx, l3_off).ok_or(Counter::DropMalformed)?;
        // SAFETY: bounds checked by ptr_at.
        ether_type = u16::from_be(unsafe { (*vlan).ether_type });
        l3_off += VlanHdr::LEN;
    }
    let frame_len = ctx.data_end() - ctx.data();
    match ether_type {
        ETH_P_IP => parse_ipv4(ctx, l3_off, frame_len),
        ETH_P_IPV6 => parse_ipv6(ctx, l3_off, frame_len),
        _ => Err(Counter::PassNotIp),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, l3_off: usize, frame_len: usize) -> Result<Packet, Counter> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, l3_off).ok_or(Counter::DropMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    // The verifier needs the header length bounded: a nibble times four.
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes(ip.tot_len));
    if ip.vihl >> 4 != 4
        || header_len < Ipv4Hdr::LEN
        || total_len < header_len
        || l3_off + total_len > frame_len
    {
        return Err(Counter::DropMalformed);
    }
    if u16::from_be_bytes(ip.frags) & IPV4_FRAG_MASK != 0 {
        return Err(Counter::PassFragment);
    }
    let mut key = FlowKey {
        src: [u32::from_ne_bytes(ip.src_addr), 0, 0, 0],
        dst: [u32::from_ne_bytes(ip.dst_addr), 0, 0, 0],
        family: AF_INET,
        proto: ip.proto,
        ..FlowKey::default()
    };
    let l4_off = l3_off + header_len;
    let tcp_flags = parse_l4(ctx, &mut key, l4_off, l3_off + total_len)?;
    Ok(Packet { key, tcp_flags })
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, l3_off: usize, frame_len: usize) -> Result<Packet, Counter> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, l3_off).ok_or(Counter::DropMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    let l4_off = l3_off + Ipv6Hdr::LEN;
    let l3_end = l4_off + usize::from(u16::from_be_bytes(ip.payload_len));
    if ip.vcf[0] >> 4 != 6 || l3_end > frame_len {
        return Err(Counter::DropMalformed);
    }
    let mut key = FlowKey {
        src: words(&ip.src_addr),
        dst: words(&ip.dst_addr),
        family: AF_INET6,
        proto: ip.next_hdr,
        ..FlowKey::default()
    };
    let tcp_flags = parse_l4(ctx, &mut key, l4_off, l3_end)?;
    Ok(Packet { key, tcp_flags })
}

/// Reads ports (and TCP flags) into `key`; `l3_end` is where the IP packet
/// ends according to its own length field.
#[inline(always)]
fn parse_l4(
    ctx: &XdpContext,
    key: &mut FlowKey,
    l4_off: usize,
    l3_end: usize,
) -> Result<u8, Counter> {
    match key.proto {
        IPPROTO_TCP => {
            let tcp: *const TcpHdr = ptr_at(ctx, l4_off).ok_or(Counter::DropMalformed)?;
            // SAFETY: bounds checked by ptr_at.
            let tcp = unsafe { &*tcp };
            // SAFETY: bytes 12 (data offset) and 13 (flags) are inside the
            // bounds-checked TcpHdr; read raw to keep the verifier's view simple.
            let (doff_byte, flags) = unsafe {
                let raw = tcp as *const TcpHdr as *const u8;
                (*raw.add(12), *raw.add(13))
            };
            let header_len = usize::from(doff_byte >> 4) * 4;
            if header_len < TcpHdr::LEN || l4_off + header_len > l3_end {
                return Err(Counter::DropMalformed);
            }
            key.sport = u16::from_ne_bytes(tcp.source);
            key.dport = u16::from_ne_bytes(tcp.dest);
            Ok(flags)
        }
        IPPROTO_UDP => {
            let udp: *const UdpHdr = ptr_at(ctx, l4_off).ok_or(Counter::DropMalformed)?;
            // SAFETY: bounds checked by ptr_at.
            let udp = unsafe { &*udp };
            let len = usize::from(u16::from_be_bytes(udp.len));
            if len < UdpHdr::LEN || l4_off + len > l3_end {
                return Err(Counter::DropMalformed);
            }
            key.sport = u16::from_ne_bytes(udp.src);
            key.dport = u16::from_ne_bytes(udp.dst);
            Ok(0)
        }
        _ => Err(Counter::PassUnsupportedL4),
    }
}

#[inline(always)]
fn words(addr: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([addr[0], addr[1], addr[2], addr[3]]),
        u32::from_ne_bytes([addr[4], addr[5], addr[6], addr[7]]),
        u32::from_ne_bytes([addr[8], addr[9], addr[10], addr[11]]),
        u32::from_ne_bytes([addr[12], addr[13], addr[14], addr[15]]),
    ]
}
