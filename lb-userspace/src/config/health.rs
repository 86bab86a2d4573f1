//! The `[vip.health]` and `[vip.backend.health]` tables: how lbd checks
//! that a backend can serve. A backend's table overrides its VIP's key by
//! key; the VIP's overrides the defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::{Spanned, Value};

use super::{
    value::{self, FieldError, ValueError},
    Checker, ConfigError, Protocol,
};

/// Longest HTTP check path, in bytes: it goes into every check's request
/// line, and no health endpoint needs more.
pub const MAX_HEALTH_PATH_BYTES: usize = 1024;

/// Longest `Host` for HTTP checks, in bytes: a DNS name's limit.
pub const MAX_HEALTH_HOST_BYTES: usize = 253;

/// Longest `user` and `database` of PostgreSQL checks, in bytes:
/// PostgreSQL's identifiers are at most 63 bytes (NAMEDATALEN - 1), so a
/// longer name names no role or database.
pub const MAX_HEALTH_PGSQL_NAME_BYTES: usize = 63;

/// What kind of check, because a service that speaks HTTP can say more
/// than "the port is open".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckType {
    /// No checks: the backend is taken as up.
    None,
    /// A TCP connection to the check port succeeds.
    #[default]
    Tcp,
    /// An HTTP GET answers with the expected status.
    Http,
    /// A PostgreSQL server (or PgBouncer) answers a StartupMessage with an
    /// authentication request, not an error.
    Pgsql,
}

impl std::fmt::Display for CheckType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckType::None => "none",
            CheckType::Tcp => "tcp",
            CheckType::Http => "http",
            CheckType::Pgsql => "pgsql",
        })
    }
}

/// A backend's health checks, with HAProxy's inter/fastinter/rise/fall
/// meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Kind of check.
    pub check: CheckType,
    /// Port checked; None: the backend's own port (NAT), else the VIP's.
    pub port: Option<u16>,
    /// HTTP path.
    pub path: String,
    /// HTTP Host header; None: the address checked (the backend's, or
    /// with `through_tunnel` the VIP's, with its port).
    pub host: Option<String>,
    /// HTTP status that means healthy.
    pub expect_status: u16,
    /// PostgreSQL checks: the role named in the StartupMessage (required
    /// by `check = "pgsql"`).
    pub user: Option<String>,
    /// PostgreSQL checks: the database named (None: the server's default,
    /// the user's name).
    pub database: Option<String>,
    /// Time between checks of a stable backend.
    pub interval: Duration,
    /// Time between checks while a backend is changing state.
    pub fast_interval: Duration,
    /// Longest a check may take.
    pub timeout: Duration,
    /// Consecutive successes that bring a backend up.
    pub rise: u32,
    /// Consecutive failures that take a backend down.
    pub fall: u32,
    /// Tunnelled VIPs: the check goes to the VIP's address through the
    /// same encapsulation as clients' packets (marked for `tc_hc_encap`),
    /// so a backend is up only while it serves the VIP through the tunnel.
    pub through_tunnel: bool,
}

impl HealthConfig {
    /// The defaults for a VIP of `protocol`: TCP checks every 2 s for TCP
    /// services; none for UDP (a TCP check says nothing about them).
    pub(crate) fn default_for(protocol: Protocol) -> Self {
        Self {
            check: match protocol {
                Protocol::Tcp => CheckType::Tcp,
                Protocol::Udp => CheckType::None,
            },
            port: None,
            path: "/".to_owned(),
            host: None,
            expect_status: 200,
            user: None,
            database: None,
            interval: Duration::from_millis(2000),
            fast_interval: Duration::from_millis(500),
            timeout: Duration::from_millis(1000),
            rise: 2,
            fall: 3,
            through_tunnel: false,
        }
    }
}

