//! The connection table's layout and its lock-free protocol, one source for
//! both sides: the data plane runs it on the `FLOW_BUCKETS` array map, lbd
//! on the same memory mapped into its address space (`BPF_F_MMAPABLE`), so
//! a replica lbd installs and a flow the program inserts can never collide
//! or duplicate.
//!
//! Why not the kernel's LRU hash: a new flow there takes the common free
//! list, a bucket lock and a chain walk, over 100 bytes of element per flow
//! spread over several cache lines. Here a flow hashes to two candidate
//! buckets of `FLOW_WAYS` ways: a header cache line holds each way's tag
//! (state, version, fingerprint and eviction rank: last-seen tick and TCP
//! class), and each way's key and value fill one cache line of their own.
//! A lookup reads its first bucket's header and, on a fingerprint match,
//! the way's line, and the second bucket only on a miss; an insert reads
//! both headers, claims a way with one compare-and-swap on its tag and
//! writes one line. A new flow stays in its first bucket unless that is
//! nearly full and the second emptier (two-choice placement), and the
//! table has `FLOW_HEADROOM` slots per configured flow, so no bucket fills
//! while the table holds its configured number of flows. When both
//! buckets are full the victim is chosen from the first bucket's header
//! alone: a closed or expired flow, else a half-open one, else the least
//! recently seen (an LRU approximated within its 8 ways).
//!
//! Concurrency: a way's tag is its lock and its version. Writers claim it
//! (`EMPTY`/`VALID` → `BUSY`, version + 1) with a CAS, write the slot and
//! publish it (`BUSY` → `VALID`) with another; readers read the tag, the
//! slot, then the tag again (a seqlock), so a slot rewritten under them is
//! never taken for theirs. A rank refresh is a CAS from the tag the reader
//! saw, so it never lands on a way that changed hands. Two CPUs inserting
//! the same flow at once may claim two ways (in one bucket or in both);
//! each re-reads both buckets after publishing (the CAS is a full
//! barrier), and the copy at the higher position is taken out by whichever
//! CPU sees both, so one entry survives. Flows never move between buckets.
//!
//! Tags are 64-bit: the BPF target's `cmpxchg` (at the ISA level lbd
//! builds for) has no 32-bit form.

use crate::{
    consts::{FLOW_F_FIN, FLOW_F_RST},
    FlowEntry, FlowKey,
};

/// Ways per bucket: the header's 8 tags fill one cache line.
pub const FLOW_WAYS: usize = 8;

/// Runs `$body` once for each way, with `$way` bound to its number,
/// written out way by way rather than as a loop (a macro, not a function
/// taking a closure: the compiler may call a closure instead of inlining
/// it, and every call is a frame and a verification of its own): the BPF
/// verifier (from Linux 6.17) compares the states of a loop exactly until
/// the loop is done, so a loop whose ways branch keeps every path apart to
/// its end, while straight-line code lets the paths meet after each way.
macro_rules! each_way {
    ($way:ident => $body:block) => {{
        {
            let $way: usize = 0;
            $body
        }
        {
            let $way: usize = 1;
            $body
        }
        {
            let $way: usize = 2;
            $body
        }
        {
            let $way: usize = 3;
            $body
        }
        {
            let $way: usize = 4;
            $body
        }
        {
            let $way: usize = 5;
            $body
        }
        {
            let $way: usize = 6;
            $body
        }
        {
            let $way: usize = 7;
            $body
        }
    }};
}

/// Tag state: the way holds nothing.
pub const TAG_EMPTY: u32 = 0;
/// Tag state: a writer owns the way (its slot is being written).
pub const TAG_BUSY: u32 = 1;
/// Tag state: the way holds the flow its slot names.
pub const TAG_VALID: u32 = 2;
/// Tag state: an exclusive insert (`insert_new`) has written the way's
/// key and value and not yet settled whether its copy stands: lookups do
/// not see it, another exclusive insert of the same key does.
pub const TAG_PENDING: u32 = 3;
const STATE_MASK: u64 = 3;
const VERSION_SHIFT: u32 = 2;
const VERSION_MASK: u64 = 0x3fff;
const FP_SHIFT: u32 = 16;
const FP_MASK: u64 = 0xffff;
const RANK_SHIFT: u32 = 32;

/// Flow class in a rank word: FIN or RST seen.
pub const CLASS_CLOSED: u32 = 0;
/// Flow class: a TCP SYN seen, no ACK from the client yet.
pub const CLASS_HALF_OPEN: u32 = 1;
/// Flow class: an established TCP flow, or UDP.
pub const CLASS_ESTABLISHED: u32 = 2;
const CLASS_MASK: u32 = 3;
/// Rank ticks are `ns >> TICK_SHIFT` (16.8 ms), kept in 30 bits (208 days
/// before they wrap; ages are taken modulo that).
pub const TICK_SHIFT: u32 = 24;
const TICK_MASK: u32 = 0x3fff_ffff;
/// A half-open flow idle this long (ticks, ~10 s) is expired.
pub const HALF_OPEN_IDLE_TICKS: u32 = (10_000_000_000u64 >> TICK_SHIFT) as u32;
/// An established flow idle this long (ticks, ~15 min, IPVS's TCP
/// established timeout) is expired: evicted before any live flow.
pub const ESTABLISHED_IDLE_TICKS: u32 = (900_000_000_000u64 >> TICK_SHIFT) as u32;

/// A new flow stays in its first bucket while one of that bucket's first
/// this many ways is empty: lookups then find nearly every flow in the
/// first bucket they read (about 5 % of the flows of a table holding
/// `conntrack_size` live flows go to their second bucket), while the
/// second choice still takes the flows of the buckets that fill.
pub const PREFER_FIRST_BELOW: u32 = 6;

/// Slots per configured flow: the table is twice `conntrack_size`, so a
/// table holding that many live flows (half its slots) never has to evict
/// one of them (two-choice placement leaves no bucket full at half load;
/// one bucket per flow would lose about 1 % there, 14 % at full load).
pub const FLOW_HEADROOM: u32 = 2;

/// A value a table of this layout holds beside each key: the connection
/// table's `FlowEntry`, the NAT flow table's `NatEntry`. The protocol is
/// one piece of code for every table; only how a value is read out of
/// shared memory differs.
pub trait SlotValue: Copy {
    /// A copy of the value at `at`, read while writers may change it (the
    /// caller checks the way's tag around it). Field by field where the
    /// data plane reads it: a volatile copy of a whole struct would go
    /// through the BPF program's 512-byte stack.
    ///
    /// # Safety
    /// `at` must point to a live value in a bucket of the table.
    unsafe fn read_shared(at: *const Self) -> Self;
}

impl SlotValue for FlowEntry {
    #[inline(always)]
    unsafe fn read_shared(at: *const Self) -> Self {
        // SAFETY: per the caller's contract.
        unsafe {
            FlowEntry {
                backend_id: core::ptr::read_volatile(core::ptr::addr_of!((*at).backend_id)),
                backend_generation: core::ptr::read_volatile(core::ptr::addr_of!(
                    (*at).backend_generation
                )),
                last_seen_ns: core::ptr::read_volatile(core::ptr::addr_of!((*at).last_seen_ns)),
                flags: core::ptr::read_volatile(core::ptr::addr_of!((*at).flags)),
                hash: core::ptr::read_volatile(core::ptr::addr_of!((*at).hash)),
            }
        }
    }
}

/// One way's key and value, on cache lines of their own: one line for
/// the connection table's (`FlowSlot`), two for the NAT table's.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot<V> {
    /// The flow.
    pub key: FlowKey,
    /// What the table keeps about it.
    pub entry: V,
}

/// One bucket of a table: the header line (tags), then the ways.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default)]
pub struct Bucket<V> {
    /// Per way: rank word (high 32 bits), fingerprint (16 bits), version
    /// (14 bits, the low 3 of them the way's number), state (2 bits).
    pub tags: [u64; FLOW_WAYS],
    /// The ways' keys and values.
    pub slots: [Slot<V>; FLOW_WAYS],
}

/// A way of the connection table: a flow and its backend (one line).
pub type FlowSlot = Slot<FlowEntry>;

/// A bucket of the connection table (and of the half-open table).
pub type FlowBucket = Bucket<FlowEntry>;

/// Bytes of table memory per slot (way) of the table.
pub const FLOW_BYTES_PER_ENTRY: usize = core::mem::size_of::<FlowBucket>() / FLOW_WAYS;

/// Bytes of table memory per configured flow (`conntrack_size`): the
/// slots of `FLOW_HEADROOM`, before rounding up to a power of two.
pub const FLOW_BYTES_PER_CONFIGURED_FLOW: usize = FLOW_BYTES_PER_ENTRY * FLOW_HEADROOM as usize;

/// Buckets for a table that keeps `entries` live flows: `FLOW_HEADROOM`
/// slots per flow, rounded up to a power of two of buckets (the bucket
/// index is a mask of the hash), at least one.
pub const fn buckets_for(entries: u32) -> u32 {
    let buckets = entries
        .saturating_mul(FLOW_HEADROOM)
        .div_ceil(FLOW_WAYS as u32);
    if buckets <= 1 {
        1
    } else {
        buckets.next_power_of_two()
    }
}

/// Buckets for a half-open table of `flows` flows (`half_open_size`): one
/// bucket per flow and no headroom (a half-open flow evicted costs
/// nothing), `FLOW_WAYS` flows a bucket, rounded up to a power of two of
/// buckets, at least one.
pub const fn half_open_buckets_for(flows: u32) -> u32 {
    let buckets = flows.div_ceil(FLOW_WAYS as u32);
    if buckets <= 1 {
        1
    } else {
        buckets.next_power_of_two()
    }
}

/// The first bucket of a flow with hash `hash` in a table of `mask + 1`
/// buckets.
#[inline(always)]
pub const fn bucket_index(hash: u32, mask: u32) -> u32 {
    hash & mask
}

/// The second bucket of a flow: another mix of the whole hash, so it is
/// independent of the first bucket and of the fingerprint (a second
/// bucket computed from the fingerprint would gather flows of one
/// fingerprint). May equal the first (always, in a one-bucket table).
#[inline(always)]
pub const fn second_bucket_index(hash: u32, mask: u32) -> u32 {
    // lowbias32 (Chris Wellons' integer hash), seeded.
    let mut h = hash ^ 0x9e37_79b9;
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^= h >> 16;
    h & mask
}

