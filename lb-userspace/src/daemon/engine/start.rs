//! Start-up: load (or adopt) the data plane, fill it from the config,
//! attach it, then start replication and VRRP, in the order that keeps a
//! restarting master's VIPs and flows.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::Context as _;
use lb_common::consts::MAX_VIPS_DEFAULT;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    admin_state, check_of, macs::INITIAL_RESOLVE_TIMEOUT, nat, node, running_state, tunnel,
    BackendKey, Engine, EngineEvents,
};
use crate::{
    config::{Attach, Config, VrrpConfig},
    daemon::replication::Replication,
    dataplane::{Dataplane, Hooked, IdleHorizons, LeftHook, LoadOptions, MapSizes, Translating},
    health::HealthChecker,
    model::Model,
    netlink::{Interface, Netlink},
    pinning::PinDir,
    reconcile::Balancer,
    vrrp::driver::{wait_for_notifies, Instance, Prepared, NOTIFY_GRACE},
};

/// Room for VIPs added at run time beyond those in the file.
const SPARE_VIPS: u32 = 16;

/// How many VIPs the maps are loaded for. A size a previous lbd pinned is
/// kept whenever it still holds the file's VIPs: the VIP-sized maps
/// (`VIPS`, `MAGLEV`, ...) then fit, so the state maps and the connection
/// and NAT tables are adopted. A new size would start them all afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VipSizing {
    /// Nothing pinned: room for the file's VIPs and [`SPARE_VIPS`] more.
    New(u32),
    /// The pinned size, which holds the file's VIPs (`wanted`: what a
    /// fresh start would size, possibly more).
    Kept { size: u32, wanted: u32 },
    /// The pinned size cannot hold the file's VIPs: the maps are made
    /// anew at `size`, and the pinned state is lost.
    Grown { pinned: u32, size: u32 },
}

impl VipSizing {
    /// The sizing for `file_vips` VIPs in the file and a `VIPS` map of
    /// `pinned` entries left by a previous lbd (None: none).
    fn decide(file_vips: u32, pinned: Option<u32>) -> Self {
        let wanted = MAX_VIPS_DEFAULT.max(file_vips.saturating_add(SPARE_VIPS));
        match pinned {
            None => Self::New(wanted),
            Some(size) if size >= file_vips.max(1) => Self::Kept { size, wanted },
            Some(pinned) => Self::Grown {
                pinned,
                size: wanted,
            },
        }
    }

    /// The number of VIPs the maps are loaded for.
    fn size(self) -> u32 {
        match self {
            Self::New(size) | Self::Kept { size, .. } | Self::Grown { size, .. } => size,
        }
    }

    /// Says in the log what a kept size leaves for run-time VIPs, or that
    /// growing the maps loses the connection table.
    fn log(self, file_vips: u32) {
        match self {
            Self::New(_) => {}
            Self::Kept { size, wanted } if size < wanted => warn!(
                capacity = size,
                file_vips,
                spare = size.saturating_sub(file_vips),
                "keeping the pinned maps' VIP capacity so the connection table is adopted: \
                 room for fewer VIPs added at run time than a fresh start leaves; to grow it, \
                 stop lbd, run `lbd --cleanup` and start it again (established flows are then \
                 placed by Maglev again and NAT'd connections are lost)"
            ),
            Self::Kept { .. } => {}
            Self::Grown { pinned, size } => warn!(
                pinned,
                capacity = size,
                file_vips,
                "the file's VIPs do not fit the pinned maps: making them anew with room for more; \
                 the connection table and the NAT flow table are not adopted (established flows \
                 are placed by Maglev again, NAT'd connections are lost)"
            ),
        }
    }
}

impl Engine {
    /// Loads the data plane, fills it from `config` and attaches it.
    /// Returns the engine and the stream of health transitions.
    /// `previous`: the lbd that ran before this one, as its record of what
    /// it held names it (None: no record of this boot).
    pub(crate) async fn start(
        config_path: &Path,
        config: Config,
        previous: Option<running_state::Writer>,
    ) -> anyhow::Result<(Self, EngineEvents)> {
        // Generic XDP with NAT or tunnelled VIPs is refused before
        // anything is touched (see `dataplane::hook_choice`); `auto`
        // decides at the attach.
        // The runtime changes a previous lbd recorded (VIPs, backends and
        // guards changed through the API), kept while the config file is
        // the one they were made on: the start serves them, so a backend
        // added at run time keeps its flows (see `running_state`).
        // Only the record the lbd that ran last wrote: another build that
        // keeps none may have run since (see `running_state`).
        let (config, running) =
            running_state::RunningRecord::load(config_path, config, previous.as_ref());
        // The backends' drains and maintenance a previous lbd recorded,
        // before anything is touched: a file that cannot be trusted
        // stops the start here (see `admin_state`).
        let admin = admin_state::AdminRecord::load(&config, previous.as_ref())?;
        // The maps a previous start staged and did not pin under their
        // names (it stopped between its program swap and that), pinned or
        // removed before the pins decide the VIP capacity and the resume:
        // both read this one capacity.
        let pinned_vips = pinned_vip_capacity(&config)?;
        let netlink = Netlink::connect()?;
        let interface = netlink.interface(&config.interface).await?;
        // A restart that resumes mastership speaks first: the backup's
        // master-down timer has run since the last lbd's last advert, and
        // the rest of the start (the verifier, neighbour resolution) may
        // take longer than what is left of it. The pinned program forwards
        // meanwhile. Instances that do not resume start last, once the data
        // plane serves: they may become master.
        // If the start fails after that, the resumed instances step down
        // (priority 0, addresses released, state "stopped"): the backup
        // takes over at once, and a restart loop does not resume a node
        // that cannot serve, resetting the backup's timer each time.
        // Every instance's start-up checks (its addresses are not the
        // interface's own, the interface has an address to speak from) run
        // here, before anything is loaded or attached: a refused instance
        // leaves a fresh node as it was found.
        // A resume also needs the interface to run the program the last
        // lbd left forwarding, not only its pins: a device re-created
        // meanwhile (a new index) or a link detached runs none, and the
        // VIPs taken now would meet no program until the attach.
        let mut vrrp_starts = Vec::with_capacity(config.vrrp.len());
        let adoptable = pinned_dataplane_fits(&config, pinned_vips);
        let left = match &config.pin_dir {
            Some(dir) if adoptable && !config.vrrp.is_empty() => {
                crate::dataplane::left_hook(&PinDir::new(dir), &interface, &netlink).await
            }
            _ => LeftHook::Nothing,
        };
        for vrrp in &config.vrrp {
            let state_file = vrrp_state_file(&config, vrrp);
            let resumes = resumes_mastership(vrrp, state_file.as_deref(), adoptable, &left);
            let started = match Instance::prepare(vrrp.clone(), &config, &interface, &netlink).await
            {
                Ok(prepared) if resumes => Instance::start(
                    prepared,
                    &interface,
                    netlink.clone(),
                    state_file,
                    true,
                    false,
                )
                .await
                .map(|instance| VrrpStart::Resumed(Box::new(instance))),
                Ok(prepared) => Ok(VrrpStart::Later(Box::new(prepared), state_file)),
                Err(error) => Err(error),
            };
            match started {
                Ok(start) => vrrp_starts.push(start),
                Err(error) => {
                    stop_resumed(&mut vrrp_starts).await;
                    return Err(error);
                }
            }
        }
        let started = Self::start_serving(
            config_path,
            config,
            (admin, running),
            netlink,
            interface,
            pinned_vips,
            &mut vrrp_starts,
        )
        .await;
        if started.is_err() {
            stop_resumed(&mut vrrp_starts).await;
        }
        started
    }

