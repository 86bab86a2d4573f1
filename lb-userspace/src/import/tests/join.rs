//! The files of several formats joined, and what the join decides for
//! all of them: weights scaled into lbd's range, source rules as VIP-scoped
//! ACLs, NAT addresses per family, one port per backend address, VRRP
//! instances moved to `--interface`; and input every format must refuse.

use super::*;
use crate::config::Protocol;
use lb_common::Mode;

#[test]
fn weights_above_lbds_range_are_scaled_together() {
    let text = "virtual_server 198.18.0.201 443 {\n  lb_kind DR\n  real_server 198.18.0.21 443 {\n    weight 20000\n  }\n  real_server 198.18.0.22 443 {\n    weight 5000\n  }\n  real_server 198.18.0.23 443 {\n    weight 1\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &on_eth0());
    assert_eq!(
        weights(&imported.config.vips[0])
            .iter()
            .map(|w| w.1)
            .collect::<Vec<_>>(),
        [10000, 2500, 1]
    );
    assert!(imported
        .text
        .contains("(x10000/20000, scaled down to lbd's range)"));
    assert!(has_note(&imported, "weighs up to 20000, above lbd's 10000"));
    // nginx's weight has no upper bound either.
    let text = "upstream a {\n  server 198.18.0.11:80 weight=30000;\n  server 198.18.0.12:80 weight=10000;\n}\n";
    let options = Options {
        vips: vec![vip("198.18.0.100:80/tcp")],
        ..on_eth0()
    };
    let imported = ok(&[("n.conf", text)], &options);
    assert_eq!(
        weights(&imported.config.vips[0])
            .iter()
            .map(|w| w.1)
            .collect::<Vec<_>>(),
        [10000, 3333]
    );
}

/// The imported ACL rules as "action source", sorted.
fn acl_of(imported: &Imported) -> Vec<String> {
    let mut acl: Vec<String> = imported
        .config
        .guard
        .acl
        .iter()
        .map(|r| format!("{} {}", r.action, r.source))
        .collect();
    acl.sort();
    acl
}

#[test]
fn source_rules_become_vip_scoped_acls_and_the_rest_is_noted() {
    let text = "stream {\n  upstream pg {\n    server 198.18.0.11:5432;\n  }\n  server {\n    listen 198.18.0.100:5432;\n    deny 198.18.10.66;\n    allow 198.18.10.0/24;\n    deny all;\n    proxy_protocol on;\n    ssl_certificate /etc/x.pem;\n    proxy_timeout 10m;\n    proxy_pass pg;\n  }\n}\n";
    let imported = ok(&[("n.conf", text)], &on_eth0());
    let mut acl: Vec<String> = imported
        .config
        .guard
        .acl
        .iter()
        .map(|r| format!("{} {} {}", r.action, r.source, r.scope))
        .collect();
    acl.sort();
    assert_eq!(
        acl,
        [
            "allow 198.18.10.0/24 198.18.0.100:5432/tcp",
            "deny 198.18.10.66/32 198.18.0.100:5432/tcp"
        ]
    );
    for needle in [
        "n.conf:10: WARNING: proxy_protocol on",
        "n.conf:11: WARNING: ssl_certificate /etc/x.pem",
        "proxy_timeout 10m (n.conf:12)",
    ] {
        assert!(
            has_note(&imported, needle),
            "no {needle:?} in {:#?}",
            imported.notes
        );
    }
    let haproxy = tcp_haproxy("listen pg\n  bind 198.18.0.100:5432\n  acl trusted src 198.18.10.0/24 2001:2:10::/48\n  acl bad src 198.18.10.66\n  tcp-request connection reject if !trusted\n  tcp-request content reject if bad\n  tcp-request connection reject if { src_conn_rate gt 10 }\n  server pg1 198.18.0.11:5432 check\n");
    let imported = ok(&[("h.cfg", &haproxy)], &on_eth0());
    let acl = acl_of(&imported);
    assert_eq!(acl, ["allow 198.18.10.0/24", "deny 198.18.10.66/32"]);
    // An allow list of the other family only: that VIP's family is shut.
    let v6 = haproxy.replace("198.18.10.0/24 ", "");
    let imported = ok(&[("h.cfg", &v6)], &on_eth0());
    let acl = acl_of(&imported);
    assert_eq!(acl, ["deny 0.0.0.0/0", "deny 198.18.10.66/32"]);
    assert!(has_note(
        &imported,
        "h.cfg:10: WARNING: tcp-request connection reject if { src_conn_rate gt 10 }"
    ));
}

