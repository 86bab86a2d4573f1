//! Loading a program again when a signal interrupted its verification
//! (EAGAIN), as libbpf does: apart from the load because every program
//! lbd loads goes through it (the hooks', the health checks' encap).

use tracing::warn;

/// Program loads the kernel may interrupt before one is given up (as
/// libbpf counts them).
const LOAD_ATTEMPTS: u32 = 5;

/// Runs `load` (of program `name`) again while the kernel says a signal
/// interrupted its verification (EAGAIN), as libbpf does: verifying the
/// balancer takes a second or more on a slow machine, long enough to meet
/// a signal (a child process's exit, where a SIGCHLD handler is set).
pub(crate) fn retry_interrupted(
    name: &str,
    mut load: impl FnMut() -> std::result::Result<(), aya::programs::ProgramError>,
) -> std::result::Result<(), aya::programs::ProgramError> {
    let mut attempt = 1;
    loop {
        match load() {
            Err(aya::programs::ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < LOAD_ATTEMPTS =>
            {
                warn!(
                    program = name,
                    attempt, "the kernel interrupted the program's verification (a signal arrived): loading it again"
                );
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use aya::programs::ProgramError;

    use super::{retry_interrupted, LOAD_ATTEMPTS};

    fn refused(errno: i32) -> ProgramError {
        ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(errno),
            verifier_log: aya_obj::VerifierLog::new(String::new()),
        }
    }

    #[test]
    fn an_interrupted_load_is_tried_again_and_other_refusals_are_not() {
        let mut calls = 0;
        let loaded = retry_interrupted("p", || {
            calls += 1;
            if calls < 3 {
                Err(refused(libc::EAGAIN))
            } else {
                Ok(())
            }
        });
        assert!(loaded.is_ok());
        assert_eq!(calls, 3);

        calls = 0;
        let given_up = retry_interrupted("p", || {
            calls += 1;
            Err(refused(libc::EAGAIN))
        });
        assert!(given_up.is_err());
        assert_eq!(calls, LOAD_ATTEMPTS);

        calls = 0;
        let rejected = retry_interrupted("p", || {
            calls += 1;
            Err(refused(libc::EACCES))
        });
        assert!(rejected.is_err());
        assert_eq!(calls, 1, "a verifier rejection is final");
    }
}
