//! The sending side's tests: which flows a scan or a dump sends, as one
//! record each, and what a scan holds while it reads the table.

use super::*;

/// A walk that dumps for a new session reads, in the same pass, what
/// the peers without one get: the very records a scan of theirs alone
/// gives (recent flows, touched by either entry; a periodic dump
/// without the copies), and every flow for the session.
#[test]
fn a_session_dump_and_the_others_records_come_from_one_pass() {
    use crate::daemon::replication::flow_table::mark_replica;
    let (now, since) = (10_000_000_000, 9_600_000_000);
    let mut entries = many(40);
    // Flow 0 touched forward, flow 1 in reply, flow 2 a copy (both
    // entries marked), flow 3 a copy touched since (its mark stays).
    entries[0].1.last_seen_ns = 9_900_000_000;
    entries[3].1.last_seen_ns = 9_800_000_000;
    for at in [4, 5, 6, 7] {
        entries[at].1.last_seen_ns = mark_replica(entries[at].1.last_seen_ns);
    }
    entries[7].1.last_seen_ns = mark_replica(9_900_000_000);
    let table: HashMap<FlowKey, NatEntry> = entries.iter().copied().collect();
    let lookup = |key: &FlowKey| table.get(key).copied();
    let rule = SendRule::skipping_replicas();
    let sorted = |mut r: Vec<NatFlowRecord>| {
        r.sort_by_key(|r| (r.forward.key.src, r.forward.translated.sport));
        r
    };
    for scan in [Scan::Recent { since }, Scan::Periodic] {
        let alone = nat_records_in(entries.iter().copied(), lookup, scan, now, rule);
        let (rest, all) =
            nat_records_with_dump(entries.iter().copied(), lookup, Some(scan), now, rule);
        assert_eq!(sorted(rest), sorted(alone), "{scan:?}");
        assert_eq!(all.len(), 40, "every flow, copies too");
    }
    let recent = nat_records_in(
        entries.iter().copied(),
        lookup,
        Scan::Recent { since },
        now,
        rule,
    );
    assert_eq!(recent.len(), 2, "the two own flows touched");
    let (none, all) = nat_records_with_dump(entries.iter().copied(), lookup, None, now, rule);
    assert!(none.is_empty());
    assert_eq!(all.len(), 40);
}

/// A NAT scan holds only what it sends, never a copy of the table
/// (which, at the largest table, took gigabytes): over 100,000
/// entries, a scan between dumps that finds 10 flows touched reads
/// their 10 counterparts by key and holds a few KiB at its peak, and
/// so does a full mesh's periodic dump that sends 10 flows (the rest
/// are copies of peers' flows), reading each reply entry by key as
/// its forward entry streams by. A copy of the table is 15 MB.
#[test]
fn a_nat_scan_holds_only_the_flows_it_sends() {
    use crate::daemon::replication::{flow_table::mark_replica, heap_peak::peak_during};
    const HELD_AT_MOST: usize = 64 * 1024;
    let (now, since) = (10_000_000_000, 9_600_000_000);
    let mut entries = many(50_000);
    let mut table: HashMap<FlowKey, NatEntry> = entries.iter().copied().collect();
    let lookups = std::cell::Cell::new(0);
    let rule = SendRule::default();
    let dumped = nat_records_in(
        entries.iter().copied(),
        |key| table.get(key).copied(),
        Scan::Periodic,
        now,
        rule,
    );
    assert_eq!(dumped.len(), 50_000);
    // Five flows touched forward, five in reply.
    for i in 0..10 {
        let at = i * 10_000 + i % 2;
        entries[at].1.last_seen_ns = 9_900_000_000;
        table.insert(entries[at].0, entries[at].1);
    }
    let lookup = |key: &FlowKey| {
        lookups.set(lookups.get() + 1);
        table.get(key).copied()
    };
    let (records, held) = peak_during(|| {
        nat_records_in(
            entries.iter().copied(),
            lookup,
            Scan::Recent { since },
            now,
            rule,
        )
    });
    assert_eq!(records.len(), 10);
    assert!(
        held < HELD_AT_MOST,
        "a scan between dumps held {held} bytes"
    );
    assert_eq!(lookups.get(), 10, "one counterpart read by key a flow");

    // A full mesh: all but 10 flows are peers' copies.
    let mut entries = many(50_000);
    for (at, (_, entry)) in entries.iter_mut().enumerate() {
        if at % 10_000 > 1 {
            entry.last_seen_ns = mark_replica(entry.last_seen_ns);
        }
    }
    let table: HashMap<FlowKey, NatEntry> = entries.iter().copied().collect();
    lookups.set(0);
    let lookup = |key: &FlowKey| {
        lookups.set(lookups.get() + 1);
        table.get(key).copied()
    };
    let rule = SendRule::skipping_replicas();
    let (records, held) =
        peak_during(|| nat_records_in(entries.iter().copied(), lookup, Scan::Periodic, now, rule));
    assert_eq!(records.len(), 10, "the flows forwarded here");
    assert!(held < HELD_AT_MOST, "a periodic dump held {held} bytes");
    assert_eq!(lookups.get(), 50_000, "each reply entry read by key");
}

