//! `cargo xtask fuzz [--ci | --seconds N] [--merge] [TARGET...]`: runs the
//! cargo-fuzz targets in `fuzz/` (all of them by default) for a bounded time
//! each, with the nightly toolchain, and fails if any finds a crash, naming
//! the input that did it. Installs cargo-fuzz (a pinned version) if missing.
//!
//! New inputs the fuzzer finds go to `fuzz/work/TARGET` (ignored by git, kept
//! between runs); the committed corpus `fuzz/corpus/TARGET` (seeds and the
//! inputs of crashes fixed) is only read, unless `--merge` folds the work
//! corpus into it, keeping only inputs that add coverage.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context as _};

use crate::cmd::{command, exec, output, require_root, root};
use crate::setup::PLUS_NIGHTLY;

/// The fuzz targets (`fuzz/fuzz_targets/NAME.rs`).
pub const TARGETS: &[&str] = &[
    "vrrp_advert",
    "api_request",
    "config",
    "sync_frame",
    "packet",
];
/// A cargo-fuzz release that builds with the toolchains here.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Seconds per target of the long run.
const DEFAULT_SECONDS: u64 = 300;
/// Seconds per target of CI's short run.
const CI_SECONDS: u64 = 15;
/// Longest one input may take before libFuzzer calls it a hang.
const INPUT_TIMEOUT_S: u64 = 10;
/// Largest input libFuzzer makes: room for a whole config file.
const MAX_LEN: usize = 8192;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to fuzz each target, at least 1 (default: 300, or 15 with
    /// --ci). 0 is refused: libFuzzer would read it as no limit.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: Option<u64>,
    /// The short run of CI: 15 s per target, built without optimisation
    /// and without AddressSanitizer (a build twice as quick, for a run that
    /// short; panics and overflow checks still count). The long run keeps
    /// both.
    #[arg(long)]
    ci: bool,
    /// After fuzzing, fold what was found into the committed corpus,
    /// keeping only inputs that add coverage (then commit fuzz/corpus).
    #[arg(long)]
    merge: bool,
    /// Targets to run (default: all): vrrp_advert, api_request, config,
    /// sync_frame, packet.
    targets: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in &args.targets {
            if !TARGETS.contains(&t.as_str()) {
                bail!(
                    "no fuzz target {t:?}; the targets are {}",
                    TARGETS.join(", ")
                );
            }
        }
        args.targets.iter().map(String::as_str).collect()
    };
    if targets.contains(&"packet") {
        require_root("the packet fuzz target (it loads the XDP program)")?;
    }
    let seconds = args
        .seconds
        .unwrap_or(if args.ci { CI_SECONDS } else { DEFAULT_SECONDS });
    crate::setup::run()?;
    cargo_fuzz()?;

    let started = Instant::now();
    let mut build = vec![PLUS_NIGHTLY, "fuzz", "build"];
    build.extend(build_flags(args.ci));
    exec(&mut command("cargo", &build))?;
    eprintln!("fuzz: built in {:.0?}", started.elapsed());

    let mut failures = Vec::new();
    for target in &targets {
        if let Err(e) = fuzz(target, seconds, args.ci) {
            eprintln!("fuzz: {target}: {e:#}");
            failures.push(format!("{e:#}"));
        }
        if args.merge {
            merge(target, args.ci)?;
        }
    }
    eprintln!(
        "fuzz: {} target(s), {seconds} s each, done in {:.0?}",
        targets.len(),
        started.elapsed()
    );
    // The closing line, in the form test runners end with.
    println!(
        "fuzz: {} passed, {} failed",
        targets.len() - failures.len(),
        failures.len()
    );
    if !failures.is_empty() {
        bail!(
            "{} fuzz target(s) failed:\n{}\nReproduce with `cargo {PLUS_NIGHTLY} fuzz run TARGET ARTIFACT`; \
             after the fix, copy the artifact into fuzz/corpus/TARGET/ as a regression input.",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

/// cargo-fuzz's build options: the same for `build` and `run`, or `run`
/// builds again.
fn build_flags(ci: bool) -> &'static [&'static str] {
    if ci {
        &["--dev", "--sanitizer", "none"]
    } else {
        &[]
    }
}

/// Installs the pinned cargo-fuzz unless it is there already.
fn cargo_fuzz() -> anyhow::Result<()> {
    let current = output(&mut command("cargo", &["fuzz", "--version"])).unwrap_or_default();
    if current.contains(CARGO_FUZZ_VERSION) {
        return Ok(());
    }
    let started = Instant::now();
    exec(&mut command(
        "cargo",
        &[
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
            "--force",
        ],
    ))?;
    eprintln!("fuzz: cargo-fuzz installed in {:.0?}", started.elapsed());
    Ok(())
}

fn fuzz_dir() -> PathBuf {
    root().join("fuzz")
}

/// The files in `dir` (none if it does not exist).
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Runs one target for `seconds`: new inputs go to the work corpus, the
/// committed one is read. Fails naming the artifacts of a crash, a leak or
/// a hang.
fn fuzz(target: &str, seconds: u64, ci: bool) -> anyhow::Result<()> {
    let work = fuzz_dir().join("work").join(target);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let corpus = fuzz_dir().join("corpus").join(target);
    let artifacts = fuzz_dir().join("artifacts").join(target);
    let before = files(&artifacts);

    let work_arg = work.display().to_string();
    let corpus_arg = corpus.display().to_string();
    let max_time = format!("-max_total_time={seconds}");
    let timeout = format!("-timeout={INPUT_TIMEOUT_S}");
    let max_len = format!("-max_len={MAX_LEN}");
    let mut args = vec![PLUS_NIGHTLY, "fuzz", "run"];
    args.extend(build_flags(ci));
    args.extend([
        target,
        &work_arg,
        &corpus_arg,
        "--",
        &max_time,
        &timeout,
        &max_len,
        "-print_final_stats=1",
    ]);
    let result = exec(&mut command("cargo", &args));
    let found: Vec<String> = files(&artifacts)
        .difference(&before)
        .map(|p| p.display().to_string())
        .collect();
    match (result, found.is_empty()) {
        (Ok(()), true) => Ok(()),
        (Ok(()), false) => bail!("{target} wrote {}", found.join(", ")),
        (Err(e), true) => Err(e.context(format!("{target} failed"))),
        (Err(_), false) => bail!("{target} crashed on {}", found.join(", ")),
    }
}

/// Folds the work corpus of `target` into the committed one: libFuzzer's
/// merge adds only the inputs that cover something new.
fn merge(target: &str, ci: bool) -> anyhow::Result<()> {
    let work = fuzz_dir().join("work").join(target).display().to_string();
    let corpus = fuzz_dir().join("corpus").join(target).display().to_string();
    let max_len = format!("-max_len={MAX_LEN}");
    let mut args = vec![PLUS_NIGHTLY, "fuzz", "run"];
    args.extend(build_flags(ci));
    args.extend([target, &corpus, &work, "--", "-merge=1", &max_len]);
    exec(&mut command("cargo", &args))
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    /// `--seconds 0` would reach libFuzzer as `-max_total_time=0`, which
    /// it reads as "no limit": refused when parsed, naming the flag; 1
    /// and up are taken.
    #[test]
    fn a_fuzz_run_of_zero_seconds_is_refused() {
        let parse = |seconds: &str| {
            crate::Cli::try_parse_from(["xtask", "fuzz", "--seconds", seconds])
                .map(|cli| format!("{cli:?}"))
                .map_err(|e| e.to_string())
        };
        let error = parse("0").unwrap_err();
        assert!(error.contains("--seconds"), "{error}");
        for good in ["1", "15", "300"] {
            let parsed = parse(good).unwrap();
            assert!(
                parsed.contains(&format!("seconds: Some({good})")),
                "{parsed}"
            );
        }
    }
}
