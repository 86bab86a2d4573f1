//! A first start refused for its VRRP configuration leaves the node as it
//! was: no program on the interface, nothing pinned, so a service
//! manager's retries do not leave a data plane forwarding for no lbd.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use lb_tests::lab::VIP4;

use crate::setup::lab;

#[test]
fn a_start_refused_for_an_interface_address_leaves_nothing_attached_or_pinned() {
    let mut lab = lab(1);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let own = format!("{VIP4}/24");
    let out = Command::new("ip")
        .args(["-n", &a.netns, "addr", "add", &own, "dev", "eth0"])
        .output()
        .expect("ip");
    assert!(out.status.success(), "{out:?}");
    assert!(!lab.xdp_attached(&a).expect("ip link"), "a fresh node");
    let config = lab.ha_config(&a, &b, &["b1"], 255, true).expect("config");
    let error = lab
        .start_lbd_on(&a, "lbd-a", &config)
        .expect_err("lbd must refuse an interface address as a VRRP address");
    let error = format!("{error:#}");
    assert!(
        error.contains(&format!("{own} is already an address of eth0")),
        "{error}"
    );
    assert!(
        !lab.xdp_attached(&a).expect("ip link"),
        "the program stayed attached:\n{}",
        lab.log("lbd-a")
    );
    // Nothing pinned: the pin directory holds only what the ownership
    // claim made before the start (its lock record, the empty maps
    // directory), no map, program or link.
    let pins = lab.pin_dir_of(&a);
    let left = pinned_under(&pins);
    assert!(left.is_empty(), "pins left in {}: {left:?}", pins.display());
}

/// Every entry under `dir` but directories and the lock record
/// `lbd-owner`: the pinned objects.
fn pinned_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(pinned_under(&path));
        } else if entry.file_name() != "lbd-owner" {
            found.push(path);
        }
    }
    found
}

/// A first start that fails once the engine runs (the metrics port is
/// taken: bound after the program is attached) takes the program away
/// again and removes its pins, as one refused earlier does.
#[test]
fn a_first_start_whose_metrics_bind_fails_leaves_nothing_attached_or_pinned() {
    let mut lab = lab(1);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    assert!(!lab.xdp_attached(&a).expect("ip link"), "a fresh node");
    // lbd's default metrics listener.
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 9641));
    let _squatter = lb_tests::lab::in_netns(&a.netns, move || std::net::TcpListener::bind(listen))
        .expect("netns")
        .expect("bind the port");
    let config = lab.ha_config(&a, &b, &["b1"], 150, true).expect("config");
    let error = lab
        .start_lbd_on(&a, "lbd-a", &config)
        .expect_err("lbd must fail at the metrics port");
    let log = lab.log("lbd-a");
    assert!(log.contains("metrics listener"), "{error:#}\n{log}");
    assert!(
        !lab.xdp_attached(&a).expect("ip link"),
        "the program stayed attached:\n{log}"
    );
    let pins = lab.pin_dir_of(&a);
    let left = pinned_under(&pins);
    assert!(left.is_empty(), "pins left in {}: {left:?}", pins.display());
}

/// A first start that fails between the load and the attach (native XDP
/// refused: the veth's peer has an MTU native XDP cannot take) leaves the
/// node as it was: no map pinned, though the load pins every map under its
/// name on a node without pins, and the forwarding setting its NAT VIP
/// switched on at the fill put back. Else the next start would adopt the
/// maps, take the node for one with a data plane, and leave its program
/// forwarding for no lbd when it failed.
#[test]
fn a_first_start_whose_attach_fails_leaves_nothing_pinned_and_forwarding_as_it_was() {
    let mut lab = lab(1);
    let a = lab.lbs[0].clone();
    assert!(!lab.xdp_attached(&a).expect("ip link"), "a fresh node");
    // The switch side of a's veth (see `Lab::add_host`): above a page, so
    // the kernel refuses native XDP on a's eth0 ("Peer MTU is too large").
    let out = Command::new("ip")
        .args([
            "-n",
            &format!("{}-sw", lab.prefix),
            "link",
            "set",
            &format!("p-{}", a.name),
            "mtu",
            "9000",
        ])
        .output()
        .expect("ip");
    assert!(out.status.success(), "{out:?}");
    let forwarding = || {
        let path = "/proc/sys/net/ipv4/conf/eth0/forwarding";
        lb_tests::lab::in_netns(&a.netns, move || std::fs::read_to_string(path))
            .expect("netns")
            .expect("read forwarding")
            .trim()
            .to_owned()
    };
    assert_eq!(
        forwarding(),
        "0",
        "the lab's LB nodes start with forwarding off"
    );
    let config = format!(
        "xdp_mode = \"native\"\n{}\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n",
        lab.lbd_config_for(&["b1"], "forwarding = \"nat\"\n")
    );
    let error = lab
        .start_lbd_on(&a, "lbd-a", &config)
        .expect_err("native XDP must be refused on this veth");
    let log = lab.log("lbd-a");
    assert!(
        log.contains("forwarding"),
        "the fill switched it on:\n{error:#}"
    );
    assert!(!lab.xdp_attached(&a).expect("ip link"), "attached:\n{log}");
    let pins = lab.pin_dir_of(&a);
    let left = pinned_under(&pins);
    assert!(
        left.is_empty(),
        "pins left in {}: {left:?}\n{log}",
        pins.display()
    );
    assert_eq!(forwarding(), "0", "forwarding left on:\n{log}");
}