/// The keys of a health table as given, as plain values (`None`: not
/// written): what the config file's `[vip.health]` tables and the admin
/// API's `health` objects both come down to, so [`resolve`] applies one set
/// of rules to both. Numbers are any integer and strings any text, for
/// `resolve` to refuse by the file's rules with the key named; on the wire
/// it is the API's `health` object (same names and units as the file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthKeys {
    /// "none", "tcp", "http" or "pgsql".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Port checked, 1..=65535 (default: a NAT backend's own port, else
    /// the VIP's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// HTTP path: absolute, no spaces, at most 1024 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP `Host`, at most 253 bytes (default: the address checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// HTTP status that means healthy, 200..=599 (1xx answers are interim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<i64>,
    /// PostgreSQL checks: the role named, 1..=63 bytes, no control
    /// characters (required by check "pgsql").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// PostgreSQL checks: the database named, 1..=63 bytes, no control
    /// characters (default: the user's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Milliseconds between checks of a stable backend, 10..=3600000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<i64>,
    /// Milliseconds between checks of a backend changing state,
    /// 10..=3600000, at most `interval_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_interval_ms: Option<i64>,
    /// Longest a check may take, ms, 10..=3600000, at most `interval_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i64>,
    /// Consecutive successes that bring a backend up, 1..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<i64>,
    /// Consecutive failures that take a backend down, 1..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<i64>,
    /// Check through the VIP's tunnel (forwarding "ipip" or "gue" only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through_tunnel: Option<bool>,
}

/// The VIP a health table belongs to, as far as its rules depend on it: a
/// check through the tunnel is sent to the VIP itself, so it can reach only
/// the VIP's own port and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksFor {
    /// The VIP's forwarding mode (`through_tunnel` needs a tunnelled one).
    pub mode: lb_common::Mode,
    /// The VIP's port.
    pub port: u16,
    /// The VIP's protocol.
    pub protocol: Protocol,
}

/// Range of the `*_ms` keys.
const MILLIS: std::ops::RangeInclusive<u32> = 10..=3_600_000;

/// `base` with the keys given in `keys` replaced, by the config file's
/// rules: the one place they live, called by the file's checker
/// ([`Checker::health`]) and the API's conversion (`api::convert`), so
/// both accept and refuse alike. `vip` is the VIP the table belongs to
/// (`through_tunnel` needs a tunnelled one, and its checks go to the VIP's
/// own port and protocol, the only ones the data plane carries through
/// the tunnel); `base_is` says where the
/// values not given come from ("the default", "the VIP's"), for errors
/// about them. An error names the key (`interval_ms`), bare: the caller
/// puts its own path in front; a timing error about two keys neither of
/// which was given names the shorter one.
pub fn resolve(
    keys: &HealthKeys,
    base: &HealthConfig,
    vip: ChecksFor,
    base_is: &str,
) -> Result<HealthConfig, FieldError> {
    let mut out = apply(keys, base, Some(vip.mode))?;
    // A fast interval not given here (the default, or the VIP's) follows
    // a shorter interval down: a table that only shortens interval_ms
    // stays valid.
    if keys.fast_interval_ms.is_none() && out.fast_interval > out.interval {
        out.fast_interval = out.interval;
    }
    timing(keys, &out, base_is)?;
    pgsql_has_a_user(keys, &out, base_is)?;
    through_tunnel_reaches(keys, &out, vip, base_is)?;
    Ok(out)
}

/// A PostgreSQL check names a role in its StartupMessage, and there is no
/// default one to take: a wrong guess would be refused by every server
/// and take every backend down. The error names `check` when this table
/// chose the kind, else `user`.
fn pgsql_has_a_user(
    keys: &HealthKeys,
    out: &HealthConfig,
    base_is: &str,
) -> Result<(), FieldError> {
    if out.check != CheckType::Pgsql || out.user.is_some() {
        return Ok(());
    }
    let (field, whose) = if keys.check.is_some() {
        ("check", String::new())
    } else {
        ("user", format!(" (check = \"pgsql\" is {base_is})"))
    };
    Err(ValueError::invalid(format!(
        "a pgsql check needs user, the role it names when it connects{whose}: set user = \"...\" (any role: a server that asks it for a password is up)"
    ))
    .at(field))
}

/// A PostgreSQL name (`user`, `database`) as the StartupMessage can carry
/// it: not empty, at most [`MAX_HEALTH_PGSQL_NAME_BYTES`], no NUL (it
/// would end the value early) nor other control characters.
fn pgsql_name(text: &str, key: &str) -> Result<String, FieldError> {
    if text.len() > MAX_HEALTH_PGSQL_NAME_BYTES {
        return Err(ValueError::invalid(format!(
            "is {} bytes long; at most {MAX_HEALTH_PGSQL_NAME_BYTES} are allowed (PostgreSQL's longest name)",
            text.len()
        ))
        .at(key));
    }
    if text.is_empty() {
        return Err(ValueError::invalid("is empty: name a PostgreSQL role or database").at(key));
    }
    if text.contains('\0') {
        return Err(ValueError::invalid(format!("{text:?} contains a NUL byte")).at(key));
    }
    if text.chars().any(char::is_control) {
        return Err(ValueError::invalid(format!("{text:?} contains a control character")).at(key));
    }
    Ok(text.to_owned())
}

