//! The handle lbd keeps of a running instance: its start-up checks and
//! start on the VRRP thread, the inputs tracking and the engine give it,
//! its status, and how it stops or is left for the next lbd.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context as _};
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};
use tracing::{info, warn};

use super::{
    link::{LinkWatch, LINK_QUERY_LOG_EVERY},
    looks::Looks,
    mac::MacChange,
    record::{read_record, restart_record, resume_decision, Resumption},
    sending::SendFailures,
    settings_of,
    source::{never_sources, open_socket, source_address, SourceKind},
    status::{unix_seconds, InstanceStatus},
    Driver, Inputs, Notifies,
};
use crate::{
    config::{Config, VrrpConfig},
    netlink::{Interface, Netlink},
    sync::log_limit::LogLimit,
    vrrp::{
        addresses,
        announce::{announce, Announcer},
        complaints::Complaints,
        runtime::VrrpRuntime,
        Counters, Family, Machine, State,
    },
};

/// An instance that passed its start-up checks ([`Instance::prepare`]),
/// to start.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The instance's configuration.
    config: VrrpConfig,
    /// The address its adverts go from.
    local: IpAddr,
    /// `local` is a `unicast_src_ip` not on the interface yet: the
    /// instance starts without a source (see [`Machine::source_gone`]).
    source_missing: bool,
    /// The addresses adverts never go from (see [`never_sources`]).
    never: Vec<IpAddr>,
    /// Whether lbd replicates its connection table with a VRRP peer (any
    /// instance may carry it): a master steps back after a long link
    /// outage (see [`Machine::hold_after_outages`]).
    replicates: bool,
}

/// A running instance.
pub(crate) struct Instance {
    priority: watch::Sender<u8>,
    /// Counts the interface's link coming back up (see
    /// [`Instance::link_up`]).
    link_ups: watch::Sender<u64>,
    /// The interface MAC the data plane accepts frames for (see
    /// [`Instance::data_plane_mac`]).
    data_plane_mac: watch::Sender<[u8; 6]>,
    /// Set once the peer's full connection-table dump arrived (see
    /// [`Instance::peer_synced`]).
    synced: watch::Sender<bool>,
    status: watch::Receiver<InstanceStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    config: VrrpConfig,
    notifies: Notifies,
    /// Where the instance records its state (see [`Record`](super::record::Record)), for
    /// [`Self::abandon`]'s restart record.
    state_file: Option<PathBuf>,
}

impl Instance {
    /// Whether an instance of `config` would resume as master: its
    /// `state_file` holds the restart record of a master whose last advert
    /// left less than the shortest master-down interval any peer can run,
    /// less a margin for the start, ago (lbd restarted), so the backup has
    /// not taken over yet, whatever its priority (see [`resume_window`](super::record::resume_window)).
    /// Decided once, before anything slow, and handed to [`Self::start`]:
    /// the caller starts such an instance first, while the pinned program
    /// keeps forwarding, so a slow start-up (the verifier, neighbour
    /// resolution) does not run the backup's timer out. The caller also
    /// checks that there is a pinned data plane to adopt: this looks at
    /// the state file only.
    ///
    /// Only a restart record ([`Self::abandon`]) resumes: a crash leaves
    /// the record of the last advert, and resuming on it would let a crash
    /// loop hold the addresses forever, the backup's timer reset at each
    /// start. An lbd from before restart records left that record at a
    /// restart too: the first restart into this one (an upgrade) does not
    /// resume, the peer takes over, and this node, if it preempts, takes
    /// mastership back once the peer's flows are here (with replication),
    /// as at any start.
    pub(crate) fn resumes(config: &VrrpConfig, state_file: Option<&Path>) -> bool {
        let Some(path) = state_file else {
            return false;
        };
        let now = crate::clock::monotonic_ns();
        match resume_decision(read_record(path), config, now) {
            Resumption::Resume => true,
            Resumption::NotAfterCrash => {
                warn!(
                    vrid = config.vrid,
                    "VRRP: was master until moments ago, but the last lbd did not stop for a restart (it crashed, or predates restart records): not resuming; the peer takes over"
                );
                false
            }
            Resumption::No => false,
        }
    }

