//! The NAT mode's cost per packet against DSR's, at both hooks, in one
//! run: the real object under BPF_PROG_TEST_RUN through the restoring
//! wrappers (`xdp_bench`, `tc_bench`), inside the NAT test bed's network
//! namespace (the program's FIB lookups need its routes and neighbours).
//! Each case checks with the program's own counters that every run took
//! the named path.

use anyhow::{anyhow, bail, Context as _};
use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions};
use lb_common::{consts::names, consts::NAT_DIR_REPLY, stats::Counter};
use lb_userspace::config::Protocol;

use super::{
    mode_cases::{ModeCase, ModeResults},
    template::{self, Vary, Wrapper},
    Spread,
};
use crate::{
    natbed::{nat_vip, FibNetns, NatBed, Verdicts, BACKENDS4, IN_DEV, NAT4, OUT_DEV},
    packet::{self, Flow, ACK, SYN},
    testbed::{vip4_tcp, Hook, VIP4},
};

/// The floor: an ARP frame, passed up at the Ethernet type (restore +
/// tail call + the program's first test and its counter), measured at
/// each hook in the same rounds as the tracked cases.
pub const FLOOR: &str = "floor: restore + tail call + Ethernet type (ARP, passed)";
/// Case names, as the report reads them.
pub const DSR_TRACKED: &str = "DSR tracked flow (v4 ACK)";
/// NAT, client to VIP, flow already translated (its source port the
/// checksum-neutral one, as a new flow gets while that port is free).
pub const NAT_TRACKED: &str = "NAT tracked flow (v4 ACK, forward)";
/// The same for a flow whose neutral port was not to be had (a hashed
/// port: the ports' checksum change is applied too; at tc a second
/// helper call).
pub const NAT_TRACKED_HASHED: &str = "NAT tracked flow, hashed port (v4 ACK, forward)";
/// NAT, backend's reply translated back.
pub const NAT_REPLY: &str = "NAT reply (v4 ACK, backend to NAT address)";
/// NAT, a new flow: backend pick, port allocation, two inserts, FIB.
/// Only the client address varies, so after a backend's first flow its
/// checksum-neutral port is taken and every flow pays a failed try
/// before the hashed search: the worst case.
pub const NAT_NEW: &str = "NAT new flow (v4 SYN)";
/// The same with the client port varied too (spread as clients'
/// ephemeral ports are), so the neutral port is free as often as it is
/// for real clients: the common case.
pub const NAT_NEW_VARIED_PORTS: &str = "NAT new flow, varied client ports (v4 SYN)";

/// The NAT VIP (the DSR one is `VIP4`).
const NAT_VIP4: &str = "198.18.0.101";
/// A NAT VIP whose source-port range leaves out the bench flow's neutral
/// port (40000 + 80 - 8080 = 32000), so its flow gets a hashed one.
const NAT_VIP4_HASHED: &str = "198.18.0.102";
/// Offset of the IPv4 source address in an untagged frame.
pub(super) const V4_SRC: u32 = 14 + 12;
/// Offset of the TCP source port behind an options-free IPv4 header.
const V4_TCP_SPORT: u32 = 14 + 20;

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

/// Where a case's packet must leave (each case names one: a run that
/// sent it the other way took another path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// Back out of the interface it came in on (XDP_TX; at tc a
    /// redirect, which tc cannot tell from `Redirect`).
    Bounce,
    /// Out of another interface (XDP_REDIRECT through the devmap; at tc a
    /// redirect).
    Redirect,
    /// Up the stack (the floor's ARP frame).
    Pass,
}

impl Expect {
    /// The hook's raw verdict for it.
    fn raw(self, verdicts: &Verdicts) -> u32 {
        match self {
            Self::Bounce => verdicts.bounce,
            Self::Redirect => verdicts.redirect,
            Self::Pass => verdicts.pass,
        }
    }

