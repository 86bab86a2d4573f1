//! SIGINT, SIGTERM and SIGHUP (Ctrl-C, a CI cancel, a closed terminal)
//! held off while xtask runs something that must clean up after itself:
//! blocked in xtask's thread and taken with `sigtimedwait`, then passed on
//! to a child that cleans up on them (the demo's lab) or kept from one
//! that must not be cut short (dpkg), and reported as [`Interrupted`].
//! Other children get them as before ([`as_before_held`]): a hung one
//! dies of them.

use std::{
    cell::Cell,
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
/// std would hand children started meanwhile the blocked mask, so that a
/// hung one could only be killed (leaving the package installed):
/// [`as_before_held`], which [`crate::cmd`] applies to every command it
/// starts, gives them the mask from before instead; dpkg alone keeps the
/// signals off ([`ignored_in_child`]).
pub(crate) struct Held {
    signals: libc::sigset_t,
    previous: libc::sigset_t,
    /// [`BEFORE_HELD`] when this was made, put back when dropped.
    outer: Option<libc::sigset_t>,
}

thread_local! {
    /// This thread's mask from before the outermost [`Held`] alive in it,
    /// if any: the one [`as_before_held`] gives children.
    static BEFORE_HELD: Cell<Option<libc::sigset_t>> = const { Cell::new(None) };
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
        let outer = BEFORE_HELD.get();
        BEFORE_HELD.set(Some(outer.unwrap_or(previous)));
        Ok(Self {
            signals,
            previous,
            outer,
        })
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
    /// The child starts with the mask from before [`Held::new`]
    /// ([`as_before_held`]), so the signals reach its handlers.
    pub(crate) fn wait_passing_on(
        &self,
        cmd: &mut Command,
    ) -> anyhow::Result<(ExitStatus, Option<i32>)> {
        let mut child = as_before_held(cmd)
            .spawn()
            .context("starting the command")?;
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
        BEFORE_HELD.set(self.outer);
        // SAFETY: restores the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) };
    }
}

/// Makes `cmd`, if started while a [`Held`] lives in this thread, start
/// with this thread's mask from before it (std would hand it the blocked
/// one): a signal then ends a hung child (`man`, `systemd-analyze`), its
/// step fails, the cleanup runs, and xtask takes the signal from its
/// pending ones. A signal the child is set to ignore stays blocked too:
/// dpkg's ([`ignored_in_child`]), whichever of the two came first.
/// [`crate::cmd`] does this for every command it starts.
pub(crate) fn as_before_held(cmd: &mut Command) -> &mut Command {
    let Some(before) = BEFORE_HELD.get() else {
        return cmd;
    };
    // SAFETY: sigaction (to read), sigaddset and pthread_sigmask are
    // async-signal-safe; they only read the forked child's dispositions
    // and set its own mask from a set copied into the closure.
    unsafe {
        cmd.pre_exec(move || {
            let mut mask = before;
            for signal in TERMINATION {
                if ignored(signal) {
                    libc::sigaddset(&mut mask, signal);
                }
            }
            match libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut()) {
                0 => Ok(()),
                error => Err(std::io::Error::from_raw_os_error(error)),
            }
        })
    }
}

/// Whether this process ignores `signal` (SIG_IGN).
fn ignored(signal: i32) -> bool {
    // SAFETY: reads the disposition into a zeroed, valid struct; no
    // allocation, so it may run in a forked child (`pre_exec`).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut action) == 0
            && action.sa_sigaction == libc::SIG_IGN
    }
}

/// Makes `cmd` start with SIGINT, SIGTERM and SIGHUP ignored, so that a
/// signal to xtask's whole process group (Ctrl-C, a CI cancel) does not
/// cut it short: for dpkg, which killed while
/// unpacking leaves the package half-installed, in a state its purge
/// refuses. Ignored, not only blocked: its maintainer scripts inherit
/// that (dash clears the mask it starts with, and keeps what was
/// ignored). Blocked as well, for what dpkg runs that resets them to
/// their default but keeps the mask ([`as_before_held`] leaves that).
pub(crate) fn ignored_in_child(cmd: &mut Command) -> &mut Command {
    let signals = termination_signals();
    // SAFETY: signal(2) and pthread_sigmask are async-signal-safe, as
    // pre_exec requires; they only change the forked child's own
    // dispositions and mask, from a set copied into the closure.
    unsafe {
        cmd.pre_exec(move || {
            for signal in TERMINATION {
                libc::signal(signal, libc::SIG_IGN);
            }
            match libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut()) {
                0 => Ok(()),
                error => Err(std::io::Error::from_raw_os_error(error)),
            }
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

/// The signals [`Held`] blocks.
const TERMINATION: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn termination_signals() -> libc::sigset_t {
    signal_set(&TERMINATION)
}

fn signal_set(signals: &[i32]) -> libc::sigset_t {
    let mut set = empty_signal_set();
    for &signal in signals {
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

    /// `cat /proc/self/status`, or through dash if `shell`.
    fn status(shell: bool) -> Command {
        if shell {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "cat /proc/self/status; true"]);
            return cmd;
        }
        let mut cmd = Command::new("cat");
        cmd.arg("/proc/self/status");
        cmd
    }

    #[test]
    fn children_started_while_held_get_the_mask_from_before_and_dpkg_keeps_them_off() {
        // Blocked before: stays so in the children (not Held's to lift).
        let hup = signal_set(&[libc::SIGHUP]);
        let mut outer = empty_signal_set();
        // SAFETY: blocks SIGHUP in this test thread, restored below.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &hup, &mut outer) };
        let held = Held::new().unwrap();
        // std hands a child this thread's mask: all three blocked.
        assert_eq!(
            child_mask(&mut status(false), "SigBlk") & INT_TERM_HUP,
            INT_TERM_HUP
        );
        // Started as xtask starts them (`lbd --version`, `man`): the mask
        // from before, so a signal ends a hung one.
        let int_term = INT_TERM_HUP & !(1 << (libc::SIGHUP - 1));
        let mut plain = status(false);
        as_before_held(&mut plain);
        assert_eq!(
            child_mask(&mut plain, "SigBlk") & INT_TERM_HUP,
            INT_TERM_HUP & !int_term
        );
        // dpkg: ignored and blocked, whichever came first; what a
        // maintainer script (dash, which clears the mask) runs still
        // ignores them.
        for ignored_first in [true, false] {
            let mut dpkg = status(false);
            if ignored_first {
                ignored_in_child(as_before_held(&mut dpkg));
            } else {
                as_before_held(ignored_in_child(&mut dpkg));
            }
            assert_eq!(child_mask(&mut dpkg, "SigBlk") & INT_TERM_HUP, INT_TERM_HUP);
            assert_eq!(child_mask(&mut dpkg, "SigIgn") & INT_TERM_HUP, INT_TERM_HUP);
        }
        let mut script = status(true);
        as_before_held(ignored_in_child(&mut script));
        assert_eq!(
            child_mask(&mut script, "SigIgn") & INT_TERM_HUP,
            INT_TERM_HUP
        );
        drop(held);
        // SAFETY: restores this test thread's mask.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &outer, std::ptr::null_mut()) };
        // Nothing held: nothing to change.
        let mut plain = status(false);
        as_before_held(&mut plain);
        assert_eq!(child_mask(&mut plain, "SigBlk") & INT_TERM_HUP, 0);
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
