//! The backup's side: a listener that accepts masters, authenticates
//! each in a session and hands their batches to the daemon, one per frame.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError, RwLock},
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
    digest::PeerDigests,
    session::{handshake_timed, log_session_end, run_session_with, Delivery, Session, Side},
    slots::{Counted, Progress, Slots, Sources},
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
    /// Who may shake hands, shared with the accept loop.
    sources: Arc<RwLock<Sources>>,
    /// The config digests the masters sent.
    digests: PeerDigests,
}

impl ListenerHandle {
    /// The address bound, so a listener on port 0 can be found.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Lets `sources` shake hands from the next connection on (a reload
    /// of `[sync] peers`): a node joins a running mesh without a restart
    /// of the others. Sessions already up stay up (a peer removed is
    /// cut by its own side, or ages out as a silent one would).
    pub(crate) fn set_sources(&self, sources: Sources) {
        info!(
            ?sources,
            "sync listener: the peers allowed to shake hands changed"
        );
        *self.sources.write().unwrap_or_else(PoisonError::into_inner) = sources;
    }

    /// The config digests the masters sent (by node id), for the daemon
    /// to compare with its own.
    pub fn peer_digests(&self) -> &PeerDigests {
        &self.digests
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
    // An IPv6 address still tentative right after boot is waited for.
    let listener = crate::sync::bind::bind_listener(addr, "sync")
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
    let sources = Arc::new(RwLock::new(sources));
    let digests = PeerDigests::default();
    let shared = Arc::new(Shared {
        digests: digests.clone(),
        config,
        sources: sources.clone(),
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
    Ok(ListenerHandle {
        local_addr,
        task,
        sources,
        digests,
    })
}

/// A connection whose handshake passed, ready for its session.
struct Established {
    /// Counted for the handshake; what the session reads adds to a count
    /// nobody reads any more.
    rd: BufReader<Counted<OwnedReadHalf>>,
    wr: OwnedWriteHalf,
    session: Session,
}

/// What the accept loop shares with its connections.
struct Shared {
    config: SyncConfig,
    /// The config digests the masters sent.
    digests: PeerDigests,
    /// Who may shake hands (a reload may change it: see
    /// [`ListenerHandle::set_sources`]).
    sources: Arc<RwLock<Sources>>,
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
    /// Who may shake hands now.
    fn sources(&self) -> Sources {
        self.sources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

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
                "sync connection refused: its address is no configured peer's (sync_peer / sync.peers); a peer connects from the address it listens on: to let a new node join, add its listen address to sync.peers and reload (sync_peer: restart)"
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
/// newcomer taking the slot of the one whose peer has sent least (the
/// oldest of those) rather than being refused, and
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
                    let sources = shared.sources();
                    if !sources.admits(peer.ip()) {
                        shared.stats.add(Counter::Refused, 1);
                        shared.log_stranger(peer);
                        continue;
                    }
                    if let Some((cut, cut_peer)) = slots.make_room(peer, &sources) {
                        cut.abort();
                        shared.stats.add(Counter::Refused, 1);
                        shared.log_refusal(cut_peer, &format_args!(
                            "sync handshake cut for a newer one from {peer}: every slot was taken (limits {MAX_HANDSHAKES} at once, {MAX_HANDSHAKES_PER_SOURCE} per source address, or IPv6 /64 with no peer list)"
                        ), None);
                    }
                    let progress = Arc::<Progress>::default();
                    if has_sent(&stream) {
                        progress.note_pending();
                    }
                    let task = handshakes.spawn(
                        shake(stream, peer, progress.clone(), shared.clone())
                            .instrument(info_span!("sync_connection", %peer)),
                    );
                    slots.push(task, peer, progress);
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

/// Whether an accepted connection's peer has sent something already (a
/// peer's Hello comes at once): its handshake then counts as under way
/// before its task reads, and idle connections accepted after it give
/// way first (see [`Slots::make_room`]).
fn has_sent(stream: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    // The socket is non-blocking: nothing there is `WouldBlock`.
    matches!(socket2::SockRef::from(stream).peek(&mut byte), Ok(n) if n > 0)
}

/// One accepted connection's handshake: the peer's Hello starting within
/// `timing.first_byte`, the whole handshake within `timing.handshake`.
/// What the peer sends is counted in `progress`, so that the handshakes
/// that have come least far give way first when the slots are full.
async fn shake(
    stream: TcpStream,
    peer: SocketAddr,
    progress: Arc<Progress>,
    shared: Arc<Shared>,
) -> (SocketAddr, Result<Established, SyncError>) {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "setting TCP_NODELAY failed");
    }
    let timing = shared.timing;
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(READ_BUFFER, Counted::new(rd, progress));
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
    let delivery = Delivery {
        batches: Some(&shared.batches),
        digests: Some(&shared.digests),
    };
    let result = run_session_with(
        &mut rd,
        &mut wr,
        session,
        delivery,
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

    /// A peer's handshake halfway (its Hello sent and answered) is not cut
    /// for idle connections from its own address (a process on its host
    /// looping connect(): no key needed, the listener admits by address)
    /// while older ones of them have sent nothing: those give way first.
    #[tokio::test]
    async fn idle_connections_from_a_peers_address_give_way_before_its_handshake() {
        use crate::sync::wire::{self, Message, Role, Transcript};
        use tokio::io::AsyncWriteExt as _;

        const KEY: &[u8] = b"test-key-0123456789abcdef";
        let peer = std::net::IpAddr::from([127, 0, 0, 1]);
        let (tx, _rx) = mpsc::channel(8);
        let stats = Arc::new(SyncStats::new());
        let listener = listen_for(
            SocketAddr::new(peer, 0),
            Sources::Peers(vec![peer]),
            SyncConfig::new(KEY.to_vec(), "lb-b"),
            tx,
            stats.clone(),
        )
        .await
        .unwrap();
        let addr = listener.local_addr();
        // The real peer: its Hello, then the listener's Hello and HelloAck.
        let mut real = TcpStream::connect(addr).await.unwrap();
        let nonce = wire::new_nonce();
        let hello = Message::Hello {
            version: wire::PROTOCOL_VERSION,
            node_id: "lb-a".into(),
            nonce,
        };
        real.write_all(&wire::encode_frame(&hello.encode().unwrap()).unwrap())
            .await
            .unwrap();
        let mut buf = Vec::new();
        super::super::session::read_frame(&mut real, &mut buf)
            .await
            .unwrap();
        let Message::Hello {
            node_id: backup_id,
            nonce: backup_nonce,
            ..
        } = Message::decode(&buf).unwrap()
        else {
            panic!("the listener's Hello");
        };
        super::super::session::read_frame(&mut real, &mut buf)
            .await
            .unwrap();
        // The flood: idle connections, twice the address's handshake
        // slots; each past the slots cuts one handshake.
        let mut flood = Vec::new();
        for _ in 0..2 * MAX_HANDSHAKES_PER_SOURCE {
            flood.push(TcpStream::connect(addr).await.unwrap());
        }
        let cuts = u64::try_from(MAX_HANDSHAKES_PER_SOURCE + 1).unwrap();
        let start = Instant::now();
        while stats.snapshot().refused < cuts {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "flood not accepted"
            );
            sleep(Duration::from_millis(5)).await;
        }
        // The real peer's proof: its session comes up.
        let transcript = Transcript {
            master_nonce: &nonce,
            backup_nonce: &backup_nonce,
            master_id: "lb-a",
            backup_id: &backup_id,
        };
        let proof = wire::hello_proof(KEY, Role::Master, &transcript).unwrap();
        let ack = Message::HelloAck { proof }.encode().unwrap();
        real.write_all(&wire::encode_frame(&ack).unwrap())
            .await
            .unwrap();
        let start = Instant::now();
        while stats.snapshot().sessions == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "the real peer's handshake was cut for idle connections: {:?}",
                stats.snapshot()
            );
            sleep(Duration::from_millis(5)).await;
        }
        drop(flood);
    }

    /// A process on a peer's host looping connect() from the peer's
    /// address (no key needed: the listener admits by address) must not
    /// keep that peer's real sender from ever authenticating: its idle
    /// connections give way before a handshake that has sent its Hello.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connect_flood_from_a_peers_address_does_not_keep_its_sender_out() {
        use std::sync::atomic::{AtomicBool, Ordering};

        const KEY: &[u8] = b"test-key-0123456789abcdef";
        let peer = std::net::IpAddr::from([127, 0, 0, 1]);
        let (tx, _rx) = mpsc::channel(8);
        let listener = listen_for(
            SocketAddr::new(peer, 0),
            Sources::Peers(vec![peer]),
            SyncConfig::new(KEY.to_vec(), "lb-b"),
            tx,
            Arc::new(SyncStats::new()),
        )
        .await
        .unwrap();
        let addr = listener.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        // Two flooders, each keeping its last connections open and idle.
        let flooders: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut open = std::collections::VecDeque::new();
                    let mut connects = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(stream) = std::net::TcpStream::connect(addr) {
                            connects += 1;
                            open.push_back(stream);
                            if open.len() > 32 {
                                open.pop_front();
                            }
                        }
                    }
                    connects
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let sender = super::super::Sender::start_from(
            addr,
            SocketAddr::new(peer, 0),
            SyncConfig::new(KEY.to_vec(), "lb-a"),
            Arc::new(SyncStats::new()),
        )
        .unwrap();
        let start = Instant::now();
        while !sender.connected() && start.elapsed() < Duration::from_secs(2) {
            sleep(Duration::from_millis(10)).await;
        }
        let connected = sender.connected();
        stop.store(true, Ordering::Relaxed);
        let connects: u64 = flooders.into_iter().map(|f| f.join().unwrap()).sum();
        assert!(
            connected,
            "no session within 2 s during a flood of {connects} connects"
        );
    }
}
