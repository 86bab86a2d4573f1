//! The `[tunnel]` table: node-wide settings of the tunnelled modes
//! (`forwarding = "ipip"` and `"gue"`).
//!
//! ```toml
//! [tunnel]
//! gue_port = 6080                   # UDP port backends' lb-decap listens on (GUE)
//! source_ipv4 = "198.18.200.0/24"   # outer IPv4 sources, varied per client
//! source_ipv6 = "2001:2:f0::/64"    # outer IPv6 sources (6in6, 4in6)
//!
//! [[vip]]
//! forwarding = "gue"
//!   [vip.health]
//!   through_tunnel = true           # checks go through the encapsulation
//! ```
//!
//! Outer sources only have to be addresses the backends accept (lb-decap
//! checks the outer destination, not the source) and the network does not
//! filter: replies go straight to the client, never to them. Without a
//! prefix, lbd takes the balancer interface's own primary address of that
//! family as one fixed source (a /32 or /128): every flow then has the same
//! outer source, which is correct but spreads less over backends' receive
//! queues (GUE still varies its UDP source port per flow).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_common::tunnel::GUE_PORT_DEFAULT;
use serde::Deserialize;
use toml::{Spanned, Value};

use super::{value, Checker, ConfigError, VipConfig};

/// Node-wide tunnel settings, as configured (sources not yet resolved
/// against the interface's addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelSettings {
    /// UDP destination port of GUE packets.
    pub gue_port: u16,
    /// Prefix outer IPv4 sources are taken from (None: the interface's own
    /// IPv4 address).
    pub source_ipv4: Option<(IpAddr, u8)>,
    /// Prefix outer IPv6 sources are taken from (None: the interface's own
    /// IPv6 address).
    pub source_ipv6: Option<(IpAddr, u8)>,
}

impl Default for TunnelSettings {
    fn default() -> Self {
        Self {
            gue_port: GUE_PORT_DEFAULT,
            source_ipv4: None,
            source_ipv6: None,
        }
    }
}

/// Writes a prefix as `ADDRESS/LENGTH`.
pub(crate) fn prefix_text((address, len): (IpAddr, u8)) -> String {
    format!("{address}/{len}")
}

/// The `[tunnel]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [tunnel] table")]
pub(super) struct RawTunnel {
    gue_port: Option<Spanned<Value>>,
    source_ipv4: Option<Spanned<Value>>,
    source_ipv6: Option<Spanned<Value>>,
}

impl super::TableName for RawTunnel {
    const NAME: &'static str = "tunnel";
}

impl Checker<'_> {
    /// The `[tunnel]` table (defaults when absent).
    pub(super) fn tunnel(
        &self,
        raw: Option<&Spanned<super::raw::OneTable<RawTunnel>>>,
    ) -> Result<TunnelSettings, ConfigError> {
        let mut out = TunnelSettings::default();
        let Some(raw) = raw else {
            return Ok(out);
        };
        let raw = raw.get_ref().get();
        if let Some(v) = &raw.gue_port {
            out.gue_port = self.rule(v, "tunnel.gue_port", value::port)?;
        }
        for (v, name, ipv6) in [
            (&raw.source_ipv4, "tunnel.source_ipv4", false),
            (&raw.source_ipv6, "tunnel.source_ipv6", true),
        ] {
            let Some(v) = v else { continue };
            let text = self.string(v, name)?;
            let prefix = self.checked(v, name, value::prefix(text, ipv6))?;
            self.checked(v, name, outer_source_routable(prefix))?;
            if ipv6 {
                out.source_ipv6 = Some(prefix);
            } else {
                out.source_ipv4 = Some(prefix);
            }
        }
        Ok(out)
    }
}

/// Whether the prefix `(network, len)` holds `address`.
/// Why `address` (a VIP's or a backend's, `what`) cannot be served beside
/// `tunnel`: one of its outer-source prefixes holds it, as the file's own
/// check refuses (for a VIP or backend added at run time).
pub(crate) fn outer_sources_hold(
    tunnel: &TunnelSettings,
    address: IpAddr,
    what: &str,
) -> Option<String> {
    [
        ("source_ipv4", tunnel.source_ipv4),
        ("source_ipv6", tunnel.source_ipv6),
    ]
    .into_iter()
    .find_map(|(key, prefix)| {
        let prefix = prefix?;
        contains(prefix, address).then(|| {
            format!(
                "{what} {address} is inside [tunnel] {key} = {}: outer sources must be addresses of no VIP or backend",
                prefix_text(prefix)
            )
        })
    })
}

fn contains((network, len): (IpAddr, u8), address: IpAddr) -> bool {
    match (network, address) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n)
        }
        _ => false,
    }
}

