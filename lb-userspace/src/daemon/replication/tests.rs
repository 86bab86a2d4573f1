use super::records::entry_for;
use super::walks::collect;
use super::*;
use crate::{
    config::{BackendConfig, VipConfig},
    dataplane::FakeMaps,
    reconcile::DesiredVip,
    test_scratch::ScratchDir,
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
    install_flows(
        |_| Install::Replica,
        &[new],
        &mut table,
        &b,
        now,
        &mut counts,
        &mut LogLimit::new(INSTALL_WARNING_INTERVAL),
    );
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
        |_| Install::Replica,
        &[stale_other, stale_same],
        &mut table,
        &b,
        now,
        &mut counts,
        &mut LogLimit::new(INSTALL_WARNING_INTERVAL),
    );
    assert_eq!(table.0[&local_key], local, "the fresher local entry stays");

    // A fresher copy (the peer forwards the flow now) replaces it.
    let fresher = flow_record(40_001, "198.18.0.11", 1);
    install_flows(
        |_| Install::Replica,
        &[fresher],
        &mut table,
        &b,
        now,
        &mut counts,
        &mut LogLimit::new(INSTALL_WARNING_INTERVAL),
    );
    assert_eq!(table.0[&local_key].backend_id, id11);
    // An unknown backend changes nothing.
    install_flows(
        |_| Install::Replica,
        &[flow_record(40_002, "198.18.0.99", 0)],
        &mut table,
        &b,
        now,
        &mut counts,
        &mut LogLimit::new(INSTALL_WARNING_INTERVAL),
    );
    assert_eq!(
        counts,
        FlowCounts {
            installed: 2,
            unknown: 1,
            kept_local: 1,
            stale: 1,
            failed: 0,
        }
    );
    assert_eq!(table.0.len(), 2);
}

/// A connection table whose `fail_at`-th put fails (a map error).
#[derive(Default)]
struct Failing {
    table: flow_table::tests::Table,
    puts: usize,
    fail_at: usize,
}

impl flow_table::FlowTable for Failing {
    fn get(&self, key: &FlowKey) -> Result<Option<FlowEntry>, crate::dataplane::DataplaneError> {
        self.table.get(key)
    }

    fn put(
        &mut self,
        key: &FlowKey,
        entry: &FlowEntry,
    ) -> Result<(), crate::dataplane::DataplaneError> {
        self.puts += 1;
        if self.puts == self.fail_at {
            return Err(crate::dataplane::DataplaneError::FlowTable(Box::new(
                crate::conntrack::table::FlowTableError::Full("connection table"),
            )));
        }
        self.table.put(key, entry)
    }
}

#[test]
fn a_failed_install_leaves_that_flow_out_and_the_rest_of_the_batch_in() {
    let b = balancer(&["198.18.0.11", "198.18.0.12"]);
    let now: u64 = 100_000_000_000;
    let records: Vec<FlowRecord> = (0..4)
        .map(|i| flow_record(40_000 + i, "198.18.0.11", 100))
        .collect();
    for rule in [Install::Replace, Install::UnlessFresher, Install::Replica] {
        let mut table = Failing {
            fail_at: 2,
            ..Failing::default()
        };
        let mut counts = FlowCounts::default();
        let mut warnings = LogLimit::new(INSTALL_WARNING_INTERVAL);
        install_flows(
            |_| rule,
            &records,
            &mut table,
            &b,
            now,
            &mut counts,
            &mut warnings,
        );
        assert_eq!(
            counts,
            FlowCounts {
                installed: 3,
                failed: 1,
                ..FlowCounts::default()
            },
            "{rule:?}"
        );
        let second = entry_for(&records[1], &b, now).unwrap().0;
        assert!(!table.table.0.contains_key(&second));
        assert_eq!(table.table.0.len(), 3, "{rule:?}");
    }
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
        |_| Install::Replace,
        &[older],
        &mut table,
        &b,
        now,
        &mut counts,
        &mut LogLimit::new(INSTALL_WARNING_INTERVAL),
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
    SyncConfig::new(vec![0; 16], long).validate().unwrap();
}

