//! The maps a start that does not adopt the pinned state makes in place
//! of the pinned ones, staged beside them until its program runs: then
//! put in place (`promote_staged`), or removed if the start stops before
//! (`discard_staged`), so the previous lbd's pins stay as they were.

use std::path::PathBuf;

use super::removal::{remove_dir, remove_file};
use super::{PinDir, PinError, CARRIED_FROM, LAYOUT_VERSION};

impl PinDir {
    /// Where a start that does not adopt the pinned state stages the maps
    /// it makes in place of the pinned ones until its program runs
    /// (`promote_staged`).
    pub(crate) fn staged_dir(&self) -> PathBuf {
        self.root.join(format!("maps-v{LAYOUT_VERSION}-staged"))
    }

    /// Where map `name` is staged.
    pub(crate) fn staged_path(&self, name: &str) -> PathBuf {
        self.staged_dir().join(name)
    }

    /// The maps staged (`staged_dir`), each with its pin, by name; none
    /// when nothing is staged.
    pub(crate) fn staged_pins(&self) -> Result<Vec<(String, PathBuf)>, PinError> {
        let dir = self.staged_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(PinError::Io {
                    action: "listing",
                    path: dir,
                    source,
                })
            }
        };
        let mut staged: Vec<(String, PathBuf)> = entries
            .flatten()
            .filter_map(|entry| Some((entry.file_name().into_string().ok()?, entry.path())))
            .collect();
        staged.sort();
        Ok(staged)
    }

    /// Puts the staged maps in place, once the program of the start that
    /// staged them runs: each is renamed over the pin of its name (the
    /// previous lbd's goes at once, no moment without one), then the
    /// staged directory goes. With `drop_carried` (the state maps were
    /// replaced) the `CARRIED_FROM` pins go first: their flows name VIPs
    /// and backends of the replaced maps. Run again after a failure part
    /// way (`dataplane::recover_staged`), it goes on with what is left.
    /// Returns the names put in place.
    pub(crate) fn promote_staged(&self, drop_carried: bool) -> Result<Vec<String>, PinError> {
        let staged = self.staged_pins()?;
        if drop_carried {
            for name in CARRIED_FROM {
                remove_file(&self.map_path(name))?;
            }
        }
        let mut moved = Vec::with_capacity(staged.len());
        for (name, path) in staged {
            let to = self.map_path(&name);
            std::fs::rename(&path, &to).map_err(|source| PinError::Io {
                action: "putting a staged map in place at",
                path: to,
                source,
            })?;
            moved.push(name);
        }
        remove_dir(&self.staged_dir())?;
        Ok(moved)
    }

    /// Removes the staged maps and their directory: the start that
    /// staged them stopped before its program ran, and the pins they were
    /// to replace stay as they are. Returns how many went.
    pub(crate) fn discard_staged(&self) -> Result<usize, PinError> {
        let staged = self.staged_pins()?;
        for (_, path) in &staged {
            remove_file(path)?;
        }
        remove_dir(&self.staged_dir())?;
        Ok(staged.len())
    }
}
