//! The outer headers: Ethernet, the outer IPv4 or IPv6 header and, for
//! GUE, the UDP and GUE headers. Finds out whether a frame is a tunnel
//! packet this backend may unwrap and where its inner packet starts.
//!
//! Decisions (`tests/tests/decap_dataplane/` asserts each):
//! - Untagged Ethernet only: VLANs are handled by attaching to the VLAN
//!   interface. Anything but IPv4/IPv6 is `PassNotTunnel`.
//! - An outer IP header cut short or inconsistent with its own lengths
//!   (version, IHL, total/payload length past the frame) is `DropMalformed`
//!   whoever it is for: the kernel would drop it too.
//! - A tunnel packet to us whose outer IPv4 header (options included)
//!   does not sum to 0xffff, its checksum wrong, is `DropMalformed`: the
//!   kernel's `ip_rcv_core` drops such a header, and the unwrap would hide
//!   it. Checked after the destination and the source (other packets are
//!   the stack's to check), on the tunnel packets only.
//! - An IPv4 total length or IPv6 payload length of 0 is `PassNotTunnel`,
//!   checked first: that is how BIG TCP's GRO marks aggregates longer than
//!   64 KiB (at tc and generic XDP), never a packet the balancer sends,
//!   and non-tunnel traffic is never dropped on a guess.
//! - Tunnel packets: IPv4 protocol 4 (IPIP), IPv6 next header 4 (4in6) or
//!   41 (IP6IP6) when IPIP is on; UDP to the GUE port (IPv4 or IPv6) when
//!   GUE is on. 6in4 (IPv4 protocol 41, SIT) is not one: the balancer never
//!   sends it. IPv6 extension headers other than a fragment header are not
//!   walked (the balancer sends none): `PassNotTunnel`.
//! - A tunnel packet whose outer destination is not in `DECAP_ADDRS` is
//!   `PassNotOurs`, untouched: checked before anything else about it.
//! - With `DECAP_F_SOURCES`, a tunnel packet to us whose outer source is in
//!   no prefix of `DECAP_SOURCES_V4`/`_V6` (by the outer family) is
//!   `DropNotSource`: only the balancers may hand packets to the VIPs
//!   (anyone else would bypass their ACLs and limits, and could spoof the
//!   inner source). Checked right after the destination, before fragments.
//! - Outer fragments of tunnel packets to us (IPv4 MF/offset, an IPv6
//!   fragment header before 4/41, or before UDP to the GUE port in the
//!   first fragment) are `DropUnsupported`: the balancer never fragments
//!   (it sends ICMP too-big instead). Later UDP fragments carry no port and
//!   go up the stack as `PassNotTunnel`.
//! - UDP checksums are not verified, zero or not (zero is fine over IPv6,
//!   RFC 6936): the inner packet's own checksums, which the stack verifies
//!   after the unwrap, protect everything that reaches a socket, as with
//!   the kernel's fou on a zero-checksum tunnel.
//! - GUE: variant 1 (the first two bits 01: the inner IP header follows the
//!   UDP header; its version nibble must be 4 or 6) and variant 0 with a
//!   4-byte header as the kernel's fou sends it (version 0, C=0, hlen=0,
//!   proto_ctype 4 or 41, flags 0). Anything else (version 2/3, control
//!   messages, options, flags, other protocols) is `DropUnsupported`.
//! - The outer ECN field (IPv4 TOS, IPv6 traffic class) is kept in the
//!   `Tunnel` for `ecn` (RFC 6040): a CE mark reaches the inner packet.

use aya_ebpf::maps::lpm_trie::Key;
use lb_common::{
    consts::{AF_INET, AF_INET6, IPPROTO_UDP},
    decap::{DecapAddr, DecapConfig, DecapCounter, DECAP_F_GUE, DECAP_F_IPIP, DECAP_F_SOURCES},
    tunnel::{IPPROTO_IPIP, IPPROTO_IPV6},
};
use lb_ebpf_frame::ipv6_ext::NEXTHDR_FRAGMENT;
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    ecn,
    hook::Hook,
    maps::{DECAP_ADDRS, DECAP_SOURCES_V4, DECAP_SOURCES_V6},
    parse::{
        ptr_at, words, ETH_LEN, ETH_P_IP, ETH_P_IPV6, IPV4_FRAG_MASK, IPV4_LEN, IPV4_OFFSET_MASK,
        IPV6_LEN, UDP_LEN,
    },
};

