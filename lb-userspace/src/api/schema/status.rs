//! `GET /v1/status`: the node, its VIPs and backends, the tables, NAT,
//! tunnels and replication as lbd sees them now.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use lb_common::Mode;
use serde::{Deserialize, Serialize};

use super::{GuardStatus, NodeStatus};
use crate::{
    api::wire_name,
    config::{AllDown, Attach, MaglevMode, XdpMode},
    daemon::replication::Topology,
    mac::Mac,
    model::{BackendState, FlowCount},
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

/// Connection-table occupancy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackStatus {
    /// Live tracked flows: no FIN/RST seen, a packet within their idle
    /// timeout (closed and expired entries keep their ways until a new
    /// flow takes them, so they do not count towards full).
    pub entries: u64,
    /// Flows the table keeps without evicting a live one (`conntrack_size`;
    /// past it a new flow may evict, in its two buckets, a closed, expired
    /// or half-open flow, else the least recently seen).
    pub capacity: u64,
    /// Bytes of kernel memory the table takes (preallocated).
    #[serde(default)]
    pub memory_bytes: u64,
    /// Of `entries`, TCP handshakes: a SYN the table took (into a way no
    /// live flow held), its client's ACK not yet seen, within the
    /// half-open timeout.
    #[serde(default)]
    pub handshakes: u64,
    /// Half-open TCP flows held apart (SYN seen, ACK not yet; a SYN the
    /// connection table had no free way for, and every SYN in flood
    /// mode): a SYN flood fills this table, not the connection table.
    #[serde(default)]
    pub half_open: u64,
    /// Half-open flows that table has room for.
    #[serde(default)]
    pub half_open_capacity: u64,
    /// Whether lbd sees a SYN flood now (`flood::machine`).
    #[serde(default)]
    pub syn_flood: bool,
    /// How long the current flood lasts, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn_flood_for_s: Option<u64>,
    /// Flood mode entered or left since start.
    #[serde(default)]
    pub syn_flood_transitions: u64,
    /// SYNs held half-open that no ACK took out, per second (the last
    /// second).
    #[serde(default)]
    pub unanswered_syn_per_s: u64,
    /// Half-open flows displaced while still in time, per second.
    #[serde(default)]
    pub half_open_evicted_per_s: u64,
}

/// The NAT flow table as the reaper's last complete sweep found it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatStatus {
    /// Translated flows (two entries each), by state (`syn-sent`,
    /// `established`, `closing`, `time-wait`, `closed`, `udp`).
    pub flows: BTreeMap<String, u64>,
    /// Entries the table holds at most (`[nat] flow_table_size`).
    pub capacity: u64,
    /// Bytes of kernel memory the table takes (preallocated); 0 from an
    /// lbd that did not say.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Whether a sweep has completed yet (the counts are zero until then).
    pub swept: bool,
    /// Flows freed after their state's timeout, since start.
    pub expired: u64,
    /// Entries freed for want of their other direction, since start.
    pub orphans: u64,
    /// Flows freed because their backend was removed, since start.
    pub backend_gone: u64,
    /// Removals the table refused, since start (retried next sweep): a
    /// count that keeps growing means flows the reaper cannot free. 0
    /// from an lbd that did not say.
    #[serde(default)]
    pub reap_failed: u64,
    /// Reads of the table that failed, since start (each started the
    /// sweep over). 0 from an lbd that did not say.
    #[serde(default)]
    pub read_errors: u64,
    /// Whether the table is nearly full, so closed flows are freed after a
    /// second instead of `tcp_time_wait_timeout_s` / `tcp_closed_timeout_s`
    /// (`nat::reaper::pressed`).
    #[serde(default)]
    pub pressure: bool,
}

/// The tunnelled modes' settings as the data plane has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStatus {
    /// UDP port GUE packets are sent to.
    pub gue_port: u16,
    /// Outer IPv4 sources, `ADDRESS/LENGTH` (None: none, so no IPv4
    /// backend can be served).
    pub source_ipv4: Option<String>,
    /// Outer IPv6 sources (as `source_ipv4`).
    pub source_ipv6: Option<String>,
    /// Whether the sources are the interface's own address (no prefix in
    /// `[tunnel]`), per family: IPv4, IPv6.
    pub sources_from_interface: [bool; 2],
    /// Interfaces `tc_hc_encap` is attached to (tc egress), while some
    /// check goes through a tunnel.
    pub hc_encap: Vec<String>,
    /// Whether lbd switched the interface's `accept_local` on for the
    /// replies of those checks.
    pub accept_local: bool,
}

