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

mod flow_table;
pub(crate) mod nat;
mod peers;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use lb_common::{
    consts::{FLOW_F_HALF_OPEN, FLOW_F_STATE, FLOW_TOUCH_INTERVAL_NS, IPPROTO_TCP, IPPROTO_UDP},
    FlowEntry, FlowKey,
};
use tokio::sync::mpsc;
use tracing::{debug, info, trace, warn};

use crate::{
    api::schema::{ReplicationPeerStatus, ReplicationStatus},
    config::{Protocol, SyncSettings, VrrpConfig},
    dataplane::Dataplane,
    reconcile::{addr_words, words_addr, Balancer, VipId},
    sync::{
        self, FlowRecord, NatFlowRecord, ReceivedBatch, SyncConfig, SyncStats, SyncStatsSnapshot,
    },
};

use crate::clock::monotonic_ns;
use flow_table::{install_unless_fresher, is_replica, mark_replica, Outcome};
use nat::Installed;
use peers::{Peer, Receipts};

/// How often a node sends a complete dump even without a new session.
const FULL_SYNC_INTERVAL: Duration = Duration::from_secs(10);
/// Between full syncs, a NAT flow table scan that took `d` is followed by
/// none for `NAT_SCAN_SPACING × d`: a table small enough to scan in under
/// about 60 ms is scanned every tick; a large one (120,000 entries took about
/// 120 ms in the lab) every few ticks, which delays a new flow's copy by
/// that much instead of spending half a core on scans.
const NAT_SCAN_SPACING: u32 = 4;
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

    /// Whether this node installs what peers send now.
    pub(crate) fn installs(self, master: bool) -> bool {
        match self {
            Topology::VrrpPair => !master,
            Topology::FullMesh => true,
        }
    }

    /// The name in the status.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Topology::VrrpPair => "vrrp-pair",
            Topology::FullMesh => "full-mesh",
        }
    }
}

