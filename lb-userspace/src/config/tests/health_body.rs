//! `expect_body`: the text an HTTP check's body must contain, its rules,
//! its inheritance by backends and its dump.
use super::*;

/// A VIP with an HTTP check whose `[vip.health]` also has `extra`, and a
/// backend with `backend` appended.
fn http_doc(extra: &str, backend: &str) -> String {
    doc(
        &format!("[vip.health]\ncheck = \"http\"\npath = \"/health\"\n{extra}"),
        backend,
    )
}

#[test]
fn an_http_check_takes_expect_body_and_its_backends_inherit_it() {
    let config = parse(&http_doc(
        "expect_body = \"status: OK\\tready\"",
        "[vip.backend.health]\nrise = 5",
    ))
    .unwrap();
    let vip = &config.vips[0];
    assert_eq!(vip.health.expect_body.as_deref(), Some("status: OK\tready"));
    let own = vip.backends[0].health.as_ref().unwrap();
    assert_eq!(own.expect_body.as_deref(), Some("status: OK\tready"));
    assert_eq!(own.rise, 5);
    // Left out: the status alone decides.
    let config = parse(&http_doc("", "")).unwrap();
    assert_eq!(config.vips[0].health.expect_body, None);
    // A backend's own text overrides its VIP's; the longest allowed is fine.
    let longest = "x".repeat(crate::config::MAX_HEALTH_EXPECT_BODY_BYTES);
    let config = parse(&http_doc(
        "expect_body = \"OK\"",
        &format!("[vip.backend.health]\nexpect_body = \"{longest}\""),
    ))
    .unwrap();
    let own = config.vips[0].backends[0].health.as_ref().unwrap();
    assert_eq!(own.expect_body.as_deref(), Some(longest.as_str()));
}

#[test]
fn a_bad_expect_body_is_refused_by_name() {
    let too_long = "x".repeat(crate::config::MAX_HEALTH_EXPECT_BODY_BYTES + 1);
    let cases = [
        ("\"\"".to_owned(), "is empty"),
        (format!("\"{too_long}\""), "is 257 bytes long; at most 256"),
        ("\"OK\\nready\"".to_owned(), "contains a control character"),
        ("\"OK\\u0000\"".to_owned(), "contains a NUL byte"),
        ("200".to_owned(), "a string"),
    ];
    for (value, detail) in cases {
        let message = error(&http_doc(&format!("expect_body = {value}"), ""));
        assert!(
            message.contains("vip[0].health.expect_body") && message.contains(detail),
            "{value}: {message}"
        );
    }
}

#[test]
fn expect_body_without_an_http_check_is_refused() {
    // The default TCP check.
    let message = error(&doc("[vip.health]\nexpect_body = \"OK\"", ""));
    assert!(
        message.contains("vip[0].health.expect_body: only an HTTP check reads a body, and this check is \"tcp\" (check = \"tcp\" is the default)"),
        "{message}"
    );
    // A pgsql check the table chose.
    let message = error(&doc(
        "[vip.health]\ncheck = \"pgsql\"\nuser = \"lbd\"\nexpect_body = \"OK\"",
        "",
    ));
    assert!(
        message.contains("vip[0].health.expect_body: only an HTTP check reads a body, and this check is \"pgsql\": set check = \"http\""),
        "{message}"
    );
    // A backend's table that checks TCP and writes the key.
    let message = error(&http_doc(
        "",
        "[vip.backend.health]\ncheck = \"tcp\"\nexpect_body = \"OK\"",
    ));
    assert!(
        message.contains("vip[0].backend[0].health.expect_body: only an HTTP check"),
        "{message}"
    );
    // One that checks TCP under its VIP's text only inherits it: fine.
    let config = parse(&http_doc(
        "expect_body = \"OK\"",
        "[vip.backend.health]\ncheck = \"tcp\"",
    ))
    .unwrap();
    let own = config.vips[0].backends[0].health.as_ref().unwrap();
    assert_eq!(own.check, crate::config::CheckType::Tcp);
}

#[test]
fn expect_body_is_dumped_only_when_set_and_loads_back() {
    let config = parse(&http_doc(
        "expect_body = \"OK\"",
        "[vip.backend.health]\nexpect_body = \"ready\"",
    ))
    .unwrap();
    let dumped = to_toml(&config);
    let root: toml::Table = dumped.parse().unwrap();
    assert_eq!(root["vip"][0]["health"]["expect_body"].as_str(), Some("OK"));
    let backend = root["vip"][0]["backend"][0]["health"].as_table().unwrap();
    assert_eq!(
        backend.keys().collect::<Vec<_>>(),
        ["expect_body"],
        "{dumped}"
    );
    assert_eq!(parse(&dumped).unwrap(), config, "dumped:\n{dumped}");
    let plain = to_toml(&parse(&http_doc("", "")).unwrap());
    assert!(!plain.contains("expect_body"), "{plain}");
}
