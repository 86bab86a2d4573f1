//! The `[[acl]]` and `[[limit]]` tables: deny and allow lists and limits
//! of new flows per source (see `crate::guard`).
//!
//! ```toml
//! [[acl]]
//! action = "deny"                 # "deny" or "allow" (required)
//! source = "198.18.66.0/24"       # a CIDR prefix or one address (required)
//! vip = "198.18.0.100:80/tcp"     # only this VIP (a [[vip]] of this file); absent: every VIP
//!
//! [[limit]]
//! vip = "198.18.0.100:80/tcp"     # only this VIP; absent: every VIP without a [[limit]] of its own
//! source_rate = 20                # new flows per second per source address, 1..=1000000
//! source_burst = 40               # at once (default: source_rate)
//! prefix_rate = 200               # new flows per second per source prefix
//! prefix_burst = 400              # (default: prefix_rate)
//! prefix_v4 = 24                  # prefix length of IPv4 sources, 1..=32 (default 24)
//! prefix_v6 = 64                  # prefix length of IPv6 sources, 1..=128 (default 64)
//! ```
//!
//! Deny wins over allow; a VIP's own allow list replaces the global one;
//! without any rule or limit nothing is filtered or limited.

use std::collections::BTreeSet;

use serde::Deserialize;
use toml::{Spanned, Value};

use super::{value::ValueError, Checker, ConfigError, TableArray, TableName, VipConfig};
use crate::{
    guard::{AclRule, Action, Cidr, GuardConfig, GuardError, Limits, RateLimit, Scope},
    vip_id::VipId,
};

/// One `[[acl]]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [[acl]] table")]
pub(super) struct RawAcl {
    action: Option<Spanned<Value>>,
    source: Option<Spanned<Value>>,
    vip: Option<Spanned<Value>>,
}

/// One `[[limit]]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[limit]] table")]
pub(super) struct RawLimit {
    vip: Option<Spanned<Value>>,
    source_rate: Option<Spanned<Value>>,
    source_burst: Option<Spanned<Value>>,
    prefix_rate: Option<Spanned<Value>>,
    prefix_burst: Option<Spanned<Value>>,
    prefix_v4: Option<Spanned<Value>>,
    prefix_v6: Option<Spanned<Value>>,
}

impl TableName for RawAcl {
    const NAME: &'static str = "acl";
}

impl TableName for RawLimit {
    const NAME: &'static str = "limit";
}

fn guard_error(e: GuardError) -> ValueError {
    ValueError::invalid(e.to_string())
}

impl Checker<'_> {
    /// A prefix length does something only with a per-prefix rate, and
    /// only for the VIP's family (`Limits::unused_prefix_length`, the
    /// API's rule too), pointed at where the file sets it.
    fn prefix_lengths_apply(
        &self,
        index: usize,
        raw: &RawLimit,
        table: usize,
        scope: &Scope,
        limit: &Limits,
    ) -> Result<(), ConfigError> {
        let Some((key, why)) = limit.unused_prefix_length(scope) else {
            return Ok(());
        };
        let field = format!("limit[{index}].{key}");
        let written = if key == "prefix_v4" {
            &raw.prefix_v4
        } else {
            &raw.prefix_v6
        };
        Err(match written {
            Some(v) => self.bad_value(v, &field, why),
            None => self.invalid(table, &field, why),
        })
    }
}

