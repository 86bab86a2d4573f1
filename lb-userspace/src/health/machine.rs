//! The health state of one backend as a pure state machine: it counts
//! consecutive probe successes and failures and decides, with HAProxy's
//! `rise`/`fall` rules, when the backend changes state and how soon it
//! should be checked again (`inter` when stable, `fastinter` while in
//! doubt). No I/O and no clock: the caller hands in every result and the
//! time it was taken, so the rules are tested without sockets or sleeps.

use std::{
    fmt,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::probe::{FailureReason, Outcome, ProbeResult};

/// The shortest interval the machine will ask for, so that a zero interval
/// in a bad config cannot turn a check task into a busy loop.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// How one backend is checked: how often, how long a probe may take, and how
/// many results in a row it takes to change its state. Kept apart from the
/// probe's target so the same settings can apply to every backend of a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct CheckSettings {
    /// Time between checks while the state is settled (HAProxy `inter`).
    pub interval: Duration,
    /// Time between checks while the state is in doubt: `Unknown`, or some
    /// results in a row disagree with the current state (HAProxy
    /// `fastinter`), so a change is confirmed or dismissed quickly.
    pub fast_interval: Duration,
    /// How long one probe, connect included, may take before it fails.
    pub timeout: Duration,
    /// Successes in a row that make a backend `Up`.
    pub rise: u32,
    /// Failures in a row that make a backend `Down`.
    pub fall: u32,
}

impl Default for CheckSettings {
    /// HAProxy-like defaults: every 2 s, every 500 ms while in doubt, 1 s
    /// timeout, up after 2 successes, down after 3 failures.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            fast_interval: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

impl CheckSettings {
    /// The settings the machine actually runs with: counts at least 1 and
    /// intervals at least [`MIN_INTERVAL`].
    fn normalized(self) -> Self {
        Self {
            interval: self.interval.max(MIN_INTERVAL),
            fast_interval: self.fast_interval.max(MIN_INTERVAL),
            timeout: self.timeout,
            rise: self.rise.max(1),
            fall: self.fall.max(1),
        }
    }
}

/// A backend's health as the checks see it; the data plane only sends new
/// connections to backends that are `Up`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not enough results yet (a new backend, or a restarted check).
    #[default]
    Unknown,
    /// `rise` successes in a row, and not `fall` failures in a row since.
    Up,
    /// `fall` failures in a row, and not `rise` successes in a row since.
    Down,
    /// The server answers, but refuses new sessions for want of resources
    /// ([`Outcome::Full`]: PostgreSQL's "too many clients", PgBouncer's
    /// `max_client_conn`): it keeps its established flows (alive) and
    /// takes no new ones (no weight), as a drain does, rather than lose
    /// every session it serves to a limit on new ones. Entered after
    /// `fall` results in a row that are not successes, the last one a
    /// refusal (from `Down`: `rise` refusals in a row, a sign of life);
    /// left for `Up` after `rise` successes, for `Down` after `fall`
    /// failures of another kind.
    Full,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
            Health::Full => "full",
        })
    }
}

/// A change of health, with a reason a person can read in the logs or in
/// `lbctl`: why the backend was taken out of (or put back into) service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// State before.
    pub from: Health,
    /// State after.
    pub to: Health,
    /// The streak that caused it and the last probe's outcome, e.g.
    /// "3 consecutive failures, last: connection refused".
    pub reason: String,
}

/// One backend's health: the streaks of results and the state they lead
/// to. The driver owns one per checked backend.
///
/// Starting from [`Health::Unknown`], `rise` successes in a row make it
/// `Up` and `fall` failures in a row make it `Down`, checks taken
/// `fast_interval` apart until then. The model lets an `Unknown` backend
/// take new flows as an `Up` one does (HAProxy's default `init-state up`):
/// backends in service when lbd starts are not cut off while their first
/// checks run, and one that is not there is out after `fall` checks.
#[derive(Debug, Clone)]
pub(crate) struct HealthMachine {
    settings: CheckSettings,
    health: Health,
    successes: u32,
    /// Results in a row that are not successes: failures and refusals.
    failures: u32,
    /// Refusals for capacity ([`Outcome::Full`]) in a row.
    refusals: u32,
    /// Failures of another kind than a refusal in a row.
    hard_failures: u32,
    last_result: Option<ProbeResult>,
    last_checked: Option<Instant>,
    changed_at: Option<Instant>,
}