#[test]
fn pair_node_ids_fit_the_wire_and_short_ones_stay_as_they_were() {
    assert_eq!(pair_node_id("lb-a", "eth0"), "lb-a/eth0");
    // A 60-byte FQDN and its interface: 65 bytes, one over the limit.
    let fqdn = format!("{}.example.com", "n".repeat(48));
    assert_eq!(fqdn.len(), 60);
    let id = pair_node_id(&fqdn, "eth0");
    assert_eq!(id, format!("{fqdn}/eth"));
    let multibyte = pair_node_id(&"é".repeat(40), "eth0");
    assert!(multibyte.len() <= sync::wire::MAX_NODE_ID_LEN);
    for node_id in [id, multibyte] {
        SyncConfig::new(vec![0; 16], node_id).validate().unwrap();
    }
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

/// A full mesh echoes an idle flow back to its own node: B holds A's
/// flow as a copy and dumps it for a new session; ages are floored to
/// milliseconds on the way out and the receiver stamps after transit, so
/// the echo looks a little fresher than A's own entry. A keeps its entry
/// (unmarked, still in its periodic dumps); a copy well fresher than it
/// still goes in.
#[test]
fn a_full_mesh_echo_never_turns_the_owners_entry_into_a_copy() {
    let a = balancer(&["198.18.0.11"]);
    let b = balancer(&["198.18.0.11"]);
    let last_seen: u64 = 100_000_000_000;
    let record_at = |names: &Balancer, entry: &FlowEntry, key: &FlowKey, now: u64| {
        record(key, entry, &backend_names(names), now).unwrap()
    };
    let (key, mut own) = entry_for(&flow_record(40_000, "198.18.0.11", 0), &a, last_seen).unwrap();
    own.last_seen_ns = last_seen;
    assert!(!is_replica(own.last_seen_ns));
    let mut on_a = flow_table::tests::Table::default();
    on_a.0.insert(key, own);
    // A sends it 0.9 ms after its stamp; B decodes it 0.5 ms later.
    let sent = record_at(&a, &own, &key, last_seen + 900_000);
    let mut on_b = flow_table::tests::Table::default();
    let mut counts = FlowCounts::default();
    let mut warnings = LogLimit::new(INSTALL_WARNING_INTERVAL);
    install_flows(
        |_| Install::Replica,
        &[sent],
        &mut on_b,
        &b,
        last_seen + 1_400_000,
        &mut counts,
        &mut warnings,
    );
    let copy = on_b.0[&key];
    assert!(is_replica(copy.last_seen_ns));
    // 3 s later a new session of B dumps its copy; A decodes it 0.5 ms
    // after.
    let dumped_at = last_seen + 3_001_400_000;
    assert!(sends(Topology::FullMesh, Scan::Session, copy.last_seen_ns));
    let echo = record_at(&b, &copy, &key, dumped_at);
    install_flows(
        |_| Install::Replica,
        &[echo],
        &mut on_a,
        &a,
        dumped_at + 500_000,
        &mut counts,
        &mut warnings,
    );
    let after = on_a.0[&key];
    assert!(
        !is_replica(after.last_seen_ns),
        "A's own entry became a copy: {after:?}"
    );
    assert_eq!(after, own, "A's entry stays as it was");
    assert!(sends(
        Topology::FullMesh,
        Scan::Periodic,
        after.last_seen_ns
    ));
    // A copy seen well after A's last packet (the routers moved the flow
    // to a peer) is the peer's news: it goes in.
    let moved = FlowRecord { age_ms: 0, ..echo };
    install_flows(
        |_| Install::Replica,
        &[moved],
        &mut on_a,
        &a,
        last_seen + 2 * S,
        &mut counts,
        &mut warnings,
    );
    assert!(is_replica(on_a.0[&key].last_seen_ns));
}

#[test]
fn topologies_differ_in_who_sends() {
    for master in [true, false] {
        assert!(Topology::FullMesh.sends(master));
        assert_eq!(Topology::VrrpPair.sends(master), master);
    }
}

#[test]
fn a_pair_installs_per_vip_as_its_instance_role_says() {
    // Dual stack with the masters on two nodes: this node is master of
    // the IPv4 instance and backup of the IPv6 one.
    let v4: Vec<IpAddr> = vec!["198.18.0.100".parse().unwrap()];
    let v6: Vec<IpAddr> = vec!["2001:2::100".parse().unwrap()];
    let roles = Roles::new([(v4.as_slice(), true), (v6.as_slice(), false)], true);
    let pair = Topology::VrrpPair;
    assert_eq!(Replication::rule(pair, &roles, v6[0]), Install::Replace);
    assert_eq!(
        Replication::rule(pair, &roles, v4[0]),
        Install::UnlessFresher
    );
    assert_eq!(
        Replication::rule(Topology::FullMesh, &roles, v6[0]),
        Install::Replica
    );

    // A batch for the VIP this node backs up is installed as it comes;
    // one for the VIP it masters never overrides a fresher local entry.
    let b = balancer(&["198.18.0.11", "198.18.0.12"]);
    let now: u64 = 100_000_000_000;
    let mut table = flow_table::tests::Table::default();
    let mut counts = FlowCounts::default();
    let (key, mut local) = entry_for(&flow_record(40_001, "198.18.0.12", 0), &b, now).unwrap();
    local.last_seen_ns = now;
    table.0.insert(key, local);
    let older = flow_record(40_001, "198.18.0.11", 3_000);
    assert_eq!(older.vip, v4[0]);
    install_flows(
        |vip| Replication::rule(pair, &roles, vip),
        &[older],
        &mut table,
        &b,
        now,
        &mut counts,
        &mut LogLimit::new(INSTALL_WARNING_INTERVAL),
    );
    assert_eq!(table.0[&key].backend_id, backend_id(&b, "198.18.0.12"));
    assert_eq!((counts.installed, counts.kept_local), (0, 1));
    // Master of the IPv6 instance, backup of the IPv4 one (the batch's).
    let backup = Roles::new([(v6.as_slice(), true), (v4.as_slice(), false)], true);
    install_flows(
        |vip| Replication::rule(pair, &backup, vip),
        &[older],
        &mut table,
        &b,
        now,
        &mut counts,
        &mut LogLimit::new(INSTALL_WARNING_INTERVAL),
    );
    assert_eq!(table.0[&key].backend_id, backend_id(&b, "198.18.0.11"));
    assert_eq!(counts.installed, 1);
}

/// A pair's master (`lb-a`) connected to a backup listener, and the
/// count of flow records the backup received.
async fn flushing_pair(
    name: &str,
) -> (
    Replication,
    sync::ListenerHandle,
    Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let scratch = ScratchDir::new(&format!("lbr-{name}"));
    let key_file = scratch.join("sync.key");
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    let backup = sync::listen(
        "127.0.0.1:0".parse().unwrap(),
        SyncConfig::new(b"test-key-0123456789abcdef".to_vec(), "lb-b"),
        tx,
        Arc::new(SyncStats::new()),
    )
    .await
    .unwrap();
    let (replication, _incoming) = Replication::start(
        Topology::VrrpPair,
        "127.0.0.1:0".parse().unwrap(),
        &[backup.local_addr()],
        &key_file,
        "lb-a",
    )
    .await
    .unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = received.clone();
    let reader = tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            counter.fetch_add(batch.records.len(), std::sync::atomic::Ordering::Relaxed);
        }
    });
    let start = Instant::now();
    while !replication.connected() {
        assert!(start.elapsed() < Duration::from_secs(8), "no session");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (replication, backup, received, reader)
}

/// The last tick's flows: enough records that the sender is still busy
/// when the flush starts, few enough to be sent well within the flush's
/// limit on a loaded 2-core machine (120,000 took more than 5 s there).
fn last_tick(replication: &Replication) -> usize {
    let n: u16 = 15_000;
    let records: Vec<FlowRecord> = (0..n)
        .map(|port| flow_record(port, "198.18.0.11", 0))
        .collect();
    let planned = walks::Planned {
        scan: Scan::Recent { since: 0 },
        session: false,
        rest: true,
        full: false,
        started_ns: 0,
        started: Instant::now(),
    };
    replication.send_flows(&walks::Split::rest(records.clone()), &planned);
    replication.send_flows(&walks::Split::rest(records), &planned);
    2 * usize::from(n)
}

