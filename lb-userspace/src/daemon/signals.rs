//! The signals lbd acts on: SIGHUP and SIGUSR1 caught first thing in
//! `main`, SIGINT and SIGTERM from the run on, taken in a fixed order, and
//! ignored (with a warning) while a stop runs.

use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tracing::warn;

use super::sd_notify;

/// How long a failed start waits for a SIGINT the kernel already
/// delivered to reach its stream (the runtime's signal driver reads it
/// from a pipe): a start that fails adds this much to its exit.
const SIGNAL_SETTLE: Duration = Duration::from_millis(20);

/// lbd's SIGHUP (a reload) and SIGUSR1 (a restart) streams, caught first
/// thing in lbd's `main`, before the config is read. Why: until a handler
/// is installed their default action ends the process. Killed by SIGHUP,
/// lbd exits in a way systemd counts as clean and does not restart
/// (`Restart=on-failure`), so a `kill -HUP` racing a restart would leave
/// the node without lbd. Killed by SIGUSR1 (the unit's RestartKillSignal:
/// a `systemctl restart` racing a start), lbd writes no restart marker,
/// so the unit's stop path withdraws the BGP announcements and the
/// restart is not hitless. Caught, one that arrives before the loop runs
/// waits for it: a reload, or a stop for a restart, once started. A start
/// that fails before the loop runs exits with its failure as before, a
/// SIGUSR1 that came meanwhile writing no restart marker.
/// SIGINT and SIGTERM keep their default action until [`run`]: a stop
/// before the claim ends lbd at once, nothing touched.
///
/// [`run`]: super::run
pub struct EarlySignals {
    /// SIGHUP: a reload.
    hangup: tokio::signal::unix::Signal,
    /// SIGUSR1: a stop for a restart.
    restart: tokio::signal::unix::Signal,
}

impl EarlySignals {
    /// Installs the SIGHUP and SIGUSR1 handlers (for good: the streams
    /// handed to [`run`] keep what arrives until the loop takes it).
    ///
    /// [`run`]: super::run
    pub fn register() -> anyhow::Result<Self> {
        Ok(Self {
            hangup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
            restart: signal(SignalKind::user_defined1())
                .context("installing the SIGUSR1 handler")?,
        })
    }
}

/// The signals lbd acts on, registered before anything else starts
/// (SIGHUP and SIGUSR1 earlier still: see [`EarlySignals`]).
pub(super) struct Signals {
    /// SIGINT: a stop for good.
    interrupt: tokio::signal::unix::Signal,
    /// SIGTERM: a stop for a restart (for good while the system shuts
    /// down, see [`stop_kind`]).
    ///
    /// [`stop_kind`]: super::stopping::stop_kind
    terminate: tokio::signal::unix::Signal,
    /// SIGUSR1, the systemd unit's RestartKillSignal: a restart that
    /// leaves word for the unit's stop path to keep the BGP announcements.
    restart: tokio::signal::unix::Signal,
    /// SIGHUP: a reload.
    hangup: tokio::signal::unix::Signal,
}

/// A signal [`Signals`] received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Received {
    Interrupt,
    Terminate,
    Restart,
    Hangup,
}

impl Received {
    /// The signal's name.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
            Self::Restart => "SIGUSR1",
            Self::Hangup => "SIGHUP",
        }
    }
}