    /// Fails unless `got` (a run's raw verdict under `verdicts`) is the
    /// one `case` expects.
    pub(super) fn check(self, case: &str, verdicts: &Verdicts, got: u32) -> anyhow::Result<()> {
        let want = self.raw(verdicts);
        if got != want {
            bail!("{case}: the program returned {got}, not {want} ({self:?}): the measured path is not the one named");
        }
        Ok(())
    }
}

/// A packet, where it comes in, what every run must do (shared with the
/// tunnel benchmark).
#[derive(Clone)]
pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) frame: Vec<u8>,
    pub(super) ifindex: u32,
    /// What the wrapper varies on every run.
    pub(super) vary: Vary,
    pub(super) counter: Counter,
    /// Where every run must send the packet.
    pub(super) verdict: Expect,
    /// Empty the NAT table and the connection table before each round
    /// (new flows) of all but the flows they held when the case's
    /// measurement began (those the other cases, measured round by round
    /// in turn, use), and the half-open table of all, and leave them so.
    pub(super) fresh: bool,
    /// Counters its runs must leave as they were (a new flow's SYN that
    /// evicted a half-open flow took another path than the one named).
    pub(super) untouched: &'static [Counter],
    /// Every run's SYN is held as a handshake in a free way of the
    /// connection table (the bed's bucket table): each round (from
    /// emptied tables, `fresh`) must grow that table by its runs and
    /// leave the half-open table empty.
    pub(super) held_in_conntrack: bool,
}

/// What a new flow's SYN may not do: take the place of a half-open flow,
/// or find no way to go into.
pub(super) const NO_EVICTION: &[Counter] = &[
    Counter::ConntrackHalfOpenEvicted,
    Counter::ConntrackHalfOpenExpired,
    Counter::ConntrackInsertFailed,
];

/// Fails unless `runs` runs of `case` counted its counter `counted`
/// times, one a run, and grew none of its untouched counters (`untouched`:
/// each with how much it grew).
pub(super) fn check_counted(
    case: &Case,
    runs: u64,
    counted: u64,
    untouched: &[(Counter, u64)],
) -> anyhow::Result<()> {
    if counted != runs {
        bail!(
            "{}: {counted} {} for {runs} runs: the measured path is not the one named",
            case.name,
            case.counter.name()
        );
    }
    for (counter, grown) in untouched {
        if *grown != 0 {
            bail!(
                "{}: {grown} {} over {runs} runs, which the path named rules out",
                case.name,
                counter.name()
            );
        }
    }
    Ok(())
}

/// Fails unless a round of `runs` SYNs of `case` (`held_in_conntrack`)
/// grew the connection table by `runs` flows (`grown`) and left the
/// half-open table empty (`half_open` flows in it after the round).
pub(super) fn check_held(case: &Case, runs: u64, grown: u64, half_open: u64) -> anyhow::Result<()> {
    if grown != runs || half_open != 0 {
        bail!(
            "{}: a round of {runs} SYNs added {grown} flows to the connection table and left {half_open} in the half-open table: not every SYN was held in a free way of the connection table",
            case.name
        );
    }
    Ok(())
}

/// The flows a fresh case's rounds keep: the NAT table's and the
/// connection table's when its measurement began.
struct Kept {
    nat: std::collections::HashSet<lb_common::FlowKey>,
    conntrack: std::collections::HashSet<lb_common::FlowKey>,
}

impl Kept {
    fn now(bed: &NatBed) -> Self {
        Self {
            nat: bed.flows().into_iter().map(|(key, _)| key).collect(),
            conntrack: bed.bed.dataplane.flows().map(|(key, _)| key).collect(),
        }
    }

    /// Takes every other flow out of both tables, and every flow out of
    /// the half-open one.
    fn restore(
        &self,
        bed: &mut NatBed,
        half_open: &lb_userspace::conntrack::table::FlowTable,
    ) -> anyhow::Result<()> {
        bed.clear_flows_but(&self.nat)?;
        let gone: Vec<lb_common::FlowKey> = bed
            .bed
            .dataplane
            .flows()
            .map(|(key, _)| key)
            .filter(|key| !self.conntrack.contains(key))
            .collect();
        for key in &gone {
            bed.bed.dataplane.remove_flow(key)?;
        }
        super::tables::empty(half_open)?;
        Ok(())
    }
}

