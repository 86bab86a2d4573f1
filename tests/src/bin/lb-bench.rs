//! The benchmark runner behind `cargo xtask bench`: measures, writes the
//! results JSON, and regenerates BENCHMARKS.md and its plot from it.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use lb_tests::bench::{self, maglev::CountingAllocator, Machine, Results};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Benchmarks of the XDP load balancer.
#[derive(Debug, Parser)]
struct Args {
    /// Results file (JSON).
    #[arg(long, default_value = "bench/results.json")]
    out: PathBuf,
    /// Report to regenerate.
    #[arg(long, default_value = "BENCHMARKS.md")]
    report: PathBuf,
    /// Plot to regenerate (SVG), referenced from the report.
    #[arg(long, default_value = "bench/xdp.svg")]
    plot: PathBuf,
    /// Runs per round for the XDP cases.
    #[arg(long, default_value_t = 200_000)]
    repeat: u32,
    /// Rounds per case (the median is reported).
    #[arg(long, default_value_t = 7)]
    rounds: u32,
    /// Flows to put in the connection table for the second XDP pass.
    #[arg(long, default_value_t = 1_000_000)]
    prefill: u32,
    /// Only these benchmarks (xdp, xdp-profile, nat, tunnel, decap, maglev, memory, e2e,
    /// e2e-nat, e2e-tunnel, flood, failover, bgp, sync-mesh); default all. The others keep what the
    /// results file holds.
    #[arg(long)]
    only: Vec<String>,
    /// Regenerate the report and plot from the existing results file
    /// without measuring anything.
    #[arg(long)]
    report_only: bool,
    /// The command to record in the report.
    #[arg(long, default_value = "cargo xtask bench")]
    command: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.report_only {
        let text = std::fs::read_to_string(&args.out)
            .with_context(|| format!("reading {}", args.out.display()))?;
        let results: Results = serde_json::from_str(&text).context("parsing the results file")?;
        return write_report(&args, &results);
    }
    // Each wanted section starts on a quiet machine (see `bench::settle`).
    let wanted = |name: &str| {
        let wanted = args.only.is_empty() || args.only.iter().any(|o| o == name);
        if wanted {
            bench::settle::settle(name);
        }
        wanted
    };
    let maglev = wanted("maglev").then(|| {
        bench::maglev::run(
            &[
                (3, 65_537),
                (100, 65_537),
                (1_000, 65_537),
                (10_000, 65_537),
                (1_000, 655_373),
            ],
            args.rounds.max(5),
        )
    });
    let xdp = if wanted("xdp") {
        Some(bench::xdp::run(args.repeat, args.rounds, args.prefill)?)
    } else {
        None
    };
    let xdp_profile = if wanted("xdp-profile") {
        Some(bench::xdp_profile::run()?)
    } else {
        None
    };
    let memory = if wanted("memory") {
        Some(bench::memory::run(10, 100, args.prefill)?)
    } else {
        None
    };
    // Five rounds: on a shared 2-core VM a round's requests/s move by a
    // fifth from one round to the next; ratios are taken round by round.
    let load = bench::e2e::Load {
        rounds: args.rounds.min(5),
        seconds: 3,
        threads: 2,
        connections: 32,
    };
    let e2e = if wanted("e2e") {
        Some(bench::e2e::run(&load)?)
    } else {
        None
    };
    // A SYN flood in the lab: a failure (or panic) there costs its own
    // section only, not the rest of the run's results.
    let flood = if wanted("flood") {
        match std::panic::catch_unwind(|| {
            bench::flood::run(args.rounds.min(3), 10, 2_000_000, 200_000)
        }) {
            Ok(Ok(flood)) => Some(flood),
            Ok(Err(error)) => {
                eprintln!("bench: the flood section failed, left out: {error:#}");
                None
            }
            Err(_) => {
                eprintln!("bench: the flood section panicked, left out");
                None
            }
        }
    } else {
        None
    };
    let failover = if wanted("failover") {
        Some(bench::failover::run(3)?)
    } else {
        None
    };
    let nat = if wanted("nat") {
        Some(bench::nat::run(args.repeat.min(100_000), args.rounds)?)
    } else {
        None
    };
    let decap = if wanted("decap") {
        Some(bench::decap::run(args.repeat.min(100_000), args.rounds)?)
    } else {
        None
    };
    let tunnel = if wanted("tunnel") {
        Some(bench::tunnel::run(args.repeat.min(100_000), args.rounds)?)
    } else {
        None
    };
    let e2e_nat = if wanted("e2e-nat") {
        Some(bench::e2e::run_routed(&load)?)
    } else {
        None
    };
    let e2e_tunnel = if wanted("e2e-tunnel") {
        Some(bench::e2e::run_tunnel(&load)?)
    } else {
        None
    };
    let bgp = if wanted("bgp") {
        Some(bench::bgp::run(args.rounds.min(3), 3, 32)?)
    } else {
        None
    };
    let sync_mesh = if wanted("sync-mesh") {
        Some(bench::sync_mesh::run(100_000, args.rounds.min(5))?)
    } else {
        None
    };
    // A partial run keeps the other benchmarks' last results.
    let old: Option<Results> = if args.only.is_empty() {
        None
    } else {
        std::fs::read_to_string(&args.out)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
    };
    let machine = Machine::here(&args.command);
    let mut measured = old.as_ref().map(|r| r.measured.clone()).unwrap_or_default();
    let fresh = [
        ("xdp", xdp.is_some()),
        ("xdp-profile", xdp_profile.is_some()),
        ("maglev", maglev.is_some()),
        ("memory", memory.is_some()),
        ("e2e", e2e.is_some()),
        ("failover", failover.is_some()),
        ("nat", nat.is_some()),
        ("e2e-nat", e2e_nat.is_some()),
        ("decap", decap.is_some()),
        ("e2e-tunnel", e2e_tunnel.is_some()),
        ("tunnel", tunnel.is_some()),
        ("bgp", bgp.is_some()),
        ("sync-mesh", sync_mesh.is_some()),
        ("flood", flood.is_some()),
    ];
    let run = bench::SectionRun::now(&machine.date);
    for (name, _) in fresh.iter().filter(|(_, fresh)| *fresh) {
        measured.insert((*name).to_owned(), run.clone());
    }
    let results = Results {
        machine,
        xdp: xdp.or_else(|| old.as_ref().and_then(|r| r.xdp.clone())),
        xdp_profile: xdp_profile.or_else(|| old.as_ref().and_then(|r| r.xdp_profile.clone())),
        maglev: maglev.or_else(|| old.as_ref().and_then(|r| r.maglev.clone())),
        memory: memory.or_else(|| old.as_ref().and_then(|r| r.memory.clone())),
        e2e: e2e.or_else(|| old.as_ref().and_then(|r| r.e2e.clone())),
        failover: failover.or_else(|| old.as_ref().and_then(|r| r.failover.clone())),
        nat: nat.or_else(|| old.as_ref().and_then(|r| r.nat.clone())),
        e2e_nat: e2e_nat.or_else(|| old.as_ref().and_then(|r| r.e2e_nat.clone())),
        decap: decap.or_else(|| old.as_ref().and_then(|r| r.decap.clone())),
        e2e_tunnel: e2e_tunnel.or_else(|| old.as_ref().and_then(|r| r.e2e_tunnel.clone())),
        tunnel: tunnel.or_else(|| old.as_ref().and_then(|r| r.tunnel.clone())),
        bgp: bgp.or_else(|| old.as_ref().and_then(|r| r.bgp.clone())),
        sync_mesh: sync_mesh.or_else(|| old.as_ref().and_then(|r| r.sync_mesh.clone())),
        flood: flood.or_else(|| old.as_ref().and_then(|r| r.flood.clone())),
        measured,
    };
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    write_report(&args, &results)
}

/// Writes BENCHMARKS.md and the plot from `results`.
fn write_report(args: &Args, results: &Results) -> anyhow::Result<()> {
    let plot = bench::report::xdp_svg(results);
    if let Some(svg) = &plot {
        std::fs::write(&args.plot, svg)
            .with_context(|| format!("writing {}", args.plot.display()))?;
    }
    let plot_link = plot
        .as_ref()
        .map(|_| args.plot.to_string_lossy().into_owned());
    std::fs::write(
        &args.report,
        bench::report::markdown(results, plot_link.as_deref()),
    )
    .with_context(|| format!("writing {}", args.report.display()))?;
    eprintln!(
        "bench: wrote {} and {} from {}",
        args.report.display(),
        args.plot.display(),
        args.out.display()
    );
    Ok(())
}
