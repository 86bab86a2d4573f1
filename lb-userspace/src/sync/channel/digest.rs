//! Config digests over a session (protocol version 3): a master sends
//! its VIPs' digests of their Maglev inputs (see
//! [`wire::digest`](crate::sync::wire::digest)) once its session is up,
//! whenever the daemon gives new ones, and every [`DIGEST_REFRESH`]; a
//! backup keeps the last ones each peer sent ([`PeerDigests`]) for the
//! daemon to compare with its own. Digests are sent after a heartbeat
//! (when the writer has nothing else queued): a change reaches the peer
//! within about a second on a quiet session.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::sync::watch;
use tracing::debug;

use crate::sync::wire::{Sealer, VipDigest, WireError, CONFIG_DIGEST_VERSION};

/// How often a master sends its digests again though they did not change,
/// so a backup's copy never gets older than that on a live session.
pub(crate) const DIGEST_REFRESH: Duration = Duration::from_secs(10);
/// A peer's digests not refreshed for this long are unknown: its session
/// ended, or it runs no longer (the daemon compares nothing for it).
pub const DIGEST_EXPIRY: Duration = Duration::from_secs(35);
/// Node ids [`PeerDigests`] keeps at most (as the daemon's receipts).
const MAX_PEERS: usize = 64;

/// The digests a master's sender sends (None until the daemon gives some).
pub(crate) type OwnDigests = Option<Arc<[VipDigest]>>;

/// One session writer's view of the digests to send.
pub(super) struct DigestOut {
    digests: watch::Receiver<OwnDigests>,
    sent: Option<Instant>,
}

impl DigestOut {
    /// For a session starting now: its first look sends what is set.
    pub(super) fn new(digests: watch::Receiver<OwnDigests>) -> Self {
        Self {
            digests,
            sent: None,
        }
    }

    /// The sealed ConfigDigest frame to write now, if one is due: the
    /// digests changed, or were not sent for [`DIGEST_REFRESH`] (or not
    /// yet in this session). None in a session below
    /// [`CONFIG_DIGEST_VERSION`] (a peer of an earlier release).
    pub(super) fn due(&mut self, sealer: &mut Sealer) -> Result<Option<Vec<u8>>, WireError> {
        if sealer.version() < CONFIG_DIGEST_VERSION {
            return Ok(None);
        }
        let changed = self.digests.has_changed().unwrap_or(false);
        let stale = self.sent.is_none_or(|at| at.elapsed() >= DIGEST_REFRESH);
        if !changed && !stale {
            return Ok(None);
        }
        let Some(vips) = self.digests.borrow_and_update().clone() else {
            return Ok(None);
        };
        self.sent = Some(Instant::now());
        sealer.config_digest(&vips).map(Some)
    }
}

/// One peer's digests as last received.
#[derive(Debug, Clone)]
struct Received {
    vips: Arc<[VipDigest]>,
    at: Instant,
}

/// The digests each master sent this backup, by node id (as its
/// handshake authenticated it). Shared by the listener's sessions and
/// the daemon.
#[derive(Debug, Clone, Default)]
pub struct PeerDigests(Arc<Mutex<HashMap<String, Received>>>);

impl PeerDigests {
    /// Keeps `vips` as `peer`'s digests, received now.
    pub(super) fn record(&self, peer: &str, vips: Vec<VipDigest>) {
        let now = Instant::now();
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !known.contains_key(peer) && known.len() >= MAX_PEERS {
            known.retain(|_, r| now.duration_since(r.at) < DIGEST_EXPIRY);
            if known.len() >= MAX_PEERS {
                debug!(peer_node = %peer, limit = MAX_PEERS, "config digests: too many node ids; this one's are not kept");
                return;
            }
        }
        known.insert(
            peer.to_owned(),
            Received {
                vips: vips.into(),
                at: now,
            },
        );
    }

    /// Each peer's digests received within [`DIGEST_EXPIRY`] of `now`.
    pub fn current(&self, now: Instant) -> HashMap<String, Arc<[VipDigest]>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.at) < DIGEST_EXPIRY)
            .map(|(peer, r)| (peer.clone(), Arc::clone(&r.vips)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::sleep;

    use super::*;
    use crate::sync::{
        channel::{
            test_session::{versioned_session, LIMIT},
            ListenerHandle, Sender,
        },
        wire::{digest::DIGEST_LEN, Versions},
        SyncStats,
    };

    fn digests(byte: u8) -> Arc<[VipDigest]> {
        Arc::from([VipDigest {
            vip: "198.18.0.100".parse().unwrap(),
            port: 80,
            protocol: 6,
            digest: [byte; DIGEST_LEN],
        }])
    }

    /// Waits until `lb-a`'s digests on `peers` are `want`.
    async fn wait_for(peers: &PeerDigests, want: Option<Arc<[VipDigest]>>) {
        let start = Instant::now();
        while peers.current(Instant::now()).get("lb-a").cloned() != want {
            assert!(start.elapsed() < LIMIT, "digests never became {want:?}");
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// A backup speaking `backup` and a master speaking `master` with a
    /// session up, the backup's digests store, and the master's counters.
    async fn session(
        master: Versions,
        backup: Versions,
    ) -> (ListenerHandle, Sender, Arc<SyncStats>, PeerDigests) {
        let (listener, sender, stats) = versioned_session(master, backup).await;
        let peers = listener.peer_digests().clone();
        (listener, sender, stats, peers)
    }

    #[tokio::test]
    async fn a_backup_keeps_what_a_master_sends_and_each_change() {
        let (_listener, sender, stats, peers) = session(Versions::RELEASE, Versions::RELEASE).await;
        assert_eq!(
            sender.protocol_version(),
            Some(crate::sync::wire::PROTOCOL_VERSION)
        );
        sender.set_config_digests(digests(1));
        wait_for(&peers, Some(digests(1))).await;
        sender.set_config_digests(digests(2));
        wait_for(&peers, Some(digests(2))).await;
        let s = stats.snapshot();
        assert_eq!((s.sessions, s.decode_errors), (1, 0));
        // Expired: unknown, not a mismatch.
        assert!(peers.current(Instant::now() + DIGEST_EXPIRY).is_empty());
    }

    #[tokio::test]
    async fn a_peer_of_the_release_before_gets_and_sends_none() {
        let before = Versions::new(1, 2).unwrap();
        for (master, backup) in [(Versions::RELEASE, before), (before, Versions::RELEASE)] {
            let (_listener, sender, stats, peers) = session(master, backup).await;
            assert_eq!(sender.protocol_version(), Some(2));
            sender.set_config_digests(digests(1));
            // Past a heartbeat (1 s): a digest would have gone with it.
            sleep(Duration::from_millis(1500)).await;
            assert!(peers.current(Instant::now()).is_empty());
            assert!(sender.connected(), "the session carries on");
            let s = stats.snapshot();
            assert_eq!((s.sessions, s.decode_errors), (1, 0));
        }
    }
}
