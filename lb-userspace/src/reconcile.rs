//! Desired state (the config, plus MACs found on the network) against what
//! the data plane holds: allocates VIP and backend ids, builds Maglev
//! tables, and writes only what changed, in an order that never shows a
//! packet a half-written table or a backend that is not there yet.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use lb_common::{
    consts::{BACKEND_F_ALIVE, MAX_BACKENDS},
    Backend, Mode, NatSource, TunnelConfig, VipMeta,
};
use tracing::{debug, info};

pub use crate::vip_id::{addr_words, address_bytes, words_addr, VipId};
use crate::{
    config::{MaglevMode, Protocol, VipConfig, VipNat},
    dataplane::{AdoptedState, DataplaneError, MapWriter},
    maglev::{self, MaglevBackend, MaglevError},
    map_log::MapLog,
    plan::{PlanChange, VipPlan},
    tunnel::NodeTunnel,
};

/// Why a change could not be applied. Nothing is half-applied: a failed
/// VIP keeps serving its previous table.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The maps refused a write.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    /// The Maglev table could not be built.
    #[error("VIP {vip}: {source}")]
    Maglev {
        /// The VIP.
        vip: String,
        /// Why.
        #[source]
        source: MaglevError,
    },
    /// More VIPs than the maps were sized for.
    #[error("too many VIPs: the data plane holds {0}")]
    TooManyVips(u32),
    /// More backends than the maps hold.
    #[error("too many backends: the data plane holds {0}")]
    TooManyBackends(u32),
    /// A tunnelled VIP has a backend whose outer family has no source
    /// address (neither configured nor on the interface).
    #[error("VIP {vip}: backend {backend} needs an outer source of its family: set [tunnel] {key} or give the balancer's interface an address of that family")]
    NoTunnelSource {
        /// The VIP.
        vip: String,
        /// The backend.
        backend: IpAddr,
        /// The `[tunnel]` key that would give one.
        key: &'static str,
    },
}

/// A VIP as the data plane should serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredVip {
    /// Which VIP.
    pub id: VipId,
    /// Maglev table size.
    pub table_size: u32,
    /// How its packets reach the backends.
    pub mode: Mode,
    /// NAT mode: where translated flows come from.
    pub nat: Option<VipNat>,
    /// Its backends.
    pub backends: Vec<DesiredBackend>,
}

/// A backend as the data plane should treat it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBackend {
    /// Address (its identity in Maglev).
    pub address: IpAddr,
    /// Where to send its frames (None: unknown yet, so a DSR backend
    /// takes nothing; routed modes need none).
    pub mac: Option<[u8; 6]>,
    /// NAT mode: the port it listens on (None: the VIP's).
    pub port: Option<u16>,
    /// Share of new flows (0: none, e.g. draining).
    pub weight: u32,
    /// Whether it can take packets at all; a flow pinned to a backend that
    /// is not alive (down, in maintenance) is hashed again.
    pub alive: bool,
}

impl DesiredVip {
    /// The desired state straight from a VIP's config: every backend alive,
    /// MACs from the config or else from `mac_of`.
    pub fn from_config(vip: &VipConfig, mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>) -> Self {
        Self {
            id: VipId::of(vip),
            table_size: vip.table_size,
            mode: vip.forwarding,
            nat: vip.nat,
            backends: vip
                .backends
                .iter()
                .map(|b| DesiredBackend {
                    address: b.address,
                    mac: b
                        .mac
                        .map(crate::mac::Mac::octets)
                        .or_else(|| mac_of(b.address)),
                    port: b.port,
                    weight: b.weight,
                    alive: true,
                })
                .collect(),
        }
    }
}

impl DesiredBackend {
    /// Whether the data plane may send it packets in `mode`: DSR at L2
    /// needs its MAC, routed modes take the next hop from the FIB.
    fn can_take_packets(&self, mode: Mode) -> bool {
        self.alive && (self.mac.is_some() || mode != Mode::DsrL2)
    }
}

/// A backend as applied: its data-plane id and what was written for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedBackend {
    /// Data-plane id.
    pub id: u32,
    /// Generation written with the id.
    pub generation: u32,
    /// MAC written (None: not known yet, so not alive).
    pub mac: Option<[u8; 6]>,
    /// Port written (None: the VIP's).
    pub port: Option<u16>,
    /// Weight in the table.
    pub weight: u32,
    /// Alive flag written.
    pub alive: bool,
}

/// A VIP as applied.
#[derive(Debug, Clone)]
pub struct AppliedVip {
    /// Index in the table and stats arrays.
    pub id: u32,
    /// Maglev table size.
    pub table_size: u32,
    /// Copy that packets read.
    pub active: u32,
    /// Forwarding mode written.
    pub mode: Mode,
    /// NAT source written (NAT mode).
    pub nat: Option<VipNat>,
    /// What both table copies hold (None: unknown, e.g. after a failed
    /// write; the next change then rewrites every slot).
    table: Option<Vec<u32>>,
    /// Backends by address.
    pub backends: BTreeMap<IpAddr, AppliedBackend>,
    /// The desired state last applied in full: an unchanged VIP is skipped
    /// (no table rebuilt), so a change costs only the VIPs it touches.
    applied: Option<DesiredVip>,
    /// What packets read, when known but `table` is not (adopted from a
    /// previous lbd): the basis of a minimal update.
    basis: Option<Vec<u32>>,
}

