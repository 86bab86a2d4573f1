//! `cargo xtask test`: the whole suite. Builds lbd and lb-decap first (the
//! topology tests run the binaries), then `cargo test` over the workspace.
//! Refuses up front on a kernel the suite cannot pass on.

use anyhow::{bail, Context as _};

use crate::cmd::{command, exec, require_root, target_dir};

/// The oldest kernel the suite passes on: its tc labs assert lbd's tcx
/// links (pinned, detached with bpftool, refused when foreign), and tcx
/// came in Linux 6.6 (before it lbd falls back to cls_bpf filters, which
/// those tests do not accept). Verified on 6.18.
const MIN_KERNEL: (u32, u32) = (6, 6);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Extra arguments for `cargo test` (e.g. a test name filter).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cargo_args: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    require_root("the test suite (BPF_PROG_TEST_RUN and network namespaces)")?;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("reading the kernel's release (/proc/sys/kernel/osrelease)")?;
    check_kernel(release.trim())?;
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
    let test_args = cargo_test_args(&args.cargo_args);
    let mut cmd = command("cargo", &test_args);
    let debug = target_dir().join("debug");
    cmd.env("LBD_BIN", debug.join("lbd"));
    cmd.env("LB_DECAP_BIN", debug.join("lb-decap"));
    exec(&mut cmd)
}

/// `cargo test`'s arguments for the suite with the user's `extra` ones:
/// `--no-fail-fast` unless cargo's part of `extra` (before a `--`) has it
/// already, so that one failing test binary (CI's run) does not hide the
/// results of every binary after it.
fn cargo_test_args(extra: &[String]) -> Vec<&str> {
    let mut args = vec!["test", "--workspace"];
    let mut cargos = extra.iter().take_while(|a| a.as_str() != "--");
    if !cargos.any(|a| a == "--no-fail-fast") {
        args.push("--no-fail-fast");
    }
    args.extend(extra.iter().map(String::as_str));
    args
}

/// Fails unless `release` (`uname -r`) is [`MIN_KERNEL`] or later, naming
/// the requirement.
fn check_kernel(release: &str) -> anyhow::Result<()> {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(str::parse::<u32>);
    let (Some(Ok(major)), Some(Ok(minor))) = (numbers.next(), numbers.next()) else {
        bail!("cannot read the kernel version from {release:?} (uname -r)");
    };
    let (want_major, want_minor) = MIN_KERNEL;
    if (major, minor) < MIN_KERNEL {
        bail!(
            "the test suite needs Linux {want_major}.{want_minor} or later (tcx links for \
             lbd's `attach = \"tc\"`; verified on 6.18), and this kernel is {release}: on \
             Debian 12 (6.1) install a newer kernel, e.g. bookworm-backports' linux-image-amd64"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_before_6_6_are_refused_naming_the_requirement() {
        for release in ["6.18.44-fc-v669", "6.6.0", "6.12.38+deb12-amd64", "7.0"] {
            check_kernel(release).unwrap();
        }
        for release in ["6.1.0-37-amd64", "5.15.0-112-generic", "6.5.13"] {
            let error = check_kernel(release).unwrap_err().to_string();
            assert!(error.contains("needs Linux 6.6 or later"), "{error}");
            assert!(error.contains(release), "{error}");
        }
        assert!(check_kernel("").is_err());
        assert!(check_kernel("linux").is_err());
    }

    #[test]
    fn the_suite_runs_every_test_binary_even_after_a_failure() {
        let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            cargo_test_args(&[]),
            ["test", "--workspace", "--no-fail-fast"]
        );
        let filtered = strings(&["conntrack", "--", "--nocapture"]);
        assert_eq!(
            cargo_test_args(&filtered),
            [
                "test",
                "--workspace",
                "--no-fail-fast",
                "conntrack",
                "--",
                "--nocapture"
            ]
        );
        // The user's own flag is not passed twice.
        let given = strings(&["--no-fail-fast", "-p", "lb-tests"]);
        assert_eq!(
            cargo_test_args(&given),
            ["test", "--workspace", "--no-fail-fast", "-p", "lb-tests"]
        );
        // After `--` it is the test binaries' argument, not cargo's.
        let binaries = strings(&["--", "--no-fail-fast"]);
        assert_eq!(
            cargo_test_args(&binaries),
            [
                "test",
                "--workspace",
                "--no-fail-fast",
                "--",
                "--no-fail-fast"
            ]
        );
    }
}
