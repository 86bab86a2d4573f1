//! Backend states over a session (protocol version 4): every sender
//! session, whatever the topology, sends the operator's backend states
//! the daemon gave it (see
//! [`wire::backend_states`](crate::sync::wire::backend_states)) once its
//! session is up, whenever the daemon gives new ones, and every
//! [`STATES_REFRESH`]; the listener keeps the last ones each peer sent
//! ([`PeerBackendStates`]) for the daemon to merge with its own (the
//! later change wins: the daemon's decision, not the channel's). A sender
//! never given states sends none. States are sent after a heartbeat (when
//! the writer has nothing else queued), right after the config digests:
//! a change reaches the peer within about a second on a quiet session.

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::sync::watch;
use tracing::{debug, warn};

use crate::sync::wire::{BackendStateRecord, Sealer, WireError, BACKEND_STATES_VERSION};

/// How often a sender sends its states again though they did not change,
/// so the peer's copy never gets older than that on a live session.
pub(crate) const STATES_REFRESH: Duration = Duration::from_secs(10);
/// A peer's states not refreshed for this long are unknown: its session
/// ended, or it runs no longer (the daemon merges nothing of it).
pub const STATES_EXPIRY: Duration = Duration::from_secs(35);
/// Node ids [`PeerBackendStates`] keeps at most (as the config digests
/// and the daemon's receipts).
const MAX_PEERS: usize = 64;

/// The states a sender sends (None until the daemon gives some).
pub(crate) type OwnBackendStates = Option<Arc<[BackendStateRecord]>>;

/// One session writer's view of the states to send.
pub(super) struct BackendStatesOut {
    states: watch::Receiver<OwnBackendStates>,
    sent: Option<Instant>,
}

impl BackendStatesOut {
    /// For a session starting now: its first look sends what is set.
    pub(super) fn new(states: watch::Receiver<OwnBackendStates>) -> Self {
        Self { states, sent: None }
    }

    /// The sealed BackendStates frame to write now, if one is due: the
    /// states changed, or were not sent for [`STATES_REFRESH`] (or not
    /// yet in this session). None in a session below
    /// [`BACKEND_STATES_VERSION`] (a peer of an earlier release), and
    /// while the daemon gave none. States the encoding refuses (a
    /// daemon's bug: too many, or a record that breaks its rules) are
    /// logged and not sent, the session going on: flows still replicate.
    pub(super) fn due(&mut self, sealer: &mut Sealer) -> Result<Option<Vec<u8>>, WireError> {
        if sealer.version() < BACKEND_STATES_VERSION {
            return Ok(None);
        }
        let changed = self.states.has_changed().unwrap_or(false);
        let stale = self.sent.is_none_or(|at| at.elapsed() >= STATES_REFRESH);
        if !changed && !stale {
            return Ok(None);
        }
        let Some(states) = self.states.borrow_and_update().clone() else {
            return Ok(None);
        };
        self.sent = Some(Instant::now());
        match sealer.backend_states(&states) {
            Ok(frame) => Ok(Some(frame)),
            Err(WireError::SequenceExhausted) => Err(WireError::SequenceExhausted),
            Err(error) => {
                warn!(%error, states = states.len(), "backend states not sent: the encoding refuses them");
                Ok(None)
            }
        }
    }
}

/// One peer's states as last received.
#[derive(Debug, Clone)]
struct Received {
    states: Arc<[BackendStateRecord]>,
    at: Instant,
}

/// The backend states each peer's sender sent this node's listener, by
/// node id (as its handshake authenticated it). Shared by the listener's
/// sessions and the daemon.
#[derive(Debug, Clone, Default)]
pub struct PeerBackendStates(Arc<Mutex<HashMap<String, Received>>>);

impl PeerBackendStates {
    /// Keeps `states` as `peer`'s, received now.
    pub(super) fn record(&self, peer: &str, states: Vec<BackendStateRecord>) {
        let now = Instant::now();
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !known.contains_key(peer) && known.len() >= MAX_PEERS {
            known.retain(|_, r| now.duration_since(r.at) < STATES_EXPIRY);
            if known.len() >= MAX_PEERS {
                debug!(peer_node = %peer, limit = MAX_PEERS, "backend states: too many node ids; this one's are not kept");
                return;
            }
        }
        known.insert(
            peer.to_owned(),
            Received {
                states: states.into(),
                at: now,
            },
        );
    }

    /// Each peer's states received within [`STATES_EXPIRY`] of `now`.
    pub fn current(&self, now: Instant) -> HashMap<String, Arc<[BackendStateRecord]>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.at) < STATES_EXPIRY)
            .map(|(peer, r)| (peer.clone(), Arc::clone(&r.states)))
            .collect()
    }
}
