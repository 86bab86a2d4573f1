//! `tls`: TCP and HTTP checks over TLS, refused on other checks, its
//! inheritance by backends and its dump.
use super::*;

#[test]
fn tcp_and_http_checks_take_tls_and_backends_inherit_it() {
    let config = parse(&doc(
        "[vip.health]\ncheck = \"http\"\ntls = true",
        "[vip.backend.health]\nrise = 5",
    ))
    .unwrap();
    let vip = &config.vips[0];
    assert!(vip.health.tls);
    let own = vip.backends[0].health.as_ref().unwrap();
    assert!(own.tls);
    assert_eq!(own.rise, 5);
    // The default TCP check takes it too; left out it is off.
    let config = parse(&doc("[vip.health]\ntls = true", "")).unwrap();
    assert!(config.vips[0].health.tls);
    let config = parse(&doc("[vip.health]\ncheck = \"http\"", "")).unwrap();
    assert!(!config.vips[0].health.tls);
    // A backend turns its VIP's off.
    let config = parse(&doc(
        "[vip.health]\ntls = true",
        "[vip.backend.health]\ntls = false",
    ))
    .unwrap();
    assert!(!config.vips[0].backends[0].health.as_ref().unwrap().tls);
}

#[test]
fn tls_without_a_tcp_or_http_check_is_refused_by_name() {
    let message = error(&doc(
        "[vip.health]\ncheck = \"pgsql\"\nuser = \"lbd\"\ntls = true",
        "",
    ));
    assert!(
        message.contains("vip[0].health.tls: only a TCP or HTTP check runs over TLS, and this check is \"pgsql\": set check"),
        "{message}"
    );
    let message = error(&doc("[vip.health]\ncheck = \"none\"\ntls = true", ""));
    assert!(
        message.contains(
            "vip[0].health.tls: only a TCP or HTTP check runs over TLS, and this check is \"none\""
        ),
        "{message}"
    );
    // Not a boolean.
    let message = error(&doc("[vip.health]\ntls = \"yes\"", ""));
    assert!(message.contains("vip[0].health.tls"), "{message}");
    assert!(message.contains("true or false"), "{message}");
    // tls = false says nothing a pgsql check must refuse.
    parse(&doc(
        "[vip.health]\ncheck = \"pgsql\"\nuser = \"lbd\"\ntls = false",
        "",
    ))
    .unwrap();
    // Inherited under a backend's own pgsql check: fine, unused.
    let config = parse(&doc(
        "[vip.health]\ntls = true",
        "[vip.backend.health]\ncheck = \"pgsql\"\nuser = \"lbd\"",
    ))
    .unwrap();
    let own = config.vips[0].backends[0].health.as_ref().unwrap();
    assert_eq!(own.check, crate::config::CheckType::Pgsql);
}

#[test]
fn tls_is_dumped_only_when_true_and_loads_back() {
    let config = parse(&doc(
        "[vip.health]\ncheck = \"http\"\ntls = true",
        "[vip.backend.health]\ntls = false",
    ))
    .unwrap();
    let dumped = to_toml(&config);
    let root: toml::Table = dumped.parse().unwrap();
    assert_eq!(root["vip"][0]["health"]["tls"].as_bool(), Some(true));
    let backend = root["vip"][0]["backend"][0]["health"].as_table().unwrap();
    assert_eq!(backend.keys().collect::<Vec<_>>(), ["tls"], "{dumped}");
    assert_eq!(backend["tls"].as_bool(), Some(false));
    assert_eq!(parse(&dumped).unwrap(), config, "dumped:\n{dumped}");
    // A backend that inherits writes nothing of it.
    let config = parse(&doc(
        "[vip.health]\ntls = true",
        "[vip.backend.health]\nrise = 4",
    ))
    .unwrap();
    let dumped = to_toml(&config);
    assert_eq!(parse(&dumped).unwrap(), config, "dumped:\n{dumped}");
    let plain = to_toml(&parse(&doc("[vip.health]\ncheck = \"http\"", "")).unwrap());
    assert!(!plain.contains("tls"), "{plain}");
}
