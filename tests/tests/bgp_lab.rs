//! Active-active lbd nodes behind ECMP (issue 14), with real BIRD: the
//! router's BIRD merges the nodes' BGP announcements into one multipath
//! kernel route per VIP, flows spread over the nodes by their ports, and
//! a node that dies, loses its link, joins or is drained moves flows
//! without breaking one. Needs root.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    bgplab::{BgpLab, BgpSpec},
    client::{self, Load},
    http::{self, LongStream},
    lab::{VIP4, VIP6},
    support::wait_until,
};
use lb_userspace::bgp::{Opened, StartupStatus};

/// BGP hold time of the example configs (BFD is faster where it works).
const HOLD_TIME: Duration = Duration::from_secs(3);
/// A liveness bound, not a target: a withdrawal that has not happened
/// within ten hold times is not going to. What withdrew a node (BFD, a
/// closed connection, not the hold timer) is read from BIRD's
/// `last_error`; how long it took is only reported (timing targets live
/// in the benchmarks).
const WITHDRAWAL_LIVENESS: Duration = Duration::from_secs(10 * HOLD_TIME.as_secs());

fn v4() -> IpAddr {
    IpAddr::V4(VIP4)
}

fn v6() -> IpAddr {
    IpAddr::V6(VIP6)
}

/// A lab of `nodes` running nodes, `spare` more built, 4 backends of which
/// b1..b3 serve.
fn lab(nodes: usize, spare: usize) -> BgpLab {
    BgpLab::start(BgpSpec {
        nodes,
        spare,
        backends: 4,
        serving: 3,
    })
    .expect("BGP lab")
}

/// `counter` of every node in `nodes`.
fn counters(lab: &BgpLab, nodes: &[usize], name: &str) -> Vec<u64> {
    nodes.iter().map(|&i| lab.counter(i, name)).collect()
}

#[test]
fn three_nodes_share_new_connections_through_the_routers_ecmp_route() {
    let lab = lab(3, 0);
    for vip in [v4(), v6()] {
        let want: Vec<IpAddr> = (0..3).map(|i| lab.hop_of(i, vip)).collect();
        assert_eq!(
            lab.next_hops(vip).expect("route"),
            want,
            "the router's route for {vip}"
        );
    }

    // BFD runs on every session (it is what withdraws a cut node fast).
    let mut want: Vec<IpAddr> = (0..3)
        .flat_map(|i| [lab.hop_of(i, v4()), lab.hop_of(i, v6())])
        .collect();
    want.sort();
    wait_until("BFD up towards every node", Duration::from_secs(10), || {
        lab.bfd_up().is_ok_and(|up| up == want)
    });

    let nodes = [0, 1, 2];
    let before = counters(&lab, &nodes, "conntrack_new");
    let tally = client::burst(&lab.lab.client.netns, v4(), 3000).expect("burst");
    let after = counters(&lab, &nodes, "conntrack_new");
    let per_node: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    println!(
        "BGP LAB: 3000 new connections: per node {per_node:?}, per backend {:?}",
        tally.by_backend
    );
    assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.errors);
    // Every connection opened a flow on exactly one node. A flow whose
    // first packets two CPUs of a node handle at once may be inserted by
    // both (the connection table keeps one copy; both count it), so the
    // sum may exceed 3000 by a few, never fall short.
    let opened = per_node.iter().sum::<u64>();
    assert!(
        (3000..=3015).contains(&opened),
        "{opened} flows opened: {per_node:?}"
    );
    // 1000 expected each; a fair hash misses by more than 300 about never.
    for (node, count) in per_node.iter().enumerate() {
        assert!(
            *count >= 700,
            "node {node} took {count} of 3000: {per_node:?}"
        );
    }
    assert_eq!(tally.by_backend.len(), 3, "{:?}", tally.by_backend);
    for (backend, count) in &tally.by_backend {
        assert!(
            *count >= 700,
            "{backend} served {count}: {:?}",
            tally.by_backend
        );
    }

    // IPv6 takes the same path.
    let before = counters(&lab, &nodes, "conntrack_new");
    let tally = client::burst(&lab.lab.client.netns, v6(), 300).expect("burst");
    let after = counters(&lab, &nodes, "conntrack_new");
    assert_eq!(tally.failed, 0, "failed IPv6 requests: {:?}", tally.errors);
    for (node, (a, b)) in after.iter().zip(&before).enumerate() {
        assert!(
            a - b >= 50,
            "node {node} took {} of 300 IPv6 connections",
            a - b
        );
    }
}

