//! One packet's state on this CPU between the steps of its entry point:
//! the packet path (`forward::balance`) leaves here what the entry point
//! runs after it, each in a function or a place of its own for the
//! verifier (see `conntrack::pending` and `forward::tunnel`). The entry
//! point looks the slot up once and hands the pointer to every step: a
//! per-CPU map lookup costs 3-4 ns here (the key through the stack, the
//! bounds check, the CPU's offset), paid once per packet instead of once
//! per step. Only the connection table's queueing of a new flow's insert
//! (`conntrack::pending::queue`, on the new-flow path alone) looks it up
//! again, rather than take the pointer through both table designs.

use crate::{conntrack::PendingFlow, forward::tunnel::Job, maps::PACKET_STATE};

/// This CPU's slot of `PACKET_STATE`.
#[repr(C)]
pub struct PacketState {
    /// A new flow's insert, queued by the connection table.
    pub pending: PendingFlow,
    /// A tunnelled VIP's packet to wrap, left by `forward::tunnel`.
    pub job: Job,
}

/// This CPU's packet state (None never happens: the map has one entry,
/// but the verifier wants the check).
#[inline(always)]
pub fn this_cpu() -> Option<*mut PacketState> {
    PACKET_STATE.get_ptr_mut(0)
}
