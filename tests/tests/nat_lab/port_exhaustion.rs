//! Port exhaustion: with four NAT ports all in use, a fifth connection's
//! SYNs are dropped and counted without disturbing the four, and the
//! ports come back once the flows end and the reaper frees them.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    http::Conn,
    lab::VIP4,
    support::{grown, vip_status, wait_until},
};

use crate::{
    observe::status,
    setup::{nat_lab, start_nat_lbd, Spec},
};

#[test]
fn nat_at_xdp_port_exhaustion_drops_and_counts_then_recovers_when_flows_end() {
    port_exhaustion("xdp");
}

#[test]
fn nat_at_tc_port_exhaustion_drops_and_counts_then_recovers_when_flows_end() {
    port_exhaustion("tc");
}

fn port_exhaustion(attach: &str) {
    let started = Instant::now();
    const MAX: u16 = 60_003;
    const MIN: u16 = MAX - 3;
    let mut lab = nat_lab(1, 1);
    let nat_extra = format!(
        "source_port_min = {MIN}\nsource_port_max = {MAX}\ntcp_time_wait_timeout_s = 1\ntcp_closed_timeout_s = 1\ntcp_closing_timeout_s = 2\n"
    );
    start_nat_lbd(
        &mut lab,
        &Spec {
            attach,
            backends: &["b1"],
            ipv6: false,
            nat_extra: &nat_extra,
            ..Spec::default()
        },
    );
    let vip = IpAddr::V4(VIP4);
    let netns = lab.client.netns.clone();
    let mut conns = Conn::open(&netns, vip, 4, Duration::from_secs(5)).expect("four connections");
    let ports: BTreeSet<u16> = conns.iter().map(|c| c.first.peer.port()).collect();
    assert_eq!(
        ports,
        (MIN..=MAX).collect::<BTreeSet<u16>>(),
        "the four connections' NAT ports: {:?}",
        conns.iter().map(|c| c.first.clone()).collect::<Vec<_>>()
    );

    wait_until(
        "the status to show 4 ports in use",
        Duration::from_secs(5),
        || {
            vip_status(&status(&lab), vip)
                .nat
                .as_ref()
                .is_some_and(|n| (n.port_min, n.port_max, n.ports_in_use) == (MIN, MAX, 4))
        },
    );
    // The fifth finds no port: its SYNs (and retransmissions) are dropped.
    let before = status(&lab);
    let fifth = Conn::open(&netns, vip, 1, Duration::from_secs(3));
    let after = status(&lab);
    assert!(
        fifth.is_err(),
        "a fifth connection got through with 4 ports in use: {:?}",
        fifth.map(|c| c[0].first.clone())
    );
    let exhausted = grown(&before, &after, "drop_nat_ports_exhausted");
    assert!(exhausted >= 1, "drop_nat_ports_exhausted did not grow");
    assert_eq!(grown(&before, &after, "nat_new"), 0, "nat_new grew");
    // No collision: the four still talk to the same backend, same ports.
    for conn in &mut conns {
        let seen = conn.get().expect("a live connection while exhausted");
        assert_eq!(seen, conn.first);
    }

    // The client ends them (FIN both ways); the reaper frees the ports
    // after tcp_time_wait_timeout_s.
    drop(conns);
    let ended = Instant::now();
    let mut attempts = 0;
    let recovered = loop {
        attempts += 1;
        if let Ok(conn) = Conn::open(&netns, vip, 1, Duration::from_millis(500)) {
            break conn;
        }
        assert!(
            ended.elapsed() < Duration::from_secs(30),
            "no new connection within 30 s of the old ones ending ({attempts} attempts); status: {:?}",
            status(&lab).counters
        );
        thread::sleep(Duration::from_millis(250));
    };
    let took = ended.elapsed();
    let expired = status(&lab).nat.map_or(0, |n| n.expired);
    assert!(expired >= 1, "the reaper counted no expired flow");
    drop(recovered);
    // Closed again: all four ports come back (the reaper frees the last
    // flow's too), then fit four new connections at once. (Trying four
    // before that would take the free ports and close them again when
    // the last does not fit, holding them for another time-wait.)
    wait_until("every NAT port free again", Duration::from_secs(30), || {
        vip_status(&status(&lab), vip)
            .nat
            .as_ref()
            .is_some_and(|n| n.ports_in_use == 0)
    });
    let reopened =
        Conn::open(&netns, vip, 4, Duration::from_secs(5)).expect("four new connections fit again");
    let ports: BTreeSet<u16> = reopened.iter().map(|c| c.first.peer.port()).collect();
    assert_eq!(ports, (MIN..=MAX).collect::<BTreeSet<u16>>());
    eprintln!(
        "NAT ports: 4 of 4 in use, {exhausted} SYNs dropped as exhausted; a new connection {} ms after the flows ended; took {:?}",
        took.as_millis(),
        started.elapsed()
    );
}
