//! Per-CPU counters: the production signal of the data plane.

use lb_common::{stats::Counter, TrafficCounters};

use crate::maps::{BACKEND_STATS, COUNTERS, VIP_STATS};

/// Counts one event or verdict.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(c) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, no other writer on this CPU.
        unsafe { *c += 1 };
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

#[inline(always)]
fn add(c: &mut TrafficCounters, bytes: u64, new_flow: bool) {
    c.packets += 1;
    c.bytes += bytes;
    if new_flow {
        c.new_flows += 1;
    }
}
