//! BIRD's announcements: what the node can serve now (the start-up gate,
//! the plan for the node's state), BIRD's outcomes, and the withdrawal of
//! a stop for good.

use std::{collections::BTreeSet, net::IpAddr, time::Instant};

use tracing::warn;

use super::super::Engine;
use crate::{
    bgp::{
        announce::{self, DumpProgress, NodeView, PeerDumps, Service, Serving},
        announcer::Outcome,
        NodeState,
    },
    health::Health,
    model::{AdminState, Model},
};

impl Engine {
    /// Brings BIRD's announcements in line with what the node can serve
    /// now (cheap when nothing changed: BIRD is only told of changes).
    pub(crate) fn announce(&mut self) {
        self.warn_of_backends_without_mac();
        let now = Instant::now();
        let dumps = self.peer_dumps();
        let undecided = self.undecided_addresses();
        if let Some(announcer) = self.node.announcer.as_mut() {
            announcer.update_startup(&dumps, &undecided, now);
        }
        let plan = self.announcement_plan(self.node.state);
        if let Some((announcer, plan)) = self.node.announcer.as_mut().zip(plan) {
            announcer.apply(plan, now);
        }
    }

    /// Where every sync peer's first full dump stands, for the start-up
    /// gate: without replication running, nothing came from any
    /// configured peer. Empty once the gate is open or without BGP.
    fn peer_dumps(&self) -> PeerDumps {
        if self.node.announcer.as_ref().is_none_or(|a| a.started()) {
            return PeerDumps::default();
        }
        match &self.replication {
            Some(replication) => replication.peer_dumps(),
            None => PeerDumps(
                self.config
                    .sync
                    .iter()
                    .flat_map(|s| &s.peers)
                    .map(|peer| (peer.to_string(), DumpProgress::Nothing))
                    .collect(),
            ),
        }
    }

    /// The addresses BGP covers with a checked backend that takes new
    /// flows and whose health its checks have not decided yet (the
    /// start-up gate waits for them: an unknown backend counts as up, and
    /// one that is down everywhere would draw flows until its checks
    /// fail). None once the gate is open or without BGP.
    fn undecided_addresses(&self) -> BTreeSet<IpAddr> {
        let Some(announcer) = self.node.announcer.as_ref() else {
            return BTreeSet::new();
        };
        if announcer.started() {
            return BTreeSet::new();
        }
        let bgp = announcer.config();
        self.model
            .vips
            .iter()
            .filter(|(id, _)| self.bgp_covers(bgp, id.address))
            .flat_map(|(id, vip)| vip.backends.iter().map(move |(a, b)| ((*id, *a), b)))
            .filter(|(_, b)| b.admin == AdminState::Enabled && b.config.weight > 0)
            .filter(|(key, b)| b.health == Health::Unknown && self.checker.status(key).is_some())
            .map(|((id, _), _)| id.address)
            .collect()
    }

    /// Whether BGP announces `address` under `bgp`: its `addresses`, and
    /// VRRP's VIPs only as `bgp` says (one reading for the plan, the gate
    /// and the warnings).
    pub(super) fn bgp_covers(&self, bgp: &crate::config::BgpConfig, address: IpAddr) -> bool {
        let vrrp_held = self
            .config
            .vrrp
            .iter()
            .any(|v| v.addresses.contains(&address));
        bgp.covers(address, vrrp_held)
    }

    /// Where BIRD exchanges report, once (for lbd's loop; None: no BGP).
    pub(crate) fn take_bird_outcomes(&mut self) -> Option<tokio::sync::mpsc::Receiver<Outcome>> {
        self.node.announcer.as_mut()?.take_outcomes()
    }

    /// Takes a BIRD exchange's outcome and announces what is wanted now.
    pub(crate) fn on_bird_outcome(&mut self, outcome: Outcome) {
        if let Some(announcer) = self.node.announcer.as_mut() {
            announcer.on_outcome(outcome, Instant::now());
        }
        self.announce();
    }

    /// The announcement plan with the node in `state` (None: no BGP).
    pub(super) fn announcement_plan(&self, state: NodeState) -> Option<announce::Plan> {
        let announcer = self.node.announcer.as_ref()?;
        let bgp = announcer.config();
        let macs = &self.macs;
        let services = services(&self.model, |address| self.bgp_covers(bgp, address), &|a| {
            macs.get(&a).copied()
        });
        let view = NodeView {
            state,
            gate: announcer.gate(),
            attached: self.dataplane.is_attached(),
            interface_up: self.interface_up,
        };
        Some(announce::plan(view, &services))
    }

    /// A stop for good: every address withdrawn. The error says BIRD
    /// may still announce them (the caller keeps the data plane then).
    pub(crate) async fn withdraw_announcements(&mut self) -> anyhow::Result<()> {
        if let Some(announcer) = self.node.announcer.as_mut() {
            if let Err(error) = announcer.withdraw_all().await {
                warn!(error = %format!("{error:#}"), "BGP: withdrawing on stop failed");
                return Err(error);
            }
        }
        Ok(())
    }
}

/// The services of `model` on the addresses `covered` picks, each
/// serving when the data plane can send its new flows (or a drain's) to
/// a backend, with MACs from `mac_of` (see
/// [`crate::model::VipModel::should_announce`]); one that cannot is
/// [`Serving::NotYet`] while no backend of it was checked (it has none,
/// or each awaits its first check), else [`Serving::No`].
pub(super) fn services(
    model: &Model,
    covered: impl Fn(IpAddr) -> bool,
    mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>,
) -> Vec<Service> {
    model
        .vips
        .iter()
        .filter(|(id, _)| covered(id.address))
        .map(|(id, vip)| Service {
            address: id.address,
            serving: if vip.should_announce(mac_of) {
                Serving::Yes
            } else if vip.backends.values().all(|b| b.awaits_first_check()) {
                Serving::NotYet
            } else {
                Serving::No
            },
        })
        .collect()
}
