//! Client affinity (`affinity = "source"`) on NAT VIPs: every new
//! connection of one client goes to one backend, many clients reach every
//! backend, IPv4 and IPv6; a NAT VIP without affinity spreads the one
//! client's connections. The backend is read from each translated frame
//! (etherparse: its destination address), which the flow's NAT entry and
//! the control plane's account of Maglev's pick must agree with.

use std::{collections::BTreeSet, net::IpAddr};

use etherparse::{NetHeaders, PacketHeaders};
use lb_common::Affinity;
use lb_tests::{
    natbed::{
        addr, frame, nat_vip, neighbour_mac, words_to_addr, NatBed, BACKENDS4, BACKENDS6, NAT4,
        NAT6, OUT_MAC,
    },
    packet::{Flow, SYN},
    testbed::{flow_key, Hook, VIP4, VIP6},
};
use lb_userspace::config::{Protocol, VipConfig};

use crate::{
    frames::{check, entries, Expected},
    in_netns, BACKEND_PORT, PORTS,
};

/// New connections per client, and clients, in each case.
const CONNECTIONS: u16 = 40;
/// The port of the VIPs with source affinity.
const STICKY_PORT: u16 = 80;
/// The port of the VIPs without (same backends, same NAT addresses).
const PLAIN_PORT: u16 = 81;
/// The one client of the cases, IPv4 (on the clients' interface).
const CLIENT4: &str = "198.18.0.20";
/// The one client, IPv6.
const CLIENT6: &str = "2001:2::20";

/// A TCP NAT VIP on `address`:`port` over the bed's three backends of
/// its family (on `BACKEND_PORT`), with `affinity`.
fn tcp_vip(address: &str, port: u16, affinity: Affinity) -> VipConfig {
    let (backends, nat) = if address.contains(':') {
        (BACKENDS6, NAT6)
    } else {
        (BACKENDS4, NAT4)
    };
    let backends = backends.map(|a| (a, Some(BACKEND_PORT)));
    let mut vip = nat_vip(address, port, Protocol::Tcp, &backends, nat, PORTS);
    vip.affinity = affinity;
    vip
}

/// The four VIPs of the cases: source affinity on `STICKY_PORT`, none on
/// `PLAIN_PORT`, IPv4 and IPv6.
fn affinity_vips() -> Vec<VipConfig> {
    vec![
        tcp_vip(VIP4, STICKY_PORT, Affinity::Source),
        tcp_vip(VIP6, STICKY_PORT, Affinity::Source),
        tcp_vip(VIP4, PLAIN_PORT, Affinity::Connection),
        tcp_vip(VIP6, PLAIN_PORT, Affinity::Connection),
    ]
}

/// The bed's VIP on `address`:`port`.
fn vip_of(address: &str, port: u16) -> VipConfig {
    affinity_vips()
        .into_iter()
        .find(|v| v.address == addr(address) && v.port == port)
        .expect("a VIP of the cases")
}

/// The destination address of `frame`, as etherparse reads it.
fn destination_of(frame: &[u8]) -> IpAddr {
    let headers = PacketHeaders::from_ethernet_slice(frame).expect("etherparse parses the output");
    match headers.net {
        Some(NetHeaders::Ipv4(ip, _)) => IpAddr::from(ip.destination),
        Some(NetHeaders::Ipv6(ip, _)) => IpAddr::from(ip.destination),
        other => panic!("network headers {other:?}"),
    }
}

