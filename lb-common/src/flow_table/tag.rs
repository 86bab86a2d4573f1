//! A way's tag: its state, version, fingerprint and eviction rank in one
//! 64-bit word, and the loads, stores and compare-and-swaps on it that
//! make the tag each way's lock.

use super::*;

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
pub(super) const STATE_MASK: u64 = 3;
pub(super) const VERSION_SHIFT: u32 = 2;
pub(super) const VERSION_MASK: u64 = 0x3fff;
pub(super) const FP_SHIFT: u32 = 16;
pub(super) const FP_MASK: u64 = 0xffff;
pub(super) const RANK_SHIFT: u32 = 32;

/// Flow class in a rank word: FIN or RST seen.
pub const CLASS_CLOSED: u32 = 0;
/// Flow class: a TCP SYN seen, no ACK from the client yet.
pub const CLASS_HALF_OPEN: u32 = 1;
/// Flow class: an established TCP flow (and a UDP flow an lbd before
/// the datagram class installed, whose ranks came from `class_of`, which
/// knows no protocol: the data plane's next packet of it ranks it
/// `CLASS_DATAGRAM`; lbd's installs rank UDP flows `CLASS_DATAGRAM`).
pub const CLASS_ESTABLISHED: u32 = 2;
/// Flow class: a flow of any protocol but TCP (UDP), which has no
/// handshake and no close: idle past the datagram horizon
/// (`udp_horizon`), it is over. Its own class so that eviction, which
/// reads nothing but the bucket's header, can hold it to that horizon.
pub const CLASS_DATAGRAM: u32 = 3;
pub(super) const CLASS_MASK: u32 = 3;
/// Rank ticks are `ns >> TICK_SHIFT` (16.8 ms), kept in 30 bits (208 days
/// before they wrap; ages are taken modulo that).
pub const TICK_SHIFT: u32 = 24;
/// The rank ticks' 30 bits (`ticks`): ages are taken modulo this plus one.
pub const TICK_MASK: u32 = 0x3fff_ffff;
/// A half-open flow idle this long (ticks, ~10 s) is expired.
pub const HALF_OPEN_IDLE_TICKS: u32 = (10_000_000_000u64 >> TICK_SHIFT) as u32;
/// An established flow idle this long (ticks, ~15 min, IPVS's TCP
/// established timeout) is expired: evicted before any live flow. The
/// data plane's horizon for both classes while no lbd has written
/// others (`idle_horizons_word`), and lbd's own (`victim_order`).
pub const ESTABLISHED_IDLE_TICKS: u32 = (900_000_000_000u64 >> TICK_SHIFT) as u32;

/// Both idle horizons in one word, as `victim_order_within` takes them:
/// `CLASS_ESTABLISHED`'s (TCP) in the high 32 bits, `CLASS_DATAGRAM`'s
/// (UDP) in the low 32, in rank ticks.
pub const DEFAULT_IDLE_HORIZONS: u64 =
    ((ESTABLISHED_IDLE_TICKS as u64) << 32) | ESTABLISHED_IDLE_TICKS as u64;

/// The shortest idle timeout the data plane is given: twice
/// `FLOW_TOUCH_INTERVAL_NS`. A flow's rank is refreshed at most once per
/// touch interval, so with a horizon as short as that a flow whose
/// packets come every second could look idle between two of them (and
/// a UDP flow be re-picked while in use); the data plane also skips the
/// horizon for a flow seen within the interval.
pub const MIN_IDLE_HORIZON_NS: u64 = 2 * crate::consts::FLOW_TOUCH_INTERVAL_NS;

/// `MIN_IDLE_HORIZON_NS` in rank ticks, as a flow's age is read: ages are
/// differences of whole ticks, so a flow last refreshed `d` ns ago can be
/// up to `ceil(d / tick)` ticks old (its refresh late in its tick, the
/// packet early in another). Rounded up, and one tick more for the jitter
/// of packets that come about every second: a flow refreshed 2 s ago is
/// never over. (Rounded down it was 119 ticks, 1.997 s, and a UDP flow
/// with a packet every 999 ms was re-picked in most phases.)
pub const MIN_IDLE_HORIZON_TICKS: u32 = (MIN_IDLE_HORIZON_NS.div_ceil(1 << TICK_SHIFT) + 1) as u32;

