//! IPv6 extension-header chains: skipped up to a small fixed bound, so the
//! verifier sees a bounded loop and an attacker cannot make the program
//! walk far. See the parent module for what is skipped and why.

use crate::hook::Hook;
use lb_common::stats::Counter;

use super::ptr_at;

/// Hop-by-hop options (only allowed right after the IPv6 header).
const NEXTHDR_HOP: u8 = 0;
/// Routing header.
const NEXTHDR_ROUTING: u8 = 43;
/// Fragment header.
const NEXTHDR_FRAGMENT: u8 = 44;
/// Destination options.
const NEXTHDR_DEST: u8 = 60;

/// Most extension headers skipped before giving up (`PassIpv6Ext`). Real
/// traffic to a service carries one or two at most.
pub const EXT_MAX: usize = 4;

/// Skips the extension headers starting at `off` (whose type is `next`);
/// returns the upper-layer protocol and where its header starts. Every
/// header must lie inside the packet (`l3_end`, from the payload length).
#[inline(always)]
pub fn skip_extension_headers<C: Hook>(
    ctx: &C,
    mut next: u8,
    mut off: usize,
    l3_end: usize,
) -> Result<(u8, usize), Counter> {
    for index in 0..EXT_MAX {
        match next {
            NEXTHDR_HOP if index == 0 => {}
            NEXTHDR_ROUTING | NEXTHDR_DEST => {}
            NEXTHDR_HOP => return Err(Counter::DropMalformed),
            NEXTHDR_FRAGMENT => return Err(Counter::PassFragment),
            _ => return Ok((next, off)),
        }
        // Every extension header is at least 8 bytes: next header, length
        // in 8-byte units beyond the first 8, then (routing) type and
        // segments left.
        let header: *const [u8; 8] = ptr_at(ctx, off).ok_or(Counter::DropMalformed)?;
        // SAFETY: bounds checked by ptr_at.
        let header = unsafe { &*header };
        if next == NEXTHDR_ROUTING && header[3] != 0 {
            return Err(Counter::PassIpv6Ext);
        }
        let len = (usize::from(header[1]) + 1) * 8;
        if off + len > l3_end {
            return Err(Counter::DropMalformed);
        }
        next = header[0];
        off += len;
    }
    match next {
        NEXTHDR_FRAGMENT => Err(Counter::PassFragment),
        NEXTHDR_HOP => Err(Counter::DropMalformed),
        NEXTHDR_ROUTING | NEXTHDR_DEST => Err(Counter::PassIpv6Ext),
        _ => Ok((next, off)),
    }
}
