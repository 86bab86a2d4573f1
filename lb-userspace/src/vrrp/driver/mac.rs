//! A change of the interface's MAC under lbd, followed (and announced)
//! only once the data plane accepts frames for it, or after a bound: apart
//! as a small protocol between the driver and the engine.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::Driver;
use crate::vrrp::State;

/// Longest a master waits for the engine to tell that the data plane
/// accepts frames for the interface's new MAC (see [`MacChange`]) before
/// it announces the addresses with it all the same: the engine writes it
/// at its housekeeping tick (every second) and tells at once; one that
/// never tells (its own look at the link failing, the write failing)
/// must not leave the neighbours at a MAC the interface no longer has.
const MAC_CONFIRM_LIMIT: Duration = Duration::from_secs(3);

/// A change of the interface's MAC the driver saw (see
/// [`Driver::follow_mac`]) and does not announce yet.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct MacChange {
    /// The new MAC, and when a look first saw it.
    pending: Option<([u8; 6], Instant)>,
}

/// The interface's MAC changed under lbd (a bond's `fail_over_mac`, `ip
/// link set address`): the driver follows it only once the data plane
/// accepts frames for it. The data plane balances only frames addressed
/// to the MAC the engine wrote into it, and passes the others up the
/// stack, where a VIP held by VRRP is local and the kernel answers them
/// with resets: announcing the new MAC first would cut the connections
/// of every client that moves to it before the engine's next tick. So
/// one party follows the MAC into the data plane, the engine, and tells
/// the instances ([`Instance::data_plane_mac`](super::Instance::data_plane_mac)); the driver announces
/// then, or after [`MAC_CONFIRM_LIMIT`] if it is never told.
impl MacChange {
    /// A look at `now` saw the interface with `seen` (None: no MAC read),
    /// the driver knowing it with `known` and the data plane accepting
    /// `data_plane`: the MAC to follow now, if any. A MAC the data plane
    /// does not accept yet is kept pending, and followed once it does
    /// ([`Self::confirmed`]) or once pending too long ([`Self::overdue`]);
    /// one that changed back before that is forgotten.
    fn seen(
        &mut self,
        known: [u8; 6],
        seen: Option<[u8; 6]>,
        data_plane: [u8; 6],
        now: Instant,
    ) -> Option<[u8; 6]> {
        let seen = seen?;
        if seen == known {
            self.pending = None;
            return None;
        }
        let mac = crate::netlink::mac_to_follow(known, Some(seen))?;
        if mac == data_plane {
            self.pending = None;
            return Some(mac);
        }
        if self.pending.is_none_or(|(pending, _)| pending != mac) {
            self.pending = Some((mac, now));
        }
        self.overdue(now)
    }

    /// The engine told that the data plane accepts `data_plane`: the MAC
    /// to follow now, if it is the one pending.
    pub(super) fn confirmed(&mut self, data_plane: [u8; 6]) -> Option<[u8; 6]> {
        let (mac, _) = self.pending.filter(|(mac, _)| *mac == data_plane)?;
        self.pending = None;
        Some(mac)
    }

    /// The MAC pending since [`MAC_CONFIRM_LIMIT`] or longer at `now`, to
    /// follow without the engine's word.
    pub(super) fn overdue(&mut self, now: Instant) -> Option<[u8; 6]> {
        let (mac, _) = self
            .pending
            .filter(|(_, since)| now.saturating_duration_since(*since) >= MAC_CONFIRM_LIMIT)?;
        self.pending = None;
        Some(mac)
    }

    /// Whether a MAC change waits for the data plane: announcements wait
    /// with it (see [`Driver::announce`]).
    pub(super) fn waiting(&self) -> bool {
        self.pending.is_some()
    }
}

impl Driver {
    /// Follows the interface's MAC when it changed under lbd (a bond's
    /// `fail_over_mac`, `ip link set address`), `seen` at `now`: once the
    /// data plane accepts frames for it (see [`MacChange`]), announcements
    /// carry it ([`Self::adopt_mac`]). Until then announcements wait, and
    /// rounds still running with the old MAC stop: they would draw the
    /// neighbours back to a MAC the interface no longer has.
    pub(super) fn follow_mac(&mut self, seen: Option<[u8; 6]>, now: Instant) {
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
    pub(super) fn adopt_mac(&mut self, mac: [u8; 6], confirmed: bool) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new MAC is followed at once when the data plane has it already,
    /// on the engine's word otherwise, and without it after
    /// `MAC_CONFIRM_LIMIT`; one changed back before is forgotten.
    #[test]
    fn a_mac_change_waits_for_the_data_plane_within_bounds() {
        let (old, new) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let t0 = Instant::now();
        let half = Duration::from_millis(500);
        // The engine wrote it first.
        let mut change = MacChange::default();
        assert_eq!(change.seen(old, Some(new), new, t0), Some(new));
        assert!(!change.waiting());
        // The driver saw it first: pending until the engine's word.
        assert_eq!(change.seen(old, Some(new), old, t0), None);
        assert!(change.waiting());
        assert_eq!(change.seen(old, Some(new), old, t0 + half), None);
        assert_eq!(change.confirmed(old), None);
        assert_eq!(change.confirmed(new), Some(new));
        assert!(!change.waiting());
        // No word: followed once overdue, from the first look that saw it.
        assert_eq!(change.seen(old, Some(new), old, t0), None);
        assert_eq!(change.seen(old, None, old, t0 + half), None, "no MAC read");
        assert_eq!(change.overdue(t0 + MAC_CONFIRM_LIMIT - half), None);
        assert_eq!(change.overdue(t0 + MAC_CONFIRM_LIMIT), Some(new));
        assert!(!change.waiting());
        // Changed back before the data plane took it: nothing to follow.
        assert_eq!(change.seen(old, Some(new), old, t0), None);
        assert_eq!(change.seen(old, Some(old), old, t0 + half), None);
        assert!(!change.waiting());
        assert_eq!(change.overdue(t0 + MAC_CONFIRM_LIMIT), None);
        // A MAC of zeroes is none.
        assert_eq!(change.seen(old, Some([0; 6]), old, t0), None);
        assert!(!change.waiting());
    }
}
