//! The `[nat]` table and the NAT keys of a VIP: where NAT-mode flows get
//! their source address and ports, and how long their translations live.
//!
//! ```toml
//! [nat]
//! source_ipv4 = "198.18.0.50"        # NAT address of IPv4 VIPs in NAT mode
//! source_ipv6 = "2001:2::50"         # ... of IPv6 ones
//! source_port_min = 1024             # source ports handed out, default 1024..=65535
//! source_port_max = 65535
//! flow_table_size = 262144           # entries (two per flow), 1024..=16777216
//! tcp_syn_timeout_s = 30             # a SYN the backend never answered
//! tcp_established_timeout_s = 7440   # an established, silent connection
//! tcp_closing_timeout_s = 60         # after the first FIN
//! tcp_time_wait_timeout_s = 60       # after both FINs (the backends' TIME_WAIT)
//! tcp_closed_timeout_s = 10          # after an RST
//! udp_timeout_s = 60
//!
//! [[vip]]
//! forwarding = "nat"                 # "dsr-l2" (default) or "nat"
//! nat_source = "198.18.0.51"         # optional: this VIP's own NAT address
//!   [[vip.backend]]
//!   address = "198.19.2.11"
//!   port = 8080                      # optional (NAT only): the backend's port
//! ```
//!
//! Rules: a NAT VIP needs a NAT address of its family (its own or the
//! node's); a NAT address is no VIP's address; `nat_source`, a backend
//! `port` belong to NAT VIPs only, a backend `mac` to DSR ones only. With
//! VRRP, every NAT address in use moves with an instance of its family
//! (added to the default address list; required in an explicit one).

use std::{net::IpAddr, time::Duration};

use lb_common::{consts::NAT_FLOWS_SIZE_DEFAULT, Mode};
use serde::Deserialize;
use toml::{Spanned, Value};

use super::{value, Checker, ConfigError};

/// Smallest NAT flow table accepted.
const MIN_NAT_FLOW_TABLE: u32 = 1024;
/// Largest NAT flow table accepted.
const MAX_NAT_FLOW_TABLE: u32 = 16_777_216;
/// First source port handed out by default: below it are the well-known
/// ports a backend might treat specially.
pub(crate) const DEFAULT_PORT_MIN: u16 = 1024;
/// Last source port handed out by default.
pub(crate) const DEFAULT_PORT_MAX: u16 = 65_535;

/// Node-wide NAT settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatConfig {
    /// NAT address of IPv4 NAT VIPs without their own.
    pub source_ipv4: Option<IpAddr>,
    /// NAT address of IPv6 NAT VIPs without their own.
    pub source_ipv6: Option<IpAddr>,
    /// First source port handed out.
    pub port_min: u16,
    /// Last source port handed out (inclusive).
    pub port_max: u16,
    /// Entries of the NAT flow table (two per flow).
    pub flow_table_size: u32,
    /// How long a translation lives without packets, per state.
    pub timeouts: NatTimeouts,
}

/// Idle time after which the reaper frees a translation (and its port),
/// per state: short where the connection is gone or never came up, long
/// where it is established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatTimeouts {
    /// SYN sent, no answer.
    pub tcp_syn: Duration,
    /// Established.
    pub tcp_established: Duration,
    /// One FIN seen.
    pub tcp_closing: Duration,
    /// Both FINs seen: held as long as the side that closed first holds
    /// TIME_WAIT (a minute on Linux), so the port does not go to another
    /// client's flow meanwhile (`NatFlowState::TcpTimeWait`).
    pub tcp_time_wait: Duration,
    /// An RST seen.
    pub tcp_closed: Duration,
    /// UDP.
    pub udp: Duration,
    /// Not a setting (None from the file): set under table pressure
    /// (`nat::reaper::pressure`), where unanswered flows (TCP SYN sent,
    /// UDP the backend never answered) go after this if their own
    /// timeout is longer, as conntrack drops unassured entries first.
    pub unreplied: Option<Duration>,
}

/// The default `tcp_established_timeout_s`: Linux's default keepalive
/// time, 7200 s, and four minutes more (see `NatTimeouts::default`).
pub(crate) const DEFAULT_TCP_ESTABLISHED_S: u64 = 7440;

