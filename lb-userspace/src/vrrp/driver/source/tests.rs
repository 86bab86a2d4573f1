//! The choice and the checks of the advert source, on the interface's
//! addresses as netlink lists them.

use std::time::{Duration, Instant};

use super::{
    check::{check_source, SourceCheck},
    eligibility::{may_send_from, pick_source, waits_for_dad},
    follow::SOURCE_RECHECK_MIN,
    no_source::no_source_message,
    *,
};
use crate::vrrp::driver::tests::{ip, on_interface};
use crate::{
    config::{Config, VrrpConfig},
    netlink::InterfaceAddress,
    vrrp::Family,
};

/// The IPv4 primary renumbered (new added, old deleted: the new one,
/// secondary until then, promoted): adverts move to it. While the old
/// one is there it is kept, even beside another primary.
#[test]
fn the_source_follows_a_renumbered_ipv4_primary() {
    let vips = [ip("198.18.0.100")];
    let before = [
        on_interface("198.18.0.2", 24, false),
        on_interface("198.18.0.50", 24, true),
        on_interface("198.18.0.100", 32, false),
    ];
    assert_eq!(
        pick_source(&before, SourceKind::V4Primary, &vips),
        Some(ip("198.18.0.2"))
    );
    assert_eq!(
        check_source(ip("198.18.0.2"), &before, SourceKind::V4Primary, &vips),
        SourceCheck::Keep
    );
    let after = [
        on_interface("198.18.0.50", 24, false),
        on_interface("198.18.0.100", 32, false),
    ];
    assert_eq!(
        check_source(ip("198.18.0.2"), &after, SourceKind::V4Primary, &vips),
        SourceCheck::Switch(ip("198.18.0.50"))
    );
    // Another subnet's primary came first: the current one stays.
    let more = [
        on_interface("10.0.0.1", 24, false),
        on_interface("198.18.0.2", 24, false),
    ];
    assert_eq!(
        check_source(ip("198.18.0.2"), &more, SourceKind::V4Primary, &vips),
        SourceCheck::Keep
    );
    // Only a VIP and a secondary left: nothing to send from.
    let none = [
        on_interface("198.18.0.100", 32, false),
        on_interface("198.18.0.51", 24, true),
    ];
    assert_eq!(
        check_source(ip("198.18.0.2"), &none, SourceKind::V4Primary, &vips),
        SourceCheck::Gone
    );
}

/// Two IPv4 instances on eth0, the node's address re-added after
/// instance 51's VIP (a /32, which the kernel lists as primary):
/// instance 52 sends from the node's address, never from 51's VIP (nor
/// from a balanced VIP put on the interface), at start and at every
/// check.
#[test]
fn no_instance_sends_from_another_instance_vip() {
    let text = "interface = \"eth0\"\n\
        [[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
        [[vip]]\naddress = \"198.18.0.200\"\nport = 80\n\
        [[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.100\"]\n\
        [[vrrp]]\nvrid = 52\naddresses = [\"198.18.0.101\"]\n";
    let config = Config::from_toml_str(text, "lbd.toml").expect("valid config");
    let never = never_sources(&config);
    assert_eq!(
        never,
        [ip("198.18.0.100"), ip("198.18.0.101"), ip("198.18.0.200")]
    );
    let present = [
        on_interface("198.18.0.200", 32, false),
        on_interface("198.18.0.100", 32, false),
        on_interface("198.18.0.101", 32, false),
        on_interface("198.18.0.2", 24, false),
    ];
    assert_eq!(
        pick_source(&present, SourceKind::V4Primary, &never),
        Some(ip("198.18.0.2"))
    );
    // Picked from 51's VIP (by an lbd that knew only its own), the
    // next check moves off it.
    assert_eq!(
        check_source(ip("198.18.0.100"), &present, SourceKind::V4Primary, &never),
        SourceCheck::Switch(ip("198.18.0.2"))
    );
    let only_vips = &present[..3];
    assert_eq!(pick_source(only_vips, SourceKind::V4Primary, &never), None);
}

