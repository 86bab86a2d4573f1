//! Full-mesh connection-table replication end to end: three lbd nodes on
//! one L2 segment, each with `[sync]` naming the other two, in front of
//! nginx backends (DSR). Long-lived streams started through one node are
//! installed by the other two pinned to the same backend, stay pinned
//! after a backend joins every node (which moves some of them in the
//! Maglev table), and survive when the client's packets move to another
//! node. Needs root.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use lb_tests::{
    http::{Stream, SLOW_BYTES},
    lab::{Host, Lab, LabSpec, HTTP_PORT, VIP4},
    support::{ip, open_streams_by_move, status_on, wait_until},
};
use lb_userspace::api::flow_schema::{FlowDecision, FlowExplanation};
use lb_userspace::daemon::replication::Topology;

const VIP: &str = "198.18.0.100:80/tcp";
const SYNC_PORT: u16 = 7946;

/// `node`'s lbd config: the IPv4 VIP with `backends`, `[sync]` with
/// every other node of the lab as a peer.
fn mesh_config(lab: &Lab, node: &Host, backends: &[&str]) -> String {
    let key = lab.dir.join("mesh.key");
    if !key.exists() {
        std::fs::write(&key, "lab-mesh-key-0123456789abcdef\n").expect("key file");
    }
    let peers: Vec<String> = lab
        .lbs
        .iter()
        .filter(|h| h.name != node.name)
        .map(|h| format!("\"{}:{SYNC_PORT}\"", h.ipv4))
        .collect();
    let mut config = format!(
        "interface = \"eth0\"\nconntrack_size = 65536\nadmin_socket = \"{}\"\n\n\
         [sync]\nlisten = \"{}:{SYNC_PORT}\"\npeers = [{}]\nkey_file = \"{}\"\n\n\
         [[vip]]\naddress = \"{VIP4}\"\nport = {HTTP_PORT}\n",
        lab.admin_socket_of(node).display(),
        node.ipv4,
        peers.join(", "),
        key.display()
    );
    for name in backends {
        let host = lab
            .backends
            .iter()
            .find(|b| b.name == *name)
            .expect("backend");
        config.push_str(&format!(
            "  [[vip.backend]]\n  address = \"{}\"\n",
            host.ipv4
        ));
    }
    config
}

