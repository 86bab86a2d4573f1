//! How HAProxy shared connections and what lbd keeps of it: client
//! persistence (lbd's source affinity), backup servers, `balance first`.

use super::*;
use lb_common::Affinity;

#[test]
fn balance_source_and_stick_on_src_are_source_affinity() {
    let text = tcp_haproxy("listen pg\n  bind 198.18.0.100:5432\n  balance source\n  stick-table type ip size 200k expire 30m\n  stick on src\n  server pg1 198.18.0.11:5432\nlisten web\n  bind 198.18.0.100:80\n  stick-table type ip size 1m store conn_rate(10s)\n  server w1 198.18.0.11:80\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    let affinities: Vec<Affinity> = imported.config.vips.iter().map(|v| v.affinity).collect();
    assert_eq!(affinities, [Affinity::Source, Affinity::Connection]);
    assert_eq!(
        affinity_lines(&imported),
        ["affinity = \"source\" # h.cfg:6 (balance source), h.cfg:8 (stick on src)"]
    );
    for needle in [
        "h.cfg:8: stick on src: HAProxy kept each client on the server its stick-table remembered (stick-table expire 30m, h.cfg:7), even across server changes; lbd's source affinity follows the hash: a backend change moves the clients whose Maglev slots change (established connections stay)",
        // A table of counters only is not persistence.
        "no meaning for an L4 balancer): stick-table type ip size 1m store conn_rate(10s) (line 12)",
    ] {
        assert!(has_note(&imported, needle), "no {needle:?} in {:#?}", imported.notes);
    }
    // balance source is carried over as it is: nothing to note.
    assert!(
        !imported.notes.iter().any(|n| n.contains("balance source")
            || n.contains("client persistence")
            || n.contains("stick-table type ip size 200k")),
        "{:#?}",
        imported.notes
    );
}

#[test]
fn the_servers_section_decides_affinity_and_other_stick_keys_are_noted() {
    // balance source of defaults is the backend's, as in HAProxy; its
    // hash-type needs no word (lbd's Maglev is a consistent hash).
    let text = "defaults\n  mode tcp\n  balance source\n  hash-type consistent\nfrontend f\n  bind 198.18.0.100:80\n  default_backend b\nbackend b\n  server a 198.18.0.11:80\n";
    let imported = ok(&[("h.cfg", text)], &on_eth0());
    assert_eq!(imported.config.vips[0].affinity, Affinity::Source);
    assert_eq!(
        affinity_lines(&imported),
        ["affinity = \"source\" # h.cfg:3 (balance source)"]
    );
    assert!(!has_note(&imported, "hash-type"), "{:#?}", imported.notes);
    // The backend's own balance replaces it.
    let own = text.replace("backend b\n", "backend b\n  balance roundrobin\n");
    let imported = ok(&[("h.cfg", &own)], &on_eth0());
    assert_eq!(imported.config.vips[0].affinity, Affinity::Connection);
    assert!(!imported.text.contains("affinity"), "{}", imported.text);
    // A listen with a default_backend: HAProxy balances on the backend's.
    let listen = "defaults\n  mode tcp\nlisten l\n  bind 198.18.0.100:80\n  balance source\n  default_backend b\nbackend b\n  server a 198.18.0.11:80\n";
    let imported = ok(&[("h.cfg", listen)], &on_eth0());
    assert_eq!(imported.config.vips[0].affinity, Affinity::Connection);
    // Stickiness on a cookie or a stored address is not the client's address.
    let cookie = tcp_haproxy("listen web\n  bind 198.18.0.100:80\n  stick-table type string len 32 size 1m\n  stick on req.cook(SERVERID)\n  stick store-request src table other\n  server w1 198.18.0.11:80\n");
    let imported = ok(&[("h.cfg", &cookie)], &on_eth0());
    assert_eq!(imported.config.vips[0].affinity, Affinity::Connection);
    for needle in [
        "h.cfg:7: stick on req.cook(SERVERID): stickiness by something other than the client's address is not carried over",
        "h.cfg:8: stick store-request src table other: records client addresses for another section's stick match: not carried over",
    ] {
        assert!(has_note(&imported, needle), "no {needle:?} in {:#?}", imported.notes);
    }
    // stick match src, with the store beside it: source, the store unsaid.
    let matched = tcp_haproxy("listen web\n  bind 198.18.0.100:80\n  stick-table type ip size 1m\n  stick match src\n  stick store-request src\n  server w1 198.18.0.11:80\n");
    let imported = ok(&[("h.cfg", &matched)], &on_eth0());
    assert_eq!(imported.config.vips[0].affinity, Affinity::Source);
    assert!(has_note(
        &imported,
        "h.cfg:7: stick match src: HAProxy kept each client on the server its stick-table remembered (stick-table without expire, h.cfg:6)"
    ));
    assert!(
        !has_note(&imported, "stick store-request"),
        "{:#?}",
        imported.notes
    );
}

#[test]
fn backup_servers_are_lbds_backups_with_their_weights() {
    let haproxy = tcp_haproxy("listen web\n  bind 198.18.0.100:80\n  server a 198.18.0.11:80 disabled\n  server b 198.18.0.12:80 weight 0\n  server c 198.18.0.13:80 backup weight 2\n  server d 198.18.0.14:80 backup\n");
    let imported = ok(&[("h.cfg", &haproxy)], &on_eth0());
    let vip = &imported.config.vips[0];
    assert_eq!(
        weights(vip),
        [
            (ip("198.18.0.11"), 0),
            (ip("198.18.0.12"), 0),
            (ip("198.18.0.13"), 200),
            (ip("198.18.0.14"), 100)
        ]
    );
    assert_eq!(backups(vip), [ip("198.18.0.13"), ip("198.18.0.14")]);
    // No active server takes flows: lbd sends them to the backups, as
    // HAProxy did.
    assert!(serves_on_backups(&imported));
    assert!(
        has_note(&imported, "h.cfg:4: listen web has several backup servers and no option allbackups: HAProxy sends to the first one up alone, lbd shares among all of them that are up, by weight (c, d)"),
        "{:#?}",
        imported.notes
    );
    assert!(
        imported
            .text
            .contains("# h.cfg:9: takes new flows only while no other backend can"),
        "{}",
        imported.text
    );
    assert!(lb_userspace_warnings(&imported).is_empty());
    // With option allbackups HAProxy shares too: nothing to note.
    let all = haproxy.replace("listen web\n", "listen web\n  option allbackups\n");
    let imported = ok(&[("h.cfg", &all)], &on_eth0());
    assert_eq!(backups(&imported.config.vips[0]).len(), 2);
    assert!(!has_note(&imported, "several backup servers"));
    // An active server that takes flows keeps the backups standing by.
    let one_up = haproxy.replace("weight 0\n", "\n");
    let imported = ok(&[("h.cfg", &one_up)], &on_eth0());
    assert_eq!(
        weights(&imported.config.vips[0])[1..],
        [
            (ip("198.18.0.12"), 100),
            (ip("198.18.0.13"), 200),
            (ip("198.18.0.14"), 100)
        ]
    );
    assert!(!serves_on_backups(&imported));
}

/// lbd's own warnings on an import's result (what `lbctl config check`
/// prints).
fn lb_userspace_warnings(imported: &Imported) -> Vec<String> {
    crate::config::warnings(&imported.config)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn balance_first_keeps_the_first_server_and_warns_the_order_is_lost() {
    let haproxy = tcp_haproxy("frontend f\n  bind 198.18.0.100:80\n  default_backend b\nbackend b\n  balance first\n  server a 198.18.0.11:80 disabled\n  server b1 198.18.0.12:80 weight 3\n  server b2 198.18.0.13:80 weight 5\n");
    let imported = ok(&[("h.cfg", &haproxy)], &on_eth0());
    assert_eq!(
        weights(&imported.config.vips[0]),
        [
            (ip("198.18.0.11"), 0),
            (ip("198.18.0.12"), 300),
            (ip("198.18.0.13"), 0)
        ]
    );
    assert!(has_note(&imported, "h.cfg:8: WARNING: balance first: HAProxy sent each connection to the first server (in file order) with a free connection slot and went on to the next only when it was full or down; lbd has no failover order: server b1 takes all new flows and the others are written with weight 0"));
    assert!(
        imported
            .text
            .contains("# h.cfg:8 (balance first: a failover server (weight 5), weight 0)"),
        "{}",
        imported.text
    );
    // Another balance after it (a backend's own over defaults') is a split.
    let split = haproxy.replace(
        "  balance first\n",
        "  balance first\n  balance roundrobin\n",
    );
    let imported = ok(&[("h.cfg", &split)], &on_eth0());
    assert_eq!(
        weights(&imported.config.vips[0])[2],
        (ip("198.18.0.13"), 500)
    );
}

/// Backups next to active servers stay backups: no warning that the
/// failover is lost.
#[test]
fn backups_beside_active_servers_stay_backups() {
    let imported = ok(
        &[("haproxy.cfg", HAPROXY), ("keepalived.conf", KEEPALIVED)],
        &Options::default(),
    );
    assert!(
        !imported
            .notes
            .iter()
            .any(|n| n.contains("backup") && n.contains("WARNING")),
        "{:#?}",
        imported.notes
    );
    assert_eq!(backups(&imported.config.vips[0]), [ip("198.18.0.13")]);
    assert!(!serves_on_backups(&imported));
}
