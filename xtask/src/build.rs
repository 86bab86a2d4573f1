//! Builds: the XDP object alone (for inspection) and the release binaries.

use std::path::PathBuf;

use crate::cmd::{command, exec, root};

/// Cargo arguments that select the eBPF crate on its own target (nightly,
/// `core` built from source).
pub const EBPF_CRATE_ARGS: &[&str] = &[
    "--package",
    "lb-ebpf",
    "--release",
    "--target",
    "bpfel-unknown-none",
    "-Z",
    "build-std=core",
];

/// Builds lb-ebpf for bpfel-unknown-none; returns the object's path.
pub fn build_ebpf() -> anyhow::Result<PathBuf> {
    crate::setup::run()?;
    exec(&mut command(
        "cargo",
        &[&["+nightly", "build"], EBPF_CRATE_ARGS].concat(),
    ))?;
    Ok(root().join("target/bpfel-unknown-none/release/lb-ebpf"))
}

/// Builds lbd, lbctl and lb-decap in release mode (their build.rs embed
/// the BPF objects).
pub fn build_release() -> anyhow::Result<()> {
    crate::setup::run()?;
    exec(&mut command(
        "cargo",
        &[
            "build",
            "--release",
            "--package",
            "lb-userspace",
            "--bins",
            "--package",
            "lb-decap",
        ],
    ))
}
