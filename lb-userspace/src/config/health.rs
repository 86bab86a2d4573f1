//! The `[vip.health]` and `[vip.backend.health]` tables: how lbd checks
//! that a backend can serve. A backend's table overrides its VIP's key by
//! key; the VIP's overrides the defaults.

use std::time::Duration;

use serde::Deserialize;
use toml::{Spanned, Value};

use super::{value, Checker, ConfigError, Protocol};

/// Longest HTTP check path, in bytes: it goes into every check's request
/// line, and no health endpoint needs more.
pub const MAX_HEALTH_PATH_BYTES: usize = 1024;

/// Longest `Host` for HTTP checks, in bytes: a DNS name's limit.
pub const MAX_HEALTH_HOST_BYTES: usize = 253;

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
}

impl std::fmt::Display for CheckType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckType::None => "none",
            CheckType::Tcp => "tcp",
            CheckType::Http => "http",
        })
    }
}

/// A backend's health checks, with HAProxy's inter/fastinter/rise/fall
/// meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Kind of check.
    pub check: CheckType,
    /// Port checked; None: the VIP's port.
    pub port: Option<u16>,
    /// HTTP path.
    pub path: String,
    /// HTTP Host header; None: the backend's address.
    pub host: Option<String>,
    /// HTTP status that means healthy.
    pub expect_status: u16,
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
            interval: Duration::from_millis(2000),
            fast_interval: Duration::from_millis(500),
            timeout: Duration::from_millis(1000),
            rise: 2,
            fall: 3,
            through_tunnel: false,
        }
    }
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
    interval_ms: Option<Spanned<Value>>,
    fast_interval_ms: Option<Spanned<Value>>,
    timeout_ms: Option<Spanned<Value>>,
    rise: Option<Spanned<Value>>,
    fall: Option<Spanned<Value>>,
    through_tunnel: Option<Spanned<Value>>,
}

impl super::TableName for RawHealth {
    const NAME: &'static str = "vip.health";

    fn not_an_array() -> String {
        "a health table is a table, not an array of tables: write [vip.health] or [vip.backend.health], not [[...]]".to_owned()
    }
}

