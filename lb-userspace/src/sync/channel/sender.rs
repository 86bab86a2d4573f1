//! The master's side: a `Sender` keeps a connection to one backup
//! (reconnecting with backoff) and streams the batches it is given through
//! its queue.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Instant,
};

use tokio::{
    io::BufReader,
    net::TcpStream,
    runtime::Handle,
    sync::{watch, Notify},
    task::JoinHandle,
    time::{sleep, timeout},
};
use tracing::{debug, info, info_span, Instrument};

use super::{
    queue::{QueuedBatch, Records, SendQueue},
    session::{handshake_timed, log_session_end, run_session},
    Timing, READ_BUFFER, SEND_QUEUE_CAPACITY, SEND_QUEUE_RECORDS,
};
use crate::sync::{
    wire::Role, Counter, FlowRecord, NatFlowRecord, SyncConfig, SyncError, SyncStats,
};

/// Which batch a daemon's scan gives the sender ([`Sender::send_read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dump {
    /// Incremental: the flows touched since the last scan.
    Incremental,
    /// A periodic full sync: a full mesh's leaves out the copies of other
    /// nodes' flows, so it never stands in for a session's dump: queued
    /// while one waits, it is dropped (the batches after that dump and
    /// the next periodic one bring what it carried).
    Periodic,
    /// A new session's full sync: everything, copies included (a node
    /// that joins or comes back learns the flows of a node that is gone).
    Session,
}

impl Dump {
    /// A batch given to [`Sender::send`]: its full sync is complete.
    fn given(full_sync: bool) -> Self {
        if full_sync {
            Dump::Session
        } else {
            Dump::Incremental
        }
    }

    /// Whether the batch is a full sync (flagged so on the wire).
    fn full_sync(self) -> bool {
        self != Dump::Incremental
    }

    /// Whether it leaves nothing out (see `QueuedBatch::complete`).
    fn complete(self) -> bool {
        self == Dump::Session
    }
}

/// How the records of a batch given to [`Sender::send_read`] were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read {
    /// Incremental, or which full sync.
    pub(crate) dump: Dump,
    /// The session during which they were read: the value
    /// [`Sender::sessions`] had when the walk that read them started. A
    /// full sync read before the current session never goes out.
    pub(crate) session: u64,
    /// When the records' ages were taken (the walk's start): the time
    /// since is added to them when they go out.
    pub(crate) at: Instant,
}

/// What the [`Sender`] shares with its task.
struct SenderShared {
    queue: SendQueue,
    connected: AtomicBool,
    sessions: watch::Sender<u64>,
    /// The peer's node id, as its last handshake authenticated it.
    peer_node: Mutex<Option<String>>,
}

/// Master side: keeps a connection to the peer (reconnecting with backoff
/// from 100 ms to 5 s) and sends what it is given. Dropping it stops the
/// task and closes the connection.
pub struct Sender {
    shared: Arc<SenderShared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("connected", &self.connected())
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// Starts the task that connects to `peer`. Fails on an invalid config
    /// or outside a tokio runtime; connection failures are retried, not
    /// returned.
    pub fn start(
        peer: SocketAddr,
        config: SyncConfig,
        stats: Arc<SyncStats>,
    ) -> Result<Sender, SyncError> {
        Self::start_with(peer, config, stats, Timing::default())
    }

    pub(crate) fn start_with(
        peer: SocketAddr,
        config: SyncConfig,
        stats: Arc<SyncStats>,
        timing: Timing,
    ) -> Result<Sender, SyncError> {
        config.validate()?;
        let runtime = Handle::try_current().map_err(|_| SyncError::NoRuntime)?;
        let shared = Arc::new(SenderShared {
            queue: SendQueue {
                batches: Mutex::new(VecDeque::new()),
                notify: Notify::new(),
                capacity: SEND_QUEUE_CAPACITY,
                max_records: SEND_QUEUE_RECORDS,
                stats: stats.clone(),
                writing: AtomicBool::new(false),
                sessions: AtomicU64::new(0),
            },
            connected: AtomicBool::new(false),
            sessions: watch::Sender::new(0),
            peer_node: Mutex::new(None),
        });
        let task = runtime.spawn(
            run_sender(peer, config, stats, shared.clone(), timing)
                .instrument(info_span!("sync_sender", %peer)),
        );
        Ok(Sender { shared, task })
    }

    /// Queues `records` to go out (split into frames of at most
    /// [`MAX_BATCH_RECORDS`](crate::sync::wire::MAX_BATCH_RECORDS)),
    /// without waiting. `full_sync` marks a complete dump of the flows (an
    /// empty one is sent too: "no flows");
    /// an empty incremental batch is ignored. When the queue holds
    /// [`SEND_QUEUE_CAPACITY`] batches, the oldest incremental one is
    /// dropped and counted: send a full sync after a drop to repair it.
    ///
    /// Incremental batches wait in the queue while the peer is down; a full
    /// sync queued then is dropped when the next session starts (it would
    /// pass for that session's dump, which the daemon sends on each new
    /// [`Sender::sessions`]). The records' ages are taken as of this call:
    /// the time until their frame is written is added to them. One cut off by a broken connection is sent
    /// again, whole, on the next session (records are state, so a repeat
    /// is harmless); but frames written just before a connection dies may
    /// be lost unnoticed (there are no acks), which is why the daemon
    /// sends a full sync on each new session.
    pub fn send(&self, records: Vec<FlowRecord>, full_sync: bool) {
        self.queue(
            Records::Flows(records),
            Dump::given(full_sync),
            None,
            Instant::now(),
        );
    }

