//! Conversions between the API's wire types (`api::schema`) and lbd's own:
//! request bodies into validated config, checked value by value by the
//! config file's rules (`config::value`) so the API accepts exactly what
//! the file does, with refusals naming the field as the body spells it;
//! and lbd's states into the names the status shows.

use std::{collections::HashMap, net::IpAddr};

use lb_common::Mode;

use super::{
    code,
    schema::{BackendSpec, CheckKind, HealthSpec, HealthStatus, LimitsSpec, RateSpec, VipSpec},
    Response,
};
use crate::{
    config::{
        resolve_health,
        value::{self, FieldError, ValueError},
        BackendConfig, ChecksFor, HealthConfig, NatConfig, VipConfig, DEFAULT_TABLE_SIZE,
        DEFAULT_WEIGHT,
    },
    guard::{Limits, RateLimit},
    health::{self, Health},
};

impl TryFrom<&VipSpec> for VipConfig {
    type Error = FieldError;

    /// The VIP a `POST /v1/vips` body describes on a node without a
    /// `[nat]` table (see [`vip_config`]).
    fn try_from(spec: &VipSpec) -> Result<Self, Self::Error> {
        vip_config(spec, &NatConfig::default())
    }
}

/// The VIP a `POST /v1/vips` body describes on a node whose `[nat]` table
/// is `nat` (a NAT VIP without its own `nat_source` takes the node's);
/// refusals name the field (`port`, `backends[1].weight`,
/// `health.interval_ms`).
pub fn vip_config(spec: &VipSpec, nat: &NatConfig) -> Result<VipConfig, FieldError> {
    let address = value::service_address(spec.address).map_err(|e| e.at("address"))?;
    let port = value::port(spec.port).map_err(|e| e.at("port"))?;
    let protocol = match &spec.protocol {
        None => crate::config::Protocol::default(),
        Some(text) => value::protocol(text).map_err(|e| e.at("protocol"))?,
    };
    let mut vip = VipConfig::new(address, port, protocol);
    vip.table_size = match spec.table_size {
        None => DEFAULT_TABLE_SIZE,
        Some(n) => value::table_size(n).map_err(|e| e.at("table_size"))?,
    };
    if let Some(text) = &spec.on_all_down {
        vip.on_all_down = value::on_all_down(text).map_err(|e| e.at("on_all_down"))?;
    }
    if let Some(text) = &spec.forwarding {
        vip.forwarding = value::forwarding(text).map_err(|e| e.at("forwarding"))?;
    }
    if let Some(text) = &spec.affinity {
        vip.affinity = value::affinity(text).map_err(|e| e.at("affinity"))?;
    }
    if let Some(n) = spec.drain_timeout_s {
        vip.drain_timeout = Some(value::drain_timeout_s(n).map_err(|e| e.at("drain_timeout_s"))?);
    }
    if let Some(n) = spec.slow_start_s {
        vip.slow_start = Some(value::slow_start_s(n).map_err(|e| e.at("slow_start_s"))?);
    }
    let own_source = match spec.nat_source {
        None => None,
        Some(source) => Some(
            value::nat_source(source, address, vip.forwarding).map_err(|e| e.at("nat_source"))?,
        ),
    };
    if vip.forwarding == Mode::Nat {
        vip.nat = Some(
            nat.vip_nat(address, own_source)
                .ok_or_else(|| value::no_nat_source(address).at("forwarding"))?,
        );
    }
    // After forwarding, as in the file: through_tunnel depends on it.
    if let Some(keys) = &spec.health {
        vip.health = health_of(keys, &vip.health, checks_for(&vip), "the default", "")?;
    }
    // A backend's health table starts from the VIP's, as in the file.
    let backend_base_is = if spec.health.is_some() {
        "the VIP's or the default"
    } else {
        "the default"
    };
    // Named by the first backend past the limit, as the file does.
    value::backends_per_vip(spec.backends.len())
        .map_err(|e| e.at(format!("backends[{}]", crate::config::MAX_BACKENDS_PER_VIP)))?;
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    for (index, backend) in spec.backends.iter().enumerate() {
        let prefix = format!("backends[{index}].");
        let earlier = seen.get(&backend.address).map(|i| format!("backends[{i}]"));
        value::listed_once(backend.address, earlier.as_deref())
            .map_err(|e| e.at(format!("{prefix}address")))?;
        seen.insert(backend.address, index);
        let of = VipOf {
            address,
            mode: vip.forwarding,
            checks: checks_for(&vip),
            health: &vip.health,
            health_is: backend_base_is,
        };
        vip.backends.push(backend_of(&of, backend, &prefix)?);
    }
    let weighted = vip.backends.iter().filter(|b| b.weight > 0).count();
    value::weighted_backends_fit(weighted, vip.table_size).map_err(|e| e.at("table_size"))?;
    Ok(vip)
}

/// The backend a `POST /v1/vips/{vip}/backends` body describes for the
/// running VIP `vip` (its address, forwarding mode and health checks, which
/// the backend's own `health` starts from); refusals name the body's fields
/// (`weight`, `mac`, `port`, `health.rise`). Whether the VIP has room for it
/// is the model's to say.
pub fn backend_config(vip: &VipConfig, spec: &BackendSpec) -> Result<BackendConfig, FieldError> {
    let of = VipOf {
        address: vip.address,
        mode: vip.forwarding,
        checks: checks_for(vip),
        health: &vip.health,
        health_is: "the VIP's",
    };
    backend_of(&of, spec, "")
}