/// How one event went for the long-lived streams open across it.
struct Outcome {
    /// Streams open across the event.
    streams: usize,
    /// Of those, on the node that went away.
    on_lost_node: usize,
    /// Streams whose node changed (the router's pick before and after).
    moved: usize,
    /// Of those, streams that were on a surviving node.
    moved_from_survivors: usize,
    /// Broken streams.
    broken: Vec<String>,
    /// Failed requests of the new-connection load running meanwhile.
    failed_requests: Vec<String>,
    /// Requests of that load.
    requests: usize,
}

/// Opens `count` long-lived streams over both VIPs (a quarter IPv6), adds
/// b4 to every running node (so a stream that moves to a node without its
/// flow state lands on another backend and breaks: only replication
/// saves it), runs `event` under a load of new connections, and collects
/// what happened to the streams. `lost` is the node the event takes
/// away, if any. Each stream goes on (`/slow` bodies, see [`LongStream`])
/// until a whole body asked for after the event has arrived, so every one
/// is still running when the event comes and crosses it.
fn across(
    lab: &mut BgpLab,
    count: usize,
    lost: Option<usize>,
    event: impl FnOnce(&mut BgpLab),
) -> Outcome {
    let happened = Arc::new(AtomicBool::new(false));
    let mut streams = Vec::new();
    for i in 0..count {
        let vip = if i % 4 == 3 { v6() } else { v4() };
        streams.push((
            vip,
            LongStream::open(&lab.lab.client.netns, vip, None, &happened, "event"),
        ));
    }
    let before: Vec<Option<usize>> = streams
        .iter()
        .map(|(vip, s)| lab.node_of_flow(s.local, *vip).expect("route get"))
        .collect();
    // Every node routes both VIPs now (the lab waited for it), so the
    // router sends every stream to one of them.
    for ((vip, s), node) in streams.iter().zip(&before) {
        assert!(
            node.is_some(),
            "the router has no node for {} -> {vip}",
            s.local
        );
    }
    lab.add_backend_everywhere("b4").expect("add b4");
    let load = Load::start(&lab.lab.client.netns, v4(), Duration::from_secs(20));
    thread::sleep(Duration::from_millis(300));
    event(lab);
    // Every body asked for from now on crosses what the event changed.
    happened.store(true, Ordering::SeqCst);
    let after: Vec<Option<usize>> = streams
        .iter()
        .map(|(vip, s)| lab.node_of_flow(s.local, *vip).expect("route get"))
        .collect();
    let broken: Vec<String> = streams
        .into_iter()
        .filter_map(|(vip, s)| match s.handle.join() {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("{} -> {vip} ({}): {e}", s.local, s.first.backend)),
            Err(_) => Some(format!("{} -> {vip}: the stream thread panicked", s.local)),
        })
        .collect();
    let results = load.finish().expect("load");
    let moved: Vec<usize> = (0..count).filter(|&i| before[i] != after[i]).collect();
    Outcome {
        streams: count,
        on_lost_node: before
            .iter()
            .filter(|n| lost.is_some() && **n == lost)
            .count(),
        moved_from_survivors: moved
            .iter()
            .filter(|&&i| lost.is_none() || before[i] != lost)
            .count(),
        moved: moved.len(),
        broken,
        failed_requests: client::failures(&results),
        requests: results.len(),
    }
}