    /// [`Self::start`] once the resuming VRRP instances run: the data
    /// plane, then replication and the other instances. `pinned_vips`:
    /// the pinned VIP capacity the resume was decided by
    /// ([`pinned_vip_capacity`]). Takes the instances it keeps out of
    /// `vrrp_starts`; on error, those it started are stopped and the rest
    /// are left to the caller.
    async fn start_serving(
        config_path: &Path,
        config: Config,
        (mut admin, running_record): (admin_state::AdminRecord, running_state::RunningRecord),
        netlink: Netlink,
        interface: Interface,
        pinned_vips: Option<u32>,
        vrrp_starts: &mut [VrrpStart],
    ) -> anyhow::Result<(Self, EngineEvents)> {
        let file_vips = u32::try_from(config.vips.len()).unwrap_or(u32::MAX);
        let pins = config.pin_dir.clone().map(PinDir::new);
        let vip_sizing = VipSizing::decide(file_vips, pinned_vips);
        vip_sizing.log(file_vips);
        let sizes = MapSizes {
            max_vips: vip_sizing.size(),
            conntrack: config.conntrack_size,
            nat_flows: config.nat.flow_table_size,
            half_open: config.half_open_size,
        };
        let options = LoadOptions {
            pins,
            ..LoadOptions::default()
        };
        // The idle horizons the connection table judges flows by (a SYN
        // on an idle tuple, a UDP flow's next packet, eviction), written
        // before the load carries a previous lbd's flows over (a smaller
        // table keeps the live ones first).
        let horizons = IdleHorizons {
            tcp: config.tcp_idle_timeout,
            udp: config.udp_idle_timeout,
        };
        // What runs at every hook is read before the load, whichever hook
        // this lbd attaches at: with what the load adopts, it says whether
        // this node is a fresh one (`fresh_node`), which a start that
        // fails from the load on puts back as it was. A previous lbd's
        // program at the other hook (`attach` switched, the state maps not
        // adopted) goes once this one runs (`serve`), and a start that
        // failed then and took everything away would leave the node, which
        // had a data plane, with none.
        let running = netlink
            .xdp_program(interface.index)
            .await
            .context("reading the interface's XDP program")?;
        let tcx = crate::dataplane::tcx_ingress_programs(&interface.name);
        let found = FoundHooks {
            xdp: running.is_some(),
            tcx: !tcx.is_empty(),
            cls_bpf: lbd_filter_found(interface.index).await,
        };
        // A load that fails removes the pins it made itself (see
        // `Dataplane::load_with_horizons`).
        let mut dataplane = Dataplane::load_with_horizons(sizes, &options, horizons)
            .context("loading the data plane")?;
        let fresh = fresh_node(dataplane.adopted(), found);
        // On a fresh node the load pinned every map under its name: a
        // failure from here to the engine takes them away again, or the
        // next start would adopt them and no longer see a fresh node.
        let read = async {
            if !dataplane.adopted() {
                demote_resumed(vrrp_starts, &config, &interface, &netlink).await?;
            }
            let adopted = dataplane
                .adopted_state()
                .context("reading the pinned data plane")?;
            // The flags a previous lbd wrote stay until the first apply
            // decides them: NAT'd replies keep being translated across a
            // restart.
            dataplane.set_iface_mac(interface.mac)?;
            let guard = crate::guard::Guard::adopt(dataplane.guard(), config.guard.clone())
                .context("reading the pinned deny/allow lists")?;
            anyhow::Ok((adopted, guard))
        }
        .await;
        let (adopted, mut guard) = match read {
            Ok(read) => read,
            Err(error) => {
                if fresh {
                    remove_fresh_dataplane(&mut dataplane);
                }
                return Err(error);
            }
        };
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
        admin.restore(&mut model, Instant::now());
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
        let adopted_macs: HashMap<IpAddr, [u8; 6]> = balancer.backend_macs().into_iter().collect();
        let node = node::NodeRuntime::start(&config, dataplane.adopted(), Instant::now());
        if dataplane.adopted() {
            // `VIP_GUARDS` may have been made afresh under adopted flows.
            guard.clear_of_marks(dataplane.flows().map(|(_, entry)| entry.flags));
        }
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
            link_watch: super::tracking::LinkWatch::default(),
            tables_rebuilt: 0,
            reloads: Default::default(),
            metrics,
            netlink,
            // A DSR-L2 backend keeps the MAC the adopted maps hold until
            // the neighbour table says otherwise.
            macs: adopted_macs,
            nat: nat::NatRuntime::default(),
            tunnel: tunnel::TunnelRuntime::default(),
            node,
            admin,
            running: running_record,
            guard,
            flood: crate::flood::FloodWatch::new(config.flood),
            stepped_down: Vec::new(),
            lent_census: None,
            fresh_start: fresh,
            config,
        };
        // Nothing of a previous lbd to keep (`fresh`): a start that fails
        // from here on (the fill, which may switch forwarding on, or the
        // attach) takes everything away again, as one that fails after
        // the attach does.
        let attached = async {
            // The outer sources a previous lbd took from the interface
            // stay while it holds them (its program runs until the swap
            // below).
            engine.keep_adopted_sources();
            engine.read_own_addresses().await;
            for warning in engine.held_address_warnings(&engine.config).await {
                warn!("config: {warning}");
            }
            let node_tunnel = engine.node_tunnel(&engine.config.tunnel);
            engine.balancer.set_tunnel(node_tunnel);
            engine.resolve_macs(&model, INITIAL_RESOLVE_TIMEOUT).await;
            // Adopted: the previous lbd's program serves this commit until
            // the swap, and reads its own (unpinned) `TUNNEL_CONFIG`, to
            // which the commit writes these settings too (see
            // `Dataplane::set_previous_tunnel_configs`).
            // Checks through a tunnel need `tc_hc_encap`: verified here,
            // before the first commit and the swap, so a new build whose
            // program this kernel refuses fails its start while the
            // previous lbd's program keeps forwarding (see `hc_load`).
            engine.load_hc_program_for_start(&model)?;
            let report = engine.commit(model).context("filling the data plane")?;
            info!(?report, "maps filled");
            // The record as this start runs: removed when it runs the
            // file, rewritten when it ran on a record.
            engine.follow_running();
            engine.prepare_routing().await;
            engine.hooked = match engine.config.attach {
                // `auto` may end at tc (see `dataplane::hook_choice`),
                // taking over the tc link a previous lbd left there.
                Attach::Xdp => engine.dataplane.attach(
                    &engine.interface.name,
                    engine.config.xdp_mode,
                    running,
                    &Translating::of(&engine.config.vips),
                )?,
                Attach::Tc => engine.dataplane.attach_tc(&engine.interface.name, &tcx)?,
            };
            anyhow::Ok(())
        }
        .await;
        if let Err(error) = attached {
            if fresh {
                engine.undo_fresh_start();
            }
            return Err(error);
        }
        match engine.serve(vrrp_starts).await {
            Ok(sync) => Ok((
                engine,
                EngineEvents {
                    health: events_rx,
                    sync,
                },
            )),
            Err(error) => {
                if fresh {
                    engine.undo_fresh_start();
                }
                Err(error)
            }
        }
    }

    /// The rest of [`Self::start_serving`] once the program is attached:
    /// the hooks previous lbds left go, then replication and VRRP start.
    /// Returns the replication's stream of received batches, if any.
    async fn serve(
        &mut self,
        vrrp_starts: &mut [VrrpStart],
    ) -> anyhow::Result<Option<mpsc::Receiver<crate::sync::ReceivedBatch>>> {
        let engine = self;
        // A switch of `attach` across a restart: the hook the previous lbd
        // used goes, now that this one runs. The hook this one runs, which
        // is tc where `xdp_mode = "auto"` could not use generic XDP (see
        // `dataplane::hook_choice`): a previous lbd's XDP link goes then.
        engine
            .dataplane
            .remove_other_hook(&engine.interface.name, engine.hooked.attach())?;
        // A change of `interface` across a restart: the links a previous
        // lbd pinned on another interface go, or the program there would
        // go on forwarding with this lbd's maps.
        engine
            .dataplane
            .remove_other_interfaces(&engine.interface.name)?;
        engine.remove_left_tc_filters().await;
        // Only now does no previous lbd's program change the tables this
        // one carries flows over from: their final copy.
        engine.dataplane.finish_adoption();
        let mut sync_rx = None;
        let node_id = crate::daemon::replication::pair_node_id(&hostname(), &engine.interface.name);
        if let Some(settings) = engine.config.sync.clone() {
            let node_id = crate::daemon::replication::mesh_node_id(
                settings.listen,
                &hostname(),
                &engine.interface.name,
            );
            let (replication, rx) = Replication::start_mesh(&settings, &node_id).await?;
            engine.replication = Some(replication);
            sync_rx = Some(rx);
        }
        if let Err(error) = engine.start_vrrp(vrrp_starts, &node_id, &mut sync_rx).await {
            let instances = std::mem::take(&mut engine.vrrp);
            let notifies: Vec<_> = instances.iter().map(Instance::notifies).collect();
            for instance in instances {
                instance.stop().await;
            }
            // lbd exits next: the "stopped" commands are let finish.
            wait_for_notifies(&notifies, NOTIFY_GRACE).await;
            return Err(error);
        }
        engine.track();
        Ok(sync_rx)
    }

    /// Puts a node this lbd found without a data plane back as it was,
    /// after its start failed once the data plane was loaded (the fill,
    /// the attach, a VRRP socket that would not open): the program
    /// detached and its pins removed, forwarding and `accept_local` as
    /// they were, so a service manager's retries do not leave a program
    /// forwarding for no lbd, nor pins the next start would adopt (it
    /// would take the node for one with a data plane, and leave it on
    /// when it failed).
    fn undo_fresh_start(&mut self) {
        self.replication = None;
        self.checker.retain(|_| false);
        self.detach_hc_encap();
        self.restore_accept_local();
        self.restore_forwarding();
        remove_fresh_dataplane(&mut self.dataplane);
    }

    /// Removes the cls_bpf filters a dead lbd left on the interface's
    /// ingress (`attach = "tc"` on a kernel without tcx), now that this
    /// lbd's hook runs; this lbd's own filter, if it attached through
    /// cls_bpf too, stays. A failure is logged: the stale filter only runs
    /// on what this lbd's program lets through.
    async fn remove_left_tc_filters(&mut self) {
        let keep = match self.hooked {
            Hooked::TcClsBpf => self
                .dataplane
                .tc_program()
                .ok()
                .and_then(|program| program.info().ok())
                .map(|info| info.id()),
            Hooked::Xdp(_) | Hooked::Tcx => None,
        };
        if let Err(error) = crate::ownership::cls_bpf::remove_left_filters(
            &self.interface.name,
            self.interface.index,
            keep,
        )
        .await
        {
            tracing::warn!(error = %format!("{error:#}"), "removing the tc filters a previous lbd left failed; `tc filter show dev {} ingress` lists them", self.interface.name);
        }
    }

    /// Steps down from every VRRP instance, `why` said in the log: for a
    /// start of lbd that fails after [`Self::start`] returned (which may
    /// have resumed mastership, see [`Self::fail_start`]), or a node that
    /// lost its interface: priority 0, so the backup takes over now, the
    /// addresses released and "stopped" recorded, so the next lbd (of a
    /// restart loop, or started again on the interface) does not resume.
    /// The "stopped" notify commands are kept (see `stepped_down`): they
    /// run on with lbd, and its exit waits for them.
    pub(crate) async fn step_down(&mut self, why: &str) {
        for instance in std::mem::take(&mut self.vrrp) {
            tracing::warn!(vrid = instance.config().vrid, "{why}; stepping down");
            self.stepped_down.push(instance.notifies());
            instance.stop().await;
        }
    }

    /// A start of lbd that failed after [`Self::start`] returned (the
    /// metrics listener, the privilege drop): steps down from VRRP (see
    /// [`Self::step_down`]) and lets the "stopped" commands finish, since
    /// lbd exits next; on a node this lbd found without a data plane, also
    /// detaches the program and removes its pins, as a start that fails
    /// inside [`Self::start`] does, so a service manager's retries do not
    /// adopt a program that forwards for no lbd.
    pub(crate) async fn fail_start(&mut self, why: &str) {
        self.step_down(why).await;
        let notifies = std::mem::take(&mut self.stepped_down);
        wait_for_notifies(&notifies, NOTIFY_GRACE).await;
        if self.fresh_start {
            self.undo_fresh_start();
        }
    }

    /// Starts replication and the VRRP instances in `vrrp_starts` that do
    /// not run yet, and keeps them all in `self.vrrp`.
    async fn start_vrrp(
        &mut self,
        vrrp_starts: &mut [VrrpStart],
        node_id: &str,
        sync_rx: &mut Option<mpsc::Receiver<crate::sync::ReceivedBatch>>,
    ) -> anyhow::Result<()> {
        for (vrrp, start) in self.config.vrrp.clone().into_iter().zip(vrrp_starts) {
            if self.replication.is_none() {
                if let Some((replication, rx)) = Replication::start_pair(&vrrp, node_id).await? {
                    self.replication = Some(replication);
                    *sync_rx = Some(rx);
                }
            }
            let instance = match std::mem::replace(start, VrrpStart::Taken) {
                VrrpStart::Resumed(instance) => *instance,
                VrrpStart::Later(prepared, state_file) => {
                    Instance::start(
                        *prepared,
                        &self.interface,
                        self.netlink.clone(),
                        state_file,
                        false,
                        // Replication with the peer: preempt only once its
                        // flows are here (any instance may carry it).
                        self.config.vrrp.iter().any(|v| v.sync_peer.is_some()),
                    )
                    .await?
                }
                VrrpStart::Taken => continue,
            };
            self.vrrp.push(instance);
        }
        Ok(())
    }
}

