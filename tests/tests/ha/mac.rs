//! The master's interface takes another MAC while lbd runs (a bond's
//! `fail_over_mac`, `ip link set dev eth0 address`): its VRRP instance
//! announces the VIP again with the new MAC at once, so the client's
//! neighbour entry (which still points at the old MAC, where nothing
//! answers now) moves without waiting for the kernel's own reprobing.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use lb_tests::{
    lab::{http_get, Lab, HTTP_PORT, VIP4},
    support::ip,
};
use lb_userspace::vrrp::State;

use crate::{
    observe::vrrp_state,
    setup::{elected_pair, lab},
};

/// A locally administered MAC no lab host has.
const NEW_MAC: &str = "02:42:c6:12:00:fd";
/// Well under the kernel's own recovery (a reachable entry is kept for
/// 15–45 s, then 5 s of delay before it reprobes).
const ANNOUNCED_WITHIN: Duration = Duration::from_secs(3);

/// The MAC the client's neighbour entry for the VIP holds now.
fn client_neighbour_mac(lab: &Lab) -> String {
    let out = Command::new("ip")
        .args(["-n", &lab.client.netns, "neigh", "show", &VIP4.to_string()])
        .output()
        .expect("ip neigh");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|word| *word != "lladdr")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_master_announces_the_vip_with_its_new_mac() {
    let mut lab = lab(1);
    let (a, _b) = elected_pair(&mut lab, &["b1"], true);
    let url = format!("http://{VIP4}:{HTTP_PORT}/");
    let (code, _) = http_get(&lab.client.netns, &url).expect("a request before the change");
    assert_eq!(code, 200);
    let before = client_neighbour_mac(&lab);
    assert!(!before.is_empty() && before != NEW_MAC, "{before}");

    ip(&[
        "-n", &a.netns, "link", "set", "dev", "eth0", "address", NEW_MAC,
    ]);
    let changed = Instant::now();
    while client_neighbour_mac(&lab) != NEW_MAC {
        assert!(
            changed.elapsed() < ANNOUNCED_WITHIN,
            "the client still sends the VIP's traffic to {} {:?} after the change",
            client_neighbour_mac(&lab),
            changed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match http_get(&lab.client.netns, &url) {
            Ok((200, _)) => break,
            other => assert!(Instant::now() < deadline, "through the VIP: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(vrrp_state(&lab, &a), State::Master);
    let log = lab.log("lbd-a");
    assert!(
        log.contains("announcing the VIPs with the new one"),
        "{log}"
    );
}