/// Length of the GUE variant 0 header the kernel's fou sends.
const GUE_V0_LEN: usize = 4;

/// The outer source of a tunnel packet, as the source tries key it.
#[derive(Clone, Copy)]
enum Source {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// Which encapsulation a packet used (which counter its unwrap bumps).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// IPIP, IP6IP6 or 4in6.
    Ipip,
    /// GUE (variant 0 or 1).
    Gue,
}

/// A tunnel packet to this backend: where its inner packet is.
pub struct Tunnel {
    /// The encapsulation.
    pub kind: Kind,
    /// Offset of the inner IP header in the frame.
    pub inner_off: usize,
    /// Whether the inner packet is IPv6.
    pub inner_v6: bool,
    /// Where the outer IP packet ends (its length field): the inner packet
    /// must fit before it.
    pub end: usize,
    /// The outer header's ECN field (`ecn`): a mark a router set on the
    /// way must reach the inner packet.
    pub outer_ecn: u8,
}

/// Parses the outer headers of a frame.
#[inline(always)]
pub fn parse<C: Hook>(ctx: &C, config: &DecapConfig) -> Result<Tunnel, DecapCounter> {
    let eth: *const [u8; ETH_LEN] = ptr_at(ctx, 0).ok_or(DecapCounter::DropMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ether_type = unsafe { u16::from_be_bytes([(*eth)[12], (*eth)[13]]) };
    match ether_type {
        ETH_P_IP => outer_v4(ctx, config),
        ETH_P_IPV6 => outer_v6(ctx, config),
        _ => Err(DecapCounter::PassNotTunnel),
    }
}

#[inline(always)]
fn outer_v4<C: Hook>(ctx: &C, config: &DecapConfig) -> Result<Tunnel, DecapCounter> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, ETH_LEN).ok_or(DecapCounter::DropMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    // Bounded for the verifier: a nibble times four.
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes(ip.tot_len));
    if total_len == 0 {
        return Err(DecapCounter::PassNotTunnel);
    }
    if ip.vihl >> 4 != 4
        || header_len < IPV4_LEN
        || total_len < header_len
        || ETH_LEN + total_len > ctx.frame_len()
    {
        return Err(DecapCounter::DropMalformed);
    }
    let end = ETH_LEN + total_len;
    let l4 = ETH_LEN + header_len;
    let frags = u16::from_be_bytes(ip.frags);
    let fragment = frags & IPV4_FRAG_MASK != 0;
    let dst = DecapAddr {
        addr: [u32::from_ne_bytes(ip.dst_addr), 0, 0, 0],
        family: AF_INET,
        _pad: [0; 3],
    };
    let src = Source::V4(ip.src_addr);
    let outer_ecn = ecn::of([ip.vihl, ip.tos], false);
    match ip.proto {
        IPPROTO_IPIP if config.flags & DECAP_F_IPIP != 0 => {
            claim(config, &dst, src, fragment)?;
            check_ipv4_sum(ctx, header_len)?;
            Ok(Tunnel {
                kind: Kind::Ipip,
                inner_off: l4,
                inner_v6: false,
                end,
                outer_ecn,
            })
        }
        // Only a first fragment holds the UDP header.
        IPPROTO_UDP if gue_on(config) && frags & IPV4_OFFSET_MASK == 0 => {
            if !to_gue_port(ctx, config, l4, end)? {
                return Err(DecapCounter::PassNotTunnel);
            }
            claim(config, &dst, src, fragment)?;
            check_ipv4_sum(ctx, header_len)?;
            gue(ctx, l4, end, outer_ecn)
        }
        _ => Err(DecapCounter::PassNotTunnel),
    }
}

/// Most option words an IPv4 header holds (IHL 15: 60 bytes, 20 fixed).
const IPV4_OPTION_WORDS: usize = 10;

