//! Tests of the health tables: each key's rules, PostgreSQL checks and
//! checks through the tunnel.

use super::*;
use crate::config::Config;

/// A GUE VIP on port 80 whose checks go through the tunnel; `HEALTH`
/// is replaced by the test's extra keys of `[vip.health]`.
const GUE_VIP: &str = r#"interface = "eth0"
[[vip]]
address = "198.18.0.100"
port = 80
PROTOCOL
forwarding = "gue"
  [vip.health]
  through_tunnel = true
HEALTH
  [[vip.backend]]
  address = "198.19.2.11"
BACKEND
"#;

fn load(protocol: &str, health: &str, backend: &str) -> Result<Config, String> {
    let text = GUE_VIP
        .replace("PROTOCOL", protocol)
        .replace("HEALTH", health)
        .replace("BACKEND", backend);
    Config::from_toml_str(&text, "lbd.toml").map_err(|e| e.to_string())
}

#[test]
fn a_check_through_the_tunnel_keeps_the_vips_port() {
    let error = load("", "  port = 8081", "").unwrap_err();
    assert!(
        error.contains(
            "vip[0].health.port: a check through the tunnel goes to the VIP itself, so it must use the VIP's port 80"
        ),
        "{error}"
    );
    // The VIP's own port, written or not, is fine.
    for health in ["  port = 80", ""] {
        let config = load("", health, "").unwrap();
        assert!(config.vips[0].health.through_tunnel);
    }
    // Another port without the tunnel is fine.
    let text = GUE_VIP
        .replace("PROTOCOL", "")
        .replace("through_tunnel = true", "through_tunnel = false")
        .replace("HEALTH", "  port = 8081")
        .replace("BACKEND", "");
    let config = Config::from_toml_str(&text, "lbd.toml").unwrap();
    assert_eq!(config.vips[0].health.port, Some(8081));
}

#[test]
fn a_backends_table_that_checks_another_port_through_the_tunnel_is_refused() {
    // The backend's own port.
    let error = load("", "", "    [vip.backend.health]\n    port = 8081").unwrap_err();
    assert!(
        error.contains(
            "vip[0].backend[0].health.port: a check through the tunnel goes to the VIP itself, so it must use the VIP's port 80"
        ),
        "{error}"
    );
    // Or the VIP's other port, taken through the tunnel by the backend's
    // table: named by the key it wrote.
    let text = GUE_VIP
        .replace("PROTOCOL", "")
        .replace("through_tunnel = true", "port = 8081")
        .replace("HEALTH", "")
        .replace(
            "BACKEND",
            "    [vip.backend.health]\n    through_tunnel = true",
        );
    let error = Config::from_toml_str(&text, "lbd.toml")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            "vip[0].backend[0].health.through_tunnel: a check through the tunnel goes to the VIP itself, so it must use the VIP's port 80, not port 8081 (the VIP's or the default)"
        ),
        "{error}"
    );
}

#[test]
fn a_udp_vip_takes_no_tcp_or_http_check_through_the_tunnel() {
    for check in ["tcp", "http"] {
        let error = load("protocol = \"udp\"", &format!("  check = \"{check}\""), "").unwrap_err();
        assert!(
            error.contains(&format!(
                "vip[0].health.check: a check through the tunnel goes to the VIP itself, which serves UDP, so a {check} check cannot reach it"
            )),
            "{error}"
        );
    }
    // A backend's table turning checks on is named by its key.
    let error = load(
        "protocol = \"udp\"",
        "",
        "    [vip.backend.health]\n    check = \"tcp\"",
    )
    .unwrap_err();
    assert!(
        error.contains("vip[0].backend[0].health.check: a check through the tunnel"),
        "{error}"
    );
    // No checks (the UDP default) through the tunnel is fine.
    let config = load("protocol = \"udp\"", "", "").unwrap();
    assert_eq!(config.vips[0].health.check, CheckType::None);
    // A TCP VIP's TCP and HTTP checks are fine.
    for check in ["tcp", "http"] {
        load("", &format!("  check = \"{check}\""), "").unwrap();
    }
}

/// A NAT VIP for PgBouncers; `HEALTH` and `BACKEND` are replaced by
/// the test's keys of `[vip.health]` and `[vip.backend.health]`.
fn pgsql_vip(health: &str, backend: &str) -> Result<Config, String> {
    let text = format!(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 6432\nforwarding = \"nat\"\nnat_source = \"198.18.0.51\"\n  [vip.health]\n{health}\n  [[vip.backend]]\n  address = \"198.19.2.11\"\n  [vip.backend.health]\n{backend}\n"
    );
    Config::from_toml_str(&text, "lbd.toml").map_err(|e| e.to_string())
}

