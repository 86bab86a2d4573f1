//! The backup's side: a listener that accepts masters, authenticates
//! each in a session and hands their batches to the daemon, one per frame.

use std::{net::SocketAddr, sync::Arc};

use tokio::{
    io::BufReader,
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::{JoinHandle, JoinSet},
    time::sleep,
};
use tracing::{debug, error, info, info_span, warn, Instrument};

use super::{
    session::{handshake_timed, log_session_end, run_session},
    Timing, MAX_CONNECTIONS, READ_BUFFER,
};
use crate::sync::{
    wire::Role, Counter, FlowRecord, NatFlowRecord, SyncConfig, SyncError, SyncStats,
};

/// A batch as the backup receives it: one frame's worth of records (at
/// most [`MAX_BATCH_RECORDS`](crate::sync::wire::MAX_BATCH_RECORDS)),
/// from an authenticated master.
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
    /// [`MAX_BATCH_RECORDS`](crate::sync::wire::MAX_BATCH_RECORDS) arrives
    /// as several frames); with `full_sync`, the full sync is complete.
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

pub(super) async fn listen_with(
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
