//! keepalived's checkers (TCP_CHECK, HTTP_GET) as lbd's checks: their
//! defaults, settings inherited from the virtual and real server, the
//! url's keys, and what is capped or noted.

use std::time::Duration;

use super::*;
use crate::config::CheckType;

#[test]
fn a_real_server_with_several_checkers_keeps_the_first_and_says_so() {
    let text = "virtual_server 198.18.0.100 80 {\n  real_server 198.18.0.11 80 {\n    HTTP_GET {\n      url {\n        path /health\n        status_code 200\n      }\n    }\n    TCP_CHECK {\n      connect_timeout 3\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &with_nat());
    assert_eq!(imported.config.vips[0].health.check, CheckType::Http);
    assert!(has_note(
        &imported,
        "k.conf:9: WARNING: TCP_CHECK: a further checker of this real_server"
    ));
}

#[test]
fn http_get_statuses_and_retry_delay_follow_keepalived_defaults() {
    let text = "virtual_server 198.18.0.100 80 {\n  real_server 198.18.0.11 80 {\n    HTTP_GET {\n      url {\n        path /health\n      }\n    }\n  }\n}\nvirtual_server 198.18.0.100 81 {\n  real_server 198.18.0.11 81 {\n    HTTP_GET {\n      url {\n        path /health\n        status_code 300-399,204\n      }\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &with_nat());
    let first = &imported.config.vips[0].health;
    assert_eq!(first.expect_status, 200);
    assert_eq!(first.fast_interval, std::time::Duration::from_secs(3));
    assert!(has_note(
        &imported,
        "k.conf:5: url without status_code: keepalived takes any 2xx"
    ));
    assert_eq!(imported.config.vips[1].health.expect_status, 300);
    assert!(has_note(
        &imported,
        "k.conf:15: status_code 300-399,204: keepalived takes any of these"
    ));
    let bad = text.replace("300-399,204", "399-300");
    assert!(refused(&[("k.conf", &bad)], &with_nat())
        .starts_with("k.conf:15: status_code 399-300: not a status"));
}

#[test]
fn a_retry_delay_longer_than_the_loop_is_capped_to_it() {
    // keepalived's retry delay defaults to 3 s whatever the loop; lbd
    // checks a changing backend at least as often as a stable one.
    let text = "virtual_server 198.18.0.100 80 {\n  delay_loop 1\n  real_server 198.18.0.11 80 {\n    HTTP_GET {\n      url {\n        path /health\n        status_code 200\n      }\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &with_nat());
    let health = &imported.config.vips[0].health;
    assert_eq!(health.interval, Duration::from_secs(1));
    assert_eq!(health.fast_interval, Duration::from_secs(1));
    assert!(
        has_note(
            &imported,
            "longer than the interval; lbd takes the interval, 1000 ms"
        ),
        "{}",
        imported.text
    );
}

/// /tmp/audit-config/t3 of the audit: an HTTP_GET url with its own
/// virtualhost and a body regex.
const URL_HOST: &str = "vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        198.18.0.100
    }
}
virtual_server 198.18.0.100 80 {
    delay_loop 5
    lb_kind DR
    protocol TCP
    real_server 198.18.0.11 80 {
        weight 1
        HTTP_GET {
            url {
                path /health
                virtualhost app.example
                regex \"OK\"
                status_code 200
                fast_recovery on
            }
            connect_timeout 2
        }
    }
}
";

#[test]
fn a_urls_own_virtualhost_is_the_checks_host_and_its_other_keys_are_noted() {
    let imported = ok(&[("k.conf", URL_HOST)], &Options::default());
    let health = &imported.config.vips[0].health;
    assert_eq!(health.check, CheckType::Http);
    assert_eq!(health.host.as_deref(), Some("app.example"));
    assert!(
        has_note(
            &imported,
            "k.conf:18: WARNING: regex OK: lbd matches no regular expression (expect_body takes a plain text a healthy page contains): not carried over"
        ),
        "{:#?}",
        imported.notes
    );
    assert!(
        has_note(
            &imported,
            "k.conf:20: url fast_recovery on: not carried over"
        ),
        "{:#?}",
        imported.notes
    );
    // The url's virtualhost wins over the checker's, as in keepalived.
    let both = URL_HOST.replace(
        "            connect_timeout 2",
        "            connect_timeout 2\n            virtualhost other.example",
    );
    let imported = ok(&[("k.conf", &both)], &Options::default());
    assert_eq!(
        imported.config.vips[0].health.host.as_deref(),
        Some("app.example")
    );
    let checker_only = URL_HOST
        .replace("                virtualhost app.example\n", "")
        .replace(
            "            connect_timeout 2",
            "            connect_timeout 2\n            virtualhost other.example",
        );
    let imported = ok(&[("k.conf", &checker_only)], &Options::default());
    assert_eq!(
        imported.config.vips[0].health.host.as_deref(),
        Some("other.example")
    );
}