/// What ran on the interface when this lbd came to attach, at every hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FoundHooks {
    /// An XDP program.
    xdp: bool,
    /// Programs on the tcx ingress.
    tcx: bool,
    /// lbd's tc program as a cls_bpf filter on the ingress (a previous
    /// lbd's on a kernel without tcx), or the filters could not be listed.
    cls_bpf: bool,
}

/// Whether this start found a fresh node, which a start that fails after
/// its load puts back as it was (`Engine::undo_fresh_start`): nothing
/// was adopted and no program ran at any hook, whichever hook this lbd
/// attaches at (both read before the load pins anything). A previous lbd's program is a data plane the node keeps
/// forwarding on for the next lbd.
fn fresh_node(adopted: bool, found: FoundHooks) -> bool {
    !adopted && !found.xdp && !found.tcx && !found.cls_bpf
}

/// Detaches the program, if attached, and removes the pins of a data
/// plane this lbd loaded on a fresh node (see [`fresh_node`]) whose start
/// failed: only those this start made, a previous lbd's stay as they
/// were. A failure is logged: lbd exits next, and `lbd --cleanup`
/// removes what is left.
fn remove_fresh_dataplane(dataplane: &mut Dataplane) {
    if let Err(error) = dataplane.detach_made_here() {
        tracing::warn!(error = %format!("{error:#}"), "removing the data plane after the failed start failed; `lbd --cleanup` removes it");
    }
}

