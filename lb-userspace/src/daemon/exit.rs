//! How lbd's run ends, as its exit status tells the service manager:
//! whether a next lbd must follow (a stop for a restart), must not (a stop
//! for good that failed), or may (any other failure).

use super::refused::{self, EXIT_OBJECT_REFUSED};

/// lbd's exit status when a stop for good (SIGINT) ended with errors
/// (BIRD did not take the withdrawal of the node's announcements, the
/// program could not be detached): the systemd unit lists it in
/// `RestartPreventExitStatus=`, so a node taken off for good stays off
/// instead of being started again by `Restart=on-failure`. lbd's other
/// failures exit 1 (a usage error 2, from the argument parser).
pub const EXIT_STOPPED_FOR_GOOD_WITH_ERRORS: u8 = 10;

/// lbd's exit status after SIGUSR1 (the systemd unit's
/// `RestartKillSignal`) stopped it for a restart: its pinned data plane
/// forwards on and the unit's stop path keeps its BGP announcements, for
/// the next lbd. The unit lists it in `RestartForceExitStatus=` (and
/// `SuccessExitStatus=`, a clean stop), so a next lbd always follows,
/// also when the signal came from `systemctl kill -s USR1` or a stray
/// `kill`: with exit 0 nothing would, and BIRD would go on announcing a
/// node whose frozen program sends new flows to backends nobody checks.
pub const EXIT_STOPPED_FOR_RESTART: u8 = 11;

/// How a [`run`] that did not fail ended: its exit status tells the
/// service manager whether a next lbd must follow.
///
/// [`run`]: super::run
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A stop (SIGTERM, SIGINT; SIGUSR1 with `pin_dir = "off"`, which left
    /// nothing for a next lbd): exit 0.
    Done,
    /// A stop for a restart (SIGUSR1 with a pinned data plane): the
    /// program forwards on and the announcements stay for the next lbd;
    /// exit [`EXIT_STOPPED_FOR_RESTART`].
    ForRestart,
}

impl Stopped {
    /// lbd's exit status after this stop.
    pub fn exit_status(self) -> u8 {
        match self {
            Self::Done => 0,
            Self::ForRestart => EXIT_STOPPED_FOR_RESTART,
        }
    }
}

/// Marks the error of a stop for good (see
/// [`EXIT_STOPPED_FOR_GOOD_WITH_ERRORS`]) in the chain [`run`] returns.
///
/// [`run`]: super::run
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoppedForGoodWithErrors;

impl std::fmt::Display for StoppedForGoodWithErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the stop for good (SIGINT, or SIGTERM while the system shuts down) ended with errors (exit status {EXIT_STOPPED_FOR_GOOD_WITH_ERRORS}, which the systemd unit does not restart)"
        )
    }
}

