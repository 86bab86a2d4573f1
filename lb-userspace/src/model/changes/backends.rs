//! Backends changed at run time: added (checked as the file would be),
//! removed, and their admin state, weight and health set.

use std::net::IpAddr;

use super::super::{AdminState, BackendModel, Model, ModelError};
use crate::{config::BackendConfig, health::Health, reconcile::VipId};

impl Model {
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
        let awaiting_checks = super::super::vip::is_checked(&vip.config, &config);
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
                slow_start: None,
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
    /// that took flows only for that keep them (see
    /// [`FailOpenHold`](super::super::FailOpenHold)).
    pub(crate) fn set_health(&mut self, id: &VipId, address: IpAddr, health: Health) -> bool {
        let was_failing_open = self.fails_open(id);
        match self.backend_mut(id, address) {
            Ok(backend) => backend.health = health,
            Err(_) => return false,
        }
        self.settle_fail_open_holds(id, was_failing_open);
        true
    }
}

fn weight_error(weight: u32) -> ModelError {
    ModelError::Invalid(format!(
        "weight {weight} is out of range 0..={}",
        crate::config::MAX_WEIGHT
    ))
}
