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
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::{runtime::Handle, sync::mpsc, task::JoinHandle};
use tracing::{debug, error, info, info_span, warn, Instrument};

use super::{
    link::{kernel_egress, EgressLookup},
    machine::{CheckSettings, Health, HealthMachine, Transition},
    probe::{probe, unattached_result, FailureReason, Outcome, ProbeResult, ProbeTarget},
};

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
    /// refusals for capacity as `full` (see [`Outcome::failure_label`]).
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
/// [`FailureReason::InterfaceDown`]), while the interface its route leaves
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

/// What one check task needs.
struct Check<K> {
    observer: Option<Observer<K>>,
    key: K,
    generation: u64,
    target: ProbeTarget,
    settings: CheckSettings,
    shared: Shared<K>,
    unattached: Unattached,
    link: SharedLink,
    egress: EgressLookup,
    jitter: Jitter,
    events: mpsc::Sender<HealthEvent<K>>,
}

impl<K> Check<K>
where
    K: Clone + Send + Sync + Debug + Eq + Hash + 'static,
{
    /// The task's loop: probe, record, publish, sleep; until aborted, until
    /// its snapshot entry belongs to another task, or until nobody listens.
    async fn run(mut self, initial: Health) {
        let mut machine = HealthMachine::new(self.settings, initial);
        let mut local = LocalFailures::default();
        let mut secondary = SecondaryDown::default();
        let mut lookup_warned: Option<Instant> = None;
        // Spread over the wait the machine asks for next, not over
        // `interval`: an unknown backend (one added at run time takes no
        // flows until its checks pass) is probed `fast_interval` apart.
        tokio::time::sleep(start_delay(&self.key, machine.next_check_in())).await;
        loop {
            let unattached = self
                .unattached
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&self.target.address.ip())
                .cloned();
            let down_before = self.own_interface_down(false);
            let result = match unattached_result(&self.target, unattached.as_deref()) {
                Some(failed) => failed,
                None => probe(&self.target, self.settings.timeout).await,
            };
            let failed = matches!(&result.outcome, Outcome::Failure(r) if !r.is_local());
            let blamed = if failed {
                self.interface_to_blame(down_before, &mut lookup_warned)
                    .await
            } else {
                None
            };
            let now = Instant::now();
            let (blamed, warn_discounted) = secondary.bounded(
                blamed,
                self.own_interface().as_deref(),
                now,
                self.secondary_grace(),
            );
            if let Some(interface) = blamed.as_deref().filter(|_| warn_discounted) {
                warn!(
                    %interface,
                    grace_ms = u64::try_from(self.secondary_grace().as_millis()).unwrap_or(u64::MAX),
                    "a failed health check left by an interface without carrier: not counted against the backend for up to fall x interval, counted after that while the interface stays so"
                );
            }
            let result = discounted(result, blamed);
            let transition = machine.record(&result, now);
            let error = match &result.outcome {
                Outcome::Failure(FailureReason::Local(error)) => Some(error.as_str()),
                _ => None,
            };
            match local.on_result(error.is_some(), now) {
                LocalLog::Quiet => {}
                LocalLog::Warn { repeated } => warn!(
                    error = error.unwrap_or_default(),
                    repeated,
                    health = %machine.health(),
                    "health check cannot run on this node (a local error, not the backend's): the backend's health stays as it is until checks run again"
                ),
                LocalLog::Recovered { after } => info!(
                    after_s = after.as_secs(),
                    health = %machine.health(),
                    "health checks run again after a local error"
                ),
            }
            debug!(
                outcome = %result.outcome,
                latency_us = u64::try_from(result.latency.as_micros()).unwrap_or(u64::MAX),
                health = %machine.health(),
                "health check"
            );
            // Room in the channel is taken before the lock, so the event can
            // be sent under it: once `remove` has taken the lock, no event
            // of this task can follow.
            let permit = match transition {
                Some(_) => match self.events.reserve().await {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        debug!("health event receiver gone, check stopped");
                        return;
                    }
                },
                None => None,
            };
            {
                let mut map = lock(&self.shared);
                let Some(entry) = map
                    .get_mut(&self.key)
                    .filter(|e| e.generation == self.generation)
                else {
                    return;
                };
                entry.status.update(&machine, &result);
                // Under the lock, like the status: a check that is gone
                // observes nothing, so what the observer keeps (a
                // histogram) agrees with the status's counters.
                if let Some(observer) = &self.observer {
                    observer(&self.key, &result, &entry.status);
                }
                if let (Some(permit), Some(transition)) = (permit, transition.clone()) {
                    permit.send(HealthEvent {
                        key: self.key.clone(),
                        transition,
                        result: result.clone(),
                        generation: self.generation,
                    });
                }
            }
            if let Some(t) = transition {
                if matches!(t.to, Health::Down | Health::Full) {
                    warn!(from = %t.from, to = %t.to, reason = %t.reason, "backend health changed");
                } else {
                    info!(from = %t.from, to = %t.to, reason = %t.reason, "backend health changed");
                }
            }
            tokio::time::sleep(next_wait(&machine, &mut self.jitter)).await;
        }
    }

    /// The interface a failure just seen is this node's for, if any: the
    /// one the check's route leaves by (toward the backend itself, with
    /// the mark, for a check through its tunnel), asked of the kernel now,
    /// and lbd's own as [`blame`] says. `own_down_before`: lbd's own
    /// interface, when the engine saw it down as the probe began. The
    /// kernel's answer is waited for [`route_lookup_timeout`] at most (a
    /// netlink reply can be lost, e.g. to a full socket buffer when many
    /// checks fail at once): past it, as when the kernel cannot be asked,
    /// the failure counts. That is warned of at most once a
    /// [`LOCAL_WARN_EVERY`] (`warned`: when last) per check.
    async fn interface_to_blame(
        &self,
        own_down_before: Option<String>,
        warned: &mut Option<Instant>,
    ) -> Option<String> {
        let (destination, mark) = match &self.target.through {
            Some(path) => (path.backend, path.mark),
            None => (self.target.address.ip(), 0),
        };
        let limit = route_lookup_timeout(&self.settings);
        let egress = match tokio::time::timeout(limit, (self.egress)(destination, mark)).await {
            Ok(egress) => egress,
            Err(_) => Err(anyhow::anyhow!(
                "no answer from the kernel within {} ms",
                limit.as_millis()
            )),
        };
        if let Err(error) = &egress {
            let now = Instant::now();
            let due = warned.is_none_or(|at| now.saturating_duration_since(at) >= LOCAL_WARN_EVERY);
            if due {
                *warned = Some(now);
                warn!(
                    error = format!("{error:#}"),
                    "cannot tell which interface a failed health check left by: it counts against the backend (told once a minute at most)"
                );
            }
        }
        blame(
            &egress,
            own_down_before.or_else(|| self.own_interface_down(true)),
        )
    }

    /// How long failures through another interface without carrier than
    /// lbd's own are discounted (see [`SecondaryDown`]): `fall` checks'
    /// `interval`, the time the operator gave a backend to prove itself
    /// down, so a carrier flap shorter than that takes none down.
    fn secondary_grace(&self) -> Duration {
        self.settings
            .interval
            .checked_mul(self.settings.fall)
            .unwrap_or(Duration::MAX)
    }

    /// The name of lbd's own interface, as the engine last told it (None
    /// before it did).
    fn own_interface(&self) -> Option<String> {
        match &*self.link.lock().unwrap_or_else(PoisonError::into_inner) {
            Link::Unknown => None,
            Link::Up { interface } | Link::Down { interface } => Some(interface.clone()),
        }
    }

    /// lbd's own interface, while it is down: as the engine last saw it,
    /// or, when `ask` (a check just failed) and the engine saw it up, as
    /// the kernel says now (the engine looks once a second).
    fn own_interface_down(&self, ask: bool) -> Option<String> {
        let link = self
            .link
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match link {
            Link::Unknown => None,
            Link::Down { interface } => Some(interface),
            Link::Up { interface } => {
                (ask && super::link::running(&interface) == Some(false)).then_some(interface)
            }
        }
    }
}

