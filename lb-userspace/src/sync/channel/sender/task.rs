//! The sender's task: its reconnect loop, and the warning that the peer
//! refuses this node. Apart from one attempt (`attempt`), which it
//! repeats with backoff until a close.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use tokio::time::sleep;
use tracing::{debug, warn};

use super::super::{
    session::{close_asked, log_session_end},
    Timing,
};
use super::{
    attempt::{connect_once, Attempt},
    connect::Link,
    shared::SenderShared,
    Backoff, Closed, Offer,
};
use crate::sync::{log_limit::LogLimit, Counter, SyncConfig, SyncError, SyncStats};

/// At most one warning this often that the peer refuses this node (it
/// retries every few seconds for as long as the peer does not list it).
const REFUSED_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The sender's task: connects (see `attempt`), sends batches as they
/// are queued, and on a lost or refused session waits out the backoff and
/// connects again, until the handle closes it; says why it ended.
pub(super) async fn run_sender(
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
