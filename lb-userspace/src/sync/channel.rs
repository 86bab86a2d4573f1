//! The sync channel's tokio tasks: the backup's [`listen`]er, which accepts
//! masters and hands their batches to the daemon, and the master's
//! [`Sender`], which keeps a connection to the backup (reconnecting with
//! backoff) and streams the batches it is given from a bounded queue.
//!
//! Both ends run the same session once connected: the handshake of
//! [`wire`], then a reader and a writer. Each side sends a heartbeat every
//! second; a peer silent for five seconds (or a write stuck as long) closes
//! the connection, and the sender connects again. Any authentication or
//! decoding error closes the connection too, logged and counted.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    runtime::Handle,
    sync::{mpsc, watch, Notify},
    task::{JoinHandle, JoinSet},
    time::{interval, sleep, timeout, MissedTickBehavior},
};
use tracing::{debug, error, info, info_span, trace, warn, Instrument};

use super::{
    count_of,
    wire::{self, Message, Opener, Role, Sealer, Transcript, MAX_BATCH_RECORDS},
    Counter, FlowRecord, NatFlowRecord, SyncConfig, SyncError, SyncStats,
};

/// Batches the sender queues (each one `send` call, of any size) before it
/// drops the oldest incremental one.
pub(crate) const SEND_QUEUE_CAPACITY: usize = 64;
/// Records a sender queues beyond its newest full sync of each kind
/// (flows, NAT flows) before it drops the oldest incremental batch.
///
/// With [`SEND_QUEUE_CAPACITY`] this bounds one peer's queue: at most
/// the newest complete dump of each kind (a queued full sync drops every
/// older batch of its kind, which it supersedes) plus this many records,
/// i.e. at most `D + 65,536 × 208` bytes, where `D` is one dump (64
/// bytes per tracked flow, the size of a [`FlowRecord`], plus 208 per
/// NAT'd flow, a [`NatFlowRecord`]) and 208 the larger record size: 13 MiB
/// beyond the dump (4 MiB when only flows are queued). A full mesh keeps
/// one queue per peer: at most `N × (D + 13 MiB)` for N peers (a dump is
/// built once per tick and copied into each peer's queue). A slow or dead peer loses its oldest incremental batches
/// (counted in `dropped_batches`); the next full sync repairs it, and
/// the others are not held back (each peer has its own queue and task).
pub(crate) const SEND_QUEUE_RECORDS: usize = 65_536;
/// Connections a listener serves at once: bounds what unauthenticated
/// clients can hold.
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// Read buffer of a connection.
const READ_BUFFER: usize = 64 * 1024;

/// The channel's timers. Fixed in production; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// Silence after which a peer is taken for dead; also the longest a
    /// frame write may take.
    pub silence: Duration,
    /// Longest a handshake may take.
    pub handshake: Duration,
    /// Longest a TCP connect may take.
    pub connect: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(1),
            silence: Duration::from_secs(5),
            handshake: Duration::from_secs(5),
            connect: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// A batch as the backup receives it: one frame's worth of records (at
/// most [`MAX_BATCH_RECORDS`]), from an authenticated master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedBatch {
    /// The master's node id (as authenticated by the handshake).
    pub peer: String,
    /// Which records the frame carried (an empty full sync carries none,
    /// so only this tells which dump it completes).
    pub kind: BatchKind,
    /// Part of a full sync: a complete dump of the master's flows.
    pub full_sync: bool,
    /// The last frame of one batch the master was given (a batch above
    /// [`MAX_BATCH_RECORDS`] arrives as several frames); with `full_sync`,
    /// the full sync is complete.
    pub last: bool,
    /// The flows, in the master's order (empty in a NAT batch).
    pub records: Vec<FlowRecord>,
    /// The NAT'd flows, in the master's order (empty in a flow batch).
    pub nat: Vec<NatFlowRecord>,
}

/// The records a [`ReceivedBatch`] carries, as its frame's type says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchKind {
    /// Tracked flows (a Batch frame).
    Flows,
    /// NAT'd flows (a NatBatch frame).
    Nat,
}

