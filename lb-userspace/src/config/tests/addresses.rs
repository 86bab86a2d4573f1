//! Which addresses a setting may name: listeners not on moved or announced
//! addresses, socket addresses with ports, NAT addresses that route back,
//! no IPv4-mapped addresses anywhere.
use super::*;

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
