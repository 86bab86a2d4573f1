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
mod flow_table;
#[cfg(test)]
mod heap_peak;
pub(crate) mod nat;
mod nat_install;
mod peers;
mod records;
mod roles;
#[cfg(test)]
mod tests;
mod walks;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use lb_common::{
    consts::{FLOW_F_HALF_OPEN, FLOW_F_STATE, IPPROTO_TCP, IPPROTO_UDP},
    FlowEntry, FlowKey,
};
use tokio::sync::mpsc;
use tracing::{debug, info, trace, warn};

use crate::{
    api::schema::{ReplicationPeerStatus, ReplicationStatus},
    bgp::announce::PeerDumps,
    config::{Protocol, SyncSettings, VrrpConfig},
    dataplane::Dataplane,
    reconcile::{addr_words, words_addr, Balancer, VipId},
    sync::{
        self, log_limit::LogLimit, FlowRecord, NatFlowRecord, ReceivedBatch, SyncConfig, SyncStats,
        SyncStatsSnapshot,
    },
};

use crate::clock::monotonic_ns;
use crate::vrrp::machine::PREEMPT_SYNC_HOLD;
/// Whether a connection-table entry is a peer's flow held as a copy (a
/// full mesh's mark): the flow censuses count this node's own flows.
pub(crate) use flow_table::is_replica as is_peer_copy;
/// A peer's copy's mark (records installs them with it; the censuses'
/// tests make copies with it).
pub(crate) use flow_table::mark_replica;
use flow_table::{install_copy, install_unless_fresher, is_replica, Outcome};
use peers::{Peer, Receipts};
use records::{backend_names, install_flows, record, sends, FlowCounts, Install, Scan};
pub(crate) use roles::Roles;
pub(crate) use walks::walk_ended;
use walks::{walk, Due, Planned, Split, Tables, Walk, WalkInput, Walked, Walker, Walks};

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
/// Longest a sender to a peer a reload removed writes what is queued
/// before it closes.
const REMOVED_PEER_CLOSE: Duration = Duration::from_secs(5);
/// How often [`Replication::flush`] looks at the senders' queues.
const FLUSH_POLL: Duration = Duration::from_millis(10);
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
    /// [`PREEMPT_SYNC_HOLD`] from about then.
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

    /// A reload's `[sync] peers` (a full mesh's: a pair's peer waits for
    /// a restart): starts a sender to each new peer and lets it shake
    /// hands, stops the senders of those no longer listed (each writes
    /// what is queued first) and refuses them from the next connection.
    /// A node thus joins or leaves a running mesh with a reload of the
    /// others, no restart. A new peer's session gets the full dump as any
    /// new session does. Returns what changed, for the log and the
    /// reload's answer (empty when nothing did).
    pub(crate) fn set_peers(&mut self, wanted: &[SocketAddr]) -> anyhow::Result<Vec<String>> {
        let mut notes = Vec::new();
        let mut added = Vec::new();
        for &address in wanted {
            if !self.peers.iter().any(|p| p.address() == address) {
                added.push(start_peer(self.listen, address, &self.config)?);
            }
        }
        let (kept, removed): (Vec<Peer>, Vec<Peer>) = std::mem::take(&mut self.peers)
            .into_iter()
            .partition(|p| wanted.contains(&p.address()));
        self.peers = kept;
        for peer in &added {
            notes.push(format!(
                "sync peer {} added: this node streams its flows to it and lets it connect",
                peer.address()
            ));
        }
        self.peers.extend(added);
        for peer in removed {
            notes.push(format!(
                "sync peer {} removed: this node stops streaming to it and refuses its connections (a session it holds to this node ends when it stops or drops this node too)",
                peer.address()
            ));
            self.retired.absorb(&peer.stats());
            tokio::spawn(async move {
                let (address, closed) = peer.close(REMOVED_PEER_CLOSE).await;
                debug!(peer = %address, ?closed, "connection-table sync to a removed peer closed");
            });
        }
        if !notes.is_empty() {
            let addresses: Vec<IpAddr> = self.peers.iter().map(|p| p.address().ip()).collect();
            self._listener.set_sources(sync::Sources::Peers(addresses));
            for note in &notes {
                info!("{note}");
            }
        }
        Ok(notes)
    }

    /// The configured peers' addresses, in order.
    pub(crate) fn peer_addresses(&self) -> Vec<SocketAddr> {
        self.peers.iter().map(Peer::address).collect()
    }

    /// While sending: sends flows stamped since the last walk's start to
    /// every peer, or all of them when a full sync is due; a peer with a
    /// new session gets a dump of every entry, and only that peer (the
    /// others keep their stream: one walk reads both). In a full mesh,
    /// copies installed from peers and not forwarded here since are left
    /// out, but for the dump of a new session (see [`sends`]). In a pair,
    /// only the flows of VIPs this node holds go (`roles`: the other
    /// family's instance may be mastered by the peer, which streams those
    /// itself).
    ///
    /// The walk of the connection table runs off lbd's loop where the
    /// table can be mapped a second time (see [`walks`]), and scans the
    /// NAT flow table too: its records go out when it ends
    /// ([`Replication::walk_ended`]); a tick while it runs starts nothing.
    pub(crate) fn start_walk(&mut self, dataplane: &Dataplane, balancer: &Balancer, roles: &Roles) {
        self.start_walk_in(dataplane, balancer, roles);
    }

    /// [`Replication::start_walk`] over `tables` (tests: tables in memory).
    fn start_walk_in(&mut self, tables: &dyn Tables, balancer: &Balancer, roles: &Roles) {
        let Some(input) = self.begin(balancer, roles) else {
            return;
        };
        match self.walker.walk_for(tables, input) {
            Walk::Off(walk) => self.walker.launch(walk),
            Walk::Done(walked) => self.finish_walk(walked),
        }
    }

    /// [`Replication::start_walk`] walking in the caller's thread, whatever
    /// the table (the last tick before lbd stops, the bench); nothing while
    /// a walk is in flight (see [`Replication::wait_walk`]).
    pub(crate) fn tick_with(&mut self, dataplane: &Dataplane, balancer: &Balancer, roles: &Roles) {
        let Some(input) = self.begin(balancer, roles) else {
            return;
        };
        let walked = walk(dataplane, input, &AtomicBool::new(false));
        self.finish_walk(walked);
    }

    /// Starts a walk unless one is in flight: decides what it sends (the
    /// NAT flow table's scan with it, when due) and takes what the walk
    /// needs. Reads neither table: the walk does.
    fn begin(&mut self, balancer: &Balancer, roles: &Roles) -> Option<WalkInput> {
        let now = monotonic_ns();
        let peers = &mut self.peers;
        let planned = self.walks.start(|| due(peers), now, Instant::now())?;
        if planned.full {
            debug!(
                peers = self.peers.len(),
                session_dumps = self.peers.iter().filter(|p| p.dump_is_owed()).count(),
                periodic = planned.scan == Scan::Periodic,
                "full connection-table sync: walking the connection table and the NAT flow table"
            );
        }
        Some(WalkInput {
            planned,
            topology: self.topology,
            names: backend_names(balancer),
            roles: roles.clone(),
            nat: self.nat_scan(planned),
        })
    }

    /// Whether a walk of the connection table is in flight.
    pub(crate) fn walking(&self) -> bool {
        self.walks.walking()
    }

    /// What lbd's loop waits on for [`Replication::walk_ended`] (see
    /// [`walk_ended`]).
    pub(crate) fn walk_ends(&self) -> Arc<tokio::sync::Notify> {
        self.walker.ended()
    }

    /// A walk off the loop may have ended: sends its records.
    pub(crate) fn walk_ended(&mut self) {
        if let Some(walked) = self.walker.try_ended() {
            self.finish_walk(walked);
        }
    }

    /// Waits for the walk in flight, if any, and sends its records: the
    /// last tick before lbd stops walks after it.
    pub(crate) async fn wait_walk(&mut self) {
        if self.walking() {
            let walked = self.walker.wait().await;
            self.finish_walk(walked);
        }
    }

    /// The walk in flight ended with `walked`: its records go to every
    /// peer, the NAT'd flows' first (a session's dump to the peers owed
    /// one, the scan's records to the others). One that failed leaves its
    /// window and its dumps to the next (the next NAT scan looks back to
    /// the last one that ended).
    fn finish_walk(&mut self, walked: Walked) {
        let Some(planned) = self.walks.finish(walked.is_some()) else {
            return;
        };
        let Some(collected) = walked else {
            self.walker.failed(Instant::now());
            return;
        };
        self.walker.succeeded();
        if planned.dumps_all() {
            let nat = collected.nat.as_ref().map_or(0, |n| n.records.dump_len());
            self.walks
                .dumped(collected.flows.dump_len().saturating_add(nat));
        }
        if let Some(nat) = collected.nat {
            trace!(
                records = nat.records.dump_len(),
                took_us = nat.took.as_micros(),
                "NAT flow table scanned"
            );
            self.nat_last_scan_ns = planned.started_ns;
            self.nat_next_scan = Some(Instant::now() + nat.took * NAT_SCAN_SPACING);
            self.send_nat(&nat.records, &planned);
        }
        if planned.full {
            debug!(
                records = collected.flows.dump_len(),
                peers = self.peers.len(),
                "full connection-table sync"
            );
        }
        self.send_flows(&collected.flows, &planned);
        for peer in &mut self.peers {
            peer.dumped();
        }
    }

    /// The roles a walk starting now streams with (see
    /// [`Replication::roles_for_tick`]); None while a walk is in flight
    /// (no walk starts, and a step-down meanwhile is seen by the next).
    pub(crate) fn roles_for_walk(&mut self, roles: Roles) -> Option<Roles> {
        if self.walking() {
            return None;
        }
        Some(self.roles_for_tick(roles))
    }

    /// The roles a tick streams with: `roles`, except on the first tick
    /// after an instance of a pair stepped down from master while lbd
    /// runs on (preempted, or its priority lowered): that tick still
    /// streams the VIPs handed over, with a NAT scan forced, so the flows
    /// opened here since the last tick reach the new master (a SIGINT
    /// does the same through `final_sync`).
    pub(crate) fn roles_for_tick(&mut self, roles: Roles) -> Roles {
        let previous = self.last_roles.replace(roles.clone());
        match previous {
            Some(previous) if self.topology == Topology::VrrpPair && previous.gives_up(&roles) => {
                info!("VRRP stepped down while lbd runs on: sending the last flows of the VIPs handed over to the new master");
                self.scan_nat_now();
                previous.union(&roles)
            }
            _ => roles,
        }
    }

    /// Whether a pair's peer delivered a complete full dump since this
    /// node started, so a preemption no longer cuts the peer's flows (see
    /// [`crate::vrrp::machine::Machine::hold_preemption`]). Logs the end of
    /// the wait once: the dump, or [`PREEMPT_SYNC_HOLD`] passing without
    /// it (the VRRP machine then preempts anyway).
    pub(crate) fn peer_dumped(&mut self) -> bool {
        let dumped = match self.topology {
            Topology::VrrpPair => self.receipts.any_dumped(),
            Topology::FullMesh => self.all_peers_dumped(),
        };
        if !self.dump_wait_logged {
            let waited = self.started.elapsed();
            if dumped {
                self.dump_wait_logged = true;
                info!(
                    waited_ms = waited.as_millis(),
                    "connection-table replication: the peer's full dump arrived; preemption no longer waits for it"
                );
            } else if waited >= PREEMPT_SYNC_HOLD {
                self.dump_wait_logged = true;
                warn!(
                    hold_s = PREEMPT_SYNC_HOLD.as_secs(),
                    "connection-table replication: no full dump from the peer since start; a VRRP preemption no longer waits for it, and the peer's connections not copied here break when it happens (check the peer's sync_peer and the key)"
                );
            }
        }
        dumped
    }

    /// Queues the walk's flow records for every peer (each peer's own
    /// queue: a slow one drops its oldest batches, the others go on): a
    /// session's dump for each peer owed one, the scan's records for the
    /// others; marked with the session each peer had when the walk
    /// started: a dump read before a peer's current session is dropped, never taken
    /// for that session's dump (the next walk makes it), and a periodic
    /// dump never takes the place of a session's dump still queued. Their
    /// ages were taken `at` (the walk's start): the sender adds the time
    /// since when they go out.
    /// Each set is one allocation every peer's queue that gets it shares (a
    /// reference each, no copy: see `sync::channel::queue::Records`).
    fn send_flows(&self, records: &Split<FlowRecord>, planned: &Planned) {
        for peer in &self.peers {
            if let Some((records, read)) = Self::for_peer(peer, records, planned) {
                peer.sender().send_read(records, read);
            }
        }
    }

    /// Queues NAT'd flow records for every peer, as [`Self::send_flows`].
    fn send_nat(&self, records: &Split<NatFlowRecord>, planned: &Planned) {
        for peer in &self.peers {
            if let Some((records, read)) = Self::for_peer(peer, records, planned) {
                peer.sender().send_nat_read(records, read);
            }
        }
    }

    /// What `peer` gets of a walk's `records`: the session's dump if it is
    /// owed one, else the scan's records; None when the walk read none for
    /// it (a peer a reload added while a walk ran that read only session
    /// dumps: its own session's dump follows).
    fn for_peer<T>(
        peer: &Peer,
        records: &Split<T>,
        planned: &Planned,
    ) -> Option<(Arc<[T]>, sync::Read)> {
        let at = planned.started;
        if peer.dump_is_owed() {
            let all = records.session.as_ref()?;
            return Some((Arc::clone(all), peer.read(sync::Dump::Session, at)));
        }
        planned.rest.then(|| {
            (
                Arc::clone(&records.rest),
                peer.read(planned.scan.dump(), at),
            )
        })
    }

    /// The NAT flow table's scan for a walk of `scan`, if one is due (see
    /// [`nat::nat_records_in`]): every dump scans it; between them, a scan
    /// waits until the previous one's duration times [`NAT_SCAN_SPACING`]
    /// has passed, so these scans take at most a fifth of a core whatever
    /// the table's size (off lbd's loop, with the walk).
    fn nat_scan(&mut self, planned: Planned) -> Option<walks::NatScan> {
        if !nat_scan_due(self.nat_next_scan, planned.full, Instant::now()) {
            return None;
        }
        // NAT entries have a window of their own (see SCAN_MARGIN_NS).
        let scan = match planned.scan {
            Scan::Recent { .. } => Scan::Recent {
                since: self.nat_last_scan_ns.saturating_sub(nat::SCAN_MARGIN_NS),
            },
            dump => dump,
        };
        Some(walks::NatScan {
            scan,
            session: planned.session,
            rule: self.nat_rule,
        })
    }

    /// The next tick scans the NAT flow table whatever the spacing says:
    /// the last tick before stepping down sends the NAT'd flows opened
    /// since the last scan too.
    pub(crate) fn scan_nat_now(&mut self) {
        self.nat_next_scan = None;
    }

    /// Counts a batch under the peer that sent it (whether or not this
    /// node installs it now).
    pub fn received(&mut self, batch: &ReceivedBatch) {
        self.receipts
            .note(batch, peers::Arrival::of(batch.received_ns));
    }

    /// How a record for `vip` is installed: in a full mesh as a copy
    /// unless this node's entry is fresher; in a pair, replacing this
    /// node's entry where it is backup for the VIP, else (batches queued
    /// before it became master, or while both were) only where it holds
    /// nothing fresher.
    fn rule(topology: Topology, roles: &Roles, vip: IpAddr) -> Install {
        match topology {
            Topology::FullMesh => Install::Replica,
            Topology::VrrpPair if roles.backs(vip) => Install::Replace,
            Topology::VrrpPair => Install::UnlessFresher,
        }
    }

    /// [`Replication::tick_with`] for a node that holds every VIP (a
    /// pair's master of all, or a mesh node): sends all its flows,
    /// walking in the caller's thread.
    pub fn tick(&mut self, dataplane: &Dataplane, balancer: &Balancer) {
        self.tick_with(dataplane, balancer, &Roles::new([], true));
    }

    /// [`Replication::install_with`] for a node that backs up every VIP
    /// (a pair's backup of all, or a mesh node).
    pub fn install(
        &mut self,
        batch: &ReceivedBatch,
        dataplane: &mut Dataplane,
        balancer: &Balancer,
    ) {
        self.install_with(batch, dataplane, balancer, &Roles::new([], false));
    }

    /// Installs a batch from a peer, each record as this node's role for
    /// its VIP says (see [`Replication::rule`]). Ages count from the
    /// batch's arrival ([`ReceivedBatch::received_ns`]), not from now:
    /// the time it waited in the receive queue ages its copies too.
    pub(crate) fn install_with(
        &mut self,
        batch: &ReceivedBatch,
        dataplane: &mut Dataplane,
        balancer: &Balancer,
        roles: &Roles,
    ) {
        self.install_nat(batch, dataplane.nat_mut(), balancer, roles);
        self.install_flow_records(batch, dataplane, balancer, roles);
    }

    /// Installs a batch's flow records into `table` (see
    /// [`Replication::install_with`]).
    fn install_flow_records(
        &mut self,
        batch: &ReceivedBatch,
        table: &mut impl flow_table::FlowTable,
        balancer: &Balancer,
        roles: &Roles,
    ) {
        let topology = self.topology;
        install_flows(
            |vip| Self::rule(topology, roles, vip),
            &batch.records,
            table,
            balancer,
            batch.received_ns,
            &mut self.flows,
            &mut self.flow_warnings,
        );
    }

    /// Installs a batch's NAT'd flows, both entries each, with this
    /// node's ids; skips (and counts) those it cannot place, those whose
    /// keys another flow holds here and those the table refuses.
    fn install_nat(
        &mut self,
        batch: &ReceivedBatch,
        table: &mut impl nat::ReplicaTable,
        balancer: &Balancer,
        roles: &Roles,
    ) {
        let topology = self.topology;
        nat_install::install_nat_records(
            &batch.nat,
            table,
            balancer,
            |vip| Self::rule(topology, roles, vip),
            batch.received_ns,
            &mut self.nat,
            &mut self.nat_warnings,
            Instant::now(),
        );
    }

    /// Waits, at most `limit`, until every connected peer has been
    /// written all that was given to it: a node stepping down (SIGINT)
    /// sends its last tick's flows before its peer takes over.
    pub(crate) async fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self
            .peers
            .iter()
            .any(|p| p.sender().connected() && !p.sender().is_flushed())
        {
            if Instant::now() >= deadline {
                warn!(
                    ?limit,
                    "connection-table sync: the last flows were not all sent in time"
                );
                return;
            }
            tokio::time::sleep(FLUSH_POLL).await;
        }
    }

    /// Ends replication for good (lbd stops), waiting at most `limit`
    /// (every peer at once): each sender writes what is still queued and
    /// closes its session so that the peer reads all of it first (see
    /// `sync::Sender::close`). Dropping the senders instead could reset
    /// the connections and lose the last flows written (a final flush's).
    pub(crate) async fn close(mut self, limit: Duration) {
        let mut closing = tokio::task::JoinSet::new();
        for peer in std::mem::take(&mut self.peers) {
            closing.spawn(peer.close(limit));
        }
        while let Some(done) = closing.join_next().await {
            match done {
                Ok((address, sync::Closed::Delivered)) => {
                    info!(peer = %address, "connection-table sync closed: the peer read everything sent")
                }
                Ok((address, sync::Closed::NotConnected)) => {
                    debug!(peer = %address, "connection-table sync closed: no session was up")
                }
                Ok((address, sync::Closed::Failed(error))) => warn!(
                    peer = %address,
                    %error,
                    ?limit,
                    "connection-table sync: closing the session failed; the peer may have missed the last flows sent"
                ),
                Err(error) => warn!(%error, "connection-table sync: a sender's close failed"),
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

    /// Where every configured peer's first full dump stands, each named
    /// by its configured address: the BGP start-up gate waits on past
    /// `startup_wait_ms` while one is still arriving (see
    /// [`crate::bgp::announce::Startup`]). Peers are matched by node id
    /// as in [`Self::all_peers_dumped`].
    pub(crate) fn peer_dumps(&self) -> PeerDumps {
        PeerDumps(
            self.peers
                .iter()
                .map(|p| {
                    let node = p.sender().peer_node();
                    let progress = self.receipts.dump_progress(node.as_deref());
                    (p.address().to_string(), progress)
                })
                .collect(),
        )
    }

    /// The channel's counters: every sender's and the listener's.
    pub fn channel_stats(&self) -> SyncStatsSnapshot {
        let mut total = self.listener_stats.snapshot();
        total.absorb(&self.retired);
        for peer in &self.peers {
            total.absorb(&peer.stats());
        }
        total
    }

    /// One line per configured peer.
    pub(crate) fn peer_status(&self) -> Vec<ReplicationPeerStatus> {
        let now = Instant::now();
        let sharing = self.peer_backend_states(now);
        self.peers
            .iter()
            .map(|p| {
                let mut status = self.drift.status(p.status(&self.receipts, now));
                status.shares_backend_states = status
                    .node
                    .as_ref()
                    .is_some_and(|node| sharing.contains_key(node));
                status
            })
            .collect()
    }

    /// The status's replication section.
    pub fn status(&self) -> ReplicationStatus {
        ReplicationStatus {
            connected: self.connected(),
            installed: self.flows.installed,
            unknown: self.flows.unknown,
            nat_installed: self.nat.installed,
            nat_unknown: self.nat.unknown,
            nat_conflicts: self.nat.conflicts,
            nat_table_full: self.nat.table_full,
            nat_failed: self.nat.failed,
            channel: self.channel_stats(),
            mode: Some(self.topology),
            kept_local: self.flows.kept_local,
            stale: self.flows.stale,
            failed: self.flows.failed,
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
    fit_node_id(format!("{listen} {host}/{interface}"))
}

/// A VRRP pair's node id: `host/interface`, cut as [`mesh_node_id`] is
/// (a long FQDN would otherwise fail the config's check and stop lbd).
pub(crate) fn pair_node_id(host: &str, interface: &str) -> String {
    fit_node_id(format!("{host}/{interface}"))
}

/// `id` cut to [`sync::wire::MAX_NODE_ID_LEN`] bytes at a char boundary;
/// an id that fits is kept as is (peers know a node by it).
fn fit_node_id(mut id: String) -> String {
    let mut end = id.len().min(sync::wire::MAX_NODE_ID_LEN);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id.truncate(end);
    id
}

/// What the walk starting now must read for `peers` (see [`Due`]):
/// asks every peer, consuming each one's new-session mark.
fn due(peers: &mut [Peer]) -> Due {
    let mut due = Due::default();
    for peer in peers {
        if peer.owed_dump() {
            due.session = true;
        } else {
            due.rest = true;
        }
    }
    due
}

/// Starts the sender to `address`, from `listen`'s address where that
/// works (see [`sender_source`]).
fn start_peer(
    listen: SocketAddr,
    address: SocketAddr,
    config: &SyncConfig,
) -> anyhow::Result<Peer> {
    if is_own_address(address.ip()) {
        warn!(peer = %address, "a connection-table sync peer is one of this node's own addresses: this node would sync with itself (its listener refuses it); check sync_peer / sync.peers");
    }
    let stats = Arc::new(SyncStats::new());
    let sender = match sender_source(listen, address) {
        Some(source) => sync::Sender::start_from(address, source, config.clone(), stats.clone()),
        None => sync::Sender::start(address, config.clone(), stats.clone()),
    }
    .with_context(|| format!("connection-table sync to {address}"))?;
    Ok(Peer::new(address, sender, stats))
}

/// The address a sender to `peer` connects from: this node's listen
/// address, which the peer lists as this node's (its listener admits
/// only those), when it is one address of the peer's family; else the
/// route's pick (`sync_listen = "0.0.0.0:…"`). The port is the kernel's
/// pick; an IPv6 listen address keeps its scope (`[fe80::1%2]`), without
/// which Linux refuses to bind a link-local address.
fn sender_source(listen: SocketAddr, peer: SocketAddr) -> Option<SocketAddr> {
    let ip = listen.ip();
    if ip.is_unspecified() || ip.is_ipv4() != peer.is_ipv4() {
        return None;
    }
    Some(match listen {
        SocketAddr::V4(v4) => SocketAddr::V4(std::net::SocketAddrV4::new(*v4.ip(), 0)),
        SocketAddr::V6(v6) => {
            SocketAddr::V6(std::net::SocketAddrV6::new(*v6.ip(), 0, 0, v6.scope_id()))
        }
    })
}

/// Whether `ip` is one of this host's addresses (binding it works; no
/// packet is sent): a peer there is this node itself.
fn is_own_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

impl Replication {
    /// What a reload must tell when the key file no longer holds the key
    /// replication runs with (rotated in place, unreadable, too short):
    /// the key is read at start only, and the path in the config is the
    /// same, so nothing else would say that the new key waits for a
    /// restart (the peer that restarts first then fails to authenticate
    /// until the other restarts too).
    pub fn key_file_changed(&self) -> Option<String> {
        let (path, running) = &self.key;
        key_file_note(path, running, read_key(path))
    }
}

/// [`Replication::key_file_changed`]'s note, from what reading `path`
/// gave.
fn key_file_note(path: &Path, running: &[u8], on_disk: anyhow::Result<Vec<u8>>) -> Option<String> {
    match on_disk {
        Ok(key) if key == running => None,
        Ok(_) => Some(format!(
            "sync key {} changed: replication keeps the key it started with until lbd restarts (restart each node once both files hold the new key; until then the node restarted first cannot authenticate to the other)",
            path.display()
        )),
        Err(error) => Some(format!(
            "{error:#}: replication keeps the key it started with; the next start needs the file fixed"
        )),
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

/// A warning when the sync key file at `path` may be read by others than
/// its owner (group or other permission bits): whoever reads the key can
/// join the replication channel as a peer and write flows into this
/// node's tables. None when only the owner may read it, or when its mode
/// cannot be read (reading the key itself reported that).
fn key_file_exposure(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "sync key {} has mode {mode:04o}: others than its owner may read it, and whoever holds the key can replicate flows into this node; make it 0600 (chmod 600 {})",
            path.display(),
            path.display()
        )
    })
}

/// Whether a tick scans the NAT flow table: a full sync always does;
/// otherwise once the spacing after the last scan (`next`) has passed,
/// or when none is set (the first scan, or `scan_nat_now`).
fn nat_scan_due(next: Option<Instant>, full: bool, now: Instant) -> bool {
    full || next.is_none_or(|t| now >= t)
}