#[test]
fn a_flow_becomes_one_record_by_addresses_and_ages() {
    let [f, r] = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 5);
    let records = nat_records(
        [f, r].into_iter(),
        Scan::Session,
        10_000_000_000,
        SendRule::default(),
    );
    assert_eq!(records.len(), 1);
    let rec = records[0];
    assert_eq!(
        (rec.vip, rec.vip_port, rec.protocol),
        (ip(VIP), 80, IPPROTO_TCP)
    );
    assert_eq!((rec.backend, rec.backend_port), (ip("198.19.2.11"), 8080));
    assert_eq!(rec.forward.key.src, ip("198.18.1.10"));
    assert_eq!(rec.forward.key.sport, 40000);
    assert_eq!(
        (rec.forward.translated.src, rec.forward.translated.sport),
        (ip(NAT), 20001)
    );
    assert_eq!((rec.reply.key.dst, rec.reply.key.dport), (ip(NAT), 20001));
    assert_eq!(rec.reply.translated.dst, ip("198.18.1.10"));
    assert_eq!((rec.forward.age_ms, rec.reply.age_ms), (1000, 500));
    assert_eq!(
        (rec.forward.flags, rec.reply.flags),
        (NAT_F_SYN, NAT_F_SYN | NAT_F_REPLIED)
    );
}

#[test]
fn unpaired_and_idle_entries_are_not_sent_incrementally() {
    let [f1, r1] = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 5);
    let [f2, _] = flow("198.18.1.11", 40000, 20002, "198.19.2.11", 5);
    let all = [f1, r1, f2];
    let rule = SendRule::default();
    let now = 10_000_000_000;
    assert_eq!(
        nat_records(all.into_iter(), Scan::Session, now, rule).len(),
        1
    );
    // Touched (by the reply) at 9.5 s: recent since 9.4 s, not 9.6 s.
    assert_eq!(
        nat_records(
            all.into_iter(),
            Scan::Recent {
                since: 9_400_000_000
            },
            now,
            rule
        )
        .len(),
        1
    );
    assert!(nat_records(
        all.into_iter(),
        Scan::Recent {
            since: 9_600_000_000
        },
        now,
        rule
    )
    .is_empty());
}

