//! The accept loop: who may shake hands, the slots handshakes and
//! sessions get, so idle or hostile sockets never lock out a real peer.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Instant};

use tokio::{
    net::{TcpListener, TcpStream},
    task::{AbortHandle, JoinSet},
    time::sleep,
};
use tracing::{debug, error, info, info_span, Instrument};

use super::{
    super::{
        slots::{Progress, Slots},
        MAX_HANDSHAKES, MAX_HANDSHAKES_PER_SOURCE, MAX_SESSIONS,
    },
    connection::{serve, shake, Established},
    shared::{log_accept_failure, Shared},
};
use crate::sync::{Counter, SyncError};

/// Unauthenticated connections and sessions are kept apart: only
/// `shared.sources` may shake hands (others are closed at once);
/// handshakes get [`MAX_HANDSHAKES`] slots, at most
/// [`MAX_HANDSHAKES_PER_SOURCE`] per source address (per IPv6 /64 when
/// any address may shake hands, see [`Sources::group`](super::super::slots::Sources::group)), a
/// newcomer taking the slot of the one whose peer has sent least (the
/// oldest of those) rather than being refused, and
/// must send their first byte within `timing.first_byte`; sessions get
/// [`MAX_SESSIONS`] slots of their own, one per node id (a new one
/// replaces the old). Idle or hostile sockets thus never lock out a real
/// peer.
pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
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
