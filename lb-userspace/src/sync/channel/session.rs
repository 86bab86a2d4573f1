//! One connection's session, the same at both ends: the handshake of
//! `wire`, then a reader and a writer with heartbeats, and a peer silent
//! too long taken for dead.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::{mpsc, watch},
    time::{interval, timeout, timeout_at, Interval, MissedTickBehavior},
};
use tracing::{debug, error, info, trace, warn};

use super::{
    backend_states::{BackendStatesOut, PeerBackendStates},
    digest::{DigestOut, PeerDigests},
    own_nonces,
    queue::{InFlight, QueuedBatch, Records, SendQueue},
    BatchKind, ReceivedBatch, Timing,
};
use crate::clock::monotonic_ns;
use crate::sync::{
    count_of,
    wire::{
        self, Message, Opener, Role, Sealer, Transcript, Versions, MAX_BATCH_RECORDS,
        NAT_BATCH_VERSION,
    },
    Counter, FlowRecord, NatFlowRecord, SyncConfig, SyncError, SyncStats,
};

/// Logs why a connection ended at a level fitting the cause: attacks
/// and misconfiguration (authentication, protocol) always as errors, the
/// network's ordinary failures as warnings, or at debug level when
/// `repeated` (a sender retrying a peer that stays down).
pub(super) fn log_session_end(error: &SyncError, repeated: bool) {
    match error {
        SyncError::Auth(_) => error!(%error, "sync connection closed: authentication failed"),
        SyncError::Wire(_)
        | SyncError::Version { .. }
        | SyncError::Offer { .. }
        | SyncError::Unexpected { .. } => {
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

/// The outcome of a handshake: who the peer is, the session's keys and
/// its protocol version.
pub(super) struct Session {
    pub(super) peer_id: String,
    pub(super) sealer: Sealer,
    pub(super) opener: Opener,
    /// The version the session runs at: the highest both ends speak.
    pub(super) version: u16,
    /// The peer's range, authenticated by its proof; None for a peer of
    /// an earlier release (one version, not authenticated).
    pub(super) peer_versions: Option<Versions>,
}

impl Session {
    /// Logs what the session's version means: with a peer of an earlier
    /// release, that its version is not authenticated (a downgrade
    /// would show here), and below [`NAT_BATCH_VERSION`], that no NAT'd
    /// flows go over it.
    pub(super) fn log_version(&self) {
        let peer_node = &self.peer_id;
        let version = self.version;
        match self.peer_versions {
            // The "established" line says the version.
            Some(range) => {
                debug!(%peer_node, version, peer_versions = %range, "sync session protocol version")
            }
            None => warn!(
                %peer_node,
                version,
                "sync session protocol version: the peer runs an earlier release (it speaks this version only, and its Hello does not authenticate it)"
            ),
        }
        if version < NAT_BATCH_VERSION {
            warn!(
                %peer_node,
                version,
                "NAT'd flows are not replicated over this sync session: its protocol version has none (they are from {NAT_BATCH_VERSION}); upgrade the peer"
            );
        }
    }
}

/// What a master saw of the backup's Hello, kept when the handshake then
/// fails: a backup of an earlier release answers with the one version it
/// speaks and closes, and the master offers that version next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PeerHello {
    /// The version the Hello said.
    pub(super) version: u16,
    /// The range its nonce's mark says (None: an earlier release's).
    pub(super) versions: Option<Versions>,
}

/// Which end of the handshake this is.
pub(super) enum Side<'a> {
    /// Connected, and offers `offer` (within its config's range); what
    /// the backup's Hello said is left in `seen`, also when the
    /// handshake fails.
    Master {
        offer: u16,
        seen: &'a mut Option<PeerHello>,
    },
    /// Accepted: reads the master's Hello first, and answers with the
    /// session's version.
    Backup,
}

/// A Hello as received.
struct Hello {
    version: u16,
    node_id: String,
    nonce: wire::Nonce,
}

impl Hello {
    /// The sender's range, as its nonce's mark says (to be trusted once
    /// its proof checks out).
    fn versions(&self) -> Option<Versions> {
        wire::nonce_versions(&self.nonce)
    }
}

/// The handshake (`handshake_with`) within `timing.handshake`; with `first_read`, the
/// peer's Hello must also start arriving that soon (a listener cuts idle
/// sockets early: they would hold a handshake slot).
pub(super) async fn handshake_timed<R, W>(
    rd: &mut R,
    wr: &mut W,
    side: Side<'_>,
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
        handshake_with(rd, wr, side, config, first_read),
    )
    .await
    .map_err(|_| SyncError::Timeout {
        what: "handshake",
        after: timing.handshake,
    })?
}

