//! What lbd serves: the VIPs and backends from the config file plus the
//! changes made at run time, with each backend's admin state (enabled,
//! draining, maintenance) and health. Pure: it turns into the desired
//! data-plane state (`DesiredVip`) and into plans for `--dry-run`.
//!
//! Runtime changes and the file: a reload makes the file the truth again.
//! VIPs and backends added at run time but absent from the file are
//! removed, and weights changed at run time go back to the file's; what a
//! reload will undo is listed by `lbctl reload --dry-run`, and
//! `lbctl config dump` prints the running config to save into the file.
//! Admin states (drain, maintenance) and health survive reloads: they are
//! operations on running backends, not configuration.

use std::{
    collections::BTreeMap,
    fmt,
    net::IpAddr,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

pub use crate::plan::{PlanChange, VipPlan};
use crate::{
    config::{AllDown, BackendConfig, Config, VipConfig},
    health::Health,
    mac::Mac,
    maglev::{self, MaglevBackend},
    reconcile::{address_bytes, DesiredBackend, DesiredVip, VipId},
};

/// An operator's choice for a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// Takes new flows (if healthy).
    Enabled,
    /// Takes no new flows; its established flows continue until they end
    /// or the deadline passes.
    Draining {
        /// When the drain started.
        since: Instant,
        /// When its remaining flows are cut (None: never).
        deadline: Option<Instant>,
    },
    /// Out at once: no new flows, established flows hashed elsewhere.
    Maintenance,
}

impl AdminState {
    /// Which of the operator's states it is, without its times: what the
    /// API, the status and the metrics show.
    pub fn state(&self) -> BackendState {
        match self {
            AdminState::Enabled => BackendState::Enabled,
            AdminState::Draining { .. } => BackendState::Draining,
            AdminState::Maintenance => BackendState::Maintenance,
        }
    }
}

/// A backend's admin state by name, as an operator asks for it and the
/// status shows it (`enabled`, `draining`, `maintenance` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Takes new flows (if healthy).
    Enabled,
    /// Takes no new flows; established flows continue.
    Draining,
    /// Out at once.
    Maintenance,
}

impl BackendState {
    /// Every state, for metrics that show one series per state.
    pub const ALL: [BackendState; 3] = [
        BackendState::Enabled,
        BackendState::Draining,
        BackendState::Maintenance,
    ];

    /// The name on the wire and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Enabled => "enabled",
            BackendState::Draining => "draining",
            BackendState::Maintenance => "maintenance",
        }
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend as lbd runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendModel {
    /// Its configuration (weight possibly changed at run time).
    pub config: BackendConfig,
    /// Operator's state.
    pub admin: AdminState,
    /// Health from the checks (Unknown until they decide; counts as up).
    pub health: Health,
    /// Added at run time: not in the config file.
    pub runtime: bool,
    /// Its last drain ended because the drain's timeout cut its flows (it
    /// is in maintenance since); cleared by the next admin change.
    pub drain_timed_out: bool,
}

/// A VIP as lbd runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct VipModel {
    /// Its configuration; `config.backends` is kept in `backends`.
    pub config: VipConfig,
    /// Backends by address.
    pub backends: BTreeMap<IpAddr, BackendModel>,
    /// Added at run time: not in the config file.
    pub runtime: bool,
}

/// Everything lbd serves.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    /// VIPs by identity.
    pub vips: BTreeMap<VipId, VipModel>,
}

/// Why an operation was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// No such VIP.
    #[error("no VIP {0}")]
    NoVip(VipId),
    /// No such backend.
    #[error("VIP {vip} has no backend {backend}")]
    NoBackend {
        /// The VIP.
        vip: VipId,
        /// The backend.
        backend: IpAddr,
    },
    /// The VIP exists already.
    #[error("VIP {0} exists already")]
    VipExists(VipId),
    /// The backend exists already.
    #[error("VIP {vip} already has backend {backend}")]
    BackendExists {
        /// The VIP.
        vip: VipId,
        /// The backend.
        backend: IpAddr,
    },
    /// A value is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The change would go past a limit (VIPs, backends per VIP or in all).
    #[error("{0}")]
    Limit(String),
}

impl VipModel {
    fn from_config(config: &VipConfig, runtime: bool) -> Self {
        let backends = config
            .backends
            .iter()
            .map(|b| {
                (
                    b.address,
                    BackendModel {
                        config: b.clone(),
                        admin: AdminState::Enabled,
                        health: Health::Unknown,
                        runtime,
                        drain_timed_out: false,
                    },
                )
            })
            .collect();
        let mut config = config.clone();
        config.backends.clear();
        Self {
            config,
            backends,
            runtime,
        }
    }

    /// True when the VIP has backends meant to take flows but none is
    /// healthy.
    pub fn all_down(&self) -> bool {
        let mut candidates = self
            .backends
            .values()
            .filter(|b| b.admin == AdminState::Enabled && b.config.weight > 0)
            .peekable();
        candidates.peek().is_some() && candidates.all(|b| b.health == Health::Down)
    }

