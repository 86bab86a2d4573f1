//! IPVS forwarding methods (`lb_kind` / `lvs_method`, keepalived's default
//! NAT) as lbd's forwarding mode, and the NAT address NAT needs.

use super::*;
use lb_common::Mode;

#[test]
fn an_ipvs_nat_service_without_a_nat_address_is_refused() {
    assert_eq!(
        refused(&[("k.conf", IPVS)], &Options::default()),
        "k.conf:55: virtual_server 198.18.0.100 8080 needs lbd's NAT mode (k.conf:57 (lb_kind NAT)), which needs a NAT address: pass --nat-source ADDRESS (an address of this node's network, moved with the VIPs)"
    );
}

#[test]
fn lvs_method_is_lb_kind_also_in_a_real_server() {
    let text = "virtual_server 198.18.0.210 80 {\n  lvs_method TUN\n  real_server 198.18.0.11 80 {\n    weight 1\n  }\n}\nvirtual_server 198.18.0.211 80 {\n  real_server 198.18.0.12 80 {\n    lvs_method DR\n  }\n}\nvirtual_server 198.18.0.212 80 {\n  lvs_method TUN type gue port 6080\n  real_server 198.18.0.13 80 {\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &on_eth0());
    let modes: Vec<Mode> = imported.config.vips.iter().map(|v| v.forwarding).collect();
    assert_eq!(modes, [Mode::Ipip, Mode::DsrL2, Mode::Gue]);
    let mixed = "virtual_server 198.18.0.210 80 {\n  lvs_method DR\n  real_server 198.18.0.11 80 {\n    lvs_method NAT\n  }\n}\n";
    assert!(refused(&[("k.conf", mixed)], &with_nat())
        .starts_with("k.conf:4: lvs_method NAT: real_server 198.18.0.11 is forwarded otherwise"));
}

#[test]
fn ipvs_nat_says_the_client_address_is_lost() {
    let text = "virtual_server 198.18.0.100 80 {\n  lb_kind NAT\n  real_server 198.18.0.11 8080 {\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &with_nat());
    assert_eq!(imported.config.vips[0].forwarding, Mode::Nat);
    assert!(has_note(
        &imported,
        "k.conf:2: WARNING: IPVS NAT rewrites only the destination"
    ));
}

/// keepalived's own default forwarding method is NAT (check_parser.c:
/// "no forwarding method set, setting default NAT"): the backends do not
/// hold the VIP, so dsr-l2 (guessed from the ports, as for a proxy) left
/// them dropping its packets.
#[test]
fn a_virtual_server_without_lb_kind_is_ipvs_nat() {
    let text = "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {\n    198.18.0.100\n  }\n}\nvirtual_server 198.18.0.100 80 {\n  delay_loop 5\n  protocol TCP\n  real_server 198.18.0.11 80 {\n    TCP_CHECK {\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &with_nat());
    assert_eq!(imported.config.vips[0].forwarding, Mode::Nat);
    assert!(
        has_note(
            &imported,
            "k.conf:8: WARNING: IPVS NAT rewrites only the destination"
        ),
        "{:#?}",
        imported.notes
    );
    assert!(!has_note(&imported, "proxied connections"));
    assert!(imported
        .text
        .contains("no lb_kind/lvs_method: keepalived's default NAT"));
    // Without a NAT address: refused, naming keepalived's default.
    assert!(refused(&[("k.conf", text)], &on_eth0())
        .contains("(k.conf:8 (no lb_kind/lvs_method: keepalived's default NAT))"));
    // A real_server's own DR makes the service DR; another real_server
    // left to keepalived's default NAT is refused at its line.
    let own = text.replace("    TCP_CHECK", "    lvs_method DR\n    TCP_CHECK");
    let imported = ok(&[("k.conf", &own)], &on_eth0());
    assert_eq!(imported.config.vips[0].forwarding, Mode::DsrL2);
    let mixed = own.replace(
        "  real_server 198.18.0.11 80 {",
        "  real_server 198.18.0.12 80 {\n  }\n  real_server 198.18.0.11 80 {",
    );
    assert!(
        refused(&[("k.conf", &mixed)], &with_nat()).starts_with(
            "k.conf:11: real_server 198.18.0.12 names no lvs_method and its virtual_server none"
        ),
        "{}",
        refused(&[("k.conf", &mixed)], &with_nat())
    );
}
