//! The engine: the one owner of lbd's state (config in force, model, data
//! plane, health checker, neighbour MACs). Every change, whatever asked for
//! it (API, health transition, reload, drain deadline, a MAC showing up),
//! goes through `commit`: build the next model, apply it to the maps, and
//! only then make it current. A change the maps refuse leaves the model as
//! it was.
//!
//! Each of the engine's duties has a file of its own: `start` (load or
//! adopt, fill, attach, VRRP and replication), `change` (what the API and
//! reloads ask for), `checks` (health checks and drains), `macs`,
//! `flows` (the table as lbd reads it, replication), `tracking` (VRRP
//! priority), `view` (status and dumps), and the routed modes' and the
//! node's runtimes (`nat`, `tunnel`, `node`, `guard`).

use std::{collections::HashMap, net::IpAddr, path::PathBuf};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tracing::{info, warn};

mod admin_state;
mod backends_writer;
mod change;
mod checks;
pub(crate) mod flow_census;
mod flows;
mod guard;
mod hc_load;
mod macs;
mod nat;
pub(crate) mod node;
pub(crate) mod running_state;
mod start;
mod tracking;
mod tunnel;
mod view;

pub use change::ChangeError;
pub(crate) use checks::check_of;

use super::replication::{Replication, Roles};
use crate::{
    config::Config,
    dataplane::{Dataplane, Hooked, Released},
    guard::GuardConfig,
    health::{HealthChecker, HealthEvent},
    model::Model,
    nat::events::NatEvents,
    netlink::{Interface, Netlink},
    reconcile::{ApplyReport, Balancer, ReconcileError, Staged, VipId},
    sync::ReceivedBatch,
    vrrp::driver::{wait_for_notifies, Instance, Notifies, NOTIFY_GRACE},
};

/// A backend, as health events and the checker name it.
pub(crate) type BackendKey = (VipId, IpAddr);

/// What the engine's surroundings deliver to it.
pub struct EngineEvents {
    /// Health transitions.
    pub health: mpsc::Receiver<HealthEvent<BackendKey>>,
    /// Flows replicated from the VRRP peer.
    pub sync: Option<mpsc::Receiver<ReceivedBatch>>,
}

/// lbd's state and the means to change it.
pub struct Engine {
    /// Path of the config file (for reloads).
    config_path: PathBuf,
    /// The config file's content in force (node settings, base for dumps).
    config: Config,
    /// What is served now.
    model: Model,
    /// The loaded, attached XDP program and its maps.
    dataplane: Dataplane,
    /// The record of what the maps hold.
    balancer: Balancer,
    /// The hook (and XDP mode) the program is attached at.
    hooked: Hooked,
    /// The interface.
    interface: Interface,
    /// Health checks, one task per checked backend.
    checker: HealthChecker<BackendKey>,
    /// Health transitions per backend since start, and when the last was.
    transitions: HashMap<BackendKey, checks::HealthChanges>,
    /// VRRP instances (empty: no VRRP; this node serves whatever reaches it).
    vrrp: Vec<Instance>,
    /// Connection-table replication with the VRRP peer.
    replication: Option<Replication>,
    /// Whether the interface is up with its carrier (for the health
    /// checks and the status; VRRP's instances look at it themselves).
    interface_up: bool,
    /// Whether the kernel still runs the hook, and the interface lost
    /// meanwhile (see `tracking`).
    link_watch: tracking::LinkWatch,
    /// Maglev tables rebuilt since start.
    tables_rebuilt: u64,
    /// Reloads since start, by result.
    reloads: crate::api::schema::ReloadCounts,
    /// Metrics kept between scrapes (histograms).
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    netlink: Netlink,
    macs: HashMap<IpAddr, [u8; 6]>,
    /// NAT mode's reaper, forwarding, redirect targets and events (and
    /// the routed modes' shared duties).
    nat: nat::NatRuntime,
    /// The tunnelled modes' own addresses and health-check path.
    tunnel: tunnel::TunnelRuntime,
    /// Drained or active, the node's traffic, and its BGP announcements.
    node: node::NodeRuntime,
    /// The backend state file: drains and maintenance kept for the next lbd.
    admin: admin_state::AdminRecord,
    /// The running configuration's record: runtime changes kept for the
    /// next lbd (see `running_state`).
    running: running_state::RunningRecord,
    /// Deny/allow lists and limits of new flows in force.
    guard: crate::guard::Guard,
    /// SYN-flood detection from the half-open table's counters.
    flood: crate::flood::FloodWatch,
    /// The notify commands of the VRRP instances stepped down while lbd
    /// ran on (a lost hook): kept, so they run to their end (a dropped
    /// set kills them), and waited for at lbd's exit.
    stepped_down: Vec<Notifies>,
    /// The census of the connection table the read being answered counts
    /// with (lent by the loop, see `flow_census`); None outside a read.
    lent_census: Option<std::sync::Arc<flow_census::Census>>,
    /// Whether this lbd found the node without a data plane of a previous
    /// lbd: a start that fails once the data plane is loaded then takes
    /// everything away again (see `fail_start`).
    fresh_start: bool,
}

