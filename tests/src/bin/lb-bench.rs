//! The benchmark runner behind `cargo xtask bench`: measures, writes the
//! results JSON, and regenerates BENCHMARKS.md and its plot from it.

use std::path::{Path, PathBuf};

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
    /// Runs per round for the XDP cases (at least 1: none would measure
    /// nothing and record zeros).
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Rounds per case (the median is reported; at least 1: none would
    /// measure nothing and record zeros).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Flows to put in the connection table for the second XDP pass (0:
    /// no second pass), and in lbd's table for the memory section.
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
    // Read for a full run too: a section that fails there keeps its
    // last results rather than losing them. A full run replaces
    // every other section, so a file it cannot read only costs that.
    let old: Option<Results> = match bench::read_previous(&args.out) {
        Ok(old) => old,
        Err(error) if args.only.is_empty() => {
            eprintln!("bench: {error:#}: a failed section will have no previous results");
            None
        }
        Err(error) => return Err(error),
    };
    // Five rounds: on a shared 2-core VM a round's requests/s move by a
    // fifth from one round to the next; ratios are taken round by round.
    let load = bench::e2e::Load {
        rounds: args.rounds.min(5),
        seconds: 3,
        threads: 2,
        connections: 32,
    };
    // Every section in turn; one that fails (or panics) costs its own
    // section only, not the others measured in this run.
    let mut runner = Runner::new(&args.only, |name| bench::settle::settle(name).quiet);
    runner.run(Pass::Maglev, || {
        let mut maglev = bench::maglev::run(
            &[
                (3, 65_537),
                (100, 65_537),
                (1_000, 65_537),
                (10_000, 65_537),
                (1_000, 655_373),
            ],
            args.rounds.max(5),
        );
        let vips = lb_common::consts::MAX_VIPS_DEFAULT;
        maglev.writes = Some(bench::maglev_writes::run(vips, args.rounds.max(5))?);
        Ok(Section::Maglev(maglev))
    });
    runner.run(Pass::Xdp, || {
        bench::xdp::run(args.repeat, args.rounds, args.prefill).map(Section::Xdp)
    });
    runner.run(Pass::XdpProfile, || {
        bench::xdp_profile::run().map(Section::XdpProfile)
    });
    runner.run(Pass::Memory, || {
        bench::memory::run(10, 100, args.prefill).map(Section::Memory)
    });
    runner.run(Pass::E2e, || bench::e2e::run(&load).map(Section::E2e));
    runner.run(Pass::Flood, || {
        bench::flood::run(args.rounds.min(3), 10, 2_000_000, 200_000).map(Section::Flood)
    });
    runner.run(Pass::Failover, || {
        bench::failover::run(3).map(Section::Failover)
    });
    runner.run(Pass::Nat, || {
        bench::nat::run(args.repeat.min(100_000), args.rounds).map(Section::Nat)
    });
    runner.run(Pass::Decap, || {
        bench::decap::run(args.repeat.min(100_000), args.rounds).map(Section::Decap)
    });
    runner.run(Pass::Tunnel, || {
        bench::tunnel::run(args.repeat.min(100_000), args.rounds).map(Section::Tunnel)
    });
    runner.run(Pass::E2eNat, || {
        bench::e2e::run_routed(&load).map(Section::E2eNat)
    });
    runner.run(Pass::E2eTunnel, || {
        bench::e2e::run_tunnel(&load).map(Section::E2eTunnel)
    });
    runner.run(Pass::Bgp, || {
        bench::bgp::run(args.rounds.min(3), 3, 32).map(Section::Bgp)
    });
    runner.run(Pass::SyncMesh, || {
        bench::sync_mesh::run(100_000, args.rounds.min(5)).map(Section::SyncMesh)
    });
    let Runner { busy, outcomes, .. } = runner;
    let any_measured = outcomes.iter().any(|(_, outcome)| outcome.is_ok());
    // A partial run keeps the other benchmarks' last results (`old`), a
    // failed section its own.
    let (results, failed) = merge(old, Machine::here(&command), &commit, outcomes, &busy);
    if any_measured {
        if let Some(dir) = args.out.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_atomically(
            &args.out,
            serde_json::to_string_pretty(&results)?.as_bytes(),
        )?;
        write_report(&args, &results)?;
    }
    // What was measured is written; the run still fails, so nobody takes
    // a failed section's kept (older) numbers for this run's.
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", failures_message(&failed, &args.out, any_measured))
    }
}

