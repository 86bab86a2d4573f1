//! Client affinity (`affinity = "source"`) in the compiled packet path
//! under BPF_PROG_TEST_RUN, on both entry points (`on_both_hooks!`) and on
//! the bucket table and the kernel LRU alike: every connection of one
//! client goes to one backend, other clients spread, the VIP's other
//! ports with the same backends send the client to the same one, a VIP
//! without affinity spreads one client's connections, a change of
//! affinity moves no established flow, and an ICMP error about an
//! untracked flow follows the client. Each output frame is compared whole
//! with the input re-addressed to the backend's MAC (`packet::forwarded`),
//! the MAC read from the output itself. Needs root.

use std::collections::BTreeSet;

use lb_common::{stats::Counter, Affinity};
use lb_tests::{
    corpus,
    packet::{self, Flow, ACK, SYN},
    testbed::{action, vip4_tcp, vip4_udp, vip6_tcp, Hook, TestBed},
};
use lb_userspace::{
    config::{Protocol, VipConfig},
    conntrack::kind::ConntrackKind,
    dataplane::LoadOptions,
};

/// The designs a pick runs in: the bucket table's `decide` and the
/// kernel map's `untracked` each call it.
const KINDS: [ConntrackKind; 2] = [ConntrackKind::Buckets, ConntrackKind::Lru];

/// Connections per client in the cases.
const CONNECTIONS: u16 = 40;

fn bed(hook: Hook, kind: ConntrackKind, vips: &[VipConfig]) -> TestBed {
    let options = LoadOptions {
        conntrack_kind: kind,
        ..LoadOptions::default()
    };
    TestBed::with_options(vips, hook, 4096, &options).expect("test bed")
}

fn with_affinity(mut vip: VipConfig, affinity: Affinity) -> VipConfig {
    vip.affinity = affinity;
    vip
}

/// `vip` on another port, same backends.
fn on_port(mut vip: VipConfig, port: u16) -> VipConfig {
    vip.port = port;
    vip
}

fn flow(src: &str, vip: &VipConfig, sport: u16) -> Flow {
    Flow {
        src: src.parse().expect("addr"),
        dst: vip.address,
        sport,
        dport: vip.port,
    }
}

/// The MACs of `vip`'s backends.
fn macs(vip: &VipConfig) -> BTreeSet<[u8; 6]> {
    vip.backends
        .iter()
        .map(|b| b.mac.expect("test backends have MACs").0)
        .collect()
}

/// Runs `frame` (of `flow`, to `vip`): forwarded unchanged but for its
/// MACs, to one of `vip`'s backends; returns that backend's MAC.
fn sent_to(bed: &mut TestBed, vip: &VipConfig, frame: &[u8], what: &str) -> [u8; 6] {
    let (verdict, out) = bed.run(frame).expect("test run");
    assert_eq!(verdict, action::TX, "verdict for {what}");
    let mac: [u8; 6] = out[..6].try_into().expect("a frame");
    assert!(macs(vip).contains(&mac), "{what} went to {mac:02x?}");
    assert_eq!(
        out,
        packet::forwarded(frame, mac),
        "output frame for {what}"
    );
    mac
}

/// Opens (SYN, then ACK) the connections of `src` to `vip` from source
/// ports `ports`; returns each one's backend MAC (checked equal for its
/// two packets, and equal to lbd's own account of Maglev's pick).
fn connect(
    bed: &mut TestBed,
    vip: &VipConfig,
    src: &str,
    ports: std::ops::Range<u16>,
) -> Vec<[u8; 6]> {
    ports
        .map(|sport| {
            let flow = flow(src, vip, sport);
            let what = format!("{src}:{sport} to {}:{}", vip.address, vip.port);
            let syn = sent_to(bed, vip, &packet::tcp(&flow, SYN, None, b""), &what);
            let ack = sent_to(bed, vip, &packet::tcp(&flow, ACK, None, b"GET /"), &what);
            assert_eq!(syn, ack, "{what}: the ACK follows its SYN");
            assert_eq!(
                bed.maglev_backend(vip, &flow).expect("pick").1,
                syn,
                "{what}: lbd's account of the pick"
            );
            syn
        })
        .collect()
}

fn distinct(macs: &[[u8; 6]]) -> usize {
    macs.iter().collect::<BTreeSet<_>>().len()
}

fn every_connection_of_a_client_goes_to_one_backend(hook: Hook) {
    for kind in KINDS {
        let web = with_affinity(vip4_tcp(), Affinity::Source);
        let tls = on_port(web.clone(), 443);
        let web6 = with_affinity(vip6_tcp(), Affinity::Source);
        let plain = on_port(vip4_tcp(), 8080);
        // The test bed holds four VIPs.
        let vips = [web.clone(), tls.clone(), web6.clone(), plain.clone()];
        let mut bed = bed(hook, kind, &vips);

        let client = connect(&mut bed, &web, "198.18.1.10", 20_000..20_000 + CONNECTIONS);
        assert_eq!(distinct(&client), 1, "{kind:?}: {client:02x?}");
        // The VIP's other port, same backends and table: the same one.
        let other_port = connect(&mut bed, &tls, "198.18.1.10", 30_000..30_010);
        assert_eq!(other_port, vec![client[0]; 10], "{kind:?}");
        let v6 = connect(
            &mut bed,
            &web6,
            "2001:2::1:10",
            20_000..20_000 + CONNECTIONS,
        );
        assert_eq!(distinct(&v6), 1, "{kind:?}: {v6:02x?}");

        // Other clients spread over the backends.
        let clients: Vec<[u8; 6]> = (1..=CONNECTIONS)
            .flat_map(|host| connect(&mut bed, &web, &format!("198.18.2.{host}"), 20_000..20_001))
            .collect();
        assert_eq!(distinct(&clients), 3, "{kind:?}: {clients:02x?}");
        let clients6: Vec<[u8; 6]> = (1..=CONNECTIONS)
            .flat_map(|host| {
                connect(
                    &mut bed,
                    &web6,
                    &format!("2001:2::2:{host:x}"),
                    20_000..20_001,
                )
            })
            .collect();
        assert_eq!(distinct(&clients6), 3, "{kind:?}: {clients6:02x?}");

        // Without affinity, the one client's connections spread.
        let spread = connect(
            &mut bed,
            &plain,
            "198.18.1.10",
            20_000..20_000 + CONNECTIONS,
        );
        assert_eq!(distinct(&spread), 3, "{kind:?}: {spread:02x?}");
    }
}