/// Both ends, as `role`, the master offering the highest version of its
/// range: see `handshake_with`.
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
    let mut seen = None;
    let side = match role {
        Role::Master => Side::Master {
            offer: config.versions.max(),
            seen: &mut seen,
        },
        Role::Backup => Side::Backup,
    };
    handshake_with(rd, wr, side, config, None).await
}

/// Both ends send a Hello (the master first, offering a version; the
/// backup once it read that, answering with the session's version),
/// then a proof over both Hellos, and check the peer's. Nothing from the
/// peer is trusted before its proof checks out: only then is the
/// version checked against both authenticated ranges. The peer's first
/// byte is awaited at most `first_read`.
async fn handshake_with<R, W>(
    rd: &mut R,
    wr: &mut W,
    side: Side<'_>,
    config: &SyncConfig,
    first_read: Option<Duration>,
) -> Result<Session, SyncError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ours = config.versions;
    let nonce = own_nonces::issue(&config.node_id, ours);
    let mut buf = Vec::new();
    let (role, peer, version) = match side {
        Side::Master { offer, seen } => {
            write_hello(wr, offer, config, nonce).await?;
            let peer = read_hello(rd, &mut buf, first_read).await?;
            *seen = Some(PeerHello {
                version: peer.version,
                versions: peer.versions(),
            });
            let version = master_version(ours, offer, &peer)?;
            (Role::Master, peer, version)
        }
        Side::Backup => {
            let peer = read_hello(rd, &mut buf, first_read).await?;
            let version = backup_version(ours, &peer);
            // Answered even when refused: the master learns from it what
            // this node speaks.
            let answer = version.as_ref().map_or(ours.max(), |v| *v);
            write_hello(wr, answer, config, nonce).await?;
            (Role::Backup, peer, version?)
        }
    };
    if peer.nonce == nonce {
        return Err(wire::AuthError::ReflectedNonce.into());
    }
    if own_nonces::is_ours(&peer.nonce, &config.node_id) {
        return Err(wire::AuthError::OwnNonce.into());
    }
    let transcript = match role {
        Role::Master => Transcript {
            master_nonce: &nonce,
            backup_nonce: &peer.nonce,
            master_id: &config.node_id,
            backup_id: &peer.node_id,
        },
        Role::Backup => Transcript {
            master_nonce: &peer.nonce,
            backup_nonce: &nonce,
            master_id: &peer.node_id,
            backup_id: &config.node_id,
        },
    };
    let proof = wire::hello_proof(&config.key, role, &transcript)?;
    write_frame(
        wr,
        &wire::encode_frame(&Message::HelloAck { proof }.encode()?)?,
    )
    .await?;

    read_handshake_frame(rd, &mut buf).await?;
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
    // The peer's mark is authentic now. A backup of this release answers
    // with the version both ranges share: any other answer was changed
    // on the way (the version field is outside the proof).
    if role == Role::Master && peer.versions().is_some() && peer.version != version {
        return Err(wire::AuthError::VersionMismatch {
            hello: peer.version,
            agreed: version,
        }
        .into());
    }
    let (sealer, opener) = wire::session_at(&config.key, role, &transcript, version)?;
    Ok(Session {
        peer_versions: peer.versions(),
        peer_id: peer.node_id,
        sealer,
        opener,
        version,
    })
}

async fn write_hello<W>(
    wr: &mut W,
    version: u16,
    config: &SyncConfig,
    nonce: wire::Nonce,
) -> Result<(), SyncError>
where
    W: AsyncWrite + Unpin,
{
    let hello = Message::Hello {
        version,
        node_id: config.node_id.clone(),
        nonce,
    };
    write_frame(wr, &wire::encode_frame(&hello.encode()?)?).await
}

