//! Health checks: which backends are checked and how (directly or
//! through their tunnel), what a transition changes, and drains that
//! ran out of time.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use tracing::{debug, info, warn};

use super::{BackendKey, Engine};
use crate::{
    config::{CheckType, HealthConfig},
    health::{CheckKind, CheckSettings, Health, HealthEvent, ProbeTarget, TunnelPath},
    model::Model,
    reconcile::VipId,
};

/// A backend's health changes since lbd started (or since its check
/// was set up): how many, and when the last was, for the status's
/// `transitions`, `last_change_s` and `last_change_unix_s`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct HealthChanges {
    /// Changes seen.
    pub(super) count: u64,
    /// When the last one was seen (None: none yet), on the monotonic
    /// clock: its age.
    pub(super) last: Option<Instant>,
    /// The wall clock read at the last one: its timestamp, kept as read
    /// rather than worked out later from its age (which would move with
    /// every rounding and every step of the wall clock since).
    last_wall: Option<SystemTime>,
}

impl HealthChanges {
    /// Counts a change seen at `now`, the wall clock reading `wall`.
    pub(super) fn record(&mut self, now: Instant, wall: SystemTime) {
        self.count = self.count.saturating_add(1);
        self.last = Some(now);
        self.last_wall = Some(wall);
    }

    /// When the last change was, Unix time in whole seconds (None: none
    /// yet, or a wall clock before 1970 then).
    pub(super) fn last_unix_s(&self) -> Option<u64> {
        self.last_wall
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map(|since| since.as_secs())
    }

    /// How long before `now` the last change was (None: none yet).
    pub(super) fn since(&self, now: Instant) -> Option<std::time::Duration> {
        self.last.map(|at| now.saturating_duration_since(at))
    }
}

impl Engine {
    /// Starts, replaces or stops health-check tasks to match the model,
    /// and keeps the path of checks through a tunnel while some use it.
    pub(super) fn sync_checks(&mut self) {
        let mut wanted = Vec::new();
        for (id, vip) in &self.model.vips {
            for (address, backend) in &vip.backends {
                let health = backend.config.health.as_ref().unwrap_or(&vip.config.health);
                // A NAT backend listens on its own port, if it has one.
                let port = backend.config.port.unwrap_or(id.port);
                let through = if health.through_tunnel && vip.config.forwarding.is_tunnel() {
                    let Some(path) = self.tunnel_path(id, *address) else {
                        continue; // not in the maps: nothing to check through
                    };
                    let before = self.checker.target(&(*id, *address));
                    if warn_no_own_address(id.address, &path, before) {
                        warn!(vip = %id, backend = %address, "no address of the VIP's family on the interface to check the 4in6 backend through its tunnel from: its checks fail");
                    }
                    Some((id.address, path))
                } else {
                    None
                };
                if let Some((target, settings)) = check_of(*address, port, health, through) {
                    wanted.push(((*id, *address), target, settings, backend.health));
                }
            }
        }
        // The path is in place (or its checks are failed with the
        // reason, never sent unwrapped) before any of them starts.
        let through: Vec<_> = wanted
            .iter()
            .filter_map(|w| w.1.through.map(|path| (w.1.address.ip(), path)))
            .collect();
        self.sync_hc_path(through);
        let keys: std::collections::HashSet<BackendKey> = wanted.iter().map(|w| w.0).collect();
        self.checker.retain(|k| keys.contains(k));
        self.transitions.retain(|k, _| keys.contains(k));
        self.metrics
            .retain_checks(|vip, backend| keys.contains(&(*vip, backend)));
        for (key, target, settings, health) in wanted {
            self.checker.set(key, target, settings, health);
        }
    }

    /// How a check of backend `address` of VIP `id` goes through its
    /// tunnel: marked with the backend's data-plane id; from the
    /// interface's address of the VIP's family when the backend's is
    /// another (4in6), else from the kernel's source toward the backend.
    fn tunnel_path(&self, id: &VipId, address: IpAddr) -> Option<crate::health::TunnelPath> {
        let backend = self.balancer.vips().get(id)?.backends.get(&address)?;
        let source = if address.is_ipv4() == id.address.is_ipv4() {
            None
        } else {
            self.tunnel.own.of_family(id.address.is_ipv6())
        };
        Some(crate::health::TunnelPath {
            mark: lb_common::tunnel::HC_MARK_BASE | backend.id,
            backend: address,
            source,
        })
    }

