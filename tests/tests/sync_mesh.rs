//! Full-mesh connection-table replication end to end: three lbd nodes on
//! one L2 segment, each with `[sync]` naming the other two, in front of
//! nginx backends (DSR). Long-lived streams started through one node are
//! installed by the other two pinned to the same backend, stay pinned
//! after a backend joins every node (which moves some of them in the
//! Maglev table), and survive when the client's packets move to another
//! node. A NAT VIP held by VRRP in a mesh: a peer's copy of a NAT'd
//! flow never reopens the forwarding node's closed flow. An operator's
//! drain, maintenance or undrain made on any node reaches the others,
//! the latest change winning, also across a restart. Needs root.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use lb_common::{
    consts::{NAT_F_RST, NAT_F_SYN},
    FlowKey, NatEntry,
};
use lb_tests::{
    http::LongStream,
    lab::{Host, Lab, LabSpec, HTTP_PORT, VIP4},
    support::{backend, ip, long_streams_by_move, status_on, wait_until},
};
use lb_userspace::api::flow_schema::{FlowDecision, FlowExplanation};
use lb_userspace::daemon::replication::Topology;
use lb_userspace::{nat::table::NatFlowTable, reconcile::addr_words, vrrp::State};

const VIP: &str = "198.18.0.100:80/tcp";
const SYNC_PORT: u16 = 7946;
/// How long a node may take to learn a peer's RST from its replication
/// ticks (250 ms each): slack for a loaded machine, and with the half
/// second looked at after it, short of the 10 s full sync.
const RST_WAIT: Duration = Duration::from_millis(8500);

/// Complete full dumps `node` received from the peer listening at
/// `peer` (its sync port).
fn full_dumps_from(lab: &Lab, node: &Host, peer: &Host) -> u64 {
    let address = format!("{}:{SYNC_PORT}", peer.ipv4);
    status_on(lab, node).replication.map_or(0, |r| {
        r.peers
            .iter()
            .filter(|p| p.address == address)
            .map(|p| p.full_dumps_received)
            .sum()
    })
}

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

/// The lab of three LB nodes (the VIP on the first) in front of
/// `backends` nginx backends, lbd running on each (`lbd-a`, `lbd-b`,
/// `lbd-c`) with `mesh_config` serving `serving`.
fn mesh_lab(backends: usize, serving: &[&str]) -> Lab {
    let mut lab = Lab::start_spec(LabSpec {
        lbs: 3,
        backends,
        static_vip: true,
    })
    .expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let nodes = lab.lbs.clone();
    for (node, name) in nodes.iter().zip(["lbd-a", "lbd-b", "lbd-c"]) {
        let config = mesh_config(&lab, node, serving);
        lab.start_lbd_on(node, name, &config).expect("lbd");
    }
    lab
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
fn pinned(lab: &Lab, node: &Host, stream: &LongStream) -> bool {
    let want = lab
        .backends
        .iter()
        .find(|b| b.name == stream.first.backend)
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
    let lab = mesh_lab(4, &["b1", "b2", "b3"]);
    let nodes = lab.lbs.clone();
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
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
    // They go on until the move, however long the steps before it take.
    let moved_flag = Arc::new(AtomicBool::new(false));
    let streams: Vec<LongStream> = long_streams_by_move(&lab, 2, 2, &moved_flag, "move");
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
                s.first.backend,
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
    // Every body asked for from now on goes through b: each stream's
    // last one (a whole /slow body, from its first backend) shows that
    // it went on after the move.
    moved_flag.store(true, Ordering::SeqCst);
    let moved = opened.elapsed();
    let total = streams.len();
    let mut broken = Vec::new();
    let mut bodies = 0;
    for stream in streams {
        match stream.handle.join().expect("stream thread") {
            Ok((n, _)) => bodies += n,
            Err(e) => broken.push((stream.local, stream.first.backend, e)),
        }
    }
    let finished = opened.elapsed();
    let after = status_on(&lab, b);
    let forwarded_by_b = after.vips[0].packets - before;
    println!(
        "RELIABILITY: full mesh, client moved to another node: {total} streams (2 would have moved with b4), moved {} ms after opening, done at {} ms ({bodies} /slow bodies, each stream's last asked for after the move), {forwarded_by_b} packets through b, broken: {broken:?}",
        moved.as_millis(),
        finished.as_millis()
    );
    assert!(broken.is_empty(), "streams broke: {broken:?}");
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
        // How stale a's flows here may be: a full-mesh peer dumps at
        // least every 10 s, so its last batch is recent, stamped with the
        // wall clock of its arrival.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        assert!(
            from_a.last_received_s.is_some_and(|age| age <= 30),
            "{from_a:?}"
        );
        assert!(
            from_a
                .last_received_unix_s
                .is_some_and(|at| at + 60 >= now && at <= now + 1),
            "{from_a:?} (now {now})"
        );
    }
    let text = lab.lbctl_on(c, &["status"]).expect("lbctl status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("replication (full-mesh)"), "{text}");
    let peer_line = text
        .lines()
        .find(|l| l.contains(&format!("peer {}:{SYNC_PORT}", a.ipv4)))
        .unwrap_or_else(|| panic!("no line of peer a in {text}"));
    assert!(
        peer_line.contains("s ago") && peer_line.contains("last batch"),
        "{peer_line}"
    );
}

