//! The `[[vrrp]]` instances: the addresses each moves, their limits,
//! unicast peers, and which instance moves a NAT VIP's NAT address.
use super::*;

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
