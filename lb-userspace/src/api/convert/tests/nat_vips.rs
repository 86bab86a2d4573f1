//! NAT VIP specs: the VIP the file would give, and refusals in the file's
//! words.
use super::*;

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
