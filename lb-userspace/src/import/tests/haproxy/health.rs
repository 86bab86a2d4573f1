//! HAProxy's health-check settings as lbd's checks: protocol checks,
//! settings written after the servers, `option httpchk`'s Host, a
//! backend's own health table, and the check keywords of a server.

use super::*;
use crate::config::CheckType;

/// `option pgsql-check` without `user` names no role for lbd's pgsql
/// check (which needs one): a TCP check, saying why; other protocol
/// checks stay TCP.
#[test]
fn a_pgsql_check_without_a_user_and_other_protocol_checks_stay_tcp() {
    for (option, note) in [
        ("option pgsql-check", "option pgsql-check: names no role lbd's pgsql check can log in as"),
        ("option mysql-check user haproxy", "option mysql-check user haproxy: lbd checks that a TCP connection opens; the protocol is not spoken"),
    ] {
        let haproxy = format!(
            "listen db\n    bind *:5432\n    mode tcp\n    {option}\n    server s1 198.18.0.11:5432 check\n"
        );
        let imported = ok(
            &[("haproxy.cfg", haproxy.as_str()), ("keepalived.conf", KEEPALIVED)],
            &Options::default(),
        );
        let vip = &imported.config.vips[0];
        assert_eq!(vip.health.check, CheckType::Tcp, "{option}");
        assert_eq!(vip.health.user, None);
        assert!(
            imported.notes.iter().any(|n| n.contains(note)),
            "{note:?} in {:?}",
            imported.notes
        );
    }
}

#[test]
fn check_settings_after_the_servers_still_apply() {
    let text = tcp_haproxy("backend be\n  server web1 198.18.0.11:80 check\n  option httpchk GET /healthz\n  http-check expect status 204\n  timeout check 500ms\nfrontend fe\n  bind 198.18.0.100:80\n  default_backend be\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    let health = &imported.config.vips[0].health;
    assert_eq!(health.check, CheckType::Http);
    assert_eq!(
        (health.path.as_str(), health.expect_status),
        ("/healthz", 204)
    );
    assert_eq!(health.timeout, std::time::Duration::from_millis(500));
}

#[test]
fn an_old_style_httpchk_host_header_is_found_after_its_escapes() {
    let text = tcp_haproxy("listen web\n  bind 198.18.0.100:80\n  option httpchk GET /healthz HTTP/1.1\\r\\nHost:\\ app.example.com\n  server w1 198.18.0.11:80 check\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(
        imported.config.vips[0].health.host.as_deref(),
        Some("app.example.com")
    );
    // The comment shows the escapes again: one line of valid TOML.
    assert!(
        imported
            .text
            .contains("HTTP/1.1\\r\\nHost: app.example.com"),
        "{}",
        imported.text
    );
    let bad = tcp_haproxy("listen web\n  bind 198.18.0.100:80\n  option httpchk GET /\\xZZ\n");
    assert!(refused(&[("h.cfg", &bad)], &on_eth0()).starts_with("h.cfg:6: \\xZZ: an invalid"));
}

/// A backend with a check of its own port gets its own health table; a
/// backend checked at its own port beside it must not inherit the VIP's
/// other port through lbd's key-by-key merge.
#[test]
fn a_backends_own_health_table_does_not_inherit_the_vips_check_port_or_host() {
    let text = tcp_haproxy("listen web\n  bind 198.18.0.100:80\n  server a 198.18.0.11:80 check port 8080\n  server b 198.18.0.12:80 check\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    let vip = &imported.config.vips[0];
    assert_eq!(vip.health.port, Some(8080));
    let b = vip.backends[1]
        .health
        .as_ref()
        .expect("b has its own health table");
    // Checked at its own port, 80, as HAProxy did (None would be the same).
    assert!(b.port.is_none_or(|p| p == 80), "b checked on {:?}", b.port);
    // The same for the Host of an HTTP check (keepalived's virtualhost).
    let text = "virtual_server 198.18.0.100 80 {\n  lb_kind DR\n  real_server 198.18.0.11 80 {\n    HTTP_GET {\n      url {\n        path /health\n        status_code 200\n      }\n      virtualhost www.example\n    }\n  }\n  real_server 198.18.0.12 80 {\n    HTTP_GET {\n      url {\n        path /health\n        status_code 200\n      }\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &on_eth0());
    let vip = &imported.config.vips[0];
    assert_eq!(vip.health.host.as_deref(), Some("www.example"));
    let second = vip.backends[1]
        .health
        .as_ref()
        .expect("the second has its own health table");
    assert!(
        second.host.as_deref().is_none_or(|h| h == "198.18.0.12"),
        "second sends Host {:?}",
        second.host
    );
}

#[test]
fn cut_sessions_on_a_state_change_are_warned_about_and_downinter_says_when_lbd_checks() {
    let text = tcp_haproxy("listen pg\n  bind 198.18.0.100:5432\n  server pg1 198.18.0.11:5432 check downinter 5s on-marked-down shutdown-sessions\n  server pg2 198.18.0.12:5432 check on-marked-up shutdown-backup-sessions\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    for needle in [
        "h.cfg:6: WARNING: on-marked-down shutdown-sessions: lbd does not cut a backend's connections",
        "h.cfg:7: WARNING: on-marked-up shutdown-backup-sessions: lbd does not cut the connections of backups",
        "h.cfg:6: downinter 5s: lbd checks a down backend every interval",
    ] {
        assert!(has_note(&imported, needle), "no {needle:?} in {:#?}", imported.notes);
    }
}