/// The running listener; dropping it stops accepting and closes every
/// connection.
#[derive(Debug)]
pub struct ListenerHandle {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ListenerHandle {
    /// The address bound, so a listener on port 0 can be found.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Backup side: binds `addr`, accepts connections from the master(s) and
/// sends each authenticated batch to `batches`, one per frame, in order. A
/// full `batches` channel holds the connection back (TCP pushes back on
/// the master, whose write times out after 5 s and reconnects); a closed
/// one stops the listener.
pub async fn listen(
    addr: SocketAddr,
    config: SyncConfig,
    batches: mpsc::Sender<ReceivedBatch>,
    stats: Arc<SyncStats>,
) -> Result<ListenerHandle, SyncError> {
    listen_with(addr, config, batches, stats, Timing::default()).await
}

pub(crate) async fn listen_with(
    addr: SocketAddr,
    config: SyncConfig,
    batches: mpsc::Sender<ReceivedBatch>,
    stats: Arc<SyncStats>,
    timing: Timing,
) -> Result<ListenerHandle, SyncError> {
    config.validate()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| SyncError::Io {
            action: "binding the sync listener",
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| SyncError::Io {
        action: "reading the sync listener's address",
        source,
    })?;
    info!(%local_addr, node = %config.node_id, "sync listener started");
    let task = tokio::spawn(
        accept_loop(listener, Arc::new(config), batches, stats, timing)
            .instrument(info_span!("sync_listener", %local_addr)),
    );
    Ok(ListenerHandle { local_addr, task })
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<SyncConfig>,
    batches: mpsc::Sender<ReceivedBatch>,
    stats: Arc<SyncStats>,
    timing: Timing,
) {
    // Owned here, so aborting this task aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= MAX_CONNECTIONS {
                        warn!(%peer, limit = MAX_CONNECTIONS, "sync connection refused: too many connections");
                        continue;
                    }
                    debug!(%peer, "sync connection accepted");
                    connections.spawn(
                        serve(stream, config.clone(), batches.clone(), stats.clone(), timing)
                            .instrument(info_span!("sync_connection", %peer)),
                    );
                }
                Err(error) => {
                    // Out of descriptors and the like: wait, do not spin.
                    warn!(%error, "accepting a sync connection failed");
                    sleep(timing.backoff_min).await;
                }
            },
            Some(done) = connections.join_next() => {
                if let Err(error) = done {
                    if error.is_panic() {
                        error!(%error, "a sync connection task panicked");
                    }
                }
            }
            () = batches.closed() => {
                info!("batch receiver dropped: sync listener stops");
                return;
            }
        }
    }
}

/// One accepted connection, from handshake to close.
async fn serve(
    stream: TcpStream,
    config: Arc<SyncConfig>,
    batches: mpsc::Sender<ReceivedBatch>,
    stats: Arc<SyncStats>,
    timing: Timing,
) {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "setting TCP_NODELAY failed");
    }
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
    let result = async {
        let session = handshake_timed(&mut rd, &mut wr, Role::Backup, &config, timing).await?;
        stats.add(Counter::Sessions, 1);
        info!(peer_node = %session.peer_id, "sync session established");
        run_session(
            &mut rd,
            &mut wr,
            session,
            Some(&batches),
            None,
            &stats,
            timing,
        )
        .await
    }
    .await;
    if let Err(error) = result {
        stats.count_error(&error);
        log_session_end(&error, false);
    }
}

/// Logs why a connection ended at a level fitting the cause: attacks
/// and misconfiguration (authentication, protocol) always as errors, the
/// network's ordinary failures as warnings, or at debug level when
/// `repeated` (a sender retrying a peer that stays down).
fn log_session_end(error: &SyncError, repeated: bool) {
    match error {
        SyncError::Auth(_) => error!(%error, "sync connection closed: authentication failed"),
        SyncError::Wire(_) | SyncError::Version { .. } | SyncError::Unexpected { .. } => {
            error!(%error, "sync connection closed: protocol error")
        }
        SyncError::Closed | SyncError::ReceiverClosed if !repeated => {
            info!(%error, "sync connection closed")
        }
        SyncError::Timeout { .. }
        | SyncError::Io { .. }
        | SyncError::Config(_)
        | SyncError::NoRuntime
            if !repeated =>
        {
            warn!(%error, "sync connection closed")
        }
        _ => debug!(%error, "sync connection closed again"),
    }
}

/// The outcome of a handshake: who the peer is and the session's keys.
struct Session {
    peer_id: String,
    sealer: Sealer,
    opener: Opener,
}

