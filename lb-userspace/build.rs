//! Builds the XDP object (lb-ebpf) for bpfel-unknown-none with the nightly
//! toolchain and bpf-linker, into OUT_DIR, where `ebpf_object.rs` embeds it.
//! `cargo xtask setup` installs what this needs.

use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("lb-userspace has no parent directory"))?
        .join("lb-ebpf");
    let root = root
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    if which_bpf_linker().is_none() {
        return Err(anyhow!(
            "bpf-linker not found in PATH: run `cargo xtask setup` first (it builds bpf-linker against the nightly toolchain's LLVM)"
        ));
    }
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "lb-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

fn which_bpf_linker() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("bpf-linker"))
        .find(|candidate| candidate.is_file())
}
