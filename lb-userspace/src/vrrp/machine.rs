//! The VRRPv3 state machine of RFC 5798 §6.4 for one virtual router:
//! Initialize, Backup and Master, the Adver_Timer and Master_Down_Timer,
//! preemption (with keepalived's `preempt_delay`), and the effective
//! priority that tracking lowers or raises. Pure: no sockets and no clock.
//! The caller hands in every validated advert and the time, calls
//! [`Machine::on_timer`] at [`Machine::next_deadline`], and carries out the
//! [`Action`]s it gets back (send an advert, add or remove the VIPs, send
//! gratuitous ARP / unsolicited NA, run notify hooks), in order.

use std::{
    fmt,
    net::IpAddr,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::packet::{Advertisement, MAX_ADVER_INT_CS};

/// The priority of the router that owns the virtual addresses: it becomes
/// master at once on startup (RFC 5798 §6.4.1).
pub(crate) const OWNER_PRIORITY: u8 = 255;

/// The longest preempt delay (keepalived's limit for `preempt_delay`), so
/// that a deadline can always be computed.
pub(crate) const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(1000);

/// Longest a (re)started backup holds back a preemption until it has the
/// master's full connection-table dump (see [`Machine::hold_preemption`]):
/// the master's sender reconnects with a backoff of up to 5 s, then
/// dumps; past this the node preempts without it rather than never.
pub(crate) const PREEMPT_SYNC_HOLD: Duration = Duration::from_secs(10);

const MICROS_PER_CS: u64 = 10_000;

/// How one virtual router runs: the fields of a keepalived `vrrp_instance`
/// that the protocol itself reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Settings {
    /// Virtual router ID, 1..=255, the same on every router of the group.
    pub vrid: u8,
    /// Configured priority, 1..=255; 255 means we own the addresses.
    pub priority: u8,
    /// Our Advertisement_Interval in centiseconds, 1..=4095.
    pub adver_interval_cs: u16,
    /// Preempt_Mode: whether a backup takes over from a live master of
    /// lower priority (keepalived's default; `nopreempt` turns it off).
    pub preempt: bool,
    /// keepalived's `preempt_delay`: how long after startup, or after first
    /// hearing a lower-priority master, a backup keeps deferring to it
    /// before preempting. Zero preempts at once. At most 1000 s.
    pub preempt_delay: Duration,
    /// Accept_Mode (RFC 5798 §6.1): whether the master accepts packets
    /// addressed to the virtual addresses it does not own. Not read by
    /// the machine, and not configurable: lbd's master adds the addresses
    /// to the interface as its own, so its kernel accepts what is sent to
    /// them (ping, and any service listening on all addresses, on the
    /// ports the data plane passes to the stack). lbd's driver says so,
    /// `true`; lbd has no Accept_Mode = False.
    pub accept_mode: bool,
    /// keepalived's `garp_master_refresh`: while master, announce the
    /// addresses again this often ([`Action::Refresh`]), so neighbours
    /// that followed another router (a split brain that healed without a
    /// word, a switch that lost its tables) come back within a bound.
    /// `None`: only on becoming master and on the events that call for it.
    pub announce_refresh: Option<Duration>,
}

/// Why [`Settings`] cannot be used as written. The machine still runs with
/// them (priority 0 as 1, the interval clamped to 1..=4095, the delay to
/// [`MAX_PREEMPT_DELAY`]), so this is for the config layer to refuse them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// VRID 0 cannot be sent.
    #[error("VRRP vrid must be 1..=255, got 0")]
    ZeroVrid,
    /// Priority 0 is reserved for a master that stops.
    #[error("VRRP priority must be 1..=255, got 0")]
    ZeroPriority,
    /// The interval does not fit the advert's 12 bits, or is 0.
    #[error("VRRP advertisement interval must be 1..=4095 cs, got {0}")]
    Interval(u16),
    /// Longer than [`MAX_PREEMPT_DELAY`].
    #[error("VRRP preempt delay must be at most 1000 s, got {0:?}")]
    PreemptDelay(Duration),
}

impl Settings {
    /// Checks the ranges, so a bad config is refused with a clear message
    /// instead of silently fixed.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.vrid == 0 {
            return Err(SettingsError::ZeroVrid);
        }
        if self.priority == 0 {
            return Err(SettingsError::ZeroPriority);
        }
        if self.adver_interval_cs == 0 || self.adver_interval_cs > MAX_ADVER_INT_CS {
            return Err(SettingsError::Interval(self.adver_interval_cs));
        }
        if self.preempt_delay > MAX_PREEMPT_DELAY {
            return Err(SettingsError::PreemptDelay(self.preempt_delay));
        }
        Ok(())
    }

    /// The shortest Master_Down_Interval any peer can run after our last
    /// advert as master: 3 × our advert interval (which a backup learns
    /// from us) + the Skew_Time of priority 255. A peer's timer uses the
    /// peer's own priority, which may be higher than ours (a backup of
    /// higher priority with `nopreempt`), so measuring a restart against
    /// our own interval could resume as master after the peer took over.
    pub(crate) fn shortest_master_down_interval(&self) -> Duration {
        let settings = self.normalized();
        master_down_interval(settings.adver_interval_cs, OWNER_PRIORITY)
    }

    /// The settings the machine runs with: every range forced.
    fn normalized(self) -> Self {
        Self {
            priority: self.priority.max(1),
            adver_interval_cs: clamp_interval(self.adver_interval_cs),
            preempt_delay: self.preempt_delay.min(MAX_PREEMPT_DELAY),
            ..self
        }
    }
}

/// The protocol state (RFC 5798 §6.4).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not running: before startup and after shutdown.
    #[default]
    Initialize,
    /// Watching the master, ready to take over.
    Backup,
    /// Holding the virtual addresses and advertising.
    Master,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
        })
    }
}

/// What the caller must do, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send one advert with this priority (0 when stepping down on
    /// shutdown), our VRID, interval and virtual addresses.
    SendAdvert {
        /// The priority to put in the advert.
        priority: u8,
    },
    /// We are now master: add the virtual addresses, send gratuitous ARP /
    /// unsolicited NA, run the master notify.
    BecomeMaster,
    /// We are now backup: remove the virtual addresses if held, run the
    /// backup notify.
    BecomeBackup,
    /// We stopped (shutdown): remove the virtual addresses if held, run the
    /// stop notify.
    BecomeInitialize,
    /// Still master, but another router claims the addresses with a lower
    /// priority (a split brain healing): send gratuitous ARP / unsolicited
    /// NA again, so neighbours that followed the other router come back
    /// (comes right after a [`Action::SendAdvert`]; at most once per
    /// advert interval, so a peer stuck as master causes no storm). Never
    /// while no advert can leave (see [`Machine::source_gone`]).
    Reannounce,
    /// Still master, and the interface's link just came back (see
    /// [`Machine::link_up`]): while it was down the other router may have
    /// taken over and announced the addresses, and it may now step down
    /// on our advert without a word, so send all the gratuitous ARP /
    /// unsolicited NA rounds of a takeover again (comes right after a
    /// [`Action::SendAdvert`]). Never while no advert can leave (see
    /// [`Machine::source_gone`]).
    Reclaim,
    /// Still master, and [`Settings::announce_refresh`] has passed since
    /// the last refresh (or since becoming master): send one round of
    /// gratuitous ARP / unsolicited NA. Never while no advert can leave
    /// (see [`Machine::source_gone`]).
    Refresh,
}

