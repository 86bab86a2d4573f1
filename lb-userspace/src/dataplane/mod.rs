//! The data plane (the XDP or the tc program) as the control plane sees it:
//! load the embedded object with maps sized from the config, attach it to an
//! interface at the configured hook, and write or read its maps. `MapWriter`
//! is the narrow seam `reconcile` writes through, so its logic is tested
//! without a kernel.
//!
//! One concern a file: loading and the small accessors here; adopting
//! what a previous lbd pinned (`adopt`), attaching at XDP or tc and
//! leaving the hook as documented on stop (`attach`), whether generic XDP
//! may serve the VIPs (`hook_choice`), whether the interface still runs
//! the program a previous lbd left forwarding (`left_hook`), the connection
//! table whichever design backs it (`flows`), the control plane's writes
//! (`map_writer`).

mod adopt;
mod attach;
mod flows;
mod hook_choice;
mod left_hook;
mod maglev_map;
mod map_writer;

#[cfg(test)]
mod pin_tests;

pub use adopt::CarriedFlows;
pub(crate) use adopt::{recover_staged, recovered_vip_capacity};
pub(crate) use attach::{tcx_ingress_programs, HookSeen, IngressFilter};
pub use hook_choice::{choose_hook, newly_translating, translates, HookChoice, Translating};
#[cfg(test)]
pub(crate) use left_hook::LeftAt;
pub(crate) use left_hook::{left_hook, LeftHook};
use maglev_map::MaglevMap;
#[cfg(test)]
pub(crate) use map_writer::FakeMaps;
pub use map_writer::MapWriter;

use aya::{
    maps::{Array, HashMap, Map, MapData, PerCpuArray, PerCpuValues, RingBuf},
    programs::{SchedClassifier, Xdp},
    Ebpf, EbpfLoader,
};
use lb_common::{
    consts::{names, CONFIG_F_SYN_FLOOD, MAGLEV_SIZE_MAX, MAGLEV_TABLES_PER_VIP},
    flow_table,
    stats::Counter,
    vip_index::vip_index_buckets_for,
    Backend, DataplaneEvent, LbConfig, ServiceAddr, TrafficCounters, TunnelConfig, VipKey, VipMeta,
};
use std::{
    collections::BTreeMap,
    sync::{Mutex, PoisonError},
};

use tracing::{info, warn};

