//! The locks a claim takes: an interface's (in [`LOCK_DIR`] and beside the
//! admin socket), a `[bgp]` file's, the record's and the pin directory's.
//! Apart from `claim` itself, which only decides which of them to take, and
//! from `lock`, the primitive each of them is taken with.

use std::{
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use super::{
    held,
    lock::{self, Attempt, Lock, OwnerRecord},
    Claimed, OwnershipError, Purpose,
};
use crate::{config::Config, pinning::PinDir};

/// The locks of interface `name` (see [`interface_locks`], for `config`'s
/// admin socket) if no other process holds them; None if one does. For a
/// start that undoes what a previous lbd held on another interface.
pub(crate) fn try_interface_lock(
    config: &Config,
    config_path: &Path,
    name: &str,
) -> anyhow::Result<Option<Vec<Lock>>> {
    let me = OwnerRecord::current(config_path);
    match interface_locks(&config.admin_socket, name, &me, Purpose::Serve) {
        Ok(locks) => Ok(Some(locks)),
        Err(OwnershipError::Owned { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The lock of the record at `record` (another lbd's, found by its
/// config: see `held::on_start`) if no other process holds it; None if
/// one does: that lbd runs and the record is its own.
pub(crate) fn try_record_lock(record: &Path, config_path: &Path) -> anyhow::Result<Option<Lock>> {
    use anyhow::Context as _;
    let path = bgp_file_lock_path(record);
    match lock::lock_file(&path, &OwnerRecord::current(config_path))
        .with_context(|| format!("locking {}", path.display()))?
    {
        Attempt::Held(lock) => Ok(Some(lock)),
        Attempt::Taken(_) => Ok(None),
    }
}

/// Tries the lock of `[bgp]` file `path` (see [`bgp_file_lock_path`]) for
/// a process started with `config_path` that undoes what a record holds:
/// held now, or taken by the lbd named (that lbd uses the file). A file
/// whose directory is gone has no lock to take: `Held(None)`.
pub(crate) fn try_bgp_file_lock(path: &Path, config_path: &Path) -> anyhow::Result<BgpFileLock> {
    use anyhow::Context as _;
    let lock = bgp_file_lock_path(path);
    let dir_exists = lock
        .parent()
        .is_none_or(|dir| dir.as_os_str().is_empty() || dir.is_dir());
    if !dir_exists {
        return Ok(BgpFileLock::Held(None));
    }
    match lock::lock_file(&lock, &OwnerRecord::current(config_path))
        .with_context(|| format!("locking {}", lock.display()))?
    {
        Attempt::Held(held) => Ok(BgpFileLock::Held(Some(held))),
        Attempt::Taken(owner) => Ok(BgpFileLock::Taken(owner)),
    }
}

/// The outcome of [`try_bgp_file_lock`].
#[derive(Debug)]
pub(crate) enum BgpFileLock {
    /// No other process uses the file: this one holds its lock (None: the
    /// file's directory is gone).
    Held(Option<Lock>),
    /// A running lbd uses it (its record, if it could be read).
    Taken(Option<OwnerRecord>),
}

/// Where every lbd of the host takes its interface locks, whatever its
/// admin socket: a lock beside the admin socket (as lbd took it before)
/// let two lbds whose admin sockets are in different directories both
/// lock one interface, then remove each other's tc filters in turn. The
/// default admin socket's directory, so the lock of an older lbd that
/// ran with the default admin socket is this one too.
pub(crate) const LOCK_DIR: &str = "/run/lbd";

/// The lock file of `interface` in network namespace `netns`, in
/// `run_dir`.
pub(crate) fn interface_lock_path(run_dir: &Path, interface: &str, netns: u64) -> PathBuf {
    run_dir.join(format!("lbd-xdp-{interface}.net{netns}.lock"))
}

/// The directory of the admin socket, where lbds before [`LOCK_DIR`] took
/// their interface locks.
fn run_dir(admin_socket: &Path) -> PathBuf {
    match admin_socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// An I/O error of `action` on `path`, for `map_err`.
fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OwnershipError {
    let path = path.to_owned();
    move |source| OwnershipError::Io {
        action,
        path,
        source,
    }
}

/// The locks of `interface` for a process whose admin socket (or
/// record's) is `admin_socket`: the one in [`LOCK_DIR`], which every lbd
/// takes whatever its admin socket (one lbd per interface), and the one
/// beside the admin socket when that is another directory, where an lbd
/// of an earlier release, running during an upgrade, holds its only one
/// (so each refuses the other).
pub(super) fn interface_locks(
    admin_socket: &Path,
    interface: &str,
    me: &OwnerRecord,
    purpose: Purpose,
) -> Result<Vec<Lock>, OwnershipError> {
    interface_locks_in(Path::new(LOCK_DIR), admin_socket, interface, me, purpose)
}

/// [`interface_locks`] with the shared lock directory `lock_dir`.
fn interface_locks_in(
    lock_dir: &Path,
    admin_socket: &Path,
    interface: &str,
    me: &OwnerRecord,
    purpose: Purpose,
) -> Result<Vec<Lock>, OwnershipError> {
    let ns = Path::new("/proc/self/ns/net");
    let netns = std::fs::metadata(ns)
        .map_err(io_error("reading the network namespace of", ns))?
        .ino();
    create_lock_dir(lock_dir).map_err(io_error("creating", lock_dir))?;
    let legacy = run_dir(admin_socket);
    std::fs::create_dir_all(&legacy).map_err(io_error("creating", &legacy))?;
    let mut locks = vec![interface_lock(lock_dir, interface, netns, me, purpose)?];
    // The same directory under another name (a symlink, `./` with the
    // working directory there) is the same lock file: a second open of
    // it would be refused by this process's own lock.
    if !same_dir(lock_dir, &legacy) {
        locks.push(interface_lock(&legacy, interface, netns, me, purpose)?);
    }
    Ok(locks)
}

/// Creates `dir` if missing, mode 0755 whatever the umask (systemd's
/// `UMask=0077`): the directory of the default admin socket too.
fn create_lock_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
}

/// Whether directories `a` and `b` are one (device and inode).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => a == b,
    }
}

/// The lock of `interface` in `netns` taken in `dir`, or the refusal
/// naming the lbd that holds it.
fn interface_lock(
    dir: &Path,
    interface: &str,
    netns: u64,
    me: &OwnerRecord,
    purpose: Purpose,
) -> Result<Lock, OwnershipError> {
    let path = interface_lock_path(dir, interface, netns);
    let claimed = Claimed::Interface {
        name: interface.to_owned(),
        netns,
    };
    let attempt = lock::lock_file(&path, me).map_err(io_error("locking", &path))?;
    held_or_refused(attempt, claimed, path, purpose)
}

/// The lock of `[bgp]` file `path` (also of the record of what lbd
/// holds, see `held`): a lock file beside it, as the file itself is
/// replaced by renames.
pub(crate) fn bgp_file_lock_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "bgp".into(), |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}.lbd-lock"))
}

/// The lock of `[bgp]` file `path` (`setting` names it in a refusal):
/// two lbds must not announce through, or drain by, one file.
pub(super) fn bgp_file_lock(
    setting: &'static str,
    path: &Path,
    me: &OwnerRecord,
) -> Result<Lock, OwnershipError> {
    let lock = bgp_file_lock_path(path);
    if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The routes file's directory: 0755 whatever the umask, as
        // `routes_file::write` would make it, so BIRD reaches the file
        // (`write` creates no directory once this one made it).
        crate::bgp::routes_file::create_dirs(dir).map_err(io_error("creating", dir))?;
    }
    let attempt = lock::lock_file(&lock, me).map_err(io_error("locking", &lock))?;
    let claimed = Claimed::BgpFile {
        setting,
        path: path.to_owned(),
    };
    held_or_refused(attempt, claimed, lock, Purpose::Serve)
}

/// The lock of the record named after `admin_socket` (see
/// `held::record_path`): one lbd per admin socket, so one per record, and
/// an offline action only while no lbd runs with it. None when the admin
/// socket names no file (there is no record either).
pub(super) fn record_lock(
    admin_socket: &Path,
    me: &OwnerRecord,
    purpose: Purpose,
) -> Result<Option<Lock>, OwnershipError> {
    let Some(record) = held::record_path(admin_socket) else {
        return Ok(None);
    };
    let lock = bgp_file_lock_path(&record);
    if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    }
    let attempt = lock::lock_file(&lock, me).map_err(io_error("locking", &lock))?;
    let claimed = Claimed::Record {
        admin_socket: admin_socket.to_owned(),
        record,
    };
    held_or_refused(attempt, claimed, lock, purpose).map(Some)
}

/// The lock of the pin directory: one lbd per set of pinned maps.
pub(super) fn pin_dir_lock(
    pins: &PinDir,
    me: &OwnerRecord,
    purpose: Purpose,
) -> Result<Lock, OwnershipError> {
    let dir = pins.root();
    let attempt = lock::lock_dir(dir, me).map_err(io_error("locking", dir))?;
    held_or_refused(
        attempt,
        Claimed::PinDir(dir.to_owned()),
        dir.to_owned(),
        purpose,
    )
}

/// The lock `attempt` took, or the refusal naming what is `claimed`, the
/// `lock` file and the process that holds it: one wording for every lock
/// a claim takes.
fn held_or_refused(
    attempt: Attempt,
    claimed: Claimed,
    lock: PathBuf,
    purpose: Purpose,
) -> Result<Lock, OwnershipError> {
    match attempt {
        Attempt::Held(held) => Ok(held),
        Attempt::Taken(owner) => Err(OwnershipError::Owned {
            claimed,
            owner,
            lock,
            purpose,
        }),
    }
}

#[cfg(test)]
mod tests;
