//! One CPU's slot of `PACKET_STATE`: its node counters and the state of
//! the packet it is working on, between the steps of its entry point. The
//! packet path (`forward::balance`) leaves here what the entry point runs
//! after it, each in a function or a place of its own for the verifier
//! (see `conntrack::pending` and `forward::tunnel`). The entry point looks
//! the slot up once and hands the pointer to every step: a per-CPU map
//! lookup costs 3-4 ns here (the key through the stack, the bounds check,
//! the CPU's offset), paid once per packet instead of once per step and
//! per counter. Steps not handed the pointer (the connection table's
//! queueing of a new flow's insert, `conntrack::pending::queue`; counters
//! bumped deep in a path, `stats::count`) look it up again.

use lb_common::stats::{Counter, CpuState, COUNTER_SLOTS};

use crate::{conntrack::PendingFlow, forward::tunnel::Job, maps::PACKET_STATE};

/// This CPU's slot of `PACKET_STATE`, as the data plane lays it out in
/// `lb_common::stats::CpuState`: the counters where lbd reads them, the
/// rest in its scratch words.
#[repr(C)]
pub struct PacketState {
    /// Verdict and event counts, `Counter` as index (`CpuState::counters`,
    /// spare slots included).
    pub counters: [u64; COUNTER_SLOTS as usize],
    /// A new flow's insert, queued by the connection table.
    pub pending: PendingFlow,
    /// A tunnelled VIP's packet to wrap, left by `forward::tunnel`.
    pub job: Job,
}

// The data plane's layout fits lbd's: the counters first, the rest inside
// the scratch words, no stricter alignment than the slot's.
const _: () = {
    use core::mem::{align_of, size_of};
    assert!(size_of::<PacketState>() <= size_of::<CpuState>());
    assert!(align_of::<PacketState>() <= align_of::<CpuState>());
};

/// This CPU's packet state (None never happens: the map has one entry,
/// but the verifier wants the check).
#[inline(always)]
pub fn this_cpu() -> Option<*mut PacketState> {
    PACKET_STATE
        .get_ptr_mut(0)
        .map(|slot| slot.cast::<PacketState>())
}

/// Counts `counter` in `state` (this CPU's).
#[inline(always)]
pub fn count(state: *mut PacketState, counter: Counter) {
    // SAFETY: this CPU's slot; no other writer on this CPU. `Counter`'s
    // values are its indexes, all below `COUNTER_SLOTS`; the bound is
    // checked anyway for the verifier, whose view of a variable counter
    // (a verdict) is a plain u32.
    unsafe {
        if let Some(count) = (*state).counters.get_mut(counter as usize) {
            *count += 1;
        }
    }
}
