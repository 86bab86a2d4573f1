//! lbd's side of the connection table (`FLOW_BUCKETS`): the array map
//! mapped into this process (`BPF_F_MMAPABLE`), read and written in place
//! with the protocol the data plane runs (`lb_common::flow_table`), so a
//! flow lbd installs (replication) or removes (`lbctl`, expiry) can never
//! collide with one the program inserts at the same moment, and
//! enumerating a million flows costs memory reads, not a syscall per flow.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use aya::maps::MapData;
use lb_common::{
    flow_table::{FlowBucket, DEFAULT_IDLE_HORIZONS},
    hash::{flow_hash, table_hash},
    FlowEntry, FlowKey,
};

use crate::conntrack::bucket_map::BucketMap;
pub use crate::conntrack::bucket_map::FlowTableError;

mod install;
mod placement;
mod rank;
mod re_place;
#[cfg(test)]
mod tests;

use placement::table_name;
pub use placement::Placement;
pub use re_place::Replaced;

/// The mapped table.
pub struct FlowTable {
    table: BucketMap<FlowEntry>,
    placement: Placement,
    /// The idle horizons lbd's inserts judge full buckets by, packed as
    /// `flow_table::DEFAULT_IDLE_HORIZONS` (`set_idle_horizons`): the data
    /// plane's, so a replica or a carried-over flow never evicts a flow
    /// the data plane holds live (a TCP flow idle past 15 minutes under a
    /// longer `tcp_idle_timeout_s`). Shared with `remapped` copies.
    idle_horizons: Arc<AtomicU64>,
}

impl FlowTable {
    /// Maps `map` (an mmapable array of `buckets` `FlowBucket`s holding
    /// flows as `placement` places them).
    pub fn new(map: MapData, buckets: u32, placement: Placement) -> Result<Self, FlowTableError> {
        Ok(Self {
            table: BucketMap::new(map, buckets, placement.second(), table_name(placement))?,
            placement,
            idle_horizons: Arc::new(AtomicU64::new(DEFAULT_IDLE_HORIZONS)),
        })
    }

    /// Judges full buckets by `horizons` from now on (packed as
    /// `flow_table::DEFAULT_IDLE_HORIZONS`: the data plane's, as
    /// `flow_table::idle_horizons_of` reads them), in this mapping and
    /// every `remapped` one: what lbd writes to `IDLE_HORIZONS`.
    pub fn set_idle_horizons(&self, horizons: u64) {
        self.idle_horizons.store(horizons, Ordering::Relaxed);
    }

    /// The same table mapped a second time, through a duplicate of its
    /// fd: a reader on another thread (a census) holds its own mapping
    /// and fd, so it outlives this one.
    pub fn remapped(&self) -> Result<Self, FlowTableError> {
        let buckets = self.buckets();
        let failed = |source: std::io::Error| FlowTableError::Map {
            table: table_name(self.placement),
            buckets,
            source,
        };
        let map = crate::shared_mapping::second_handle(self.map()).map_err(failed)?;
        Ok(Self {
            idle_horizons: Arc::clone(&self.idle_horizons),
            ..Self::new(map, buckets, self.placement)?
        })
    }

    /// Empties the ways a writer that died left held (see
    /// `BucketMap::reclaim_abandoned`); how many.
    pub fn reclaim_abandoned(&self, grace: std::time::Duration) -> u64 {
        self.table.reclaim_abandoned(grace)
    }

    /// Buckets in the table.
    pub fn buckets(&self) -> u32 {
        self.table.buckets()
    }

    /// Flows the table can hold (its slots: `FLOW_HEADROOM` per
    /// configured flow, rounded up).
    pub fn capacity(&self) -> u64 {
        self.table.capacity()
    }

    /// The map, for pinning.
    pub fn map(&self) -> &MapData {
        self.table.map()
    }

    /// The hash that places `key` in this table.
    fn place_hash(&self, key: &FlowKey) -> u32 {
        match self.placement {
            Placement::ByTableHash | Placement::ByTableHashAnywhere => table_hash(key),
            Placement::ByFlowHash | Placement::ByFlowHashAnywhere => flow_hash(key),
        }
    }

    /// The flow's two buckets and the hash that placed it there.
    fn buckets_of(&self, key: &FlowKey) -> (*mut FlowBucket, *mut FlowBucket, u32) {
        let hash = self.place_hash(key);
        let (first, second) = self.table.buckets_of(hash);
        (first, second, hash)
    }

    /// Every tracked flow, read bucket by bucket (each copy consistent;
    /// the table changes while it is read).
    pub fn iter(&self) -> impl Iterator<Item = (FlowKey, FlowEntry)> + '_ {
        self.table.iter()
    }

    /// Flows in the table now.
    pub fn count(&self) -> u64 {
        self.table.count()
    }

    /// The entry of one flow, if tracked.
    pub fn get(&self, key: &FlowKey) -> Option<FlowEntry> {
        self.table.get(key, self.place_hash(key))
    }

    /// Removes a flow; true if it was there.
    pub fn remove(&self, key: &FlowKey) -> bool {
        self.table.remove(key, self.place_hash(key))
    }
}