/// A check through the tunnel reaches a backend only as a packet to the
/// VIP's own address, port and protocol: the data plane encapsulates it
/// after finding its VIP by those three, and drops one it finds none for,
/// so a check on another port, or a TCP or HTTP check of a UDP VIP, would
/// fail every time and take every backend down. The error names the key
/// given here that makes the conflict, else `through_tunnel`.
fn through_tunnel_reaches(
    keys: &HealthKeys,
    out: &HealthConfig,
    vip: ChecksFor,
    base_is: &str,
) -> Result<(), FieldError> {
    if !out.through_tunnel {
        return Ok(());
    }
    let named = |preferred: &'static str, given: bool| {
        if given || keys.through_tunnel.is_none() {
            preferred
        } else {
            "through_tunnel"
        }
    };
    if let Some(port) = out.port.filter(|p| *p != vip.port) {
        let field = named("port", keys.port.is_some());
        let whose = if keys.port.is_some() {
            String::new()
        } else {
            format!(", not port {port} ({base_is})")
        };
        return Err(ValueError::invalid(format!(
            "a check through the tunnel goes to the VIP itself, so it must use the VIP's port {}{whose}: leave port out or set through_tunnel = false",
            vip.port
        ))
        .at(field));
    }
    if vip.protocol == Protocol::Udp && out.check != CheckType::None {
        let field = named("check", keys.check.is_some());
        return Err(ValueError::invalid(format!(
            "a check through the tunnel goes to the VIP itself, which serves UDP, so a {} check cannot reach it: set check = \"none\" or through_tunnel = false",
            out.check
        ))
        .at(field));
    }
    Ok(())
}

/// The rules about each key given in `keys` alone (its type's range, a
/// path's form, ...), without those between keys, on the VIP's mode or on
/// the values not given: for a client that checks a value before lbd is
/// asked (lbctl's flags, as it checks a weight); lbd checks all by
/// [`resolve`].
pub fn check_keys(keys: &HealthKeys) -> Result<(), FieldError> {
    apply(keys, &HealthConfig::default_for(Protocol::Tcp), None).map(drop)
}

/// `base` with each key given in `keys` replaced, checked by its own rule;
/// `through_tunnel = true` also by the VIP's forwarding `mode`, when known.
fn apply(
    keys: &HealthKeys,
    base: &HealthConfig,
    mode: Option<lb_common::Mode>,
) -> Result<HealthConfig, FieldError> {
    let mut out = base.clone();
    if let Some(text) = &keys.check {
        out.check = value::choice(
            text,
            &[
                ("none", CheckType::None),
                ("tcp", CheckType::Tcp),
                ("http", CheckType::Http),
                ("pgsql", CheckType::Pgsql),
            ],
        )
        .map_err(|e| e.at("check"))?;
    }
    if let Some(n) = keys.port {
        out.port = Some(value::integer(n, 1..=u16::MAX).map_err(|e| e.at("port"))?);
    }
    if let Some(path) = &keys.path {
        if path.len() > MAX_HEALTH_PATH_BYTES {
            return Err(ValueError::invalid(format!(
                "is {} bytes long; at most {MAX_HEALTH_PATH_BYTES} are allowed",
                path.len()
            ))
            .at("path"));
        }
        // What the check's request can carry as it is: no fragment (it
        // would be cut off), nothing an HTTP request line refuses.
        let sendable =
            !path.contains('#') && path.parse::<hyper::http::uri::PathAndQuery>().is_ok();
        if !path.starts_with('/')
            || path.chars().any(|c| c.is_whitespace() || c.is_control())
            || !sendable
        {
            return Err(ValueError::invalid(format!(
                "{path:?} is not an absolute URL path an HTTP request can carry (no spaces, no fragment, characters such as < > ` percent-encoded)"
            ))
            .at("path"));
        }
        out.path.clone_from(path);
    }
    if let Some(host) = &keys.host {
        if host.len() > MAX_HEALTH_HOST_BYTES {
            return Err(ValueError::invalid(format!(
                "is {} bytes long; at most {MAX_HEALTH_HOST_BYTES} are allowed",
                host.len()
            ))
            .at("host"));
        }
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValueError::invalid(format!("{host:?} is not a host name")).at("host"));
        }
        out.host = Some(host.clone());
    }
    if let Some(n) = keys.expect_status {
        // 1xx answers are interim: the final answer decides.
        out.expect_status = value::integer(n, 200..=599).map_err(|e| e.at("expect_status"))?;
    }
    if let Some(user) = &keys.user {
        out.user = Some(pgsql_name(user, "user")?);
    }
    if let Some(database) = &keys.database {
        out.database = Some(pgsql_name(database, "database")?);
    }
    let millis = |n: i64, name: &str| -> Result<Duration, FieldError> {
        Ok(Duration::from_millis(
            value::integer(n, MILLIS).map_err(|e| e.at(name))?.into(),
        ))
    };
    if let Some(n) = keys.interval_ms {
        out.interval = millis(n, "interval_ms")?;
    }
    if let Some(n) = keys.fast_interval_ms {
        out.fast_interval = millis(n, "fast_interval_ms")?;
    }
    if let Some(n) = keys.timeout_ms {
        out.timeout = millis(n, "timeout_ms")?;
    }
    if let Some(n) = keys.rise {
        out.rise = value::integer(n, 1..=100).map_err(|e| e.at("rise"))?;
    }
    if let Some(n) = keys.fall {
        out.fall = value::integer(n, 1..=100).map_err(|e| e.at("fall"))?;
    }
    if let Some(on) = keys.through_tunnel {
        if let (true, Some(mode)) = (on, mode) {
            value::through_tunnel_allowed(mode).map_err(|e| e.at("through_tunnel"))?;
        }
        out.through_tunnel = on;
    }
    Ok(out)
}

