//! The node's tunnel settings as the data plane reads them: `[tunnel]`
//! resolved against the balancer interface (its index, and its own
//! addresses as the default outer sources) into the one `TUNNEL_CONFIG`
//! entry, with which outer families have a source at all.

use std::net::IpAddr;

use lb_common::{
    consts::{AF_INET, AF_INET6},
    tunnel::outer_family,
    TunnelConfig,
};

use crate::{
    config::TunnelSettings,
    netlink::InterfaceAddress,
    reconcile::{addr_words, words_addr},
};

/// `TUNNEL_CONFIG[0]` and which outer families it can source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct NodeTunnel {
    /// The entry written.
    pub(crate) config: TunnelConfig,
    /// Whether outer IPv4 headers have a source (configured or the
    /// interface's own).
    pub(crate) ipv4: bool,
    /// Whether outer IPv6 headers have a source.
    pub(crate) ipv6: bool,
    /// Without an IPv4 source: the interface's IPv4 addresses lbd left
    /// out as default source, and why (the refusal names them, so the
    /// operator is not told to add an address the interface has).
    pub(crate) passed_over_v4: PassedOver,
    /// The same for IPv6.
    pub(crate) passed_over_v6: PassedOver,
}

/// Why lbd leaves an address of the balancer's interface out of the
/// default outer sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PassedOverWhy {
    /// A VIP's address (it leaves with mastership, and backends answer it).
    Vip,
    /// A NAT address (a VIP's `[nat]` source or the node-wide one).
    Nat,
    /// A VRRP address (it leaves with mastership).
    Vrrp,
    /// An IPv4 secondary or IPv6 temporary address (the same flag bit).
    Secondary,
    /// Duplicate address detection failed: another host has it.
    DadFailed,
    /// IPv6 link-local: not routable to backends.
    LinkLocal,
    /// Duplicate address detection still under way.
    Tentative,
}

impl std::fmt::Display for PassedOverWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Vip => "a VIP",
            Self::Nat => "a NAT address",
            Self::Vrrp => "a VRRP address",
            Self::Secondary => "a secondary (IPv4) or temporary (IPv6) address",
            Self::DadFailed => "DAD failed (another host has it)",
            Self::LinkLocal => "link-local",
            Self::Tentative => "tentative (DAD under way)",
        })
    }
}

/// How many passed-over addresses a refusal names (the rest are counted).
const PASSED_OVER_NAMED: usize = 4;

/// The addresses of one family lbd passed over as default outer source,
/// with why: the first few named, the rest counted (fixed size, as
/// `NodeTunnel` is `Copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PassedOver {
    /// The first ones, in the interface's order.
    named: [Option<(IpAddr, PassedOverWhy)>; PASSED_OVER_NAMED],
    /// How many more there are.
    more: usize,
}

impl PassedOver {
    /// The addresses of `addresses` of the family (`ipv6`) that `usable`
    /// refuses, each with the first reason: `moving` says which are VIPs,
    /// NAT or VRRP addresses.
    pub(crate) fn among(
        addresses: &[InterfaceAddress],
        moving: &[(IpAddr, PassedOverWhy)],
        ipv6: bool,
    ) -> Self {
        let mut out = Self::default();
        let of_family = addresses.iter().filter(|a| a.address.is_ipv6() == ipv6);
        for listed in of_family {
            let why = if listed.secondary {
                Some(PassedOverWhy::Secondary)
            } else if listed.state.dad_failed {
                Some(PassedOverWhy::DadFailed)
            } else if let Some((_, why)) = moving.iter().find(|(a, _)| *a == listed.address) {
                Some(*why)
            } else if is_link_local(listed.address) {
                Some(PassedOverWhy::LinkLocal)
            } else if listed.state.tentative {
                Some(PassedOverWhy::Tentative)
            } else {
                None
            };
            let Some(why) = why else { continue };
            match out.named.iter_mut().find(|slot| slot.is_none()) {
                Some(slot) => *slot = Some((listed.address, why)),
                None => out.more += 1,
            }
        }
        out
    }

    /// Whether none was passed over.
    pub(crate) fn is_empty(&self) -> bool {
        self.named[0].is_none()
    }
}

