//! The tunnel modes' cost per packet (`ipip`, `gue`; new and tracked
//! flows) against DSR at L2's, at both hooks, in one run: the real object
//! under BPF_PROG_TEST_RUN through the restoring wrappers (and at tc the
//! tracked pair also one run per packet on a fresh skb), inside the NAT
//! bed's namespace (the FIB lookups of new next hops need its routes and
//! neighbours). Each case checks with the program's own counters that
//! every run took the named path (`nat::measure`).

use anyhow::anyhow;
use lb_common::{stats::Counter, Mode};
use lb_userspace::config::Protocol;

use super::{
    mode_cases::{ModeCase, ModeResults},
    nat::{
        interleaved, load_wrappers, measure, measure_fresh, recorded, Case, Expect, NO_EVICTION,
        V4_SRC,
    },
};
use crate::{
    natbed::{FibNetns, BACKENDS4, IN_DEV, OUT_DEV, SAME_IF4},
    packet::{self, Flow, ACK, SYN},
    testbed::{vip4_tcp, Hook, VIP4},
    tunnelbed::{tunnel_vip, TunnelBed},
};

/// DSR at L2, tracked flow.
pub const DSR_TRACKED: &str = "dsr-l2 tracked flow (v4 ACK)";
/// DSR at L2, new flow.
pub const DSR_NEW: &str = "dsr-l2 new flow (v4 SYN)";
/// IPIP, tracked flow (cached next hop), the backend routed out of
/// another interface (XDP_REDIRECT through the devmap).
pub const IPIP_TRACKED: &str = "ipip tracked flow (v4 ACK)";
/// IPIP, tracked flow, one-armed: the backend's route leaves by the
/// ingress interface, so the frame goes back out with XDP_TX as dsr-l2's
/// does (the like-for-like comparison of the two modes).
pub const IPIP_TRACKED_ONE_ARMED: &str = "ipip tracked flow, one-armed (v4 ACK)";
/// `DSR_TRACKED` at tc, one BPF_PROG_TEST_RUN of `tc_lb` per packet on a
/// fresh skb.
pub const DSR_TRACKED_FRESH: &str = "dsr-l2 tracked flow (v4 ACK), fresh skb";
/// `IPIP_TRACKED_ONE_ARMED` at tc, one BPF_PROG_TEST_RUN of `tc_lb` per
/// packet on a fresh skb.
pub const IPIP_TRACKED_ONE_ARMED_FRESH: &str = "ipip tracked flow, one-armed (v4 ACK), fresh skb";
/// IPIP, new flow (the backend's next hop cached).
pub const IPIP_NEW: &str = "ipip new flow (v4 SYN)";
/// GUE, tracked flow.
pub const GUE_TRACKED: &str = "gue tracked flow (v4 ACK)";
/// GUE, new flow.
pub const GUE_NEW: &str = "gue new flow (v4 SYN)";

/// The IPIP VIP (the DSR one is `VIP4`).
const IPIP_VIP4: &str = "198.18.0.102";
/// The GUE VIP.
const GUE_VIP4: &str = "198.18.0.103";
/// The one-armed IPIP VIP (its backend, `SAME_IF4`, sits behind the
/// ingress interface).
const IPIP_ONE_ARMED_VIP4: &str = "198.18.0.104";

/// Packets per round at tc, one BPF_PROG_TEST_RUN each.
const FRESH_PER_ROUND: u32 = 20_000;

/// The bench bed's maps: the tests' (`TunnelBed::SIZES`) with a
/// connection table of lbd's default size, in whose free ways a round
/// of `repeat` new flows (and the warm-up's) fits with room to spare
/// (half its configured flows at most, a quarter of its slots: 8-way buckets, two per flow, far from full):
/// a new flow's SYN then measures Maglev's pick and its insert, not an
/// overflow into the half-open table.
fn bench_sizes(repeat: u32) -> anyhow::Result<lb_userspace::dataplane::MapSizes> {
    let sizes = lb_userspace::dataplane::MapSizes {
        conntrack: lb_common::consts::CONNTRACK_SIZE_DEFAULT,
        ..TunnelBed::SIZES
    };
    fits(repeat, sizes.conntrack)?;
    Ok(sizes)
}

/// Fails unless a round of `repeat` new flows plus the warm-up's 1000
/// fill at most half a connection table of `conntrack` flows.
fn fits(repeat: u32, conntrack: u32) -> anyhow::Result<()> {
    let needed = u64::from(repeat) + 1000;
    if needed * 2 > u64::from(conntrack) {
        anyhow::bail!(
            "{repeat} new flows per round do not fit half a {conntrack}-flow connection table"
        );
    }
    Ok(())
}

/// Measures every case at both hooks.
pub fn run(repeat: u32, rounds: u32) -> anyhow::Result<ModeResults> {
    let netns = FibNetns::new()?;
    let (in_if, out_if) = (netns.ifindex(IN_DEV)?, netns.ifindex(OUT_DEV)?);
    netns.run(move || -> anyhow::Result<ModeResults> {
        super::xdp::pin_to_cpu(0)?;
        let mut cases = Vec::new();
        for hook in Hook::ALL {
            cases.extend(run_hook(hook, repeat, rounds, in_if, out_if)?);
        }
        Ok(ModeResults {
            date: super::Machine::here("").date,
            cases,
        })
    })?
}