/// A section one pass measured, as the results file holds it.
#[derive(Debug)]
enum Section {
    Xdp(bench::xdp::XdpResults),
    XdpProfile(bench::xdp_profile::ProfileResults),
    Maglev(bench::maglev::MaglevResults),
    Memory(bench::memory::MemoryResults),
    E2e(bench::e2e::E2eResults),
    Flood(bench::flood::FloodResults),
    Failover(bench::failover::FailoverResults),
    Nat(bench::mode_cases::ModeResults),
    Decap(bench::decap::DecapResults),
    Tunnel(bench::mode_cases::ModeResults),
    E2eNat(bench::e2e::E2eResults),
    E2eTunnel(bench::e2e::E2eResults),
    Bgp(bench::bgp::BgpResults),
    SyncMesh(bench::sync_mesh::SyncMeshResults),
}

impl Section {
    /// The pass that measures this section.
    fn pass(&self) -> Pass {
        match self {
            Self::Xdp(_) => Pass::Xdp,
            Self::XdpProfile(_) => Pass::XdpProfile,
            Self::Maglev(_) => Pass::Maglev,
            Self::Memory(_) => Pass::Memory,
            Self::E2e(_) => Pass::E2e,
            Self::Flood(_) => Pass::Flood,
            Self::Failover(_) => Pass::Failover,
            Self::Nat(_) => Pass::Nat,
            Self::Decap(_) => Pass::Decap,
            Self::Tunnel(_) => Pass::Tunnel,
            Self::E2eNat(_) => Pass::E2eNat,
            Self::E2eTunnel(_) => Pass::E2eTunnel,
            Self::Bgp(_) => Pass::Bgp,
            Self::SyncMesh(_) => Pass::SyncMesh,
        }
    }

    /// Puts the section in its place in `results`, over what was there.
    fn put(self, results: &mut Results) {
        match self {
            Self::Xdp(s) => results.xdp = Some(s),
            Self::XdpProfile(s) => results.xdp_profile = Some(s),
            Self::Maglev(s) => results.maglev = Some(s),
            Self::Memory(s) => results.memory = Some(s),
            Self::E2e(s) => results.e2e = Some(s),
            Self::Flood(s) => results.flood = Some(s),
            Self::Failover(s) => results.failover = Some(s),
            Self::Nat(s) => results.nat = Some(s),
            Self::Decap(s) => results.decap = Some(s),
            Self::Tunnel(s) => results.tunnel = Some(s),
            Self::E2eNat(s) => results.e2e_nat = Some(s),
            Self::E2eTunnel(s) => results.e2e_tunnel = Some(s),
            Self::Bgp(s) => results.bgp = Some(s),
            Self::SyncMesh(s) => results.sync_mesh = Some(s),
        }
    }
}

/// Runs the wanted passes one after the other, each on a quiet machine
/// if it quiets down (see `bench::settle`), and keeps what each gave: a
/// failure or panic stays with its pass, and the passes after it run.
struct Runner<'a> {
    /// `--only` (empty: every pass).
    only: &'a [Pass],
    /// Waits for the machine to quiet down before the pass named; false
    /// if it did not (`bench::settle::settle` outside the tests).
    quiet: fn(&str) -> bool,
    /// The passes that started on a busy machine.
    busy: Vec<Pass>,
    /// Each pass run, in order, with its section or its error.
    outcomes: Vec<(Pass, anyhow::Result<Section>)>,
}

impl<'a> Runner<'a> {
    fn new(only: &'a [Pass], quiet: fn(&str) -> bool) -> Self {
        Self {
            only,
            quiet,
            busy: Vec::new(),
            outcomes: Vec::new(),
        }
    }

    /// Runs `measure` if `pass` is wanted. A panic is taken as the pass's
    /// error (what it had set up is dropped on the way out, labs torn
    /// down).
    fn run(&mut self, pass: Pass, measure: impl FnOnce() -> anyhow::Result<Section>) {
        if !(self.only.is_empty() || self.only.contains(&pass)) {
            return;
        }
        if !(self.quiet)(pass.name()) {
            self.busy.push(pass);
        }
        let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(measure)) {
            Ok(outcome) => outcome,
            Err(panic) => Err(anyhow::anyhow!("it panicked: {}", panic_message(&*panic))),
        };
        if let Err(error) = &outcome {
            eprintln!(
                "bench: the {} section failed, its previous results kept: {error:#}",
                pass.name()
            );
        }
        self.outcomes.push((pass, outcome));
    }
}

