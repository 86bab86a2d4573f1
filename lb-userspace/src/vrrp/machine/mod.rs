//! The VRRPv3 state machine of RFC 5798 §6.4 for one virtual router:
//! Initialize, Backup and Master, the Adver_Timer and Master_Down_Timer,
//! preemption (with keepalived's `preempt_delay`), and the effective
//! priority that tracking lowers or raises. Pure: no sockets and no clock.
//! The caller hands in every validated advert and the time, calls
//! [`Machine::on_timer`] at [`Machine::next_deadline`], and carries out the
//! [`Action`]s it gets back (send an advert, add or remove the VIPs, send
//! gratuitous ARP / unsolicited NA, run notify hooks), in order.
//!
//! By concern: [`settings`] (what the instance is configured with and the
//! RFC's timer formulas), [`outputs`] (the state, actions and counters it
//! reports), [`adverts`] (§6.4.2 and §6.4.3: what an advert does),
//! [`outages`] (link outages, a lost advert source, stalls), [`sync_hold`]
//! (preemption held for the peer's connection-table dump); here the
//! machine itself, its startup, timers and shutdown.

mod adverts;
mod outages;
mod outputs;
mod settings;
mod sync_hold;
#[cfg(test)]
mod tests;

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

pub use outputs::{Action, Counters, State};
/// The limit config checks `preempt_delay_ms` against (in its tests).
#[cfg(test)]
pub(crate) use settings::MAX_PREEMPT_DELAY;
use settings::{clamp_interval, cs_to_duration, master_down_interval, skew_time};
pub use settings::{Settings, SettingsError};

/// The priority of the router that owns the virtual addresses: it becomes
/// master at once on startup (RFC 5798 §6.4.1).
pub(crate) const OWNER_PRIORITY: u8 = 255;

/// Longest a (re)started backup holds back a preemption until it has the
/// master's full connection-table dump (see [`Machine::hold_preemption`]):
/// the master's sender reconnects with a backoff of up to 5 s, then
/// dumps; past this the node preempts without it rather than never.
pub(crate) const PREEMPT_SYNC_HOLD: Duration = Duration::from_secs(10);

/// One virtual router's protocol state. The driver owns one per instance,
/// feeds it adverts, timer ticks and priority changes, and acts on what it
/// returns.
#[derive(Debug, Clone)]
pub struct Machine {
    settings: Settings,
    primary_address: IpAddr,
    state: State,
    /// Effective priority: configured, then moved by tracking.
    priority: u8,
    /// Master_Adver_Interval, learned from the master in backup.
    master_adver_interval_cs: u16,
    /// Adver_Timer, running in master only.
    adver_at: Option<Instant>,
    /// Master_Down_Timer, running in backup only.
    master_down_at: Option<Instant>,
    /// keepalived's preempt_time: until then a lower-priority master is
    /// deferred to. `None` when not started (or stopped by a master of at
    /// least our priority).
    preempt_until: Option<Instant>,
    master_address: Option<IpAddr>,
    /// When we last re-announced in master (a lower-priority advert).
    reannounced_at: Option<Instant>,
    /// When the next periodic announcement is due, in master with
    /// [`Settings::announce_refresh`] set.
    refresh_at: Option<Instant>,
    /// Until then (unless the peer's full connection-table dump arrives
    /// first) a lower-priority master is deferred to: preempting before
    /// this node holds the master's flows would cut them. `None`: no hold
    /// (no replication, or the dump arrived). Never delays taking over
    /// from a master that went silent.
    sync_hold_until: Option<Instant>,
    /// With replication (see [`Self::hold_after_outages`]), how long a
    /// master that came back from a link outage long enough for the peer
    /// to have taken over holds preemption for the peer's flows. `None`:
    /// no replication, a master keeps mastership through outages.
    outage_hold: Option<Duration>,
    /// While the interface's link is down (see [`Self::link_down`]): the
    /// last time it was seen up, the earliest it may have gone down.
    link_down_since: Option<Instant>,
    /// While the interface has no address adverts can go from (see
    /// [`Self::source_gone`]): when it was first seen gone.
    source_gone_since: Option<Instant>,
    /// This master gave up mastership for want of a source (see
    /// [`Self::source_gone`]); cleared when one is back.
    gave_up_for_source: bool,
    counters: Counters,
}

impl Machine {
    /// A machine in state Initialize. `primary_address` is the address we
    /// send adverts from, which breaks ties between equal priorities.
    pub fn new(settings: Settings, primary_address: IpAddr) -> Self {
        let settings = settings.normalized();
        Self {
            settings,
            primary_address,
            state: State::Initialize,
            priority: settings.priority,
            master_adver_interval_cs: settings.adver_interval_cs,
            adver_at: None,
            master_down_at: None,
            preempt_until: None,
            master_address: None,
            reannounced_at: None,
            refresh_at: None,
            sync_hold_until: None,
            outage_hold: None,
            link_down_since: None,
            source_gone_since: None,
            gave_up_for_source: false,
            counters: Counters::default(),
        }
    }

