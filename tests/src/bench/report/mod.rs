//! BENCHMARKS.md and a plot, regenerated from the results file: only what
//! was measured, with the machine, the command and the date. One file per
//! part of the report; this one puts them in order.

mod cluster;
mod conntrack;
mod e2e;
mod guard;
mod maglev;
mod memory;
mod modes;
#[cfg(test)]
mod tests;
mod xdp;

use std::fmt::Write as _;

use super::{Machine, Results};
pub(super) use modes::hook_case_table;
pub use xdp::xdp_svg;

/// The machine line under the title: one machine when every section
/// records the same one (or the file is one run's), else a pointer to
/// the sections' table, which then lists each section's.
fn machine_line(results: &Results) -> String {
    let m = &results.machine;
    let recorded: Vec<Option<String>> = results
        .measured
        .values()
        .map(|run| run.machine.as_ref().map(Machine::host))
        .collect();
    if recorded.iter().all(Option::is_none) {
        if results.measured.is_empty() {
            return format!("Machine: {}.", m.host());
        }
        return format!(
            "Machine of the last run ({}): {}. The sections' runs did not record their machines.",
            m.date,
            m.host()
        );
    }
    let mut hosts: Vec<&String> = recorded.iter().flatten().collect();
    hosts.sort();
    hosts.dedup();
    if hosts.len() == 1 && recorded.iter().all(Option::is_some) {
        return format!("Machine: {}.", hosts[0]);
    }
    format!(
        "Machines: see each section in the table below ({} recorded{}).",
        hosts.len(),
        if recorded.iter().any(Option::is_none) {
            ", some sections' runs did not record theirs"
        } else {
            ""
        }
    )
}

/// Whether the sections' table needs a machine column: they record more
/// than one machine, or some record one and others none.
fn machines_differ(results: &Results) -> bool {
    let recorded: Vec<Option<String>> = results
        .measured
        .values()
        .map(|run| run.machine.as_ref().map(Machine::host))
        .collect();
    let mut hosts: Vec<&String> = recorded.iter().flatten().collect();
    hosts.sort();
    hosts.dedup();
    hosts.len() > 1 || (hosts.len() == 1 && recorded.iter().any(Option::is_none))
}

