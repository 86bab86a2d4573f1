//! The XDP data plane as the control plane sees it: load the embedded
//! object with maps sized from the config, attach it to an interface, and
//! write or read its maps. `MapWriter` is the narrow seam `reconcile` writes
//! through, so its logic is tested without a kernel.

use std::collections::HashMap as StdHashMap;

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{xdp::XdpLinkId, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use lb_common::{
    consts::{maglev_index, names, MAGLEV_SIZE_MAX, MAGLEV_TABLES_PER_VIP, MAX_BACKENDS},
    stats::{Counter, COUNTER_COUNT},
    Backend, DataplaneEvent, FlowEntry, FlowKey, LbConfig, TrafficCounters, VipKey, VipMeta,
};
use tracing::{info, warn};

use crate::{
    config::XdpMode as ConfigXdpMode,
    conntrack_kind::{self, ConntrackKind},
    ebpf_object::EBPF_OBJECT,
};

/// Errors of the data plane, each naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The object did not load (verifier, memlock, missing privileges).
    #[error("loading the XDP object: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    /// A program of the object did not load or attach.
    #[error("{action} program {program}: {source}")]
    Program {
        /// What was attempted.
        action: &'static str,
        /// Which program.
        program: &'static str,
        /// Why it failed.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A map is missing from the object or has the wrong type.
    #[error("map {name}: {source}")]
    MapType {
        /// Which map.
        name: &'static str,
        /// Why it failed.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// A map is missing from the object.
    #[error("map {0} is missing from the XDP object")]
    MissingMap(&'static str),
    /// A map read or write failed.
    #[error("{action} map {name}: {source}")]
    Map {
        /// What was attempted.
        action: &'static str,
        /// Which map.
        name: &'static str,
        /// Why it failed.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// The object could not be prepared for the requested map design.
    #[error(transparent)]
    Patch(#[from] conntrack_kind::PatchError),
    /// An id is beyond what the maps were sized for.
    #[error("{what} {id} is out of range (capacity {capacity})")]
    OutOfRange {
        /// What kind of id.
        what: &'static str,
        /// The id.
        id: u32,
        /// The capacity.
        capacity: u32,
    },
}

type Result<T> = std::result::Result<T, DataplaneError>;

/// Writes the control plane makes to the data plane. Implemented by the
/// real maps and by an in-memory fake in tests.
pub trait MapWriter {
    /// Sets the node settings.
    fn set_config(&mut self, config: &LbConfig) -> Result<()>;
    /// Writes backend `id`.
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<()>;
    /// Writes `(slot, backend id)` pairs into copy `table` of VIP `vip_id`;
    /// returns how many slots were written.
    fn write_table(
        &mut self,
        vip_id: u32,
        table: u32,
        slots: &mut dyn Iterator<Item = (u32, u32)>,
    ) -> Result<usize>;
    /// Inserts or replaces a VIP (atomically, as one map update).
    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<()>;
    /// Removes a VIP: its packets pass up the stack from then on.
    fn remove_vip(&mut self, key: &VipKey) -> Result<()>;
}

/// Sizes of the maps, fixed at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSizes {
    /// VIPs the tables and per-VIP stats hold.
    pub max_vips: u32,
    /// Connection table entries.
    pub conntrack: u32,
}

/// How to load the object beyond its map sizes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The map design of the connection table.
    pub conntrack_kind: ConntrackKind,
}

/// The loaded object: programs and typed handles on its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    sizes: MapSizes,
    vips: HashMap<MapData, VipKey, VipMeta>,
    maglev: Array<MapData, u32>,
    backends: Array<MapData, Backend>,
    /// The LRU connection table (aya types LRU hashes as `HashMap`).
    conntrack: HashMap<MapData, FlowKey, FlowEntry>,
    config: Array<MapData, LbConfig>,
    counters: PerCpuArray<MapData, u64>,
    vip_stats: PerCpuArray<MapData, TrafficCounters>,
    backend_stats: PerCpuArray<MapData, TrafficCounters>,
    events: Option<RingBuf<MapData>>,
    attached: Option<(String, XdpLinkId)>,
}

macro_rules! take_map {
    ($ebpf:expr, $name:expr) => {{
        let map = $ebpf
            .take_map($name)
            .ok_or(DataplaneError::MissingMap($name))?;
        map.try_into().map_err(|e| DataplaneError::MapType {
            name: $name,
            source: Box::new(e),
        })?
    }};
}

impl Dataplane {
    /// Loads the embedded object and its programs (not attached yet).
    pub fn load(sizes: MapSizes) -> Result<Self> {
        Self::load_with(sizes, &LoadOptions::default())
    }

    /// Loads the embedded object with non-default options.
    pub fn load_with(sizes: MapSizes, options: &LoadOptions) -> Result<Self> {
        let object =
            conntrack_kind::patch(EBPF_OBJECT, names::MAP_CONNTRACK, options.conntrack_kind)?;
        let maglev_entries = sizes.max_vips * MAGLEV_TABLES_PER_VIP * MAGLEV_SIZE_MAX;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(names::MAP_VIPS, sizes.max_vips)
            .map_max_entries(names::MAP_VIP_STATS, sizes.max_vips)
            .map_max_entries(names::MAP_MAGLEV, maglev_entries)
            .map_max_entries(names::MAP_CONNTRACK, sizes.conntrack)
            .load(&object)
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;
        for program in [names::PROG_LB, names::PROG_PASS] {
            xdp_program(&mut ebpf, program)?
                .load()
                .map_err(|e| program_error("loading", program, e))?;
        }
        Ok(Self {
            vips: take_map!(ebpf, names::MAP_VIPS),
            maglev: take_map!(ebpf, names::MAP_MAGLEV),
            backends: take_map!(ebpf, names::MAP_BACKENDS),
            conntrack: take_map!(ebpf, names::MAP_CONNTRACK),
            config: take_map!(ebpf, names::MAP_CONFIG),
            counters: take_map!(ebpf, names::MAP_COUNTERS),
            vip_stats: take_map!(ebpf, names::MAP_VIP_STATS),
            backend_stats: take_map!(ebpf, names::MAP_BACKEND_STATS),
            events: Some(take_map!(ebpf, names::MAP_EVENTS)),
            ebpf,
            sizes,
            attached: None,
        })
    }

    /// The map sizes this object was loaded with.
    pub fn sizes(&self) -> MapSizes {
        self.sizes
    }

    /// Attaches the balancer to `interface`. `Auto` tries native (driver)
    /// mode and falls back to generic with a warning. Returns the mode used.
    pub fn attach(&mut self, interface: &str, mode: ConfigXdpMode) -> Result<ConfigXdpMode> {
        let program = xdp_program(&mut self.ebpf, names::PROG_LB)?;
        let (link, used) = match mode {
            ConfigXdpMode::Native => (program.attach(interface, XdpMode::Driver), mode),
            ConfigXdpMode::Generic => (program.attach(interface, XdpMode::Skb), mode),
            ConfigXdpMode::Auto => match program.attach(interface, XdpMode::Driver) {
                Ok(link) => (Ok(link), ConfigXdpMode::Native),
                Err(error) => {
                    warn!(%interface, %error, "native XDP attach failed; falling back to generic (skb) mode, which is much slower");
                    (
                        program.attach(interface, XdpMode::Skb),
                        ConfigXdpMode::Generic,
                    )
                }
            },
        };
        let link = link.map_err(|e| program_error("attaching", names::PROG_LB, e))?;
        info!(%interface, mode = ?used, "XDP program attached");
        self.attached = Some((interface.to_owned(), link));
        Ok(used)
    }

    /// Detaches the balancer, if attached. Packets then take the normal
    /// stack path again.
    pub fn detach(&mut self) -> Result<()> {
        if let Some((interface, link)) = self.attached.take() {
            xdp_program(&mut self.ebpf, names::PROG_LB)?
                .detach(link)
                .map_err(|e| program_error("detaching", names::PROG_LB, e))?;
            info!(%interface, "XDP program detached");
        }
        Ok(())
    }

    /// The object, for tools that need its other programs and maps
    /// (benchmarks).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// A loaded program, for BPF_PROG_TEST_RUN in tests and benchmarks.
    pub fn program(&mut self, name: &'static str) -> Result<&mut Xdp> {
        xdp_program(&mut self.ebpf, name)
    }

    /// Node counters summed over CPUs, in `Counter::ALL` order.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>> {
        let mut out = Vec::with_capacity(COUNTER_COUNT as usize);
        for counter in Counter::ALL {
            let values = self
                .counters
                .get(&(counter as u32), 0)
                .map_err(|e| map_error("reading", names::MAP_COUNTERS, e))?;
            out.push((counter, values.iter().sum()));
        }
        Ok(out)
    }

    /// Traffic of one VIP id, summed over CPUs.
    pub fn vip_traffic(&self, vip_id: u32) -> Result<TrafficCounters> {
        sum_traffic(&self.vip_stats, vip_id, names::MAP_VIP_STATS)
    }

    /// Traffic of one backend id, summed over CPUs.
    pub fn backend_traffic(&self, backend_id: u32) -> Result<TrafficCounters> {
        sum_traffic(&self.backend_stats, backend_id, names::MAP_BACKEND_STATS)
    }

    /// Every tracked flow, read one by one (the table changes while it is
    /// read; nothing is copied up front, so a million flows cost no memory).
    pub fn flows(&self) -> impl Iterator<Item = (FlowKey, FlowEntry)> + '_ {
        self.conntrack.iter().filter_map(|r| r.ok())
    }

    /// Hands the event ring buffer to its reader (once).
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }

    /// Events waiting in the ring buffer, if it was not taken.
    pub fn drain_events(&mut self) -> Vec<DataplaneEvent> {
        let mut out = Vec::new();
        if let Some(ring) = &mut self.events {
            while let Some(item) = ring.next() {
                if let Some(event) = parse_event(&item) {
                    out.push(event);
                }
            }
        }
        out
    }

    /// Puts a flow into the connection table (replication from the peer).
    pub fn install_flow(&mut self, key: &FlowKey, entry: &FlowEntry) -> Result<()> {
        self.conntrack
            .insert(key, entry, 0)
            .map_err(|e| map_error("writing", names::MAP_CONNTRACK, e))
    }

    /// Removes a flow from the connection table (expiry by userspace, when
    /// the table is not an LRU). A flow that is already gone is not an error.
    pub fn remove_flow(&mut self, key: &FlowKey) -> Result<()> {
        match self.conntrack.remove(key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_error("deleting from", names::MAP_CONNTRACK, e)),
        }
    }

    /// Whether the balancer is attached.
    pub fn is_attached(&self) -> bool {
        self.attached.is_some()
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if let Err(error) = self.detach() {
            warn!(%error, "detaching on drop failed");
        }
    }
}

