//! The master's side: a `Sender` keeps a connection to one backup
//! (reconnecting with backoff) and streams the batches it is given through
//! its queue. It offers the highest protocol version it speaks, and the
//! version a backup of an earlier release answers with after that one
//! refused it ([`Offer`]). Closed ([`Sender::close`], or dropped), it
//! hands the peer everything written before the connection goes.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use tokio::{
    io::BufReader,
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpSocket, TcpStream,
    },
    runtime::Handle,
    sync::{watch, Notify},
    task::JoinHandle,
    time::{sleep, timeout, timeout_at},
};
use tracing::{debug, info, info_span, warn, Instrument};

use super::{
    digest::{DigestOut, OwnDigests},
    queue::{QueuedBatch, Records, SendQueue},
    session::{
        close_asked, handshake_timed, log_session_end, run_session, Outgoing, PeerHello, Progress,
        Session, Side,
    },
    Timing, READ_BUFFER, SEND_QUEUE_CAPACITY, SEND_QUEUE_RECORDS,
};
use crate::sync::{
    log_limit::LogLimit,
    wire::{Versions, VipDigest},
    Counter, FlowRecord, NatFlowRecord, SyncConfig, SyncError, SyncStats,
};

/// At most one warning this often that the peer refuses this node (it
/// retries every few seconds for as long as the peer does not list it).
const REFUSED_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// How much longer than its limit [`Sender::close`] waits for the task,
/// which keeps to the limit itself, before it aborts it.
const CLOSE_MARGIN: Duration = Duration::from_millis(100);

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
    /// The protocol version of the last session (0: none yet).
    version: AtomicU16,
    /// The last attempt was closed by the peer before its Hello, at the
    /// lowest version this node offers: the peer's listener does not
    /// admit this node (logged by the sender task: `log_refused`).
    refused: AtomicBool,
    /// Once a close is asked for, the deadline by which the task ends
    /// (see [`Sender::close`]).
    closing: watch::Sender<Option<Instant>>,
    /// The config digests each session sends (see `digest`).
    digests: watch::Sender<OwnDigests>,
}

impl SenderShared {
    /// Asks the task to close by `deadline`, unless a close was asked
    /// for already.
    fn close_by(&self, deadline: Instant) {
        self.closing.send_if_modified(|closing| {
            if closing.is_some() {
                return false;
            }
            *closing = Some(deadline);
            true
        });
    }
}

/// How a [`Sender::close`] ended.
#[derive(Debug)]
pub enum Closed {
    /// Everything given was written, and the peer closed its end of the
    /// session after it: it read everything.
    Delivered,
    /// No session was up: what was queued did not go out.
    NotConnected,
    /// The session ended otherwise (an error, or the limit passed first):
    /// the last frames may not have reached the peer.
    Failed(SyncError),
}

/// Master side: keeps a connection to the peer (reconnecting with backoff
/// from 100 ms to 5 s) and sends what it is given. Dropping it closes the
/// session as [`Sender::close`] does, in the background (within the
/// silence time, 5 s), then the task ends.
pub struct Sender {
    shared: Arc<SenderShared>,
    task: JoinHandle<Closed>,
    /// How long the task may take to close after a drop.
    drop_limit: Duration,
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

    /// [`Sender::start`], connecting from `source` (this node's listen
    /// address, port 0): a peer's listener lets only its configured
    /// peers' addresses shake hands ([`Sources`](super::Sources)), and the
    /// address the route would pick may be another of this host's. An
    /// IPv6 link-local source carries its interface as its scope id.
    pub fn start_from(
        peer: SocketAddr,
        source: SocketAddr,
        config: SyncConfig,
        stats: Arc<SyncStats>,
    ) -> Result<Sender, SyncError> {
        Self::spawn(peer, Some(source), config, stats, Timing::default())
    }

    pub(crate) fn start_with(
        peer: SocketAddr,
        config: SyncConfig,
        stats: Arc<SyncStats>,
        timing: Timing,
    ) -> Result<Sender, SyncError> {
        Self::spawn(peer, None, config, stats, timing)
    }

