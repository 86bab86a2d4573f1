//! Reads a running lbd's data-plane counters the way an operator's tool
//! would: finds the maps that process holds (through `/proc/<pid>/fdinfo`)
//! and opens them by id. Lets tests compare what the XDP program counted
//! with what the client saw.

use std::fs;

use anyhow::{anyhow, Context as _};
use aya::maps::{Map, MapData, MapInfo, PerCpuArray};
use lb_common::{
    consts::names,
    stats::{Counter, CpuState},
    TrafficCounters,
};

/// The counters of one lbd process.
pub struct LbdMaps {
    packet_state: PerCpuArray<MapData, CpuState>,
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
            packet_state: PerCpuArray::try_from(Map::PerCpuArray(open(names::MAP_PACKET_STATE)?))?,
            vip_stats: PerCpuArray::try_from(Map::PerCpuArray(open(names::MAP_VIP_STATS)?))?,
            backend_stats: PerCpuArray::try_from(Map::PerCpuArray(open(
                names::MAP_BACKEND_STATS,
            )?))?,
        })
    }

    /// A node counter summed over CPUs.
    pub fn counter(&self, counter: Counter) -> anyhow::Result<u64> {
        Ok(self
            .packet_state
            .get(&0, 0)?
            .iter()
            .map(|cpu| cpu.counters[counter as usize])
            .sum())
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

/// A map created the way an older lbd's object had it (`map_type` as
/// `BPF_MAP_TYPE_*`, named `name`, at most 15 bytes), for upgrade tests
/// to pin where that release left it.
pub fn create_map(
    name: &str,
    map_type: u32,
    sizes: (u32, u32),
    max_entries: u32,
) -> anyhow::Result<MapData> {
    create_map_with_flags(name, map_type, sizes, max_entries, 0)
}

/// `create_map` with `map_flags` (e.g. `BPF_F_MMAPABLE`, 0x400, for a
/// bucket table of another release's layout).
pub fn create_map_with_flags(
    name: &str,
    map_type: u32,
    (key_size, value_size): (u32, u32),
    max_entries: u32,
    map_flags: u32,
) -> anyhow::Result<MapData> {
    use std::os::fd::{FromRawFd as _, OwnedFd};
    /// The `bpf_attr` of `BPF_MAP_CREATE`, up to the name.
    #[repr(C)]
    #[derive(Default)]
    struct CreateAttr {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        inner_map_fd: u32,
        numa_node: u32,
        map_name: [u8; 16],
    }
    let mut map_name = [0u8; 16];
    let bytes = name.as_bytes();
    anyhow::ensure!(bytes.len() < map_name.len(), "map name {name} is too long");
    map_name[..bytes.len()].copy_from_slice(bytes);
    let attr = CreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags,
        map_name,
        ..CreateAttr::default()
    };
    // SAFETY: BPF_MAP_CREATE (0) with an attribute of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0,
            std::ptr::from_ref(&attr),
            size_of::<CreateAttr>(),
        )
    };
    if fd < 0 {
        return Err(anyhow!(
            "BPF_MAP_CREATE {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a fresh descriptor this process owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    Ok(MapData::from_fd(fd)?)
}
