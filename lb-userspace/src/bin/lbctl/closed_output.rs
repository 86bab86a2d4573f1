//! Quiet exits when lbctl's output is closed (`lbctl vip list | head -1`).
//! Rust ignores SIGPIPE, so a write to a closed pipe fails and `println!`
//! panics with "failed printing to stdout: Broken pipe". lbctl keeps
//! SIGPIPE ignored — a connection lbd closes early stays a reported error,
//! not a silent death — and turns that one panic into what SIGPIPE would
//! have done: the process ends by SIGPIPE (status 141 in a shell), nothing
//! on stderr, as `cat` or `ls` do.

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