/// Whether a previous lbd's tc program runs as a cls_bpf filter on the
/// ingress of interface `ifindex`. A failure to list the filters is
/// logged and taken for one: a node that may have a data plane is not
/// taken for a fresh one.
async fn lbd_filter_found(ifindex: u32) -> bool {
    use crate::ownership::cls_bpf;
    match cls_bpf::ingress_filters_of(ifindex).await {
        Ok(filters) => filters.iter().any(|f| cls_bpf::left_by_lbd(f, None)),
        Err(error) => {
            warn!(error = %format!("{error:#}"), "listing the tc filters on the interface's ingress failed: a start that fails after the attach leaves the node's data plane as it is");
            true
        }
    }
}

/// The capacity of the `VIPS` map pinned in `pin_dir` (None: `pin_dir` is
/// off, or holds none), read once what a previous start staged is
/// finished or undone (`dataplane::recovered_vip_capacity`): the VIP
/// sizing ([`VipSizing`]) and the resume ([`pinned_dataplane_fits`]) are
/// both decided by it, from the maps the load will find.
fn pinned_vip_capacity(config: &Config) -> anyhow::Result<Option<u32>> {
    let Some(dir) = &config.pin_dir else {
        return Ok(None);
    };
    crate::dataplane::recovered_vip_capacity(&PinDir::new(dir)).with_context(|| {
        format!(
            "recovering the maps a previous lbd staged in {}",
            dir.display()
        )
    })
}

/// Whether a previous lbd's data plane is pinned where this lbd will adopt
/// it: `pin_dir` is on and holds a `VIPS` map (of `pinned_vips` entries,
/// see [`pinned_vip_capacity`]) whose size holds the file's VIPs (see
/// [`VipSizing`]). Read before anything is loaded, for the resume
/// decision ([`resumes_mastership`]); the load may still refuse a pinned
/// map (its layout changed), which [`demote_resumed`] handles.
fn pinned_dataplane_fits(config: &Config, pinned_vips: Option<u32>) -> bool {
    if config.pin_dir.is_none() {
        return false;
    }
    let file_vips = u32::try_from(config.vips.len()).unwrap_or(u32::MAX);
    matches!(
        VipSizing::decide(file_vips, pinned_vips),
        VipSizing::Kept { .. }
    )
}

