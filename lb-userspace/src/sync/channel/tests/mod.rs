//! Tests of the replication channel between two nodes, one file per
//! concern; the peers, records and waits they share live here.

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
    BatchKind, Closed, Dump, Read, ReceivedBatch, Sender, Sources, Timing,
    MAX_HANDSHAKES_PER_SOURCE, SEND_QUEUE_CAPACITY, SEND_QUEUE_RECORDS,
};
use crate::clock::monotonic_ns;
use crate::sync::{
    nat_record::tests::nat_record,
    wire::{self, Message, Role, Transcript, Versions, MAX_BATCH_RECORDS},
    FlowRecord, NatFlowRecord, SyncConfig, SyncError, SyncStats, SyncStatsSnapshot,
};
use crate::test_netns::{in_own_netns, ip, is_root};

mod delivery;
mod full_syncs;
mod hostile_peers;
mod lockout;
mod old_peers;
mod peer_admission;
mod reconnect_backoff;
mod send_queue;
mod sender_lifecycle;
mod setup_errors;
mod tampering;
mod version_refusals;

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

fn versions(min: u16, max: u16) -> Versions {
    Versions::new(min, max).unwrap()
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
