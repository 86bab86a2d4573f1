//! Health check tables: VIP and backend overrides over the defaults,
//! their timing rules, HTTP paths and statuses.
use super::*;

#[test]
fn health_tables_override_the_vip_then_the_defaults() {
    let text = doc(
        "on_all_down = \"keep\"\ndrain_timeout_s = 30\n[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 1000\nrise = 3",
        "[vip.backend.health]\nport = 8080\nfall = 5",
    );
    let config = parse(&text).unwrap();
    let vip = &config.vips[0];
    assert_eq!(vip.on_all_down, AllDown::KeepLast);
    assert_eq!(vip.drain_timeout, Some(Duration::from_secs(30)));
    assert_eq!(vip.health.check, CheckType::Http);
    assert_eq!(vip.health.path, "/health");
    assert_eq!(vip.health.interval, Duration::from_millis(1000));
    assert_eq!((vip.health.rise, vip.health.fall), (3, 3));
    let backend = vip.backends[0].health.as_ref().unwrap();
    assert_eq!(backend.check, CheckType::Http, "inherited from the VIP");
    assert_eq!(backend.path, "/health");
    assert_eq!(backend.port, Some(8080));
    assert_eq!((backend.rise, backend.fall), (3, 5));
}

#[test]
fn udp_vips_are_not_checked_by_default() {
    let config = parse(&doc("protocol = \"udp\"", "")).unwrap();
    assert_eq!(config.vips[0].health.check, CheckType::None);
}

#[test]
fn bad_health_values_name_their_field() {
    assert_error(
        &doc("[vip.health]\ncheck = \"icmp\"", ""),
        "lbd.toml:6:9: vip[0].health.check: ",
        "\"icmp\" is not one of \"none\", \"tcp\", \"http\"",
    );
    assert_error(
        &doc("[vip.health]\npath = \"health\"", ""),
        "lbd.toml:6:8: vip[0].health.path: ",
        "not an absolute URL path",
    );
    let long_path = format!("/{}", "p".repeat(MAX_HEALTH_PATH_BYTES));
    assert_error(
        &doc(&format!("[vip.health]\npath = \"{long_path}\""), ""),
        "lbd.toml:6:8: vip[0].health.path: ",
        "is 1025 bytes long; at most 1024 are allowed",
    );
    let fits = &long_path[..MAX_HEALTH_PATH_BYTES];
    assert!(parse(&doc(&format!("[vip.health]\npath = \"{fits}\""), "")).is_ok());
    let long_host = "h".repeat(MAX_HEALTH_HOST_BYTES + 1);
    assert_error(
        &doc("", &format!("[vip.backend.health]\nhost = \"{long_host}\"")),
        "lbd.toml:9:8: vip[0].backend[0].health.host: ",
        "is 254 bytes long; at most 253 are allowed",
    );
    assert_error(
        &doc("[vip.health]\ntimeout_ms = 3000", ""),
        "lbd.toml:6:14: vip[0].health.timeout_ms: ",
        "timeout_ms (3000) is longer than interval_ms (2000, the default): set interval_ms too",
    );
    assert_error(
        &doc("", "[vip.backend.health]\nrise = 0"),
        "lbd.toml:9:8: vip[0].backend[0].health.rise: ",
        "out of range 1..=100",
    );
    assert_error(
        &doc("on_all_down = \"open\"", ""),
        "lbd.toml:5:15: vip[0].on_all_down: ",
        "is not one of",
    );
}

#[test]
fn health_timing_names_the_written_field_and_the_defaults() {
    assert_error(
        &doc("[vip.health]\ninterval_ms = 500", ""),
        "lbd.toml:6:15: vip[0].health.interval_ms: ",
        "interval_ms (500) is shorter than timeout_ms (1000, the default): set timeout_ms too",
    );
    assert_error(
        &doc("[vip.health]\ninterval_ms = 500\ntimeout_ms = 600", ""),
        "lbd.toml:7:14: vip[0].health.timeout_ms: ",
        "timeout_ms (600) is longer than interval_ms (500)",
    );
    // fast_interval_ms is never longer than interval_ms.
    assert_error(
        &doc("[vip.health]\nfast_interval_ms = 3000", ""),
        "lbd.toml:6:20: vip[0].health.fast_interval_ms: ",
        "fast_interval_ms (3000) is longer than interval_ms (2000, the default): set interval_ms too",
    );
    // A fast interval the table does not write follows a shorter
    // interval down, so a file that only shortens interval_ms loads.
    let config = parse(&doc(
        "[vip.health]\ninterval_ms = 400\ntimeout_ms = 300",
        "",
    ))
    .unwrap();
    assert_eq!(
        config.vips[0].health.fast_interval,
        Duration::from_millis(400)
    );
    // A backend's table names where the rest comes from.
    assert_error(
        &doc("[vip.health]\ninterval_ms = 1000", "[vip.backend.health]\ntimeout_ms = 1500"),
        "lbd.toml:10:14: vip[0].backend[0].health.timeout_ms: ",
        "timeout_ms (1500) is longer than interval_ms (1000, the VIP's or the default): set interval_ms too",
    );
    let config = parse(&doc(
        "[vip.health]\ninterval_ms = 400\nfast_interval_ms = 200\ntimeout_ms = 300",
        "",
    ))
    .unwrap();
    assert_eq!(
        config.vips[0].health.fast_interval,
        Duration::from_millis(200)
    );
    // The defaults keep these rules.
    let d = HealthConfig::default_for(Protocol::Tcp);
    assert!(d.timeout <= d.interval && d.fast_interval <= d.interval);
}

#[test]
fn a_check_path_is_one_a_request_can_carry_and_the_status_a_final_one() {
    for path in ["/a#frag", "/a<b>", "/`x`"] {
        let message = error(&doc(
            &format!("[vip.health]\ncheck = \"http\"\npath = \"{path}\""),
            "",
        ));
        assert!(
            message.contains("vip[0].health.path") && message.contains("an HTTP request can carry"),
            "{path}: {message}"
        );
    }
    assert!(parse(&doc(
        "[vip.health]\ncheck = \"http\"\npath = \"/health?full=1&x=%3C\"",
        ""
    ))
    .is_ok());
    let message = error(&doc(
        "[vip.health]\ncheck = \"http\"\nexpect_status = 100",
        "",
    ));
    assert!(message.contains("out of range 200..=599"), "{message}");
}
