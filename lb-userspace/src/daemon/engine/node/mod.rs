//! The engine's node-level duties in an active-active group: the
//! operator's node state (drained or active, kept across stops, restarts
//! and reboots in `[bgp] node_state_file`), the
//! node's traffic (so `lbctl node drain --wait` knows when its flows have
//! moved), and the BGP announcements that follow both and the VIPs'
//! health.
//!
//! Each concern is a file of its own; this one holds the node's runtime
//! (its state and what follows from it) that the others work on.

mod announcement_refusal;
mod announcement_warnings;
mod announcements;
mod durable_write;
mod restart_marker;
mod state_change;
mod state_file;
mod status;
#[cfg(test)]
mod tests;
mod traffic;

#[cfg(test)]
pub(super) use durable_write::temporary_of;
pub(super) use durable_write::{sync_dir, write_durably_with};
pub(crate) use restart_marker::withdraw_unless_restarting;

use std::{collections::BTreeSet, time::Instant};

use tracing::info;

use restart_marker::remove_stale_restart_marker;
use state_file::read_node_state;

use super::BackendKey;
use crate::{
    bgp::{announcer::Announcer, NodeState},
    config::Config,
};

/// The node's own state and what follows from it.
#[derive(Default)]
pub(crate) struct NodeRuntime {
    /// Drained or active.
    pub(crate) state: NodeState,
    /// BGP announcements (None: no `[bgp]`).
    pub(crate) announcer: Option<Announcer>,
    /// The forwarded count last read, and when it last grew.
    forwarded: u64,
    last_forward: Option<Instant>,
    /// Backends warned of as passing their checks without a MAC (see
    /// [`newly_without_mac`](announcement_warnings::newly_without_mac)),
    /// so the warning comes once, not every tick.
    without_mac: BTreeSet<BackendKey>,
}

impl NodeRuntime {
    /// The runtime for `config`, with the state a previous lbd left. A
    /// restart marker still lying around is stale once this lbd runs (the
    /// stop path it was meant for has passed): it goes, so a later stop
    /// withdraws as it should.
    pub(crate) fn start(config: &Config, adopted: bool, now: Instant) -> Self {
        remove_stale_restart_marker(config);
        let state = read_node_state(config);
        if state == NodeState::Drained {
            info!("node state: drained (kept from before this start); `lbctl node undrain` makes it active");
        }
        let has_peers = config.sync.as_ref().is_some_and(|s| !s.peers.is_empty());
        Self {
            state,
            announcer: config
                .bgp
                .clone()
                .map(|bgp| Announcer::new(bgp, adopted, has_peers, now)),
            forwarded: 0,
            last_forward: None,
            without_mac: BTreeSet::new(),
        }
    }
}
