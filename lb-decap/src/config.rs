//! lb-decap's configuration file (TOML) and its validation into
//! [`Settings`]: everything the maps need, checked before anything is
//! touched. Every error names the field and the value.
//!
//! ```toml
//! interface = "eth0"          # the backend's interface tunnel packets arrive on, or
//!                             # interfaces = ["eth0", "eth1"] for several (one
//!                             # program and one set of maps, a link on each)
//! attach = "xdp"              # "xdp" (default) or "tc"
//! xdp_mode = "auto"           # "auto" (native XDP, else tc ingress), "native";
//!                             # "generic" is refused (stale hardware checksum);
//!                             # used when attaching: a running link keeps its mode;
//!                             # refused with attach = "tc" unless "auto"
//! addresses = ["198.19.2.11"] # outer destinations accepted; default: the interfaces'
//! sources = ["198.18.200.0/24", "2001:2:0:f0::/64"] # the balancers' outer sources; default: any
//! vips = ["198.18.0.100:80/tcp", "[2001:2::100]:443/tcp"]
//! ipip = true                 # IPIP, IP6IP6, 4in6
//! gue = true                  # GUE (variant 0 and 1) on gue_port
//! gue_port = 6080
//! ```

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    path::Path,
};

use anyhow::{anyhow, bail, Context as _};
use lb_common::{
    consts::{IPPROTO_TCP, IPPROTO_UDP},
    decap::{
        DecapConfig, DECAP_ADDRS_MAX, DECAP_F_GUE, DECAP_F_IPIP, DECAP_F_SOURCES,
        DECAP_SOURCES_MAX, DECAP_VIPS_MAX,
    },
    tunnel::GUE_PORT_DEFAULT,
};
use serde::Deserialize;

use crate::{interface, sources::Prefix};

/// The hook and XDP mode, as lbd names them too.
pub use lb_common::hook::{Attach, XdpMode};

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// One interface (what most backends need).
    interface: Option<String>,
    /// Several (a backend whose IPv4 and IPv6 tunnel traffic arrive on
    /// different interfaces): one lb-decap per pin directory serves them
    /// all, since a second one there would fight the first over the maps.
    interfaces: Option<Vec<String>>,
    #[serde(default)]
    attach: Attach,
    #[serde(default)]
    xdp_mode: XdpMode,
    #[serde(default)]
    addresses: Vec<IpAddr>,
    sources: Option<Vec<String>>,
    vips: Vec<String>,
    #[serde(default = "yes")]
    ipip: bool,
    #[serde(default = "yes")]
    gue: bool,
    #[serde(default = "default_gue_port")]
    gue_port: u16,
}

fn yes() -> bool {
    true
}

fn default_gue_port() -> u16 {
    GUE_PORT_DEFAULT
}

/// A VIP the backend serves: inner packets must be for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vip {
    /// Address.
    pub addr: IpAddr,
    /// Port (host order).
    pub port: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
}

impl std::fmt::Display for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = if self.proto == IPPROTO_TCP {
            "tcp"
        } else {
            "udp"
        };
        write!(f, "{}/{proto}", SocketAddr::new(self.addr, self.port))
    }
}

impl std::str::FromStr for Vip {
    type Err = anyhow::Error;

    /// `ADDR:PORT/PROTO`, IPv6 in brackets: `198.18.0.100:80/tcp`,
    /// `[2001:2::100]:53/udp`.
    fn from_str(text: &str) -> anyhow::Result<Self> {
        let (socket, proto) = text
            .rsplit_once('/')
            .ok_or_else(|| anyhow!("VIP {text:?}: expected ADDR:PORT/tcp or ADDR:PORT/udp"))?;
        let proto = match proto {
            "tcp" => IPPROTO_TCP,
            "udp" => IPPROTO_UDP,
            other => bail!("VIP {text:?}: protocol {other:?} is neither tcp nor udp"),
        };
        let socket: SocketAddr = socket.parse().map_err(|_| {
            anyhow!("VIP {text:?}: {socket:?} is not ADDR:PORT (IPv6 in brackets: [2001:2::1]:80)")
        })?;
        if socket.port() == 0 {
            bail!("VIP {text:?}: port 0");
        }
        check_unicast(socket.ip()).with_context(|| format!("VIP {text:?}"))?;
        Ok(Self {
            addr: socket.ip(),
            port: socket.port(),
            proto,
        })
    }
}

