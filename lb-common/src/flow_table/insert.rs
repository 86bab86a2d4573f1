//! The connection and half-open tables' insert: find or claim a way,
//! evicting by the header's ranks when both buckets are full, and settle
//! duplicates two CPUs inserting one flow may leave.

use super::*;

/// Where a flow's lookup or insert landed. Positions count the first
/// bucket's ways (0 to `FLOW_WAYS - 1`), then the second's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    /// The flow was in the table, at this position: published, or its
    /// way held by a writer (its entry being rewritten, or another CPU
    /// inserting it), so not to be inserted beside it (see `scan`).
    Found(usize),
    /// The flow was inserted at this position (into an empty way, or in
    /// place of the flow `find_or_insert_within`'s `evicted` was told of).
    Inserted(usize),
    /// Not inserted: every way is being written by another CPU, or the
    /// claim lost a race (the caller forwards the packet untracked).
    Contended,
}

/// What a scan of one bucket for an insert saw.
pub(super) struct Scan {
    /// The way holding the flow (published or being written, see
    /// `scan`), or `FLOW_WAYS`.
    found: usize,
    /// An empty way among the first `PREFER_FIRST_BELOW`.
    low_room: bool,
    /// An empty way anywhere.
    room: bool,
}

/// Scans `bucket` for `key` (fingerprint `fp`) and for empty ways. A way
/// a writer holds under the key (`carries`) is the flow too, being
/// written: a tracked flow whose entry is rewritten in place (`rewrite`,
/// `begin_refresh`: lbd's installs, the data plane's FIN or RST) keeps
/// its key and fingerprint while it is `TAG_BUSY`, and a lookup misses
/// it meanwhile; an insert that went on would leave a second copy beside
/// it once it is published, which nothing settles. Or another CPU is
/// inserting the flow, its key written: its copy is about to stand (no
/// settlement takes out a way a writer holds).
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub(super) unsafe fn scan<V>(bucket: *mut Bucket<V>, key: &FlowKey, fp: u32) -> Scan {
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
        if unsafe { carries(bucket, way, key, fp, tag) } {
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

/// The lowest `victim_order_within` (`horizons`) of `bucket`'s ways, and
/// the tag of the (first) way that has it. The tag names the way (its
/// version holds the way's number) and the flow in it: the claim takes
/// the way holding that tag still, without working out any order again.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub(super) unsafe fn best_victim<V>(
    bucket: *mut Bucket<V>,
    now_ticks: u32,
    horizons: u64,
) -> (u32, u64) {
    let mut best = (u32::MAX, 0);
    let mut way = 0;
    while way < FLOW_WAYS {
        // SAFETY: per the caller's contract.
        let tag = unsafe { tag_at(bucket, way) }.load();
        let order = victim_order_within(tag, now_ticks, horizons);
        if order < best.0 {
            best = (order, tag);
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
pub(super) unsafe fn claim_way<V: Copy>(
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
/// bucket that `victim_order` puts first is evicted. A half-open flow (`rank` of `CLASS_HALF_OPEN`: a TCP
/// SYN) evicts only a way whose flow is over (`TIER_OVER`: closed, an
/// expired handshake or datagram flow), never a handshake in time nor a
/// connection, idle or not (`evict_below`): with none, `Contended`, and
/// its SYN goes to the half-open table.
///
/// A flow whose way a writer holds (`TAG_BUSY` under its key: its entry
/// being rewritten, or another CPU inserting it) is `Found` there, never
/// inserted a second time (see `scan`).
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
    // The data plane's flow was seen now: its rank's tick is the clock.
    // SAFETY: per the caller's contract.
    unsafe {
        find_or_insert_ranked(
            first,
            second,
            key,
            entry,
            (rank, None),
            hash,
            (|| DEFAULT_IDLE_HORIZONS, |_| {}),
        )
    }
}

/// `find_or_insert` with the idle horizons `horizons()` returns (packed
/// as `DEFAULT_IDLE_HORIZONS`; the data plane's, as lbd wrote them):
/// asked only when both buckets are full, where the eviction order needs
/// them (a flow idle past its class's horizon goes before any live one),
/// so an insert with room reads nothing more. `evicted` is told the
/// eviction tier (`TIER_OVER` to `TIER_LIVE`) of the flow whose way the
/// insert took, as soon as it took it, and `TIER_EMPTY` by an insert
/// into two full buckets whose claim another CPU won: the data plane
/// counts the open connections it evicts. Told there, not in the result: a value the
/// insert carried past its duplicate check kept the BPF verifier's paths
/// of the eviction and of an empty way apart (about 43 k more verified
/// instructions).
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
pub unsafe fn find_or_insert_within<V: Copy>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    key: &FlowKey,
    entry: &V,
    (rank, hash): (u32, u32),
    (horizons, evicted): (impl Fn() -> u64, impl Fn(u32)),
) -> Placed {
    // SAFETY: per the caller's contract.
    unsafe {
        find_or_insert_ranked(
            first,
            second,
            key,
            entry,
            (rank, None),
            hash,
            (horizons, evicted),
        )
    }
}

/// `find_or_insert` for a flow last seen before now (lbd's inserts: a
/// peer's copy, a flow carried over from another table or moved to its
/// place, whose rank word holds its own last-seen tick): the first
/// bucket's ways are ordered by their ages at `now_ticks` (`ticks` of
/// the current time; the rank's tick would make every way seen since
/// look aged past the tick wrap, i.e. expired, and evict the freshest
/// flows first), and a way is evicted only if `victim_order` puts it
/// below the flow itself at `now_ticks` (`evict_limit`): a copy of a live
/// flow takes an empty, closed, expired, half-open or idle-open way or a
/// live one seen before it, never a flow seen more recently; a copy of an
/// idle-open connection anything but a live flow or an idle-open one seen
/// more recently; a closed or expired copy only an older closed or
/// expired one.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
/// lbd inserts through `find_or_insert_at_within` with the configured
/// horizons; this one, with the defaults, is the unit tests'.
#[cfg(test)]
#[inline(always)]
pub unsafe fn find_or_insert_at<V: Copy>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    key: &FlowKey,
    entry: &V,
    (rank, now_ticks): (u32, u32),
    hash: u32,
) -> Placed {
    // SAFETY: per the caller's contract.
    unsafe {
        find_or_insert_at_within(
            first,
            second,
            key,
            entry,
            (rank, now_ticks),
            hash,
            DEFAULT_IDLE_HORIZONS,
        )
    }
}

/// `find_or_insert_at` with the idle horizons `horizons` (packed as
/// `DEFAULT_IDLE_HORIZONS`): the ways, and the flow itself
/// (`evict_limit_within`), ordered as the data plane orders them with the
/// horizons lbd wrote (`victim_order_within`), so a replica or a flow
/// carried over never evicts a flow the data plane holds live (a TCP
/// flow idle past 15 minutes under a longer `tcp_idle_timeout_s`), and
/// takes a UDP flow idle past a shorter `udp_idle_timeout_s` as expired.
/// lbd's only (the data plane's inserts go through `find_or_insert_within`).
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
pub unsafe fn find_or_insert_at_within<V: Copy>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    key: &FlowKey,
    entry: &V,
    (rank, now_ticks): (u32, u32),
    hash: u32,
    horizons: u64,
) -> Placed {
    // SAFETY: per the caller's contract.
    unsafe {
        find_or_insert_ranked(
            first,
            second,
            key,
            entry,
            (rank, Some(now_ticks)),
            hash,
            (|| horizons, |_| {}),
        )
    }
}

/// Whether an insert with rank word `rank` at `now_ticks` (see
/// `find_or_insert_at`) has a way to take in buckets `first` and
/// `second`: an empty one, or one of `first` below `evict_limit`. Tells
/// a full bucket (the insert is refused for good) from ways being
/// written (a retry may succeed); the answer may be stale by the time it
/// is read.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
/// lbd asks `has_room_at_within` with the configured horizons; this
/// one, with the defaults, is the unit tests'.
#[cfg(test)]
pub unsafe fn has_room_at<V>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    rank: u32,
    now_ticks: u32,
) -> bool {
    // SAFETY: per the caller's contract.
    unsafe { has_room_at_within(first, second, rank, now_ticks, DEFAULT_IDLE_HORIZONS) }
}

