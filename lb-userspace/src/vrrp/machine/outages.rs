//! When adverts cannot flow: a link outage, an interface without an
//! address to send from, a master that did not run (a stall). Each decides
//! whether this router keeps, reclaims or gives up mastership once it is
//! over, so that it never takes back addresses a peer holds live
//! connections on, nor keeps ones it cannot defend.

use std::time::{Duration, Instant};

use super::{after, Action, Machine, State};

impl Machine {
    /// Whether this master sent no advert for so long that the peer may
    /// have gone its Master_Down_Interval without one and taken over (see
    /// [`Self::peer_may_have_taken_over`]): lbd did not run (SIGSTOP, a
    /// cgroup freeze, a VM paused for a migration or a snapshot, a swap
    /// storm), and its Adver_Timer fires, or the first event is handled,
    /// that much late. Only with the link up: an outage seen is
    /// [`Self::link_up`]'s to settle. A guest whose clock stopped with it
    /// (KVM) cannot see its pause here;
    /// [`Settings::announce_refresh`](super::Settings::announce_refresh)
    /// bounds that case.
    pub(crate) fn stalled(&self, now: Instant) -> bool {
        self.silent_for(now)
            .is_some_and(|silence| silence >= self.settings.shortest_master_down_interval())
    }

    /// How long since this master's last advert, as its Adver_Timer tells
    /// (each advert sets it one interval ahead); `None` unless master with
    /// the link up. For [`Self::stalled`] and the driver's log of it.
    pub(crate) fn silent_for(&self, now: Instant) -> Option<Duration> {
        if self.state != State::Master || self.link_is_down() {
            return None;
        }
        let at = self.adver_at?;
        Some(
            now.saturating_duration_since(at)
                .saturating_add(self.adver_interval()),
        )
    }

    /// A master that was stalled (see [`Self::stalled`]) treats the stall
    /// as a link outage that began with its last advert (see
    /// [`Self::link_up`]): with replication it steps back to backup, with
    /// no advert, and holds preemption for the peer's flows; otherwise it
    /// advertises and re-announces the addresses in full
    /// ([`Action::Reclaim`]): a peer that took over moved the neighbours
    /// to its MAC and steps down on our advert without a word.
    pub(super) fn after_stall(&mut self, now: Instant) -> Vec<Action> {
        if let Some(limit) = self.outage_hold {
            return self.step_back_for_sync(now, limit);
        }
        self.reclaim(now)
    }

    /// Advertises at once and re-announces the addresses in full (see
    /// [`Action::Reclaim`]); that covers a re-announcement or a refresh
    /// due now, so both count from here.
    pub(super) fn reclaim(&mut self, now: Instant) -> Vec<Action> {
        self.adver_at = Some(after(now, self.adver_interval()));
        self.reannounced_at = Some(now);
        if let Some(every) = self.settings.announce_refresh {
            self.refresh_at = Some(after(now, every));
        }
        let mut actions = vec![self.send(self.priority)];
        if !self.source_is_gone() {
            actions.push(Action::Reclaim);
        }
        actions
    }

    /// The interface's link was seen down; `since` is the last time it was
    /// seen up, the earliest it may have gone down. An outage already
    /// under way keeps its start. Ended by [`Self::link_up`]. Meanwhile a
    /// backup does not take over (keepalived's FAULT state: hearing no
    /// master says nothing then), and a master keeps its mastership.
    pub(crate) fn link_down(&mut self, since: Instant) {
        if self.link_down_since.is_none() {
            self.link_down_since = Some(since);
        }
    }

    /// Whether a link outage is under way (see [`Self::link_down`]).
    pub(crate) fn link_is_down(&self) -> bool {
        self.link_down_since.is_some()
    }

    /// When the outage under way began at the earliest (see
    /// [`Self::link_down`]), for status; `None` while the link is up.
    pub(crate) fn link_down_since(&self) -> Option<Instant> {
        self.link_down_since
    }