/// The last error of the router's BGP session with `neighbor`, from
/// `birdc show protocols all` (a session's block starts with its name at
/// the start of a line; its details are indented).
fn last_error(text: &str, neighbor: IpAddr) -> Option<String> {
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) || blocks.is_empty() {
            blocks.push(Vec::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push(line);
        }
    }
    let field = |block: &[&str], name: &str| {
        block.iter().find_map(|l| {
            l.trim()
                .strip_prefix(name)
                .map(|v| v.trim_start_matches(':').trim().to_owned())
        })
    };
    blocks
        .iter()
        .find(|b| {
            field(b, "Neighbor address").and_then(|a| a.parse::<IpAddr>().ok()) == Some(neighbor)
        })
        .and_then(|b| field(b, "Last error"))
}

/// Prints what happened; `timing` says what took how long.
fn report(what: &str, timing: &str, took: Duration, outcome: &Outcome) {
    println!(
        "BGP LAB: {what}: {timing} {} ms; {} streams, {} on that node, {} changed node ({} of them from surviving nodes), {} broken; {} new connections meanwhile, {} failed",
        took.as_millis(),
        outcome.streams,
        outcome.on_lost_node,
        outcome.moved,
        outcome.moved_from_survivors,
        outcome.broken.len(),
        outcome.requests,
        outcome.failed_requests.len()
    );
}

fn assert_nothing_broke(outcome: &Outcome) {
    assert!(
        outcome.broken.is_empty(),
        "streams broke: {:?}",
        outcome.broken
    );
    assert!(
        outcome.failed_requests.is_empty(),
        "requests failed: {:?}",
        outcome.failed_requests
    );
}

#[test]
fn a_node_whose_lbd_and_bird_die_is_withdrawn_and_no_stream_breaks() {
    let mut lab = lab(3, 0);
    let mut gap = Duration::ZERO;
    let mut sessions = String::new();
    let outcome = across(&mut lab, 24, Some(2), |lab| {
        let killed = Instant::now();
        lab.kill_node(2).expect("kill");
        gap = killed.elapsed()
            + lab
                .wait_routed_over(2, false, WITHDRAWAL_LIVENESS)
                .expect("withdrawal");
        // Read at once: the sessions' next attempts may replace the error.
        sessions = lab
            .router_bird()
            .birdc(&["show", "protocols", "all"])
            .expect("birdc");
    });
    report("lbd+BIRD killed", "withdrawn after", gap, &outcome);
    // The dead BIRD's connections closed (the kernel ends a killed
    // process's sockets) or BFD saw the node go: either takes the session
    // down at once; the hold timer (3 s) is what a node that went quiet
    // without either would wait for.
    for vip in [v4(), v6()] {
        let neighbor = lab.hop_of(2, vip);
        let error = last_error(&sessions, neighbor);
        println!("BGP LAB: lbd+BIRD killed: the router's session with {neighbor} went down for {error:?}");
        assert!(
            error.as_deref().is_some_and(|e| {
                e.contains("Connection closed")
                    || e.contains("Connection reset")
                    || e.contains("BFD session down")
            }),
            "the router's session with {neighbor} went down for {error:?}, not its peer's end or BFD:\n{sessions}"
        );
    }
    assert!(outcome.on_lost_node > 0, "no stream was on the killed node");
    assert!(outcome.moved >= outcome.on_lost_node);
    assert_nothing_broke(&outcome);
}

#[test]
fn a_node_that_loses_its_link_is_withdrawn_and_no_stream_breaks() {
    let mut lab = lab(3, 0);
    let mut gap = Duration::ZERO;
    let mut sessions = String::new();
    let outcome = across(&mut lab, 24, Some(1), |lab| {
        let cut = Instant::now();
        lab.set_link(1, false).expect("link down");
        gap = cut.elapsed()
            + lab
                .wait_routed_over(1, false, WITHDRAWAL_LIVENESS)
                .expect("withdrawal");
        // Read at once: the sessions' next attempts may replace the error.
        sessions = lab
            .router_bird()
            .birdc(&["show", "protocols", "all"])
            .expect("birdc");
    });
    report("link cut", "withdrawn after", gap, &outcome);
    // BFD (3 × 100 ms), not the 3 s hold time, took both sessions down.
    for vip in [v4(), v6()] {
        let neighbor = lab.hop_of(1, vip);
        let error = last_error(&sessions, neighbor);
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("BFD session down")),
            "the router's session with {neighbor} went down for {error:?}, not BFD:\n{sessions}"
        );
    }
    assert!(outcome.on_lost_node > 0, "no stream was on the cut node");
    assert_nothing_broke(&outcome);
}

