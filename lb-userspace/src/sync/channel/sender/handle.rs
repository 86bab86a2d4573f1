//! The [`Sender`] handle the daemon holds for one peer: starting its task,
//! closing it without a loss, and what it tells of the session. How the
//! batches it is given are queued is in `enqueue`.

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
    runtime::Handle,
    sync::{watch, Notify},
    task::JoinHandle,
    time::timeout_at,
};
use tracing::{info_span, Instrument};

#[cfg(test)]
use super::super::queue::Records;
use super::super::{queue::SendQueue, Timing, SEND_QUEUE_CAPACITY, SEND_QUEUE_RECORDS};
#[cfg(test)]
use super::Dump;
use super::{connect::Link, shared::SenderShared, task::run_sender};
#[cfg(test)]
use crate::sync::FlowRecord;
use crate::sync::{
    wire::{BackendStateRecord, VipDigest},
    SyncConfig, SyncError, SyncStats,
};

/// How much longer than its limit [`Sender::close`] waits for the task,
/// which keeps to the limit itself, before it aborts it.
const CLOSE_MARGIN: Duration = Duration::from_millis(100);

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
    pub(super) shared: Arc<SenderShared>,
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
    /// peers' addresses shake hands ([`Sources`](crate::sync::channel::Sources)), and the
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

    /// As [`Self::start`], with the channel's timers `timing` (the tests'
    /// shorter ones).
    pub(crate) fn start_with(
        peer: SocketAddr,
        config: SyncConfig,
        stats: Arc<SyncStats>,
        timing: Timing,
    ) -> Result<Sender, SyncError> {
        Self::spawn(peer, None, config, stats, timing)
    }

    /// Checks `config`, then starts the task that connects to `peer`
    /// (from `source`, if given) and sends what is queued, reconnecting
    /// with backoff: every constructor's one body. Fails outside a Tokio
    /// runtime.
    pub(in crate::sync::channel) fn spawn(
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
            backend_states: watch::Sender::new(None),
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
    /// ([`ReceivedBatch::peer`](crate::sync::channel::ReceivedBatch::peer)), since every
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

    /// Sets the backend states this node's sessions to the peer send,
    /// whatever the topology (at once if they changed, and every so
    /// often: see `backend_states`); the same states again change
    /// nothing. Until this is called the sessions send none.
    pub(crate) fn set_backend_states(&self, states: Arc<[BackendStateRecord]>) {
        self.shared.backend_states.send_if_modified(|current| {
            if current.as_deref() == Some(&*states) {
                return false;
            }
            *current = Some(states);
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