/// A NAT VIP's source address and port usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipNatStatus {
    /// The NAT address its flows come from.
    pub source: IpAddr,
    /// First source port handed out.
    pub port_min: u16,
    /// Last source port handed out.
    pub port_max: u16,
    /// Source ports in use towards its busiest backend (ports run out per
    /// NAT address, backend and backend port): compare with
    /// `port_max - port_min + 1`.
    pub ports_in_use: u64,
    /// Its translated flows.
    pub flows: u64,
}

/// Config reloads by result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadCounts {
    /// Applied.
    pub succeeded: u64,
    /// Refused (invalid file, or the data plane refused).
    pub failed: u64,
}

/// Connection-table replication in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// Whether the session to the peer is up.
    pub connected: bool,
    /// Flows installed from the peer.
    pub installed: u64,
    /// Flows from the peer this node has no place for: a VIP (address,
    /// port and protocol) or a backend of it this node lacks, a backend
    /// this node does not send packets to (down here, or its MAC not
    /// resolved yet), a protocol other than TCP and UDP, or a client of
    /// another address family than the VIP.
    pub unknown: u64,
    /// NAT'd flows installed from the peer (absent from older lbd).
    #[serde(default)]
    pub nat_installed: u64,
    /// NAT'd flows from the peer that named a VIP (in NAT mode) or backend
    /// this node lacks.
    #[serde(default)]
    pub nat_unknown: u64,
    /// NAT'd flows from the peer left out because another flow of this
    /// node holds one of their keys.
    #[serde(default)]
    pub nat_conflicts: u64,
    /// NAT'd flows from the peer left out because the NAT table had no
    /// room for them.
    #[serde(default)]
    pub nat_table_full: u64,
    /// NAT'd flows from the peer whose install failed otherwise (buckets
    /// busy, a map error).
    #[serde(default)]
    pub nat_failed: u64,
    /// Channel counters (all peers and the listener summed).
    pub channel: crate::sync::SyncStatsSnapshot,
    /// `vrrp-pair` (the master streams to its backup) or `full-mesh`
    /// (every node streams to every peer); absent from an older lbd.
    #[serde(default, with = "wire_name::optional")]
    pub mode: Option<Topology>,
    /// Flows from a peer left out because this node's own entry was
    /// fresher and pinned to another backend (full mesh).
    #[serde(default)]
    pub kept_local: u64,
    /// Flows from a peer left out because this node's own entry for the
    /// same backend was fresher (full mesh).
    #[serde(default)]
    pub stale: u64,
    /// Flows from the peer left out because installing them failed (a
    /// map error; absent from an older lbd).
    #[serde(default)]
    pub failed: u64,
    /// Whether every configured peer has delivered one complete full dump
    /// to this node since start (absent from an older lbd: false).
    #[serde(default)]
    pub all_peers_dumped: bool,
    /// One line per configured peer (absent from an older lbd).
    #[serde(default)]
    pub peers: Vec<ReplicationPeerStatus>,
}