/// This node's end of the replication.
pub struct Replication {
    topology: Topology,
    /// One sender per configured peer, in config order.
    peers: Vec<Peer>,
    _listener: sync::ListenerHandle,
    /// The listener's counters (the senders' are per peer).
    listener_stats: Arc<SyncStats>,
    /// What each sending node delivered.
    receipts: Receipts,
    last_scan_ns: u64,
    last_full: Option<Instant>,
    /// The NAT marks last sent, per entry.
    nat_sent: nat::SentMarks,
    /// When the last NAT scan started (the data plane's clock).
    nat_last_scan_ns: u64,
    /// No NAT scan before this, unless a full sync is due.
    nat_next_scan: Option<Instant>,
    /// What became of the flow records received.
    flows: FlowCounts,
    /// NAT'd flows installed from the peer (both entries each).
    pub nat_installed: u64,
    /// NAT'd flows from the peer that named a VIP (in NAT mode) or backend
    /// (address and port) this node lacks.
    pub nat_unknown: u64,
    /// NAT'd flows from the peer left out because an entry of another
    /// flow of this node holds one of their keys (both nodes were master
    /// and picked the same NAT port).
    pub nat_conflicts: u64,
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
        let config = SyncConfig {
            key,
            node_id: node_id.to_owned(),
        };
        let listener_stats = Arc::new(SyncStats::new());
        let (tx, rx) = mpsc::channel(RECEIVE_QUEUE);
        let listener = sync::listen(listen, config.clone(), tx, listener_stats.clone())
            .await
            .with_context(|| format!("listening for connection-table sync on {listen}"))?;
        let mut started = Vec::with_capacity(peers.len());
        for &address in peers {
            let stats = Arc::new(SyncStats::new());
            let sender = sync::Sender::start(address, config.clone(), stats.clone())
                .with_context(|| format!("connection-table sync to {address}"))?;
            started.push(Peer::new(address, sender, stats));
        }
        info!(%listen, ?peers, topology = topology.name(), node = node_id, "connection-table replication started");
        let nat_sent = match topology {
            Topology::VrrpPair => nat::SentMarks::default(),
            Topology::FullMesh => nat::SentMarks::skipping_replicas(),
        };
        Ok((
            Self {
                topology,
                peers: started,
                _listener: listener,
                listener_stats,
                receipts: Receipts::default(),
                last_scan_ns: 0,
                last_full: None,
                nat_sent,
                nat_last_scan_ns: 0,
                nat_next_scan: None,
                flows: FlowCounts::default(),
                nat_installed: 0,
                nat_unknown: 0,
                nat_conflicts: 0,
            },
            rx,
        ))
    }

    /// Who streams and who installs.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// While sending: sends flows active since the last tick to every
    /// peer, or all of them when a peer has a new session or a full sync
    /// is due (a new session of one peer dumps to all: the scan is shared
    /// and sessions are rare). In a full mesh, copies installed from peers
    /// and not forwarded here since are left out, but for the dump of a
    /// new session (see [`sends`]).
    pub fn tick(&mut self, dataplane: &Dataplane, balancer: &Balancer) {
        let now = monotonic_ns();
        let mut new_session = false;
        for peer in &mut self.peers {
            new_session |= peer.new_session();
        }
        let full = new_session
            || self
                .last_full
                .is_none_or(|t| t.elapsed() >= FULL_SYNC_INTERVAL);
        // last_seen is refreshed at most every FLOW_TOUCH_INTERVAL_NS, so a
        // flow is "recent" if touched within that much before the last scan.
        let since = self.last_scan_ns.saturating_sub(FLOW_TOUCH_INTERVAL_NS);
        let scan = if new_session {
            Scan::Session
        } else if full {
            Scan::Periodic
        } else {
            Scan::Recent { since }
        };
        let names = backend_names(balancer);
        let topology = self.topology;
        let records: Vec<FlowRecord> = dataplane
            .flows()
            .filter(|(_, entry)| sends(topology, scan, entry.last_seen_ns))
            .filter_map(|(key, entry)| record(&key, &entry, &names, now))
            .collect();
        let nat = self.nat_scan(dataplane, full, now);
        if full {
            debug!(
                records = records.len(),
                nat_records = nat.len(),
                peers = self.peers.len(),
                "full connection-table sync"
            );
            self.last_full = Some(Instant::now());
        }
        self.send_all(records, nat, full);
        self.last_scan_ns = now;
    }

    /// Queues one tick's batches for every peer (each peer's own queue:
    /// a slow one drops its oldest batches, the others go on).
    fn send_all(&self, records: Vec<FlowRecord>, nat: Vec<NatFlowRecord>, full: bool) {
        let Some((last, others)) = self.peers.split_last() else {
            return;
        };
        for peer in others {
            peer.sender().send(records.clone(), full);
            peer.sender().send_nat(nat.clone(), full);
        }
        last.sender().send(records, full);
        last.sender().send_nat(nat, full);
    }

    /// While master: the NAT'd flows to send this tick (all of them when
    /// `full`). Between full syncs a scan waits until the previous one's
    /// duration times [`NAT_SCAN_SPACING`] has passed, so replication
    /// takes at most a fifth of lbd's loop whatever the table's size.
    fn nat_scan(&mut self, dataplane: &Dataplane, full: bool, now: u64) -> Vec<NatFlowRecord> {
        if !full && self.nat_next_scan.is_some_and(|t| Instant::now() < t) {
            return Vec::new();
        }
        let since = self.nat_last_scan_ns.saturating_sub(nat::SCAN_MARGIN_NS);
        let scan = Instant::now();
        // Read in place from the mapped table: memory reads, no syscall.
        let records = nat::nat_records(
            dataplane.nat().flows(),
            full,
            since,
            now,
            &mut self.nat_sent,
        );
        trace!(
            records = records.len(),
            took_us = scan.elapsed().as_micros(),
            "NAT flow table scanned"
        );
        self.nat_last_scan_ns = now;
        self.nat_next_scan = Some(Instant::now() + scan.elapsed() * NAT_SCAN_SPACING);
        records
    }

    /// Counts a batch under the peer that sent it (whether or not this
    /// node installs it now).
    pub fn received(&mut self, batch: &ReceivedBatch) {
        self.receipts.note(batch);
    }

    /// While installing: installs a batch from a peer.
    pub fn install(
        &mut self,
        batch: &ReceivedBatch,
        dataplane: &mut Dataplane,
        balancer: &Balancer,
    ) {
        let now = monotonic_ns();
        self.install_nat(batch, dataplane, balancer, now);
        install_flows(
            self.topology,
            &batch.records,
            dataplane,
            balancer,
            now,
            &mut self.flows,
        );
    }

    /// While installing: installs a batch's NAT'd flows, both entries
    /// each, with this node's ids; skips (and counts) those it cannot
    /// place and those whose keys another flow holds here.
    fn install_nat(
        &mut self,
        batch: &ReceivedBatch,
        dataplane: &mut Dataplane,
        balancer: &Balancer,
        now: u64,
    ) {
        for record in &batch.nat {
            let mut pair = match nat::entries_for(record, balancer, now) {
                Ok(pair) => pair,
                Err(why) => {
                    self.nat_unknown += 1;
                    debug!(
                        vip = %record.vip,
                        vip_port = record.vip_port,
                        backend = %record.backend,
                        backend_port = record.backend_port,
                        reason = why.name(),
                        "replicated NAT flow skipped"
                    );
                    continue;
                }
            };
            if self.topology == Topology::FullMesh {
                for (_, entry) in &mut pair {
                    entry.last_seen_ns = mark_replica(entry.last_seen_ns);
                }
            }
            match nat::install_pair(dataplane.nat_mut(), &pair) {
                Ok(Installed::Yes) => self.nat_installed += 1,
                Ok(Installed::Conflict) => {
                    self.nat_conflicts += 1;
                    debug!(
                        client = %record.forward.key.src,
                        client_port = record.forward.key.sport,
                        nat = %record.forward.translated.src,
                        nat_port = record.forward.translated.sport,
                        "replicated NAT flow skipped: another flow of this node holds its key"
                    );
                }
                Err(error) => {
                    warn!(%error, "installing a replicated NAT flow failed");
                    return;
                }
            }
        }
    }

    /// Whether a session to some peer is up (a pair's one peer).
    pub fn connected(&self) -> bool {
        self.peers.iter().any(|p| p.sender().connected())
    }

    /// Whether every configured peer has delivered one complete full dump
    /// (flows and NAT'd flows) to this node since start: a fresh node of
    /// a full mesh knows its peers' flows and may take traffic. Peers are
    /// matched by node id (see [`peers`]); a peer this node has not
    /// reached yet is not done.
    pub fn all_peers_dumped(&self) -> bool {
        let nodes: Vec<Option<String>> =
            self.peers.iter().map(|p| p.sender().peer_node()).collect();
        self.receipts.all_dumped(nodes.iter().map(|n| n.as_deref()))
    }

    /// The channel's counters: every sender's and the listener's.
    pub fn channel_stats(&self) -> SyncStatsSnapshot {
        let mut total = self.listener_stats.snapshot();
        for peer in &self.peers {
            total.absorb(&peer.stats());
        }
        total
    }

    /// One line per configured peer.
    pub(crate) fn peer_status(&self) -> Vec<ReplicationPeerStatus> {
        self.peers
            .iter()
            .map(|p| p.status(&self.receipts))
            .collect()
    }

    /// The status's replication section.
    pub fn status(&self) -> ReplicationStatus {
        ReplicationStatus {
            connected: self.connected(),
            installed: self.flows.installed,
            unknown: self.flows.unknown,
            nat_installed: self.nat_installed,
            nat_unknown: self.nat_unknown,
            nat_conflicts: self.nat_conflicts,
            channel: self.channel_stats(),
            mode: self.topology.name().to_owned(),
            kept_local: self.flows.kept_local,
            stale: self.flows.stale,
            all_peers_dumped: self.all_peers_dumped(),
            peers: self.peer_status(),
        }
    }
}

