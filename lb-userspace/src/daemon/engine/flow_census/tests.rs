use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc as std_mpsc, Arc,
    },
    time::{Duration, Instant},
};

use lb_common::{
    consts::{
        FLOW_F_FIN, FLOW_F_HALF_OPEN, FLOW_F_RST, FLOW_TOUCH_INTERVAL_NS, IPPROTO_TCP, IPPROTO_UDP,
    },
    FlowEntry, FlowKey,
};

use super::{census::CLOSING_QUIET_NS, desk::Desk, off_loop::REMAP_BACKOFF_MAX, runner::Walk, *};
use crate::model::{AdminState, FlowCount, IdleTimeouts};

const MS: Duration = Duration::from_millis(1);

fn census_at(started: Instant, took: Duration) -> Census {
    Census {
        took,
        ..Census::empty(started)
    }
}

#[test]
fn a_read_is_answered_from_a_fresh_census_and_parked_otherwise() {
    let t0 = Instant::now();
    let mut desk: Desk<&str> = Desk::default();
    // No census yet: the read waits, and one is asked for.
    assert!(desk.read(t0, None, "first").is_none());
    assert!(desk.wants_census());
    desk.started(t0);
    assert!(!desk.wants_census(), "one census at a time");
    let answered = desk.finished(Some(census_at(t0, 10 * MS)), None);
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].1, "first");
    // Within FRESH of its start: answered at once, nothing walked.
    let (census, read) = desk.read(t0 + 200 * MS, None, "soon").expect("answered");
    assert_eq!((census.started, read), (t0, "soon"));
    assert!(!desk.wants_census());
    // Past it: parked, and a census is asked for.
    assert!(desk.read(t0 + 300 * MS, None, "later").is_none());
    assert!(desk.wants_census());
}

#[test]
fn one_census_in_flight_answers_the_reads_it_can_and_the_rest_wait_for_the_next() {
    let t0 = Instant::now();
    let mut desk: Desk<u32> = Desk::default();
    assert!(desk.read(t0, None, 1).is_none());
    desk.started(t0);
    // Reads while it walks: none starts another.
    assert!(desk.read(t0 + 100 * MS, None, 2).is_none());
    assert!(desk.read(t0 + 900 * MS, None, 3).is_none());
    assert!(!desk.wants_census());
    assert!(desk.in_flight());
    // It took 1 s: it answers reads up to 2 s after its start.
    let answered: Vec<u32> = desk
        .finished(Some(census_at(t0, 1000 * MS)), None)
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(answered, [1, 2, 3]);
    assert!(!desk.wants_census());
    // The tolerance follows the walk: 2 s now, not FRESH.
    assert!(desk.read(t0 + 1900 * MS, None, 4).is_some());
    assert!(desk.read(t0 + 2100 * MS, None, 5).is_none());
    assert!(desk.wants_census());
}

#[test]
fn a_census_from_before_a_drain_never_answers_for_it() {
    let t0 = Instant::now();
    let drain = t0 + 100 * MS;
    let mut desk: Desk<&str> = Desk::default();
    assert!(desk.read(t0, None, "before").is_none());
    desk.started(t0);
    // The drain began while the census walked; a poll of it came.
    assert!(desk.read(drain + 10 * MS, Some(drain), "poll").is_none());
    let census = census_at(t0, 20 * MS);
    let answered = desk.finished(Some(census), Some(drain));
    assert!(
        answered.is_empty(),
        "the census began before the drain: it answers none"
    );
    assert!(desk.wants_census(), "a census after the drain is asked for");
    let draining = AdminState::Draining {
        since: drain,
        deadline: None,
    };
    // Were it shown, it would be marked as counting (lbctl's drain
    // --wait does not take its zero).
    assert!(!census_at(t0, MS).counts_since(&draining));
    assert!(census_at(t0, MS).counts_since(&AdminState::Enabled));
    // A census that began after the drain answers both.
    desk.started(drain + 20 * MS);
    let after = census_at(drain + 20 * MS, 20 * MS);
    assert!(after.counts_since(&draining));
    let answered: Vec<&str> = desk
        .finished(Some(after), Some(drain))
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(answered, ["before", "poll"]);
    // A fresh census from before the drain is no answer either.
    assert!(desk.read(drain + 30 * MS, None, "any").is_some());
    assert!(desk
        .read(drain + 30 * MS, Some(drain + 25 * MS), "newer drain")
        .is_none());
}

