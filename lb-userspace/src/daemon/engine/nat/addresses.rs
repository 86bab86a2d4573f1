//! Checks of NAT and VIP addresses against the node and VRRP: held, shared
//! with the node's own connections, or left behind at a failover; apart
//! because they only warn and never change the data plane.

use std::{collections::BTreeSet, net::IpAddr};

use lb_common::Mode;
use tracing::{debug, info, warn};

use super::super::Engine;
use crate::nat::held::HeldChange;

/// Backends per NAT VIP whose route is looked at for the shared-address
/// check (a route lookup each, every scan, until one warns).
const SHARED_CHECK_BACKENDS: usize = 16;

/// The kernel's ephemeral port range (`ip_local_port_range`, which IPv6
/// shares), where this node's own connections take their source ports.
fn ephemeral_ports() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    Some((parts.next()??, parts.next()??))
}

/// Why a NAT VIP's translated flows can collide with this node's own
/// connections (its health checks among them): the kernel sends those to
/// `backend` from `kernel_source`, and when that is the NAT address, its
/// ephemeral ports `ephemeral` and the NAT ports overlap, so a check can
/// take a port a translated flow holds and its answer is translated away.
pub(super) fn shared_nat_address(
    vip: &crate::vip_id::VipId,
    nat: &crate::config::VipNat,
    backend: IpAddr,
    kernel_source: IpAddr,
    ephemeral: (u16, u16),
) -> Option<String> {
    let (low, high) = ephemeral;
    let overlap = nat.port_min <= high && low <= nat.port_max;
    (kernel_source == nat.source && overlap).then(|| {
        format!(
            "VIP {vip}: its NAT address {} is also where this node's own connections to backend {backend} come from (its health checks among them), and its NAT ports {}-{} overlap the kernel's ephemeral ports {low}-{high}: a check can take a port a translated flow holds and fail; give NAT an address of its own, or keep [nat] source_port_min/source_port_max outside {low}-{high}",
            nat.source, nat.port_min, nat.port_max
        )
    })
}

impl Engine {
    /// Says (once) when a NAT address this node must hold is not among
    /// its addresses, and when it is back (see `nat::held`): backends'
    /// replies to it never reach the balancer, so its VIPs' NAT'd
    /// connections stall while their checks pass. Addresses a VRRP
    /// instance this node is a backup of moves are the master's.
    pub(super) async fn check_nat_addresses_held(&mut self) {
        let nat_vips: Vec<(String, IpAddr)> = self
            .model
            .vips
            .iter()
            .filter(|(_, vip)| vip.config.forwarding == Mode::Nat)
            .filter_map(|(id, vip)| vip.config.nat.map(|nat| (id.to_string(), nat.source)))
            .collect();
        if nat_vips.is_empty() {
            self.nat.held.forget();
            return;
        }
        let backup: BTreeSet<IpAddr> = self
            .vrrp
            .iter()
            .filter(|instance| !instance.is_master())
            .flat_map(|instance| instance.config().addresses.iter().copied())
            .collect();
        let wanted = crate::nat::held::to_hold(&nat_vips, &backup);
        let held = match self.netlink.node_addresses().await {
            Ok(held) => held,
            Err(error) => {
                debug!(%error, "reading the node's addresses for its NAT addresses failed");
                return;
            }
        };
        for change in self.nat.held.update(&wanted, &held) {
            match change {
                HeldChange::Missing { address, vips } => warn!(
                    nat_address = %address, vips = %vips.join(", "), interface = %self.interface.name,
                    "NAT address {address} is not an address of this node: backends answer NAT'd connections at it, and their replies do not reach the balancer, so every NAT'd connection of {} stalls (health checks still pass: they leave from the node's own address). Put it back (ip addr add {address} dev {}), or give the VIPs another NAT address and reload", vips.join(", "), self.interface.name
                ),
                HeldChange::Back { address } => info!(
                    nat_address = %address,
                    "NAT address {address} is an address of this node again: backends' replies to it reach the balancer"
                ),
            }
        }
    }