/// Reads the peer's Hello, its first byte within `first_read` if given.
async fn read_hello<R>(
    rd: &mut R,
    buf: &mut Vec<u8>,
    first_read: Option<Duration>,
) -> Result<Hello, SyncError>
where
    R: AsyncRead + Unpin,
{
    match first_read {
        Some(limit) => timeout(limit, read_handshake_frame(rd, buf))
            .await
            .map_err(|_| SyncError::Timeout {
                what: "the peer's Hello",
                after: limit,
            })??,
        None => read_handshake_frame(rd, buf).await?,
    }
    match Message::decode(buf)? {
        Message::Hello {
            version,
            node_id,
            nonce,
        } => Ok(Hello {
            version,
            node_id,
            nonce,
        }),
        other => Err(SyncError::Unexpected {
            kind: other.kind(),
            phase: "handshake (expected Hello)",
        }),
    }
}

/// The master's session version, from the backup's Hello: a backup of
/// this release (marked) answers with the highest version both ranges
/// share (checked once its proof is); one of an earlier release speaks
/// only the version it answers with, and refuses any other offer.
fn master_version(ours: Versions, offer: u16, peer: &Hello) -> Result<u16, SyncError> {
    match peer.versions() {
        Some(theirs) => ours.common(theirs).ok_or(SyncError::Version {
            ours,
            theirs: theirs.max(),
        }),
        None if peer.version == offer => Ok(offer),
        None if ours.contains(peer.version) => Err(SyncError::Offer {
            offered: offer,
            theirs: peer.version,
        }),
        None => Err(SyncError::Version {
            ours,
            theirs: peer.version,
        }),
    }
}

/// The backup's session version, from the master's Hello: the highest
/// both ranges share with a master of this release (marked), whatever it
/// offered (it offers less to a backup it took for an earlier
/// release's); with one of an earlier release, the one version it
/// speaks.
fn backup_version(ours: Versions, peer: &Hello) -> Result<u16, SyncError> {
    match peer.versions() {
        Some(theirs) => ours.common(theirs).ok_or(SyncError::Version {
            ours,
            theirs: theirs.max(),
        }),
        None if ours.contains(peer.version) => Ok(peer.version),
        None => Err(SyncError::Version {
            ours,
            theirs: peer.version,
        }),
    }
}

/// Reads one frame's body into `buf`. A peer that closes between frames
/// is [`SyncError::Closed`]; anywhere else it is an I/O error.
pub(super) async fn read_frame<R>(rd: &mut R, buf: &mut Vec<u8>) -> Result<(), SyncError>
where
    R: AsyncRead + Unpin,
{
    read_frame_within(rd, buf, wire::MAX_FRAME_LEN).await
}

/// [`read_frame`] for a handshake frame (Hello, HelloAck): one longer
/// than the largest Hello is refused from its header, before anything is
/// allocated for it (the peer is not authenticated yet).
async fn read_handshake_frame<R>(rd: &mut R, buf: &mut Vec<u8>) -> Result<(), SyncError>
where
    R: AsyncRead + Unpin,
{
    read_frame_within(rd, buf, wire::MAX_HANDSHAKE_FRAME_LEN).await
}

/// [`read_frame`] with a body of at most `max` bytes.
async fn read_frame_within<R>(rd: &mut R, buf: &mut Vec<u8>, max: usize) -> Result<(), SyncError>
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
    let len = wire::frame_len_within(header, max)?;
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
    /// The session's protocol version.
    version: u16,
    /// Where a ConfigDigest goes (None: dropped).
    digests: Option<&'a PeerDigests>,
    /// Where a BackendStates goes (None: dropped).
    backend_states: Option<&'a PeerBackendStates>,
}

impl Incoming<'_> {
    /// A received frame's records, as the daemon gets them, stamped
    /// with when it was decoded (see [`ReceivedBatch::received_ns`]).
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
            version: self.version,
            kind,
            full_sync,
            last,
            records,
            nat,
            received_ns: monotonic_ns(),
        }
    }
}

