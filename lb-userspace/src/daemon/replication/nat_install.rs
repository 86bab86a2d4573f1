//! Installing a batch's NAT'd flows, one record at a time: a record that
//! cannot be placed, conflicts, or fails to install (table full, buckets
//! busy) is counted by reason and the rest of the batch still goes in.

use std::{
    net::IpAddr,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use tracing::{debug, warn};

use super::{
    flow_table::mark_replica,
    nat::{self, Over, Placed, ReplicaTable},
    records::Install,
};
use crate::{
    conntrack::table::FlowTableError,
    dataplane::DataplaneError,
    reconcile::Balancer,
    sync::{log_limit::LogLimit, NatFlowRecord},
};

/// What became of the NAT'd flow records a node received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct NatCounts {
    /// Installed (both entries each).
    pub(super) installed: u64,
    /// Named a VIP (in NAT mode), backend (address and port) or NAT
    /// address this node lacks.
    pub(super) unknown: u64,
    /// Left out: an entry of another flow of this node holds one of their
    /// keys (both nodes were master and picked the same NAT port).
    pub(super) conflicts: u64,
    /// Left out: the NAT table had no room for them.
    pub(super) table_full: u64,
    /// Left out: installing failed otherwise (buckets busy, a map error).
    pub(super) failed: u64,
}

