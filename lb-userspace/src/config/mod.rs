//! The configuration of `lbd`: a TOML file, parsed and validated into plain values.
//!
//! `lbd` is the daemon of an eBPF/XDP layer-4 load balancer in direct server return
//! mode. Everything it needs to know about the node (which interface to attach to,
//! how to attach, how large the connection table is) and about the services it
//! balances (virtual IPs and their backends) comes from one TOML file, read by
//! [`Config::load`] or [`Config::from_toml_str`].
//!
//! # Format
//!
//! ```toml
//! # Interface the program attaches to (required).
//! interface = "eth0"
//! # Hook: "xdp" (default) or "tc" (a tc ingress program, for interfaces without XDP).
//! attach = "xdp"
//! # With attach = "xdp": "auto" (default): native (driver) mode, falling back to generic with a warning; "native"; "generic".
//! xdp_mode = "auto"
//! # Connection table size (flows), default 262144, range 1024..=16777216.
//! conntrack_size = 262144
//! # Half-open table size (TCP flows whose handshake is under way), default 32768,
//! # range 1024..=4194304, rounded up to a power of two of 8-flow buckets.
//! half_open_size = 32768
//!
//! [[vip]]
//! address = "198.18.0.100"        # IPv4 or IPv6 (required)
//! port = 80                       # 1..=65535 (required)
//! protocol = "tcp"                # "tcp" (default) or "udp"
//! table_size = 65537              # Maglev table size, a prime, 3..=65537, default 65537
//!
//!   [[vip.backend]]
//!   address = "198.18.0.11"       # required; same family as the VIP
//!   mac = "02:00:00:00:00:11"     # optional; when absent lbd resolves it from the neighbour table
//!   weight = 100                  # 0..=10000, default 100 (0 = takes no new flows)
//! ```
//!
//! A file with no `[[vip]]` at all is valid: a node may start empty and be given
//! services later.
//!
//! # Rules
//!
//! Unknown fields are rejected (a misspelt key is an error, never silently ignored).
//! Beyond the ranges above:
//!
//! - `interface` is a Linux interface name: 1 to 15 bytes, no `/`, `:`, whitespace
//!   or control characters, and neither `.` nor `..`.
//! - VIP and backend addresses are neither unspecified (`0.0.0.0`, `::`) nor multicast.
//! - Two VIPs may not share address, port and protocol.
//! - A backend has the same address family as its VIP, is not the VIP's own address,
//!   and appears at most once per VIP.
//! - A MAC is written `aa:bb:cc:dd:ee:ff` (hex, any case) and is neither multicast
//!   (low bit of the first octet) nor all zero.
//! - At most [`MAX_VIPS`] VIPs, [`MAX_BACKENDS_PER_VIP`] backends per VIP,
//!   [`MAX_BACKENDS_TOTAL`] backends in all, and [`MAX_CONFIG_BYTES`] bytes of
//!   text (checked before parsing).
//! - `admin_socket_group` is a group name (at most [`MAX_GROUP_NAME_BYTES`]
//!   bytes, no `:`, whitespace or control characters) or a numeric gid; with
//!   it the admin socket is mode 0660 and belongs to that group, without it
//!   0600 (root only).
//!
//! # Errors
//!
//! Every error names where it is: the source name, the 1-based line and column of the
//! offending value (or of the table that lacks a required key), and the path of the
//! field, for example
//!
//! ```text
//! lbd.toml:12:12: vip[0].backend[2].weight: 20000 is out of range 0..=10000
//! lbd.toml:3:1: unknown field `interfce`, expected one of `interface`, `xdp_mode`, `conntrack_size`, `vip`
//! lbd.toml:7:11: vip[1].address: "198.18.0.300" is not an IPv4 or IPv6 address
//! ```
//!
//! Validation stops at the first error found.

mod bgp;
mod dump;
mod flood;
mod guard;
mod health;
mod nat;
mod reload;
mod sync;
mod tunnel;
pub mod value;
mod vrrp;
mod warnings;

pub use bgp::{Announced, BgpConfig};
pub use dump::to_toml;
pub use health::{CheckType, HealthConfig, MAX_HEALTH_HOST_BYTES, MAX_HEALTH_PATH_BYTES};
pub use nat::{NatConfig, NatTimeouts, VipNat};
pub use sync::SyncSettings;
pub(crate) use tunnel::prefix_text;
pub use tunnel::TunnelSettings;
pub use vrrp::VrrpConfig;
pub use warnings::{warnings, Warning};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use toml::{Spanned, Value};

use crate::mac::Mac;

/// Most VIPs one node serves; bounds the size of the BPF maps `lbd` creates.
pub(crate) const MAX_VIPS: usize = 256;

/// Most backends one VIP may have; bounds the backend maps and Maglev build time.
pub(crate) const MAX_BACKENDS_PER_VIP: usize = 1000;

/// Most backends of all VIPs together: the data plane's backend map holds
/// `MAX_BACKENDS` entries and id 0 means "no backend".
pub(crate) const MAX_BACKENDS_TOTAL: usize = lb_common::consts::MAX_BACKENDS as usize - 1;

/// Longest group name accepted for `admin_socket_group` (as `useradd` allows).
pub(crate) const MAX_GROUP_NAME_BYTES: usize = 32;

/// Largest configuration text accepted, in bytes, checked before parsing so that a
/// wrong path (a log file, a device) cannot make `lbd` parse gigabytes.
pub(crate) const MAX_CONFIG_BYTES: usize = 4 << 20;

/// Longest Linux interface name in bytes (`IFNAMSIZ` minus the terminating NUL).
pub(crate) const MAX_INTERFACE_NAME_BYTES: usize = 15;

/// Connection table size used when `conntrack_size` is absent.
pub(crate) const DEFAULT_CONNTRACK_SIZE: u32 = 262_144;

/// Smallest `conntrack_size` accepted: below this the table thrashes on any real load.
pub(crate) const MIN_CONNTRACK_SIZE: u32 = 1024;