    /// Whether a new flow to the VIP finds a backend: an enabled, weighted
    /// backend that is not down, or (all down) the VIP fails open to them.
    /// A node announces a VIP address over BGP only while this holds.
    pub fn can_serve(&self) -> bool {
        let mut candidates = self
            .backends
            .values()
            .filter(|b| b.admin == AdminState::Enabled && b.config.weight > 0)
            .peekable();
        if candidates.peek().is_none() {
            return false;
        }
        candidates.any(|b| b.health != Health::Down) || self.config.on_all_down == AllDown::KeepLast
    }

    /// How the data plane should treat each backend.
    pub fn desired(&self, id: VipId, mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>) -> DesiredVip {
        let fail_open = self.config.on_all_down == AllDown::KeepLast && self.all_down();
        DesiredVip {
            id,
            table_size: self.config.table_size,
            mode: self.config.forwarding,
            nat: self.config.nat,
            backends: self
                .backends
                .values()
                .map(|b| {
                    let up = b.health != Health::Down || fail_open;
                    DesiredBackend {
                        address: b.config.address,
                        mac: b
                            .config
                            .mac
                            .map(Mac::octets)
                            .or_else(|| mac_of(b.config.address)),
                        port: b.config.port,
                        weight: if up && b.admin == AdminState::Enabled {
                            b.config.weight
                        } else {
                            0
                        },
                        alive: up && b.admin != AdminState::Maintenance,
                    }
                })
                .collect(),
        }
    }

    /// Each backend's share of new flows (of the Maglev table), ignoring
    /// MACs: what the operator asked for.
    pub fn shares(&self) -> BTreeMap<IpAddr, f64> {
        let ids = numbering([self]);
        shares_of(&self.table(&ids), &ids, self)
    }

    /// The Maglev table this VIP's backends give, with backends numbered
    /// by `ids` (MACs assumed known).
    fn table(&self, ids: &BTreeMap<IpAddr, u32>) -> Vec<u32> {
        let desired = self.desired(VipId::of(&self.config), &|_| Some([2, 0, 0, 0, 0, 1]));
        let keys: Vec<(Vec<u8>, u32, u32)> = desired
            .backends
            .iter()
            .filter(|b| b.alive && b.weight > 0)
            .filter_map(|b| Some((address_bytes(b.address), b.weight, *ids.get(&b.address)?)))
            .collect();
        let members: Vec<MaglevBackend<'_>> = keys
            .iter()
            .map(|(key, weight, id)| MaglevBackend {
                key,
                weight: *weight,
                id: *id,
            })
            .collect();
        maglev::build_table(&members, self.config.table_size).unwrap_or_default()
    }
}

/// Numbers (from 1) every backend address of `vips`, so tables built for
/// them can be compared slot by slot.
fn numbering<'a>(vips: impl IntoIterator<Item = &'a VipModel>) -> BTreeMap<IpAddr, u32> {
    let mut addresses: Vec<IpAddr> = vips
        .into_iter()
        .flat_map(|v| v.backends.keys().copied())
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses.into_iter().zip(1u32..).collect()
}

/// Share of `table` per backend of `vip`.
fn shares_of(table: &[u32], ids: &BTreeMap<IpAddr, u32>, vip: &VipModel) -> BTreeMap<IpAddr, f64> {
    let by_id = maglev::shares(table);
    vip.backends
        .keys()
        .map(|a| {
            (
                *a,
                ids.get(a)
                    .and_then(|id| by_id.get(id))
                    .copied()
                    .unwrap_or(0.0),
            )
        })
        .collect()
}

impl Model {
    /// Everything in `config`, all backends enabled, health unknown.
    pub fn from_config(config: &Config) -> Self {
        Self {
            vips: config
                .vips
                .iter()
                .map(|v| (VipId::of(v), VipModel::from_config(v, false)))
                .collect(),
        }
    }

    /// The desired data-plane state.
    pub fn desired(&self, mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>) -> Vec<DesiredVip> {
        self.vips
            .iter()
            .map(|(id, v)| v.desired(*id, mac_of))
            .collect()
    }

    /// The VIP `id`.
    pub fn vip(&self, id: &VipId) -> Result<&VipModel, ModelError> {
        self.vips.get(id).ok_or(ModelError::NoVip(*id))
    }

    fn vip_mut(&mut self, id: &VipId) -> Result<&mut VipModel, ModelError> {
        self.vips.get_mut(id).ok_or(ModelError::NoVip(*id))
    }

    /// Backend `address` of VIP `id`.
    pub fn backend(&self, id: &VipId, address: IpAddr) -> Result<&BackendModel, ModelError> {
        self.vip(id)?
            .backends
            .get(&address)
            .ok_or(ModelError::NoBackend {
                vip: *id,
                backend: address,
            })
    }

    fn backend_mut(
        &mut self,
        id: &VipId,
        address: IpAddr,
    ) -> Result<&mut BackendModel, ModelError> {
        self.vip_mut(id)?
            .backends
            .get_mut(&address)
            .ok_or(ModelError::NoBackend {
                vip: *id,
                backend: address,
            })
    }

