//! The engine's node-level duties in an active-active group: the
//! operator's node state (drained or active, kept across restarts), the
//! node's traffic (so `lbctl node drain --wait` knows when its flows have
//! moved), and the BGP announcements that follow both and the VIPs'
//! health.

use std::{path::PathBuf, time::Instant};

use lb_common::stats::Counter;
use tracing::{info, warn};

use super::Engine;
use crate::{
    api::schema::NodeStatus,
    bgp::{
        announce::{self, NodeView, Service},
        announcer::{self, Announcer},
        NodeState,
    },
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
}

impl NodeRuntime {
    /// The runtime for `config`, with the state a previous lbd left.
    pub(crate) fn start(config: &Config, adopted: bool, now: Instant) -> Self {
        let state = node_state_file(config)
            .and_then(|path| read_state(&path))
            .unwrap_or_default();
        if state == NodeState::Drained {
            info!("node state: drained (kept from before the restart); `lbctl node undrain` makes it active");
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
        }
    }
}

impl Engine {
    /// Brings BIRD's announcements in line with what the node can serve
    /// now (cheap when nothing changed: BIRD is only told of changes).
    pub(crate) async fn announce(&mut self) {
        let now = Instant::now();
        let peers_dumped = self
            .replication
            .as_ref()
            .is_some_and(|r| r.all_peers_dumped());
        if let Some(announcer) = self.node.announcer.as_mut() {
            announcer.update_startup(peers_dumped, now);
        }
        let plan = self.announcement_plan(self.node.state);
        if let Some((announcer, plan)) = self.node.announcer.as_mut().zip(plan) {
            announcer.apply(plan, now).await;
        }
    }

    /// The announcement plan with the node in `state` (None: no BGP).
    fn announcement_plan(&self, state: NodeState) -> Option<announce::Plan> {
        let announcer = self.node.announcer.as_ref()?;
        let bgp = announcer.config();
        let vrrp_held = |address| {
            self.config
                .vrrp
                .iter()
                .any(|v| v.addresses.contains(&address))
        };
        let services: Vec<Service> = self
            .model
            .vips
            .iter()
            .filter(|(id, _)| bgp.covers(id.address, vrrp_held(id.address)))
            .map(|(id, vip)| Service {
                address: id.address,
                serviceable: vip.can_serve(),
            })
            .collect();
        let view = NodeView {
            state,
            started: announcer.started(),
            attached: self.dataplane.is_attached(),
            interface_up: self.interface_up,
        };
        Some(announce::plan(view, &services))
    }

    /// Why a VIP added at run time cannot be served as configured, if it
    /// cannot: a NAT VIP on an address BGP announces (the config file's
    /// rule, see `config::bgp`).
    pub(crate) fn announcement_refuses(&self, vip: &crate::config::VipConfig) -> Option<String> {
        let bgp = self.config.bgp.as_ref()?;
        let held = self
            .config
            .vrrp
            .iter()
            .any(|v| v.addresses.contains(&vip.address));
        (vip.nat.is_some() && bgp.covers(vip.address, held)).then(|| {
            format!(
                "VIP {}:{} uses forwarding = \"nat\" on an address this node announces over BGP: ECMP may send a NAT'd flow's replies to another node; use dsr-l2, ipip or gue",
                vip.address, vip.port
            )
        })
    }

    /// Drains the node or makes it active again (kept across restarts),
    /// and announces accordingly; a dry run only says what would follow.
    pub(crate) async fn set_node_state(&mut self, state: NodeState, dry_run: bool) -> NodeStatus {
        if dry_run {
            let mut status = self.node_status();
            status.state = state;
            status.dry_run = true;
            let plan = self.announcement_plan(state);
            if let (Some(bgp), Some(plan)) = (status.bgp.as_mut(), plan) {
                bgp.announced = plan
                    .iter()
                    .filter(|(_, r)| r.is_none())
                    .map(|(a, _)| *a)
                    .collect();
                bgp.withheld = plan
                    .iter()
                    .filter_map(|(address, reason)| {
                        reason.map(|reason| crate::bgp::WithheldAddress {
                            address: *address,
                            reason,
                        })
                    })
                    .collect();
            }
            return status;
        }
        if state != self.node.state {
            info!(state = state.name(), "node state changed");
            self.node.state = state;
            if let Some(path) = node_state_file(&self.config) {
                if let Err(error) = write_state(&path, state) {
                    warn!(%error, path = %path.display(), "recording the node state failed; a restart will not keep it");
                }
            }
        }
        self.announce().await;
        self.node_status()
    }

