//! The health-check flags of `lbctl vip add` and `lbctl backend add`: the
//! config file's `[vip.health]` keys, one flag each (`--check-interval-ms`
//! for `interval_ms`), so a VIP or backend added at run time can have any
//! checks the file can give it. Each value is checked here by the file's
//! rule for that key alone (`config::check_health_keys`), so a bad one is
//! refused before lbd is asked; the rules between keys and on the VIP
//! (timeout within the interval, `through_tunnel` for tunnelled VIPs) are
//! lbd's to check.

use lb_userspace::{
    api::schema::HealthSpec,
    config::{check_health_keys, HealthKeys},
};

/// Health-check flags; none given: the defaults (for a backend: its VIP's).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Health checks (as the config file's health table)")]
pub(crate) struct HealthFlags {
    /// Kind of check: tcp, http, pgsql or none (`check`).
    #[arg(long, value_parser = |t: &str| text(t, |k, v| k.check = Some(v)))]
    check: Option<String>,
    /// Port checked, 1..=65535 (`port`; default: a NAT backend's own port,
    /// else the VIP's).
    #[arg(long, value_name = "PORT", allow_negative_numbers = true,
          value_parser = |t: &str| number(t, "port", |k, n| k.port = Some(n)))]
    check_port: Option<i64>,
    /// HTTP checks: the path asked for, e.g. /healthz (`path`; default /).
    #[arg(long, value_name = "PATH", value_parser = |t: &str| text(t, |k, v| k.path = Some(v)))]
    check_path: Option<String>,
    /// HTTP checks: the Host header (`host`; default: the address checked:
    /// the backend's, or with through_tunnel the VIP's).
    #[arg(long, value_name = "HOST", value_parser = |t: &str| text(t, |k, v| k.host = Some(v)))]
    check_host: Option<String>,
    /// HTTP checks: the status that means healthy, 200..=599
    /// (`expect_status`; default 200).
    #[arg(long, value_name = "STATUS", allow_negative_numbers = true,
          value_parser = |t: &str| number(t, "expect_status", |k, n| k.expect_status = Some(n)))]
    check_expect_status: Option<i64>,
    /// HTTP checks: text the body's first 16 KiB must contain as well,
    /// 1..=256 bytes (`expect_body`; default: the status alone decides).
    #[arg(long, value_name = "TEXT", value_parser = |t: &str| text(t, |k, v| k.expect_body = Some(v)))]
    check_expect_body: Option<String>,
    /// TCP and HTTP checks over TLS, certificates not verified (`tls`):
    /// for backends that take TLS straight; =false turns it off for a
    /// backend whose VIP has it on.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    check_tls: Option<bool>,
    /// PostgreSQL checks: the role named in the StartupMessage (`user`;
    /// required by --check pgsql).
    #[arg(long, value_name = "USER", value_parser = |t: &str| text(t, |k, v| k.user = Some(v)))]
    check_user: Option<String>,
    /// PostgreSQL checks: the database named (`database`; default: the
    /// user's name).
    #[arg(long, value_name = "DATABASE", value_parser = |t: &str| text(t, |k, v| k.database = Some(v)))]
    check_database: Option<String>,
    /// Milliseconds between checks of a stable backend, 10..=3600000
    /// (`interval_ms`; default 2000).
    #[arg(long, value_name = "MS", allow_negative_numbers = true,
          value_parser = |t: &str| number(t, "interval_ms", |k, n| k.interval_ms = Some(n)))]
    check_interval_ms: Option<i64>,
    /// Milliseconds between checks of a backend changing state, at most
    /// the interval (`fast_interval_ms`; default 500, or the interval if
    /// shorter).
    #[arg(long, value_name = "MS", allow_negative_numbers = true,
          value_parser = |t: &str| number(t, "fast_interval_ms", |k, n| k.fast_interval_ms = Some(n)))]
    check_fast_interval_ms: Option<i64>,
    /// Longest a check may take, ms, at most the interval (`timeout_ms`;
    /// default 1000).
    #[arg(long, value_name = "MS", allow_negative_numbers = true,
          value_parser = |t: &str| number(t, "timeout_ms", |k, n| k.timeout_ms = Some(n)))]
    check_timeout_ms: Option<i64>,
    /// Consecutive successes that bring a backend up, 1..=100 (`rise`;
    /// default 2).
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = |t: &str| number(t, "rise", |k, n| k.rise = Some(n)))]
    check_rise: Option<i64>,
    /// Consecutive failures that take a backend down, 1..=100 (`fall`;
    /// default 3).
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = |t: &str| number(t, "fall", |k, n| k.fall = Some(n)))]
    check_fall: Option<i64>,
    /// ipip and gue VIPs: check the VIP's address through the backend's
    /// tunnel, as clients' packets go (`through_tunnel`); =false turns it
    /// off for a backend whose VIP has it on.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    check_through_tunnel: Option<bool>,
}