    /// Adds a VIP (with its backends) at run time.
    pub fn add_vip(&mut self, config: &VipConfig) -> Result<(), ModelError> {
        let id = VipId::of(config);
        if self.vips.contains_key(&id) {
            return Err(ModelError::VipExists(id));
        }
        if self.vips.len() >= crate::config::MAX_VIPS {
            return Err(ModelError::Limit(format!(
                "too many VIPs: at most {} are allowed",
                crate::config::MAX_VIPS
            )));
        }
        if config.backends.len() > crate::config::MAX_BACKENDS_PER_VIP {
            return Err(ModelError::Limit(format!(
                "too many backends: at most {} per VIP are allowed",
                crate::config::MAX_BACKENDS_PER_VIP
            )));
        }
        Self::check_total_backends(self.backend_count().saturating_add(config.backends.len()))?;
        self.nat_sources_are_not_vips(config)?;
        self.vips.insert(id, VipModel::from_config(config, true));
        Ok(())
    }

    /// As in the file: no NAT address is a VIP's address (replies to it
    /// would be taken for the VIP's traffic), whichever comes second.
    fn nat_sources_are_not_vips(&self, config: &VipConfig) -> Result<(), ModelError> {
        if let Some(nat) = config.nat {
            if let Some(other) = self.vips.keys().find(|id| id.address == nat.source) {
                return Err(ModelError::Invalid(format!(
                    "the NAT address {} is the address of VIP {other}; a NAT address must be an address of its own",
                    nat.source
                )));
            }
        }
        if let Some((other, _)) = self
            .vips
            .iter()
            .find(|(_, v)| v.config.nat.is_some_and(|n| n.source == config.address))
        {
            return Err(ModelError::Invalid(format!(
                "{} is the NAT address of VIP {other}; a VIP needs an address of its own",
                config.address
            )));
        }
        Ok(())
    }

    /// Removes a VIP.
    pub fn remove_vip(&mut self, id: &VipId) -> Result<(), ModelError> {
        self.vips.remove(id).map(drop).ok_or(ModelError::NoVip(*id))
    }

    /// Backends of all VIPs together.
    pub(crate) fn backend_count(&self) -> usize {
        self.vips.values().map(|v| v.backends.len()).sum()
    }

    /// Refuses a change that leaves `total` backends in all if that is more
    /// than the data plane's backend map holds.
    fn check_total_backends(total: usize) -> Result<(), ModelError> {
        if total > crate::config::MAX_BACKENDS_TOTAL {
            return Err(ModelError::Limit(format!(
                "too many backends: {total} in all, at most {} are allowed across all VIPs",
                crate::config::MAX_BACKENDS_TOTAL
            )));
        }
        Ok(())
    }

    /// Adds a backend to VIP `id` at run time.
    pub fn add_backend(&mut self, id: &VipId, config: BackendConfig) -> Result<(), ModelError> {
        let total = self.backend_count().saturating_add(1);
        let vip = self.vip_mut(id)?;
        if vip.backends.contains_key(&config.address) {
            return Err(ModelError::BackendExists {
                vip: *id,
                backend: config.address,
            });
        }
        if config.address.is_ipv4() != id.address.is_ipv4() {
            return Err(ModelError::Invalid(format!(
                "backend {} and VIP {id} are of different address families",
                config.address
            )));
        }
        if config.address == id.address {
            return Err(ModelError::Invalid(format!(
                "backend {} is the VIP's own address",
                config.address
            )));
        }
        if config.weight > crate::config::MAX_WEIGHT {
            return Err(weight_error(config.weight));
        }
        let mode = vip.config.forwarding;
        if config.mac.is_some() && mode != lb_common::Mode::DsrL2 {
            return Err(ModelError::Invalid(format!(
                "backend {}: a {} VIP's backends are routed and take no MAC",
                config.address,
                mode.name()
            )));
        }
        if config.port.is_some() && mode != lb_common::Mode::Nat {
            return Err(ModelError::Invalid(format!(
                "backend {}: direct server return keeps the VIP's port",
                config.address
            )));
        }
        if vip.backends.len() >= crate::config::MAX_BACKENDS_PER_VIP {
            return Err(ModelError::Limit(format!(
                "too many backends: at most {} per VIP are allowed",
                crate::config::MAX_BACKENDS_PER_VIP
            )));
        }
        Self::check_total_backends(total)?;
        let weighted = vip
            .backends
            .values()
            .filter(|b| b.config.weight > 0)
            .count()
            + 1;
        if weighted > vip.config.table_size as usize {
            return Err(ModelError::Invalid(format!(
                "{weighted} weighted backends do not fit the VIP's table of {} slots",
                vip.config.table_size
            )));
        }
        vip.backends.insert(
            config.address,
            BackendModel {
                config,
                admin: AdminState::Enabled,
                health: Health::Unknown,
                runtime: true,
                drain_timed_out: false,
            },
        );
        Ok(())
    }

    /// Removes a backend: its established flows are hashed elsewhere.
    pub fn remove_backend(&mut self, id: &VipId, address: IpAddr) -> Result<(), ModelError> {
        self.vip_mut(id)?
            .backends
            .remove(&address)
            .map(drop)
            .ok_or(ModelError::NoBackend {
                vip: *id,
                backend: address,
            })
    }