impl Default for NatTimeouts {
    fn default() -> Self {
        Self {
            tcp_syn: Duration::from_secs(30),
            // Linux's keepalive time (`tcp_keepalive_time`, 7200 s) and
            // four minutes: an idle connection kept alive by default
            // keepalives is never reaped just before its probe (the data
            // plane's stamp can be a second older than the last packet,
            // and the probe takes a round trip to arrive).
            tcp_established: Duration::from_secs(DEFAULT_TCP_ESTABLISHED_S),
            tcp_closing: Duration::from_secs(60),
            tcp_time_wait: Duration::from_secs(60),
            tcp_closed: Duration::from_secs(10),
            udp: Duration::from_secs(60),
            unreplied: None,
        }
    }
}

impl Default for NatConfig {
    fn default() -> Self {
        Self {
            source_ipv4: None,
            source_ipv6: None,
            port_min: DEFAULT_PORT_MIN,
            port_max: DEFAULT_PORT_MAX,
            flow_table_size: NAT_FLOWS_SIZE_DEFAULT,
            timeouts: NatTimeouts::default(),
        }
    }
}

impl NatConfig {
    /// The node's NAT address for VIPs of `vip`'s family.
    pub fn source_for(&self, vip: IpAddr) -> Option<IpAddr> {
        if vip.is_ipv4() {
            self.source_ipv4
        } else {
            self.source_ipv6
        }
    }

    /// The NAT side of a NAT VIP at `vip` with its own source `own` (if
    /// any): None when no NAT address of the family is configured.
    pub fn vip_nat(&self, vip: IpAddr, own: Option<IpAddr>) -> Option<VipNat> {
        Some(VipNat {
            source: own.or_else(|| self.source_for(vip))?,
            own_source: own.is_some(),
            port_min: self.port_min,
            port_max: self.port_max,
        })
    }
}

/// Where a NAT VIP's translated flows come from, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VipNat {
    /// The NAT address (the VIP's own or the node's).
    pub source: IpAddr,
    /// Whether the VIP names it itself (`nat_source`), rather than taking
    /// the node's.
    pub own_source: bool,
    /// First source port.
    pub port_min: u16,
    /// Last source port.
    pub port_max: u16,
}

/// The `[nat]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [nat] table")]
pub(super) struct RawNat {
    source_ipv4: Option<Spanned<Value>>,
    source_ipv6: Option<Spanned<Value>>,
    source_port_min: Option<Spanned<Value>>,
    source_port_max: Option<Spanned<Value>>,
    flow_table_size: Option<Spanned<Value>>,
    tcp_syn_timeout_s: Option<Spanned<Value>>,
    tcp_established_timeout_s: Option<Spanned<Value>>,
    tcp_closing_timeout_s: Option<Spanned<Value>>,
    tcp_time_wait_timeout_s: Option<Spanned<Value>>,
    tcp_closed_timeout_s: Option<Spanned<Value>>,
    udp_timeout_s: Option<Spanned<Value>>,
}

impl super::TableName for RawNat {
    const NAME: &'static str = "nat";
}