/// Largest `conntrack_size` accepted: keeps the map's kernel memory reasonable.
pub(crate) const MAX_CONNTRACK_SIZE: u32 = 16_777_216;

/// Half-open table size (flows) used when `half_open_size` is absent.
pub(crate) const DEFAULT_HALF_OPEN_SIZE: u32 = lb_common::consts::HALF_OPEN_SIZE_DEFAULT;

/// Smallest `half_open_size` accepted: a SYN flood of a few thousand
/// packets would otherwise evict handshakes still under way.
pub(crate) const MIN_HALF_OPEN_SIZE: u32 = 1024;

/// Largest `half_open_size` accepted: 4 Mi flows take 288 MiB of kernel
/// memory, a flood's worth of SYNs for any timeout.
pub(crate) const MAX_HALF_OPEN_SIZE: u32 = 4_194_304;

/// Maglev table size used when `table_size` is absent (the largest allowed prime).
pub(crate) const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// Smallest Maglev table size accepted (the smallest odd prime).
pub(crate) const MIN_TABLE_SIZE: u32 = 3;

/// Largest Maglev table size accepted; bounds the per-VIP lookup map.
pub(crate) const MAX_TABLE_SIZE: u32 = 65_537;

/// Where the admin API listens when `admin_socket` is absent.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/lbd/lbd.sock";

/// Where the data plane is pinned when `pin_dir` is absent.
pub(crate) const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/lbd";

/// Where metrics are served when `metrics_listen` is absent: loopback only.
pub(crate) const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9641";

/// How long a TCP flow may be silent and still count as live (for drain).
pub(crate) const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(900);

/// How long a UDP flow may be silent and still count as live.
pub(crate) const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Backend weight used when `weight` is absent.
pub(crate) const DEFAULT_WEIGHT: u32 = 100;

/// Largest backend weight accepted.
pub const MAX_WEIGHT: u32 = 10_000;

/// The whole, validated configuration of one `lbd` node.
///
/// A plain value (no spans, no raw TOML) so that callers can compare the running
/// configuration with a newly loaded one and apply only the difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Network interface the XDP program attaches to, e.g. `eth0`.
    pub interface: String,
    /// Which hook the packet path runs at: XDP (the default) or tc
    /// ingress, for drivers, bonds and VLAN devices without XDP.
    pub attach: Attach,
    /// How the XDP program is attached to `interface` (`attach = "xdp"`).
    pub xdp_mode: XdpMode,
    /// Number of flows the connection table holds.
    pub conntrack_size: u32,
    /// Number of half-open TCP flows (SYN seen, ACK not yet) the half-open
    /// table holds, apart from the connection table (a power of two of
    /// buckets: rounded up).
    pub half_open_size: u32,
    /// How Maglev tables follow changes of the backend set.
    pub maglev_mode: MaglevMode,
    /// Unix socket of the admin API (mode 0600: root only).
    pub admin_socket: PathBuf,
    /// bpffs directory where the XDP link and maps are pinned so the data
    /// plane outlives lbd (None, `pin_dir = "off"`: it lives and dies with
    /// lbd).
    pub pin_dir: Option<PathBuf>,
    /// Group whose members may use the admin API too (socket mode 0660);
    /// `None`: root only.
    pub admin_socket_group: Option<AdminSocketGroup>,
    /// Log level (a tracing filter such as `info` or `lb_userspace=debug`);
    /// `RUST_LOG` overrides it.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (None: off).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// A TCP flow silent for longer no longer counts as live.
    pub tcp_idle_timeout: Duration,
    /// A UDP flow silent for longer no longer counts as live.
    pub udp_idle_timeout: Duration,
    /// Services balanced by this node, in file order; possibly empty.
    pub vips: Vec<VipConfig>,
    /// VRRP instances (none: this node always serves its VIPs and leaves
    /// their addresses to the operator).
    pub vrrp: Vec<VrrpConfig>,
    /// NAT addresses, source ports and translation timeouts (`[nat]`).
    pub nat: NatConfig,
    /// GUE port and outer source prefixes of the tunnelled modes
    /// (`[tunnel]`).
    pub tunnel: TunnelSettings,
    /// Active-active announcement of the VIP addresses through BIRD
    /// (`[bgp]`; None: no BGP).
    pub bgp: Option<BgpConfig>,
    /// Full-mesh connection-table replication of an active-active group
    /// (`[sync]`; a VRRP pair configures its own in `[[vrrp]]`).
    pub sync: Option<SyncSettings>,
    /// Deny and allow lists and limits of new flows (`[[acl]]`,
    /// `[[limit]]`; see `crate::guard`).
    pub guard: crate::guard::GuardConfig,
    /// When lbd says a SYN flood is on (`[flood]`; see `crate::flood`).
    pub flood: crate::flood::machine::FloodThresholds,
}

/// The group given the admin socket, as the config names it; resolved when
/// lbd binds the socket, so a group created later still works after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminSocketGroup {
    /// A group name, looked up in the system's group database.
    Name(String),
    /// A numeric group id.
    Gid(u32),
}

impl fmt::Display for AdminSocketGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminSocketGroup::Name(name) => f.write_str(name),
            AdminSocketGroup::Gid(gid) => write!(f, "{gid}"),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// What a VIP does when none of its backends is healthy; written `drop` or
/// `keep` in the file, the API and the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AllDown {
    /// Drop new flows: clients fail fast.
    #[default]
    #[serde(rename = "drop")]
    Drop,
    /// Keep sending to the backends as if they were up (fail open), for
    /// when the checks, not the service, are likely wrong.
    #[serde(rename = "keep")]
    KeepLast,
}

impl fmt::Display for AllDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AllDown::Drop => "drop",
            AllDown::KeepLast => "keep",
        })
    }
}

/// The hook the balancer runs at: one packet path, two entry points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Attach {
    /// XDP, in `xdp_mode`: the fastest, where the driver has it.
    #[default]
    Xdp,
    /// A tc ingress program (a tcx link; clsact + cls_bpf on kernels
    /// before 6.6): any interface, at the cost of an skb per packet.
    Tc,
}

