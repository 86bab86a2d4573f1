//! The receiving side's tests: a record rebuilt with this node's ids and
//! clock, or refused by reason.

use super::*;

#[test]
fn the_backup_rebuilds_both_entries_with_its_own_ids_and_clock() {
    let sender = balancer(&["198.19.2.11"], Mode::Nat);
    // The receiver has another backend and VIP first: other ids.
    let mut receiver = Balancer::new(4);
    let mut other = VipConfig::new(ip("198.18.0.99"), 80, Protocol::Tcp);
    other.forwarding = Mode::Nat;
    let both = [
        DesiredVip::from_config(&other, &|_| None),
        DesiredVip::from_config(
            &{
                let mut v = VipConfig::new(ip(VIP), 80, Protocol::Tcp);
                v.forwarding = Mode::Nat;
                v.nat = Some(nat_source());
                v.backends = ["198.19.2.10", "198.19.2.11"]
                    .iter()
                    .map(|a| BackendConfig {
                        port: Some(8080),
                        ..BackendConfig::new(ip(a))
                    })
                    .collect();
                v
            },
            &|_| None,
        ),
    ];
    receiver.apply(&mut FakeMaps::default(), &both).unwrap();
    let sender_vip = &sender.vips()[&VipId {
        address: ip(VIP),
        port: 80,
        protocol: Protocol::Tcp,
    }];
    let sender_backend = sender_vip.backends[&ip("198.19.2.11")].id;
    let master = flow("198.18.1.10", 40000, 20001, "198.19.2.11", sender_backend);
    let record = nat_records(
        master.into_iter(),
        Scan::Session,
        10_000_000_000,
        SendRule::default(),
    )[0];

    let local_vip = &receiver.vips()[&VipId {
        address: ip(VIP),
        port: 80,
        protocol: Protocol::Tcp,
    }];
    let local_backend = local_vip.backends[&ip("198.19.2.11")].id;
    assert_ne!(
        local_backend, sender_backend,
        "ids differ between the nodes"
    );
    // The backup's clock reads 50 s where the master's read 10 s.
    let [(fk, fe), (rk, re)] = entries_for(&record, &receiver, 50_000_000_000).unwrap();
    let [(mfk, mfe), (mrk, mre)] = master;
    assert_eq!((fk, rk), (mfk, mrk));
    for (got, want) in [(fe, mfe), (re, mre)] {
        assert_eq!(
            (got.src, got.dst, got.sport, got.dport),
            (want.src, want.dst, want.sport, want.dport)
        );
        assert_eq!((got.flags, got.direction), (want.flags, want.direction));
        assert_eq!(got.backend_id, local_backend);
        assert_eq!(u32::from(got.vip_id), local_vip.id);
        assert_eq!((got.ifindex, got.dmac, got.smac), (0, [0; 6], [0; 6]));
    }
    assert_ne!(u32::from(fe.vip_id), sender_vip.id);
    // Same age as on the master: 1 s and 0.5 s before "now".
    assert_eq!(
        (fe.last_seen_ns, re.last_seen_ns),
        (49_000_000_000, 49_500_000_000)
    );
}

#[test]
fn records_the_backup_cannot_place_are_refused_by_reason() {
    let b = balancer(&["198.19.2.11"], Mode::Nat);
    let record = nat_records(
        flow("198.18.1.10", 40000, 20001, "198.19.2.11", 1).into_iter(),
        Scan::Session,
        1,
        SendRule::default(),
    )[0];
    assert!(entries_for(&record, &b, 1).is_ok());
    let with = |f: &dyn Fn(&mut NatFlowRecord)| {
        let mut r = record;
        f(&mut r);
        entries_for(&r, &b, 1).unwrap_err()
    };
    assert_eq!(with(&|r| r.protocol = 1), Unknown::Protocol);
    assert_eq!(with(&|r| r.vip_port = 81), Unknown::Vip);
    assert_eq!(with(&|r| r.backend = ip("198.19.2.12")), Unknown::Backend);
    assert_eq!(with(&|r| r.backend_port = 8081), Unknown::BackendPort);
    assert_eq!(with(&|r| r.reply.key.dport = 1), Unknown::Inconsistent);
    assert_eq!(
        with(&|r| r.forward.key.dst = ip("198.18.0.101")),
        Unknown::Inconsistent
    );
    let dsr = balancer(&["198.19.2.11"], Mode::DsrL2);
    assert_eq!(entries_for(&record, &dsr, 1), Err(Unknown::NotNat));
}
