//! ICMP and ICMPv6 errors about a packet a VIP (or a NAT address) sent:
//! a router that could not deliver it (fragmentation needed / packet too
//! big, unreachable, time exceeded) quotes its start. The balancer sends
//! such an error to the backend that owns the flow, and the backend's
//! decap unwraps it only when the quote is from a configured VIP; both read
//! the error the same way here, and each counts where it stopped
//! ([`QuoteStop`]) in its own words.
//!
//! - Errors: ICMP destination unreachable (3, any code) and time exceeded
//!   (11); ICMPv6 destination unreachable (1), packet too big (2) and time
//!   exceeded (3). Every other message is [`QuoteStop::NotAnError`].
//! - The message must hold its 8-byte header inside the packet, and the
//!   quote an IP header (IPv4: its IHL; IPv6: the fixed 40 bytes) and 8
//!   bytes of transport header (RFC 792), or it is
//!   [`QuoteStop::Malformed`]. The quoted lengths describe the original
//!   packet and are not checked against the quote.
//! - The quote must come from the address given (the one the error is
//!   sent to), or it is [`QuoteStop::OtherSource`]; it must be TCP or UDP,
//!   not a non-first IPv4 fragment, and an IPv6 quote must have TCP/UDP
//!   right after its fixed header (replies carry no extension headers), or
//!   it is [`QuoteStop::NotTcpUdp`].

use lb_common::consts::{IPPROTO_TCP, IPPROTO_UDP};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{ptr_at, words, Frame};

/// ICMP: destination unreachable (code 4: fragmentation needed).
pub const ICMP_DEST_UNREACH: u8 = 3;
/// ICMP: time exceeded.
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// ICMPv6: destination unreachable.
pub const ICMPV6_DEST_UNREACH: u8 = 1;
/// ICMPv6: packet too big.
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
/// ICMPv6: time exceeded.
pub const ICMPV6_TIME_EXCEED: u8 = 3;
/// Length of the ICMP/ICMPv6 header (type, code, checksum, 4 more bytes).
pub const ICMP_HEADER_LEN: usize = 8;
/// Transport bytes an error quotes at least (RFC 792): the ports are in them.
pub const QUOTED_L4_LEN: usize = 8;
/// Fragment offset bits of the IPv4 `frags` field.
const IPV4_OFFSET_MASK: u16 = 0x1fff;

/// Why an ICMP message is no error about a flow of the given address.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum QuoteStop {
    /// The message or its quote is cut short or inconsistent.
    Malformed,
    /// Not one of the error messages taken (echo, redirect, neighbour
    /// discovery, ...).
    NotAnError,
    /// The quoted packet was sent from another address.
    OtherSource,
    /// The quoted packet is not TCP or UDP, or a non-first IPv4 fragment.
    NotTcpUdp,
}

/// What an error quotes of the packet it is about. Ports are as in the
/// packet (network order, read as native-endian `u16`s).
pub struct Quoted {
    /// The quoted packet's destination (IPv4: the first word).
    pub dst: [u32; 4],
    /// Its protocol, TCP or UDP.
    pub proto: u8,
    /// Its source port.
    pub sport: u16,
    /// Its destination port.
    pub dport: u16,
    /// Where its transport header starts in the frame.
    pub l4_off: usize,
}

/// Where the quote of the ICMP (`v6`: ICMPv6) message at `l4_off` starts,
/// if the message is an error. The message must lie inside the packet
/// (`l3_end`).
#[inline(always)]
pub fn error_quote<C: Frame>(
    ctx: &C,
    l4_off: usize,
    l3_end: usize,
    v6: bool,
) -> Result<usize, QuoteStop> {
    let header: *const [u8; ICMP_HEADER_LEN] = ptr_at(ctx, l4_off).ok_or(QuoteStop::Malformed)?;
    if l4_off + ICMP_HEADER_LEN > l3_end {
        return Err(QuoteStop::Malformed);
    }
    // SAFETY: bounds checked by ptr_at.
    let kind = unsafe { (*header)[0] };
    let error = if v6 {
        matches!(
            kind,
            ICMPV6_DEST_UNREACH | ICMPV6_PKT_TOOBIG | ICMPV6_TIME_EXCEED
        )
    } else {
        matches!(kind, ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED)
    };
    if !error {
        return Err(QuoteStop::NotAnError);
    }
    Ok(l4_off + ICMP_HEADER_LEN)
}

/// The IPv4 packet quoted at `off`, which must have been sent from
/// `from` (network order) and lie inside the packet (`l3_end`).
#[inline(always)]
pub fn quoted_v4<C: Frame>(
    ctx: &C,
    off: usize,
    l3_end: usize,
    from: u32,
) -> Result<Quoted, QuoteStop> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, off).ok_or(QuoteStop::Malformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    let l4_off = off + header_len;
    // The packet check first: after the length check the compiler would
    // drop it as implied, and the verifier would not follow.
    let l4: *const [u8; QUOTED_L4_LEN] = ptr_at(ctx, l4_off).ok_or(QuoteStop::Malformed)?;
    if ip.vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN || l4_off + QUOTED_L4_LEN > l3_end {
        return Err(QuoteStop::Malformed);
    }
    if u32::from_ne_bytes(ip.src_addr) != from {
        return Err(QuoteStop::OtherSource);
    }
    let proto = ip.proto;
    if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
        || u16::from_be_bytes(ip.frags) & IPV4_OFFSET_MASK != 0
    {
        return Err(QuoteStop::NotTcpUdp);
    }
    Ok(quoted(
        [u32::from_ne_bytes(ip.dst_addr), 0, 0, 0],
        proto,
        l4,
        l4_off,
    ))
}

/// The IPv6 packet quoted at `off`, which must have been sent from
/// `from` and lie inside the packet (`l3_end`).
#[inline(always)]
pub fn quoted_v6<C: Frame>(
    ctx: &C,
    off: usize,
    l3_end: usize,
    from: &[u32; 4],
) -> Result<Quoted, QuoteStop> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, off).ok_or(QuoteStop::Malformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    let l4_off = off + Ipv6Hdr::LEN;
    // The packet check first (see `quoted_v4`).
    let l4: *const [u8; QUOTED_L4_LEN] = ptr_at(ctx, l4_off).ok_or(QuoteStop::Malformed)?;
    if ip.vcf[0] >> 4 != 6 || l4_off + QUOTED_L4_LEN > l3_end {
        return Err(QuoteStop::Malformed);
    }
    if words(&ip.src_addr) != *from {
        return Err(QuoteStop::OtherSource);
    }
    let proto = ip.next_hdr;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Err(QuoteStop::NotTcpUdp);
    }
    Ok(quoted(words(&ip.dst_addr), proto, l4, l4_off))
}

/// The quote's fields, its ports read from `l4` (bounds checked by the
/// caller with `ptr_at`).
#[inline(always)]
fn quoted(dst: [u32; 4], proto: u8, l4: *const [u8; QUOTED_L4_LEN], l4_off: usize) -> Quoted {
    // SAFETY: the caller checked the bounds with ptr_at.
    let ports = unsafe { &*l4 };
    Quoted {
        dst,
        proto,
        sport: u16::from_ne_bytes([ports[0], ports[1]]),
        dport: u16::from_ne_bytes([ports[2], ports[3]]),
        l4_off,
    }
}