/// Whether VRRP instance `vrrp` resumes mastership at this start: its state
/// file says this node was master moments ago (see [`Instance::resumes`]),
/// a pinned data plane is there to adopt (`adoptable`, see
/// [`pinned_dataplane_fits`]), and the interface runs the program the
/// last lbd left forwarding on it (`left`, see `dataplane::left_hook`).
/// Without a data plane to adopt (`pin_dir = "off"`, the pins gone or not
/// fitting), the previous program and its flows went: resumed, this node
/// would hold the VIPs with an empty data plane while the peer, about to
/// take over, holds the replicated flows (NAT'd ones too). Without the
/// program running (the interface re-created meanwhile, its link
/// detached), the VIPs would be this node's, and local, with no program
/// in front of them until this start attaches: the kernel would reset
/// every connection, established ones too. Either way it starts as the
/// protocol says, as backup, as after a crash.
fn resumes_mastership(
    vrrp: &VrrpConfig,
    state_file: Option<&Path>,
    adoptable: bool,
    left: &LeftHook,
) -> bool {
    if !Instance::resumes(vrrp, state_file) {
        return false;
    }
    if !adoptable {
        warn!(
            vrid = vrrp.vrid,
            "VRRP: was master until moments ago, but there is no pinned data plane to adopt (pin_dir is off, or its pins are gone or do not fit, e.g. another release's layout): not resuming mastership, the peer takes over"
        );
        return false;
    }
    if !left.runs() {
        warn!(
            vrid = vrrp.vrid,
            why = %left,
            "VRRP: was master until moments ago, but the interface does not run the program the last lbd left forwarding: not resuming mastership; the instance starts once this lbd's program runs, as backup (the peer takes over)"
        );
        return false;
    }
    true
}

/// The instances that resumed mastership before a load that adopted no
/// pinned data plane after all (a pinned map's layout changed): they step
/// down (priority 0, so the peer, which holds the replicated flows, takes
/// over after its skew time; "stopped" recorded) and start again later as
/// the protocol says, as [`resumes_mastership`] would have decided. Their
/// "stopped" notify commands end before the instances start again, which
/// keeps the commands in order.
async fn demote_resumed(
    vrrp_starts: &mut [VrrpStart],
    config: &Config,
    interface: &Interface,
    netlink: &Netlink,
) -> anyhow::Result<()> {
    let mut notifies = Vec::new();
    let mut configs = Vec::new();
    for start in vrrp_starts.iter_mut() {
        if !matches!(start, VrrpStart::Resumed(_)) {
            continue;
        }
        if let VrrpStart::Resumed(instance) = std::mem::replace(start, VrrpStart::Taken) {
            warn!(
                vrid = instance.config().vrid,
                "resumed VRRP mastership, but the pinned data plane was not adopted (it starts empty): stepping down"
            );
            notifies.push(instance.notifies());
            configs.push((instance.config().clone(), start));
            instance.stop().await;
        }
    }
    wait_for_notifies(&notifies, NOTIFY_GRACE).await;
    for (vrrp, start) in configs {
        let state_file = vrrp_state_file(config, &vrrp);
        let prepared = Instance::prepare(vrrp, config, interface, netlink).await?;
        *start = VrrpStart::Later(Box::new(prepared), state_file);
    }
    Ok(())
}

/// Stops the instances that resumed mastership before a start that failed:
/// priority 0, so the backup takes over now, and "stopped" recorded, so
/// the next lbd does not resume.
async fn stop_resumed(vrrp_starts: &mut [VrrpStart]) {
    let mut notifies = Vec::new();
    for start in vrrp_starts {
        if let VrrpStart::Resumed(instance) = std::mem::replace(start, VrrpStart::Taken) {
            tracing::warn!(
                vrid = instance.config().vrid,
                "start-up failed after resuming VRRP mastership; stepping down"
            );
            notifies.push(instance.notifies());
            instance.stop().await;
        }
    }
    // lbd exits next: the "stopped" commands are let finish.
    wait_for_notifies(&notifies, NOTIFY_GRACE).await;
}

/// A configured VRRP instance at start-up: started at once because it
/// resumes mastership, or still to start (once the data plane serves),
/// with its state file.
enum VrrpStart {
    /// Started before the data plane loaded.
    Resumed(Box<Instance>),
    /// Checked, to start last.
    Later(Box<Prepared>, Option<PathBuf>),
    /// Taken: kept by the engine, or stopped.
    Taken,
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

/// Backends the adopted data plane had marked dead start as down: a
/// restart must not send traffic to a backend the last lbd took out, until
/// its checks pass `rise` times. A backend restored in maintenance (see
/// `admin_state`) was dead for that: its health is left to its checks,
/// and it awaits the first (`admin_state` marks it so), so an enable
/// before then gives it no new flows.
///
/// A VIP with `on_all_down = "keep"` whose backends were all alive may
/// have been failing open: the maps cannot tell a backend up from one
/// down but taking flows for that, and no file keeps health. Its checked
/// backends start unknown (taking flows, as they did) and held (see
/// [`crate::model::FailOpenHold`]): one whose first checks fail keeps its
/// established flows, taking no new ones, while the others settle,
/// rather than have them cut before the last backend's checks fail and
/// the VIP fails open again. A backend that passes is held no more; a
/// VIP of which one was dead was not failing open, and holds none.
///
/// A checked backend with no live entry in the adopted maps waits for
/// its first checks (see [`await_checks_of_backends_not_adopted`]).
pub(super) fn seed_health(model: &mut Model, balancer: &Balancer) {
    let mut down = Vec::new();
    let mut held = Vec::new();
    for (id, applied) in balancer.vips() {
        let Some(vip) = model.vips.get(id) else {
            continue;
        };
        let mut any_dead = false;
        let mut alive_checked = Vec::new();
        for (address, backend) in &applied.backends {
            let Some(known) = vip.backends.get(address) else {
                continue; // gone from the file: nothing to seed
            };
            let in_maintenance = known.admin == crate::model::AdminState::Maintenance;
            let health = known.config.health.as_ref().unwrap_or(&vip.config.health);
            let checked = !in_maintenance && check_of(*address, id.port, health, None).is_some();
            // A DSR backend without a MAC was not alive for want of it;
            // routed backends need none.
            let resolved = backend.mac.is_some() || applied.mode != lb_common::Mode::DsrL2;
            if !backend.alive && resolved && !in_maintenance {
                any_dead = true;
            }
            if checked && !backend.alive && resolved {
                down.push((*id, *address));
            }
            if checked && backend.alive {
                alive_checked.push((*id, *address));
            }
        }
        if vip.config.on_all_down == crate::config::AllDown::KeepLast && !any_dead {
            held.extend(alive_checked);
        }
    }
    for (id, address) in down {
        model.set_health(&id, address, crate::health::Health::Down);
    }
    for (id, address) in held {
        model.hold_as_if_failing_open(&id, address);
    }
    await_checks_of_backends_not_adopted(model, balancer);
}

/// A checked backend the adopted maps hold no live entry of (new to the
/// file, removed at run time before this start, or of a VIP the maps do
/// not have) has no established flows to keep while its first checks
/// run: it waits for them before it takes new flows, as a backend a
/// reload brings does (`Model::reloaded`), rather than take them at once
/// on an address that may be dead or given to another workload. Only on
/// an adopted start: a fresh start's backends all take flows at once.
fn await_checks_of_backends_not_adopted(model: &mut Model, balancer: &Balancer) {
    for (id, vip) in &mut model.vips {
        let adopted = balancer.vips().get(id);
        let vip_config = &vip.config;
        for (address, backend) in &mut vip.backends {
            if adopted.is_some_and(|applied| applied.backends.contains_key(address)) {
                continue;
            }
            if crate::model::is_checked(vip_config, &backend.config) {
                backend.awaiting_checks = true;
            }
        }
    }
}

/// The host name, to name this node to its replication peer.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "lbd".to_owned())
}

