//! Hostile or broken peers: bad handshakes, silence, truncated streams,
//! oversized handshake frames; none panics or holds a session.
use super::*;

/// Waits for the listener to close a raw connection (EOF or reset).
async fn expect_closed(stream: &mut TcpStream) {
    let mut sink = Vec::new();
    let _ = timeout(LIMIT, stream.read_to_end(&mut sink)).await.unwrap();
}

#[tokio::test]
async fn hostile_handshakes_are_refused() {
    let mut b = backup().await;
    let addr = b.listener.local_addr();
    let mut buf = Vec::new();

    // The listener's own Hello, sent back to it on another connection:
    // its nonce is one this process issued.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let hello = Message::Hello {
        version: wire::PROTOCOL_VERSION,
        node_id: "mallory".into(),
        nonce: wire::new_nonce(),
    };
    s.write_all(&wire::encode_frame(&hello.encode().unwrap()).unwrap())
        .await
        .unwrap();
    read_frame(&mut s, &mut buf).await.unwrap();
    assert!(matches!(
        Message::decode(&buf).unwrap(),
        Message::Hello { .. }
    ));
    let mut reflect = TcpStream::connect(addr).await.unwrap();
    reflect
        .write_all(&wire::encode_frame(&buf).unwrap())
        .await
        .unwrap();
    expect_closed(&mut reflect).await;

    // A Hello of our own, then the listener's proof echoed back as ours
    // (on the first connection, its Hello read above).
    read_frame(&mut s, &mut buf).await.unwrap();
    assert!(matches!(
        Message::decode(&buf).unwrap(),
        Message::HelloAck { .. }
    ));
    s.write_all(&wire::encode_frame(&buf).unwrap())
        .await
        .unwrap();
    expect_closed(&mut s).await;

    // A protocol version this node does not speak (a later release's
    // only one): refused, after the listener's Hello says what it speaks.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let hello = Message::Hello {
        version: wire::PROTOCOL_VERSION + 1,
        node_id: "lb-a".into(),
        nonce: wire::new_nonce(),
    };
    s.write_all(&wire::encode_frame(&hello.encode().unwrap()).unwrap())
        .await
        .unwrap();
    read_frame(&mut s, &mut buf).await.unwrap();
    assert!(matches!(
        Message::decode(&buf).unwrap(),
        Message::Hello { version, .. } if version == wire::PROTOCOL_VERSION
    ));
    expect_closed(&mut s).await;

    // A frame longer than the limit.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
        .await
        .unwrap();
    expect_closed(&mut s).await;

    wait_until("every refusal counted", || {
        let bs = b.stats.snapshot();
        bs.auth_failures == 2 && bs.decode_errors == 2
    })
    .await;
    assert_eq!(b.stats.snapshot().sessions, 0);
    assert!(b.rx.try_recv().is_err());
}

#[tokio::test]
async fn silent_peers_are_dropped() {
    // A backup that completes the handshake, then says nothing.
    let fake = TcpListener::bind(local()).await.unwrap();
    let addr = fake.local_addr().unwrap();
    let fake_task = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = fake.accept().await.unwrap();
            let (rd, mut wr) = stream.into_split();
            let mut rd = BufReader::new(rd);
            let cfg = config("lb-b", KEY);
            if handshake(&mut rd, &mut wr, Role::Backup, &cfg)
                .await
                .is_ok()
            {
                held.push((rd, wr));
            }
        }
    });
    let master = Arc::new(SyncStats::new());
    let sender = Sender::start_with(addr, config("lb-a", KEY), master.clone(), fast()).unwrap();
    wait_until("a silence timeout and a new session", || {
        let m = master.snapshot();
        m.timeouts >= 1 && m.sessions >= 2
    })
    .await;
    drop(sender);
    fake_task.abort();

    // A client that never speaks is dropped by the listener after the
    // first-byte time, not the handshake's: a handshake time far longer
    // than the first byte's (3 s against 200 ms) tells the two apart with
    // room for a loaded machine.
    let timing = Timing {
        handshake: Duration::from_secs(3),
        ..fast()
    };
    let (tx, _rx) = mpsc::channel(1);
    let backup = Arc::new(SyncStats::new());
    let listener = listen_with(
        local(),
        Sources::Any,
        config("lb-b", KEY),
        tx,
        backup.clone(),
        timing,
    )
    .await
    .unwrap();
    let mut raw = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut got = Vec::new();
    let start = Instant::now();
    timeout(LIMIT, raw.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let dropped_after = start.elapsed();
    assert!(
        dropped_after >= timing.first_byte - Duration::from_millis(50),
        "dropped after {dropped_after:?}, before the first-byte time"
    );
    assert!(
        dropped_after < timing.handshake,
        "dropped after {dropped_after:?}: by the handshake time, not the first byte's"
    );
    // The listener answers a Hello only: it said nothing.
    assert!(got.is_empty(), "{got:?}");
    wait_until("timeout counted", || backup.snapshot().timeouts == 1).await;
}

