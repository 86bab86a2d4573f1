//! Taking flows out and rewriting them in place (lbd's expiry, reaper
//! and installs).

use super::*;

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

/// Way `way`'s tag if a writer holds it (BUSY or PENDING), for
/// `reclaim_abandoned`; None if the way is empty or holds a flow.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn held_tag<V>(bucket: *mut Bucket<V>, way: usize) -> Option<u64> {
    // SAFETY: per the caller's contract.
    let tag = unsafe { tag_at(bucket, way) }.load();
    matches!(tag_state(tag), TAG_BUSY | TAG_PENDING).then_some(tag)
}

/// Empties way `way` if its tag is still `held` (what `held_tag` read a
/// while before): a writer that died between its claim and its publish
/// (lbd killed while it rewrote a flow) left it held, and no lookup,
/// insert or eviction ever takes a held way, so it would stay out of use
/// for good, and hide the flow whose fingerprint it carries from every
/// insert. Only for a caller that knows no writer of its own holds ways
/// that long (lbd at start, holding the data plane's lock: the data
/// plane's own claims last one program run). True if this call emptied it.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub unsafe fn reclaim_abandoned<V>(bucket: *mut Bucket<V>, way: usize, held: u64) -> bool {
    // SAFETY: per the caller's contract.
    unsafe { tag_at(bucket, way) }.swap_if(held, tag_with(held, 0, TAG_EMPTY, 0))
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
/// half of it. False if the way changed meanwhile. While it is claimed
/// (`TAG_BUSY`, under the flow's fingerprint and key) lookups miss the
/// flow, and inserts of it find it there (`Placed::Found`) rather than
/// put a second copy beside it (`scan`).
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
    match unsafe { claim_for_rewrite(bucket, seen, rank) } {
        // SAFETY: as above; the claim is this call's.
        Some(claimed) => unsafe { publish_rewrite(bucket, seen.way, claimed, entry) },
        None => false,
    }
}

/// `rewrite`'s claim: the way's claimed tag (`TAG_BUSY`, version + 1,
/// fingerprint kept, rank word `rank`), or None if the way changed since
/// `seen`. Apart from `publish_rewrite` so that the tests can run other
/// CPUs' work in between, as lbd's thread may be preempted there.
///
/// # Safety
/// `bucket` must point to a live bucket of the table.
#[inline(always)]
pub(super) unsafe fn claim_for_rewrite<V>(
    bucket: *mut Bucket<V>,
    seen: &Seen<V>,
    rank: u32,
) -> Option<u64> {
    // SAFETY: per the caller's contract.
    let tag = unsafe { tag_at(bucket, seen.way) };
    let claimed = tag_with(seen.tag, tag_fingerprint(seen.tag), TAG_BUSY, rank);
    (tag_state(seen.tag) == TAG_VALID && tag.swap_if(seen.tag, claimed)).then_some(claimed)
}

/// `rewrite`'s write of `entry` into way `way`, claimed as `claimed`, and
/// its publication. False if the way was not found as claimed.
///
/// # Safety
/// `bucket` must point to a live bucket of the table, whose way `way`
/// this caller claimed (`claim_for_rewrite`).
#[inline(always)]
pub(super) unsafe fn publish_rewrite<V: Copy>(
    bucket: *mut Bucket<V>,
    way: usize,
    claimed: u64,
    entry: &V,
) -> bool {
    // SAFETY: the way is ours until published.
    unsafe {
        (*bucket).slots[way & (FLOW_WAYS - 1)].entry = *entry;
    }
    // SAFETY: per the caller's contract.
    let tag = unsafe { tag_at(bucket, way) };
    // A CAS, not a store: the entry's writes stay before it.
    tag.swap_if(claimed, retagged(claimed, TAG_VALID))
}