/// The fingerprint a flow's tag carries (never compared alone: a match is
/// confirmed on the key).
#[inline(always)]
pub const fn fingerprint(hash: u32) -> u32 {
    hash >> 16
}

/// State of a tag (`TAG_*`).
#[inline(always)]
pub const fn tag_state(tag: u64) -> u32 {
    (tag & STATE_MASK) as u32
}

/// Fingerprint of a tag.
#[inline(always)]
pub const fn tag_fingerprint(tag: u64) -> u32 {
    ((tag >> FP_SHIFT) & FP_MASK) as u32
}

/// Rank word of a tag (see `rank_word`).
#[inline(always)]
pub const fn tag_rank(tag: u64) -> u32 {
    (tag >> RANK_SHIFT) as u32
}

/// Low bits of a tag's version: the way the tag belongs to, set when the
/// way is claimed. A flow found by a scan is then addressed through a
/// number the BPF verifier reads from memory (unknown to it) rather than
/// the scan's loop counter, so the paths that found it in different ways
/// are verified as one.
const WAY_IN_VERSION: u64 = FLOW_WAYS as u64 - 1;

/// The way a claimed tag belongs to (see `WAY_IN_VERSION`).
#[inline(always)]
pub const fn tag_way(tag: u64) -> usize {
    ((tag >> VERSION_SHIFT) & WAY_IN_VERSION) as usize
}

/// `tag` claimed for way `way`.
#[inline(always)]
const fn with_way(tag: u64, way: usize) -> u64 {
    (tag & !(WAY_IN_VERSION << VERSION_SHIFT)) | (((way as u64) & WAY_IN_VERSION) << VERSION_SHIFT)
}

/// `tag` for a new owner: next version (its way bits kept), fingerprint
/// `fp`, `state`, `rank`.
#[inline(always)]
const fn tag_with(tag: u64, fp: u32, state: u32, rank: u32) -> u64 {
    let old = (tag >> VERSION_SHIFT) & VERSION_MASK;
    let version =
        ((old + WAY_IN_VERSION + 1) & VERSION_MASK & !WAY_IN_VERSION) | (old & WAY_IN_VERSION);
    ((rank as u64) << RANK_SHIFT)
        | (((fp as u64) & FP_MASK) << FP_SHIFT)
        | (version << VERSION_SHIFT)
        | state as u64
}

/// `tag` in another state, version and all else kept.
#[inline(always)]
const fn retagged(tag: u64, state: u32) -> u64 {
    (tag & !STATE_MASK) | state as u64
}

/// `tag` with another rank word.
#[inline(always)]
const fn reranked(tag: u64, rank: u32) -> u64 {
    (tag & 0xffff_ffff) | ((rank as u64) << RANK_SHIFT)
}

/// Rank ticks of a `CLOCK_MONOTONIC` time in ns (what
/// `bpf_ktime_get_coarse_ns` returns).
#[inline(always)]
pub const fn ticks(now_ns: u64) -> u32 {
    ((now_ns >> TICK_SHIFT) as u32) & TICK_MASK
}

/// A rank word: last-seen tick (high 30 bits) and class (low 2 bits).
#[inline(always)]
pub const fn rank_word(now_ns: u64, class: u32) -> u32 {
    (ticks(now_ns) << 2) | (class & CLASS_MASK)
}

/// Class of a rank word.
#[inline(always)]
pub const fn rank_class(rank: u32) -> u32 {
    rank & CLASS_MASK
}

/// The class a flow's `FlowEntry::flags` and its latest TCP flags give.
#[inline(always)]
pub const fn class_of(entry_flags: u32, established: bool) -> u32 {
    if entry_flags & (FLOW_F_FIN | FLOW_F_RST) != 0 {
        CLASS_CLOSED
    } else if established {
        CLASS_ESTABLISHED
    } else {
        CLASS_HALF_OPEN
    }
}

/// Eviction order of a way by its tag (lower goes first): empty, then
/// closed or expired, then half-open, then live; within each, the least
/// recently seen first. `u32::MAX`: never (a writer owns it).
#[inline(always)]
pub const fn victim_order(tag: u64, now_ticks: u32) -> u32 {
    match tag_state(tag) {
        TAG_EMPTY => 0,
        TAG_VALID => {
            let rank = tag_rank(tag);
            let age = now_ticks.wrapping_sub(rank >> 2) & TICK_MASK;
            let tier = match rank & CLASS_MASK {
                CLASS_CLOSED => 1,
                CLASS_HALF_OPEN if age > HALF_OPEN_IDLE_TICKS => 1,
                CLASS_HALF_OPEN => 2,
                _ if age > ESTABLISHED_IDLE_TICKS => 1,
                _ => 3,
            };
            // Within a tier: older first. Ages beyond 2^28 ticks (52 days)
            // compare equal.
            let age = if age > 0x0fff_ffff { 0x0fff_ffff } else { age };
            (tier << 28) | (0x0fff_ffff - age)
        }
        _ => u32::MAX,
    }
}

/// Where a flow's lookup or insert landed. Positions count the first
/// bucket's ways (0 to `FLOW_WAYS - 1`), then the second's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    /// The flow was in the table, at this position.
    Found(usize),
    /// The flow was inserted at this position.
    Inserted(usize),
    /// Not inserted: every way is being written by another CPU, or the
    /// claim lost a race (the caller forwards the packet untracked).
    Contended,
}

/// The bucket of position `pos` (see `Placed`) of a flow whose buckets
/// are `first` and `second`.
#[inline(always)]
pub fn bucket_at<V>(first: *mut Bucket<V>, second: *mut Bucket<V>, pos: usize) -> *mut Bucket<V> {
    if pos >= FLOW_WAYS {
        second
    } else {
        first
    }
}

/// A way's tag, as a handle for loads, stores and CAS.
///
/// # Safety
/// `bucket` must point to a live, 64-byte-aligned bucket.
#[inline(always)]
unsafe fn tag_at<V>(bucket: *mut Bucket<V>, way: usize) -> Tag {
    // SAFETY: the index is masked into the bucket.
    Tag(unsafe { core::ptr::addr_of_mut!((*bucket).tags[way & (FLOW_WAYS - 1)]) })
}

/// A tag in shared memory: volatile loads and stores (kept in program
/// order with the slot's volatile reads; both sides run on the same CPUs,
/// whose stores are seen in order on x86-64 and whose JIT-ed BPF loads and
/// stores are plain moves) and a compare-and-swap that is a full barrier
/// (`lock cmpxchg`, which the kernel's JIT emits for BPF's `cmpxchg` too)
/// and keeps the slot's plain writes before it. Slots are read field by
/// field: a volatile copy of a struct would go through the BPF program's
/// 512-byte stack.
#[derive(Clone, Copy)]
struct Tag(*mut u64);

impl Tag {
    #[inline(always)]
    fn load(self) -> u64 {
        // SAFETY: `tag_at` made the pointer from a live bucket.
        unsafe { core::ptr::read_volatile(self.0) }
    }

    /// Sets the tag to `new` if it is `old`; true if it did.
    #[inline(always)]
    fn swap_if(self, old: u64, new: u64) -> bool {
        #[cfg(target_arch = "bpf")]
        {
            use core::intrinsics::{atomic_cxchg, AtomicOrdering::SeqCst};
            // SAFETY: as above; BPF's atomic cmpxchg on a map value.
            unsafe { atomic_cxchg::<u64, { SeqCst }, { SeqCst }>(self.0, old, new).1 }
        }
        #[cfg(not(target_arch = "bpf"))]
        {
            use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
            // SAFETY: as above; tags are 8-aligned.
            unsafe { AtomicU64::from_ptr(self.0) }
                .compare_exchange(old, new, SeqCst, SeqCst)
                .is_ok()
        }
    }

    /// Sets the tag to `new` if it is `old`; returns the tag it found
    /// (`old` if it set it), for callers that decide without a branch.
    #[inline(always)]
    fn swap_seen(self, old: u64, new: u64) -> u64 {
        #[cfg(target_arch = "bpf")]
        {
            use core::intrinsics::{atomic_cxchg, AtomicOrdering::SeqCst};
            // SAFETY: as `swap_if`.
            unsafe { atomic_cxchg::<u64, { SeqCst }, { SeqCst }>(self.0, old, new).0 }
        }
        #[cfg(not(target_arch = "bpf"))]
        {
            use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
            // SAFETY: as `swap_if`.
            match unsafe { AtomicU64::from_ptr(self.0) }.compare_exchange(old, new, SeqCst, SeqCst)
            {
                Ok(seen) | Err(seen) => seen,
            }
        }
    }
}

/// Whether the key in `way` equals `key` (word by word; keys are stored
/// canonical, with unused address words zero).
///
/// # Safety
/// `bucket` must point to a live bucket.
#[inline(always)]
unsafe fn key_is<V>(bucket: *const Bucket<V>, way: usize, key: &FlowKey) -> bool {
    // SAFETY: the slot is inside the bucket; FlowKey is 40 bytes of
    // integers (ten u32 words, 4-aligned on both sides).
    unsafe {
        let have = core::ptr::addr_of!((*bucket).slots[way & (FLOW_WAYS - 1)].key) as *const u32;
        let want = key as *const FlowKey as *const u32;
        // Both sides volatile: read where compared, not hoisted out of the
        // ways' loop into registers that would spill.
        let same = |i: usize| {
            core::ptr::read_volatile(have.add(i)) == core::ptr::read_volatile(want.add(i))
        };
        // Ports and protocol first (they differ most often), then the
        // words an IPv4 key uses, then the rest.
        same(8)
            && same(9)
            && same(0)
            && same(4)
            && same(1)
            && same(2)
            && same(3)
            && same(5)
            && same(6)
            && same(7)
    }
}

/// A tracked flow as `find` saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen<V = FlowEntry> {
    /// Its way in the bucket.
    pub way: usize,
    /// The way's tag when it was read (for `rerank`).
    pub tag: u64,
    /// A consistent copy of its entry.
    pub entry: V,
}