#[tokio::test]
async fn truncated_streams_error_never_panic() {
    let (m, b) = (wire::new_nonce(), wire::new_nonce());
    let t = Transcript {
        master_nonce: &m,
        backup_nonce: &b,
        master_id: "lb-a",
        backup_id: "lb-b",
    };
    let (mut sealer, _) = wire::session(KEY, Role::Master, &t).unwrap();
    let frame = sealer.batch(true, true, &[record(1), record(2)]).unwrap();
    let mut buf = Vec::new();
    for len in 0..frame.len() {
        let mut cut = &frame[..len];
        let result = read_frame(&mut cut, &mut buf).await;
        match len {
            0 => assert!(matches!(result, Err(SyncError::Closed))),
            _ => assert!(
                matches!(result, Err(SyncError::Io { .. })),
                "cut at {len}: {result:?}"
            ),
        }
    }
    let mut whole = &frame[..];
    read_frame(&mut whole, &mut buf).await.unwrap();
    // Oversized and empty frames are refused before any allocation.
    for header in [[0u8, 0x10, 0, 1], [0, 0, 0, 0]] {
        let mut bad = &header[..];
        assert!(matches!(
            read_frame(&mut bad, &mut buf).await,
            Err(SyncError::Wire(_))
        ));
    }
}

/// A Hello frame of `node_id`, as a peer of this release would send it.
fn hello_frame(node_id: &str) -> Vec<u8> {
    let hello = Message::Hello {
        version: wire::PROTOCOL_VERSION,
        node_id: node_id.into(),
        nonce: wire::new_nonce(),
    };
    wire::encode_frame(&hello.encode().unwrap()).unwrap()
}

/// A handshake frame announcing the session's frame limit (1 MiB) is
/// refused from its header, before anything is allocated for its body:
/// anyone who reaches the port could otherwise make the listener hold
/// 1 MiB per handshake slot without the key. Checked for the Hello and
/// the HelloAck, at both ends.
#[tokio::test]
async fn handshake_frames_above_the_largest_hello_are_refused_from_their_header() {
    let huge = u32::try_from(wire::MAX_FRAME_LEN).unwrap().to_be_bytes();
    let just_above = u32::try_from(wire::MAX_HANDSHAKE_FRAME_LEN + 1)
        .unwrap()
        .to_be_bytes();
    for header in [huge, just_above] {
        let after_hello = [hello_frame("lb-a"), header.to_vec()].concat();
        for (role, input) in [
            (Role::Backup, header.to_vec()),
            (Role::Master, header.to_vec()),
            (Role::Backup, after_hello),
        ] {
            let mut rd = &input[..];
            let mut wr = tokio::io::sink();
            let result = handshake(&mut rd, &mut wr, role, &config("lb-b", KEY)).await;
            assert!(
                matches!(
                    result,
                    Err(SyncError::Wire(wire::WireError::FrameLength { .. }))
                ),
                "{role:?}, header {header:?}: {:?}",
                result.err()
            );
        }
    }
    // The largest Hello still fits.
    let longest = "x".repeat(wire::MAX_NODE_ID_LEN);
    assert_eq!(
        hello_frame(&longest).len(),
        wire::FRAME_HEADER_LEN + wire::MAX_HANDSHAKE_FRAME_LEN
    );
}
