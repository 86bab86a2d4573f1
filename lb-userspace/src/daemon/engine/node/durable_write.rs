//! The durable write every state file of lbd's follows (the node state,
//! the backends' states, the running state): a fresh temporary file,
//! synced, renamed over the file, then its directory synced.

use std::path::{Path, PathBuf};

use tracing::warn;

/// Writes `contents` to `path` durably, as
/// [`write_state`](super::state_file::write_state) writes the node state
/// (the pattern every state file of lbd's follows, so the
/// backends' states are kept as a drained node is): a temporary file
/// beside it, synced, renamed over it, then the directory synced (by
/// `sync_dir`); the directory is created if missing. `what` names the
/// file's content in the warning of a failed directory sync.
pub(in crate::daemon::engine) fn write_durably_with(
    path: &Path,
    contents: &[u8],
    what: &str,
    sync_dir: impl FnOnce(&Path) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    use std::io::Write as _;

    use anyhow::Context as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let temporary = temporary_of(path);
    // A file lbd creates now, never one found at the name (a symlink).
    let mut file = crate::fresh_file::create_fresh(&temporary, 0o666)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temporary.display()))?;
    drop(file);
    if let Err(error) = std::fs::rename(&temporary, path) {
        let _ = std::fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("replacing {}", path.display()));
    }
    if let Err(error) = sync_dir(dir) {
        warn!(%error, path = %path.display(), "{what} recorded, but syncing its directory failed: a power cut may lose it");
    }
    Ok(())
}

/// The file `path` is written as before it replaces `path`: its whole
/// name with `.new` appended, so files whose names differ only after
/// their last dot (`node.state.eth0`, `node.state.eth1`: two lbds on one
/// host) never share one.
pub(in crate::daemon::engine) fn temporary_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

/// Syncs directory `dir` (a rename in it then survives a power cut).
pub(in crate::daemon::engine) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}
