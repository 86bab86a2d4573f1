//! Which stop a signal asks for (for good, or for a restart), what lbd
//! logs of it, and what a stop does about the BGP announcements before
//! the engine's shutdown: the decisions, kept apart from the loop that
//! carries them out.

use super::{engine::Stop, signals::Received, EXIT_STOPPED_FOR_RESTART};

/// What a stop does about the BGP announcements before the engine's
/// shutdown (which withdraws them itself only for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WithdrawFirst {
    /// Nothing: a stop for good withdraws in the shutdown; a restart
    /// whose pinned program still runs keeps them for the next lbd.
    Nothing,
    /// `pin_dir` is off, so the program goes with lbd: the last flows go
    /// to the peer, VRRP hands over, then the withdrawal, forwarding on
    /// while the traffic moves.
    HandOverAndWithdraw,
    /// The interface's hook was lost, so the program no longer runs
    /// (VRRP stepped down then): only the withdrawal, awaited. The loop
    /// planned it when the hook went, but may not have sent it (an
    /// exchange with BIRD was in flight when it exited).
    Withdraw,
}

/// [`WithdrawFirst`] for a stop `stop` of a data plane `pinned` or not,
/// after the interface's hook was lost (`lost_hook`) or not.
pub(super) fn withdraw_first(stop: Stop, pinned: bool, lost_hook: bool) -> WithdrawFirst {
    match (stop, pinned, lost_hook) {
        (Stop::Clean, ..) => WithdrawFirst::Nothing,
        (Stop::Restart, false, _) => WithdrawFirst::HandOverAndWithdraw,
        (Stop::Restart, true, true) => WithdrawFirst::Withdraw,
        (Stop::Restart, true, false) => WithdrawFirst::Nothing,
    }
}

/// How lbd stops for `signal` while the system is stopping (shutting
/// down or rebooting, see [`shutdown_probe`]) or not; None for a signal
/// that is no stop (SIGHUP, a reload). SIGTERM is `systemctl stop`'s, and
/// a shutdown's too: at a shutdown no next lbd comes to adopt a pinned
/// data plane before the reboot, which the pins do not outlive, so it
/// stops for good as SIGINT does (the last flows to the VRRP peer, a
/// priority-0 hand-over, the BGP withdrawal), not leaving the peer to
/// wait out its master-down interval. SIGUSR1 is a restart whatever the
/// system does: systemd sends it only for a restart job.
///
/// [`shutdown_probe`]: super::shutdown_probe
pub(super) fn stop_kind(signal: Received, system_stopping: bool) -> Option<Stop> {
    match (signal, system_stopping) {
        (Received::Interrupt, _) | (Received::Terminate, true) => Some(Stop::Clean),
        (Received::Terminate, false) | (Received::Restart, _) => Some(Stop::Restart),
        (Received::Hangup, _) => None,
    }
}

/// What lbd logs (at info) on `signal`: which stop it makes, or a reload,
/// and why, for the system stopping or not (`system_stopping`, asked at
/// SIGTERM only) and a data plane `pinned` or not. Kept beside
/// [`stop_kind`], whose choice it explains.
pub(super) fn what_the_signal_does(
    signal: Received,
    system_stopping: bool,
    pinned: bool,
) -> String {
    match (signal, system_stopping, pinned) {
        (Received::Interrupt, ..) => "SIGINT: stopping for good and removing the data plane".to_owned(),
        (Received::Terminate, true, _) => "SIGTERM while the system shuts down or reboots: stopping for good as for SIGINT (the last flows to the VRRP peer, VRRP hands over with priority 0, the BGP announcements are withdrawn, the program is detached and its pins removed): no lbd comes back before the reboot, and the pins do not outlive it".to_owned(),
        (Received::Terminate, false, true) => "SIGTERM (the system is not shutting down): stopping; the pinned data plane keeps forwarding for the next lbd".to_owned(),
        (Received::Terminate, false, false) => "SIGTERM (the system is not shutting down): stopping; pin_dir is off, so the XDP program goes with lbd and VRRP steps down".to_owned(),
        (Received::Restart, _, true) => format!("SIGUSR1: stopping for a restart; BGP announcements and the pinned data plane stay (exit status {EXIT_STOPPED_FOR_RESTART}: the systemd unit starts the next lbd)"),
        // Nothing forwards once lbd is gone: announcing on would attract
        // traffic to a node that drops it.
        (Received::Restart, _, false) => "SIGUSR1: stopping; pin_dir is off, so the XDP program goes with lbd, VRRP steps down and the BGP announcements are withdrawn".to_owned(),
        (Received::Hangup, ..) => "SIGHUP: reloading the config".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stop because the hook was lost withdraws the announcements
    /// first, and awaits BIRD's answer, whatever is pinned: the program no
    /// longer runs, and the loop's own withdrawal may not have been sent
    /// yet (an exchange with BIRD was in flight). Other stops as before.
    #[test]
    fn a_stop_after_the_hook_was_lost_withdraws_first() {
        assert_eq!(
            withdraw_first(Stop::Restart, true, true),
            WithdrawFirst::Withdraw
        );
        assert_eq!(
            withdraw_first(Stop::Restart, false, true),
            WithdrawFirst::HandOverAndWithdraw
        );
        assert_eq!(
            withdraw_first(Stop::Restart, false, false),
            WithdrawFirst::HandOverAndWithdraw
        );
        assert_eq!(
            withdraw_first(Stop::Restart, true, false),
            WithdrawFirst::Nothing
        );
        assert_eq!(
            withdraw_first(Stop::Clean, true, false),
            WithdrawFirst::Nothing
        );
        assert_eq!(
            withdraw_first(Stop::Clean, false, false),
            WithdrawFirst::Nothing
        );
    }

    /// A host shutdown or reboot stops lbd with SIGTERM, as `systemctl
    /// stop` does: then it stops for good as for SIGINT (last flows to the
    /// peer, VRRP priority 0, BGP withdrawn, program detached), since no
    /// next lbd comes before the reboot and the pins do not survive it. A
    /// restart-style stop there would cost the VRRP peer its master-down
    /// interval and the flows of the last moments. Other signals as they
    /// were, whatever the system does.
    #[test]
    fn a_sigterm_while_the_system_stops_is_a_stop_for_good() {
        assert_eq!(stop_kind(Received::Terminate, true), Some(Stop::Clean));
        assert_eq!(stop_kind(Received::Terminate, false), Some(Stop::Restart));
        for system_stopping in [false, true] {
            assert_eq!(
                stop_kind(Received::Interrupt, system_stopping),
                Some(Stop::Clean)
            );
            assert_eq!(
                stop_kind(Received::Restart, system_stopping),
                Some(Stop::Restart)
            );
            assert_eq!(stop_kind(Received::Hangup, system_stopping), None);
        }
        // The log says which stop, and why.
        let at_shutdown = what_the_signal_does(Received::Terminate, true, true);
        assert!(
            at_shutdown.contains("shuts down or reboots")
                && at_shutdown.contains("stopping for good")
                && at_shutdown.contains("priority 0"),
            "{at_shutdown}"
        );
        for pinned in [false, true] {
            let stop = what_the_signal_does(Received::Terminate, false, pinned);
            assert!(
                stop.contains("the system is not shutting down") && !stop.contains("for good"),
                "{stop}"
            );
        }
    }
}
