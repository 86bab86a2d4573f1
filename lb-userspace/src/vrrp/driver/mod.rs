//! One VRRP instance at work: a tokio task, on the VRRP thread's runtime
//! (see [`super::runtime`]), that feeds the pure state
//! machine with adverts from the wire, timer expiries and priority changes
//! (tracking), and carries out what it decides: adverts on the wire, the
//! VIP addresses added (with gratuitous ARP / unsolicited NA) or removed
//! over rtnetlink, notify commands. Stale addresses left by a crash are
//! removed at start, before the instance speaks; while master, the
//! addresses are checked every [`ADDRESS_CHECK`] and put back (and
//! announced) if something removed them.
//!
//! The driver's concerns live beside it: the looks at the interface
//! ([`looks`]), the advert source ([`source`]), the link ([`link`]), its
//! MAC ([`mac`]), the addresses held ([`vips`]), adverts sent
//! ([`sending`]) and heard ([`received`]), changes of state
//! ([`transition`]), the state file ([`record`]), notify commands
//! ([`notify`]), the status ([`status`]), and the handle lbd keeps
//! ([`instance`]).

mod instance;
mod link;
mod looks;
mod mac;
mod notify;
mod received;
mod record;
mod sending;
mod source;
mod status;
mod transition;
mod vips;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

pub use self::status::InstanceStatus;
pub(crate) use self::{
    instance::{Instance, Prepared},
    notify::{wait_for_notifies, Notifies, NOTIFY_GRACE},
};
use self::{
    link::{carrier_changes, LinkWatch},
    looks::{periodic_look_done, Looks, PeriodicLookFuture},
    mac::MacChange,
    record::Recorded,
    sending::SendFailures,
    vips::AnnounceFn,
};
use super::{
    announce::Announcer, complaints::Complaints, machine::PREEMPT_SYNC_HOLD, net::VrrpSocket,
    Action, Machine, Settings, State,
};
use crate::{
    config::VrrpConfig,
    netlink::{Interface, Netlink},
    sync::log_limit::LogLimit,
};

/// How often a master checks that its addresses are still on the
/// interface (a link down/up drops IPv6 ones; networkd may drop any).
const ADDRESS_CHECK: Duration = Duration::from_millis(500);

/// What the [`Instance`] tells its driver.
struct Inputs {
    /// The effective priority (tracking).
    priority: watch::Receiver<u8>,
    /// How many times the interface's link came back up.
    link_ups: watch::Receiver<u64>,
    /// The interface MAC the data plane accepts frames for.
    data_plane_mac: watch::Receiver<[u8; 6]>,
    /// Set once the peer's full connection-table dump arrived.
    synced: watch::Receiver<bool>,
    /// Fires (or is dropped) to stop.
    stop: oneshot::Receiver<()>,
}

struct Driver {
    config: VrrpConfig,
    interface: Interface,
    /// Adds and removes the addresses.
    netlink: Netlink,
    /// Reads the interface (see [`Looks`]).
    looks: Looks,
    /// Sends the announcements (see [`AnnounceFn`]).
    announce_with: AnnounceFn,
    /// The interface MAC the data plane accepts frames for, as the engine
    /// last told (see [`Instance::data_plane_mac`]).
    data_plane_mac: [u8; 6],
    /// A MAC change seen and not yet followed (see [`MacChange`]).
    mac_change: MacChange,
    /// When the newest look at the link whose answer was taken began:
    /// answers of looks begun earlier are stale (see [`newer_look`](looks::newer_look)).
    link_read_from: Option<Instant>,
    /// The same for the looks at the addresses.
    addresses_read_from: Option<Instant>,
    socket: VrrpSocket,
    machine: Machine,
    status: watch::Sender<InstanceStatus>,
    ignored: BTreeMap<String, u64>,
    /// The rate limits of warnings about adverts ignored for a fault.
    complaints: Complaints,
    holding: bool,
    /// A release left addresses behind (warned once; retried quietly).
    release_failing: bool,
    /// The gratuitous ARP / NA rounds of the current claim: cancelled when
    /// the addresses are released, and with the driver.
    announcer: Announcer,
    state_file: Option<PathBuf>,
    /// The notify commands started, shared with the [`Instance`].
    notifies: Notifies,
    /// The machine began a hold of preemption for the peer's flows when
    /// the source came back (see [`Machine::source_back`]): the loop
    /// lets it run its course, as after a link outage.
    source_hold_began: bool,
    /// When the source was last looked at after a failed send (see
    /// [`source_recheck_due`](source::source_recheck_due)).
    source_checked_at: Option<Instant>,
    /// The addresses adverts never go from (see [`never_sources`](source::never_sources)).
    never: Vec<IpAddr>,
    /// The interface's link as the checks saw it (see [`LinkWatch`]).
    link: LinkWatch,
    /// The priority tracking set last (see [`Instance::set_priority`]):
    /// the machine's, but for the link's weight (see
    /// [`Driver::priority_now`]).
    tracked: u8,
    /// Adverts that did not leave, for the rate limit of their warnings.
    send_failures: SendFailures,
    /// The rate limit of warnings about looks at the link that failed.
    link_query_log: LogLimit,
}

