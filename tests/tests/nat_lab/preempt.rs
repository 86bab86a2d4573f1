//! A preemption under kept-alive NAT'd connections: the higher-priority
//! node stops for good (SIGINT), the other takes over, connections are
//! opened through it, and the first node comes back with an empty table
//! and `preempt = true`. It must take the VIPs back only once it holds
//! the current master's flows (its full dump), and the master stepping
//! down must push its last flows: no connection breaks.

use std::{
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    http::{burst, Conn, Talker},
    lab::{Host, Lab, VIP4, VIP6},
    support::{nonzero, status_on, wait_backup, wait_replication, wait_until},
};

use crate::{
    setup::{nat_config, nat_lab, Spec},
    DROPS, NAT4, NAT6,
};

/// Whether `node` holds VIP4, NAT4, VIP6 and NAT6.
fn holds_all(lab: &Lab, node: &Host) -> bool {
    let addresses = lab.addresses_of(node).expect("ip addr");
    [
        IpAddr::V4(VIP4),
        IpAddr::V4(NAT4),
        IpAddr::V6(VIP6),
        IpAddr::V6(NAT6),
    ]
    .iter()
    .all(|address| addresses.contains(&format!("{address}/")))
}

#[test]
fn nat_connections_survive_a_returning_node_preempting_the_master() {
    let started = Instant::now();
    let mut lab = nat_lab(2, 3);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let spec = |peer, priority| Spec {
        vrrp: Some((peer, priority)),
        ..Spec::default()
    };
    let config_a = nat_config(&lab, &a, &spec(&b, 150));
    let config_b = nat_config(&lab, &b, &spec(&a, 100));
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd on lb");
    lab.start_lbd_on(&b, "lbd-b", &config_b)
        .expect("lbd on lb2");
    wait_until("lb to be master", Duration::from_secs(10), || {
        holds_all(&lab, &a)
    });
    wait_backup(&lab, &b, Duration::from_secs(5));

    // a stops for good: b takes over at once (priority 0).
    assert!(
        lab.interrupt("lbd-a").expect("SIGINT").success(),
        "SIGINT exits cleanly"
    );
    wait_until("lb2 to take over", Duration::from_secs(5), || {
        holds_all(&lab, &b)
    });

    // Connections through b only: a never saw them.
    let mut conns = Vec::new();
    for (vip, nat) in [
        (IpAddr::V4(VIP4), IpAddr::V4(NAT4)),
        (IpAddr::V6(VIP6), IpAddr::V6(NAT6)),
    ] {
        let opened = Conn::open(&lab.client.netns, vip, 8, Duration::from_secs(5)).expect("open");
        for conn in &opened {
            assert_eq!(conn.first.peer.ip(), nat, "{:?}", conn.first);
        }
        conns.extend(opened);
    }
    let total = conns.len();
    let talker = Talker::start(conns);
    // a stays away long enough for lb2's sync sender, retrying to reach
    // it, to back off to its 5 s ceiling: lb2's dump reaches the returning
    // node up to 5 s after its listener is up, much later than its
    // master-down interval (0.3 s here).
    thread::sleep(Duration::from_secs(8));

    // a comes back, empty, with preempt on and a higher priority.
    let back = Instant::now();
    lab.start_lbd_on(&a, "lbd-a2", &config_a)
        .expect("lbd on lb again");
    wait_until("lb to preempt lb2", Duration::from_secs(25), || {
        holds_all(&lab, &a)
    });
    let preempted = back.elapsed();
    wait_backup(&lab, &b, Duration::from_secs(5));
    wait_replication(&lab, &a);
    // The connections go on through a for a while.
    thread::sleep(Duration::from_secs(2));
    let (rounds, errors) = talker.finish();
    let log_a = lab.log("lbd-a2");
    assert!(
        errors.is_empty(),
        "kept-alive NAT'd connections broke when lb came back and preempted ({total} connections, preempted {preempted:?} after its start): {errors:?}\nlb's counters: {:?}\nlbd-a2:\n{log_a}\nlbd-b:\n{}",
        nonzero(&status_on(&lab, &a)),
        lab.log("lbd-b")
    );
    assert!(rounds >= 10, "only {rounds} rounds of requests");
    // Not even a stall: no packet of theirs reached lb before their
    // translation (the data plane drops a non-SYN without one, and the
    // client retransmits until lb2's dump arrives, or gives up).
    let status_a = status_on(&lab, &a);
    let counters = nonzero(&status_a);
    let missed: Vec<_> = counters
        .iter()
        .filter(|(name, _)| DROPS.contains(name))
        .collect();
    assert!(
        missed.is_empty(),
        "lb dropped packets of the connections it took over: {missed:?}\nlbd-a2:\n{log_a}"
    );
    assert!(
        log_a.contains("the peer's connection table arrived; preemption no longer waits"),
        "lb's preemption did not wait for lb2's dump:\n{log_a}"
    );
    for (vip, nat) in [
        (IpAddr::V4(VIP4), IpAddr::V4(NAT4)),
        (IpAddr::V6(VIP6), IpAddr::V6(NAT6)),
    ] {
        let after = burst(&lab.client.netns, vip, 50);
        assert_eq!(after.failed, 0, "{vip} through lb: {:?}", after.errors);
        assert!(after.peers.contains(&nat));
    }
    eprintln!(
        "NAT preemption: {total} kept-alive connections across lb's SIGINT, lb2's takeover and lb's return (preempted {} ms after its start), {rounds} rounds, 0 failed; took {:?}",
        preempted.as_millis(),
        started.elapsed()
    );
}
