//! The model's changes, each checked before anything moves: VIPs and
//! backends added and removed, admin state, weight, health, reloads.

use super::*;

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

    /// Whether VIP `id` fails open now, to tell after a change whether
    /// it stopped (see [`VipModel::settle_fail_open_holds`]).
    fn fails_open(&self, id: &VipId) -> bool {
        self.vips.get(id).is_some_and(VipModel::fails_open)
    }

    /// Settles VIP `id`'s fail-open holds after a change made when it
    /// failed open or not (`was_failing_open`).
    fn settle_fail_open_holds(&mut self, id: &VipId, was_failing_open: bool) {
        if let Some(vip) = self.vips.get_mut(id) {
            vip.settle_fail_open_holds(was_failing_open);
        }
    }

    /// Holds backend `address` of VIP `id` as one that may have taken
    /// flows only because its VIP failed open (see [`FailOpenHold`]):
    /// for a restart that cannot tell whether it did. False if there is
    /// no such backend.
    pub(crate) fn hold_as_if_failing_open(&mut self, id: &VipId, address: IpAddr) -> bool {
        match self.backend_mut(id, address) {
            Ok(backend) => {
                backend.fail_open_hold = Some(FailOpenHold::Pending);
                true
            }
            Err(_) => false,
        }
    }

    /// Starts the grace of fail-open holds that have none yet (at `now`)
    /// and ends those whose grace passed; returns the backends whose hold
    /// ended while it kept them alive (their established flows move now).
    pub(crate) fn time_fail_open_holds(&mut self, now: Instant) -> Vec<(VipId, IpAddr)> {
        let mut ended = Vec::new();
        for (id, vip) in &mut self.vips {
            let grace = FailOpenHold::grace(&vip.config);
            for (address, backend) in &mut vip.backends {
                match backend.fail_open_hold {
                    Some(FailOpenHold::Pending) => {
                        backend.fail_open_hold = Some(FailOpenHold::Until(now + grace));
                    }
                    Some(FailOpenHold::Until(deadline)) if now >= deadline => {
                        if backend.held_after_fail_open() {
                            ended.push((*id, *address));
                        }
                        backend.fail_open_hold = None;
                    }
                    _ => {}
                }
            }
        }
        ended
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
        for backend in &config.backends {
            self.not_an_own_address(backend.address)?;
            if config.nat.is_some_and(|n| n.source == backend.address) {
                return Err(ModelError::Invalid(format!(
                    "backend {} is the VIP's NAT address; a backend cannot be an address of this load balancer",
                    backend.address
                )));
            }
        }
        let own = std::iter::once(config.address).chain(config.nat.map(|n| n.source));
        for address in own {
            let served = self
                .vips
                .iter()
                .find(|(_, v)| v.backends.contains_key(&address));
            if let Some((other, _)) = served {
                return Err(ModelError::Invalid(format!(
                    "{address} is a backend of VIP {other}; this load balancer cannot take a backend's address"
                )));
            }
        }
        self.vips.insert(id, VipModel::from_config(config, true));
        Ok(())
    }

    /// As in the file: no NAT address is a VIP's address (replies to it
    /// would be taken for the VIP's traffic), whichever comes second.
    fn nat_sources_are_not_vips(&self, config: &VipConfig) -> Result<(), ModelError> {
        if let Some(nat) = config.nat {
            // Its own address too, as the file refuses it.
            if nat.source == config.address {
                let named = if nat.own_source {
                    "nat_source".to_owned()
                } else {
                    let family = if nat.source.is_ipv4() { "ipv4" } else { "ipv6" };
                    format!("the node's [nat] source_{family}")
                };
                return Err(ModelError::Invalid(format!(
                    "{named} {} is the VIP's own address; a NAT address must be an address of its own",
                    nat.source
                )));
            }
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

    /// As in the file: a backend is no address of this node (a VIP's or a
    /// NAT address), or its packets would come back here instead of
    /// reaching a server.
    fn not_an_own_address(&self, backend: IpAddr) -> Result<(), ModelError> {
        for (other, v) in &self.vips {
            let what = if other.address == backend {
                "the address"
            } else if v.config.nat.is_some_and(|n| n.source == backend) {
                "the NAT address"
            } else {
                continue;
            };
            return Err(ModelError::Invalid(format!(
                "backend {backend} is {what} of VIP {other}; a backend cannot be an address of this load balancer"
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
        let was_failing_open = self.fails_open(id);
        let vip = self.vip(id)?;
        if vip.backends.contains_key(&config.address) {
            return Err(ModelError::BackendExists {
                vip: *id,
                backend: config.address,
            });
        }
        // The file's rule (family, 4in6 in the tunnel modes, not the VIP's
        // own address), then no address of this node.
        crate::config::value::backend_address(config.address, id.address, vip.config.forwarding)
            .map_err(|e| ModelError::Invalid(format!("backend {e}")))?;
        self.not_an_own_address(config.address)?;
        let vip = self.vip_mut(id)?;
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
        if config.weight > 0 {
            vip.room_for_one_more_weighted()?;
        }
        let awaiting_checks = super::vip::is_checked(&vip.config, &config);
        vip.backends.insert(
            config.address,
            BackendModel {
                config,
                admin: AdminState::Enabled,
                health: Health::Unknown,
                runtime: true,
                drain_timed_out: false,
                awaiting_checks,
                fail_open_hold: None,
            },
        );
        self.settle_fail_open_holds(id, was_failing_open);
        Ok(())
    }

    /// Removes a backend: its established flows are hashed elsewhere.
    pub fn remove_backend(&mut self, id: &VipId, address: IpAddr) -> Result<(), ModelError> {
        let was_failing_open = self.fails_open(id);
        self.vip_mut(id)?
            .backends
            .remove(&address)
            .ok_or(ModelError::NoBackend {
                vip: *id,
                backend: address,
            })?;
        self.settle_fail_open_holds(id, was_failing_open);
        Ok(())
    }

    /// Sets a backend's admin state.
    pub(crate) fn set_admin(
        &mut self,
        id: &VipId,
        address: IpAddr,
        admin: AdminState,
    ) -> Result<(), ModelError> {
        let was_failing_open = self.fails_open(id);
        let backend = self.backend_mut(id, address)?;
        backend.admin = admin;
        backend.drain_timed_out = false;
        self.settle_fail_open_holds(id, was_failing_open);
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
        let vip = self.vip(id)?;
        let weighted_before = self.backend(id, address)?.config.weight > 0;
        if weight > 0 && !weighted_before {
            vip.room_for_one_more_weighted()?;
        }
        let was_failing_open = self.fails_open(id);
        self.backend_mut(id, address)?.config.weight = weight;
        self.settle_fail_open_holds(id, was_failing_open);
        Ok(())
    }

    /// Records a backend's health; false if there is no such backend.
    /// One that comes up may end its VIP's failing open: the backends
    /// that took flows only for that keep them (see [`FailOpenHold`]).
    pub(crate) fn set_health(&mut self, id: &VipId, address: IpAddr, health: Health) -> bool {
        let was_failing_open = self.fails_open(id);
        match self.backend_mut(id, address) {
            Ok(backend) => backend.health = health,
            Err(_) => return false,
        }
        self.settle_fail_open_holds(id, was_failing_open);
        true
    }

    /// This model with every backend still waiting for its first checks
    /// taken as up: what a dry run plans (it assumes the checks pass, as
    /// it assumes new backends' MACs resolve).
    pub(crate) fn assuming_checks_pass(&self) -> Model {
        let mut next = self.clone();
        for backend in next.vips.values_mut().flat_map(|v| v.backends.values_mut()) {
            backend.awaiting_checks = false;
        }
        next
    }

    /// Enabled backends of `self` that wait for their first checks and
    /// did not so in `before` (new, or enabled since): for the answer to
    /// the change that brought them.
    pub(crate) fn newly_awaiting_checks(&self, before: &Model) -> Vec<String> {
        let waits = |b: &BackendModel| b.awaits_first_check() && b.admin == AdminState::Enabled;
        let mut notes = Vec::new();
        for (id, vip) in &self.vips {
            for (address, backend) in &vip.backends {
                let waited = before
                    .vips
                    .get(id)
                    .and_then(|v| v.backends.get(address))
                    .is_some_and(waits);
                if waits(backend) && !waited {
                    let rise = backend
                        .config
                        .health
                        .as_ref()
                        .map_or(vip.config.health.rise, |h| h.rise);
                    notes.push(format!(
                        "{id} backend {address}: takes new flows once its checks pass ({rise} in a row)"
                    ));
                }
            }
        }
        notes
    }

    /// The model a reload of `config` gives: the file's VIPs and backends,
    /// keeping the admin state, health, drain outcome and fail-open hold
    /// of backends that stay; a VIP the reload stops failing open holds
    /// the backends that took flows only for that (see [`FailOpenHold`]).
    /// A backend the file no longer checks (`check = "none"`) is
    /// taken as up, as an unchecked one is: no check is left to bring it
    /// back. A checked backend new to lbd waits for its checks.
    pub fn reloaded(&self, config: &Config) -> Model {
        let mut next = Model::from_config(config);
        for (id, vip) in &mut next.vips {
            let old = self.vips.get(id);
            let vip_config = vip.config.clone();
            for (address, backend) in &mut vip.backends {
                let checked = super::vip::is_checked(&vip_config, &backend.config);
                match old.and_then(|o| o.backends.get(address)) {
                    Some(previous) => {
                        backend.admin = previous.admin;
                        backend.drain_timed_out = previous.drain_timed_out;
                        if checked {
                            backend.health = previous.health;
                            backend.awaiting_checks = previous.awaiting_checks;
                            backend.fail_open_hold = previous.fail_open_hold;
                        }
                    }
                    None => backend.awaiting_checks = checked,
                }
            }
            vip.settle_fail_open_holds(old.is_some_and(VipModel::fails_open));
        }
        next
    }

    /// The running configuration: `base`'s node settings with these VIPs,
    /// in `base`'s order (the file's), those it does not have after them.
    /// The order is the file's meaning too: a `[[vrrp]]` without
    /// `addresses` takes the VIP addresses of the first VIP's family.
    pub(crate) fn to_config(&self, base: &Config) -> Config {
        let place: BTreeMap<VipId, usize> = base
            .vips
            .iter()
            .enumerate()
            .map(|(i, v)| (VipId::of(v), i))
            .collect();
        let mut vips: Vec<(&VipId, &VipModel)> = self.vips.iter().collect();
        // Stable: the VIPs `base` does not have keep their own order.
        vips.sort_by_key(|(id, _)| place.get(id).copied().unwrap_or(usize::MAX));
        let mut config = base.clone();
        config.vips = vips
            .into_iter()
            .map(|(_, v)| {
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

/// Whether a model of `next` VIPs fits maps sized for `capacity` VIPs at
/// start, coming from `current`: a change may not add past the capacity,
/// but a model already past it (a smaller restart) may still shrink.
pub(crate) fn fits_the_maps(next: usize, current: usize, capacity: u32) -> Result<(), ModelError> {
    if next > capacity as usize && next > current {
        return Err(ModelError::Limit(format!(
            "too many VIPs: the data plane was sized for {capacity} at start (the file's VIPs and room for more); put them in the file and restart lbd to make room for {next} (the maps are made anew then: the connection table is not adopted)"
        )));
    }
    Ok(())
}
