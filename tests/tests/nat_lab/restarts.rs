//! Restarts of lbd under kept-alive NAT'd connections (kill -9, then
//! SIGTERM): lbd adopts the pinned NAT table, so no connection breaks
//! and none loses its backend or NAT port.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_tests::{
    http::{burst, Conn, Talker},
    lab::{VIP4, VIP6},
    support::{nonzero, restart_both_ways, wait_until},
};

use crate::{
    observe::{nat_flows, status},
    setup::{nat_config, nat_lab, Spec},
    DROPS, NAT4, NAT6,
};

#[test]
fn nat_at_xdp_kept_alive_connections_survive_kill_9_and_sigterm_restarts() {
    restarts("xdp");
}

#[test]
fn nat_at_tc_kept_alive_connections_survive_kill_9_and_sigterm_restarts() {
    restarts("tc");
}

/// Kept-alive connections through both NAT VIPs ask every 100 ms while
/// lbd is killed (kill -9) and started again, then stopped (SIGTERM) and
/// started again: each keeps its backend and its NAT port throughout
/// (the pinned NAT table and sources are adopted, the program swapped in
/// on the pinned link), the restarted lbd shows the flows, and new
/// connections go through afterwards.
fn restarts(attach: &str) {
    let started = Instant::now();
    let mut lab = nat_lab(1, 3);
    let lb = lab.lb.clone();
    let config = nat_config(
        &lab,
        &lb,
        &Spec {
            attach,
            ..Spec::default()
        },
    );
    lab.start_lbd_on(&lb, "lbd", &config).expect("lbd");
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
    let backends: BTreeSet<String> = conns.iter().map(|c| c.first.backend.clone()).collect();
    let talker = Talker::start(conns);
    // The status counts flows as of the reaper's last sweep.
    wait_until(
        "the NAT flows in the status",
        Duration::from_secs(10),
        || nat_flows(&status(&lab)) >= total as u64,
    );

    let running = restart_both_ways(&mut lab, &lb, "lbd", &config, |lab| {
        wait_until(
            "the restarted lbd to show the adopted NAT flows",
            Duration::from_secs(10),
            || nat_flows(&status(lab)) >= total as u64,
        );
    });
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let after = burst(&lab.client.netns, vip, 200);
        assert_eq!(
            after.failed, 0,
            "{vip} after the restarts: {:?}",
            after.errors
        );
    }
    let (rounds, errors) = talker.finish();
    assert!(
        errors.is_empty(),
        "kept-alive NAT'd connections broke across the restarts: {errors:?}\ncounters: {:?}\nlbd3:\n{}",
        nonzero(&status(&lab)),
        lab.log(&running)
    );
    assert!(rounds >= 15, "only {rounds} rounds of requests");
    let last = status(&lab);
    let drops: BTreeMap<&str, u64> = nonzero(&last)
        .into_iter()
        .filter(|(k, _)| DROPS.contains(k))
        .collect();
    assert!(drops.is_empty(), "drops across the restarts: {drops:?}");
    eprintln!(
        "NAT at {attach}: {total} kept-alive connections (IPv4 and IPv6) on {backends:?}, {rounds} rounds across kill -9 + restart and SIGTERM + restart, 0 failed; took {:?}",
        started.elapsed()
    );
}

/// `conntrack_size` and `[nat] flow_table_size` take effect at a restart:
/// kept-alive NAT'd connections asking every 100 ms while lbd is stopped
/// (SIGTERM) and started with both tables four times larger keep their
/// backends and NAT ports (the old tables' flows are carried into the
/// new ones, the rest of the data plane adopted), and new connections go
/// through afterwards.
#[test]
fn nat_kept_alive_connections_survive_a_restart_that_resizes_the_tables() {
    let started = Instant::now();
    let mut lab = nat_lab(1, 3);
    let lb = lab.lb.clone();
    let config = |size: u32| {
        nat_config(
            &lab,
            &lb,
            &Spec {
                nat_extra: &format!("flow_table_size = {size}\n"),
                ..Spec::default()
            },
        )
        .replace(
            "conntrack_size = 65536",
            &format!("conntrack_size = {size}"),
        )
    };
    let (small, large) = (config(65_536), config(262_144));
    assert_ne!(small, large);
    lab.start_lbd_on(&lb, "lbd", &small).expect("lbd");
    let mut conns = Vec::new();
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        conns.extend(Conn::open(&lab.client.netns, vip, 8, Duration::from_secs(5)).expect("open"));
    }
    let total = conns.len();
    let talker = Talker::start(conns);
    wait_until(
        "the NAT flows in the status",
        Duration::from_secs(10),
        || nat_flows(&status(&lab)) >= total as u64,
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        lab.terminate("lbd").expect("SIGTERM").success(),
        "SIGTERM exits cleanly"
    );
    std::thread::sleep(Duration::from_millis(300));
    lab.start_lbd_on(&lb, "lbd-larger", &large)
        .expect("lbd with larger tables");
    let now = status(&lab);
    assert!(now.adopted, "the data plane is adopted");
    wait_until(
        "the restarted lbd to show the carried NAT flows",
        Duration::from_secs(10),
        || nat_flows(&status(&lab)) >= total as u64,
    );
    std::thread::sleep(Duration::from_millis(1000));
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let after = burst(&lab.client.netns, vip, 100);
        assert_eq!(
            after.failed, 0,
            "{vip} after the restart: {:?}",
            after.errors
        );
    }
    let (rounds, errors) = talker.finish();
    assert!(
        errors.is_empty(),
        "kept-alive NAT'd connections broke across the resizing restart: {errors:?}\ncounters: {:?}\n{}",
        nonzero(&status(&lab)),
        lab.log("lbd-larger")
    );
    assert!(rounds >= 10, "only {rounds} rounds of requests");
    eprintln!(
        "NAT: {total} kept-alive connections across a restart resizing both tables 4x, {rounds} rounds, 0 failed; took {:?}",
        started.elapsed()
    );
}
