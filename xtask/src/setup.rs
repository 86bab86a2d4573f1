//! Installs what the project needs on a fresh Debian 12 machine, and does
//! nothing (quickly) for what is already there:
//! - the nightly toolchain's `rust-src` (the eBPF crate builds `core`);
//! - `bpf-linker`, built against the nightly compiler's own LLVM, since no
//!   system LLVM of that version exists (a prefix directory with two links
//!   to the toolchain's libLLVM; the linker keeps it as its rpath);
//! - Debian packages the lab, demo and tests run.

use std::{fs, os::unix::fs::symlink, path::PathBuf};

use anyhow::{anyhow, bail, Context as _};

use crate::cmd::{command, exec, output};

/// Debian packages the lab uses: nginx backends, iproute2 for namespaces,
/// ethtool for veth offloads, curl for poking the lab by hand, keepalived as
/// the VRRP peer of the interoperability tests, prometheus (and promtool) for
/// the metrics tests; wrk, haproxy and nginx's stream module for the
/// end-to-end benchmark; PostgreSQL (server, `pgbench`, `pg_isready`) and
/// PgBouncer for the database seed scenario (issue 12); BIRD 2 (`bird2`)
/// as the BGP speaker of every lbd node and of the router in the
/// active-active lab (issue 14: lbd writes its routes, BIRD announces them,
/// the router's BIRD merges them into ECMP routes); dpkg-dev (its
/// dpkg-shlibdeps), binutils (strip), man-db and systemd (systemd-analyze,
/// nothing started) for building and checking the Debian package; perf
/// (`linux-perf`) for the benchmark's profile of the XDP program (issue 16). Their packaged
/// services need not be stopped: the lab's own instances listen only
/// inside its namespaces and keep their sockets in the run's directory.
const PACKAGES: &[&str] = &[
    "nginx",
    "iproute2",
    "ethtool",
    "curl",
    "procps",
    "keepalived",
    "prometheus",
    "wrk",
    "haproxy",
    "libnginx-mod-stream",
    "postgresql",
    "postgresql-client",
    "pgbouncer",
    "bird2",
    "dpkg-dev",
    "binutils",
    "man-db",
    "systemd",
    "linux-perf",
];
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> anyhow::Result<()> {
    rust_src()?;
    bpf_linker()?;
    debian_packages()?;
    eprintln!("setup: everything is in place");
    Ok(())
}

fn rust_src() -> anyhow::Result<()> {
    let nightly = installed_components("nightly");
    if nightly.is_empty() {
        exec(&mut command(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        ))?;
    }
    // rust-src: the eBPF crate builds `core`; clippy: `xtask lint` checks
    // the eBPF crate on its own target.
    add_missing_components("nightly", &nightly, &["rust-src", "clippy"])?;
    // The host crates' lints.
    let stable = installed_components("stable");
    add_missing_components("stable", &stable, &["clippy", "rustfmt"])
}

fn installed_components(toolchain: &str) -> String {
    output(&mut command(
        "rustup",
        &["component", "list", "--toolchain", toolchain, "--installed"],
    ))
    .unwrap_or_default()
}

fn add_missing_components(toolchain: &str, installed: &str, wanted: &[&str]) -> anyhow::Result<()> {
    for component in wanted {
        if !installed.lines().any(|l| l.starts_with(component)) {
            exec(&mut command(
                "rustup",
                &["component", "add", component, "--toolchain", toolchain],
            ))?;
        }
    }
    Ok(())
}

/// The nightly compiler's sysroot and LLVM major version.
fn nightly_llvm() -> anyhow::Result<(PathBuf, String)> {
    let version = output(&mut command("rustc", &["+nightly", "-vV"])).ok_or_else(|| {
        anyhow!("`rustc +nightly -vV` failed: is the nightly toolchain installed?")
    })?;
    let llvm = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .ok_or_else(|| anyhow!("no LLVM version in `rustc +nightly -vV`"))?;
    let major = llvm.split('.').next().unwrap_or(llvm).to_owned();
    let sysroot = output(&mut command("rustc", &["+nightly", "--print", "sysroot"]))
        .ok_or_else(|| anyhow!("`rustc +nightly --print sysroot` failed"))?;
    Ok((PathBuf::from(sysroot.trim()), major))
}

fn bpf_linker() -> anyhow::Result<()> {
    let (sysroot, major) = nightly_llvm()?;
    let current = output(&mut command("bpf-linker", &["--version"])).unwrap_or_default();
    let prefix = home()?.join(format!(".local/share/lb-llvm/llvm-{major}"));
    if current.contains(BPF_LINKER_VERSION) && prefix.join("lib/libLLVM.so").exists() {
        return Ok(());
    }
    // A prefix whose lib/ holds the nightly's libLLVM under the name the
    // build links against and under its soname, for the loader.
    let lib_dir = sysroot.join("lib");
    let libllvm = fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .ok_or_else(|| anyhow!("no libLLVM.so.* in {}", lib_dir.display()))?;
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("creating {}", prefix_lib.display()))?;
    let soname = libllvm
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", libllvm.display()))?;
    for name in [std::ffi::OsStr::new("libLLVM.so"), soname] {
        let link = prefix_lib.join(name);
        let _ = fs::remove_file(&link);
        symlink(&libllvm, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    let feature = format!("llvm-{major}");
    let mut cmd = command(
        "cargo",
        &[
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            &feature,
        ],
    );
    cmd.env("LLVM_PREFIX", &prefix);
    exec(&mut cmd)
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("HOME is not set"))
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output(&mut command("dpkg-query", &["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if output(&mut command("id", &["-u"]))
        .as_deref()
        .map(str::trim)
        != Some("0")
    {
        bail!("Debian packages {missing:?} are missing and installing them needs root");
    }
    exec(&mut command("apt-get", &["update", "-q"]))?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    let mut cmd = command("apt-get", &args);
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    exec(&mut cmd)?;
    // The lab starts its own nginx and prometheus processes; packaged
    // services must not sit on the machine's ports.
    let _ = command("nginx", &["-s", "stop"]).status();
    let _ = command("pkill", &["-x", "prometheus"]).status();
    let _ = command("pkill", &["-x", "haproxy"]).status();
    Ok(())
}
