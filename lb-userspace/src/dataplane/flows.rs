//! The connection table as the control plane reads and writes it,
//! whichever design backs it: the bucket table mapped into this process,
//! or a kernel hash map (the bench's earlier designs).

use aya::{
    maps::{HashMap, MapData},
    Ebpf,
};
use lb_common::{consts::names, FlowEntry, FlowKey};

use super::{map_error, take_map, take_map_data, Dataplane, DataplaneError, Result};
use crate::conntrack::{
    kind::ConntrackKind,
    table::{FlowTable, Placement},
};

/// The connection table behind `Dataplane::flows` and friends.
pub(super) enum FlowStore {
    /// `FLOW_BUCKETS`, mapped into this process.
    Buckets(FlowTable),
    /// `CONNTRACK`, a kernel hash map (the bench's earlier designs).
    KernelMap(HashMap<MapData, FlowKey, FlowEntry>),
}

impl FlowStore {
    /// Takes the map of `kind`'s design out of the loaded object.
    pub(super) fn take(ebpf: &mut Ebpf, kind: ConntrackKind, buckets: u32) -> Result<Self> {
        if kind.is_kernel_map() {
            return Ok(Self::KernelMap(take_map(ebpf, names::MAP_CONNTRACK)?));
        }
        let map = take_map_data(ebpf, names::MAP_FLOW_BUCKETS)?;
        FlowTable::new(map, buckets, Placement::ByTableHash)
            .map(Self::Buckets)
            .map_err(|e| DataplaneError::FlowTable(Box::new(e)))
    }
}

/// `HALF_OPEN` (half-open TCP flows, either design) of `buckets` buckets,
/// mapped into this process so its occupancy is counted in place.
pub(super) fn take_half_open(ebpf: &mut Ebpf, buckets: u32) -> Result<FlowTable> {
    let map = take_map_data(ebpf, names::MAP_HALF_OPEN)?;
    FlowTable::new(map, buckets, Placement::ByFlowHash)
        .map_err(|e| DataplaneError::FlowTable(Box::new(e)))
}

