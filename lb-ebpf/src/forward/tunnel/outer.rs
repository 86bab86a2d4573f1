//! The outer headers a wrap writes in front of the client's packet
//! (Ethernet, IPv4 or IPv6, and GUE's UDP), as 16-bit words, and the
//! one's-complement sums the wrap and the too-big answer share. What goes
//! in each field, and why, is `encap`'s module docs.

use lb_common::{
    consts::IPPROTO_UDP,
    tunnel::{self, OUTER_TTL, OUTER_V4_LEN},
    TunnelHop,
};
use lb_ebpf_frame::{ETH_LEN, ETH_P_IP, ETH_P_IPV6, UDP_LEN};

use super::encap::Inner;
use crate::{copy, hook::Hook, parse::ptr_at};

/// IPv4 "don't fragment" flag.
const IPV4_DF: u8 = 0x40;

/// The UDP header of a GUE packet over IPv6.
pub(super) struct Udp {
    /// Source port (network order).
    pub(super) sport: u16,
    /// Destination port (network order).
    pub(super) dport: u16,
    /// The inner packet's share of the checksum (None: checksum 0).
    pub(super) csum_part: Option<u64>,
}

/// Eth + outer IPv4 + UDP, in 16-bit words.
pub(super) const V4_WORDS: usize = (ETH_LEN + 20 + UDP_LEN) / 2;
/// The word of a wrapped IPv4 frame where the inner header starts (its
/// version and TOS; the total length follows).
pub(super) const INNER_V4_WORD: usize = (ETH_LEN + OUTER_V4_LEN as usize) / 2;
/// Eth + outer IPv6 + UDP, in 16-bit words.
pub(super) const V6_WORDS: usize = (ETH_LEN + 40 + UDP_LEN) / 2;

/// The 16-bit word holding bytes `a`, `b` (in that order in memory).
#[inline(always)]
const fn word(a: u8, b: u8) -> u16 {
    u16::from_ne_bytes([a, b])
}

/// The two 16-bit words of a 4-byte field given as stored (network order).
#[inline(always)]
const fn halves(v: u32) -> [u16; 2] {
    let b = v.to_ne_bytes();
    [word(b[0], b[1]), word(b[2], b[3])]
}

/// Writes Ethernet, outer IPv4 and (GUE) UDP with checksum 0. The headers
/// are written (and the IPv4 checksum summed) as 16-bit words, not bytes:
/// the BPF backend splits every unaligned (byte array) store into single
/// bytes and shifts, which cost the wrap about as much as everything else
/// in it. Every header field is 16-bit aligned relative to the frame
/// start, and the frame start is even on both hooks (the verifier allows
/// what is not naturally aligned for wider accesses on x86 anyway).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn write_v4<C: Hook>(
    ctx: &C,
    hop: &TunnelHop,
    inner: &Inner,
    proto: u8,
    src: u32,
    dst: u32,
    gue: bool,
    hash: u32,
    gue_port: u16,
) -> bool {
    let Some(frame) = ptr_at::<[u16; V4_WORDS], C>(ctx, 0) else {
        // An IPIP frame may be shorter than one with a UDP header only
        // if its inner packet were shorter than 8 bytes: never.
        return false;
    };
    // SAFETY: bounds checked by ptr_at; the program owns the frame.
    let w = unsafe { &mut *frame };
    let outer = if gue {
        OUTER_V4_LEN + UDP_LEN as u32
    } else {
        OUTER_V4_LEN
    };
    let [s0, s1] = halves(src);
    let [d0, d1] = halves(dst);
    // The checksum from the values, not by reading the header back,
    // summed as each word is stored, so no word outlives its store (the
    // lean path runs in the entry point, whose frame every call chain
    // shares: spills would cost it stack); summed as the words lie in
    // memory (a one's-complement sum is the same in either byte order,
    // RFC 1071), so its complement is stored as it is.
    let mut sum = 0u64;
    let mut put = |i: usize, v: u16| {
        w[i] = v;
        sum += u64::from(v);
    };
    put(7, word(0x45, inner.tos));
    put(8, ((inner.len + outer) as u16).to_be());
    put(9, 0);
    put(10, word(IPV4_DF, 0));
    put(11, word(OUTER_TTL, proto));
    put(13, s0);
    put(14, s1);
    put(15, d0);
    put(16, d1);
    w[12] = !fold16(sum);
    write_eth(w, hop, ETH_P_IP.to_be_bytes());
    if gue {
        w[17] = tunnel::gue_source_port(hash);
        w[18] = gue_port;
        w[19] = ((inner.len + UDP_LEN as u32) as u16).to_be();
        w[20] = 0;
    }
    true
}

