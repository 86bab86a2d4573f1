//! One VRRP instance at work: a tokio task, on the VRRP thread's runtime
//! (see [`super::runtime`]), that feeds the pure state
//! machine with adverts from the wire, timer expiries and priority changes
//! (tracking), and carries out what it decides: adverts on the wire, the
//! VIP addresses added (with gratuitous ARP / unsolicited NA) or removed
//! over rtnetlink, notify commands. Stale addresses left by a crash are
//! removed at start, before the instance speaks; while master, the
//! addresses are checked every [`ADDRESS_CHECK`] and put back (and
//! announced) if something removed them.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use super::{
    addresses,
    announce::Announcer,
    complaints::{self, Complaints},
    machine::PREEMPT_SYNC_HOLD,
    net::{Received, VrrpSocket},
    validate_from, Action, Advertisement, ChecksumMode, DecodeError, Family, Invalid, Machine,
    Settings, State,
};
use crate::{
    config::VrrpConfig,
    netlink::{Interface, InterfaceAddress, Netlink},
    sync::log_limit::LogLimit,
};

mod instance;
mod link;
mod looks;
mod mac_change;
mod notify;
mod record;
mod send_failures;
mod source;
mod status;
mod transitions;

pub use self::status::InstanceStatus;
pub(crate) use self::{
    instance::{Instance, Prepared},
    notify::{wait_for_notifies, Notifies, NOTIFY_GRACE},
};
use self::{
    link::{carrier_changes, with_link_weight, LinkChange, LinkWatch, LINK_QUERY_LOG_EVERY},
    looks::{
        newer_look, periodic_look_done, AddressRead, LinkRead, Looks, PeriodicLook,
        PeriodicLookFuture,
    },
    mac_change::{MacChange, MAC_CONFIRM_LIMIT},
    notify::spawn_notify,
    record::{Record, Recorded},
    send_failures::{SendFailures, SEND_FAILURE_LOG_EVERY},
    source::{
        check_source, no_source_message, source_may_be_stale, source_recheck_due, SourceCheck,
        SourceKind,
    },
    status::unix_seconds,
    transitions::{transition_steps, Step},
};

/// How often a master checks that its addresses are still on the
/// interface (a link down/up drops IPv6 ones; networkd may drop any).
const ADDRESS_CHECK: Duration = Duration::from_millis(500);

/// Most packets read from the socket's queue before the timer is acted on
/// (see `Driver::drain_queued`): every advert a stall of a few seconds
/// queues at the fastest interval (10 ms), while a flood still lets the
/// timer fire.
const DRAIN_LIMIT: usize = 1024;

