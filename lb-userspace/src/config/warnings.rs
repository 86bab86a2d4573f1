//! Things a valid configuration allows but an operator most likely did not
//! mean: `lbctl config check` prints them and lbd logs them at start-up,
//! neither refuses the file.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use super::{Config, VipConfig};
use crate::netlink::InterfaceAddress;

/// One doubtful value, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The field, as the config file names it (`vip[0]`,
    /// `vip[0].backend[1].address`).
    pub field: String,
    /// What is doubtful about it and what follows.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every warning about `config`, in file order.
pub fn warnings(config: &Config) -> Vec<Warning> {
    let mut out = Vec::new();
    for (index, vip) in config.vips.iter().enumerate() {
        vip_warnings(index, vip, &mut out);
    }
    bgp_warnings(config, &mut out);
    super::sync::sizing_warnings(config, &mut out);
    super::sync::startup_wait_warnings(config, &mut out);
    idle_warnings(config, &mut out);
    unmoved_warnings(config, &mut out);
    super::vrrp::owner_warnings(config, &mut out);
    out
}

/// The IPv6 VIPs and NAT addresses of `config` that `held` (the
/// addresses on `config.interface`, as [`crate::netlink::Netlink::addresses`]
/// reads them) holds in preferred form, each with the command that makes
/// it deprecated. The kernel picks such an address as the source of
/// lbd's health checks (RFC 6724's longest match: a `/128` beats the
/// node's `/64`), and a dsr-l2, ipip or gue backend, holding the VIP on
/// its `lo`, answers itself: every check fails. A deprecated address
/// (`preferred_lft 0`, as lbd adds its VRRP addresses) still receives but
/// is never picked; one whose duplicate address detection failed is not
/// used at all. IPv4 has no such rule: nothing to warn of there.
pub(crate) fn preferred_held_address_warnings(
    config: &Config,
    held: &[InterfaceAddress],
) -> Vec<Warning> {
    let mut configured: Vec<(String, IpAddr)> = Vec::new();
    for (index, vip) in config.vips.iter().enumerate() {
        configured.push((format!("vip[{index}].address"), vip.address));
        if let Some(nat) = vip.nat {
            let field = if nat.own_source {
                format!("vip[{index}].nat_source")
            } else {
                "nat.source_ipv6".to_owned()
            };
            configured.push((field, nat.source));
        }
    }
    let interface = &config.interface;
    let mut seen: Vec<IpAddr> = Vec::new();
    let mut out = Vec::new();
    for (field, address) in configured {
        if !address.is_ipv6() || seen.contains(&address) {
            continue;
        }
        let Some(on) = held
            .iter()
            .find(|h| h.address == address && !h.state.deprecated && !h.state.dad_failed)
        else {
            continue;
        };
        seen.push(address);
        let prefix_len = on.prefix_len;
        out.push(Warning {
            field,
            message: format!(
                "{address} is on {interface} as a preferred address: the kernel picks it (longest match) as the source of lbd's health checks toward its subnet, and a dsr-l2, ipip or gue backend holding it on lo answers itself, so every check fails; make it deprecated (it still receives, but is never picked as a source): ip -6 addr change {address}/{prefix_len} dev {interface} preferred_lft 0 nodad"
            ),
        });
    }
    out
}