async fn all_arrive(received: &std::sync::atomic::AtomicUsize, sent: usize, within: Duration) {
    let start = Instant::now();
    while received.load(std::sync::atomic::Ordering::Relaxed) < sent {
        assert!(
            start.elapsed() < within,
            "only {} of {} records arrived",
            received.load(std::sync::atomic::Ordering::Relaxed),
            sent
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_stepping_down_node_flushes_its_last_flows() {
    let (replication, _backup, received, reader) = flushing_pair("flush").await;
    let sent = last_tick(&replication);
    // Stepping down: the replication is dropped right after the flush.
    // The sender's task is not aborted (a socket closed with the peer's
    // heartbeats unread would reset the connection, and the peer's
    // kernel discard what it had not handed over yet): it closes the
    // session once the peer has read everything.
    replication.flush(Duration::from_secs(5)).await;
    drop(replication);
    all_arrive(&received, sent, Duration::from_secs(5)).await;
    reader.abort();
}

#[tokio::test]
async fn a_stopping_node_closes_its_sessions_once_the_peer_has_everything() {
    let (replication, _backup, received, reader) = flushing_pair("close").await;
    let sent = last_tick(&replication);
    // What lbd's stop does: the walks' last flows are still queued when
    // it closes; they are written, then the session is closed, and the
    // close returns once the peer closed its end, i.e. read them all.
    replication.close(Duration::from_secs(5)).await;
    // Read by the backup's session: only its reader task may lag.
    all_arrive(&received, sent, Duration::from_secs(1)).await;
    reader.abort();
}

#[test]
fn the_last_tick_scans_the_nat_table_whatever_the_spacing() {
    let now = Instant::now();
    let later = Some(now + Duration::from_secs(3600));
    assert!(!nat_scan_due(later, false, now), "spaced out");
    assert!(nat_scan_due(later, true, now), "a full sync scans");
    assert!(
        nat_scan_due(Some(now), false, now),
        "once the spacing passed"
    );
    // What `scan_nat_now` leaves for the final tick.
    assert!(nat_scan_due(None, false, now));
}

#[tokio::test]
async fn the_tick_after_a_step_down_still_sends_the_vips_handed_over() {
    let scratch = ScratchDir::new("lbr-stepdown");
    let key_file = scratch.join("sync.key");
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    let start = |topology| {
        Replication::start(
            topology,
            "127.0.0.1:0".parse().unwrap(),
            &[],
            &key_file,
            "lb-a",
        )
    };
    let (mut pair, _rx) = start(Topology::VrrpPair).await.unwrap();
    let (mut mesh, _rx2) = start(Topology::FullMesh).await.unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let v4: Vec<IpAddr> = vec!["198.18.0.100".parse().unwrap()];
    let v6: Vec<IpAddr> = vec!["2001:2::100".parse().unwrap()];
    let roles =
        |m4: bool, m6: bool| Roles::new([(v4.as_slice(), m4), (v6.as_slice(), m6)], m4 || m6);
    // Master of both, twice: plain ticks.
    assert_eq!(pair.roles_for_tick(roles(true, true)), roles(true, true));
    pair.nat_next_scan = Some(Instant::now() + Duration::from_secs(3600));
    assert_eq!(pair.roles_for_tick(roles(true, true)), roles(true, true));
    assert!(pair.nat_next_scan.is_some());
    // The IPv4 instance steps down: this tick still sends it, NAT table
    // scanned whatever the spacing ...
    let last = pair.roles_for_tick(roles(false, true));
    assert!(last.any_master() && last.sends(v4[0]) && last.sends(v6[0]));
    assert!(pair.nat_next_scan.is_none(), "the NAT scan is forced");
    // ... and only this one.
    assert_eq!(pair.roles_for_tick(roles(false, true)), roles(false, true));
    // The other steps down too: its last tick sends it alone.
    let last = pair.roles_for_tick(roles(false, false));
    assert!(last.any_master() && !last.sends(v4[0]) && last.sends(v6[0]));
    assert_eq!(
        pair.roles_for_tick(roles(false, false)),
        roles(false, false)
    );
    // A full mesh streams everything anyway: no extra tick.
    assert_eq!(mesh.roles_for_tick(roles(true, true)), roles(true, true));
    assert_eq!(mesh.roles_for_tick(roles(false, true)), roles(false, true));
}

const S: u64 = 1_000_000_000;

/// Whether some peer is owed a session's dump (the others not), as
/// `Walks::start` asks it; `asked` counts the questions (a question
/// consumes the marks).
fn session(new: bool, asked: &std::cell::Cell<u32>) -> impl FnOnce() -> walks::Due + '_ {
    move || {
        asked.set(asked.get() + 1);
        walks::Due {
            session: new,
            rest: true,
        }
    }
}

#[test]
fn a_tick_while_a_walk_is_in_flight_starts_none_and_the_next_window_covers_it() {
    let t0 = Instant::now();
    let asked = std::cell::Cell::new(0);
    let mut walks = walks::Walks::default();
    // The first walk dumps everything.
    let first = walks.start(session(false, &asked), 10 * S, t0).unwrap();
    assert_eq!((first.scan, first.full), (Scan::Periodic, true));
    assert!(walks.walking());
    assert_eq!(walks.finish(true), Some(first));
    // A long walk starts at 20 s ...
    let t1 = t0 + Duration::from_secs(1);
    let long = walks.start(session(false, &asked), 20 * S, t1).unwrap();
    assert_eq!(
        long.scan,
        Scan::Recent {
            since: 10 * S - nat::SCAN_MARGIN_NS
        }
    );
    // ... ticks while it runs start nothing, and ask no peer.
    assert_eq!(asked.get(), 2);
    for tick in 1..8u32 {
        let at = t1 + Duration::from_millis(250) * tick;
        let at_ns = 20 * S + u64::from(tick) * 250_000_000;
        assert_eq!(walks.start(session(true, &asked), at_ns, at), None);
    }
    assert_eq!(asked.get(), 2, "no session mark consumed while walking");
    walks.finish(true);
    // The next walk's window starts before the long walk's start (not its
    // end, nor the last tick's): every flow touched while it ran is in.
    let next = walks
        .start(session(false, &asked), 22 * S, t1 + Duration::from_secs(2))
        .unwrap();
    assert_eq!(
        next.scan,
        Scan::Recent {
            since: 20 * S - nat::SCAN_MARGIN_NS
        }
    );
    // A finish with nothing in flight changes nothing.
    walks.finish(true);
    assert_eq!(walks.finish(true), None);
}

#[test]
fn a_session_during_a_walk_gets_a_full_dump_from_the_next() {
    let t0 = Instant::now();
    let asked = std::cell::Cell::new(0);
    let mut walks = walks::Walks::default();
    walks.start(session(false, &asked), S, t0).unwrap();
    walks.finish(true);
    let recent = walks.start(session(false, &asked), 2 * S, t0).unwrap();
    assert!(!recent.full);
    // A peer's session starts while the walk runs: its mark stays (the
    // tick does not ask), and the next walk is the session's dump.
    assert!(walks.start(session(true, &asked), 3 * S, t0).is_none());
    walks.finish(true);
    let dump = walks.start(session(true, &asked), 4 * S, t0).unwrap();
    assert_eq!((dump.session, dump.full), (true, true));
    // The other peers get the recent flows only.
    assert_eq!(
        (dump.scan, dump.rest),
        (
            Scan::Recent {
                since: 2 * S - nat::SCAN_MARGIN_NS
            },
            true
        )
    );
    // The dump's walk fails: its peer still owes it (see
    // `Peer::owed_dump`), and the failed walk's window is kept.
    walks.finish(false);
    let again = walks.start(session(true, &asked), 5 * S, t0).unwrap();
    assert_eq!((again.session, again.full), (true, true));
    assert_eq!(again.scan, dump.scan);
    walks.finish(true);
    // A failed periodic dump is owed too; a failed recent walk leaves its
    // window to the next.
    let periodic = walks
        .start(session(false, &asked), 6 * S, t0 + FULL_SYNC_INTERVAL)
        .unwrap();
    assert_eq!(periodic.scan, Scan::Periodic);
    walks.finish(false);
    let owed = walks
        .start(session(false, &asked), 7 * S, t0 + FULL_SYNC_INTERVAL)
        .unwrap();
    assert_eq!(owed.scan, Scan::Periodic);
    walks.finish(true);
    let recent = walks
        .start(session(false, &asked), 8 * S, t0 + FULL_SYNC_INTERVAL)
        .unwrap();
    walks.finish(false);
    let kept = walks
        .start(session(false, &asked), 9 * S, t0 + FULL_SYNC_INTERVAL)
        .unwrap();
    assert_eq!(recent.scan, kept.scan, "the failed walk's window is kept");
    assert_eq!(
        kept.scan,
        Scan::Recent {
            since: 7 * S - nat::SCAN_MARGIN_NS
        }
    );
}

/// A session's dump for some peers is not the others' periodic dump:
/// that stays due on its schedule; a walk whose every peer is owed a
/// session's dump counts as one (each got everything).
#[test]
fn a_session_dump_for_some_peers_leaves_the_periodic_dump_due() {
    let t0 = Instant::now();
    let asked = std::cell::Cell::new(0);
    let mut walks = walks::Walks::default();
    let first = walks.start(session(false, &asked), S, t0).unwrap();
    assert_eq!(first.scan, Scan::Periodic);
    walks.finish(true);
    let dump = walks
        .start(session(true, &asked), 2 * S, t0 + Duration::from_secs(5))
        .unwrap();
    assert!(dump.session && !dump.dumps_all());
    walks.finish(true);
    let t1 = t0 + FULL_SYNC_INTERVAL;
    // Due now, but a walk with a session's dump reads one full set only:
    // the others' periodic dump waits for the next walk.
    let both = walks.start(session(true, &asked), 3 * S, t1).unwrap();
    assert!(both.session && both.rest);
    assert!(matches!(both.scan, Scan::Recent { .. }));
    walks.finish(true);
    let periodic = walks.start(session(false, &asked), 3 * S, t1).unwrap();
    assert_eq!(periodic.scan, Scan::Periodic, "the periodic dump is due");
    walks.finish(true);
    // Every peer owed a session's dump: that is everyone's full dump.
    let all = walks
        .start(
            || walks::Due {
                session: true,
                rest: false,
            },
            4 * S,
            t1 + FULL_SYNC_INTERVAL,
        )
        .unwrap();
    assert!(all.session && !all.rest && all.dumps_all());
    walks.finish(true);
    let next = walks
        .start(
            session(false, &asked),
            5 * S,
            t1 + FULL_SYNC_INTERVAL + Duration::from_secs(1),
        )
        .unwrap();
    assert!(!next.full, "no periodic dump right after everyone's dump");
}

/// A periodic dump is spaced by the last dump's size (see `DUMP_RATE`):
/// after one of the largest table (16 M flows) the next is not due 10 s
/// later, but when that many records take at the rate; a small table
/// still dumps every 10 s, and a new session gets its dump at once.
#[test]
fn periodic_dumps_are_spaced_by_the_last_dumps_size() {
    let t0 = Instant::now();
    let asked = std::cell::Cell::new(0);
    let mut walks = walks::Walks::default();
    let first = walks.start(session(false, &asked), S, t0).unwrap();
    assert!(first.full);
    walks.finish(true);
    let largest = 16_777_216usize;
    walks.dumped(largest);
    let spacing = Duration::from_millis(u64::try_from(largest).unwrap() * 1000 / DUMP_RATE);
    assert_eq!(walks.full_sync_interval(), spacing);
    assert!(spacing > FULL_SYNC_INTERVAL * 10, "{spacing:?}");
    let later = walks
        .start(session(false, &asked), 2 * S, t0 + FULL_SYNC_INTERVAL)
        .unwrap();
    assert!(!later.full, "no dump of 16 M flows 10 s after the last");
    walks.finish(true);
    let before = walks
        .start(
            session(false, &asked),
            3 * S,
            t0 + spacing - Duration::from_secs(1),
        )
        .unwrap();
    assert!(!before.full);
    walks.finish(true);
    let due = walks
        .start(session(false, &asked), 4 * S, t0 + spacing)
        .unwrap();
    assert_eq!((due.scan, due.full), (Scan::Periodic, true));
    walks.finish(true);
    walks.dumped(largest);
    // A new session's dump never waits.
    let session_dump = walks
        .start(
            session(true, &asked),
            5 * S,
            t0 + spacing + Duration::from_secs(1),
        )
        .unwrap();
    assert!(session_dump.session && session_dump.full);
    walks.finish(true);
    // A table of 100,000 flows (and as many NAT'd) still dumps every 10 s.
    walks.dumped(200_000);
    let t1 = t0 + spacing + Duration::from_secs(1);
    let small = walks
        .start(session(false, &asked), 6 * S, t1 + FULL_SYNC_INTERVAL)
        .unwrap();
    assert_eq!(small.scan, Scan::Periodic);
}

/// Tables whose second mapping (in memory) can be taken again, counting
/// how often it was.
struct Remappable {
    tables: walks::SharedTables,
    remaps: std::sync::atomic::AtomicUsize,
}

impl walks::Tables for Remappable {
    fn flows(&self) -> Box<dyn Iterator<Item = (FlowKey, FlowEntry)> + '_> {
        self.tables.flows()
    }

    fn nat_flows(&self) -> Box<dyn Iterator<Item = (FlowKey, lb_common::NatEntry)> + '_> {
        self.tables.nat_flows()
    }

    fn nat_flow(&self, key: &FlowKey) -> Option<lb_common::NatEntry> {
        self.tables.nat_flow(key)
    }

    fn remapped(
        &self,
    ) -> Option<Result<walks::SharedTables, crate::conntrack::table::FlowTableError>> {
        self.remaps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(Ok(Arc::clone(&self.tables)))
    }
}