    /// Sets a backend's admin state.
    pub(crate) fn set_admin(
        &mut self,
        id: &VipId,
        address: IpAddr,
        admin: AdminState,
    ) -> Result<(), ModelError> {
        let backend = self.backend_mut(id, address)?;
        backend.admin = admin;
        backend.drain_timed_out = false;
        Ok(())
    }

    /// Sets a backend's weight (its share of new flows only).
    pub fn set_weight(
        &mut self,
        id: &VipId,
        address: IpAddr,
        weight: u32,
    ) -> Result<(), ModelError> {
        if weight > crate::config::MAX_WEIGHT {
            return Err(weight_error(weight));
        }
        self.backend_mut(id, address)?.config.weight = weight;
        Ok(())
    }

    /// Records a backend's health; false if there is no such backend.
    pub(crate) fn set_health(&mut self, id: &VipId, address: IpAddr, health: Health) -> bool {
        match self.backend_mut(id, address) {
            Ok(backend) => {
                backend.health = health;
                true
            }
            Err(_) => false,
        }
    }

    /// The model a reload of `config` gives: the file's VIPs and backends,
    /// keeping the admin state and health of backends that stay.
    pub fn reloaded(&self, config: &Config) -> Model {
        let mut next = Model::from_config(config);
        for (id, vip) in &mut next.vips {
            let Some(old) = self.vips.get(id) else {
                continue;
            };
            for (address, backend) in &mut vip.backends {
                if let Some(previous) = old.backends.get(address) {
                    backend.admin = previous.admin;
                    backend.health = previous.health;
                }
            }
        }
        next
    }

    /// The running configuration: `base`'s node settings with these VIPs.
    pub(crate) fn to_config(&self, base: &Config) -> Config {
        let mut config = base.clone();
        config.vips = self
            .vips
            .values()
            .map(|v| {
                let mut c = v.config.clone();
                c.backends = v.backends.values().map(|b| b.config.clone()).collect();
                c
            })
            .collect();
        config
    }
}

fn weight_error(weight: u32) -> ModelError {
    ModelError::Invalid(format!(
        "weight {weight} is out of range 0..={}",
        crate::config::MAX_WEIGHT
    ))
}

/// One operator change to the model, as the API asks for it. Applied by
/// [`Model::apply`], a pure function of the model, the edit and `now`.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Add a VIP (with its backends).
    AddVip(VipConfig),
    /// Remove a VIP.
    RemoveVip(VipId),
    /// Add a backend to a VIP.
    AddBackend(VipId, BackendConfig),
    /// Remove a backend from a VIP.
    RemoveBackend(VipId, IpAddr),
    /// Put a backend back in service (ends a drain or maintenance).
    Enable(VipId, IpAddr),
    /// Drain a backend: `timeout_s` is the request's own timeout (0:
    /// never cut), else the VIP's `drain_timeout_s`, else never.
    Drain {
        /// The VIP.
        vip: VipId,
        /// The backend.
        backend: IpAddr,
        /// The request's timeout in seconds, if it gave one.
        timeout_s: Option<u64>,
    },
    /// Take a backend out at once.
    Maintenance(VipId, IpAddr),
    /// Change a backend's weight.
    SetWeight(VipId, IpAddr, u32),
}

/// Longest drain timeout a request may ask for.
pub(crate) const MAX_DRAIN_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);

/// Where a drain's deadline comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainTimeoutSource {
    /// The drain request's own timeout.
    Request,
    /// The VIP's `drain_timeout_s`.
    VipDefault,
    /// Neither: established flows are never cut.
    None,
}

/// A drain's effective timeout and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainTimeout {
    /// After how long the remaining flows are cut (None: never).
    pub after: Option<Duration>,
    /// Which setting decided it.
    pub source: DrainTimeoutSource,
}

/// The timeout of a drain: the request's own (`0` meaning never), else the
/// VIP's default, else never. Nothing else (a client's own wait, say) may
/// decide when established flows are cut.
pub(crate) fn drain_timeout(
    requested_s: Option<u64>,
    vip_default: Option<Duration>,
) -> Result<DrainTimeout, ModelError> {
    Ok(match (requested_s, vip_default) {
        (Some(0), _) => DrainTimeout {
            after: None,
            source: DrainTimeoutSource::Request,
        },
        (Some(s), _) => {
            let after = Duration::from_secs(s);
            if after > MAX_DRAIN_TIMEOUT {
                return Err(ModelError::Invalid(format!(
                    "timeout_s {s} is above a week ({} s)",
                    MAX_DRAIN_TIMEOUT.as_secs()
                )));
            }
            DrainTimeout {
                after: Some(after),
                source: DrainTimeoutSource::Request,
            }
        }
        (None, Some(after)) => DrainTimeout {
            after: Some(after),
            source: DrainTimeoutSource::VipDefault,
        },
        (None, None) => DrainTimeout {
            after: None,
            source: DrainTimeoutSource::None,
        },
    })
}