impl AppliedVip {
    /// The live table (what packets read).
    pub fn live_table(&self) -> Option<&[u32]> {
        self.table.as_deref()
    }

    /// Each backend's share of new flows in the live table, by address.
    pub(crate) fn shares_by_address(&self) -> BTreeMap<IpAddr, f64> {
        let shares = self.live_table().map(maglev::shares).unwrap_or_default();
        self.backends
            .iter()
            .map(|(address, b)| (*address, shares.get(&b.id).copied().unwrap_or(0.0)))
            .collect()
    }
}

/// A change applied to a copy of the balancer, its writes recorded (see
/// [`Balancer::stage`]).
#[derive(Debug, Clone)]
pub struct Staged {
    next: Balancer,
    log: MapLog,
    report: ApplyReport,
}

/// What one apply did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// VIPs added.
    pub vips_added: usize,
    /// VIPs removed.
    pub vips_removed: usize,
    /// VIPs whose table changed (and was flipped).
    pub tables_flipped: usize,
    /// Table slots written.
    pub slots_written: usize,
    /// Backends written (new, changed or retired).
    pub backends_written: usize,
    /// Time each Maglev table build took.
    pub table_builds: Vec<std::time::Duration>,
}

/// The control plane's record of what the data plane holds.
#[derive(Debug, Clone)]
pub struct Balancer {
    max_vips: u32,
    mode: MaglevMode,
    vips: BTreeMap<VipId, AppliedVip>,
    free_backend_ids: BTreeSet<u32>,
    next_generation: u32,
    /// `CONFIG_F_NAT` as last written (None: not yet, e.g. adopted).
    nat_enabled: Option<bool>,
    /// The node's tunnel settings to serve tunnelled VIPs with.
    tunnel: NodeTunnel,
    /// `TUNNEL_CONFIG` as last written (None: not yet; it is written once
    /// a tunnelled VIP is served, and kept current from then on).
    tunnel_written: Option<TunnelConfig>,
}

impl Balancer {
    /// An empty balancer for maps sized for `max_vips` VIPs.
    pub fn new(max_vips: u32) -> Self {
        Self {
            max_vips,
            mode: MaglevMode::Consistent,
            vips: BTreeMap::new(),
            free_backend_ids: (1..MAX_BACKENDS).collect(),
            next_generation: 1,
            nat_enabled: None,
            tunnel: NodeTunnel::default(),
            tunnel_written: None,
        }
    }

    /// The tunnel settings the next apply serves tunnelled VIPs with.
    pub(crate) fn set_tunnel(&mut self, tunnel: NodeTunnel) {
        self.tunnel = tunnel;
    }

    /// Serves tunnelled VIPs with `config` as `TUNNEL_CONFIG`, both outer
    /// families sourced from its prefixes: for test beds and tools that
    /// set the entry themselves instead of resolving `[tunnel]` against
    /// an interface (lbd's engine uses `set_tunnel`).
    pub fn set_tunnel_config(&mut self, config: TunnelConfig) {
        self.tunnel = crate::tunnel::NodeTunnel {
            config,
            ipv4: true,
            ipv6: true,
        };
    }

    /// The tunnel settings in force.
    pub(crate) fn tunnel(&self) -> &NodeTunnel {
        &self.tunnel
    }

    /// How tables follow changes from now on.
    pub(crate) fn set_maglev_mode(&mut self, mode: MaglevMode) {
        self.mode = mode;
    }

    /// The live table of an adopted VIP as read back from the map: the
    /// basis of its next minimal update (both copies are still rewritten
    /// in full once, as their contents are not known for certain).
    pub(crate) fn set_adopted_table(&mut self, id: &VipId, table: Vec<u32>) {
        if let Some(vip) = self.vips.get_mut(id) {
            vip.basis = Some(table);
        }
    }

    /// Takes over what a previous lbd left in pinned maps: VIP ids,
    /// backend ids and generations stay as they are, so tracked flows keep
    /// their backends. Table contents are not read back: the first apply
    /// writes each VIP's whole table into the copy packets do not read and
    /// flips to it, which is correct whatever the old copies hold.
    pub(crate) fn adopt(&mut self, state: &AdoptedState) {
        for (key, meta) in &state.vips {
            let Some(protocol) = Protocol::from_number(key.proto) else {
                continue;
            };
            let id = VipId {
                address: words_addr(key.addr, key.family),
                port: u16::from_be(key.port),
                protocol,
            };
            let backends = state
                .backends
                .iter()
                .filter(|(_, b)| u32::from(b.vip_id) == meta.id)
                .map(|(backend_id, b)| {
                    self.free_backend_ids.remove(backend_id);
                    if b.generation >= self.next_generation {
                        self.next_generation = b.generation.wrapping_add(1).max(1);
                    }
                    (
                        words_addr(b.addr, b.family),
                        AppliedBackend {
                            id: *backend_id,
                            generation: b.generation,
                            mac: (b.mac != [0; 6]).then_some(b.mac),
                            port: (b.port != 0).then(|| u16::from_be(b.port)),
                            weight: 0,
                            alive: b.flags & BACKEND_F_ALIVE != 0,
                        },
                    )
                })
                .collect();
            self.vips.insert(
                id,
                AppliedVip {
                    id: meta.id,
                    table_size: meta.table_size,
                    active: meta.active_table & 1,
                    mode: Mode::from_u32(meta.mode).unwrap_or_default(),
                    // Unknown until the first apply writes it again.
                    nat: None,
                    table: None,
                    backends,
                    applied: None,
                    basis: None,
                },
            );
        }
        info!(
            vips = self.vips.len(),
            backends = MAX_BACKENDS as usize - 1 - self.free_backend_ids.len(),
            "adopted the pinned data plane's VIPs and backends"
        );
    }

