//! The next hop of a tunnelled backend, cached per backend id and per CPU
//! (`TUNNEL_HOPS`): a tracked flow's packet reads it and does no FIB
//! lookup. It is looked up again when older than
//! `FLOW_TOUCH_INTERVAL_NS` (routes and neighbours change) or when the
//! backend id names a new backend (`Backend::generation`). A failed
//! lookup is not cached: the next packet tries again; but one that finds
//! no neighbour entry for the route of a hop still cached for the same
//! backend keeps that hop and uses it (`fib::run`: the kernel collects
//! neighbour entries only XDP uses), until the next interval's lookup.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use lb_common::{consts::FLOW_TOUCH_INTERVAL_NS, stats::Counter, Backend, FlowKey, TunnelHop};

use crate::{
    fib::{self, TunnelRoute},
    hook::Hook,
    maps::TUNNEL_HOPS,
};

/// The cached next hop of `backend_id` if it is fresh at `now` (the time
/// the connection table read for this packet) for the backend's
/// `generation`; None: `get` has to look it up. Reads and writes nothing
/// else (the tunnel path's lean case, `encap::send_lean`).
#[inline(always)]
pub fn cached(backend_id: u32, generation: u32, now: u64) -> Option<&'static TunnelHop> {
    let hop = TUNNEL_HOPS.get(backend_id)?;
    fresh(hop, generation, now).then_some(hop)
}

/// Whether `hop` may be used at `now` for a backend of `generation`.
#[inline(always)]
fn fresh(hop: &TunnelHop, generation: u32, now: u64) -> bool {
    hop.resolved_ns != 0
        && hop.generation == generation
        // Saturating: `resolved_ns` (odd, see `get`) may be 1 ns past a
        // `now` read within the same clock tick.
        && now.saturating_sub(hop.resolved_ns) <= FLOW_TOUCH_INTERVAL_NS
}

/// The cached next hop of `backend_id`, refreshed from the FIB (`route`,
/// whose `cached` this sets) when stale; `now`: the time the connection
/// table read for this packet (0: read it here). Errors: the FIB's drop
/// counter (`DropNoNeighbour` with the next-hop event, `DropNoRoute`); a
/// stale hop of the same backend without a neighbour entry now is kept,
/// not dropped (see the module docs).
#[inline(always)]
pub fn get<C: Hook>(
    ctx: &C,
    backend_id: u32,
    backend: &Backend,
    route: &mut TunnelRoute,
    key: &FlowKey,
    now: u64,
) -> Result<&'static TunnelHop, Counter> {
    let hop = TUNNEL_HOPS
        .get_ptr_mut(backend_id)
        .ok_or(Counter::DropNoBackend)?;
    // SAFETY: this CPU's slot, no other writer on this CPU.
    let hop = unsafe { &mut *hop };
    let now = if now == 0 {
        // SAFETY: plain helper call.
        unsafe { bpf_ktime_get_coarse_ns() }
    } else {
        now
    };
    if fresh(hop, backend.generation, now) {
        return Ok(hop);
    }
    // The hop to keep if only its neighbour entry is missing: one looked
    // up for this backend (not another the id named before).
    route.cached = if hop.resolved_ns != 0 && hop.generation == backend.generation {
        hop.ifindex
    } else {
        0
    };
    fib::resolve_tunnel(ctx, route, u32::from(backend.vip_id), key, hop)?;
    hop.generation = backend.generation;
    // Never 0 ("never looked up"), even on a clock that just started. A
    // kept hop too: asked again an interval later, as a NAT entry's.
    hop.resolved_ns = now | 1;
    Ok(hop)
}
