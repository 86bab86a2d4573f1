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
    Affinity, Mode, ServiceAddr, TunnelConfig,
};
use tracing::{info, warn};

pub use crate::vip_id::{addr_words, address_bytes, words_addr, VipId};
use crate::{
    config::{MaglevMode, Protocol},
    dataplane::{AdoptedState, DataplaneError, MapWriter},
    maglev::{self, MaglevError},
    map_log::MapLog,
    plan::{moved_by_rehash, AffinityChange, PlanChange, VipPlan},
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
    #[error("too many backends: the data plane holds {0}, and a replaced backend's id is free only once its VIP's table stops naming it; at the limit, remove backends in one change and add the new ones in the next")]
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
    /// As `NoTunnelSource`, where the balancer's interface has addresses
    /// of that family but lbd takes none of them as the default outer
    /// source: they are named with why, so the operator is not told to
    /// add an address the interface has.
    #[error("VIP {vip}: backend {backend} needs an outer source of its family, and lbd takes none of the balancer's interface's addresses of that family as one ({passed_over}): set [tunnel] {key}, or give the interface an address of that family that is none of these")]
    NoTunnelSourceAmong {
        /// The VIP.
        vip: String,
        /// The backend.
        backend: IpAddr,
        /// The `[tunnel]` key that would give one.
        key: &'static str,
        /// The interface's addresses of that family lbd passed over, and
        /// why (`tunnel::PassedOver`).
        passed_over: String,
    },
}

/// `error`, when it is a missing outer source of a family whose addresses
/// on the interface lbd all passed over, as one naming them and why.
fn naming_passed_over(error: ReconcileError, tunnel: &NodeTunnel) -> ReconcileError {
    match error {
        ReconcileError::NoTunnelSource { vip, backend, key } => {
            let passed_over = tunnel.passed_over_for(key);
            if passed_over.is_empty() {
                ReconcileError::NoTunnelSource { vip, backend, key }
            } else {
                ReconcileError::NoTunnelSourceAmong {
                    vip,
                    backend,
                    key,
                    passed_over: passed_over.to_string(),
                }
            }
        }
        other => other,
    }
}

mod applied;
mod apply;
mod desired;
mod free_ids;
use free_ids::FreeBackendIds;
#[cfg(test)]
mod failed_commit_tests;
#[cfg(test)]
mod nat_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod served_after_failure_tests;
#[cfg(test)]
mod service_addr_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tunnel_tests;

pub use applied::{AppliedBackend, AppliedVip};
pub use desired::{DesiredBackend, DesiredVip};

/// A change applied to a copy of the balancer, its writes recorded (see
/// [`Balancer::stage`]).
#[derive(Debug, Clone)]
pub struct Staged {
    next: Balancer,
    log: MapLog,
    report: ApplyReport,
}

impl ReconcileError {
    /// Whether the change asked for something the data plane cannot
    /// serve, found while staging (which records writes and makes none):
    /// a tunnelled backend without an outer source of its family, more
    /// VIPs or backends than the maps hold, a table that cannot be built
    /// at the asked size. The request's fault, not lbd's; a failed write
    /// (only a commit writes) or a broken invariant (a duplicate key, id
    /// 0) is not.
    pub fn is_refusal(&self) -> bool {
        match self {
            Self::NoTunnelSource { .. }
            | Self::NoTunnelSourceAmong { .. }
            | Self::TooManyVips(_)
            | Self::TooManyBackends(_) => true,
            Self::Maglev { source, .. } => matches!(
                source,
                MaglevError::SizeOutOfRange(_)
                    | MaglevError::SizeNotPrime(_)
                    | MaglevError::TooManyBackends { .. }
            ),
            Self::Dataplane(_) => false,
        }
    }
}

