//! The backup's side: a listener that accepts masters, authenticates
//! each in a session and hands their batches to the daemon, one per frame.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::{
    io::BufReader,
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::mpsc,
    task::{AbortHandle, JoinHandle, JoinSet},
    time::sleep,
};
use tracing::{debug, error, info, info_span, warn, Instrument};

use super::{
    session::{handshake_timed, log_session_end, run_session, Session, Side},
    slots::{Slots, Sources},
    Timing, MAX_HANDSHAKES, MAX_HANDSHAKES_PER_SOURCE, MAX_SESSIONS, READ_BUFFER,
};
use crate::sync::{
    log_limit::LogLimit, Counter, FlowRecord, NatFlowRecord, SyncConfig, SyncError, SyncStats,
};

/// At most one log line this often for refused or failed handshakes.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A batch as the backup receives it: one frame's worth of records (at
/// most [`MAX_BATCH_RECORDS`](crate::sync::wire::MAX_BATCH_RECORDS)),
/// from an authenticated master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedBatch {
    /// The master's node id (as authenticated by the handshake).
    pub peer: String,
    /// The protocol version of the session it came over: below
    /// [`NAT_BATCH_VERSION`](crate::sync::wire::NAT_BATCH_VERSION) (a
    /// master of an earlier release) no NAT'd flows come, so its dump of
    /// the flows is all of its dump.
    pub version: u16,
    /// Which records the frame carried (an empty full sync carries none,
    /// so only this tells which dump it completes).
    pub kind: BatchKind,
    /// Part of a full sync: a complete dump of the master's flows.
    pub full_sync: bool,
    /// The last frame of one batch the master was given (a batch above
    /// [`MAX_BATCH_RECORDS`](crate::sync::wire::MAX_BATCH_RECORDS) arrives
    /// as several frames); with `full_sync`, the full sync is complete.
    pub last: bool,
    /// The flows, in the master's order (empty in a NAT batch).
    pub records: Vec<FlowRecord>,
    /// The NAT'd flows, in the master's order (empty in a flow batch).
    pub nat: Vec<NatFlowRecord>,
    /// When the frame was decoded (CLOCK_MONOTONIC, the data plane's
    /// clock, in ns). Records' ages count from here, not from their
    /// install: time spent in the receive queue must not make a copy look
    /// fresher than an entry this node touched meanwhile.
    pub received_ns: u64,
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
/// one stops the listener. Any address may shake hands: a daemon, which
/// knows its peers, uses [`listen_for`].
pub async fn listen(
    addr: SocketAddr,
    config: SyncConfig,
    batches: mpsc::Sender<ReceivedBatch>,
    stats: Arc<SyncStats>,
) -> Result<ListenerHandle, SyncError> {
    listen_for(addr, Sources::Any, config, batches, stats).await
}

/// [`listen`], letting only `sources` shake hands.
pub async fn listen_for(
    addr: SocketAddr,
    sources: Sources,
    config: SyncConfig,
    batches: mpsc::Sender<ReceivedBatch>,
    stats: Arc<SyncStats>,
) -> Result<ListenerHandle, SyncError> {
    listen_with(addr, sources, config, batches, stats, Timing::default()).await
}

pub(super) async fn listen_with(
    addr: SocketAddr,
    sources: Sources,
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
    info!(%local_addr, node = %config.node_id, ?sources, versions = %config.versions, "sync listener started");
    let shared = Arc::new(Shared {
        config,
        sources,
        batches,
        stats,
        timing,
        refusals: Mutex::new(LogLimit::new(REFUSAL_LOG_INTERVAL)),
        strangers: Mutex::new(LogLimit::new(REFUSAL_LOG_INTERVAL)),
        accept_failures: Mutex::new(LogLimit::new(REFUSAL_LOG_INTERVAL)),
    });
    let task = tokio::spawn(
        accept_loop(listener, shared).instrument(info_span!("sync_listener", %local_addr)),
    );
    Ok(ListenerHandle { local_addr, task })
}

/// A connection whose handshake passed, ready for its session.
struct Established {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    session: Session,
}

