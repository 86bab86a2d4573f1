//! The `[vip.health]` and `[vip.backend.health]` tables: how lbd checks
//! that a backend can serve. A backend's table overrides its VIP's key by
//! key; the VIP's overrides the defaults.
mod raw;
mod rules;
#[cfg(test)]
mod tests;

pub(super) use raw::RawHealth;
pub use rules::{check_keys, resolve};

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Protocol;

/// Longest HTTP check path, in bytes: it goes into every check's request
/// line, and no health endpoint needs more.
pub const MAX_HEALTH_PATH_BYTES: usize = 1024;

/// Longest `Host` for HTTP checks, in bytes: a DNS name's limit.
pub const MAX_HEALTH_HOST_BYTES: usize = 253;

/// Longest `expect_body` text, in bytes: a marker the page carries
/// ("OK", a version line), not a page; the check reads 16 KiB of body.
pub const MAX_HEALTH_EXPECT_BODY_BYTES: usize = 256;

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
    /// HTTP checks: text the body must contain too (None: the status
    /// alone decides), for an application that answers 200 while it
    /// reports itself broken in the page.
    pub expect_body: Option<String>,
    /// TCP and HTTP checks over TLS: the TCP check passes once a handshake
    /// completes, the HTTP GET goes over it. For backends that take TLS
    /// straight (passthrough on :443), whose plain port says nothing.
    pub tls: bool,
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
            expect_body: None,
            tls: false,
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
    /// HTTP checks: text the body must contain (its first 16 KiB),
    /// 1..=256 bytes, no control characters but tab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
    /// TCP and HTTP checks: over TLS (certificates not verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
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
