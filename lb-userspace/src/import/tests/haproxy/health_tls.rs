//! Checks HAProxy made over TLS, which lbd's cannot: an HTTP check
//! becomes a TCP one with a WARNING, and the notes say which servers.

use super::*;
use crate::config::CheckType;

#[test]
fn an_http_check_over_tls_is_imported_as_a_tcp_check_with_a_warning() {
    let checked = |server: &str| {
        // A bind of TLS (passed through) to `ssl` servers, of plaintext to
        // the others: the import refuses the other pairings.
        let tls = if server.split_whitespace().any(|w| w == "ssl") {
            " ssl crt /etc/ssl/web.pem"
        } else {
            ""
        };
        let text = tcp_haproxy(&format!(
            "listen web\n  bind 198.18.0.100:443{tls}\n  option httpchk GET /health\n  server w1 198.18.0.11:443 {server}\n"
        ));
        let imported = ok(&[("h.cfg", &text)], &on_eth0());
        let tls_warning = imported
            .notes
            .iter()
            .any(|n| n.contains("over TLS") && n.contains("WARNING"));
        (imported.config.vips[0].health.check, tls_warning)
    };
    // `ssl` makes the checks TLS too, as `check-ssl` does.
    assert_eq!(checked("ssl check"), (CheckType::Tcp, true));
    assert_eq!(checked("check check-ssl"), (CheckType::Tcp, true));
    // Unless the check goes elsewhere, or is told not to.
    assert_eq!(checked("ssl check port 8080"), (CheckType::Http, false));
    // `addr` sends HAProxy's check elsewhere in the clear, but lbd checks
    // the server's own port, which speaks TLS.
    assert_eq!(
        checked("ssl check addr 198.18.0.99"),
        (CheckType::Tcp, true)
    );
    assert_eq!(checked("ssl check no-check-ssl"), (CheckType::Http, false));
    assert_eq!(checked("check"), (CheckType::Http, false));
    // With `check-ssl` too, the check is TLS wherever it goes.
    assert_eq!(
        checked("check check-ssl addr 198.18.0.99"),
        (CheckType::Tcp, true)
    );
}

#[test]
fn notes_on_tls_checks_say_what_each_server_gets() {
    // A bind of TLS (passed through) where the servers speak it (`ssl`),
    // of plaintext where they do not: the import refuses the other
    // pairings.
    let imported = |servers: &str, option: &str| {
        let tls = if servers.lines().any(|l| {
            l.trim_start().starts_with("server ") && l.split_whitespace().any(|w| w == "ssl")
        }) {
            " ssl crt /etc/ssl/web.pem"
        } else {
            ""
        };
        let text = tcp_haproxy(&format!(
            "listen web\n  bind 198.18.0.100:443{tls}\n{option}{servers}"
        ));
        ok(&[("h.cfg", &text)], &on_eth0())
    };
    let httpchk = "  option httpchk /health\n";
    // Every HTTP check became TCP: HAProxy's method and statuses are moot.
    let all_tls = imported("  server w1 198.18.0.11:443 ssl check\n", httpchk);
    assert_eq!(all_tls.config.vips[0].health.check, CheckType::Tcp);
    for moot in ["HAProxy checks with OPTIONS", "lbd expects exactly 200"] {
        assert!(
            !has_note(&all_tls, moot),
            "{moot:?} in {:#?}",
            all_tls.notes
        );
    }
    // Some did: the notes name the servers they are about.
    let mixed = imported(
        "  server w1 198.18.0.11:443 ssl check\n  server w2 198.18.0.12:443 ssl check port 8080\n",
        httpchk,
    );
    for needle in [
        "h.cfg:6: HAProxy checks with OPTIONS; lbd's HTTP checks send GET (servers w2; the others' checks are TCP)",
        "lbd expects exactly 200 (set expect_status) (servers w2; the others' checks are TCP)",
    ] {
        assert!(has_note(&mixed, needle), "no {needle:?} in {:#?}", mixed.notes);
    }
    // `no-ssl` on the server's line cancels default-server's `ssl`: no
    // ssl note for it, and its HTTP check stays one.
    let cancelled = imported(
        "  default-server ssl check\n  server w1 198.18.0.11:443 no-ssl\n",
        httpchk,
    );
    assert_eq!(cancelled.config.vips[0].health.check, CheckType::Http);
    assert!(
        !has_note(&cancelled, "ssl: HAProxy speaks TLS"),
        "{:#?}",
        cancelled.notes
    );
    assert!(has_note(
        &cancelled,
        "lbd expects exactly 200 (set expect_status)"
    ));
    // A server's own value replaces default-server's, said once.
    let replaced = imported(
        "  default-server maxconn 100\n  server w1 198.18.0.11:443 maxconn 200\n",
        "",
    );
    assert!(has_note(&replaced, "h.cfg:7: maxconn 200"));
    assert!(!has_note(&replaced, "maxconn 100"), "{:#?}", replaced.notes);
    // A TCP check HAProxy makes over TLS is a handshake; lbd's is not.
    let handshake = imported("  server w1 198.18.0.11:443 check check-ssl\n", "");
    assert!(
        has_note(
            &handshake,
            "h.cfg:6: check-ssl: HAProxy's check is a TLS handshake; lbd's only opens TCP"
        ),
        "{:#?}",
        handshake.notes
    );
}