#[cfg(test)]
mod vip_sizing_tests {
    use super::*;

    #[test]
    fn a_first_start_leaves_spare_room() {
        assert_eq!(VipSizing::decide(0, None).size(), MAX_VIPS_DEFAULT);
        assert_eq!(VipSizing::decide(3, None).size(), 3 + SPARE_VIPS);
    }

    #[test]
    fn a_vip_added_to_the_file_keeps_the_pinned_size() {
        // A first start with 3 VIPs pinned 3 + SPARE_VIPS; the file has
        // gained one since: the pinned size still holds it, so the maps
        // (and the connection table) are adopted.
        let pinned = VipSizing::decide(3, None).size();
        let next = VipSizing::decide(4, Some(pinned));
        assert_eq!(
            next,
            VipSizing::Kept {
                size: pinned,
                wanted: 4 + SPARE_VIPS
            }
        );
        assert_eq!(next.size(), pinned);
        // Up to a file that fills it exactly.
        assert_eq!(VipSizing::decide(pinned, Some(pinned)).size(), pinned);
        // Fewer VIPs keep it too.
        assert_eq!(VipSizing::decide(1, Some(pinned)).size(), pinned);
    }

    #[test]
    fn only_a_file_that_does_not_fit_grows_the_maps() {
        let pinned = 3 + SPARE_VIPS;
        assert_eq!(
            VipSizing::decide(pinned + 1, Some(pinned)),
            VipSizing::Grown {
                pinned,
                size: pinned + 1 + SPARE_VIPS
            }
        );
    }
}

#[cfg(test)]
mod fresh_node_tests {
    use super::*;

    /// A node is fresh (a start that fails after its attach takes
    /// everything away again) only if nothing was adopted and no program
    /// ran at any hook, whichever hook this lbd attaches at (the caller
    /// reads them all): a previous lbd's XDP link where this one attaches
    /// at tc (`attach` switched, the state maps not adopted), or its
    /// cls_bpf filter where this one attaches at XDP, is a data plane to
    /// leave forwarding for the next lbd.
    #[test]
    fn a_node_is_fresh_only_without_a_program_at_either_hook() {
        let xdp = FoundHooks {
            xdp: true,
            ..FoundHooks::default()
        };
        let tcx = FoundHooks {
            tcx: true,
            ..FoundHooks::default()
        };
        let cls_bpf = FoundHooks {
            cls_bpf: true,
            ..FoundHooks::default()
        };
        assert!(fresh_node(false, FoundHooks::default()));
        assert!(!fresh_node(true, FoundHooks::default()), "adopted");
        for found in [xdp, tcx, cls_bpf] {
            assert!(!fresh_node(false, found), "{found:?}");
        }
    }
}

#[cfg(test)]
mod seed_health_tests {
    use super::*;
    use crate::{dataplane::FakeMaps, health::Health, model::Edit, reconcile::VipId};

    /// The previous lbd's maps: b2 down by its checks, b3 in maintenance
    /// (both dead there). The next lbd's model seeds b2 down; b3, restored
    /// in maintenance, is dead for that and keeps its health to its checks;
    /// without its restored state it would be seeded down too.
    #[test]
    fn dead_backends_start_down_but_not_for_maintenance() {
        let config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n\
             [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\n",
            "lbd.toml",
        )
        .unwrap();
        let id = VipId::of(&config.vips[0]);
        let [b1, b2, b3]: [IpAddr; 3] =
            ["198.18.0.11", "198.18.0.12", "198.18.0.13"].map(|a| a.parse().unwrap());
        let now = Instant::now();
        let mut before = Model::from_config(&config);
        before.set_health(&id, b2, Health::Down);
        before.apply(&Edit::Maintenance(id, b3), now).unwrap();
        let mut balancer = Balancer::new(4);
        balancer
            .apply(&mut FakeMaps::default(), &before.desired(&|_| None))
            .unwrap();

        let health = |model: &Model, b| model.backend(&id, b).unwrap().health;
        let mut restored = Model::from_config(&config);
        restored.apply(&Edit::Maintenance(id, b3), now).unwrap();
        seed_health(&mut restored, &balancer);
        assert_eq!(health(&restored, b1), Health::Unknown);
        assert_eq!(health(&restored, b2), Health::Down);
        assert_eq!(health(&restored, b3), Health::Unknown);

        let mut plain = Model::from_config(&config);
        seed_health(&mut plain, &balancer);
        assert_eq!(health(&plain, b3), Health::Down);
        assert_eq!(health(&plain, b1), Health::Unknown);
    }

