//! Unicast peers: VRRP elects and fails over with adverts sent to the
//! peer's address instead of the multicast group: IPv4 peers, IPv4 peers
//! on another subnet of the interface than the advert's source, and IPv6
//! peers named by their global addresses.

use std::{
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    lab::{Host, Lab, HTTP_PORT, VIP6},
    support::{ip_on, status_on, wait_until},
};
use lb_userspace::vrrp::State;

use crate::{
    observe::{vrrp_state, wait_for_vip},
    setup::lab,
};

#[test]
fn unicast_peers_elect_without_multicast() {
    let mut lab = lab(1);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let unicast = |config: String, peer: &Host| {
        config.replace(
            "[[vrrp]]\n",
            &format!("[[vrrp]]\nunicast_peers = [\"{}\"]\n", peer.ipv4),
        )
    };
    let config_a = unicast(
        lab.ha_config(&a, &b, &["b1"], 150, true).expect("config"),
        &b,
    );
    let config_b = unicast(
        lab.ha_config(&b, &a, &["b1"], 100, true).expect("config"),
        &a,
    );
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd");
    lab.start_lbd_on(&b, "lbd-b", &config_b).expect("lbd");
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(10));
    thread::sleep(Duration::from_millis(800));
    assert_eq!(
        vrrp_state(&lab, &b),
        State::Backup,
        "lb2 did not hear lb's unicast adverts"
    );
    assert!(status_on(&lab, &b).vrrp[0].counters.adverts_received > 0);
    assert!(!lab.holds_vip(&b).expect("ip addr"));
    lab.interrupt("lbd-a").expect("stop");
    wait_for_vip(&lab, &b, Instant::now(), Duration::from_secs(5));
}

/// After both nodes have run a while, exactly one is master and the
/// backup heard the master's adverts (none ignored for a bad checksum).
fn assert_one_master(lab: &Lab, a: &Host, b: &Host) {
    thread::sleep(Duration::from_secs(3));
    let (sa, sb) = (status_on(lab, a).vrrp, status_on(lab, b).vrrp);
    let states = [sa[0].state, sb[0].state];
    assert_eq!(
        states.iter().filter(|s| **s == State::Master).count(),
        1,
        "{states:?}\n{sa:?}\n{sb:?}\n{}\n{}",
        lab.log("lbd-a"),
        lab.log("lbd-b")
    );
    assert_eq!(states, [State::Master, State::Backup], "{sa:?}\n{sb:?}");
    assert!(sb[0].counters.adverts_received > 0, "{sb:?}");
    assert!(sb[0].ignored.is_empty(), "adverts ignored: {sb:?}");
}

/// The peer sits on a second subnet of the interface: the adverts still
/// leave from the primary address the checksum and tie-break use, not the
/// one the route to the peer would pick.
#[test]
fn unicast_peers_on_a_second_subnet_get_adverts_from_the_primary_address() {
    let mut lab = lab(1);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    // 198.19.5.0/24: a second subnet on the same segment, added after the
    // lab's own (primary) address.
    ip_on(&a, &["addr", "add", "198.19.5.1/24", "dev", "eth0"]);
    ip_on(&b, &["addr", "add", "198.19.5.2/24", "dev", "eth0"]);
    let unicast = |config: String, peer: &str| {
        config.replace(
            "[[vrrp]]\n",
            &format!("[[vrrp]]\nunicast_peers = [\"{peer}\"]\n"),
        )
    };
    let config_a = unicast(
        lab.ha_config(&a, &b, &["b1"], 150, true).expect("config"),
        "198.19.5.2",
    );
    let config_b = unicast(
        lab.ha_config(&b, &a, &["b1"], 100, true).expect("config"),
        "198.19.5.1",
    );
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd");
    lab.start_lbd_on(&b, "lbd-b", &config_b).expect("lbd");
    assert_one_master(&lab, &a, &b);
    assert!(lab.holds_vip(&a).expect("ip addr"));
    assert!(!lab.holds_vip(&b).expect("ip addr"));
}

/// IPv6 unicast peers named by their global addresses (2001:2::/48): the
/// adverts, sent from the link-local address, reach the peer although they
/// are addressed to its global one.
#[test]
fn ipv6_unicast_peers_with_global_addresses_elect_one_master() {
    let mut lab = lab(1);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let config = |node: &Host, peer: &Host, priority: u8| {
        format!(
            "interface = \"eth0\"\nadmin_socket = \"{}\"\n\n[[vip]]\naddress = \"{VIP6}\"\nport = {HTTP_PORT}\n\
             [[vip.backend]]\naddress = \"{}\"\n\n[[vrrp]]\nvrid = 52\npriority = {priority}\n\
             advert_interval_ms = 100\nunicast_peers = [\"{}\"]\n",
            lab.admin_socket_of(node).display(),
            lab.backends[0].ipv6,
            peer.ipv6
        )
    };
    let (config_a, config_b) = (config(&a, &b, 150), config(&b, &a, 100));
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd");
    lab.start_lbd_on(&b, "lbd-b", &config_b).expect("lbd");
    assert_one_master(&lab, &a, &b);
    let holds = |lab: &Lab, node: &Host| {
        lab.addresses_of(node)
            .expect("ip addr")
            .contains(&format!("{VIP6}/128"))
    };
    assert!(holds(&lab, &a) && !holds(&lab, &b));
    // And the backup takes over when the master stops.
    lab.interrupt("lbd-a").expect("stop");
    wait_until("lb2 to take the IPv6 VIP", Duration::from_secs(5), || {
        holds(&lab, &b)
    });
}