/// A new MAC (link down, `ip link set address`, up) brings a new
/// EUI-64 link-local: adverts move to it; a global address never
/// becomes the source; while the link is down there is none.
#[test]
fn the_source_follows_a_new_ipv6_link_local() {
    let vips = [ip("2001:2::100")];
    let old = ip("fe80::a8c1:abff:fe00:2");
    let new = "fe80::a8c1:abff:fe00:99";
    let present = [
        on_interface("2001:2::2", 64, false),
        on_interface(new, 64, false),
        on_interface("2001:2::100", 128, false),
    ];
    assert_eq!(
        check_source(old, &present, SourceKind::V6LinkLocal, &vips),
        SourceCheck::Switch(ip(new))
    );
    assert_eq!(
        check_source(ip(new), &present, SourceKind::V6LinkLocal, &vips),
        SourceCheck::Keep
    );
    let down = [on_interface("2001:2::2", 64, false)];
    assert_eq!(
        check_source(old, &down, SourceKind::V6LinkLocal, &vips),
        SourceCheck::Gone
    );
}

/// An interface address in `state`.
fn in_state(
    address: &str,
    prefix_len: u8,
    state: crate::netlink::AddressState,
) -> InterfaceAddress {
    InterfaceAddress {
        state,
        ..on_interface(address, prefix_len, false)
    }
}

fn dad_failed() -> crate::netlink::AddressState {
    crate::netlink::AddressState {
        dad_failed: true,
        ..Default::default()
    }
}

fn tentative() -> crate::netlink::AddressState {
    crate::netlink::AddressState {
        tentative: true,
        ..Default::default()
    }
}

fn deprecated() -> crate::netlink::AddressState {
    crate::netlink::AddressState {
        deprecated: true,
        ..Default::default()
    }
}

/// An address whose duplicate address detection failed belongs to
/// another host: never an advert source, IPv4 or IPv6, at start or
/// at a check (the current one failing it moves off it).
#[test]
fn a_dad_failed_address_is_never_a_source() {
    let present = [
        in_state("fe80::1", 64, dad_failed()),
        on_interface("fe80::2", 64, false),
    ];
    let kind = SourceKind::V6LinkLocal;
    assert_eq!(pick_source(&present, kind, &[]), Some(ip("fe80::2")));
    assert_eq!(
        check_source(ip("fe80::1"), &present, kind, &[]),
        SourceCheck::Switch(ip("fe80::2"))
    );
    assert!(!may_send_from(&present[0], kind, &[]));
    // Not even as the fallback a tentative link-local is.
    assert_eq!(pick_source(&present[..1], kind, &[]), None);
    let v4 = [
        in_state("198.18.0.2", 24, dad_failed()),
        on_interface("198.18.0.3", 24, false),
    ];
    let kind = SourceKind::V4Primary;
    assert_eq!(pick_source(&v4, kind, &[]), Some(ip("198.18.0.3")));
    assert_eq!(
        check_source(ip("198.18.0.2"), &v4, kind, &[]),
        SourceCheck::Switch(ip("198.18.0.3"))
    );
    let global = [
        in_state("2001:2::2", 64, dad_failed()),
        on_interface("2001:2::3", 64, false),
    ];
    let kind = SourceKind::V6Global;
    assert_eq!(pick_source(&global, kind, &[]), Some(ip("2001:2::3")));
    assert_eq!(pick_source(&global[..1], kind, &[]), None);
    assert_eq!(
        check_source(ip("2001:2::2"), &global[..1], kind, &[]),
        SourceCheck::Gone
    );
}