    pub(crate) fn spawn(
        peer: SocketAddr,
        source: Option<SocketAddr>,
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
            version: AtomicU16::new(0),
            refused: AtomicBool::new(false),
            closing: watch::Sender::new(None),
            digests: watch::Sender::new(None),
        });
        let task = runtime.spawn(
            run_sender(Link { peer, source }, config, stats, shared.clone(), timing)
                .instrument(info_span!("sync_sender", %peer)),
        );
        Ok(Sender {
            shared,
            task,
            drop_limit: timing.silence,
        })
    }

    /// Ends the sender for good (lbd stops), waiting at most `limit`:
    /// what is queued is written, then the session closes without a
    /// loss: this side's FIN follows the last frame, and the peer, having
    /// read everything, closes its own. The peer's heartbeats are read
    /// meanwhile: a socket closed with unread data sends a reset instead,
    /// and the peer's kernel then discards whatever of ours it had not
    /// handed over yet. Not connected, it returns at once.
    pub async fn close(mut self, limit: Duration) -> Closed {
        let deadline = Instant::now() + limit;
        self.shared.close_by(deadline);
        match timeout_at((deadline + CLOSE_MARGIN).into(), &mut self.task).await {
            Ok(Ok(closed)) => closed,
            Ok(Err(error)) => Closed::Failed(SyncError::Io {
                action: "running the sync sender's task",
                source: std::io::Error::other(error),
            }),
            Err(_) => {
                self.task.abort();
                Closed::Failed(SyncError::Timeout {
                    what: "closing the sync session",
                    after: limit,
                })
            }
        }
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
            Records::Flows(records.into()),
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
    /// `records` may be shared with other peers' senders: each queue
    /// holds the one allocation.
    pub(crate) fn send_read(&self, records: Arc<[FlowRecord]>, read: Read) {
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
            Records::Nat(records.into()),
            Dump::given(full_sync),
            None,
            Instant::now(),
        );
    }

    /// [`Sender::send_nat`] for records read as `read` says, as
    /// [`Sender::send_read`].
    pub(crate) fn send_nat_read(&self, records: Arc<[NatFlowRecord]>, read: Read) {
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

    /// Whether the peer closed this node's last connection before its
    /// Hello, at the lowest protocol version this node offers: its
    /// listener does not list this node's address among its peers (or
    /// every handshake slot of it was taken). Over at the next session.
    /// (The log says so; tests ask here.)
    #[cfg(test)]
    pub(crate) fn refused(&self) -> bool {
        self.shared.refused.load(Ordering::Relaxed)
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

    /// The protocol version of the last session (None before the first).
    pub fn protocol_version(&self) -> Option<u16> {
        match self.shared.version.load(Ordering::Relaxed) {
            0 => None,
            version => Some(version),
        }
    }

    /// Batches waiting to be sent.
    pub(crate) fn queued(&self) -> usize {
        self.shared.queue.len()
    }

    /// The flow records of the batches waiting to be sent (tests: whether
    /// peers' queues share one allocation).
    #[cfg(test)]
    pub(crate) fn queued_flows(&self) -> Vec<Arc<[FlowRecord]>> {
        self.shared
            .queue
            .lock()
            .iter()
            .filter_map(|b| match &b.records {
                Records::Flows(records) => Some(Arc::clone(records)),
                Records::Nat(_) => None,
            })
            .collect()
    }

    /// Which batch each queued one is, flows and NAT'd flows, oldest
    /// first (tests: which peer got which dump).
    #[cfg(test)]
    pub(crate) fn queued_dumps(&self) -> Vec<(Dump, usize)> {
        self.shared
            .queue
            .lock()
            .iter()
            .map(|b| {
                let dump = match (b.full_sync, b.complete) {
                    (true, true) => Dump::Session,
                    (true, false) => Dump::Periodic,
                    (false, _) => Dump::Incremental,
                };
                (dump, b.records.len())
            })
            .collect()
    }

    /// Counts a new session as a handshake does, without a peer (tests:
    /// one peer of several comes back).
    #[cfg(test)]
    pub(crate) fn fake_session(&self) {
        let number = self.shared.queue.begin_session();
        self.shared.sessions.send_replace(number);
    }

    /// Whether everything given so far has been written to the peer's
    /// connection (a node stepping down waits for this, briefly).
    pub(crate) fn is_flushed(&self) -> bool {
        self.shared.queue.is_idle()
    }

    /// Sets the config digests this node's sessions to the peer send (at
    /// once if they changed, and every so often: see `digest`); the same
    /// digests again change nothing.
    pub(crate) fn set_config_digests(&self, vips: Arc<[VipDigest]>) {
        self.shared.digests.send_if_modified(|current| {
            if current.as_deref() == Some(&*vips) {
                return false;
            }
            *current = Some(vips);
            true
        });
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
    /// Not an abort: a socket dropped with the peer's heartbeats unread
    /// would reset the connection and lose the last frames (see
    /// [`Sender::close`]).
    fn drop(&mut self) {
        self.shared.close_by(Instant::now() + self.drop_limit);
    }
}

/// Where a sender connects, and from which address.
#[derive(Debug, Clone, Copy)]
struct Link {
    peer: SocketAddr,
    /// None: the address the route picks. Bound as given, scope id
    /// included (a link-local address cannot be bound without one).
    source: Option<SocketAddr>,
}

async fn run_sender(
    link: Link,
    config: SyncConfig,
    stats: Arc<SyncStats>,
    shared: Arc<SenderShared>,
    timing: Timing,
) -> Closed {
    let mut closing = shared.closing.subscribe();
    let mut backoff = Backoff::new(timing);
    let mut offer = Offer::new(config.versions);
    let mut refusals = LogLimit::new(REFUSED_LOG_INTERVAL);
    loop {
        let attempt = connect_once(
            link,
            &config,
            &stats,
            &shared,
            timing,
            &mut offer,
            &mut closing,
        )
        .await;
        shared.connected.store(false, Ordering::Relaxed);
        let (healthy, error) = match attempt {
            Attempt::Closed(closed) => return closed,
            Attempt::Ended { healthy, error } => (healthy, error),
        };
        let (delay, repeated) = backoff.after(healthy);
        // A fallback to an older version is no failure worth an error.
        if !matches!(error, SyncError::Offer { .. }) {
            stats.count_error(&error);
            if shared.refused.load(Ordering::Relaxed) {
                log_refused(link, refusals.allow(Instant::now()));
            } else {
                log_session_end(&error, repeated);
            }
        }
        debug!(?delay, "reconnecting to the sync peer");
        tokio::select! {
            () = sleep(delay) => {}
            () = close_asked(Some(&mut closing)) => return Closed::NotConnected,
        }
        stats.add(Counter::Reconnects, 1);
    }
}

/// Logs that the peer refuses this node (`allowed`: the suppressed count
/// since the last warning, None while rate-limited): until its listener
/// lists this node, the peer gets none of this node's flows, and a new
/// node that joins a running mesh stays unknown to it.
fn log_refused(link: Link, allowed: Option<u64>) {
    let this = link.source.map_or_else(
        || "this node's sync listen address".to_owned(),
        |source| {
            format!(
                "this node's sync listen address ({}, with its port)",
                source.ip()
            )
        },
    );
    match allowed {
        Some(suppressed) => warn!(
            peer = %link.peer,
            suppressed,
            "sync peer {} refuses this node: add {this} to its sync.peers and reload it (a [[vrrp]] sync_peer: restart it); until then it gets none of this node's flows",
            link.peer
        ),
        None => debug!(peer = %link.peer, "the sync peer still refuses this node"),
    }
}

/// The protocol version a sender offers its peer: the highest it speaks,
/// or the one a backup of an earlier release answered with when it
/// refused an offer (such a backup speaks one version, sends its Hello
/// and closes), remembered until a session shows the peer speaks more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Offer {
    versions: Versions,
    next: u16,
}

impl Offer {
    pub(super) fn new(versions: Versions) -> Self {
        Self {
            versions,
            next: versions.max(),
        }
    }

    /// The version to offer next.
    pub(super) fn version(&self) -> u16 {
        self.next
    }

    /// After a handshake (the TCP connection was made) that failed with
    /// `error`, `seen` what the backup's Hello said (None: it sent none).
    pub(super) fn failed(&mut self, seen: Option<PeerHello>, error: &SyncError) {
        match (seen, error) {
            (Some(_), SyncError::Offer { offered, theirs }) => {
                info!(
                    offered,
                    theirs,
                    "the sync peer runs an earlier release that speaks protocol version {theirs} only: offering it"
                );
                self.next = *theirs;
            }
            // Closed before its Hello: perhaps a node that refuses an
            // unknown version without a word. One version less; a backup
            // of this release answers with the highest both speak anyway.
            (None, SyncError::Closed | SyncError::Io { .. }) if self.next > self.versions.min() => {
                self.next -= 1;
                debug!(
                    next = self.next,
                    "the sync peer closed before its Hello: offering an older version next"
                );
            }
            _ => {}
        }
    }

    /// After a handshake that established `session`: a backup of this
    /// release (its range authenticated) answers with the highest version
    /// both speak, whatever was offered, so the full range is offered
    /// again; one of an earlier release keeps its one version.
    pub(super) fn established(&mut self, session: &Session) {
        if session.peer_versions.is_some() {
            if self.next < self.versions.max() {
                info!(
                    version = session.version,
                    "the sync peer speaks newer protocol versions now: offering the highest again"
                );
            }
            self.next = self.versions.max();
        }
    }
}

/// The sender's reconnect delay. Only a session that was healthy for a
/// silence period resets it (see [`Progress`]: both ways moving, up to
/// the last frame read and the last batch written): one cut right after
/// its handshake (a listener with no room) or whose writes never got
/// through (a receiver too slow for the dump: its write times out after
/// a silence period, so the session lasts that long, but was never
/// healthy) counts as a failure, or each reconnect, 100 ms after the
/// last, would publish a new session and make the daemon dump its whole
/// table again to that peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Backoff {
    timing: Timing,
    /// The delay before the next attempt.
    next: Duration,
    /// Attempts failed since the last healthy session (the first is
    /// logged as such, the others as repeats).
    failures: u64,
}

