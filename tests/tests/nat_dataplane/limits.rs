//! The limits of new flows in NAT mode take tokens only for a flow that
//! opens: a SYN the NAT path refuses after the limit admitted it (no
//! source port left, no room in the flow table) gives its source's and
//! its prefix's tokens back. Else, under NAT-table pressure (how a SYN
//! flood on a NAT VIP shows up), real clients would drain their buckets
//! with retransmitted SYNs and be rate-limited once room frees.

use lb_common::{consts::AF_INET, stats::Counter, FlowKey, NatEntry};
use lb_tests::{
    natbed::{client_flow, nat_vip, FibNetns, NatBed, BACKENDS4, IN_DEV, NAT4, OUT_DEV},
    packet::{self, SYN},
    testbed::{flow_key, Hook, VIP4},
};
use lb_userspace::{
    config::Protocol,
    guard::{GuardConfig, Limits, RateLimit, Scope},
};

use crate::{counter, frames::entries, in_netns, vips};

/// One new flow a second per source and per prefix, a burst of one: the
/// first flow that opens takes both buckets' only token.
fn one_flow_per_source_and_prefix(bed: &mut NatBed) {
    let one = |what| RateLimit::new(1, Some(1), what).expect("rate");
    let mut config = GuardConfig::default();
    config.limits.insert(
        Scope::Global,
        Limits {
            source: Some(one("source")),
            prefix: Some(one("prefix")),
            ..Limits::default()
        },
    );
    let mut guard = None;
    bed.bed.set_guard(&mut guard, config).expect("guard");
}

/// A SYN dropped as `drop_nat_table_full` takes no token: once room
/// frees, the client's retransmitted SYN opens its flow (and that flow
/// takes the tokens: the client's next new flow is over the limit).
fn a_syn_the_full_table_refuses_takes_no_token(hook: Hook) {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            const SIZE: u32 = 1024;
            let mut bed =
                NatBed::with_flow_table(hook, &vips(), in_if, out_if, SIZE).expect("test bed");
            // The client's flow opened once in the empty table (before any
            // limit) to learn its reply key, then taken out again.
            let flow = client_flow(VIP4, 80, 40_100);
            let frame = packet::tcp(&flow, SYN, None, b"");
            let (verdict, _) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.redirect);
            let key = flow_key(&flow, Protocol::Tcp);
            let (_, reply_key, _) = entries(&bed, &key);
            bed.clear_flows().expect("clear");
            one_flow_per_source_and_prefix(&mut bed);
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
            // Full: the SYN and its retransmissions are dropped.
            for sent in 1..=3 {
                let (verdict, _) = bed.run_on(bed.in_if, &frame).expect("test run");
                assert_eq!(verdict, bed.verdicts.drop);
                assert_eq!(
                    counter(&bed, Counter::DropNatTableFull),
                    sent,
                    "SYN {sent}: refused by the table, not by the limit"
                );
            }
            assert_eq!(counter(&bed, Counter::DropRateLimited), 0);
            // Room for both entries: a slot of the reply key's first
            // bucket and of the forward key's.
            let table = bed.bed.dataplane.nat().table();
            let ((r1, _), (f1, _)) = (table.buckets_of(&reply_key), table.buckets_of(&key));
            for bucket in [r1, f1] {
                let held = bed.bed.dataplane.nat().table().held_in(bucket);
                let (taken, _) = held.iter().find(|(k, _)| k.sport == 1).expect("a filler");
                bed.bed
                    .dataplane
                    .nat_mut()
                    .remove_flow(taken)
                    .expect("free");
            }
            let (verdict, _) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(
                counter(&bed, Counter::DropRateLimited),
                0,
                "the refused SYNs took the client's tokens"
            );
            assert_eq!(verdict, bed.verdicts.redirect, "the flow opens");
            assert!(bed.bed.dataplane.nat().flow(&key).is_some());
            // The opened flow took the tokens (the next new flow is refused
            // by the limit, before the table is looked at).
            let next = packet::tcp(&client_flow(VIP4, 80, 40_101), SYN, None, b"");
            let (verdict, _) = bed.run_on(bed.in_if, &next).expect("test run");
            assert_eq!(verdict, bed.verdicts.drop, "the next new flow");
            assert_eq!(counter(&bed, Counter::DropRateLimited), 1);
        })
        .expect("the test body (see its panic above)");
}

/// A SYN dropped as `drop_nat_ports_exhausted` takes no token: once the
/// reaper frees the ports, the client's retransmitted SYN opens its flow.
fn a_syn_without_a_source_port_takes_no_token(hook: Hook) {
    let vips = vec![nat_vip(
        VIP4,
        80,
        Protocol::Tcp,
        &[(BACKENDS4[0], None)],
        NAT4,
        (30_000, 30_001),
    )];
    in_netns(hook, vips, |bed| {
        // Both source ports taken (before any limit).
        for sport in [41_000, 41_001] {
            let flow = client_flow(VIP4, 80, sport);
            let (verdict, _) = bed
                .run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("test run");
            assert_eq!(verdict, bed.verdicts.redirect, "flow {sport}");
        }
        one_flow_per_source_and_prefix(bed);
        let third = packet::tcp(&client_flow(VIP4, 80, 41_002), SYN, None, b"");
        for sent in 1..=3 {
            let (verdict, _) = bed.run_on(bed.in_if, &third).expect("test run");
            assert_eq!(verdict, bed.verdicts.drop);
            assert_eq!(
                counter(bed, Counter::DropNatPortsExhausted),
                sent,
                "SYN {sent}: refused for want of a port, not by the limit"
            );
        }
        bed.clear_flows().expect("reap");
        let (verdict, _) = bed.run_on(bed.in_if, &third).expect("test run");
        assert_eq!(
            counter(bed, Counter::DropRateLimited),
            0,
            "the refused SYNs took the client's tokens"
        );
        assert_eq!(verdict, bed.verdicts.redirect, "after the reaper");
        let next = packet::tcp(&client_flow(VIP4, 80, 41_003), SYN, None, b"");
        let (verdict, _) = bed.run_on(bed.in_if, &next).expect("test run");
        assert_eq!(verdict, bed.verdicts.drop, "the next new flow");
        assert_eq!(counter(bed, Counter::DropRateLimited), 1);
    });
}

lb_tests::on_both_hooks!(
    a_syn_the_full_table_refuses_takes_no_token,
    a_syn_without_a_source_port_takes_no_token,
);