/// One replication peer as this node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationPeerStatus {
    /// The peer's sync listener (`ADDRESS:PORT`, as configured).
    pub address: String,
    /// The node id the peer gave in its last authenticated handshake.
    #[serde(default)]
    pub node: Option<String>,
    /// Whether this node's session to the peer is up.
    pub connected: bool,
    /// Records (flows and NAT'd flows) sent to the peer.
    pub records_sent: u64,
    /// Records received from the peer.
    pub records_received: u64,
    /// Complete full dumps (flows and NAT'd flows) received from the peer.
    pub full_dumps_received: u64,
    /// Batches for the peer dropped from its full queue (a later full
    /// dump repairs them).
    pub batches_dropped: u64,
    /// Seconds since the last batch (flows or NAT'd flows, a full dump's
    /// too, empty or not) from the peer arrived: how stale its flows here
    /// may be. Absent before the first (since lbd started), while the
    /// peer's node id is not known (see `node`), and from an older lbd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_received_s: Option<u64>,
    /// When that batch arrived, Unix time in seconds (the wall clock read
    /// then; absent as `last_received_s` is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_received_unix_s: Option<u64>,
    /// Whether the peer's Maglev inputs are known to this node (sent over
    /// its session: false while it is down, or for a peer of a release
    /// without config digests), so that `config_mismatches` means
    /// something (absent from an older lbd: false).
    #[serde(default)]
    pub config_compared: bool,
    /// The VIPs for which the peer builds another Maglev table than this
    /// node (absent from an older lbd: none).
    #[serde(default)]
    pub config_mismatches: Vec<ConfigMismatch>,
}

/// A VIP whose Maglev table differs between this node and a full-mesh
/// peer: flows the routers move between them change backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigMismatch {
    /// `ADDRESS:PORT/PROTOCOL`.
    pub vip: String,
    /// How it differs.
    pub kind: MismatchKind,
}

/// How a VIP's Maglev inputs differ between this node and a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// Both have the VIP, with another table size or other backends,
    /// weights or admin states (drain, maintenance).
    Differs,
    /// This node has the VIP, the peer does not.
    MissingOnPeer,
    /// The peer has the VIP, this node does not.
    OnlyOnPeer,
}

impl MismatchKind {
    /// The name in the status and the metrics' `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::Differs => "differs",
            MismatchKind::MissingOnPeer => "missing_on_peer",
            MismatchKind::OnlyOnPeer => "only_on_peer",
        }
    }

    /// What it means, for the status and the log.
    pub fn meaning(self) -> &'static str {
        match self {
            MismatchKind::Differs => "table size, backends, weights or admin states differ",
            MismatchKind::MissingOnPeer => "the peer has no such VIP",
            MismatchKind::OnlyOnPeer => "only the peer has this VIP",
        }
    }
}

/// One VIP in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VipStatus {
    /// `ADDRESS:PORT/PROTOCOL`.
    pub vip: String,
    /// Maglev table size.
    pub table_size: u32,
    /// What happens when no backend is healthy.
    pub on_all_down: AllDown,
    /// True when no backend meant to take flows is healthy.
    pub all_down: bool,
    /// Added at run time (not in the config file).
    pub runtime: bool,
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Flows new to the connection table.
    pub new_flows: u64,
    /// Whether `packets`, `bytes` and `new_flows` were read: false when
    /// the read of the data plane's map failed, and they show 0, which is
    /// no count (nor a reset). Absent from an lbd before this mark: true.
    #[serde(default = "read")]
    pub traffic_read: bool,
    /// Forwarding mode (`dsr-l2`, `nat`, `ipip`, `gue`; absent from an lbd before
    /// modes: `dsr-l2`).
    #[serde(default, with = "wire_name::one")]
    pub mode: Mode,
    /// NAT mode: its NAT address and port usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<VipNatStatus>,
    /// Its backends.
    pub backends: Vec<BackendStatus>,
}

/// One backend in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    /// Address.
    pub address: IpAddr,
    /// MAC frames go to (None: not resolved yet, or a routed mode).
    pub mac: Option<Mac>,
    /// NAT mode: the port it listens on, when not the VIP's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Configured weight.
    pub weight: u32,
    /// Admin state.
    pub state: BackendState,
    /// Health from the checks.
    pub health: HealthStatus,
    /// Whether the data plane sends it packets.
    pub alive: bool,
    /// Share of new flows (of the live Maglev table).
    pub share: f64,
    /// Tracked flows.
    pub flows: FlowCount,
    /// NAT mode: `flows` is not a count of now yet. No sweep of the NAT
    /// table has finished since lbd started, or since this backend's
    /// drain began, so it holds the last complete count (zero before the
    /// first); `drain --wait` waits for the next.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flows_counting: bool,
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Flows new to the connection table.
    pub new_flows: u64,
    /// Whether `packets`, `bytes` and `new_flows` were read (as
    /// [`VipStatus::traffic_read`]).
    #[serde(default = "read")]
    pub traffic_read: bool,
    /// Seconds left before a drain cuts remaining flows.
    pub drain_remaining_s: Option<u64>,
    /// The last drain ended because its timeout cut the remaining flows
    /// (the backend is in maintenance since).
    #[serde(default)]
    pub drain_timed_out: bool,
    /// Seconds left of its hold after its VIP stopped failing open: it
    /// fails its checks yet keeps the established flows it took while
    /// the VIP failed open (alive, no new flows) until it passes them,
    /// the operator acts, or this runs out; then those flows move. Absent
    /// when not held (and from an lbd before holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_s: Option<u64>,
    /// Its health checks.
    pub check: Option<CheckStatus>,
    /// Added at run time (not in the config file).
    pub runtime: bool,
}

