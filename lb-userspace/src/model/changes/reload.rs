//! The file's side: the model a reload gives (keeping what operators set
//! on backends that stay), and the running configuration to save.

use std::collections::BTreeMap;

use super::super::{Model, VipModel};
use crate::{config::Config, reconcile::VipId};

impl Model {
    /// The model a reload of `config` gives: the file's VIPs and backends,
    /// keeping the admin state, health, drain outcome, fail-open hold
    /// and slow start of backends that stay; a VIP the reload stops failing open holds
    /// the backends that took flows only for that (see
    /// [`FailOpenHold`](super::super::FailOpenHold)).
    /// A backend the file no longer checks (`check = "none"`) is
    /// taken as up, as an unchecked one is: no check is left to bring it
    /// back. A checked backend new to lbd waits for its checks.
    pub fn reloaded(&self, config: &Config) -> Model {
        let mut next = Model::from_config(config);
        for (id, vip) in &mut next.vips {
            let old = self.vips.get(id);
            let vip_config = vip.config.clone();
            for (address, backend) in &mut vip.backends {
                let checked = super::super::vip::is_checked(&vip_config, &backend.config);
                match old.and_then(|o| o.backends.get(address)) {
                    Some(previous) => {
                        backend.admin = previous.admin;
                        backend.drain_timed_out = previous.drain_timed_out;
                        backend.slow_start = previous.slow_start;
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
