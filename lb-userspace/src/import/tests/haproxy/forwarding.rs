//! The forwarding mode a proxy's VIP gets (dsr-l2 where the ports match,
//! nat with a NAT address where they differ) and the idle timeouts that
//! carry over with it.

use std::time::Duration;

use super::*;
use crate::config::CheckType;
use lb_common::Mode;

#[test]
fn a_tcp_listen_on_other_ports_needs_nat_and_its_address_moves_with_the_vip() {
    let haproxy = "listen pgbouncer
    bind *:5432
    mode tcp
    balance leastconn
    option pgsql-check user postgres
    default-server inter 1s fall 2 rise 1
    server pgb1 198.19.2.10:6432 check
    server pgb2 198.19.2.11:6432 check weight 50
    server pgb3 198.19.2.12:6432 check disabled
";
    let error = refused(
        &[("haproxy.cfg", haproxy), ("keepalived.conf", KEEPALIVED)],
        &Options::default(),
    );
    assert_eq!(
        error,
        "haproxy.cfg:1: listen pgbouncer needs lbd's NAT mode (backends listen on other ports than the VIP's 5432), which needs a NAT address: pass --nat-source ADDRESS (an address of this node's network, moved with the VIPs)"
    );
    let options = Options {
        nat_source: vec![ip("198.18.0.50")],
        ..Options::default()
    };
    let imported = ok(
        &[("haproxy.cfg", haproxy), ("keepalived.conf", KEEPALIVED)],
        &options,
    );
    let vip = &imported.config.vips[0];
    assert_eq!((vip.port, vip.forwarding), (5432, Mode::Nat));
    // HAProxy's pgsql-check speaks the protocol: so does lbd's.
    assert_eq!(vip.health.check, CheckType::Pgsql);
    assert_eq!(vip.health.user.as_deref(), Some("postgres"));
    assert_eq!(
        (vip.health.interval, vip.health.rise, vip.health.fall),
        (Duration::from_secs(1), 1, 2)
    );
    assert_eq!(
        vip.backends.iter().map(|b| b.port).collect::<Vec<_>>(),
        [Some(6432); 3]
    );
    assert_eq!(
        weights(vip).iter().map(|w| w.1).collect::<Vec<_>>(),
        [100, 5000, 0]
    );
    assert_eq!(imported.config.nat.source_ipv4, Some(ip("198.18.0.50")));
    assert_eq!(
        imported.config.vrrp[0].addresses,
        [ip("198.18.0.100"), ip("198.18.0.50")]
    );
    assert!(
        imported.notes.iter().any(|n| n
            .contains("option pgsql-check user postgres: lbd's pgsql check sends a StartupMessage as postgres")),
        "{:?}",
        imported.notes
    );
    // Forced to dsr-l2, the port difference is refused at the server.
    let forced = Options {
        forwarding: Some(Mode::DsrL2),
        ..Options::default()
    };
    assert_eq!(
        refused(&[("haproxy.cfg", haproxy), ("keepalived.conf", KEEPALIVED)], &forced),
        "haproxy.cfg:7: pgb1 listens on port 6432, the VIP on 5432: lbd's dsr-l2 mode keeps the port; use --forwarding nat (with --nat-source)"
    );
}

/// HAProxy's idle timeouts carry over: the longer of `timeout client`
/// and `timeout server` (or `timeout tunnel`) becomes the node's
/// `tcp_idle_timeout_s` and, for a NAT VIP, `[nat]
/// tcp_established_timeout_s` with a margin, each said in a NOTE.
#[test]
fn haproxy_idle_timeouts_become_lbds_for_dsr_and_nat() {
    let haproxy = "defaults
    mode tcp
    timeout connect 5s
    timeout client 8h
    timeout server 1h

listen pg
    bind *:5432
    server pgb1 198.19.2.10:6432 check
";
    let options = Options {
        nat_source: vec![ip("198.18.0.50")],
        ..Options::default()
    };
    let imported = ok(
        &[("haproxy.cfg", haproxy), ("keepalived.conf", KEEPALIVED)],
        &options,
    );
    let config = &imported.config;
    assert_eq!(config.vips[0].forwarding, Mode::Nat);
    assert_eq!(config.tcp_idle_timeout, Duration::from_secs(28_800));
    assert_eq!(
        config.nat.timeouts.tcp_established,
        Duration::from_secs(28_800 + 240)
    );
    let text = &imported.text;
    for expected in [
        "tcp_idle_timeout_s = 28800  # haproxy.cfg:4 (timeout client 8h)",
        "tcp_established_timeout_s = 29040  # haproxy.cfg:4 (timeout client 8h) + 240 s",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
    let notes = &imported.notes;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("a NAT VIP's translations are not held by tcp_idle_timeout_s")),
        "{notes:?}"
    );
    assert!(
        !notes
            .iter()
            .any(|n| n.contains("not carried over") && n.contains("timeout client")),
        "{notes:?}"
    );
    // A backend's timeout tunnel wins over client and server (DSR here).
    let haproxy = "defaults\n    mode tcp\n    timeout client 30m\n\
        frontend f\n    bind *:5432\n    default_backend b\n\
        backend b\n    timeout tunnel 2h\n    server s1 198.18.0.11:5432 check\n";
    let imported = ok(
        &[("haproxy.cfg", haproxy), ("keepalived.conf", KEEPALIVED)],
        &Options::default(),
    );
    assert_eq!(imported.config.vips[0].forwarding, Mode::DsrL2);
    assert_eq!(imported.config.tcp_idle_timeout, Duration::from_secs(7200));
    assert_eq!(
        imported.config.nat.timeouts.tcp_established,
        Duration::from_secs(7440),
        "no NAT VIP: [nat] untouched"
    );
}
