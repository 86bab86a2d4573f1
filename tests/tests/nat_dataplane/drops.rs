//! What the NAT path refuses, and that it refuses before any state is
//! made or lost: segments of no flow, flag combinations no stack sends
//! (either direction), guarded sources, TTL 1, exhausted source ports, a
//! full flow table.

use lb_common::{
    consts::{AF_INET, EVENT_NAT_PORTS_EXHAUSTED, NAT_DIR_FORWARD},
    stats::Counter,
    FlowKey, NatEntry,
};
use lb_tests::{
    natbed::{
        addr, client_flow, nat_vip, words_to_addr, FibNetns, NatBed, BACKENDS4, IN_DEV, NAT4,
        OUT_DEV,
    },
    packet::{self, Flow, Tcp, ACK, SYN},
    testbed::{flow_key, Hook, VIP4, VIP6},
};
use lb_userspace::config::Protocol;

use crate::{counter, frames::entries, in_netns, vips, BACKEND_PORT};

/// A TCP segment other than a SYN with no translation cannot be
/// translated: dropped, nothing inserted.
fn tcp_non_syn_without_a_flow_is_dropped(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        for vip in [VIP4, VIP6] {
            let flow = client_flow(vip, 80, 40_005);
            let frame = packet::tcp(&flow, ACK, None, b"x");
            let (verdict, out) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.drop);
            assert_eq!(out, frame);
        }
        assert_eq!(counter(bed, Counter::DropNatNoFlow), 2);
        assert!(bed.flows().is_empty());
    });
}

/// The guards in NAT mode: a new flow over its source's limit is dropped
/// before it takes a source port, the flows it already has go on; a
/// denied source is dropped before any lookup.
fn guards_drop_before_any_nat_state(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        use lb_userspace::guard::{AclRule, Action, GuardConfig, Limits, RateLimit, Scope};
        let mut config = GuardConfig::default();
        config.limits.insert(
            Scope::Global,
            Limits {
                source: Some(RateLimit::new(1, Some(1), "source").expect("rate")),
                ..Limits::default()
            },
        );
        let denied = client_flow(VIP4, 80, 40_020);
        config.acl.insert(AclRule {
            scope: Scope::Global,
            action: Action::Deny,
            source: format!("{}", denied.src).parse().expect("cidr"),
        });
        let first = client_flow(VIP6, 80, 40_021);
        let mut second = first;
        second.sport = 40_022;
        let mut guard = None;
        bed.bed.set_guard(&mut guard, config).expect("guard");
        let (verdict, _) = bed
            .run_on(bed.in_if, &packet::tcp(&first, SYN, None, b""))
            .expect("test run");
        assert_eq!(verdict, bed.verdicts.redirect, "the first new flow");
        let flows = bed.flows().len();
        let over = packet::tcp(&second, SYN, None, b"");
        let (verdict, out) = bed.run_on(bed.in_if, &over).expect("test run");
        assert_eq!(
            verdict, bed.verdicts.drop,
            "a second new flow, over the limit"
        );
        assert_eq!(out, over);
        assert_eq!(bed.flows().len(), flows, "no translation, no source port");
        assert_eq!(counter(bed, Counter::DropRateLimited), 1);
        for _ in 0..3 {
            let (verdict, _) = bed
                .run_on(bed.in_if, &packet::tcp(&first, ACK, None, b"x"))
                .expect("test run");
            assert_eq!(verdict, bed.verdicts.redirect, "the tracked flow goes on");
        }
        let syn = packet::tcp(&denied, SYN, None, b"");
        let (verdict, _) = bed.run_on(bed.in_if, &syn).expect("test run");
        assert_eq!(verdict, bed.verdicts.drop, "a denied source");
        assert_eq!(counter(bed, Counter::DropAclDenied), 1);
        assert_eq!(counter(bed, Counter::DropRateLimited), 1);
        assert_eq!(bed.flows().len(), flows);
    });
}

