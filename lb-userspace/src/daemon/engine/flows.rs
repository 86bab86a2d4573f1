//! The connection table as lbd reads it: flows per backend for drains
//! and metrics (counted by censuses, see `flow_census`), and replication
//! with the peers.

use std::{
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, Instant},
};

use tracing::warn;

use super::{
    flow_census::{self, Census, CensusInput, CensusTables},
    Engine,
};
use crate::{
    daemon::replication::Topology,
    model::{AdminState, IdleTimeouts},
    sync::ReceivedBatch,
};

/// Longest a stepping-down node waits for its last flows to go out.
const FINAL_FLUSH: Duration = Duration::from_millis(500);

impl Engine {
    /// What a census of the connection table counts with, as of now.
    pub(crate) fn census_input(&self) -> CensusInput {
        CensusInput {
            started: Instant::now(),
            now_ns: crate::clock::monotonic_ns(),
            generations: self
                .balancer
                .vips()
                .values()
                .flat_map(|v| v.backends.values())
                .map(|b| (b.id, b.generation))
                .collect(),
            timeouts: IdleTimeouts {
                tcp: self.config.tcp_idle_timeout,
                udp: self.config.udp_idle_timeout,
            },
            copies_apart: self
                .replication
                .as_ref()
                .is_some_and(|r| r.topology() == Topology::FullMesh),
        }
    }

    /// A census made here and now, in the caller's thread (the loop's
    /// fallback when the tables cannot be mapped again; see
    /// `flow_census`).
    pub(crate) fn census_inline(&self, input: &CensusInput, cancel: &AtomicBool) -> Census {
        // Cancelled (lbd is stopping): a census of nothing, never shown.
        let mut census = flow_census::tally(self.dataplane.flows(), input, cancel)
            .unwrap_or_else(|| Census::empty(input.started));
        flow_census::tally_half_open(&mut census, self.dataplane.half_open_flows(), input, cancel);
        census.half_open = Some(self.dataplane.half_open_count());
        census.took = input.started.elapsed();
        census
    }

    /// Lends `census` to the read about to be answered (see
    /// [`Self::census`]); `None` ends the loan.
    pub(crate) fn lend_census(&mut self, census: Option<Arc<Census>>) {
        self.lent_census = census;
    }

    /// The census the running read is answered from: the one the loop
    /// lent it, else one made on the spot (a caller outside the loop's
    /// reads of counts).
    pub(crate) fn census(&self) -> Arc<Census> {
        self.lent_census.clone().unwrap_or_else(|| {
            Arc::new(self.census_inline(&self.census_input(), &AtomicBool::new(false)))
        })
    }

    /// The connection table and the half-open table mapped a second time,
    /// for censuses off the loop.
    pub(crate) fn census_tables(&mut self) -> Result<CensusTables, String> {
        match self.dataplane.remapped_tables() {
            Some(Ok((flows, half_open))) => Ok(CensusTables::new(flows, half_open)),
            Some(Err(error)) => Err(error.to_string()),
            None => Err("the connection table is a kernel map (no bucket table to map)".to_owned()),
        }
    }

    /// When the newest drain of a backend whose flows the connection
    /// table holds (not a NAT VIP's) began: a census older than that does
    /// not answer a read (see `flow_census::Desk`).
    pub(crate) fn newest_drain(&self) -> Option<Instant> {
        self.model
            .vips
            .values()
            .filter(|v| v.config.forwarding != lb_common::Mode::Nat)
            .flat_map(|v| v.backends.values())
            .filter_map(|b| match b.admin {
                AdminState::Draining { since, .. } => Some(since),
                AdminState::Enabled | AdminState::Maintenance => None,
            })
            .max()
    }

    /// Replication tick: a sending node (a pair's master of some
    /// instance, every node of a full mesh) sends its recent flows (a
    /// pair's master only those of the VIPs it holds), walking the
    /// connection table off this loop (see `replication::walks`; nothing
    /// starts while a walk runs, its records go out when it ends:
    /// [`Self::replication_walk_ended`]).
    /// The first walk after an instance stepped down from master (lbd
    /// running on) still sends the flows of the VIPs it handed over (see
    /// `Replication::roles_for_tick`). Also opens the VRRP instances'
    /// preemption hold once the peer's full dump arrived, and compares
    /// the mesh peers' Maglev inputs with this node's
    /// (`Replication::compare_configs`), and shares backend states with
    /// the peers (`shared_states`).
    pub(crate) fn sync_tick(&mut self) {
        self.replication_tick(false);
    }

