//! Connection-table replication between lbd nodes, in one of two
//! [`Topology`]s. In a VRRP pair, while master this node streams its
//! tracked flows (new and recently active ones every tick, all of them
//! periodically and on every new session) to its one peer; while backup,
//! it installs what the master sends into its own table, translated to
//! its own backend ids. In a full mesh (`[sync]`, active-active nodes
//! behind ECMP) every node always streams its own flows to every peer and
//! always installs what its peers send, never over an entry of its own
//! that is fresher ([`flow_table`]). Either way every flow established
//! before a failover (or before the routers moved it) keeps its backend,
//! even if the backend set (and so the Maglev table) changed in between.
//! NAT'd flows travel the same way, with the same cadence ([`nat`]): they
//! keep their translation (NAT address and port, backend).
//! A sending node walks its connection table and its NAT flow table off
//! lbd's loop ([`walks`]).

mod backend_states;
mod drift;
mod first_dumps;
mod flow_table;
#[cfg(test)]
mod heap_peak;
pub(crate) mod nat;
mod nat_install;
mod node_id;
mod peer_set;
mod peers;
mod receiving;
mod records;
mod roles;
mod sending;
mod shutdown;
mod status;
mod step_down;
mod sync_key;
#[cfg(test)]
mod tests;
mod ticks;
mod walks;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use lb_common::{
    consts::{FLOW_F_HALF_OPEN, FLOW_F_STATE, IPPROTO_TCP, IPPROTO_UDP},
    FlowEntry, FlowKey,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::{
    config::{Protocol, SyncSettings, VrrpConfig},
    reconcile::{addr_words, words_addr, Balancer, VipId},
    sync::{
        self, log_limit::LogLimit, FlowRecord, ReceivedBatch, SyncConfig, SyncStats,
        SyncStatsSnapshot,
    },
};

/// Whether a connection-table entry is a peer's flow held as a copy (a
/// full mesh's mark): the flow censuses count this node's own flows.
pub(crate) use flow_table::is_replica as is_peer_copy;
/// A peer's copy's mark (records installs them with it; the censuses'
/// tests make copies with it).
pub(crate) use flow_table::mark_replica;
use flow_table::{install_copy, install_unless_fresher, is_replica, Outcome};
pub(crate) use node_id::{mesh_node_id, pair_node_id};
use peer_set::start_peer;
use peers::{Peer, Receipts};
use records::{record, sends, FlowCounts};
pub(crate) use roles::Roles;
use sync_key::{key_file_exposure, read_key};
pub(crate) use walks::walk_ended;
use walks::{Walker, Walks};

/// How often a node sends a complete dump even without a new session, at
/// least (a large table's dumps are spaced further: see [`DUMP_RATE`]).
const FULL_SYNC_INTERVAL: Duration = Duration::from_secs(10);
/// Records per second (flows and NAT'd flows) that periodic full dumps
/// send at most, on average: the next periodic dump waits
/// `max(FULL_SYNC_INTERVAL, last dump's records / DUMP_RATE)`. At 25,000
/// a table of up to 250,000 records (100,000 flows, NAT'd or not) still
/// dumps every 10 s, 1 M flows every 40 s, the largest (16 M flows) about
/// every 11 minutes; a peer then spends about 1 % of a core installing
/// them (about 300 ns a record, BENCHMARKS.md) instead of half a core.
/// Incremental ticks still send each 250 ms every flow stamped since the
/// last walk (an active one about once a second, see [`walks`]); a
/// batch a slow peer's queue dropped waits for the next dump (or session)
/// the longer. A new session's dump goes at once (to that peer only),
/// whatever the size.
const DUMP_RATE: u64 = 25_000;
/// Between full syncs, a NAT flow table scan that took `d` is followed by
/// none for `NAT_SCAN_SPACING × d`: a table small enough to scan in under
/// about 60 ms is scanned every tick; a large one (120,000 entries took about
/// 120 ms in the lab) every few ticks, which delays a new flow's copy by
/// that much instead of spending half a core on scans. (The scans run off
/// lbd's loop, with the walks: see [`walks::NatScan`].)
const NAT_SCAN_SPACING: u32 = 4;
/// At most one warning this often for flows (and, apart, NAT flows) that
/// failed to install.
const INSTALL_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// Batches received and not yet installed, from all peers together: a
/// full channel holds the peers' connections back (TCP pushes back).
const RECEIVE_QUEUE: usize = 64;

/// Who streams and who installs: the one difference between a VRRP pair
/// and active-active nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// `[[vrrp]]` `sync_listen` / `sync_peer`: the master streams to its
    /// one peer and ignores what it receives; the backup installs and
    /// sends nothing. A received copy replaces the backup's entry.
    VrrpPair,
    /// `[sync]`: every node streams its own flows to every peer and
    /// installs every peer's, unless its own entry is fresher.
    FullMesh,
}

impl Topology {
    /// Whether this node streams its flows now (`master`: it holds a
    /// VRRP instance as master, or runs none).
    pub(crate) fn sends(self, master: bool) -> bool {
        match self {
            Topology::VrrpPair => master,
            Topology::FullMesh => true,
        }
    }

    /// The name in the status.
    pub fn name(self) -> &'static str {
        match self {
            Topology::VrrpPair => "vrrp-pair",
            Topology::FullMesh => "full-mesh",
        }
    }
}

