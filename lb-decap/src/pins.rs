//! The pin directory: the decap program outlives lb-decap. Its maps and
//! its XDP or tc link are pinned in a BPF filesystem, so a restarted
//! lb-decap finds the program still unwrapping and updates its maps in
//! place; `lb-decap cleanup` removes it all.
//!
//! Layout under the directory (default `/sys/fs/bpf/lb-decap`):
//! `maps/<MAP>`, `xdp-link-<interface>` or `tc-link-<interface>` per
//! interface, and `owners/<interface>` (empty directories a running
//! `lb-decap run` keeps locked, see `owner`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use lb_bpffs::BpffsError;
use lb_common::decap::names;

use tracing::warn;

use crate::{config::Attach, link::LinkOwner};

/// The pinned maps: everything the program reads and counts.
pub const PINNED_MAPS: [&str; 6] = [
    names::MAP_DECAP_ADDRS,
    names::MAP_DECAP_VIPS,
    names::MAP_DECAP_CONFIG,
    names::MAP_DECAP_COUNTERS,
    names::MAP_DECAP_SOURCES_V4,
    names::MAP_DECAP_SOURCES_V6,
];

/// The pin directory of one lb-decap.
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

    /// Where the maps are pinned.
    pub fn maps_dir(&self) -> PathBuf {
        self.root.join("maps")
    }

    /// Where map `name` is pinned.
    pub fn map_path(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    /// Where the lock directories of running lb-decaps are (`owner`).
    pub fn owners_dir(&self) -> PathBuf {
        self.root.join("owners")
    }

    /// The lock directory a running lb-decap serving `interface` holds.
    pub fn owner_path(&self, interface: &str) -> PathBuf {
        self.owners_dir().join(interface)
    }

    /// Where the link of `attach` on `interface` is pinned.
    pub fn link_path(&self, attach: Attach, interface: &str) -> PathBuf {
        self.root
            .join(format!("{}-link-{interface}", attach.name()))
    }

    /// Every pinned link of lb-decap: (hook, interface, path). A link
    /// pinned under one of its names that runs another program (lbd pins
    /// its links under the same names, and the directory may be shared)
    /// is not one: see [`PinDir::foreign_links`].
    pub fn links(&self) -> Vec<(Attach, String, PathBuf)> {
        self.named_links()
            .into_iter()
            .filter(|(_, _, path)| crate::link::owner(path) == LinkOwner::Decap)
            .collect()
    }

    /// The links pinned under lb-decap's names that run another program
    /// (or one that cannot be told): never removed, swapped or claimed
    /// by lb-decap. (hook, interface, path, who).
    pub fn foreign_links(&self) -> Vec<(Attach, String, PathBuf, LinkOwner)> {
        self.named_links()
            .into_iter()
            .filter_map(
                |(attach, interface, path)| match crate::link::owner(&path) {
                    LinkOwner::Decap => None,
                    owner => Some((attach, interface, path, owner)),
                },
            )
            .collect()
    }

    /// Every pin named like a link of lb-decap, whoever it runs.
    fn named_links(&self) -> Vec<(Attach, String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut links: Vec<_> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                Attach::ALL.into_iter().find_map(|attach| {
                    name.strip_prefix(&format!("{}-link-", attach.name()))
                        .map(|interface| (attach, interface.to_owned(), entry.path()))
                })
            })
            .collect();
        links.sort();
        links
    }

    /// Whether every map is pinned.
    pub fn maps_pinned(&self) -> bool {
        self.missing_maps().is_empty()
    }

    /// The maps not pinned (all of them before a first start; some after
    /// an upgrade that added maps).
    pub fn missing_maps(&self) -> Vec<&'static str> {
        PINNED_MAPS
            .into_iter()
            .filter(|m| !self.map_path(m).exists())
            .collect()
    }

    /// Makes sure the directory exists on a BPF filesystem, mounting one on
    /// `/sys/fs/bpf` if the directory is under it and nothing is mounted
    /// there (as systemd would have). Refused when lb-decap runs in a mount
    /// namespace of its own (`ip netns exec`): a mount there would vanish
    /// with lb-decap, and the program with it.
    pub fn prepare(&self) -> anyhow::Result<()> {
        lb_bpffs::ensure(&self.root).map_err(|e| match e {
            BpffsError::NotBpffs(dir) => anyhow!(
                "pin directory {} is not on a BPF filesystem (mount one: mount -t bpf bpf {})",
                dir.display(),
                lb_bpffs::MOUNT
            ),
            BpffsError::PrivateMountNamespace(dir) => anyhow!(
                "pin directory {} is not on a BPF filesystem, and lb-decap runs in a mount namespace of its own (ip netns exec?): one mounted here would vanish with it. Mount bpffs outside /sys first (mkdir -p /run/lb-decap-bpffs && mount -t bpf bpf /run/lb-decap-bpffs) and pass --pin-dir under it",
                dir.display()
            ),
            e @ BpffsError::Mount { .. } => anyhow::Error::new(e),
        })?;
        let maps = self.maps_dir();
        std::fs::create_dir_all(&maps).with_context(|| format!("creating {}", maps.display()))
    }

    /// Removes everything of lb-decap's pinned here: links (which detaches
    /// their programs) and maps (freed once no program uses them), then
    /// the directory, unless another tool's links are pinned in it (they
    /// are left alone, each warned about). Returns what was removed.
    pub fn remove_all(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for (_, _, path) in self.links() {
            remove_pin(&path)?;
            removed.push(path);
        }
        for map in PINNED_MAPS {
            let path = self.map_path(map);
            if path.exists() {
                remove_pin(&path)?;
                removed.push(path);
            }
        }
        self.remove_owner_dirs()?;
        let foreign = self.foreign_links();
        for (_, _, path, owner) in &foreign {
            warn!(pin = %path.display(), "left alone: the link runs {}, not lb-decap's", owner.describe());
        }
        // The directory stays while another tool's links are pinned in it.
        let dirs = if foreign.is_empty() {
            vec![self.maps_dir(), self.root.clone()]
        } else {
            vec![self.maps_dir()]
        };
        for dir in dirs {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "removing {} (something else is pinned there?)",
                            dir.display()
                        )
                    })
                }
            }
        }
        Ok(removed)
    }
}

