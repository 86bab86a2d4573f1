//! Backend states over real sessions: a sender's reach the peer's
//! listener and each change follows, none go to a peer of the release
//! before or from a sender never given any, they expire; and the writer's
//! schedule (change, refresh, version) on its own.

use std::net::SocketAddr;

use tokio::time::sleep;

use super::*;
use crate::sync::{
    channel::{
        test_session::{config, versioned_session, KEY, LIMIT},
        ListenerHandle, Sender,
    },
    wire::{self, backend_states::tests::backend_state, Message, Role, Transcript, Versions},
    SyncStats,
};

/// `n` backends' states, starting at the `from`th.
fn states(from: u32, n: u32) -> Arc<[BackendStateRecord]> {
    (from..from + n).map(backend_state).collect()
}

/// Waits until `lb-a`'s states on `peers` are `want`.
async fn wait_for(peers: &PeerBackendStates, want: Option<Arc<[BackendStateRecord]>>) {
    let start = Instant::now();
    while peers.current(Instant::now()).get("lb-a").cloned() != want {
        assert!(start.elapsed() < LIMIT, "states never became {want:?}");
        sleep(Duration::from_millis(10)).await;
    }
}

/// A listener speaking `listener` and a sender speaking `sender` with a
/// session up, the listener's states store, and the sender's counters.
async fn session(
    sender: Versions,
    listener: Versions,
) -> (ListenerHandle, Sender, Arc<SyncStats>, PeerBackendStates) {
    let (handle, sender, stats) = versioned_session(sender, listener).await;
    let peers = handle.peer_backend_states().clone();
    (handle, sender, stats, peers)
}

#[tokio::test]
async fn a_peer_keeps_what_a_sender_sends_and_each_change() {
    let (_listener, sender, stats, peers) = session(Versions::RELEASE, Versions::RELEASE).await;
    assert_eq!(sender.protocol_version(), Some(BACKEND_STATES_VERSION));
    sender.set_backend_states(states(0, 6));
    wait_for(&peers, Some(states(0, 6))).await;
    // A drain ended, a backend enabled: the new list replaces the old.
    sender.set_backend_states(states(3, 2));
    wait_for(&peers, Some(states(3, 2))).await;
    // None left is news too.
    sender.set_backend_states(states(0, 0));
    wait_for(&peers, Some(states(0, 0))).await;
    let s = stats.snapshot();
    assert_eq!((s.sessions, s.decode_errors), (1, 0));
    // Expired: unknown.
    assert!(peers.current(Instant::now() + STATES_EXPIRY).is_empty());
    assert_eq!(peers.current(Instant::now()).len(), 1);
}

#[tokio::test]
async fn a_sender_never_given_states_sends_none() {
    let (_listener, sender, stats, peers) = session(Versions::RELEASE, Versions::RELEASE).await;
    // Past a heartbeat (1 s): states would have gone with it.
    sleep(Duration::from_millis(1500)).await;
    assert!(peers.current(Instant::now()).is_empty());
    // Config digests alone do not bring states.
    sender.set_config_digests(Arc::from([]));
    sleep(Duration::from_millis(1500)).await;
    assert!(peers.current(Instant::now()).is_empty());
    sender.set_backend_states(states(0, 1));
    wait_for(&peers, Some(states(0, 1))).await;
    let s = stats.snapshot();
    assert_eq!((s.sessions, s.decode_errors), (1, 0));
}

#[tokio::test]
async fn a_peer_of_the_release_before_gets_and_sends_none() {
    let before = Versions::new(1, 3).unwrap();
    for (sender_versions, listener_versions) in
        [(Versions::RELEASE, before), (before, Versions::RELEASE)]
    {
        let (_listener, sender, stats, peers) = session(sender_versions, listener_versions).await;
        assert_eq!(sender.protocol_version(), Some(3));
        sender.set_backend_states(states(0, 6));
        // Past a heartbeat (1 s): states would have gone with it.
        sleep(Duration::from_millis(1500)).await;
        assert!(peers.current(Instant::now()).is_empty());
        assert!(sender.connected(), "the session carries on");
        let s = stats.snapshot();
        assert_eq!((s.sessions, s.decode_errors), (1, 0));
    }
}

/// A version-4 sealer of a fixed session.
fn sealer(version: u16) -> Sealer {
    let (m, b) = ([1; wire::NONCE_LEN], [2; wire::NONCE_LEN]);
    let t = Transcript {
        master_nonce: &m,
        backup_nonce: &b,
        master_id: "lb-a",
        backup_id: "lb-b",
    };
    wire::session_at(KEY, Role::Master, &t, version).unwrap().0
}

