//! Builds: the eBPF objects alone (for inspection) and the release binaries.

use std::path::{Path, PathBuf};

use crate::cmd::{command, exec, root};

/// Cargo arguments that select the eBPF crates (the balancer's,
/// lb-decap's and the frame access both use) on their own target
/// (nightly, `core` built from source): for their lints. Builds go
/// through lb-build (see [`build_ebpf`]).
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

/// Builds lb-ebpf and lb-decap-ebpf as lbd's and lb-decap's build
/// scripts do, through lb-build (its flags: BTF, debug info, the
/// architecture cfg; its directory: `target/ebpf`), and returns the
/// objects' paths: the very files lbd and lb-decap embed. A plain
/// `cargo build` of the crates gave an object without BTF and with other
/// code, elsewhere.
pub fn build_ebpf() -> anyhow::Result<Vec<PathBuf>> {
    crate::setup::run()?;
    let root = root();
    for package in lb_build::PACKAGES {
        eprintln!("+ building {package} (lb-build, as the build script that embeds it does)");
        lb_build::compile(&root, package, std::env::consts::ARCH)
            .map_err(|e| anyhow::anyhow!("building {package}: {e}"))?;
    }
    Ok(objects(&root))
}

/// The objects [`build_ebpf`] builds and prints, for the workspace at
/// `root`.
fn objects(root: &Path) -> Vec<PathBuf> {
    lb_build::PACKAGES
        .iter()
        .map(|package| lb_build::object_path(root, package))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_ebpf_prints_the_objects_lbd_and_lb_decap_embed() {
        let root = root();
        let printed = objects(&root);
        let embedded: Vec<PathBuf> = ["lb-ebpf", "lb-decap-ebpf"]
            .iter()
            .map(|package| lb_build::object_path(&root, package))
            .collect();
        assert_eq!(printed, embedded);
        assert!(
            printed
                .iter()
                .all(|p| p.starts_with(lb_build::target_dir(&root))),
            "{printed:?}"
        );
    }
}
