//! Each tunnel mode's wrap, family by family: a new flow and a tracked
//! packet of it leave wrapped for the same backend, counted; GUE's inner
//! UDP without a checksum, or shorter than its IP packet.

use lb_common::{
    consts::AF_INET,
    hash::flow_hash,
    stats::Counter,
    tunnel::{self},
    FlowEntry, FlowKey, Mode,
};
use lb_tests::{
    natbed::{client_flow, frame, neighbour_mac, OUT_MAC},
    packet::{self, fix_ipv4_checksum, ACK, SYN},
    testbed::{flow_key, Hook, VIP4, VIP6},
    tunnelbed::TunnelBed,
};
use lb_userspace::config::{Protocol, VipConfig};

use crate::{
    counter, find,
    frames::{check_wrapped, outer_source, Wrapped},
    in_netns, vips, GUE, GUE_4IN6, GUE_UDP, IPIP, IPIP_4IN6,
};

/// A new flow, then a tracked packet of it: both wrapped for the flow's
/// backend, counted.
pub(crate) fn new_then_tracked(
    bed: &mut TunnelBed,
    vips: &[VipConfig],
    vip: &str,
    port: u16,
    protocol: Protocol,
) {
    let config = find(vips, vip, port, protocol).clone();
    let gue = config.forwarding == Mode::Gue;
    let flow = client_flow(vip, port, 40_001);
    let key = flow_key(&flow, protocol);
    let mut first = frame(&flow, protocol, SYN, b"hello through the tunnel");
    // A TOS / traffic class to copy.
    if key.family == AF_INET {
        first[15] = 0xb8;
        fix_ipv4_checksum(&mut first);
    } else {
        first[14] = 0x6b;
        first[15] = 0x80;
    }
    let (verdict, out) = bed.run_on(bed.nat.in_if, &first).expect("test run");
    assert_eq!(verdict, bed.verdicts().redirect, "new flow verdict");
    let tcp = protocol == Protocol::Tcp;
    // A TCP SYN is held half-open (a handshake), a UDP datagram tracked at once.
    let entry = if tcp {
        bed.nat.bed.handshake(&key)
    } else {
        bed.nat.bed.dataplane.flow(&key).expect("read")
    }
    .expect("tracked");
    assert_eq!(
        entry.hash,
        flow_hash(&key),
        "the entry keeps the pick's hash"
    );
    let backend = bed
        .backend_address(&config, entry.backend_id)
        .expect("backend");
    let backend_v4 = backend.is_ipv4();
    let src = outer_source(&bed.config, &key, backend_v4);
    let hash = flow_hash(&key);
    let want = |inner: &'static [u8]| -> Wrapped<'static> {
        Wrapped {
            dmac: neighbour_mac(&backend.to_string()).expect("a backend neighbour"),
            src,
            dst: backend,
            gue: gue.then(|| {
                (
                    u16::from_be(tunnel::gue_source_port(hash)),
                    tunnel::GUE_PORT_DEFAULT,
                )
            }),
            zero_csum: false,
            inner,
            flow_label: hash & 0xf_ffff,
        }
    };
    let inner: &'static [u8] = Box::leak(first[14..].to_vec().into_boxed_slice());
    check_wrapped(&out, &want(inner));
    assert_eq!(counter(bed, Counter::ConntrackNew), u64::from(!tcp));
    assert_eq!(counter(bed, Counter::ConntrackHalfOpenNew), u64::from(tcp));
    assert_eq!(counter(bed, Counter::TunnelEncap), 1);
    assert_eq!(counter(bed, Counter::Forwarded), 1);
    let hops = bed.hops(entry.backend_id).expect("hops");
    assert!(
        hops.iter()
            .any(|h| h.ifindex == bed.nat.out_if && h.mtu == 1500 && h.smac == OUT_MAC),
        "the next hop is cached: {hops:?}"
    );

    let second = frame(&flow, protocol, ACK, b"more");
    let (verdict, out) = bed.run_on(bed.nat.in_if, &second).expect("test run");
    assert_eq!(verdict, bed.verdicts().redirect);
    let inner: &'static [u8] = Box::leak(second[14..].to_vec().into_boxed_slice());
    check_wrapped(&out, &want(inner));
    if tcp {
        // The ACK brings the flow into the connection table.
        assert_eq!(counter(bed, Counter::ConntrackHalfOpenPromoted), 1);
        assert_eq!(counter(bed, Counter::ConntrackNew), 1);
    }
    assert_eq!(counter(bed, Counter::TunnelEncap), 2);
    assert_eq!(counter(bed, Counter::Forwarded), 2);
    let id = bed.nat.bed.balancer.vips()[&lb_userspace::reconcile::VipId::of(&config)].id;
    let traffic = bed.nat.bed.dataplane.vip_traffic(id).expect("stats");
    assert_eq!((traffic.packets, traffic.new_flows), (2, 1));
    assert_eq!(
        traffic.bytes,
        (first.len() + second.len()) as u64,
        "traffic counts the frames as they came"
    );

    // An entry without the hash (as lbd's replication writes them): the
    // packet hashes the flow itself, to the same outer header.
    let unhashed = FlowEntry { hash: 0, ..entry };
    bed.nat
        .bed
        .dataplane
        .install_flow(&key, &unhashed)
        .expect("install");
    let third = frame(&flow, protocol, ACK, b"again");
    let (verdict, out) = bed.run_on(bed.nat.in_if, &third).expect("test run");
    assert_eq!(verdict, bed.verdicts().redirect);
    let inner: &'static [u8] = Box::leak(third[14..].to_vec().into_boxed_slice());
    check_wrapped(&out, &want(inner));
    assert_eq!(counter(bed, Counter::TunnelEncap), 3);
}