impl fmt::Display for Attach {
    /// Writes the hook as spelt in the configuration file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Attach::Xdp => "xdp",
            Attach::Tc => "tc",
        })
    }
}

/// How the XDP program is attached, because not every driver supports native XDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic mode with a warning.
    #[default]
    Auto,
    /// Native (driver) mode only; attaching fails if the driver lacks XDP support.
    Native,
    /// Generic (skb) mode: works everywhere, slower.
    Generic,
}

impl fmt::Display for XdpMode {
    /// Writes the mode as spelt in the configuration file, for logs and messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

/// How Maglev tables change when the backend set does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MaglevMode {
    /// Every table is rebuilt as a pure function of the backend set: two
    /// nodes with the same backends agree on every slot, whatever happened
    /// before (a failover moves no untracked flow). A removal moves more
    /// than the removed backend's slots when backends are many.
    #[default]
    Consistent,
    /// The table in service is updated: only the slots that must move do
    /// (one removal of N moves 1/N). Tables depend on the history of
    /// changes, so VRRP peers can disagree on slots; only flows missing
    /// from the connection table notice.
    Minimal,
}

impl fmt::Display for MaglevMode {
    /// Writes the mode as spelt in the configuration file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MaglevMode::Consistent => "consistent",
            MaglevMode::Minimal => "minimal",
        })
    }
}

/// Transport protocol of a VIP, because a service is identified by address, port and
/// protocol together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Protocol {
    /// TCP (IP protocol 6).
    #[default]
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Protocol {
    /// The IP protocol number (6 or 17), as the BPF program matches it in packet headers.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The protocol with this IP protocol number, if it is one we balance
    /// (reading maps a previous lbd wrote).
    pub(crate) fn from_number(number: u8) -> Option<Self> {
        match number {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    /// Writes `tcp` or `udp`, as spelt in the configuration file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One balanced service (virtual IP, port, protocol) and the backends behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipConfig {
    /// The virtual IP clients connect to; neither unspecified nor multicast.
    pub address: IpAddr,
    /// Destination port of the service, 1..=65535.
    pub port: u16,
    /// Transport protocol of the service.
    pub protocol: Protocol,
    /// Maglev lookup table size: a prime in 3..=65537.
    pub table_size: u32,
    /// Health checks of its backends (a backend may override them).
    pub health: HealthConfig,
    /// What to do when no backend is healthy.
    pub on_all_down: AllDown,
    /// Default limit on a drain: afterwards the backend's remaining flows
    /// are cut (None: wait for them to end).
    pub drain_timeout: Option<Duration>,
    /// How packets reach the backends (`forwarding`).
    pub forwarding: lb_common::Mode,
    /// NAT mode: where translated flows come from (Some exactly when
    /// `forwarding` is NAT).
    pub nat: Option<VipNat>,
    /// Real servers, in file order; same address family as `address`, no duplicates.
    pub backends: Vec<BackendConfig>,
}

impl VipConfig {
    /// A VIP with defaults for everything but its identity.
    pub fn new(address: IpAddr, port: u16, protocol: Protocol) -> Self {
        Self {
            address,
            port,
            protocol,
            table_size: DEFAULT_TABLE_SIZE,
            health: HealthConfig::default_for(protocol),
            on_all_down: AllDown::default(),
            drain_timeout: None,
            forwarding: lb_common::Mode::default(),
            nat: None,
            backends: Vec::new(),
        }
    }
}

/// One real server behind a VIP: reached unchanged at L3 (direct server
/// return) or translated (NAT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// Address of the real server, same family as its VIP.
    pub address: IpAddr,
    /// Next-hop MAC address; `None` means `lbd` resolves it from the neighbour table.
    pub mac: Option<Mac>,
    /// NAT mode: the port it listens on, when not the VIP's.
    pub port: Option<u16>,
    /// Share of new flows, 0..=10000; 0 drains the backend (it takes no new flows).
    pub weight: u32,
    /// Health checks of this backend when they differ from the VIP's.
    pub health: Option<HealthConfig>,
}

impl BackendConfig {
    /// A backend with the default weight, its MAC from the neighbour table
    /// and the VIP's checks.
    pub fn new(address: IpAddr) -> Self {
        Self {
            address,
            mac: None,
            port: None,
            weight: DEFAULT_WEIGHT,
            health: None,
        }
    }
}

/// A line and column in the configuration text, so that an error can be found quickly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column in characters (not bytes), starting at 1.
    pub column: usize,
}

/// Where an error is: the configuration's source name and, when known, the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Name of the configuration source, usually its path.
    pub source_name: String,
    /// Line and column in the source; `None` only if the TOML parser gave no span.
    pub position: Option<Position>,
}

impl fmt::Display for Location {
    /// Writes `name:line:column`, the form editors and terminals recognise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(f, "{}:{}:{}", self.source_name, p.line, p.column),
            None => f.write_str(&self.source_name),
        }
    }
}

/// Why a configuration could not be loaded; its `Display` is meant for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be opened or read.
    #[error("{}: cannot read configuration: {source}", path.display())]
    Io {
        /// Path of the file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The text is larger than [`MAX_CONFIG_BYTES`], so it was not parsed.
    #[error(
        "{source_name}: configuration is {size} bytes, larger than the limit of {limit} bytes"
    )]
    TooLarge {
        /// Name of the configuration source.
        source_name: String,
        /// Size of the text in bytes (for a file, at least this).
        size: u64,
        /// The limit, [`MAX_CONFIG_BYTES`].
        limit: usize,
    },
    /// The text is not UTF-8 or not TOML, or does not have the shape of an `lbd`
    /// configuration (unknown field, a table where an array of tables belongs, ...).
    #[error("{location}: {message}")]
    Parse {
        /// Where the parser stopped.
        location: Location,
        /// What the parser reported.
        message: String,
    },
    /// A value is well-formed TOML but breaks a rule of the configuration.
    #[error("{location}: {field}: {message}")]
    Invalid {
        /// The offending value, or the table missing a required field.
        location: Location,
        /// Path of the field, e.g. `vip[0].backend[2].weight`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// Where in the text the error is, when it concerns the text rather than reading it.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Parse { location, .. } | ConfigError::Invalid { location, .. } => {
                Some(location)
            }
            ConfigError::Io { .. } | ConfigError::TooLarge { .. } => None,
        }
    }
}

