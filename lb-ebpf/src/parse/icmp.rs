//! ICMP and ICMPv6 errors about VIP flows. With direct server return the
//! backends answer from the VIP, so a router on the way back to the client
//! that cannot deliver a reply (fragmentation needed / packet too big,
//! unreachable, TTL exceeded) sends its error to the VIP, quoting the start
//! of the reply. Only the backend that owns the flow can act on it (path
//! MTU discovery above all), so the packet path sends the frame there
//! unchanged, as Katran does.
//!
//! Decisions:
//! - Errors taken: ICMP destination unreachable (3, any code, including 4
//!   fragmentation needed) and time exceeded (11); ICMPv6 destination
//!   unreachable (1), packet too big (2) and time exceeded (3). Every other
//!   ICMP message (echo, redirect, neighbour discovery, ...) goes up the
//!   stack as before (`PassUnsupportedL4`).
//! - Any ICMP/ICMPv6 message must hold its 8-byte header inside the packet,
//!   and an error must quote at least an IP header (IPv4: its IHL; IPv6: the
//!   fixed 40 bytes) and 8 bytes of transport header (RFC 792), or it is
//!   `DropMalformed`. The quoted lengths describe the original packet and
//!   are not checked against the quote.
//! - The quoted packet must come from the address the error is sent to
//!   (the VIP); otherwise it is no VIP's business (`PassNotVip`). It must be
//!   TCP or UDP, not a non-first IPv4 fragment, and an IPv6 quote must have
//!   TCP/UDP right after its fixed header (backends' replies carry no
//!   extension headers); otherwise `PassUnsupportedL4`.
//! - The flow key is the one of the original client-to-VIP direction
//!   (quoted source and destination swapped, ports too), so the VIP lookup,
//!   the connection table and Maglev treat it like the flow itself.
//! - NAT mode takes the same errors and keys: one sent to a NAT address
//!   quotes a packet from it, so its key is the flow's reply direction
//!   (backend -> NAT address); the quote's IP header sits right after the
//!   8-byte ICMP header and its transport header at `Packet::quote_l4_off`,
//!   where the translation rewrites them.

