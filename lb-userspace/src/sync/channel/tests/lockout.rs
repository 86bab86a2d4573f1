//! Idle sockets and stalled or flooding handshakes never lock a real
//! peer out of the listener.
use super::*;

#[tokio::test]
async fn idle_sockets_do_not_lock_a_real_peer_out() {
    // 16 idle connections from one address (127.0.0.2, on lo), then the
    // real peer from another: it must get a session long before the
    // handshake timeout would free a slot.
    let timing = Timing {
        handshake: Duration::from_secs(3),
        ..fast()
    };
    let (tx, mut rx) = mpsc::channel(8);
    let stats = Arc::new(SyncStats::new());
    let listener = listen_with(
        local(),
        Sources::Any,
        config("lb-b", KEY),
        tx,
        stats.clone(),
        timing,
    )
    .await
    .unwrap();
    let mut idle = Vec::new();
    for _ in 0..16 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
        idle.push(socket.connect(listener.local_addr()).await.unwrap());
    }
    sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    let master_stats = Arc::new(SyncStats::new());
    let sender = Sender::start_with(
        listener.local_addr(),
        config("lb-a", KEY),
        master_stats,
        timing,
    )
    .unwrap();
    timeout(
        timing.handshake / 3,
        sender.sessions().wait_for(|&n| n >= 1),
    )
    .await
    .expect("a session before the idle sockets' handshakes time out")
    .unwrap();
    assert!(start.elapsed() < timing.handshake / 3);
    sender.send(vec![record(1)], false);
    assert_eq!(
        as_sent(recv(&mut rx).await.records, &[record(1)]),
        [record(1)]
    );
    // The idle ones were cut at their first byte's deadline, not held
    // for the whole handshake time.
    wait_until("idle handshakes timed out", || {
        stats.snapshot().timeouts >= 4
    })
    .await;
    assert!(start.elapsed() < timing.handshake);
    drop(idle);
}

/// A master's handshake halfway: its Hello sent (as an earlier
/// release's, unmarked), the listener's Hello and HelloAck read; the
/// listener waits for its HelloAck, holding a handshake slot.
struct HalfShaken {
    stream: TcpStream,
    node_id: String,
    nonce: wire::Nonce,
    peer_id: String,
    peer_nonce: wire::Nonce,
}

