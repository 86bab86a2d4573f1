//! The interface's link as the driver's own checks see it: outages (even
//! those between two looks, by the carrier counter), looks that fail, and
//! the link's weight on the priority; and the driver following it.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::{
    looks::{newer_look, LinkRead},
    Driver,
};
use crate::{
    netlink::Interface,
    vrrp::{
        machine::{OWNER_PRIORITY, PREEMPT_SYNC_HOLD},
        Action, State,
    },
};

/// The interface's link as the driver's own checks (every
/// [`ADDRESS_CHECK`](super::ADDRESS_CHECK)) see it, for the machine's outage rule (see
/// [`Machine::link_up`](crate::vrrp::Machine::link_up)): when it went down, at the earliest, and that it
/// came back even if tracking (every second) missed the outage.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct LinkWatch {
    /// The last check that saw the link up.
    up_at: Option<Instant>,
    /// A check saw it down, and none up since.
    pub(super) down: bool,
    /// Looks in a row that could not read the link (see
    /// [`Self::failed`]).
    failing: u32,
    /// The first of them.
    failing_since: Option<Instant>,
    /// The interface's carrier counter at the last look (see
    /// [`carrier_changes`]; `None`: not read): a change the next look
    /// finds with the link up is an outage no look saw (see
    /// [`LinkChange::Flapped`]).
    carrier_changes: Option<u64>,
}

/// How many looks in a row that could not read the link, over at least
/// [`LINK_UNKNOWN_AFTER`], end an outage a check saw (see
/// [`LinkWatch::failed`]): three checks, 1 s, about lbd's own link check's
/// period, so a netlink hiccup does not end one.
const LINK_UNKNOWN_LOOKS: u32 = 3;

/// See [`LINK_UNKNOWN_LOOKS`].
const LINK_UNKNOWN_AFTER: Duration = Duration::from_secs(1);

/// Least time between two warnings about looks at the link that failed.
pub(super) const LINK_QUERY_LOG_EVERY: Duration = Duration::from_secs(10);

/// What a check of the link tells the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkChange {
    /// Down, since at the earliest this (the last time it was seen up).
    Down(Instant),
    /// Back up after a check saw it down.
    Up,
    /// Up at this look and the last, but the carrier went down and up
    /// between them (shorter than [`ADDRESS_CHECK`](super::ADDRESS_CHECK), so no look saw it:
    /// the peer may have taken over meanwhile, with adverts 0.15 s apart
    /// or less); down since at the earliest this.
    Flapped(Instant),
}

