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

/// Finds `key` (hash `hash`) in `bucket`: lbd's reader (`find_as` with
/// re-reads) off the BPF target, the data plane's (without) on it.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn find<V: SlotValue>(
    bucket: *mut Bucket<V>,
    key: &FlowKey,
    hash: u32,
) -> Option<Seen<V>> {
    // SAFETY: per the caller's contract.
    unsafe { find_as::<V, { cfg!(not(target_arch = "bpf")) }>(bucket, key, hash) }
}

/// `find`'s body, for either side, so the data plane's reader is unit
/// tested as the BPF build runs it (`REREADS` false). A way whose tag
/// moved between the two loads only in its rank (state, version and
/// fingerprint kept: a refresh of the flow's age, a CAS that leaves the
/// slot as it was but for its last-seen store) is the flow, found under
/// the tag it has now; the data plane takes it so (before, that packet
/// was taken for a new flow: Maglev's pick of now, charged to its
/// source's new-flow limit). Any other move misses it there. lbd
/// (`REREADS`) re-reads the way instead (`reread`: a fresh copy, its
/// last-seen time included, after flag changes too).
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub(super) unsafe fn find_as<V: SlotValue, const REREADS: bool>(
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
            #[cfg(test)]
            hook::between_loads();
            // SAFETY: as above.
            let now = unsafe { tag_at(bucket, way) }.load();
            if now == tag || (!REREADS && reranked_only(tag, now)) {
                return Some(Seen {
                    way: tag_way(now),
                    tag: now,
                    entry,
                });
            }
            // lbd only: the flow's rank or flags moved under the read.
            #[cfg(not(target_arch = "bpf"))]
            if REREADS {
                // SAFETY: as above.
                if let Some((tag, entry)) = unsafe {
                    reread(bucket, way, tag, now, || {
                        key_is(bucket, way, key).then(|| read_entry(bucket, way))
                    })
                } {
                    return Some(Seen {
                        way: tag_way(tag),
                        tag,
                        entry,
                    });
                }
            }
        }
        way += 1;
    }
    None
}