impl HalfShaken {
    /// Connects to `listener` from `from` and shakes hands halfway.
    async fn start(listener: SocketAddr, from: IpAddr, node_id: &str) -> Self {
        let socket = match from {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let mut stream = socket.connect(listener).await.unwrap();
        let nonce = wire::new_nonce();
        let hello = Message::Hello {
            version: wire::PROTOCOL_VERSION,
            node_id: node_id.into(),
            nonce,
        };
        stream
            .write_all(&wire::encode_frame(&hello.encode().unwrap()).unwrap())
            .await
            .unwrap();
        let mut buf = Vec::new();
        read_frame(&mut stream, &mut buf).await.unwrap();
        let Message::Hello {
            node_id: peer_id,
            nonce: peer_nonce,
            ..
        } = Message::decode(&buf).unwrap()
        else {
            panic!("the listener's Hello");
        };
        read_frame(&mut stream, &mut buf).await.unwrap();
        assert!(matches!(
            Message::decode(&buf).unwrap(),
            Message::HelloAck { .. }
        ));
        Self {
            stream,
            node_id: node_id.into(),
            nonce,
            peer_id,
            peer_nonce,
        }
    }

    /// Sends this master's proof: the handshake is done.
    async fn finish(mut self) -> TcpStream {
        let t = Transcript {
            master_nonce: &self.nonce,
            backup_nonce: &self.peer_nonce,
            master_id: &self.node_id,
            backup_id: &self.peer_id,
        };
        let proof = wire::hello_proof(KEY, Role::Master, &t).unwrap();
        let ack = Message::HelloAck { proof }.encode().unwrap();
        self.stream
            .write_all(&wire::encode_frame(&ack).unwrap())
            .await
            .unwrap();
        self.stream
    }
}

/// A client that sends its Hello and then nothing: it holds a handshake
/// slot until the handshake time runs out (the listener waits for its
/// HelloAck). Returns once the listener has answered (its Hello and
/// HelloAck read).
async fn stalled_handshake(listener: SocketAddr, from: impl Into<IpAddr>) -> TcpStream {
    HalfShaken::start(listener, from.into(), "mallory")
        .await
        .stream
}

#[tokio::test]
async fn stalled_handshakes_never_lock_a_real_peer_out() {
    // Handshakes that would hold their slots for the whole test.
    let timing = Timing {
        handshake: Duration::from_secs(600),
        ..fast()
    };
    let (tx, mut rx) = mpsc::channel(8);
    let stats = Arc::new(SyncStats::new());
    let listener = listen_with(
        local(),
        Sources::Any,
        config("lb-b", KEY),
        tx,
        stats.clone(),
        timing,
    )
    .await
    .unwrap();
    let addr = listener.local_addr();
    // Four hosts take every slot; then four more handshakes come from
    // the real peer's own address (another process on its host).
    let mut held = Vec::new();
    for host in 2..6 {
        for _ in 0..4 {
            held.push(stalled_handshake(addr, [127, 0, 0, host]).await);
        }
    }
    assert_eq!(stats.snapshot().refused, 0);
    for _ in 0..4 {
        held.push(stalled_handshake(addr, [127, 0, 0, 1]).await);
    }
    assert_eq!(stats.snapshot().refused, 4, "the oldest were cut");
    let sender = Sender::start_with(
        addr,
        config("lb-a", KEY),
        Arc::new(SyncStats::new()),
        timing,
    )
    .unwrap();
    wait_for_session(&sender, 1).await;
    assert_eq!(
        stats.snapshot().refused,
        5,
        "its address's oldest stalled handshake gave way"
    );
    sender.send(vec![record(1)], false);
    assert_eq!(
        as_sent(recv(&mut rx).await.records, &[record(1)]),
        [record(1)]
    );
    drop(held);
}

/// Configured peers in one IPv6 /64 (a mesh's nodes on one subnet) shake
/// hands while another configured address floods the listener: the
/// flood cuts its own handshakes only. Counted per /64, it cut theirs
/// (one budget of 4 for them all). In a network namespace of the test
/// thread's own, the addresses on its `lo`.
#[test]
fn configured_ipv6_peers_in_one_64_shake_hands_through_another_peers_flood() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    in_own_netns(|| {
        let node = |i: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, i));
        let (peers, flooder) = ((1..=5).map(node).collect::<Vec<_>>(), node(9));
        ip(&["link", "set", "lo", "up"]);
        for at in peers.iter().chain([&flooder, &node(100)]) {
            ip(&[
                "-6",
                "addr",
                "add",
                &format!("{at}/128"),
                "dev",
                "lo",
                "nodad",
            ]);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // An address's local route comes a moment after `ip` returns
            // (the kernel's work queue): wait until each carries a
            // connection to the listener's.
            let probe = TcpListener::bind(SocketAddr::new(node(100), 0))
                .await
                .unwrap();
            for &from in peers.iter().chain([&flooder]) {
                let start = Instant::now();
                loop {
                    let socket = tokio::net::TcpSocket::new_v6().unwrap();
                    socket.bind(SocketAddr::new(from, 0)).unwrap();
                    match socket.connect(probe.local_addr().unwrap()).await {
                        Ok(_) => break,
                        Err(error) => assert!(start.elapsed() < LIMIT, "{from}: {error}"),
                    }
                    sleep(Duration::from_millis(10)).await;
                }
            }
            drop(probe);
            let (tx, _rx) = mpsc::channel(8);
            let stats = Arc::new(SyncStats::new());
            let sources = Sources::Peers(peers.iter().copied().chain([flooder]).collect());
            // Handshakes that would hold their slots for the whole test
            // (their Hellos come at once, however loaded the machine).
            let timing = Timing {
                handshake: Duration::from_secs(600),
                first_byte: Duration::from_secs(600),
                ..fast()
            };
            let listener = listen_with(
                SocketAddr::new(node(100), 0),
                sources,
                config("lb-b", KEY),
                tx,
                stats.clone(),
                timing,
            )
            .await
            .unwrap();
            let addr = listener.local_addr();
            let mut shaking = Vec::new();
            for (i, &at) in peers.iter().enumerate() {
                shaking.push(HalfShaken::start(addr, at, &format!("lb-{i}")).await);
            }
            let mut flood = Vec::new();
            for _ in 0..3 * super::MAX_HANDSHAKES_PER_SOURCE {
                flood.push(stalled_handshake(addr, flooder).await);
            }
            assert_eq!(
                stats.snapshot().refused,
                u64::try_from(2 * super::MAX_HANDSHAKES_PER_SOURCE).unwrap(),
                "the flood cut its own oldest handshakes, and no other"
            );
            let mut done = Vec::new();
            for half in shaking {
                done.push(half.finish().await);
            }
            wait_until("every peer's session", || {
                stats.snapshot().sessions == u64::try_from(peers.len()).unwrap()
            })
            .await;
            assert_eq!(stats.snapshot().auth_failures, 0);
            drop((flood, done));
        });
    });
}