#[test]
fn a_failed_census_frees_the_desk_for_the_next() {
    let t0 = Instant::now();
    let mut desk: Desk<u8> = Desk::default();
    assert!(desk.read(t0, None, 1).is_none());
    desk.started(t0);
    assert!(desk.finished(None, None).is_empty());
    assert!(desk.wants_census(), "the read still waits");
}

fn flow(sport: u16, proto: u8) -> FlowKey {
    FlowKey {
        sport,
        proto,
        ..FlowKey::default()
    }
}

/// A census at `now_ns` of backends at these `(id, generation)`s,
/// with TCP and UDP idle timeouts of 300 s and 30 s.
fn input_at(now_ns: u64, generations: &[(u32, u32)]) -> CensusInput {
    CensusInput {
        started: Instant::now(),
        now_ns,
        generations: generations.iter().copied().collect(),
        timeouts: IdleTimeouts {
            tcp: Duration::from_secs(300),
            udp: Duration::from_secs(30),
        },
        copies_apart: false,
    }
}

fn entry(backend_id: u32, generation: u32, last_seen_ns: u64, flags: u32) -> FlowEntry {
    FlowEntry {
        backend_id,
        backend_generation: generation,
        last_seen_ns,
        flags,
        ..FlowEntry::default()
    }
}

#[test]
fn the_tally_tells_live_closing_idle_and_leftover_flows() {
    let now_ns = 1_000_000_000_000;
    let input = input_at(now_ns, &[(1, 7), (2, 1)]);
    let secs = |s: u64| now_ns - s * 1_000_000_000;
    let flows = [
        (flow(1, IPPROTO_TCP), entry(1, 7, secs(1), 0)),
        (flow(2, IPPROTO_TCP), entry(1, 7, secs(1), FLOW_F_HALF_OPEN)),
        // Closed and quiet past the closing horizon.
        (flow(3, IPPROTO_TCP), entry(1, 7, secs(10), FLOW_F_FIN)),
        (flow(4, IPPROTO_TCP), entry(1, 7, secs(400), 0)),
        // A handshake past the half-open timeout is idle.
        (
            flow(5, IPPROTO_TCP),
            entry(1, 7, secs(200), FLOW_F_HALF_OPEN),
        ),
        (flow(6, IPPROTO_UDP), entry(2, 1, secs(60), 0)),
        (flow(7, IPPROTO_UDP), entry(2, 1, secs(2), 0)),
        // Backend 1 of an earlier generation: a removed one's leftover.
        (flow(8, IPPROTO_TCP), entry(1, 6, secs(1), 0)),
        (flow(9, IPPROTO_TCP), entry(3, 1, secs(1), 0)),
    ];
    let census = tally(flows, &input, &AtomicBool::new(false)).expect("not cancelled");
    assert_eq!(
        census.backend(1, 7),
        FlowCount {
            live: 2,
            closing: 1,
            idle: 2
        }
    );
    assert_eq!(
        census.backend(2, 1),
        FlowCount {
            live: 1,
            closing: 0,
            idle: 1
        }
    );
    assert_eq!(census.backend(1, 6), FlowCount::default());
    // The leftovers (8 and 9) still take their ways: the table counts them.
    assert_eq!((census.entries, census.handshakes), (5, 1));
    assert_eq!(census.started, input.started);
}