fn ipip_v4(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP4, IPIP, Protocol::Tcp)
    });
}

fn ipip_v6(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP6, IPIP, Protocol::Tcp)
    });
}

fn ipip_4in6(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP4, IPIP_4IN6, Protocol::Tcp)
    });
}

fn gue_v4_tcp(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP4, GUE, Protocol::Tcp)
    });
}

fn gue_v4_udp(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP4, GUE_UDP, Protocol::Udp)
    });
}

fn gue_v6_tcp(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP6, GUE, Protocol::Tcp)
    });
}

fn gue_v6_udp(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP6, GUE_UDP, Protocol::Udp)
    });
}

fn gue_4in6_tcp(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP4, GUE_4IN6, Protocol::Tcp)
    });
}

fn gue_4in6_udp(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP4, GUE_4IN6, Protocol::Udp)
    });
}

/// GUE over IPv6 whose inner IPv4 UDP datagram has no checksum: the outer
/// one is 0 (RFC 6936), the rest as usual.
fn gue_4in6_udp_without_checksum_sends_zero(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        without_checksum_sends_zero(bed, vips, VIP4, GUE_4IN6)
    });
}

/// The same for an inner IPv6 UDP datagram with checksum 0 (as a UDP
/// tunnel over IPv6 sends them, RFC 6936): the inner segment then gives
/// no sum to complete the outer checksum from.
fn gue_v6_udp_without_checksum_sends_zero(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        without_checksum_sends_zero(bed, vips, VIP6, GUE_UDP)
    });
}

/// A client's UDP datagram without a checksum to the GUE VIP `vip`:`port`
/// (its backends IPv6) leaves wrapped with an outer checksum of 0.
fn without_checksum_sends_zero(bed: &mut TunnelBed, vips: &[VipConfig], vip: &str, port: u16) {
    let flow = client_flow(vip, port, 40_002);
    let mut first = packet::udp(&flow, None, b"no checksum");
    let key = flow_key(&flow, Protocol::Udp);
    let csum = 14 + if key.family == AF_INET { 20 } else { 40 } + 6;
    first[csum..csum + 2].copy_from_slice(&[0, 0]);
    wrapped_with_zero_checksum(bed, vips, vip, port, &key, &first);
}