/// What a master's session writes: its queue's batches until a close is
/// asked for (see [`Sender::close`](super::Sender::close)): `closing`
/// then holds the deadline for it. How far the session got is kept in
/// `progress`.
pub(super) struct Outgoing<'a> {
    pub(super) queue: &'a SendQueue,
    pub(super) closing: watch::Receiver<Option<Instant>>,
    pub(super) progress: &'a Progress,
    /// The config digests to send (see `digest`).
    pub(super) digest: DigestOut,
    /// The backend states to send (see `backend_states`).
    pub(super) backend_states: BackendStatesOut,
}

/// How long a master's session was healthy, for its sender's backoff: up
/// to the last moment both ways moved, i.e. the peer's last frame read
/// and the last time its writer had nothing left to write or finished a
/// batch. A session that ends by a timeout was stuck for its last
/// silence period, and one whose writer never got through its first
/// batch (a receiver too slow for the dump) was never healthy, however
/// long it lasted.
#[derive(Debug)]
pub(super) struct Progress {
    /// The session's start (its handshake's end).
    up: Instant,
    /// Since `up`, in ns: the peer's last frame.
    read: AtomicU64,
    /// Since `up`, in ns: the writer's last batch written, or last look
    /// at an empty queue.
    written: AtomicU64,
}

impl Progress {
    /// A session starting now.
    pub(super) fn new() -> Self {
        Self {
            up: Instant::now(),
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }

    fn mark(&self, at: &AtomicU64) {
        let since = u64::try_from(self.up.elapsed().as_nanos()).unwrap_or(u64::MAX);
        at.fetch_max(since, Ordering::Relaxed);
    }

    /// A frame from the peer was read.
    fn read(&self) {
        self.mark(&self.read);
    }

    /// The writer is caught up: a batch is written, or none is left.
    fn written(&self) {
        self.mark(&self.written);
    }

    /// How long the session was healthy (see [`Progress`]).
    pub(super) fn healthy(&self) -> Duration {
        let read = self.read.load(Ordering::Relaxed);
        let written = self.written.load(Ordering::Relaxed);
        Duration::from_nanos(read.min(written))
    }
}

/// An established session: reads while writing heartbeats and (for a
/// master, given `outgoing`) the queue's batches; a backup, given
/// `batches`, delivers what it reads there. Ends in error, or, for a
/// master asked to close, `Ok` once everything queued was written, its
/// side shut (a FIN after the last frame) and the peer closed its own,
/// which it does once it has read it all: what was sent was delivered.
/// Until then what the peer still sends (heartbeats) is read and
/// dropped: a socket closed with unread data sends a reset, and the
/// peer's kernel discards whatever of ours it had not read yet.
pub(super) async fn run_session<R, W>(
    rd: &mut R,
    wr: &mut W,
    session: Session,
    batches: Option<&mpsc::Sender<ReceivedBatch>>,
    outgoing: Option<Outgoing<'_>>,
    stats: &SyncStats,
    timing: Timing,
) -> Result<(), SyncError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let delivery = Delivery {
        batches,
        digests: None,
        backend_states: None,
    };
    run_session_with(rd, wr, session, delivery, outgoing, stats, timing).await
}

/// Where a backup's session delivers what it reads.
#[derive(Clone, Copy)]
pub(super) struct Delivery<'a> {
    /// Batches, to the daemon (None: a master's session).
    pub(super) batches: Option<&'a mpsc::Sender<ReceivedBatch>>,
    /// Config digests, kept by node id (None: dropped).
    pub(super) digests: Option<&'a PeerDigests>,
    /// Backend states, kept by node id (None: dropped).
    pub(super) backend_states: Option<&'a PeerBackendStates>,
}

