//! A start that failed: with a SIGINT pending, the operator's stop for good
//! is carried out (removing only a data plane this lbd claimed) and the
//! exit status keeps systemd from starting lbd again; without one, the
//! failure as it is.

use std::path::Path;

use tracing::{info, warn};

use super::{
    engine::{Engine, Stop},
    offline, sd_notify,
    signals::Signals,
    Offline, StoppedForGoodWithErrors,
};
use crate::config::Config;

/// What a stop for good (SIGINT) says it is doing, when the start it
/// interrupted failed.
const STOPPING_AFTER_FAILED_START: &str =
    "stopping for good (SIGINT during a start that failed), removing the data plane";

/// A start that `failed` with `error` before the engine ran (or inside its
/// start, which undid what it did on a node it found without a data
/// plane): with a SIGINT pending, the operator's stop for good is carried
/// out (see [`after_failed_start`]): once this lbd had claimed the data
/// plane, as `lbd --cleanup` would (VIP addresses off, BGP announcements
/// withdrawn, the program detached and its pins removed, unless BIRD may
/// still announce the node; refused where another lbd owns the data
/// plane); before that, removing nothing. The error is then marked
/// [`StoppedForGoodWithErrors`], so systemd does not start lbd again.
/// Without one, `error` as it is.
pub(super) async fn stop_for_good_after_failed_start(
    error: anyhow::Error,
    failed: StartFailed,
    signals: &mut Signals,
    systemd: &mut sd_notify::Systemd,
    path: &Path,
    config: &Config,
) -> anyhow::Error {
    match after_failed_start(failed, signals.interrupt_pending().await) {
        AfterFailedStart::Fail => return error,
        AfterFailedStart::StopForGood => return stopped_before_claim(error),
        AfterFailedStart::Remove => {}
    }
    warn!(error = %format!("{error:#}"), "SIGINT arrived during a start that failed: stopping for good, removing what lbd holds as `lbd --cleanup` does");
    let removal = signals
        .while_stopping(
            STOPPING_AFTER_FAILED_START,
            systemd,
            offline(path, Some(config), Offline::Cleanup),
        )
        .await;
    failed_start_interrupted(error, removal)
}

/// A start that failed with `error` once the engine ran (the metrics
/// listener, the privilege drop), SIGINT pending: the stop for good runs
/// as at any other SIGINT (see [`Engine::shutdown`]), and the error is
/// marked [`StoppedForGoodWithErrors`].
pub(super) async fn stop_started_engine_for_good(
    engine: Engine,
    error: anyhow::Error,
    signals: &mut Signals,
    systemd: &mut sd_notify::Systemd,
) -> anyhow::Error {
    warn!(error = %format!("{error:#}"), "SIGINT arrived during a start that failed: stopping for good, removing the data plane");
    let admin_socket = engine.config().admin_socket.clone();
    let shutdown = signals
        .while_stopping(
            STOPPING_AFTER_FAILED_START,
            systemd,
            engine.shutdown(Stop::Clean),
        )
        .await;
    if shutdown.is_ok() {
        // As after any stop for good: the routes file is not emptied
        // again by the stop path, when another lbd may use it.
        crate::ownership::held::forget_announcement(&admin_socket);
    }
    failed_start_interrupted(error, shutdown.map(|_| ()))
}

/// How far a start got before it failed: whether what sits on the
/// interface and in the pin_dir is known to be this config's data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StartFailed {
    /// Before this lbd claimed the data plane (its locks, and the check
    /// that the interface's program is the one pinned in its pin_dir): it
    /// may be another data plane's, which a refused lbd never touches.
    BeforeClaim,
    /// Once the claim succeeded: the data plane is this config's.
    AfterClaim,
}

/// What a start that failed does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterFailedStart {
    /// No SIGINT: it fails as it is (systemd may start lbd again).
    Fail,
    /// A SIGINT before the claim: a stop for good that removes nothing
    /// (exit [`EXIT_STOPPED_FOR_GOOD_WITH_ERRORS`], not restarted).
    ///
    /// [`EXIT_STOPPED_FOR_GOOD_WITH_ERRORS`]: super::EXIT_STOPPED_FOR_GOOD_WITH_ERRORS
    StopForGood,
    /// A SIGINT after the claim: the stop for good removes what lbd holds
    /// as `lbd --cleanup` does, then exits as `StopForGood`.
    Remove,
}

