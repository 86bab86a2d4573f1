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
    if let Some(n) = spec.drain_timeout_s {
        vip.drain_timeout = Some(value::drain_timeout_s(n).map_err(|e| e.at("drain_timeout_s"))?);
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
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        config::{AllDown, Config, Protocol, MAX_BACKENDS_PER_VIP},
        mac::Mac,
    };

    fn vip_spec(body: serde_json::Value) -> VipSpec {
        serde_json::from_value(body).unwrap()
    }

    fn refused(body: serde_json::Value) -> String {
        match VipConfig::try_from(&vip_spec(body.clone())) {
            Ok(vip) => panic!("{body} was accepted as {vip:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_vip_spec_becomes_the_vip_the_file_would_give() {
        let spec = vip_spec(json!({
            "address": "2001:2::100", "port": 53, "protocol": "udp", "table_size": 251,
            "on_all_down": "keep",
            "backends": [{"address": "2001:2::11", "mac": "02:00:00:00:00:11", "weight": 7},
                         {"address": "2001:2::12"}]
        }));
        let vip = VipConfig::try_from(&spec).unwrap();
        let file = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"2001:2::100\"\nport = 53\n\
             protocol = \"udp\"\ntable_size = 251\non_all_down = \"keep\"\n\
             [[vip.backend]]\naddress = \"2001:2::11\"\nmac = \"02:00:00:00:00:11\"\nweight = 7\n\
             [[vip.backend]]\naddress = \"2001:2::12\"\n",
            "test.toml",
        )
        .unwrap();
        assert_eq!(vip, file.vips[0]);
        assert_eq!(
            (vip.protocol, vip.on_all_down),
            (Protocol::Udp, AllDown::KeepLast)
        );
        assert_eq!(vip.backends[0].mac, Some(Mac([2, 0, 0, 0, 0, 0x11])));
    }

    #[test]
    fn refusals_name_the_field_as_the_body_spells_it() {
        let with = |backends: serde_json::Value| json!({"address": "198.18.0.100", "port": 80, "backends": backends});
        for (body, expected) in [
            (
                json!({"address": "0.0.0.0", "port": 80}),
                "address: 0.0.0.0 is the unspecified address",
            ),
            (
                json!({"address": "198.18.0.100", "port": 0}),
                "port: 0 is out of range 1..=65535",
            ),
            (
                json!({"address": "198.18.0.100", "port": 80, "protocol": "sctp"}),
                "protocol: \"sctp\" is not one of \"tcp\", \"udp\"",
            ),
            (
                json!({"address": "198.18.0.100", "port": 80, "table_size": 99999999999_i64}),
                "table_size: 99999999999 is out of range 3..=65537",
            ),
            (
                with(
                    json!([{"address": "198.18.0.11"}, {"address": "198.18.0.12", "weight": 10001}]),
                ),
                "backends[1].weight: 10001 is out of range 0..=10000",
            ),
            (
                with(json!([{"address": "198.18.0.11"}, {"address": "198.18.0.11"}])),
                "backends[1].address: 198.18.0.11 is already backends[0]",
            ),
            (
                with(json!([{"address": "2001:2::11"}])),
                "backends[0].address: 2001:2::11 is IPv6 but the VIP 198.18.0.100 is IPv4",
            ),
            (
                with(json!([{"address": "198.18.0.100"}])),
                "backends[0].address: 198.18.0.100 is the VIP's own address",
            ),
            (
                with(json!([{"address": "198.18.0.11", "mac": "00:00:00:00:00:00"}])),
                "backends[0].mac: \"00:00:00:00:00:00\" is the all-zero MAC address",
            ),
            (
                json!({"address": "198.18.0.100", "port": 80, "table_size": 3, "backends": [
                    {"address": "198.18.0.11"}, {"address": "198.18.0.12"},
                    {"address": "198.18.0.13"}, {"address": "198.18.0.14"}]}),
                "table_size: 4 backends with a weight do not fit a Maglev table of 3 slots",
            ),
        ] {
            let message = refused(body.clone());
            assert!(message.starts_with(expected), "{body}: {message:?}");
        }
    }

    #[test]
    fn a_vip_drain_timeout_is_the_files() {
        let spec = vip_spec(json!({"address": "198.18.0.100", "port": 80, "drain_timeout_s": 300}));
        let vip = VipConfig::try_from(&spec).unwrap();
        let file = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             drain_timeout_s = 300\n",
            "test.toml",
        )
        .unwrap();
        assert_eq!(vip, file.vips[0]);
        assert_eq!(vip.drain_timeout, Some(std::time::Duration::from_secs(300)));
        for n in [0, -1, 604_801] {
            let message =
                refused(json!({"address": "198.18.0.100", "port": 80, "drain_timeout_s": n}));
            assert!(
                message.starts_with(&format!("drain_timeout_s: {n} is out of range 1..=604800")),
                "{message}"
            );
        }
        let none = VipConfig::try_from(&vip_spec(json!({"address": "198.18.0.100", "port": 80})));
        assert_eq!(none.unwrap().drain_timeout, None);
    }

    #[test]
    fn too_many_backends_is_a_limit() {
        let backends: Vec<serde_json::Value> = (0..=MAX_BACKENDS_PER_VIP)
            .map(|i| json!({"address": format!("10.{}.{}.1", i / 256, i % 256)}))
            .collect();
        let spec = vip_spec(json!({"address": "198.18.0.100", "port": 80, "backends": backends}));
        let error = VipConfig::try_from(&spec).unwrap_err();
        assert!(error.error.is_limit());
        assert_eq!(error.field, format!("backends[{MAX_BACKENDS_PER_VIP}]"));
        let answer = Response::from(error);
        assert_eq!(answer.status, 400);
        assert_eq!(answer.body["error"]["code"], code::LIMIT_EXCEEDED);
    }

    #[test]
    fn a_single_backend_names_its_fields_without_a_path() {
        let id = VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
        let spec = |body| serde_json::from_value::<BackendSpec>(body).unwrap();
        let ok = backend_config(
            &id,
            &spec(json!({"address": "198.18.0.11", "mac": "02:00:00:00:00:11", "weight": 3})),
        )
        .unwrap();
        assert_eq!((ok.weight, ok.mac), (3, Some(Mac([2, 0, 0, 0, 0, 0x11]))));
        for (body, expected) in [
            (
                json!({"address": "198.18.0.11", "weight": -1}),
                "weight: -1 is out of range 0..=10000",
            ),
            (
                json!({"address": "198.18.0.11", "mac": "01:00:00:00:00:11"}),
                "mac: \"01:00:00:00:00:11\" is a multicast MAC address",
            ),
            (
                json!({"address": "198.18.0.100"}),
                "address: 198.18.0.100 is the VIP's own address",
            ),
        ] {
            let message = backend_config(&id, &spec(body.clone()))
                .unwrap_err()
                .to_string();
            assert!(message.starts_with(expected), "{body}: {message:?}");
        }
    }

    const NAT_FILE: &str = "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n\
        [[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"nat\"\n\
        [[vip.backend]]\naddress = \"198.19.2.11\"\nport = 8080\n";

    #[test]
    fn a_nat_vip_spec_becomes_the_vip_the_file_would_give() {
        let file = Config::from_toml_str(NAT_FILE, "test.toml").unwrap();
        let spec = vip_spec(json!({
            "address": "198.18.0.100", "port": 80, "forwarding": "nat",
            "backends": [{"address": "198.19.2.11", "port": 8080}]
        }));
        // No nat_source: the node's [nat] one, as in the file.
        let vip = vip_config(&spec, &file.nat).unwrap();
        assert_eq!(vip, file.vips[0]);
        // Its own source wins.
        let mut own = spec.clone();
        own.nat_source = Some("198.18.0.51".parse().unwrap());
        let vip = vip_config(&own, &file.nat).unwrap();
        let nat = vip.nat.unwrap();
        assert_eq!(
            (nat.source.to_string(), nat.own_source),
            ("198.18.0.51".to_owned(), true)
        );
        // A backend added to it later may name its port, not a MAC.
        let backend: BackendSpec =
            serde_json::from_value(json!({"address": "198.19.2.12", "port": 9000})).unwrap();
        assert_eq!(backend_config(&vip, &backend).unwrap().port, Some(9000));
    }

    #[test]
    fn nat_refusals_name_the_field_with_the_file_words() {
        let nat = Config::from_toml_str(NAT_FILE, "test.toml").unwrap().nat;
        let vip = |extra: serde_json::Value| {
            let mut body = json!({"address": "198.18.0.100", "port": 80});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            vip_spec(body)
        };
        for (spec, node, expected) in [
            (vip(json!({"forwarding": "NAT"})), &nat, "forwarding: \"NAT\" is not one of \"dsr-l2\", \"nat\""),
            (
                vip(json!({"nat_source": "198.18.0.51"})),
                &nat,
                "nat_source: only a VIP with forwarding = \"nat\" has a NAT address",
            ),
            (
                vip(json!({"forwarding": "nat", "nat_source": "2001:2::50"})),
                &nat,
                "nat_source: 2001:2::50 is not of the VIP 198.18.0.100's family",
            ),
            (
                vip(json!({"forwarding": "nat"})),
                &NatConfig::default(),
                "forwarding: forwarding = \"nat\" needs a NAT address of the VIP's family: set nat_source here or [nat].source_ipv4",
            ),
            (
                vip(json!({"backends": [{"address": "198.19.2.11", "port": 8080}]})),
                &nat,
                "backends[0].port: direct server return keeps the VIP's port",
            ),
            (
                vip(json!({"forwarding": "nat", "backends": [{"address": "198.19.2.11", "port": 0}]})),
                &nat,
                "backends[0].port: 0 is out of range 1..=65535",
            ),
            (
                vip(json!({"forwarding": "nat",
                           "backends": [{"address": "198.19.2.11", "mac": "02:00:00:00:00:11"}]})),
                &nat,
                "backends[0].mac: a NAT VIP's backends are routed",
            ),
        ] {
            let message = match vip_config(&spec, node) {
                Ok(vip) => panic!("{spec:?} was accepted as {vip:?}"),
                Err(e) => e.to_string(),
            };
            assert!(message.starts_with(expected), "{message:?} is not {expected:?}");
        }
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        for (body, field) in [
            (
                json!({"address": "198.18.0.100", "port": 80, "backend": []}),
                "`backend`",
            ),
            (
                json!({"address": "198.18.0.100", "port": 80,
                       "backends": [{"address": "198.18.0.11", "wieght": 1}]}),
                "`wieght`",
            ),
        ] {
            let error = serde_json::from_value::<VipSpec>(body)
                .unwrap_err()
                .to_string();
            assert!(error.contains(&format!("unknown field {field}")), "{error}");
        }
    }

    /// A TOML table's lines for the keys of a JSON `health` object.
    fn toml_keys(health: &serde_json::Value) -> String {
        health
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect()
    }

    /// The config file with one VIP (forwarding `forwarding`) of one
    /// backend, whose health tables have the keys of `vip` and `backend`
    /// (JSON objects; null: no table).
    fn health_file(
        forwarding: &str,
        vip: &serde_json::Value,
        backend: &serde_json::Value,
    ) -> String {
        let mut text = format!(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             forwarding = \"{forwarding}\"\n"
        );
        if !vip.is_null() {
            text += &format!("[vip.health]\n{}", toml_keys(vip));
        }
        text += "[[vip.backend]]\naddress = \"198.19.2.11\"\n";
        if !backend.is_null() {
            text += &format!("[vip.backend.health]\n{}", toml_keys(backend));
        }
        text
    }

    /// The `POST /v1/vips` body of the same VIP.
    fn health_body(
        forwarding: &str,
        vip: &serde_json::Value,
        backend: &serde_json::Value,
    ) -> VipSpec {
        let mut b = json!({"address": "198.19.2.11"});
        if !backend.is_null() {
            b["health"] = backend.clone();
        }
        let mut body = json!({"address": "198.18.0.100", "port": 80,
                              "forwarding": forwarding, "backends": [b]});
        if !vip.is_null() {
            body["health"] = vip.clone();
        }
        vip_spec(body)
    }

    /// The file's message without its place (`lbd.toml:7:3: `) and field,
    /// and the field: `vip[0].health.rise: 0 is...` -> (`vip[0].health.rise`,
    /// `0 is ...`).
    fn file_refusal(text: &str) -> (String, String) {
        let message = match Config::from_toml_str(text, "lbd.toml") {
            Ok(config) => panic!("the file took {text}: {:?}", config.vips[0]),
            Err(e) => e.to_string(),
        };
        let rest = message
            .strip_prefix("lbd.toml:")
            .and_then(|m| m.split_once(": "))
            .map_or(message.as_str(), |(_, rest)| rest);
        let (field, words) = rest.split_once(": ").unwrap();
        (field.to_owned(), words.to_owned())
    }

    #[test]
    fn health_objects_give_what_the_file_gives() {
        let none = serde_json::Value::Null;
        for (forwarding, vip, backend) in [
            ("dsr-l2", none.clone(), none.clone()),
            (
                "dsr-l2",
                json!({"check": "http", "path": "/healthz", "host": "example.test",
                              "expect_status": 204, "port": 8080}),
                none.clone(),
            ),
            (
                "dsr-l2",
                json!({"interval_ms": 1000, "rise": 3}),
                json!({"port": 8080, "fall": 5}),
            ),
            // Only the interval, shorter than the default fast interval:
            // the fast interval follows it down, in the VIP and a backend.
            (
                "dsr-l2",
                json!({"interval_ms": 400, "timeout_ms": 300}),
                json!({"rise": 1}),
            ),
            (
                "dsr-l2",
                none.clone(),
                json!({"interval_ms": 300, "timeout_ms": 200}),
            ),
            (
                "dsr-l2",
                json!({"interval_ms": 400, "fast_interval_ms": 200, "timeout_ms": 300}),
                json!({"check": "none"}),
            ),
            (
                "nat",
                json!({"check": "tcp", "timeout_ms": 10, "fast_interval_ms": 10, "interval_ms": 10}),
                json!({"check": "http", "path": "/", "through_tunnel": false}),
            ),
            ("ipip", json!({"through_tunnel": true}), none.clone()),
            (
                "nat",
                json!({"check": "pgsql", "user": "haproxy"}),
                json!({"database": "app"}),
            ),
            (
                "dsr-l2",
                json!({"user": "haproxy"}),
                json!({"check": "pgsql"}),
            ),
            (
                "gue",
                json!({"through_tunnel": true, "check": "http"}),
                json!({"through_tunnel": false, "interval_ms": 3_600_000, "fast_interval_ms": 3_600_000,
                    "timeout_ms": 3_600_000, "rise": 100, "fall": 100, "expect_status": 599}),
            ),
        ] {
            let mut text = health_file(forwarding, &vip, &backend);
            if forwarding == "nat" {
                text = text.replace("[[vip]]", "[nat]\nsource_ipv4 = \"198.18.0.50\"\n[[vip]]");
            }
            let file =
                Config::from_toml_str(&text, "lbd.toml").unwrap_or_else(|e| panic!("{text}: {e}"));
            let spec = health_body(forwarding, &vip, &backend);
            let api = vip_config(&spec, &file.nat).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
            assert_eq!(api, file.vips[0], "{text}");
            // A backend added later to the running VIP gets the same as
            // one the file (or the VIP's body) lists.
            let later = backend_config(&api, &spec.backends[0]).unwrap();
            assert_eq!(later, file.vips[0].backends[0], "{text}");
        }
    }

    #[test]
    fn health_refusals_name_the_field_in_the_file_words() {
        let none = serde_json::Value::Null;
        for (forwarding, vip, backend, field) in [
            (
                "dsr-l2",
                json!({"check": "icmp"}),
                none.clone(),
                "health.check",
            ),
            ("dsr-l2", json!({"port": 0}), none.clone(), "health.port"),
            (
                "dsr-l2",
                json!({"port": 65_536}),
                none.clone(),
                "health.port",
            ),
            (
                "dsr-l2",
                json!({"path": "healthz"}),
                none.clone(),
                "health.path",
            ),
            (
                "dsr-l2",
                json!({"path": "/a b"}),
                none.clone(),
                "health.path",
            ),
            (
                "dsr-l2",
                json!({"path": format!("/{}", "x".repeat(1024))}),
                none.clone(),
                "health.path",
            ),
            ("dsr-l2", json!({"host": ""}), none.clone(), "health.host"),
            (
                "dsr-l2",
                json!({"check": "pgsql"}),
                none.clone(),
                "health.check",
            ),
            (
                "dsr-l2",
                json!({"check": "pgsql", "user": ""}),
                none.clone(),
                "health.user",
            ),
            (
                "dsr-l2",
                json!({"check": "pgsql", "user": "u", "database": "a\u{0}b"}),
                none.clone(),
                "health.database",
            ),
            (
                "dsr-l2",
                json!({"host": "a\tb"}),
                none.clone(),
                "health.host",
            ),
            (
                "dsr-l2",
                json!({"host": "h".repeat(254)}),
                none.clone(),
                "health.host",
            ),
            (
                "dsr-l2",
                json!({"expect_status": 600}),
                none.clone(),
                "health.expect_status",
            ),
            (
                "dsr-l2",
                json!({"interval_ms": 9}),
                none.clone(),
                "health.interval_ms",
            ),
            (
                "dsr-l2",
                json!({"fast_interval_ms": 3_600_001}),
                none.clone(),
                "health.fast_interval_ms",
            ),
            (
                "dsr-l2",
                json!({"timeout_ms": -1}),
                none.clone(),
                "health.timeout_ms",
            ),
            ("dsr-l2", json!({"rise": 0}), none.clone(), "health.rise"),
            ("dsr-l2", json!({"fall": 101}), none.clone(), "health.fall"),
            (
                "dsr-l2",
                json!({"through_tunnel": true}),
                none.clone(),
                "health.through_tunnel",
            ),
            (
                "nat",
                none.clone(),
                json!({"through_tunnel": true}),
                "backends[0].health.through_tunnel",
            ),
            // Timing: both given, one given against the default, the other.
            (
                "dsr-l2",
                json!({"interval_ms": 500, "timeout_ms": 600}),
                none.clone(),
                "health.timeout_ms",
            ),
            (
                "dsr-l2",
                json!({"timeout_ms": 3000}),
                none.clone(),
                "health.timeout_ms",
            ),
            (
                "dsr-l2",
                json!({"interval_ms": 500}),
                none.clone(),
                "health.interval_ms",
            ),
            (
                "dsr-l2",
                json!({"fast_interval_ms": 3000}),
                none.clone(),
                "health.fast_interval_ms",
            ),
            (
                "dsr-l2",
                json!({"interval_ms": 100, "fast_interval_ms": 200, "timeout_ms": 50}),
                none.clone(),
                "health.fast_interval_ms",
            ),
            // A backend's timing against the VIP's.
            (
                "dsr-l2",
                json!({"interval_ms": 1000}),
                json!({"timeout_ms": 1500}),
                "backends[0].health.timeout_ms",
            ),
            (
                "dsr-l2",
                json!({"interval_ms": 1000}),
                json!({"interval_ms": 800}),
                "backends[0].health.interval_ms",
            ),
            (
                "dsr-l2",
                none.clone(),
                json!({"rise": 101}),
                "backends[0].health.rise",
            ),
        ] {
            let mut text = health_file(forwarding, &vip, &backend);
            if forwarding == "nat" {
                text = text.replace("[[vip]]", "[nat]\nsource_ipv4 = \"198.18.0.50\"\n[[vip]]");
            }
            let nat = Config::from_toml_str(
                "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n",
                "lbd.toml",
            )
            .unwrap()
            .nat;
            let (file_field, file_words) = file_refusal(&text);
            let spec = health_body(forwarding, &vip, &backend);
            let error = match vip_config(&spec, &nat) {
                Ok(vip) => panic!("{spec:?} was accepted as {vip:?}"),
                Err(e) => e,
            };
            assert_eq!(error.field, field, "{text}: {error}");
            // The file's field is the body's, spelt the file's way.
            let as_file = format!("vip[0].{}", field.replace("backends[", "backend["));
            assert_eq!(file_field, as_file, "{text}");
            assert_eq!(error.error.to_string(), file_words, "{text}");
        }
    }

    #[test]
    fn a_backend_added_later_starts_from_its_vips_health() {
        let vip = vip_spec(json!({"address": "198.18.0.100", "port": 80,
            "health": {"check": "http", "path": "/healthz", "interval_ms": 1000}}));
        let vip = VipConfig::try_from(&vip).unwrap();
        let spec = |body| serde_json::from_value::<BackendSpec>(body).unwrap();
        let backend = backend_config(
            &vip,
            &spec(json!({"address": "198.18.0.11", "health": {"rise": 5}})),
        )
        .unwrap();
        let health = backend.health.unwrap();
        assert_eq!(
            (
                health.check,
                health.path.as_str(),
                health.interval,
                health.rise
            ),
            (
                crate::config::CheckType::Http,
                "/healthz",
                std::time::Duration::from_millis(1000),
                5
            )
        );
        // No health object: the VIP's, as a backend without a table.
        let plain = backend_config(&vip, &spec(json!({"address": "198.18.0.12"}))).unwrap();
        assert_eq!(plain.health, None);
        // Timing against the running VIP's, named as the body spells it.
        let error = backend_config(
            &vip,
            &spec(json!({"address": "198.18.0.13", "health": {"timeout_ms": 1500}})),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "health.timeout_ms: timeout_ms (1500) is longer than interval_ms (1000, the VIP's): set interval_ms too"
        );
        let error = backend_config(
            &vip,
            &spec(json!({"address": "198.18.0.13", "health": {"through_tunnel": true}})),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("health.through_tunnel: only a VIP with forwarding"),
            "{error}"
        );
    }

    #[test]
    fn checks_through_the_tunnel_keep_the_vips_port_and_protocol() {
        let vip = |body| VipConfig::try_from(&vip_spec(body));
        let error = vip(
            json!({"address": "198.18.0.100", "port": 80, "forwarding": "gue",
            "health": {"through_tunnel": true, "port": 8081}}),
        )
        .unwrap_err();
        assert!(
            error.to_string().starts_with(
                "health.port: a check through the tunnel goes to the VIP itself, so it must use the VIP's port 80"
            ),
            "{error}"
        );
        let error = vip(
            json!({"address": "198.18.0.100", "port": 53, "protocol": "udp",
            "forwarding": "ipip", "health": {"through_tunnel": true, "check": "tcp"}}),
        )
        .unwrap_err();
        assert!(
            error.to_string().starts_with(
                "health.check: a check through the tunnel goes to the VIP itself, which serves UDP"
            ),
            "{error}"
        );
        // A backend added later by its own health object, too.
        let running = vip(
            json!({"address": "198.18.0.100", "port": 80, "forwarding": "gue",
            "health": {"through_tunnel": true}}),
        )
        .unwrap();
        let spec = serde_json::from_value::<BackendSpec>(
            json!({"address": "198.19.2.11", "health": {"port": 8081}}),
        )
        .unwrap();
        let error = backend_config(&running, &spec).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("health.port: a check through the tunnel"),
            "{error}"
        );
    }

    #[test]
    fn health_objects_are_strict_and_typed() {
        for (health, expected) in [
            (json!({"interval": 1000}), "unknown field `interval`"),
            (
                json!({"rise": "3"}),
                "invalid type: string \"3\", expected i64",
            ),
            (
                json!({"through_tunnel": 1}),
                "invalid type: integer `1`, expected a boolean",
            ),
            (json!("tcp"), "invalid type: string \"tcp\""),
        ] {
            for body in [
                json!({"address": "198.18.0.100", "port": 80, "health": health}),
                json!({"address": "198.18.0.100", "port": 80,
                       "backends": [{"address": "198.18.0.11", "health": health}]}),
            ] {
                let error = serde_json::from_value::<VipSpec>(body)
                    .unwrap_err()
                    .to_string();
                assert!(error.contains(expected), "{error}");
            }
        }
    }

    #[test]
    fn states_and_kinds_keep_their_wire_names() {
        for (health, name) in [
            (Health::Unknown, "unknown"),
            (Health::Up, "up"),
            (Health::Down, "down"),
            (Health::Full, "full"),
        ] {
            assert_eq!(HealthStatus::from(health).as_str(), name);
            assert_eq!(health.to_string(), name);
        }
        for status in HealthStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(
            serde_json::to_value(CheckKind::from(&health::CheckKind::Tcp)).unwrap(),
            "tcp"
        );
        let pgsql = health::CheckKind::Pgsql {
            user: "haproxy".into(),
            database: None,
        };
        assert_eq!(
            serde_json::to_value(CheckKind::from(&pgsql)).unwrap(),
            "pgsql"
        );
        assert_eq!(CheckKind::from(&pgsql).to_string(), "pgsql");
        assert_eq!(serde_json::to_value(AllDown::KeepLast).unwrap(), "keep");
        assert_eq!(serde_json::to_value(AllDown::Drop).unwrap(), "drop");
    }
}