/// A panic's message, if it carried one (`panic!` with a string).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// The results file after a run: `old` (the file as the run found it,
/// if any) with each section a pass of `outcomes` measured put in its
/// place and its `measured` entry made this run's (`machine`, `commit`,
/// busy if the pass is in `busy`); a section whose pass failed keeps its
/// old data and its old entry, as do the passes not run. Also the
/// failures, in the order the passes ran. Pure, so that what a failure
/// costs is tested without measuring.
fn merge(
    old: Option<Results>,
    machine: Machine,
    commit: &str,
    outcomes: Vec<(Pass, anyhow::Result<Section>)>,
    busy: &[Pass],
) -> (Results, Vec<(Pass, anyhow::Error)>) {
    let mut results = old.unwrap_or_else(|| Results {
        machine: machine.clone(),
        xdp: None,
        xdp_profile: None,
        maglev: None,
        memory: None,
        e2e: None,
        failover: None,
        nat: None,
        e2e_nat: None,
        decap: None,
        e2e_tunnel: None,
        tunnel: None,
        bgp: None,
        sync_mesh: None,
        flood: None,
        measured: Default::default(),
    });
    let mut failed = Vec::new();
    for (pass, outcome) in outcomes {
        match outcome {
            Ok(section) if section.pass() == pass => {
                results.measured.insert(
                    pass.name().to_owned(),
                    bench::SectionRun::of(&machine, commit, busy.contains(&pass)),
                );
                section.put(&mut results);
            }
            Ok(section) => failed.push((
                pass,
                anyhow::anyhow!(
                    "the pass gave the {} section, not its own (left out)",
                    section.pass().name()
                ),
            )),
            Err(error) => failed.push((pass, error)),
        }
    }
    results.machine = machine;
    (results, failed)
}

/// Why the run fails: every failed section with its error, and what
/// `out` (the results file) holds for them.
fn failures_message(failed: &[(Pass, anyhow::Error)], out: &Path, written: bool) -> String {
    let list = failed
        .iter()
        .map(|(pass, error)| format!("{}: {error:#}", pass.name()))
        .collect::<Vec<_>>()
        .join("; ");
    let kept = if written {
        format!(
            "{} keeps their previous results (the runs table says when each was measured)",
            out.display()
        )
    } else {
        format!("nothing was measured, {} is unchanged", out.display())
    };
    format!("{} section(s) not measured ({list}): {kept}", failed.len())
}

/// Writes `contents` to `path` so that a reader (or a crash, a full disk,
/// a Ctrl-C) sees the old file or the new one, never half of one: a
/// temporary file beside it, synced, then renamed over it.
fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(error)
            .with_context(|| format!("writing {} (through {})", path.display(), temp.display()));
    }
    // The rename itself, on disk; the file is in place either way.
    if let Err(error) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        eprintln!(
            "bench: syncing {} after writing {}: {error}",
            dir.display(),
            path.display()
        );
    }
    Ok(())
}