/// After a walk off the loop failed, walks are made in the loop only
/// until the back-off passes: then the tables are mapped again and walked
/// off the loop (a failure once no longer puts every later walk of a
/// huge table into lbd's loop).
#[test]
fn after_a_failed_walk_the_tables_are_mapped_again_once_the_back_off_passed() {
    use crate::daemon::engine::flow_census::REMAP_BACKOFF;
    let tables = Remappable {
        tables: Arc::new(Counted::with(10)),
        remaps: 0.into(),
    };
    let remaps = || tables.remaps.load(std::sync::atomic::Ordering::Relaxed);
    let b = balancer(&["198.18.0.11"]);
    let input = || walks::WalkInput {
        planned: walks::Planned {
            scan: Scan::Periodic,
            session: false,
            rest: true,
            full: true,
            started_ns: 20 * S,
            started: Instant::now(),
        },
        topology: Topology::FullMesh,
        names: backend_names(&b),
        roles: Roles::new([], true),
        nat: None,
    };
    let mut walker = Walker::new();
    let t0 = Instant::now();
    assert!(matches!(
        walker.walk_for_at(&tables, input(), t0),
        walks::Walk::Off(_)
    ));
    assert_eq!(remaps(), 1);
    walker.failed(t0);
    let inline = walker.walk_for_at(&tables, input(), t0 + Duration::from_secs(1));
    assert!(
        matches!(&inline, walks::Walk::Done(Some(c)) if c.flows.rest.len() == 10),
        "walked in the loop during the back-off"
    );
    assert_eq!(remaps(), 1);
    assert!(
        matches!(
            walker.walk_for_at(&tables, input(), t0 + REMAP_BACKOFF),
            walks::Walk::Off(_)
        ),
        "off the loop again once the back-off passed"
    );
    assert_eq!(remaps(), 2, "mapped again");
}

/// A flow of `client_port` to the backend with `backend_id` of
/// `names`, last seen at `last_seen_ns`.
fn tracked(
    names: &HashMap<u32, (VipId, IpAddr, u32)>,
    backend: &str,
    client_port: u16,
    last_seen_ns: u64,
) -> (FlowKey, FlowEntry) {
    let backend: IpAddr = backend.parse().unwrap();
    let (&id, &(vip, _, generation)) = names.iter().find(|(_, (_, b, _))| *b == backend).unwrap();
    let (dst, family) = addr_words(vip.address);
    let (src, _) = addr_words("198.18.0.10".parse().unwrap());
    let key = FlowKey {
        src,
        dst,
        sport: client_port.to_be(),
        dport: vip.port.to_be(),
        proto: IPPROTO_TCP,
        family,
        _pad: 0,
    };
    let entry = FlowEntry {
        backend_id: id,
        backend_generation: generation,
        last_seen_ns,
        flags: 0,
        hash: 0,
    };
    (key, entry)
}

#[test]
fn a_walk_sends_what_its_scan_and_roles_say_and_stops_when_cancelled() {
    let b = balancer(&["198.18.0.11", "198.18.0.12"]);
    let names = backend_names(&b);
    let flows: Vec<(FlowKey, FlowEntry)> = (0..10_000u16)
        .map(|port| tracked(&names, "198.18.0.11", port, u64::from(port) * S))
        .collect();
    let input = |scan, roles: Roles| walks::WalkInput {
        planned: walks::Planned {
            scan,
            session: false,
            rest: true,
            full: !matches!(scan, Scan::Recent { .. }),
            started_ns: 20_000 * S,
            started: Instant::now(),
        },
        topology: Topology::VrrpPair,
        names: names.clone(),
        roles,
        nat: None,
    };
    let master = Roles::new([], true);
    let not_cancelled = AtomicBool::new(false);
    let all = collect(
        flows.clone(),
        &input(Scan::Periodic, master.clone()),
        &not_cancelled,
    )
    .unwrap()
    .rest;
    assert_eq!(all.len(), flows.len());
    let recent = collect(
        flows.clone(),
        &input(Scan::Recent { since: 9_990 * S }, master.clone()),
        &not_cancelled,
    )
    .unwrap()
    .rest;
    assert_eq!(recent.len(), 10);
    assert!(recent.iter().all(|r| r.client_port >= 9_990));
    // Ages against the walk's start.
    assert_eq!(recent[0].age_ms, 10_010 * 1000);
    // A pair's backup of the VIP sends none of its flows.
    let vip: IpAddr = "198.18.0.100".parse().unwrap();
    let backup = Roles::new([(std::slice::from_ref(&vip), false)], false);
    assert!(collect(
        flows.clone(),
        &input(Scan::Periodic, backup),
        &not_cancelled
    )
    .unwrap()
    .rest
    .is_empty());
    // Cancelled (lbd stops): no records.
    assert!(collect(
        flows,
        &input(Scan::Periodic, master),
        &AtomicBool::new(true)
    )
    .is_none());
}