    /// The previous lbd's "keep" VIP failed open (every backend down, all
    /// alive in its maps). After a hitless restart the backends start
    /// unknown; their checks settle one by one. The first to fail again
    /// keeps its established flows (alive) while the others are still
    /// unknown, instead of having them cut before the last one fails and
    /// the VIP fails open again; once all have failed, it fails open as
    /// before the restart. A "keep" VIP with a backend dead in the maps
    /// was not failing open: its backends are not held.
    #[test]
    fn a_restart_of_a_vip_failing_open_cuts_no_backends_flows_while_checks_settle() {
        let config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             on_all_down = \"keep\"\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n\
             [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\n",
            "lbd.toml",
        )
        .unwrap();
        let id = VipId::of(&config.vips[0]);
        let [b1, b2, b3]: [IpAddr; 3] =
            ["198.18.0.11", "198.18.0.12", "198.18.0.13"].map(|a| a.parse().unwrap());
        let alive = |model: &Model| -> Vec<bool> {
            model.desired(&|_| None)[0]
                .backends
                .iter()
                .map(|b| b.alive)
                .collect()
        };
        let mut before = Model::from_config(&config);
        for b in [b1, b2, b3] {
            before.set_health(&id, b, Health::Down);
        }
        let mut balancer = Balancer::new(4);
        balancer
            .apply(&mut FakeMaps::default(), &before.desired(&|_| None))
            .unwrap();
        assert_eq!(alive(&before), [true, true, true], "failing open");

        let mut restored = Model::from_config(&config);
        seed_health(&mut restored, &balancer);
        restored.set_health(&id, b1, Health::Down);
        assert_eq!(alive(&restored), [true, true, true], "b1's flows stay");
        restored.set_health(&id, b2, Health::Down);
        assert_eq!(alive(&restored), [true, true, true], "b2's flows stay");
        restored.set_health(&id, b3, Health::Down);
        assert_eq!(
            restored.desired(&|_| None),
            before.desired(&|_| None),
            "failing open as before the restart"
        );

