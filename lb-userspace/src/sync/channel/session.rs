//! One connection's session, the same at both ends: the handshake of
//! `wire`, then a reader and a writer with heartbeats, and a peer silent
//! too long taken for dead.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
    time::{interval, timeout, MissedTickBehavior},
};
use tracing::{debug, error, info, trace, warn};

use super::{
    own_nonces,
    queue::{InFlight, QueuedBatch, Records, SendQueue},
    BatchKind, ReceivedBatch, Timing,
};
use crate::sync::{
    count_of,
    wire::{self, Message, Opener, Role, Sealer, Transcript, MAX_BATCH_RECORDS},
    Counter, FlowRecord, NatFlowRecord, SyncConfig, SyncError, SyncStats,
};

/// Logs why a connection ended at a level fitting the cause: attacks
/// and misconfiguration (authentication, protocol) always as errors, the
/// network's ordinary failures as warnings, or at debug level when
/// `repeated` (a sender retrying a peer that stays down).
pub(super) fn log_session_end(error: &SyncError, repeated: bool) {
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
pub(super) struct Session {
    pub(super) peer_id: String,
    pub(super) sealer: Sealer,
    pub(super) opener: Opener,
}

/// The handshake (`handshake_with`) within `timing.handshake`; with `first_read`, the
/// peer's Hello must also start arriving that soon (a listener cuts idle
/// sockets early: they would hold a handshake slot).
pub(super) async fn handshake_timed<R, W>(
    rd: &mut R,
    wr: &mut W,
    role: Role,
    config: &SyncConfig,
    timing: Timing,
    first_read: Option<Duration>,
) -> Result<Session, SyncError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    timeout(
        timing.handshake,
        handshake_with(rd, wr, role, config, first_read),
    )
    .await
    .map_err(|_| SyncError::Timeout {
        what: "handshake",
        after: timing.handshake,
    })?
}

/// Both ends: send Hello, read the peer's, send our proof over both,
/// read and check the peer's. Nothing from the peer is trusted before its
/// proof checks out.
#[cfg(test)]
pub(super) async fn handshake<R, W>(
    rd: &mut R,
    wr: &mut W,
    role: Role,
    config: &SyncConfig,
) -> Result<Session, SyncError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    handshake_with(rd, wr, role, config, None).await
}

/// The handshake, the peer's first byte awaited at most `first_read`.
async fn handshake_with<R, W>(
    rd: &mut R,
    wr: &mut W,
    role: Role,
    config: &SyncConfig,
    first_read: Option<Duration>,
) -> Result<Session, SyncError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let nonce = own_nonces::issue(&config.node_id);
    let hello = Message::Hello {
        version: wire::PROTOCOL_VERSION,
        node_id: config.node_id.clone(),
        nonce,
    };
    write_frame(wr, &wire::encode_frame(&hello.encode()?)?).await?;

    let mut buf = Vec::new();
    match first_read {
        Some(limit) => timeout(limit, read_frame(rd, &mut buf))
            .await
            .map_err(|_| SyncError::Timeout {
                what: "the peer's Hello",
                after: limit,
            })??,
        None => read_frame(rd, &mut buf).await?,
    }
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
    if own_nonces::is_ours(&peer_nonce, &config.node_id) {
        return Err(wire::AuthError::OwnNonce.into());
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
pub(super) async fn read_frame<R>(rd: &mut R, buf: &mut Vec<u8>) -> Result<(), SyncError>
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
pub(super) async fn run_session<R, W>(
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
    let frames = Frames {
        full_sync: batch.full_sync,
        aged_at: batch.aged_at,
        timing,
    };
    match &batch.records {
        Records::Flows(records) => {
            send_chunks(
                wr,
                sealer,
                frames,
                records,
                stats,
                FlowRecord::aged,
                Sealer::batch,
            )
            .await
        }
        Records::Nat(records) => {
            send_chunks(
                wr,
                sealer,
                frames,
                records,
                stats,
                NatFlowRecord::aged,
                Sealer::nat_batch,
            )
            .await
        }
    }
}

/// What the frames of one queued batch share.
#[derive(Clone, Copy)]
struct Frames {
    full_sync: bool,
    /// When the batch's ages were taken (see [`QueuedBatch::aged_at`]).
    aged_at: Instant,
    timing: Timing,
}

/// Writes `records` as frames sealed by `seal`, of at most
/// [`MAX_BATCH_RECORDS`] records each, the last one flagged; each
/// frame's records `aged` by the time since `frames.aged_at`.
async fn send_chunks<W, T>(
    wr: &mut W,
    sealer: &mut Sealer,
    frames: Frames,
    records: &[T],
    stats: &SyncStats,
    aged: fn(T, Duration) -> T,
    seal: impl Fn(&mut Sealer, bool, bool, &[T]) -> Result<Vec<u8>, wire::WireError>,
) -> Result<(), SyncError>
where
    W: AsyncWrite + Unpin,
    T: Copy,
{
    let Frames {
        full_sync,
        aged_at,
        timing,
    } = frames;
    let chunks: Vec<&[T]> = if records.is_empty() {
        vec![&[]]
    } else {
        records.chunks(MAX_BATCH_RECORDS).collect()
    };
    let count = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let last = i + 1 == count;
        let seq = sealer.next_seq();
        // Ages as of now: the records may have waited since they were
        // read (a long walk, a full queue, a peer down).
        let waited = aged_at.elapsed();
        let chunk: Vec<T> = chunk.iter().map(|r| aged(*r, waited)).collect();
        let frame = seal(sealer, full_sync, last, &chunk)?;
        write_frame_timed(wr, &frame, timing).await?;
        stats.add(Counter::BatchesSent, 1);
        stats.add(Counter::RecordsSent, count_of(chunk.len()));
        debug!(seq, full_sync, last, records = chunk.len(), "batch sent");
    }
    Ok(())
}
