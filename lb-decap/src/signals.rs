//! The foreground `run` command's signal handling, without a runtime:
//! SIGHUP, SIGTERM and SIGINT are blocked and waited for with sigwait(2).

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
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                bail!(
                    "blocking signals: {}",
                    std::io::Error::from_raw_os_error(rc)
                );
            }
            Ok(Self { set })
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
        Ok(if signal == libc::SIGHUP {
            Request::Reload
        } else {
            Request::Stop
        })
    }
}