/// After an admin down/up or a MAC change the link-local address is
/// tentative for 1-2 s: it stays the source (kept, or picked when it is
/// the only link-local: the socket sends from it, see
/// `VrrpSocket::open`), so the master is not silenced into a
/// failover; a settled one is preferred when there is one.
#[test]
fn a_tentative_link_local_stays_the_source() {
    let kind = SourceKind::V6LinkLocal;
    let old = ip("fe80::a8c1:abff:fe00:2");
    let again = [in_state("fe80::a8c1:abff:fe00:2", 64, tentative())];
    assert_eq!(check_source(old, &again, kind, &[]), SourceCheck::Keep);
    let new_mac = [
        on_interface("2001:2::2", 64, false),
        in_state("fe80::a8c1:abff:fe00:99", 64, tentative()),
    ];
    assert_eq!(
        check_source(old, &new_mac, kind, &[]),
        SourceCheck::Switch(ip("fe80::a8c1:abff:fe00:99"))
    );
    assert_eq!(
        pick_source(&new_mac, kind, &[]),
        Some(ip("fe80::a8c1:abff:fe00:99"))
    );
    assert!(!may_send_from(&new_mac[1], kind, &[]));
    assert!(!waits_for_dad(&new_mac, kind, &[]));
    let both = [
        in_state("fe80::1", 64, tentative()),
        on_interface("fe80::2", 64, false),
    ];
    assert_eq!(pick_source(&both, kind, &[]), Some(ip("fe80::2")));
}

/// An IPv6 instance with unicast peers sends from a global address of
/// the interface: a link-local source is never routed (peers behind
/// routers would hear nothing) and a keepalived peer takes adverts
/// only from the address its unicast_peer list names. Never a VIP, a
/// NAT or [[vrrp]] address, nor a tentative, DAD-failed, deprecated or
/// temporary one.
#[test]
fn ipv6_unicast_adverts_go_from_a_global_address() {
    let text = "interface = \"eth0\"\n\
        [nat]\nsource_ipv6 = \"2001:2::50\"\n\
        [[vip]]\naddress = \"2001:2::100\"\nport = 80\nforwarding = \"nat\"\n\
        [[vip.backend]]\naddress = \"2001:3::11\"\nport = 8080\n\
        [[vrrp]]\nvrid = 51\nunicast_peers = [\"2001:2::12\"]\nunicast_peer_hops = 2\n";
    let config = Config::from_toml_str(text, "lbd.toml").expect("valid config");
    let instance = &config.vrrp[0];
    let kind = SourceKind::of(Family::V6, &instance.unicast_peers);
    assert_eq!(kind, SourceKind::V6Global);
    let never = never_sources(&config);
    assert!(
        never.contains(&ip("2001:2::50")),
        "the NAT address: {never:?}"
    );
    assert!(never.contains(&ip("2001:2::100")), "the VIP: {never:?}");
    let present = [
        on_interface("2001:2::100", 128, false),
        on_interface("2001:2::50", 128, false),
        in_state("2001:2::7", 64, tentative()),
        in_state("2001:2::8", 64, dad_failed()),
        in_state("2001:2::9", 64, deprecated()),
        on_interface("2001:2::a", 64, true), // temporary
        on_interface("fe80::2", 64, false),
        on_interface("2001:2::2", 64, false),
    ];
    assert_eq!(pick_source(&present, kind, &never), Some(ip("2001:2::2")));
    for passed in &present[..7] {
        assert!(!may_send_from(passed, kind, &never), "{passed:?}");
    }
    // Without one, none: not the link-local.
    assert_eq!(pick_source(&present[..7], kind, &never), None);
    let message = no_source_message("eth0", &present[..7], kind, &never);
    for said in [
        "interface eth0 has no global IPv6 address",
        "2001:2::100 is a VIP, NAT or [[vrrp]] address",
        "2001:2::50 is a VIP, NAT or [[vrrp]] address",
        "2001:2::7 is tentative",
        "2001:2::8 is DAD-failed",
        "2001:2::9 is deprecated",
        "2001:2::a is temporary",
        "fe80::2 is link-local",
        "unicast_peer",
    ] {
        assert!(message.contains(said), "{said}: {message}");
    }
    // The group (or link-local peers only) keeps the link-local.
    assert_eq!(SourceKind::of(Family::V6, &[]), SourceKind::V6LinkLocal);
    assert_eq!(
        SourceKind::of(Family::V6, &[ip("fe80::12")]),
        SourceKind::V6LinkLocal
    );
    assert_eq!(
        pick_source(&present, SourceKind::V6LinkLocal, &never),
        Some(ip("fe80::2"))
    );
    assert_eq!(
        SourceKind::of(Family::V4, &[ip("198.18.0.3")]),
        SourceKind::V4Primary
    );
}

