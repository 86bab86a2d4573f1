//! The one place that reads headers (with its child `parse::icmp` for ICMP
//! errors, and the extension-header walk it shares with the decap program,
//! `lb_ebpf_frame::ipv6_ext`): Ethernet
//! with up to two VLAN tags, IPv4 (any valid IHL), IPv6, TCP, UDP and the
//! quoted packet of ICMP/ICMPv6 errors. Every read is bounds-checked against
//! `data_end` right before it, as the verifier requires, and every header
//! must also fit inside the length its IP header claims. What cannot be
//! balanced comes back as the counter that names why.
//!
//! Decisions (the crafted-packet corpus in `tests/corpus` asserts each):
//! - Headers cut short or inconsistent with a length field (IHL < 5 or past
//!   the total length, an IP length past the frame, TCP data offset < 5 or
//!   past the packet, UDP length < 8 or past the packet, an extension header
//!   or ICMP header past the packet, an ICMP error quoting less than an IP
//!   header and 8 bytes of transport) are dropped as `DropMalformed`,
//!   whoever they are addressed to: the kernel would drop them too. A frame
//!   longer than its IP packet (Ethernet padding) is fine.
//! - VLAN: one 802.1Q tag, or QinQ (0x88a8 or 0x8100, then 0x8100); a
//!   third tag is not parsed (`PassNotIp`).
//! - Fragments carry no ports to hash on. IPv4 fragments (first, middle or
//!   last) and IPv6 packets with a fragment header addressed to a VIP
//!   address (any port) or a NAT address are dropped (`DropFragment`), as
//!   Katran does: up the stack the node, which holds those addresses,
//!   would reassemble them and answer for the backends (a TCP RST into a
//!   DSR flow, ICMP port unreachable for a NAT'd reply), so clients need
//!   path MTU discovery. Fragments to any other address (the node's own
//!   traffic) go up the stack (`PassFragment`). One hash lookup
//!   (`SERVICE_ADDRS`) decides, on fragments only.
//! - IPv6 extension headers: up to `ipv6_ext::EXT_MAX` hop-by-hop (first only),
//!   routing (segments left 0 only: otherwise the VIP is not the final
//!   destination) and destination-options headers are skipped; the flow's
//!   protocol is the upper-layer one after them. A longer chain or a
//!   routing header with segments left goes up (`PassIpv6Ext`); hop-by-hop
//!   anywhere but first is malformed (RFC 8200). ESP, AH and anything else
//!   is `PassUnsupportedL4`. At tc such a chain is first made readable
//!   in full (`hook::linearize`), so it is judged as at XDP.
//! - Only what the packet path needs is read and judged: checksums and the
//!   contents of IPv4 options, TCP options and payloads are not (the frame
//!   reaches the backend unchanged and its stack checks them).
//! - TTL / hop limit are not looked at: the frame is forwarded at L2, the
//!   backend is the destination host and not one hop further, so TTL 0 or
//!   1 reaches it as it would reach a host holding the VIP itself.
//! - TCP flag combinations no stack sends (none of the six control bits,
//!   SYN+FIN, SYN+RST, FIN+RST, FIN+PSH+URG without ACK; ECE/CWR ignored)
//!   mark the packet, and the packet path drops it if it is for a VIP
//!   (`DropTcpFlags`); traffic for the host itself is the kernel's
//!   business. Every other combination is forwarded, including non-SYN
//!   packets of unknown flows (that is how flows survive a failover).
//! - ICMP errors: see `parse::icmp`.

mod icmp;