impl HealthFlags {
    /// The body's `health` object, None when no flag was given (so the
    /// defaults, or the VIP's, apply as when the file has no table).
    pub(crate) fn spec(&self) -> Option<HealthSpec> {
        let keys = HealthKeys {
            check: self.check.clone(),
            port: self.check_port,
            path: self.check_path.clone(),
            host: self.check_host.clone(),
            expect_status: self.check_expect_status,
            expect_body: self.check_expect_body.clone(),
            tls: self.check_tls,
            user: self.check_user.clone(),
            database: self.check_database.clone(),
            interval_ms: self.check_interval_ms,
            fast_interval_ms: self.check_fast_interval_ms,
            timeout_ms: self.check_timeout_ms,
            rise: self.check_rise,
            fall: self.check_fall,
            through_tunnel: self.check_through_tunnel,
        };
        (keys != HealthKeys::default()).then_some(keys)
    }
}

/// Checks `keys` (one key set) by the file's rule for that key, its refusal
/// worded as the file's (`interval_ms 5 is out of range 10..=3600000`).
fn checked(keys: &HealthKeys) -> Result<(), String> {
    check_health_keys(keys).map_err(|e| format!("{} {}", e.field, e.error))
}

/// A text flag's value, checked by the file's rule for the key `set` sets.
fn text(text: &str, set: fn(&mut HealthKeys, String)) -> Result<String, String> {
    let mut keys = HealthKeys::default();
    set(&mut keys, text.to_owned());
    checked(&keys)?;
    Ok(text.to_owned())
}