impl std::fmt::Display for PassedOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, (address, why)) in self.named.iter().flatten().enumerate() {
            if n > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{address} is {why}")?;
        }
        if self.more > 0 {
            write!(f, " and {} more", self.more)?;
        }
        Ok(())
    }
}

/// The balancer interface's own addresses lbd uses when `[tunnel]` names
/// no source prefix (and as the health checks' source of the VIP's family
/// for 4in6 VIPs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct OwnAddresses {
    /// Its primary IPv4 address.
    pub(crate) ipv4: Option<IpAddr>,
    /// Its first global IPv6 address.
    pub(crate) ipv6: Option<IpAddr>,
}

impl OwnAddresses {
    /// The interface's primary addresses among `addresses` as `of` picks
    /// them, but keeping each of `kept` (the addresses picked before)
    /// while it is still there and may stay a source (`keepable`: even
    /// while tentative again). The kernel lists the newest global IPv6
    /// address first, so picking afresh on every scan would
    /// move every tunnel's outer source to whatever address an operator
    /// added last (a NAT address, a VIP before its reload), which the
    /// backends' lb-decap `sources` do not allow.
    pub(crate) fn keeping(
        addresses: &[InterfaceAddress],
        moving: &[IpAddr],
        kept: &OwnAddresses,
    ) -> Self {
        let fresh = Self::of(addresses, moving);
        // Kept while it may stay a source (tentative included: the
        // kernel re-runs DAD on it after a carrier flap, and a fresh
        // pick for that second would stay); once deprecated
        // (renumbering), only while the fresh pick is no better.
        let still = |address: Option<IpAddr>, picked: Option<IpAddr>| {
            let preferred = |a: IpAddr| {
                addresses
                    .iter()
                    .any(|listed| listed.address == a && !listed.state.deprecated)
            };
            address.filter(|a| {
                addresses.iter().any(|listed| {
                    listed.address == *a
                        && keepable(listed, moving)
                        && (!listed.state.deprecated || !picked.is_some_and(preferred))
                })
            })
        };
        Self {
            ipv4: still(kept.ipv4, fresh.ipv4).or(fresh.ipv4),
            ipv6: still(kept.ipv6, fresh.ipv6).or(fresh.ipv6),
        }
    }

    /// The own addresses `config` (a `TUNNEL_CONFIG` entry a previous lbd
    /// wrote) takes its outer sources from: each family's source that is
    /// one address (/32, /128), as `resolve` writes an own address. A
    /// restart seeds what it keeps with them, so the source the backends'
    /// lb-decap `sources` allow stays rather than a fresh pick moving it.
    pub(crate) fn sourced_by(config: &TunnelConfig) -> Self {
        Self {
            ipv4: (config.source_v4_len == 32)
                .then(|| words_addr([config.source_v4, 0, 0, 0], AF_INET)),
            ipv6: (config.source_v6_len == 128).then(|| words_addr(config.source_v6, AF_INET6)),
        }
    }

    /// The interface's primary addresses among `addresses`, leaving out
    /// `moving` (VIPs and other addresses VRRP moves: they leave with
    /// mastership), IPv6 link-local ones (not routable to backends) and
    /// those not yet or never usable as a source (tentative, DAD
    /// failed); a deprecated one only when no other is left.
    pub(crate) fn of(addresses: &[InterfaceAddress], moving: &[IpAddr]) -> Self {
        let pick = |family: fn(&IpAddr) -> bool| {
            let mut candidates = addresses
                .iter()
                .filter(|a| usable(a, moving) && family(&a.address));
            let first = candidates.clone().next();
            candidates
                .find(|a| !a.state.deprecated)
                .or(first)
                .map(|a| a.address)
        };
        Self {
            ipv4: pick(IpAddr::is_ipv4),
            ipv6: pick(IpAddr::is_ipv6),
        }
    }

    /// The own address of `address`'s family.
    pub(crate) fn of_family(&self, ipv6: bool) -> Option<IpAddr> {
        if ipv6 {
            self.ipv6
        } else {
            self.ipv4
        }
    }
}

/// Whether `address` may be picked afresh as a default outer source: one
/// that may stay one (`keepable`) and that the kernel sends from now (not
/// tentative: DAD is under way).
fn usable(address: &InterfaceAddress, moving: &[IpAddr]) -> bool {
    keepable(address, moving) && !address.state.tentative
}