    /// The interface has no address adverts can go from (networkd
    /// removed it, a DHCP lease lapsed, it was renumbered away), first
    /// seen at `since`; a source gone already keeps its start. Ended by
    /// [`Self::source_back`]. keepalived's FAULT for want of an address:
    /// no advert leaves, so the peer takes over after its
    /// Master_Down_Interval, and a master that kept the addresses would
    /// pull the neighbours back from it with every announcement. So a
    /// master claims nothing meanwhile (no [`Action::Reannounce`],
    /// [`Action::Refresh`] or [`Action::Reclaim`]) and gives mastership
    /// and the addresses up ([`Action::BecomeBackup`], no advert): at once
    /// on hearing another router claim them, else once the peer may have
    /// taken over (see [`Self::on_timer`]). A source back before then
    /// changes nothing. A backup does not take over meanwhile: it hears no
    /// master, if none, for want of its own address, and as master it
    /// could not tell the peer.
    pub(crate) fn source_gone(&mut self, since: Instant) {
        if self.source_gone_since.is_none() {
            self.source_gone_since = Some(since);
        }
    }

    /// Whether no advert can leave for want of a source (see
    /// [`Self::source_gone`]).
    pub(crate) fn source_is_gone(&self) -> bool {
        self.source_gone_since.is_some()
    }

    /// When the source was first seen gone (see [`Self::source_gone`]),
    /// for status; `None` while there is one.
    pub(crate) fn source_gone_since(&self) -> Option<Instant> {
        self.source_gone_since
    }

    /// An address to send adverts from is back at `now` (see
    /// [`Self::source_gone`]). A master that kept mastership (the source
    /// back before the peer may have taken over) goes on. A backup starts
    /// its Master_Down_Timer afresh, as after a link outage (see
    /// [`Self::link_up`]): it heard nothing it could answer, and wins
    /// mastership back by the usual rules, preempting a lower-priority
    /// master. One that gave mastership up, with replication (see
    /// [`Self::hold_after_outages`]), holds that preemption until the
    /// peer's flows are here or the hold ends, as at start: the peer
    /// opened connections meanwhile. Whether such a hold began.
    pub(crate) fn source_back(&mut self, now: Instant) -> bool {
        if self.source_gone_since.take().is_none() {
            return false;
        }
        let gave_up = std::mem::take(&mut self.gave_up_for_source);
        if self.state != State::Backup {
            return false;
        }
        self.master_down_at = Some(after(now, self.master_down_interval()));
        match self.outage_hold {
            Some(limit) if gave_up => {
                self.hold_preemption(now, limit);
                true
            }
            _ => false,
        }
    }

    /// Whether a backup must not take over: its link is down (see
    /// [`Self::link_down`]) or no advert can leave (see
    /// [`Self::source_gone`]).
    pub(super) fn faulted(&self) -> bool {
        self.link_is_down() || self.source_is_gone()
    }

    /// When a master without a source gives mastership up (see
    /// [`Self::source_gone`]): as the peer may have gone its
    /// Master_Down_Interval without our adverts (see
    /// [`Self::peer_may_have_taken_over`]). `None` with a source, or not
    /// master.
    pub(super) fn give_up_at(&self) -> Option<Instant> {
        if self.state != State::Master {
            return None;
        }
        let since = self.source_gone_since?;
        let left = self
            .settings
            .shortest_master_down_interval()
            .saturating_sub(self.adver_interval());
        Some(after(since, left))
    }

    /// Whether a master without a source is due to give mastership up at
    /// `now` (see [`Self::give_up_at`]).
    pub(super) fn source_gone_too_long(&self, now: Instant) -> bool {
        self.source_gone_since
            .is_some_and(|since| self.peer_may_have_taken_over(since, now))
    }

    /// From master to backup for want of a source (see
    /// [`Self::source_gone`]): no advert (none can leave), the addresses
    /// released by [`Action::BecomeBackup`].
    pub(super) fn give_up_for_source(&mut self, now: Instant) -> Vec<Action> {
        self.gave_up_for_source = true;
        self.step_down(now)
    }

