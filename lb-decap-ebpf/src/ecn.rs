//! ECN at decapsulation (RFC 6040 §4.2, normal mode): the balancer copies
//! the inner packet's ECN field into the outer header, so a router between
//! it and this backend may mark the outer header CE (congestion
//! experienced). Stripping the outer header without looking would throw
//! that mark away, and the flow's sender would never slow down. So, after
//! the checks and before the unwrap is counted:
//!
//! - outer CE, inner ECT(0) or ECT(1): the inner field becomes CE;
//! - outer CE, inner Not-ECT: the packet is dropped (its transport cannot
//!   be told of the congestion; a drop is the signal it understands),
//!   counted `DropUnsupported`;
//! - outer ECT(1), inner ECT(0): the inner field becomes ECT(1);
//! - anything else: the inner packet as it came (RFC 6040 table 2).
//!
//! The inner IPv4 header's checksum is patched (RFC 1624); an inner IPv6
//! header has none. The write happens after the outer headers are gone,
//! at fixed offsets (`Hook::store_word`).

use lb_common::decap::DecapCounter;

use crate::{hook::Hook, parse::ETH_LEN};

/// ECN field values (RFC 3168): the two low bits of the IPv4 TOS / IPv6
/// traffic class.
pub const NOT_ECT: u8 = 0b00;
/// ECN-capable transport, codepoint 1.
pub const ECT_1: u8 = 0b01;
/// ECN-capable transport, codepoint 0.
pub const ECT_0: u8 = 0b10;
/// Congestion experienced.
pub const CE: u8 = 0b11;

/// Offset of the IPv4 header checksum in the header.
const IPV4_CHECK_OFF: usize = 10;

/// The first two bytes of the inner IP header (IPv4: version/IHL and TOS;
/// IPv6: version, traffic class and the top of the flow label), where its
/// ECN field is, and the IPv4 header checksum (unused for IPv6): what the
/// inner parser read, so the rewrite needs no second read.
#[derive(Clone, Copy)]
pub struct InnerHead {
    /// Bytes 0-1 of the inner IP header.
    pub word: [u8; 2],
    /// Bytes 10-11 of an inner IPv4 header.
    pub check: [u8; 2],
}

/// The ECN field of the IPv4 TOS byte or of bytes 0-1 of an IPv6 header
/// (the traffic class straddles them: its ECN bits are bits 4-5 of
/// byte 1).
#[inline(always)]
pub fn of(word: [u8; 2], v6: bool) -> u8 {
    if v6 {
        (word[1] >> 4) & 0b11
    } else {
        word[1] & 0b11
    }
}

/// `word` with its ECN field set to `ecn`.
#[inline(always)]
fn with(word: [u8; 2], v6: bool, ecn: u8) -> [u8; 2] {
    if v6 {
        [word[0], (word[1] & !0x30) | (ecn << 4)]
    } else {
        [word[0], (word[1] & !0b11) | ecn]
    }
}

/// The inner ECN field after decapsulation under an outer field `outer`
/// (RFC 6040 table 2), or `None` if the packet must be dropped.
#[inline(always)]
pub fn combine(outer: u8, inner: u8) -> Option<u8> {
    match (outer, inner) {
        (CE, NOT_ECT) => None,
        (CE, _) => Some(CE),
        (ECT_1, ECT_0) => Some(ECT_1),
        _ => Some(inner),
    }
}

/// `check` (an IPv4 header checksum, network order) after the 16-bit word
/// `old` became `new` (RFC 1624 eq. 3: `~(~HC + ~m + m')`).
#[inline(always)]
fn csum_replace(check: [u8; 2], old: [u8; 2], new: [u8; 2]) -> [u8; 2] {
    let sum = u32::from(!u16::from_be_bytes(check))
        + u32::from(!u16::from_be_bytes(old))
        + u32::from(u16::from_be_bytes(new));
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    (!(sum as u16)).to_be_bytes()
}

/// What to write into the inner header once the outer one is gone.
#[derive(Clone, Copy)]
pub struct Rewrite {
    /// The new bytes 0-1 of the inner header.
    word: [u8; 2],
    /// The new IPv4 header checksum.
    check: [u8; 2],
}

/// Decides, before anything is stripped: `Err(DropUnsupported)` for outer
/// CE over an inner Not-ECT packet; `Ok(Some(_))` when the inner field
/// changes; `Ok(None)` when it stays.
#[inline(always)]
pub fn decide(outer: u8, head: &InnerHead, v6: bool) -> Result<Option<Rewrite>, DecapCounter> {
    let inner = of(head.word, v6);
    let Some(ecn) = combine(outer, inner) else {
        return Err(DecapCounter::DropUnsupported);
    };
    if ecn == inner {
        return Ok(None);
    }
    let word = with(head.word, v6, ecn);
    let check = if v6 {
        head.check
    } else {
        csum_replace(head.check, head.word, word)
    };
    Ok(Some(Rewrite { word, check }))
}

/// Writes `rewrite` into the inner header, which starts right after the
/// Ethernet header once the outer headers are stripped. False if a write
/// failed (never seen: the bytes were there before the strip).
#[inline(always)]
pub fn apply<C: Hook>(ctx: &C, rewrite: &Rewrite, v6: bool) -> bool {
    if !ctx.store_word(ETH_LEN, rewrite.word) {
        return false;
    }
    v6 || ctx.store_word(ETH_LEN + IPV4_CHECK_OFF, rewrite.check)
}
