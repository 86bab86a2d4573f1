//! Half-open TCP flows, apart from the connection table: a client's SYN
//! (without ACK) of a flow neither table holds is remembered here
//! (`HALF_OPEN`, buckets of the connection table's layout, one bucket per
//! flow), and the flow enters the connection table only when a later
//! packet of it (the client's ACK that completes the handshake) finds it
//! here, with the backend its SYN went to. The SYNs held here can fill
//! only this table: they never evict an established flow. A half-open
//! flow evicted before its ACK costs nothing: the ACK takes Maglev's
//! pick, the same backend unless the backend set changed in that instant.
//!
//! The kernel-map design holds every SYN here; the bucket table only
//! those its buckets have no free way for, and every SYN in SYN-flood
//! mode (`buckets::decide`). Counted: inserts
//! (`ConntrackHalfOpenNew`), promotions, and inserts that took the place of
//! a flow still in time (`ConntrackHalfOpenEvicted`) or of one past the
//! half-open timeout (`ConntrackHalfOpenExpired`, `HALF_OPEN_IDLE_TICKS`).

use lb_common::{
    consts::HALF_OPEN_BUCKETS,
    flow_table::{
        self, bucket_index, rank_word, ticks, FlowBucket, HalfOpenPlaced, CLASS_HALF_OPEN,
    },
    stats::Counter,
    Backend, FlowEntry, FlowKey,
};

use super::{
    lapsed_at,
    pending::{self, PendingFlow},
    pinned_backend,
};
use crate::{maps::HALF_OPEN, select, state::PacketState, stats};

/// Buckets in `HALF_OPEN` minus one (a power of two minus one); set by
/// lbd at load time from the table's size (`half_open_size`). The
/// object's own size until then.
#[unsafe(no_mangle)]
static HALF_OPEN_BUCKET_MASK: u32 = HALF_OPEN_BUCKETS - 1;

/// `HALF_OPEN_BUCKET_MASK`.
#[inline(always)]
fn mask() -> u32 {
    // SAFETY: a read of a global (volatile: the loader's value decides).
    unsafe { core::ptr::read_volatile(&HALF_OPEN_BUCKET_MASK) }
}

/// The half-open bucket of a flow with hash `hash` (the map lookup
/// bounds the index: the verifier needs no more).
#[inline(always)]
fn bucket_of(hash: u32) -> Option<*mut FlowBucket> {
    HALF_OPEN.get_ptr_mut(bucket_index(hash, mask()))
}

/// Starts loading the header line of the flow's half-open bucket (a SYN
/// looks it up and then inserts into it; see `flow_table::warm`).
#[inline(always)]
pub(super) fn warm(hash: u32) {
    if let Some(bucket) = bucket_of(hash) {
        // SAFETY: a live element of the table.
        unsafe { flow_table::warm(bucket) };
    }
}

/// A half-open flow's backend (still alive, the same generation as when
/// its SYN was held).
pub(super) struct Known {
    /// The backend's id.
    pub(super) backend_id: u32,
    /// The backend.
    pub(super) backend: &'static Backend,
}

/// `known`: read only (an ICMP error about the flow).
pub(super) const PEEK: u32 = 0;
/// `known`: a retransmitted SYN; an entry whose backend is gone is taken
/// out (counted as a rehash: the SYN is hashed again and held anew).
pub(super) const LOOK: u32 = 1;
/// `lookup`: the entry is taken out (counted as a promotion), once the
/// flow is in the connection table (`release`): a packet of the flow on
/// another CPU meanwhile finds it in one table or the other.
const TAKE: u32 = 2;
/// `known`: a SYN, as `LOOK`, but an entry past the half-open timeout is
/// taken out too (counted as a rehash): a SYN that late opens a new
/// connection on the tuple, which takes Maglev's pick of now, not the
/// backend an abandoned handshake got.
pub(super) const SYN: u32 = 3;
/// The bits of `lookup`'s `how` that name the mode (the rest: a `SYN`'s
/// time in rank ticks).
const MODE: u32 = 3;

/// The half-open flow `key` (hash `hash`), if the table holds it and its
/// backend can still take it; `how` is `PEEK`, `LOOK` or `SYN` (`release`
/// takes it out), `now` the packet's time (`SYN` only reads it).
#[inline(always)]
pub(super) fn known(key: &FlowKey, hash: u32, (how, now): (u32, u64)) -> Option<Known> {
    // One argument for both (the time as rank ticks above the mode's two
    // bits): a value fewer kept across `lookup`'s calls keeps its frame
    // within what the deepest call chain (`peek`'s) leaves it.
    let how = if how == SYN {
        how | (ticks(now) << 2)
    } else {
        how
    };
    let found = lookup(key, hash, how);
    if found >> 32 == 0 {
        return None;
    }
    let backend_id = found as u32;
    let backend = select::live_backend(backend_id)?;
    Some(Known {
        backend_id,
        backend,
    })
}