use crate::{hook::Hook, maps::SERVICE_ADDRS};
use lb_common::{
    consts::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    stats::Counter,
    FlowKey, ServiceAddr,
};
use lb_ebpf_frame::{
    ipv6_ext::{self, ExtStop},
    words, ETH_P_IP, ETH_P_IPV6,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

/// 802.1Q tag (also `hook::linearize`'s).
pub const ETH_P_8021Q: u16 = 0x8100;
/// 802.1ad service tag: the outer tag of QinQ.
pub const ETH_P_8021AD: u16 = 0x88a8;
/// IPv4 "more fragments" flag and fragment offset bits of `frags`.
const IPV4_FRAG_MASK: u16 = 0x3fff;
/// TCP flag bits (in the flags byte).
pub const TCP_FIN: u8 = 0x01;
/// TCP SYN bit.
pub const TCP_SYN: u8 = 0x02;
/// TCP RST bit.
pub const TCP_RST: u8 = 0x04;
/// TCP PSH bit.
const TCP_PSH: u8 = 0x08;
/// TCP ACK bit.
pub const TCP_ACK: u8 = 0x10;
/// TCP URG bit.
const TCP_URG: u8 = 0x20;
/// The six control bits (ECE and CWR are ECN's, any value is fine).
const TCP_CONTROL: u8 = 0x3f;

/// Bit `f` is set when the control bits `f` are a combination no TCP stack
/// sends. A table, so the check on the hot path is a shift and a mask.
const TCP_INVALID_FLAGS: u64 = invalid_tcp_flags_table();

const fn invalid_tcp_flags_table() -> u64 {
    const fn has(f: u8, bits: u8) -> bool {
        f & bits == bits
    }
    let mut table = 0u64;
    let mut f = 0u8;
    while f <= TCP_CONTROL {
        let invalid = f == 0
            || has(f, TCP_SYN | TCP_FIN)
            || has(f, TCP_SYN | TCP_RST)
            || has(f, TCP_FIN | TCP_RST)
            || (has(f, TCP_FIN | TCP_PSH | TCP_URG) && !has(f, TCP_ACK));
        if invalid {
            table |= 1 << f;
        }
        f += 1;
    }
    table
}

/// What kind of packet the parser found; the packet path treats each one
/// differently after the VIP lookup.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A TCP or UDP packet of a flow: balanced and tracked.
    Flow,
    /// A TCP packet with a flag combination no stack sends.
    BadTcpFlags,
    /// An ICMP error quoting a reply sent from a VIP; the key is the
    /// client-to-VIP flow it is about.
    IcmpError,
}

/// What the packet path needs to know about a balanced packet.
#[derive(Clone, Copy)]
pub struct Packet {
    /// The 5-tuple, as the connection table and the flow hash key it.
    pub key: FlowKey,
    /// TCP flags byte (0 for UDP and ICMP errors).
    pub tcp_flags: u8,
    /// How to treat it.
    pub class: Class,
    /// Offset of the IP header in the frame (after Ethernet and VLAN
    /// tags): where a translating mode rewrites addresses and TTL.
    pub l3_off: usize,
    /// Offset of the TCP/UDP header (for an ICMP error: of the ICMP
    /// header): where a translating mode rewrites ports and checksums.
    pub l4_off: usize,
    /// ICMP errors: offset of the quoted packet's transport header (its IP
    /// header starts 8 bytes after `l4_off`); 0 otherwise.
    pub quote_l4_off: usize,
}

impl Packet {
    /// Whether the packet opens a TCP flow (a SYN without ACK): it meets
    /// the guards before any table work and goes to the half-open table.
    #[inline(always)]
    pub fn opens_tcp_flow(&self) -> bool {
        self.key.proto == IPPROTO_TCP && self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }
}

/// The one bounds-checked access to the frame, shared with the other
/// eBPF program of the workspace.
pub use lb_ebpf_frame::ptr_at;

/// Parses the headers of a frame down to its 5-tuple.
#[inline(always)]
pub fn parse<C: Hook>(ctx: &C) -> Result<Packet, Counter> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Counter::DropMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let mut l3_off = EthHdr::LEN;
    // At most two tags, unrolled: an outer one (802.1Q or 802.1ad), then
    // an inner 802.1Q one.
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let vlan: *const VlanHdr = ptr_at(ctx, l3_off).ok_or(Counter::DropMalformed)?;
        // SAFETY: bounds checked by ptr_at.
        ether_type = u16::from_be(unsafe { (*vlan).ether_type });
        l3_off += VlanHdr::LEN;
        if ether_type == ETH_P_8021Q {
            let vlan: *const VlanHdr = ptr_at(ctx, l3_off).ok_or(Counter::DropMalformed)?;
            // SAFETY: bounds checked by ptr_at.
            ether_type = u16::from_be(unsafe { (*vlan).ether_type });
            l3_off += VlanHdr::LEN;
        }
    }
    let frame_len = ctx.frame_len();
    match ether_type {
        ETH_P_IP => parse_ipv4(ctx, l3_off, frame_len),
        ETH_P_IPV6 => parse_ipv6(ctx, l3_off, frame_len),
        _ => Err(Counter::PassNotIp),
    }
}

