//! Version negotiations that must fail: no common version, and a
//! downgrade forced by rewriting the Hellos in transit.
use super::*;

#[tokio::test]
async fn no_common_version_is_refused_on_both_ends() {
    // A later release that dropped version 1, and a node that speaks 1.
    let (tx, _rx) = mpsc::channel(16);
    let later = SyncConfig {
        versions: versions(2, 3),
        ..config("lb-b", KEY)
    };
    let backup = Arc::new(SyncStats::new());
    let listener = listen(local(), later, tx, backup.clone()).await.unwrap();
    let stats = Arc::new(SyncStats::new());
    let v1 = SyncConfig {
        versions: versions(1, 1),
        ..config("lb-a", KEY)
    };
    let sender = Sender::start(listener.local_addr(), v1, stats.clone()).unwrap();
    wait_until("refusals on both ends", || {
        backup.snapshot().decode_errors >= 1 && stats.snapshot().decode_errors >= 1
    })
    .await;
    assert!(!sender.connected());
    assert_eq!(
        (stats.snapshot().sessions, backup.snapshot().sessions),
        (0, 0)
    );
}

/// Rewrites the version of a Hello frame (after the 4-byte header and the
/// type byte).
fn set_hello_version(frame: &mut [u8], version: u16) {
    assert_eq!(frame[4], 1, "a Hello");
    frame[5..7].copy_from_slice(&version.to_be_bytes());
}

/// Rewrites the range of a Hello frame's version mark (the nonce's last
/// four bytes, before the node id).
fn set_hello_mark(frame: &mut [u8], min: u16, max: u16) {
    let end = 7 + wire::NONCE_LEN;
    frame[end - 4..end - 2].copy_from_slice(&min.to_be_bytes());
    frame[end - 2..end].copy_from_slice(&max.to_be_bytes());
}

/// A man in the middle that rewrites the first frame (the Hello) of each
/// direction of every connection, and forwards the rest as is.
async fn hello_rewriter(
    upstream: SocketAddr,
    to_backup: fn(&mut [u8]),
    to_master: fn(&mut [u8]),
) -> (SocketAddr, JoinHandle<()>) {
    async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, rewrite: fn(&mut [u8])) {
        let mut header = [0u8; 4];
        if from.read_exact(&mut header).await.is_err() {
            return;
        }
        let mut frame = vec![0; 4 + wire::frame_len(header).unwrap()];
        frame[..4].copy_from_slice(&header);
        if from.read_exact(&mut frame[4..]).await.is_err() {
            return;
        }
        rewrite(&mut frame);
        if to.write_all(&frame).await.is_ok() {
            let _ = tokio::io::copy(&mut from, &mut to).await;
        }
    }
    let listener = TcpListener::bind(local()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let server = TcpStream::connect(upstream).await.unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tasks.spawn(pipe(cr, sw, to_backup));
            tasks.spawn(pipe(sr, cw, to_master));
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_downgrade_in_transit_is_refused() {
    // Both Hellos' versions rewritten to 1: the proofs do not cover that
    // field, but the master checks the backup's answer against the
    // ranges the proofs authenticated, and refuses the session.
    let mut b = backup().await;
    let (addr, proxy) = hello_rewriter(
        b.listener.local_addr(),
        |f| set_hello_version(f, 1),
        |f| set_hello_version(f, 1),
    )
    .await;
    let (sender, stats) = master(addr, KEY);
    wait_until("the downgrade refused", || {
        stats.snapshot().auth_failures >= 2
    })
    .await;
    assert_eq!(stats.snapshot().sessions, 0);
    assert_eq!(sender.protocol_version(), None, "never a session at 1");
    sender.send(vec![record(1)], true);
    assert_quiet(&mut b.rx, Duration::from_millis(200)).await;
    drop(sender);
    proxy.abort();

    // The backup's mark rewritten to say it speaks 1 only: the nonce
    // changed, so its proof fails.
    let (addr, proxy) =
        hello_rewriter(b.listener.local_addr(), |_| {}, |f| set_hello_mark(f, 1, 1)).await;
    let (sender, stats) = master(addr, KEY);
    wait_until("the forged mark refused", || {
        stats.snapshot().auth_failures >= 2
    })
    .await;
    assert_eq!(
        (stats.snapshot().sessions, sender.protocol_version()),
        (0, None)
    );
    proxy.abort();

    // The master's offer alone rewritten: harmless, the backup answers
    // with the highest version both ranges share.
    let (addr, proxy) =
        hello_rewriter(b.listener.local_addr(), |f| set_hello_version(f, 1), |_| {}).await;
    let (sender, _) = master(addr, KEY);
    wait_for_session(&sender, 1).await;
    assert_eq!(sender.protocol_version(), Some(wire::PROTOCOL_VERSION));
    proxy.abort();
}