/// Whether the prefixes `a` and `b` share an address (one holds the
/// other's network address).
fn overlaps(a: (IpAddr, u8), b: (IpAddr, u8)) -> bool {
    contains(a, b.0) || contains(b, a.0)
}

/// Refuses outer sources no network routes: loopback (`127.0.0.0/8`,
/// `::1`), link-local (`169.254.0.0/16`, `fe80::/10`: routers do not
/// forward packets from them, so every routed backend would get nothing)
/// and the IPv4 broadcast address, which routers and backends drop as
/// martians.
fn outer_source_routable(prefix: (IpAddr, u8)) -> Result<(), value::ValueError> {
    let text = prefix_text(prefix);
    let loopback_v4 = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0));
    let overlaps_loopback = prefix.0.is_loopback()
        || contains(prefix, loopback_v4)
        || contains(prefix, IpAddr::V6(Ipv6Addr::LOCALHOST));
    if overlaps_loopback {
        return Err(value::ValueError::invalid(format!(
            "{text} holds loopback addresses: backends and routers drop packets from them; give a prefix of addresses the network routes"
        )));
    }
    let link_local_v4 = (IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16);
    let link_local_v6 = (IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10);
    if overlaps(prefix, link_local_v4) || overlaps(prefix, link_local_v6) {
        return Err(value::ValueError::invalid(format!(
            "{text} holds link-local addresses (169.254.0.0/16, fe80::/10): routers do not forward packets from them, so no routed backend would get any; give a prefix of addresses the network routes"
        )));
    }
    if contains(prefix, IpAddr::V4(Ipv4Addr::BROADCAST)) {
        return Err(value::ValueError::invalid(format!(
            "{text} holds the broadcast address 255.255.255.255: give a prefix of addresses the network routes"
        )));
    }
    Ok(())
}

