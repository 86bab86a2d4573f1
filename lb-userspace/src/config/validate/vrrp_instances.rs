//! The `[[vrrp]]` instances checked in the document's order: the
//! addresses one moves when it lists none (every VIP and NAT address of
//! the first VIP's family), one VRID per family, and one instance that
//! replicates. The rules across instances and VIPs are in
//! `vrrp_addresses`.

use std::net::IpAddr;

use toml::Spanned;

use crate::config::{
    checker::Checker, raw::RawConfig, vrrp::RawVrrp, ConfigError, VipConfig, VrrpConfig,
};

impl Checker<'_> {
    /// Every `[[vrrp]]` instance, checked (`vrrp`) and with its default
    /// addresses filled in.
    pub(super) fn vrrp_instances(
        &self,
        raw: &RawConfig,
        vips: &[VipConfig],
    ) -> Result<Vec<VrrpConfig>, ConfigError> {
        let mut instances: Vec<VrrpConfig> = Vec::new();
        let mut replicating: Option<usize> = None;
        for (index, raw_vrrp) in raw.vrrp.0.iter().enumerate() {
            let mut instance = self.vrrp(index, raw_vrrp)?;
            if instance.addresses.is_empty() {
                instance.addresses = self.default_vrrp_addresses(index, raw_vrrp, vips)?;
            }
            if instance.addresses.is_empty() {
                return Err(self.invalid(
                    raw_vrrp.span().start,
                    &format!("vrrp[{index}].addresses"),
                    "no address to move: list addresses or configure a VIP",
                ));
            }
            if let Some(first) = instances.iter().position(|i| {
                i.vrid == instance.vrid
                    && i.addresses.first().map(IpAddr::is_ipv4)
                        == instance.addresses.first().map(IpAddr::is_ipv4)
            }) {
                return Err(self.invalid(
                    raw_vrrp.span().start,
                    &format!("vrrp[{index}].vrid"),
                    format!("VRID {} is already vrrp[{first}]'s", instance.vrid),
                ));
            }
            if let Some(v) = raw_vrrp.get_ref().replication_key() {
                // The daemon starts the first instance's replication only.
                if let Some(first) = replicating {
                    return Err(self.bad_value(
                        v,
                        &format!("vrrp[{index}]"),
                        format!("replication is already configured in vrrp[{first}]: a pair replicates over one channel, so keep sync_listen, sync_peer and sync_key_file in one [[vrrp]]"),
                    ));
                }
                replicating = Some(index);
            }
            instances.push(instance);
        }
        Ok(instances)
    }

    /// What `[[vrrp]]` number `index`, which lists no addresses, moves:
    /// every VIP address of the first VIP's family, and the NAT addresses
    /// of that family, as many as fit an advertisement.
    fn default_vrrp_addresses(
        &self,
        index: usize,
        raw_vrrp: &Spanned<RawVrrp>,
        vips: &[VipConfig],
    ) -> Result<Vec<IpAddr>, ConfigError> {
        let mut addresses = Vec::new();
        // Default: every VIP address (of the first VIP's family).
        let family_v4 = vips.first().is_none_or(|v| v.address.is_ipv4());
        for vip in vips {
            if vip.address.is_ipv4() == family_v4 && !addresses.contains(&vip.address) {
                addresses.push(vip.address);
            }
        }
        // NAT addresses move with the VIPs: replies come back to them.
        for source in vips.iter().filter_map(|v| v.nat.map(|n| n.source)) {
            if source.is_ipv4() == family_v4 && !addresses.contains(&source) {
                addresses.push(source);
            }
        }
        // The cap a written list has (`vrrp`): an advertisement
        // holding more could not be encoded, so the master would
        // never advertise and the backups would take over too.
        let max = crate::vrrp::packet::MAX_ADDRESSES;
        if addresses.len() > max {
            let family = if family_v4 { "IPv4" } else { "IPv6" };
            return Err(self.invalid(
                raw_vrrp.span().start,
                &format!("vrrp[{index}].addresses"),
                format!(
                    "vrrp[{index}] lists no addresses, so it takes every {family} VIP address and NAT address: {} addresses, but at most {max} fit an advertisement; list the addresses it moves explicitly, or split them between several [[vrrp]] instances (each with its own vrid and addresses)",
                    addresses.len()
                ),
            ));
        }
        Ok(addresses)
    }
}