impl Backoff {
    pub(super) fn new(timing: Timing) -> Self {
        Self {
            timing,
            next: timing.backoff_min,
            failures: 0,
        }
    }

    /// After an attempt whose session was healthy for `healthy` (None:
    /// no session): the delay before the next, and whether the end is a
    /// repeat of the failure before (logged quieter).
    pub(super) fn after(&mut self, healthy: Option<Duration>) -> (Duration, bool) {
        if healthy.is_some_and(|up| up >= self.timing.silence) {
            self.next = self.timing.backoff_min;
            self.failures = 0;
        }
        let repeated = self.failures > 0;
        self.failures = self.failures.saturating_add(1);
        let delay = self.next;
        self.next = delay.saturating_mul(2).min(self.timing.backoff_max);
        (delay, repeated)
    }
}

/// How one connection attempt ended.
enum Attempt {
    /// The connection ended (`healthy`: how long its session was
    /// healthy, see [`Progress`]; None: none was established), and why:
    /// the sender connects again.
    Ended {
        healthy: Option<Duration>,
        error: SyncError,
    },
    /// A close was asked for, and went so: the sender stops.
    Closed(Closed),
}

/// Connects, shakes hands (offering `offer`'s version) and runs a session
/// until it ends, or a close asked for by `closing` is done.
async fn connect_once(
    link: Link,
    config: &SyncConfig,
    stats: &SyncStats,
    shared: &SenderShared,
    timing: Timing,
    offer: &mut Offer,
    closing: &mut watch::Receiver<Option<Instant>>,
) -> Attempt {
    let connected = tokio::select! {
        connected = connect_timed(link, timing) => connected,
        () = close_asked(Some(&mut *closing)) => return Attempt::Closed(Closed::NotConnected),
    };
    let stream = match connected {
        Ok(stream) => stream,
        Err(error) => {
            // Down or unreachable, not refusing.
            shared.refused.store(false, Ordering::Relaxed);
            return Attempt::Ended {
                healthy: None,
                error,
            };
        }
    };
    let mut seen = None;
    let shaken = tokio::select! {
        shaken = shake(stream, config, timing, offer.version(), &mut seen) => shaken,
        () = close_asked(Some(&mut *closing)) => return Attempt::Closed(Closed::NotConnected),
    };
    let (mut rd, mut wr, session) = match shaken {
        Ok(shaken) => shaken,
        Err(error) => {
            // Closed before the peer's Hello at the lowest version: no
            // older release's refusal of a version, the peer's listener
            // closing a stranger's connection at accept.
            let refused = seen.is_none()
                && offer.version() <= config.versions.min()
                && matches!(error, SyncError::Closed | SyncError::Io { .. });
            shared.refused.store(refused, Ordering::Relaxed);
            offer.failed(seen, &error);
            return Attempt::Ended {
                healthy: None,
                error,
            };
        }
    };
    offer.established(&session);
    shared.refused.store(false, Ordering::Relaxed);
    let progress = Progress::new();
    stats.add(Counter::Sessions, 1);
    *shared
        .peer_node
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(session.peer_id.clone());
    shared.version.store(session.version, Ordering::Relaxed);
    // Full syncs queued before the session go before it counts (see
    // SendQueue::begin_session).
    let number = shared.queue.begin_session();
    shared.connected.store(true, Ordering::Relaxed);
    shared.sessions.send_replace(number);
    info!(
        peer_node = %session.peer_id,
        version = session.version,
        queued = shared.queue.len(),
        "sync session established"
    );
    session.log_version();
    let outgoing = Outgoing {
        queue: &shared.queue,
        closing: closing.clone(),
        progress: &progress,
        digest: DigestOut::new(shared.digests.subscribe()),
    };
    let result = run_session(
        &mut rd,
        &mut wr,
        session,
        None,
        Some(outgoing),
        stats,
        timing,
    )
    .await;
    match result {
        Ok(()) => Attempt::Closed(Closed::Delivered),
        Err(error) if closing.borrow().is_some() => Attempt::Closed(Closed::Failed(error)),
        Err(error) => Attempt::Ended {
            healthy: Some(progress.healthy()),
            error,
        },
    }
}