    /// The applied VIPs.
    pub fn vips(&self) -> &BTreeMap<VipId, AppliedVip> {
        &self.vips
    }

    /// Makes the data plane serve `desired` (VIPs absent from it are
    /// removed).
    pub fn apply(
        &mut self,
        maps: &mut dyn MapWriter,
        desired: &[DesiredVip],
    ) -> Result<ApplyReport, ReconcileError> {
        let mut report = ApplyReport::default();
        self.apply_tunnel(maps, desired)?;
        let wanted: BTreeSet<VipId> = desired.iter().map(|v| v.id).collect();
        let gone: Vec<VipId> = self
            .vips
            .keys()
            .filter(|id| !wanted.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.remove_vip(maps, id, &mut report)?;
        }
        for vip in desired {
            self.apply_vip(maps, vip, &mut report)?;
        }
        let nat = self.vips.values().any(|v| v.mode == Mode::Nat);
        if self.nat_enabled != Some(nat) {
            maps.set_nat_enabled(nat)?;
            self.nat_enabled = Some(nat);
        }
        Ok(report)
    }

    /// Applies `desired` to a copy of this balancer, recording the writes
    /// instead of making them: the result holds the tables the change
    /// produces (the same code as [`Balancer::apply`], so in either Maglev
    /// mode), for a plan, and the writes for [`Balancer::commit`].
    pub(crate) fn stage(&self, desired: &[DesiredVip]) -> Result<Staged, ReconcileError> {
        let mut next = self.clone();
        let mut log = MapLog::default();
        let report = next.apply(&mut log, desired)?;
        Ok(Staged { next, log, report })
    }

    /// Makes a staged change real: replays its writes to `maps` and takes
    /// its state. If a write fails the maps may hold part of it, so every
    /// table's content counts as unknown (the next change rewrites them).
    pub fn commit(
        &mut self,
        maps: &mut dyn MapWriter,
        staged: Staged,
    ) -> Result<ApplyReport, ReconcileError> {
        if let Err(error) = staged.log.replay(maps) {
            for vip in self.vips.values_mut() {
                vip.table = None;
                vip.applied = None;
            }
            return Err(error.into());
        }
        *self = staged.next;
        Ok(staged.report)
    }

    /// What going from this balancer to `staged` does to each VIP's new
    /// flows (VIPs whose table and backends stay the same are left out).
    pub fn plan(&self, staged: &Staged) -> Vec<VipPlan> {
        let ids: BTreeSet<&VipId> = self.vips.keys().chain(staged.next.vips.keys()).collect();
        let mut plans = Vec::new();
        for id in ids {
            let (old, new) = (self.vips.get(id), staged.next.vips.get(id));
            let shares = |vip: Option<&AppliedVip>| {
                vip.map(AppliedVip::shares_by_address).unwrap_or_default()
            };
            let (before, after) = (shares(old), shares(new));
            let change = match (old, new) {
                (None, Some(_)) => PlanChange::Added,
                (Some(_), None) => PlanChange::Removed,
                _ => PlanChange::Changed,
            };
            let moved_fraction = match (
                old.and_then(AppliedVip::live_table),
                new.and_then(AppliedVip::live_table),
            ) {
                (Some(a), Some(b)) if a.len() == b.len() => Some(maglev::moved_fraction(a, b)),
                _ => None,
            };
            let same_backends = |a: &AppliedVip, b: &AppliedVip| {
                a.backends.len() == b.backends.len()
                    && a.backends.iter().zip(&b.backends).all(|((x, p), (y, q))| {
                        x == y && p.weight == q.weight && p.alive == q.alive && p.mac == q.mac
                    })
            };
            if let (Some(a), Some(b)) = (old, new) {
                if a.live_table() == b.live_table() && same_backends(a, b) {
                    continue;
                }
            }
            plans.push(VipPlan {
                vip: id.to_string(),
                change,
                before,
                after,
                moved_fraction,
            });
        }
        plans
    }

    fn remove_vip(
        &mut self,
        maps: &mut dyn MapWriter,
        id: VipId,
        report: &mut ApplyReport,
    ) -> Result<(), ReconcileError> {
        let Some(vip) = self.vips.get(&id) else {
            return Ok(());
        };
        maps.remove_vip(&id.key())?;
        let backends: Vec<AppliedBackend> = vip.backends.values().cloned().collect();
        for backend in backends {
            self.retire_backend(maps, &backend, report)?;
        }
        self.vips.remove(&id);
        report.vips_removed += 1;
        info!(vip = %id, "VIP removed");
        Ok(())
    }