/// A packet that would leave with TTL 0 is dropped, both ways, IPv4 and
/// IPv6, before any state is made.
fn ttl_1_is_dropped(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let flow = client_flow(VIP4, 80, 40_006);
        let mut frame = packet::tcp(&flow, SYN, None, b"");
        frame[14 + 8] = 1;
        packet::fix_ipv4_checksum(&mut frame);
        let (verdict, _) = bed.run_on(bed.in_if, &frame).expect("test run");
        assert_eq!(verdict, bed.verdicts.drop);
        let flow6 = client_flow(VIP6, 80, 40_006);
        let mut frame6 = packet::tcp(&flow6, SYN, None, b"");
        frame6[14 + 7] = 1;
        let (verdict, _) = bed.run_on(bed.in_if, &frame6).expect("test run");
        assert_eq!(verdict, bed.verdicts.drop);
        assert_eq!(counter(bed, Counter::DropTtlExceeded), 2);
        assert!(bed.flows().is_empty());
        // A reply with TTL 1.
        bed.run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("syn");
        let (forward, _, _) = entries(bed, &flow_key(&flow, Protocol::Tcp));
        let back = Flow {
            src: words_to_addr(forward.dst, AF_INET),
            dst: addr(NAT4),
            sport: BACKEND_PORT,
            dport: u16::from_be(forward.sport),
        };
        let mut reply = packet::tcp(&back, ACK, None, b"");
        reply[14 + 8] = 1;
        packet::fix_ipv4_checksum(&mut reply);
        let (verdict, _) = bed.run_on(bed.out_if, &reply).expect("test run");
        assert_eq!(verdict, bed.verdicts.drop);
        assert_eq!(counter(bed, Counter::DropTtlExceeded), 3);
    });
}

/// Two source ports: the third concurrent flow to the one backend finds
/// none (dropped, counted, reported); once the reaper frees the entries,
/// new flows get ports again.
fn port_exhaustion_drops_and_recovers(hook: Hook) {
    let vips = vec![nat_vip(
        VIP4,
        80,
        Protocol::Tcp,
        &[(BACKENDS4[0], None)],
        NAT4,
        (30_000, 30_001),
    )];
    in_netns(hook, vips, |bed| {
        for sport in [41_000, 41_001] {
            let flow = client_flow(VIP4, 80, sport);
            let (verdict, _) = bed
                .run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("test run");
            assert_eq!(verdict, bed.verdicts.redirect, "flow {sport}");
        }
        let third = packet::tcp(&client_flow(VIP4, 80, 41_002), SYN, None, b"");
        let (verdict, _) = bed.run_on(bed.in_if, &third).expect("test run");
        assert_eq!(verdict, bed.verdicts.drop);
        assert_eq!(counter(bed, Counter::DropNatPortsExhausted), 1);
        assert_eq!(counter(bed, Counter::NatNew), 2);
        let mut ports: Vec<u16> = bed
            .flows()
            .iter()
            .filter(|(_, e)| e.direction == NAT_DIR_FORWARD)
            .map(|(_, e)| u16::from_be(e.sport))
            .collect();
        ports.sort_unstable();
        assert_eq!(ports, [30_000, 30_001]);
        let events = bed.bed.dataplane.drain_events();
        assert!(
            events.iter().any(|e| e.kind == EVENT_NAT_PORTS_EXHAUSTED),
            "{events:?}"
        );
        bed.clear_flows().expect("reap");
        let (verdict, _) = bed.run_on(bed.in_if, &third).expect("test run");
        assert_eq!(verdict, bed.verdicts.redirect, "after the reaper");
        assert_eq!(counter(bed, Counter::NatNew), 3);
    });
}

