//! One lb-decap at a time changes a pin directory: an exclusive `flock(2)`
//! on the directory, held while `apply` or `cleanup` runs. Without it, two
//! first starts at once could each pin their own maps and attach their own
//! program, leaving the live program reading maps nothing updates. The
//! kernel drops the lock when its file closes, also on kill -9, so a stale
//! lock cannot exist; a second lb-decap waits for the first to finish.

use std::{
    fs::File,
    io,
    os::fd::AsRawFd as _,
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

/// Takes the lock on `dir` (which must exist), waiting up to [`WAIT`] for
/// another lb-decap that holds it.
pub(crate) fn lock(dir: &Path) -> anyhow::Result<PinLock> {
    let file = File::open(dir)
        .with_context(|| format!("opening the pin directory {} to lock it", dir.display()))?;
    let deadline = Instant::now() + WAIT;
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(PinLock { _file: file });
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(error).with_context(|| format!("locking {}", dir.display()));
        }
        if Instant::now() >= deadline {
            bail!(
                "another lb-decap has been changing {} for {} s (its lock is held): is one stuck? (`fuser -v {}` names it)",
                dir.display(),
                WAIT.as_secs(),
                dir.display()
            );
        }
        std::thread::sleep(RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_makes_the_next_wait_until_it_is_released() {
        let dir = std::env::temp_dir().join(format!("lb-decap-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let held = lock(&dir).expect("first");
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.clone();
        let waiter = std::thread::spawn(move || {
            let second = lock(&path).expect("second");
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
}
