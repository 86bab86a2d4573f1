//! The machine's timer running out: the looks a backup or an outaged
//! master makes first, the adverts already queued heard before it, and
//! the warning of a master that stalled.

use std::time::Instant;

use tracing::warn;

use super::{link::carrier_changes, Driver};
use crate::vrrp::{Action, State};

impl Driver {
    /// The machine's deadline passed (see [`Machine::next_deadline`](crate::vrrp::Machine::next_deadline)).
    ///
    /// A backup looks at its link before it takes over: one that hears no
    /// master because its link is down must not (see
    /// [`Machine::on_timer`](crate::vrrp::Machine::on_timer)), and with adverts 0.1 s apart its timer
    /// runs out before the next check. A master whose link was down looks
    /// before each advert: one back up hears of it first (see
    /// [`Machine::link_up`](crate::vrrp::Machine::link_up)), so no advert leaves with the priority
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
    /// (see [`Machine::stalled`](crate::vrrp::Machine::stalled)). Draining here, bounded, rather than a
    /// `biased` `select!` with the socket first: a flood of packets on
    /// the socket cannot keep the timer from ever firing.
    pub(super) async fn on_deadline(&mut self) -> Vec<Action> {
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
    /// stall, see [`Machine::link_up`](crate::vrrp::Machine::link_up), [`Machine::stalled`](crate::vrrp::Machine::stalled)).
    pub(super) fn stepped_back_for_sync(&self, was_master: bool, actions: &[Action]) -> bool {
        was_master
            && actions.contains(&Action::BecomeBackup)
            && self.machine.holding_for_sync(Instant::now())
    }

    /// Says so when this master did not advertise for long enough that the
    /// peer may have taken over (see [`Machine::stalled`](crate::vrrp::Machine::stalled)): the machine
    /// reclaims the addresses or steps back, as after a link outage.
    pub(super) fn warn_if_stalled(&self, now: Instant) {
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
}
