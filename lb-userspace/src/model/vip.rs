//! One VIP's model as the data plane and a plan see it: its desired
//! state, the table its backends make, and the shares a change moves.

use super::*;
use crate::plan::{moved_by_rehash, AffinityChange};

/// Whether `backend` of `vip` has health checks (its own `check`, or the
/// VIP's): an unchecked backend's health stays unknown and counts as up.
pub(crate) fn is_checked(vip: &VipConfig, backend: &crate::config::BackendConfig) -> bool {
    let check = backend
        .health
        .as_ref()
        .map_or(vip.health.check, |h| h.check);
    check != crate::config::CheckType::None
}

impl VipModel {
    /// Whether one more backend may take a weight: as in the file, every
    /// backend with a weight keeps a slot of the VIP's Maglev table.
    pub(super) fn room_for_one_more_weighted(&self) -> Result<(), ModelError> {
        let weighted = self
            .backends
            .values()
            .filter(|b| b.config.weight > 0)
            .count();
        crate::config::value::weighted_backends_fit(weighted + 1, self.config.table_size)
            .map_err(|e| ModelError::Invalid(e.to_string()))
    }

    /// A VIP as `config` gives it, every backend enabled and its health
    /// unknown; `runtime` marks one added at run time (a reload removes
    /// it), whose checked backends wait for their checks.
    pub(super) fn from_config(config: &VipConfig, runtime: bool) -> Self {
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
                        awaiting_checks: runtime && is_checked(config, b),
                        fail_open_hold: None,
                        slow_start: None,
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

    /// True when the VIP has backends meant to take flows, that were
    /// checked at least once, and every one of them is down. A backend
    /// still awaiting its first check (joined at run time) is left out:
    /// it decides nothing until its check does, so a VIP failing open
    /// (`on_all_down = "keep"`) keeps failing open while one joins.
    pub fn all_down(&self) -> bool {
        let mut candidates = self
            .backends
            .values()
            .filter(|b| b.admin == AdminState::Enabled && b.config.weight > 0)
            .filter(|b| !b.awaits_first_check())
            .peekable();
        candidates.peek().is_some() && candidates.all(|b| b.health == Health::Down)
    }

    /// Whether the VIP fails open (`on_all_down = "keep"` and every backend
    /// [`Self::all_down`]): its down backends take new flows.
    pub(super) fn fails_open(&self) -> bool {
        self.config.on_all_down == AllDown::KeepLast && self.all_down()
    }

    /// Brings the backends' [`FailOpenHold`]s up to date after a change,
    /// `was_failing_open` saying whether the VIP failed open before it.
    /// A VIP that stops failing open holds every backend that took flows
    /// only for that (not up by its checks, not in maintenance): they
    /// keep their established flows, as a drain does, rather than lose
    /// them for another backend's recovery. A VIP failing open needs no
    /// hold (all take flows); a backend that passes its checks or that
    /// the operator puts in maintenance has none.
    pub(super) fn settle_fail_open_holds(&mut self, was_failing_open: bool) {
        let failing_open = self.fails_open();
        for backend in self.backends.values_mut() {
            // A full backend keeps its flows for being full: no hold.
            backend.fail_open_hold = if failing_open
                || matches!(backend.health, Health::Up | Health::Full)
                || backend.admin == AdminState::Maintenance
            {
                None
            } else if was_failing_open && !backend.counts_as_up() {
                Some(FailOpenHold::Pending)
            } else {
                backend.fail_open_hold
            };
        }
    }

    /// Whether a new flow to the VIP finds a backend: an enabled, weighted
    /// backend that is up (or not decided yet for one in service before),
    /// or any of them when the VIP fails open; as [`Self::desired`] gives
    /// them weights. A VIP whose backends all await their first checks
    /// finds none, `on_all_down` or not.
    /// (BGP announcement also counts draining backends, and leaves out
    /// dsr-l2 backends without a MAC: see [`Self::should_announce`].)
    pub fn can_serve(&self) -> bool {
        let fail_open = self.fails_open();
        self.backends.values().any(|b| {
            b.admin == AdminState::Enabled && b.config.weight > 0 && (b.counts_as_up() || fail_open)
        })
    }

    /// Whether the node should keep attracting the VIP's traffic (BGP),
    /// with backends' MACs from the config or else from `mac_of`: a
    /// backend the data plane sends packets to
    /// ([`DesiredBackend::can_take_packets`], the predicate the applied
    /// state and so `lbd_vip_serving_backends` follow: a dsr-l2 backend
    /// only once its MAC is known) takes new flows ([`Self::can_serve`]
    /// less the backends without a MAC), or is draining and not down,
    /// still carrying established flows until it is removed or its drain
    /// deadline cuts them, or is full ([`Health::Full`]: it serves its
    /// established flows and refuses new ones). Withdrawing then would move those flows off
    /// every node at once (they all see the same backends), cutting what
    /// the drain is meant to keep. A dsr-l2 VIP whose healthy backends
    /// have no MAC would drop every packet: it is not announced.
    pub fn should_announce(&self, mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>) -> bool {
        let desired = self.desired(VipId::of(&self.config), mac_of);
        desired.backends.iter().any(|d| {
            d.can_take_packets(desired.mode)
                && (d.weight > 0
                    || self.backends.get(&d.address).is_some_and(|b| {
                        (matches!(b.admin, AdminState::Draining { .. })
                            && !b.drain_timed_out
                            && b.health != Health::Down)
                            || (b.admin == AdminState::Enabled && b.health == Health::Full)
                    }))
        })
    }

    /// Backends that pass their checks but that the data plane sends
    /// nothing for want of a MAC (a dsr-l2 VIP's whose MAC is neither
    /// configured nor found by `mac_of`), for a warning: they take no
    /// flows, and the VIP is not announced for them.
    pub(crate) fn up_without_mac(&self, mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>) -> Vec<IpAddr> {
        if self.config.forwarding != lb_common::Mode::DsrL2 {
            return Vec::new();
        }
        let desired = self.desired(VipId::of(&self.config), mac_of);
        desired
            .backends
            .iter()
            .filter(|d| d.alive && !d.can_take_packets(desired.mode))
            .filter(|d| {
                self.backends
                    .get(&d.address)
                    .is_some_and(|b| b.health == Health::Up)
            })
            .map(|d| d.address)
            .collect()
    }

    /// Whether a backend that is not a backup takes new flows, with MACs
    /// from the config or else from `mac_of` (`fail_open`: the VIP fails
    /// open, so its down backends count): while one does, the backups
    /// (`BackendConfig::backup`) take none. A dsr-l2 backend whose MAC is
    /// not known takes nothing, so it keeps no backup out.
    fn primaries_take_new_flows(
        &self,
        fail_open: bool,
        mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>,
    ) -> bool {
        self.backends.values().any(|b| {
            !b.config.backup
                && b.admin == AdminState::Enabled
                && b.config.weight > 0
                && (b.counts_as_up() || fail_open)
                && (self.config.forwarding != lb_common::Mode::DsrL2
                    || b.config.mac.is_some()
                    || mac_of(b.config.address).is_some())
        })
    }

    /// Whether the VIP's backups take its new flows now: it has backups,
    /// one of them takes new flows, and no other backend can (each is
    /// down, draining, in maintenance, full or of weight 0). For the
    /// status and the metrics: a VIP running on its backups has lost every
    /// backend meant to serve it.
    pub fn on_backups(&self, mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>) -> bool {
        let desired = self.desired(VipId::of(&self.config), mac_of);
        desired.backends.iter().any(|d| {
            d.weight > 0
                && self
                    .backends
                    .get(&d.address)
                    .is_some_and(|b| b.config.backup)
        })
    }

    /// How the data plane should treat each backend.
    pub fn desired(&self, id: VipId, mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>) -> DesiredVip {
        let fail_open = self.fails_open();
        // Backups stand by (alive: the flows they took stay on them, as a
        // drain keeps its flows) while another backend takes new flows.
        let backups_stand_by = self.primaries_take_new_flows(fail_open, mac_of);
        let ramp_steps = self.ramp_steps();
        DesiredVip {
            id,
            table_size: self.config.table_size,
            mode: self.config.forwarding,
            affinity: self.config.affinity,
            nat: self.config.nat,
            backends: self
                .backends
                .values()
                .map(|b| {
                    let up = b.counts_as_up() || fail_open;
                    // Held, or full (it refuses new sessions for capacity
                    // and serves the ones it has): keeps its established
                    // flows, takes no new ones, as a drain does.
                    let held = !fail_open && b.held_after_fail_open();
                    let full = b.health == Health::Full;
                    DesiredBackend {
                        address: b.config.address,
                        mac: b
                            .config
                            .mac
                            .map(Mac::octets)
                            .or_else(|| mac_of(b.config.address)),
                        port: b.config.port,
                        weight: if up
                            && b.admin == AdminState::Enabled
                            && !(b.config.backup && backups_stand_by)
                        {
                            self.ramped_weight(b, ramp_steps)
                        } else {
                            0
                        },
                        alive: (up || held || full) && b.admin != AdminState::Maintenance,
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
        let (before, after) = (shares(old, &old_table), shares(new, &new_table));
        let affinity = match (old, new) {
            (Some(a), Some(b)) => AffinityChange::of(a.config.affinity, b.config.affinity),
            _ => None,
        };
        let moved_fraction = match (&old_table, &new_table, affinity) {
            (Some(_), Some(_), Some(_)) => Some(moved_by_rehash(&before, &after)),
            (Some(a), Some(b), None) => Some(crate::reconcile::moved_fraction(a, b)),
            _ => None,
        };
        out.push(VipPlan {
            vip: id.to_string(),
            change,
            before,
            after,
            moved_fraction,
            affinity,
            slow_start: None,
        });
    }
    out
}

#[cfg(test)]
mod announce_tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn one_backend() -> (Model, VipId, IpAddr) {
        let config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n",
            "test.toml",
        )
        .unwrap();
        let model = Model::from_config(&config);
        let id = *model.vips.keys().next().unwrap();
        (model, id, "198.18.0.11".parse().unwrap())
    }

    #[test]
    fn a_draining_backend_keeps_the_vip_announced_until_its_drain_ends() {
        let (mut model, id, backend) = one_backend();
        let start = Instant::now();
        let drain = Edit::Drain {
            vip: id,
            backend,
            timeout_s: Some(5),
        };
        model.apply(&drain, start).unwrap();
        let vip = model.vip(&id).unwrap();
        assert!(!vip.can_serve(), "no new flow finds a backend");
        assert!(
            vip.should_announce(&|_| None),
            "its established flows still flow"
        );
        // A draining backend that fails its checks carries nothing.
        let mut down = model.clone();
        down.set_health(&id, backend, Health::Down);
        assert!(!down.vip(&id).unwrap().should_announce(&|_| None));
        // The deadline cuts the flows: withdrawn.
        model.expire_drains(start + Duration::from_secs(5));
        assert!(!model.vip(&id).unwrap().should_announce(&|_| None));
        // Maintenance is out at once.
        let (mut model, id, backend) = one_backend();
        model.apply(&Edit::Maintenance(id, backend), start).unwrap();
        assert!(!model.vip(&id).unwrap().should_announce(&|_| None));
    }

    /// A draining dsr-l2 backend without a MAC carries no flows (the data
    /// plane sends it nothing): the VIP is not announced for it.
    #[test]
    fn a_draining_backend_without_a_mac_keeps_nothing_announced() {
        let (mut model, id, backend) = one_backend();
        let start = Instant::now();
        let drain = Edit::Drain {
            vip: id,
            backend,
            timeout_s: None,
        };
        model.apply(&drain, start).unwrap();
        let vip = model.vips.get_mut(&id).unwrap();
        vip.backends.get_mut(&backend).unwrap().config.mac = None;
        assert!(!vip.should_announce(&|_| None));
        assert!(vip.should_announce(&|_| Some([2, 0, 0, 0, 0, 0x11])));
    }
}