/// A full-mesh node's id: its listen address, then `host/interface`, cut
/// to [`sync::wire::MAX_NODE_ID_LEN`] bytes. Peers are told apart by id
/// (see [`peers`]); the listen address keeps the ids of one mesh unique
/// where hosts share a name (containers, namespaces, cloned images).
pub(crate) fn mesh_node_id(listen: SocketAddr, host: &str, interface: &str) -> String {
    let mut id = format!("{listen} {host}/{interface}");
    let mut end = id.len().min(sync::wire::MAX_NODE_ID_LEN);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id.truncate(end);
    id
}

/// What a tick's scan sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Between full dumps: entries touched since `since`.
    Recent {
        /// The previous scan's time less the touch interval.
        since: u64,
    },
    /// The periodic full dump.
    Periodic,
    /// A full dump for a new session (a peer joined, restarted or came
    /// back).
    Session,
}

/// Whether a tick's `scan` sends an entry last seen at `last_seen_ns`.
/// A VRRP master sends every entry of a dump and every recent one. A
/// full-mesh node streams the flows it forwards, not the copies it holds
/// from peers and has not forwarded since (see
/// [`flow_table::mark_replica`]; each node streams its own, so peers
/// already have them), except in a dump for a new session: a node that
/// joins or comes back learns every flow its peer knows, also those of a
/// node that is gone.
fn sends(topology: Topology, scan: Scan, last_seen_ns: u64) -> bool {
    let copy = topology == Topology::FullMesh && is_replica(last_seen_ns);
    match scan {
        Scan::Session => true,
        Scan::Periodic => !copy,
        Scan::Recent { since } => last_seen_ns >= since && !copy,
    }
}

