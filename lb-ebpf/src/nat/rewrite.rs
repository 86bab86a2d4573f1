//! Rewriting a NAT'd packet in place: MACs from the next hop, both
//! addresses and both ports from the flow's entry, TTL / hop limit minus
//! one, and every checksum patched incrementally (RFC 1624) through the
//! hook, which knows how (the IPv4 header's by plain arithmetic at both
//! hooks; TCP/UDP's by plain arithmetic at XDP, the kernel's helpers at
//! tc). Everything else stays as it is here; VLAN tags come off
//! afterwards when the packet leaves by another interface (`nat::leave`).

use lb_common::{
    consts::{AF_INET, IPPROTO_UDP},
    FlowKey, NatEntry,
};

use crate::{copy, hook::Hook, parse::ptr_at};

/// Where the headers to rewrite are (see `scratch::layout`).
pub struct Layout {
    /// Offset of the IP header.
    pub l3_off: usize,
    /// Offset of the TCP/UDP header (ICMP errors: of the ICMP header).
    pub l4_off: usize,
    /// ICMP errors: offset of the quoted transport header.
    pub quote_l4_off: usize,
}

/// Length of the IPv4 header fields read and written (options
/// untouched), and of the fixed IPv6 header.
pub use lb_ebpf_frame::{IPV4_LEN, IPV6_LEN};
/// Offset of the checksum in a TCP header.
const TCP_CSUM_OFF: usize = 16;
/// Offset of the checksum in a UDP header.
const UDP_CSUM_OFF: usize = 6;

/// What the FIB lookup, the TTL check and the MTU check need from the IP
/// header.
pub struct L3Info {
    /// TTL / hop limit as the packet arrived.
    pub ttl: u8,
    /// IPv4 total length, or IPv6 payload length + 40 (host order): the
    /// packet's size against the route's MTU.
    pub tot_len: u16,
    /// IPv4: the DF bit is set (a too-big packet may be answered with
    /// fragmentation-needed). IPv6: always (routers never fragment).
    pub df: bool,
    /// IPv4 TOS byte.
    pub tos: u8,
    /// IPv6 flow label and traffic class word (network order, version
    /// bits masked), as the FIB takes it.
    pub flowinfo: u32,
}

/// Reads the IP header fields routing needs (None if it is not there:
/// the parser already checked, so only a bug gets None).
#[inline(always)]
pub fn l3_info<C: Hook>(ctx: &C, family: u8, at: &Layout) -> Option<L3Info> {
    if family == AF_INET {
        let ip = ptr_at::<[u8; IPV4_LEN], C>(ctx, at.l3_off)?;
        // SAFETY: bounds checked by ptr_at.
        let ip = unsafe { &*ip };
        Some(L3Info {
            ttl: ip[8],
            tot_len: u16::from_be_bytes([ip[2], ip[3]]),
            df: ip[6] & 0x40 != 0,
            tos: ip[1],
            flowinfo: 0,
        })
    } else {
        let ip = ptr_at::<[u8; IPV6_LEN], C>(ctx, at.l3_off)?;
        // SAFETY: bounds checked by ptr_at.
        let ip = unsafe { &*ip };
        Some(L3Info {
            ttl: ip[7],
            tot_len: u16::from_be_bytes([ip[4], ip[5]]).wrapping_add(IPV6_LEN as u16),
            df: true,
            tos: 0,
            flowinfo: u32::from_ne_bytes([ip[0], ip[1], ip[2], ip[3]]) & 0x0fff_ffffu32.to_be(),
        })
    }
}

/// `s` plus the change of one 32-bit word from `old` to `new`.
#[inline(always)]
pub fn add32(s: u64, old: u32, new: u32) -> u64 {
    s + u64::from(!old) + u64::from(new)
}

/// `s` plus the change of one 16-bit word from `old` to `new`.
#[inline(always)]
pub fn add16(s: u64, old: u16, new: u16) -> u64 {
    s + u64::from(!old) + u64::from(new)
}

/// A 64-bit one's-complement sum folded to the 32 bits the kernel's
/// checksum helpers take.
#[inline(always)]
pub fn fold32(s: u64) -> u32 {
    let s = (s & 0xffff_ffff) + (s >> 32);
    ((s & 0xffff_ffff) + (s >> 32)) as u32
}

