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

use core::mem::size_of;

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::bpf_fib_lookup,
};
use lb_common::{
    consts::{AF_INET, AF_INET6, EVENT_NO_ROUTE},
    stats::Counter,
    FlowKey, NatEntry,
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

/// Where a routed packet goes next.
pub struct NextHop {
    /// Egress interface.
    pub ifindex: u32,
    /// MTU of the route (bytes of IP packet); 0 when not asked for.
    pub mtu: u32,
    /// Next hop's MAC.
    pub dmac: [u8; 6],
    /// Egress interface's MAC.
    pub smac: [u8; 6],
}

/// Looks up where the translated packet `entry` describes goes, starting
/// from the ingress interface (its forwarding setting applies). On success
/// the egress interface, both MACs and the route's MTU are stored in
/// `entry`; otherwise the drop counter, with an event for lbd (see `run`).
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
    let hop = run(ctx, scratch, u32::from(entry.vip_id), key)?;
    entry.ifindex = hop.ifindex;
    entry.smac = copy::mac(&hop.smac);
    entry.dmac = copy::mac(&hop.dmac);
    entry.mtu = hop.mtu;
    Ok(())
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
}

/// Looks up the next hop and route MTU of a tunnelled backend. Errors as
/// `run` (events name the VIP `vip_id` and the flow `key`). Not inlined,
/// for the same reason as `resolve`.
#[inline(never)]
pub fn resolve_tunnel<C: Hook>(
    ctx: &C,
    route: &TunnelRoute,
    vip_id: u32,
    key: &FlowKey,
) -> Result<NextHop, Counter> {
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
    run(ctx, scratch, vip_id, key)
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
/// the next hop (with the route's MTU when `tot_len` was set); otherwise
/// the drop counter, with an event for lbd: the gateway to resolve
/// (`EVENT_NO_NEIGHBOUR`, counted `DropNoNeighbour`) or no usable route
/// (`EVENT_NO_ROUTE`, `DropNoRoute`): none, a blackhole, unreachable or
/// prohibit route, forwarding off on the ingress interface. (With
/// `PROBE_LEN` the lookup never answers "fragmentation needed".)
#[inline(always)]
fn run<C: Hook>(
    ctx: &C,
    scratch: &mut NatScratch,
    vip_id: u32,
    key: &FlowKey,
) -> Result<NextHop, Counter> {
    let params = &mut scratch.fib;
    // SAFETY: the helper reads and writes `params`, a struct of the size
    // passed; the context is the program's.
    let rc = unsafe { bpf_fib_lookup(ctx.as_ptr(), params, size_of::<FibParams>() as i32, 0) };
    if rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        return Ok(NextHop {
            ifindex: params.ifindex,
            // SAFETY: plain integers; on success the kernel wrote the MTU
            // over `tot_len` when it checked one.
            mtu: u32::from(unsafe { params.__bindgen_anon_1.mtu_result }),
            dmac: copy::mac(&params.dmac),
            smac: copy::mac(&params.smac),
        });
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
        return Err(Counter::DropNoNeighbour);
    }
    stats::report(EVENT_NO_ROUTE, vip_id, key);
    Err(Counter::DropNoRoute)
}
