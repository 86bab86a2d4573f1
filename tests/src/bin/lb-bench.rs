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
    /// Only these benchmarks (repeat the option or separate them with
    /// commas); default all. The others keep what the results file holds.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Pass>,
    /// Regenerate the report and plot from the existing results file
    /// without measuring anything.
    #[arg(long)]
    report_only: bool,
    /// The command line to record in the results and the report (default:
    /// what `cargo xtask bench` passes in `LB_BENCH_COMMAND`, its own
    /// command line; else this runner's).
    #[arg(long)]
    command: Option<String>,
}

/// What `cargo xtask bench` passes: its command line, and the tree it
/// described before building the binaries measured.
const COMMAND_ENV: &str = "LB_BENCH_COMMAND";
/// See `COMMAND_ENV`.
const COMMIT_ENV: &str = "LB_BENCH_COMMIT";

/// `args` (a command line) for the record: each argument that a shell
/// would split or expand single-quoted.
fn shell_line(args: impl IntoIterator<Item = String>) -> String {
    args.into_iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
            if plain {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A pass of the benchmark, as `--only` names it; its name also keys the
/// results file's record of when each section was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Pass {
    Xdp,
    XdpProfile,
    Nat,
    Tunnel,
    Decap,
    Maglev,
    Memory,
    E2e,
    E2eNat,
    E2eTunnel,
    Flood,
    Failover,
    Bgp,
    SyncMesh,
}

impl Pass {
    /// The pass's name (`--only`'s value, the results file's key).
    fn name(self) -> &'static str {
        match self {
            Self::Xdp => "xdp",
            Self::XdpProfile => "xdp-profile",
            Self::Nat => "nat",
            Self::Tunnel => "tunnel",
            Self::Decap => "decap",
            Self::Maglev => "maglev",
            Self::Memory => "memory",
            Self::E2e => "e2e",
            Self::E2eNat => "e2e-nat",
            Self::E2eTunnel => "e2e-tunnel",
            Self::Flood => "flood",
            Self::Failover => "failover",
            Self::Bgp => "bgp",
            Self::SyncMesh => "sync-mesh",
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.report_only {
        let text = std::fs::read_to_string(&args.out)
            .with_context(|| format!("reading {}", args.out.display()))?;
        let results: Results = serde_json::from_str(&text).context("parsing the results file")?;
        return write_report(&args, &results);
    }
    // Before anything is measured: the tree measured (as `cargo xtask
    // bench` found it before building, else as it is now), the command
    // line, and the results a partial run keeps (an unreadable file stops
    // the run here rather than losing the other sections at its end).
    let commit = std::env::var(COMMIT_ENV)
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(bench::describe_tree);
    let command = args
        .command
        .clone()
        .or_else(|| std::env::var(COMMAND_ENV).ok().filter(|c| !c.is_empty()))
        .unwrap_or_else(|| shell_line(std::env::args()));
    // Read for a full run too: a section that fails there (the flood's)
    // keeps its last results rather than losing them. A full run replaces
    // every other section, so a file it cannot read only costs that.
    let old: Option<Results> = match bench::read_previous(&args.out) {
        Ok(old) => old,
        Err(error) if args.only.is_empty() => {
            eprintln!("bench: {error:#}: a failed section will have no previous results");
            None
        }
        Err(error) => return Err(error),
    };
    // Each wanted section starts on a quiet machine (see `bench::settle`);
    // those that started on a busy one are marked so.
    let mut busy = Vec::new();
    let mut wanted = |pass: Pass| {
        let wanted = args.only.is_empty() || args.only.contains(&pass);
        if wanted && !bench::settle::settle(pass.name()).quiet {
            busy.push(pass);
        }
        wanted
    };
    let maglev = wanted(Pass::Maglev).then(|| {
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
    let xdp = if wanted(Pass::Xdp) {
        Some(bench::xdp::run(args.repeat, args.rounds, args.prefill)?)
    } else {
        None
    };
    let xdp_profile = if wanted(Pass::XdpProfile) {
        Some(bench::xdp_profile::run()?)
    } else {
        None
    };
    let memory = if wanted(Pass::Memory) {
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
    let e2e = if wanted(Pass::E2e) {
        Some(bench::e2e::run(&load)?)
    } else {
        None
    };
    // A SYN flood in the lab: a failure (or panic) there costs its own
    // section only, not the rest of the run's results.
    let mut flood_failed = None;
    let flood = if wanted(Pass::Flood) {
        match std::panic::catch_unwind(|| {
            bench::flood::run(args.rounds.min(3), 10, 2_000_000, 200_000)
        }) {
            Ok(Ok(flood)) => Some(flood),
            Ok(Err(error)) => {
                eprintln!("bench: the flood section failed, left out: {error:#}");
                flood_failed = Some(format!("{error:#}"));
                None
            }
            Err(_) => {
                eprintln!("bench: the flood section panicked, left out");
                flood_failed = Some("it panicked".to_owned());
                None
            }
        }
    } else {
        None
    };
    let failover = if wanted(Pass::Failover) {
        Some(bench::failover::run(3)?)
    } else {
        None
    };
    let nat = if wanted(Pass::Nat) {
        Some(bench::nat::run(args.repeat.min(100_000), args.rounds)?)
    } else {
        None
    };
    let decap = if wanted(Pass::Decap) {
        Some(bench::decap::run(args.repeat.min(100_000), args.rounds)?)
    } else {
        None
    };
    let tunnel = if wanted(Pass::Tunnel) {
        Some(bench::tunnel::run(args.repeat.min(100_000), args.rounds)?)
    } else {
        None
    };
    let e2e_nat = if wanted(Pass::E2eNat) {
        Some(bench::e2e::run_routed(&load)?)
    } else {
        None
    };
    let e2e_tunnel = if wanted(Pass::E2eTunnel) {
        Some(bench::e2e::run_tunnel(&load)?)
    } else {
        None
    };
    let bgp = if wanted(Pass::Bgp) {
        Some(bench::bgp::run(args.rounds.min(3), 3, 32)?)
    } else {
        None
    };
    let sync_mesh = if wanted(Pass::SyncMesh) {
        Some(bench::sync_mesh::run(100_000, args.rounds.min(5))?)
    } else {
        None
    };
    // A partial run keeps the other benchmarks' last results (`old`).
    let machine = Machine::here(&command);
    let mut measured = old.as_ref().map(|r| r.measured.clone()).unwrap_or_default();
    let fresh = [
        (Pass::Xdp, xdp.is_some()),
        (Pass::XdpProfile, xdp_profile.is_some()),
        (Pass::Maglev, maglev.is_some()),
        (Pass::Memory, memory.is_some()),
        (Pass::E2e, e2e.is_some()),
        (Pass::Failover, failover.is_some()),
        (Pass::Nat, nat.is_some()),
        (Pass::E2eNat, e2e_nat.is_some()),
        (Pass::Decap, decap.is_some()),
        (Pass::E2eTunnel, e2e_tunnel.is_some()),
        (Pass::Tunnel, tunnel.is_some()),
        (Pass::Bgp, bgp.is_some()),
        (Pass::SyncMesh, sync_mesh.is_some()),
        (Pass::Flood, flood.is_some()),
    ];
    for (pass, _) in fresh.iter().filter(|(_, fresh)| *fresh) {
        measured.insert(
            pass.name().to_owned(),
            bench::SectionRun::of(&machine, &commit, busy.contains(pass)),
        );
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
    write_report(&args, &results)?;
    // The other sections are written; the run still fails, so nobody
    // takes the flood's kept (older) numbers for this run's.
    match flood_failed {
        Some(reason) => anyhow::bail!(
            "the flood section was not measured ({reason}): {} keeps its previous results (its row in the runs table says when they were measured)",
            args.out.display()
        ),
        None => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use clap::ValueEnum as _;

    use super::Pass;

    #[test]
    fn each_pass_is_named_as_only_takes_it() {
        for pass in Pass::value_variants() {
            let value = pass.to_possible_value().expect("no pass is hidden");
            assert_eq!(value.get_name(), pass.name());
        }
    }

    #[test]
    fn the_recorded_command_line_quotes_what_a_shell_would_split() {
        let line = super::shell_line(
            [
                "cargo",
                "xtask",
                "bench",
                "--only",
                "e2e,xdp",
                "--command",
                "a b",
                "it's",
            ]
            .map(String::from),
        );
        assert_eq!(
            line,
            r"cargo xtask bench --only e2e,xdp --command 'a b' 'it'\''s'"
        );
    }

    #[test]
    fn only_takes_a_list_and_refuses_an_unknown_pass() {
        use clap::Parser as _;
        let args =
            super::Args::try_parse_from(["lb-bench", "--only", "e2e,e2e-nat", "--only", "xdp"])
                .expect("valid");
        assert_eq!(args.only, [Pass::E2e, Pass::E2eNat, Pass::Xdp]);
        let err = super::Args::try_parse_from(["lb-bench", "--only", "e2e,e2-nat"])
            .expect_err("an unknown pass");
        assert!(err.to_string().contains("e2-nat"), "{err}");
    }
}