/// The longest wait for the kernel's route of a failed check: the check's
/// own timeout, at most a second (the probe took its own already), so a
/// lookup that never answers cannot stall a check.
fn route_lookup_timeout(settings: &CheckSettings) -> Duration {
    settings.timeout.min(Duration::from_secs(1))
}

/// The interface a failed check is discounted for, from `egress`, the
/// kernel's answer now (the interface the check's route leaves by, None:
/// no route), and `own_down`, lbd's own interface while it is down (now,
/// or when the probe began):
/// - the route leaves by an interface that is down: that one;
/// - it leaves by lbd's own interface, up again: lbd's, if it was down
///   when the probe began (the link came back while the check waited);
/// - the kernel has no route: lbd's, while it is down (taken down, its
///   routes went with it), else none: the backend is unreachable;
/// - the kernel could not be asked: none, the failure counts.
///
/// Another interface being up, lbd's own state says nothing of the check.
fn blame(
    egress: &anyhow::Result<Option<crate::netlink::Egress>>,
    own_down: Option<String>,
) -> Option<String> {
    match egress {
        Ok(Some(egress)) if !egress.up => Some(egress.name.clone()),
        Ok(Some(egress)) => own_down.filter(|own| *own == egress.name),
        Ok(None) => own_down,
        Err(_) => None,
    }
}

/// `result` as it counts while `interface_down` (its name) is down: a
/// failure becomes [`FailureReason::InterfaceDown`], which moves no
/// streak; a success, or a failure already this node's, stays.
fn discounted(result: ProbeResult, interface_down: Option<String>) -> ProbeResult {
    match (result.outcome, interface_down) {
        (Outcome::Failure(failure), Some(interface)) if !failure.is_local() => ProbeResult {
            outcome: Outcome::Failure(FailureReason::InterfaceDown {
                interface,
                failure: Box::new(failure),
            }),
            latency: result.latency,
        },
        (outcome, _) => ProbeResult {
            outcome,
            latency: result.latency,
        },
    }
}

/// How long a task sleeps after a probe: the wait the machine asks for,
/// moved by the jitter, so checks that began together (a restart, a
/// reload, many backends added at once) drift apart rather than probe in
/// lockstep forever.
fn next_wait(machine: &HealthMachine, jitter: &mut Jitter) -> Duration {
    jitter.spread(machine.next_check_in())
}

/// How far the jitter moves a wait, either way, in thousandths of it.
const JITTER_PER_MILLE: u128 = 100;

/// A small pseudo-random source for the jitter (SplitMix64): no
/// cryptographic need, and seeded, so tests can fix it.
#[derive(Debug, Clone)]
struct Jitter {
    state: u64,
}