/// With VRRP, lbd moves only the addresses its instances hold: a VIP
/// whose address no instance moves and `[bgp]` does not announce is
/// served only where the operator puts the address, which a file with
/// VRRP most likely did not mean (e.g. IPv6 VIPs beside an instance that
/// defaults to the first VIP's family, IPv4).
fn unmoved_warnings(config: &Config, out: &mut Vec<Warning>) {
    if config.vrrp.is_empty() {
        return;
    }
    let mut seen: Vec<IpAddr> = Vec::new();
    for (index, vip) in config.vips.iter().enumerate() {
        if seen.contains(&vip.address) {
            continue;
        }
        seen.push(vip.address);
        if config
            .vrrp
            .iter()
            .any(|i| i.addresses.contains(&vip.address))
        {
            continue;
        }
        if config
            .bgp
            .as_ref()
            .is_some_and(|b| b.covers(vip.address, false))
        {
            continue;
        }
        let family = if vip.address.is_ipv4() {
            "IPv4"
        } else {
            "IPv6"
        };
        let same_family = config.vrrp.iter().position(|i| {
            i.addresses
                .first()
                .is_some_and(|a| a.is_ipv4() == vip.address.is_ipv4())
        });
        let mut what = match same_family {
            Some(i) => format!("add it to vrrp[{i}].addresses"),
            None => format!(
                "add a [[vrrp]] for {family} with addresses = [\"{}\"]",
                vip.address
            ),
        };
        if config.bgp.is_some() {
            what.push_str(", or to [bgp].addresses");
        }
        out.push(Warning {
            field: format!("vip[{index}].address"),
            message: format!(
                "no [[vrrp]] moves {} and [bgp] does not announce it: lbd serves the VIP but leaves its address where you put it; {what}",
                vip.address
            ),
        });
    }
}

/// `tcp_idle_timeout_s` raised past `[nat] tcp_established_timeout_s`
/// while NAT VIPs exist: the first does not apply to them (their
/// translations are held by the second), so their idle connections are
/// freed sooner than the operator who raised it likely meant (a pool of
/// database connections kept for hours).
fn idle_warnings(config: &Config, out: &mut Vec<Warning>) {
    let established = config.nat.timeouts.tcp_established;
    if config.tcp_idle_timeout <= established {
        return;
    }
    let nat: Vec<String> = config
        .vips
        .iter()
        .enumerate()
        .filter(|(_, v)| v.forwarding == lb_common::Mode::Nat && v.protocol == super::Protocol::Tcp)
        .map(|(i, _)| format!("vip[{i}]"))
        .collect();
    if nat.is_empty() {
        return;
    }
    out.push(Warning {
        field: "tcp_idle_timeout_s".to_owned(),
        message: format!(
            "{} s is longer than [nat] tcp_established_timeout_s ({} s), and does not apply to NAT VIPs ({}): their idle connections are freed after {} s; raise [nat] tcp_established_timeout_s too to hold them as long",
            config.tcp_idle_timeout.as_secs(),
            established.as_secs(),
            nat.join(", "),
            established.as_secs()
        ),
    });
}

/// Active-active nodes must agree on every flow's backend.
fn bgp_warnings(config: &Config, out: &mut Vec<Warning>) {
    if config.bgp.is_none() {
        return;
    }
    if config.sync.is_none() {
        out.push(Warning {
            field: "bgp".to_owned(),
            message: "no [sync]: flows are not replicated to the other nodes, so a flow the routers move to another node (a node joins, leaves or drains) breaks if that node would pick another backend for it (after a backend change)".to_owned(),
        });
    }
    if config.maglev_mode == super::MaglevMode::Minimal {
        out.push(Warning {
            field: "maglev_mode".to_owned(),
            message: "\"minimal\" tables depend on the order of past changes, so nodes that saw different histories pick different backends for untracked flows; active-active nodes want \"consistent\" (a pure function of the backend set)".to_owned(),
        });
    }
}

