//! The interface's link as the driver's own checks see it ([`LinkWatch`]):
//! outages, flaps no look saw (the carrier counter) and the priority a
//! link down costs. Apart from the run loop that acts on it.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::netlink::Interface;
use crate::vrrp::machine::OWNER_PRIORITY;

/// The interface's link as the driver's own checks (every
/// [`ADDRESS_CHECK`](super::ADDRESS_CHECK)) see it, for the machine's outage rule (see
/// [`Machine::link_up`](crate::vrrp::machine::Machine::link_up)): when it went down, at the earliest, and that it
/// came back even if tracking (every second) missed the outage.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct LinkWatch {
    /// The last check that saw the link up.
    up_at: Option<Instant>,
    /// A check saw it down, and none up since.
    pub(super) down: bool,
    /// Looks in a row that could not read the link (see
    /// [`Self::failed`]).
    pub(super) failing: u32,
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
pub(super) const LINK_UNKNOWN_LOOKS: u32 = 3;

/// See [`LINK_UNKNOWN_LOOKS`].
pub(super) const LINK_UNKNOWN_AFTER: Duration = Duration::from_secs(1);

/// Least time between two warnings about looks at the link that failed.
pub(super) const LINK_QUERY_LOG_EVERY: Duration = Duration::from_secs(10);

/// What a check of the link tells the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkChange {
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
    pub(super) fn saw(&mut self, up: bool, now: Instant) -> Option<LinkChange> {
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
    /// [`Machine::next_deadline`](crate::vrrp::machine::Machine::next_deadline)) instead of waiting for a look that
    /// works, or for tracking's, which tells only of outages it saw. The
    /// time it was last seen up stays the one a check saw.
    pub(super) fn failed(&mut self, now: Instant) -> Option<LinkChange> {
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
    pub(super) fn saw_counting(
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
pub(super) fn with_link_weight(configured: u8, tracked: u8, weight: u8, down: bool) -> u8 {
    if configured == OWNER_PRIORITY || !down {
        return tracked;
    }
    tracked.saturating_sub(weight).max(1)
}