fn run_hook(
    hook: Hook,
    repeat: u32,
    rounds: u32,
    in_if: u32,
    out_if: u32,
) -> anyhow::Result<Vec<ModeCase>> {
    let backends: Vec<(&str, Option<u16>)> = BACKENDS4.iter().map(|b| (*b, Some(8080))).collect();
    let vips = [
        vip4_tcp(),
        nat_vip(NAT_VIP4, 80, Protocol::Tcp, &backends, NAT4, (1024, 65535)),
        nat_vip(
            NAT_VIP4_HASHED,
            80,
            Protocol::Tcp,
            &backends,
            NAT4,
            (1024, 4095),
        ),
    ];
    let mut bed = NatBed::new(hook, &vips, in_if, out_if)?;
    load_wrappers(&mut bed)?;
    let client = |dst: &str| Flow {
        src: "198.18.0.10".parse().expect("address"),
        dst: dst.parse().expect("address"),
        sport: 40000,
        dport: 80,
    };
    // The NAT flow the tracked and reply cases use, opened once.
    let syn = packet::tcp(&client(NAT_VIP4), SYN, None, b"");
    bed.run_on(in_if, &syn)?;
    let (reply_key, _) = bed
        .flows()
        .into_iter()
        .find(|(_, e)| e.direction == NAT_DIR_REPLY)
        .ok_or_else(|| anyhow!("the SYN opened no NAT flow"))?;
    if u16::from_be(reply_key.dport) != 32000 {
        bail!(
            "the bench flow got NAT port {}, not its checksum-neutral 32000",
            u16::from_be(reply_key.dport)
        );
    }
    bed.run_on(
        in_if,
        &packet::tcp(&client(NAT_VIP4_HASHED), SYN, None, b""),
    )?;
    let reply = Flow {
        src: lb_userspace::reconcile::words_addr(reply_key.src, reply_key.family),
        dst: lb_userspace::reconcile::words_addr(reply_key.dst, reply_key.family),
        sport: u16::from_be(reply_key.sport),
        dport: u16::from_be(reply_key.dport),
    };
    let cases = [
        Case {
            name: FLOOR,
            frame: packet::arp_request(),
            ifindex: in_if,
            vary: Vary::default(),
            counter: Counter::PassNotIp,
            verdict: Expect::Pass,
            fresh: false,
            untouched: &[],
            held_in_conntrack: false,
        },
        Case {
            name: DSR_TRACKED,
            frame: packet::tcp(&client(VIP4), ACK, None, b""),
            ifindex: in_if,
            vary: Vary::default(),
            counter: Counter::ConntrackHit,
            verdict: Expect::Bounce,
            fresh: false,
            untouched: &[],
            held_in_conntrack: false,
        },
        Case {
            name: NAT_TRACKED,
            frame: packet::tcp(&client(NAT_VIP4), ACK, None, b""),
            ifindex: in_if,
            vary: Vary::default(),
            counter: Counter::NatHit,
            verdict: Expect::Redirect,
            fresh: false,
            untouched: &[],
            held_in_conntrack: false,
        },
        Case {
            name: NAT_TRACKED_HASHED,
            frame: packet::tcp(&client(NAT_VIP4_HASHED), ACK, None, b""),
            ifindex: in_if,
            vary: Vary::default(),
            counter: Counter::NatHit,
            verdict: Expect::Redirect,
            fresh: false,
            untouched: &[],
            held_in_conntrack: false,
        },
        Case {
            name: NAT_REPLY,
            frame: packet::tcp(&reply, ACK, None, b""),
            ifindex: out_if,
            vary: Vary::default(),
            counter: Counter::ForwardedNatReply,
            verdict: Expect::Redirect,
            fresh: false,
            untouched: &[],
            held_in_conntrack: false,
        },
        Case {
            name: NAT_NEW,
            frame: syn.clone(),
            ifindex: in_if,
            vary: V4_SRC.into(),
            counter: Counter::NatNew,
            verdict: Expect::Redirect,
            fresh: true,
            untouched: &[],
            held_in_conntrack: false,
        },
        Case {
            name: NAT_NEW_VARIED_PORTS,
            frame: syn.clone(),
            ifindex: in_if,
            vary: Vary {
                offset: V4_SRC,
                port_offset: V4_TCP_SPORT,
            },
            counter: Counter::NatNew,
            verdict: Expect::Redirect,
            fresh: true,
            untouched: &[],
            held_in_conntrack: false,
        },
    ];
    let hook_name = match hook {
        Hook::Xdp => "xdp",
        Hook::Tc => "tc",
    };
    // Two entries per new flow: stay well inside the table.
    let repeat_of = |case: &Case| {
        if case.fresh {
            repeat.min(50_000)
        } else {
            repeat
        }
    };
    // The tracked cases round by round; then the new-flow case, whose
    // rounds each start from an empty table (the tracked flow gone).
    let (fresh, tracked): (Vec<Case>, Vec<Case>) = cases.into_iter().partition(|c| c.fresh);
    let measured = interleaved(&tracked, rounds, |case| {
        measure(&mut bed, case, repeat_of(case), 1)
    })?;
    let mut out: Vec<ModeCase> = tracked
        .iter()
        .zip(measured)
        .map(|(case, ns)| recorded(hook_name, case.name, &ns, repeat_of(case), rounds))
        .collect::<anyhow::Result<_>>()?;
    for case in &fresh {
        let ns = measure(&mut bed, case, repeat_of(case), rounds)?;
        out.push(recorded(
            hook_name,
            case.name,
            &ns,
            repeat_of(case),
            rounds,
        )?);
    }
    Ok(out)
}