/// [`run_session`], delivering config digests and backend states too.
pub(super) async fn run_session_with<R, W>(
    rd: &mut R,
    wr: &mut W,
    session: Session,
    delivery: Delivery<'_>,
    outgoing: Option<Outgoing<'_>>,
    stats: &SyncStats,
    timing: Timing,
) -> Result<(), SyncError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Delivery {
        batches,
        digests,
        backend_states,
    } = delivery;
    let Session {
        peer_id,
        sealer,
        opener,
        version,
        ..
    } = session;
    let incoming = batches.map(|batches| Incoming {
        batches,
        peer: &peer_id,
        version,
        digests,
        backend_states,
    });
    let progress = outgoing.as_ref().map(|out| out.progress);
    let read = read_loop(rd, opener, incoming, progress, stats, timing);
    tokio::pin!(read);
    // Both futures live until one ends; neither is cancelled mid-frame
    // except when the whole session ends.
    let deadline = tokio::select! {
        r = &mut read => return r,
        w = write_loop(wr, sealer, outgoing, stats, timing) => w?,
    };
    let limit = deadline.saturating_duration_since(Instant::now());
    match timeout_at(deadline.into(), read).await {
        Err(_) => Err(SyncError::Timeout {
            what: "the peer's close after this node's last frame",
            after: limit,
        }),
        Ok(Err(SyncError::Closed)) => Ok(()),
        // The peer cut a heartbeat of its own short as it closed.
        Ok(Err(SyncError::Io { source, .. }))
            if source.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            Ok(())
        }
        Ok(ended) => ended,
    }
}

