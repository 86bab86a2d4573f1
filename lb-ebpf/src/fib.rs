//! Next hops of routed packets from the kernel's FIB (`bpf_fib_lookup`),
//! for every mode that routes: a NAT'd packet's next hop is remembered in
//! its flow's entry (`resolve`), a tunnelled backend's in `TUNNEL_HOPS`
//! (`resolve_tunnel`), so a tracked flow pays for the lookup once per
//! touch interval, not per packet. One lookup core (`run`) serves both:
//! parameters and results live in this CPU's scratch slot. Facts the
//! parameters rely on are in docs/design/nat.md.
//!
//! Both pass a small `tot_len` (`PROBE_LEN`), never the packet's own: the
//! kernel then reports the route's MTU on success, and the caller compares
//! its packet (at tc a GSO packet by its segments) with it. The packet's
//! own length would make the lookup fail (`BPF_FIB_LKUP_RET_FRAG_NEEDED`)
//! for any packet larger than the route's MTU, a GRO'd one at tc too,
//! which is no missing route and must be answered, not dropped.
//!
//! A refresh that finds no neighbour entry keeps a cached hop (see `run`):
//! the kernel never refreshes a neighbour entry only XDP uses (its "used"
//! time does not move), so above `gc_thresh1` it collects it about a
//! minute after it was made, and every live flow toward that host would
//! otherwise lose a packet per direction each time.

use core::mem::size_of;

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::bpf_fib_lookup,
};
use lb_common::{
    consts::{AF_INET, AF_INET6, EVENT_NO_ROUTE},
    stats::Counter,
    FlowKey, NatEntry, TunnelHop,
};

use crate::{
    copy,
    hook::Hook,
    maps::NAT_SCRATCH,
    nat::{rewrite::L3Info, scratch::NatScratch},
    stats,
};

/// `AF_INET` as the FIB wants it (the kernel's value, not our tag).
const FIB_AF_INET: u8 = 2;
/// `AF_INET6` as the FIB wants it.
const FIB_AF_INET6: u8 = 10;
/// The `tot_len` every lookup passes: the smallest IPv4 MTU, so the
/// kernel checks it against the route's MTU (always fits) and reports
/// that MTU (`mtu_result`) on success, for the caller's own MTU check.
const PROBE_LEN: u16 = 68;

/// Looks up where the translated packet `entry` describes goes, starting
/// from the ingress interface (its forwarding setting applies). On success
/// the egress interface, both MACs and the route's MTU are stored in
/// `entry`; without a neighbour entry for a next hop the entry already
/// caches (a refresh), that hop is kept and used (Ok, the entry unchanged,
/// lbd told: see `run`); otherwise the drop counter, with an event for lbd.
/// `l3` gives the TOS / flow label (routing by them); the packet's
/// length is not passed (see the module docs). Not inlined: it runs
/// once per new flow and touch interval, and its 64-byte parameter block
/// would otherwise crowd the packet path's stack.
#[inline(never)]
pub fn resolve<C: Hook>(
    ctx: &C,
    key: &FlowKey,
    entry: &mut NatEntry,
    l3: &L3Info,
) -> Result<(), Counter> {
    let Some(scratch) = NAT_SCRATCH.get_ptr_mut(0) else {
        return Err(Counter::DropNoRoute);
    };
    // SAFETY: this CPU's slot, used by this program run only.
    let scratch = unsafe { &mut *scratch };
    let params = &mut scratch.fib;
    // A plain C struct of integers; zero is its "unset".
    copy::zero(params);
    params.l4_protocol = key.proto;
    params.sport = entry.sport;
    params.dport = entry.dport;
    params.ifindex = ctx.ingress_ifindex();
    params.__bindgen_anon_1.tot_len = PROBE_LEN;
    if key.family == AF_INET {
        params.__bindgen_anon_2.tos = l3.tos;
    } else {
        params.__bindgen_anon_2.flowinfo = l3.flowinfo;
    }
    set_addrs(params, key.family, &entry.src, &entry.dst);
    if run(ctx, scratch, u32::from(entry.vip_id), key, entry.ifindex)? {
        let params = &scratch.fib;
        entry.ifindex = params.ifindex;
        entry.smac = copy::mac(&params.smac);
        entry.dmac = copy::mac(&params.dmac);
        entry.mtu = mtu_of(params);
    }
    Ok(())
}

/// The route's MTU a successful lookup reported.
#[inline(always)]
fn mtu_of(params: &FibParams) -> u32 {
    // SAFETY: plain integers; on success the kernel wrote the MTU over
    // `tot_len` (it checks `PROBE_LEN` against it).
    u32::from(unsafe { params.__bindgen_anon_1.mtu_result })
}

/// What a tunnel lookup routes: the outer packet of a flow.
pub struct TunnelRoute<'a> {
    /// Outer family (`AF_INET` / `AF_INET6`).
    pub family: u8,
    /// Outer protocol (`IPPROTO_IPIP`, `IPPROTO_IPV6` or UDP for GUE).
    pub proto: u8,
    /// Outer source (network order; IPv4 in the first word).
    pub src: &'a [u32; 4],
    /// Outer destination: the backend.
    pub dst: &'a [u32; 4],
    /// Interface the lookup starts from (its forwarding setting applies).
    pub ifindex: u32,
    /// Egress interface of the hop the caller caches for this backend (0:
    /// none): kept if only its neighbour entry is missing (see `run`).
    pub cached: u32,
}

