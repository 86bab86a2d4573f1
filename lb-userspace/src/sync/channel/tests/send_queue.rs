//! The send queue: what a full queue drops, the bounds on queued records,
//! and the ages records gain while they wait.
use super::*;

#[test]
fn full_queue_drops_oldest_incremental_first() {
    let (queue, stats) = queue(3, 1000);
    queue.push(flows(false, 1, 2));
    queue.push(flows(true, 2, 2));
    queue.push(flows(false, 3, 2));
    queue.push(flows(false, 4, 2)); // drops 1
    queue.push(nats(false, 5)); // drops 3
    assert_eq!(order(&queue), [(true, 2), (false, 4), (false, 5)]);
    queue.push(nats(true, 6)); // supersedes the NAT batch 5
    assert_eq!(order(&queue), [(true, 2), (false, 4), (true, 6)]);
    queue.push(flows(true, 7, 2)); // supersedes 2 and 4, not the NAT dump
    assert_eq!(order(&queue), [(true, 6), (true, 7)]);
    // A failed batch goes back first in line.
    let first = queue.pop().unwrap();
    queue.requeue(first);
    assert_eq!(first_age(&queue.pop().unwrap()), 6);
    // So does one whose write was cut off (the guard is dropped).
    let cut = queue.pop().unwrap();
    assert_eq!(first_age(&cut), 7);
    drop(InFlight {
        queue: &queue,
        batch: Some(cut),
    });
    assert_eq!(order(&queue), [(true, 7)]);
    // A dump cut off after a newer one was queued is superseded.
    let cut = queue.pop().unwrap();
    queue.push(flows(true, 8, 2));
    queue.requeue(cut);
    assert_eq!(order(&queue), [(true, 8)]);
    let s = stats.snapshot();
    // 1, 3, 5, 2, 4, 7.
    assert_eq!((s.dropped_batches, s.dropped_records), (6, 12));
}

#[test]
fn record_sizes_match_the_documented_bound() {
    // SEND_QUEUE_RECORDS' doc comment states these sizes.
    assert_eq!(std::mem::size_of::<FlowRecord>(), 64);
    assert_eq!(std::mem::size_of::<NatFlowRecord>(), 208);
}

#[test]
fn queued_records_beyond_the_newest_dumps_are_bounded() {
    let (queue, stats) = queue(64, 5);
    queue.push(flows(true, 1, 100)); // a dump never counts
    queue.push(nats(true, 2));
    queue.push(flows(false, 3, 2));
    queue.push(flows(false, 4, 2));
    queue.push(flows(false, 5, 2)); // the newest never counts: 4 beyond
    assert_eq!(stats.snapshot().dropped_batches, 0);
    queue.push(flows(false, 6, 2)); // 6 records beyond: drops 3
    assert_eq!(
        order(&queue),
        [(true, 1), (true, 2), (false, 4), (false, 5), (false, 6)]
    );
    // The newest incremental batch is kept even alone above the bound
    // (one tick's scan of a busy node): the older ones go.
    queue.push(flows(false, 7, 6)); // 6 beyond (4, 5, 6): drops 4
    assert_eq!(
        order(&queue),
        [(true, 1), (true, 2), (false, 5), (false, 6), (false, 7)]
    );
    queue.push(flows(false, 8, 7)); // 10 beyond (5, 6, 7): drops them
    assert_eq!(order(&queue), [(true, 1), (true, 2), (false, 8)]);
    // Per kind: a NAT incremental does not displace the newest flows one.
    queue.push(nats(false, 9));
    queue.push(nats(false, 10)); // 2 beyond (9)
    assert_eq!(
        order(&queue),
        [(true, 1), (true, 2), (false, 8), (false, 9), (false, 10)]
    );
    queue.push(flows(false, 11, 7)); // 9 beyond (8, 9): drops 8, then fits
    assert_eq!(
        order(&queue),
        [(true, 1), (true, 2), (false, 9), (false, 10), (false, 11)]
    );
    let s = stats.snapshot();
    assert_eq!((s.dropped_batches, s.dropped_records), (6, 21));
}

/// A record's age is the time since its flow's last packet when the
/// receiver reads it, not when the sender read it: time in the queue
/// (here, a peer down for 2 s) is added when its frame is made, so a
/// delayed copy never looks fresher than it is (it would win over a
/// receiver's fresher entry).
#[tokio::test]
async fn ages_grow_while_records_wait_to_go_out() {
    let free = std::net::TcpListener::bind(local()).unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let sender = Sender::start_with(
        addr,
        config("lb-a", KEY),
        Arc::new(SyncStats::new()),
        fast(),
    )
    .unwrap();
    let mut fresh = record(2);
    fresh.age_ms = 0;
    let mut nat = nat_record(3);
    (nat.forward.age_ms, nat.reply.age_ms) = (0, 500);
    sender.send(vec![fresh], false);
    sender.send_nat(vec![nat], false);
    let queued_at = Instant::now();
    sleep(Duration::from_secs(2)).await;

    let (tx, mut rx) = mpsc::channel(16);
    let _listener = listen_again(addr, tx, Arc::new(SyncStats::new())).await;
    let flows = recv(&mut rx).await;
    let nats = recv(&mut rx).await;
    let waited = u32::try_from(queued_at.elapsed().as_millis()).unwrap();
    let age = flows.records[0].age_ms;
    assert!(
        (2000..=waited).contains(&age),
        "age {age} ms, waited {waited} ms"
    );
    assert_eq!(
        flows.records[0],
        FlowRecord {
            age_ms: age,
            ..fresh
        }
    );
    let got = nats.nat[0];
    assert!(
        (2000..=waited).contains(&got.forward.age_ms),
        "{got:?} after {waited} ms"
    );
    assert_eq!(got.reply.age_ms, got.forward.age_ms + 500);
}