fn vip_warnings(index: usize, vip: &VipConfig, out: &mut Vec<Warning>) {
    let service = format!(
        "{}/{}",
        SocketAddr::new(vip.address, vip.port),
        vip.protocol
    );
    if let Some(kind) = unusual(vip.address) {
        out.push(Warning {
            field: format!("vip[{index}].address"),
            message: format!(
                "{} is {kind}: clients on the network cannot reach this VIP",
                vip.address
            ),
        });
    }
    if let Some(message) = link_local_vip(vip.address) {
        out.push(Warning {
            field: format!("vip[{index}].address"),
            message,
        });
    }
    if vip.backends.is_empty() {
        out.push(Warning {
            field: format!("vip[{index}]"),
            message: format!("VIP {service} has no backends: it drops every new flow"),
        });
    } else if vip.backends.iter().all(|b| b.weight == 0) {
        out.push(Warning {
            field: format!("vip[{index}]"),
            message: format!(
                "every backend of VIP {service} has weight 0: it drops every new flow"
            ),
        });
    }
    if vip.health.through_tunnel && vip.health.check == super::CheckType::None {
        out.push(Warning {
            field: format!("vip[{index}].health.through_tunnel"),
            message: format!(
                "VIP {service} has no health checks (check = \"none\"): nothing goes through the tunnel; set check = \"tcp\" or \"http\""
            ),
        });
    }
    let defaults = super::HealthConfig::default_for(super::Protocol::Tcp);
    for message in [
        http_keys_unused(&vip.health, &defaults),
        pgsql_keys_unused(&vip.health, &defaults),
    ]
    .into_iter()
    .flatten()
    {
        out.push(Warning {
            field: format!("vip[{index}].health"),
            message,
        });
    }
    for (b, backend) in vip.backends.iter().enumerate() {
        let own = backend.health.as_ref();
        for message in [
            own.and_then(|h| http_keys_unused(h, &vip.health)),
            own.and_then(|h| pgsql_keys_unused(h, &vip.health)),
        ]
        .into_iter()
        .flatten()
        {
            out.push(Warning {
                field: format!("vip[{index}].backend[{b}].health"),
                message,
            });
        }
        if let Some(kind) = unusual(backend.address) {
            out.push(Warning {
                field: format!("vip[{index}].backend[{b}].address"),
                message: format!(
                    "{} is {kind}: no backend on the network has it",
                    backend.address
                ),
            });
        }
    }
}

/// HTTP keys set where the check is not HTTP: a `path` meant to select
/// healthy servers selects nothing (a TCP check passes whatever the
/// application answers). Only the keys that differ from `base`, what
/// `health` was read over (lbd's defaults for a VIP; its VIP's checks for
/// a backend, whose table is merged over them): a backend that sets
/// `check = "tcp"` under an HTTP check of its VIP inherits its `path`
/// without setting it, and was told to set check = "http" (the import
/// writes such backends for HAProxy servers whose HTTP check met TLS).
fn http_keys_unused(health: &super::HealthConfig, base: &super::HealthConfig) -> Option<String> {
    if health.check == super::CheckType::Http {
        return None;
    }
    let mut set = Vec::new();
    if health.path != base.path {
        set.push("path");
    }
    if health.host.is_some() && health.host != base.host {
        set.push("host");
    }
    if health.expect_status != base.expect_status {
        set.push("expect_status");
    }
    if set.is_empty() {
        return None;
    }
    Some(format!(
        "{} set but check = \"{}\": only an HTTP check uses them (set check = \"http\")",
        set.join(", "),
        health.check
    ))
}

/// PostgreSQL keys set where the check is not `pgsql`: a `user` meant to
/// have the server vouch for the backend is never sent (a TCP check
/// passes while the server refuses every session). Only the keys that
/// differ from `base`, as for [`http_keys_unused`].
fn pgsql_keys_unused(health: &super::HealthConfig, base: &super::HealthConfig) -> Option<String> {
    if health.check == super::CheckType::Pgsql {
        return None;
    }
    let mut set = Vec::new();
    if health.user.is_some() && health.user != base.user {
        set.push("user");
    }
    if health.database.is_some() && health.database != base.database {
        set.push("database");
    }
    if set.is_empty() {
        return None;
    }
    Some(format!(
        "{} set but check = \"{}\": only a PostgreSQL check uses them (set check = \"pgsql\")",
        set.join(", "),
        health.check
    ))
}

