//! `cargo xtask run -- ARGS`: build and run lbd on this node.

use std::process::Command;

use crate::cmd::{exec, require_root, target_dir};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Arguments for lbd, e.g. `--config /etc/lbd/lbd.toml`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    lbd_args: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    require_root("lbd")?;
    crate::build::build_release()?;
    let lbd = target_dir().join("release/lbd");
    exec(&mut lbd_command(&lbd.to_string_lossy(), &args.lbd_args))
}

/// lbd with `args`, run where the caller is (not from the workspace root,
/// as the build is): a relative `--config` path names the caller's file.
fn lbd_command(lbd: &str, args: &[String]) -> Command {
    let mut cmd = Command::new(lbd);
    cmd.args(args);
    cmd
}

#[cfg(test)]
mod tests {
    use super::lbd_command;

    #[test]
    fn lbd_runs_in_the_callers_directory() {
        let cmd = lbd_command("/x/lbd", &["--config".to_owned(), "lbd.toml".to_owned()]);
        assert_eq!(cmd.get_current_dir(), None);
        assert_eq!(cmd.get_args().collect::<Vec<_>>(), ["--config", "lbd.toml"]);
    }
}
