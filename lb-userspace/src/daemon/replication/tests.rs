use super::records::entry_for;
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

#[tokio::test]
async fn a_stepping_down_node_flushes_its_last_flows() {
    let key_file = std::env::temp_dir().join(format!("lbr-flush-{}.key", std::process::id()));
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    let backup = sync::listen(
        "127.0.0.1:0".parse().unwrap(),
        SyncConfig {
            key: b"test-key-0123456789abcdef".to_vec(),
            node_id: "lb-b".into(),
        },
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
    // The last tick's flows, then stepping down: the sender is dropped
    // (its task aborted) right after the flush. Enough records that the
    // sender is still busy when the flush starts, few enough to be sent
    // well within the flush's limit on a loaded 2-core machine (120,000
    // took more than 5 s there).
    let n: u16 = 15_000;
    let records: Vec<FlowRecord> = (0..n)
        .map(|port| flow_record(port, "198.18.0.11", 0))
        .collect();
    replication.send_all(records.clone(), Vec::new(), false);
    replication.send_all(records, Vec::new(), false);
    replication.flush(Duration::from_secs(5)).await;
    drop(replication);
    let start = Instant::now();
    while received.load(std::sync::atomic::Ordering::Relaxed) < 2 * usize::from(n) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "only {} of {} records arrived",
            received.load(std::sync::atomic::Ordering::Relaxed),
            2 * usize::from(n)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
    let key_file = std::env::temp_dir().join(format!("lbr-stepdown-{}.key", std::process::id()));
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