/// Opens a connection (its SYN) from `client`:`sport` to `vip`:`port`
/// and returns the backend its translated frame went to: one of the
/// VIP's, the one of the flow's NAT entry and of the control plane's
/// account of Maglev's pick, the whole frame checked against that entry.
fn open(bed: &mut NatBed, client: &str, vip: &str, port: u16, sport: u16) -> IpAddr {
    let flow = Flow {
        src: addr(client),
        dst: addr(vip),
        sport,
        dport: port,
    };
    let what = format!("{client}:{sport} to {vip}:{port}");
    let (verdict, out) = bed
        .run_on(bed.in_if, &frame(&flow, Protocol::Tcp, SYN, b""))
        .expect("test run");
    assert_eq!(verdict, bed.verdicts.redirect, "{what}: verdict");
    let backend = destination_of(&out);
    let (backends, nat) = if vip.contains(':') {
        (BACKENDS6, NAT6)
    } else {
        (BACKENDS4, NAT4)
    };
    assert!(
        backends.iter().any(|b| addr(b) == backend),
        "{what} went to {backend}"
    );
    let key = flow_key(&flow, Protocol::Tcp);
    let (forward, _, _) = entries(bed, &key);
    assert_eq!(
        words_to_addr(forward.dst, key.family),
        backend,
        "{what}: the NAT entry's backend"
    );
    check(
        &out,
        &Expected {
            smac: OUT_MAC,
            dmac: neighbour_mac(&backend.to_string()).expect("a backend's MAC"),
            src: addr(nat),
            dst: backend,
            sport: u16::from_be(forward.sport),
            dport: BACKEND_PORT,
            ttl: 63,
            udp_zero: false,
        },
    );
    let picked = bed
        .bed
        .maglev_backend_id(&vip_of(vip, port), &flow)
        .expect("Maglev's pick");
    assert_eq!(
        forward.backend_id, picked,
        "{what}: the control plane's pick"
    );
    backend
}

/// The backends of `CONNECTIONS` new connections from `client` to
/// `vip`:`port`, from source ports `first`, `first + 1`, ...
fn one_clients_backends(
    bed: &mut NatBed,
    client: &str,
    vip: &str,
    port: u16,
    first: u16,
) -> BTreeSet<IpAddr> {
    (first..first + CONNECTIONS)
        .map(|sport| open(bed, client, vip, port, sport))
        .collect()
}

/// The backends of one new connection from each of `CONNECTIONS` clients
/// (`client(n)`) to `vip`:`STICKY_PORT`.
fn many_clients_backends(
    bed: &mut NatBed,
    vip: &str,
    client: fn(u16) -> String,
) -> BTreeSet<IpAddr> {
    (1..=CONNECTIONS)
        .map(|n| open(bed, &client(n), vip, STICKY_PORT, 40_000))
        .collect()
}

fn every_new_connection_of_one_client_goes_to_one_backend(hook: Hook) {
    in_netns(hook, affinity_vips(), |bed| {
        for (client, vip) in [(CLIENT4, VIP4), (CLIENT6, VIP6)] {
            let backends = one_clients_backends(bed, client, vip, STICKY_PORT, 40_000);
            assert_eq!(backends.len(), 1, "{client} to {vip}: {backends:?}");
        }
    });
}

fn many_clients_reach_every_backend(hook: Hook) {
    in_netns(hook, affinity_vips(), |bed| {
        let v4 = many_clients_backends(bed, VIP4, |n| format!("198.18.0.{}", 100 + n));
        assert_eq!(v4.len(), 3, "{v4:?}");
        let v6 = many_clients_backends(bed, VIP6, |n| format!("2001:2::1:{n:x}"));
        assert_eq!(v6.len(), 3, "{v6:?}");
    });
}

fn without_affinity_one_clients_connections_spread(hook: Hook) {
    in_netns(hook, affinity_vips(), |bed| {
        for (client, vip) in [(CLIENT4, VIP4), (CLIENT6, VIP6)] {
            let backends = one_clients_backends(bed, client, vip, PLAIN_PORT, 41_000);
            assert_eq!(backends.len(), 3, "{client} to {vip}: {backends:?}");
        }
    });
}

lb_tests::on_both_hooks!(
    every_new_connection_of_one_client_goes_to_one_backend,
    many_clients_reach_every_backend,
    without_affinity_one_clients_connections_spread,
);
