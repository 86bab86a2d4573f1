//! The guards in force (`GET /v1/acl`; changed through `/v1/acl/...` and
//! `/v1/limits/{scope}`) and their drop counters.

use serde::{Deserialize, Serialize};

/// One deny or allow rule with its count (`GET /v1/acl`, `lbctl status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRuleStatus {
    /// `global` or the VIP.
    pub scope: crate::guard::Scope,
    /// Deny or allow.
    pub action: crate::guard::Action,
    /// The sources it matches.
    pub source: crate::guard::Cidr,
    /// Its id in the data plane (None: not in force, its VIP is not served).
    pub id: Option<u32>,
    /// Packets it matched (dropped by a deny rule, let through by an allow
    /// rule) since it was installed.
    pub packets: u64,
}

/// The limits of new flows of a scope (`global`: every VIP without its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitStatus {
    /// `global` or a VIP.
    pub scope: crate::guard::Scope,
    /// The limits.
    pub limits: crate::guard::Limits,
}

/// Every guard in force (`GET /v1/acl`, the answers to the changes of
/// `/v1/acl/...` and `/v1/limits/{scope}`, and `Status::guard`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardStatus {
    /// True when nothing was applied (a dry run's answer: what would be).
    #[serde(default)]
    pub dry_run: bool,
    /// Deny and allow rules.
    pub rules: Vec<AclRuleStatus>,
    /// Limits of new flows.
    pub limits: Vec<LimitStatus>,
    /// Packets dropped by a deny rule, by no allow rule, and new flows
    /// over a limit, since the counters started.
    pub dropped: GuardDrops,
    /// The rules' ids and packet counts could not be read from the data
    /// plane for this answer (logged): `id` and `packets` above say
    /// nothing, and the metrics leave the per-rule series out rather than
    /// show a counter reset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub counts_unread: bool,
}

/// The guards' drop counters (node-wide, summed over CPUs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardDrops {
    /// By a deny rule.
    pub denied: u64,
    /// Outside the allow list in force.
    pub not_allowed: u64,
    /// New flows over a limit.
    pub rate_limited: u64,
}

/// `PUT /v1/limits/{scope}`: the limits of new flows of a scope, as the
/// config file's `[[limit]]` gives them (`source_rate`, `source_burst`, ...
/// there; `source.per_s`, `source.burst` here). Its own type rather than
/// `guard::Limits` so that a burst may be left out (it is then the rate,
/// as in the file) and numbers are checked by the file's ranges, a refusal
/// naming the field as the body spells it (`api::convert::limits`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSpec {
    /// Per source address (None: none).
    #[serde(default)]
    pub source: Option<RateSpec>,
    /// Per source prefix (None: none).
    #[serde(default)]
    pub prefix: Option<RateSpec>,
    /// Length of an IPv4 source prefix, 1..=32 (default 24).
    #[serde(default)]
    pub prefix_v4: Option<i64>,
    /// Length of an IPv6 source prefix, 1..=128 (default 64).
    #[serde(default)]
    pub prefix_v6: Option<i64>,
}

/// One rate of a [`LimitsSpec`]: numbers taken as any integer and checked
/// on conversion, so a refusal says the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateSpec {
    /// New flows per second, 1..=1000000.
    pub per_s: i64,
    /// At once, 1..=1000000 (default: `per_s`, as in the file).
    #[serde(default)]
    pub burst: Option<i64>,
}