/// Finds `key` (hash `hash`) in `bucket`.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn find<V: SlotValue>(
    bucket: *mut Bucket<V>,
    key: &FlowKey,
    hash: u32,
) -> Option<Seen<V>> {
    let fp = fingerprint(hash);
    let mut way = 0;
    while way < FLOW_WAYS {
        // SAFETY: per the caller's contract.
        let tag = unsafe { tag_at(bucket, way) }.load();
        if tag_state(tag) == TAG_VALID
            && tag_fingerprint(tag) == fp
            // SAFETY: as above.
            && unsafe { key_is(bucket, way, key) }
        {
            // SAFETY: as above.
            let entry = unsafe { read_entry(bucket, way) };
            // SAFETY: as above.
            if unsafe { tag_at(bucket, way) }.load() == tag {
                return Some(Seen {
                    way: tag_way(tag),
                    tag,
                    entry,
                });
            }
        }
        way += 1;
    }
    None
}

/// The entry in `way` (no consistency check: see `find`).
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn read_entry<V: SlotValue>(bucket: *mut Bucket<V>, way: usize) -> V {
    // SAFETY: per the caller's contract; the index is masked.
    unsafe {
        V::read_shared(core::ptr::addr_of!(
            (*bucket).slots[way & (FLOW_WAYS - 1)].entry
        ))
    }
}

/// Sets the rank word of the flow `seen` found, if its way still holds it
/// unchanged; false if not (another writer got there first).
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn rerank<V>(bucket: *mut Bucket<V>, seen: &Seen<V>, rank: u32) -> bool {
    // SAFETY: per the caller's contract.
    unsafe { tag_at(bucket, seen.way) }.swap_if(seen.tag, reranked(seen.tag, rank))
}

/// What a scan of one bucket for an insert saw.
struct Scan {
    /// The way holding the flow, or `FLOW_WAYS`.
    found: usize,
    /// An empty way among the first `PREFER_FIRST_BELOW`.
    low_room: bool,
    /// An empty way anywhere.
    room: bool,
}

/// Scans `bucket` for `key` (fingerprint `fp`) and for empty ways.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
unsafe fn scan<V>(bucket: *mut Bucket<V>, key: &FlowKey, fp: u32) -> Scan {
    let mut out = Scan {
        found: FLOW_WAYS,
        low_room: false,
        room: false,
    };
    let mut way = 0;
    while way < FLOW_WAYS {
        // SAFETY: per the caller's contract.
        let tag = unsafe { tag_at(bucket, way) }.load();
        // SAFETY: as above.
        if unsafe { holds(bucket, way, key, fp, tag) } {
            out.found = tag_way(tag);
            return out;
        }
        if tag_state(tag) == TAG_EMPTY {
            out.room = true;
            if way < PREFER_FIRST_BELOW as usize {
                out.low_room = true;
            }
        }
        way += 1;
    }
    out
}

/// The lowest `victim_order` of `bucket`'s ways.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
unsafe fn best_victim<V>(bucket: *mut Bucket<V>, now_ticks: u32) -> u32 {
    let mut best = u32::MAX;
    let mut way = 0;
    while way < FLOW_WAYS {
        // SAFETY: per the caller's contract.
        let order = victim_order(unsafe { tag_at(bucket, way) }.load(), now_ticks);
        if order < best {
            best = order;
        }
        way += 1;
    }
    best
}

/// Claims the first way of `bucket` whose tag `wanted` accepts, writes
/// `key` and `entry` into it and publishes it; the way and its published
/// tag, or None if there is none or another CPU changed it first.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
unsafe fn claim_way<V: Copy>(
    bucket: *mut Bucket<V>,
    key: &FlowKey,
    entry: &V,
    fp: u32,
    rank: u32,
    wanted: impl Fn(u64) -> bool,
) -> Option<(usize, u64)> {
    let mut way = 0;
    while way < FLOW_WAYS {
        // SAFETY: per the caller's contract.
        let tag = unsafe { tag_at(bucket, way) };
        let seen = tag.load();
        if wanted(seen) {
            let claimed = with_way(tag_with(seen, fp, TAG_BUSY, rank), way);
            if !tag.swap_if(seen, claimed) {
                return None;
            }
            // SAFETY: the way is ours until published.
            unsafe {
                let slot = core::ptr::addr_of_mut!((*bucket).slots[way & (FLOW_WAYS - 1)]);
                (*slot).key = *key;
                (*slot).entry = *entry;
            }
            let published = retagged(claimed, TAG_VALID);
            // A CAS, not a store: a full barrier before the duplicate
            // check, and the slot's writes stay before it.
            if !tag.swap_if(claimed, published) {
                return None;
            }
            return Some((way, published));
        }
        way += 1;
    }
    None
}

/// Finds `key` (table hash `hash`, `hash::table_hash`: its fingerprint)
/// in its buckets `first` and `second` (equal when the table has one
/// bucket) or inserts it with `entry` and rank word `rank`.
///
/// Two-choice placement: the flow goes to an empty way of its first
/// bucket while one of that bucket's first `PREFER_FIRST_BELOW` ways is
/// empty, else to an empty way of its second bucket, else to the first
/// bucket's last empty way; when both are full, the way of the first
/// bucket that `victim_order` puts first is evicted.
///
/// One round: a lost race returns `Contended` (the packet goes
/// untracked, its flow's next packet inserts it); more rounds multiply
/// the BPF verifier's work, and a lost race needs two CPUs claiming the
/// same way within the same few nanoseconds. Callers in userspace retry.
///
/// Written for the BPF verifier as much as for the CPU: each bucket is
/// walked by loops of eight ways with constant offsets, the eviction
/// order is computed only when both buckets are full, and the position a
/// way was claimed at is never used to address one afterwards, so the
/// verifier's paths meet again after every loop.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
pub unsafe fn find_or_insert<V: Copy>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    key: &FlowKey,
    entry: &V,
    rank: u32,
    hash: u32,
) -> Placed {
    let fp = fingerprint(hash);
    let two = second != first;
    // SAFETY: per the caller's contract.
    let one = unsafe { scan(first, key, fp) };
    if one.found < FLOW_WAYS {
        return Placed::Found(one.found);
    }
    let other = if two {
        // SAFETY: as above.
        unsafe { scan(second, key, fp) }
    } else {
        Scan {
            found: FLOW_WAYS,
            low_room: false,
            room: false,
        }
    };
    if other.found < FLOW_WAYS {
        return Placed::Found(FLOW_WAYS + other.found);
    }
    let empty = |tag: u64| tag_state(tag) == TAG_EMPTY;
    // SAFETY: as above.
    let (claimed, base) = unsafe {
        if one.low_room {
            (claim_way(first, key, entry, fp, rank, empty), 0)
        } else if other.room {
            (claim_way(second, key, entry, fp, rank, empty), FLOW_WAYS)
        } else if one.room {
            (claim_way(first, key, entry, fp, rank, empty), 0)
        } else {
            let now_ticks = rank >> 2;
            let best = best_victim(first, now_ticks);
            if best == u32::MAX {
                return Placed::Contended;
            }
            let victim = |tag: u64| victim_order(tag, now_ticks) == best;
            (claim_way(first, key, entry, fp, rank, victim), 0)
        }
    };
    match claimed {
        // SAFETY: as above.
        Some((way, tag)) => unsafe { settle_duplicate(first, second, key, fp, base + way, tag) },
        None => Placed::Contended,
    }
}

/// What `insert_half_open` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalfOpenPlaced {
    /// Inserted into an empty way.
    Inserted,
    /// Inserted in place of a half-open flow past `HALF_OPEN_IDLE_TICKS`.
    Expired,
    /// Inserted in place of a half-open flow still in time (the oldest of
    /// the bucket).
    Evicted,
    /// Not inserted: the chosen way changed hands meanwhile, or every way
    /// was being written.
    Contended,
}

/// Inserts `key` into `bucket`, its only bucket (the half-open table,
/// whose flows are all half-open), with `entry` (whose `hash` is the
/// flow's) and rank word `rank`: into an empty way, else in place of the
/// least recently seen flow (past the half-open timeout or not: all are
/// of one class, so age alone orders them). The caller has just looked
/// the flow up (`find`) and not found it.
///
/// Made for the BPF verifier: one pass over the header picks the way (its
/// number packed into the low bits of the value compared, so it comes out
/// of the loop as an unknown number, not as one of eight paths), one
/// claim on that way; no key is compared. So two CPUs inserting the same
/// flow in the same instant may leave two copies of it, both naming the
/// same Maglev pick (the ACK takes one out, the other ages out), which is
/// harmless for half-open flows.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn insert_half_open(
    bucket: *mut FlowBucket,
    key: &FlowKey,
    entry: &FlowEntry,
    rank: u32,
) -> HalfOpenPlaced {
    let fp = fingerprint(entry.hash);
    let now_ticks = rank >> 2;
    // Per way: 0 if a writer owns it, else (2 if empty, 1 if valid) above
    // the flow's age (capped at 2^28 ticks), above the way's number; the
    // largest wins.
    let mut best = 0u64;
    let mut way = 0;
    while way < FLOW_WAYS {
        // SAFETY: per the caller's contract.
        let tag = unsafe { tag_at(bucket, way) }.load();
        let state = tag_state(tag);
        let age = now_ticks.wrapping_sub(tag_rank(tag) >> 2) & TICK_MASK;
        let age = if age > 0x0fff_ffff { 0x0fff_ffff } else { age };
        let weight = if state == TAG_EMPTY {
            2u64 << 28
        } else if state == TAG_VALID {
            (1u64 << 28) | u64::from(age)
        } else {
            0
        };
        let candidate = (weight << 3) | way as u64;
        if weight != 0 && candidate > best {
            best = candidate;
        }
        way += 1;
    }
    if best == 0 {
        return HalfOpenPlaced::Contended;
    }
    let way = (best & WAY_IN_VERSION) as usize;
    // SAFETY: as above; the index is masked into the bucket.
    let tag = unsafe { tag_at(bucket, way) };
    let seen = tag.load();
    let displaced = match tag_state(seen) {
        TAG_EMPTY => HalfOpenPlaced::Inserted,
        TAG_VALID if victim_order(seen, now_ticks) >> 28 == 1 => HalfOpenPlaced::Expired,
        TAG_VALID => HalfOpenPlaced::Evicted,
        _ => return HalfOpenPlaced::Contended,
    };
    let claimed = with_way(tag_with(seen, fp, TAG_BUSY, rank), way);
    if !tag.swap_if(seen, claimed) {
        return HalfOpenPlaced::Contended;
    }
    // SAFETY: the way is ours until published.
    unsafe {
        let slot = core::ptr::addr_of_mut!((*bucket).slots[way & (FLOW_WAYS - 1)]);
        (*slot).key = *key;
        (*slot).entry = *entry;
    }
    // A CAS, not a store: the slot's writes stay before it.
    if !tag.swap_if(claimed, retagged(claimed, TAG_VALID)) {
        return HalfOpenPlaced::Contended;
    }
    displaced
}