#[test]
fn a_fourth_node_takes_its_share_without_breaking_a_stream() {
    let mut lab = lab(3, 1);
    let mut joined = Duration::ZERO;
    let outcome = across(&mut lab, 24, None, |lab| {
        let start = Instant::now();
        lab.start_node(3).expect("fourth node");
        joined = start.elapsed();
    });
    report("fourth node added", "routed over after", joined, &outcome);
    // It announced once it had every peer's flows, not on a timer.
    let gate = lab.node_status(3).bgp.expect("bgp status").startup;
    assert_eq!(gate, StartupStatus::Open(Opened::PeersSynced));
    // The router moved some streams to the new node (a quarter of 24 is
    // expected): only those cross to a node that did not see them start.
    assert!(
        outcome.moved > 0,
        "no stream changed node when the fourth joined"
    );
    assert_nothing_broke(&outcome);
    assert_eq!(lab.next_hops(v4()).expect("route").len(), 4);

    let nodes = [0, 1, 2, 3];
    let before = counters(&lab, &nodes, "conntrack_new");
    let tally = client::burst(&lab.lab.client.netns, v4(), 1000).expect("burst");
    let after = counters(&lab, &nodes, "conntrack_new");
    let per_node: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    println!("BGP LAB: 1000 new connections over four nodes: {per_node:?}");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    let by_backend: BTreeMap<_, _> = tally.by_backend;
    assert_eq!(by_backend.len(), 4, "b4 serves too: {by_backend:?}");
    assert!(per_node[3] >= 150, "the fourth node took {per_node:?}");
}

/// Growing a running mesh as an operator does: the new node is added to
/// every running node's `[sync] peers` and each is reloaded, then the new
/// node starts (its peers: every node). The existing nodes must take its
/// replication session and send it their flows before its start-up gate
/// opens, so every long-lived stream the router moves to it keeps its
/// backend (b4 joined first, so an unknown flow would be picked afresh).
/// Unlike [`a_fourth_node_takes_its_share_without_breaking_a_stream`],
/// no node lists the new one before it joins.
#[test]
fn a_node_joining_through_a_peers_reload_breaks_no_stream() {
    let mut lab = BgpLab::start_without_spare_peers(BgpSpec {
        nodes: 3,
        spare: 1,
        backends: 4,
        serving: 3,
    })
    .expect("BGP lab");
    let mut joined = Duration::ZERO;
    let outcome = across(&mut lab, 24, None, |lab| {
        let start = Instant::now();
        lab.join_mesh(3).expect("fourth node joins the mesh");
        joined = start.elapsed();
    });
    report(
        "fourth node joined by a peers reload",
        "routed over after",
        joined,
        &outcome,
    );
    let gate = lab.node_status(3).bgp.expect("bgp status").startup;
    assert_eq!(
        gate,
        StartupStatus::Open(Opened::PeersSynced),
        "the new node announced before every peer's flows arrived"
    );
    assert!(
        outcome.moved > 0,
        "no stream changed node when the fourth joined"
    );
    assert_nothing_broke(&outcome);
    assert_eq!(lab.next_hops(v4()).expect("route").len(), 4);
}

