//! The forwarding modes' per-packet costs at both hooks: NAT and the
//! tunnels against DSR, with their targets.

use std::fmt::Write as _;

use super::above_floor_ratio;
use crate::bench::mode_cases::{ModeCase, ModeResults};

/// The per-case table of a section measured at both hooks (NAT, tunnel,
/// decap): hook, case, min / median / max ns per packet, runs; then a
/// blank line.
pub(crate) fn hook_case_table<'a>(
    out: &mut String,
    cases: impl Iterator<Item = (&'a str, &'a str, &'a crate::bench::Spread, u32, u32)>,
) {
    let _ = writeln!(out, "| hook | case | min | median | max | runs |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
    for (hook, name, ns, rounds, repeat) in cases {
        let _ = writeln!(
            out,
            "| {hook} | {name} | {:.1} | **{:.1}** | {:.1} | {rounds} × {repeat} |",
            ns.min, ns.median, ns.max
        );
    }
    let _ = writeln!(out);
}

/// `hook_case_table` of the NAT or tunnel pass's cases.
fn case_table(out: &mut String, cases: &[ModeCase]) {
    hook_case_table(
        out,
        cases.iter().map(|c| {
            (
                c.hook.as_str(),
                c.name.as_str(),
                &c.ns_per_packet,
                c.rounds,
                c.repeat,
            )
        }),
    );
}

/// NAT against DSR, per hook, with the target's ratio.
pub(super) fn nat_section(out: &mut String, nat: &ModeResults) {
    use crate::bench::nat::{
        DSR_TRACKED, FLOOR, NAT_NEW, NAT_NEW_VARIED_PORTS, NAT_REPLY, NAT_TRACKED,
        NAT_TRACKED_HASHED,
    };
    let _ = writeln!(
        out,
        "## NAT mode, ns per packet (BPF_PROG_TEST_RUN, XDP and tc)\n"
    );
    let _ = writeln!(
        out,
        "The real object, filled by the real control plane with a DSR VIP and a NAT VIP (three routed backends on port 8080), run through the restoring wrappers (`xdp_bench`, `tc_bench`, so the wrapper's floor is in every row; the *floor* row, an ARP frame the program passes up at its first test, measured at each hook on the same object in the same rounds as the tracked rows, is that floor plus the program's entry and one counter) from a thread inside a network namespace with routes and neighbours, as the FIB lookups need; each case checks with the program's counters that every run took the named path. The NAT tracked and reply rows use the flow's cached next hop; the tracked flow's source port is its checksum-neutral one (client port + VIP port = NAT port + backend port, one's complement: the ports' rewrite leaves the TCP checksum as it is, so at tc one checksum helper call instead of two), which a new flow gets whenever that port is free and in range; the *hashed port* row is a flow of a second NAT VIP whose range leaves that port out; the new-flow row changes the client address on every run (backend pick, source-port allocation, two exclusive inserts into the NAT bucket table, FIB lookup), each round from an emptied NAT table, connection table and half-open table; its client port stays the same, so once a backend has a flow every later one finds its neutral port taken and pays that try before the hashed search (the worst case). The *varied client ports* row also gives every run a client port spread over 1024–65535 as clients' ephemeral ports are (one more 2-byte store in the wrapper), so the neutral port is free as often as for real clients (the common case). Target: NAT tracked flow ≤ 1.5 × DSR tracked flow at the same hook, judged on the cost above the floor (each round: (NAT − floor) / (DSR − floor)), as the connection-table comparison is; the whole-cost ratio (floor included, which pulls it towards 1) is shown beside it.\n"
    );
    case_table(out, &nat.cases);
    for hook in ["xdp", "tc"] {
        let (Some(dsr), Some(tracked)) = (nat.case(DSR_TRACKED, hook), nat.case(NAT_TRACKED, hook))
        else {
            let _ = writeln!(
                out,
                "- {hook}: NAT tracked / DSR tracked not measured (target ≤ 1.5×)."
            );
            continue;
        };
        let (t, d) = (tracked.ns_per_packet.median, dsr.ns_per_packet.median);
        // Judged round by round where the rounds ran side by side; a
        // whole cost is above a floor of 0 and held to the same premise.
        let whole = match whole_pairs(tracked, dsr) {
            Some(pairs) => above_floor_ratio(&pairs, false, "NAT tracked", "DSR tracked").map(|r| {
                (
                    r.median,
                    format!(
                        "median of the rounds' ratios (min {:.2}, max {:.2}); medians {t:.1} / {d:.1}",
                        r.min, r.max
                    ),
                )
            }),
            None => above_floor_ratio(&[(t, d)], true, "NAT tracked", "DSR tracked")
                .map(|r| (r.median, format!("{t:.1} / {d:.1}"))),
        };
        let verdict = |ratio: f64| {
            if ratio <= NAT_MAX {
                "met"
            } else {
                "**not met**"
            }
        };
        let printed = |ratio: f64| super::beside_target(ratio, NAT_MAX, 2);
        let whole_text = match &whole {
            Ok((ratio, how)) => format!("{}× ({how})", printed(*ratio)),
            Err(why) => format!("not judged ({why})"),
        };
        let judged = match (nat.case(FLOOR, hook), &whole) {
            (Some(floor), _) => match above_floor(tracked, dsr, floor) {
                Ok((ratio, how)) => format!(
                    "NAT tracked / DSR tracked above the floor = **{}×** ({how}; target ≤ 1.5×: {}); whole cost, floor included: {whole_text}",
                    printed(ratio),
                    verdict(ratio)
                ),
                Err(why) => format!(
                    "NAT tracked / DSR tracked above the floor: not judged ({why}; target ≤ 1.5×); whole cost, floor included: {whole_text}"
                ),
            },
            // Older results measured no floor.
            (None, Ok((ratio, how))) => format!(
                "NAT tracked / DSR tracked = **{}×** ({how}; floor included: this run measured none; target ≤ 1.5×: {})",
                printed(*ratio),
                verdict(*ratio)
            ),
            (None, Err(why)) => format!(
                "NAT tracked / DSR tracked: not judged ({why}; floor included: this run measured none; target ≤ 1.5×)"
            ),
        };
        let _ = writeln!(
            out,
            "- {hook}: {judged}; reply {:.1} ns, new flow {:.1} ns (varied client ports: {}).",
            nat.median(NAT_REPLY, hook).unwrap_or(f64::NAN),
            nat.median(NAT_NEW, hook).unwrap_or(f64::NAN),
            nat.median(NAT_NEW_VARIED_PORTS, hook)
                .map_or_else(|| "not measured".to_owned(), |ns| format!("{ns:.1} ns")),
        );
        if let Some(hashed) = nat.case(NAT_TRACKED_HASHED, hook) {
            if let Some(r) = hashed.paired(dsr, |a, b| a / b) {
                let _ = writeln!(
                    out,
                    "  - {hook}, a tracked flow on a hashed port: {:.2}× DSR tracked (median of the rounds' ratios; medians {:.1} / {d:.1}).",
                    r.median, hashed.ns_per_packet.median
                );
            }
        }
    }
    let _ = writeln!(out);
}

/// The NAT target: a tracked flow at most this many times DSR's, above
/// the floor.
const NAT_MAX: f64 = 1.5;

/// Each round's (`case`, `base`) where both kept as many rounds (they ran
/// side by side), else None (older results).
fn whole_pairs(case: &ModeCase, base: &ModeCase) -> Option<Vec<(f64, f64)>> {
    (!case.per_round.is_empty() && case.per_round.len() == base.per_round.len()).then(|| {
        case.per_round
            .iter()
            .copied()
            .zip(base.per_round.iter().copied())
            .collect()
    })
}

/// (`case` − `floor`) / (`base` − `floor`): the median of the rounds'
/// ratios where all three ran in the same rounds, else the ratio of the
/// medians above the floor's median; with how it was taken. Judged only
/// on its premise (`above_floor_ratio`): else why not, naming the round
/// and the case.
pub(crate) fn above_floor(
    case: &ModeCase,
    base: &ModeCase,
    floor: &ModeCase,
) -> Result<(f64, String), String> {
    let (c, b, f) = (
        case.ns_per_packet.median,
        base.ns_per_packet.median,
        floor.ns_per_packet.median,
    );
    let (case_name, base_name) = (case.name.as_str(), base.name.as_str());
    let n = floor.per_round.len();
    if n > 0 && case.per_round.len() == n && base.per_round.len() == n {
        let pairs: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                (
                    case.per_round[i] - floor.per_round[i],
                    base.per_round[i] - floor.per_round[i],
                )
            })
            .collect();
        let r = above_floor_ratio(&pairs, false, case_name, base_name)?;
        return Ok((
            r.median,
            format!(
                "median of the rounds' ratios of cost above the floor, each round all three in turn (min {:.2}, max {:.2}); medians {c:.1}, {b:.1}, floor {f:.1}",
                r.min, r.max
            ),
        ));
    }
    let r = above_floor_ratio(&[(c - f, b - f)], true, case_name, base_name)?;
    Ok((r.median, format!("({c:.1} − {f:.1}) / ({b:.1} − {f:.1})")))
}

