//! Full syncs (dumps) around a session's start: stale ones dropped, a
//! periodic one never replacing a queued session dump.
use super::*;

/// A full sync queued while the peer is down was read before the
/// session: delivered first, the peer would count it as the new
/// session's dump (its BGP and preemption gates open on that), though a
/// mesh's periodic dump leaves out copies the session's dump carries.
/// The session starts without it; incremental batches still go.
#[tokio::test]
async fn full_syncs_queued_before_a_session_are_dropped_at_its_start() {
    let free = std::net::TcpListener::bind(local()).unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let master = Arc::new(SyncStats::new());
    let sender = Sender::start_with(addr, config("lb-a", KEY), master.clone(), fast()).unwrap();
    // The peer is down: everything waits in the queue.
    sender.send(vec![record(1)], true);
    sender.send(vec![record(2)], false);
    sender.send_nat(vec![nat_record(3)], true);
    sender.send_nat(vec![nat_record(4)], false);
    assert_eq!(sender.queued(), 4);
    assert!(!sender.connected());

    let (tx, mut rx) = mpsc::channel(16);
    let _listener = listen_again(addr, tx, Arc::new(SyncStats::new())).await;
    wait_for_session(&sender, 1).await;
    // After the session began: a dump read before it (a walk that started
    // while the peer was down) is dropped too; one read during it goes.
    let flows_sent: Vec<FlowRecord> = (1..=8).map(record).collect();
    let nats_sent: Vec<NatFlowRecord> = (1..=9).map(nat_record).collect();
    sender.send_read(vec![record(5)].into(), read(Dump::Session, 0));
    sender.send_nat_read(vec![nat_record(6)].into(), read(Dump::Session, 0));
    sender.send_read(vec![record(7)].into(), read(Dump::Incremental, 0));
    let mut got = Vec::new();
    for _ in 0..3 {
        let b = recv(&mut rx).await;
        got.push((
            b.kind,
            b.full_sync,
            as_one_of(b.records, &flows_sent),
            as_one_of(b.nat, &nats_sent),
        ));
    }
    // (Sent only now: a full sync supersedes queued batches of its kind.)
    sender.send_read(vec![record(8)].into(), read(Dump::Session, 1));
    sender.send_nat(vec![nat_record(9)], true);
    for _ in 0..2 {
        let b = recv(&mut rx).await;
        got.push((
            b.kind,
            b.full_sync,
            as_one_of(b.records, &flows_sent),
            as_one_of(b.nat, &nats_sent),
        ));
    }
    assert_eq!(
        got,
        [
            (BatchKind::Flows, false, vec![record(2)], vec![]),
            (BatchKind::Nat, false, vec![], vec![nat_record(4)]),
            (BatchKind::Flows, false, vec![record(7)], vec![]),
            (BatchKind::Flows, true, vec![record(8)], vec![]),
            (BatchKind::Nat, true, vec![], vec![nat_record(9)]),
        ]
    );
    assert_quiet(&mut rx, Duration::from_millis(200)).await;
    assert_eq!(master.snapshot().dropped_batches, 4);
}

/// The queue's side of the rule above: a session start drops every
/// queued full sync (flows and NAT) and keeps the incremental batches; a
/// full sync read in an earlier session is refused when pushed or put
/// back, one read in the current session is not.
#[test]
fn a_session_start_drops_stale_full_syncs_only() {
    let (q, stats) = queue(16, 1000);
    q.push(flows(true, 1, 1));
    q.push(flows(false, 2, 1));
    q.push(nats(true, 3));
    q.push(nats(false, 4));
    assert_eq!(q.begin_session(), 1);
    assert_eq!(order(&q), [(false, 2), (false, 4)]);
    assert_eq!(stats.snapshot().dropped_batches, 2);

    let read_in = |mut b: QueuedBatch, session| {
        b.read_in = Some(session);
        b
    };
    q.push(read_in(flows(true, 5, 1), 0));
    q.push(read_in(nats(true, 6), 0));
    q.requeue(read_in(flows(true, 7, 1), 0));
    q.push(read_in(flows(false, 8, 1), 0));
    assert_eq!(order(&q), [(false, 2), (false, 4), (false, 8)]);
    assert_eq!(stats.snapshot().dropped_batches, 5);
    q.push(read_in(nats(true, 9), 1));
    q.push(flows(true, 10, 1));
    // Each full sync supersedes the older batches of its kind.
    assert_eq!(order(&q), [(true, 9), (true, 10)]);
    assert_eq!(q.begin_session(), 2);
    assert!(order(&q).is_empty());
}

/// A periodic dump (a full mesh's leaves out the copies of other nodes'
/// flows) read in session `session`.
fn periodic(mut b: QueuedBatch, session: u64) -> QueuedBatch {
    b.complete = false;
    b.read_in = Some(session);
    b
}

/// A new session's dump waiting in the queue (a slow peer, a large
/// mesh) when the periodic dump is queued: the periodic one must not
/// take its place, or the peer would count a dump without the copies of
/// other nodes' flows as its session's dump (its BGP announcement and
/// preemption hold open on that). The periodic dump is dropped instead;
/// the session's dump goes out, then the batches queued after it.
#[test]
fn a_periodic_dump_never_replaces_a_queued_session_dump() {
    let (q, stats) = queue(16, 1000);
    let session = q.begin_session();
    let mut dump = flows(true, 1, 3);
    dump.read_in = Some(session);
    q.push(dump);
    q.push(nats(true, 2));
    q.push(flows(false, 3, 1));
    q.push(periodic(flows(true, 4, 2), session));
    q.push(periodic(nats(true, 5), session));
    assert_eq!(order(&q), [(true, 1), (true, 2), (false, 3)]);
    assert_eq!(stats.snapshot().dropped_batches, 2);
    let first = q.pop().unwrap();
    assert!(first.full_sync && first.complete);
    assert_eq!(first_age(&first), 1, "the session's dump is delivered");
    // A periodic dump queued while it is being written waits behind it
    // (superseding what was queued after it) ...
    q.push(periodic(flows(true, 6, 2), session));
    assert_eq!(order(&q), [(true, 2), (true, 6)]);
    // ... and if the write fails, the session's dump goes back first.
    q.requeue(first);
    assert_eq!(order(&q), [(true, 1), (true, 2), (true, 6)]);
    // The record bound never sheds it for the periodic dump behind it.
    assert_eq!(SendQueue::excess_records(&q.lock()), 0);
    q.pop().unwrap();
    q.push(periodic(flows(true, 7, 2), session));
    assert_eq!(order(&q), [(true, 2), (true, 7)]);
    // A complete dump supersedes everything of its kind.
    let mut newer = flows(true, 8, 1);
    newer.read_in = Some(session);
    q.push(newer);
    q.push(nats(true, 9));
    assert_eq!(order(&q), [(true, 8), (true, 9)]);
    // 4, 5; 3, 6, 7, 2.
    assert_eq!(stats.snapshot().dropped_batches, 6);
}
