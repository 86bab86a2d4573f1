//! The decap path, on either hook: outer headers (is it a tunnel packet to
//! us?), inner packet (is it for a VIP?), the outer ECN mark (RFC 6040:
//! carried over to the inner header, or a drop), then the unwrap. Every
//! outcome is a `DecapCounter`.

use lb_common::decap::DecapCounter;

use crate::{
    ecn,
    hook::Hook,
    inner,
    maps::DECAP_CONFIG,
    outer::{self, Kind},
    parse::ETH_LEN,
};

/// Judges a frame and unwraps it if it may; returns what happened. The
/// frame is unchanged unless the result is `DecapIpip` or `DecapGue` (or
/// `DropUnsupported` after a failed ECN write, when it is dropped anyway).
#[inline(always)]
pub fn run<C: Hook>(ctx: &C) -> DecapCounter {
    match try_run(ctx) {
        Ok(counter) | Err(counter) => counter,
    }
}

#[inline(always)]
fn try_run<C: Hook>(ctx: &C) -> Result<DecapCounter, DecapCounter> {
    // Not configured yet: nothing is ours.
    let Some(config) = DECAP_CONFIG.get(0) else {
        return Err(DecapCounter::PassNotTunnel);
    };
    let tunnel = outer::parse(ctx, config)?;
    let head = inner::check(ctx, &tunnel)?;
    // Decided before the strip, so a drop leaves the frame as it was.
    let rewrite = ecn::decide(tunnel.outer_ecn, &head, tunnel.inner_v6)?;
    // A frame the kernel refuses to shrink (never seen) is counted with
    // the malformed ones: it cannot go up as it is.
    if !ctx.strip((tunnel.inner_off - ETH_LEN) as u32, tunnel.inner_v6) {
        return Err(DecapCounter::DropMalformed);
    }
    // A congestion mark that cannot be carried over (a failed write, never
    // seen) is not lost silently: the packet is dropped. Not counted
    // malformed: at tc that outcome judges the frame again, and this one
    // is already stripped.
    if let Some(rewrite) = rewrite {
        if !ecn::apply(ctx, &rewrite, tunnel.inner_v6) {
            return Err(DecapCounter::DropUnsupported);
        }
    }
    Ok(match tunnel.kind {
        Kind::Ipip => DecapCounter::DecapIpip,
        Kind::Gue => DecapCounter::DecapGue,
    })
}
