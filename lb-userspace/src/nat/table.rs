//! lbd's side of the NAT flow table (`NAT_BUCKETS`): the array map mapped
//! into this process, read and written in place with the protocol the
//! data plane runs (`lb_common::flow_table`). Keys are placed by
//! `hash::table_hash` and inserted exclusively (`insert_new`), as the data
//! plane inserts them, so an entry lbd installs (replication) can never
//! sit beside, or take the place of, one the program made at the same
//! moment; nothing is evicted, only removed (the reaper, `lbctl`).
//!
//! lbd is the table's only remover: an entry lbd found stays where it was
//! found until lbd removes it (the data plane takes out only a reply entry
//! it inserted itself in the same run), so lbd rewrites a held entry in
//! place, as the data plane marks it, instead of claiming its way (a
//! claimed way is invisible to the data plane's lookups for a moment, and
//! a packet then would open its flow a second time).

use aya::maps::MapData;
use lb_common::{
    flow_table::{self, Claimed, SecondBucket, FLOW_WAYS},
    hash::table_hash,
    FlowKey, NatEntry,
};

use crate::conntrack::bucket_map::{BucketMap, FlowTableError};

/// Buckets one `NatFlowTable::batch` reads at most: 4096 of 1088 bytes,
/// about 4 MiB of the table, a millisecond or so.
pub const BATCH_BUCKETS: u32 = 4096;

/// Tries of an insert whose way another CPU took in the same instant.
const TRIES: usize = 4;

/// Where the table holds an entry: its bucket and way. Five bytes of
/// place (eight with padding) stand for a 112-byte key and entry: a walk
/// that keeps a flow's place, not its copy, stays small at the largest
/// tables (`nat::legacy`). An entry stays in its way until lbd removes
/// it (see the module's comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeldAt {
    /// The bucket's index.
    pub(crate) bucket: u32,
    /// The way in the bucket (below `FLOW_WAYS`).
    pub(crate) way: u8,
}

impl HeldAt {
    /// Way `way` of bucket `bucket`; None for a way past `FLOW_WAYS`.
    fn new(bucket: u32, way: usize) -> Option<Self> {
        (way < FLOW_WAYS).then_some(Self {
            bucket,
            way: u8::try_from(way).ok()?,
        })
    }
}

/// The mapped NAT flow table.
pub struct NatFlowTable {
    table: BucketMap<NatEntry>,
}

impl NatFlowTable {
    /// Maps `map` (an mmapable array of `buckets` `NatBucket`s).
    pub fn new(map: MapData, buckets: u32) -> Result<Self, FlowTableError> {
        Ok(Self {
            table: BucketMap::new(map, buckets, SecondBucket::Anywhere, "NAT flow table")?,
        })
    }

    /// Buckets in the table.
    pub fn buckets(&self) -> u32 {
        self.table.buckets()
    }

    /// Entries the table has slots for (`FLOW_HEADROOM` per configured
    /// entry, rounded up).
    pub fn slots(&self) -> u64 {
        self.table.capacity()
    }

    /// The map, for pinning and its kernel memory account.
    pub fn map(&self) -> &MapData {
        self.table.map()
    }