/// A replication with one peer that never answers (so what is given to
/// it stays queued, countable), and nothing listening for it.
async fn with_silent_peer(name: &str, topology: Topology) -> Replication {
    with_peer_down(name, topology).await.0
}

/// [`with_silent_peer`], and the peer's address (to listen there later).
async fn with_peer_down(name: &str, topology: Topology) -> (Replication, std::net::SocketAddr) {
    let scratch = ScratchDir::new(&format!("lbr-{name}"));
    let key_file = scratch.join("sync.key");
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    // A port nothing listens on: the sender retries, its queue holds.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = free.local_addr().unwrap();
    drop(free);
    let (replication, _incoming) = Replication::start(
        topology,
        "127.0.0.1:0".parse().unwrap(),
        &[peer],
        &key_file,
        "lb-a",
    )
    .await
    .unwrap();
    std::fs::remove_file(&key_file).unwrap();
    (replication, peer)
}

/// A balancer with `nat_record`'s IPv4 VIP in NAT mode (backend
/// 198.19.2.11:8080).
fn nat_balancer() -> Balancer {
    let mut v = VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
    v.forwarding = lb_common::Mode::Nat;
    v.nat = Some(nat::tests::nat_source());
    v.backends = vec![BackendConfig {
        port: Some(8080),
        ..BackendConfig::new("198.19.2.11".parse().unwrap())
    }];
    let mut b = Balancer::new(4);
    b.apply(
        &mut FakeMaps::default(),
        &[DesiredVip::from_config(&v, &|_| None)],
    )
    .unwrap();
    b
}

/// A batch decoded at `received_ns` and installed only later (the
/// receive queue was full) is aged from its arrival: a copy never looks
/// fresher than an entry this node touched while the batch waited.
#[tokio::test]
async fn copies_age_from_their_arrival_not_their_install() {
    let mut replication = with_silent_peer("arrival", Topology::FullMesh).await;
    let roles = Roles::new([], false);
    let now = monotonic_ns();
    let arrived = now.saturating_sub(10_000_000_000);
    let b = balancer(&["198.18.0.11", "198.18.0.12"]);
    let mut table = flow_table::tests::Table::default();
    // This node forwarded the flow to .12 after the copy arrived.
    let (key, mut local) = entry_for(&flow_record(40_002, "198.18.0.12", 0), &b, now).unwrap();
    local.last_seen_ns = now.saturating_sub(5_000_000_000);
    table.0.insert(key, local);
    let new = flow_record(40_003, "198.18.0.11", 250);
    let batch = ReceivedBatch {
        peer: "lb-b".into(),
        version: sync::wire::PROTOCOL_VERSION,
        kind: sync::BatchKind::Flows,
        full_sync: false,
        last: true,
        records: vec![flow_record(40_002, "198.18.0.11", 0), new],
        nat: Vec::new(),
        received_ns: arrived,
    };
    replication.install_flow_records(&batch, &mut table, &b, &roles);
    assert_eq!(table.0[&key], local, "the local entry is fresher");
    assert_eq!(replication.flows.kept_local, 1);
    let (new_key, _) = entry_for(&new, &b, 0).unwrap();
    assert_eq!(
        table.0[&new_key].last_seen_ns,
        mark_replica(arrived - 250_000_000)
    );

    // NAT'd flows the same.
    let nat_b = nat_balancer();
    let record = sync::nat_record::tests::nat_record(2);
    let mut nat_table = nat::tests::Table::default();
    let batch = ReceivedBatch {
        kind: sync::BatchKind::Nat,
        records: Vec::new(),
        nat: vec![record],
        ..batch
    };
    replication.install_nat(&batch, &mut nat_table, &nat_b, &roles);
    let expected = nat::entries_for(&record, &nat_b, arrived).unwrap();
    for (key, entry) in expected {
        assert_eq!(
            nat_table.entries[&key].last_seen_ns,
            mark_replica(entry.last_seen_ns)
        );
    }
}

/// The bytes a connection from `from` to `listener` gets for a master's
/// Hello before the listener closes it (a listener that lets it shake
/// hands answers with its own Hello, then waits for the proof; one that
/// does not closes it at once).
async fn first_bytes(listener: SocketAddr, from: [u8; 4]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut stream = socket.connect(listener).await.unwrap();
    let hello = sync::wire::Message::Hello {
        version: sync::wire::PROTOCOL_VERSION,
        node_id: "lb-c".into(),
        nonce: sync::wire::new_nonce(),
    };
    let frame = sync::wire::encode_frame(&hello.encode().unwrap()).unwrap();
    // Closed at once: the write or the read may fail (a reset).
    let _ = stream.write_all(&frame).await;
    let mut got = vec![0; 8];
    let n = tokio::time::timeout(Duration::from_secs(8), stream.read(&mut got))
        .await
        .unwrap()
        .unwrap_or(0);
    got.truncate(n);
    got
}

/// A node's listener lets only its configured peers shake hands, and
/// its senders connect from its listen address, the one its peers list.
#[tokio::test]
async fn a_nodes_listener_lets_only_its_peers_shake_hands() {
    let scratch = ScratchDir::new("lbr-strangers");
    let key_file = scratch.join("sync.key");
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    let (replication, _incoming) = Replication::start(
        Topology::FullMesh,
        "127.0.0.1:0".parse().unwrap(),
        &["127.0.0.1:9".parse().unwrap()],
        &key_file,
        "lb-a",
    )
    .await
    .unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let listener = replication._listener.local_addr();
    assert!(first_bytes(listener, [127, 0, 0, 2]).await.is_empty());
    assert!(!first_bytes(listener, [127, 0, 0, 1]).await.is_empty());
    assert_eq!(replication.listener_stats.snapshot().refused, 1);

    let listen: SocketAddr = "198.18.0.2:7540".parse().unwrap();
    let peer: SocketAddr = "198.18.0.3:7540".parse().unwrap();
    assert_eq!(
        sender_source(listen, peer),
        Some(SocketAddr::new(listen.ip(), 0))
    );
    let any: SocketAddr = "0.0.0.0:7540".parse().unwrap();
    assert_eq!(sender_source(any, peer), None, "the route picks");
    let v6: SocketAddr = "[2001:2::3]:7540".parse().unwrap();
    assert_eq!(sender_source(listen, v6), None, "another family");
}

/// A link-local listen address carries its interface (`%2`): the sender
/// binds it with that scope, since Linux refuses to bind a link-local
/// address without one (EINVAL) and replication would never start.
#[test]
fn a_link_local_listen_address_gives_the_sender_its_scope() {
    let listen: SocketAddr = "[fe80::1%2]:7000".parse().unwrap();
    let peer: SocketAddr = "[fe80::2%2]:7000".parse().unwrap();
    let Some(SocketAddr::V6(source)) = sender_source(listen, peer) else {
        panic!("an IPv6 source for an IPv6 peer");
    };
    assert_eq!(
        *source.ip(),
        "fe80::1".parse::<std::net::Ipv6Addr>().unwrap()
    );
    assert_eq!(source.scope_id(), 2, "the listen address's interface");
    assert_eq!(source.port(), 0, "the kernel picks the port");
    let global: SocketAddr = "[2001:db8::1]:7000".parse().unwrap();
    let Some(SocketAddr::V6(source)) = sender_source(global, peer) else {
        panic!("an IPv6 source for an IPv6 peer");
    };
    assert_eq!(source.scope_id(), 0, "a global address has no scope");
}

/// A walk's outcome: `flows`, no NAT scan.
fn flows_only(flows: Vec<FlowRecord>) -> walks::Walked {
    Some(walks::Collected {
        flows: walks::Split::rest(flows),
        nat: None,
    })
}

