//! The `packet` target: any frame through the XDP program, its verdict
//! and counters checked against the independent oracle.

use super::*;

/// Largest frame fed to the program (BPF_PROG_TEST_RUN takes up to about a
/// page less head- and tailroom).
pub const MAX_FRAME: usize = 2048;

/// The loaded program and the node counters as they were after its last
/// run.
struct Bed {
    bed: TestBed,
    counters: Vec<(Counter, u64)>,
}

thread_local! {
    /// The loaded program with the test bed's three VIPs, loaded once per
    /// process: loading takes far longer than a run.
    static BED: RefCell<Option<Bed>> = const { RefCell::new(None) };
}

/// The test bed's VIPs.
fn bed_vips() -> [VipConfig; 3] {
    [vip4_tcp(), vip4_udp(), vip6_tcp()]
}

/// The XDP action a verdict counter stands for (None for events).
fn counted_action(counter: Counter) -> Option<u32> {
    match counter {
        Counter::Forwarded
        | Counter::ForwardedIcmpError
        | Counter::ForwardedNatReply
        | Counter::ForwardedNatIcmpError
        | Counter::SentIcmpTooBig => Some(action::TX),
        Counter::DropMalformed
        | Counter::DropNoBackend
        | Counter::DropTcpFlags
        | Counter::DropNatPortsExhausted
        | Counter::DropNatTableFull
        | Counter::DropNoRoute
        | Counter::DropNoNeighbour
        | Counter::DropNatNoFlow
        | Counter::DropTtlExceeded
        | Counter::DropAclDenied
        | Counter::DropAclNotAllowed
        | Counter::DropRateLimited
        | Counter::DropTooBig
        | Counter::DropFragment
        | Counter::DropNoTxPort
        | Counter::DropInternal => Some(action::DROP),
        Counter::PassNotIp
        | Counter::PassNotVip
        | Counter::PassForeignMac
        | Counter::PassFragment
        | Counter::PassUnsupportedL4
        | Counter::PassIpv6Ext => Some(action::PASS),
        Counter::ConntrackHit
        | Counter::ConntrackNew
        | Counter::ConntrackRehash
        | Counter::ConntrackInsertFailed
        | Counter::ConntrackHalfOpenNew
        | Counter::ConntrackHalfOpenPromoted
        | Counter::ConntrackHalfOpenEvicted
        | Counter::ConntrackHalfOpenExpired
        | Counter::ConntrackEvictedIdle
        | Counter::ConntrackEvictedLive
        | Counter::NatNew
        | Counter::NatHit
        | Counter::TunnelEncap
        | Counter::HcEncap
        | Counter::HcDrop => None,
    }
}

/// One branch per counter, so that libFuzzer, which sees only userspace
/// code, tells inputs apart by the path they took inside the program.
#[inline(never)]
fn reached(counter: Counter) {
    let n = match counter {
        Counter::Forwarded => 0,
        Counter::PassNotIp => 1,
        Counter::PassNotVip => 2,
        Counter::PassFragment => 3,
        Counter::PassUnsupportedL4 => 4,
        Counter::DropMalformed => 5,
        Counter::DropNoBackend => 6,
        Counter::ConntrackHit => 7,
        Counter::ConntrackNew => 8,
        Counter::ConntrackRehash => 9,
        Counter::ConntrackInsertFailed => 10,
        Counter::ForwardedIcmpError => 11,
        Counter::DropTcpFlags => 12,
        Counter::PassIpv6Ext => 13,
        Counter::DropNatPortsExhausted => 14,
        Counter::DropNatTableFull => 15,
        Counter::DropNoRoute => 16,
        Counter::DropNoNeighbour => 17,
        Counter::DropNatNoFlow => 18,
        Counter::DropTtlExceeded => 19,
        Counter::ForwardedNatReply => 20,
        Counter::ForwardedNatIcmpError => 21,
        Counter::NatNew => 22,
        Counter::NatHit => 23,
        Counter::SentIcmpTooBig => 24,
        Counter::TunnelEncap => 25,
        Counter::HcEncap => 26,
        Counter::HcDrop => 27,
        Counter::DropAclDenied => 28,
        Counter::DropAclNotAllowed => 29,
        Counter::DropRateLimited => 30,
        Counter::ConntrackHalfOpenNew => 31,
        Counter::ConntrackHalfOpenPromoted => 32,
        Counter::ConntrackHalfOpenEvicted => 33,
        Counter::ConntrackHalfOpenExpired => 34,
        Counter::DropTooBig => 35,
        Counter::DropFragment => 36,
        Counter::ConntrackEvictedIdle => 37,
        Counter::ConntrackEvictedLive => 38,
        Counter::DropNoTxPort => 39,
        Counter::DropInternal => 40,
        Counter::PassForeignMac => 41,
    };
    std::hint::black_box(n);
}

/// The compiled XDP program (the test bed's, with its three VIPs) on an
/// arbitrary frame, under BPF_PROG_TEST_RUN: judged by
/// [`crate::oracle::check_verdict`] — never XDP_ABORTED, XDP_TX only for
/// what the independent reference parser allows, only the MACs rewritten —
/// and every verdict counted once, under a reason of the same verdict.
/// Needs root.
pub fn packet(data: &[u8]) {
    if data.len() < 14 || data.len() > MAX_FRAME {
        return;
    }
    BED.with(|cell| {
        let mut cell = cell.borrow_mut();
        let state = cell.get_or_insert_with(|| {
            let bed = TestBed::new(&bed_vips()).expect("loading the test bed (run as root)");
            let counters = bed.dataplane.counters().expect("reading the counters");
            Bed { bed, counters }
        });
        let (verdict, out) = state.bed.run(data).expect("BPF_PROG_TEST_RUN");
        let vips = bed_vips();
        let services: Vec<Service> = vips.iter().map(Service::of).collect();
        let macs: Vec<[u8; 6]> = vips
            .iter()
            .flat_map(|v| &v.backends)
            .filter_map(|b| b.mac.map(Mac::octets))
            .collect();
        if let Err(why) = check_verdict(data, verdict, &out, &services, LB_MAC, &macs) {
            panic!("{why}\ninput:  {data:02x?}\noutput: {out:02x?}");
        }

        let counters = state
            .bed
            .dataplane
            .counters()
            .expect("reading the counters");
        let mut verdicts = Vec::new();
        for ((counter, after), (_, before)) in counters.iter().zip(&state.counters) {
            if after != before {
                reached(*counter);
                if let Some(counted) = counted_action(*counter) {
                    verdicts.push((*counter, after - before, counted));
                }
            }
        }
        assert!(
            matches!(verdicts.as_slice(), [(_, 1, counted)] if *counted == verdict),
            "verdict {verdict} counted as {verdicts:?}\ninput: {data:02x?}"
        );
        state.counters = counters;
    });
}
