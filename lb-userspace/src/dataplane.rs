//! The data plane (the XDP or the tc program) as the control plane sees it:
//! load the embedded object with maps sized from the config, attach it to an
//! interface at the configured hook, and write or read its maps. `MapWriter`
//! is the narrow seam `reconcile` writes through, so its logic is tested
//! without a kernel.

#[cfg(test)]
use std::collections::HashMap as StdHashMap;

use aya::{
    maps::{Array, HashMap, Map, MapData, MapInfo, PerCpuArray, PerCpuValues, RingBuf},
    programs::{
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions},
        xdp::{XdpLink, XdpLinkId},
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use lb_common::{
    consts::{
        maglev_index, names, CONFIG_F_NAT, CONFIG_F_SYN_FLOOD, MAGLEV_SIZE_MAX,
        MAGLEV_TABLES_PER_VIP, MAX_BACKENDS,
    },
    flow_table,
    stats::Counter,
    vip_index::vip_index_buckets_for,
    Backend, DataplaneEvent, FlowEntry, FlowKey, LbConfig, NatSource, TrafficCounters,
    TunnelConfig, VipKey, VipMeta,
};
use tracing::{info, warn};

use crate::{
    config::{Attach, XdpMode as ConfigXdpMode},
    conntrack_kind::{self, ConntrackKind},
    ebpf_object::EBPF_OBJECT,
    flow_table::{FlowTable, Placement},
    guard::GuardMaps,
    legacy_nat::LegacyNat,
    legacy_table::LegacyTable,
    nat_maps::NatMaps,
    node_counters::NodeCounters,
    pinning::{PinDir, PinError, DEPENDENT_MAPS, PINNED_MAPS, STATE_MAPS},
    vip_index::VipIndex,
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
    /// The XDP link could not be pinned or taken over.
    #[error("{action} the pinned XDP link: {reason}")]
    Link {
        /// What was attempted.
        action: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The pin directory could not be used.
    #[error("pinning the data plane: {0}")]
    Pin(#[from] PinError),
    /// The object could not be parsed (to check pinned maps against it).
    #[error("reading the XDP object: {0}")]
    Parse(String),
    /// The object could not be prepared for the requested map design.
    #[error(transparent)]
    Patch(#[from] conntrack_kind::PatchError),
    /// The bucket connection table could not be mapped or written.
    #[error(transparent)]
    FlowTable(Box<crate::flow_table::FlowTableError>),
    /// The VIP index could not be mapped or written.
    #[error(transparent)]
    VipIndex(#[from] crate::vip_index::VipIndexError),
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
    /// Zeroes the traffic counters of VIP id `vip_id`, so a VIP given a
    /// freed id does not inherit what its previous holder counted.
    fn clear_vip_traffic(&mut self, vip_id: u32) -> Result<()>;
    /// Zeroes the traffic counters of backend id `id` (as for VIPs).
    fn clear_backend_traffic(&mut self, id: u32) -> Result<()>;
    /// Writes the NAT source of VIP id `vip_id` (NAT mode).
    fn set_nat_source(&mut self, vip_id: u32, source: &NatSource) -> Result<()>;
    /// Whether some VIP is in NAT mode: packets to no VIP are then looked
    /// up as possible replies of NAT'd flows (`CONFIG_F_NAT`).
    fn set_nat_enabled(&mut self, enabled: bool) -> Result<()>;
    /// Writes the node's tunnel settings (`TUNNEL_CONFIG[0]`), read by
    /// the tunnelled modes' encapsulation and by `tc_hc_encap`.
    fn set_tunnel_config(&mut self, config: &TunnelConfig) -> Result<()>;
}

/// Sizes of the maps, fixed at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSizes {
    /// VIPs the tables and per-VIP stats hold.
    pub max_vips: u32,
    /// Connection table entries.
    pub conntrack: u32,
    /// NAT flow table entries (two per flow).
    pub nat_flows: u32,
    /// Half-open TCP flows (`half_open_size`; the table holds this many
    /// rounded up to a power of two of buckets).
    pub half_open: u32,
}

/// How to load the object beyond its map sizes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The map design of the connection table.
    pub conntrack_kind: ConntrackKind,
    /// Pin maps and the XDP link here, adopting what a previous lbd left
    /// (None: the data plane lives and dies with this process).
    pub pins: Option<PinDir>,
}

/// The hook the balancer runs at, as attached (what status shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hooked {
    /// XDP in this mode (`Auto` when a pinned link was kept and the kernel
    /// did not say its mode).
    Xdp(ConfigXdpMode),
    /// tc ingress through a tcx link (kernel 6.6 and later).
    Tcx,
    /// tc ingress through clsact + cls_bpf (no tcx): not pinnable, so the
    /// program goes with this lbd.
    TcClsBpf,
}

impl Hooked {
    /// The configured hook this is.
    pub fn attach(self) -> Attach {
        match self {
            Hooked::Xdp(_) => Attach::Xdp,
            Hooked::Tcx | Hooked::TcClsBpf => Attach::Tc,
        }
    }
}

impl std::fmt::Display for Hooked {
    /// "xdp native", "xdp generic", "tc (tcx)", "tc (cls_bpf)".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hooked::Xdp(mode) => write!(f, "xdp {mode}"),
            Hooked::Tcx => f.write_str("tc (tcx)"),
            Hooked::TcClsBpf => f.write_str("tc (cls_bpf)"),
        }
    }
}

/// How the program is attached.
enum Attachment {
    /// Through a link this process owns: detached when it goes.
    Owned(XdpLinkId),
    /// Through a tc link this process owns (cls_bpf): detached when it goes.
    OwnedTc(SchedClassifierLinkId),
    /// Through a link pinned in bpffs: stays attached after lbd exits.
    Pinned {
        link: FdLink,
        path: std::path::PathBuf,
    },
}

/// What a stop left on the interface, for the log to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The program is still attached through its pinned link, forwarding
    /// with the pinned maps, for the next lbd.
    StillForwarding,
    /// The program is detached (a full stop, or nothing was pinned).
    Detached,
}

/// What a previous lbd left in pinned maps: its VIPs and backends.
#[derive(Debug, Clone, Default)]
pub(crate) struct AdoptedState {
    /// VIPs with where their tables are.
    pub vips: Vec<(VipKey, VipMeta)>,
    /// Backends in use, by id.
    pub backends: Vec<(u32, Backend)>,
}