    /// Refuses tunnelled backends without an outer source, then writes
    /// `TUNNEL_CONFIG` when it changed, before any VIP names a tunnelled
    /// mode (an object without the map serves the other modes untouched).
    fn apply_tunnel(
        &mut self,
        maps: &mut dyn MapWriter,
        desired: &[DesiredVip],
    ) -> Result<(), ReconcileError> {
        let tunnelled: Vec<&DesiredVip> = desired.iter().filter(|v| v.mode.is_tunnel()).collect();
        for vip in &tunnelled {
            for backend in &vip.backends {
                if let Err(key) = self.tunnel.source_for(vip.id.address, backend.address) {
                    return Err(ReconcileError::NoTunnelSource {
                        vip: vip.id.to_string(),
                        backend: backend.address,
                        key,
                    });
                }
            }
        }
        let wanted = self.tunnel.config;
        if (self.tunnel_written.is_some() || !tunnelled.is_empty())
            && self.tunnel_written != Some(wanted)
        {
            maps.set_tunnel_config(&wanted)?;
            self.tunnel_written = Some(wanted);
        }
        Ok(())
    }

    fn free_vip_id(&self) -> Option<u32> {
        let used: BTreeSet<u32> = self.vips.values().map(|v| v.id).collect();
        (0..self.max_vips).find(|id| !used.contains(id))
    }

    fn apply_vip(
        &mut self,
        maps: &mut dyn MapWriter,
        desired: &DesiredVip,
        report: &mut ApplyReport,
    ) -> Result<(), ReconcileError> {
        let id = desired.id;
        let is_new = !self.vips.contains_key(&id);
        if let Some(stored) = self.vips.get_mut(&id) {
            if stored.applied.as_ref() == Some(desired) {
                return Ok(());
            }
            // Until this apply succeeds, the VIP must not count as applied.
            stored.applied = None;
        }
        let mut vip = match self.vips.get(&id) {
            Some(vip) => vip.clone(),
            None => AppliedVip {
                id: self
                    .free_vip_id()
                    .ok_or(ReconcileError::TooManyVips(self.max_vips))?,
                table_size: desired.table_size,
                active: 0,
                mode: desired.mode,
                nat: None,
                table: None,
                backends: BTreeMap::new(),
                applied: None,
                basis: None,
            },
        };
        if is_new {
            // A freed id: the counters must not carry its last VIP's traffic.
            maps.clear_vip_traffic(vip.id)?;
        }
        if vip.table_size != desired.table_size {
            // Different size: neither copy's content can be diffed against.
            vip.table_size = desired.table_size;
            vip.table = None;
        }

        // 1. New backends, and backends that can take packets now, exist in
        //    the data plane before any table can name them. Backends that
        //    can no longer take packets are written after the flip (step 3),
        //    so no packet is hashed to a slot whose backend is already dead.
        let mut kept = BTreeMap::new();
        let mut weakened = Vec::new();
        for backend in &desired.backends {
            let target = AppliedBackend {
                id: 0,
                generation: 0,
                mac: backend.mac,
                port: backend.port,
                weight: backend.weight,
                alive: backend.can_take_packets(desired.mode),
            };
            let applied = match vip.backends.remove(&backend.address) {
                Some(current) => {
                    let next = AppliedBackend {
                        id: current.id,
                        generation: current.generation,
                        ..target
                    };
                    if next.mac != current.mac
                        || next.alive != current.alive
                        || next.port != current.port
                    {
                        if next.alive || !current.alive {
                            self.write_backend(maps, vip.id, backend.address, &next)?;
                            report.backends_written += 1;
                        } else {
                            weakened.push((backend.address, next.clone()));
                        }
                    }
                    next
                }
                None => {
                    let next = AppliedBackend {
                        id: self.allocate_backend_id()?,
                        generation: self.next_generation(),
                        ..target
                    };
                    // As for VIP ids: a new backend counts from zero.
                    maps.clear_backend_traffic(next.id)?;
                    self.write_backend(maps, vip.id, backend.address, &next)?;
                    report.backends_written += 1;
                    next
                }
            };
            kept.insert(backend.address, applied);
        }
        let retired: Vec<AppliedBackend> =
            std::mem::take(&mut vip.backends).into_values().collect();
        vip.backends = kept;

        // The NAT source is in place before the VIP's mode names it.
        let mode_changed = is_new || vip.mode != desired.mode;
        if desired.nat != vip.nat {
            if let Some(nat) = &desired.nat {
                maps.set_nat_source(vip.id, &nat_source(nat))?;
            }
            vip.nat = desired.nat;
        }
        vip.mode = desired.mode;

        // 2. The new table goes into the copy packets do not read, one VIP
        //    update flips them to it, then the other copy catches up, so both
        //    copies hold the live table and the next change writes only the
        //    slots it changes.
        let started = std::time::Instant::now();
        let table = build_table(&id, &vip, self.mode)?;
        report.table_builds.push(started.elapsed());
        if is_new || vip.table.as_deref() != Some(table.as_slice()) {
            if let Some(stored) = self.vips.get_mut(&id) {
                // If a write below fails, the copies' content is unknown.
                stored.table = None;
            }
            let inactive = 1 - vip.active;
            let mut written = write_changes(maps, vip.id, inactive, vip.table.as_deref(), &table)?;
            let meta = VipMeta {
                id: vip.id,
                table_size: vip.table_size,
                active_table: inactive,
                mode: vip.mode as u32,
            };
            maps.set_vip(&id.key(), &meta)?;
            written += write_changes(maps, vip.id, vip.active, vip.table.as_deref(), &table)?;
            vip.active = inactive;
            vip.table = Some(table);
            vip.basis = None;
            report.slots_written += written;
            report.tables_flipped += 1;
            debug!(vip = %id, slots = written, table = inactive, "Maglev table flipped");
        } else if mode_changed {
            // Same table, other mode: one VIP update switches it.
            let meta = VipMeta {
                id: vip.id,
                table_size: vip.table_size,
                active_table: vip.active,
                mode: vip.mode as u32,
            };
            maps.set_vip(&id.key(), &meta)?;
        }

        // 3. Only now, with no table naming them, retire removed backends and
        //    mark dead ones: their tracked flows are hashed again.
        for (address, backend) in &weakened {
            self.write_backend(maps, vip.id, *address, backend)?;
            report.backends_written += 1;
        }
        for backend in &retired {
            self.retire_backend(maps, backend, report)?;
        }
        if is_new {
            report.vips_added += 1;
            info!(vip = %id, backends = vip.backends.len(), "VIP added");
        }
        vip.applied = Some(desired.clone());
        self.vips.insert(id, vip);
        Ok(())
    }

