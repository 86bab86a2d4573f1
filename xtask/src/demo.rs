//! `cargo xtask demo`: the lab with real nginx backends behind lbd, a burst
//! of requests from the client, and who served them.

use crate::cmd::{command, exec_passing_signals, require_root, target_dir};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Requests to send (each on a new TCP connection).
    #[arg(long, default_value_t = 300)]
    requests: u32,
    /// Leave the lab running and print how to reach it.
    #[arg(long)]
    keep: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    require_root("the demo")?;
    crate::build::build_release()?;
    let lbd = target_dir().join("release/lbd");
    let requests = args.requests.to_string();
    let mut demo_args = vec![
        "run",
        "--release",
        "--quiet",
        "--package",
        "lb-tests",
        "--bin",
        "lb-demo",
        "--",
        "--requests",
        &requests,
    ];
    if args.keep {
        demo_args.push("--keep");
    }
    let mut cmd = command("cargo", &demo_args);
    cmd.env("LBD_BIN", lbd);
    // Ctrl-C (or a signal to xtask alone) reaches the demo, and xtask
    // returns only once it has torn its lab down, then fails naming the
    // signal.
    exec_passing_signals(&mut cmd)
}
