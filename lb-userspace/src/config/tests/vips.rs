//! The `[[vip]]` tables: address, port, protocol, Maglev table size,
//! client affinity, and how many VIPs a file may hold.
use super::*;

#[test]
fn vip_address_must_parse() {
    let text = "interface = \"eth0\"\n\
                [[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
                [[vip]]\nport = 80\naddress = \"198.18.0.300\"\n";
    assert_error(
        text,
        "lbd.toml:7:11: vip[1].address: ",
        r#""198.18.0.300" is not an IPv4 or IPv6 address"#,
    );
}

#[test]
fn vip_address_is_required() {
    assert_error(
        "interface = \"eth0\"\n\n[[vip]]\nport = 80\n",
        "lbd.toml:3:1: vip[0].address: ",
        "required field is missing",
    );
}

#[test]
fn vip_address_must_not_be_unspecified_or_multicast() {
    let cases = [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
    ];
    for (address, detail) in cases {
        let text = format!("interface = \"eth0\"\n[[vip]]\naddress = \"{address}\"\nport = 80\n");
        assert_error(&text, "lbd.toml:3:11: vip[0].address: ", detail);
    }
}

#[test]
fn port_must_be_in_range_and_present() {
    let text =
        |port: &str| format!("interface = \"eth0\"\n[[vip]]\naddress = \"10.0.0.1\"\n{port}\n");
    assert_error(
        &text("port = 0"),
        "lbd.toml:4:8: vip[0].port: ",
        "0 is out of range 1..=65535",
    );
    assert_error(
        &text("port = 65536"),
        "lbd.toml:4:8: vip[0].port: ",
        "65536 is out of range",
    );
    assert_error(
        &text("port = \"80\""),
        "lbd.toml:4:8: vip[0].port: ",
        "expected an integer",
    );
    assert_error(
        &text(""),
        "lbd.toml:2:1: vip[0].port: ",
        "required field is missing",
    );
}

#[test]
fn protocol_must_be_tcp_or_udp() {
    assert_error(
        &doc("protocol = \"icmp\"", ""),
        "lbd.toml:5:12: vip[0].protocol: ",
        r#""icmp" is not one of "tcp", "udp""#,
    );
    assert_error(
        &doc("protocol = \"TCP\"", ""),
        "lbd.toml:5:12: vip[0].protocol: ",
        "not one of",
    );
    assert_eq!(
        parse(&doc("protocol = \"udp\"", "")).unwrap().vips[0].protocol,
        Protocol::Udp
    );
}

#[test]
fn affinity_is_connection_or_source_and_dumps_back_only_when_set() {
    let config = parse(&doc("affinity = \"source\"", "")).unwrap();
    assert_eq!(config.vips[0].affinity, lb_common::Affinity::Source);
    let dumped = crate::config::to_toml(&config);
    assert_eq!(
        dumped.matches("affinity = \"source\"").count(),
        1,
        "{dumped}"
    );
    assert_eq!(Config::from_toml_str(&dumped, "dump.toml").unwrap(), config);
    let default = parse(&doc("affinity = \"connection\"", "")).unwrap();
    assert_eq!(default.vips[0].affinity, lb_common::Affinity::Connection);
    assert_eq!(default, parse(&doc("", "")).unwrap(), "the default");
    assert!(!crate::config::to_toml(&default).contains("affinity"));
    assert_error(
        &doc("affinity = \"cookie\"", ""),
        "lbd.toml:5:12: vip[0].affinity: ",
        r#""cookie" is not one of "connection", "source""#,
    );
    assert_error(
        &doc("affinity = true", ""),
        "lbd.toml:5:12: vip[0].affinity: ",
        "expected a string",
    );
}

