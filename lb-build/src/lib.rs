//! Builds an eBPF crate of this workspace (lb-ebpf, lb-decap-ebpf) for
//! bpfel-unknown-none with the nightly toolchain and bpf-linker, and copies
//! the object into the calling build script's OUT_DIR, where the userspace
//! crate embeds it. One helper for every build.rs that embeds an object.
//! The nested cargo is quiet unless it fails; it shares one target
//! directory (`target/ebpf`) across our profiles so each object is built
//! once. `cargo xtask build-ebpf` builds through [`compile`] too, so the
//! object it prints is the one lbd and lb-decap embed (same flags, same
//! directory). `cargo xtask setup` installs what this needs.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

pub mod version;

/// For the build script of a crate of this workspace whose binaries say
/// their version: sets `LB_BUILD_VERSION` to the crate's version and the
/// commit it was built from (see [`version`]).
pub fn emit_version() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let workspace = manifest_dir
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", manifest_dir.display()))?;
    let package_version = env::var("CARGO_PKG_VERSION").map_err(|e| e.to_string())?;
    version::emit(workspace, &package_version);
    Ok(())
}

/// The eBPF target.
pub const TARGET: &str = "bpfel-unknown-none";

/// The eBPF crates whose objects userspace embeds: lb-ebpf in lbd,
/// lb-decap-ebpf in lb-decap (each package's binary has its name).
pub const PACKAGES: &[&str] = &["lb-ebpf", "lb-decap-ebpf"];

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
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());
    for shared in ["lb-common", "lb-ebpf-frame"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(shared).display()
        );
    }
    println!("cargo:rerun-if-env-changed=PATH");

    let arch = env::var("CARGO_CFG_TARGET_ARCH").map_err(|e| e.to_string())?;
    let object = compile(workspace, package, &arch)?;
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

/// The target directory of the eBPF builds: `ebpf` under
/// `$CARGO_TARGET_DIR` (else the workspace's `target`), shared across our
/// profiles so each object is built once, and apart from the calling
/// cargo's own (whose lock it holds while build scripts run).
pub fn target_dir(workspace: &Path) -> PathBuf {
    target_dir_for(workspace, env::var_os("CARGO_TARGET_DIR").as_deref())
}

/// [`target_dir`] for the value `cargo_target_dir` of `CARGO_TARGET_DIR`:
/// a relative one is taken from the workspace (where `cargo xtask` runs
/// cargo), not from the build script's own directory, the package's.
fn target_dir_for(workspace: &Path, cargo_target_dir: Option<&std::ffi::OsStr>) -> PathBuf {
    match cargo_target_dir {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => workspace.join("target"),
    }
    .join("ebpf")
}

/// Where [`compile`] leaves `package`'s object: the file the userspace
/// crates embed (through their OUT_DIR copy).
pub fn object_path(workspace: &Path, package: &str) -> PathBuf {
    target_dir(workspace)
        .join(TARGET)
        .join("release")
        .join(package)
}

/// The rustflags of every eBPF build (one list, so that `cargo xtask
/// build-ebpf` builds the very object lbd and lb-decap embed): what
/// aya-ebpf expects, its target architecture `arch` (for helpers that
/// read registers), BTF for the loader, debug info for the BTF. LLVM's
/// own stack check is per function and would refuse a frame the
/// verifier accepts; the verifier checks the real limit (512 bytes per
/// call chain) at every load, tests included.
pub fn rustflags(arch: &str) -> Vec<String> {
    vec![
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
        "-Clink-arg=--llvm-args=-bpf-stack-size=4096".to_owned(),
    ]
}

/// Builds `package` of `workspace` (release, [`TARGET`], nightly with
/// `core` from source, [`rustflags`] for `arch`) into [`target_dir`];
/// returns [`object_path`]. The nested cargo is quiet unless it fails.
/// Used by [`build_ebpf`] and by `cargo xtask build-ebpf`.
pub fn compile(workspace: &Path, package: &str, arch: &str) -> Result<PathBuf, String> {
    if !on_path("bpf-linker") {
        return Err("bpf-linker is not in PATH: run `cargo xtask setup` (it builds bpf-linker against the nightly toolchain's LLVM)".into());
    }
    let output = Command::new("rustup")
        .args(["run", "nightly", "cargo", "build", "--quiet"])
        .args(["--package", package, "--bin", package, "--release"])
        .args(["--target", TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(target_dir(workspace))
        .current_dir(workspace)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags(arch).join("\x1f"))
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
    Ok(object_path(workspace, package))
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|path| {
        env::split_paths(&path).any(|dir| Path::new(&dir).join(program).is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_build_gets_btf_debug_info_and_the_arch_cfg() {
        // lbd loads the object with its BTF: without these the object
        // `cargo xtask build-ebpf` printed was not the one lbd embeds.
        let flags = rustflags("x86_64");
        for flag in [
            "-Clink-arg=--btf",
            "-Cdebuginfo=2",
            "-Clink-arg=--llvm-args=-bpf-stack-size=4096",
            "--cfg=bpf_target_arch=\"x86_64\"",
        ] {
            assert!(flags.iter().any(|f| f == flag), "{flag} not in {flags:?}");
        }
    }

    #[test]
    fn a_relative_target_dir_is_the_workspaces() {
        let workspace = Path::new("/src/lb");
        assert_eq!(
            target_dir_for(workspace, Some("tgt".as_ref())),
            Path::new("/src/lb/tgt/ebpf")
        );
        assert_eq!(
            target_dir_for(workspace, Some("/var/tgt".as_ref())),
            Path::new("/var/tgt/ebpf")
        );
        assert_eq!(
            target_dir_for(workspace, None),
            Path::new("/src/lb/target/ebpf")
        );
        assert_eq!(
            target_dir_for(workspace, Some("".as_ref())),
            Path::new("/src/lb/target/ebpf")
        );
    }

    #[test]
    fn the_object_is_in_the_ebpf_target_dir() {
        let workspace = Path::new("/w");
        let object = object_path(workspace, "lb-ebpf");
        assert!(object.starts_with(target_dir(workspace)), "{object:?}");
        assert!(object.ends_with("bpfel-unknown-none/release/lb-ebpf"));
    }
}
