//! Maps of a loaded object opened a second time: the half-open table
//! (`HALF_OPEN`) for the runners whose rounds must start from empty
//! tables, the Maglev map for the table-write pass. lbd's `Dataplane` keeps
//! its handles to itself, so a map is found again through the programs
//! that use it.

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
    let (map, buckets) = map_of(dataplane, names::MAP_HALF_OPEN)?;
    FlowTable::new(map, buckets, Placement::ByFlowHash).context("mapping the half-open table")
}

/// A second handle of `dataplane`'s map `name`, with its capacity (found
/// through the object's loaded programs, so not another lbd's map).
pub(crate) fn map_of(dataplane: &mut Dataplane, name: &str) -> anyhow::Result<(MapData, u32)> {
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
        if info.name_as_str() == Some(name) {
            let map = MapData::from_id(id).with_context(|| format!("opening map {name}"))?;
            return Ok((map, info.max_entries()));
        }
    }
    Err(anyhow!("no loaded program uses a {name} map"))
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
