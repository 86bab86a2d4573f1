//! The `[bgp]` table: active-active scale-out. lbd keeps the routes BIRD
//! announces equal to the VIP addresses this node can serve; the BGP
//! sessions, timers, BFD and policy stay in BIRD's own config.
//!
//! ```toml
//! [bgp]
//! bird_socket = "/run/bird/bird.ctl"      # BIRD's control socket
//! routes_file = "/run/lbd-bgp/vips.conf"  # lbd writes it; bird.conf includes it
//! protocol = "lbd_vips"                   # lbd_vips4 / lbd_vips6 static protocols
//! addresses = ["198.18.0.100"]            # default: every VIP address no [[vrrp]] holds
//! startup_wait_ms = 10000                 # at most this long for the peers' flow state
//! node_state_file = "/var/lib/lbd/node.state" # `lbctl node drain` kept across stops and reboots
//! ```
//!
//! An address is either VRRP-held or BGP-announced, never both.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use serde::Deserialize;
use toml::{Spanned, Value};

use super::{Checker, ConfigError};

/// Default BIRD control socket of Debian's `bird2` package.
pub(crate) const DEFAULT_BIRD_SOCKET: &str = "/run/bird/bird.ctl";
/// Default file lbd writes the routes to.
pub(crate) const DEFAULT_ROUTES_FILE: &str = "/run/lbd-bgp/vips.conf";
/// Default name stem of the static protocols lbd defines.
pub(crate) const DEFAULT_PROTOCOL: &str = "lbd_vips";
/// Default longest wait for the peers' flow state before announcing.
pub(crate) const DEFAULT_STARTUP_WAIT: Duration = Duration::from_secs(10);
/// Default file keeping the node's drained/active state: persistent
/// storage, so a drained node stays drained across a stop and a reboot.
pub(crate) const DEFAULT_NODE_STATE_FILE: &str = "/var/lib/lbd/node.state";
/// BIRD keywords and predefined symbols of the form `{stem}4` / `{stem}6`
/// (every word ending in 4 or 6 in the `bird` 2.0.12 binary, each tried
/// as a protocol name with `bird -p`): a protocol named so is a syntax
/// error in the routes file, so every reconfigure would fail.
const BIRD_RESERVED: [&str; 17] = [
    "ipv4",
    "ipv6",
    "vpn4",
    "vpn6",
    "roa4",
    "roa6",
    "flow4",
    "flow6",
    "is_v4",
    "is_v6",
    "master4",
    "master6",
    "sha256",
    "sha384",
    "blake2s256",
    "blake2b256",
    "as4",
];

/// Longest protocol stem: BIRD symbols are short, and the family suffix
/// is added.
pub(crate) const MAX_PROTOCOL_BYTES: usize = 30;

/// Which addresses this node announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announced {
    /// Every VIP address (of every family) that no `[[vrrp]]` instance
    /// holds, including VIPs added at run time.
    EveryVip,
    /// Only these VIP addresses.
    Listed(Vec<IpAddr>),
}

/// The `[bgp]` table, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    /// BIRD's control socket, through which lbd asks BIRD to re-read its
    /// configuration after writing the routes file.
    pub bird_socket: PathBuf,
    /// The file lbd owns and rewrites; BIRD's config `include`s it at the
    /// top level. It defines the static protocols `{protocol}4` and
    /// `{protocol}6`, one route per announced address.
    pub routes_file: PathBuf,
    /// Name stem of those protocols, which the operator's BGP export
    /// filters name (`export where proto = "lbd_vips4";`).
    pub protocol: String,
    /// The addresses announced while this node can serve them.
    pub addresses: Announced,
    /// A fresh node (no pinned data plane to adopt) announces once every
    /// sync peer has sent its full flow dump, or after this long.
    pub startup_wait: Duration,
    /// Where the operator's node state (drained or active) is kept, so a
    /// drain outlasts a stop, a restart and a reboot until undrained.
    pub node_state_file: PathBuf,
}