/// A full NAT flow table drops new flows (counted), never half of one,
/// and never evicts: with every slot of the table taken (both of any
/// key's buckets full) a SYN is dropped and nothing leaves; with room
/// for the reply entry only, that entry is taken out again; with room for
/// both, the flow opens.
fn a_full_flow_table_drops_new_flows_whole(hook: Hook) {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            const SIZE: u32 = 1024;
            let mut bed =
                NatBed::with_flow_table(hook, &vips(), in_if, out_if, SIZE).expect("test bed");
            // A client whose forward key and reply key (its first port)
            // share no bucket: opened once in the empty table to learn its
            // reply key, then taken out again.
            let (frame, key, reply_key) = (40_014..40_064)
                .find_map(|port| {
                    let flow = client_flow(VIP4, 80, port);
                    let frame = packet::tcp(&flow, SYN, None, b"");
                    let (verdict, _) = bed.run_on(bed.in_if, &frame).expect("test run");
                    assert_eq!(verdict, bed.verdicts.redirect);
                    let key = flow_key(&flow, Protocol::Tcp);
                    let (_, reply_key, _) = entries(&bed, &key);
                    bed.clear_flows().expect("clear");
                    let table = bed.bed.dataplane.nat().table();
                    let (f1, f2) = table.buckets_of(&key);
                    let (r1, _) = table.buckets_of(&reply_key);
                    (r1 != f1 && r1 != f2).then_some((frame, key, reply_key))
                })
                .expect("a client whose keys share no bucket");
            let opened = counter(&bed, Counter::NatNew);
            // Every slot taken by other flows' entries.
            let slots = bed.bed.dataplane.nat().table().slots() as usize;
            let filler = |i: u32| FlowKey {
                src: [
                    u32::from_be_bytes([198, 18, 9, 0]).wrapping_add(i).to_be(),
                    0,
                    0,
                    0,
                ],
                dst: [u32::from_be_bytes([198, 18, 9, 255]).to_be(), 0, 0, 0],
                sport: 1,
                dport: 2,
                proto: 6,
                family: AF_INET,
                _pad: 0,
            };
            for i in 0..1_000_000 {
                if bed.flows().len() == slots {
                    break;
                }
                // A key whose buckets are both full is refused: fine.
                let _ = bed
                    .bed
                    .dataplane
                    .nat_mut()
                    .install_flow(&filler(i), &NatEntry::default());
            }
            assert_eq!(bed.flows().len(), slots, "every slot taken");
            let before = bed.flows();
            // Full: dropped, nothing written, nothing evicted.
            let (verdict, out) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.drop);
            assert_eq!(out, frame, "a dropped frame is not rewritten");
            assert_eq!(counter(&bed, Counter::DropNatTableFull), 1);
            assert_eq!(bed.flows(), before, "nothing evicted, nothing added");
            // Room for the reply entry only (a slot of its first bucket):
            // it goes in, the forward entry finds none, it goes again.
            let free_one_in = |bed: &mut NatBed, bucket: u32| {
                let (held, _) = bed.bed.dataplane.nat().table().held_in(bucket)[0];
                bed.bed
                    .dataplane
                    .nat_mut()
                    .remove_flow(&held)
                    .expect("free");
            };
            let (r1, _) = bed.bed.dataplane.nat().table().buckets_of(&reply_key);
            free_one_in(&mut bed, r1);
            let (verdict, _) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.drop);
            assert_eq!(counter(&bed, Counter::DropNatTableFull), 2);
            assert_eq!(bed.flows().len(), slots - 1, "the reply entry went again");
            assert!(bed.bed.dataplane.nat().flow(&reply_key).is_none());
            assert!(bed.bed.dataplane.nat().flow(&key).is_none());
            // Room for both: the flow opens.
            let (f1, _) = bed.bed.dataplane.nat().table().buckets_of(&key);
            free_one_in(&mut bed, f1);
            let (verdict, _) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.redirect);
            assert_eq!(counter(&bed, Counter::NatNew), opened + 1);
            let (forward, found_reply, _) = entries(&bed, &key);
            assert_eq!(found_reply, reply_key, "the same first port");
            assert_eq!(forward.direction, NAT_DIR_FORWARD);
        })
        .expect("the test body (see its panic above)");
}

/// SYN+FIN (a flag combination no stack sends): to a NAT VIP, dropped
/// before any lookup; from a backend on a translated flow, dropped too
/// (never passed up, where the stack does not know the flow); to the NAT
/// address on no flow, up the stack as any other packet for no VIP.
fn bad_tcp_flags_are_dropped_both_ways(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let syn_fin = Tcp {
            syn: true,
            fin: true,
            ..Tcp::default()
        };
        let flow = client_flow(VIP4, 80, 40_006);
        let frame = packet::tcp(&flow, syn_fin, None, b"");
        let (verdict, out) = bed.run_on(bed.in_if, &frame).expect("test run");
        assert_eq!(verdict, bed.verdicts.drop);
        assert_eq!(out, frame);
        assert!(bed.flows().is_empty());
        bed.run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("syn");
        let key = flow_key(&flow, Protocol::Tcp);
        let (forward, _, reply) = entries(bed, &key);
        let back = Flow {
            src: words_to_addr(forward.dst, AF_INET),
            dst: addr(NAT4),
            sport: BACKEND_PORT,
            dport: u16::from_be(forward.sport),
        };
        let frame = packet::tcp(&back, syn_fin, None, b"");
        let (verdict, out) = bed.run_on(bed.out_if, &frame).expect("test run");
        assert_eq!(verdict, bed.verdicts.drop);
        assert_eq!(out, frame);
        assert_eq!(counter(bed, Counter::DropTcpFlags), 2);
        assert_eq!(entries(bed, &key).2, reply, "the reply entry untouched");
        let no_flow = Flow {
            dport: u16::from_be(forward.sport).wrapping_add(1),
            ..back
        };
        let frame = packet::tcp(&no_flow, syn_fin, None, b"");
        let (verdict, _) = bed.run_on(bed.out_if, &frame).expect("test run");
        assert_eq!(verdict, bed.verdicts.pass);
        assert_eq!(counter(bed, Counter::DropTcpFlags), 2);
    });
}

lb_tests::on_both_hooks!(
    bad_tcp_flags_are_dropped_both_ways,
    tcp_non_syn_without_a_flow_is_dropped,
    guards_drop_before_any_nat_state,
    ttl_1_is_dropped,
    port_exhaustion_drops_and_recovers,
    a_full_flow_table_drops_new_flows_whole,
);