impl Checker<'_> {
    /// The `[[acl]]` and `[[limit]]` tables, against the file's VIPs.
    pub(super) fn guard(
        &self,
        acl: &TableArray<RawAcl>,
        limits: &TableArray<RawLimit>,
        vips: &[VipConfig],
    ) -> Result<GuardConfig, ConfigError> {
        let served: BTreeSet<VipId> = vips.iter().map(VipId::of).collect();
        let is_vip = |id: &VipId| served.contains(id);
        let mut out = GuardConfig::default();
        for (index, raw) in acl.0.iter().enumerate() {
            let table = raw.span().start;
            let raw = raw.get_ref();
            let field = |name: &str| format!("acl[{index}].{name}");
            let name = field("action");
            let v = self.required(&raw.action, table, &name)?;
            let action: Action = self.checked(
                v,
                &name,
                self.string(v, &name)?.parse().map_err(guard_error),
            )?;
            let name = field("source");
            let v = self.required(&raw.source, table, &name)?;
            let source: Cidr = self.checked(
                v,
                &name,
                self.string(v, &name)?.parse().map_err(guard_error),
            )?;
            let scope = self.scope(raw.vip.as_ref(), &field("vip"), &is_vip)?;
            let rule = AclRule {
                scope,
                action,
                source,
            };
            self.checked(v, &name, rule.check().map_err(guard_error))?;
            match out.add_rule(rule, &is_vip) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(self.invalid(
                        table,
                        &format!("acl[{index}]"),
                        "the same rule is listed twice",
                    ))
                }
                Err(e) => return Err(self.invalid(table, &format!("acl[{index}]"), e.to_string())),
            }
        }
        for (index, raw) in limits.0.iter().enumerate() {
            let table = raw.span().start;
            let raw = raw.get_ref();
            let field = |name: &str| format!("limit[{index}].{name}");
            let scope = self.scope(raw.vip.as_ref(), &field("vip"), &is_vip)?;
            if out.limits.contains_key(&scope) {
                return Err(self.invalid(
                    table,
                    &format!("limit[{index}]"),
                    format!("a second [[limit]] for {scope}"),
                ));
            }
            let rate = |rate: &Option<Spanned<Value>>,
                        burst: &Option<Spanned<Value>>,
                        what: &str|
             -> Result<Option<RateLimit>, ConfigError> {
                let Some(v) = rate else {
                    if let Some(b) = burst {
                        return Err(self.bad_value(
                            b,
                            &field(&format!("{what}_burst")),
                            format!("needs {what}_rate"),
                        ));
                    }
                    return Ok(None);
                };
                let per_s = self.integer(v, &field(&format!("{what}_rate")), 1..=1_000_000u32)?;
                let burst = match burst {
                    Some(b) => {
                        Some(self.integer(b, &field(&format!("{what}_burst")), 1..=1_000_000u32)?)
                    }
                    None => None,
                };
                RateLimit::new(per_s, burst, what)
                    .map(Some)
                    .map_err(|e| self.bad_value(v, &field(&format!("{what}_rate")), e.to_string()))
            };
            let mut limit = Limits {
                source: rate(&raw.source_rate, &raw.source_burst, "source")?,
                prefix: rate(&raw.prefix_rate, &raw.prefix_burst, "prefix")?,
                ..Limits::default()
            };
            if let Some(v) = &raw.prefix_v4 {
                limit.prefix_v4 = self.integer(v, &field("prefix_v4"), 1..=32u8)?;
            }
            if let Some(v) = &raw.prefix_v6 {
                limit.prefix_v6 = self.integer(v, &field("prefix_v6"), 1..=128u8)?;
            }
            self.prefix_lengths_apply(index, raw, table, &scope, &limit)?;
            out.set_limits(scope, limit, &is_vip)
                .map_err(|e| self.invalid(table, &format!("limit[{index}]"), e.to_string()))?;
        }
        Ok(out)
    }

    /// A rule's `vip` (absent: global), which must be a VIP of the file.
    fn scope(
        &self,
        value: Option<&Spanned<Value>>,
        name: &str,
        is_vip: &dyn Fn(&VipId) -> bool,
    ) -> Result<Scope, ConfigError> {
        let Some(v) = value else {
            return Ok(Scope::Global);
        };
        let id: VipId = self.checked(
            v,
            name,
            self.string(v, name)?.parse().map_err(ValueError::invalid),
        )?;
        if !is_vip(&id) {
            return Err(self.bad_value(v, name, format!("{id} is not a [[vip]] of this file")));
        }
        Ok(Scope::Vip(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{to_toml, Config};

    const VIPS: &str = r#"interface = "eth0"
[[vip]]
address = "198.18.0.100"
port = 80
  [[vip.backend]]
  address = "198.18.0.11"
  mac = "02:00:00:00:00:11"
[[vip]]
address = "2001:2::100"
port = 443
  [[vip.backend]]
  address = "2001:2::11"
  mac = "02:00:00:00:00:12"
"#;

    fn load(extra: &str) -> Result<Config, String> {
        Config::from_toml_str(&format!("{VIPS}{extra}"), "lbd.toml").map_err(|e| e.to_string())
    }

    fn error(extra: &str) -> String {
        match load(extra) {
            Ok(config) => panic!("expected an error, got {:?}", config.guard),
            Err(e) => e,
        }
    }

    #[test]
    fn rules_and_limits_load_and_dump_back() {
        let config = load(
            r#"
[[acl]]
action = "deny"
source = "198.18.66.0/24"
[[acl]]
action = "allow"
source = "2001:2:1::/48"
vip = "[2001:2::100]:443/tcp"
[[limit]]
source_rate = 20
[[limit]]
vip = "198.18.0.100:80"
prefix_rate = 100
prefix_burst = 300
prefix_v4 = 16
"#,
        )
        .unwrap();
        let guard = &config.guard;
        assert_eq!(guard.acl.len(), 2);
        let v4: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let v6: VipId = "[2001:2::100]:443/tcp".parse().unwrap();
        assert!(guard.acl.iter().any(|r| r.scope == Scope::Vip(v6)
            && r.action == Action::Allow
            && r.source.to_string() == "2001:2:1::/48"));
        let own = guard.limits_of(&v4).unwrap();
        assert_eq!(own.source, None);
        assert_eq!(own.prefix.map(|p| (p.per_s, p.burst)), Some((100, 300)));
        assert_eq!((own.prefix_v4, own.prefix_v6), (16, 64));
        let default = guard.limits_of(&v6).unwrap();
        assert_eq!(default.source.map(|p| (p.per_s, p.burst)), Some((20, 20)));
        let again = Config::from_toml_str(&to_toml(&config), "dump").unwrap();
        assert_eq!(again.guard, config.guard, "dump round trip");
    }

    #[test]
    fn bad_rules_are_refused_naming_field_and_reason() {
        for (extra, expected) in [
            (
                "[[acl]]\naction = \"deny\"\nsource = \"198.18.66.7/24\"\n",
                "acl[0].source: \"198.18.66.7/24\" has host bits set: the prefix is 198.18.66.0/24",
            ),
            (
                "[[acl]]\naction = \"deny\"\nsource = \"198.18.66.0/40\"\n",
                "longer than the address (32 bits)",
            ),
            (
                "[[acl]]\naction = \"drop\"\nsource = \"198.18.66.0/24\"\n",
                "acl[0].action: \"drop\" is not an action",
            ),
            (
                "[[acl]]\naction = \"deny\"\n",
                "acl[0].source: required field is missing",
            ),
            (
                "[[acl]]\naction = \"deny\"\nsource = \"198.18.66.0/24\"\nvip = \"198.18.0.99:80\"\n",
                "acl[0].vip: 198.18.0.99:80/tcp is not a [[vip]] of this file",
            ),
            (
                "[[acl]]\naction = \"deny\"\nsource = \"198.18.66.0/24\"\n[[acl]]\naction = \"deny\"\nsource = \"198.18.66.0/24\"\n",
                "acl[1]: the same rule is listed twice",
            ),
            (
                "[[acl]]\naction = \"deny\"\nsource = \"x\"\nport = 1\n",
                "unknown field `port`",
            ),
            ("[[limit]]\nsource_rate = 0\n", "limit[0].source_rate: 0 is out of range 1..=1000000"),
            ("[[limit]]\nsource_burst = 5\n", "limit[0].source_burst: needs source_rate"),
            ("[[limit]]\nprefix_v4 = 24\n", "needs a rate per source, per prefix or both"),
            ("[[limit]]\nsource_rate = 5\nprefix_v6 = 129\n", "limit[0].prefix_v6: 129 is out of range 1..=128"),
            (
                "[[limit]]\nsource_rate = 5\n[[limit]]\nprefix_rate = 5\n",
                "limit[1]: a second [[limit]] for global",
            ),
        ] {
            let message = error(extra);
            assert!(message.contains(expected), "{extra}: {message}");
        }
    }

    #[test]
    fn no_rules_means_nothing_is_guarded() {
        let config = load("").unwrap();
        assert_eq!(config.guard, GuardConfig::default());
    }

    #[test]
    fn a_vip_rule_is_of_the_vip_family_and_no_prefix_is_mapped() {
        assert!(load(
            "[[acl]]\naction = \"allow\"\nsource = \"198.18.66.0/24\"\nvip = \"198.18.0.100:80\"\n"
        )
        .is_ok());
        for (extra, expected) in [
            (
                "[[acl]]\naction = \"allow\"\nsource = \"2001:db8::/32\"\nvip = \"198.18.0.100:80\"\n",
                "lbd.toml:16:10: acl[0].source: 2001:db8::/32 is IPv6 but the rule is for the IPv4 VIP 198.18.0.100:80/tcp: no client of the VIP comes from it, and an allow list that matches no client locks every client out",
            ),
            (
                "[[acl]]\naction = \"deny\"\nsource = \"198.18.66.0/24\"\nvip = \"[2001:2::100]:443\"\n",
                "lbd.toml:16:10: acl[0].source: 198.18.66.0/24 is IPv4 but the rule is for the IPv6 VIP [2001:2::100]:443/tcp: no client of the VIP comes from it",
            ),
            (
                "[[acl]]\naction = \"deny\"\nsource = \"::ffff:198.18.66.0/120\"\n",
                "lbd.toml:16:10: acl[0].source: ::ffff:198.18.66.0/120 is a prefix of IPv4-mapped IPv6 addresses, which no client has: write the IPv4 prefix 198.18.66.0/24",
            ),
            (
                "[[acl]]\naction = \"allow\"\nsource = \"::ffff:198.18.66.7\"\n",
                "lbd.toml:16:10: acl[0].source: ::ffff:198.18.66.7/128 is a prefix of IPv4-mapped IPv6 addresses, which no client has: write the IPv4 prefix 198.18.66.7/32",
            ),
        ] {
            let message = error(extra);
            assert!(message.starts_with(expected), "{extra}: {message}");
        }
        // A global rule of either family, and ::/0 (which holds the mapped
        // range), are fine.
        assert!(load("[[acl]]\naction = \"deny\"\nsource = \"2001:db8::/32\"\n").is_ok());
        assert!(load("[[acl]]\naction = \"deny\"\nsource = \"::/0\"\n").is_ok());
    }

    #[test]
    fn prefix_lengths_need_a_prefix_rate_of_the_vip_family() {
        for (extra, expected) in [
            (
                "[[limit]]\nsource_rate = 5\nprefix_v4 = 16\n",
                "lbd.toml:16:13: limit[0].prefix_v4: needs prefix_rate (prefix_v4 is the length of the prefixes prefix_rate limits)",
            ),
            (
                "[[limit]]\nsource_rate = 5\nprefix_v6 = 48\n",
                "lbd.toml:16:13: limit[0].prefix_v6: needs prefix_rate",
            ),
            (
                "[[limit]]\nvip = \"198.18.0.100:80\"\nprefix_rate = 5\nprefix_v6 = 48\n",
                "lbd.toml:17:13: limit[0].prefix_v6: the limit is for the IPv4 VIP 198.18.0.100:80/tcp, whose clients have no IPv6 prefix: remove prefix_v6",
            ),
            (
                "[[limit]]\nvip = \"[2001:2::100]:443\"\nprefix_rate = 5\nprefix_v4 = 16\n",
                "lbd.toml:17:13: limit[0].prefix_v4: the limit is for the IPv6 VIP [2001:2::100]:443/tcp, whose clients have no IPv4 prefix",
            ),
        ] {
            let message = error(extra);
            assert!(message.starts_with(expected), "{extra}: {message}");
        }
        // With the rate, and the VIP's family; the defaults a dump writes
        // are let by.
        assert!(load("[[limit]]\nprefix_rate = 5\nprefix_v4 = 16\nprefix_v6 = 48\n").is_ok());
        assert!(load(
            "[[limit]]\nvip = \"198.18.0.100:80\"\nsource_rate = 5\nprefix_v4 = 24\nprefix_v6 = 64\n"
        )
        .is_ok());
    }
}