#[test]
fn nat_sources_are_given_one_per_family() {
    let text = tcp_haproxy("listen pg\n  bind 198.18.0.100:5432\n  server pg1 198.18.0.11:6432\nlisten pg6\n  bind [2001:2::100]:5433\n  server pg1 2001:2::11:6432\n");
    let imported = ok(&[("h.cfg", &text)], &with_nat());
    assert_eq!(imported.config.nat.source_ipv4, Some(ip("198.18.0.50")));
    assert_eq!(imported.config.nat.source_ipv6, Some(ip("2001:2::50")));
    let two_v4 = Options {
        nat_source: vec![ip("198.18.0.50"), ip("198.18.0.51")],
        ..on_eth0()
    };
    assert!(refused(&[("h.cfg", &text)], &two_v4).contains("one NAT address per family"));
    let v4_only = Options {
        nat_source: vec![ip("198.18.0.50")],
        ..on_eth0()
    };
    assert!(refused(&[("h.cfg", &text)], &v4_only)
        .contains("pass --nat-source with an IPv6 address too"));
}

#[test]
fn valid_configurations_are_no_longer_refused() {
    // Named defaults (HAProxy >= 2.4): inherited by name, not the last.
    let text = "defaults tcpdef\n  mode tcp\n  timeout check 700ms\ndefaults httpdef\n  mode http\nlisten pg from tcpdef\n  bind 198.18.0.100:5432\n  server pg1 198.18.0.11:5432 check\n";
    let imported = ok(&[("h.cfg", text)], &on_eth0());
    assert_eq!(
        imported.config.vips[0].health.timeout,
        std::time::Duration::from_millis(700)
    );
    assert!(!has_note(&imported, "mode http"));
    // nginx: no port is 80; a port range is a VIP per port.
    let text = "stream {\n  upstream sip {\n    server 198.18.0.31:5060;\n  }\n  server {\n    listen 198.18.0.100:5060-5062 udp;\n    proxy_pass sip;\n  }\n}\nhttp {\n  upstream web {\n    server 198.18.0.11;\n  }\n  server {\n    listen 198.18.0.101;\n    location / { proxy_pass http://web; }\n  }\n}\n";
    let imported = ok(&[("n.conf", text)], &with_nat());
    let ports: Vec<u16> = imported.config.vips.iter().map(|v| v.port).collect();
    assert_eq!(ports, [5060, 5061, 5062, 80]);
    // A file nginx.conf includes in `stream { }` is read as stream content.
    let main = "events {}\nstream {\n  include /etc/nginx/stream.d/*.conf;\n}\n";
    let dns = "upstream dns {\n  server 198.18.0.53:53;\n}\nserver {\n  listen 198.18.0.100:53 udp;\n  proxy_pass dns;\n}\n";
    let imported = ok(
        &[("nginx.conf", main), ("stream.d/dns.conf", dns)],
        &on_eth0(),
    );
    assert_eq!(imported.config.vips[0].protocol, Protocol::Udp);
    // Alone, its server blocks say it.
    let imported = ok(&[("dns.conf", dns)], &on_eth0());
    assert_eq!(imported.config.vips[0].port, 53);
    // keepalived: `weight N reverse`.
    let text = "vrrp_script chk {\n  script \"pidof haproxy\"\n  weight 20 reverse\n}\nvrrp_instance A {\n  interface eth0\n  virtual_router_id 7\n  virtual_ipaddress {\n    198.18.0.100\n  }\n  track_script {\n    chk\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &Options::default());
    assert_ne!(imported.config.vrrp[0].track_dataplane, 20);
    assert!(has_note(
        &imported,
        "k.conf:12: WARNING: track_script chk (pidof haproxy) has `reverse`"
    ));
}