    fn write_backend(
        &self,
        maps: &mut dyn MapWriter,
        vip_id: u32,
        address: IpAddr,
        applied: &AppliedBackend,
    ) -> Result<(), ReconcileError> {
        let (addr, family) = addr_words(address);
        let backend = Backend {
            addr,
            generation: applied.generation,
            // VIP ids stay far below u16::MAX (config::MAX_VIPS).
            vip_id: u16::try_from(vip_id).map_err(|_| ReconcileError::TooManyVips(vip_id))?,
            port: applied.port.unwrap_or(0).to_be(),
            mac: applied.mac.unwrap_or_default(),
            family,
            flags: if applied.alive { BACKEND_F_ALIVE } else { 0 },
        };
        maps.set_backend(applied.id, &backend)?;
        Ok(())
    }

    fn retire_backend(
        &mut self,
        maps: &mut dyn MapWriter,
        backend: &AppliedBackend,
        report: &mut ApplyReport,
    ) -> Result<(), ReconcileError> {
        maps.set_backend(backend.id, &Backend::default())?;
        self.free_backend_ids.insert(backend.id);
        report.backends_written += 1;
        Ok(())
    }

    fn allocate_backend_id(&mut self) -> Result<u32, ReconcileError> {
        self.free_backend_ids
            .pop_first()
            .ok_or(ReconcileError::TooManyBackends(MAX_BACKENDS - 1))
    }

    fn next_generation(&mut self) -> u32 {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        generation
    }
}

/// The data plane's form of a VIP's NAT side.
fn nat_source(nat: &VipNat) -> NatSource {
    let (addr, family) = addr_words(nat.source);
    NatSource {
        addr,
        port_min: nat.port_min,
        port_max: nat.port_max,
        family,
        _pad: [0; 3],
    }
}

/// Writes into copy `copy` of VIP `vip_id` the slots where `new` differs
/// from `old` (every slot when `old` is unknown); returns the count.
fn write_changes(
    maps: &mut dyn MapWriter,
    vip_id: u32,
    copy: u32,
    old: Option<&[u32]>,
    new: &[u32],
) -> Result<usize, ReconcileError> {
    let written = match old {
        Some(old) => maps.write_table(vip_id, copy, &mut maglev::changed_slots(old, new))?,
        None => maps.write_table(
            vip_id,
            copy,
            &mut new.iter().enumerate().map(|(slot, b)| (slot as u32, *b)),
        )?,
    };
    Ok(written)
}

/// The Maglev table of a VIP: backends with a weight and a known MAC. In
/// minimal mode, an update of the table packets read now, if known.
fn build_table(id: &VipId, vip: &AppliedVip, mode: MaglevMode) -> Result<Vec<u32>, ReconcileError> {
    let keys: Vec<(Vec<u8>, &AppliedBackend)> = vip
        .backends
        .iter()
        .filter(|(_, b)| b.alive && b.weight > 0)
        .map(|(address, b)| (address_bytes(*address), b))
        .collect();
    let members: Vec<MaglevBackend<'_>> = keys
        .iter()
        .map(|(key, b)| MaglevBackend {
            key,
            weight: b.weight,
            id: b.id,
        })
        .collect();
    let previous = vip.table.as_deref().or(vip.basis.as_deref());
    let built = match (mode, previous) {
        (MaglevMode::Minimal, Some(previous)) => {
            crate::maglev_update::update_table(previous, &members, vip.table_size)
        }
        _ => maglev::build_table(&members, vip.table_size),
    };
    built.map_err(|source| ReconcileError::Maglev {
        vip: id.to_string(),
        source,
    })
}

