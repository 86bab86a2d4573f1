//! One connection attempt of the sender's task: connect, shake hands,
//! publish the new session and run it until it ends or a close is done.
//! Apart from the reconnect loop (`task`), which only decides what next.

use std::{
    sync::{atomic::Ordering, PoisonError},
    time::{Duration, Instant},
};

use tokio::sync::watch;
use tracing::info;

use super::super::{
    backend_states::BackendStatesOut,
    digest::DigestOut,
    session::{close_asked, run_session, Outgoing, Progress},
    Timing,
};
use super::{
    connect::{connect_timed, shake, Link},
    shared::SenderShared,
    Closed, Offer,
};
use crate::sync::{Counter, SyncConfig, SyncError, SyncStats};

/// How one connection attempt ended.
pub(super) enum Attempt {
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
pub(super) async fn connect_once(
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
        backend_states: BackendStatesOut::new(shared.backend_states.subscribe()),
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
