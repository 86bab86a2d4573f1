//! The safe-directory rule for the admin socket: only root (or lbd's own
//! user) may be able to change a directory on the socket's path. Anyone
//! else who may could replace the live socket with their own (an
//! operator's `lbctl`, run as root, would then talk to them), or swap the
//! temporary socket lbd binds for a symbolic link before lbd sets its mode
//! and group (`chmod` and `chown` follow links) and so have lbd give any
//! file the socket's mode and group. A sticky directory others may write
//! (like /tmp) is fine when the entry in it is root's: nobody else may
//! remove or rename it there.

use std::{
    fs::{self, Metadata},
    os::unix::fs::MetadataExt as _,
    path::{Component, Path, PathBuf},
};

/// Group- and other-write permission bits.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// The sticky bit: in such a directory only an entry's owner (or root)
/// may remove or rename it.
const STICKY: u32 = 0o1000;

/// Why `dir`, the admin socket's directory, is not one only root (or
/// lbd's user) may change, if it is not: checked on the path as written
/// (a link on it is an entry of its directory) and on the path it
/// resolves to.
pub(super) fn unsafe_socket_dir(dir: &Path) -> Option<String> {
    if let Some(why) = unsafe_chain(dir) {
        return Some(why);
    }
    match fs::canonicalize(dir) {
        Ok(real) if real != dir => unsafe_chain(&real),
        Ok(_) => None,
        Err(error) => Some(format!("{}: {error}", dir.display())),
    }
}

/// Whether `uid` may own a directory on the socket's path: root, or lbd's
/// own effective user (lbd runs unprivileged only in tests, whose
/// directories are its own).
fn trusted_owner(uid: u32) -> bool {
    // SAFETY: geteuid(2) cannot fail.
    uid == 0 || uid == unsafe { libc::geteuid() }
}

/// The permission bits of `meta` (with setuid, setgid, sticky).
fn mode(meta: &Metadata) -> u32 {
    meta.mode() & 0o7777
}

/// The rule over each directory of `dir`, from `/` down.
fn unsafe_chain(dir: &Path) -> Option<String> {
    let mut current = PathBuf::new();
    // The sticky directory others may write that `current` is in, if so.
    let mut in_sticky: Option<(PathBuf, u32)> = None;
    for component in dir.components() {
        if matches!(component, Component::CurDir) {
            continue;
        }
        current.push(component.as_os_str());
        if let Some((sticky, sticky_mode)) = in_sticky.take() {
            // The entry itself, not what a link points at: its owner may
            // replace it even in a sticky directory.
            let entry = match fs::symlink_metadata(&current) {
                Ok(entry) => entry,
                Err(error) => return Some(format!("{}: {error}", current.display())),
            };
            if !trusted_owner(entry.uid()) {
                return Some(format!(
                    "{} is owned by uid {} in {}, a directory others may write (mode {sticky_mode:04o}): its owner may replace it",
                    current.display(),
                    entry.uid(),
                    sticky.display(),
                ));
            }
        }
        let meta = match fs::metadata(&current) {
            Ok(meta) => meta,
            Err(error) => return Some(format!("{}: {error}", current.display())),
        };
        if !trusted_owner(meta.uid()) {
            return Some(format!(
                "{} is owned by uid {} (mode {:04o}), not by root",
                current.display(),
                meta.uid(),
                mode(&meta),
            ));
        }
        if mode(&meta) & WRITABLE_BY_OTHERS != 0 {
            if meta.is_dir() && mode(&meta) & STICKY != 0 {
                in_sticky = Some((current.clone(), mode(&meta)));
            } else {
                return Some(format!(
                    "{} is writable by group or others (mode {:04o}, owner uid {})",
                    current.display(),
                    mode(&meta),
                    meta.uid(),
                ));
            }
        }
    }
    None
}