#[test]
fn a_full_mesh_sends_a_peers_copy_only_in_session_dumps_until_touched_here() {
    use crate::daemon::replication::flow_table::mark_replica;
    let [mut f, mut r] = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 5);
    // Installed from a peer: both halves marked, never sent from here.
    f.1.last_seen_ns = mark_replica(f.1.last_seen_ns);
    r.1.last_seen_ns = mark_replica(r.1.last_seen_ns);
    let (since, now) = (8_000_000_000, 10_000_000_000);
    let mesh = SendRule::skipping_replicas();
    assert!(nat_records([f, r].into_iter(), Scan::Recent { since }, now, mesh).is_empty());
    assert_eq!(
        nat_records([f, r].into_iter(), Scan::Session, now, mesh).len(),
        1,
        "a new session's dump carries every flow"
    );
    // A VRRP pair's periodic dump sends it (a pair's backup sends no
    // VIP it is not master for: see `walks::scan_nat`).
    assert_eq!(
        nat_records([f, r].into_iter(), Scan::Periodic, now, SendRule::default()).len(),
        1
    );
    // The routers moved the flow here: the data plane stamps its time.
    r.1.last_seen_ns = 9_900_000_001;
    assert_eq!(
        nat_records([f, r].into_iter(), Scan::Recent { since }, now, mesh).len(),
        1
    );
    assert_eq!(
        nat_records([f, r].into_iter(), Scan::Periodic, now, mesh).len(),
        1,
        "forwarded here: its periodic dump carries it"
    );
}

#[test]
fn a_full_meshs_periodic_dump_leaves_its_peers_copies_out() {
    use crate::daemon::replication::flow_table::mark_replica;
    // A peer's flow installed here (both halves marked) and closed on
    // the peer since (this node's copy lags, as when the RST's record
    // is still on its way), and a flow this node forwards.
    let [mut f, mut r] = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 5);
    f.1.last_seen_ns = mark_replica(f.1.last_seen_ns);
    r.1.last_seen_ns = mark_replica(r.1.last_seen_ns);
    let own = flow("198.18.1.11", 40000, 20002, "198.19.2.11", 5);
    let table = [f, r, own[0], own[1]];
    let now = 10_000_000_000;
    let mesh = SendRule::skipping_replicas();
    let periodic = nat_records(table.into_iter(), Scan::Periodic, now, mesh);
    assert_eq!(periodic.len(), 1, "only its own flow: {periodic:?}");
    assert_eq!(periodic[0].forward.key.src, ip("198.18.1.11"));
    // A copy that is closing is left out as well: what goes back to
    // its node is never an older state of its own flow.
    let mut closing = [f, r];
    closing[0].1.flags |= NAT_F_FIN;
    assert_eq!(
        nat_records(closing.into_iter(), Scan::Periodic, now, mesh).len(),
        0
    );
    // A new session's dump carries both; a pair dumps everything.
    assert_eq!(
        nat_records(table.into_iter(), Scan::Session, now, mesh).len(),
        2
    );
    assert_eq!(
        nat_records(table.into_iter(), Scan::Periodic, now, SendRule::default()).len(),
        2
    );
}

#[test]
fn a_change_of_marks_is_sent_by_the_data_planes_stamp_alone() {
    let [f, r] = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 5);
    let rule = SendRule::default();
    let now = 10_000_000_000;
    // Touched at 9 s (forward) and 9.5 s (reply): recent since 9.4 s.
    let since = 9_400_000_000;
    assert_eq!(
        nat_records([f, r].into_iter(), Scan::Recent { since }, now, rule).len(),
        1
    );
    // Nothing touched since the next scan's start: nothing sent.
    let since = 9_600_000_000;
    assert!(nat_records([f, r].into_iter(), Scan::Recent { since }, now, rule).is_empty());
    // The client's FIN: the data plane stamps the entry as it marks
    // it (`flags::touch`), within the touch interval: sent at once,
    // with its marks.
    let mut closing = f;
    closing.1.flags |= NAT_F_FIN;
    closing.1.last_seen_ns = 9_700_000_000;
    let records = nat_records([closing, r].into_iter(), Scan::Recent { since }, now, rule);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].forward.flags, NAT_F_SYN | NAT_F_FIN);
    assert_eq!(records[0].forward.age_ms, 300);
    // Not again once the scans move past it.
    let since = 9_800_000_000;
    assert!(nat_records([closing, r].into_iter(), Scan::Recent { since }, now, rule).is_empty());
}
