//! The data plane outlives lbd: its maps and its XDP or tc link are pinned in a
//! BPF filesystem, so a restarted (or upgraded, or killed) lbd finds the
//! program still forwarding and the connection table intact, adopts both,
//! and swaps in its own program atomically. `lbd --cleanup` removes it all.
//!
//! Layout under the pin directory (default `/sys/fs/bpf/lbd`):
//! `maps-v<LAYOUT_VERSION>/<MAP>`, and `xdp-link-<interface>` or
//! `tc-link-<interface>` (the tcx ingress link, `attach = "tc"`). While an
//! lbd that does not adopt the pinned state starts, the maps it makes in
//! place of the pinned ones wait in `maps-v<LAYOUT_VERSION>-staged/` and
//! take their names only once its program runs (`promote_staged`): a
//! start that stops before leaves the previous lbd's pins as they were.

use std::path::{Path, PathBuf};

use lb_bpffs::BpffsError;

mod error;
mod format;
mod links;
mod pinned_maps;
mod removal;
mod staging;
#[cfg(test)]
pub(crate) mod test_support;

pub(crate) use error::error_chain;
pub use error::PinError;
#[cfg(test)]
pub(crate) use format::FormatStamp;
pub use format::FORMAT_EPOCH;
pub(crate) use format::{layout_version_of, FormatFit, LayoutAge};
pub(crate) use links::{link_owner, program_gone, LinkOwner};
pub(crate) use pinned_maps::{CARRIED_FROM, DEPENDENT_MAPS, PINNED_MAPS, STATE_MAPS};
pub(crate) use removal::PinSnapshot;
use removal::{is_layout_dir, remove_file};

/// Bumped whenever a pinned map's key or value layout changes meaning
/// without changing size: a new lbd then starts from fresh maps instead of
/// misreading the old ones. (A change of where entries are placed or what
/// they mean that an upgrade can carry over bumps [`FORMAT_EPOCH`]
/// instead: the newer build adopts and converts, an older one refuses.)
pub const LAYOUT_VERSION: u32 = 1;

/// Where bpffs is mounted by convention (and where lbd mounts it if
/// nothing is).
pub(crate) const BPFFS_MOUNT: &str = lb_bpffs::MOUNT;

/// The pin directory of one lbd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    /// The pin directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the maps of this layout version are pinned.
    pub(crate) fn maps_dir(&self) -> PathBuf {
        self.root.join(format!("maps-v{LAYOUT_VERSION}"))
    }

    /// Where map `name` is pinned.
    pub fn map_path(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    /// Capacity of the pinned map `name`, if one is pinned: lets lbd keep
    /// the size a previous lbd chose when it is still big enough, so the
    /// map can be adopted.
    pub(crate) fn pinned_max_entries(&self, name: &str) -> Option<u32> {
        let path = self.map_path(name);
        if !path.exists() {
            return None;
        }
        aya::maps::MapInfo::from_pin(path)
            .ok()
            .map(|info| info.max_entries())
    }

    /// Makes sure the directory exists on a BPF filesystem, mounting one
    /// on `/sys/fs/bpf` if the directory is under it and nothing is
    /// mounted there (as systemd would have done). Refused, before
    /// anything is mounted or created, when lbd runs in a mount namespace
    /// of its own: a mount there would not outlive lbd.
    pub fn prepare(&self) -> Result<(), PinError> {
        lb_bpffs::ensure(&self.root).map_err(|e| match e {
            BpffsError::NotBpffs(dir) => PinError::NotBpffs(dir),
            BpffsError::PrivateMountNamespace(dir) => PinError::PrivateMountNamespace(dir),
            BpffsError::Mount { path, source } => PinError::Io {
                action: "mounting bpffs on",
                path,
                source,
            },
        })?;
        let maps = self.maps_dir();
        std::fs::create_dir_all(&maps).map_err(|source| PinError::Io {
            action: "creating",
            path: maps,
            source,
        })
    }
}

#[cfg(test)]
mod tests;
