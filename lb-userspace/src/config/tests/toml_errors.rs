//! How errors in the TOML itself are reported: size, syntax, unknown keys,
//! wrong shapes and types, and the line and column they point at.
use super::*;
use crate::config::error::position;

#[test]
fn integers_too_large_for_toml_still_name_their_field() {
    assert_error(
        &doc("", "weight = 99999999999999999999"),
        "lbd.toml:8:10: vip[0].backend[0].weight: ",
        "99999999999999999999 is out of range 0..=10000",
    );
    assert_error(
        &doc("", "weight = -99999999999999999999"),
        "lbd.toml:8:10: vip[0].backend[0].weight: ",
        "-99999999999999999999 is out of range 0..=10000",
    );
    // Two of them: both are read past, positions stay right.
    assert_error(
        &doc(
            "table_size = 123456789012345678901234",
            "weight = 99999999999999999999",
        ),
        "lbd.toml:5:14: vip[0].table_size: ",
        "123456789012345678901234 is out of range 3..=65537",
    );
    assert_error(
        "interface = \"eth0\"\nconntrack_size = 0x7fffffffffffffffff\n",
        "lbd.toml:2:18: conntrack_size: ",
        "0x7fffffffffffffffff is out of range 1024..=16777216",
    );
    // A group may be a number: a huge one is one too, not a name.
    assert_error(
        "interface = \"eth0\"\nadmin_socket_group = 99999999999999999999\n",
        "lbd.toml:2:22: admin_socket_group: ",
        "99999999999999999999 is out of range 0..=4294967294",
    );
    // Where a string belongs, it is a wrong type, not a string.
    assert_error(
        "interface = 99999999999999999999\n",
        "lbd.toml:1:13: interface: ",
        "expected a string, found an integer",
    );
}

#[test]
fn oversized_text_is_rejected_before_parsing() {
    // Not even valid TOML: the size check must come first.
    let text = "=".repeat(MAX_CONFIG_BYTES + 1);
    let e = parse(&text).unwrap_err();
    assert!(matches!(e, ConfigError::TooLarge { size, .. } if size == MAX_CONFIG_BYTES as u64 + 1));
    assert_eq!(
        e.to_string(),
        "lbd.toml: configuration is 4194305 bytes, larger than the limit of 4194304 bytes"
    );
    // Exactly at the limit is parsed.
    let mut text = String::from("interface = \"eth0\"\n#");
    text.push_str(&"x".repeat(MAX_CONFIG_BYTES - text.len()));
    assert_eq!(parse(&text).unwrap().interface, "eth0");
}

#[test]
fn unknown_fields_are_rejected_with_their_line() {
    assert_error(
        "# lbd\n\ninterfce = \"eth0\"\n",
        "lbd.toml:3:1: unknown field `interfce`, expected one of ",
        "`interface`, `attach`, `xdp_mode`, `conntrack_size`, `half_open_size`, `maglev_mode`, `admin_socket`, `pin_dir`, `admin_socket_group`, `metrics_listen`, `log_level`, `log_format`, `tcp_idle_timeout_s`, `udp_idle_timeout_s`, `vip`",
    );
    assert_error(
        &doc("prot = 80", ""),
        "lbd.toml:5:1: vip[0]: unknown field `prot`",
        "`table_size`",
    );
    assert_error(
        &doc("", "  wieght = 1"),
        "lbd.toml:8:3: vip[0].backend[0]: unknown field `wieght`",
        "`weight`",
    );
    assert_error(
        "interface = \"eth0\"\n[[vip]]\n[[vip.backends]]\naddress = \"10.0.0.1\"\n",
        "lbd.toml:3:7: vip[0]: unknown field `backends`",
        "`backend`",
    );
}

#[test]
fn wrong_table_shape_names_the_table() {
    assert_error(
        "interface = \"eth0\"\nvip = 5\n",
        "lbd.toml:2:7: ",
        "expected an array of [[vip]] tables",
    );
    assert_error(
        "interface = \"eth0\"\n[vip]\naddress = \"10.0.0.1\"\n",
        "lbd.toml:2:1: ",
        "expected an array of [[vip]] tables",
    );
    assert_error(
        "interface = \"eth0\"\nvip = [1]\n",
        "lbd.toml:2:8: ",
        "expected a [[vip]] table",
    );
    assert_error(
        "interface = \"eth0\"\n[[vip]]\nbackend = \"x\"\n",
        "lbd.toml:3:11: ",
        "expected an array of [[vip.backend]] tables",
    );
}

#[test]
fn inline_tables_work_and_are_located() {
    let text = "interface = \"eth0\"\n\
                vip = [{ address = \"10.0.0.1\", port = 80, backend = [{ address = \"10.0.0.1\" }] }]\n";
    assert_error(
        text,
        "lbd.toml:2:66: vip[0].backend[0].address: ",
        "VIP's own address",
    );
}

