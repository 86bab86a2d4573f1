//! The IPVS setup of the keepalived guides, imported whole: each
//! virtual_server's mode, weights and checks, and the VRRP instance.

use std::time::Duration;

use super::*;
use crate::config::{CheckType, Protocol};
use lb_common::Mode;

#[test]
fn ipvs_services_keep_their_modes_weights_and_checks() {
    let options = Options {
        nat_source: vec![ip("198.18.0.50")],
        ..Options::default()
    };
    let imported = ok(&[("keepalived.conf", IPVS)], &options);
    let config = &imported.config;
    assert_eq!(config.interface, "eth1");
    let dr = &config.vips[0];
    assert_eq!(
        (dr.address, dr.port, dr.forwarding),
        (ip("198.18.0.100"), 80, Mode::DsrL2)
    );
    assert_eq!(
        weights(dr),
        [(ip("198.18.0.11"), 300), (ip("198.18.0.12"), 100)]
    );
    assert_eq!(dr.health.check, CheckType::Tcp);
    assert_eq!(dr.health.interval, Duration::from_secs(6));
    assert_eq!(dr.health.timeout, Duration::from_secs(3));
    assert_eq!(dr.health.fast_interval, Duration::from_secs(1));
    assert_eq!((dr.health.rise, dr.health.fall), (1, 3));
    // The second server's default retry: its own table.
    assert_eq!(dr.backends[1].health.as_ref().map(|h| h.fall), Some(2));
    let tun = &config.vips[1];
    assert_eq!((tun.protocol, tun.forwarding), (Protocol::Udp, Mode::Ipip));
    assert_eq!(weights(tun), [(ip("198.18.0.21"), 0)]);
    let nat = &config.vips[2];
    assert_eq!((nat.port, nat.forwarding), (8080, Mode::Nat));
    assert_eq!(nat.backends[0].port, Some(80));
    assert_eq!(nat.health.check, CheckType::Http);
    assert_eq!(
        (nat.health.path.as_str(), nat.health.expect_status),
        ("/status", 204)
    );
    assert_eq!(
        (nat.health.interval, nat.health.timeout, nat.health.fall),
        (Duration::from_secs(10), Duration::from_secs(2), 5)
    );
    let vrrp = &config.vrrp[0];
    assert_eq!((vrrp.vrid, vrrp.priority, vrrp.preempt), (60, 90, false));
    assert_eq!(vrrp.advert_interval, Duration::from_millis(100));
    // keepalived clears preempt_delay with nopreempt (vrrp.c).
    assert_eq!(vrrp.preempt_delay, Duration::ZERO);
    assert_eq!(vrrp.unicast_peers, [ip("198.18.0.3")]);
    // The address the peer's unicast_peer lists: adverts go from it.
    assert_eq!(vrrp.unicast_src_ip, Some(ip("198.18.0.2")));
    assert!(imported.text.contains("unicast_src_ip = \"198.18.0.2\""));
    assert_eq!(
        vrrp.addresses,
        [ip("198.18.0.100"), ip("198.18.0.101"), ip("198.18.0.50")]
    );
    assert_eq!(vrrp.track_interface, 30);
    assert_eq!(
        vrrp.notify.as_deref(),
        Some(std::path::Path::new("/etc/keepalived/notify.sh"))
    );
    let text = &imported.text;
    for expected in [
        "# keepalived.conf:27 (lb_kind DR)",
        "keepalived.conf:19: track_interface eth2: lbd tracks only the interface it serves on",
        "# keepalived.conf:9 (unicast_src_ip 198.18.0.2)",
        "keepalived.conf:26: lb_algo wrr: lbd balances with Maglev",
        "lb_kind TUN: lbd's ipip mode",
        "notify /etc/keepalived/notify.sh: lbd runs it as `notify STATE VRID",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
    // IPVS persistence is lbd's source affinity, noted where it differs.
    assert_eq!(config.vips[0].affinity, lb_common::Affinity::Source);
    assert_eq!(config.vips[2].affinity, lb_common::Affinity::Connection);
    assert_eq!(
        affinity_lines(&imported),
        ["affinity = \"source\" # keepalived.conf:28 (persistence_timeout 50)"]
    );
    assert!(has_note(
        &imported,
        "keepalived.conf:28: persistence_timeout 50: IPVS kept each client on its real server until 50 s after its last connection"
    ));
    assert!(
        !imported.notes.iter().any(|n| n.contains("unicast_src_ip")),
        "mapped, not noted: {:?}",
        imported.notes
    );
}