async fn handshake_timed<R, W>(
    rd: &mut R,
    wr: &mut W,
    role: Role,
    config: &SyncConfig,
    timing: Timing,
) -> Result<Session, SyncError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    timeout(timing.handshake, handshake(rd, wr, role, config))
        .await
        .map_err(|_| SyncError::Timeout {
            what: "handshake",
            after: timing.handshake,
        })?
}

/// Both ends: send Hello, read the peer's, send our proof over both,
/// read and check the peer's. Nothing from the peer is trusted before its
/// proof checks out.
async fn handshake<R, W>(
    rd: &mut R,
    wr: &mut W,
    role: Role,
    config: &SyncConfig,
) -> Result<Session, SyncError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let nonce = wire::new_nonce();
    let hello = Message::Hello {
        version: wire::PROTOCOL_VERSION,
        node_id: config.node_id.clone(),
        nonce,
    };
    write_frame(wr, &wire::encode_frame(&hello.encode()?)?).await?;

    let mut buf = Vec::new();
    read_frame(rd, &mut buf).await?;
    let (peer_id, peer_nonce) = match Message::decode(&buf)? {
        Message::Hello {
            version,
            node_id,
            nonce,
        } => {
            if version != wire::PROTOCOL_VERSION {
                return Err(SyncError::Version {
                    ours: wire::PROTOCOL_VERSION,
                    theirs: version,
                });
            }
            (node_id, nonce)
        }
        other => {
            return Err(SyncError::Unexpected {
                kind: other.kind(),
                phase: "handshake (expected Hello)",
            })
        }
    };
    if peer_nonce == nonce {
        return Err(wire::AuthError::ReflectedNonce.into());
    }
    let transcript = match role {
        Role::Master => Transcript {
            master_nonce: &nonce,
            backup_nonce: &peer_nonce,
            master_id: &config.node_id,
            backup_id: &peer_id,
        },
        Role::Backup => Transcript {
            master_nonce: &peer_nonce,
            backup_nonce: &nonce,
            master_id: &peer_id,
            backup_id: &config.node_id,
        },
    };
    let proof = wire::hello_proof(&config.key, role, &transcript)?;
    write_frame(
        wr,
        &wire::encode_frame(&Message::HelloAck { proof }.encode()?)?,
    )
    .await?;

    read_frame(rd, &mut buf).await?;
    let peer_proof = match Message::decode(&buf)? {
        Message::HelloAck { proof } => proof,
        other => {
            return Err(SyncError::Unexpected {
                kind: other.kind(),
                phase: "handshake (expected HelloAck)",
            })
        }
    };
    wire::verify_hello_proof(&config.key, role.peer(), &transcript, &peer_proof)?;
    let (sealer, opener) = wire::session(&config.key, role, &transcript)?;
    Ok(Session {
        peer_id,
        sealer,
        opener,
    })
}

/// Reads one frame's body into `buf`. A peer that closes between frames
/// is [`SyncError::Closed`]; anywhere else it is an I/O error.
async fn read_frame<R>(rd: &mut R, buf: &mut Vec<u8>) -> Result<(), SyncError>
where
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; wire::FRAME_HEADER_LEN];
    let got = rd.read(&mut header).await.map_err(|source| SyncError::Io {
        action: "reading a frame header",
        source,
    })?;
    if got == 0 {
        return Err(SyncError::Closed);
    }
    if let Some(rest) = header.get_mut(got..) {
        rd.read_exact(rest).await.map_err(|source| SyncError::Io {
            action: "reading a frame header",
            source,
        })?;
    }
    let len = wire::frame_len(header)?;
    buf.clear();
    buf.resize(len, 0);
    rd.read_exact(buf).await.map_err(|source| SyncError::Io {
        action: "reading a frame body",
        source,
    })?;
    Ok(())
}

async fn write_frame<W>(wr: &mut W, frame: &[u8]) -> Result<(), SyncError>
where
    W: AsyncWrite + Unpin,
{
    wr.write_all(frame).await.map_err(|source| SyncError::Io {
        action: "writing a frame",
        source,
    })?;
    wr.flush().await.map_err(|source| SyncError::Io {
        action: "flushing a frame",
        source,
    })
}

async fn write_frame_timed<W>(wr: &mut W, frame: &[u8], timing: Timing) -> Result<(), SyncError>
where
    W: AsyncWrite + Unpin,
{
    timeout(timing.silence, write_frame(wr, frame))
        .await
        .map_err(|_| SyncError::Timeout {
            what: "frame write",
            after: timing.silence,
        })?
}