/// What became of the flow records a node received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FlowCounts {
    /// Installed.
    installed: u64,
    /// Named a VIP or backend this node lacks.
    unknown: u64,
    /// Left out: this node's entry was fresher and named another backend
    /// (full mesh).
    kept_local: u64,
    /// Left out: this node's entry for the same backend was fresher
    /// (full mesh).
    stale: u64,
}

/// Installs flow records into `table` with this node's ids: as they come
/// in a VRRP pair; in a full mesh marked as copies (see [`flow_table`])
/// and unless this node's own entry is fresher.
fn install_flows(
    topology: Topology,
    records: &[FlowRecord],
    table: &mut impl flow_table::FlowTable,
    balancer: &Balancer,
    now: u64,
    counts: &mut FlowCounts,
) {
    for record in records {
        let Some((key, mut entry)) = entry_for(record, balancer, now) else {
            counts.unknown += 1;
            continue;
        };
        let result = match topology {
            Topology::VrrpPair => table.put(&key, &entry).map(|()| Outcome::Installed),
            Topology::FullMesh => {
                entry.last_seen_ns = mark_replica(entry.last_seen_ns);
                install_unless_fresher(table, &key, &entry)
            }
        };
        match result {
            Ok(Outcome::Installed) => counts.installed += 1,
            Ok(Outcome::Stale) => counts.stale += 1,
            Ok(Outcome::KeptLocal) => {
                counts.kept_local += 1;
                debug!(
                    client = %record.client,
                    client_port = record.client_port,
                    backend = %record.backend,
                    "replicated flow left out: this node forwards it, more recently, to another backend"
                );
            }
            Err(error) => {
                warn!(%error, "installing a replicated flow failed");
                return;
            }
        }
    }
}

fn read_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let key =
        std::fs::read(path).with_context(|| format!("reading sync key {}", path.display()))?;
    let key: Vec<u8> = key.trim_ascii().to_vec();
    if key.len() < 16 {
        anyhow::bail!(
            "sync key {} has {} bytes; at least 16 are needed",
            path.display(),
            key.len()
        );
    }
    Ok(key)
}

/// Backend id -> (VIP, backend address, generation) as this node has them.
fn backend_names(balancer: &Balancer) -> HashMap<u32, (VipId, IpAddr, u32)> {
    balancer
        .vips()
        .iter()
        .flat_map(|(vip, applied)| {
            applied
                .backends
                .iter()
                .map(move |(address, b)| (b.id, (*vip, *address, b.generation)))
        })
        .collect()
}