/// Starts a walk off the loop as a tick does (its NAT scan left out).
fn launch(replication: &mut Replication, walk: walks::OffWalk) -> walks::Planned {
    let peers = &mut replication.peers;
    let planned = replication
        .walks
        .start(|| due(peers), monotonic_ns(), Instant::now())
        .unwrap();
    replication.walker.launch(walk);
    planned
}

#[tokio::test]
async fn a_finished_walks_records_are_sent_from_the_loop() {
    let mut replication = with_silent_peer("walk-sent", Topology::FullMesh).await;
    let queued = |r: &Replication| r.peers[0].sender().queued();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let records: Vec<FlowRecord> = (0..3).map(|p| flow_record(p, "198.18.0.11", 0)).collect();
    let walked = records.clone();
    launch(
        &mut replication,
        Box::new(move |_cancel: &AtomicBool| {
            let _ = released.recv();
            flows_only(walked)
        }),
    );
    // While it walks: no tick starts another, nothing is sent.
    assert!(replication.walking());
    assert_eq!(replication.roles_for_walk(Roles::new([], true)), None);
    replication.walk_ended();
    assert_eq!(queued(&replication), 0);
    release.send(()).unwrap();
    // The loop is told, and sends its records.
    let ends = Some(replication.walk_ends());
    walk_ended(&ends).await;
    replication.walk_ended();
    assert!(!replication.walking());
    assert_eq!(
        queued(&replication),
        1,
        "the walk's batch is queued for the peer"
    );
    assert!(replication.roles_for_walk(Roles::new([], true)).is_some());
}

#[tokio::test]
async fn the_last_tick_waits_for_the_walk_in_flight() {
    let mut replication = with_silent_peer("walk-final", Topology::FullMesh).await;
    let (release, released) = std::sync::mpsc::channel::<()>();
    let first = launch(
        &mut replication,
        Box::new(move |_cancel: &AtomicBool| {
            let _ = released.recv();
            flows_only(vec![flow_record(1, "198.18.0.11", 0)])
        }),
    );
    let waited = tokio::spawn(async move {
        replication.wait_walk().await;
        replication
    });
    release.send(()).unwrap();
    let mut replication = waited.await.unwrap();
    assert!(!replication.walking());
    assert_eq!(replication.peers[0].sender().queued(), 1);
    // The final walk comes after it, its window from the walk's start.
    let last = replication
        .walks
        .start(
            || walks::Due {
                session: false,
                rest: true,
            },
            first.started_ns + S,
            Instant::now(),
        )
        .unwrap();
    assert_eq!(
        last.scan,
        Scan::Recent {
            since: first.started_ns.saturating_sub(nat::SCAN_MARGIN_NS)
        }
    );
    // Nothing in flight: nothing waited for.
    replication.walks.finish(true);
    replication.wait_walk().await;
}

#[tokio::test]
async fn a_walk_that_fails_is_owed_and_dropping_replication_cancels_the_walk_in_flight() {
    let mut replication = with_silent_peer("walk-cancel", Topology::FullMesh).await;
    // A walk that panics reports nothing: the loop does not wait forever,
    // and its dump is owed to the next walk.
    let dump = launch(
        &mut replication,
        Box::new(|_cancel: &AtomicBool| panic!("walk failed")),
    );
    assert!(dump.full);
    tokio::time::timeout(Duration::from_secs(30), replication.wait_walk())
        .await
        .expect("a failed walk reports");
    assert!(!replication.walking());
    assert_eq!(replication.peers[0].sender().queued(), 0);
    let (cancelled_tx, cancelled) = std::sync::mpsc::channel::<bool>();
    let again = launch(
        &mut replication,
        Box::new(move |cancel: &AtomicBool| {
            // A walk of a huge table: it ends when cancelled (or, so that
            // the test ends when it fails, after a minute).
            let started = Instant::now();
            while !cancel.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(60)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = cancelled_tx.send(cancel.load(std::sync::atomic::Ordering::Relaxed));
            None
        }),
    );
    assert!(again.full, "the failed dump is owed");
    drop(replication);
    assert_eq!(
        cancelled.recv_timeout(Duration::from_secs(30)),
        Ok(true),
        "the walk in flight saw its cancel"
    );
}

#[tokio::test]
async fn a_step_down_while_a_walk_runs_is_sent_by_the_next_walk() {
    let mut pair = with_silent_peer("walk-stepdown", Topology::VrrpPair).await;
    let v4: Vec<IpAddr> = vec!["198.18.0.100".parse().unwrap()];
    let roles = |master| Roles::new([(v4.as_slice(), master)], master);
    assert_eq!(pair.roles_for_walk(roles(true)), Some(roles(true)));
    launch(
        &mut pair,
        Box::new(|_cancel: &AtomicBool| flows_only(Vec::new())),
    );
    // The instance steps down while the walk runs: no walk starts ...
    assert_eq!(pair.roles_for_walk(roles(false)), None);
    assert_eq!(pair.roles_for_walk(roles(false)), None);
    pair.wait_walk().await;
    // ... and the next still sends the VIP handed over, then no more.
    let last = pair.roles_for_walk(roles(false)).unwrap();
    assert!(last.any_master() && last.sends(v4[0]));
    assert_eq!(pair.roles_for_walk(roles(false)), Some(roles(false)));
}

/// Records of age 0 as sent: the sender adds the time they waited to
/// their ages (a few ms here).
fn unaged(records: Vec<FlowRecord>) -> Vec<FlowRecord> {
    records
        .into_iter()
        .map(|r| FlowRecord { age_ms: 0, ..r })
        .collect()
}

/// The next batch a listener delivers.
async fn recv(rx: &mut mpsc::Receiver<ReceivedBatch>) -> ReceivedBatch {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a batch in time")
        .expect("listener alive")
}