/// keepalived takes `virtualhost`, `connect_timeout`, `delay_loop`,
/// `retry` and `delay_before_retry` on the virtual_server and on each
/// real_server for their checkers, the lower level winning.
#[test]
fn checker_settings_of_the_virtual_and_real_server_reach_the_check() {
    let text = "virtual_server 198.18.0.100 80 {\n  lb_kind DR\n  virtualhost app.example\n  retry 3\n  connect_timeout 2\n  delay_before_retry 1\n  real_server 198.18.0.11 80 {\n    delay_loop 4\n    HTTP_GET {\n      url {\n        path /health\n        status_code 200\n      }\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &on_eth0());
    let health = &imported.config.vips[0].health;
    assert_eq!(health.check, CheckType::Http);
    assert_eq!(health.host.as_deref(), Some("app.example"));
    assert_eq!(health.fall, 4);
    assert_eq!(health.interval, Duration::from_secs(4));
    assert_eq!(health.timeout, Duration::from_secs(2));
    assert_eq!(health.fast_interval, Duration::from_secs(1));
    let written = &imported.text;
    for expected in [
        "k.conf:4 (retry 3, plus the first failure)",
        "k.conf:8 (delay_loop 4)",
        "k.conf:5 (connect_timeout 2)",
        "k.conf:3 (virtualhost app.example)",
    ] {
        assert!(written.contains(expected), "no {expected:?} in\n{written}");
    }
    for wrong in [
        "retry: keepalived's default",
        "delay_loop: keepalived's default",
        "connect_timeout: keepalived's default",
    ] {
        assert!(!written.contains(wrong), "{wrong:?} in\n{written}");
    }
    assert!(
        !has_note(&imported, "not carried over"),
        "{:#?}",
        imported.notes
    );
    // The checker's own over the real_server's over the virtual_server's.
    let own = text.replace(
        "    HTTP_GET {\n",
        "    retry 0\n    HTTP_GET {\n      retry 5\n      virtualhost own.example\n",
    );
    let health = ok(&[("k.conf", &own)], &on_eth0()).config.vips[0]
        .health
        .clone();
    assert_eq!(
        (health.fall, health.host.as_deref()),
        (6, Some("own.example"))
    );
    // What lbd has no equivalent of is said.
    let warmup = text.replace("  retry 3\n", "  warmup 10\n  alpha\n");
    let imported = ok(&[("k.conf", &warmup)], &on_eth0());
    assert!(has_note(
        &imported,
        "k.conf:4: warmup 10: keepalived delayed"
    ));
    assert!(has_note(&imported, "k.conf:5: alpha: keepalived started"));
}

/// A check timeout above the interval lbd cannot keep is said, not only
/// commented.
#[test]
fn a_check_timeout_capped_to_the_interval_is_noted() {
    let text = "virtual_server 198.18.0.100 80 {\n  lb_kind DR\n  delay_loop 2\n  real_server 198.18.0.11 80 {\n    TCP_CHECK {\n      connect_timeout 5\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &on_eth0());
    assert_eq!(
        imported.config.vips[0].health.timeout,
        Duration::from_secs(2)
    );
    assert!(
        has_note(
            &imported,
            "k.conf:6: a check timeout of 5000 ms is longer than the interval"
        ),
        "{:#?}",
        imported.notes
    );
}

/// A url's `digest` (an MD5 of the whole page) is not carried over; the
/// note says why and points at `expect_body`, which no digest becomes.
#[test]
fn a_urls_digest_is_noted_with_expect_body_as_the_way_to_check_the_page() {
    let text = URL_HOST.replace("regex \"OK\"", "digest 9b3a0c85a887a256d6939da88aabd8cd");
    let imported = ok(&[("k.conf", &text)], &Options::default());
    let health = &imported.config.vips[0].health;
    assert_eq!(
        (health.check, health.expect_body.as_deref()),
        (CheckType::Http, None)
    );
    assert!(
        has_note(
            &imported,
            "k.conf:18: digest: not carried over: lbd compares no MD5 of the whole page, which no text in it can stand for; to check the page too, set expect_body"
        ),
        "{:#?}",
        imported.notes
    );
}

/// `SSL_GET` is HTTP_GET over TLS: lbd's `check = "http"` with
/// `tls = true` (keepalived verifies no certificate either); HTTP_GET
/// stays in the clear.
#[test]
fn ssl_get_is_an_http_check_over_tls() {
    let text = "virtual_server 198.18.0.100 443 {\n  real_server 198.18.0.11 443 {\n    SSL_GET {\n      url {\n        path /health\n        status_code 204\n      }\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &with_nat());
    let health = &imported.config.vips[0].health;
    assert_eq!(
        (
            health.check,
            health.tls,
            health.path.as_str(),
            health.expect_status
        ),
        (CheckType::Http, true, "/health", 204)
    );
    assert!(
        !has_note(&imported, "speak no TLS"),
        "{:#?}",
        imported.notes
    );
    assert!(
        imported.text.contains("# k.conf:3 (SSL_GET: over TLS)"),
        "{}",
        imported.text
    );
    let clear = ok(
        &[("k.conf", &text.replace("SSL_GET", "HTTP_GET"))],
        &with_nat(),
    );
    assert!(!clear.config.vips[0].health.tls);
}