impl HealthMachine {
    /// A machine in state `initial` with no results yet. `initial` is
    /// usually `Unknown`; `Up` or `Down` carries a state over, e.g. from
    /// before a restart, so a known-good backend is not drained meanwhile.
    pub(crate) fn new(settings: CheckSettings, initial: Health) -> Self {
        Self {
            settings: settings.normalized(),
            health: initial,
            successes: 0,
            failures: 0,
            refusals: 0,
            hard_failures: 0,
            last_result: None,
            last_checked: None,
            changed_at: None,
        }
    }

    /// Takes one probe result, taken at `now`, and returns the change of
    /// state it causes, if any. A success ends the failure streak and a
    /// failure ends the success streak. A refusal for capacity
    /// ([`Outcome::Full`]) counts as no success: after `fall` such results
    /// in a row, the last one a refusal, the backend is [`Health::Full`];
    /// only `fall` failures of another kind in a row make it `Down`.
    pub(crate) fn record(&mut self, result: &ProbeResult, now: Instant) -> Option<Transition> {
        self.last_checked = Some(now);
        self.last_result = Some(result.clone());
        if matches!(&result.outcome, Outcome::Failure(reason) if reason.is_local()) {
            // The check did not run, or failed for this node's own
            // reason (its link down): no streak moves.
            return None;
        }
        let to = match &result.outcome {
            Outcome::Success => {
                self.successes = self.successes.saturating_add(1);
                (self.failures, self.refusals, self.hard_failures) = (0, 0, 0);
                (self.health != Health::Up && self.successes >= self.settings.rise)
                    .then_some(Health::Up)
            }
            Outcome::Full(_) => {
                self.failures = self.failures.saturating_add(1);
                self.refusals = self.refusals.saturating_add(1);
                (self.successes, self.hard_failures) = (0, 0);
                let enough = match self.health {
                    // A sign of life from a backend that was down.
                    Health::Down => self.refusals >= self.settings.rise,
                    _ => self.failures >= self.settings.fall,
                };
                (self.health != Health::Full && enough).then_some(Health::Full)
            }
            Outcome::Failure(_) => {
                self.failures = self.failures.saturating_add(1);
                self.hard_failures = self.hard_failures.saturating_add(1);
                (self.successes, self.refusals) = (0, 0);
                (self.health != Health::Down && self.hard_failures >= self.settings.fall)
                    .then_some(Health::Down)
            }
        }?;
        let from = std::mem::replace(&mut self.health, to);
        self.changed_at = Some(now);
        Some(Transition {
            from,
            to,
            reason: self.reason(result, from),
        })
    }

    /// The current state.
    pub(crate) fn health(&self) -> Health {
        self.health
    }

    /// How long to wait before the next check: `fast_interval` while the
    /// state is `Unknown` or some results in a row disagree with it, so a
    /// change is settled quickly; `interval` otherwise.
    pub(crate) fn next_check_in(&self) -> Duration {
        let in_doubt = match self.health {
            Health::Unknown => true,
            Health::Up => self.failures > 0,
            Health::Down => self.successes > 0 || self.refusals > 0,
            Health::Full => self.successes > 0 || self.hard_failures > 0,
        };
        if in_doubt {
            self.settings.fast_interval
        } else {
            self.settings.interval
        }
    }

    /// The current streaks, as (successes, failures) in a row; one of the
    /// two is always 0. For status output and metrics.
    pub(crate) fn consecutive(&self) -> (u32, u32) {
        (self.successes, self.failures)
    }

    /// The last result recorded, for status output.
    #[cfg(test)]
    pub(crate) fn last_result(&self) -> Option<&ProbeResult> {
        self.last_result.as_ref()
    }

    /// When the last result was recorded, as given to [`Self::record`].
    #[cfg(test)]
    pub(crate) fn last_checked(&self) -> Option<Instant> {
        self.last_checked
    }

    /// When the state last changed, as given to [`Self::record`]; `None`
    /// while it is still the initial state.
    #[cfg(test)]
    pub(crate) fn changed_at(&self) -> Option<Instant> {
        self.changed_at
    }

    /// Why the state changed: the streak, and what the last probe saw.
    fn reason(&self, result: &ProbeResult, from: Health) -> String {
        match &result.outcome {
            Outcome::Success => {
                let n = self.successes;
                let noun = if n == 1 { "success" } else { "successes" };
                format!(
                    "{n} consecutive {noun}, last: success in {:.1}ms",
                    result.latency.as_secs_f64() * 1000.0
                )
            }
            Outcome::Full(reason) => {
                let n = if from == Health::Down {
                    self.refusals
                } else {
                    self.failures
                };
                let noun = if n == 1 { "result" } else { "results" };
                format!("{n} consecutive {noun} without success, last: full (refuses new sessions): {reason}")
            }
            Outcome::Failure(reason) => {
                let n = self.hard_failures;
                let noun = if n == 1 { "failure" } else { "failures" };
                format!("{n} consecutive {noun}, last: {}", self.describe(reason))
            }
        }
    }