impl Engine {
    /// The interface the data plane is attached to.
    pub(crate) fn interface_name(&self) -> &str {
        &self.interface.name
    }

    /// The hook (and XDP mode) the program is attached at.
    pub fn hooked(&self) -> Hooked {
        self.hooked
    }

    /// How many VIPs are served.
    pub(crate) fn vip_count(&self) -> usize {
        self.model.vips.len()
    }

    /// The config in force (node settings as they run).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The data plane's event ring, once (for the reader task).
    pub(crate) fn take_dataplane_events(
        &mut self,
    ) -> Option<aya::maps::RingBuf<aya::maps::MapData>> {
        self.dataplane.take_events()
    }

    /// The metrics page for a scrape.
    pub(crate) fn render_metrics(&self) -> String {
        self.metrics.render(&self.status())
    }

    /// Whether the data plane is pinned (outlives lbd).
    pub(crate) fn is_pinned(&self) -> bool {
        self.dataplane.pinned()
    }

    /// Makes `next` the served state: stages it on the balancer, writes
    /// the maps, then adopts it and points the health checks at its
    /// backends.
    pub fn commit(&mut self, next: Model) -> Result<ApplyReport, ReconcileError> {
        let macs = &self.macs;
        let desired = next.desired(&|a| macs.get(&a).copied());
        let staged = self.balancer.stage(&desired)?;
        let guards = self.guard.config().clone();
        self.commit_staged(next, staged, guards)
    }

    /// Makes `next`, already staged as `staged`, the served state, with
    /// `guards` in force from its first packet (a reload's are the
    /// file's).
    pub(crate) fn commit_staged(
        &mut self,
        next: Model,
        staged: Staged,
        guards: GuardConfig,
    ) -> Result<ApplyReport, ReconcileError> {
        let before = self.guard.config().clone();
        self.guard_staged(&staged, &guards);
        let report = match forwarding_then_maps(self, staged) {
            Ok(report) => report,
            Err(error) => {
                // A write failed half-way: the maps go back to the running
                // state (the balancer now rewrites all it serves), then
                // the guards, for the VIPs still served.
                self.restore_after_failed_commit();
                if let Err(again) = self.apply_guard(before) {
                    warn!(%again, "restoring the deny/allow lists and limits after a refused change failed");
                }
                return Err(error);
            }
        };
        // Again for the committed state: a switch that failed before is
        // retried.
        self.ensure_forwarding();
        self.tables_rebuilt += report.tables_flipped as u64;
        for took in &report.table_builds {
            self.metrics.observe_table_build(*took);
        }
        self.model = next;
        self.forget_unwanted_macs();
        self.follow_admin_states();
        self.settle_guard(guards);
        self.sync_checks();
        self.track();
        Ok(report)
    }

    /// Writes the running model back after a commit failed half-way. If
    /// this fails too, the balancer still counts every entry as unknown,
    /// so the next change or health event writes them all. Before this
    /// lbd's first fill succeeded nothing is written back: the maps are a
    /// previous lbd's, its program may still serve them, and the running
    /// model is empty (see `Balancer::restore`).
    pub(super) fn restore_after_failed_commit(&mut self) {
        let macs = &self.macs;
        let desired = self.model.desired(&|a| macs.get(&a).copied());
        match self.balancer.restore(&mut self.dataplane, &desired) {
            Ok(true) => info!(
                "a map write failed half-way through a change; the running state is written back"
            ),
            Ok(false) => warn!(
                "a map write failed half-way through filling the adopted data plane; its maps keep the previous lbd's VIPs and backends (with the part of this lbd's config written), so the program still attached goes on serving them"
            ),
            Err(error) => {
                warn!(%error, "a map write failed half-way through a change, and writing the running state back failed too: the maps may hold part of the change until the next change rewrites them")
            }
        }
    }

