//! The engine: the one owner of lbd's state (config in force, model, data
//! plane, health checker, neighbour MACs). Every change, whatever asked for
//! it (API, health transition, reload, drain deadline, a MAC showing up),
//! goes through `commit`: build the next model, apply it to the maps, and
//! only then make it current. A change the maps refuse leaves the model as
//! it was.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use lb_common::consts::{FLOW_F_FIN, FLOW_F_HALF_OPEN, FLOW_F_RST, IPPROTO_UDP, MAX_VIPS_DEFAULT};
use tokio::sync::mpsc;
use tracing::{info, warn};

mod change;
mod guard;
mod nat;
pub(crate) mod node;
mod tunnel;
mod view;

pub use change::ChangeError;

use super::replication::Replication;
use crate::{
    config::{AllDown, Attach, CheckType, Config, HealthConfig},
    dataplane::{Dataplane, Hooked, LoadOptions, MapSizes, Released},
    health::{CheckKind, CheckSettings, HealthChecker, HealthEvent, ProbeTarget},
    model::{FlowCount, IdleTimeouts, Model},
    netlink::{Interface, Netlink},
    pinning::PinDir,
    reconcile::{ApplyReport, Balancer, ReconcileError, Staged, VipId},
    sync::ReceivedBatch,
    vrrp::driver::Instance,
};

