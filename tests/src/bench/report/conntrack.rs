//! BENCHMARKS.md's connection-table sections, from the results file: the
//! bucket table against the shared LRU with issue 16's targets, the map
//! designs side by side, the size sweep, the perf profile, and what each
//! design guarantees.

use std::fmt::Write as _;

use lb_common::flow_table::{FLOW_BYTES_PER_CONFIGURED_FLOW, FLOW_BYTES_PER_ENTRY};
use lb_userspace::conntrack::kind::ConntrackKind;

use crate::bench::{
    xdp::{
        XdpResults, CONNECTION_V4, FIRST_ACK_V4, FIRST_ACK_V6, FULL_TABLE_FLOOR, FULL_TABLE_V4,
        NON_VIP, TRACKED_V4, TRACKED_V6, WRAPPER_FLOOR,
    },
    xdp_designs::DesignResult,
    xdp_profile::ProfileResults,
};

fn buckets() -> &'static str {
    ConntrackKind::Buckets.label()
}

fn lru() -> &'static str {
    ConntrackKind::Lru.label()
}

/// A ratio target: new / old cost above the floor at most `max`.
struct Ratio {
    what: String,
    new: f64,
    old: f64,
    floor_new: f64,
    floor_old: f64,
    max: f64,
    /// Each round's (new, old), where the designs ran round by round:
    /// the ratio is then the median of the rounds' ratios.
    rounds: Vec<(f64, f64)>,
}

impl Ratio {
    /// The row: judged only when every round's (or, in older results,
    /// the medians') LRU cost is more than 1 ns above its floor and the
    /// buckets' not below it (`above_floor_ratio`); else "not judged" and
    /// why, since a ratio over almost nothing would pass for a met target.
    fn row(&self, out: &mut String) {
        let (new, old) = (self.new - self.floor_new, self.old - self.floor_old);
        let (pairs, of_medians) = if self.rounds.is_empty() {
            (vec![(new, old)], true)
        } else {
            let pairs = self
                .rounds
                .iter()
                .map(|(n, o)| (n - self.floor_new, o - self.floor_old))
                .collect();
            (pairs, false)
        };
        let (ratio, judged) = match super::above_floor_ratio(&pairs, of_medians, "buckets", lru()) {
            Ok(ratio) => (
                format!("**{}×**", super::beside_target(ratio.median, self.max, 2)),
                verdict(ratio.median <= self.max).to_owned(),
            ),
            Err(why) => ("–".to_owned(), format!("not judged: {why}")),
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {ratio} | ≤ {:.1}× | {judged} |",
            self.what, self.new, self.old, new, old, self.max,
        );
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**not met**"
    }
}