    /// Logs an event the data plane reported, naming the VIP, and acts on
    /// the routed ones (see `nat`).
    pub(crate) fn on_dataplane_event(&mut self, event: &lb_common::DataplaneEvent) {
        let vip = self
            .balancer
            .vips()
            .iter()
            .find(|(_, v)| v.id == event.vip_id)
            .map_or_else(
                || format!("VIP id {}", event.vip_id),
                |(id, _)| id.to_string(),
            );
        if self.on_nat_event(event, &vip) {
            return;
        }
        let now = std::time::Duration::from_nanos(crate::clock::monotonic_ns());
        log_dataplane_event(&mut self.nat.events, event, &vip, now);
    }

    /// Hands the VIPs over (VRRP priority 0), stops checks and detaches the
    /// program. A stop for good whose BGP withdrawal BIRD did not take
    /// keeps a pinned program attached, as a restart does (BIRD may still
    /// announce this node, and the routers keep sending it flows, the
    /// established ones too), and fails naming BIRD and what to do. A
    /// BIRD that is not running announces nothing: the stop goes ahead
    /// and succeeds, as `lbd --cleanup` does (see [`keeps_program`]).
    pub async fn shutdown(mut self, stop: Stop) -> anyhow::Result<Released> {
        if stop == Stop::Clean {
            self.final_sync().await;
            // A stop for good ends the running configuration: the next
            // start is from the file, as after `lbd --cleanup`.
            running_state::forget(&self.config);
        }
        // The addresses a stop for good hands over (priority 0): their
        // traffic still arrives until the peer has announced them. A
        // restart with `pin_dir = "off"` hands them over too (the caller
        // normally did, with its BGP withdrawal: see `hand_over`).
        // A restart with a pinned data plane releases it first: its
        // instances are left for the next lbd to resume (a restart record)
        // only while the program is left forwarding.
        let mut released_for_restart = None;
        let handed = if stop == Stop::Clean || !self.dataplane.pinned() {
            self.hand_over().await
        } else {
            let released = self.left_forwarding().await?;
            released_for_restart = Some(released);
            if released == Released::StillForwarding {
                // A restart does not wait for the instances it leaves: the
                // next lbd must be back within the backup's master-down
                // interval to resume.
                for instance in std::mem::take(&mut self.vrrp) {
                    instance.abandon().await;
                }
                HandedOver::default()
            } else {
                self.hand_over().await
            }
        };
        // Leaving the runtime kills the notify commands still running:
        // the "stopped" ones of the instances stepped down (a lost hook,
        // a stop for good, a restart with nothing pinned) are let finish.
        // Meanwhile the new flows of the addresses just handed over still
        // go to the peer (see `stream_handed_over`).
        let notifies = std::mem::take(&mut self.stepped_down);
        self.streaming_while(&handed, wait_for_notifies(&notifies, NOTIFY_GRACE))
            .await;
        let withdrawal = match stop {
            Stop::Clean => {
                let withdrawal = self.withdraw_for_stop(&handed).await.err();
                // BIRD is not running (the program goes, see
                // `keeps_program`), but the addresses VRRP handed over
                // still move, which the failed withdrawal did not wait for.
                let bird_gone = withdrawal
                    .as_ref()
                    .is_some_and(crate::bgp::bird::is_not_running);
                if bird_gone && !handed.addresses.is_empty() {
                    self.forward_while_traffic_moves(false, &handed).await;
                }
                withdrawal
            }
            Stop::Restart => {
                if !handed.addresses.is_empty() {
                    self.forward_while_traffic_moves(false, &handed).await;
                }
                None
            }
        };
        let pinned = self.dataplane.pinned();
        // Closed, not dropped: the flows written last (the final flush's)
        // reach the peers before their connections go.
        if let Some(replication) = self.replication.take() {
            replication.close(REPLICATION_CLOSE).await;
        }
        self.checker.retain(|_| false);
        // Checks stop with lbd: so does their path (the next lbd puts it
        // back at once if it needs it).
        self.detach_hc_encap();
        self.restore_accept_local();
        let keep = keeps_program(stop, pinned, withdrawal.as_ref());
        let released = if keep {
            if !pinned {
                // Nothing outlives lbd (`pin_dir = "off"`): release()
                // detaches the program, so the node goes back to how it
                // was found, as at a stop for good. Only a pinned data
                // plane forwards on, and needs `forwarding` kept on; but
                // IPv6 forwarding stays (see the function).
                self.restore_forwarding_for_restart();
            }
            match released_for_restart {
                Some(released) => released,
                None => self.dataplane.release()?,
            }
        } else {
            // The node as it was found: a restart keeps it on, as NAT'd
            // flows keep being forwarded by the pinned data plane.
            self.restore_forwarding();
            self.dataplane.detach()?;
            Released::Detached
        };
        let Some(error) = withdrawal else {
            return Ok(released);
        };
        if !keep && crate::bgp::bird::is_not_running(&error) {
            warn!(error = %format!("{error:#}"), "BGP: BIRD is not running, so it announces nothing of this node (its sessions went with it, and it reads the emptied routes file when it starts): stopped for good anyway, as `lbd --cleanup` does");
            return Ok(released);
        }
        let bird = self
            .node
            .announcer
            .as_ref()
            .map(|a| a.config().bird_socket.display().to_string())
            .unwrap_or_default();
        Err(if released == Released::StillForwarding {
            error.context(format!(
                "stopping for good: BIRD (control socket {bird}) did not take the withdrawal of this node's BGP announcements, so the routers may still send it flows; the program is left attached and pinned, forwarding them as after a restart. Once BIRD answers, `lbd --release-vips` withdraws the announcements and `lbd --cleanup` then removes the data plane"
            ))
        } else {
            error.context(format!(
                "stopping for good: BIRD (control socket {bird}) did not take the withdrawal of this node's BGP announcements, so the routers may still send flows to this node, which forwards nothing now; once BIRD answers, `lbd --release-vips` withdraws them"
            ))
        })
    }
}