/// `lbctl flow` on `node` for one client flow.
fn flow_on(lab: &Lab, node: &Host, client: SocketAddr) -> FlowExplanation {
    let out = lab
        .lbctl_on(node, &["flow", VIP, &client.to_string(), "--json"])
        .expect("lbctl flow");
    assert!(
        out.status.success(),
        "lbctl flow on {}: {}",
        node.name,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("flow JSON")
}

/// Whether `node` tracks the stream's flow pinned to the backend that
/// serves it (by address: each node has its own backend ids).
fn pinned(lab: &Lab, node: &Host, stream: &Stream) -> bool {
    let want = lab
        .backends
        .iter()
        .find(|b| b.name == stream.backend)
        .map(|b| IpAddr::V4(b.ipv4))
        .expect("backend");
    let flow = flow_on(lab, node, stream.local);
    flow.decision == FlowDecision::Tracked && flow.backend.is_some_and(|b| b.address == want)
}

/// The MAC of `node`'s eth0.
fn mac_of(node: &Host) -> String {
    let out = ip(&["-n", &node.netns, "-o", "link", "show", "eth0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("link/ether")
        .to_owned()
}

#[test]
fn flows_stay_on_their_backend_when_the_client_moves_to_another_node() {
    let mut lab = Lab::start_spec(LabSpec {
        lbs: 3,
        backends: 4,
        static_vip: true,
    })
    .expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let nodes = lab.lbs.clone();
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    for (node, name) in [(a, "lbd-a"), (b, "lbd-b"), (c, "lbd-c")] {
        let config = mesh_config(&lab, node, &["b1", "b2", "b3"]);
        lab.start_lbd_on(node, name, &config).expect("lbd");
    }
    // Every node reaches both peers and receives a full dump from each.
    wait_until(
        "the mesh to connect and dump",
        Duration::from_secs(15),
        || {
            nodes.iter().all(|n| {
                status_on(&lab, n).replication.is_some_and(|r| {
                    r.mode == Some(Topology::FullMesh)
                        && r.all_peers_dumped
                        && r.peers.len() == 2
                        && r.peers.iter().all(|p| p.connected && p.node.is_some())
                })
            })
        },
    );

    // The VIP is on a's interface: streams go through a. Two of them
    // would move to another backend once b4 joins (they only stay where
    // they are through replication), two would not: the source ports are
    // picked from the model, so the case never depends on the kernel's.
    let streams = open_streams_by_move(&lab, 2, 2);
    let opened = Instant::now();

    // b and c install each flow pinned to the backend serving it.
    wait_until(
        "b and c to track every stream",
        Duration::from_secs(5),
        || {
            streams
                .iter()
                .all(|s| pinned(&lab, b, s) && pinned(&lab, c, s))
        },
    );

    // A backend joins every node: the Maglev table moves some flows, the
    // tracked copies keep theirs.
    for node in [a, b, c] {
        let out = lab
            .lbctl_on(
                node,
                &["backend", "add", VIP, &lab.backends[3].ipv4.to_string()],
            )
            .expect("lbctl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for s in &streams {
        for node in [b, c] {
            assert!(
                pinned(&lab, node, s),
                "{} lost the pin of {} (served by {}) after b4 joined: {:?}",
                node.name,
                s.local,
                s.backend,
                flow_on(&lab, node, s.local)
            );
        }
    }

    // The client's packets now reach b (as a router moving the flows
    // would send them): every stream goes on through b.
    let before = status_on(&lab, b).vips[0].packets;
    let mac = mac_of(b);
    ip(&[
        "-n",
        &lab.client.netns,
        "neigh",
        "replace",
        &VIP4.to_string(),
        "lladdr",
        &mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    let moved = opened.elapsed();
    let total = streams.len();
    let mut broken = Vec::new();
    for stream in streams {
        match stream.handle.join().expect("stream thread") {
            Ok((bytes, _)) if bytes == SLOW_BYTES => {}
            other => broken.push((stream.local, stream.backend, other)),
        }
    }
    let finished = opened.elapsed();
    let after = status_on(&lab, b);
    let forwarded_by_b = after.vips[0].packets - before;
    println!(
        "RELIABILITY: full mesh, client moved to another node: {total} streams (2 would have moved with b4), moved {} ms after opening, done at {} ms, {forwarded_by_b} packets through b, broken: {broken:?}",
        moved.as_millis(),
        finished.as_millis()
    );
    assert!(broken.is_empty(), "streams broke: {broken:?}");
    assert!(
        finished > moved + Duration::from_secs(1),
        "the streams ended before the move"
    );
    assert!(
        forwarded_by_b >= total as u64,
        "b forwarded {forwarded_by_b} packets of {total} streams"
    );
    // What a's stream told b and c, per peer.
    for node in [b, c] {
        let r = status_on(&lab, node).replication.expect("replication");
        let from_a = r
            .peers
            .iter()
            .find(|p| p.address == format!("{}:{SYNC_PORT}", a.ipv4))
            .expect("a among the peers");
        assert!(
            from_a.records_received >= total as u64 && from_a.full_dumps_received >= 1,
            "{from_a:?}"
        );
        assert!(r.installed >= total as u64, "{r:?}");
    }
    let text = lab.lbctl_on(c, &["status"]).expect("lbctl status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("replication (full-mesh)"), "{text}");
    assert!(
        text.contains(&format!("peer {}:{SYNC_PORT}", a.ipv4)),
        "{text}"
    );
}