#[test]
fn two_ports_of_one_backend_address_are_refused_at_the_source() {
    let text = tcp_haproxy("listen pgb\n  bind 198.18.0.100:5432\n  server a 198.18.0.11:6432\n  server b 198.18.0.11:6433\n");
    assert_eq!(
        refused(&[("h.cfg", &text)], &with_nat()),
        "h.cfg:7: b (198.18.0.11:6433) has the address of a (198.18.0.11:6432, h.cfg:6): lbd keys a VIP's backends by address, one port per address; give each backend its own address, or split them over two VIPs"
    );
}

#[test]
fn deep_nesting_is_refused_at_its_line() {
    let text = "http {\n".repeat(5000);
    let error = refused(&[("n.conf", &text)], &on_eth0());
    assert_eq!(
        error,
        "n.conf:65: \"http {\": blocks nested more than 64 deep; no real configuration is"
    );
    let text = "vrrp_instance A {\n".repeat(5000);
    let options = Options {
        format: Some(super::super::Format::Keepalived),
        ..on_eth0()
    };
    assert!(refused(&[("k.conf", &text)], &options).starts_with("k.conf:65: "));
}

#[test]
fn interface_moves_instances_of_other_interfaces_with_a_note() {
    let text = "vrrp_instance VI_EXT {\n  interface eth0\n  virtual_router_id 1\n  virtual_ipaddress {\n    198.18.0.100\n  }\n}\nvrrp_instance VI_INT {\n  interface eth1\n  virtual_router_id 2\n  virtual_ipaddress {\n    198.18.1.100\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &on_eth0());
    assert!(has_note(
        &imported,
        "k.conf:9: WARNING: vrrp_instance VI_INT ran on eth1"
    ));
    assert!(!has_note(&imported, "VI_EXT ran on"));
}

