//! Builds: the eBPF objects alone (for inspection) and the release binaries.

use std::path::PathBuf;

use crate::cmd::{command, exec, root};

/// Cargo arguments that select the eBPF crates (the balancer's,
/// lb-decap's and the frame access both use) on their own target
/// (nightly, `core` built from source).
pub const EBPF_CRATE_ARGS: &[&str] = &[
    "--package",
    "lb-ebpf",
    "--package",
    "lb-decap-ebpf",
    "--package",
    "lb-ebpf-frame",
    "--release",
    "--target",
    "bpfel-unknown-none",
    "-Z",
    "build-std=core",
];

/// Builds lb-ebpf and lb-decap-ebpf for bpfel-unknown-none; returns the
/// objects' paths.
pub fn build_ebpf() -> anyhow::Result<Vec<PathBuf>> {
    crate::setup::run()?;
    exec(&mut command(
        "cargo",
        &[&[crate::setup::PLUS_NIGHTLY, "build"], EBPF_CRATE_ARGS].concat(),
    ))?;
    let dir = root().join("target/bpfel-unknown-none/release");
    Ok(vec![dir.join("lb-ebpf"), dir.join("lb-decap-ebpf")])
}

/// Builds lbd, lbctl and lb-decap in release mode (their build.rs embed
/// the eBPF objects).
pub fn build_release() -> anyhow::Result<()> {
    crate::setup::run()?;
    exec(&mut command(
        "cargo",
        &[
            "build",
            "--release",
            "--package",
            "lb-userspace",
            "--package",
            "lb-decap",
            "--bins",
        ],
    ))
}