/// A validated configuration: what goes into the maps and where the
/// program is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The interfaces (at least one, each once, in the file's order): a
    /// link on each, all running one program with one set of maps.
    pub interfaces: Vec<String>,
    /// The hook.
    pub attach: Attach,
    /// XDP attach mode (ignored for tc).
    pub xdp_mode: XdpMode,
    /// Outer destinations accepted (sorted, unique).
    pub addresses: Vec<IpAddr>,
    /// Whether `addresses` were read from the interface (the file has
    /// none), so `run` follows the interface's address changes.
    pub addresses_from_interface: bool,
    /// Outer source prefixes accepted (sorted, unique); empty: any sender
    /// (`DECAP_F_SOURCES` off).
    pub sources: Vec<Prefix>,
    /// VIPs (sorted, unique).
    pub vips: Vec<Vip>,
    /// `DECAP_CONFIG`'s entry.
    pub config: DecapConfig,
}

impl Settings {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the config file {}", path.display()))
    }

    /// Validates a configuration text. The interface must exist; without
    /// `addresses`, its addresses (link-local IPv6 excepted) are used.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut file: File = toml::from_str(text)?;
        let interfaces = interfaces(file.interface.take(), file.interfaces.take())?;
        // As lbd: "auto", the default, is let by; a mode asked for would
        // be silently ignored.
        if file.attach == Attach::Tc && file.xdp_mode != XdpMode::Auto {
            bail!(
                "xdp_mode = {:?} is for attach = \"xdp\"; with attach = \"tc\" there is no XDP program to attach: remove xdp_mode",
                file.xdp_mode.name()
            );
        }
        // Generic XDP would unwrap without fixing the skb's hardware
        // checksum: refused here, so `check` says so too.
        crate::dataplane::refuse_generic(file.attach, file.xdp_mode)?;
        if !file.ipip && !file.gue {
            bail!("ipip and gue are both false: nothing would ever be unwrapped");
        }
        if file.gue && file.gue_port == 0 {
            bail!("gue_port: 0 (GUE needs a port; set gue = false to turn it off)");
        }
        if file.vips.is_empty() {
            bail!("vips: empty (a tunnel is not an open relay: name the VIPs this backend serves)");
        }
        let vips: BTreeSet<Vip> = file
            .vips
            .iter()
            .map(|v| v.parse::<Vip>())
            .collect::<anyhow::Result<_>>()
            .context("vips")?;
        if vips.len() > DECAP_VIPS_MAX as usize {
            bail!("vips: {} given, at most {DECAP_VIPS_MAX}", vips.len());
        }
        let addresses: BTreeSet<IpAddr> = if file.addresses.is_empty() {
            interface_addresses(&interfaces)?
        } else {
            for address in &file.addresses {
                check_unicast(*address)
                    .and_then(|()| check_reachable(*address))
                    .with_context(|| format!("addresses: {address}"))?;
            }
            let given: BTreeSet<IpAddr> = file.addresses.iter().copied().collect();
            if given.len() > DECAP_ADDRS_MAX as usize {
                bail!(
                    "addresses: {} given, at most {DECAP_ADDRS_MAX}",
                    given.len()
                );
            }
            given
        };
        let sources = crate::sources::parse(file.sources.as_deref(), DECAP_SOURCES_MAX)?;
        let mut flags = 0;
        if !sources.is_empty() {
            flags |= DECAP_F_SOURCES;
        }
        if file.ipip {
            flags |= DECAP_F_IPIP;
        }
        if file.gue {
            flags |= DECAP_F_GUE;
        }
        Ok(Self {
            interfaces,
            attach: file.attach,
            xdp_mode: file.xdp_mode,
            addresses: addresses.into_iter().collect(),
            addresses_from_interface: file.addresses.is_empty(),
            sources,
            vips: vips.into_iter().collect(),
            config: DecapConfig {
                gue_port: if file.gue { file.gue_port.to_be() } else { 0 },
                flags,
            },
        })
    }
}