/// Which run each section comes from (a partial run, `--only`, replaces
/// only its own sections): when, on which commit, by which command, on
/// which machine (when they differ), and whether it started on a busy
/// machine.
fn measured(out: &mut String, results: &Results) {
    if results.measured.is_empty() {
        let _ = writeln!(out, "Every number below was measured in that run; each is the median of several rounds (min and max beside it).\n");
        return;
    }
    let _ = writeln!(out, "Each section's numbers come from one run of `cargo xtask bench` (a run with `--only` replaces only its own sections), listed here; each number is the median of several rounds (min and max beside it). Compare numbers within a section. Commit: `git describe --always --dirty` of the tree measured, taken before the binaries were built (`+untracked`: untracked files were there too); sections whose command is not recorded come from older runs, which described the tree at their end.\n");
    let with_machine = machines_differ(results);
    let any_busy = results.measured.values().any(|run| run.busy);
    let (mut head, mut rule) = (
        "| section (`--only` name) | measured (UTC, run's end) | commit | command |".to_owned(),
        "|---|---|---|---|".to_owned(),
    );
    if with_machine {
        head.push_str(" machine |");
        rule.push_str("---|");
    }
    if any_busy {
        head.push_str(" started on |");
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for (name, run) in &results.measured {
        let command = run
            .machine
            .as_ref()
            .map_or_else(|| "not recorded".to_owned(), |m| format!("`{}`", m.command));
        let _ = write!(
            out,
            "| {name} | {} | `{}` | {command} |",
            run.date, run.commit
        );
        if with_machine {
            let machine = run
                .machine
                .as_ref()
                .map_or_else(|| "not recorded".to_owned(), Machine::host);
            let _ = write!(out, " {machine} |");
        }
        if any_busy {
            let start = if run.busy {
                "**a busy machine** (it did not quiet down within a minute: numbers may carry another load's noise)"
            } else {
                "a quiet machine"
            };
            let _ = write!(out, " {start} |");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out);
}

/// `value` as printed beside a verdict on `target`: `decimals` decimals,
/// more (up to four more) where rounding would put the printed number on
/// the target, or on its other side, while the value is not: a ratio of
/// 1.4959 against "≥ 1.5" reads "1.496", never "1.50" beside "not met".
pub(super) fn beside_target(value: f64, target: f64, decimals: usize) -> String {
    on_own_side(value, target, decimals, |v, d| format!("{v:.d$}"))
}

/// `beside_target` with the sign always shown (a difference: "+3.04").
pub(super) fn beside_target_signed(value: f64, target: f64, decimals: usize) -> String {
    on_own_side(value, target, decimals, |v, d| format!("{v:+.d$}"))
}

/// The first of `decimals` to `decimals + 4` decimals at which `print`ed
/// `value` compares with `target` as `value` does (the last tried if none:
/// a value that close is printed with all of them).
fn on_own_side(
    value: f64,
    target: f64,
    decimals: usize,
    print: impl Fn(f64, usize) -> String,
) -> String {
    let mut text = print(value, decimals);
    if !value.is_finite() {
        return text;
    }
    for d in decimals..=decimals + 4 {
        text = print(value, d);
        let printed = text.parse::<f64>().ok();
        if printed.and_then(|p| p.partial_cmp(&target)) == value.partial_cmp(&target) {
            break;
        }
    }
    text
}

/// How far above the floor a ratio's denominator must be, ns, for the
/// ratio to mean anything: at or near the floor the ratio is noise over
/// almost nothing (or a division by zero).
pub(super) const MIN_ABOVE_FLOOR_NS: f64 = 1.0;

/// The median of the rounds' ratios of costs above a floor, each round's
/// (`numerator`, `denominator`) already less its floor (`of_medians`: one
/// pair, the medians', for older results without rounds). Judged only on
/// its premise, so a degenerate round cannot pass as a met target: every
/// denominator more than `MIN_ABOVE_FLOOR_NS` above the floor, no
/// numerator below it, every value a number. Else why not, naming the
/// round and the case (`numerator_case`, `denominator_case`).
pub(super) fn above_floor_ratio(
    rounds: &[(f64, f64)],
    of_medians: bool,
    numerator_case: &str,
    denominator_case: &str,
) -> Result<crate::bench::Spread, String> {
    if rounds.is_empty() {
        return Err("no rounds were measured".to_owned());
    }
    let label = |i: usize| {
        if of_medians {
            "the medians".to_owned()
        } else {
            format!("round {}", i + 1)
        }
    };
    for (i, &(numerator, denominator)) in rounds.iter().enumerate() {
        if !numerator.is_finite() || !denominator.is_finite() {
            return Err(format!("{}: not a number", label(i)));
        }
        if denominator <= MIN_ABOVE_FLOOR_NS {
            return Err(format!(
                "{}: {denominator_case} not more than {MIN_ABOVE_FLOOR_NS:.0} ns above the floor ({denominator:+.1} ns)",
                label(i)
            ));
        }
        if numerator < 0.0 {
            return Err(format!(
                "{}: {numerator_case} below the floor ({numerator:+.1} ns)",
                label(i)
            ));
        }
    }
    let ratios: Vec<f64> = rounds.iter().map(|(n, d)| n / d).collect();
    Ok(crate::bench::Spread::of(&ratios))
}

/// The cores of the machine section `name` was measured on (the last
/// run's when the section did not record its own).
fn cores_of(results: &Results, name: &str) -> usize {
    results
        .measured
        .get(name)
        .and_then(|run| run.machine.as_ref())
        .map_or(results.machine.cores, |m| m.cores)
}

/// Where the VRRP gaps beside the BGP section's node loss come from:
/// None when the failover section is of the same run as the BGP one (or
/// the file is one run's), else a note naming the failover section's run.
fn failover_run_note(results: &Results) -> Option<String> {
    if results.measured.is_empty() {
        return None;
    }
    let (bgp, failover) = (
        results.measured.get("bgp"),
        results.measured.get("failover"),
    );
    match (bgp, failover) {
        // The same run: its date, commit and machine (a busy start is
        // the section's own, not its run's).
        (Some(bgp), Some(failover))
            if bgp.date == failover.date
                && bgp.commit == failover.commit
                && bgp.machine == failover.machine =>
        {
            None
        }
        (_, Some(failover)) => Some(format!(
            "the failover section's run, {} at `{}`, not this section's",
            failover.date, failover.commit
        )),
        (_, None) => Some("the failover section's run, not recorded".to_owned()),
    }
}

/// The Markdown report.
pub fn markdown(results: &Results, plot: Option<&str>) -> String {
    let m = &results.machine;
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Generated from `bench/results.json` by `{}` on {}.\n\n{}\n",
        m.command,
        m.date,
        machine_line(results)
    );
    measured(&mut out, results);
    if let Some(xdp) = &results.xdp {
        xdp::section(&mut out, xdp, plot);
        guard::section(&mut out, xdp);
        conntrack::comparison(&mut out, xdp);
        conntrack::designs(&mut out, xdp);
        conntrack::by_capacity(&mut out, xdp);
    }
    if let Some(profile) = &results.xdp_profile {
        conntrack::profile(&mut out, profile);
    }
    if results.xdp.is_some() {
        conntrack::guarantees(&mut out);
    }
    if let Some(nat) = &results.nat {
        modes::nat_section(&mut out, nat);
    }
    if let Some(decap) = &results.decap {
        crate::bench::decap::markdown(&mut out, decap);
    }
    if let Some(tunnel) = &results.tunnel {
        modes::tunnel_section(&mut out, tunnel);
    }
    if let Some(maglev) = &results.maglev {
        maglev::section(&mut out, maglev);
    }
    if let Some(e2e) = &results.e2e {
        e2e::l2_section(&mut out, e2e, cores_of(results, "e2e"));
    }
    if let Some(e2e) = &results.e2e_nat {
        e2e::nat_section(&mut out, e2e);
    }
    if let Some(e2e) = &results.e2e_tunnel {
        e2e::tunnel_section(&mut out, e2e);
    }
    if let Some(flood) = &results.flood {
        crate::bench::flood::markdown(&mut out, flood);
    }
    if let Some(f) = &results.failover {
        cluster::failover_section(&mut out, f);
    }
    if let Some(bgp) = &results.bgp {
        let vrrp = results
            .failover
            .as_ref()
            .map(|f| (f, failover_run_note(results)));
        cluster::bgp_section(&mut out, bgp, vrrp);
    }
    if let Some(mesh) = &results.sync_mesh {
        cluster::sync_mesh_section(&mut out, mesh);
    }
    if let Some(memory) = &results.memory {
        memory::section(&mut out, memory);
    }
    out
}
