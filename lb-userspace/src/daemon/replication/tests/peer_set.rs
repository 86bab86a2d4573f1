//! The peer set: only configured peers shake hands with the listener, the
//! senders connect from the listen address, and a reload adds and removes
//! peers.

use super::*;
use crate::daemon::replication::peer_set::sender_source;

/// The bytes a connection from `from` to `listener` gets for a master's
/// Hello before the listener closes it (a listener that lets it shake
/// hands answers with its own Hello, then waits for the proof; one that
/// does not closes it at once).
async fn first_bytes(listener: SocketAddr, from: [u8; 4]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut stream = socket.connect(listener).await.unwrap();
    let hello = sync::wire::Message::Hello {
        version: sync::wire::PROTOCOL_VERSION,
        node_id: "lb-c".into(),
        nonce: sync::wire::new_nonce(),
    };
    let frame = sync::wire::encode_frame(&hello.encode().unwrap()).unwrap();
    // Closed at once: the write or the read may fail (a reset).
    let _ = stream.write_all(&frame).await;
    let mut got = vec![0; 8];
    let n = tokio::time::timeout(Duration::from_secs(8), stream.read(&mut got))
        .await
        .unwrap()
        .unwrap_or(0);
    got.truncate(n);
    got
}

/// A node's listener lets only its configured peers shake hands, and
/// its senders connect from its listen address, the one its peers list.
#[tokio::test]
async fn a_nodes_listener_lets_only_its_peers_shake_hands() {
    let scratch = ScratchDir::new("lbr-strangers");
    let key_file = scratch.join("sync.key");
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    let (replication, _incoming) = Replication::start(
        Topology::FullMesh,
        "127.0.0.1:0".parse().unwrap(),
        &["127.0.0.1:9".parse().unwrap()],
        &key_file,
        "lb-a",
    )
    .await
    .unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let listener = replication._listener.local_addr();
    assert!(first_bytes(listener, [127, 0, 0, 2]).await.is_empty());
    assert!(!first_bytes(listener, [127, 0, 0, 1]).await.is_empty());
    assert_eq!(replication.listener_stats.snapshot().refused, 1);

    let listen: SocketAddr = "198.18.0.2:7540".parse().unwrap();
    let peer: SocketAddr = "198.18.0.3:7540".parse().unwrap();
    assert_eq!(
        sender_source(listen, peer),
        Some(SocketAddr::new(listen.ip(), 0))
    );
    let any: SocketAddr = "0.0.0.0:7540".parse().unwrap();
    assert_eq!(sender_source(any, peer), None, "the route picks");
    let v6: SocketAddr = "[2001:2::3]:7540".parse().unwrap();
    assert_eq!(sender_source(listen, v6), None, "another family");
}

/// A link-local listen address carries its interface (`%2`): the sender
/// binds it with that scope, since Linux refuses to bind a link-local
/// address without one (EINVAL) and replication would never start.
#[test]
fn a_link_local_listen_address_gives_the_sender_its_scope() {
    let listen: SocketAddr = "[fe80::1%2]:7000".parse().unwrap();
    let peer: SocketAddr = "[fe80::2%2]:7000".parse().unwrap();
    let Some(SocketAddr::V6(source)) = sender_source(listen, peer) else {
        panic!("an IPv6 source for an IPv6 peer");
    };
    assert_eq!(
        *source.ip(),
        "fe80::1".parse::<std::net::Ipv6Addr>().unwrap()
    );
    assert_eq!(source.scope_id(), 2, "the listen address's interface");
    assert_eq!(source.port(), 0, "the kernel picks the port");
    let global: SocketAddr = "[2001:db8::1]:7000".parse().unwrap();
    let Some(SocketAddr::V6(source)) = sender_source(global, peer) else {
        panic!("an IPv6 source for an IPv6 peer");
    };
    assert_eq!(source.scope_id(), 0, "a global address has no scope");
}

/// A node joins a running mesh without a restart of the others: a
/// reload of `[sync] peers` starts a sender to the new peer and lets it
/// shake hands; a peer removed loses its sender and is refused.
#[tokio::test]
async fn a_reload_of_the_peers_lets_a_new_node_join_and_a_removed_one_go() {
    let scratch = ScratchDir::new("lbr-join");
    let key_file = scratch.join("sync.key");
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    let old: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (mut replication, _incoming) = Replication::start(
        Topology::FullMesh,
        "127.0.0.1:0".parse().unwrap(),
        &[old],
        &key_file,
        "lb-a",
    )
    .await
    .unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let listener = replication._listener.local_addr();
    assert!(first_bytes(listener, [127, 0, 0, 3]).await.is_empty());
    let joining: SocketAddr = "127.0.0.3:9".parse().unwrap();
    let notes = replication.set_peers(&[old, joining]).unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(replication.peer_addresses(), vec![old, joining]);
    assert_eq!(replication.peer_status().len(), 2);
    assert!(
        !first_bytes(listener, [127, 0, 0, 3]).await.is_empty(),
        "the new node shakes hands"
    );
    // The same list again changes nothing.
    assert!(replication.set_peers(&[joining, old]).unwrap().is_empty());
    let notes = replication.set_peers(&[joining]).unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(replication.peer_addresses(), vec![joining]);
    assert!(
        first_bytes(listener, [127, 0, 0, 1]).await.is_empty(),
        "the removed node is refused"
    );
}
