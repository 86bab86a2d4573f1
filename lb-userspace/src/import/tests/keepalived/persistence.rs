//! IPVS client persistence (`persistence_timeout`, `persistence_granularity`)
//! and the port flags of the source hashing schedulers: what lbd's client
//! affinity keeps of them, and the NOTEs where it differs.

use super::*;
use lb_common::Affinity;

/// A virtual_server of `lines` (one a line, indented) before two
/// real_servers.
fn service(lines: &[&str]) -> String {
    let lines: String = lines.iter().map(|l| format!("  {l}\n")).collect();
    format!("virtual_server 198.18.0.100 80 {{\n{lines}  lb_kind DR\n  real_server 198.18.0.11 80 {{\n    weight 2\n  }}\n  real_server 198.18.0.12 80 {{\n  }}\n}}\n")
}

#[test]
fn a_port_flag_makes_source_hashing_per_connection() {
    for lines in [
        ["lb_algo mh", "mh-port"],
        ["lvs_sched sh", "sh-port"],
        ["flag-2", "lb_algo sh"],
    ] {
        let imported = ok(&[("k.conf", &service(&lines))], &on_eth0());
        assert_eq!(
            imported.config.vips[0].affinity,
            Affinity::Connection,
            "{lines:?}"
        );
        assert!(!imported.text.contains("affinity"), "{}", imported.text);
        assert!(
            has_note(&imported, "IPVS hashed each connection's source address and port; lbd's Maglev hashes each connection (weights kept)"),
            "{lines:?}: {:#?}",
            imported.notes
        );
    }
    assert!(has_note(
        &ok(
            &[("k.conf", &service(&["lb_algo mh", "mh-port"]))],
            &on_eth0()
        ),
        "k.conf:2: lb_algo mh, mh-port: IPVS hashed"
    ));
    // keepalived applies sh-port after lb_algo sh only.
    let imported = ok(
        &[("k.conf", &service(&["sh-port", "lb_algo sh"]))],
        &on_eth0(),
    );
    assert_eq!(imported.config.vips[0].affinity, Affinity::Source);
    assert!(has_note(
        &imported,
        "k.conf:2: sh-port: keepalived applies it only after lb_algo sh, and ignores it here"
    ));
}

#[test]
fn persistence_is_source_affinity_with_what_ipvs_did_otherwise() {
    let imported = ok(
        &[(
            "k.conf",
            &service(&["lb_algo rr", "persistence_timeout 50"]),
        )],
        &on_eth0(),
    );
    let vip = &imported.config.vips[0];
    assert_eq!(vip.affinity, Affinity::Source);
    // rr's equal weights stay.
    assert_eq!(weights(vip)[0].1, weights(vip)[1].1);
    assert_eq!(
        affinity_lines(&imported),
        ["affinity = \"source\" # k.conf:3 (persistence_timeout 50)"]
    );
    assert!(has_note(&imported, "k.conf:3: persistence_timeout 50: IPVS kept each client on its real server until 50 s after its last connection, even across weight changes; lbd's source affinity follows the hash: a backend or weight change moves the clients whose Maglev slots change (established connections stay)"), "{:#?}", imported.notes);
    // A granularity alone makes IPVS persistent for keepalived's 360 s;
    // one of a prefix is noted, the whole address is not.
    let imported = ok(
        &[(
            "k.conf",
            &service(&["persistence_granularity 255.255.255.0"]),
        )],
        &on_eth0(),
    );
    assert_eq!(imported.config.vips[0].affinity, Affinity::Source);
    for needle in [
        "k.conf:2: persistence_granularity 255.255.255.0 (persistence_timeout: keepalived's default): IPVS kept each client on its real server until 360 s after",
        "k.conf:2: persistence_granularity 255.255.255.0: IPVS kept the clients of one such prefix together on one real server; lbd hashes each client's whole address, so they may go to different backends",
    ] {
        assert!(has_note(&imported, needle), "no {needle:?} in {:#?}", imported.notes);
    }
    for whole in ["255.255.255.255", "128"] {
        let lines = [
            "persistence_timeout",
            &format!("persistence_granularity {whole}"),
        ];
        let imported = ok(&[("k.conf", &service(&lines))], &on_eth0());
        assert_eq!(imported.config.vips[0].affinity, Affinity::Source);
        assert!(has_note(
            &imported,
            "k.conf:2: persistence_timeout: IPVS kept each client on its real server until 360 s"
        ));
        assert!(
            !has_note(&imported, "one such prefix"),
            "{:#?}",
            imported.notes
        );
    }
    for bad in [
        "persistence_granularity 255.255.0",
        "persistence_granularity 129",
        "persistence_timeout 0",
    ] {
        assert!(
            refused(&[("k.conf", &service(&[bad]))], &on_eth0()).starts_with("k.conf:2: "),
            "{bad}"
        );
    }
}

/// Persistence over a per-connection hash: IPVS kept the client, so lbd
/// does, and says which line said what.
#[test]
fn persistence_over_a_per_connection_hash_is_source_affinity_noted() {
    let lines = ["lb_algo mh", "mh-port", "persistence_timeout 50"];
    let imported = ok(&[("k.conf", &service(&lines))], &on_eth0());
    assert_eq!(imported.config.vips[0].affinity, Affinity::Source);
    assert!(
        has_note(&imported, "k.conf:4: client affinity: persistence_timeout 50 (k.conf:4) kept each client on one server, lb_algo mh, mh-port (k.conf:2) balanced each connection; affinity = \"source\", as the client's connections reached one server"),
        "{:#?}",
        imported.notes
    );
}