    /// A failure in words; a timeout says how long it waited.
    fn describe(&self, reason: &FailureReason) -> String {
        match reason {
            FailureReason::Timeout => format!("timeout after {:?}", self.settings.timeout),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CheckSettings {
        CheckSettings {
            interval: Duration::from_secs(2),
            fast_interval: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }

    fn ok() -> ProbeResult {
        ProbeResult {
            outcome: Outcome::Success,
            latency: Duration::from_micros(1500),
        }
    }

    fn fail(reason: FailureReason) -> ProbeResult {
        ProbeResult {
            outcome: Outcome::Failure(reason),
            latency: Duration::from_millis(1),
        }
    }

    fn refused() -> ProbeResult {
        fail(FailureReason::Refused)
    }

    /// PostgreSQL at `max_connections`.
    fn full() -> ProbeResult {
        ProbeResult {
            outcome: Outcome::Full(FailureReason::PgsqlError {
                severity: "FATAL".into(),
                code: "53300".into(),
                message: "sorry, too many clients already".into(),
            }),
            latency: Duration::from_millis(1),
        }
    }

    /// A server that refuses new sessions for capacity is full, not down,
    /// after `fall` results; it is up again after `rise` successes.
    #[test]
    fn refusals_for_capacity_make_it_full_not_down() {
        let mut m = HealthMachine::new(settings(), Health::Up);
        let ts = feed(&mut m, &[full(), full(), full(), full()]);
        assert_eq!(ts[..2], [None, None]);
        let t = ts[2].clone().unwrap();
        assert_eq!((t.from, t.to), (Health::Up, Health::Full));
        assert_eq!(
            t.reason,
            "3 consecutive results without success, last: full (refuses new sessions): PostgreSQL FATAL 53300: sorry, too many clients already"
        );
        assert_eq!(ts[3], None, "no repeated transition");
        assert_eq!(m.health(), Health::Full);
        assert_eq!(m.consecutive(), (0, 4));
        assert_eq!(m.next_check_in(), settings().interval, "full, stable");
        assert_eq!(m.record(&ok(), Instant::now()), None);
        assert_eq!(m.next_check_in(), settings().fast_interval, "full, rising");
        let t = m.record(&ok(), Instant::now()).unwrap();
        assert_eq!((t.from, t.to), (Health::Full, Health::Up));
        // Failures and refusals mixed: full once the last is a refusal.
        let mut m = HealthMachine::new(settings(), Health::Unknown);
        let ts = feed(&mut m, &[refused(), refused(), full()]);
        assert_eq!(ts[2].clone().map(|t| t.to), Some(Health::Full));
    }

    /// A full backend that fails in another way is down after `fall`
    /// such failures; one that was down comes back as full after `rise`
    /// refusals (it answers again).
    #[test]
    fn a_full_backend_goes_down_after_fall_other_failures() {
        let mut m = HealthMachine::new(settings(), Health::Full);
        let ts = feed(
            &mut m,
            &[refused(), refused(), full(), refused(), refused()],
        );
        assert!(ts.iter().all(Option::is_none), "{ts:?}");
        assert_eq!(m.next_check_in(), settings().fast_interval, "full, falling");
        let t = m.record(&refused(), Instant::now()).unwrap();
        assert_eq!((t.from, t.to), (Health::Full, Health::Down));
        assert_eq!(t.reason, "3 consecutive failures, last: connection refused");
        assert_eq!(m.record(&full(), Instant::now()), None);
        assert_eq!(
            m.next_check_in(),
            settings().fast_interval,
            "down, answering"
        );
        let t = m.record(&full(), Instant::now()).unwrap();
        assert_eq!((t.from, t.to), (Health::Down, Health::Full));
        assert!(
            t.reason
                .starts_with("2 consecutive results without success"),
            "{}",
            t.reason
        );
    }

    /// Feeds results and returns the transition of each.
    fn feed(m: &mut HealthMachine, results: &[ProbeResult]) -> Vec<Option<Transition>> {
        let now = Instant::now();
        results.iter().map(|r| m.record(r, now)).collect()
    }

    #[test]
    fn a_check_this_node_could_not_run_moves_no_streak() {
        let mut m = HealthMachine::new(settings(), Health::Up);
        let local = fail(FailureReason::Local("no port".into()));
        let got = feed(
            &mut m,
            &[refused(), local.clone(), local.clone(), local, refused()],
        );
        assert!(got.iter().all(Option::is_none), "{got:?}");
        assert_eq!(m.consecutive(), (0, 2), "only the two real failures count");
        assert_eq!(m.health(), Health::Up);
    }

    /// A failure while the balancer's own link is down says nothing of
    /// the backend: a flap of that link takes no backend down (nor one
    /// that was going down further down), and the streak goes on after.
    #[test]
    fn a_failure_while_the_interface_is_down_moves_no_streak() {
        let mut m = HealthMachine::new(settings(), Health::Up);
        let link_down = fail(FailureReason::InterfaceDown {
            interface: "eth0".into(),
            failure: Box::new(FailureReason::Timeout),
        });
        let got = feed(
            &mut m,
            &[
                refused(),
                link_down.clone(),
                link_down.clone(),
                link_down,
                refused(),
            ],
        );
        assert!(got.iter().all(Option::is_none), "{got:?}");
        assert_eq!(m.consecutive(), (0, 2));
        assert_eq!(m.health(), Health::Up);
        let t = m.record(&refused(), Instant::now()).unwrap();
        assert_eq!(t.to, Health::Down);
    }

    #[test]
    fn defaults_are_haproxy_like() {
        let d = CheckSettings::default();
        assert_eq!(d.interval, Duration::from_secs(2));
        assert_eq!(d.fast_interval, Duration::from_millis(500));
        assert_eq!(d.timeout, Duration::from_secs(1));
        assert_eq!((d.rise, d.fall), (2, 3));
    }

    #[test]
    fn zero_settings_are_normalized() {
        let s = CheckSettings {
            interval: Duration::ZERO,
            fast_interval: Duration::ZERO,
            rise: 0,
            fall: 0,
            ..settings()
        };
        let mut m = HealthMachine::new(s, Health::Unknown);
        assert_eq!(m.next_check_in(), MIN_INTERVAL);
        let t = m.record(&ok(), Instant::now()).unwrap();
        assert_eq!(t.to, Health::Up);
        assert_eq!(m.next_check_in(), MIN_INTERVAL);
    }

    #[test]
    fn health_displays_lowercase() {
        assert_eq!(Health::Unknown.to_string(), "unknown");
        assert_eq!(Health::Up.to_string(), "up");
        assert_eq!(Health::Down.to_string(), "down");
        assert_eq!(Health::Full.to_string(), "full");
    }

    #[test]
    fn unknown_rises_after_rise_successes() {
        let mut m = HealthMachine::new(settings(), Health::Unknown);
        assert_eq!(m.health(), Health::Unknown);
        assert_eq!(m.record(&ok(), Instant::now()), None);
        assert_eq!(m.health(), Health::Unknown);
        assert_eq!(m.consecutive(), (1, 0));
        let t = m.record(&ok(), Instant::now()).unwrap();
        assert_eq!((t.from, t.to), (Health::Unknown, Health::Up));
        assert_eq!(t.reason, "2 consecutive successes, last: success in 1.5ms");
        assert_eq!(m.health(), Health::Up);
        // No repeated transition while it stays up.
        assert_eq!(m.record(&ok(), Instant::now()), None);
        assert_eq!(m.consecutive(), (3, 0));
    }

    #[test]
    fn unknown_falls_after_fall_failures() {
        let mut m = HealthMachine::new(settings(), Health::Unknown);
        let ts = feed(&mut m, &[refused(), refused(), refused()]);
        assert_eq!(ts[0], None);
        assert_eq!(ts[1], None);
        let t = ts[2].clone().unwrap();
        assert_eq!((t.from, t.to), (Health::Unknown, Health::Down));
        assert_eq!(m.health(), Health::Down);
        assert_eq!(m.consecutive(), (0, 3));
    }

    #[test]
    fn up_goes_down_after_exactly_fall_failures() {
        let mut m = HealthMachine::new(settings(), Health::Up);
        for i in 1..3 {
            assert_eq!(m.record(&refused(), Instant::now()), None, "failure {i}");
            assert_eq!(m.health(), Health::Up);
        }
        let t = m.record(&refused(), Instant::now()).unwrap();
        assert_eq!((t.from, t.to), (Health::Up, Health::Down));
        assert_eq!(t.reason, "3 consecutive failures, last: connection refused");
        assert_eq!(m.record(&refused(), Instant::now()), None);
        assert_eq!(m.health(), Health::Down);
    }

    #[test]
    fn success_in_between_resets_failures() {
        let mut m = HealthMachine::new(settings(), Health::Up);
        let ts = feed(&mut m, &[refused(), refused(), ok(), refused(), refused()]);
        assert!(ts.iter().all(Option::is_none));
        assert_eq!(m.health(), Health::Up);
        assert_eq!(m.consecutive(), (0, 2));
        let t = m.record(&refused(), Instant::now()).unwrap();
        assert_eq!(t.to, Health::Down);
    }

    #[test]
    fn failure_in_between_resets_successes() {
        let mut m = HealthMachine::new(settings(), Health::Down);
        let ts = feed(&mut m, &[ok(), refused(), ok()]);
        assert!(ts.iter().all(Option::is_none));
        assert_eq!(m.health(), Health::Down);
        assert_eq!(m.consecutive(), (1, 0));
        let t = m.record(&ok(), Instant::now()).unwrap();
        assert_eq!((t.from, t.to), (Health::Down, Health::Up));
    }

    #[test]
    fn down_comes_up_after_rise_successes() {
        let mut m = HealthMachine::new(settings(), Health::Unknown);
        feed(&mut m, &[refused(), refused(), refused()]);
        assert_eq!(m.health(), Health::Down);
        assert_eq!(m.record(&ok(), Instant::now()), None);
        let t = m.record(&ok(), Instant::now()).unwrap();
        assert_eq!((t.from, t.to), (Health::Down, Health::Up));
        assert_eq!(m.health(), Health::Up);
    }

    #[test]
    fn fast_interval_while_unknown_or_transitioning() {
        let s = settings();
        let mut m = HealthMachine::new(s, Health::Unknown);
        assert_eq!(m.next_check_in(), s.fast_interval, "unknown, no result");
        m.record(&ok(), Instant::now());
        assert_eq!(m.next_check_in(), s.fast_interval, "unknown, rising");
        m.record(&ok(), Instant::now());
        assert_eq!(m.health(), Health::Up);
        assert_eq!(m.next_check_in(), s.interval, "up, stable");
        m.record(&refused(), Instant::now());
        assert_eq!(m.next_check_in(), s.fast_interval, "up, falling");
        m.record(&ok(), Instant::now());
        assert_eq!(m.next_check_in(), s.interval, "up, dismissed");
        feed(&mut m, &[refused(), refused(), refused()]);
        assert_eq!(m.health(), Health::Down);
        assert_eq!(m.next_check_in(), s.interval, "down, stable");
        m.record(&ok(), Instant::now());
        assert_eq!(m.next_check_in(), s.fast_interval, "down, rising");
        m.record(&refused(), Instant::now());
        assert_eq!(m.next_check_in(), s.interval, "down, dismissed");
    }

    #[test]
    fn reasons_name_the_last_failure() {
        let mut m = HealthMachine::new(settings(), Health::Up);
        let ts = feed(
            &mut m,
            &[
                refused(),
                fail(FailureReason::Timeout),
                fail(FailureReason::HttpStatus {
                    got: 503,
                    expected: 200,
                }),
            ],
        );
        let t = ts[2].clone().unwrap();
        assert_eq!(
            t.reason,
            "3 consecutive failures, last: HTTP status 503, expected 200"
        );

        let mut m = HealthMachine::new(settings(), Health::Up);
        let ts = feed(
            &mut m,
            &[refused(), refused(), fail(FailureReason::Timeout)],
        );
        let t = ts[2].clone().unwrap();
        assert_eq!(t.reason, "3 consecutive failures, last: timeout after 1s");
    }

    #[test]
    fn singular_reason_with_fall_of_one() {
        let s = CheckSettings {
            fall: 1,
            ..settings()
        };
        let mut m = HealthMachine::new(s, Health::Up);
        let t = m
            .record(
                &fail(FailureReason::Io("broken pipe".into())),
                Instant::now(),
            )
            .unwrap();
        assert_eq!(
            t.reason,
            "1 consecutive failure, last: I/O error: broken pipe"
        );
    }

    #[test]
    fn keeps_last_result_and_times() {
        let mut m = HealthMachine::new(settings(), Health::Unknown);
        assert!(m.last_result().is_none());
        assert!(m.last_checked().is_none());
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        m.record(&ok(), t0);
        assert_eq!(m.last_result(), Some(&ok()));
        assert_eq!(m.changed_at(), None);
        m.record(&ok(), t1);
        assert_eq!(m.last_checked(), Some(t1));
        assert_eq!(m.changed_at(), Some(t1));
        m.record(&refused(), t1 + Duration::from_secs(1));
        assert_eq!(m.last_result(), Some(&refused()));
        assert_eq!(m.changed_at(), Some(t1));
    }
}