/// The two steps of a commit whose order a routed VIP's first packets
/// depend on: forwarding switched on for the staged change's families,
/// then the maps written. Why a trait: the order is tested with fake
/// steps (the engine's switch writes sysctls).
trait CommitSteps {
    /// Switches forwarding on for `families` (true: IPv6).
    fn switch_forwarding_on(&mut self, families: &std::collections::BTreeSet<bool>);
    /// Writes `staged` to the maps.
    fn write_maps(&mut self, staged: Staged) -> Result<ApplyReport, ReconcileError>;
}

impl CommitSteps for Engine {
    fn switch_forwarding_on(&mut self, families: &std::collections::BTreeSet<bool>) {
        self.ensure_forwarding_for(families);
    }

    fn write_maps(&mut self, staged: Staged) -> Result<ApplyReport, ReconcileError> {
        self.balancer.commit(&mut self.dataplane, staged)
    }
}

/// Commits `staged` with forwarding switched on first for the families
/// its routed VIPs are looked up in (see `nat::routed_families_of`):
/// the commit's writes make them live, and a packet that meets a FIB
/// lookup with forwarding off is dropped (`DropNoRoute`).
fn forwarding_then_maps(
    steps: &mut impl CommitSteps,
    staged: Staged,
) -> Result<ApplyReport, ReconcileError> {
    let families = nat::routed_families_of(staged.vips());
    steps.switch_forwarding_on(&families);
    steps.write_maps(staged)
}

/// What a stop handed over to the peer (see [`Engine::hand_over`]). Why:
/// until the peer has announced the addresses, their traffic still
/// arrives here and the program still opens flows (and NAT translations)
/// for it; these must reach the peer as well, which takes the roles this
/// node streamed with before it stepped down (see
/// [`Engine::stream_handed_over`]).
#[derive(Debug, Default)]
pub(crate) struct HandedOver {
    /// The addresses this node was master of.
    pub(crate) addresses: Vec<IpAddr>,
    /// The replication roles this node had before it stepped down.
    roles: Roles,
}

/// Longest the last replication after a handover waits for its flows to
/// be written to the peer (as `final_sync` does before it).
const HANDOVER_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);
/// Longest a stop waits for its replication peers to read what was sent
/// and close their ends of the sessions (see `Replication::close`): on
/// a LAN they do within milliseconds of the last frame.
const REPLICATION_CLOSE: std::time::Duration = std::time::Duration::from_millis(500);