/// A whole-number flag's value for the key `key`, checked by the file's
/// rule for it (so an out-of-range one says the range).
fn number(text: &str, key: &str, set: fn(&mut HealthKeys, i64)) -> Result<i64, String> {
    let n: i64 = text
        .parse()
        .map_err(|_| format!("{key} {text:?} is not a whole number"))?;
    let mut keys = HealthKeys::default();
    set(&mut keys, n);
    checked(&keys)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    /// The health flags of `lbctl ARGS`, or clap's error.
    fn flags(args: &[&str]) -> Result<Option<HealthSpec>, String> {
        let cli = crate::Cli::try_parse_from([&["lbctl"][..], args].concat())
            .map_err(|e| e.to_string())?;
        Ok(match cli.command {
            crate::Command::Vip(crate::vip::Command::Add { health, .. })
            | crate::Command::Backend(crate::backend::Command::Add { health, .. }) => health.spec(),
            other => panic!("not an add: {other:?}"),
        })
    }

    #[test]
    fn health_flags_become_the_body_health_object() {
        let vip = flags(&[
            "vip",
            "add",
            "198.18.0.100:80",
            "--check",
            "http",
            "--check-path",
            "/healthz",
            "--check-host",
            "example.test",
            "--check-port",
            "8080",
            "--check-expect-status",
            "204",
            "--check-expect-body",
            "status: OK",
            "--check-tls",
            "--check-interval-ms",
            "1000",
            "--check-fast-interval-ms",
            "200",
            "--check-timeout-ms",
            "300",
            "--check-rise",
            "3",
            "--check-fall",
            "4",
            "--check-through-tunnel",
        ])
        .unwrap()
        .unwrap();
        let expected: HealthSpec = serde_json::from_value(serde_json::json!({
            "check": "http", "path": "/healthz", "host": "example.test", "port": 8080,
            "expect_status": 204, "expect_body": "status: OK", "tls": true, "interval_ms": 1000, "fast_interval_ms": 200,
            "timeout_ms": 300, "rise": 3, "fall": 4, "through_tunnel": true
        }))
        .unwrap();
        assert_eq!(vip, expected);
        let backend = flags(&[
            "backend",
            "add",
            "198.18.0.100:80",
            "198.18.0.11,weight=5",
            "--check-rise",
            "5",
            "--check-through-tunnel=false",
            "--check-expect-body",
            "ready",
            "--check-tls=false",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (backend.rise, backend.through_tunnel, backend.check),
            (Some(5), Some(false), None)
        );
        assert_eq!(backend.expect_body.as_deref(), Some("ready"));
        assert_eq!(backend.tls, Some(false));
        let pgsql = flags(&[
            "vip",
            "add",
            "198.18.0.100:6432",
            "--check",
            "pgsql",
            "--check-user",
            "haproxy",
            "--check-database",
            "app",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                pgsql.check.as_deref(),
                pgsql.user.as_deref(),
                pgsql.database.as_deref()
            ),
            (Some("pgsql"), Some("haproxy"), Some("app"))
        );
        // No flag: no health object, the defaults (or the VIP's) apply.
        assert_eq!(flags(&["vip", "add", "198.18.0.100:80"]), Ok(None));
        assert_eq!(
            flags(&["backend", "add", "198.18.0.100:80", "198.18.0.11"]),
            Ok(None)
        );
    }

    #[test]
    fn health_flags_are_checked_by_the_file_rules() {
        for (args, expected) in [
            (
                &["--check", "icmp"][..],
                "check \"icmp\" is not one of \"none\", \"tcp\", \"http\", \"pgsql\"",
            ),
            (&["--check-user", ""], "user is empty"),
            (
                &["--check-database", "a\nb"],
                "database \"a\\nb\" contains a control character",
            ),
            (&["--check-port", "0"], "port 0 is out of range 1..=65535"),
            (
                &["--check-path", "healthz"],
                "path \"healthz\" is not an absolute URL path",
            ),
            (&["--check-host", "a b"], "host \"a b\" is not a host name"),
            (
                &["--check-expect-status", "99"],
                "expect_status 99 is out of range 200..=599",
            ),
            (&["--check-expect-body", ""], "expect_body is empty"),
            (
                &["--check-expect-body", "OK\r\n"],
                "expect_body \"OK\\r\\n\" contains a control character",
            ),
            (
                &["--check-interval-ms", "5"],
                "interval_ms 5 is out of range 10..=3600000",
            ),
            (
                &["--check-fast-interval-ms", "-1"],
                "fast_interval_ms -1 is out of range",
            ),
            (
                &["--check-timeout-ms", "x"],
                "timeout_ms \"x\" is not a whole number",
            ),
            (&["--check-rise", "0"], "rise 0 is out of range 1..=100"),
            (&["--check-fall", "101"], "fall 101 is out of range 1..=100"),
        ] {
            for command in [
                &["vip", "add", "198.18.0.100:80"][..],
                &["backend", "add", "198.18.0.100:80", "198.18.0.11"],
            ] {
                let error = flags(&[command, args].concat()).unwrap_err();
                assert!(error.contains(expected), "{args:?}: {error}");
            }
        }
        // Rules between keys are lbd's: the flags alone pass.
        assert!(flags(&[
            "vip",
            "add",
            "198.18.0.100:80",
            "--check-timeout-ms",
            "5000"
        ])
        .is_ok());
    }
}