/// With `unicast_src_ip` adverts go from that address and never
/// another of the interface's, whatever kind it is (an IPv4
/// secondary, a deprecated or temporary IPv6 address): gone, there is
/// no source (the no-source path), back, it is kept again.
#[test]
fn a_unicast_src_ip_is_the_only_source() {
    let text = "interface = \"eth0\"\n\
        [[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
        [[vrrp]]\nvrid = 51\nunicast_peers = [\"198.18.0.3\"]\nunicast_src_ip = \"198.18.0.7\"\n";
    let config = Config::from_toml_str(text, "lbd.toml").expect("valid config");
    let kind = SourceKind::of_instance(Family::V4, &config.vrrp[0]);
    assert_eq!(kind, SourceKind::Fixed(ip("198.18.0.7")));
    let without = VrrpConfig {
        unicast_src_ip: None,
        ..config.vrrp[0].clone()
    };
    assert_eq!(
        SourceKind::of_instance(Family::V4, &without),
        SourceKind::V4Primary
    );
    let never = never_sources(&config);
    let present = [
        on_interface("198.18.0.2", 24, false),
        on_interface("198.18.0.100", 32, false),
        on_interface("198.18.0.7", 24, true), // the second: secondary
    ];
    assert_eq!(pick_source(&present, kind, &never), Some(ip("198.18.0.7")));
    assert_eq!(
        check_source(ip("198.18.0.7"), &present, kind, &never),
        SourceCheck::Keep
    );
    // Gone: not the primary instead, none.
    let gone = &present[..2];
    assert_eq!(pick_source(gone, kind, &never), None);
    assert_eq!(
        check_source(ip("198.18.0.7"), gone, kind, &never),
        SourceCheck::Gone
    );
    let message = no_source_message("eth0", gone, kind, &never);
    assert!(
        message.contains("interface eth0 does not have unicast_src_ip 198.18.0.7"),
        "{message}"
    );
    // Sent from another before (a restart-only change): that one now.
    assert_eq!(
        check_source(ip("198.18.0.2"), &present, kind, &never),
        SourceCheck::Switch(ip("198.18.0.7"))
    );
    // IPv6: a deprecated or temporary unicast_src_ip still is one; a
    // tentative one is kept but not picked, a DAD-failed one is none.
    let v6 = SourceKind::Fixed(ip("2001:2::7"));
    let global = on_interface("2001:2::2", 64, false);
    for state in [deprecated(), Default::default()] {
        let present = [global.clone(), in_state("2001:2::7", 64, state)];
        assert_eq!(pick_source(&present, v6, &[]), Some(ip("2001:2::7")));
    }
    let temporary = [global.clone(), on_interface("2001:2::7", 64, true)];
    assert_eq!(pick_source(&temporary, v6, &[]), Some(ip("2001:2::7")));
    let tentative_one = [global.clone(), in_state("2001:2::7", 64, tentative())];
    assert_eq!(pick_source(&tentative_one, v6, &[]), None);
    assert!(waits_for_dad(&tentative_one, v6, &[]));
    assert_eq!(
        check_source(ip("2001:2::7"), &tentative_one, v6, &[]),
        SourceCheck::Keep
    );
    let failed = [global, in_state("2001:2::7", 64, dad_failed())];
    assert_eq!(
        check_source(ip("2001:2::7"), &failed, v6, &[]),
        SourceCheck::Gone
    );
}

/// The global source is kept as the IPv4 primary is (Keep even beside
/// a newer one, so the address a keepalived peer lists does not flap;
/// kept while only re-running DAD), followed when it goes or is
/// deprecated with a settled one beside it, Gone with none.
#[test]
fn the_global_ipv6_source_is_kept_and_followed() {
    let kind = SourceKind::V6Global;
    let current = ip("2001:2::2");
    let newer = [
        on_interface("2001:2::3", 64, false),
        on_interface("2001:2::2", 64, false),
    ];
    assert_eq!(pick_source(&newer, kind, &[]), Some(ip("2001:2::3")));
    assert_eq!(check_source(current, &newer, kind, &[]), SourceCheck::Keep);
    let redad = [
        in_state("2001:2::2", 64, tentative()),
        on_interface("fe80::2", 64, false),
    ];
    assert_eq!(check_source(current, &redad, kind, &[]), SourceCheck::Keep);
    let renumbered = [
        in_state("2001:2::2", 64, deprecated()),
        on_interface("2001:5::2", 64, false),
    ];
    assert_eq!(
        check_source(current, &renumbered, kind, &[]),
        SourceCheck::Switch(ip("2001:5::2"))
    );
    assert_eq!(
        check_source(current, &renumbered[..1], kind, &[]),
        SourceCheck::Keep,
        "deprecated, but the only one: still sent from"
    );
    let gone = [
        on_interface("fe80::2", 64, false),
        on_interface("2001:5::2", 64, false),
    ];
    assert_eq!(
        check_source(current, &gone, kind, &[]),
        SourceCheck::Switch(ip("2001:5::2"))
    );
    assert_eq!(
        check_source(current, &gone[..1], kind, &[]),
        SourceCheck::Gone
    );
    // Picked from a VIP (a config that changed), moved off it.
    assert_eq!(
        check_source(current, &newer, kind, &[current]),
        SourceCheck::Switch(ip("2001:2::3"))
    );
}

/// At start, a global source only tentative yet (an interface just
/// brought up) is waited for, not refused; none at all is refused at
/// once.
#[test]
fn the_start_waits_for_dad_of_the_only_global_address() {
    let kind = SourceKind::V6Global;
    let fresh = [
        on_interface("fe80::2", 64, false),
        in_state("2001:2::2", 64, tentative()),
    ];
    assert_eq!(pick_source(&fresh, kind, &[]), None);
    assert!(waits_for_dad(&fresh, kind, &[]));
    assert!(!waits_for_dad(&fresh[..1], kind, &[]));
    assert!(!waits_for_dad(&fresh, kind, &[ip("2001:2::2")]), "a VIP");
    let settled = [on_interface("2001:2::2", 64, false)];
    assert!(!waits_for_dad(&settled, kind, &[]));
}

/// The errors Linux gives a send from an address the node no longer
/// has prompt a look at once; others (a full buffer, no permission)
/// do not; and looks prompted by failures are spaced.
#[test]
fn failed_sends_look_at_the_source_again_now_and_then() {
    for errno in [libc::EINVAL, libc::EADDRNOTAVAIL, libc::ENETUNREACH] {
        assert!(source_may_be_stale(&std::io::Error::from_raw_os_error(
            errno
        )));
    }
    for errno in [libc::ENOBUFS, libc::EPERM, libc::EHOSTUNREACH] {
        assert!(!source_may_be_stale(&std::io::Error::from_raw_os_error(
            errno
        )));
    }
    assert!(!source_may_be_stale(&std::io::Error::other("encoding")));
    let t = Instant::now();
    assert!(source_recheck_due(None, t));
    assert!(!source_recheck_due(Some(t), t + Duration::from_millis(10)));
    assert!(source_recheck_due(Some(t), t + SOURCE_RECHECK_MIN));
}
