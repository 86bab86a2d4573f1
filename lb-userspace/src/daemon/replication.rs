//! Connection-table replication between the two lbd nodes of a VRRP
//! pair: while master, this node streams its tracked flows (new and
//! recently active ones every tick, all of them periodically and on every
//! new session); while backup, it installs what the master sends into its
//! own table, translated to its own backend ids. After a failover every
//! flow established before it keeps its backend, even if the backend set
//! (and so the Maglev table) changed in between. NAT'd flows travel the
//! same way, with the same cadence ([`nat`]): after a
//! failover they keep their translation (NAT address and port, backend).

mod nat;

use std::{
    collections::HashMap,
    net::IpAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use lb_common::{
    consts::{FLOW_TOUCH_INTERVAL_NS, IPPROTO_TCP, IPPROTO_UDP},
    FlowEntry, FlowKey,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, trace, warn};

use crate::{
    config::{Protocol, VrrpConfig},
    dataplane::Dataplane,
    reconcile::{addr_words, words_addr, Balancer, VipId},
    sync::{self, FlowRecord, NatFlowRecord, ReceivedBatch, SyncConfig, SyncStats},
};

use crate::clock::monotonic_ns;
use nat::Installed;

/// How often the master sends a complete dump even without a new session.
const FULL_SYNC_INTERVAL: Duration = Duration::from_secs(10);
/// Between full syncs, a NAT flow table scan that took `d` is followed by
/// none for `NAT_SCAN_SPACING × d`: a table small enough to scan in under
/// about 60 ms is scanned every tick; a large one (120,000 entries took about
/// 120 ms in the lab) every few ticks, which delays a new flow's copy by
/// that much instead of spending half a core on scans.
const NAT_SCAN_SPACING: u32 = 4;

/// This node's end of the replication.
pub struct Replication {
    sender: sync::Sender,
    _listener: sync::ListenerHandle,
    /// Counters of both directions.
    pub stats: Arc<SyncStats>,
    sessions: watch::Receiver<u64>,
    last_scan_ns: u64,
    last_full: Option<Instant>,
    /// Batch reads of the NAT flow table failed once (logged once).
    nat_slow_scan: bool,
    /// The NAT marks last sent, per entry.
    nat_sent: nat::SentMarks,
    /// When the last NAT scan started (the data plane's clock).
    nat_last_scan_ns: u64,
    /// No NAT scan before this, unless a full sync is due.
    nat_next_scan: Option<Instant>,
    /// Records received that named a VIP or backend this node lacks.
    pub unknown: u64,
    /// Records installed.
    pub installed: u64,
    /// NAT'd flows installed from the peer (both entries each).
    pub nat_installed: u64,
    /// NAT'd flows from the peer that named a VIP (in NAT mode) or backend
    /// (address and port) this node lacks.
    pub nat_unknown: u64,
    /// NAT'd flows from the peer left out because an entry of another
    /// flow of this node holds one of their keys (both nodes were master
    /// and picked the same NAT port).
    pub nat_conflicts: u64,
    /// The peer's first complete full dump arrived.
    peer_dumped: bool,
}

impl Replication {
    /// Starts listening and connecting as `vrrp` says; received batches
    /// arrive on the returned channel.
    pub async fn start(
        vrrp: &VrrpConfig,
        node_id: &str,
    ) -> anyhow::Result<Option<(Self, mpsc::Receiver<ReceivedBatch>)>> {
        let (Some(listen), Some(peer), Some(key_file)) =
            (vrrp.sync_listen, vrrp.sync_peer, &vrrp.sync_key_file)
        else {
            return Ok(None);
        };
        let key = read_key(key_file)?;
        let config = SyncConfig {
            key,
            node_id: node_id.to_owned(),
        };
        let stats = Arc::new(SyncStats::new());
        let (tx, rx) = mpsc::channel(64);
        let listener = sync::listen(listen, config.clone(), tx, stats.clone())
            .await
            .with_context(|| format!("listening for connection-table sync on {listen}"))?;
        let sender = sync::Sender::start(peer, config, stats.clone())
            .with_context(|| format!("connection-table sync to {peer}"))?;
        let sessions = sender.sessions();
        info!(%listen, %peer, "connection-table replication started");
        Ok(Some((
            Self {
                sender,
                _listener: listener,
                stats,
                sessions,
                last_scan_ns: 0,
                last_full: None,
                nat_slow_scan: false,
                nat_sent: nat::SentMarks::default(),
                nat_last_scan_ns: 0,
                nat_next_scan: None,
                unknown: 0,
                installed: 0,
                nat_installed: 0,
                nat_unknown: 0,
                nat_conflicts: 0,
                peer_dumped: false,
            },
            rx,
        )))
    }

    /// While master: sends flows active since the last tick, or all of them
    /// when a new session started or a full sync is due.
    pub fn tick(&mut self, dataplane: &Dataplane, balancer: &Balancer) {
        let now = monotonic_ns();
        let new_session = self.sessions.has_changed().unwrap_or(false);
        if new_session {
            self.sessions.mark_unchanged();
        }
        let full = new_session
            || self
                .last_full
                .is_none_or(|t| t.elapsed() >= FULL_SYNC_INTERVAL);
        // last_seen is refreshed at most every FLOW_TOUCH_INTERVAL_NS, so a
        // flow is "recent" if touched within that much before the last scan.
        let since = self.last_scan_ns.saturating_sub(FLOW_TOUCH_INTERVAL_NS);
        let names = backend_names(balancer);
        let records: Vec<FlowRecord> = dataplane
            .flows()
            .filter(|(_, entry)| full || entry.last_seen_ns >= since)
            .filter_map(|(key, entry)| record(&key, &entry, &names, now))
            .collect();
        let nat = self.nat_scan(dataplane, full, now);
        if full {
            debug!(
                records = records.len(),
                nat_records = nat.len(),
                "full connection-table sync"
            );
            self.last_full = Some(Instant::now());
        }
        self.sender.send(records, full);
        self.sender.send_nat(nat, full);
        self.last_scan_ns = now;
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
        let records = match crate::map_batch::lookup_all(dataplane.nat().flows_map()) {
            Ok(flows) => {
                let read = scan.elapsed();
                let entries = flows.len();
                let records =
                    nat::nat_records(flows.into_iter(), full, since, now, &mut self.nat_sent);
                trace!(
                    entries,
                    records = records.len(),
                    read_us = read.as_micros(),
                    total_us = scan.elapsed().as_micros(),
                    "NAT flow table scanned"
                );
                records
            }
            Err(error) => {
                if !self.nat_slow_scan {
                    warn!(%error, "reading the NAT flow table in batches failed: walking it entry by entry instead");
                    self.nat_slow_scan = true;
                }
                nat::nat_records(
                    dataplane.nat().flows(),
                    full,
                    since,
                    now,
                    &mut self.nat_sent,
                )
            }
        };
        self.nat_last_scan_ns = now;
        self.nat_next_scan = Some(Instant::now() + scan.elapsed() * NAT_SCAN_SPACING);
        records
    }

    /// While backup: installs a batch from the master.
    pub fn install(
        &mut self,
        batch: &ReceivedBatch,
        dataplane: &mut Dataplane,
        balancer: &Balancer,
    ) {
        let now = monotonic_ns();
        if batch.full_sync && batch.last {
            self.peer_dumped = true;
        }
        self.install_nat(batch, dataplane, balancer, now);
        for record in &batch.records {
            let Some((key, entry)) = entry_for(record, balancer, now) else {
                self.unknown += 1;
                continue;
            };
            match dataplane.install_flow(&key, &entry) {
                Ok(()) => self.installed += 1,
                Err(error) => {
                    warn!(%error, "installing a replicated flow failed");
                    return;
                }
            }
        }
    }

    /// While backup: installs a batch's NAT'd flows, both entries each,
    /// with this node's ids; skips (and counts) those it cannot place and
    /// those whose keys another flow holds here.
    fn install_nat(
        &mut self,
        batch: &ReceivedBatch,
        dataplane: &mut Dataplane,
        balancer: &Balancer,
        now: u64,
    ) {
        for record in &batch.nat {
            let pair = match nat::entries_for(record, balancer, now) {
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

    /// Whether every configured peer has delivered one complete full dump
    /// to this node since start (the BGP start-up gate waits for it).
    pub fn all_peers_dumped(&self) -> bool {
        self.peer_dumped
    }

    /// Whether the session to the peer is up.
    pub fn connected(&self) -> bool {
        self.sender.connected()
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

/// The record for one tracked flow, if its backend is current.
fn record(
    key: &FlowKey,
    entry: &FlowEntry,
    names: &HashMap<u32, (VipId, IpAddr, u32)>,
    now: u64,
) -> Option<FlowRecord> {
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
        flags: u8::try_from(entry.flags).unwrap_or(u8::MAX),
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
        flags: u32::from(record.flags),
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
        let vip = |backends: &[&str]| {
            let mut v = VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
            v.backends = backends
                .iter()
                .map(|a| BackendConfig {
                    mac: Some(crate::mac::Mac([2, 0, 0, 0, 0, 1])),
                    ..BackendConfig::new(a.parse().unwrap())
                })
                .collect();
            DesiredVip::from_config(&v, &|_| None)
        };
        let mut sender = Balancer::new(2);
        sender
            .apply(&mut FakeMaps::default(), &[vip(&["198.18.0.12"])])
            .unwrap();
        let mut receiver = Balancer::new(2);
        receiver
            .apply(
                &mut FakeMaps::default(),
                &[vip(&["198.18.0.11", "198.18.0.12"])],
            )
            .unwrap();

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
    }
}
