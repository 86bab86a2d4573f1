//! SIGINT, SIGTERM and SIGHUP (Ctrl-C, a CI cancel, a closed terminal)
//! held off while xtask runs something that must clean up after itself:
//! blocked in xtask's thread and taken with `sigtimedwait`, then passed on
//! to a child that cleans up on them (the demo's lab) or kept from one
//! that must not be cut short (dpkg), and reported as [`Interrupted`].

use std::{
    os::unix::process::CommandExt as _,
    process::{Command, ExitStatus},
    time::Duration,
};

use anyhow::Context as _;

/// A run cut short by one of the signals, after it cleaned up: `main`
/// exits 128 + the signal, as a shell reports a command it killed, so
/// that a script running xtask (`.ci/run`) sees an interruption, not a
/// failure.
#[derive(Debug)]
pub(crate) struct Interrupted {
    signal: i32,
    message: String,
}

impl Interrupted {
    /// `message` says what was interrupted, naming the signal
    /// ([`signal_name`]).
    pub(crate) fn new(signal: i32, message: String) -> Self {
        Self { signal, message }
    }

    /// The exit code of an interrupted xtask: 128 + the signal.
    pub(crate) fn exit_code(&self) -> std::process::ExitCode {
        u8::try_from(128 + self.signal).map_or(std::process::ExitCode::FAILURE, Into::into)
    }
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Interrupted {}

/// The signals blocked in this thread while this lives (it restores the
/// mask from before when dropped): one that comes stays pending until
/// [`Held::take`] takes it, instead of killing xtask halfway through.
/// xtask has one thread, so a signal to the process waits for it too.
/// Children started meanwhile inherit the mask (std hands it on), so
/// they run to their end as well, but not what a dash they start runs:
/// dash clears the mask (see [`ignored_in_child`]).
pub(crate) struct Held {
    signals: libc::sigset_t,
    previous: libc::sigset_t,
}

impl Held {
    /// Blocks SIGINT, SIGTERM and SIGHUP in this thread.
    pub(crate) fn new() -> anyhow::Result<Self> {
        let signals = termination_signals();
        let mut previous = empty_signal_set();
        // SAFETY: blocks valid signals in this thread; `previous` is a
        // valid set to write the old mask into.
        let error = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &signals, &mut previous) };
        if error != 0 {
            return Err(std::io::Error::from_raw_os_error(error))
                .context("blocking SIGINT, SIGTERM and SIGHUP");
        }
        Ok(Self { signals, previous })
    }

    /// A signal that came since, taken out of the pending ones (one of
    /// them if several did).
    pub(crate) fn take(&self) -> Option<i32> {
        self.wait(Duration::ZERO)
    }

    /// Like [`Held::take`], waiting up to `timeout` for a signal.
    fn wait(&self, timeout: Duration) -> Option<i32> {
        let timeout = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: timeout.subsec_nanos().into(),
        };
        // SAFETY: the signals are blocked; sigtimedwait takes one if pending.
        let signal = unsafe { libc::sigtimedwait(&self.signals, std::ptr::null_mut(), &timeout) };
        (signal > 0).then_some(signal)
    }

    /// Runs `cmd` to its end, passing on to it each signal that comes
    /// meanwhile: its exit status and the first signal passed on, if any.
    /// The child starts with the mask from before [`Held::new`], so the
    /// signals reach its handlers.
    pub(crate) fn wait_passing_on(
        &self,
        cmd: &mut Command,
    ) -> anyhow::Result<(ExitStatus, Option<i32>)> {
        let child_mask = self.previous;
        // SAFETY: pthread_sigmask is async-signal-safe; it only sets the
        // forked child's own mask from a set copied into the closure.
        unsafe {
            cmd.pre_exec(move || {
                libc::pthread_sigmask(libc::SIG_SETMASK, &child_mask, std::ptr::null_mut());
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("starting the command")?;
        let pid = libc::pid_t::try_from(child.id()).context("child pid")?;
        let mut passed = None;
        loop {
            if let Some(status) = child.try_wait().context("waiting for the child")? {
                return Ok((status, passed));
            }
            if let Some(signal) = self.wait(Duration::from_millis(100)) {
                // SAFETY: plain kill(2) on our own child.
                unsafe { libc::kill(pid, signal) };
                passed.get_or_insert(signal);
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) };
    }
}

/// Makes `cmd` start with SIGINT, SIGTERM and SIGHUP ignored, so that a
/// signal to xtask's whole process group (Ctrl-C, a CI cancel) does not
/// cut it short: for dpkg, which killed while
/// unpacking leaves the package half-installed, in a state its purge
/// refuses. Ignored, not blocked: its maintainer scripts inherit that
/// (dash clears the mask it starts with, and keeps what was ignored).
pub(crate) fn ignored_in_child(cmd: &mut Command) -> &mut Command {
    // SAFETY: signal(2) is async-signal-safe, as pre_exec requires; it
    // only changes the forked child's own dispositions.
    unsafe {
        cmd.pre_exec(|| {
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(signal, libc::SIG_IGN);
            }
            Ok(())
        })
    }
}

/// The name of one of the signals [`Held`] blocks.
pub(crate) fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        other => format!("signal {other}"),
    }
}

