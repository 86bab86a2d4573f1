//! Stepping down and stopping: a flush, or the sessions' close, delivers
//! the last tick's flows to the peer.

use super::*;

/// A pair's master (`lb-a`) connected to a backup listener, and the
/// count of flow records the backup received.
async fn flushing_pair(
    name: &str,
) -> (
    Replication,
    sync::ListenerHandle,
    Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let scratch = ScratchDir::new(&format!("lbr-{name}"));
    let key_file = scratch.join("sync.key");
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    let backup = sync::listen(
        "127.0.0.1:0".parse().unwrap(),
        SyncConfig::new(b"test-key-0123456789abcdef".to_vec(), "lb-b"),
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
    (replication, backup, received, reader)
}

/// The last tick's flows: enough records that the sender is still busy
/// when the flush starts, few enough to be sent well within the flush's
/// limit on a loaded 2-core machine (120,000 took more than 5 s there).
fn last_tick(replication: &Replication) -> usize {
    let n: u16 = 15_000;
    let records: Vec<FlowRecord> = (0..n)
        .map(|port| flow_record(port, "198.18.0.11", 0))
        .collect();
    let planned = walks::Planned {
        scan: Scan::Recent { since: 0 },
        session: false,
        rest: true,
        full: false,
        started_ns: 0,
        started: Instant::now(),
    };
    replication.send_flows(&walks::Split::rest(records.clone()), &planned);
    replication.send_flows(&walks::Split::rest(records), &planned);
    2 * usize::from(n)
}

async fn all_arrive(received: &std::sync::atomic::AtomicUsize, sent: usize, within: Duration) {
    let start = Instant::now();
    while received.load(std::sync::atomic::Ordering::Relaxed) < sent {
        assert!(
            start.elapsed() < within,
            "only {} of {} records arrived",
            received.load(std::sync::atomic::Ordering::Relaxed),
            sent
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_stepping_down_node_flushes_its_last_flows() {
    let (replication, _backup, received, reader) = flushing_pair("flush").await;
    let sent = last_tick(&replication);
    // Stepping down: the replication is dropped right after the flush.
    // The sender's task is not aborted (a socket closed with the peer's
    // heartbeats unread would reset the connection, and the peer's
    // kernel discard what it had not handed over yet): it closes the
    // session once the peer has read everything.
    replication.flush(Duration::from_secs(5)).await;
    drop(replication);
    all_arrive(&received, sent, Duration::from_secs(5)).await;
    reader.abort();
}

#[tokio::test]
async fn a_stopping_node_closes_its_sessions_once_the_peer_has_everything() {
    let (replication, _backup, received, reader) = flushing_pair("close").await;
    let sent = last_tick(&replication);
    // What lbd's stop does: the walks' last flows are still queued when
    // it closes; they are written, then the session is closed, and the
    // close returns once the peer closed its end, i.e. read them all.
    replication.close(Duration::from_secs(5)).await;
    // Read by the backup's session: only its reader task may lag.
    all_arrive(&received, sent, Duration::from_secs(1)).await;
    reader.abort();
}
