//! Removing what lbd pinned: other layout versions once they are unused,
//! everything on a stop for good, or only what a failed start made since
//! its snapshot. Only lbd's own names at the root go (`is_lbd_name`): the
//! directory may be shared with other tools.

use std::path::{Path, PathBuf};

use super::links::link_pin_of;
use super::{link_owner, LinkOwner, PinDir, PinError};

impl PinDir {
    /// Removes the maps of other layout versions (an lbd of an older
    /// release pinned them, or of a newer one this build was downgraded
    /// from; this one started its own beside them): once
    /// this lbd's program runs and the old program is gone from every
    /// hook nothing uses them, and pinned they would hold their memory
    /// (a connection table, hundreds of MB) until a reboot, and a later
    /// downgrade would adopt their stale state. Returns what was removed.
    pub(crate) fn remove_other_layouts(&self) -> Result<Vec<PathBuf>, PinError> {
        let current = self.maps_dir();
        let mut removed = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(removed);
        };
        let others = entries.flatten().map(|entry| entry.path()).filter(|path| {
            *path != current
                && path.is_dir()
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(is_layout_dir)
        });
        for dir in others {
            let files = std::fs::read_dir(&dir).map_err(|source| PinError::Io {
                action: "listing",
                path: dir.clone(),
                source,
            })?;
            for path in files.flatten().map(|entry| entry.path()) {
                std::fs::remove_file(&path).map_err(|source| PinError::Io {
                    action: "removing",
                    path: path.clone(),
                    source,
                })?;
                removed.push(path);
            }
            std::fs::remove_dir(&dir).map_err(|source| PinError::Io {
                action: "removing",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(removed)
    }

    /// Removes everything lbd pinned here: links (which detaches their
    /// programs once nothing else holds them) and maps (freed once no
    /// program uses them), every layout version's, and the owner record;
    /// then the directory, if that left it empty. Only lbd's own names
    /// (see [`is_lbd_name`]) go, and of the links only those that run
    /// lbd's program (see [`link_owner`]): `pin_dir` may be any directory
    /// on bpffs, `/sys/fs/bpf` itself too, where lb-decap pins its links
    /// under the same names, and other tools' pins there are not lbd's to
    /// remove (what is left is logged). Returns what was removed.
    pub(crate) fn remove_all(&self) -> Result<Vec<PathBuf>, PinError> {
        self.remove_where(|_, _| true)
    }

    /// The pins of lbd's names here now, each with its inode: what a
    /// start found before it made anything, so that undoing a failed
    /// start (`remove_made_since`) removes only what it made. A pin
    /// replaced since (a staged map renamed over it, a link pinned anew)
    /// is another inode, so it counts as made since.
    pub(crate) fn snapshot(&self) -> Result<PinSnapshot, PinError> {
        let mut pins = std::collections::BTreeSet::new();
        let (layouts, files, _) = self.lbd_entries()?;
        for dir in layouts {
            for (path, ino) in files_in(&dir)? {
                pins.insert((path, ino));
            }
        }
        for path in files {
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                pins.insert((path, std::os::unix::fs::MetadataExt::ino(&meta)));
            }
        }
        Ok(PinSnapshot(pins))
    }

    /// Removes the pins of lbd's names made since `before` (see
    /// `snapshot`), and the owner record (this lbd's, rewritten at its
    /// start), then the directories that left empty: the undoing of a
    /// first start that failed, which leaves what a previous lbd pinned
    /// (maps not adopted, older layouts, links on other interfaces) as it
    /// was. Returns what was removed.
    pub(crate) fn remove_made_since(&self, before: &PinSnapshot) -> Result<Vec<PathBuf>, PinError> {
        self.remove_where(|path, ino| !before.0.contains(&(path.to_owned(), ino)))
    }

    /// The entries at the root: lbd's layout directories, lbd's files
    /// (link pins and the owner record) and everything else.
    fn lbd_entries(&self) -> Result<RootEntries, PinError> {
        let mut left = Vec::new();
        let mut layouts = Vec::new();
        let mut files = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((layouts, files, left))
            }
            Err(source) => {
                return Err(PinError::Io {
                    action: "listing",
                    path: self.root.clone(),
                    source,
                })
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            match name.to_str().map(is_lbd_name) {
                Some(Some(LbdName::Layout)) if is_dir => layouts.push(path),
                Some(Some(LbdName::File)) if !is_dir => files.push(path),
                _ => left.push(path),
            }
        }
        Ok((layouts, files, left))
    }

