//! What this node does with the batches its peers send: counts each under
//! the peer that sent it, and installs its flows and NAT'd flows as this
//! node's role for each VIP says.

use std::{net::IpAddr, time::Instant};

use super::{
    flow_table, nat, nat_install, peers,
    records::{install_flows, Install},
    Replication, Roles, Topology,
};
use crate::{dataplane::Dataplane, reconcile::Balancer, sync::ReceivedBatch};

impl Replication {
    /// Counts a batch under the peer that sent it (whether or not this
    /// node installs it now).
    pub fn received(&mut self, batch: &ReceivedBatch) {
        self.receipts
            .note(batch, peers::Arrival::of(batch.received_ns));
    }

    /// How a record for `vip` is installed: in a full mesh as a copy
    /// unless this node's entry is fresher; in a pair, replacing this
    /// node's entry where it is backup for the VIP, else (batches queued
    /// before it became master, or while both were) only where it holds
    /// nothing fresher.
    pub(super) fn rule(topology: Topology, roles: &Roles, vip: IpAddr) -> Install {
        match topology {
            Topology::FullMesh => Install::Replica,
            Topology::VrrpPair if roles.backs(vip) => Install::Replace,
            Topology::VrrpPair => Install::UnlessFresher,
        }
    }

    /// [`Replication::install_with`] for a node that backs up every VIP
    /// (a pair's backup of all, or a mesh node).
    pub fn install(
        &mut self,
        batch: &ReceivedBatch,
        dataplane: &mut Dataplane,
        balancer: &Balancer,
    ) {
        self.install_with(batch, dataplane, balancer, &Roles::new([], false));
    }

    /// Installs a batch from a peer, each record as this node's role for
    /// its VIP says (see [`Replication::rule`]). Ages count from the
    /// batch's arrival ([`ReceivedBatch::received_ns`]), not from now:
    /// the time it waited in the receive queue ages its copies too.
    pub(crate) fn install_with(
        &mut self,
        batch: &ReceivedBatch,
        dataplane: &mut Dataplane,
        balancer: &Balancer,
        roles: &Roles,
    ) {
        self.install_nat(batch, dataplane.nat_mut(), balancer, roles);
        self.install_flow_records(batch, dataplane, balancer, roles);
    }

    /// Installs a batch's flow records into `table` (see
    /// [`Replication::install_with`]).
    pub(super) fn install_flow_records(
        &mut self,
        batch: &ReceivedBatch,
        table: &mut impl flow_table::FlowTable,
        balancer: &Balancer,
        roles: &Roles,
    ) {
        let topology = self.topology;
        install_flows(
            |vip| Self::rule(topology, roles, vip),
            &batch.records,
            table,
            balancer,
            batch.received_ns,
            &mut self.flows,
            &mut self.flow_warnings,
        );
    }

    /// Installs a batch's NAT'd flows, both entries each, with this
    /// node's ids; skips (and counts) those it cannot place, those whose
    /// keys another flow holds here and those the table refuses.
    pub(super) fn install_nat(
        &mut self,
        batch: &ReceivedBatch,
        table: &mut impl nat::ReplicaTable,
        balancer: &Balancer,
        roles: &Roles,
    ) {
        let topology = self.topology;
        nat_install::install_nat_records(
            &batch.nat,
            table,
            balancer,
            |vip| Self::rule(topology, roles, vip),
            batch.received_ns,
            &mut self.nat,
            &mut self.nat_warnings,
            Instant::now(),
        );
    }
}