fn run_hook(
    hook: Hook,
    repeat: u32,
    rounds: u32,
    in_if: u32,
    out_if: u32,
) -> anyhow::Result<Vec<ModeCase>> {
    let vips = [
        vip4_tcp(),
        tunnel_vip(IPIP_VIP4, 80, Protocol::Tcp, &BACKENDS4, Mode::Ipip),
        tunnel_vip(GUE_VIP4, 80, Protocol::Tcp, &BACKENDS4, Mode::Gue),
        tunnel_vip(
            IPIP_ONE_ARMED_VIP4,
            80,
            Protocol::Tcp,
            &[SAME_IF4],
            Mode::Ipip,
        ),
    ];
    let sizes = bench_sizes(repeat)?;
    let mut bed = TunnelBed::with_sizes(hook, &vips, in_if, out_if, sizes)?;
    load_wrappers(&mut bed.nat)?;
    let flow = |dst: &str| Flow {
        src: "198.18.0.10".parse().expect("address"),
        dst: dst.parse().expect("address"),
        sport: 40000,
        dport: 80,
    };
    // dsr-l2 and the one-armed tunnel go back out of the ingress
    // interface (XDP_TX); the other tunnels' backends sit behind the other
    // interface (XDP_REDIRECT).
    let case = |name, dst, syn: bool, counter, verdict| Case {
        name,
        frame: packet::tcp(&flow(dst), if syn { SYN } else { ACK }, None, b""),
        ifindex: in_if,
        vary: if syn { V4_SRC } else { 0 }.into(),
        counter,
        verdict,
        // A new flow's rounds each start from emptied tables (the tracked
        // cases' flows kept), so every SYN finds a free way of the
        // connection table (checked: the table grows by one flow a run,
        // the half-open table stays empty, nothing evicted).
        fresh: syn,
        untouched: if syn { NO_EVICTION } else { &[] },
        held_in_conntrack: syn,
    };
    let cases = [
        case(
            DSR_TRACKED,
            VIP4,
            false,
            Counter::ConntrackHit,
            Expect::Bounce,
        ),
        case(
            IPIP_TRACKED,
            IPIP_VIP4,
            false,
            Counter::TunnelEncap,
            Expect::Redirect,
        ),
        case(
            IPIP_TRACKED_ONE_ARMED,
            IPIP_ONE_ARMED_VIP4,
            false,
            Counter::TunnelEncap,
            Expect::Bounce,
        ),
        case(
            GUE_TRACKED,
            GUE_VIP4,
            false,
            Counter::TunnelEncap,
            Expect::Redirect,
        ),
        case(
            DSR_NEW,
            VIP4,
            true,
            Counter::ConntrackHalfOpenNew,
            Expect::Bounce,
        ),
        case(
            IPIP_NEW,
            IPIP_VIP4,
            true,
            Counter::ConntrackHalfOpenNew,
            Expect::Redirect,
        ),
        case(
            GUE_NEW,
            GUE_VIP4,
            true,
            Counter::ConntrackHalfOpenNew,
            Expect::Redirect,
        ),
    ];
    let hook_name = match hook {
        Hook::Xdp => "xdp",
        Hook::Tc => "tc",
    };
    let measured = interleaved(&cases, rounds, |case| {
        measure(&mut bed.nat, case, repeat, 1)
    })?;
    let mut out: Vec<ModeCase> = cases
        .iter()
        .zip(measured)
        .map(|(case, ns)| recorded(hook_name, case.name, &ns, repeat, rounds))
        .collect::<anyhow::Result<_>>()?;
    if hook == Hook::Tc {
        // The tracked pair again, each packet on a fresh skb (see
        // `measure_fresh`): what one real packet pays, without the
        // wrapper's repeated runs on one skb, which the kernel marks as
        // encapsulated after the first wrap.
        let per_round = repeat.min(FRESH_PER_ROUND);
        let pair = [
            (DSR_TRACKED_FRESH, DSR_TRACKED),
            (IPIP_TRACKED_ONE_ARMED_FRESH, IPIP_TRACKED_ONE_ARMED),
        ];
        let fresh = pair
            .iter()
            .map(|(_, of)| {
                cases
                    .iter()
                    .find(|c| c.name == *of)
                    .cloned()
                    .ok_or_else(|| anyhow!("no case {of}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let measured = interleaved(&fresh, rounds, |case| {
            measure_fresh(&mut bed.nat, case, per_round, 1)
        })?;
        for ((name, _), ns) in pair.iter().zip(measured) {
            out.push(recorded(hook_name, name, &ns, per_round, rounds)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_of_new_flows_fits_the_bench_table() {
        // The runner's largest round.
        let sizes = bench_sizes(100_000).expect("fits");
        assert!(sizes.conntrack >= 2 * 101_000);
        assert_eq!(sizes.half_open, TunnelBed::SIZES.half_open);
        assert!(bench_sizes(1_000_000).is_err());
        // The tests' table would not hold one.
        assert!(fits(100_000, TunnelBed::SIZES.conntrack).is_err());
    }
}