/// `has_room_at` with the idle horizons `horizons`, as
/// `find_or_insert_at_within` judges the ways (so a full bucket is told
/// from a busy one by the same order that refused the insert).
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
pub unsafe fn has_room_at_within<V>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    rank: u32,
    now_ticks: u32,
    horizons: u64,
) -> bool {
    let now_ticks = now_ticks & TICK_MASK;
    // SAFETY: per the caller's contract.
    unsafe {
        best_victim(first, now_ticks, horizons).0 < evict_limit_within(rank, now_ticks, horizons)
            || (0..FLOW_WAYS).any(|way| tag_state(tag_at(second, way).load()) == TAG_EMPTY)
    }
}

/// `find_or_insert` with the rank word and the current tick: None for
/// the data plane's inserts (the rank's own tick, any way but a writer's
/// evicted as `evict_below` says), or lbd's (`find_or_insert_at`). Both
/// worked out only where a full bucket needs them, so the data plane's
/// code is what it was before lbd's clock was added; so are the idle
/// horizons (`horizons()`, see `find_or_insert_within`, as `evicted`).
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
unsafe fn find_or_insert_ranked<V: Copy>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    key: &FlowKey,
    entry: &V,
    (rank, clock): (u32, Option<u32>),
    hash: u32,
    (horizons, evicted): (impl Fn() -> u64, impl Fn(u32)),
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
            // The data plane's arm (None) as it was: the horizons asked
            // after its limit, as before lbd's inserts took them too.
            let (now_ticks, below, horizons) = match clock {
                None => (rank >> 2, evict_below(rank), horizons()),
                Some(now) => {
                    let horizons = horizons();
                    (
                        now & TICK_MASK,
                        evict_limit_within(rank, now, horizons),
                        horizons,
                    )
                }
            };
            let (best, held) = best_victim(first, now_ticks, horizons);
            if best >= below {
                return Placed::Contended;
            }
            // The way still as it was seen (else another CPU has taken or
            // refreshed it: `Contended`, as a lost CAS).
            let victim = |tag: u64| tag == held;
            let claimed = claim_way(first, key, entry, fp, rank, victim);
            // The victim is gone whatever the duplicate check finds (a
            // copy another CPU put in meanwhile, which stays). Told
            // without a branch (`TIER_EMPTY` for a lost claim): a branch
            // here kept the verifier's paths apart (8 k instructions).
            let won = 0u32.wrapping_sub(u32::from(claimed.is_some()));
            evicted((best >> TIER_SHIFT) & won);
            (claimed, 0)
        }
    };
    match claimed {
        // SAFETY: as above.
        Some((way, tag)) => unsafe { settle_duplicate(first, second, key, fp, base + way, tag) },
        None => Placed::Contended,
    }
}