fn every_udp_flow_of_a_client_goes_to_one_backend(hook: Hook) {
    for kind in KINDS {
        let dns = with_affinity(vip4_udp(), Affinity::Source);
        let mut bed = bed(hook, kind, std::slice::from_ref(&dns));
        let mut query = |src: &str, sport: u16| {
            let flow = flow(src, &dns, sport);
            let frame = packet::udp(&flow, None, b"query");
            let mac = sent_to(&mut bed, &dns, &frame, "a query");
            assert_eq!(sent_to(&mut bed, &dns, &frame, "a query again"), mac);
            mac
        };
        let client: Vec<[u8; 6]> = (5_000..5_000 + CONNECTIONS)
            .map(|sport| query("198.18.1.10", sport))
            .collect();
        assert_eq!(distinct(&client), 1, "{kind:?}: {client:02x?}");
        let clients: Vec<[u8; 6]> = (1..=CONNECTIONS)
            .map(|host| query(&format!("198.18.2.{host}"), 5_000))
            .collect();
        assert_eq!(distinct(&clients), 3, "{kind:?}: {clients:02x?}");
    }
}

fn a_change_of_affinity_moves_new_connections_and_no_established_one(hook: Hook) {
    for kind in KINDS {
        let vip = vip4_tcp();
        let sticky = with_affinity(vip.clone(), Affinity::Source);
        let mut bed = bed(hook, kind, std::slice::from_ref(&vip));
        let before = connect(&mut bed, &vip, "198.18.1.10", 20_000..20_000 + CONNECTIONS);
        assert_eq!(distinct(&before), 3, "{kind:?}: {before:02x?}");

        bed.apply(std::slice::from_ref(&sticky))
            .expect("source affinity");
        // Established: each on its backend still, none hashed again.
        for (sport, mac) in (20_000..).zip(&before) {
            let flow = flow("198.18.1.10", &vip, sport);
            let frame = packet::tcp(&flow, ACK, None, b"more");
            assert_eq!(
                sent_to(&mut bed, &vip, &frame, "an established flow"),
                *mac,
                "{kind:?}: {sport}"
            );
        }
        assert_eq!(
            bed.counter(Counter::ConntrackRehash).expect("counter"),
            0,
            "{kind:?}"
        );
        // New ones: all to one backend.
        let after = connect(
            &mut bed,
            &sticky,
            "198.18.1.10",
            21_000..21_000 + CONNECTIONS,
        );
        assert_eq!(distinct(&after), 1, "{kind:?}: {after:02x?}");

        // And back: new ones spread again.
        bed.apply(std::slice::from_ref(&vip))
            .expect("connection affinity");
        let again = connect(&mut bed, &vip, "198.18.1.10", 22_000..22_000 + CONNECTIONS);
        assert_eq!(distinct(&again), 3, "{kind:?}: {again:02x?}");
    }
}

fn an_icmp_error_about_an_untracked_flow_goes_to_the_clients_backend(hook: Hook) {
    for kind in KINDS {
        let vip = with_affinity(vip4_tcp(), Affinity::Source);
        let mut bed = bed(hook, kind, std::slice::from_ref(&vip));
        let tracked = corpus::vip_flow(Protocol::Tcp, false, 23_000);
        let client = tracked.client.ip().to_string();
        let mac = connect(&mut bed, &vip, &client, 23_000..23_001)[0];
        // Errors quoting flows of the client it never saw: each to the
        // client's backend, no entry made.
        let new_flows = bed.counter(Counter::ConntrackNew).expect("counter");
        for sport in 24_000..24_000 + CONNECTIONS {
            let untracked = corpus::vip_flow(Protocol::Tcp, false, sport);
            let frame = corpus::frag_needed(&untracked);
            let (verdict, out) = bed.run(&frame).expect("test run");
            assert_eq!(verdict, action::TX, "{kind:?}: {sport}");
            assert_eq!(out, packet::forwarded(&frame, mac), "{kind:?}: {sport}");
        }
        assert_eq!(
            bed.counter(Counter::ForwardedIcmpError).expect("counter"),
            u64::from(CONNECTIONS),
            "{kind:?}"
        );
        assert_eq!(
            bed.counter(Counter::ConntrackNew).expect("counter"),
            new_flows,
            "{kind:?}"
        );
    }
}

lb_tests::on_both_hooks!(
    every_connection_of_a_client_goes_to_one_backend,
    every_udp_flow_of_a_client_goes_to_one_backend,
    a_change_of_affinity_moves_new_connections_and_no_established_one,
    an_icmp_error_about_an_untracked_flow_goes_to_the_clients_backend,
);
