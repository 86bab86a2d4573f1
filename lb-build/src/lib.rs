//! Builds an eBPF crate of this workspace (lb-ebpf, lb-decap-ebpf) for
//! bpfel-unknown-none with the nightly toolchain and bpf-linker, and copies
//! the object into the calling build script's OUT_DIR, where the userspace
//! crate embeds it. One helper for every build.rs that embeds an object.
//! The nested cargo is quiet unless it fails; it shares one target
//! directory (`target/ebpf`) across our profiles so each object is built
//! once. `cargo xtask setup` installs what this needs.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// The eBPF target.
const TARGET: &str = "bpfel-unknown-none";

/// Builds `package` (whose binary has the same name) and copies its
/// object to `$OUT_DIR/<package>`; prints the `cargo:` lines that rebuild
/// the caller when the crate, lb-common or lb-ebpf-frame changes. Call from a build
/// script whose crate lives beside `package` in the workspace; on error,
/// print the message and exit non-zero.
pub fn build_ebpf(package: &str) -> Result<PathBuf, String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let workspace = manifest_dir
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", manifest_dir.display()))?;
    let ebpf_dir = workspace.join(package);
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("ebpf");
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());
    for shared in ["lb-common", "lb-ebpf-frame"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(shared).display()
        );
    }
    println!("cargo:rerun-if-env-changed=PATH");

    if !on_path("bpf-linker") {
        return Err("bpf-linker is not in PATH: run `cargo xtask setup` (it builds bpf-linker against the nightly toolchain's LLVM)".into());
    }
    let arch = env::var("CARGO_CFG_TARGET_ARCH").map_err(|e| e.to_string())?;
    // The flags aya-ebpf expects: its target architecture (for helpers that
    // read registers), BTF for the loader, debug info for the BTF. LLVM's
    // own stack check is per function and would refuse a frame the
    // verifier accepts; the verifier checks the real limit (512 bytes per
    // call chain) at every load, tests included.
    let rustflags = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
        "-Clink-arg=--llvm-args=-bpf-stack-size=4096".to_owned(),
    ]
    .join("\x1f");
    let output = Command::new("rustup")
        .args(["run", "nightly", "cargo", "build", "--quiet"])
        .args(["--package", package, "--bin", package, "--release"])
        .args(["--target", TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(workspace)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .output()
        .map_err(|e| format!("starting `rustup run nightly cargo`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let object = target_dir.join(TARGET).join("release").join(package);
    let embedded = out_dir.join(package);
    std::fs::copy(&object, &embedded).map_err(|e| {
        format!(
            "copying {} to {}: {e}",
            object.display(),
            embedded.display()
        )
    })?;
    Ok(embedded)
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|path| {
        env::split_paths(&path).any(|dir| Path::new(&dir).join(program).is_file())
    })
}
