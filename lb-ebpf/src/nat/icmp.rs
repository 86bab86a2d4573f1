//! ICMP and ICMPv6 errors about NAT'd flows, translated as IPVS does: the
//! error goes to the host that sent the quoted packet, rewritten to that
//! host's view. An error to the NAT address quoting NAT address -> backend
//! (from a router on the backends' side) goes to the client, quoting
//! client -> VIP; one to the VIP quoting VIP -> client (from the clients'
//! side) goes to the backend, quoting backend -> NAT address. The entry
//! found by the error's key (`parse::icmp` keys it as the quoted packet's
//! other direction) says both: the outer header is translated like a
//! packet of that direction, the quote like one of the opposite.

use lb_common::{
    consts::{AF_INET, IPPROTO_UDP},
    FlowKey, NatEntry,
};
use lb_ebpf_frame::icmp_error::ICMP_HEADER_LEN;

use super::rewrite::{add16, add32, csum_apply, fold32, Layout, IPV4_LEN, IPV6_LEN};
use crate::{copy, hook::Hook, parse::ptr_at};

/// Offset of the checksum in the ICMP/ICMPv6 header.
const ICMP_CSUM_OFF: usize = 2;
/// Offset of the checksum in a UDP header (inside the 8 quoted bytes).
const UDP_CSUM_OFF: usize = 6;

/// Rewrites an ICMP error through `entry` (the flow direction its outer
/// header takes): MACs, outer addresses and TTL / hop limit, the quoted
/// addresses and ports, and every checksum: the outer IPv4 header's, the
/// quoted IPv4 header's, the quoted UDP checksum (TCP's lies beyond the 8
/// bytes an error must quote and is left, as IPVS does: no stack checks
/// it), and the ICMP checksum over all of that (ICMPv6: with its
/// pseudo-header). False only if a header is not where the parser found it
/// or a checksum helper failed.
#[inline(always)]
pub fn translate_error<C: Hook>(ctx: &C, key: &FlowKey, at: &Layout, entry: &NatEntry) -> bool {
    let quote_off = at.l4_off + ICMP_HEADER_LEN;
    let Some(eth) = ptr_at::<[u16; 6], C>(ctx, 0) else {
        return false;
    };
    let Some(ports) = ptr_at::<[u8; 8], C>(ctx, at.quote_l4_off) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at; the program owns the frame.
    let (eth, ports) = unsafe { (&mut *eth, &mut *ports) };
    // SAFETY: MAC fields of a map value (see `copy`).
    let (dst, src) = unsafe { (copy::mac_words(&entry.dmac), copy::mac_words(&entry.smac)) };
    copy::write_macs(eth, dst, src);
    // Changes of the outer addresses (ICMPv6's pseudo-header), of the
    // quoted addresses (the quote's pseudo-header too), and of everything
    // inside the ICMP message.
    let v4 = key.family == AF_INET;
    let (src_off, dst_off) = if v4 { (12, 16) } else { (8, 24) };
    let outer = put_addr(ctx, at.l3_off + src_off, &entry.src, v4)
        + put_addr(ctx, at.l3_off + dst_off, &entry.dst, v4);
    let quoted = put_addr(ctx, quote_off + src_off, &entry.dst, v4)
        + put_addr(ctx, quote_off + dst_off, &entry.src, v4);
    if outer >= FAILED || quoted >= FAILED {
        return false;
    }
    let mut inner = 0u64;
    let l3;
    if v4 {
        let Some(ip) = ptr_at::<[u8; IPV4_LEN], C>(ctx, at.l3_off) else {
            return false;
        };
        let Some(quote) = ptr_at::<[u8; IPV4_LEN], C>(ctx, quote_off) else {
            return false;
        };
        // SAFETY: bounds checked by ptr_at.
        let (ip, quote) = unsafe { (&mut *ip, &mut *quote) };
        let old = u16::from_ne_bytes([ip[8], ip[9]]);
        ip[8] = ip[8].wrapping_sub(1);
        l3 = add16(outer, old, u16::from_ne_bytes([ip[8], ip[9]]));
        let old = u16::from_ne_bytes([quote[10], quote[11]]);
        let new = csum_apply(old, fold32(quoted));
        quote[10..12].copy_from_slice(&new.to_ne_bytes());
        inner = add16(inner, old, new);
    } else {
        let Some(ip) = ptr_at::<[u8; IPV6_LEN], C>(ctx, at.l3_off) else {
            return false;
        };
        // SAFETY: bounds checked by ptr_at.
        let ip = unsafe { &mut *ip };
        let old = u16::from_ne_bytes([ip[6], ip[7]]);
        ip[7] = ip[7].wrapping_sub(1);
        // Outer addresses and hop limit: what `complete_csum_add` adds
        // (see below).
        l3 = add16(outer, old, u16::from_ne_bytes([ip[6], ip[7]]));
    }
    let old_sport = u16::from_ne_bytes([ports[0], ports[1]]);
    let old_dport = u16::from_ne_bytes([ports[2], ports[3]]);
    let quoted_ports = add16(add16(0, old_sport, entry.dport), old_dport, entry.sport);
    ports[..2].copy_from_slice(&entry.dport.to_ne_bytes());
    ports[2..4].copy_from_slice(&entry.sport.to_ne_bytes());
    inner += quoted + quoted_ports;
    if key.proto == IPPROTO_UDP {
        let old = u16::from_ne_bytes([ports[UDP_CSUM_OFF], ports[UDP_CSUM_OFF + 1]]);
        if old != 0 {
            let mut new = csum_apply(old, fold32(quoted + quoted_ports));
            if new == 0 {
                new = 0xffff;
            }
            ports[UDP_CSUM_OFF..].copy_from_slice(&new.to_ne_bytes());
            inner = add16(inner, old, new);
        }
    }
    // Checksums last: at tc the L4 helper invalidates packet pointers.
    if key.family == AF_INET && !ctx.l3_csum_add(at.l3_off + 10, fold32(l3)) {
        return false;
    }
    // ICMPv4 has no pseudo-header: its outer addresses are only in the
    // IPv4 header checksum.
    let pseudo = if v4 { 0 } else { fold32(outer) };
    if !ctx.l4_csum_add(at.l4_off + ICMP_CSUM_OFF, pseudo, fold32(inner), false) {
        return false;
    }
    // A CHECKSUM_COMPLETE skb's sum of the packet (tc, as in
    // `rewrite::translate`): an IPv4 header with its checksum patched sums
    // as before, an ICMP message too but for ICMPv6's pseudo-header (the
    // outer addresses), whose change its checksum takes off. So IPv4
    // changes by nothing (the helper is given no pseudo-header change),
    // IPv6 by the hop limit's change, and the helper took the outer
    // addresses' change off: both are added.
    if !v4 {
        ctx.complete_csum_add(fold32(l3));
    }
    true
}