impl Engine {
    /// A restart's release of the pinned data plane (see
    /// `Dataplane::release`), and whether the interface runs the program
    /// left forwarding, asked of the kernel now (see
    /// `dataplane::left_hook`): the housekeeping tick may not have seen a
    /// hook lost less than a second ago (the interface deleted, the link
    /// detached), and a cls_bpf filter that could not be kept goes with
    /// lbd. Only `StillForwarding` leaves the VRRP instances a restart
    /// record, on which the next lbd resumes mastership: with nothing
    /// forwarding it would take the VIPs with no program in front of them
    /// (see `start::resumes_mastership`). Otherwise `NothingAttached`,
    /// logged with why.
    async fn left_forwarding(&mut self) -> anyhow::Result<Released> {
        let released = self
            .dataplane
            .release()
            .context("leaving the data plane for the next lbd")?;
        let why = match (released, &self.config.pin_dir) {
            (Released::StillForwarding, Some(dir)) => {
                let pins = crate::pinning::PinDir::new(dir);
                let left = crate::dataplane::left_hook(&pins, &self.interface, &self.netlink).await;
                if left.runs() {
                    return Ok(released);
                }
                left.to_string()
            }
            (Released::StillForwarding, None) => return Ok(released),
            _ => "no program is left attached".to_owned(),
        };
        if !self.vrrp.is_empty() {
            warn!(%why, "stopping for a restart, but the interface does not run the program left for the next lbd: the VRRP instances step down (the peer takes over) rather than leave the next lbd a mastership to resume");
        }
        Ok(Released::NothingAttached)
    }

    /// For a stop after which nothing of this node forwards for VRRP's
    /// addresses (a stop for good; a restart with `pin_dir = "off"`, whose
    /// program goes with lbd, or one whose program is not left forwarding,
    /// see [`Self::left_forwarding`]), once the last flows went to the peer (see
    /// [`Self::final_sync`]): steps down from every instance (priority 0, so the backup takes over after
    /// its skew time, not the master-down interval; addresses released;
    /// "stopped" recorded, so the next lbd does not resume mastership with
    /// an empty data plane while the peer holds the flows). Returns the
    /// addresses this node was master of, whose traffic still arrives here
    /// until the peer announced them (see [`Self::withdraw_for_stop`]),
    /// with the replication roles it had, so the flows opened meanwhile
    /// still stream to the peer. The "stopped" notify commands are kept
    /// in `stepped_down`, for the exit to wait for. Nothing to do once
    /// done.
    pub(crate) async fn hand_over(&mut self) -> HandedOver {
        let roles = self.replication_roles();
        let mut addresses = Vec::new();
        for instance in std::mem::take(&mut self.vrrp) {
            if instance.is_master() {
                addresses.extend(instance.config().addresses.iter().copied());
            }
            self.stepped_down.push(instance.notifies());
            instance.stop().await;
        }
        HandedOver { addresses, roles }
    }

    /// A stop's withdrawal of every BGP announcement (the program goes
    /// next): once BIRD took it, the program forwards on while the
    /// routers move the node's flows away (see `bgp::converge`), so the
    /// packets of established flows that still arrive meanwhile are not
    /// handed to the kernel. Without `[bgp]` there is nothing to wait for;
    /// a withdrawal BIRD did not take fails at once (the caller decides).
    /// `handed` are the VRRP addresses the stop just handed over (priority
    /// 0): until the peer has taken them over and announced them (its
    /// skew time, then gratuitous ARP / NA), the neighbours still send
    /// their packets here, so the program forwards those too until they
    /// are quiet.
    pub(crate) async fn withdraw_for_stop(&mut self, handed: &HandedOver) -> anyhow::Result<()> {
        self.withdraw_announcements().await?;
        let bgp = self.node.announcer.is_some();
        if bgp || !handed.addresses.is_empty() {
            self.forward_while_traffic_moves(bgp, handed).await;
        }
        Ok(())
    }

