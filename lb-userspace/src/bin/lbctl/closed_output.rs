//! lbctl's stdout, and its exits when a write to it fails. Every line
//! lbctl prints goes through [`write_stdout`] (the `out!`/`outln!` macros;
//! clippy's `print_stdout` keeps `println!` out), which checks each write:
//! `println!` would panic on a failed one (exit 101).
//!
//! - Closed output (`lbctl vip list | head -1`): Rust ignores SIGPIPE, so
//!   the write fails with `EPIPE`. lbctl keeps SIGPIPE ignored — a
//!   connection lbd closes early stays a reported error, not a silent
//!   death — and does what SIGPIPE would have done: the process ends by
//!   SIGPIPE (status 141 in a shell), nothing on stderr, as `cat` or `ls`
//!   do.
//! - Any other failed write (`> /dev/full`, a full disk): `lbctl: writing
//!   output: ERROR` on stderr, exit 1 (other failure).
//!
//! A panic while stdout is closed (a library's own print) ends by SIGPIPE
//! too.

use std::io::{self, Write as _};

/// Exit status for output that could not be written: "other failure".
pub(crate) const EXIT_OUTPUT_FAILED: u8 = 1;

/// Writes `args` to stdout, flushed at once so a failure shows here and
/// not, unreported, in the flush at exit; a failed write ends lbctl (see
/// [`output_failed`]). Called by the `out!` and `outln!` macros.
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.flush());
    drop(out);
    if let Err(error) = written {
        output_failed(&error);
    }
}

/// Writes `bytes` to stdout as [`write_stdout`] does, for output made
/// whole beforehand (completion scripts).
pub(crate) fn write_stdout_bytes(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    let written = out.write_all(bytes).and_then(|()| out.flush());
    drop(out);
    if let Err(error) = written {
        output_failed(&error);
    }
}

/// Ends lbctl after a failed write to stdout: by SIGPIPE when nobody
/// reads it any more, else with the error on stderr and exit 1.
pub(crate) fn output_failed(error: &io::Error) -> ! {
    if error.kind() == io::ErrorKind::BrokenPipe || stdout_closed() {
        die_by_sigpipe();
    }
    // stderr may be gone too: nothing more to do about it then.
    let _ = writeln!(io::stderr(), "{}", output_failed_message(error));
    std::process::exit(i32::from(EXIT_OUTPUT_FAILED))
}

/// What lbctl says when its output cannot be written.
fn output_failed_message(error: &io::Error) -> String {
    format!("lbctl: writing output: {error}")
}

/// Makes any panic while stdout is closed end the process by SIGPIPE,
/// quietly; every other panic is reported as before. Call first in `main`.
pub(crate) fn die_quietly_on_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if stdout_closed() {
            die_by_sigpipe();
        }
        report(info);
    }));
}

/// Whether nobody reads stdout any more: the reading end of its pipe is
/// gone (POLLERR) or its socket or terminal hung up (POLLHUP).
fn stdout_closed() -> bool {
    let mut stdout = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: poll(2) on one valid pollfd, without waiting.
    let ready = unsafe { libc::poll(&mut stdout, 1, 0) };
    ready == 1 && stdout.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

fn die_by_sigpipe() -> ! {
    // SAFETY: plain signal-mask and signal calls on this process; it ends
    // with the raise (SIGPIPE's default action, unblocked).
    unsafe {
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &pipe, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Not reached; the shell's code for "killed by SIGPIPE" all the same.
    std::process::exit(128 + libc::SIGPIPE)
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    /// Set in the environment of this test binary run again by
    /// [`run_with_full_stdout`], to the test that is to print there.
    const CHILD: &str = "LBCTL_TEST_FULL_STDOUT";

    /// Runs this test binary again, only the test `name`, which puts its
    /// stdout on /dev/full (see [`is_child`]); its exit status and stderr.
    fn run_with_full_stdout(name: &str) -> (Option<i32>, String) {
        let child = Command::new(std::env::current_exe().expect("test binary"))
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("running the test binary");
        (
            child.status.code(),
            String::from_utf8_lossy(&child.stderr).into_owned(),
        )
    }

    /// Whether this run is the child [`run_with_full_stdout`] started for
    /// `name`; if so, its stdout is now /dev/full (every write fails with
    /// ENOSPC), and the test is to print there. The switch is made here,
    /// not by the parent, so that the test harness's own lines got out.
    fn is_child(name: &str) -> bool {
        if std::env::var(CHILD).map_or(true, |n| n != name) {
            return false;
        }
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        // SAFETY: dup2(2) of an open descriptor onto stdout's.
        let moved =
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&full), libc::STDOUT_FILENO) };
        assert_eq!(moved, libc::STDOUT_FILENO, "{}", io::Error::last_os_error());
        true
    }

    /// A line that cannot be written ends lbctl with exit 1 and the error,
    /// not a panic (exit 101).
    #[test]
    fn a_line_stdout_cannot_take_is_an_error_not_a_panic() {
        const NAME: &str =
            "closed_output::tests::a_line_stdout_cannot_take_is_an_error_not_a_panic";
        if is_child(NAME) {
            outln!("a status line");
            unreachable!("the write to /dev/full failed");
        }
        let (code, stderr) = run_with_full_stdout(NAME);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains("lbctl: writing output: No space left on device"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    /// The same for a completion script (`lbctl completions bash >
    /// /dev/full`), which clap_complete would write with a panic.
    #[test]
    fn a_completion_script_stdout_cannot_take_is_an_error_not_a_panic() {
        const NAME: &str =
            "closed_output::tests::a_completion_script_stdout_cannot_take_is_an_error_not_a_panic";
        if is_child(NAME) {
            use clap::Parser as _;
            let cli = crate::Cli::try_parse_from(["lbctl", "completions", "bash"]).expect("parses");
            let crate::Command::Completions(args) = cli.command else {
                unreachable!("parsed as completions");
            };
            crate::completions::run(&args);
            unreachable!("the write to /dev/full failed");
        }
        let (code, stderr) = run_with_full_stdout(NAME);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains("lbctl: writing output: No space left on device"),
            "{stderr}"
        );
    }

    #[test]
    fn the_message_names_the_error() {
        let error = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(
            output_failed_message(&error),
            "lbctl: writing output: No space left on device (os error 28)"
        );
    }
}