/// GUE over IPv6 whose inner IPv4 UDP datagram is shorter than its IP
/// payload (bytes after it, which the parser accepts): the bytes from the
/// inner UDP header to the IP end no longer sum to the complement of its
/// pseudo-header's sum, so the outer checksum is 0 (RFC 6936), not one a
/// receiver (Linux fou) would drop.
fn gue_4in6_udp_shorter_than_its_packet_sends_zero(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        shorter_than_its_packet_sends_zero(bed, vips, VIP4, GUE_4IN6)
    });
}

/// The same for an inner IPv6 UDP datagram shorter than its payload.
fn gue_v6_udp_shorter_than_its_packet_sends_zero(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        shorter_than_its_packet_sends_zero(bed, vips, VIP6, GUE_UDP)
    });
}

/// A client's UDP datagram (its own checksum valid) with `TRAILER` bytes
/// after it inside its IP packet, to the GUE VIP `vip`:`port` (its
/// backends IPv6): wrapped whole, outer checksum 0.
fn shorter_than_its_packet_sends_zero(
    bed: &mut TunnelBed,
    vips: &[VipConfig],
    vip: &str,
    port: u16,
) {
    const TRAILER: &[u8] = b"past the UDP length";
    let flow = client_flow(vip, port, 40_003);
    let mut first = packet::udp(&flow, None, b"short of its packet");
    let key = flow_key(&flow, Protocol::Udp);
    let v4 = key.family == AF_INET;
    let l4 = 14 + if v4 { 20 } else { 40 };
    let udp_len = usize::from(u16::from_be_bytes([first[l4 + 4], first[l4 + 5]]));
    assert_eq!(udp_len, first.len() - l4);
    first.extend_from_slice(TRAILER);
    // The IP length covers the trailer; the UDP length does not.
    if v4 {
        let total = u16::try_from(first.len() - 14).expect("length");
        first[16..18].copy_from_slice(&total.to_be_bytes());
        fix_ipv4_checksum(&mut first);
    } else {
        let payload = u16::try_from(first.len() - l4).expect("length");
        first[18..20].copy_from_slice(&payload.to_be_bytes());
    }
    assert_ne!(&first[l4 + 6..l4 + 8], &[0, 0], "the inner checksum is set");
    wrapped_with_zero_checksum(bed, vips, vip, port, &key, &first);
}

/// Runs the client's UDP datagram `first` (flow `key`) to the GUE VIP
/// `vip`:`port` (its backends IPv6): it leaves wrapped whole to the
/// backend its flow is tracked to, with an outer UDP checksum of 0.
fn wrapped_with_zero_checksum(
    bed: &mut TunnelBed,
    vips: &[VipConfig],
    vip: &str,
    port: u16,
    key: &FlowKey,
    first: &[u8],
) {
    let (verdict, out) = bed.run_on(bed.nat.in_if, first).expect("test run");
    assert_eq!(verdict, bed.verdicts().redirect);
    let config = find(vips, vip, port, Protocol::Udp);
    let entry = bed
        .nat
        .bed
        .dataplane
        .flow(key)
        .expect("read")
        .expect("tracked");
    let backend = bed
        .backend_address(config, entry.backend_id)
        .expect("backend");
    let hash = flow_hash(key);
    check_wrapped(
        &out,
        &Wrapped {
            dmac: neighbour_mac(&backend.to_string()).expect("neighbour"),
            src: outer_source(&bed.config, key, false),
            dst: backend,
            gue: Some((
                u16::from_be(tunnel::gue_source_port(hash)),
                tunnel::GUE_PORT_DEFAULT,
            )),
            zero_csum: true,
            inner: &first[14..],
            flow_label: hash & 0xf_ffff,
        },
    );
}

lb_tests::on_both_hooks!(
    ipip_v4,
    ipip_v6,
    ipip_4in6,
    gue_v4_tcp,
    gue_v4_udp,
    gue_v6_tcp,
    gue_v6_udp,
    gue_4in6_tcp,
    gue_4in6_udp,
    gue_4in6_udp_without_checksum_sends_zero,
    gue_v6_udp_without_checksum_sends_zero,
    gue_4in6_udp_shorter_than_its_packet_sends_zero,
    gue_v6_udp_shorter_than_its_packet_sends_zero,
);
