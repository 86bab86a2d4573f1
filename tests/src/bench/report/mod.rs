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

use super::Results;
pub(super) use modes::hook_case_table;
pub use xdp::xdp_svg;

/// Which run each section comes from (a partial run, `--only`, replaces
/// only its own sections).
fn measured(out: &mut String, results: &Results) {
    if results.measured.is_empty() {
        let _ = writeln!(out, "Every number below was measured in that run; each is the median of several rounds (min and max beside it).\n");
        return;
    }
    let _ = writeln!(out, "Each section's numbers come from one run of `cargo xtask bench` (a run with `--only` replaces only its own sections), listed here; each number is the median of several rounds (min and max beside it). Compare numbers within a section.\n");
    let _ = writeln!(
        out,
        "| section (`--only` name) | measured (UTC, run's end) | commit |"
    );
    let _ = writeln!(out, "|---|---|---|");
    for (name, run) in &results.measured {
        let _ = writeln!(out, "| {name} | {} | `{}` |", run.date, run.commit);
    }
    let _ = writeln!(out);
}

/// The Markdown report.
pub fn markdown(results: &Results, plot: Option<&str>) -> String {
    let m = &results.machine;
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Generated from `bench/results.json` by `{}` on {}.\n\nMachine: {} cores ({}), {:.1} GiB, Linux {}.\n",
        m.command, m.date, m.cores, m.cpu, m.memory_gib, m.kernel
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
        e2e::l2_section(&mut out, e2e, results.machine.cores);
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
        cluster::bgp_section(&mut out, bgp, results.failover.as_ref());
    }
    if let Some(mesh) = &results.sync_mesh {
        cluster::sync_mesh_section(&mut out, mesh);
    }
    if let Some(memory) = &results.memory {
        memory::section(&mut out, memory);
    }
    out
}
