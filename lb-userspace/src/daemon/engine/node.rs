//! The engine's node-level duties in an active-active group: the
//! operator's node state (drained or active, kept across stops, restarts
//! and reboots in `[bgp] node_state_file`), the
//! node's traffic (so `lbctl node drain --wait` knows when its flows have
//! moved), and the BGP announcements that follow both and the VIPs'
//! health.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Instant,
};

use lb_common::stats::Counter;
use tracing::{error, info, warn};

use super::{BackendKey, Engine};
use crate::{
    api::schema::NodeStatus,
    bgp::{
        announce::{self, DumpProgress, NodeView, PeerDumps, Service, Serving},
        announcer::{self, Announcer, Outcome},
        NodeState,
    },
    config::Config,
    health::Health,
    model::{AdminState, Model},
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
    /// [`newly_without_mac`]), so the warning comes once, not every tick.
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

impl NodeRuntime {
    /// Makes the node `state`, recording it in `path` first (when there is
    /// one): if that fails, the error names the file and the state stays.
    fn set_state(&mut self, path: Option<&Path>, state: NodeState) -> Result<(), String> {
        if state == self.state {
            return Ok(());
        }
        if let Some(path) = path {
            write_state(path, state).map_err(|error| {
                format!(
                    "the node stays {}: recording \"{}\" in the node state file {} failed ({error:#}), and a restart would not keep it",
                    self.state.name(),
                    state.name(),
                    path.display()
                )
            })?;
        }
        info!(state = state.name(), "node state changed");
        self.state = state;
        Ok(())
    }
}

/// Removes a restart marker a previous lbd left that no stop path took.
fn remove_stale_restart_marker(config: &Config) {
    let Some(marker) = restart_marker(config) else {
        return;
    };
    match std::fs::remove_file(&marker) {
        Ok(()) => {
            info!(path = %marker.display(), "stale restart marker removed: the next stop withdraws the BGP announcements unless it is a restart")
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            warn!(%error, path = %marker.display(), "removing a stale restart marker failed: the next stop may keep the BGP announcements")
        }
    }
}

/// The node state a previous lbd recorded: `[bgp] node_state_file`, else
/// (a node upgraded from an lbd that kept it there) the file beside the
/// admin socket, which is then carried over. A file that is there but
/// cannot be read or names no state leaves the node drained (see
/// [`read_state`]).
fn read_node_state(config: &Config) -> NodeState {
    let path = node_state_file(config);
    if let Some(state) = path.as_deref().and_then(recorded_state) {
        return state;
    }
    let legacy = legacy_node_state_file(config).filter(|l| Some(l) != path.as_ref());
    let Some(state) = legacy.as_deref().and_then(recorded_state) else {
        return NodeState::default();
    };
    if let Some(path) = &path {
        match write_state(path, state) {
            Ok(()) => {
                info!(path = %path.display(), state = state.name(), "node state carried over to the state file")
            }
            Err(error) => {
                warn!(error = %format!("{error:#}"), "carrying the node state over failed")
            }
        }
    }
    state
}

/// The state recorded in `path` (None: no file), drained when the file
/// is there but unusable, with an error saying so.
fn recorded_state(path: &Path) -> Option<NodeState> {
    match read_state(path) {
        Ok(state) => state,
        Err(error) => {
            error!(
                error = %format!("{error:#}"),
                path = %path.display(),
                "the node state file cannot be trusted: the node starts drained (announcing nothing) rather than perhaps undoing a drain; `lbctl node undrain` makes it active and rewrites the file"
            );
            Some(NodeState::Drained)
        }
    }
}

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

    /// Warns, once each, of the dsr-l2 backends that pass their checks but
    /// whose MAC is unknown: the data plane sends them nothing (every
    /// packet for them is dropped) and BGP does not announce their VIP
    /// for them, which their health alone would not explain.
    fn warn_of_backends_without_mac(&mut self) {
        let macs = &self.macs;
        let mac_of = |a: IpAddr| macs.get(&a).copied();
        for (vip, backend) in newly_without_mac(&self.model, &mac_of, &mut self.node.without_mac) {
            warn!(%vip, %backend, "backend passes its checks but its MAC is unknown (no neighbour entry on the interface): the data plane sends it nothing, and BGP does not announce the VIP for it, until its MAC resolves");
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
    fn bgp_covers(&self, bgp: &crate::config::BgpConfig, address: IpAddr) -> bool {
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
    fn announcement_plan(&self, state: NodeState) -> Option<announce::Plan> {
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

    /// Why a VIP added at run time cannot be served as configured, if it
    /// cannot: a NAT VIP on an address BGP announces (the config file's
    /// rule, see `config::bgp`).
    pub(crate) fn announcement_refuses(&self, vip: &crate::config::VipConfig) -> Option<String> {
        announcement_refusal(&self.config, vip)
    }

    /// [`Self::announcement_refuses`] for a VIP of a reload's `file`: the
    /// running `[bgp]` decides (a restart setting), which the refusal
    /// says when the file's own would allow the VIP.
    pub(crate) fn reload_announcement_refuses(
        &self,
        file: &Config,
        vip: &crate::config::VipConfig,
    ) -> Option<String> {
        reload_announcement_refusal(&self.config, file, vip)
    }

    /// Whether the data plane is attached now (`/readyz`): from the
    /// attach until the kernel is found to run it no more.
    pub fn is_attached(&self) -> bool {
        self.dataplane.is_attached()
    }

    /// Why `state` cannot be asked for here: a node drain withdraws BGP
    /// announcements, so without `[bgp]` it would move nothing while
    /// saying the node is drained (making one active stays allowed, to
    /// clear a state left from before).
    pub(crate) fn node_state_refuses(&self, state: NodeState) -> Option<String> {
        node_state_refusal(&self.config, state)
    }

    /// Drains the node or makes it active again (kept across restarts),
    /// and announces accordingly; a dry run only says what would follow.
    /// A change that cannot be recorded is refused, the state unchanged
    /// (a drain a restart would forget is no drain).
    pub(crate) async fn set_node_state(
        &mut self,
        state: NodeState,
        dry_run: bool,
    ) -> Result<NodeStatus, String> {
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
            return Ok(status);
        }
        if let Err(error) = self
            .node
            .set_state(node_state_file(&self.config).as_deref(), state)
        {
            warn!(error = %error, "node state change refused");
            return Err(error);
        }
        self.announce();
        Ok(self.node_status())
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
        let forwarded = match self.announced_traffic() {
            Some(packets) => packets,
            None => counters
                .iter()
                .find(|(c, _)| *c == Counter::Forwarded)
                .map_or(0, |(_, v)| *v),
        };
        if forwarded != self.node.forwarded {
            self.node.forwarded = forwarded;
            self.node.last_forward = Some(Instant::now());
        }
    }

    /// With `[bgp]`: the packets forwarded for the VIPs on addresses BGP
    /// covers (what a node drain or a stop's withdrawal moves away;
    /// VRRP-held VIPs keep their traffic). None without BGP, or when a
    /// counter cannot be read.
    pub(super) fn announced_traffic(&self) -> Option<u64> {
        let bgp = self.node.announcer.as_ref()?.config();
        self.traffic_to(|address| {
            let held = self
                .config
                .vrrp
                .iter()
                .any(|v| v.addresses.contains(&address));
            bgp.covers(address, held)
        })
    }

    /// The packets forwarded for the VIPs on the addresses `moving` picks
    /// (what a stop withdraws or hands over). None when a counter cannot
    /// be read.
    pub(super) fn traffic_to(&self, moving: impl Fn(std::net::IpAddr) -> bool) -> Option<u64> {
        let mut packets: u64 = 0;
        for (id, applied) in self.balancer.vips() {
            if !moving(id.address) {
                continue;
            }
            let traffic = self.dataplane.vip_traffic(applied.id).ok()?;
            packets = packets.wrapping_add(traffic.packets);
        }
        Some(packets)
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
fn services(
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

/// [`Engine::announced_without_backends`], pure: the VIPs of `next` not in
/// `before`, without backends, on an address `covered` picks that an
/// active, started node would announce with `next`.
fn announced_without_backends(
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
fn newly_without_mac(
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

/// Where the node state is kept for the next lbd: `[bgp]
/// node_state_file` (persistent storage: a drain outlasts stops and
/// reboots); without `[bgp]`, where there is nothing to announce, beside
/// the admin socket.
pub(crate) fn node_state_file(config: &Config) -> Option<PathBuf> {
    match &config.bgp {
        Some(bgp) => Some(bgp.node_state_file.clone()),
        None => legacy_node_state_file(config),
    }
}

/// [`Engine::announcement_refuses`] under `config`, pure: the VIP named
/// as everywhere else (`[2001:2::100]:80/tcp`, its protocol too), not an
/// IPv6 address and port run together.
fn announcement_refusal(config: &Config, vip: &crate::config::VipConfig) -> Option<String> {
    let bgp = config.bgp.as_ref()?;
    let held = config
        .vrrp
        .iter()
        .any(|v| v.addresses.contains(&vip.address));
    (vip.nat.is_some() && bgp.covers(vip.address, held)).then(|| {
        format!(
            "VIP {} uses forwarding = \"nat\" on an address this node announces over BGP: ECMP may send a NAT'd flow's replies to another node; use dsr-l2, ipip or gue",
            crate::vip_id::VipId::of(vip)
        )
    })
}

/// [`announcement_refusal`] for a VIP of a reload's `file` on a node
/// running `running`: when the file's `[bgp]` (or `[[vrrp]]`) would not
/// announce the VIP, the refusal says that the running `[bgp]`, a
/// restart setting, decides, so it does not contradict the file.
fn reload_announcement_refusal(
    running: &Config,
    file: &Config,
    vip: &crate::config::VipConfig,
) -> Option<String> {
    let why = announcement_refusal(running, vip)?;
    if announcement_refusal(file, vip).is_some() {
        return Some(why);
    }
    Some(format!(
        "{why} (by the running [bgp], which changes only when lbd restarts: this file no longer announces it; restart lbd with this file, or keep the VIP out of nat until then)"
    ))
}

/// Why `state` cannot be asked for on a node configured by `config` (see
/// [`Engine::node_state_refuses`]).
fn node_state_refusal(config: &Config, state: NodeState) -> Option<String> {
    (state == NodeState::Drained && config.bgp.is_none()).then(|| {
        "node drain needs [bgp]: it withdraws this node's BGP announcements, and this node announces nothing (a VRRP backup takes the VIPs when this node stops or its priority falls)".to_owned()
    })
}

/// Where lbd kept the node state before `[bgp] node_state_file`: beside
/// the admin socket (a tmpfs such as /run/lbd, gone at stop and reboot).
fn legacy_node_state_file(config: &Config) -> Option<PathBuf> {
    let stem = config.admin_socket.file_stem()?.to_string_lossy();
    config
        .admin_socket
        .parent()
        .map(|dir| dir.join(format!("{stem}.node.state")))
}

/// Where lbd leaves word that it stops for a restart, for the unit's stop
/// path (`lbd --release-vips`), which then keeps the BGP announcements.
pub(crate) fn restart_marker(config: &Config) -> Option<PathBuf> {
    restart_marker_at(&config.admin_socket)
}

/// The restart marker of the lbd whose admin socket is `admin_socket`.
fn restart_marker_at(admin_socket: &Path) -> Option<PathBuf> {
    let stem = admin_socket.file_stem()?.to_string_lossy();
    admin_socket
        .parent()
        .map(|dir| dir.join(format!("{stem}.restarting")))
}

/// The state recorded in `path`: None when there is no file (a node
/// never drained); an error when it cannot be read or names no state
/// (an empty file too), as it may be hiding a drain.
fn read_state(path: &Path) -> anyhow::Result<Option<NodeState>> {
    use anyhow::Context as _;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", path.display()));
        }
    };
    match NodeState::from_name(text.trim()) {
        Some(state) => Ok(Some(state)),
        None => anyhow::bail!(
            "{} holds {:?}, not \"active\" or \"drained\"",
            path.display(),
            text.trim()
        ),
    }
}

/// Records `state` in `path` durably: a temporary file beside it, synced,
/// renamed over it, then the directory synced, so a drain survives a
/// power cut (the directory is created if missing, e.g. /var/lib/lbd
/// outside the systemd unit).
fn write_state(path: &Path, state: NodeState) -> anyhow::Result<()> {
    write_state_with(path, state, sync_dir)
}

/// [`write_state`], the directory synced by `sync_dir`. The rename is
/// the commit point: once it is done the file says `state`, so a failed
/// directory sync is only warned of (the state may not survive a power
/// cut), never reported as the state not recorded, which would leave the
/// caller's state other than the file's.
fn write_state_with(
    path: &Path,
    state: NodeState,
    sync_dir: impl FnOnce(&Path) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    write_durably_with(
        path,
        format!("{}\n", state.name()).as_bytes(),
        "node state",
        sync_dir,
    )
}

/// Writes `contents` to `path` durably, as [`write_state`] writes the
/// node state (the pattern every state file of lbd's follows, so the
/// backends' states are kept as a drained node is): a temporary file
/// beside it, synced, renamed over it, then the directory synced (by
/// `sync_dir`); the directory is created if missing. `what` names the
/// file's content in the warning of a failed directory sync.
pub(super) fn write_durably_with(
    path: &Path,
    contents: &[u8],
    what: &str,
    sync_dir: impl FnOnce(&Path) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    use std::io::Write as _;

    use anyhow::Context as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let temporary = temporary_of(path);
    // A file lbd creates now, never one found at the name (a symlink).
    let mut file = crate::fresh_file::create_fresh(&temporary, 0o666)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temporary.display()))?;
    drop(file);
    if let Err(error) = std::fs::rename(&temporary, path) {
        let _ = std::fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("replacing {}", path.display()));
    }
    if let Err(error) = sync_dir(dir) {
        warn!(%error, path = %path.display(), "{what} recorded, but syncing its directory failed: a power cut may lose it");
    }
    Ok(())
}

/// The file `path` is written as before it replaces `path`: its whole
/// name with `.new` appended, so files whose names differ only after
/// their last dot (`node.state.eth0`, `node.state.eth1`: two lbds on one
/// host) never share one.
pub(super) fn temporary_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

/// Syncs directory `dir` (a rename in it then survives a power cut).
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

/// The unit's stop path: withdraws the announcement `bgp` (the one the
/// lbd that ran made, from its record; see `ownership::held`) unless that
/// lbd, whose admin socket was `admin_socket`, left word that it restarts
/// (the marker is taken).
pub(crate) async fn withdraw_unless_restarting(
    admin_socket: &Path,
    bgp: &crate::ownership::held::HeldBgp,
) -> anyhow::Result<()> {
    if let Some(marker) = restart_marker_at(admin_socket) {
        if std::fs::remove_file(&marker).is_ok() {
            info!("BGP: lbd stopped for a restart; announcements kept");
            return Ok(());
        }
    }
    announcer::withdraw_routes(bgp).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::announce::Withheld;
    use crate::test_scratch::ScratchDir;

    /// A directory of this test's (removed when dropped), with `run/` in it.
    struct Scratch(ScratchDir);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir = ScratchDir::new(&format!("node-{tag}"));
            std::fs::create_dir_all(dir.join("run")).unwrap();
            Self(dir)
        }

        /// A config with its admin socket in `run/` and, with `bgp`, the
        /// node state in `lib/` (not created yet).
        fn config(&self, bgp: bool) -> Config {
            let mut text = format!(
                "interface = \"eth0\"\nadmin_socket = \"{}\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n  [[vip.backend]]\n  address = \"198.18.0.11\"\n  mac = \"02:00:00:00:00:11\"\n",
                self.0.join("run").join("lbd.sock").display()
            );
            if bgp {
                text.push_str(&format!(
                    "[bgp]\nbird_socket = \"{}\"\nroutes_file = \"{}\"\nnode_state_file = \"{}\"\n",
                    self.0.join("bird.ctl").display(),
                    self.0.join("vips.conf").display(),
                    self.0.join("lib").join("node.state").display()
                ));
            }
            Config::from_toml_str(&text, "lbd.toml").unwrap()
        }
    }

    /// A dsr-l2 VIP (198.18.0.100) and a NAT VIP (198.18.0.101), one
    /// backend each, no MAC configured, both backends passing their
    /// checks.
    fn up_without_configured_macs() -> Model {
        let config = Config::from_toml_str(
            "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n\
             [[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"dsr-l2\"\n\
             [vip.health]\ncheck = \"tcp\"\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\n\
             [[vip]]\naddress = \"198.18.0.101\"\nport = 80\nforwarding = \"nat\"\n\
             [vip.health]\ncheck = \"tcp\"\n\
             [[vip.backend]]\naddress = \"198.18.1.12\"\n",
            "lbd.toml",
        )
        .unwrap();
        let mut model = Model::from_config(&config);
        let keys: Vec<BackendKey> = model
            .vips
            .iter()
            .flat_map(|(id, vip)| vip.backends.keys().map(move |a| (*id, *a)))
            .collect();
        for (vip, backend) in keys {
            assert!(model.set_health(&vip, backend, Health::Up));
        }
        model
    }

    /// What an active, started node with BGP covering both VIPs announces.
    fn announced(model: &Model, mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>) -> announce::Plan {
        let view = NodeView {
            state: NodeState::Active,
            gate: announce::Gate::Open,
            attached: true,
            interface_up: true,
        };
        announce::plan(view, &services(model, |_| true, mac_of))
    }

    /// A dsr-l2 backend passing its checks whose MAC never resolves takes
    /// no packet (the data plane sends a dsr-l2 backend nothing without
    /// one): its VIP is withdrawn rather than drawing traffic that is
    /// all dropped; once the MAC is known it is announced. A NAT VIP
    /// needs no MAC and is announced either way.
    #[test]
    fn a_dsr_l2_vip_whose_healthy_backends_have_no_mac_is_not_announced() {
        let model = up_without_configured_macs();
        let dsr: IpAddr = "198.18.0.100".parse().unwrap();
        let nat: IpAddr = "198.18.0.101".parse().unwrap();
        let plan = announced(&model, &|_| None);
        assert_eq!(plan[&dsr], Some(Withheld::NoHealthyBackend), "{plan:?}");
        assert_eq!(plan[&nat], None, "{plan:?}");
        let plan = announced(&model, &|_| Some([2, 0, 0, 0, 0, 0x11]));
        assert_eq!(plan[&dsr], None, "{plan:?}");
        assert_eq!(plan[&nat], None, "{plan:?}");
    }

    /// The file of `ports` on 198.18.0.100 (dsr-l2, TCP checks), each
    /// with backend 198.18.0.11 (MAC configured) when `backend` says so.
    fn ports_config(ports: &[(u16, bool)]) -> Config {
        let mut text = "interface = \"eth0\"\n".to_owned();
        for (port, backend) in ports {
            text.push_str(&format!(
                "[[vip]]\naddress = \"198.18.0.100\"\nport = {port}\n[vip.health]\ncheck = \"tcp\"\n"
            ));
            if *backend {
                text.push_str(
                    "[[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n",
                );
            }
        }
        Config::from_toml_str(&text, "lbd.toml").unwrap()
    }

    /// Sets the health of every backend on `port`.
    fn set_port_health(model: &mut Model, port: u16, health: Health) {
        let keys: Vec<BackendKey> = model
            .vips
            .iter()
            .filter(|(id, _)| id.port == port)
            .flat_map(|(id, vip)| vip.backends.keys().map(move |a| (*id, *a)))
            .collect();
        for (vip, backend) in keys {
            assert!(model.set_health(&vip, backend, health));
        }
    }

    /// A reload adds :8443 beside a healthy :443, its backend awaiting
    /// its first check (or none at all, as `lbctl vip add` before
    /// `backend add` leaves it): every node sees the same, so the address
    /// stays announced for :443. Once :8443's backend was checked and
    /// found down the address goes (a node-local failure the other nodes
    /// may not share), and it comes back when it is up.
    #[test]
    fn a_port_added_beside_a_served_one_keeps_the_address_announced() {
        let address: IpAddr = "198.18.0.100".parse().unwrap();
        let mac = |_| Some([2, 0, 0, 0, 0, 0x11]);
        let mut running = Model::from_config(&ports_config(&[(443, true)]));
        set_port_health(&mut running, 443, Health::Up);
        assert_eq!(announced(&running, &mac)[&address], None);

        let mut next = running.reloaded(&ports_config(&[(443, true), (8443, true)]));
        assert_eq!(
            announced(&next, &mac)[&address],
            None,
            "awaiting its first check"
        );
        let empty = running.reloaded(&ports_config(&[(443, true), (8443, false)]));
        assert_eq!(announced(&empty, &mac)[&address], None, "no backends");

        set_port_health(&mut next, 8443, Health::Down);
        assert_eq!(
            announced(&next, &mac)[&address],
            Some(Withheld::NoHealthyBackend),
            "checked and down"
        );
        set_port_health(&mut next, 8443, Health::Up);
        assert_eq!(announced(&next, &mac)[&address], None);

        // Nothing served on the address yet: not announced.
        let fresh = Model::default().reloaded(&ports_config(&[(443, true)]));
        assert_eq!(
            announced(&fresh, &mac)[&address],
            Some(Withheld::NoHealthyBackend)
        );
    }

    /// A new VIP without backends on an address BGP announces for the
    /// services beside it is warned of by its name and the address; one
    /// on an address nothing else serves (not announced), or with
    /// backends, or there before, is not.
    #[test]
    fn a_new_service_without_backends_on_an_announced_address_is_warned_of() {
        let mac = |_| Some([2, 0, 0, 0, 0, 0x11]);
        let mut running = Model::from_config(&ports_config(&[(443, true)]));
        set_port_health(&mut running, 443, Health::Up);
        let next = running.reloaded(&ports_config(&[(443, true), (8443, false)]));
        let warnings = announced_without_backends(&running, &next, |_| true, &mac);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("198.18.0.100:8443/tcp")
                && warnings[0].contains("BGP announces 198.18.0.100"),
            "{warnings:?}"
        );
        assert!(announced_without_backends(&next, &next, |_| true, &mac).is_empty());
        assert!(announced_without_backends(&running, &next, |_| false, &mac).is_empty());
        let with = running.reloaded(&ports_config(&[(443, true), (8443, true)]));
        assert!(announced_without_backends(&running, &with, |_| true, &mac).is_empty());
        let alone = Model::default().reloaded(&ports_config(&[(8443, false)]));
        assert!(announced_without_backends(&Model::default(), &alone, |_| true, &mac).is_empty());
    }

    /// The warning for a backend passing its checks without a MAC comes
    /// once, not on every pass of lbd's loop, and again only after the
    /// condition ended and came back.
    #[test]
    fn a_backend_up_without_a_mac_is_warned_of_once() {
        let mut model = up_without_configured_macs();
        let vip = *model
            .vips
            .iter()
            .find(|(id, _)| id.address == "198.18.0.100".parse::<IpAddr>().unwrap())
            .unwrap()
            .0;
        let key = (vip, "198.18.0.11".parse().unwrap());
        let mut warned = BTreeSet::new();
        let none = |_| None;
        assert_eq!(newly_without_mac(&model, &none, &mut warned), [key]);
        assert!(newly_without_mac(&model, &none, &mut warned).is_empty());
        // Its checks fail, then pass again: warned of again.
        model.set_health(&key.0, key.1, Health::Down);
        assert!(newly_without_mac(&model, &none, &mut warned).is_empty());
        model.set_health(&key.0, key.1, Health::Up);
        assert_eq!(newly_without_mac(&model, &none, &mut warned), [key]);
        // Its MAC resolves: nothing more.
        let known = |_| Some([2, 0, 0, 0, 0, 0x11]);
        assert!(newly_without_mac(&model, &known, &mut warned).is_empty());
        assert!(warned.is_empty());
    }

    #[test]
    fn a_node_without_bgp_refuses_a_drain_but_may_be_made_active() {
        let scratch = Scratch::new("nobgp");
        let without = scratch.config(false);
        let why = node_state_refusal(&without, NodeState::Drained).unwrap();
        assert!(why.contains("[bgp]"), "{why}");
        assert_eq!(node_state_refusal(&without, NodeState::Active), None);
        let with = scratch.config(true);
        assert_eq!(node_state_refusal(&with, NodeState::Drained), None);
    }

    /// A NAT VIP refused on an address BGP announces is named as VIPs
    /// are everywhere: an IPv6 one with brackets and its protocol, not
    /// `2001:2::100:80`.
    #[test]
    fn a_nat_vip_bgp_announces_is_refused_by_its_name() {
        let scratch = Scratch::new("natname");
        let with = scratch.config(true);
        let mut vip = crate::config::VipConfig::new(
            "2001:2::100".parse().unwrap(),
            80,
            crate::config::Protocol::Tcp,
        );
        assert_eq!(announcement_refusal(&with, &vip), None);
        vip.nat = Some(crate::config::VipNat {
            source: "2001:2::50".parse().unwrap(),
            own_source: false,
            port_min: 1024,
            port_max: 65535,
        });
        let why = announcement_refusal(&with, &vip).unwrap();
        assert!(
            why.starts_with("VIP [2001:2::100]:80/tcp uses forwarding = \"nat\""),
            "{why}"
        );
        assert_eq!(announcement_refusal(&scratch.config(false), &vip), None);
    }

    /// A reload refused for a NAT VIP the running `[bgp]` announces,
    /// when the file's own `[bgp]` would not: the refusal says the
    /// running one decides until lbd restarts, which `lbctl vip add`'s
    /// (no file) does not.
    #[test]
    fn a_reload_refused_by_the_running_bgp_says_a_restart_changes_it() {
        let scratch = Scratch::new("reloadbgp");
        let (with, without) = (scratch.config(true), scratch.config(false));
        let mut vip = with.vips[0].clone();
        vip.nat = Some(crate::config::VipNat {
            source: "198.18.0.50".parse().unwrap(),
            own_source: false,
            port_min: 1024,
            port_max: 65535,
        });
        let added = announcement_refusal(&with, &vip).unwrap();
        assert!(!added.contains("restart"), "{added}");
        let reloaded = reload_announcement_refusal(&with, &without, &vip).unwrap();
        assert!(reloaded.starts_with(&added), "{reloaded}");
        assert!(
            reloaded.contains("the running [bgp]") && reloaded.contains("restart lbd"),
            "{reloaded}"
        );
        // The file announces it too: the refusal as for an add.
        assert_eq!(
            reload_announcement_refusal(&with, &with, &vip).as_deref(),
            Some(added.as_str())
        );
        assert_eq!(reload_announcement_refusal(&without, &with, &vip), None);
    }

    #[test]
    fn a_stale_restart_marker_goes_when_lbd_starts() {
        let scratch = Scratch::new("marker");
        let config = scratch.config(true);
        let marker = restart_marker(&config).unwrap();
        std::fs::write(&marker, b"restart\n").unwrap();
        let _node = NodeRuntime::start(&config, true, Instant::now());
        assert!(!marker.exists(), "a later stop would keep the routes");
    }

    #[test]
    fn a_drain_outlives_the_runtime_directory() {
        let scratch = Scratch::new("drain");
        let config = scratch.config(true);
        let path = node_state_file(&config).unwrap();
        assert!(!path.starts_with(scratch.0.join("run")), "{path:?}");
        // The directory does not exist yet (a fresh /var/lib/lbd).
        write_state(&path, NodeState::Drained).unwrap();
        // systemd removed /run/lbd on stop (or the node rebooted).
        std::fs::remove_dir_all(scratch.0.join("run")).unwrap();
        let node = NodeRuntime::start(&config, false, Instant::now());
        assert_eq!(node.state, NodeState::Drained);
    }

    #[test]
    fn a_drain_recorded_beside_the_admin_socket_is_carried_over() {
        let scratch = Scratch::new("legacy");
        let config = scratch.config(true);
        let legacy = legacy_node_state_file(&config).unwrap();
        std::fs::write(&legacy, "drained\n").unwrap();
        let node = NodeRuntime::start(&config, false, Instant::now());
        assert_eq!(node.state, NodeState::Drained);
        let path = node_state_file(&config).unwrap();
        assert_eq!(read_state(&path).unwrap(), Some(NodeState::Drained));
        // Without [bgp] the state stays beside the admin socket.
        assert_eq!(node_state_file(&scratch.config(false)), Some(legacy));
    }

    /// A drain a restart would forget is refused, naming the file, and
    /// the node stays as it was; once the file can be written the change
    /// goes through and is read back.
    #[test]
    fn a_state_change_that_cannot_be_recorded_is_refused() {
        let scratch = Scratch::new("unwritable");
        let config = scratch.config(true);
        let path = node_state_file(&config).unwrap();
        let mut node = NodeRuntime::start(&config, false, Instant::now());
        assert_eq!(node.state, NodeState::Active);
        // Its directory cannot be made: a file is where it would go.
        std::fs::write(scratch.0.join("lib"), b"not a directory").unwrap();
        let why = node.set_state(Some(&path), NodeState::Drained).unwrap_err();
        assert!(why.contains(&path.display().to_string()), "{why}");
        assert!(why.contains("stays active"), "{why}");
        assert_eq!(node.state, NodeState::Active, "unchanged");

        std::fs::remove_file(scratch.0.join("lib")).unwrap();
        node.set_state(Some(&path), NodeState::Drained).unwrap();
        assert_eq!(node.state, NodeState::Drained);
        assert_eq!(read_state(&path).unwrap(), Some(NodeState::Drained));
        assert!(!temporary_of(&path).exists(), "no temporary file left");
    }

    /// A state file that is there but unusable (empty after a crash,
    /// garbled, unreadable) may hide a drain: the node starts drained.
    /// No file at all is a node never drained.
    #[test]
    fn a_failed_directory_sync_after_the_rename_still_records_the_state() {
        let scratch = Scratch::new("dirsync");
        let config = scratch.config(true);
        let path = node_state_file(&config).unwrap();
        let synced = std::cell::Cell::new(false);
        // The rename is done when the directory sync fails: the file says
        // drained, so the write must say so too (set_state then changes
        // its state with the file's).
        write_state_with(&path, NodeState::Drained, |dir| {
            synced.set(dir == scratch.0.join("lib"));
            Err(std::io::Error::other("injected fsync failure"))
        })
        .expect("the rename is the commit point");
        assert!(synced.get(), "the directory sync was asked for");
        assert_eq!(read_state(&path).unwrap(), Some(NodeState::Drained));
        // A failure before the rename is still an error, and changes nothing.
        std::fs::remove_dir_all(scratch.0.join("lib")).unwrap();
        std::fs::write(scratch.0.join("lib"), b"not a directory").unwrap();
        assert!(write_state_with(&path, NodeState::Active, |_| Ok(())).is_err());
    }

    /// A symlink planted at the temporary name is never followed: the
    /// file it points to is left as it was.
    #[test]
    fn a_symlink_at_the_temporary_name_is_not_followed() {
        let scratch = Scratch::new("symlink");
        let path = scratch.0.join("node.state");
        let victim = scratch.0.join("victim");
        std::fs::write(&victim, "secret\n").unwrap();
        std::os::unix::fs::symlink(&victim, temporary_of(&path)).unwrap();
        write_state_with(&path, NodeState::Drained, |_| Ok(())).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret\n");
        assert_eq!(read_state(&path).unwrap(), Some(NodeState::Drained));
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    }

    #[test]
    fn an_unusable_state_file_starts_the_node_drained() {
        let scratch = Scratch::new("unusable");
        let config = scratch.config(true);
        let path = node_state_file(&config).unwrap();
        let start = || NodeRuntime::start(&config, false, Instant::now()).state;
        assert_eq!(start(), NodeState::Active, "no file");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        for text in ["", "\n", "maintenance\n", "drai"] {
            std::fs::write(&path, text).unwrap();
            assert!(read_state(&path).is_err(), "{text:?}");
            assert_eq!(start(), NodeState::Drained, "{text:?}");
        }
        // Unreadable: a directory where the file should be.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let error = format!("{:#}", read_state(&path).unwrap_err());
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert_eq!(start(), NodeState::Drained);
        std::fs::remove_dir(&path).unwrap();
        std::fs::write(&path, "active\n").unwrap();
        assert_eq!(start(), NodeState::Active);
    }
}