/// Whether way `way` of `bucket` holds `key` (fingerprint `fp`), as
/// `tag`.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
unsafe fn holds<V>(bucket: *mut Bucket<V>, way: usize, key: &FlowKey, fp: u32, tag: u64) -> bool {
    tag_state(tag) == TAG_VALID
        && tag_fingerprint(tag) == fp
        // SAFETY: per the caller's contract.
        && unsafe { key_is(bucket, way, key) }
}

/// No position (`settle_duplicate`, `Claimed::Taken`).
pub const NOWHERE: usize = 2 * FLOW_WAYS;

/// After publishing `key` at position `mine` (tag `my_tag`): if another
/// position of its two buckets holds the same flow (another CPU inserted
/// it at the same time, maybe into the other bucket), the copy at the
/// higher position goes. Returns where the flow now lives.
///
/// For the verifier: `mine` is only compared, never used to address a
/// way, and each bucket is walked by a loop of its own.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
unsafe fn settle_duplicate<V>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    key: &FlowKey,
    fp: u32,
    mine: usize,
    my_tag: u64,
) -> Placed {
    let two = second != first;
    let mut lower = NOWHERE;
    // SAFETY: per the caller's contract.
    unsafe {
        settle_in(first, 0, key, fp, mine, &mut lower);
        if two {
            settle_in(second, FLOW_WAYS, key, fp, mine, &mut lower);
        }
    }
    if lower == NOWHERE {
        return Placed::Inserted(mine);
    }
    // An older copy stays: ours goes.
    // SAFETY: as above.
    unsafe {
        release_in(first, 0, mine, my_tag);
        if two {
            release_in(second, FLOW_WAYS, mine, my_tag);
        }
    }
    Placed::Found(lower)
}

/// `settle_duplicate` over one bucket (positions `base` on): copies of
/// the flow above `mine` are taken out; the first below it is noted in
/// `lower` (if none was before).
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
unsafe fn settle_in<V>(
    bucket: *mut Bucket<V>,
    base: usize,
    key: &FlowKey,
    fp: u32,
    mine: usize,
    lower: &mut usize,
) {
    let mut way = 0;
    while way < FLOW_WAYS {
        let pos = base + way;
        if pos != mine {
            // SAFETY: per the caller's contract.
            let other = unsafe { tag_at(bucket, way) };
            let tag = other.load();
            // SAFETY: as above.
            if unsafe { holds(bucket, way, key, fp, tag) } {
                if pos > mine {
                    let _ = other.swap_if(tag, tag_with(tag, 0, TAG_EMPTY, 0));
                } else if *lower == NOWHERE {
                    *lower = base + tag_way(tag);
                }
            }
        }
        way += 1;
    }
}

/// Takes the copy at position `mine` (tag `my_tag`) out, if it is in this
/// bucket (positions `base` on).
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
unsafe fn release_in<V>(bucket: *mut Bucket<V>, base: usize, mine: usize, my_tag: u64) {
    let mut way = 0;
    while way < FLOW_WAYS {
        if base + way == mine {
            // SAFETY: per the caller's contract.
            let _ =
                unsafe { tag_at(bucket, way) }.swap_if(my_tag, tag_with(my_tag, 0, TAG_EMPTY, 0));
        }
        way += 1;
    }
}

/// Starts loading `bucket`'s header line (a read whose value is unused):
/// an insert reads both of a flow's headers, and loads started early let
/// their cache misses overlap each other's and the Maglev slot's instead
/// of following one another.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn warm<V>(bucket: *mut Bucket<V>) {
    // SAFETY: per the caller's contract.
    let _ = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*bucket).tags[0])) };
}

/// Starts loading the slot line an insert into `bucket` would write
/// first: its first empty way. Ways fill from the first, so that is the
/// way numbered by the count of ways in use (counted without a branch per
/// way); in a full bucket, every way's line (one of them is the victim).
/// A hint, at worst a useless load (ways freed out of order), never a
/// wrong result.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn warm_free_way<V>(bucket: *mut Bucket<V>) {
    let mut used = 0u64;
    let mut way = 0;
    while way < FLOW_WAYS {
        // SAFETY: per the caller's contract.
        let tag = unsafe { tag_at(bucket, way) }.load();
        // 1 for `TAG_VALID` (state bits 10), else 0.
        used += (tag >> 1) & !tag & 1;
        way += 1;
    }
    if used as usize >= FLOW_WAYS {
        // A full bucket: the insert evicts one of its flows, and which
        // one takes `victim_order` over every way to say (too many
        // instructions here, on the path every miss takes); all eight
        // lines are loaded instead, in parallel.
        let mut way = 0;
        while way < FLOW_WAYS {
            // SAFETY: per the caller's contract.
            let _ = unsafe {
                core::ptr::read_volatile(core::ptr::addr_of!((*bucket).slots[way].key.src[0]))
            };
            way += 1;
        }
        return;
    }
    // SAFETY: per the caller's contract; the index is masked.
    let _ = unsafe {
        core::ptr::read_volatile(core::ptr::addr_of!(
            (*bucket).slots[used as usize & (FLOW_WAYS - 1)].key.src[0]
        ))
    };
}

/// The flow `key` (hash `hash`) in its buckets `first` and `second`: the
/// first is read first, the second only on a miss.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
pub unsafe fn find_in<V: SlotValue>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    key: &FlowKey,
    hash: u32,
) -> Option<(*mut Bucket<V>, Seen<V>)> {
    // SAFETY: per the caller's contract.
    if let Some(seen) = unsafe { find(first, key, hash) } {
        return Some((first, seen));
    }
    if second == first {
        return None;
    }
    // SAFETY: as above.
    unsafe { find(second, key, hash) }.map(|seen| (second, seen))
}

/// Ways a bucket's `empty_ways` may take a new key into while the flow
/// stays in its first bucket (`PREFER_FIRST_BELOW` of them).
const PREFER_MASK: u64 = (1 << PREFER_FIRST_BELOW) - 1;

/// `x`, a value the compiler cannot see through. The branch-free bit
/// arithmetic below would otherwise be folded back into comparisons,
/// which the BPF backend (without a set-on-condition instruction) turns
/// into branches with a constant on each side: the verifier then follows
/// one path per combination of ways (2^16 for two headers) instead of
/// one.
#[inline(always)]
fn opaque(x: u64) -> u64 {
    #[cfg(target_arch = "bpf")]
    {
        let mut x = x;
        // SAFETY: an empty instruction sequence on a register.
        unsafe { core::arch::asm!("/* {0} */", inout(reg) x, options(pure, nomem, nostack)) };
        x
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        x
    }
}

/// 1 if `tag`'s way is empty, else 0 (no branch; the result opaque too,
/// or the compiler turns the arithmetic that uses it into selects).
#[inline(always)]
fn empty_bit(tag: u64) -> u64 {
    opaque(!(tag | opaque(tag >> 1)) & 1)
}

/// 1 if `x` is not zero, else 0 (no branch, as `empty_bit`).
#[inline(always)]
fn non_zero(x: u64) -> u64 {
    opaque((x | opaque(x.wrapping_neg())) >> 63)
}

/// A bit per empty way of `bucket` (bit `w`: way `w`), computed without a
/// branch per way: the BPF verifier follows one path through the header
/// instead of one per way and outcome.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
unsafe fn empty_ways<V>(bucket: *mut Bucket<V>) -> u64 {
    let mut empty = 0u64;
    each_way!(way => {
        // SAFETY: per the caller's contract.
        let tag = unsafe { tag_at(bucket, way) }.load();
        empty |= empty_bit(tag) << way;
    });
    empty
}

/// 1 if a way of `bucket` carries fingerprint `fp`, else 0, computed
/// without a branch. An empty way's fingerprint is always 0 (every way
/// is emptied with it cleared, and starts so), so for `fp` 0 every empty
/// way counts: a conservative answer for one key in 65,536.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
unsafe fn carries_fp<V>(bucket: *mut Bucket<V>, fp: u32) -> u64 {
    let mut hits = 0u64;
    each_way!(way => {
        // SAFETY: per the caller's contract.
        let tag = unsafe { tag_at(bucket, way) }.load();
        hits |= 1 ^ non_zero(((tag >> FP_SHIFT) & FP_MASK) ^ u64::from(fp));
    });
    hits
}

/// Starts loading the lines of the way an exclusive insert into `bucket`
/// would most likely take (its lowest empty way; way 0 of a full
/// bucket): a read whose value is unused, so the miss of the slot's
/// write overlaps other work instead of stalling the insert's CAS.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn warm_empty_way<V>(bucket: *mut Bucket<V>) {
    // SAFETY: per the caller's contract; the index is masked.
    unsafe {
        let way = lowest_way(empty_ways(bucket)) & (FLOW_WAYS - 1);
        let slot = core::ptr::addr_of!((*bucket).slots[way]).cast::<u8>();
        let _ = core::ptr::read_volatile(slot);
        if size_of::<Slot<V>>() > 64 {
            let _ = core::ptr::read_volatile(slot.add(64));
        }
    }
}

/// The lowest way set in `mask` (`FLOW_WAYS` when none is): the count of
/// the bits below its lowest set bit, without a branch or a table, so the
/// verifier sees one unknown way number, not eight paths.
#[inline(always)]
fn lowest_way(mask: u64) -> usize {
    // Opaque, or the compiler makes a count of trailing zeros of it,
    // with a branch for zero.
    let below = opaque(mask & mask.wrapping_neg()).wrapping_sub(1) & 0xff;
    let x = below - ((below >> 1) & 0x55);
    let x = (x & 0x33) + ((x >> 2) & 0x33);
    ((x + (x >> 4)) & 0x0f) as usize
}

