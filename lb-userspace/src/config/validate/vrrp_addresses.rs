//! Who moves each address: the `[[vrrp]]` instance of a NAT VIP moves its
//! NAT address too, and every address is moved by one instance and is no
//! backend's. Rules across `[[vrrp]]` and `[[vip]]`, apart from the
//! section's own checks (`config::vrrp`).

use std::net::IpAddr;

use toml::Spanned;

use crate::config::{checker::Checker, vrrp, ConfigError, VipConfig, VrrpConfig};

impl Checker<'_> {
    /// Where to point at `address` of instance `index`: its item in the
    /// written list, or the `[[vrrp]]` table when the list is the default;
    /// with the field path to name.
    fn vrrp_address_at(
        &self,
        raw: &[Spanned<vrrp::RawVrrp>],
        index: usize,
        position: usize,
    ) -> (usize, String) {
        let table = raw.get(index).map_or(0, |r| r.span().start);
        match raw
            .get(index)
            .and_then(|r| r.get_ref().address_item(position))
        {
            Some(item) => (
                item.span().start,
                format!("vrrp[{index}].addresses[{position}]"),
            ),
            None => (table, format!("vrrp[{index}].addresses")),
        }
    }

    /// The instance that moves a NAT VIP's address also moves its NAT
    /// address (replies to translated flows come back to it, so it must be
    /// on the node that holds the VIP), and no other instance moves it.
    pub(super) fn nat_sources_move(
        &self,
        raw: &[Spanned<vrrp::RawVrrp>],
        instances: &[VrrpConfig],
        vips: &[VipConfig],
    ) -> Result<(), ConfigError> {
        let holder = |address: IpAddr| {
            instances
                .iter()
                .position(|i| i.addresses.contains(&address))
        };
        for (index, instance) in instances.iter().enumerate() {
            for (position, address) in instance.addresses.iter().enumerate() {
                for vip in vips.iter().filter(|v| v.address == *address) {
                    let Some(nat) = vip.nat else { continue };
                    if instance.addresses.contains(&nat.source) {
                        // Moved here; if another instance moves it too,
                        // the duplicate check says so.
                        continue;
                    }
                    let (at, field) = self.vrrp_address_at(raw, index, position);
                    if let Some(other) = instances
                        .iter()
                        .enumerate()
                        .position(|(i, inst)| i != index && inst.addresses.contains(&nat.source))
                    {
                        // Another instance moves the NAT address: for its
                        // own NAT VIPs, or by mistake.
                        let shared = vips.iter().find(|w| {
                            w.nat.is_some_and(|n| n.source == nat.source)
                                && holder(w.address) == Some(other)
                        });
                        let why = match shared {
                            Some(w) => format!(
                                "; vrrp[{other}]'s NAT VIP {} uses it too, so NAT VIPs of different instances need different NAT addresses: give one of them its own nat_source",
                                w.address
                            ),
                            None => format!(": move it in vrrp[{index}] instead"),
                        };
                        return Err(self.invalid(
                            at,
                            &field,
                            format!(
                                "the NAT address {} of VIP {} (forwarding = \"nat\") is moved by vrrp[{other}], not with the VIP{why}",
                                nat.source, vip.address
                            ),
                        ));
                    }
                    return Err(self.invalid(
                        at,
                        &field,
                        format!(
                            "the NAT address {} of VIP {} must move with the VIP (replies to translated flows come back to it): add it to this list",
                            nat.source, vip.address
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Each address is moved by one instance and is not a backend's: two
    /// instances electing masters apart would put it on two nodes, and a
    /// backend's address taken here would take its traffic.
    pub(super) fn vrrp_addresses_are_single(
        &self,
        raw: &[Spanned<vrrp::RawVrrp>],
        instances: &[VrrpConfig],
        vips: &[VipConfig],
    ) -> Result<(), ConfigError> {
        let defaulted = |index: usize| {
            raw.get(index)
                .is_some_and(|r| !r.get_ref().lists_addresses())
        };
        for (index, instance) in instances.iter().enumerate() {
            for (position, address) in instance.addresses.iter().enumerate() {
                let (at, field) = self.vrrp_address_at(raw, index, position);
                if let Some(first) = instances[..index]
                    .iter()
                    .position(|i| i.addresses.contains(address))
                {
                    // The NAT address of NAT VIPs of both instances?
                    let nat_vip_of = |i: usize| {
                        vips.iter().find(|v| {
                            v.nat.is_some_and(|n| n.source == *address)
                                && instances[i].addresses.contains(&v.address)
                        })
                    };
                    let hint = match (defaulted(first), defaulted(index)) {
                        _ if nat_vip_of(first).is_some() && nat_vip_of(index).is_some() => {
                            format!(
                                " (it is the NAT address of VIP {} in vrrp[{first}] and of VIP {} in vrrp[{index}]: NAT VIPs of different instances need different NAT addresses; give one of them its own nat_source)",
                                nat_vip_of(first).map_or(*address, |v| v.address),
                                nat_vip_of(index).map_or(*address, |v| v.address),
                            )
                        }
                        (false, false) => String::new(),
                        (true, true) => format!(
                            " (neither vrrp[{first}] nor vrrp[{index}] lists addresses, so both take every VIP address of the first VIP's family: list addresses explicitly in each [[vrrp]])"
                        ),
                        (true, false) => format!(
                            " (vrrp[{first}] lists no addresses, so it takes every VIP address of its family: list its addresses explicitly)"
                        ),
                        (false, true) => format!(
                            " (vrrp[{index}] lists no addresses, so it takes every VIP address of its family: list its addresses explicitly)"
                        ),
                    };
                    return Err(self.invalid(
                        at,
                        &field,
                        format!(
                            "{address} is moved by vrrp[{first}] too: an address is moved by one instance{hint}"
                        ),
                    ));
                }
                for (v, vip) in vips.iter().enumerate() {
                    if let Some(b) = vip.backends.iter().position(|b| b.address == *address) {
                        return Err(self.invalid(
                            at,
                            &field,
                            format!(
                                "{address} is the address of vip[{v}].backend[{b}]: the master would take the backend's packets; a VRRP address is an address of this load balancer"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
