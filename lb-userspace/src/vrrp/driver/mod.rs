//! One VRRP instance at work: a tokio task, on the VRRP thread's runtime
//! (see [`super::runtime`]), that feeds the pure state
//! machine with adverts from the wire, timer expiries and priority changes
//! (tracking), and carries out what it decides: adverts on the wire, the
//! VIP addresses added (with gratuitous ARP / unsolicited NA) or removed
//! over rtnetlink, notify commands. Stale addresses left by a crash are
//! removed at start, before the instance speaks; while master, the
//! addresses are checked every [`ADDRESS_CHECK`] and put back (and
//! announced) if something removed them.
//!
//! The driver's loop ([`run_loop`]) and what it does when the timer runs
//! out ([`deadline`]) or the machine decides ([`actions`]) live beside
//! this module's state. Its concerns too: the looks at the interface
//! ([`looks`]), the advert source ([`source`]), the link ([`link`]), its
//! MAC ([`mac`]), the addresses held ([`vips`]), adverts sent
//! ([`sending`]) and heard ([`received`]), changes of state
//! ([`transition`]), the state file ([`record`]), notify commands
//! ([`notify`]), the status ([`status`]), and the handle lbd keeps
//! ([`instance`]).

mod actions;
mod deadline;
mod instance;
mod link;
mod looks;
mod mac;
mod notify;
mod received;
mod record;
mod run_loop;
mod sending;
mod source;
mod status;
mod transition;
mod vips;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use tokio::sync::{oneshot, watch};

pub use self::status::InstanceStatus;
pub(crate) use self::{
    instance::{Instance, Prepared},
    notify::{wait_for_notifies, Notifies, NOTIFY_GRACE},
};
use self::{
    link::LinkWatch, looks::Looks, mac::MacChange, sending::SendFailures, vips::AnnounceFn,
};
use super::{announce::Announcer, complaints::Complaints, net::VrrpSocket, Machine, Settings};
use crate::{
    config::VrrpConfig,
    netlink::{Interface, Netlink},
    sync::log_limit::LogLimit,
};

/// How often a master checks that its addresses are still on the
/// interface (a link down/up drops IPv6 ones; networkd may drop any).
const ADDRESS_CHECK: Duration = Duration::from_millis(500);

/// What the [`Instance`] tells its driver.
struct Inputs {
    /// The effective priority (tracking).
    priority: watch::Receiver<u8>,
    /// How many times the interface's link came back up.
    link_ups: watch::Receiver<u64>,
    /// The interface MAC the data plane accepts frames for.
    data_plane_mac: watch::Receiver<[u8; 6]>,
    /// Set once the peer's full connection-table dump arrived.
    synced: watch::Receiver<bool>,
    /// Fires (or is dropped) to stop.
    stop: oneshot::Receiver<()>,
}

struct Driver {
    config: VrrpConfig,
    interface: Interface,
    /// Adds and removes the addresses.
    netlink: Netlink,
    /// Reads the interface (see [`Looks`]).
    looks: Looks,
    /// Sends the announcements (see [`AnnounceFn`]).
    announce_with: AnnounceFn,
    /// The interface MAC the data plane accepts frames for, as the engine
    /// last told (see [`Instance::data_plane_mac`]).
    data_plane_mac: [u8; 6],
    /// A MAC change seen and not yet followed (see [`MacChange`]).
    mac_change: MacChange,
    /// When the newest look at the link whose answer was taken began:
    /// answers of looks begun earlier are stale (see [`newer_look`](looks::newer_look)).
    link_read_from: Option<Instant>,
    /// The same for the looks at the addresses.
    addresses_read_from: Option<Instant>,
    socket: VrrpSocket,
    machine: Machine,
    status: watch::Sender<InstanceStatus>,
    ignored: BTreeMap<String, u64>,
    /// The rate limits of warnings about adverts ignored for a fault.
    complaints: Complaints,
    holding: bool,
    /// A release left addresses behind (warned once; retried quietly).
    release_failing: bool,
    /// The gratuitous ARP / NA rounds of the current claim: cancelled when
    /// the addresses are released, and with the driver.
    announcer: Announcer,
    state_file: Option<PathBuf>,
    /// The notify commands started, shared with the [`Instance`].
    notifies: Notifies,
    /// The machine began a hold of preemption for the peer's flows when
    /// the source came back (see [`Machine::source_back`]): the loop
    /// lets it run its course, as after a link outage.
    source_hold_began: bool,
    /// When the source was last looked at after a failed send (see
    /// [`source_recheck_due`](source::source_recheck_due)).
    source_checked_at: Option<Instant>,
    /// The addresses adverts never go from (see [`never_sources`](source::never_sources)).
    never: Vec<IpAddr>,
    /// The interface's link as the checks saw it (see [`LinkWatch`]).
    link: LinkWatch,
    /// The priority tracking set last (see [`Instance::set_priority`]):
    /// the machine's, but for the link's weight (see
    /// [`Driver::priority_now`]).
    tracked: u8,
    /// Adverts that did not leave, for the rate limit of their warnings.
    send_failures: SendFailures,
    /// The rate limit of warnings about looks at the link that failed.
    link_query_log: LogLimit,
}

/// The protocol's settings of an instance's config.
fn settings_of(config: &VrrpConfig) -> Settings {
    Settings {
        vrid: config.vrid,
        priority: config.priority,
        adver_interval_cs: u16::try_from(config.advert_interval.as_millis() / 10).unwrap_or(100),
        preempt: config.preempt,
        preempt_delay: config.preempt_delay,
        // The master adds the addresses to the interface as its own, so
        // its kernel accepts what is sent to them (see `Settings::accept_mode`).
        accept_mode: true,
        announce_refresh: config.announce_refresh,
    }
}

#[cfg(test)]
mod tests;