    /// Removes lbd's pins for which `remove(path, inode)` says so (the
    /// owner record whatever it says), links only if they run lbd's
    /// program, then lbd's directories and the root if that left them
    /// empty (`remove_all`, `remove_made_since`).
    fn remove_where(&self, remove: impl Fn(&Path, u64) -> bool) -> Result<Vec<PathBuf>, PinError> {
        let mut removed = Vec::new();
        let (layouts, files, mut left) = self.lbd_entries()?;
        // Every layout version's maps (an older release's too: its tables
        // would stay pinned, and their memory held, until a reboot), and
        // the maps a start staged. What is in them is lbd's alone: its
        // maps, the tables set aside for a resize (`*_RESIZED`), the maps
        // of older releases (`COUNTERS`, `NAT_FLOWS`, the LRU connection
        // table).
        for dir in layouts {
            for (path, ino) in files_in(&dir)? {
                if remove(&path, ino) {
                    remove_file(&path)?;
                    removed.push(path);
                }
            }
            // Not empty: pins that stay.
            let _ = std::fs::remove_dir(&dir);
        }
        // The links and the owner record at the root.
        for path in files {
            let is_owner = path
                .file_name()
                .is_some_and(|n| n == crate::ownership::lock::OWNER_LINK);
            if !is_owner {
                let ino = std::fs::symlink_metadata(&path)
                    .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                    .unwrap_or(0);
                if !remove(&path, ino) {
                    continue;
                }
                match link_owner(&path) {
                    LinkOwner::Lbd => {}
                    LinkOwner::Other(program) => {
                        tracing::debug!(pin = %path.display(), %program, "a link of another tool's program under an lbd name (lb-decap shares the pin directory?): left alone");
                        left.push(path);
                        continue;
                    }
                    LinkOwner::Unknown(reason) => {
                        tracing::warn!(pin = %path.display(), %reason, "cannot tell which program the pinned link runs: left alone, as another tool's would be (remove it by hand if it is lbd's)");
                        left.push(path);
                        continue;
                    }
                }
            }
            remove_file(&path)?;
            removed.push(path);
        }
        if left.is_empty() {
            let _ = std::fs::remove_dir(&self.root);
        } else {
            left.sort();
            tracing::info!(dir = %self.root.display(), left = ?left, "pins lbd did not make are left in pin_dir");
        }
        Ok(removed)
    }
}

/// The entries at a pin directory's root, sorted (`lbd_entries`): lbd's
/// layout directories, lbd's files, the rest.
type RootEntries = (Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>);

/// The pins of lbd's names in a pin directory at one moment, by path and
/// inode (see [`PinDir::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PinSnapshot(std::collections::BTreeSet<(PathBuf, u64)>);

/// The files (pins) in the layout directory `dir`, each with its inode;
/// none if it is gone.
fn files_in(dir: &Path) -> Result<Vec<(PathBuf, u64)>, PinError> {
    let maps = match std::fs::read_dir(dir) {
        Ok(maps) => maps,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PinError::Io {
                action: "listing",
                path: dir.to_owned(),
                source,
            })
        }
    };
    Ok(maps
        .flatten()
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            (!meta.is_dir()).then(|| (entry.path(), std::os::unix::fs::MetadataExt::ino(&meta)))
        })
        .collect())
}

/// Removes the empty directory at `path`; one already gone is not an
/// error.
pub(super) fn remove_dir(path: &Path) -> Result<(), PinError> {
    remove_with(path, |p| std::fs::remove_dir(p))
}

/// Removes the file (a pin) at `path`; one already gone is not an error.
pub(super) fn remove_file(path: &Path) -> Result<(), PinError> {
    remove_with(path, |p| std::fs::remove_file(p))
}

/// `remove(path)`, a path already gone not an error.
fn remove_with(path: &Path, remove: fn(&Path) -> std::io::Result<()>) -> Result<(), PinError> {
    match remove(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PinError::Io {
            action: "removing",
            path: path.to_owned(),
            source,
        }),
    }
}

/// What an entry at the root of a pin directory named by lbd is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LbdName {
    /// A layout version's directory of maps (`maps-v<N>`), or of the
    /// maps a start staged (`maps-v<N>-staged`).
    Layout,
    /// A pinned link (`xdp-link-<if>`, `tc-link-<if>`) or the owner
    /// record (`lbd-owner`).
    File,
}

/// Whether `name`, at the root of a pin directory, is one lbd makes
/// there, and what it is: what [`PinDir::remove_all`] may remove, since
/// the directory may be shared with other tools.
fn is_lbd_name(name: &str) -> Option<LbdName> {
    let staged = name.strip_suffix("-staged").is_some_and(is_layout_dir);
    if is_layout_dir(name) || staged {
        Some(LbdName::Layout)
    } else if link_pin_of(name).is_some() || name == crate::ownership::lock::OWNER_LINK {
        Some(LbdName::File)
    } else {
        None
    }
}

/// Whether `name` is a layout version's directory of maps: `maps-v`
/// and a version number.
pub(super) fn is_layout_dir(name: &str) -> bool {
    name.strip_prefix("maps-v")
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}
