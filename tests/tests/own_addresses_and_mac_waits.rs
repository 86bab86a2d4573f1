//! Two things lbd must not do to a node, end to end in the namespace lab.
//! Needs root.
//!
//! - Take away the node's own address because a VRRP instance lists it,
//!   even at a host prefix (a DHCP /32, a /128): lbd refuses to start and
//!   leaves it, and `lbd --release-vips` leaves it too; an address in the
//!   form lbd adds (one a previous lbd left) is still taken for a VIP.
//! - Hold every change for the MAC of a DSR-L2 backend it did not bring:
//!   a backend running without one holds no edit or reload; only a change
//!   that brings a new one waits (up to 2 s) for it.

use std::{net::IpAddr, time::Duration};

use lb_tests::{
    lab::{Host, Lab, LabSpec, HTTP_PORT, VIP4, VIP6},
    support::{ip_on, lbctl_ok, status},
};

/// Two LB nodes, one backend, no VIP on any interface.
fn pair_lab() -> Lab {
    let lab = Lab::start_spec(LabSpec {
        lbs: 2,
        backends: 1,
        static_vip: false,
    })
    .expect("lab");
    lab.wait_for_backends().expect("nginx up");
    lab
}

/// An lbd config for `node` with the IPv6 VIP and one VRRP instance
/// moving it.
fn ipv6_vrrp_config(lab: &Lab, node: &Host) -> String {
    format!(
        "interface = \"eth0\"\nadmin_socket = \"{}\"\n\n[[vip]]\naddress = \"{VIP6}\"\nport = {HTTP_PORT}\n\
         [[vip.backend]]\naddress = \"{}\"\n\n[[vrrp]]\nvrid = 52\npriority = 150\nadvert_interval_ms = 100\n",
        lab.admin_socket_of(node).display(),
        lab.backends[0].ipv6
    )
}

/// Whether `node`'s eth0 holds `entry` (`address/prefix`).
fn holds(lab: &Lab, node: &Host, entry: &str) -> bool {
    lab.addresses_of(node)
        .expect("ip addr")
        .split_whitespace()
        .any(|w| w == entry)
}

