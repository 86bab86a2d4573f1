//! Connection-table replication: long-lived connections survive the
//! master node's failure (lbd killed and its link cut) even after a new
//! backend would have moved some of them, at xdp and at tc.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    http::LongStream,
    support::{backend, long_streams_by_move, status_on, wait_replication, wait_until},
};
use lb_userspace::api::schema::HealthStatus;

use crate::{
    observe::wait_for_vip,
    setup::{lab, start_pair_at},
    VIP,
};

#[test]
fn long_lived_connections_survive_a_failover_even_after_the_backend_set_changed() {
    long_lived_across_changes_and_failover("xdp");
}

#[test]
fn at_tc_long_lived_connections_survive_a_failover_even_after_the_backend_set_changed() {
    long_lived_across_changes_and_failover("tc");
}

fn long_lived_across_changes_and_failover(attach: &str) {
    let mut lab = lab(4);
    start_pair_at(&mut lab, &["b1", "b2", "b3"], 150, 100, true, attach);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(10));
    wait_replication(&lab, &a);

    // Two streams that would move to another backend once b4 joins (they
    // only survive the failover through replication) and two that would
    // not, with source ports picked from the model. Each goes on until a
    // whole body asked for after the failover has arrived, however long
    // the steps before it take.
    let failed_over = Arc::new(AtomicBool::new(false));
    let streams: Vec<LongStream> = long_streams_by_move(&lab, 2, 2, &failed_over, "failover");
    for node in [&a, &b] {
        let out = lab
            .lbctl_on(node, &["backend", "add", VIP, "198.18.0.14"])
            .expect("lbctl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // b4 takes new flows on b (its checks passed): otherwise b's table
    // at the failover would still be the three backends', and the streams
    // that would move with b4 would keep their backends without
    // replication.
    wait_until("b4 up on b", Duration::from_secs(10), || {
        let b4 = backend(&status_on(&lab, &b), "198.18.0.14");
        b4.health == HealthStatus::Up && b4.share > 0.0
    });
    // Replication ticks (250 ms) and touches (1 s) bring every stream to
    // the backup; polled for up to 10 s, as a loaded machine may be slow.
    // Without replication none ever arrives, and the failover below breaks
    // the streams that would have moved.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let installed = status_on(&lab, &b)
            .replication
            .map(|r| r.installed)
            .unwrap_or(0);
        if installed >= streams.len() as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backup installed {installed} of {} flows within 10 s",
            streams.len()
        );
        thread::sleep(Duration::from_millis(100));
    }

    // The master node fails: lbd dies and the node drops off the segment.
    // (A crash of lbd alone, on a live kernel, is the hitless-restart case:
    // the stale VIP on the old node answers with resets until clients learn
    // the new master.)
    lab.signal("lbd-a", libc::SIGKILL).expect("SIGKILL");
    lab.set_link(&a, false).expect("link down");
    let gap = wait_for_vip(&lab, &b, Instant::now(), Duration::from_secs(5));
    // Every body asked for from now on goes through b.
    failed_over.store(true, Ordering::SeqCst);
    let total = streams.len();
    let mut failed = Vec::new();
    let mut bodies = 0;
    for stream in streams {
        match stream.handle.join().expect("stream thread") {
            Ok((n, _)) => bodies += n,
            Err(e) => failed.push((stream.local, stream.first.backend, e)),
        }
    }
    println!("RELIABILITY ({attach}): node failure under long-lived streams: {total} streams (2 would have moved with b4), failover gap {} ms, {bodies} /slow bodies (each stream's last asked for after the failover), failed: {failed:?}", gap.as_millis());
    assert!(
        failed.is_empty(),
        "streams broke across the failover: {failed:?}"
    );
}
