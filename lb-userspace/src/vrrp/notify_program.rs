//! The safe-path rule for the VRRP `notify` program, which runs as root
//! with lbd's kept capabilities (CAP_SYS_ADMIN, CAP_BPF, CAP_NET_ADMIN):
//! only root (or lbd's own user) may be able to change it, so the program
//! must be owned by such a user and not writable by group or others, and
//! so must every directory above it, except that a sticky directory that
//! others may write (like /tmp) is fine when what follows in it belongs to
//! root. Checked at config load and again before each run.

use std::{
    fmt,
    fs::{self, Metadata},
    io,
    os::unix::fs::MetadataExt as _,
    path::{Component, Path, PathBuf},
};

/// Group- and other-write permission bits.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// The sticky bit: in such a directory only an entry's owner (or root)
/// may remove or rename it.
const STICKY: u32 = 0o1000;

/// Why a notify program may not be run (see [`check_notify_program`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotifyProblem {
    /// The program, or a directory on its path, does not exist (yet): a
    /// config may be checked before the program is deployed, so the load
    /// lets this pass and the check before each run refuses it.
    Missing(String),
    /// Someone other than root (or lbd's own user) could change what runs.
    Unsafe(String),
}

impl fmt::Display for NotifyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(why) | Self::Unsafe(why) => f.write_str(why),
        }
    }
}

/// Checks that only root (or lbd's own user) can change the notify
/// program `program`: the path as written (the directories holding any
/// symbolic link on it) and, through the links, the file that runs.
pub(crate) fn check_notify_program(program: &Path) -> Result<(), NotifyProblem> {
    check_path(program)?;
    match fs::canonicalize(program) {
        Ok(real) if real != program => check_path(&real),
        Ok(_) => Ok(()),
        Err(error) => Err(problem(program, &error)),
    }
}

/// Whether `uid` may own the program or a directory above it: root, or
/// lbd's own effective user (lbd runs unprivileged only in tests, whose
/// files are its own).
fn trusted_owner(uid: u32) -> bool {
    // SAFETY: geteuid(2) cannot fail.
    uid == 0 || uid == unsafe { libc::geteuid() }
}

/// The problem of an entry that could not be looked at.
fn problem(path: &Path, error: &io::Error) -> NotifyProblem {
    let why = format!("{}: {error}", path.display());
    if error.kind() == io::ErrorKind::NotFound {
        NotifyProblem::Missing(why)
    } else {
        NotifyProblem::Unsafe(why)
    }
}

/// The permission bits of `meta` (with setuid, setgid, sticky).
fn mode(meta: &Metadata) -> u32 {
    meta.mode() & 0o7777
}

/// The safe-path rule over each component of the absolute `path`, from
/// `/` down to the program.
fn check_path(path: &Path) -> Result<(), NotifyProblem> {
    if !path.is_absolute() {
        return Err(NotifyProblem::Unsafe(format!(
            "{} is not an absolute path",
            path.display()
        )));
    }
    let components: Vec<Component<'_>> = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let mut current = PathBuf::new();
    // The sticky directory others may write that `current` is in, if so.
    let mut in_sticky: Option<(PathBuf, u32)> = None;
    for (index, component) in components.iter().enumerate() {
        current.push(component.as_os_str());
        let last = index + 1 == components.len();
        if let Some((sticky, sticky_mode)) = in_sticky.take() {
            // The entry itself, not what a link points at: its owner may
            // replace it even in a sticky directory.
            let entry = fs::symlink_metadata(&current).map_err(|e| problem(&current, &e))?;
            if !trusted_owner(entry.uid()) {
                return Err(NotifyProblem::Unsafe(format!(
                    "{} is owned by uid {} in {}, a directory others may write (mode {:04o}): its owner may replace it",
                    current.display(),
                    entry.uid(),
                    sticky.display(),
                    sticky_mode,
                )));
            }
        }
        let meta = fs::metadata(&current).map_err(|e| problem(&current, &e))?;
        let what = if last {
            "the program"
        } else {
            "a directory above it"
        };
        if !trusted_owner(meta.uid()) {
            return Err(NotifyProblem::Unsafe(format!(
                "{} ({what}) is owned by uid {} (mode {:04o}), not by root",
                current.display(),
                meta.uid(),
                mode(&meta),
            )));
        }
        if mode(&meta) & WRITABLE_BY_OTHERS != 0 {
            if !last && meta.is_dir() && mode(&meta) & STICKY != 0 {
                in_sticky = Some((current.clone(), mode(&meta)));
            } else {
                return Err(NotifyProblem::Unsafe(format!(
                    "{} ({what}) is writable by group or others (mode {:04o}, owner uid {})",
                    current.display(),
                    mode(&meta),
                    meta.uid(),
                )));
            }
        }
        if last && !meta.is_file() {
            return Err(NotifyProblem::Unsafe(format!(
                "{} is not a regular file",
                current.display()
            )));
        }
    }
    Ok(())
}