/// The loaded object: programs and typed handles on its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    sizes: MapSizes,
    vips: HashMap<MapData, VipKey, VipMeta>,
    /// `VIPS` as the packet path reads it (`vip_index`), kept equal.
    vip_index: VipIndex,
    maglev: Array<MapData, u32>,
    backends: Array<MapData, Backend>,
    /// The connection table, whichever design backs it.
    flows: FlowStore,
    /// Half-open TCP flows (`HALF_OPEN`), apart from the connection table.
    half_open: FlowTable,
    config: Array<MapData, LbConfig>,
    counters: NodeCounters,
    vip_stats: PerCpuArray<MapData, TrafficCounters>,
    backend_stats: PerCpuArray<MapData, TrafficCounters>,
    events: Option<RingBuf<MapData>>,
    nat: NatMaps,
    /// Deny/allow lists and limits of new flows (see `guard`).
    guard: GuardMaps,
    /// `TUNNEL_CONFIG` (None: an object without the tunnelled modes).
    tunnel_config: Option<Array<MapData, TunnelConfig>>,
    attached: Option<(String, Attachment)>,
    pins: Option<PinDir>,
    adopted: bool,
    /// A previous lbd's kernel-map connection table being carried over.
    legacy: Option<LegacyTable>,
    /// A previous lbd's kernel-map NAT flow table being carried over.
    legacy_nat: Option<LegacyNat>,
    /// The adopted table's second `re_place_flows` pass is still to run
    /// (once this lbd's program is attached).
    re_place_pending: bool,
}

/// Takes map `name` out of the loaded object, typed.
pub(crate) fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DataplaneError::MissingMap(name))?;
    T::try_from(map).map_err(|e| DataplaneError::MapType {
        name,
        source: Box::new(e),
    })
}

/// Takes map `name` out of the loaded object as it is (for a map lbd
/// maps into its memory).
fn take_map_data(ebpf: &mut Ebpf, name: &'static str) -> Result<MapData> {
    match ebpf.take_map(name) {
        Some(Map::Array(data)) => Ok(data),
        Some(_) => Err(DataplaneError::MapType {
            name,
            source: Box::new(aya::maps::MapError::InvalidMapType { map_type: 0 }),
        }),
        None => Err(DataplaneError::MissingMap(name)),
    }
}

/// The connection table behind `Dataplane::flows` and friends.
enum FlowStore {
    /// `FLOW_BUCKETS`, mapped into this process.
    Buckets(FlowTable),
    /// `CONNTRACK`, a kernel hash map (the bench's earlier designs).
    KernelMap(HashMap<MapData, FlowKey, FlowEntry>),
}

impl FlowStore {
    /// Takes the map of `kind`'s design out of the loaded object.
    fn take(ebpf: &mut Ebpf, kind: ConntrackKind, buckets: u32) -> Result<Self> {
        if kind.is_kernel_map() {
            return Ok(Self::KernelMap(take_map(ebpf, names::MAP_CONNTRACK)?));
        }
        let map = match ebpf.take_map(names::MAP_FLOW_BUCKETS) {
            Some(Map::Array(data)) => data,
            Some(_) => {
                return Err(DataplaneError::FlowTable(Box::new(
                    crate::flow_table::FlowTableError::NotAnArray(names::MAP_FLOW_BUCKETS),
                )))
            }
            None => return Err(DataplaneError::MissingMap(names::MAP_FLOW_BUCKETS)),
        };
        FlowTable::new(map, buckets, Placement::ByTableHash)
            .map(Self::Buckets)
            .map_err(|e| DataplaneError::FlowTable(Box::new(e)))
    }
}

/// `HALF_OPEN` (half-open TCP flows, either design) of `buckets` buckets,
/// mapped into this process so its occupancy is counted in place.
fn take_half_open(ebpf: &mut Ebpf, buckets: u32) -> Result<FlowTable> {
    let map = match ebpf.take_map(names::MAP_HALF_OPEN) {
        Some(Map::Array(data)) => data,
        Some(_) => {
            return Err(DataplaneError::FlowTable(Box::new(
                crate::flow_table::FlowTableError::NotAnArray(names::MAP_HALF_OPEN),
            )))
        }
        None => return Err(DataplaneError::MissingMap(names::MAP_HALF_OPEN)),
    };
    FlowTable::new(map, buckets, Placement::ByFlowHash)
        .map_err(|e| DataplaneError::FlowTable(Box::new(e)))
}

impl Dataplane {
    /// Loads the embedded object and its programs (not attached yet).
    pub fn load(sizes: MapSizes) -> Result<Self> {
        Self::load_with(sizes, &LoadOptions::default())
    }

