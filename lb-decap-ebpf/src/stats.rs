//! Per-CPU counters: the production signal of the decap program.

use lb_common::decap::DecapCounter;

use crate::maps::DECAP_COUNTERS;

/// Counts one verdict.
#[inline(always)]
pub fn count(counter: DecapCounter) {
    if let Some(c) = DECAP_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, no other writer on this CPU.
        unsafe { *c += 1 };
    }
}