/// A TCP connection to `link`, within `timing.connect`.
async fn connect_timed(link: Link, timing: Timing) -> Result<TcpStream, SyncError> {
    timeout(timing.connect, connect(link))
        .await
        .map_err(|_| SyncError::Timeout {
            what: "connect",
            after: timing.connect,
        })?
}

/// `stream`'s handshake, offering `offer`; what the backup's Hello said
/// is left in `seen`.
async fn shake(
    stream: TcpStream,
    config: &SyncConfig,
    timing: Timing,
    offer: u16,
    seen: &mut Option<PeerHello>,
) -> Result<(BufReader<OwnedReadHalf>, OwnedWriteHalf, Session), SyncError> {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "setting TCP_NODELAY failed");
    }
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
    let side = Side::Master { offer, seen };
    let session = handshake_timed(&mut rd, &mut wr, side, config, timing, None).await?;
    Ok((rd, wr, session))
}

/// A TCP connection to `link.peer`, from `link.source` when given.
async fn connect(link: Link) -> Result<TcpStream, SyncError> {
    let Some(source) = link.source else {
        return TcpStream::connect(link.peer)
            .await
            .map_err(|source| SyncError::Io {
                action: "connecting to the sync peer",
                source,
            });
    };
    let socket = match source {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|source| SyncError::Io {
        action: "opening a socket to the sync peer",
        source,
    })?;
    socket.bind(source).map_err(|source| SyncError::Io {
        action: "binding the sync sender to this node's listen address",
        source,
    })?;
    socket
        .connect(link.peer)
        .await
        .map_err(|source| SyncError::Io {
            action: "connecting to the sync peer",
            source,
        })
}
