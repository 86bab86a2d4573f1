//! The inner packet of a tunnel packet to this backend: it must be for a
//! configured VIP (address, port, protocol), or nothing is unwrapped. A
//! tunnel is not an open relay.
//!
//! Decisions (`tests/tests/decap_dataplane/` asserts each):
//! - The inner IP header must be whole and consistent (version matching
//!   the outer protocol or GUE's, IHL, lengths) and end inside the outer
//!   packet; TCP needs its 20-byte header, UDP its 8 bytes, inside the inner
//!   packet. Otherwise `DropMalformed`.
//! - Inner fragments are `DropUnsupported`: a later fragment has no port
//!   to check against the VIPs (and the balancer never forwards fragments).
//! - Inner IPv6 extension headers are walked as the balancer walks them
//!   (`lb_ebpf_frame::ipv6_ext`): a chain longer than it follows is
//!   `DropUnsupported`, a routing header with segments left `DropNotVip`
//!   (the VIP is not the packet's final destination).
//! - TCP and UDP: the key is (destination, destination port, protocol).
//! - ICMP/ICMPv6 errors (IPv4: destination unreachable, time exceeded;
//!   IPv6: destination unreachable, packet too big, time exceeded) are what
//!   the balancer forwards to the backend that owns a flow (path MTU
//!   discovery): taken when the quoted packet was sent from the inner
//!   destination (the VIP) over TCP/UDP and (VIP, quoted source port,
//!   protocol) is a configured VIP. The quote must hold its IP header and 8
//!   bytes of transport header (RFC 792), or it is `DropMalformed`.
//! - Everything else (another protocol, echo requests, an error quoting
//!   another address) is `DropNotVip`.

use lb_common::{
    consts::{AF_INET, AF_INET6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    decap::DecapCounter,
    VipKey,
};
use lb_ebpf_frame::{
    icmp_error::{error_quote, quoted_v4, quoted_v6, QuoteStop},
    ipv6_ext::{skip_extension_headers, ExtStop},
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    ecn::InnerHead,
    hook::Hook,
    maps::DECAP_VIPS,
    outer::Tunnel,
    parse::{ptr_at, words, IPV4_FRAG_MASK, IPV4_LEN, IPV6_LEN, UDP_LEN},
};

/// TCP header without options.
const TCP_LEN: usize = 20;

/// Checks the inner packet of `tunnel` against the configured VIPs; returns
/// the bytes of its header that hold its ECN field (for `ecn`).
#[inline(always)]
pub fn check<C: Hook>(ctx: &C, tunnel: &Tunnel) -> Result<InnerHead, DecapCounter> {
    let (key, head) = if tunnel.inner_v6 {
        inner_v6(ctx, tunnel)?
    } else {
        inner_v4(ctx, tunnel)?
    };
    // SAFETY: a lookup in a map only the control plane writes.
    if unsafe { DECAP_VIPS.get(key) }.is_none() {
        return Err(DecapCounter::DropNotVip);
    }
    Ok(head)
}

#[inline(always)]
fn inner_v4<C: Hook>(ctx: &C, tunnel: &Tunnel) -> Result<(VipKey, InnerHead), DecapCounter> {
    let off = tunnel.inner_off;
    let ip: *const Ipv4Hdr = ptr_at(ctx, off).ok_or(DecapCounter::DropMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes(ip.tot_len));
    if ip.vihl >> 4 != 4
        || header_len < IPV4_LEN
        || total_len < header_len
        || off + total_len > tunnel.end
    {
        return Err(DecapCounter::DropMalformed);
    }
    if u16::from_be_bytes(ip.frags) & IPV4_FRAG_MASK != 0 {
        return Err(DecapCounter::DropUnsupported);
    }
    let dst = [u32::from_ne_bytes(ip.dst_addr), 0, 0, 0];
    let l4 = off + header_len;
    let end = off + total_len;
    let head = InnerHead {
        word: [ip.vihl, ip.tos],
        check: ip.check,
    };
    let key = match ip.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let port = dst_port(ctx, ip.proto, l4, end)?;
            vip_key(dst, port, ip.proto, AF_INET)
        }
        IPPROTO_ICMP => {
            let quote = error_quote(ctx, l4, end, false).map_err(quote_counter)?;
            let quoted = quoted_v4(ctx, quote, end, dst[0]).map_err(quote_counter)?;
            vip_key(dst, quoted.sport, quoted.proto, AF_INET)
        }
        _ => return Err(DecapCounter::DropNotVip),
    };
    Ok((key, head))
}