    /// The Startup event (§6.4.1): the owner (effective priority 255)
    /// advertises and becomes master at once; anyone else becomes backup
    /// and waits one Master_Down_Interval for a master. Does nothing unless
    /// in Initialize.
    ///
    /// An owner holding preemption for the peer's dump (see
    /// [`Self::hold_preemption`], called before this) starts as a backup
    /// too: lbd never owns the addresses for real (it refuses the
    /// interface's own), so 255 only means "always master", and taking
    /// over at once would drop the live master's NAT'd connections. It
    /// follows a live master until the dump arrives or the hold ends, then
    /// preempts as any backup does (an owner always preempts, RFC 5798
    /// §6.1); with no master on the link it takes over after one
    /// Master_Down_Interval.
    pub fn startup(&mut self, now: Instant) -> Vec<Action> {
        if self.state != State::Initialize {
            return Vec::new();
        }
        self.master_adver_interval_cs = self.settings.adver_interval_cs;
        // Nor an owner without a source (see `source_gone`): as master it
        // could not tell the peer, which would take over too.
        if self.priority == OWNER_PRIORITY && !self.holding_for_sync(now) && !self.source_is_gone()
        {
            self.become_master(now)
        } else {
            self.state = State::Backup;
            self.master_address = None;
            self.adver_at = None;
            self.master_down_at = Some(after(now, self.master_down_interval()));
            self.preempt_until = self.preempt_delay_from(now);
            self.counters.became_backup = self.counters.became_backup.saturating_add(1);
            vec![Action::BecomeBackup]
        }
    }

    /// Resumes as master without waiting (a restarted lbd that was master
    /// until moments ago, within the master-down interval, so the backup
    /// has not taken over): advertises at once. Does nothing unless in
    /// Initialize.
    /// Counted as `resumed`, not as a transition to master: no failover
    /// happened.
    pub(crate) fn resume_master(&mut self, now: Instant) -> Vec<Action> {
        if self.state != State::Initialize {
            return Vec::new();
        }
        self.master_adver_interval_cs = self.settings.adver_interval_cs;
        self.counters.resumed = self.counters.resumed.saturating_add(1);
        self.take_mastership(now)
    }

    /// The Shutdown event: a master sends a priority-0 advert so a backup
    /// takes over after Skew_Time instead of Master_Down_Interval; either
    /// state stops its timers and goes back to Initialize.
    pub fn shutdown(&mut self, _now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match self.state {
            State::Initialize => return actions,
            State::Master => {
                actions.push(self.send(0));
            }
            State::Backup => {}
        }
        self.state = State::Initialize;
        self.adver_at = None;
        self.refresh_at = None;
        self.master_down_at = None;
        self.preempt_until = None;
        self.master_address = None;
        actions.push(Action::BecomeInitialize);
        actions
    }

