//! `slowstart` on servers and `default-server` as the VIP's
//! `slow_start_s`: whole seconds rounded up, at most an hour, the longest
//! of a VIP's servers, inherited from `defaults`, 0 as off.

use std::time::Duration;

use super::*;

/// A listen on 198.18.0.100:80 with `lines` (servers, default-server)
/// after its bind; its first line is line 6.
fn listen(lines: &str) -> String {
    tcp_haproxy(&format!("listen web\n  bind 198.18.0.100:80\n{lines}"))
}

/// The VIP's slow start as lbd loads the imported text.
fn slow_start(imported: &Imported) -> Option<Duration> {
    imported.config.vips[0].slow_start
}

#[test]
fn a_servers_slowstart_is_the_vips_slow_start_in_whole_seconds_rounded_up() {
    for (time, seconds, comment) in [
        ("30s", 30, "h.cfg:6 (slowstart 30s)"),
        ("2m", 120, "h.cfg:6 (slowstart 2m)"),
        // HAProxy's default unit is the millisecond.
        ("10000", 10, "h.cfg:6 (slowstart 10000)"),
        (
            "500ms",
            1,
            "h.cfg:6 (slowstart 500ms), rounded up to whole seconds",
        ),
        (
            "1500ms",
            2,
            "h.cfg:6 (slowstart 1500ms), rounded up to whole seconds",
        ),
    ] {
        let text = listen(&format!(
            "  server w1 198.18.0.11:80 check slowstart {time}\n  server w2 198.18.0.12:80 check slowstart {time}\n"
        ));
        let imported = ok(&[("h.cfg", &text)], &on_eth0());
        assert_eq!(
            slow_start(&imported),
            Some(Duration::from_secs(seconds)),
            "{time}"
        );
        assert_eq!(
            slow_start_line(&imported),
            Some(format!("slow_start_s = {seconds} # {comment}"))
        );
        // The same on every server: nothing to say of them.
        assert!(!has_note(&imported, "per VIP"), "{:#?}", imported.notes);
    }
}

#[test]
fn when_haproxy_and_lbd_ramp_a_server_up_is_noted() {
    let text = listen("  server w1 198.18.0.11:80 check slowstart 10s\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert!(has_note(
        &imported,
        "h.cfg:6: slowstart 10s: HAProxy ramps a server up only when it comes back from failed checks or out of maintenance; lbd also ramps a backend that comes out of drain, is added at run time or has its weight raised from 0 (neither ramps at start)"
    ));
    assert!(!has_note(&imported, "weights are static"));
}

