//! Documents that load: the example's values, the defaults, the shipped
//! example file.
use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

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
                affinity: lb_common::Affinity::Connection,
                slow_start: None,
                nat: None,
                backends: vec![BackendConfig {
                    backup: false,
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
fn the_shipped_example_is_valid() {
    let config = parse(include_str!("../../../../examples/lbd.toml")).unwrap();
    assert_eq!(config.vips.len(), 2);
    assert_eq!(config.vips[0].health.check, CheckType::Http);
}
