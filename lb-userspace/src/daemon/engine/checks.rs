//! Health checks: which backends are checked and how (directly or
//! through their tunnel), what a transition changes, and drains that
//! ran out of time.

use std::{
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use tracing::{info, warn};

use super::{BackendKey, Engine};
use crate::{
    config::{CheckType, HealthConfig},
    health::{CheckKind, CheckSettings, HealthEvent, ProbeTarget},
    reconcile::VipId,
};

impl Engine {
    /// Starts, replaces or stops health-check tasks to match the model,
    /// and keeps the path of checks through a tunnel while some use it.
    pub(super) fn sync_checks(&mut self) {
        let mut wanted = Vec::new();
        for (id, vip) in &self.model.vips {
            for (address, backend) in &vip.backends {
                let health = backend.config.health.as_ref().unwrap_or(&vip.config.health);
                // A NAT backend listens on its own port, if it has one.
                let port = backend.config.port.unwrap_or(id.port);
                let through = if health.through_tunnel && vip.config.forwarding.is_tunnel() {
                    let Some(path) = self.tunnel_path(id, *address) else {
                        continue; // not in the maps: nothing to check through
                    };
                    Some((id.address, path))
                } else {
                    None
                };
                if let Some((target, settings)) = check_of(*address, port, health, through) {
                    wanted.push(((*id, *address), target, settings, backend.health));
                }
            }
        }
        self.sync_hc_path(wanted.iter().any(|w| w.1.through.is_some()));
        let keys: std::collections::HashSet<BackendKey> = wanted.iter().map(|w| w.0).collect();
        self.checker.retain(|k| keys.contains(k));
        self.transitions.retain(|k, _| keys.contains(k));
        self.metrics
            .retain_checks(|vip, backend| keys.contains(&(*vip, backend)));
        for (key, target, settings, health) in wanted {
            self.checker.set(key, target, settings, health);
        }
    }

    /// How a check of backend `address` of VIP `id` goes through its
    /// tunnel: marked with the backend's data-plane id; from the
    /// interface's address of the VIP's family when the backend's is
    /// another (4in6), else from the kernel's source toward the backend.
    fn tunnel_path(&self, id: &VipId, address: IpAddr) -> Option<crate::health::TunnelPath> {
        let backend = self.balancer.vips().get(id)?.backends.get(&address)?;
        let source = if address.is_ipv4() == id.address.is_ipv4() {
            None
        } else {
            let own = self.tunnel.own.of_family(id.address.is_ipv6());
            if own.is_none() {
                warn!(vip = %id, backend = %address, "no address of the VIP's family on the interface to check the 4in6 backend through its tunnel from: its checks fail");
            }
            own
        };
        Some(crate::health::TunnelPath {
            mark: lb_common::tunnel::HC_MARK_BASE | backend.id,
            backend: address,
            source,
        })
    }

    /// Records a health transition and applies what it changes; one from
    /// a check task since replaced is stale and dropped.
    pub(crate) fn on_health(&mut self, event: HealthEvent<BackendKey>) {
        if !self.checker.is_current(&event) {
            return;
        }
        let (vip, address) = event.key;
        let transition = &event.transition;
        let mut next = self.model.clone();
        if !next.set_health(&vip, address, transition.to) {
            return; // removed meanwhile
        }
        *self.transitions.entry((vip, address)).or_default() += 1;
        info!(%vip, backend = %address, from = %transition.from, to = %transition.to, reason = %transition.reason, "backend health changed");
        let was_all_down = self.model.vip(&vip).map(|v| v.all_down()).unwrap_or(false);
        let now_all_down = next.vip(&vip).map(|v| v.all_down()).unwrap_or(false);
        if now_all_down && !was_all_down {
            let policy = next
                .vip(&vip)
                .map(|v| v.config.on_all_down.to_string())
                .unwrap_or_default();
            warn!(%vip, on_all_down = %policy, "no healthy backend left");
        }
        if let Err(error) = self.commit(next) {
            warn!(%vip, backend = %address, %error, "applying a health change failed");
        }
    }

    /// Puts right a backend whose health in the model is not the one its
    /// check has settled on: a transition whose change failed to apply
    /// (the check will not send it again) is applied on a later tick.
    pub(crate) fn reconcile_health(&mut self) {
        let mut next = self.model.clone();
        let mut changed = Vec::new();
        for ((vip, address), health) in self.checker.settled() {
            let Ok(backend) = next.backend(&vip, address) else {
                continue;
            };
            if backend.health != health && next.set_health(&vip, address, health) {
                changed.push((vip, address, health));
            }
        }
        if changed.is_empty() {
            return;
        }
        for (vip, address, health) in &changed {
            info!(%vip, backend = %address, %health, "backend health put right from its check");
        }
        if let Err(error) = self.commit(next) {
            warn!(%error, "putting backends' health right failed; tried again on the next tick");
        }
    }

    /// Ends drains whose deadline passed: the backend goes to
    /// maintenance, and its remaining flows are cut (a NAT VIP's stay on
    /// it until they end).
    pub(crate) fn expire_drains(&mut self, now: Instant) {
        let mut next = self.model.clone();
        let expired = next.expire_drains(now);
        if expired.is_empty() {
            return;
        }
        for (vip, backend) in &expired {
            let mode = next.vip(vip).map(|v| v.config.forwarding).ok();
            info!(%vip, %backend, "{}", drain_timeout_outcome(mode));
        }
        if let Err(error) = self.commit(next) {
            warn!(%error, "ending expired drains failed");
        }
    }
}

/// What a drain's timeout did to a backend of a VIP in `mode`, for the
/// log: a translation cannot move, so a NAT VIP's connections stay.
fn drain_timeout_outcome(mode: Option<lb_common::Mode>) -> &'static str {
    if mode == Some(lb_common::Mode::Nat) {
        "drain timeout: backend in maintenance (no new flows); its NAT'd connections stay on it until they end or it is removed"
    } else {
        "drain timeout: remaining flows cut, backend in maintenance"
    }
}