/// `known`'s lookup, a function of its own (out of the packet path's
/// frame, whose stack it would otherwise grow): the flow's backend id
/// with bit 32 set if the flow is there with a live backend, else 0 (one
/// register: no buffer in the caller's frame).
#[inline(never)]
fn lookup(key: &FlowKey, hash: u32, how: u32) -> u64 {
    let Some(bucket) = bucket_of(hash) else {
        return 0;
    };
    // SAFETY: a live element of the table.
    let Some(seen) = (unsafe { flow_table::find(bucket, key, hash) }) else {
        return 0;
    };
    let over = how & MODE == SYN && lapsed_at(seen.tag, how >> 2);
    let alive = !over && pinned_backend(&seen.entry).is_some();
    // SAFETY: as above. Of two CPUs taking the same flow, one counts it;
    // both send their packet to its backend.
    if (how == TAKE || (how != PEEK && !alive)) && unsafe { flow_table::release(bucket, &seen) } {
        if alive {
            stats::count(Counter::ConntrackHalfOpenPromoted);
        } else {
            stats::count(Counter::ConntrackRehash);
        }
    }
    if !alive {
        return 0;
    }
    (1 << 32) | u64::from(seen.entry.backend_id)
}

/// Takes the half-open entry of flow `key` (hash `hash`) out once the
/// flow is in the connection table: counted as a promotion by the CPU
/// that takes it, nothing by one that finds it gone.
#[inline(always)]
pub(super) fn release(key: &FlowKey, hash: u32) {
    let _ = lookup(key, hash, TAKE);
}

/// `release` of the flow a queued insert just put into the bucket table
/// (`pending::settle`).
#[inline(always)]
pub(super) fn release_promoted(pending: *const PendingFlow) {
    // SAFETY: this CPU's pending slot.
    let pending = unsafe { &*pending };
    release(&pending.key, pending.entry.hash);
}

/// Queues the insert of the new half-open flow `key` with `entry` (seen at
/// `now`) in `state` (this CPU's) for the entry point to run after the
/// packet path (`pending::settle`).
#[inline(always)]
pub(super) fn queue(
    state: *mut PacketState,
    vip_id: u32,
    key: &FlowKey,
    entry: &FlowEntry,
    now: u64,
) {
    let rank = rank_word(now, CLASS_HALF_OPEN);
    let index = bucket_index(entry.hash, mask());
    let placed = (index, index, entry.hash);
    pending::queue(
        state,
        pending::INTO_HALF_OPEN,
        vip_id,
        (key, entry),
        rank,
        placed,
    );
}

/// Runs a queued half-open insert (`pending::settle`: a SYN queued for
/// this table, or one the bucket table had no room for; the bucket is
/// the flow's hash's, `entry.hash`): a function of its own called from
/// one place, so the verifier checks it once. The packet
/// path has just missed the flow in this table. Returns 1 if the flow was
/// inserted, else 0 (its way changed hands meanwhile: its ACK then takes
/// Maglev's pick).
#[inline(never)]
pub(super) fn insert_pending(pending: *mut PendingFlow) -> u32 {
    // SAFETY: this CPU's slot, filled by `queue`.
    let pending = unsafe { &*pending };
    let Some(bucket) = HALF_OPEN.get_ptr_mut(bucket_index(pending.entry.hash, mask())) else {
        return 0;
    };
    // SAFETY: a live element of the table; key and entry are in this
    // CPU's slot.
    let placed =
        unsafe { flow_table::insert_half_open(bucket, &pending.key, &pending.entry, pending.rank) };
    let displaced = match placed {
        HalfOpenPlaced::Contended => return 0,
        HalfOpenPlaced::Inserted => None,
        HalfOpenPlaced::Expired => Some(Counter::ConntrackHalfOpenExpired),
        HalfOpenPlaced::Evicted => Some(Counter::ConntrackHalfOpenEvicted),
    };
    stats::count(Counter::ConntrackHalfOpenNew);
    if let Some(counter) = displaced {
        stats::count(counter);
    }
    1
}
