//! Kept-alive connections across a backend added and one drained: each
//! keeps its backend and its (checksum-neutral) NAT port, while new
//! connections reach the added backend and avoid the drained one.

use std::{
    io::{BufRead, BufReader},
    net::IpAddr,
    process::Stdio,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    http::{burst, Conn, Talker},
    lab::{HTTP_PORT, ROUTED_BACKEND_PORT, VIP4},
    support::{lbctl_command, lbctl_ok, vip_status, wait_until},
};
use lb_userspace::api::schema::{BackendState, HealthStatus};

use crate::{
    observe::status,
    setup::{nat_lab, start_nat_lbd, Spec},
    NAT4,
};

#[test]
fn nat_at_xdp_kept_alive_connections_survive_a_backend_added_and_one_drained() {
    backend_changes("xdp");
}

#[test]
fn nat_at_tc_kept_alive_connections_survive_a_backend_added_and_one_drained() {
    backend_changes("tc");
}

fn backend_changes(attach: &str) {
    let started = Instant::now();
    let mut lab = nat_lab(1, 4);
    start_nat_lbd(
        &mut lab,
        &Spec {
            attach,
            ipv6: false,
            health: true,
            ..Spec::default()
        },
    );
    let vip = IpAddr::V4(VIP4);
    let vip_id = format!("{VIP4}:{HTTP_PORT}/tcp");
    let (b1, b4) = (lab.backends[0].clone(), lab.backends[3].clone());
    wait_until("b1..b3 to be up", Duration::from_secs(10), || {
        vip_status(&status(&lab), vip)
            .backends
            .iter()
            .all(|b| b.health == HealthStatus::Up)
    });
    // Connections until at least two sit on b1 (the one to be drained).
    let mut conns = Vec::new();
    while conns.len() < 12
        || (conns.len() < 40
            && conns
                .iter()
                .filter(|c: &&Conn| c.first.backend == b1.name)
                .count()
                < 2)
    {
        conns.extend(Conn::open(&lab.client.netns, vip, 4, Duration::from_secs(5)).expect("open"));
    }
    let on_b1 = conns.iter().filter(|c| c.first.backend == b1.name).count();
    assert!(on_b1 >= 2, "no two of {} connections on b1", conns.len());
    for conn in &conns {
        assert_eq!(conn.first.peer.ip(), IpAddr::V4(NAT4), "{:?}", conn.first);
        // Each flow got its checksum-neutral NAT port (client port + VIP
        // port = NAT port + backend port; the client's ports are distinct,
        // so these are too): the port rewrite leaves the TCP checksum of
        // every packet as it is, which the connections' data checks.
        let local = conn.local_port().expect("local port");
        assert_eq!(
            conn.first.peer.port(),
            local + HTTP_PORT - ROUTED_BACKEND_PORT,
            "{:?} from port {local}",
            conn.first
        );
    }
    let total = conns.len();
    // Every connection asks every 100 ms and must keep its backend and
    // its NAT port.
    let talker = Talker::start(conns);

    thread::sleep(Duration::from_millis(500));
    lbctl_ok(
        &lab,
        &[
            "backend",
            "add",
            &vip_id,
            &format!("{},port={ROUTED_BACKEND_PORT}", b4.ipv4),
        ],
    );
    wait_until("b4 to be up", Duration::from_secs(10), || {
        vip_status(&status(&lab), vip)
            .backends
            .iter()
            .any(|b| b.address == IpAddr::V4(b4.ipv4) && b.health == HealthStatus::Up)
    });
    let shown = status(&lab);
    let port = vip_status(&shown, vip)
        .backends
        .iter()
        .find(|b| b.address == IpAddr::V4(b4.ipv4))
        .and_then(|b| b.port);
    assert_eq!(port, Some(ROUTED_BACKEND_PORT), "b4's port in the status");
    let added = burst(&lab.client.netns, vip, 400);
    assert_eq!(added.failed, 0, "after adding b4: {:?}", added.errors);
    let to_b4 = added.by_backend.get(&b4.name).copied().unwrap_or(0);
    assert!(
        to_b4 >= 40,
        "b4 took {to_b4} of 400 new connections: {:?}",
        added.by_backend
    );

    // `drain --wait` counts b1's flows from the NAT table's sweeps: only
    // one that began after the drain answers, so with b1's connections
    // open it keeps waiting (the first sweep since lbd started has not
    // finished either: before, it took "no sweep yet" for none left).
    let mut waiting = lbctl_command(
        &lab,
        &["backend", "drain", &vip_id, &b1.ipv4.to_string(), "--wait"],
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("lbctl drain --wait");
    // Its progress lines, as it prints them.
    let printed = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let stdout = waiting.stdout.take().expect("lbctl stdout");
        let printed = Arc::clone(&printed);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                printed.lock().expect("lines").push(line);
            }
        })
    };
    let b1_address = IpAddr::V4(b1.ipv4);
    // The drain is made, and a sweep since it began counted b1's open
    // connections.
    wait_until(
        "b1 draining, its flows counted since",
        Duration::from_secs(20),
        || {
            vip_status(&status(&lab), vip).backends.iter().any(|b| {
                b.address == b1_address
                    && b.state == BackendState::Draining
                    && !b.flows_counting
                    && b.flows.live > 0
            })
        },
    );
    // And `drain --wait` saw that count (a look after the sweep): it must
    // go on waiting.
    let counted_prefix = format!("{}: ", b1.ipv4);
    wait_until(
        "drain --wait to print a count of b1's live flows",
        Duration::from_secs(10),
        || {
            printed.lock().expect("lines").iter().any(|l| {
                l.strip_prefix(&counted_prefix)
                    .and_then(|rest| rest.split_once(" live flows ("))
                    .and_then(|(n, _)| n.parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        },
    );
    let still = waiting.try_wait().expect("lbctl status");
    let _ = waiting.kill();
    let _ = waiting.wait();
    reader.join().expect("lbctl reader");
    assert!(
        still.is_none(),
        "drain --wait ended ({still:?}) while b1 held {on_b1} connections: {:?}",
        printed.lock().expect("lines")
    );
    let drained = burst(&lab.client.netns, vip, 400);
    assert_eq!(drained.failed, 0, "after draining b1: {:?}", drained.errors);
    assert_eq!(
        drained.by_backend.get(&b1.name),
        None,
        "drained b1 took new connections: {:?}",
        drained.by_backend
    );
    thread::sleep(Duration::from_millis(500));
    let (rounds, errors) = talker.finish();
    assert!(
        errors.is_empty(),
        "kept-alive connections broke: {errors:?}"
    );
    assert!(rounds >= 10, "only {rounds} rounds of requests");
    eprintln!(
        "NAT: {total} kept-alive connections ({on_b1} on b1), {rounds} rounds across b4 added and b1 drained, 0 failed; took {:?}",
        started.elapsed()
    );
}