/// The rules between the timing keys of `out` (`keys` applied to its
/// base): which were given decides which key an error names and how.
fn timing(keys: &HealthKeys, out: &HealthConfig, base_is: &str) -> Result<(), FieldError> {
    // A check must end before the next is due, and checks of a backend
    // changing state come at least as often as of a stable one.
    // (timeout_ms <= fast_interval_ms is not asked: the defaults, 1000
    // and 500 ms, break it.)
    let timing = [
        (
            "timeout_ms",
            out.timeout,
            keys.timeout_ms.is_some(),
            "interval_ms",
            out.interval,
            keys.interval_ms.is_some(),
        ),
        (
            "fast_interval_ms",
            out.fast_interval,
            keys.fast_interval_ms.is_some(),
            "interval_ms",
            out.interval,
            keys.interval_ms.is_some(),
        ),
    ];
    for (short_name, short, short_given, long_name, long, long_given) in timing {
        if short <= long {
            continue;
        }
        let (short_ms, long_ms) = (short.as_millis(), long.as_millis());
        let invalid = ValueError::invalid;
        return Err(match (short_given, long_given) {
            (true, true) => invalid(format!(
                "{short_name} ({short_ms}) is longer than {long_name} ({long_ms})"
            ))
            .at(short_name),
            (true, false) => invalid(format!(
                "{short_name} ({short_ms}) is longer than {long_name} ({long_ms}, {base_is}): set {long_name} too"
            ))
            .at(short_name),
            (false, true) => invalid(format!(
                "{long_name} ({long_ms}) is shorter than {short_name} ({short_ms}, {base_is}): set {short_name} too"
            ))
            .at(long_name),
            (false, false) => invalid(format!(
                "{short_name} ({short_ms}, {base_is}) is longer than {long_name} ({long_ms}, {base_is})"
            ))
            .at(short_name),
        });
    }
    Ok(())
}

/// A health table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a health table")]
pub(super) struct RawHealth {
    check: Option<Spanned<Value>>,
    port: Option<Spanned<Value>>,
    path: Option<Spanned<Value>>,
    host: Option<Spanned<Value>>,
    expect_status: Option<Spanned<Value>>,
    user: Option<Spanned<Value>>,
    database: Option<Spanned<Value>>,
    interval_ms: Option<Spanned<Value>>,
    fast_interval_ms: Option<Spanned<Value>>,
    timeout_ms: Option<Spanned<Value>>,
    rise: Option<Spanned<Value>>,
    fall: Option<Spanned<Value>>,
    through_tunnel: Option<Spanned<Value>>,
}

