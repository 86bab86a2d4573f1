//! Reads a running lbd's data-plane counters the way an operator's tool
//! would: finds the maps that process holds (through /proc/<pid>/fdinfo)
//! and opens them by id. Lets tests compare what the XDP program counted
//! with what the client saw.

use std::fs;

use anyhow::{anyhow, Context as _};
use aya::maps::{Map, MapData, MapInfo, PerCpuArray};
use lb_common::{consts::names, stats::Counter, TrafficCounters};

/// The counters of one lbd process.
pub struct LbdMaps {
    counters: PerCpuArray<MapData, u64>,
    vip_stats: PerCpuArray<MapData, TrafficCounters>,
    backend_stats: PerCpuArray<MapData, TrafficCounters>,
}

/// Opens the map named `name` that process `pid` holds.
pub fn open_map(pid: u32, name: &str) -> anyhow::Result<MapData> {
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let info = fs::read_to_string(entry?.path()).unwrap_or_default();
        let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .and_then(|v| v.trim().parse::<u32>().ok())
        else {
            continue;
        };
        // Kernel map names are cut at 15 bytes.
        if MapInfo::from_id(id)?
            .name_as_str()
            .is_some_and(|n| name.starts_with(n) && !n.is_empty())
        {
            return Ok(MapData::from_id(id)?);
        }
    }
    Err(anyhow!("process {pid} holds no map named {name}"))
}

impl LbdMaps {
    /// Opens the maps held by process `pid`.
    pub fn of_process(pid: u32) -> anyhow::Result<Self> {
        let open = |name: &str| open_map(pid, name);
        Ok(Self {
            counters: PerCpuArray::try_from(Map::PerCpuArray(open(names::MAP_COUNTERS)?))?,
            vip_stats: PerCpuArray::try_from(Map::PerCpuArray(open(names::MAP_VIP_STATS)?))?,
            backend_stats: PerCpuArray::try_from(Map::PerCpuArray(open(
                names::MAP_BACKEND_STATS,
            )?))?,
        })
    }

    /// A node counter summed over CPUs.
    pub fn counter(&self, counter: Counter) -> anyhow::Result<u64> {
        Ok(self.counters.get(&(counter as u32), 0)?.iter().sum())
    }

    /// Traffic of VIP id `id`, summed over CPUs.
    pub fn vip(&self, id: u32) -> anyhow::Result<TrafficCounters> {
        sum(&self.vip_stats, id)
    }

    /// Traffic of backend id `id`, summed over CPUs.
    pub fn backend(&self, id: u32) -> anyhow::Result<TrafficCounters> {
        sum(&self.backend_stats, id)
    }
}

fn sum(map: &PerCpuArray<MapData, TrafficCounters>, id: u32) -> anyhow::Result<TrafficCounters> {
    Ok(map
        .get(&id, 0)?
        .iter()
        .fold(TrafficCounters::default(), |a, c| a.plus(*c)))
}