/// Measures `cases` round by round, each round every case in turn
/// (`one_round` measures one case's round), so a drift of this VM's
/// speed during the run moves every case alike and the comparisons the
/// targets make (NAT against DSR, a tunnel mode against DSR) hold
/// within each round: ns per packet per round, per case, in `cases`'
/// order.
pub(super) fn interleaved(
    cases: &[Case],
    rounds: u32,
    mut one_round: impl FnMut(&Case) -> anyhow::Result<Vec<f64>>,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut out = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (case, ns) in cases.iter().zip(&mut out) {
            ns.extend(one_round(case)?);
        }
    }
    Ok(out)
}

/// One case's result from its rounds, logged. No rounds is an error
/// naming the case: `Spread::of` would make zeros of them, which the
/// report would judge as if measured.
pub(super) fn recorded(
    hook_name: &str,
    name: &str,
    ns: &[f64],
    repeat: u32,
    rounds: u32,
) -> anyhow::Result<ModeCase> {
    if ns.is_empty() {
        bail!("{hook_name} {name}: no rounds were measured ({rounds} asked for)");
    }
    let spread = Spread::of(ns);
    eprintln!(
        "bench: {hook_name:<3} {name:<44} {:>7.1} ns/packet (median of {rounds})",
        spread.median
    );
    Ok(ModeCase {
        name: name.to_owned(),
        hook: hook_name.to_owned(),
        ns_per_packet: spread,
        repeat,
        rounds,
        per_round: ns.to_vec(),
    })
}

/// Loads the two wrappers (not loaded by lbd).
pub(super) fn load_wrappers(bed: &mut NatBed) -> anyhow::Result<()> {
    let dataplane = &mut bed.bed.dataplane;
    dataplane
        .program(names::PROG_BENCH)
        .context("loading xdp_bench")?;
    let tc: &mut SchedClassifier = dataplane
        .ebpf_mut()
        .program_mut(names::PROG_TC_BENCH)
        .ok_or_else(|| anyhow!("no {} program", names::PROG_TC_BENCH))?
        .try_into()?;
    tc.load().context("loading tc_bench")?;
    Ok(())
}