use crate::hook::Hook;
use lb_common::{
    consts::{AF_INET, AF_INET6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    stats::Counter,
    FlowKey,
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use super::{ptr_at, words, Class, Packet};

/// ICMP: destination unreachable (code 4: fragmentation needed).
const ICMP_DEST_UNREACH: u8 = 3;
/// ICMP: time exceeded.
const ICMP_TIME_EXCEEDED: u8 = 11;
/// ICMPv6: destination unreachable.
const ICMPV6_DEST_UNREACH: u8 = 1;
/// ICMPv6: packet too big.
const ICMPV6_PKT_TOOBIG: u8 = 2;
/// ICMPv6: time exceeded.
const ICMPV6_TIME_EXCEED: u8 = 3;
/// Length of the ICMP/ICMPv6 header (type, code, checksum, 4 more bytes).
const ICMP_HEADER_LEN: usize = 8;
/// Transport bytes an error quotes at least (RFC 792): the ports are in them.
const QUOTED_L4_LEN: usize = 8;
/// Fragment offset bits of the IPv4 `frags` field.
const IPV4_OFFSET_MASK: u16 = 0x1fff;

/// Parses what follows an IP header that is neither TCP nor UDP: an ICMP
/// error about a VIP flow becomes a `Class::IcmpError` packet keyed by that
/// flow; the rest is an error counter. `outer` is the packet's own key
/// (addresses, family, protocol).
#[inline(always)]
pub fn parse_error<C: Hook>(
    ctx: &C,
    outer: &FlowKey,
    l4_off: usize,
    l3_end: usize,
) -> Result<Packet, Counter> {
    let is_v4 = match (outer.family, outer.proto) {
        (AF_INET, IPPROTO_ICMP) => true,
        (AF_INET6, IPPROTO_ICMPV6) => false,
        _ => return Err(Counter::PassUnsupportedL4),
    };
    let header: *const [u8; ICMP_HEADER_LEN] = ptr_at(ctx, l4_off).ok_or(Counter::DropMalformed)?;
    if l4_off + ICMP_HEADER_LEN > l3_end {
        return Err(Counter::DropMalformed);
    }
    // SAFETY: bounds checked by ptr_at.
    let kind = unsafe { (*header)[0] };
    let quote = l4_off + ICMP_HEADER_LEN;
    if is_v4 {
        if kind != ICMP_DEST_UNREACH && kind != ICMP_TIME_EXCEEDED {
            return Err(Counter::PassUnsupportedL4);
        }
        quoted_v4(ctx, outer, quote, l3_end)
    } else {
        if kind != ICMPV6_DEST_UNREACH && kind != ICMPV6_PKT_TOOBIG && kind != ICMPV6_TIME_EXCEED {
            return Err(Counter::PassUnsupportedL4);
        }
        quoted_v6(ctx, outer, quote, l3_end)
    }
}

/// The client-to-VIP key of a quoted IPv4 packet sent from the VIP.
#[inline(always)]
fn quoted_v4<C: Hook>(
    ctx: &C,
    outer: &FlowKey,
    off: usize,
    l3_end: usize,
) -> Result<Packet, Counter> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, off).ok_or(Counter::DropMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    let l4_off = off + header_len;
    // The packet check first: after the length check the compiler would
    // drop it as implied, and the verifier would not follow.
    let l4: *const [u8; QUOTED_L4_LEN] = ptr_at(ctx, l4_off).ok_or(Counter::DropMalformed)?;
    if ip.vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN || l4_off + QUOTED_L4_LEN > l3_end {
        return Err(Counter::DropMalformed);
    }
    let src = u32::from_ne_bytes(ip.src_addr);
    if src != outer.dst[0] {
        return Err(Counter::PassNotVip);
    }
    let proto = ip.proto;
    if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
        || u16::from_be_bytes(ip.frags) & IPV4_OFFSET_MASK != 0
    {
        return Err(Counter::PassUnsupportedL4);
    }
    let key = FlowKey {
        src: [u32::from_ne_bytes(ip.dst_addr), 0, 0, 0],
        dst: [src, 0, 0, 0],
        family: AF_INET,
        proto,
        ..FlowKey::default()
    };
    Ok(with_ports(key, l4, l4_off))
}

/// The client-to-VIP key of a quoted IPv6 packet sent from the VIP.
#[inline(always)]
fn quoted_v6<C: Hook>(
    ctx: &C,
    outer: &FlowKey,
    off: usize,
    l3_end: usize,
) -> Result<Packet, Counter> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, off).ok_or(Counter::DropMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    let l4_off = off + Ipv6Hdr::LEN;
    // The packet check first (see `quoted_v4`).
    let l4: *const [u8; QUOTED_L4_LEN] = ptr_at(ctx, l4_off).ok_or(Counter::DropMalformed)?;
    if ip.vcf[0] >> 4 != 6 || l4_off + QUOTED_L4_LEN > l3_end {
        return Err(Counter::DropMalformed);
    }
    let src = words(&ip.src_addr);
    if src != outer.dst {
        return Err(Counter::PassNotVip);
    }
    let proto = ip.next_hdr;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Err(Counter::PassUnsupportedL4);
    }
    let key = FlowKey {
        src: words(&ip.dst_addr),
        dst: src,
        family: AF_INET6,
        proto,
        ..FlowKey::default()
    };
    Ok(with_ports(key, l4, l4_off))
}

/// Fills in the ports of the quoted transport header (`l4`, at
/// `l4_off`, bounds checked by the caller), swapped.
#[inline(always)]
fn with_ports(mut key: FlowKey, l4: *const [u8; QUOTED_L4_LEN], l4_off: usize) -> Packet {
    // SAFETY: the caller checked the bounds with ptr_at.
    let ports = unsafe { &*l4 };
    key.sport = u16::from_ne_bytes([ports[2], ports[3]]);
    key.dport = u16::from_ne_bytes([ports[0], ports[1]]);
    Packet {
        key,
        tcp_flags: 0,
        class: Class::IcmpError,
        l3_off: 0,
        l4_off: 0,
        quote_l4_off: l4_off,
    }
}