/// The `victim_order` at and above which an insert with rank word `rank`
/// evicts nothing: a half-open flow (a SYN, which anyone may send) takes
/// only empty ways and flows that are over (`TIER_OVER`: closed, an
/// expired handshake or datagram flow), never a handshake in time nor an
/// open connection, however long idle (`TIER_IDLE_OPEN`: its next packet
/// still goes by its entry); any other flow anything but a way a writer
/// owns, the lowest tier first.
#[inline(always)]
pub const fn evict_below(rank: u32) -> u32 {
    if rank_class(rank) == CLASS_HALF_OPEN {
        TIER_HANDSHAKE << TIER_SHIFT
    } else {
        u32::MAX
    }
}

/// How far (ticks, about a second) a rank's tick may be ahead of the
/// clock `evict_limit` is given and still count as seen now: a flow
/// stamped a moment after the clock was read. A tick farther ahead is
/// behind the clock by nearly the whole wrap (a flow idle that long),
/// not ahead of it: taken as seen now it would evict any live way. lbd
/// clamps its ranks to its clock before inserting
/// (`lb_userspace::conntrack::table`), so it never needs more.
pub const RANK_AHEAD_TICKS: u32 = 64;

/// The `victim_order` at and above which an insert of a flow last seen
/// before now (`find_or_insert_at`, rank word `rank`, current tick
/// `now_ticks`) evicts nothing: the flow's own order at `now_ticks` (it
/// takes only ways that would go before it), and never more than
/// `evict_below` allows its class. A rank whose tick is at most
/// `RANK_AHEAD_TICKS` ahead of `now_ticks` (a clock read a moment before
/// the flow was stamped) is taken as seen now, not as aged past the tick
/// wrap; any other is aged as `victim_order` ages a way (one idle past
/// half the wrap, 104 days, is expired, not ahead of the clock).
#[inline(always)]
pub const fn evict_limit(rank: u32, now_ticks: u32) -> u32 {
    let now_ticks = now_ticks & TICK_MASK;
    let ahead = (rank >> 2).wrapping_sub(now_ticks) & TICK_MASK;
    let rank = if ahead != 0 && ahead <= RANK_AHEAD_TICKS {
        (now_ticks << 2) | rank_class(rank)
    } else {
        rank
    };
    let own = victim_order(((rank as u64) << RANK_SHIFT) | TAG_VALID as u64, now_ticks);
    let class = evict_below(rank);
    if own < class {
        own
    } else {
        class
    }
}

