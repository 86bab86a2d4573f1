//! The exclusive insert (the NAT flow table's): never evicts, and of any
//! number of CPUs inserting one key exactly one wins; source-port probes
//! read the buckets' headers alone.

use super::*;

/// Ways a bucket's `empty_ways` may take a new key into while the flow
/// stays in its first bucket (`PREFER_FIRST_BELOW` of them).
pub(super) const PREFER_MASK: u64 = (1 << PREFER_FIRST_BELOW) - 1;

/// `x`, a value the compiler cannot see through. The branch-free bit
/// arithmetic below would otherwise be folded back into comparisons,
/// which the BPF backend (without a set-on-condition instruction) turns
/// into branches with a constant on each side: the verifier then follows
/// one path per combination of ways (2^16 for two headers) instead of
/// one.
#[inline(always)]
pub(super) fn opaque(x: u64) -> u64 {
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
pub(super) fn empty_bit(tag: u64) -> u64 {
    opaque(!(tag | opaque(tag >> 1)) & 1)
}

/// 1 if `x` is not zero, else 0 (no branch, as `empty_bit`).
#[inline(always)]
pub(super) fn non_zero(x: u64) -> u64 {
    opaque((x | opaque(x.wrapping_neg())) >> 63)
}

/// A bit per empty way of `bucket` (bit `w`: way `w`), computed without a
/// branch per way: the BPF verifier follows one path through the header
/// instead of one per way and outcome.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub(super) unsafe fn empty_ways<V>(bucket: *mut Bucket<V>) -> u64 {
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
pub(super) unsafe fn carries_fp<V>(bucket: *mut Bucket<V>, fp: u32) -> u64 {
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
pub(super) fn lowest_way(mask: u64) -> usize {
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
pub(super) fn placement(low: u64, high: u64) -> Option<(bool, usize)> {
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
    /// key, which took this one's copy out; `standing_copy` finds it).
    Taken(usize),
    /// Both buckets are full: nothing was written.
    Full,
    /// The way chosen was taken by another CPU's insert (of another key)
    /// in the same instant, and so was the one chosen on a second read of
    /// the headers (`insert_new`; `insert_new_once` answers at the first);
    /// or, never in practice, the claimed way was changed under this
    /// insert. Nothing was published; the caller may try again.
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
/// alone) is claimed (`EMPTY` -> `BUSY`; a way another CPU claimed first
/// is given up, once, for the one the rule picks on the headers read
/// again), the key and value written, and
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
    // SAFETY: per the caller's contract.
    unsafe { insert_new_from(first, second, key, entry, hash, None, true) }
}

/// `insert_new` with one claim: `Contended` as soon as the way it picks
/// is lost, for a caller with another key to try anyway (the data
/// plane's source-port search, whose next candidate is another port).
/// The BPF verifier then follows one claim at its call sites, not two.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
pub unsafe fn insert_new_once<V: Copy>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    key: &FlowKey,
    entry: &V,
    hash: u32,
) -> Claimed {
    // SAFETY: per the caller's contract.
    unsafe { insert_new_from(first, second, key, entry, hash, None, false) }
}

/// The empty ways of `first` and `second` (`second`'s: 0 when it is
/// `first`), as `insert_new` reads them before its claim.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
pub(super) unsafe fn empty_pair<V>(first: *mut Bucket<V>, second: *mut Bucket<V>) -> (u64, u64) {
    // SAFETY: per the caller's contract.
    let low = unsafe { empty_ways(first) };
    let high = if second != first {
        // SAFETY: as above.
        unsafe { empty_ways(second) }
    } else {
        0
    };
    (low, high)
}

/// `insert_new` (`retry`; else `insert_new_once`), its first claim made
/// from the empty ways `seen` (as read a moment before, `empty_pair`;
/// None: read them now). Lets a test step a claim that loses its way to
/// another CPU's insert in the instant between the read and its
/// compare-and-swap.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
pub(super) unsafe fn insert_new_from<V: Copy>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    key: &FlowKey,
    entry: &V,
    hash: u32,
    seen: Option<(u64, u64)>,
    retry: bool,
) -> Claimed {
    let fp = fingerprint(hash);
    let two = second != first;
    let seen = match seen {
        Some(masks) => masks,
        // SAFETY: per the caller's contract.
        None => unsafe { empty_pair(first, second) },
    };
    // SAFETY: as above.
    let claim = match unsafe { claim_way(first, second, fp, seen) } {
        // Lost to another CPU's claim (of another key, between the read
        // of the headers and the CAS): a lost race is neither a full
        // table nor a taken key, and the data plane must not answer it
        // as one (it dropped the SYN as `DropNatTableFull`). The headers
        // read again (the way lost is no longer empty) and the way the
        // rule picks then claimed; losing twice in a row takes two other
        // inserts into the same pair of buckets within nanoseconds.
        // Written out, not a loop: the verifier's paths meet again after
        // it (a loop's are kept apart until it ends).
        // SAFETY: as above.
        Err(Claimed::Contended) if retry => unsafe {
            claim_way(first, second, fp, empty_pair(first, second))
        },
        first_claim => first_claim,
    };
    let (bucket, base, way, claimed) = match claim {
        Ok(claim) => claim,
        Err(refused) => return refused,
    };
    let mine = base + way;
    // SAFETY: as above; the index is masked into the bucket.
    let tag = unsafe { tag_at(bucket, way) };
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
        // A lower pending copy of the key took ours out: it stands (see
        // `standing_copy`).
        Claimed::Taken(NOWHERE)
    }
}

