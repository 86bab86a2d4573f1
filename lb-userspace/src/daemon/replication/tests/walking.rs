//! A walk's run: off lbd's loop where the tables can be mapped again (in
//! it otherwise), its records back to the loop, a failed walk owed again,
//! a walk in flight cancelled, and no NAT entry read on the loop.

use super::*;

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