    /// Records a health transition and applies what it changes. One from
    /// a check task since replaced (a reload changed its check) is stale:
    /// instead, the backend takes the health its new check has settled on.
    /// That new check started from the old one's state, the transition
    /// included (see `HealthChecker::set`), while the model, which had not
    /// seen it yet, still has the health before it; dropped, the change
    /// would wait for the next housekeeping tick.
    pub(crate) fn on_health(&mut self, event: HealthEvent<BackendKey>) {
        if !self.checker.is_current(&event) {
            if self.put_health_right(settled_of(&self.checker, event.key)) {
                self.transitions
                    .entry(event.key)
                    .or_default()
                    .record(Instant::now(), SystemTime::now());
            }
            return;
        }
        let (vip, address) = event.key;
        let transition = &event.transition;
        if already_applied(&self.model, event.key, transition.to) {
            // The housekeeping tick put it right first, and told it.
            self.transitions
                .entry((vip, address))
                .or_default()
                .record(Instant::now(), SystemTime::now());
            debug!(%vip, backend = %address, to = %transition.to, "backend health change already applied");
            return;
        }
        let Some((next, all_down)) = health_event_applied(&self.model, event.key, transition.to)
        else {
            return; // removed meanwhile
        };
        self.transitions
            .entry((vip, address))
            .or_default()
            .record(Instant::now(), SystemTime::now());
        info!(%vip, backend = %address, from = %transition.from, to = %transition.to, reason = %transition.reason, "backend health changed");
        match self.commit(next) {
            Ok(_) => log_all_down_changes(&all_down),
            Err(error) => {
                warn!(%vip, backend = %address, %error, "applying a health change failed")
            }
        }
    }

    /// Puts right a backend whose health in the model is not the one its
    /// check has settled on: a transition whose change failed to apply
    /// (the check will not send it again) is applied on a later tick.
    pub(crate) fn reconcile_health(&mut self) {
        self.put_health_right(self.checker.settled());
    }

    /// Gives the backends of `settled` (with the health their checks
    /// settled on) that health where the model has another; true if it
    /// changed any and the change was applied.
    fn put_health_right(
        &mut self,
        settled: impl IntoIterator<Item = (BackendKey, Health)>,
    ) -> bool {
        let Some(put_right) = health_put_right(&self.model, settled) else {
            return false;
        };
        for ((vip, address), health) in &put_right.changed {
            info!(%vip, backend = %address, %health, "backend health put right from its check");
        }
        match self.commit(put_right.next) {
            Ok(_) => {
                log_all_down_changes(&put_right.all_down);
                true
            }
            Err(error) => {
                warn!(%error, "putting backends' health right failed; tried again on the next tick");
                false
            }
        }
    }

    /// Ends drains whose deadline passed: the backend goes to
    /// maintenance, and its remaining flows are cut (a NAT VIP's stay on
    /// it until they end). Starts the grace of new fail-open holds and
    /// ends those whose grace passed (see [`crate::model::FailOpenHold`]).
    /// Moves slow starts on a step (see [`crate::model::SlowStart`]).
    pub(crate) fn run_timers(&mut self, now: Instant) {
        let mut next = self.model.clone();
        let expired = next.expire_drains(now);
        let holds_ended = next.time_fail_open_holds(now);
        let ramps_ended = next.advance_slow_starts(now);
        if next == self.model {
            return;
        }
        for (vip, backend) in &ramps_ended {
            info!(%vip, %backend, "slow start over: the backend takes its full weight");
        }
        for (vip, backend) in &expired {
            let mode = next.vip(vip).map(|v| v.config.forwarding).ok();
            info!(%vip, %backend, "{}", drain_timeout_outcome(mode));
        }
        for (vip, backend) in &holds_ended {
            info!(%vip, %backend, "fail-open grace over: the backend still fails its checks, its established flows move to the healthy backends");
        }
        if let Err(error) = self.commit(next) {
            warn!(%error, "ending expired drains or fail-open holds, or moving slow starts on, failed");
        }
    }
}