/// The interfaces the file names: `interface` or `interfaces`, not both;
/// each once, none empty, each existing.
fn interfaces(one: Option<String>, several: Option<Vec<String>>) -> anyhow::Result<Vec<String>> {
    let list = match (one, several) {
        (Some(_), Some(_)) => {
            bail!("interface and interfaces both given: use interfaces = [...] alone for several")
        }
        (None, None) => {
            bail!("interface: missing (interface = \"eth0\", or interfaces = [\"eth0\", \"eth1\"])")
        }
        (Some(one), None) => {
            if one.is_empty() {
                bail!("interface: empty");
            }
            vec![one]
        }
        (None, Some(several)) => {
            if several.is_empty() {
                bail!("interfaces: empty (name at least one)");
            }
            let mut seen = BTreeSet::new();
            for name in &several {
                if name.is_empty() {
                    bail!("interfaces: an empty name");
                }
                if !seen.insert(name.as_str()) {
                    bail!("interfaces: {name:?} named twice");
                }
            }
            several
        }
    };
    for name in &list {
        check_interface(name)?;
    }
    Ok(list)
}

/// Refuses interface `name` unless it exists and is Ethernet-framed
/// ([`check_link_type`]).
fn check_interface(name: &str) -> anyhow::Result<()> {
    interface::index(name).with_context(|| format!("interface {name:?}"))?;
    let kind = interface::link_type(name).with_context(|| format!("interface {name:?}"))?;
    check_link_type(name, kind)
}

/// Refuses an interface whose frames do not start with an Ethernet
/// header (link type `kind`, `ARPHRD_*`): the program reads the EtherType
/// at bytes 12-13 and the IP header at 14, so on an L3 device (tun,
/// WireGuard, ipip, gre: the IP header first) it would never unwrap and
/// would drop some legitimate packets as malformed. Before, any existing
/// interface was accepted. Ethernet and loopback (`lo`, Ethernet-framed)
/// are.
fn check_link_type(name: &str, kind: u16) -> anyhow::Result<()> {
    if kind == interface::ARPHRD_ETHER || kind == interface::ARPHRD_LOOPBACK {
        return Ok(());
    }
    let what = match kind {
        65534 => " (ARPHRD_NONE: tun, WireGuard)",
        768 => " (ARPHRD_TUNNEL: ipip)",
        769 => " (ARPHRD_TUNNEL6: ip6tnl)",
        776 => " (ARPHRD_SIT)",
        778 => " (ARPHRD_IPGRE)",
        823 => " (ARPHRD_IP6GRE)",
        _ => "",
    };
    bail!(
        "interface {name:?} has link type {kind}{what}, not Ethernet (1): the decap program reads an Ethernet header before the outer IP header, so on this interface it would never unwrap and would drop some packets as malformed. Attach lb-decap to the Ethernet interface the tunnel packets arrive on"
    )
}

/// `interfaces` in words for messages: `interface eth0 has`, or
/// `interfaces eth0, eth1 have`.
fn interfaces_have(interfaces: &[String]) -> String {
    match interfaces {
        [one] => format!("interface {one} has"),
        several => format!("interfaces {} have", several.join(", ")),
    }
}

/// The default of `addresses` (the file gives none): the addresses of
/// `interfaces`, at least one and at most `DECAP_ADDRS_MAX`.
fn interface_addresses(interfaces: &[String]) -> anyhow::Result<BTreeSet<IpAddr>> {
    let found = addresses_of(interfaces)?;
    if found.is_empty() {
        bail!(
            "addresses: none given and {} none: tunnel packets would have no destination to accept",
            interfaces_have(interfaces)
        );
    }
    check_found_count(interfaces, found.len())?;
    Ok(found)
}

/// Refuses more addresses read from `interfaces` (`count`) than the map
/// holds, naming where they came from and the way out. Before, the
/// message said "addresses: 65 given" though the file gave none.
fn check_found_count(interfaces: &[String], count: usize) -> anyhow::Result<()> {
    if count > DECAP_ADDRS_MAX as usize {
        bail!(
            "addresses: none given, and {} {count} addresses (link-local IPv6 excepted), more than the {DECAP_ADDRS_MAX} lb-decap accepts: list the ones the balancers send tunnel packets to, addresses = [\"...\"]",
            interfaces_have(interfaces)
        );
    }
    Ok(())
}

