//! A dumped config loads back equal, and an operator's later edits of the
//! saved dump still reach what the original file left to defaults.
use super::*;

#[test]
fn a_dumped_config_loads_back_equal() {
    let text = doc(
        "on_all_down = \"keep\"\ndrain_timeout_s = 30\n[vip.health]\ncheck = \"http\"\npath = \"/health\"",
        "mac = \"02:00:00:00:00:11\"\nweight = 7\n[vip.backend.health]\nport = 8080",
    );
    let config = parse(&text).unwrap();
    let dumped = to_toml(&config);
    assert_eq!(parse(&dumped).unwrap(), config, "dumped:\n{dumped}");
    let example = parse(EXAMPLE).unwrap();
    assert_eq!(parse(&to_toml(&example)).unwrap(), example);
}

/// The text `dumped` as a TOML table, for a test to edit as an operator
/// edits the saved file.
fn dumped_table(dumped: &str) -> toml::Table {
    dumped.parse().unwrap()
}

/// The keys written in `vip[0].backend[b].health` of a dump (None: no table).
fn dumped_backend_health(dumped: &str, b: usize) -> Option<Vec<String>> {
    let root = dumped_table(dumped);
    let backend = &root["vip"][0]["backend"][b];
    backend
        .get("health")
        .map(|h| h.as_table().unwrap().keys().cloned().collect())
}

/// A backend's health table is merged over its VIP's when loaded; the
/// dump writes back only the keys it overrides, so once the dump is saved
/// as the file, a later edit of the VIP's other keys still reaches it.
#[test]
fn a_dumped_backend_health_table_keeps_only_its_own_keys() {
    let text = doc(
        "[vip.health]\ncheck = \"http\"\npath = \"/health\"",
        "[vip.backend.health]\nrise = 5",
    );
    let config = parse(&text).unwrap();
    let dumped = to_toml(&config);
    assert_eq!(
        dumped_backend_health(&dumped, 0),
        Some(vec!["rise".to_owned()]),
        "dumped:\n{dumped}"
    );
    // The operator edits the VIP's path in the saved file.
    let mut root = dumped_table(&dumped);
    root["vip"][0]["health"]["path"] = "/ready".into();
    let edited = parse(&toml::to_string(&root).unwrap()).unwrap();
    let own = edited.vips[0].backends[0].health.as_ref().unwrap();
    assert_eq!(own.path, "/ready", "dumped:\n{dumped}");
    assert_eq!((own.check, own.rise), (CheckType::Http, 5));
}

/// A dump loads back as the same config whatever a backend's table
/// overrides: one key, none (no table), or only keys equal to its VIP's
/// (an empty table, loading back as the same own checks).
#[test]
fn a_dump_of_backends_own_health_loads_back_equal() {
    let text = format!(
        "{}[[vip.backend]]\naddress = \"198.18.0.12\"\n         [[vip.backend]]\naddress = \"198.18.0.13\"\n[vip.backend.health]\npath = \"/health\"\nrise = 2\n",
        doc(
            "[vip.health]\ncheck = \"http\"\npath = \"/health\"",
            "[vip.backend.health]\nfall = 7",
        )
    );
    let config = parse(&text).unwrap();
    let backends = &config.vips[0].backends;
    assert!(backends[0].health.is_some() && backends[1].health.is_none());
    assert_eq!(backends[2].health.as_ref(), Some(&config.vips[0].health));
    let dumped = to_toml(&config);
    assert_eq!(
        dumped_backend_health(&dumped, 0),
        Some(vec!["fall".to_owned()])
    );
    assert_eq!(dumped_backend_health(&dumped, 1), None);
    assert_eq!(dumped_backend_health(&dumped, 2), Some(Vec::new()));
    assert_eq!(parse(&dumped).unwrap(), config, "dumped:\n{dumped}");
    assert_eq!(to_toml(&parse(&dumped).unwrap()), dumped, "stable");
}

/// A `[[vrrp]]` that left `addresses` out takes the VIP addresses of its
/// family; its dump leaves them out too, so a VIP added to the saved file
/// is moved by it, as by the original file. A written list stays written.
#[test]
fn a_dumped_vrrp_without_addresses_still_takes_the_vips() {
    let text = format!(
        "{}[[vrrp]]\nvrid = 51\n[[vrrp]]\nvrid = 52\naddresses = [\"2001:2::100\"]\n",
        doc("", "")
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.vrrp_listed, [false, true]);
    let dumped = to_toml(&config);
    assert_eq!(parse(&dumped).unwrap(), config, "dumped:\n{dumped}");
    let mut root = dumped_table(&dumped);
    assert!(root["vrrp"][0].get("addresses").is_none(), "{dumped}");
    assert!(root["vrrp"][1].get("addresses").is_some(), "{dumped}");
    // The operator adds a VIP to the saved file.
    let mut added = toml::Table::new();
    added.insert("address".into(), "198.18.0.101".into());
    added.insert("port".into(), 80.into());
    root["vip"].as_array_mut().unwrap().push(added.into());
    let edited = parse(&toml::to_string(&root).unwrap()).unwrap();
    let moved: Vec<IpAddr> = ["198.18.0.100", "198.18.0.101"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(edited.vrrp[0].addresses, moved, "dumped:\n{dumped}");
}

/// A backend's own health table that turns its VIP's `through_tunnel`
/// off keeps it off through a dump: left out, loading would take the
/// VIP's `true` back and move the backend's checks into the tunnel.
#[test]
fn a_dumped_backend_check_outside_the_tunnel_stays_outside() {
    let text = doc(
        "forwarding = \"ipip\"\n[vip.health]\ncheck = \"tcp\"\nthrough_tunnel = true",
        "[vip.backend.health]\nthrough_tunnel = false",
    );
    let config = parse(&text).unwrap();
    assert!(config.vips[0].health.through_tunnel);
    let own = config.vips[0].backends[0].health.as_ref().unwrap();
    assert!(!own.through_tunnel);
    let dumped = to_toml(&config);
    let back = parse(&dumped).unwrap();
    assert_eq!(back, config, "dumped:\n{dumped}");
}
