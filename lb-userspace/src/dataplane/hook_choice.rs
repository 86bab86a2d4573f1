//! Where the balancer may run given its VIPs: NAT and tunnelled (IPIP,
//! GUE) VIPs never run at generic (skb) XDP. Generic XDP runs on skbs,
//! which may carry a partial TCP/UDP checksum (CHECKSUM_PARTIAL: the field
//! holds only the pseudo-header sum, completed on transmit) or be GSO
//! packets. The XDP program cannot see either: its checksum update (RFC
//! 1624, right for native XDP's frames) then writes wrong checksums, and
//! an encapsulated GSO packet has no encapsulation GSO type. Such skbs
//! reach generic XDP from places lbd cannot reliably tell apart: GRO on
//! a lower device (a bond's slaves, a VLAN's real device, macvlan),
//! virtio-net receive offloads (`VIRTIO_NET_F_GUEST_CSUM`,
//! `GUEST_TSO*`: where native XDP fails and `auto` would fall back to
//! generic), veth or tun carrying local senders' packets. (The
//! interface's own GRO is no guide: the kernel skips it on a device that
//! runs a generic XDP program.) The tc hook handles both with the
//! kernel's helpers; native XDP sees frames before any of this, and
//! DSR-L2 only rewrites MACs: neither is affected. So the decision is
//! keyed on the VIPs' modes alone ([`choose_hook`]): `xdp_mode = "auto"`
//! without native XDP attaches at tc ingress instead of generic XDP,
//! `xdp_mode = "generic"` is refused at start, and so is a reload or an
//! API call that adds such a VIP to an lbd running generic XDP.

use lb_common::Mode;

use crate::{
    config::{VipConfig, XdpMode},
    vip_id::VipId,
};

/// Where the balancer may run, given the configured `xdp_mode`, whether
/// native XDP attached (`native_available`; only asked for `auto`) and
/// whether any VIP translates packets (NAT, IPIP or GUE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookChoice {
    /// Native XDP (with `xdp_mode = "native"`, whether or not it attaches:
    /// a failure is the error).
    Native,
    /// Generic XDP: no VIP translates.
    Generic,
    /// `auto` without native XDP where VIPs translate: the tc hook, the
    /// same packet path.
    Tc,
    /// `generic` where VIPs translate: refused, nothing attached.
    Refuse,
}

/// The hook for `mode` (see [`HookChoice`]): generic XDP only where no VIP
/// translates.
pub fn choose_hook(mode: XdpMode, native_available: bool, translating: bool) -> HookChoice {
    match mode {
        XdpMode::Native => HookChoice::Native,
        XdpMode::Auto if native_available => HookChoice::Native,
        XdpMode::Auto | XdpMode::Generic if !translating => HookChoice::Generic,
        XdpMode::Auto => HookChoice::Tc,
        XdpMode::Generic => HookChoice::Refuse,
    }
}

/// Whether a VIP in `mode` rewrites more than MACs (NAT, or a tunnel):
/// what generic XDP cannot do right on a partial-checksum or GSO skb.
pub fn translates(mode: Mode) -> bool {
    mode != Mode::DsrL2
}

/// The VIPs that translate, out of a config's or a change's: what
/// [`choose_hook`] needs beyond the mode, and what a refusal names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translating(Vec<(VipId, Mode)>);