/// The checksum `old` after adding `diff` (RFC 1624 eq. 3:
/// `~(~old + diff)`), in the field's own (memory) byte order.
#[inline(always)]
pub fn csum_apply(old: u16, diff: u32) -> u16 {
    let s = u64::from(!old) + u64::from(diff);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Rewrites the packet to what `entry` says it becomes and sends it to
/// the entry's next hop MACs; the caller checked the TTL. False only if
/// a header is not where the parser found it (a bug) or a checksum
/// helper failed.
///
/// A CHECKSUM_COMPLETE skb (tc) also carries the sum of its packet from
/// the IP header on (`skb->csum`), which must follow the rewrite. The
/// rewrite changes it by: IPv4, the addresses' change taken off (the
/// IPv4 header keeps summing to zero, the TCP/UDP checksum takes the
/// addresses' change off, the ports' change and its own cancel); IPv6,
/// the hop limit's change only (no header checksum: the addresses' change
/// and the TCP/UDP checksum's cancel). `l4_csum_add`'s pseudo-header call
/// takes the addresses' change off, right for IPv4 only, so IPv6 adds
/// it back with the hop limit's (`Hook::complete_csum_add`). A UDP
/// datagram without a checksum (0, kept) gets no helper call at all and
/// changes by its ports' change too, which is added as well.
#[inline(always)]
pub fn translate<C: Hook>(ctx: &C, key: &FlowKey, at: &Layout, entry: &NatEntry) -> bool {
    let Some(eth) = ptr_at::<[u16; 6], C>(ctx, 0) else {
        return false;
    };
    // The ports, and UDP's checksum (within a TCP header too).
    let Some(ports) = ptr_at::<[u8; 8], C>(ctx, at.l4_off) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at; the program owns the frame (tc:
    // the verifier makes a cloned skb private first).
    let (eth, ports) = unsafe { (&mut *eth, &mut *ports) };
    let udp = key.proto == IPPROTO_UDP;
    let unsummed = udp && ports[UDP_CSUM_OFF..] == [0, 0];
    // SAFETY: MAC fields of a map value (see `copy`).
    let (dst, src) = unsafe { (copy::mac_words(&entry.dmac), copy::mac_words(&entry.smac)) };
    copy::write_macs(eth, dst, src);
    let mut addrs = 0u64;
    let mut l3 = 0u64;
    // What `complete_csum_add` adds (see above).
    let mut complete = 0u64;
    if key.family == AF_INET {
        let Some(ip) = ptr_at::<[u8; IPV4_LEN], C>(ctx, at.l3_off) else {
            return false;
        };
        // SAFETY: bounds checked by ptr_at.
        let ip = unsafe { &mut *ip };
        addrs = add32(addrs, key.src[0], entry.src[0]);
        addrs = add32(addrs, key.dst[0], entry.dst[0]);
        let old = u16::from_ne_bytes([ip[8], ip[9]]);
        ip[8] = ip[8].wrapping_sub(1);
        l3 = add16(addrs, old, u16::from_ne_bytes([ip[8], ip[9]]));
        ip[12..16].copy_from_slice(&entry.src[0].to_ne_bytes());
        ip[16..20].copy_from_slice(&entry.dst[0].to_ne_bytes());
    } else {
        let Some(ip) = ptr_at::<[u8; IPV6_LEN], C>(ctx, at.l3_off) else {
            return false;
        };
        // SAFETY: bounds checked by ptr_at.
        let ip = unsafe { &mut *ip };
        let old = u16::from_ne_bytes([ip[6], ip[7]]);
        ip[7] = ip[7].wrapping_sub(1);
        complete = add16(0, old, u16::from_ne_bytes([ip[6], ip[7]]));
        for i in 0..4 {
            addrs = add32(addrs, key.src[i], entry.src[i]);
            addrs = add32(addrs, key.dst[i], entry.dst[i]);
            ip[8 + i * 4..12 + i * 4].copy_from_slice(&entry.src[i].to_ne_bytes());
            ip[24 + i * 4..28 + i * 4].copy_from_slice(&entry.dst[i].to_ne_bytes());
        }
        complete += addrs;
    }
    let plain = add16(add16(0, key.sport, entry.sport), key.dport, entry.dport);
    ports[..2].copy_from_slice(&entry.sport.to_ne_bytes());
    ports[2..4].copy_from_slice(&entry.dport.to_ne_bytes());
    if unsummed {
        complete += plain;
    }
    // Checksums last: at tc the L4 helper invalidates packet pointers.
    let l4_csum = at.l4_off + if udp { UDP_CSUM_OFF } else { TCP_CSUM_OFF };
    if key.family == AF_INET && !ctx.l3_csum_add(at.l3_off + 10, fold32(l3)) {
        return false;
    }
    if !ctx.l4_csum_add(l4_csum, fold32(addrs), fold32(plain), udp) {
        return false;
    }
    ctx.complete_csum_add(fold32(complete));
    true
}