/// Whether to warn that the check of a 4in6 backend through its tunnel
/// `path`, for VIP address `vip`, has no address of the VIP's family to
/// come from (its checks fail). Once while that holds: `sync_checks` runs
/// on every commit, each health event included, so a flapping backend
/// would repeat it. `before`, the target its check has had until now,
/// lacked that address too if it was warned of already (the backend's
/// family, and so the need, does not change for the same key).
fn warn_no_own_address(vip: IpAddr, path: &TunnelPath, before: Option<&ProbeTarget>) -> bool {
    let lacks = |p: &TunnelPath| p.source.is_none() && p.backend.is_ipv4() != vip.is_ipv4();
    lacks(path) && !before.and_then(|t| t.through.as_ref()).is_some_and(lacks)
}

/// Backend `key` with the health its check has settled on; nothing if it
/// has settled on none (or is not checked).
fn settled_of(
    checker: &crate::health::HealthChecker<BackendKey>,
    key: BackendKey,
) -> Vec<(BackendKey, Health)> {
    checker
        .status(&key)
        .map(|s| s.health)
        .filter(|h| *h != Health::Unknown)
        .map(|h| (key, h))
        .into_iter()
        .collect()
}

/// A VIP's every backend meant to take flows going down, or one coming
/// back (see [`crate::model::VipModel::all_down`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum AllDownChange {
    /// No healthy backend left; the VIP's `on_all_down` policy applies.
    Lost {
        /// The policy, as the config spells it.
        on_all_down: String,
    },
    /// A backend is healthy again.
    Recovered,
}

/// How the VIPs of `vips` went from `before` to `after` as to having no
/// healthy backend left. Every path that changes backends' health (a
/// check's event, the housekeeping tick putting health right, whichever
/// runs first) goes through it, so each change is told once: compared in
/// only one of them, a change the other applied first was never told.
fn all_down_changes(
    before: &Model,
    after: &Model,
    vips: impl IntoIterator<Item = VipId>,
) -> Vec<(VipId, AllDownChange)> {
    let mut vips: Vec<VipId> = vips.into_iter().collect();
    vips.sort();
    vips.dedup();
    vips.into_iter()
        .filter_map(|vip| {
            let now = after.vip(&vip).ok()?;
            let was_all_down = before.vip(&vip).is_ok_and(|v| v.all_down());
            let change = match (was_all_down, now.all_down()) {
                (false, true) => AllDownChange::Lost {
                    on_all_down: now.config.on_all_down.to_string(),
                },
                (true, false) => AllDownChange::Recovered,
                _ => return None,
            };
            Some((vip, change))
        })
        .collect()
}

/// Logs what [`all_down_changes`] found (once the change is applied).
fn log_all_down_changes(changes: &[(VipId, AllDownChange)]) {
    for (vip, change) in changes {
        match change {
            AllDownChange::Lost { on_all_down } => {
                warn!(%vip, %on_all_down, "no healthy backend left")
            }
            AllDownChange::Recovered => info!(%vip, "a backend is healthy again"),
        }
    }
}

/// `model` with backend `key` given health `to` by its check's event,
/// and what that does to its VIP having no healthy backend left; None
/// if the backend is gone.
fn health_event_applied(
    model: &Model,
    key: BackendKey,
    to: Health,
) -> Option<(Model, Vec<(VipId, AllDownChange)>)> {
    let (vip, address) = key;
    let mut next = model.clone();
    if !next.set_health(&vip, address, to) {
        return None;
    }
    let all_down = all_down_changes(model, &next, [vip]);
    Some((next, all_down))
}

/// Whether backend `key` of `model` has health `to` already: a check's
/// event that the housekeeping tick applied (and logged) before it came.
fn already_applied(model: &Model, key: BackendKey, to: Health) -> bool {
    model.backend(&key.0, key.1).is_ok_and(|b| b.health == to)
}

/// Backends' health put right from what their checks settled on.
struct PutRight {
    /// The model after it.
    next: Model,
    /// The backends it changed, and their health now.
    changed: Vec<(BackendKey, Health)>,
    /// What it does to their VIPs having no healthy backend left.
    all_down: Vec<(VipId, AllDownChange)>,
}

