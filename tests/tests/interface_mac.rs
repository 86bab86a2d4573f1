//! The interface's MAC changed under a running lbd (a bond's
//! `fail_over_mac`, `ip link set dev eth0 address`): the data plane
//! balances only frames addressed to the interface's MAC, so lbd follows
//! the new one. Needs root.

use std::time::{Duration, Instant};

use lb_tests::{
    lab::{http_get, Lab, HTTP_PORT, VIP4},
    support::ip,
};

/// A locally administered MAC no lab host has.
const NEW_MAC: &str = "02:42:c6:12:00:fe";
/// What lbd must notice within (it looks at the link every second).
const NOTICE: Duration = Duration::from_secs(10);
/// Requests after the change, each a new connection.
const REQUESTS: u32 = 200;

/// A GET of `/` through the IPv4 VIP from the client: the backend's name.
fn get_vip4(lab: &Lab) -> anyhow::Result<String> {
    let (code, body) = http_get(&lab.client.netns, &format!("http://{VIP4}:{HTTP_PORT}/"))?;
    anyhow::ensure!(code == 200, "status {code}");
    Ok(body.trim().to_owned())
}

/// The LB's eth0 takes another MAC while lbd runs, and its neighbours
/// learn it (as a gratuitous ARP would tell them): requests through the
/// VIP, now in frames addressed to the new MAC, are balanced again
/// within a link check or two, rather than passed up to the LB's own
/// stack (which refuses them: nothing listens there), while everything
/// else said all was well.
#[test]
fn lbd_follows_a_mac_changed_under_it() {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("backends");
    let config = lab.lbd_config_for(&["b1", "b2"], "");
    lab.start_lbd(&config).expect("lbd");
    let first = get_vip4(&lab).expect("a request through the VIP before the change");
    assert!(first.starts_with('b'), "{first}");

    ip(&[
        "-n",
        &lab.lb.netns,
        "link",
        "set",
        "dev",
        "eth0",
        "address",
        NEW_MAC,
    ]);
    // The client sends to the VIP and the LB's address at the new MAC;
    // the backends answer the LB's health checks there.
    let lb_address = lab.lb.ipv4.to_string();
    let vip = VIP4.to_string();
    let mut neighbours = vec![(lab.client.netns.clone(), vip.clone())];
    neighbours.push((lab.client.netns.clone(), lb_address.clone()));
    for backend in &lab.backends {
        neighbours.push((backend.netns.clone(), lb_address.clone()));
    }
    for (netns, address) in &neighbours {
        ip(&[
            "-n",
            netns,
            "neigh",
            "replace",
            address,
            "lladdr",
            NEW_MAC,
            "dev",
            "eth0",
            "nud",
            "reachable",
        ]);
    }

    let deadline = Instant::now() + NOTICE;
    while let Err(error) = get_vip4(&lab) {
        assert!(
            Instant::now() < deadline,
            "no request through the VIP succeeded within {NOTICE:?} of the MAC change: {error}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And it stays so: every request of a run is balanced, over both
    // backends (each new connection's source port picks one, half and
    // half: 200 all on one backend has odds of 2^-199).
    let mut served = std::collections::BTreeMap::<String, u32>::new();
    for n in 0..REQUESTS {
        let backend =
            get_vip4(&lab).unwrap_or_else(|e| panic!("request {n} after the change: {e}"));
        *served.entry(backend).or_default() += 1;
    }
    assert_eq!(
        served.keys().map(String::as_str).collect::<Vec<_>>(),
        ["b1", "b2"],
        "both backends serve after the change: {served:?}"
    );
    let log = lab.log("lbd");
    assert!(
        log.contains("the interface's MAC changed") && log.contains(NEW_MAC),
        "lbd says it followed the MAC:\n{log}"
    );
}
