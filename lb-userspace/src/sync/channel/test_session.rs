//! One real session between a listener and a sender speaking given
//! protocol version ranges, for the tests of what sessions carry beside
//! flows (config digests, backend states): each reads its own store off
//! the listener's handle.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{sync::mpsc, time::timeout};

use super::{listen, ListenerHandle, Sender};
use crate::sync::{wire::Versions, SyncConfig, SyncStats};

/// The shared key of both ends.
pub(super) const KEY: &[u8] = b"test-key-0123456789abcdef";
/// How long a test waits for a session or for what it carries.
pub(super) const LIMIT: Duration = Duration::from_secs(8);

/// Node `node`'s config speaking `versions`.
pub(super) fn config(node: &str, versions: Versions) -> SyncConfig {
    SyncConfig {
        versions,
        ..SyncConfig::new(KEY.to_vec(), node)
    }
}

/// A listener (`lb-b`) speaking `listener` and a sender (`lb-a`) speaking
/// `sender` with a session up between them, and the sender's counters.
pub(super) async fn versioned_session(
    sender: Versions,
    listener: Versions,
) -> (ListenerHandle, Sender, Arc<SyncStats>) {
    let (tx, mut rx) = mpsc::channel(16);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let handle = listen(
        local,
        config("lb-b", listener),
        tx,
        Arc::new(SyncStats::new()),
    )
    .await
    .expect("a listener");
    let stats = Arc::new(SyncStats::new());
    let sender = Sender::start(handle.local_addr(), config("lb-a", sender), stats.clone())
        .expect("a sender");
    let mut sessions = sender.sessions();
    timeout(LIMIT, sessions.wait_for(|&n| n >= 1))
        .await
        .expect("a session in time")
        .expect("the sender runs");
    (handle, sender, stats)
}
