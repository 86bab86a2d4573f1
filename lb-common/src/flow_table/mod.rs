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
//! never taken for theirs. A tracked flow's refresh (`refresh`) is a CAS
//! from the tag the reader saw, so its rank never lands on a way that
//! changed hands; new flags are written under a claim, as `rewrite`
//! writes, for the same reason. A refresh of the age alone stores the
//! last-seen time after its CAS, unclaimed: that store may land in a flow
//! just put in the way, which is harmless (see `begin_refresh`). A way
//! whose entry is rewritten keeps the flow's key and fingerprint while it
//! is claimed: lookups miss it, but an insert of the flow finds it there
//! (`Placed::Found`), never putting a second copy beside it (`scan`), and
//! the data plane neither charges nor inserts a packet that missed a
//! flow whose fingerprint a claimed way carries (`written_under`). Two
//! CPUs inserting the same flow at once may claim two ways (in one bucket
//! or in both); each re-reads both buckets after publishing (the CAS is a
//! full barrier), and the copy at the higher position is taken out by
//! whichever CPU sees both, so one entry survives. Flows never move
//! between buckets.
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

/// Another mix of the whole hash (lowbias32, Chris Wellons' integer
/// hash, seeded), so a second bucket is independent of the first bucket
/// and of the fingerprint (one computed from the fingerprint would gather
/// flows of one fingerprint).
#[inline(always)]
const fn remix(hash: u32) -> u32 {
    let mut h = hash ^ 0x9e37_79b9;
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^= h >> 16;
    h
}

/// A second bucket anywhere in the table (`SecondBucket::Anywhere`: the
/// NAT flow table's, and the connection table's before
/// `nearby_bucket_index`). May equal the first (always, in a one-bucket
/// table).
#[inline(always)]
pub const fn second_bucket_index(hash: u32, mask: u32) -> u32 {
    remix(hash) & mask
}

/// Buckets in the aligned group a connection-table flow's two buckets
/// share: 64 buckets of `FlowBucket`'s 576 bytes are 9 pages of 4 KiB.
pub const BUCKET_GROUP: u32 = 64;

/// A second bucket near the first (`SecondBucket::Nearby`, the
/// connection table's): another bucket of the first's aligned group of
/// `BUCKET_GROUP`, picked by `remix`. A lookup that misses its flow's
/// first bucket reads the second: near the first, the page tables that
/// map it were just walked for the first, where a bucket anywhere in a
/// table of millions of flows costs a cold page walk of its own (an
/// 8 M-entry table's first ACKs cost about a fifth less, see
/// docs/design/conntrack.md). Among the group's 63 other buckets it
/// balances as one anywhere does: filled to `conntrack_size`, simulated
/// tables evicted no live flow with either. Differs from the first in
/// every table of more than one bucket.
#[inline(always)]
pub const fn nearby_bucket_index(hash: u32, mask: u32) -> u32 {
    let offset = remix(hash) & (BUCKET_GROUP - 1) & mask;
    let offset = if offset == 0 { 1 & mask } else { offset };
    bucket_index(hash, mask) ^ offset
}

/// Where a table of this layout puts a flow's second bucket. The data
/// plane and lbd must agree, table by table: a flow in a bucket its
/// reader does not look in is lost to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondBucket {
    /// `nearby_bucket_index`: the connection table (`FLOW_BUCKETS`; the
    /// half-open table uses its first bucket only).
    Nearby,
    /// `second_bucket_index`: the NAT flow table (`NAT_BUCKETS`), and the
    /// connection tables that releases before `Nearby` left pinned (lbd
    /// moves their flows, see `lb_userspace::conntrack::table::FlowTable::re_place`).
    Anywhere,
}

impl SecondBucket {
    /// The second bucket of a flow with hash `hash` in a table of
    /// `mask + 1` buckets.
    #[inline(always)]
    pub const fn index(self, hash: u32, mask: u32) -> u32 {
        match self {
            SecondBucket::Nearby => nearby_bucket_index(hash, mask),
            SecondBucket::Anywhere => second_bucket_index(hash, mask),
        }
    }
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

mod exclusive;
mod insert;
mod lookup;
mod refresh;
mod remove;
mod tag;

pub use exclusive::*;
pub use insert::*;
pub use lookup::*;
pub use refresh::*;
pub use remove::*;
pub use tag::*;

#[cfg(test)]
mod tests;
