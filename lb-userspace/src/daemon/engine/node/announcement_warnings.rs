//! Warnings of traffic BGP draws that the node cannot forward: a new
//! service without backends on an announced address, and backends that
//! pass their checks without a MAC (each warned of once).

use std::{collections::BTreeSet, net::IpAddr};

use tracing::warn;

use super::{
    super::{BackendKey, Engine},
    announcements::services,
};
use crate::{
    bgp::{
        announce::{self, NodeView},
        NodeState,
    },
    model::Model,
};

impl Engine {
    /// Warns, once each, of the dsr-l2 backends that pass their checks but
    /// whose MAC is unknown: the data plane sends them nothing (every
    /// packet for them is dropped) and BGP does not announce their VIP
    /// for them, which their health alone would not explain.
    pub(super) fn warn_of_backends_without_mac(&mut self) {
        let macs = &self.macs;
        let mac_of = |a: IpAddr| macs.get(&a).copied();
        for (vip, backend) in newly_without_mac(&self.model, &mac_of, &mut self.node.without_mac) {
            warn!(%vip, %backend, "backend passes its checks but its MAC is unknown (no neighbour entry on the interface): the data plane sends it nothing, and BGP does not announce the VIP for it, until its MAC resolves");
        }
    }

    /// Warnings for a change from `before` to `next` (a reload, `lbctl
    /// vip add`): each new service without backends on an address BGP
    /// would announce for the services beside it. It does not withdraw
    /// the address (every node has it the same: see
    /// [`announce::Serving::NotYet`]), so this node draws its traffic and
    /// drops it until a backend is added.
    pub(crate) fn announced_without_backends(&self, before: &Model, next: &Model) -> Vec<String> {
        let Some(announcer) = self.node.announcer.as_ref() else {
            return Vec::new();
        };
        let bgp = announcer.config();
        let macs = &self.macs;
        announced_without_backends(
            before,
            next,
            |address| self.bgp_covers(bgp, address),
            &|a| macs.get(&a).copied(),
        )
    }
}

/// [`Engine::announced_without_backends`], pure: the VIPs of `next` not in
/// `before`, without backends, on an address `covered` picks that an
/// active, started node would announce with `next`.
pub(super) fn announced_without_backends(
    before: &Model,
    next: &Model,
    covered: impl Fn(IpAddr) -> bool,
    mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>,
) -> Vec<String> {
    let view = NodeView {
        state: NodeState::Active,
        gate: announce::Gate::Open,
        attached: true,
        interface_up: true,
    };
    let plan = announce::plan(view, &services(next, &covered, mac_of));
    next.vips
        .iter()
        .filter(|(id, vip)| vip.backends.is_empty() && !before.vips.contains_key(id))
        .filter(|(id, _)| plan.get(&id.address).is_some_and(Option::is_none))
        .map(|(id, _)| {
            format!(
                "VIP {id} has no backends, and BGP announces {} for the other services on it: this node draws the new VIP's traffic and drops it until a backend is added",
                id.address
            )
        })
        .collect()
}

/// The backends of `model` that pass their checks without a MAC (from
/// `mac_of`) and are not in `warned`; `warned` becomes every such backend
/// now, so one whose MAC resolves, or that fails its checks, is warned of
/// again if it passes them without a MAC later.
pub(super) fn newly_without_mac(
    model: &Model,
    mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>,
    warned: &mut BTreeSet<BackendKey>,
) -> Vec<BackendKey> {
    let now: BTreeSet<BackendKey> = model
        .vips
        .iter()
        .flat_map(|(id, vip)| {
            vip.up_without_mac(mac_of)
                .into_iter()
                .map(move |address| (*id, address))
        })
        .collect();
    let new = now.difference(warned).copied().collect();
    *warned = now;
    new
}