/// What kind of address `address` is, if it is no address of one host on
/// the network.
fn unusual(address: IpAddr) -> Option<&'static str> {
    let address = address.to_canonical();
    if address.is_loopback() {
        Some("a loopback address")
    } else if address.is_multicast() {
        Some("a multicast address")
    } else if address.is_unspecified() {
        Some("the unspecified address")
    } else if address == IpAddr::V4(Ipv4Addr::BROADCAST) {
        Some("the broadcast address")
    } else if matches!(address, IpAddr::V4(v4) if v4.octets()[0] == 0) {
        Some("in 0.0.0.0/8 (\"this network\", RFC 1122: a source only, never a destination; Linux drops packets to it)")
    } else if matches!(address, IpAddr::V4(v4) if v4.octets()[0] >= 240) {
        Some("in 240.0.0.0/4 (reserved, RFC 1112: routers and most hosts drop packets to it)")
    } else {
        None
    }
}

/// The warning for a VIP at a link-local `address` (169.254.0.0/16,
/// fe80::/10): routers never forward to it, so only clients on the
/// node's own link reach it — rarely what a VIP is for, and then a
/// typo of a routable address is the likelier reading.
fn link_local_vip(address: IpAddr) -> Option<String> {
    let link_local = match address.to_canonical() {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    };
    link_local.then(|| {
        format!(
            "{address} is a link-local address: routers do not forward to it, so only clients on this node's own link reach this VIP"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendConfig, Protocol};

    fn config(vips: Vec<VipConfig>) -> Config {
        let mut config = Config::from_toml_str("interface = \"eth0\"\n", "test.toml").unwrap();
        config.vips = vips;
        config
    }

    fn vip(address: &str, backends: &[(&str, u32)]) -> VipConfig {
        let mut vip = VipConfig::new(address.parse().unwrap(), 80, Protocol::Tcp);
        vip.backends = backends
            .iter()
            .map(|(address, weight)| BackendConfig {
                weight: *weight,
                ..BackendConfig::new(address.parse().unwrap())
            })
            .collect();
        vip
    }

    fn shown(config: &Config) -> Vec<String> {
        warnings(config).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_sound_config_has_none() {
        let sound = config(vec![
            vip("198.18.0.100", &[("198.18.0.11", 100), ("198.18.0.12", 0)]),
            vip("2001:2::100", &[("2001:2::11", 1)]),
        ]);
        assert_eq!(shown(&sound), Vec::<String>::new());
        assert_eq!(shown(&config(Vec::new())), Vec::<String>::new());
    }

    /// The operator raised tcp_idle_timeout_s thinking it covers NAT VIPs.
    #[test]
    fn an_idle_timeout_past_the_nat_one_is_warned_of_when_nat_vips_exist() {
        let mut nat = vip("198.18.0.100", &[("198.18.0.11", 1)]);
        nat.forwarding = lb_common::Mode::Nat;
        let mut long = config(vec![vip("198.18.0.101", &[("198.18.0.12", 1)]), nat]);
        long.tcp_idle_timeout = std::time::Duration::from_secs(28_800);
        assert_eq!(
            shown(&long),
            ["tcp_idle_timeout_s: 28800 s is longer than [nat] tcp_established_timeout_s (7440 s), and does not apply to NAT VIPs (vip[1]): their idle connections are freed after 7440 s; raise [nat] tcp_established_timeout_s too to hold them as long"]
        );
        long.nat.timeouts.tcp_established = std::time::Duration::from_secs(29_040);
        assert_eq!(shown(&long), Vec::<String>::new());
        // Without NAT VIPs, nothing to say.
        long.nat.timeouts.tcp_established = std::time::Duration::from_secs(7440);
        long.vips.truncate(1);
        assert_eq!(shown(&long), Vec::<String>::new());
    }

    #[test]
    fn vips_that_take_no_flow() {
        let doubtful = config(vec![
            vip("198.18.0.100", &[]),
            vip("2001:2::100", &[("2001:2::11", 0), ("2001:2::12", 0)]),
        ]);
        assert_eq!(
            shown(&doubtful),
            [
                "vip[0]: VIP 198.18.0.100:80/tcp has no backends: it drops every new flow",
                "vip[1]: every backend of VIP [2001:2::100]:80/tcp has weight 0: it drops every new flow",
            ]
        );
    }

    #[test]
    fn checks_through_the_tunnel_need_checks() {
        let mut tunnelled = vip("198.18.0.100", &[("198.19.2.11", 1)]);
        tunnelled.forwarding = lb_common::Mode::Gue;
        tunnelled.health.through_tunnel = true;
        assert_eq!(
            shown(&config(vec![tunnelled.clone()])),
            Vec::<String>::new()
        );
        tunnelled.health.check = crate::config::CheckType::None;
        assert_eq!(
            shown(&config(vec![tunnelled])),
            ["vip[0].health.through_tunnel: VIP 198.18.0.100:80/tcp has no health checks (check = \"none\"): nothing goes through the tunnel; set check = \"tcp\" or \"http\""]
        );
    }

    #[test]
    fn http_keys_without_an_http_check_are_named() {
        let mut web = vip("198.18.0.100", &[("198.18.0.11", 1)]);
        web.health.path = "/healthz".to_owned();
        web.health.expect_status = 204;
        assert_eq!(
            shown(&config(vec![web.clone()])),
            ["vip[0].health: path, expect_status set but check = \"tcp\": only an HTTP check uses them (set check = \"http\")"]
        );
        web.health.check = crate::config::CheckType::Http;
        assert_eq!(shown(&config(vec![web.clone()])), Vec::<String>::new());
        let mut own = web.health.clone();
        own.check = crate::config::CheckType::Tcp;
        own.host = Some("example.test".to_owned());
        web.backends[0].health = Some(own);
        // path and expect_status are the VIP's, under its HTTP check.
        assert_eq!(
            shown(&config(vec![web])),
            ["vip[0].backend[0].health: host set but check = \"tcp\": only an HTTP check uses them (set check = \"http\")"]
        );
    }

    #[test]
    fn pgsql_keys_without_a_pgsql_check_are_named() {
        let mut db = vip("198.18.0.100", &[("198.18.0.11", 1)]);
        db.health.user = Some("haproxy".to_owned());
        db.health.database = Some("app".to_owned());
        assert_eq!(
            shown(&config(vec![db.clone()])),
            ["vip[0].health: user, database set but check = \"tcp\": only a PostgreSQL check uses them (set check = \"pgsql\")"]
        );
        db.health.check = crate::config::CheckType::Pgsql;
        assert_eq!(shown(&config(vec![db.clone()])), Vec::<String>::new());
        // A backend that checks TCP under the VIP's pgsql check inherits
        // them unwarned.
        let mut own = db.health.clone();
        own.check = crate::config::CheckType::Tcp;
        db.backends[0].health = Some(own);
        assert_eq!(shown(&config(vec![db])), Vec::<String>::new());
    }

    /// A backend's table is merged over its VIP's: one that makes its
    /// check TCP under an HTTP check (as the import writes for a server
    /// whose HTTP check met TLS) inherits path and expect_status without
    /// setting them, and is not told to set check = "http" for them.
    #[test]
    fn a_backend_checking_tcp_under_an_http_vip_check_is_not_warned_of_its_keys() {
        let text = |own: &str| {
            format!(
                "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n[vip.health]\ncheck = \"http\"\npath = \"/healthz\"\nexpect_status = 204\n[[vip.backend]]\naddress = \"198.18.0.11\"\n[vip.backend.health]\ncheck = \"tcp\"\n{own}"
            )
        };
        let loaded = Config::from_toml_str(&text(""), "test.toml").unwrap();
        assert_eq!(shown(&loaded), Vec::<String>::new());
        // A key the backend's own table sets is still named.
        let loaded = Config::from_toml_str(&text("path = \"/other\"\n"), "test.toml").unwrap();
        assert_eq!(
            shown(&loaded),
            ["vip[0].backend[0].health: path set but check = \"tcp\": only an HTTP check uses them (set check = \"http\")"]
        );
    }

    #[test]
    fn addresses_of_no_host() {
        let doubtful = config(vec![
            vip("127.0.0.1", &[("127.0.0.2", 1)]),
            vip("255.255.255.255", &[("198.18.0.11", 1), ("224.0.0.1", 1)]),
            vip("::1", &[("::ffff:127.0.0.1", 1), ("::", 1)]),
        ]);
        assert_eq!(
            shown(&doubtful),
            [
                "vip[0].address: 127.0.0.1 is a loopback address: clients on the network cannot reach this VIP",
                "vip[0].backend[0].address: 127.0.0.2 is a loopback address: no backend on the network has it",
                "vip[1].address: 255.255.255.255 is the broadcast address: clients on the network cannot reach this VIP",
                "vip[1].backend[1].address: 224.0.0.1 is a multicast address: no backend on the network has it",
                "vip[2].address: ::1 is a loopback address: clients on the network cannot reach this VIP",
                "vip[2].backend[0].address: ::ffff:127.0.0.1 is a loopback address: no backend on the network has it",
                "vip[2].backend[1].address: :: is the unspecified address: no backend on the network has it",
            ]
        );
    }

    /// Addresses no host answers at by the RFCs (0.0.0.0/8, 240.0.0.0/4)
    /// are warned of for VIPs and backends; a link-local VIP reaches only
    /// its own link's clients (a link-local backend of an on-link VIP is
    /// fine). Routable neighbours of those ranges are not warned of.
    #[test]
    fn reserved_and_link_local_addresses_are_warned_of() {
        let doubtful = config(vec![
            vip("0.1.2.3", &[("240.0.0.1", 1), ("1.0.0.1", 1)]),
            vip("169.254.10.1", &[("169.254.10.2", 1)]),
            vip("fe80::10", &[("fe80::11", 1)]),
            vip(
                "198.18.0.100",
                &[("239.255.255.254", 1), ("223.255.255.254", 1)],
            ),
        ]);
        assert_eq!(
            shown(&doubtful),
            [
                "vip[0].address: 0.1.2.3 is in 0.0.0.0/8 (\"this network\", RFC 1122: a source only, never a destination; Linux drops packets to it): clients on the network cannot reach this VIP",
                "vip[0].backend[0].address: 240.0.0.1 is in 240.0.0.0/4 (reserved, RFC 1112: routers and most hosts drop packets to it): no backend on the network has it",
                "vip[1].address: 169.254.10.1 is a link-local address: routers do not forward to it, so only clients on this node's own link reach this VIP",
                "vip[2].address: fe80::10 is a link-local address: routers do not forward to it, so only clients on this node's own link reach this VIP",
                "vip[3].backend[0].address: 239.255.255.254 is a multicast address: no backend on the network has it",
            ]
        );
    }

    #[test]
    fn a_loaded_file_is_warned_about_too() {
        let loaded = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"127.0.0.1\"\nport = 80\n",
            "test.toml",
        )
        .unwrap();
        assert_eq!(warnings(&loaded).len(), 2, "{:?}", warnings(&loaded));
    }

    /// An interface address as the netlink layer decodes it.
    fn held(address: &str, prefix_len: u8, deprecated: bool) -> InterfaceAddress {
        InterfaceAddress {
            address: address.parse().unwrap(),
            prefix_len,
            secondary: false,
            state: crate::netlink::AddressState {
                deprecated,
                ..Default::default()
            },
        }
    }

    /// An IPv6 VIP or NAT address held by hand in preferred form is
    /// warned of with the command that deprecates it; the node's own
    /// address, IPv4 VIPs and deprecated addresses (lbd's VRRP ones) not.
    #[test]
    fn an_ipv6_vip_held_in_preferred_form_is_warned_of_with_its_fix() {
        let mut nat = vip("2001:2::200", &[("2001:2::11", 1)]);
        nat.forwarding = lb_common::Mode::Nat;
        nat.nat = Some(crate::config::VipNat {
            source: "2001:2::50".parse().unwrap(),
            own_source: false,
            port_min: 1024,
            port_max: 65535,
        });
        let config = config(vec![
            vip("198.18.0.100", &[("198.18.0.11", 1)]),
            vip("2001:2::100", &[("2001:2::11", 1)]),
            vip("2001:2::100", &[("2001:2::12", 1)]),
            nat,
        ]);
        let on_eth0 = [
            held("198.18.0.100", 32, false),
            held("2001:2::10", 64, false),
            held("2001:2::100", 128, false),
            held("2001:2::200", 128, true),
            held("2001:2::50", 128, false),
        ];
        let shown: Vec<String> = preferred_held_address_warnings(&config, &on_eth0)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(
            shown[0].starts_with("vip[1].address: 2001:2::100 is on eth0 as a preferred address")
        );
        assert!(
            shown[0].ends_with("ip -6 addr change 2001:2::100/128 dev eth0 preferred_lft 0 nodad")
        );
        assert!(shown[1].starts_with("nat.source_ipv6: 2001:2::50 is on eth0"));
        assert!(
            shown[1].ends_with("ip -6 addr change 2001:2::50/128 dev eth0 preferred_lft 0 nodad")
        );
    }

    /// Addresses lbd adds itself (VRRP, NAT) are deprecated, and one
    /// whose duplicate address detection failed is never a source: no
    /// warning; nor for a VIP the interface does not hold.
    #[test]
    fn deprecated_failed_and_absent_addresses_are_not_warned_of() {
        let config = config(vec![
            vip("2001:2::100", &[("2001:2::11", 1)]),
            vip("2001:2::101", &[("2001:2::11", 1)]),
        ]);
        let mut failed = held("2001:2::101", 128, false);
        failed.state.dad_failed = true;
        let on_eth0 = [
            held("2001:2::100", 128, true),
            failed,
            held("2001:2::10", 64, false),
        ];
        assert_eq!(
            preferred_held_address_warnings(&config, &on_eth0),
            Vec::new()
        );
        assert_eq!(preferred_held_address_warnings(&config, &[]), Vec::new());
    }

    /// The warnings about addresses no one moves.
    fn unmoved(config: &Config) -> Vec<String> {
        shown(config)
            .into_iter()
            .filter(|w| w.contains("[[vrrp]]"))
            .collect()
    }

    #[test]
    fn vips_no_instance_moves_and_bgp_does_not_announce() {
        let text = "interface = \"eth0\"\n\
                    [[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
                    [[vip]]\naddress = \"2001:2::100\"\nport = 80\n\
                    [[vip]]\naddress = \"2001:2::100\"\nport = 443\n\
                    [[vrrp]]\nvrid = 51\n";
        let loaded = Config::from_toml_str(text, "test.toml").unwrap();
        assert_eq!(
            unmoved(&loaded),
            ["vip[1].address: no [[vrrp]] moves 2001:2::100 and [bgp] does not announce it: lbd serves the VIP but leaves its address where you put it; add a [[vrrp]] for IPv6 with addresses = [\"2001:2::100\"]"]
        );
        // An instance of the family that lists other addresses.
        let listed = format!("{text}[[vrrp]]\nvrid = 52\naddresses = [\"2001:2::101\"]\n");
        let loaded = Config::from_toml_str(&listed, "test.toml").unwrap();
        assert_eq!(
            unmoved(&loaded),
            ["vip[1].address: no [[vrrp]] moves 2001:2::100 and [bgp] does not announce it: lbd serves the VIP but leaves its address where you put it; add it to vrrp[1].addresses"]
        );
        // Moved: no warning; without VRRP: none either.
        let moved = format!("{text}[[vrrp]]\nvrid = 52\naddresses = [\"2001:2::100\"]\n");
        let loaded = Config::from_toml_str(&moved, "test.toml").unwrap();
        assert_eq!(unmoved(&loaded), Vec::<String>::new());
        let plain = text.replace("[[vrrp]]\nvrid = 51\n", "");
        let loaded = Config::from_toml_str(&plain, "test.toml").unwrap();
        assert_eq!(unmoved(&loaded), Vec::<String>::new());
    }
}
