//! A VIP spec becomes the VIP the file would give; its refusals name the
//! field as the body spells it.
use super::*;

#[test]
fn a_vip_spec_becomes_the_vip_the_file_would_give() {
    let spec = vip_spec(json!({
        "address": "2001:2::100", "port": 53, "protocol": "udp", "table_size": 251,
        "on_all_down": "keep",
        "backends": [{"address": "2001:2::11", "mac": "02:00:00:00:00:11", "weight": 7},
                     {"address": "2001:2::12"},
                     {"address": "2001:2::21", "backup": true}]
    }));
    let vip = VipConfig::try_from(&spec).unwrap();
    let file = Config::from_toml_str(
        "interface = \"eth0\"\n[[vip]]\naddress = \"2001:2::100\"\nport = 53\n\
         protocol = \"udp\"\ntable_size = 251\non_all_down = \"keep\"\n\
         [[vip.backend]]\naddress = \"2001:2::11\"\nmac = \"02:00:00:00:00:11\"\nweight = 7\n\
         [[vip.backend]]\naddress = \"2001:2::12\"\n\
         [[vip.backend]]\naddress = \"2001:2::21\"\nbackup = true\n",
        "test.toml",
    )
    .unwrap();
    assert_eq!(vip, file.vips[0]);
    assert_eq!(
        (vip.protocol, vip.on_all_down),
        (Protocol::Udp, AllDown::KeepLast)
    );
    assert_eq!(vip.backends[0].mac, Some(Mac([2, 0, 0, 0, 0, 0x11])));
    assert_eq!(
        vip.backends.iter().map(|b| b.backup).collect::<Vec<_>>(),
        [false, false, true]
    );
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
            with(json!([{"address": "198.18.0.11"}, {"address": "198.18.0.12", "weight": 10001}])),
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
        let message = refused(json!({"address": "198.18.0.100", "port": 80, "drain_timeout_s": n}));
        assert!(
            message.starts_with(&format!("drain_timeout_s: {n} is out of range 1..=604800")),
            "{message}"
        );
    }
    let none = VipConfig::try_from(&vip_spec(json!({"address": "198.18.0.100", "port": 80})));
    assert_eq!(none.unwrap().drain_timeout, None);
}

#[test]
fn a_vip_affinity_is_the_files() {
    let spec = vip_spec(json!({"address": "198.18.0.100", "port": 80, "affinity": "source"}));
    let vip = VipConfig::try_from(&spec).unwrap();
    let file = Config::from_toml_str(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
         affinity = \"source\"\n",
        "test.toml",
    )
    .unwrap();
    assert_eq!(vip, file.vips[0]);
    assert_eq!(vip.affinity, lb_common::Affinity::Source);
    let message = refused(json!({"address": "198.18.0.100", "port": 80, "affinity": "client"}));
    assert!(
        message.starts_with(r#"affinity: "client" is not one of "connection", "source""#),
        "{message}"
    );
    // Not given: sent by no client, each connection on its own.
    let spec = vip_spec(json!({"address": "198.18.0.100", "port": 80}));
    assert!(!serde_json::to_string(&spec).unwrap().contains("affinity"));
    let none = VipConfig::try_from(&spec).unwrap();
    assert_eq!(none.affinity, lb_common::Affinity::Connection);
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