impl Settings {
    /// These settings, with what depends on the interfaces read again
    /// (each still there and Ethernet; with `addresses` omitted, their
    /// addresses now): what `run` applies after an interface or address
    /// change, without reading the file again. Only SIGHUP reads the
    /// file: before, a change re-read it, so a pending broken edit made
    /// `run` exit and a pending valid one went live without SIGHUP.
    pub fn refreshed(&self) -> anyhow::Result<Self> {
        for name in &self.interfaces {
            check_interface(name)?;
        }
        let mut settings = self.clone();
        if self.addresses_from_interface {
            settings.addresses = interface_addresses(&self.interfaces)?.into_iter().collect();
        }
        Ok(settings)
    }
}

/// The addresses of every interface in `interfaces` (link-local IPv6
/// excepted), the default of `addresses`.
pub fn addresses_of(interfaces: &[String]) -> anyhow::Result<BTreeSet<IpAddr>> {
    let mut all = BTreeSet::new();
    for name in interfaces {
        let found = interface::addresses(name)
            .with_context(|| format!("reading the addresses of {name}"))?;
        all.extend(found);
    }
    Ok(all)
}

impl Settings {
    /// The interfaces for messages: `eth0`, or `eth0, eth1`.
    pub fn interface_names(&self) -> String {
        self.interfaces.join(", ")
    }

    /// What is valid but unsafe, for `check` and every apply to log: no
    /// `sources` means tunnel packets from any sender are unwrapped.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.sources.is_empty() {
            out.push(
                "sources not set: tunnel packets from ANY sender are unwrapped, so whoever can route to this backend reaches the VIPs past the balancers' ACLs, rate limits and SYN-flood protection (and can spoof inner sources); set sources = [the balancers' tunnel source prefixes]".to_owned(),
            );
        }
        out
    }
}

/// Refuses addresses no packet is ever sent to.
fn check_unicast(address: IpAddr) -> anyhow::Result<()> {
    if address.is_unspecified() || address.is_multicast() {
        bail!("{address} is not a unicast address");
    }
    match address {
        IpAddr::V4(v4) if v4.is_broadcast() => bail!("{address} is not a unicast address"),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => bail!(
            "{address} is an IPv4-mapped IPv6 address, which no packet carries: write the IPv4 address"
        ),
        _ => Ok(()),
    }
}