impl Config {
    /// Parses and validates configuration text; `source_name` (usually the path) is
    /// only used to label errors.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                source_name: source_name.to_owned(),
                size: text.len() as u64,
                limit: MAX_CONFIG_BYTES,
            });
        }
        let mut checker = Checker {
            text,
            source_name,
            oversized: BTreeMap::new(),
        };
        // An integer too large for TOML (i64) stops the parser with a bare
        // "number too large"; quote it (keeping every offset) and parse
        // again, so validation can name its field and range.
        let mut patched = text.to_owned();
        let raw: RawConfig = loop {
            match toml::from_str(&patched) {
                Ok(raw) => break raw,
                Err(e) => match oversized_integer(&patched, &e) {
                    Some((start, end)) if checker.oversized.len() < MAX_OVERSIZED_INTEGERS => {
                        let literal = patched[start..end].to_owned();
                        let inner = &literal[1..literal.len() - 1];
                        patched.replace_range(start..end, &format!("\"{inner}\""));
                        checker.oversized.insert(start, literal);
                    }
                    _ => return Err(checker.parse_error(&e)),
                },
            }
        };
        checker.config(&raw)
    }

    /// Reads the file at `path` (at most [`MAX_CONFIG_BYTES`] of it) and parses it with
    /// [`Config::from_toml_str`], labelling errors with the path.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let io_error = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let source_name = path.display().to_string();
        let file = File::open(path).map_err(io_error)?;
        let mut bytes = Vec::new();
        // Read one byte past the limit to tell "exactly at the limit" from "over it",
        // without ever holding more than that in memory.
        (&file)
            .take(MAX_CONFIG_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error)?;
        if bytes.len() > MAX_CONFIG_BYTES {
            let size = file
                .metadata()
                .map(|m| m.len())
                .unwrap_or(0)
                .max(bytes.len() as u64);
            return Err(ConfigError::TooLarge {
                source_name,
                size,
                limit: MAX_CONFIG_BYTES,
            });
        }
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                return Err(ConfigError::Parse {
                    location: Location {
                        source_name,
                        position: Some(position(e.as_bytes(), offset)),
                    },
                    message: "invalid UTF-8".to_owned(),
                });
            }
        };
        Config::from_toml_str(&text, &source_name)
    }
}

/// Most too-large integers one text may have before its parse error is given
/// as is (each costs a parse).
const MAX_OVERSIZED_INTEGERS: usize = 16;

/// The byte range of the integer literal a "number too large/small" error
/// of the TOML parser is about, if that is the error (and the literal has
/// room for two quotes).
fn oversized_integer(text: &str, error: &toml::de::Error) -> Option<(usize, usize)> {
    let message = error.message();
    if !message.starts_with("number too large") && !message.starts_with("number too small") {
        return None;
    }
    let start = error.span()?.start;
    let rest = text.get(start..)?;
    let len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-')))
        .unwrap_or(rest.len());
    (len >= 2).then_some((start, start + len))
}

/// Converts a byte offset into a 1-based line and character column.
fn position(text: &[u8], offset: usize) -> Position {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before
        .get(line_start..)
        .unwrap_or_default()
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80) // count characters, not UTF-8 continuation bytes
        .count()
        + 1;
    Position { line, column }
}

// ---------------------------------------------------------------------------------
// Raw, unvalidated form. Leaf values are kept as spanned `toml::Value`s so that type
// errors too are reported by this module, with the field path and position; serde
// only checks the shape (known keys, arrays of tables).

/// The document as parsed, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of lbd settings")]
struct RawConfig {
    interface: Option<Spanned<Value>>,
    attach: Option<Spanned<Value>>,
    xdp_mode: Option<Spanned<Value>>,
    conntrack_size: Option<Spanned<Value>>,
    half_open_size: Option<Spanned<Value>>,
    maglev_mode: Option<Spanned<Value>>,
    admin_socket: Option<Spanned<Value>>,
    pin_dir: Option<Spanned<Value>>,
    admin_socket_group: Option<Spanned<Value>>,
    metrics_listen: Option<Spanned<Value>>,
    log_level: Option<Spanned<Value>>,
    log_format: Option<Spanned<Value>>,
    tcp_idle_timeout_s: Option<Spanned<Value>>,
    udp_idle_timeout_s: Option<Spanned<Value>>,
    #[serde(default)]
    vip: TableArray<RawVip>,
    #[serde(default)]
    vrrp: TableArray<vrrp::RawVrrp>,
    nat: Option<Spanned<nat::RawNat>>,
    tunnel: Option<Spanned<tunnel::RawTunnel>>,
    bgp: Option<Spanned<bgp::RawBgp>>,
    sync: Option<Spanned<sync::RawSync>>,
    flood: Option<Spanned<flood::RawFlood>>,
    #[serde(default)]
    acl: TableArray<guard::RawAcl>,
    #[serde(default)]
    limit: TableArray<guard::RawLimit>,
}

/// One `[[vip]]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[vip]] table")]
struct RawVip {
    address: Option<Spanned<Value>>,
    port: Option<Spanned<Value>>,
    protocol: Option<Spanned<Value>>,
    table_size: Option<Spanned<Value>>,
    on_all_down: Option<Spanned<Value>>,
    drain_timeout_s: Option<Spanned<Value>>,
    forwarding: Option<Spanned<Value>>,
    nat_source: Option<Spanned<Value>>,
    health: Option<Spanned<health::RawHealth>>,
    #[serde(default)]
    backend: TableArray<RawBackend>,
}

/// One `[[vip.backend]]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[vip.backend]] table")]
struct RawBackend {
    address: Option<Spanned<Value>>,
    mac: Option<Spanned<Value>>,
    port: Option<Spanned<Value>>,
    weight: Option<Spanned<Value>>,
    health: Option<Spanned<health::RawHealth>>,
}

