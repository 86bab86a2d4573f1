//! Conversions between the API's wire types (`api::schema`) and lbd's own:
//! request bodies into validated config, checked value by value by the
//! config file's rules (`config::value`) so the API accepts exactly what
//! the file does, with refusals naming the field as the body spells it;
//! and lbd's states into the names the status shows.

use std::{collections::HashMap, net::IpAddr};

use lb_common::Mode;

use super::{
    code,
    schema::{BackendSpec, CheckKind, HealthStatus, LimitsSpec, RateSpec, VipSpec},
    Response,
};
use crate::{
    config::{
        value::{self, FieldError, ValueError},
        BackendConfig, NatConfig, VipConfig, DEFAULT_TABLE_SIZE, DEFAULT_WEIGHT,
    },
    guard::{Limits, RateLimit},
    health::{self, Health},
    reconcile::VipId,
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
/// refusals name the field (`port`, `backends[1].weight`).
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
        vip.backends
            .push(backend_of(address, vip.forwarding, backend, &prefix)?);
    }
    let weighted = vip.backends.iter().filter(|b| b.weight > 0).count();
    value::weighted_backends_fit(weighted, vip.table_size).map_err(|e| e.at("table_size"))?;
    Ok(vip)
}

/// The backend a `POST /v1/vips/{vip}/backends` body describes for the VIP
/// `vip` forwarding in `mode`; refusals name the body's fields (`weight`,
/// `mac`, `port`). Whether the VIP has room for it is the model's to say.
pub fn backend_config(
    vip: &VipId,
    mode: Mode,
    spec: &BackendSpec,
) -> Result<BackendConfig, FieldError> {
    backend_of(vip.address, mode, spec, "")
}

/// A backend of the VIP at `vip` in `mode`, its fields named with `prefix`.
fn backend_of(
    vip: IpAddr,
    mode: Mode,
    spec: &BackendSpec,
    prefix: &str,
) -> Result<BackendConfig, FieldError> {
    let field = |name: &str| format!("{prefix}{name}");
    let address =
        value::backend_address(spec.address, vip, mode).map_err(|e| e.at(field("address")))?;
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
    Ok(BackendConfig {
        address,
        mac,
        port,
        weight,
        health: None,
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
        }
    }
}

impl From<&health::CheckKind> for CheckKind {
    fn from(kind: &health::CheckKind) -> Self {
        match kind {
            health::CheckKind::Tcp => CheckKind::Tcp,
            health::CheckKind::Http { .. } => CheckKind::Http,
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
        let id: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let spec = |body| serde_json::from_value::<BackendSpec>(body).unwrap();
        let ok = backend_config(
            &id,
            Mode::DsrL2,
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
            let message = backend_config(&id, Mode::DsrL2, &spec(body.clone()))
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
        let id: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let backend: BackendSpec =
            serde_json::from_value(json!({"address": "198.19.2.12", "port": 9000})).unwrap();
        assert_eq!(
            backend_config(&id, Mode::Nat, &backend).unwrap().port,
            Some(9000)
        );
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

    #[test]
    fn states_and_kinds_keep_their_wire_names() {
        for (health, name) in [
            (Health::Unknown, "unknown"),
            (Health::Up, "up"),
            (Health::Down, "down"),
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
        assert_eq!(serde_json::to_value(AllDown::KeepLast).unwrap(), "keep");
        assert_eq!(serde_json::to_value(AllDown::Drop).unwrap(), "drop");
    }
}