impl Staged {
    /// The VIPs the data plane serves once this is committed, with their
    /// numeric ids: the guards are written for them first, so a new VIP
    /// is guarded from its first packet.
    pub(crate) fn vips(&self) -> &BTreeMap<VipId, AppliedVip> {
        self.next.vips()
    }
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
    free_backend_ids: FreeBackendIds,
    next_generation: u32,
    /// `CONFIG_F_NAT` as last written (None: not yet, e.g. adopted).
    nat_enabled: Option<bool>,
    /// `SERVICE_ADDRS` as last written (None: not yet; the map is not
    /// pinned, so a new lbd's first apply fills it).
    service_addrs: Option<BTreeMap<ServiceAddr, u32>>,
    /// The node's tunnel settings to serve tunnelled VIPs with.
    tunnel: NodeTunnel,
    /// `TUNNEL_CONFIG` as last written (None: not yet; it is written once
    /// a tunnelled VIP is served, and kept current from then on).
    tunnel_written: Option<TunnelConfig>,
    /// A commit failed half-way: the maps may hold any part of what it
    /// wrote for a VIP, so the next apply writes every backend of each VIP
    /// it applies, not only what changed (the VIPs the commit did not
    /// write keep an exact record and are skipped as usual).
    rewrite_all: bool,
    /// VIPs a failed commit may have written that this record does not
    /// hold: the next apply removes those it does not serve.
    strays: BTreeSet<VipId>,
    /// Free backend ids whose entries a failed commit may have left alive
    /// (a removed backend whose retirement was not made, a new backend of
    /// a VIP whose flip was not made): no table of the record names them,
    /// but flows pinned to their generation still go to their backend, so
    /// the next apply retires them before it hands any id out.
    stale_backend_ids: BTreeSet<u32>,
    /// The maps hold what a previous lbd left (adopted) and no apply of
    /// this record has succeeded yet: there is no state of this lbd's to
    /// go back to after a failed commit (see [`Balancer::restore`]).
    inherited: bool,
}

impl Balancer {
    /// An empty balancer for maps sized for `max_vips` VIPs.
    pub fn new(max_vips: u32) -> Self {
        Self {
            max_vips,
            mode: MaglevMode::Consistent,
            vips: BTreeMap::new(),
            free_backend_ids: FreeBackendIds::new(1..MAX_BACKENDS),
            next_generation: 1,
            nat_enabled: None,
            service_addrs: None,
            tunnel: NodeTunnel::default(),
            tunnel_written: None,
            rewrite_all: false,
            strays: BTreeSet::new(),
            stale_backend_ids: BTreeSet::new(),
            inherited: false,
        }
    }

    /// An empty balancer that hands out only backend ids `1..=ids`: a test
    /// of id reuse needs the line of free ids short, as at the limit, or
    /// a freed id would come back only after thousands of others.
    #[cfg(test)]
    pub(super) fn with_backend_ids(max_vips: u32, ids: u32) -> Self {
        Self {
            free_backend_ids: FreeBackendIds::new(1..=ids),
            ..Self::new(max_vips)
        }
    }

    /// The tunnel settings the next apply serves tunnelled VIPs with.
    pub(crate) fn set_tunnel(&mut self, tunnel: NodeTunnel) {
        self.tunnel = tunnel;
    }

