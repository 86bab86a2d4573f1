//! The VIP addresses on the master's interface: put back when something
//! removes them while it is master, and an interface's own address (with
//! its subnet's prefix) listed as a VRRP address refused, never removed.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use lb_tests::{
    lab::{Lab, VIP4},
    support::ip_on,
};
use lb_userspace::vrrp::State;

use crate::{
    observe::{vrrp_state, wait_for_vip},
    setup::{elected_pair, lab},
};

/// A VIP removed from the master's interface behind lbd's back (a link
/// bounce drops IPv6 ones, networkd may drop any) is back within 2 s, and
/// the node stays master.
#[test]
fn a_vip_removed_from_the_master_is_put_back() {
    let mut lab = lab(1);
    let (a, b) = elected_pair(&mut lab, &["b1"], true);
    for _ in 0..2 {
        ip_on(&a, &["addr", "del", &format!("{VIP4}/32"), "dev", "eth0"]);
        assert!(!lab.holds_vip(&a).expect("ip addr"));
        let took = wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(2));
        eprintln!("VIP back after {took:?}");
    }
    assert_eq!(vrrp_state(&lab, &a), State::Master);
    assert_eq!(vrrp_state(&lab, &b), State::Backup);
    assert!(
        lab.log("lbd-a").contains("adding them back"),
        "{}",
        lab.log("lbd-a")
    );
}

/// A VRRP address that is already the interface's own, with its subnet's
/// prefix: lbd refuses to start, naming it, and neither that attempt nor
/// `lbd --release-vips` takes the address (and its route) away.
#[test]
fn an_interface_address_listed_for_vrrp_is_refused_and_kept() {
    let mut lab = lab(1);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let own = format!("{VIP4}/24");
    ip_on(&a, &["addr", "add", &own, "dev", "eth0"]);
    let config = lab.ha_config(&a, &b, &["b1"], 255, true).expect("config");
    let error = lab
        .start_lbd_on(&a, "lbd-a", &config)
        .expect_err("lbd must refuse an interface address as a VRRP address");
    let error = format!("{error:#}");
    assert!(
        error.contains(&format!("{own} is already an address of eth0")),
        "{error}"
    );
    let held = |lab: &Lab| lab.addresses_of(&a).expect("ip addr").contains(&own);
    assert!(held(&lab), "{}", lab.addresses_of(&a).expect("ip addr"));
    lab.lbd_offline_ok(&a, "lbd-a", "--release-vips");
    assert!(
        held(&lab),
        "--release-vips removed the interface's own address"
    );
    // The address was not touched at all: nothing to wait for, but make
    // sure nothing removes it a moment later either.
    std::thread::sleep(Duration::from_millis(500));
    assert!(held(&lab));
}

/// The unit's stop path after the config was broken (a reload refused it,
/// lbd kept running) and lbd stopped: `lbd --release-vips` cannot read the
/// file, and still takes the VIP off the interface, from the record the
/// lbd that ran left (found in the service's runtime directory, which
/// systemd passes as `$RUNTIME_DIRECTORY`): otherwise both nodes would
/// answer ARP for it once the backup takes over.
#[test]
fn the_stop_path_releases_the_vip_whatever_the_config_has_become() {
    let mut lab = lab(1);
    let (a, _b) = elected_pair(&mut lab, &["b1"], true);
    assert!(lab.holds_vip(&a).expect("ip addr"));
    lab.terminate("lbd-a").expect("SIGTERM");
    assert!(lab.holds_vip(&a).expect("ip addr"), "a restart keeps it");
    let config = lab.dir.join("lbd-a.toml");
    std::fs::write(&config, "interface = [ this is not toml\n").expect("junk config");
    let run_dir = lab
        .admin_socket_of(&a)
        .parent()
        .expect("run dir")
        .to_owned();
    let out = Command::new("ip")
        .args(["netns", "exec", &a.netns])
        .arg(lb_tests::lab::lbd_binary().expect("lbd"))
        .args(["--config", &config.to_string_lossy(), "--release-vips"])
        .env("RUNTIME_DIRECTORY", &run_dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("lbd --release-vips");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the config was not read"), "{stderr}");
    assert!(
        !lab.holds_vip(&a).expect("ip addr"),
        "the VIP is released: {}",
        lab.addresses_of(&a).expect("ip addr")
    );
}
