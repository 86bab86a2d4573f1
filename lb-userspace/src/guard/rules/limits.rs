//! Limits of new flows: a rate with its burst, and a scope's limits per
//! source address and per source prefix; with their checks.

use lb_common::guard::RATE_MAX;
use serde::{Deserialize, Serialize};

use super::{GuardError, Scope};

/// A limit of new flows: `per_s` a second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// New flows per second, 1..=1000000.
    pub per_s: u32,
    /// Bucket size, 1..=1000000 (default: `per_s`).
    pub burst: u32,
}

impl RateLimit {
    /// A limit, checked: both within 1..=`RATE_MAX`. `what` names it in
    /// the error.
    pub fn new(per_s: u32, burst: Option<u32>, what: &str) -> Result<Self, GuardError> {
        let burst = burst.unwrap_or(per_s);
        for (name, value) in [("rate", per_s), ("burst", burst)] {
            if value == 0 || u64::from(value) > RATE_MAX {
                return Err(GuardError::Invalid(format!(
                    "{what} {name}: {value} is out of range 1..={RATE_MAX}"
                )));
            }
        }
        Ok(Self { per_s, burst })
    }
}

/// Prefix length of the prefix buckets of IPv4 sources by default.
pub const DEFAULT_PREFIX_V4: u8 = 24;
/// Prefix length of the prefix buckets of IPv6 sources by default.
pub const DEFAULT_PREFIX_V6: u8 = 64;

/// The limits of new flows of a VIP (or the default of every VIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Per source address (None: none).
    #[serde(default)]
    pub source: Option<RateLimit>,
    /// Per source prefix (None: none).
    #[serde(default)]
    pub prefix: Option<RateLimit>,
    /// Length of an IPv4 source prefix, 1..=32.
    #[serde(default = "default_prefix_v4")]
    pub prefix_v4: u8,
    /// Length of an IPv6 source prefix, 1..=128.
    #[serde(default = "default_prefix_v6")]
    pub prefix_v6: u8,
}

fn default_prefix_v4() -> u8 {
    DEFAULT_PREFIX_V4
}

fn default_prefix_v6() -> u8 {
    DEFAULT_PREFIX_V6
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            source: None,
            prefix: None,
            prefix_v4: DEFAULT_PREFIX_V4,
            prefix_v6: DEFAULT_PREFIX_V6,
        }
    }
}

impl Limits {
    /// The first prefix length set to other than its default that does
    /// nothing in `scope`, as (its key, why): a length only shapes the
    /// prefixes `prefix` limits, and a VIP's clients come from one family.
    /// Default lengths are let by (`lbctl config dump` writes both of
    /// every limit). The file and the API refuse the same.
    pub fn unused_prefix_length(&self, scope: &Scope) -> Option<(&'static str, String)> {
        let defaults = Self::default();
        let set = [
            ("prefix_v4", self.prefix_v4 != defaults.prefix_v4, true),
            ("prefix_v6", self.prefix_v6 != defaults.prefix_v6, false),
        ];
        let family = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
        set.into_iter().filter(|(_, set, _)| *set).find_map(|(key, _, v4)| {
            if self.prefix.is_none() {
                return Some((
                    key,
                    format!("needs prefix_rate ({key} is the length of the prefixes prefix_rate limits)"),
                ));
            }
            match scope {
                Scope::Vip(id) if id.address.is_ipv4() != v4 => Some((
                    key,
                    format!(
                        "the limit is for the {} VIP {id}, whose clients have no {} prefix: remove {key}",
                        family(id.address.is_ipv4()),
                        family(v4)
                    ),
                )),
                _ => None,
            }
        })
    }

    /// Checks the rates, the prefix lengths and that something is limited.
    pub fn check(&self) -> Result<(), GuardError> {
        for (what, rate) in [("source", self.source), ("prefix", self.prefix)] {
            if let Some(rate) = rate {
                RateLimit::new(rate.per_s, Some(rate.burst), what)?;
            }
        }
        if !(1..=32).contains(&self.prefix_v4) {
            return Err(GuardError::Invalid(format!(
                "prefix_v4: {} is out of range 1..=32",
                self.prefix_v4
            )));
        }
        if !(1..=128).contains(&self.prefix_v6) {
            return Err(GuardError::Invalid(format!(
                "prefix_v6: {} is out of range 1..=128",
                self.prefix_v6
            )));
        }
        if self.source.is_none() && self.prefix.is_none() {
            return Err(GuardError::Invalid(
                "a limit needs a rate per source, per prefix or both".to_owned(),
            ));
        }
        Ok(())
    }
}
