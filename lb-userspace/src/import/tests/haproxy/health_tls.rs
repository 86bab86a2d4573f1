//! Checks HAProxy made over TLS: lbd's are too (`tls = true`), the HTTP
//! check stays one, and the notes say what differs.

use super::*;
use crate::config::CheckType;

#[test]
fn an_http_check_over_tls_is_imported_as_an_http_check_over_tls() {
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
        let warned = imported
            .notes
            .iter()
            .any(|n| n.contains("WARNING") && n.contains("checks have no TLS"));
        assert!(!warned, "{:#?}", imported.notes);
        let health = &imported.config.vips[0].health;
        (health.check, health.tls)
    };
    // `ssl` makes the checks TLS too, as `check-ssl` does.
    assert_eq!(checked("ssl check"), (CheckType::Http, true));
    assert_eq!(checked("check check-ssl"), (CheckType::Http, true));
    // Unless the check goes elsewhere, or is told not to.
    assert_eq!(checked("ssl check port 8080"), (CheckType::Http, false));
    // `addr` sends HAProxy's check elsewhere in the clear, but lbd checks
    // the server's own port, which speaks TLS.
    assert_eq!(
        checked("ssl check addr 198.18.0.99"),
        (CheckType::Http, true)
    );
    assert_eq!(checked("ssl check no-check-ssl"), (CheckType::Http, false));
    assert_eq!(checked("check"), (CheckType::Http, false));
    // With `check-ssl` too, the check is TLS wherever it goes.
    assert_eq!(
        checked("check check-ssl addr 198.18.0.99"),
        (CheckType::Http, true)
    );
}

/// The imported file says `tls = true` with where it comes from, and
/// loads back as such; a TCP check HAProxy makes over TLS is one too.
#[test]
fn tls_checks_are_written_with_their_origin() {
    let text = tcp_haproxy(
        "listen web\n  bind 198.18.0.100:443 ssl crt /etc/ssl/web.pem\n  option httpchk GET /health\n  server w1 198.18.0.11:443 ssl check\n",
    );
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert!(
        imported.text.lines().any(|l| l.starts_with("  tls = true ")
            && l.ends_with("# h.cfg:7 (ssl: HAProxy's check is made over TLS)")),
        "{}",
        imported.text
    );
    let tcp = tcp_haproxy(
        "listen web\n  bind 198.18.0.100:443\n  server w1 198.18.0.11:443 check check-ssl\n",
    );
    let tcp = ok(&[("h.cfg", &tcp)], &on_eth0());
    let health = &tcp.config.vips[0].health;
    assert_eq!((health.check, health.tls), (CheckType::Tcp, true));
    assert!(
        tcp.text
            .contains("(check-ssl: HAProxy's check is made over TLS)"),
        "{}",
        tcp.text
    );
    // Plain checks say nothing of it.
    let plain =
        tcp_haproxy("listen web\n  bind 198.18.0.100:443\n  server w1 198.18.0.11:443 check\n");
    let plain = ok(&[("h.cfg", &plain)], &on_eth0());
    assert!(!plain.config.vips[0].health.tls);
    assert!(!plain.text.contains("tls ="), "{}", plain.text);
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
    // HTTP checks over TLS stay HTTP: HAProxy's method and statuses
    // are said of them as of any.
    let all_tls = imported("  server w1 198.18.0.11:443 ssl check\n", httpchk);
    assert_eq!(all_tls.config.vips[0].health.check, CheckType::Http);
    assert!(all_tls.config.vips[0].health.tls);
    for said in ["HAProxy checks with OPTIONS", "lbd expects exactly 200"] {
        assert!(
            has_note(&all_tls, said),
            "no {said:?} in {:#?}",
            all_tls.notes
        );
    }
    // One over TLS, one in the clear: both HTTP, the notes about all.
    let mixed = imported(
        "  server w1 198.18.0.11:443 ssl check\n  server w2 198.18.0.12:443 ssl check port 8080\n",
        httpchk,
    );
    assert!(
        !has_note(&mixed, "the others' checks are TCP"),
        "{:#?}",
        mixed.notes
    );
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
    // A TCP check HAProxy makes over TLS is a handshake, as lbd's now.
    let handshake = imported("  server w1 198.18.0.11:443 check check-ssl\n", "");
    assert!(handshake.config.vips[0].health.tls);
    assert!(
        !has_note(&handshake, "lbd's only opens TCP"),
        "{:#?}",
        handshake.notes
    );
}

/// What lbd's TLS checks do not do of HAProxy's: verify certificates
/// (`verify required`, `ca-file`), send `check-sni`'s name.
#[test]
fn certificate_checks_and_check_sni_are_noted() {
    let text = tcp_haproxy(
        "listen web\n  bind 198.18.0.100:443\n  server w1 198.18.0.11:443 check check-ssl verify required ca-file /etc/ssl/ca.pem check-sni api.example\n",
    );
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert!(imported.config.vips[0].health.tls);
    for needle in [
        "h.cfg:6: verify required: HAProxy verified this server's certificate, in its checks too; lbd's checks over TLS (tls = true) verify none",
        "h.cfg:6: ca-file /etc/ssl/ca.pem: not carried over: lbd's checks over TLS (tls = true) verify no certificate",
        "h.cfg:6: check-sni api.example: not carried over: HAProxy sent it as its check's SNI only",
    ] {
        assert!(has_note(&imported, needle), "no {needle:?} in {:#?}", imported.notes);
    }
}