    /// Fires the timers that have expired by `now`: in master the
    /// Adver_Timer sends an advert; in backup the Master_Down_Timer makes us
    /// master. Safe to call at any time: nothing happens before a deadline.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            State::Initialize => Vec::new(),
            // Not while the link is down: a backup that hears no one for
            // that reason would take the addresses onto a dead interface
            // and reclaim them from the live master at link-up (see
            // `link_up`).
            // Nor while no advert can leave (see `source_gone`).
            State::Backup => match self.master_down_at {
                Some(at) if at <= now && !self.faulted() => self.become_master(now),
                _ => Vec::new(),
            },
            State::Master if self.source_gone_too_long(now) => self.give_up_for_source(now),
            State::Master if self.stalled(now) => self.after_stall(now),
            State::Master => {
                let mut actions = Vec::new();
                if self.adver_at.is_some_and(|at| at <= now) {
                    self.adver_at = Some(after(now, self.adver_interval()));
                    actions.extend(self.advert(self.priority));
                }
                if let (Some(at), Some(every)) = (self.refresh_at, self.settings.announce_refresh) {
                    if at <= now {
                        self.refresh_at = Some(after(now, every));
                        if !self.source_is_gone() {
                            actions.push(Action::Refresh);
                        }
                    }
                }
                actions
            }
        }
    }

    /// When [`Self::on_timer`] must be called next; `None` in Initialize,
    /// and in backup while the link is down or no advert can leave (the
    /// Master_Down_Timer starts afresh at [`Self::link_up`],
    /// [`Self::source_back`]).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Initialize => None,
            State::Backup if self.faulted() => None,
            State::Backup => self.master_down_at,
            State::Master => [self.adver_at, self.refresh_at, self.give_up_at()]
                .into_iter()
                .flatten()
                .min(),
        }
    }

    /// Sets the effective priority, e.g. lowered by tracking when the data
    /// plane is detached or a VIP has no healthy backend, and restored
    /// after. It is kept in 1..=254, or 1..=255 if configured as the owner.
    /// In master the new priority is advertised at once (so a backup can
    /// preempt without waiting an interval); in backup it is used from the
    /// next advert on, so a raised priority lets us preempt a lower master
    /// when its adverts are discarded and the Master_Down_Timer fires.
    /// While the link is down (see [`Self::link_down`]) a master only
    /// takes it: an advert then reaches no one, and the next one (the
    /// timer's, or [`Self::link_up`]'s) carries it.
    pub(crate) fn set_priority(&mut self, priority: u8, now: Instant) -> Vec<Action> {
        let priority = self.allowed_priority(priority);
        if priority == self.priority {
            return Vec::new();
        }
        self.priority = priority;
        match self.state {
            // The advert after a stall is the reclaim's, and carries it.
            State::Master if self.stalled(now) => self.after_stall(now),
            State::Master if !self.link_is_down() => {
                self.adver_at = Some(after(now, self.adver_interval()));
                self.advert(priority).into_iter().collect()
            }
            State::Initialize | State::Backup | State::Master => Vec::new(),
        }
    }

    /// `priority` kept in 1..=254, or 1..=255 if configured as the owner
    /// (see [`Self::set_priority`]).
    fn allowed_priority(&self, priority: u8) -> u8 {
        match priority {
            0 => 1,
            OWNER_PRIORITY if self.settings.priority != OWNER_PRIORITY => OWNER_PRIORITY - 1,
            p => p,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The effective priority (what we advertise as master and compare
    /// against as backup).
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time: how
    /// long a backup waits without adverts before taking over.
    pub(crate) fn master_down_interval(&self) -> Duration {
        master_down_interval(self.master_adver_interval_cs, self.priority)
    }

    /// Skew_Time = (256 − Priority) × Master_Adver_Interval / 256, computed
    /// in microseconds (truncated), so higher priorities take over sooner.
    pub(crate) fn skew_time(&self) -> Duration {
        skew_time(self.master_adver_interval_cs, self.priority)
    }

    /// Master_Adver_Interval: ours until a master's advert is accepted in
    /// backup, then the master's.
    #[cfg(test)]
    pub(crate) fn master_adver_interval(&self) -> Duration {
        cs_to_duration(self.master_adver_interval_cs)
    }

    /// The address adverts are sent from, which breaks priority ties.
    #[cfg(test)]
    pub(crate) fn primary_address(&self) -> IpAddr {
        self.primary_address
    }

    /// Takes `address` as the one adverts go from from now on (the
    /// interface's primary or link-local address changed): priority ties
    /// are broken against the address the peer actually hears, and in
    /// master it is the master's address reported.
    pub(crate) fn set_primary_address(&mut self, address: IpAddr) {
        self.primary_address = address;
        if self.state == State::Master {
            self.master_address = Some(address);
        }
    }

    /// The current master: our primary address in master, the sender of the
    /// last advert accepted in backup (`None` until one), `None` in
    /// Initialize.
    pub(crate) fn master_address(&self) -> Option<IpAddr> {
        self.master_address
    }

    /// What the machine has done, for metrics.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The settings in force (ranges forced, see [`SettingsError`]).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Sends an advert and becomes master (startup as owner, or the
    /// Master_Down_Timer firing), counted as a transition.
    fn become_master(&mut self, now: Instant) -> Vec<Action> {
        self.counters.became_master = self.counters.became_master.saturating_add(1);
        self.take_mastership(now)
    }

    /// Sends an advert and becomes master, uncounted (see
    /// [`Self::become_master`], [`Self::resume_master`]).
    fn take_mastership(&mut self, now: Instant) -> Vec<Action> {
        self.state = State::Master;
        self.master_down_at = None;
        self.preempt_until = None;
        self.adver_at = Some(after(now, self.adver_interval()));
        self.master_address = Some(self.primary_address);
        self.reannounced_at = None;
        self.refresh_at = self
            .settings
            .announce_refresh
            .map(|every| after(now, every));
        let mut actions: Vec<Action> = self.advert(self.priority).into_iter().collect();
        actions.push(Action::BecomeMaster);
        actions
    }

    /// The advert of `priority` to send, unless the link is down with
    /// replication on (see [`Self::hold_after_outages`]): an advert then
    /// reaches nobody, or, sent between the link's return and
    /// [`Self::link_up`], makes a peer that took over step down before
    /// this node decided whether to take the addresses back. A priority-0
    /// advert (a stop) always goes.
    fn advert(&mut self, priority: u8) -> Option<Action> {
        let silent = priority > 0 && self.outage_hold.is_some() && self.link_is_down();
        (!silent).then(|| self.send(priority))
    }

    /// Counts an advert and returns the action to send it.
    fn send(&mut self, priority: u8) -> Action {
        self.counters.adverts_sent = self.counters.adverts_sent.saturating_add(1);
        if priority == 0 {
            self.counters.priority_zero_sent = self.counters.priority_zero_sent.saturating_add(1);
        }
        Action::SendAdvert { priority }
    }

    fn adver_interval(&self) -> Duration {
        cs_to_duration(self.settings.adver_interval_cs)
    }

    fn preempt_delay_from(&self, now: Instant) -> Option<Instant> {
        let delay = self.settings.preempt_delay;
        (!delay.is_zero()).then(|| after(now, delay))
    }
}

/// `now + d`; intervals here are at most minutes, so overflowing `Instant`
/// cannot happen in practice, and if it did the timer fires at once rather
/// than panicking.
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}