/// `evict_limit` with the idle horizons `horizons` (packed as
/// `DEFAULT_IDLE_HORIZONS`): the flow's own `victim_order_within`, so it
/// is expired, and evicts only what is, by the horizons the ways are
/// judged by (`find_or_insert_at_within`). `evict_limit` is this with
/// the defaults (its `victim_order` orders every tag as
/// `victim_order_within` of `DEFAULT_IDLE_HORIZONS` does).
#[inline(always)]
pub const fn evict_limit_within(rank: u32, now_ticks: u32, horizons: u64) -> u32 {
    let now_ticks = now_ticks & TICK_MASK;
    let ahead = (rank >> 2).wrapping_sub(now_ticks) & TICK_MASK;
    let rank = if ahead != 0 && ahead <= RANK_AHEAD_TICKS {
        (now_ticks << 2) | rank_class(rank)
    } else {
        rank
    };
    let own = victim_order_within(
        ((rank as u64) << RANK_SHIFT) | TAG_VALID as u64,
        now_ticks,
        horizons,
    );
    let class = evict_below(rank);
    if own < class {
        own
    } else {
        class
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
        let age = lead_age(now_ticks, tag_rank(tag) >> 2);
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
        TAG_VALID if victim_order(seen, now_ticks) >> TIER_SHIFT == TIER_OVER => {
            HalfOpenPlaced::Expired
        }
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

/// Whether way `way` of `bucket`, whose tag is `tag`, carries `key`
/// (fingerprint `fp`): published (`TAG_VALID`, as `holds`) or held by a
/// writer. A writer's way is read while it may be written: its key is
/// the flow's own while a rewrite holds it (a rewrite never changes the
/// key), a key being put there while an insert holds it, which may read
/// as either (the insert's own `settle_duplicate` then settles).
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub(super) unsafe fn carries<V>(
    bucket: *mut Bucket<V>,
    way: usize,
    key: &FlowKey,
    fp: u32,
    tag: u64,
) -> bool {
    tag_state(tag) != TAG_EMPTY
        && tag_fingerprint(tag) == fp
        // SAFETY: per the caller's contract.
        && unsafe { key_is(bucket, way, key) }
}

/// Whether way `way` of `bucket` holds `key` (fingerprint `fp`), as
/// `tag`.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub(super) unsafe fn holds<V>(
    bucket: *mut Bucket<V>,
    way: usize,
    key: &FlowKey,
    fp: u32,
    tag: u64,
) -> bool {
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
pub(super) unsafe fn settle_duplicate<V>(
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
pub(super) unsafe fn settle_in<V>(
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
pub(super) unsafe fn release_in<V>(bucket: *mut Bucket<V>, base: usize, mine: usize, my_tag: u64) {
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
