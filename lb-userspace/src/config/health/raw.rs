//! A health table as the config file writes it: each value's type is
//! checked here and the rest left to [`resolve`], so an error points at the
//! key in the file.

use serde::Deserialize;
use toml::{Spanned, Value};

use super::super::{Checker, ConfigError};
use super::{resolve, ChecksFor, HealthConfig, HealthKeys};

/// A health table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a health table")]
pub(in crate::config) struct RawHealth {
    check: Option<Spanned<Value>>,
    port: Option<Spanned<Value>>,
    path: Option<Spanned<Value>>,
    host: Option<Spanned<Value>>,
    expect_status: Option<Spanned<Value>>,
    expect_body: Option<Spanned<Value>>,
    tls: Option<Spanned<Value>>,
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
            "expect_body" => self.expect_body.as_ref(),
            "tls" => self.tls.as_ref(),
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

impl super::super::TableName for RawHealth {
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
    pub(in crate::config) fn health(
        &self,
        base: &HealthConfig,
        raw: &Spanned<super::super::raw::OneTable<RawHealth>>,
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
            expect_body: text(&raw.expect_body, "expect_body")?,
            tls: match &raw.tls {
                None => None,
                Some(v) => match *v.get_ref() {
                    Value::Boolean(on) => Some(on),
                    _ => return Err(self.wrong_type(v, &field("tls"), "true or false")),
                },
            },
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
