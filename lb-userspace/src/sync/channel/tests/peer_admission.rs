//! Which peers get a session: never the node itself, only configured
//! peers, one session per node, a refused sender joining once let in.
use super::*;

#[tokio::test]
async fn a_node_whose_peer_is_itself_gets_no_session() {
    // A templated config whose peer is the node's own listen address:
    // the same key and node id at both ends would authenticate.
    let (tx, mut rx) = mpsc::channel(8);
    let listener_stats = Arc::new(SyncStats::new());
    let same = config("lb-a", KEY);
    let listener = listen_with(
        local(),
        Sources::Any,
        same.clone(),
        tx,
        listener_stats.clone(),
        fast(),
    )
    .await
    .unwrap();
    let sender_stats = Arc::new(SyncStats::new());
    let sender =
        Sender::start_with(listener.local_addr(), same, sender_stats.clone(), fast()).unwrap();
    sender.send(vec![record(1)], true);
    wait_until("the listener refusing its own sender twice", || {
        listener_stats.snapshot().auth_failures >= 2
    })
    .await;
    assert_quiet(&mut rx, Duration::from_millis(300)).await;
    assert!(!sender.connected());
    assert_eq!(sender.peer_node(), None);
    assert_eq!(
        (
            sender_stats.snapshot().sessions,
            listener_stats.snapshot().sessions
        ),
        (0, 0)
    );
}

#[tokio::test]
async fn a_new_session_of_a_node_replaces_its_old_one() {
    let mut b = backup().await;
    let (first, _) = master(b.listener.local_addr(), KEY);
    wait_for_session(&first, 1).await;
    // The same node id again (a restarted peer whose old connection is
    // not yet known dead): the listener keeps only the newest.
    let (second, _) = master(b.listener.local_addr(), KEY);
    wait_for_session(&second, 1).await;
    wait_until("the old session cut", || !first.connected()).await;
    second.send(vec![record(7)], false);
    assert_eq!(
        as_sent(recv(&mut b.rx).await.records, &[record(7)]),
        [record(7)]
    );
    assert_eq!(b.stats.snapshot().sessions, 2);
}

#[tokio::test]
async fn only_the_configured_peers_may_shake_hands() {
    let (tx, mut rx) = mpsc::channel(8);
    let stats = Arc::new(SyncStats::new());
    let peer: IpAddr = Ipv4Addr::new(127, 0, 0, 3).into();
    let listener = listen_with(
        local(),
        Sources::Peers(vec![peer]),
        config("lb-b", KEY),
        tx,
        stats.clone(),
        fast(),
    )
    .await
    .unwrap();
    let addr = listener.local_addr();
    // A stranger is closed at once, before the listener's Hello.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
    let mut stranger = socket.connect(addr).await.unwrap();
    let mut got = Vec::new();
    timeout(LIMIT, stranger.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(got.is_empty(), "no Hello for a stranger");
    assert_eq!(stats.snapshot().refused, 1);
    // The peer, connecting from its listen address, gets its session.
    let sender = Sender::spawn(
        addr,
        Some(SocketAddr::new(peer, 0)),
        config("lb-a", KEY),
        Arc::new(SyncStats::new()),
        fast(),
    )
    .unwrap();
    wait_for_session(&sender, 1).await;
    sender.send(vec![record(2)], false);
    assert_eq!(
        as_sent(recv(&mut rx).await.records, &[record(2)]),
        [record(2)]
    );
    assert_eq!(stats.snapshot().sessions, 1);
}

/// A sender whose peer closes its connections before a Hello (the
/// peer's listener does not list this node) knows it is refused, which
/// it logs as such; once the peer lets it in (a reload of its peers), the
/// session comes up and the refusal is over.
#[tokio::test]
async fn a_sender_the_peer_refuses_knows_it_and_joins_once_let_in() {
    let (tx, mut rx) = mpsc::channel(8);
    let stats = Arc::new(SyncStats::new());
    let peer: IpAddr = Ipv4Addr::new(127, 0, 0, 3).into();
    let joining: IpAddr = Ipv4Addr::new(127, 0, 0, 4).into();
    let listener = listen_with(
        local(),
        Sources::Peers(vec![peer]),
        config("lb-b", KEY),
        tx,
        stats.clone(),
        fast(),
    )
    .await
    .unwrap();
    let sender = Sender::spawn(
        listener.local_addr(),
        Some(SocketAddr::new(joining, 0)),
        config("lb-c", KEY),
        Arc::new(SyncStats::new()),
        fast(),
    )
    .unwrap();
    wait_until("the refusal", || sender.refused()).await;
    assert!(!sender.connected());
    listener.set_sources(Sources::Peers(vec![peer, joining]));
    wait_for_session(&sender, 1).await;
    assert!(!sender.refused());
    sender.send(vec![record(3)], false);
    assert_eq!(
        as_sent(recv(&mut rx).await.records, &[record(3)]),
        [record(3)]
    );
}