/// How long start-up waits for backends' MACs before going on without them.
const INITIAL_RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long adding a backend at run time waits for its MAC.
const RUNTIME_RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Room for VIPs added at run time beyond those in the file.
const SPARE_VIPS: u32 = 16;

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
    /// Health transitions per backend since start.
    transitions: HashMap<BackendKey, u64>,
    /// VRRP instances (empty: no VRRP; this node serves whatever reaches it).
    vrrp: Vec<Instance>,
    /// Connection-table replication with the VRRP peer.
    replication: Option<Replication>,
    /// Whether the interface is up with its carrier (tracked for VRRP).
    interface_up: bool,
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
    /// Deny/allow lists and limits of new flows in force.
    guard: crate::guard::Guard,
    /// SYN-flood detection from the half-open table's counters.
    flood: crate::flood::FloodWatch,
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

    /// Loads the data plane, fills it from `config` and attaches it.
    /// Returns the engine and the stream of health transitions.
    pub async fn start(config_path: &Path, config: Config) -> anyhow::Result<(Self, EngineEvents)> {
        let netlink = Netlink::connect()?;
        let interface = netlink.interface(&config.interface).await?;
        // A restart that resumes mastership speaks first: the backup's
        // master-down timer has run since the last lbd's last advert, and
        // the rest of the start (the verifier, neighbour resolution) may
        // take longer than what is left of it. The pinned program forwards
        // meanwhile. Instances that do not resume start last, once the data
        // plane serves: they may become master.
        let mut vrrp_starts = Vec::with_capacity(config.vrrp.len());
        for vrrp in &config.vrrp {
            let state_file = vrrp_state_file(&config, vrrp);
            vrrp_starts.push(if Instance::resumes(vrrp, state_file.as_deref()) {
                VrrpStart::Resumed(Box::new(
                    Instance::start(vrrp.clone(), &interface, netlink.clone(), state_file, true)
                        .await?,
                ))
            } else {
                VrrpStart::Later(state_file)
            });
        }
        let file_vips = u32::try_from(config.vips.len()).unwrap_or(u32::MAX);
        let pins = config.pin_dir.clone().map(PinDir::new);
        let needed_vips = MAX_VIPS_DEFAULT.max(file_vips.saturating_add(SPARE_VIPS));
        // Keep the size a previous lbd pinned if it still fits: then its
        // maps (and the connection table) can be adopted.
        let pinned_vips = pins
            .as_ref()
            .and_then(|p| p.pinned_max_entries(lb_common::consts::names::MAP_VIPS))
            .filter(|pinned| *pinned >= needed_vips);
        let sizes = MapSizes {
            max_vips: pinned_vips.unwrap_or(needed_vips),
            conntrack: config.conntrack_size,
            nat_flows: config.nat.flow_table_size,
            half_open: config.half_open_size,
        };
        let options = LoadOptions {
            pins,
            ..LoadOptions::default()
        };
        let mut dataplane =
            Dataplane::load_with(sizes, &options).context("loading the data plane")?;
        let adopted = dataplane
            .adopted_state()
            .context("reading the pinned data plane")?;
        // The flags a previous lbd wrote stay until the first apply decides
        // them: NAT'd replies keep being translated across a restart.
        dataplane.set_iface_mac(interface.mac)?;
        let (events_tx, events_rx) = mpsc::channel(1024);
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let observed = metrics.clone();
        let checker = HealthChecker::new(events_tx).with_observer(std::sync::Arc::new(
            move |(vip, backend): &BackendKey,
                  result: &crate::health::ProbeResult,
                  status: &crate::health::HealthStatus| {
                observed.observe_check(vip, *backend, result.latency, status.checks == 1);
            },
        ));
        let mut balancer = Balancer::new(sizes.max_vips);
        balancer.set_maglev_mode(config.maglev_mode);
        let mut model = Model::from_config(&config);
        if dataplane.adopted() {
            balancer.adopt(&adopted);
            seed_health(&mut model, &balancer);
            if config.maglev_mode == crate::config::MaglevMode::Minimal {
                // The next changes move only what they must from the table
                // packets read now.
                let live: Vec<_> = balancer
                    .vips()
                    .iter()
                    .map(|(id, vip)| (*id, vip.id, vip.active, vip.table_size))
                    .collect();
                for (id, vip_id, active, size) in live {
                    let table = dataplane
                        .read_table(vip_id, active, size)
                        .context("reading an adopted Maglev table")?;
                    balancer.set_adopted_table(&id, table);
                }
            }
        }
        let node = node::NodeRuntime::start(&config, dataplane.adopted(), Instant::now());
        let guard = crate::guard::Guard::adopt(dataplane.guard(), config.guard.clone())
            .context("reading the pinned deny/allow lists")?;
        let mut engine = Self {
            config_path: config_path.to_owned(),
            balancer,
            model: Model::default(),
            dataplane,
            hooked: Hooked::Xdp(config.xdp_mode),
            interface,
            checker,
            transitions: HashMap::new(),
            vrrp: Vec::new(),
            replication: None,
            interface_up: true,
            tables_rebuilt: 0,
            reloads: Default::default(),
            metrics,
            netlink,
            macs: HashMap::new(),
            nat: nat::NatRuntime::default(),
            tunnel: tunnel::TunnelRuntime::default(),
            node,
            guard,
            flood: crate::flood::FloodWatch::new(config.flood),
            config,
        };
        engine.read_own_addresses().await;
        let node_tunnel = engine.node_tunnel(&engine.config.tunnel);
        engine.balancer.set_tunnel(node_tunnel);
        engine.resolve_macs(&model, INITIAL_RESOLVE_TIMEOUT).await;
        let report = engine.commit(model).context("filling the data plane")?;
        info!(?report, "maps filled");
        engine.prepare_routing().await;
        engine.hooked = match engine.config.attach {
            Attach::Xdp => {
                let running = engine
                    .netlink
                    .xdp_program(engine.interface.index)
                    .await
                    .context("reading the interface's XDP program")?;
                let mode = engine.dataplane.attach(
                    &engine.interface.name,
                    engine.config.xdp_mode,
                    running.map(|(id, _)| id),
                )?;
                Hooked::Xdp(
                    mode.or(running.map(|(_, mode)| mode))
                        .unwrap_or(engine.config.xdp_mode),
                )
            }
            Attach::Tc => {
                let running = crate::dataplane::tcx_ingress_programs(&engine.interface.name);
                engine
                    .dataplane
                    .attach_tc(&engine.interface.name, &running)?
            }
        };
        // A switch of `attach` across a restart: the hook the previous lbd
        // used goes, now that this one runs.
        engine
            .dataplane
            .remove_other_hook(&engine.interface.name, engine.config.attach)?;
        let mut sync_rx = None;
        let node_id = format!("{}/{}", hostname(), engine.interface.name);
        if let Some(settings) = engine.config.sync.clone() {
            let node_id = super::replication::mesh_node_id(
                settings.listen,
                &hostname(),
                &engine.interface.name,
            );
            let (replication, rx) = Replication::start_mesh(&settings, &node_id).await?;
            engine.replication = Some(replication);
            sync_rx = Some(rx);
        }
        for (vrrp, start) in engine.config.vrrp.clone().into_iter().zip(vrrp_starts) {
            if engine.replication.is_none() {
                if let Some((replication, rx)) = Replication::start_pair(&vrrp, &node_id).await? {
                    engine.replication = Some(replication);
                    sync_rx = Some(rx);
                }
            }
            let instance = match start {
                VrrpStart::Resumed(instance) => *instance,
                VrrpStart::Later(state_file) => {
                    Instance::start(
                        vrrp,
                        &engine.interface,
                        engine.netlink.clone(),
                        state_file,
                        false,
                    )
                    .await?
                }
            };
            engine.vrrp.push(instance);
        }
        engine.track();
        Ok((
            engine,
            EngineEvents {
                health: events_rx,
                sync: sync_rx,
            },
        ))
    }

    /// Makes `next` the served state: stages it on the balancer, writes
    /// the maps, then adopts it and points the health checks at its
    /// backends.
    pub fn commit(&mut self, next: Model) -> Result<ApplyReport, ReconcileError> {
        let macs = &self.macs;
        let desired = next.desired(&|a| macs.get(&a).copied());
        let staged = self.balancer.stage(&desired)?;
        self.commit_staged(next, staged)
    }

    /// Makes `next`, already staged as `staged`, the served state.
    pub(crate) fn commit_staged(
        &mut self,
        next: Model,
        staged: Staged,
    ) -> Result<ApplyReport, ReconcileError> {
        let report = self.balancer.commit(&mut self.dataplane, staged)?;
        self.ensure_forwarding();
        self.tables_rebuilt += report.tables_flipped as u64;
        for took in &report.table_builds {
            self.metrics.observe_table_build(*took);
        }
        self.model = next;
        self.refresh_guard();
        self.sync_checks();
        self.track();
        Ok(report)
    }

    /// Starts, replaces or stops health-check tasks to match the model,
    /// and keeps the path of checks through a tunnel while some use it.
    fn sync_checks(&mut self) {
        let mut wanted = Vec::new();
        for (id, vip) in &self.model.vips {
            for (address, backend) in &vip.backends {
                let health = backend.config.health.as_ref().unwrap_or(&vip.config.health);
                // A NAT backend listens on its own port, if it has one.
                let port = backend.config.port.unwrap_or(id.port);
                let through = if health.through_tunnel && vip.config.forwarding.is_tunnel() {
                    let Some(path) = self.tunnel_path(id, *address) else {
                        continue; // not in the maps: nothing to check through
                    };
                    Some((id.address, path))
                } else {
                    None
                };
                if let Some((target, settings)) = check_of(*address, port, health, through) {
                    wanted.push(((*id, *address), target, settings, backend.health));
                }
            }
        }
        self.sync_hc_path(wanted.iter().any(|w| w.1.through.is_some()));
        let keys: std::collections::HashSet<BackendKey> = wanted.iter().map(|w| w.0).collect();
        self.checker.retain(|k| keys.contains(k));
        self.transitions.retain(|k, _| keys.contains(k));
        self.metrics
            .retain_checks(|vip, backend| keys.contains(&(*vip, backend)));
        for (key, target, settings, health) in wanted {
            self.checker.set(key, target, settings, health);
        }
    }

    /// How a check of backend `address` of VIP `id` goes through its
    /// tunnel: marked with the backend's data-plane id; from the
    /// interface's address of the VIP's family when the backend's is
    /// another (4in6), else from the kernel's source toward the backend.
    fn tunnel_path(&self, id: &VipId, address: IpAddr) -> Option<crate::health::TunnelPath> {
        let backend = self.balancer.vips().get(id)?.backends.get(&address)?;
        let source = if address.is_ipv4() == id.address.is_ipv4() {
            None
        } else {
            let own = self.tunnel.own.of_family(id.address.is_ipv6());
            if own.is_none() {
                warn!(vip = %id, backend = %address, "no address of the VIP's family on the interface to check the 4in6 backend through its tunnel from: its checks fail");
            }
            own
        };
        Some(crate::health::TunnelPath {
            mark: lb_common::tunnel::HC_MARK_BASE | backend.id,
            backend: address,
            source,
        })
    }

    /// Records a health transition and applies what it changes.
    pub(crate) fn on_health(&mut self, event: HealthEvent<BackendKey>) {
        let (vip, address) = event.key;
        let transition = &event.transition;
        let mut next = self.model.clone();
        if !next.set_health(&vip, address, transition.to) {
            return; // removed meanwhile
        }
        *self.transitions.entry((vip, address)).or_default() += 1;
        info!(%vip, backend = %address, from = %transition.from, to = %transition.to, reason = %transition.reason, "backend health changed");
        let was_all_down = self.model.vip(&vip).map(|v| v.all_down()).unwrap_or(false);
        let now_all_down = next.vip(&vip).map(|v| v.all_down()).unwrap_or(false);
        if now_all_down && !was_all_down {
            let policy = next
                .vip(&vip)
                .map(|v| v.config.on_all_down.to_string())
                .unwrap_or_default();
            warn!(%vip, on_all_down = %policy, "no healthy backend left");
        }
        if let Err(error) = self.commit(next) {
            warn!(%vip, backend = %address, %error, "applying a health change failed");
        }
    }

    /// Looks backends' MACs up again; applies what changed.
    pub(crate) async fn refresh_macs(&mut self) {
        let model = self.model.clone();
        let before = self.macs.clone();
        self.resolve_macs(&model, Duration::ZERO).await;
        if self.macs != before {
            match self.commit(model) {
                Ok(report) => info!(?report, "backend MACs changed; maps updated"),
                Err(error) => warn!(%error, "updating the maps after a MAC change failed"),
            }
        }
    }

    /// Resolves the MACs of `model`'s backends that have none configured,
    /// waiting up to `timeout` for new ones. A MAC that vanished from the
    /// neighbour table is kept until another shows up.
    pub(crate) async fn resolve_macs(&mut self, model: &Model, timeout: Duration) {
        // Only DSR at L2 sends to a backend's MAC; routed modes use the FIB.
        let wanted: Vec<IpAddr> = model
            .vips
            .values()
            .filter(|v| v.config.forwarding == lb_common::Mode::DsrL2)
            .flat_map(|v| v.backends.values())
            .filter(|b| b.config.mac.is_none())
            .map(|b| b.config.address)
            .collect();
        match self
            .netlink
            .resolve(self.interface.index, &wanted, timeout)
            .await
        {
            Ok(found) => self.macs.extend(found),
            Err(error) => warn!(%error, "reading the neighbour table failed"),
        }
        if timeout > Duration::ZERO {
            for address in wanted.iter().filter(|a| !self.macs.contains_key(a)) {
                warn!(%address, "backend MAC unknown (no neighbour entry): it takes no traffic until it resolves");
            }
        }
    }

    /// Waits briefly for the MACs of backends just added.
    pub(crate) async fn resolve_new(&mut self, model: &Model) {
        self.resolve_macs(model, RUNTIME_RESOLVE_TIMEOUT).await;
    }

    /// The MAC frames to `address` go to, if known.
    pub(crate) fn mac_of(&self, address: IpAddr) -> Option<[u8; 6]> {
        self.macs.get(&address).copied()
    }

    /// Ends drains whose deadline passed: their remaining flows are cut
    /// (the backend goes to maintenance).
    pub(crate) fn expire_drains(&mut self, now: Instant) {
        let mut next = self.model.clone();
        let expired = next.expire_drains(now);
        if expired.is_empty() {
            return;
        }
        for (vip, backend) in &expired {
            info!(%vip, %backend, "drain timeout: remaining flows cut, backend in maintenance");
        }
        if let Err(error) = self.commit(next) {
            warn!(%error, "ending expired drains failed");
        }
    }

    /// Flows in the connection table per backend id, split into live,
    /// closing and idle, the number of entries in the table, and of them
    /// the TCP handshakes (`FLOW_F_HALF_OPEN`).
    pub(crate) fn flow_counts(&self) -> (HashMap<u32, FlowCount>, u64, u64) {
        let timeouts = IdleTimeouts {
            tcp: self.config.tcp_idle_timeout,
            udp: self.config.udp_idle_timeout,
        };
        let now = crate::clock::monotonic_ns();
        let generations: HashMap<u32, u32> = self
            .balancer
            .vips()
            .values()
            .flat_map(|v| v.backends.values())
            .map(|b| (b.id, b.generation))
            .collect();
        let mut counts: HashMap<u32, FlowCount> = HashMap::new();
        let mut entries = 0u64;
        let mut handshakes = 0u64;
        for (key, entry) in self.dataplane.flows() {
            entries += 1;
            handshakes += u64::from(entry.flags & FLOW_F_HALF_OPEN != 0);
            if generations.get(&entry.backend_id) != Some(&entry.backend_generation) {
                continue; // a removed backend's leftover
            }
            let count = counts.entry(entry.backend_id).or_default();
            // A handshake (its SYN in the table, no ACK yet) is live for
            // the half-open timeout, then idle: an abandoned SYN does not
            // hold a drain for the connection's idle timeout.
            let idle_limit = if entry.flags & FLOW_F_HALF_OPEN != 0 {
                super::flow::HALF_OPEN_TIMEOUT
            } else if key.proto == IPPROTO_UDP {
                timeouts.udp
            } else {
                timeouts.tcp
            };
            let silent = Duration::from_nanos(now.saturating_sub(entry.last_seen_ns));
            if entry.flags & (FLOW_F_FIN | FLOW_F_RST) != 0 {
                count.closing += 1;
            } else if silent
                > idle_limit + Duration::from_nanos(lb_common::consts::FLOW_TOUCH_INTERVAL_NS)
            {
                count.idle += 1;
            } else {
                count.live += 1;
            }
        }
        (counts, entries, handshakes)
    }

    /// Sets each VRRP instance's priority from what this node can serve:
    /// less when the program is not attached, when the interface is down,
    /// and for each of the instance's VIPs that has no healthy backend.
    pub(crate) fn track(&self) {
        for instance in &self.vrrp {
            let config = instance.config();
            if config.priority == 255 {
                continue; // the address owner's priority is fixed
            }
            let mut lost: u32 = 0;
            if !self.dataplane.is_attached() {
                lost += u32::from(config.track_dataplane);
            }
            if !self.interface_up {
                lost += u32::from(config.track_interface);
            }
            let unserved = self
                .model
                .vips
                .iter()
                .filter(|(id, vip)| {
                    config.addresses.contains(&id.address)
                        && vip.config.on_all_down == AllDown::Drop
                        && (vip.all_down() || vip.backends.is_empty())
                })
                .count();
            lost += u32::try_from(unserved)
                .unwrap_or(u32::MAX)
                .saturating_mul(config.track_no_backend.into());
            let effective = u32::from(config.priority)
                .saturating_sub(lost)
                .clamp(1, 254);
            instance.set_priority(u8::try_from(effective).unwrap_or(1));
        }
    }

    /// Whether this node should serve: master of some instance, or no
    /// VRRP at all.
    pub(crate) fn is_master(&self) -> bool {
        self.vrrp.is_empty() || self.vrrp.iter().any(Instance::is_master)
    }

    /// Checks the interface's link for tracking.
    pub(crate) async fn check_link(&mut self) {
        match self.netlink.link_is_up(self.interface.index).await {
            Ok(up) => {
                if up != self.interface_up {
                    warn!(interface = %self.interface.name, up, "interface link changed");
                    self.interface_up = up;
                }
            }
            Err(error) => warn!(%error, "reading the interface's link state failed"),
        }
    }

    /// Logs an event the data plane reported, naming the VIP, and acts on
    /// the routed ones (see `nat`).
    pub(crate) fn on_dataplane_event(&mut self, event: &lb_common::DataplaneEvent) {
        let vip = self
            .balancer
            .vips()
            .iter()
            .find(|(_, v)| v.id == event.vip_id)
            .map_or_else(
                || format!("VIP id {}", event.vip_id),
                |(id, _)| id.to_string(),
            );
        if self.on_nat_event(event, &vip) {
            return;
        }
        let client = crate::reconcile::words_addr(event.flow.src, event.flow.family);
        let port = u16::from_be(event.flow.sport);
        match event.kind {
            lb_common::consts::EVENT_NO_BACKEND => warn!(
                %vip, %client, port, "data plane: packet for a VIP with no live backend dropped (at most one such log a second per CPU; see lbd_packets_total{{reason=\"no_backend\"}})"
            ),
            lb_common::consts::EVENT_CONNTRACK_INSERT_FAILED => warn!(
                %vip, %client, port, "data plane: the connection table refused a flow (forwarded by hash only)"
            ),
            other => warn!(kind = other, %vip, "data plane: unknown event"),
        }
    }

    /// Replication tick: a sending node (a pair's master, every node of
    /// a full mesh) sends its recent flows.
    pub(crate) fn sync_tick(&mut self) {
        let master = self.is_master();
        if let Some(replication) = &mut self.replication {
            if replication.topology().sends(master) {
                replication.tick(&self.dataplane, &self.balancer);
            }
        }
    }

    /// Counts flows from a peer and installs them when this node installs
    /// (a pair's backup: the master's own table is the truth; every node
    /// of a full mesh).
    pub(crate) fn on_sync(&mut self, batch: &ReceivedBatch) {
        let master = self.is_master();
        if let Some(replication) = &mut self.replication {
            replication.received(batch);
            if replication.topology().installs(master) {
                replication.install(batch, &mut self.dataplane, &self.balancer);
            }
        }
    }

    /// Hands the VIPs over (VRRP priority 0), stops checks and detaches the
    /// program.
    pub async fn shutdown(mut self, stop: Stop) -> anyhow::Result<Released> {
        for instance in std::mem::take(&mut self.vrrp) {
            match stop {
                Stop::Restart => instance.abandon().await,
                Stop::Clean => instance.stop().await,
            }
        }
        if stop == Stop::Clean {
            self.withdraw_announcements().await;
        }
        self.replication = None;
        self.checker.retain(|_| false);
        // Checks stop with lbd: so does their path (the next lbd puts it
        // back at once if it needs it).
        self.detach_hc_encap();
        self.restore_accept_local();
        Ok(match stop {
            Stop::Restart => self.dataplane.release()?,
            Stop::Clean => {
                // The node as it was found: a restart keeps it on, as NAT'd
                // flows keep being forwarded by the pinned data plane.
                self.restore_forwarding();
                self.dataplane.detach()?;
                Released::Detached
            }
        })
    }
}