fn termination_signals() -> libc::sigset_t {
    let mut set = empty_signal_set();
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: adds a valid signal to a local set.
        unsafe { libc::sigaddset(&mut set, signal) };
    }
    set
}

fn empty_signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signal mask line ("SigBlk", "SigIgn") of the /proc/self/status of
    /// a child run by `cmd` (a hex mask, bit N-1 for signal N).
    fn child_mask(cmd: &mut Command, line: &str) -> u64 {
        let out = cmd.output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let hex = text
            .lines()
            .find_map(|l| l.strip_prefix(line)?.strip_prefix(':'))
            .unwrap()
            .trim();
        u64::from_str_radix(hex, 16).unwrap()
    }

    const INT_TERM_HUP: u64 =
        1 << (libc::SIGINT - 1) | 1 << (libc::SIGTERM - 1) | 1 << (libc::SIGHUP - 1);

    #[test]
    fn children_inherit_the_held_signals_and_dpkgs_scripts_ignore_them() {
        let status = |shell: bool| {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "cat /proc/self/status; true"]);
            if !shell {
                cmd = Command::new("cat");
                cmd.arg("/proc/self/status");
            }
            cmd
        };
        let held = Held::new().unwrap();
        // While xtask holds them off, a plain child (`lbd --version`,
        // `man`) has them blocked too (std hands it the mask): it runs to
        // its end. But what dash runs does not (dash clears the mask).
        assert_eq!(
            child_mask(&mut status(false), "SigBlk") & INT_TERM_HUP,
            INT_TERM_HUP
        );
        assert_eq!(child_mask(&mut status(true), "SigBlk") & INT_TERM_HUP, 0);
        drop(held);
        assert_eq!(child_mask(&mut status(false), "SigBlk") & INT_TERM_HUP, 0);
        // dpkg's: ignored, and still by what a maintainer script (dash)
        // runs.
        let mut script = status(true);
        ignored_in_child(&mut script);
        assert_eq!(
            child_mask(&mut script, "SigIgn") & INT_TERM_HUP,
            INT_TERM_HUP
        );
    }

    #[test]
    fn an_interrupted_xtask_exits_128_plus_the_signal() {
        let interrupted = Interrupted::new(libc::SIGINT, "interrupted by SIGINT".into());
        assert_eq!(interrupted.exit_code(), std::process::ExitCode::from(130));
        // Found through the context main prints it with.
        let error = anyhow::Error::new(interrupted).context("the check");
        assert_eq!(
            error.downcast_ref::<Interrupted>().map(|i| i.signal),
            Some(libc::SIGINT)
        );
    }
}
