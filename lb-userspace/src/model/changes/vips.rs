//! VIPs added and removed at run time, each checked as the file would be:
//! within the limits, and no address taken by two roles on this node.

use std::net::IpAddr;

use super::super::{Model, ModelError, VipModel};
use crate::{config::VipConfig, reconcile::VipId};

impl Model {
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
    pub(super) fn not_an_own_address(&self, backend: IpAddr) -> Result<(), ModelError> {
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
}
