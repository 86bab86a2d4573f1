//! Loading the embedded object: maps sized from the config, pinned maps
//! adopted or staged (and unstaged again if the load fails), the hook's
//! program verified, and the maps taken out of the object, typed.

use aya::{
    maps::{HashMap, Map, MapData},
    Ebpf, EbpfLoader,
};
use lb_common::{
    consts::{names, MAGLEV_SIZE_MAX, MAGLEV_TABLES_PER_VIP},
    flow_table,
    vip_index::vip_index_buckets_for,
    VipKey, VipMeta,
};
use tracing::{info, warn};

use super::{
    adopt::{self, check_pins, place_pins},
    attach::{self, tc_program, xdp_program},
    flows::{take_half_open, FlowStore},
    map_error, recover_staged, Dataplane, DataplaneError, IdleHorizons, LoadOptions, MaglevMap,
    MapSizes, Result, TrafficStats,
};
use crate::{
    config::Attach,
    conntrack::{self, legacy::LegacyTable},
    ebpf_object::EBPF_OBJECT,
    guard::GuardMaps,
    nat::legacy::LegacyNat,
    nat::maps::NatMaps,
    node_counters::NodeCounters,
    pinning::PinDir,
    vip_index::VipIndex,
};

/// Removes the maps a load staged (`adopt::place_pins`) when it fails
/// before the `Dataplane` that owns them is made (the verifier refused a
/// program, a map would not open): the previous lbd's pins stay as they
/// were, and the staged maps' memory is freed. The maps it pinned under
/// names nothing was pinned under go until the load returns (`made`):
/// else a failed first start leaves every map pinned, and the next start
/// adopts them and takes the node for one with a data plane.
pub(super) struct UnstageOnError<'a> {
    /// The pins, while the staged maps are to go on a failure.
    pub(super) staged: Option<&'a PinDir>,
    /// The pins and the maps pinned anew, while they are to go.
    pub(super) made: Option<(&'a PinDir, Vec<&'static str>)>,
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
}
