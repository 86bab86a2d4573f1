//! The state a [`Sender`](super::Sender) shares with its task: the queue,
//! what the last session learned of the peer, and the close request. Apart
//! because both the handle and the task read and write it.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU16},
        Mutex,
    },
    time::Instant,
};

use tokio::sync::watch;

use super::super::{backend_states::OwnBackendStates, digest::OwnDigests, queue::SendQueue};

/// What the [`Sender`](super::Sender) shares with its task.
pub(super) struct SenderShared {
    pub(super) queue: SendQueue,
    pub(super) connected: AtomicBool,
    pub(super) sessions: watch::Sender<u64>,
    /// The peer's node id, as its last handshake authenticated it.
    pub(super) peer_node: Mutex<Option<String>>,
    /// The protocol version of the last session (0: none yet).
    pub(super) version: AtomicU16,
    /// The last attempt was closed by the peer before its Hello, at the
    /// lowest version this node offers: the peer's listener does not
    /// admit this node (logged by the sender task: `log_refused`).
    pub(super) refused: AtomicBool,
    /// Once a close is asked for, the deadline by which the task ends
    /// (see [`Sender::close`](super::Sender::close)).
    pub(super) closing: watch::Sender<Option<Instant>>,
    /// The config digests each session sends (see `digest`).
    pub(super) digests: watch::Sender<OwnDigests>,
    /// The backend states each session sends (see `backend_states`).
    pub(super) backend_states: watch::Sender<OwnBackendStates>,
}

impl SenderShared {
    /// Asks the task to close by `deadline`, unless a close was asked
    /// for already.
    pub(super) fn close_by(&self, deadline: Instant) {
        self.closing.send_if_modified(|closing| {
            if closing.is_some() {
                return false;
            }
            *closing = Some(deadline);
            true
        });
    }
}
