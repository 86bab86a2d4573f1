//! The model's changes, each checked before anything moves: VIPs and
//! backends added and removed, admin state, weight, health, reloads.
//!
//! Split by concern: VIPs, backends, the limits a change is held to,
//! fail-open holds, first checks, and reloads; here, the lookups they share.

use super::*;

mod backends;
mod fail_open;
mod first_checks;
mod limits;
mod reload;
mod vips;

pub(crate) use limits::fits_the_maps;

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
}