    /// Every entry (both directions of every flow), read bucket by bucket
    /// from the mapping.
    pub fn iter(&self) -> impl Iterator<Item = (FlowKey, NatEntry)> + '_ {
        self.table.iter()
    }

    /// Every entry with where it is held (bucket, way), read bucket by
    /// bucket from the mapping: a walk that notes a flow's place instead
    /// of copying it, to read it back in place later (`read_at`; carrying
    /// a previous lbd's flows over, `nat::legacy`).
    pub(crate) fn iter_held(&self) -> impl Iterator<Item = (HeldAt, FlowKey, NatEntry)> + '_ {
        (0..self.table.buckets()).flat_map(move |index| {
            let bucket = self.table.bucket(index);
            (0..FLOW_WAYS).filter_map(move |way| {
                // SAFETY: a live bucket of the mapping.
                let (key, seen) = unsafe { flow_table::read_way(bucket, way) }?;
                Some((HeldAt::new(index, way)?, key, seen.entry))
            })
        })
    }

    /// `key`'s entry and where it is held, if held (the copy a lookup
    /// finds, should a key be read twice in a table that changes).
    pub(crate) fn find_held(&self, key: &FlowKey) -> Option<(HeldAt, NatEntry)> {
        let hash = table_hash(key);
        let (first, second) = self.table.indices_of(hash);
        let first_bucket = self.table.bucket(first);
        // SAFETY: live buckets of the mapping.
        let (bucket, seen) =
            unsafe { flow_table::find_in(first_bucket, self.table.bucket(second), key, hash) }?;
        let index = if bucket == first_bucket {
            first
        } else {
            second
        };
        Some((HeldAt::new(index, seen.way)?, seen.entry))
    }

    /// The entry way `at` holds now, if it holds one.
    pub(crate) fn read_at(&self, at: HeldAt) -> Option<(FlowKey, NatEntry)> {
        if at.bucket >= self.table.buckets() || usize::from(at.way) >= FLOW_WAYS {
            return None;
        }
        let bucket = self.table.bucket(at.bucket);
        // SAFETY: a live bucket of the mapping (index checked above).
        unsafe { flow_table::read_way(bucket, usize::from(at.way)) }
            .map(|(key, seen)| (key, seen.entry))
    }

    /// Entries held now.
    pub fn count(&self) -> u64 {
        self.table.count()
    }

    /// The two buckets (indices) `key` may be held in, first the one it
    /// goes to while that one has room (operators' and tests' view of the
    /// placement; a full pair of buckets refuses a new key).
    pub fn buckets_of(&self, key: &FlowKey) -> (u32, u32) {
        self.table.indices_of(table_hash(key))
    }

    /// The entries bucket `index` holds now.
    pub fn held_in(&self, index: u32) -> Vec<(FlowKey, NatEntry)> {
        let mut out = Vec::with_capacity(FLOW_WAYS);
        if index < self.table.buckets() {
            self.table.read_bucket(index, &mut out);
        }
        out
    }

    /// One entry, if held.
    pub fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        self.table.get(key, table_hash(key))
    }

    /// Puts `entry` in under `key` only if no entry holds the key (as the
    /// data plane inserts: exclusively, never evicting); false when the key
    /// is held. `Full` when both of its buckets are.
    pub fn insert_if_free(&self, key: &FlowKey, entry: &NatEntry) -> Result<bool, FlowTableError> {
        let hash = table_hash(key);
        let (first, second) = self.table.buckets_of(hash);
        for _ in 0..TRIES {
            // SAFETY: live buckets of the mapping.
            match unsafe { flow_table::insert_new(first, second, key, entry, hash) } {
                Claimed::Inserted { .. } => return Ok(true),
                Claimed::Taken(_) => return Ok(false),
                Claimed::Full => return Err(FlowTableError::Full(self.table.name())),
                Claimed::Contended => {}
            }
        }
        Err(FlowTableError::Contended(self.table.name()))
    }

    /// Puts `entry` in under `key`: the held entry rewritten in place
    /// (see the module's comment), else inserted.
    pub fn install(&self, key: &FlowKey, entry: &NatEntry) -> Result<(), FlowTableError> {
        let hash = table_hash(key);
        let (first, second) = self.table.buckets_of(hash);
        for _ in 0..TRIES {
            if self.overwrite(key, entry, hash) {
                return Ok(());
            }
            // SAFETY: live buckets of the mapping.
            match unsafe { flow_table::insert_new(first, second, key, entry, hash) } {
                Claimed::Inserted { .. } => return Ok(()),
                Claimed::Full => return Err(FlowTableError::Full(self.table.name())),
                // Inserted by the data plane meanwhile: rewritten next try.
                Claimed::Taken(_) | Claimed::Contended => {}
            }
        }
        Err(FlowTableError::Contended(self.table.name()))
    }

    /// Rewrites the held entry of `key` (placed by `hash`) in place; false
    /// if the key is not held.
    fn overwrite(&self, key: &FlowKey, entry: &NatEntry, hash: u32) -> bool {
        let (first, second) = self.table.buckets_of(hash);
        for bucket in [first, second] {
            // SAFETY: a live bucket of the mapping.
            if let Some((way, _)) = unsafe { flow_table::locate(bucket, key, hash) } {
                // SAFETY: as above; the way stays this key's until lbd
                // removes it (see the module's comment).
                unsafe {
                    let at = std::ptr::addr_of_mut!((*bucket).slots[way & (FLOW_WAYS - 1)].entry);
                    std::ptr::write_volatile(at, *entry);
                }
                return true;
            }
            if second == first {
                break;
            }
        }
        false
    }

    /// Empties the ways an lbd killed inside an install left held
    /// (`BucketMap::reclaim_abandoned`); how many. An insert here is
    /// exclusive, so a held copy of a key would otherwise refuse every
    /// later insert of it for good: the replicated flow could never be
    /// installed again, and the source port it reserves never reused.
    pub fn reclaim_abandoned(&self, grace: std::time::Duration) -> u64 {
        self.table.reclaim_abandoned(grace)
    }

    /// Removes one entry; true if it was held.
    pub fn remove(&self, key: &FlowKey) -> bool {
        self.table.remove(key, table_hash(key))
    }

    /// Whether `key` may still be held after a removal of it failed: a
    /// lookup finds it, or a writer holds a way of its buckets under its
    /// fingerprint (a lookup skips such a way).
    fn still_held(&self, key: &FlowKey) -> bool {
        let hash = table_hash(key);
        let (first, second) = self.table.buckets_of(hash);
        // SAFETY: live buckets of the mapping.
        self.get(key).is_some() || unsafe { flow_table::written_under(first, second, hash) }
    }

    /// Appends to `out` the entries of whole buckets from bucket `cursor`
    /// on (None: the first) until `out` holds `max` or more entries, or
    /// `BATCH_BUCKETS` buckets were read, or the table ends; returns the
    /// bucket to go on from, None at the end. A removal never moves a
    /// bucket, so a walk in steps sees every entry that stays put. The
    /// bucket bound keeps a batch short in a large, nearly empty table
    /// (16 M entries: 4 M buckets, which a walk to `max` entries would
    /// read in one call, stalling lbd's loop past the reaper's
    /// `TICK_TIME`, which is checked between batches).
    pub fn batch(
        &self,
        cursor: Option<u32>,
        max: usize,
        out: &mut Vec<(FlowKey, NatEntry)>,
    ) -> Option<u32> {
        let first = cursor.unwrap_or(0);
        let end = self
            .table
            .buckets()
            .min(first.saturating_add(BATCH_BUCKETS));
        let mut index = first;
        let start = out.len();
        while index < end {
            self.table.read_bucket(index, out);
            index += 1;
            if out.len() - start >= max {
                break;
            }
        }
        (index < self.table.buckets()).then_some(index)
    }
}

