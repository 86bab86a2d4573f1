//! `bind` lines as VIPs: wildcard binds placed by keepalived or `--vip`,
//! address families, port ranges, and the bind options lbd does not carry.

use super::*;
use crate::config::CheckType;

#[test]
fn a_wildcard_bind_without_keepalived_takes_its_address_from_vip() {
    // (The servers speak TLS: lbd cannot terminate it.)
    let haproxy = "frontend f\n  mode tcp\n  bind :443 ssl crt /etc/ssl/x.pem\n  default_backend b\nbackend b\n  server s1 198.18.0.11:443 ssl\n";
    assert_eq!(
        refused(&[("haproxy.cfg", haproxy)], &on_eth0()),
        "haproxy.cfg:3: bind :443 names no address and no keepalived virtual_ipaddress gives one: pass --vip ADDRESS:443/tcp"
    );
    let options = Options {
        vips: vec![vip("198.18.0.100:443/tcp")],
        ..on_eth0()
    };
    let imported = ok(&[("haproxy.cfg", haproxy)], &options);
    let vip = &imported.config.vips[0];
    assert_eq!((vip.address, vip.port), (ip("198.18.0.100"), 443));
    // Not checked in HAProxy: not checked by lbd.
    assert_eq!(vip.health.check, CheckType::None);
    assert!(imported.text.contains("HAProxy terminates TLS here"));
    // Without keepalived nor --interface, the interface is asked for.
    let options = Options {
        vips: vec![super::vip("198.18.0.100")],
        ..Options::default()
    };
    assert!(refused(&[("haproxy.cfg", haproxy)], &options).contains("pass --interface NAME"));
    // A --vip no service takes is an error, not silently dropped.
    let options = Options {
        vips: vec![
            super::vip("198.18.0.100:443/tcp"),
            super::vip("198.18.0.101:80/tcp"),
        ],
        ..on_eth0()
    };
    assert_eq!(
        refused(&[("haproxy.cfg", haproxy)], &options),
        "--vip 198.18.0.101:80/tcp: no service of the sources takes it (they all have an address, or none has its port)"
    );
}

#[test]
fn an_ipv6_family_bind_takes_ipv6_addresses() {
    let text = tcp_haproxy("listen tls6\n  bind ipv6@:443\n  server s1 2001:2::51:443 check\n");
    let options = Options {
        vips: vec![vip("2001:2::100")],
        ..on_eth0()
    };
    let imported = ok(&[("h.cfg", &text)], &options);
    assert_eq!(imported.config.vips[0].address, ip("2001:2::100"));
    // `v6only` keeps IPv4 out: an IPv4 --vip is not taken.
    let text = text.replace("ipv6@:443", "udp6@:443 v6only");
    let options = Options {
        vips: vec![vip("198.18.0.100")],
        ..on_eth0()
    };
    assert!(refused(&[("h.cfg", &text)], &options).contains("names no address"));
}

