//! The node-wide entries, not one VIP's: `TUNNEL_CONFIG`, the NAT flag
//! and `SERVICE_ADDRS`, written around the VIPs so that none is served
//! without what it needs.

use std::{collections::BTreeMap, net::IpAddr};

use lb_common::{
    consts::{SERVICE_ADDR_F_NAT, SERVICE_ADDR_F_VIP},
    Mode, ServiceAddr,
};

use super::super::{Balancer, DesiredVip, MapWriter, ReconcileError};
use crate::{config::VipNat, vip_id::addr_words};

impl Balancer {
    /// Refuses tunnelled backends without an outer source, then writes
    /// `TUNNEL_CONFIG` when it changed, before any VIP names a tunnelled
    /// mode (an object without the map serves the other modes untouched).
    pub(in crate::reconcile) fn apply_tunnel(
        &mut self,
        maps: &mut dyn MapWriter,
        desired: &[DesiredVip],
    ) -> Result<(), ReconcileError> {
        let tunnelled: Vec<&DesiredVip> = desired.iter().filter(|v| v.mode.is_tunnel()).collect();
        for vip in &tunnelled {
            for backend in &vip.backends {
                if let Err(key) = self.tunnel.source_for(vip.id.address, backend.address) {
                    return Err(ReconcileError::NoTunnelSource {
                        vip: vip.id.to_string(),
                        backend: backend.address,
                        key,
                    });
                }
            }
        }
        let wanted = self.tunnel.config;
        if (self.tunnel_written.is_some() || !tunnelled.is_empty())
            && self.tunnel_written != Some(wanted)
        {
            maps.set_tunnel_config(&wanted)?;
            self.tunnel_written = Some(wanted);
        }
        Ok(())
    }

    /// `SERVICE_ADDRS` for the VIPs served: every VIP's address and every
    /// NAT VIP's NAT address, flagged by what it is (an address can be
    /// both only by mistake; the flags add up).
    pub(in crate::reconcile) fn service_addrs(&self) -> BTreeMap<ServiceAddr, u32> {
        let mut addrs = BTreeMap::new();
        for (id, vip) in &self.vips {
            add_service_addrs(&mut addrs, id.address, vip.mode, vip.nat.as_ref());
        }
        addrs
    }

    /// The node-wide entries `desired` needs, written before any of its
    /// VIPs is (`apply` writes the exact ones once they all are): a NAT
    /// VIP's backend replies come to its NAT address, which the data plane
    /// looks up only while `CONFIG_F_NAT` is set (else the kernel answers
    /// them with a reset), and fragments to a VIP or NAT address missing
    /// from `SERVICE_ADDRS` are passed up. So the flag is set if a desired
    /// VIP needs it, and `SERVICE_ADDRS` gets the union of what it holds,
    /// what the served VIPs need and what the desired ones do: nothing a
    /// VIP still served needs is taken away here, only after the VIPs.
    pub(in crate::reconcile) fn open_node_entries(
        &mut self,
        maps: &mut dyn MapWriter,
        desired: &[DesiredVip],
    ) -> Result<(), ReconcileError> {
        if desired.iter().any(|v| v.mode == Mode::Nat) && self.nat_enabled != Some(true) {
            maps.set_nat_enabled(true)?;
            self.nat_enabled = Some(true);
        }
        // With no record of the map (None: a first apply, or after a
        // failed commit), what neither the served VIPs nor the desired
        // ones name goes now: it is for VIPs this apply removes, if any.
        let mut addrs = self.service_addrs.clone().unwrap_or_default();
        for (key, flags) in self.service_addrs() {
            *addrs.entry(key).or_insert(0) |= flags;
        }
        for vip in desired {
            add_service_addrs(&mut addrs, vip.id.address, vip.mode, vip.nat.as_ref());
        }
        if self.service_addrs.as_ref() != Some(&addrs) {
            maps.set_service_addrs(&addrs)?;
            self.service_addrs = Some(addrs);
        }
        Ok(())
    }

    /// The node-wide entries once every VIP is written: the NAT flag off
    /// when no NAT VIP remains (only now, so no NAT VIP is served without
    /// it), and `SERVICE_ADDRS` exactly what the served VIPs need.
    pub(in crate::reconcile) fn close_node_entries(
        &mut self,
        maps: &mut dyn MapWriter,
    ) -> Result<(), ReconcileError> {
        let nat = self.vips.values().any(|v| v.mode == Mode::Nat);
        if self.nat_enabled != Some(nat) {
            maps.set_nat_enabled(nat)?;
            self.nat_enabled = Some(nat);
        }
        let addrs = self.service_addrs();
        if self.service_addrs.as_ref() != Some(&addrs) {
            maps.set_service_addrs(&addrs)?;
            self.service_addrs = Some(addrs);
        }
        Ok(())
    }
}

/// Adds a VIP's `SERVICE_ADDRS` entries to `addrs`: its address, and in
/// NAT mode its NAT address (shared by `service_addrs` for the VIPs served
/// and `open_node_entries` for the desired ones, so both agree).
fn add_service_addrs(
    addrs: &mut BTreeMap<ServiceAddr, u32>,
    address: IpAddr,
    mode: Mode,
    nat: Option<&VipNat>,
) {
    let mut add = |address: IpAddr, flag: u32| {
        let (addr, family) = addr_words(address);
        let key = ServiceAddr {
            addr,
            family,
            _pad: [0; 3],
        };
        *addrs.entry(key).or_insert(0) |= flag;
    };
    add(address, SERVICE_ADDR_F_VIP);
    if let (Mode::Nat, Some(nat)) = (mode, nat) {
        add(nat.source, SERVICE_ADDR_F_NAT);
    }
}