impl RawHealth {
    /// The value written for `key` (a [`HealthKeys`] field name), to place
    /// an error about it.
    fn get(&self, key: &str) -> Option<&Spanned<Value>> {
        match key {
            "check" => self.check.as_ref(),
            "port" => self.port.as_ref(),
            "path" => self.path.as_ref(),
            "host" => self.host.as_ref(),
            "expect_status" => self.expect_status.as_ref(),
            "user" => self.user.as_ref(),
            "database" => self.database.as_ref(),
            "interval_ms" => self.interval_ms.as_ref(),
            "fast_interval_ms" => self.fast_interval_ms.as_ref(),
            "timeout_ms" => self.timeout_ms.as_ref(),
            "rise" => self.rise.as_ref(),
            "fall" => self.fall.as_ref(),
            "through_tunnel" => self.through_tunnel.as_ref(),
            _ => None,
        }
    }
}

impl super::TableName for RawHealth {
    const NAME: &'static str = "vip.health";

    fn not_an_array() -> String {
        "a health table is a table, not an array of tables: write [vip.health] or [vip.backend.health], not [[...]]".to_owned()
    }
}

impl Checker<'_> {
    /// `base` with the keys present in `raw` replaced, by [`resolve`]:
    /// here only the values' types are checked (a string, an integer),
    /// the rules are `resolve`'s. `prefix` is the table's field path
    /// (e.g. `vip[0].health`), `vip` the VIP it belongs to, `base_is`
    /// where the values not written come from ("the default", "the
    /// VIP's"), for errors about them.
    pub(super) fn health(
        &self,
        base: &HealthConfig,
        raw: &Spanned<super::raw::OneTable<RawHealth>>,
        prefix: &str,
        vip: ChecksFor,
        base_is: &str,
    ) -> Result<HealthConfig, ConfigError> {
        let table = raw.span().start;
        let raw = raw.get_ref().get();
        let field = |name: &str| format!("{prefix}.{name}");
        let text = |v: &Option<Spanned<Value>>, name: &str| {
            v.as_ref()
                .map(|v| self.string(v, &field(name)).map(str::to_owned))
                .transpose()
        };
        // Integers too large for TOML go to `resolve` as the nearest i64
        // (past every range) and are shown as written.
        let mut oversized: Vec<(&str, String, String)> = Vec::new();
        let mut integer = |v: &Option<Spanned<Value>>, name: &'static str| {
            let Some(v) = v else { return Ok(None) };
            if let Value::Integer(n) = *v.get_ref() {
                return Ok(Some(n));
            }
            let Some(literal) = self.oversized(v) else {
                return Err(self.wrong_type(v, &field(name), "an integer"));
            };
            let nearest = if literal.starts_with('-') {
                i64::MIN
            } else {
                i64::MAX
            };
            oversized.push((name, nearest.to_string(), literal.to_owned()));
            Ok(Some(nearest))
        };
        let keys = HealthKeys {
            check: text(&raw.check, "check")?,
            port: integer(&raw.port, "port")?,
            path: text(&raw.path, "path")?,
            host: text(&raw.host, "host")?,
            expect_status: integer(&raw.expect_status, "expect_status")?,
            user: text(&raw.user, "user")?,
            database: text(&raw.database, "database")?,
            interval_ms: integer(&raw.interval_ms, "interval_ms")?,
            fast_interval_ms: integer(&raw.fast_interval_ms, "fast_interval_ms")?,
            timeout_ms: integer(&raw.timeout_ms, "timeout_ms")?,
            rise: integer(&raw.rise, "rise")?,
            fall: integer(&raw.fall, "fall")?,
            through_tunnel: match &raw.through_tunnel {
                None => None,
                Some(v) => match *v.get_ref() {
                    Value::Boolean(on) if self.oversized(v).is_none() => Some(on),
                    _ => return Err(self.wrong_type(v, &field("through_tunnel"), "true or false")),
                },
            },
        };
        resolve(&keys, base, vip, base_is).map_err(|e| {
            let mut message = e.error.to_string();
            if let Some((_, nearest, literal)) = oversized.iter().find(|(k, ..)| *k == e.field) {
                message = message.replacen(nearest.as_str(), literal, 1);
            }
            let at = raw.get(&e.field).map_or(table, |v| v.span().start);
            self.invalid(at, &field(&e.field), message)
        })
    }
}

#[cfg(test)]
mod tests {
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
            let error =
                load("protocol = \"udp\"", &format!("  check = \"{check}\""), "").unwrap_err();
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
}