/// Where a backup's session delivers batches.
#[derive(Clone, Copy)]
struct Incoming<'a> {
    batches: &'a mpsc::Sender<ReceivedBatch>,
    peer: &'a str,
}

impl Incoming<'_> {
    /// A received frame's records, as the daemon gets them.
    fn batch(
        &self,
        kind: BatchKind,
        full_sync: bool,
        last: bool,
        records: Vec<FlowRecord>,
        nat: Vec<NatFlowRecord>,
    ) -> ReceivedBatch {
        ReceivedBatch {
            peer: self.peer.to_owned(),
            kind,
            full_sync,
            last,
            records,
            nat,
        }
    }
}

/// An established session: reads until error while writing heartbeats and
/// (for a master, given `outgoing`) the queue's batches; a backup, given
/// `batches`, delivers what it reads there. Returns why it ended.
async fn run_session<R, W>(
    rd: &mut R,
    wr: &mut W,
    session: Session,
    batches: Option<&mpsc::Sender<ReceivedBatch>>,
    outgoing: Option<&SendQueue>,
    stats: &SyncStats,
    timing: Timing,
) -> Result<(), SyncError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Session {
        peer_id,
        sealer,
        opener,
    } = session;
    let incoming = batches.map(|batches| Incoming {
        batches,
        peer: &peer_id,
    });
    // Both futures live until one fails; neither is cancelled mid-frame
    // except when the whole session ends.
    tokio::select! {
        r = read_loop(rd, opener, incoming, stats, timing) => r,
        w = write_loop(wr, sealer, outgoing, stats, timing) => w,
    }
}

async fn read_loop<R>(
    rd: &mut R,
    mut opener: Opener,
    incoming: Option<Incoming<'_>>,
    stats: &SyncStats,
    timing: Timing,
) -> Result<(), SyncError>
where
    R: AsyncRead + Unpin,
{
    let mut buf = Vec::new();
    loop {
        timeout(timing.silence, read_frame(rd, &mut buf))
            .await
            .map_err(|_| SyncError::Timeout {
                what: "waiting for the peer (silent)",
                after: timing.silence,
            })??;
        match opener.open(&buf)? {
            Message::Heartbeat { seq } => trace!(seq, "heartbeat received"),
            message @ (Message::Batch { .. } | Message::NatBatch { .. }) => {
                let kind = message.kind();
                let Some(incoming) = incoming else {
                    return Err(SyncError::Unexpected {
                        kind,
                        phase: "session (a backup sends no batches)",
                    });
                };
                let (seq, batch) = match message {
                    Message::Batch {
                        seq,
                        full_sync,
                        last,
                        records,
                    } => (
                        seq,
                        incoming.batch(BatchKind::Flows, full_sync, last, records, Vec::new()),
                    ),
                    Message::NatBatch {
                        seq,
                        full_sync,
                        last,
                        records,
                    } => (
                        seq,
                        incoming.batch(BatchKind::Nat, full_sync, last, Vec::new(), records),
                    ),
                    other => {
                        return Err(SyncError::Unexpected {
                            kind: other.kind(),
                            phase: "session",
                        })
                    }
                };
                let count = batch.records.len() + batch.nat.len();
                stats.add(Counter::BatchesReceived, 1);
                stats.add(Counter::RecordsReceived, count_of(count));
                debug!(
                    seq,
                    kind,
                    full_sync = batch.full_sync,
                    last = batch.last,
                    records = count,
                    "batch received"
                );
                incoming
                    .batches
                    .send(batch)
                    .await
                    .map_err(|_| SyncError::ReceiverClosed)?;
            }
            other => {
                return Err(SyncError::Unexpected {
                    kind: other.kind(),
                    phase: "session",
                })
            }
        }
    }
}