pub(super) fn tunnel_section(out: &mut String, tunnel: &ModeResults) {
    use crate::bench::tunnel::{
        DSR_TRACKED, DSR_TRACKED_FRESH, GUE_NEW, GUE_TRACKED, IPIP_NEW, IPIP_TRACKED,
        IPIP_TRACKED_ONE_ARMED, IPIP_TRACKED_ONE_ARMED_FRESH,
    };
    let _ = writeln!(
        out,
        "## Tunnel modes, ns per packet (BPF_PROG_TEST_RUN, XDP and tc)\n"
    );
    let _ = writeln!(
        out,
        "The real object with a DSR VIP, an `ipip` VIP and a `gue` VIP (three routed backends), run through the restoring wrappers (`xdp_bench`, `tc_bench`: the wrapper's floor is in every row; at XDP it restores the frame's head on every run, grown or not, so it costs every case the same; at tc it also takes the outer header off again) from a thread inside a network namespace with routes and neighbours; each case checks with the program's counters that every run took the named path. Tracked rows: a flow in the connection table, the backend's next hop cached (no FIB lookup); new-flow rows change the client address on every run (Maglev pick and insert; the backend's next hop is cached after the first run), each round from emptied tables (the tracked rows' flows kept) in a connection table of lbd's default size, so every SYN is held in a free way of it: checked each round (the table grows by one flow a run, the half-open table stays empty, no eviction counted). At tc the wrapper's runs reuse one skb, which the kernel marks as encapsulated after the first wrap: every later run has its flagged room request refused and retried without the flags (see `Hook::grow_after_mac`), and the wrapper takes the outer header off with another room call, so those tc tunnel rows carry two helper calls a real packet does not. The two *fresh skb* rows measure at tc what one real packet pays instead: one BPF_PROG_TEST_RUN per packet of `tc_lb` itself (no wrapper, nothing restored, an skb never marked encapsulated), runs = rounds × packets, a round's value the median of its packets; each includes the kernel's clock read around a single run and the caches a syscall leaves (the same for both rows: compare the two with each other, not with the wrapper's rows). The one-armed ipip row's backend is routed out of the ingress interface, so its frame leaves with XDP_TX (tc: redirected to the ingress interface) as dsr-l2's does; the other tunnel rows' backends lie behind a second interface (XDP_REDIRECT through the devmap). Target: ipip tracked flow within 10 ns of dsr-l2 tracked flow, compared one-armed (the same way out).\n"
    );
    case_table(out, &tunnel.cases);
    for hook in ["xdp", "tc"] {
        let Some(dsr) = tunnel.case(DSR_TRACKED, hook) else {
            continue;
        };
        // The target compares like with like: one-armed ipip leaves by the
        // ingress interface as dsr-l2 does (older results lack the row:
        // then the two-armed one).
        let (one_armed, two_armed) = (
            tunnel.case(IPIP_TRACKED_ONE_ARMED, hook),
            tunnel.case(IPIP_TRACKED, hook),
        );
        if let Some(ipip) = one_armed.or(two_armed) {
            let what = if one_armed.is_some() {
                "ipip tracked (one-armed)"
            } else {
                "ipip tracked"
            };
            let judged = gap_judged(ipip, dsr);
            let _ = writeln!(
                out,
                "- {hook}: {what} − dsr-l2 tracked{judged}; two-armed ipip (redirect to another interface) {:.1} ns, gue tracked {:.1} ns; new flow: ipip {:.1} ns, gue {:.1} ns.",
                tunnel.median(IPIP_TRACKED, hook).unwrap_or(f64::NAN),
                tunnel.median(GUE_TRACKED, hook).unwrap_or(f64::NAN),
                tunnel.median(IPIP_NEW, hook).unwrap_or(f64::NAN),
                tunnel.median(GUE_NEW, hook).unwrap_or(f64::NAN),
            );
        }
        if let (Some(dsr), Some(ipip)) = (
            tunnel.case(DSR_TRACKED_FRESH, hook),
            tunnel.case(IPIP_TRACKED_ONE_ARMED_FRESH, hook),
        ) {
            let _ = writeln!(
                out,
                "- {hook}, one packet per run on a fresh skb: ipip tracked (one-armed) − dsr-l2 tracked{}.",
                gap_judged(ipip, dsr)
            );
        }
    }
    let _ = writeln!(out);
}