/// Whether tag `now` is tag `was` with another rank word only (state,
/// version, way and fingerprint kept): a rank CAS (`rerank`, an age
/// refresh) happened between two loads, no writer claimed the way, and
/// its slot's key and entry are as they were.
#[inline(always)]
pub(super) const fn reranked_only(was: u64, now: u64) -> bool {
    (was ^ now) & 0xffff_ffff == 0
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
        if unsafe { holds(bucket, way, key, fp, seen) } {
            #[cfg(test)]
            hook::between_loads();
            let now = tag.load();
            if now == seen {
                return Some((tag_way(seen), seen));
            }
            // lbd only: the flow's rank or flags moved under the read.
            #[cfg(not(target_arch = "bpf"))]
            // SAFETY: as above.
            if let Some((now, ())) = unsafe {
                reread(bucket, way, seen, now, || key_is(bucket, way, key).then_some(()))
            } {
                return Some((tag_way(now), now));
            }
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
    if !(seen & 2 != 0
        && tag_fingerprint(seen) == fingerprint(hash)
        // SAFETY: as above.
        && unsafe { key_is(bucket, way, key) })
    {
        return false;
    }
    #[cfg(test)]
    hook::between_loads();
    let now = tag.load();
    if now == seen {
        return true;
    }
    // lbd only: the flow's rank or flags moved under the read.
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: as above.
    if unsafe {
        reread(bucket, way, seen, now, || {
            key_is(bucket, way, key).then_some(())
        })
    }
    .is_some()
    {
        return true;
    }
    false
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
    #[cfg(test)]
    hook::between_loads();
    let now = tag.load();
    if now == seen {
        return Some(Seen {
            way: tag_way(seen),
            tag: seen,
            entry,
        });
    }
    // lbd only: the flow's rank or flags moved under the read.
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: as above.
    if let Some((now, entry)) =
        unsafe { reread(bucket, way, seen, now, || Some(read_entry(bucket, way))) }
    {
        return Some(Seen {
            way: tag_way(now),
            tag: now,
            entry,
        });
    }
    None
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
    let copy = || unsafe {
        (
            core::ptr::read_volatile(core::ptr::addr_of!(
                (*bucket).slots[way & (FLOW_WAYS - 1)].key
            )),
            read_entry(bucket, way),
        )
    };
    let (key, entry) = copy();
    #[cfg(test)]
    hook::between_loads();
    let now = tag.load();
    if now == seen {
        return Some((
            key,
            Seen {
                way,
                tag: seen,
                entry,
            },
        ));
    }
    // lbd only: the flow's rank or flags moved under the read.
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: as above.
    if let Some((now, (key, entry))) = unsafe { reread(bucket, way, seen, now, || Some(copy())) } {
        return Some((
            key,
            Seen {
                way,
                tag: now,
                entry,
            },
        ));
    }
    None
}

/// Times lbd re-reads a way whose tag moved under its read (`reread`).
/// A flow's rank moves at most once per `FLOW_TOUCH_INTERVAL_NS` (and a
/// flag refresh holds the way for a few stores), so a second move within
/// a re-read is rare, and one at each of them practically never comes.
#[cfg(not(target_arch = "bpf"))]
pub(super) const REREADS: usize = 4;

/// lbd's reads only (the data plane moves on, within its verifier
/// bound): after a copy of way `way` of `bucket` was read under tag
/// `was` and the tag read `now` after it, takes the copy again with
/// `read` while the tag keeps `was`'s fingerprint and says the way holds
/// the same flow, only moved: published (`TAG_VALID`: its rank refreshed,
/// or its flags, `begin_refresh`) or held by a writer that keeps the
/// flow's key (`TAG_BUSY`: a flag refresh or `rewrite` under way, waited
/// for). At most `REREADS` steps; the tag the copy held under and the
/// copy, or None if the way changed hands, `read` found another key in
/// it, or the way kept moving. lbd acts on a miss (replication's
/// freshness check, adoption's, the census, `flow_count`): a flow whose
/// age the data plane refreshed between the two loads must not read as
/// absent.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[cfg(not(target_arch = "bpf"))]
#[inline]
unsafe fn reread<V, T>(
    bucket: *mut Bucket<V>,
    way: usize,
    was: u64,
    mut now: u64,
    mut read: impl FnMut() -> Option<T>,
) -> Option<(u64, T)> {
    // SAFETY: per the caller's contract.
    let tag = unsafe { tag_at(bucket, way) };
    for _ in 0..REREADS {
        if tag_fingerprint(now) != tag_fingerprint(was) {
            return None;
        }
        match tag_state(now) {
            TAG_VALID => {
                let copy = read()?;
                #[cfg(test)]
                hook::between_loads();
                let again = tag.load();
                if again == now {
                    return Some((now, copy));
                }
                now = again;
            }
            TAG_BUSY => {
                core::hint::spin_loop();
                now = tag.load();
            }
            _ => return None,
        }
    }
    None
}

/// Tests only: a writer's step run in a reader between its copy of a way
/// and the tag load that confirms it (another CPU's write landing there),
/// set per thread, so the tests step that interleaving deterministically.
#[cfg(test)]
pub(super) mod hook {
    extern crate std;
    use std::{boxed::Box, cell::RefCell};

    /// A writer's step, run between a reader's two loads.
    type Step = Box<dyn FnMut()>;

    std::thread_local! {
        /// This thread's step (per thread: tests run side by side).
        static BETWEEN_LOADS: RefCell<Option<Step>> = const { RefCell::new(None) };
    }

    /// Runs `step` in this thread's readers between their copy of a way
    /// and its confirming load, until `clear`.
    pub(in crate::flow_table) fn set(step: impl FnMut() + 'static) {
        BETWEEN_LOADS.with(|slot| *slot.borrow_mut() = Some(Box::new(step)));
    }

    /// Stops running the step `set` gave.
    pub(in crate::flow_table) fn clear() {
        BETWEEN_LOADS.with(|slot| *slot.borrow_mut() = None);
    }

    /// Runs the step, if one is set (taken out while it runs: a step may
    /// read the table itself).
    pub(in crate::flow_table) fn between_loads() {
        let Some(mut step) = BETWEEN_LOADS.with(|slot| slot.borrow_mut().take()) else {
            return;
        };
        step();
        BETWEEN_LOADS.with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.is_none() {
                *slot = Some(step);
            }
        });
    }
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
