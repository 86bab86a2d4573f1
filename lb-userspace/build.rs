//! Builds the XDP object (lb-ebpf) for bpfel-unknown-none with the nightly
//! toolchain and bpf-linker, and puts it in OUT_DIR for `ebpf_object.rs` to
//! embed. The nested cargo is quiet unless it fails; it shares one target
//! directory (`target/ebpf`) across our profiles so the object is built once.
//! `cargo xtask setup` installs what this needs.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const TARGET: &str = "bpfel-unknown-none";

fn main() {
    if let Err(message) = build() {
        // A build script reports failure by exiting non-zero; stderr is
        // shown to the user.
        eprintln!("error: building the XDP object failed:\n{message}");
        std::process::exit(1);
    }
}

fn build() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let workspace = manifest_dir
        .parent()
        .ok_or("lb-userspace has no parent directory")?;
    let ebpf_dir = workspace.join("lb-ebpf");
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("ebpf");
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("lb-common").display()
    );
    println!("cargo:rerun-if-env-changed=PATH");

    if !on_path("bpf-linker") {
        return Err("bpf-linker is not in PATH: run `cargo xtask setup` (it builds bpf-linker against the nightly toolchain's LLVM)".into());
    }
    let arch = env::var("CARGO_CFG_TARGET_ARCH").map_err(|e| e.to_string())?;
    // The flags aya-ebpf expects: its target architecture (for helpers that
    // read registers), BTF for the loader, debug info for the BTF.
    let rustflags = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
    ]
    .join("\x1f");
    let output = Command::new("rustup")
        .args(["run", "nightly", "cargo", "build", "--quiet"])
        .args(["--package", "lb-ebpf", "--bin", "lb-ebpf", "--release"])
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
    let object = target_dir.join(TARGET).join("release").join("lb-ebpf");
    let embedded = out_dir.join("lb-ebpf");
    std::fs::copy(&object, &embedded).map_err(|e| {
        format!(
            "copying {} to {}: {e}",
            object.display(),
            embedded.display()
        )
    })?;
    Ok(())
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|path| {
        env::split_paths(&path).any(|dir| Path::new(&dir).join(program).is_file())
    })
}
