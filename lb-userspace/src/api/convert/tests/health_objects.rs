//! Health objects give what the file's health tables give: for a backend
//! added later, through a tunnel, and strictly typed.
use super::*;

#[test]
fn health_objects_give_what_the_file_gives() {
    let none = serde_json::Value::Null;
    for (forwarding, vip, backend) in [
        ("dsr-l2", none.clone(), none.clone()),
        (
            "dsr-l2",
            json!({"check": "http", "path": "/healthz", "host": "example.test",
                          "expect_status": 204, "port": 8080}),
            none.clone(),
        ),
        (
            "dsr-l2",
            json!({"check": "http", "expect_body": "status: OK"}),
            json!({"expect_body": "ready\tnow"}),
        ),
        (
            "dsr-l2",
            json!({"check": "http", "expect_body": "OK"}),
            json!({"check": "tcp"}),
        ),
        (
            "dsr-l2",
            json!({"check": "http", "tls": true}),
            none.clone(),
        ),
        ("dsr-l2", json!({"tls": true}), json!({"tls": false})),
        (
            "dsr-l2",
            json!({"check": "tcp", "tls": true}),
            json!({"check": "pgsql", "user": "u"}),
        ),
        (
            "dsr-l2",
            json!({"interval_ms": 1000, "rise": 3}),
            json!({"port": 8080, "fall": 5}),
        ),
        // Only the interval, shorter than the default fast interval:
        // the fast interval follows it down, in the VIP and a backend.
        (
            "dsr-l2",
            json!({"interval_ms": 400, "timeout_ms": 300}),
            json!({"rise": 1}),
        ),
        (
            "dsr-l2",
            none.clone(),
            json!({"interval_ms": 300, "timeout_ms": 200}),
        ),
        (
            "dsr-l2",
            json!({"interval_ms": 400, "fast_interval_ms": 200, "timeout_ms": 300}),
            json!({"check": "none"}),
        ),
        (
            "nat",
            json!({"check": "tcp", "timeout_ms": 10, "fast_interval_ms": 10, "interval_ms": 10}),
            json!({"check": "http", "path": "/", "through_tunnel": false}),
        ),
        ("ipip", json!({"through_tunnel": true}), none.clone()),
        (
            "nat",
            json!({"check": "pgsql", "user": "haproxy"}),
            json!({"database": "app"}),
        ),
        (
            "dsr-l2",
            json!({"user": "haproxy"}),
            json!({"check": "pgsql"}),
        ),
        (
            "gue",
            json!({"through_tunnel": true, "check": "http"}),
            json!({"through_tunnel": false, "interval_ms": 3_600_000, "fast_interval_ms": 3_600_000,
                "timeout_ms": 3_600_000, "rise": 100, "fall": 100, "expect_status": 599}),
        ),
    ] {
        let mut text = health_file(forwarding, &vip, &backend);
        if forwarding == "nat" {
            text = text.replace("[[vip]]", "[nat]\nsource_ipv4 = \"198.18.0.50\"\n[[vip]]");
        }
        let file =
            Config::from_toml_str(&text, "lbd.toml").unwrap_or_else(|e| panic!("{text}: {e}"));
        let spec = health_body(forwarding, &vip, &backend);
        let api = vip_config(&spec, &file.nat).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
        assert_eq!(api, file.vips[0], "{text}");
        // A backend added later to the running VIP gets the same as
        // one the file (or the VIP's body) lists.
        let later = backend_config(&api, &spec.backends[0]).unwrap();
        assert_eq!(later, file.vips[0].backends[0], "{text}");
    }
}

#[test]
fn a_backend_added_later_starts_from_its_vips_health() {
    let vip = vip_spec(json!({"address": "198.18.0.100", "port": 80,
        "health": {"check": "http", "path": "/healthz", "interval_ms": 1000}}));
    let vip = VipConfig::try_from(&vip).unwrap();
    let spec = |body| serde_json::from_value::<BackendSpec>(body).unwrap();
    let backend = backend_config(
        &vip,
        &spec(json!({"address": "198.18.0.11", "health": {"rise": 5}})),
    )
    .unwrap();
    let health = backend.health.unwrap();
    assert_eq!(
        (
            health.check,
            health.path.as_str(),
            health.interval,
            health.rise
        ),
        (
            crate::config::CheckType::Http,
            "/healthz",
            std::time::Duration::from_millis(1000),
            5
        )
    );
    // No health object: the VIP's, as a backend without a table.
    let plain = backend_config(&vip, &spec(json!({"address": "198.18.0.12"}))).unwrap();
    assert_eq!(plain.health, None);
    // Timing against the running VIP's, named as the body spells it.
    let error = backend_config(
        &vip,
        &spec(json!({"address": "198.18.0.13", "health": {"timeout_ms": 1500}})),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "health.timeout_ms: timeout_ms (1500) is longer than interval_ms (1000, the VIP's): set interval_ms too"
    );
    let error = backend_config(
        &vip,
        &spec(json!({"address": "198.18.0.13", "health": {"through_tunnel": true}})),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("health.through_tunnel: only a VIP with forwarding"),
        "{error}"
    );
}

#[test]
fn checks_through_the_tunnel_keep_the_vips_port_and_protocol() {
    let vip = |body| VipConfig::try_from(&vip_spec(body));
    let error = vip(
        json!({"address": "198.18.0.100", "port": 80, "forwarding": "gue",
        "health": {"through_tunnel": true, "port": 8081}}),
    )
    .unwrap_err();
    assert!(
        error.to_string().starts_with(
            "health.port: a check through the tunnel goes to the VIP itself, so it must use the VIP's port 80"
        ),
        "{error}"
    );
    let error = vip(
        json!({"address": "198.18.0.100", "port": 53, "protocol": "udp",
        "forwarding": "ipip", "health": {"through_tunnel": true, "check": "tcp"}}),
    )
    .unwrap_err();
    assert!(
        error.to_string().starts_with(
            "health.check: a check through the tunnel goes to the VIP itself, which serves UDP"
        ),
        "{error}"
    );
    // A backend added later by its own health object, too.
    let running = vip(
        json!({"address": "198.18.0.100", "port": 80, "forwarding": "gue",
        "health": {"through_tunnel": true}}),
    )
    .unwrap();
    let spec = serde_json::from_value::<BackendSpec>(
        json!({"address": "198.19.2.11", "health": {"port": 8081}}),
    )
    .unwrap();
    let error = backend_config(&running, &spec).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("health.port: a check through the tunnel"),
        "{error}"
    );
}

#[test]
fn health_objects_are_strict_and_typed() {
    for (health, expected) in [
        (json!({"interval": 1000}), "unknown field `interval`"),
        (
            json!({"rise": "3"}),
            "invalid type: string \"3\", expected i64",
        ),
        (
            json!({"through_tunnel": 1}),
            "invalid type: integer `1`, expected a boolean",
        ),
        (json!("tcp"), "invalid type: string \"tcp\""),
    ] {
        for body in [
            json!({"address": "198.18.0.100", "port": 80, "health": health}),
            json!({"address": "198.18.0.100", "port": 80,
                   "backends": [{"address": "198.18.0.11", "health": health}]}),
        ] {
            let error = serde_json::from_value::<VipSpec>(body)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