impl Checker<'_> {
    /// No outer source is a VIP's or a backend's address: a backend would
    /// take packets from its own address (or a VIP's) for spoofed and drop
    /// them, or answer the tunnel to the wrong host.
    pub(super) fn tunnel_sources_are_free(
        &self,
        raw: Option<&Spanned<super::raw::OneTable<RawTunnel>>>,
        tunnel: &TunnelSettings,
        vips: &[VipConfig],
    ) -> Result<(), ConfigError> {
        let Some(raw) = raw else {
            return Ok(());
        };
        let raw = raw.get_ref().get();
        for (v, name, prefix) in [
            (&raw.source_ipv4, "tunnel.source_ipv4", tunnel.source_ipv4),
            (&raw.source_ipv6, "tunnel.source_ipv6", tunnel.source_ipv6),
        ] {
            let (Some(v), Some(prefix)) = (v, prefix) else {
                continue;
            };
            let text = prefix_text(prefix);
            for (index, vip) in vips.iter().enumerate() {
                if contains(prefix, vip.address) {
                    return Err(self.bad_value(
                        v,
                        name,
                        format!(
                            "{text} holds vip[{index}]'s address {}: outer sources must be addresses of no VIP",
                            vip.address
                        ),
                    ));
                }
                for (b, backend) in vip.backends.iter().enumerate() {
                    if contains(prefix, backend.address) {
                        return Err(self.bad_value(
                            v,
                            name,
                            format!(
                                "{text} holds the address {} of vip[{index}].backend[{b}]: a backend drops packets from its own address",
                                backend.address
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use lb_common::Mode;

    use super::*;
    use crate::config::Config;

    const GUE_VIP: &str = r#"interface = "eth0"
[tunnel]
gue_port = 7000
source_ipv4 = "198.18.200.0/24"
source_ipv6 = "2001:2:f0::/64"

[[vip]]
address = "198.18.0.100"
port = 80
forwarding = "gue"
  [vip.health]
  through_tunnel = true
  [[vip.backend]]
  address = "198.19.2.11"
  [[vip.backend]]
  address = "2001:2:2::12"
"#;

    fn load(text: &str) -> Result<Config, String> {
        Config::from_toml_str(text, "lbd.toml").map_err(|e| e.to_string())
    }

    fn error(text: &str) -> String {
        match load(text) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_gue_vip_takes_v4_and_v6_backends_and_the_tunnel_table() {
        let config = load(GUE_VIP).unwrap();
        assert_eq!(config.tunnel.gue_port, 7000);
        assert_eq!(
            config.tunnel.source_ipv4,
            Some(("198.18.200.0".parse().unwrap(), 24))
        );
        assert_eq!(
            config.tunnel.source_ipv6,
            Some(("2001:2:f0::".parse().unwrap(), 64))
        );
        let vip = &config.vips[0];
        assert_eq!(vip.forwarding, Mode::Gue);
        assert!(vip.health.through_tunnel);
        assert!(vip.backends[1].address.is_ipv6());
        let dumped = crate::config::to_toml(&config);
        assert_eq!(load(&dumped).unwrap(), config, "{dumped}");
    }

    #[test]
    fn defaults_without_a_tunnel_table() {
        let config = load(&GUE_VIP.replace("[tunnel]\ngue_port = 7000\nsource_ipv4 = \"198.18.200.0/24\"\nsource_ipv6 = \"2001:2:f0::/64\"\n", "")).unwrap();
        assert_eq!(config.tunnel, TunnelSettings::default());
        assert_eq!(config.tunnel.gue_port, GUE_PORT_DEFAULT);
    }

    #[test]
    fn bad_values_name_their_field() {
        for (from, to, expected) in [
            (
                "gue_port = 7000",
                "gue_port = 0",
                "tunnel.gue_port: 0 is out of range 1..=65535",
            ),
            (
                "gue_port = 7000",
                "gue_port = 70000",
                "tunnel.gue_port: 70000 is out of range",
            ),
            (
                "gue_port = 7000",
                "gue_port = \"x\"",
                "tunnel.gue_port: expected an integer",
            ),
            ("gue_port = 7000", "gue_prt = 1", "unknown field `gue_prt`"),
            (
                "\"198.18.200.0/24\"",
                "\"198.18.200.1/24\"",
                "tunnel.source_ipv4: \"198.18.200.1/24\" has host bits set",
            ),
            (
                "\"198.18.200.0/24\"",
                "\"2001:2::/64\"",
                "tunnel.source_ipv4: \"2001:2::/64\" is not IPv4",
            ),
            (
                "\"2001:2:f0::/64\"",
                "\"2001:2:f0::/129\"",
                "tunnel.source_ipv6: \"2001:2:f0::/129\": the prefix length must be 0..=128",
            ),
            (
                "  address = \"2001:2:2::12\"",
                "  address = \"2001:2:2::12\"\n  port = 8080",
                "vip[0].backend[1].port: direct server return keeps the VIP's port (forwarding = \"gue\")",
            ),
            (
                "  address = \"2001:2:2::12\"",
                "  address = \"2001:2:2::12\"\n  mac = \"02:00:00:00:00:12\"",
                "vip[0].backend[1].mac: a tunnelled (gue) VIP's backends are routed",
            ),
            (
                "through_tunnel = true",
                "through_tunnel = 1",
                "vip[0].health.through_tunnel: expected true or false, found an integer",
            ),
        ] {
            assert!(GUE_VIP.contains(from), "{from}");
            let message = error(&GUE_VIP.replacen(from, to, 1));
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn through_tunnel_belongs_to_tunnelled_vips_only() {
        for mode in ["dsr-l2", "nat"] {
            let text = GUE_VIP
                .replace(
                    "forwarding = \"gue\"",
                    &format!("forwarding = \"{mode}\"\nnat_source = \"198.18.0.50\""),
                )
                .replace("  [[vip.backend]]\n  address = \"2001:2:2::12\"\n", "");
            let text = if mode == "nat" {
                text
            } else {
                text.replace("nat_source = \"198.18.0.50\"\n", "")
            };
            let message = error(&text);
            assert!(
                message.contains("vip[0].health.through_tunnel: only a VIP with forwarding = \"ipip\" or \"gue\""),
                "{message}"
            );
        }
        // On a backend's own table too.
        let text = GUE_VIP
            .replace("forwarding = \"gue\"\n  [vip.health]\n  through_tunnel = true\n", "")
            .replace("  address = \"198.19.2.11\"\n", "  address = \"198.19.2.11\"\n    [vip.backend.health]\n    through_tunnel = true\n")
            .replace("  [[vip.backend]]\n  address = \"2001:2:2::12\"\n", "");
        assert!(error(&text).contains("vip[0].backend[0].health.through_tunnel: only a VIP"));
        // false is always fine.
        let text = GUE_VIP
            .replace("forwarding = \"gue\"", "forwarding = \"dsr-l2\"")
            .replace("through_tunnel = true", "through_tunnel = false")
            .replace("  [[vip.backend]]\n  address = \"2001:2:2::12\"\n", "");
        assert!(!load(&text).unwrap().vips[0].health.through_tunnel);
    }

    #[test]
    fn a_v6_vip_refuses_v4_backends_and_other_modes_refuse_v6_backends_of_a_v4_vip() {
        let text = GUE_VIP
            .replace("address = \"198.18.0.100\"", "address = \"2001:2::100\"")
            .replace("  [[vip.backend]]\n  address = \"2001:2:2::12\"\n", "");
        assert!(error(&text).contains(
            "vip[0].backend[0].address: 198.19.2.11 is IPv4 but the VIP 2001:2::100 is IPv6 (an IPv6 VIP cannot be carried to an IPv4 backend)"
        ));
        let text = GUE_VIP
            .replace("forwarding = \"gue\"", "forwarding = \"dsr-l2\"")
            .replace("through_tunnel = true", "through_tunnel = false");
        assert!(error(&text).contains("vip[0].backend[1].address: 2001:2:2::12 is IPv6 but"));
    }

    #[test]
    fn outer_sources_are_no_vip_backend_loopback_or_broadcast() {
        for (from, to, expected) in [
            (
                "\"198.18.200.0/24\"",
                "\"198.18.0.100\"",
                "lbd.toml:4:15: tunnel.source_ipv4: 198.18.0.100/32 holds vip[0]'s address 198.18.0.100: outer sources must be addresses of no VIP",
            ),
            (
                "\"198.18.200.0/24\"",
                "\"198.18.0.0/24\"",
                "lbd.toml:4:15: tunnel.source_ipv4: 198.18.0.0/24 holds vip[0]'s address 198.18.0.100",
            ),
            (
                "\"198.18.200.0/24\"",
                "\"198.19.2.11\"",
                "lbd.toml:4:15: tunnel.source_ipv4: 198.19.2.11/32 holds the address 198.19.2.11 of vip[0].backend[0]: a backend drops packets from its own address",
            ),
            (
                "\"2001:2:f0::/64\"",
                "\"2001:2:2::/64\"",
                "lbd.toml:5:15: tunnel.source_ipv6: 2001:2:2::/64 holds the address 2001:2:2::12 of vip[0].backend[1]",
            ),
            (
                "\"198.18.200.0/24\"",
                "\"127.0.0.0/8\"",
                "lbd.toml:4:15: tunnel.source_ipv4: 127.0.0.0/8 holds loopback addresses",
            ),
            (
                "\"198.18.200.0/24\"",
                "\"64.0.0.0/2\"",
                "lbd.toml:4:15: tunnel.source_ipv4: 64.0.0.0/2 holds loopback addresses",
            ),
            (
                "\"198.18.200.0/24\"",
                "\"255.255.255.255\"",
                "lbd.toml:4:15: tunnel.source_ipv4: 255.255.255.255/32 holds the broadcast address",
            ),
            (
                "\"2001:2:f0::/64\"",
                "\"::1\"",
                "lbd.toml:5:15: tunnel.source_ipv6: ::1/128 holds loopback addresses",
            ),
            (
                "\"2001:2:f0::/64\"",
                "\"fe80::/64\"",
                "lbd.toml:5:15: tunnel.source_ipv6: fe80::/64 holds link-local addresses",
            ),
            (
                "\"2001:2:f0::/64\"",
                "\"fe80::1\"",
                "lbd.toml:5:15: tunnel.source_ipv6: fe80::1/128 holds link-local addresses",
            ),
            (
                "\"2001:2:f0::/64\"",
                "\"fe00::/7\"",
                "lbd.toml:5:15: tunnel.source_ipv6: fe00::/7 holds link-local addresses",
            ),
            (
                "\"198.18.200.0/24\"",
                "\"169.254.0.0/16\"",
                "lbd.toml:4:15: tunnel.source_ipv4: 169.254.0.0/16 holds link-local addresses",
            ),
            (
                "\"198.18.200.0/24\"",
                "\"169.254.7.0/24\"",
                "lbd.toml:4:15: tunnel.source_ipv4: 169.254.7.0/24 holds link-local addresses",
            ),
            (
                "\"198.18.200.0/24\"",
                "\"128.0.0.0/1\"",
                "lbd.toml:4:15: tunnel.source_ipv4: 128.0.0.0/1 holds link-local addresses",
            ),
        ] {
            assert!(GUE_VIP.contains(from), "{from}");
            let message = error(&GUE_VIP.replacen(from, to, 1));
            assert!(message.starts_with(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn an_address_added_at_run_time_inside_an_outer_source_prefix_is_named() {
        let tunnel = TunnelSettings {
            source_ipv4: Some(("198.18.200.0".parse().unwrap(), 24)),
            ..TunnelSettings::default()
        };
        let why = outer_sources_hold(&tunnel, "198.18.200.10".parse().unwrap(), "VIP").unwrap();
        assert_eq!(
            why,
            "VIP 198.18.200.10 is inside [tunnel] source_ipv4 = 198.18.200.0/24: outer sources must be addresses of no VIP or backend"
        );
        assert_eq!(
            outer_sources_hold(&tunnel, "198.18.201.10".parse().unwrap(), "VIP"),
            None
        );
        assert_eq!(
            outer_sources_hold(&tunnel, "2001:2::1".parse().unwrap(), "backend"),
            None
        );
    }
}
