//! The data plane's part of a start: the maps sized, loaded (adopting what
//! a previous lbd pinned), the engine built around them, filled from the
//! config and attached; a fresh node is put back as it was if this fails.

use std::{collections::HashMap, net::IpAddr, path::Path, time::Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    fresh_node::{fresh_node, lbd_filter_found, remove_fresh_dataplane, FoundHooks},
    seed_health,
    vip_sizing::VipSizing,
    vrrp_resume::{demote_resumed, VrrpStart},
};
use crate::{
    config::{Attach, Config},
    daemon::engine::{
        admin_state, macs::INITIAL_RESOLVE_TIMEOUT, nat, node, running_state, tunnel, BackendKey,
        Engine, EngineEvents,
    },
    dataplane::{Dataplane, Hooked, IdleHorizons, LoadOptions, MapSizes, Translating},
    health::HealthChecker,
    model::Model,
    netlink::{Interface, Netlink},
    pinning::PinDir,
    reconcile::Balancer,
};

impl Engine {
    /// [`Self::start`] once the resuming VRRP instances run: the data
    /// plane, then replication and the other instances. `pinned_vips`:
    /// the pinned VIP capacity the resume was decided by
    /// ([`pinned_vip_capacity`](super::vip_sizing::pinned_vip_capacity)).
    /// Takes the instances it keeps out of
    /// `vrrp_starts`; on error, those it started are stopped and the rest
    /// are left to the caller.
    pub(super) async fn start_serving(
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
            link_watch: super::super::tracking::LinkWatch::default(),
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
}