/// Rank ticks of an idle timeout of `ns`, as the data plane is given it:
/// at least `MIN_IDLE_HORIZON_TICKS`, at most the ages `victim_order`
/// tells apart (2^28 ticks: 52 days).
#[inline(always)]
pub const fn horizon_ticks(ns: u64) -> u32 {
    let ticks = ns >> TICK_SHIFT;
    if ticks < MIN_IDLE_HORIZON_TICKS as u64 {
        MIN_IDLE_HORIZON_TICKS
    } else if ticks > 0x0fff_ffff {
        0x0fff_ffff
    } else {
        ticks as u32
    }
}

/// The word lbd writes to the data plane's `IDLE_HORIZONS` for horizons
/// of `tcp` and `udp` rank ticks (`horizon_ticks`): the horizons packed
/// as `DEFAULT_IDLE_HORIZONS` packs them, XOR-ed with it, so a map lbd
/// has not written (zero: a test's, or a moment after the load) reads as
/// the defaults, not as horizons of no time at all.
#[inline(always)]
pub const fn idle_horizons_word(tcp: u32, udp: u32) -> u64 {
    (((tcp as u64) << 32) | udp as u64) ^ DEFAULT_IDLE_HORIZONS
}

/// The horizons (as `victim_order_within` takes them) of a word of
/// `IDLE_HORIZONS` (`idle_horizons_word`).
#[inline(always)]
pub const fn idle_horizons_of(word: u64) -> u64 {
    word ^ DEFAULT_IDLE_HORIZONS
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
pub(super) const WAY_IN_VERSION: u64 = FLOW_WAYS as u64 - 1;

/// The way a claimed tag belongs to (see `WAY_IN_VERSION`).
#[inline(always)]
pub const fn tag_way(tag: u64) -> usize {
    ((tag >> VERSION_SHIFT) & WAY_IN_VERSION) as usize
}

/// `tag` claimed for way `way`.
#[inline(always)]
pub(super) const fn with_way(tag: u64, way: usize) -> u64 {
    (tag & !(WAY_IN_VERSION << VERSION_SHIFT)) | (((way as u64) & WAY_IN_VERSION) << VERSION_SHIFT)
}

/// `tag` for a new owner: next version (its way bits kept), fingerprint
/// `fp`, `state`, `rank`.
#[inline(always)]
pub(super) const fn tag_with(tag: u64, fp: u32, state: u32, rank: u32) -> u64 {
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
pub(super) const fn retagged(tag: u64, state: u32) -> u64 {
    (tag & !STATE_MASK) | state as u64
}

/// `tag` with another rank word.
#[inline(always)]
pub(super) const fn reranked(tag: u64, rank: u32) -> u64 {
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

/// `tag` ranked as `CLASS_DATAGRAM` (a UDP flow's tag, whatever class
/// its installer gave it: never closed nor half-open, so its class is
/// `CLASS_ESTABLISHED` or already this one).
#[inline(always)]
pub const fn as_datagram(tag: u64) -> u64 {
    tag | ((CLASS_DATAGRAM as u64) << RANK_SHIFT)
}

/// Eviction tier (`victim_order`'s top bits): an empty way.
pub const TIER_EMPTY: u32 = 0;
/// Eviction tier: a flow that is over: closed (FIN or RST seen), a
/// handshake idle past `HALF_OPEN_IDLE_TICKS`, a datagram (UDP) flow idle
/// past its horizon. Nothing steers by it any more (the tuple's next
/// packet is a new connection or a new datagram flow).
pub const TIER_OVER: u32 = 1;
/// Eviction tier: a handshake in time (a SYN seen, no ACK yet).
pub const TIER_HANDSHAKE: u32 = 2;
/// Eviction tier: an established TCP flow idle past the TCP horizon and
/// not closed: an open connection (a pooled database session, a
/// keepalive-less tunnel) whose next packet the entry still steers to its
/// backend. Evicted only before live flows, never by a SYN (`evict_below`).
pub const TIER_IDLE_OPEN: u32 = 3;
/// Eviction tier: a live flow (seen within its class's horizon).
pub const TIER_LIVE: u32 = 4;
/// Where the tier starts in an order word (`victim_order`): above the
/// 28 bits of the age.
pub const TIER_SHIFT: u32 = 28;

/// Eviction order of a way by its tag (lower goes first): empty
/// (`TIER_EMPTY`), then over (`TIER_OVER`: closed, an expired handshake,
/// a datagram flow idle past its horizon), then handshakes in time
/// (`TIER_HANDSHAKE`), then open TCP connections idle past the TCP
/// horizon (`TIER_IDLE_OPEN`), then live flows (`TIER_LIVE`); within
/// each, the least recently seen first. `u32::MAX`: never (a writer owns
/// it). Both established classes' horizon is `ESTABLISHED_IDLE_TICKS`
/// here (lbd's inserts judged by the defaults, the half-open table; the
/// data plane's take `victim_order_within` the horizons lbd wrote).
#[inline(always)]
pub const fn victim_order(tag: u64, now_ticks: u32) -> u32 {
    // Not `victim_order_within` of the defaults: the one horizon for both
    // classes keeps this the code it was (the half-open table's lookups
    // and inserts run it).
    match tag_state(tag) {
        TAG_EMPTY => 0,
        TAG_VALID => {
            let rank = tag_rank(tag);
            let age = lead_age(now_ticks, rank >> 2);
            let idle = age > ESTABLISHED_IDLE_TICKS + RANK_AHEAD_TICKS;
            let tier = match rank & CLASS_MASK {
                CLASS_CLOSED => TIER_OVER,
                CLASS_HALF_OPEN if age > HALF_OPEN_IDLE_TICKS + RANK_AHEAD_TICKS => TIER_OVER,
                CLASS_HALF_OPEN => TIER_HANDSHAKE,
                CLASS_DATAGRAM if idle => TIER_OVER,
                CLASS_DATAGRAM => TIER_LIVE,
                _ if idle => TIER_IDLE_OPEN,
                _ => TIER_LIVE,
            };
            let age = if age > 0x0fff_ffff { 0x0fff_ffff } else { age };
            (tier << TIER_SHIFT) | (0x0fff_ffff - age)
        }
        _ => u32::MAX,
    }
}

/// `victim_order` with the idle horizons `horizons` (packed as
/// `DEFAULT_IDLE_HORIZONS`): a `CLASS_ESTABLISHED` flow is idle-open
/// (`TIER_IDLE_OPEN`) past the high word's ticks, a `CLASS_DATAGRAM` flow
/// over past the low word's.
#[inline(always)]
pub const fn victim_order_within(tag: u64, now_ticks: u32, horizons: u64) -> u32 {
    match tag_state(tag) {
        TAG_EMPTY => 0,
        TAG_VALID => {
            const CAP: u32 = 0x0fff_ffff;
            let (_, tier, age) = standing(tag, now_ticks, horizons);
            // Older first; ages beyond 2^28 ticks (52 days) compare equal.
            let age = age ^ ((age ^ CAP) & 0u32.wrapping_sub(above(age, CAP)));
            (tier << TIER_SHIFT) | (CAP - age)
        }
        _ => u32::MAX,
    }
}

/// Whether the flow of valid tag `tag` is over at `now_ticks` with the
/// idle horizons `horizons` (see `victim_order_within`) for a packet
/// that would open a flow on its tuple (a SYN, a UDP packet): closed, or
/// idle past its class's horizon. That is `TIER_OVER`, and an open TCP
/// connection idle past the TCP horizon (`TIER_IDLE_OPEN`) too: a SYN on
/// its tuple is a new connection (a client reusing its port), though the
/// connection's own packets still go by its entry.
#[inline(always)]
pub const fn over_within(tag: u64, now_ticks: u32, horizons: u64) -> bool {
    standing(tag, now_ticks, horizons).0 != 0
}

/// The age in ticks of a rank stamped at tick `stamp` when the clock reads
/// `now_ticks`, plus `RANK_AHEAD_TICKS` (wrapped at `TICK_MASK`): so a
/// stamp up to `RANK_AHEAD_TICKS` ahead of the clock is young, not aged by
/// nearly the whole wrap. A packet path reads its clock once and inserts
/// later (in `settle_pending`, after the forward): meanwhile another CPU
/// may stamp a way of the same bucket with the next tick, which the plain
/// difference took for a flow idle past every horizon, the first to
/// evict (`evict_limit` treats the inserter's own rank the same way).
/// Horizons are compared with the same lead added. One addition per
/// call, where a clamp of each way's age cost the verifier 7 k
/// instructions (past the suite's bound).
#[inline(always)]
pub const fn lead_age(now_ticks: u32, stamp: u32) -> u32 {
    now_ticks.wrapping_add(RANK_AHEAD_TICKS).wrapping_sub(stamp) & TICK_MASK
}

/// 1 if `a > b`, else 0 (both below 2^32), without a branch.
#[inline(always)]
const fn above(a: u32, b: u32) -> u32 {
    ((b as u64).wrapping_sub(a as u64) >> 63) as u32
}

/// Of a valid tag at `now_ticks` with `horizons`: 1 if over (closed, or
/// idle past its class's horizon: `over_within`) else 0; its eviction
/// tier (`TIER_*`: 1 closed, an expired handshake or datagram flow; 2 a
/// handshake in time; 3 an established TCP flow idle past the TCP
/// horizon; 4 a live flow); its age in ticks.
///
/// Computed without a branch (masks and the sign of a 64-bit
/// difference, where `victim_order` matches on the class and compares):
/// the data plane runs it on every way of a full bucket and on a tracked
/// flow's SYN or UDP packet, and the BPF verifier walks every branch of
/// it apart, once per parser path.
#[inline(always)]
const fn standing(tag: u64, now_ticks: u32, horizons: u64) -> (u32, u32, u32) {
    let rank = tag_rank(tag);
    let age = lead_age(now_ticks, rank >> 2);
    let class = rank & CLASS_MASK;
    let closed = above(1, class);
    let half_open = above(2, class) & above(class, 0);
    // The class's horizon: the high word for `CLASS_ESTABLISHED` (2), the
    // low for `CLASS_DATAGRAM` (3), the handshake's for `CLASS_HALF_OPEN`.
    // Each horizon plus the age's lead (no carry: both are below 2^28).
    let horizons = horizons + (((RANK_AHEAD_TICKS as u64) << 32) | RANK_AHEAD_TICKS as u64);
    let horizon = (horizons >> (32 * (!class & 1))) as u32;
    let half_open_horizon = HALF_OPEN_IDLE_TICKS + RANK_AHEAD_TICKS;
    let horizon = horizon ^ ((horizon ^ half_open_horizon) & 0u32.wrapping_sub(half_open));
    let idle = above(age, horizon);
    // The tier of each class, in time and idle (`TIERS`), read by shifts
    // and a mask: a value the verifier knows is within 0..=7, where
    // arithmetic on the class bits left it a full 32-bit range (3.4 k
    // more verified instructions).
    let tier = (TIERS >> (3 * ((class << 1) | idle))) & 7;
    (idle | closed, tier, age)
}

/// `standing`'s tiers, three bits each, at bit `3 * (class * 2 + idle)`
/// (`idle`: past the class's horizon): a closed flow `TIER_OVER` either
/// way; a handshake `TIER_HANDSHAKE`, idle `TIER_OVER`; an established
/// (TCP) flow `TIER_LIVE`, idle `TIER_IDLE_OPEN` (still open: its packets
/// go by its entry); a datagram flow `TIER_LIVE`, idle `TIER_OVER`.
const TIERS: u32 = tiers([
    [TIER_OVER, TIER_OVER],
    [TIER_HANDSHAKE, TIER_OVER],
    [TIER_LIVE, TIER_IDLE_OPEN],
    [TIER_LIVE, TIER_OVER],
]);

/// `TIERS` packed from a table of `[in time, idle]` per class.
const fn tiers(table: [[u32; 2]; 4]) -> u32 {
    let mut packed = 0;
    let mut class = 0;
    while class < 4 {
        packed |= table[class][0] << (6 * class);
        packed |= table[class][1] << (6 * class + 3);
        class += 1;
    }
    packed
}

/// A way's tag, as a handle for loads, stores and CAS.
///
/// # Safety
/// `bucket` must point to a live, 64-byte-aligned bucket.
#[inline(always)]
pub(super) unsafe fn tag_at<V>(bucket: *mut Bucket<V>, way: usize) -> Tag {
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
pub(super) struct Tag(*mut u64);

impl Tag {
    #[inline(always)]
    pub(super) fn load(self) -> u64 {
        // SAFETY: `tag_at` made the pointer from a live bucket.
        unsafe { core::ptr::read_volatile(self.0) }
    }

    /// Sets the tag to `new` if it is `old`; true if it did.
    #[inline(always)]
    pub(super) fn swap_if(self, old: u64, new: u64) -> bool {
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
    pub(super) fn swap_seen(self, old: u64, new: u64) -> u64 {
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