impl Jitter {
    fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next number of the sequence.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `wait` moved by an amount drawn evenly within ±10 % of it.
    fn spread(&mut self, wait: Duration) -> Duration {
        let nanos = wait.as_nanos();
        let reach = nanos * JITTER_PER_MILLE / 1000;
        if reach == 0 {
            return wait;
        }
        let offset = u128::from(self.next_u64()) % (2 * reach + 1);
        Duration::from_nanos(u64::try_from(nanos - reach + offset).unwrap_or(u64::MAX))
    }
}

/// How often at most a check that keeps failing for a local reason
/// (`FailureReason::Local`: no port, descriptor or buffer on this node)
/// warns: such a failure moves no streak, so the backend's health is
/// frozen meanwhile, and that must not go unseen.
const LOCAL_WARN_EVERY: Duration = Duration::from_secs(60);

/// The log of one check's local failures: a warning at the first, then
/// at most one per [`LOCAL_WARN_EVERY`] while they go on, and a note
/// when checks run again.
#[derive(Debug, Default)]
struct LocalFailures {
    /// When the current run of local failures began.
    since: Option<Instant>,
    /// When it was last warned of.
    warned: Option<Instant>,
    /// Local failures since that warning.
    unwarned: u64,
}

/// What to log for one probe result (see [`LocalFailures::on_result`]).
#[derive(Debug, PartialEq, Eq)]
enum LocalLog {
    /// Nothing.
    Quiet,
    /// A warning: the check could not run (`repeated`: local failures
    /// since the last warning, this one included).
    Warn { repeated: u64 },
    /// Checks run again after local failures that lasted `after`.
    Recovered { after: Duration },
}

impl LocalFailures {
    /// Takes one probe result at `now`, `local` when it failed for a
    /// local reason; says what to log.
    fn on_result(&mut self, local: bool, now: Instant) -> LocalLog {
        if !local {
            return match self.since.take() {
                Some(since) => {
                    *self = Self::default();
                    LocalLog::Recovered {
                        after: now.saturating_duration_since(since),
                    }
                }
                None => LocalLog::Quiet,
            };
        }
        self.since.get_or_insert(now);
        self.unwarned = self.unwarned.saturating_add(1);
        let due = self
            .warned
            .is_none_or(|at| now.saturating_duration_since(at) >= LOCAL_WARN_EVERY);
        if !due {
            return LocalLog::Quiet;
        }
        self.warned = Some(now);
        LocalLog::Warn {
            repeated: std::mem::take(&mut self.unwarned),
        }
    }
}

/// One check's record of another interface than lbd's own that a failure
/// was blamed on (see [`blame`]): since when it has been, so its failures
/// are discounted for a grace only. A carrier flap of a link towards
/// backends takes none of them down; a link that stays without carrier
/// (its routes kept, marked linkdown, so the data plane still sends new
/// flows by it) must not keep its backends up for hours while their
/// flows are black-holed. lbd's own interface needs no bound: while it
/// is down the node serves nothing, and the engine warns of it.
#[derive(Debug, Default)]
struct SecondaryDown {
    /// The interface, and when a failure was first blamed on it.
    since: Option<(String, Instant)>,
}

impl SecondaryDown {
    /// The interface a failure at `now` is discounted for, given the one
    /// [`blame`] found (`blamed`) and lbd's own (`own`): `blamed`, but
    /// for another interface only until `grace` has passed since it was
    /// first blamed (while it stays so); and whether to warn that its
    /// failures are discounted (the first time only).
    fn bounded(
        &mut self,
        blamed: Option<String>,
        own: Option<&str>,
        now: Instant,
        grace: Duration,
    ) -> (Option<String>, bool) {
        let Some(interface) = blamed else {
            self.since = None;
            return (None, false);
        };
        if own == Some(interface.as_str()) {
            self.since = None;
            return (Some(interface), false);
        }
        match &self.since {
            Some((name, since)) if *name == interface => {
                let within = now.saturating_duration_since(*since) < grace;
                (within.then_some(interface), false)
            }
            _ => {
                self.since = Some((interface.clone(), now));
                (Some(interface), true)
            }
        }
    }
}

