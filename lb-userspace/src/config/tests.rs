//! Tests of config parsing and validation.
use super::error::position;
use super::*;
use crate::test_scratch::ScratchDir;
use std::net::{Ipv4Addr, Ipv6Addr};

const EXAMPLE: &str = r#"# Interface the XDP program attaches to (required).
interface = "eth0"
# "auto" (default): native (driver) mode, falling back to generic with a warning; "native"; "generic".
xdp_mode = "auto"
# Connection table size (flows), default 262144, range 1024..=16777216.
conntrack_size = 262144

[[vip]]
address = "198.18.0.100"        # IPv4 or IPv6 (required)
port = 80                       # 1..=65535 (required)
protocol = "tcp"                # "tcp" (default) or "udp"
table_size = 65537              # Maglev table size, a prime, 3..=65537, default 65537

  [[vip.backend]]
  address = "198.18.0.11"       # required; same family as the VIP
  mac = "02:00:00:00:00:11"     # optional; when absent lbd resolves it from the neighbour table
  weight = 100                  # 0..=10000, default 100 (0 = takes no new flows)
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "lbd.toml")
}

/// The error text for `text`, failing the test if it parses.
fn error(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts that `text` fails with a message starting with `prefix` and containing `detail`.
fn assert_error(text: &str, prefix: &str, detail: &str) {
    let message = error(text);
    assert!(
        message.starts_with(prefix),
        "error {message:?} does not start with {prefix:?}"
    );
    assert!(
        message.contains(detail),
        "error {message:?} does not contain {detail:?}"
    );
}

/// A valid document with one IPv4 VIP; `vip_extra` and `backend_extra` are
/// appended to the VIP (line 4) and backend (line 8) tables.
fn doc(vip_extra: &str, backend_extra: &str) -> String {
    format!(
        "interface = \"eth0\"\n\
         [[vip]]\n\
         address = \"198.18.0.100\"\n\
         port = 80\n\
         {vip_extra}\n\
         [[vip.backend]]\n\
         address = \"198.18.0.11\"\n\
         {backend_extra}\n"
    )
}

#[test]
fn example_parses_to_expected_values() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(
        config,
        Config {
            interface: "eth0".into(),
            attach: Attach::Xdp,
            xdp_mode: XdpMode::Auto,
            conntrack_size: 262_144,
            half_open_size: DEFAULT_HALF_OPEN_SIZE,
            maglev_mode: MaglevMode::Consistent,
            admin_socket: PathBuf::from(DEFAULT_ADMIN_SOCKET),
            pin_dir: Some(PathBuf::from(DEFAULT_PIN_DIR)),
            admin_socket_group: None,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            metrics_listen: DEFAULT_METRICS_LISTEN.parse().ok(),
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            udp_idle_timeout: DEFAULT_UDP_IDLE_TIMEOUT,
            vips: vec![VipConfig {
                address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)),
                port: 80,
                protocol: Protocol::Tcp,
                table_size: 65_537,
                health: HealthConfig::default_for(Protocol::Tcp),
                on_all_down: AllDown::Drop,
                drain_timeout: None,
                forwarding: lb_common::Mode::DsrL2,
                nat: None,
                backends: vec![BackendConfig {
                    address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11)),
                    mac: Some(Mac([0x02, 0, 0, 0, 0, 0x11])),
                    port: None,
                    weight: 100,
                    health: None,
                }],
            }],
            vrrp: Vec::new(),
            vrrp_listed: Vec::new(),
            nat: NatConfig::default(),
            tunnel: TunnelSettings::default(),
            bgp: None,
            sync: None,
            guard: crate::guard::GuardConfig::default(),
            flood: crate::flood::machine::FloodThresholds::default(),
        }
    );
}

#[test]
fn defaults_apply() {
    let config = parse(&doc("", "")).unwrap();
    assert_eq!(config.xdp_mode, XdpMode::Auto);
    assert_eq!(config.conntrack_size, DEFAULT_CONNTRACK_SIZE);
    let vip = &config.vips[0];
    assert_eq!(vip.protocol, Protocol::Tcp);
    assert_eq!(vip.table_size, DEFAULT_TABLE_SIZE);
    assert_eq!(vip.backends[0].mac, None);
    assert_eq!(vip.backends[0].weight, DEFAULT_WEIGHT);
}

#[test]
fn zero_vips_and_zero_backends_are_allowed() {
    let config = parse("interface = \"eth0\"\n").unwrap();
    assert!(config.vips.is_empty());
    let config = parse("interface = \"eth0\"\n[[vip]]\naddress = \"::1\"\nport = 53\n").unwrap();
    assert!(config.vips[0].backends.is_empty());
}

#[test]
fn ipv6_and_udp_and_other_values_parse() {
    let config = parse(
        "interface = \"ens3f0\"\nxdp_mode = \"generic\"\nconntrack_size = 1024\n\
         [[vip]]\naddress = \"2001:db8::100\"\nport = 65535\nprotocol = \"udp\"\ntable_size = 3\n\
         [[vip.backend]]\naddress = \"2001:db8::11\"\nmac = \"0A:bC:00:00:00:FF\"\nweight = 0\n\
         [[vip.backend]]\naddress = \"2001:db8::12\"\nweight = 10000\n",
    )
    .unwrap();
    assert_eq!(config.interface, "ens3f0");
    assert_eq!(config.xdp_mode, XdpMode::Generic);
    assert_eq!(config.conntrack_size, 1024);
    let vip = &config.vips[0];
    assert_eq!(vip.address, "2001:db8::100".parse::<Ipv6Addr>().unwrap());
    assert_eq!(
        (vip.port, vip.protocol, vip.table_size),
        (65535, Protocol::Udp, 3)
    );
    assert_eq!(vip.backends[0].mac, Some(Mac([0x0a, 0xbc, 0, 0, 0, 0xff])));
    assert_eq!(vip.backends[0].weight, 0);
    assert_eq!(vip.backends[1].weight, MAX_WEIGHT);
}

#[test]
fn protocol_number_and_display() {
    assert_eq!(Protocol::Tcp.number(), 6);
    assert_eq!(Protocol::Udp.number(), 17);
    assert_eq!(Protocol::Tcp.to_string(), "tcp");
    assert_eq!(Protocol::Udp.to_string(), "udp");
    assert_eq!(XdpMode::Native.to_string(), "native");
}

#[test]
fn interface_is_required() {
    assert_error(
        "xdp_mode = \"auto\"\n",
        "lbd.toml:1:1: interface: ",
        "required field is missing",
    );
}

#[test]
fn interface_must_be_a_valid_name() {
    assert_error(
        "interface = \"\"\n",
        "lbd.toml:1:13: interface: ",
        "must not be empty",
    );
    assert_error(
        "\ninterface = \"abcdefghijklmnop\"\n",
        "lbd.toml:2:13: interface: ",
        "is 16 bytes long",
    );
    assert_error(
        "interface = \"eth/0\"\n",
        "lbd.toml:1:13: interface: ",
        "contains '/'",
    );
    assert_error(
        "interface = \"eth 0\"\n",
        "lbd.toml:1:13: interface: ",
        "contains ' '",
    );
    assert_error(
        "interface = \"eth\\t0\"\n",
        "lbd.toml:1:13: interface: ",
        "contains '\\t'",
    );
    assert_error(
        "interface = \"eth0:1\"\n",
        "lbd.toml:1:13: interface: ",
        "contains ':'",
    );
    assert_error(
        "interface = \"..\"\n",
        "lbd.toml:1:13: interface: ",
        "not an interface name",
    );
    assert_error(
        "interface = 5\n",
        "lbd.toml:1:13: interface: ",
        "expected a string, found an integer",
    );
    assert_eq!(
        parse("interface = \"abcdefghijklmno\"\n")
            .unwrap()
            .interface
            .len(),
        15
    );
}

