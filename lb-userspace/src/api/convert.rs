//! Conversions between the API's wire types (`api::schema`) and lbd's own:
//! request bodies into validated config, checked value by value by the
//! config file's rules (`config::value`) so the API accepts exactly what
//! the file does, with refusals naming the field as the body spells it;
//! and lbd's states into the names the status shows.

use std::{collections::HashMap, net::IpAddr};

use super::{
    code,
    schema::{BackendSpec, CheckKind, HealthStatus, VipSpec},
    Response,
};
use crate::{
    config::{
        value::{self, FieldError},
        BackendConfig, VipConfig, DEFAULT_TABLE_SIZE, DEFAULT_WEIGHT,
    },
    health::{self, Health},
    reconcile::VipId,
};

impl TryFrom<&VipSpec> for VipConfig {
    type Error = FieldError;

    /// The VIP a `POST /v1/vips` body describes; refusals name the field
    /// (`port`, `backends[1].weight`).
    fn try_from(spec: &VipSpec) -> Result<Self, Self::Error> {
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
            vip.backends.push(backend_of(address, backend, &prefix)?);
        }
        let weighted = vip.backends.iter().filter(|b| b.weight > 0).count();
        value::weighted_backends_fit(weighted, vip.table_size).map_err(|e| e.at("table_size"))?;
        Ok(vip)
    }
}

/// The backend a `POST /v1/vips/{vip}/backends` body describes for the VIP
/// `vip`; refusals name the body's fields (`weight`, `mac`). Whether the
/// VIP has room for it is the model's to say.
pub fn backend_config(vip: &VipId, spec: &BackendSpec) -> Result<BackendConfig, FieldError> {
    backend_of(vip.address, spec, "")
}

/// A backend of the VIP at `vip`, its fields named with `prefix`.
fn backend_of(vip: IpAddr, spec: &BackendSpec, prefix: &str) -> Result<BackendConfig, FieldError> {
    let field = |name: &str| format!("{prefix}{name}");
    let address = value::backend_address(spec.address, vip).map_err(|e| e.at(field("address")))?;
    let mac = match &spec.mac {
        None => None,
        Some(text) => Some(value::mac(text).map_err(|e| e.at(field("mac")))?),
    };
    let weight = match spec.weight {
        None => DEFAULT_WEIGHT,
        Some(n) => value::weight(n).map_err(|e| e.at(field("weight")))?,
    };
    Ok(BackendConfig {
        address,
        mac,
        port: None,
        weight,
        health: None,
    })
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