#[test]
fn slow_start_is_seconds_up_to_an_hour_and_dumps_back_only_when_set() {
    let config = parse(&doc("slow_start_s = 30", "")).unwrap();
    assert_eq!(config.vips[0].slow_start, Some(Duration::from_secs(30)));
    let dumped = crate::config::to_toml(&config);
    assert_eq!(dumped.matches("slow_start_s = 30").count(), 1, "{dumped}");
    assert_eq!(Config::from_toml_str(&dumped, "dump.toml").unwrap(), config);
    let off = parse(&doc("", "")).unwrap();
    assert_eq!(off.vips[0].slow_start, None);
    assert!(!crate::config::to_toml(&off).contains("slow_start"));
    assert_eq!(
        parse(&doc("slow_start_s = 3600", "")).unwrap().vips[0].slow_start,
        Some(Duration::from_secs(3600))
    );
    for bad in ["0", "3601", "-5"] {
        assert_error(
            &doc(&format!("slow_start_s = {bad}"), ""),
            "lbd.toml:5:16: vip[0].slow_start_s: ",
            "out of range 1..=3600",
        );
    }
    assert_error(
        &doc("slow_start_s = \"30s\"", ""),
        "lbd.toml:5:16: vip[0].slow_start_s: ",
        "expected an integer",
    );
}

#[test]
fn table_size_must_be_a_prime_in_range() {
    assert_error(
        &doc("table_size = 65536", ""),
        "lbd.toml:5:14: vip[0].table_size: ",
        "65536 is not a prime (Maglev needs a prime table size); nearest: 65521 or 65537",
    );
    assert_error(
        &doc("table_size = 4", ""),
        "lbd.toml:5:14: vip[0].table_size: ",
        "nearest: 3 or 5",
    );
    assert_error(
        &doc("table_size = 2", ""),
        "lbd.toml:5:14: vip[0].table_size: ",
        "2 is out of range 3..=65537",
    );
    assert_error(
        &doc("table_size = 65539", ""),
        "lbd.toml:5:14: vip[0].table_size: ",
        "out of range",
    );
    assert_eq!(
        parse(&doc("table_size = 251", "")).unwrap().vips[0].table_size,
        251
    );
}

#[test]
fn table_size_must_hold_every_weighted_backend() {
    let text = "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\ntable_size = 3\n\
                [[vip.backend]]\naddress = \"198.18.0.11\"\n[[vip.backend]]\naddress = \"198.18.0.12\"\n\
                [[vip.backend]]\naddress = \"198.18.0.13\"\n[[vip.backend]]\naddress = \"198.18.0.14\"\n";
    assert_error(
        text,
        "lbd.toml:5:14: vip[0].table_size: ",
        "4 backends with a weight do not fit a Maglev table of 3 slots",
    );
    let drained = text.replace("\"198.18.0.14\"\n", "\"198.18.0.14\"\nweight = 0\n");
    assert_eq!(parse(&drained).unwrap().vips[0].backends.len(), 4);
}

#[test]
fn duplicate_vip_is_rejected_at_the_second() {
    let text = "interface = \"eth0\"\n\
                [[vip]]\naddress = \"2001:db8::1\"\nport = 80\n\
                [[vip]]\naddress = \"2001:db8::1\"\nport = 80\nprotocol = \"udp\"\n\
                [[vip]]\naddress = \"2001:db8::1\"\nport = 81\n\
                \n  [[vip]]\naddress = \"2001:DB8:0::1\"\nport = 80\nprotocol = \"tcp\"\n";
    assert_error(
        text,
        "lbd.toml:13:3: vip[3]: ",
        "duplicates vip[0]: same address 2001:db8::1, port 80 and protocol tcp",
    );
    // Without the last one, differing port or protocol is fine.
    let cut = text.find("\n  [[vip]]").unwrap();
    assert_eq!(parse(&text[..cut]).unwrap().vips.len(), 3);
}

#[test]
fn too_many_vips_are_rejected() {
    let vips = |n: usize| {
        let mut text = String::from("interface = \"eth0\"\n");
        for i in 0..n {
            text.push_str(&format!(
                "[[vip]]\naddress = \"10.{}.{}.1\"\nport = 80\n",
                i / 256,
                i % 256
            ));
        }
        text
    };
    assert_eq!(parse(&vips(MAX_VIPS)).unwrap().vips.len(), MAX_VIPS);
    let line = 2 + 3 * MAX_VIPS;
    assert_error(
        &vips(MAX_VIPS + 1),
        &format!("lbd.toml:{line}:1: vip[256]: "),
        "too many VIPs; at most 256",
    );
}
