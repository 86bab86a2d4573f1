//! The configuration of `lbd`: a TOML file, parsed and validated into plain values.
//!
//! `lbd` is the daemon of an eBPF/XDP layer-4 load balancer (direct server return,
//! NAT or tunnels, per VIP). Everything it needs to know about the node (which interface to attach to,
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
//! # With attach = "xdp": "auto" (default): native (driver) mode, falling back to generic with a warning
//! # (to tc when a nat/ipip/gue VIP is configured); "native"; "generic" (dsr-l2 VIPs only).
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
mod checker;
mod choices;
mod dump;
mod error;
mod flood;
mod guard;
mod health;
mod load;
mod nat;
mod raw;
mod reload;
mod served;
mod sync;
mod tunnel;
mod validate;
pub mod value;
mod vrrp;
mod warnings;

/// The default `[bgp] node_state_file`, where a backend state file kept
/// before `[bgp]` was removed may lie (see `daemon::engine::admin_state`).
pub(crate) use bgp::DEFAULT_NODE_STATE_FILE;
pub use bgp::{Announced, BgpConfig};
pub use choices::{AdminSocketGroup, AllDown, Attach, LogFormat, MaglevMode, Protocol, XdpMode};
pub use dump::to_toml;
pub use error::{ConfigError, Location, Position};
pub use health::{
    check_keys as check_health_keys, resolve as resolve_health, CheckType, ChecksFor, HealthConfig,
    HealthKeys, MAX_HEALTH_EXPECT_BODY_BYTES, MAX_HEALTH_HOST_BYTES, MAX_HEALTH_PATH_BYTES,
    MAX_HEALTH_PGSQL_NAME_BYTES,
};
pub use nat::{NatConfig, NatTimeouts, VipNat};
pub(crate) use served::{served_to_toml, with_served};
pub(crate) use sync::startup_wait_warning;
pub use sync::SyncSettings;
pub use tunnel::TunnelSettings;
pub(crate) use tunnel::{outer_sources_hold, prefix_text};
pub(crate) use validate::peer_on_a_vip;
pub use vrrp::VrrpConfig;
pub(crate) use warnings::preferred_held_address_warnings;
pub use warnings::{warnings, Warning};

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use self::{
    checker::Checker,
    raw::{RawConfig, TableArray, TableName},
};
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
    /// Log level (a tracing filter such as `info` or
    /// `info,lb_userspace=debug`, giving both of lbd's targets a level);
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
    /// Whether each `vrrp` instance's table (same order) wrote `addresses`:
    /// one that did not took the VIP addresses of its family, and `config
    /// dump` leaves the list out again, so VIPs added to the file later
    /// are moved by it as the file meant (a missing entry: written).
    pub vrrp_listed: Vec<bool>,
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
    /// What of a new flow picks its backend (`affinity`): each connection
    /// on its own, or the client's address (client affinity).
    pub affinity: lb_common::Affinity,
    /// How long a backend that starts taking new flows again (back up,
    /// out of drain or maintenance, added, weight raised from 0) takes
    /// to reach its full weight (`slow_start_s`), so a cold cache or pool
    /// is not handed its whole share at once (None: at once).
    pub slow_start: Option<Duration>,
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
            affinity: lb_common::Affinity::default(),
            slow_start: None,
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
    /// A backup (keepalived's `sorry_server`, HAProxy's and nginx's
    /// `backup`): it takes new flows only while no other backend of its
    /// VIP can, so a VIP whose backends all fail fails over to it instead
    /// of dropping new flows; flows it took stay on it when they return.
    pub backup: bool,
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
            backup: false,
            health: None,
        }
    }
}

#[cfg(test)]
mod tests;
