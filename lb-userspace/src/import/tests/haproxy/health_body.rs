//! `http-check expect string` as lbd's `expect_body`, inherited from
//! `defaults` as the status is; the matches lbd cannot make, noted.

use super::*;

/// A TCP-mode listener on 198.18.0.100:80 with an HTTP check whose lines
/// are `check` (after `option httpchk GET /health`, line 7 on).
fn checked(check: &str) -> String {
    tcp_haproxy(&format!(
        "listen web\n  bind 198.18.0.100:80\n  option httpchk GET /health\n{check}  server w1 198.18.0.11:80 check\n"
    ))
}

#[test]
fn expect_string_becomes_expect_body_with_its_line() {
    let text = checked("  http-check expect string OK\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    let health = &imported.config.vips[0].health;
    assert_eq!(health.expect_body.as_deref(), Some("OK"));
    assert_eq!(health.expect_status, 200);
    let line = imported
        .text
        .lines()
        .find(|l| l.trim_start().starts_with("expect_body = \"OK\""))
        .unwrap_or_default();
    assert!(
        line.ends_with("# h.cfg:7 (http-check expect string OK)"),
        "{}",
        imported.text
    );
    // HAProxy's string rule judges the body alone; lbd's also the status.
    assert!(
        has_note(
            &imported,
            "HAProxy's http-check expect string OK takes any status whose body has the text; lbd's check also expects exactly 200"
        ),
        "{:#?}",
        imported.notes
    );
}

#[test]
fn expect_string_keeps_the_expected_status_and_takes_quoted_text() {
    let text =
        checked("  http-check expect status 204\n  http-check expect string \"status: OK\"\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    let health = &imported.config.vips[0].health;
    assert_eq!(
        (health.expect_status, health.expect_body.as_deref()),
        (204, Some("status: OK"))
    );
    assert!(
        !has_note(&imported, "takes any status"),
        "{:#?}",
        imported.notes
    );
}

#[test]
fn expect_string_in_defaults_is_inherited() {
    let text = "defaults\n  mode http\n  timeout connect 5s\n  option httpchk GET /ready\n  http-check expect string ready\nlisten web\n  bind 198.18.0.100:80\n  server w1 198.18.0.11:80 check\n";
    let imported = ok(&[("h.cfg", text)], &on_eth0());
    let health = &imported.config.vips[0].health;
    assert_eq!(
        (health.path.as_str(), health.expect_body.as_deref()),
        ("/ready", Some("ready"))
    );
}

#[test]
fn matches_lbd_cannot_make_are_noted_not_carried() {
    for (line, why) in [
        (
            "http-check expect ! string maintenance",
            "lbd's check has no negated match",
        ),
        (
            "http-check expect ! status 500",
            "lbd's check has no negated match",
        ),
        (
            "http-check expect rstring ^OK",
            "lbd matches no regular expression",
        ),
        (
            "http-check expect ! rstring down",
            "lbd's check has no negated match",
        ),
        (
            "http-check expect rstatus ^2",
            "lbd matches no regular expression",
        ),
        (
            "http-check expect hdr name x-ok",
            "lbd's check expects one status code",
        ),
    ] {
        let text = checked(&format!("  {line}\n"));
        let imported = ok(&[("h.cfg", &text)], &on_eth0());
        let health = &imported.config.vips[0].health;
        assert_eq!(health.expect_body, None, "{line}");
        let note = format!("h.cfg:7: {line}: not carried over ({why}");
        assert!(
            has_note(&imported, &note),
            "{note:?} in {:#?}",
            imported.notes
        );
    }
}

#[test]
fn a_text_lbd_refuses_is_noted_not_carried() {
    let long = "x".repeat(257);
    let text = checked(&format!("  http-check expect string {long}\n"));
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(imported.config.vips[0].health.expect_body, None);
    assert!(
        has_note(
            &imported,
            "not carried over (expect_body is 257 bytes long; at most 256 are allowed)"
        ),
        "{:#?}",
        imported.notes
    );
}

#[test]
fn an_expects_options_before_its_match_are_read_past() {
    // Log-only options: the match is carried, no note about them.
    let text = checked("  http-check expect comment body-check min-recv 10 string OK\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(
        imported.config.vips[0].health.expect_body.as_deref(),
        Some("OK")
    );
    assert!(
        !imported
            .notes
            .iter()
            .any(|n| n.contains("not carried over")),
        "{:#?}",
        imported.notes
    );
    let text = checked("  http-check expect on-error check-failed status 204\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(imported.config.vips[0].health.expect_status, 204);
    // A state HAProxy would set: the match carried, the state noted.
    let text = checked("  http-check expect ok-status L7OKC string OK\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(
        imported.config.vips[0].health.expect_body.as_deref(),
        Some("OK")
    );
    assert!(
        has_note(
            &imported,
            "http-check expect ok-status L7OKC string OK: ok-status L7OKC not carried over (lbd's check makes a backend up or down, no other state)"
        ),
        "{:#?}",
        imported.notes
    );
}