/// The exit status of an lbd whose [`run`] or [`offline`] action failed
/// with `error`: [`EXIT_STOPPED_FOR_GOOD_WITH_ERRORS`] for a stop for good,
/// [`EXIT_OBJECT_REFUSED`] when the kernel refused this build's object,
/// else 1.
///
/// [`run`]: super::run
/// [`offline`]: fn@super::offline
pub fn exit_status(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<StoppedForGoodWithErrors>().is_some() {
        EXIT_STOPPED_FOR_GOOD_WITH_ERRORS
    } else if refused::object_refused(error) {
        EXIT_OBJECT_REFUSED
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values of the `key=` lines of a unit file, split on whitespace.
    fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
        unit.lines()
            .filter_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
            .flat_map(str::split_whitespace)
            .collect()
    }

    /// `Restart=on-failure` restarts any non-zero exit but those the unit
    /// lists: a stop for good that failed must stay stopped.
    #[test]
    fn the_systemd_unit_does_not_restart_a_stop_for_good_that_failed() {
        let unit = include_str!("../../../deploy/systemd/lbd.service");
        assert_eq!(unit_values(unit, "Restart"), ["on-failure"]);
        let prevented = unit_values(unit, "RestartPreventExitStatus");
        assert!(
            prevented.contains(&EXIT_STOPPED_FOR_GOOD_WITH_ERRORS.to_string().as_str()),
            "RestartPreventExitStatus={prevented:?} lacks {EXIT_STOPPED_FOR_GOOD_WITH_ERRORS}"
        );
        // lbd's other failures (1) and a usage error (2) are restarted.
        for restarted in ["1", "2"] {
            assert!(!prevented.contains(&restarted), "{prevented:?}");
        }
        // Not one of systemd's own (200 and up) nor a signal's (128 + n).
        assert!((3..126).contains(&EXIT_STOPPED_FOR_GOOD_WITH_ERRORS));
    }

    /// A stop for a restart (SIGUSR1, whoever sent it) leaves the routes
    /// announced for the next lbd: systemd must always start one, and
    /// count the stop as clean (`systemctl restart` sends the signal).
    #[test]
    fn the_systemd_unit_always_starts_an_lbd_after_a_stop_for_a_restart() {
        let unit = include_str!("../../../deploy/systemd/lbd.service");
        let status = EXIT_STOPPED_FOR_RESTART.to_string();
        for key in ["RestartForceExitStatus", "SuccessExitStatus"] {
            let listed = unit_values(unit, key);
            assert!(
                listed.contains(&status.as_str()),
                "{key}={listed:?} lacks {status}"
            );
        }
        assert!(!unit_values(unit, "RestartPreventExitStatus").contains(&status.as_str()));
        // Its own: not 0, a failure (1), a usage error (2), a stop for
        // good that failed, systemd's own (200 and up) nor a signal's.
        assert!((3..126).contains(&EXIT_STOPPED_FOR_RESTART));
        assert_ne!(EXIT_STOPPED_FOR_RESTART, EXIT_STOPPED_FOR_GOOD_WITH_ERRORS);
        assert_eq!(Stopped::ForRestart.exit_status(), EXIT_STOPPED_FOR_RESTART);
        assert_eq!(Stopped::Done.exit_status(), 0);
    }

    /// The values of the `key=` lines of section `[section]` of a unit.
    fn section_values(unit: &str, section: &str, key: &str) -> Vec<String> {
        let header = format!("[{section}]");
        let body: Vec<&str> = unit
            .lines()
            .skip_while(|line| line.trim() != header)
            .skip(1)
            .take_while(|line| !line.trim_start().starts_with('['))
            .collect();
        unit_values(&body.join("\n"), key)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// systemd's default start rate limit (5 starts in 10 s) would refuse
    /// the start that must follow a stop for a restart (which keeps the
    /// BGP routes announced) after a few quick `systemctl restart`s,
    /// leaving the routes with no lbd: the unit turns it off, in [Unit]
    /// (systemd ignores the key in [Service]), and no burst brings it back.
    #[test]
    fn the_systemd_unit_never_refuses_a_start_for_coming_too_often() {
        let unit = include_str!("../../../deploy/systemd/lbd.service");
        assert_eq!(section_values(unit, "Unit", "StartLimitIntervalSec"), ["0"]);
        for section in ["Service", "Install"] {
            for key in [
                "StartLimitIntervalSec",
                "StartLimitInterval",
                "StartLimitBurst",
            ] {
                assert!(
                    section_values(unit, section, key).is_empty(),
                    "[{section}] {key}="
                );
            }
        }
        assert!(section_values(unit, "Unit", "StartLimitBurst").is_empty());
        // What a refused start would strand: the routes a stop for a
        // restart keeps, for the lbd the unit always starts after it.
        assert!(unit_values(unit, "RestartForceExitStatus")
            .contains(&EXIT_STOPPED_FOR_RESTART.to_string().as_str()));
    }

    #[test]
    fn a_stop_for_good_that_failed_has_an_exit_status_of_its_own() {
        let other = anyhow::anyhow!("admin socket /run/lbd/lbd.sock: in use");
        assert_eq!(exit_status(&other), 1);
        let bird = anyhow::anyhow!("connecting to BIRD: no such file")
            .context("stopping for good: BIRD did not take the withdrawal");
        let stop = bird.context(StoppedForGoodWithErrors);
        assert_eq!(exit_status(&stop), EXIT_STOPPED_FOR_GOOD_WITH_ERRORS);
        // The log still names BIRD, and says why systemd does not restart.
        let logged = format!("{stop:#}");
        assert!(
            logged.contains("did not take the withdrawal") && logged.contains("does not restart"),
            "{logged}"
        );
        // Whatever context is added later, the status stays.
        assert_eq!(
            exit_status(&stop.context("lbd")),
            EXIT_STOPPED_FOR_GOOD_WITH_ERRORS
        );
    }
}