/// In a `[sync]` mesh the table also holds the peers' flows, as
/// copies (marked, see `replication::is_peer_copy`): a backend's
/// counts (`lbctl status`, `lbd_backend_flows`, `drain --wait`) are
/// this node's own flows, so a drain on this node waits for no flow
/// another node forwards. The copies still take their ways (the
/// table's live entries count them). A node outside a mesh counts
/// every entry (its own stamps may look marked).
#[test]
fn a_mesh_node_counts_its_own_flows_not_its_peers_copies() {
    let now_ns = 1_000_000_000_000;
    let mut input = input_at(now_ns, &[(1, 7)]);
    let copy = crate::daemon::replication::mark_replica(now_ns - 2_000_000_000);
    let flows = [
        (flow(1, IPPROTO_TCP), entry(1, 7, now_ns - 1_000_000_000, 0)),
        (flow(2, IPPROTO_TCP), entry(1, 7, copy, 0)),
        (flow(3, IPPROTO_TCP), entry(1, 7, copy, 0)),
    ];
    input.copies_apart = true;
    let census = tally(flows, &input, &AtomicBool::new(false)).expect("not cancelled");
    assert_eq!(
        census.backend(1, 7).live,
        1,
        "the peers' copies are not this node's"
    );
    assert_eq!(census.entries, 3, "copies take their ways");
    input.copies_apart = false;
    let census = tally(flows, &input, &AtomicBool::new(false)).expect("not cancelled");
    assert_eq!(census.backend(1, 7).live, 3);
}

/// A flow marked closed (FIN or RST seen) whose packets still come (a
/// client that half-closed, ACKing a long response through the
/// balancer in DSR or a tunnel mode) is live for a drain until it has
/// been quiet past the closing horizon (`CLOSING_QUIET_NS`, plus the touch
/// interval its last-seen time may lag by); then it is closing.
/// Before, the mark alone made it closing, and `drain --wait` ended
/// while it streamed.
#[test]
fn a_closed_flow_still_seen_is_live_until_quiet_past_the_closing_horizon() {
    let now_ns = 1_000_000_000_000;
    let input = input_at(now_ns, &[(1, 7)]);
    let quiet = CLOSING_QUIET_NS + FLOW_TOUCH_INTERVAL_NS;
    let flows = [
        // Half-closed, its ACKs still coming (seen 0.5 s ago).
        (
            flow(1, IPPROTO_TCP),
            entry(1, 7, now_ns - 500_000_000, FLOW_F_FIN),
        ),
        // Reset a moment ago, or seen just within the horizon.
        (
            flow(2, IPPROTO_TCP),
            entry(1, 7, now_ns - quiet, FLOW_F_RST),
        ),
        // Quiet past it: closing.
        (
            flow(3, IPPROTO_TCP),
            entry(1, 7, now_ns - quiet - 1, FLOW_F_FIN),
        ),
        (
            flow(4, IPPROTO_TCP),
            entry(1, 7, now_ns - 60_000_000_000, FLOW_F_FIN | FLOW_F_RST),
        ),
    ];
    let census = tally(flows, &input, &AtomicBool::new(false)).expect("not cancelled");
    assert_eq!(
        census.backend(1, 7),
        FlowCount {
            live: 2,
            closing: 2,
            idle: 0
        }
    );
    assert_eq!((census.entries, census.handshakes), (2, 0));
}

/// After `lbctl vip remove` (or a backend's removal) its flows stay in
/// their ways, ranked live, until they idle out: the table's live
/// entries (what `lbd_conntrack_entries` and the capacity alert read)
/// count them; no backend's flows and no drain do.
#[test]
fn a_removed_backends_live_flows_still_fill_the_table() {
    let now_ns = 1_000_000_000_000;
    // Backend 1 is now generation 2; backend 4 is gone.
    let input = input_at(now_ns, &[(1, 2)]);
    let secs = |s: u64| now_ns - s * 1_000_000_000;
    let flows = [
        (flow(1, IPPROTO_TCP), entry(1, 2, secs(1), 0)),
        // Generation 1 of id 1, and id 4: removed backends' flows.
        (flow(2, IPPROTO_TCP), entry(1, 1, secs(1), 0)),
        (flow(3, IPPROTO_UDP), entry(4, 9, secs(5), 0)),
        (flow(4, IPPROTO_TCP), entry(4, 9, secs(2), FLOW_F_HALF_OPEN)),
        // Over (closed and quiet, idle): they do not count towards full.
        (flow(5, IPPROTO_TCP), entry(4, 9, secs(10), FLOW_F_RST)),
        (flow(6, IPPROTO_UDP), entry(4, 9, secs(60), 0)),
    ];
    let census = tally(flows, &input, &AtomicBool::new(false)).expect("not cancelled");
    assert_eq!((census.entries, census.handshakes), (4, 1));
    assert_eq!(
        census.backend(1, 2),
        FlowCount {
            live: 1,
            closing: 0,
            idle: 0
        }
    );
    assert_eq!(census.backend(1, 1), FlowCount::default());
    assert_eq!(census.backend(4, 9), FlowCount::default());
    assert_eq!(census.by_backend.len(), 1, "{:?}", census.by_backend);
}

