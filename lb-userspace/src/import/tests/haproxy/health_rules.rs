//! `tcp-check` and `http-check` rule lines: what lbd's check takes of
//! them (the connection's port, the request) and the notes on the rest.

use super::*;
use crate::config::CheckType;

#[test]
fn tcp_check_rules_warn_that_the_check_no_longer_selects_servers() {
    // The classic Redis check: only the master passes in HAProxy.
    let text = tcp_haproxy("listen redis\n  bind 198.18.0.100:6379\n  option tcp-check\n  tcp-check connect port 6380\n  tcp-check send PING\\r\\n\n  tcp-check expect string +PONG\n  tcp-check send info\\ replication\\r\\n\n  tcp-check expect string role:master\n  server r1 198.18.0.11:6379 check inter 1s port 9999\n  server r2 198.18.0.12:6379 check inter 1s\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    let health = &imported.config.vips[0].health;
    assert_eq!(health.check, CheckType::Tcp);
    // `tcp-check connect port` is where HAProxy's check connected (over
    // the server's `port`).
    assert_eq!(health.port, Some(6380));
    assert!(imported.config.vips[0]
        .backends
        .iter()
        .all(|b| b.health.is_none()));
    for needle in [
        "h.cfg:8: WARNING: option tcp-check (h.cfg:6) runs tcp-check rules lbd's check cannot: tcp-check send PING\\r\\n (line 8); tcp-check expect string +PONG (line 9); tcp-check send info replication\\r\\n (line 10); tcp-check expect string role:master (line 11).",
        "the check no longer selects which servers are eligible",
    ] {
        assert!(has_note(&imported, needle), "no {needle:?} in {:#?}", imported.notes);
    }
    assert!(
        !imported
            .notes
            .iter()
            .any(|n| n.contains("no meaning for an L4 balancer") && n.contains("tcp-check")),
        "{:#?}",
        imported.notes
    );
    assert!(imported
        .text
        .contains("# h.cfg:7 (tcp-check connect port 6380)"));
    // Options of the connection lbd does not make are said; a port that
    // is an expression is not taken.
    let other = text.replace("connect port 6380", "connect port var(check.port) ssl");
    let imported = ok(&[("h.cfg", &other)], &on_eth0());
    assert_eq!(imported.config.vips[0].health.port, Some(9999));
    assert!(has_note(
        &imported,
        "h.cfg:7: WARNING: tcp-check connect port var(check.port) ssl: port var(check.port) is not a port number"
    ));
    assert!(has_note(
        &imported,
        "h.cfg:7: tcp-check connect port var(check.port) ssl: ssl: not carried over"
    ));
    // Unchecked servers: the rules change nothing, listed as such.
    let unchecked = text.replace(" check inter 1s", "");
    let imported = ok(&[("h.cfg", &unchecked)], &on_eth0());
    assert!(!has_note(&imported, "WARNING: option tcp-check"));
    assert!(has_note(
        &imported,
        "tcp-check expect string role:master (line 11)"
    ));
    // `option tcp-check` alone is a connection check, as lbd's.
    let bare = tcp_haproxy("listen redis\n  bind 198.18.0.100:6379\n  option tcp-check\n  server r1 198.18.0.11:6379 check\n");
    let imported = ok(&[("h.cfg", &bare)], &on_eth0());
    assert_eq!(imported.config.vips[0].health.check, CheckType::Tcp);
    assert!(!has_note(&imported, "tcp-check"), "{:#?}", imported.notes);
}

#[test]
fn http_check_send_keys_lbd_does_not_send_are_noted() {
    let text = tcp_haproxy("backend be\n  option httpchk\n  http-check send meth GET uri /health ver HTTP/1.1 hdr Host app.example hdr X-Token abc body ping comment probe\n  server web1 198.18.0.11:80 check\nfrontend fe\n  bind 198.18.0.100:80\n  default_backend be\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    let health = &imported.config.vips[0].health;
    assert_eq!(health.path, "/health");
    assert_eq!(health.host.as_deref(), Some("app.example"));
    for needle in [
        "h.cfg:6: http-check send hdr X-Token abc: not carried over",
        "h.cfg:6: http-check send body ping: not carried over",
    ] {
        assert!(
            has_note(&imported, needle),
            "no {needle:?} in {:#?}",
            imported.notes
        );
    }
    for absent in [
        "send ver",
        "send comment",
        "send meth",
        "send uri",
        "hdr Host",
    ] {
        assert!(
            !has_note(&imported, absent),
            "{absent:?} in {:#?}",
            imported.notes
        );
    }
    let lf = text.replace("uri /health", "uri /health uri-lf /%[date]");
    let imported = ok(&[("h.cfg", &lf)], &on_eth0());
    assert!(has_note(
        &imported,
        "http-check send uri-lf /%[date]: not carried over"
    ));
}

/// `http-check connect` opens the HTTP check's connection: its port is
/// the one checked (Patroni's REST port beside PostgreSQL), its `ssl`
/// makes the check TLS, its other options are said.
#[test]
fn http_check_connect_gives_the_port_and_tls_of_the_check() {
    let imported = |connect: &str, server: &str| {
        let text = tcp_haproxy(&format!(
            "listen pg\n  bind 198.18.0.100:5432\n  option httpchk GET /health\n{connect}  server a 198.18.0.11:5432 {server}\n"
        ));
        ok(&[("h.cfg", &text)], &on_eth0())
    };
    let patroni = imported("  http-check connect port 8008\n", "check");
    let health = &patroni.config.vips[0].health;
    assert_eq!(health.port, Some(8008));
    assert_eq!(health.check, CheckType::Http);
    assert_eq!(health.path, "/health");
    assert!(
        !has_note(&patroni, "no meaning for an L4 balancer"),
        "{:#?}",
        patroni.notes
    );
    assert!(patroni
        .text
        .contains("# h.cfg:7 (http-check connect port 8008)"));
    // The rule's port wins over the server's, as in HAProxy.
    let over = imported("  http-check connect port 8008\n", "check port 9999");
    assert_eq!(over.config.vips[0].health.port, Some(8008));
    // `ssl`: HAProxy's HTTP check is made over TLS, and so is lbd's.
    let tls = imported("  http-check connect port 8008 ssl sni pg\n", "check");
    assert_eq!(tls.config.vips[0].health.check, CheckType::Http);
    assert!(tls.config.vips[0].health.tls);
    assert_eq!(tls.config.vips[0].health.port, Some(8008));
    for needle in [
        "(http-check connect port 8008 ssl sni pg: HAProxy's check is made over TLS)",
        "h.cfg:7: http-check connect port 8008 ssl sni pg: sni pg: not carried over",
    ] {
        assert!(
            has_note(&tls, needle) || tls.text.contains(needle),
            "no {needle:?} in {:#?}\n{}",
            tls.notes,
            tls.text
        );
    }
    // A connection of its own port in the clear: the server's `ssl` is
    // not the check's.
    let clear = tcp_haproxy("listen pg\n  bind 198.18.0.100:5432 ssl crt /etc/ssl/pg.pem\n  option httpchk GET /health\n  http-check connect port 8008\n  server a 198.18.0.11:5432 ssl check\n");
    let clear = ok(&[("h.cfg", &clear)], &on_eth0());
    assert_eq!(clear.config.vips[0].health.check, CheckType::Http);
    // A second connection lbd does not make.
    let second = imported(
        "  http-check connect port 8008\n  http-check send meth GET uri /health\n  http-check connect port 8009\n",
        "check",
    );
    assert_eq!(second.config.vips[0].health.port, Some(8008));
    assert!(has_note(
        &second,
        "h.cfg:9: WARNING: http-check connect port 8009: a further connection"
    ));
    // Unchecked servers: the rule changes nothing, listed as such.
    let unchecked = imported("  http-check connect port 8008\n", "");
    assert!(has_note(
        &unchecked,
        "not carried over (no meaning for an L4 balancer): http-check connect port 8008 (line 7)"
    ));
}