/// Where a new key would go by the two-choice rule (see `find_or_insert`)
/// given its buckets' empty ways (`low`: the first bucket's, `high`: the
/// second's): `(in the second bucket, way)`, None when both are full.
#[inline(always)]
fn placement(low: u64, high: u64) -> Option<(bool, usize)> {
    if low | high == 0 {
        return None;
    }
    if low & PREFER_MASK == 0 && high != 0 {
        Some((true, lowest_way(high)))
    } else {
        Some((false, lowest_way(low)))
    }
}

/// What `probe` found for a key about to be inserted with `insert_new`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probed {
    /// No way of either bucket carries the key's fingerprint: the key is
    /// not in the table (its buckets may still be full: the insert says).
    Free,
    /// A way carries its fingerprint: the key may be in the table (or
    /// being written by another CPU; or, rarely, another key shares the
    /// fingerprint).
    Maybe,
}

/// Whether a key (table hash `hash`) is surely absent from its buckets
/// `first` and `second`, from their header lines alone (no key is
/// compared): the data plane's cheap test of a candidate NAT source port
/// before it tries one with `insert_new`.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
pub unsafe fn probe<V>(first: *mut Bucket<V>, second: *mut Bucket<V>, hash: u32) -> Probed {
    let fp = fingerprint(hash);
    // SAFETY: per the caller's contract.
    let hits = unsafe { carries_fp(first, fp) | carries_fp(second, fp) };
    if hits != 0 {
        Probed::Maybe
    } else {
        Probed::Free
    }
}

/// What `insert_new` did. Positions count the first bucket's ways, then
/// the second's (as `Placed`'s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// The key went in at this position, under this (valid) tag.
    Inserted {
        /// Its position.
        pos: usize,
        /// Its tag (for `release_way`).
        tag: u64,
    },
    /// Another copy of the key stands: at this position, or `NOWHERE`
    /// when it was still being settled (another CPU's insert of the same
    /// key, which took this one's copy out).
    Taken(usize),
    /// Both buckets are full: nothing was written.
    Full,
    /// The way chosen was taken by another CPU's insert (of another key)
    /// in the same instant: nothing was written; the caller may try again.
    Contended,
}

/// Inserts `key` (table hash `hash`) with `entry` into its buckets
/// `first` and `second` if no other copy of it is there, and never beside
/// one: of any number of CPUs (and lbd) inserting the same key at once,
/// exactly one gets `Inserted`, the others `Taken`. For tables whose keys
/// must be unique (the NAT table: a reply key is a source port's
/// reservation); never evicts (`Full` instead). The caller has usually
/// just looked the key up, so no key is compared before the claim.
///
/// The protocol: the way the two-choice rule picks (from the header lines
/// alone) is claimed (`EMPTY` -> `BUSY`), the key and value written, and
/// the copy made visible to other inserts only (`PENDING`, a CAS: a full
/// barrier). Then both buckets are read: a valid copy of the key means
/// this one loses; a pending one at a lower position too; a pending one
/// at a higher position is taken out (a CAS from its tag: its owner's
/// final CAS then fails and it loses; if its owner won that race, its
/// copy is valid and this one loses). A way still `BUSY` under another
/// CPU is ignored: that CPU's own read, after its `PENDING` CAS, is
/// ordered after this CPU's `PENDING` CAS and sees this copy. The copy
/// that did not lose is published (`PENDING` -> `VALID`); a lost one is
/// emptied. Of two CPUs that see each other, the lower position wins; of
/// two where only one sees the other, the one that sees decides; so one
/// copy stands, whatever the timing.
///
/// Written for the BPF verifier: the way is picked without a branch per
/// way, its number comes out as one unknown value, and the position of
/// this copy is only compared, never used to address a way.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
pub unsafe fn insert_new<V: Copy>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    key: &FlowKey,
    entry: &V,
    hash: u32,
) -> Claimed {
    let fp = fingerprint(hash);
    let two = second != first;
    // SAFETY: per the caller's contract.
    let low = unsafe { empty_ways(first) };
    let high = if two {
        // SAFETY: as above.
        unsafe { empty_ways(second) }
    } else {
        0
    };
    let Some((in_second, way)) = placement(low, high) else {
        return Claimed::Full;
    };
    let (bucket, base) = if in_second {
        (second, FLOW_WAYS)
    } else {
        (first, 0)
    };
    let mine = base + way;
    // SAFETY: as above; the index is masked into the bucket.
    let tag = unsafe { tag_at(bucket, way) };
    let seen = tag.load();
    if tag_state(seen) != TAG_EMPTY {
        return Claimed::Contended;
    }
    let claimed = with_way(tag_with(seen, fp, TAG_BUSY, 0), way);
    if !tag.swap_if(seen, claimed) {
        return Claimed::Contended;
    }
    // SAFETY: the way is ours until published.
    unsafe {
        let slot = core::ptr::addr_of_mut!((*bucket).slots[way & (FLOW_WAYS - 1)]);
        (*slot).key = *key;
        (*slot).entry = *entry;
    }
    let pending = retagged(claimed, TAG_PENDING);
    // A CAS, not a store: the slot's writes stay before it, and it is a
    // full barrier before the reads below.
    if !tag.swap_if(claimed, pending) {
        return Claimed::Contended;
    }
    // Which other ways hold a copy of the key's fingerprint, valid or
    // pending (from the header lines: no key read). Almost always none.
    // SAFETY: as above.
    let others = unsafe { copies_of(first, second, fp, two) } & !(1u64 << mine);
    let mut winner = NOWHERE as u64;
    if others != 0 {
        // SAFETY: as above.
        winner = unsafe { settle_new(first, second, key, (mine, fp), two) };
    }
    if winner != NOWHERE as u64 {
        // Ours loses: emptied (unless a lower copy's owner did it first).
        let _ = tag.swap_if(pending, tag_with(pending, 0, TAG_EMPTY, 0));
        return Claimed::Taken(winner as usize);
    }
    let published = retagged(pending, TAG_VALID);
    if tag.swap_if(pending, published) {
        Claimed::Inserted {
            pos: mine,
            tag: published,
        }
    } else {
        // A lower pending copy of the key took ours out: it stands.
        Claimed::Taken(NOWHERE)
    }
}

/// A bit per position (the first bucket's ways, then the second's) whose
/// way is valid or pending under fingerprint `fp`, from the two header
/// lines, without a branch.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
unsafe fn copies_of<V>(first: *mut Bucket<V>, second: *mut Bucket<V>, fp: u32, two: bool) -> u64 {
    let mut bits = 0u64;
    each_way!(way => {
        // SAFETY: per the caller's contract.
        let low = unsafe { tag_at(first, way) }.load();
        bits |= holds_fp(low, fp) << way;
        if two {
            // SAFETY: as above.
            let high = unsafe { tag_at(second, way) }.load();
            bits |= holds_fp(high, fp) << (FLOW_WAYS + way);
        }
    });
    bits
}

/// 1 if `tag` is valid or pending (state bit 1) under fingerprint `fp`,
/// else 0 (no branch).
#[inline(always)]
fn holds_fp(tag: u64, fp: u32) -> u64 {
    let other_fp = non_zero(((tag >> FP_SHIFT) & FP_MASK) ^ u64::from(fp));
    opaque((opaque(tag >> 1) & 1) & (1 ^ other_fp))
}

/// `insert_new`'s settling when other ways of the key's buckets carry its
/// fingerprint `fp` (ours is at position `mine`): each such way
/// whose key is the key is a copy; a valid one, or a pending one at a
/// lower position, stands against ours (its position is returned); a
/// pending one at a higher position is taken out, unless its owner
/// published it first (it then stands). `NOWHERE` when ours stands.
///
/// Rare at run time (another CPU inserting the same key, or another key
/// of the same fingerprint in one of its 16 ways), so written for the
/// BPF verifier rather than for speed: every position is looked at with
/// the keys compared and the decisions taken without a branch, the only
/// branch per position being the rare take-out, so the verifier follows
/// one path through the positions instead of one per outcome.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
unsafe fn settle_new<V>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    key: &FlowKey,
    (mine, fp): (usize, u32),
    two: bool,
) -> u64 {
    let mut winner = NOWHERE as u64;
    // SAFETY: per the caller's contract.
    unsafe {
        settle_new_in(first, 0, key, (mine, fp), &mut winner);
        if two {
            settle_new_in(second, FLOW_WAYS, key, (mine, fp), &mut winner);
        }
    }
    winner
}

/// `settle_new` over one bucket (positions `base` on).
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
unsafe fn settle_new_in<V>(
    bucket: *mut Bucket<V>,
    base: usize,
    key: &FlowKey,
    (mine, fp): (usize, u32),
    winner: &mut u64,
) {
    // A loop, its body without a branch: one path through it for the
    // verifier, and a small frame.
    let mut way = 0;
    while way < FLOW_WAYS {
        let pos = (base + way) as u64;
        // SAFETY: per the caller's contract.
        let other = unsafe { tag_at(bucket, way) };
        let tag = other.load();
        // SAFETY: as above.
        let differ = unsafe { key_difference(bucket, way, key) };
        let now = other.load();
        let candidate = holds_fp(tag, fp) & non_zero(pos ^ mine as u64);
        let same_key = 1 ^ non_zero(differ);
        let unchanged = 1 ^ non_zero(now ^ tag);
        let published = 1 ^ non_zero(now ^ retagged(tag, TAG_VALID));
        let copy = candidate & same_key & (unchanged | published);
        // Valid (state 2: bit 0 clear), published meanwhile, or below
        // ours: it stands.
        let valid = opaque(1 ^ (tag & 1));
        let lower = opaque((pos.wrapping_sub(opaque(mine as u64)) >> 63) & 1);
        let stands = copy & (valid | published | lower);
        // Pending above ours: it goes (if still pending); if its owner
        // published it first, it stands.
        let goes = opaque(copy & (1 ^ stands));
        let lost = opaque(stands | take_out_if(other, tag, goes));
        // The lowest position that stands (a branch-free select).
        let first_one = non_zero(*winner ^ (NOWHERE as u64)).wrapping_sub(1);
        let take = 0u64.wrapping_sub(lost) & first_one;
        *winner = (*winner & !take) | (pos & take);
        way += 1;
    }
}