/// The bucket table against the shared LRU, with the targets.
pub fn comparison(out: &mut String, xdp: &XdpResults) {
    let at = |name: &str, design: &str, prefill: u64| xdp.median(name, design, prefill);
    // Each round's pair, when both designs kept their rounds.
    let rounds = |name: &str, prefill: u64| -> Vec<(f64, f64)> {
        let of = |design: &str| {
            xdp.cases
                .iter()
                .find(|c| c.name == name && c.design == design && c.conntrack_prefill == prefill)
                .map(|c| c.per_round.clone())
                .unwrap_or_default()
        };
        let (new, old) = (of(buckets()), of(lru()));
        if new.len() == old.len() {
            new.into_iter().zip(old).collect()
        } else {
            Vec::new()
        }
    };
    let (Some(floor_b), Some(floor_l)) =
        (at(WRAPPER_FLOOR, buckets(), 0), at(WRAPPER_FLOOR, lru(), 0))
    else {
        return;
    };
    let big = xdp
        .cases
        .iter()
        .find(|c| c.conntrack_prefill > 0)
        .map_or(0, |c| c.conntrack_prefill);
    let _ = writeln!(
        out,
        "### The bucket table against the shared LRU (issue 16)\n"
    );
    let _ = writeln!(
        out,
        "From the table above: the bucket table (`{}`, lbd's default since issue 16) and the shared LRU (the default before it), the same program and packets, measured case by case in this run. Cost above the floor = the case's median − the wrapper floor measured on the same objects in the same pass (the empty pass's {floor_b:.1} ns and {floor_l:.1} ns; the prefilled pass's objects and the full-table case's measure their own; a row marked † is from older results that did not, and uses the empty pass's floor; twice the floor for a connection's two packets). The designs ran each case round by round (each round on both in turn): the ratio is the median of the rounds' ratios of cost above the floor. \"{}\" is a SYN round over N distinct flows, then the first ACK of each of the same flows (ns per connection).\n",
        buckets(),
        CONNECTION_V4
    );
    let _ = writeln!(
        out,
        "| case | buckets, ns | shared LRU, ns | buckets above floor | LRU above floor | buckets / LRU | target | |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
    // The prefilled pass only when it ran (`--prefill 0` skips it).
    let mut passes = vec![(0u64, format!("{} entries, empty", xdp.conntrack_capacity))];
    if big > 0 {
        passes.push((
            big,
            format!("{} entries, {big} flows in it", xdp.prefill_capacity),
        ));
    }
    // The floor measured on a pass's own objects (older results: the
    // empty pass's, marked).
    let floors =
        |name: &str, prefill: u64| match (at(name, buckets(), prefill), at(name, lru(), prefill)) {
            (Some(b), Some(l)) => (b, l, ""),
            _ => (floor_b, floor_l, " †"),
        };
    for (prefill, table) in &passes {
        let (floor_b, floor_l, mark) = floors(WRAPPER_FLOOR, *prefill);
        // A SYN of a new flow is held as a handshake in either design
        // (NEW_V4, NEW_V6: the bucket table in a free way, the LRU in the
        // half-open table), so the designs compare on a new flow's first
        // ACK (its insert into the connection table) and on a connection
        // (SYN and first ACK).
        for (name, packets, max) in [
            (FIRST_ACK_V4, 1.0, 0.5),
            (FIRST_ACK_V6, 1.0, 0.5),
            (CONNECTION_V4, 2.0, 0.6),
        ] {
            if let (Some(new), Some(old)) =
                (at(name, buckets(), *prefill), at(name, lru(), *prefill))
            {
                Ratio {
                    what: format!("{name} ({table}){mark}"),
                    new,
                    old,
                    floor_new: floor_b * packets,
                    floor_old: floor_l * packets,
                    max,
                    rounds: rounds(name, *prefill),
                }
                .row(out);
            }
        }
    }
    // The eviction path: measured side by side (older results: from the
    // designs table, each design on its own).
    if let (Some(new), Some(old)) = (at(FULL_TABLE_V4, buckets(), 0), at(FULL_TABLE_V4, lru(), 0)) {
        let (floor_b, floor_l, mark) = floors(FULL_TABLE_FLOOR, 0);
        Ratio {
            what: format!(
                "{FULL_TABLE_V4} ({} entries; eviction path){mark}",
                xdp.conntrack_capacity
            ),
            new,
            old,
            floor_new: floor_b,
            floor_old: floor_l,
            max: 0.6,
            rounds: rounds(FULL_TABLE_V4, 0),
        }
        .row(out);
    } else {
        let full = |d: &str| {
            xdp.designs
                .iter()
                .find(|r| r.design == d)
                .map(|r| r.full_table_new_flow.median)
        };
        if let (Some(new), Some(old)) = (full(buckets()), full(lru())) {
            Ratio {
                what: format!(
                    "TCP first ACK v4, new flow, full table ({} entries; eviction path; from the designs table) †",
                    xdp.conntrack_capacity
                ),
                new,
                old,
                floor_new: floor_b,
                floor_old: floor_l,
                max: 0.6,
                rounds: Vec::new(),
            }
            .row(out);
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| case | buckets, ns | shared LRU, ns | buckets − LRU | target | |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|");
    for (prefill, table) in &passes {
        for name in [TRACKED_V4, TRACKED_V6] {
            if let (Some(new), Some(old)) =
                (at(name, buckets(), *prefill), at(name, lru(), *prefill))
            {
                // The median of the rounds' differences where the designs
                // ran round by round.
                let pairs = rounds(name, *prefill);
                let gap = if pairs.is_empty() {
                    new - old
                } else {
                    let per_round: Vec<f64> = pairs.iter().map(|(n, o)| n - o).collect();
                    crate::bench::Spread::of(&per_round).median
                };
                let _ = writeln!(
                    out,
                    "| {name} ({table}) | {new:.1} | {old:.1} | **{} ns** | ≤ +3 ns | {} |",
                    super::beside_target_signed(gap, 3.0, 1),
                    verdict(gap <= 3.0)
                );
            }
        }
    }
    let old_max = xdp
        .cases
        .iter()
        .find(|c| c.name == NON_VIP && c.design == lru())
        .map(|c| c.ns_per_packet.max);
    if let (Some(new), Some(old), Some(old_max)) =
        (at(NON_VIP, buckets(), 0), at(NON_VIP, lru(), 0), old_max)
    {
        let _ = writeln!(
            out,
            "| {NON_VIP} | {} | {old:.1} | **{:+.1} ns** | no worse (≤ the LRU rounds' max, {old_max:.1}) | {} |",
            super::beside_target(new, old_max, 1),
            new - old,
            verdict(new <= old_max)
        );
    }
    let lost: Vec<String> = xdp
        .cases
        .iter()
        .filter(|c| c.name == CONNECTION_V4)
        .map(|c| {
            format!(
                "{} with {} flows in it: {} of {} × {}",
                c.design, c.conntrack_prefill, c.lost_flows, c.rounds, c.repeat
            )
        })
        .collect();
    if !lost.is_empty() {
        let _ = writeln!(
            out,
            "\nACKs of the connection case whose SYN's entry had already been evicted (evicted by a table or bucket that filled; the ACK then counts as a new flow): {}.\n",
            lost.join("; ")
        );
    }
}

/// The map designs side by side.
pub fn designs(out: &mut String, xdp: &XdpResults) {
    if xdp.designs.is_empty() {
        return;
    }
    let _ = writeln!(out, "### Connection-table designs\n");
    let per_round = xdp.designs.first().map_or(0, |d| d.repeat);
    let _ = writeln!(out, "The same program with the connection table as each candidate: lbd's bucket table (`FLOW_BUCKETS`, an mmapable array) or a kernel map (lbd rewrites the map definition at load time; the program runs the design lbd names in a read-only global). ns per packet, median (min–max); new-flow rounds start from an empty table and insert {per_round} flows each (a per-CPU LRU's share of one CPU; the main table's rounds insert more, and a new flow costs more the more distinct flows a round touches, see the size sweep); \"full table\" first fills the table through the program on the measuring CPU (the bucket table, which has twice the capacity in slots, with 8× the capacity, so that every bucket is full; the others with 9/8 of it). \"Kept\" inserts N distinct flows into an empty table and counts what it holds afterwards: a design that evicts before it is full drops live flows there. Memory: the kernel's account of the map (`memlock` in its fdinfo), per configured flow.\n");
    let _ = writeln!(out, "| design | entries | new flow v4 | new flow v6 | tracked v4 | new flow, full table | flows in the full table | what a new flow gets when full | kept of N = ½, ¾, 9/10, all of the capacity | userspace expiry (ns per flow) | memory per flow (bytes) |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|");
    let cell =
        |s: &crate::bench::Spread| format!("**{:.0}** ({:.0}–{:.0})", s.median, s.min, s.max);
    for d in &xdp.designs {
        let kept: Vec<String> = d
            .occupancy
            .iter()
            .map(|o| {
                format!(
                    "{:.2} %",
                    o.kept as f64 * 100.0 / f64::from(o.inserted.max(1))
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} |",
            d.design,
            d.capacity,
            cell(&d.new_flow_v4),
            cell(&d.new_flow_v6),
            cell(&d.tracked_v4),
            cell(&d.full_table_new_flow),
            d.full_table_flows,
            d.full_table_outcome,
            if kept.is_empty() {
                "–".to_owned()
            } else {
                kept.join(", ")
            },
            d.expiry_ns_per_flow,
            memory_per_flow(d).unwrap_or_else(|| "–".to_owned())
        );
    }
    let median = |name: &str, f: fn(&DesignResult) -> f64| {
        xdp.designs
            .iter()
            .find(|d| d.design == name)
            .map_or(f64::NAN, f)
    };
    let new_v4 = |d: &DesignResult| d.new_flow_v4.median;
    let full = |d: &DesignResult| d.full_table_new_flow.median;
    let _ = writeln!(
        out,
        "\nThe bucket table (lbd's default): new flow {:.0} ns, {:.0} ns into a full table; the shared LRU (the default before it): {:.0} ns, {:.0} ns. The plain hash ({:.0} ns; {:.0} ns when full) gives up the guarantee that every new flow is tracked: once the table is full, new flows go untracked (a later backend change can move them) until userspace has walked the table and deleted expired flows, at the cost in the last column per flow. The per-CPU LRU ({:.0} ns; {:.0} ns when full) splits the capacity between the CPUs and evicts only among the flows the inserting CPU added, so one busy CPU evicts live flows while others have room. The same buckets in a BPF arena (`BPF_MAP_TYPE_ARENA`) were tried in throwaway builds and not kept; no run of this report measured them: see docs/design/conntrack.md, \"A BPF arena instead of the array\".\n",
        median(buckets(), new_v4),
        median(buckets(), full),
        median(lru(), new_v4),
        median(lru(), full),
        median(ConntrackKind::Hash.label(), new_v4),
        median(ConntrackKind::Hash.label(), full),
        median(ConntrackKind::LruPerCpu.label(), new_v4),
        median(ConntrackKind::LruPerCpu.label(), full),
    );
}

/// `design`'s kernel memory per configured flow (its map's `memlock` over
/// its capacity, bytes), as the designs table shows it; None where the
/// run did not measure it (older results).
fn memory_per_flow(design: &DesignResult) -> Option<String> {
    (design.memory_bytes > 0).then(|| {
        format!(
            "{:.0}",
            design.memory_bytes as f64 / f64::from(design.capacity.max(1))
        )
    })
}

/// New flow by table size, the two designs side by side.
pub fn by_capacity(out: &mut String, xdp: &XdpResults) {
    if xdp.by_capacity.is_empty() {
        return;
    }
    let _ = writeln!(out, "### New flow by connection-table size\n");
    let _ = writeln!(
        out,
        "New v4 flows into an empty table of each size (each round from an empty table), the two designs loaded one after the other.\n"
    );
    let _ = writeln!(
        out,
        "| entries | runs per round | buckets, ns (min / median / max) | shared LRU, ns (min / median / max) | buckets / LRU |"
    );
    let _ = writeln!(out, "|---:|---:|---|---|---:|");
    let mut sizes: Vec<u32> = xdp.by_capacity.iter().map(|c| c.capacity).collect();
    sizes.dedup();
    for size in sizes {
        let find = |d: &str| {
            xdp.by_capacity
                .iter()
                .find(|c| c.capacity == size && c.design == d)
        };
        let cell = |c: Option<&crate::bench::xdp_designs::CapacityResult>| {
            c.map_or("–".to_owned(), |c| {
                format!(
                    "{:.0} / **{:.0}** / {:.0}",
                    c.new_flow_v4.min, c.new_flow_v4.median, c.new_flow_v4.max
                )
            })
        };
        let (b, l) = (find(buckets()), find(lru()));
        let ratio = match (b, l) {
            (Some(b), Some(l)) => format!("{:.2}×", b.new_flow_v4.median / l.new_flow_v4.median),
            _ => "–".to_owned(),
        };
        let repeat = b.or(l).map_or(0, |c| c.repeat);
        let _ = writeln!(
            out,
            "| {size} | {repeat} | {} | {} | {ratio} |",
            cell(b),
            cell(l)
        );
    }
    // The LRU's from the results (the designs table's column), not a
    // number written here.
    const LRU_PARTS: &str = "the 40-byte key, the 24-byte value and the kernel's element header, plus its hash bucket and LRU node lists";
    let lru_memory = xdp
        .designs
        .iter()
        .find(|d| d.design == lru())
        .and_then(memory_per_flow)
        .map_or_else(
            || format!("in the LRU hash {LRU_PARTS} (not measured in this run)"),
            |bytes| {
                format!(
                    "about {bytes} in the LRU hash ({LRU_PARTS}; measured in the designs table)"
                )
            },
        );
    let _ = writeln!(out, "\nA new flow touches a random bucket of the table, so its cost grows with the table's memory as that stops fitting in the caches: {FLOW_BYTES_PER_CONFIGURED_FLOW} bytes per configured flow in the bucket table ({FLOW_BYTES_PER_ENTRY} per slot: a 64-byte line per way plus its share of the bucket's tag line; twice the slots), {lru_memory}. Ratios here include the wrapper floor.\n");
}

/// The perf profile of the new-flow path.
pub fn profile(out: &mut String, profile: &ProfileResults) {
    let _ = writeln!(out, "### Where a new flow's time goes (perf)\n");
    let _ = writeln!(out, "Command: `{}`.\n", profile.command);
    if let Some(error) = &profile.error {
        let _ = writeln!(out, "No profile in this run: {error}.\n");
        return;
    }
    let _ = writeln!(out, "Samples taken inside BPF_PROG_TEST_RUN (the call chain passes through `bpf_prog_test_run_xdp`), by the function they landed in; ns = the share × the median ns per packet of the profiled rounds (perf running, wrapper included). JIT-ed BPF code is listed by program name (`bpf_prog_<tag>_<name>` in kallsyms). The kernel lists every subprogram of this object as `F` (no function names reach it at load) (the packet path's functions, the bucket table's claim `lb_flow_claim`); they are told apart by their tag (a hash of their code), not by name. In the bucket table the table's memory is read by the program itself, so its cache misses land in the BPF rows; in the LRU hash they land in the kernel's map functions.\n");
    for d in &profile.designs {
        let _ = writeln!(
            out,
            "**{}** — {}, table of {} entries holding {} other flows: {:.1} ns per packet (median; {:.1}–{:.1}), {} samples.\n",
            d.design,
            d.case,
            d.capacity,
            d.prefill,
            d.ns_per_packet.median,
            d.ns_per_packet.min,
            d.ns_per_packet.max,
            d.samples
        );
        let _ = writeln!(out, "| function | share of samples | ≈ ns per packet |");
        let _ = writeln!(out, "|---|---:|---:|");
        for r in &d.rows {
            let symbol = match r
                .symbol
                .strip_prefix("F ")
                .and_then(|t| t.strip_suffix(" (BPF)"))
            {
                Some(tag) => format!("lbd's BPF subprogram `F`, tag {tag}"),
                None => format!("`{}`", r.symbol),
            };
            let _ = writeln!(out, "| {symbol} | {:.1} % | {:.1} |", r.share_pct, r.ns);
        }
        let _ = writeln!(out);
    }
}

/// What each design keeps of the connection table's guarantees.
pub fn guarantees(out: &mut String) {
    let _ = writeln!(out, "### What each design guarantees\n");
    let _ = writeln!(out, "| design | a new flow when the table (or its bucket) is full | who is evicted | enumeration, pinning across restarts | memory per flow |");
    let _ = writeln!(out, "|---|---|---|---|---:|");
    let _ = writeln!(out, "| {} (lbd's default) | always inserted, never refused | only once both of the flow's buckets of 8 ways are full (the table has twice the configured flows in slots, and a flow goes to the emptier of its two buckets when its first is nearly full, so that does not happen while the table holds no more than the configured flows; see \"kept\" above): a closed flow (FIN/RST seen), else an expired one, else a half-open one, else the least recently seen of the first bucket's 8 | lbd walks the mmapped array (replication, drain, `lbctl flow`, metrics); the map is pinned and adopted; an LRU table left pinned by an earlier lbd is carried over | {FLOW_BYTES_PER_CONFIGURED_FLOW} bytes per configured flow ({FLOW_BYTES_PER_ENTRY} per slot), preallocated |", buckets());
    let _ = writeln!(out, "| {} (the default before) | inserted | the kernel's least recently used flow across the whole table, live or not (no notion of closed or half-open) | map iteration; pinned | over 100 bytes (element header, 40-byte key, 24-byte value, LRU node), preallocated |", lru());
    let _ = writeln!(out, "| {} | inserted | the least recently used among the flows the inserting CPU added: one busy CPU evicts live flows while others have room | map iteration; pinned | as the shared LRU |", ConntrackKind::LruPerCpu.label());
    let _ = writeln!(out, "| {} | refused: forwarded by Maglev but untracked until userspace expires flows | nothing (userspace deletes expired flows) | map iteration; pinned | as the shared LRU |\n", ConntrackKind::Hash.label());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Spread;

    #[test]
    fn a_ratio_whose_base_is_within_the_floor_is_not_judged() {
        // The LRU case at the floor in every round: no ratio to judge.
        let mut out = String::new();
        Ratio {
            what: "first ACK".to_owned(),
            new: 300.0,
            old: 12.0,
            floor_new: 12.0,
            floor_old: 12.0,
            max: 0.5,
            rounds: vec![(300.0, 12.0); 3],
        }
        .row(&mut out);
        assert!(!out.contains("| met |"), "{out}");
        assert!(
            out.contains("not judged: round 1: shared LRU not more than 1 ns above the floor"),
            "{out}"
        );
        // Buckets below the floor in one round: not judged either.
        let mut out = String::new();
        Ratio {
            what: "first ACK".to_owned(),
            new: 40.0,
            old: 112.0,
            floor_new: 30.0,
            floor_old: 12.0,
            max: 0.5,
            rounds: vec![(40.0, 112.0), (20.0, 112.0), (40.0, 112.0)],
        }
        .row(&mut out);
        assert!(!out.contains("| met |"), "{out}");
        assert!(
            out.contains("not judged: round 2: buckets below the floor"),
            "{out}"
        );
        // Older results (medians only): the medians' premise.
        let mut out = String::new();
        Ratio {
            what: "first ACK".to_owned(),
            new: 300.0,
            old: 12.5,
            floor_new: 12.0,
            floor_old: 12.0,
            max: 0.5,
            rounds: Vec::new(),
        }
        .row(&mut out);
        assert!(out.contains("not judged: the medians"), "{out}");
        // Judged: 0.4999 is not printed as the target.
        let mut out = String::new();
        Ratio {
            what: "first ACK".to_owned(),
            new: 60.0,
            old: 100.0,
            floor_new: 20.0,
            floor_old: 20.0,
            max: 0.5,
            rounds: vec![(59.992, 100.0)],
        }
        .row(&mut out);
        assert!(out.contains("| **0.4999×** | ≤ 0.5× | met |"), "{out}");
    }

    #[test]
    fn a_tracked_gap_just_over_its_target_is_not_printed_as_the_target() {
        use crate::bench::xdp::{XdpCase, XdpResults};
        let case = |design: &str, ns: f64| XdpCase {
            name: TRACKED_V4.to_owned(),
            path: "XDP_TX".to_owned(),
            ns_per_packet: Spread::of(&[ns]),
            repeat: 1000,
            rounds: 1,
            conntrack_prefill: 0,
            design: design.to_owned(),
            capacity: 1000,
            lost_flows: 0,
            per_round: vec![ns],
        };
        let floor = |design: &str| XdpCase {
            name: WRAPPER_FLOOR.to_owned(),
            ..case(design, 20.0)
        };
        let xdp = XdpResults {
            cases: vec![
                floor(buckets()),
                floor(lru()),
                case(buckets(), 103.04),
                case(lru(), 100.0),
            ],
            conntrack_capacity: 1000,
            prefill_capacity: 8000,
            designs: Vec::new(),
            by_capacity: Vec::new(),
        };
        let mut out = String::new();
        comparison(&mut out, &xdp);
        assert!(
            out.contains("**+3.04 ns** | ≤ +3 ns | **not met** |"),
            "{out}"
        );
    }

    #[test]
    fn the_designs_prose_states_no_unmeasured_figure() {
        use crate::bench::xdp::XdpResults;
        let design = |label: &str| DesignResult {
            design: label.to_owned(),
            capacity: 1000,
            repeat: 500,
            new_flow_v4: Spread::of(&[500.0]),
            new_flow_v6: Spread::of(&[550.0]),
            tracked_v4: Spread::of(&[130.0]),
            full_table_new_flow: Spread::of(&[600.0]),
            full_table_outcome: "inserted".to_owned(),
            full_table_flows: 1000,
            expiry_ns_per_flow: 150.0,
            occupancy: Vec::new(),
            memory_bytes: 0,
        };
        let xdp = XdpResults {
            cases: Vec::new(),
            conntrack_capacity: 1000,
            prefill_capacity: 8000,
            designs: vec![design(buckets()), design(lru())],
            by_capacity: Vec::new(),
        };
        let mut out = String::new();
        designs(&mut out, &xdp);
        assert!(!out.contains("4–7 ns"), "{out}");
        assert!(!out.contains("dearer"), "{out}");
        assert!(
            out.contains("docs/design/conntrack.md, \"A BPF arena instead of the array\""),
            "{out}"
        );
    }
}
