//! The connection table as buckets of ways in an array map
//! (`FLOW_BUCKETS`; layout and protocol in `lb_common::flow_table`, shared
//! with lbd): a flow's hash names its bucket, a lookup reads the bucket's
//! header line and the matching way's line, an insert claims a way with a
//! compare-and-swap. No kernel lock, no free list, no allocation.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use lb_common::{
    consts::{FLOW_F_FIN, FLOW_F_RST, FLOW_TOUCH_INTERVAL_NS, IPPROTO_TCP},
    flow_table::{
        self, bucket_index, class_of, rank_class, rank_word, tag_rank, FlowBucket, Placed, Seen,
        CLASS_CLOSED, CLASS_ESTABLISHED, CLASS_HALF_OPEN, FLOW_WAYS,
    },
    hash::flow_hash,
    stats::Counter,
    FlowEntry, FlowKey, VipMeta,
};

use super::{flow_flags, insert_failed, inserted, new_entry, pinned_backend, Decision};
use crate::{
    guard::limit,
    maps::FLOW_BUCKETS,
    parse::{Packet, TCP_ACK, TCP_SYN},
    select, stats,
};

/// Buckets in `FLOW_BUCKETS` minus one (a power of two minus one); set by
/// lbd at load time from the table's size.
#[unsafe(no_mangle)]
static FLOW_BUCKET_MASK: u32 = 0;

/// The bucket of a flow with hash `hash`.
#[inline(always)]
fn bucket_of(hash: u32) -> Option<*mut FlowBucket> {
    // SAFETY: a read of a global (volatile: the loader's value decides).
    let mask = unsafe { core::ptr::read_volatile(&FLOW_BUCKET_MASK) };
    FLOW_BUCKETS.get_ptr_mut(bucket_index(hash, mask))
}

/// See `conntrack::decide`. Everything but the table's claim protocol is
/// inlined here; the claim (`claim`) is a function of its own with no
/// helper calls, so its registers never spill into this frame.
#[inline(always)]
pub(super) fn decide(vip: &VipMeta, packet: &Packet, refused: &mut Counter) -> Option<Decision> {
    let key = &packet.key;
    let hash = flow_hash(key);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let bucket = bucket_of(hash);
    // A SYN without ACK opens a flow: straight to the insert, whose scan
    // finds a retransmitted SYN's entry anyway; unless the VIP limits new
    // flows, which only a flow the table does not hold is charged for.
    let opening = packet.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let shortcut = opening && !limit::active(vip.id);
    if let (false, Some(bucket)) = (shortcut, bucket) {
        // SAFETY: `bucket` is a live element of the table.
        if let Some(seen) = unsafe { flow_table::find(bucket, key, hash) } {
            return tracked(vip, packet, bucket, &seen, now);
        }
    }
    let (backend_id, backend) = select::pick_with(vip, hash)?;
    if !limit::admit(vip.id, key) {
        *refused = Counter::DropRateLimited;
        return None;
    }
    let Some(bucket) = bucket else {
        return Some(insert_failed(vip, packet, backend_id, backend, hash));
    };
    let entry = new_entry(backend_id, backend, packet, hash, now);
    let established = key.proto != IPPROTO_TCP || !opening;
    let rank = rank_word(now, class_of(entry.flags, established));
    match claim(bucket, key, hash, &entry, rank) {
        CLAIM_INSERTED => Some(inserted(backend_id, backend, now, hash)),
        CLAIM_CONTENDED => Some(insert_failed(vip, packet, backend_id, backend, hash)),
        // Tracked after all (a retransmitted SYN, or another CPU's
        // insert): through its entry.
        // SAFETY: as above; `way` < FLOW_WAYS.
        way => match unsafe { flow_table::seen_at(bucket, way as usize) } {
            Some(seen) => tracked(vip, packet, bucket, &seen, now),
            // Gone again in between: this packet goes untracked.
            None => Some(insert_failed(vip, packet, backend_id, backend, hash)),
        },
    }
}

/// `claim`: the flow was inserted.
const CLAIM_INSERTED: u32 = 0x100;
/// `claim`: not inserted (contended).
const CLAIM_CONTENDED: u32 = 0x200;

/// `flow_table::find_or_insert` as a function of its own: the way the
/// flow was found in (below `FLOW_WAYS`), `CLAIM_INSERTED` or
/// `CLAIM_CONTENDED`, in one register.
#[inline(always)]
fn claim(bucket: *mut FlowBucket, key: &FlowKey, hash: u32, entry: &FlowEntry, rank: u32) -> u32 {
    // SAFETY: `bucket` is a live element of the table.
    unsafe { lb_flow_claim(bucket, key, hash, entry, rank) }
}

/// `claim`'s body: a global BPF function, verified once on its own (its
/// pointer arguments checked as memory of their types' sizes), not once
/// per parser path that reaches it.
///
/// # Safety
/// `bucket`, `key` and `entry` must be valid (or null: refused).
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn lb_flow_claim(
    bucket: *mut FlowBucket,
    key: *const FlowKey,
    hash: u32,
    entry: *const FlowEntry,
    rank: u32,
) -> u32 {
    if bucket.is_null() || key.is_null() || entry.is_null() {
        return CLAIM_CONTENDED;
    }
    // SAFETY: non-null, and valid per the contract.
    let (key, entry) = unsafe { (&*key, &*entry) };
    // SAFETY: as above.
    match unsafe { flow_table::find_or_insert(bucket, key, hash, entry, rank) } {
        Placed::Found(way) => (way & (FLOW_WAYS - 1)) as u32,
        Placed::Inserted(_) => CLAIM_INSERTED,
        Placed::Contended => CLAIM_CONTENDED,
    }
}