/// The difference of the key in `way` from `key` (0 when they are the
/// same): all ten words read and their differences OR-ed, without a
/// branch (see `settle_new`).
///
/// # Safety
/// `bucket` must point to a live bucket.
#[inline(always)]
unsafe fn key_difference<V>(bucket: *const Bucket<V>, way: usize, key: &FlowKey) -> u64 {
    // SAFETY: as `key_is`.
    unsafe {
        let have = core::ptr::addr_of!((*bucket).slots[way & (FLOW_WAYS - 1)].key) as *const u32;
        let want = key as *const FlowKey as *const u32;
        let mut differ = 0u64;
        let mut i = 0;
        while i < 10 {
            let word =
                core::ptr::read_volatile(have.add(i)) ^ core::ptr::read_volatile(want.add(i));
            // Opaque: the compiler would fold the sum back into ten
            // comparisons (and keep all twenty words live across them).
            differ = opaque(differ | u64::from(word));
            i += 1;
        }
        differ
    }
}

/// Takes out a pending copy of a key (its tag seen as `seen`) for an
/// insert of the same key at a lower position, if `goes` is 1: a CAS made
/// whatever `goes` is (no branch), changing the tag only when it goes
/// (otherwise it puts back the value it expects). 1 if it went to take
/// it out and its owner had published it first (it then stands), else 0.
#[inline(always)]
fn take_out_if(other: Tag, seen: u64, goes: u64) -> u64 {
    let emptied = tag_with(seen, 0, TAG_EMPTY, 0);
    let found = other.swap_seen(seen, seen ^ ((seen ^ emptied) & 0u64.wrapping_sub(goes)));
    let kept = non_zero(found ^ seen);
    goes & kept & (1 ^ non_zero(other.load() ^ retagged(seen, TAG_VALID)))
}

/// The way of `bucket` holding `key` (table hash `hash`) and its tag,
/// read without copying its value (the NAT data plane reads and writes a
/// flow's entry in place): a valid way under the key's fingerprint whose
/// key is the same, its tag unchanged across the key's read. The way
/// comes back as the number its tag carries (one unknown value for the
/// BPF verifier, not eight paths).
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn locate<V>(bucket: *mut Bucket<V>, key: &FlowKey, hash: u32) -> Option<(usize, u64)> {
    let fp = fingerprint(hash);
    // Written out way by way (see `each_way`): a way that does not hold
    // the key leaves nothing behind for the next to differ by.
    each_way!(way => {
        // SAFETY: per the caller's contract.
        let tag = unsafe { tag_at(bucket, way) };
        let seen = tag.load();
        // SAFETY: as above.
        if unsafe { holds(bucket, way, key, fp, seen) } && tag.load() == seen {
            return Some((tag_way(seen), seen));
        }
    });
    None
}

/// Whether way `way` of `bucket` holds `key` (table hash `hash`),
/// published or pending (`insert_new`: its key and value are written
/// before it is visible to anyone).
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn holds_key<V>(bucket: *mut Bucket<V>, way: usize, key: &FlowKey, hash: u32) -> bool {
    // SAFETY: per the caller's contract.
    let tag = unsafe { tag_at(bucket, way) };
    let seen = tag.load();
    seen & 2 != 0
        && tag_fingerprint(seen) == fingerprint(hash)
        // SAFETY: as above.
        && unsafe { key_is(bucket, way, key) }
        && tag.load() == seen
}

/// Empties way `way` of `bucket` if its tag is still `tag` (an insert
/// undone: the NAT data plane frees the source port it reserved when the
/// flow's other entry found no room). True if this call emptied it.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn release_way<V>(bucket: *mut Bucket<V>, way: usize, tag: u64) -> bool {
    // SAFETY: per the caller's contract.
    unsafe { tag_at(bucket, way) }.swap_if(tag, tag_with(tag, 0, TAG_EMPTY, 0))
}

/// Takes `key` out of `bucket` if it is there (userspace: expiry, `lbctl`,
/// replication). True if it was removed by this call.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn remove<V: SlotValue>(bucket: *mut Bucket<V>, key: &FlowKey, hash: u32) -> bool {
    // SAFETY: per the caller's contract.
    match unsafe { find(bucket, key, hash) } {
        // SAFETY: as above.
        Some(seen) => unsafe { release(bucket, &seen) },
        None => false,
    }
}

/// Empties the way of the flow `seen` found, if it still holds it
/// unchanged (the data plane: a half-open flow taken out for the
/// connection table). True if this call emptied it: of two CPUs taking
/// the same flow, one does.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn release<V>(bucket: *mut Bucket<V>, seen: &Seen<V>) -> bool {
    // SAFETY: per the caller's contract.
    unsafe { tag_at(bucket, seen.way) }.swap_if(seen.tag, tag_with(seen.tag, 0, TAG_EMPTY, 0))
}

/// Replaces the entry (and rank word) of the flow `seen` found, if its way
/// still holds it unchanged: claim, write, publish, so readers never see
/// half of it. False if the way changed meanwhile.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn rewrite<V: Copy>(
    bucket: *mut Bucket<V>,
    seen: &Seen<V>,
    entry: &V,
    rank: u32,
) -> bool {
    // SAFETY: per the caller's contract.
    let tag = unsafe { tag_at(bucket, seen.way) };
    let claimed = tag_with(seen.tag, tag_fingerprint(seen.tag), TAG_BUSY, rank);
    if tag_state(seen.tag) != TAG_VALID || !tag.swap_if(seen.tag, claimed) {
        return false;
    }
    // SAFETY: the way is ours until published.
    unsafe {
        (*bucket).slots[seen.way & (FLOW_WAYS - 1)].entry = *entry;
    }
    // A CAS, not a store: the entry's writes stay before it.
    tag.swap_if(claimed, retagged(claimed, TAG_VALID))
}

/// How way `way` holds its flow, if it holds one (the data plane, after an
/// insert found the flow already there).
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn seen_at<V: SlotValue>(bucket: *mut Bucket<V>, way: usize) -> Option<Seen<V>> {
    // SAFETY: per the caller's contract.
    let tag = unsafe { tag_at(bucket, way) };
    let seen = tag.load();
    if tag_state(seen) != TAG_VALID {
        return None;
    }
    // SAFETY: as above.
    let entry = unsafe { read_entry(bucket, way) };
    (tag.load() == seen).then_some(Seen {
        way: tag_way(seen),
        tag: seen,
        entry,
    })
}