async fn write_loop<W>(
    wr: &mut W,
    mut sealer: Sealer,
    outgoing: Option<&SendQueue>,
    stats: &SyncStats,
    timing: Timing,
) -> Result<(), SyncError>
where
    W: AsyncWrite + Unpin,
{
    let mut ticker = interval(timing.heartbeat);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        if let Some(queue) = outgoing {
            if let Some(batch) = queue.pop() {
                // Until sent in full, the batch goes back to the queue if
                // this fails or the session ends (reader error) meanwhile.
                let mut in_flight = InFlight {
                    queue,
                    batch: Some(batch),
                };
                if let Some(batch) = &in_flight.batch {
                    send_batch(wr, &mut sealer, batch, stats, timing).await?;
                }
                in_flight.batch = None;
                continue;
            }
        }
        tokio::select! {
            _ = ticker.tick() => {
                let frame = sealer.heartbeat()?;
                write_frame_timed(wr, &frame, timing).await?;
                trace!(seq = sealer.next_seq().saturating_sub(1), "heartbeat sent");
            }
            () = wait_for_batches(outgoing) => {}
        }
    }
}

async fn wait_for_batches(outgoing: Option<&SendQueue>) {
    match outgoing {
        Some(queue) => queue.notify.notified().await,
        None => std::future::pending().await,
    }
}

/// Writes one queued batch as frames of at most [`MAX_BATCH_RECORDS`]
/// records, the last one flagged (an empty full sync is one empty frame).
async fn send_batch<W>(
    wr: &mut W,
    sealer: &mut Sealer,
    batch: &QueuedBatch,
    stats: &SyncStats,
    timing: Timing,
) -> Result<(), SyncError>
where
    W: AsyncWrite + Unpin,
{
    match &batch.records {
        Records::Flows(records) => {
            send_chunks(
                wr,
                sealer,
                batch.full_sync,
                records,
                stats,
                timing,
                Sealer::batch,
            )
            .await
        }
        Records::Nat(records) => {
            send_chunks(
                wr,
                sealer,
                batch.full_sync,
                records,
                stats,
                timing,
                Sealer::nat_batch,
            )
            .await
        }
    }
}

/// Writes `records` as frames sealed by `seal`, of at most
/// [`MAX_BATCH_RECORDS`] records each, the last one flagged.
async fn send_chunks<W, T>(
    wr: &mut W,
    sealer: &mut Sealer,
    full_sync: bool,
    records: &[T],
    stats: &SyncStats,
    timing: Timing,
    seal: impl Fn(&mut Sealer, bool, bool, &[T]) -> Result<Vec<u8>, wire::WireError>,
) -> Result<(), SyncError>
where
    W: AsyncWrite + Unpin,
{
    let chunks: Vec<&[T]> = if records.is_empty() {
        vec![&[]]
    } else {
        records.chunks(MAX_BATCH_RECORDS).collect()
    };
    let frames = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let last = i + 1 == frames;
        let seq = sealer.next_seq();
        let frame = seal(sealer, full_sync, last, chunk)?;
        write_frame_timed(wr, &frame, timing).await?;
        stats.add(Counter::BatchesSent, 1);
        stats.add(Counter::RecordsSent, count_of(chunk.len()));
        debug!(seq, full_sync, last, records = chunk.len(), "batch sent");
    }
    Ok(())
}

/// A batch being written: put back first in line if dropped before the
/// write finished, so a session cut mid-batch loses nothing of it.
struct InFlight<'a> {
    queue: &'a SendQueue,
    batch: Option<QueuedBatch>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take() {
            self.queue.requeue(batch);
        }
    }
}

/// One `send` or `send_nat` call's records, waiting to go out.
#[derive(Debug)]
struct QueuedBatch {
    full_sync: bool,
    records: Records,
}

/// The records of a queued batch: tracked flows or NAT'd flows.
#[derive(Debug)]
enum Records {
    /// Sent as Batch frames.
    Flows(Vec<FlowRecord>),
    /// Sent as NatBatch frames.
    Nat(Vec<NatFlowRecord>),
}

impl Records {
    /// Whether both are flows or both NAT flows.
    fn same_kind(&self, other: &Records) -> bool {
        matches!(
            (self, other),
            (Records::Flows(_), Records::Flows(_)) | (Records::Nat(_), Records::Nat(_))
        )
    }

    fn len(&self) -> usize {
        match self {
            Records::Flows(r) => r.len(),
            Records::Nat(r) => r.len(),
        }
    }
}

/// The master's bounded queue of batches, shared by [`Sender`] (which
/// pushes) and its task (which pops).
struct SendQueue {
    batches: Mutex<VecDeque<QueuedBatch>>,
    notify: Notify,
    capacity: usize,
    /// Most records queued beyond the newest full sync of each kind.
    max_records: usize,
    stats: Arc<SyncStats>,
}

