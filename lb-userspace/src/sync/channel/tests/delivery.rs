//! Records reach the backup whole and in order: many of them, flow and
//! NAT batches together, batches at the record bound, past a dead peer.
use super::*;

#[tokio::test]
async fn ten_thousand_records_arrive_in_order() {
    let mut b = backup().await;
    let (sender, master) = master(b.listener.local_addr(), KEY);
    let mut sessions = sender.sessions();
    timeout(LIMIT, sessions.wait_for(|&n| n == 1))
        .await
        .unwrap()
        .unwrap();
    assert!(sender.connected());

    let all: Vec<FlowRecord> = (0..10_000).map(record).collect();
    // Sizes below, at and above the frame limit; the first is a full sync.
    let sizes = [1, 4096, 4097, 1000, 806];
    assert_eq!(sizes.iter().sum::<usize>(), all.len());
    let mut rest = all.as_slice();
    let sent_ns = monotonic_ns();
    for (i, &n) in sizes.iter().enumerate() {
        let (batch, tail) = rest.split_at(n);
        sender.send(batch.to_vec(), i == 0);
        rest = tail;
    }
    sender.send(Vec::new(), false); // ignored

    let mut got = Vec::new();
    let mut frames = Vec::new();
    while got.len() < all.len() {
        let batch = recv(&mut b.rx).await;
        assert_eq!(batch.peer, "lb-a");
        assert!(
            (sent_ns..=monotonic_ns()).contains(&batch.received_ns),
            "stamped when decoded"
        );
        assert!(batch.records.len() <= MAX_BATCH_RECORDS);
        frames.push((batch.full_sync, batch.last, batch.records.len()));
        got.extend(batch.records);
    }
    assert_eq!(as_sent(got, &all), all);
    assert_eq!(
        frames,
        [
            (true, true, 1),
            (false, true, 4096),
            (false, false, 4096),
            (false, true, 1),
            (false, true, 1000),
            (false, true, 806),
        ]
    );

    // An empty full sync still goes out.
    sender.send(Vec::new(), true);
    let empty = recv(&mut b.rx).await;
    assert!(empty.full_sync && empty.last && empty.records.is_empty());

    let (ms, bs) = (master.snapshot(), b.stats.snapshot());
    assert_eq!((ms.records_sent, ms.batches_sent), (10_000, 7));
    assert_eq!((bs.records_received, bs.batches_received), (10_000, 7));
    assert_eq!((ms.sessions, bs.sessions), (1, 1));
    assert_eq!(
        ms.auth_failures + bs.auth_failures + ms.decode_errors + bs.decode_errors,
        0
    );
    assert_eq!(ms.reconnects, 0);
    assert_eq!(sender.queued(), 0);
}

#[tokio::test]
async fn a_dead_peer_drops_its_own_batches_and_holds_no_one_back() {
    // Two peers of one node, each with its own sender: one listens,
    // the other accepts TCP but never answers the handshake.
    let mut live = backup().await;
    let dead = TcpListener::bind(local()).await.unwrap();
    let (to_live, live_stats) = master(live.listener.local_addr(), KEY);
    let (to_dead, dead_stats) = master(dead.local_addr().unwrap(), KEY);
    wait_for_session(&to_live, 1).await;
    let batches = SEND_QUEUE_CAPACITY as u32 + 6;
    for i in 0..batches {
        to_live.send(vec![record(i)], false);
        to_dead.send(vec![record(i)], false);
        assert_eq!(
            as_sent(recv(&mut live.rx).await.records, &[record(i)]),
            [record(i)]
        );
    }
    let (l, d) = (live_stats.snapshot(), dead_stats.snapshot());
    assert_eq!((l.batches_sent, l.dropped_batches), (u64::from(batches), 0));
    assert_eq!((d.batches_sent, d.dropped_batches), (0, 6), "{d:?}");
    assert_eq!(to_dead.queued(), SEND_QUEUE_CAPACITY);
}

#[tokio::test]
async fn nat_batches_travel_in_order_with_flow_batches() {
    let mut b = backup().await;
    let (sender, master) = master(b.listener.local_addr(), KEY);
    wait_for_session(&sender, 1).await;
    let nat: Vec<NatFlowRecord> = (0..5000).map(nat_record).collect();
    sender.send(vec![record(1)], false);
    sender.send_nat(nat.clone(), true);
    sender.send_nat(Vec::new(), false); // ignored
    sender.send(vec![record(2)], false);

    let first = recv(&mut b.rx).await;
    assert_eq!(first.kind, BatchKind::Flows);
    assert_eq!(
        (as_sent(first.records, &[record(1)]), first.nat.len()),
        (vec![record(1)], 0)
    );
    let mut got = Vec::new();
    let mut frames = Vec::new();
    while got.len() < nat.len() {
        let batch = recv(&mut b.rx).await;
        assert!(batch.records.is_empty());
        frames.push((batch.full_sync, batch.last, batch.nat.len()));
        got.extend(batch.nat);
    }
    assert_eq!(as_sent(got, &nat), nat);
    assert_eq!(frames, [(true, false, 4096), (true, true, 904)]);
    assert_eq!(
        as_sent(recv(&mut b.rx).await.records, &[record(2)]),
        [record(2)]
    );
    // An empty NAT full sync still goes out ("no NAT flows").
    sender.send_nat(Vec::new(), true);
    let empty = recv(&mut b.rx).await;
    assert!(empty.full_sync && empty.last && empty.nat.is_empty() && empty.records.is_empty());
    assert_eq!(
        empty.kind,
        BatchKind::Nat,
        "the frame type names an empty dump"
    );
    let ms = master.snapshot();
    assert_eq!((ms.records_sent, ms.batches_sent), (5002, 5));
}

#[tokio::test]
async fn an_incremental_batch_above_the_record_bound_is_delivered() {
    // One tick's scan of a busy node (every flow touched in the last
    // ~1.25 s) can exceed SEND_QUEUE_RECORDS: it must still go out.
    let mut b = backup().await;
    let (sender, stats) = master(b.listener.local_addr(), KEY);
    wait_for_session(&sender, 1).await;
    let n = super::SEND_QUEUE_RECORDS + 4_000;
    let all: Vec<FlowRecord> = (0..u32::try_from(n).unwrap()).map(record).collect();
    sender.send(all, false);
    let mut got = 0;
    while got < n {
        got += recv(&mut b.rx).await.records.len();
    }
    assert_eq!(got, n);
    assert_eq!(stats.snapshot().dropped_batches, 0);
}