/// Where a copy of a key (table hash `hash`) most likely stands in its
/// buckets `first` and `second` after `insert_new` answered
/// `Taken(NOWHERE)`: a lower pending copy took that insert's out, and
/// stands (or one lower still, that took it out), published or about to
/// be. The lowest position valid or pending under the key's fingerprint
/// (this insert's own copy, emptied, no longer carries it), `NOWHERE` if
/// none; from the header lines, so the caller confirms the key there
/// (`holds_key`). Not part of `insert_new`: only a caller that uses the
/// copy (a packet joining a flow another CPU opened in the same instant)
/// pays for it.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
pub unsafe fn standing_copy<V>(first: *mut Bucket<V>, second: *mut Bucket<V>, hash: u32) -> usize {
    // SAFETY: per the caller's contract.
    let copies = unsafe { copies_of(first, second, fingerprint(hash), second != first) };
    lowest_position(copies)
}

/// The lowest position set in `mask` (bits 0 to `2 * FLOW_WAYS - 1`),
/// `NOWHERE` when none is: `lowest_way` over both buckets' positions.
#[inline(always)]
pub(super) fn lowest_position(mask: u64) -> usize {
    let below = opaque(mask & mask.wrapping_neg()).wrapping_sub(1) & 0xffff;
    let x = below - ((below >> 1) & 0x5555);
    let x = (x & 0x3333) + ((x >> 2) & 0x3333);
    let x = (x + (x >> 4)) & 0x0f0f;
    ((x + (x >> 8)) & 0x1f) as usize
}

/// Claims (`EMPTY` -> `BUSY` under fingerprint `fp`) the way the
/// two-choice rule picks from the empty ways `(low, high)` of `first` and
/// `second`: its bucket, that bucket's first position, the way and the
/// tag it now has; `Full` when there is none, `Contended` when another
/// CPU's claim took the way since the masks were read.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
#[allow(clippy::type_complexity)]
pub(super) unsafe fn claim_way<V>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    fp: u32,
    (low, high): (u64, u64),
) -> Result<(*mut Bucket<V>, usize, usize, u64), Claimed> {
    let Some((in_second, way)) = placement(low, high) else {
        return Err(Claimed::Full);
    };
    let (bucket, base) = if in_second {
        (second, FLOW_WAYS)
    } else {
        (first, 0)
    };
    // SAFETY: per the caller's contract; the index is masked into the
    // bucket.
    let tag = unsafe { tag_at(bucket, way) };
    let seen = tag.load();
    let claimed = with_way(tag_with(seen, fp, TAG_BUSY, 0), way);
    if tag_state(seen) != TAG_EMPTY || !tag.swap_if(seen, claimed) {
        return Err(Claimed::Contended);
    }
    Ok((bucket, base, way, claimed))
}

/// A bit per position (the first bucket's ways, then the second's) whose
/// way is valid or pending under fingerprint `fp`, from the two header
/// lines, without a branch.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
pub(super) unsafe fn copies_of<V>(
    first: *mut Bucket<V>,
    second: *mut Bucket<V>,
    fp: u32,
    two: bool,
) -> u64 {
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
pub(super) fn holds_fp(tag: u64, fp: u32) -> u64 {
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
pub(super) unsafe fn settle_new<V>(
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
pub(super) unsafe fn settle_new_in<V>(
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
pub(super) unsafe fn key_difference<V>(bucket: *const Bucket<V>, way: usize, key: &FlowKey) -> u64 {
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
pub(super) fn take_out_if(other: Tag, seen: u64, goes: u64) -> u64 {
    let emptied = tag_with(seen, 0, TAG_EMPTY, 0);
    let found = other.swap_seen(seen, seen ^ ((seen ^ emptied) & 0u64.wrapping_sub(goes)));
    let kept = non_zero(found ^ seen);
    goes & kept & (1 ^ non_zero(other.load() ^ retagged(seen, TAG_VALID)))
}

#[cfg(test)]
#[path = "exclusive_tests.rs"]
mod tests;
