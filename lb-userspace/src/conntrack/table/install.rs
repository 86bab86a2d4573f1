//! Writing a flow into the table (`install`, `install_unless`): the
//! lock-free insert or rewrite the data plane's protocol allows, judged on
//! the entry it would replace. Apart from the mapping so tests run it on
//! buckets of their own (`put_in`).

use std::sync::atomic::Ordering;

use lb_common::{
    flow_table::{self, ticks, FlowBucket, Placed, TICK_SHIFT},
    hash::flow_hash,
    FlowEntry, FlowKey,
};

use super::{
    rank::{install_class, stamp_rank},
    FlowTable, FlowTableError,
};

impl FlowTable {
    /// Puts a flow into the table (a replica from a peer, a flow carried
    /// over): its entry replaced if tracked, else inserted as an
    /// established flow (closed with FIN or RST marks, half-open with
    /// `FLOW_F_HALF_OPEN`, as the data plane ranks them) last seen at
    /// `entry.last_seen_ns` (ranked by `rank_at`: a time ahead of the
    /// clock as now, one idle past its class's timeout as expired). In a
    /// full bucket it takes only a way that would be evicted before it
    /// now (`flow_table::find_or_insert_at_within`, by the data plane's
    /// idle horizons: `set_idle_horizons`): never one of a flow seen more
    /// recently, nor one the data plane holds live for a flow it holds
    /// over; with none, `FlowTableError::Full`.
    pub fn install(&self, key: &FlowKey, entry: &FlowEntry) -> Result<(), FlowTableError> {
        let rank = stamp_rank(entry.last_seen_ns, install_class(key, entry.flags));
        self.put(key, entry, rank)
    }

    /// `install`, unless `keep` holds of the entry the table holds for
    /// the flow (replication: one seen more recently than the peer's
    /// copy). Decided in the write, on the copy it would replace: the
    /// rewrite's CAS is from the tag that copy was read under, so an
    /// entry the data plane refreshes or another writer changes after
    /// `keep` judged it is read and judged again, and a flow a lookup
    /// missed for a moment (its way held, or inserted meanwhile) is
    /// judged once found. The entry kept, or None once `entry` is in.
    pub fn install_unless(
        &self,
        key: &FlowKey,
        entry: &FlowEntry,
        keep: impl FnMut(&FlowEntry) -> bool,
    ) -> Result<Option<FlowEntry>, FlowTableError> {
        let rank = stamp_rank(entry.last_seen_ns, install_class(key, entry.flags));
        self.put_unless(key, entry, rank, keep)
    }

    /// `install` with rank word `rank` (its tick not ahead of the clock:
    /// `rank_at`, `aged_rank`). The entry keeps the flow's
    /// `flow_hash` (Maglev's), whatever hash places it. Ways are aged at
    /// the current tick (read here, per attempt) plus one: a way the data
    /// plane stamps between the clock read and the insert must not look
    /// aged past the tick wrap (expired).
    fn put(&self, key: &FlowKey, entry: &FlowEntry, rank: u32) -> Result<(), FlowTableError> {
        self.put_unless(key, entry, rank, |_| false).map(|_| ())
    }

    /// `put`, unless `keep` holds of the entry held for the flow (see
    /// `install_unless`); the entry kept, or None once `entry` is in.
    pub(super) fn put_unless(
        &self,
        key: &FlowKey,
        entry: &FlowEntry,
        rank: u32,
        keep: impl FnMut(&FlowEntry) -> bool,
    ) -> Result<Option<FlowEntry>, FlowTableError> {
        let (first, second, hash) = self.buckets_of(key);
        let entry = FlowEntry {
            hash: flow_hash(key),
            ..*entry
        };
        let now_ticks = || ticks(crate::clock::monotonic_ns().saturating_add(1 << TICK_SHIFT));
        let place = (first, second, hash);
        let horizons = self.idle_horizons.load(Ordering::Relaxed);
        // SAFETY: live buckets of the mapping.
        unsafe {
            put_in(
                place,
                key,
                &entry,
                (rank, now_ticks, horizons),
                keep,
                self.table.name(),
            )
        }
    }
}

/// `FlowTable::put_unless` on the flow's buckets and table hash `place`
/// (`first`, `second`, `hash`): `entry` (its hash set) written with rank
/// word `rank`, ways aged at `now_ticks()` (read per attempt) and judged
/// by the idle horizons `horizons` (the data plane's), unless
/// `keep` holds of the entry found, judged right before the rewrite whose
/// CAS is from the tag that entry was read under (a lost CAS reads and
/// judges again). `table` names the table in errors. Apart from the
/// mapping so that the tests run it on buckets of their own.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
pub(super) unsafe fn put_in(
    (first, second, hash): (*mut FlowBucket, *mut FlowBucket, u32),
    key: &FlowKey,
    entry: &FlowEntry,
    (rank, mut now_ticks, horizons): (u32, impl FnMut() -> u32, u64),
    mut keep: impl FnMut(&FlowEntry) -> bool,
    table: &'static str,
) -> Result<Option<FlowEntry>, FlowTableError> {
    for _ in 0..4 {
        // SAFETY: per the caller's contract.
        if let Some((bucket, seen)) = unsafe { flow_table::find_in(first, second, key, hash) } {
            if keep(&seen.entry) {
                return Ok(Some(seen.entry));
            }
            // SAFETY: as above.
            if unsafe { flow_table::rewrite(bucket, &seen, entry, rank) } {
                return Ok(None);
            }
            continue;
        }
        let now = now_ticks();
        // SAFETY: as above.
        let placed = unsafe {
            flow_table::find_or_insert_at_within(
                first,
                second,
                key,
                entry,
                (rank, now),
                hash,
                horizons,
            )
        };
        match placed {
            Placed::Inserted(_) => return Ok(None),
            Placed::Found(_) => continue,
            Placed::Contended
                // SAFETY: as above.
                if !unsafe {
                    flow_table::has_room_at_within(first, second, rank, now, horizons)
                } =>
            {
                return Err(FlowTableError::Full(table));
            }
            Placed::Contended => continue,
        }
    }
    Err(FlowTableError::Contended(table))
}
