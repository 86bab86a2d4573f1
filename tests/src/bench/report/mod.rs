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
        (Some(bgp), Some(failover)) if bgp == failover => None,
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