/// Installs `records` into `table` with this node's ids, each as `rule`
/// says for its VIP (a pair's master for the VIP installs only flows it
/// holds none of); counts what became of each; logs failures at most
/// as often as `warnings` lets through.
#[allow(clippy::too_many_arguments)]
pub(super) fn install_nat_records(
    records: &[NatFlowRecord],
    table: &mut impl ReplicaTable,
    balancer: &Balancer,
    rule: impl Fn(IpAddr) -> Install,
    now: u64,
    counts: &mut NatCounts,
    warnings: &mut LogLimit,
    at: Instant,
) {
    for record in records {
        let mut pair = match nat::entries_for(record, balancer, now) {
            Ok(pair) => pair,
            Err(nat::Unknown::NatAddress) => {
                counts.unknown += 1;
                warn_nat_address(record, at);
                continue;
            }
            Err(why) => {
                counts.unknown += 1;
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
        let rule = rule(record.vip);
        if rule == Install::UnlessFresher && nat::holds_fresher(table, &pair) {
            // This node is master for the VIP and holds the flow, seen at
            // least as recently, or another flow at its port: its own
            // entries are the truth. An older copy of the flow is
            // refreshed below (a FIN the old master saw is taken).
            continue;
        }
        if rule == Install::Replica {
            for (_, entry) in &mut pair {
                entry.last_seen_ns = mark_replica(entry.last_seen_ns);
            }
        }
        let over = match rule {
            Install::Replace => Over::Replace,
            Install::UnlessFresher => Over::Merge,
            Install::Replica => Over::Copy,
        };
        match nat::install_pair_as(table, &pair, over) {
            Ok(Placed::Installed) => counts.installed += 1,
            Ok(Placed::Replaced) => {
                counts.installed += 1;
                debug!(
                    client = %record.forward.key.src,
                    client_port = record.forward.key.sport,
                    nat = %record.forward.translated.src,
                    nat_port = record.forward.translated.sport,
                    "replicated NAT flow installed in place of an ended flow of this node that held its key (the master reused the port)"
                );
            }
            Ok(Placed::Conflict) => {
                counts.conflicts += 1;
                debug!(
                    client = %record.forward.key.src,
                    client_port = record.forward.key.sport,
                    nat = %record.forward.translated.src,
                    nat_port = record.forward.translated.sport,
                    "replicated NAT flow skipped: another flow of this node holds its key"
                );
            }
            Err(error) => {
                let reason = if is_full(&error) {
                    counts.table_full += 1;
                    "table_full"
                } else {
                    counts.failed += 1;
                    "error"
                };
                if let Some(suppressed) = warnings.allow(at) {
                    warn!(%error, reason, suppressed, "installing a replicated NAT flow failed; it is left out (lbd_replication_nat_flows_skipped_total{{reason}}), the rest of the batch goes on");
                }
            }
        }
    }
}

/// At most one warning a minute for records under a NAT address this
/// node lacks: a peer sends them on every tick while the configs differ.
static NAT_ADDRESS_WARNINGS: Mutex<LogLimit> = Mutex::new(LogLimit::new(Duration::from_secs(60)));

/// Logs a record refused for its NAT address (`nat::Unknown::NatAddress`)
/// at warn, at most as often as [`NAT_ADDRESS_WARNINGS`] lets through,
/// every one at debug: a failover would break such flows, and only this
/// line and the `unknown` count say so.
fn warn_nat_address(record: &NatFlowRecord, at: Instant) {
    let allowed = NAT_ADDRESS_WARNINGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .allow(at);
    if let Some(suppressed) = allowed {
        warn!(
            nat = %record.forward.translated.src,
            vip = %record.vip,
            vip_port = record.vip_port,
            suppressed,
            "a peer's replicated NAT flow uses a NAT address that is none of this node's NAT sources ([nat] source_ipv4/source_ipv6, nat_source): refused (lbd_replication_nat_flows_skipped_total{{reason=\"unknown\"}}); the backends' replies would not reach this node after a failover, so check that the nodes' NAT addresses match"
        );
    } else {
        debug!(nat = %record.forward.translated.src, vip = %record.vip, "replicated NAT flow refused: its NAT address is not this node's");
    }
}

/// Whether `error` says the NAT table has no room for the flow.
fn is_full(error: &DataplaneError) -> bool {
    matches!(error, DataplaneError::FlowTable(e) if matches!(**e, FlowTableError::Full(_)))
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, time::Duration};

    use lb_common::{
        consts::{NAT_F_RST, NAT_F_SYN},
        Mode,
    };

    use super::*;
    use crate::{
        config::{BackendConfig, Protocol, VipConfig},
        daemon::replication::nat::tests::Table,
        dataplane::FakeMaps,
        reconcile::DesiredVip,
        sync::nat_record::tests::nat_record,
    };

    fn full() -> DataplaneError {
        DataplaneError::FlowTable(Box::new(FlowTableError::Full("NAT flow table")))
    }

    fn busy() -> DataplaneError {
        DataplaneError::FlowTable(Box::new(FlowTableError::Contended("NAT flow table")))
    }

    /// The VIP and backend of `nat_record`'s IPv4 TCP flows, in NAT mode.
    fn balancer() -> Balancer {
        let mut v = VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
        v.forwarding = Mode::Nat;
        v.nat = Some(crate::config::VipNat {
            source: "198.18.0.50".parse().unwrap(),
            own_source: false,
            port_min: 1024,
            port_max: 65_535,
        });
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

    #[test]
    fn a_failed_install_skips_that_flow_only_and_leaves_no_half() {
        // Four IPv4 TCP flows; the second's reply entry finds the table
        // full, the third's forward entry finds its buckets busy.
        let records: Vec<NatFlowRecord> = [2, 4, 8, 10].map(nat_record).to_vec();
        let mut table = Table {
            entries: HashMap::new(),
            fail_at: vec![(4, full), (5, busy)],
            ..Table::default()
        };
        let mut counts = NatCounts::default();
        let mut warnings = LogLimit::new(Duration::from_secs(10));
        install_nat_records(
            &records,
            &mut table,
            &balancer(),
            |_| Install::Replace,
            100_000_000_000,
            &mut counts,
            &mut warnings,
            Instant::now(),
        );
        assert_eq!(
            counts,
            NatCounts {
                installed: 2,
                table_full: 1,
                failed: 1,
                ..NatCounts::default()
            }
        );
        // Two whole flows, no orphaned forward entry of the second.
        assert_eq!(table.entries.len(), 4);
        let orphan = nat::entries_for(&records[1], &balancer(), 100_000_000_000).unwrap();
        assert!(!table.entries.contains_key(&orphan[0].0));
        let last = nat::entries_for(&records[3], &balancer(), 100_000_000_000).unwrap();
        assert!(last.iter().all(|(k, _)| table.entries.contains_key(k)));
    }

    /// A peer whose NAT address for the VIP is not this node's (configs
    /// that differ): its flows' replies would go to an address this node
    /// does not translate, so they are refused and counted, not installed.
    #[test]
    fn a_flow_under_a_nat_address_this_node_lacks_is_refused() {
        let mut record = nat_record(2);
        let other: IpAddr = "198.18.0.51".parse().unwrap();
        record.forward.translated.src = other;
        record.reply.key.dst = other;
        for rule in [Install::Replace, Install::Replica, Install::UnlessFresher] {
            let mut table = Table::default();
            let mut counts = NatCounts::default();
            install_nat_records(
                &[record],
                &mut table,
                &balancer(),
                |_| rule,
                100_000_000_000,
                &mut counts,
                &mut LogLimit::new(Duration::from_secs(10)),
                Instant::now(),
            );
            assert_eq!(
                counts,
                NatCounts {
                    unknown: 1,
                    ..NatCounts::default()
                },
                "{rule:?}"
            );
            assert!(table.entries.is_empty(), "{rule:?}");
        }
    }

    #[test]
    fn a_master_for_the_vip_keeps_its_own_nat_flow() {
        let records = vec![nat_record(2)];
        let b = balancer();
        let mut table = Table {
            entries: HashMap::new(),
            fail_at: Vec::new(),
            ..Table::default()
        };
        let mut own = nat::entries_for(&records[0], &b, 100_000_000_000).unwrap();
        own[0].1.flags = 0x7;
        table.entries.extend(own);
        let mut counts = NatCounts::default();
        let mut warnings = LogLimit::new(Duration::from_secs(10));
        install_nat_records(
            &records,
            &mut table,
            &b,
            |_| Install::UnlessFresher,
            100_000_000_000,
            &mut counts,
            &mut warnings,
            Instant::now(),
        );
        assert_eq!(table.entries[&own[0].0].flags, 0x7, "its own entry kept");
        assert_eq!(counts, NatCounts::default());
    }

    /// Under `UnlessFresher`, a record `record_age_ms` old carrying FIN
    /// meets this node's copy of the same flow (flags 0) last seen
    /// `local_age_ms` ago; returns the forward entry's flags afterwards
    /// and the counts.
    fn fin_against_local_copy(record_age_ms: u32, local_age_ms: u32) -> (u8, NatCounts) {
        const NOW: u64 = 100_000_000_000;
        const FIN: u8 = 0x1;
        let mut record = nat_record(2);
        record.forward.flags = FIN;
        record.forward.age_ms = record_age_ms;
        record.reply.age_ms = record_age_ms;
        let b = balancer();
        let mut local = record;
        local.forward.flags = 0;
        local.reply.flags = 0;
        local.forward.age_ms = local_age_ms;
        local.reply.age_ms = local_age_ms;
        let own = nat::entries_for(&local, &b, NOW).unwrap();
        let mut table = Table {
            entries: own.into_iter().collect(),
            fail_at: Vec::new(),
            ..Table::default()
        };
        let mut counts = NatCounts::default();
        let mut warnings = LogLimit::new(Duration::from_secs(10));
        install_nat_records(
            &[record],
            &mut table,
            &b,
            |_| Install::UnlessFresher,
            NOW,
            &mut counts,
            &mut warnings,
            Instant::now(),
        );
        (table.entries[&own[0].0].flags, counts)
    }

    #[test]
    fn a_master_takes_a_newer_fin_of_a_flow_it_holds_an_older_copy_of() {
        // The old master saw the FIN 1 s ago; this node last saw the flow
        // 5 s ago.
        let (flags, counts) = fin_against_local_copy(1_000, 5_000);
        assert_eq!(flags, 0x1, "the FIN is taken");
        assert_eq!(counts.installed, 1);
    }

    #[test]
    fn a_master_keeps_its_fresher_copy_of_a_flow() {
        // This node saw the flow 1 s ago, after what the record says.
        let (flags, counts) = fin_against_local_copy(5_000, 1_000);
        assert_eq!(flags, 0, "its own fresher entry kept");
        assert_eq!(counts, NatCounts::default());
    }

    /// Flow 2's record (forward flags SYN, no close mark) `record_age_ms`
    /// old meets this node's entries of the same flow, last seen
    /// `local_age_ms` ago, whose forward entry this node's data plane
    /// marked RST; installed under `rule`. Returns the forward entry's
    /// flags and `last_seen_ns` afterwards, and the counts.
    fn record_over_local_rst(
        rule: Install,
        record_age_ms: u32,
        local_age_ms: u32,
    ) -> (u8, u64, NatCounts) {
        const NOW: u64 = 100_000_000_000;
        let mut record = nat_record(2);
        record.forward.flags = NAT_F_SYN;
        record.forward.age_ms = record_age_ms;
        record.reply.age_ms = record_age_ms;
        let b = balancer();
        let mut local = record;
        local.forward.flags = NAT_F_SYN | NAT_F_RST;
        local.forward.age_ms = local_age_ms;
        local.reply.age_ms = local_age_ms;
        let own = nat::entries_for(&local, &b, NOW).unwrap();
        let mut table = Table {
            entries: own.into_iter().collect(),
            ..Table::default()
        };
        let mut counts = NatCounts::default();
        let mut warnings = LogLimit::new(Duration::from_secs(10));
        install_nat_records(
            &[record],
            &mut table,
            &b,
            |_| rule,
            NOW,
            &mut counts,
            &mut warnings,
            Instant::now(),
        );
        let forward = table.entries[&own[0].0];
        (forward.flags, forward.last_seen_ns, counts)
    }

    #[test]
    fn a_mesh_copy_never_clears_a_newer_local_rst_or_replaces_the_fresher_entry() {
        const NOW: u64 = 100_000_000_000;
        // This node forwards the flow and saw the RST; a peer's copy from
        // before it (5 s old) arrives: the local entry stands.
        let (flags, last_seen, _) = record_over_local_rst(Install::Replica, 5_000, 1_000);
        assert_eq!(flags, NAT_F_SYN | NAT_F_RST, "the RST is kept");
        assert_eq!(last_seen, NOW - 1_000_000_000, "the fresher entry wins");
    }

    #[test]
    fn a_copy_a_little_fresher_than_a_local_rst_keeps_the_rst() {
        // The RST was marked without a touch (at most every second); the
        // peer's copy of this node's flow comes back 1 ms "fresher" (ages
        // are rounded to milliseconds): the RST stays. A pair's master
        // takes the copy's time; a mesh node keeps its own entry (an echo
        // never makes it a copy).
        for (rule, time) in [
            (Install::Replica, 99_000_000_000),
            (Install::UnlessFresher, 99_001_000_000),
        ] {
            let (flags, last_seen, counts) = record_over_local_rst(rule, 999, 1_000);
            assert_eq!(flags, NAT_F_SYN | NAT_F_RST, "{rule:?}");
            assert!(last_seen.abs_diff(time) <= 0xffff, "{rule:?}");
            assert_eq!(counts.installed, 1);
        }
    }

    /// A full mesh's echo of this node's own NAT'd flow (a peer's copy
    /// dumped back for a new session) looks a few ms fresher than the
    /// entries it came from (ages floored, stamped after transit): both
    /// entries stay this node's, unmarked, so its dumps still carry them.
    #[test]
    fn a_mesh_echo_never_turns_this_nodes_nat_flow_into_a_copy() {
        use super::super::flow_table::is_replica;
        const NOW: u64 = 100_000_000_000;
        let b = balancer();
        let mut own_record = nat_record(2);
        own_record.forward.age_ms = 3_000;
        own_record.reply.age_ms = 3_000;
        let own = nat::entries_for(&own_record, &b, NOW).unwrap();
        assert!(own.iter().all(|(_, e)| !is_replica(e.last_seen_ns)));
        let mut table = Table {
            entries: own.into_iter().collect(),
            ..Table::default()
        };
        let mut echo = own_record;
        echo.forward.age_ms = 2_997;
        echo.reply.age_ms = 2_997;
        let mut counts = NatCounts::default();
        install_nat_records(
            &[echo],
            &mut table,
            &b,
            |_| Install::Replica,
            NOW,
            &mut counts,
            &mut LogLimit::new(Duration::from_secs(10)),
            Instant::now(),
        );
        for (key, entry) in own {
            assert_eq!(
                table.entries[&key], entry,
                "this node's entry stays as it was"
            );
        }
        // A copy seen well after (the peer forwards the flow now) is taken.
        echo.forward.age_ms = 1_000;
        echo.reply.age_ms = 1_000;
        install_nat_records(
            &[echo],
            &mut table,
            &b,
            |_| Install::Replica,
            NOW,
            &mut counts,
            &mut LogLimit::new(Duration::from_secs(10)),
            Instant::now(),
        );
        assert!(own
            .iter()
            .all(|(k, _)| is_replica(table.entries[k].last_seen_ns)));
    }

    /// Full mesh, one NAT address on every node: this node forwarded the
    /// client's SYN (its reply entry unanswered), the backend's SYN-ACK
    /// reached a peer, whose copy comes back a few ms fresher. It is no
    /// echo: the reply entry takes the peer's REPLIED (else the reaper
    /// frees an idle established connection at the SYN timeout) and
    /// becomes the peer's copy; the forward entry, which the peer's copy
    /// only echoes, stays this node's.
    #[test]
    fn a_mesh_copy_a_little_fresher_brings_the_reply_a_peer_saw() {
        use super::super::flow_table::is_replica;
        use lb_common::consts::NAT_F_REPLIED;
        const NOW: u64 = 100_000_000_000;
        let b = balancer();
        let mut own_record = nat_record(2);
        own_record.forward.flags = NAT_F_SYN;
        own_record.reply.flags = 0;
        own_record.forward.age_ms = 3_000;
        own_record.reply.age_ms = 3_000;
        let own = nat::entries_for(&own_record, &b, NOW).unwrap();
        let mut table = Table {
            entries: own.into_iter().collect(),
            ..Table::default()
        };
        let mut copy = own_record;
        copy.reply.flags = NAT_F_SYN | NAT_F_REPLIED;
        copy.reply.age_ms = 2_997;
        let mut counts = NatCounts::default();
        install_nat_records(
            &[copy],
            &mut table,
            &b,
            |_| Install::Replica,
            NOW,
            &mut counts,
            &mut LogLimit::new(Duration::from_secs(10)),
            Instant::now(),
        );
        let [(forward_key, forward), (reply_key, _)] = own;
        let reply = table.entries[&reply_key];
        assert_eq!(reply.flags & NAT_F_REPLIED, NAT_F_REPLIED, "REPLIED taken");
        assert!(is_replica(reply.last_seen_ns), "the peer's entry now");
        assert_eq!(table.entries[&forward_key], forward, "an echo stays");
        assert_eq!(counts.installed, 1);
    }

    #[test]
    fn a_copy_seen_well_after_a_local_rst_is_the_truth() {
        // The peer forwarded the flow 3 s after this node last did (a new
        // connection reusing the translation: its SYN starts afresh).
        let (flags, _, counts) = record_over_local_rst(Install::Replica, 1_000, 4_000);
        assert_eq!(flags, NAT_F_SYN);
        assert_eq!(counts.installed, 1);
    }

    /// The master's flow F2 (client .77, NAT port p) and the backup's
    /// stale F1 (client of `nat_record(2)`, the same NAT port p to the same
    /// backend: the same reply key), F1's entries in the table; F2
    /// installed under `rule`.
    fn reused_port(rule: Install) -> (Table, nat::NatPair, nat::NatPair, NatCounts) {
        const NOW: u64 = 100_000_000_000;
        let b = balancer();
        let mut f1 = nat_record(2);
        f1.forward.age_ms = 30_000;
        f1.reply.age_ms = 30_000;
        let mut f2 = nat_record(2);
        let client2: IpAddr = "198.18.1.77".parse().unwrap();
        f2.forward.key.src = client2;
        f2.forward.key.sport = 51_000;
        f2.reply.translated.dst = client2;
        f2.reply.translated.dport = 51_000;
        f2.forward.age_ms = 10;
        f2.reply.age_ms = 10;
        let old = nat::entries_for(&f1, &b, NOW).unwrap();
        let new = nat::entries_for(&f2, &b, NOW).unwrap();
        assert_eq!(old[1].0, new[1].0, "one reply key");
        assert_ne!(old[0].0, new[0].0);
        let mut table = Table {
            entries: old.into_iter().collect(),
            ..Table::default()
        };
        let mut counts = NatCounts::default();
        let mut warnings = LogLimit::new(Duration::from_secs(10));
        install_nat_records(
            &[f2],
            &mut table,
            &b,
            |_| rule,
            NOW,
            &mut counts,
            &mut warnings,
            Instant::now(),
        );
        (table, old, new, counts)
    }

    #[test]
    fn a_backup_takes_the_masters_flow_over_a_stale_one_on_a_reused_port() {
        let (table, old, new, counts) = reused_port(Install::Replace);
        assert_eq!(
            counts,
            NatCounts {
                installed: 1,
                ..NatCounts::default()
            }
        );
        assert_eq!(table.entries.len(), 2, "{:?}", table.entries);
        assert!(
            !table.entries.contains_key(&old[0].0),
            "F1's forward entry gone"
        );
        let reply = table.entries[&new[1].0];
        assert_eq!(
            (reply.dst, reply.dport),
            (new[1].1.dst, new[1].1.dport),
            "replies go to F2's client"
        );
        assert_eq!(table.entries[&new[0].0], new[0].1);
    }

    #[test]
    fn a_master_or_mesh_node_keeps_its_own_flow_on_a_contested_port() {
        for rule in [Install::Replica, Install::UnlessFresher] {
            let (table, old, _, counts) = reused_port(rule);
            assert_eq!(table.entries.len(), 2);
            assert_eq!(table.entries[&old[0].0], old[0].1, "{rule:?}");
            assert_eq!(table.entries[&old[1].0], old[1].1, "{rule:?}");
            let expected = if rule == Install::Replica { 1 } else { 0 };
            assert_eq!(counts.conflicts, expected, "{rule:?}");
        }
    }
}