    /// The checks an instance of `config` must pass on `interface` before
    /// it starts, and the address it will speak from: none of its
    /// addresses is already the interface's own, and the interface has an
    /// address to send adverts from. Only reads the interface: the caller
    /// runs it before it loads or attaches anything, so a refused instance
    /// leaves the node as it found it.
    /// `lbd` is the whole config: the other instances' addresses and the
    /// VIPs are never sources either (see [`never_sources`]).
    pub(crate) async fn prepare(
        config: VrrpConfig,
        lbd: &Config,
        interface: &Interface,
        netlink: &Netlink,
    ) -> anyhow::Result<Prepared> {
        let family = config
            .addresses
            .first()
            .map(Family::of)
            .ok_or_else(|| anyhow!("VRRP instance {} has no address to move", config.vrid))?;
        addresses::refuse_own(interface, config.vrid, &config.addresses).await?;
        let never = never_sources(lbd);
        let kind = SourceKind::of_instance(family, &config);
        let (local, source_missing) = match source_address(netlink, interface, kind, &never).await?
        {
            Ok(local) => (local, false),
            // A `unicast_src_ip` not (yet) on the interface: the instance
            // starts without a source, as one whose source went (see
            // `Machine::source_gone`), and sends once it is there.
            Err(missing) => match kind {
                SourceKind::Fixed(source) => {
                    warn!(
                        vrid = config.vrid,
                        interface = %interface.name,
                        missing,
                        "VRRP: the instance starts without an address to send adverts from: a backup that does not take over until unicast_src_ip {source} is on the interface"
                    );
                    (source, true)
                }
                _ => return Err(anyhow!("{missing}")),
            },
        };
        Ok(Prepared {
            config,
            local,
            source_missing,
            never,
            replicates: lbd.vrrp.iter().any(|v| v.sync_peer.is_some()),
        })
    }

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

    /// The notify commands this instance started, for lbd's exit to wait
    /// for once the instance stopped ([`wait_for_notifies`](super::wait_for_notifies)).
    pub(crate) fn notifies(&self) -> Notifies {
        self.notifies.clone()
    }

    /// The instance's configuration.
    pub(crate) fn config(&self) -> &VrrpConfig {
        &self.config
    }

    /// Sets the priority tracking gives the instance: the configured one
    /// less the weights of what this node cannot serve, but not the
    /// link's (`track_interface`): the instance takes that off itself
    /// while its own checks (every [`ADDRESS_CHECK`](super::ADDRESS_CHECK)) see the link down,
    /// and gives it back before the advert that goes out when they see it
    /// up, so neither that advert nor those before tracking's next look
    /// carry the priority lowered for the outage.
    pub(crate) fn set_priority(&self, priority: u8) {
        self.priority.send_if_modified(|p| {
            let changed = *p != priority;
            *p = priority;
            changed
        });
    }

    /// The interface's link came back up (tracking saw it down, then up):
    /// a master re-announces its addresses in full, since the other node
    /// may have taken them over meanwhile, or, with replication after an
    /// outage the peer may have taken over in, steps down to backup until
    /// the peer's flows are here (see [`Machine::link_up`]; the instance's
    /// own checks of the link, twice as frequent, usually told it first).
    /// The advert that goes with the announcements carries the link's
    /// weight given back (see [`Self::set_priority`]).
    pub(crate) fn link_up(&self) {
        self.link_ups.send_modify(|ups| *ups = ups.wrapping_add(1));
    }

    /// The data plane now accepts frames addressed to `mac`, the
    /// interface's new MAC (the engine wrote it): a master announces its
    /// addresses with a new MAC only once this says so, since frames sent
    /// to a MAC the data plane does not accept go up the stack, which
    /// resets their connections (see [`MacChange`]).
    pub(crate) fn data_plane_mac(&self, mac: [u8; 6]) {
        self.data_plane_mac.send_if_modified(|known| {
            let changed = *known != mac;
            *known = mac;
            changed
        });
    }

    /// The peer's full connection-table dump arrived: a preemption no
    /// longer waits for it (see [`Machine::hold_preemption`]).
    pub(crate) fn peer_synced(&self) {
        self.synced
            .send_if_modified(|synced| !std::mem::replace(synced, true));
    }

    /// The latest status.
    pub(crate) fn status(&self) -> InstanceStatus {
        self.status.borrow().clone()
    }

    /// Whether this node is master now.
    pub(crate) fn is_master(&self) -> bool {
        self.status.borrow().state == State::Master
    }

    /// Stops without a word to the peer, keeping the addresses (a restart:
    /// the next lbd resumes as master if it is back in time; otherwise the
    /// backup takes over after the master-down interval). A master's
    /// state file gets the restart record the next lbd resumes on (see
    /// [`Self::resumes`]).
    pub(crate) async fn abandon(mut self) {
        // Abort first and wait for it: dropping the stop sender while the
        // task still runs would be read as "stop" (priority 0, addresses
        // released), the opposite of what a restart wants.
        self.task.abort();
        let _ = (&mut self.task).await;
        // Only now, with the task gone: it writes a master record with
        // each advert.
        if let Some(path) = &self.state_file {
            if let Some(record) = restart_record(read_record(path)) {
                if let Err(error) = std::fs::write(path, record.line()) {
                    warn!(vrid = self.config.vrid, path = %path.display(), %error, "recording the VRRP restart failed: the next lbd does not resume mastership");
                }
            }
        }
        info!(
            vrid = self.config.vrid,
            "VRRP instance left for the next lbd"
        );
    }

