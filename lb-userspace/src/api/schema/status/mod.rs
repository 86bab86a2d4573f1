//! `GET /v1/status`: the node, its VIPs and backends, the tables, NAT,
//! tunnels and replication as lbd sees them now.

mod data_plane;
mod health;
mod replication;
mod vips;

pub use data_plane::{ConntrackStatus, NatStatus, TunnelStatus};
pub use health::{CheckKind, CheckStatus, HealthStatus};
pub use replication::{ConfigMismatch, MismatchKind, ReplicationPeerStatus, ReplicationStatus};
pub use vips::{BackendStatus, SlowStartStatus, VipNatStatus, VipStatus};

use std::{collections::BTreeMap, fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::{GuardStatus, NodeStatus};
use crate::{
    api::wire_name,
    config::{Attach, MaglevMode, XdpMode},
};

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Interface the XDP program is attached to.
    pub interface: String,
    /// The hook the packet path runs at: "xdp" or "tc" (absent from an
    /// lbd before tc existed: "xdp").
    #[serde(default, with = "wire_name::one")]
    pub attach: Attach,
    /// Mode the XDP program is attached in (None, "off" on the wire, at
    /// tc).
    #[serde(with = "wire_name::or_off")]
    pub xdp_mode: Option<XdpMode>,
    /// Whether lbd's program runs at its hook (and first there, at tc):
    /// false once lbd lost it (`hook_lost` says how), until it exits for
    /// its restart. `attach` and `xdp_mode` say where it was attached.
    /// Absent from an older lbd: true.
    #[serde(default = "read")]
    pub attached: bool,
    /// Whether the interface is up with its carrier (absent from an older
    /// lbd: true).
    #[serde(default = "read")]
    pub interface_up: bool,
    /// How and for how long lbd has lost its hook (None while attached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_lost: Option<HookLost>,
    /// Config file in force.
    pub config_file: String,
    /// Where the data plane is pinned (None: it goes with lbd).
    #[serde(default)]
    pub pin_dir: Option<String>,
    /// Whether this lbd adopted a data plane a previous one left running
    /// (a restart or an upgrade without a gap).
    #[serde(default)]
    pub adopted: bool,
    /// How Maglev tables follow backend changes (absent from an lbd
    /// before Maglev modes).
    #[serde(default, with = "wire_name::optional")]
    pub maglev_mode: Option<MaglevMode>,
    /// The VIPs.
    pub vips: Vec<VipStatus>,
    /// Node counters (verdicts and events) summed over CPUs.
    pub counters: BTreeMap<String, u64>,
    /// VRRP instances.
    #[serde(default)]
    pub vrrp: Vec<crate::vrrp::driver::InstanceStatus>,
    /// Connection-table replication with the VRRP peer.
    #[serde(default)]
    pub replication: Option<ReplicationStatus>,
    /// Connection-table occupancy.
    pub conntrack: ConntrackStatus,
    /// NAT flow table (absent from an lbd before NAT mode).
    #[serde(default)]
    pub nat: Option<NatStatus>,
    /// Tunnel settings in force (present while a VIP is in `ipip` or
    /// `gue` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelStatus>,
    /// The node's state and BGP announcements (absent from an lbd before
    /// active-active; `GET /v1/node` has the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeStatus>,
    /// Deny/allow rules and limits of new flows with their counts (present
    /// when any is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardStatus>,
    /// Traffic counters this status could not read (a failed read of the
    /// data plane's map): those VIPs' and backends' `packets`, `bytes` and
    /// `new_flows` show 0 here, which is not a reset, and `/metrics` leaves
    /// their series out of that scrape. Absent when every read worked.
    /// Each of them says so itself too (`traffic_read: false`), also in
    /// `GET /v1/vips` and `GET /v1/vips/{vip}`.
    #[serde(default, skip_serializing_if = "UnreadTraffic::is_empty")]
    pub traffic_unread: UnreadTraffic,
    /// Maglev tables rebuilt (and flipped) since start.
    pub tables_rebuilt: u64,
    /// Config reloads since start, by result.
    pub reloads: ReloadCounts,
    /// lbd's version.
    pub version: String,
}

/// How lbd lost its hook, and for how long (see [`Status::hook_lost`]):
/// it waits for the interface and exits once it is back and up, for its
/// service manager to start it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookLost {
    /// How.
    pub how: HookLoss,
    /// Seconds since.
    pub for_secs: u64,
}

/// How lbd lost its hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum HookLoss {
    /// The interface went (deleted, or moved to another network
    /// namespace), and the program's link with it.
    InterfaceGone,
    /// The program was detached by something else.
    Detached,
    /// Another tool's program `by` runs ahead of lbd's at tc.
    Shadowed {
        /// Its program id.
        by: u32,
    },
}

impl fmt::Display for HookLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InterfaceGone => f.write_str("the interface is gone"),
            Self::Detached => f.write_str("its program was detached by something else"),
            Self::Shadowed { by } => write!(f, "program id {by} runs ahead of it at tc"),
        }
    }
}

/// The default of a `traffic_read` an older lbd does not send: it
/// marked no counter unread there (its status's `traffic_unread` did).
fn read() -> bool {
    true
}

/// Whose traffic counters a status could not read (see
/// [`Status::traffic_unread`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadTraffic {
    /// VIPs, as `vip` names them in the status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<String>,
    /// Backends, as (VIP, address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<(String, IpAddr)>,
}

impl UnreadTraffic {
    /// Whether every read worked.
    pub fn is_empty(&self) -> bool {
        self.vips.is_empty() && self.backends.is_empty()
    }
}

/// Config reloads by result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadCounts {
    /// Applied.
    pub succeeded: u64,
    /// Refused (invalid file, or the data plane refused).
    pub failed: u64,
}