/// A packet of a tracked flow (as `seen` in its bucket): its pinned
/// backend if alive (refreshing the entry), else a re-pin.
#[inline(always)]
fn tracked(
    vip: &VipMeta,
    packet: &Packet,
    bucket: *mut FlowBucket,
    seen: &Seen,
    now: u64,
) -> Option<Decision> {
    let Some(backend) = pinned_backend(&seen.entry) else {
        return repin(vip, packet, seen, now);
    };
    stats::count(Counter::ConntrackHit);
    // SAFETY: `bucket` is a live element of the table.
    unsafe { touch(bucket, seen, packet.tcp_flags, now) };
    Some(Decision {
        backend_id: seen.entry.backend_id,
        backend,
        new_flow: false,
        now,
        hash: seen.entry.hash,
    })
}

/// A tracked flow whose backend is gone: hash again and re-pin in place.
#[inline(never)]
fn repin(vip: &VipMeta, packet: &Packet, seen: &Seen, now: u64) -> Option<Decision> {
    let entry = &seen.entry;
    let hash = flow_hash(&packet.key);
    let (backend_id, backend) = select::pick_with(vip, hash)?;
    stats::count(Counter::ConntrackRehash);
    let repinned = FlowEntry {
        backend_id,
        backend_generation: backend.generation,
        last_seen_ns: now,
        flags: entry.flags | flow_flags(packet.tcp_flags),
        hash,
    };
    let rank = rank_word(now, next_class(seen, &repinned, packet.tcp_flags));
    if let Some(bucket) = bucket_of(hash) {
        // SAFETY: a live element of the table. If the way changed
        // meanwhile, this packet still goes to the new pick; the next one
        // looks again.
        let _ = unsafe { flow_table::rewrite(bucket, seen, &repinned, rank) };
    }
    Some(Decision {
        backend_id,
        backend,
        new_flow: false,
        now,
        hash,
    })
}

/// The eviction class after this packet: closed after FIN or RST,
/// established at the client's first ACK, else as it was.
#[inline(always)]
fn next_class(seen: &Seen, entry: &FlowEntry, tcp_flags: u8) -> u32 {
    let class = rank_class(tag_rank(seen.tag));
    if entry.flags & (FLOW_F_FIN | FLOW_F_RST) != 0 {
        CLASS_CLOSED
    } else if class == CLASS_HALF_OPEN && tcp_flags & (TCP_SYN | TCP_ACK) == TCP_ACK {
        CLASS_ESTABLISHED
    } else {
        class
    }
}

/// Refreshes a tracked flow's age (at most every
/// `FLOW_TOUCH_INTERVAL_NS`), its FIN/RST marks and its eviction class;
/// writes only what changed, so most packets of a flow write nothing. The
/// rank is set by a CAS from the tag `find` saw, so it never lands on a
/// way another CPU has taken since.
///
/// # Safety
/// `bucket` must be a live element of the table.
#[inline(always)]
unsafe fn touch(bucket: *mut FlowBucket, seen: &Seen, tcp_flags: u8, now: u64) {
    let entry = &seen.entry;
    let marks = flow_flags(tcp_flags);
    let stale = now.wrapping_sub(entry.last_seen_ns) > FLOW_TOUCH_INTERVAL_NS;
    let marked = FlowEntry {
        flags: entry.flags | marks,
        ..*entry
    };
    let class = next_class(seen, &marked, tcp_flags);
    if !stale && marks & !entry.flags == 0 && class == rank_class(tag_rank(seen.tag)) {
        return;
    }
    // SAFETY: per the contract.
    unsafe {
        if flow_table::rerank(bucket, seen, rank_word(now, class)) {
            let slot = core::ptr::addr_of_mut!((*bucket).slots[seen.way & (FLOW_WAYS - 1)].entry);
            (*slot).last_seen_ns = now;
            (*slot).flags = marked.flags;
        }
    }
}

/// See `conntrack::peek`.
#[inline(always)]
pub(super) fn peek(vip: &VipMeta, key: &FlowKey) -> Option<Decision> {
    let hash = flow_hash(key);
    if let Some(bucket) = bucket_of(hash) {
        // SAFETY: `bucket` is a live element of the table.
        if let Some(Seen { entry, .. }) = unsafe { flow_table::find(bucket, key, hash) } {
            if let Some(backend) = pinned_backend(&entry) {
                return Some(Decision {
                    backend_id: entry.backend_id,
                    backend,
                    new_flow: false,
                    now: 0,
                    hash: entry.hash,
                });
            }
        }
    }
    let (backend_id, backend) = select::pick_with(vip, hash)?;
    Some(Decision {
        backend_id,
        backend,
        new_flow: false,
        now: 0,
        hash,
    })
}
