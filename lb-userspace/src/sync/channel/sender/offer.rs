//! The protocol version a sender offers ([`Offer`]): apart because the
//! fallback to a backup of an earlier release is its own small state
//! machine, tested on its own.

use tracing::{debug, info};

use super::super::session::{PeerHello, Session};
use crate::sync::{wire::Versions, SyncError};

/// The protocol version a sender offers its peer: the highest it speaks,
/// or the one a backup of an earlier release answered with when it
/// refused an offer (such a backup speaks one version, sends its Hello
/// and closes), remembered until a session shows the peer speaks more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::sync::channel) struct Offer {
    versions: Versions,
    next: u16,
}

impl Offer {
    pub(in crate::sync::channel) fn new(versions: Versions) -> Self {
        Self {
            versions,
            next: versions.max(),
        }
    }

    /// The version to offer next.
    pub(in crate::sync::channel) fn version(&self) -> u16 {
        self.next
    }

    /// After a handshake (the TCP connection was made) that failed with
    /// `error`, `seen` what the backup's Hello said (None: it sent none).
    pub(in crate::sync::channel) fn failed(&mut self, seen: Option<PeerHello>, error: &SyncError) {
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
    pub(in crate::sync::channel) fn established(&mut self, session: &Session) {
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
