//! The tables a walk reads: lbd's own mappings of the connection table
//! and the NAT flow table, or a second mapping of both for walks off
//! lbd's loop.

use std::sync::Arc;

use lb_common::{FlowEntry, FlowKey, NatEntry};

use crate::{
    conntrack::table::{FlowTable, FlowTableError},
    dataplane::Dataplane,
    nat::table::NatFlowTable,
};

/// The tables a walk reads: the connection table and the NAT flow table.
pub(in crate::daemon::replication) trait Tables {
    /// Every tracked flow, read one by one.
    fn flows(&self) -> Box<dyn Iterator<Item = (FlowKey, FlowEntry)> + '_>;
    /// Every NAT flow entry (both directions of each flow), read one by
    /// one.
    fn nat_flows(&self) -> Box<dyn Iterator<Item = (FlowKey, NatEntry)> + '_>;
    /// One NAT flow entry, read by key (a counterpart of one read by
    /// [`Tables::nat_flows`]): a scan then holds only what it sends.
    fn nat_flow(&self, key: &FlowKey) -> Option<NatEntry>;
    /// Both tables mapped a second time, for walks off lbd's loop; None
    /// where the connection table is no bucket table (a kernel map).
    fn remapped(&self) -> Option<Result<SharedTables, FlowTableError>> {
        None
    }
}

impl Tables for Dataplane {
    fn flows(&self) -> Box<dyn Iterator<Item = (FlowKey, FlowEntry)> + '_> {
        Dataplane::flows(self)
    }

    fn nat_flows(&self) -> Box<dyn Iterator<Item = (FlowKey, NatEntry)> + '_> {
        Box::new(self.nat().flows())
    }

    fn nat_flow(&self, key: &FlowKey) -> Option<NatEntry> {
        self.nat().flow(key)
    }

    fn remapped(&self) -> Option<Result<SharedTables, FlowTableError>> {
        let tables = self.remapped_tables()?;
        Some(tables.and_then(|(flows, _half_open)| {
            let remapped: SharedTables = Arc::new(Remapped {
                flows,
                nat: remapped_nat(self.nat().table())?,
            });
            Ok(remapped)
        }))
    }
}

/// Tables a walk off the loop reads: a second mapping ([`Remapped`]), or
/// tables in memory in tests.
pub(in crate::daemon::replication) type SharedTables = Arc<dyn Tables + Send + Sync>;

/// The connection table and the NAT flow table mapped a second time:
/// what walks off lbd's loop read.
struct Remapped {
    flows: FlowTable,
    nat: NatFlowTable,
}

impl Tables for Remapped {
    fn flows(&self) -> Box<dyn Iterator<Item = (FlowKey, FlowEntry)> + '_> {
        Box::new(self.flows.iter())
    }

    fn nat_flows(&self) -> Box<dyn Iterator<Item = (FlowKey, NatEntry)> + '_> {
        Box::new(self.nat.iter())
    }

    fn nat_flow(&self, key: &FlowKey) -> Option<NatEntry> {
        self.nat.get(key)
    }
}

/// `table` mapped a second time (its map's fd duplicated), as
/// `FlowTable::remapped` maps the connection table: a walk off the loop
/// reads it while lbd's loop goes on with its own mapping.
fn remapped_nat(table: &NatFlowTable) -> Result<NatFlowTable, FlowTableError> {
    let buckets = table.buckets();
    let failed = |source: std::io::Error| FlowTableError::Map {
        table: "NAT flow table (second mapping, for replication's walks)",
        buckets,
        source,
    };
    let map = crate::shared_mapping::second_handle(table.map()).map_err(failed)?;
    NatFlowTable::new(map, buckets)
}
