//! The tokio side of health checking: one task per checked backend that
//! probes it, feeds its [`HealthMachine`], keeps a shared status snapshot
//! up to date, and sends a [`HealthEvent`] on each change of health. The
//! [`HealthChecker`] owns the tasks: it starts, replaces and stops them as
//! the config changes, and aborts them all when dropped.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Debug,
    hash::{BuildHasher, DefaultHasher, Hash, Hasher, RandomState},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{runtime::Handle, sync::mpsc, task::JoinHandle};
use tracing::{debug, error, info, info_span, Instrument};

use super::{
    link::{kernel_egress, EgressLookup},
    machine::{CheckSettings, Health, HealthMachine, Transition},
    probe::{ProbeResult, ProbeTarget},
};

mod blame;
mod check;
mod local_failures;
mod pacing;

use check::Check;
use pacing::Jitter;

/// A backend changed health: what the daemon acts on (put the backend in or
/// out of the data plane).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent<K> {
    /// The caller's identity of the backend, as given to
    /// [`HealthChecker::set`].
    pub key: K,
    /// The change, with its reason.
    pub transition: Transition,
    /// The probe result that caused it.
    pub result: ProbeResult,
    /// The task that saw it: an event still queued when its task was
    /// replaced (new settings) is stale, and `HealthChecker::is_current`
    /// says so.
    pub generation: u64,
}

/// One backend's check status and counters, for `lbctl` and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HealthStatus {
    /// What is probed, and how.
    pub target: ProbeTarget,
    /// Current health.
    pub health: Health,
    /// Successes in a row so far.
    pub consecutive_successes: u32,
    /// Failures in a row so far.
    pub consecutive_failures: u32,
    /// The last probe's outcome and latency; `None` before the first probe.
    pub last_result: Option<ProbeResult>,
    /// Probes run since the backend's check was started (carried over
    /// when new settings restart it).
    pub checks: u64,
    /// Failed probes since the backend's check was started (carried over
    /// when new settings restart it).
    pub failures: u64,
    /// Failed probes by [`FailureReason::label`](super::probe::FailureReason::label),
    /// refusals for capacity as `full` (see [`Outcome::failure_label`](crate::health::probe::Outcome::failure_label)).
    pub failures_by_reason: BTreeMap<String, u64>,
}

impl HealthStatus {
    /// The status of a check that has not probed yet.
    fn new(target: ProbeTarget, health: Health) -> Self {
        Self {
            target,
            health,
            consecutive_successes: 0,
            consecutive_failures: 0,
            last_result: None,
            checks: 0,
            failures: 0,
            failures_by_reason: BTreeMap::new(),
        }
    }

    /// Takes over the counters of `old`, the status of the check this one
    /// replaces (new settings or target on a reload): counters exported to
    /// Prometheus must not go down while lbd runs, which reads as a reset.
    fn carry_counters(&mut self, old: &HealthStatus) {
        self.checks = old.checks;
        self.failures = old.failures;
        self.failures_by_reason = old.failures_by_reason.clone();
    }

    /// The latency of the last probe, the metric most dashboards want.
    pub(crate) fn last_latency(&self) -> Option<Duration> {
        self.last_result.as_ref().map(|r| r.latency)
    }

    /// Takes in one probe result and the machine's state after it.
    fn update(&mut self, machine: &HealthMachine, result: &ProbeResult) {
        self.health = machine.health();
        (self.consecutive_successes, self.consecutive_failures) = machine.consecutive();
        self.last_result = Some(result.clone());
        self.checks = self.checks.saturating_add(1);
        if let Some(label) = result.outcome.failure_label() {
            self.failures = self.failures.saturating_add(1);
            match self.failures_by_reason.get_mut(label) {
                Some(count) => *count = count.saturating_add(1),
                None => {
                    self.failures_by_reason.insert(label.to_owned(), 1);
                }
            }
        }
    }
}

/// A snapshot entry: the status, and which task may write it. A replaced or
/// removed task can run a little after its abort; the generation keeps it
/// from writing a status or sending an event for a check that is gone.
struct Entry {
    generation: u64,
    status: HealthStatus,
}

/// The snapshot shared by the checker and its tasks.
type Shared<K> = Arc<Mutex<HashMap<K, Entry>>>;

/// Why the path of checks through the tunnel to each VIP address is not
/// attached (absent: it is), shared by the checker and its tasks: read
/// before every probe, so the checks through the tunnel fail while it is
/// missing and resume as soon as it is back, without restarting their
/// tasks (their streaks go on: the backends go down after `fall` such
/// failures).
type Unattached = Arc<Mutex<HashMap<std::net::IpAddr, String>>>;