impl MapWriter for Dataplane {
    fn set_config(&mut self, config: &LbConfig) -> Result<()> {
        self.config
            .set(0, config, 0)
            .map_err(|e| map_error("writing", names::MAP_CONFIG, e))
    }

    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<()> {
        if id == 0 || id >= MAX_BACKENDS {
            return Err(DataplaneError::OutOfRange {
                what: "backend id",
                id,
                capacity: MAX_BACKENDS,
            });
        }
        self.backends
            .set(id, backend, 0)
            .map_err(|e| map_error("writing", names::MAP_BACKENDS, e))
    }

    fn write_table(
        &mut self,
        vip_id: u32,
        table: u32,
        slots: &mut dyn Iterator<Item = (u32, u32)>,
    ) -> Result<usize> {
        if vip_id >= self.sizes.max_vips {
            return Err(DataplaneError::OutOfRange {
                what: "VIP id",
                id: vip_id,
                capacity: self.sizes.max_vips,
            });
        }
        let mut written = 0;
        for (slot, backend_id) in slots {
            self.maglev
                .set(maglev_index(vip_id, table, slot), backend_id, 0)
                .map_err(|e| map_error("writing", names::MAP_MAGLEV, e))?;
            written += 1;
        }
        Ok(written)
    }

    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<()> {
        self.vips
            .insert(key, meta, 0)
            .map_err(|e| map_error("writing", names::MAP_VIPS, e))
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<()> {
        self.vips
            .remove(key)
            .map_err(|e| map_error("removing from", names::MAP_VIPS, e))
    }
}

/// A `DataplaneEvent` from a ring-buffer record, if it has the size.
pub fn parse_event(bytes: &[u8]) -> Option<DataplaneEvent> {
    if bytes.len() != std::mem::size_of::<DataplaneEvent>() {
        return None;
    }
    // SAFETY: the length matches and DataplaneEvent is plain integers
    // (any bit pattern is valid); read_unaligned copes with alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<DataplaneEvent>()) })
}

fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp> {
    let program = ebpf.program_mut(name).ok_or(DataplaneError::Program {
        action: "finding",
        program: name,
        source: Box::new(aya::programs::ProgramError::NotLoaded),
    })?;
    program
        .try_into()
        .map_err(|e| program_error("finding", name, e))
}

fn program_error(
    action: &'static str,
    program: &'static str,
    e: aya::programs::ProgramError,
) -> DataplaneError {
    DataplaneError::Program {
        action,
        program,
        source: Box::new(e),
    }
}

fn map_error(action: &'static str, name: &'static str, e: aya::maps::MapError) -> DataplaneError {
    DataplaneError::Map {
        action,
        name,
        source: Box::new(e),
    }
}

fn sum_traffic(
    map: &PerCpuArray<MapData, TrafficCounters>,
    id: u32,
    name: &'static str,
) -> Result<TrafficCounters> {
    let values = map.get(&id, 0).map_err(|e| map_error("reading", name, e))?;
    Ok(values
        .iter()
        .fold(TrafficCounters::default(), |acc, c| acc.plus(*c)))
}

/// In-memory `MapWriter` for tests of the control plane's logic.
#[derive(Debug, Default)]
pub struct FakeMaps {
    /// Node settings.
    pub config: LbConfig,
    /// Backends by id.
    pub backends: StdHashMap<u32, Backend>,
    /// Table slots by (vip id, table copy, slot).
    pub tables: StdHashMap<(u32, u32, u32), u32>,
    /// VIPs.
    pub vips: StdHashMap<VipKey, VipMeta>,
    /// Slots written so far (to check that only changes are written).
    pub slot_writes: usize,
    /// Order of writes other than table slots: "backend <id>", "vip <id>".
    pub log: Vec<String>,
}

impl FakeMaps {
    /// The live table of a VIP as packets would read it.
    pub fn live_table(&self, key: &VipKey) -> Option<Vec<u32>> {
        let meta = self.vips.get(key)?;
        Some(
            (0..meta.table_size)
                .map(|slot| {
                    self.tables
                        .get(&(meta.id, meta.active_table, slot))
                        .copied()
                        .unwrap_or(0)
                })
                .collect(),
        )
    }
}

impl MapWriter for FakeMaps {
    fn set_config(&mut self, config: &LbConfig) -> Result<()> {
        self.config = *config;
        Ok(())
    }

    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<()> {
        self.backends.insert(id, *backend);
        self.log.push(format!("backend {id}"));
        Ok(())
    }

    fn write_table(
        &mut self,
        vip_id: u32,
        table: u32,
        slots: &mut dyn Iterator<Item = (u32, u32)>,
    ) -> Result<usize> {
        let mut written = 0;
        for (slot, backend_id) in slots {
            self.tables.insert((vip_id, table, slot), backend_id);
            written += 1;
        }
        self.slot_writes += written;
        Ok(written)
    }

    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<()> {
        self.vips.insert(*key, *meta);
        self.log.push(format!("vip {}", meta.id));
        Ok(())
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<()> {
        self.vips.remove(key);
        Ok(())
    }
}