/// Names an array of tables in serde's "expected ..." messages.
trait TableName {
    /// The key as written in a `[[...]]` header.
    const NAME: &'static str;
}

impl TableName for RawVip {
    const NAME: &'static str = "vip";
}

impl TableName for RawBackend {
    const NAME: &'static str = "vip.backend";
}

/// An array of tables, each with its span, whose type errors name the array
/// ("expected an array of [[vip]] tables") rather than "a sequence".
struct TableArray<T>(Vec<Spanned<T>>);

impl<T> Default for TableArray<T> {
    fn default() -> Self {
        TableArray(Vec::new())
    }
}

impl<'de, T> Deserialize<'de> for TableArray<T>
where
    T: Deserialize<'de> + TableName,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArrayVisitor<T>(PhantomData<T>);

        impl<'de, T> Visitor<'de> for ArrayVisitor<T>
        where
            T: Deserialize<'de> + TableName,
        {
            type Value = TableArray<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an array of [[{}]] tables", T::NAME)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(TableArray(items))
            }
        }

        deserializer.deserialize_seq(ArrayVisitor(PhantomData))
    }
}

// ---------------------------------------------------------------------------------
// Validation.

/// Validates raw values against the text they came from, to label errors.
struct Checker<'a> {
    text: &'a str,
    source_name: &'a str,
    /// Integer literals too large for TOML, by offset: the parser saw them
    /// as strings of the same length (see [`Config::from_toml_str`]).
    oversized: BTreeMap<usize, String>,
}

