//! Refused health objects name the field in the file's words, as the file
//! would.
use super::*;

/// The file's message without its place (`lbd.toml:7:3: `) and field,
/// and the field: `vip[0].health.rise: 0 is...` -> (`vip[0].health.rise`,
/// `0 is ...`).
fn file_refusal(text: &str) -> (String, String) {
    let message = match Config::from_toml_str(text, "lbd.toml") {
        Ok(config) => panic!("the file took {text}: {:?}", config.vips[0]),
        Err(e) => e.to_string(),
    };
    let rest = message
        .strip_prefix("lbd.toml:")
        .and_then(|m| m.split_once(": "))
        .map_or(message.as_str(), |(_, rest)| rest);
    let (field, words) = rest.split_once(": ").unwrap();
    (field.to_owned(), words.to_owned())
}

#[test]
fn health_refusals_name_the_field_in_the_file_words() {
    let none = serde_json::Value::Null;
    for (forwarding, vip, backend, field) in [
        (
            "dsr-l2",
            json!({"check": "icmp"}),
            none.clone(),
            "health.check",
        ),
        ("dsr-l2", json!({"port": 0}), none.clone(), "health.port"),
        (
            "dsr-l2",
            json!({"port": 65_536}),
            none.clone(),
            "health.port",
        ),
        (
            "dsr-l2",
            json!({"path": "healthz"}),
            none.clone(),
            "health.path",
        ),
        (
            "dsr-l2",
            json!({"path": "/a b"}),
            none.clone(),
            "health.path",
        ),
        (
            "dsr-l2",
            json!({"path": format!("/{}", "x".repeat(1024))}),
            none.clone(),
            "health.path",
        ),
        ("dsr-l2", json!({"host": ""}), none.clone(), "health.host"),
        (
            "dsr-l2",
            json!({"check": "pgsql"}),
            none.clone(),
            "health.check",
        ),
        (
            "dsr-l2",
            json!({"check": "pgsql", "user": ""}),
            none.clone(),
            "health.user",
        ),
        (
            "dsr-l2",
            json!({"check": "pgsql", "user": "u", "database": "a\u{0}b"}),
            none.clone(),
            "health.database",
        ),
        (
            "dsr-l2",
            json!({"host": "a\tb"}),
            none.clone(),
            "health.host",
        ),
        (
            "dsr-l2",
            json!({"host": "h".repeat(254)}),
            none.clone(),
            "health.host",
        ),
        (
            "dsr-l2",
            json!({"expect_status": 600}),
            none.clone(),
            "health.expect_status",
        ),
        (
            "dsr-l2",
            json!({"check": "http", "expect_body": ""}),
            none.clone(),
            "health.expect_body",
        ),
        (
            "dsr-l2",
            json!({"check": "http", "expect_body": "x".repeat(257)}),
            none.clone(),
            "health.expect_body",
        ),
        (
            "dsr-l2",
            json!({"check": "http", "expect_body": "OK\r\n"}),
            none.clone(),
            "health.expect_body",
        ),
        (
            "dsr-l2",
            json!({"expect_body": "OK"}),
            none.clone(),
            "health.expect_body",
        ),
        (
            "dsr-l2",
            json!({"check": "none", "tls": true}),
            none.clone(),
            "health.tls",
        ),
        (
            "dsr-l2",
            json!({"check": "http"}),
            json!({"check": "pgsql", "user": "u", "tls": true}),
            "backends[0].health.tls",
        ),
        (
            "dsr-l2",
            json!({"check": "http"}),
            json!({"check": "pgsql", "user": "u", "expect_body": "OK"}),
            "backends[0].health.expect_body",
        ),
        (
            "dsr-l2",
            json!({"interval_ms": 9}),
            none.clone(),
            "health.interval_ms",
        ),
        (
            "dsr-l2",
            json!({"fast_interval_ms": 3_600_001}),
            none.clone(),
            "health.fast_interval_ms",
        ),
        (
            "dsr-l2",
            json!({"timeout_ms": -1}),
            none.clone(),
            "health.timeout_ms",
        ),
        ("dsr-l2", json!({"rise": 0}), none.clone(), "health.rise"),
        ("dsr-l2", json!({"fall": 101}), none.clone(), "health.fall"),
        (
            "dsr-l2",
            json!({"through_tunnel": true}),
            none.clone(),
            "health.through_tunnel",
        ),
        (
            "nat",
            none.clone(),
            json!({"through_tunnel": true}),
            "backends[0].health.through_tunnel",
        ),
        // Timing: both given, one given against the default, the other.
        (
            "dsr-l2",
            json!({"interval_ms": 500, "timeout_ms": 600}),
            none.clone(),
            "health.timeout_ms",
        ),
        (
            "dsr-l2",
            json!({"timeout_ms": 3000}),
            none.clone(),
            "health.timeout_ms",
        ),
        (
            "dsr-l2",
            json!({"interval_ms": 500}),
            none.clone(),
            "health.interval_ms",
        ),
        (
            "dsr-l2",
            json!({"fast_interval_ms": 3000}),
            none.clone(),
            "health.fast_interval_ms",
        ),
        (
            "dsr-l2",
            json!({"interval_ms": 100, "fast_interval_ms": 200, "timeout_ms": 50}),
            none.clone(),
            "health.fast_interval_ms",
        ),
        // A backend's timing against the VIP's.
        (
            "dsr-l2",
            json!({"interval_ms": 1000}),
            json!({"timeout_ms": 1500}),
            "backends[0].health.timeout_ms",
        ),
        (
            "dsr-l2",
            json!({"interval_ms": 1000}),
            json!({"interval_ms": 800}),
            "backends[0].health.interval_ms",
        ),
        (
            "dsr-l2",
            none.clone(),
            json!({"rise": 101}),
            "backends[0].health.rise",
        ),
    ] {
        let mut text = health_file(forwarding, &vip, &backend);
        if forwarding == "nat" {
            text = text.replace("[[vip]]", "[nat]\nsource_ipv4 = \"198.18.0.50\"\n[[vip]]");
        }
        let nat = Config::from_toml_str(
            "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n",
            "lbd.toml",
        )
        .unwrap()
        .nat;
        let (file_field, file_words) = file_refusal(&text);
        let spec = health_body(forwarding, &vip, &backend);
        let error = match vip_config(&spec, &nat) {
            Ok(vip) => panic!("{spec:?} was accepted as {vip:?}"),
            Err(e) => e,
        };
        assert_eq!(error.field, field, "{text}: {error}");
        // The file's field is the body's, spelt the file's way.
        let as_file = format!("vip[0].{}", field.replace("backends[", "backend["));
        assert_eq!(file_field, as_file, "{text}");
        assert_eq!(error.error.to_string(), file_words, "{text}");
    }
}