/// A configured VRRP instance at start-up: started at once because it
/// resumes mastership, or still to start (once the data plane serves),
/// with its state file.
enum VrrpStart {
    /// Started before the data plane loaded.
    Resumed(Box<Instance>),
    /// To start last.
    Later(Option<PathBuf>),
}

/// Where a VRRP instance records its state for the next lbd: beside the
/// admin socket (a tmpfs such as /run/lbd, gone at reboot), e.g.
/// `/run/lbd/lbd.vrrp-51-v4.state`.
pub(crate) fn vrrp_state_file(
    config: &Config,
    vrrp: &crate::config::VrrpConfig,
) -> Option<PathBuf> {
    let family = match vrrp.addresses.first() {
        Some(IpAddr::V6(_)) => "v6",
        _ => "v4",
    };
    // Named after the admin socket too: one per lbd even where several
    // share a directory.
    let stem = config.admin_socket.file_stem()?.to_string_lossy();
    config
        .admin_socket
        .parent()
        .map(|dir| dir.join(format!("{stem}.vrrp-{}-{family}.state", vrrp.vrid)))
}

/// How lbd stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// For a restart or an upgrade (SIGTERM): the program stays attached
    /// and pinned, the connection table stays, VRRP sends no step-down and
    /// the VIPs stay (the next lbd resumes mastership if it comes back
    /// within the master-down interval; the systemd unit removes the VIPs
    /// with `lbd --release-vips` so a node that stays down answers no ARP).
    Restart,
    /// For good (SIGINT, e.g. Ctrl-C): VRRP steps down (priority 0), the
    /// VIPs go, the program is detached and every pin removed.
    Clean,
}