    /// Warns (once per address) about NAT addresses this node's own
    /// connections to the backends leave from (see `shared_nat_address`).
    pub(super) fn warn_shared_nat_addresses(&mut self) {
        let Some(ephemeral) = ephemeral_ports() else {
            return;
        };
        let mut warnings = Vec::new();
        for (id, vip) in &self.model.vips {
            let Some(nat) = vip
                .config
                .nat
                .filter(|_| vip.config.forwarding == Mode::Nat)
            else {
                continue;
            };
            if self.nat.shared_warned.contains(&nat.source) {
                continue;
            }
            for backend in vip.backends.keys().take(SHARED_CHECK_BACKENDS) {
                let Ok(source) = crate::health::tunnel_socket::source_toward(*backend, 0) else {
                    continue;
                };
                if let Some(warning) = shared_nat_address(id, &nat, *backend, source, ephemeral) {
                    warnings.push((nat.source, warning));
                    break;
                }
            }
        }
        for (address, warning) in warnings {
            if self.nat.shared_warned.insert(address) {
                warn!(%warning, "NAT address shared with this node's own connections");
            }
        }
    }

    /// What to tell the operator when a running VRRP instance moves a NAT
    /// VIP's address but not its NAT address (the config file refuses that,
    /// see `nat_sources_move`; the instances' addresses are fixed at start):
    /// after a failover its replies would go to the node that lost the VIP.
    /// A VIP whose address no running instance moves is not this check's
    /// (`unmoved_vip_address` warns that the VIP itself does not move).
    pub(crate) fn nat_address_left_behind(&self, vip: &crate::config::VipConfig) -> Option<String> {
        let moved: Vec<&[IpAddr]> = self
            .vrrp
            .iter()
            .map(|i| i.config().addresses.as_slice())
            .collect();
        unmoved_nat_address(vip, &moved)
    }
}

/// The warning for a NAT VIP whose address a VRRP instance moves while
/// that same instance does not move its NAT address (the file's rule,
/// `nat_sources_move`, on the instances' address lists `moved`). None for
/// a VIP without NAT, without VRRP (nothing moves), or whose address no
/// instance moves: its NAT address is left where the VIP is.
pub(super) fn unmoved_nat_address(
    vip: &crate::config::VipConfig,
    moved: &[&[IpAddr]],
) -> Option<String> {
    let nat = vip.nat?;
    if !moved
        .iter()
        .any(|list| list.contains(&vip.address) && !list.contains(&nat.source))
    {
        return None;
    }
    Some(format!(
        "VIP {}: its NAT address {} is in no running VRRP instance's addresses along with the VIP's address {} (an instance's addresses are fixed when lbd starts), so it does not move with the VIP at a failover and replies to this VIP's translated flows would go to the node that lost the VIP; add {} to the addresses of the [[vrrp]] instance that moves {} in the config file and restart lbd (VRRP settings take effect at a restart), or give the VIP a NAT address that instance moves (nat_source)",
        crate::vip_id::VipId::of(vip),
        nat.source,
        vip.address,
        nat.source,
        vip.address
    ))
}

/// The warning for a VIP whose address none of the running VRRP
/// instances' address lists (`moved`) holds and the running `[bgp]` does
/// not announce (`announced`): an instance's addresses are fixed when it
/// starts (a `[[vrrp]]` without `addresses` takes the VIP addresses of
/// that start), so no node puts a VIP address added since on its
/// interface, and clients' packets for it reach none. None without VRRP,
/// where the operator places every address.
pub(in crate::daemon::engine) fn unmoved_vip_address(
    vip: &crate::config::VipConfig,
    moved: &[&[IpAddr]],
    announced: bool,
) -> Option<String> {
    if moved.is_empty() || announced || moved.iter().any(|list| list.contains(&vip.address)) {
        return None;
    }
    Some(format!(
        "VIP {}: its address {} is in no running VRRP instance's addresses (an instance's addresses are fixed when lbd starts), so the master does not put it on the interface and it does not move at a failover; add it to a [[vrrp]] instance's addresses and restart lbd, or add it to the interface by hand",
        crate::vip_id::VipId::of(vip),
        vip.address
    ))
}