impl Signals {
    /// Registers SIGINT and SIGTERM beside `early`, caught already.
    pub(super) fn register(early: EarlySignals) -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            restart: early.restart,
            hangup: early.hangup,
        })
    }

    /// The next signal. Of several pending at once (they arrived during a
    /// slow start, or together), SIGINT comes first: a stop for good wins
    /// over a restart, which a random pick would make one half the time;
    /// then SIGTERM, SIGUSR1, and a reload last. Only the signals are
    /// taken in order: the loop's other events stay served fairly.
    /// Cancel-safe: a signal not returned stays pending.
    pub(super) async fn next(&mut self) -> Received {
        tokio::select! {
            biased;
            Some(()) = self.interrupt.recv() => Received::Interrupt,
            Some(()) = self.terminate.recv() => Received::Terminate,
            Some(()) = self.restart.recv() => Received::Restart,
            Some(()) = self.hangup.recv() => Received::Hangup,
            // The streams never end while lbd runs.
            else => std::future::pending().await,
        }
    }

    /// Whether a SIGINT is pending (taken if so), without waiting for
    /// one: for a start that failed, which no loop will read signals
    /// after. [`SIGNAL_SETTLE`] lets the runtime's signal driver hand over
    /// one the kernel delivered just now.
    pub(super) async fn interrupt_pending(&mut self) -> bool {
        matches!(
            tokio::time::timeout(SIGNAL_SETTLE, self.interrupt.recv()).await,
            Ok(Some(()))
        )
    }

    /// Runs `stopping`, a step of lbd's stop (`doing` says which stop),
    /// to its end. A signal that arrives meanwhile (a second Ctrl-C, a
    /// SIGINT during a stop for a restart) is logged at warn and ignored:
    /// the stop goes on as it began, since one part done for a restart
    /// and the rest for good would leave neither. Else nothing would read
    /// it, and the operator would not know why it did nothing.
    /// systemd's watchdog is pinged meanwhile: a stop it did not start (a
    /// SIGINT from `systemctl kill` or the package's removal) runs with
    /// the watchdog armed, its steps bounded but together perhaps longer,
    /// and a kill would be restarted, undoing a stop for good.
    pub(super) async fn while_stopping<T>(
        &mut self,
        doing: &str,
        systemd: &mut sd_notify::Systemd,
        stopping: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::pin!(stopping);
        loop {
            tokio::select! {
                biased;
                done = &mut stopping => return done,
                received = self.next() => {
                    let name = received.name();
                    warn!(signal = name, "{name} ignored: lbd is {doing}, and finishes that stop as it began (to remove a data plane a restart leaves, run `lbd --cleanup` once lbd has exited)");
                }
                () = systemd.ping_due() => systemd.ping(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::{engine::Stop, stopping::stop_kind};

    /// A SIGINT the kernel delivered before a start failed is seen by the
    /// check that start makes; without one, the check says none (and a
    /// start that fails then exits 1, restarted as any other failure).
    #[tokio::test]
    async fn a_pending_sigint_is_seen_by_a_failed_start() {
        let mut signals = Signals::register(EarlySignals::register().unwrap()).expect("signals");
        assert!(!signals.interrupt_pending().await);
        // SAFETY: raise(3) on this process, whose SIGINT handler tokio
        // installed above.
        assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
        assert!(signals.interrupt_pending().await);
        // Taken: the next check sees none.
        assert!(!signals.interrupt_pending().await);
    }

    /// A SIGHUP caught by [`EarlySignals`] (first thing in `main`) before
    /// the other signals are registered, and before the loop runs, is
    /// kept: the loop's signals see it, a reload.
    #[tokio::test]
    async fn a_sighup_caught_first_is_a_reload_for_the_loop() {
        let early = EarlySignals::register().unwrap();
        // SAFETY: raise(3) on this process, whose SIGHUP handler tokio
        // installed above.
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        let mut signals = Signals::register(early).expect("signals");
        // The hangup stream alone: another test here raises SIGINT, which
        // `next` would take first.
        let taken = tokio::time::timeout(Duration::from_secs(10), signals.hangup.recv()).await;
        assert_eq!(taken, Ok(Some(())));
    }

    /// A SIGUSR1 (the unit's RestartKillSignal) caught by
    /// [`EarlySignals`] before the config was read is kept for the loop: a
    /// stop for a restart once lbd runs, which writes the restart marker
    /// (the stop path keeps the BGP announcements), not a death by the
    /// signal's default action, after which it would withdraw them.
    #[tokio::test]
    async fn a_sigusr1_caught_first_is_a_restart_for_the_loop() {
        let early = EarlySignals::register().unwrap();
        // SAFETY: raise(3) on this process, whose SIGUSR1 handler tokio
        // installed above.
        assert_eq!(unsafe { libc::raise(libc::SIGUSR1) }, 0);
        let mut signals = Signals::register(early).expect("signals");
        // The restart stream alone: another test here raises SIGINT and
        // SIGHUP, which `next` would take first.
        let taken = tokio::time::timeout(Duration::from_secs(10), signals.restart.recv()).await;
        assert_eq!(taken, Ok(Some(())));
        assert_eq!(stop_kind(Received::Restart, false), Some(Stop::Restart));
    }
}
