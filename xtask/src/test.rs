//! `cargo xtask test`: the whole suite. Builds lbd and lb-decap first (the
//! topology tests run the binaries), then `cargo test` over the workspace.

use crate::cmd::{command, exec, require_root, root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Extra arguments for `cargo test` (e.g. a test name filter).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cargo_args: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    require_root("the test suite (BPF_PROG_TEST_RUN and network namespaces)")?;
    crate::setup::run()?;
    exec(&mut command(
        "cargo",
        &[
            "build",
            "--package",
            "lb-userspace",
            "--package",
            "lb-decap",
            "--bins",
        ],
    ))?;
    let mut test_args = vec!["test", "--workspace"];
    test_args.extend(args.cargo_args.iter().map(String::as_str));
    let mut cmd = command("cargo", &test_args);
    cmd.env("LBD_BIN", root().join("target/debug/lbd"));
    cmd.env("LB_DECAP_BIN", root().join("target/debug/lb-decap"));
    exec(&mut cmd)
}
