//! Forged or malformed adverts sent from the client (wrong TTL, checksum,
//! VRID, version, addresses; truncated) are counted as ignored and change
//! neither node's state nor who holds the VIP.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    lab::{in_netns, Lab, VIP4},
    support::status_on,
};
use lb_userspace::vrrp::State;
use lb_userspace::vrrp::{Advertisement, ChecksumMode};

use crate::{
    observe::vrrp_state,
    setup::{elected_pair, lab},
};

/// Sends a VRRP packet from the client with this TTL.
fn send_raw(lab: &Lab, payload: Vec<u8>, ttl: u32) {
    let client = lab.client.ipv4;
    in_netns(&lab.client.netns, move || {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(112)),
        )
        .expect("raw socket");
        socket.set_multicast_ttl_v4(ttl).expect("ttl");
        socket.set_multicast_if_v4(&client).expect("interface");
        let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)), 0);
        for _ in 0..5 {
            socket.send_to(&payload, &group.into()).expect("send");
        }
    })
    .expect("netns");
}

#[test]
fn forged_or_malformed_adverts_change_nothing() {
    let mut lab = lab(1);
    let (a, b) = elected_pair(&mut lab, &["b1"], true);

    let client: IpAddr = lab.client.ipv4.into();
    let group: IpAddr = Ipv4Addr::new(224, 0, 0, 18).into();
    let advert = |vrid: u8, addresses: Vec<IpAddr>| Advertisement {
        vrid,
        priority: 254,
        max_adver_int_cs: 10,
        addresses,
    };
    let ours = || vec![IpAddr::V4(VIP4)];
    let valid = advert(51, ours())
        .encode(client, group, ChecksumMode::PseudoHeader)
        .expect("encode");
    let mut bad_checksum = valid.clone();
    bad_checksum[6] ^= 0xff;
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("ttl", valid.clone(), 64),
        ("checksum", bad_checksum, 255),
        (
            "other_vrid",
            advert(52, ours())
                .encode(client, group, ChecksumMode::PseudoHeader)
                .expect("encode"),
            255,
        ),
        ("too_short", valid[..6].to_vec(), 255),
        (
            "address_mismatch",
            advert(51, vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, 200))])
                .encode(client, group, ChecksumMode::PseudoHeader)
                .expect("encode"),
            255,
        ),
    ];
    let mut version3 = valid.clone();
    version3[0] = 0x21; // version 2
    let mut all = cases;
    all.push(("version", version3, 255));
    for (label, payload, ttl) in &all {
        send_raw(&lab, payload.clone(), *ttl);
        // Both nodes count it as ignored once they have read it (10 s
        // leaves room for a loaded machine); the state checks below then
        // see what reading it did.
        let sent = Instant::now();
        for node in [&a, &b] {
            loop {
                let ignored = status_on(&lab, node).vrrp[0].ignored.clone();
                if ignored.get(*label).copied().unwrap_or(0) >= 1 {
                    break;
                }
                assert!(
                    sent.elapsed() < Duration::from_secs(10),
                    "{}: {label} not counted within 10 s: {ignored:?}",
                    node.name
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
        assert_eq!(
            vrrp_state(&lab, &a),
            State::Master,
            "{label} changed the master"
        );
        assert_eq!(
            vrrp_state(&lab, &b),
            State::Backup,
            "{label} changed the backup"
        );
        assert!(lab.holds_vip(&a).expect("ip addr") && !lab.holds_vip(&b).expect("ip addr"));
    }
}
