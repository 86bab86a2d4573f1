//! The driver's event loop: one `select!` over the wire, the machine's
//! timer, the periodic look at the interface and the instance's inputs,
//! apart from the handling of each, which lives with its concern.

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{
    link::carrier_changes,
    looks::{periodic_look_done, PeriodicLookFuture},
    Driver, Inputs, ADDRESS_CHECK,
};
use crate::vrrp::{machine::PREEMPT_SYNC_HOLD, State};

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
    /// after [`addresses::NETLINK_LIMIT`](crate::vrrp::addresses::NETLINK_LIMIT)) thus never delays an advert nor
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
    pub(super) async fn run(
        mut self,
        inputs: Inputs,
        resume: bool,
        sync_hold: bool,
        replicates: bool,
    ) {
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
}