/// Whether `address`, the default outer source already, may stay one: a
/// primary address, not one of `moving`, not IPv6 link-local, and not DAD
/// failed (another host has it). A tentative one stays: DAD re-runs after
/// a carrier flap and, unless it fails, leaves the address as it was.
fn keepable(address: &InterfaceAddress, moving: &[IpAddr]) -> bool {
    !address.secondary
        && !address.state.dad_failed
        && !moving.contains(&address.address)
        && !is_link_local(address.address)
}

/// Whether `address` is IPv6 link-local (not routable to backends).
fn is_link_local(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(_) => false,
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// `settings` resolved for the interface `ifindex` whose own addresses are
/// `own`: a configured prefix wins; else the own address as one source.
pub(crate) fn resolve(settings: &TunnelSettings, ifindex: u32, own: &OwnAddresses) -> NodeTunnel {
    let v4 = settings.source_ipv4.or(own.ipv4.map(|a| (a, 32)));
    let v6 = settings.source_ipv6.or(own.ipv6.map(|a| (a, 128)));
    let mut config = TunnelConfig {
        gue_port: settings.gue_port.to_be(),
        ifindex,
        ..TunnelConfig::default()
    };
    if let Some((address, len)) = v4 {
        config.source_v4 = addr_words(address).0[0];
        config.source_v4_len = len;
    }
    if let Some((address, len)) = v6 {
        config.source_v6 = addr_words(address).0;
        config.source_v6_len = len;
    }
    NodeTunnel {
        config,
        ipv4: v4.is_some(),
        ipv6: v6.is_some(),
        ..NodeTunnel::default()
    }
}

impl NodeTunnel {
    /// These settings with `passed_over` (IPv4, IPv6) kept for each
    /// family that has no source, for the refusal to name.
    pub(crate) fn passing_over(self, (v4, v6): (PassedOver, PassedOver)) -> Self {
        Self {
            passed_over_v4: if self.ipv4 { PassedOver::default() } else { v4 },
            passed_over_v6: if self.ipv6 { PassedOver::default() } else { v6 },
            ..self
        }
    }

    /// What lbd passed over for the family `key` (`source_ipv4` or
    /// `source_ipv6`, as `source_for` names it) gives.
    pub(crate) fn passed_over_for(&self, key: &str) -> PassedOver {
        if key == "source_ipv6" {
            self.passed_over_v6
        } else {
            self.passed_over_v4
        }
    }

    /// Whether a backend at `backend` of a VIP at `vip` has an outer
    /// source: the family `outer_family` picks must have one. Says which
    /// `[tunnel]` key is missing otherwise.
    pub(crate) fn source_for(&self, vip: IpAddr, backend: IpAddr) -> Result<(), &'static str> {
        let family = |a: IpAddr| if a.is_ipv4() { AF_INET } else { AF_INET6 };
        match outer_family(family(vip), family(backend)) {
            Some(AF_INET) if !self.ipv4 => Err("source_ipv4"),
            Some(AF_INET6) if !self.ipv6 => Err("source_ipv6"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::AddressState;

    fn address(text: &str, secondary: bool) -> InterfaceAddress {
        InterfaceAddress {
            address: text.parse().unwrap(),
            prefix_len: 24,
            secondary,
            state: AddressState::default(),
        }
    }

    fn in_state(text: &str, state: AddressState) -> InterfaceAddress {
        InterfaceAddress {
            state,
            ..address(text, false)
        }
    }

    const DAD_FAILED: AddressState = AddressState {
        tentative: true,
        dad_failed: true,
        deprecated: false,
    };
    const TENTATIVE: AddressState = AddressState {
        tentative: true,
        dad_failed: false,
        deprecated: false,
    };
    const DEPRECATED: AddressState = AddressState {
        tentative: false,
        dad_failed: false,
        deprecated: true,
    };

    /// An address that failed DAD (another host has it) or is still
    /// tentative is never an outer source (the kernel listing it first,
    /// as the newest, notwithstanding); a deprecated one only when
    /// nothing better is there.
    #[test]
    fn own_addresses_skip_dad_failed_tentative_and_prefer_preferred() {
        let good = || Some("2001:db8::6".parse().unwrap());
        let listed = [
            in_state("2001:db8::5", DAD_FAILED),
            address("2001:db8::6", false),
        ];
        assert_eq!(OwnAddresses::of(&listed, &[]).ipv6, good());
        let listed = [
            in_state("2001:db8::5", TENTATIVE),
            address("2001:db8::6", false),
        ];
        assert_eq!(OwnAddresses::of(&listed, &[]).ipv6, good());
        let listed = [
            in_state("2001:db8::5", DEPRECATED),
            address("2001:db8::6", false),
        ];
        assert_eq!(OwnAddresses::of(&listed, &[]).ipv6, good());
        assert_eq!(
            OwnAddresses::of(&listed[..1], &[]).ipv6,
            Some("2001:db8::5".parse().unwrap()),
            "deprecated, but the only one: still a source"
        );
        assert_eq!(
            OwnAddresses::of(&[in_state("2001:db8::5", TENTATIVE)], &[]).ipv6,
            None
        );
        let nothing_kept = OwnAddresses::default();
        assert_eq!(
            OwnAddresses::keeping(&[in_state("2001:db8::5", TENTATIVE)], &[], &nothing_kept).ipv6,
            None,
            "a fresh pick is never tentative"
        );
        let listed = [
            in_state("2001:db8::5", TENTATIVE),
            address("2001:db8::6", false),
        ];
        assert_eq!(
            OwnAddresses::keeping(&listed, &[], &nothing_kept).ipv6,
            good()
        );
    }

    /// A kept source is dropped once DAD fails on it, and once it is
    /// deprecated (renumbering) while a preferred address is there; but
    /// not while it is only tentative again (the kernel re-runs DAD after
    /// a carrier flap): moving to another address for that second would
    /// keep the tunnels on it, which the backends' lb-decap `sources` do
    /// not allow.
    #[test]
    fn a_kept_source_goes_once_dad_fails_or_it_is_deprecated() {
        let kept = OwnAddresses {
            ipv4: None,
            ipv6: Some("2001:db8::5".parse().unwrap()),
        };
        let good = Some("2001:db8::6".parse().unwrap());
        let failed = [
            address("2001:db8::6", false),
            in_state("2001:db8::5", DAD_FAILED),
        ];
        assert_eq!(OwnAddresses::keeping(&failed, &[], &kept).ipv6, good);
        let deprecated = [
            address("2001:db8::6", false),
            in_state("2001:db8::5", DEPRECATED),
        ];
        assert_eq!(OwnAddresses::keeping(&deprecated, &[], &kept).ipv6, good);
        assert_eq!(
            OwnAddresses::keeping(&deprecated[1..], &[], &kept),
            kept,
            "deprecated with nothing better: kept"
        );
        let rerunning_dad = [
            address("2001:db8::6", false),
            in_state("2001:db8::5", TENTATIVE),
        ];
        assert_eq!(
            OwnAddresses::keeping(&rerunning_dad, &[], &kept),
            kept,
            "tentative again (DAD re-run): kept"
        );
        assert_eq!(
            OwnAddresses::keeping(&rerunning_dad[1..], &[], &kept),
            kept,
            "tentative again and the only one: kept"
        );
        assert_eq!(
            OwnAddresses::keeping(&[in_state("2001:db8::5", DAD_FAILED)], &[], &kept).ipv6,
            None,
            "DAD failed and the only one: not kept"
        );
        let moving = ["2001:db8::5".parse().unwrap()];
        assert_eq!(
            OwnAddresses::keeping(&rerunning_dad, &moving, &kept).ipv6,
            good,
            "tentative and moving with VRRP: not kept"
        );
    }

    #[test]
    fn own_addresses_skip_vips_secondaries_and_link_local() {
        let addresses = [
            address("198.18.0.100", false),
            address("198.18.0.2", false),
            address("198.18.0.3", true),
            address("fe80::1", false),
            address("2001:2::2", false),
        ];
        let own = OwnAddresses::of(&addresses, &["198.18.0.100".parse().unwrap()]);
        assert_eq!(own.ipv4, Some("198.18.0.2".parse().unwrap()));
        assert_eq!(own.ipv6, Some("2001:2::2".parse().unwrap()));
        assert_eq!(
            OwnAddresses::of(&addresses[3..4], &[]),
            OwnAddresses::default()
        );
    }

    /// The kernel lists a newly added global IPv6 address first: the
    /// outer source picked before stays while it is there (the backends'
    /// lb-decap `sources` allow it), and another is picked once it goes
    /// or starts to move with VRRP.
    #[test]
    fn the_picked_own_address_stays_while_it_is_there() {
        let before = [address("198.18.0.2", false), address("2001:2::2", false)];
        let kept = OwnAddresses::of(&before, &[]);
        assert_eq!(kept.ipv6, Some("2001:2::2".parse().unwrap()));
        let added = [
            address("198.18.0.2", false),
            address("2001:2::100", false),
            address("2001:2::2", false),
        ];
        assert_eq!(
            OwnAddresses::of(&added, &[]).ipv6,
            Some("2001:2::100".parse().unwrap()),
            "a fresh pick takes the newest"
        );
        assert_eq!(OwnAddresses::keeping(&added, &[], &kept), kept);
        let gone = [address("198.18.0.2", false), address("2001:2::100", false)];
        assert_eq!(
            OwnAddresses::keeping(&gone, &[], &kept).ipv6,
            Some("2001:2::100".parse().unwrap())
        );
        let moving = ["2001:2::2".parse().unwrap()];
        assert_eq!(
            OwnAddresses::keeping(&added, &moving, &kept).ipv6,
            Some("2001:2::100".parse().unwrap()),
            "an address VRRP moves is never kept"
        );
    }

    /// A restart adopting the data plane keeps the outer sources the
    /// previous lbd's `TUNNEL_CONFIG` holds while they are on the
    /// interface: a fresh pick would take the newest IPv6 address (the
    /// kernel lists it first), which the backends' lb-decap `sources` do
    /// not allow. A configured prefix longer than one address seeds
    /// nothing, nor does an entry never written.
    #[test]
    fn a_restart_keeps_the_sources_the_adopted_tunnel_config_holds() {
        let listed = [
            address("198.18.0.3", false),
            address("198.18.0.2", false),
            address("2001:2::50", false),
            address("2001:2::2", false),
        ];
        let before = OwnAddresses {
            ipv4: Some("198.18.0.2".parse().unwrap()),
            ipv6: Some("2001:2::2".parse().unwrap()),
        };
        let adopted = resolve(&TunnelSettings::default(), 3, &before).config;
        let seeded = OwnAddresses::sourced_by(&adopted);
        assert_eq!(seeded, before);
        assert_eq!(OwnAddresses::keeping(&listed, &[], &seeded), before);
        assert_eq!(
            OwnAddresses::keeping(&listed, &[], &OwnAddresses::default()).ipv6,
            Some("2001:2::50".parse().unwrap()),
            "without the seed the newest is picked"
        );
        let gone = [address("198.18.0.3", false), address("2001:2::50", false)];
        assert_eq!(
            OwnAddresses::keeping(&gone, &[], &seeded),
            OwnAddresses::of(&gone, &[]),
            "a source no longer on the interface is not kept"
        );
        let configured = TunnelSettings {
            source_ipv6: Some(("2001:2:f0::".parse().unwrap(), 64)),
            ..TunnelSettings::default()
        };
        let prefixed = resolve(&configured, 3, &before).config;
        assert_eq!(OwnAddresses::sourced_by(&prefixed).ipv6, None);
        assert_eq!(
            OwnAddresses::sourced_by(&TunnelConfig::default()),
            OwnAddresses::default()
        );
    }

    #[test]
    fn configured_prefixes_win_over_the_interface_address() {
        let own = OwnAddresses {
            ipv4: Some("198.18.0.2".parse().unwrap()),
            ipv6: None,
        };
        let mut settings = TunnelSettings::default();
        let node = resolve(&settings, 7, &own);
        assert_eq!(node.config.ifindex, 7);
        assert_eq!(u16::from_be(node.config.gue_port), 6080);
        assert_eq!(node.config.source_v4.to_ne_bytes(), [198, 18, 0, 2]);
        assert_eq!(node.config.source_v4_len, 32);
        assert!(node.ipv4 && !node.ipv6);
        let vip: IpAddr = "198.18.0.100".parse().unwrap();
        assert_eq!(node.source_for(vip, "198.19.2.11".parse().unwrap()), Ok(()));
        assert_eq!(
            node.source_for(vip, "2001:2:2::11".parse().unwrap()),
            Err("source_ipv6")
        );

        settings.gue_port = 7000;
        settings.source_ipv4 = Some(("198.18.200.0".parse().unwrap(), 24));
        settings.source_ipv6 = Some(("2001:2:f0::".parse().unwrap(), 64));
        let node = resolve(&settings, 7, &own);
        assert_eq!(u16::from_be(node.config.gue_port), 7000);
        assert_eq!(node.config.source_v4.to_ne_bytes(), [198, 18, 200, 0]);
        assert_eq!(node.config.source_v4_len, 24);
        assert_eq!(u32::from_be(node.config.source_v6[0]), 0x2001_0002);
        assert_eq!(u32::from_be(node.config.source_v6[1]), 0x00f0_0000);
        assert_eq!(node.config.source_v6_len, 64);
        assert_eq!(
            node.source_for(vip, "2001:2:2::11".parse().unwrap()),
            Ok(())
        );
    }

    /// An interface whose only IPv4 address is the node-wide NAT address
    /// (which the README allows) has no default IPv4 outer source: the
    /// refusal of a tunnelled VIP's IPv4 backend names that address and
    /// why, rather than telling the operator to add an address of that
    /// family (the interface has one). Tentative, secondary and VIP
    /// addresses are named too; a family with nothing passed over keeps
    /// the plain refusal.
    #[test]
    fn a_missing_outer_source_names_the_addresses_passed_over_and_why() {
        use crate::{
            config::{BackendConfig, Protocol, VipConfig},
            dataplane::FakeMaps,
            reconcile::{Balancer, DesiredVip, ReconcileError},
        };

        let nat: IpAddr = "198.18.0.50".parse().unwrap();
        let addresses = [address("198.18.0.50", false)];
        let moving = [(nat, PassedOverWhy::Nat)];
        let own = OwnAddresses::of(&addresses, &[nat]);
        assert_eq!(own.ipv4, None);
        let passed_over = (
            PassedOver::among(&addresses, &moving, false),
            PassedOver::among(&addresses, &moving, true),
        );
        let node = resolve(&TunnelSettings::default(), 3, &own).passing_over(passed_over);
        let mut vip = VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
        vip.table_size = 13;
        vip.forwarding = lb_common::Mode::Gue;
        vip.backends
            .push(BackendConfig::new("198.19.2.11".parse().unwrap()));
        let desired = [DesiredVip::from_config(&vip, &|_| None)];
        let mut balancer = Balancer::new(4);
        balancer.set_tunnel(node);
        let error = balancer
            .apply(&mut FakeMaps::default(), &desired)
            .expect_err("no IPv4 outer source");
        assert!(
            matches!(error, ReconcileError::NoTunnelSourceAmong { .. }),
            "{error:?}"
        );
        assert!(error.is_refusal());
        let message = error.to_string();
        assert!(
            message.contains("198.18.0.50 is a NAT address")
                && message.contains("[tunnel] source_ipv4"),
            "{message}"
        );

        // Each reason, the first few named and the rest counted; an IPv6
        // family with nothing passed over stays plain.
        let mut tentative = address("2001:db8::5", false);
        tentative.state.tentative = true;
        let listed = [
            tentative,
            address("2001:db8::6", true),
            address("fe80::1", false),
            address("2001:db8::7", false),
            address("2001:db8::8", false),
            address("2001:db8::9", false),
        ];
        let vips: Vec<(IpAddr, PassedOverWhy)> = vec![
            ("2001:db8::7".parse().unwrap(), PassedOverWhy::Vip),
            ("2001:db8::8".parse().unwrap(), PassedOverWhy::Vrrp),
        ];
        assert_eq!(
            PassedOver::among(&listed, &vips, true).to_string(),
            "2001:db8::5 is tentative (DAD under way), \
             2001:db8::6 is a secondary (IPv4) or temporary (IPv6) address, \
             fe80::1 is link-local, 2001:db8::7 is a VIP and 1 more"
        );
        assert!(PassedOver::among(&listed, &vips, false).is_empty());
        let mut plain = Balancer::new(4);
        plain.set_tunnel(resolve(
            &TunnelSettings::default(),
            3,
            &OwnAddresses::default(),
        ));
        let error = plain
            .apply(&mut FakeMaps::default(), &desired)
            .expect_err("no IPv4 outer source");
        assert!(
            matches!(error, ReconcileError::NoTunnelSource { .. }),
            "{error:?}"
        );
    }
}