/// `lbctl` on `node`, which must succeed; its stderr.
fn lbctl_stderr(lab: &Lab, node: &Host, args: &[&str]) -> String {
    let out = lab.lbctl_on(node, args).expect("lbctl");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "lbctl {args:?} on {}: {stderr}",
        node.name
    );
    stderr
}

/// Waits until every one of `nodes` shows `address` in `state` (the
/// status's word), set on `from`: there with no origin, on the others
/// taken from a peer (`from`, or one that had taken it from `from`).
fn wait_for_state(lab: &Lab, nodes: &[&Host], address: &str, state: &str, from: &Host) {
    wait_until(
        &format!("{address} {state} on every node"),
        Duration::from_secs(10),
        || {
            nodes.iter().all(|node| {
                let b = backend(&status_on(lab, node), address);
                let origin_here = node.name == from.name;
                b.state.to_string() == state && b.state_from.is_some() != origin_here
            })
        },
    );
}

/// An operator's backend state made on one node reaches the others over
/// the sync channel: a drain with its deadline, an undrain made on
/// another node (the later change wins), a maintenance; the change's
/// answer names no peer once all are known to take states. A node
/// restarted (its states kept in its backend state file) takes the
/// changes made while it was down and gives back none it held before.
#[test]
fn backend_states_made_on_one_node_reach_every_node() {
    let mut lab = mesh_lab(2, &["b1", "b2"]);
    let nodes = lab.lbs.clone();
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let b1 = lab.backends[0].ipv4.to_string();
    let b2 = lab.backends[1].ipv4.to_string();
    // Each node knows its peers take states once they sent theirs (none
    // held yet: an empty list, within a second or two of the session).
    wait_until(
        "every node to hear every peer's backend states",
        Duration::from_secs(15),
        || {
            nodes.iter().all(|n| {
                status_on(&lab, n).replication.is_some_and(|r| {
                    r.peers.len() == 2
                        && r.peers
                            .iter()
                            .all(|p| p.connected && p.shares_backend_states)
                })
            })
        },
    );
    // The drain on a: b and c drain b1 too, with a's deadline.
    let mut warned = String::new();
    wait_until(
        "a drain that names no peer",
        Duration::from_secs(10),
        || {
            warned = lbctl_stderr(&lab, a, &["backend", "drain", VIP, &b1, "--timeout", "600"]);
            !warned.contains("has not shown it does")
        },
    );
    assert!(!warned.contains("per node"), "{warned}");
    wait_for_state(&lab, &[a, b, c], &b1, "draining", a);
    for node in [b, c] {
        let left = backend(&status_on(&lab, node), &b1).drain_remaining_s;
        assert!(
            left.is_some_and(|s| (580..=600).contains(&s)),
            "{}: {left:?}",
            node.name
        );
    }
    // Undrained on c: the later change wins everywhere.
    lbctl_stderr(&lab, c, &["backend", "undrain", VIP, &b1]);
    wait_for_state(&lab, &[a, b, c], &b1, "enabled", c);
    // b2 in maintenance on b.
    lbctl_stderr(&lab, b, &["backend", "maintenance", VIP, &b2]);
    wait_for_state(&lab, &[a, b, c], &b2, "maintenance", b);

    // c stops (a hitless restart keeps its pins and its state file); a
    // puts b2 back in service meanwhile; the c that comes back takes it,
    // and its own file's older maintenance goes nowhere.
    lab.terminate("lbd-c").expect("SIGTERM lbd-c");
    lbctl_stderr(&lab, a, &["backend", "undrain", VIP, &b2]);
    let config = mesh_config(&lab, c, &["b1", "b2"]);
    lab.start_lbd_on(c, "lbd-c2", &config).expect("lbd again");
    wait_for_state(&lab, &[a, b, c], &b2, "enabled", a);
    // And it stays so: c's next ticks send the state they took back.
    thread::sleep(Duration::from_secs(3));
    for node in [a, b, c] {
        let b2_state = backend(&status_on(&lab, node), &b2).state.to_string();
        assert_eq!(b2_state, "enabled", "{}", node.name);
    }
}