    /// Serves tunnelled VIPs with `config` as written (sources already
    /// resolved; a family has a source when its prefix is not all zero):
    /// for test beds and tools that fill `TUNNEL_CONFIG` themselves
    /// rather than from an interface and `[tunnel]`.
    pub fn set_tunnel_config(&mut self, config: TunnelConfig) {
        self.tunnel = NodeTunnel {
            config,
            ipv4: config.source_v4 != 0,
            ipv6: config.source_v6 != [0; 4],
            ..NodeTunnel::default()
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
        // Above every generation the maps hold: live backends', those of
        // VIPs gone, and retired entries' (`apply::retired_backend`).
        for (_, backend) in &state.backends {
            if backend.generation >= self.next_generation {
                self.next_generation = backend.generation.wrapping_add(1).max(1);
            }
        }
        for (key, meta) in &state.vips {
            let Some(protocol) = Protocol::from_number(key.proto) else {
                continue;
            };
            let id = VipId {
                address: words_addr(key.addr, key.family),
                port: u16::from_be(key.port),
                protocol,
            };
            let mut backends: BTreeMap<IpAddr, AppliedBackend> = BTreeMap::new();
            let mut dropped = Vec::new();
            for (backend_id, b) in state
                .backends
                .iter()
                .filter(|(_, b)| u32::from(b.vip_id) == meta.id)
            {
                self.free_backend_ids.remove(*backend_id);
                let address = words_addr(b.addr, b.family);
                let mut adopted = AppliedBackend {
                    id: *backend_id,
                    generation: b.generation,
                    mac: (b.mac != [0; 6]).then_some(b.mac),
                    port: (b.port != 0).then(|| u16::from_be(b.port)),
                    weight: 0,
                    alive: b.flags & BACKEND_F_ALIVE != 0,
                };
                if let Some(held) = backends.get_mut(&address) {
                    // Two entries of one address: keep the one written
                    // last, retire the other after the first flip.
                    if adopted.generation > held.generation {
                        std::mem::swap(held, &mut adopted);
                    }
                    warn!(
                        vip = %id,
                        backend = %address,
                        kept = held.id,
                        retired = adopted.id,
                        "two backend entries of one address: one is retired on the first apply"
                    );
                    dropped.push(adopted);
                } else {
                    backends.insert(address, adopted);
                }
            }
            self.vips.insert(
                id,
                AppliedVip {
                    id: meta.id,
                    table_size: meta.table_size,
                    active: meta.active_table & 1,
                    mode: Mode::from_u32(meta.mode()).unwrap_or_default(),
                    affinity: Affinity::from_u32(meta.affinity()).unwrap_or_default(),
                    // Unknown until the first apply writes it again.
                    nat: None,
                    table: None,
                    backends,
                    applied: None,
                    basis: None,
                    meta_unsure: false,
                    dropped,
                },
            );
        }
        // Every other entry holding a generation was freed (retired, or
        // of a VIP gone): handed out after the ids never used, in the
        // order they were freed, as the previous lbd would have.
        self.free_backend_ids
            .freed_before(state.backends.iter().map(|(id, b)| (*id, b.generation)));
        self.inherited = true;
        info!(
            vips = self.vips.len(),
            backends = MAX_BACKENDS as usize - 1 - self.free_backend_ids.len(),
            "adopted the pinned data plane's VIPs and backends"
        );
    }

    /// The MACs the maps hold for backends of DSR-at-L2 VIPs (adopted
    /// ones included): a restarted lbd starts from them, so a backend
    /// whose neighbour entry has not resolved yet keeps the MAC its flows
    /// go to rather than being taken out of service (the neighbour table
    /// replaces them as usual once it answers).
    pub(crate) fn backend_macs(&self) -> Vec<(IpAddr, [u8; 6])> {
        self.vips
            .values()
            .filter(|vip| vip.mode == Mode::DsrL2)
            .flat_map(|vip| vip.backends.iter())
            .filter_map(|(address, backend)| backend.mac.map(|mac| (*address, mac)))
            .collect()
    }

    /// The applied VIPs.
    pub fn vips(&self) -> &BTreeMap<VipId, AppliedVip> {
        &self.vips
    }

    /// Makes the data plane serve `desired` (VIPs absent from it are
    /// removed). The node-wide entries a desired VIP needs (the NAT flag,
    /// its `SERVICE_ADDRS` entries) are written before any VIP, and those
    /// no VIP needs any more are taken away only after every VIP, so each
    /// prefix of the writes serves every VIP it shows a packet.
    pub fn apply(
        &mut self,
        maps: &mut dyn MapWriter,
        desired: &[DesiredVip],
    ) -> Result<ApplyReport, ReconcileError> {
        let mut report = ApplyReport::default();
        // A failed commit may have left these entries naming either copy:
        // name the recorded one before any table or backend is written.
        for (id, vip) in &mut self.vips {
            if vip.meta_unsure {
                maps.set_vip(&id.key(), &vip.meta())?;
                vip.meta_unsure = false;
            }
        }
        self.apply_tunnel(maps, desired)
            .map_err(|error| naming_passed_over(error, &self.tunnel))?;
        let wanted: BTreeSet<VipId> = desired.iter().map(|v| v.id).collect();
        for stray in std::mem::take(&mut self.strays) {
            if !wanted.contains(&stray) && !self.vips.contains_key(&stray) {
                maps.remove_vip(&stray.key())?;
            }
        }
        self.retire_stale_backends(maps, &mut report)?;
        self.open_node_entries(maps, desired)?;
        let gone: Vec<VipId> = self
            .vips
            .keys()
            .filter(|id| !wanted.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.remove_vip(maps, id, &mut report)?;
        }
        for vip in self.freeing_first(desired) {
            self.apply_vip(maps, vip, &mut report)?;
        }
        self.close_node_entries(maps)?;
        self.rewrite_all = false;
        self.inherited = false;
        Ok(report)
    }

    /// `desired` in the order its VIPs are applied: those that give up
    /// more backends than they take first. A removed backend's id is free
    /// once its VIP's table stops naming it, so near the limit another
    /// VIP's new backends can take the ids this change frees (the writes
    /// of different VIPs do not depend on each other's order).
    fn freeing_first<'a>(&self, desired: &'a [DesiredVip]) -> Vec<&'a DesiredVip> {
        let new_ids = |vip: &DesiredVip| -> i64 {
            let Some(applied) = self.vips.get(&vip.id) else {
                return vip.backends.len() as i64;
            };
            let wanted: BTreeSet<IpAddr> = vip.backends.iter().map(|b| b.address).collect();
            let taken = wanted
                .iter()
                .filter(|a| !applied.backends.contains_key(a))
                .count();
            let freed = applied
                .backends
                .keys()
                .filter(|a| !wanted.contains(a))
                .count();
            taken as i64 - freed as i64
        };
        let mut ordered: Vec<&DesiredVip> = desired.iter().collect();
        ordered.sort_by_key(|vip| new_ids(vip));
        ordered
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
    /// its state. If a write fails the maps hold a prefix of the change
    /// (and maybe part of the failed write): this record then takes, VIP
    /// by VIP, what the maps serve (see [`Balancer::take_served`]), so the
    /// next apply (of the previous state, to roll back, or of the next
    /// change) writes only copies packets do not read and ids no live
    /// table names, and removes the VIPs the failed change may have added.
    pub fn commit(
        &mut self,
        maps: &mut dyn MapWriter,
        staged: Staged,
    ) -> Result<ApplyReport, ReconcileError> {
        if let Err(failed) = staged.log.replay(maps) {
            self.take_served(&staged, failed.failed);
            return Err(failed.error.into());
        }
        *self = staged.next;
        Ok(staged.report)
    }