use self::{
    adopt::{check_pins, place_pins},
    attach::{tc_program, xdp_program, Attachment},
    flows::{take_half_open, FlowStore},
};
use crate::{
    config::{Attach, XdpMode as ConfigXdpMode},
    conntrack::{self, kind::ConntrackKind, legacy::LegacyTable, table::FlowTable},
    ebpf_object::EBPF_OBJECT,
    guard::GuardMaps,
    nat::legacy::LegacyNat,
    nat::maps::NatMaps,
    node_counters::NodeCounters,
    pinning::{PinDir, PinError},
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
    /// A map lbd maps into its memory is not an array map in the object.
    #[error("map {0} of the XDP object is not an array map")]
    NotAnArray(&'static str),
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
    /// The XDP or tc link could not be pinned or taken over. The reason
    /// carries the error's sources (the errno of a failed system call),
    /// which aya's errors leave out of their own message.
    #[error("{action} the pinned {} link {}: {reason}", hook_word(*.hook), .path.display())]
    Link {
        /// What was attempted.
        action: &'static str,
        /// The hook the link is at.
        hook: Attach,
        /// Where the link is (to be) pinned.
        path: std::path::PathBuf,
        /// Why it failed, with the causes.
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
    Patch(#[from] conntrack::kind::PatchError),
    /// The bucket connection table could not be mapped or written.
    #[error(transparent)]
    FlowTable(Box<crate::conntrack::table::FlowTableError>),
    /// A connection or NAT flow table of another size cannot be set
    /// aside to carry its flows over: tables of two earlier sizes wait
    /// there already (`conntrack::legacy::Refused`, which says what to
    /// do). That table's pins were left as they were.
    #[error(transparent)]
    CarryRefused(#[from] crate::conntrack::legacy::Refused),
    /// The VIP index could not be mapped or written.
    #[error(transparent)]
    VipIndex(#[from] crate::vip_index::VipIndexError),
    /// Generic XDP asked for (`xdp_mode = "generic"`) with NAT or
    /// tunnelled VIPs, which it cannot translate (see `hook_choice`):
    /// nothing attached.
    #[error("{0}")]
    GenericXdpRefused(String),
    /// The loaded programs could not be listed (`BPF_PROG_GET_NEXT_ID`
    /// needs CAP_SYS_ADMIN), so which of them uses a map cannot be told:
    /// nothing is decided on a guess.
    #[error("listing the loaded programs to tell {purpose} failed (lbd needs CAP_SYS_ADMIN for it): {reason}")]
    ProgramsUnlisted {
        /// What the listing was to tell.
        purpose: &'static str,
        /// Why it failed, with the errno.
        reason: String,
    },
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

/// The hook as messages name it: "XDP" or "tc".
fn hook_word(hook: Attach) -> &'static str {
    match hook {
        Attach::Xdp => "XDP",
        Attach::Tc => "tc",
    }
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

/// The connection table's idle horizons (`tcp_idle_timeout_s`,
/// `udp_idle_timeout_s`; see [`Dataplane::set_idle_horizons`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleHorizons {
    /// TCP's.
    pub tcp: std::time::Duration,
    /// UDP's.
    pub udp: std::time::Duration,
}

/// How to load the object beyond its map sizes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The map design of the connection table.
    pub conntrack_kind: ConntrackKind,
    /// Pin maps and the XDP link here, adopting what a previous lbd left
    /// (None: the data plane lives and dies with this process).
    pub pins: Option<PinDir>,
    /// The hook lbd attaches at (`attach`): its program is verified with
    /// the load, so a kernel that refuses it fails the start before
    /// anything on the node changed. The other hook's program is loaded
    /// when first used (a fallback from XDP to tc), so a start waits for
    /// one verification only (a second or more each on a slow VM, inside
    /// VRRP's master-down interval on a restart).
    pub hook: Attach,
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

/// What a stop left on the interface, for the log to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The program is still attached through its pinned link, forwarding
    /// with the pinned maps, for the next lbd.
    StillForwarding,
    /// The program is detached (a full stop, or nothing was pinned).
    Detached,
    /// No program is left attached (the kernel dropped the hook, or a
    /// cls_bpf filter could not be kept and goes with lbd); the maps stay
    /// pinned for the next lbd, which attaches anew.
    NothingAttached,
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
    maglev: MaglevMap,
    backends: Array<MapData, Backend>,
    /// VIP and NAT addresses, for the fragment path (`SERVICE_ADDRS`;
    /// not pinned: filled by the first apply, before the program runs).
    service_addrs: HashMap<MapData, ServiceAddr, u32>,
    /// The connection table, whichever design backs it.
    flows: FlowStore,
    /// Half-open TCP flows (`HALF_OPEN`), apart from the connection table.
    half_open: FlowTable,
    config: Array<MapData, LbConfig>,
    /// `IDLE_HORIZONS` (`set_idle_horizons`).
    idle_horizons: Array<MapData, u64>,
    counters: NodeCounters,
    vip_stats: TrafficStats,
    backend_stats: TrafficStats,
    events: Option<RingBuf<MapData>>,
    nat: NatMaps,
    /// Deny/allow lists and limits of new flows (see `guard`).
    guard: GuardMaps,
    /// `TUNNEL_CONFIG` (None: an object without the tunnelled modes).
    tunnel_config: Option<Array<MapData, TunnelConfig>>,
    /// The previous lbds' copies of `TUNNEL_CONFIG`, oldest first, which
    /// their programs read while they serve the adopted maps (see
    /// `adopt::previous_tunnel_configs`). None: not looked for yet; empty
    /// once the adoption is finished.
    previous_tunnel_configs: Option<Vec<Array<MapData, TunnelConfig>>>,
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
    /// The maps made in place of a previous lbd's whose state is not
    /// adopted, staged until this lbd's program runs (`adopt::place_pins`).
    staged: Vec<&'static str>,
    /// The staged maps took their names (`promote_staged`).
    promoted: bool,
    /// lbd's pins as this load found them: undoing a failed first start
    /// (`detach_made_here`) removes only what it made.
    found_pins: crate::pinning::PinSnapshot,
}

/// Removes the maps a load staged (`adopt::place_pins`) when it fails
/// before the `Dataplane` that owns them is made (the verifier refused a
/// program, a map would not open): the previous lbd's pins stay as they
/// were, and the staged maps' memory is freed. The maps it pinned under
/// names nothing was pinned under go until the load returns (`made`):
/// else a failed first start leaves every map pinned, and the next start
/// adopts them and takes the node for one with a data plane.
struct UnstageOnError<'a> {
    /// The pins, while the staged maps are to go on a failure.
    staged: Option<&'a PinDir>,
    /// The pins and the maps pinned anew, while they are to go.
    made: Option<(&'a PinDir, Vec<&'static str>)>,
}

impl Drop for UnstageOnError<'_> {
    fn drop(&mut self) {
        if let Some((pins, made)) = self.made.take() {
            for name in made {
                let path = pins.map_path(name);
                if let Err(error) = attach::remove_pin(&path) {
                    warn!(%error, "the load failed, and removing a map it pinned failed too: the next start adopts it, or `lbd --cleanup` removes it");
                }
            }
        }
        let Some(pins) = self.staged else {
            return;
        };
        match pins.discard_staged() {
            Ok(0) => {}
            Ok(removed) => {
                info!(maps = removed, "the load failed: the maps it staged are removed, the previous lbd's pins stay as they were");
            }
            Err(error) => {
                warn!(%error, "the load failed, and removing the maps it staged failed too: the next start removes them");
            }
        }
    }
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

/// Takes array map `name` out of the loaded object as it is (for a map
/// lbd maps into its memory: the VIP index, the flow tables).
pub(crate) fn take_map_data(ebpf: &mut Ebpf, name: &'static str) -> Result<MapData> {
    match ebpf.take_map(name) {
        Some(Map::Array(data)) => Ok(data),
        Some(_) => Err(DataplaneError::NotAnArray(name)),
        None => Err(DataplaneError::MissingMap(name)),
    }
}

impl Dataplane {
    /// Loads the embedded object and its programs (not attached yet).
    pub fn load(sizes: MapSizes) -> Result<Self> {
        Self::load_with(sizes, &LoadOptions::default())
    }

    /// Loads the embedded object with non-default options. The
    /// connection table judges flows by the default idle horizons (15
    /// minutes) until `set_idle_horizons`: the flows carried over from a
    /// previous lbd's table at the load too (see `load_with_horizons`).
    pub fn load_with(sizes: MapSizes, options: &LoadOptions) -> Result<Self> {
        Self::load_inner(sizes, options, None)
    }

    /// `load_with`, with the idle horizons written (`set_idle_horizons`)
    /// before the flows of a previous lbd's table are carried over:
    /// `IDLE_HORIZONS` is not pinned, so until this lbd writes its own a
    /// smaller table would judge them by the defaults, and a UDP flow
    /// expired under `udp_idle_timeout_s` would keep a way over an older
    /// live TCP flow. lbd's start loads so.
    pub fn load_with_horizons(
        sizes: MapSizes,
        options: &LoadOptions,
        horizons: IdleHorizons,
    ) -> Result<Self> {
        Self::load_inner(sizes, options, Some(horizons))
    }

    fn load_inner(
        sizes: MapSizes,
        options: &LoadOptions,
        horizons: Option<IdleHorizons>,
    ) -> Result<Self> {
        let kind = options.conntrack_kind;
        let object = conntrack::kind::patch(EBPF_OBJECT, names::MAP_CONNTRACK, kind)?;
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
            (names::MAP_NAT_SOURCES, sizes.max_vips),
            (names::MAP_MAGLEV, maglev_entries),
            (names::MAP_CONNTRACK, kernel_map),
            (names::MAP_FLOW_BUCKETS, buckets),
            (names::MAP_HALF_OPEN, half_open_buckets),
            (names::MAP_NAT_BUCKETS, nat_buckets),
            // A VIP address and a NAT address per VIP.
            (names::MAP_SERVICE_ADDRS, 2 * sizes.max_vips),
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
        let mut staged = Vec::new();
        let mut found_pins = crate::pinning::PinSnapshot::default();
        let mut unstage = UnstageOnError {
            staged: None,
            made: None,
        };
        if let Some(pins) = &options.pins {
            pins.prepare()?;
            // What a previous start staged and did not pin under their
            // names, finished or undone before the pins are read.
            recover_staged(pins)?;
            found_pins = pins.snapshot()?;
            unstage.staged = Some(pins);
            // Tables whose flows a previous layout's table carries over
            // are not needed for adoption; nothing is moved before the
            // plan says what is adopted.
            let mut carried = Vec::new();
            if LegacyTable::pending(pins, kind, buckets) {
                carried.extend([names::MAP_CONNTRACK, names::MAP_FLOW_BUCKETS]);
            }
            if LegacyNat::pending(pins, nat_buckets) {
                carried.push(names::MAP_NAT_BUCKETS);
            }
            let plan = check_pins(pins, &object, &resized, &carried)?;
            adopted = plan.adopt;
            // Flows are carried over only into the state they name their
            // backends in: without it the old tables stay as they are
            // until this lbd's program runs (`promote_staged`).
            if adopted {
                legacy = LegacyTable::open(pins, kind, buckets)?;
                legacy_nat = LegacyNat::open(pins, nat_buckets)?;
            }
            // Tables being carried over from an older layout start afresh.
            let mut fresh = Vec::new();
            if legacy.is_some() {
                fresh.extend([names::MAP_CONNTRACK, names::MAP_FLOW_BUCKETS]);
            }
            if legacy_nat.is_some() {
                fresh.push(names::MAP_NAT_BUCKETS);
            }
            let placed = place_pins(&mut loader, pins, &plan, &fresh)?;
            staged = placed.staged;
            unstage.made = Some((pins, placed.made));
        }
        let mut ebpf = loader
            .load(&object)
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;
        // The hook's program, verified now (see `LoadOptions::hook`); the
        // other is loaded when first used (`xdp_program`, `tc_program`).
        // `tc_hc_encap` is loaded by the engine when a check first goes
        // through a tunnel: a node without such checks never depends on it.
        match options.hook {
            Attach::Xdp => xdp_program(&mut ebpf, names::PROG_LB).map(drop)?,
            Attach::Tc => tc_program(&mut ebpf).map(drop)?,
        }
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
            maglev: MaglevMap::new(take_map(&mut ebpf, names::MAP_MAGLEV)?)?,
            backends: take_map(&mut ebpf, names::MAP_BACKENDS)?,
            service_addrs: take_map(&mut ebpf, names::MAP_SERVICE_ADDRS)?,
            flows: FlowStore::take(&mut ebpf, kind, buckets)?,
            half_open: take_half_open(&mut ebpf, half_open_buckets)?,
            config: take_map(&mut ebpf, names::MAP_CONFIG)?,
            idle_horizons: take_map(&mut ebpf, names::MAP_IDLE_HORIZONS)?,
            counters: NodeCounters::take(&mut ebpf, options.pins.as_ref())?,
            vip_stats: TrafficStats::new(take_map(&mut ebpf, names::MAP_VIP_STATS)?),
            backend_stats: TrafficStats::new(take_map(&mut ebpf, names::MAP_BACKEND_STATS)?),
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
            previous_tunnel_configs: None,
            ebpf,
            sizes,
            attached: None,
            pins: options.pins.clone(),
            adopted,
            legacy,
            legacy_nat,
            re_place_pending: false,
            staged,
            promoted: false,
            found_pins,
        };
        // From here the data plane's drop removes what is staged.
        unstage.staged = None;
        if let Some(horizons) = horizons {
            dataplane.set_idle_horizons(horizons.tcp, horizons.udp)?;
        }
        dataplane.carry_legacy_flows(adopt::CarryPhase::Loaded);
        dataplane.carry_legacy_nat(adopt::CarryPhase::Loaded);
        if adopted {
            dataplane.reclaim_abandoned_ways();
            dataplane.re_place_flows(false);
            dataplane.re_place_pending = true;
        }
        // Loaded: the maps pinned anew are the data plane's now.
        unstage.made = None;
        Ok(dataplane)
    }

    /// The map sizes this object was loaded with.
    pub fn sizes(&self) -> MapSizes {
        self.sizes
    }

    /// The object, for tools that need its other programs and maps
    /// (benchmarks).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The object's XDP program `name`, loaded (verified) here if it was
    /// not yet, for BPF_PROG_TEST_RUN in tests and benchmarks.
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

    /// Traffic of one VIP id, summed over CPUs, as the maps hold it (its
    /// new flows may step back by one for a moment: see
    /// [`Self::shown_vip_traffic`]).
    pub fn vip_traffic(&self, vip_id: u32) -> Result<TrafficCounters> {
        sum_traffic(&self.vip_stats, vip_id, names::MAP_VIP_STATS)
    }

    /// Traffic of one backend id, summed over CPUs, as the maps hold it
    /// (as `vip_traffic`).
    pub fn backend_traffic(&self, backend_id: u32) -> Result<TrafficCounters> {
        sum_traffic(&self.backend_stats, backend_id, names::MAP_BACKEND_STATS)
    }

    /// `vip_traffic` as lbd shows it (status, metrics): its new flows
    /// never fewer than shown before of the same counter (see
    /// [`NewFlowsShown`]).
    pub fn shown_vip_traffic(&self, vip_id: u32) -> Result<TrafficCounters> {
        let read = self.vip_traffic(vip_id)?;
        Ok(self.vip_stats.shown.show(vip_id, read))
    }

    /// `backend_traffic` as lbd shows it (as `shown_vip_traffic`).
    pub fn shown_backend_traffic(&self, backend_id: u32) -> Result<TrafficCounters> {
        let read = self.backend_traffic(backend_id)?;
        Ok(self.backend_stats.shown.show(backend_id, read))
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

    /// Sets the connection table's idle horizons (`tcp_idle_timeout_s`,
    /// `udp_idle_timeout_s`): a TCP flow idle past `tcp` is over for a SYN
    /// on its tuple and for eviction, a UDP flow idle past `udp` is over
    /// for its next packet (which takes Maglev's pick of now) and for
    /// eviction. Takes effect at the next packet; until lbd writes them
    /// the data plane keeps 15 minutes for both. At least 2 s each
    /// (`flow_table::MIN_IDLE_HORIZON_NS`).
    pub fn set_idle_horizons(
        &mut self,
        tcp: std::time::Duration,
        udp: std::time::Duration,
    ) -> Result<()> {
        let ticks = |d: std::time::Duration| {
            flow_table::horizon_ticks(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        };
        let word = flow_table::idle_horizons_word(ticks(tcp), ticks(udp));
        self.idle_horizons
            .set(0, word, 0)
            .map_err(|e| map_error("writing", names::MAP_IDLE_HORIZONS, e))?;
        // lbd's own inserts (replicas, carried-over and re-placed flows)
        // judge full buckets as the data plane now does.
        if let FlowStore::Buckets(table) = &self.flows {
            table.set_idle_horizons(flow_table::idle_horizons_of(word));
        }
        Ok(())
    }

    /// Sets or clears SYN-flood mode (`CONFIG_F_SYN_FLOOD`: SYNs to the
    /// half-open table alone), keeping the other node flags.
    pub fn set_syn_flood(&mut self, flood: bool) -> Result<()> {
        self.set_config_flag(CONFIG_F_SYN_FLOOD, flood)
    }

    /// Sets or clears node flag `flag` (`CONFIG_F_*`) in the maps,
    /// keeping the others.
    pub(super) fn set_config_flag(&mut self, flag: u8, on: bool) -> Result<()> {
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

/// `map_error` for a bpf syscall lbd makes itself (`call`, e.g. a batch
/// command aya has no method for).
pub(crate) fn syscall_error(
    action: &'static str,
    name: &'static str,
    call: &'static str,
    io_error: std::io::Error,
) -> DataplaneError {
    map_error(
        action,
        name,
        aya::sys::SyscallError { call, io_error }.into(),
    )
}

/// A per-CPU traffic array (`VIP_STATS` or `BACKEND_STATS`, indexed by
/// VIP or backend id) with what lbd has shown of its slots' new flows.
struct TrafficStats {
    map: PerCpuArray<MapData, TrafficCounters>,
    shown: NewFlowsShown,
}

impl TrafficStats {
    fn new(map: PerCpuArray<MapData, TrafficCounters>) -> Self {
        Self {
            map,
            shown: NewFlowsShown::default(),
        }
    }
}

/// The most new flows lbd has shown (status, metrics) of each slot of a
/// traffic array since the slot was last zeroed, so what it shows of a
/// counter never steps back. The data plane counts a packet's flow new
/// and takes it back (`uncount_new_flow`) when another CPU turned out to
/// have inserted the flow first: a read between the two sees one more
/// flow than the next one, which Prometheus takes for a counter reset
/// (a `rate` spike of the whole count).
///
/// A slot is a new counter, starting from its own value, only when lbd
/// zeroes it, which it does when it gives the slot to a new VIP or
/// backend (`MapWriter::clear_vip_traffic`, `clear_backend_traffic`: a
/// VIP removed and added again, a backend id reused with a new
/// generation): `clear_traffic` forgets the slot then, so no real reset
/// is masked. A fresh data plane (a new `Dataplane`) remembers nothing.
/// At most one entry per slot (the array's size), replaced when the slot
/// is reused: nothing piles up as VIPs and backends come and go.
#[derive(Debug, Default)]
pub(crate) struct NewFlowsShown(Mutex<BTreeMap<u32, u64>>);

impl NewFlowsShown {
    /// Slot `id`'s counters `read` (summed now) as shown: new flows never
    /// fewer than shown of it before; packets and bytes as read.
    pub(crate) fn show(&self, id: u32, mut read: TrafficCounters) -> TrafficCounters {
        let mut shown = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let most = shown.entry(id).or_insert(0);
        *most = (*most).max(read.new_flows);
        read.new_flows = *most;
        read
    }

    /// Slot `id` was zeroed for a new VIP or backend: a new counter.
    pub(crate) fn forget(&mut self, id: u32) {
        self.0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

fn sum_traffic(stats: &TrafficStats, id: u32, name: &'static str) -> Result<TrafficCounters> {
    let values = stats
        .map
        .get(&id, 0)
        .map_err(|e| map_error("reading", name, e))?;
    Ok(values
        .iter()
        .fold(TrafficCounters::default(), |acc, c| acc.plus(*c)))
}

/// Zeroes slot `id` of `stats` for a new VIP or backend. Its new flows
/// shown so far are forgotten whether or not the write took: forgetting
/// never hides a reset, it only lets the next read show what it reads.
fn clear_traffic(stats: &mut TrafficStats, id: u32, name: &'static str) -> Result<()> {
    stats.shown.forget(id);
    let zero = aya::util::nr_cpus()
        .map_err(|(_, e)| e)
        .and_then(|cpus| PerCpuValues::try_from(vec![TrafficCounters::default(); cpus]))
        .map_err(|e| map_error("zeroing", name, aya::maps::MapError::IoError(e)))?;
    stats
        .map
        .set(id, zero, 0)
        .map_err(|e| map_error("zeroing", name, e))
}

#[cfg(test)]
mod traffic_tests {
    use lb_common::TrafficCounters;

    use super::NewFlowsShown;

    fn counted(packets: u64, new_flows: u64) -> TrafficCounters {
        TrafficCounters {
            packets,
            bytes: packets * 100,
            new_flows,
        }
    }

    /// A read between a CPU's count of a new flow and its take-back sees
    /// one flow more than the next: what lbd shows does not step back
    /// (a counter reset to Prometheus). A slot zeroed for a new backend
    /// (`clear_traffic`) is a new counter: shown from its own value.
    #[test]
    fn new_flows_shown_never_step_back_until_the_slot_is_zeroed() {
        let mut shown = NewFlowsShown::default();
        assert_eq!(shown.show(3, counted(10, 5)), counted(10, 5));
        // The take-back: 4 read, 5 shown; packets and bytes as read.
        assert_eq!(shown.show(3, counted(11, 4)), counted(11, 5));
        assert_eq!(shown.show(3, counted(12, 5)), counted(12, 5));
        assert_eq!(shown.show(3, counted(13, 6)), counted(13, 6));
        // Another slot is a counter of its own.
        assert_eq!(shown.show(4, counted(1, 1)), counted(1, 1));
        // Slot 3 given to a new backend (or VIP): zeroed, forgotten.
        shown.forget(3);
        assert_eq!(shown.show(3, counted(0, 0)), counted(0, 0));
        assert_eq!(shown.show(3, counted(2, 1)), counted(2, 1));
        assert_eq!(shown.show(4, counted(2, 0)), counted(2, 1));
        // Nothing is kept of a slot beyond its one entry.
        assert_eq!(shown.0.lock().map(|m| m.len()).unwrap_or(0), 2);
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
