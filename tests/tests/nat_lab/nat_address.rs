//! The node's NAT address removed under lbd (an interface renumbered, a
//! network manager re-applying its configuration without it): backends'
//! replies to it no longer reach the balancer, every NAT'd connection
//! stalls, and the health checks, which leave from the node's own
//! address, still pass. lbd says so once, naming the address and its
//! VIPs, and once when it is back.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_tests::{
    http::burst,
    lab::VIP4,
    support::{ip, wait_until},
};

use crate::{
    setup::{nat_lab, start_nat_lbd, Spec},
    NAT4,
};

/// Two routed scans (every 5 s) and room for a loaded machine.
const NOTICE_LIMIT: Duration = Duration::from_secs(25);

#[test]
fn nat_a_removed_nat_address_is_reported_and_its_return_too() {
    let started = Instant::now();
    let mut lab = nat_lab(1, 1);
    start_nat_lbd(
        &mut lab,
        &Spec {
            backends: &["b1"],
            ipv6: false,
            ..Spec::default()
        },
    );
    let vip = IpAddr::V4(VIP4);
    let before = burst(&lab.client.netns, vip, 1);
    assert_eq!(before.failed, 0, "before: {:?}", before.errors);
    let nat = format!("{NAT4}/32");
    ip(&["-n", &lab.lb.netns, "addr", "del", &nat, "dev", "eth0"]);
    let missing = format!("NAT address {NAT4} is not an address of this node");
    wait_until(
        "lbd to say the NAT address is missing",
        NOTICE_LIMIT,
        || lab.log("lbd").contains(&missing),
    );
    let log = lab.log("lbd");
    let line = log
        .lines()
        .find(|l| l.contains(&missing))
        .unwrap_or_default();
    assert!(
        line.contains("WARN") && line.contains(&format!("{VIP4}:80/tcp")),
        "the warning names the VIP: {line}"
    );
    ip(&["-n", &lab.lb.netns, "addr", "add", &nat, "dev", "eth0"]);
    let back = format!("NAT address {NAT4} is an address of this node again");
    wait_until("lbd to say the NAT address is back", NOTICE_LIMIT, || {
        lab.log("lbd").contains(&back)
    });
    assert_eq!(
        lab.log("lbd").matches(&missing).count(),
        1,
        "the missing address is reported once"
    );
    let after = burst(&lab.client.netns, vip, 1);
    assert_eq!(after.failed, 0, "after: {:?}", after.errors);
    eprintln!("NAT address removed and back: took {:?}", started.elapsed());
}