/// Runs `case` `repeat` times per round through the hook's wrapper; ns
/// per packet per round. Fails unless every run counted `case.counter`.
pub(super) fn measure(
    bed: &mut NatBed,
    case: &Case,
    repeat: u32,
    rounds: u32,
) -> anyhow::Result<Vec<f64>> {
    let hook = bed.bed.hook;
    let dataplane = &mut bed.bed.dataplane;
    let (wrapper, fd) = match hook {
        Hook::Xdp => (
            Wrapper::Xdp,
            dataplane.program(names::PROG_LB)?.fd()?.try_clone()?,
        ),
        Hook::Tc => (Wrapper::Tc, dataplane.tc_program()?.fd()?.try_clone()?),
    };
    template::prepare(dataplane, wrapper, &fd, &case.frame, case.vary)?;
    let kept = Kept::now(bed);
    let half_open = if case.fresh {
        Some(super::tables::half_open_table(&mut bed.bed.dataplane)?)
    } else {
        None
    };
    // Warm up (a DSR ACK's first run creates its flow).
    test_run(bed, case, 1000)?;
    let mut ns = Vec::new();
    let before = bed.bed.counter(case.counter)?;
    let untouched_before = untouched_counts(bed, case)?;
    for _ in 0..rounds {
        if let Some(half_open) = &half_open {
            kept.restore(bed, half_open)?;
        }
        let flows_before = bed.bed.dataplane.flow_count();
        let got = test_run(bed, case, repeat)?;
        if case.held_in_conntrack {
            let grown = bed.bed.dataplane.flow_count().saturating_sub(flows_before);
            let left = half_open.as_ref().map_or(0, |t| t.count());
            check_held(case, u64::from(repeat), grown, left)?;
        }
        if let Err(error) = case.verdict.check(case.name, &bed.verdicts, got.0) {
            let counters: Vec<String> = bed
                .bed
                .dataplane
                .counters()?
                .into_iter()
                .filter(|(_, n)| *n != 0)
                .map(|(c, n)| format!("{} {n}", c.name()))
                .collect();
            bail!("{error}; counters: {}", counters.join(", "));
        }
        ns.push(got.1);
    }
    if let Some(half_open) = &half_open {
        kept.restore(bed, half_open)?;
    }
    let counted = bed.bed.counter(case.counter)? - before;
    let runs = u64::from(repeat) * u64::from(rounds);
    let untouched = grown_since(bed, case, &untouched_before)?;
    check_counted(case, runs, counted, &untouched)?;
    Ok(ns)
}

/// Each of `case`'s untouched counters as `bed` has it now.
fn untouched_counts(bed: &NatBed, case: &Case) -> anyhow::Result<Vec<(Counter, u64)>> {
    case.untouched
        .iter()
        .map(|&counter| Ok((counter, bed.bed.counter(counter)?)))
        .collect()
}

/// How much each counter of `before` (`untouched_counts`) has grown.
fn grown_since(
    bed: &NatBed,
    case: &Case,
    before: &[(Counter, u64)],
) -> anyhow::Result<Vec<(Counter, u64)>> {
    Ok(untouched_counts(bed, case)?
        .into_iter()
        .zip(before)
        .map(|((counter, now), (_, then))| (counter, now.saturating_sub(*then)))
        .collect())
}

