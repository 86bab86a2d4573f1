//! One VIP's or one backend's facts, as requests check them or ask for
//! them: a VIP's mode and running config, a backend's admin state (from
//! the model alone) and its tracked flows.

use std::net::IpAddr;

use crate::{
    daemon::engine::Engine,
    model::{BackendState, FlowCount, Model, ModelError},
    vip_id::VipId,
};

/// Backend `address`'s admin state in `model` (None: VIP `id` has no such
/// backend, or there is no such VIP). The model holds it: no census.
fn admin_state_of(model: &Model, id: &VipId, address: IpAddr) -> Option<BackendState> {
    model.backend(id, address).ok().map(|b| b.admin.state())
}

impl Engine {
    /// Backend `address` of VIP `id`'s admin state (None: no such
    /// backend), for a state change asked only `from` a state: read from
    /// the model, unlike [`Self::status`], whose census would walk the
    /// whole connection table in the loop's step.
    pub(crate) fn backend_state(&self, id: &VipId, address: IpAddr) -> Option<BackendState> {
        admin_state_of(&self.model, id, address)
    }

    /// VIP `id`'s forwarding mode, None if there is no such VIP (a
    /// request naming it is then answered as one for a missing VIP).
    pub(crate) fn vip_mode(&self, id: &VipId) -> Option<lb_common::Mode> {
        self.model.vips.get(id).map(|v| v.config.forwarding)
    }

    /// VIP `id`'s running configuration, None if there is no such VIP: a
    /// backend added to it is checked against its mode and starts from its
    /// health checks.
    pub(crate) fn vip_config(&self, id: &VipId) -> Option<&crate::config::VipConfig> {
        self.model.vips.get(id).map(|v| &v.config)
    }

    /// A backend's tracked flows by liveness (a census's, see `status`).
    pub(crate) fn backend_flows(
        &self,
        id: &VipId,
        address: IpAddr,
    ) -> Result<FlowCount, ModelError> {
        self.model.backend(id, address)?;
        let applied = self
            .balancer
            .vips()
            .get(id)
            .and_then(|v| v.backends.get(&address));
        if self.vip_mode(id) == Some(lb_common::Mode::Nat) {
            // As of the reaper's last complete sweep.
            let sweep = self.nat.reaper.last_sweep();
            return Ok(applied
                .and_then(|b| sweep.and_then(|s| s.by_backend.get(&b.id)).copied())
                .unwrap_or_default());
        }
        Ok(applied
            .map(|b| self.census().backend(b.id, b.generation))
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config, model::AdminState};

    /// The state a conditional state change (`maintenance --off`) checks
    /// is read from the model alone, which takes no census (see
    /// [`Engine::backend_state`]): each backend's own, None for a backend
    /// or VIP the model does not have.
    #[test]
    fn a_backends_admin_state_is_read_from_the_model() {
        let config = config::Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\n",
            "lbd.toml",
        )
        .unwrap();
        let id = VipId::of(&config.vips[0]);
        let mut model = crate::model::Model::from_config(&config);
        let (eleven, twelve) = (
            "198.18.0.11".parse().unwrap(),
            "198.18.0.12".parse().unwrap(),
        );
        model
            .set_admin(&id, twelve, AdminState::Maintenance)
            .unwrap();
        assert_eq!(
            admin_state_of(&model, &id, eleven),
            Some(BackendState::Enabled)
        );
        assert_eq!(
            admin_state_of(&model, &id, twelve),
            Some(BackendState::Maintenance)
        );
        assert_eq!(
            admin_state_of(&model, &id, "198.18.0.13".parse().unwrap()),
            None
        );
        let other: VipId = "198.18.0.101:80/tcp".parse().unwrap();
        assert_eq!(admin_state_of(&model, &other, eleven), None);
    }
}