impl Dataplane {
    /// Every tracked flow, read one by one (the table changes while it is
    /// read; nothing is copied up front, so a million flows cost no memory).
    pub fn flows(&self) -> Box<dyn Iterator<Item = (FlowKey, FlowEntry)> + '_> {
        match &self.flows {
            FlowStore::Buckets(table) => Box::new(table.iter()),
            FlowStore::KernelMap(map) => Box::new(map.iter().filter_map(|r| r.ok())),
        }
    }

    /// The bucket connection table and the half-open table mapped a
    /// second time (see `FlowTable::remapped`), for walks off lbd's loop;
    /// None when the connection table is a kernel map (the bench's
    /// earlier designs).
    pub(crate) fn remapped_tables(
        &self,
    ) -> Option<std::result::Result<(FlowTable, FlowTable), crate::conntrack::table::FlowTableError>>
    {
        let FlowStore::Buckets(table) = &self.flows else {
            return None;
        };
        Some(
            table
                .remapped()
                .and_then(|flows| Ok((flows, self.half_open.remapped()?))),
        )
    }

    /// Flows in the connection table now.
    pub fn flow_count(&self) -> u64 {
        match &self.flows {
            FlowStore::Buckets(table) => table.count(),
            FlowStore::KernelMap(map) => map.keys().filter(|k| k.is_ok()).count() as u64,
        }
    }

    /// Every half-open flow the half-open table holds, read one by one
    /// (some may be past the half-open timeout, waiting to be overwritten).
    pub fn half_open_flows(&self) -> impl Iterator<Item = (FlowKey, FlowEntry)> + '_ {
        self.half_open.iter()
    }

    /// Half-open TCP flows held now (a SYN seen, its ACK not yet; some may
    /// be past the half-open timeout and wait to be overwritten).
    pub fn half_open_count(&self) -> u64 {
        self.half_open.count()
    }

    /// Half-open flows the table has room for (its slots; a new one
    /// evicts the oldest of its bucket when that bucket is full).
    pub fn half_open_capacity(&self) -> u64 {
        self.half_open.capacity()
    }

    /// The half-open table's entry of one flow, if it holds it (tests,
    /// `lbctl flow`): a read that changes nothing.
    pub fn half_open_flow(&self, key: &FlowKey) -> Option<FlowEntry> {
        self.half_open.get(key)
    }

    /// Flows the connection table keeps without evicting a live one: the
    /// configured size (the bucket table has twice as many slots, so its
    /// flows' buckets do not fill before it holds that many).
    pub fn flow_capacity(&self) -> u64 {
        u64::from(self.sizes.conntrack)
    }

    /// Bytes of kernel memory the connection table takes, as the kernel
    /// accounts the map (all preallocated); 0 if the kernel does not say.
    pub fn flow_memory_bytes(&self) -> u64 {
        let map = match &self.flows {
            FlowStore::Buckets(table) => table.map(),
            FlowStore::KernelMap(map) => aya::maps::IterableMap::map(map),
        };
        crate::conntrack::bucket_map::kernel_memory_bytes(map).unwrap_or(0)
    }

    /// Bytes of kernel memory the NAT flow table takes, as the kernel
    /// accounts the map (all preallocated); 0 if the kernel does not say.
    pub fn nat_memory_bytes(&self) -> u64 {
        crate::conntrack::bucket_map::kernel_memory_bytes(self.nat.table().map()).unwrap_or(0)
    }

    /// The connection-table entry of one flow, if tracked (`lbctl flow`).
    /// A lookup from userspace does not refresh the entry, so asking never
    /// keeps a flow from being evicted. (Every kernel-map kind stores one
    /// value per key — the per-CPU LRU keeps per-CPU LRU lists, not
    /// per-CPU values — so a plain lookup sees the entry whichever CPU
    /// inserted it.)
    pub fn flow(&self, key: &FlowKey) -> Result<Option<FlowEntry>> {
        match &self.flows {
            FlowStore::Buckets(table) => Ok(table.get(key)),
            FlowStore::KernelMap(map) => match map.get(key, 0) {
                Ok(entry) => Ok(Some(entry)),
                Err(aya::maps::MapError::KeyNotFound) => Ok(None),
                Err(e) => Err(map_error("reading", names::MAP_CONNTRACK, e)),
            },
        }
    }

    /// Puts a flow into the connection table (replication from the peer).
    pub fn install_flow(&mut self, key: &FlowKey, entry: &FlowEntry) -> Result<()> {
        match &mut self.flows {
            FlowStore::Buckets(table) => table
                .install(key, entry)
                .map_err(|e| DataplaneError::FlowTable(Box::new(e))),
            FlowStore::KernelMap(map) => map
                .insert(key, entry, 0)
                .map_err(|e| map_error("writing", names::MAP_CONNTRACK, e)),
        }
    }

    /// `install_flow` unless `keep` holds of the entry held for the flow
    /// (replication: one seen more recently than the peer's copy), judged
    /// in the bucket table's write on the entry it would replace
    /// (`FlowTable::install_unless`); a kernel map is read, then written.
    /// The entry kept, or None once `entry` is in.
    pub(crate) fn install_flow_unless(
        &mut self,
        key: &FlowKey,
        entry: &FlowEntry,
        keep: &mut dyn FnMut(&FlowEntry) -> bool,
    ) -> Result<Option<FlowEntry>> {
        if let FlowStore::Buckets(table) = &self.flows {
            return table
                .install_unless(key, entry, keep)
                .map_err(|e| DataplaneError::FlowTable(Box::new(e)));
        }
        if let Some(held) = self.flow(key)? {
            if keep(&held) {
                return Ok(Some(held));
            }
        }
        self.install_flow(key, entry).map(|()| None)
    }

    /// Removes a flow from the connection table (expiry by userspace,
    /// `lbctl`). A flow that is already gone is not an error.
    pub fn remove_flow(&mut self, key: &FlowKey) -> Result<()> {
        match &mut self.flows {
            FlowStore::Buckets(table) => {
                table.remove(key);
                Ok(())
            }
            FlowStore::KernelMap(map) => match map.remove(key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                Err(e) => Err(map_error("deleting from", names::MAP_CONNTRACK, e)),
            },
        }
    }
}