#[test]
fn attach_picks_the_hook_and_defaults_to_xdp() {
    assert_eq!(parse("interface = \"eth0\"\n").unwrap().attach, Attach::Xdp);
    for (name, hook) in [("xdp", Attach::Xdp), ("tc", Attach::Tc)] {
        let text = format!("interface = \"eth0\"\nattach = \"{name}\"\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.attach, hook);
        assert_eq!(hook.to_string(), name);
        // The dump says it, and reads back the same.
        assert_eq!(parse(&dump::to_toml(&config)).unwrap().attach, hook);
    }
    assert_error(
        "interface = \"eth0\"\nattach = \"ebpf\"\n",
        "lbd.toml:2:10: attach: ",
        "",
    );
}

#[test]
fn xdp_mode_must_be_known() {
    assert_error(
        "interface = \"eth0\"\nxdp_mode = \"turbo\"\n",
        "lbd.toml:2:12: xdp_mode: ",
        r#""turbo" is not one of "auto", "native", "generic""#,
    );
    assert_error(
        "interface = \"eth0\"\nxdp_mode = true\n",
        "lbd.toml:2:12: xdp_mode: ",
        "expected a string, found a boolean",
    );
    for (name, mode) in [
        ("auto", XdpMode::Auto),
        ("native", XdpMode::Native),
        ("generic", XdpMode::Generic),
    ] {
        let text = format!("interface = \"eth0\"\nxdp_mode = \"{name}\"\n");
        assert_eq!(parse(&text).unwrap().xdp_mode, mode);
    }
}

#[test]
fn conntrack_size_must_be_in_range() {
    assert_error(
        "interface = \"eth0\"\nconntrack_size = 1023\n",
        "lbd.toml:2:18: conntrack_size: ",
        "1023 is out of range 1024..=16777216",
    );
    assert_error(
        "interface = \"eth0\"\nconntrack_size = 16777217\n",
        "lbd.toml:2:18: conntrack_size: ",
        "out of range",
    );
    assert_error(
        "interface = \"eth0\"\nconntrack_size = -1\n",
        "lbd.toml:2:18: conntrack_size: ",
        "out of range",
    );
    assert_error(
        "interface = \"eth0\"\nconntrack_size = 1.5\n",
        "lbd.toml:2:18: conntrack_size: ",
        "expected an integer, found a float",
    );
    let text = "interface = \"eth0\"\nconntrack_size = 16777216\n";
    assert_eq!(parse(text).unwrap().conntrack_size, MAX_CONNTRACK_SIZE);
}

#[test]
fn half_open_size_has_a_default_and_must_be_in_range() {
    let config = parse("interface = \"eth0\"\n").unwrap();
    assert_eq!(config.half_open_size, 32_768);
    assert_eq!(
        lb_common::flow_table::half_open_buckets_for(config.half_open_size),
        lb_common::consts::HALF_OPEN_BUCKETS
    );
    assert_error(
        "interface = \"eth0\"\nhalf_open_size = 1023\n",
        "lbd.toml:2:18: half_open_size: ",
        "1023 is out of range 1024..=4194304",
    );
    assert_error(
        "interface = \"eth0\"\nhalf_open_size = 4194305\n",
        "lbd.toml:2:18: half_open_size: ",
        "out of range",
    );
    assert_error(
        "interface = \"eth0\"\nhalf_open_size = \"big\"\n",
        "lbd.toml:2:18: half_open_size: ",
        "expected an integer",
    );
    for (size, buckets) in [(1024, 128), (4_194_304, 524_288), (5000, 1024)] {
        let text = format!("interface = \"eth0\"\nhalf_open_size = {size}\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.half_open_size, size);
        assert_eq!(
            lb_common::flow_table::half_open_buckets_for(size),
            buckets,
            "{size} flows: a power of two of buckets"
        );
        assert_eq!(parse(&to_toml(&config)).unwrap(), config, "dump round trip");
    }
}

#[test]
fn flood_thresholds_have_defaults_and_must_be_in_range() {
    use crate::flood::machine::FloodThresholds;
    let config = parse("interface = \"eth0\"\n").unwrap();
    assert_eq!(config.flood, FloodThresholds::default());
    let text = "interface = \"eth0\"\n[flood]\nunanswered_syn_per_s = 20000\n\
                half_open_evicted_per_s = 2000\ncalm_s = 10\n";
    let config = parse(text).unwrap();
    assert_eq!(
        config.flood,
        FloodThresholds {
            unanswered_per_s: 20_000,
            evicted_per_s: 2_000,
            calm: Duration::from_secs(10),
        }
    );
    assert_eq!(parse(&to_toml(&config)).unwrap(), config, "dump round trip");
    // One key alone keeps the others' defaults.
    let config = parse("interface = \"eth0\"\n[flood]\ncalm_s = 60\n").unwrap();
    assert_eq!(config.flood.calm, Duration::from_secs(60));
    assert_eq!(
        config.flood.unanswered_per_s,
        FloodThresholds::default().unanswered_per_s
    );
    assert_error(
        "interface = \"eth0\"\n[flood]\nunanswered_syn_per_s = 0\n",
        "lbd.toml:3:24: flood.unanswered_syn_per_s: ",
        "0 is out of range 1..=1000000000",
    );
    assert_error(
        "interface = \"eth0\"\n[flood]\nhalf_open_evicted_per_s = -5\n",
        "lbd.toml:3:27: flood.half_open_evicted_per_s: ",
        "out of range",
    );
    assert_error(
        "interface = \"eth0\"\n[flood]\ncalm_s = 3601\n",
        "lbd.toml:3:10: flood.calm_s: ",
        "3601 is out of range 1..=3600",
    );
    assert_error(
        "interface = \"eth0\"\n[flood]\ncalm = 3\n",
        "lbd.toml:3:1: unknown field `calm`",
        "`calm_s`",
    );
}

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
fn backend_family_must_match_the_vip() {
    assert_error(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
         [[vip.backend]]\naddress = \"2001:db8::11\"\n",
        "lbd.toml:6:11: vip[0].backend[0].address: ",
        "2001:db8::11 is IPv6 but the VIP 198.18.0.100 is IPv4",
    );
}

#[test]
fn backend_address_must_be_valid() {
    let text = "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
                [[vip.backend]]\naddress = \"{}\"\n";
    for (address, detail) in [
        ("198.18.0.1.1", "is not an IPv4 or IPv6 address"),
        ("0.0.0.0", "unspecified"),
        ("239.1.1.1", "multicast"),
        ("198.18.0.100", "is the VIP's own address"),
    ] {
        assert_error(
            &text.replace("{}", address),
            "lbd.toml:6:11: vip[0].backend[0].address: ",
            detail,
        );
    }
    assert_error(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
         [[vip.backend]]\nweight = 1\n",
        "lbd.toml:5:1: vip[0].backend[0].address: ",
        "required field is missing",
    );
}

#[test]
fn a_backend_is_no_address_of_this_load_balancer() {
    let file = |first: &str, second: &str| {
        format!(
            "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n\
             [[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"nat\"\n\
             [[vip.backend]]\naddress = \"{first}\"\n\
             [[vip]]\naddress = \"198.18.0.101\"\nport = 80\nforwarding = \"nat\"\n\
             nat_source = \"198.18.0.51\"\n\
             [[vip.backend]]\naddress = \"{second}\"\n"
        )
    };
    for (first, second, at, detail) in [
        (
            "198.18.0.101",
            "198.18.1.12",
            "lbd.toml:9:11: vip[0].backend[0].address: ",
            "198.18.0.101 is vip[1]'s address; a backend cannot be an address of this load balancer",
        ),
        (
            "198.18.0.50",
            "198.18.1.12",
            "lbd.toml:9:11: vip[0].backend[0].address: ",
            "198.18.0.50 is the NAT address of vip[0]; a backend cannot be",
        ),
        (
            "198.18.1.11",
            "198.18.0.50",
            "lbd.toml:16:11: vip[1].backend[0].address: ",
            "198.18.0.50 is the NAT address of vip[0]; a backend cannot be",
        ),
        (
            "198.18.0.51",
            "198.18.1.12",
            "lbd.toml:9:11: vip[0].backend[0].address: ",
            "198.18.0.51 is the NAT address of vip[1]; a backend cannot be",
        ),
    ] {
        assert_error(&file(first, second), at, detail);
    }
    assert_eq!(
        parse(&file("198.18.1.11", "198.18.1.12"))
            .unwrap()
            .vips
            .len(),
        2
    );
}

#[test]
fn duplicate_backend_is_rejected() {
    let text = "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
                [[vip.backend]]\naddress = \"198.18.0.11\"\n\
                [[vip.backend]]\naddress = \"198.18.0.12\"\n\
                [[vip.backend]]\n  address = \"198.18.0.11\"\n";
    assert_error(
        text,
        "lbd.toml:10:13: vip[0].backend[2].address: ",
        "198.18.0.11 is already vip[0].backend[0]",
    );
}

#[test]
fn mac_must_be_well_formed_unicast_and_non_zero() {
    for bad in [
        "02:00:00:00:00:1",
        "02:00:00:00:00:111",
        "02-00-00-00-00-11",
        "02:00:00:00:00",
        "02:00:00:00:00:11:22",
        "02:00:00:00:00:1g",
        "02:00:00:00:00:+1",
        "",
    ] {
        assert_error(
            &doc("", &format!("mac = \"{bad}\"")),
            "lbd.toml:8:7: vip[0].backend[0].mac: ",
            "is not a MAC address of the form aa:bb:cc:dd:ee:ff",
        );
    }
    assert_error(
        &doc("", "mac = \"01:00:5E:00:00:01\""),
        "lbd.toml:8:7: vip[0].backend[0].mac: ",
        "multicast",
    );
    assert_error(
        &doc("", "mac = \"ff:ff:ff:ff:ff:ff\""),
        "lbd.toml:8:7: vip[0].backend[0].mac: ",
        "multicast",
    );
    assert_error(
        &doc("", "mac = \"00:00:00:00:00:00\""),
        "lbd.toml:8:7: vip[0].backend[0].mac: ",
        "all-zero",
    );
    assert_error(
        &doc("", "mac = 2"),
        "lbd.toml:8:7: vip[0].backend[0].mac: ",
        "expected a string",
    );
    let config = parse(&doc("", "mac = \"AA:bb:Cc:00:01:ff\"")).unwrap();
    assert_eq!(
        config.vips[0].backends[0].mac,
        Some(Mac([0xaa, 0xbb, 0xcc, 0, 1, 0xff]))
    );
}

#[test]
fn weight_must_be_in_range() {
    assert_error(
        &doc("", "  weight = 20000"),
        "lbd.toml:8:12: vip[0].backend[0].weight: ",
        "20000 is out of range 0..=10000",
    );
    assert_error(
        &doc("", "weight = -1"),
        "lbd.toml:8:10: vip[0].backend[0].weight: ",
        "out of range",
    );
    assert_eq!(
        parse(&doc("", "weight = 0")).unwrap().vips[0].backends[0].weight,
        0
    );
}

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
fn error_points_at_the_right_backend_of_the_right_vip() {
    let mut text = String::from("interface = \"eth0\"\n");
    for v in 0..2 {
        text.push_str(&format!(
            "[[vip]]\naddress = \"198.18.0.{}\"\nport = 80\n",
            100 + v
        ));
        for b in 0..3 {
            let weight = if (v, b) == (1, 2) { 20000 } else { 1 };
            text.push_str(&format!(
                "  [[vip.backend]]\n  address = \"198.18.1.{b}\"\n  weight = {weight}\n"
            ));
        }
    }
    // Line 1 interface; each VIP takes 3 + 3 * 3 = 12 lines; vip[1] starts at line 14;
    // its backend[2] starts at line 14 + 3 + 6 = 23, weight on line 25.
    assert_error(
        &text,
        "lbd.toml:25:12: vip[1].backend[2].weight: ",
        "20000 is out of range",
    );
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

#[test]
fn too_many_backends_are_rejected() {
    let backends = |n: usize| {
        let mut text =
            String::from("interface = \"eth0\"\n[[vip]]\naddress = \"10.0.0.1\"\nport = 80\n");
        for i in 0..n {
            text.push_str(&format!(
                "[[vip.backend]]\naddress = \"10.1.{}.{}\"\n",
                i / 256,
                i % 256
            ));
        }
        text
    };
    assert_eq!(
        parse(&backends(MAX_BACKENDS_PER_VIP)).unwrap().vips[0]
            .backends
            .len(),
        MAX_BACKENDS_PER_VIP
    );
    let line = 5 + 2 * MAX_BACKENDS_PER_VIP;
    assert_error(
        &backends(MAX_BACKENDS_PER_VIP + 1),
        &format!("lbd.toml:{line}:1: vip[0].backend[1000]: "),
        "too many backends; at most 1000",
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

/// A file in a scratch directory of its own, removed with it when dropped.
struct TempFile(
    PathBuf,
    #[expect(dead_code, reason = "held for its drop, which removes the directory")] ScratchDir,
);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let dir = ScratchDir::new("config");
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        TempFile(path, dir)
    }
}

#[test]
fn load_reads_the_file_and_names_it_in_errors() {
    let good = TempFile::new("good.toml", EXAMPLE.as_bytes());
    assert_eq!(Config::load(&good.0).unwrap(), parse(EXAMPLE).unwrap());

    let bad = TempFile::new("bad.toml", b"interface = \"eth0\"\nconntrack_size = 1\n");
    let message = Config::load(&bad.0).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}:2:18: conntrack_size: ", bad.0.display())),
        "{message}"
    );

    let missing = std::env::temp_dir().join("lbd-config-test-does-not-exist.toml");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );
}

