//! `FlowTable::re_place`: moving the flows an earlier release placed
//! elsewhere to where this one looks for them. Apart because it runs only
//! on a table a previous lbd left, across an upgrade.

use lb_common::{
    flow_table::{self, fingerprint, rank_class, tag_fingerprint, tag_rank, ticks, FLOW_WAYS},
    FlowEntry, FlowKey,
};

use super::{rank::aged_rank, FlowTable, FlowTableError};

/// What `FlowTable::re_place` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replaced {
    /// Flows found where this release would not look for them.
    pub misplaced: u64,
    /// Of those, copied to their place (the others had a copy there
    /// already, seen at least as recently).
    pub copied: u64,
    /// Copies left out: every way of their buckets holds a flow seen more
    /// recently (`FlowTableError::Full`).
    pub full: u64,
    /// Copies that could not be written: their buckets' ways stayed busy
    /// (being written) through every retry.
    pub failed: u64,
    /// Misplaced copies taken out (`re_place` with `release`).
    pub released: u64,
}

impl FlowTable {
    /// Whether a flow `key` read in bucket `index` under tag `tag` is
    /// where this release looks for it: in one of its two buckets, under
    /// its fingerprint.
    fn in_place(&self, index: u32, tag: u64, key: &FlowKey) -> bool {
        let hash = self.place_hash(key);
        self.table.is_candidate(index, hash) && tag_fingerprint(tag) == fingerprint(hash)
    }

    /// Puts the flows a previous release placed elsewhere where this one
    /// looks for them, so they keep their backends: an upgrade across a
    /// change of `table_hash` (the releases before it placed IPv6 flows by
    /// `flow_hash`) or of where second buckets lie (the releases before
    /// `SecondBucket::Nearby` put them anywhere in the table). Each
    /// misplaced flow is copied to its place, unless a copy there was
    /// seen at least as recently; with `release`, its misplaced copy is
    /// then taken out. lbd runs it twice on a table a
    /// previous lbd left: without `release` right after loading (the old
    /// program, still running, keeps finding the old copies), and with it
    /// once this lbd's program runs (what the old one changed meanwhile
    /// is copied again, then the old copies go).
    pub fn re_place(&self, release: bool) -> Replaced {
        let mut done = Replaced::default();
        for index in 0..self.table.buckets() {
            let bucket = self.table.bucket(index);
            for way in 0..FLOW_WAYS {
                // SAFETY: a live bucket of the mapping.
                let Some((key, seen)) = (unsafe { flow_table::read_way(bucket, way) }) else {
                    continue;
                };
                if self.in_place(index, seen.tag, &key) {
                    continue;
                }
                done.misplaced += 1;
                // Aged by the way's tag, read before the clock: the way's
                // own age at the data plane's tick, so a way it takes for
                // expired stays expired.
                let now = crate::clock::monotonic_ns();
                let rank = tag_rank(seen.tag);
                let age = flow_table::lead_age(ticks(now), rank >> 2)
                    .saturating_sub(flow_table::RANK_AHEAD_TICKS);
                let rank = aged_rank(u64::from(age), rank_class(rank), ticks(now));
                // Judged in the write, on the entry it would replace: a
                // copy at the flow's place that the running program
                // refreshes (or inserts) after a first look is never
                // overwritten with the older misplaced one.
                match self.put_unless(&key, &seen.entry, rank, in_place_wins(&seen.entry)) {
                    Ok(None) => done.copied += 1,
                    Ok(Some(_)) => {}
                    Err(FlowTableError::Full(_)) => {
                        done.full += 1;
                        continue;
                    }
                    Err(_) => {
                        done.failed += 1;
                        continue;
                    }
                }
                // SAFETY: as above; a CAS from the tag read, so a way
                // that changed hands meanwhile is left alone.
                if release && unsafe { flow_table::release(bucket, &seen) } {
                    done.released += 1;
                }
            }
        }
        done
    }
}

/// `FlowTable::re_place`'s test of the copy a misplaced flow's
/// `misplaced` entry would replace at the flow's place: that copy stays
/// when it was seen at least as recently (the running program's, met
/// since the old program wrote the misplaced one).
pub(super) fn in_place_wins(misplaced: &FlowEntry) -> impl FnMut(&FlowEntry) -> bool {
    let seen = misplaced.last_seen_ns;
    move |held: &FlowEntry| held.last_seen_ns >= seen
}
