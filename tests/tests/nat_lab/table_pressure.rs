//! A flow table full of closed flows: more short connections than the
//! smallest table holds, with closed flows that would keep their entries
//! for 30 s; the table's pressure frees them early (and says so), so new
//! connections go on.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_tests::{
    http::burst,
    lab::VIP4,
    support::{deltas, grown},
};

use crate::{
    observe::status,
    setup::{nat_lab, start_nat_lbd, Spec},
};

#[test]
fn nat_table_full_of_closed_flows_frees_them_early_and_new_connections_go_on() {
    let started = Instant::now();
    let mut lab = nat_lab(1, 1);
    // The smallest table (1,024 entries: 512 flows configured; the bucket
    // table has `FLOW_HEADROOM` slots per entry, so up to 1,024 flows fit
    // before its buckets refuse), and closed flows that would keep their
    // entries for 30 s.
    start_nat_lbd(
        &mut lab,
        &Spec {
            backends: &["b1"],
            ipv6: false,
            nat_extra:
                "flow_table_size = 1024\ntcp_time_wait_timeout_s = 30\ntcp_closed_timeout_s = 30\n",
            ..Spec::default()
        },
    );
    let vip = IpAddr::V4(VIP4);
    // Three configured tables' worth of short connections, one after
    // another: past what the slots hold, only flows freed before their
    // 30 s make room.
    const CONNECTIONS: u32 = 1_536;
    let before = status(&lab);
    let ran = Instant::now();
    let done = burst(&lab.client.netns, vip, CONNECTIONS);
    let ran = ran.elapsed();
    let after = status(&lab);
    assert_eq!(
        done.failed,
        0,
        "connections failed with the table full: {:?}; counters {:?}",
        done.errors,
        deltas(&before, &after)
    );
    let nat = after.nat.as_ref().expect("NAT status");
    // Flows freed while the run lasted less than the closed timeout: the
    // pressure freed them early.
    assert!(
        ran < Duration::from_secs(30),
        "the run took {ran:?}, as long as the closed timeout"
    );
    let room = u64::from(lb_common::flow_table::buckets_for(1024))
        * lb_common::flow_table::FLOW_WAYS as u64
        / 2;
    assert!(
        u64::from(CONNECTIONS) > room,
        "the run must overfill the table"
    );
    assert!(
        nat.expired >= u64::from(CONNECTIONS) - room,
        "only {} flows freed, {room} fit: {nat:?}",
        nat.expired
    );
    // Within its hold the pressure is still on, and was logged.
    assert!(nat.pressure, "{nat:?}");
    assert!(
        lab.log("lbd")
            .contains("nearly full: closed flows (time-wait, closed) are freed after 1 s"),
        "no log line of the pressure"
    );
    eprintln!(
        "NAT table of 1024 entries: {CONNECTIONS} short connections in {ran:?}, none failed; {} SYNs dropped while it was full, {} flows freed; took {:?}",
        grown(&before, &after, "drop_nat_table_full"),
        nat.expired,
        started.elapsed()
    );
}