/// The states a frame carries.
fn carried(frame: &[u8]) -> Vec<BackendStateRecord> {
    let body = wire::split_frame(frame).unwrap().0;
    let message = &body[..body.len() - wire::TAG_LEN];
    match Message::decode(message).unwrap() {
        Message::BackendStates { states, .. } => states,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_writer_sends_on_a_change_and_each_refresh_only() {
    let own = watch::Sender::new(None);
    let mut out = BackendStatesOut::new(own.subscribe());
    let mut v4 = sealer(BACKEND_STATES_VERSION);
    // Never set: nothing, however often it looks.
    assert_eq!(out.due(&mut v4), Ok(None));
    assert_eq!(out.due(&mut v4), Ok(None));
    own.send_replace(Some(states(0, 2)));
    let first = out.due(&mut v4).unwrap().expect("sent once set");
    assert_eq!(carried(&first), *states(0, 2));
    assert_eq!(out.due(&mut v4), Ok(None), "nothing new");
    own.send_replace(Some(states(2, 3)));
    let changed = out.due(&mut v4).unwrap().expect("sent on a change");
    assert_eq!(carried(&changed), *states(2, 3));
    assert_eq!(out.due(&mut v4), Ok(None));
    // A refresh is due.
    out.sent = Instant::now().checked_sub(STATES_REFRESH);
    let again = out.due(&mut v4).unwrap().expect("sent again when stale");
    assert_eq!(carried(&again), *states(2, 3));
    // States the encoding refuses are not sent; the session goes on.
    let bad = BackendStateRecord {
        drain_started_unix_ms: 1,
        ..backend_state(0)
    };
    own.send_replace(Some(Arc::from([bad])));
    let seq = v4.next_seq();
    assert_eq!(out.due(&mut v4), Ok(None));
    assert_eq!(v4.next_seq(), seq, "no sequence number taken");
    // Below version 4: never.
    let mut v3 = sealer(3);
    let mut old = BackendStatesOut::new(own.subscribe());
    own.send_replace(Some(states(0, 1)));
    assert_eq!(old.due(&mut v3), Ok(None));
}

#[test]
fn peers_states_expire_and_are_bounded() {
    let peers = PeerBackendStates::default();
    peers.record("lb-a", states(0, 2).to_vec());
    peers.record("lb-c", states(2, 1).to_vec());
    let now = Instant::now();
    let current = peers.current(now);
    assert_eq!(current.len(), 2);
    assert_eq!(current.get("lb-a"), Some(&states(0, 2)));
    // The newest from a peer replaces its last.
    peers.record("lb-a", states(5, 1).to_vec());
    assert_eq!(peers.current(now).get("lb-a"), Some(&states(5, 1)));
    assert!(peers.current(Instant::now() + STATES_EXPIRY).is_empty());
    // Past MAX_PEERS node ids, a new one is not kept; a known one is.
    for i in 0..MAX_PEERS {
        peers.record(&format!("lb-{i}"), Vec::new());
    }
    let before = peers.current(Instant::now()).len();
    assert!(before <= MAX_PEERS);
    peers.record("lb-new", Vec::new());
    assert!(!peers.current(Instant::now()).contains_key("lb-new"));
    peers.record("lb-a", states(0, 1).to_vec());
    assert_eq!(
        peers.current(Instant::now()).get("lb-a"),
        Some(&states(0, 1))
    );
}

#[tokio::test]
async fn a_sender_refuses_states_from_the_listening_side() {
    use tokio::{
        io::{AsyncWriteExt, BufReader},
        net::TcpListener,
    };

    use crate::sync::channel::session::handshake;

    // A listener that sends states back over the session, which only a
    // sender does.
    let fake = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = fake.local_addr().unwrap();
    let fake_task = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = fake.accept().await.unwrap();
            let (rd, mut wr) = stream.into_split();
            let mut rd = BufReader::new(rd);
            let cfg = config("lb-b", Versions::RELEASE);
            if let Ok(mut session) = handshake(&mut rd, &mut wr, Role::Backup, &cfg).await {
                let frame = session.sealer.backend_states(&states(0, 1)).unwrap();
                wr.write_all(&frame).await.unwrap();
                held.push((rd, wr));
            }
        }
    });
    let stats = Arc::new(SyncStats::new());
    let sender = Sender::start(addr, config("lb-a", Versions::RELEASE), stats.clone()).unwrap();
    let start = Instant::now();
    while stats.snapshot().decode_errors == 0 {
        assert!(start.elapsed() < LIMIT, "the states were taken");
        sleep(Duration::from_millis(10)).await;
    }
    assert!(stats.snapshot().sessions >= 1);
    drop(sender);
    fake_task.abort();
}
