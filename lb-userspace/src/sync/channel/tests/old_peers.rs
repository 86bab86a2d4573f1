//! Peers that speak only protocol version 1: a session at that version,
//! without NAT flows, on either end.
use super::*;

/// The handshake of an lbd of an earlier release, which speaks `version`
/// only: its Hello first whatever its role, its nonce random (no version
/// mark), a peer's Hello of another version refused (the caller then
/// drops the connection: closed, as that release does), then the proofs.
async fn old_handshake<R, W>(
    rd: &mut R,
    wr: &mut W,
    role: Role,
    version: u16,
    node_id: &str,
) -> Result<Session, SyncError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let nonce = wire::new_nonce();
    let hello = Message::Hello {
        version,
        node_id: node_id.into(),
        nonce,
    };
    wr.write_all(&wire::encode_frame(&hello.encode()?)?)
        .await
        .map_err(|source| SyncError::Io {
            action: "writing",
            source,
        })?;
    let mut buf = Vec::new();
    read_frame(rd, &mut buf).await?;
    let Message::Hello {
        version: theirs,
        node_id: peer_id,
        nonce: peer_nonce,
    } = Message::decode(&buf)?
    else {
        return Err(SyncError::Closed);
    };
    if theirs != version {
        return Err(SyncError::Offer {
            offered: theirs,
            theirs: version,
        });
    }
    let t = match role {
        Role::Master => Transcript {
            master_nonce: &nonce,
            backup_nonce: &peer_nonce,
            master_id: node_id,
            backup_id: &peer_id,
        },
        Role::Backup => Transcript {
            master_nonce: &peer_nonce,
            backup_nonce: &nonce,
            master_id: &peer_id,
            backup_id: node_id,
        },
    };
    let proof = wire::hello_proof(KEY, role, &t)?;
    wr.write_all(&wire::encode_frame(&Message::HelloAck { proof }.encode()?)?)
        .await
        .map_err(|source| SyncError::Io {
            action: "writing",
            source,
        })?;
    read_frame(rd, &mut buf).await?;
    let Message::HelloAck { proof } = Message::decode(&buf)? else {
        return Err(SyncError::Closed);
    };
    wire::verify_hello_proof(KEY, role.peer(), &t, &proof)?;
    let (sealer, opener) = wire::session_at(KEY, role, &t, version)?;
    Ok(Session {
        peer_id,
        sealer,
        opener,
        version,
        peer_versions: None,
    })
}

/// A backup of an earlier release that speaks `version` only: refuses
/// (closes) a master's Hello of another version, and counts the
/// handshakes it refused and the sessions it ran.
struct OldBackup {
    addr: SocketAddr,
    rx: mpsc::Receiver<ReceivedBatch>,
    refused: Arc<std::sync::atomic::AtomicU64>,
    stats: Arc<SyncStats>,
    task: JoinHandle<()>,
}