/// A consistent copy of way `way`: its key and how it was seen, if it
/// holds a flow (userspace enumeration).
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn read_way<V: SlotValue>(
    bucket: *mut Bucket<V>,
    way: usize,
) -> Option<(FlowKey, Seen<V>)> {
    // SAFETY: per the caller's contract.
    let tag = unsafe { tag_at(bucket, way) };
    let seen = tag.load();
    if tag_state(seen) != TAG_VALID {
        return None;
    }
    // SAFETY: as above.
    let (key, entry) = unsafe {
        (
            core::ptr::read_volatile(core::ptr::addr_of!(
                (*bucket).slots[way & (FLOW_WAYS - 1)].key
            )),
            read_entry(bucket, way),
        )
    };
    (tag.load() == seen).then_some((
        key,
        Seen {
            way,
            tag: seen,
            entry,
        },
    ))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{boxed::Box, sync::Arc, vec::Vec};

    use super::*;
    use crate::{consts::AF_INET, hash::flow_hash};

    fn key(n: u32) -> FlowKey {
        FlowKey {
            src: [n.to_be(), 0, 0, 0],
            dst: [0xc612_0064u32.to_be(), 0, 0, 0],
            sport: (n as u16).to_be(),
            dport: 80u16.to_be(),
            proto: 6,
            family: AF_INET,
            _pad: 0,
        }
    }

    fn entry(backend_id: u32, k: &FlowKey) -> FlowEntry {
        FlowEntry {
            backend_id,
            hash: flow_hash(k),
            ..FlowEntry::default()
        }
    }

    /// `find_or_insert` into a one-bucket table.
    fn insert(bucket: &mut FlowBucket, k: &FlowKey, backend_id: u32, rank: u32) -> Placed {
        let b: *mut FlowBucket = bucket;
        unsafe { find_or_insert(b, b, k, &entry(backend_id, k), rank, flow_hash(k)) }
    }

    /// Keys that all hash to bucket 0 of a 64-bucket table.
    fn colliding(count: usize) -> Vec<FlowKey> {
        (1..)
            .map(key)
            .filter(|k| bucket_index(flow_hash(k), 63) == 0)
            .take(count)
            .collect()
    }

    fn occupied(bucket: &mut FlowBucket) -> Vec<FlowKey> {
        (0..FLOW_WAYS)
            .filter_map(|w| unsafe { read_way(bucket, w) }.map(|(k, _)| k))
            .collect()
    }

    #[test]
    fn a_flow_is_found_where_it_was_inserted_and_keeps_its_entry() {
        let mut bucket = Box::<FlowBucket>::default();
        let k = key(7);
        let h = flow_hash(&k);
        let rank = rank_word(5_000_000_000, CLASS_HALF_OPEN);
        let placed = insert(&mut bucket, &k, 3, rank);
        let Placed::Inserted(way) = placed else {
            panic!("{placed:?}")
        };
        assert_eq!(
            unsafe { find(&mut *bucket, &k, h) }.map(|s| (s.way, s.entry)),
            Some((way, entry(3, &k)))
        );
        // A second insert of the same flow finds it; nothing is duplicated.
        assert_eq!(insert(&mut bucket, &k, 9, rank), Placed::Found(way));
        assert_eq!(occupied(&mut bucket), [k]);
        assert!(unsafe { find(&mut *bucket, &key(8), flow_hash(&key(8))) }.is_none());
        assert!(unsafe { remove(&mut *bucket, &k, h) });
        assert!(!unsafe { remove(&mut *bucket, &k, h) });
        assert!(unsafe { find(&mut *bucket, &k, h) }.is_none());
    }

    #[test]
    fn a_half_open_bucket_fills_then_replaces_expired_then_the_oldest_flow() {
        let mut bucket = Box::<FlowBucket>::default();
        let b: *mut FlowBucket = &mut *bucket;
        let keys = colliding(FLOW_WAYS + 2);
        let s = 1_000_000_000u64;
        let now = 3_600 * s;
        let put = |k: &FlowKey, seen: u64| unsafe {
            insert_half_open(b, k, &entry(1, k), rank_word(seen, CLASS_HALF_OPEN))
        };
        // Eight flows: the third 11 s old (past the timeout), the fifth
        // 9 s, the others 1 s.
        for (i, k) in keys[..FLOW_WAYS].iter().enumerate() {
            let age = match i {
                2 => 11,
                4 => 9,
                _ => 1,
            };
            assert_eq!(put(k, now - age * s), HalfOpenPlaced::Inserted, "{i}");
        }
        assert_eq!(put(&keys[FLOW_WAYS], now), HalfOpenPlaced::Expired);
        assert!(!occupied(&mut bucket).contains(&keys[2]));
        assert_eq!(put(&keys[FLOW_WAYS + 1], now), HalfOpenPlaced::Evicted);
        let held = occupied(&mut bucket);
        assert!(!held.contains(&keys[4]), "the oldest in time goes");
        assert_eq!(held.len(), FLOW_WAYS);
        // A flow taken out with `release` leaves room, taken once.
        let k = keys[FLOW_WAYS];
        let seen = unsafe { find(b, &k, flow_hash(&k)) }.expect("inserted");
        assert!(unsafe { release(b, &seen) });
        assert!(!unsafe { release(b, &seen) }, "released once");
        assert_eq!(put(&keys[4], now), HalfOpenPlaced::Inserted);
        // Every way being written: nothing to claim.
        for way in 0..FLOW_WAYS {
            let tag = unsafe { tag_at(b, way) };
            tag.swap_if(tag.load(), retagged(tag.load(), TAG_BUSY));
        }
        assert_eq!(put(&keys[2], now), HalfOpenPlaced::Contended);
    }

    #[test]
    fn a_full_bucket_evicts_closed_then_expired_then_half_open_then_the_oldest_live_flow() {
        let mut bucket = Box::<FlowBucket>::default();
        let keys = colliding(FLOW_WAYS + 4);
        let now = 3_600_000_000_000u64;
        let s = 1_000_000_000u64;
        // Way by way: live flows of different ages, one closed, one
        // half-open, one established but idle past the timeout.
        let ranks = [
            rank_word(now - 50 * s, CLASS_ESTABLISHED),
            rank_word(now - s, CLASS_CLOSED),
            rank_word(now - 90 * s, CLASS_ESTABLISHED),
            rank_word(now - 2 * s, CLASS_HALF_OPEN),
            rank_word(now - 1000 * s, CLASS_ESTABLISHED),
            rank_word(now - 10 * s, CLASS_ESTABLISHED),
            rank_word(now - 20 * s, CLASS_ESTABLISHED),
            rank_word(now - 30 * s, CLASS_ESTABLISHED),
        ];
        for (k, rank) in keys.iter().zip(ranks) {
            let placed = insert(&mut bucket, k, 1, rank);
            assert!(matches!(placed, Placed::Inserted(_)), "{placed:?}");
        }
        // The newcomers are established (a half-open one would be the
        // next to go).
        let fresh = rank_word(now, CLASS_ESTABLISHED);
        let mut evicted = Vec::new();
        for k in &keys[FLOW_WAYS..] {
            let before = occupied(&mut bucket);
            let placed = insert(&mut bucket, k, 2, fresh);
            assert!(matches!(placed, Placed::Inserted(_)), "{placed:?}");
            let after = occupied(&mut bucket);
            assert_eq!(after.len(), FLOW_WAYS);
            evicted.extend(before.into_iter().filter(|k| !after.contains(k)));
        }
        // Closed (way 1) and expired (way 4) first (the expired one is
        // older), then the half-open one (way 3), then the oldest live
        // flow (way 2, 90 s).
        assert_eq!(evicted, [keys[4], keys[1], keys[3], keys[2]]);
    }

    /// The two candidate buckets of `k` in `table`.
    fn candidates(
        table: *mut FlowBucket,
        buckets: u32,
        k: &FlowKey,
    ) -> (*mut FlowBucket, *mut FlowBucket) {
        let h = flow_hash(k);
        unsafe {
            (
                table.add(bucket_index(h, buckets - 1) as usize),
                table.add(second_bucket_index(h, buckets - 1) as usize),
            )
        }
    }

    #[test]
    fn a_flow_whose_first_bucket_is_full_goes_to_its_second_and_is_found_there() {
        const BUCKETS: u32 = 64;
        let mut table: Vec<FlowBucket> = (0..BUCKETS).map(|_| FlowBucket::default()).collect();
        let base = table.as_mut_ptr();
        let rank = rank_word(5_000_000_000, CLASS_ESTABLISHED);
        // Nine flows sharing a first bucket (and with another second one).
        let keys: Vec<FlowKey> = (1..)
            .map(key)
            .filter(|k| {
                let h = flow_hash(k);
                bucket_index(h, BUCKETS - 1) == 0 && second_bucket_index(h, BUCKETS - 1) != 0
            })
            .take(FLOW_WAYS + 1)
            .collect();
        for (i, k) in keys.iter().enumerate() {
            let (first, second) = candidates(base, BUCKETS, k);
            let placed =
                unsafe { find_or_insert(first, second, k, &entry(1, k), rank, flow_hash(k)) };
            // The first bucket takes flows while it holds fewer than
            // PREFER_FIRST_BELOW ways are empty; then the (empty) second.
            let to_second = i as u32 >= PREFER_FIRST_BELOW;
            assert!(
                matches!(placed, Placed::Inserted(p) if (p >= FLOW_WAYS) == to_second),
                "flow {i}: {placed:?}"
            );
        }
        // Nothing was evicted; every flow is found, and found again by an
        // insert (never inserted twice).
        for k in &keys {
            let (first, second) = candidates(base, BUCKETS, k);
            let (bucket, seen) =
                unsafe { find_in(first, second, k, flow_hash(k)) }.expect("tracked");
            let pos = if bucket == second {
                FLOW_WAYS + seen.way
            } else {
                seen.way
            };
            assert_eq!(
                unsafe { find_or_insert(first, second, k, &entry(2, k), rank, flow_hash(k)) },
                Placed::Found(pos)
            );
        }
        let held: usize = (0..BUCKETS as usize)
            .map(|b| occupied(&mut table[b]).len())
            .sum();
        assert_eq!(held, keys.len());
    }

    #[test]
    fn two_threads_inserting_the_same_flows_leave_exactly_one_entry_each() {
        // Few buckets, so the racers meet in the same buckets often and
        // some flows go to their second bucket.
        const BUCKETS: usize = 64;
        const FLOWS: u32 = 300;
        for round in 0..20u32 {
            let table: Arc<Vec<FlowBucket>> =
                Arc::new((0..BUCKETS).map(|_| FlowBucket::default()).collect());
            let racers: Vec<_> = (0..2u32)
                .map(|cpu| {
                    let table = Arc::clone(&table);
                    std::thread::spawn(move || {
                        let base = table.as_ptr() as *mut FlowBucket;
                        (0..FLOWS)
                            .map(|n| {
                                let k = key(round * FLOWS + n);
                                let (first, second) = candidates(base, BUCKETS as u32, &k);
                                let rank = rank_word(u64::from(n) << TICK_SHIFT, CLASS_ESTABLISHED);
                                unsafe {
                                    find_or_insert(
                                        first,
                                        second,
                                        &k,
                                        &entry(cpu + 1, &k),
                                        rank,
                                        flow_hash(&k),
                                    )
                                }
                            })
                            .collect::<Vec<Placed>>()
                    })
                })
                .collect();
            let results: Vec<Vec<Placed>> = racers
                .into_iter()
                .map(|racer| racer.join().expect("racer"))
                .collect();
            let base = table.as_ptr() as *mut FlowBucket;
            let mut seen = Vec::new();
            let mut full = Vec::new();
            for b in 0..BUCKETS {
                let mut used = 0;
                for w in 0..FLOW_WAYS {
                    if let Some((k, _)) = unsafe { read_way(base.add(b), w) } {
                        seen.push(u32::from_be(k.src[0]));
                        used += 1;
                    }
                }
                // A flow is evicted only from a full bucket, and after that
                // the bucket loses at most the other racer's one copy in
                // flight (a duplicate `settle_duplicate` takes out): it
                // ends with at least FLOW_WAYS - 1 flows.
                if used >= FLOW_WAYS - 1 {
                    full.push(base.wrapping_add(b));
                }
            }
            seen.sort_unstable();
            let len = seen.len();
            seen.dedup();
            assert_eq!(len, seen.len(), "round {round}: a flow was inserted twice");
            // 300 flows in 512 ways: a flow in a bucket that filled may
            // have been evicted; every other flow one of the threads placed
            // (inserted or found; `Contended` forwards a packet untracked,
            // which the contract allows) must be there.
            for n in 0..FLOWS {
                let (first, second) = candidates(base, BUCKETS as u32, &key(round * FLOWS + n));
                if full.contains(&first) || full.contains(&second) {
                    continue;
                }
                let placed = results
                    .iter()
                    .any(|r| !matches!(r[n as usize], Placed::Contended));
                assert!(
                    !placed || seen.binary_search(&(round * FLOWS + n)).is_ok(),
                    "round {round}: flow {n} lost"
                );
            }
        }
    }

    #[test]
    fn lowest_way_is_the_lowest_set_bit_or_none() {
        for mask in 0u64..256 {
            let want = if mask == 0 {
                FLOW_WAYS
            } else {
                mask.trailing_zeros() as usize
            };
            assert_eq!(lowest_way(mask), want, "{mask:#b}");
        }
    }

    #[test]
    fn an_exclusive_insert_takes_a_key_once_and_never_evicts() {
        let mut bucket = Box::<FlowBucket>::default();
        let b: *mut FlowBucket = &mut *bucket;
        let keys = colliding(FLOW_WAYS + 1);
        let h = |k: &FlowKey| flow_hash(k);
        assert_eq!(unsafe { probe(b, b, h(&keys[0])) }, Probed::Free);
        let Claimed::Inserted { pos, tag } =
            (unsafe { insert_new(b, b, &keys[0], &entry(1, &keys[0]), h(&keys[0])) })
        else {
            panic!("not inserted")
        };
        assert_eq!(tag_state(tag), TAG_VALID);
        assert_eq!(
            unsafe { locate(b, &keys[0], h(&keys[0])) },
            Some((pos, tag))
        );
        assert!(unsafe { holds_key(b, pos, &keys[0], h(&keys[0])) });
        assert_eq!(
            unsafe { find(b, &keys[0], h(&keys[0])) }.map(|s| s.entry.backend_id),
            Some(1)
        );
        // The key is held: a second insert finds it, writes nothing.
        assert_eq!(unsafe { probe(b, b, h(&keys[0])) }, Probed::Maybe);
        assert_eq!(
            unsafe { insert_new(b, b, &keys[0], &entry(2, &keys[0]), h(&keys[0])) },
            Claimed::Taken(pos)
        );
        assert_eq!(occupied(&mut bucket), [keys[0]]);
        for k in &keys[1..FLOW_WAYS] {
            let claimed = unsafe { insert_new(b, b, k, &entry(3, k), h(k)) };
            assert!(matches!(claimed, Claimed::Inserted { .. }), "{claimed:?}");
        }
        // Full: nothing is evicted, nothing written.
        let last = &keys[FLOW_WAYS];
        assert_eq!(
            unsafe { probe(b, b, h(last)) },
            Probed::Free,
            "absent (if full)"
        );
        assert_eq!(
            unsafe { insert_new(b, b, last, &entry(4, last), h(last)) },
            Claimed::Full
        );
        assert_eq!(occupied(&mut bucket).len(), FLOW_WAYS);
        assert!(!occupied(&mut bucket).contains(last));
        // An insert undone frees its way, once.
        assert!(unsafe { release_way(b, pos, tag) });
        assert!(!unsafe { release_way(b, pos, tag) });
        assert!(unsafe { locate(b, &keys[0], h(&keys[0])) }.is_none());
        assert!(matches!(
            unsafe { insert_new(b, b, last, &entry(4, last), h(last)) },
            Claimed::Inserted { .. }
        ));
    }

    /// Puts `k` into way `way` of `bucket` as another CPU's insert would
    /// leave it between its steps: `state` `TAG_PENDING` (or `TAG_BUSY`).
    fn in_flight(bucket: *mut FlowBucket, way: usize, k: &FlowKey, state: u32) -> u64 {
        let tag = with_way(tag_with(0, fingerprint(flow_hash(k)), state, 0), way);
        unsafe {
            (*bucket).slots[way].key = *k;
            (*bucket).slots[way].entry = entry(9, k);
            core::ptr::write_volatile(core::ptr::addr_of_mut!((*bucket).tags[way]), tag);
        }
        tag
    }

    #[test]
    fn a_pending_copy_is_invisible_to_lookups_and_settled_by_position() {
        let k = key(7);
        let h = flow_hash(&k);
        // Another CPU's pending copy in way 0, below where ours goes: it
        // stands, ours is emptied; lookups see neither meanwhile.
        let mut bucket = Box::<FlowBucket>::default();
        let b: *mut FlowBucket = &mut *bucket;
        let theirs = in_flight(b, 0, &k, TAG_PENDING);
        assert!(unsafe { find(b, &k, h) }.is_none());
        assert!(unsafe { locate(b, &k, h) }.is_none());
        assert!(occupied(&mut bucket).is_empty());
        assert_eq!(
            unsafe { insert_new(b, b, &k, &entry(1, &k), h) },
            Claimed::Taken(0)
        );
        assert_eq!(
            unsafe { tag_at(b, 1) }.load() & STATE_MASK,
            0,
            "ours emptied"
        );
        assert_eq!(unsafe { tag_at(b, 0) }.load(), theirs, "theirs untouched");

        // Their pending copy above ours (ways 0..3 taken by others): ours
        // takes it out, and their publishing CAS then fails.
        let mut bucket = Box::<FlowBucket>::default();
        let b: *mut FlowBucket = &mut *bucket;
        let others = colliding(4);
        for (way, other) in others.iter().enumerate().take(3) {
            in_flight(b, way, other, TAG_VALID);
        }
        let theirs = in_flight(b, 5, &k, TAG_PENDING);
        let Claimed::Inserted { pos, .. } = (unsafe { insert_new(b, b, &k, &entry(1, &k), h) })
        else {
            panic!("ours stands")
        };
        assert_eq!(pos, 3);
        assert!(!unsafe { tag_at(b, 5) }.swap_if(theirs, retagged(theirs, TAG_VALID)));
        assert_eq!(occupied(&mut bucket).iter().filter(|o| **o == k).count(), 1);

        // Their owner published between our read of their tag and our
        // CAS: theirs stands. Emptied or taken out meanwhile: nothing to do.
        let mut bucket = Box::<FlowBucket>::default();
        let b: *mut FlowBucket = &mut *bucket;
        let seen = in_flight(b, 5, &k, TAG_PENDING);
        let published = retagged(seen, TAG_VALID);
        unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*b).tags[5]), published) };
        assert_eq!(take_out_if(unsafe { tag_at(b, 5) }, seen, 1), 1);
        assert_eq!(unsafe { tag_at(b, 5) }.load(), published, "theirs stands");
        let emptied = tag_with(seen, 0, TAG_EMPTY, 0);
        unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*b).tags[5]), emptied) };
        assert_eq!(take_out_if(unsafe { tag_at(b, 5) }, seen, 1), 0);
        let seen = in_flight(b, 5, &k, TAG_PENDING);
        // Not asked to go: left as it is.
        assert_eq!(take_out_if(unsafe { tag_at(b, 5) }, seen, 0), 0);
        assert_eq!(unsafe { tag_at(b, 5) }.load(), seen);
        assert_eq!(take_out_if(unsafe { tag_at(b, 5) }, seen, 1), 0);
        assert_eq!(tag_state(unsafe { tag_at(b, 5) }.load()), TAG_EMPTY);

        // A copy another CPU is still writing (busy) is not waited for:
        // that CPU sees ours once it reads (see `insert_new`).
        let mut bucket = Box::<FlowBucket>::default();
        let b: *mut FlowBucket = &mut *bucket;
        in_flight(b, 0, &k, TAG_BUSY);
        assert!(matches!(
            unsafe { insert_new(b, b, &k, &entry(1, &k), h) },
            Claimed::Inserted { pos: 1, .. }
        ));
    }

    #[test]
    fn cpus_racing_to_insert_the_same_keys_exclusively_leave_one_winner_each() {
        // Two buckets, so every race meets in the same header lines and
        // some keys go to their second bucket. The racers start each key
        // together (a barrier), so their claims overlap within the few
        // nanoseconds the protocol's cases differ by; keys are taken out
        // again after each race, so the buckets never fill.
        const BUCKETS: usize = 2;
        const KEYS: u32 = 20_000;
        const RACERS: u32 = 2;
        let table: Arc<Vec<FlowBucket>> =
            Arc::new((0..BUCKETS).map(|_| FlowBucket::default()).collect());
        let start = Arc::new(std::sync::Barrier::new(RACERS as usize));
        let racers: Vec<_> = (0..RACERS)
            .map(|cpu| {
                let table = Arc::clone(&table);
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    let base = table.as_ptr() as *mut FlowBucket;
                    (0..KEYS)
                        .map(|n| {
                            let k = key(n);
                            let (first, second) = candidates(base, BUCKETS as u32, &k);
                            start.wait();
                            let claimed = loop {
                                let claimed = unsafe {
                                    insert_new(first, second, &k, &entry(cpu, &k), flow_hash(&k))
                                };
                                if claimed != Claimed::Contended {
                                    break claimed;
                                }
                            };
                            // Both done: count the copies, then the
                            // winner takes its key out again.
                            start.wait();
                            let copies = (0..2 * FLOW_WAYS)
                                .filter(|&pos| {
                                    let bucket = bucket_at(first, second, pos);
                                    (pos < FLOW_WAYS || second != first)
                                        && unsafe { read_way(bucket, pos % FLOW_WAYS) }
                                            .is_some_and(|(held, _)| held == k)
                                })
                                .count();
                            let pending = (0..FLOW_WAYS).any(|w| {
                                [first, second].iter().any(|b| {
                                    tag_state(unsafe { tag_at(*b, w) }.load()) == TAG_PENDING
                                })
                            });
                            start.wait();
                            if let Claimed::Inserted { pos, tag } = claimed {
                                let bucket = bucket_at(first, second, pos);
                                assert!(unsafe { release_way(bucket, pos % FLOW_WAYS, tag) });
                            }
                            (claimed, copies, pending)
                        })
                        .collect::<Vec<(Claimed, usize, bool)>>()
                })
            })
            .collect();
        let results: Vec<Vec<(Claimed, usize, bool)>> = racers
            .into_iter()
            .map(|racer| racer.join().expect("racer"))
            .collect();
        for n in 0..KEYS as usize {
            let winners = results
                .iter()
                .filter(|r| matches!(r[n].0, Claimed::Inserted { .. }))
                .count();
            assert_eq!(winners, 1, "key {n}: {winners} winners");
            assert_eq!(results[0][n].1, 1, "key {n}: copies");
            assert!(!results[0][n].2, "key {n}: a copy left pending");
            for r in &results {
                assert!(
                    matches!(r[n].0, Claimed::Inserted { .. } | Claimed::Taken(_)),
                    "key {n}: {:?}",
                    r[n].0
                );
            }
        }
    }

    #[test]
    fn sizes_are_a_power_of_two_of_buckets_and_a_line_per_way() {
        assert_eq!(core::mem::size_of::<FlowSlot>(), 64);
        assert_eq!(core::mem::size_of::<FlowBucket>(), 64 * (FLOW_WAYS + 1));
        assert_eq!(core::mem::size_of::<[u64; FLOW_WAYS]>(), 64);
        assert_eq!(FLOW_BYTES_PER_ENTRY, 72);
        assert_eq!(buckets_for(262_144), 65_536);
        assert_eq!(buckets_for(1000), 256);
        assert_eq!(buckets_for(16 * 1024 * 1024), 4 * 1024 * 1024);
        assert_eq!(buckets_for(1), 1);
        assert_eq!(
            half_open_buckets_for(crate::consts::HALF_OPEN_SIZE_DEFAULT),
            crate::consts::HALF_OPEN_BUCKETS
        );
        assert_eq!(half_open_buckets_for(1024), 128);
        assert_eq!(half_open_buckets_for(1025), 256);
        assert_eq!(half_open_buckets_for(1), 1);
    }
}