#[test]
fn syntax_error_reports_its_line() {
    let e = parse("interface = \"eth0\"\n\n[[vip]\n").unwrap_err();
    assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
    let position = e.location().and_then(|l| l.position).unwrap();
    assert_eq!(position.line, 3, "{e}");
    assert!(e.to_string().starts_with("lbd.toml:3:"), "{e}");

    assert_error(
        "interface = \"eth0\n",
        "lbd.toml:1:",
        "invalid basic string",
    );
    assert_error(
        "interface = \"eth0\"\ninterface = \"eth1\"\n",
        "lbd.toml:2:1: ",
        "duplicate key `interface`",
    );
}

#[test]
fn parse_messages_are_one_line() {
    let message = error("interface = \n");
    assert!(!message.contains('\n'), "{message:?}");
    assert!(message.starts_with("lbd.toml:1:"), "{message:?}");
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_eq!(
        position("ab\nüx".as_bytes(), 5),
        Position { line: 2, column: 2 }
    );
    assert_eq!(position(b"", 7), Position { line: 1, column: 1 });
    assert_error(
        "interface = \"eth0\" # ü\nvip = [{ address = \"é\" }]\n",
        "lbd.toml:2:20: vip[0].address: ",
        "\"é\" is not an IPv4 or IPv6 address",
    );
    assert_error(
        "interface = \"eth0\"\nvip = [{ port = \"ü\", address = \"x\" }]\n",
        "lbd.toml:2:",
        "vip[0].address",
    );
}

#[test]
fn array_items_are_located_and_their_type_named() {
    let base = doc("", "");
    assert_error(
        &format!("{base}[[vrrp]]\nvrid = 1\nunicast_peers = [\"198.18.0.3\",\n  234567890123456789012]\n"),
        "lbd.toml:12:3: vrrp[0].unicast_peers[1]: ",
        "expected an address string, found an integer",
    );
    assert_error(
        &format!("{base}[[vrrp]]\nvrid = 1\nunicast_peers = [\"198.18.0.3\", 7]\n"),
        "lbd.toml:11:32: vrrp[0].unicast_peers[1]: ",
        "expected an address string, found an integer",
    );
    assert_error(
        &format!("{base}[[vrrp]]\nvrid = 1\nunicast_peers = [\"198.18.0.3\", \"198.18.0.3\"]\n"),
        "lbd.toml:11:32: vrrp[0].unicast_peers[1]: ",
        "198.18.0.3 is listed twice (also vrrp[0].unicast_peers[0])",
    );
    assert_error(
        &format!("{base}[[vrrp]]\nvrid = 1\nunicast_peers = \"198.18.0.3\"\n"),
        "lbd.toml:11:17: vrrp[0].unicast_peers: ",
        "expected an array of addresses, found a string",
    );
    assert_error(
        &format!("{base}[[vrrp]]\nvrid = 1\nunicast_peers = 99999999999999999999\n"),
        "lbd.toml:11:17: vrrp[0].unicast_peers: ",
        "expected an array of addresses, found an integer",
    );
    assert_error(
        "interface = \"eth0\"\n[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [\"198.18.2.12:7946\", 1]\nkey_file = \"/k\"\n",
        "lbd.toml:4:30: sync.peers[1]: ",
        "expected an ADDRESS:PORT string, found an integer",
    );
    assert_error(
        &doc("[vip.health]\nthrough_tunnel = 99999999999999999999", ""),
        "lbd.toml:6:18: vip[0].health.through_tunnel: ",
        "expected true or false, found an integer",
    );
}

#[test]
fn tables_written_as_arrays_and_unknown_keys_say_where() {
    for name in ["nat", "tunnel", "bgp", "sync", "flood"] {
        assert_error(
            &format!("interface = \"eth0\"\n[[{name}]]\n"),
            "lbd.toml:2:1: ",
            &format!("[{name}] is a table, not an array of tables: write [{name}], not [[{name}]]"),
        );
    }
    assert_error(
        &doc("[[vip.health]]\ninterval_ms = 1000", ""),
        "lbd.toml:5:1: vip[0]: ",
        "a health table is a table, not an array of tables",
    );
    assert_error(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n[[vip]]\naddress = \"198.18.0.101\"\nport = 80\n  [[vip.backend]]\n  address = \"198.18.0.11\"\n  colour = 1\n",
        "lbd.toml:10:3: vip[1].backend[0]: unknown field `colour`",
        "",
    );
    assert_error(
        "interface = \"eth0\"\n[[acl]]\naction = \"deny\"\nsrc = \"x\"\n",
        "lbd.toml:4:1: acl[0]: unknown field `src`",
        "",
    );
    // The tables themselves still load.
    assert!(parse("interface = \"eth0\"\n[flood]\ncalm_s = 5\n").is_ok());
    assert!(parse("interface = \"eth0\"\nflood = { calm_s = 5 }\n").is_ok());
    assert_error(
        "interface = \"eth0\"\nflood = 5\n",
        "lbd.toml:2:9: ",
        "expected a [flood] table",
    );
}