impl Checker<'_> {
    /// The `[nat]` table (defaults when absent).
    pub(super) fn nat(
        &self,
        raw: Option<&Spanned<super::raw::OneTable<RawNat>>>,
    ) -> Result<NatConfig, ConfigError> {
        let Some(raw) = raw else {
            return Ok(NatConfig::default());
        };
        let table = raw.span().start;
        let raw = raw.get_ref().get();
        let mut nat = NatConfig::default();
        if let Some(v) = &raw.source_ipv4 {
            let address = self.address(v, "nat.source_ipv4")?;
            if !address.is_ipv4() {
                return Err(self.bad_value(v, "nat.source_ipv4", format!("{address} is not IPv4")));
            }
            self.checked(v, "nat.source_ipv4", value::routable_nat_address(address))?;
            nat.source_ipv4 = Some(address);
        }
        if let Some(v) = &raw.source_ipv6 {
            let address = self.address(v, "nat.source_ipv6")?;
            if address.is_ipv4() {
                return Err(self.bad_value(v, "nat.source_ipv6", format!("{address} is not IPv6")));
            }
            self.checked(v, "nat.source_ipv6", value::routable_nat_address(address))?;
            nat.source_ipv6 = Some(address);
        }
        if let Some(v) = &raw.source_port_min {
            nat.port_min = self.integer(v, "nat.source_port_min", 1..=65_535u16)?;
        }
        if let Some(v) = &raw.source_port_max {
            nat.port_max = self.integer(v, "nat.source_port_max", 1..=65_535u16)?;
        }
        if nat.port_min > nat.port_max {
            let at = raw
                .source_port_max
                .as_ref()
                .map_or(table, |v| v.span().start);
            return Err(self.invalid(
                at,
                "nat.source_port_max",
                format!(
                    "{} is below source_port_min {}: the range would be empty",
                    nat.port_max, nat.port_min
                ),
            ));
        }
        if let Some(v) = &raw.flow_table_size {
            nat.flow_table_size = self.integer(
                v,
                "nat.flow_table_size",
                MIN_NAT_FLOW_TABLE..=MAX_NAT_FLOW_TABLE,
            )?;
        }
        let seconds = |v: &Option<Spanned<Value>>, name: &str, default: Duration| {
            v.as_ref().map_or(Ok(default), |v| {
                self.integer::<u32>(v, &format!("nat.{name}"), 1..=86_400 * 7)
                    .map(|s| Duration::from_secs(s.into()))
            })
        };
        let defaults = NatTimeouts::default();
        nat.timeouts = NatTimeouts {
            tcp_syn: seconds(
                &raw.tcp_syn_timeout_s,
                "tcp_syn_timeout_s",
                defaults.tcp_syn,
            )?,
            tcp_established: seconds(
                &raw.tcp_established_timeout_s,
                "tcp_established_timeout_s",
                defaults.tcp_established,
            )?,
            tcp_closing: seconds(
                &raw.tcp_closing_timeout_s,
                "tcp_closing_timeout_s",
                defaults.tcp_closing,
            )?,
            tcp_time_wait: seconds(
                &raw.tcp_time_wait_timeout_s,
                "tcp_time_wait_timeout_s",
                defaults.tcp_time_wait,
            )?,
            tcp_closed: seconds(
                &raw.tcp_closed_timeout_s,
                "tcp_closed_timeout_s",
                defaults.tcp_closed,
            )?,
            udp: seconds(&raw.udp_timeout_s, "udp_timeout_s", defaults.udp)?,
            unreplied: None,
        };
        Ok(nat)
    }

    /// A VIP's `forwarding`.
    pub(super) fn forwarding(
        &self,
        value: &Spanned<Value>,
        field: &str,
    ) -> Result<Mode, ConfigError> {
        let choices: Vec<(&str, Mode)> = Mode::ALL.iter().map(|m| (m.name(), *m)).collect();
        self.choice(value, field, &choices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const NAT_VIP: &str = r#"
interface = "eth0"
[nat]
source_ipv4 = "198.18.0.50"
source_port_min = 2000
source_port_max = 2999
[[vip]]
address = "198.18.0.100"
port = 80
forwarding = "nat"
  [[vip.backend]]
  address = "198.19.2.11"
  port = 8080
"#;

    fn error(text: &str) -> String {
        match Config::from_toml_str(text, "lbd.toml") {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_nat_vip_takes_the_node_source_and_its_backends_their_ports() {
        let config = Config::from_toml_str(NAT_VIP, "lbd.toml").unwrap();
        let vip = &config.vips[0];
        assert_eq!(vip.forwarding, Mode::Nat);
        assert_eq!(
            vip.nat,
            Some(VipNat {
                source: "198.18.0.50".parse().unwrap(),
                own_source: false,
                port_min: 2000,
                port_max: 2999,
            })
        );
        assert_eq!(vip.backends[0].port, Some(8080));
        assert_eq!(config.nat.timeouts, NatTimeouts::default());
    }

    #[test]
    fn time_wait_and_closed_flows_have_timeouts_of_their_own() {
        let with = |line: &str| {
            NAT_VIP.replace(
                "source_port_max = 2999",
                &format!("source_port_max = 2999\n{line}"),
            )
        };
        let config = Config::from_toml_str(
            &with("tcp_time_wait_timeout_s = 120\ntcp_closed_timeout_s = 5"),
            "lbd.toml",
        )
        .unwrap();
        assert_eq!(config.nat.timeouts.tcp_time_wait, Duration::from_secs(120));
        assert_eq!(config.nat.timeouts.tcp_closed, Duration::from_secs(5));
        assert_eq!(
            NatTimeouts::default().tcp_time_wait,
            Duration::from_secs(60)
        );
        let e = error(&with("tcp_time_wait_timeout_s = 0"));
        assert!(e.contains("nat.tcp_time_wait_timeout_s"), "{e}");
    }

    #[test]
    fn a_vip_source_overrides_the_node_one() {
        let text = NAT_VIP.replace(
            "forwarding = \"nat\"",
            "forwarding = \"nat\"\nnat_source = \"198.18.0.51\"",
        );
        let config = Config::from_toml_str(&text, "lbd.toml").unwrap();
        let nat = config.vips[0].nat.unwrap();
        assert_eq!(nat.source, "198.18.0.51".parse::<IpAddr>().unwrap());
        assert!(nat.own_source);
    }

    #[test]
    fn a_dump_reads_back_as_the_same_config() {
        let text = format!(
            "{}[[vrrp]]\nvrid = 7\n",
            NAT_VIP.replace(
                "forwarding = \"nat\"",
                "forwarding = \"nat\"\nnat_source = \"198.18.0.51\""
            )
        );
        let config = Config::from_toml_str(&text, "lbd.toml").unwrap();
        let dumped = crate::config::to_toml(&config);
        assert_eq!(
            Config::from_toml_str(&dumped, "dump").unwrap(),
            config,
            "{dumped}"
        );
    }

    #[test]
    fn nat_addresses_join_the_default_vrrp_addresses() {
        let text = format!("{NAT_VIP}[[vrrp]]\nvrid = 7\n");
        let config = Config::from_toml_str(&text, "lbd.toml").unwrap();
        let addresses: Vec<String> = config.vrrp[0]
            .addresses
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(addresses, ["198.18.0.100", "198.18.0.50"]);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                NAT_VIP.replace("source_ipv4 = \"198.18.0.50\"", ""),
                "lbd.toml:10:14: vip[0].forwarding: forwarding = \"nat\" needs a NAT address of the VIP's family: set nat_source here or [nat].source_ipv4",
            ),
            (
                NAT_VIP.replace("forwarding = \"nat\"", "forwarding = \"NAT\""),
                "lbd.toml:10:14: vip[0].forwarding:",
            ),
            (
                NAT_VIP.replace("forwarding = \"nat\"", ""),
                "lbd.toml:13:10: vip[0].backend[0].port: direct server return keeps the VIP's port",
            ),
            (
                NAT_VIP.replace("port = 8080", "mac = \"02:00:00:00:00:11\""),
                "lbd.toml:13:9: vip[0].backend[0].mac: a NAT VIP's backends are routed",
            ),
            (
                NAT_VIP.replace("port = 8080", "port = 0"),
                "lbd.toml:13:10: vip[0].backend[0].port:",
            ),
            (
                NAT_VIP.replace("source_port_max = 2999", "source_port_max = 1999"),
                "lbd.toml:6:19: nat.source_port_max: 1999 is below source_port_min 2000",
            ),
            (
                NAT_VIP.replace("198.18.0.50", "2001:2::50"),
                "lbd.toml:4:15: nat.source_ipv4: 2001:2::50 is not IPv4",
            ),
            (
                NAT_VIP.replace("198.18.0.50", "198.18.0.100"),
                "lbd.toml:7:1: vip[0] ([nat] source): 198.18.0.100 is vip[0]'s address",
            ),
            (
                NAT_VIP.replace("forwarding = \"nat\"", "nat_source = \"198.18.0.51\""),
                "lbd.toml:10:14: vip[0].nat_source: only a VIP with forwarding = \"nat\"",
            ),
            (
                format!("{NAT_VIP}[[vrrp]]\nvrid = 7\naddresses = [\"198.18.0.100\"]\n"),
                "lbd.toml:16:14: vrrp[0].addresses[0]: the NAT address 198.18.0.50 of VIP 198.18.0.100 must move with the VIP",
            ),
            (
                NAT_VIP.replace("[nat]", "[nat]\nsource_ports = 3"),
                "lbd.toml:4:1: unknown field `source_ports`",
            ),
        ];
        for (text, expected) in cases {
            let message = error(&text);
            assert!(
                message.starts_with(expected),
                "{message:?} does not start with {expected:?}\n{text}"
            );
        }
    }
}