/// `DropMalformed` unless the outer IPv4 header (`header_len` bytes after
/// Ethernet, 20 to 60, a multiple of 4: checked by the caller) sums to
/// 0xffff in one's complement, its checksum field included: the check
/// `ip_rcv_core` makes (`ip_fast_csum`). The fixed 20 bytes, then each
/// option word in a loop bounded by the longest header, so the verifier
/// sees at most ten constant-offset reads.
#[inline(always)]
fn check_ipv4_sum<C: Hook>(ctx: &C, header_len: usize) -> Result<(), DecapCounter> {
    let fixed: *const [u8; IPV4_LEN] = ptr_at(ctx, ETH_LEN).ok_or(DecapCounter::DropMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let fixed = unsafe { &*fixed };
    let mut sum: u64 = 0;
    let mut at = 0;
    while at < IPV4_LEN {
        sum += u64::from(u32::from_ne_bytes([
            fixed[at],
            fixed[at + 1],
            fixed[at + 2],
            fixed[at + 3],
        ]));
        at += 4;
    }
    for word in 0..IPV4_OPTION_WORDS {
        let off = IPV4_LEN + word * 4;
        if off >= header_len {
            break;
        }
        let option: *const [u8; 4] =
            ptr_at(ctx, ETH_LEN + off).ok_or(DecapCounter::DropMalformed)?;
        // SAFETY: bounds checked by ptr_at.
        sum += u64::from(u32::from_ne_bytes(unsafe { *option }));
    }
    // Fifteen 32-bit words fit in 36 bits: two folds to 32, two to 16.
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    if sum == 0xffff {
        Ok(())
    } else {
        Err(DecapCounter::DropMalformed)
    }
}

#[inline(always)]
fn outer_v6<C: Hook>(ctx: &C, config: &DecapConfig) -> Result<Tunnel, DecapCounter> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, ETH_LEN).ok_or(DecapCounter::DropMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    let l4 = ETH_LEN + IPV6_LEN;
    let payload_len = usize::from(u16::from_be_bytes(ip.payload_len));
    if payload_len == 0 {
        return Err(DecapCounter::PassNotTunnel);
    }
    let end = l4 + payload_len;
    if ip.vcf[0] >> 4 != 6 || end > ctx.frame_len() {
        return Err(DecapCounter::DropMalformed);
    }
    let dst = DecapAddr {
        addr: words(&ip.dst_addr),
        family: AF_INET6,
        _pad: [0; 3],
    };
    let src = Source::V6(ip.src_addr);
    let outer_ecn = ecn::of([ip.vcf[0], ip.vcf[1]], true);
    let ipip = config.flags & DECAP_F_IPIP != 0;
    match ip.next_hdr {
        IPPROTO_IPIP | IPPROTO_IPV6 if ipip => {
            claim(config, &dst, src, false)?;
            Ok(Tunnel {
                kind: Kind::Ipip,
                inner_off: l4,
                inner_v6: ip.next_hdr == IPPROTO_IPV6,
                end,
                outer_ecn,
            })
        }
        IPPROTO_UDP if gue_on(config) => {
            if !to_gue_port(ctx, config, l4, end)? {
                return Err(DecapCounter::PassNotTunnel);
            }
            claim(config, &dst, src, false)?;
            gue(ctx, l4, end, outer_ecn)
        }
        NEXTHDR_FRAGMENT => {
            // next header, reserved, offset + flags (2), identification.
            let frag: *const [u8; 8] = ptr_at(ctx, l4).ok_or(DecapCounter::DropMalformed)?;
            if l4 + 8 > end {
                return Err(DecapCounter::DropMalformed);
            }
            // SAFETY: bounds checked by ptr_at.
            let frag = unsafe { &*frag };
            let first = u16::from_be_bytes([frag[2], frag[3]]) & 0xfff8 == 0;
            let tunnel = match frag[0] {
                IPPROTO_IPIP | IPPROTO_IPV6 => ipip,
                IPPROTO_UDP => gue_on(config) && first && to_gue_port(ctx, config, l4 + 8, end)?,
                _ => false,
            };
            if !tunnel {
                return Err(DecapCounter::PassNotTunnel);
            }
            claim(config, &dst, src, true)?;
            // `claim` refuses every fragment; this is not reached.
            Err(DecapCounter::DropUnsupported)
        }
        _ => Err(DecapCounter::PassNotTunnel),
    }
}

#[inline(always)]
fn gue_on(config: &DecapConfig) -> bool {
    config.flags & DECAP_F_GUE != 0 && config.gue_port != 0
}