#[cfg(test)]
mod nat_tests;
#[cfg(test)]
mod tunnel_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::BackendConfig, dataplane::FakeMaps};
    use lb_common::TrafficCounters;

    fn backend(address: &str, weight: u32) -> BackendConfig {
        let last = address
            .rsplit('.')
            .next()
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        BackendConfig {
            mac: Some(crate::mac::Mac([2, 0, 0, 0, 0, last])),
            weight,
            ..BackendConfig::new(address.parse().unwrap())
        }
    }

    fn vip(size: u32, backends: Vec<BackendConfig>) -> VipConfig {
        VipConfig {
            table_size: size,
            backends,
            ..VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp)
        }
    }

    fn three() -> Vec<BackendConfig> {
        vec![
            backend("198.18.0.11", 100),
            backend("198.18.0.12", 100),
            backend("198.18.0.13", 100),
        ]
    }

    const NO_MAC: &dyn Fn(IpAddr) -> Option<[u8; 6]> = &|_| None;

    fn run(
        balancer: &mut Balancer,
        maps: &mut FakeMaps,
        vips: &[VipConfig],
        mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>,
    ) -> Result<ApplyReport, ReconcileError> {
        let desired: Vec<DesiredVip> = vips
            .iter()
            .map(|v| DesiredVip::from_config(v, mac_of))
            .collect();
        balancer.apply(maps, &desired)
    }

    /// Both copies of the VIP's table in the fake maps.
    fn copies(maps: &FakeMaps, vip_id: u32, size: u32) -> [Vec<u32>; 2] {
        let copy = |c: u32| {
            (0..size)
                .map(|s| maps.tables.get(&(vip_id, c, s)).copied().unwrap_or(0))
                .collect()
        };
        [copy(0), copy(1)]
    }

    #[test]
    fn vip_ids_parse_and_print_the_same() {
        for text in ["198.18.0.100:80/tcp", "[2001:2::100]:443/udp"] {
            let id: VipId = text.parse().unwrap();
            assert_eq!(id.to_string(), text);
        }
        let id: VipId = "198.18.0.100:53".parse().unwrap();
        assert_eq!(id.protocol, Protocol::Tcp);
        for bad in [
            "198.18.0.100",
            "198.18.0.100:80/sctp",
            "2001:2::1:80",
            "198.18.0.100:0",
            "x:80",
        ] {
            assert!(bad.parse::<VipId>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn first_apply_fills_both_copies_then_flips() {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        let desired = [vip(1009, three())];
        let report = run(&mut balancer, &mut maps, &desired, NO_MAC).unwrap();
        assert_eq!(report.vips_added, 1);
        assert_eq!(report.backends_written, 3);
        assert_eq!(report.slots_written, 2 * 1009);
        let key = VipId::of(&desired[0]).key();
        let live = maps.live_table(&key).unwrap();
        let [a, b] = copies(&maps, maps.vips[&key].id, 1009);
        assert_eq!(a, b);
        assert_eq!(a, live);
        assert!(live.iter().all(|id| (1..=3).contains(id)));
        // Every backend is alive with its configured MAC.
        for b in maps.backends.values() {
            assert_eq!(b.flags & BACKEND_F_ALIVE, BACKEND_F_ALIVE);
        }
    }

    #[test]
    fn an_unchanged_apply_writes_nothing() {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        let desired = [vip(1009, three())];
        run(&mut balancer, &mut maps, &desired, NO_MAC).unwrap();
        let writes = maps.slot_writes;
        let report = run(&mut balancer, &mut maps, &desired, NO_MAC).unwrap();
        assert_eq!(report, ApplyReport::default());
        assert_eq!(maps.slot_writes, writes);
    }

    #[test]
    fn a_change_writes_only_the_changed_slots_into_each_copy() {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        run(&mut balancer, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
        let key = VipId::of(&vip(1009, three())).key();
        let before = maps.live_table(&key).unwrap();
        let active_before = maps.vips[&key].active_table;

        let mut four = three();
        four.push(backend("198.18.0.14", 100));
        let report = run(&mut balancer, &mut maps, &[vip(1009, four)], NO_MAC).unwrap();
        let after = maps.live_table(&key).unwrap();
        let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!(changed > 0 && changed < 1009 / 2, "changed {changed}");
        assert_eq!(report.slots_written, 2 * changed);
        assert_eq!(report.tables_flipped, 1);
        assert_ne!(
            maps.vips[&key].active_table, active_before,
            "the VIP flipped copies"
        );
        let [a, b] = copies(&maps, maps.vips[&key].id, 1009);
        assert_eq!(a, b);
    }

    #[test]
    fn in_minimal_mode_a_removal_moves_only_the_removed_backends_slots() {
        let many: Vec<BackendConfig> = (0..100)
            .map(|i| backend(&format!("198.18.1.{}", i + 1), 100))
            .collect();
        for mode in [MaglevMode::Consistent, MaglevMode::Minimal] {
            let mut maps = FakeMaps::default();
            let mut balancer = Balancer::new(4);
            balancer.set_maglev_mode(mode);
            run(
                &mut balancer,
                &mut maps,
                &[vip(65_537, many.clone())],
                NO_MAC,
            )
            .unwrap();
            let key = VipId::of(&vip(65_537, many.clone())).key();
            let before = maps.live_table(&key).unwrap();
            let gone = balancer.vips()[&VipId::of(&vip(65_537, many.clone()))].backends
                [&"198.18.1.50".parse::<IpAddr>().unwrap()]
                .id;
            let held = before.iter().filter(|&&b| b == gone).count();
            let mut fewer = many.clone();
            fewer.remove(49);
            run(&mut balancer, &mut maps, &[vip(65_537, fewer)], NO_MAC).unwrap();
            let after = maps.live_table(&key).unwrap();
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            match mode {
                MaglevMode::Minimal => assert_eq!(moved, held),
                MaglevMode::Consistent => assert!(moved > held, "{moved} vs {held}"),
            }
            assert!(!after.contains(&gone));
        }
    }

    #[test]
    fn a_staged_change_plans_exactly_what_its_commit_writes() {
        let many: Vec<BackendConfig> = (0..100)
            .map(|i| backend(&format!("198.18.1.{}", i + 1), 100))
            .collect();
        let mut fewer = many.clone();
        fewer.remove(49);
        for mode in [MaglevMode::Consistent, MaglevMode::Minimal] {
            let mut maps = FakeMaps::default();
            let mut balancer = Balancer::new(4);
            balancer.set_maglev_mode(mode);
            run(
                &mut balancer,
                &mut maps,
                &[vip(65_537, many.clone())],
                NO_MAC,
            )
            .unwrap();
            let key = VipId::of(&vip(65_537, many.clone())).key();
            let before = maps.live_table(&key).unwrap();
            let desired = [DesiredVip::from_config(&vip(65_537, fewer.clone()), NO_MAC)];
            let staged = balancer.stage(&desired).unwrap();
            let plan = balancer.plan(&staged);
            // Staging wrote nothing.
            assert_eq!(maps.live_table(&key).unwrap(), before);
            balancer.commit(&mut maps, staged).unwrap();
            let after = maps.live_table(&key).unwrap();
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            assert_eq!(plan.len(), 1);
            assert_eq!(plan[0].change, PlanChange::Changed);
            let planned = plan[0].moved_fraction.unwrap();
            assert!(
                (planned - moved as f64 / 65_537.0).abs() < 1e-12,
                "{mode:?}: planned {planned}, moved {moved}"
            );
            if mode == MaglevMode::Minimal {
                // Exactly the removed backend's share, as the plan said.
                assert!((planned - 0.01).abs() < 0.001, "{planned}");
            }
        }
    }

    #[test]
    fn a_change_to_one_vip_leaves_the_others_alone() {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        let mut other = vip(1009, three());
        other.port = 443;
        run(
            &mut balancer,
            &mut maps,
            &[vip(1009, three()), other.clone()],
            NO_MAC,
        )
        .unwrap();
        let mut two = three();
        two.pop();
        let report = run(&mut balancer, &mut maps, &[vip(1009, two), other], NO_MAC).unwrap();
        assert_eq!(report.tables_flipped, 1, "{report:?}");
        assert_eq!(
            report.backends_written, 1,
            "only the removed backend: {report:?}"
        );
    }

    #[test]
    fn a_removed_backend_is_retired_after_the_flip_and_its_id_reused_with_a_new_generation() {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        run(&mut balancer, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
        let id_of = |b: &Balancer, a: &str| {
            let applied = b.vips().values().next().unwrap();
            applied.backends[&a.parse::<IpAddr>().unwrap()].clone()
        };
        let gone = id_of(&balancer, "198.18.0.12");

        let two = vec![backend("198.18.0.11", 100), backend("198.18.0.13", 100)];
        run(&mut balancer, &mut maps, &[vip(1009, two.clone())], NO_MAC).unwrap();
        let key = VipId::of(&vip(1009, three())).key();
        assert!(!maps.live_table(&key).unwrap().contains(&gone.id));
        assert_eq!(
            maps.backends[&gone.id],
            Backend::default(),
            "retired backend not alive"
        );

        let mut again = two;
        again.push(backend("198.18.0.15", 100));
        run(&mut balancer, &mut maps, &[vip(1009, again)], NO_MAC).unwrap();
        let new = id_of(&balancer, "198.18.0.15");
        assert_eq!(new.id, gone.id, "the freed id is reused");
        assert_ne!(new.generation, gone.generation, "with a new generation");
        assert_eq!(maps.backends[&new.id].generation, new.generation);
    }

    #[test]
    fn a_reused_vip_or_backend_id_starts_with_no_traffic() {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        let counted = TrafficCounters {
            packets: 7,
            bytes: 700,
            new_flows: 1,
        };
        run(&mut balancer, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
        let applied = balancer.vips().values().next().unwrap().clone();
        let vip_id = applied.id;
        let backend_id = applied.backends[&"198.18.0.12".parse::<IpAddr>().unwrap()].id;
        maps.vip_traffic.insert(vip_id, counted);
        maps.backend_traffic.insert(backend_id, counted);
        let kept = applied.backends[&"198.18.0.11".parse::<IpAddr>().unwrap()].id;
        maps.backend_traffic.insert(kept, counted);

        // The backend goes and comes back: a new backend on the freed id.
        let two = vec![backend("198.18.0.11", 100), backend("198.18.0.13", 100)];
        run(&mut balancer, &mut maps, &[vip(1009, two)], NO_MAC).unwrap();
        run(&mut balancer, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
        let again = balancer.vips().values().next().unwrap().backends
            [&"198.18.0.12".parse::<IpAddr>().unwrap()]
            .id;
        assert_eq!(again, backend_id, "the freed id is reused");
        assert_eq!(maps.backend_traffic.get(&again), None, "counters cleared");
        assert_eq!(
            maps.backend_traffic.get(&kept),
            Some(&counted),
            "a backend that stayed keeps its counters"
        );
        assert_eq!(maps.vip_traffic.get(&vip_id), Some(&counted));

        // The VIP goes and comes back on the same id.
        run(&mut balancer, &mut maps, &[], NO_MAC).unwrap();
        run(&mut balancer, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
        assert_eq!(balancer.vips().values().next().unwrap().id, vip_id);
        assert_eq!(maps.vip_traffic.get(&vip_id), None, "counters cleared");
    }

    #[test]
    fn backends_without_a_mac_stay_out_until_it_is_known() {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        let mut backends = three();
        backends[1].mac = None;
        let desired = [vip(1009, backends)];
        run(&mut balancer, &mut maps, &desired, NO_MAC).unwrap();
        let key = VipId::of(&desired[0]).key();
        let table = maps.live_table(&key).unwrap();
        let unresolved = balancer.vips().values().next().unwrap().backends
            [&"198.18.0.12".parse::<IpAddr>().unwrap()]
            .id;
        assert!(!table.contains(&unresolved));
        assert_eq!(maps.backends[&unresolved].flags & BACKEND_F_ALIVE, 0);

        let mac = [2, 0, 0, 0, 0, 0x12];
        let report = run(&mut balancer, &mut maps, &desired, &|_| Some(mac)).unwrap();
        assert_eq!(report.backends_written, 1);
        assert!(maps.live_table(&key).unwrap().contains(&unresolved));
        assert_eq!(maps.backends[&unresolved].mac, mac);
    }

    #[test]
    fn a_dead_backend_leaves_the_table_before_it_is_marked_dead() {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        let config = vip(1009, three());
        let mut desired = DesiredVip::from_config(&config, NO_MAC);
        balancer
            .apply(&mut maps, std::slice::from_ref(&desired))
            .unwrap();
        let address: IpAddr = "198.18.0.12".parse().unwrap();
        let id = balancer.vips()[&desired.id].backends[&address].id;

        // Record the order of writes: the table flip must come first.
        desired.backends[1].alive = false;
        let report = balancer
            .apply(&mut maps, std::slice::from_ref(&desired))
            .unwrap();
        assert_eq!(
            report.backends_written, 1,
            "{report:?} {:?} {:?}",
            maps.log, maps.backends
        );
        assert_eq!(
            maps.backends[&id].flags & BACKEND_F_ALIVE,
            0,
            "{:?} {:?}",
            maps.log,
            maps.backends[&id]
        );
        assert!(!maps.live_table(&desired.id.key()).unwrap().contains(&id));
        assert_eq!(
            maps.log.last(),
            Some(&format!("backend {id}")),
            "log: {:?}",
            maps.log
        );

        // Draining: alive, but no new flows.
        desired.backends[1].alive = true;
        desired.backends[1].weight = 0;
        let report = balancer
            .apply(&mut maps, std::slice::from_ref(&desired))
            .unwrap();
        assert_eq!(report.backends_written, 1);
        assert_eq!(maps.backends[&id].flags & BACKEND_F_ALIVE, BACKEND_F_ALIVE);
        assert!(!maps.live_table(&desired.id.key()).unwrap().contains(&id));
    }

    #[test]
    fn removing_a_vip_removes_its_key_and_retires_its_backends() {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        let desired = [vip(1009, three())];
        run(&mut balancer, &mut maps, &desired, NO_MAC).unwrap();
        let report = run(&mut balancer, &mut maps, &[], NO_MAC).unwrap();
        assert_eq!(report.vips_removed, 1);
        assert!(maps.vips.is_empty());
        assert!(maps.backends.values().all(|b| *b == Backend::default()));
        assert!(balancer.vips().is_empty());
    }

    #[test]
    fn more_vips_than_the_maps_hold_is_an_error() {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(1);
        let mut second = vip(1009, three());
        second.port = 81;
        let err = run(
            &mut balancer,
            &mut maps,
            &[vip(1009, three()), second],
            NO_MAC,
        )
        .unwrap_err();
        assert!(matches!(err, ReconcileError::TooManyVips(1)), "{err}");
    }
}