/// What a backend's fields are checked against: its VIP's address, mode
/// and health checks, and how errors name where the latter come from.
struct VipOf<'a> {
    /// The VIP's address.
    address: IpAddr,
    /// The VIP's forwarding mode.
    mode: Mode,
    /// What the health rules ask of the VIP (its mode, port, protocol).
    checks: ChecksFor,
    /// The VIP's health checks: a backend's own start from them.
    health: &'a HealthConfig,
    /// Where the VIP's health values come from, for timing errors.
    health_is: &'a str,
}

/// What the health rules ask of `vip`: its mode, port and protocol.
fn checks_for(vip: &VipConfig) -> ChecksFor {
    ChecksFor {
        mode: vip.forwarding,
        port: vip.port,
        protocol: vip.protocol,
    }
}

/// `base` with the keys of a body's `health` object applied by the file's
/// rules ([`resolve_health`]), a refusal named `{prefix}health.KEY`.
fn health_of(
    keys: &HealthSpec,
    base: &HealthConfig,
    vip: ChecksFor,
    base_is: &str,
    prefix: &str,
) -> Result<HealthConfig, FieldError> {
    resolve_health(keys, base, vip, base_is)
        .map_err(|e| e.error.at(format!("{prefix}health.{}", e.field)))
}

/// A backend of the VIP `vip`, its fields named with `prefix`.
fn backend_of(
    vip: &VipOf<'_>,
    spec: &BackendSpec,
    prefix: &str,
) -> Result<BackendConfig, FieldError> {
    let mode = vip.mode;
    let field = |name: &str| format!("{prefix}{name}");
    let address = value::backend_address(spec.address, vip.address, mode)
        .map_err(|e| e.at(field("address")))?;
    let mac = match &spec.mac {
        None => None,
        Some(text) => {
            value::backend_mac_allowed(mode).map_err(|e| e.at(field("mac")))?;
            Some(value::mac(text).map_err(|e| e.at(field("mac")))?)
        }
    };
    let port = match spec.port {
        None => None,
        Some(n) => Some(value::backend_port(n, mode).map_err(|e| e.at(field("port")))?),
    };
    let weight = match spec.weight {
        None => DEFAULT_WEIGHT,
        Some(n) => value::weight(n).map_err(|e| e.at(field("weight")))?,
    };
    let health = match &spec.health {
        None => None,
        Some(keys) => Some(health_of(
            keys,
            vip.health,
            vip.checks,
            vip.health_is,
            prefix,
        )?),
    };
    Ok(BackendConfig {
        backup: spec.backup,
        address,
        mac,
        port,
        weight,
        health,
    })
}

/// The limits a `PUT /v1/limits/{scope}` body describes, by the config
/// file's `[[limit]]` rules: rates and bursts 1..=1000000, a burst left out
/// is the rate, prefix lengths 1..=32 and 1..=128 (default 24 and 64).
/// Refusals name the field as the body spells it (`source.per_s`,
/// `prefix_v4`). Whether any rate is set is the guard's to say.
pub(crate) fn limits(spec: &LimitsSpec) -> Result<Limits, FieldError> {
    let mut limits = Limits {
        source: rate_limit(spec.source.as_ref(), "source")?,
        prefix: rate_limit(spec.prefix.as_ref(), "prefix")?,
        ..Limits::default()
    };
    if let Some(n) = spec.prefix_v4 {
        limits.prefix_v4 = value::integer(n, 1..=32u8).map_err(|e| e.at("prefix_v4"))?;
    }
    if let Some(n) = spec.prefix_v6 {
        limits.prefix_v6 = value::integer(n, 1..=128u8).map_err(|e| e.at("prefix_v6"))?;
    }
    Ok(limits)
}

/// One rate of a limits body, its fields named under `what` (`source`,
/// `prefix`).
fn rate_limit(spec: Option<&RateSpec>, what: &str) -> Result<Option<RateLimit>, FieldError> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let range = 1..=u32::try_from(lb_common::guard::RATE_MAX).unwrap_or(u32::MAX);
    let per_s =
        value::integer(spec.per_s, range.clone()).map_err(|e| e.at(format!("{what}.per_s")))?;
    let burst = match spec.burst {
        None => None,
        Some(n) => Some(value::integer(n, range).map_err(|e| e.at(format!("{what}.burst")))?),
    };
    // Both are in range now; the guard's constructor fills in the burst.
    RateLimit::new(per_s, burst, what)
        .map(Some)
        .map_err(|e| ValueError::invalid(e.to_string()).at(what))
}

impl From<FieldError> for Response {
    /// 400, with the `limit_exceeded` code when the value goes past one of
    /// lbd's limits, else `bad_request`.
    fn from(error: FieldError) -> Self {
        let code = if error.error.is_limit() {
            code::LIMIT_EXCEEDED
        } else {
            code::BAD_REQUEST
        };
        Response::error(400, code, error.to_string())
    }
}

impl From<Health> for HealthStatus {
    fn from(health: Health) -> Self {
        match health {
            Health::Unknown => HealthStatus::Unknown,
            Health::Up => HealthStatus::Up,
            Health::Down => HealthStatus::Down,
            Health::Full => HealthStatus::Full,
        }
    }
}

impl From<&health::CheckKind> for CheckKind {
    fn from(kind: &health::CheckKind) -> Self {
        match kind {
            health::CheckKind::Tcp => CheckKind::Tcp,
            health::CheckKind::Http { .. } => CheckKind::Http,
            health::CheckKind::Pgsql { .. } => CheckKind::Pgsql,
        }
    }
}

#[cfg(test)]
mod tests;
