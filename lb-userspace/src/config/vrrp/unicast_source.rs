//! An instance's `unicast_src_ip`: its family, and an address of this node
//! that never moves. Apart because it is checked against the whole file
//! (VIPs, NAT, other instances), after every instance is read.

use std::net::IpAddr;

use toml::Spanned;

use super::super::{Checker, ConfigError};
use super::{RawVrrp, VrrpConfig};

impl Checker<'_> {
    /// An instance's `unicast_src_ip` is of its family (adverts of the
    /// other cannot leave) and an address of this node that never moves:
    /// not a VIP, a NAT address or one a `[[vrrp]]` moves (those leave
    /// with mastership, so the backup would send from an address it does
    /// not hold, and the peer's `unicast_peer` list names the node, not
    /// the VIP), nor one of its peers.
    pub(in crate::config) fn unicast_sources_are_own(
        &self,
        raw: &[Spanned<RawVrrp>],
        instances: &[VrrpConfig],
        vips: &[super::super::VipConfig],
        nat: &super::super::NatConfig,
    ) -> Result<(), ConfigError> {
        for (index, instance) in instances.iter().enumerate() {
            let (Some(source), Some(raw_vrrp)) = (instance.unicast_src_ip, raw.get(index)) else {
                continue;
            };
            let Some(v) = raw_vrrp.get_ref().unicast_src_ip.as_ref() else {
                continue;
            };
            let family_v4 = instance.addresses.first().is_none_or(IpAddr::is_ipv4);
            let family = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
            let moves = "which moves with VRRP: adverts go from an address of this node's own that never moves (the one the peer's unicast_peer list names)";
            let problem = if source.is_ipv4() != family_v4 {
                let why = if raw_vrrp.get_ref().lists_addresses() {
                    ""
                } else {
                    " (it lists no addresses, so it takes the family of the first VIP)"
                };
                format!(
                    "{source} is {} but vrrp[{index}] moves {} addresses{why}: adverts go from an address of the instance's family",
                    family(source.is_ipv4()),
                    family(family_v4)
                )
            } else if let Some(other) = instances.iter().position(|i| i.addresses.contains(&source))
            {
                format!("{source} is an address vrrp[{other}] moves, {moves}")
            } else if let Some(vip) = vips.iter().position(|vip| vip.address == source) {
                format!("{source} is vip[{vip}]'s address, {moves}")
            } else if let Some(vip) = vips
                .iter()
                .position(|vip| vip.nat.is_some_and(|n| n.source == source))
            {
                format!("{source} is the NAT address of vip[{vip}], {moves}")
            } else if nat.source_ipv4 == Some(source) || nat.source_ipv6 == Some(source) {
                let key = if source.is_ipv4() {
                    "source_ipv4"
                } else {
                    "source_ipv6"
                };
                format!("{source} is the [nat] {key}, {moves}")
            } else if instance.unicast_peers.contains(&source) {
                format!("{source} is one of vrrp[{index}]'s unicast_peers: give this node's own address")
            } else {
                continue;
            };
            return Err(self.bad_value(v, &format!("vrrp[{index}].unicast_src_ip"), problem));
        }
        Ok(())
    }
}