#[test]
fn a_pgsql_check_takes_a_user_and_a_database() {
    let config = pgsql_vip(
        "  check = \"pgsql\"\n  user = \"haproxy\"\n  database = \"app\"",
        "",
    )
    .unwrap();
    let health = &config.vips[0].health;
    assert_eq!(health.check, CheckType::Pgsql);
    assert_eq!(health.check.to_string(), "pgsql");
    assert_eq!(health.user.as_deref(), Some("haproxy"));
    assert_eq!(health.database.as_deref(), Some("app"));
    // The backend's table inherits them, and may change either.
    let config = pgsql_vip(
        "  check = \"pgsql\"\n  user = \"haproxy\"",
        "    database = \"other\"",
    )
    .unwrap();
    let own = config.vips[0].backends[0].health.as_ref().unwrap();
    assert_eq!(
        (own.check, own.user.as_deref(), own.database.as_deref()),
        (CheckType::Pgsql, Some("haproxy"), Some("other"))
    );
    // The dump writes them, and loads back the same.
    let dumped = crate::config::dump::to_toml(&config);
    assert!(dumped.contains("check = \"pgsql\""), "{dumped}");
    assert!(dumped.contains("user = \"haproxy\""), "{dumped}");
    assert_eq!(
        Config::from_toml_str(&dumped, "dump.toml").unwrap(),
        config,
        "{dumped}"
    );
}

/// No role to guess: a pgsql check without user is refused, naming
/// the key that made it so.
#[test]
fn a_pgsql_check_without_a_user_is_refused() {
    let error = pgsql_vip("  check = \"pgsql\"", "").unwrap_err();
    assert!(
        error.contains("vip[0].health.check: a pgsql check needs user, the role it names when it connects: set user"),
        "{error}"
    );
    // A backend that turns it on names check too.
    let error = pgsql_vip("", "    check = \"pgsql\"").unwrap_err();
    assert!(
        error.contains("vip[0].backend[0].health.check: a pgsql check needs user"),
        "{error}"
    );
    // A user of the VIP's reaches the backend's pgsql check.
    pgsql_vip("  user = \"haproxy\"", "    check = \"pgsql\"").unwrap();
    // The API's keys the same way: a backend under the VIP's pgsql
    // check with no user is named by `user`.
    let mut base = HealthConfig::default_for(Protocol::Tcp);
    base.check = CheckType::Pgsql;
    let nat = ChecksFor {
        mode: lb_common::Mode::Nat,
        port: 6432,
        protocol: Protocol::Tcp,
    };
    let error = resolve(&HealthKeys::default(), &base, nat, "the VIP's").unwrap_err();
    assert_eq!(error.field, "user");
    assert!(
        error
            .error
            .to_string()
            .contains("(check = \"pgsql\" is the VIP's)"),
        "{error}"
    );
}

#[test]
fn pgsql_names_are_checked() {
    let long = "x".repeat(MAX_HEALTH_PGSQL_NAME_BYTES + 1);
    for (key, value, expected) in [
        ("user", "", "vip[0].health.user: is empty"),
        (
            "user",
            "a\\u0000b",
            "vip[0].health.user: \"a\\0b\" contains a NUL byte",
        ),
        (
            "database",
            "a\\nb",
            "vip[0].health.database: \"a\\nb\" contains a control character",
        ),
        (
            "database",
            long.as_str(),
            "vip[0].health.database: is 64 bytes long; at most 63 are allowed",
        ),
    ] {
        let user = if key == "user" {
            ""
        } else {
            "  user = \"u\"\n"
        };
        let error = pgsql_vip(
            &format!("  check = \"pgsql\"\n{user}  {key} = \"{value}\""),
            "",
        )
        .unwrap_err();
        assert!(error.contains(expected), "{key} {value:?}: {error}");
    }
    let at_most = "x".repeat(MAX_HEALTH_PGSQL_NAME_BYTES);
    check_keys(&HealthKeys {
        user: Some(at_most),
        ..HealthKeys::default()
    })
    .unwrap();
}

#[test]
fn resolve_names_the_key_and_leaves_other_modes_alone() {
    let tcp80 = ChecksFor {
        mode: lb_common::Mode::Gue,
        port: 80,
        protocol: Protocol::Tcp,
    };
    let base = HealthConfig::default_for(Protocol::Tcp);
    let keys = HealthKeys {
        through_tunnel: Some(true),
        port: Some(8081),
        ..HealthKeys::default()
    };
    let error = resolve(&keys, &base, tcp80, "the default").unwrap_err();
    assert_eq!(error.field, "port");
    // Without the tunnel, any port.
    let keys = HealthKeys {
        through_tunnel: Some(false),
        port: Some(8081),
        ..HealthKeys::default()
    };
    assert_eq!(
        resolve(&keys, &base, tcp80, "the default").unwrap().port,
        Some(8081)
    );
}
