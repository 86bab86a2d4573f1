//! The answer to a packet too big for the tunnel: the frame itself becomes
//! an ICMP fragmentation-needed (IPv4: type 3 code 4) or ICMPv6
//! packet-too-big (type 2) from the VIP to the client, quoting the start
//! of the packet, with the MTU left for the inner packet, and goes back
//! out of the interface it came in on (MACs swapped, VLAN tags kept), so
//! the client's path MTU discovery lowers its packet size.
//!
//! - Quote: as much of the packet as the reply may carry: an IPv4 reply is
//!   576 bytes (RFC 1812 4.3.2.3), an IPv6 one 1280 (RFC 4443 2.4). Only
//!   on an IPv4 route with an MTU below 576 is the packet shorter than
//!   that: then 68 bytes are quoted (the longest IPv4 header and 8 bytes,
//!   what RFC 792 asks for), and a packet of less than 68 bytes that is
//!   still too big (a route MTU below 88) is dropped as `DropMalformed`.
//!   The quote's checksum is the kernel's (`bpf_csum_diff`), so its
//!   length is a constant the verifier checks once.
//! - MTU reported: the route's MTU less the tunnel's overhead, never less
//!   than 68 for IPv4 (RFC 791's minimum) nor than 1280 for IPv6: an IPv6
//!   host treats a smaller value as 1280 anyway (RFC 8201 4), so a tunnel
//!   path that cannot carry 1280 + overhead bytes keeps getting this
//!   answer for full-size packets; such a path breaks IPv6 (RFC 8200 5
//!   wants 1280 end to end) and has to be fixed in the network.
//! - IPv4 reply: TOS 0xc0 (internetwork control, as Linux's ICMP), no
//!   DF, TTL 64, id 0; IPv6 reply: hop limit 64.
//! - At tc the reply is built in the skb itself (cut, then grown at the
//!   front); a GSO skb stops being one (the kernel resets GSO on the cut).
//!   A GSO skb (a GRO aggregate from a NIC, a local sender's TSO packet)
//!   is `CHECKSUM_PARTIAL` at its TCP or UDP header, and stays so through
//!   the cut and the grow: the NIC (or `skb_checksum_help`) finishes the
//!   quoted L4 checksum field after this program, over the quote's bytes
//!   from that header on. The ICMP checksum is computed for the quote as
//!   it will leave (`finished_sum`), not as it stands, or every answer
//!   to an aggregate would reach the client with a wrong checksum and be
//!   dropped, and path MTU discovery would wait for a retransmission
//!   that came alone.

use aya_ebpf::helpers::bpf_csum_diff;
use lb_common::{
    consts::{IPPROTO_TCP, IPPROTO_UDP},
    stats::Counter,
};

use super::outer::{fold16, sum_bytes};

use crate::{hook::Hook, parse::ptr_at};

/// Largest quote in an ICMPv4 error (576 - 20 - 8).
const QUOTE_V4: u32 = 548;
/// Largest quote in an ICMPv6 error (1280 - 40 - 8).
const QUOTE_V6: u32 = 1232;
/// Headers of the reply before the quote.
const HEAD_V4: u32 = 20 + 8;
/// The same, IPv6.
const HEAD_V6: u32 = 40 + 8;
/// Smallest IPv4 MTU reported.
const MIN_MTU_V4: u32 = 68;
/// Smallest IPv6 MTU reported.
const MIN_MTU_V6: u32 = 1280;
/// Shortest IPv4 quote: the longest IPv4 header and 8 bytes.
const QUOTE_V4_MIN: u32 = 68;
/// Most bytes `bpf_csum_diff` sums at once.
const CSUM_CHUNK: usize = 512;
/// Largest Ethernet + VLAN header (the laundered `l3_off` bound).
const L2_MAX: usize = 22;

