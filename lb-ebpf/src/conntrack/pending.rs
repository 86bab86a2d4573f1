//! Inserts queued by the packet path and run by the entry point after it
//! (`settle`): a new flow's insert into the bucket table (`buckets`), a
//! SYN's there or (no room) into the half-open table, or a new half-open
//! flow's into the half-open table (`half_open`). The
//! inserts' code then sits at one place of the program instead of one per
//! parser path, and the BPF verifier checks it once instead of once per
//! path.

use lb_common::{stats::Counter, FlowEntry, FlowKey};

use super::{buckets, design, half_open, DESIGN_BUCKETS};
use crate::{forward::Outcome, state::PacketState, stats};

/// `PendingFlow::armed`: nothing queued.
const IDLE: u32 = 0;
/// `PendingFlow::armed`: an insert into the bucket table (`first` and
/// `second` are the flow's buckets there).
pub(super) const INTO_BUCKETS: u32 = 1;
/// `PendingFlow::armed`: an insert into the half-open table (`first` is
/// the flow's bucket there).
pub(super) const INTO_HALF_OPEN: u32 = 2;
/// `PendingFlow::armed`: an insert into the bucket table of a flow the
/// half-open table holds (its ACK came), whose half-open entry is taken
/// out once the insert is done: never a moment in which neither table
/// holds the flow, for a packet of it on another CPU to be taken for a
/// new flow.
pub(super) const PROMOTE_INTO_BUCKETS: u32 = 3;
/// `PendingFlow::armed`: a TCP SYN's insert into the bucket table with
/// the half-open class (`first` and `second` as for `INTO_BUCKETS`); with
/// no way it may take there, into the half-open table instead.
pub(super) const SYN_INTO_BUCKETS: u32 = 4;

/// A queued insert, in this CPU's packet state (`state`).
#[repr(C)]
pub struct PendingFlow {
    /// The flow.
    pub(super) key: FlowKey,
    /// Its entry (`hash` is the flow's).
    pub(super) entry: FlowEntry,
    /// The packet path's outcome while the insert runs (kept in the map,
    /// out of the verifier's sight, so every path reaches the insert in
    /// the same state).
    outcome: u64,
    /// Its first bucket (in the table `armed` names).
    pub(super) first: u32,
    /// Its second bucket (the bucket table only).
    pub(super) second: u32,
    /// Its rank word.
    pub(super) rank: u32,
    /// The VIP's id (for the insert-failed event).
    pub(super) vip_id: u32,
    /// Which insert is queued (`INTO_*`), `IDLE` if none.
    armed: u32,
    /// Its `hash::table_hash` (the bucket table only: its fingerprint
    /// there; `entry.hash` is its `flow_hash`).
    pub(super) place: u32,
}

/// Queues the insert of `key` with `entry` into the table `into`
/// (`INTO_*`) at `placed` (its first and second buckets there and its
/// `table_hash`) with rank word `rank`, in `state` (this CPU's).
#[inline(always)]
pub(super) fn queue(
    state: *mut PacketState,
    into: u32,
    vip_id: u32,
    (key, entry): (&FlowKey, &FlowEntry),
    rank: u32,
    placed: (u32, u32, u32),
) {
    // SAFETY: this CPU's slot; nothing else runs on this CPU meanwhile.
    unsafe {
        let pending = core::ptr::addr_of_mut!((*state).pending);
        (*pending).key = *key;
        (*pending).entry = *entry;
        (*pending).first = placed.0;
        (*pending).second = placed.1;
        (*pending).place = placed.2;
        (*pending).rank = rank;
        (*pending).vip_id = vip_id;
        (*pending).armed = into;
    }
}

/// Whether the packed `outcome` forwarded the packet to its flow's
/// backend, which counted its traffic (`stats::count_traffic`).
#[inline(always)]
fn forwarded(outcome: u64) -> bool {
    Outcome::unpacked(outcome).counter == Counter::Forwarded
}

/// Whether the flow armed in `pending` is a handshake's promotion into
/// the bucket table, read from the slot (volatile: see `insert_pending`).
///
/// # Safety
/// `pending` is this CPU's slot.
#[inline(always)]
pub(super) unsafe fn is_promotion(pending: *const PendingFlow) -> bool {
    core::ptr::read_volatile(&(*pending).armed) == PROMOTE_INTO_BUCKETS
}

/// Runs the insert the packet path queued in `pending` (this CPU's), if
/// any, and returns its `outcome` (packed) unchanged. The inserts count
/// their own events.
#[inline(always)]
pub(super) fn settle(outcome: u64, pending: *mut PendingFlow) -> u64 {
    // SAFETY: this CPU's slot (volatile: the outcome goes through memory,
    // see `PendingFlow::outcome`).
    unsafe {
        let armed = core::ptr::read_volatile(&(*pending).armed);
        if armed == IDLE {
            return outcome;
        }
        core::ptr::write_volatile(&mut (*pending).outcome, outcome);
        // One call of the half-open insert for both ways there (queued
        // for it, or a SYN the bucket table had no room for): the
        // verifier walks a called function once per call site.
        let mut into_half_open = armed == INTO_HALF_OPEN;
        if !into_half_open && design() == DESIGN_BUCKETS {
            let placed = buckets::insert_pending(pending);
            if armed == PROMOTE_INTO_BUCKETS {
                // Only once the flow is in the table (inserted, or found:
                // another CPU promoted it): an insert that found every way
                // being written leaves the handshake where it is, for the
                // flow's next packet to promote (counted failed).
                if !buckets::no_room(placed) {
                    half_open::release_promoted(pending);
                }
            } else if armed == SYN_INTO_BUCKETS && buckets::no_room(placed) {
                into_half_open = true;
            } else if buckets::found_at(placed)
                && forwarded(core::ptr::read_volatile(&(*pending).outcome))
            {
                // Another CPU put the flow in the table after this
                // packet missed it (e.g. its ACK's promotion, racing the
                // request that followed the ACK): forwarded as the flow's
                // first packet, it was counted as a new flow; take that
                // back, so each flow counts once. The outcome is read
                // from the slot, not the register: the verifier knows each
                // path's outcome, and a test of the register would keep
                // the paths apart (past its 1 M instructions).
                stats::uncount_new_flow((*pending).vip_id, (*pending).entry.backend_id);
            }
        }
        if into_half_open {
            half_open::insert_pending(pending);
        }
        // Only now: `insert_pending` reads what was armed from the slot.
        core::ptr::write_volatile(&mut (*pending).armed, IDLE);
        core::ptr::read_volatile(&(*pending).outcome)
    }
}
