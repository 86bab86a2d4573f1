//! Tests of the single-value rules: ranges, spellings and addresses.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use super::super::{AllDown, Protocol, MAX_BACKENDS_PER_VIP};
use super::*;
use crate::mac::Mac;

fn message<T: fmt::Debug>(result: Result<T, ValueError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn numbers_say_their_range() {
    assert_eq!(weight(10_000), Ok(10_000));
    assert_eq!(weight(0), Ok(0));
    assert_eq!(message(weight(-1)), "-1 is out of range 0..=10000");
    assert_eq!(
        message(weight(99_999_999_999)),
        "99999999999 is out of range 0..=10000"
    );
    assert_eq!(port(65_535), Ok(65_535));
    assert_eq!(message(port(0)), "0 is out of range 1..=65535");
    assert_eq!(message(port(70_000)), "70000 is out of range 1..=65535");
    assert_eq!(drain_timeout_s(300), Ok(Duration::from_secs(300)));
    assert!(drain_timeout_s(0).is_err());
}

#[test]
fn table_sizes_are_primes_in_range() {
    assert_eq!(table_size(65_537), Ok(65_537));
    assert_eq!(table_size(3), Ok(3));
    assert_eq!(
        message(table_size(100)),
        "100 is not a prime (Maglev needs a prime table size); nearest: 97 or 101"
    );
    assert_eq!(message(table_size(2)), "2 is out of range 3..=65537");
    assert_eq!(weighted_backends_fit(3, 3), Ok(()));
    assert!(message(weighted_backends_fit(4, 3)).starts_with("4 backends with a weight"));
}

#[test]
fn choices_name_the_allowed_spellings() {
    assert_eq!(protocol("udp"), Ok(Protocol::Udp));
    assert_eq!(
        message(protocol("sctp")),
        "\"sctp\" is not one of \"tcp\", \"udp\""
    );
    assert_eq!(on_all_down("keep"), Ok(AllDown::KeepLast));
    assert_eq!(
        message(on_all_down("Keep")),
        "\"Keep\" is not one of \"drop\", \"keep\""
    );
}

/// A link-local endpoint needs its interface: Linux refuses to bind
/// or connect to one without it (EINVAL), which would only show at
/// run time as a sync sender that never connects.
#[test]
fn link_local_endpoints_need_their_interface() {
    for peer in [false, true] {
        let unscoped: SocketAddr = "[fe80::2]:7000".parse().unwrap();
        let refused = message(socket_address(unscoped, peer));
        assert!(
            refused.contains("fe80::2 is an IPv6 link-local address without its interface")
                && refused.contains("[fe80::2%2]:7000"),
            "{refused}"
        );
        let scoped: SocketAddr = "[fe80::2%2]:7000".parse().unwrap();
        assert_eq!(socket_address(scoped, peer), Ok(scoped));
    }
    let global: SocketAddr = "[2001:db8::2]:7000".parse().unwrap();
    assert_eq!(socket_address(global, true), Ok(global));
}

#[test]
fn addresses() {
    let vip: IpAddr = "198.18.0.100".parse().unwrap();
    let ok: IpAddr = "198.18.0.11".parse().unwrap();
    assert_eq!(ip_address("198.18.0.11"), Ok(ok));
    assert!(message(ip_address("198.18.0.300")).contains("is not an IPv4 or IPv6 address"));
    assert!(message(ip_address("::")).contains("unspecified"));
    assert!(message(ip_address("ff02::1")).contains("multicast"));
    let dsr = lb_common::Mode::DsrL2;
    assert_eq!(backend_address(ok, vip, dsr), Ok(ok));
    let v6_vip: IpAddr = "2001:2::100".parse().unwrap();
    let link_local: IpAddr = "fe80::11".parse().unwrap();
    let error = message(backend_address(link_local, v6_vip, dsr));
    assert!(
        error.starts_with("fe80::11 is an IPv6 link-local address"),
        "{error}"
    );
    let v6: IpAddr = "2001:2::11".parse().unwrap();
    assert_eq!(
        message(backend_address(v6, vip, dsr)),
        "2001:2::11 is IPv6 but the VIP 198.18.0.100 is IPv4 (only forwarding = \"ipip\" or \"gue\" reach IPv6 backends of an IPv4 VIP)"
    );
    assert_eq!(
        message(backend_address(vip, vip, dsr)),
        "198.18.0.100 is the VIP's own address"
    );
    assert_eq!(listed_once(ok, None), Ok(()));
    assert_eq!(
        message(listed_once(ok, Some("backends[0]"))),
        "198.18.0.11 is already backends[0]"
    );
}

#[test]
fn tunnel_modes_carry_v4_in_v6_but_never_v6_in_v4() {
    let (v4, v6): (IpAddr, IpAddr) = (
        "198.18.0.100".parse().unwrap(),
        "2001:2::100".parse().unwrap(),
    );
    let (b4, b6): (IpAddr, IpAddr) = (
        "198.19.2.11".parse().unwrap(),
        "2001:2:2::11".parse().unwrap(),
    );
    for mode in [lb_common::Mode::Ipip, lb_common::Mode::Gue] {
        assert_eq!(backend_address(b4, v4, mode), Ok(b4));
        assert_eq!(backend_address(b6, v4, mode), Ok(b6));
        assert_eq!(backend_address(b6, v6, mode), Ok(b6));
        assert_eq!(
            message(backend_address(b4, v6, mode)),
            "198.19.2.11 is IPv4 but the VIP 2001:2::100 is IPv6 (an IPv6 VIP cannot be carried to an IPv4 backend)"
        );
        assert!(message(backend_port(8080, mode)).contains("keeps the VIP's port"));
        assert!(message(backend_mac_allowed(mode)).contains("routed"));
        assert_eq!(through_tunnel_allowed(mode), Ok(()));
    }
    assert!(message(backend_address(b6, v4, lb_common::Mode::Nat)).contains("is IPv6 but"));
    assert!(message(through_tunnel_allowed(lb_common::Mode::Nat)).contains("\"nat\""));
    assert_eq!(forwarding("gue"), Ok(lb_common::Mode::Gue));
    assert_eq!(forwarding("ipip"), Ok(lb_common::Mode::Ipip));
}

#[test]
fn prefixes_parse_with_their_family_and_no_host_bits() {
    let v4 = |t| prefix(t, false);
    let v6 = |t| prefix(t, true);
    assert_eq!(
        v4("198.18.200.0/24"),
        Ok(("198.18.200.0".parse().unwrap(), 24))
    );
    assert_eq!(v4("198.18.0.2"), Ok(("198.18.0.2".parse().unwrap(), 32)));
    assert_eq!(v4("198.18.0.2/32"), Ok(("198.18.0.2".parse().unwrap(), 32)));
    assert_eq!(
        v6("2001:2:f0::/64"),
        Ok(("2001:2:f0::".parse().unwrap(), 64))
    );
    assert_eq!(v6("2001:2::2"), Ok(("2001:2::2".parse().unwrap(), 128)));
    assert!(message(v4("198.18.200.1/24")).contains("host bits set"));
    assert!(message(v6("2001:2:f0::1/64")).contains("host bits set"));
    assert!(message(v4("198.18.200.0/33")).contains("0..=32"));
    assert!(message(v4("2001:2::/64")).contains("is not IPv4"));
    assert!(message(v6("198.18.0.0/16")).contains("is not IPv6"));
    assert!(message(v4("nope/8")).contains("is not an IPv4 prefix"));
    assert!(message(v4("0.0.0.0/0")).contains("unspecified"));
}

#[test]
fn macs_are_unicast_and_not_zero() {
    assert_eq!(
        mac("02:00:00:00:00:11").map(Mac::octets),
        Ok([2, 0, 0, 0, 0, 0x11])
    );
    assert!(message(mac("01:00:00:00:00:11")).contains("multicast MAC"));
    assert!(message(mac("00:00:00:00:00:00")).contains("all-zero"));
    assert!(message(mac("02:00")).contains("aa:bb:cc:dd:ee:ff"));
}

#[test]
fn limits_are_told_apart_and_fields_named() {
    assert_eq!(backends_per_vip(MAX_BACKENDS_PER_VIP), Ok(()));
    let error = backends_per_vip(MAX_BACKENDS_PER_VIP + 1).unwrap_err();
    assert!(error.is_limit());
    assert!(!weight(-1).unwrap_err().is_limit());
    assert_eq!(
        weight(-1).unwrap_err().at("backends[1].weight").to_string(),
        "backends[1].weight: -1 is out of range 0..=10000"
    );
}