/// Turns the frame (IP packet at `l3_off`, `len` bytes long, `v4` or
/// IPv6) into the too-big answer reporting `mtu` (clamped as the module
/// docs say); the counter is the verdict: `SentIcmpTooBig`, or
/// `DropInternal` if the frame could not be reshaped (a helper refused;
/// then it is dropped, counted). Not inlined: a rare path.
#[inline(never)]
pub fn reply<C: Hook>(ctx: &C, l3_off: usize, v4: bool, len: u32, mtu: u32) -> Counter {
    if l3_off > L2_MAX {
        return Counter::DropMalformed;
    }
    // Read before the cut, which resets GSO.
    let partial = ctx.gso_size() != 0;
    if v4 {
        // A full quote, or (on a route whose MTU is below 576) the
        // shortest one an IPv4 header with options and 8 bytes need.
        if len >= QUOTE_V4 {
            reshape::<C, { QUOTE_V4 as usize }, { HEAD_V4 as usize }>(
                ctx,
                l3_off,
                (true, partial),
                mtu,
            )
        } else if len >= QUOTE_V4_MIN {
            reshape::<C, { QUOTE_V4_MIN as usize }, { HEAD_V4 as usize }>(
                ctx,
                l3_off,
                (true, partial),
                mtu,
            )
        } else {
            Counter::DropMalformed
        }
    } else if len >= QUOTE_V6 {
        // Always: an IPv6 route carries 1280 bytes, so a packet too big
        // for it once wrapped has more than 1280 - 48.
        reshape::<C, { QUOTE_V6 as usize }, { HEAD_V6 as usize }>(
            ctx,
            l3_off,
            (false, partial),
            mtu,
        )
    } else {
        Counter::DropMalformed
    }
}

/// `reply` with a quote of `Q` bytes and `H` bytes of new headers;
/// `partial`: a GSO skb, its L4 checksum left for the kernel to finish.
#[inline(always)]
fn reshape<C: Hook, const Q: usize, const H: usize>(
    ctx: &C,
    l3_off: usize,
    (v4, partial): (bool, bool),
    mtu: u32,
) -> Counter {
    let l3 = l3_off as u32;
    if !ctx.cut_to(l3 + Q as u32)
        || !ctx.grow_head(H as u32)
        || !ctx.make_linear(l3 + (H + Q) as u32)
    {
        return Counter::DropInternal;
    }
    // The L2 header (Ethernet and tags) moves back to the front, MACs
    // swapped; bytes past it are overwritten by the new IP header.
    let (Some(to), Some(from)) = (
        ptr_at::<[u8; L2_MAX], C>(ctx, 0),
        ptr_at::<[u8; L2_MAX], C>(ctx, H),
    ) else {
        return Counter::DropInternal;
    };
    // SAFETY: bounds checked by ptr_at; `H` > L2_MAX so they do not
    // overlap.
    unsafe {
        let (to, from) = (&mut *to, &*from);
        to[0..6].copy_from_slice(&from[6..12]);
        to[6..12].copy_from_slice(&from[0..6]);
        to[12..].copy_from_slice(&from[12..]);
    }
    let Some(quote) = ptr_at::<[u8; Q], C>(ctx, l3_off + H) else {
        return Counter::DropInternal;
    };
    let sum = quote_sum::<Q>(quote.cast());
    let sum = if partial {
        finished_sum::<C, Q>(ctx, l3_off + H, v4, sum)
    } else {
        sum
    };
    let written = if v4 {
        write_v4(ctx, l3_off, Q as u32, mtu, sum)
    } else {
        write_v6(ctx, l3_off, Q as u32, mtu, sum)
    };
    if written {
        Counter::SentIcmpTooBig
    } else {
        Counter::DropInternal
    }
}

/// The one's-complement sum (big-endian words) of the `Q` bytes at
/// `quote` (a multiple of 4), by the kernel's `bpf_csum_diff` in chunks of
/// at most 512 bytes (its limit).
#[inline(always)]
fn quote_sum<const Q: usize>(quote: *mut u32) -> u64 {
    let mut sum = 0u64;
    let mut done = 0usize;
    while done < Q {
        let chunk = if Q - done > CSUM_CHUNK {
            CSUM_CHUNK
        } else {
            Q - done
        };
        // SAFETY: `quote` points at `Q` bounds-checked bytes; the helper
        // only reads `chunk` of them from `done` on.
        let part = unsafe {
            bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                quote.add(done / 4),
                chunk as u32,
                0,
            )
        };
        // The helper sums native (little-endian) words: the same sum
        // with its bytes swapped.
        sum += u64::from(fold16(part as u64 & 0xffff_ffff).swap_bytes());
        done += chunk;
    }
    sum
}

