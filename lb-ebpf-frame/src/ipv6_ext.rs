//! IPv6 extension-header chains, walked the same way by both programs: at
//! most [`EXT_MAX`] headers (the verifier sees a bounded loop, and a packet
//! cannot make a program walk far), hop-by-hop options only right after
//! the IPv6 header, a routing header only once it has no segments left
//! (else the packet is on its way elsewhere), a fragment header never.
//! Where a walk stops says [`ExtStop`]; each program counts it in its own
//! words.

use crate::{ptr_at, Frame};

/// Hop-by-hop options (only allowed right after the IPv6 header).
pub const NEXTHDR_HOP: u8 = 0;
/// Routing header.
pub const NEXTHDR_ROUTING: u8 = 43;
/// Fragment header.
pub const NEXTHDR_FRAGMENT: u8 = 44;
/// Destination options.
pub const NEXTHDR_DEST: u8 = 60;

/// Most extension headers skipped before giving up. Real traffic to a
/// service carries one or two at most.
pub const EXT_MAX: usize = 4;

/// Why a walk did not reach the upper-layer header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ExtStop {
    /// A header runs past the packet, or hop-by-hop options not first.
    Malformed,
    /// A fragment header: the upper-layer header may not be in this packet.
    Fragment,
    /// A routing header with segments left.
    ActiveRouting,
    /// More than [`EXT_MAX`] headers.
    TooMany,
}

/// Skips the extension headers starting at `off` (whose type is `next`);
/// returns the upper-layer protocol and where its header starts. Every
/// header must lie inside the packet (`l3_end`, from the payload length).
#[inline(always)]
pub fn skip_extension_headers<C: Frame>(
    ctx: &C,
    mut next: u8,
    mut off: usize,
    l3_end: usize,
) -> Result<(u8, usize), ExtStop> {
    for index in 0..EXT_MAX {
        match next {
            NEXTHDR_HOP if index == 0 => {}
            NEXTHDR_ROUTING | NEXTHDR_DEST => {}
            NEXTHDR_HOP => return Err(ExtStop::Malformed),
            NEXTHDR_FRAGMENT => return Err(ExtStop::Fragment),
            _ => return Ok((next, off)),
        }
        // Every extension header is at least 8 bytes: next header, length
        // in 8-byte units beyond the first 8, then (routing) type and
        // segments left.
        let header: *const [u8; 8] = ptr_at(ctx, off).ok_or(ExtStop::Malformed)?;
        // SAFETY: bounds checked by ptr_at.
        let header = unsafe { &*header };
        if next == NEXTHDR_ROUTING && header[3] != 0 {
            return Err(ExtStop::ActiveRouting);
        }
        let len = (usize::from(header[1]) + 1) * 8;
        if off + len > l3_end {
            return Err(ExtStop::Malformed);
        }
        next = header[0];
        off += len;
    }
    match next {
        NEXTHDR_FRAGMENT => Err(ExtStop::Fragment),
        NEXTHDR_HOP => Err(ExtStop::Malformed),
        NEXTHDR_ROUTING | NEXTHDR_DEST => Err(ExtStop::TooMany),
        _ => Ok((next, off)),
    }
}