/// `model` with every backend of `settled` that it has given the health
/// its check settled on where it had another, and those backends; None
/// if none differs.
fn health_put_right(
    model: &Model,
    settled: impl IntoIterator<Item = (BackendKey, Health)>,
) -> Option<PutRight> {
    let mut next = model.clone();
    let mut changed = Vec::new();
    for ((vip, address), health) in settled {
        let Ok(backend) = next.backend(&vip, address) else {
            continue;
        };
        if backend.health != health && next.set_health(&vip, address, health) {
            changed.push(((vip, address), health));
        }
    }
    if changed.is_empty() {
        return None;
    }
    let all_down = all_down_changes(model, &next, changed.iter().map(|((vip, _), _)| *vip));
    Some(PutRight {
        next,
        changed,
        all_down,
    })
}

/// What a drain's timeout did to a backend of a VIP in `mode`, for the
/// log: a translation cannot move, so a NAT VIP's connections stay.
fn drain_timeout_outcome(mode: Option<lb_common::Mode>) -> &'static str {
    if mode == Some(lb_common::Mode::Nat) {
        "drain timeout: backend in maintenance (no new flows); its NAT'd connections stay on it until they end or it is removed"
    } else {
        "drain timeout: remaining flows cut, backend in maintenance"
    }
}