/// Looks up the next hop and route MTU of a tunnelled backend and writes
/// them into `hop` (interface, MTU, MACs; the caller stamps the rest). A
/// lookup that finds no neighbour entry for the route of the hop the
/// caller caches (`route.cached`) leaves `hop` as it is, Ok (see `run`).
/// Errors as `run` (events name the VIP `vip_id` and the flow `key`), `hop`
/// unchanged. Not inlined, for the same reason as `resolve`.
#[inline(never)]
pub fn resolve_tunnel<C: Hook>(
    ctx: &C,
    route: &TunnelRoute,
    vip_id: u32,
    key: &FlowKey,
    hop: &mut TunnelHop,
) -> Result<(), Counter> {
    let Some(scratch) = NAT_SCRATCH.get_ptr_mut(0) else {
        return Err(Counter::DropNoRoute);
    };
    // SAFETY: this CPU's slot, used by this program run only.
    let scratch = unsafe { &mut *scratch };
    let params = &mut scratch.fib;
    // A plain C struct of integers; zero is its "unset".
    copy::zero(params);
    params.l4_protocol = route.proto;
    params.ifindex = route.ifindex;
    params.__bindgen_anon_1.tot_len = PROBE_LEN;
    set_addrs(params, route.family, route.src, route.dst);
    if run(ctx, scratch, vip_id, key, route.cached)? {
        let params = &scratch.fib;
        hop.ifindex = params.ifindex;
        hop.mtu = mtu_of(params);
        hop.dmac = copy::mac(&params.dmac);
        hop.smac = copy::mac(&params.smac);
    }
    Ok(())
}

/// Writes family and addresses (`family` is our tag).
#[inline(always)]
fn set_addrs(params: &mut FibParams, family: u8, src: &[u32; 4], dst: &[u32; 4]) {
    if family == AF_INET {
        params.family = FIB_AF_INET;
        params.__bindgen_anon_3.ipv4_src = src[0];
        params.__bindgen_anon_4.ipv4_dst = dst[0];
    } else {
        params.family = FIB_AF_INET6;
        params.__bindgen_anon_3.ipv6_src = copy::addr(src);
        params.__bindgen_anon_4.ipv6_dst = copy::addr(dst);
    }
}

/// Runs the lookup the scratch's parameter block describes. On success
/// true: the next hop is in the block (egress `ifindex`, `smac`, `dmac`,
/// the route's MTU for `mtu_of`), the caller's to store; otherwise
/// the drop counter, with an event for lbd: the gateway to resolve
/// (`EVENT_NO_NEIGHBOUR`, counted `DropNoNeighbour`) or no usable route
/// (`EVENT_NO_ROUTE`, `DropNoRoute`): none, a blackhole, unreachable or
/// prohibit route, forwarding off on the ingress interface. (With
/// `PROBE_LEN` the lookup never answers "fragmentation needed".)
///
/// `cached` is the egress interface of the next hop the caller already
/// has (0: none, a new flow or backend). When the lookup finds the route
/// still leaving by that interface but no neighbour entry for its next
/// hop, the answer is false: the caller keeps its hop, whose MACs are as
/// good as they were (the kernel collects neighbour entries only XDP uses,
/// see the module docs), and the packet is sent, not dropped; lbd still
/// gets the event (rate-limited as ever) and has the neighbour resolved,
/// which the next refresh picks up. Only then: any other failure is the
/// routing's own answer (the route gone, a blackhole, forwarding off),
/// which a router obeys at once, and a route that moved to another
/// interface makes the cached MACs another link's.
#[inline(always)]
fn run<C: Hook>(
    ctx: &C,
    scratch: &mut NatScratch,
    vip_id: u32,
    key: &FlowKey,
    cached: u32,
) -> Result<bool, Counter> {
    let params = &mut scratch.fib;
    // SAFETY: the helper reads and writes `params`, a struct of the size
    // passed; the context is the program's.
    let rc = unsafe { bpf_fib_lookup(ctx.as_ptr(), params, size_of::<FibParams>() as i32, 0) };
    if rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        return Ok(true);
    }
    if rc == i64::from(BPF_FIB_LKUP_RET_NO_NEIGH) {
        // The FIB wrote the gateway over the destination, with its family
        // (an IPv4 route may go through an IPv6 gateway, RFC 5549) and the
        // egress interface: the neighbour lbd must get resolved, and where.
        let gateway_family = if params.family == FIB_AF_INET {
            AF_INET
        } else {
            AF_INET6
        };
        scratch.gateway = FlowKey {
            // SAFETY: both union members are plain integers; v4 reads
            // the first word of the same bytes.
            dst: unsafe {
                if gateway_family == AF_INET {
                    [params.__bindgen_anon_4.ipv4_dst, 0, 0, 0]
                } else {
                    params.__bindgen_anon_4.ipv6_dst
                }
            },
            src: [params.ifindex, 0, 0, 0],
            family: gateway_family,
            ..FlowKey::default()
        };
        stats::report_next_hop(vip_id, &scratch.gateway);
        if cached != 0 && params.ifindex == cached {
            return Ok(false);
        }
        return Err(Counter::DropNoNeighbour);
    }
    stats::report(EVENT_NO_ROUTE, vip_id, key);
    Err(Counter::DropNoRoute)
}
