//! Start-up: load (or adopt) the data plane, fill it from the config,
//! attach it, then start replication and VRRP, in the order that keeps a
//! restarting master's VIPs and flows.

mod adopted_health;
mod fresh_node;
mod vip_sizing;
mod vrrp_resume;

pub(super) use adopted_health::seed_health;
use fresh_node::*;
use vip_sizing::*;
use vrrp_resume::*;

use std::{collections::HashMap, net::IpAddr, path::Path, time::Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    admin_state, macs::INITIAL_RESOLVE_TIMEOUT, nat, node, running_state, tunnel, BackendKey,
    Engine, EngineEvents,
};
use crate::{
    config::{Attach, Config},
    daemon::replication::Replication,
    dataplane::{Dataplane, Hooked, IdleHorizons, LeftHook, LoadOptions, MapSizes, Translating},
    health::HealthChecker,
    model::Model,
    netlink::{Interface, Netlink},
    pinning::PinDir,
    reconcile::Balancer,
    vrrp::driver::{wait_for_notifies, Instance, NOTIFY_GRACE},
};

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
            hook: config.attach,
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
}

/// The host name, to name this node to its replication peer.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "lbd".to_owned())
}