/// The node's own address at a host prefix, listed as a VRRP address: a
/// DHCP lease (/32, expiring) and a static /128 (with duplicate address
/// detection). lbd refuses to start, naming it, and neither the attempt
/// nor `lbd --release-vips` takes it away. Before, only an address with
/// its subnet's prefix counted as the node's own: these two were removed.
#[test]
fn a_node_address_at_a_host_prefix_listed_for_vrrp_is_refused_and_kept() {
    let mut lab = pair_lab();
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let v4 = format!("{VIP4}/32");
    let v6 = format!("{VIP6}/128");
    ip_on(
        &a,
        &[
            "addr",
            "add",
            &v4,
            "dev",
            "eth0",
            "valid_lft",
            "3600",
            "preferred_lft",
            "3600",
        ],
    );
    ip_on(&a, &["addr", "add", &v6, "dev", "eth0"]);
    let configs = [
        (
            "lbd-a",
            &v4,
            lab.ha_config(&a, &b, &["b1"], 150, true).expect("config"),
        ),
        ("lbd-a6", &v6, ipv6_vrrp_config(&lab, &a)),
    ];
    for (name, own, config) in configs {
        let error = lab
            .start_lbd_on(&a, name, &config)
            .expect_err("lbd must refuse the node's own address as a VRRP address");
        let error = format!("{error:#}");
        assert!(
            error.contains(&format!(
                "{own} is already an address of eth0, and the node's own"
            )),
            "{error}"
        );
        assert!(holds(&lab, &a, own), "{}", lab.addresses_of(&a).unwrap());
        lab.lbd_offline_ok(&a, name, "--release-vips");
        assert!(
            holds(&lab, &a, own),
            "--release-vips removed the node's own {own}"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(holds(&lab, &a, &v4) && holds(&lab, &a, &v6));
}

/// An address in the form lbd adds (a plain permanent /32; a /128 without
/// duplicate address detection, deprecated), as a previous lbd that
/// crashed leaves it: the start goes on, and the instance, which does not
/// resume mastership, removes it as stale before it speaks.
#[test]
fn an_address_a_previous_lbd_left_is_still_taken_for_a_vip() {
    let mut lab = pair_lab();
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let v4 = format!("{VIP4}/32");
    let v6 = format!("{VIP6}/128");
    ip_on(&a, &["addr", "add", &v4, "dev", "eth0"]);
    ip_on(
        &b,
        &[
            "addr",
            "add",
            &v6,
            "dev",
            "eth0",
            "nodad",
            "preferred_lft",
            "0",
        ],
    );
    // lb2's peer is down: it will take the VIP; lb, with a lower
    // priority, must first drop what it holds.
    let config_a = lab.ha_config(&a, &b, &["b1"], 100, false).expect("config");
    lab.start_lbd_on(&a, "lbd-a", &config_a)
        .expect("lbd starts with its own leftover");
    assert!(
        lab.log("lbd-a")
            .contains("taken for one a previous lbd left"),
        "{}",
        lab.log("lbd-a")
    );
    let config_b = ipv6_vrrp_config(&lab, &b);
    lab.start_lbd_on(&b, "lbd-b", &config_b)
        .expect("lbd starts with its own IPv6 leftover");
    // The IPv4 leftover went at lb's start (it is backup or master since:
    // as master it adds the VIP again, so look at the log).
    assert!(
        !lab.log("lbd-a").contains("not removing the VRRP address"),
        "{}",
        lab.log("lbd-a")
    );
    assert!(
        !lab.log("lbd-b").contains("not removing the VRRP address"),
        "{}",
        lab.log("lbd-b")
    );
}

/// A DSR-L2 VIP with a backend whose MAC never resolves (nothing answers
/// at its address). Edits and reloads that do not bring it do not wait for
/// it; adding another such backend waits for its MAC (up to 2 s). Before,
/// every change waited 2 s for the dead backend's MAC, holding lbd's main
/// loop meanwhile.
///
/// lbd logs "backend MAC unknown" for a backend only after a wait for its
/// MAC that ran out (a lookup that does not wait logs nothing), so the
/// count of those lines says which changes waited, and for whom; no
/// timing.
#[test]
fn a_backend_without_a_mac_holds_no_change_it_is_not_part_of() {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let unchecked = "forwarding = \"dsr-l2\"\n[vip.health]\ncheck = \"none\"\n";
    let mut config = lab.lbd_config_for(&["b1", "b2"], unchecked);
    config.push_str("  [[vip.backend]]\n  address = \"198.18.0.200\"\n");
    lab.start_lbd(&config).expect("lbd");
    let vip = format!("{VIP4}:{HTTP_PORT}/tcp");
    let dead: IpAddr = "198.18.0.200".parse().expect("address");
    assert!(status(&lab).vips[0]
        .backends
        .iter()
        .any(|b| b.address == dead));

    // The warnings so far: start-up waited for the dead backend's MAC.
    let unknown = |lab: &Lab| -> Vec<String> {
        lab.log("lbd")
            .lines()
            .filter(|l| l.contains("backend MAC unknown"))
            .map(str::to_owned)
            .collect()
    };
    let at_start = unknown(&lab);
    assert!(
        !at_start.is_empty() && at_start.iter().all(|l| l.contains("198.18.0.200")),
        "start-up waits for the dead backend's MAC and says so: {at_start:#?}\n{}",
        lab.log("lbd")
    );
    for args in [
        &["backend", "weight", &vip, "198.18.0.11", "50"][..],
        &["backend", "drain", &vip, "198.18.0.12"][..],
        &["backend", "undrain", &vip, "198.18.0.12"][..],
        &["reload"][..],
    ] {
        lbctl_ok(&lab, args);
        assert_eq!(
            unknown(&lab),
            at_start,
            "lbctl {args:?} waited for a MAC it does not bring"
        );
    }
    // A change that brings a backend without a MAC waits for it, and for
    // it only.
    lbctl_ok(&lab, &["backend", "add", &vip, "198.18.0.201"]);
    let after_add = unknown(&lab);
    assert_eq!(
        after_add.len(),
        at_start.len() + 1,
        "the add waits once, for its backend: {after_add:#?}"
    );
    assert!(
        after_add[at_start.len()].contains("198.18.0.201"),
        "{after_add:#?}"
    );
    // And it is now one of those that hold nothing.
    lbctl_ok(&lab, &["backend", "weight", &vip, "198.18.0.11", "60"]);
    assert_eq!(unknown(&lab), after_add, "the next edit waits for no MAC");
}