/// What the machine has done since it was created, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Counters {
    /// Adverts asked for, priority-zero ones included.
    pub adverts_sent: u64,
    /// Adverts handed to [`Machine::on_advert`] for our VRID, priority-zero
    /// ones included.
    pub adverts_received: u64,
    /// Priority-zero adverts asked for (on shutdown as master).
    pub priority_zero_sent: u64,
    /// Priority-zero adverts received (a master stepping down).
    pub priority_zero_received: u64,
    /// Transitions to master (a mastership resumed after a restart is not
    /// one: see `resumed`).
    pub became_master: u64,
    /// Transitions to backup (from Initialize or from master).
    pub became_backup: u64,
    /// Masterships resumed at start ([`Machine::resume_master`]): a
    /// restarted lbd that was master until moments ago, with no failover
    /// (the backup never took over), so not counted in `became_master`.
    #[serde(default)]
    pub resumed: u64,
}

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

    /// Holds back preemption (not a takeover from a silent master, nor
    /// after a priority-0 advert) until [`Self::peer_synced`] or `limit`
    /// after `now`: a node that (re)started with replication has an empty
    /// connection table, and taking over a live master's VIPs before its
    /// full dump arrived would drop the master's NAT'd connections.
    pub(crate) fn hold_preemption(&mut self, now: Instant, limit: Duration) {
        self.sync_hold_until = Some(after(now, limit));
    }

    /// With replication: a master whose link comes back after an outage
    /// long enough for the peer to have taken over steps down to backup
    /// and holds preemption again, for `limit`, as at start (see
    /// [`Self::link_up`]); and while the link is down it sends no adverts,
    /// so none leaves between the link's return and [`Self::link_up`].
    /// Without it (this not called), a master keeps mastership through an
    /// outage and reclaims the addresses.
    pub(crate) fn hold_after_outages(&mut self, limit: Duration) {
        self.outage_hold = Some(limit);
    }

    /// The peer's full connection-table dump arrived: preemption no
    /// longer waits (see [`Self::hold_preemption`]).
    pub(crate) fn peer_synced(&mut self) {
        self.sync_hold_until = None;
    }

    /// Whether preemption is still held back for the peer's dump at `now`.
    pub(crate) fn holding_for_sync(&self, now: Instant) -> bool {
        self.sync_hold_until.is_some_and(|until| until > now)
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

    /// An advert for our VRID from `src`, already checked by
    /// [`super::packet::validate`]. Applies §6.4.2 in backup and §6.4.3 in
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
    fn claims(&self, ad: &Advertisement, src: IpAddr) -> bool {
        src != self.primary_address && !self.beaten_by(ad, src)
    }

    /// Whether a master gives way to `ad` from `src` (§6.4.3): a higher
    /// priority, or an equal one from a greater address; never priority 0.
    fn beaten_by(&self, ad: &Advertisement, src: IpAddr) -> bool {
        ad.priority != 0
            && (ad.priority > self.priority
                || (ad.priority == self.priority && address_greater(src, self.primary_address)))
    }

    /// Whether this master sent no advert for so long that the peer may
    /// have gone its Master_Down_Interval without one and taken over (see
    /// [`Self::peer_may_have_taken_over`]): lbd did not run (SIGSTOP, a
    /// cgroup freeze, a VM paused for a migration or a snapshot, a swap
    /// storm), and its Adver_Timer fires, or the first event is handled,
    /// that much late. Only with the link up: an outage seen is
    /// [`Self::link_up`]'s to settle. A guest whose clock stopped with it
    /// (KVM) cannot see its pause here; [`Settings::announce_refresh`]
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
    fn after_stall(&mut self, now: Instant) -> Vec<Action> {
        if let Some(limit) = self.outage_hold {
            return self.step_back_for_sync(now, limit);
        }
        self.reclaim(now)
    }

    /// Advertises at once and re-announces the addresses in full (see
    /// [`Action::Reclaim`]); that covers a re-announcement or a refresh
    /// due now, so both count from here.
    fn reclaim(&mut self, now: Instant) -> Vec<Action> {
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
    fn faulted(&self) -> bool {
        self.link_is_down() || self.source_is_gone()
    }

    /// When a master without a source gives mastership up (see
    /// [`Self::source_gone`]): as the peer may have gone its
    /// Master_Down_Interval without our adverts (see
    /// [`Self::peer_may_have_taken_over`]). `None` with a source, or not
    /// master.
    fn give_up_at(&self) -> Option<Instant> {
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
    fn source_gone_too_long(&self, now: Instant) -> bool {
        self.source_gone_since
            .is_some_and(|since| self.peer_may_have_taken_over(since, now))
    }

    /// From master to backup for want of a source (see
    /// [`Self::source_gone`]): no advert (none can leave), the addresses
    /// released by [`Action::BecomeBackup`].
    fn give_up_for_source(&mut self, now: Instant) -> Vec<Action> {
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
    /// shortest any peer runs ([`Settings::shortest_master_down_interval`]).
    fn peer_may_have_taken_over(&self, since: Instant, now: Instant) -> bool {
        let silence = now
            .saturating_duration_since(since)
            .saturating_add(self.adver_interval());
        silence >= self.settings.shortest_master_down_interval()
    }

    /// From master to backup after a link outage (see [`Self::link_up`]):
    /// no advert (ours would make the peer step down, cutting its
    /// connections), preemption held for `limit` from `now` until
    /// [`Self::peer_synced`], and the timers of a backup just started.
    fn step_back_for_sync(&mut self, now: Instant, limit: Duration) -> Vec<Action> {
        self.hold_preemption(now, limit);
        self.step_down(now)
    }

    /// From master to backup without an advert (see
    /// [`Self::step_back_for_sync`], [`Self::give_up_for_source`]): the
    /// timers of a backup just started.
    fn step_down(&mut self, now: Instant) -> Vec<Action> {
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

    /// §6.4.2, "If an ADVERTISEMENT is received".
    fn backup_rx(&mut self, ad: &Advertisement, src: IpAddr, now: Instant) {
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
    fn master_rx(&mut self, ad: &Advertisement, src: IpAddr, now: Instant) -> Vec<Action> {
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
    fn reannounce(&mut self, src: IpAddr, now: Instant) -> Vec<Action> {
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

fn master_down_interval(adver_interval_cs: u16, priority: u8) -> Duration {
    cs_to_duration(adver_interval_cs)
        .saturating_mul(3)
        .saturating_add(skew_time(adver_interval_cs, priority))
}

fn skew_time(adver_interval_cs: u16, priority: u8) -> Duration {
    let weight = 256 - u64::from(priority);
    let interval_us = u64::from(adver_interval_cs) * MICROS_PER_CS;
    Duration::from_micros(weight * interval_us / 256)
}

fn cs_to_duration(cs: u16) -> Duration {
    Duration::from_micros(u64::from(cs) * MICROS_PER_CS)
}

fn clamp_interval(cs: u16) -> u16 {
    cs.clamp(1, MAX_ADVER_INT_CS)
}

/// Whether `a` is the greater address as an unsigned big-endian number
/// (RFC 5798 §6.4.3, as keepalived compares). Addresses of different
/// families never win.
fn address_greater(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => u32::from(a) > u32::from(b),
        (IpAddr::V6(a), IpAddr::V6(b)) => u128::from(a) > u128::from(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    const LOWER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    const HIGHER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3));
    const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));

    fn settings(priority: u8) -> Settings {
        Settings {
            vrid: 51,
            priority,
            adver_interval_cs: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
            accept_mode: false,
            announce_refresh: None,
        }
    }

    fn ad(priority: u8) -> Advertisement {
        Advertisement {
            vrid: 51,
            priority,
            max_adver_int_cs: 100,
            addresses: vec![VIP],
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// A backup started at `t0` with `s`.
    fn backup(s: Settings, t0: Instant) -> Machine {
        let mut m = Machine::new(s, ME);
        assert_eq!(m.startup(t0), [Action::BecomeBackup]);
        m
    }

    /// A master: a backup whose down timer has fired; returns the time.
    fn master(s: Settings, t0: Instant) -> (Machine, Instant) {
        let mut m = backup(s, t0);
        let t = m.next_deadline().unwrap();
        assert_eq!(
            m.on_timer(t),
            [
                Action::SendAdvert {
                    priority: m.priority()
                },
                Action::BecomeMaster
            ]
        );
        (m, t)
    }

    #[test]
    fn master_refreshes_its_announcements_every_interval_and_stops_as_backup() {
        let t0 = Instant::now();
        let s = Settings {
            announce_refresh: Some(ms(2500)),
            ..settings(100)
        };
        let (mut m, t) = master(s, t0);
        // Adverts every second; a refresh 2.5 s after becoming master,
        // then every 2.5 s, each on its own deadline.
        let mut seen = Vec::new();
        let mut now = t;
        while now < t + ms(6000) {
            now = m.next_deadline().unwrap();
            for action in m.on_timer(now) {
                seen.push((now - t, action));
            }
        }
        let refreshes: Vec<Duration> = seen
            .iter()
            .filter(|(_, a)| *a == Action::Refresh)
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(refreshes, [ms(2500), ms(5000)]);
        let adverts = seen
            .iter()
            .filter(|(_, a)| matches!(a, Action::SendAdvert { .. }));
        assert_eq!(adverts.count(), 6, "{seen:?}");
        // A higher master: backup, and no refresh any more.
        m.on_advert(&ad(200), HIGHER, now + ms(10));
        assert_eq!(m.state(), State::Backup);
        assert_eq!(
            m.next_deadline(),
            Some(now + ms(10) + m.master_down_interval())
        );
        // Master again later: the refresh counts from then.
        let again = m.next_deadline().unwrap();
        assert_eq!(
            m.on_timer(again),
            [Action::SendAdvert { priority: 100 }, Action::BecomeMaster]
        );
        assert_eq!(m.next_deadline(), Some(again + ms(1000)));
        let mut refreshed = None;
        while refreshed.is_none() {
            let now = m.next_deadline().unwrap();
            if m.on_timer(now).contains(&Action::Refresh) {
                refreshed = Some(now);
            }
        }
        assert_eq!(refreshed, Some(again + ms(2500)));
    }

    #[test]
    fn without_a_refresh_interval_a_master_only_advertises() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(100), t0);
        for k in 1..=30 {
            assert_eq!(m.next_deadline(), Some(t + ms(1000 * k)));
            assert_eq!(
                m.on_timer(t + ms(1000 * k)),
                [Action::SendAdvert { priority: 100 }]
            );
        }
    }

    #[test]
    fn state_displays_and_serializes_lowercase() {
        assert_eq!(State::Initialize.to_string(), "initialize");
        assert_eq!(State::Backup.to_string(), "backup");
        assert_eq!(State::Master.to_string(), "master");
        // serde uses the same names (rename_all applies both ways).
        use serde::de::{
            value::{Error, StrDeserializer},
            IntoDeserializer,
        };
        let parse = |name: &str| {
            let de: StrDeserializer<'_, Error> = name.into_deserializer();
            State::deserialize(de)
        };
        for state in [State::Initialize, State::Backup, State::Master] {
            assert_eq!(parse(&state.to_string()), Ok(state));
        }
        assert!(parse("Master").is_err());
    }

    #[test]
    fn settings_validate() {
        assert_eq!(settings(100).validate(), Ok(()));
        assert_eq!(settings(255).validate(), Ok(()));
        let bad = |f: fn(&mut Settings)| {
            let mut s = settings(100);
            f(&mut s);
            s.validate().unwrap_err()
        };
        assert_eq!(bad(|s| s.vrid = 0), SettingsError::ZeroVrid);
        assert_eq!(bad(|s| s.priority = 0), SettingsError::ZeroPriority);
        assert_eq!(bad(|s| s.adver_interval_cs = 0), SettingsError::Interval(0));
        assert_eq!(
            bad(|s| s.adver_interval_cs = 4096),
            SettingsError::Interval(4096)
        );
        assert_eq!(
            bad(|s| s.preempt_delay = Duration::from_secs(1001)),
            SettingsError::PreemptDelay(Duration::from_secs(1001))
        );
    }

    #[test]
    fn bad_settings_are_normalized() {
        let s = Settings {
            priority: 0,
            adver_interval_cs: 0,
            preempt_delay: Duration::MAX,
            ..settings(100)
        };
        let m = Machine::new(s, ME);
        assert_eq!(m.priority(), 1);
        assert_eq!(m.settings().adver_interval_cs, 1);
        assert_eq!(m.settings().preempt_delay, MAX_PREEMPT_DELAY);
    }

    #[test]
    fn startup_as_owner_advertises_and_becomes_master() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(255), ME);
        assert_eq!(m.state(), State::Initialize);
        assert_eq!(m.next_deadline(), None);
        assert_eq!(
            m.startup(t0),
            [Action::SendAdvert { priority: 255 }, Action::BecomeMaster]
        );
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.master_address(), Some(ME));
        assert_eq!(m.next_deadline(), Some(t0 + ms(1000)));
        assert_eq!(m.counters().became_master, 1);
        assert_eq!(m.counters().adverts_sent, 1);
        // A second startup is a no-op.
        assert_eq!(m.startup(t0), []);
    }

    /// An instance starting without a source (a `unicast_src_ip` not on
    /// the interface yet) is a backup that waits, owner or not, and runs
    /// its Master_Down_Timer once the source is there.
    #[test]
    fn startup_without_a_source_waits_as_backup() {
        let t0 = Instant::now();
        for priority in [255, 100] {
            let mut m = Machine::new(settings(priority), ME);
            m.source_gone(t0);
            assert_eq!(m.startup(t0), [Action::BecomeBackup], "{priority}");
            assert_eq!(m.next_deadline(), None);
            assert_eq!(m.on_timer(t0 + ms(10_000)), []);
            let back = t0 + ms(10_000);
            assert!(!m.source_back(back));
            assert_eq!(m.next_deadline(), Some(back + m.master_down_interval()));
        }
    }

    #[test]
    fn startup_as_non_owner_becomes_backup() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(254), ME);
        assert_eq!(m.startup(t0), [Action::BecomeBackup]);
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.master_address(), None);
        assert_eq!(m.counters().became_backup, 1);
        assert_eq!(m.counters().adverts_sent, 0);
        assert_eq!(m.next_deadline(), Some(t0 + m.master_down_interval()));
    }

    #[test]
    fn master_down_interval_for_priority_100_at_1s() {
        let m = Machine::new(settings(100), ME);
        // (256 - 100) * 1 s / 256 = 0.609375 s exactly.
        assert_eq!(m.skew_time(), us(609_375));
        assert_eq!(m.master_down_interval(), us(3_609_375));
        let owner = Machine::new(settings(255), ME);
        assert_eq!(owner.skew_time(), us(3_906)); // 1 s / 256, truncated
        let lowest = Machine::new(settings(1), ME);
        assert_eq!(lowest.skew_time(), us(996_093));
        // What a restarted lbd measures its state file against, before it
        // has a machine: the quickest peer's (priority 255) interval,
        // whatever our own priority.
        for priority in [1, 100, 254, 255] {
            assert_eq!(
                settings(priority).shortest_master_down_interval(),
                us(3_003_906),
                "{priority}"
            );
        }
        let unchecked = Settings {
            adver_interval_cs: 0,
            ..settings(100)
        };
        // Normalized as the machine runs it: 1 cs, 3 × 10 ms + 39 µs.
        assert_eq!(unchecked.shortest_master_down_interval(), us(30_039));
    }

    #[test]
    fn backup_becomes_master_exactly_when_master_down_timer_expires() {
        let t0 = Instant::now();
        let mut m = backup(settings(100), t0);
        let down = t0 + us(3_609_375);
        assert_eq!(m.next_deadline(), Some(down));
        assert_eq!(m.on_timer(t0), []);
        assert_eq!(m.on_timer(down - us(1)), []);
        assert_eq!(m.state(), State::Backup);
        assert_eq!(
            m.on_timer(down),
            [Action::SendAdvert { priority: 100 }, Action::BecomeMaster]
        );
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.master_address(), Some(ME));
        assert_eq!(m.next_deadline(), Some(down + ms(1000)));
        // Idempotent: nothing more at the same instant.
        assert_eq!(m.on_timer(down), []);
        assert_eq!(m.counters().became_master, 1);
    }

    #[test]
    fn adverts_from_master_keep_backup_down() {
        let t0 = Instant::now();
        let mut m = backup(settings(100), t0);
        let mut t = t0;
        for _ in 0..10 {
            t += ms(1000);
            assert_eq!(m.on_timer(t), []);
            assert_eq!(m.on_advert(&ad(150), HIGHER, t), []);
            assert_eq!(m.next_deadline(), Some(t + us(3_609_375)));
        }
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.master_address(), Some(HIGHER));
        assert_eq!(m.counters().adverts_received, 10);
    }

    #[test]
    fn master_sends_adverts_every_interval() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(255), ME);
        m.startup(t0);
        for i in 1..=5u64 {
            let due = t0 + ms(1000 * i);
            assert_eq!(m.on_timer(due - us(1)), [], "early, tick {i}");
            assert_eq!(m.on_timer(due), [Action::SendAdvert { priority: 255 }]);
            assert_eq!(m.on_timer(due), [], "idempotent, tick {i}");
            assert_eq!(m.next_deadline(), Some(due + ms(1000)));
        }
        assert_eq!(m.counters().adverts_sent, 6);
    }

    /// A tick late by less than makes the silence since the last advert
    /// reach the shortest Master_Down_Interval (3 s + 1/256 s at 1 s) is
    /// a plain advert, rescheduled from now: no peer can have taken over.
    #[test]
    fn late_tick_reschedules_from_now() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(255), ME);
        m.startup(t0);
        let late = t0 + ms(2500);
        assert_eq!(m.on_timer(late), [Action::SendAdvert { priority: 255 }]);
        assert_eq!(m.next_deadline(), Some(late + ms(1000)));
        // Last advert at `late`: silent for 1 µs short of the interval.
        let latest = late + us(3_003_905);
        assert_eq!(m.on_timer(latest), [Action::SendAdvert { priority: 255 }]);
        assert_eq!(m.state(), State::Master);
    }

    /// A master whose Adver_Timer fires so late that the peer may have
    /// gone its Master_Down_Interval without an advert (lbd paused:
    /// SIGSTOP, a cgroup freeze, a VM paused for a migration) is in the
    /// link-outage case: the peer may hold the addresses and the
    /// neighbours, and steps down silently on our advert. So the master
    /// re-announces them in full with its advert, once.
    #[test]
    fn a_master_stalled_past_the_master_down_interval_reclaims() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(100), t0);
        // Last advert at `t`: silent for exactly the shortest interval.
        let back = t + us(3_003_906);
        assert_eq!(
            m.on_timer(back),
            [Action::SendAdvert { priority: 100 }, Action::Reclaim]
        );
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.next_deadline(), Some(back + ms(1000)));
        assert_eq!(
            m.on_timer(back + ms(1000)),
            [Action::SendAdvert { priority: 100 }]
        );
        // A long pause, and a refresh due meanwhile: the reclaim covers it.
        let s = Settings {
            announce_refresh: Some(ms(2500)),
            ..settings(100)
        };
        let (mut m, t) = master(s, t0);
        let back = t + ms(60_000);
        assert_eq!(
            m.on_timer(back),
            [Action::SendAdvert { priority: 100 }, Action::Reclaim]
        );
        assert_eq!(m.next_deadline(), Some(back + ms(1000)));
        // The peer's advert queued meanwhile, lower: already answered.
        assert_eq!(m.on_advert(&ad(90), LOWER, back + ms(1)), []);
        // A priority change first after the pause carries the reclaim.
        let (mut m, t) = master(settings(100), t0);
        assert_eq!(
            m.set_priority(90, t + ms(5_000)),
            [Action::SendAdvert { priority: 90 }, Action::Reclaim]
        );
    }

    /// With replication, the stalled master steps back as after a link
    /// outage: no advert (the peer keeps the connections it opened), and
    /// preemption held for the peer's flows.
    #[test]
    fn a_replicating_master_stalled_steps_back_for_sync() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(200), t0);
        m.hold_after_outages(PREEMPT_SYNC_HOLD);
        let sent = m.counters().adverts_sent;
        let back = t + ms(5_000);
        assert_eq!(m.on_timer(back), [Action::BecomeBackup]);
        assert_eq!(m.state(), State::Backup);
        assert!(m.holding_for_sync(back));
        assert_eq!(m.counters().adverts_sent, sent);
        assert_eq!(m.next_deadline(), Some(back + m.master_down_interval()));
        // The peer, master at 100 meanwhile, is followed.
        assert_eq!(m.on_advert(&ad(100), LOWER, back + ms(10)), []);
        assert_eq!(m.master_address(), Some(LOWER));
        // Its advert may come first (queued in the socket): the same.
        let (mut m, t) = master(settings(200), t0);
        m.hold_after_outages(PREEMPT_SYNC_HOLD);
        let back = t + ms(5_000);
        assert_eq!(m.on_advert(&ad(100), LOWER, back), [Action::BecomeBackup]);
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.master_address(), Some(LOWER));
        assert!(m.holding_for_sync(back));
        assert_eq!(m.counters().adverts_sent, sent);
    }

    /// After a stall, a queued advert that beats ours comes from a peer
    /// that took over and announced the addresses then: the master steps
    /// down silently, as ever, and claims nothing on the way.
    #[test]
    fn a_stalled_master_hearing_a_winner_first_steps_down_silently() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(100), t0);
        let sent = m.counters().adverts_sent;
        let back = t + ms(5_000);
        assert_eq!(m.on_advert(&ad(150), HIGHER, back), [Action::BecomeBackup]);
        assert_eq!(m.counters().adverts_sent, sent);
        // A stall while the link is down is the link's to settle.
        let (mut m, t) = master(settings(100), t0);
        m.link_down(t + ms(500));
        assert_eq!(
            m.on_timer(t + ms(5_000)),
            [Action::SendAdvert { priority: 100 }]
        );
    }

    /// Two routers; the master (150) stalls for 10 s and the backup (100)
    /// takes over, announcing the addresses. Whichever is master in the
    /// end, the last router to announce them is that one: the resumed
    /// master reclaims with the advert the peer steps down on; a resumed
    /// master of lower priority (the peer, `nopreempt`, had deferred to
    /// it) reclaims too, and the peer answers its advert with a
    /// re-announcement and stays master.
    #[test]
    fn after_a_stall_the_master_is_the_last_to_announce() {
        for (priorities, preempt, master_after) in [([150, 100], true, 0), ([100, 150], false, 1)] {
            let t0 = Instant::now();
            let addresses = [HIGHER, ME];
            let mut link = Link {
                routers: [0, 1].map(|i| {
                    let s = Settings {
                        preempt,
                        ..settings(priorities[i])
                    };
                    Machine::new(s, addresses[i])
                }),
                now: t0,
                announced: Vec::new(),
            };
            // Router 0 is master first: it starts alone.
            let actions = link.routers[0].startup(t0);
            link.deliver(0, actions);
            let down = link.routers[0].next_deadline().unwrap();
            link.now = down;
            let actions = link.routers[0].on_timer(down);
            link.deliver(0, actions);
            let actions = link.routers[1].startup(down);
            link.deliver(1, actions);
            link.run_until(down + ms(10_000));
            assert_eq!(link.states(), [State::Master, State::Backup]);
            // Router 0 stalls: router 1 runs alone and takes over.
            let stall = link.now;
            let mut now = stall;
            while now < stall + ms(10_000) {
                now = link.routers[1].next_deadline().unwrap();
                link.now = now;
                let actions = link.routers[1].on_timer(now);
                link.announced.extend(
                    actions
                        .iter()
                        .filter(|a| **a == Action::BecomeMaster)
                        .map(|a| (1, *a)),
                );
            }
            assert_eq!(link.states(), [State::Master, State::Master]);
            // Router 0 resumes: its overdue timer fires first.
            let actions = link.routers[0].on_timer(now);
            link.deliver(0, actions);
            link.run_until(now + ms(10_000));
            let mut expected = [State::Backup; 2];
            expected[master_after] = State::Master;
            assert_eq!(link.states(), expected, "{priorities:?}");
            let last = link.announced.last().copied();
            assert!(
                last.is_some_and(|(who, _)| who == master_after),
                "{priorities:?}: {:?}",
                link.announced
            );
        }
    }

    #[test]
    fn higher_priority_advert_makes_master_step_down() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(100), t0);
        let t1 = t + ms(200);
        let theirs = Advertisement {
            max_adver_int_cs: 200,
            ..ad(101)
        };
        assert_eq!(m.on_advert(&theirs, LOWER, t1), [Action::BecomeBackup]);
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.master_address(), Some(LOWER));
        // Master_Adver_Interval learned from the advert: 3 * 2 s + skew.
        assert_eq!(m.master_adver_interval(), ms(2000));
        assert_eq!(m.master_down_interval(), us(6_000_000 + 1_218_750));
        assert_eq!(m.next_deadline(), Some(t1 + us(7_218_750)));
        assert_eq!(m.counters().became_backup, 2);
    }

    #[test]
    fn master_keeps_mastership_on_lower_priority_advert() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(100), t0);
        let deadline = m.next_deadline();
        // It stays master and re-announces (see the test below).
        assert_eq!(
            m.on_advert(&ad(99), HIGHER, t + ms(10)),
            [Action::SendAdvert { priority: 100 }, Action::Reannounce]
        );
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.next_deadline(), deadline);
    }

    #[test]
    fn backup_with_preempt_ignores_lower_priority_and_takes_over_on_down_timer() {
        let t0 = Instant::now();
        let mut m = backup(settings(200), t0);
        let down = m.next_deadline().unwrap();
        // §6.4.2: preempt on and lower priority: discard, so the timer is
        // not reset and the master address not learned.
        let mut t = t0;
        while t + ms(1000) < down {
            t += ms(1000);
            assert_eq!(m.on_advert(&ad(100), LOWER, t), []);
            assert_eq!(m.next_deadline(), Some(down));
        }
        assert_eq!(m.master_address(), None);
        assert_eq!(
            m.on_timer(down),
            [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
        );
    }

    #[test]
    fn backup_without_preempt_defers_to_lower_priority_master() {
        let t0 = Instant::now();
        let s = Settings {
            preempt: false,
            ..settings(200)
        };
        let mut m = backup(s, t0);
        let mut t = t0;
        for _ in 0..20 {
            t += ms(1000);
            assert_eq!(m.on_timer(t), []);
            assert_eq!(m.on_advert(&ad(100), LOWER, t), []);
        }
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.master_address(), Some(LOWER));
        // The master goes silent: take over when the down timer fires.
        let down = t + m.master_down_interval();
        assert_eq!(m.next_deadline(), Some(down));
        assert_eq!(m.on_timer(down - us(1)), []);
        assert_eq!(
            m.on_timer(down),
            [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
        );
    }

    #[test]
    fn priority_zero_advert_makes_backup_take_over_after_skew_time_only() {
        let t0 = Instant::now();
        let mut m = backup(settings(100), t0);
        let t1 = t0 + ms(1000);
        m.on_advert(&ad(150), HIGHER, t1);
        let t2 = t1 + ms(500);
        assert_eq!(m.on_advert(&ad(0), HIGHER, t2), []);
        assert_eq!(m.next_deadline(), Some(t2 + us(609_375)));
        assert_eq!(m.on_timer(t2 + us(609_374)), []);
        assert_eq!(
            m.on_timer(t2 + us(609_375)),
            [Action::SendAdvert { priority: 100 }, Action::BecomeMaster]
        );
        assert_eq!(m.counters().priority_zero_received, 1);
    }

    #[test]
    fn priority_zero_advert_makes_master_advertise_at_once() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(100), t0);
        let t1 = t + ms(300);
        assert_eq!(
            m.on_advert(&ad(0), HIGHER, t1),
            [Action::SendAdvert { priority: 100 }]
        );
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.next_deadline(), Some(t1 + ms(1000)));
    }

    #[test]
    fn shutdown_as_master_sends_priority_zero() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(100), t0);
        assert_eq!(
            m.shutdown(t),
            [Action::SendAdvert { priority: 0 }, Action::BecomeInitialize]
        );
        assert_eq!(m.state(), State::Initialize);
        assert_eq!(m.next_deadline(), None);
        assert_eq!(m.master_address(), None);
        assert_eq!(m.counters().priority_zero_sent, 1);
        assert_eq!(m.counters().adverts_sent, 2);
        // Effective priority is kept; nothing more to do.
        assert_eq!(m.priority(), 100);
        assert_eq!(m.shutdown(t), []);
        assert_eq!(m.on_timer(t + ms(5000)), []);
        assert_eq!(m.on_advert(&ad(50), LOWER, t), []);
    }

    #[test]
    fn shutdown_as_backup_stops_quietly_and_restarts() {
        let t0 = Instant::now();
        let mut m = backup(settings(100), t0);
        assert_eq!(m.shutdown(t0), [Action::BecomeInitialize]);
        assert_eq!(m.state(), State::Initialize);
        assert_eq!(m.counters().adverts_sent, 0);
        let t1 = t0 + ms(10_000);
        assert_eq!(m.startup(t1), [Action::BecomeBackup]);
        assert_eq!(m.next_deadline(), Some(t1 + us(3_609_375)));
    }

    #[test]
    fn equal_priority_higher_address_wins() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(100), t0);
        assert_eq!(m.on_advert(&ad(100), HIGHER, t), [Action::BecomeBackup]);
        assert_eq!(m.master_address(), Some(HIGHER));
    }

    #[test]
    fn equal_priority_lower_address_loses() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(100), t0);
        assert_eq!(
            m.on_advert(&ad(100), LOWER, t),
            [Action::SendAdvert { priority: 100 }, Action::Reannounce]
        );
        assert_eq!(m.state(), State::Master);
        // Our own advert looped back is not "greater" either, nor a claim.
        assert_eq!(m.on_advert(&ad(100), ME, t + ms(5000)), []);
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn master_hearing_a_lower_priority_advert_reannounces_at_most_once_per_interval() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(150), t0);
        let deadline = m.next_deadline();
        let again = [Action::SendAdvert { priority: 150 }, Action::Reannounce];
        assert_eq!(m.on_advert(&ad(100), LOWER, t + ms(10)), again);
        assert_eq!(m.state(), State::Master);
        // The extra advert does not move the Adver_Timer.
        assert_eq!(m.next_deadline(), deadline);
        // A peer stuck as master with 10 ms adverts: no storm.
        for n in 2..100 {
            assert_eq!(m.on_advert(&ad(100), LOWER, t + ms(10 * n)), []);
        }
        assert_eq!(m.on_advert(&ad(100), LOWER, t + ms(1010)), again);
        assert_eq!(m.on_advert(&ad(100), HIGHER, t + ms(1020)), []);
        assert_eq!(m.counters().adverts_sent, 3);
        // Lost mastership and won it back: the next claim is answered.
        let t1 = t + ms(1030);
        assert_eq!(m.on_advert(&ad(200), HIGHER, t1), [Action::BecomeBackup]);
        let down = m.next_deadline().unwrap();
        m.on_timer(down);
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.on_advert(&ad(100), LOWER, down + ms(1)), again);
    }

    #[test]
    fn addresses_compare_as_unsigned_big_endian() {
        let a: IpAddr = "10.0.0.255".parse().unwrap();
        let b: IpAddr = "10.0.1.0".parse().unwrap();
        assert!(address_greater(b, a));
        assert!(!address_greater(a, b));
        let hi: IpAddr = "200.0.0.1".parse().unwrap();
        let lo: IpAddr = "100.255.255.255".parse().unwrap();
        assert!(address_greater(hi, lo), "no signed overflow");
        let v6a: IpAddr = "fe80::1:0".parse().unwrap();
        let v6b: IpAddr = "fe80::ffff".parse().unwrap();
        assert!(address_greater(v6a, v6b));
        assert!(!address_greater(v6a, a) && !address_greater(a, v6a));
    }

    #[test]
    fn equal_priority_in_backup_resets_the_timer_whatever_the_address() {
        // §6.4.2 compares priority only: equal priority is a valid master.
        let t0 = Instant::now();
        let mut m = backup(settings(100), t0);
        let t1 = t0 + ms(3000);
        m.on_advert(&ad(100), LOWER, t1);
        assert_eq!(m.next_deadline(), Some(t1 + us(3_609_375)));
        assert_eq!(m.master_address(), Some(LOWER));
    }

    #[test]
    fn backup_learns_master_adver_interval() {
        let t0 = Instant::now();
        let mut m = backup(settings(100), t0);
        assert_eq!(m.master_adver_interval(), ms(1000));
        let fast = Advertisement {
            max_adver_int_cs: 50,
            ..ad(150)
        };
        let t1 = t0 + ms(100);
        m.on_advert(&fast, HIGHER, t1);
        assert_eq!(m.master_adver_interval(), ms(500));
        // 3 * 0.5 s + 156 * 0.5 s / 256 (304 687.5 µs, truncated)
        assert_eq!(m.master_down_interval(), us(1_500_000 + 304_687));
        assert_eq!(m.next_deadline(), Some(t1 + us(1_804_687)));
        // A priority-0 advert does not teach an interval.
        let stop = Advertisement {
            max_adver_int_cs: 4000,
            ..ad(0)
        };
        m.on_advert(&stop, HIGHER, t1 + ms(100));
        assert_eq!(m.master_adver_interval(), ms(500));
        // Once master, we advertise at our own interval.
        let t2 = m.next_deadline().unwrap();
        m.on_timer(t2);
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.next_deadline(), Some(t2 + ms(1000)));
    }

    #[test]
    fn learned_interval_is_not_learned_from_discarded_adverts() {
        let t0 = Instant::now();
        let mut m = backup(settings(200), t0);
        let slow = Advertisement {
            max_adver_int_cs: 1000,
            ..ad(100)
        };
        m.on_advert(&slow, LOWER, t0 + ms(10));
        assert_eq!(m.master_adver_interval(), ms(1000));
    }

    #[test]
    fn set_priority_in_master_advertises_at_once() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(150), t0);
        let t1 = t + ms(250);
        assert_eq!(
            m.set_priority(50, t1),
            [Action::SendAdvert { priority: 50 }]
        );
        assert_eq!(m.priority(), 50);
        assert_eq!(m.next_deadline(), Some(t1 + ms(1000)));
        assert_eq!(
            m.on_timer(t1 + ms(1000)),
            [Action::SendAdvert { priority: 50 }]
        );
        // Unchanged: nothing to do.
        assert_eq!(m.set_priority(50, t1), []);
        // Now a backup of priority 100 preempts us.
        assert_eq!(m.on_advert(&ad(100), LOWER, t1), [Action::BecomeBackup]);
    }

    #[test]
    fn set_priority_is_clamped() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(100), ME);
        assert_eq!(m.set_priority(0, t0), []);
        assert_eq!(m.priority(), 1);
        m.set_priority(255, t0);
        assert_eq!(m.priority(), 254, "255 is for a configured owner only");
        let mut owner = Machine::new(settings(255), ME);
        owner.set_priority(200, t0);
        assert_eq!(owner.priority(), 200);
        owner.set_priority(255, t0);
        assert_eq!(owner.priority(), 255);
        // A lowered owner starts as a backup.
        owner.set_priority(200, t0);
        assert_eq!(owner.startup(t0), [Action::BecomeBackup]);
    }

    #[test]
    fn raised_priority_in_backup_preempts_at_next_down_check() {
        let t0 = Instant::now();
        let mut m = backup(settings(90), t0);
        let mut t = t0 + ms(500);
        m.on_advert(&ad(100), HIGHER, t);
        assert_eq!(m.set_priority(110, t), []);
        assert_eq!(m.state(), State::Backup);
        // The master's adverts are now lower than us: discarded.
        let down = m.next_deadline().unwrap();
        assert_eq!(down, t + us(3_000_000 + 166 * 1_000_000 / 256));
        while t + ms(1000) < down {
            t += ms(1000);
            m.on_advert(&ad(100), HIGHER, t);
            assert_eq!(m.next_deadline(), Some(down));
        }
        assert_eq!(
            m.on_timer(down),
            [Action::SendAdvert { priority: 110 }, Action::BecomeMaster]
        );
    }

    #[test]
    fn preempt_delay_defers_to_lower_master_after_startup() {
        let t0 = Instant::now();
        let s = Settings {
            preempt_delay: Duration::from_secs(10),
            ..settings(200)
        };
        let mut m = backup(s, t0);
        // Within the delay, the lower master's adverts reset the timer.
        let mut t = t0 + ms(500);
        while t < t0 + ms(10_000) {
            assert_eq!(m.on_advert(&ad(100), LOWER, t), []);
            assert_eq!(m.next_deadline(), Some(t + m.master_down_interval()));
            t += ms(1000);
        }
        // t = t0 + 10.5 s: the delay is over, adverts are discarded and the
        // timer last reset at t0 + 9.5 s fires.
        let down = t0 + ms(9500) + us(3_000_000 + 56 * 1_000_000 / 256);
        while t < down {
            assert_eq!(m.on_advert(&ad(100), LOWER, t), []);
            assert_eq!(m.next_deadline(), Some(down));
            assert_eq!(m.on_timer(t), []);
            t += ms(1000);
        }
        assert_eq!(
            m.on_timer(down),
            [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
        );
    }

    #[test]
    fn without_preempt_delay_the_lower_master_is_preempted_at_once() {
        let t0 = Instant::now();
        let mut m = backup(settings(200), t0);
        let down = t0 + us(3_000_000 + 56 * 1_000_000 / 256);
        m.on_advert(&ad(100), LOWER, t0 + ms(500));
        assert_eq!(m.next_deadline(), Some(down));
    }

    #[test]
    fn preempt_delay_restarts_when_a_lower_master_is_first_heard() {
        let t0 = Instant::now();
        let s = Settings {
            preempt_delay: Duration::from_secs(10),
            ..settings(200)
        };
        let mut m = backup(s, t0);
        // A higher master stops the startup delay ...
        m.on_advert(&ad(250), HIGHER, t0 + ms(100));
        // ... then, long after startup, the master drops below us: the
        // delay starts now, so we keep deferring for 10 s.
        let t1 = t0 + ms(60_000);
        m.on_advert(&ad(150), HIGHER, t1);
        assert_eq!(m.next_deadline(), Some(t1 + m.master_down_interval()));
        let t2 = t1 + ms(9_999);
        m.on_advert(&ad(150), HIGHER, t2);
        assert_eq!(m.next_deadline(), Some(t2 + m.master_down_interval()));
        // At the end of the delay, discarded.
        let t3 = t1 + ms(10_000);
        m.on_advert(&ad(150), HIGHER, t3);
        assert_eq!(m.next_deadline(), Some(t2 + m.master_down_interval()));
    }

    /// A backup started with the sync hold, hearing a lower master every
    /// second from `from` until (not including) `until`; returns the time
    /// of the last advert.
    fn hear_lower(m: &mut Machine, from: Instant, until: Instant) -> Instant {
        let mut t = from;
        let mut last = from;
        while t < until {
            assert_eq!(m.on_advert(&ad(100), LOWER, t), []);
            last = t;
            t += ms(1000);
        }
        last
    }

    #[test]
    fn sync_hold_defers_preemption_until_the_peer_dump_arrives() {
        let t0 = Instant::now();
        let mut m = backup(settings(200), t0);
        m.hold_preemption(t0, PREEMPT_SYNC_HOLD);
        // Held: the lower master's adverts keep resetting the timer, so
        // the machine never preempts however long it waits.
        let last = hear_lower(&mut m, t0 + ms(500), t0 + ms(4_500));
        assert_eq!(m.next_deadline(), Some(last + m.master_down_interval()));
        assert_eq!(m.on_timer(last + ms(999)), []);
        assert_eq!(m.state(), State::Backup);
        // The dump arrives: the next lower advert is discarded and the
        // timer last reset fires.
        m.peer_synced();
        assert!(!m.holding_for_sync(last + ms(500)));
        let t = last + ms(1000);
        assert_eq!(m.on_advert(&ad(100), LOWER, t), []);
        let down = last + m.master_down_interval();
        assert_eq!(m.next_deadline(), Some(down));
        assert_eq!(
            m.on_timer(down),
            [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
        );
    }

    #[test]
    fn sync_hold_times_out_and_preempts_without_the_dump() {
        let t0 = Instant::now();
        let mut m = backup(settings(200), t0);
        m.hold_preemption(t0, ms(5_000));
        let last = hear_lower(&mut m, t0 + ms(500), t0 + ms(5_000));
        assert!(m.holding_for_sync(last));
        assert!(!m.holding_for_sync(t0 + ms(5_000)));
        // t0 + 5.5 s: past the hold, the advert is discarded.
        assert_eq!(m.on_advert(&ad(100), LOWER, last + ms(1000)), []);
        let down = last + m.master_down_interval();
        assert_eq!(m.next_deadline(), Some(down));
        assert_eq!(
            m.on_timer(down),
            [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
        );
    }

    #[test]
    fn sync_hold_never_delays_taking_over_from_a_silent_or_leaving_master() {
        let t0 = Instant::now();
        // A master that goes silent: the down timer fires on time.
        let mut m = backup(settings(200), t0);
        m.hold_preemption(t0, PREEMPT_SYNC_HOLD);
        let last = hear_lower(&mut m, t0 + ms(500), t0 + ms(2_000));
        let down = last + m.master_down_interval();
        assert!(m.holding_for_sync(down));
        assert_eq!(
            m.on_timer(down),
            [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
        );
        // A master that steps down (priority 0): skew time only.
        let mut m = backup(settings(200), t0);
        m.hold_preemption(t0, PREEMPT_SYNC_HOLD);
        hear_lower(&mut m, t0 + ms(500), t0 + ms(2_000));
        let t = t0 + ms(2_100);
        assert_eq!(m.on_advert(&ad(0), LOWER, t), []);
        assert_eq!(m.next_deadline(), Some(t + m.skew_time()));
        // A higher master is followed as ever, and with no hold the lower
        // master is preempted at once.
        let mut m = backup(settings(200), t0);
        assert!(!m.holding_for_sync(t0));
        m.on_advert(&ad(100), LOWER, t0 + ms(500));
        assert_eq!(
            m.next_deadline(),
            Some(t0 + us(3_000_000 + 56 * 1_000_000 / 256))
        );
    }

    #[test]
    fn an_owner_holding_for_the_peer_dump_starts_as_backup_then_preempts() {
        let t0 = Instant::now();
        // Without the hold, master at once (RFC 5798 §6.4.1).
        let mut m = Machine::new(settings(255), ME);
        assert_eq!(
            m.startup(t0),
            [Action::SendAdvert { priority: 255 }, Action::BecomeMaster]
        );
        // With it, a backup that follows the live (lower) master until
        // the peer's dump arrives, then takes over: an owner preempts even
        // with `nopreempt`.
        let s = Settings {
            preempt: false,
            ..settings(255)
        };
        let mut m = Machine::new(s, ME);
        m.hold_preemption(t0, PREEMPT_SYNC_HOLD);
        assert_eq!(m.startup(t0), [Action::BecomeBackup]);
        let last = hear_lower(&mut m, t0 + ms(500), t0 + ms(4_500));
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.next_deadline(), Some(last + m.master_down_interval()));
        m.peer_synced();
        assert_eq!(m.on_advert(&ad(100), LOWER, last + ms(1000)), []);
        let down = last + m.master_down_interval();
        assert_eq!(m.next_deadline(), Some(down));
        assert_eq!(
            m.on_timer(down),
            [Action::SendAdvert { priority: 255 }, Action::BecomeMaster]
        );
        // With no master on the link: master after one master-down
        // interval (3 s + 1 s / 256).
        let mut m = Machine::new(settings(255), ME);
        m.hold_preemption(t0, PREEMPT_SYNC_HOLD);
        assert_eq!(m.startup(t0), [Action::BecomeBackup]);
        let down = t0 + us(3_003_906);
        assert_eq!(m.next_deadline(), Some(down));
        assert_eq!(
            m.on_timer(down),
            [Action::SendAdvert { priority: 255 }, Action::BecomeMaster]
        );
    }

    #[test]
    fn link_up_in_master_advertises_and_reclaims_the_addresses() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(150), t0);
        let sent = m.counters().adverts_sent;
        let t1 = t + ms(300);
        assert_eq!(
            m.link_up(t1, 150),
            [Action::SendAdvert { priority: 150 }, Action::Reclaim]
        );
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.counters().adverts_sent, sent + 1);
        // The advert timer restarts from the advert just sent.
        assert_eq!(m.next_deadline(), Some(t1 + ms(1000)));
        // A backup (or a stopped instance) has nothing to claim.
        let mut b = backup(settings(100), t0);
        let down = b.next_deadline();
        assert_eq!(b.link_up(t0 + ms(100), 100), []);
        assert_eq!(b.state(), State::Backup);
        assert_eq!(b.next_deadline(), down);
        assert_eq!(Machine::new(settings(100), ME).link_up(t0, 100), []);
    }

    /// With replication, a master whose link was down long enough for the
    /// peer to have taken over (and opened NAT'd connections of its own)
    /// does not take the addresses back on link-up: silent through the
    /// outage, it steps down to backup without an advert and holds
    /// preemption until the peer's dump, as at start.
    #[test]
    fn after_a_long_outage_a_replicating_master_steps_back_for_the_peer_flows() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(200), t0);
        m.hold_after_outages(PREEMPT_SYNC_HOLD);
        let sent = m.counters().adverts_sent;
        // Last seen up 0.5 s after the last advert.
        let since = t + ms(500);
        m.link_down(since);
        assert!(m.link_is_down());
        // Silent while down: neither the timer nor tracking (the link's
        // weight taken, then given back before link-up) sends anything.
        assert_eq!(m.on_timer(t + ms(1000)), []);
        assert_eq!(m.set_priority(100, t + ms(1500)), []);
        assert_eq!(m.on_timer(t + ms(2000)), []);
        let back = since + ms(4_000);
        assert_eq!(m.set_priority(200, back), []);
        assert_eq!(m.counters().adverts_sent, sent);
        // Back after 4 s (the peer takes over after 3.2 s at most).
        assert_eq!(m.link_up(back, 200), [Action::BecomeBackup]);
        assert!(!m.link_is_down());
        assert_eq!(m.state(), State::Backup);
        assert!(m.holding_for_sync(back));
        assert_eq!(m.counters().adverts_sent, sent);
        // The peer, master now at 100, is followed until its dump arrives.
        let last = hear_lower(&mut m, back + ms(300), back + ms(6_000));
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.next_deadline(), Some(last + m.master_down_interval()));
        m.peer_synced();
        assert_eq!(m.on_advert(&ad(100), LOWER, last + ms(1000)), []);
        let down = last + m.master_down_interval();
        assert_eq!(m.next_deadline(), Some(down));
        assert_eq!(
            m.on_timer(down),
            [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
        );
        // A peer that is not master after all: taken over from after one
        // Master_Down_Interval, the hold notwithstanding.
        let (mut m, t) = master(settings(200), t0);
        m.hold_after_outages(PREEMPT_SYNC_HOLD);
        m.link_down(t);
        let back = t + ms(5_000);
        assert_eq!(m.link_up(back, 200), [Action::BecomeBackup]);
        let down = back + m.master_down_interval();
        assert_eq!(m.next_deadline(), Some(down));
        assert_eq!(
            m.on_timer(down),
            [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
        );
    }

    /// The outage that makes a master step back: the peer may have gone
    /// its Master_Down_Interval (at least 3 × 1 s + 1/256 s) without an
    /// advert, counting the up to one interval between our last advert
    /// and the link last seen up. Shorter, the master reclaims as ever;
    /// without replication, always, and it advertises through the outage.
    #[test]
    fn a_short_outage_or_no_replication_keeps_mastership() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(200), t0);
        m.hold_after_outages(PREEMPT_SYNC_HOLD);
        m.link_down(t);
        // 1 s + 2.003 s < 3.004 s.
        let back = t + ms(2_003);
        assert_eq!(
            m.link_up(back, 200),
            [Action::SendAdvert { priority: 200 }, Action::Reclaim]
        );
        assert_eq!(m.state(), State::Master);
        let (mut m, t) = master(settings(200), t0);
        m.hold_after_outages(PREEMPT_SYNC_HOLD);
        m.link_down(t);
        assert_eq!(m.link_up(t + us(2_003_906), 200), [Action::BecomeBackup]);
        // A second report of the same outage keeps its start.
        let (mut m, t) = master(settings(200), t0);
        m.hold_after_outages(PREEMPT_SYNC_HOLD);
        m.link_down(t);
        m.link_down(t + ms(1_500));
        assert_eq!(m.link_up(t + ms(2_500), 200), [Action::BecomeBackup]);
        // No replication: adverts go on, and the master reclaims.
        let (mut m, t) = master(settings(200), t0);
        m.link_down(t);
        assert_eq!(
            m.on_timer(t + ms(1000)),
            [Action::SendAdvert { priority: 200 }]
        );
        assert_eq!(
            m.link_up(t + ms(10_000), 200),
            [Action::SendAdvert { priority: 200 }, Action::Reclaim]
        );
        // A backup ends the outage quietly.
        let mut b = backup(settings(100), t0);
        b.hold_after_outages(PREEMPT_SYNC_HOLD);
        b.link_down(t0);
        assert_eq!(b.link_up(t0 + ms(10_000), 100), []);
        assert!(!b.link_is_down());
    }

    /// The priority tracking lowered for the outage (the link's weight,
    /// with the defaults 100 − 100 = 1) is never what a master advertises
    /// on its link's return: `link_up` takes the restored one first, so
    /// the advert that goes with the reclaim carries it, and no second
    /// advert is needed. While the link is down a priority change sends
    /// nothing at once; the adverts the timer sends meanwhile (no
    /// replication) carry it, and reach no one.
    #[test]
    fn the_link_up_advert_carries_the_priority_the_link_brings_back() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(100), t0);
        m.link_down(t);
        assert_eq!(m.set_priority(1, t + ms(500)), []);
        assert_eq!(m.priority(), 1);
        assert_eq!(
            m.on_timer(t + ms(1000)),
            [Action::SendAdvert { priority: 1 }]
        );
        let sent = m.counters().adverts_sent;
        let back = t + ms(1_700);
        assert_eq!(
            m.link_up(back, 100),
            [Action::SendAdvert { priority: 100 }, Action::Reclaim]
        );
        assert_eq!(m.priority(), 100);
        assert_eq!(m.counters().adverts_sent, sent + 1);
        assert_eq!(m.next_deadline(), Some(back + ms(1000)));
        assert_eq!(
            m.on_timer(back + ms(1000)),
            [Action::SendAdvert { priority: 100 }]
        );
        // With the link up, a change is advertised at once, as ever.
        assert_eq!(
            m.set_priority(90, back + ms(1100)),
            [Action::SendAdvert { priority: 90 }]
        );
        // The owner's 255 is kept; anyone else's is held to 254, 0 to 1.
        let (mut m, t) = master(settings(200), t0);
        m.link_down(t);
        assert_eq!(
            m.link_up(t + ms(500), 255),
            [Action::SendAdvert { priority: 254 }, Action::Reclaim]
        );
        m.link_down(t + ms(600));
        assert_eq!(
            m.link_up(t + ms(700), 0),
            [Action::SendAdvert { priority: 1 }, Action::Reclaim]
        );
        // A replicating master that steps back measures its new
        // Master_Down_Interval with the restored priority too.
        let (mut m, t) = master(settings(200), t0);
        m.hold_after_outages(PREEMPT_SYNC_HOLD);
        m.link_down(t);
        assert_eq!(m.set_priority(100, t + ms(500)), []);
        let back = t + ms(5_000);
        assert_eq!(m.link_up(back, 200), [Action::BecomeBackup]);
        assert_eq!(m.priority(), 200);
        assert_eq!(
            m.next_deadline(),
            Some(back + us(3_000_000 + 56 * 1_000_000 / 256))
        );
    }

    /// A backup whose link is down hears no master because it hears
    /// nothing: its Master_Down_Timer does not make it master (which would
    /// put the addresses on a dead interface, run the master notify and
    /// then reclaim them from the live master at link-up). It waits; at
    /// link-up it is a backup with a fresh Master_Down_Timer, and takes
    /// over only if no master speaks within it.
    #[test]
    fn a_backup_whose_link_is_down_does_not_take_over() {
        let t0 = Instant::now();
        let mut m = backup(settings(100), t0);
        m.on_advert(&ad(150), HIGHER, t0 + ms(500));
        let down = t0 + ms(500) + m.master_down_interval();
        assert_eq!(m.next_deadline(), Some(down));
        m.link_down(t0 + ms(800));
        assert_eq!(m.next_deadline(), None);
        assert_eq!(m.on_timer(down), []);
        assert_eq!(m.on_timer(down + ms(10_000)), []);
        // Not even a priority-0 advert heard as the link went.
        m.on_advert(&ad(0), HIGHER, down + ms(10_100));
        assert_eq!(m.on_timer(down + ms(11_000)), []);
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.counters().became_master, 0);
        assert_eq!(m.counters().adverts_sent, 0);
        // Back: a backup, nothing to claim, a fresh timer.
        let back = down + ms(20_000);
        assert_eq!(m.link_up(back, 100), []);
        assert_eq!(m.state(), State::Backup);
        let fresh = back + m.master_down_interval();
        assert_eq!(m.next_deadline(), Some(fresh));
        // The master speaks within it: followed.
        m.on_advert(&ad(150), HIGHER, back + ms(300));
        assert_eq!(m.on_timer(fresh), []);
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.master_address(), Some(HIGHER));
        // No master after the link's return: master one interval later,
        // with an advert and the claim of any takeover, no reclaim.
        let mut m = backup(settings(100), t0);
        m.link_down(t0);
        let back = t0 + ms(10_000);
        assert_eq!(m.link_up(back, 100), []);
        let fresh = back + m.master_down_interval();
        assert_eq!(m.on_timer(fresh - us(1)), []);
        assert_eq!(
            m.on_timer(fresh),
            [Action::SendAdvert { priority: 100 }, Action::BecomeMaster]
        );
    }

    /// Two routers, the backup's link cut for 10 s: it stays backup all
    /// along and after, the master never changes, and no one reclaims.
    #[test]
    fn a_cut_backup_never_competes_with_the_live_master() {
        let t0 = Instant::now();
        let mut link = Link {
            routers: [
                Machine::new(settings(150), HIGHER),
                Machine::new(settings(100), ME),
            ],
            now: t0,
            announced: Vec::new(),
        };
        for i in 0..2 {
            let actions = link.routers[i].startup(t0);
            link.deliver(i, actions);
        }
        link.run_until(t0 + ms(10_000));
        assert_eq!(link.states(), [State::Master, State::Backup]);
        let before = [*link.routers[0].counters(), *link.routers[1].counters()];
        let cut = link.now;
        link.routers[1].link_down(cut);
        // While cut, the master's adverts do not reach it.
        let mut now = cut;
        while now < cut + ms(10_000) {
            now = link.routers[0].next_deadline().unwrap();
            let master_actions = link.routers[0].on_timer(now);
            assert!(master_actions
                .iter()
                .all(|a| matches!(a, Action::SendAdvert { .. })));
            assert_eq!(link.routers[1].on_timer(now), []);
        }
        link.now = now;
        assert_eq!(link.routers[1].link_up(now, 100), []);
        link.run_until(now + ms(30_000));
        assert_eq!(link.states(), [State::Master, State::Backup]);
        assert_eq!(link.routers[1].counters().became_master, 0);
        for (router, was) in link.routers.iter().zip(before) {
            assert_eq!(router.counters().became_master, was.became_master);
            assert_eq!(router.counters().became_backup, was.became_backup);
        }
    }

    #[test]
    fn other_vrid_is_ignored() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(100), t0);
        let other = Advertisement {
            vrid: 52,
            ..ad(200)
        };
        assert_eq!(m.on_advert(&other, HIGHER, t), []);
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.counters().adverts_received, 0);
    }

    #[test]
    fn initialize_ignores_everything_but_startup() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(100), ME);
        assert_eq!(m.on_timer(t0 + ms(100_000)), []);
        assert_eq!(m.on_advert(&ad(0), HIGHER, t0), []);
        assert_eq!(m.shutdown(t0), []);
        assert_eq!(m.set_priority(120, t0), []);
        assert_eq!(m.state(), State::Initialize);
    }

    /// A restarted lbd resuming its mastership is no failover: it counts
    /// as resumed, not as a transition to master (which a rule on
    /// `lbd_vrrp_transitions_total{to="master"}` would read as one).
    #[test]
    fn a_resumed_mastership_is_not_counted_as_a_transition() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(100), ME);
        let actions = m.resume_master(t0);
        assert!(actions.contains(&Action::BecomeMaster), "{actions:?}");
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.counters().became_master, 0);
        assert_eq!(m.counters().resumed, 1);
        // A later takeover counts as ever.
        m.shutdown(t0 + ms(10));
        m.startup(t0 + ms(20));
        m.on_timer(t0 + ms(20) + m.master_down_interval());
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.counters().became_master, 1);
        assert_eq!(m.counters().resumed, 1);
    }

    /// A new source address takes over the tie-break and, in master, the
    /// master's address: an equal-priority advert from an address between
    /// the old and the new one now loses.
    #[test]
    fn a_new_primary_address_breaks_ties_and_names_the_master() {
        let t0 = Instant::now();
        let mut m = Machine::new(settings(100), ME);
        m.resume_master(t0);
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.master_address(), Some(ME));
        let newer = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 200));
        m.set_primary_address(newer);
        assert_eq!(m.primary_address(), newer);
        assert_eq!(m.master_address(), Some(newer));
        // HIGHER (198.18.0.3) beat ME (.2); it loses to .200.
        let actions = m.on_advert(&ad(100), HIGHER, t0 + ms(10));
        assert_eq!(m.state(), State::Master, "{actions:?}");
        // In backup the master heard from stays the master reported.
        let mut b = Machine::new(settings(100), ME);
        b.startup(t0);
        b.on_advert(&ad(150), HIGHER, t0);
        assert_eq!(b.state(), State::Backup);
        b.set_primary_address(newer);
        assert_eq!(b.master_address(), Some(HIGHER));
    }

    /// Two routers on one simulated link: every advert one sends reaches the
    /// other at once; time jumps to the next deadline.
    struct Link {
        routers: [Machine; 2],
        now: Instant,
        /// Who announced the addresses, in order: each takeover, reclaim
        /// and re-announcement.
        announced: Vec<(usize, Action)>,
    }

    impl Link {
        /// Carries out `actions` of router `from`, then lets the other
        /// router hear its adverts: a router's announcements (the first
        /// round leaves at once) go before the other's answer, which has
        /// to cross the link.
        fn deliver(&mut self, from: usize, actions: Vec<Action>) {
            let announcements = actions.iter().filter(|action| {
                matches!(
                    action,
                    Action::BecomeMaster | Action::Reclaim | Action::Reannounce
                )
            });
            self.announced
                .extend(announcements.map(|action| (from, *action)));
            for action in actions {
                if let Action::SendAdvert { priority } = action {
                    let src = self.routers[from].primary_address();
                    let adv = ad(priority);
                    let to = 1 - from;
                    let replies = self.routers[to].on_advert(&adv, src, self.now);
                    self.deliver(to, replies);
                }
            }
        }

        fn run_until(&mut self, end: Instant) {
            // Bounded, so a timer that never fires fails instead of hanging.
            for _ in 0..10_000 {
                let next = self
                    .routers
                    .iter()
                    .filter_map(Machine::next_deadline)
                    .min()
                    .unwrap();
                if next > end {
                    self.now = end;
                    return;
                }
                self.now = next;
                for i in 0..2 {
                    let actions = self.routers[i].on_timer(self.now);
                    self.deliver(i, actions);
                }
            }
            panic!("timers did not advance past {next:?}", next = self.now);
        }

        fn states(&self) -> [State; 2] {
            [self.routers[0].state(), self.routers[1].state()]
        }
    }

    #[test]
    fn two_routers_elect_one_master_and_fail_over_on_shutdown() {
        let t0 = Instant::now();
        let mut link = Link {
            routers: [
                Machine::new(settings(150), HIGHER),
                Machine::new(settings(100), ME),
            ],
            now: t0,
            announced: Vec::new(),
        };
        for i in 0..2 {
            let actions = link.routers[i].startup(t0);
            link.deliver(i, actions);
        }
        link.run_until(t0 + ms(30_000));
        assert_eq!(link.states(), [State::Master, State::Backup]);
        assert_eq!(link.routers[1].master_address(), Some(HIGHER));
        assert_eq!(link.routers[1].counters().became_master, 0);

        // The master stops: the backup takes over after its Skew_Time.
        let stop = link.now;
        let actions = link.routers[0].shutdown(stop);
        link.deliver(0, actions);
        assert_eq!(link.routers[1].next_deadline(), Some(stop + us(609_375)));
        link.run_until(stop + ms(700));
        assert_eq!(link.states(), [State::Initialize, State::Master]);

        // It comes back and preempts the lower-priority master.
        let back = link.now;
        let actions = link.routers[0].startup(back);
        link.deliver(0, actions);
        link.run_until(back + ms(10_000));
        assert_eq!(link.states(), [State::Master, State::Backup]);
    }

    /// Runs `m` from `from` to `until`: its timers, and an advert of `peer`
    /// from LOWER every `every` if given; every action, with its time.
    fn run_with_peer(
        m: &mut Machine,
        from: Instant,
        until: Instant,
        peer: Option<(Advertisement, Duration)>,
    ) -> Vec<(Instant, Action)> {
        let mut seen = Vec::new();
        let mut next_ad = peer.as_ref().map(|(_, every)| from + *every);
        loop {
            let now = match (m.next_deadline(), next_ad) {
                (Some(timer), Some(ad)) => timer.min(ad),
                (timer, ad) => match timer.or(ad) {
                    Some(now) => now,
                    None => break,
                },
            };
            if now > until {
                break;
            }
            if next_ad == Some(now) {
                if let Some((advert, every)) = &peer {
                    seen.extend(
                        m.on_advert(advert, LOWER, now)
                            .into_iter()
                            .map(|a| (now, a)),
                    );
                    next_ad = Some(now + *every);
                }
            }
            seen.extend(m.on_timer(now).into_iter().map(|a| (now, a)));
        }
        seen
    }

    /// A master whose advert source is removed (networkd, a lapsed DHCP
    /// lease) while the lower-priority peer, hearing nothing, took over
    /// and advertises: it gives mastership and the addresses up on the
    /// peer's advert, claims nothing against it (no re-announcement, which
    /// would pull the neighbours back while no advert of ours can leave),
    /// and does not take over while the source is gone. Once it is back,
    /// a backup first, it preempts the lower master after a full
    /// master-down interval, as ever.
    #[test]
    fn a_master_without_a_source_gives_the_addresses_up_and_claims_nothing() {
        let t0 = Instant::now();
        let s = Settings {
            announce_refresh: Some(ms(500)),
            ..settings(150)
        };
        let (mut m, t) = master(s, t0);
        let gone = t + ms(200);
        m.source_gone(gone);
        assert!(m.source_is_gone());
        assert_eq!(m.source_gone_since(), Some(gone));
        let seen = run_with_peer(&mut m, gone, gone + ms(10_000), Some((ad(100), ms(1000))));
        let claims: Vec<_> = seen
            .iter()
            .filter(|(_, a)| {
                matches!(
                    a,
                    Action::Reannounce | Action::Reclaim | Action::Refresh | Action::BecomeMaster
                )
            })
            .collect();
        assert_eq!(claims, Vec::<&(Instant, Action)>::new(), "{seen:?}");
        assert_eq!(
            seen.iter()
                .filter(|(_, a)| *a == Action::BecomeBackup)
                .collect::<Vec<_>>(),
            [&(gone + ms(1000), Action::BecomeBackup)],
            "at the peer's first advert"
        );
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.master_address(), Some(LOWER));
        assert_eq!(
            m.next_deadline(),
            None,
            "no takeover while the source is gone"
        );
        assert_eq!(m.on_timer(gone + ms(60_000)), []);

        // The source back: a backup, with a fresh Master_Down_Timer, that
        // discards the lower master's adverts and preempts it.
        let back = gone + ms(10_500);
        assert!(!m.source_back(back), "no hold without replication");
        assert!(!m.source_is_gone());
        assert_eq!(m.source_gone_since(), None);
        assert_eq!(m.state(), State::Backup);
        let down = back + m.master_down_interval();
        assert_eq!(m.next_deadline(), Some(down));
        let seen = run_with_peer(&mut m, back, down, Some((ad(100), ms(1000))));
        assert_eq!(
            seen,
            [
                (down, Action::SendAdvert { priority: 150 }),
                (down, Action::BecomeMaster)
            ]
        );
    }

    /// With no peer heard, a master without a source keeps advertising
    /// (a send may find a new source) but announces nothing, and gives
    /// mastership up as the peer may have gone its master-down interval
    /// without an advert: its last one left up to an interval before the
    /// source was seen gone. A source back sooner changes nothing.
    #[test]
    fn a_master_without_a_source_gives_up_once_the_peer_may_have_taken_over() {
        let t0 = Instant::now();
        let s = Settings {
            announce_refresh: Some(ms(500)),
            ..settings(150)
        };
        let (mut m, t) = master(s, t0);
        let gone = t + ms(200);
        m.source_gone(gone);
        m.source_gone(gone + ms(500));
        assert_eq!(m.source_gone_since(), Some(gone), "keeps its start");
        let seen = run_with_peer(&mut m, gone, gone + ms(10_000), None);
        let give_up = gone + s.shortest_master_down_interval() - ms(1000);
        assert_eq!(
            seen,
            [
                (t + ms(1000), Action::SendAdvert { priority: 150 }),
                (t + ms(2000), Action::SendAdvert { priority: 150 }),
                (give_up, Action::BecomeBackup),
            ]
        );
        assert_eq!(m.counters().became_backup, 2);

        // A blip: back before then, still master, announcing as before.
        let (mut m, t) = master(s, t0);
        m.source_gone(t + ms(200));
        assert!(!m.source_back(t + ms(1500)));
        let seen = run_with_peer(&mut m, t + ms(1500), t + ms(10_000), None);
        assert!(
            seen.iter().all(|(_, a)| *a != Action::BecomeBackup),
            "{seen:?}"
        );
        assert!(seen.iter().any(|(_, a)| *a == Action::Refresh), "{seen:?}");
        assert_eq!(m.state(), State::Master);
        // A lower claim heard with the source back is re-announced again.
        assert_eq!(
            m.on_advert(&ad(100), LOWER, t + ms(10_100)),
            [Action::SendAdvert { priority: 150 }, Action::Reannounce]
        );
        // A link back without a source: an advert, no announcements.
        m.source_gone(t + ms(10_200));
        m.link_down(t + ms(10_200));
        assert_eq!(
            m.link_up(t + ms(10_300), 150),
            [Action::SendAdvert { priority: 150 }]
        );
    }

    /// With replication, a master that gave mastership up for want of a
    /// source holds preemption when it is back, as after a long link
    /// outage: the peer opened connections meanwhile. One that was a
    /// backup all along holds nothing new.
    #[test]
    fn with_replication_a_master_that_gave_up_for_its_source_holds_preemption() {
        let t0 = Instant::now();
        let (mut m, t) = master(settings(150), t0);
        m.hold_after_outages(ms(10_000));
        m.source_gone(t + ms(200));
        assert_eq!(
            m.on_advert(&ad(100), LOWER, t + ms(900)),
            [Action::BecomeBackup]
        );
        let back = t + ms(5_000);
        assert!(m.source_back(back));
        assert!(m.holding_for_sync(back + ms(9_000)));
        assert!(!m.holding_for_sync(back + ms(10_000)));

        let mut b = backup(settings(100), t0);
        b.hold_after_outages(ms(10_000));
        b.source_gone(t0 + ms(100));
        assert_eq!(b.next_deadline(), None);
        assert!(!b.source_back(t0 + ms(5_000)));
        assert!(!b.holding_for_sync(t0 + ms(5_000)));
        assert_eq!(
            b.next_deadline(),
            Some(t0 + ms(5_000) + b.master_down_interval())
        );
    }
}
