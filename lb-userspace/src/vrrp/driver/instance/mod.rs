//! The handle lbd keeps of a running instance: its start-up checks and
//! start on the VRRP thread, the inputs tracking and the engine give it,
//! its status, and how it stops or is left for the next lbd.
//!
//! The handle and its inputs are here; the checks before a start
//! ([`prepare`]), the start ([`start`]) and the ends ([`stop`]) beside it.

mod prepare;
mod start;
mod stop;

use std::path::PathBuf;

use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};

pub(crate) use self::prepare::Prepared;
use super::{status::InstanceStatus, Notifies};
use crate::{config::VrrpConfig, vrrp::State};

/// A running instance.
pub(crate) struct Instance {
    priority: watch::Sender<u8>,
    /// Counts the interface's link coming back up (see
    /// [`Instance::link_up`]).
    link_ups: watch::Sender<u64>,
    /// The interface MAC the data plane accepts frames for (see
    /// [`Instance::data_plane_mac`]).
    data_plane_mac: watch::Sender<[u8; 6]>,
    /// Set once the peer's full connection-table dump arrived (see
    /// [`Instance::peer_synced`]).
    synced: watch::Sender<bool>,
    status: watch::Receiver<InstanceStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    config: VrrpConfig,
    notifies: Notifies,
    /// Where the instance records its state (see [`Record`](super::record::Record)), for
    /// [`Self::abandon`]'s restart record.
    state_file: Option<PathBuf>,
}

impl Instance {
    /// The notify commands this instance started, for lbd's exit to wait
    /// for once the instance stopped ([`wait_for_notifies`](super::wait_for_notifies)).
    pub(crate) fn notifies(&self) -> Notifies {
        self.notifies.clone()
    }

    /// The instance's configuration.
    pub(crate) fn config(&self) -> &VrrpConfig {
        &self.config
    }

    /// Sets the priority tracking gives the instance: the configured one
    /// less the weights of what this node cannot serve, but not the
    /// link's (`track_interface`): the instance takes that off itself
    /// while its own checks (every [`ADDRESS_CHECK`](super::ADDRESS_CHECK)) see the link down,
    /// and gives it back before the advert that goes out when they see it
    /// up, so neither that advert nor those before tracking's next look
    /// carry the priority lowered for the outage.
    pub(crate) fn set_priority(&self, priority: u8) {
        self.priority.send_if_modified(|p| {
            let changed = *p != priority;
            *p = priority;
            changed
        });
    }

    /// The interface's link came back up (tracking saw it down, then up):
    /// a master re-announces its addresses in full, since the other node
    /// may have taken them over meanwhile, or, with replication after an
    /// outage the peer may have taken over in, steps down to backup until
    /// the peer's flows are here (see [`Machine::link_up`](crate::vrrp::Machine::link_up); the instance's
    /// own checks of the link, twice as frequent, usually told it first).
    /// The advert that goes with the announcements carries the link's
    /// weight given back (see [`Self::set_priority`]).
    pub(crate) fn link_up(&self) {
        self.link_ups.send_modify(|ups| *ups = ups.wrapping_add(1));
    }

    /// The data plane now accepts frames addressed to `mac`, the
    /// interface's new MAC (the engine wrote it): a master announces its
    /// addresses with a new MAC only once this says so, since frames sent
    /// to a MAC the data plane does not accept go up the stack, which
    /// resets their connections (see [`MacChange`](super::mac::MacChange)).
    pub(crate) fn data_plane_mac(&self, mac: [u8; 6]) {
        self.data_plane_mac.send_if_modified(|known| {
            let changed = *known != mac;
            *known = mac;
            changed
        });
    }

    /// The peer's full connection-table dump arrived: a preemption no
    /// longer waits for it (see [`Machine::hold_preemption`](crate::vrrp::Machine::hold_preemption)).
    pub(crate) fn peer_synced(&self) {
        self.synced
            .send_if_modified(|synced| !std::mem::replace(synced, true));
    }

    /// The latest status.
    pub(crate) fn status(&self) -> InstanceStatus {
        self.status.borrow().clone()
    }

    /// Whether this node is master now.
    pub(crate) fn is_master(&self) -> bool {
        self.status.borrow().state == State::Master
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}