impl Drop for OldBackup {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn old_backup(version: u16) -> OldBackup {
    let listener = TcpListener::bind(local()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(64);
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stats = Arc::new(SyncStats::new());
    let (refusals, counters) = (refused.clone(), stats.clone());
    let task = tokio::spawn(async move {
        let mut sessions = JoinSet::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (rd, mut wr) = stream.into_split();
            let mut rd = BufReader::new(rd);
            match old_handshake(&mut rd, &mut wr, Role::Backup, version, "lb-old").await {
                Ok(session) => {
                    counters.add(crate::sync::Counter::Sessions, 1);
                    let (tx, counters) = (tx.clone(), counters.clone());
                    sessions.spawn(async move {
                        let _ = run_session(
                            &mut rd,
                            &mut wr,
                            session,
                            Some(&tx),
                            None,
                            &counters,
                            fast(),
                        )
                        .await;
                    });
                }
                Err(_) => {
                    refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });
    OldBackup {
        addr,
        rx,
        refused,
        stats,
        task,
    }
}

#[tokio::test]
async fn a_master_falls_back_to_an_old_version_1_backup_and_withholds_nat_flows() {
    let mut old = old_backup(1).await;
    let (sender, master) = master(old.addr, KEY);
    // Offered 2 first: the old backup answers with its Hello (1) and
    // closes; the sender offers 1 next.
    wait_for_session(&sender, 1).await;
    assert_eq!(sender.protocol_version(), Some(1));
    assert_eq!(
        old.refused.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one offer of this release's version refused"
    );
    sender.send(vec![record(1)], false);
    sender.send_nat(vec![nat_record(1), nat_record(2)], true);
    sender.send(vec![record(2)], false);
    for i in [1, 2] {
        let batch = recv(&mut old.rx).await;
        assert_eq!(
            (batch.kind, batch.version, batch.nat.len()),
            (BatchKind::Flows, 1, 0)
        );
        assert_eq!(as_sent(batch.records, &[record(i)]), [record(i)]);
    }
    wait_until("the NAT'd flows counted as withheld", || {
        master.snapshot().nat_withheld == 2
    })
    .await;
    // The session carried on: a version-1 reader would have closed it on
    // a NatBatch.
    assert!(sender.connected());
    let ms = master.snapshot();
    assert_eq!((ms.sessions, ms.decode_errors, ms.auth_failures), (1, 0, 0));
    assert_eq!(old.stats.snapshot().sessions, 1);

    // The peer is upgraded: the sender still offers 1, and a backup of
    // this release answers with 2, the highest both speak.
    let addr = old.addr;
    drop(old);
    wait_until("the sender to notice", || !sender.connected()).await;
    let (tx, mut rx) = mpsc::channel(16);
    let start = Instant::now();
    let _listener = loop {
        match listen(
            addr,
            config("lb-b", KEY),
            tx.clone(),
            Arc::new(SyncStats::new()),
        )
        .await
        {
            Ok(l) => break l,
            Err(e) => {
                assert!(start.elapsed() < LIMIT, "rebinding: {e}");
                sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for_session(&sender, 2).await;
    assert_eq!(sender.protocol_version(), Some(wire::PROTOCOL_VERSION));
    sender.send_nat(vec![nat_record(3)], false);
    let batch = recv(&mut rx).await;
    assert_eq!(
        (batch.kind, batch.version),
        (BatchKind::Nat, wire::PROTOCOL_VERSION)
    );
    assert_eq!(as_sent(batch.nat, &[nat_record(3)]), [nat_record(3)]);
}

#[test]
fn an_offer_refused_by_an_old_backup_is_remembered_until_a_newer_one_answers() {
    let mut offer = Offer::new(Versions::RELEASE);
    assert_eq!(offer.version(), wire::PROTOCOL_VERSION);
    // An old backup's Hello said 1, and it closed.
    let old = PeerHello {
        version: 1,
        versions: None,
    };
    let refused = SyncError::Offer {
        offered: wire::PROTOCOL_VERSION,
        theirs: 1,
    };
    offer.failed(Some(old), &refused);
    assert_eq!(offer.version(), 1);
    // Any other failure keeps it (the peer down, a timeout).
    offer.failed(
        None,
        &SyncError::Timeout {
            what: "connect",
            after: Duration::from_secs(5),
        },
    );
    assert_eq!(offer.version(), 1);
    // Closed before any Hello (a node that refuses without a word): one
    // version less, never below the range.
    let mut silent = Offer::new(versions(1, 2));
    silent.failed(None, &SyncError::Closed);
    assert_eq!(silent.version(), 1);
    silent.failed(None, &SyncError::Closed);
    assert_eq!(silent.version(), 1);
    // This release (1 to 4) steps down one at a time.
    let mut release = Offer::new(Versions::RELEASE);
    release.failed(None, &SyncError::Closed);
    assert_eq!(release.version(), 3);
}

#[tokio::test]
async fn an_old_version_1_master_replicates_into_this_backup() {
    let mut b = backup().await;
    let stream = TcpStream::connect(b.listener.local_addr()).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    // The old master refuses any answer but 1: it gets 1.
    let session = old_handshake(&mut rd, &mut wr, Role::Master, 1, "lb-old")
        .await
        .unwrap();
    let mut sealer = session.sealer;
    let frame = sealer.batch(true, true, &[record(1)]).unwrap();
    wr.write_all(&frame).await.unwrap();
    let batch = recv(&mut b.rx).await;
    assert_eq!(
        (batch.peer.as_str(), batch.version, batch.full_sync),
        ("lb-old", 1, true)
    );
    assert_eq!(as_sent(batch.records, &[record(1)]), [record(1)]);
    // A version-1 session has no NatBatch: one sent anyway is refused.
    let mut v2 = wire::session_at(
        KEY,
        Role::Master,
        &Transcript {
            master_nonce: &[1; 32],
            backup_nonce: &[2; 32],
            master_id: "x",
            backup_id: "y",
        },
        2,
    )
    .unwrap()
    .0;
    assert!(v2.nat_batch(false, true, &[nat_record(1)]).is_ok());
    assert!(matches!(
        sealer.nat_batch(false, true, &[nat_record(1)]),
        Err(wire::WireError::NotInVersion {
            what: "NatBatch",
            version: 1
        })
    ));
    let bs = b.stats.snapshot();
    assert_eq!((bs.sessions, bs.decode_errors, bs.auth_failures), (1, 0, 0));
}

#[tokio::test]
async fn a_master_speaking_version_1_only_replicates_into_this_backup_without_nat_flows() {
    let mut b = backup().await;
    let stats = Arc::new(SyncStats::new());
    let v1 = SyncConfig {
        versions: versions(1, 1),
        ..config("lb-a", KEY)
    };
    let sender = Sender::start(b.listener.local_addr(), v1, stats.clone()).unwrap();
    wait_for_session(&sender, 1).await;
    assert_eq!(sender.protocol_version(), Some(1));
    sender.send_nat(vec![nat_record(1)], true);
    sender.send(vec![record(1)], true);
    let batch = recv(&mut b.rx).await;
    assert_eq!((batch.kind, batch.version), (BatchKind::Flows, 1));
    assert_eq!(as_sent(batch.records, &[record(1)]), [record(1)]);
    assert_eq!(stats.snapshot().nat_withheld, 1);
    assert_quiet(&mut b.rx, Duration::from_millis(100)).await;
    assert_eq!(stats.snapshot().reconnects, 0, "no offer was refused");
}

#[tokio::test]
async fn a_backup_speaking_version_1_only_answers_with_it_at_once() {
    let (tx, mut rx) = mpsc::channel(16);
    let v1 = SyncConfig {
        versions: versions(1, 1),
        ..config("lb-b", KEY)
    };
    let listener = listen(local(), v1, tx, Arc::new(SyncStats::new()))
        .await
        .unwrap();
    let (sender, master) = master(listener.local_addr(), KEY);
    wait_for_session(&sender, 1).await;
    assert_eq!(sender.protocol_version(), Some(1));
    sender.send_nat(vec![nat_record(1)], true);
    sender.send(vec![record(1)], true);
    let batch = recv(&mut rx).await;
    assert_eq!((batch.kind, batch.version), (BatchKind::Flows, 1));
    assert_quiet(&mut rx, Duration::from_millis(100)).await;
    let ms = master.snapshot();
    assert_eq!((ms.nat_withheld, ms.reconnects, ms.sessions), (1, 0, 1));
}
