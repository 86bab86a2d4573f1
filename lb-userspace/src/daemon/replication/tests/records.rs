//! Flow records: an entry as a record a peer understands and back with
//! the receiver's own ids, and which entries each topology streams.

use super::*;

#[test]
fn a_record_maps_to_the_receivers_own_backend_id() {
    // Two nodes that allocated ids differently: the receiver has an
    // extra backend first, so the shared backend has another id.
    let sender = balancer(&["198.18.0.12"]);
    let receiver = balancer(&["198.18.0.11", "198.18.0.12"]);

    let (dst, family) = addr_words("198.18.0.100".parse().unwrap());
    let (src, _) = addr_words("198.18.0.10".parse().unwrap());
    let key = FlowKey {
        src,
        dst,
        sport: 40000u16.to_be(),
        dport: 80u16.to_be(),
        proto: IPPROTO_TCP,
        family,
        _pad: 0,
    };
    let names = backend_names(&sender);
    let (sender_id, (_, _, generation)) = names.iter().next().map(|(k, v)| (*k, *v)).unwrap();
    let entry = FlowEntry {
        backend_id: sender_id,
        backend_generation: generation,
        last_seen_ns: 1_000_000_000,
        flags: 0,
        hash: 0,
    };
    let record = record(&key, &entry, &names, 1_500_000_000).unwrap();
    assert_eq!(record.backend, "198.18.0.12".parse::<IpAddr>().unwrap());
    assert_eq!(
        (record.client_port, record.vip_port, record.age_ms),
        (40000, 80, 500)
    );

    let (installed_key, installed) = entry_for(&record, &receiver, 2_000_000_000).unwrap();
    assert_eq!(installed_key, key);
    let expected = &receiver.vips().values().next().unwrap().backends[&record.backend];
    assert_eq!(
        (installed.backend_id, installed.backend_generation),
        (expected.id, expected.generation)
    );
    assert_ne!(
        installed.backend_id, sender_id,
        "ids differ between the nodes"
    );
    assert_eq!(installed.last_seen_ns, 1_500_000_000);

    let mut unknown = record;
    unknown.backend = "198.18.0.99".parse().unwrap();
    assert!(entry_for(&unknown, &receiver, 0).is_none());

    // The ACL mark is this node's: only the state marks travel, and
    // only they are taken from a record.
    let marked = FlowEntry {
        flags: lb_common::consts::FLOW_F_FIN | lb_common::guard::acl_mark(7),
        ..entry
    };
    let sent = super::record(&key, &marked, &names, 1_500_000_000).unwrap();
    assert_eq!(u32::from(sent.flags), lb_common::consts::FLOW_F_FIN);
    let forged = FlowRecord {
        flags: 0xff,
        ..sent
    };
    let (_, installed) = entry_for(&forged, &receiver, 2_000_000_000).unwrap();
    assert_eq!(installed.flags, FLOW_F_STATE);

    // A handshake (its SYN in the table, no ACK yet) is not sent.
    let half_open = FlowEntry {
        flags: FLOW_F_HALF_OPEN,
        ..entry
    };
    assert!(super::record(&key, &half_open, &names, 1_500_000_000).is_none());
}

#[test]
fn a_full_mesh_streams_its_own_flows_not_its_peers_copies() {
    let recent = Scan::Recent {
        since: 5_000_000_000,
    };
    let copy = mark_replica(6_000_000_000);
    let own = 6_000_000_001;
    let old = 4_000_000_000;
    assert!(!is_replica(own));
    let mesh = |scan, t| sends(Topology::FullMesh, scan, t);
    assert!(mesh(recent, own) && !mesh(recent, copy) && !mesh(recent, old));
    assert!(mesh(Scan::Periodic, own) && mesh(Scan::Periodic, old));
    assert!(!mesh(Scan::Periodic, copy), "peers have it from its node");
    assert!(mesh(Scan::Session, copy), "a new peer learns every flow");
    // A VRRP master sends whatever is recent, and everything in a dump.
    let pair = |scan, t| sends(Topology::VrrpPair, scan, t);
    assert!(pair(recent, copy) && pair(recent, own) && !pair(recent, old));
    assert!(pair(Scan::Periodic, copy) && pair(Scan::Periodic, old));
}

#[test]
fn topologies_differ_in_who_sends() {
    for master in [true, false] {
        assert!(Topology::FullMesh.sends(master));
        assert_eq!(Topology::VrrpPair.sends(master), master);
    }
}
