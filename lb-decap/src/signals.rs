//! The foreground `run` command's signal handling, without a runtime:
//! SIGHUP, SIGTERM and SIGINT are blocked and waited for with sigwait(2),
//! or with sigtimedwait(2) so `run` can look at its interface between
//! signals (`watch`) and stay single-threaded. They are blocked first
//! thing in `main` (a SIGHUP while lb-decap starts would otherwise end it,
//! an exit systemd does not restart); commands other than `run`
//! `restore` the mask.

use anyhow::bail;

/// What a signal asks of `lb-decap run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGHUP: read the config file again and apply it.
    Reload,
    /// SIGTERM / SIGINT: exit, leaving the program attached.
    Stop,
}

/// Blocked signals, waited for one at a time.
pub struct Signals {
    set: libc::sigset_t,
    /// The signal mask before `block`, which `restore` puts back.
    previous: libc::sigset_t,
}

impl Signals {
    /// Blocks SIGHUP, SIGTERM and SIGINT for this (single-threaded)
    /// process, so they wait for `next` instead of killing it.
    pub fn block() -> anyhow::Result<Self> {
        // SAFETY: the set is initialised by sigemptyset before use.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
                libc::sigaddset(&mut set, signal);
            }
            let mut previous: libc::sigset_t = std::mem::zeroed();
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous);
            if rc != 0 {
                bail!(
                    "blocking signals: {}",
                    std::io::Error::from_raw_os_error(rc)
                );
            }
            Ok(Self { set, previous })
        }
    }

    /// Puts the signal mask back as it was before `block`, for a command
    /// that does not wait on the signals (all but `run`): SIGTERM and
    /// SIGINT end it at once again, as SIGHUP does; one that arrived
    /// meanwhile is delivered now.
    pub fn restore(self) -> anyhow::Result<()> {
        // SAFETY: `previous` was filled in by pthread_sigmask in `block`.
        let rc = unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!(
                "restoring the signal mask: {}",
                std::io::Error::from_raw_os_error(rc)
            );
        }
        Ok(())
    }

    /// The next request, or `None` if none came within `timeout` (or a
    /// signal not in the set interrupted the wait).
    pub fn next_within(&self, timeout: std::time::Duration) -> anyhow::Result<Option<Request>> {
        let limit = libc::timespec {
            tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
            tv_nsec: timeout.subsec_nanos().into(),
        };
        // SAFETY: the set was built in `block`; a null info pointer is
        // allowed.
        let signal = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &limit) };
        if signal < 0 {
            let error = std::io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
                _ => bail!("sigtimedwait: {error}"),
            };
        }
        Ok(Some(Self::request(signal)))
    }

    fn request(signal: i32) -> Request {
        if signal == libc::SIGHUP {
            Request::Reload
        } else {
            Request::Stop
        }
    }

    /// The next request.
    pub fn next(&self) -> anyhow::Result<Request> {
        let mut signal = 0;
        // SAFETY: the set was built in `block`.
        let rc = unsafe { libc::sigwait(&self.set, &mut signal) };
        if rc != 0 {
            bail!("sigwait: {}", std::io::Error::from_raw_os_error(rc));
        }
        Ok(Self::request(signal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_wait_without_a_signal_returns_none_in_time() {
        let signals = Signals::block().expect("block");
        let start = std::time::Instant::now();
        let got = signals
            .next_within(std::time::Duration::from_millis(50))
            .expect("wait");
        assert_eq!(got, None);
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}
