//! The admin API socket: its path, group and idle timeouts.
use super::*;

#[test]
fn admin_socket_and_idle_timeouts() {
    let config =
        parse("interface = \"eth0\"\nadmin_socket = \"/tmp/x.sock\"\ntcp_idle_timeout_s = 60\n")
            .unwrap();
    assert_eq!(config.admin_socket, PathBuf::from("/tmp/x.sock"));
    assert_eq!(config.tcp_idle_timeout, Duration::from_secs(60));
    assert_eq!(config.udp_idle_timeout, DEFAULT_UDP_IDLE_TIMEOUT);
    assert_error(
        "interface = \"eth0\"\nadmin_socket = \"x.sock\"\n",
        "lbd.toml:2:16: admin_socket: ",
        "not an absolute path",
    );
}

#[test]
fn admin_socket_group_by_name_or_gid() {
    let config = parse("interface = \"eth0\"\nadmin_socket_group = \"lbd-admin\"\n").unwrap();
    assert_eq!(
        config.admin_socket_group,
        Some(AdminSocketGroup::Name("lbd-admin".into()))
    );
    assert_eq!(parse(&to_toml(&config)).unwrap(), config, "dump round trip");
    let config = parse("interface = \"eth0\"\nadmin_socket_group = 998\n").unwrap();
    assert_eq!(config.admin_socket_group, Some(AdminSocketGroup::Gid(998)));
    assert_eq!(parse(&to_toml(&config)).unwrap(), config, "dump round trip");
    assert_eq!(
        parse("interface = \"eth0\"\n").unwrap().admin_socket_group,
        None
    );
    for (value, detail) in [
        ("\"\"", "is not a group name of 1 to 32 bytes"),
        (
            &format!("\"{}\"", "g".repeat(33)),
            "is not a group name of 1 to 32 bytes",
        ),
        ("\"a:b\"", "contains ':'"),
        ("\"a b\"", "contains ' '"),
        ("-1", "-1 is out of range 0..=4294967294"),
        ("4294967295", "out of range"),
        (
            "true",
            "expected a group name or a numeric gid, found a boolean",
        ),
    ] {
        assert_error(
            &format!("interface = \"eth0\"\nadmin_socket_group = {value}\n"),
            "lbd.toml:2:22: admin_socket_group: ",
            detail,
        );
    }
}

#[test]
fn admin_socket_fits_a_socket_address_with_its_temporary_name() {
    let at = |path: &str| format!("interface = \"eth0\"\nadmin_socket = \"{path}\"\n");
    let longest = format!("/run/{}", "s".repeat(94 - 5));
    assert_eq!(longest.len(), 94);
    // The temporary name the API binds first fits sun_path (107 bytes).
    assert!(format!("/run/.{}.4194304.tmp", &longest[5..]).len() <= 107);
    assert_eq!(
        parse(&at(&longest)).unwrap().admin_socket,
        PathBuf::from(&longest)
    );
    assert_error(
        &at(&format!("{longest}s")),
        "lbd.toml:2:16: admin_socket: ",
        "is 95 bytes long; at most 94 are allowed",
    );
    for (path, detail) in [
        ("/", "names a directory"),
        ("/run/lbd/", "names a directory"),
        ("/run/../tmp/lbd.sock", "has a \"..\" component"),
        ("/run/lbd/..", "has a \"..\" component"),
        ("run/lbd.sock", "not an absolute path"),
    ] {
        assert_error(&at(path), "lbd.toml:2:16: admin_socket: ", detail);
    }
    // ".." inside a name is a name.
    assert!(parse(&at("/run/lbd/a..b.sock")).is_ok());
}