#[test]
fn load_rejects_oversized_and_non_utf8_files() {
    let big = TempFile::new("big.toml", &vec![b'#'; MAX_CONFIG_BYTES + 10]);
    let e = Config::load(&big.0).unwrap_err();
    assert!(
        matches!(e, ConfigError::TooLarge { size, .. } if size == MAX_CONFIG_BYTES as u64 + 10),
        "{e:?}"
    );

    let latin1 = TempFile::new("latin1.toml", b"interface = \"eth0\"\n# caf\xe9\n");
    let message = Config::load(&latin1.0).unwrap_err().to_string();
    assert_eq!(
        message,
        format!("{}:2:6: invalid UTF-8", latin1.0.display())
    );
}

#[test]
fn health_tables_override_the_vip_then_the_defaults() {
    let text = doc(
        "on_all_down = \"keep\"\ndrain_timeout_s = 30\n[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 1000\nrise = 3",
        "[vip.backend.health]\nport = 8080\nfall = 5",
    );
    let config = parse(&text).unwrap();
    let vip = &config.vips[0];
    assert_eq!(vip.on_all_down, AllDown::KeepLast);
    assert_eq!(vip.drain_timeout, Some(Duration::from_secs(30)));
    assert_eq!(vip.health.check, CheckType::Http);
    assert_eq!(vip.health.path, "/health");
    assert_eq!(vip.health.interval, Duration::from_millis(1000));
    assert_eq!((vip.health.rise, vip.health.fall), (3, 3));
    let backend = vip.backends[0].health.as_ref().unwrap();
    assert_eq!(backend.check, CheckType::Http, "inherited from the VIP");
    assert_eq!(backend.path, "/health");
    assert_eq!(backend.port, Some(8080));
    assert_eq!((backend.rise, backend.fall), (3, 5));
}

#[test]
fn udp_vips_are_not_checked_by_default() {
    let config = parse(&doc("protocol = \"udp\"", "")).unwrap();
    assert_eq!(config.vips[0].health.check, CheckType::None);
}

#[test]
fn bad_health_values_name_their_field() {
    assert_error(
        &doc("[vip.health]\ncheck = \"icmp\"", ""),
        "lbd.toml:6:9: vip[0].health.check: ",
        "\"icmp\" is not one of \"none\", \"tcp\", \"http\"",
    );
    assert_error(
        &doc("[vip.health]\npath = \"health\"", ""),
        "lbd.toml:6:8: vip[0].health.path: ",
        "not an absolute URL path",
    );
    let long_path = format!("/{}", "p".repeat(MAX_HEALTH_PATH_BYTES));
    assert_error(
        &doc(&format!("[vip.health]\npath = \"{long_path}\""), ""),
        "lbd.toml:6:8: vip[0].health.path: ",
        "is 1025 bytes long; at most 1024 are allowed",
    );
    let fits = &long_path[..MAX_HEALTH_PATH_BYTES];
    assert!(parse(&doc(&format!("[vip.health]\npath = \"{fits}\""), "")).is_ok());
    let long_host = "h".repeat(MAX_HEALTH_HOST_BYTES + 1);
    assert_error(
        &doc("", &format!("[vip.backend.health]\nhost = \"{long_host}\"")),
        "lbd.toml:9:8: vip[0].backend[0].health.host: ",
        "is 254 bytes long; at most 253 are allowed",
    );
    assert_error(
        &doc("[vip.health]\ntimeout_ms = 3000", ""),
        "lbd.toml:6:14: vip[0].health.timeout_ms: ",
        "timeout_ms (3000) is longer than interval_ms (2000, the default): set interval_ms too",
    );
    assert_error(
        &doc("", "[vip.backend.health]\nrise = 0"),
        "lbd.toml:9:8: vip[0].backend[0].health.rise: ",
        "out of range 1..=100",
    );
    assert_error(
        &doc("on_all_down = \"open\"", ""),
        "lbd.toml:5:15: vip[0].on_all_down: ",
        "is not one of",
    );
}

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
fn too_many_backends_in_all_are_rejected() {
    // Five VIPs of MAX_BACKENDS_PER_VIP: the fifth goes past the total.
    let per_vip = MAX_BACKENDS_PER_VIP;
    let mut text = String::from("interface = \"eth0\"\n");
    let mut lines = 1;
    let mut line_of_extra = 0;
    for v in 0..5 {
        text.push_str(&format!("[[vip]]\naddress = \"10.0.{v}.1\"\nport = 80\n"));
        lines += 3;
        for i in 0..per_vip {
            if v * per_vip + i == MAX_BACKENDS_TOTAL {
                line_of_extra = lines + 1;
            }
            text.push_str(&format!(
                "[[vip.backend]]\naddress = \"10.{}.{}.{}\"\n",
                v + 1,
                i / 256,
                i % 256
            ));
            lines += 2;
        }
    }
    let index = MAX_BACKENDS_TOTAL - 4 * per_vip;
    assert_error(
        &text,
        &format!("lbd.toml:{line_of_extra}:1: vip[4].backend[{index}]: "),
        "too many backends; at most 4095 are allowed across all VIPs",
    );
    // Exactly the total fits.
    let cut = text
        .match_indices("[[vip.backend]]")
        .nth(MAX_BACKENDS_TOTAL)
        .map(|(at, _)| at)
        .unwrap();
    let config = parse(&text[..cut]).unwrap();
    let total: usize = config.vips.iter().map(|v| v.backends.len()).sum();
    assert_eq!(total, MAX_BACKENDS_TOTAL);
}

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

