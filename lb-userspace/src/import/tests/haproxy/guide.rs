//! The keepalived + HAProxy pair of the usual guide, imported whole: the
//! VIP, its checks and weights, and the VRRP instance moving it.

use std::time::Duration;

use super::*;
use crate::config::{CheckType, Protocol};
use lb_common::Mode;

#[test]
fn the_guide_pair_becomes_a_vip_with_http_checks_and_a_vrrp_instance() {
    let imported = ok(
        &[("haproxy.cfg", HAPROXY), ("keepalived.conf", KEEPALIVED)],
        &Options::default(),
    );
    let config = &imported.config;
    assert_eq!(config.interface, "eth0");
    assert_eq!(config.vips.len(), 1);
    let vip = &config.vips[0];
    assert_eq!(
        (vip.address, vip.port, vip.protocol),
        (ip("198.18.0.100"), 80, Protocol::Tcp)
    );
    assert_eq!(vip.forwarding, Mode::DsrL2);
    assert_eq!(vip.health.check, CheckType::Http);
    assert_eq!(vip.health.path, "/health");
    assert_eq!(vip.health.expect_status, 200);
    assert_eq!(vip.health.interval, Duration::from_secs(2));
    assert_eq!(vip.health.fast_interval, Duration::from_secs(2));
    assert_eq!(vip.health.timeout, Duration::from_secs(1));
    assert_eq!((vip.health.rise, vip.health.fall), (2, 3));
    // Weights 1 and 2 keep their ratio; the backup keeps its weight and
    // stands by while the others take flows.
    assert_eq!(
        weights(vip),
        [
            (ip("198.18.0.11"), 100),
            (ip("198.18.0.12"), 200),
            (ip("198.18.0.13"), 100)
        ]
    );
    assert_eq!(backups(vip), [ip("198.18.0.13")]);
    assert!(vip
        .backends
        .iter()
        .all(|b| b.mac.is_none() && b.port.is_none()));
    // The backup's own checks differ: its own table.
    let backup = vip.backends[2].health.as_ref().expect("own health");
    assert_eq!(
        (backup.interval, backup.timeout, backup.fall),
        (Duration::from_millis(500), Duration::from_millis(500), 2)
    );
    assert_eq!(config.vrrp.len(), 1);
    let vrrp = &config.vrrp[0];
    assert_eq!((vrrp.vrid, vrrp.priority), (51, 101));
    assert_eq!(vrrp.advert_interval, Duration::from_secs(1));
    assert_eq!(vrrp.addresses, [ip("198.18.0.100")]);
    assert_eq!(vrrp.track_dataplane, 2);
    let text = &imported.text;
    for expected in [
        "address = \"198.18.0.100\"  # keepalived.conf:23 (virtual_ipaddress 198.18.0.100/24 dev eth0) + haproxy.cfg:13 (bind *:80)",
        "interval_ms = 2000  ",
        "# haproxy.cfg:20 (inter 2s)",
        "# NOTE haproxy.cfg:7: WARNING: frontend http_front is in mode http",
        "# NOTE haproxy.cfg:17: balance roundrobin: lbd balances with Maglev",
        "# haproxy.cfg:22: takes new flows only while no other backend can",
        "# NOTE keepalived.conf:13: state MASTER",
        "timeout client 50s",
        "vrid = 51",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
    assert!(imported.notes.iter().any(|n| n.contains("authentication")));
}