impl BgpConfig {
    /// Whether `address` is one this node announces (given it is a VIP
    /// address and `vrrp_held` says whether an instance holds it).
    pub fn covers(&self, address: IpAddr, vrrp_held: bool) -> bool {
        match &self.addresses {
            Announced::EveryVip => !vrrp_held,
            Announced::Listed(list) => list.contains(&address),
        }
    }
}

/// The `[bgp]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [bgp] table")]
pub(super) struct RawBgp {
    bird_socket: Option<Spanned<Value>>,
    routes_file: Option<Spanned<Value>>,
    protocol: Option<Spanned<Value>>,
    addresses: Option<Spanned<super::raw::Items>>,
    startup_wait_ms: Option<Spanned<Value>>,
    node_state_file: Option<Spanned<Value>>,
}

impl RawBgp {
    /// Item `index` of the written `addresses`, to point errors at it.
    fn address_item(&self, index: usize) -> Option<&Spanned<Value>> {
        super::raw::list_item(self.addresses.as_ref(), index)
    }
}

impl super::TableName for RawBgp {
    const NAME: &'static str = "bgp";
}

impl Checker<'_> {
    /// The `[bgp]` table (None when absent: no BGP).
    pub(super) fn bgp(
        &self,
        raw: Option<&Spanned<super::raw::OneTable<RawBgp>>>,
    ) -> Result<Option<BgpConfig>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let raw = raw.get_ref().get();
        let path = |v: &Option<Spanned<Value>>, name: &str, default: &str| match v {
            None => Ok(PathBuf::from(default)),
            Some(v) => self.absolute_path(v, name),
        };
        let bird_socket = path(&raw.bird_socket, "bgp.bird_socket", DEFAULT_BIRD_SOCKET)?;
        let routes_file = path(&raw.routes_file, "bgp.routes_file", DEFAULT_ROUTES_FILE)?;
        let node_state_file = path(
            &raw.node_state_file,
            "bgp.node_state_file",
            DEFAULT_NODE_STATE_FILE,
        )?;
        let protocol = match &raw.protocol {
            None => DEFAULT_PROTOCOL.to_owned(),
            Some(v) => {
                let text = self.string(v, "bgp.protocol")?;
                let first_ok = text.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
                let rest_ok = text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !first_ok || !rest_ok || text.len() > MAX_PROTOCOL_BYTES {
                    return Err(self.bad_value(
                        v,
                        "bgp.protocol",
                        format!(
                            "{text:?} is not a BIRD protocol name: a letter, then letters, digits or _, at most {MAX_PROTOCOL_BYTES} bytes"
                        ),
                    ));
                }
                if let Some(word) = reserved_name(text) {
                    return Err(self.bad_value(
                        v,
                        "bgp.protocol",
                        format!(
                            "{text:?} makes the protocol name {word:?}, which BIRD reserves (a keyword or a predefined table): BIRD would refuse the routes file; pick another stem"
                        ),
                    ));
                }
                text.to_owned()
            }
        };
        let addresses = match &raw.addresses {
            None => Announced::EveryVip,
            Some(v) => {
                let list = self.address_list(v, "bgp.addresses")?;
                if list.is_empty() {
                    return Err(self.invalid(
                        v.span().start,
                        "bgp.addresses",
                        "is empty: list the VIP addresses to announce, or leave it out to announce every VIP address",
                    ));
                }
                Announced::Listed(list)
            }
        };
        let startup_wait = match &raw.startup_wait_ms {
            None => DEFAULT_STARTUP_WAIT,
            Some(v) => Duration::from_millis(
                self.integer(v, "bgp.startup_wait_ms", 0..=600_000u32)?
                    .into(),
            ),
        };
        Ok(Some(BgpConfig {
            bird_socket,
            routes_file,
            protocol,
            addresses,
            startup_wait,
            node_state_file,
        }))
    }
}