/// A walk that started while a peer was down and ends after the peer's
/// session began read its dump before the session: a mesh's periodic
/// dump leaves out the copies of other nodes' flows (the peer's own among
/// them), so it must not reach the peer as its new session's dump (which
/// opens its BGP gate). It is dropped, and the next walk dumps for the
/// session.
#[tokio::test]
async fn a_dump_read_before_a_peers_session_does_not_reach_it() {
    let (mut replication, peer) = with_peer_down("walk-stale", Topology::FullMesh).await;
    let (release, released) = std::sync::mpsc::channel::<()>();
    let stale = flow_record(1, "198.18.0.11", 0);
    let walked = vec![stale];
    let periodic = launch(
        &mut replication,
        Box::new(move |_cancel: &AtomicBool| {
            let _ = released.recv();
            flows_only(walked)
        }),
    );
    assert_eq!(periodic.scan, Scan::Periodic);

    // The peer comes up while the walk runs.
    let (tx, mut rx) = mpsc::channel(16);
    let config = sync::SyncConfig::new(b"test-key-0123456789abcdef".to_vec(), "lb-b");
    let start = Instant::now();
    let _listener = loop {
        match sync::listen(peer, config.clone(), tx.clone(), Arc::new(SyncStats::new())).await {
            Ok(l) => break l,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(30), "rebinding: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut sessions = replication.peers[0].sender().sessions();
    tokio::time::timeout(Duration::from_secs(30), sessions.wait_for(|&n| n >= 1))
        .await
        .expect("a session in time")
        .unwrap();

    release.send(()).unwrap();
    replication.wait_walk().await;
    // Anything queued before this marker would arrive first.
    let marker = flow_record(2, "198.18.0.11", 0);
    replication.peers[0].sender().send(vec![marker], false);
    let first = recv(&mut rx).await;
    assert_eq!(
        (first.full_sync, unaged(first.records)),
        (false, vec![marker]),
        "the dump read before the session must not arrive"
    );

    // The next walk is the session's dump, and it goes out.
    let fresh = flow_record(3, "198.18.0.11", 0);
    let session = launch(
        &mut replication,
        Box::new(move |_cancel: &AtomicBool| {
            Some(walks::Collected {
                flows: walks::Split {
                    rest: Vec::new().into(),
                    session: Some(vec![fresh].into()),
                },
                nat: None,
            })
        }),
    );
    assert!(session.session && !session.rest, "its one peer's dump");
    replication.wait_walk().await;
    let dump = recv(&mut rx).await;
    assert_eq!(
        (dump.full_sync, dump.last, unaged(dump.records)),
        (true, true, vec![fresh])
    );
}

/// Tables in memory for walks, counting the NAT entries read (and by
/// which thread: lbd's loop, here the test's, or another).
struct Counted {
    flows: Vec<(FlowKey, FlowEntry)>,
    nat: Vec<(FlowKey, lb_common::NatEntry)>,
    nat_by_key: HashMap<FlowKey, lb_common::NatEntry>,
    loop_thread: std::thread::ThreadId,
    nat_read_on_loop: std::sync::atomic::AtomicUsize,
    nat_read: std::sync::atomic::AtomicUsize,
}

impl Counted {
    /// `flows` NAT'd flows (two entries each), a tracked flow each.
    fn with(flows: u32) -> Self {
        let b = balancer(&["198.18.0.11"]);
        let names = backend_names(&b);
        let mut nat = Vec::new();
        let mut tracked_flows = Vec::new();
        for i in 0..flows {
            let client = format!("198.18.{}.{}", 1 + i / 60_000 % 200, 1 + i / 240 % 250);
            let port = u16::try_from(1024 + i % 60_000).unwrap();
            nat.extend(nat::tests::flow(&client, port, port, "198.19.2.11", 5));
            tracked_flows.push(tracked(&names, "198.18.0.11", port, S));
        }
        Self {
            flows: tracked_flows,
            nat_by_key: nat.iter().copied().collect(),
            nat,
            loop_thread: std::thread::current().id(),
            nat_read_on_loop: 0.into(),
            nat_read: 0.into(),
        }
    }

    fn read(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.nat_read_on_loop.load(Relaxed),
            self.nat_read.load(Relaxed),
        )
    }
}

impl walks::Tables for Counted {
    fn flows(&self) -> Box<dyn Iterator<Item = (FlowKey, FlowEntry)> + '_> {
        Box::new(self.flows.iter().copied())
    }

    fn nat_flows(&self) -> Box<dyn Iterator<Item = (FlowKey, lb_common::NatEntry)> + '_> {
        let on_loop = std::thread::current().id() == self.loop_thread;
        Box::new(self.nat.iter().copied().inspect(move |_| {
            use std::sync::atomic::Ordering::Relaxed;
            self.nat_read.fetch_add(1, Relaxed);
            if on_loop {
                self.nat_read_on_loop.fetch_add(1, Relaxed);
            }
        }))
    }

    /// A read by key on lbd's loop counts as a read there too.
    fn nat_flow(&self, key: &FlowKey) -> Option<lb_common::NatEntry> {
        if std::thread::current().id() == self.loop_thread {
            use std::sync::atomic::Ordering::Relaxed;
            self.nat_read_on_loop.fetch_add(1, Relaxed);
        }
        self.nat_by_key.get(key).copied()
    }
}

/// A full dump reads the whole NAT flow table (the default one holds
/// 262,144 entries, the largest 16 M), a periodic one every 10 s and one
/// per new session: read on lbd's loop, it held health events, API calls,
/// BGP and the peers' batches for as long (0.25 s at the default size, 2
/// s at 2 M). A tick reads no NAT entry on the loop, whatever the table's
/// size: the NAT flow table is read with the connection table, off the
/// loop, and its records go out when the walk ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_reads_no_nat_entry_on_lbds_loop_whatever_the_tables_size() {
    let mut replication = with_silent_peer("nat-off-loop", Topology::FullMesh).await;
    let tables = Arc::new(Counted::with(150_000));
    replication.walker = Walker::over(tables.clone());
    let b = balancer(&["198.18.0.11"]);
    let roles = Roles::new([], true);
    // The first walk is a dump: every entry of both tables.
    replication.start_walk_in(&*tables, &b, &roles);
    assert_eq!(tables.read().0, 0, "NAT entries read on the loop");
    replication.wait_walk().await;
    assert_eq!(tables.read(), (0, 300_000));
    let peer = &replication.peers[0];
    assert_eq!(
        peer.sender().queued(),
        2,
        "the flows' and the NAT'd flows' dumps"
    );
    // A later dump (a new session, or every 10 s) too.
    replication.walks = walks::Walks::default();
    replication.start_walk_in(&*tables, &b, &roles);
    assert_eq!(tables.read().0, 0, "NAT entries read on the loop");
    replication.wait_walk().await;
    assert_eq!(tables.read(), (0, 600_000));
    // The marks sent came back with the records: a scan between dumps
    // (forced: the spacing after a long scan is long) finds nothing new.
    replication.scan_nat_now();
    replication.start_walk_in(&*tables, &b, &roles);
    replication.wait_walk().await;
    assert_eq!(tables.read(), (0, 900_000));
    assert_eq!(replication.peers[0].sender().queued(), 2, "nothing new");
    assert!(replication.nat_next_scan.is_some(), "spaced after the scan");
}

/// One walk's records are queued for every peer as one allocation: a
/// full dump of a large table (about 1 GiB of flows at 16 M) is no longer
/// copied on lbd's loop, nor held once per peer while peers are down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_is_one_allocation_shared_by_every_peers_queue() {
    let scratch = ScratchDir::new("lbr-shared");
    let key_file = scratch.join("sync.key");
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    // Three peers nothing listens for: what is given to them stays queued.
    let peers: Vec<SocketAddr> = (0..3)
        .map(|_| {
            let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            free.local_addr().unwrap()
        })
        .collect();
    let (mut replication, _incoming) = Replication::start(
        Topology::FullMesh,
        "127.0.0.1:0".parse().unwrap(),
        &peers,
        &key_file,
        "lb-a",
    )
    .await
    .unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let tables = Arc::new(Counted::with(1_000));
    replication.walker = Walker::over(tables.clone());
    let b = balancer(&["198.18.0.11"]);
    replication.start_walk_in(&*tables, &b, &Roles::new([], true));
    replication.wait_walk().await;
    let queued: Vec<Vec<Arc<[FlowRecord]>>> = replication
        .peers
        .iter()
        .map(|p| p.sender().queued_flows())
        .collect();
    assert!(queued.iter().all(|q| q.len() == 1), "one dump each");
    assert_eq!(queued[0][0].len(), 1_000);
    assert!(
        queued.iter().all(|q| Arc::ptr_eq(&q[0], &queued[0][0])),
        "every peer's queue holds the same records"
    );
}