/// A backend's health as the status shows it: the checks' verdict, or
/// `unchecked` when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Checked, not decided yet (counts as up).
    Unknown,
    /// Passing its checks.
    Up,
    /// Failing its checks: no new flows, its flows hashed elsewhere.
    Down,
    /// Answering its checks that it is full (a `pgsql` check refused for
    /// capacity: "too many clients", PgBouncer's `max_client_conn`): no
    /// new flows, its established flows kept (alive), as in a drain.
    Full,
    /// Not checked (checks are off for its VIP): counts as up.
    Unchecked,
}

impl HealthStatus {
    /// Every value, for metrics that show one series per value.
    pub const ALL: [HealthStatus; 5] = [
        HealthStatus::Up,
        HealthStatus::Down,
        HealthStatus::Full,
        HealthStatus::Unknown,
        HealthStatus::Unchecked,
    ];

    /// The name on the wire and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Unknown => "unknown",
            HealthStatus::Up => "up",
            HealthStatus::Down => "down",
            HealthStatus::Full => "full",
            HealthStatus::Unchecked => "unchecked",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of a backend's health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A TCP connect.
    Tcp,
    /// An HTTP request and its status.
    Http,
    /// A PostgreSQL StartupMessage and the first answer.
    Pgsql,
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http => "http",
            CheckKind::Pgsql => "pgsql",
        })
    }
}

/// A backend's health checks in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckStatus {
    /// What the check does.
    pub kind: CheckKind,
    /// Checks run.
    pub checks: u64,
    /// Checks failed.
    pub failures: u64,
    /// Checks failed, by reason (`timeout`, `refused`, `http_status`, ...).
    #[serde(default)]
    pub failures_by_reason: BTreeMap<String, u64>,
    /// Health transitions since lbd started.
    pub transitions: u64,
    /// Consecutive successes.
    pub consecutive_successes: u32,
    /// Consecutive failures.
    pub consecutive_failures: u32,
    /// Outcome of the last check.
    pub last: Option<String>,
    /// The last check's outcome in short: `ok`, `full`, or the label its
    /// failure counts under in `failures_by_reason` (`refused`,
    /// `timeout`, ...). Absent before the first check (and from an lbd
    /// before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_label: Option<String>,
    /// Latency of the last check, ms.
    pub last_latency_ms: Option<f64>,
    /// Successes in a row that bring the backend up (`rise`): with
    /// `consecutive_successes`, how far a backend coming back has got.
    /// Absent from an lbd before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    /// Failures in a row that take the backend down (`fall`), as `rise`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
    /// Seconds since the backend's health last changed (up, down, ...).
    /// Absent when it has not changed since lbd started, or since its
    /// check was set up (and from an lbd before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change_s: Option<u64>,
    /// When the backend's health last changed, Unix time in seconds: the
    /// wall clock read at the change (for
    /// `lbd_backend_health_last_change_timestamp_seconds`; `last_change_s`
    /// is the age, on lbd's monotonic clock). Absent as `last_change_s`
    /// is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change_unix_s: Option<u64>,
    /// Whether the check goes to the VIP through the backend's tunnel
    /// (`health.through_tunnel`) rather than to the backend's address.
    #[serde(default)]
    pub through_tunnel: bool,
    /// Where the check connects (`ADDRESS:PORT`: the VIP's for a check
    /// through the tunnel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}