impl PinDir {
    /// Removes the lock directories of running lb-decaps (a live one
    /// keeps its lock on the removed directory, and takes a new one at
    /// its next apply) and their parent.
    pub fn remove_owner_dirs(&self) -> anyhow::Result<()> {
        for dir in crate::owner::owner_dirs(self)
            .into_iter()
            .chain([self.owners_dir()])
        {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
            }
        }
        Ok(())
    }
}

/// Removes one pin; a missing one is fine.
pub fn remove_pin(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing the pin {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_names_the_hook_and_interface() {
        let pins = PinDir::new("/sys/fs/bpf/lb-decap");
        assert_eq!(
            pins.map_path("DECAP_VIPS"),
            PathBuf::from("/sys/fs/bpf/lb-decap/maps/DECAP_VIPS")
        );
        assert_eq!(
            pins.link_path(Attach::Tc, "eth0"),
            PathBuf::from("/sys/fs/bpf/lb-decap/tc-link-eth0")
        );
    }

    #[test]
    fn a_directory_outside_bpffs_is_refused_and_nothing_is_created() {
        let dir = std::env::temp_dir().join(format!("t2-pins-{}", std::process::id()));
        let pins = PinDir::new(&dir);
        let error = format!("{:#}", pins.prepare().expect_err("not bpffs"));
        assert!(error.contains("not on a BPF filesystem"), "{error}");
        assert!(!dir.exists());
        assert!(pins.remove_all().expect("nothing to remove").is_empty());
    }
}
