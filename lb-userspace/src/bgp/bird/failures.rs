//! How BIRD's failures are told apart: nothing listens on its socket (it
//! is not running), or it refused its config; callers decide on either.

use std::path::PathBuf;

/// Nothing listens on BIRD's control socket: there is no socket file, or
/// one that refuses connections (left by a BIRD that stopped or crashed).
/// BIRD is not running then, and its BGP sessions went with it: it
/// announces nothing until it starts again, and then reads the routes
/// file. Every other failure (a refusal, no answer in time, a socket lbd
/// may not use) leaves BIRD perhaps announcing what it read last, so a
/// caller that would detach the program must tell the two apart (see
/// [`is_not_running`]).
#[derive(Debug)]
pub(crate) struct NotRunning {
    pub(super) socket: PathBuf,
    pub(super) error: std::io::Error,
}

impl std::fmt::Display for NotRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BIRD is not running: nothing listens on its control socket {}",
            self.socket.display()
        )
    }
}

impl std::error::Error for NotRunning {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Whether `error` (from [`configure`](super::configure) or [`probe`](super::probe), or an error that
/// wraps one) says BIRD is not running, rather than that it answered
/// with an error or not at all.
pub(crate) fn is_not_running(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<NotRunning>())
}

/// BIRD answered `configure` with an error: its config (bird.conf, or a
/// file it includes) does not parse or cannot be applied. BIRD runs on
/// with the config it read last, so it still announces what that said;
/// lbd's protocols can still be disabled (see [`toggle`](super::toggle)), which needs no
/// parse.
#[derive(Debug)]
pub(crate) struct Refused {
    /// BIRD's code.
    pub(super) code: u16,
    /// BIRD's message (a parse error names file and line).
    pub(super) text: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BIRD refused to reconfigure ({}): {}",
            self.code, self.text
        )
    }
}

impl std::error::Error for Refused {}

/// Whether `error` (from [`configure`](super::configure) or [`configure_checked`](super::configure_checked), or an
/// error that wraps one) says BIRD refused its config, rather than that it
/// did not answer or is not running.
pub(crate) fn is_refused(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<Refused>())
}