    /// Samples the forwarded count, feeds the SYN-flood watch and gives
    /// the data plane its flood mode (every housekeeping tick).
    pub(crate) fn watch_traffic(&mut self) {
        let Ok(counters) = self.dataplane.counters() else {
            return;
        };
        self.flood.observe(Instant::now(), &counters);
        if let Some(flood) = self.flood.unwritten_mode() {
            match self.dataplane.set_syn_flood(flood) {
                Ok(()) => self.flood.mode_written(flood),
                Err(error) => {
                    warn!(%error, flood, "setting SYN-flood mode in the data plane failed; retried next tick")
                }
            }
        }
        let forwarded = counters
            .iter()
            .find(|(c, _)| *c == Counter::Forwarded)
            .map_or(0, |(_, v)| *v);
        if forwarded != self.node.forwarded {
            self.node.forwarded = forwarded;
            self.node.last_forward = Some(Instant::now());
        }
    }

    /// `GET /v1/node`.
    pub(crate) fn node_status(&self) -> NodeStatus {
        NodeStatus {
            dry_run: false,
            state: self.node.state,
            forwarded: self.node.forwarded,
            idle_ms: self
                .node
                .last_forward
                .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
            bgp: self.node.announcer.as_ref().map(Announcer::status),
        }
    }

    /// A stop for good: every address withdrawn.
    pub(crate) async fn withdraw_announcements(&mut self) {
        if let Some(announcer) = self.node.announcer.as_mut() {
            if let Err(error) = announcer.withdraw_all().await {
                warn!(error = %format!("{error:#}"), "BGP: withdrawing on stop failed");
            }
        }
    }
}

/// Where the node state is kept for the next lbd: beside the admin socket
/// (a tmpfs such as /run/lbd, gone at reboot, kept across a unit restart),
/// e.g. `/run/lbd/lbd.node.state`.
pub(crate) fn node_state_file(config: &Config) -> Option<PathBuf> {
    let stem = config.admin_socket.file_stem()?.to_string_lossy();
    config
        .admin_socket
        .parent()
        .map(|dir| dir.join(format!("{stem}.node.state")))
}

/// Where lbd leaves word that it stops for a restart, for the unit's stop
/// path (`lbd --release-vips`), which then keeps the BGP announcements.
pub(crate) fn restart_marker(config: &Config) -> Option<PathBuf> {
    let stem = config.admin_socket.file_stem()?.to_string_lossy();
    config
        .admin_socket
        .parent()
        .map(|dir| dir.join(format!("{stem}.restarting")))
}

fn read_state(path: &std::path::Path) -> Option<NodeState> {
    let text = std::fs::read_to_string(path).ok()?;
    let state = NodeState::from_name(text.trim());
    if state.is_none() {
        warn!(path = %path.display(), "unreadable node state file ignored: the node starts active");
    }
    state
}

fn write_state(path: &std::path::Path, state: NodeState) -> std::io::Result<()> {
    let temporary = path.with_extension("state.new");
    std::fs::write(&temporary, format!("{}\n", state.name()))?;
    std::fs::rename(&temporary, path)
}

/// The unit's stop path: withdraws the announcements of `config` unless
/// the lbd that stopped left word that it restarts (the marker is taken).
pub(crate) async fn withdraw_unless_restarting(config: &Config) -> anyhow::Result<()> {
    let Some(bgp) = &config.bgp else {
        return Ok(());
    };
    if let Some(marker) = restart_marker(config) {
        if std::fs::remove_file(&marker).is_ok() {
            info!("BGP: lbd stopped for a restart; announcements kept");
            return Ok(());
        }
    }
    announcer::withdraw(bgp).await
}

impl Engine {
    /// Leaves word for the unit's stop path that this stop is a restart.
    pub(crate) fn mark_restart(&self) {
        let Some(marker) = restart_marker(&self.config) else {
            return;
        };
        if let Err(error) = std::fs::write(&marker, b"restart\n") {
            warn!(%error, path = %marker.display(), "leaving the restart marker failed: the unit's stop path will withdraw the BGP announcements");
        }
    }
}
