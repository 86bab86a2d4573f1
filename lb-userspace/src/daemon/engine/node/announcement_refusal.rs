//! The refusal of a VIP BGP would announce but cannot serve as
//! configured: a NAT VIP on an announced address (added at run time, or
//! by a reload, where the running `[bgp]` decides).

use super::super::Engine;
use crate::config::Config;

impl Engine {
    /// Why a VIP added at run time cannot be served as configured, if it
    /// cannot: a NAT VIP on an address BGP announces (the config file's
    /// rule, see `config::bgp`).
    pub(crate) fn announcement_refuses(&self, vip: &crate::config::VipConfig) -> Option<String> {
        announcement_refusal(&self.config, vip)
    }

    /// [`Self::announcement_refuses`] for a VIP of a reload's `file`: the
    /// running `[bgp]` decides (a restart setting), which the refusal
    /// says when the file's own would allow the VIP.
    pub(crate) fn reload_announcement_refuses(
        &self,
        file: &Config,
        vip: &crate::config::VipConfig,
    ) -> Option<String> {
        reload_announcement_refusal(&self.config, file, vip)
    }
}

/// [`Engine::announcement_refuses`] under `config`, pure: the VIP named
/// as everywhere else (`[2001:2::100]:80/tcp`, its protocol too), not an
/// IPv6 address and port run together.
pub(super) fn announcement_refusal(
    config: &Config,
    vip: &crate::config::VipConfig,
) -> Option<String> {
    let bgp = config.bgp.as_ref()?;
    let held = config
        .vrrp
        .iter()
        .any(|v| v.addresses.contains(&vip.address));
    (vip.nat.is_some() && bgp.covers(vip.address, held)).then(|| {
        format!(
            "VIP {} uses forwarding = \"nat\" on an address this node announces over BGP: ECMP may send a NAT'd flow's replies to another node; use dsr-l2, ipip or gue",
            crate::vip_id::VipId::of(vip)
        )
    })
}

/// [`announcement_refusal`] for a VIP of a reload's `file` on a node
/// running `running`: when the file's `[bgp]` (or `[[vrrp]]`) would not
/// announce the VIP, the refusal says that the running `[bgp]`, a
/// restart setting, decides, so it does not contradict the file.
pub(super) fn reload_announcement_refusal(
    running: &Config,
    file: &Config,
    vip: &crate::config::VipConfig,
) -> Option<String> {
    let why = announcement_refusal(running, vip)?;
    if announcement_refusal(file, vip).is_some() {
        return Some(why);
    }
    Some(format!(
        "{why} (by the running [bgp], which changes only when lbd restarts: this file no longer announces it; restart lbd with this file, or keep the VIP out of nat until then)"
    ))
}