/// Whether a model of `next` VIPs fits maps sized for `capacity` VIPs at
/// start, coming from `current`: a change may not add past the capacity,
/// but a model already past it (a smaller restart) may still shrink.
pub(crate) fn fits_the_maps(next: usize, current: usize, capacity: u32) -> Result<(), ModelError> {
    if next > capacity as usize && next > current {
        return Err(ModelError::Limit(format!(
            "too many VIPs: the data plane was sized for {capacity} at start (the file's VIPs and room for more); restart lbd to make room for {next}"
        )));
    }
    Ok(())
}

impl Model {
    /// Applies one operator edit at `now`; on error nothing changed.
    /// Returns the drain's effective timeout for a drain.
    pub fn apply(&mut self, edit: &Edit, now: Instant) -> Result<Option<DrainTimeout>, ModelError> {
        match edit {
            Edit::AddVip(vip) => self.add_vip(vip)?,
            Edit::RemoveVip(id) => self.remove_vip(id)?,
            Edit::AddBackend(id, backend) => self.add_backend(id, backend.clone())?,
            Edit::RemoveBackend(id, address) => self.remove_backend(id, *address)?,
            Edit::Enable(id, address) => self.set_admin(id, *address, AdminState::Enabled)?,
            Edit::Maintenance(id, address) => {
                self.set_admin(id, *address, AdminState::Maintenance)?;
            }
            Edit::SetWeight(id, address, weight) => self.set_weight(id, *address, *weight)?,
            Edit::Drain {
                vip,
                backend,
                timeout_s,
            } => {
                let default = self.vip(vip)?.config.drain_timeout;
                let timeout = drain_timeout(*timeout_s, default)?;
                // Draining a draining backend keeps its start and takes the
                // new deadline.
                let since = match self.backend(vip, *backend)?.admin {
                    AdminState::Draining { since, .. } => since,
                    _ => now,
                };
                let admin = AdminState::Draining {
                    since,
                    deadline: timeout.after.map(|t| now + t),
                };
                self.set_admin(vip, *backend, admin)?;
                return Ok(Some(timeout));
            }
        }
        Ok(None)
    }

    /// Ends the drains whose deadline passed at `now` (their backends go to
    /// maintenance: the remaining flows are cut); returns which.
    pub(crate) fn expire_drains(&mut self, now: Instant) -> Vec<(VipId, IpAddr)> {
        let mut expired = Vec::new();
        for (id, vip) in &mut self.vips {
            for (address, backend) in &mut vip.backends {
                if let AdminState::Draining {
                    deadline: Some(deadline),
                    ..
                } = backend.admin
                {
                    if now >= deadline {
                        backend.admin = AdminState::Maintenance;
                        backend.drain_timed_out = true;
                        expired.push((*id, *address));
                    }
                }
            }
        }
        expired
    }
}

/// What going from `before` to `after` does, VIP by VIP (unchanged VIPs
/// are left out).
pub fn plan(before: &Model, after: &Model) -> Vec<VipPlan> {
    let mut ids: Vec<&VipId> = before.vips.keys().chain(after.vips.keys()).collect();
    ids.sort();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        let (old, new) = (before.vips.get(id), after.vips.get(id));
        let change = match (old, new) {
            (None, Some(_)) => PlanChange::Added,
            (Some(_), None) => PlanChange::Removed,
            _ => PlanChange::Changed,
        };
        if change == PlanChange::Changed && old == new {
            continue;
        }
        let ids = numbering(old.into_iter().chain(new));
        let old_table = old.map(|v| v.table(&ids));
        let new_table = new.map(|v| v.table(&ids));
        let shares = |v: Option<&VipModel>, t: &Option<Vec<u32>>| match (v, t) {
            (Some(v), Some(t)) => shares_of(t, &ids, v),
            _ => BTreeMap::new(),
        };
        let moved_fraction = match (&old_table, &new_table) {
            (Some(a), Some(b)) if a.len() == b.len() => Some(maglev::moved_fraction(a, b)),
            // A new table size: every slot is placed afresh.
            (Some(_), Some(_)) => Some(1.0),
            _ => None,
        };
        out.push(VipPlan {
            vip: id.to_string(),
            change,
            before: shares(old, &old_table),
            after: shares(new, &new_table),
            moved_fraction,
        });
    }
    out
}

/// Live flows as the connection table shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowCount {
    /// Flows with recent packets and no FIN/RST seen.
    pub live: u64,
    /// Flows that saw a FIN or RST (ending).
    pub closing: u64,
    /// Flows silent for longer than the idle timeout.
    pub idle: u64,
}