/// The probe target and settings of a backend's checks (None: unchecked);
/// `through` (the VIP's address and the tunnel) sends them to the VIP
/// through the backend's tunnel instead of to the backend's address.
pub(crate) fn check_of(
    address: IpAddr,
    vip_port: u16,
    health: &HealthConfig,
    through: Option<(IpAddr, crate::health::TunnelPath)>,
) -> Option<(ProbeTarget, CheckSettings)> {
    let kind = match health.check {
        CheckType::None => return None,
        CheckType::Tcp => CheckKind::Tcp,
        CheckType::Http => CheckKind::Http {
            path: health.path.clone(),
            host: health.host.clone(),
            expect_status: health.expect_status,
            expect_body: health.expect_body.clone(),
        },
        CheckType::Pgsql => match &health.user {
            Some(user) => CheckKind::Pgsql {
                user: user.clone(),
                database: health.database.clone(),
            },
            // The config refuses a pgsql check without a user: not
            // checked rather than with a guessed role.
            None => {
                tracing::error!(%address, "pgsql health check without a user: not checked");
                return None;
            }
        },
    };
    // Only TCP and HTTP checks speak TLS (a backend's pgsql check may
    // inherit its VIP's `tls`, unused).
    let tls = health.tls && matches!(kind, CheckKind::Tcp | CheckKind::Http { .. });
    let port = health.port.unwrap_or(vip_port);
    let target = match through {
        None => ProbeTarget {
            tls,
            address: SocketAddr::new(address, port),
            kind,
            through: None,
        },
        Some((vip, path)) => ProbeTarget {
            tls,
            address: SocketAddr::new(vip, port),
            kind,
            through: Some(path),
        },
    };
    let settings = CheckSettings {
        interval: health.interval,
        fast_interval: health.fast_interval,
        timeout: health.timeout,
        rise: health.rise,
        fall: health.fall,
    };
    Some((target, settings))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;

    /// The status's `last_change_s`: none before a first change, then
    /// the time since the last one, each change counted.
    #[test]
    fn health_changes_say_when_the_last_was() {
        let start = Instant::now();
        let mut changes = HealthChanges::default();
        assert_eq!(changes.since(start), None);
        changes.record(start, std::time::SystemTime::now());
        changes.record(
            start + Duration::from_secs(10),
            std::time::SystemTime::now(),
        );
        assert_eq!(changes.count, 2);
        assert_eq!(
            changes.since(start + Duration::from_secs(52)),
            Some(Duration::from_secs(42))
        );
        // A clock read before the change (no panic, no wrap): 0.
        assert_eq!(changes.since(start), Some(Duration::ZERO));
    }

    /// The metrics' `lbd_backend_health_last_change_timestamp_seconds`:
    /// the wall clock read at the change itself, kept as it was however
    /// late the status is made (never now minus an age, which drifts by
    /// the rounding of that age), none before a first change.
    #[test]
    fn health_changes_keep_the_wall_clock_time_of_the_last() {
        let start = Instant::now();
        let mut changes = HealthChanges::default();
        assert_eq!(changes.last_unix_s(), None);
        let wall = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_900);
        changes.record(start, wall - Duration::from_secs(60));
        changes.record(start + Duration::from_secs(60), wall);
        assert_eq!(changes.count, 2);
        assert_eq!(changes.last_unix_s(), Some(1_700_000_000));
        // A wall clock set before 1970 (no panic): none rather than 0.
        let mut odd = HealthChanges::default();
        odd.record(start, std::time::UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(odd.last_unix_s(), None);
    }
    use crate::{
        config::Config,
        health::{
            testing::{serve, Behavior},
            HealthChecker,
        },
    };

    /// A backend goes Down while the engine is busy (its event queued),
    /// then a reload changes its check's interval: the check restarts, and
    /// the engine, meeting the queued event (now stale), must end with the
    /// backend Down, not Up as the model had it before the event.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_health_change_queued_across_a_check_restart_is_not_lost() {
        let config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n[[vip.backend]]\naddress = \"198.19.2.11\"\n",
            "lbd.toml",
        )
        .unwrap();
        let mut model = Model::from_config(&config);
        let vip = *model.vips.keys().next().unwrap();
        let address: IpAddr = "198.19.2.11".parse().unwrap();
        let key = (vip, address);
        assert!(model.set_health(&vip, address, Health::Up));

        let server = serve(Behavior::Status).await;
        server.set_healthy(false);
        let (tx, mut rx) = mpsc::channel(16);
        let mut checker = HealthChecker::new(tx);
        let target = ProbeTarget {
            tls: false,
            through: None,
            address: server.addr,
            kind: CheckKind::Http {
                path: "/health".into(),
                host: None,
                expect_status: 200,
                expect_body: None,
            },
        };
        let settings = CheckSettings {
            interval: Duration::from_millis(50),
            fast_interval: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
            rise: 1,
            fall: 1,
        };
        // As `sync_checks` does: the initial health is the model's.
        let initial = model.backend(&vip, address).unwrap().health;
        checker.set(key, target.clone(), settings, initial);
        let started = std::time::Instant::now();
        while checker.status(&key).map(|s| s.health) != Some(Health::Down) {
            assert!(started.elapsed() < Duration::from_secs(5), "never Down");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // The reload: a new interval restarts the check, from the model's
        // health, which has not seen the Down yet.
        let reloaded = CheckSettings {
            interval: Duration::from_secs(60),
            ..settings
        };
        let initial = model.backend(&vip, address).unwrap().health;
        assert_eq!(initial, Health::Up);
        checker.set(key, target, reloaded, initial);
        assert_eq!(checker.status(&key).unwrap().health, Health::Down);

        // The engine meets the queued event: stale, so what `on_health`
        // applies is the new check's settled health.
        let event = rx.try_recv().expect("the Down event is queued");
        assert_eq!(event.transition.to, Health::Down);
        assert!(!checker.is_current(&event));
        let settled = settled_of(&checker, event.key);
        let put_right = health_put_right(&model, settled).expect("the model changes");
        assert_eq!(put_right.changed, [(key, Health::Down)]);
        assert_eq!(
            put_right.next.backend(&vip, address).unwrap().health,
            Health::Down
        );
    }

    /// A VIP of one checked backend, Up, and the backend's key.
    fn one_up_backend() -> (Model, BackendKey) {
        let config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n[vip.health]\ncheck = \"tcp\"\n[[vip.backend]]\naddress = \"198.19.2.11\"\n",
            "lbd.toml",
        )
        .unwrap();
        let mut model = Model::from_config(&config);
        let vip = *model.vips.keys().next().unwrap();
        let address: IpAddr = "198.19.2.11".parse().unwrap();
        assert!(model.set_health(&vip, address, Health::Up));
        (model, (vip, address))
    }

    /// The last backend goes down. Its check task records the Down and
    /// queues its event; lbd's loop may run the housekeeping tick's
    /// `reconcile_health` first, which applies the Down, and the event
    /// after it finds the model already all down. In either order the
    /// "no healthy backend left" warning is told once, as is the
    /// recovery.
    #[test]
    fn no_healthy_backend_left_is_told_once_whichever_path_applies_it_first() {
        let (model, key) = one_up_backend();
        let lost = AllDownChange::Lost {
            on_all_down: model.vip(&key.0).unwrap().config.on_all_down.to_string(),
        };
        // Housekeeping first, then the event.
        let put_right = health_put_right(&model, [(key, Health::Down)]).expect("a change");
        let (after_event, from_event) =
            health_event_applied(&put_right.next, key, Health::Down).expect("a backend");
        let told: Vec<_> = put_right.all_down.iter().chain(&from_event).collect();
        assert_eq!(told, [&(key.0, lost.clone())]);
        assert!(health_put_right(&after_event, [(key, Health::Down)]).is_none());
        // The event first, then housekeeping (nothing left to put right).
        let (after_event, from_event) =
            health_event_applied(&model, key, Health::Down).expect("a backend");
        assert_eq!(from_event, [(key.0, lost)]);
        assert!(health_put_right(&after_event, [(key, Health::Down)]).is_none());
        // Back up through the housekeeping path: the recovery is told.
        let put_right = health_put_right(&after_event, [(key, Health::Up)]).expect("a change");
        let (_, from_event) =
            health_event_applied(&put_right.next, key, Health::Up).expect("a backend");
        assert_eq!(put_right.all_down, [(key.0, AllDownChange::Recovered)]);
        assert!(from_event.is_empty());
    }

    /// A check's event that the housekeeping tick applied first (the
    /// model has its health already) is not applied, nor logged, again.
    #[test]
    fn an_event_the_housekeeping_tick_applied_first_is_not_told_again() {
        let (model, key) = one_up_backend();
        assert!(!already_applied(&model, key, Health::Down));
        let put_right = health_put_right(&model, [(key, Health::Down)]).expect("a change");
        assert!(already_applied(&put_right.next, key, Health::Down));
        let gone = (key.0, "198.19.2.99".parse().unwrap());
        assert!(!already_applied(&model, gone, Health::Up));
    }

    /// The 4in6 "no own address" warning is told once while it holds
    /// (`sync_checks` runs on every commit, each health event included),
    /// and again when it comes back after the address appeared.
    #[test]
    fn no_own_address_for_a_4in6_check_is_warned_once_while_it_holds() {
        let vip: IpAddr = "2001:db8::100".parse().unwrap();
        let backend: IpAddr = "198.19.2.11".parse().unwrap();
        let path = |source: Option<IpAddr>| TunnelPath {
            mark: 7,
            backend,
            source,
        };
        let target = |path: TunnelPath| ProbeTarget {
            tls: false,
            address: SocketAddr::new(vip, 80),
            kind: CheckKind::Tcp,
            through: Some(path),
        };
        let lacking = path(None);
        let own = path(Some("198.18.0.1".parse().unwrap()));
        // First seen, then the next commits: one warning.
        assert!(warn_no_own_address(vip, &lacking, None));
        let checked = target(lacking);
        assert!(!warn_no_own_address(vip, &lacking, Some(&checked)));
        assert!(!warn_no_own_address(vip, &lacking, Some(&checked)));
        // The address appears: nothing to warn of; it goes again: warned.
        assert!(!warn_no_own_address(vip, &own, Some(&checked)));
        let checked = target(own);
        assert!(warn_no_own_address(vip, &lacking, Some(&checked)));
        // A check that did not go through the tunnel before: warned.
        let direct = ProbeTarget {
            tls: false,
            through: None,
            address: SocketAddr::new(backend, 80),
            kind: CheckKind::Tcp,
        };
        assert!(warn_no_own_address(vip, &lacking, Some(&direct)));
        // Same family: the kernel picks the source; nothing to warn of.
        let v6 = TunnelPath {
            backend: "2001:db8::11".parse().unwrap(),
            ..lacking
        };
        assert!(!warn_no_own_address(vip, &v6, None));
    }

    #[test]
    fn a_nat_drain_timeout_is_not_logged_as_cutting_flows() {
        let nat = drain_timeout_outcome(Some(lb_common::Mode::Nat));
        assert!(!nat.contains("cut"), "{nat}");
        assert!(nat.contains("stay on it until they end"), "{nat}");
        for mode in [lb_common::Mode::DsrL2, lb_common::Mode::Ipip] {
            assert!(drain_timeout_outcome(Some(mode)).contains("remaining flows cut"));
        }
    }
}
