//! One backend's check task: probe, feed the machine, update the shared
//! status, send an event on each change of health, and sleep.

use std::{
    fmt::Debug,
    hash::Hash,
    sync::PoisonError,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::super::{
    link::EgressLookup,
    machine::{CheckSettings, Health, HealthMachine},
    probe::{probe, unattached_result, FailureReason, Outcome, ProbeTarget},
};

use super::{
    blame::{blame, discounted, route_lookup_timeout, SecondaryDown},
    local_failures::{LocalFailures, LocalLog, LOCAL_WARN_EVERY},
    lock,
    pacing::{next_wait, start_delay, Jitter},
    HealthEvent, Link, Observer, Shared, SharedLink, Unattached,
};

/// What one check task needs.
pub(super) struct Check<K> {
    pub(super) observer: Option<Observer<K>>,
    pub(super) key: K,
    pub(super) generation: u64,
    pub(super) target: ProbeTarget,
    pub(super) settings: CheckSettings,
    pub(super) shared: Shared<K>,
    pub(super) unattached: Unattached,
    pub(super) link: SharedLink,
    pub(super) egress: EgressLookup,
    pub(super) jitter: Jitter,
    pub(super) events: mpsc::Sender<HealthEvent<K>>,
}

impl<K> Check<K>
where
    K: Clone + Send + Sync + Debug + Eq + Hash + 'static,
{
    /// The task's loop: probe, record, publish, sleep; until aborted, until
    /// its snapshot entry belongs to another task, or until nobody listens.
    pub(super) async fn run(mut self, initial: Health) {
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
                (ask && super::super::link::running(&interface) == Some(false)).then_some(interface)
            }
        }
    }
}