/// The interface's carrier counter (`/sys/class/net/IF/carrier_changes`:
/// how many times its carrier went down or up), if it can be read for
/// this very interface (the name's `ifindex` is ours: not one renamed or
/// re-created since, nor another namespace's). Read at each look at the
/// link and before each master advert: it tells of outages too short for
/// a look to see (see [`LinkChange::Flapped`]).
pub(super) fn carrier_changes(interface: &Interface) -> Option<u64> {
    let dir = Path::new("/sys/class/net").join(&interface.name);
    let read = |file: &str| -> Option<u64> {
        std::fs::read_to_string(dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    if read("ifindex")? != u64::from(interface.index) {
        return None;
    }
    read("carrier_changes")
}

impl LinkWatch {
    /// A check at `now` saw the link `up`: what changed.
    fn saw(&mut self, up: bool, now: Instant) -> Option<LinkChange> {
        self.failing = 0;
        self.failing_since = None;
        if up {
            self.up_at = Some(now);
            std::mem::take(&mut self.down).then_some(LinkChange::Up)
        } else if self.down {
            None
        } else {
            self.down = true;
            Some(LinkChange::Down(self.up_at.unwrap_or(now)))
        }
    }

    /// A look at `now` could not read the link (its netlink query failed).
    /// Unknown is not down: once [`LINK_UNKNOWN_LOOKS`] looks in a row
    /// over at least [`LINK_UNKNOWN_AFTER`] have failed, an outage a check
    /// saw counts as over ([`LinkChange::Up`], once), so a backup's
    /// Master_Down_Timer runs again (none runs while the link is down, see
    /// [`Machine::next_deadline`](crate::vrrp::Machine::next_deadline)) instead of waiting for a look that
    /// works, or for tracking's, which tells only of outages it saw. The
    /// time it was last seen up stays the one a check saw.
    fn failed(&mut self, now: Instant) -> Option<LinkChange> {
        self.failing = self.failing.saturating_add(1);
        let since = *self.failing_since.get_or_insert(now);
        let unknown = self.failing >= LINK_UNKNOWN_LOOKS
            && now.saturating_duration_since(since) >= LINK_UNKNOWN_AFTER;
        (unknown && std::mem::take(&mut self.down)).then_some(LinkChange::Up)
    }

    /// [`Self::saw`], with the interface's carrier counter read at the
    /// same look (`None`: unreadable, no baseline): a link up now, seen up
    /// at the last look too, whose counter moved meanwhile went down and
    /// up again unseen ([`LinkChange::Flapped`], from the last time it was
    /// known steady).
    fn saw_counting(
        &mut self,
        up: bool,
        carrier_changes: Option<u64>,
        now: Instant,
    ) -> Option<LinkChange> {
        let moved = matches!(
            (self.carrier_changes, carrier_changes),
            (Some(before), Some(after)) if before != after
        );
        self.carrier_changes = carrier_changes;
        let since = self.up_at.unwrap_or(now);
        let change = self.saw(up, now);
        match change {
            None if up && moved => Some(LinkChange::Flapped(since)),
            change => change,
        }
    }

    /// A cheap look at the carrier counter alone, at `now` (before each
    /// master advert): whether it moved since the last full look, which is
    /// then due before the advert leaves. Unmoved, a link seen up stayed
    /// up: it counts as seen up at `now`, so an outage found later dates
    /// from here rather than from the last full look, up to 0.5 s before.
    pub(super) fn carrier_moved(&mut self, carrier_changes: Option<u64>, now: Instant) -> bool {
        match (self.carrier_changes, carrier_changes) {
            (Some(before), Some(after)) if before != after => true,
            (Some(_), Some(_)) => {
                if !self.down && self.up_at.is_some() {
                    self.up_at = Some(now);
                }
                false
            }
            _ => false,
        }
    }

    /// Tracking told of the link back up at `now` (the checks may have
    /// missed the outage, or not seen its end yet).
    /// `carrier_changes` is the carrier counter now: the flaps of that
    /// outage are not found again by the next look.
    pub(super) fn came_up(&mut self, now: Instant, carrier_changes: Option<u64>) {
        self.up_at = Some(now);
        self.down = false;
        self.carrier_changes = carrier_changes;
    }
}

/// The priority an instance configured with `configured` runs with when
/// tracking gives it `tracked` and the link is `down` or not: `weight`
/// (`track_interface`) less while down, at least 1. The owner's (255) is
/// fixed, as tracking leaves it.
fn with_link_weight(configured: u8, tracked: u8, weight: u8, down: bool) -> u8 {
    if configured == OWNER_PRIORITY || !down {
        return tracked;
    }
    tracked.saturating_sub(weight).max(1)
}

impl Driver {
    /// Looks at the interface's link at once (see [`Self::on_link_read`]).
    pub(super) async fn follow_link(&mut self) -> Vec<Action> {
        let read = self.looks.read_link(&self.interface).await;
        self.on_link_read(read)
    }

    /// Takes a look at the interface's link, unless a later one was taken
    /// before (see [`newer_look`]): tells the machine of an outage and of
    /// its end (see [`Machine::link_down`](crate::vrrp::Machine::link_down), [`Machine::link_up`](crate::vrrp::Machine::link_up)), and
    /// follows its MAC ([`Self::follow_mac`]); what the machine decided.
    /// Looks that fail (or got no answer in time) are warned about
    /// (rate-limited), and enough of them end an outage (see
    /// [`LinkWatch::failed`]).
    pub(super) fn on_link_read(&mut self, read: LinkRead) -> Vec<Action> {
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
    pub(super) fn follow_priority(&mut self, now: Instant) -> Vec<Action> {
        let priority = self.priority_now();
        if priority == self.machine.priority() {
            return Vec::new();
        }
        info!(vrid = self.config.vrid, priority, "VRRP priority changed");
        self.machine.set_priority(priority, now)
    }

    /// The link is back (the checks saw it, or tracking told of it and
    /// the watch knows): the machine hears of it with the priority the
    /// link brings back (see [`Machine::link_up`](crate::vrrp::Machine::link_up)).
    pub(super) fn on_link_back(&mut self, now: Instant) -> Vec<Action> {
        let priority = self.priority_now();
        if priority != self.machine.priority() {
            info!(vrid = self.config.vrid, priority, "VRRP priority changed");
        }
        self.machine.link_up(now, priority)
    }

    /// Whether `actions` (of [`Machine::link_up`](crate::vrrp::Machine::link_up)) are a master stepping
    /// back to backup after a long outage; if so, says so.
    pub(super) fn stepped_back(&self, actions: &[Action]) -> bool {
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
}

#[cfg(test)]
mod tests;
