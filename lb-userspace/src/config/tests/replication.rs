//! Flow replication peers: a pair's both ends in one VRRP instance, and
//! peers that are other nodes, never an address this node holds.
use super::*;

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