/// Sends one gratuitous ARP / NA: `announce::announce` (interface index,
/// MAC, address) in lbd; tests record what would have left.
type AnnounceFn = Arc<dyn Fn(u32, [u8; 6], IpAddr) -> std::io::Result<()> + Send + Sync>;

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
    /// answers of looks begun earlier are stale (see [`newer_look`]).
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
    /// [`source_recheck_due`]).
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
    /// after [`addresses::NETLINK_LIMIT`]) thus never delays an advert nor
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

    /// Hands the machine the packets already queued in the socket, at most
    /// [`DRAIN_LIMIT`], without waiting (see [`Self::on_deadline`]); what
    /// it decided.
    fn drain_queued(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        for _ in 0..DRAIN_LIMIT {
            match self.socket.try_recv() {
                Ok(Some(packet)) => actions.extend(self.on_packet(&packet)),
                Ok(None) => break,
                Err(error) => {
                    debug!(vrid = self.config.vrid, %error, "VRRP: reading the queued packets failed; the receive arm reads on");
                    break;
                }
            }
        }
        actions
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

    fn ignore(&mut self, label: &str) -> Vec<Action> {
        *self.ignored.entry(label.to_owned()).or_default() += 1;
        self.publish();
        Vec::new()
    }

    fn on_packet(&mut self, packet: &Received) -> Vec<Action> {
        if packet.src == self.socket.local() {
            return Vec::new(); // our own, looped back
        }
        let (ad, _mode) = match Advertisement::decode(&packet.payload, packet.src, packet.dst) {
            Ok(decoded) => decoded,
            Err(error) => {
                if matches!(error, DecodeError::Checksum) {
                    self.complain(error.label(), packet.src, &error, None);
                } else if let Some(version) =
                    complaints::other_version_for(&error, &packet.payload, self.config.vrid)
                {
                    let why = format!("VRRP version {version} with our VRID {}: each router ignores the other's adverts, so both may be master; keepalived speaks version 2 unless its vrrp_instance sets `vrrp_version 3`", self.config.vrid);
                    self.complain(error.label(), packet.src, &why, None);
                } else {
                    debug!(vrid = self.config.vrid, src = %packet.src, %error, "malformed VRRP packet ignored");
                }
                return self.ignore(error.label());
            }
        };
        if let Err(invalid) = validate_from(
            &ad,
            packet.ttl,
            Some(packet.src),
            self.config.vrid,
            &self.config.addresses,
            &self.config.unicast_peers,
            self.config.unicast_peer_hops,
        ) {
            match invalid {
                // Another virtual router on the link: not a fault.
                Invalid::OtherVrid(_) => {}
                Invalid::AddressMismatch => {
                    let differing = complaints::differing(&ad.addresses, &self.config.addresses);
                    self.complain(invalid.label(), packet.src, &invalid, Some(differing));
                }
                Invalid::Ttl(_) if self.config.unicast_peers.contains(&packet.src) => {
                    let why = format!("{invalid} from unicast peer {}, which allows {} router hop(s) (unicast_peer_hops): if routers lie between the peers, set unicast_peer_hops to their number; otherwise this advert was forged from off the link", packet.src, self.config.unicast_peer_hops);
                    self.complain(invalid.label(), packet.src, &why, None);
                }
                Invalid::Ttl(_) if !self.config.unicast_peers.is_empty() => {
                    let why = format!("{invalid} from a sender that is none of unicast_peers (a peer's adverts may be routed: list the address they come from, and set unicast_peer_hops)");
                    self.complain(invalid.label(), packet.src, &why, None);
                }
                Invalid::Ttl(_) => self.complain(invalid.label(), packet.src, &invalid, None),
            }
            return self.ignore(invalid.label());
        }
        let now = Instant::now();
        self.warn_if_stalled(now);
        self.machine.on_advert(&ad, packet.src, now)
    }

    /// Warns (at most once a minute per reason and peer) about an advert
    /// from `peer` ignored for a fault on the link: an address list other
    /// than ours (`differing`: only theirs, only ours), which leaves both
    /// routers master, a TTL that says it was routed, a bad checksum.
    fn complain(
        &mut self,
        reason: &'static str,
        peer: IpAddr,
        error: &dyn std::fmt::Display,
        differing: Option<(Vec<IpAddr>, Vec<IpAddr>)>,
    ) {
        let Some(suppressed) = self.complaints.allow(reason, peer, Instant::now()) else {
            return;
        };
        let vrid = self.config.vrid;
        match differing {
            Some((only_theirs, only_ours)) => warn!(
                vrid,
                %peer,
                reason,
                only_theirs = ?only_theirs,
                only_ours = ?only_ours,
                suppressed,
                "VRRP advert ignored: {error}; each router ignores the other's adverts, so both may be master: give both the same addresses"
            ),
            None => warn!(vrid, %peer, reason, suppressed, "VRRP advert ignored: {error}"),
        }
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

    /// Carries out the steps of the change of state `action` (see
    /// [`transition_steps`]), in order.
    async fn transition(&mut self, action: Action) {
        for step in transition_steps(action).unwrap_or_default() {
            match *step {
                Step::Record(state) => self.record_state(state),
                Step::TakeAddresses => self.take_addresses().await,
                Step::ReleaseAddresses => self.release_addresses().await,
                Step::Notify(state) => self.notify(state),
            }
        }
    }

    /// Sends an advert of `priority` to the group or each unicast peer;
    /// whether every one left. A send refused for its source looks at the
    /// interface's addresses again and, if the source moved, sends once
    /// more from the new one.
    async fn send_advert(&mut self, priority: u8) -> bool {
        let ad = Advertisement {
            vrid: self.config.vrid,
            priority,
            max_adver_int_cs: self.machine.settings().adver_interval_cs,
            addresses: self.config.addresses.clone(),
        };
        let targets: Vec<IpAddr> = if self.config.unicast_peers.is_empty() {
            vec![Family::of(&self.socket.local()).multicast_group()]
        } else {
            self.config.unicast_peers.clone()
        };
        let mut all_sent = true;
        for dst in targets {
            let mut result = self.send_to(&ad, dst).await;
            if let Err(error) = &result {
                let now = Instant::now();
                if source_may_be_stale(error) && source_recheck_due(self.source_checked_at, now) {
                    self.source_checked_at = Some(now);
                    if self.follow_source().await {
                        result = self.send_to(&ad, dst).await;
                    }
                }
            }
            if let Err(error) = result {
                if let Some(suppressed) = self.send_failures.failed(Instant::now()) {
                    warn!(vrid = self.config.vrid, %dst, from = %self.socket.local(), %error, suppressed, "sending a VRRP advert failed (while they fail, logged at most every {} s, with the failures left unsaid)", SEND_FAILURE_LOG_EVERY.as_secs());
                }
                all_sent = false;
            }
        }
        if all_sent {
            if let Some(failed) = self.send_failures.sent() {
                info!(
                    vrid = self.config.vrid,
                    failed, "VRRP adverts leave again after failed sends"
                );
            }
        }
        all_sent
    }

    /// Encodes `ad` from the current source to `dst` and sends it.
    async fn send_to(&self, ad: &Advertisement, dst: IpAddr) -> std::io::Result<()> {
        let local = self.socket.local();
        // keepalived 2.2.7 sends (and expects) the IPv4 pseudo-header.
        let payload = ad
            .encode(local, dst, ChecksumMode::PseudoHeader)
            .map_err(|error| std::io::Error::other(format!("encoding the advert: {error}")))?;
        self.socket.send(&payload, dst).await
    }

    /// Looks again at the address adverts go from, at once (after a
    /// failed send; see [`Self::on_addresses_read`]); whether it moved.
    async fn follow_source(&mut self) -> bool {
        let read = self.looks.read_addresses(self.interface.index).await;
        let current = self.socket.local();
        self.on_addresses_read(read);
        self.socket.local() != current
    }

    /// The periodic look at the interface, to run beside the loop's other
    /// arms (see [`Self::run`]).
    fn periodic_look(&self) -> PeriodicLookFuture {
        let addresses = self.looks.read_addresses(self.interface.index);
        let link = self.looks.read_link(&self.interface);
        Box::pin(async move {
            let (addresses, link) = tokio::join!(addresses, link);
            PeriodicLook { addresses, link }
        })
    }

    /// Takes a look at the interface's addresses: the advert source
    /// ([`Self::follow_present_source`]); the addresses, if they were read
    /// and no later look was taken before (see [`newer_look`]). A failure
    /// to look is left to the next check.
    fn on_addresses_read(&mut self, read: AddressRead) -> Option<Vec<InterfaceAddress>> {
        if !newer_look(&mut self.addresses_read_from, read.started) {
            return None;
        }
        match read.present {
            Ok(present) => {
                self.follow_present_source(&present);
                Some(present)
            }
            Err(error) => {
                debug!(
                    vrid = self.config.vrid,
                    error = format!("{error:#}"),
                    "reading the interface's addresses for the VRRP source failed"
                );
                None
            }
        }
    }

    /// Checks the address adverts go from against `present`, the
    /// interface's addresses (see [`check_source`]) and, if it moved,
    /// sends from the new one from now on; whether it moved.
    fn follow_present_source(&mut self, present: &[InterfaceAddress]) -> bool {
        let current = self.socket.local();
        let kind = SourceKind::of_instance(Family::of(&current), &self.config);
        match check_source(current, present, kind, &self.never) {
            SourceCheck::Keep => {
                self.source_returned();
                false
            }
            SourceCheck::Switch(next) => {
                if let Err(error) = self.socket.set_local(next) {
                    warn!(vrid = self.config.vrid, %current, %next, %error, "VRRP: cannot send from the interface's new address");
                    return false;
                }
                self.machine.set_primary_address(next);
                self.source_returned();
                info!(
                    vrid = self.config.vrid,
                    interface = %self.interface.name,
                    from = %current,
                    to = %next,
                    "VRRP: the interface's address changed; adverts now go from the new one"
                );
                self.publish();
                true
            }
            SourceCheck::Gone => {
                if !self.machine.source_is_gone() {
                    let meaning = match self.machine.state() {
                        State::Master => "this master announces nothing meanwhile, and gives up mastership and the VIPs (keepalived's FAULT) as soon as it hears the peer take over, or once the peer may have",
                        State::Backup => "this backup does not take over meanwhile: the pair has no standby if the master fails",
                        State::Initialize => "the instance is not running",
                    };
                    warn!(
                        vrid = self.config.vrid,
                        interface = %self.interface.name,
                        address = %current,
                        state = %self.machine.state(),
                        missing = no_source_message(&self.interface.name, present, kind, &self.never),
                        "VRRP: the address adverts go from is gone from the interface, with none to replace it; adverts fail (IPv6: leave from the old address) until one is back; {meaning}"
                    );
                    self.machine.source_gone(Instant::now());
                    self.publish();
                }
                false
            }
        }
    }

    /// A look found an address to send adverts from: if none was found
    /// before, the machine hears of it (see [`Machine::source_back`]).
    fn source_returned(&mut self) {
        let Some(since) = self.machine.source_gone_since() else {
            return;
        };
        let now = Instant::now();
        info!(
            vrid = self.config.vrid,
            interface = %self.interface.name,
            gone_ms = u64::try_from(now.saturating_duration_since(since).as_millis()).unwrap_or(u64::MAX),
            state = %self.machine.state(),
            "VRRP: the interface has an address to send adverts from again"
        );
        if self.machine.source_back(now) {
            info!(
                vrid = self.config.vrid,
                hold_s = PREEMPT_SYNC_HOLD.as_secs(),
                "VRRP: this node gave up mastership for want of a source; preemption waits for the peer's connection table, so its connections are not cut"
            );
            self.source_hold_began = true;
        }
        self.publish();
    }

    async fn take_addresses(&mut self) {
        for address in &self.config.addresses {
            let prefix = addresses::host_prefix(*address);
            if let Err(error) = addresses::bounded(
                format!("adding VIP {address} to {}", self.interface.name),
                self.netlink
                    .add_address(self.interface.index, *address, prefix),
            )
            .await
            {
                warn!(vrid = self.config.vrid, %address, error = format!("{error:#}"), "adding a VIP failed");
            }
        }
        self.holding = true;
        self.announce(self.config.announce_count);
    }

    /// Sends `count` rounds of gratuitous ARP / NA for the addresses,
    /// `announce_interval` apart, replacing rounds still in flight. None
    /// while the interface's new MAC waits for the data plane (see
    /// [`MacChange`]): following it announces in full.
    fn announce(&mut self, count: u32) {
        if self.mac_change.waiting() {
            debug!(
                vrid = self.config.vrid,
                "VRRP: announcement held until the data plane accepts the interface's new MAC"
            );
            return;
        }
        let (index, mac, addresses) = (
            self.interface.index,
            self.interface.mac,
            self.config.addresses.clone(),
        );
        let announce_with = self.announce_with.clone();
        self.announcer
            .start(count, self.config.announce_interval, move || {
                for address in &addresses {
                    if let Err(error) = announce_with(index, mac, *address) {
                        warn!(%address, %error, "announcing a VIP failed");
                    }
                }
                std::future::ready(())
            });
    }

    /// Looks at the interface's link at once (see [`Self::on_link_read`]).
    async fn follow_link(&mut self) -> Vec<Action> {
        let read = self.looks.read_link(&self.interface).await;
        self.on_link_read(read)
    }

    /// Takes a look at the interface's link, unless a later one was taken
    /// before (see [`newer_look`]): tells the machine of an outage and of
    /// its end (see [`Machine::link_down`], [`Machine::link_up`]), and
    /// follows its MAC ([`Self::follow_mac`]); what the machine decided.
    /// Looks that fail (or got no answer in time) are warned about
    /// (rate-limited), and enough of them end an outage (see
    /// [`LinkWatch::failed`]).
    fn on_link_read(&mut self, read: LinkRead) -> Vec<Action> {
        if !newer_look(&mut self.link_read_from, read.started) {
            return Vec::new();
        }
        let state = match read.state {
            Ok(state) => state,
            Err(error) => {
                let now = Instant::now();
                let change = self.link.failed(now);
                if let Some(suppressed) = self.link_query_log.allow(now) {
                    warn!(vrid = self.config.vrid, error = format!("{error:#}"), failing = self.link.failing, suppressed, "VRRP: reading the interface's link failed (while it fails, logged at most every {} s, with the failures left unsaid)", LINK_QUERY_LOG_EVERY.as_secs());
                }
                if change != Some(LinkChange::Up) {
                    return Vec::new();
                }
                warn!(
                    vrid = self.config.vrid,
                    failing = self.link.failing,
                    "VRRP: the interface's link cannot be read; its outage counts as over (unknown is not down), so a backup's timer runs again"
                );
                return self.on_link_back(now);
            }
        };
        let now = Instant::now();
        let carrier = read.carrier;
        let actions = match state
            .as_ref()
            .and_then(|state| self.link.saw_counting(state.up, carrier, now))
        {
            Some(LinkChange::Down(since)) => {
                self.machine.link_down(since);
                self.warn_link_down();
                // The link's weight off; sent with the next advert that
                // leaves (none while the link is down, see
                // `Machine::set_priority`).
                self.follow_priority(now)
            }
            Some(LinkChange::Up) => {
                if let Some(since) = self.machine.link_down_since() {
                    info!(
                        vrid = self.config.vrid,
                        interface = %self.interface.name,
                        down_ms = u64::try_from(now.saturating_duration_since(since).as_millis()).unwrap_or(u64::MAX),
                        "VRRP: the interface's link is up again"
                    );
                }
                self.on_link_back(now)
            }
            Some(LinkChange::Flapped(since)) => {
                info!(
                    vrid = self.config.vrid,
                    interface = %self.interface.name,
                    "VRRP: the interface's carrier went down and up again between two looks"
                );
                self.machine.link_down(since);
                self.on_link_back(now)
            }
            None => Vec::new(),
        };
        self.follow_mac(state.and_then(|state| state.mac), now);
        actions
    }

    /// Says that the checks found the interface's link down, why, and
    /// what it means for the pair (keepalived's FAULT): no standby while a
    /// backup's link is down, a master keeping its mastership on a dead
    /// link (the peer likely takes over, so both report master).
    fn warn_link_down(&self) {
        let meaning = match self.machine.state() {
            State::Backup => "this backup does not take over while it is down: the pair has no standby if the master fails",
            State::Master => "this master keeps its mastership (and the VIPs) meanwhile; the peer, hearing no adverts, likely takes over, so both report master until the link is back",
            State::Initialize => "the instance is not running",
        };
        warn!(
            vrid = self.config.vrid,
            interface = %self.interface.name,
            state = %self.machine.state(),
            reason = "the interface is not up: administratively down, without carrier, or not operationally up",
            "VRRP: the interface's link is down; {meaning}"
        );
    }

    /// The priority the machine is to run with now: tracking's, less the
    /// link's weight while the checks see the link down (see
    /// [`with_link_weight`]).
    fn priority_now(&self) -> u8 {
        with_link_weight(
            self.config.priority,
            self.tracked,
            self.config.track_interface,
            self.link.down,
        )
    }

    /// Hands the machine [`Self::priority_now`] if it changed (advertised
    /// at once by a master whose link is up).
    fn follow_priority(&mut self, now: Instant) -> Vec<Action> {
        let priority = self.priority_now();
        if priority == self.machine.priority() {
            return Vec::new();
        }
        info!(vrid = self.config.vrid, priority, "VRRP priority changed");
        self.machine.set_priority(priority, now)
    }

    /// The link is back (the checks saw it, or tracking told of it and
    /// the watch knows): the machine hears of it with the priority the
    /// link brings back (see [`Machine::link_up`]).
    fn on_link_back(&mut self, now: Instant) -> Vec<Action> {
        let priority = self.priority_now();
        if priority != self.machine.priority() {
            info!(vrid = self.config.vrid, priority, "VRRP priority changed");
        }
        self.machine.link_up(now, priority)
    }

    /// Whether `actions` (of [`Machine::link_up`]) are a master stepping
    /// back to backup after a long outage; if so, says so.
    fn stepped_back(&self, actions: &[Action]) -> bool {
        let back = actions.contains(&Action::BecomeBackup);
        if back {
            warn!(
                vrid = self.config.vrid,
                hold_s = PREEMPT_SYNC_HOLD.as_secs(),
                "VRRP: the link is back after an outage long enough for the peer to have taken over; stepping down to backup, so its connections are not cut, until its connection table is here"
            );
        }
        back
    }

    /// Follows the interface's MAC when it changed under lbd (a bond's
    /// `fail_over_mac`, `ip link set address`), `seen` at `now`: once the
    /// data plane accepts frames for it (see [`MacChange`]), announcements
    /// carry it ([`Self::adopt_mac`]). Until then announcements wait, and
    /// rounds still running with the old MAC stop: they would draw the
    /// neighbours back to a MAC the interface no longer has.
    fn follow_mac(&mut self, seen: Option<[u8; 6]>, now: Instant) {
        let was_waiting = self.mac_change.waiting();
        if let Some(mac) = self
            .mac_change
            .seen(self.interface.mac, seen, self.data_plane_mac, now)
        {
            self.adopt_mac(mac, true);
        } else if self.mac_change.waiting() && !was_waiting {
            self.announcer.cancel();
            info!(
                vrid = self.config.vrid,
                interface = %self.interface.name,
                "VRRP: the interface's MAC changed; announcing the VIPs with the new one once the data plane accepts frames for it"
            );
        }
    }

    /// Takes `mac` as the interface's MAC; while master the addresses are
    /// announced again at once, since the neighbours still send the VIPs'
    /// traffic to the old MAC. `confirmed`: the data plane accepts frames
    /// for it; otherwise the engine did not tell within
    /// [`MAC_CONFIRM_LIMIT`], and a warning says so.
    fn adopt_mac(&mut self, mac: [u8; 6], confirmed: bool) {
        self.interface.mac = mac;
        if !confirmed {
            warn!(
                vrid = self.config.vrid,
                interface = %self.interface.name,
                "VRRP: the interface's MAC changed, and lbd's data plane did not take it within {} s; following it all the same (frames to it may be passed up unbalanced until the data plane takes it)",
                MAC_CONFIRM_LIMIT.as_secs()
            );
        }
        if self.holding && self.machine.state() == State::Master {
            info!(
                vrid = self.config.vrid,
                interface = %self.interface.name,
                "VRRP: announcing the VIPs with the interface's new MAC"
            );
            self.announce(self.config.announce_count);
        }
    }

    /// While master: puts back addresses missing from `present` (the
    /// interface's, just read), and announces them again.
    async fn restore_addresses(&mut self, present: &[InterfaceAddress]) {
        if !self.holding || self.machine.state() != State::Master {
            return;
        }
        let gone = addresses::missing(present, &self.config.addresses);
        if gone.is_empty() {
            return;
        }
        warn!(vrid = self.config.vrid, missing = ?gone, "VIP addresses vanished from the interface while master; adding them back");
        self.take_addresses().await;
    }

    /// Gives the addresses up. One whose removal failed keeps `holding`
    /// set, and the next check tries again (`retry_release`): a backup
    /// that kept a VIP would answer ARP / ND for it beside the master.
    async fn release_addresses(&mut self) {
        // No more claims, even if rounds of the last one are still due.
        self.announcer.cancel();
        if !self.holding {
            return;
        }
        let mut failed = false;
        for address in &self.config.addresses {
            if let Err(error) =
                addresses::remove(&self.netlink, self.interface.index, *address).await
            {
                if self.release_failing {
                    debug!(vrid = self.config.vrid, %address, error = format!("{error:#}"), "removing a VIP failed again");
                } else {
                    warn!(vrid = self.config.vrid, %address, error = format!("{error:#}"), "removing a VIP failed; tried again at each check (0.5 s) while lbd runs; after a stop, `lbd --release-vips` removes it");
                }
                failed = true;
            }
        }
        self.holding = failed;
        if self.release_failing && !failed {
            info!(
                vrid = self.config.vrid,
                "VRRP: the VIPs a failed removal left are removed"
            );
        }
        self.release_failing = failed;
    }

    /// While not master: gives up the addresses a release could not
    /// remove (see `release_addresses`).
    async fn retry_release(&mut self) {
        if self.holding && self.machine.state() != State::Master {
            self.release_addresses().await;
        }
    }

    /// Records the state, when, and the advert interval this instance
    /// advertises (centiseconds), for the next lbd after a restart (see
    /// [`resume_window`](record::resume_window)). A tiny write to a tmpfs, once per advert while
    /// master.
    fn record_state(&self, state: Recorded) {
        if let Some(path) = &self.state_file {
            let record = Record {
                state,
                at: crate::clock::monotonic_ns(),
                advertised: Some(self.machine.settings().adver_interval_cs),
            };
            if let Err(error) = std::fs::write(path, record.line()) {
                debug!(path = %path.display(), %error, "recording the VRRP state failed");
            }
        }
    }

    fn notify(&self, state: &str) {
        spawn_notify(&self.notifies, &self.config, state);
    }

    fn publish(&self) {
        let status = InstanceStatus {
            vrid: self.config.vrid,
            state: self.machine.state(),
            configured_priority: self.config.priority,
            priority: self.machine.priority(),
            master: match self.machine.state() {
                State::Master => Some(self.socket.local()),
                _ => self.machine.master_address(),
            },
            addresses: self.config.addresses.clone(),
            counters: *self.machine.counters(),
            ignored: self.ignored.clone(),
            link_down: self.machine.link_is_down(),
            link_down_since: self.machine.link_down_since().map(unix_seconds),
            no_source: self.machine.source_is_gone(),
            no_source_since: self.machine.source_gone_since().map(unix_seconds),
        };
        self.status.send_replace(status);
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
