//! The NAT mode's maps as lbd sees them: the flow table (both directions
//! of every translated flow), the NAT source of each VIP id, and the
//! interfaces routed packets may be redirected to. Kept apart from
//! `dataplane` so each map family has one small home.

use aya::{
    maps::{xdp::DevMapHash, Array, MapData, MapError},
    Ebpf,
};
use lb_common::{consts::names, FlowKey, NatEntry, NatSource};

use crate::{
    conntrack::table::FlowTableError,
    dataplane::{map_error, take_map, take_map_data, DataplaneError},
    nat::{reaper::NatTable, table::NatFlowTable},
};

type Result<T> = std::result::Result<T, DataplaneError>;

/// Typed handles on the NAT maps.
pub struct NatMaps {
    flows: NatFlowTable,
    sources: Array<MapData, NatSource>,
    tx_ports: DevMapHash<MapData>,
}

impl NatMaps {
    /// The NAT maps of a freshly loaded object, its flow table of
    /// `buckets` buckets.
    pub(crate) fn take(ebpf: &mut Ebpf, buckets: u32) -> Result<Self> {
        let table = take_map_data(ebpf, names::MAP_NAT_BUCKETS)?;
        Ok(Self {
            flows: NatFlowTable::new(table, buckets).map_err(table_error)?,
            sources: take_map(ebpf, names::MAP_NAT_SOURCES)?,
            tx_ports: take_map(ebpf, names::MAP_TX_PORTS)?,
        })
    }

    /// Every NAT flow entry (both directions), read from the mapped table
    /// while it changes under the reader.
    pub fn flows(&self) -> impl Iterator<Item = (FlowKey, NatEntry)> + '_ {
        self.flows.iter()
    }

    /// The flow table itself (its size, its map for pinning and memory).
    pub fn table(&self) -> &NatFlowTable {
        &self.flows
    }

    /// One entry, if present.
    pub fn flow(&self, key: &FlowKey) -> Option<NatEntry> {
        self.flows.get(key)
    }

    /// Puts one entry in (replication from the peer, tests): the entry
    /// held under `key` is rewritten, else one is inserted.
    pub fn install_flow(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<()> {
        self.flows.install(key, entry).map_err(table_error)
    }

    /// Puts one entry in only if its key is free (as the data plane
    /// inserts), so replication never overwrites another flow's entry the
    /// data plane created meanwhile; `false` when the key is taken.
    pub fn install_flow_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<bool> {
        self.flows.insert_if_free(key, entry).map_err(table_error)
    }

    /// Removes one entry (the reaper); one already gone is not an error.
    pub fn remove_flow(&mut self, key: &FlowKey) -> Result<()> {
        self.flows.remove(key);
        Ok(())
    }

    /// Writes VIP id `vip_id`'s NAT source.
    pub(crate) fn set_source(&mut self, vip_id: u32, source: &NatSource) -> Result<()> {
        self.sources
            .set(vip_id, source, 0)
            .map_err(|e| map_error("writing", names::MAP_NAT_SOURCES, e))
    }

    /// Lets the XDP program redirect routed packets out of `ifindex`.
    pub fn add_tx_port(&mut self, ifindex: u32) -> Result<()> {
        self.tx_ports
            .insert(ifindex, ifindex, None, 0)
            .map_err(|e| {
                map_error(
                    "writing",
                    names::MAP_TX_PORTS,
                    MapError::IoError(std::io::Error::other(e.to_string())),
                )
            })
    }

    /// Takes `ifindex` out of the redirect targets (the interface went
    /// away); one not there is not an error.
    pub fn remove_tx_port(&mut self, ifindex: u32) -> Result<()> {
        match self.tx_ports.remove(ifindex) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_error("deleting from", names::MAP_TX_PORTS, e)),
        }
    }

    /// The interfaces in the redirect map.
    pub fn tx_ports(&self) -> Vec<u32> {
        self.tx_ports.keys().filter_map(|k| k.ok()).collect()
    }
}

/// The reaper sweeps the flow table itself (see `NatFlowTable`'s
/// `NatTable`).
impl NatTable for NatMaps {
    type Cursor = u32;

    fn batch(
        &self,
        cursor: Option<u32>,
        max: usize,
        out: &mut Vec<(FlowKey, NatEntry)>,
    ) -> std::io::Result<Option<u32>> {
        NatTable::batch(&self.flows, cursor, max, out)
    }

    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        NatTable::get(&self.flows, key)
    }

    fn remove(&mut self, key: &FlowKey) -> bool {
        NatTable::remove(&mut self.flows, key)
    }

    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> std::io::Result<bool> {
        NatTable::insert_if_free(&mut self.flows, key, entry)
    }
}

/// A NAT flow table error as the data plane's.
fn table_error(error: FlowTableError) -> DataplaneError {
    DataplaneError::FlowTable(Box::new(error))
}