/// Whether lbd's own interface can carry traffic, as the engine last saw
/// it. A failed check is this node's failure, not the backend's (see
/// [`FailureReason::InterfaceDown`](crate::health::probe::FailureReason::InterfaceDown)), while the interface its route leaves
/// by is down: asked of the kernel at each failure, since checks to
/// backends behind another interface leave by that one. This one counts
/// when the kernel has no route (those of an interface taken down go with
/// it) and while the link came back during the probe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Link {
    /// Not said yet (before the engine's first look): failures count.
    #[default]
    Unknown,
    /// Up with its carrier when last looked at; a check that fails asks
    /// the kernel again (see [`super::link::running`]).
    Up {
        /// The interface's name.
        interface: String,
    },
    /// Down, or without its carrier.
    Down {
        /// The interface's name, for the failure reason.
        interface: String,
    },
}

/// The [`Link`] shared by the checker and its tasks: read before and
/// after every probe.
type SharedLink = Arc<Mutex<Link>>;

/// Locks the snapshot. A panic under this lock cannot leave it half
/// written (each write is one small update), so poisoning is ignored.
fn lock<K>(shared: &Shared<K>) -> MutexGuard<'_, HashMap<K, Entry>> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running check task; dropping it aborts the task.
struct Task {
    target: ProbeTarget,
    settings: CheckSettings,
    handle: JoinHandle<()>,
}