impl Translating {
    /// The VIPs of `vips` that translate.
    pub fn of<'a>(vips: impl IntoIterator<Item = &'a VipConfig>) -> Self {
        Self(
            vips.into_iter()
                .filter(|v| translates(v.forwarding))
                .map(|v| (VipId::of(v), v.forwarding))
                .collect(),
        )
    }

    /// Whether any VIP translates.
    pub fn any(&self) -> bool {
        !self.0.is_empty()
    }

    /// [`choose_hook`] for these VIPs.
    pub fn choose(&self, mode: XdpMode, native_available: bool) -> HookChoice {
        choose_hook(mode, native_available, self.any())
    }

    /// The VIPs as the log names them: `198.18.0.100:80/tcp (nat), ...`.
    pub fn names(&self) -> String {
        self.0
            .iter()
            .map(|(id, mode)| format!("{id} ({})", mode.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Why generic XDP cannot serve these VIPs, `what` first (what is
    /// refused), with the ways out.
    pub fn refusal(&self, what: &str) -> String {
        format!(
            "{what}: generic (skb) XDP cannot translate packets: it may be handed skbs with a partial TCP/UDP checksum or GSO packets (GRO on a lower device, virtio-net receive offloads, veth or tun), which it would send out with wrong checksums or without an encapsulation GSO type. NAT or tunnelled VIP(s): {vips}. Use attach = \"tc\" (the same packet path at tc ingress, with the kernel's checksum helpers) or native XDP (xdp_mode = \"native\", or \"auto\", which takes tc where native XDP is unavailable); only DSR-L2 VIPs may run at generic XDP",
            vips = self.names(),
        )
    }
}

/// The VIPs of `next` that translate where the running set (`running`:
/// each VIP's forwarding) does not: new ones, and DSR-L2 ones switched to
/// NAT or a tunnel. What a reload or an API call would add to an lbd
/// running generic XDP.
pub fn newly_translating<'a>(
    running: impl Fn(&VipId) -> Option<Mode>,
    next: impl IntoIterator<Item = &'a VipConfig>,
) -> Vec<&'a VipConfig> {
    next.into_iter()
        .filter(|vip| translates(vip.forwarding))
        .filter(|vip| !running(&VipId::of(vip)).is_some_and(translates))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;

    /// The decision lbd's attach follows, keyed on the VIPs' modes alone:
    /// before it, `auto` fell back to generic XDP and `generic` attached
    /// whatever the VIPs, so NAT and tunnelled VIPs mistranslated
    /// partial-checksum and GSO skbs.
    #[test]
    fn generic_xdp_is_chosen_only_where_no_vip_translates() {
        use HookChoice::{Generic, Native, Refuse, Tc};
        use XdpMode::{Auto, Generic as G, Native as N};
        for translating in [false, true] {
            // Native XDP sees frames before any offload: never affected.
            assert_eq!(choose_hook(Auto, true, translating), Native);
            assert_eq!(choose_hook(N, false, translating), Native);
            assert_eq!(choose_hook(N, true, translating), Native);
        }
        // Only DSR-L2 VIPs: generic XDP as asked for, or as auto's
        // fallback.
        assert_eq!(choose_hook(Auto, false, false), Generic);
        assert_eq!(choose_hook(G, false, false), Generic);
        assert_eq!(choose_hook(G, true, false), Generic, "asked for");
        // NAT or tunnelled VIPs: auto goes to tc, generic is refused.
        assert_eq!(choose_hook(Auto, false, true), Tc);
        assert_eq!(choose_hook(G, false, true), Refuse);
        assert_eq!(choose_hook(G, true, true), Refuse, "asked for");
    }

    fn vip(last: u8, port: u16, forwarding: Mode) -> VipConfig {
        let mut vip = VipConfig::new(
            std::net::IpAddr::from([198, 18, 0, last]),
            port,
            Protocol::Tcp,
        );
        vip.forwarding = forwarding;
        vip
    }

    #[test]
    fn every_mode_but_dsr_l2_translates() {
        for mode in [Mode::Nat, Mode::Ipip, Mode::Gue] {
            let vips = [vip(101, 80, Mode::DsrL2), vip(100, 80, mode)];
            let translating = Translating::of(&vips);
            assert!(translating.any(), "{mode:?}");
            assert_eq!(translating.choose(XdpMode::Auto, false), HookChoice::Tc);
            assert_eq!(
                translating.choose(XdpMode::Generic, false),
                HookChoice::Refuse
            );
        }
        let dsr = [vip(101, 80, Mode::DsrL2)];
        assert!(!Translating::of(&dsr).any());
        assert_eq!(
            Translating::of(&dsr).choose(XdpMode::Auto, false),
            HookChoice::Generic
        );
        assert_eq!(
            Translating::of([]).choose(XdpMode::Generic, false),
            HookChoice::Generic
        );
    }

    #[test]
    fn the_refusal_names_the_vips_and_every_way_out() {
        let vips = [
            vip(100, 80, Mode::Nat),
            vip(101, 80, Mode::DsrL2),
            vip(102, 443, Mode::Gue),
        ];
        let message = Translating::of(&vips).refusal("xdp_mode = \"generic\" refused");
        assert!(
            message.starts_with("xdp_mode = \"generic\" refused: "),
            "{message}"
        );
        for part in [
            "partial TCP/UDP checksum",
            "198.18.0.100:80/tcp (nat), 198.18.0.102:443/tcp (gue)",
            "attach = \"tc\"",
            "xdp_mode = \"native\"",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
        assert!(!message.contains("198.18.0.101"), "DSR-L2 is not named");
        assert!(!message.contains("ethtool"), "GRO off is no way out");
    }

    #[test]
    fn a_reload_adds_translation_with_new_vips_and_switched_ones_only() {
        let running = [
            (VipId::of(&vip(100, 80, Mode::Nat)), Mode::Nat),
            (VipId::of(&vip(101, 80, Mode::DsrL2)), Mode::DsrL2),
        ];
        let lookup = |id: &VipId| running.iter().find(|(r, _)| r == id).map(|(_, m)| *m);
        let next = [
            vip(100, 80, Mode::Nat),   // kept: not added
            vip(101, 80, Mode::Ipip),  // switched from DSR-L2
            vip(102, 80, Mode::DsrL2), // new, DSR-L2
            vip(103, 80, Mode::Gue),   // new, tunnelled
        ];
        let added: Vec<VipId> = newly_translating(lookup, &next)
            .into_iter()
            .map(VipId::of)
            .collect();
        assert_eq!(added, vec![VipId::of(&next[1]), VipId::of(&next[3])]);
        assert!(newly_translating(lookup, &next[..1]).is_empty());
    }
}