    /// After `staged`'s replay failed at write `failed`: per VIP, the
    /// record of what the maps serve. Each VIP's table writes precede its
    /// flip (its last `VIPS` write), so a VIP whose flip was made (or
    /// failed, and may have been: `meta_unsure`) serves the staged live
    /// copy, table and backends; one whose flip or removal was not made
    /// serves this record's; one the change skipped was not written at
    /// all. What else it may have written (the other copy, retirements,
    /// NAT sources, the node-wide entries) is unknown and rewritten by the
    /// next apply, into the copy packets do not read, from the live table
    /// (`basis`, the minimal mode's starting point, so no slot moves for
    /// nothing). Ids follow the records: an id a staged VIP took was freed
    /// and retired by the change before, and one a failed VIP took is
    /// named by no live table. An id freed here goes behind those free
    /// before, and its entry, which the change may have written or left
    /// unretired, is retired by the next apply (`stale_backend_ids`).
    fn take_served(&mut self, staged: &Staged, failed: usize) {
        // Every id either record holds: one the result does not hold may
        // have been written by the change (a new backend) or kept alive by
        // it (a removed backend whose retirement was not made).
        let written: BTreeSet<u32> = self
            .vips
            .values()
            .chain(staged.next.vips.values())
            .flat_map(AppliedVip::held_ids)
            .collect();
        let ids: BTreeSet<VipId> = self
            .vips
            .keys()
            .chain(staged.next.vips.keys())
            .copied()
            .collect();
        let (mut vips, mut kept) = (BTreeMap::new(), BTreeMap::new());
        for id in ids {
            let (old, new) = (self.vips.remove(&id), staged.next.vips.get(&id));
            let at = staged
                .log
                .last_vip_write(&id.key())
                .filter(|at| *at <= failed);
            match (old, new, at) {
                (Some(old), Some(new), _)
                    if old.applied.is_some() && old.applied == new.applied =>
                {
                    kept.insert(id, old);
                }
                (_, Some(new), Some(at)) => {
                    let mut vip = new.clone();
                    vip.basis = vip.table.take().or(vip.basis);
                    vip.applied = None;
                    vip.meta_unsure = at == failed;
                    vips.insert(id, vip);
                }
                (Some(_), None, Some(at)) if at < failed => {}
                (Some(mut old), _, _) => {
                    old.basis = old.table.take().or(old.basis);
                    old.applied = None;
                    old.nat = None;
                    kept.insert(id, old);
                }
                (None, _, _) => {
                    self.strays.insert(id);
                }
            }
        }
        let taken: BTreeSet<u32> = vips.values().flat_map(AppliedVip::held_ids).collect();
        for (id, mut vip) in kept {
            vip.backends.retain(|_, b| !taken.contains(&b.id));
            vip.dropped.retain(|b| !taken.contains(&b.id));
            vips.insert(id, vip);
        }
        let used: BTreeSet<u32> = vips.values().flat_map(AppliedVip::held_ids).collect();
        // Those freed here go behind the ids free before.
        self.free_backend_ids = self.free_backend_ids.without(&used, &written);
        self.stale_backend_ids.extend(written);
        self.stale_backend_ids.retain(|id| !used.contains(id));
        self.vips = vips;
        self.tunnel_written = None;
        self.nat_enabled = None;
        self.service_addrs = None;
        self.rewrite_all = true;
        // The generations it handed out may be in the maps: never again
        // (a later backend on one of its ids would inherit the flows it
        // pinned there).
        self.next_generation = self.next_generation.max(staged.next.next_generation);
    }

