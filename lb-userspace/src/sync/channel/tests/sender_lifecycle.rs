//! A sender's life: closing or dropping it hands over what was written,
//! within its limit, and it reconnects after the listener restarts.
use super::*;

/// A backup that sends heartbeats as fast as it can: a master's socket
/// nearly always holds some unread.
async fn chatty_backup() -> Backup {
    let (tx, rx) = mpsc::channel(1);
    let stats = Arc::new(SyncStats::new());
    let timing = Timing {
        heartbeat: Duration::from_micros(10),
        ..Timing::default()
    };
    let listener = listen_with(
        local(),
        Sources::Any,
        config("lb-b", KEY),
        tx,
        stats.clone(),
        timing,
    )
    .await
    .unwrap();
    Backup {
        listener,
        rx,
        stats,
    }
}

/// Counts the records `b` delivers, in the background, slowly (the
/// master's last frames wait in its socket's buffer).
fn count_records(b: &mut Backup) -> (Arc<std::sync::atomic::AtomicUsize>, JoinHandle<()>) {
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = received.clone();
    let (_, idle) = mpsc::channel(1);
    let mut rx = std::mem::replace(&mut b.rx, idle);
    let task = tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            counter.fetch_add(batch.records.len(), std::sync::atomic::Ordering::Relaxed);
            sleep(Duration::from_millis(20)).await;
        }
    });
    (received, task)
}

#[tokio::test]
async fn a_dropped_or_closed_sender_hands_over_everything_written_first() {
    let all: Vec<FlowRecord> = (0..40_000).map(record).collect();
    for close in [false, true] {
        let mut b = chatty_backup().await;
        let (received, reader) = count_records(&mut b);
        let (sender, _) = master(b.listener.local_addr(), KEY);
        wait_for_session(&sender, 1).await;
        sender.send(all.clone(), false);
        wait_until("everything written", || sender.is_flushed()).await;
        if close {
            let closed = sender.close(LIMIT).await;
            assert!(matches!(closed, super::Closed::Delivered), "{closed:?}");
        } else {
            drop(sender);
        }
        wait_until("every record received", || {
            received.load(std::sync::atomic::Ordering::Relaxed) == all.len()
        })
        .await;
        let bs = b.stats.snapshot();
        assert_eq!(bs.records_received, 40_000, "close: {close}");
        reader.abort();
    }
}

#[tokio::test]
async fn closing_a_sender_without_a_session_returns_at_once() {
    // Nobody listens: the sender keeps reconnecting.
    let port = TcpListener::bind(local()).await.unwrap();
    let addr = port.local_addr().unwrap();
    drop(port);
    let (sender, _) = master(addr, KEY);
    sender.send(vec![record(1)], false);
    let start = Instant::now();
    let closed = sender.close(LIMIT).await;
    assert!(matches!(closed, super::Closed::NotConnected), "{closed:?}");
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn sender_reconnects_after_listener_restart() {
    let (tx, mut rx) = mpsc::channel(16);
    let backup = Arc::new(SyncStats::new());
    let listener = listen(local(), config("lb-b", KEY), tx.clone(), backup.clone())
        .await
        .unwrap();
    let addr = listener.local_addr();
    let master = Arc::new(SyncStats::new());
    let sender = Sender::start(addr, config("lb-a", KEY), master.clone()).unwrap();
    let mut sessions = sender.sessions();
    timeout(LIMIT, sessions.wait_for(|&n| n == 1))
        .await
        .unwrap()
        .unwrap();
    sender.send(vec![record(1)], true);
    assert_eq!(
        as_sent(recv(&mut rx).await.records, &[record(1)]),
        [record(1)]
    );

    drop(listener);
    wait_until("the sender to notice", || !sender.connected()).await;
    // Queued while down, delivered after.
    sender.send(vec![record(2)], false);
    let start = Instant::now();
    let _listener = loop {
        match listen(addr, config("lb-b", KEY), tx.clone(), backup.clone()).await {
            Ok(l) => break l,
            Err(e) => {
                assert!(start.elapsed() < LIMIT, "rebinding: {e}");
                sleep(Duration::from_millis(20)).await;
            }
        }
    };
    timeout(LIMIT, sessions.wait_for(|&n| n == 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        as_sent(recv(&mut rx).await.records, &[record(2)]),
        [record(2)]
    );
    let m = master.snapshot();
    assert!(m.reconnects >= 1, "{m:?}");
    assert_eq!(m.sessions, 2);
    assert_eq!(backup.snapshot().sessions, 2);
}

/// A dropped sender closes in the background within its limit (the
/// silence time), also when it is writing a batch that would take far
/// longer to a peer that reads it steadily but slowly.
#[tokio::test]
async fn a_dropped_sender_ends_within_its_limit_in_the_middle_of_a_long_batch() {
    let timing = Timing {
        silence: Duration::from_secs(1),
        ..fast()
    };
    let (tx, mut rx) = mpsc::channel(1);
    let listener = listen_with(
        local(),
        Sources::Any,
        config("lb-b", KEY),
        tx,
        Arc::new(SyncStats::new()),
        timing,
    )
    .await
    .unwrap();
    // 20 frames a second, each written well within the silence time.
    let frames = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = frames.clone();
    let reader = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            sleep(Duration::from_millis(50)).await;
        }
    });
    let stats = Arc::new(SyncStats::new());
    let sender = Sender::start_with(
        listener.local_addr(),
        config("lb-a", KEY),
        stats.clone(),
        timing,
    )
    .unwrap();
    wait_for_session(&sender, 1).await;
    // 147 frames: more than 7 s at that pace.
    let records: usize = 600_000;
    let total = records.div_ceil(MAX_BATCH_RECORDS);
    sender.send(
        (0..records)
            .map(|i| record(u32::try_from(i).unwrap()))
            .collect(),
        false,
    );
    wait_until("the batch under way", || {
        frames.load(std::sync::atomic::Ordering::Relaxed) >= 5
    })
    .await;
    let dropped = Instant::now();
    drop(sender);
    // The task holds the stats until it ends.
    wait_until("the sender's task ended", || Arc::strong_count(&stats) == 1).await;
    let took = dropped.elapsed();
    let got = frames.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        got < total,
        "the batch was still under way ({got} of {total} frames)"
    );
    assert!(
        took < timing.silence + Duration::from_secs(1),
        "the task ended {took:?} after the drop"
    );
    reader.abort();
}