/// This node's end of the replication.
pub struct Replication {
    topology: Topology,
    /// One sender per configured peer, in config order (a reload of
    /// `[sync] peers` adds and removes some: see [`Self::set_peers`]).
    peers: Vec<Peer>,
    /// Where this node listens (its senders connect from that address).
    listen: SocketAddr,
    /// The channel's settings, for the senders a reload starts.
    config: SyncConfig,
    /// The counters of the senders a reload stopped, so the channel's
    /// totals never go back.
    retired: SyncStatsSnapshot,
    /// The sync listener (dropping it stops it).
    _listener: sync::ListenerHandle,
    /// The listener's counters (the senders' are per peer).
    listener_stats: Arc<SyncStats>,
    /// The key file and the key read from it at start: replication keeps
    /// that key until lbd restarts (see [`Self::key_file_changed`]).
    key: (PathBuf, Vec<u8>),
    /// What each sending node delivered.
    receipts: Receipts,
    /// Which walk of the connection table a tick starts (see [`walks`]).
    walks: Walks,
    /// Runs those walks, off lbd's loop where it can.
    walker: Walker,
    /// Which NAT entries scans leave out (the topology's).
    nat_rule: nat::SendRule,
    /// When the last NAT scan started (the data plane's clock).
    nat_last_scan_ns: u64,
    /// No NAT scan before this, unless a full sync is due.
    nat_next_scan: Option<Instant>,
    /// What became of the flow records received.
    flows: FlowCounts,
    /// What became of the NAT'd flow records received.
    nat: nat_install::NatCounts,
    /// At most one warning per interval for NAT flows that failed to
    /// install (a full table fails every record of every batch).
    nat_warnings: LogLimit,
    /// The same for flow records.
    flow_warnings: LogLimit,
    /// The roles of the last tick, to see a step-down (see
    /// [`Replication::roles_for_tick`]).
    last_roles: Option<Roles>,
    /// When replication started: a pair's (re)started node holds back
    /// preemption until the peer's full dump, at most
    /// [`PREEMPT_SYNC_HOLD`](crate::vrrp::machine::PREEMPT_SYNC_HOLD) from about then.
    started: Instant,
    /// Whether the end of that wait was logged (dump or timeout).
    dump_wait_logged: bool,
    /// How the peers' Maglev inputs compare with this node's (a mesh's).
    drift: drift::ConfigDrift,
}

impl Replication {
    /// Starts a VRRP pair's replication as `vrrp` says (None when it
    /// configures none); received batches arrive on the returned channel.
    pub async fn start_pair(
        vrrp: &VrrpConfig,
        node_id: &str,
    ) -> anyhow::Result<Option<(Self, mpsc::Receiver<ReceivedBatch>)>> {
        let (Some(listen), Some(peer), Some(key_file)) =
            (vrrp.sync_listen, vrrp.sync_peer, &vrrp.sync_key_file)
        else {
            return Ok(None);
        };
        Self::start(Topology::VrrpPair, listen, &[peer], key_file, node_id)
            .await
            .map(Some)
    }

    /// Starts full-mesh replication with every peer of `[sync]`.
    pub async fn start_mesh(
        settings: &SyncSettings,
        node_id: &str,
    ) -> anyhow::Result<(Self, mpsc::Receiver<ReceivedBatch>)> {
        Self::start(
            Topology::FullMesh,
            settings.listen,
            &settings.peers,
            &settings.key_file,
            node_id,
        )
        .await
    }

    /// Listens on `listen` and starts one sender per peer.
    async fn start(
        topology: Topology,
        listen: SocketAddr,
        peers: &[SocketAddr],
        key_file: &Path,
        node_id: &str,
    ) -> anyhow::Result<(Self, mpsc::Receiver<ReceivedBatch>)> {
        let key = read_key(key_file)?;
        if let Some(warning) = key_file_exposure(key_file) {
            warn!("{warning}");
        }
        let config = SyncConfig::new(key.clone(), node_id);
        let listener_stats = Arc::new(SyncStats::new());
        let (tx, rx) = mpsc::channel(RECEIVE_QUEUE);
        // Only the peers may shake hands: strangers cannot hold the
        // handshake slots a peer needs.
        let sources = sync::Sources::Peers(peers.iter().map(SocketAddr::ip).collect());
        let listener =
            sync::listen_for(listen, sources, config.clone(), tx, listener_stats.clone())
                .await
                .with_context(|| format!("listening for connection-table sync on {listen}"))?;
        let mut started = Vec::with_capacity(peers.len());
        for &address in peers {
            started.push(start_peer(listen, address, &config)?);
        }
        info!(%listen, ?peers, topology = topology.name(), node = node_id, "connection-table replication started");
        let nat_rule = match topology {
            Topology::VrrpPair => nat::SendRule::default(),
            Topology::FullMesh => nat::SendRule::skipping_replicas(),
        };
        Ok((
            Self {
                topology,
                peers: started,
                listen,
                config,
                retired: SyncStatsSnapshot::default(),
                _listener: listener,
                listener_stats,
                key: (key_file.to_owned(), key),
                receipts: Receipts::default(),
                walks: Walks::default(),
                walker: Walker::new(),
                nat_rule,
                nat_last_scan_ns: 0,
                nat_next_scan: None,
                flows: FlowCounts::default(),
                nat: nat_install::NatCounts::default(),
                nat_warnings: LogLimit::new(INSTALL_WARNING_INTERVAL),
                flow_warnings: LogLimit::new(INSTALL_WARNING_INTERVAL),
                last_roles: None,
                started: Instant::now(),
                dump_wait_logged: false,
                drift: drift::ConfigDrift::default(),
            },
            rx,
        ))
    }

    /// Who streams and who installs.
    pub fn topology(&self) -> Topology {
        self.topology
    }
}