/// What `put_addr` returns when the address is not inside the packet
/// (above any real change: at most 8 words of 0x1fffe).
const FAILED: u64 = 1 << 40;

/// Writes the address `new` (IPv4: its first word) at `off` and returns
/// the one's-complement change, or `FAILED`.
#[inline(always)]
fn put_addr<C: Hook>(ctx: &C, off: usize, new: &[u32; 4], v4: bool) -> u64 {
    if v4 {
        let Some(addr) = ptr_at::<[u8; 4], C>(ctx, off) else {
            return FAILED;
        };
        // SAFETY: bounds checked by ptr_at.
        let addr = unsafe { &mut *addr };
        let change = add32(0, u32::from_ne_bytes(*addr), new[0]);
        *addr = new[0].to_ne_bytes();
        change
    } else {
        match ptr_at::<[u8; 16], C>(ctx, off) {
            Some(addr) => put_addr6(addr, new),
            None => FAILED,
        }
    }
}

/// The IPv6 case of `put_addr` on a bounds-checked pointer. Not inlined:
/// four of them inlined kept too many values live at once and spilled
/// past the BPF stack limit; the context stays out of the call (the
/// compiler would pass its fields, which the verifier refuses).
#[inline(never)]
fn put_addr6(addr: *mut [u8; 16], new: &[u32; 4]) -> u64 {
    // SAFETY: the caller checked the bounds with ptr_at.
    let addr = unsafe { &mut *addr };
    let mut change = 0u64;
    for (i, word) in new.iter().enumerate() {
        let at = i * 4;
        let old = u32::from_ne_bytes([addr[at], addr[at + 1], addr[at + 2], addr[at + 3]]);
        change = add32(change, old, *word);
        addr[at..at + 4].copy_from_slice(&word.to_ne_bytes());
    }
    change
}