#[test]
fn a_drained_node_hands_every_flow_over_and_undrain_brings_its_share_back() {
    let mut lab = lab(3, 0);
    let mut took = Duration::ZERO;
    let mut window = String::new();
    let outcome = across(&mut lab, 24, Some(0), |lab| {
        // A stream the router sends to the node about to be drained (its
        // source port picked by the router's own hash).
        let netns = lab.lab.client.netns.clone();
        let from = (24_000..25_000)
            .map(|port| std::net::SocketAddr::new(IpAddr::V4(lab.lab.client.ipv4), port))
            .find(|from| lab.node_of_flow(*from, v4()).expect("route get") == Some(0))
            .expect("a source port the router sends to node 0");
        let pinned = http::open_stream_from(&netns, from, v4());
        let start = Instant::now();
        lab.lbctl(
            0,
            &["node", "drain", "--wait", "--quiet", "1", "--timeout", "20"],
        );
        took = start.elapsed();
        // Withdrawn at once, not only by the time the wait is over.
        lab.wait_routed_over(0, false, Duration::ZERO)
            .expect("withdrawn");
        // Traffic inside the drained window: the streams (the pinned one
        // still downloading, its packets now routed elsewhere) and a burst
        // of new connections. The drained node forwards none of it, takes
        // no new flow; the others do.
        let node = lab.node_of_flow(from, v4()).expect("route get");
        assert!(
            node.is_some_and(|n| n != 0),
            "the router sends {from} to {node:?}"
        );
        let nodes = [0, 1, 2];
        let before = (
            counters(lab, &nodes, "forwarded"),
            counters(lab, &nodes, "conntrack_new"),
        );
        assert!(
            !pinned.handle.is_finished(),
            "the stream from {from} ended before the window"
        );
        let tally = client::burst(&netns, v4(), 200).expect("burst");
        let after = (
            counters(lab, &nodes, "forwarded"),
            counters(lab, &nodes, "conntrack_new"),
        );
        assert_eq!(tally.failed, 0, "{:?}", tally.errors);
        window = format!(
            "forwarded {:?} -> {:?}, new flows {:?} -> {:?}",
            before.0, after.0, before.1, after.1
        );
        assert_eq!(
            (after.0[0], after.1[0]),
            (before.0[0], before.1[0]),
            "a drained node forwards nothing: {window}"
        );
        let grew = |i: usize| (after.0[i] - before.0[i], after.1[i] - before.1[i]);
        assert!(
            grew(1).1 + grew(2).1 >= 200 && grew(1).0 > 0 && grew(2).0 > 0,
            "the other nodes took the window's traffic: {window}"
        );
        pinned
            .finish()
            .unwrap_or_else(|e| panic!("the stream that was on the drained node broke: {e}"));
    });
    report("drain --wait", "returned after", took, &outcome);
    println!("BGP LAB: drained window: {window}");
    assert!(
        outcome.on_lost_node > 0,
        "no stream was on the drained node"
    );
    assert_nothing_broke(&outcome);

    lab.lbctl(0, &["node", "undrain"]);
    let back = lab
        .wait_routed_over(0, true, Duration::from_secs(10))
        .expect("announced again");
    let before = lab.counter(0, "conntrack_new");
    let tally = client::burst(&lab.lab.client.netns, v4(), 600).expect("burst");
    let share = lab.counter(0, "conntrack_new") - before;
    println!(
        "BGP LAB: undrain: routed again after {} ms, took {share} of 600 new connections",
        back.as_millis()
    );
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert!(share >= 100, "the undrained node took {share} of 600");
}

#[test]
fn the_last_error_of_a_session_is_read_from_birdc() {
    let text = "BIRD 2.0.12 ready.\nName       Proto      Table      State  Since         Info\nlb4_1      BGP        ---        up     07:27:34.544  Established   \n  BGP state:          Established\n    Neighbor address: 198.18.0.2\n    Neighbor AS:      65010\n    Hold timer:       1.663/3\n\nlb4_3      BGP        ---        start  07:27:37.905  Active        Error: BFD session down\n  BGP state:          Active\n    Neighbor address: 198.18.0.3\n    Connect delay:    0.481/5\n    Last error:       Error: BFD session down\n  Channel ipv4\n    State:          DOWN\n";
    let address = |a: &str| a.parse::<IpAddr>().expect("address");
    assert_eq!(
        last_error(text, address("198.18.0.3")).as_deref(),
        Some("Error: BFD session down")
    );
    assert_eq!(last_error(text, address("198.18.0.2")), None);
    assert_eq!(last_error(text, address("198.18.0.4")), None);
}

