//! A man in the middle that replays, modifies or duplicates frames: each
//! is refused.
use super::*;

/// How the test proxy treats the first Batch frame of its first
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    None,
    FlipByte,
    Duplicate,
}

/// A man in the middle: forwards master → backup frame by frame
/// (recording the first connection's bytes and tampering as told) and
/// backup → master as is.
struct Proxy {
    addr: SocketAddr,
    recorded: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn proxy(upstream: SocketAddr, tamper: Tamper) -> Proxy {
    let listener = TcpListener::bind(local()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let record_to = recorded.clone();
    let task = tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        let mut first = true;
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let server = TcpStream::connect(upstream).await.unwrap();
            let (cr, mut cw) = client.into_split();
            let (mut sr, sw) = server.into_split();
            tasks.spawn(async move {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
            });
            let (tamper, record) = if first {
                (tamper, Some(record_to.clone()))
            } else {
                (Tamper::None, None)
            };
            first = false;
            tasks.spawn(forward_frames(cr, sw, tamper, record));
        }
    });
    Proxy {
        addr,
        recorded,
        task,
    }
}

async fn forward_frames(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    tamper: Tamper,
    record: Option<Arc<Mutex<Vec<u8>>>>,
) {
    let mut tampered = false;
    loop {
        let mut header = [0u8; 4];
        if from.read_exact(&mut header).await.is_err() {
            return;
        }
        let mut body = vec![0; wire::frame_len(header).unwrap()];
        if from.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut frame = [&header[..], &body].concat();
        if let Some(record) = &record {
            record.lock().unwrap().extend_from_slice(&frame);
        }
        if body[0] == 3 && !tampered {
            tampered = true;
            match tamper {
                Tamper::None => {}
                Tamper::FlipByte => {
                    let mid = frame.len() / 2;
                    frame[mid] ^= 0x01;
                }
                Tamper::Duplicate => frame.extend_from_slice(&frame.clone()),
            }
        }
        if to.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// A backup, and a master that reaches it through a proxy.
async fn through_proxy(tamper: Tamper) -> (Backup, Proxy, Sender) {
    let b = backup().await;
    let px = proxy(b.listener.local_addr(), tamper).await;
    let (sender, _) = master(px.addr, KEY);
    (b, px, sender)
}

#[tokio::test]
async fn replayed_session_is_refused() {
    let (mut b, px, sender) = through_proxy(Tamper::None).await;
    // A full sync queued before the session would be dropped at its start.
    wait_for_session(&sender, 1).await;
    sender.send(vec![record(1), record(2)], true);
    let batch = recv(&mut b.rx).await;
    assert_eq!(
        as_sent(batch.records, &[record(1), record(2)]),
        [record(1), record(2)]
    );
    let recorded = px.recorded.lock().unwrap().clone();
    let before = b.stats.snapshot();
    assert_eq!((before.sessions, before.auth_failures), (1, 0));

    // Replay the master's bytes verbatim on a new connection: Hello,
    // HelloAck, heartbeat(s), the batch.
    let mut raw = TcpStream::connect(b.listener.local_addr()).await.unwrap();
    raw.write_all(&recorded).await.unwrap();
    let mut sink = Vec::new();
    // The listener closes it (EOF or reset), quickly.
    let _ = timeout(LIMIT, raw.read_to_end(&mut sink)).await.unwrap();

    wait_until("auth failure", || b.stats.snapshot().auth_failures == 1).await;
    assert_quiet(&mut b.rx, Duration::from_millis(200)).await;
    let after = b.stats.snapshot();
    assert_eq!((after.sessions, after.batches_received), (1, 1));
    // The real session is unharmed.
    sender.send(vec![record(3)], false);
    assert_eq!(
        as_sent(recv(&mut b.rx).await.records, &[record(3)]),
        [record(3)]
    );
}

#[tokio::test]
async fn modified_frame_is_refused() {
    let (mut b, _px, sender) = through_proxy(Tamper::FlipByte).await;
    sender.send(vec![record(1), record(2)], false);
    wait_until("auth failure", || b.stats.snapshot().auth_failures == 1).await;
    // The sender reconnects; later batches get through untouched.
    wait_for_session(&sender, 2).await;
    sender.send(vec![record(3)], false);
    let batch = recv(&mut b.rx).await;
    assert_eq!(
        as_sent(batch.records, &[record(3)]),
        [record(3)],
        "the modified batch must never arrive"
    );
    let bs: SyncStatsSnapshot = b.stats.snapshot();
    assert_eq!((bs.batches_received, bs.auth_failures), (1, 1));
    assert!(bs.sessions >= 2);
}

#[tokio::test]
async fn duplicated_frame_is_refused() {
    let (mut b, _px, sender) = through_proxy(Tamper::Duplicate).await;
    sender.send(vec![record(1)], false);
    assert_eq!(
        as_sent(recv(&mut b.rx).await.records, &[record(1)]),
        [record(1)]
    );
    wait_until("auth failure", || b.stats.snapshot().auth_failures == 1).await;
    // Frames written before the sender sees the close are lost (no
    // acks): wait for the new session, as the daemon does before its
    // repairing full sync.
    wait_for_session(&sender, 2).await;
    sender.send(vec![record(2)], false);
    assert_eq!(
        as_sent(recv(&mut b.rx).await.records, &[record(2)]),
        [record(2)]
    );
    assert_eq!(b.stats.snapshot().batches_received, 2);
}
