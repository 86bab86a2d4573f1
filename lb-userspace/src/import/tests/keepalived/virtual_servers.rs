//! Where a virtual_server answers and who serves it: a
//! virtual_server_group's addresses, a fwmark service, a sorry_server.

use super::*;

#[test]
fn a_virtual_server_group_gives_each_of_its_addresses_the_real_servers() {
    let text = format!("{INSTANCE}virtual_server group web {{\n  lb_kind DR\n  real_server 198.18.0.11 80 {{\n    weight 1\n  }}\n  real_server 198.18.0.12 80 {{\n    weight 3\n  }}\n}}\nvirtual_server_group web {{\n  198.18.0.100-101 80\n  198.18.0.100 443\n  fwmark 7\n}}\n");
    let imported = ok(&[("keepalived.conf", &text)], &Options::default());
    let vips: Vec<_> = imported
        .config
        .vips
        .iter()
        .map(|v| (v.address, v.port, weights(v)))
        .collect();
    let backends = vec![(ip("198.18.0.11"), 100), (ip("198.18.0.12"), 300)];
    assert_eq!(
        vips,
        [
            (ip("198.18.0.100"), 80, backends.clone()),
            (ip("198.18.0.101"), 80, backends.clone()),
            (ip("198.18.0.100"), 443, backends),
        ]
    );
    assert!(imported
        .text
        .contains("keepalived.conf:19 (198.18.0.100-101 80 in virtual_server_group web)"));
    assert!(has_note(
        &imported,
        "keepalived.conf:21: fwmark 7 (virtual_server_group web): IPVS took the packets a firewall rule marked"
    ));
    // A group of no file given is refused at the virtual_server.
    let alone = format!(
        "{INSTANCE}virtual_server group web {{\n  real_server 198.18.0.11 80 {{\n  }}\n}}\n"
    );
    assert_eq!(
        refused(&[("keepalived.conf", &alone)], &Options::default()),
        "keepalived.conf:9: virtual_server group web: no virtual_server_group web in the files given (pass the file that defines it too)"
    );
    let bad = text.replace("198.18.0.100-101 80", "198.18.0.100-99 80");
    assert!(refused(&[("keepalived.conf", &bad)], &Options::default())
        .starts_with("keepalived.conf:19: 198.18.0.100-99 80 (virtual_server_group web): \"198.18.0.100-99\" is not an address"));
}

#[test]
fn a_fwmark_virtual_server_keeps_its_real_servers_for_a_vip_argument() {
    let text = format!("{INSTANCE}virtual_server fwmark 5 {{\n  lb_kind DR\n  protocol TCP\n  real_server 198.18.0.11 80 {{\n    weight 2\n  }}\n  real_server 198.18.0.12 80 {{\n  }}\n}}\n");
    let options = Options {
        vips: vec![vip("198.18.0.101:80/tcp")],
        ..Options::default()
    };
    let imported = ok(&[("keepalived.conf", &text)], &options);
    let vip = &imported.config.vips[0];
    assert_eq!((vip.address, vip.port), (ip("198.18.0.101"), 80));
    assert_eq!(
        weights(vip),
        [(ip("198.18.0.11"), 200), (ip("198.18.0.12"), 100)]
    );
    assert!(has_note(
        &imported,
        "keepalived.conf:9: virtual_server fwmark 5: IPVS took the packets a firewall rule marked, whatever their address; an lbd VIP is an address and a port: pass --vip ADDRESS:PORT/PROTOCOL"
    ));
    // Without it, the advice the note gives.
    assert_eq!(
        refused(&[("keepalived.conf", &text)], &Options::default()),
        "keepalived.conf:9: virtual_server fwmark 5 names no address or port to serve on: pass --vip ADDRESS:PORT/PROTOCOL (one per such service, in file order)"
    );
}

/// IPVS's sorry_server took the clients when every real_server was down:
/// lbd's backup, which does the same.
#[test]
fn a_sorry_server_is_a_backup() {
    let text = format!("{INSTANCE}virtual_server 198.18.0.100 80 {{\n  lb_kind DR\n  sorry_server 198.18.0.99 80\n  real_server 198.18.0.11 80 {{ TCP_CHECK {{ connect_timeout 3 }} }}\n}}\n");
    let imported = ok(&[("k.conf", &text)], &on_eth0());
    assert!(
        !imported.notes.iter().any(|n| n.contains("sorry_server")),
        "{:#?}",
        imported.notes
    );
    let vip = &imported.config.vips[0];
    assert_eq!(
        weights(vip),
        [(ip("198.18.0.11"), 100), (ip("198.18.0.99"), 100)]
    );
    assert_eq!(backups(vip), [ip("198.18.0.99")]);
    assert!(!serves_on_backups(&imported));
}