/// Refuses outer destinations a balancer never sends a tunnel packet to
/// (it routes to the backend's address): loopback and link-local.
fn check_reachable(address: IpAddr) -> anyhow::Result<()> {
    let (loopback, link_local) = match address {
        IpAddr::V4(v4) => (v4.is_loopback(), v4.is_link_local()),
        IpAddr::V6(v6) => (v6.is_loopback(), v6.is_unicast_link_local()),
    };
    if loopback {
        bail!("{address} is a loopback address: no balancer can send to it");
    }
    if link_local {
        bail!("{address} is a link-local address: a balancer routes to the backend's own address, not to a link-local one");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vips_parse_with_their_protocol() {
        let v: Vip = "198.18.0.100:80/tcp".parse().expect("v4");
        assert_eq!(v.port, 80);
        assert_eq!(v.proto, IPPROTO_TCP);
        assert_eq!(v.to_string(), "198.18.0.100:80/tcp");
        let v: Vip = "[2001:2::100]:53/udp".parse().expect("v6");
        assert_eq!(v.proto, IPPROTO_UDP);
        assert_eq!(v.to_string(), "[2001:2::100]:53/udp");
        for bad in [
            "198.18.0.100:80",
            "198.18.0.100:80/sctp",
            "198.18.0.100/tcp",
            "2001:2::100:80/tcp",
            "198.18.0.100:0/tcp",
            "0.0.0.0:80/tcp",
            "224.0.0.1:80/udp",
        ] {
            assert!(bad.parse::<Vip>().is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn a_full_file_validates() {
        let s = Settings::parse(
            r#"
            interface = "lo"
            attach = "tc"
            addresses = ["198.19.2.11", "2001:2:0:2::11", "198.19.2.11"]
            vips = ["198.18.0.100:80/tcp", "198.18.0.100:80/tcp", "[2001:2::100]:80/tcp"]
            gue_port = 7000
            "#,
        )
        .expect("valid");
        assert_eq!(s.attach, Attach::Tc);
        assert_eq!(s.addresses.len(), 2);
        assert_eq!(s.vips.len(), 2);
        assert_eq!(s.config.flags, DECAP_F_IPIP | DECAP_F_GUE);
        assert_eq!(u16::from_be(s.config.gue_port), 7000);
        assert!(!s.addresses_from_interface);
        assert!(s.sources.is_empty());
        assert_eq!(s.warnings().len(), 1);
        assert!(s.warnings()[0].contains("ANY sender"), "{:?}", s.warnings());
    }

    #[test]
    fn sources_turn_the_check_on_and_silence_the_warning() {
        let s = Settings::parse(
            r#"
            interface = "lo"
            addresses = ["198.19.2.11"]
            sources = ["198.19.200.0/24", "2001:2:0:f0::/64", "198.19.200.0/24"]
            vips = ["198.18.0.100:80/tcp"]
            "#,
        )
        .expect("valid");
        assert_eq!(s.config.flags, DECAP_F_IPIP | DECAP_F_GUE | DECAP_F_SOURCES);
        let shown: Vec<String> = s.sources.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["198.19.200.0/24", "2001:2:0:f0::/64"]);
        assert!(s.warnings().is_empty(), "{:?}", s.warnings());
    }

    #[test]
    fn the_shipped_example_validates_with_sources_set() {
        let text = include_str!("../../examples/lb-decap.toml")
            .replace("interface = \"eth0\"", "interface = \"lo\"");
        let s = Settings::parse(&text).expect("the example is valid");
        assert!(s.config.flags & DECAP_F_SOURCES != 0);
        assert_eq!(s.sources.len(), 2);
        assert!(s.warnings().is_empty());
    }

    /// The values of `key = "VALUE"` in the `[tunnel]` tables of the TOML
    /// examples in `text` (a table ends at the next table header).
    fn tunnel_values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
        let mut in_tunnel = false;
        let mut found = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_tunnel = line.starts_with("[tunnel]");
            } else if in_tunnel {
                let value = line
                    .strip_prefix(key)
                    .and_then(|rest| rest.trim_start().strip_prefix('='))
                    .and_then(|rest| rest.trim_start().strip_prefix('"'))
                    .and_then(|rest| rest.split('"').next());
                found.extend(value);
            }
        }
        found
    }

    #[test]
    fn the_documented_sources_are_the_documented_balancer_sources() {
        // Copying lbd's [tunnel] sources into lb-decap's `sources` must
        // give a pair that admits them: one pair everywhere.
        let readme = include_str!("../../README.md");
        let v4 = tunnel_values(readme, "source_ipv4");
        let v6 = tunnel_values(readme, "source_ipv6");
        assert!(
            v4.len() >= 2 && v6.len() >= 2,
            "README's [tunnel] examples: {v4:?} {v6:?}"
        );
        assert!(
            v4.iter().all(|v| *v == v4[0]),
            "README's source_ipv4 differ: {v4:?}"
        );
        assert!(
            v6.iter().all(|v| *v == v6[0]),
            "README's source_ipv6 differ: {v6:?}"
        );
        let pair = format!("sources = [\"{}\", \"{}\"]", v4[0], v6[0]);
        let section = readme
            .split("\n## Running lb-decap on a backend")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README's lb-decap section");
        let flowing = section.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flowing.contains(&pair),
            "README's lb-decap section lacks {pair}"
        );
        let example = include_str!("../../examples/lb-decap.toml");
        assert!(
            example.lines().any(|l| l == pair),
            "examples/lb-decap.toml lacks {pair}"
        );
        let module_doc = include_str!("config.rs");
        assert!(
            module_doc.contains(&format!("//! {pair}")),
            "config.rs's example lacks {pair}"
        );
    }

    #[test]
    fn addresses_omitted_are_followed_from_the_interface() {
        let s = Settings::parse(
            r#"
            interface = "lo"
            vips = ["198.18.0.100:80/tcp"]
            "#,
        )
        .expect("valid");
        assert!(s.addresses_from_interface);
        assert!(s.addresses.contains(&IpAddr::from([127, 0, 0, 1])));
    }

    #[test]
    fn bad_files_name_what_is_wrong() {
        let cases = [
            (r#"interface = "lo""#, "vips"),
            (
                r#"interface = "t2-nope0"
                vips = ["198.18.0.100:80/tcp"]"#,
                "t2-nope0",
            ),
            (
                r#"interface = "lo"
                ipip = false
                gue = false
                vips = ["198.18.0.100:80/tcp"]"#,
                "both false",
            ),
            (
                r#"interface = "lo"
                gue_port = 0
                vips = ["198.18.0.100:80/tcp"]"#,
                "gue_port",
            ),
            (
                r#"interface = "lo"
                vips = ["198.18.0.100:80/icmp"]"#,
                "icmp",
            ),
            (
                r#"interface = "lo"
                addresses = ["0.0.0.0"]
                vips = ["198.18.0.100:80/tcp"]"#,
                "0.0.0.0",
            ),
            (
                r#"interface = "lo"
                attach = "ebpf"
                vips = ["198.18.0.100:80/tcp"]"#,
                "ebpf",
            ),
            (
                r#"interface = "lo"
                vip = ["198.18.0.100:80/tcp"]"#,
                "vip",
            ),
            (
                r#"interface = "lo"
                attach = "tc"
                xdp_mode = "native"
                vips = ["198.18.0.100:80/tcp"]"#,
                "xdp_mode = \"native\" is for attach = \"xdp\"",
            ),
            (
                r#"interface = "lo"
                attach = "tc"
                xdp_mode = "generic"
                vips = ["198.18.0.100:80/tcp"]"#,
                "xdp_mode = \"generic\"",
            ),
            (
                r#"interface = "lo"
                vips = ["[::ffff:198.18.0.100]:80/tcp"]"#,
                "vips: VIP \"[::ffff:198.18.0.100]:80/tcp\": ::ffff:198.18.0.100 is an IPv4-mapped",
            ),
            (
                r#"interface = "lo"
                addresses = ["::ffff:198.19.2.11"]
                vips = ["198.18.0.100:80/tcp"]"#,
                "addresses: ::ffff:198.19.2.11: ::ffff:198.19.2.11 is an IPv4-mapped",
            ),
            (
                r#"interface = "lo"
                addresses = ["127.0.0.1"]
                vips = ["198.18.0.100:80/tcp"]"#,
                "addresses: 127.0.0.1: 127.0.0.1 is a loopback",
            ),
            (
                r#"interface = "lo"
                addresses = ["::1"]
                vips = ["198.18.0.100:80/tcp"]"#,
                "addresses: ::1: ::1 is a loopback",
            ),
            (
                r#"interface = "lo"
                addresses = ["169.254.1.1"]
                vips = ["198.18.0.100:80/tcp"]"#,
                "addresses: 169.254.1.1: 169.254.1.1 is a link-local",
            ),
            (
                r#"interface = "lo"
                addresses = ["fe80::1"]
                vips = ["198.18.0.100:80/tcp"]"#,
                "addresses: fe80::1: fe80::1 is a link-local",
            ),
            (
                r#"interface = "lo"
                addresses = ["224.0.0.5"]
                vips = ["198.18.0.100:80/tcp"]"#,
                "addresses: 224.0.0.5: 224.0.0.5 is not a unicast",
            ),
            (
                r#"interface = "lo"
                sources = ["198.19.200.1/24"]
                vips = ["198.18.0.100:80/tcp"]"#,
                "sources: \"198.19.200.1/24\" has host bits set",
            ),
            (
                r#"interface = "lo"
                sources = ["::ffff:198.19.200.0/120"]
                vips = ["198.18.0.100:80/tcp"]"#,
                "sources: \"::ffff:198.19.200.0/120\" is IPv4-mapped",
            ),
            (
                r#"interface = "lo"
                sources = []
                vips = ["198.18.0.100:80/tcp"]"#,
                "sources: empty",
            ),
            (
                r#"interface = "lo"
                sources = "198.19.200.0/24"
                vips = ["198.18.0.100:80/tcp"]"#,
                "sources",
            ),
            (
                r#"interface = "lo"
                addresses = ["ff02::1"]
                vips = ["198.18.0.100:80/tcp"]"#,
                "addresses: ff02::1: ff02::1 is not a unicast",
            ),
        ];
        for (text, word) in cases {
            let error = format!("{:#}", Settings::parse(text).expect_err(text));
            assert!(error.contains(word), "{error:?} should mention {word:?}");
        }
    }

    /// `interfaces` names several (one program, a link on each), their
    /// addresses the default together; `interface` stays valid alone.
    /// Before, one lb-decap served one interface, so a backend with two
    /// needed two lb-decaps, and the second disabled the first.
    #[test]
    fn several_interfaces_are_one_config_and_their_addresses_the_default() {
        let s = Settings::parse("interfaces = [\"lo\"]\nvips = [\"198.18.0.100:80/tcp\"]\n")
            .expect("valid");
        assert_eq!(s.interfaces, ["lo"]);
        assert!(s.addresses_from_interface);
        assert!(s.addresses.contains(&IpAddr::from([127, 0, 0, 1])));
        let one = Settings::parse("interface = \"lo\"\nvips = [\"198.18.0.100:80/tcp\"]\n")
            .expect("valid");
        assert_eq!(one, s, "interface = \"lo\" is interfaces = [\"lo\"]");
        for (text, word) in [
            (
                "interface = \"lo\"\ninterfaces = [\"lo\"]\nvips = [\"198.18.0.100:80/tcp\"]\n",
                "interface and interfaces both given",
            ),
            (
                "interfaces = []\nvips = [\"198.18.0.100:80/tcp\"]\n",
                "interfaces: empty",
            ),
            (
                "interfaces = [\"lo\", \"lo\"]\nvips = [\"198.18.0.100:80/tcp\"]\n",
                "interfaces: \"lo\" named twice",
            ),
            (
                "interfaces = [\"lo\", \"t2-nope1\"]\nvips = [\"198.18.0.100:80/tcp\"]\n",
                "interface \"t2-nope1\"",
            ),
            ("vips = [\"198.18.0.100:80/tcp\"]\n", "interface: missing"),
        ] {
            let error = format!("{:#}", Settings::parse(text).expect_err(text));
            assert!(error.contains(word), "{error:?} should mention {word:?}");
        }
    }

    /// A tun device (no Ethernet header: the IP header first) in this
    /// namespace, removed on drop.
    struct Tun(String);

    impl Tun {
        fn new() -> Self {
            let name = format!("lbdtun{}", std::process::id() % 100_000);
            let status = std::process::Command::new("ip")
                .args(["tuntap", "add", "dev", &name, "mode", "tun"])
                .status()
                .expect("ip tuntap (root needed)");
            assert!(status.success(), "ip tuntap add {name}");
            Self(name)
        }
    }

    impl Drop for Tun {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["tuntap", "del", "dev", &self.0, "mode", "tun"])
                .status();
        }
    }

    /// An interface without an Ethernet header (tun, WireGuard, ipip) is
    /// refused naming its link type: the program would misparse every
    /// frame there. Before, any existing interface was accepted.
    #[test]
    fn an_interface_without_an_ethernet_header_is_refused() {
        let tun = Tun::new();
        let text = format!(
            "interface = \"{}\"\naddresses = [\"198.19.2.11\"]\nvips = [\"198.18.0.100:80/tcp\"]\n",
            tun.0
        );
        let error = format!("{:#}", Settings::parse(&text).expect_err("a tun device"));
        for word in [tun.0.as_str(), "link type 65534", "not Ethernet"] {
            assert!(error.contains(word), "{error:?} should mention {word:?}");
        }
        let error = format!("{:#}", check_link_type("gre1", 778).expect_err("gre"));
        assert!(error.contains("ARPHRD_IPGRE"), "{error}");
        check_link_type("eth0", 1).expect("Ethernet");
        check_link_type("lo", 772).expect("loopback");
    }

    /// Too many addresses read from the interfaces (the file gives none)
    /// say so and how to get out; before: "addresses: 65 given".
    #[test]
    fn too_many_interface_addresses_name_the_interface_and_the_way_out() {
        let eth0 = vec!["eth0".to_owned()];
        check_found_count(&eth0, DECAP_ADDRS_MAX as usize).expect("at the limit");
        let error = format!(
            "{:#}",
            check_found_count(&eth0, DECAP_ADDRS_MAX as usize + 1).expect_err("past it")
        );
        for word in [
            "interface eth0 has 65 addresses",
            "more than the 64",
            "addresses = [",
        ] {
            assert!(error.contains(word), "{error:?} should mention {word:?}");
        }
    }

    /// A re-apply after an interface change starts from the settings
    /// last applied, not the file: with `addresses` omitted, only the
    /// addresses are read again; the rest stays as applied.
    #[test]
    fn refreshed_settings_reread_only_the_interfaces() {
        let s = Settings::parse("interface = \"lo\"\nvips = [\"198.18.0.100:80/tcp\"]\n")
            .expect("valid");
        let mut stale = s.clone();
        stale.addresses = vec!["198.19.2.99".parse().expect("address")];
        let fresh = stale.refreshed().expect("lo is there");
        assert_eq!(fresh, s, "the addresses of lo again, the rest as applied");
        let mut given = Settings::parse(
            "interface = \"lo\"\naddresses = [\"198.19.2.11\"]\nvips = [\"198.18.0.100:80/tcp\"]\n",
        )
        .expect("valid");
        given.vips.clear();
        assert_eq!(given.refreshed().expect("lo"), given, "nothing re-read");
        let mut gone = given.clone();
        gone.interfaces = vec!["t2-nope2".to_owned()];
        let error = format!("{:#}", gone.refreshed().expect_err("no such interface"));
        assert!(error.contains("t2-nope2"), "{error}");
    }

    #[test]
    fn tc_with_the_default_xdp_mode_is_fine() {
        let s = Settings::parse(
            r#"
            interface = "lo"
            attach = "tc"
            xdp_mode = "auto"
            addresses = ["198.19.2.11"]
            vips = ["198.18.0.100:80/tcp"]
            "#,
        )
        .expect("valid");
        assert_eq!(s.attach, Attach::Tc);
    }

    /// Generic XDP unwraps without fixing a CHECKSUM_COMPLETE skb's
    /// `csum` (see `dataplane::GENERIC_REFUSED`): the file is refused
    /// naming why and the ways out. Before, it was accepted and attached.
    #[test]
    fn generic_xdp_is_refused_naming_the_reason_and_the_alternatives() {
        for attach in ["", "attach = \"xdp\"\n"] {
            let text = format!(
                "interface = \"lo\"\n{attach}xdp_mode = \"generic\"\naddresses = [\"198.19.2.11\"]\nvips = [\"198.18.0.100:80/tcp\"]\n"
            );
            let error = format!("{:#}", Settings::parse(&text).expect_err(&text));
            for word in [
                "xdp_mode = \"generic\" is refused",
                "hw csum failure",
                "xdp_mode = \"auto\"",
                "attach = \"tc\"",
            ] {
                assert!(error.contains(word), "{error:?} should mention {word:?}");
            }
        }
        for mode in ["auto", "native"] {
            let text = format!(
                "interface = \"lo\"\nxdp_mode = \"{mode}\"\naddresses = [\"198.19.2.11\"]\nvips = [\"198.18.0.100:80/tcp\"]\n"
            );
            Settings::parse(&text).expect(mode);
        }
    }

    #[test]
    fn gue_off_writes_no_port() {
        let s = Settings::parse(
            r#"
            interface = "lo"
            addresses = ["198.19.2.11"]
            vips = ["198.18.0.100:80/tcp"]
            gue = false
            "#,
        )
        .expect("valid");
        assert_eq!(s.config.flags, DECAP_F_IPIP);
        assert_eq!(s.config.gue_port, 0);
    }
}
