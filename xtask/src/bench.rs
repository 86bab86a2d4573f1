//! `cargo xtask bench`: set up, build in release mode, run the benchmarks,
//! and regenerate `bench/results.json`, `BENCHMARKS.md` and its plot.

use std::process::Command;

use crate::cmd::{command, exec, require_root, root, target_dir};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Extra arguments for the runner (e.g. `--only maglev`, `--rounds 11`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    runner_args: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    require_root("the benchmarks (BPF_PROG_TEST_RUN)")?;
    // The tree as it is now, before the build: what the binaries measured
    // are built from (a tree edited during a long run is not described at
    // its end), recorded for every section of the run.
    let commit = describe_tree();
    let line = command_line(std::env::args().skip(1));
    crate::build::build_release()?;
    let mut bench_args = vec![
        "run",
        "--release",
        "--quiet",
        "--package",
        "lb-tests",
        "--bin",
        "lb-bench",
        "--",
    ];
    bench_args.extend(args.runner_args.iter().map(String::as_str));
    let mut cmd = command("cargo", &bench_args);
    let release = target_dir().join("release");
    cmd.env("LBD_BIN", release.join("lbd"));
    cmd.env("LB_DECAP_BIN", release.join("lb-decap"));
    // Read by the runner (`lb-bench`): the tree measured and the command.
    cmd.env("LB_BENCH_COMMIT", &commit);
    cmd.env("LB_BENCH_COMMAND", &line);
    exec(&mut cmd)
}

/// The workspace's tree: `git describe --always --dirty` (`-dirty`:
/// tracked files changed), `+untracked` when `git status --porcelain`
/// lists untracked files; "unknown" without git.
fn describe_tree() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    match git(&["describe", "--always", "--dirty"]) {
        Some(describe) => provenance(
            describe.trim(),
            &git(&["status", "--porcelain"]).unwrap_or_default(),
        ),
        None => "unknown".to_owned(),
    }
}

/// `describe`, marked `+untracked` when `porcelain` (`git status
/// --porcelain`) lists untracked files (`??`), which `--dirty` misses.
fn provenance(describe: &str, porcelain: &str) -> String {
    if porcelain.lines().any(|l| l.starts_with("??")) {
        format!("{describe}+untracked")
    } else {
        describe.to_owned()
    }
}

/// The command line that ran xtask (`args`: its arguments after the
/// program name), as typed through the cargo alias: `cargo xtask bench
/// ...`, each argument a shell would split or expand single-quoted.
fn command_line(args: impl IntoIterator<Item = String>) -> String {
    std::iter::once("cargo xtask".to_owned())
        .chain(args.into_iter().map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
            if plain {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_is_described_with_untracked_files() {
        assert_eq!(provenance("330ecce", ""), "330ecce");
        assert_eq!(provenance("330ecce-dirty", " M a.rs\n"), "330ecce-dirty");
        assert_eq!(
            provenance("330ecce-dirty", " M a.rs\n?? b.rs\n"),
            "330ecce-dirty+untracked"
        );
    }

    #[test]
    fn the_command_line_is_recorded_as_typed() {
        let args = ["bench", "--only", "xdp,nat", "--rounds", "11", "a b"].map(String::from);
        assert_eq!(
            command_line(args),
            "cargo xtask bench --only xdp,nat --rounds 11 'a b'"
        );
    }
}
