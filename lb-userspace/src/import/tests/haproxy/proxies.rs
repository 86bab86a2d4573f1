//! Which proxies become services: default_backend of a listen or of
//! defaults, and the proxies skipped with a note (disabled, stats only,
//! `mode log`/`spop`, use_backend rules only).

use super::*;

#[test]
fn a_disabled_proxy_is_not_imported_and_says_so() {
    let text = tcp_haproxy("listen old_pg\n  bind 198.18.0.100:5433\n  disabled\n  server pg1 198.18.0.11:5433 check\nlisten pg\n  bind 198.18.0.100:5432\n  server pg1 198.18.0.11:5432\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(imported.config.vips.len(), 1);
    assert_eq!(imported.config.vips[0].port, 5432);
    assert!(has_note(&imported, "h.cfg:6: listen old_pg is disabled"));
}

#[test]
fn a_stats_only_listen_is_not_imported() {
    let text = tcp_haproxy("listen stats\n  bind 198.18.0.100:8404\n  mode http\n  stats enable\n  stats uri /\nlisten pg\n  bind 198.18.0.100:5432\n  server pg1 198.18.0.11:5432\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(imported.config.vips.len(), 1);
    assert!(has_note(
        &imported,
        "h.cfg:7: listen stats serves HAProxy's statistics page"
    ));
}

/// HAProxy takes `default_backend` in a listen: its connections go there,
/// not to its own servers. Only a frontend's was read: the listen's VIP
/// was imported without backends.
#[test]
fn a_default_backend_of_a_listen_takes_its_connections() {
    let listen = tcp_haproxy("listen web\n  bind 198.18.0.100:80\n  default_backend app\nbackend app\n  server a1 198.18.0.11:80 check\n  server a2 198.18.0.12:80 check\n");
    let imported = ok(&[("h.cfg", &listen)], &on_eth0());
    let vip = &imported.config.vips[0];
    assert_eq!(
        weights(vip),
        [(ip("198.18.0.11"), 100), (ip("198.18.0.12"), 100)]
    );
    assert!(
        !has_note(&imported, "backend app is no frontend's default_backend"),
        "{:#?}",
        imported.notes
    );
    // With servers of its own, the default_backend's still take the
    // connections, as in HAProxy; its own are said to be left out.
    let both = listen.replace(
        "  default_backend app\n",
        "  default_backend app\n  server own 198.18.0.21:80\n",
    );
    let imported = ok(&[("h.cfg", &both)], &on_eth0());
    assert_eq!(
        weights(&imported.config.vips[0]),
        [(ip("198.18.0.11"), 100), (ip("198.18.0.12"), 100)]
    );
    assert!(
        has_note(
            &imported,
            "h.cfg:7: listen web: HAProxy sends its connections to its default_backend app (h.cfg:6), not to its own servers: those are not imported"
        ),
        "{:#?}",
        imported.notes
    );
}

/// A `default_backend` in defaults is every later frontend's (and
/// listen's), as in HAProxy; each frontend was skipped as having none.
#[test]
fn a_default_backend_of_defaults_is_the_frontends_after_it() {
    // The frontends after it use it, unless they name their own.
    let defaults = "defaults\n  mode tcp\n  default_backend app\nfrontend web\n  bind 198.18.0.100:80\nfrontend web2\n  bind 198.18.0.101:80\n  default_backend other\nbackend app\n  server a1 198.18.0.11:80\nbackend other\n  server o1 198.18.0.31:80\n";
    let imported = ok(&[("h.cfg", defaults)], &on_eth0());
    let vips = &imported.config.vips;
    assert_eq!(vips.len(), 2, "{:#?}", imported.notes);
    assert_eq!(weights(&vips[0]), [(ip("198.18.0.11"), 100)]);
    assert_eq!(weights(&vips[1]), [(ip("198.18.0.31"), 100)]);
    assert!(!has_note(&imported, "has no default_backend"));
    assert!(!has_note(&imported, "default_backend app (line 3)"));
    // A name no section has is refused at the defaults line.
    assert_eq!(
        refused(
            &[(
                "h.cfg",
                &defaults.replace("default_backend app", "default_backend gone")
            )],
            &on_eth0()
        ),
        "h.cfg:3: default_backend gone: no backend section of that name"
    );
}

/// `mode log` (2.9+) and `mode spop` (3.1+) proxies serve no clients:
/// skipped with a warning, the rest imported.
#[test]
fn log_and_spop_backends_are_skipped_with_a_warning() {
    let with = format!("{HAPROXY}backend syslog\n    mode log\n    server s 198.18.0.9:514\nbackend agents\n    mode spop\n    server a 198.18.0.8:12345\n");
    let imported = ok(
        &[("haproxy.cfg", &with), ("keepalived.conf", KEEPALIVED)],
        &Options::default(),
    );
    assert_eq!(imported.config.vips.len(), 1);
    assert!(
        has_note(
            &imported,
            "haproxy.cfg:24: WARNING: backend syslog is in mode log"
        ),
        "{:#?}",
        imported.notes
    );
    assert!(has_note(
        &imported,
        "haproxy.cfg:27: WARNING: backend agents is in mode spop"
    ));
    // A frontend sending its connections to one is skipped too.
    let used = format!("{TCP}frontend f\n  bind 198.18.0.100:514\n  default_backend syslog\nlisten l\n  bind 198.18.0.100:80\n  server w 198.18.0.11:80\nbackend syslog\n  mode log\n  server s 198.18.0.9:514\n");
    let imported = ok(&[("h.cfg", &used)], &on_eth0());
    assert_eq!(imported.config.vips.len(), 1);
    assert!(
        has_note(
            &imported,
            "h.cfg:11: WARNING: backend syslog, the default_backend of frontend f, is in mode log"
        ),
        "{:#?}",
        imported.notes
    );
}

/// A frontend that routes only with use_backend (SNI routing) is not
/// imported: a WARNING naming it and its rules, not a plain NOTE.
#[test]
fn a_frontend_of_use_backend_rules_only_is_dropped_with_a_warning() {
    let text = format!("{TCP}frontend tls_sni\n  bind *:443\n  tcp-request inspect-delay 5s\n  use_backend be_a if {{ req_ssl_sni -i a.example.com }}\n  use_backend be_b if {{ req_ssl_sni -i b.example.com }}\nbackend be_a\n  server a 10.0.1.11:443\nbackend be_b\n  server b 10.0.1.12:443\nlisten other\n  bind 198.18.0.101:8000\n  server o 10.0.1.21:8000\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.starts_with("h.cfg:4: WARNING: frontend tls_sni")
                && n.contains("use_backend be_a")
                && n.contains("line 8")),
        "{:#?}",
        imported.notes
    );
}
