//! Installing received flows: a pair's backup takes the master's copy, a
//! full mesh never replaces a fresher local entry (nor an echo of its own
//! flow), a failed write leaves the rest of the batch in, and copies age
//! from their arrival.

use super::*;

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
