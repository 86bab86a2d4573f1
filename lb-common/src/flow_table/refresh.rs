//! Refreshing a tracked flow in place (the data plane's `touch`, on every
//! packet that changes its entry): its age alone by a rank CAS and one
//! store, or its flags with them by a claim, a write and a publish.

use super::*;

/// A refresh of a connection-table flow whose CAS is done and whose write
/// into the way is not (`begin_refresh`), for `finish_refresh`. Two steps
/// so that the tests can run other CPUs' work between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refresh {
    /// The way (as its tag numbers it).
    way: usize,
    /// The way's tag as this refresh claimed it (`TAG_BUSY`), or 0 when
    /// the CAS set the rank alone (the flags were unchanged).
    claimed: u64,
    /// The flow's new last-seen time.
    last_seen_ns: u64,
    /// The flow's new `FlowEntry::flags`.
    flags: u32,
}

/// The CAS of a refresh of the flow `seen` found (by `find`: its tag
/// `TAG_VALID`) to last-seen time `last_seen_ns`, flags `flags` and rank
/// word `rank`; None if the way changed since (another writer got there
/// first; for a change of flags, a writer other than a CPU that only
/// re-ranked the flow), else the write left for `finish_refresh`.
///
/// Flags unchanged (the flow's periodic refresh): a CAS of the rank
/// alone, the way staying `TAG_VALID`; the last-seen store that follows
/// is not covered by it. Another CPU or lbd may take the way between the
/// two (evict it, or remove it and insert another flow there), and the
/// store then lands in the new flow's entry: that flow's last-seen time
/// becomes about now, when it was just inserted (or, a copy lbd
/// installs with an older time, about now in its entry, its rank keeping
/// its own tick), which is harmless; its flags, backend and key are
/// never written.
///
/// Flags changed (FIN, RST, the end of a handshake, an ACL mark): the way
/// is claimed (`TAG_BUSY`, version + 1) as `rewrite` claims it, so until
/// `finish_refresh` publishes it no insert can evict it and no lookup
/// reads it: the new flags can never land in a flow another CPU put in
/// its place, and no reader can take the old flags and write them back
/// over the new ones. A packet of the flow that misses it meanwhile is
/// not inserted a second time: the claimed way keeps the flow's key and
/// fingerprint, and an insert of it finds it there (`Placed::Found`,
/// `scan`).
///
/// # Safety
/// `bucket` must point to a live bucket of the table, the one `seen` was
/// found in.
#[inline(always)]
pub unsafe fn begin_refresh(
    bucket: *mut FlowBucket,
    seen: &Seen,
    (last_seen_ns, flags): (u64, u32),
    rank: u32,
) -> Option<Refresh> {
    // SAFETY: per the caller's contract.
    let tag = unsafe { tag_at(bucket, seen.way) };
    let refresh = |claimed| Refresh {
        way: seen.way,
        claimed,
        last_seen_ns,
        flags,
    };
    if flags == seen.entry.flags {
        return tag
            .swap_if(seen.tag, reranked(seen.tag, rank))
            .then(|| refresh(0));
    }
    let claimed = tag_with(seen.tag, tag_fingerprint(seen.tag), TAG_BUSY, rank);
    let found = tag.swap_seen(seen.tag, claimed);
    if found == seen.tag {
        return Some(refresh(claimed));
    }
    // Lost to a CPU that re-ranked the flow since the lookup (its age
    // refresh): the way's state, version and fingerprint are as seen, so
    // it still holds this flow with the entry seen, and the marks must
    // not be lost (a FIN dropped here left the flow open: a later SYN on
    // its tuple taken for a retransmission, the census counting it live
    // until its idle horizon). One more CAS from the tag found; anything
    // else (a claim, a rewrite, an eviction) changed the version.
    (same_owner(found, seen.tag) && tag.swap_if(found, claimed)).then(|| refresh(claimed))
}

/// Whether two tags of one way differ in their rank word alone (a
/// re-rank between them, no claim or new owner).
#[inline(always)]
const fn same_owner(a: u64, b: u64) -> bool {
    (a ^ b) & 0xffff_ffff == 0
}

/// The write of a refresh `begin_refresh` started: the last-seen time
/// (and, if it claimed the way, the flags, then the way published).
///
/// # Safety
/// `bucket` must be the bucket given to `begin_refresh`.
#[inline(always)]
pub unsafe fn finish_refresh(bucket: *mut FlowBucket, refresh: Refresh) {
    // SAFETY: per the caller's contract; the index is masked. A claimed
    // way is ours until published; a stamp is the harmless store
    // `begin_refresh` describes.
    unsafe {
        let slot = core::ptr::addr_of_mut!((*bucket).slots[refresh.way & (FLOW_WAYS - 1)].entry);
        (*slot).last_seen_ns = refresh.last_seen_ns;
        if refresh.claimed == 0 {
            return;
        }
        (*slot).flags = refresh.flags;
    }
    // SAFETY: as above.
    let tag = unsafe { tag_at(bucket, refresh.way) };
    // A CAS, not a store: the entry's writes stay before it. It cannot
    // fail: no other writer changes a way claimed.
    let _ = tag.swap_if(refresh.claimed, retagged(refresh.claimed, TAG_VALID));
}

/// `begin_refresh` then `finish_refresh`: true if this call refreshed the
/// flow (of CPUs refreshing it from the same lookup, one does).
///
/// # Safety
/// As `begin_refresh`.
#[inline(always)]
pub unsafe fn refresh(
    bucket: *mut FlowBucket,
    seen: &Seen,
    (last_seen_ns, flags): (u64, u32),
    rank: u32,
) -> bool {
    // SAFETY: per the caller's contract.
    match unsafe { begin_refresh(bucket, seen, (last_seen_ns, flags), rank) } {
        Some(started) => {
            // SAFETY: as above.
            unsafe { finish_refresh(bucket, started) };
            true
        }
        None => false,
    }
}