/// Writes BENCHMARKS.md and the plot from `results`.
fn write_report(args: &Args, results: &Results) -> anyhow::Result<()> {
    let plot = bench::report::xdp_svg(results);
    if let Some(svg) = &plot {
        write_atomically(&args.plot, svg.as_bytes())?;
    }
    let plot_link = plot
        .as_ref()
        .map(|_| args.plot.to_string_lossy().into_owned());
    write_atomically(
        &args.report,
        bench::report::markdown(results, plot_link.as_deref()).as_bytes(),
    )?;
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
    use std::path::Path;

    use clap::ValueEnum as _;
    use lb_tests::bench::{self, Machine, Results};

    use super::{Pass, Section};

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
    fn a_count_of_zero_is_refused_naming_its_option() {
        use clap::Parser as _;
        for option in ["--rounds", "--repeat"] {
            let err = super::Args::try_parse_from(["lb-bench", option, "0"])
                .expect_err("zero measures nothing");
            assert!(err.to_string().contains(option), "{option}: {err}");
            super::Args::try_parse_from(["lb-bench", option, "1"]).expect("one is a measurement");
        }
        // No prefilled pass: a valid, quicker run.
        super::Args::try_parse_from(["lb-bench", "--prefill", "0"]).expect("prefill 0");
    }

    /// A machine and a NAT section told apart by `tag`.
    fn machine(tag: &str) -> Machine {
        Machine {
            cores: 2,
            kernel: "6.1".to_owned(),
            cpu: "cpu".to_owned(),
            memory_gib: 4.0,
            date: format!("{tag}-date"),
            command: format!("{tag}-command"),
        }
    }

    fn modes(tag: &str) -> bench::mode_cases::ModeResults {
        bench::mode_cases::ModeResults {
            date: tag.to_owned(),
            cases: Vec::new(),
        }
    }

    /// Results of an older run holding the nat and tunnel sections.
    fn old_results() -> Results {
        let old = machine("old");
        let (mut results, failed) = super::merge(
            None,
            old,
            "old-commit",
            vec![
                (Pass::Nat, Ok(Section::Nat(modes("old nat")))),
                (Pass::Tunnel, Ok(Section::Tunnel(modes("old tunnel")))),
            ],
            &[],
        );
        assert!(failed.is_empty());
        results.measured.get_mut("tunnel").expect("measured").busy = true;
        results
    }

    #[test]
    fn a_failed_section_keeps_its_old_data_and_the_others_are_replaced() {
        let old = old_results();
        let now = machine("new");
        let (results, failed) = super::merge(
            Some(old.clone()),
            now.clone(),
            "new-commit",
            vec![
                (Pass::Nat, Ok(Section::Nat(modes("new nat")))),
                (Pass::Tunnel, Err(anyhow::anyhow!("decap counters short"))),
                (Pass::Decap, Err(anyhow::anyhow!("no lab"))),
            ],
            &[Pass::Nat],
        );
        // Measured: replaced, with this run's entry.
        assert_eq!(results.nat, Some(modes("new nat")));
        assert_eq!(
            results.measured["nat"],
            bench::SectionRun::of(&now, "new-commit", true)
        );
        // Failed: the old section and its old entry (busy flag included).
        assert_eq!(results.tunnel, old.tunnel);
        assert_eq!(results.measured["tunnel"], old.measured["tunnel"]);
        // Failed with nothing before it: still nothing.
        assert_eq!(results.decap, None);
        assert!(!results.measured.contains_key("decap"));
        assert_eq!(results.machine, now);
        let failed: Vec<(Pass, String)> = failed
            .into_iter()
            .map(|(pass, error)| (pass, error.to_string()))
            .collect();
        assert_eq!(
            failed,
            [
                (Pass::Tunnel, "decap counters short".to_owned()),
                (Pass::Decap, "no lab".to_owned())
            ]
        );
    }

    #[test]
    fn a_section_under_another_pass_is_a_failure_not_merged() {
        let old = old_results();
        let (results, failed) = super::merge(
            Some(old.clone()),
            machine("new"),
            "new-commit",
            vec![(Pass::Nat, Ok(Section::Tunnel(modes("new tunnel"))))],
            &[],
        );
        assert_eq!(results.tunnel, old.tunnel);
        assert_eq!(results.nat, old.nat);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, Pass::Nat);
    }

    #[test]
    fn the_failure_names_every_failed_section_and_its_error() {
        let failed = [
            (Pass::Tunnel, anyhow::anyhow!("decap counters short")),
            (Pass::SyncMesh, anyhow::anyhow!("port 7000 in use")),
        ];
        let out = Path::new("bench/results.json");
        let text = super::failures_message(&failed, out, true);
        for part in [
            "tunnel: decap counters short",
            "sync-mesh: port 7000 in use",
            "bench/results.json keeps their previous results",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        let text = super::failures_message(&failed[..1], out, false);
        assert!(text.contains("bench/results.json is unchanged"), "{text}");
    }

    #[test]
    fn a_panic_is_a_failure_of_its_pass_alone() {
        let only = [Pass::Maglev, Pass::Nat];
        // The machine quiet before the maglev pass only.
        let mut runner = super::Runner::new(&only, |name| name == "maglev");
        // Not wanted: not run.
        runner.run(Pass::Tunnel, || Ok(Section::Tunnel(modes("t"))));
        runner.run(Pass::Maglev, || panic!("table too small"));
        runner.run(Pass::Nat, || Ok(Section::Nat(modes("n"))));
        let outcomes: Vec<(Pass, Result<(), String>)> = runner
            .outcomes
            .drain(..)
            .map(|(pass, outcome)| (pass, outcome.map(|_| ()).map_err(|e| e.to_string())))
            .collect();
        assert_eq!(
            outcomes,
            [
                (Pass::Maglev, Err("it panicked: table too small".to_owned())),
                (Pass::Nat, Ok(()))
            ]
        );
        assert_eq!(runner.busy, [Pass::Nat]);
    }

    /// A directory of its own under the system's temporary directory.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lb-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_file_is_left() {
        let dir = scratch("atomic");
        let path = dir.join("results.json");
        std::fs::write(&path, "old, and longer than the new").expect("old");
        super::write_atomically(&path, b"new").expect("written");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["results.json"]);
        // A directory that is not there: an error naming the file, and
        // nothing written.
        let missing = dir.join("gone").join("results.json");
        let error = super::write_atomically(&missing, b"x").expect_err("no directory");
        assert!(
            format!("{error:#}").contains(&missing.display().to_string()),
            "{error:#}"
        );
        std::fs::remove_dir_all(&dir).expect("cleaned up");
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