    /// The interface's link came back up, and `priority` is the effective
    /// priority it brings back (the link's tracking weight given back):
    /// taken first, without an advert of its own, so the advert below
    /// carries it, not the one lowered for the outage.
    ///
    /// A master that kept its
    /// mastership (and its addresses) through the outage could not hear
    /// the other router, which took over and moved the neighbours to its
    /// own MAC: if our next advert reaches it before its adverts reach us,
    /// it steps down silently and nothing announces the addresses back.
    /// So a master advertises at once and re-announces them in full
    /// ([`Action::Reclaim`]); a stopped instance has nothing to say. A
    /// master now was one when the outage began: a backup does not take
    /// over while the link is down (see [`Self::on_timer`]). A backup
    /// after a known outage ([`Self::link_down`]) starts its
    /// Master_Down_Timer afresh: it heard nothing for want of a link, not
    /// for want of a master.
    ///
    /// With replication ([`Self::hold_after_outages`]) and an outage seen
    /// ([`Self::link_down`]) long enough for the peer to have taken over,
    /// the peer holds connections this node does not have (it opened them
    /// while master, and the sync session was cut too): taking the
    /// addresses back would cut them. The master steps down to backup
    /// instead, without an advert, and holds preemption again until the
    /// peer's flows are here or the hold ends, as at start; a peer that
    /// is not master after all is taken over from after one
    /// Master_Down_Interval, as ever.
    pub(crate) fn link_up(&mut self, now: Instant, priority: u8) -> Vec<Action> {
        let outage = self.link_down_since.take();
        if self.state == State::Initialize {
            return Vec::new();
        }
        self.priority = self.allowed_priority(priority);
        if self.state == State::Backup {
            if outage.is_some() {
                self.master_down_at = Some(after(now, self.master_down_interval()));
            }
            return Vec::new();
        }
        if let Some(limit) = self.outage_hold {
            // The outage seen, or a stall before it (see `stalled`).
            let taken = outage.is_some_and(|since| self.peer_may_have_taken_over(since, now));
            if taken || self.stalled(now) {
                return self.step_back_for_sync(now, limit);
            }
        }
        self.reclaim(now)
    }

    /// Whether, with the link down from `since` (at the earliest) until
    /// `now`, the peer may have gone a Master_Down_Interval without our
    /// adverts: our last advert before the outage left up to one advert
    /// interval before `since`, and the peer's interval is at least the
    /// shortest any peer runs
    /// ([`Settings::shortest_master_down_interval`](super::Settings::shortest_master_down_interval)).
    pub(super) fn peer_may_have_taken_over(&self, since: Instant, now: Instant) -> bool {
        let silence = now
            .saturating_duration_since(since)
            .saturating_add(self.adver_interval());
        silence >= self.settings.shortest_master_down_interval()
    }

    /// From master to backup after a link outage (see [`Self::link_up`]):
    /// no advert (ours would make the peer step down, cutting its
    /// connections), preemption held for `limit` from `now` until
    /// [`Self::peer_synced`], and the timers of a backup just started.
    pub(super) fn step_back_for_sync(&mut self, now: Instant, limit: Duration) -> Vec<Action> {
        self.hold_preemption(now, limit);
        self.step_down(now)
    }

    /// From master to backup without an advert (see
    /// [`Self::step_back_for_sync`], [`Self::give_up_for_source`]): the
    /// timers of a backup just started.
    pub(super) fn step_down(&mut self, now: Instant) -> Vec<Action> {
        self.state = State::Backup;
        self.adver_at = None;
        self.refresh_at = None;
        self.master_address = None;
        self.master_adver_interval_cs = self.settings.adver_interval_cs;
        self.master_down_at = Some(after(now, self.master_down_interval()));
        self.preempt_until = self.preempt_delay_from(now);
        self.counters.became_backup = self.counters.became_backup.saturating_add(1);
        vec![Action::BecomeBackup]
    }
}