/// The probe target and settings of a backend's checks (None: unchecked);
/// `through` (the VIP's address and the tunnel) sends them to the VIP
/// through the backend's tunnel instead of to the backend's address.
pub(crate) fn check_of(
    address: IpAddr,
    vip_port: u16,
    health: &HealthConfig,
    through: Option<(IpAddr, crate::health::TunnelPath)>,
) -> Option<(ProbeTarget, CheckSettings)> {
    let kind = match health.check {
        CheckType::None => return None,
        CheckType::Tcp => CheckKind::Tcp,
        CheckType::Http => CheckKind::Http {
            path: health.path.clone(),
            host: health.host.clone(),
            expect_status: health.expect_status,
        },
    };
    let port = health.port.unwrap_or(vip_port);
    let target = match through {
        None => ProbeTarget {
            address: SocketAddr::new(address, port),
            kind,
            through: None,
        },
        Some((vip, path)) => ProbeTarget {
            address: SocketAddr::new(vip, port),
            kind,
            through: Some(path),
        },
    };
    let settings = CheckSettings {
        interval: health.interval,
        fast_interval: health.fast_interval,
        timeout: health.timeout,
        rise: health.rise,
        fall: health.fall,
    };
    Some((target, settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nat_drain_timeout_is_not_logged_as_cutting_flows() {
        let nat = drain_timeout_outcome(Some(lb_common::Mode::Nat));
        assert!(!nat.contains("cut"), "{nat}");
        assert!(nat.contains("stay on it until they end"), "{nat}");
        for mode in [lb_common::Mode::DsrL2, lb_common::Mode::Ipip] {
            assert!(drain_timeout_outcome(Some(mode)).contains("remaining flows cut"));
        }
    }
}