#[test]
fn the_shipped_example_is_valid() {
    let config = parse(include_str!("../../../examples/lbd.toml")).unwrap();
    assert_eq!(config.vips.len(), 2);
    assert_eq!(config.vips[0].health.check, CheckType::Http);
}

#[test]
fn vrrp_instances_default_to_the_vips_addresses() {
    let text = format!(
        "{}\n[[vrrp]]\nvrid = 51\npriority = 150\nadvert_interval_ms = 100\npreempt = false\n\
         sync_listen = \"198.18.0.2:7540\"\nsync_peer = \"198.18.0.3:7540\"\nsync_key_file = \"/etc/lbd/sync.key\"\n",
        doc("", "")
    );
    let config = parse(&text).unwrap();
    assert_eq!(parse(&to_toml(&config)).unwrap(), config, "dump round trip");
    let vrrp = &config.vrrp[0];
    assert_eq!((vrrp.vrid, vrrp.priority, vrrp.preempt), (51, 150, false));
    assert_eq!(vrrp.advert_interval, Duration::from_millis(100));
    assert_eq!(
        vrrp.addresses,
        vec!["198.18.0.100".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(vrrp.announce_count, 3);
}

/// A `[[vrrp]]` without `addresses` takes every same-family VIP address
/// and NAT address: past the 255 an advertisement holds it is refused, as
/// a written list is (the master could not advertise at all).
#[test]
fn a_defaulted_vrrp_address_list_is_capped_like_a_written_one() {
    let doc = |vips: usize, nat: bool| {
        let mut text = String::from("interface = \"eth0\"\n");
        if nat {
            text.push_str("[nat]\nsource_ipv4 = \"198.19.255.50\"\n");
        }
        for i in 0..vips {
            text.push_str(&format!(
                "[[vip]]\naddress = \"198.18.{}.{}\"\nport = 80\n",
                i / 200,
                i % 200 + 1
            ));
        }
        if nat {
            text.push_str(
                "[[vip]]\naddress = \"198.18.9.1\"\nport = 443\nforwarding = \"nat\"\n\
                 [[vip.backend]]\naddress = \"198.19.1.11\"\n",
            );
        }
        text.push_str("[[vrrp]]\nvrid = 1\n");
        text
    };
    let config = parse(&doc(255, false)).expect("255 addresses fit");
    assert_eq!(config.vrrp[0].addresses.len(), 255);
    let message = error(&doc(256, false));
    assert!(
        message.contains("vrrp[0].addresses: vrrp[0] lists no addresses, so it takes every IPv4 VIP address and NAT address: 256 addresses, but at most 255 fit an advertisement"),
        "{message}"
    );
    assert!(
        message.contains("list the addresses it moves explicitly"),
        "{message}"
    );
    // The NAT address counts: 254 VIP addresses, a NAT VIP's and its NAT
    // address are 256.
    let message = error(&doc(254, true));
    assert!(message.contains("vrrp[0].addresses: "), "{message}");
    assert!(
        message.contains(": 256 addresses, but at most 255"),
        "{message}"
    );
    assert_eq!(
        parse(&doc(253, true)).expect("255 addresses fit").vrrp[0]
            .addresses
            .len(),
        255
    );
}

#[test]
fn bad_vrrp_values_name_their_field() {
    let base = doc("", "");
    assert_error(
        &format!("{base}[[vrrp]]\npriority = 10\n"),
        "lbd.toml:9:1: vrrp[0].vrid: ",
        "required",
    );
    assert_error(
        &format!("{base}[[vrrp]]\nvrid = 1\nadvert_interval_ms = 105\n"),
        "lbd.toml:11:22: vrrp[0].advert_interval_ms: ",
        "multiple of 10",
    );
    assert_error(
        &format!("{base}[[vrrp]]\nvrid = 1\nsync_listen = \"198.18.0.2:7540\"\nsync_peer = \"198.18.0.3:7540\"\n"),
        "lbd.toml:9:1: vrrp[0].sync_key_file: ",
        "shared key",
    );
    assert_error(
        &format!("{base}[[vrrp]]\nvrid = 1\naddresses = [\"198.18.0.1\", \"2001:2::1\"]\n"),
        "lbd.toml:11:28: vrrp[0].addresses[1]: ",
        "2001:2::1 mixes IPv4 and IPv6 with 198.18.0.1",
    );
    assert_error(
        &format!("{base}[[vrrp]]\nvrid = 1\n[[vrrp]]\nvrid = 1\n"),
        "lbd.toml:11:1: vrrp[1].vrid: ",
        "already vrrp[0]",
    );
}

#[test]
fn log_settings() {
    let config = parse("interface = \"eth0\"\nlog_level = \"warn,lb_userspace::vrrp=debug\"\nlog_format = \"json\"\n").unwrap();
    assert_eq!(
        (config.log_level.as_str(), config.log_format),
        ("warn,lb_userspace::vrrp=debug", LogFormat::Json)
    );
    assert_error(
        "interface = \"eth0\"\nlog_format = \"xml\"\n",
        "lbd.toml:2:14: log_format: ",
        "is not one of",
    );
    assert_error(
        "interface = \"eth0\"\nlog_level = \"=\"\n",
        "lbd.toml:2:13: log_level: ",
        "not a log filter",
    );
    // A bare word that is not a level is a target to tracing: lbd's own
    // logs would be off.
    for word in ["warning", "inof", "h2=debug,inof"] {
        assert_error(
            &format!("interface = \"eth0\"\nlog_level = \"{word}\"\n"),
            "lbd.toml:2:13: log_level: ",
            "is not a level (trace, debug, info, warn, error, off); tracing reads a bare word as a target to log, so lbd's own logs would be off",
        );
    }
    // A typo beside a level for one of lbd's modules only: the rest of
    // lbd's logs would be off.
    assert_error(
        "interface = \"eth0\"\nlog_level = \"warning,lb_userspace::vrrp=debug\"\n",
        "lbd.toml:2:13: log_level: ",
        "\"warning\" is not a level (trace, debug, info, warn, error, off); tracing reads a bare word as a target to log, so lbd's own logs would be off (but those of the modules named)",
    );
    // tracing matches a directive's target as a prefix of the event's:
    // these name targets that are not lbd's (lb_userspace::..., lbd).
    for other in ["h2=debug", "lbd_userspace=debug", "lb_userspace2=info"] {
        assert_error(
            &format!("interface = \"eth0\"\nlog_level = \"{other}\"\n"),
            "lbd.toml:2:13: log_level: ",
            &format!("\"{other}\" names no level for lbd's own logs (targets lb_userspace, lbd), so lbd would log nothing"),
        );
    }
    // tracing turns off every target a filter names no level for: a level
    // for the library alone leaves target `lbd` (the fatal start error,
    // the config's warnings) off, and one for `lbd` alone the library.
    for (one, missing, effect) in [
        (
            "lb_userspace=debug",
            "target lbd",
            "an lbd that fails to start would exit saying nothing",
        ),
        (
            "lb_userspace",
            "target lbd",
            "an lbd that fails to start would exit saying nothing",
        ),
        (
            "lb_user=debug",
            "target lbd",
            "an lbd that fails to start would exit saying nothing",
        ),
        (
            "lb_userspace=info,h2",
            "target lbd",
            "an lbd that fails to start would exit saying nothing",
        ),
        (
            "lb_userspace=debug,lbd[x]=info",
            "target lbd",
            "an lbd that fails to start would exit saying nothing",
        ),
        (
            "lbd=info",
            "target lb_userspace",
            "all of lbd's work would log nothing",
        ),
        (
            "lbd=info,lb_userspace::vrrp=debug",
            "target lb_userspace",
            "all of lbd's work would log nothing",
        ),
        (
            "lb_userspace::vrrp=debug",
            "targets lb_userspace and lbd",
            "lbd would log nothing but the modules named",
        ),
        (
            "lb_userspace::daemon=debug",
            "targets lb_userspace and lbd",
            "lbd would log nothing but the modules named",
        ),
        (
            "lb_userspace[vrrp]=trace",
            "targets lb_userspace and lbd",
            "lbd would log nothing but the modules named",
        ),
        (
            "lb_userspace=off",
            "target lbd",
            "an lbd that fails to start would exit saying nothing",
        ),
    ] {
        assert_error(
            &format!("interface = \"eth0\"\nlog_level = \"{one}\"\n"),
            "lbd.toml:2:13: log_level: ",
            &format!("\"{one}\" names no level for all of lbd's {missing}, and tracing turns off every target a filter does not name, so {effect}"),
        );
    }
    // A typo beside a level for one of lbd's targets only: the target
    // left out is named.
    assert_error(
        "interface = \"eth0\"\nlog_level = \"inof,lb_userspace=debug\"\n",
        "lbd.toml:2:13: log_level: ",
        "\"inof,lb_userspace=debug\" names no level for all of lbd's target lbd",
    );
    for fine in [
        "info",
        "WARN",
        "3",
        "off",
        "info,lb_userspace=debug",
        "lb_userspace=debug,lbd=info",
        "lbd=info,lb_userspace=debug",
        "lb_userspace=off,lbd=off",
        "info,lb_userspace::vrrp=debug",
        "h2=debug,info",
        "lb_userspace,lbd",
        "error,lb_userspace[vrrp]=trace",
        // A level, and a target logged at every level.
        "warn,h2",
        "info,hyper",
        "info,verbose",
        "lb_userspace=info,lbd=info,h2",
        // A prefix of both of lbd's targets covers both, as tracing
        // matches it; one of lbd's target covers it.
        "lb=debug",
        "l=info",
        "lb_user=debug,lbd=warn",
        "lb_userspace::daemon=debug,lb_userspace=info,lbd=info",
    ] {
        let text = format!("interface = \"eth0\"\nlog_level = \"{fine}\"\n");
        match parse(&text) {
            Ok(config) => assert_eq!(config.log_level, fine, "{fine}"),
            Err(e) => panic!("{fine}: {e}"),
        }
    }
}

#[test]
fn pin_dir_defaults_can_be_moved_or_turned_off() {
    assert_eq!(
        parse("interface = \"eth0\"\n").unwrap().pin_dir,
        Some(PathBuf::from(DEFAULT_PIN_DIR))
    );
    assert_eq!(
        parse("interface = \"eth0\"\npin_dir = \"/sys/fs/bpf/lb2\"\n")
            .unwrap()
            .pin_dir,
        Some(PathBuf::from("/sys/fs/bpf/lb2"))
    );
    assert_eq!(
        parse("interface = \"eth0\"\npin_dir = \"off\"\n")
            .unwrap()
            .pin_dir,
        None
    );
    let long = format!("/sys/fs/bpf/{}", "a".repeat(190));
    for (bad, why) in [
        ("relative", "is not an absolute path"),
        ("/sys/fs/bpf/../etc", "has a \"..\" component"),
        ("/sys/fs/bpf/lb/..", "has a \"..\" component"),
        (long.as_str(), "at most 200 are allowed"),
    ] {
        let error = parse(&format!("interface = \"eth0\"\npin_dir = \"{bad}\"\n"))
            .expect_err("refused")
            .to_string();
        assert!(error.starts_with("lbd.toml:2:11: pin_dir: "), "{error}");
        assert!(error.contains(why), "{bad}: {error}");
    }
    // Two dots inside a name climb nowhere.
    assert_eq!(
        parse("interface = \"eth0\"\npin_dir = \"/sys/fs/bpf/lb..2\"\n")
            .unwrap()
            .pin_dir,
        Some(PathBuf::from("/sys/fs/bpf/lb..2"))
    );
}

#[test]
fn maglev_mode_is_consistent_unless_minimal_is_asked_for() {
    assert_eq!(
        parse("interface = \"eth0\"\n").unwrap().maglev_mode,
        MaglevMode::Consistent
    );
    assert_eq!(
        parse("interface = \"eth0\"\nmaglev_mode = \"minimal\"\n")
            .unwrap()
            .maglev_mode,
        MaglevMode::Minimal
    );
    let error = parse("interface = \"eth0\"\nmaglev_mode = \"fast\"\n")
        .expect_err("refused")
        .to_string();
    assert!(error.starts_with("lbd.toml:2:15: maglev_mode: "), "{error}");
}

/// Two VIPs of each family, one NAT VIP (NAT address 198.18.0.50) and
/// its backends, for the VRRP rules; `extra` is appended (from line 22).
fn vrrp_doc(extra: &str) -> String {
    format!(
        "interface = \"eth0\"\n\
         [nat]\n\
         source_ipv4 = \"198.18.0.50\"\n\
         [[vip]]\n\
         address = \"198.18.0.100\"\n\
         port = 80\n\
         forwarding = \"nat\"\n\
         [[vip.backend]]\n\
         address = \"198.18.1.11\"\n\
         [[vip]]\n\
         address = \"198.18.0.101\"\n\
         port = 80\n\
         [[vip.backend]]\n\
         address = \"198.18.0.12\"\n\
         [[vip]]\n\
         address = \"2001:2::100\"\n\
         port = 80\n\
         [[vip.backend]]\n\
         address = \"2001:2::12\"\n\
         \n\
         \n\
         {extra}"
    )
}

#[test]
fn unicast_peers_are_other_nodes_of_the_instance_family() {
    let ok = parse(&vrrp_doc(
        "[[vrrp]]\nvrid = 51\nunicast_peers = [\"198.18.0.3\"]\n",
    ))
    .unwrap();
    assert_eq!(ok.vrrp[0].unicast_peers.len(), 1);
    for (peers, at, detail) in [
        (
            "[\"198.18.0.3\", \"2001:2::3\"]",
            "lbd.toml:24:32: vrrp[0].unicast_peers[1]: ",
            "2001:2::3 is IPv6 but vrrp[0] moves IPv4 addresses (it lists no addresses, so it takes the family of the first VIP): adverts go over the instance's family",
        ),
        (
            "[\"198.18.0.101\"]",
            "lbd.toml:24:18: vrrp[0].unicast_peers[0]: ",
            "198.18.0.101 is an address vrrp[0] moves, so this node's own",
        ),
        (
            "[\"198.18.0.50\"]",
            "lbd.toml:24:18: vrrp[0].unicast_peers[0]: ",
            "198.18.0.50 is an address vrrp[0] moves",
        ),
        (
            "[\"127.0.0.1\"]",
            "lbd.toml:24:18: vrrp[0].unicast_peers[0]: ",
            "127.0.0.1 is not another node's address",
        ),
        (
            "[\"0.0.0.0\"]",
            "lbd.toml:24:18: vrrp[0].unicast_peers[0]: ",
            "unspecified",
        ),
        (
            "[\"224.0.0.18\"]",
            "lbd.toml:24:18: vrrp[0].unicast_peers[0]: ",
            "multicast",
        ),
    ] {
        assert_error(
            &vrrp_doc(&format!("[[vrrp]]\nvrid = 51\nunicast_peers = {peers}\n")),
            at,
            detail,
        );
    }
    // Any VIP's address, of an instance's family or not.
    assert_error(
        &vrrp_doc(
            "[[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.100\", \"198.18.0.50\"]\nunicast_peers = [\"198.18.0.101\"]\n",
        ),
        "lbd.toml:25:18: vrrp[0].unicast_peers[0]: ",
        "198.18.0.101 is vip[1]'s address, so this node's own",
    );
    // An IPv6 instance takes IPv6 peers.
    let v6 =
        "[[vrrp]]\nvrid = 52\naddresses = [\"2001:2::100\"]\nunicast_peers = [\"198.18.0.3\"]\n";
    assert_error(
        &vrrp_doc(v6),
        "lbd.toml:25:18: vrrp[0].unicast_peers[0]: ",
        "198.18.0.3 is IPv4 but vrrp[0] moves IPv6 addresses: adverts go over",
    );
    assert!(parse(&vrrp_doc(&v6.replace("198.18.0.3", "2001:2::3"))).is_ok());
}

#[test]
fn an_address_is_moved_by_one_instance() {
    // Two instances with default lists both take every IPv4 VIP.
    assert_error(
        &vrrp_doc("[[vrrp]]\nvrid = 51\n[[vrrp]]\nvrid = 52\n"),
        "lbd.toml:24:1: vrrp[1].addresses: ",
        "198.18.0.100 is moved by vrrp[0] too: an address is moved by one instance (neither vrrp[0] nor vrrp[1] lists addresses, so both take every VIP address of the first VIP's family: list addresses explicitly in each [[vrrp]])",
    );
    assert_error(
        &vrrp_doc(
            "[[vrrp]]\nvrid = 51\n[[vrrp]]\nvrid = 52\naddresses = [\"198.18.0.101\"]\n",
        ),
        "lbd.toml:26:14: vrrp[1].addresses[0]: ",
        "198.18.0.101 is moved by vrrp[0] too: an address is moved by one instance (vrrp[0] lists no addresses",
    );
    assert_error(
        &vrrp_doc(
            "[[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.101\"]\n[[vrrp]]\nvrid = 52\naddresses = [\"198.18.0.101\"]\n",
        ),
        "lbd.toml:27:14: vrrp[1].addresses[0]: ",
        "198.18.0.101 is moved by vrrp[0] too: an address is moved by one instance",
    );
    // One per family, listed: fine.
    let config = parse(&vrrp_doc(
        "[[vrrp]]\nvrid = 51\n[[vrrp]]\nvrid = 52\naddresses = [\"2001:2::100\"]\n",
    ))
    .unwrap();
    assert_eq!(config.vrrp[0].addresses.len(), 3);
}

#[test]
fn the_instance_that_moves_a_nat_vip_moves_its_nat_address() {
    // vrid 51 moves the NAT VIP and its NAT address, vrid 52 a VIP
    // without NAT: each list is complete.
    let two = "[[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.100\", \"198.18.0.50\"]\n\
               [[vrrp]]\nvrid = 52\naddresses = [\"198.18.0.101\"]\n";
    let config = parse(&vrrp_doc(two)).unwrap();
    assert_eq!(config.vrrp[1].addresses.len(), 1);
    assert_eq!(parse(&to_toml(&config)).unwrap(), config, "dump round trip");
    assert_error(
        &vrrp_doc(&two.replace(", \"198.18.0.50\"", "")),
        "lbd.toml:24:14: vrrp[0].addresses[0]: ",
        "the NAT address 198.18.0.50 of VIP 198.18.0.100 must move with the VIP (replies to translated flows come back to it): add it to this list",
    );
    assert_error(
        &vrrp_doc(&two.replace(", \"198.18.0.50\"", "").replace(
            "[\"198.18.0.101\"]",
            "[\"198.18.0.101\", \"198.18.0.50\"]",
        )),
        "lbd.toml:24:14: vrrp[0].addresses[0]: ",
        "the NAT address 198.18.0.50 of VIP 198.18.0.100 (forwarding = \"nat\") is moved by vrrp[1], not with the VIP: move it in vrrp[0] instead",
    );
    // Two NAT VIPs of different instances sharing the node's NAT address.
    let shared = vrrp_doc(two).replace(
        "address = \"198.18.0.101\"\nport = 80\n",
        "address = \"198.18.0.101\"\nport = 80\nforwarding = \"nat\"\n",
    );
    let shared = shared.replace("[\"198.18.0.101\"]", "[\"198.18.0.101\", \"198.18.0.50\"]");
    let message = error(&shared);
    assert!(
        message.starts_with("lbd.toml:28:30: vrrp[1].addresses[1]: 198.18.0.50 is moved by vrrp[0] too: an address is moved by one instance (it is the NAT address of VIP 198.18.0.100 in vrrp[0] and of VIP 198.18.0.101 in vrrp[1]: NAT VIPs of different instances need different NAT addresses; give one of them its own nat_source)"),
        "{message}"
    );
}

#[test]
fn a_vrrp_address_is_no_backend() {
    assert_error(
        &vrrp_doc(
            "[[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.100\", \"198.18.0.50\", \"198.18.0.12\"]\n",
        ),
        "lbd.toml:24:45: vrrp[0].addresses[2]: ",
        "198.18.0.12 is the address of vip[1].backend[0]: the master would take the backend's packets",
    );
}

#[test]
fn pair_replication_needs_both_ends_in_one_instance() {
    let base = doc("", "");
    let vrrp = |keys: &str| format!("{base}[[vrrp]]\nvrid = 1\n{keys}");
    let listen = "sync_listen = \"198.18.0.2:7540\"\n";
    let peer = "sync_peer = \"198.18.0.3:7540\"\n";
    let key = "sync_key_file = \"/etc/lbd/sync.key\"\n";
    assert!(parse(&vrrp(&format!("{listen}{peer}{key}"))).is_ok());
    assert_error(
        &vrrp(&format!("{listen}{key}")),
        "lbd.toml:11:15: vrrp[0].sync_peer: ",
        "sync_listen without sync_peer: replication needs both",
    );
    assert_error(
        &vrrp(&format!("{peer}{key}")),
        "lbd.toml:11:13: vrrp[0].sync_listen: ",
        "sync_peer without sync_listen: replication needs both",
    );
    assert_error(
        &vrrp(key),
        "lbd.toml:11:17: vrrp[0].sync_key_file: ",
        "without sync_listen and sync_peer there is no replication to key",
    );
    assert_error(
        &vrrp(&format!(
            "{listen}{}{key}",
            peer.replace("198.18.0.3", "198.18.0.2")
        )),
        "lbd.toml:12:13: vrrp[0].sync_peer: ",
        "198.18.0.2:7540 is this node's own sync_listen",
    );
    let v6 = "[[vip]]\naddress = \"2001:2::100\"\nport = 80\n";
    let two = format!(
        "{base}{v6}[[vrrp]]\nvrid = 1\n{listen}{peer}{key}[[vrrp]]\nvrid = 2\naddresses = [\"2001:2::100\"]\nsync_listen = \"[2001:2::2]:7540\"\nsync_peer = \"[2001:2::3]:7540\"\n{key}"
    );
    assert_error(
        &two,
        "lbd.toml:20:15: vrrp[1]: ",
        "replication is already configured in vrrp[0]",
    );
}

/// A replication peer is another node: an address this node holds (a VIP,
/// a NAT address, one a `[[vrrp]]` moves) reaches this node or whichever
/// node holds it, never the peer's listener, so replication never works.
#[test]
fn replication_peers_are_other_nodes() {
    let pair = |listen: &str, peer: &str| {
        vrrp_doc(&format!(
            "[[vrrp]]\nvrid = 51\nsync_listen = \"{listen}\"\nsync_peer = \"{peer}\"\nsync_key_file = \"/k\"\n"
        ))
    };
    assert!(parse(&pair("198.18.0.2:7540", "198.18.0.3:7540")).is_ok());
    for (peer, detail) in [
        (
            "198.18.0.101:7540",
            "198.18.0.101 is an address vrrp[0] moves, so this node's own: a peer is another node's own address",
        ),
        (
            "198.18.0.50:7540",
            "198.18.0.50 is an address vrrp[0] moves, so this node's own",
        ),
    ] {
        assert_error(
            &pair("198.18.0.2:7540", peer),
            "lbd.toml:25:13: vrrp[0].sync_peer: ",
            detail,
        );
    }
    // VIPs and NAT addresses no instance moves are this node's too.
    let v6_pair = |peer: &str| {
        vrrp_doc(&format!(
            "[[vrrp]]\nvrid = 52\naddresses = [\"2001:2::100\"]\nunicast_peers = [\"2001:2::3\"]\n\
             sync_listen = \"[2001:2::2]:7540\"\nsync_peer = \"{peer}\"\nsync_key_file = \"/k\"\n"
        ))
    };
    assert!(parse(&v6_pair("198.18.0.3:7540")).is_ok());
    assert_error(
        &v6_pair("198.18.0.101:7540"),
        "lbd.toml:27:13: vrrp[0].sync_peer: ",
        "198.18.0.101 is vip[1]'s address, so this node's own: a peer is another node's own address",
    );
    assert_error(
        &v6_pair("198.18.0.50:7540"),
        "lbd.toml:27:13: vrrp[0].sync_peer: ",
        "198.18.0.50 is the NAT address of vip[0], so this node's own",
    );
    // [sync] peers, by their index.
    let mesh = |listen: &str, peers: &str| {
        vrrp_doc(&format!(
            "[sync]\nlisten = \"{listen}\"\npeers = {peers}\nkey_file = \"/k\"\n"
        ))
    };
    assert!(parse(&mesh("198.18.2.11:7946", "[\"198.18.2.12:7946\"]")).is_ok());
    assert_error(
        &mesh(
            "198.18.2.11:7946",
            "[\"198.18.2.12:7946\", \"198.18.0.101:7946\"]",
        ),
        "lbd.toml:24:30: sync.peers[1]: ",
        "198.18.0.101 is vip[1]'s address, so this node's own: a peer is another node's own address",
    );
    assert_error(
        &mesh("198.18.2.11:7946", "[\"[2001:2::100]:7946\"]"),
        "lbd.toml:24:10: sync.peers[0]: ",
        "2001:2::100 is vip[2]'s address, so this node's own",
    );
    assert_error(
        &mesh("198.18.2.11:7946", "[\"198.18.0.50:7946\"]"),
        "lbd.toml:24:10: sync.peers[0]: ",
        "198.18.0.50 is the NAT address of vip[0], so this node's own",
    );
    assert_error(
        &mesh("198.18.2.11:7946", "[\"198.18.0.101:7946\"]")
            .replace("[sync]", "[[vrrp]]\nvrid = 51\n[sync]"),
        "lbd.toml:26:10: sync.peers[0]: ",
        "198.18.0.101 is an address vrrp[0] moves, so this node's own",
    );
}

/// Listeners bind when lbd starts, before VRRP takes its addresses (lbd
/// removes them at start): one on an address a `[[vrrp]]` moves fails to
/// bind, and lbd does not start. The unspecified address binds anywhere.
#[test]
fn listeners_are_not_on_an_address_vrrp_moves() {
    let pair = |listen: &str| {
        vrrp_doc(&format!(
            "[[vrrp]]\nvrid = 1\nsync_listen = \"{listen}\"\nsync_peer = \"198.18.0.3:7540\"\nsync_key_file = \"/k\"\n"
        ))
    };
    assert!(parse(&pair("0.0.0.0:7540")).is_ok());
    assert!(parse(&pair("[::]:7540")).is_ok());
    assert!(parse(&pair("198.18.0.2:7540")).is_ok());
    assert_error(
        &pair("198.18.0.100:7540"),
        "lbd.toml:24:15: vrrp[0].sync_listen: ",
        "198.18.0.100 is an address vrrp[0] moves: listeners bind at start, before VRRP takes the address",
    );
    assert_error(
        &pair("198.18.0.50:7540"),
        "lbd.toml:24:15: vrrp[0].sync_listen: ",
        "198.18.0.50 is an address vrrp[0] moves: listeners bind at start",
    );
    let metrics = |listen: &str| {
        vrrp_doc("[[vrrp]]\nvrid = 1\n").replace(
            "interface = \"eth0\"\n",
            &format!("interface = \"eth0\"\nmetrics_listen = \"{listen}\"\n"),
        )
    };
    assert!(parse(&metrics("0.0.0.0:9641")).is_ok());
    assert!(parse(&metrics("198.18.0.2:9641")).is_ok());
    assert_error(
        &metrics("198.18.0.100:9641"),
        "lbd.toml:2:18: metrics_listen: ",
        "198.18.0.100 is an address vrrp[0] moves: listeners bind at start, before VRRP takes the address",
    );
    // An address of another instance's family, moved by that one.
    assert_error(
        &vrrp_doc("[[vrrp]]\nvrid = 1\n[[vrrp]]\nvrid = 2\naddresses = [\"2001:2::100\"]\n")
            .replace(
                "interface = \"eth0\"\n",
                "interface = \"eth0\"\nmetrics_listen = \"[2001:2::100]:9641\"\n",
            ),
        "lbd.toml:2:18: metrics_listen: ",
        "2001:2::100 is an address vrrp[1] moves",
    );
    let mesh = |listen: &str| {
        vrrp_doc(&format!(
            "[[vrrp]]\nvrid = 1\n[sync]\nlisten = \"{listen}\"\npeers = [\"198.18.2.12:7946\"]\nkey_file = \"/k\"\n"
        ))
    };
    assert!(parse(&mesh("198.18.2.11:7946")).is_ok());
    assert_error(
        &mesh("198.18.0.101:7946"),
        "lbd.toml:25:10: sync.listen: ",
        "198.18.0.101 is an address vrrp[0] moves: listeners bind at start, before VRRP takes the address",
    );
}

/// `[sync] listen` names this node to its peers (its node id is built
/// from it): a VIP address `[bgp]` announces is every node's, so clones
/// would share one id, and no peer may list it.
#[test]
fn a_mesh_listens_on_no_address_bgp_announces() {
    let mesh = |bgp: &str, listen: &str| {
        format!(
            "{}[bgp]\n{bgp}[sync]\nlisten = \"{listen}\"\npeers = [\"198.18.2.12:7946\"]\nkey_file = \"/k\"\n",
            doc("", "")
        )
    };
    assert!(parse(&mesh("", "198.18.2.11:7946")).is_ok());
    assert_error(
        &mesh("", "198.18.0.100:7946"),
        "lbd.toml:11:10: sync.listen: ",
        "198.18.0.100 is vip[0]'s address, which [bgp] announces from every node",
    );
    // Not announced: a VIP on the node's own address may carry it.
    let listed = "addresses = [\"198.18.0.101\"]\n";
    let other_vip = "[[vip]]\naddress = \"198.18.0.101\"\nport = 80\n";
    assert!(parse(&format!("{}{other_vip}", mesh(listed, "198.18.0.100:7946"))).is_ok());
}

#[test]
fn socket_addresses_have_a_port_and_peers_a_host() {
    let base = doc("", "");
    let vrrp = |listen: &str, peer: &str| {
        format!(
            "{base}[[vrrp]]\nvrid = 1\nsync_listen = \"{listen}\"\nsync_peer = \"{peer}\"\nsync_key_file = \"/k\"\n"
        )
    };
    assert!(parse(&vrrp("0.0.0.0:7540", "198.18.0.3:7540")).is_ok());
    for (listen, peer, at, detail) in [
        (
            "198.18.0.2:0",
            "198.18.0.3:7540",
            "lbd.toml:11:15: vrrp[0].sync_listen: ",
            "port 0 is no port",
        ),
        (
            "198.18.0.2:7540",
            "198.18.0.3:0",
            "lbd.toml:12:13: vrrp[0].sync_peer: ",
            "port 0 is no port",
        ),
        (
            "224.0.0.1:7540",
            "198.18.0.3:7540",
            "lbd.toml:11:15: vrrp[0].sync_listen: ",
            "224.0.0.1 is a multicast address",
        ),
        (
            "198.18.0.2:7540",
            "0.0.0.0:7540",
            "lbd.toml:12:13: vrrp[0].sync_peer: ",
            "0.0.0.0 is the unspecified address: a peer is the other node's address",
        ),
        (
            "198.18.0.2:7540",
            "[::]:7540",
            "lbd.toml:12:13: vrrp[0].sync_peer: ",
            "unspecified",
        ),
        (
            "198.18.0.2:7540",
            "[::ffff:198.18.0.3]:7540",
            "lbd.toml:12:13: vrrp[0].sync_peer: ",
            "write the IPv4 address 198.18.0.3",
        ),
    ] {
        assert_error(&vrrp(listen, peer), at, detail);
    }
    let sync = |listen: &str, peers: &str| {
        format!("interface = \"eth0\"\n[sync]\nlisten = \"{listen}\"\npeers = {peers}\nkey_file = \"/k\"\n")
    };
    assert_error(
        &sync("0.0.0.0:7946", "[\"198.18.2.12:7946\"]"),
        "lbd.toml:3:10: sync.listen: ",
        "0.0.0.0 is the unspecified address: give this node's own address",
    );
    assert_error(
        &sync(
            "198.18.2.11:7946",
            "[\"198.18.2.12:7946\", \"0.0.0.0:7946\"]",
        ),
        "lbd.toml:4:30: sync.peers[1]: ",
        "0.0.0.0 is the unspecified address",
    );
    assert_error(
        &sync("198.18.2.11:0", "[\"198.18.2.12:7946\"]"),
        "lbd.toml:3:10: sync.listen: ",
        "port 0",
    );
    // A link-local endpoint names its interface, or nothing could bind
    // or reach it; a scoped one is taken.
    assert_error(
        &sync("[fe80::1]:7946", "[\"[fe80::2%2]:7946\"]"),
        "lbd.toml:3:10: sync.listen: ",
        "fe80::1 is an IPv6 link-local address without its interface",
    );
    assert_error(
        &sync("[fe80::1%2]:7946", "[\"[fe80::2]:7946\"]"),
        "lbd.toml:4:10: sync.peers[0]: ",
        "[fe80::2%2]:7946",
    );
    assert_error(
        &vrrp("[fe80::1%2]:7540", "[fe80::2]:7540"),
        "lbd.toml:12:13: vrrp[0].sync_peer: ",
        "fe80::2 is an IPv6 link-local address without its interface",
    );
    assert!(parse(&sync("[fe80::1%2]:7946", "[\"[fe80::2%2]:7946\"]")).is_ok());
    // metrics_listen: any address but multicast, a port, and not a
    // replication listener's.
    let metrics = |value: &str| format!("interface = \"eth0\"\nmetrics_listen = \"{value}\"\n");
    assert_eq!(
        parse(&metrics("0.0.0.0:9641")).unwrap().metrics_listen,
        "0.0.0.0:9641".parse().ok()
    );
    assert_eq!(parse(&metrics("off")).unwrap().metrics_listen, None);
    assert_error(&metrics(""), "lbd.toml:2:18: metrics_listen: ", "is empty");
    assert_error(
        &metrics("0.0.0.0:0"),
        "lbd.toml:2:18: metrics_listen: ",
        "port 0",
    );
    assert_error(
        &metrics("[ff02::1]:9641"),
        "lbd.toml:2:18: metrics_listen: ",
        "multicast",
    );
    assert_error(
        &vrrp("198.18.0.2:7540", "198.18.0.3:7540").replace(
            "interface = \"eth0\"\n",
            "interface = \"eth0\"\nmetrics_listen = \"0.0.0.0:7540\"\n",
        ),
        "lbd.toml:2:18: metrics_listen: ",
        "0.0.0.0:7540 takes the port of vrrp[0].sync_listen (198.18.0.2:7540)",
    );
    assert_error(
        &sync("127.0.0.1:9641", "[\"198.18.2.12:7946\"]"),
        "lbd.toml:3:10: sync.listen: ",
        "127.0.0.1:9641 takes the port of metrics_listen (127.0.0.1:9641, the default)",
    );
    // Other addresses, or metrics off, do not clash.
    assert!(parse(&sync("198.18.2.11:9641", "[\"198.18.2.12:7946\"]")).is_ok());
    assert!(
        parse(&sync("127.0.0.1:9641", "[\"198.18.2.12:7946\"]").replace(
            "interface = \"eth0\"\n",
            "interface = \"eth0\"\nmetrics_listen = \"off\"\n",
        ))
        .is_ok()
    );
}

#[test]
fn ipv4_mapped_addresses_are_refused_everywhere() {
    let mapped = "::ffff:198.18.0.100";
    assert_error(
        &doc("", "").replace(
            "address = \"198.18.0.11\"",
            &format!("address = \"{mapped}\""),
        ),
        "lbd.toml:7:11: vip[0].backend[0].address: ",
        "::ffff:198.18.0.100 is an IPv4-mapped IPv6 address: write the IPv4 address 198.18.0.100",
    );
    assert_error(
        &doc("", "").replace(
            "address = \"198.18.0.100\"",
            &format!("address = \"{mapped}\""),
        ),
        "lbd.toml:3:11: vip[0].address: ",
        "IPv4-mapped",
    );
    assert_error(
        &format!(
            "{}[[vrrp]]\nvrid = 1\naddresses = [\"{mapped}\"]\n",
            doc("", "")
        ),
        "lbd.toml:11:14: vrrp[0].addresses[0]: ",
        "IPv4-mapped",
    );
    assert_error(
        "interface = \"eth0\"\n[nat]\nsource_ipv6 = \"::ffff:198.18.0.50\"\n",
        "lbd.toml:3:15: nat.source_ipv6: ",
        "write the IPv4 address 198.18.0.50",
    );
    assert_error(
        "interface = \"eth0\"\n[tunnel]\nsource_ipv6 = \"::ffff:198.18.200.0/120\"\n",
        "lbd.toml:3:15: tunnel.source_ipv6: ",
        "IPv4-mapped",
    );
}

#[test]
fn health_timing_names_the_written_field_and_the_defaults() {
    assert_error(
        &doc("[vip.health]\ninterval_ms = 500", ""),
        "lbd.toml:6:15: vip[0].health.interval_ms: ",
        "interval_ms (500) is shorter than timeout_ms (1000, the default): set timeout_ms too",
    );
    assert_error(
        &doc("[vip.health]\ninterval_ms = 500\ntimeout_ms = 600", ""),
        "lbd.toml:7:14: vip[0].health.timeout_ms: ",
        "timeout_ms (600) is longer than interval_ms (500)",
    );
    // fast_interval_ms is never longer than interval_ms.
    assert_error(
        &doc("[vip.health]\nfast_interval_ms = 3000", ""),
        "lbd.toml:6:20: vip[0].health.fast_interval_ms: ",
        "fast_interval_ms (3000) is longer than interval_ms (2000, the default): set interval_ms too",
    );
    // A fast interval the table does not write follows a shorter
    // interval down, so a file that only shortens interval_ms loads.
    let config = parse(&doc(
        "[vip.health]\ninterval_ms = 400\ntimeout_ms = 300",
        "",
    ))
    .unwrap();
    assert_eq!(
        config.vips[0].health.fast_interval,
        Duration::from_millis(400)
    );
    // A backend's table names where the rest comes from.
    assert_error(
        &doc("[vip.health]\ninterval_ms = 1000", "[vip.backend.health]\ntimeout_ms = 1500"),
        "lbd.toml:10:14: vip[0].backend[0].health.timeout_ms: ",
        "timeout_ms (1500) is longer than interval_ms (1000, the VIP's or the default): set interval_ms too",
    );
    let config = parse(&doc(
        "[vip.health]\ninterval_ms = 400\nfast_interval_ms = 200\ntimeout_ms = 300",
        "",
    ))
    .unwrap();
    assert_eq!(
        config.vips[0].health.fast_interval,
        Duration::from_millis(200)
    );
    // The defaults keep these rules.
    let d = HealthConfig::default_for(Protocol::Tcp);
    assert!(d.timeout <= d.interval && d.fast_interval <= d.interval);
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

/// Generic XDP cannot translate partial-checksum or GSO skbs: a NAT or
/// tunnelled VIP with `xdp_mode = "generic"` is refused by the file's
/// check (`lbctl config check`, a reload), not only at lbd's start.
#[test]
fn generic_xdp_serves_dsr_l2_vips_only() {
    let file = |mode: &str, forwarding: &str| {
        format!(
            "interface = \"eth0\"\nxdp_mode = \"{mode}\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n\
             [[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"{forwarding}\"\n\
             [[vip.backend]]\naddress = \"198.18.1.11\"\n"
        )
    };
    assert_error(
        &file("generic", "nat"),
        "lbd.toml:2:12: xdp_mode: ",
        "xdp_mode = \"generic\" serves DSR-L2 VIPs only: generic (skb) XDP cannot translate packets",
    );
    assert!(error(&file("generic", "nat")).contains("198.18.0.100:80/tcp (nat)"));
    for (mode, forwarding) in [("generic", "dsr-l2"), ("auto", "nat"), ("native", "nat")] {
        assert!(
            parse(&file(mode, forwarding)).is_ok(),
            "{mode} with {forwarding}"
        );
    }
}

#[test]
fn xdp_mode_belongs_to_attach_xdp() {
    for mode in ["native", "generic"] {
        assert_error(
            &format!("interface = \"eth0\"\nattach = \"tc\"\nxdp_mode = \"{mode}\"\n"),
            "lbd.toml:3:12: xdp_mode: ",
            "is for attach = \"xdp\"; with attach = \"tc\" there is no XDP program to attach: remove xdp_mode",
        );
        let xdp = format!("interface = \"eth0\"\nattach = \"xdp\"\nxdp_mode = \"{mode}\"\n");
        assert!(parse(&xdp).is_ok());
    }
    // "auto", the default a dump writes, is let by.
    let config = parse("interface = \"eth0\"\nattach = \"tc\"\nxdp_mode = \"auto\"\n").unwrap();
    assert_eq!(config.attach, Attach::Tc);
}

#[test]
fn nat_addresses_route_back_to_this_node() {
    assert_error(
        "interface = \"eth0\"\n[nat]\nsource_ipv6 = \"::1\"\n",
        "lbd.toml:3:15: nat.source_ipv6: ",
        "::1 is a loopback address: backends' replies go to the NAT address, so it must route back to this node",
    );
    assert_error(
        "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"255.255.255.255\"\n",
        "lbd.toml:3:15: nat.source_ipv4: ",
        "the broadcast address",
    );
    assert_error(
        &doc("forwarding = \"nat\"\nnat_source = \"127.0.0.1\"", ""),
        "lbd.toml:6:14: vip[0].nat_source: ",
        "127.0.0.1 is a loopback address",
    );
    // Routers do not forward from link-local addresses.
    assert_error(
        "interface = \"eth0\"\n[nat]\nsource_ipv6 = \"fe80::50\"\n",
        "lbd.toml:3:15: nat.source_ipv6: ",
        "fe80::50 is a link-local address",
    );
    assert_error(
        "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"169.254.0.50\"\n",
        "lbd.toml:3:15: nat.source_ipv4: ",
        "169.254.0.50 is a link-local address",
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

#[test]
fn a_check_path_is_one_a_request_can_carry_and_the_status_a_final_one() {
    for path in ["/a#frag", "/a<b>", "/`x`"] {
        let message = error(&doc(
            &format!("[vip.health]\ncheck = \"http\"\npath = \"{path}\""),
            "",
        ));
        assert!(
            message.contains("vip[0].health.path") && message.contains("an HTTP request can carry"),
            "{path}: {message}"
        );
    }
    assert!(parse(&doc(
        "[vip.health]\ncheck = \"http\"\npath = \"/health?full=1&x=%3C\"",
        ""
    ))
    .is_ok());
    let message = error(&doc(
        "[vip.health]\ncheck = \"http\"\nexpect_status = 100",
        "",
    ));
    assert!(message.contains("out of range 200..=599"), "{message}");
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