    /// Waits until the moving addresses' traffic (the withdrawn ones if
    /// `bgp`, and `handed`) is quiet for `converge::QUIET`, or
    /// `converge::CAP` at most, sampling it every `converge::POLL`; logs
    /// what it waited for. Meanwhile the program opens flows for the new
    /// connections that still arrive here: every sample streams them to
    /// the peers, and a last replication once quiet sends the rest, so
    /// the node that takes the traffic over knows every one of them.
    async fn forward_while_traffic_moves(&mut self, bgp: bool, handed: &HandedOver) {
        use crate::bgp::converge::{Converged, Convergence, CAP, POLL, QUIET};
        let traffic = |engine: &Self| {
            let withdrawn = if bgp { engine.announced_traffic()? } else { 0 };
            let handed = engine.traffic_to(|address| handed.addresses.contains(&address))?;
            Some(withdrawn.wrapping_add(handed))
        };
        let mut wait = Convergence::new(std::time::Instant::now(), traffic(self));
        info!(
            quiet_ms = QUIET.as_millis(),
            cap_ms = CAP.as_millis(),
            bgp,
            vrrp_addresses = handed.addresses.len(),
            "withdrawn (BGP) / handed over (VRRP); forwarding on while this node's flows move away (until those addresses are quiet), replicating the flows it still opens"
        );
        let ended = loop {
            tokio::time::sleep(POLL).await;
            self.stream_handed_over(&handed.roles);
            let now = std::time::Instant::now();
            if let Some(ended) = wait.observe(traffic(self), now) {
                break ended;
            }
        };
        let packets = wait.forwarded_since();
        match ended {
            Converged::Quiet { waited } => info!(
                waited_ms = waited.as_millis(),
                ?packets,
                "the withdrawn / handed-over addresses went quiet; the program goes"
            ),
            Converged::Capped => warn!(
                waited_ms = CAP.as_millis(),
                ?packets,
                "the withdrawn / handed-over addresses still receive packets; the program goes anyway (routers or neighbours still send some flows here)"
            ),
        }
        self.last_handover_sync(&handed.roles).await;
    }

    /// Runs `work` (a wait of the stop) while streaming the flows of the
    /// addresses just handed over every `converge::POLL`, as
    /// [`Self::forward_while_traffic_moves`] does: their new connections
    /// keep arriving here until the peer announced them, and must not
    /// wait for the end of `work` to reach it.
    async fn streaming_while<T>(
        &mut self,
        handed: &HandedOver,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let mut tick = tokio::time::interval(crate::bgp::converge::POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: the caller just replicated.
        tick.tick().await;
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = tick.tick() => self.stream_handed_over(&handed.roles),
            }
        }
    }

    /// One replication tick after a handover, with the roles of before
    /// (`before`) and after it combined: after the step-down this node
    /// streams nothing by its own roles, yet until the peer announced the
    /// addresses the program keeps opening flows for the new connections
    /// that reach it, which break once the addresses moved unless the new
    /// master has them (the peer installs them as master only where it
    /// holds nothing fresher: see `Replication::install_with`). Sends the
    /// records of a walk that ended, then starts the next one off this
    /// task (see `replication::walks`).
    fn stream_handed_over(&mut self, before: &Roles) {
        let roles = before.union(&self.replication_roles());
        let Some(replication) = &mut self.replication else {
            return;
        };
        replication.walk_ended();
        if let Some(roles) = replication.roles_for_walk(roles) {
            if replication.topology().sends(roles.any_master()) {
                replication.start_walk(&self.dataplane, &self.balancer, &roles);
            }
        }
    }

    /// The last replication of a stop, once the moving addresses went
    /// quiet (or the wait was capped): the walk in flight is waited for,
    /// then one more walk (NAT scan forced) sends what the program opened
    /// since, and the peer is given [`HANDOVER_FLUSH`] at most to take it
    /// all, before the program goes.
    async fn last_handover_sync(&mut self, before: &Roles) {
        let roles = before.union(&self.replication_roles());
        let Some(replication) = &mut self.replication else {
            return;
        };
        replication.wait_walk().await;
        if let Some(roles) = replication.roles_for_walk(roles) {
            if replication.topology().sends(roles.any_master()) {
                replication.scan_nat_now();
                replication.start_walk(&self.dataplane, &self.balancer, &roles);
                replication.wait_walk().await;
                info!("the last flows this node opened after stepping down were handed to the connection-table replication");
            }
        }
        replication.flush(HANDOVER_FLUSH).await;
    }
}

/// Whether a stop leaves the program attached (released, not
/// detached): a restart does; so does a stop for good with a pinned data
/// plane whose BGP withdrawal failed (`withdrawal`) so that BIRD may
/// still announce this node (the routers still send it flows, which only
/// the program forwards). A BIRD that is not running announces nothing
/// (its sessions went with it, and it reads the emptied routes file when
/// it starts): the program goes, by the rule `lbd --cleanup` follows
/// too ([`crate::bgp::bird::is_not_running`]), so a node whose BIRD was
/// stopped first can still be stopped for good.
fn keeps_program(stop: Stop, pinned: bool, withdrawal: Option<&anyhow::Error>) -> bool {
    stop == Stop::Restart
        || (pinned && withdrawal.is_some_and(|error| !crate::bgp::bird::is_not_running(error)))
}