/// The delay before a task's first probe: a fixed spread over the whole
/// of `interval` (the wait the machine asks for next: short while health
/// is unknown or in doubt) taken from the key's hash, so many backends
/// set up at once are probed evenly over it rather than bunched, and a
/// restart spreads them the same way, yet none waits longer than its
/// checks would.
fn start_delay<K: Hash>(key: &K, interval: Duration) -> Duration {
    let spread = interval.as_nanos();
    if spread == 0 {
        return Duration::ZERO;
    }
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    let nanos = u128::from(hasher.finish()) % spread;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::super::{
        probe::CheckKind,
        testing::{serve, Behavior, TestServer},
    };
    use super::*;

    /// Fast probes; a timeout long enough that a loaded machine does not
    /// turn the test server's answers into timeouts (every probe here is
    /// answered at once).
    fn settings() -> CheckSettings {
        CheckSettings {
            interval: Duration::from_millis(50),
            fast_interval: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
            rise: 2,
            fall: 2,
        }
    }

    fn target(server: &TestServer) -> ProbeTarget {
        ProbeTarget {
            through: None,
            address: server.addr,
            kind: CheckKind::Http {
                path: "/health".into(),
                host: None,
                expect_status: 200,
            },
        }
    }

    async fn next(rx: &mut mpsc::Receiver<HealthEvent<&'static str>>) -> HealthEvent<&'static str> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no health event within 5 s")
            .expect("event channel closed")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn up_down_up_in_order() {
        let server = serve(Behavior::Status).await;
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx);
        checker.set("b1", target(&server), settings(), Health::Unknown);

        let e = next(&mut rx).await;
        assert_eq!(e.key, "b1");
        assert_eq!(
            (e.transition.from, e.transition.to),
            (Health::Unknown, Health::Up)
        );
        assert_eq!(e.result.outcome, Outcome::Success);

        server.set_healthy(false);
        let e = next(&mut rx).await;
        assert_eq!(
            (e.transition.from, e.transition.to),
            (Health::Up, Health::Down)
        );
        assert_eq!(
            e.transition.reason,
            "2 consecutive failures, last: HTTP status 503, expected 200"
        );
        let status = checker.status(&"b1").unwrap();
        assert_eq!(status.health, Health::Down);
        assert!(status.failures >= 2, "{status:?}");
        assert_eq!(
            status.failures_by_reason.get("http_status"),
            Some(&status.failures)
        );
        assert!(status.last_latency().is_some());

        server.set_healthy(true);
        let e = next(&mut rx).await;
        assert_eq!(
            (e.transition.from, e.transition.to),
            (Health::Down, Health::Up)
        );

        let snapshot = checker.snapshot();
        assert_eq!(snapshot.len(), 1);
        let (key, status) = &snapshot[0];
        assert_eq!(*key, "b1");
        assert_eq!(status.health, Health::Up);
        assert!(status.checks >= 6, "{status:?}");
        assert!(status.consecutive_successes >= 2, "{status:?}");
        assert_eq!(status.consecutive_failures, 0);
        assert_eq!(status.target, target(&server));
    }

    /// A check through the tunnel while its path is not attached goes
    /// down with the reason, unsent (the server would have passed it),
    /// and comes back once the path is attached; a
    /// direct check of the same server is not held back meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_through_an_unattached_path_fail_with_the_reason_until_it_is_attached() {
        let server = serve(Behavior::Status).await;
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx);
        let through = ProbeTarget {
            through: Some(crate::health::TunnelPath {
                mark: lb_common::tunnel::HC_MARK_BASE | 1,
                backend: server.addr.ip(),
                source: Some(server.addr.ip()),
            }),
            ..target(&server)
        };
        let reason = "tc_hc_encap not on the egress of eth0".to_owned();
        checker.set_unattached(HashMap::from([(server.addr.ip(), reason)]));
        checker.set("through", through, settings(), Health::Up);
        checker.set("direct", target(&server), settings(), Health::Unknown);

        let mut seen = Vec::new();
        while seen.len() < 2 {
            let e = next(&mut rx).await;
            seen.push((e.key, e.transition.to, e.transition.reason));
        }
        seen.sort_by_key(|e| e.0);
        assert_eq!(seen[0].0, "direct");
        assert_eq!(seen[0].1, Health::Up);
        assert_eq!(
            seen[1],
            (
                "through",
                Health::Down,
                "2 consecutive failures, last: check path not attached: tc_hc_encap not on the egress of eth0".into()
            )
        );
        let status = checker.status(&"through").unwrap();
        assert_eq!(
            status.failures_by_reason.get("path_not_attached"),
            Some(&status.failures)
        );

        checker.set_unattached(HashMap::new());
        let e = next(&mut rx).await;
        assert_eq!((e.key, e.transition.to), ("through", Health::Up));
        assert_eq!(e.result.outcome, Outcome::Success);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remove_stops_the_task() {
        let server = serve(Behavior::Status).await;
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx);
        checker.set("b1", target(&server), settings(), Health::Unknown);
        assert_eq!(next(&mut rx).await.transition.to, Health::Up);

        let seen = server.connections();
        checker.remove(&"b1");
        server.set_healthy(false);
        assert!(checker.snapshot().is_empty());
        // A probe in flight when removed may still reach the server, however
        // late: one at most. A task still running probes every 50 ms.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = server.connections();
        assert!(now <= seen + 1, "probes after remove: {seen} -> {now}");
        assert!(rx.try_recv().is_err(), "event after remove");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_of_a_replaced_task_is_stale_and_health_settles() {
        let server = serve(Behavior::Status).await;
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx);
        checker.set("b1", target(&server), settings(), Health::Unknown);
        let old = next(&mut rx).await;
        assert_eq!(old.transition.to, Health::Up);
        assert!(checker.is_current(&old));
        assert_eq!(checker.settled(), [("b1", Health::Up)]);
        // New settings: a new task, in the state the old one settled on.
        let slower = CheckSettings {
            rise: 3,
            ..settings()
        };
        checker.set("b1", target(&server), slower, Health::Unknown);
        assert!(!checker.is_current(&old), "the old task's event is stale");
        assert_eq!(checker.settled(), [("b1", Health::Up)]);
        server.set_healthy(false);
        let new = next(&mut rx).await;
        assert_eq!(
            (new.transition.from, new.transition.to),
            (Health::Up, Health::Down)
        );
        assert!(checker.is_current(&new));
        checker.remove(&"b1");
        assert!(!checker.is_current(&new));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retain_and_drop_stop_tasks() {
        let kept = serve(Behavior::Status).await;
        let dropped = serve(Behavior::Status).await;
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx);
        checker.set("kept", target(&kept), settings(), Health::Unknown);
        checker.set("dropped", target(&dropped), settings(), Health::Unknown);
        next(&mut rx).await;
        next(&mut rx).await;

        let dropped_seen = dropped.connections();
        checker.retain(|k| *k == "kept");
        let keys: Vec<_> = checker.snapshot().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["kept"]);
        // A probe in flight when stopped may still arrive, however late:
        // one at most. A task still running probes every 50 ms.
        let kept_seen = kept.connections();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let dropped_now = dropped.connections();
        assert!(
            dropped_now <= dropped_seen + 1,
            "probes after retain: {dropped_seen} -> {dropped_now}"
        );
        assert!(kept.connections() > kept_seen, "kept backend not probed");

        let kept_seen = kept.connections();
        drop(checker);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let kept_now = kept.connections();
        assert!(
            kept_now <= kept_seen + 1,
            "probes after drop: {kept_seen} -> {kept_now}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn same_settings_keep_state_new_settings_restart() {
        let server = serve(Behavior::Status).await;
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx);
        checker.set("b1", target(&server), settings(), Health::Unknown);
        assert_eq!(next(&mut rx).await.transition.to, Health::Up);
        let before = checker.status(&"b1").unwrap();
        assert_eq!(before.health, Health::Up);

        // Same target and settings: nothing restarts (a restart would show
        // Unknown with no checks at once, then a second Unknown -> Up).
        checker.set("b1", target(&server), settings(), Health::Unknown);
        let after = checker.status(&"b1").unwrap();
        assert_eq!(after.health, Health::Up);
        assert!(after.checks >= before.checks, "{after:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(rx.try_recv().is_err(), "unexpected event after no-op set");
        let later = checker.status(&"b1").unwrap();
        assert!(later.checks > before.checks, "{later:?}");

        // New settings: a fresh task, counters carried over, in the state
        // the old one settled on (not `initial`); a healthy backend stays Up.
        let changed = CheckSettings {
            interval: Duration::from_millis(60),
            ..settings()
        };
        checker.set("b1", target(&server), changed, Health::Unknown);
        let restarted = checker.status(&"b1").unwrap();
        assert_eq!(restarted.health, Health::Up);
        assert!(restarted.checks >= later.checks, "{restarted:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(rx.try_recv().is_err(), "unexpected event after restart");
        assert!(checker.status(&"b1").unwrap().checks > restarted.checks);

        // A key whose check settled on nothing yet starts from `initial`.
        let silent = serve(Behavior::Silent).await;
        checker.set("b2", target(&silent), settings(), Health::Unknown);
        checker.set("b2", target(&silent), changed, Health::Down);
        assert_eq!(checker.status(&"b2").unwrap().health, Health::Down);
    }

    /// A reload that changes a backend's check settings restarts its
    /// task, but its counters go on: `lbd_health_checks_total` and
    /// `lbd_health_check_failures_total{reason}` keep their series, and a
    /// counter that went down without a restart of lbd would read as a
    /// reset (and the probes it counted as lost).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_check_carries_its_counters_over() {
        let server = serve(Behavior::Status).await;
        server.set_healthy(false);
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx);
        checker.set("b1", target(&server), settings(), Health::Unknown);
        assert_eq!(next(&mut rx).await.transition.to, Health::Down);
        let deadline = Instant::now() + Duration::from_secs(5);
        while checker.status(&"b1").unwrap().checks < 3 {
            assert!(Instant::now() < deadline, "no 3 probes in 5 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = checker.status(&"b1").unwrap();
        assert_eq!(before.failures, before.checks, "{before:?}");
        let changed = CheckSettings {
            interval: Duration::from_millis(60),
            ..settings()
        };
        checker.set("b1", target(&server), changed, Health::Unknown);
        let restarted = checker.status(&"b1").unwrap();
        assert!(restarted.checks >= before.checks, "{restarted:?}");
        assert!(restarted.failures >= before.failures, "{restarted:?}");
        assert_eq!(
            restarted.failures_by_reason, before.failures_by_reason,
            "{restarted:?}"
        );
        // The new task counts on from there.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let later = checker.status(&"b1").unwrap();
        assert!(later.checks > before.checks, "{later:?}");
        assert_eq!(later.failures, later.checks, "{later:?}");
    }

    /// A change of health whose event waits in the channel (the daemon
    /// busy) survives a restart of the check with new settings, both ways:
    /// the new task starts in the state the old one reached, not the
    /// caller's stale `initial`, so the caller finds it in `settled`
    /// although the event is stale.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_keeps_a_change_whose_event_is_still_queued() {
        let fast = CheckSettings {
            rise: 1,
            fall: 1,
            ..settings()
        };
        let restarted = CheckSettings {
            interval: Duration::from_secs(60),
            ..fast
        };
        for (healthy, before, after) in [
            (false, Health::Up, Health::Down),
            (true, Health::Down, Health::Up),
        ] {
            let server = serve(Behavior::Status).await;
            server.set_healthy(healthy);
            let (tx, mut rx) = mpsc::channel(16);
            let mut checker = HealthChecker::new(tx);
            checker.set("b1", target(&server), fast, before);
            let started = Instant::now();
            while checker.status(&"b1").map(|s| s.health) != Some(after) {
                assert!(started.elapsed() < Duration::from_secs(5), "never {after}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // The caller has not read the event: it restarts the check
            // from the health it knows.
            checker.set("b1", target(&server), restarted, before);
            assert_eq!(checker.status(&"b1").unwrap().health, after);
            assert_eq!(checker.settled(), [("b1", after)]);
            let queued = rx.try_recv().expect("the change is queued");
            assert_eq!(
                (queued.transition.from, queued.transition.to),
                (before, after)
            );
            assert!(!checker.is_current(&queued));
        }
    }

    /// A backend that joins with a long `interval` is not kept waiting a
    /// quarter of it for its first probe: while its health is unknown the
    /// machine checks it `fast_interval` apart, and so does the first
    /// probe's spread (a backend added at run time takes no flows until
    /// its checks pass).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_backend_is_first_probed_within_fast_interval() {
        let slow = CheckSettings {
            interval: Duration::from_secs(60),
            rise: 1,
            ..settings()
        };
        // A key that a spread over the whole interval would hold back for
        // seconds.
        let key = ["b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10"]
            .into_iter()
            .find(|k| start_delay(k, slow.interval) >= Duration::from_secs(5))
            .expect("a key with a long spread");
        let server = serve(Behavior::Status).await;
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx);
        checker.set(key, target(&server), slow, Health::Unknown);
        let e = tokio::time::timeout(Duration::from_secs(1), rx.recv())
            .await
            .expect("no health event within 1 s")
            .expect("event channel closed");
        assert_eq!(
            (e.key, e.transition.from, e.transition.to),
            (key, Health::Unknown, Health::Up)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_receiver_stops_tasks() {
        let server = serve(Behavior::Status).await;
        let (tx, rx) = mpsc::channel(16);
        drop(rx);
        let mut checker = HealthChecker::new(tx);
        checker.set("b1", target(&server), settings(), Health::Unknown);
        // Up after `rise` probes; the event cannot be sent, so it stops:
        // two probes (waited for: a loaded machine is slow), and no more.
        let started = Instant::now();
        while server.connections() < 2 {
            assert!(started.elapsed() < Duration::from_secs(5), "no 2 probes");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(server.connections(), 2);
    }

    /// A check that cannot run locally warns at once, then at most once a
    /// minute (counting the failures in between), and says when checks
    /// run again; a later run of failures warns at once again.
    #[test]
    fn local_failures_warn_at_once_then_once_a_minute() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut local = LocalFailures::default();
        assert_eq!(local.on_result(false, at(0)), LocalLog::Quiet);
        assert_eq!(local.on_result(true, at(1)), LocalLog::Warn { repeated: 1 });
        for s in 2..61 {
            assert_eq!(local.on_result(true, at(s)), LocalLog::Quiet, "{s}");
        }
        assert_eq!(
            local.on_result(true, at(61)),
            LocalLog::Warn { repeated: 60 }
        );
        assert_eq!(local.on_result(true, at(62)), LocalLog::Quiet);
        assert_eq!(
            local.on_result(false, at(70)),
            LocalLog::Recovered {
                after: Duration::from_secs(69)
            }
        );
        assert_eq!(local.on_result(false, at(71)), LocalLog::Quiet);
        assert_eq!(
            local.on_result(true, at(72)),
            LocalLog::Warn { repeated: 1 }
        );
    }

    /// The first probes of many backends are spread over the whole
    /// interval, not bunched into a part of it.
    #[test]
    fn start_delay_is_deterministic_and_spread_over_the_interval() {
        let interval = Duration::from_secs(2);
        let delays: Vec<Duration> = (0..1000u32).map(|k| start_delay(&k, interval)).collect();
        for (key, d) in (0..1000u32).zip(&delays) {
            assert!(*d < interval, "{d:?}");
            assert_eq!(*d, start_delay(&key, interval));
        }
        let spread: std::collections::HashSet<_> = delays.iter().collect();
        assert!(spread.len() > 990);
        // Each quarter of the interval has its share.
        for quarter in 0..4u32 {
            let (from, to) = (interval * quarter / 4, interval * (quarter + 1) / 4);
            let n = delays.iter().filter(|d| (from..to).contains(*d)).count();
            assert!(n > 150, "{n} first probes in quarter {quarter}");
        }
        assert_eq!(start_delay(&1u32, Duration::ZERO), Duration::ZERO);
    }

    /// Each wait between checks is moved by up to 10 % either way, by
    /// a seeded source: the same seed gives the same waits.
    #[test]
    fn waits_between_checks_are_jittered_by_ten_percent() {
        let mut machine = HealthMachine::new(
            CheckSettings {
                interval: Duration::from_secs(2),
                ..settings()
            },
            Health::Up,
        );
        assert_eq!(machine.next_check_in(), Duration::from_secs(2));
        let waits = |seed: u64, machine: &HealthMachine| {
            let mut jitter = Jitter::new(seed);
            (0..1000)
                .map(|_| next_wait(machine, &mut jitter))
                .collect::<Vec<_>>()
        };
        let got = waits(7, &machine);
        assert_eq!(got, waits(7, &machine), "not deterministic");
        assert_ne!(got, waits(8, &machine), "the seed changes nothing");
        let (low, high) = (Duration::from_millis(1800), Duration::from_millis(2200));
        assert!(got.iter().all(|w| (low..=high).contains(w)), "{got:?}");
        // Spread over the whole range, both ways.
        assert!(got.iter().any(|w| *w < Duration::from_millis(1820)));
        assert!(got.iter().any(|w| *w > Duration::from_millis(2180)));
        // The fast interval while in doubt is jittered the same way.
        machine.record(
            &ProbeResult {
                outcome: Outcome::Failure(FailureReason::Refused),
                latency: Duration::ZERO,
            },
            Instant::now(),
        );
        let fast = waits(7, &machine);
        assert!(fast
            .iter()
            .all(|w| (Duration::from_millis(18)..=Duration::from_millis(22)).contains(w)));
        assert!(fast.iter().any(|w| *w != Duration::from_millis(20)));
    }

    /// The interface a failed check's route leaves by, as a test says
    /// (None: no route), with the addresses and marks asked about.
    #[derive(Default)]
    struct Routes {
        egress: Mutex<Option<crate::netlink::Egress>>,
        asked: Mutex<Vec<(std::net::IpAddr, u32)>>,
    }

    impl Routes {
        fn leave_by(&self, name: &str, up: bool) {
            *self.egress.lock().unwrap() = Some(crate::netlink::Egress {
                name: name.into(),
                up,
            });
        }

        fn lookup(self: &Arc<Self>) -> EgressLookup {
            let routes = self.clone();
            Arc::new(move |destination, mark| {
                routes.asked.lock().unwrap().push((destination, mark));
                let egress = routes.egress.lock().unwrap().clone();
                Box::pin(async move { Ok(egress) })
            })
        }
    }

    /// Waits for `n` checks of `key`.
    async fn checks(checker: &HealthChecker<&'static str>, key: &'static str, n: u64) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while checker.status(&key).map_or(0, |s| s.checks) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("checks within 5 s");
    }

    /// lbd's own interface (eth0) is down, but the backend's route leaves
    /// by eth1, which is up: its failures are its own and take it down.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_over_another_interface_count_while_lbds_own_is_down() {
        let server = serve(Behavior::Status).await;
        server.set_healthy(false);
        let routes = Arc::new(Routes::default());
        routes.leave_by("eth1", true);
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx)
            .with_jitter_seed(1)
            .with_egress(routes.lookup());
        checker.set_link(Link::Down {
            interface: "eth0".into(),
        });
        checker.set("b1", target(&server), settings(), Health::Up);
        let e = next(&mut rx).await;
        assert_eq!(
            (e.transition.from, e.transition.to),
            (Health::Up, Health::Down)
        );
        assert_eq!(
            e.transition.reason,
            "2 consecutive failures, last: HTTP status 503, expected 200"
        );
        assert_eq!(routes.asked.lock().unwrap()[0], (server.addr.ip(), 0));
    }

    /// lbd's own interface is up, but the backend's route leaves by eth1,
    /// which is down: the failures are this node's and move no streak
    /// (within the grace, `fall` × `interval`, 5 s here).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_over_another_interface_that_is_down_move_no_streak() {
        let server = serve(Behavior::Status).await;
        server.set_healthy(false);
        let routes = Arc::new(Routes::default());
        routes.leave_by("eth1", false);
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx)
            .with_jitter_seed(1)
            .with_egress(routes.lookup());
        checker.set_link(Link::Up {
            interface: "lo".into(),
        });
        let patient = CheckSettings {
            fall: 100,
            ..settings()
        };
        checker.set("b1", target(&server), patient, Health::Up);
        checks(&checker, "b1", 6).await;
        assert!(rx.try_recv().is_err(), "a health change while eth1 is down");
        let status = checker.status(&"b1").unwrap();
        assert_eq!(status.health, Health::Up);
        assert_eq!(
            status.last_result.unwrap().outcome.to_string(),
            "not counted, interface eth1 is down: HTTP status 503, expected 200"
        );
    }

    /// eth1, behind which the backend is, stays without carrier: its
    /// failures are not counted for a grace (`fall` × `interval`, 100 ms
    /// here), then they are, and the backend goes down: a link that does
    /// not come back must not keep it up (its new flows black-holed).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_over_another_interface_without_carrier_count_after_a_grace() {
        let server = serve(Behavior::Status).await;
        server.set_healthy(false);
        let routes = Arc::new(Routes::default());
        routes.leave_by("eth1", false);
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx)
            .with_jitter_seed(1)
            .with_egress(routes.lookup());
        checker.set_link(Link::Up {
            interface: "lo".into(),
        });
        checker.set("b1", target(&server), settings(), Health::Up);
        let e = next(&mut rx).await;
        assert_eq!(
            (e.transition.from, e.transition.to),
            (Health::Up, Health::Down)
        );
        let status = checker.status(&"b1").unwrap();
        assert!(
            status.failures_by_reason.contains_key("interface_down"),
            "discounted within the grace: {status:?}"
        );
    }

    /// A route lookup that never answers (a netlink reply lost) does not
    /// stall the check: it is given up after the check's timeout (at most
    /// 1 s), the failure counts, and the backend goes down.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_route_lookup_that_never_answers_does_not_stall_the_check() {
        let server = serve(Behavior::Status).await;
        server.set_healthy(false);
        let never: EgressLookup = Arc::new(|_, _| Box::pin(std::future::pending()));
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx)
            .with_jitter_seed(1)
            .with_egress(never);
        checker.set("b1", target(&server), settings(), Health::Up);
        let e = next(&mut rx).await;
        assert_eq!(
            (e.transition.from, e.transition.to),
            (Health::Up, Health::Down)
        );
    }

    /// Within the grace a failure over another interface without carrier
    /// is discounted and warned of once; after it, it counts; lbd's own
    /// interface is discounted for as long as it is down; an interface
    /// that works again starts the next grace afresh.
    #[test]
    fn another_interface_without_carrier_is_discounted_for_a_grace_and_warned_of_once() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let grace = Duration::from_millis(100);
        let eth1 = || Some("eth1".to_owned());
        let mut down = SecondaryDown::default();
        assert_eq!(
            down.bounded(eth1(), Some("eth0"), at(0), grace),
            (eth1(), true)
        );
        assert_eq!(
            down.bounded(eth1(), Some("eth0"), at(99), grace),
            (eth1(), false)
        );
        assert_eq!(
            down.bounded(eth1(), Some("eth0"), at(100), grace),
            (None, false)
        );
        assert_eq!(
            down.bounded(eth1(), Some("eth0"), at(5000), grace),
            (None, false)
        );
        // lbd's own: no bound, nothing to warn of (the engine does).
        let eth0 = || Some("eth0".to_owned());
        assert_eq!(
            down.bounded(eth0(), Some("eth0"), at(9000), grace),
            (eth0(), false)
        );
        // eth1 works again (a failure not blamed on it, or a success).
        assert_eq!(
            down.bounded(None, Some("eth0"), at(9100), grace),
            (None, false)
        );
        assert_eq!(
            down.bounded(eth1(), Some("eth0"), at(9200), grace),
            (eth1(), true)
        );
    }

    #[test]
    fn the_interface_blamed_is_the_one_the_route_leaves_by() {
        let by = |name: &str, up: bool| -> anyhow::Result<Option<crate::netlink::Egress>> {
            Ok(Some(crate::netlink::Egress {
                name: name.into(),
                up,
            }))
        };
        let eth0 = || Some("eth0".to_owned());
        assert_eq!(blame(&by("eth1", false), None), Some("eth1".into()));
        assert_eq!(blame(&by("eth1", true), eth0()), None);
        assert_eq!(blame(&by("eth1", true), None), None);
        // lbd's link came back while the check waited.
        assert_eq!(blame(&by("eth0", true), eth0()), eth0());
        // Its routes went with lbd's link, taken down.
        assert_eq!(blame(&Ok(None), eth0()), eth0());
        assert_eq!(blame(&Ok(None), None), None);
        // The kernel could not be asked: the failure counts.
        assert_eq!(blame(&Err(anyhow::anyhow!("no socket")), eth0()), None);
    }

    /// While the interface checks leave by is down, failed checks count
    /// against no backend: a healthy-looking backend that fails them all
    /// stays up; once the link is back, its failures count again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_while_the_interface_is_down_move_no_streak() {
        let server = serve(Behavior::Status).await;
        server.set_healthy(false);
        let routes = Arc::new(Routes::default());
        routes.leave_by("eth0", false);
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx)
            .with_jitter_seed(1)
            .with_egress(routes.lookup());
        checker.set_link(Link::Down {
            interface: "eth0".into(),
        });
        checker.set("b1", target(&server), settings(), Health::Up);
        let started = Instant::now();
        while checker.status(&"b1").map_or(0, |s| s.checks) < 6 {
            assert!(started.elapsed() < Duration::from_secs(5), "no 6 checks");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            rx.try_recv().is_err(),
            "a health change while the link is down"
        );
        let status = checker.status(&"b1").unwrap();
        assert_eq!(status.health, Health::Up);
        assert_eq!(status.consecutive_failures, 0);
        assert_eq!(
            status.failures_by_reason.get("interface_down"),
            Some(&status.failures),
            "{status:?}"
        );
        assert_eq!(
            status.last_result.unwrap().outcome.to_string(),
            "not counted, interface eth0 is down: HTTP status 503, expected 200"
        );

        routes.leave_by("eth0", true);
        checker.set_link(Link::Up {
            interface: "eth0".into(),
        });
        let e = next(&mut rx).await;
        assert_eq!(
            (e.transition.from, e.transition.to),
            (Health::Up, Health::Down)
        );
        assert_eq!(
            e.transition.reason,
            "2 consecutive failures, last: HTTP status 503, expected 200"
        );
    }

    #[test]
    fn a_success_or_a_local_failure_is_not_discounted() {
        let ok = ProbeResult {
            outcome: Outcome::Success,
            latency: Duration::ZERO,
        };
        assert_eq!(discounted(ok.clone(), Some("eth0".into())), ok);
        let local = ProbeResult {
            outcome: Outcome::Failure(FailureReason::Local("no port".into())),
            latency: Duration::ZERO,
        };
        assert_eq!(discounted(local.clone(), Some("eth0".into())), local);
        let refused = ProbeResult {
            outcome: Outcome::Failure(FailureReason::Refused),
            latency: Duration::ZERO,
        };
        assert_eq!(discounted(refused.clone(), None), refused);
    }

    #[test]
    fn set_outside_a_runtime_does_not_panic() {
        let (tx, _rx) = mpsc::channel::<HealthEvent<u32>>(1);
        let mut checker = HealthChecker::new(tx);
        let target = ProbeTarget {
            through: None,
            address: "127.0.0.1:1".parse().unwrap(),
            kind: CheckKind::Tcp,
        };
        checker.set(1, target, settings(), Health::Unknown);
        assert!(checker.snapshot().is_empty());
    }
}
