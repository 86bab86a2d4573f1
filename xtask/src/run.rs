//! `cargo xtask run -- ARGS`: build and run lbd on this node.

use crate::cmd::{command, exec, require_root, root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Arguments for lbd, e.g. `--config /etc/lbd/lbd.toml`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    lbd_args: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    require_root("lbd")?;
    crate::build::build_release()?;
    let lbd = root().join("target/release/lbd");
    let lbd = lbd.to_string_lossy();
    let lbd_args: Vec<&str> = args.lbd_args.iter().map(String::as_str).collect();
    exec(&mut command(&lbd, &lbd_args))
}