/// Logs a data-plane event that is not a routed one (no live backend, the
/// connection table refused a flow, an unknown kind) about VIP `vip` at
/// `now`: once a minute per VIP and kind, with how many were left out
/// since. The program already sends at most one a second per CPU and
/// kind, which on a many-core node during an outage or a flood is still
/// a line a second per CPU; the counters carry the volume.
fn log_dataplane_event(
    limits: &mut NatEvents,
    event: &lb_common::DataplaneEvent,
    vip: &str,
    now: std::time::Duration,
) {
    let Some(suppressed) = limits.log_for_vip_counting(event.kind, event.vip_id, now) else {
        return;
    };
    let client = crate::reconcile::words_addr(event.flow.src, event.flow.family);
    let port = u16::from_be(event.flow.sport);
    match event.kind {
        lb_common::consts::EVENT_NO_BACKEND => warn!(
            %vip, %client, port, suppressed, "data plane: packet for a VIP with no live backend dropped (logged once a minute per VIP, with the number left out since; see lbd_packets_total{{reason=\"no_backend\"}})"
        ),
        lb_common::consts::EVENT_CONNTRACK_INSERT_FAILED => warn!(
            %vip, %client, port, suppressed, "data plane: the connection table refused a flow, forwarded by hash only (logged once a minute per VIP, with the number left out since; see lbd_conntrack_events_total{{event=\"insert_failed\"}})"
        ),
        other => {
            warn!(kind = other, %vip, suppressed, "data plane: unknown event (logged once a minute per VIP and kind)")
        }
    }
}