/// Idle timeouts per protocol, for telling live flows from idle ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleTimeouts {
    /// TCP.
    pub tcp: Duration,
    /// UDP.
    pub udp: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;

    fn config() -> Config {
        Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\ntable_size = 1009\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n\
             [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\n",
            "test.toml",
        )
        .unwrap()
    }

    fn vip_id() -> VipId {
        VipId {
            address: "198.18.0.100".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        }
    }

    fn addr(last: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, last])
    }

    fn desired_backend(model: &Model, last: u8) -> DesiredBackend {
        model.desired(&|_| None)[0]
            .backends
            .iter()
            .find(|b| b.address == addr(last))
            .unwrap()
            .clone()
    }

    #[test]
    fn a_drain_deadline_comes_from_the_request_else_the_vip_else_never() {
        let week = MAX_DRAIN_TIMEOUT.as_secs();
        let five = Some(Duration::from_secs(300));
        let t = |requested, default| drain_timeout(requested, default).map(|t| (t.after, t.source));
        assert_eq!(t(None, None), Ok((None, DrainTimeoutSource::None)));
        assert_eq!(t(None, five), Ok((five, DrainTimeoutSource::VipDefault)));
        assert_eq!(
            t(Some(30), five),
            Ok((Some(Duration::from_secs(30)), DrainTimeoutSource::Request))
        );
        assert_eq!(t(Some(0), five), Ok((None, DrainTimeoutSource::Request)));
        assert_eq!(
            t(Some(week), None).map(|(a, _)| a),
            Ok(Some(MAX_DRAIN_TIMEOUT))
        );
        assert!(t(Some(week + 1), None).is_err());
    }

    #[test]
    fn a_drain_keeps_its_start_and_ends_in_maintenance_only_at_its_deadline() {
        let mut model = Model::from_config(&config());
        let start = Instant::now();
        let drain = |timeout_s| Edit::Drain {
            vip: vip_id(),
            backend: addr(11),
            timeout_s,
        };
        let got = model.apply(&drain(None), start).unwrap();
        assert_eq!(got.map(|t| t.after), Some(None));
        let later = start + Duration::from_secs(10);
        model.apply(&drain(Some(5)), later).unwrap();
        let backend = model.backend(&vip_id(), addr(11)).unwrap();
        assert_eq!(
            backend.admin,
            AdminState::Draining {
                since: start,
                deadline: Some(later + Duration::from_secs(5))
            }
        );
        assert!(model.expire_drains(later).is_empty());
        let cut = model.expire_drains(later + Duration::from_secs(5));
        assert_eq!(cut, vec![(vip_id(), addr(11))]);
        let backend = model.backend(&vip_id(), addr(11)).unwrap();
        assert_eq!(backend.admin, AdminState::Maintenance);
        assert!(backend.drain_timed_out);
        // Any admin change afterwards forgets the timeout.
        model
            .apply(&Edit::Enable(vip_id(), addr(11)), later)
            .unwrap();
        assert!(!model.backend(&vip_id(), addr(11)).unwrap().drain_timed_out);
        // Refusals change nothing.
        let before = model.clone();
        assert!(model.apply(&drain(Some(8 * 86_400)), later).is_err());
        assert!(model
            .apply(&Edit::Enable(vip_id(), addr(99)), later)
            .is_err());
        assert_eq!(model, before);
    }

    #[test]
    fn the_maps_refuse_growth_past_their_size_but_not_shrinking() {
        assert!(fits_the_maps(16, 15, 16).is_ok());
        assert!(matches!(
            fits_the_maps(17, 16, 16),
            Err(ModelError::Limit(_))
        ));
        assert!(fits_the_maps(17, 18, 16).is_ok());
    }

    #[test]
    fn admin_states_and_health_map_to_weight_and_alive() {
        let mut model = Model::from_config(&config());
        let id = vip_id();
        let b = desired_backend(&model, 11);
        assert_eq!(
            (b.weight, b.alive),
            (100, true),
            "unknown health counts as up"
        );

        model
            .set_admin(
                &id,
                addr(11),
                AdminState::Draining {
                    since: Instant::now(),
                    deadline: None,
                },
            )
            .unwrap();
        let b = desired_backend(&model, 11);
        assert_eq!((b.weight, b.alive), (0, true), "draining keeps its flows");

        model
            .set_admin(&id, addr(11), AdminState::Maintenance)
            .unwrap();
        let b = desired_backend(&model, 11);
        assert_eq!(
            (b.weight, b.alive),
            (0, false),
            "maintenance is out at once"
        );

        model.set_admin(&id, addr(11), AdminState::Enabled).unwrap();
        assert!(model.set_health(&id, addr(11), Health::Down));
        let b = desired_backend(&model, 11);
        assert_eq!(
            (b.weight, b.alive),
            (0, false),
            "down: flows hashed elsewhere"
        );
    }

    #[test]
    fn all_down_drops_or_fails_open_as_configured() {
        let mut model = Model::from_config(&config());
        let id = vip_id();
        for last in [11, 12, 13] {
            model.set_health(&id, addr(last), Health::Down);
        }
        assert!(model.vip(&id).unwrap().all_down());
        assert!(model.desired(&|_| None)[0]
            .backends
            .iter()
            .all(|b| !b.alive && b.weight == 0));

        model.vips.get_mut(&id).unwrap().config.on_all_down = AllDown::KeepLast;
        assert!(model.desired(&|_| None)[0]
            .backends
            .iter()
            .all(|b| b.alive && b.weight == 100));

        model.set_health(&id, addr(12), Health::Up);
        let desired = model.desired(&|_| None);
        let alive: Vec<IpAddr> = desired[0]
            .backends
            .iter()
            .filter(|b| b.alive)
            .map(|b| b.address)
            .collect();
        assert_eq!(alive, vec![addr(12)], "one healthy backend: only it");
    }

    #[test]
    fn bad_operations_change_nothing() {
        let mut model = Model::from_config(&config());
        let before = model.clone();
        let id = vip_id();
        let mut other = id;
        other.port = 81;
        assert_eq!(model.remove_vip(&other), Err(ModelError::NoVip(other)));
        assert!(matches!(
            model.add_backend(&id, BackendConfig::new(addr(11))),
            Err(ModelError::BackendExists { .. })
        ));
        assert!(matches!(
            model.add_backend(&id, BackendConfig::new("2001:2::11".parse().unwrap())),
            Err(ModelError::Invalid(_))
        ));
        assert!(matches!(
            model.set_weight(&id, addr(11), 10_001),
            Err(ModelError::Invalid(_))
        ));
        assert!(matches!(
            model.set_weight(&id, addr(99), 1),
            Err(ModelError::NoBackend { .. })
        ));
        assert_eq!(model, before);
    }

    #[test]
    fn limits_refuse_and_change_nothing() {
        use crate::config::{MAX_BACKENDS_PER_VIP, MAX_BACKENDS_TOTAL, MAX_VIPS};
        let backend = |vip: usize, i: usize| {
            BackendConfig::new(IpAddr::from([
                10,
                1 + vip as u8,
                (i / 256) as u8,
                (i % 256) as u8,
            ]))
        };
        let vip = |v: usize, backends: usize| {
            let mut config = VipConfig::new(IpAddr::from([198, 18, 1, v as u8]), 80, Protocol::Tcp);
            config.backends = (0..backends).map(|i| backend(v, i)).collect();
            config
        };
        // Backends per VIP, when a VIP is added with them and one by one.
        let mut model = Model::default();
        let err = model
            .add_vip(&vip(0, MAX_BACKENDS_PER_VIP + 1))
            .unwrap_err();
        assert_eq!(
            err,
            ModelError::Limit("too many backends: at most 1000 per VIP are allowed".into())
        );
        model.add_vip(&vip(0, MAX_BACKENDS_PER_VIP)).unwrap();
        let id = VipId::of(&vip(0, 0));
        let before = model.clone();
        let err = model
            .add_backend(&id, backend(0, MAX_BACKENDS_PER_VIP))
            .unwrap_err();
        assert!(matches!(err, ModelError::Limit(_)), "{err}");
        assert_eq!(model, before);

        // In all: four full VIPs and 95 more fill the map.
        for v in 1..4 {
            model.add_vip(&vip(v, MAX_BACKENDS_PER_VIP)).unwrap();
        }
        let rest = MAX_BACKENDS_TOTAL - 4 * MAX_BACKENDS_PER_VIP;
        let err = model.add_vip(&vip(4, rest + 1)).unwrap_err();
        assert_eq!(
            err,
            ModelError::Limit(
                "too many backends: 4096 in all, at most 4095 are allowed across all VIPs".into()
            )
        );
        model.add_vip(&vip(4, rest)).unwrap();
        assert_eq!(model.backend_count(), MAX_BACKENDS_TOTAL);
        let before = model.clone();
        let last = VipId::of(&vip(4, 0));
        let err = model.add_backend(&last, backend(4, rest)).unwrap_err();
        assert!(matches!(err, ModelError::Limit(_)), "{err}");
        // Other errors still come first.
        let mut nowhere = last;
        nowhere.port = 81;
        assert_eq!(
            model.add_backend(&nowhere, backend(4, rest)),
            Err(ModelError::NoVip(nowhere))
        );
        assert_eq!(model, before);

        // VIPs.
        let mut model = Model::default();
        for v in 0..MAX_VIPS {
            let mut config = vip(0, 0);
            config.port = 1 + v as u16;
            model.add_vip(&config).unwrap();
        }
        let mut config = vip(0, 0);
        config.port = 1 + MAX_VIPS as u16;
        assert_eq!(
            model.add_vip(&config),
            Err(ModelError::Limit(
                "too many VIPs: at most 256 are allowed".into()
            ))
        );
        assert_eq!(model.vips.len(), MAX_VIPS);
    }

    #[test]
    fn a_plan_shows_shares_before_and_after_and_what_moves() {
        let before = Model::from_config(&config());
        let mut after = before.clone();
        after
            .add_backend(&vip_id(), BackendConfig::new(addr(14)))
            .unwrap();
        let plan = plan(&before, &after);
        assert_eq!(plan.len(), 1);
        let vip = &plan[0];
        assert_eq!(vip.change, PlanChange::Changed);
        assert!((vip.before[&addr(11)] - 1.0 / 3.0).abs() < 0.01);
        assert!((vip.after[&addr(14)] - 0.25).abs() < 0.01);
        // Ideally a quarter of the slots move (to the new backend); a small
        // table (1,009 slots) churns a little more.
        let moved = vip.moved_fraction.unwrap();
        assert!(moved > 0.24 && moved < 0.35, "{moved}");
        assert!(plan_is_empty(&before, &before));
    }

    #[test]
    fn a_new_or_removed_vip_moves_no_flow_between_backends() {
        let empty = Model::default();
        let one = Model::from_config(&config());
        let added = plan(&empty, &one);
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].change, PlanChange::Added);
        assert_eq!(added[0].moved_fraction, None);
        assert!(added[0].before.is_empty());
        assert_eq!(added[0].after.len(), 3);
        let removed = plan(&one, &empty);
        assert_eq!(removed[0].change, PlanChange::Removed);
        assert_eq!(removed[0].moved_fraction, None);
        // On the wire: the field is absent, the change a lower-case name.
        let json = serde_json::to_value(&added[0]).unwrap();
        assert_eq!(json["change"], "added");
        assert!(json.get("moved_fraction").is_none(), "{json}");
        let json = serde_json::to_value(
            &plan(&one, &{
                let mut m = one.clone();
                m.set_weight(&vip_id(), addr(11), 5).unwrap();
                m
            })[0],
        )
        .unwrap();
        assert_eq!(json["change"], "changed");
        assert!(json["moved_fraction"].as_f64().is_some(), "{json}");
    }

    #[test]
    fn admin_states_have_wire_names() {
        let draining = AdminState::Draining {
            since: Instant::now(),
            deadline: None,
        };
        assert_eq!(draining.state(), BackendState::Draining);
        for state in BackendState::ALL {
            let json = serde_json::to_value(state).unwrap();
            assert_eq!(json, state.as_str());
            assert_eq!(state.to_string(), state.as_str());
            assert_eq!(serde_json::from_value::<BackendState>(json).unwrap(), state);
        }
        let error = serde_json::from_str::<BackendState>("\"drained\"").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("expected one of `enabled`, `draining`, `maintenance`"),
            "{error}"
        );
    }

    fn plan_is_empty(a: &Model, b: &Model) -> bool {
        plan(a, b).is_empty()
    }

    #[test]
    fn a_reload_keeps_admin_state_and_health_and_drops_runtime_additions() {
        let mut model = Model::from_config(&config());
        let id = vip_id();
        model
            .set_admin(&id, addr(12), AdminState::Maintenance)
            .unwrap();
        model.set_health(&id, addr(13), Health::Down);
        model
            .add_backend(&id, BackendConfig::new(addr(14)))
            .unwrap();
        model.set_weight(&id, addr(11), 5).unwrap();
        let reloaded = model.reloaded(&config());
        let vip = reloaded.vip(&id).unwrap();
        assert_eq!(vip.backends[&addr(12)].admin, AdminState::Maintenance);
        assert_eq!(vip.backends[&addr(13)].health, Health::Down);
        assert!(
            !vip.backends.contains_key(&addr(14)),
            "runtime backend undone"
        );
        assert_eq!(
            vip.backends[&addr(11)].config.weight,
            100,
            "runtime weight undone"
        );
        let dumped = model.to_config(&config());
        assert_eq!(dumped.vips[0].backends.len(), 4);
    }

    #[test]
    fn nat_addresses_and_vip_addresses_stay_apart_at_run_time() {
        let mut model = Model::from_config(&config());
        let nat = crate::config::NatConfig {
            source_ipv4: Some(addr(100)),
            ..Default::default()
        };
        // A NAT VIP whose (node) NAT address is an existing VIP's address.
        let mut vip = VipConfig::new(addr(101), 80, Protocol::Tcp);
        vip.forwarding = lb_common::Mode::Nat;
        vip.nat = nat.vip_nat(vip.address, None);
        let error = model.add_vip(&vip).unwrap_err().to_string();
        assert!(
            error.contains("NAT address 198.18.0.100 is the address of VIP"),
            "{error}"
        );
        // Its own NAT address is fine; then no VIP may take that address.
        vip.nat = nat.vip_nat(vip.address, Some(addr(50)));
        model.add_vip(&vip).unwrap();
        let taken = VipConfig::new(addr(50), 443, Protocol::Tcp);
        let error = model.add_vip(&taken).unwrap_err().to_string();
        assert!(
            error.contains("198.18.0.50 is the NAT address of VIP"),
            "{error}"
        );
    }

    #[test]
    fn backends_take_a_mac_or_a_port_as_their_vip_forwards() {
        let mut model = Model::from_config(&config());
        let mut with_port = BackendConfig::new(addr(14));
        with_port.port = Some(8080);
        assert!(matches!(
            model.add_backend(&vip_id(), with_port.clone()),
            Err(ModelError::Invalid(_))
        ));
        let mut vip = VipConfig::new(addr(101), 80, Protocol::Tcp);
        vip.forwarding = lb_common::Mode::Nat;
        vip.nat = Some(crate::config::VipNat {
            source: addr(50),
            own_source: true,
            port_min: 1024,
            port_max: 65_535,
        });
        model.add_vip(&vip).unwrap();
        let nat_id = VipId::of(&vip);
        model.add_backend(&nat_id, with_port).unwrap();
        let mut with_mac = BackendConfig::new(addr(15));
        with_mac.mac = Some(crate::mac::Mac([2, 0, 0, 0, 0, 0x15]));
        assert!(matches!(
            model.add_backend(&nat_id, with_mac),
            Err(ModelError::Invalid(_))
        ));
    }
}