/// What the accept loop shares with its connections.
struct Shared {
    config: SyncConfig,
    /// Who may shake hands.
    sources: Sources,
    batches: mpsc::Sender<ReceivedBatch>,
    stats: Arc<SyncStats>,
    timing: Timing,
    /// Refused and failed handshakes are logged at most this often:
    /// anyone reaching the port can cause them at will.
    refusals: Mutex<LogLimit>,
    /// The same for connections from addresses no peer has, apart: a
    /// scan of the port must not hide a real peer's failing handshakes.
    strangers: Mutex<LogLimit>,
    /// Failed accepts (out of descriptors, say) are logged at most this
    /// often: they repeat at every backoff for as long as the cause lasts.
    accept_failures: Mutex<LogLimit>,
}

impl Shared {
    /// Logs a connection refused for its address, unless one was logged
    /// lately.
    fn log_stranger(&self, peer: SocketAddr) {
        let allowed = self
            .strangers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(Instant::now());
        match allowed {
            Some(suppressed) => warn!(
                %peer,
                suppressed,
                "sync connection refused: its address is no configured peer's (sync_peer / sync.peers); a peer connects from the address it listens on"
            ),
            None => debug!(%peer, "sync connection refused: not a configured peer"),
        }
    }

    /// Logs a refused or failed handshake, unless one was logged lately.
    fn log_refusal(
        &self,
        peer: SocketAddr,
        why: &dyn std::fmt::Display,
        error: Option<&SyncError>,
    ) {
        let allowed = self
            .refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(Instant::now());
        match (allowed, error) {
            (Some(suppressed), Some(error)) => {
                warn!(%peer, suppressed, "{why}");
                log_session_end(error, false);
            }
            (Some(suppressed), None) => warn!(%peer, suppressed, "{why}"),
            (None, _) => debug!(%peer, "{why}"),
        }
    }
}

/// Logs a failed accept (`error`, at `now`) unless one was logged lately
/// (`limit`), with how many were left out since.
fn log_accept_failure(limit: &Mutex<LogLimit>, error: &std::io::Error, now: Instant) {
    let allowed = limit
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .allow(now);
    match allowed {
        Some(suppressed) => warn!(%error, suppressed, "accepting a sync connection failed"),
        None => debug!(%error, "accepting a sync connection failed"),
    }
}

/// Unauthenticated connections and sessions are kept apart: only
/// `shared.sources` may shake hands (others are closed at once);
/// handshakes get [`MAX_HANDSHAKES`] slots, at most
/// [`MAX_HANDSHAKES_PER_SOURCE`] per source address (per IPv6 /64 when
/// any address may shake hands, see [`Sources::group`]), a
/// newcomer taking the slot of the oldest rather than being refused, and
/// must send their first byte within `timing.first_byte`; sessions get
/// [`MAX_SESSIONS`] slots of their own, one per node id (a new one
/// replaces the old). Idle or hostile sockets thus never lock out a real
/// peer.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Owned here, so aborting this task aborts every connection.
    let mut handshakes: JoinSet<(SocketAddr, Result<Established, SyncError>)> = JoinSet::new();
    let mut slots: Slots<AbortHandle> = Slots::default();
    let mut sessions: JoinSet<()> = JoinSet::new();
    let mut by_node: HashMap<String, AbortHandle> = HashMap::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if !shared.sources.admits(peer.ip()) {
                        shared.stats.add(Counter::Refused, 1);
                        shared.log_stranger(peer);
                        continue;
                    }
                    if let Some((cut, cut_peer)) = slots.make_room(peer, &shared.sources) {
                        cut.abort();
                        shared.stats.add(Counter::Refused, 1);
                        shared.log_refusal(cut_peer, &format_args!(
                            "sync handshake cut for a newer one from {peer}: every slot was taken (limits {MAX_HANDSHAKES} at once, {MAX_HANDSHAKES_PER_SOURCE} per source address, or IPv6 /64 with no peer list)"
                        ), None);
                    }
                    let task = handshakes.spawn(
                        shake(stream, peer, shared.clone())
                            .instrument(info_span!("sync_connection", %peer)),
                    );
                    slots.push(task, peer);
                    debug!(%peer, handshakes = slots.len(), "sync connection accepted");
                }
                Err(error) => {
                    // Out of descriptors and the like: wait, do not spin.
                    log_accept_failure(&shared.accept_failures, &error, Instant::now());
                    sleep(shared.timing.backoff_min).await;
                }
            },
            Some(done) = handshakes.join_next_with_id() => match done {
                Ok((id, (peer, result))) => {
                    slots.remove(|task| task.id() == id);
                    match result {
                        Ok(established) => admit(established, peer, &shared, &mut sessions, &mut by_node),
                        Err(error) => {
                            shared.stats.count_error(&error);
                            shared.log_refusal(peer, &"sync handshake failed", Some(&error));
                        }
                    }
                }
                Err(error) => {
                    slots.remove(|task| task.id() == error.id());
                    if error.is_panic() {
                        error!(%error, "a sync handshake task panicked");
                    }
                }
            },
            Some(done) = sessions.join_next_with_id() => {
                let id = match &done {
                    Ok((id, ())) => *id,
                    Err(error) => error.id(),
                };
                by_node.retain(|_, task| task.id() != id);
                if let Err(error) = done {
                    if error.is_panic() {
                        error!(%error, "a sync connection task panicked");
                    }
                }
            }
            () = shared.batches.closed() => {
                info!("batch receiver dropped: sync listener stops");
                return;
            }
        }
    }
}