async fn read_loop<R>(
    rd: &mut R,
    mut opener: Opener,
    incoming: Option<Incoming<'_>>,
    progress: Option<&Progress>,
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
        let message = opener.open(&buf)?;
        if let Some(progress) = progress {
            progress.read();
        }
        match message {
            Message::Heartbeat { seq } => trace!(seq, "heartbeat received"),
            Message::ConfigDigest { seq, vips } => {
                let Some(incoming) = incoming else {
                    return Err(SyncError::Unexpected {
                        kind: "ConfigDigest",
                        phase: "session (a backup sends no config digests)",
                    });
                };
                trace!(seq, vips = vips.len(), "config digest received");
                if let Some(digests) = incoming.digests {
                    digests.record(incoming.peer, vips);
                }
            }
            Message::BackendStates { seq, states } => {
                let Some(incoming) = incoming else {
                    return Err(SyncError::Unexpected {
                        kind: "BackendStates",
                        phase: "session (a backup sends no backend states)",
                    });
                };
                trace!(seq, states = states.len(), "backend states received");
                if let Some(backend_states) = incoming.backend_states {
                    backend_states.record(incoming.peer, states);
                }
            }
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

/// Writes heartbeats and the queue's batches. Ends in error, or, once a
/// close is asked for, after writing what is queued and shutting the
/// write side, returning the close's deadline (see [`run_session`]). A
/// write under way when the close is asked for must end by its deadline
/// too (a batch to a slow reader may take much longer).
async fn write_loop<W>(
    wr: &mut W,
    mut sealer: Sealer,
    mut outgoing: Option<Outgoing<'_>>,
    stats: &SyncStats,
    timing: Timing,
) -> Result<Instant, SyncError>
where
    W: AsyncWrite + Unpin,
{
    let mut ticker = interval(timing.heartbeat);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let Some(out) = &mut outgoing else {
            // A backup's: heartbeats only.
            ticker.tick().await;
            write_heartbeat(wr, &mut sealer, timing).await?;
            continue;
        };
        let closing = *out.closing.borrow();
        if let Some(deadline) = closing {
            close_writing(wr, &mut sealer, out.queue, stats, timing, deadline).await?;
            return Ok(deadline);
        }
        match out.queue.pop() {
            Some(batch) => {
                let send = send_popped(wr, &mut sealer, out.queue, batch, stats, timing);
                by_close_deadline(send, &mut out.closing).await?;
                out.progress.written();
            }
            None => {
                out.progress.written();
                wait_or_heartbeat(wr, &mut sealer, out, &mut ticker, timing).await?;
            }
        }
    }
}

/// A master's writer with nothing queued: waits for a batch, a close, or
/// the next heartbeat, which it writes (by the close's deadline if one is
/// asked for meanwhile).
async fn wait_or_heartbeat<W>(
    wr: &mut W,
    sealer: &mut Sealer,
    out: &mut Outgoing<'_>,
    ticker: &mut Interval,
    timing: Timing,
) -> Result<(), SyncError>
where
    W: AsyncWrite + Unpin,
{
    tokio::select! {
        _ = ticker.tick() => {}
        () = out.queue.notify.notified() => return Ok(()),
        () = close_asked(Some(&mut out.closing)) => return Ok(()),
    }
    by_close_deadline(write_heartbeat(wr, sealer, timing), &mut out.closing).await?;
    if let Some(frame) = out.digest.due(sealer)? {
        let seq = sealer.next_seq().saturating_sub(1);
        by_close_deadline(write_frame_timed(wr, &frame, timing), &mut out.closing).await?;
        trace!(seq, "config digest sent");
    }
    if let Some(frame) = out.backend_states.due(sealer)? {
        let seq = sealer.next_seq().saturating_sub(1);
        by_close_deadline(write_frame_timed(wr, &frame, timing), &mut out.closing).await?;
        trace!(seq, "backend states sent");
    }
    Ok(())
}

async fn write_heartbeat<W>(
    wr: &mut W,
    sealer: &mut Sealer,
    timing: Timing,
) -> Result<(), SyncError>
where
    W: AsyncWrite + Unpin,
{
    let frame = sealer.heartbeat()?;
    write_frame_timed(wr, &frame, timing).await?;
    trace!(seq = sealer.next_seq().saturating_sub(1), "heartbeat sent");
    Ok(())
}

/// `write`, cut off at the deadline of a close asked for while it runs
/// (otherwise limited by its own timeouts only).
async fn by_close_deadline<F>(
    write: F,
    closing: &mut watch::Receiver<Option<Instant>>,
) -> Result<(), SyncError>
where
    F: Future<Output = Result<(), SyncError>>,
{
    tokio::pin!(write);
    tokio::select! {
        written = &mut write => return written,
        () = close_asked(Some(&mut *closing)) => {}
    }
    let Some(deadline) = *closing.borrow() else {
        return write.await;
    };
    let limit = deadline.saturating_duration_since(Instant::now());
    timeout_at(deadline.into(), write)
        .await
        .map_err(|_| SyncError::Timeout {
            what: "the write under way when the close was asked for",
            after: limit,
        })?
}

/// Writes one batch popped from `queue`; until sent in full, it goes
/// back to the queue if this fails or the session ends (reader error)
/// meanwhile.
async fn send_popped<W>(
    wr: &mut W,
    sealer: &mut Sealer,
    queue: &SendQueue,
    batch: QueuedBatch,
    stats: &SyncStats,
    timing: Timing,
) -> Result<(), SyncError>
where
    W: AsyncWrite + Unpin,
{
    let mut in_flight = InFlight {
        queue,
        batch: Some(batch),
    };
    if let Some(batch) = &in_flight.batch {
        send_batch(wr, sealer, batch, stats, timing).await?;
    }
    in_flight.batch = None;
    Ok(())
}

/// A close was asked for: writes what is still queued, then shuts the
/// write side (a FIN after the last frame), all by `deadline`.
async fn close_writing<W>(
    wr: &mut W,
    sealer: &mut Sealer,
    queue: &SendQueue,
    stats: &SyncStats,
    timing: Timing,
    deadline: Instant,
) -> Result<(), SyncError>
where
    W: AsyncWrite + Unpin,
{
    let limit = deadline.saturating_duration_since(Instant::now());
    let last = async {
        while let Some(batch) = queue.pop() {
            send_popped(wr, sealer, queue, batch, stats, timing).await?;
        }
        wr.shutdown().await.map_err(|source| SyncError::Io {
            action: "shutting the sync session's sending side",
            source,
        })
    };
    timeout_at(deadline.into(), last)
        .await
        .map_err(|_| SyncError::Timeout {
            what: "writing the last batches before closing",
            after: limit,
        })??;
    debug!("sync session: everything queued was written and this side closed; waiting for the peer to close");
    Ok(())
}

/// Returns once a close is asked for (never without `closing`).
pub(super) async fn close_asked(closing: Option<&mut watch::Receiver<Option<Instant>>>) {
    match closing {
        Some(closing) => {
            // An error: the sender is gone (it never is while its task
            // runs); the write loop then sees no deadline and goes on.
            if closing.wait_for(Option::is_some).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
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
        Records::Nat(records) if sealer.version() < NAT_BATCH_VERSION => {
            // A peer of an earlier release: it has no NatBatch (the
            // session's start logged so).
            stats.add(Counter::NatWithheld, count_of(records.len()));
            debug!(
                records = records.len(),
                version = sealer.version(),
                "NAT'd flows withheld: the session's protocol version has no NatBatch"
            );
            Ok(())
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