#[test]
fn bind_options_lbd_does_not_carry_over_are_noted() {
    // /tmp/audit-config/t2 of the audit.
    let text = "frontend web\n    mode tcp\n    bind 198.18.0.100:80 accept-proxy interface eth1 mss 1400 transparent namespace blue maxconn 100 v4v6\n    default_backend web\nbackend web\n    server w1 198.18.0.11:80 check\n";
    let imported = ok(&[("h.cfg", text)], &on_eth0());
    assert_eq!(imported.config.vips[0].address, ip("198.18.0.100"));
    for needle in [
        "h.cfg:3: WARNING: bind option accept-proxy: HAProxy read the PROXY protocol header the front sends",
        "h.cfg:3: bind option interface eth1: HAProxy accepted only on that interface",
        "h.cfg:3: bind option mss 1400: HAProxy set the TCP MSS",
        "h.cfg:3: bind option transparent: HAProxy accepted for an address not its own",
        "h.cfg:3: bind option namespace blue: HAProxy listened in that network namespace",
        "h.cfg:3: bind option maxconn 100: not carried over",
    ] {
        assert!(
            has_note(&imported, needle),
            "no {needle:?} in {:#?}",
            imported.notes
        );
    }
    assert!(!has_note(&imported, "v4v6"), "{:#?}", imported.notes);
    // Options with a value take it (not read as an option of its own).
    let valued = text.replace(
        "accept-proxy interface eth1 mss 1400 transparent namespace blue maxconn 100 v4v6",
        "idle-ping 30s cc bbr tcp-ss 1 nbconn 4",
    );
    let imported = ok(&[("h.cfg", &valued)], &on_eth0());
    for needle in [
        "bind option idle-ping 30s: not carried over",
        "bind option cc bbr: not carried over",
        "bind option tcp-ss 1: not carried over",
        "bind option nbconn 4: not carried over",
    ] {
        assert!(
            has_note(&imported, needle),
            "no {needle:?} in {:#?}",
            imported.notes
        );
    }
    for value in [
        "bind option 30s",
        "bind option bbr",
        "bind option 1:",
        "bind option 4:",
    ] {
        assert!(
            !has_note(&imported, value),
            "{value:?} in {:#?}",
            imported.notes
        );
    }
    // TLS options are said by the one note on `ssl`.
    let tls = text.replace(
        "accept-proxy interface eth1 mss 1400 transparent namespace blue maxconn 100 v4v6",
        "ssl crt /etc/ssl/x.pem alpn h2,http/1.1 default-crt /etc/ssl/y.pem ktls on ech /etc/ech",
    )
    // (Servers of plain TCP behind a TLS bind are refused.)
    .replace("198.18.0.11:80 check", "198.18.0.11:80 ssl check");
    let imported = ok(&[("h.cfg", &tls)], &on_eth0());
    let bind_notes: Vec<&String> = imported
        .notes
        .iter()
        .filter(|n| n.starts_with("h.cfg:3:"))
        .collect();
    assert_eq!(bind_notes.len(), 1, "{bind_notes:#?}");
    assert!(bind_notes[0].contains("HAProxy terminates TLS here"));
}

#[test]
fn a_bind_port_range_is_a_vip_per_port() {
    let haproxy = tcp_haproxy(
        "listen web\n  bind 198.18.0.100:8000-8002,198.18.0.100:9000\n  server a 198.18.0.11\n",
    );
    let imported = ok(&[("h.cfg", &haproxy)], &with_nat());
    let ports: Vec<u16> = imported.config.vips.iter().map(|v| v.port).collect();
    assert_eq!(ports, [8000, 8001, 8002, 9000]);
    let wide = haproxy.replace("8000-8002", "8000-9000");
    assert_eq!(
        refused(&[("h.cfg", &wide)], &with_nat()),
        "h.cfg:5: bind 198.18.0.100:8000-9000: 1001 ports; lbd has one VIP per port and the import writes at most 64 for one range: split it or write the [[vip]]s yourself"
    );
    let backwards = haproxy.replace("8000-8002", "8002-8000");
    assert_eq!(
        refused(&[("h.cfg", &backwards)], &with_nat()),
        "h.cfg:5: bind 198.18.0.100:8002-8000: \"8002-8000\" is not a range of ports"
    );
}

#[test]
fn a_wildcard_bind_leaves_an_address_another_frontend_binds_to_it() {
    let haproxy = tcp_haproxy("frontend all\n  bind *:80\n  default_backend b\nfrontend five\n  bind 198.18.0.5:80\n  default_backend c\nbackend b\n  server a 198.18.0.11:80\nbackend c\n  server x 198.18.0.21:80\n");
    let keepalived = "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {\n    198.18.0.5\n    198.18.0.100\n  }\n}\n";
    let imported = ok(
        &[("h.cfg", &haproxy), ("k.conf", keepalived)],
        &Options::default(),
    );
    let vips: Vec<_> = imported
        .config
        .vips
        .iter()
        .map(|v| (v.address, weights(v)))
        .collect();
    assert_eq!(
        vips,
        [
            (ip("198.18.0.100"), vec![(ip("198.18.0.11"), 100)]),
            (ip("198.18.0.5"), vec![(ip("198.18.0.21"), 100)]),
        ]
    );
    assert!(has_note(&imported, "h.cfg:5: bind *:80 of frontend all does not take 198.18.0.5:80/tcp: frontend five binds it explicitly (bind 198.18.0.5:80 at h.cfg:8)"), "{:#?}", imported.notes);
    // Also for a --vip.
    let options = Options {
        vips: vec![vip("198.18.0.5:80/tcp"), vip("198.18.0.100:80/tcp")],
        ..on_eth0()
    };
    let imported = ok(&[("h.cfg", &haproxy)], &options);
    assert_eq!(imported.config.vips.len(), 2);
}