/// What a start that `failed` does, a SIGINT pending or not
/// (`interrupted`).
fn after_failed_start(failed: StartFailed, interrupted: bool) -> AfterFailedStart {
    match (interrupted, failed) {
        (false, _) => AfterFailedStart::Fail,
        (true, StartFailed::BeforeClaim) => AfterFailedStart::StopForGood,
        (true, StartFailed::AfterClaim) => AfterFailedStart::Remove,
    }
}

/// The error of a start that failed with `error` before this lbd claimed
/// the data plane, a SIGINT pending: the stop for good it asked for, with
/// nothing removed (what is there may be another lbd's), marked
/// [`StoppedForGoodWithErrors`].
fn stopped_before_claim(error: anyhow::Error) -> anyhow::Error {
    warn!(error = %format!("{error:#}"), "SIGINT arrived during a start that failed before this lbd claimed the data plane: stopping for good, removing nothing (what is on the interface may be another lbd's; run `lbd --cleanup` to remove this config's data plane)");
    error
        .context("SIGINT arrived during the start, which failed before this lbd claimed the data plane: lbd stopped for good and removed nothing (run `lbd --cleanup` to remove what this config's lbd left)")
        .context(StoppedForGoodWithErrors)
}

/// The error of a start that failed with `error` while a SIGINT was
/// pending, once `removal` (the stop for good it carried out) ended:
/// marked [`StoppedForGoodWithErrors`] either way (exit status
/// [`EXIT_STOPPED_FOR_GOOD_WITH_ERRORS`]: the start failed, and systemd
/// must not start lbd again), saying what is left to do.
///
/// [`EXIT_STOPPED_FOR_GOOD_WITH_ERRORS`]: super::EXIT_STOPPED_FOR_GOOD_WITH_ERRORS
fn failed_start_interrupted(error: anyhow::Error, removal: anyhow::Result<()>) -> anyhow::Error {
    let outcome = match removal {
        Ok(()) => {
            info!("lbd stopped for good after its start failed: the data plane it held is removed");
            "SIGINT arrived during the start: lbd stopped for good, and the data plane it held is removed".to_owned()
        }
        Err(removal) => format!(
            "SIGINT arrived during the start, and the stop for good that followed failed too ({removal:#}): once that is fixed, run `lbd --cleanup` to remove what is left"
        ),
    };
    error.context(outcome).context(StoppedForGoodWithErrors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::{exit_status, EXIT_STOPPED_FOR_GOOD_WITH_ERRORS};

    /// A SIGINT pending when the start failed before this lbd claimed
    /// the data plane (refused: another data plane sits on the
    /// interface) stops for good and removes nothing: `--cleanup`'s
    /// removal would withdraw the routes and VIP addresses that data
    /// plane uses. After the claim it removes this config's data plane.
    #[test]
    fn a_sigint_removes_only_a_data_plane_this_lbd_claimed() {
        use AfterFailedStart::{Fail, Remove, StopForGood};
        use StartFailed::{AfterClaim, BeforeClaim};
        assert_eq!(after_failed_start(BeforeClaim, true), StopForGood);
        assert_eq!(after_failed_start(AfterClaim, true), Remove);
        assert_eq!(after_failed_start(BeforeClaim, false), Fail);
        assert_eq!(after_failed_start(AfterClaim, false), Fail);
        let error = stopped_before_claim(anyhow::anyhow!("refused"));
        assert_eq!(exit_status(&error), EXIT_STOPPED_FOR_GOOD_WITH_ERRORS);
        assert!(
            format!("{error:#}").contains("removed nothing"),
            "{error:#}"
        );
    }

    /// A SIGINT that arrived during a start that failed is the operator's
    /// stop for good: whether that stop removed the data plane or not,
    /// lbd exits with the status systemd does not restart (not 1, which
    /// it restarts), and the log says what is left to do.
    #[test]
    fn a_start_that_failed_with_sigint_pending_is_not_restarted() {
        let start = || anyhow::anyhow!("[sync] listen 198.18.0.2:7946: address in use");
        let removed = failed_start_interrupted(start(), Ok(()));
        assert_eq!(exit_status(&removed), EXIT_STOPPED_FOR_GOOD_WITH_ERRORS);
        let logged = format!("{removed:#}");
        assert!(
            logged.contains("address in use") && logged.contains("data plane it held is removed"),
            "{logged}"
        );
        let failed = failed_start_interrupted(start(), Err(anyhow::anyhow!("BIRD did not answer")));
        assert_eq!(exit_status(&failed), EXIT_STOPPED_FOR_GOOD_WITH_ERRORS);
        let logged = format!("{failed:#}");
        assert!(
            logged.contains("BIRD did not answer") && logged.contains("lbd --cleanup"),
            "{logged}"
        );
    }
}