#[test]
fn slowstart_0_is_off_and_undoes_a_default_servers() {
    let text = listen("  server w1 198.18.0.11:80 check slowstart 0\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(slow_start(&imported), None);
    assert_eq!(slow_start_line(&imported), None);
    assert!(!has_note(&imported, "slowstart"), "{:#?}", imported.notes);
    let text = listen(
        "  default-server check slowstart 10s\n  server w1 198.18.0.11:80 slowstart 0\n  server w2 198.18.0.12:80 slowstart 0s\n",
    );
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(slow_start(&imported), None);
}

#[test]
fn a_slowstart_past_an_hour_is_an_hour_with_a_note() {
    let text = listen("  server w1 198.18.0.11:80 check slowstart 2h\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(slow_start(&imported), Some(Duration::from_secs(3600)));
    assert_eq!(
        slow_start_line(&imported).as_deref(),
        Some("slow_start_s = 3600 # h.cfg:6 (slowstart 2h), at most 3600 s")
    );
    assert!(has_note(
        &imported,
        "h.cfg:6: slowstart 2h (server w1): longer than lbd's longest slow start, 3600 s (an hour): slow_start_s = 3600"
    ));
}

#[test]
fn servers_with_different_slowstarts_give_the_longest_with_a_note() {
    let text = listen(
        "  server w1 198.18.0.11:80 check slowstart 10s\n  server w2 198.18.0.12:80 check slowstart 30s\n  server w3 198.18.0.13:80 check\n",
    );
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(slow_start(&imported), Some(Duration::from_secs(30)));
    assert_eq!(
        slow_start_line(&imported).as_deref(),
        Some("slow_start_s = 30 # h.cfg:7 (slowstart 30s)")
    );
    assert!(has_note(
        &imported,
        "h.cfg:7: lbd's slow start is per VIP, not per server: the servers' differ (w1 slowstart 10s (h.cfg:6), w2 slowstart 30s (h.cfg:7), w3 none); slow_start_s = 30, the longest, ramps every backend of the VIP"
    ));
}

#[test]
fn a_default_server_slowstart_is_inherited_from_the_section_and_from_defaults() {
    // defaults' default-server reaches every later proxy's servers.
    let text = "defaults\n  mode tcp\n  default-server slowstart 20s\nlisten web\n  bind 198.18.0.100:80\n  server w1 198.18.0.11:80 check\n";
    let imported = ok(&[("h.cfg", text)], &on_eth0());
    assert_eq!(slow_start(&imported), Some(Duration::from_secs(20)));
    assert_eq!(
        slow_start_line(&imported).as_deref(),
        Some("slow_start_s = 20 # h.cfg:3 (slowstart 20s)")
    );
    // The section's own default-server, then the server's own, win.
    let text = "defaults\n  mode tcp\n  default-server slowstart 20s\nfrontend f\n  bind 198.18.0.100:80\n  default_backend b\nbackend b\n  default-server slowstart 5s\n  server w1 198.18.0.11:80 check\n  server w2 198.18.0.12:80 check slowstart 8s\n";
    let imported = ok(&[("h.cfg", text)], &on_eth0());
    assert_eq!(slow_start(&imported), Some(Duration::from_secs(8)));
    assert!(has_note(
        &imported,
        "the servers' differ (w1 slowstart 5s (h.cfg:8), w2 slowstart 8s (h.cfg:10))"
    ));
    // A named defaults section, taken with `from`.
    let text = "defaults slow\n  mode tcp\n  default-server slowstart 1m\ndefaults\n  mode tcp\nlisten web from slow\n  bind 198.18.0.100:80\n  server w1 198.18.0.11:80 check\n";
    let imported = ok(&[("h.cfg", text)], &on_eth0());
    assert_eq!(slow_start(&imported), Some(Duration::from_secs(60)));
}

#[test]
fn a_static_balance_is_noted_as_ramping_no_weight_in_haproxy() {
    let note = "h.cfg:7: slowstart 10s: under balance source (h.cfg:6) HAProxy's weights are static, so its slowstart ramped only the server's connection limit (maxconn), not its share of connections; lbd ramps the backend's share of new flows";
    let text = listen("  balance source\n  server w1 198.18.0.11:80 check slowstart 10s\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert!(has_note(&imported, note), "{:#?}", imported.notes);
    assert_eq!(slow_start(&imported), Some(Duration::from_secs(10)));
    // A consistent hash is dynamic: HAProxy ramped the weight.
    let text = listen(
        "  balance source\n  hash-type consistent\n  server w1 198.18.0.11:80 check slowstart 10s\n",
    );
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert!(!has_note(&imported, "weights are static"));
    let text = listen("  balance static-rr\n  server w1 198.18.0.11:80 check slowstart 10s\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert!(has_note(&imported, "under balance static-rr (h.cfg:6)"));
    let text = listen("  balance leastconn\n  server w1 198.18.0.11:80 check slowstart 10s\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert!(!has_note(&imported, "weights are static"));
}

#[test]
fn a_malformed_slowstart_is_refused_at_its_line() {
    let text = listen("  server w1 198.18.0.11:80 check slowstart 10x\n");
    assert_eq!(
        refused(&[("h.cfg", &text)], &on_eth0()),
        "h.cfg:6: slowstart 10x: \"10x\" is not a time such as 2s or 500ms"
    );
    let text = "defaults\n  mode tcp\n  default-server slowstart soon\nlisten web\n  bind 198.18.0.100:80\n  server w1 198.18.0.11:80\n";
    assert_eq!(
        refused(&[("h.cfg", text)], &on_eth0()),
        "h.cfg:3: slowstart soon: \"soon\" is not a time such as 2s or 500ms"
    );
}