/// Runs `case` as a real packet arrives at tc: one BPF_PROG_TEST_RUN per
/// packet (repeat 1) of the tc program itself, no wrapper, each on a
/// fresh skb, so nothing is restored and no run sees what an earlier
/// one left on its skb (the encapsulation mark a tunnel wrap sets makes
/// the next flagged grow fail). `per_round` packets per round, the
/// round's median ns per packet (the kernel times one run, so each
/// includes one read of its clock, and the program finds the caches as
/// the syscall left them: the same for every case measured this way,
/// not comparable with the wrapper's repeated runs). `case.vary` is
/// applied here, as the wrapper does.
/// Fails unless every packet counted `case.counter`.
pub(super) fn measure_fresh(
    bed: &mut NatBed,
    case: &Case,
    per_round: u32,
    rounds: u32,
) -> anyhow::Result<Vec<f64>> {
    if bed.bed.hook != Hook::Tc {
        bail!("{}: fresh-skb runs are for tc", case.name);
    }
    let mut frame = case.frame.clone();
    let mut runs = 0u32;
    let mut vary = |frame: &mut Vec<u8>| {
        runs = runs.wrapping_add(1);
        case.vary.apply(frame, runs);
    };
    let kept = Kept::now(bed);
    let half_open = if case.fresh {
        Some(super::tables::half_open_table(&mut bed.bed.dataplane)?)
    } else {
        None
    };
    // Warm up (a DSR ACK's first run creates its flow).
    for _ in 0..1000 {
        vary(&mut frame);
        run_fresh(bed, case, &frame)?;
    }
    let before = bed.bed.counter(case.counter)?;
    let untouched_before = untouched_counts(bed, case)?;
    let mut medians = Vec::new();
    for _ in 0..rounds {
        if let Some(half_open) = &half_open {
            kept.restore(bed, half_open)?;
        }
        let mut ns = Vec::with_capacity(per_round as usize);
        for _ in 0..per_round {
            vary(&mut frame);
            let (verdict, took) = run_fresh(bed, case, &frame)?;
            case.verdict.check(case.name, &bed.verdicts, verdict)?;
            ns.push(took);
        }
        medians.push(Spread::of(&ns).median);
    }
    if let Some(half_open) = &half_open {
        kept.restore(bed, half_open)?;
    }
    let counted = bed.bed.counter(case.counter)? - before;
    let runs = u64::from(per_round) * u64::from(rounds);
    let untouched = grown_since(bed, case, &untouched_before)?;
    check_counted(case, runs, counted, &untouched)?;
    Ok(medians)
}

/// One BPF_PROG_TEST_RUN of the tc program itself on `frame`, repeat 1:
/// (verdict, ns).
fn run_fresh(bed: &mut NatBed, case: &Case, frame: &[u8]) -> anyhow::Result<(u32, f64)> {
    let mut out = vec![0u8; frame.len() + 256];
    // struct __sk_buff up to `ifindex` (offset 40).
    let mut skb = vec![0u8; 44];
    skb[40..44].copy_from_slice(&case.ifindex.to_ne_bytes());
    let options = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&skb),
        repeat: 1,
        ..TestRunOptions::default()
    };
    let result = bed
        .bed
        .dataplane
        .tc_program()?
        .test_run(options)
        .context("BPF_PROG_TEST_RUN")?;
    Ok((result.return_value, result.duration.as_nanos() as f64))
}