/// Backends the adopted data plane had marked dead start as down: a
/// restart must not send traffic to a backend the last lbd took out, until
/// its checks pass `rise` times.
fn seed_health(model: &mut Model, balancer: &Balancer) {
    let mut down = Vec::new();
    for (id, applied) in balancer.vips() {
        let Some(vip) = model.vips.get(id) else {
            continue;
        };
        for (address, backend) in &applied.backends {
            let checked = vip.backends.get(address).is_some_and(|b| {
                let health = b.config.health.as_ref().unwrap_or(&vip.config.health);
                check_of(*address, id.port, health, None).is_some()
            });
            // A DSR backend without a MAC was not alive for want of it;
            // routed backends need none.
            let resolved = backend.mac.is_some() || applied.mode != lb_common::Mode::DsrL2;
            if checked && !backend.alive && resolved {
                down.push((*id, *address));
            }
        }
    }
    for (id, address) in down {
        model.set_health(&id, address, crate::health::Health::Down);
    }
}

/// The probe target and settings of a backend's checks (None: unchecked);
/// `through` (the VIP's address and the tunnel) sends them to the VIP
/// through the backend's tunnel instead of to the backend's address.
pub(crate) fn check_of(
    address: IpAddr,
    vip_port: u16,
    health: &HealthConfig,
    through: Option<(IpAddr, crate::health::TunnelPath)>,
) -> Option<(ProbeTarget, CheckSettings)> {
    let kind = match health.check {
        CheckType::None => return None,
        CheckType::Tcp => CheckKind::Tcp,
        CheckType::Http => CheckKind::Http {
            path: health.path.clone(),
            host: health.host.clone(),
            expect_status: health.expect_status,
        },
    };
    let port = health.port.unwrap_or(vip_port);
    let target = match through {
        None => ProbeTarget {
            address: SocketAddr::new(address, port),
            kind,
            through: None,
        },
        Some((vip, path)) => ProbeTarget {
            address: SocketAddr::new(vip, port),
            kind,
            through: Some(path),
        },
    };
    let settings = CheckSettings {
        interval: health.interval,
        fast_interval: health.fast_interval,
        timeout: health.timeout,
        rise: health.rise,
        fall: health.fall,
    };
    Some((target, settings))
}

/// The host name, to name this node to its replication peer.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "lbd".to_owned())
}