/// The record for one tracked flow, if its backend is current and it is
/// a connection, not a handshake (`FLOW_F_HALF_OPEN`: half-open flows
/// stay on the node that saw the SYN, as in the half-open table; the ACK
/// makes the flow established and recent, and the next scan sends it).
fn record(
    key: &FlowKey,
    entry: &FlowEntry,
    names: &HashMap<u32, (VipId, IpAddr, u32)>,
    now: u64,
) -> Option<FlowRecord> {
    if entry.flags & FLOW_F_HALF_OPEN != 0 {
        return None;
    }
    let (vip, backend, generation) = names.get(&entry.backend_id)?;
    if *generation != entry.backend_generation {
        return None;
    }
    let age = Duration::from_nanos(now.saturating_sub(entry.last_seen_ns));
    Some(FlowRecord {
        vip: vip.address,
        vip_port: u16::from_be(key.dport),
        protocol: key.proto,
        client: words_addr(key.src, key.family),
        client_port: u16::from_be(key.sport),
        backend: *backend,
        age_ms: u32::try_from(age.as_millis()).unwrap_or(u32::MAX),
        // Only the state marks mean the same on a peer (the ACL mark is
        // this node's).
        flags: u8::try_from(entry.flags & FLOW_F_STATE).unwrap_or(0),
    })
}

