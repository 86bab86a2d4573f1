//! Backend states shared over the pair's sync channel: a drain made on
//! the master holds on the backup, so after a failover the new master
//! sends no new flow to the drained backend, while the drained backend's
//! established connections go on through it.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_tests::{
    client::{self, KeepAlive},
    lab::VIP4,
    support::{backend, status_on, wait_replication, wait_until},
};

use crate::{
    observe::wait_for_vip,
    setup::{lab, start_pair_at},
    VIP,
};

#[test]
fn a_drain_made_on_the_master_holds_on_the_new_master_after_a_failover() {
    let mut lab = lab(3);
    start_pair_at(&mut lab, &["b1", "b2", "b3"], 150, 100, true, "xdp");
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(10));
    wait_replication(&lab, &a);

    // Kept-alive connections through a; the backend of the first is
    // drained on a alone.
    let mut kept = KeepAlive::open(&lab.client.netns, IpAddr::V4(VIP4), 6).expect("connections");
    let served: Vec<String> = kept
        .iter_mut()
        .map(|c| c.request().expect("a first request"))
        .collect();
    let name = served[0].clone();
    let drained = lab
        .backends
        .iter()
        .find(|h| h.name == name)
        .map(|h| h.ipv4.to_string())
        .expect("the backend serving");
    // Once b has sent its states (its status line says so), a's answer
    // names no peer to drain on.
    wait_until(
        "a to hear b's backend states",
        Duration::from_secs(10),
        || {
            status_on(&lab, &a)
                .replication
                .is_some_and(|r| r.peers.iter().all(|p| p.shares_backend_states))
        },
    );
    let mut stderr = String::new();
    wait_until(
        "a drain that names no peer",
        Duration::from_secs(10),
        || {
            let out = lab
                .lbctl_on(&a, &["backend", "drain", VIP, &drained])
                .expect("lbctl");
            stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{stderr}");
            !stderr.contains("has not shown it does")
        },
    );
    assert!(!stderr.contains("per node"), "{stderr}");
    wait_until("the drain on b", Duration::from_secs(10), || {
        let on_b = backend(&status_on(&lab, &b), &drained);
        on_b.state.to_string() == "draining" && on_b.state_from.is_some()
    });
    // The connections' flows reach b too.
    wait_until(
        "b to install the six flows",
        Duration::from_secs(10),
        || {
            status_on(&lab, &b)
                .replication
                .is_some_and(|r| r.installed >= 6)
        },
    );

    // The master fails: lbd dies and the node leaves the segment.
    lab.signal("lbd-a", libc::SIGKILL).expect("SIGKILL");
    lab.set_link(&a, false).expect("link down");
    wait_for_vip(&lab, &b, Instant::now(), Duration::from_secs(5));
    // No new connection through b reaches the drained backend ...
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 60).expect("burst");
    assert_eq!(tally.succeeded(), 60, "{tally:?}");
    assert!(
        !tally.by_backend.contains_key(&name),
        "b sent new flows to {name}, drained on a: {tally:?}"
    );
    // ... and every kept-alive connection stays on its backend, the
    // drained one's included.
    for (conn, first) in kept.iter_mut().zip(&served) {
        let again = conn.request().expect("a request after the failover");
        assert_eq!(&again, first, "a connection moved across the failover");
    }
    let on_b = backend(&status_on(&lab, &b), &drained);
    assert_eq!(on_b.state.to_string(), "draining", "{on_b:?}");
}
