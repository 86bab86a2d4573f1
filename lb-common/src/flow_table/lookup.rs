//! Finding a flow: the first bucket's header, a fingerprint match, the
//! way's line read as a seqlock; and reading ways in place (enumeration).

use super::*;

/// Whether the key in `way` equals `key` (word by word; keys are stored
/// canonical, with unused address words zero).
///
/// # Safety
/// `bucket` must point to a live bucket.
#[inline(always)]
pub(super) unsafe fn key_is<V>(bucket: *const Bucket<V>, way: usize, key: &FlowKey) -> bool {
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

/// Whether a way of `first` or `second` that a writer holds (`TAG_BUSY`,
/// or `TAG_PENDING`) carries the fingerprint of table hash `hash`, from
/// their header lines alone (no key compared, no branch per way): the
/// data plane's test, after its lookup missed a flow, of whether the
/// flow may be there after all, its way being written (a rewrite of its
/// entry, `rewrite` or `begin_refresh`, which `find` skips; or another
/// CPU's insert of it). Such a packet is not a new flow's: it is not
/// charged to the new-flow limits, and its insert would find the way
/// (`Placed::Found`, see `find_or_insert`). Another key under the
/// same fingerprint being written in one of the 16 ways also answers
/// true (one key in 65,536 of those being written): that packet goes
/// untracked, and its flow's next packet inserts it.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
#[inline(always)]
pub unsafe fn written_under<V>(first: *mut Bucket<V>, second: *mut Bucket<V>, hash: u32) -> bool {
    let fp = u64::from(fingerprint(hash));
    let mut hits = 0u64;
    each_way!(way => {
        // SAFETY: per the caller's contract.
        let (low, high) = unsafe { (tag_at(first, way).load(), tag_at(second, way).load()) };
        hits |= written_fp(low, fp) | written_fp(high, fp);
    });
    hits != 0
}

/// 1 if a writer holds the way tagged `tag` (state bit 0: `TAG_BUSY` or
/// `TAG_PENDING`) under fingerprint `fp`, else 0 (no branch, as
/// `holds_fp`).
#[inline(always)]
fn written_fp(tag: u64, fp: u64) -> u64 {
    let other_fp = non_zero(((tag >> FP_SHIFT) & FP_MASK) ^ fp);
    opaque(opaque(tag & 1) & (1 ^ other_fp))
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