/// A SYN the half-open table holds goes to its backend on the
/// client's ACK even while that backend drains: in time, it is one of
/// the backend's live flows (not one of the connection table's).
#[test]
fn handshakes_held_in_the_half_open_table_count_while_in_time() {
    let now_ns = 1_000_000_000_000;
    let input = input_at(now_ns, &[(1, 7)]);
    let secs = |s: u64| now_ns - s * 1_000_000_000;
    let mut census = tally([], &input, &AtomicBool::new(false)).expect("not cancelled");
    let held = [
        (flow(1, IPPROTO_TCP), entry(1, 7, secs(1), FLOW_F_HALF_OPEN)),
        // Past the half-open timeout: the ACK no longer finds it.
        (
            flow(2, IPPROTO_TCP),
            entry(1, 7, secs(60), FLOW_F_HALF_OPEN),
        ),
        // A removed backend's leftover.
        (flow(3, IPPROTO_TCP), entry(1, 6, secs(1), FLOW_F_HALF_OPEN)),
    ];
    assert!(tally_half_open(
        &mut census,
        held,
        &input,
        &AtomicBool::new(false)
    ));
    assert_eq!(
        census.backend(1, 7),
        FlowCount {
            live: 1,
            closing: 0,
            idle: 0
        }
    );
    assert_eq!((census.entries, census.handshakes), (0, 0));
}

#[test]
fn only_reads_of_counts_wait_for_a_census() {
    let get = |path: &[&str]| Request {
        method: Method::Get,
        path: path.iter().map(|s| (*s).to_owned()).collect(),
        query: Default::default(),
        body: serde_json::Value::Null,
    };
    let vip = "198.18.0.100:80/tcp";
    assert!(reads_counts(&get(&["status"])));
    assert!(reads_counts(&get(&["vips"])));
    assert!(reads_counts(&get(&["vips", vip])));
    assert!(reads_counts(&get(&[
        "vips",
        vip,
        "backends",
        "198.18.0.11",
        "flows"
    ])));
    assert!(!reads_counts(&get(&["config"])));
    assert!(!reads_counts(&get(&["no-such-thing"])));
    let mut drain = get(&["vips", vip, "backends", "198.18.0.11", "state"]);
    drain.method = Method::Put;
    assert!(!reads_counts(&drain));
}

