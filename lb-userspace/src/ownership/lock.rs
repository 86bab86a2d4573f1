//! Exclusive, non-blocking `flock(2)` locks that say who holds them. A lock
//! lasts as long as its open file: the kernel drops it when the process
//! ends, however it ends (also kill -9), so a stale lock cannot exist and
//! lock files are never removed. The holder's pid and config are recorded
//! beside the lock for the message of whoever is refused: in the lock file
//! itself, or, for a directory on bpffs (which holds no regular files), in
//! a symlink `lbd-owner` whose target is the record (bpffs refuses names
//! with a dot).

use std::{
    fmt,
    fs::{File, OpenOptions},
    io::{self, Read as _, Seek as _, Write as _},
    os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _},
    path::{Path, PathBuf},
};

/// Name of the symlink that records the holder of a directory lock.
pub(crate) const OWNER_LINK: &str = "lbd-owner";

/// Who holds a lock: an lbd's pid and the config it was started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnerRecord {
    /// The holder's process id.
    pub pid: u32,
    /// The holder's config file (absolute).
    pub config: PathBuf,
}

impl OwnerRecord {
    /// This process, started with `config`.
    pub(crate) fn current(config: &Path) -> Self {
        Self {
            pid: std::process::id(),
            config: std::path::absolute(config).unwrap_or_else(|_| config.to_owned()),
        }
    }

    /// The record as stored: `pid=N` and `config=PATH` lines.
    pub(crate) fn render(&self) -> String {
        format!("pid={}\nconfig={}\n", self.pid, self.config.display())
    }

    /// Reads a stored record; `None` if the pid or the config is missing
    /// (a lock file being written, or not lbd's).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut pid = None;
        let mut config = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("pid", value)) => pid = value.trim().parse::<u32>().ok(),
                Some(("config", value)) if !value.is_empty() => {
                    config = Some(PathBuf::from(value));
                }
                _ => {}
            }
        }
        Some(Self {
            pid: pid?,
            config: config?,
        })
    }
}

impl fmt::Display for OwnerRecord {
    /// `lbd pid 1234 (config /etc/lbd/lbd.toml)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lbd pid {} (config {})", self.pid, self.config.display())
    }
}

/// A lock this process holds until it is dropped or the process ends.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// What is locked (the lock file or the directory).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The outcome of trying a lock.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Taken: this process holds it now.
    Held(Lock),
    /// Another process holds it; its record, if it could be read.
    Taken(Option<OwnerRecord>),
}

/// Takes the lock file at `path` (created if missing, mode 0644) and
/// writes `me` into it; or says who holds it.
pub(crate) fn lock_file(path: &Path, me: &OwnerRecord) -> io::Result<Attempt> {
    // Not truncated on open: a refused process must not wipe the
    // holder's record.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    if !try_flock(&file)? {
        let mut text = String::new();
        let record = file
            .read_to_string(&mut text)
            .ok()
            .and_then(|_| OwnerRecord::parse(&text));
        return Ok(Attempt::Taken(record));
    }
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(me.render().as_bytes())?;
    Ok(Attempt::Held(Lock {
        _file: file,
        path: path.to_owned(),
    }))
}

/// Takes the lock of directory `dir` (which must exist) and records `me`
/// in its [`OWNER_LINK`]; or says who holds it. A record that cannot be
/// written is only a poorer message for the next one refused: it is
/// logged, the lock is still held.
pub(crate) fn lock_dir(dir: &Path, me: &OwnerRecord) -> io::Result<Attempt> {
    let file = File::open(dir)?;
    let link = dir.join(OWNER_LINK);
    if !try_flock(&file)? {
        let record = std::fs::read_link(&link)
            .ok()
            .and_then(|target| OwnerRecord::parse(&target.to_string_lossy()));
        return Ok(Attempt::Taken(record));
    }
    let written = match std::fs::remove_file(&link) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .and_then(|()| std::os::unix::fs::symlink(me.render(), &link));
    if let Err(error) = written {
        tracing::warn!(path = %link.display(), %error, "cannot record this lbd as the owner (the lock is held all the same)");
    }
    Ok(Attempt::Held(Lock {
        _file: file,
        path: dir.to_owned(),
    }))
}

/// `flock(LOCK_EX | LOCK_NB)`: true if taken, false if another open file
/// holds it.
fn try_flock(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_scratch::ScratchDir;

    fn record(pid: u32) -> OwnerRecord {
        OwnerRecord {
            pid,
            config: PathBuf::from("/etc/lbd/lbd.toml"),
        }
    }

    #[test]
    fn a_record_reads_back_what_was_written() {
        let me = record(4321);
        assert_eq!(me.render(), "pid=4321\nconfig=/etc/lbd/lbd.toml\n");
        assert_eq!(OwnerRecord::parse(&me.render()), Some(me));
    }

    #[test]
    fn a_record_keeps_a_config_path_with_equals_signs_and_spaces() {
        let me = OwnerRecord {
            pid: 7,
            config: PathBuf::from("/srv/my lbd/a=b.toml"),
        };
        assert_eq!(OwnerRecord::parse(&me.render()), Some(me));
    }

    #[test]
    fn an_incomplete_record_is_none() {
        for text in [
            "",
            "pid=12\n",
            "config=/x.toml\n",
            "pid=abc\nconfig=/x\n",
            "pid=1\nconfig=\n",
        ] {
            assert_eq!(OwnerRecord::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_record_says_pid_and_config() {
        assert_eq!(
            record(99).to_string(),
            "lbd pid 99 (config /etc/lbd/lbd.toml)"
        );
    }

    #[test]
    fn a_held_file_lock_refuses_a_second_taker_with_the_holders_record() {
        let dir = ScratchDir::new("lock-file");
        let path = dir.join("a.lock");
        let Attempt::Held(held) = lock_file(&path, &record(1)).expect("lock") else {
            panic!("first attempt refused");
        };
        // flock belongs to the open file: a second open is refused even in
        // the same process.
        match lock_file(&path, &record(2)).expect("second") {
            Attempt::Taken(owner) => assert_eq!(owner, Some(record(1))),
            Attempt::Held(_) => panic!("taken twice"),
        }
        drop(held);
        assert!(matches!(
            lock_file(&path, &record(3)).expect("third"),
            Attempt::Held(_)
        ));
        assert_eq!(
            OwnerRecord::parse(&std::fs::read_to_string(&path).expect("read")),
            Some(record(3))
        );
    }

    #[test]
    fn a_held_directory_lock_refuses_a_second_taker_with_the_holders_record() {
        let dir = ScratchDir::new("lock-dir");
        let Attempt::Held(held) = lock_dir(dir.path(), &record(10)).expect("lock") else {
            panic!("first attempt refused");
        };
        assert_eq!(held.path(), dir.path());
        match lock_dir(dir.path(), &record(11)).expect("second") {
            Attempt::Taken(owner) => assert_eq!(owner, Some(record(10))),
            Attempt::Held(_) => panic!("taken twice"),
        }
        drop(held);
        assert!(matches!(
            lock_dir(dir.path(), &record(12)).expect("third"),
            Attempt::Held(_)
        ));
    }
}
