//! Next hop of a routed (NAT'd) packet from the kernel's FIB
//! (`bpf_fib_lookup`), remembered in the flow's entry so a tracked flow
//! pays for the lookup once per touch interval, not per packet. Facts the
//! parameters rely on are in docs/design/nat.md.

use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::bpf_fib_lookup,
};
use lb_common::{
    consts::{AF_INET, EVENT_NO_ROUTE},
    stats::Counter,
    FlowKey, NatEntry,
};

use crate::{hook::Hook, maps::NAT_SCRATCH, nat::rewrite::L3Info, stats};

/// `AF_INET` as the FIB wants it (the kernel's value, not our tag).
const FIB_AF_INET: u8 = 2;
/// `AF_INET6` as the FIB wants it.
const FIB_AF_INET6: u8 = 10;

/// Looks up where the translated packet `entry` describes goes, starting
/// from the ingress interface (its forwarding setting applies). On success
/// the egress interface and both MACs are stored in `entry`; otherwise the
/// drop counter, with an event for lbd: the gateway to resolve
/// (`EVENT_NO_NEIGHBOUR`) or the missing route (`EVENT_NO_ROUTE`). Not
/// inlined: it runs once per new flow and touch interval, and its 64-byte
/// parameter block would otherwise crowd the packet path's stack.
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
    // SAFETY: a plain C struct of integers; zero is its "unset".
    *params = unsafe { zeroed() };
    params.l4_protocol = key.proto;
    params.sport = entry.sport;
    params.dport = entry.dport;
    params.ifindex = ctx.ingress_ifindex();
    params.__bindgen_anon_1.tot_len = l3.tot_len;
    if key.family == AF_INET {
        params.family = FIB_AF_INET;
        params.__bindgen_anon_2.tos = l3.tos;
        params.__bindgen_anon_3.ipv4_src = entry.src[0];
        params.__bindgen_anon_4.ipv4_dst = entry.dst[0];
    } else {
        params.family = FIB_AF_INET6;
        params.__bindgen_anon_2.flowinfo = l3.flowinfo;
        params.__bindgen_anon_3.ipv6_src = entry.src;
        params.__bindgen_anon_4.ipv6_dst = entry.dst;
    }
    // SAFETY: the helper reads and writes `params`, a stack struct of the
    // size passed; the context is the program's.
    let rc = unsafe { bpf_fib_lookup(ctx.as_ptr(), params, size_of::<FibParams>() as i32, 0) };
    if rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        entry.ifindex = params.ifindex;
        entry.smac = params.smac;
        entry.dmac = params.dmac;
        return Ok(());
    }
    if rc == i64::from(BPF_FIB_LKUP_RET_NO_NEIGH) {
        // The FIB wrote the gateway over the destination: that is the
        // neighbour lbd must get resolved.
        scratch.gateway = FlowKey {
            // SAFETY: both union members are plain integers; v4 reads
            // the first word of the same bytes.
            dst: unsafe {
                if key.family == AF_INET {
                    [params.__bindgen_anon_4.ipv4_dst, 0, 0, 0]
                } else {
                    params.__bindgen_anon_4.ipv6_dst
                }
            },
            family: key.family,
            ..FlowKey::default()
        };
        stats::report_next_hop(u32::from(entry.vip_id), &scratch.gateway);
        return Err(Counter::DropNoNeighbour);
    }
    stats::report(EVENT_NO_ROUTE, u32::from(entry.vip_id), key);
    Err(Counter::DropNoRoute)
}
