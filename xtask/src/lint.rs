//! `cargo xtask lint`: formatting and clippy, warnings denied.

use crate::cmd::{command, exec};

pub fn run() -> anyhow::Result<()> {
    crate::setup::run()?;
    exec(&mut command("cargo", &["fmt", "--all", "--check"]))?;
    exec(&mut command(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ))
}