impl Checker<'_> {
    fn location(&self, offset: usize) -> Location {
        Location {
            source_name: self.source_name.to_owned(),
            position: Some(position(self.text.as_bytes(), offset)),
        }
    }

    fn parse_error(&self, e: &toml::de::Error) -> ConfigError {
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        ConfigError::Parse {
            location: Location {
                source_name: self.source_name.to_owned(),
                position: e
                    .span()
                    .map(|span| position(self.text.as_bytes(), span.start)),
            },
            message,
        }
    }

    fn invalid(&self, offset: usize, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            location: self.location(offset),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn bad_value(
        &self,
        value: &Spanned<Value>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        self.invalid(value.span().start, field, message)
    }

    /// The literal of an integer too large for TOML, if `value` is one.
    fn oversized(&self, value: &Spanned<Value>) -> Option<&str> {
        self.oversized.get(&value.span().start).map(String::as_str)
    }

    /// Turns a rule's refusal of `value` into an error naming `field`.
    fn checked<T>(
        &self,
        value: &Spanned<Value>,
        field: &str,
        result: Result<T, value::ValueError>,
    ) -> Result<T, ConfigError> {
        result.map_err(|e| self.bad_value(value, field, e.to_string()))
    }

    fn wrong_type(&self, value: &Spanned<Value>, field: &str, expected: &str) -> ConfigError {
        let found = match self.oversized(value) {
            Some(_) => "integer",
            None => value.get_ref().type_str(),
        };
        let article = if found.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        self.bad_value(
            value,
            field,
            format!("expected {expected}, found {article} {found}"),
        )
    }

    /// A required field, or an error at `table_offset` (the table that lacks it).
    fn required<'v>(
        &self,
        value: &'v Option<Spanned<Value>>,
        table_offset: usize,
        field: &str,
    ) -> Result<&'v Spanned<Value>, ConfigError> {
        value
            .as_ref()
            .ok_or_else(|| self.invalid(table_offset, field, "required field is missing"))
    }

    fn string<'v>(&self, value: &'v Spanned<Value>, field: &str) -> Result<&'v str, ConfigError> {
        match value.get_ref() {
            Value::String(s) if self.oversized(value).is_none() => Ok(s),
            _ => Err(self.wrong_type(value, field, "a string")),
        }
    }

    /// One of `choices`, given as (spelling, value) pairs.
    fn choice<T: Copy>(
        &self,
        value: &Spanned<Value>,
        field: &str,
        choices: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let s = self.string(value, field)?;
        self.checked(value, field, value::choice(s, choices))
    }

    fn integer<T>(
        &self,
        value: &Spanned<Value>,
        field: &str,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: Copy + fmt::Display + Into<i64> + TryFrom<i64>,
    {
        let Value::Integer(n) = *value.get_ref() else {
            if let Some(literal) = self.oversized(value) {
                return Err(self.bad_value(
                    value,
                    field,
                    value::out_of_range(literal, &range).to_string(),
                ));
            }
            return Err(self.wrong_type(value, field, "an integer"));
        };
        self.checked(value, field, value::integer(n, range))
    }

    /// An integer checked by one of the shared rules (`value::weight`, ...).
    fn rule<T>(
        &self,
        value: &Spanned<Value>,
        field: &str,
        rule: fn(i64) -> Result<T, value::ValueError>,
    ) -> Result<T, ConfigError> {
        if let Some(literal) = self.oversized(value) {
            // Past i64, so past every rule's range: ask the rule about the
            // nearest i64 for its words, and show the number as written.
            let nearest = if literal.starts_with('-') {
                i64::MIN
            } else {
                i64::MAX
            };
            let message = match rule(nearest) {
                Err(e) => e.to_string().replacen(&nearest.to_string(), literal, 1),
                Ok(_) => format!("{literal} is out of range"),
            };
            return Err(self.bad_value(value, field, message));
        }
        let Value::Integer(n) = *value.get_ref() else {
            return Err(self.wrong_type(value, field, "an integer"));
        };
        self.checked(value, field, rule(n))
    }

    /// A unicast, specified IP address.
    fn address(&self, value: &Spanned<Value>, field: &str) -> Result<IpAddr, ConfigError> {
        let s = self.string(value, field)?;
        self.checked(value, field, value::ip_address(s))
    }

    fn mac(&self, value: &Spanned<Value>, field: &str) -> Result<Mac, ConfigError> {
        let s = self.string(value, field)?;
        self.checked(value, field, value::mac(s))
    }

    /// A group name or a numeric gid.
    fn group(&self, value: &Spanned<Value>, field: &str) -> Result<AdminSocketGroup, ConfigError> {
        if matches!(value.get_ref(), Value::Integer(_)) || self.oversized(value).is_some() {
            // u32::MAX is (gid_t)-1, which chown(2) reads as "leave it".
            return self
                .integer(value, field, 0..=u32::MAX - 1)
                .map(AdminSocketGroup::Gid);
        }
        let Value::String(name) = value.get_ref() else {
            return Err(self.wrong_type(value, field, "a group name or a numeric gid"));
        };
        if name.is_empty() || name.len() > MAX_GROUP_NAME_BYTES {
            return Err(self.bad_value(
                value,
                field,
                format!("{name:?} is not a group name of 1 to {MAX_GROUP_NAME_BYTES} bytes"),
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|&c| c == ':' || c == '/' || c.is_whitespace() || c.is_control())
        {
            return Err(self.bad_value(
                value,
                field,
                format!("{name:?} contains {c:?}, which is not allowed in group names"),
            ));
        }
        Ok(AdminSocketGroup::Name(name.clone()))
    }

    fn interface(&self, value: &Spanned<Value>) -> Result<String, ConfigError> {
        const FIELD: &str = "interface";
        let name = self.string(value, FIELD)?;
        if name.is_empty() {
            return Err(self.bad_value(value, FIELD, "must not be empty"));
        }
        if name.len() > MAX_INTERFACE_NAME_BYTES {
            return Err(self.bad_value(
                value,
                FIELD,
                format!(
                    "{name:?} is {} bytes long; interface names are at most {MAX_INTERFACE_NAME_BYTES} bytes",
                    name.len()
                ),
            ));
        }
        if name == "." || name == ".." {
            return Err(self.bad_value(value, FIELD, format!("{name:?} is not an interface name")));
        }
        // The characters Linux's dev_valid_name() refuses, plus control characters.
        if let Some(c) = name
            .chars()
            .find(|&c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(self.bad_value(
                value,
                FIELD,
                format!("{name:?} contains {c:?}, which is not allowed in interface names"),
            ));
        }
        Ok(name.to_owned())
    }

    fn config(&self, raw: &RawConfig) -> Result<Config, ConfigError> {
        let interface = self.interface(self.required(&raw.interface, 0, "interface")?)?;
        let attach = match &raw.attach {
            None => Attach::default(),
            Some(value) => {
                self.choice(value, "attach", &[("xdp", Attach::Xdp), ("tc", Attach::Tc)])?
            }
        };
        let xdp_mode = match &raw.xdp_mode {
            None => XdpMode::default(),
            Some(value) => self.choice(
                value,
                "xdp_mode",
                &[
                    ("auto", XdpMode::Auto),
                    ("native", XdpMode::Native),
                    ("generic", XdpMode::Generic),
                ],
            )?,
        };
        let maglev_mode = match &raw.maglev_mode {
            None => MaglevMode::default(),
            Some(value) => self.choice(
                value,
                "maglev_mode",
                &[
                    ("consistent", MaglevMode::Consistent),
                    ("minimal", MaglevMode::Minimal),
                ],
            )?,
        };
        let conntrack_size = match &raw.conntrack_size {
            None => DEFAULT_CONNTRACK_SIZE,
            Some(value) => self.integer(
                value,
                "conntrack_size",
                MIN_CONNTRACK_SIZE..=MAX_CONNTRACK_SIZE,
            )?,
        };
        let half_open_size = match &raw.half_open_size {
            None => DEFAULT_HALF_OPEN_SIZE,
            Some(value) => self.integer(
                value,
                "half_open_size",
                MIN_HALF_OPEN_SIZE..=MAX_HALF_OPEN_SIZE,
            )?,
        };

        let admin_socket = match &raw.admin_socket {
            None => PathBuf::from(DEFAULT_ADMIN_SOCKET),
            Some(value) => {
                let path = self.string(value, "admin_socket")?;
                if !path.starts_with('/') || path.len() > 100 {
                    return Err(self.bad_value(
                        value,
                        "admin_socket",
                        format!("{path:?} is not an absolute path of at most 100 bytes"),
                    ));
                }
                PathBuf::from(path)
            }
        };
        let pin_dir = match &raw.pin_dir {
            None => Some(PathBuf::from(DEFAULT_PIN_DIR)),
            Some(value) => {
                let path = self.string(value, "pin_dir")?;
                if path == "off" {
                    None
                } else if !path.starts_with('/') || path.len() > 200 || path.contains("..") {
                    return Err(self.bad_value(
                        value,
                        "pin_dir",
                        format!("{path:?} is not an absolute path (on bpffs) of at most 200 bytes, or \"off\""),
                    ));
                } else {
                    Some(PathBuf::from(path))
                }
            }
        };
        let admin_socket_group = match &raw.admin_socket_group {
            None => None,
            Some(value) => Some(self.group(value, "admin_socket_group")?),
        };
        let log_level = match &raw.log_level {
            None => "info".to_owned(),
            Some(value) => {
                let level = self.string(value, "log_level")?;
                if tracing_subscriber::EnvFilter::try_new(level).is_err() || level.is_empty() {
                    return Err(self.bad_value(
                        value,
                        "log_level",
                        format!("{level:?} is not a log filter (e.g. \"info\", \"warn\", \"lb_userspace=debug\")"),
                    ));
                }
                level.to_owned()
            }
        };
        let log_format = match &raw.log_format {
            None => LogFormat::default(),
            Some(value) => self.choice(
                value,
                "log_format",
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            )?,
        };
        let metrics_listen = match &raw.metrics_listen {
            None => DEFAULT_METRICS_LISTEN.parse().ok(),
            Some(value) => {
                let text = self.string(value, "metrics_listen")?;
                if text.is_empty() || text == "off" {
                    None
                } else {
                    Some(text.parse().map_err(|_| {
                        self.bad_value(
                            value,
                            "metrics_listen",
                            format!("{text:?} is not ADDRESS:PORT (or \"off\")"),
                        )
                    })?)
                }
            }
        };
        let seconds = |value: &Option<Spanned<Value>>, name: &str, default: Duration| {
            value.as_ref().map_or(Ok(default), |v| {
                self.integer::<u32>(v, name, 1..=86_400 * 7)
                    .map(|s| Duration::from_secs(s.into()))
            })
        };
        let tcp_idle_timeout = seconds(
            &raw.tcp_idle_timeout_s,
            "tcp_idle_timeout_s",
            DEFAULT_TCP_IDLE_TIMEOUT,
        )?;
        let udp_idle_timeout = seconds(
            &raw.udp_idle_timeout_s,
            "udp_idle_timeout_s",
            DEFAULT_UDP_IDLE_TIMEOUT,
        )?;

        let nat = self.nat(raw.nat.as_ref())?;
        let tunnel = self.tunnel(raw.tunnel.as_ref())?;
        let bgp = self.bgp(raw.bgp.as_ref())?;
        let sync = self.sync(raw.sync.as_ref())?;
        let flood = self.flood(raw.flood.as_ref())?;

        if let Some(extra) = raw.vip.0.get(MAX_VIPS) {
            return Err(self.invalid(
                extra.span().start,
                &format!("vip[{MAX_VIPS}]"),
                format!("too many VIPs; at most {MAX_VIPS} are allowed"),
            ));
        }
        let mut vips: Vec<VipConfig> = Vec::with_capacity(raw.vip.0.len());
        let mut seen: HashMap<(IpAddr, u16, Protocol), usize> = HashMap::new();
        let mut backends_before = 0;
        for (index, raw_vip) in raw.vip.0.iter().enumerate() {
            // Checked before the VIP's own validation, on the raw count, so
            // the error names the first backend past the limit.
            let room = MAX_BACKENDS_TOTAL.saturating_sub(backends_before);
            if let Some(extra) = raw_vip.get_ref().backend.0.get(room) {
                return Err(self.invalid(
                    extra.span().start,
                    &format!("vip[{index}].backend[{room}]"),
                    format!(
                        "too many backends; at most {MAX_BACKENDS_TOTAL} are allowed across all VIPs"
                    ),
                ));
            }
            backends_before += raw_vip.get_ref().backend.0.len();
            let vip = self.vip(index, raw_vip, &nat)?;
            let key = (vip.address, vip.port, vip.protocol);
            if let Some(first) = seen.get(&key) {
                return Err(self.invalid(
                    raw_vip.span().start,
                    &format!("vip[{index}]"),
                    format!(
                        "duplicates vip[{first}]: same address {}, port {} and protocol {}",
                        vip.address, vip.port, vip.protocol
                    ),
                ));
            }
            seen.insert(key, index);
            vips.push(vip);
        }
        self.nat_sources_are_not_vips(&raw.vip.0, &vips)?;

        let mut instances: Vec<VrrpConfig> = Vec::new();
        for (index, raw_vrrp) in raw.vrrp.0.iter().enumerate() {
            let mut instance = self.vrrp(index, raw_vrrp)?;
            if instance.addresses.is_empty() {
                // Default: every VIP address (of the first VIP's family).
                let family_v4 = vips.first().is_none_or(|v| v.address.is_ipv4());
                for vip in &vips {
                    if vip.address.is_ipv4() == family_v4
                        && !instance.addresses.contains(&vip.address)
                    {
                        instance.addresses.push(vip.address);
                    }
                }
                // NAT addresses move with the VIPs: replies come back to them.
                for source in vips.iter().filter_map(|v| v.nat.map(|n| n.source)) {
                    if source.is_ipv4() == family_v4 && !instance.addresses.contains(&source) {
                        instance.addresses.push(source);
                    }
                }
            } else {
                self.nat_sources_move(index, raw_vrrp, &instance, &vips)?;
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
            instances.push(instance);
        }
        self.announcement_is_single(raw, bgp.as_ref(), sync.as_ref(), &instances, &vips)?;
        let guard = self.guard(&raw.acl, &raw.limit, &vips)?;

        Ok(Config {
            interface,
            attach,
            xdp_mode,
            conntrack_size,
            half_open_size,
            maglev_mode,
            admin_socket,
            pin_dir,
            admin_socket_group,
            log_level,
            log_format,
            metrics_listen,
            tcp_idle_timeout,
            udp_idle_timeout,
            vips,
            vrrp: instances,
            nat,
            tunnel,
            bgp,
            sync,
            guard,
            flood,
        })
    }

    fn vip(
        &self,
        index: usize,
        raw: &Spanned<RawVip>,
        nat_config: &NatConfig,
    ) -> Result<VipConfig, ConfigError> {
        let table = raw.span().start;
        let raw = raw.get_ref();
        let field = |name: &str| format!("vip[{index}].{name}");

        let name = field("address");
        let address = self.address(self.required(&raw.address, table, &name)?, &name)?;

        let name = field("port");
        let port = self.rule(self.required(&raw.port, table, &name)?, &name, value::port)?;

        let protocol = match &raw.protocol {
            None => Protocol::default(),
            Some(v) => {
                let name = field("protocol");
                self.checked(v, &name, value::protocol(self.string(v, &name)?))?
            }
        };

        let table_size = match &raw.table_size {
            None => DEFAULT_TABLE_SIZE,
            Some(v) => self.rule(v, &field("table_size"), value::table_size)?,
        };

        let on_all_down = match &raw.on_all_down {
            None => AllDown::default(),
            Some(v) => {
                let name = field("on_all_down");
                self.checked(v, &name, value::on_all_down(self.string(v, &name)?))?
            }
        };
        let drain_timeout = match &raw.drain_timeout_s {
            None => None,
            Some(v) => Some(self.rule(v, &field("drain_timeout_s"), value::drain_timeout_s)?),
        };
        let forwarding = match &raw.forwarding {
            None => lb_common::Mode::default(),
            Some(v) => self.forwarding(v, &field("forwarding"))?,
        };
        let is_nat = forwarding == lb_common::Mode::Nat;
        let own_source = match &raw.nat_source {
            None => None,
            Some(v) => {
                let name = field("nat_source");
                let source = self.address(v, &name)?;
                Some(
                    value::nat_source(source, address, forwarding)
                        .map_err(|e| self.bad_value(v, &name, e.message()))?,
                )
            }
        };
        let nat = if is_nat {
            let resolved = nat_config.vip_nat(address, own_source);
            if resolved.is_none() {
                let message = value::no_nat_source(address).to_string();
                return Err(match &raw.forwarding {
                    Some(v) => self.bad_value(v, &field("forwarding"), message),
                    None => self.invalid(table, &field("forwarding"), message),
                });
            }
            resolved
        } else {
            None
        };
        let health = match &raw.health {
            None => HealthConfig::default_for(protocol),
            Some(table) => self.health(
                &HealthConfig::default_for(protocol),
                table,
                &field("health"),
                forwarding,
            )?,
        };

        if let Err(e) = value::backends_per_vip(raw.backend.0.len()) {
            let extra = raw
                .backend
                .0
                .get(MAX_BACKENDS_PER_VIP)
                .map_or(table, |b| b.span().start);
            return Err(self.invalid(
                extra,
                &field(&format!("backend[{MAX_BACKENDS_PER_VIP}]")),
                e.to_string(),
            ));
        }
        let mut backends = Vec::with_capacity(raw.backend.0.len());
        let mut seen: HashMap<IpAddr, usize> = HashMap::new();
        for (b, raw_backend) in raw.backend.0.iter().enumerate() {
            let table = raw_backend.span().start;
            let raw_backend = raw_backend.get_ref();
            let backend_field = |name: &str| format!("vip[{index}].backend[{b}].{name}");

            let name = backend_field("address");
            let spanned = self.required(&raw_backend.address, table, &name)?;
            let backend_address = self.address(spanned, &name)?;
            self.checked(
                spanned,
                &name,
                value::backend_address(backend_address, address, forwarding),
            )?;
            let earlier = seen
                .get(&backend_address)
                .map(|first| format!("vip[{index}].backend[{first}]"));
            self.checked(
                spanned,
                &name,
                value::listed_once(backend_address, earlier.as_deref()),
            )?;
            seen.insert(backend_address, b);

            let mac = match &raw_backend.mac {
                None => None,
                Some(v) => {
                    value::backend_mac_allowed(forwarding)
                        .map_err(|e| self.bad_value(v, &backend_field("mac"), e.message()))?;
                    Some(self.mac(v, &backend_field("mac"))?)
                }
            };
            let backend_port = match &raw_backend.port {
                None => None,
                Some(v) => Some(if is_nat {
                    self.rule(v, &backend_field("port"), value::port)?
                } else {
                    // Refused whatever the number: the rule says why.
                    let refusal = value::backend_port(1, forwarding).err();
                    let message = refusal.map(|e| e.to_string()).unwrap_or_default();
                    return Err(self.bad_value(v, &backend_field("port"), message));
                }),
            };
            let weight = match &raw_backend.weight {
                None => DEFAULT_WEIGHT,
                Some(v) => self.rule(v, &backend_field("weight"), value::weight)?,
            };
            let backend_health = match &raw_backend.health {
                None => None,
                Some(table) => {
                    Some(self.health(&health, table, &backend_field("health"), forwarding)?)
                }
            };
            backends.push(BackendConfig {
                address: backend_address,
                mac,
                port: backend_port,
                weight,
                health: backend_health,
            });
        }

        let weighted = backends.iter().filter(|b| b.weight > 0).count();
        if let Err(e) = value::weighted_backends_fit(weighted, table_size) {
            let name = field("table_size");
            return Err(match &raw.table_size {
                Some(v) => self.bad_value(v, &name, e.to_string()),
                None => self.invalid(table, &name, e.to_string()),
            });
        }

        Ok(VipConfig {
            address,
            port,
            protocol,
            table_size,
            health,
            on_all_down,
            drain_timeout,
            forwarding,
            nat,
            backends,
        })
    }

    /// No NAT address is a VIP's address: replies to it would be taken for
    /// the VIP's traffic.
    fn nat_sources_are_not_vips(
        &self,
        raw: &[Spanned<RawVip>],
        vips: &[VipConfig],
    ) -> Result<(), ConfigError> {
        for (index, vip) in vips.iter().enumerate() {
            let Some(nat) = vip.nat else { continue };
            if let Some(other) = vips.iter().position(|v| v.address == nat.source) {
                let at = raw[index]
                    .get_ref()
                    .nat_source
                    .as_ref()
                    .map_or(raw[index].span().start, |v| v.span().start);
                let named = if nat.own_source {
                    format!("vip[{index}].nat_source")
                } else {
                    format!("vip[{index}] ([nat] source)")
                };
                return Err(self.invalid(
                    at,
                    &named,
                    format!(
                        "{} is vip[{other}]'s address; a NAT address must be an address of its own",
                        nat.source
                    ),
                ));
            }
        }
        Ok(())
    }

    /// An explicit VRRP address list moves every NAT address of its family:
    /// otherwise replies would go to the node that lost the VIP.
    fn nat_sources_move(
        &self,
        index: usize,
        raw: &Spanned<vrrp::RawVrrp>,
        instance: &VrrpConfig,
        vips: &[VipConfig],
    ) -> Result<(), ConfigError> {
        let family_v4 = instance.addresses.first().is_none_or(IpAddr::is_ipv4);
        for vip in vips {
            let Some(nat) = vip.nat else { continue };
            if nat.source.is_ipv4() == family_v4 && !instance.addresses.contains(&nat.source) {
                return Err(self.invalid(
                    raw.span().start,
                    &format!("vrrp[{index}].addresses"),
                    format!(
                        "the NAT address {} of VIP {} must move with the VIPs: add it to the list",
                        nat.source, vip.address
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
