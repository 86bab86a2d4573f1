//! `cargo xtask bench`: set up, build in release mode, run the benchmarks,
//! and regenerate `bench/results.json`, `BENCHMARKS.md` and its plot.

use crate::cmd::{command, exec, require_root, root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Extra arguments for the runner (e.g. `--only maglev`, `--rounds 11`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    runner_args: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    require_root("the benchmarks (BPF_PROG_TEST_RUN)")?;
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
    cmd.env("LBD_BIN", root().join("target/release/lbd"));
    cmd.env("LB_DECAP_BIN", root().join("target/release/lb-decap"));
    exec(&mut cmd)
}
