//! `vrrp_instance` settings as lbd's `[[vrrp]]`: unicast source and
//! peers, gratuitous ARP, and the virtual_ipaddress entries (prefix, dev).

use std::time::Duration;

use super::*;

/// `unicast_src_ip` is mapped where lbd takes it (with unicast peers, of
/// the instance's family); elsewhere it is noted and left out, so the
/// generated file passes lbd's check.
#[test]
fn unicast_src_ip_is_carried_over_with_unicast_peers_only() {
    let with = |extra: &str| {
        format!("vrrp_instance A {{\n  interface eth0\n  virtual_router_id 7\n  unicast_src_ip 198.18.0.7\n{extra}  virtual_ipaddress {{\n    198.18.0.100\n  }}\n}}\n")
    };
    let peers = with("  unicast_peer {\n    198.18.0.3\n  }\n");
    let imported = ok(&[("k.conf", &peers)], &Options::default());
    assert_eq!(
        imported.config.vrrp[0].unicast_src_ip,
        Some(ip("198.18.0.7"))
    );
    let multicast = with("");
    let imported = ok(&[("k.conf", &multicast)], &Options::default());
    assert_eq!(imported.config.vrrp[0].unicast_src_ip, None);
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.starts_with("k.conf:4: unicast_src_ip 198.18.0.7: without unicast_peer")),
        "{:?}",
        imported.notes
    );
    let v6 = peers.replace("198.18.0.7", "2001:2::7");
    let imported = ok(&[("k.conf", &v6)], &Options::default());
    assert_eq!(imported.config.vrrp[0].unicast_src_ip, None);
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n
                .starts_with("k.conf:4: unicast_src_ip 2001:2::7: not of the instance's family")),
        "{:?}",
        imported.notes
    );
    let bad = peers.replace("198.18.0.7", "eth0");
    assert!(refused(&[("k.conf", &bad)], &Options::default()).starts_with("k.conf:4: "));
}

#[test]
fn gratuitous_arp_repeats_and_refreshes_are_carried_over() {
    let text = |lines: &str| {
        format!("vrrp_instance A {{\n  interface eth0\n  virtual_router_id 7\n{lines}  virtual_ipaddress {{\n    198.18.0.100\n  }}\n}}\n")
    };
    let imported = ok(
        &[(
            "k.conf",
            &text("  garp_master_repeat 5\n  garp_master_refresh 60\n  garp_master_refresh_repeat 2\n"),
        )],
        &Options::default(),
    );
    let vrrp = &imported.config.vrrp[0];
    assert_eq!(vrrp.announce_count, 5);
    assert_eq!(vrrp.announce_refresh, Some(Duration::from_secs(60)));
    for (key, origin) in [
        ("announce_count = 5", "# k.conf:4 (garp_master_repeat 5)"),
        (
            "announce_refresh_ms = 60000",
            "# k.conf:5 (garp_master_refresh 60)",
        ),
    ] {
        assert!(
            imported
                .text
                .lines()
                .any(|l| l.starts_with(key) && l.ends_with(origin)),
            "{key} {origin}\n{}",
            imported.text
        );
    }
    let note =
        "# NOTE k.conf:6: garp_master_refresh_repeat 2: lbd sends one round of gratuitous ARP";
    assert!(imported.text.contains(note), "{}", imported.text);
    // keepalived's defaults: 0 is no refresh, and lbd's own count stays.
    let imported = ok(
        &[("k.conf", &text("  garp_master_refresh 0\n"))],
        &Options::default(),
    );
    assert_eq!(imported.config.vrrp[0].announce_refresh, None);
    assert_eq!(imported.config.vrrp[0].announce_count, 3);
    assert_eq!(
        refused(
            &[("k.conf", &text("  garp_master_refresh 1m\n"))],
            &Options::default()
        ),
        "k.conf:4: garp_master_refresh 1m: not a number in 0..=86400"
    );
}

/// A virtual_ipaddress of a subnet prefix is added as a host address by
/// lbd: said even when no other word follows it.
#[test]
fn a_virtual_ipaddress_prefix_lbd_drops_is_noted() {
    let text = |entry: &str| {
        format!("vrrp_instance A {{\n  interface eth0\n  virtual_router_id 7\n  virtual_ipaddress {{\n    {entry}\n  }}\n}}\n")
    };
    for entry in [
        "198.18.0.100/24",
        "2001:2::100/64",
        "198.18.0.100/24 dev eth0",
    ] {
        let imported = ok(&[("k.conf", &text(entry))], &Options::default());
        assert!(
            has_note(
                &imported,
                &format!("k.conf:5: WARNING: {entry}: lbd adds the address as /")
            ),
            "{entry}: {:#?}",
            imported.notes
        );
    }
    // The connected route keepalived's prefix installed is named.
    let imported = ok(&[("k.conf", &text("198.18.0.100/24"))], &Options::default());
    assert!(
        has_note(&imported, "connected route to 198.18.0.0/24 on eth0"),
        "{:#?}",
        imported.notes
    );
    for entry in ["198.18.0.100", "198.18.0.100/32", "2001:2::100/128"] {
        let imported = ok(&[("k.conf", &text(entry))], &Options::default());
        assert!(
            !has_note(&imported, "lbd adds the address as /32"),
            "{entry}: {:#?}",
            imported.notes
        );
    }
}

/// "Heartbeat on the private NIC, VIP on the public one": the address's
/// `dev` differs from the instance's `interface`. lbd serves VIPs and
/// adverts on one interface, so without --interface this is refused at
/// the address (taking the advert interface put the VIP on the wrong
/// NIC); with --interface a differing dev is a WARNING.
#[test]
fn a_virtual_ipaddress_on_another_dev_than_the_adverts_is_refused() {
    let text = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority 150\n    unicast_src_ip 10.0.0.2\n    unicast_peer { 10.0.0.3 }\n    virtual_ipaddress {\n        203.0.113.10/24 dev eth1 label eth1:vip\n    }\n    track_interface { eth1 weight -50 }\n}\nvirtual_server 203.0.113.10 80 {\n    real_server 10.0.1.11 80 { }\n}\n";
    let options = Options {
        nat_source: vec![ip("10.0.0.50")],
        ..Options::default()
    };
    let error = refused(&[("k.conf", text)], &options);
    assert!(
        error.starts_with("k.conf:8: ")
            && error.contains("dev eth1")
            && error.contains("--interface eth1"),
        "{error}"
    );
    let moved = Options {
        interface: Some("eth1".to_owned()),
        ..options.clone()
    };
    let imported = ok(&[("k.conf", text)], &moved);
    assert_eq!(imported.config.interface, "eth1");
    // The /24's connected route keepalived installed: named.
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.starts_with("k.conf:8: WARNING:") && n.contains("203.0.113.0/24")),
        "{:#?}",
        imported.notes
    );
    let elsewhere = Options {
        interface: Some("eth2".to_owned()),
        ..options
    };
    let imported = ok(&[("k.conf", text)], &elsewhere);
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.starts_with("k.conf:8: WARNING:") && n.contains("dev eth1")),
        "{:#?}",
        imported.notes
    );
}