/// The protocol name of `stem` (`{stem}4` or `{stem}6`) that BIRD
/// reserves, if one is (compared whatever the case: older BIRDs read
/// keywords case-insensitively).
fn reserved_name(stem: &str) -> Option<String> {
    ["4", "6"]
        .iter()
        .map(|suffix| format!("{stem}{suffix}"))
        .find(|name| BIRD_RESERVED.contains(&name.to_ascii_lowercase().as_str()))
}

impl Checker<'_> {
    /// An address is VRRP-held or BGP-announced, never both; replication is
    /// configured in one place; NAT VIPs are not announced (their replies
    /// must come back to the node that translated them, which ECMP does
    /// not promise).
    pub(super) fn announcement_is_single(
        &self,
        raw: &super::RawConfig,
        bgp: Option<&BgpConfig>,
        sync: Option<&super::SyncSettings>,
        instances: &[super::VrrpConfig],
        vips: &[super::VipConfig],
    ) -> Result<(), ConfigError> {
        if let (Some(table), Some(_)) = (&raw.sync, sync) {
            if let Some(index) = raw.vrrp.0.iter().position(|v| v.get_ref().replicates()) {
                return Err(self.invalid(
                    table.span().start,
                    "sync",
                    format!(
                        "replication is configured twice: in vrrp[{index}] (sync_listen, sync_peer) and in [sync]; keep one"
                    ),
                ));
            }
        }
        let (Some(table), Some(bgp)) = (&raw.bgp, bgp) else {
            return Ok(());
        };
        let at = table.span().start;
        let held = |address: IpAddr| instances.iter().any(|i| i.addresses.contains(&address));
        match &bgp.addresses {
            Announced::EveryVip => {
                if let Some(index) = raw
                    .vrrp
                    .0
                    .iter()
                    .position(|v| !v.get_ref().lists_addresses())
                {
                    return Err(self.invalid(
                        at,
                        "bgp.addresses",
                        format!(
                            "vrrp[{index}] takes every VIP address and [bgp] announces every VIP address: list the addresses of one of them"
                        ),
                    ));
                }
            }
            Announced::Listed(list) => {
                for (k, address) in list.iter().enumerate() {
                    // At the entry itself, named by its index, as
                    // `address_list` names the list's other errors.
                    let (at, field) = match table.get_ref().get().address_item(k) {
                        Some(item) => (item.span().start, format!("bgp.addresses[{k}]")),
                        None => (at, "bgp.addresses".to_owned()),
                    };
                    if !vips.iter().any(|v| v.address == *address) {
                        return Err(self.invalid(
                            at,
                            &field,
                            format!("{address} is not the address of any [[vip]]"),
                        ));
                    }
                    if let Some(index) =
                        instances.iter().position(|i| i.addresses.contains(address))
                    {
                        return Err(self.invalid(
                            at,
                            &field,
                            format!("{address} is held by vrrp[{index}]: an address is either VRRP-held or BGP-announced"),
                        ));
                    }
                }
            }
        }
        if let Some(vip) = vips
            .iter()
            .find(|v| v.nat.is_some() && bgp.covers(v.address, held(v.address)))
        {
            return Err(self.invalid(
                at,
                "bgp",
                format!(
                    "VIP {}:{} uses forwarding = \"nat\", which BGP announcement does not support: ECMP may send a NAT'd flow's replies to another node; use dsr-l2, ipip or gue, or hold the address with [[vrrp]]",
                    vip.address, vip.port
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const VIPS: &str = r#"interface = "eth0"
[[vip]]
address = "198.18.0.100"
port = 80
  [[vip.backend]]
  address = "198.18.2.21"
  mac = "02:00:00:00:00:21"
[[vip]]
address = "198.18.0.101"
port = 80
  [[vip.backend]]
  address = "198.18.2.21"
  mac = "02:00:00:00:00:21"
"#;

    fn load(extra: &str) -> Result<Config, String> {
        Config::from_toml_str(&format!("{VIPS}{extra}"), "lbd.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_announce_every_vip_and_read_back_from_a_dump() {
        let config = load(
            "[bgp]\n[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [\"198.18.2.12:7946\", \"198.18.2.13:7946\"]\nkey_file = \"/etc/lbd/sync.key\"\n",
        )
        .unwrap();
        let bgp = config.bgp.clone().unwrap();
        assert_eq!(bgp.addresses, Announced::EveryVip);
        assert_eq!(bgp.bird_socket, PathBuf::from(DEFAULT_BIRD_SOCKET));
        assert_eq!(bgp.protocol, "lbd_vips");
        assert_eq!(bgp.startup_wait, DEFAULT_STARTUP_WAIT);
        assert!(bgp.covers("198.18.0.100".parse().unwrap(), false));
        assert!(!bgp.covers("198.18.0.100".parse().unwrap(), true));
        assert_eq!(config.sync.as_ref().unwrap().peers.len(), 2);
        let again = Config::from_toml_str(&crate::config::to_toml(&config), "dump").unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn an_address_is_vrrp_held_or_announced_never_both() {
        let vrrp = "[[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.100\"]\n";
        let ok = load(&format!("{vrrp}[bgp]\naddresses = [\"198.18.0.101\"]\n")).unwrap();
        let listed = Announced::Listed(vec!["198.18.0.101".parse().unwrap()]);
        assert_eq!(ok.bgp.unwrap().addresses, listed);
        // Every VIP not held by VRRP: here 198.18.0.101.
        assert!(load(&format!("{vrrp}[bgp]\n")).is_ok());
        let both = load(&format!("{vrrp}[bgp]\naddresses = [\"198.18.0.100\"]\n")).unwrap_err();
        assert!(both.contains("198.18.0.100 is held by vrrp[0]"), "{both}");
        let defaults = load("[[vrrp]]\nvrid = 51\n[bgp]\n").unwrap_err();
        assert!(
            defaults.contains("list the addresses of one of them"),
            "{defaults}"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("[bgp]\naddresses = []\n", "bgp.addresses: is empty"),
            ("[bgp]\naddresses = [\"198.18.0.9\"]\n", "198.18.0.9 is not the address of any [[vip]]"),
            ("[bgp]\nprotocol = \"1x\"\n", "is not a BIRD protocol name"),
            ("[bgp]\nnode_state_file = \"node.state\"\n", "bgp.node_state_file"),
            ("[bgp]\nbird_socket = \"bird.ctl\"\n", "is not an absolute path"),
            ("[bgp]\nstartup_wait_ms = 700000\n", "bgp.startup_wait_ms"),
            ("[bgp]\nneighbour = 1\n", "unknown field `neighbour`"),
            ("[sync]\nlisten = \"198.18.2.11:7946\"\nkey_file = \"/k\"\n", "sync.peers"),
            ("[sync]\nlisten = \"198.18.2.11:7946\"\npeers = []\nkey_file = \"/k\"\n", "is empty"),
            (
                "[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [\"198.18.2.11:7946\"]\nkey_file = \"/k\"\n",
                "this node's own sync.listen",
            ),
            (
                "[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [\"198.18.2.12:7946\", \"198.18.2.12:7946\"]\nkey_file = \"/k\"\n",
                "listed twice",
            ),
            (
                "[[vrrp]]\nvrid = 51\nsync_listen = \"198.18.2.11:7000\"\nsync_peer = \"198.18.2.12:7000\"\nsync_key_file = \"/k\"\n[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [\"198.18.2.12:7946\"]\nkey_file = \"/k\"\n",
                "replication is configured twice",
            ),
        ];
        for (extra, expected) in cases {
            let error = load(extra).unwrap_err();
            assert!(error.contains(expected), "{extra:?}: {error}");
        }
    }

    /// An address of `[bgp].addresses` refused for what it is (no VIP's,
    /// VRRP-held) is pointed at and named by its index, as a malformed one
    /// is, not at the `[bgp]` header.
    #[test]
    fn a_bad_address_is_pointed_at_in_a_multi_line_list() {
        let list = |second: &str| {
            format!("[bgp]\naddresses = [\n  \"198.18.0.100\",\n  \"{second}\",\n]\n")
        };
        // The second entry is on the fourth line after the VIPs.
        let line = VIPS.lines().count() + 4;
        let error = load(&list("198.18.0.9")).unwrap_err();
        assert!(
            error.starts_with(&format!(
                "lbd.toml:{line}:3: bgp.addresses[1]: 198.18.0.9 is not the address of any [[vip]]"
            )),
            "{error}"
        );
        let vrrp = "[[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.101\"]\n";
        let error = load(&format!("{vrrp}{}", list("198.18.0.101"))).unwrap_err();
        assert!(
            error.starts_with(&format!(
                "lbd.toml:{}:3: bgp.addresses[1]: 198.18.0.101 is held by vrrp[0]",
                line + 3
            )),
            "{error}"
        );
    }

    #[test]
    fn stems_that_make_bird_keywords_are_refused() {
        for stem in [
            "ipv",
            "vpn",
            "roa",
            "flow",
            "is_v",
            "master",
            "sha38",
            "sha25",
            "blake2s25",
            "blake2b25",
            "as",
            "IPV",
            "Blake2S25",
        ] {
            let error = load(&format!("[bgp]\nprotocol = \"{stem}\"\n")).unwrap_err();
            assert!(
                error.contains("bgp.protocol") && error.contains("BIRD reserves"),
                "{stem}: {error}"
            );
        }
        for stem in ["lbd_vips", "mpls", "ip", "evpn", "ipv4x"] {
            assert!(
                load(&format!("[bgp]\nprotocol = \"{stem}\"\n")).is_ok(),
                "{stem}"
            );
        }
    }

    #[test]
    fn the_node_state_is_kept_on_persistent_storage_by_default() {
        let bgp = load("[bgp]\n").unwrap().bgp.unwrap();
        assert_eq!(bgp.node_state_file, PathBuf::from(DEFAULT_NODE_STATE_FILE));
        assert!(!bgp.node_state_file.starts_with("/run"));
        let bgp = load("[bgp]\nnode_state_file = \"/srv/lbd/node.state\"\n")
            .unwrap()
            .bgp
            .unwrap();
        assert_eq!(bgp.node_state_file, PathBuf::from("/srv/lbd/node.state"));
    }

    #[test]
    fn announcing_without_replication_or_with_minimal_tables_is_warned_of() {
        let fields = |config: &Config| -> Vec<String> {
            crate::config::warnings(config)
                .into_iter()
                .map(|w| w.field)
                .collect()
        };
        assert_eq!(fields(&load("[bgp]\n").unwrap()), ["bgp"]);
        let text = format!("maglev_mode = \"minimal\"\n{VIPS}[bgp]\n[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [\"198.18.2.12:7946\"]\nkey_file = \"/k\"\n");
        let config = Config::from_toml_str(&text, "lbd.toml").unwrap();
        // (and the mesh's sizing note, see `sync::sizing_warnings`)
        assert_eq!(fields(&config), ["maglev_mode", "sync.peers"]);
        assert!(fields(&load("").unwrap()).is_empty());
    }

    #[test]
    fn nat_vips_are_not_announced() {
        let text = r#"interface = "eth0"
[nat]
source_ipv4 = "198.18.2.50"
[[vip]]
address = "198.18.0.100"
port = 80
forwarding = "nat"
  [[vip.backend]]
  address = "198.19.1.11"
[bgp]
"#;
        let error = Config::from_toml_str(text, "lbd.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("forwarding = \"nat\""), "{error}");
    }
}