/// How many Established BGP sessions export `vip`, as node `index`'s
/// lbd says (None while it does not know).
fn exporting(lab: &BgpLab, index: usize, vip: IpAddr) -> Option<u32> {
    let bgp = lab.node_status(index).bgp?;
    bgp.exporting
        .iter()
        .find(|e| e.address == vip)
        .map(|e| e.sessions)
}

/// BIRD taking lbd's routes is not the router hearing of them: a node
/// whose IPv4 session's export filter names no protocol of lbd's (the
/// `4` left out) and whose IPv6 session has the router's AS mistyped is
/// in sync and wants both VIPs announced, yet reports 0 Established
/// sessions exporting either (its IPv4 session up and exporting nothing,
/// its IPv6 one not Established), and the router routes neither over
/// it; a healthy node reports its sessions exporting both.
#[test]
fn a_node_no_session_exports_says_so_and_a_healthy_one_counts_its_sessions() {
    let mut lab = lab(1, 1);
    wait_until(
        "node 0's VIPs exported by an Established session each",
        Duration::from_secs(30),
        || {
            [v4(), v6()]
                .iter()
                .all(|&vip| exporting(&lab, 0, vip) >= Some(1))
        },
    );
    let healthy = lab.node_status(0).bgp.expect("bgp");
    let sessions = healthy.sessions.expect("node 0's sessions");
    assert!(
        sessions.iter().filter(|s| s.established).count() >= 2,
        "{sessions:?}"
    );

    lab.start_node_with_bird(1, |config| {
        config
            .replace(
                "export where proto = \"lbd_vips4\";",
                "export where proto = \"lbd_vips\";",
            )
            .replace(
                "neighbor 2001:2::1 as 65000;",
                "neighbor 2001:2::1 as 65099;",
            )
    })
    .expect("node 1 with a misconfigured BIRD");
    // Its IPv4 session comes up (a wrong filter does not stop it) and is
    // counted at a configure or a status check (every 10 s).
    wait_until(
        "node 1 in sync, announcing both VIPs, its IPv4 session Established",
        Duration::from_secs(45),
        || {
            let Some(bgp) = lab.node_status(1).bgp else {
                return false;
            };
            bgp.in_sync
                && bgp.announced.len() == 2
                && bgp
                    .sessions
                    .is_some_and(|s| s.iter().any(|s| s.name == "router1_v4" && s.established))
        },
    );
    let bgp = lab.node_status(1).bgp.expect("bgp");
    for vip in [v4(), v6()] {
        assert_eq!(exporting(&lab, 1, vip), Some(0), "{vip}: {bgp:?}");
    }
    let sessions = bgp.sessions.expect("node 1's sessions");
    let v4_session = sessions.iter().find(|s| s.name == "router1_v4");
    assert!(
        v4_session.is_some_and(|s| s.established && s.exports.is_empty()),
        "{sessions:?}"
    );
    let v6_session = sessions.iter().find(|s| s.name == "router1_v6");
    assert!(v6_session.is_some_and(|s| !s.established), "{sessions:?}");
    for vip in [v4(), v6()] {
        let hops = lab.next_hops(vip).expect("next hops");
        assert!(
            !hops.contains(&lab.hop_of(1, vip)),
            "the router routes {vip} over node 1: {hops:?}"
        );
    }
    let text = lab.lbctl(1, &["node", "status"]);
    assert!(
        text.contains("NOT exported by any Established BGP session")
            && text.contains("router1_v6  NOT established"),
        "{text}"
    );
    // The healthy node still counts its sessions.
    for vip in [v4(), v6()] {
        assert!(exporting(&lab, 0, vip) >= Some(1), "{vip}");
    }
    println!("BGP LAB: misconfigured node's status:\n{text}");
}