/// The reaper walks the mapped table from a bucket cursor, a few whole
/// buckets per batch: removals never move the cursor.
impl crate::nat::reaper::NatTable for NatFlowTable {
    type Cursor = u32;

    fn batch(
        &self,
        cursor: Option<u32>,
        max: usize,
        out: &mut Vec<(FlowKey, NatEntry)>,
    ) -> std::io::Result<Option<u32>> {
        Ok(NatFlowTable::batch(self, cursor, max, out))
    }

    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        NatFlowTable::get(self, key)
    }

    /// True once `key` is no longer held: removed now, or gone already
    /// (no lookup finds it and no writer holds a way under its
    /// fingerprint). False when the removal lost to a writer (its way's
    /// tag moved, or a writer holds it): counted as failed
    /// (`lbd_nat_reaper_errors_total{kind="removal"}`), retried next sweep.
    fn remove(&mut self, key: &FlowKey) -> bool {
        NatFlowTable::remove(self, key) || !self.still_held(key)
    }

    /// An exclusive insert, as the data plane's (`insert_if_free`).
    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> std::io::Result<bool> {
        NatFlowTable::insert_if_free(self, key, entry).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use lb_common::{
        consts::{NAT_DIR_FORWARD, NAT_F_SYN},
        flow_table::{locate, tag_state, TAG_BUSY, TAG_VALID},
        nat::NatBucket,
    };

    use super::*;
    use crate::nat::reaper::NatTable;

    /// A NAT bucket table of `buckets` buckets pinned at `path`, mapped.
    fn nat_table(path: &Path, buckets: u32) -> NatFlowTable {
        use crate::pinning::test_support::pin_map;
        let value = size_of::<NatBucket>() as u32;
        let map = pin_map(path, 2, (4, value), buckets, 0x400);
        NatFlowTable::new(map, buckets).expect("mapped")
    }

    fn key(n: u32) -> FlowKey {
        FlowKey {
            src: [n, 0, 0, 0],
            dst: [100, 0, 0, 0],
            sport: 1000,
            dport: 80,
            proto: 6,
            family: 4,
            _pad: 0,
        }
    }

    fn entry() -> NatEntry {
        NatEntry {
            src: [50, 0, 0, 0],
            dst: [11, 0, 0, 0],
            sport: 20_001,
            dport: 8080,
            flags: NAT_F_SYN,
            direction: NAT_DIR_FORWARD,
            ..NatEntry::default()
        }
    }

    /// Sets the state of the way holding `key` (another writer claiming
    /// it, or publishing it again).
    fn set_state(table: &NatFlowTable, key: &FlowKey, from: u32, to: u32) {
        let hash = table_hash(key);
        let (first, _) = table.table.buckets_of(hash);
        for way in 0..FLOW_WAYS {
            // SAFETY: a live bucket of the mapping; this test's only thread.
            unsafe {
                let at = std::ptr::addr_of_mut!((*first).tags[way]);
                let tag = std::ptr::read_volatile(at);
                if tag_state(tag) == from
                    && (from != TAG_VALID
                        || locate(first, key, hash).is_some_and(|(w, _)| w == way))
                {
                    std::ptr::write_volatile(at, (tag & !3) | u64::from(to));
                    return;
                }
            }
        }
        panic!("no way of {key:?} in state {from}");
    }

    /// A removal the table did not make (a writer held the flow's way) is
    /// a failure the reaper counts and retries, not a removal; a key
    /// already gone is none.
    #[test]
    fn the_reaper_learns_of_a_removal_that_did_not_take() {
        use crate::pinning::test_support::TestBpffs;
        let Some(bpffs) = TestBpffs::new("nat-remove") else {
            return;
        };
        let pins = bpffs.pins();
        pins.prepare().expect("the pin directory");
        let mut table = nat_table(&pins.map_path("nat_remove_test"), 1);
        let k = key(1);
        assert!(table.insert_if_free(&k, &entry()).expect("room"));
        set_state(&table, &k, TAG_VALID, TAG_BUSY);
        assert!(!NatTable::remove(&mut table, &k), "still held");
        set_state(&table, &k, TAG_BUSY, TAG_VALID);
        assert!(NatTable::get(&table, &k).is_some());
        assert!(NatTable::remove(&mut table, &k));
        assert!(NatTable::get(&table, &k).is_none());
        assert!(NatTable::remove(&mut table, &k), "gone already: no failure");
    }

    /// The reaper puts a lone forward entry's reply back through the same
    /// exclusive insert as the data plane's: only where no entry holds the
    /// key.
    #[test]
    fn the_reaper_inserts_only_a_key_no_entry_holds() {
        use crate::pinning::test_support::TestBpffs;
        let Some(bpffs) = TestBpffs::new("nat-insert") else {
            return;
        };
        let pins = bpffs.pins();
        pins.prepare().expect("the pin directory");
        let mut table = nat_table(&pins.map_path("nat_insert_test"), 1);
        let k = key(2);
        assert!(NatTable::insert_if_free(&mut table, &k, &entry()).expect("room"));
        let mut other = entry();
        other.sport = 20_002;
        assert!(!NatTable::insert_if_free(&mut table, &k, &other).expect("held"));
        assert_eq!(NatTable::get(&table, &k).map(|e| e.sport), Some(20_001));
    }
}