/// How lbd stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// For a restart or an upgrade (SIGTERM): the program stays attached
    /// and pinned, the connection table stays, VRRP sends no step-down and
    /// the VIPs stay (the next lbd resumes mastership if it comes back
    /// within the master-down interval; the systemd unit removes the VIPs
    /// with `lbd --release-vips` so a node that stays down answers no ARP).
    /// With `pin_dir = "off"` nothing forwards once lbd is gone: VRRP
    /// steps down as for [`Stop::Clean`] (see [`Engine::hand_over`]).
    Restart,
    /// For good (SIGINT, e.g. Ctrl-C): VRRP steps down (priority 0), the
    /// VIPs go, the program is detached and every pin removed.
    Clean,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 200 "no live backend" events for one VIP within a minute (every
    /// CPU's one a second) log one warning; the next minute's logs one
    /// more, counting those left out; another VIP and another kind have
    /// limits of their own.
    #[test]
    fn data_plane_events_are_logged_once_a_minute_per_vip_and_kind() {
        let event = |kind, vip_id| lb_common::DataplaneEvent {
            kind,
            vip_id,
            flow: lb_common::FlowKey::default(),
        };
        let mut limits = NatEvents::default();
        let no_backend = event(lb_common::consts::EVENT_NO_BACKEND, 1);
        let logs = crate::test_logs::logs_of(|| {
            for n in 0..200u64 {
                log_dataplane_event(
                    &mut limits,
                    &no_backend,
                    "198.18.0.100:80/tcp",
                    Duration::from_millis(n * 250),
                );
            }
        });
        assert_eq!(logs.matches("WARN").count(), 1, "{logs}");
        assert!(logs.contains("198.18.0.100:80/tcp"), "{logs}");
        let logs = crate::test_logs::logs_of(|| {
            log_dataplane_event(&mut limits, &no_backend, "v", Duration::from_secs(61));
            log_dataplane_event(
                &mut limits,
                &event(lb_common::consts::EVENT_NO_BACKEND, 2),
                "w",
                Duration::from_secs(61),
            );
            log_dataplane_event(
                &mut limits,
                &event(lb_common::consts::EVENT_CONNTRACK_INSERT_FAILED, 1),
                "v",
                Duration::from_secs(61),
            );
        });
        assert_eq!(logs.matches("WARN").count(), 3, "{logs}");
        // 200 events over 50 s, one logged: 199 left out, told the next time.
        assert!(logs.contains("suppressed=199"), "{logs}");
        assert_eq!(logs.matches("suppressed=0").count(), 2, "{logs}");
    }

    /// A stop for good whose withdrawal found BIRD not running (nothing
    /// listens on its control socket) detaches the program, as
    /// `lbd --cleanup` does: BIRD's sessions went with it. One that BIRD
    /// refused, or did not answer, keeps a pinned program attached; a
    /// restart always does.
    #[tokio::test]
    async fn a_stop_for_good_detaches_when_bird_is_not_running_as_cleanup_does() {
        let dir = crate::test_scratch::ScratchDir::new("engine-keep");
        let config = crate::config::BgpConfig {
            bird_socket: dir.join("bird.ctl"),
            routes_file: dir.join("vips.conf"),
            protocol: "lbd_vips".into(),
            addresses: crate::config::Announced::EveryVip,
            startup_wait: Duration::from_secs(10),
            node_state_file: dir.join("node.state"),
        };
        let not_running = crate::bgp::announcer::withdraw(&config).await.unwrap_err();
        assert!(
            !keeps_program(Stop::Clean, true, Some(&not_running)),
            "{not_running:#}"
        );
        let unanswered = anyhow::anyhow!("BIRD did not answer in time");
        assert!(keeps_program(Stop::Clean, true, Some(&unanswered)));
        assert!(!keeps_program(Stop::Clean, false, Some(&unanswered)));
        assert!(!keeps_program(Stop::Clean, true, None));
        assert!(keeps_program(Stop::Restart, true, None));
        assert!(keeps_program(Stop::Restart, true, Some(&not_running)));
    }

    /// Records the forwarding switch in the fake maps' log of writes, so
    /// its place among them shows; the maps are the fake's.
    struct Recorded {
        balancer: crate::reconcile::Balancer,
        maps: crate::dataplane::FakeMaps,
    }

    impl CommitSteps for Recorded {
        fn switch_forwarding_on(&mut self, families: &std::collections::BTreeSet<bool>) {
            for ipv6 in families {
                self.maps.log.push(format!(
                    "forwarding {}",
                    if *ipv6 { "ipv6" } else { "ipv4" }
                ));
            }
        }

        fn write_maps(&mut self, staged: Staged) -> Result<ApplyReport, ReconcileError> {
            self.balancer.commit(&mut self.maps, staged)
        }
    }

    /// A commit that makes a routed VIP live switches forwarding on for
    /// its family before the write that makes the VIP live, so no first
    /// packet meets a FIB lookup forwarding refuses; a commit of DSR-L2
    /// VIPs only switches nothing.
    #[test]
    fn forwarding_goes_on_before_a_routed_vip_is_live() {
        let own = crate::tunnel::OwnAddresses {
            ipv4: Some("198.18.0.2".parse().unwrap()),
            ipv6: None,
        };
        let mut balancer = crate::reconcile::Balancer::new(4);
        balancer.set_tunnel(crate::tunnel::resolve(
            &crate::config::TunnelSettings::default(),
            3,
            &own,
        ));
        let mut steps = Recorded {
            balancer,
            maps: crate::dataplane::FakeMaps::default(),
        };
        let vip = |mode: lb_common::Mode| {
            let mut vip = crate::config::VipConfig::new(
                "198.18.0.100".parse().unwrap(),
                80,
                crate::config::Protocol::Tcp,
            );
            vip.table_size = 13;
            vip.forwarding = mode;
            vip.backends.push(crate::config::BackendConfig {
                mac: Some(crate::mac::Mac([2, 0, 0, 0, 0, 0x11])),
                ..crate::config::BackendConfig::new("198.19.2.11".parse().unwrap())
            });
            vec![crate::reconcile::DesiredVip::from_config(&vip, &|_| None)]
        };
        let staged = steps.balancer.stage(&vip(lb_common::Mode::DsrL2)).unwrap();
        forwarding_then_maps(&mut steps, staged).unwrap();
        assert!(
            !steps.maps.log.iter().any(|l| l.starts_with("forwarding")),
            "{:?}",
            steps.maps.log
        );
        steps.maps.log.clear();
        // The same VIP switched to ipip: its flip is the VIP's write.
        let staged = steps.balancer.stage(&vip(lb_common::Mode::Ipip)).unwrap();
        forwarding_then_maps(&mut steps, staged).unwrap();
        let log = &steps.maps.log;
        let forwarding = log.iter().position(|l| l == "forwarding ipv4");
        let live = log.iter().position(|l| l.starts_with("vip "));
        assert!(
            forwarding.is_some() && live.is_some() && forwarding < live,
            "{log:?}"
        );
    }
}