/// A key file others may read is warned of, naming it, its mode and the
/// fix; one only its owner reads is not.
#[test]
fn a_sync_key_file_others_may_read_is_warned_of() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = ScratchDir::new("key-mode");
    let path = dir.join("sync.key");
    std::fs::write(&path, b"0123456789abcdef0123\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warning = key_file_exposure(&path).expect("0644 is warned of");
    assert!(
        warning.contains("sync.key") && warning.contains("0644") && warning.contains("chmod 600"),
        "{warning}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(key_file_exposure(&path), None);
}

/// A key rotated in place is read only at the next start: a reload says
/// so (the config's path is unchanged, so nothing else would).
#[test]
fn a_reload_tells_of_a_sync_key_file_that_changed() {
    let dir = ScratchDir::new("key-note");
    let path = dir.join("sync.key");
    let running = b"0123456789abcdef0123".to_vec();
    std::fs::write(&path, b"0123456789abcdef0123\n").unwrap();
    assert_eq!(key_file_note(&path, &running, read_key(&path)), None);
    std::fs::write(&path, b"fedcba9876543210fedc\n").unwrap();
    let note = key_file_note(&path, &running, read_key(&path)).expect("rotated");
    assert!(
        note.contains("sync.key changed") && note.contains("restart"),
        "{note}"
    );
    std::fs::write(&path, b"short").unwrap();
    let note = key_file_note(&path, &running, read_key(&path)).expect("too short");
    assert!(
        note.contains("at least 16") && note.contains("keeps the key"),
        "{note}"
    );
    std::fs::remove_file(&path).unwrap();
    let note = key_file_note(&path, &running, read_key(&path)).expect("gone");
    assert!(note.contains("reading sync key"), "{note}");
}

/// An active flow whose stamp has not moved is sent once, not on every
/// 250 ms tick of the touch interval (the data plane re-stamps at most
/// once a second, and the peer takes the unchanged resends as stale);
/// a flow touched while a walk ran is still in the next walk.
#[test]
fn an_unchanged_active_flow_is_sent_once_not_on_every_tick() {
    let t0 = Instant::now();
    let asked = std::cell::Cell::new(0);
    let mut walks = walks::Walks::default();
    let tick = 250_000_000u64;
    // The first walk dumps everything, before the flow's stamp.
    let stamp = 10 * S;
    walks
        .start(session(false, &asked), stamp - tick, t0)
        .unwrap();
    walks.finish(true);
    let mut sent = 0;
    for n in 1..=5u64 {
        let planned = walks
            .start(session(false, &asked), stamp + n * tick, t0)
            .unwrap();
        assert!(!planned.full);
        if sends(Topology::FullMesh, planned.scan, stamp) {
            sent += 1;
        }
        walks.finish(true);
    }
    assert_eq!(sent, 1, "sent once, on the first tick after its stamp");
    // A walk starts at W and reads the flow before a packet re-stamps it
    // at W + 0.1 s: the next walk sends it.
    let w = stamp + 6 * tick;
    let during = walks.start(session(false, &asked), w, t0).unwrap();
    let touched = w + 100_000_000;
    assert!(!sends(Topology::FullMesh, during.scan, stamp));
    walks.finish(true);
    let next = walks.start(session(false, &asked), w + tick, t0).unwrap();
    assert!(sends(Topology::FullMesh, next.scan, touched));
    // The coarse clock that stamps lags a jiffy: a stamp a little before
    // the walk's start is still in the next window.
    assert!(sends(Topology::FullMesh, next.scan, w - 10_000_000));
}

/// A node joins a running mesh without a restart of the others: a
/// reload of `[sync] peers` starts a sender to the new peer and lets it
/// shake hands; a peer removed loses its sender and is refused.
#[tokio::test]
async fn a_reload_of_the_peers_lets_a_new_node_join_and_a_removed_one_go() {
    let scratch = ScratchDir::new("lbr-join");
    let key_file = scratch.join("sync.key");
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    let old: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (mut replication, _incoming) = Replication::start(
        Topology::FullMesh,
        "127.0.0.1:0".parse().unwrap(),
        &[old],
        &key_file,
        "lb-a",
    )
    .await
    .unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let listener = replication._listener.local_addr();
    assert!(first_bytes(listener, [127, 0, 0, 3]).await.is_empty());
    let joining: SocketAddr = "127.0.0.3:9".parse().unwrap();
    let notes = replication.set_peers(&[old, joining]).unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(replication.peer_addresses(), vec![old, joining]);
    assert_eq!(replication.peer_status().len(), 2);
    assert!(
        !first_bytes(listener, [127, 0, 0, 3]).await.is_empty(),
        "the new node shakes hands"
    );
    // The same list again changes nothing.
    assert!(replication.set_peers(&[joining, old]).unwrap().is_empty());
    let notes = replication.set_peers(&[joining]).unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(replication.peer_addresses(), vec![joining]);
    assert!(
        first_bytes(listener, [127, 0, 0, 1]).await.is_empty(),
        "the removed node is refused"
    );
}

/// A replication with `n` peers nothing listens for (what is given to
/// them stays queued, countable).
async fn with_silent_peers(name: &str, n: usize) -> Replication {
    let scratch = ScratchDir::new(&format!("lbr-{name}"));
    let key_file = scratch.join("sync.key");
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let peers: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    drop(listeners);
    let (replication, _incoming) = Replication::start(
        Topology::FullMesh,
        "127.0.0.1:0".parse().unwrap(),
        &peers,
        &key_file,
        "lb-a",
    )
    .await
    .unwrap();
    std::fs::remove_file(&key_file).unwrap();
    replication
}

/// One peer's new session gets that peer the full dump (copies
/// included), not every peer: the others keep their incremental stream.
/// Before, a walk dumped everything to all peers whenever any one had a
/// new session, so each restart in an N-node mesh cost N-1 full tables
/// from every node (O(N²) per restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_peer_with_a_new_session_gets_the_session_dump() {
    let mut replication = with_silent_peers("per-peer-dump", 3).await;
    let b = balancer(&["198.18.0.11"]);
    let names = backend_names(&b);
    let mut tables = Counted::with(0);
    let now = monotonic_ns();
    tables.flows = vec![
        // Active here: stamped after every walk's start.
        tracked(&names, "198.18.0.11", 1, now + 3_600 * S),
        // Idle, this node's own.
        tracked(&names, "198.18.0.11", 2, S),
        // A peer's flow, held as a copy.
        tracked(&names, "198.18.0.11", 3, mark_replica(now)),
    ];
    let tables = Arc::new(tables);
    replication.walker = Walker::over(tables.clone());
    let roles = Roles::new([], true);
    // The first walk is a periodic dump for everyone (no session yet).
    replication.start_walk_in(&*tables, &b, &roles);
    replication.wait_walk().await;
    let dumps = |r: &Replication| -> Vec<Vec<(sync::Dump, usize)>> {
        r.peers.iter().map(|p| p.sender().queued_dumps()).collect()
    };
    for queued in dumps(&replication) {
        assert_eq!(
            queued,
            vec![(sync::Dump::Periodic, 0), (sync::Dump::Periodic, 2)],
            "NAT'd flows' and flows' periodic dumps, without the copy"
        );
    }
    // Peer 1 comes back: its queued dumps go (see `begin_session`).
    replication.peers[1].sender().fake_session();
    // The walk for its dump fails: the dump stays owed, to it only.
    let failed = launch(&mut replication, Box::new(|_cancel: &AtomicBool| None));
    assert!(failed.session && failed.rest);
    replication.wait_walk().await;
    let owed: Vec<bool> = replication.peers.iter().map(Peer::dump_is_owed).collect();
    assert_eq!(owed, [false, true, false]);
    replication.start_walk_in(&*tables, &b, &roles);
    replication.wait_walk().await;
    let queued = dumps(&replication);
    assert_eq!(
        queued[1],
        vec![(sync::Dump::Session, 0), (sync::Dump::Session, 3)],
        "the new session's dump: every flow, the copy too"
    );
    for other in [&queued[0], &queued[2]] {
        assert_eq!(
            other,
            &vec![
                (sync::Dump::Periodic, 0),
                (sync::Dump::Periodic, 2),
                (sync::Dump::Incremental, 1),
            ],
            "the others get the active flow only"
        );
    }
    // The next walk dumps to nobody: the session's dump was paid.
    replication.start_walk_in(&*tables, &b, &roles);
    replication.wait_walk().await;
    let queued = dumps(&replication);
    assert_eq!(queued[1].last(), Some(&(sync::Dump::Incremental, 1)));
    assert_eq!(queued[0].last(), Some(&(sync::Dump::Incremental, 1)));
}