        // b2 was up, b1 and b3 down: not failing open, nothing held.
        let mut not_open = Model::from_config(&config);
        not_open.set_health(&id, b1, Health::Down);
        not_open.set_health(&id, b3, Health::Down);
        let mut balancer = Balancer::new(4);
        balancer
            .apply(&mut FakeMaps::default(), &not_open.desired(&|_| None))
            .unwrap();
        let mut restored = Model::from_config(&config);
        seed_health(&mut restored, &balancer);
        assert!(restored
            .vip(&id)
            .unwrap()
            .backends
            .values()
            .all(|b| b.fail_open_hold.is_none()));
    }

    /// The previous lbd's maps hold VIP 198.18.0.100:80 with b1 only
    /// (b2 was removed at run time, or added to the file while lbd was
    /// down). The file brings b1 and b2 (checked) and a VIP the maps do
    /// not have: after `seed_health`, b2 and the new VIP's backend wait
    /// for their first checks, as a reload's new backends do; b1, which
    /// has flows to keep, takes new flows at once; an unchecked backend
    /// never waits. A fresh start (nothing adopted, no `seed_health`)
    /// keeps them all taking flows at once.
    #[test]
    fn a_backend_the_adopted_maps_lack_awaits_its_first_checks() {
        let config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n\
             [[vip.backend]]\naddress = \"198.18.0.14\"\nmac = \"02:00:00:00:00:14\"\n\
             health = { check = \"none\" }\n\
             [[vip]]\naddress = \"198.18.0.200\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.21\"\nmac = \"02:00:00:00:00:21\"\n",
            "lbd.toml",
        )
        .unwrap();
        let id = VipId::of(&config.vips[0]);
        let other = VipId::of(&config.vips[1]);
        let [b1, b2, b4, b21]: [IpAddr; 4] =
            ["198.18.0.11", "198.18.0.12", "198.18.0.14", "198.18.0.21"]
                .map(|a| a.parse().unwrap());
        let now = Instant::now();
        let mut before = Model::from_config(&config);
        before.apply(&Edit::RemoveBackend(id, b2), now).unwrap();
        before.apply(&Edit::RemoveBackend(id, b4), now).unwrap();
        before.apply(&Edit::RemoveVip(other), now).unwrap();
        let mut balancer = Balancer::new(4);
        balancer
            .apply(&mut FakeMaps::default(), &before.desired(&|_| None))
            .unwrap();

        let mut model = Model::from_config(&config);
        let waits =
            |model: &Model, vip: &VipId, b| model.backend(vip, b).unwrap().awaits_first_check();
        for (vip, b) in [(id, b1), (id, b2), (id, b4), (other, b21)] {
            assert!(
                !waits(&model, &vip, b),
                "a fresh start: {b} takes flows at once"
            );
        }
        seed_health(&mut model, &balancer);
        assert!(!waits(&model, &id, b1), "adopted with its flows");
        assert!(waits(&model, &id, b2), "no entry in the adopted maps");
        assert!(waits(&model, &other, b21), "of a VIP the maps do not have");
        assert!(!waits(&model, &id, b4), "unchecked");
        let weights: Vec<(IpAddr, u32)> = model.desired(&|_| None)[0]
            .backends
            .iter()
            .map(|b| (b.address, b.weight))
            .collect();
        assert_eq!(weights, vec![(b1, 100), (b2, 0), (b4, 100)]);
        model.set_health(&id, b2, Health::Up);
        assert!(!waits(&model, &id, b2), "its checks passed");
    }

    /// b3, in maintenance when the last lbd stopped (which may have known
    /// it down), is restored so from the backend state file; enabled at
    /// once (`maintenance --off`), it takes no new flow until a first
    /// check passes, and the answer says so; b1, unknown too, takes new
    /// flows throughout, and b2, restored draining, none.
    #[test]
    fn a_backend_restored_in_maintenance_awaits_its_first_check_once_enabled() {
        let dir = std::env::temp_dir().join(format!("lbd-seed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n\
             [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\n",
            "lbd.toml",
        )
        .unwrap();
        config.admin_socket = dir.join("lbd.sock");
        let id = VipId::of(&config.vips[0]);
        let [b1, b2, b3]: [IpAddr; 3] =
            ["198.18.0.11", "198.18.0.12", "198.18.0.13"].map(|a| a.parse().unwrap());
        std::fs::write(
            admin_state::backend_state_file(&config).unwrap(),
            format!(
                "{{\"version\": 1, \"backends\": [\
                 {{\"vip\": \"{id}\", \"backend\": \"{b2}\", \"state\": \"draining\"}},\
                 {{\"vip\": \"{id}\", \"backend\": \"{b3}\", \"state\": \"maintenance\"}}]}}"
            ),
        )
        .unwrap();
        let mut admin = admin_state::AdminRecord::load(&config, None).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let now = Instant::now();
        // The previous lbd's maps: b3 dead for its maintenance.
        let mut before = Model::from_config(&config);
        before.apply(&Edit::Maintenance(id, b3), now).unwrap();
        let mut balancer = Balancer::new(4);
        balancer
            .apply(&mut FakeMaps::default(), &before.desired(&|_| None))
            .unwrap();

        let mut model = Model::from_config(&config);
        admin.restore(&mut model, now);
        seed_health(&mut model, &balancer);
        let weights = |model: &Model| -> Vec<(IpAddr, u32)> {
            model.desired(&|_| None)[0]
                .backends
                .iter()
                .map(|b| (b.address, b.weight))
                .collect()
        };
        let mut enabled = model.clone();
        enabled.apply(&Edit::Enable(id, b3), now).unwrap();
        assert_eq!(
            weights(&enabled),
            vec![(b1, 100), (b2, 0), (b3, 0)],
            "enabled before its first check"
        );
        let notes = enabled.newly_awaiting_checks(&model);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains(&b3.to_string()), "{notes:?}");
        assert!(notes[0].contains("once its checks pass"), "{notes:?}");

        let mut passed = enabled.clone();
        passed.set_health(&id, b3, Health::Up);
        assert_eq!(weights(&passed), vec![(b1, 100), (b2, 0), (b3, 100)]);
        let mut failed = enabled;
        failed.set_health(&id, b3, Health::Down);
        assert_eq!(weights(&failed), vec![(b1, 100), (b2, 0), (b3, 0)]);
        // Its first check passed while it was still in maintenance: the
        // enable gives it new flows at once, and says nothing of checks.
        let mut checked = model.clone();
        checked.set_health(&id, b3, Health::Up);
        let mut later = checked.clone();
        later.apply(&Edit::Enable(id, b3), now).unwrap();
        assert_eq!(weights(&later), vec![(b1, 100), (b2, 0), (b3, 100)]);
        assert!(later.newly_awaiting_checks(&checked).is_empty());
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;

    /// A config with one VRRP instance (VRID 51, 1 s adverts) whose admin
    /// socket is in `dir`, and `pin_dir` (None: "off").
    fn config(dir: &Path, pin_dir: Option<PathBuf>) -> Config {
        let mut config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vrrp]]\nvrid = 51\npriority = 150\nadvert_interval_ms = 1000\n\
             addresses = [\"198.18.0.100\"]\n",
            "lbd.toml",
        )
        .unwrap();
        config.admin_socket = dir.join("lbd.sock");
        config.pin_dir = pin_dir;
        config
    }

    /// The state file says master moments ago (the lbd before was master
    /// and stopped for a restart), but with `pin_dir = "off"` no data
    /// plane outlived it: the next lbd does not resume mastership (the
    /// peer is about to take over with the replicated flows), nor with a
    /// pin directory that holds nothing. The same record with a data
    /// plane to adopt resumes.
    #[test]
    fn no_pinned_data_plane_no_resumed_mastership() {
        let dir = std::env::temp_dir().join(format!("lbd-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let off = config(&dir, None);
        let vrrp = &off.vrrp[0];
        let state_file = vrrp_state_file(&off, vrrp).unwrap();
        let now = crate::clock::monotonic_ns();
        std::fs::write(
            &state_file,
            format!("restarting {} 100\n", now - 500_000_000),
        )
        .unwrap();
        assert!(Instance::resumes(vrrp, Some(&state_file)), "a fresh record");

        let fits = |config: &Config| {
            pinned_dataplane_fits(config, pinned_vip_capacity(config).expect("read"))
        };
        let runs = LeftHook::Runs(crate::dataplane::LeftAt::Xdp);
        assert!(!fits(&off));
        assert!(!resumes_mastership(
            vrrp,
            Some(&state_file),
            fits(&off),
            &runs
        ));
        let empty = config(&dir, Some(dir.join("pins")));
        assert!(!fits(&empty));
        assert!(!resumes_mastership(
            vrrp,
            Some(&state_file),
            fits(&empty),
            &runs
        ));
        assert!(
            !pinned_dataplane_fits(&off, Some(64)),
            "pin_dir off: nothing to adopt"
        );
        assert!(
            pinned_dataplane_fits(&empty, Some(64)),
            "a capacity that holds the file's VIP"
        );
        assert!(resumes_mastership(vrrp, Some(&state_file), true, &runs));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fresh restart record and pins that fit, but the interface does
    /// not run the program the last lbd left forwarding: re-created
    /// meanwhile (its pinned link died with the old device), the link
    /// detached, or lbd's program shadowed at tc. The next lbd does not
    /// resume (it would take the VIPs with no program in front of them
    /// until its attach), and says why. Before, the pins alone decided.
    #[test]
    fn a_pinned_program_the_interface_does_not_run_is_no_resumed_mastership() {
        let dir = std::env::temp_dir().join(format!("lbd-resume-hook-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pinned = config(&dir, Some(dir.join("pins")));
        let vrrp = &pinned.vrrp[0];
        let state_file = vrrp_state_file(&pinned, vrrp).unwrap();
        let now = crate::clock::monotonic_ns();
        std::fs::write(
            &state_file,
            format!("restarting {} 100\n", now - 500_000_000),
        )
        .unwrap();
        assert!(pinned_dataplane_fits(&pinned, Some(64)));
        let not_running = [
            LeftHook::Stale {
                hook: crate::config::Attach::Xdp,
                program: 7,
            },
            LeftHook::Stale {
                hook: crate::config::Attach::Tc,
                program: 8,
            },
            LeftHook::Shadowed { by: 30 },
            LeftHook::Nothing,
            LeftHook::Unknown("EPERM".to_owned()),
        ];
        for left in not_running {
            let mut resumed = true;
            let logs = crate::test_logs::logs_of(|| {
                resumed = resumes_mastership(vrrp, Some(&state_file), true, &left);
            });
            assert!(!resumed, "{left:?}");
            assert!(logs.contains("not resuming"), "{logs}");
        }
        for at in [
            crate::dataplane::LeftAt::Xdp,
            crate::dataplane::LeftAt::Tcx,
            crate::dataplane::LeftAt::ClsBpf,
        ] {
            assert!(resumes_mastership(
                vrrp,
                Some(&state_file),
                true,
                &LeftHook::Runs(at)
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