/// One BPF_PROG_TEST_RUN of the hook's wrapper: (verdict, ns per run).
fn test_run(bed: &mut NatBed, case: &Case, repeat: u32) -> anyhow::Result<(u32, f64)> {
    let mut out = vec![0u8; case.frame.len() + 256];
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, ...
    let xdp_md: Vec<u8> = [0, case.frame.len() as u32, 0, case.ifindex, 0, 0]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect();
    // struct __sk_buff up to `ifindex` (offset 40).
    let mut skb = vec![0u8; 44];
    skb[40..44].copy_from_slice(&case.ifindex.to_ne_bytes());
    let hook = bed.bed.hook;
    let options = TestRunOptions {
        data_in: Some(&case.frame),
        data_out: Some(&mut out),
        ctx_in: Some(match hook {
            Hook::Xdp => &xdp_md,
            Hook::Tc => &skb,
        }),
        repeat,
        ..TestRunOptions::default()
    };
    let dataplane = &mut bed.bed.dataplane;
    let result = match hook {
        Hook::Xdp => dataplane.program(names::PROG_BENCH)?.test_run(options),
        Hook::Tc => {
            let tc: &mut SchedClassifier = dataplane
                .ebpf_mut()
                .program_mut(names::PROG_TC_BENCH)
                .ok_or_else(|| anyhow!("no {} program", names::PROG_TC_BENCH))?
                .try_into()?;
            tc.test_run(options)
        }
    }
    .context("BPF_PROG_TEST_RUN")?;
    Ok((result.return_value, result.duration.as_nanos() as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn_case() -> Case {
        Case {
            name: "a new flow (v4 SYN)",
            frame: Vec::new(),
            ifindex: 1,
            vary: V4_SRC.into(),
            counter: Counter::ConntrackHalfOpenNew,
            verdict: Expect::Bounce,
            fresh: true,
            untouched: NO_EVICTION,
            held_in_conntrack: true,
        }
    }

    #[test]
    fn a_case_with_no_rounds_is_refused_not_recorded_as_zeros() {
        let error = recorded("xdp", DSR_TRACKED, &[], 100, 0).expect_err("nothing measured");
        let text = error.to_string();
        assert!(text.contains(DSR_TRACKED), "{text}");
        assert!(text.contains("no rounds"), "{text}");
        let case = recorded("tc", DSR_TRACKED, &[3.0, 1.0, 2.0], 100, 3).expect("measured");
        assert_eq!(case.ns_per_packet.median, 2.0);
        assert_eq!(case.per_round, [3.0, 1.0, 2.0]);
    }

    #[test]
    fn a_new_flow_run_that_evicted_is_refused() {
        let case = syn_case();
        let none: Vec<(Counter, u64)> = NO_EVICTION.iter().map(|c| (*c, 0)).collect();
        check_counted(&case, 100, 100, &none).expect("the named path");
        let error = check_counted(&case, 100, 99, &none).expect_err("short");
        assert!(
            error
                .to_string()
                .contains("99 conntrack_half_open_new for 100 runs"),
            "{error}"
        );
        for counter in NO_EVICTION {
            let grown: Vec<(Counter, u64)> = NO_EVICTION
                .iter()
                .map(|c| (*c, u64::from(c == counter)))
                .collect();
            let error = check_counted(&case, 100, 100, &grown).expect_err("evicted");
            assert!(
                error.to_string().contains(&format!("1 {}", counter.name())),
                "{error}"
            );
        }
        assert!(NO_EVICTION.contains(&Counter::ConntrackHalfOpenEvicted));
    }

    #[test]
    fn a_syn_round_must_fill_the_connection_table_not_the_half_open_one() {
        let case = syn_case();
        check_held(&case, 1000, 1000, 0).expect("every SYN held in the table");
        // Some SYNs found no free way and went half-open.
        assert!(check_held(&case, 1000, 990, 10).is_err());
        assert!(check_held(&case, 1000, 1000, 3).is_err());
        assert!(check_held(&case, 1000, 999, 0).is_err());
    }

    #[test]
    fn the_floor_is_passed_up() {
        let xdp = Verdicts::of(Hook::Xdp);
        Expect::Pass.check(FLOOR, &xdp, xdp.pass).expect("XDP_PASS");
        assert!(Expect::Pass.check(FLOOR, &xdp, xdp.bounce).is_err());
        let tc = Verdicts::of(Hook::Tc);
        Expect::Pass.check(FLOOR, &tc, tc.pass).expect("tc pass");
        assert!(Expect::Pass.check(FLOOR, &tc, tc.redirect).is_err());
    }

    #[test]
    fn each_case_takes_its_own_verdict_not_either() {
        let xdp = Verdicts::of(Hook::Xdp);
        Expect::Redirect
            .check(NAT_TRACKED, &xdp, xdp.redirect)
            .expect("a redirect");
        Expect::Bounce
            .check(DSR_TRACKED, &xdp, xdp.bounce)
            .expect("XDP_TX");
        let error = Expect::Redirect
            .check(NAT_TRACKED, &xdp, xdp.bounce)
            .expect_err("a NAT flow bounced");
        assert!(error.to_string().contains("returned 3, not 4"), "{error}");
        assert!(Expect::Bounce
            .check(DSR_TRACKED, &xdp, xdp.redirect)
            .is_err());
        assert!(Expect::Redirect.check(NAT_NEW, &xdp, xdp.pass).is_err());
        // tc has one verdict for both.
        let tc = Verdicts::of(Hook::Tc);
        Expect::Bounce
            .check(DSR_TRACKED, &tc, tc.redirect)
            .expect("tc");
        assert!(Expect::Redirect.check(NAT_NEW, &tc, tc.drop).is_err());
    }
}