    /// [`Self::stop`], waiting up to `limit`: `None` once the instance
    /// stopped; otherwise it is aborted, and what it may have left on the
    /// interface (its addresses: the release may not have run, or not to
    /// its end).
    async fn stop_within(mut self, limit: Duration) -> Option<Vec<IpAddr>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(limit, &mut self.task).await.is_ok() {
            return None;
        }
        self.task.abort();
        let _ = (&mut self.task).await;
        Some(self.config.addresses.clone())
    }

    /// Steps down at once (priority 0 advert: the backup takes over after
    /// its skew time) and removes the addresses; waits up to
    /// [`STOP_LIMIT`], then aborts it and warns, naming the addresses it
    /// may have left and `lbd --release-vips`.
    pub(crate) async fn stop(self) {
        let vrid = self.config.vrid;
        if let Some(left) = self.stop_within(STOP_LIMIT).await {
            warn!(vrid, addresses = ?left, "{}", left_behind_warning(&left));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The warning for a stop that did not end in time (see
/// [`Instance::stop`]): the task was aborted, possibly before it removed
/// `addresses` (all the instance's: which it had removed is not known),
/// so both kernels may answer ARP / ND for them once the peer takes over,
/// and the "stopped" notify may not have run.
fn left_behind_warning(addresses: &[IpAddr]) -> String {
    let list: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
    format!(
        "VRRP instance did not stop within {} s and was aborted: its addresses may still be on the interface ({}), and its \"stopped\" notify may not have run; once lbd has exited, `lbd --release-vips` removes them",
        STOP_LIMIT.as_secs(),
        list.join(", ")
    )
}

/// Longest [`Instance::stop`] waits for the instance's step-down (the
/// priority-0 advert, the record, the addresses removed).
const STOP_LIMIT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::driver::tests::{ip, vrrp_config, StateFile, SECOND};

    #[test]
    fn resumes_measures_against_the_shortest_master_down_interval() {
        // Ours is 3 s + (256 - 100) / 256 s = 3.609 s; a peer of priority
        // 200 (with nopreempt, so this node was master) takes over after
        // 3 s + 56 / 256 s = 3.219 s, and one of 255 after 3.004 s: the
        // window is that, less a 0.1 s margin.
        let vrrp = vrrp_config(100, "198.18.0.10");
        let now = crate::clock::monotonic_ns();
        let fresh = StateFile::new("fresh", &format!("restarting {}\n", now - 1_900_000_000));
        assert!(Instance::resumes(&vrrp, Some(&fresh.0)));
        // 2.5 s (a restart with replication): still resumes.
        let restart = StateFile::new("restart", &format!("restarting {}\n", now - 2_500_000_000));
        assert!(Instance::resumes(&vrrp, Some(&restart.0)));
        // 2.95 s: within the peer's 3.004 s, but not by the margin.
        let late = StateFile::new("late", &format!("restarting {}\n", now - 2_950_000_000));
        assert!(!Instance::resumes(&vrrp, Some(&late.0)));
        // 3.3 s: within our own interval, but the peer may be master now.
        let taken = StateFile::new("taken", &format!("restarting {}\n", now - 3_300_000_000));
        assert!(!Instance::resumes(&vrrp, Some(&taken.0)));
        let stale = StateFile::new("stale", &format!("restarting {}\n", now - 4 * SECOND));
        assert!(!Instance::resumes(&vrrp, Some(&stale.0)));
        assert!(!Instance::resumes(&vrrp, None));
        // What a crash leaves, 1.2 s after the last advert: not resumed.
        let crashed = StateFile::new("crashed", &format!("master {}\n", now - 1_200_000_000));
        assert!(!Instance::resumes(&vrrp, Some(&crashed.0)));
    }

    /// An instance whose driver does not end in time (its release of the
    /// addresses stuck on netlink) is aborted; what it may have left on
    /// the interface is named, with the command that removes it.
    #[tokio::test]
    async fn a_stop_that_overruns_names_the_addresses_left() {
        let config = VrrpConfig {
            addresses: vec![ip("198.18.0.10"), ip("198.18.0.11")],
            ..vrrp_config(100, "198.18.0.10")
        };
        let (stop_tx, _stop_rx) = oneshot::channel();
        let (_status_tx, status_rx) = watch::channel(InstanceStatus {
            vrid: config.vrid,
            state: State::Master,
            configured_priority: 100,
            priority: 100,
            master: None,
            addresses: config.addresses.clone(),
            counters: Counters::default(),
            ignored: BTreeMap::new(),
            link_down: false,
            link_down_since: None,
            no_source: false,
            no_source_since: None,
        });
        let instance = Instance {
            priority: watch::channel(100).0,
            link_ups: watch::channel(0).0,
            data_plane_mac: watch::channel([0; 6]).0,
            synced: watch::channel(false).0,
            status: status_rx,
            stop: Some(stop_tx),
            task: tokio::spawn(std::future::pending()),
            config: config.clone(),
            notifies: Notifies::default(),
            state_file: None,
        };
        let left = instance.stop_within(Duration::from_millis(50)).await;
        assert_eq!(left, Some(config.addresses.clone()));
        let warning = left_behind_warning(&config.addresses);
        for address in &config.addresses {
            assert!(warning.contains(&address.to_string()), "{warning}");
        }
        assert!(warning.contains("lbd --release-vips"), "{warning}");
    }
}