#[inline(always)]
fn parse_ipv4<C: Hook>(ctx: &C, l3_off: usize, frame_len: usize) -> Result<Packet, Counter> {
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
        return Err(fragment(
            [u32::from_ne_bytes(ip.dst_addr), 0, 0, 0],
            AF_INET,
        ));
    }
    let key = FlowKey {
        src: [u32::from_ne_bytes(ip.src_addr), 0, 0, 0],
        dst: [u32::from_ne_bytes(ip.dst_addr), 0, 0, 0],
        family: AF_INET,
        proto: ip.proto,
        ..FlowKey::default()
    };
    parse_l4(ctx, key, l3_off, l3_off + header_len, l3_off + total_len)
}

/// A fragment's verdict, as the module docs say: dropped if addressed to
/// a VIP or NAT address (`SERVICE_ADDRS`), passed up otherwise. Only
/// fragments pay for the lookup.
#[inline(always)]
fn fragment(addr: [u32; 4], family: u8) -> Counter {
    let key = ServiceAddr {
        addr,
        family,
        _pad: [0; 3],
    };
    // SAFETY: only whether the entry exists is read; no reference is kept.
    if unsafe { SERVICE_ADDRS.get(key) }.is_some() {
        Counter::DropFragment
    } else {
        Counter::PassFragment
    }
}

/// The balancer's word for where an extension-header walk stopped: a
/// chain it does not follow goes up the stack, a fragment to `dst` gets
/// `fragment`'s verdict, as the module docs say.
#[inline(always)]
fn ext_counter(stop: ExtStop, dst: &[u8; 16]) -> Counter {
    match stop {
        ExtStop::Malformed => Counter::DropMalformed,
        ExtStop::Fragment => fragment(words(dst), AF_INET6),
        ExtStop::ActiveRouting | ExtStop::TooMany => Counter::PassIpv6Ext,
    }
}

#[inline(always)]
fn parse_ipv6<C: Hook>(ctx: &C, l3_off: usize, frame_len: usize) -> Result<Packet, Counter> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, l3_off).ok_or(Counter::DropMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    let mut l4_off = l3_off + Ipv6Hdr::LEN;
    let l3_end = l4_off + usize::from(u16::from_be_bytes(ip.payload_len));
    if ip.vcf[0] >> 4 != 6 || l3_end > frame_len {
        return Err(Counter::DropMalformed);
    }
    let mut proto = ip.next_hdr;
    // Extension headers only cost something on the packets that have them.
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        (proto, l4_off) = ipv6_ext::skip_extension_headers(ctx, proto, l4_off, l3_end)
            .map_err(|stop| ext_counter(stop, &ip.dst_addr))?;
    }
    let key = FlowKey {
        src: words(&ip.src_addr),
        dst: words(&ip.dst_addr),
        family: AF_INET6,
        proto,
        ..FlowKey::default()
    };
    parse_l4(ctx, key, l3_off, l4_off, l3_end)
}

/// Reads ports (and TCP flags) into `key`, or hands ICMP to `icmp`;
/// `l3_end` is where the IP packet ends according to its own length field.
#[inline(always)]
fn parse_l4<C: Hook>(
    ctx: &C,
    mut key: FlowKey,
    l3_off: usize,
    l4_off: usize,
    l3_end: usize,
) -> Result<Packet, Counter> {
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
            let class = if (TCP_INVALID_FLAGS >> (flags & TCP_CONTROL)) & 1 != 0 {
                Class::BadTcpFlags
            } else {
                Class::Flow
            };
            Ok(Packet {
                key,
                tcp_flags: flags,
                class,
                l3_off,
                l4_off,
                quote_l4_off: 0,
            })
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
            Ok(Packet {
                key,
                tcp_flags: 0,
                class: Class::Flow,
                l3_off,
                l4_off,
                quote_l4_off: 0,
            })
        }
        _ => {
            let mut packet = icmp::parse_error(ctx, &key, l4_off, l3_end)?;
            packet.l3_off = l3_off;
            packet.l4_off = l4_off;
            Ok(packet)
        }
    }
}
