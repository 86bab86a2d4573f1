//! The data plane (the XDP or the tc program) as the control plane sees it:
//! load the embedded object with maps sized from the config, attach it to an
//! interface at the configured hook, and write or read its maps. `MapWriter`
//! is the narrow seam `reconcile` writes through, so its logic is tested
//! without a kernel.
//!
//! One concern a file: the types and the small accessors here; loading
//! the object (`load`), and a program again when a signal interrupted
//! its verification (`load_retry`); the errors (`error`), the node
//! settings the program reads (`node_config`), the traffic counters
//! (`traffic`), the event ring buffer (`events`); adopting
//! what a previous lbd pinned (`adopt`), attaching at XDP or tc and
//! leaving the hook as documented on stop (`attach`), whether generic XDP
//! may serve the VIPs (`hook_choice`), whether the interface still runs
//! the program a previous lbd left forwarding (`left_hook`), the connection
//! table whichever design backs it (`flows`), the control plane's writes
//! (`map_writer`).

mod adopt;
mod attach;
mod error;
mod events;
mod flows;
mod hook_choice;
mod left_hook;
mod load;
mod load_retry;
mod maglev_map;
mod map_writer;
mod node_config;
mod traffic;

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

pub use error::DataplaneError;
use error::{hook_word, program_error, Result};
pub(crate) use error::{map_error, syscall_error};
pub(crate) use events::parse_event;
#[cfg(test)]
use load::UnstageOnError;
pub(crate) use load::{take_map, take_map_data};
pub(crate) use load_retry::retry_interrupted;
use traffic::{clear_traffic, TrafficStats};

use aya::{
    maps::{Array, HashMap, MapData, RingBuf},
    programs::{SchedClassifier, Xdp},
    Ebpf,
};
use lb_common::{stats::Counter, Backend, LbConfig, ServiceAddr, TunnelConfig, VipKey, VipMeta};

use self::{
    attach::{tc_program, xdp_program, Attachment},
    flows::FlowStore,
};
use crate::{
    config::{Attach, XdpMode as ConfigXdpMode},
    conntrack::{kind::ConntrackKind, legacy::LegacyTable, table::FlowTable},
    guard::GuardMaps,
    nat::legacy::LegacyNat,
    nat::maps::NatMaps,
    node_counters::NodeCounters,
    pinning::PinDir,
    vip_index::VipIndex,
};

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

impl Dataplane {
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
}
