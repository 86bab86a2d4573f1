//! What each peer gets of a walk: a dump read before a peer's session
//! never reaches it as that session's dump, one allocation is shared by
//! every queue, and only the peer with a new session gets a session
//! dump.

use super::*;

/// Records of age 0 as sent: the sender adds the time they waited to
/// their ages (a few ms here).
fn unaged(records: Vec<FlowRecord>) -> Vec<FlowRecord> {
    records
        .into_iter()
        .map(|r| FlowRecord { age_ms: 0, ..r })
        .collect()
}

/// The next batch a listener delivers.
async fn recv(rx: &mut mpsc::Receiver<ReceivedBatch>) -> ReceivedBatch {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a batch in time")
        .expect("listener alive")
}

/// A walk that started while a peer was down and ends after the peer's
/// session began read its dump before the session: a mesh's periodic
/// dump leaves out the copies of other nodes' flows (the peer's own among
/// them), so it must not reach the peer as its new session's dump (which
/// opens its BGP gate). It is dropped, and the next walk dumps for the
/// session.
#[tokio::test]
async fn a_dump_read_before_a_peers_session_does_not_reach_it() {
    let (mut replication, peer) = with_peer_down("walk-stale", Topology::FullMesh).await;
    let (release, released) = std::sync::mpsc::channel::<()>();
    let stale = flow_record(1, "198.18.0.11", 0);
    let walked = vec![stale];
    let periodic = launch(
        &mut replication,
        Box::new(move |_cancel: &AtomicBool| {
            let _ = released.recv();
            flows_only(walked)
        }),
    );
    assert_eq!(periodic.scan, Scan::Periodic);

    // The peer comes up while the walk runs.
    let (tx, mut rx) = mpsc::channel(16);
    let config = sync::SyncConfig::new(b"test-key-0123456789abcdef".to_vec(), "lb-b");
    let start = Instant::now();
    let _listener = loop {
        match sync::listen(peer, config.clone(), tx.clone(), Arc::new(SyncStats::new())).await {
            Ok(l) => break l,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(30), "rebinding: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut sessions = replication.peers[0].sender().sessions();
    tokio::time::timeout(Duration::from_secs(30), sessions.wait_for(|&n| n >= 1))
        .await
        .expect("a session in time")
        .unwrap();

    release.send(()).unwrap();
    replication.wait_walk().await;
    // Anything queued before this marker would arrive first.
    let marker = flow_record(2, "198.18.0.11", 0);
    replication.peers[0].sender().send(vec![marker], false);
    let first = recv(&mut rx).await;
    assert_eq!(
        (first.full_sync, unaged(first.records)),
        (false, vec![marker]),
        "the dump read before the session must not arrive"
    );

    // The next walk is the session's dump, and it goes out.
    let fresh = flow_record(3, "198.18.0.11", 0);
    let session = launch(
        &mut replication,
        Box::new(move |_cancel: &AtomicBool| {
            Some(walks::Collected {
                flows: walks::Split {
                    rest: Vec::new().into(),
                    session: Some(vec![fresh].into()),
                },
                nat: None,
            })
        }),
    );
    assert!(session.session && !session.rest, "its one peer's dump");
    replication.wait_walk().await;
    let dump = recv(&mut rx).await;
    assert_eq!(
        (dump.full_sync, dump.last, unaged(dump.records)),
        (true, true, vec![fresh])
    );
}

/// One walk's records are queued for every peer as one allocation: a
/// full dump of a large table (about 1 GiB of flows at 16 M) is no longer
/// copied on lbd's loop, nor held once per peer while peers are down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_is_one_allocation_shared_by_every_peers_queue() {
    let scratch = ScratchDir::new("lbr-shared");
    let key_file = scratch.join("sync.key");
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    // Three peers nothing listens for: what is given to them stays queued.
    let peers: Vec<SocketAddr> = (0..3)
        .map(|_| {
            let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            free.local_addr().unwrap()
        })
        .collect();
    let (mut replication, _incoming) = Replication::start(
        Topology::FullMesh,
        "127.0.0.1:0".parse().unwrap(),
        &peers,
        &key_file,
        "lb-a",
    )
    .await
    .unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let tables = Arc::new(Counted::with(1_000));
    replication.walker = Walker::over(tables.clone());
    let b = balancer(&["198.18.0.11"]);
    replication.start_walk_in(&*tables, &b, &Roles::new([], true));
    replication.wait_walk().await;
    let queued: Vec<Vec<Arc<[FlowRecord]>>> = replication
        .peers
        .iter()
        .map(|p| p.sender().queued_flows())
        .collect();
    assert!(queued.iter().all(|q| q.len() == 1), "one dump each");
    assert_eq!(queued[0][0].len(), 1_000);
    assert!(
        queued.iter().all(|q| Arc::ptr_eq(&q[0], &queued[0][0])),
        "every peer's queue holds the same records"
    );
}

/// A replication with `n` peers nothing listens for (what is given to
/// them stays queued, countable).
async fn with_silent_peers(name: &str, n: usize) -> Replication {
    let scratch = ScratchDir::new(&format!("lbr-{name}"));
    let key_file = scratch.join("sync.key");
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let peers: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    drop(listeners);
    let (replication, _incoming) = Replication::start(
        Topology::FullMesh,
        "127.0.0.1:0".parse().unwrap(),
        &peers,
        &key_file,
        "lb-a",
    )
    .await
    .unwrap();
    std::fs::remove_file(&key_file).unwrap();
    replication
}

/// One peer's new session gets that peer the full dump (copies
/// included), not every peer: the others keep their incremental stream.
/// Before, a walk dumped everything to all peers whenever any one had a
/// new session, so each restart in an N-node mesh cost N-1 full tables
/// from every node (O(N²) per restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_peer_with_a_new_session_gets_the_session_dump() {
    let mut replication = with_silent_peers("per-peer-dump", 3).await;
    let b = balancer(&["198.18.0.11"]);
    let names = backend_names(&b);
    let mut tables = Counted::with(0);
    let now = monotonic_ns();
    tables.flows = vec![
        // Active here: stamped after every walk's start.
        tracked(&names, "198.18.0.11", 1, now + 3_600 * S),
        // Idle, this node's own.
        tracked(&names, "198.18.0.11", 2, S),
        // A peer's flow, held as a copy.
        tracked(&names, "198.18.0.11", 3, mark_replica(now)),
    ];
    let tables = Arc::new(tables);
    replication.walker = Walker::over(tables.clone());
    let roles = Roles::new([], true);
    // The first walk is a periodic dump for everyone (no session yet).
    replication.start_walk_in(&*tables, &b, &roles);
    replication.wait_walk().await;
    let dumps = |r: &Replication| -> Vec<Vec<(sync::Dump, usize)>> {
        r.peers.iter().map(|p| p.sender().queued_dumps()).collect()
    };
    for queued in dumps(&replication) {
        assert_eq!(
            queued,
            vec![(sync::Dump::Periodic, 0), (sync::Dump::Periodic, 2)],
            "NAT'd flows' and flows' periodic dumps, without the copy"
        );
    }
    // Peer 1 comes back: its queued dumps go (see `begin_session`).
    replication.peers[1].sender().fake_session();
    // The walk for its dump fails: the dump stays owed, to it only.
    let failed = launch(&mut replication, Box::new(|_cancel: &AtomicBool| None));
    assert!(failed.session && failed.rest);
    replication.wait_walk().await;
    let owed: Vec<bool> = replication.peers.iter().map(Peer::dump_is_owed).collect();
    assert_eq!(owed, [false, true, false]);
    replication.start_walk_in(&*tables, &b, &roles);
    replication.wait_walk().await;
    let queued = dumps(&replication);
    assert_eq!(
        queued[1],
        vec![(sync::Dump::Session, 0), (sync::Dump::Session, 3)],
        "the new session's dump: every flow, the copy too"
    );
    for other in [&queued[0], &queued[2]] {
        assert_eq!(
            other,
            &vec![
                (sync::Dump::Periodic, 0),
                (sync::Dump::Periodic, 2),
                (sync::Dump::Incremental, 1),
            ],
            "the others get the active flow only"
        );
    }
    // The next walk dumps to nobody: the session's dump was paid.
    replication.start_walk_in(&*tables, &b, &roles);
    replication.wait_walk().await;
    let queued = dumps(&replication);
    assert_eq!(queued[1].last(), Some(&(sync::Dump::Incremental, 1)));
    assert_eq!(queued[0].last(), Some(&(sync::Dump::Incremental, 1)));
}
