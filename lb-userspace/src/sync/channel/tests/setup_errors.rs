//! Set-ups that never make a session: a wrong key, a bad config, a sender
//! started outside a runtime.
use super::*;

#[tokio::test]
async fn wrong_key_is_refused_on_both_ends() {
    let mut b = backup().await;
    let (sender, master) = master(b.listener.local_addr(), b"not-the-right-key-at-all");
    wait_until("auth failures on both ends", || {
        b.stats.snapshot().auth_failures >= 1 && master.snapshot().auth_failures >= 1
    })
    .await;
    sender.send(vec![record(1)], true);
    assert_quiet(&mut b.rx, Duration::from_millis(300)).await;
    assert!(!sender.connected());
    let (ms, bs) = (master.snapshot(), b.stats.snapshot());
    assert_eq!(
        (
            ms.sessions,
            bs.sessions,
            bs.batches_received,
            ms.batches_sent
        ),
        (0, 0, 0, 0)
    );
    // The batch waits for a session that never comes.
    assert_eq!(sender.queued(), 1);
}

#[tokio::test]
async fn bad_config_is_refused_at_start() {
    let stats = Arc::new(SyncStats::new());
    let short = config("lb-a", b"short");
    assert!(matches!(
        Sender::start(local(), short.clone(), stats.clone()),
        Err(SyncError::Config(_))
    ));
    let (tx, _rx) = mpsc::channel(1);
    assert!(matches!(
        listen(local(), short, tx, stats).await,
        Err(SyncError::Config(_))
    ));
}

#[test]
fn sender_outside_a_runtime_is_an_error() {
    let stats = Arc::new(SyncStats::new());
    assert!(matches!(
        Sender::start(local(), config("lb-a", KEY), stats),
        Err(SyncError::NoRuntime)
    ));
}
