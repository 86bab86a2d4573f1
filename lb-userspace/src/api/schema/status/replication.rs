//! Connection-table replication in the status: the session's counters,
//! each peer as this node sees it, and the VIPs whose Maglev tables differ
//! from a full-mesh peer's.

use serde::{Deserialize, Serialize};

use crate::{api::wire_name, daemon::replication::Topology};

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
    /// Whether the peer shares backend states with this node: it sent
    /// its own within the last 35 s, so it takes this node's drains,
    /// maintenance and undrains (false while its session is down, for a
    /// peer of a release before them, and from an older lbd).
    #[serde(default)]
    pub shares_backend_states: bool,
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