    /// [`Self::sync_tick`], walking off the loop unless `inline`.
    fn replication_tick(&mut self, inline: bool) {
        self.share_backend_states();
        let roles = self.replication_roles();
        if let Some(replication) = &mut self.replication {
            replication.compare_configs(&self.model);
            if let Some(roles) = replication.roles_for_walk(roles) {
                if replication.topology().sends(roles.any_master()) {
                    if inline {
                        replication.tick_with(&self.dataplane, &self.balancer, &roles);
                    } else {
                        replication.start_walk(&self.dataplane, &self.balancer, &roles);
                    }
                }
            }
            // Only a backup waits for a dump (a master receives none).
            let waiting = self.vrrp.iter().any(|i| !i.is_master());
            if replication.topology() == Topology::VrrpPair && waiting && replication.peer_dumped()
            {
                for instance in &self.vrrp {
                    instance.peer_synced();
                }
            }
        }
    }

    /// What lbd's loop waits on for [`Self::replication_walk_ended`] (None:
    /// no replication; see `replication::walk_ended`).
    pub(crate) fn replication_walk_ends(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.replication.as_ref().map(|r| r.walk_ends())
    }

    /// A replication walk of the connection table ended: its records go
    /// to the peers.
    pub(crate) fn replication_walk_ended(&mut self) {
        if let Some(replication) = &mut self.replication {
            replication.walk_ended();
        }
    }

    /// Before stepping down for good (SIGINT, a planned switchover): one
    /// last tick and a bounded wait until it is written, so the flows of
    /// the last tick interval reach the peer that takes over. A walk in
    /// flight is waited for (its records sent), then the last one walks
    /// here (the loop serves nothing else any more).
    pub(crate) async fn final_sync(&mut self) {
        if let Some(replication) = &mut self.replication {
            replication.wait_walk().await;
            replication.scan_nat_now();
        }
        self.replication_tick(true);
        if let Some(replication) = &self.replication {
            replication.flush(FINAL_FLUSH).await;
        }
    }

    /// After a reload took the file's `[sync] peers` (see
    /// `Config::with_reloadable_from`): starts the senders to the new
    /// peers and stops those of the removed ones (see
    /// `Replication::set_peers`). A failure keeps the running peers, in
    /// the running config too, and is a warning of the reload's answer;
    /// so is a start-up wait too short for the new peers' dumps (see
    /// `config::startup_wait_warning`).
    pub(super) fn apply_sync_peers(&mut self) -> Option<String> {
        let (Some(replication), Some(sync)) = (&mut self.replication, &mut self.config.sync) else {
            return None;
        };
        if replication.topology() != Topology::FullMesh {
            return None;
        }
        match replication.set_peers(&sync.peers) {
            Ok(notes) if notes.is_empty() => None,
            Ok(_) => {
                let warning = crate::config::startup_wait_warning(&self.config)?.to_string();
                warn!(%warning, "reload");
                Some(warning)
            }
            Err(error) => {
                sync.peers = replication.peer_addresses();
                let warning = format!(
                    "{error:#}: the sync peers stay as they were ({}); reload again to retry",
                    sync.peers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                warn!(%warning, "reload");
                Some(warning)
            }
        }
    }

    /// Counts flows from a peer and installs them, each as this node's
    /// role for its VIP says: in a pair, the backup of a VIP's instance
    /// takes the master's copies as they come, while its master installs
    /// only what it holds nothing fresher of (copies queued before it
    /// took over); every node of a full mesh installs unless fresher.
    pub(crate) fn on_sync(&mut self, batch: &ReceivedBatch) {
        let roles = self.replication_roles();
        if let Some(replication) = &mut self.replication {
            replication.received(batch);
            replication.install_with(batch, &mut self.dataplane, &self.balancer, &roles);
        }
    }
}
