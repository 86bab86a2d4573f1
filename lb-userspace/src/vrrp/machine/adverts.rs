//! What an advert for our VRID does: §6.4.2 in backup (follow the master,
//! or discard a lower one to preempt it) and §6.4.3 in master (step down
//! to a better router, answer a lower claim), with the address tie-break.

use std::{net::IpAddr, time::Instant};

use super::{after, clamp_interval, Action, Machine, State, OWNER_PRIORITY};
use crate::vrrp::packet::Advertisement;

impl Machine {
    /// An advert for our VRID from `src`, already checked by
    /// [`crate::vrrp::packet::validate`]. Applies §6.4.2 in backup and §6.4.3 in
    /// master; ignored in Initialize and if the VRID is not ours.
    pub fn on_advert(&mut self, ad: &Advertisement, src: IpAddr, now: Instant) -> Vec<Action> {
        if ad.vrid != self.settings.vrid {
            return Vec::new();
        }
        self.counters.adverts_received = self.counters.adverts_received.saturating_add(1);
        if ad.priority == 0 {
            self.counters.priority_zero_received =
                self.counters.priority_zero_received.saturating_add(1);
        }
        match self.state {
            State::Initialize => Vec::new(),
            State::Backup => {
                self.backup_rx(ad, src, now);
                Vec::new()
            }
            // The other router took over, hearing none of our adverts:
            // it holds the addresses, and we cannot make it step down.
            State::Master if self.source_is_gone() && ad.priority != 0 && self.claims(ad, src) => {
                let actions = self.give_up_for_source(now);
                self.backup_rx(ad, src, now);
                actions
            }
            State::Master if self.stalled(now) && self.claims(ad, src) => {
                let actions = self.after_stall(now);
                if self.state == State::Backup {
                    self.backup_rx(ad, src, now);
                }
                // Still master: the reclaim's advert and announcements
                // answer a lower claim or a priority-0 advert too.
                actions
            }
            State::Master => self.master_rx(ad, src, now),
        }
    }

    /// Whether `ad` from `src`, heard in master, leaves us master by
    /// §6.4.3: a priority-0 advert, or one that does not beat ours, from
    /// another router. After a stall (see [`Self::stalled`]) only such an
    /// advert calls for [`Self::after_stall`]: one that beats ours comes
    /// from a router that took over and announced the addresses then, so
    /// stepping down silently leaves the neighbours where they should be.
    pub(super) fn claims(&self, ad: &Advertisement, src: IpAddr) -> bool {
        src != self.primary_address && !self.beaten_by(ad, src)
    }

    /// Whether a master gives way to `ad` from `src` (§6.4.3): a higher
    /// priority, or an equal one from a greater address; never priority 0.
    pub(super) fn beaten_by(&self, ad: &Advertisement, src: IpAddr) -> bool {
        ad.priority != 0
            && (ad.priority > self.priority
                || (ad.priority == self.priority && address_greater(src, self.primary_address)))
    }

    /// §6.4.2, "If an ADVERTISEMENT is received".
    pub(super) fn backup_rx(&mut self, ad: &Advertisement, src: IpAddr, now: Instant) {
        if ad.priority == 0 {
            // The master is stepping down: take over after Skew_Time only.
            self.master_down_at = Some(after(now, self.skew_time()));
            return;
        }
        let delay_on = !self.settings.preempt_delay.is_zero();
        // A faulted backup (see `faulted`) cannot preempt: it follows the
        // master, so its status names it.
        let deferring = (delay_on && self.preempt_until.is_none_or(|until| until > now))
            || self.holding_for_sync(now)
            || self.faulted();
        // The owner always preempts (RFC 5798 §6.1), whatever Preempt_Mode
        // says: it is a backup only while it holds for the peer's dump.
        let preempt = self.settings.preempt || self.priority == OWNER_PRIORITY;
        if !preempt || ad.priority >= self.priority || deferring {
            self.master_adver_interval_cs = clamp_interval(ad.max_adver_int_cs);
            self.master_down_at = Some(after(now, self.master_down_interval()));
            self.master_address = Some(src);
            if delay_on {
                if ad.priority >= self.priority {
                    self.preempt_until = None;
                } else if self.preempt_until.is_none() {
                    self.preempt_until = self.preempt_delay_from(now);
                }
            }
        }
        // Else: preempt is on, the advert is of lower priority and any
        // preempt delay is over: discard it, and let the Master_Down_Timer
        // (not reset) make us master.
    }

    /// §6.4.3, "If an ADVERTISEMENT is received".
    pub(super) fn master_rx(
        &mut self,
        ad: &Advertisement,
        src: IpAddr,
        now: Instant,
    ) -> Vec<Action> {
        if ad.priority == 0 {
            self.adver_at = Some(after(now, self.adver_interval()));
            return self.advert(self.priority).into_iter().collect();
        }
        if !self.beaten_by(ad, src) {
            return self.reannounce(src, now);
        }
        self.state = State::Backup;
        self.adver_at = None;
        self.refresh_at = None;
        self.master_adver_interval_cs = clamp_interval(ad.max_adver_int_cs);
        self.master_down_at = Some(after(now, self.master_down_interval()));
        self.master_address = Some(src);
        self.preempt_until = None;
        self.counters.became_backup = self.counters.became_backup.saturating_add(1);
        vec![Action::BecomeBackup]
    }

    /// A lower-priority advert (or an equal one from a lower address) while
    /// master: the other router believes it is master too, and neighbours
    /// may have followed it. Like keepalived, advertise at once and send
    /// gratuitous ARP / NA again, rate-limited to once per advert
    /// interval. Our own advert looped back is no claim.
    pub(super) fn reannounce(&mut self, src: IpAddr, now: Instant) -> Vec<Action> {
        if src == self.primary_address {
            return Vec::new();
        }
        let due = self
            .reannounced_at
            .is_none_or(|at| now.saturating_duration_since(at) >= self.adver_interval());
        if !due {
            return Vec::new();
        }
        self.reannounced_at = Some(now);
        self.advert(self.priority)
            .map(|advert| vec![advert, Action::Reannounce])
            .unwrap_or_default()
    }
}

/// Whether `a` is the greater address as an unsigned big-endian number
/// (RFC 5798 §6.4.3, as keepalived compares). Addresses of different
/// families never win.
pub(super) fn address_greater(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => u32::from(a) > u32::from(b),
        (IpAddr::V6(a), IpAddr::V6(b)) => u128::from(a) > u128::from(b),
        _ => false,
    }
}
