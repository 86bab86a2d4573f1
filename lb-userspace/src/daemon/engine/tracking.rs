//! VRRP tracking: what this node can serve sets its instances' priority.

use tracing::warn;

use super::Engine;
use crate::{config::AllDown, daemon::replication::Roles, vrrp::driver::Instance};

impl Engine {
    /// Sets each VRRP instance's priority from what this node can serve:
    /// less when the program is not attached, when the interface is down,
    /// and for each of the instance's VIPs that has no healthy backend.
    pub(crate) fn track(&self) {
        for instance in &self.vrrp {
            let config = instance.config();
            if config.priority == 255 {
                continue; // the address owner's priority is fixed
            }
            let mut lost: u32 = 0;
            if !self.dataplane.is_attached() {
                lost += u32::from(config.track_dataplane);
            }
            if !self.interface_up {
                lost += u32::from(config.track_interface);
            }
            let unserved = self
                .model
                .vips
                .iter()
                .filter(|(id, vip)| {
                    config.addresses.contains(&id.address)
                        && vip.config.on_all_down == AllDown::Drop
                        && (vip.all_down() || vip.backends.is_empty())
                })
                .count();
            lost += u32::try_from(unserved)
                .unwrap_or(u32::MAX)
                .saturating_mul(config.track_no_backend.into());
            let effective = u32::from(config.priority)
                .saturating_sub(lost)
                .clamp(1, 254);
            instance.set_priority(u8::try_from(effective).unwrap_or(1));
        }
    }

    /// Whether this node should serve: master of some instance, or no
    /// VRRP at all.
    pub(crate) fn is_master(&self) -> bool {
        self.vrrp.is_empty() || self.vrrp.iter().any(Instance::is_master)
    }

    /// This node's replication role per VIP: master or backup of the
    /// instance that moves it (dual stack may have the two families'
    /// masters on different nodes).
    pub(crate) fn replication_roles(&self) -> Roles {
        Roles::new(
            self.vrrp
                .iter()
                .map(|i| (i.config().addresses.as_slice(), i.is_master())),
            self.is_master(),
        )
    }

    /// Checks the interface's link for tracking.
    pub(crate) async fn check_link(&mut self) {
        match self.netlink.link_is_up(self.interface.index).await {
            Ok(up) => {
                if up != self.interface_up {
                    warn!(interface = %self.interface.name, up, "interface link changed");
                    self.interface_up = up;
                }
            }
            Err(error) => warn!(%error, "reading the interface's link state failed"),
        }
    }
}
