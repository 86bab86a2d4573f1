//! Following a change of the interface's MAC ([`MacChange`]): held until
//! the data plane accepts the new MAC, or overdue. Apart so the rule can be
//! read and tested on its own.

use std::time::{Duration, Instant};

/// Longest a master waits for the engine to tell that the data plane
/// accepts frames for the interface's new MAC (see [`MacChange`]) before
/// it announces the addresses with it all the same: the engine writes it
/// at its housekeeping tick (every second) and tells at once; one that
/// never tells (its own look at the link failing, the write failing)
/// must not leave the neighbours at a MAC the interface no longer has.
pub(super) const MAC_CONFIRM_LIMIT: Duration = Duration::from_secs(3);

/// A change of the interface's MAC the driver saw (see
/// [`Driver::follow_mac`](super::Driver::follow_mac)) and does not announce yet.
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
/// the instances ([`Instance::data_plane_mac`](super::instance::Instance::data_plane_mac)); the driver announces
/// then, or after [`MAC_CONFIRM_LIMIT`] if it is never told.
impl MacChange {
    /// A look at `now` saw the interface with `seen` (None: no MAC read),
    /// the driver knowing it with `known` and the data plane accepting
    /// `data_plane`: the MAC to follow now, if any. A MAC the data plane
    /// does not accept yet is kept pending, and followed once it does
    /// ([`Self::confirmed`]) or once pending too long ([`Self::overdue`]);
    /// one that changed back before that is forgotten.
    pub(super) fn seen(
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
    /// with it (see [`Driver::announce`](super::Driver::announce)).
    pub(super) fn waiting(&self) -> bool {
        self.pending.is_some()
    }
}