impl SendQueue {
    /// Locks the queue. Nothing panics under this lock, and each change
    /// is one push or pop, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, VecDeque<QueuedBatch>> {
        self.batches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, batch: QueuedBatch) {
        {
            let mut queue = self.lock();
            if batch.full_sync {
                // A complete dump supersedes every older batch of its kind.
                let mut dropped = Vec::new();
                queue.retain(|b| {
                    let keep = !b.records.same_kind(&batch.records);
                    if !keep {
                        dropped.push(b.records.len());
                    }
                    keep
                });
                for records in dropped {
                    self.count_drop(true, records);
                }
            }
            queue.push_back(batch);
            self.shed(&mut queue);
        }
        self.notify.notify_one();
    }

    /// Puts back, first in line, a batch whose sending failed (unless a
    /// newer full sync of its kind is queued: that one supersedes it).
    fn requeue(&self, batch: QueuedBatch) {
        let mut queue = self.lock();
        if queue
            .iter()
            .any(|b| b.full_sync && b.records.same_kind(&batch.records))
        {
            self.count_drop(batch.full_sync, batch.records.len());
            return;
        }
        queue.push_front(batch);
        self.shed(&mut queue);
    }

    /// Counts (and logs) one dropped batch.
    fn count_drop(&self, full_sync: bool, records: usize) {
        self.stats.add(Counter::DroppedBatches, 1);
        self.stats.add(Counter::DroppedRecords, count_of(records));
        debug!(full_sync, records, "sync queue: batch dropped");
    }

    /// Records queued beyond the newest full sync of each kind.
    fn excess_records(queue: &VecDeque<QueuedBatch>) -> usize {
        let newest_full = |flows: bool| {
            queue
                .iter()
                .rev()
                .find(|b| b.full_sync && matches!(b.records, Records::Flows(_)) == flows)
                .map_or(0, |b| b.records.len())
        };
        let total: usize = queue.iter().map(|b| b.records.len()).sum();
        total
            .saturating_sub(newest_full(true))
            .saturating_sub(newest_full(false))
    }

    fn pop(&self) -> Option<QueuedBatch> {
        self.lock().pop_front()
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Brings an over-full queue back to its bounds (batches, and records
    /// beyond the newest full syncs): drops the oldest
    /// incremental batch (a later full sync repairs what it carried) or,
    /// when every batch is a full sync, the oldest one superseded by a
    /// newer full sync of the same records (flows or NAT flows) behind it.
    fn shed(&self, queue: &mut VecDeque<QueuedBatch>) {
        while queue.len() > self.capacity || Self::excess_records(queue) > self.max_records {
            let superseded = |(i, b): (usize, &QueuedBatch)| {
                queue
                    .iter()
                    .skip(i + 1)
                    .any(|later| later.records.same_kind(&b.records))
            };
            let at = queue
                .iter()
                .position(|b| !b.full_sync)
                .or_else(|| queue.iter().enumerate().position(superseded))
                .unwrap_or(0);
            let Some(dropped) = queue.remove(at) else {
                return;
            };
            self.count_drop(dropped.full_sync, dropped.records.len());
        }
    }
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
    /// [`MAX_BATCH_RECORDS`]), without waiting. `full_sync` marks a
    /// complete dump of the flows (an empty one is sent too: "no flows");
    /// an empty incremental batch is ignored. When the queue holds
    /// [`SEND_QUEUE_CAPACITY`] batches, the oldest incremental one is
    /// dropped and counted: send a full sync after a drop to repair it.
    ///
    /// Batches wait in the queue while the peer is down. One cut off by a
    /// broken connection is sent again, whole, on the next session (records
    /// are state, so a repeat is harmless); but frames written just before
    /// a connection dies may be lost unnoticed (there are no acks), which is
    /// why the daemon sends a full sync on each new [`Sender::sessions`].
    pub fn send(&self, records: Vec<FlowRecord>, full_sync: bool) {
        if records.is_empty() && !full_sync {
            return;
        }
        self.shared.queue.push(QueuedBatch {
            full_sync,
            records: Records::Flows(records),
        });
    }

    /// Queues NAT'd flows to go out as NatBatch frames, with the same
    /// rules as [`Sender::send`] (a full sync here is a complete dump of
    /// the NAT flows).
    pub fn send_nat(&self, records: Vec<NatFlowRecord>, full_sync: bool) {
        if records.is_empty() && !full_sync {
            return;
        }
        self.shared.queue.push(QueuedBatch {
            full_sync,
            records: Records::Nat(records),
        });
    }

    /// Whether a session is up (handshake passed, not yet closed).
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// The peer's node id, once a handshake authenticated it (kept after
    /// the session ends; the next handshake replaces it). It names the
    /// batches this node receives from that peer ([`ReceivedBatch::peer`]),
    /// since every lbd uses one node id for both directions.
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

    /// The number of sessions established so far, changing with each new
    /// one: the peer may have missed batches while the link was down (or
    /// be a restarted backup), so the daemon sends a full sync on each
    /// change.
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
    let session = match handshake_timed(&mut rd, &mut wr, Role::Master, config, timing).await {
        Ok(session) => session,
        Err(error) => return (false, error),
    };
    stats.add(Counter::Sessions, 1);
    *shared
        .peer_node
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(session.peer_id.clone());
    shared.connected.store(true, Ordering::Relaxed);
    shared.sessions.send_modify(|n| *n = n.saturating_add(1));
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

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr, Ipv6Addr},
        time::Instant,
    };

    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

    use super::*;
    use crate::sync::{nat_record::tests::nat_record, SyncStatsSnapshot};

    const LIMIT: Duration = Duration::from_secs(8);

    fn config(node: &str, key: &[u8]) -> SyncConfig {
        SyncConfig {
            key: key.to_vec(),
            node_id: node.into(),
        }
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
            assert!(batch.records.len() <= MAX_BATCH_RECORDS);
            frames.push((batch.full_sync, batch.last, batch.records.len()));
            got.extend(batch.records);
        }
        assert_eq!(got, all);
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
            assert_eq!(recv(&mut live.rx).await.records, vec![record(i)]);
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
        sender.send(vec![record(1), record(2)], true);
        let batch = recv(&mut b.rx).await;
        assert_eq!(batch.records, vec![record(1), record(2)]);
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
        assert_eq!(recv(&mut b.rx).await.records, vec![record(3)]);
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
            batch.records,
            vec![record(3)],
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
        assert_eq!(recv(&mut b.rx).await.records, vec![record(1)]);
        wait_until("auth failure", || b.stats.snapshot().auth_failures == 1).await;
        // Frames written before the sender sees the close are lost (no
        // acks): wait for the new session, as the daemon does before its
        // repairing full sync.
        wait_for_session(&sender, 2).await;
        sender.send(vec![record(2)], false);
        assert_eq!(recv(&mut b.rx).await.records, vec![record(2)]);
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
        assert_eq!((first.records, first.nat.len()), (vec![record(1)], 0));
        let mut got = Vec::new();
        let mut frames = Vec::new();
        while got.len() < nat.len() {
            let batch = recv(&mut b.rx).await;
            assert!(batch.records.is_empty());
            frames.push((batch.full_sync, batch.last, batch.nat.len()));
            got.extend(batch.nat);
        }
        assert_eq!(got, nat);
        assert_eq!(frames, [(true, false, 4096), (true, true, 904)]);
        assert_eq!(recv(&mut b.rx).await.records, vec![record(2)]);
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

    /// What a version-1 lbd (before NatBatch) does with a Hello: its
    /// check, `version != 1`, refuses.
    fn version_1_accepts(hello: &Message) -> bool {
        matches!(hello, Message::Hello { version: 1, .. })
    }

    #[tokio::test]
    async fn a_version_1_peer_is_refused_on_both_ends_before_any_record() {
        // An old master connecting to this backup.
        let mut b = backup().await;
        let mut buf = Vec::new();
        let mut s = TcpStream::connect(b.listener.local_addr()).await.unwrap();
        read_frame(&mut s, &mut buf).await.unwrap();
        let ours = Message::decode(&buf).unwrap();
        assert!(!version_1_accepts(&ours), "an old node refuses {ours:?}");
        let old_hello = Message::Hello {
            version: 1,
            node_id: "lb-old".into(),
            nonce: wire::new_nonce(),
        };
        s.write_all(&wire::encode_frame(&old_hello.encode().unwrap()).unwrap())
            .await
            .unwrap();
        expect_closed(&mut s).await;
        wait_until("the refusal counted", || {
            b.stats.snapshot().decode_errors == 1
        })
        .await;
        assert_eq!(b.stats.snapshot().sessions, 0);

        // This master connecting to an old backup: each refuses the other's
        // Hello, no session, no batch frame is ever written.
        let old_backup = TcpListener::bind(local()).await.unwrap();
        let addr = old_backup.local_addr().unwrap();
        let (sender, master) = master(addr, KEY);
        sender.send_nat(vec![nat_record(1)], true);
        let (mut s, _) = timeout(LIMIT, old_backup.accept()).await.unwrap().unwrap();
        s.write_all(&wire::encode_frame(&old_hello.encode().unwrap()).unwrap())
            .await
            .unwrap();
        read_frame(&mut s, &mut buf).await.unwrap();
        let theirs = Message::decode(&buf).unwrap();
        assert!(
            !version_1_accepts(&theirs),
            "an old node refuses {theirs:?}"
        );
        expect_closed(&mut s).await;
        wait_until("the master's refusal counted", || {
            master.snapshot().decode_errors >= 1
        })
        .await;
        let ms = master.snapshot();
        assert_eq!((ms.sessions, ms.batches_sent), (0, 0));
        assert!(!sender.connected());
        assert!(b.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn hostile_handshakes_are_refused() {
        let mut b = backup().await;
        let addr = b.listener.local_addr();
        let mut buf = Vec::new();

        // The listener's own Hello, echoed back.
        let mut s = TcpStream::connect(addr).await.unwrap();
        read_frame(&mut s, &mut buf).await.unwrap();
        s.write_all(&wire::encode_frame(&buf).unwrap())
            .await
            .unwrap();
        expect_closed(&mut s).await;

        // A Hello of our own, then the listener's proof echoed back as ours.
        let mut s = TcpStream::connect(addr).await.unwrap();
        read_frame(&mut s, &mut buf).await.unwrap();
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
            Message::HelloAck { .. }
        ));
        s.write_all(&wire::encode_frame(&buf).unwrap())
            .await
            .unwrap();
        expect_closed(&mut s).await;

        // Another protocol version.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let hello = Message::Hello {
            version: wire::PROTOCOL_VERSION + 1,
            node_id: "lb-a".into(),
            nonce: wire::new_nonce(),
        };
        s.write_all(&wire::encode_frame(&hello.encode().unwrap()).unwrap())
            .await
            .unwrap();
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
        assert_eq!(recv(&mut rx).await.records, vec![record(1)]);

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
        assert_eq!(recv(&mut rx).await.records, vec![record(2)]);
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
        // handshake time.
        let (tx, _rx) = mpsc::channel(1);
        let backup = Arc::new(SyncStats::new());
        let listener = listen_with(local(), config("lb-b", KEY), tx, backup.clone(), fast())
            .await
            .unwrap();
        let mut raw = TcpStream::connect(listener.local_addr()).await.unwrap();
        let mut hello = Vec::new();
        let start = Instant::now();
        timeout(LIMIT, raw.read_to_end(&mut hello))
            .await
            .unwrap()
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(350));
        let (body, rest) = wire::split_frame(&hello).unwrap();
        assert!(rest.is_empty());
        assert!(matches!(
            Message::decode(body).unwrap(),
            Message::Hello { .. }
        ));
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
        };
        (queue, stats)
    }

    /// A queued batch of `n` flow records named `i`.
    fn flows(full_sync: bool, i: u32, n: usize) -> QueuedBatch {
        QueuedBatch {
            full_sync,
            records: Records::Flows(vec![record(i); n]),
        }
    }

    /// A queued batch of two NAT records named `i`.
    fn nats(full_sync: bool, i: u32) -> QueuedBatch {
        let mut r = nat_record(0);
        r.forward.age_ms = i;
        QueuedBatch {
            full_sync,
            records: Records::Nat(vec![r; 2]),
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
        assert_eq!(stats.snapshot().dropped_batches, 0);
        queue.push(flows(false, 5, 2)); // 6 records beyond: drops 3
        assert_eq!(
            order(&queue),
            [(true, 1), (true, 2), (false, 4), (false, 5)]
        );
        queue.push(flows(false, 6, 6)); // alone above the bound: drops 4, 5, 6
        assert_eq!(order(&queue), [(true, 1), (true, 2)]);
        let s = stats.snapshot();
        assert_eq!((s.dropped_batches, s.dropped_records), (4, 12));
    }
}
