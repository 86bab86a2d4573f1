//! One lb-decap at a time changes a pin directory: an exclusive `flock(2)`
//! on the directory, held while `apply` or `cleanup` runs. Without it, two
//! first starts at once could each pin their own maps and attach their own
//! program, leaving the live program reading maps nothing updates. The
//! kernel drops the lock when its file closes, also on kill -9, so a stale
//! lock cannot exist; a second lb-decap waits for the first to finish.
//! (Which interfaces a running `lb-decap run` serves is another lock,
//! held for its lifetime: `owner`.)

use std::{
    fs::File,
    io,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

/// How long a second lb-decap waits for the first to finish (an apply takes
/// milliseconds; the kernel's verifier at most a few seconds).
const WAIT: Duration = Duration::from_secs(30);
/// How often it tries again meanwhile.
const RETRY: Duration = Duration::from_millis(20);

/// The lock on a pin directory, released when dropped.
#[derive(Debug)]
pub(crate) struct PinLock {
    _file: File,
}

/// Takes the lock on `dir`, waiting up to [`WAIT`] for another lb-decap
/// that holds it. `prepare` runs before each attempt and makes `dir` exist
/// if it should; `None` when `dir` does not exist after it (nothing to
/// lock). The lock is on the directory's inode: a holder may remove the
/// directory (`cleanup`, a failed first start) and another lb-decap create
/// a new one, so a lock taken on an inode the path no longer names is
/// dropped and taken again on the current directory.
pub(crate) fn lock(
    dir: &Path,
    mut prepare: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Option<PinLock>> {
    let deadline = Instant::now() + WAIT;
    loop {
        prepare()?;
        let file = match File::open(dir) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("opening the pin directory {} to lock it", dir.display())
                })
            }
        };
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break;
            }
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(error).with_context(|| format!("locking {}", dir.display()));
            }
            check_deadline(dir, deadline)?;
            std::thread::sleep(RETRY);
        }
        if is_current(&file, dir)? {
            return Ok(Some(PinLock { _file: file }));
        }
        // Locked a directory removed (or replaced) meanwhile: try the one
        // the path names now.
        drop(file);
        check_deadline(dir, deadline)?;
    }
}

/// Whether `file` (an open directory) is still what `dir` names.
pub(crate) fn is_current(file: &File, dir: &Path) -> anyhow::Result<bool> {
    let held = file
        .metadata()
        .with_context(|| format!("reading the locked {}", dir.display()))?;
    match std::fs::metadata(dir) {
        Ok(now) => Ok(held.dev() == now.dev() && held.ino() == now.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// Gives up once [`WAIT`] has passed.
fn check_deadline(dir: &Path, deadline: Instant) -> anyhow::Result<()> {
    if Instant::now() >= deadline {
        bail!(
            "another lb-decap has been changing {} for {} s (its lock is held): is one stuck? (`fuser -v {}` names it)",
            dir.display(),
            WAIT.as_secs(),
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn a_held_lock_makes_the_next_wait_until_it_is_released() {
        let dir = std::env::temp_dir().join(format!("lb-decap-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let held = lock(&dir, ok).expect("first").expect("exists");
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.clone();
        let waiter = std::thread::spawn(move || {
            let second = lock(&path, ok).expect("second").expect("exists");
            tx.send(()).expect("send");
            drop(second);
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "taken while held"
        );
        drop(held);
        rx.recv_timeout(Duration::from_secs(5))
            .expect("taken once released");
        waiter.join().expect("thread");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn ok() -> anyhow::Result<()> {
        Ok(())
    }

    #[test]
    fn a_waiter_on_a_removed_directory_locks_the_new_one() {
        let dir = std::env::temp_dir().join(format!("lb-decap-lock-rm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let create = |d: PathBuf| move || std::fs::create_dir_all(&d).map_err(anyhow::Error::from);
        let held = lock(&dir, create(dir.clone()))
            .expect("first")
            .expect("exists");
        let (got_tx, got_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let path = dir.clone();
        let second = std::thread::spawn(move || {
            let lock = lock(&path, create(path.clone()))
                .expect("second")
                .expect("exists");
            got_tx.send(()).expect("send");
            let _ = release_rx.recv();
            drop(lock);
        });
        // The second is waiting on the first directory's inode.
        std::thread::sleep(Duration::from_millis(200));
        // The first removes the directory (as cleanup does) and releases.
        std::fs::remove_dir(&dir).expect("remove");
        drop(held);
        got_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("second taken");
        // The second must hold the directory the path names now: a third
        // waits for it.
        let (third_tx, third_rx) = std::sync::mpsc::channel();
        let path = dir.clone();
        let third = std::thread::spawn(move || {
            let lock = lock(&path, create(path.clone()))
                .expect("third")
                .expect("exists");
            third_tx.send(()).expect("send");
            drop(lock);
        });
        assert!(
            third_rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "two holders at once (the second locked the removed directory)"
        );
        release_tx.send(()).expect("release");
        third_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("third taken once released");
        second.join().expect("second thread");
        third.join().expect("third thread");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn nothing_to_lock_when_the_directory_is_gone() {
        let dir = std::env::temp_dir().join(format!("lb-decap-lock-none-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(lock(&dir, ok).expect("lock").is_none());
    }
}
