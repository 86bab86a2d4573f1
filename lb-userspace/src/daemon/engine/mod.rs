//! The engine: the one owner of lbd's state (config in force, model, data
//! plane, health checker, neighbour MACs). Every change, whatever asked for
//! it (API, health transition, reload, drain deadline, a MAC showing up),
//! goes through `commit`: build the next model, apply it to the maps, and
//! only then make it current. A change the maps refuse leaves the model as
//! it was.
//!
//! Each of the engine's duties has a file of its own: `start` (load or
//! adopt, fill, attach, VRRP and replication), `change` (what the API and
//! reloads ask for), `commit` (a change made the served state), `checks`
//! (health checks and drains), `macs`, `flows` (the table as lbd reads
//! it, replication), `tracking` (VRRP priority), `view` (status and
//! dumps), `dataplane_events`, `stop` and `handover` (lbd's stop, and its
//! traffic handed to the peer), and the routed modes' and the node's
//! runtimes (`nat`, `tunnel`, `node`, `guard`).

use std::{collections::HashMap, net::IpAddr, path::PathBuf};

use tokio::sync::mpsc;

mod admin_state;
mod backends_writer;
mod change;
mod checks;
mod commit;
mod dataplane_events;
pub(crate) mod flow_census;
mod flows;
mod guard;
mod handover;
mod hc_load;
mod macs;
mod nat;
pub(crate) mod node;
pub(crate) mod running_state;
mod shared_states;
mod start;
mod stop;
mod tracking;
mod tunnel;
mod view;

pub use change::ChangeError;
pub(crate) use checks::check_of;
pub(crate) use handover::HandedOver;
pub use stop::Stop;

use super::replication::Replication;
use crate::{
    config::Config,
    dataplane::{Dataplane, Hooked},
    health::{HealthChecker, HealthEvent},
    model::Model,
    netlink::{Interface, Netlink},
    reconcile::{Balancer, VipId},
    sync::ReceivedBatch,
    vrrp::driver::{Instance, Notifies},
};

/// A backend, as health events and the checker name it.
pub(crate) type BackendKey = (VipId, IpAddr);

/// What the engine's surroundings deliver to it.
pub struct EngineEvents {
    /// Health transitions.
    pub health: mpsc::Receiver<HealthEvent<BackendKey>>,
    /// Flows replicated from the VRRP peer.
    pub sync: Option<mpsc::Receiver<ReceivedBatch>>,
}

/// lbd's state and the means to change it.
pub struct Engine {
    /// Path of the config file (for reloads).
    config_path: PathBuf,
    /// The config file's content in force (node settings, base for dumps).
    config: Config,
    /// What is served now.
    model: Model,
    /// The loaded, attached XDP program and its maps.
    dataplane: Dataplane,
    /// The record of what the maps hold.
    balancer: Balancer,
    /// The hook (and XDP mode) the program is attached at.
    hooked: Hooked,
    /// The interface.
    interface: Interface,
    /// Health checks, one task per checked backend.
    checker: HealthChecker<BackendKey>,
    /// Health transitions per backend since start, and when the last was.
    transitions: HashMap<BackendKey, checks::HealthChanges>,
    /// VRRP instances (empty: no VRRP; this node serves whatever reaches it).
    vrrp: Vec<Instance>,
    /// Connection-table replication with the VRRP peer.
    replication: Option<Replication>,
    /// Whether the interface is up with its carrier (for the health
    /// checks and the status; VRRP's instances look at it themselves).
    interface_up: bool,
    /// Whether the kernel still runs the hook, and the interface lost
    /// meanwhile (see `tracking`).
    link_watch: tracking::LinkWatch,
    /// Maglev tables rebuilt since start.
    tables_rebuilt: u64,
    /// Reloads since start, by result.
    reloads: crate::api::schema::ReloadCounts,
    /// Metrics kept between scrapes (histograms).
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    netlink: Netlink,
    macs: HashMap<IpAddr, [u8; 6]>,
    /// NAT mode's reaper, forwarding, redirect targets and events (and
    /// the routed modes' shared duties).
    nat: nat::NatRuntime,
    /// The tunnelled modes' own addresses and health-check path.
    tunnel: tunnel::TunnelRuntime,
    /// Drained or active, the node's traffic, and its BGP announcements.
    node: node::NodeRuntime,
    /// The backend state file: drains and maintenance kept for the next lbd.
    admin: admin_state::AdminRecord,
    /// The running configuration's record: runtime changes kept for the
    /// next lbd (see `running_state`).
    running: running_state::RunningRecord,
    /// Deny/allow lists and limits of new flows in force.
    guard: crate::guard::Guard,
    /// SYN-flood detection from the half-open table's counters.
    flood: crate::flood::FloodWatch,
    /// The notify commands of the VRRP instances stepped down while lbd
    /// ran on (a lost hook): kept, so they run to their end (a dropped
    /// set kills them), and waited for at lbd's exit.
    stepped_down: Vec<Notifies>,
    /// The census of the connection table the read being answered counts
    /// with (lent by the loop, see `flow_census`); None outside a read.
    lent_census: Option<std::sync::Arc<flow_census::Census>>,
    /// Whether this lbd found the node without a data plane of a previous
    /// lbd: a start that fails once the data plane is loaded then takes
    /// everything away again (see `fail_start`).
    fresh_start: bool,
}

impl Engine {
    /// The interface the data plane is attached to.
    pub(crate) fn interface_name(&self) -> &str {
        &self.interface.name
    }

    /// The hook (and XDP mode) the program is attached at.
    pub fn hooked(&self) -> Hooked {
        self.hooked
    }

    /// How many VIPs are served.
    pub(crate) fn vip_count(&self) -> usize {
        self.model.vips.len()
    }

    /// The config in force (node settings as they run).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The data plane's event ring, once (for the reader task).
    pub(crate) fn take_dataplane_events(
        &mut self,
    ) -> Option<aya::maps::RingBuf<aya::maps::MapData>> {
        self.dataplane.take_events()
    }

    /// The metrics page for a scrape.
    pub(crate) fn render_metrics(&self) -> String {
        self.metrics.render(&self.status())
    }

    /// Whether the data plane is pinned (outlives lbd).
    pub(crate) fn is_pinned(&self) -> bool {
        self.dataplane.pinned()
    }
}