/// The one's-complement sum of the `Q`-byte quote at `at` (`sum`: as
/// it stands) once the kernel has finished its TCP or UDP checksum, as it
/// does for a `CHECKSUM_PARTIAL` skb: it sums the bytes from the L4 header
/// to the end of the skb (the quote's end) with the field holding the
/// pseudo-header's sum `f`, and stores the complement there. Those bytes
/// then sum to `!f` whatever they hold (`D + !(D + f) = !f`), so the
/// quote sums to its IP header's bytes plus `!f`. `sum` unchanged for a
/// quote whose L4 header does not follow its IP header (IPv6 extension
/// headers: GRO rarely merges such packets) or lies past the quote.
#[inline(always)]
fn finished_sum<C: Hook, const Q: usize>(ctx: &C, at: usize, v4: bool, sum: u64) -> u64 {
    // Each read bounds-checked again where it is made: a pointer derived
    // from the quote's with a variable offset loses its checked range.
    let Some(ip) = ptr_at::<[u8; 60], C>(ctx, at) else {
        return sum;
    };
    // SAFETY: bounds checked by ptr_at (the quote is at least 68 bytes).
    let (l4, proto) = unsafe {
        let ip = &*ip;
        if v4 {
            (usize::from(ip[0] & 0x0f) * 4, ip[9])
        } else {
            (40, ip[6])
        }
    };
    let field = match proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        _ => return sum,
    };
    if !(20..=60).contains(&l4) || l4 + field + 2 > Q {
        return sum;
    }
    let Some(f) = ptr_at::<[u8; 2], C>(ctx, at + l4 + field) else {
        return sum;
    };
    // SAFETY: bounds checked by ptr_at.
    let f = u16::from_be_bytes(unsafe { *f });
    // The IP header's bytes (a multiple of 4, at most 60): the helper
    // sums native words, as in `quote_sum`.
    // SAFETY: `l4` of the 60 bytes checked above.
    let head = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, ip.cast(), l4 as u32, 0) };
    u64::from(fold16(head as u64 & 0xffff_ffff).swap_bytes()) + u64::from(!f)
}

/// Writes the IPv4 and ICMP headers of the answer (`sum`: the quote's).
#[inline(always)]
fn write_v4<C: Hook>(ctx: &C, l3_off: usize, quote: u32, mtu: u32, sum: u64) -> bool {
    let Some(p) = ptr_at::<[u8; HEAD_V4 as usize + 20], C>(ctx, l3_off) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at; the quote starts at HEAD_V4.
    let p = unsafe { &mut *p };
    let (head, quoted) = p.split_at_mut(HEAD_V4 as usize);
    let total = (HEAD_V4 + quote) as u16;
    let ip = &mut head[..20];
    ip[0] = 0x45;
    ip[1] = 0xc0;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..8].copy_from_slice(&[0; 4]);
    ip[8] = 64;
    ip[9] = lb_common::consts::IPPROTO_ICMP;
    ip[10..12].copy_from_slice(&[0, 0]);
    // From the VIP (the quote's destination) to the client (its source).
    ip[12..16].copy_from_slice(&quoted[16..20]);
    ip[16..20].copy_from_slice(&quoted[12..16]);
    let csum = !fold16(sum_bytes(ip));
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    let mtu = mtu.clamp(MIN_MTU_V4, 0xffff) as u16;
    let icmp = &mut head[20..28];
    icmp.copy_from_slice(&[3, 4, 0, 0, 0, 0, 0, 0]);
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    let csum = !fold16(sum + sum_bytes(icmp));
    icmp[2..4].copy_from_slice(&csum.to_be_bytes());
    true
}

/// Writes the IPv6 and ICMPv6 headers of the answer (`sum`: the quote's).
#[inline(always)]
fn write_v6<C: Hook>(ctx: &C, l3_off: usize, quote: u32, mtu: u32, sum: u64) -> bool {
    let Some(p) = ptr_at::<[u8; HEAD_V6 as usize + 40], C>(ctx, l3_off) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at; the quote starts at HEAD_V6.
    let p = unsafe { &mut *p };
    let (head, quoted) = p.split_at_mut(HEAD_V6 as usize);
    let payload = 8 + quote;
    let ip = &mut head[..40];
    ip[0..4].copy_from_slice(&(6u32 << 28).to_be_bytes());
    ip[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    ip[6] = lb_common::consts::IPPROTO_ICMPV6;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&quoted[24..40]);
    ip[24..40].copy_from_slice(&quoted[8..24]);
    let pseudo =
        sum_bytes(&ip[8..40]) + u64::from(payload) + u64::from(lb_common::consts::IPPROTO_ICMPV6);
    let mtu = mtu.max(MIN_MTU_V6);
    let icmp = &mut head[40..48];
    icmp.copy_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    icmp[4..8].copy_from_slice(&mtu.to_be_bytes());
    let csum = !fold16(pseudo + sum + sum_bytes(icmp));
    icmp[2..4].copy_from_slice(&csum.to_be_bytes());
    true
}