    /// Writes `running`, the state served before a commit that failed
    /// half-way, back to `maps`. Returns false, writing nothing, while the
    /// maps still hold what a previous lbd left (adopted, and no commit of
    /// this record succeeded): the state served then is that lbd's, which
    /// this record cannot write back (its tables were not read), and
    /// `running` (the model before the first fill: empty) would remove
    /// every VIP the previous lbd's program, still attached, serves. The
    /// maps then keep the adopted state with whatever part of the change
    /// reached them (each VIP's writes are ordered so that any prefix of
    /// them serves), and the next apply rewrites all it serves.
    pub(crate) fn restore(
        &mut self,
        maps: &mut dyn MapWriter,
        running: &[DesiredVip],
    ) -> Result<bool, ReconcileError> {
        if self.inherited {
            return Ok(false);
        }
        let staged = self.stage(running)?;
        self.commit(maps, staged)?;
        Ok(true)
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
                (Some(a), Some(b)) => Some(moved_fraction(a, b)),
                _ => None,
            };
            // A NAT backend's port is written too: a change of it alone
            // (a reload putting the file's back) is in the plan.
            let same_backends = |a: &AppliedVip, b: &AppliedVip| {
                a.backends.len() == b.backends.len()
                    && a.backends.iter().zip(&b.backends).all(|((x, p), (y, q))| {
                        x == y
                            && p.weight == q.weight
                            && p.alive == q.alive
                            && p.mac == q.mac
                            && p.port == q.port
                    })
            };
            let affinity = match (old, new) {
                (Some(a), Some(b)) => AffinityChange::of(a.affinity, b.affinity),
                _ => None,
            };
            if let (Some(a), Some(b)) = (old, new) {
                if a.live_table() == b.live_table() && same_backends(a, b) && affinity.is_none() {
                    continue;
                }
            }
            let moved_fraction = match affinity {
                Some(_) => Some(moved_by_rehash(&before, &after)),
                None => moved_fraction,
            };
            plans.push(VipPlan {
                vip: id.to_string(),
                change,
                before,
                after,
                moved_fraction,
                affinity,
                slow_start: None,
            });
        }
        plans
    }
}

/// Flow hashes a table change is measured on when the tables' sizes
/// differ: all of them modulo both sizes when their least common multiple
/// is at most this, else this many spread over every `u32`.
const MOVED_SAMPLES: u64 = 1 << 16;

/// The share of new flows that go from `old` to `new` (tables of backend
/// ids) sends to another backend, each table read as the data plane reads
/// it (lb-ebpf's `select.rs`: a flow of hash `h` takes slot `h % size`).
/// Tables of one size: the share of slots that differ. A new size: the
/// share of hashes whose slot names another backend after than before,
/// over every hash modulo both sizes when that is cheap, else over a fixed
/// sample spread evenly (a Weyl sequence) over every `u32`, so a plan says
/// the same each time. A VIP of one backend moves nothing, whatever the
/// size. One definition for the balancer's plan and the model's (`lbctl
/// config check`, dry runs). 0 for an empty `new`; 1 from an empty `old`
/// (its flows had no backend).
pub(crate) fn moved_fraction(old: &[u32], new: &[u32]) -> f64 {
    if new.is_empty() || old.len() == new.len() {
        return maglev::moved_fraction(old, new);
    }
    let (Ok(m), Ok(n)) = (u32::try_from(old.len()), u32::try_from(new.len())) else {
        return 1.0;
    };
    if m == 0 {
        return 1.0;
    }
    let slot = |table: &[u32], size: u32, hash: u32| table.get((hash % size) as usize).copied();
    let moved = |hash: u32| slot(old, m, hash) != slot(new, n, hash);
    let lcm = u64::from(m) / gcd(u64::from(m), u64::from(n)) * u64::from(n);
    if lcm <= MOVED_SAMPLES {
        // Every residue pair, once: exact for hashes spread evenly.
        let count = (0..lcm as u32).filter(|&h| moved(h)).count();
        return count as f64 / lcm as f64;
    }
    // The golden ratio's 32-bit step: consecutive samples land far apart
    // and the whole set evenly over the hashes, unrelated to the sizes.
    let count = (0..MOVED_SAMPLES as u32)
        .filter(|&i| moved(i.wrapping_mul(0x9E37_79B9)))
        .count();
    count as f64 / MOVED_SAMPLES as f64
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
