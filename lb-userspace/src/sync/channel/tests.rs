use std::{
    collections::VecDeque,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufReader},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::{mpsc, Notify},
    task::{JoinHandle, JoinSet},
    time::{sleep, timeout},
};

use super::{
    listen::{listen, listen_with, ListenerHandle},
    queue::{InFlight, QueuedBatch, Records, SendQueue},
    sender::{Backoff, Offer},
    session::{handshake, read_frame, run_session, PeerHello, Session},
    BatchKind, Dump, Read, ReceivedBatch, Sender, Sources, Timing, SEND_QUEUE_CAPACITY,
};
use crate::clock::monotonic_ns;
use crate::sync::{
    nat_record::tests::nat_record,
    wire::{self, Message, Role, Transcript, Versions, MAX_BATCH_RECORDS},
    FlowRecord, NatFlowRecord, SyncConfig, SyncError, SyncStats, SyncStatsSnapshot,
};
use crate::test_netns::{in_own_netns, ip, is_root};

const LIMIT: Duration = Duration::from_secs(8);

fn config(node: &str, key: &[u8]) -> SyncConfig {
    SyncConfig::new(key.to_vec(), node)
}

const KEY: &[u8] = b"test-key-0123456789abcdef";

fn record(i: u32) -> FlowRecord {
    let client = if i.is_multiple_of(2) {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i))
    } else {
        IpAddr::V6(Ipv6Addr::from(0x2001_0db8u128 << 96 | u128::from(i)))
    };
    FlowRecord {
        vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        vip_port: 80,
        protocol: 6,
        client,
        client_port: u16::try_from(i % 60_000).unwrap() + 1024,
        backend: IpAddr::V4(Ipv4Addr::new(198, 51, 100, u8::try_from(i % 200).unwrap())),
        age_ms: i,
        flags: u8::try_from(i % 4).unwrap(),
    }
}

