//! The errors of the pin directory, and how errors are told in full
//! (with their sources, where aya keeps the errno): shared by every part
//! of the pin directory and by the data plane that uses it.

use std::path::{Path, PathBuf};

use super::BPFFS_MOUNT;

/// Errors of the pin directory, each naming the path.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The directory is not on a BPF filesystem.
    #[error("{0} is not on a BPF filesystem (mount one: mount -t bpf bpf {BPFFS_MOUNT})")]
    NotBpffs(PathBuf),
    /// The directory is not on a BPF filesystem, and one lbd mounted would
    /// live in a mount namespace that ends with lbd (`ip netns exec`): the
    /// pins, and with them the program, would go when lbd goes.
    #[error("{}", private_namespace_message(.0))]
    PrivateMountNamespace(PathBuf),
}

/// The refusal of a `pin_dir` lbd would have to mount bpffs for in a mount
/// namespace of its own, with the fixes.
pub(crate) fn private_namespace_message(dir: &Path) -> String {
    format!(
        "pin_dir {} is not on a BPF filesystem, and lbd runs in a mount namespace of its own \
         (e.g. under `ip netns exec`, which also gives it a fresh /sys without the host's \
         {BPFFS_MOUNT}): a BPF filesystem lbd mounted there would vanish with lbd, and its pins \
         with it, so a kill -9 would detach the program. Mount a BPF filesystem on the host, \
         outside /sys, before starting lbd (e.g. `mkdir -p /run/lbd-bpffs && mount -t bpf bpf \
         /run/lbd-bpffs`) and set pin_dir under it (pin_dir = \"/run/lbd-bpffs/lbd\"); or start \
         lbd in the host's mount namespace, where `mount -t bpf bpf {BPFFS_MOUNT}` is the usual \
         place; or set pin_dir = \"off\" (the program then goes with lbd)",
        dir.display()
    )
}

/// `e` and its sources, joined by ": " (aya's system-call errors keep
/// the errno in their source).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}