/// The NAT address of the mesh's VRRP-held NAT VIP.
const NAT4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 50);
/// The port the backend listens on behind the NAT VIP.
const NAT_BACKEND_PORT: u16 = 8080;

/// `node`'s config for a full mesh whose NAT VIP is held by `[[vrrp]]`
/// (`priority`), backend b1 on 8080 (no health checks: the flows are
/// written into the tables); closed flows kept for 10 minutes, so the
/// reaper leaves the test's flow alone.
fn nat_mesh_config(lab: &Lab, node: &Host, priority: u8) -> String {
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
    format!(
        "interface = \"eth0\"\nadmin_socket = \"{}\"\n\n\
         [nat]\nsource_ipv4 = \"{NAT4}\"\ntcp_closed_timeout_s = 600\n\n\
         [sync]\nlisten = \"{}:{SYNC_PORT}\"\npeers = [{}]\nkey_file = \"{}\"\n\n\
         [[vip]]\naddress = \"{VIP4}\"\nport = {HTTP_PORT}\nforwarding = \"nat\"\n\
         [vip.health]\ncheck = \"none\"\n\
           [[vip.backend]]\n  address = \"{}\"\n  port = {NAT_BACKEND_PORT}\n\n\
         [[vrrp]]\nvrid = 51\npriority = {priority}\nadvert_interval_ms = 100\npreempt = true\n",
        lab.admin_socket_of(node).display(),
        node.ipv4,
        peers.join(", "),
        key.display(),
        lab.backends[0].ipv4,
    )
}

/// lbd `pid`'s NAT flow table, and its ids of the VIP and of backend b1.
fn nat_table(pid: u32, backend: std::net::Ipv4Addr) -> (NatFlowTable, (u32, u16)) {
    use aya::maps::{Array, HashMap, Map};
    use lb_common::{consts::names, Backend, VipKey, VipMeta};
    let open = |name| lb_tests::lbd_maps::open_map(pid, name).expect(name);
    let table = open(names::MAP_NAT_BUCKETS);
    let buckets = table.info().expect("NAT_BUCKETS info").max_entries();
    let flows = NatFlowTable::new(table, buckets).expect("NAT_BUCKETS mapped");
    let vips: HashMap<_, VipKey, VipMeta> =
        HashMap::try_from(Map::HashMap(open(names::MAP_VIPS))).expect("VIPS");
    let backends: Array<_, Backend> =
        Array::try_from(Map::Array(open(names::MAP_BACKENDS))).expect("BACKENDS");
    let (addr, family) = addr_words(IpAddr::V4(VIP4));
    let vip = vips
        .get(
            &VipKey {
                addr,
                port: HTTP_PORT.to_be(),
                proto: lb_common::consts::IPPROTO_TCP,
                family,
            },
            0,
        )
        .expect("the VIP in VIPS")
        .id;
    let backend_id = (0..lb_common::consts::MAX_BACKENDS)
        .find(|&id| {
            backends.get(&id, 0).is_ok_and(|b| {
                u32::from(b.vip_id) == vip && b.addr[0] == u32::from_ne_bytes(backend.octets())
            })
        })
        .expect("b1 in BACKENDS");
    (flows, (backend_id, u16::try_from(vip).expect("vip id")))
}

/// Both entries of client:40000 -> VIP NAT'd from NAT4:20000 to
/// `backend`:8080, established, as a data plane writes them.
fn nat_flow(
    client: std::net::Ipv4Addr,
    backend: std::net::Ipv4Addr,
    ids: (u32, u16),
    last_seen_ns: u64,
) -> [(FlowKey, NatEntry); 2] {
    use lb_common::consts::{AF_INET, IPPROTO_TCP, NAT_DIR_FORWARD, NAT_DIR_REPLY, NAT_F_REPLIED};
    let key = |src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr, sport: u16, dport: u16| FlowKey {
        src: [u32::from_ne_bytes(src.octets()), 0, 0, 0],
        dst: [u32::from_ne_bytes(dst.octets()), 0, 0, 0],
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto: IPPROTO_TCP,
        family: AF_INET,
        _pad: 0,
    };
    let fk = key(client, VIP4, 40_000, HTTP_PORT);
    let rk = key(backend, NAT4, NAT_BACKEND_PORT, 20_000);
    let fe = NatEntry {
        src: rk.dst,
        dst: rk.src,
        sport: rk.dport,
        dport: rk.sport,
        backend_id: ids.0,
        last_seen_ns,
        flags: NAT_F_SYN,
        direction: NAT_DIR_FORWARD,
        vip_id: ids.1,
        ..NatEntry::default()
    };
    let re = NatEntry {
        src: fk.dst,
        dst: fk.src,
        sport: fk.dport,
        dport: fk.sport,
        flags: NAT_F_SYN | NAT_F_REPLIED,
        direction: NAT_DIR_REPLY,
        ..fe
    };
    [(fk, fe), (rk, re)]
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).expect("time") * 1_000_000_000
        + u64::try_from(ts.tv_nsec).expect("time")
}