impl Checker<'_> {
    /// `base` with the keys present in `raw` replaced; `prefix` is the
    /// table's field path (e.g. `vip[0].health`), `mode` the VIP's
    /// forwarding mode (`through_tunnel` needs a tunnelled one), `base_is`
    /// where the values not written come from ("the default", "the
    /// VIP's"), for errors about them.
    pub(super) fn health(
        &self,
        base: &HealthConfig,
        raw: &Spanned<super::raw::OneTable<RawHealth>>,
        prefix: &str,
        mode: lb_common::Mode,
        base_is: &str,
    ) -> Result<HealthConfig, ConfigError> {
        let table = raw.span().start;
        let raw = raw.get_ref().get();
        let field = |name: &str| format!("{prefix}.{name}");
        let mut out = base.clone();
        if let Some(v) = &raw.check {
            out.check = self.choice(
                v,
                &field("check"),
                &[
                    ("none", CheckType::None),
                    ("tcp", CheckType::Tcp),
                    ("http", CheckType::Http),
                ],
            )?;
        }
        if let Some(v) = &raw.port {
            out.port = Some(self.integer(v, &field("port"), 1..=u16::MAX)?);
        }
        if let Some(v) = &raw.path {
            let path = self.string(v, &field("path"))?;
            if path.len() > MAX_HEALTH_PATH_BYTES {
                return Err(self.bad_value(
                    v,
                    &field("path"),
                    format!(
                        "is {} bytes long; at most {MAX_HEALTH_PATH_BYTES} are allowed",
                        path.len()
                    ),
                ));
            }
            if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(self.bad_value(
                    v,
                    &field("path"),
                    format!("{path:?} is not an absolute URL path without spaces"),
                ));
            }
            out.path = path.to_owned();
        }
        if let Some(v) = &raw.host {
            let host = self.string(v, &field("host"))?;
            if host.len() > MAX_HEALTH_HOST_BYTES {
                return Err(self.bad_value(
                    v,
                    &field("host"),
                    format!(
                        "is {} bytes long; at most {MAX_HEALTH_HOST_BYTES} are allowed",
                        host.len()
                    ),
                ));
            }
            if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(self.bad_value(
                    v,
                    &field("host"),
                    format!("{host:?} is not a host name"),
                ));
            }
            out.host = Some(host.to_owned());
        }
        if let Some(v) = &raw.expect_status {
            out.expect_status = self.integer(v, &field("expect_status"), 100..=599)?;
        }
        let millis = |v: &Spanned<Value>, name: &str| -> Result<Duration, ConfigError> {
            Ok(Duration::from_millis(
                self.integer::<u32>(v, &field(name), 10..=3_600_000)?.into(),
            ))
        };
        if let Some(v) = &raw.interval_ms {
            out.interval = millis(v, "interval_ms")?;
        }
        if let Some(v) = &raw.fast_interval_ms {
            out.fast_interval = millis(v, "fast_interval_ms")?;
        }
        if let Some(v) = &raw.timeout_ms {
            out.timeout = millis(v, "timeout_ms")?;
        }
        if let Some(v) = &raw.rise {
            out.rise = self.integer(v, &field("rise"), 1..=100)?;
        }
        if let Some(v) = &raw.fall {
            out.fall = self.integer(v, &field("fall"), 1..=100)?;
        }
        if let Some(v) = &raw.through_tunnel {
            let name = field("through_tunnel");
            let Value::Boolean(on) = *v.get_ref() else {
                return Err(self.wrong_type(v, &name, "true or false"));
            };
            if on {
                self.checked(v, &name, value::through_tunnel_allowed(mode))?;
            }
            out.through_tunnel = on;
        }
        // A fast interval this table does not write (the default, or the
        // VIP's) follows a shorter interval down: a file that only shortens
        // interval_ms stays valid.
        if raw.fast_interval_ms.is_none() && out.fast_interval > out.interval {
            out.fast_interval = out.interval;
        }
        // A check must end before the next is due, and checks of a
        // backend changing state come at least as often as of a stable one.
        // (timeout_ms <= fast_interval_ms is not asked: the defaults, 1000
        // and 500 ms, break it.)
        let timing = [
            (
                "timeout_ms",
                out.timeout,
                &raw.timeout_ms,
                "interval_ms",
                out.interval,
                &raw.interval_ms,
            ),
            (
                "fast_interval_ms",
                out.fast_interval,
                &raw.fast_interval_ms,
                "interval_ms",
                out.interval,
                &raw.interval_ms,
            ),
        ];
        for (short_name, short, short_raw, long_name, long, long_raw) in timing {
            if short <= long {
                continue;
            }
            let (short_ms, long_ms) = (short.as_millis(), long.as_millis());
            return Err(match (short_raw, long_raw) {
                (Some(v), Some(_)) => self.bad_value(
                    v,
                    &field(short_name),
                    format!("{short_name} ({short_ms}) is longer than {long_name} ({long_ms})"),
                ),
                (Some(v), None) => self.bad_value(
                    v,
                    &field(short_name),
                    format!(
                        "{short_name} ({short_ms}) is longer than {long_name} ({long_ms}, {base_is}): set {long_name} too"
                    ),
                ),
                (None, Some(v)) => self.bad_value(
                    v,
                    &field(long_name),
                    format!(
                        "{long_name} ({long_ms}) is shorter than {short_name} ({short_ms}, {base_is}): set {short_name} too"
                    ),
                ),
                (None, None) => self.invalid(
                    table,
                    &field(short_name),
                    format!("{short_name} ({short_ms}, {base_is}) is longer than {long_name} ({long_ms}, {base_is})"),
                ),
            });
        }
        Ok(out)
    }
}
