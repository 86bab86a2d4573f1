//! An IPv6 VRRP instance: its master holds the IPv6 VIP (deprecated, never
//! the node's own source), the backup hears its adverts, and the VIP moves
//! when the master stops.

use std::{net::IpAddr, thread, time::Duration};

use lb_tests::{
    client,
    lab::{Host, Lab, HTTP_PORT, VIP6},
    support::{status_on, wait_until},
};
use lb_userspace::vrrp::State;

use crate::{observe::vrrp_state, setup::lab};

#[test]
fn an_ipv6_instance_elects_a_master_that_holds_the_ipv6_vip() {
    let mut lab = lab(2);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let config = |node: &Host, priority: u8| {
        let mut c = format!(
            "interface = \"eth0\"\nadmin_socket = \"{}\"\n\n[[vip]]\naddress = \"{VIP6}\"\nport = {HTTP_PORT}\n",
            lab.admin_socket_of(node).display()
        );
        for backend in &lab.backends {
            c.push_str(&format!(
                "  [[vip.backend]]\n  address = \"{}\"\n",
                backend.ipv6
            ));
        }
        c.push_str(&format!(
            "\n[[vrrp]]\nvrid = 52\npriority = {priority}\nadvert_interval_ms = 100\n"
        ));
        c
    };
    let (config_a, config_b) = (config(&a, 150), config(&b, 100));
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd");
    lab.start_lbd_on(&b, "lbd-b", &config_b).expect("lbd");
    // A failing `ip addr` fails the test: read as "not held" it would
    // pass the check that lb2 does not hold the VIP.
    let holds = |lab: &Lab, node: &Host| {
        lab.addresses_of(node)
            .expect("ip addr")
            .contains(&format!("{VIP6}/128"))
    };
    wait_until("lb to hold the IPv6 VIP", Duration::from_secs(10), || {
        holds(&lab, &a)
    });
    wait_until("lb2 to be backup", Duration::from_secs(5), || {
        vrrp_state(&lab, &b) == State::Backup
    });
    assert!(!holds(&lab, &b));
    // Added deprecated, so the node's own connections never use it as
    // their source.
    let addr = std::process::Command::new("ip")
        .args(["-n", &a.netns, "-6", "addr", "show", "dev", "eth0"])
        .output()
        .expect("ip addr");
    let addr = String::from_utf8_lossy(&addr.stdout);
    let vip_line = addr
        .lines()
        .find(|l| l.contains(&format!("{VIP6}/128")))
        .expect("VIP line");
    assert!(vip_line.contains("deprecated"), "{addr}");
    thread::sleep(Duration::from_millis(500));
    assert!(
        status_on(&lab, &b).vrrp[0].counters.adverts_received > 0,
        "no IPv6 advert heard: {:?} {:?}\n{}\n{}",
        status_on(&lab, &a).vrrp,
        status_on(&lab, &b).vrrp,
        lab.log("lbd-a"),
        lab.log("lbd-b")
    );
    let tally = client::burst(&lab.client.netns, IpAddr::V6(VIP6), 100).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);

    lab.interrupt("lbd-a").expect("stop");
    wait_until("lb2 to take the IPv6 VIP", Duration::from_secs(5), || {
        holds(&lab, &b)
    });
    let tally = client::burst(&lab.client.netns, IpAddr::V6(VIP6), 100).expect("burst");
    assert_eq!(tally.failed, 0, "after failover: {:?}", tally.errors);
}