/// Starts the session of an authenticated connection, replacing the
/// session of the same node id if one is up (a peer that reconnected
/// before its old connection timed out), within [`MAX_SESSIONS`].
fn admit(
    established: Established,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    sessions: &mut JoinSet<()>,
    by_node: &mut HashMap<String, AbortHandle>,
) {
    let node = established.session.peer_id.clone();
    if let Some(old) = by_node.remove(&node) {
        info!(%peer, peer_node = %node, "sync session replaces the node's previous one");
        old.abort();
    }
    if by_node.len() >= MAX_SESSIONS {
        shared.log_refusal(
            peer,
            &format_args!("sync session refused: {MAX_SESSIONS} sessions are up"),
            None,
        );
        return;
    }
    shared.stats.add(Counter::Sessions, 1);
    info!(%peer, peer_node = %node, version = established.session.version, "sync session established");
    established.session.log_version();
    let task = sessions
        .spawn(serve(established, shared.clone()).instrument(info_span!("sync_connection", %peer)));
    by_node.insert(node, task);
}

/// One accepted connection's handshake: the peer's Hello starting within
/// `timing.first_byte`, the whole handshake within `timing.handshake`.
async fn shake(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> (SocketAddr, Result<Established, SyncError>) {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "setting TCP_NODELAY failed");
    }
    let timing = shared.timing;
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
    let result = handshake_timed(
        &mut rd,
        &mut wr,
        Side::Backup,
        &shared.config,
        timing,
        Some(timing.first_byte),
    )
    .await
    .map(|session| Established { rd, wr, session });
    (peer, result)
}

/// One authenticated connection's session, until it ends.
async fn serve(established: Established, shared: Arc<Shared>) {
    let Established {
        mut rd,
        mut wr,
        session,
    } = established;
    let result = run_session(
        &mut rd,
        &mut wr,
        session,
        Some(&shared.batches),
        None,
        &shared.stats,
        shared.timing,
    )
    .await;
    if let Err(error) = result {
        shared.stats.count_error(&error);
        log_session_end(&error, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failing accept repeats at every backoff while its cause lasts
    /// (out of descriptors): one warning per interval, naming how many
    /// were left out, not one per backoff.
    #[test]
    fn a_failing_accept_is_warned_once_per_interval() {
        let limit = Mutex::new(LogLimit::new(REFUSAL_LOG_INTERVAL));
        let error = std::io::Error::from_raw_os_error(24);
        let start = Instant::now();
        let logs = crate::test_logs::logs_of(|| {
            for n in 0..10 {
                log_accept_failure(&limit, &error, start + Duration::from_millis(100 * n));
            }
            log_accept_failure(&limit, &error, start + REFUSAL_LOG_INTERVAL);
        });
        let warnings: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("accepting a sync connection failed"))
            .collect();
        assert_eq!(warnings.len(), 2, "{logs}");
        assert!(warnings[0].contains("suppressed=0"), "{logs}");
        assert!(warnings[1].contains("suppressed=9"), "{logs}");
    }
}
