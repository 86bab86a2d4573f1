//! lbd's NAT runtime on a VRRP pair (needs root): the NAT address moves
//! with the VIPs (taken by the master, released by `--release-vips` and by
//! a clean stop), forwarding is switched on for the attached interface
//! while a NAT VIP exists and restored at a clean stop, the redirect map
//! gets the node's interfaces, and status shows the mode and NAT address.

use std::time::{Duration, Instant};

use lb_tests::{
    lab::{Host, Lab, LabSpec},
    support::{status_on, wait_until},
};

const NAT_ADDRESS: &str = "198.18.0.150";

/// Node `node`'s per-interface IPv4 forwarding switch of eth0.
fn forwarding(node: &Host) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &node.netns])
        .args(["sysctl", "-n", "net.ipv4.conf.eth0.forwarding"])
        .output()
        .expect("sysctl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn set_forwarding_off(node: &Host) {
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &node.netns])
        .args(["sysctl", "-qw", "net.ipv4.conf.eth0.forwarding=0"])
        .status()
        .expect("sysctl");
    assert!(status.success());
}

fn holds_nat_address(lab: &Lab, node: &Host) -> bool {
    lab.addresses_of(node)
        .expect("ip addr")
        .contains(&format!("{NAT_ADDRESS}/32"))
}

/// The lab's HA config with its VIP in NAT mode behind the node's NAT
/// address (which the default VRRP address list then moves too).
fn nat_config(lab: &Lab, node: &Host, peer: &Host, priority: u8) -> String {
    let config = lab
        .ha_config(node, peer, &["b1"], priority, true)
        .expect("config");
    let config = config.replacen("port = 80\n", "port = 80\nforwarding = \"nat\"\n", 1);
    assert!(config.contains("forwarding = \"nat\""), "{config}");
    config.replacen(
        "\n[[vip]]",
        &format!("\n[nat]\nsource_ipv4 = \"{NAT_ADDRESS}\"\n\n[[vip]]"),
        1,
    )
}

#[test]
fn the_nat_address_moves_with_vrrp_and_forwarding_follows_nat_vips() {
    let mut lab = Lab::start_spec(LabSpec {
        lbs: 2,
        backends: 1,
        static_vip: false,
    })
    .expect("lab");
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    set_forwarding_off(&a);
    set_forwarding_off(&b);
    let config_a = nat_config(&lab, &a, &b, 150);
    let config_b = nat_config(&lab, &b, &a, 100);
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd on lb");
    lab.start_lbd_on(&b, "lbd-b", &config_b)
        .expect("lbd on lb2");

    // The master holds the VIP and the NAT address; the backup neither.
    wait_until(
        "lb to hold the NAT address",
        Duration::from_secs(10),
        || holds_nat_address(&lab, &a) && lab.holds_vip(&a).expect("ip addr"),
    );
    wait_until("lb2 to be backup", Duration::from_secs(5), || {
        status_on(&lab, &b).vrrp[0].state.to_string() == "backup"
    });
    assert!(
        !holds_nat_address(&lab, &b),
        "{}",
        lab.addresses_of(&b).unwrap()
    );

    // Both run a NAT VIP: forwarding on for eth0, the redirect map filled.
    for (node, log) in [(&a, "lbd-a"), (&b, "lbd-b")] {
        wait_until("forwarding on eth0", Duration::from_secs(10), || {
            forwarding(node) == "1"
        });
        wait_until(
            "eth0 among the redirect targets",
            Duration::from_secs(10),
            || {
                lab.log(log)
                    .contains("interface added to the NAT redirect targets")
            },
        );
    }
    let status = status_on(&lab, &a);
    let vip = &status.vips[0];
    assert_eq!(vip.mode, "nat");
    let nat = vip.nat.as_ref().expect("NAT status");
    assert_eq!(nat.source.to_string(), NAT_ADDRESS);
    assert_eq!((nat.port_min, nat.port_max), (1024, 65_535));
    let text = lab.lbctl_on(&a, &["status"]).expect("lbctl status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("NAT from {NAT_ADDRESS} ports 1024-65535")),
        "{text}"
    );

    // A restart-style stop keeps the addresses; the unit's
    // `--release-vips` then takes the NAT address away too, and the
    // backup takes both over.
    lab.terminate("lbd-a").expect("SIGTERM lbd-a");
    assert!(
        holds_nat_address(&lab, &a),
        "a restart stop keeps addresses"
    );
    let out = lab
        .lbd_offline(&a, "lbd-a", "--release-vips")
        .expect("lbd --release-vips");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !holds_nat_address(&lab, &a),
        "{}",
        lab.addresses_of(&a).unwrap()
    );
    assert!(!lab.holds_vip(&a).unwrap());
    let since = Instant::now();
    wait_until(
        "lb2 to take the NAT address",
        Duration::from_secs(5),
        || holds_nat_address(&lab, &b) && lab.holds_vip(&b).expect("ip addr"),
    );
    eprintln!("lb2 took the VIP and NAT address in {:?}", since.elapsed());

    // A clean stop (SIGINT) gives both addresses up and restores the
    // forwarding switch lbd turned on; a restart stop left it on.
    lab.interrupt("lbd-b").expect("SIGINT lbd-b");
    assert!(
        !holds_nat_address(&lab, &b),
        "{}",
        lab.addresses_of(&b).unwrap()
    );
    assert_eq!(forwarding(&b), "0", "{}", lab.log("lbd-b"));
    assert_eq!(forwarding(&a), "1");
}