/// The connection-table entry for a record, with this node's backend id.
fn entry_for(record: &FlowRecord, balancer: &Balancer, now: u64) -> Option<(FlowKey, FlowEntry)> {
    let protocol = match record.protocol {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        _ => return None,
    };
    let vip = VipId {
        address: record.vip,
        port: record.vip_port,
        protocol,
    };
    let backend = balancer.vips().get(&vip)?.backends.get(&record.backend)?;
    if !backend.alive {
        return None;
    }
    let (src, family) = addr_words(record.client);
    let (dst, vip_family) = addr_words(record.vip);
    if family != vip_family {
        return None;
    }
    let key = FlowKey {
        src,
        dst,
        sport: record.client_port.to_be(),
        dport: record.vip_port.to_be(),
        proto: record.protocol,
        family,
        _pad: 0,
    };
    let entry = FlowEntry {
        backend_id: backend.id,
        backend_generation: backend.generation,
        last_seen_ns: now.saturating_sub(u64::from(record.age_ms) * 1_000_000),
        flags: u32::from(record.flags) & FLOW_F_STATE,
        hash: 0,
    };
    Some((key, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{BackendConfig, VipConfig},
        dataplane::FakeMaps,
        reconcile::DesiredVip,
    };

    #[test]
    fn a_record_maps_to_the_receivers_own_backend_id() {
        // Two nodes that allocated ids differently: the receiver has an
        // extra backend first, so the shared backend has another id.
        let sender = balancer(&["198.18.0.12"]);
        let receiver = balancer(&["198.18.0.11", "198.18.0.12"]);

        let (dst, family) = addr_words("198.18.0.100".parse().unwrap());
        let (src, _) = addr_words("198.18.0.10".parse().unwrap());
        let key = FlowKey {
            src,
            dst,
            sport: 40000u16.to_be(),
            dport: 80u16.to_be(),
            proto: IPPROTO_TCP,
            family,
            _pad: 0,
        };
        let names = backend_names(&sender);
        let (sender_id, (_, _, generation)) = names.iter().next().map(|(k, v)| (*k, *v)).unwrap();
        let entry = FlowEntry {
            backend_id: sender_id,
            backend_generation: generation,
            last_seen_ns: 1_000_000_000,
            flags: 0,
            hash: 0,
        };
        let record = record(&key, &entry, &names, 1_500_000_000).unwrap();
        assert_eq!(record.backend, "198.18.0.12".parse::<IpAddr>().unwrap());
        assert_eq!(
            (record.client_port, record.vip_port, record.age_ms),
            (40000, 80, 500)
        );

        let (installed_key, installed) = entry_for(&record, &receiver, 2_000_000_000).unwrap();
        assert_eq!(installed_key, key);
        let expected = &receiver.vips().values().next().unwrap().backends[&record.backend];
        assert_eq!(
            (installed.backend_id, installed.backend_generation),
            (expected.id, expected.generation)
        );
        assert_ne!(
            installed.backend_id, sender_id,
            "ids differ between the nodes"
        );
        assert_eq!(installed.last_seen_ns, 1_500_000_000);

        let mut unknown = record;
        unknown.backend = "198.18.0.99".parse().unwrap();
        assert!(entry_for(&unknown, &receiver, 0).is_none());

        // The ACL mark is this node's: only the state marks travel, and
        // only they are taken from a record.
        let marked = FlowEntry {
            flags: lb_common::consts::FLOW_F_FIN | lb_common::guard::acl_mark(7),
            ..entry
        };
        let sent = super::record(&key, &marked, &names, 1_500_000_000).unwrap();
        assert_eq!(u32::from(sent.flags), lb_common::consts::FLOW_F_FIN);
        let forged = FlowRecord {
            flags: 0xff,
            ..sent
        };
        let (_, installed) = entry_for(&forged, &receiver, 2_000_000_000).unwrap();
        assert_eq!(installed.flags, FLOW_F_STATE);

        // A handshake (its SYN in the table, no ACK yet) is not sent.
        let half_open = FlowEntry {
            flags: FLOW_F_HALF_OPEN,
            ..entry
        };
        assert!(super::record(&key, &half_open, &names, 1_500_000_000).is_none());
    }

    fn balancer(backends: &[&str]) -> Balancer {
        let mut v = VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
        v.backends = backends
            .iter()
            .map(|a| BackendConfig {
                mac: Some(crate::mac::Mac([2, 0, 0, 0, 0, 1])),
                ..BackendConfig::new(a.parse().unwrap())
            })
            .collect();
        let mut b = Balancer::new(2);
        b.apply(
            &mut FakeMaps::default(),
            &[DesiredVip::from_config(&v, &|_| None)],
        )
        .unwrap();
        b
    }

    fn flow_record(client_port: u16, backend: &str, age_ms: u32) -> FlowRecord {
        FlowRecord {
            vip: "198.18.0.100".parse().unwrap(),
            vip_port: 80,
            protocol: IPPROTO_TCP,
            client: "198.18.0.10".parse().unwrap(),
            client_port,
            backend: backend.parse().unwrap(),
            age_ms,
            flags: 0,
        }
    }

    fn backend_id(b: &Balancer, address: &str) -> u32 {
        b.vips().values().next().unwrap().backends[&address.parse::<IpAddr>().unwrap()].id
    }

    #[test]
    fn full_mesh_never_replaces_a_fresher_local_entry() {
        let b = balancer(&["198.18.0.11", "198.18.0.12"]);
        let (id11, id12) = (backend_id(&b, "198.18.0.11"), backend_id(&b, "198.18.0.12"));
        let now: u64 = 100_000_000_000;
        let mut table = flow_table::tests::Table::default();
        let mut counts = FlowCounts::default();

        // A flow this node does not have: installed, marked as a copy.
        let new = flow_record(40_000, "198.18.0.11", 500);
        install_flows(Topology::FullMesh, &[new], &mut table, &b, now, &mut counts);
        let (key, _) = entry_for(&new, &b, now).unwrap();
        let installed = table.0[&key];
        assert_eq!(installed.backend_id, id11);
        assert!(is_replica(installed.last_seen_ns));
        assert!(installed.last_seen_ns.abs_diff(now - 500_000_000) <= 0xffff);

        // This node forwards a flow to .12, seen 10 ms ago; a peer's copy
        // seen 2 s ago names .11: the local entry stays, counted.
        let local_key = entry_for(&flow_record(40_001, "198.18.0.12", 0), &b, now)
            .unwrap()
            .0;
        let local = FlowEntry {
            backend_id: id12,
            backend_generation: b.vips().values().next().unwrap().backends
                [&"198.18.0.12".parse::<IpAddr>().unwrap()]
                .generation,
            last_seen_ns: now - 10_000_000,
            flags: 0,
            hash: 0,
        };
        table.0.insert(local_key, local);
        let stale_other = flow_record(40_001, "198.18.0.11", 2_000);
        // The same backend, older: left as is too.
        let stale_same = flow_record(40_001, "198.18.0.12", 1_000);
        install_flows(
            Topology::FullMesh,
            &[stale_other, stale_same],
            &mut table,
            &b,
            now,
            &mut counts,
        );
        assert_eq!(table.0[&local_key], local, "the fresher local entry stays");

        // A fresher copy (the peer forwards the flow now) replaces it.
        let fresher = flow_record(40_001, "198.18.0.11", 1);
        install_flows(
            Topology::FullMesh,
            &[fresher],
            &mut table,
            &b,
            now,
            &mut counts,
        );
        assert_eq!(table.0[&local_key].backend_id, id11);
        // An unknown backend changes nothing.
        install_flows(
            Topology::FullMesh,
            &[flow_record(40_002, "198.18.0.99", 0)],
            &mut table,
            &b,
            now,
            &mut counts,
        );
        assert_eq!(
            counts,
            FlowCounts {
                installed: 2,
                unknown: 1,
                kept_local: 1,
                stale: 1,
            }
        );
        assert_eq!(table.0.len(), 2);
    }

    #[test]
    fn a_vrrp_backup_takes_the_masters_copy_as_it_comes() {
        let b = balancer(&["198.18.0.11", "198.18.0.12"]);
        let now: u64 = 100_000_000_000;
        let mut table = flow_table::tests::Table::default();
        let mut counts = FlowCounts::default();
        let (key, mut local) = entry_for(&flow_record(40_001, "198.18.0.12", 0), &b, now).unwrap();
        local.last_seen_ns = now;
        table.0.insert(key, local);
        let older = flow_record(40_001, "198.18.0.11", 3_000);
        install_flows(
            Topology::VrrpPair,
            &[older],
            &mut table,
            &b,
            now,
            &mut counts,
        );
        let got = table.0[&key];
        assert_eq!(got.backend_id, backend_id(&b, "198.18.0.11"));
        assert_eq!(
            got.last_seen_ns,
            now - 3_000_000_000,
            "no replica mark in a pair"
        );
        assert_eq!(counts.installed, 1);
    }

    #[test]
    fn mesh_node_ids_are_unique_per_listener_and_fit_the_wire() {
        let a = mesh_node_id("198.18.0.2:7946".parse().unwrap(), "lab", "eth0");
        let b = mesh_node_id("198.18.0.3:7946".parse().unwrap(), "lab", "eth0");
        assert_eq!(a, "198.18.0.2:7946 lab/eth0");
        assert_ne!(a, b);
        let long = mesh_node_id("[2001:2::1]:7946".parse().unwrap(), &"é".repeat(40), "eth0");
        assert!(long.len() <= sync::wire::MAX_NODE_ID_LEN && long.starts_with("[2001:2::1]:7946 "));
        SyncConfig {
            key: vec![0; 16],
            node_id: long,
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn a_full_mesh_streams_its_own_flows_not_its_peers_copies() {
        let recent = Scan::Recent {
            since: 5_000_000_000,
        };
        let copy = mark_replica(6_000_000_000);
        let own = 6_000_000_001;
        let old = 4_000_000_000;
        assert!(!is_replica(own));
        let mesh = |scan, t| sends(Topology::FullMesh, scan, t);
        assert!(mesh(recent, own) && !mesh(recent, copy) && !mesh(recent, old));
        assert!(mesh(Scan::Periodic, own) && mesh(Scan::Periodic, old));
        assert!(!mesh(Scan::Periodic, copy), "peers have it from its node");
        assert!(mesh(Scan::Session, copy), "a new peer learns every flow");
        // A VRRP master sends whatever is recent, and everything in a dump.
        let pair = |scan, t| sends(Topology::VrrpPair, scan, t);
        assert!(pair(recent, copy) && pair(recent, own) && !pair(recent, old));
        assert!(pair(Scan::Periodic, copy) && pair(Scan::Periodic, old));
    }

    #[test]
    fn topologies_differ_in_who_sends_and_installs() {
        for master in [true, false] {
            assert!(Topology::FullMesh.sends(master) && Topology::FullMesh.installs(master));
            assert_eq!(Topology::VrrpPair.sends(master), master);
            assert_eq!(Topology::VrrpPair.installs(master), !master);
        }
    }
}
