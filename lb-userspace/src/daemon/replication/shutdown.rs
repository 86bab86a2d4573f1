//! Stepping down and stopping: the last flows written to every peer before
//! a flush returns or the sessions close.

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::Replication;
use crate::sync;

/// How often [`Replication::flush`] looks at the senders' queues.
const FLUSH_POLL: Duration = Duration::from_millis(10);

impl Replication {
    /// Waits, at most `limit`, until every connected peer has been
    /// written all that was given to it: a node stepping down (SIGINT)
    /// sends its last tick's flows before its peer takes over.
    pub(crate) async fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self
            .peers
            .iter()
            .any(|p| p.sender().connected() && !p.sender().is_flushed())
        {
            if Instant::now() >= deadline {
                warn!(
                    ?limit,
                    "connection-table sync: the last flows were not all sent in time"
                );
                return;
            }
            tokio::time::sleep(FLUSH_POLL).await;
        }
    }

    /// Ends replication for good (lbd stops), waiting at most `limit`
    /// (every peer at once): each sender writes what is still queued and
    /// closes its session so that the peer reads all of it first (see
    /// `sync::Sender::close`). Dropping the senders instead could reset
    /// the connections and lose the last flows written (a final flush's).
    pub(crate) async fn close(mut self, limit: Duration) {
        let mut closing = tokio::task::JoinSet::new();
        for peer in std::mem::take(&mut self.peers) {
            closing.spawn(peer.close(limit));
        }
        while let Some(done) = closing.join_next().await {
            match done {
                Ok((address, sync::Closed::Delivered)) => {
                    info!(peer = %address, "connection-table sync closed: the peer read everything sent")
                }
                Ok((address, sync::Closed::NotConnected)) => {
                    debug!(peer = %address, "connection-table sync closed: no session was up")
                }
                Ok((address, sync::Closed::Failed(error))) => warn!(
                    peer = %address,
                    %error,
                    ?limit,
                    "connection-table sync: closing the session failed; the peer may have missed the last flows sent"
                ),
                Err(error) => warn!(%error, "connection-table sync: a sender's close failed"),
            }
        }
    }
}