/// Writes Ethernet, outer IPv6 and (GUE) UDP, as 16-bit words (see
/// `write_v4`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn write_v6<C: Hook>(
    ctx: &C,
    hop: &TunnelHop,
    inner: &Inner,
    proto: u8,
    src: &[u32; 4],
    dst: &[u32; 4],
    gue: bool,
    hash: u32,
    udp: &Udp,
) -> bool {
    let Some(frame) = ptr_at::<[u16; V6_WORDS], C>(ctx, 0) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at; the program owns the frame.
    let w = unsafe { &mut *frame };
    write_eth(w, hop, ETH_P_IPV6.to_be_bytes());
    let payload = if gue {
        inner.len + UDP_LEN as u32
    } else {
        inner.len
    };
    let vcf = (6u32 << 28) | (u32::from(inner.tos) << 20) | (hash & 0x000f_ffff);
    let [v0, v1] = halves(vcf.to_be());
    w[7] = v0;
    w[8] = v1;
    w[9] = (payload as u16).to_be();
    w[10] = word(proto, OUTER_TTL);
    // The addresses' sum as the words lie in memory (GUE's checksum).
    let mut addr_sum = 0u64;
    for i in 0..4 {
        let [s0, s1] = halves(src[i]);
        let [d0, d1] = halves(dst[i]);
        w[11 + i * 2] = s0;
        w[12 + i * 2] = s1;
        w[19 + i * 2] = d0;
        w[20 + i * 2] = d1;
        addr_sum += u64::from(s0) + u64::from(s1) + u64::from(d0) + u64::from(d1);
    }
    if gue {
        let csum = match udp.csum_part {
            Some(part) => {
                // Pseudo-header (addresses, length, protocol), the UDP
                // header with a zero checksum, then the inner packet; the
                // addresses were summed in memory order, byte-swapped to
                // the numeric order of the rest.
                let sum = u64::from(fold16(addr_sum).swap_bytes())
                    + u64::from(payload) * 2
                    + u64::from(IPPROTO_UDP)
                    + u64::from(u16::from_be(udp.sport))
                    + u64::from(u16::from_be(udp.dport))
                    + part;
                match !fold16(sum) {
                    0 => 0xffff,
                    c => c,
                }
            }
            None => 0,
        };
        w[27] = udp.sport;
        w[28] = udp.dport;
        w[29] = (payload as u16).to_be();
        w[30] = csum.to_be();
    }
    true
}

/// Writes the Ethernet header of a wrapped frame (its first 7 words).
#[inline(always)]
fn write_eth(w: &mut [u16], hop: &TunnelHop, ether_type: [u8; 2]) {
    // SAFETY: MAC fields of a map value (see `copy`).
    unsafe { copy::copy_macs(w, &hop.dmac, &hop.smac) };
    w[6] = word(ether_type[0], ether_type[1]);
}

/// The one's-complement sum of `bytes` as big-endian 16-bit words
/// (unfolded; `bytes` has an even length).
#[inline(always)]
pub(super) fn sum_bytes(bytes: &[u8]) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i + 1 < bytes.len() {
        sum += u64::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    sum
}

/// Folds a one's-complement sum to 16 bits.
#[inline(always)]
pub(super) fn fold16(sum: u64) -> u16 {
    let s = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}