impl Drop for Task {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Runs the health checks of a set of backends, one tokio task each, and
/// reports their changes of health on a channel. Dropping it stops every
/// task.
pub(crate) struct HealthChecker<K> {
    events: mpsc::Sender<HealthEvent<K>>,
    observer: Option<Observer<K>>,
    tasks: HashMap<K, Task>,
    shared: Shared<K>,
    unattached: Unattached,
    link: SharedLink,
    egress: EgressLookup,
    /// Seeds each task's [`Jitter`] (with its key and generation):
    /// random per process, fixed in tests.
    jitter_seed: u64,
    next_generation: u64,
}

impl<K> Debug for HealthChecker<K>
where
    K: Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker")
            .field("backends", &self.tasks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<K> HealthChecker<K>
where
    K: Clone + Send + Sync + Debug + Eq + Hash + 'static,
{
    /// A checker with no backends that will send changes of health to
    /// `events`. A full channel holds the tasks back (they wait to send);
    /// a closed one stops them.
    pub(crate) fn new(events: mpsc::Sender<HealthEvent<K>>) -> Self {
        Self {
            events,
            observer: None,
            tasks: HashMap::new(),
            shared: Arc::new(Mutex::new(HashMap::new())),
            unattached: Arc::new(Mutex::new(HashMap::new())),
            link: Arc::new(Mutex::new(Link::Unknown)),
            egress: kernel_egress(),
            jitter_seed: RandomState::new().build_hasher().finish(),
            next_generation: 0,
        }
    }

    /// The same checker with failed checks' routes looked up by `egress`
    /// instead of the kernel, so a test can say where they leave.
    #[cfg(test)]
    pub(crate) fn with_egress(mut self, egress: EgressLookup) -> Self {
        self.egress = egress;
        self
    }

    /// The same checker with its tasks' jitter seeded from `seed`, so a
    /// test's waits are the same every run.
    #[cfg(test)]
    pub(crate) fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = seed;
        self
    }

    /// Checks backend `key` at `target` with `settings`, so config reloads
    /// can be applied by calling this for every backend they list. A new
    /// key starts a task in state `initial`. A known key with the same
    /// target and settings is left alone, state and counters included
    /// (`initial` is then ignored); with a different target or settings its
    /// task is replaced by a fresh one, its counters (checks, failures)
    /// carried over and its streaks at 0, in the state the old task had
    /// settled on (`initial` if it had settled on none).
    ///
    /// Why the old task's state and not `initial`: the caller's `initial`
    /// is its own record of the backend's health, which misses a change
    /// whose event still waits in the channel; that event is stale once
    /// the task is replaced (see [`Self::is_current`]), so a new task
    /// started from `initial` would undo the change until `fall` (or
    /// `rise`) more probes found it again. Started from the settled
    /// state, the change stays in [`Self::settled`], where the caller can
    /// take it from when it meets the stale event.
    ///
    /// Must be called within a tokio runtime; outside one, the check is
    /// not started and an error is logged.
    pub(crate) fn set(
        &mut self,
        key: K,
        target: ProbeTarget,
        settings: CheckSettings,
        initial: Health,
    ) {
        if let Some(task) = self.tasks.get(&key) {
            if task.target == target && task.settings == settings {
                debug!(backend = ?key, "health check unchanged");
                return;
            }
        }
        let runtime = match Handle::try_current() {
            Ok(runtime) => runtime,
            Err(e) => {
                error!(backend = ?key, error = %e, "health check not started: no tokio runtime");
                return;
            }
        };
        self.next_generation += 1;
        let generation = self.next_generation;
        let initial = {
            let mut map = lock(&self.shared);
            let old = map.get(&key).map(|e| &e.status);
            let initial = old
                .map(|s| s.health)
                .filter(|h| *h != Health::Unknown)
                .unwrap_or(initial);
            let mut status = HealthStatus::new(target.clone(), initial);
            if let Some(old) = old {
                status.carry_counters(old);
            }
            // Under the same lock as the read: the old task can write no
            // state between the two (its entry is this one's from now on).
            map.insert(key.clone(), Entry { generation, status });
            initial
        };
        let span = info_span!("health_check", backend = ?key, address = %target.address);
        let jitter = {
            let mut hasher = DefaultHasher::new();
            (self.jitter_seed, &key, generation).hash(&mut hasher);
            Jitter::new(hasher.finish())
        };
        let check = Check {
            key: key.clone(),
            generation,
            target: target.clone(),
            settings,
            shared: self.shared.clone(),
            unattached: self.unattached.clone(),
            link: self.link.clone(),
            egress: self.egress.clone(),
            jitter,
            events: self.events.clone(),
            observer: self.observer.clone(),
        };
        let handle = runtime.spawn(check.run(initial).instrument(span));
        let replaced = self.tasks.insert(
            key.clone(),
            Task {
                target,
                settings,
                handle,
            },
        );
        if replaced.is_some() {
            info!(backend = ?key, %initial, "health check restarted with new settings");
        } else {
            debug!(backend = ?key, %initial, "health check started");
        }
        // Dropping `replaced` aborts the old task.
    }

    /// Says why the path of checks through the tunnel to each VIP address
    /// of `reasons` is not attached (every other: it is). Meanwhile each
    /// check through the tunnel to such a VIP fails with that reason
    /// instead of probing (see [`super::probe::unattached_result`]);
    /// direct checks go on.
    pub(crate) fn set_unattached(&self, reasons: HashMap<std::net::IpAddr, String>) {
        *self
            .unattached
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reasons;
    }

    /// Says whether the interface checks leave by is up (the engine, at
    /// each look). While it is down, a check that fails counts against no
    /// backend (its streaks stay); one that passes counts as usual.
    pub(crate) fn set_link(&self, link: Link) {
        *self.link.lock().unwrap_or_else(PoisonError::into_inner) = link;
    }

    /// Calls `observer` with every probe's result and the status after it
    /// (e.g. to feed a latency histogram that starts over with the
    /// status's counters: `checks == 1` is a check's first probe); applies
    /// to tasks started from now on. Only the current task of a key calls
    /// it: never for a check that was removed or replaced.
    pub(crate) fn with_observer(mut self, observer: Observer<K>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Stops checking backend `key`, e.g. when it leaves the config. No
    /// event for it is sent after this returns.
    pub(crate) fn remove(&mut self, key: &K) {
        lock(&self.shared).remove(key);
        if self.tasks.remove(key).is_some() {
            debug!(backend = ?key, "health check stopped");
        }
    }

    /// Stops checking every backend for which `keep` is false, so a config
    /// reload can drop what it no longer lists in one call.
    pub(crate) fn retain(&mut self, keep: impl Fn(&K) -> bool) {
        let gone: Vec<K> = self.tasks.keys().filter(|k| !keep(k)).cloned().collect();
        for key in &gone {
            self.remove(key);
        }
    }

    /// The status of every checked backend, in no particular order.
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> Vec<(K, HealthStatus)> {
        lock(&self.shared)
            .iter()
            .map(|(k, e)| (k.clone(), e.status.clone()))
            .collect()
    }

    /// What backend `key` is checked at now, if it is checked: what the
    /// last [`Self::set`] gave, so a caller can tell what changed since.
    pub(crate) fn target(&self, key: &K) -> Option<&ProbeTarget> {
        self.tasks.get(key).map(|t| &t.target)
    }

    /// The status of one backend, if it is checked.
    pub(crate) fn status(&self, key: &K) -> Option<HealthStatus> {
        lock(&self.shared).get(key).map(|e| e.status.clone())
    }

    /// Whether `event` comes from the task checking its backend now (not
    /// from one replaced or removed while the event waited in the queue).
    pub(crate) fn is_current(&self, event: &HealthEvent<K>) -> bool {
        lock(&self.shared)
            .get(&event.key)
            .is_some_and(|e| e.generation == event.generation)
    }

    /// Every checked backend with the health its check has settled on
    /// (not `Unknown`), so the daemon can put right a model that missed a
    /// transition (a change that failed to apply).
    pub(crate) fn settled(&self) -> Vec<(K, Health)> {
        lock(&self.shared)
            .iter()
            .filter(|(_, e)| e.status.health != Health::Unknown)
            .map(|(k, e)| (k.clone(), e.status.health))
            .collect()
    }
}

/// Sees every probe's result: the backend's key, the result and the
/// check's status after it. Called under the snapshot's lock: keep it short.
pub(crate) type Observer<K> = Arc<dyn Fn(&K, &ProbeResult, &HealthStatus) + Send + Sync>;

#[cfg(test)]
mod tests;
