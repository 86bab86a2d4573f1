//! What changes take (`POST`, `PUT`) and what they answer: VIPs and
//! backends as in the config file, state and weight changes, the plan of
//! a change, and the running configuration.

use std::net::IpAddr;

use serde::{de, Deserialize, Deserializer, Serialize};

use crate::{
    config::{value, HealthKeys},
    model::{BackendState, VipPlan},
};

/// The `health` object of a VIP or backend body: the config file's
/// `[vip.health]` / `[vip.backend.health]` keys, same names and units
/// (`check`, `port`, `path`, `host`, `expect_status`, `expect_body`, `interval_ms`,
/// `fast_interval_ms`, `timeout_ms`, `rise`, `fall`, `through_tunnel`),
/// so a VIP added at run time can have any checks the file can give it;
/// checked on conversion by the file's own rules (`config::resolve_health`).
pub type HealthSpec = HealthKeys;

/// `POST /v1/vips`: a VIP, as in the config file's `[[vip]]`. Numbers
/// are taken as any integer and checked by the file's rules on conversion
/// (`VipConfig::try_from`), so a refusal names the field and its range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipSpec {
    /// Address.
    pub address: IpAddr,
    /// Port, 1..=65535.
    pub port: i64,
    /// "tcp" (default) or "udp".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Maglev table size (a prime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_size: Option<i64>,
    /// "drop" or "keep".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_all_down: Option<String>,
    /// Seconds after which a drain of one of its backends cuts the
    /// remaining flows, 1..=604800 (default: never), as the file's
    /// `drain_timeout_s`; a drain's own `timeout_s` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout_s: Option<i64>,
    /// "dsr-l2" (default), "nat", "ipip" or "gue".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<String>,
    /// "connection" (default) or "source" (client affinity), as the
    /// file's `affinity`. Sent only when given: an lbd before affinity
    /// refuses the field by name instead of adding a VIP without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// Seconds a backend coming back into service takes to reach its
    /// full weight, 1..=3600 (default: at once), as the file's
    /// `slow_start_s`. Sent only when given, as `affinity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start_s: Option<i64>,
    /// NAT mode: the VIP's own NAT address (default: the node's `[nat]`
    /// source of its family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_source: Option<IpAddr>,
    /// Health checks, as the file's `[vip.health]` (default: TCP checks
    /// for a TCP VIP, none for UDP); its backends' start from these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    /// Backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendSpec>,
}

/// `POST /v1/vips/{vip}/backends`: a backend, as in `[[vip.backend]]`;
/// checked on conversion (`api::convert::backend_config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// Address.
    pub address: IpAddr,
    /// MAC (default: from the neighbour table); DSR only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// NAT only: the port it listens on (default: the VIP's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Weight, 0..=10000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// A backup: takes new flows only while no other backend of the VIP
    /// can (default false; see `BackendConfig::backup`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backup: bool,
    /// Its own health checks, as the file's `[vip.backend.health]`: the
    /// keys given override its VIP's (default: the VIP's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
}

/// `PUT .../state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateChange {
    /// The state to set; an unknown name is refused by name.
    pub state: BackendState,
    /// With "draining": cut remaining flows after this many seconds
    /// (default: the VIP's `drain_timeout_s`, else never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    /// Only if the backend is in this state now: in another, the change
    /// is refused (409 `conflict`) and nothing changes. lbd checks and
    /// changes in one step of its engine loop, so a client that looked
    /// first (`lbctl backend maintenance --off`) cannot end a drain made
    /// between its look and its change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<BackendState>,
}

/// `PUT .../weight`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightChange {
    /// New weight, 0..=10000 (checked as it is read, by the file's rule).
    #[serde(deserialize_with = "weight")]
    pub weight: u32,
}

/// Reads a weight by the config file's rule; the field is named by the
/// body's reader (`Request::body_as`), which prefixes the JSON path.
fn weight<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(deserializer)?;
    value::weight(n).map_err(de::Error::custom)
}

/// The answer to a change: what it does (or would do, with `dry_run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// True when nothing was applied.
    pub dry_run: bool,
    /// Per VIP: new-flow shares before and after, fraction of the table
    /// that moves.
    pub plan: Vec<VipPlan>,
    /// For a reload: runtime changes it undoes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undone: Vec<String>,
    /// For a drain: when it ends, its remaining flows then cut unless
    /// `cuts_flows` is false (NAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainPlan>,
    /// What the change leaves that works now but may not later (a VIP
    /// address no running VRRP instance moves): shown to the operator
    /// who made it, not only logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A drain's effective deadline, in a change's answer (also a dry run's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainPlan {
    /// Seconds until the drain ends (None: never): the remaining flows
    /// are then cut, unless `cuts_flows` is false (NAT).
    pub timeout_s: Option<u64>,
    /// Which setting decided it.
    pub from: crate::model::DrainTimeoutSource,
    /// Whether the timeout cuts the remaining flows: false for a NAT VIP,
    /// whose connections stay on the backend until they end (its timeout
    /// puts the backend in maintenance, taking no new flows). Absent from
    /// an older lbd's answer: true.
    #[serde(default = "cuts_by_default")]
    pub cuts_flows: bool,
    /// For a backend that was draining already: how long it had been
    /// (whole seconds). Its deadline was kept (`from` = `kept`,
    /// `timeout_s` what is left of it) unless the request gave a
    /// timeout of its own. Absent when this drain started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_for_s: Option<u64>,
}

/// What an answer without `cuts_flows` meant: the timeout cut flows.
fn cuts_by_default() -> bool {
    true
}

/// `GET /v1/config`: the running configuration as TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigText {
    /// The TOML text.
    pub toml: String,
    /// What the text leaves out, so an operator who saves it as the file
    /// knows before the next reload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Why the text would not load as a config file as it is (lbd's own
    /// loading, as at a start, refuses it), so `lbctl config dump` fails
    /// rather than hand out a file the next start or reload refuses.
    /// Absent when it loads (and from an older lbd's answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_error: Option<String>,
}
