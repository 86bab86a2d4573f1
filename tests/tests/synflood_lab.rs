//! A SYN flood end to end in the lab: from the client's namespace, an
//! `AF_PACKET` sender (`lb_tests::synflood`) sends 100,000 SYNs of
//! spoofed sources from 198.19.0.0/16 at the VIP (three times the
//! half-open table's slots, bounded to 20 s) while 32 long-lived
//! connections stay open and a client opens new connections. Not one
//! long-lived connection breaks (each still answers from the backend it
//! started on), the half-open table overflowed (evictions counted) while
//! the connection table (the smallest, 1,024 flows) held only the real
//! connections, lbd entered flood mode, and the
//! new connections' success rate is reported. Needs root.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_common::{consts::HALF_OPEN_BUCKETS, flow_table::FLOW_WAYS};
use lb_tests::{
    client::{self, KeepAlive},
    lab::{in_netns, Lab, HTTP_PORT, VIP4},
    support::{counter, status, wait_until},
    synflood::{mac_of, SynFlood},
};

/// Long-lived connections kept open through the flood.
const LONG_LIVED: usize = 32;
/// SYNs in the flood.
const FLOOD: u32 = 100_000;
/// lbd's `conntrack_size` here (the smallest accepted).
const CONNTRACK: u64 = 1024;

#[test]
fn a_syn_flood_breaks_no_long_lived_connection_and_new_ones_still_connect() {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    // The smallest connection table: the flood would fill it many times
    // over if its SYNs went there.
    let config = lab.lbd_config().replace(
        "conntrack_size = 65536",
        &format!("conntrack_size = {CONNTRACK}"),
    );
    assert!(config.contains(&format!("conntrack_size = {CONNTRACK}")));
    lab.start_lbd(&config).expect("lbd");
    let vip = IpAddr::V4(VIP4);
    let netns = lab.client.netns.clone();

    let mut long_lived = KeepAlive::open(&netns, vip, LONG_LIVED).expect("long-lived connections");
    let served: Vec<String> = long_lived
        .iter_mut()
        .map(|c| c.request().expect("a first request"))
        .collect();
    let before = status(&lab);
    let tracked_before = before.conntrack.entries;
    assert!(
        tracked_before >= LONG_LIVED as u64,
        "{tracked_before} flows tracked"
    );

    // The flood, from the client's namespace, with new connections meanwhile.
    let flood = SynFlood {
        ifname: "eth0".to_owned(),
        src_mac: mac_of(&netns, "eth0").expect("client MAC"),
        dst_mac: mac_of(&lab.lb.netns, "eth0").expect("LB MAC"),
        vip: VIP4,
        port: HTTP_PORT,
        count: FLOOD,
        limit: Duration::from_secs(20),
    };
    let sender = {
        let (netns, flood) = (netns.clone(), flood.clone());
        std::thread::spawn(move || in_netns(&netns, move || flood.run()))
    };
    let started = Instant::now();
    let mut tally = client::Tally::default();
    let mut latencies = Vec::new();
    while !sender.is_finished() && started.elapsed() < Duration::from_secs(25) {
        let at = Instant::now();
        tally.add(client::burst(&netns, vip, 10).expect("burst"));
        latencies.push(at.elapsed() / 10);
    }
    let report = sender
        .join()
        .expect("sender thread")
        .expect("in the client namespace")
        .expect("the flood");
    assert!(
        report.sent > u64::from(HALF_OPEN_BUCKETS) * FLOW_WAYS as u64,
        "only {} SYNs sent in {:?}",
        report.sent,
        report.elapsed
    );

    // Not one long-lived connection broke or moved.
    for (n, (connection, first)) in long_lived.iter_mut().zip(&served).enumerate() {
        let answer = connection
            .request()
            .unwrap_or_else(|e| panic!("long-lived connection {n} broke: {e:#}"));
        assert_eq!(&answer, first, "long-lived connection {n} moved");
    }
    // lbd saw it: the half-open table overflowed, flood mode came on (the
    // housekeeping tick reads the counters every second).
    wait_until("flood mode", Duration::from_secs(5), || {
        status(&lab).conntrack.syn_flood_transitions > 0
    });
    let after = status(&lab);
    let held =
        counter(&after, "conntrack_half_open_new") - counter(&before, "conntrack_half_open_new");
    let evicted = counter(&after, "conntrack_half_open_evicted");
    assert!(
        held >= report.sent * 9 / 10,
        "{held} SYNs held of {} sent",
        report.sent
    );
    assert!(evicted > 0, "the half-open table never overflowed");
    assert!(
        after.conntrack.half_open <= after.conntrack.half_open_capacity,
        "{:?}",
        after.conntrack
    );
    // The connection table holds the real connections only.
    assert!(
        after.conntrack.entries < CONNTRACK,
        "the flood reached the connection table: {:?}",
        after.conntrack
    );
    let attempts = tally.succeeded() + tally.failed;
    assert!(attempts > 0, "no new connection was tried during the flood");
    latencies.sort_unstable();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    println!(
        "SYN FLOOD LAB: {} SYNs of spoofed sources in {:.1} s ({:.0}/s); {} held half-open, {evicted} evicted; {LONG_LIVED} of {LONG_LIVED} long-lived connections intact; new connections during the flood: {} of {attempts} succeeded ({:.1} %), p99 of 10-connection bursts {:.1} ms per connection; errors: {:?}",
        report.sent,
        report.elapsed.as_secs_f64(),
        report.sent as f64 / report.elapsed.as_secs_f64().max(1e-9),
        held,
        tally.succeeded(),
        100.0 * tally.succeeded() as f64 / attempts as f64,
        p99.as_secs_f64() * 1000.0,
        tally.errors
    );
}