/// Whether the UDP header at `l4` is to the GUE port; its header must be
/// readable to tell (`DropMalformed` otherwise).
#[inline(always)]
fn to_gue_port<C: Hook>(
    ctx: &C,
    config: &DecapConfig,
    l4: usize,
    end: usize,
) -> Result<bool, DecapCounter> {
    let udp: *const [u8; UDP_LEN] = ptr_at(ctx, l4).ok_or(DecapCounter::DropMalformed)?;
    if l4 + UDP_LEN > end {
        return Err(DecapCounter::DropMalformed);
    }
    // SAFETY: bounds checked by ptr_at.
    let udp = unsafe { &*udp };
    Ok(u16::from_ne_bytes([udp[2], udp[3]]) == config.gue_port)
}

/// A tunnel packet is ours to unwrap only if its outer destination is one
/// of the backend's addresses, its outer source a balancer's (when sources
/// are configured), and not if it is a fragment.
#[inline(always)]
fn claim(
    config: &DecapConfig,
    dst: &DecapAddr,
    src: Source,
    fragment: bool,
) -> Result<(), DecapCounter> {
    // SAFETY: a lookup in a map only the control plane writes.
    if unsafe { DECAP_ADDRS.get(dst) }.is_none() {
        return Err(DecapCounter::PassNotOurs);
    }
    if config.flags & DECAP_F_SOURCES != 0 && !from_a_source(src) {
        return Err(DecapCounter::DropNotSource);
    }
    if fragment {
        return Err(DecapCounter::DropUnsupported);
    }
    Ok(())
}

/// Whether `src` is in a configured source prefix of its family (a
/// longest-prefix lookup of the full address).
#[inline(always)]
fn from_a_source(src: Source) -> bool {
    match src {
        Source::V4(addr) => DECAP_SOURCES_V4.get(Key::new(32, addr)).is_some(),
        Source::V6(addr) => DECAP_SOURCES_V6.get(Key::new(128, addr)).is_some(),
    }
}

/// The GUE packet whose UDP header is at `l4` (its port already matched),
/// under an outer header with ECN field `outer_ecn`.
#[inline(always)]
fn gue<C: Hook>(ctx: &C, l4: usize, end: usize, outer_ecn: u8) -> Result<Tunnel, DecapCounter> {
    let udp: *const [u8; UDP_LEN] = ptr_at(ctx, l4).ok_or(DecapCounter::DropMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let udp_len = usize::from(unsafe { u16::from_be_bytes([(*udp)[4], (*udp)[5]]) });
    let off = l4 + UDP_LEN;
    if udp_len < UDP_LEN || l4 + udp_len > end {
        return Err(DecapCounter::DropMalformed);
    }
    let end = l4 + udp_len;
    // Four bytes: the whole variant 0 header, or the start of variant 1's
    // inner IP header (at least 20 bytes). Never one byte: the compiler
    // turns a one-byte bounds check into a form the verifier does not
    // follow.
    let header: *const [u8; GUE_V0_LEN] = ptr_at(ctx, off).ok_or(DecapCounter::DropMalformed)?;
    if off + GUE_V0_LEN > end {
        return Err(DecapCounter::DropMalformed);
    }
    // SAFETY: bounds checked by ptr_at.
    let header = unsafe { &*header };
    let first = header[0];
    match first >> 6 {
        // Variant 1: the inner IP header itself.
        1 => {
            let inner_v6 = match first >> 4 {
                4 => false,
                6 => true,
                _ => return Err(DecapCounter::DropUnsupported),
            };
            Ok(Tunnel {
                kind: Kind::Gue,
                inner_off: off,
                inner_v6,
                end,
                outer_ecn,
            })
        }
        0 => {
            // Byte 0: version 0, C = 0, hlen = 0 (no options); bytes 2-3:
            // no flags.
            if header[0] != 0 || header[2] != 0 || header[3] != 0 {
                return Err(DecapCounter::DropUnsupported);
            }
            let inner_v6 = match header[1] {
                IPPROTO_IPIP => false,
                IPPROTO_IPV6 => true,
                _ => return Err(DecapCounter::DropUnsupported),
            };
            Ok(Tunnel {
                kind: Kind::Gue,
                inner_off: off + GUE_V0_LEN,
                inner_v6,
                end,
                outer_ecn,
            })
        }
        _ => Err(DecapCounter::DropUnsupported),
    }
}
