//! Per-CPU counters: the production signal of the data plane.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use lb_common::{
    consts::{EVENT_INTERVAL_NS, EVENT_KINDS, EVENT_NO_NEIGHBOUR, NEXT_HOP_EVENT_SLOTS},
    stats::Counter,
    DataplaneEvent, FlowKey, TrafficCounters,
};

use crate::{
    maps::{BACKEND_STATS, EVENTS, EVENT_LAST, VIP_STATS},
    state,
};

/// Counts one event or verdict, where this CPU's packet state is not at
/// hand (`state::count` counts through it without a lookup).
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(state) = state::this_cpu() {
        state::count(state, counter);
    }
}

/// Counts a forwarded packet against its VIP and backend.
#[inline(always)]
pub fn count_traffic(vip_id: u32, backend_id: u32, bytes: u64, new_flow: bool) {
    if let Some(c) = VIP_STATS.get_ptr_mut(vip_id) {
        // SAFETY: per-CPU slot, no other writer on this CPU.
        unsafe { add(&mut *c, bytes, new_flow) };
    }
    if let Some(c) = BACKEND_STATS.get_ptr_mut(backend_id) {
        // SAFETY: as above.
        unsafe { add(&mut *c, bytes, new_flow) };
    }
}

/// Takes back the new flow `count_traffic` counted for a packet on this
/// CPU whose flow turned out to be in the connection table after all
/// (another CPU inserted it between this packet's lookup and its insert):
/// each flow is counted new once. Its packet and bytes stay counted.
#[inline(always)]
pub fn uncount_new_flow(vip_id: u32, backend_id: u32) {
    if let Some(c) = VIP_STATS.get_ptr_mut(vip_id) {
        // SAFETY: per-CPU slot, no other writer on this CPU.
        unsafe { (*c).new_flows = (*c).new_flows.saturating_sub(1) };
    }
    if let Some(c) = BACKEND_STATS.get_ptr_mut(backend_id) {
        // SAFETY: as above.
        unsafe { (*c).new_flows = (*c).new_flows.saturating_sub(1) };
    }
}

#[inline(always)]
fn add(c: &mut TrafficCounters, bytes: u64, new_flow: bool) {
    c.packets += 1;
    c.bytes += bytes;
    if new_flow {
        c.new_flows += 1;
    }
}

/// Reports an event to lbd's log, at most once per second per CPU and
/// kind: counters carry the volume, the log only the news. Not inlined:
/// a BPF-to-BPF call on rare paths, so its event's stack slot is not added
/// to the packet path's at every call site.
#[inline(always)]
pub fn report(kind: u32, vip_id: u32, flow: &FlowKey) {
    report_in(kind, kind, vip_id, flow);
}

/// Reports a missing neighbour for next hop `flow.dst`, at most once per
/// second per CPU and next-hop slot (a hash of the address), so every
/// gateway missing at once is reported.
#[inline(always)]
pub fn report_next_hop(vip_id: u32, flow: &FlowKey) {
    let [a, b, c, d] = flow.dst;
    let folded = a ^ b ^ c ^ d;
    let slot = (folded ^ (folded >> 16) ^ (folded >> 8)) % NEXT_HOP_EVENT_SLOTS;
    report_in(EVENT_KINDS + slot, EVENT_NO_NEIGHBOUR, vip_id, flow);
}

/// `report`, rate-limited in slot `slot` of `EVENT_LAST`.
#[inline(never)]
fn report_in(slot: u32, kind: u32, vip_id: u32, flow: &FlowKey) {
    let Some(last) = EVENT_LAST.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: plain helper call; per-CPU slot, no other writer on this CPU.
    unsafe {
        let now = bpf_ktime_get_ns();
        if now.wrapping_sub(*last) < EVENT_INTERVAL_NS && *last != 0 {
            return;
        }
        *last = now;
    }
    let event = DataplaneEvent {
        kind,
        vip_id,
        flow: *flow,
    };
    // A full ring only loses this event; the counters still count.
    let _ = EVENTS.output::<DataplaneEvent>(&event, 0);
}
