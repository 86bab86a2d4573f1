//! Starting a prepared instance on the VRRP thread: its socket opened
//! there, its driver built with the inputs the handle keeps the other
//! ends of.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Instant};

use anyhow::{anyhow, Context as _};
use tokio::sync::{oneshot, watch};
use tracing::info;

use super::{Instance, Prepared};
use crate::{
    netlink::{Interface, Netlink},
    sync::log_limit::LogLimit,
    vrrp::{
        addresses,
        announce::{announce, Announcer},
        complaints::Complaints,
        driver::{
            link::{LinkWatch, LINK_QUERY_LOG_EVERY},
            looks::Looks,
            mac::MacChange,
            sending::SendFailures,
            settings_of,
            source::open_socket,
            status::{unix_seconds, InstanceStatus},
            Driver, Inputs, Notifies,
        },
        runtime::VrrpRuntime,
        Counters, Machine, State,
    },
};

impl Instance {
    /// Opens the socket and starts the instance [`Self::prepare`] checked,
    /// on the VRRP thread (see [`super::runtime`](crate::vrrp::runtime)): its adverts and timers
    /// never wait for the rest of lbd's work. `netlink` (the caller's) only
    /// removes stale addresses here; the running instance uses the VRRP
    /// thread's own connection.
    /// With `resume` (see [`Self::resumes`]) it is master at once and keeps
    /// its addresses: the backup never notices. Otherwise it first removes
    /// stale addresses a crash may have left, and starts as the protocol
    /// says. With `sync_hold` (the node replicates its connection table
    /// with a VRRP peer) a preemption first waits for the peer's full dump
    /// (see [`Machine::hold_preemption`] and [`Self::peer_synced`]).
    pub(crate) async fn start(
        prepared: Prepared,
        interface: &Interface,
        netlink: Netlink,
        state_file: Option<PathBuf>,
        resume: bool,
        sync_hold: bool,
    ) -> anyhow::Result<Self> {
        let Prepared {
            config,
            local,
            source_missing,
            never,
            replicates,
        } = prepared;
        let mut machine = Machine::new(settings_of(&config), local);
        if source_missing {
            machine.source_gone(Instant::now());
        }
        if resume {
            info!(
                vrid = config.vrid,
                "VRRP: was master until moments ago; resuming without a failover"
            );
        } else {
            // A crash may have left our addresses here: the peer holds them now.
            for address in &config.addresses {
                addresses::remove(&netlink, interface.index, *address)
                    .await
                    .with_context(|| format!("removing stale VIP {address}"))?;
            }
        }
        let initial = InstanceStatus {
            vrid: config.vrid,
            state: State::Initialize,
            configured_priority: config.priority,
            priority: config.priority,
            master: None,
            addresses: config.addresses.clone(),
            counters: Counters::default(),
            ignored: BTreeMap::new(),
            link_down: false,
            link_down_since: None,
            no_source: source_missing,
            no_source_since: source_missing.then(|| unix_seconds(Instant::now())),
        };
        let (priority_tx, priority_rx) = watch::channel(config.priority);
        let (link_ups_tx, link_ups_rx) = watch::channel(0);
        let (data_plane_mac_tx, data_plane_mac_rx) = watch::channel(interface.mac);
        let (synced_tx, synced_rx) = watch::channel(false);
        let (status_tx, status_rx) = watch::channel(initial);
        let (stop_tx, stop_rx) = oneshot::channel();
        let notifies = Notifies::default();
        let inputs = Inputs {
            priority: priority_rx,
            link_ups: link_ups_rx,
            data_plane_mac: data_plane_mac_rx,
            synced: synced_rx,
            stop: stop_rx,
        };
        // The driver runs on the VRRP thread (see `super::runtime`), its
        // socket opened there and its netlink connection driven there:
        // tokio I/O belongs to the runtime that created it.
        let vrrp = VrrpRuntime::get()?;
        let (opened_tx, opened_rx) = oneshot::channel();
        let task = vrrp.handle.spawn({
            let config = config.clone();
            let interface = interface.clone();
            let state_file = state_file.clone();
            let notifies = notifies.clone();
            let config_priority = config.priority;
            async move {
                let socket = match open_socket(&interface, local, !source_missing).await {
                    Ok(socket) => socket,
                    Err(error) => {
                        let _ = opened_tx.send(Err(error));
                        return;
                    }
                };
                let driver = Driver {
                    config,
                    looks: Looks::kernel(&vrrp.netlink),
                    announce_with: Arc::new(announce),
                    data_plane_mac: interface.mac,
                    mac_change: MacChange::default(),
                    link_read_from: None,
                    addresses_read_from: None,
                    interface,
                    netlink: vrrp.netlink,
                    socket,
                    machine,
                    status: status_tx,
                    ignored: BTreeMap::new(),
                    complaints: Complaints::default(),
                    holding: resume,
                    release_failing: false,
                    announcer: Announcer::default(),
                    state_file,
                    notifies,
                    source_hold_began: false,
                    source_checked_at: None,
                    never,
                    link: LinkWatch::default(),
                    tracked: config_priority,
                    send_failures: SendFailures::default(),
                    link_query_log: LogLimit::new(LINK_QUERY_LOG_EVERY),
                };
                info!(vrid = driver.config.vrid, %local, priority = driver.config.priority, "VRRP instance starting");
                if opened_tx.send(Ok(())).is_err() {
                    // The start was given up (its caller dropped).
                    return;
                }
                driver.run(inputs, resume, sync_hold, replicates).await;
            }
        });
        match opened_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                return Err(anyhow!(
                    "the VRRP instance {} ended while starting",
                    config.vrid
                ))
            }
        }
        Ok(Self {
            priority: priority_tx,
            link_ups: link_ups_tx,
            data_plane_mac: data_plane_mac_tx,
            synced: synced_tx,
            status: status_rx,
            stop: Some(stop_tx),
            task,
            config,
            notifies,
            state_file,
        })
    }
}
