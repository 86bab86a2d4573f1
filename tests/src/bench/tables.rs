//! The half-open table (`HALF_OPEN`) of a loaded object, for the runners
//! whose rounds must start from empty tables: lbd's `Dataplane` keeps its
//! handle to itself, so the map is found again through the programs that
//! use it and mapped a second time.

use anyhow::{anyhow, Context as _};
use aya::maps::{MapData, MapInfo};
use lb_common::consts::names;
use lb_userspace::{
    conntrack::table::{FlowTable, Placement},
    dataplane::Dataplane,
};

/// `dataplane`'s half-open table, mapped a second time (a handle of this
/// object's map, not another lbd's: found through its loaded programs).
pub(crate) fn half_open_table(dataplane: &mut Dataplane) -> anyhow::Result<FlowTable> {
    let mut ids = Vec::new();
    for (_, program) in dataplane.ebpf_mut().programs() {
        // Programs not loaded (the wrappers some runners leave out) have
        // no info.
        if let Ok(info) = program.info() {
            ids.extend(info.map_ids()?.unwrap_or_default());
        }
    }
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let info = MapInfo::from_id(id)?;
        if info.name_as_str() == Some(names::MAP_HALF_OPEN) {
            let buckets = info.max_entries();
            let map = MapData::from_id(id).context("opening the half-open table")?;
            return FlowTable::new(map, buckets, Placement::ByFlowHash)
                .context("mapping the half-open table");
        }
    }
    Err(anyhow!(
        "no loaded program uses a {} map",
        names::MAP_HALF_OPEN
    ))
}

/// Empties `table` (a half-open table); how many flows it held.
pub(crate) fn empty(table: &FlowTable) -> anyhow::Result<u64> {
    let keys: Vec<_> = table.iter().map(|(key, _)| key).collect();
    for key in &keys {
        table.remove(key);
    }
    let left = table.count();
    if left != 0 {
        anyhow::bail!("{left} half-open flows left after emptying the table");
    }
    Ok(keys.len() as u64)
}