#[inline(always)]
fn inner_v6<C: Hook>(ctx: &C, tunnel: &Tunnel) -> Result<(VipKey, InnerHead), DecapCounter> {
    let off = tunnel.inner_off;
    let ip: *const Ipv6Hdr = ptr_at(ctx, off).ok_or(DecapCounter::DropMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    let l4 = off + IPV6_LEN;
    let end = l4 + usize::from(u16::from_be_bytes(ip.payload_len));
    if ip.vcf[0] >> 4 != 6 || end > tunnel.end {
        return Err(DecapCounter::DropMalformed);
    }
    let dst = words(&ip.dst_addr);
    let head = InnerHead {
        word: [ip.vcf[0], ip.vcf[1]],
        check: [0; 2],
    };
    let (next, l4) = if ip.next_hdr == IPPROTO_TCP || ip.next_hdr == IPPROTO_UDP {
        (ip.next_hdr, l4)
    } else {
        skip_extension_headers(ctx, ip.next_hdr, l4, end).map_err(ext_counter)?
    };
    let key = match next {
        IPPROTO_TCP | IPPROTO_UDP => {
            let port = dst_port(ctx, next, l4, end)?;
            vip_key(dst, port, next, AF_INET6)
        }
        IPPROTO_ICMPV6 => {
            let quote = error_quote(ctx, l4, end, true).map_err(quote_counter)?;
            let quoted = quoted_v6(ctx, quote, end, &dst).map_err(quote_counter)?;
            vip_key(dst, quoted.sport, quoted.proto, AF_INET6)
        }
        _ => return Err(DecapCounter::DropNotVip),
    };
    Ok((key, head))
}

/// The decap program's word for where an inner extension-header walk
/// stopped: nothing it cannot check against the VIPs is unwrapped.
#[inline(always)]
fn ext_counter(stop: ExtStop) -> DecapCounter {
    match stop {
        ExtStop::Malformed => DecapCounter::DropMalformed,
        ExtStop::Fragment | ExtStop::TooMany => DecapCounter::DropUnsupported,
        ExtStop::ActiveRouting => DecapCounter::DropNotVip,
    }
}

/// The destination port (network order) of the TCP or UDP header at
/// `l4`, whose fixed part must lie inside the packet (`end`).
#[inline(always)]
fn dst_port<C: Hook>(ctx: &C, proto: u8, l4: usize, end: usize) -> Result<u16, DecapCounter> {
    let ports: *const [u8; 4] = ptr_at(ctx, l4).ok_or(DecapCounter::DropMalformed)?;
    let need = if proto == IPPROTO_TCP {
        TCP_LEN
    } else {
        UDP_LEN
    };
    if l4 + need > end {
        return Err(DecapCounter::DropMalformed);
    }
    // SAFETY: bounds checked by ptr_at.
    let ports = unsafe { &*ports };
    Ok(u16::from_ne_bytes([ports[2], ports[3]]))
}

/// The decap program's word for an inner ICMP message that is no error
/// about a configured VIP's flow: it is not unwrapped.
#[inline(always)]
fn quote_counter(stop: QuoteStop) -> DecapCounter {
    match stop {
        QuoteStop::Malformed => DecapCounter::DropMalformed,
        QuoteStop::NotAnError | QuoteStop::OtherSource | QuoteStop::NotTcpUdp => {
            DecapCounter::DropNotVip
        }
    }
}

#[inline(always)]
fn vip_key(addr: [u32; 4], port: u16, proto: u8, family: u8) -> VipKey {
    VipKey {
        addr,
        port,
        proto,
        family,
    }
}