/// The tunnel target: ipip tracked at most this many ns above dsr-l2.
const TUNNEL_GAP_MAX_NS: f64 = 10.0;

/// " = **gap ns** (how; target ≤ 10 ns: verdict)" for `case` − `base`, or
/// ": not measured (…)" when either ran no rounds (a zero-round case's
/// spread is no measurement).
fn gap_judged(case: &ModeCase, base: &ModeCase) -> String {
    if case.rounds == 0 || base.rounds == 0 {
        return format!(": not measured (no rounds ran; target ≤ {TUNNEL_GAP_MAX_NS:.0} ns)");
    }
    let (gap, how) = gap(case, base);
    format!(
        " = **{} ns** ({how}; target ≤ {TUNNEL_GAP_MAX_NS:.0} ns: {})",
        super::beside_target(gap, TUNNEL_GAP_MAX_NS, 1),
        if gap <= TUNNEL_GAP_MAX_NS {
            "met"
        } else {
            "**not met**"
        }
    )
}

/// `case` − `base`: the median of the rounds' differences where the
/// rounds ran side by side, else the difference of the medians; with how
/// it was taken.
fn gap(case: &ModeCase, base: &ModeCase) -> (f64, String) {
    let (c, b) = (case.ns_per_packet.median, base.ns_per_packet.median);
    match case.paired(base, |a, b| a - b) {
        Some(d) => (
            d.median,
            format!(
                "median of the rounds' differences, each round both cases in turn (min {:.1}, max {:.1}); medians {c:.1} − {b:.1}",
                d.min, d.max
            ),
        ),
        None => (c - b, format!("{c:.1} − {b:.1}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Spread;

    fn case(name: &str, per_round: &[f64]) -> ModeCase {
        ModeCase {
            name: name.to_owned(),
            hook: "xdp".to_owned(),
            ns_per_packet: Spread::of(per_round),
            repeat: 1000,
            rounds: per_round.len() as u32,
            per_round: per_round.to_vec(),
        }
    }

    #[test]
    fn the_nat_target_is_judged_above_the_floor() {
        use crate::bench::nat::{DSR_TRACKED, FLOOR, NAT_TRACKED};
        // Whole costs 1.4× apart, above a 20 ns floor 1.6× apart.
        let floor = case(FLOOR, &[20.0, 20.0, 20.0]);
        let dsr = case(DSR_TRACKED, &[70.0, 70.0, 70.0]);
        let nat = case(NAT_TRACKED, &[100.0, 100.0, 100.0]);
        let (ratio, how) = above_floor(&nat, &dsr, &floor).expect("judged");
        assert!((ratio - 1.6).abs() < 1e-9, "{ratio}");
        assert!(how.contains("rounds' ratios"), "{how}");
        // Round by round: each round's own floor.
        let floor = case(FLOOR, &[10.0, 30.0]);
        let dsr = case(DSR_TRACKED, &[60.0, 80.0]);
        let nat = case(NAT_TRACKED, &[85.0, 105.0]);
        let (ratio, _) = above_floor(&nat, &dsr, &floor).expect("judged");
        assert!((ratio - 1.5).abs() < 1e-9, "{ratio}");
        // Without rounds side by side: the medians.
        let mut lone = case(FLOOR, &[20.0]);
        lone.per_round.clear();
        let (ratio, how) = above_floor(
            &case(NAT_TRACKED, &[100.0]),
            &case(DSR_TRACKED, &[70.0]),
            &lone,
        )
        .expect("judged");
        assert!((ratio - 1.6).abs() < 1e-9);
        assert!(how.contains("(100.0 − 20.0) / (70.0 − 20.0)"), "{how}");

        let results = ModeResults {
            date: String::new(),
            cases: vec![
                case(FLOOR, &[20.0, 20.0, 20.0]),
                case(DSR_TRACKED, &[70.0, 70.0, 70.0]),
                case(NAT_TRACKED, &[100.0, 100.0, 100.0]),
            ],
        };
        let mut out = String::new();
        nat_section(&mut out, &results);
        assert!(
            out.contains("above the floor = **1.60×**") && out.contains("not met"),
            "{out}"
        );
        assert!(out.contains("whole cost, floor included: 1.43×"), "{out}");
        // Older results without a floor: judged on whole cost, said so.
        let older = ModeResults {
            date: String::new(),
            cases: results.cases[1..].to_vec(),
        };
        let mut out = String::new();
        nat_section(&mut out, &older);
        assert!(
            out.contains("= **1.43×**") && out.contains("this run measured none"),
            "{out}"
        );
    }
    #[test]
    fn a_nat_ratio_whose_base_is_within_the_floor_is_not_judged() {
        use crate::bench::nat::{DSR_TRACKED, FLOOR, NAT_TRACKED};
        // DSR under its floor in every round: (18 − 20) / (15 − 20) = 0.4.
        let results = ModeResults {
            date: String::new(),
            cases: vec![
                case(FLOOR, &[20.0, 20.0]),
                case(DSR_TRACKED, &[15.0, 15.0]),
                case(NAT_TRACKED, &[18.0, 18.0]),
            ],
        };
        let mut out = String::new();
        nat_section(&mut out, &results);
        assert!(!out.contains(": met"), "{out}");
        assert!(
            out.contains(&format!("NAT tracked / DSR tracked above the floor: not judged (round 1: {DSR_TRACKED} not more than 1 ns above the floor (-5.0 ns); target ≤ 1.5×)")),
            "{out}"
        );
        // The numerator alone below the floor.
        let results = ModeResults {
            date: String::new(),
            cases: vec![
                case(FLOOR, &[20.0, 20.0]),
                case(DSR_TRACKED, &[70.0, 70.0]),
                case(NAT_TRACKED, &[100.0, 18.0]),
            ],
        };
        let mut out = String::new();
        nat_section(&mut out, &results);
        assert!(!out.contains(": met"), "{out}");
        assert!(
            out.contains(&format!(
                "not judged (round 2: {NAT_TRACKED} below the floor (-2.0 ns)"
            )),
            "{out}"
        );
        // Nothing measured at a hook: said, not left out.
        assert!(
            out.contains("- tc: NAT tracked / DSR tracked not measured (target ≤ 1.5×)."),
            "{out}"
        );
    }

    #[test]
    fn a_nat_ratio_just_over_its_target_is_not_printed_as_the_target() {
        use crate::bench::nat::{DSR_TRACKED, FLOOR, NAT_TRACKED};
        // (95.02 − 20) / (70 − 20) = 1.5004.
        let results = ModeResults {
            date: String::new(),
            cases: vec![
                case(FLOOR, &[20.0]),
                case(DSR_TRACKED, &[70.0]),
                case(NAT_TRACKED, &[95.02]),
            ],
        };
        let mut out = String::new();
        nat_section(&mut out, &results);
        assert!(
            out.contains("above the floor = **1.5004×**")
                && out.contains("target ≤ 1.5×: **not met**"),
            "{out}"
        );
    }

    #[test]
    fn a_tunnel_gap_without_rounds_or_just_over_its_target_is_not_met() {
        use crate::bench::tunnel::{DSR_TRACKED, IPIP_TRACKED_ONE_ARMED};
        // No rounds ran: nothing to judge.
        let results = ModeResults {
            date: String::new(),
            cases: vec![case(DSR_TRACKED, &[]), case(IPIP_TRACKED_ONE_ARMED, &[])],
        };
        let mut out = String::new();
        tunnel_section(&mut out, &results);
        assert!(!out.contains(": met"), "{out}");
        assert!(out.contains("not measured"), "{out}");
        // 10.04 ns: not printed as 10.0.
        let results = ModeResults {
            date: String::new(),
            cases: vec![
                case(DSR_TRACKED, &[60.0]),
                case(IPIP_TRACKED_ONE_ARMED, &[70.04]),
            ],
        };
        let mut out = String::new();
        tunnel_section(&mut out, &results);
        assert!(
            out.contains("= **10.04 ns**") && out.contains("target ≤ 10 ns: **not met**"),
            "{out}"
        );
    }
}