#[test]
fn a_source_rule_said_twice_is_written_once() {
    // One ACL used by two reject rules: one allow rule, not two (which
    // lbd refuses as the same rule listed twice).
    let text = tcp_haproxy("listen pg\n  bind 198.18.0.100:5432\n  acl trusted src 198.18.10.0/24\n  tcp-request connection reject if !trusted\n  tcp-request content reject if !trusted\n  server pg1 198.18.0.11:5432\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(acl_of(&imported), ["allow 198.18.10.0/24"]);
    // nginx: a deny repeated.
    let text = "stream {\n  upstream pg {\n    server 198.18.0.11:5432;\n  }\n  server {\n    listen 198.18.0.100:5432;\n    deny 198.18.66.0/24;\n    deny 198.18.66.0/24;\n    proxy_pass pg;\n  }\n}\n";
    let imported = ok(&[("n.conf", text)], &on_eth0());
    assert_eq!(acl_of(&imported), ["deny 198.18.66.0/24"]);
}

#[test]
fn same_named_allow_lists_of_frontend_and_backend_are_told_apart_by_content() {
    let text = |backend_list: &str| {
        tcp_haproxy(&format!("frontend fe\n  bind 198.18.0.100:5432\n  acl trusted src 198.18.10.0/24\n  tcp-request connection reject if !trusted\n  default_backend be\nbackend be\n  acl trusted src {backend_list}\n  tcp-request content reject if !trusted\n  server pg1 198.18.0.11:5432\n"))
    };
    // Different contents: HAProxy let in only sources in both (their
    // intersection); a union would open the VIP wider, so neither is
    // carried over, with a warning.
    let imported = ok(&[("h.cfg", &text("198.18.11.0/24"))], &on_eth0());
    assert!(acl_of(&imported).is_empty(), "{:?}", acl_of(&imported));
    assert!(
        has_note(
            &imported,
            "h.cfg:7: WARNING: tcp-request connection reject if !trusted: one of several different \"only these sources\" rules (trusted at h.cfg:7, trusted at h.cfg:11)"
        ),
        "{:#?}",
        imported.notes
    );
    // The same contents: one allow list.
    let imported = ok(&[("h.cfg", &text("198.18.10.0/24"))], &on_eth0());
    assert_eq!(acl_of(&imported), ["allow 198.18.10.0/24"]);
    assert!(!has_note(&imported, "one of several"));
}

#[test]
fn a_configuration_lbd_refuses_is_shown_where_it_was_generated() {
    let text = "interface = \"eth0\"  # --interface\n\n[[acl]]\naction = \"deny\"  # h.cfg:3 (deny 198.18.66.0/24)\nsource = \"198.18.66.0/24\"\n\n[[acl]]\naction = \"deny\"  # h.cfg:4 (deny 198.18.66.0/24)\nsource = \"198.18.66.0/24\"\n";
    let error = crate::config::Config::from_toml_str(text, "imported configuration")
        .expect_err("the same rule twice");
    let refused = super::super::refused_by_lbd(text, &error).to_string();
    assert!(
        refused.starts_with(
            "the imported configuration is not one lbd accepts: imported configuration:7:"
        ),
        "{refused}"
    );
    assert!(
        refused.ends_with(
            "; generated there: `[[acl]]` / `action = \"deny\"  # h.cfg:4 (deny 198.18.66.0/24)`"
        ),
        "{refused}"
    );
}

/// keepalived.conf with VI_1 (VRID 51) holding `first` and VI_2 (VRID
/// 52) holding `second`, in VRRPv3.
fn two_instances(first: &str, second: &str) -> String {
    format!("global_defs {{\n  vrrp_version 3\n}}\nvrrp_instance VI_1 {{\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {{\n    {first}\n  }}\n}}\nvrrp_instance VI_2 {{\n  interface eth0\n  virtual_router_id 52\n  virtual_ipaddress {{\n    {second}\n  }}\n}}\n")
}

#[test]
fn the_nat_address_moves_with_the_instance_of_the_nat_vips_that_use_it() {
    // web on VI_1 is DSR (same port); db on VI_2 is NAT (6432).
    let haproxy = tcp_haproxy("frontend web\n  bind 198.18.0.100:80\n  default_backend web\nfrontend db\n  bind 198.18.0.200:5432\n  default_backend pg\nbackend web\n  server w1 198.18.0.11:80\nbackend pg\n  server p1 198.18.0.21:6432\n");
    let keepalived = two_instances("198.18.0.100", "198.18.0.200");
    let options = Options {
        nat_source: vec![ip("198.18.0.50")],
        ..Options::default()
    };
    let imported = ok(&[("h.cfg", &haproxy), ("k.conf", &keepalived)], &options);
    let db = imported
        .config
        .vips
        .iter()
        .find(|v| v.port == 5432)
        .expect("db VIP");
    assert_eq!(db.address, ip("198.18.0.200"));
    assert_eq!(db.forwarding, lb_common::Mode::Nat);
    let addresses: Vec<Vec<IpAddr>> = imported
        .config
        .vrrp
        .iter()
        .map(|v| v.addresses.clone())
        .collect();
    assert_eq!(
        addresses,
        [
            vec![ip("198.18.0.100")],
            vec![ip("198.18.0.200"), ip("198.18.0.50")]
        ]
    );
    // NAT VIPs of both instances on one NAT address: refused, naming both.
    let nat = Options {
        forwarding: Some(lb_common::Mode::Nat),
        ..options
    };
    assert_eq!(
        refused(&[("h.cfg", &haproxy), ("k.conf", &keepalived)], &nat),
        "k.conf:15: NAT VIPs 198.18.0.100 (vrrp_instance VI_1, k.conf:8) and 198.18.0.200 (vrrp_instance VI_2, k.conf:15) both use --nat-source 198.18.0.50, but lbd moves a NAT address with the one instance whose NAT VIPs use it (replies to translated flows come back to it), and these are two instances: put those VIPs in one vrrp_instance, or import without one instance's NAT services and add them afterwards with their own nat_source listed in their [[vrrp]]'s addresses"
    );
    // NAT VIPs no instance holds: the address is put on the
    // interface by hand, as they are.
    let alone = tcp_haproxy("listen pg\n  bind 198.18.0.150:5432\n  server p1 198.18.0.21:6432\n");
    let options = Options {
        nat_source: vec![ip("198.18.0.50")],
        ..Options::default()
    };
    let imported = ok(&[("h.cfg", &alone), ("k.conf", &keepalived)], &options);
    assert!(imported
        .config
        .vrrp
        .iter()
        .all(|v| !v.addresses.contains(&ip("198.18.0.50"))));
    assert!(has_note(
        &imported,
        "--nat-source 198.18.0.50: put it on eth0 as you do the VIPs that use it"
    ));
}

/// /tmp/audit-config/t4 of the audit: keepalived in VRRPv3 with one VIP,
/// HAProxy in front of PgBouncers on 6432.
const T4_HAPROXY: &str = "frontend pg\n    mode tcp\n    bind *:5432\n    default_backend pgb\nbackend pgb\n    server b1 198.19.2.11:6432 check\n    server b2 198.19.2.12:6432 check\n";
const T4_KEEPALIVED: &str = "global_defs {\n    vrrp_version 3\n}\nvrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority 101\n    virtual_ipaddress {\n        198.18.0.100\n    }\n}\n";

#[test]
fn addresses_keepalived_does_not_advertise_are_warned_of() {
    let options = Options {
        nat_source: vec![ip("198.18.0.50")],
        ..Options::default()
    };
    let files = [
        ("haproxy.cfg", T4_HAPROXY),
        ("keepalived.conf", T4_KEEPALIVED),
    ];
    let imported = ok(&files, &options);
    assert_eq!(
        imported.config.vrrp[0].addresses,
        [ip("198.18.0.100"), ip("198.18.0.50")]
    );
    let warning = "keepalived.conf:4: WARNING: lbd's adverts for VRID 51 list 198.18.0.50 (the NAT address, --nat-source), which keepalived's do not; keepalived and lbd each ignore adverts whose address list differs from their own, so side by side on this VRID both become master: before lbd runs beside keepalived, add 198.18.0.50 to virtual_ipaddress of vrrp_instance VI_1 on both keepalived nodes and reload keepalived";
    assert!(
        imported.notes.iter().any(|n| n == warning),
        "{:#?}",
        imported.notes
    );
    assert!(!has_note(&imported, "VRRPv2"), "{:#?}", imported.notes);
    // virtual_ipaddress_excluded: moved, not in keepalived's adverts.
    let excluded = T4_KEEPALIVED.replace(
        "    }\n}\n",
        "    }\n    virtual_ipaddress_excluded {\n        198.18.0.101\n    }\n}\n",
    );
    let files = [("haproxy.cfg", T4_HAPROXY), ("keepalived.conf", &excluded)];
    let imported = ok(&files, &options);
    assert!(
        has_note(
            &imported,
            "WARNING: lbd's adverts for VRID 51 list 198.18.0.101 (virtual_ipaddress_excluded), 198.18.0.50 (the NAT address, --nat-source), which keepalived's do not"
        ),
        "{:#?}",
        imported.notes
    );
    // The NAT address already in keepalived's list: nothing to warn of.
    let listed = T4_KEEPALIVED.replace("198.18.0.100\n", "198.18.0.100\n        198.18.0.50\n");
    let files = [("haproxy.cfg", T4_HAPROXY), ("keepalived.conf", &listed)];
    let imported = ok(&files, &options);
    assert!(
        !has_note(&imported, "adverts for VRID"),
        "{:#?}",
        imported.notes
    );
}

#[test]
fn a_keepalived_address_that_is_the_nat_address_is_said_not_to_be_a_vip() {
    // --nat-source names the VIP's own address by mistake.
    let options = Options {
        nat_source: vec![ip("198.18.0.100")],
        ..Options::default()
    };
    let both = T4_KEEPALIVED.replace("198.18.0.100\n", "198.18.0.100\n        198.18.0.101\n");
    let files = [("haproxy.cfg", T4_HAPROXY), ("keepalived.conf", &both)];
    let imported = ok(&files, &options);
    let vips: Vec<IpAddr> = imported.config.vips.iter().map(|v| v.address).collect();
    assert_eq!(vips, [ip("198.18.0.101")]);
    assert!(
        imported.notes.iter().any(|n| n.starts_with(
            "keepalived.conf:9: WARNING: 198.18.0.100 (virtual_ipaddress 198.18.0.100, vrrp_instance VI_1) is the NAT address (--nat-source), so it is not imported as a VIP"
        )),
        "{:#?}",
        imported.notes
    );
    assert!(!has_note(&imported, "198.18.0.101 (virtual_ipaddress"));
}

#[test]
fn keepalived_in_vrrpv2_is_warned_of() {
    let options = Options {
        nat_source: vec![ip("198.18.0.50")],
        ..Options::default()
    };
    let v2 = T4_KEEPALIVED.replace("global_defs {\n    vrrp_version 3\n}\n", "");
    let files = [("haproxy.cfg", T4_HAPROXY), ("keepalived.conf", &v2)];
    let imported = ok(&files, &options);
    assert!(
        has_note(
            &imported,
            "keepalived.conf:1: WARNING: vrrp_instance VI_1 speaks VRRPv2 in keepalived (keepalived's default: no vrrp_version in global_defs); lbd speaks VRRPv3 only"
        ),
        "{:#?}",
        imported.notes
    );
    assert!(!has_note(&imported, "lbd needs none"));
    // Said in global_defs or in the instance.
    let said = T4_KEEPALIVED.replace("vrrp_version 3", "vrrp_version 2");
    let files = [("haproxy.cfg", T4_HAPROXY), ("keepalived.conf", &said)];
    assert!(has_note(
        &ok(&files, &options),
        "speaks VRRPv2 in keepalived (keepalived.conf:2 (vrrp_version 2))"
    ));
    let own = T4_KEEPALIVED.replace("priority 101", "priority 101\n    version 2");
    let files = [("haproxy.cfg", T4_HAPROXY), ("keepalived.conf", &own)];
    assert!(has_note(
        &ok(&files, &options),
        "speaks VRRPv2 in keepalived (keepalived.conf:8 (version 2))"
    ));
    // IPv6 instances are always v3 in keepalived.
    let v6 = "vrrp_instance VI_6 {\n  interface eth0\n  virtual_router_id 61\n  virtual_ipaddress {\n    2001:2::100\n  }\n}\n";
    let imported = ok(&[("k.conf", v6)], &Options::default());
    assert!(!has_note(&imported, "VRRPv2"), "{:#?}", imported.notes);
    // Even when global_defs says vrrp_version 2 (for the IPv4 ones).
    let v6_global_v2 = format!("global_defs {{\n  vrrp_version 2\n}}\n{v6}");
    let imported = ok(&[("k.conf", &v6_global_v2)], &Options::default());
    assert!(!has_note(&imported, "VRRPv2"), "{:#?}", imported.notes);
}

/// A backend of the other family is refused at its line exactly where
/// lbd's own rule refuses it: an IPv6 VIP reaches IPv4 backends in no
/// mode. The import took any tunnel mode, so `--forwarding ipip` let an
/// IPv6 VIP with IPv4 servers through to lbd's loader, which blamed the
/// import.
#[test]
fn backends_of_the_other_family_follow_lbds_rule_in_every_mode() {
    let listen = |vip: &str, server: &str| {
        tcp_haproxy(&format!(
            "listen pg\n  bind {vip}:5432\n  server pg1 {server}:5432\n"
        ))
    };
    let v6_to_v4 = listen("[2001:2::100]", "198.18.0.11");
    let v4_to_v6 = listen("198.18.0.100", "[2001:2::11]");
    for mode in Mode::ALL {
        let options = Options {
            forwarding: Some(mode),
            ..with_nat()
        };
        let error = refused(&[("h.cfg", &v6_to_v4)], &options);
        assert_eq!(
            error,
            "h.cfg:6: 198.18.0.11 is IPv4 but VIP 2001:2::100 is IPv6: no lbd forwarding mode carries an IPv6 VIP to IPv4 backends (ipip and gue carry IPv4 VIPs to IPv6 backends, not the reverse): give this service an IPv4 VIP, or its backends IPv6 addresses",
            "{mode:?}"
        );
        let lbd_takes =
            crate::config::value::backend_address(ip("2001:2::11"), ip("198.18.0.100"), mode)
                .is_ok();
        match run(&[("h.cfg", &v4_to_v6)], &options) {
            Ok(imported) => {
                assert!(lbd_takes, "{mode:?}");
                assert_eq!(
                    imported.config.vips[0].backends[0].address,
                    ip("2001:2::11")
                );
            }
            Err(e) => {
                assert!(!lbd_takes, "{mode:?}: {e}");
                assert_eq!(
                    e.to_string(),
                    "h.cfg:6: 2001:2::11 is IPv6 but VIP 198.18.0.100 is IPv4: lbd reaches IPv6 backends of an IPv4 VIP only in ipip or gue mode (--forwarding ipip or gue)"
                );
            }
        }
    }
}

/// A bind or listen on a loopback address (`bind 127.0.0.1:3306` for the
/// applications of the proxy's own node) served this node's own
/// connections, which never reach lbd's XDP program on the interface: it
/// is left out with a WARNING naming it, not written as a VIP no client
/// can reach, and a service with only such binds is not imported.
#[test]
fn a_loopback_bind_is_left_out_with_a_warning() {
    let text = tcp_haproxy("listen db\n  bind 198.18.0.100:3306\n  bind 127.0.0.1:3306\n  bind [::1]:3306\n  server d1 198.18.0.11:3306 check\nlisten local\n  bind 127.0.0.1:6379\n  server r1 198.18.0.21:6379 check\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    let vips: Vec<(IpAddr, u16)> = imported
        .config
        .vips
        .iter()
        .map(|v| (v.address, v.port))
        .collect();
    assert_eq!(vips, [(ip("198.18.0.100"), 3306)], "{}", imported.text);
    for needle in [
        "h.cfg:6: WARNING: bind 127.0.0.1:3306: a loopback address",
        "h.cfg:7: WARNING: bind [::1]:3306: a loopback address",
        "h.cfg:10: WARNING: bind 127.0.0.1:6379: a loopback address",
    ] {
        assert!(
            has_note(&imported, needle),
            "no {needle:?} in {:#?}",
            imported.notes
        );
    }
    // nginx alike.
    let nginx = "stream {\n  server {\n    listen 127.0.0.1:5432;\n    listen 198.18.0.100:5432;\n    proxy_pass 198.18.0.11:5432;\n  }\n}\n";
    let imported = ok(&[("nginx.conf", nginx)], &on_eth0());
    assert_eq!(imported.config.vips.len(), 1);
    assert_eq!(imported.config.vips[0].address, ip("198.18.0.100"));
    assert!(has_note(
        &imported,
        "nginx.conf:3: WARNING: listen 127.0.0.1:5432: a loopback address"
    ));
}