impl Driver {
    /// Serves the instance until it is stopped: adverts from the wire,
    /// the advert / master-down timer, tracking's inputs, and the periodic
    /// look at the interface (every [`ADDRESS_CHECK`]: the advert source,
    /// the link, its MAC, the addresses while master).
    ///
    /// The periodic look runs beside the other arms, never inside one: it
    /// is a future owned by the loop (`looking`), polled by its own
    /// `select!` arm, and its answer handled when it comes. A look held up
    /// behind `rtnl_lock` (or whose reply netlink-proto lost, given up
    /// after [`addresses::NETLINK_LIMIT`](super::addresses::NETLINK_LIMIT)) thus never delays an advert nor
    /// the reading of the peer's: awaited inside an arm, it stopped the
    /// whole loop, and the backup took over from a healthy master. That
    /// is all a separate task would give, without a channel, and its
    /// answer is still handled on the loop, in order with the machine.
    /// A tick while a look is in flight starts none; the next starts as
    /// that one answers. What still awaits
    /// netlink inside an arm, each request within the same limit: the
    /// address changes of a transition (adding, removing the addresses, in
    /// order with the machine), the look a backup makes before it takes
    /// over and a master whose link was down or flapped before its advert
    /// (see the timer's arm), the look at the source after a failed send,
    /// and a non-master's retry of a failed release (it sends no adverts).
    async fn run(mut self, inputs: Inputs, resume: bool, sync_hold: bool, replicates: bool) {
        let Inputs {
            mut priority,
            mut link_ups,
            mut data_plane_mac,
            mut synced,
            mut stop,
        } = inputs;
        // With replication this node's table starts empty (or stale): a
        // preemption waits for the master's full dump, within bounds.
        if sync_hold {
            self.machine
                .hold_preemption(Instant::now(), PREEMPT_SYNC_HOLD);
        }
        // And again after a link outage the peer may have taken over in.
        if replicates {
            self.machine.hold_after_outages(PREEMPT_SYNC_HOLD);
        }
        let mut synced_seen = false;
        let mut link_ups_closed = false;
        let actions = if resume {
            self.machine.resume_master(Instant::now())
        } else {
            self.machine.startup(Instant::now())
        };
        self.carry_out(actions).await;
        let mut check = tokio::time::interval(ADDRESS_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut looking: Option<PeriodicLookFuture> = None;
        // A tick came while a look was in flight: the next starts as that
        // one answers.
        let mut look_due = false;
        let mut data_plane_mac_closed = false;
        loop {
            let deadline = self
                .machine
                .next_deadline()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let actions = tokio::select! {
                _ = &mut stop => {
                    let actions = self.machine.shutdown(Instant::now());
                    self.carry_out(actions).await;
                    info!(vrid = self.config.vrid, "VRRP instance stopped");
                    return;
                }
                received = self.socket.recv() => match received {
                    Ok(packet) => {
                        let was_master = self.machine.state() == State::Master;
                        let actions = self.on_packet(&packet);
                        // A stalled master's step back (see the timer's arm).
                        if self.stepped_back_for_sync(was_master, &actions) {
                            synced_seen = true;
                        }
                        actions
                    }
                    Err(error) => {
                        warn!(vrid = self.config.vrid, %error, "receiving VRRP failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Vec::new()
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let was_master = self.machine.state() == State::Master;
                    let actions = self.on_deadline().await;
                    // A master stepping back (a link outage, a stall, see
                    // `Machine::link_up`): dumps counted since start
                    // cannot tell the one after it, the hold runs its
                    // course.
                    if self.stepped_back_for_sync(was_master, &actions) {
                        synced_seen = true;
                    }
                    actions
                }
                _ = check.tick() => {
                    if looking.is_none() {
                        looking = Some(self.periodic_look());
                    } else {
                        look_due = true;
                        debug!(vrid = self.config.vrid, "VRRP: the last look at the interface is still waiting for netlink; the next starts as it answers");
                    }
                    if let Some(mac) = self.mac_change.overdue(Instant::now()) {
                        self.adopt_mac(mac, false);
                    }
                    self.retry_release().await;
                    Vec::new()
                }
                look = periodic_look_done(&mut looking) => {
                    looking = std::mem::take(&mut look_due).then(|| self.periodic_look());
                    let present = self.on_addresses_read(look.addresses);
                    let actions = self.on_link_read(look.link);
                    if self.stepped_back(&actions) {
                        // Dumps counted since start cannot tell the one
                        // after the outage: the hold runs its course.
                        synced_seen = true;
                    }
                    if let Some(present) = present {
                        self.restore_addresses(&present).await;
                    }
                    actions
                }
                changed = data_plane_mac.changed(), if !data_plane_mac_closed => {
                    match changed {
                        Ok(()) => {
                            let mac = *data_plane_mac.borrow_and_update();
                            self.data_plane_mac = mac;
                            if let Some(mac) = self.mac_change.confirmed(mac) {
                                self.adopt_mac(mac, true);
                            }
                        }
                        Err(_) => data_plane_mac_closed = true,
                    }
                    Vec::new()
                }
                changed = synced.changed(), if !synced_seen => {
                    synced_seen = true;
                    if changed.is_ok() && *synced.borrow_and_update() {
                        if self.machine.holding_for_sync(Instant::now()) {
                            info!(vrid = self.config.vrid, "VRRP: the peer's connection table arrived; preemption no longer waits for it");
                        }
                        self.machine.peer_synced();
                    }
                    Vec::new()
                }
                changed = link_ups.changed(), if !link_ups_closed => match changed {
                    Ok(()) => {
                        link_ups.borrow_and_update();
                        let now = Instant::now();
                        // Tracking's latest too, taken with the link's
                        // weight given back by `link_up` itself, so the
                        // advert that goes with the announcements carries
                        // them.
                        if priority.has_changed().unwrap_or(false) {
                            self.tracked = *priority.borrow_and_update();
                        }
                        self.link.came_up(now, carrier_changes(&self.interface));
                        let back = self.on_link_back(now);
                        if self.stepped_back(&back) {
                            synced_seen = true;
                        }
                        back
                    }
                    Err(_) => {
                        link_ups_closed = true;
                        Vec::new()
                    }
                },
                changed = priority.changed() => match changed {
                    Ok(()) => {
                        self.tracked = *priority.borrow_and_update();
                        self.follow_priority(Instant::now())
                    }
                    Err(_) => Vec::new(),
                },
            };
            self.carry_out(actions).await;
            // A hold begun as the source came back (a look in any arm):
            // dumps counted since start cannot tell the one after it.
            if std::mem::take(&mut self.source_hold_began) {
                synced_seen = true;
            }
        }
    }

    /// The machine's deadline passed (see [`Machine::next_deadline`]).
    ///
    /// A backup looks at its link before it takes over: one that hears no
    /// master because its link is down must not (see
    /// [`Machine::on_timer`]), and with adverts 0.1 s apart its timer
    /// runs out before the next check. A master whose link was down looks
    /// before each advert: one back up hears of it first (see
    /// [`Machine::link_up`]), so no advert leaves with the priority
    /// lowered for the outage, nor one a replicating master must not
    /// send. And a master looks again when the carrier counter moved
    /// since the last look: an outage too short for the checks may have
    /// let the peer take over (see `LinkChange::Flapped`).
    ///
    /// Then the adverts already queued in the socket are heard (see
    /// [`Self::drain_queued`]) before the timer is acted on: a backup
    /// that did not run for a while (SIGSTOP, a cgroup freeze, a VM paused
    /// on a hypervisor that moves the guest clock on) wakes with both its
    /// timer run out and the live master's adverts waiting, and `select!`
    /// picks its arm at random: taking over first made the VIPs flap. A
    /// stalled master likewise hears first whether the peer took over
    /// (see [`Machine::stalled`]). Draining here, bounded, rather than a
    /// `biased` `select!` with the socket first: a flood of packets on
    /// the socket cannot keep the timer from ever firing.
    async fn on_deadline(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        let flapped = self.machine.state() == State::Master
            && !self.link.down
            && self
                .link
                .carrier_moved(carrier_changes(&self.interface), Instant::now());
        if self.machine.state() == State::Backup || self.link.down || flapped {
            actions = self.follow_link().await;
            // Logs a master's step back; the caller sees it in the actions.
            self.stepped_back(&actions);
        }
        actions.extend(self.drain_queued());
        let now = Instant::now();
        self.warn_if_stalled(now);
        actions.extend(self.machine.on_timer(now));
        actions
    }

    /// Whether `actions`, of a machine that `was_master`, step back to
    /// backup holding preemption for the peer's flows (a link outage or a
    /// stall, see [`Machine::link_up`], [`Machine::stalled`]).
    fn stepped_back_for_sync(&self, was_master: bool, actions: &[Action]) -> bool {
        was_master
            && actions.contains(&Action::BecomeBackup)
            && self.machine.holding_for_sync(Instant::now())
    }

    /// Says so when this master did not advertise for long enough that the
    /// peer may have taken over (see [`Machine::stalled`]): the machine
    /// reclaims the addresses or steps back, as after a link outage.
    fn warn_if_stalled(&self, now: Instant) {
        if !self.machine.stalled(now) {
            return;
        }
        let silent_ms = self
            .machine
            .silent_for(now)
            .map(|silence| u64::try_from(silence.as_millis()).unwrap_or(u64::MAX));
        warn!(
            vrid = self.config.vrid,
            silent_ms,
            "VRRP: no advert left this master for longer than the peer's master-down interval (lbd did not run: SIGSTOP, a cgroup freeze, a paused VM, starvation); the peer may have taken the VIPs, so this node reclaims them, or with replication steps down to backup until the peer's connection table is here"
        );
    }

    async fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => {
                    // An advert that did not leave tells the backup
                    // nothing: a restart must not resume mastership on it.
                    if self.send_advert(priority).await && priority > 0 {
                        self.record_state(Recorded::Master);
                    }
                }
                Action::BecomeMaster => {
                    info!(
                        vrid = self.config.vrid,
                        priority = self.machine.priority(),
                        "VRRP: became master"
                    );
                    self.transition(action).await;
                }
                Action::BecomeBackup if self.machine.source_is_gone() => {
                    warn!(vrid = self.config.vrid, master = ?self.machine.master_address(), "VRRP: became backup, giving up the VIPs: no address to send adverts from, so the peer hears none and takes over (keepalived's FAULT); this node does not take over until one is back");
                    self.transition(action).await;
                }
                Action::BecomeBackup => {
                    info!(vrid = self.config.vrid, master = ?self.machine.master_address(), "VRRP: became backup");
                    self.transition(action).await;
                }
                Action::BecomeInitialize => self.transition(action).await,
                Action::Reclaim => {
                    if self.holding {
                        info!(vrid = self.config.vrid, "VRRP: master again after the link was down or lbd did not run; announcing the VIPs again, in case the other node took them meanwhile");
                        self.announce(self.config.announce_count);
                    }
                }
                Action::Refresh => {
                    // Rounds still running (a claim, a reclaim) cover it.
                    if self.holding && !self.announcer.running() {
                        debug!(
                            vrid = self.config.vrid,
                            "VRRP: periodic announcement of the VIPs"
                        );
                        self.announce(1);
                    }
                }
                Action::Reannounce => {
                    info!(vrid = self.config.vrid, "VRRP: another router claims our addresses with a lower priority; announcing them again");
                    // Rounds still running (a claim just made) go on:
                    // one more round would cut them short.
                    if !self.announcer.running() {
                        self.announce(1);
                    }
                }
            }
        }
        self.publish();
    }
}

/// The protocol's settings of an instance's config.
fn settings_of(config: &VrrpConfig) -> Settings {
    Settings {
        vrid: config.vrid,
        priority: config.priority,
        adver_interval_cs: u16::try_from(config.advert_interval.as_millis() / 10).unwrap_or(100),
        preempt: config.preempt,
        preempt_delay: config.preempt_delay,
        // The master adds the addresses to the interface as its own, so
        // its kernel accepts what is sent to them (see `Settings::accept_mode`).
        accept_mode: true,
        announce_refresh: config.announce_refresh,
    }
}

#[cfg(test)]
mod tests;
