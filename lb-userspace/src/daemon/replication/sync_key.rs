//! The sync key file: read at start, warned of when others may read it,
//! and compared on a reload (a rotated key waits for a restart).

use std::path::Path;

use anyhow::Context as _;

use super::Replication;

impl Replication {
    /// What a reload must tell when the key file no longer holds the key
    /// replication runs with (rotated in place, unreadable, too short):
    /// the key is read at start only, and the path in the config is the
    /// same, so nothing else would say that the new key waits for a
    /// restart (the peer that restarts first then fails to authenticate
    /// until the other restarts too).
    pub fn key_file_changed(&self) -> Option<String> {
        let (path, running) = &self.key;
        key_file_note(path, running, read_key(path))
    }
}

/// [`Replication::key_file_changed`]'s note, from what reading `path`
/// gave.
pub(super) fn key_file_note(
    path: &Path,
    running: &[u8],
    on_disk: anyhow::Result<Vec<u8>>,
) -> Option<String> {
    match on_disk {
        Ok(key) if key == running => None,
        Ok(_) => Some(format!(
            "sync key {} changed: replication keeps the key it started with until lbd restarts (restart each node once both files hold the new key; until then the node restarted first cannot authenticate to the other)",
            path.display()
        )),
        Err(error) => Some(format!(
            "{error:#}: replication keeps the key it started with; the next start needs the file fixed"
        )),
    }
}

pub(super) fn read_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let key =
        std::fs::read(path).with_context(|| format!("reading sync key {}", path.display()))?;
    let key: Vec<u8> = key.trim_ascii().to_vec();
    if key.len() < 16 {
        anyhow::bail!(
            "sync key {} has {} bytes; at least 16 are needed",
            path.display(),
            key.len()
        );
    }
    Ok(key)
}

/// A warning when the sync key file at `path` may be read by others than
/// its owner (group or other permission bits): whoever reads the key can
/// join the replication channel as a peer and write flows into this
/// node's tables. None when only the owner may read it, or when its mode
/// cannot be read (reading the key itself reported that).
pub(super) fn key_file_exposure(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "sync key {} has mode {mode:04o}: others than its owner may read it, and whoever holds the key can replicate flows into this node; make it 0600 (chmod 600 {})",
            path.display(),
            path.display()
        )
    })
}