/// How a walk read a batch: as `dump`, during `session`.
fn read(dump: Dump, session: u64) -> Read {
    Read {
        dump,
        session,
        at: Instant::now(),
    }
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Polls `cond` every 10 ms until it holds; fails the test after
/// `LIMIT`.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

async fn recv(rx: &mut mpsc::Receiver<ReceivedBatch>) -> ReceivedBatch {
    timeout(LIMIT, rx.recv())
        .await
        .expect("batch in time")
        .expect("channel open")
}

/// What a sender does to records on their way: adds the time they
/// waited to their ages (see `ages_grow_while_records_wait_to_go_out`).
trait Aging: Copy + PartialEq {
    /// The record's first age, in ms.
    fn age(&self) -> u32;
    /// The record `by` ms older.
    fn aged_by(self, by: u32) -> Self;
}

impl Aging for FlowRecord {
    fn age(&self) -> u32 {
        self.age_ms
    }
    fn aged_by(self, by: u32) -> Self {
        self.aged(Duration::from_millis(u64::from(by)))
    }
}

impl Aging for NatFlowRecord {
    fn age(&self) -> u32 {
        self.forward.age_ms
    }
    fn aged_by(self, by: u32) -> Self {
        self.aged(Duration::from_millis(u64::from(by)))
    }
}

/// Records received for `sent`, each put back as sent when it is that
/// record aged by its time on the way (at most `LIMIT`); any other is
/// left as received, for the comparison to show.
fn as_sent<T: Aging>(got: Vec<T>, sent: &[T]) -> Vec<T> {
    if got.len() != sent.len() {
        return got;
    }
    got.into_iter()
        .zip(sent)
        .map(|(g, &s)| if was(g, s) { s } else { g })
        .collect()
}

/// Whether `got` is `sent` aged by its time on the way (at most `LIMIT`).
fn was<T: Aging>(got: T, sent: T) -> bool {
    let by = got.age().wrapping_sub(sent.age());
    by <= u32::try_from(LIMIT.as_millis()).unwrap() && sent.aged_by(by) == got
}

/// [`as_sent`] for records that may be any of `sent`, in any order.
fn as_one_of<T: Aging>(got: Vec<T>, sent: &[T]) -> Vec<T> {
    got.into_iter()
        .map(|g| sent.iter().copied().find(|&s| was(g, s)).unwrap_or(g))
        .collect()
}

/// Nothing arrives for a while.
async fn assert_quiet(rx: &mut mpsc::Receiver<ReceivedBatch>, for_: Duration) {
    if let Ok(got) = timeout(for_, rx.recv()).await {
        panic!("unexpected batch: {got:?}");
    }
}

fn fast() -> Timing {
    Timing {
        heartbeat: Duration::from_millis(50),
        silence: Duration::from_millis(400),
        handshake: Duration::from_millis(400),
        first_byte: Duration::from_millis(200),
        connect: Duration::from_millis(400),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
    }
}

async fn wait_for_session(sender: &Sender, n: u64) {
    let mut sessions = sender.sessions();
    timeout(LIMIT, sessions.wait_for(|&got| got >= n))
        .await
        .expect("session in time")
        .expect("sender alive");
}

/// A listener and what it delivers.
struct Backup {
    listener: ListenerHandle,
    rx: mpsc::Receiver<ReceivedBatch>,
    stats: Arc<SyncStats>,
}

async fn backup() -> Backup {
    let (tx, rx) = mpsc::channel(64);
    let stats = Arc::new(SyncStats::new());
    let listener = listen(local(), config("lb-b", KEY), tx, stats.clone())
        .await
        .unwrap();
    Backup {
        listener,
        rx,
        stats,
    }
}

fn master(peer: SocketAddr, key: &[u8]) -> (Sender, Arc<SyncStats>) {
    let stats = Arc::new(SyncStats::new());
    let sender = Sender::start(peer, config("lb-a", key), stats.clone()).unwrap();
    (sender, stats)
}

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

/// Waits for the listener to close a raw connection (EOF or reset).
async fn expect_closed(stream: &mut TcpStream) {
    let mut sink = Vec::new();
    let _ = timeout(LIMIT, stream.read_to_end(&mut sink)).await.unwrap();
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

/// The handshake of an lbd of an earlier release, which speaks `version`
/// only: its Hello first whatever its role, its nonce random (no version
/// mark), a peer's Hello of another version refused (the caller then
/// drops the connection: closed, as that release does), then the proofs.
async fn old_handshake<R, W>(
    rd: &mut R,
    wr: &mut W,
    role: Role,
    version: u16,
    node_id: &str,
) -> Result<Session, SyncError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let nonce = wire::new_nonce();
    let hello = Message::Hello {
        version,
        node_id: node_id.into(),
        nonce,
    };
    wr.write_all(&wire::encode_frame(&hello.encode()?)?)
        .await
        .map_err(|source| SyncError::Io {
            action: "writing",
            source,
        })?;
    let mut buf = Vec::new();
    read_frame(rd, &mut buf).await?;
    let Message::Hello {
        version: theirs,
        node_id: peer_id,
        nonce: peer_nonce,
    } = Message::decode(&buf)?
    else {
        return Err(SyncError::Closed);
    };
    if theirs != version {
        return Err(SyncError::Offer {
            offered: theirs,
            theirs: version,
        });
    }
    let t = match role {
        Role::Master => Transcript {
            master_nonce: &nonce,
            backup_nonce: &peer_nonce,
            master_id: node_id,
            backup_id: &peer_id,
        },
        Role::Backup => Transcript {
            master_nonce: &peer_nonce,
            backup_nonce: &nonce,
            master_id: &peer_id,
            backup_id: node_id,
        },
    };
    let proof = wire::hello_proof(KEY, role, &t)?;
    wr.write_all(&wire::encode_frame(&Message::HelloAck { proof }.encode()?)?)
        .await
        .map_err(|source| SyncError::Io {
            action: "writing",
            source,
        })?;
    read_frame(rd, &mut buf).await?;
    let Message::HelloAck { proof } = Message::decode(&buf)? else {
        return Err(SyncError::Closed);
    };
    wire::verify_hello_proof(KEY, role.peer(), &t, &proof)?;
    let (sealer, opener) = wire::session_at(KEY, role, &t, version)?;
    Ok(Session {
        peer_id,
        sealer,
        opener,
        version,
        peer_versions: None,
    })
}

/// A backup of an earlier release that speaks `version` only: refuses
/// (closes) a master's Hello of another version, and counts the
/// handshakes it refused and the sessions it ran.
struct OldBackup {
    addr: SocketAddr,
    rx: mpsc::Receiver<ReceivedBatch>,
    refused: Arc<std::sync::atomic::AtomicU64>,
    stats: Arc<SyncStats>,
    task: JoinHandle<()>,
}

impl Drop for OldBackup {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn old_backup(version: u16) -> OldBackup {
    let listener = TcpListener::bind(local()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(64);
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stats = Arc::new(SyncStats::new());
    let (refusals, counters) = (refused.clone(), stats.clone());
    let task = tokio::spawn(async move {
        let mut sessions = JoinSet::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (rd, mut wr) = stream.into_split();
            let mut rd = BufReader::new(rd);
            match old_handshake(&mut rd, &mut wr, Role::Backup, version, "lb-old").await {
                Ok(session) => {
                    counters.add(crate::sync::Counter::Sessions, 1);
                    let (tx, counters) = (tx.clone(), counters.clone());
                    sessions.spawn(async move {
                        let _ = run_session(
                            &mut rd,
                            &mut wr,
                            session,
                            Some(&tx),
                            None,
                            &counters,
                            fast(),
                        )
                        .await;
                    });
                }
                Err(_) => {
                    refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });
    OldBackup {
        addr,
        rx,
        refused,
        stats,
        task,
    }
}

fn versions(min: u16, max: u16) -> Versions {
    Versions::new(min, max).unwrap()
}

#[tokio::test]
async fn a_master_falls_back_to_an_old_version_1_backup_and_withholds_nat_flows() {
    let mut old = old_backup(1).await;
    let (sender, master) = master(old.addr, KEY);
    // Offered 2 first: the old backup answers with its Hello (1) and
    // closes; the sender offers 1 next.
    wait_for_session(&sender, 1).await;
    assert_eq!(sender.protocol_version(), Some(1));
    assert_eq!(
        old.refused.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one offer of this release's version refused"
    );
    sender.send(vec![record(1)], false);
    sender.send_nat(vec![nat_record(1), nat_record(2)], true);
    sender.send(vec![record(2)], false);
    for i in [1, 2] {
        let batch = recv(&mut old.rx).await;
        assert_eq!(
            (batch.kind, batch.version, batch.nat.len()),
            (BatchKind::Flows, 1, 0)
        );
        assert_eq!(as_sent(batch.records, &[record(i)]), [record(i)]);
    }
    wait_until("the NAT'd flows counted as withheld", || {
        master.snapshot().nat_withheld == 2
    })
    .await;
    // The session carried on: a version-1 reader would have closed it on
    // a NatBatch.
    assert!(sender.connected());
    let ms = master.snapshot();
    assert_eq!((ms.sessions, ms.decode_errors, ms.auth_failures), (1, 0, 0));
    assert_eq!(old.stats.snapshot().sessions, 1);

    // The peer is upgraded: the sender still offers 1, and a backup of
    // this release answers with 2, the highest both speak.
    let addr = old.addr;
    drop(old);
    wait_until("the sender to notice", || !sender.connected()).await;
    let (tx, mut rx) = mpsc::channel(16);
    let start = Instant::now();
    let _listener = loop {
        match listen(
            addr,
            config("lb-b", KEY),
            tx.clone(),
            Arc::new(SyncStats::new()),
        )
        .await
        {
            Ok(l) => break l,
            Err(e) => {
                assert!(start.elapsed() < LIMIT, "rebinding: {e}");
                sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for_session(&sender, 2).await;
    assert_eq!(sender.protocol_version(), Some(wire::PROTOCOL_VERSION));
    sender.send_nat(vec![nat_record(3)], false);
    let batch = recv(&mut rx).await;
    assert_eq!(
        (batch.kind, batch.version),
        (BatchKind::Nat, wire::PROTOCOL_VERSION)
    );
    assert_eq!(as_sent(batch.nat, &[nat_record(3)]), [nat_record(3)]);
}

#[test]
fn an_offer_refused_by_an_old_backup_is_remembered_until_a_newer_one_answers() {
    let mut offer = Offer::new(Versions::RELEASE);
    assert_eq!(offer.version(), wire::PROTOCOL_VERSION);
    // An old backup's Hello said 1, and it closed.
    let old = PeerHello {
        version: 1,
        versions: None,
    };
    let refused = SyncError::Offer {
        offered: wire::PROTOCOL_VERSION,
        theirs: 1,
    };
    offer.failed(Some(old), &refused);
    assert_eq!(offer.version(), 1);
    // Any other failure keeps it (the peer down, a timeout).
    offer.failed(
        None,
        &SyncError::Timeout {
            what: "connect",
            after: Duration::from_secs(5),
        },
    );
    assert_eq!(offer.version(), 1);
    // Closed before any Hello (a node that refuses without a word): one
    // version less, never below the range.
    let mut silent = Offer::new(versions(1, 2));
    silent.failed(None, &SyncError::Closed);
    assert_eq!(silent.version(), 1);
    silent.failed(None, &SyncError::Closed);
    assert_eq!(silent.version(), 1);
    // This release (1 to 4) steps down one at a time.
    let mut release = Offer::new(Versions::RELEASE);
    release.failed(None, &SyncError::Closed);
    assert_eq!(release.version(), 3);
}

#[tokio::test]
async fn an_old_version_1_master_replicates_into_this_backup() {
    let mut b = backup().await;
    let stream = TcpStream::connect(b.listener.local_addr()).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    // The old master refuses any answer but 1: it gets 1.
    let session = old_handshake(&mut rd, &mut wr, Role::Master, 1, "lb-old")
        .await
        .unwrap();
    let mut sealer = session.sealer;
    let frame = sealer.batch(true, true, &[record(1)]).unwrap();
    wr.write_all(&frame).await.unwrap();
    let batch = recv(&mut b.rx).await;
    assert_eq!(
        (batch.peer.as_str(), batch.version, batch.full_sync),
        ("lb-old", 1, true)
    );
    assert_eq!(as_sent(batch.records, &[record(1)]), [record(1)]);
    // A version-1 session has no NatBatch: one sent anyway is refused.
    let mut v2 = wire::session_at(
        KEY,
        Role::Master,
        &Transcript {
            master_nonce: &[1; 32],
            backup_nonce: &[2; 32],
            master_id: "x",
            backup_id: "y",
        },
        2,
    )
    .unwrap()
    .0;
    assert!(v2.nat_batch(false, true, &[nat_record(1)]).is_ok());
    assert!(matches!(
        sealer.nat_batch(false, true, &[nat_record(1)]),
        Err(wire::WireError::NotInVersion {
            what: "NatBatch",
            version: 1
        })
    ));
    let bs = b.stats.snapshot();
    assert_eq!((bs.sessions, bs.decode_errors, bs.auth_failures), (1, 0, 0));
}

#[tokio::test]
async fn a_master_speaking_version_1_only_replicates_into_this_backup_without_nat_flows() {
    let mut b = backup().await;
    let stats = Arc::new(SyncStats::new());
    let v1 = SyncConfig {
        versions: versions(1, 1),
        ..config("lb-a", KEY)
    };
    let sender = Sender::start(b.listener.local_addr(), v1, stats.clone()).unwrap();
    wait_for_session(&sender, 1).await;
    assert_eq!(sender.protocol_version(), Some(1));
    sender.send_nat(vec![nat_record(1)], true);
    sender.send(vec![record(1)], true);
    let batch = recv(&mut b.rx).await;
    assert_eq!((batch.kind, batch.version), (BatchKind::Flows, 1));
    assert_eq!(as_sent(batch.records, &[record(1)]), [record(1)]);
    assert_eq!(stats.snapshot().nat_withheld, 1);
    assert_quiet(&mut b.rx, Duration::from_millis(100)).await;
    assert_eq!(stats.snapshot().reconnects, 0, "no offer was refused");
}

#[tokio::test]
async fn a_backup_speaking_version_1_only_answers_with_it_at_once() {
    let (tx, mut rx) = mpsc::channel(16);
    let v1 = SyncConfig {
        versions: versions(1, 1),
        ..config("lb-b", KEY)
    };
    let listener = listen(local(), v1, tx, Arc::new(SyncStats::new()))
        .await
        .unwrap();
    let (sender, master) = master(listener.local_addr(), KEY);
    wait_for_session(&sender, 1).await;
    assert_eq!(sender.protocol_version(), Some(1));
    sender.send_nat(vec![nat_record(1)], true);
    sender.send(vec![record(1)], true);
    let batch = recv(&mut rx).await;
    assert_eq!((batch.kind, batch.version), (BatchKind::Flows, 1));
    assert_quiet(&mut rx, Duration::from_millis(100)).await;
    let ms = master.snapshot();
    assert_eq!((ms.nat_withheld, ms.reconnects, ms.sessions), (1, 0, 1));
}

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
async fn hostile_handshakes_are_refused() {
    let mut b = backup().await;
    let addr = b.listener.local_addr();
    let mut buf = Vec::new();

    // The listener's own Hello, sent back to it on another connection:
    // its nonce is one this process issued.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let hello = Message::Hello {
        version: wire::PROTOCOL_VERSION,
        node_id: "mallory".into(),
        nonce: wire::new_nonce(),
    };
    s.write_all(&wire::encode_frame(&hello.encode().unwrap()).unwrap())
        .await
        .unwrap();
    read_frame(&mut s, &mut buf).await.unwrap();
    assert!(matches!(
        Message::decode(&buf).unwrap(),
        Message::Hello { .. }
    ));
    let mut reflect = TcpStream::connect(addr).await.unwrap();
    reflect
        .write_all(&wire::encode_frame(&buf).unwrap())
        .await
        .unwrap();
    expect_closed(&mut reflect).await;

    // A Hello of our own, then the listener's proof echoed back as ours
    // (on the first connection, its Hello read above).
    read_frame(&mut s, &mut buf).await.unwrap();
    assert!(matches!(
        Message::decode(&buf).unwrap(),
        Message::HelloAck { .. }
    ));
    s.write_all(&wire::encode_frame(&buf).unwrap())
        .await
        .unwrap();
    expect_closed(&mut s).await;

    // A protocol version this node does not speak (a later release's
    // only one): refused, after the listener's Hello says what it speaks.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let hello = Message::Hello {
        version: wire::PROTOCOL_VERSION + 1,
        node_id: "lb-a".into(),
        nonce: wire::new_nonce(),
    };
    s.write_all(&wire::encode_frame(&hello.encode().unwrap()).unwrap())
        .await
        .unwrap();
    read_frame(&mut s, &mut buf).await.unwrap();
    assert!(matches!(
        Message::decode(&buf).unwrap(),
        Message::Hello { version, .. } if version == wire::PROTOCOL_VERSION
    ));
    expect_closed(&mut s).await;

    // A frame longer than the limit.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
        .await
        .unwrap();
    expect_closed(&mut s).await;

    wait_until("every refusal counted", || {
        let bs = b.stats.snapshot();
        bs.auth_failures == 2 && bs.decode_errors == 2
    })
    .await;
    assert_eq!(b.stats.snapshot().sessions, 0);
    assert!(b.rx.try_recv().is_err());
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

#[tokio::test]
async fn silent_peers_are_dropped() {
    // A backup that completes the handshake, then says nothing.
    let fake = TcpListener::bind(local()).await.unwrap();
    let addr = fake.local_addr().unwrap();
    let fake_task = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = fake.accept().await.unwrap();
            let (rd, mut wr) = stream.into_split();
            let mut rd = BufReader::new(rd);
            let cfg = config("lb-b", KEY);
            if handshake(&mut rd, &mut wr, Role::Backup, &cfg)
                .await
                .is_ok()
            {
                held.push((rd, wr));
            }
        }
    });
    let master = Arc::new(SyncStats::new());
    let sender = Sender::start_with(addr, config("lb-a", KEY), master.clone(), fast()).unwrap();
    wait_until("a silence timeout and a new session", || {
        let m = master.snapshot();
        m.timeouts >= 1 && m.sessions >= 2
    })
    .await;
    drop(sender);
    fake_task.abort();

    // A client that never speaks is dropped by the listener after the
    // first-byte time, not the handshake's: a handshake time far longer
    // than the first byte's (3 s against 200 ms) tells the two apart with
    // room for a loaded machine.
    let timing = Timing {
        handshake: Duration::from_secs(3),
        ..fast()
    };
    let (tx, _rx) = mpsc::channel(1);
    let backup = Arc::new(SyncStats::new());
    let listener = listen_with(
        local(),
        Sources::Any,
        config("lb-b", KEY),
        tx,
        backup.clone(),
        timing,
    )
    .await
    .unwrap();
    let mut raw = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut got = Vec::new();
    let start = Instant::now();
    timeout(LIMIT, raw.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let dropped_after = start.elapsed();
    assert!(
        dropped_after >= timing.first_byte - Duration::from_millis(50),
        "dropped after {dropped_after:?}, before the first-byte time"
    );
    assert!(
        dropped_after < timing.handshake,
        "dropped after {dropped_after:?}: by the handshake time, not the first byte's"
    );
    // The listener answers a Hello only: it said nothing.
    assert!(got.is_empty(), "{got:?}");
    wait_until("timeout counted", || backup.snapshot().timeouts == 1).await;
}

#[tokio::test]
async fn truncated_streams_error_never_panic() {
    let (m, b) = (wire::new_nonce(), wire::new_nonce());
    let t = Transcript {
        master_nonce: &m,
        backup_nonce: &b,
        master_id: "lb-a",
        backup_id: "lb-b",
    };
    let (mut sealer, _) = wire::session(KEY, Role::Master, &t).unwrap();
    let frame = sealer.batch(true, true, &[record(1), record(2)]).unwrap();
    let mut buf = Vec::new();
    for len in 0..frame.len() {
        let mut cut = &frame[..len];
        let result = read_frame(&mut cut, &mut buf).await;
        match len {
            0 => assert!(matches!(result, Err(SyncError::Closed))),
            _ => assert!(
                matches!(result, Err(SyncError::Io { .. })),
                "cut at {len}: {result:?}"
            ),
        }
    }
    let mut whole = &frame[..];
    read_frame(&mut whole, &mut buf).await.unwrap();
    // Oversized and empty frames are refused before any allocation.
    for header in [[0u8, 0x10, 0, 1], [0, 0, 0, 0]] {
        let mut bad = &header[..];
        assert!(matches!(
            read_frame(&mut bad, &mut buf).await,
            Err(SyncError::Wire(_))
        ));
    }
}

/// The age of a queued batch's first record: names the batch in tests.
fn first_age(batch: &QueuedBatch) -> u32 {
    match &batch.records {
        Records::Flows(r) => r[0].age_ms,
        Records::Nat(r) => r[0].forward.age_ms,
    }
}

fn queue(capacity: usize, max_records: usize) -> (SendQueue, Arc<SyncStats>) {
    let stats = Arc::new(SyncStats::new());
    let queue = SendQueue {
        batches: Mutex::new(VecDeque::new()),
        notify: Notify::new(),
        capacity,
        max_records,
        stats: stats.clone(),
        writing: std::sync::atomic::AtomicBool::new(false),
        sessions: std::sync::atomic::AtomicU64::new(0),
    };
    (queue, stats)
}

/// A queued batch of `n` flow records named `i`.
fn flows(full_sync: bool, i: u32, n: usize) -> QueuedBatch {
    QueuedBatch {
        full_sync,
        complete: full_sync,
        records: Records::Flows(vec![record(i); n].into()),
        read_in: None,
        aged_at: Instant::now(),
    }
}

/// A queued batch of two NAT records named `i`.
fn nats(full_sync: bool, i: u32) -> QueuedBatch {
    let mut r = nat_record(0);
    r.forward.age_ms = i;
    QueuedBatch {
        full_sync,
        complete: full_sync,
        records: Records::Nat(vec![r; 2].into()),
        read_in: None,
        aged_at: Instant::now(),
    }
}

fn order(queue: &SendQueue) -> Vec<(bool, u32)> {
    queue
        .lock()
        .iter()
        .map(|b| (b.full_sync, first_age(b)))
        .collect()
}

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

#[tokio::test]
async fn a_node_whose_peer_is_itself_gets_no_session() {
    // A templated config whose peer is the node's own listen address:
    // the same key and node id at both ends would authenticate.
    let (tx, mut rx) = mpsc::channel(8);
    let listener_stats = Arc::new(SyncStats::new());
    let same = config("lb-a", KEY);
    let listener = listen_with(
        local(),
        Sources::Any,
        same.clone(),
        tx,
        listener_stats.clone(),
        fast(),
    )
    .await
    .unwrap();
    let sender_stats = Arc::new(SyncStats::new());
    let sender =
        Sender::start_with(listener.local_addr(), same, sender_stats.clone(), fast()).unwrap();
    sender.send(vec![record(1)], true);
    wait_until("the listener refusing its own sender twice", || {
        listener_stats.snapshot().auth_failures >= 2
    })
    .await;
    assert_quiet(&mut rx, Duration::from_millis(300)).await;
    assert!(!sender.connected());
    assert_eq!(sender.peer_node(), None);
    assert_eq!(
        (
            sender_stats.snapshot().sessions,
            listener_stats.snapshot().sessions
        ),
        (0, 0)
    );
}

#[tokio::test]
async fn idle_sockets_do_not_lock_a_real_peer_out() {
    // 16 idle connections from one address (127.0.0.2, on lo), then the
    // real peer from another: it must get a session long before the
    // handshake timeout would free a slot.
    let timing = Timing {
        handshake: Duration::from_secs(3),
        ..fast()
    };
    let (tx, mut rx) = mpsc::channel(8);
    let stats = Arc::new(SyncStats::new());
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
    let mut idle = Vec::new();
    for _ in 0..16 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
        idle.push(socket.connect(listener.local_addr()).await.unwrap());
    }
    sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    let master_stats = Arc::new(SyncStats::new());
    let sender = Sender::start_with(
        listener.local_addr(),
        config("lb-a", KEY),
        master_stats,
        timing,
    )
    .unwrap();
    timeout(
        timing.handshake / 3,
        sender.sessions().wait_for(|&n| n >= 1),
    )
    .await
    .expect("a session before the idle sockets' handshakes time out")
    .unwrap();
    assert!(start.elapsed() < timing.handshake / 3);
    sender.send(vec![record(1)], false);
    assert_eq!(
        as_sent(recv(&mut rx).await.records, &[record(1)]),
        [record(1)]
    );
    // The idle ones were cut at their first byte's deadline, not held
    // for the whole handshake time.
    wait_until("idle handshakes timed out", || {
        stats.snapshot().timeouts >= 4
    })
    .await;
    assert!(start.elapsed() < timing.handshake);
    drop(idle);
}

#[tokio::test]
async fn a_new_session_of_a_node_replaces_its_old_one() {
    let mut b = backup().await;
    let (first, _) = master(b.listener.local_addr(), KEY);
    wait_for_session(&first, 1).await;
    // The same node id again (a restarted peer whose old connection is
    // not yet known dead): the listener keeps only the newest.
    let (second, _) = master(b.listener.local_addr(), KEY);
    wait_for_session(&second, 1).await;
    wait_until("the old session cut", || !first.connected()).await;
    second.send(vec![record(7)], false);
    assert_eq!(
        as_sent(recv(&mut b.rx).await.records, &[record(7)]),
        [record(7)]
    );
    assert_eq!(b.stats.snapshot().sessions, 2);
}

/// Binds a listener at `addr` (a port freed a moment ago), retrying
/// while the kernel still holds it.
async fn listen_again(
    addr: SocketAddr,
    tx: mpsc::Sender<ReceivedBatch>,
    stats: Arc<SyncStats>,
) -> ListenerHandle {
    let start = Instant::now();
    loop {
        match listen_with(
            addr,
            Sources::Any,
            config("lb-b", KEY),
            tx.clone(),
            stats.clone(),
            fast(),
        )
        .await
        {
            Ok(l) => break l,
            Err(e) => {
                assert!(start.elapsed() < LIMIT, "rebinding: {e}");
                sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

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

/// A master's handshake halfway: its Hello sent (as an earlier
/// release's, unmarked), the listener's Hello and HelloAck read; the
/// listener waits for its HelloAck, holding a handshake slot.
struct HalfShaken {
    stream: TcpStream,
    node_id: String,
    nonce: wire::Nonce,
    peer_id: String,
    peer_nonce: wire::Nonce,
}

impl HalfShaken {
    /// Connects to `listener` from `from` and shakes hands halfway.
    async fn start(listener: SocketAddr, from: IpAddr, node_id: &str) -> Self {
        let socket = match from {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let mut stream = socket.connect(listener).await.unwrap();
        let nonce = wire::new_nonce();
        let hello = Message::Hello {
            version: wire::PROTOCOL_VERSION,
            node_id: node_id.into(),
            nonce,
        };
        stream
            .write_all(&wire::encode_frame(&hello.encode().unwrap()).unwrap())
            .await
            .unwrap();
        let mut buf = Vec::new();
        read_frame(&mut stream, &mut buf).await.unwrap();
        let Message::Hello {
            node_id: peer_id,
            nonce: peer_nonce,
            ..
        } = Message::decode(&buf).unwrap()
        else {
            panic!("the listener's Hello");
        };
        read_frame(&mut stream, &mut buf).await.unwrap();
        assert!(matches!(
            Message::decode(&buf).unwrap(),
            Message::HelloAck { .. }
        ));
        Self {
            stream,
            node_id: node_id.into(),
            nonce,
            peer_id,
            peer_nonce,
        }
    }

    /// Sends this master's proof: the handshake is done.
    async fn finish(mut self) -> TcpStream {
        let t = Transcript {
            master_nonce: &self.nonce,
            backup_nonce: &self.peer_nonce,
            master_id: &self.node_id,
            backup_id: &self.peer_id,
        };
        let proof = wire::hello_proof(KEY, Role::Master, &t).unwrap();
        let ack = Message::HelloAck { proof }.encode().unwrap();
        self.stream
            .write_all(&wire::encode_frame(&ack).unwrap())
            .await
            .unwrap();
        self.stream
    }
}

/// A client that sends its Hello and then nothing: it holds a handshake
/// slot until the handshake time runs out (the listener waits for its
/// HelloAck). Returns once the listener has answered (its Hello and
/// HelloAck read).
async fn stalled_handshake(listener: SocketAddr, from: impl Into<IpAddr>) -> TcpStream {
    HalfShaken::start(listener, from.into(), "mallory")
        .await
        .stream
}

#[tokio::test]
async fn stalled_handshakes_never_lock_a_real_peer_out() {
    // Handshakes that would hold their slots for the whole test.
    let timing = Timing {
        handshake: Duration::from_secs(600),
        ..fast()
    };
    let (tx, mut rx) = mpsc::channel(8);
    let stats = Arc::new(SyncStats::new());
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
    let addr = listener.local_addr();
    // Four hosts take every slot; then four more handshakes come from
    // the real peer's own address (another process on its host).
    let mut held = Vec::new();
    for host in 2..6 {
        for _ in 0..4 {
            held.push(stalled_handshake(addr, [127, 0, 0, host]).await);
        }
    }
    assert_eq!(stats.snapshot().refused, 0);
    for _ in 0..4 {
        held.push(stalled_handshake(addr, [127, 0, 0, 1]).await);
    }
    assert_eq!(stats.snapshot().refused, 4, "the oldest were cut");
    let sender = Sender::start_with(
        addr,
        config("lb-a", KEY),
        Arc::new(SyncStats::new()),
        timing,
    )
    .unwrap();
    wait_for_session(&sender, 1).await;
    assert_eq!(
        stats.snapshot().refused,
        5,
        "its address's oldest stalled handshake gave way"
    );
    sender.send(vec![record(1)], false);
    assert_eq!(
        as_sent(recv(&mut rx).await.records, &[record(1)]),
        [record(1)]
    );
    drop(held);
}

/// Configured peers in one IPv6 /64 (a mesh's nodes on one subnet) shake
/// hands while another configured address floods the listener: the
/// flood cuts its own handshakes only. Counted per /64, it cut theirs
/// (one budget of 4 for them all). In a network namespace of the test
/// thread's own, the addresses on its `lo`.
#[test]
fn configured_ipv6_peers_in_one_64_shake_hands_through_another_peers_flood() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    in_own_netns(|| {
        let node = |i: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, i));
        let (peers, flooder) = ((1..=5).map(node).collect::<Vec<_>>(), node(9));
        ip(&["link", "set", "lo", "up"]);
        for at in peers.iter().chain([&flooder, &node(100)]) {
            ip(&[
                "-6",
                "addr",
                "add",
                &format!("{at}/128"),
                "dev",
                "lo",
                "nodad",
            ]);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // An address's local route comes a moment after `ip` returns
            // (the kernel's work queue): wait until each carries a
            // connection to the listener's.
            let probe = TcpListener::bind(SocketAddr::new(node(100), 0))
                .await
                .unwrap();
            for &from in peers.iter().chain([&flooder]) {
                let start = Instant::now();
                loop {
                    let socket = tokio::net::TcpSocket::new_v6().unwrap();
                    socket.bind(SocketAddr::new(from, 0)).unwrap();
                    match socket.connect(probe.local_addr().unwrap()).await {
                        Ok(_) => break,
                        Err(error) => assert!(start.elapsed() < LIMIT, "{from}: {error}"),
                    }
                    sleep(Duration::from_millis(10)).await;
                }
            }
            drop(probe);
            let (tx, _rx) = mpsc::channel(8);
            let stats = Arc::new(SyncStats::new());
            let sources = Sources::Peers(peers.iter().copied().chain([flooder]).collect());
            // Handshakes that would hold their slots for the whole test
            // (their Hellos come at once, however loaded the machine).
            let timing = Timing {
                handshake: Duration::from_secs(600),
                first_byte: Duration::from_secs(600),
                ..fast()
            };
            let listener = listen_with(
                SocketAddr::new(node(100), 0),
                sources,
                config("lb-b", KEY),
                tx,
                stats.clone(),
                timing,
            )
            .await
            .unwrap();
            let addr = listener.local_addr();
            let mut shaking = Vec::new();
            for (i, &at) in peers.iter().enumerate() {
                shaking.push(HalfShaken::start(addr, at, &format!("lb-{i}")).await);
            }
            let mut flood = Vec::new();
            for _ in 0..3 * super::MAX_HANDSHAKES_PER_SOURCE {
                flood.push(stalled_handshake(addr, flooder).await);
            }
            assert_eq!(
                stats.snapshot().refused,
                u64::try_from(2 * super::MAX_HANDSHAKES_PER_SOURCE).unwrap(),
                "the flood cut its own oldest handshakes, and no other"
            );
            let mut done = Vec::new();
            for half in shaking {
                done.push(half.finish().await);
            }
            wait_until("every peer's session", || {
                stats.snapshot().sessions == u64::try_from(peers.len()).unwrap()
            })
            .await;
            assert_eq!(stats.snapshot().auth_failures, 0);
            drop((flood, done));
        });
    });
}

#[tokio::test]
async fn only_the_configured_peers_may_shake_hands() {
    let (tx, mut rx) = mpsc::channel(8);
    let stats = Arc::new(SyncStats::new());
    let peer: IpAddr = Ipv4Addr::new(127, 0, 0, 3).into();
    let listener = listen_with(
        local(),
        Sources::Peers(vec![peer]),
        config("lb-b", KEY),
        tx,
        stats.clone(),
        fast(),
    )
    .await
    .unwrap();
    let addr = listener.local_addr();
    // A stranger is closed at once, before the listener's Hello.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
    let mut stranger = socket.connect(addr).await.unwrap();
    let mut got = Vec::new();
    timeout(LIMIT, stranger.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(got.is_empty(), "no Hello for a stranger");
    assert_eq!(stats.snapshot().refused, 1);
    // The peer, connecting from its listen address, gets its session.
    let sender = Sender::spawn(
        addr,
        Some(SocketAddr::new(peer, 0)),
        config("lb-a", KEY),
        Arc::new(SyncStats::new()),
        fast(),
    )
    .unwrap();
    wait_for_session(&sender, 1).await;
    sender.send(vec![record(2)], false);
    assert_eq!(
        as_sent(recv(&mut rx).await.records, &[record(2)]),
        [record(2)]
    );
    assert_eq!(stats.snapshot().sessions, 1);
}

/// A sender whose peer closes its connections before a Hello (the
/// peer's listener does not list this node) knows it is refused, which
/// it logs as such; once the peer lets it in (a reload of its peers), the
/// session comes up and the refusal is over.
#[tokio::test]
async fn a_sender_the_peer_refuses_knows_it_and_joins_once_let_in() {
    let (tx, mut rx) = mpsc::channel(8);
    let stats = Arc::new(SyncStats::new());
    let peer: IpAddr = Ipv4Addr::new(127, 0, 0, 3).into();
    let joining: IpAddr = Ipv4Addr::new(127, 0, 0, 4).into();
    let listener = listen_with(
        local(),
        Sources::Peers(vec![peer]),
        config("lb-b", KEY),
        tx,
        stats.clone(),
        fast(),
    )
    .await
    .unwrap();
    let sender = Sender::spawn(
        listener.local_addr(),
        Some(SocketAddr::new(joining, 0)),
        config("lb-c", KEY),
        Arc::new(SyncStats::new()),
        fast(),
    )
    .unwrap();
    wait_until("the refusal", || sender.refused()).await;
    assert!(!sender.connected());
    listener.set_sources(Sources::Peers(vec![peer, joining]));
    wait_for_session(&sender, 1).await;
    assert!(!sender.refused());
    sender.send(vec![record(3)], false);
    assert_eq!(
        as_sent(recv(&mut rx).await.records, &[record(3)]),
        [record(3)]
    );
}

#[test]
fn only_a_session_healthy_for_a_silence_period_resets_the_reconnect_backoff() {
    let timing = fast();
    let ms = Duration::from_millis;
    let mut backoff = Backoff::new(timing);
    assert_eq!(backoff.after(None), (ms(20), false));
    assert_eq!(backoff.after(None), (ms(40), true));
    // Sessions cut right after their handshake (a listener refusing
    // them), or whose writes never got through (one timing out after a
    // silence period): healthy for less, the delay still grows.
    assert_eq!(backoff.after(Some(ms(1))), (ms(80), true));
    assert_eq!(backoff.after(Some(timing.silence - ms(1))), (ms(100), true));
    assert_eq!(backoff.after(Some(Duration::ZERO)), (ms(100), true));
    // One healthy for a silence period starts over.
    assert_eq!(backoff.after(Some(timing.silence)), (ms(20), false));
    assert_eq!(backoff.after(Some(ms(1))), (ms(40), true));
}

/// A backup too slow to drain its receive queue: each session's writes
/// stall and time out after a silence period, so every session lasts
/// that long. None resets the backoff (the storm it would make: a
/// reconnect `backoff_min` after each timeout, and the whole table dumped
/// again each time): the delay between them doubles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_whose_writes_time_out_never_reset_the_reconnect_backoff() {
    let timing = Timing {
        silence: Duration::from_millis(300),
        backoff_min: Duration::from_millis(150),
        backoff_max: Duration::from_secs(10),
        ..fast()
    };
    // A receive queue of one, never read: the listener stops reading
    // each session after its first frame (its heartbeats go on).
    let (tx, _stuck) = mpsc::channel(1);
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
    let stats = Arc::new(SyncStats::new());
    let sender = Sender::start_with(
        listener.local_addr(),
        config("lb-a", KEY),
        stats.clone(),
        timing,
    )
    .unwrap();
    // More than the sockets' buffers hold: put back after each failed
    // write, it stalls every session.
    sender.send((0..300_000).map(record).collect(), false);
    let mut sessions = sender.sessions();
    let mut starts = Vec::new();
    for n in 1..=4 {
        timeout(LIMIT, sessions.wait_for(|&got| got >= n))
            .await
            .expect("session in time")
            .expect("sender alive");
        starts.push(Instant::now());
    }
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // Each session lasts its write's timeout, then the delays are 1, 2
    // and 4 times the first: the third gap is at least `silence + 4 ×
    // backoff_min` (reset after each session, `silence + backoff_min`).
    // Asking for 2 × leaves room for the time a session's start takes
    // to be seen here on a loaded machine.
    let third = gaps[2];
    assert!(
        third >= timing.silence + timing.backoff_min * 2,
        "the fourth session came {third:?} after the third (gaps {gaps:?})"
    );
    assert!(stats.snapshot().timeouts >= 3, "{:?}", stats.snapshot());
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

/// A Hello frame of `node_id`, as a peer of this release would send it.
fn hello_frame(node_id: &str) -> Vec<u8> {
    let hello = Message::Hello {
        version: wire::PROTOCOL_VERSION,
        node_id: node_id.into(),
        nonce: wire::new_nonce(),
    };
    wire::encode_frame(&hello.encode().unwrap()).unwrap()
}

/// A handshake frame announcing the session's frame limit (1 MiB) is
/// refused from its header, before anything is allocated for its body:
/// anyone who reaches the port could otherwise make the listener hold
/// 1 MiB per handshake slot without the key. Checked for the Hello and
/// the HelloAck, at both ends.
#[tokio::test]
async fn handshake_frames_above_the_largest_hello_are_refused_from_their_header() {
    let huge = u32::try_from(wire::MAX_FRAME_LEN).unwrap().to_be_bytes();
    let just_above = u32::try_from(wire::MAX_HANDSHAKE_FRAME_LEN + 1)
        .unwrap()
        .to_be_bytes();
    for header in [huge, just_above] {
        let after_hello = [hello_frame("lb-a"), header.to_vec()].concat();
        for (role, input) in [
            (Role::Backup, header.to_vec()),
            (Role::Master, header.to_vec()),
            (Role::Backup, after_hello),
        ] {
            let mut rd = &input[..];
            let mut wr = tokio::io::sink();
            let result = handshake(&mut rd, &mut wr, role, &config("lb-b", KEY)).await;
            assert!(
                matches!(
                    result,
                    Err(SyncError::Wire(wire::WireError::FrameLength { .. }))
                ),
                "{role:?}, header {header:?}: {:?}",
                result.err()
            );
        }
    }
    // The largest Hello still fits.
    let longest = "x".repeat(wire::MAX_NODE_ID_LEN);
    assert_eq!(
        hello_frame(&longest).len(),
        wire::FRAME_HEADER_LEN + wire::MAX_HANDSHAKE_FRAME_LEN
    );
}