    /// [`Sender::send`] for records read as `read` says: a full sync read
    /// before the current session is dropped (see [`Sender::send`]), also
    /// when it is queued after the session began; a periodic dump never
    /// takes the place of a session's dump still queued (it is dropped
    /// instead: see [`Dump::Periodic`]).
    pub(crate) fn send_read(&self, records: Vec<FlowRecord>, read: Read) {
        self.queue(
            Records::Flows(records),
            read.dump,
            Some(read.session),
            read.at,
        );
    }

    /// Queues NAT'd flows to go out as NatBatch frames, with the same
    /// rules as [`Sender::send`] (a full sync here is a complete dump of
    /// the NAT flows).
    pub fn send_nat(&self, records: Vec<NatFlowRecord>, full_sync: bool) {
        self.queue(
            Records::Nat(records),
            Dump::given(full_sync),
            None,
            Instant::now(),
        );
    }

    /// [`Sender::send_nat`] for records read as `read` says, as
    /// [`Sender::send_read`].
    pub(crate) fn send_nat_read(&self, records: Vec<NatFlowRecord>, read: Read) {
        self.queue(
            Records::Nat(records),
            read.dump,
            Some(read.session),
            read.at,
        );
    }

    fn queue(&self, records: Records, dump: Dump, read_in: Option<u64>, aged_at: Instant) {
        if records.is_empty() && dump == Dump::Incremental {
            return;
        }
        self.shared.queue.push(QueuedBatch {
            full_sync: dump.full_sync(),
            complete: dump.complete(),
            records,
            read_in,
            aged_at,
        });
    }

    /// Whether a session is up (handshake passed, not yet closed).
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// The peer's node id, once a handshake authenticated it (kept after
    /// the session ends; the next handshake replaces it). It names the
    /// batches this node receives from that peer
    /// ([`ReceivedBatch::peer`](super::ReceivedBatch::peer)), since every
    /// lbd uses one node id for both directions.
    pub fn peer_node(&self) -> Option<String> {
        self.shared
            .peer_node
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Batches waiting to be sent.
    pub(crate) fn queued(&self) -> usize {
        self.shared.queue.len()
    }

    /// Whether everything given so far has been written to the peer's
    /// connection (a node stepping down waits for this, briefly).
    pub(crate) fn is_flushed(&self) -> bool {
        self.shared.queue.is_idle()
    }

    /// The number of sessions established so far, changing with each new
    /// one: the peer may have missed batches while the link was down (or
    /// be a restarted backup), so the daemon sends a full sync on each
    /// change. A new number is published only once the full syncs queued
    /// before the session are dropped; pass the number a walk started
    /// with to [`Sender::send_read`] / [`Sender::send_nat_read`].
    pub(crate) fn sessions(&self) -> watch::Receiver<u64> {
        self.shared.sessions.subscribe()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run_sender(
    peer: SocketAddr,
    config: SyncConfig,
    stats: Arc<SyncStats>,
    shared: Arc<SenderShared>,
    timing: Timing,
) {
    let mut backoff = timing.backoff_min;
    let mut failures_in_a_row: u64 = 0;
    loop {
        let (established, error) = connect_once(peer, &config, &stats, &shared, timing).await;
        shared.connected.store(false, Ordering::Relaxed);
        stats.count_error(&error);
        if established {
            backoff = timing.backoff_min;
            failures_in_a_row = 0;
        }
        log_session_end(&error, failures_in_a_row > 0);
        failures_in_a_row = failures_in_a_row.saturating_add(1);
        debug!(?backoff, "reconnecting to the sync peer");
        sleep(backoff).await;
        backoff = backoff.saturating_mul(2).min(timing.backoff_max);
        stats.add(Counter::Reconnects, 1);
    }
}

/// Connects, shakes hands and runs a session; returns whether a session
/// was established, and why it ended.
async fn connect_once(
    peer: SocketAddr,
    config: &SyncConfig,
    stats: &SyncStats,
    shared: &SenderShared,
    timing: Timing,
) -> (bool, SyncError) {
    let stream = match timeout(timing.connect, TcpStream::connect(peer)).await {
        Err(_) => {
            return (
                false,
                SyncError::Timeout {
                    what: "connect",
                    after: timing.connect,
                },
            )
        }
        Ok(Err(source)) => {
            return (
                false,
                SyncError::Io {
                    action: "connecting to the sync peer",
                    source,
                },
            )
        }
        Ok(Ok(stream)) => stream,
    };
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "setting TCP_NODELAY failed");
    }
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
    let session = match handshake_timed(&mut rd, &mut wr, Role::Master, config, timing, None).await
    {
        Ok(session) => session,
        Err(error) => return (false, error),
    };
    stats.add(Counter::Sessions, 1);
    *shared
        .peer_node
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(session.peer_id.clone());
    // Full syncs queued before the session go before it counts (see
    // SendQueue::begin_session).
    let number = shared.queue.begin_session();
    shared.connected.store(true, Ordering::Relaxed);
    shared.sessions.send_replace(number);
    info!(peer_node = %session.peer_id, queued = shared.queue.len(), "sync session established");
    let result = run_session(
        &mut rd,
        &mut wr,
        session,
        None,
        Some(&shared.queue),
        stats,
        timing,
    )
    .await;
    // A session only ends in error; Ok cannot happen, but is not a panic.
    (true, result.err().unwrap_or(SyncError::Closed))
}