/// A walk that blocks until `release` says so (5 s at most), as the
/// walk of a large table does.
fn held_walk(started: Instant, release: std_mpsc::Receiver<()>) -> Walk {
    Walk::Off(Box::new(move |_| {
        let _ = release.recv_timeout(Duration::from_secs(5));
        Some(census_at(started, started.elapsed()))
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_walk_does_not_hold_the_loop_and_answers_the_reads_it_parked() {
    let (mut censuses, mut done) = Censuses::<u32>::new();
    let t0 = Instant::now();
    assert!(censuses.desk.read(t0, None, 1).is_none());
    let (release, held) = std_mpsc::channel();
    let before = Instant::now();
    censuses.launch(t0, held_walk(t0, held));
    // The loop goes on at once: the walk runs elsewhere.
    assert!(
        before.elapsed() < Duration::from_secs(1),
        "launching the census waited for its walk"
    );
    assert!(censuses.desk.in_flight());
    // Another read meanwhile: parked, no second census.
    assert!(censuses.desk.read(Instant::now(), None, 2).is_none());
    assert!(!censuses.desk.wants_census());
    release.send(()).expect("the walk waits");
    let census = tokio::time::timeout(Duration::from_secs(5), done.recv())
        .await
        .expect("the census ends")
        .expect("the channel is open");
    let answered: Vec<u32> = censuses
        .desk
        .finished(census, None)
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(answered, [1, 2]);
}

/// A failed walk off the loop sends walks into the loop for a
/// back-off only: then the tables are mapped again (the back-off
/// doubling while walks keep failing, reset by one that succeeds); a
/// table that cannot be mapped at all stays in the loop.
#[test]
fn a_failed_walk_falls_back_to_the_loop_until_the_back_off_passes() {
    let opened = std::cell::Cell::new(0u32);
    let open = || {
        opened.set(opened.get() + 1);
        Some(Ok::<_, String>(Arc::new(opened.get())))
    };
    let mut source = OffLoop::new("test walks");
    let t0 = Instant::now();
    assert_eq!(source.get(t0, open), Some(Arc::new(1)));
    source.failed(t0);
    assert_eq!(source.get(t0 + MS, open), None, "in the loop meanwhile");
    assert_eq!(source.get(t0 + REMAP_BACKOFF - MS, open), None);
    assert_eq!(opened.get(), 1);
    let t1 = t0 + REMAP_BACKOFF;
    assert_eq!(source.get(t1, open), Some(Arc::new(2)), "mapped again");
    // Failing again: twice as long.
    source.failed(t1);
    assert_eq!(source.get(t1 + REMAP_BACKOFF, open), None);
    let t2 = t1 + REMAP_BACKOFF * 2;
    assert_eq!(source.get(t2, open), Some(Arc::new(3)));
    // A walk that succeeds resets the back-off.
    source.succeeded();
    source.failed(t2);
    assert_eq!(
        source.get(t2 + REMAP_BACKOFF, open),
        Some(Arc::new(4)),
        "back-off reset"
    );
    // Never longer than the maximum.
    let mut t = t2 + REMAP_BACKOFF;
    for _ in 0..20 {
        source.failed(t);
        t += REMAP_BACKOFF_MAX;
        assert!(source.get(t, open).is_some(), "retried within the maximum");
    }
    // No second mapping possible (a kernel map): in the loop for good.
    let mut kernel = OffLoop::<Arc<u32>>::new("test walks");
    let none = || None::<Result<Arc<u32>, String>>;
    assert_eq!(kernel.get(t0, none), None);
    assert_eq!(kernel.get(t0 + REMAP_BACKOFF_MAX * 2, none), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_that_ends_without_a_census_reports_it() {
    let (mut censuses, mut done) = Censuses::<u32>::new();
    let t0 = Instant::now();
    // A walk that panics.
    censuses.launch(t0, Walk::Off(Box::new(|_| panic!("a walk gone wrong"))));
    let report = tokio::time::timeout(Duration::from_secs(5), done.recv())
        .await
        .expect("reported");
    assert!(matches!(report, Some(None)), "{report:?}");
    // A walk cancelled when the loop ends (the runner dropped).
    let (mut censuses, mut done) = Censuses::<u32>::new();
    let (started_tx, started_rx) = std_mpsc::channel();
    censuses.launch(
        t0,
        Walk::Off(Box::new(move |cancel| {
            let _ = started_tx.send(());
            let deadline = Instant::now() + Duration::from_secs(5);
            while !cancel.load(Ordering::Relaxed) && Instant::now() < deadline {
                std::thread::sleep(MS);
            }
            (!cancel.load(Ordering::Relaxed)).then(|| census_at(t0, MS))
        })),
    );
    started_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the walk started");
    drop(censuses);
    let report = tokio::time::timeout(Duration::from_secs(5), done.recv())
        .await
        .expect("reported");
    assert!(matches!(report, Some(None)), "cancelled: {report:?}");
}
