use std::time::Instant;

use tokio::{net::TcpStream, time::sleep};

use super::{super::MAX_HANDSHAKES_PER_SOURCE, shared::log_accept_failure, *};

/// A failing accept repeats at every backoff while its cause lasts
/// (out of descriptors): one warning per interval, naming how many
/// were left out, not one per backoff.
#[test]
fn a_failing_accept_is_warned_once_per_interval() {
    let limit = Mutex::new(LogLimit::new(REFUSAL_LOG_INTERVAL));
    let error = std::io::Error::from_raw_os_error(24);
    let start = Instant::now();
    let logs = crate::test_logs::logs_of(|| {
        for n in 0..10 {
            log_accept_failure(&limit, &error, start + Duration::from_millis(100 * n));
        }
        log_accept_failure(&limit, &error, start + REFUSAL_LOG_INTERVAL);
    });
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("accepting a sync connection failed"))
        .collect();
    assert_eq!(warnings.len(), 2, "{logs}");
    assert!(warnings[0].contains("suppressed=0"), "{logs}");
    assert!(warnings[1].contains("suppressed=9"), "{logs}");
}

/// A peer's handshake halfway (its Hello sent and answered) is not cut
/// for idle connections from its own address (a process on its host
/// looping connect(): no key needed, the listener admits by address)
/// while older ones of them have sent nothing: those give way first.
#[tokio::test]
async fn idle_connections_from_a_peers_address_give_way_before_its_handshake() {
    use crate::sync::wire::{self, Message, Role, Transcript};
    use tokio::io::AsyncWriteExt as _;

    const KEY: &[u8] = b"test-key-0123456789abcdef";
    let peer = std::net::IpAddr::from([127, 0, 0, 1]);
    let (tx, _rx) = mpsc::channel(8);
    let stats = Arc::new(SyncStats::new());
    let listener = listen_for(
        SocketAddr::new(peer, 0),
        Sources::Peers(vec![peer]),
        SyncConfig::new(KEY.to_vec(), "lb-b"),
        tx,
        stats.clone(),
    )
    .await
    .unwrap();
    let addr = listener.local_addr();
    // The real peer: its Hello, then the listener's Hello and HelloAck.
    let mut real = TcpStream::connect(addr).await.unwrap();
    let nonce = wire::new_nonce();
    let hello = Message::Hello {
        version: wire::PROTOCOL_VERSION,
        node_id: "lb-a".into(),
        nonce,
    };
    real.write_all(&wire::encode_frame(&hello.encode().unwrap()).unwrap())
        .await
        .unwrap();
    let mut buf = Vec::new();
    super::super::session::read_frame(&mut real, &mut buf)
        .await
        .unwrap();
    let Message::Hello {
        node_id: backup_id,
        nonce: backup_nonce,
        ..
    } = Message::decode(&buf).unwrap()
    else {
        panic!("the listener's Hello");
    };
    super::super::session::read_frame(&mut real, &mut buf)
        .await
        .unwrap();
    // The flood: idle connections, twice the address's handshake
    // slots; each past the slots cuts one handshake.
    let mut flood = Vec::new();
    for _ in 0..2 * MAX_HANDSHAKES_PER_SOURCE {
        flood.push(TcpStream::connect(addr).await.unwrap());
    }
    let cuts = u64::try_from(MAX_HANDSHAKES_PER_SOURCE + 1).unwrap();
    let start = Instant::now();
    while stats.snapshot().refused < cuts {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "flood not accepted"
        );
        sleep(Duration::from_millis(5)).await;
    }
    // The real peer's proof: its session comes up.
    let transcript = Transcript {
        master_nonce: &nonce,
        backup_nonce: &backup_nonce,
        master_id: "lb-a",
        backup_id: &backup_id,
    };
    let proof = wire::hello_proof(KEY, Role::Master, &transcript).unwrap();
    let ack = Message::HelloAck { proof }.encode().unwrap();
    real.write_all(&wire::encode_frame(&ack).unwrap())
        .await
        .unwrap();
    let start = Instant::now();
    while stats.snapshot().sessions == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the real peer's handshake was cut for idle connections: {:?}",
            stats.snapshot()
        );
        sleep(Duration::from_millis(5)).await;
    }
    drop(flood);
}

/// A process on a peer's host looping connect() from the peer's
/// address (no key needed: the listener admits by address) must not
/// keep that peer's real sender from ever authenticating: its idle
/// connections give way before a handshake that has sent its Hello.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_flood_from_a_peers_address_does_not_keep_its_sender_out() {
    use std::sync::atomic::{AtomicBool, Ordering};

    const KEY: &[u8] = b"test-key-0123456789abcdef";
    let peer = std::net::IpAddr::from([127, 0, 0, 1]);
    let (tx, _rx) = mpsc::channel(8);
    let listener = listen_for(
        SocketAddr::new(peer, 0),
        Sources::Peers(vec![peer]),
        SyncConfig::new(KEY.to_vec(), "lb-b"),
        tx,
        Arc::new(SyncStats::new()),
    )
    .await
    .unwrap();
    let addr = listener.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    // Two flooders, each keeping its last connections open and idle.
    let flooders: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut open = std::collections::VecDeque::new();
                let mut connects = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(stream) = std::net::TcpStream::connect(addr) {
                        connects += 1;
                        open.push_back(stream);
                        if open.len() > 32 {
                            open.pop_front();
                        }
                    }
                }
                connects
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let sender = super::super::Sender::start_from(
        addr,
        SocketAddr::new(peer, 0),
        SyncConfig::new(KEY.to_vec(), "lb-a"),
        Arc::new(SyncStats::new()),
    )
    .unwrap();
    let start = Instant::now();
    while !sender.connected() && start.elapsed() < Duration::from_secs(2) {
        sleep(Duration::from_millis(10)).await;
    }
    let connected = sender.connected();
    stop.store(true, Ordering::Relaxed);
    let connects: u64 = flooders.into_iter().map(|f| f.join().unwrap()).sum();
    assert!(
        connected,
        "no session within 2 s during a flood of {connects} connects"
    );
}