/// A full mesh whose NAT VIP a VRRP instance holds: the master forwards
/// a NAT'd flow and its data plane marks the RST; the other node's copy
/// lags (it still says established). The other node's periodic full
/// dumps do not send its copy back, and no copy clears the master's RST,
/// so the flow is freed after the closed timeout rather than held as
/// established for two hours.
#[test]
fn a_peers_lagging_nat_copy_never_reopens_the_forwarding_nodes_closed_flow() {
    let mut lab = Lab::start_spec(LabSpec {
        lbs: 2,
        backends: 1,
        static_vip: false,
    })
    .expect("lab");
    let nodes = lab.lbs.clone();
    let (a, b) = (&nodes[0], &nodes[1]);
    let pid_a = lab
        .start_lbd_on(a, "lbd-a", &nat_mesh_config(&lab, a, 150))
        .expect("lbd on a");
    let pid_b = lab
        .start_lbd_on(b, "lbd-b", &nat_mesh_config(&lab, b, 100))
        .expect("lbd on b");
    wait_until("a to be master", Duration::from_secs(10), || {
        status_on(&lab, a).vrrp[0].state == State::Master
    });
    wait_until(
        "the mesh to connect and dump",
        Duration::from_secs(15),
        || {
            [a, b].iter().all(|n| {
                status_on(&lab, n).replication.is_some_and(|r| {
                    r.mode == Some(Topology::FullMesh) && r.all_peers_dumped && r.connected
                })
            })
        },
    );
    let b1 = lab.backends[0].ipv4;
    let (master, ids_a) = nat_table(pid_a, b1);
    let (copy, _) = nat_table(pid_b, b1);

    // a forwards the flow; b gets its copy.
    let flow = nat_flow(
        std::net::Ipv4Addr::new(198, 18, 5, 1),
        b1,
        ids_a,
        monotonic_ns(),
    );
    for (k, e) in &flow {
        master.install(k, e).expect("writing a's NAT_BUCKETS");
    }
    let [(fk, _), (rk, _)] = flow;
    wait_until("b to hold the flow", Duration::from_secs(5), || {
        copy.get(&fk).is_some() && copy.get(&rk).is_some()
    });
    // The client's RST: a's data plane marks it and stamps the entry as
    // it does (a change of marks is a touch); b
    // learns it from a's ticks (250 ms each), not at a's next full dump
    // (10 s). The mark goes in just after a dump of a's reached b, so the
    // next one is ten seconds away: the wait may be long (slack for a
    // loaded 2-core machine) and still end before it, and the dumps
    // counted on b show that none came in between.
    let synced = full_dumps_from(&lab, b, a);
    wait_until(
        "a full dump of a's to reach b",
        Duration::from_secs(15),
        || full_dumps_from(&lab, b, a) > synced,
    );
    let dumps = full_dumps_from(&lab, b, a);
    let mut reset = master.get(&fk).expect("a's forward entry");
    reset.flags |= NAT_F_RST;
    reset.last_seen_ns = monotonic_ns();
    master
        .install(&fk, &reset)
        .expect("writing a's NAT_BUCKETS");
    let marked = Instant::now();
    wait_until("the RST on b", RST_WAIT, || {
        copy.get(&fk).is_some_and(|e| e.flags & NAT_F_RST != 0)
    });
    let rst_took = marked.elapsed();
    // A dump sends the NAT'd flows first and counts once its flows
    // follow: look again a moment later.
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        full_dumps_from(&lab, b, a),
        dumps,
        "a full dump of a's reached b while it waited {rst_took:?} for the RST: the ticks did not tell it apart"
    );
    println!("RST replicated within {} ms", rst_took.as_millis());
    // b's copy lags for longer than a full-sync interval (10 s): kept
    // established there (as a record on its way or a batch dropped would
    // leave it), whatever a's own dumps repair.
    let lagging = Instant::now();
    while lagging.elapsed() < Duration::from_secs(12) {
        if let Some(mut e) = copy.get(&fk) {
            if e.flags & NAT_F_RST != 0 {
                e.flags &= !NAT_F_RST;
                copy.install(&fk, &e).expect("writing b's NAT_BUCKETS");
            }
        }
        let now = master.get(&fk).expect("a keeps the flow");
        assert!(
            now.flags & NAT_F_RST != 0,
            "a's RST cleared by b's copy after {} ms",
            lagging.elapsed().as_millis()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let now = master.get(&fk).expect("a keeps the flow");
    assert_eq!(
        now.flags, reset.flags,
        "a's entry as its data plane left it"
    );
}