    /// Loads the embedded object with non-default options.
    pub fn load_with(sizes: MapSizes, options: &LoadOptions) -> Result<Self> {
        let kind = options.conntrack_kind;
        let object = conntrack_kind::patch(EBPF_OBJECT, names::MAP_CONNTRACK, kind)?;
        let maglev_entries = sizes.max_vips * MAGLEV_TABLES_PER_VIP * MAGLEV_SIZE_MAX;
        // The design not in use keeps its map at the smallest size.
        let (buckets, kernel_map) = if kind.is_kernel_map() {
            (1, sizes.conntrack)
        } else {
            (flow_table::buckets_for(sizes.conntrack), 1)
        };
        let half_open_buckets = flow_table::half_open_buckets_for(sizes.half_open);
        let nat_buckets = flow_table::buckets_for(sizes.nat_flows);
        let vip_buckets = vip_index_buckets_for(sizes.max_vips);
        let resized = [
            (names::MAP_VIPS, sizes.max_vips),
            (names::MAP_VIP_INDEX, 1 + vip_buckets),
            (names::MAP_VIP_STATS, sizes.max_vips),
            (names::MAP_VIP_GUARDS, sizes.max_vips),
            (names::MAP_MAGLEV, maglev_entries),
            (names::MAP_CONNTRACK, kernel_map),
            (names::MAP_FLOW_BUCKETS, buckets),
            (names::MAP_HALF_OPEN, half_open_buckets),
            (names::MAP_NAT_BUCKETS, nat_buckets),
        ];
        let mut loader = EbpfLoader::new();
        for (name, entries) in resized {
            loader.map_max_entries(name, entries);
        }
        let design = kind.design();
        let bucket_mask = buckets - 1;
        loader.override_global(names::GLOBAL_CONNTRACK_DESIGN, &design, true);
        loader.override_global(names::GLOBAL_FLOW_BUCKET_MASK, &bucket_mask, true);
        let half_open_mask = half_open_buckets - 1;
        loader.override_global(names::GLOBAL_HALF_OPEN_BUCKET_MASK, &half_open_mask, true);
        let vip_mask = vip_buckets - 1;
        loader.override_global(names::GLOBAL_VIP_INDEX_MASK, &vip_mask, true);
        let nat_mask = nat_buckets - 1;
        loader.override_global(names::GLOBAL_NAT_BUCKET_MASK, &nat_mask, true);
        let mut adopted = false;
        let mut legacy = None;
        let mut legacy_nat = None;
        if let Some(pins) = &options.pins {
            pins.prepare()?;
            legacy = LegacyTable::open(pins, kind);
            legacy_nat = LegacyNat::open(pins);
            // Tables being carried over from an older layout start afresh.
            let mut fresh = Vec::new();
            if legacy.is_some() {
                fresh.extend([names::MAP_CONNTRACK, names::MAP_FLOW_BUCKETS]);
            }
            if legacy_nat.is_some() {
                fresh.push(names::MAP_NAT_BUCKETS);
            }
            adopted = check_pins(pins, &object, &resized, &fresh)?;
            for name in PINNED_MAPS {
                loader.map_pin_path(name, pins.map_path(name));
            }
        }
        let mut ebpf = loader
            .load(&object)
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;
        for program in [names::PROG_LB, names::PROG_PASS] {
            let xdp = xdp_program(&mut ebpf, program)?;
            retry_interrupted(program, || xdp.load())
                .map_err(|e| program_error("loading", program, e))?;
        }
        // `tc_lb` is loaded when first used (`tc_program`): a node at XDP
        // does not wait for its verification (about as long as
        // `xdp_lb`'s, a second or more on a slow VM) at every start, which
        // keeps a restart well inside VRRP's master-down interval.
        // `tc_hc_encap` is loaded by the engine when a check first goes
        // through a tunnel: a node without such checks never depends on it.
        let vips: HashMap<MapData, VipKey, VipMeta> = take_map(&mut ebpf, names::MAP_VIPS)?;
        // The index is made equal to `VIPS` before any program of this
        // object runs (an adopted one is only repaired, see `VipIndex`).
        let held = vips
            .iter()
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| map_error("reading", names::MAP_VIPS, e))?;
        let vip_index = VipIndex::adopt(
            take_map_data(&mut ebpf, names::MAP_VIP_INDEX)?,
            vip_buckets,
            &held,
        )?;
        let mut dataplane = Self {
            vips,
            vip_index,
            maglev: take_map(&mut ebpf, names::MAP_MAGLEV)?,
            backends: take_map(&mut ebpf, names::MAP_BACKENDS)?,
            flows: FlowStore::take(&mut ebpf, kind, buckets)?,
            half_open: take_half_open(&mut ebpf, half_open_buckets)?,
            config: take_map(&mut ebpf, names::MAP_CONFIG)?,
            counters: NodeCounters::take(&mut ebpf, options.pins.as_ref())?,
            vip_stats: take_map(&mut ebpf, names::MAP_VIP_STATS)?,
            backend_stats: take_map(&mut ebpf, names::MAP_BACKEND_STATS)?,
            events: Some(take_map(&mut ebpf, names::MAP_EVENTS)?),
            nat: NatMaps::take(&mut ebpf, nat_buckets)?,
            guard: GuardMaps::take(&mut ebpf)?,
            tunnel_config: match ebpf.take_map(names::MAP_TUNNEL_CONFIG) {
                None => None,
                Some(map) => Some(map.try_into().map_err(|e| DataplaneError::MapType {
                    name: names::MAP_TUNNEL_CONFIG,
                    source: Box::new(e),
                })?),
            },
            ebpf,
            sizes,
            attached: None,
            pins: options.pins.clone(),
            adopted,
            legacy,
            legacy_nat,
            re_place_pending: false,
        };
        dataplane.carry_legacy_flows("loaded");
        dataplane.carry_legacy_nat("loaded");
        if adopted {
            dataplane.re_place_flows(false);
            dataplane.re_place_pending = true;
        }
        Ok(dataplane)
    }

    /// Puts the adopted table's flows that a previous release placed by
    /// another hash or in a far second bucket where this release looks
    /// for them
    /// (`FlowTable::re_place`): copies them after the load (`release`
    /// false), and again once this lbd's program runs, taking the old
    /// copies out (`release` true).
    fn re_place_flows(&mut self, release: bool) {
        let FlowStore::Buckets(table) = &self.flows else {
            return;
        };
        let done = table.re_place(release);
        if done.misplaced > 0 {
            info!(
                misplaced = done.misplaced,
                copied = done.copied,
                failed = done.failed,
                released = done.released,
                "flows a previous release placed elsewhere (another hash, or a second bucket anywhere) moved to where this release looks for them"
            );
        }
        if done.failed > 0 {
            warn!(
                failed = done.failed,
                "some flows could not be moved (their buckets stayed busy): their next packets take Maglev's pick"
            );
        }
    }

    /// Copies the flows of a previous lbd's kernel-map table into the
    /// bucket table (see `legacy_table`); after the swap (`phase`
    /// "swapped") the caller closes the old table and removes its pin
    /// (`LegacyTable::finish`).
    fn carry_legacy_flows(&mut self, phase: &str) {
        let Some(legacy) = &mut self.legacy else {
            return;
        };
        let FlowStore::Buckets(table) = &self.flows else {
            return;
        };
        let flows = legacy.flows();
        let mut failed = 0u64;
        for (key, entry) in &flows {
            if table.install(key, entry).is_err() {
                failed += 1;
            }
        }
        legacy.copied += flows.len() as u64 - failed;
        info!(
            phase,
            flows = flows.len(),
            failed,
            "flows carried over from the previous lbd's connection table"
        );
    }

    /// Installs the flows of a previous lbd's kernel-map NAT flow table
    /// into the bucket table (see `legacy_nat`), both entries of each
    /// together; after the swap (`phase` "swapped") the caller closes the
    /// old table and removes its pin (`LegacyNat::finish`). Without the
    /// state maps adopted the entries' VIP and backend ids mean nothing
    /// here: none is carried, and the pin goes at once.
    fn carry_legacy_nat(&mut self, phase: &str) {
        let Some(legacy) = &self.legacy_nat else {
            return;
        };
        if !self.adopted {
            warn!("the previous lbd's NAT flow table is not carried over: its VIPs and backends were not adopted");
            if let Some(legacy) = self.legacy_nat.take() {
                legacy.finish();
            }
            return;
        }
        let (pairs, unpaired) = legacy.pairs();
        let (mut installed, mut conflicts, mut failed) = (0u64, 0u64, 0u64);
        for pair in &pairs {
            match crate::daemon::replication::nat::install_pair(&mut self.nat, pair) {
                Ok(crate::daemon::replication::nat::Installed::Yes) => installed += 1,
                Ok(crate::daemon::replication::nat::Installed::Conflict) => conflicts += 1,
                Err(_) => failed += 1,
            }
        }
        info!(
            phase,
            flows = pairs.len(),
            installed,
            conflicts,
            failed,
            unpaired,
            "NAT flows carried over from the previous lbd's NAT flow table"
        );
        if failed > 0 {
            warn!(failed, "some NAT flows could not be carried over (their buckets were full): their connections are lost");
        }
    }

    /// The second pass of `carry_legacy_flows`, `carry_legacy_nat` and of
    /// `re_place_flows`,
    /// once this lbd's program runs on the interface: the old program no
    /// longer adds or changes flows. `attach` and `attach_tc` call it; a
    /// caller that runs the program by other means (a test run) calls it
    /// once the old program is gone.
    pub fn finish_adoption(&mut self) {
        if self.legacy.is_some() {
            self.carry_legacy_flows("swapped");
            if let Some(legacy) = self.legacy.take() {
                legacy.finish();
            }
        }
        if self.legacy_nat.is_some() {
            self.carry_legacy_nat("swapped");
            if let Some(legacy) = self.legacy_nat.take() {
                legacy.finish();
            }
        }
        if std::mem::take(&mut self.re_place_pending) {
            self.re_place_flows(true);
        }
    }

    /// Copy `copy` of VIP `vip_id`'s table as the map holds it (`size`
    /// slots), e.g. the live table a previous lbd left.
    pub(crate) fn read_table(&self, vip_id: u32, copy: u32, size: u32) -> Result<Vec<u32>> {
        if vip_id >= self.sizes.max_vips {
            return Err(DataplaneError::OutOfRange {
                what: "VIP id",
                id: vip_id,
                capacity: self.sizes.max_vips,
            });
        }
        (0..size.min(MAGLEV_SIZE_MAX))
            .map(|slot| {
                self.maglev
                    .get(&maglev_index(vip_id, copy, slot), 0)
                    .map_err(|e| map_error("reading", names::MAP_MAGLEV, e))
            })
            .collect()
    }

    /// Whether the maps were adopted from a previous lbd (pinned, and
    /// compatible): the connection table and the tables are live.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// The VIPs and backends the adopted maps hold (empty unless adopted),
    /// so ids and generations carry over and tracked flows keep their
    /// backends.
    pub(crate) fn adopted_state(&self) -> Result<AdoptedState> {
        let mut state = AdoptedState::default();
        if !self.adopted {
            return Ok(state);
        }
        for entry in self.vips.iter() {
            let (key, meta) = entry.map_err(|e| map_error("reading", names::MAP_VIPS, e))?;
            state.vips.push((key, meta));
        }
        for id in 1..MAX_BACKENDS {
            let backend = self
                .backends
                .get(&id, 0)
                .map_err(|e| map_error("reading", names::MAP_BACKENDS, e))?;
            if backend.generation != 0 {
                state.backends.push((id, backend));
            }
        }
        Ok(state)
    }

    /// The map sizes this object was loaded with.
    pub fn sizes(&self) -> MapSizes {
        self.sizes
    }

    /// Attaches the balancer to `interface`. `Auto` tries native (driver)
    /// mode and falls back to generic with a warning. With a pin directory,
    /// a link a previous lbd pinned for this interface is taken over: the
    /// new program replaces the old one atomically (no packet sees no
    /// program), in the mode the link was made with; otherwise a new link
    /// is made and pinned. `running_program` is the id of the program the
    /// interface runs now, to tell a live pinned link from a stale one.
    /// Returns the mode used (None: kept from the pinned link).
    pub fn attach(
        &mut self,
        interface: &str,
        mode: ConfigXdpMode,
        running_program: Option<u32>,
    ) -> Result<Option<ConfigXdpMode>> {
        let used = self.attach_xdp(interface, mode, running_program)?;
        self.finish_adoption();
        Ok(used)
    }

    fn attach_xdp(
        &mut self,
        interface: &str,
        mode: ConfigXdpMode,
        running_program: Option<u32>,
    ) -> Result<Option<ConfigXdpMode>> {
        if let Some(path) = self.pins.as_ref().map(|p| p.link_path(interface)) {
            if let Some(link) = self.take_over_link(&path, interface, running_program)? {
                self.attached = Some((interface.to_owned(), link));
                return Ok(None);
            }
        }
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
        let attachment = match self.pins.as_ref().map(|p| p.link_path(interface)) {
            Some(path) => self.pin_link(link, path)?,
            None => Attachment::Owned(link),
        };
        self.attached = Some((interface.to_owned(), attachment));
        Ok(Some(used))
    }

    /// Attaches the tc program to `interface`'s ingress, as `attach`
    /// does for XDP: a tc link a previous lbd pinned here is taken over
    /// (the program swapped atomically with a link update); otherwise a
    /// new tcx link is made and pinned. `running` are the ids of the
    /// programs on the interface's tcx ingress, to tell a live pinned link
    /// from a stale one. Without tcx (kernels before 6.6) it falls back to
    /// clsact + cls_bpf with a warning: that attachment cannot be pinned,
    /// so the program then goes with this lbd.
    pub fn attach_tc(&mut self, interface: &str, running: &[u32]) -> Result<Hooked> {
        let hooked = self.attach_tc_ingress(interface, running)?;
        self.finish_adoption();
        Ok(hooked)
    }

    fn attach_tc_ingress(&mut self, interface: &str, running: &[u32]) -> Result<Hooked> {
        if let Some(path) = self.pins.as_ref().map(|p| p.tc_link_path(interface)) {
            if let Some(link) = self.take_over_tc_link(&path, interface, running)? {
                self.attached = Some((interface.to_owned(), link));
                return Ok(Hooked::Tcx);
            }
        }
        let program = tc_program(&mut self.ebpf)?;
        let tcx = program.attach_with_options(
            interface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        );
        let id = match tcx {
            Ok(id) => id,
            Err(tcx_error) => {
                warn!(%interface, error = %tcx_error, "tcx attach failed (kernel before 6.6?); falling back to clsact + cls_bpf, which cannot be pinned: the program will go with lbd");
                if let Err(error) = aya::programs::tc::qdisc_add_clsact(interface) {
                    // Already there is fine; anything else shows in the attach.
                    info!(%interface, %error, "adding the clsact qdisc");
                }
                let id = program
                    .attach_with_options(
                        interface,
                        TcAttachType::Ingress,
                        TcAttachOptions::Netlink(aya::programs::tc::NlOptions::default()),
                    )
                    .map_err(|e| program_error("attaching", names::PROG_TC_LB, e))?;
                info!(%interface, "tc program attached (clsact + cls_bpf)");
                self.attached = Some((interface.to_owned(), Attachment::OwnedTc(id)));
                return Ok(Hooked::TcClsBpf);
            }
        };
        info!(%interface, "tc program attached (tcx ingress link)");
        let attachment = match self.pins.as_ref().map(|p| p.tc_link_path(interface)) {
            Some(path) => {
                let link = program
                    .take_link(id)
                    .map_err(|e| program_error("pinning the link of", names::PROG_TC_LB, e))?;
                let link = FdLink::try_from(link).map_err(|e| link_error("creating", e))?;
                link.pin(&path).map_err(|e| link_error("creating", e))?;
                let link = FdLink::from(
                    PinnedLink::from_pin(&path).map_err(|e| link_error("reopening", e))?,
                );
                Attachment::Pinned { link, path }
            }
            None => Attachment::OwnedTc(id),
        };
        self.attached = Some((interface.to_owned(), attachment));
        Ok(Hooked::Tcx)
    }

    /// Takes over the tc link pinned at `path` if it drives one of the
    /// programs on the interface's tcx ingress; removes it if it is stale.
    fn take_over_tc_link(
        &mut self,
        path: &std::path::Path,
        interface: &str,
        running: &[u32],
    ) -> Result<Option<Attachment>> {
        let Some(link) = live_pinned_link(path, interface, "tc", |id| running.contains(&id))?
        else {
            return Ok(None);
        };
        let program = tc_program(&mut self.ebpf)?;
        let link = SchedClassifierLink::try_from(link).map_err(|e| link_error("taking over", e))?;
        let id = program
            .attach_to_link(link)
            .map_err(|e| program_error("replacing on the pinned link", names::PROG_TC_LB, e))?;
        let link = program
            .take_link(id)
            .map_err(|e| program_error("keeping the link of", names::PROG_TC_LB, e))?;
        let link = FdLink::try_from(link).map_err(|e| link_error("keeping", e))?;
        Ok(Some(kept_on_pin(link, path, interface, "tc")))
    }

    /// Removes the pinned link of the hook other than `kept` on
    /// `interface`, if a previous lbd left one: switching `attach` across
    /// a restart. Called once the new hook is attached, so the two
    /// overlap for a moment (XDP runs before tc; both read the same maps)
    /// and no packet meets neither. Returns whether one was removed.
    pub fn remove_other_hook(&mut self, interface: &str, kept: Attach) -> Result<bool> {
        let Some(pins) = &self.pins else {
            return Ok(false);
        };
        let other = match kept {
            Attach::Xdp => pins.tc_link_path(interface),
            Attach::Tc => pins.link_path(interface),
        };
        if !other.exists() {
            return Ok(false);
        }
        remove_pin(&other)?;
        info!(%interface, pin = %other.display(), attach = %kept, "the other hook's pinned link removed: the program there is detached");
        Ok(true)
    }

    /// Takes over the link pinned at `path` if it drives the program the
    /// interface runs; removes it if it is stale.
    fn take_over_link(
        &mut self,
        path: &std::path::Path,
        interface: &str,
        running_program: Option<u32>,
    ) -> Result<Option<Attachment>> {
        let Some(link) =
            live_pinned_link(path, interface, "XDP", |id| Some(id) == running_program)?
        else {
            return Ok(None);
        };
        let program = xdp_program(&mut self.ebpf, names::PROG_LB)?;
        let id = program
            .attach_to_link(XdpLink::try_from(link).map_err(|e| link_error("taking over", e))?)
            .map_err(|e| program_error("replacing on the pinned link", names::PROG_LB, e))?;
        let link = program
            .take_link(id)
            .map_err(|e| program_error("keeping the link of", names::PROG_LB, e))?;
        let link = FdLink::try_from(link).map_err(|e| link_error("keeping", e))?;
        Ok(Some(kept_on_pin(link, path, interface, "XDP")))
    }

    /// Pins a fresh link so the program stays attached after lbd exits.
    /// Kernels without XDP links (before 5.9) attach through netlink,
    /// which cannot be pinned: the program then lives with this process.
    fn pin_link(&mut self, id: XdpLinkId, path: std::path::PathBuf) -> Result<Attachment> {
        let program = xdp_program(&mut self.ebpf, names::PROG_LB)?;
        let link = program
            .take_link(id)
            .map_err(|e| program_error("pinning the link of", names::PROG_LB, e))?;
        match FdLink::try_from(link) {
            Ok(link) => {
                link.pin(&path).map_err(|e| link_error("creating", e))?;
                let link = FdLink::from(
                    PinnedLink::from_pin(&path).map_err(|e| link_error("reopening", e))?,
                );
                Ok(Attachment::Pinned { link, path })
            }
            Err(error) => {
                warn!(%error, "this kernel attaches XDP through netlink, which cannot be pinned: the program will be detached when lbd exits");
                Err(link_error("creating", error))
            }
        }
    }

    /// Detaches the balancer, if attached, and removes every pin: packets
    /// take the normal stack path again and the maps are freed. The full
    /// stop (SIGINT, `lbd --cleanup`).
    pub fn detach(&mut self) -> Result<()> {
        match self.attached.take() {
            Some((interface, Attachment::Owned(link))) => {
                xdp_program(&mut self.ebpf, names::PROG_LB)?
                    .detach(link)
                    .map_err(|e| program_error("detaching", names::PROG_LB, e))?;
                info!(%interface, "XDP program detached");
            }
            Some((interface, Attachment::OwnedTc(link))) => {
                tc_program(&mut self.ebpf)?
                    .detach(link)
                    .map_err(|e| program_error("detaching", names::PROG_TC_LB, e))?;
                info!(%interface, "tc program detached");
            }
            Some((interface, Attachment::Pinned { link, path })) => {
                remove_pin(&path)?;
                drop(link);
                info!(%interface, pin = %path.display(), "program detached (pinned link removed)");
            }
            None => {}
        }
        if let Some(pins) = &self.pins {
            let removed = pins.remove_all()?;
            info!(pins = removed.len(), dir = %pins.root().display(), "pins removed");
        }
        Ok(())
    }

    /// Leaves the program attached and the maps pinned for the next lbd
    /// (SIGTERM: a restart or an upgrade). Without pins this is a detach.
    /// Says which of the two happened.
    pub fn release(&mut self) -> Result<Released> {
        match self.attached.take() {
            Some((interface, Attachment::Pinned { link, path })) => {
                drop(link);
                info!(%interface, pin = %path.display(), "program left running for the next lbd");
                Ok(Released::StillForwarding)
            }
            other => {
                self.attached = other;
                self.detach()?;
                Ok(Released::Detached)
            }
        }
    }

    /// Whether the data plane is pinned (it outlives lbd), as opposed to
    /// living and dying with this process (`pin_dir = "off"`).
    pub fn pinned(&self) -> bool {
        self.pins.is_some()
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

    /// The loaded tc program, for BPF_PROG_TEST_RUN in tests.
    pub fn tc_program(&mut self) -> Result<&mut SchedClassifier> {
        tc_program(&mut self.ebpf)
    }

    /// Node counters summed over CPUs, in `Counter::ALL` order (with
    /// those an older release left pinned, see `node_counters`).
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>> {
        self.counters.read()
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
    pub fn flows(&self) -> Box<dyn Iterator<Item = (FlowKey, FlowEntry)> + '_> {
        match &self.flows {
            FlowStore::Buckets(table) => Box::new(table.iter()),
            FlowStore::KernelMap(map) => Box::new(map.iter().filter_map(|r| r.ok())),
        }
    }

    /// Flows in the connection table now.
    pub fn flow_count(&self) -> u64 {
        match &self.flows {
            FlowStore::Buckets(table) => table.count(),
            FlowStore::KernelMap(map) => map.keys().filter(|k| k.is_ok()).count() as u64,
        }
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
        crate::bucket_map::kernel_memory_bytes(map).unwrap_or(0)
    }

    /// Bytes of kernel memory the NAT flow table takes, as the kernel
    /// accounts the map (all preallocated); 0 if the kernel does not say.
    pub fn nat_memory_bytes(&self) -> u64 {
        crate::bucket_map::kernel_memory_bytes(self.nat.table().map()).unwrap_or(0)
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

    /// Sets the MAC forwarded frames leave from, keeping the node flags
    /// the maps hold (adopted ones included).
    pub fn set_iface_mac(&mut self, mac: [u8; 6]) -> Result<()> {
        let mut config = self
            .config
            .get(&0, 0)
            .map_err(|e| map_error("reading", names::MAP_CONFIG, e))?;
        config.iface_mac = mac;
        self.set_config(&config)
    }

    /// Sets or clears SYN-flood mode (`CONFIG_F_SYN_FLOOD`: SYNs to the
    /// half-open table alone), keeping the other node flags.
    pub fn set_syn_flood(&mut self, flood: bool) -> Result<()> {
        self.set_config_flag(CONFIG_F_SYN_FLOOD, flood)
    }

    /// Sets or clears node flag `flag` (`CONFIG_F_*`) in the maps,
    /// keeping the others.
    fn set_config_flag(&mut self, flag: u8, on: bool) -> Result<()> {
        let mut config = self
            .config
            .get(&0, 0)
            .map_err(|e| map_error("reading", names::MAP_CONFIG, e))?;
        if on {
            config.flags |= flag;
        } else {
            config.flags &= !flag;
        }
        self.set_config(&config)
    }

    /// The NAT mode's maps (flows, sources, redirect targets).
    pub fn nat(&self) -> &NatMaps {
        &self.nat
    }

    /// The guards' maps (deny/allow lists, limits), to read.
    pub fn guard(&self) -> &GuardMaps {
        &self.guard
    }

    /// The guards' maps, to write.
    pub fn guard_mut(&mut self) -> &mut GuardMaps {
        &mut self.guard
    }

    /// The NAT mode's maps, for writing.
    pub fn nat_mut(&mut self) -> &mut NatMaps {
        &mut self.nat
    }

    /// Hands the event ring buffer to its reader (once).
    pub(crate) fn take_events(&mut self) -> Option<RingBuf<MapData>> {
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
        match &mut self.flows {
            FlowStore::Buckets(table) => table
                .install(key, entry)
                .map_err(|e| DataplaneError::FlowTable(Box::new(e))),
            FlowStore::KernelMap(map) => map
                .insert(key, entry, 0)
                .map_err(|e| map_error("writing", names::MAP_CONNTRACK, e)),
        }
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

    /// Whether the balancer is attached.
    pub(crate) fn is_attached(&self) -> bool {
        self.attached.is_some()
    }
}

impl Drop for Dataplane {
    /// A program attached through an owned link goes with its process; a
    /// pinned one stays (only `detach` removes it).
    fn drop(&mut self) {
        if let Some((_, Attachment::Owned(_) | Attachment::OwnedTc(_))) = &self.attached {
            if let Err(error) = self.detach() {
                warn!(%error, "detaching on drop failed");
            }
        }
    }
}

/// Flags the kernel sets on a map of `map_type` whatever it was created
/// with, so a pinned map reads back with them: device maps are read-only
/// to programs (`BPF_F_RDONLY_PROG`, as a lookup returns the device
/// itself). Compared as created, else every restart would find the pinned
/// TX ports "changed" and start them afresh.
fn flags_the_kernel_adds(map_type: u32) -> u32 {
    const BPF_F_RDONLY_PROG: u32 = 1 << 7;
    const BPF_MAP_TYPE_DEVMAP: u32 = 14;
    const BPF_MAP_TYPE_DEVMAP_HASH: u32 = 25;
    match map_type {
        BPF_MAP_TYPE_DEVMAP | BPF_MAP_TYPE_DEVMAP_HASH => BPF_F_RDONLY_PROG,
        _ => 0,
    }
}

/// Checks the pins a previous lbd left against what this object and these
/// sizes need. Incompatible pins are removed (logged): the map is created
/// afresh. The state maps go together: if any of them cannot be adopted,
/// none is. Returns whether the state maps are adopted.
/// `fresh`: tables being carried over from an older layout (the
/// connection table's maps, `legacy_table`; the NAT flow table,
/// `legacy_nat`), not required for adoption.
fn check_pins(
    pins: &PinDir,
    object: &[u8],
    resized: &[(&str, u32)],
    fresh: &[&str],
) -> Result<bool> {
    let parsed =
        aya_obj::Object::parse(object).map_err(|e| DataplaneError::Parse(e.to_string()))?;
    let mut mismatched = Vec::new();
    let mut present = Vec::new();
    for name in PINNED_MAPS {
        let path = pins.map_path(name);
        if !path.exists() {
            continue;
        }
        let Some(map) = parsed.maps.get(name) else {
            continue;
        };
        let max_entries = resized
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(map.max_entries(), |(_, e)| *e);
        let want = (
            map.map_type(),
            map.key_size(),
            map.value_size(),
            max_entries,
            map.map_flags(),
        );
        let have = MapInfo::from_pin(&path).ok().and_then(|info| {
            let map_type = info.map_type().ok()? as u32;
            Some((
                map_type,
                info.key_size(),
                info.value_size(),
                info.max_entries(),
                info.map_flags() & !flags_the_kernel_adds(map_type),
            ))
        });
        if have == Some(want) {
            present.push(name);
        } else {
            warn!(map = name, ?have, ?want, "pinned map does not fit this lbd (size, type or layout changed): starting it afresh");
            remove_pin(&path)?;
            mismatched.push(name);
        }
    }
    let adopt = STATE_MAPS
        .iter()
        .filter(|name| !fresh.contains(name))
        .all(|name| present.contains(name));
    if !adopt {
        for name in STATE_MAPS.into_iter().chain(DEPENDENT_MAPS) {
            if present.contains(&name) {
                warn!(
                    map = name,
                    "not adopting this map alone: the state maps go together"
                );
                remove_pin(&pins.map_path(name))?;
            }
        }
    } else {
        let half_open = if present.contains(&names::MAP_HALF_OPEN) {
            ", half-open flows"
        } else {
            ""
        };
        info!(dir = %pins.root().display(), "adopting the pinned data plane (VIPs, backends, tables, connection table{half_open})");
    }
    Ok(adopt)
}

/// The attachment of a program swapped in on a pinned link a previous lbd
/// left (`hook` names the hook in the log).
fn kept_on_pin(link: FdLink, path: &std::path::Path, interface: &str, hook: &str) -> Attachment {
    info!(%interface, "{hook} program replaced atomically on the pinned link; connection table kept");
    Attachment::Pinned {
        link,
        path: path.to_owned(),
    }
}

/// The link pinned at `path` if it drives a program `running` says the
/// interface runs; a stale pin (the link is gone or drives something else)
/// is removed. `hook` names the hook in the log.
fn live_pinned_link(
    path: &std::path::Path,
    interface: &str,
    hook: &str,
    running: impl Fn(u32) -> bool,
) -> Result<Option<FdLink>> {
    if !path.exists() {
        return Ok(None);
    }
    let live = PinnedLink::from_pin(path)
        .ok()
        .map(FdLink::from)
        .filter(|link| link.info().is_ok_and(|info| running(info.program_id())));
    if live.is_none() {
        warn!(%interface, %hook, path = %path.display(), "pinned link is stale (not what the interface runs); replacing it");
        remove_pin(path)?;
    }
    Ok(live)
}

fn remove_pin(path: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DataplaneError::Pin(PinError::Io {
            action: "removing",
            path: path.to_owned(),
            source,
        })),
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
            .map_err(|e| map_error("writing", names::MAP_VIPS, e))?;
        self.vip_index.set(key, meta)?;
        if self.vip_index.unplaced() > 0 {
            warn!(
                unplaced = self.vip_index.unplaced(),
                "the VIP index has no room for some VIPs: packets to no VIP are looked up in the VIP map too (slower, still correct)"
            );
        }
        Ok(())
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<()> {
        // Out of the index first: from then on lookups either miss or,
        // overlapping, ask `VIPS`, which still holds it.
        self.vip_index.remove(key)?;
        self.vips
            .remove(key)
            .map_err(|e| map_error("removing from", names::MAP_VIPS, e))
    }

    fn clear_vip_traffic(&mut self, vip_id: u32) -> Result<()> {
        clear_traffic(&mut self.vip_stats, vip_id, names::MAP_VIP_STATS)
    }

    fn clear_backend_traffic(&mut self, id: u32) -> Result<()> {
        clear_traffic(&mut self.backend_stats, id, names::MAP_BACKEND_STATS)
    }

    fn set_nat_source(&mut self, vip_id: u32, source: &NatSource) -> Result<()> {
        self.nat.set_source(vip_id, source)
    }

    fn set_tunnel_config(&mut self, config: &TunnelConfig) -> Result<()> {
        self.tunnel_config
            .as_mut()
            .ok_or(DataplaneError::MissingMap(names::MAP_TUNNEL_CONFIG))?
            .set(0, config, 0)
            .map_err(|e| map_error("writing", names::MAP_TUNNEL_CONFIG, e))
    }

    fn set_nat_enabled(&mut self, enabled: bool) -> Result<()> {
        self.set_config_flag(CONFIG_F_NAT, enabled)
    }
}

/// Ids of the programs on `interface`'s tcx ingress, first to last
/// (empty where the kernel has no tcx or the query fails: nothing there
/// can then be told apart).
pub(crate) fn tcx_ingress_programs(interface: &str) -> Vec<u32> {
    match SchedClassifier::query_tcx(interface, TcAttachType::Ingress) {
        Ok((_, programs)) => programs
            .iter()
            .map(aya::programs::ProgramInfo::id)
            .collect(),
        Err(error) => {
            tracing::debug!(%interface, %error, "querying tcx ingress programs");
            Vec::new()
        }
    }
}

/// A `DataplaneEvent` from a ring-buffer record, if it has the size.
pub(crate) fn parse_event(bytes: &[u8]) -> Option<DataplaneEvent> {
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

/// The tc balancer (`tc_lb`), loaded (verified) on first use.
fn tc_program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier> {
    let name = names::PROG_TC_LB;
    let program = ebpf.program_mut(name).ok_or(DataplaneError::Program {
        action: "finding",
        program: name,
        source: Box::new(aya::programs::ProgramError::NotLoaded),
    })?;
    let program: &mut SchedClassifier = program
        .try_into()
        .map_err(|e| program_error("finding", name, e))?;
    if program.fd().is_err() {
        retry_interrupted(name, || program.load())
            .map_err(|e| program_error("loading", name, e))?;
    }
    Ok(program)
}

/// Program loads the kernel may interrupt before one is given up (as
/// libbpf counts them).
const LOAD_ATTEMPTS: u32 = 5;

/// Runs `load` (of program `name`) again while the kernel says a signal
/// interrupted its verification (EAGAIN), as libbpf does: verifying the
/// balancer takes a second or more on a slow machine, long enough to meet
/// a signal (a child process's exit, where a SIGCHLD handler is set).
pub(crate) fn retry_interrupted(
    name: &str,
    mut load: impl FnMut() -> std::result::Result<(), aya::programs::ProgramError>,
) -> std::result::Result<(), aya::programs::ProgramError> {
    let mut attempt = 1;
    loop {
        match load() {
            Err(aya::programs::ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < LOAD_ATTEMPTS =>
            {
                warn!(
                    program = name,
                    attempt, "the kernel interrupted the program's verification (a signal arrived): loading it again"
                );
                attempt += 1;
            }
            other => return other,
        }
    }
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

fn link_error(action: &'static str, e: impl std::fmt::Display) -> DataplaneError {
    DataplaneError::Link {
        action,
        reason: e.to_string(),
    }
}

/// A map operation's failure, naming the action and the map.
pub(crate) fn map_error(
    action: &'static str,
    name: &'static str,
    e: aya::maps::MapError,
) -> DataplaneError {
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

fn clear_traffic(
    map: &mut PerCpuArray<MapData, TrafficCounters>,
    id: u32,
    name: &'static str,
) -> Result<()> {
    let zero = aya::util::nr_cpus()
        .map_err(|(_, e)| e)
        .and_then(|cpus| PerCpuValues::try_from(vec![TrafficCounters::default(); cpus]))
        .map_err(|e| map_error("zeroing", name, aya::maps::MapError::IoError(e)))?;
    map.set(id, zero, 0)
        .map_err(|e| map_error("zeroing", name, e))
}

/// In-memory `MapWriter` for tests of the control plane's logic.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FakeMaps {
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
    /// Traffic counted per VIP id (tests set it; clearing removes it).
    pub vip_traffic: StdHashMap<u32, TrafficCounters>,
    /// Traffic counted per backend id (as `vip_traffic`).
    pub backend_traffic: StdHashMap<u32, TrafficCounters>,
    /// NAT sources by VIP id.
    pub nat_sources: StdHashMap<u32, NatSource>,
    /// `TUNNEL_CONFIG[0]` (None: never written).
    pub tunnel: Option<TunnelConfig>,
}

#[cfg(test)]
impl FakeMaps {
    /// The live table of a VIP as packets would read it.
    pub(crate) fn live_table(&self, key: &VipKey) -> Option<Vec<u32>> {
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

#[cfg(test)]
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

    fn clear_vip_traffic(&mut self, vip_id: u32) -> Result<()> {
        self.vip_traffic.remove(&vip_id);
        Ok(())
    }

    fn clear_backend_traffic(&mut self, id: u32) -> Result<()> {
        self.backend_traffic.remove(&id);
        Ok(())
    }

    fn set_nat_source(&mut self, vip_id: u32, source: &NatSource) -> Result<()> {
        self.nat_sources.insert(vip_id, *source);
        self.log.push(format!("nat source {vip_id}"));
        Ok(())
    }

    fn set_tunnel_config(&mut self, config: &TunnelConfig) -> Result<()> {
        self.tunnel = Some(*config);
        self.log.push("tunnel config".to_owned());
        Ok(())
    }

    fn set_nat_enabled(&mut self, enabled: bool) -> Result<()> {
        if enabled {
            self.config.flags |= CONFIG_F_NAT;
        } else {
            self.config.flags &= !CONFIG_F_NAT;
        }
        Ok(())
    }
}

#[cfg(test)]
mod load_tests {
    use aya::programs::ProgramError;

    use super::{retry_interrupted, LOAD_ATTEMPTS};

    fn refused(errno: i32) -> ProgramError {
        ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(errno),
            verifier_log: aya_obj::VerifierLog::new(String::new()),
        }
    }

    #[test]
    fn an_interrupted_load_is_tried_again_and_other_refusals_are_not() {
        let mut calls = 0;
        let loaded = retry_interrupted("p", || {
            calls += 1;
            if calls < 3 {
                Err(refused(libc::EAGAIN))
            } else {
                Ok(())
            }
        });
        assert!(loaded.is_ok());
        assert_eq!(calls, 3);

        calls = 0;
        let given_up = retry_interrupted("p", || {
            calls += 1;
            Err(refused(libc::EAGAIN))
        });
        assert!(given_up.is_err());
        assert_eq!(calls, LOAD_ATTEMPTS);

        calls = 0;
        let rejected = retry_interrupted("p", || {
            calls += 1;
            Err(refused(libc::EACCES))
        });
        assert!(rejected.is_err());
        assert_eq!(calls, 1, "a verifier rejection is final");
    }
}
