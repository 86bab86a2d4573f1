//! One VRRP instance at work: a tokio task, on the VRRP thread's runtime
//! (see [`super::runtime`]), that feeds the pure state
//! machine with adverts from the wire, timer expiries and priority changes
//! (tracking), and carries out what it decides: adverts on the wire, the
//! VIP addresses added (with gratuitous ARP / unsolicited NA) or removed
//! over rtnetlink, notify commands. Stale addresses left by a crash are
//! removed at start, before the instance speaks; while master, the
//! addresses are checked every [`ADDRESS_CHECK`] and put back (and
//! announced) if something removed them.

use std::{
    collections::BTreeMap,
    future::Future,
    net::IpAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context as _};
use serde::{Deserialize, Serialize};
use tokio::{
    sync::{oneshot, watch},
    task::{JoinHandle, JoinSet},
};
use tracing::{debug, info, warn};

use super::{
    addresses,
    announce::{announce, Announcer},
    complaints::{self, Complaints},
    machine::{OWNER_PRIORITY, PREEMPT_SYNC_HOLD},
    net::{Received, VrrpSocket},
    notify_program::check_notify_program,
    runtime::VrrpRuntime,
    validate_from, Action, Advertisement, ChecksumMode, Counters, DecodeError, Family, Invalid,
    Machine, Settings, State,
};
use crate::{
    config::{Config, VrrpConfig},
    netlink::{Interface, InterfaceAddress, LinkState, Netlink},
    sync::log_limit::LogLimit,
};

/// How often a master checks that its addresses are still on the
/// interface (a link down/up drops IPv6 ones; networkd may drop any).
const ADDRESS_CHECK: Duration = Duration::from_millis(500);

/// Most packets read from the socket's queue before the timer is acted on
/// (see `Driver::drain_queued`): every advert a stall of a few seconds
/// queues at the fastest interval (10 ms), while a flood still lets the
/// timer fire.
const DRAIN_LIMIT: usize = 1024;

/// What a look at the interface's addresses gives (see [`Looks`]).
type AddressesFuture = Pin<Box<dyn Future<Output = anyhow::Result<Vec<InterfaceAddress>>> + Send>>;

/// What a look at the interface's link gives (see [`Looks`]); `None`: no
/// interface has that index any more.
type LinkFuture = Pin<Box<dyn Future<Output = anyhow::Result<Option<LinkState>>> + Send>>;

/// How a driver reads its interface (by index): its addresses and its
/// link. The kernel's, over the VRRP thread's netlink connection
/// ([`Looks::kernel`]); tests inject their own (a look that never
/// answers, a MAC that changes), as health's `EgressLookup`, so the
/// driver's timing is tested without netlink to stall.
#[derive(Clone)]
pub(crate) struct Looks {
    /// The interface's addresses.
    addresses: Arc<dyn Fn(u32) -> AddressesFuture + Send + Sync>,
    /// The interface's link (up, MAC).
    link: Arc<dyn Fn(u32) -> LinkFuture + Send + Sync>,
}

impl Looks {
    /// The kernel's answers, over `netlink`.
    fn kernel(netlink: &Netlink) -> Self {
        let (for_addresses, for_link) = (netlink.clone(), netlink.clone());
        Self {
            addresses: Arc::new(move |index| {
                let netlink = for_addresses.clone();
                Box::pin(async move { Ok(netlink.addresses(index).await?) })
            }),
            link: Arc::new(move |index| {
                let netlink = for_link.clone();
                Box::pin(async move { Ok(netlink.link_state(index).await?) })
            }),
        }
    }
}

impl Looks {
    /// A look at interface `index`'s addresses, begun now and given up
    /// after [`addresses::NETLINK_LIMIT`] (an error, as a failed look).
    /// Owns what it needs: it can run while the driver serves its advert
    /// timer and socket (see [`Driver::run`]).
    fn read_addresses(&self, index: u32) -> impl Future<Output = AddressRead> + Send + 'static {
        let (started, look) = (Instant::now(), (self.addresses)(index));
        async move {
            AddressRead {
                started,
                present: addresses::bounded(
                    format!("listing the addresses of interface {index}"),
                    look,
                )
                .await,
            }
        }
    }

    /// A look at `interface`'s link, begun now and given up after
    /// [`addresses::NETLINK_LIMIT`], with its carrier counter read as the
    /// answer comes (see [`LinkWatch::saw_counting`]).
    fn read_link(&self, interface: &Interface) -> impl Future<Output = LinkRead> + Send + 'static {
        let (started, look, interface) = (
            Instant::now(),
            (self.link)(interface.index),
            interface.clone(),
        );
        async move {
            let state = addresses::bounded(
                format!("reading the link of interface {}", interface.name),
                look,
            )
            .await;
            LinkRead {
                started,
                state,
                carrier: carrier_changes(&interface),
            }
        }
    }
}

/// What a look at the interface's addresses found.
struct AddressRead {
    /// When it began (see [`newer_look`]).
    started: Instant,
    /// The addresses, or why they could not be read.
    present: anyhow::Result<Vec<InterfaceAddress>>,
}

/// What a look at the interface's link found.
struct LinkRead {
    /// When it began (see [`newer_look`]).
    started: Instant,
    /// The link (`None`: no interface has its index), or why it could not
    /// be read.
    state: anyhow::Result<Option<LinkState>>,
    /// The carrier counter as the answer came (see [`carrier_changes`]).
    carrier: Option<u64>,
}

/// The periodic look (every [`ADDRESS_CHECK`]) at the addresses and the
/// link, both asked at once.
struct PeriodicLook {
    /// The addresses.
    addresses: AddressRead,
    /// The link.
    link: LinkRead,
}

/// A periodic look in flight (see [`Driver::run`]).
type PeriodicLookFuture = Pin<Box<dyn Future<Output = PeriodicLook> + Send>>;

/// The periodic look in `slot` once it answers; never while there is
/// none. For a `select!` arm: the look makes progress whenever the loop
/// waits, and the other arms are served meanwhile.
async fn periodic_look_done(slot: &mut Option<PeriodicLookFuture>) -> PeriodicLook {
    match slot {
        Some(look) => look.await,
        None => std::future::pending().await,
    }
}

/// Whether the answer of a look begun at `started` is to be taken: no
/// look begun later was taken already (`last`, updated). A periodic look
/// runs beside the looks the advert timer and failed sends make at once,
/// and may answer after them: its older view (a link up since seen down,
/// a source since moved) must not undo theirs.
fn newer_look(last: &mut Option<Instant>, started: Instant) -> bool {
    if last.is_some_and(|last| started < last) {
        return false;
    }
    *last = Some(started);
    true
}

/// Longest a master waits for the engine to tell that the data plane
/// accepts frames for the interface's new MAC (see [`MacChange`]) before
/// it announces the addresses with it all the same: the engine writes it
/// at its housekeeping tick (every second) and tells at once; one that
/// never tells (its own look at the link failing, the write failing)
/// must not leave the neighbours at a MAC the interface no longer has.
const MAC_CONFIRM_LIMIT: Duration = Duration::from_secs(3);

/// Sends one gratuitous ARP / NA: `announce::announce` (interface index,
/// MAC, address) in lbd; tests record what would have left.
type AnnounceFn = Arc<dyn Fn(u32, [u8; 6], IpAddr) -> std::io::Result<()> + Send + Sync>;

/// What an instance reports, for status and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Virtual router id.
    pub vrid: u8,
    /// Protocol state.
    pub state: State,
    /// Priority configured.
    pub configured_priority: u8,
    /// Priority advertised now (after tracking).
    pub priority: u8,
    /// Primary address of the current master, as last heard (ourselves
    /// when master).
    pub master: Option<IpAddr>,
    /// Addresses the instance moves.
    pub addresses: Vec<IpAddr>,
    /// Protocol counters.
    pub counters: Counters,
    /// Packets ignored, by reason (`ttl`, `checksum`, `other_vrid`, ...).
    pub ignored: BTreeMap<String, u64>,
    /// The instance's checks see the interface's link down (keepalived's
    /// FAULT): a backup does not take over meanwhile, so the pair has no
    /// standby, and a master keeps its mastership on a dead link.
    #[serde(default)]
    pub link_down: bool,
    /// While `link_down`: when the outage began at the earliest (the last
    /// time the link was seen up), Unix time in seconds.
    #[serde(default)]
    pub link_down_since: Option<u64>,
    /// The interface has no address adverts can go from (keepalived's
    /// FAULT for want of an address): a master gives up mastership and
    /// the VIPs to the peer that takes over, a backup does not take
    /// over, until one is back.
    #[serde(default)]
    pub no_source: bool,
    /// While `no_source`: when the source was first seen gone, Unix time
    /// in seconds.
    #[serde(default)]
    pub no_source_since: Option<u64>,
}

/// `at`, an instant in the past, as Unix time in seconds (0 if the clock
/// is set before 1970).
fn unix_seconds(at: Instant) -> u64 {
    let ago = Instant::now().saturating_duration_since(at);
    std::time::SystemTime::now()
        .checked_sub(ago)
        .and_then(|wall| wall.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_secs())
}

/// Longest lbd's exit waits for the notify commands still running (the
/// "stopped" one a clean stop runs, any still at work): a command that
/// takes longer is killed, with a warning.
pub(crate) const NOTIFY_GRACE: Duration = Duration::from_secs(5);

/// The notify commands an instance started and that may still run: lbd's
/// exit waits for them ([`wait_for_notifies`]), since leaving the runtime
/// kills every child it still owns (`kill_on_drop`), and a "stopped"
/// command killed before it ran would leave whatever it drives (a
/// firewall, a monitoring state) at "master".
///
/// They run one after the other, in the order the instance changed state:
/// run side by side, a slow "master" command could finish after the
/// "backup" one of a quick master→backup flip, leaving whatever it drives
/// at "master" on a backup. At most one waits behind the one running: a
/// newer state replaces it before it starts, as only the newest state
/// matters to what the command drives, so a flapping instance with a slow
/// command never falls behind, and a "stopped" at exit is never stuck
/// behind a backlog.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notifies(Arc<Mutex<Queue>>);

/// A queued command, boxed so a newer one can take its place.
type Command = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The command waiting for the one before it to end, with the state it
/// reports; taken (left `None`) when it starts.
type Waiting = Arc<Mutex<Option<(String, Command)>>>;

/// The commands of one instance, and the end of the last one queued.
#[derive(Default)]
struct Queue {
    /// Every command queued and not yet reaped: at most the one running
    /// and the one waiting for it (and, past an exit's [`Notifies::take`],
    /// those of the new set).
    running: JoinSet<()>,
    /// Fires (or is dropped, the command killed) when the last command
    /// queued has ended: the next one waits for it.
    last: Option<oneshot::Receiver<()>>,
    /// The command queued behind the running one, while it has not
    /// started: a newer state replaces it there.
    waiting: Option<Waiting>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("running", &self.running.len())
            .field("waiting", &self.waiting.is_some())
            .finish_non_exhaustive()
    }
}

impl Notifies {
    /// Runs `command` (reporting `state` of VRID `vrid`) as a task kept
    /// here: at once if the command queued before it has ended (or was
    /// killed), else once it has, in place of any command still waiting
    /// for it (merged: that older state is never reported). Forgets the
    /// commands that ended. Each command's own time limit starts when it
    /// starts.
    fn spawn(&self, vrid: u8, state: &str, command: impl Future<Output = ()> + Send + 'static) {
        let command: Command = Box::pin(command);
        let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        while queue.running.try_join_next().is_some() {}
        if let Some(waiting) = &queue.waiting {
            let mut slot = waiting.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((replaced, _)) = slot.take() {
                info!(
                    vrid,
                    %replaced,
                    %state,
                    "VRRP notify: a newer state replaces one still waiting for the command before it to end, which is not reported"
                );
                *slot = Some((state.to_owned(), command));
                return;
            }
        }
        // The command before still running: this one waits for it.
        let before = queue.last.take().and_then(|mut before| {
            matches!(before.try_recv(), Err(oneshot::error::TryRecvError::Empty)).then_some(before)
        });
        let (ended, end) = oneshot::channel();
        queue.last = Some(end);
        let Some(before) = before else {
            queue.waiting = None;
            queue.running.spawn(async move {
                command.await;
                let _ = ended.send(());
            });
            return;
        };
        let waiting: Waiting = Arc::new(Mutex::new(Some((state.to_owned(), command))));
        queue.waiting = Some(waiting.clone());
        queue.running.spawn(async move {
            // An error: the one before was killed; go on.
            let _ = before.await;
            let next = waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some((_, command)) = next {
                command.await;
            }
            let _ = ended.send(());
        });
    }

    /// Takes the commands still running or queued (new ones start a fresh
    /// set, still after the last one taken, and never replace one taken).
    fn take(&self) -> JoinSet<()> {
        let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        queue.waiting = None;
        std::mem::take(&mut queue.running)
    }
}

/// Waits, all together at most `limit`, for the notify commands of
/// `notifies` still running; those still running then are killed, with a
/// warning naming how many. For lbd's exit, once the instances stopped.
pub(crate) async fn wait_for_notifies(notifies: &[Notifies], limit: Duration) {
    let mut sets: Vec<JoinSet<()>> = notifies.iter().map(Notifies::take).collect();
    let all = async {
        for set in &mut sets {
            while set.join_next().await.is_some() {}
        }
    };
    if tokio::time::timeout(limit, all).await.is_err() {
        let left: usize = sets.iter().map(JoinSet::len).sum();
        warn!(
            running = left,
            "VRRP notify commands still running {} s after lbd began to stop; killing them",
            limit.as_secs()
        );
        for set in &mut sets {
            set.shutdown().await;
        }
    }
}

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
    /// Where the instance records its state (see [`Record`]), for
    /// [`Self::abandon`]'s restart record.
    state_file: Option<PathBuf>,
}

impl Instance {
    /// Whether an instance of `config` would resume as master: its
    /// `state_file` holds the restart record of a master whose last advert
    /// left less than the shortest master-down interval any peer can run,
    /// less a margin for the start, ago (lbd restarted), so the backup has
    /// not taken over yet, whatever its priority (see [`resume_window`]).
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
    /// on the VRRP thread (see [`super::runtime`]): its adverts and timers
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
    /// for once the instance stopped ([`wait_for_notifies`]).
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
    /// while its own checks (every [`ADDRESS_CHECK`]) see the link down,
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

/// Opens the socket; an IPv6 link-local address still in duplicate
/// address detection (an interface just brought up) cannot be bound yet,
/// so that is retried for a few seconds. `present`: `local` is on the
/// interface (not a `unicast_src_ip` still to come).
async fn open_socket(
    interface: &Interface,
    local: IpAddr,
    present: bool,
) -> anyhow::Result<VrrpSocket> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match VrrpSocket::open(&interface.name, interface.index, local, present) {
            Ok(socket) => return Ok(socket),
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrNotAvailable
                    && Instant::now() < deadline =>
            {
                debug!(%local, "source address not usable yet (duplicate address detection); retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("opening the VRRP socket on {} from {local}", interface.name)
                })
            }
        }
    }
}

/// How long [`source_address`] waits at start for duplicate address
/// detection to end on the only addresses an instance could send from
/// (an interface just brought up): as long as [`open_socket`] waits.
const DAD_WAIT: Duration = Duration::from_secs(5);

/// The address an instance of `kind` sends from (see [`SourceKind`]),
/// none of `never`. Waits up to [`DAD_WAIT`] while the only candidates
/// are still tentative (see [`waits_for_dad`]); with none, the inner
/// error ([`no_source_message`]) names the interface, what is missing and
/// why each of its addresses of the family was passed over. The outer
/// one: the addresses could not be read.
async fn source_address(
    netlink: &Netlink,
    interface: &Interface,
    kind: SourceKind,
    never: &[IpAddr],
) -> anyhow::Result<Result<IpAddr, String>> {
    let deadline = Instant::now() + DAD_WAIT;
    loop {
        let addresses = addresses::bounded(
            format!("listing the addresses of {}", interface.name),
            netlink.addresses(interface.index),
        )
        .await?;
        if let Some(source) = pick_source(&addresses, kind, never) {
            return Ok(Ok(source));
        }
        if waits_for_dad(&addresses, kind, never) && Instant::now() < deadline {
            debug!(interface = %interface.name, "the only {} is still tentative (duplicate address detection); waiting", kind.what());
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        return Ok(Err(no_source_message(
            &interface.name,
            &addresses,
            kind,
            never,
        )));
    }
}

/// Why an instance has no address to send from: the interface, the kind
/// of address missing, what each address of the family is instead, and
/// (for a global IPv6 source) why a link-local one does not do.
fn no_source_message(
    interface: &str,
    present: &[InterfaceAddress],
    kind: SourceKind,
    never: &[IpAddr],
) -> String {
    let passed: Vec<String> = present
        .iter()
        .filter_map(|a| passed_over(a, kind, never).map(|why| format!("{} is {why}", a.address)))
        .collect();
    let why = match kind {
        SourceKind::V6Global => " (adverts to global unicast peers go from a global address: routers never forward a link-local source, and a keepalived peer takes adverts only from an address in its unicast_peer list)",
        _ => "",
    };
    let listed = if passed.is_empty() {
        String::new()
    } else {
        format!("; passed over: {}", passed.join(", "))
    };
    if let SourceKind::Fixed(source) = kind {
        let state = if passed.is_empty() {
            String::new()
        } else {
            format!(" ({})", passed.join(", "))
        };
        return format!(
            "interface {interface} does not have unicast_src_ip {source} in a state to send VRRP adverts from{state}: adverts go from that address only (the one the peer's unicast_peer list names), never another of the interface's; add it to {interface}, or change unicast_src_ip"
        );
    }
    format!(
        "interface {interface} has no {} to send VRRP adverts from{why}; the VIPs, NAT and [[vrrp]] addresses never are one, nor a tentative, DAD-failed, deprecated or temporary address{listed}",
        kind.what()
    )
}

/// Why `address` is no advert source of `kind` (None: it is one, or is
/// of another family or kind, not worth naming), for
/// [`no_source_message`].
fn passed_over(
    address: &InterfaceAddress,
    kind: SourceKind,
    never: &[IpAddr],
) -> Option<&'static str> {
    if Family::of(&address.address) != kind.family() {
        return None;
    }
    if let SourceKind::Fixed(source) = kind {
        // Only the address named is worth naming: no other is one.
        if address.address != source {
            return None;
        }
    }
    let link_local = is_link_local(address.address);
    let why = if never.contains(&address.address) {
        "a VIP, NAT or [[vrrp]] address"
    } else if kind == SourceKind::V6LinkLocal && !link_local {
        return None;
    } else if kind == SourceKind::V6Global && link_local {
        "link-local"
    } else if address.state.dad_failed {
        "DAD-failed (another host has it)"
    } else if address.secondary && !matches!(kind, SourceKind::Fixed(_)) {
        match kind {
            SourceKind::V4Primary => "secondary",
            _ => "temporary (privacy extensions)",
        }
    } else if address.state.tentative {
        "tentative (duplicate address detection under way)"
    } else if kind == SourceKind::V6Global && address.state.deprecated {
        "deprecated (preferred_lft 0)"
    } else {
        return None;
    };
    Some(why)
}

/// The addresses no instance sends adverts from: every `[[vrrp]]`
/// instance's (not only its own: lbd adds them at a host prefix, /32 on
/// IPv4, which the kernel lists as primary addresses, so an instance
/// could otherwise pick another's VIP, one that moves to the peer with
/// that instance, once the node's own address is renumbered or re-added
/// after it), every VIP lbd balances and every NAT address (a VIP's or
/// `[nat]`'s: it moves with the VIPs too). Sorted, without repeats.
fn never_sources(lbd: &Config) -> Vec<IpAddr> {
    let mut never: Vec<IpAddr> = lbd
        .vrrp
        .iter()
        .flat_map(|vrrp| vrrp.addresses.iter().copied())
        .chain(lbd.vips.iter().map(|vip| vip.address))
        .chain(
            lbd.vips
                .iter()
                .filter_map(|vip| vip.nat.map(|nat| nat.source)),
        )
        .chain(lbd.nat.source_ipv4)
        .chain(lbd.nat.source_ipv6)
        .collect();
    never.sort_unstable();
    never.dedup();
    never
}

/// Whether `address` is an IPv6 link-local one (fe80::/10).
fn is_link_local(address: IpAddr) -> bool {
    matches!(address, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// Which of the interface's addresses an instance's adverts go from.
/// IPv4: the primary address. IPv6 to the group: the link-local address,
/// as RFC 5798 §5.1.2.1 wants. IPv6 to unicast peers (one not
/// link-local at least): a global address, since routers never forward a
/// link-local source (`unicast_peer_hops` > 0 could not work) and a
/// keepalived peer takes adverts only from an address in its
/// `unicast_peer` list, which names the node's global address
/// (keepalived's `unicast_src_ip`); with link-local peers only, the peers
/// are on the link and the link-local address stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// IPv4: a primary address.
    V4Primary,
    /// IPv6 to the group (or link-local peers): a link-local address.
    V6LinkLocal,
    /// IPv6 to unicast peers: a global (not link-local) address.
    V6Global,
    /// To unicast peers from `unicast_src_ip`: this address and no other
    /// (the one the peer's `unicast_peer` list names).
    Fixed(IpAddr),
}

impl SourceKind {
    /// The kind for an instance of `family` sending to `unicast_peers`
    /// (empty: the group).
    pub(crate) fn of(family: Family, unicast_peers: &[IpAddr]) -> Self {
        match family {
            Family::V4 => Self::V4Primary,
            Family::V6 if unicast_peers.iter().any(|peer| !is_link_local(*peer)) => Self::V6Global,
            Family::V6 => Self::V6LinkLocal,
        }
    }

    /// The kind for `config`, an instance of `family`: its
    /// `unicast_src_ip` if it sets one (config check allows it with
    /// unicast peers only), else as [`Self::of`] says.
    pub(crate) fn of_instance(family: Family, config: &VrrpConfig) -> Self {
        match config.unicast_src_ip {
            Some(source) if !config.unicast_peers.is_empty() => Self::Fixed(source),
            _ => Self::of(family, &config.unicast_peers),
        }
    }

    /// The address family of its addresses.
    fn family(self) -> Family {
        match self {
            Self::V4Primary => Family::V4,
            Self::V6LinkLocal | Self::V6Global => Family::V6,
            Self::Fixed(source) => Family::of(&source),
        }
    }

    /// What the address is, for the log.
    fn what(self) -> &'static str {
        match self {
            Self::V4Primary => "primary IPv4 address",
            Self::V6LinkLocal => "link-local IPv6 address",
            Self::V6Global => "global IPv6 address",
            Self::Fixed(_) => "unicast_src_ip address",
        }
    }
}

/// Whether `address` is of `kind` and may stay the source of adverts
/// already sent from it: none of `never` (lbd's VIPs, NAT addresses and
/// every instance's addresses, see [`never_sources`]), not DAD-failed
/// (another host has it), not an IPv4 secondary or IPv6 temporary address
/// (the same flag bit). It may be tentative (the same address re-running
/// duplicate address detection after an admin down/up: adverts still
/// leave, see [`VrrpSocket::open`]) or, for a global IPv6 source,
/// deprecated (see [`check_source`]).
fn may_keep_sending_from(address: &InterfaceAddress, kind: SourceKind, never: &[IpAddr]) -> bool {
    if never.contains(&address.address) || address.state.dad_failed {
        return false;
    }
    // The address named, whatever its kind: an IPv4 secondary (the
    // second address of the interface is one), an IPv6 temporary one.
    if let SourceKind::Fixed(source) = kind {
        return address.address == source;
    }
    if address.secondary {
        return false;
    }
    match (kind, address.address) {
        (SourceKind::V4Primary, IpAddr::V4(_)) => true,
        (SourceKind::V6LinkLocal, a @ IpAddr::V6(_)) => is_link_local(a),
        (SourceKind::V6Global, a @ IpAddr::V6(v6)) => {
            !is_link_local(a) && !v6.is_loopback() && !v6.is_multicast() && !v6.is_unspecified()
        }
        _ => false,
    }
}

/// Whether `address` may become the source of `kind`'s adverts: one
/// [`may_keep_sending_from`] that is settled: not tentative and, for a
/// global IPv6 source, not deprecated (preferred lifetime 0: being
/// renumbered away, or a VIP held by hand in the form lbd gives its
/// own; a `unicast_src_ip` may be deprecated: it is the one named). One
/// rule for the start and for every later check, so a source picked once
/// is kept by the checks.
fn may_send_from(address: &InterfaceAddress, kind: SourceKind, never: &[IpAddr]) -> bool {
    may_keep_sending_from(address, kind, never)
        && !address.state.tentative
        && !(kind == SourceKind::V6Global && address.state.deprecated)
}

/// The address `kind`'s adverts go from among `present` (the interface's
/// addresses): the first that [`may_send_from`]; for a link-local source
/// with none settled, the first still tentative (the one a MAC change
/// brings: it is the only link-local there is, and adverts from it leave,
/// see [`VrrpSocket::open`]). A global source is never a tentative one
/// (see [`waits_for_dad`] for the start).
fn pick_source(present: &[InterfaceAddress], kind: SourceKind, never: &[IpAddr]) -> Option<IpAddr> {
    present
        .iter()
        .find(|a| may_send_from(a, kind, never))
        .or_else(|| {
            (kind == SourceKind::V6LinkLocal)
                .then(|| {
                    present
                        .iter()
                        .find(|a| may_keep_sending_from(a, kind, never))
                })
                .flatten()
        })
        .map(|a| a.address)
}

/// Whether [`pick_source`] found nothing only because the candidates are
/// still tentative: the start waits for their duplicate address
/// detection (see [`source_address`]) rather than refuse the instance.
fn waits_for_dad(present: &[InterfaceAddress], kind: SourceKind, never: &[IpAddr]) -> bool {
    pick_source(present, kind, never).is_none()
        && present
            .iter()
            .any(|a| a.state.tentative && may_keep_sending_from(a, kind, never))
}

/// What a check of the advert source found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceCheck {
    /// The current source is still one to send from: kept, even if another
    /// would be picked now, so the tie-break address (and the address a
    /// keepalived unicast peer lists) does not flap.
    Keep,
    /// The current source is gone (or no longer one to send from): this
    /// one now.
    Switch(IpAddr),
    /// The current source is gone and there is none to replace it.
    Gone,
}

/// Whether adverts sent from `current`, of `kind`, still leave: the
/// interface's primary IPv4, link-local or global IPv6 address can change
/// under lbd (an address renumbered, a new MAC's EUI-64 link-local), and a
/// send from an address the node no longer has fails (or, IPv6, leaves
/// from an address the peer no longer expects), so the peer hears nothing
/// and takes over while this node keeps the VIPs. A current source that
/// is only tentative again (DAD re-run after an admin down/up) is kept:
/// it is the same address, and adverts from it leave. A deprecated global
/// one is left for a settled one if there is one (it is being renumbered
/// away), else kept. Pure: `present` is the interface's addresses now,
/// `never` those never sent from (see [`never_sources`]).
fn check_source(
    current: IpAddr,
    present: &[InterfaceAddress],
    kind: SourceKind,
    never: &[IpAddr],
) -> SourceCheck {
    let held = present
        .iter()
        .find(|a| a.address == current && may_keep_sending_from(a, kind, never));
    match (held, pick_source(present, kind, never)) {
        // A settled one is never the deprecated current: it is another.
        (Some(held), Some(next)) if kind == SourceKind::V6Global && held.state.deprecated => {
            SourceCheck::Switch(next)
        }
        (Some(_), _) => SourceCheck::Keep,
        (None, Some(next)) => SourceCheck::Switch(next),
        (None, None) => SourceCheck::Gone,
    }
}

/// Whether a failed send may be the source's fault (no longer an address
/// of the node): Linux says EINVAL (IPv6, or an IPv4 source it refuses),
/// EADDRNOTAVAIL or ENETUNREACH (IPv4: the source is not local). Those
/// look again at once rather than at the next periodic check.
fn source_may_be_stale(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EINVAL | libc::EADDRNOTAVAIL | libc::ENETUNREACH)
    )
}

/// The shortest time between two looks at the source prompted by failed
/// sends: adverts may go every 10 ms, and a send that keeps failing for
/// another reason (an unreachable unicast peer) must not dump the
/// interface's addresses each time.
const SOURCE_RECHECK_MIN: Duration = Duration::from_millis(100);

/// Whether a failed send at `now` may look at the source again, the last
/// look having been at `last` (see [`SOURCE_RECHECK_MIN`]).
fn source_recheck_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= SOURCE_RECHECK_MIN)
}

/// What the [`Instance`] tells its driver.
struct Inputs {
    /// The effective priority (tracking).
    priority: watch::Receiver<u8>,
    /// How many times the interface's link came back up.
    link_ups: watch::Receiver<u64>,
    /// The interface MAC the data plane accepts frames for.
    data_plane_mac: watch::Receiver<[u8; 6]>,
    /// Set once the peer's full connection-table dump arrived.
    synced: watch::Receiver<bool>,
    /// Fires (or is dropped) to stop.
    stop: oneshot::Receiver<()>,
}

struct Driver {
    config: VrrpConfig,
    interface: Interface,
    /// Adds and removes the addresses.
    netlink: Netlink,
    /// Reads the interface (see [`Looks`]).
    looks: Looks,
    /// Sends the announcements (see [`AnnounceFn`]).
    announce_with: AnnounceFn,
    /// The interface MAC the data plane accepts frames for, as the engine
    /// last told (see [`Instance::data_plane_mac`]).
    data_plane_mac: [u8; 6],
    /// A MAC change seen and not yet followed (see [`MacChange`]).
    mac_change: MacChange,
    /// When the newest look at the link whose answer was taken began:
    /// answers of looks begun earlier are stale (see [`newer_look`]).
    link_read_from: Option<Instant>,
    /// The same for the looks at the addresses.
    addresses_read_from: Option<Instant>,
    socket: VrrpSocket,
    machine: Machine,
    status: watch::Sender<InstanceStatus>,
    ignored: BTreeMap<String, u64>,
    /// The rate limits of warnings about adverts ignored for a fault.
    complaints: Complaints,
    holding: bool,
    /// A release left addresses behind (warned once; retried quietly).
    release_failing: bool,
    /// The gratuitous ARP / NA rounds of the current claim: cancelled when
    /// the addresses are released, and with the driver.
    announcer: Announcer,
    state_file: Option<PathBuf>,
    /// The notify commands started, shared with the [`Instance`].
    notifies: Notifies,
    /// The machine began a hold of preemption for the peer's flows when
    /// the source came back (see [`Machine::source_back`]): the loop
    /// lets it run its course, as after a link outage.
    source_hold_began: bool,
    /// When the source was last looked at after a failed send (see
    /// [`source_recheck_due`]).
    source_checked_at: Option<Instant>,
    /// The addresses adverts never go from (see [`never_sources`]).
    never: Vec<IpAddr>,
    /// The interface's link as the checks saw it (see [`LinkWatch`]).
    link: LinkWatch,
    /// The priority tracking set last (see [`Instance::set_priority`]):
    /// the machine's, but for the link's weight (see
    /// [`Driver::priority_now`]).
    tracked: u8,
    /// Adverts that did not leave, for the rate limit of their warnings.
    send_failures: SendFailures,
    /// The rate limit of warnings about looks at the link that failed.
    link_query_log: LogLimit,
}

/// The interface's link as the driver's own checks (every
/// [`ADDRESS_CHECK`]) see it, for the machine's outage rule (see
/// [`Machine::link_up`]): when it went down, at the earliest, and that it
/// came back even if tracking (every second) missed the outage.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct LinkWatch {
    /// The last check that saw the link up.
    up_at: Option<Instant>,
    /// A check saw it down, and none up since.
    down: bool,
    /// Looks in a row that could not read the link (see
    /// [`Self::failed`]).
    failing: u32,
    /// The first of them.
    failing_since: Option<Instant>,
    /// The interface's carrier counter at the last look (see
    /// [`carrier_changes`]; `None`: not read): a change the next look
    /// finds with the link up is an outage no look saw (see
    /// [`LinkChange::Flapped`]).
    carrier_changes: Option<u64>,
}

/// How many looks in a row that could not read the link, over at least
/// [`LINK_UNKNOWN_AFTER`], end an outage a check saw (see
/// [`LinkWatch::failed`]): three checks, 1 s, about lbd's own link check's
/// period, so a netlink hiccup does not end one.
const LINK_UNKNOWN_LOOKS: u32 = 3;

/// See [`LINK_UNKNOWN_LOOKS`].
const LINK_UNKNOWN_AFTER: Duration = Duration::from_secs(1);

/// Least time between two warnings about looks at the link that failed.
const LINK_QUERY_LOG_EVERY: Duration = Duration::from_secs(10);

/// What a check of the link tells the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkChange {
    /// Down, since at the earliest this (the last time it was seen up).
    Down(Instant),
    /// Back up after a check saw it down.
    Up,
    /// Up at this look and the last, but the carrier went down and up
    /// between them (shorter than [`ADDRESS_CHECK`], so no look saw it:
    /// the peer may have taken over meanwhile, with adverts 0.15 s apart
    /// or less); down since at the earliest this.
    Flapped(Instant),
}

/// The interface's carrier counter (`/sys/class/net/IF/carrier_changes`:
/// how many times its carrier went down or up), if it can be read for
/// this very interface (the name's `ifindex` is ours: not one renamed or
/// re-created since, nor another namespace's). Read at each look at the
/// link and before each master advert: it tells of outages too short for
/// a look to see (see [`LinkChange::Flapped`]).
fn carrier_changes(interface: &Interface) -> Option<u64> {
    let dir = Path::new("/sys/class/net").join(&interface.name);
    let read = |file: &str| -> Option<u64> {
        std::fs::read_to_string(dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    if read("ifindex")? != u64::from(interface.index) {
        return None;
    }
    read("carrier_changes")
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

impl LinkWatch {
    /// A check at `now` saw the link `up`: what changed.
    fn saw(&mut self, up: bool, now: Instant) -> Option<LinkChange> {
        self.failing = 0;
        self.failing_since = None;
        if up {
            self.up_at = Some(now);
            std::mem::take(&mut self.down).then_some(LinkChange::Up)
        } else if self.down {
            None
        } else {
            self.down = true;
            Some(LinkChange::Down(self.up_at.unwrap_or(now)))
        }
    }

    /// A look at `now` could not read the link (its netlink query failed).
    /// Unknown is not down: once [`LINK_UNKNOWN_LOOKS`] looks in a row
    /// over at least [`LINK_UNKNOWN_AFTER`] have failed, an outage a check
    /// saw counts as over ([`LinkChange::Up`], once), so a backup's
    /// Master_Down_Timer runs again (none runs while the link is down, see
    /// [`Machine::next_deadline`]) instead of waiting for a look that
    /// works, or for tracking's, which tells only of outages it saw. The
    /// time it was last seen up stays the one a check saw.
    fn failed(&mut self, now: Instant) -> Option<LinkChange> {
        self.failing = self.failing.saturating_add(1);
        let since = *self.failing_since.get_or_insert(now);
        let unknown = self.failing >= LINK_UNKNOWN_LOOKS
            && now.saturating_duration_since(since) >= LINK_UNKNOWN_AFTER;
        (unknown && std::mem::take(&mut self.down)).then_some(LinkChange::Up)
    }

    /// [`Self::saw`], with the interface's carrier counter read at the
    /// same look (`None`: unreadable, no baseline): a link up now, seen up
    /// at the last look too, whose counter moved meanwhile went down and
    /// up again unseen ([`LinkChange::Flapped`], from the last time it was
    /// known steady).
    fn saw_counting(
        &mut self,
        up: bool,
        carrier_changes: Option<u64>,
        now: Instant,
    ) -> Option<LinkChange> {
        let moved = matches!(
            (self.carrier_changes, carrier_changes),
            (Some(before), Some(after)) if before != after
        );
        self.carrier_changes = carrier_changes;
        let since = self.up_at.unwrap_or(now);
        let change = self.saw(up, now);
        match change {
            None if up && moved => Some(LinkChange::Flapped(since)),
            change => change,
        }
    }

    /// A cheap look at the carrier counter alone, at `now` (before each
    /// master advert): whether it moved since the last full look, which is
    /// then due before the advert leaves. Unmoved, a link seen up stayed
    /// up: it counts as seen up at `now`, so an outage found later dates
    /// from here rather than from the last full look, up to 0.5 s before.
    fn carrier_moved(&mut self, carrier_changes: Option<u64>, now: Instant) -> bool {
        match (self.carrier_changes, carrier_changes) {
            (Some(before), Some(after)) if before != after => true,
            (Some(_), Some(_)) => {
                if !self.down && self.up_at.is_some() {
                    self.up_at = Some(now);
                }
                false
            }
            _ => false,
        }
    }

    /// Tracking told of the link back up at `now` (the checks may have
    /// missed the outage, or not seen its end yet).
    /// `carrier_changes` is the carrier counter now: the flaps of that
    /// outage are not found again by the next look.
    fn came_up(&mut self, now: Instant, carrier_changes: Option<u64>) {
        self.up_at = Some(now);
        self.down = false;
        self.carrier_changes = carrier_changes;
    }
}

/// The priority an instance configured with `configured` runs with when
/// tracking gives it `tracked` and the link is `down` or not: `weight`
/// (`track_interface`) less while down, at least 1. The owner's (255) is
/// fixed, as tracking leaves it.
fn with_link_weight(configured: u8, tracked: u8, weight: u8, down: bool) -> u8 {
    if configured == OWNER_PRIORITY || !down {
        return tracked;
    }
    tracked.saturating_sub(weight).max(1)
}

/// Least time between two warnings about adverts that did not leave: with
/// the link down every advert fails, up to 100 a second.
const SEND_FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// The rate limit of the warnings about adverts that did not leave: the
/// first failure is said at once, then one line per
/// [`SEND_FAILURE_LOG_EVERY`] with those left unsaid, whether or not
/// adverts left in between (intermittent failures, a full buffer now and
/// then, are said no more often than a run of them). The first advert
/// that leaves after a run of failures that was warned about says how
/// many that run counted; after a run said nothing about, nothing is said
/// (its failures are counted in the next warning's unsaid ones).
#[derive(Debug, Clone)]
struct SendFailures {
    limit: LogLimit,
    /// Failed sends since the last advert that left.
    failed: u64,
    /// A warning was said since the last advert that left.
    warned: bool,
}

impl Default for SendFailures {
    fn default() -> Self {
        Self {
            limit: LogLimit::new(SEND_FAILURE_LOG_EVERY),
            failed: 0,
            warned: false,
        }
    }
}

impl SendFailures {
    /// A send failed at `now`: `Some(n)` to warn, with `n` failures left
    /// unsaid since the last warning, or `None` (counted).
    fn failed(&mut self, now: Instant) -> Option<u64> {
        self.failed = self.failed.saturating_add(1);
        let warn = self.limit.allow(now);
        self.warned |= warn.is_some();
        warn
    }

    /// An advert left: `Some(n)` with the sends that failed before it, if
    /// a warning was said about them. The rate limit runs on.
    fn sent(&mut self) -> Option<u64> {
        let failed = std::mem::take(&mut self.failed);
        std::mem::take(&mut self.warned).then_some(failed)
    }
}

/// A change of the interface's MAC the driver saw (see
/// [`Driver::follow_mac`]) and does not announce yet.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct MacChange {
    /// The new MAC, and when a look first saw it.
    pending: Option<([u8; 6], Instant)>,
}

/// The interface's MAC changed under lbd (a bond's `fail_over_mac`, `ip
/// link set address`): the driver follows it only once the data plane
/// accepts frames for it. The data plane balances only frames addressed
/// to the MAC the engine wrote into it, and passes the others up the
/// stack, where a VIP held by VRRP is local and the kernel answers them
/// with resets: announcing the new MAC first would cut the connections
/// of every client that moves to it before the engine's next tick. So
/// one party follows the MAC into the data plane, the engine, and tells
/// the instances ([`Instance::data_plane_mac`]); the driver announces
/// then, or after [`MAC_CONFIRM_LIMIT`] if it is never told.
impl MacChange {
    /// A look at `now` saw the interface with `seen` (None: no MAC read),
    /// the driver knowing it with `known` and the data plane accepting
    /// `data_plane`: the MAC to follow now, if any. A MAC the data plane
    /// does not accept yet is kept pending, and followed once it does
    /// ([`Self::confirmed`]) or once pending too long ([`Self::overdue`]);
    /// one that changed back before that is forgotten.
    fn seen(
        &mut self,
        known: [u8; 6],
        seen: Option<[u8; 6]>,
        data_plane: [u8; 6],
        now: Instant,
    ) -> Option<[u8; 6]> {
        let seen = seen?;
        if seen == known {
            self.pending = None;
            return None;
        }
        let mac = crate::netlink::mac_to_follow(known, Some(seen))?;
        if mac == data_plane {
            self.pending = None;
            return Some(mac);
        }
        if self.pending.is_none_or(|(pending, _)| pending != mac) {
            self.pending = Some((mac, now));
        }
        self.overdue(now)
    }

    /// The engine told that the data plane accepts `data_plane`: the MAC
    /// to follow now, if it is the one pending.
    fn confirmed(&mut self, data_plane: [u8; 6]) -> Option<[u8; 6]> {
        let (mac, _) = self.pending.filter(|(mac, _)| *mac == data_plane)?;
        self.pending = None;
        Some(mac)
    }

    /// The MAC pending since [`MAC_CONFIRM_LIMIT`] or longer at `now`, to
    /// follow without the engine's word.
    fn overdue(&mut self, now: Instant) -> Option<[u8; 6]> {
        let (mac, _) = self
            .pending
            .filter(|(_, since)| now.saturating_duration_since(*since) >= MAC_CONFIRM_LIMIT)?;
        self.pending = None;
        Some(mac)
    }

    /// Whether a MAC change waits for the data plane: announcements wait
    /// with it (see [`Driver::announce`]).
    fn waiting(&self) -> bool {
        self.pending.is_some()
    }
}

impl Driver {
    /// Serves the instance until it is stopped: adverts from the wire,
    /// the advert / master-down timer, tracking's inputs, and the periodic
    /// look at the interface (every [`ADDRESS_CHECK`]: the advert source,
    /// the link, its MAC, the addresses while master).
    ///
    /// The periodic look runs beside the other arms, never inside one: it
    /// is a future owned by the loop (`looking`), polled by its own
    /// `select!` arm, and its answer handled when it comes. A look held up
    /// behind `rtnl_lock` (or whose reply netlink-proto lost, given up
    /// after [`addresses::NETLINK_LIMIT`]) thus never delays an advert nor
    /// the reading of the peer's: awaited inside an arm, it stopped the
    /// whole loop, and the backup took over from a healthy master. That
    /// is all a separate task would give, without a channel, and its
    /// answer is still handled on the loop, in order with the machine.
    /// A tick while a look is in flight starts none; the next starts as
    /// that one answers. What still awaits
    /// netlink inside an arm, each request within the same limit: the
    /// address changes of a transition (adding, removing the addresses, in
    /// order with the machine), the look a backup makes before it takes
    /// over and a master whose link was down or flapped before its advert
    /// (see the timer's arm), the look at the source after a failed send,
    /// and a non-master's retry of a failed release (it sends no adverts).
    async fn run(mut self, inputs: Inputs, resume: bool, sync_hold: bool, replicates: bool) {
        let Inputs {
            mut priority,
            mut link_ups,
            mut data_plane_mac,
            mut synced,
            mut stop,
        } = inputs;
        // With replication this node's table starts empty (or stale): a
        // preemption waits for the master's full dump, within bounds.
        if sync_hold {
            self.machine
                .hold_preemption(Instant::now(), PREEMPT_SYNC_HOLD);
        }
        // And again after a link outage the peer may have taken over in.
        if replicates {
            self.machine.hold_after_outages(PREEMPT_SYNC_HOLD);
        }
        let mut synced_seen = false;
        let mut link_ups_closed = false;
        let actions = if resume {
            self.machine.resume_master(Instant::now())
        } else {
            self.machine.startup(Instant::now())
        };
        self.carry_out(actions).await;
        let mut check = tokio::time::interval(ADDRESS_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut looking: Option<PeriodicLookFuture> = None;
        // A tick came while a look was in flight: the next starts as that
        // one answers.
        let mut look_due = false;
        let mut data_plane_mac_closed = false;
        loop {
            let deadline = self
                .machine
                .next_deadline()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let actions = tokio::select! {
                _ = &mut stop => {
                    let actions = self.machine.shutdown(Instant::now());
                    self.carry_out(actions).await;
                    info!(vrid = self.config.vrid, "VRRP instance stopped");
                    return;
                }
                received = self.socket.recv() => match received {
                    Ok(packet) => {
                        let was_master = self.machine.state() == State::Master;
                        let actions = self.on_packet(&packet);
                        // A stalled master's step back (see the timer's arm).
                        if self.stepped_back_for_sync(was_master, &actions) {
                            synced_seen = true;
                        }
                        actions
                    }
                    Err(error) => {
                        warn!(vrid = self.config.vrid, %error, "receiving VRRP failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Vec::new()
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let was_master = self.machine.state() == State::Master;
                    let actions = self.on_deadline().await;
                    // A master stepping back (a link outage, a stall, see
                    // `Machine::link_up`): dumps counted since start
                    // cannot tell the one after it, the hold runs its
                    // course.
                    if self.stepped_back_for_sync(was_master, &actions) {
                        synced_seen = true;
                    }
                    actions
                }
                _ = check.tick() => {
                    if looking.is_none() {
                        looking = Some(self.periodic_look());
                    } else {
                        look_due = true;
                        debug!(vrid = self.config.vrid, "VRRP: the last look at the interface is still waiting for netlink; the next starts as it answers");
                    }
                    if let Some(mac) = self.mac_change.overdue(Instant::now()) {
                        self.adopt_mac(mac, false);
                    }
                    self.retry_release().await;
                    Vec::new()
                }
                look = periodic_look_done(&mut looking) => {
                    looking = std::mem::take(&mut look_due).then(|| self.periodic_look());
                    let present = self.on_addresses_read(look.addresses);
                    let actions = self.on_link_read(look.link);
                    if self.stepped_back(&actions) {
                        // Dumps counted since start cannot tell the one
                        // after the outage: the hold runs its course.
                        synced_seen = true;
                    }
                    if let Some(present) = present {
                        self.restore_addresses(&present).await;
                    }
                    actions
                }
                changed = data_plane_mac.changed(), if !data_plane_mac_closed => {
                    match changed {
                        Ok(()) => {
                            let mac = *data_plane_mac.borrow_and_update();
                            self.data_plane_mac = mac;
                            if let Some(mac) = self.mac_change.confirmed(mac) {
                                self.adopt_mac(mac, true);
                            }
                        }
                        Err(_) => data_plane_mac_closed = true,
                    }
                    Vec::new()
                }
                changed = synced.changed(), if !synced_seen => {
                    synced_seen = true;
                    if changed.is_ok() && *synced.borrow_and_update() {
                        if self.machine.holding_for_sync(Instant::now()) {
                            info!(vrid = self.config.vrid, "VRRP: the peer's connection table arrived; preemption no longer waits for it");
                        }
                        self.machine.peer_synced();
                    }
                    Vec::new()
                }
                changed = link_ups.changed(), if !link_ups_closed => match changed {
                    Ok(()) => {
                        link_ups.borrow_and_update();
                        let now = Instant::now();
                        // Tracking's latest too, taken with the link's
                        // weight given back by `link_up` itself, so the
                        // advert that goes with the announcements carries
                        // them.
                        if priority.has_changed().unwrap_or(false) {
                            self.tracked = *priority.borrow_and_update();
                        }
                        self.link.came_up(now, carrier_changes(&self.interface));
                        let back = self.on_link_back(now);
                        if self.stepped_back(&back) {
                            synced_seen = true;
                        }
                        back
                    }
                    Err(_) => {
                        link_ups_closed = true;
                        Vec::new()
                    }
                },
                changed = priority.changed() => match changed {
                    Ok(()) => {
                        self.tracked = *priority.borrow_and_update();
                        self.follow_priority(Instant::now())
                    }
                    Err(_) => Vec::new(),
                },
            };
            self.carry_out(actions).await;
            // A hold begun as the source came back (a look in any arm):
            // dumps counted since start cannot tell the one after it.
            if std::mem::take(&mut self.source_hold_began) {
                synced_seen = true;
            }
        }
    }

    /// The machine's deadline passed (see [`Machine::next_deadline`]).
    ///
    /// A backup looks at its link before it takes over: one that hears no
    /// master because its link is down must not (see
    /// [`Machine::on_timer`]), and with adverts 0.1 s apart its timer
    /// runs out before the next check. A master whose link was down looks
    /// before each advert: one back up hears of it first (see
    /// [`Machine::link_up`]), so no advert leaves with the priority
    /// lowered for the outage, nor one a replicating master must not
    /// send. And a master looks again when the carrier counter moved
    /// since the last look: an outage too short for the checks may have
    /// let the peer take over (see `LinkChange::Flapped`).
    ///
    /// Then the adverts already queued in the socket are heard (see
    /// [`Self::drain_queued`]) before the timer is acted on: a backup
    /// that did not run for a while (SIGSTOP, a cgroup freeze, a VM paused
    /// on a hypervisor that moves the guest clock on) wakes with both its
    /// timer run out and the live master's adverts waiting, and `select!`
    /// picks its arm at random: taking over first made the VIPs flap. A
    /// stalled master likewise hears first whether the peer took over
    /// (see [`Machine::stalled`]). Draining here, bounded, rather than a
    /// `biased` `select!` with the socket first: a flood of packets on
    /// the socket cannot keep the timer from ever firing.
    async fn on_deadline(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        let flapped = self.machine.state() == State::Master
            && !self.link.down
            && self
                .link
                .carrier_moved(carrier_changes(&self.interface), Instant::now());
        if self.machine.state() == State::Backup || self.link.down || flapped {
            actions = self.follow_link().await;
            // Logs a master's step back; the caller sees it in the actions.
            self.stepped_back(&actions);
        }
        actions.extend(self.drain_queued());
        let now = Instant::now();
        self.warn_if_stalled(now);
        actions.extend(self.machine.on_timer(now));
        actions
    }

    /// Whether `actions`, of a machine that `was_master`, step back to
    /// backup holding preemption for the peer's flows (a link outage or a
    /// stall, see [`Machine::link_up`], [`Machine::stalled`]).
    fn stepped_back_for_sync(&self, was_master: bool, actions: &[Action]) -> bool {
        was_master
            && actions.contains(&Action::BecomeBackup)
            && self.machine.holding_for_sync(Instant::now())
    }

    /// Hands the machine the packets already queued in the socket, at most
    /// [`DRAIN_LIMIT`], without waiting (see [`Self::on_deadline`]); what
    /// it decided.
    fn drain_queued(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        for _ in 0..DRAIN_LIMIT {
            match self.socket.try_recv() {
                Ok(Some(packet)) => actions.extend(self.on_packet(&packet)),
                Ok(None) => break,
                Err(error) => {
                    debug!(vrid = self.config.vrid, %error, "VRRP: reading the queued packets failed; the receive arm reads on");
                    break;
                }
            }
        }
        actions
    }

    /// Says so when this master did not advertise for long enough that the
    /// peer may have taken over (see [`Machine::stalled`]): the machine
    /// reclaims the addresses or steps back, as after a link outage.
    fn warn_if_stalled(&self, now: Instant) {
        if !self.machine.stalled(now) {
            return;
        }
        let silent_ms = self
            .machine
            .silent_for(now)
            .map(|silence| u64::try_from(silence.as_millis()).unwrap_or(u64::MAX));
        warn!(
            vrid = self.config.vrid,
            silent_ms,
            "VRRP: no advert left this master for longer than the peer's master-down interval (lbd did not run: SIGSTOP, a cgroup freeze, a paused VM, starvation); the peer may have taken the VIPs, so this node reclaims them, or with replication steps down to backup until the peer's connection table is here"
        );
    }

    fn ignore(&mut self, label: &str) -> Vec<Action> {
        *self.ignored.entry(label.to_owned()).or_default() += 1;
        self.publish();
        Vec::new()
    }

    fn on_packet(&mut self, packet: &Received) -> Vec<Action> {
        if packet.src == self.socket.local() {
            return Vec::new(); // our own, looped back
        }
        let (ad, _mode) = match Advertisement::decode(&packet.payload, packet.src, packet.dst) {
            Ok(decoded) => decoded,
            Err(error) => {
                if matches!(error, DecodeError::Checksum) {
                    self.complain(error.label(), packet.src, &error, None);
                } else if let Some(version) =
                    complaints::other_version_for(&error, &packet.payload, self.config.vrid)
                {
                    let why = format!("VRRP version {version} with our VRID {}: each router ignores the other's adverts, so both may be master; keepalived speaks version 2 unless its vrrp_instance sets `vrrp_version 3`", self.config.vrid);
                    self.complain(error.label(), packet.src, &why, None);
                } else {
                    debug!(vrid = self.config.vrid, src = %packet.src, %error, "malformed VRRP packet ignored");
                }
                return self.ignore(error.label());
            }
        };
        if let Err(invalid) = validate_from(
            &ad,
            packet.ttl,
            Some(packet.src),
            self.config.vrid,
            &self.config.addresses,
            &self.config.unicast_peers,
            self.config.unicast_peer_hops,
        ) {
            match invalid {
                // Another virtual router on the link: not a fault.
                Invalid::OtherVrid(_) => {}
                Invalid::AddressMismatch => {
                    let differing = complaints::differing(&ad.addresses, &self.config.addresses);
                    self.complain(invalid.label(), packet.src, &invalid, Some(differing));
                }
                Invalid::Ttl(_) if self.config.unicast_peers.contains(&packet.src) => {
                    let why = format!("{invalid} from unicast peer {}, which allows {} router hop(s) (unicast_peer_hops): if routers lie between the peers, set unicast_peer_hops to their number; otherwise this advert was forged from off the link", packet.src, self.config.unicast_peer_hops);
                    self.complain(invalid.label(), packet.src, &why, None);
                }
                Invalid::Ttl(_) if !self.config.unicast_peers.is_empty() => {
                    let why = format!("{invalid} from a sender that is none of unicast_peers (a peer's adverts may be routed: list the address they come from, and set unicast_peer_hops)");
                    self.complain(invalid.label(), packet.src, &why, None);
                }
                Invalid::Ttl(_) => self.complain(invalid.label(), packet.src, &invalid, None),
            }
            return self.ignore(invalid.label());
        }
        let now = Instant::now();
        self.warn_if_stalled(now);
        self.machine.on_advert(&ad, packet.src, now)
    }

    /// Warns (at most once a minute per reason and peer) about an advert
    /// from `peer` ignored for a fault on the link: an address list other
    /// than ours (`differing`: only theirs, only ours), which leaves both
    /// routers master, a TTL that says it was routed, a bad checksum.
    fn complain(
        &mut self,
        reason: &'static str,
        peer: IpAddr,
        error: &dyn std::fmt::Display,
        differing: Option<(Vec<IpAddr>, Vec<IpAddr>)>,
    ) {
        let Some(suppressed) = self.complaints.allow(reason, peer, Instant::now()) else {
            return;
        };
        let vrid = self.config.vrid;
        match differing {
            Some((only_theirs, only_ours)) => warn!(
                vrid,
                %peer,
                reason,
                only_theirs = ?only_theirs,
                only_ours = ?only_ours,
                suppressed,
                "VRRP advert ignored: {error}; each router ignores the other's adverts, so both may be master: give both the same addresses"
            ),
            None => warn!(vrid, %peer, reason, suppressed, "VRRP advert ignored: {error}"),
        }
    }

    async fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => {
                    // An advert that did not leave tells the backup
                    // nothing: a restart must not resume mastership on it.
                    if self.send_advert(priority).await && priority > 0 {
                        self.record_state(Recorded::Master);
                    }
                }
                Action::BecomeMaster => {
                    info!(
                        vrid = self.config.vrid,
                        priority = self.machine.priority(),
                        "VRRP: became master"
                    );
                    self.transition(action).await;
                }
                Action::BecomeBackup if self.machine.source_is_gone() => {
                    warn!(vrid = self.config.vrid, master = ?self.machine.master_address(), "VRRP: became backup, giving up the VIPs: no address to send adverts from, so the peer hears none and takes over (keepalived's FAULT); this node does not take over until one is back");
                    self.transition(action).await;
                }
                Action::BecomeBackup => {
                    info!(vrid = self.config.vrid, master = ?self.machine.master_address(), "VRRP: became backup");
                    self.transition(action).await;
                }
                Action::BecomeInitialize => self.transition(action).await,
                Action::Reclaim => {
                    if self.holding {
                        info!(vrid = self.config.vrid, "VRRP: master again after the link was down or lbd did not run; announcing the VIPs again, in case the other node took them meanwhile");
                        self.announce(self.config.announce_count);
                    }
                }
                Action::Refresh => {
                    // Rounds still running (a claim, a reclaim) cover it.
                    if self.holding && !self.announcer.running() {
                        debug!(
                            vrid = self.config.vrid,
                            "VRRP: periodic announcement of the VIPs"
                        );
                        self.announce(1);
                    }
                }
                Action::Reannounce => {
                    info!(vrid = self.config.vrid, "VRRP: another router claims our addresses with a lower priority; announcing them again");
                    // Rounds still running (a claim just made) go on:
                    // one more round would cut them short.
                    if !self.announcer.running() {
                        self.announce(1);
                    }
                }
            }
        }
        self.publish();
    }

    /// Carries out the steps of the change of state `action` (see
    /// [`transition_steps`]), in order.
    async fn transition(&mut self, action: Action) {
        for step in transition_steps(action).unwrap_or_default() {
            match *step {
                Step::Record(state) => self.record_state(state),
                Step::TakeAddresses => self.take_addresses().await,
                Step::ReleaseAddresses => self.release_addresses().await,
                Step::Notify(state) => self.notify(state),
            }
        }
    }

    /// Sends an advert of `priority` to the group or each unicast peer;
    /// whether every one left. A send refused for its source looks at the
    /// interface's addresses again and, if the source moved, sends once
    /// more from the new one.
    async fn send_advert(&mut self, priority: u8) -> bool {
        let ad = Advertisement {
            vrid: self.config.vrid,
            priority,
            max_adver_int_cs: self.machine.settings().adver_interval_cs,
            addresses: self.config.addresses.clone(),
        };
        let targets: Vec<IpAddr> = if self.config.unicast_peers.is_empty() {
            vec![Family::of(&self.socket.local()).multicast_group()]
        } else {
            self.config.unicast_peers.clone()
        };
        let mut all_sent = true;
        for dst in targets {
            let mut result = self.send_to(&ad, dst).await;
            if let Err(error) = &result {
                let now = Instant::now();
                if source_may_be_stale(error) && source_recheck_due(self.source_checked_at, now) {
                    self.source_checked_at = Some(now);
                    if self.follow_source().await {
                        result = self.send_to(&ad, dst).await;
                    }
                }
            }
            if let Err(error) = result {
                if let Some(suppressed) = self.send_failures.failed(Instant::now()) {
                    warn!(vrid = self.config.vrid, %dst, from = %self.socket.local(), %error, suppressed, "sending a VRRP advert failed (while they fail, logged at most every {} s, with the failures left unsaid)", SEND_FAILURE_LOG_EVERY.as_secs());
                }
                all_sent = false;
            }
        }
        if all_sent {
            if let Some(failed) = self.send_failures.sent() {
                info!(
                    vrid = self.config.vrid,
                    failed, "VRRP adverts leave again after failed sends"
                );
            }
        }
        all_sent
    }

    /// Encodes `ad` from the current source to `dst` and sends it.
    async fn send_to(&self, ad: &Advertisement, dst: IpAddr) -> std::io::Result<()> {
        let local = self.socket.local();
        // keepalived 2.2.7 sends (and expects) the IPv4 pseudo-header.
        let payload = ad
            .encode(local, dst, ChecksumMode::PseudoHeader)
            .map_err(|error| std::io::Error::other(format!("encoding the advert: {error}")))?;
        self.socket.send(&payload, dst).await
    }

    /// Looks again at the address adverts go from, at once (after a
    /// failed send; see [`Self::on_addresses_read`]); whether it moved.
    async fn follow_source(&mut self) -> bool {
        let read = self.looks.read_addresses(self.interface.index).await;
        let current = self.socket.local();
        self.on_addresses_read(read);
        self.socket.local() != current
    }

    /// The periodic look at the interface, to run beside the loop's other
    /// arms (see [`Self::run`]).
    fn periodic_look(&self) -> PeriodicLookFuture {
        let addresses = self.looks.read_addresses(self.interface.index);
        let link = self.looks.read_link(&self.interface);
        Box::pin(async move {
            let (addresses, link) = tokio::join!(addresses, link);
            PeriodicLook { addresses, link }
        })
    }

    /// Takes a look at the interface's addresses: the advert source
    /// ([`Self::follow_present_source`]); the addresses, if they were read
    /// and no later look was taken before (see [`newer_look`]). A failure
    /// to look is left to the next check.
    fn on_addresses_read(&mut self, read: AddressRead) -> Option<Vec<InterfaceAddress>> {
        if !newer_look(&mut self.addresses_read_from, read.started) {
            return None;
        }
        match read.present {
            Ok(present) => {
                self.follow_present_source(&present);
                Some(present)
            }
            Err(error) => {
                debug!(
                    vrid = self.config.vrid,
                    error = format!("{error:#}"),
                    "reading the interface's addresses for the VRRP source failed"
                );
                None
            }
        }
    }

    /// Checks the address adverts go from against `present`, the
    /// interface's addresses (see [`check_source`]) and, if it moved,
    /// sends from the new one from now on; whether it moved.
    fn follow_present_source(&mut self, present: &[InterfaceAddress]) -> bool {
        let current = self.socket.local();
        let kind = SourceKind::of_instance(Family::of(&current), &self.config);
        match check_source(current, present, kind, &self.never) {
            SourceCheck::Keep => {
                self.source_returned();
                false
            }
            SourceCheck::Switch(next) => {
                if let Err(error) = self.socket.set_local(next) {
                    warn!(vrid = self.config.vrid, %current, %next, %error, "VRRP: cannot send from the interface's new address");
                    return false;
                }
                self.machine.set_primary_address(next);
                self.source_returned();
                info!(
                    vrid = self.config.vrid,
                    interface = %self.interface.name,
                    from = %current,
                    to = %next,
                    "VRRP: the interface's address changed; adverts now go from the new one"
                );
                self.publish();
                true
            }
            SourceCheck::Gone => {
                if !self.machine.source_is_gone() {
                    let meaning = match self.machine.state() {
                        State::Master => "this master announces nothing meanwhile, and gives up mastership and the VIPs (keepalived's FAULT) as soon as it hears the peer take over, or once the peer may have",
                        State::Backup => "this backup does not take over meanwhile: the pair has no standby if the master fails",
                        State::Initialize => "the instance is not running",
                    };
                    warn!(
                        vrid = self.config.vrid,
                        interface = %self.interface.name,
                        address = %current,
                        state = %self.machine.state(),
                        missing = no_source_message(&self.interface.name, present, kind, &self.never),
                        "VRRP: the address adverts go from is gone from the interface, with none to replace it; adverts fail (IPv6: leave from the old address) until one is back; {meaning}"
                    );
                    self.machine.source_gone(Instant::now());
                    self.publish();
                }
                false
            }
        }
    }

    /// A look found an address to send adverts from: if none was found
    /// before, the machine hears of it (see [`Machine::source_back`]).
    fn source_returned(&mut self) {
        let Some(since) = self.machine.source_gone_since() else {
            return;
        };
        let now = Instant::now();
        info!(
            vrid = self.config.vrid,
            interface = %self.interface.name,
            gone_ms = u64::try_from(now.saturating_duration_since(since).as_millis()).unwrap_or(u64::MAX),
            state = %self.machine.state(),
            "VRRP: the interface has an address to send adverts from again"
        );
        if self.machine.source_back(now) {
            info!(
                vrid = self.config.vrid,
                hold_s = PREEMPT_SYNC_HOLD.as_secs(),
                "VRRP: this node gave up mastership for want of a source; preemption waits for the peer's connection table, so its connections are not cut"
            );
            self.source_hold_began = true;
        }
        self.publish();
    }

    async fn take_addresses(&mut self) {
        for address in &self.config.addresses {
            let prefix = addresses::host_prefix(*address);
            if let Err(error) = addresses::bounded(
                format!("adding VIP {address} to {}", self.interface.name),
                self.netlink
                    .add_address(self.interface.index, *address, prefix),
            )
            .await
            {
                warn!(vrid = self.config.vrid, %address, error = format!("{error:#}"), "adding a VIP failed");
            }
        }
        self.holding = true;
        self.announce(self.config.announce_count);
    }

    /// Sends `count` rounds of gratuitous ARP / NA for the addresses,
    /// `announce_interval` apart, replacing rounds still in flight. None
    /// while the interface's new MAC waits for the data plane (see
    /// [`MacChange`]): following it announces in full.
    fn announce(&mut self, count: u32) {
        if self.mac_change.waiting() {
            debug!(
                vrid = self.config.vrid,
                "VRRP: announcement held until the data plane accepts the interface's new MAC"
            );
            return;
        }
        let (index, mac, addresses) = (
            self.interface.index,
            self.interface.mac,
            self.config.addresses.clone(),
        );
        let announce_with = self.announce_with.clone();
        self.announcer
            .start(count, self.config.announce_interval, move || {
                for address in &addresses {
                    if let Err(error) = announce_with(index, mac, *address) {
                        warn!(%address, %error, "announcing a VIP failed");
                    }
                }
                std::future::ready(())
            });
    }

    /// Looks at the interface's link at once (see [`Self::on_link_read`]).
    async fn follow_link(&mut self) -> Vec<Action> {
        let read = self.looks.read_link(&self.interface).await;
        self.on_link_read(read)
    }

    /// Takes a look at the interface's link, unless a later one was taken
    /// before (see [`newer_look`]): tells the machine of an outage and of
    /// its end (see [`Machine::link_down`], [`Machine::link_up`]), and
    /// follows its MAC ([`Self::follow_mac`]); what the machine decided.
    /// Looks that fail (or got no answer in time) are warned about
    /// (rate-limited), and enough of them end an outage (see
    /// [`LinkWatch::failed`]).
    fn on_link_read(&mut self, read: LinkRead) -> Vec<Action> {
        if !newer_look(&mut self.link_read_from, read.started) {
            return Vec::new();
        }
        let state = match read.state {
            Ok(state) => state,
            Err(error) => {
                let now = Instant::now();
                let change = self.link.failed(now);
                if let Some(suppressed) = self.link_query_log.allow(now) {
                    warn!(vrid = self.config.vrid, error = format!("{error:#}"), failing = self.link.failing, suppressed, "VRRP: reading the interface's link failed (while it fails, logged at most every {} s, with the failures left unsaid)", LINK_QUERY_LOG_EVERY.as_secs());
                }
                if change != Some(LinkChange::Up) {
                    return Vec::new();
                }
                warn!(
                    vrid = self.config.vrid,
                    failing = self.link.failing,
                    "VRRP: the interface's link cannot be read; its outage counts as over (unknown is not down), so a backup's timer runs again"
                );
                return self.on_link_back(now);
            }
        };
        let now = Instant::now();
        let carrier = read.carrier;
        let actions = match state
            .as_ref()
            .and_then(|state| self.link.saw_counting(state.up, carrier, now))
        {
            Some(LinkChange::Down(since)) => {
                self.machine.link_down(since);
                self.warn_link_down();
                // The link's weight off; sent with the next advert that
                // leaves (none while the link is down, see
                // `Machine::set_priority`).
                self.follow_priority(now)
            }
            Some(LinkChange::Up) => {
                if let Some(since) = self.machine.link_down_since() {
                    info!(
                        vrid = self.config.vrid,
                        interface = %self.interface.name,
                        down_ms = u64::try_from(now.saturating_duration_since(since).as_millis()).unwrap_or(u64::MAX),
                        "VRRP: the interface's link is up again"
                    );
                }
                self.on_link_back(now)
            }
            Some(LinkChange::Flapped(since)) => {
                info!(
                    vrid = self.config.vrid,
                    interface = %self.interface.name,
                    "VRRP: the interface's carrier went down and up again between two looks"
                );
                self.machine.link_down(since);
                self.on_link_back(now)
            }
            None => Vec::new(),
        };
        self.follow_mac(state.and_then(|state| state.mac), now);
        actions
    }

    /// Says that the checks found the interface's link down, why, and
    /// what it means for the pair (keepalived's FAULT): no standby while a
    /// backup's link is down, a master keeping its mastership on a dead
    /// link (the peer likely takes over, so both report master).
    fn warn_link_down(&self) {
        let meaning = match self.machine.state() {
            State::Backup => "this backup does not take over while it is down: the pair has no standby if the master fails",
            State::Master => "this master keeps its mastership (and the VIPs) meanwhile; the peer, hearing no adverts, likely takes over, so both report master until the link is back",
            State::Initialize => "the instance is not running",
        };
        warn!(
            vrid = self.config.vrid,
            interface = %self.interface.name,
            state = %self.machine.state(),
            reason = "the interface is not up: administratively down, without carrier, or not operationally up",
            "VRRP: the interface's link is down; {meaning}"
        );
    }

    /// The priority the machine is to run with now: tracking's, less the
    /// link's weight while the checks see the link down (see
    /// [`with_link_weight`]).
    fn priority_now(&self) -> u8 {
        with_link_weight(
            self.config.priority,
            self.tracked,
            self.config.track_interface,
            self.link.down,
        )
    }

    /// Hands the machine [`Self::priority_now`] if it changed (advertised
    /// at once by a master whose link is up).
    fn follow_priority(&mut self, now: Instant) -> Vec<Action> {
        let priority = self.priority_now();
        if priority == self.machine.priority() {
            return Vec::new();
        }
        info!(vrid = self.config.vrid, priority, "VRRP priority changed");
        self.machine.set_priority(priority, now)
    }

    /// The link is back (the checks saw it, or tracking told of it and
    /// the watch knows): the machine hears of it with the priority the
    /// link brings back (see [`Machine::link_up`]).
    fn on_link_back(&mut self, now: Instant) -> Vec<Action> {
        let priority = self.priority_now();
        if priority != self.machine.priority() {
            info!(vrid = self.config.vrid, priority, "VRRP priority changed");
        }
        self.machine.link_up(now, priority)
    }

    /// Whether `actions` (of [`Machine::link_up`]) are a master stepping
    /// back to backup after a long outage; if so, says so.
    fn stepped_back(&self, actions: &[Action]) -> bool {
        let back = actions.contains(&Action::BecomeBackup);
        if back {
            warn!(
                vrid = self.config.vrid,
                hold_s = PREEMPT_SYNC_HOLD.as_secs(),
                "VRRP: the link is back after an outage long enough for the peer to have taken over; stepping down to backup, so its connections are not cut, until its connection table is here"
            );
        }
        back
    }

    /// Follows the interface's MAC when it changed under lbd (a bond's
    /// `fail_over_mac`, `ip link set address`), `seen` at `now`: once the
    /// data plane accepts frames for it (see [`MacChange`]), announcements
    /// carry it ([`Self::adopt_mac`]). Until then announcements wait, and
    /// rounds still running with the old MAC stop: they would draw the
    /// neighbours back to a MAC the interface no longer has.
    fn follow_mac(&mut self, seen: Option<[u8; 6]>, now: Instant) {
        let was_waiting = self.mac_change.waiting();
        if let Some(mac) = self
            .mac_change
            .seen(self.interface.mac, seen, self.data_plane_mac, now)
        {
            self.adopt_mac(mac, true);
        } else if self.mac_change.waiting() && !was_waiting {
            self.announcer.cancel();
            info!(
                vrid = self.config.vrid,
                interface = %self.interface.name,
                "VRRP: the interface's MAC changed; announcing the VIPs with the new one once the data plane accepts frames for it"
            );
        }
    }

    /// Takes `mac` as the interface's MAC; while master the addresses are
    /// announced again at once, since the neighbours still send the VIPs'
    /// traffic to the old MAC. `confirmed`: the data plane accepts frames
    /// for it; otherwise the engine did not tell within
    /// [`MAC_CONFIRM_LIMIT`], and a warning says so.
    fn adopt_mac(&mut self, mac: [u8; 6], confirmed: bool) {
        self.interface.mac = mac;
        if !confirmed {
            warn!(
                vrid = self.config.vrid,
                interface = %self.interface.name,
                "VRRP: the interface's MAC changed, and lbd's data plane did not take it within {} s; following it all the same (frames to it may be passed up unbalanced until the data plane takes it)",
                MAC_CONFIRM_LIMIT.as_secs()
            );
        }
        if self.holding && self.machine.state() == State::Master {
            info!(
                vrid = self.config.vrid,
                interface = %self.interface.name,
                "VRRP: announcing the VIPs with the interface's new MAC"
            );
            self.announce(self.config.announce_count);
        }
    }

    /// While master: puts back addresses missing from `present` (the
    /// interface's, just read), and announces them again.
    async fn restore_addresses(&mut self, present: &[InterfaceAddress]) {
        if !self.holding || self.machine.state() != State::Master {
            return;
        }
        let gone = addresses::missing(present, &self.config.addresses);
        if gone.is_empty() {
            return;
        }
        warn!(vrid = self.config.vrid, missing = ?gone, "VIP addresses vanished from the interface while master; adding them back");
        self.take_addresses().await;
    }

    /// Gives the addresses up. One whose removal failed keeps `holding`
    /// set, and the next check tries again (`retry_release`): a backup
    /// that kept a VIP would answer ARP / ND for it beside the master.
    async fn release_addresses(&mut self) {
        // No more claims, even if rounds of the last one are still due.
        self.announcer.cancel();
        if !self.holding {
            return;
        }
        let mut failed = false;
        for address in &self.config.addresses {
            if let Err(error) =
                addresses::remove(&self.netlink, self.interface.index, *address).await
            {
                if self.release_failing {
                    debug!(vrid = self.config.vrid, %address, error = format!("{error:#}"), "removing a VIP failed again");
                } else {
                    warn!(vrid = self.config.vrid, %address, error = format!("{error:#}"), "removing a VIP failed; tried again at each check (0.5 s) while lbd runs; after a stop, `lbd --release-vips` removes it");
                }
                failed = true;
            }
        }
        self.holding = failed;
        if self.release_failing && !failed {
            info!(
                vrid = self.config.vrid,
                "VRRP: the VIPs a failed removal left are removed"
            );
        }
        self.release_failing = failed;
    }

    /// While not master: gives up the addresses a release could not
    /// remove (see `release_addresses`).
    async fn retry_release(&mut self) {
        if self.holding && self.machine.state() != State::Master {
            self.release_addresses().await;
        }
    }

    /// Records the state, when, and the advert interval this instance
    /// advertises (centiseconds), for the next lbd after a restart (see
    /// [`resume_window`]). A tiny write to a tmpfs, once per advert while
    /// master.
    fn record_state(&self, state: Recorded) {
        if let Some(path) = &self.state_file {
            let record = Record {
                state,
                at: crate::clock::monotonic_ns(),
                advertised: Some(self.machine.settings().adver_interval_cs),
            };
            if let Err(error) = std::fs::write(path, record.line()) {
                debug!(path = %path.display(), %error, "recording the VRRP state failed");
            }
        }
    }

    fn notify(&self, state: &str) {
        spawn_notify(&self.notifies, &self.config, state);
    }

    fn publish(&self) {
        let status = InstanceStatus {
            vrid: self.config.vrid,
            state: self.machine.state(),
            configured_priority: self.config.priority,
            priority: self.machine.priority(),
            master: match self.machine.state() {
                State::Master => Some(self.socket.local()),
                _ => self.machine.master_address(),
            },
            addresses: self.config.addresses.clone(),
            counters: *self.machine.counters(),
            ignored: self.ignored.clone(),
            link_down: self.machine.link_is_down(),
            link_down_since: self.machine.link_down_since().map(unix_seconds),
            no_source: self.machine.source_is_gone(),
            no_source_since: self.machine.source_gone_since().map(unix_seconds),
        };
        self.status.send_replace(status);
    }
}

/// The protocol's settings of an instance's config.
fn settings_of(config: &VrrpConfig) -> Settings {
    Settings {
        vrid: config.vrid,
        priority: config.priority,
        adver_interval_cs: u16::try_from(config.advert_interval.as_millis() / 10).unwrap_or(100),
        preempt: config.preempt,
        preempt_delay: config.preempt_delay,
        // The master adds the addresses to the interface as its own, so
        // its kernel accepts what is sent to them (see `Settings::accept_mode`).
        accept_mode: true,
        announce_refresh: config.announce_refresh,
    }
}

/// One thing a change of state does (see [`transition_steps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Writes this state to the state file.
    Record(Recorded),
    /// Adds the addresses and announces them.
    TakeAddresses,
    /// Stops announcing and removes the addresses.
    ReleaseAddresses,
    /// Queues the notify command for this state.
    Notify(&'static str),
}

/// What `action` does, in order, if it is a change of state (`None`
/// otherwise). A step-down records its new state before it releases the
/// addresses: the release awaits netlink (dumps and a delete per
/// address), and a restart that aborts it meanwhile ([`Instance::abandon`])
/// must find no master record, or the next lbd would resume, addresses
/// and announcements included, a mastership this node just lost.
fn transition_steps(action: Action) -> Option<&'static [Step]> {
    match action {
        Action::BecomeMaster => Some(&[Step::TakeAddresses, Step::Notify("master")]),
        Action::BecomeBackup => Some(&[
            Step::Record(Recorded::Backup),
            Step::ReleaseAddresses,
            Step::Notify("backup"),
        ]),
        Action::BecomeInitialize => Some(&[
            Step::Record(Recorded::Stopped),
            Step::ReleaseAddresses,
            Step::Notify("stopped"),
        ]),
        Action::SendAdvert { .. } | Action::Reannounce | Action::Reclaim | Action::Refresh => None,
    }
}

/// What a state file records of an instance, for the next lbd (see
/// [`Record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    /// Master: written with every advert that left. What a crash leaves,
    /// so it never resumes (a crash loop would hold the addresses, the
    /// backup's timer reset at each start).
    Master,
    /// Master until the deliberate restart that wrote it
    /// ([`Instance::abandon`]), which kept the last advert's time: the
    /// next lbd resumes within the window.
    Restarting,
    /// Backup.
    Backup,
    /// Stopped (stepped down, addresses released).
    Stopped,
}

impl Recorded {
    /// The record's first word.
    fn word(self) -> &'static str {
        match self {
            Recorded::Master => "master",
            Recorded::Restarting => "restarting",
            Recorded::Backup => "backup",
            Recorded::Stopped => "stopped",
        }
    }

    /// The state a record's first word names.
    fn parse(word: &str) -> Option<Self> {
        [
            Recorded::Master,
            Recorded::Restarting,
            Recorded::Backup,
            Recorded::Stopped,
        ]
        .into_iter()
        .find(|state| state.word() == word)
    }
}

/// A state file's line: `<state> <at> <advertised>`, `at` the
/// CLOCK_MONOTONIC nanoseconds it was written at (for a restart record,
/// those of the last advert: see [`restart_record`]; survives the
/// process, not a reboot, nor does /run), `advertised` the advert interval
/// the instance advertised, in centiseconds (absent from the files of
/// older lbds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    /// What the instance was.
    state: Recorded,
    /// When (CLOCK_MONOTONIC ns).
    at: u64,
    /// The advert interval advertised (cs), if recorded.
    advertised: Option<u16>,
}

impl Record {
    /// Reads a state file's text; `None` if it is not a record (empty,
    /// cut short, an unknown state, no time).
    fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let state = Recorded::parse(words.next()?)?;
        let at = words.next()?.parse().ok()?;
        // Unreadable is as absent.
        let advertised = words.next().and_then(|cs| cs.parse().ok());
        Some(Self {
            state,
            at,
            advertised,
        })
    }

    /// The line written to a state file.
    fn line(&self) -> String {
        match self.advertised {
            Some(cs) => format!("{} {} {cs}\n", self.state.word(), self.at),
            None => format!("{} {}\n", self.state.word(), self.at),
        }
    }
}

/// What a state file's record means for the next start of its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resumption {
    /// A restart record within the resume window: master at once.
    Resume,
    /// Master within the window, but no restart record: the previous lbd
    /// crashed (or was one that wrote none, see [`Instance::resumes`]).
    /// Starts as the protocol says, so the peer takes over.
    NotAfterCrash,
    /// Anything else: starts as the protocol says.
    No,
}

/// What `record` (a state file's, `None`: none or unreadable) means for a
/// start of an instance of `config` at `now` (CLOCK_MONOTONIC ns): only a
/// restart record ([`Recorded::Restarting`]) written less than the resume
/// window ago (see [`resume_window`]) resumes. A record from the future
/// (another boot's clock) is not trusted.
fn resume_decision(record: Option<Record>, config: &VrrpConfig, now: u64) -> Resumption {
    let Some(record) = record else {
        return Resumption::No;
    };
    let recent = now >= record.at
        && Duration::from_nanos(now - record.at) < resume_window(config, record.advertised);
    match record.state {
        Recorded::Restarting if recent => Resumption::Resume,
        Recorded::Master if recent => Resumption::NotAfterCrash,
        _ => Resumption::No,
    }
}

/// The record a deliberate restart leaves in place of `current` (the state
/// file's): a master record becomes a restart record, keeping the last
/// advert's time (the backup's master-down timer runs from it, not from
/// the restart) and interval. Anything else (a backup, a stopped instance,
/// nothing readable) is left as is: `None`.
fn restart_record(current: Option<Record>) -> Option<Record> {
    current
        .filter(|record| record.state == Recorded::Master)
        .map(|record| Record {
            state: Recorded::Restarting,
            ..record
        })
}

/// Reads the record of the state file at `path`; `None` if there is none
/// or it is not one.
fn read_record(path: &Path) -> Option<Record> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| Record::parse(&text))
}

/// How long after the last master record of a state file an instance of
/// `config` may still resume mastership: the shortest master-down interval
/// any peer can run (see [`Settings::shortest_master_down_interval`]),
/// less [`resume_margin`]. A
/// backup measures it with the advert interval it learned from the adverts
/// it heard, that is, the one the previous lbd advertised (`advertised`,
/// centiseconds, recorded in the state file), not the one `config` (maybe
/// edited since) names; a file without it (an older lbd's) falls back to
/// `config`'s.
fn resume_window(config: &VrrpConfig, advertised: Option<u16>) -> Duration {
    let configured = settings_of(config);
    let settings = Settings {
        adver_interval_cs: advertised.unwrap_or(configured.adver_interval_cs),
        ..configured
    };
    let interval = Duration::from_millis(u64::from(settings.adver_interval_cs) * 10);
    settings
        .shortest_master_down_interval()
        .saturating_sub(resume_margin(interval))
}

/// The least time a resumed master must have left before the backup's
/// timer runs out, for advert interval `interval`: [`RESUME_MARGIN`],
/// but no more than half the interval, so no interval leaves the window
/// empty (with adverts 0.2 s apart or less the margin is half of one).
///
/// It only has to cover what follows the decision, and that is short:
/// the decision comes at the very start of the new lbd's start (see
/// `Engine::start`), and after it only the instance's checks (one
/// netlink address dump), the VRRP thread, its socket and the first
/// advert remain, milliseconds; plus the little the backup's timer may
/// have started before the record's time (taken once the last advert's
/// send returned). Everything else a restart takes (where in the advert
/// interval the signal fell, the old lbd's shutdown, `--release-vips`,
/// the new lbd's start up to the decision) runs before the decision, and
/// the window measures it: a larger margin would only turn restarts that
/// could have resumed hitlessly into failovers.
fn resume_margin(interval: Duration) -> Duration {
    RESUME_MARGIN.min(interval / 2)
}

/// See [`resume_margin`].
const RESUME_MARGIN: Duration = Duration::from_millis(100);

/// The environment variable a notify command finds the instance's address
/// family in (as its third argument).
const NOTIFY_FAMILY_ENV: &str = "LBD_VRRP_FAMILY";

/// The address family of an instance's addresses, as its notify command
/// gets it: "ipv4" or "ipv6". One VRID may serve both families (one
/// instance each), so the VRID alone does not tell them apart.
fn family_name(config: &VrrpConfig) -> &'static str {
    match config.addresses.first().map(Family::of) {
        Some(Family::V6) => "ipv6",
        _ => "ipv4",
    }
}

/// Runs `config`'s notify command, if any, for `state`, kept in
/// `notifies`: `PROGRAM STATE VRID FAMILY`, with FAMILY also in
/// [`NOTIFY_FAMILY_ENV`] (the first two arguments as ever).
fn spawn_notify(notifies: &Notifies, config: &VrrpConfig, state: &str) {
    let Some(program) = config.notify.clone() else {
        return;
    };
    let command = run_notify(
        program,
        state.to_owned(),
        config.vrid.to_string(),
        family_name(config),
    );
    notifies.spawn(config.vrid, state, command);
}

/// Runs the notify `program` for `state`, once it passed the same checks
/// as at config load again (it may have changed since): a program someone
/// other than root could change is not run, with a warning.
async fn run_notify(program: PathBuf, state: String, vrid: String, family: &'static str) {
    if let Err(problem) = check_notify_program(&program) {
        warn!(program = %program.display(), %state, %problem, "VRRP notify not run");
        return;
    }
    let mut command = tokio::process::Command::new(&program);
    command
        .arg(&state)
        .arg(&vrid)
        .arg(family)
        .env(NOTIFY_FAMILY_ENV, family)
        .kill_on_drop(true);
    crate::rlimit::restore_for_child(&mut command);
    let result = tokio::time::timeout(Duration::from_secs(30), command.status()).await;
    match result {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => {
            warn!(program = %program.display(), %state, %status, "VRRP notify failed")
        }
        Ok(Err(error)) => {
            warn!(program = %program.display(), %state, %error, "VRRP notify could not run")
        }
        Err(_) => {
            warn!(program = %program.display(), %state, "VRRP notify ran over 30 s and was killed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    /// A state file with `text` in a directory of its own, removed on drop.
    struct StateFile(PathBuf);

    impl StateFile {
        fn new(name: &str, text: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("lbd-vrrp-state-test-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("mkdir");
            let path = dir.join("lbd.vrrp-51-v4.state");
            std::fs::write(&path, text).expect("write");
            Self(path)
        }
    }

    impl Drop for StateFile {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// A notify script in a directory of its own (removed on drop) that
    /// writes its process id to `pid`, sleeps `seconds`, then appends
    /// "$1 $2" to `notes`.
    struct Script {
        dir: PathBuf,
    }

    impl Script {
        fn new(name: &str, seconds: &str) -> Self {
            Self::writing(name, seconds, "$1 $2")
        }

        /// `new`, appending `line` (shell words) to `notes` instead.
        fn writing(name: &str, seconds: &str, line: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "lbd-vrrp-notify-test-{}-{name}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("mkdir");
            // As root makes it under any umask: the run-time check refuses
            // a program in a directory others may write.
            std::fs::set_permissions(
                &dir,
                <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
            )
            .expect("chmod");
            let script = dir.join("notify.sh");
            let text = format!(
                "#!/bin/sh\necho $$ > {}\nsleep {seconds}\necho \"{line}\" >> {}\n",
                dir.join("pid").display(),
                dir.join("notes").display()
            );
            // Written by a child process, not here: a file this process
            // holds open for writing is inherited by whatever another test
            // thread forks meanwhile, and exec'ing it then fails with
            // ETXTBSY until that child execs.
            let written = std::process::Command::new("sh")
                .args([
                    "-c",
                    "printf '%s' \"$2\" > \"$1\" && chmod 755 \"$1\"",
                    "sh",
                ])
                .arg(&script)
                .arg(text)
                .status()
                .expect("sh");
            assert!(written.success(), "writing {}", script.display());
            Self { dir }
        }

        fn notes(&self) -> String {
            std::fs::read_to_string(self.dir.join("notes")).unwrap_or_default()
        }

        /// The script's process id, once it wrote it.
        fn pid(&self) -> Option<libc::pid_t> {
            std::fs::read_to_string(self.dir.join("pid"))
                .ok()?
                .trim()
                .parse()
                .ok()
        }
    }

    impl Drop for Script {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[tokio::test]
    async fn the_exit_waits_for_a_notify_still_running() {
        let script = Script::new("waits", "0.3");
        let notifies = Notifies::default();
        notifies.spawn(
            51,
            "stopped",
            run_notify(
                script.dir.join("notify.sh"),
                "stopped".to_owned(),
                "51".to_owned(),
                "ipv4",
            ),
        );
        wait_for_notifies(&[notifies], NOTIFY_GRACE).await;
        assert_eq!(script.notes(), "stopped 51\n");
    }

    #[tokio::test]
    async fn a_notify_running_past_the_grace_is_killed() {
        let script = Script::new("killed", "5");
        let notifies = Notifies::default();
        notifies.spawn(
            51,
            "stopped",
            run_notify(
                script.dir.join("notify.sh"),
                "stopped".to_owned(),
                "51".to_owned(),
                "ipv4",
            ),
        );
        // Running: its pid written (it sleeps past the grace below).
        let deadline = Instant::now() + Duration::from_secs(5);
        let pid = loop {
            if let Some(pid) = script.pid() {
                break pid;
            }
            assert!(Instant::now() < deadline, "the script never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(is_alive(pid), "the script ran before the grace");
        let started = Instant::now();
        wait_for_notifies(std::slice::from_ref(&notifies), Duration::from_millis(300)).await;
        assert!(started.elapsed() < Duration::from_secs(3));
        // Killed: gone (or a zombie until tokio reaps it) shortly after,
        // with nothing left to wait for and the line never written.
        let deadline = Instant::now() + Duration::from_secs(2);
        while is_alive(pid) {
            assert!(
                Instant::now() < deadline,
                "the notify command {pid} still runs after the grace"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(notifies.take().is_empty());
        assert_eq!(script.notes(), "");
    }

    /// Whether process `pid` exists and is not a zombie.
    fn is_alive(pid: libc::pid_t) -> bool {
        // SAFETY: signal 0 sends nothing, only checks the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 {
            return false;
        }
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let (_, after) = stat.rsplit_once(')')?;
                after.split_whitespace().next().map(|state| state != "Z")
            })
            .unwrap_or(false)
    }

    /// An interface address as `Netlink::addresses` reports it.
    fn on_interface(address: &str, prefix_len: u8, secondary: bool) -> InterfaceAddress {
        InterfaceAddress {
            address: address.parse().expect("address"),
            prefix_len,
            secondary,
            state: Default::default(),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    /// The IPv4 primary renumbered (new added, old deleted: the new one,
    /// secondary until then, promoted): adverts move to it. While the old
    /// one is there it is kept, even beside another primary.
    #[test]
    fn the_source_follows_a_renumbered_ipv4_primary() {
        let vips = [ip("198.18.0.100")];
        let before = [
            on_interface("198.18.0.2", 24, false),
            on_interface("198.18.0.50", 24, true),
            on_interface("198.18.0.100", 32, false),
        ];
        assert_eq!(
            pick_source(&before, SourceKind::V4Primary, &vips),
            Some(ip("198.18.0.2"))
        );
        assert_eq!(
            check_source(ip("198.18.0.2"), &before, SourceKind::V4Primary, &vips),
            SourceCheck::Keep
        );
        let after = [
            on_interface("198.18.0.50", 24, false),
            on_interface("198.18.0.100", 32, false),
        ];
        assert_eq!(
            check_source(ip("198.18.0.2"), &after, SourceKind::V4Primary, &vips),
            SourceCheck::Switch(ip("198.18.0.50"))
        );
        // Another subnet's primary came first: the current one stays.
        let more = [
            on_interface("10.0.0.1", 24, false),
            on_interface("198.18.0.2", 24, false),
        ];
        assert_eq!(
            check_source(ip("198.18.0.2"), &more, SourceKind::V4Primary, &vips),
            SourceCheck::Keep
        );
        // Only a VIP and a secondary left: nothing to send from.
        let none = [
            on_interface("198.18.0.100", 32, false),
            on_interface("198.18.0.51", 24, true),
        ];
        assert_eq!(
            check_source(ip("198.18.0.2"), &none, SourceKind::V4Primary, &vips),
            SourceCheck::Gone
        );
    }

    /// Two IPv4 instances on eth0, the node's address re-added after
    /// instance 51's VIP (a /32, which the kernel lists as primary):
    /// instance 52 sends from the node's address, never from 51's VIP (nor
    /// from a balanced VIP put on the interface), at start and at every
    /// check.
    #[test]
    fn no_instance_sends_from_another_instance_vip() {
        let text = "interface = \"eth0\"\n\
            [[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
            [[vip]]\naddress = \"198.18.0.200\"\nport = 80\n\
            [[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.100\"]\n\
            [[vrrp]]\nvrid = 52\naddresses = [\"198.18.0.101\"]\n";
        let config = Config::from_toml_str(text, "lbd.toml").expect("valid config");
        let never = never_sources(&config);
        assert_eq!(
            never,
            [ip("198.18.0.100"), ip("198.18.0.101"), ip("198.18.0.200")]
        );
        let present = [
            on_interface("198.18.0.200", 32, false),
            on_interface("198.18.0.100", 32, false),
            on_interface("198.18.0.101", 32, false),
            on_interface("198.18.0.2", 24, false),
        ];
        assert_eq!(
            pick_source(&present, SourceKind::V4Primary, &never),
            Some(ip("198.18.0.2"))
        );
        // Picked from 51's VIP (by an lbd that knew only its own), the
        // next check moves off it.
        assert_eq!(
            check_source(ip("198.18.0.100"), &present, SourceKind::V4Primary, &never),
            SourceCheck::Switch(ip("198.18.0.2"))
        );
        let only_vips = &present[..3];
        assert_eq!(pick_source(only_vips, SourceKind::V4Primary, &never), None);
    }

    /// The checks tell the machine of an outage once, from the last time
    /// they saw the link up, and of its end once; tracking telling of the
    /// end first leaves the checks nothing to tell.
    #[test]
    fn the_link_watch_reports_an_outage_from_the_last_look_up() {
        let t0 = Instant::now();
        let mut watch = LinkWatch::default();
        assert_eq!(watch.saw(true, t0), None);
        let up = t0 + ADDRESS_CHECK;
        assert_eq!(watch.saw(true, up), None);
        assert_eq!(
            watch.saw(false, up + ADDRESS_CHECK),
            Some(LinkChange::Down(up))
        );
        assert_eq!(watch.saw(false, up + 2 * ADDRESS_CHECK), None);
        assert_eq!(
            watch.saw(true, up + 3 * ADDRESS_CHECK),
            Some(LinkChange::Up)
        );
        assert_eq!(watch.saw(true, up + 4 * ADDRESS_CHECK), None);
        // Down, then tracking tells of the end before a check sees it.
        let later = up + 10 * ADDRESS_CHECK;
        assert_eq!(
            watch.saw(false, later),
            Some(LinkChange::Down(up + 4 * ADDRESS_CHECK))
        );
        watch.came_up(later + ADDRESS_CHECK, None);
        assert_eq!(watch.saw(true, later + 2 * ADDRESS_CHECK), None);
        // Down from the start: from the first look.
        let mut watch = LinkWatch::default();
        assert_eq!(watch.saw(false, t0), Some(LinkChange::Down(t0)));
    }

    /// Looks that cannot read the link (netlink failing) end an outage a
    /// check saw after three of them over at least 1 s: the backup, which
    /// runs no timer while its link is down, runs one again. A look that
    /// works starts the count afresh; without an outage nothing changes.
    #[test]
    fn failed_looks_at_the_link_end_an_outage() {
        let t0 = Instant::now();
        let mut watch = LinkWatch::default();
        watch.saw(true, t0);
        let mut m = Machine::new(
            settings_of(&vrrp_config(100, "198.18.0.10")),
            ip("198.18.0.2"),
        );
        m.startup(t0);
        assert_eq!(m.state(), State::Backup);
        let Some(LinkChange::Down(since)) = watch.saw(false, t0 + ADDRESS_CHECK) else {
            panic!("the outage is seen");
        };
        m.link_down(since);
        assert_eq!(m.next_deadline(), None);
        // Two failed looks, one that works (down still), two more: no end.
        let t1 = t0 + 2 * ADDRESS_CHECK;
        assert_eq!(watch.failed(t1), None);
        assert_eq!(watch.failed(t1 + ADDRESS_CHECK), None);
        assert_eq!(watch.saw(false, t1 + 2 * ADDRESS_CHECK), None);
        let t2 = t1 + 3 * ADDRESS_CHECK;
        assert_eq!(watch.failed(t2), None);
        assert_eq!(watch.failed(t2 + ADDRESS_CHECK), None);
        // Three looks but 0.9 s: not yet.
        assert_eq!(watch.failed(t2 + Duration::from_millis(900)), None);
        // 1 s: the outage counts as over, once; the timer runs again.
        let t3 = t2 + 2 * ADDRESS_CHECK;
        assert_eq!(watch.failed(t3), Some(LinkChange::Up));
        assert!(!watch.down);
        assert_eq!(with_link_weight(100, 100, 100, watch.down), 100);
        assert_eq!(m.link_up(t3, 100), []);
        assert_eq!(m.next_deadline(), Some(t3 + m.master_down_interval()));
        assert_eq!(watch.failed(t3 + ADDRESS_CHECK), None);
        // Seen down again: from the last time a check saw it up.
        assert_eq!(
            watch.saw(false, t3 + 2 * ADDRESS_CHECK),
            Some(LinkChange::Down(t0))
        );
        // Failing looks with the link up change nothing.
        let mut watch = LinkWatch::default();
        watch.saw(true, t0);
        for k in 1..10_u32 {
            assert_eq!(watch.failed(t0 + ADDRESS_CHECK * k), None);
        }
        assert!(!watch.down);
    }

    /// The link's weight is the driver's, off while its checks see the
    /// link down and back as they see it up, so the link-up advert carries
    /// the priority tracking gives (tracking leaves the link out): with
    /// the defaults (100, `track_interface` 100) 1 while down, 100 at once
    /// on the link's return. Never below 1; the owner's 255 is fixed.
    #[test]
    fn the_link_weight_follows_the_driver_checks() {
        assert_eq!(with_link_weight(100, 100, 100, true), 1);
        assert_eq!(with_link_weight(100, 100, 100, false), 100);
        assert_eq!(with_link_weight(150, 90, 50, true), 40);
        assert_eq!(with_link_weight(150, 90, 0, true), 90);
        assert_eq!(with_link_weight(150, 1, 50, true), 1);
        assert_eq!(with_link_weight(255, 255, 100, true), 255);
        // As tracking computed it with the link in, before: the weights
        // summed, then held to 1.
        for (tracked, weight) in [(100_u8, 100_u8), (60, 30), (5, 10), (254, 0)] {
            let summed = u32::from(tracked)
                .saturating_sub(u32::from(weight))
                .clamp(1, 254);
            assert_eq!(
                u32::from(with_link_weight(200, tracked, weight, true)),
                summed
            );
        }
        // The watch's view at each step of an outage.
        let t0 = Instant::now();
        let mut watch = LinkWatch::default();
        watch.saw(true, t0);
        watch.saw(false, t0 + ADDRESS_CHECK);
        assert_eq!(with_link_weight(100, 100, 100, watch.down), 1);
        watch.saw(true, t0 + 2 * ADDRESS_CHECK);
        assert_eq!(with_link_weight(100, 100, 100, watch.down), 100);
        watch.saw(false, t0 + 3 * ADDRESS_CHECK);
        watch.came_up(t0 + 4 * ADDRESS_CHECK, None);
        assert_eq!(with_link_weight(100, 100, 100, watch.down), 100);
    }

    /// With the link down every advert fails (up to 100 a second): the
    /// first failure is said at once, then one line per 10 s with the
    /// count left unsaid; the first advert that leaves says how many
    /// failed. An advert that leaves does not reset the limit.
    #[test]
    fn failed_sends_are_logged_at_most_every_ten_seconds() {
        let t = Instant::now();
        let mut failures = SendFailures::default();
        assert_eq!(failures.sent(), None);
        assert_eq!(failures.failed(t), Some(0));
        for k in 1..1000_u32 {
            assert_eq!(
                failures.failed(t + Duration::from_millis(k.into()) * 10),
                None
            );
        }
        assert_eq!(failures.failed(t + SEND_FAILURE_LOG_EVERY), Some(999));
        assert_eq!(failures.failed(t + SEND_FAILURE_LOG_EVERY), None);
        assert_eq!(failures.sent(), Some(1002));
        assert_eq!(failures.sent(), None);
        let later = t + 2 * SEND_FAILURE_LOG_EVERY;
        assert_eq!(failures.failed(later), Some(1));
    }

    /// Failures between adverts that leave (a full buffer now and then)
    /// are said once per 10 s, as a run of them would be, and only an
    /// advert after a warned-about run says that adverts leave again.
    #[test]
    fn intermittent_send_failures_keep_the_rate_limit() {
        let t = Instant::now();
        let second = Duration::from_secs(1);
        let mut failures = SendFailures::default();
        assert_eq!(failures.failed(t), Some(0));
        assert_eq!(failures.sent(), Some(1));
        for k in 1..10_u32 {
            assert_eq!(failures.failed(t + second * k), None, "{k} s");
            assert_eq!(failures.sent(), None, "{k} s");
        }
        assert_eq!(failures.failed(t + SEND_FAILURE_LOG_EVERY), Some(9));
        assert_eq!(failures.failed(t + SEND_FAILURE_LOG_EVERY), None);
        assert_eq!(failures.sent(), Some(2));
        assert_eq!(failures.sent(), None);
    }

    /// A new MAC (link down, `ip link set address`, up) brings a new
    /// EUI-64 link-local: adverts move to it; a global address never
    /// becomes the source; while the link is down there is none.
    #[test]
    fn the_source_follows_a_new_ipv6_link_local() {
        let vips = [ip("2001:2::100")];
        let old = ip("fe80::a8c1:abff:fe00:2");
        let new = "fe80::a8c1:abff:fe00:99";
        let present = [
            on_interface("2001:2::2", 64, false),
            on_interface(new, 64, false),
            on_interface("2001:2::100", 128, false),
        ];
        assert_eq!(
            check_source(old, &present, SourceKind::V6LinkLocal, &vips),
            SourceCheck::Switch(ip(new))
        );
        assert_eq!(
            check_source(ip(new), &present, SourceKind::V6LinkLocal, &vips),
            SourceCheck::Keep
        );
        let down = [on_interface("2001:2::2", 64, false)];
        assert_eq!(
            check_source(old, &down, SourceKind::V6LinkLocal, &vips),
            SourceCheck::Gone
        );
    }

    /// An interface address in `state`.
    fn in_state(
        address: &str,
        prefix_len: u8,
        state: crate::netlink::AddressState,
    ) -> InterfaceAddress {
        InterfaceAddress {
            state,
            ..on_interface(address, prefix_len, false)
        }
    }

    fn dad_failed() -> crate::netlink::AddressState {
        crate::netlink::AddressState {
            dad_failed: true,
            ..Default::default()
        }
    }

    fn tentative() -> crate::netlink::AddressState {
        crate::netlink::AddressState {
            tentative: true,
            ..Default::default()
        }
    }

    fn deprecated() -> crate::netlink::AddressState {
        crate::netlink::AddressState {
            deprecated: true,
            ..Default::default()
        }
    }

    /// An address whose duplicate address detection failed belongs to
    /// another host: never an advert source, IPv4 or IPv6, at start or
    /// at a check (the current one failing it moves off it).
    #[test]
    fn a_dad_failed_address_is_never_a_source() {
        let present = [
            in_state("fe80::1", 64, dad_failed()),
            on_interface("fe80::2", 64, false),
        ];
        let kind = SourceKind::V6LinkLocal;
        assert_eq!(pick_source(&present, kind, &[]), Some(ip("fe80::2")));
        assert_eq!(
            check_source(ip("fe80::1"), &present, kind, &[]),
            SourceCheck::Switch(ip("fe80::2"))
        );
        assert!(!may_send_from(&present[0], kind, &[]));
        // Not even as the fallback a tentative link-local is.
        assert_eq!(pick_source(&present[..1], kind, &[]), None);
        let v4 = [
            in_state("198.18.0.2", 24, dad_failed()),
            on_interface("198.18.0.3", 24, false),
        ];
        let kind = SourceKind::V4Primary;
        assert_eq!(pick_source(&v4, kind, &[]), Some(ip("198.18.0.3")));
        assert_eq!(
            check_source(ip("198.18.0.2"), &v4, kind, &[]),
            SourceCheck::Switch(ip("198.18.0.3"))
        );
        let global = [
            in_state("2001:2::2", 64, dad_failed()),
            on_interface("2001:2::3", 64, false),
        ];
        let kind = SourceKind::V6Global;
        assert_eq!(pick_source(&global, kind, &[]), Some(ip("2001:2::3")));
        assert_eq!(pick_source(&global[..1], kind, &[]), None);
        assert_eq!(
            check_source(ip("2001:2::2"), &global[..1], kind, &[]),
            SourceCheck::Gone
        );
    }

    /// After an admin down/up or a MAC change the link-local address is
    /// tentative for 1-2 s: it stays the source (kept, or picked when it is
    /// the only link-local: the socket sends from it, see
    /// `VrrpSocket::open`), so the master is not silenced into a
    /// failover; a settled one is preferred when there is one.
    #[test]
    fn a_tentative_link_local_stays_the_source() {
        let kind = SourceKind::V6LinkLocal;
        let old = ip("fe80::a8c1:abff:fe00:2");
        let again = [in_state("fe80::a8c1:abff:fe00:2", 64, tentative())];
        assert_eq!(check_source(old, &again, kind, &[]), SourceCheck::Keep);
        let new_mac = [
            on_interface("2001:2::2", 64, false),
            in_state("fe80::a8c1:abff:fe00:99", 64, tentative()),
        ];
        assert_eq!(
            check_source(old, &new_mac, kind, &[]),
            SourceCheck::Switch(ip("fe80::a8c1:abff:fe00:99"))
        );
        assert_eq!(
            pick_source(&new_mac, kind, &[]),
            Some(ip("fe80::a8c1:abff:fe00:99"))
        );
        assert!(!may_send_from(&new_mac[1], kind, &[]));
        assert!(!waits_for_dad(&new_mac, kind, &[]));
        let both = [
            in_state("fe80::1", 64, tentative()),
            on_interface("fe80::2", 64, false),
        ];
        assert_eq!(pick_source(&both, kind, &[]), Some(ip("fe80::2")));
    }

    /// An IPv6 instance with unicast peers sends from a global address of
    /// the interface: a link-local source is never routed (peers behind
    /// routers would hear nothing) and a keepalived peer takes adverts
    /// only from the address its unicast_peer list names. Never a VIP, a
    /// NAT or [[vrrp]] address, nor a tentative, DAD-failed, deprecated or
    /// temporary one.
    #[test]
    fn ipv6_unicast_adverts_go_from_a_global_address() {
        let text = "interface = \"eth0\"\n\
            [nat]\nsource_ipv6 = \"2001:2::50\"\n\
            [[vip]]\naddress = \"2001:2::100\"\nport = 80\nforwarding = \"nat\"\n\
            [[vip.backend]]\naddress = \"2001:3::11\"\nport = 8080\n\
            [[vrrp]]\nvrid = 51\nunicast_peers = [\"2001:2::12\"]\nunicast_peer_hops = 2\n";
        let config = Config::from_toml_str(text, "lbd.toml").expect("valid config");
        let instance = &config.vrrp[0];
        let kind = SourceKind::of(Family::V6, &instance.unicast_peers);
        assert_eq!(kind, SourceKind::V6Global);
        let never = never_sources(&config);
        assert!(
            never.contains(&ip("2001:2::50")),
            "the NAT address: {never:?}"
        );
        assert!(never.contains(&ip("2001:2::100")), "the VIP: {never:?}");
        let present = [
            on_interface("2001:2::100", 128, false),
            on_interface("2001:2::50", 128, false),
            in_state("2001:2::7", 64, tentative()),
            in_state("2001:2::8", 64, dad_failed()),
            in_state("2001:2::9", 64, deprecated()),
            on_interface("2001:2::a", 64, true), // temporary
            on_interface("fe80::2", 64, false),
            on_interface("2001:2::2", 64, false),
        ];
        assert_eq!(pick_source(&present, kind, &never), Some(ip("2001:2::2")));
        for passed in &present[..7] {
            assert!(!may_send_from(passed, kind, &never), "{passed:?}");
        }
        // Without one, none: not the link-local.
        assert_eq!(pick_source(&present[..7], kind, &never), None);
        let message = no_source_message("eth0", &present[..7], kind, &never);
        for said in [
            "interface eth0 has no global IPv6 address",
            "2001:2::100 is a VIP, NAT or [[vrrp]] address",
            "2001:2::50 is a VIP, NAT or [[vrrp]] address",
            "2001:2::7 is tentative",
            "2001:2::8 is DAD-failed",
            "2001:2::9 is deprecated",
            "2001:2::a is temporary",
            "fe80::2 is link-local",
            "unicast_peer",
        ] {
            assert!(message.contains(said), "{said}: {message}");
        }
        // The group (or link-local peers only) keeps the link-local.
        assert_eq!(SourceKind::of(Family::V6, &[]), SourceKind::V6LinkLocal);
        assert_eq!(
            SourceKind::of(Family::V6, &[ip("fe80::12")]),
            SourceKind::V6LinkLocal
        );
        assert_eq!(
            pick_source(&present, SourceKind::V6LinkLocal, &never),
            Some(ip("fe80::2"))
        );
        assert_eq!(
            SourceKind::of(Family::V4, &[ip("198.18.0.3")]),
            SourceKind::V4Primary
        );
    }

    /// With `unicast_src_ip` adverts go from that address and never
    /// another of the interface's, whatever kind it is (an IPv4
    /// secondary, a deprecated or temporary IPv6 address): gone, there is
    /// no source (the no-source path), back, it is kept again.
    #[test]
    fn a_unicast_src_ip_is_the_only_source() {
        let text = "interface = \"eth0\"\n\
            [[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
            [[vrrp]]\nvrid = 51\nunicast_peers = [\"198.18.0.3\"]\nunicast_src_ip = \"198.18.0.7\"\n";
        let config = Config::from_toml_str(text, "lbd.toml").expect("valid config");
        let kind = SourceKind::of_instance(Family::V4, &config.vrrp[0]);
        assert_eq!(kind, SourceKind::Fixed(ip("198.18.0.7")));
        let without = VrrpConfig {
            unicast_src_ip: None,
            ..config.vrrp[0].clone()
        };
        assert_eq!(
            SourceKind::of_instance(Family::V4, &without),
            SourceKind::V4Primary
        );
        let never = never_sources(&config);
        let present = [
            on_interface("198.18.0.2", 24, false),
            on_interface("198.18.0.100", 32, false),
            on_interface("198.18.0.7", 24, true), // the second: secondary
        ];
        assert_eq!(pick_source(&present, kind, &never), Some(ip("198.18.0.7")));
        assert_eq!(
            check_source(ip("198.18.0.7"), &present, kind, &never),
            SourceCheck::Keep
        );
        // Gone: not the primary instead, none.
        let gone = &present[..2];
        assert_eq!(pick_source(gone, kind, &never), None);
        assert_eq!(
            check_source(ip("198.18.0.7"), gone, kind, &never),
            SourceCheck::Gone
        );
        let message = no_source_message("eth0", gone, kind, &never);
        assert!(
            message.contains("interface eth0 does not have unicast_src_ip 198.18.0.7"),
            "{message}"
        );
        // Sent from another before (a restart-only change): that one now.
        assert_eq!(
            check_source(ip("198.18.0.2"), &present, kind, &never),
            SourceCheck::Switch(ip("198.18.0.7"))
        );
        // IPv6: a deprecated or temporary unicast_src_ip still is one; a
        // tentative one is kept but not picked, a DAD-failed one is none.
        let v6 = SourceKind::Fixed(ip("2001:2::7"));
        let global = on_interface("2001:2::2", 64, false);
        for state in [deprecated(), Default::default()] {
            let present = [global.clone(), in_state("2001:2::7", 64, state)];
            assert_eq!(pick_source(&present, v6, &[]), Some(ip("2001:2::7")));
        }
        let temporary = [global.clone(), on_interface("2001:2::7", 64, true)];
        assert_eq!(pick_source(&temporary, v6, &[]), Some(ip("2001:2::7")));
        let tentative_one = [global.clone(), in_state("2001:2::7", 64, tentative())];
        assert_eq!(pick_source(&tentative_one, v6, &[]), None);
        assert!(waits_for_dad(&tentative_one, v6, &[]));
        assert_eq!(
            check_source(ip("2001:2::7"), &tentative_one, v6, &[]),
            SourceCheck::Keep
        );
        let failed = [global, in_state("2001:2::7", 64, dad_failed())];
        assert_eq!(
            check_source(ip("2001:2::7"), &failed, v6, &[]),
            SourceCheck::Gone
        );
    }

    /// The global source is kept as the IPv4 primary is (Keep even beside
    /// a newer one, so the address a keepalived peer lists does not flap;
    /// kept while only re-running DAD), followed when it goes or is
    /// deprecated with a settled one beside it, Gone with none.
    #[test]
    fn the_global_ipv6_source_is_kept_and_followed() {
        let kind = SourceKind::V6Global;
        let current = ip("2001:2::2");
        let newer = [
            on_interface("2001:2::3", 64, false),
            on_interface("2001:2::2", 64, false),
        ];
        assert_eq!(pick_source(&newer, kind, &[]), Some(ip("2001:2::3")));
        assert_eq!(check_source(current, &newer, kind, &[]), SourceCheck::Keep);
        let redad = [
            in_state("2001:2::2", 64, tentative()),
            on_interface("fe80::2", 64, false),
        ];
        assert_eq!(check_source(current, &redad, kind, &[]), SourceCheck::Keep);
        let renumbered = [
            in_state("2001:2::2", 64, deprecated()),
            on_interface("2001:5::2", 64, false),
        ];
        assert_eq!(
            check_source(current, &renumbered, kind, &[]),
            SourceCheck::Switch(ip("2001:5::2"))
        );
        assert_eq!(
            check_source(current, &renumbered[..1], kind, &[]),
            SourceCheck::Keep,
            "deprecated, but the only one: still sent from"
        );
        let gone = [
            on_interface("fe80::2", 64, false),
            on_interface("2001:5::2", 64, false),
        ];
        assert_eq!(
            check_source(current, &gone, kind, &[]),
            SourceCheck::Switch(ip("2001:5::2"))
        );
        assert_eq!(
            check_source(current, &gone[..1], kind, &[]),
            SourceCheck::Gone
        );
        // Picked from a VIP (a config that changed), moved off it.
        assert_eq!(
            check_source(current, &newer, kind, &[current]),
            SourceCheck::Switch(ip("2001:2::3"))
        );
    }

    /// At start, a global source only tentative yet (an interface just
    /// brought up) is waited for, not refused; none at all is refused at
    /// once.
    #[test]
    fn the_start_waits_for_dad_of_the_only_global_address() {
        let kind = SourceKind::V6Global;
        let fresh = [
            on_interface("fe80::2", 64, false),
            in_state("2001:2::2", 64, tentative()),
        ];
        assert_eq!(pick_source(&fresh, kind, &[]), None);
        assert!(waits_for_dad(&fresh, kind, &[]));
        assert!(!waits_for_dad(&fresh[..1], kind, &[]));
        assert!(!waits_for_dad(&fresh, kind, &[ip("2001:2::2")]), "a VIP");
        let settled = [on_interface("2001:2::2", 64, false)];
        assert!(!waits_for_dad(&settled, kind, &[]));
    }

    /// The checksum of an IPv6 advert covers the pseudo-header with the
    /// address it leaves from: a driver that moved to a global source
    /// encodes with it (the same `VrrpSocket::local` the packet-info
    /// control message names), so a peer's check passes.
    #[test]
    fn the_ipv6_checksum_uses_the_source_the_advert_leaves_from() {
        let ad = Advertisement {
            vrid: 51,
            priority: 100,
            max_adver_int_cs: 100,
            addresses: vec![ip("2001:2::100")],
        };
        let (global, peer) = (ip("2001:2::2"), ip("2001:2::12"));
        let payload = ad
            .encode(global, peer, ChecksumMode::PseudoHeader)
            .expect("encodes");
        assert!(Advertisement::decode(&payload, global, peer).is_ok());
        assert_eq!(
            Advertisement::decode(&payload, ip("fe80::2"), peer),
            Err(DecodeError::Checksum)
        );
    }

    /// The errors Linux gives a send from an address the node no longer
    /// has prompt a look at once; others (a full buffer, no permission)
    /// do not; and looks prompted by failures are spaced.
    #[test]
    fn failed_sends_look_at_the_source_again_now_and_then() {
        for errno in [libc::EINVAL, libc::EADDRNOTAVAIL, libc::ENETUNREACH] {
            assert!(source_may_be_stale(&std::io::Error::from_raw_os_error(
                errno
            )));
        }
        for errno in [libc::ENOBUFS, libc::EPERM, libc::EHOSTUNREACH] {
            assert!(!source_may_be_stale(&std::io::Error::from_raw_os_error(
                errno
            )));
        }
        assert!(!source_may_be_stale(&std::io::Error::other("encoding")));
        let t = Instant::now();
        assert!(source_recheck_due(None, t));
        assert!(!source_recheck_due(Some(t), t + Duration::from_millis(10)));
        assert!(source_recheck_due(Some(t), t + SOURCE_RECHECK_MIN));
    }

    /// What the state file at `path` means for a start at `now`.
    fn decide(path: &Path, config: &VrrpConfig, now: u64) -> Resumption {
        resume_decision(read_record(path), config, now)
    }

    /// Only a recent restart record resumes; the per-advert master record
    /// a crash leaves (a panic, then systemd's restart 2 s later) does
    /// not, nor does anything else.
    #[test]
    fn only_a_recent_restart_record_resumes() {
        // 1 s adverts: a window of 3 s + 1/256 s, less 1 s.
        let config = vrrp_config(100, "198.18.0.10");
        let at = 100 * SECOND;
        let restarting = StateFile::new("restarting", &format!("restarting {at} 100\n"));
        assert_eq!(decide(&restarting.0, &config, at), Resumption::Resume);
        assert_eq!(
            decide(&restarting.0, &config, at + 2 * SECOND),
            Resumption::Resume
        );
        assert_eq!(
            decide(&restarting.0, &config, at + 3 * SECOND),
            Resumption::No
        );
        // A record from the future (another boot's clock) is not trusted.
        assert_eq!(decide(&restarting.0, &config, at - 1), Resumption::No);
        // A crash 0.5 s after the last advert, restarted 1 s later.
        let crashed = StateFile::new("crashed", &format!("master {at} 100\n"));
        assert_eq!(
            decide(&crashed.0, &config, at + 1_500_000_000),
            Resumption::NotAfterCrash
        );
        assert_eq!(decide(&crashed.0, &config, at + 4 * SECOND), Resumption::No);
        for (name, text) in [
            ("backup", format!("backup {at} 100\n")),
            ("stopped", format!("stopped {at} 100\n")),
            ("no-time", "restarting\n".to_owned()),
            ("bad-time", "restarting soon\n".to_owned()),
            ("unknown", format!("restart {at} 100\n")),
            ("empty", String::new()),
        ] {
            let file = StateFile::new(name, &text);
            assert_eq!(decide(&file.0, &config, at), Resumption::No, "{text:?}");
        }
        let missing = Path::new("/nonexistent/lbd.vrrp-51-v4.state");
        assert_eq!(decide(missing, &config, at), Resumption::No);
    }

    /// A restart turns a master record into a restart record with the
    /// last advert's time and interval (the backup's timer runs from that
    /// advert, not from the restart); a backup's or a stopped instance's
    /// record, or none, stays as it is.
    #[test]
    fn a_restart_keeps_the_last_advert_in_its_record() {
        let at = 100 * SECOND;
        let master = Record::parse(&format!("master {at} 10\n"));
        let restarting = restart_record(master).expect("a restart record");
        assert_eq!(restarting.line(), format!("restarting {at} 10\n"));
        assert_eq!(Record::parse(&restarting.line()), Some(restarting));
        // An older lbd's record, without the interval, keeps none.
        let older = restart_record(Record::parse(&format!("master {at}\n")));
        assert_eq!(
            older.map(|record| record.line()),
            Some(format!("restarting {at}\n"))
        );
        for text in [format!("backup {at} 100"), format!("stopped {at} 100")] {
            assert_eq!(restart_record(Record::parse(&text)), None, "{text}");
        }
        assert_eq!(restart_record(None), None);
        // The record a restart writes resumes within the window; the one
        // before it (what a crash leaves) does not.
        let config = vrrp_config(100, "198.18.0.10");
        assert_eq!(
            resume_decision(master, &config, at + SECOND / 20),
            Resumption::NotAfterCrash
        );
        assert_eq!(
            resume_decision(Some(restarting), &config, at + SECOND / 20),
            Resumption::Resume
        );
    }

    /// The resume window follows the advert interval the previous lbd
    /// recorded (what the backup learned from its adverts), not the one
    /// the config names now; an older lbd's record, without it, falls back
    /// to the config's.
    #[test]
    fn the_resume_window_follows_the_recorded_advert_interval() {
        // 1 s adverts: 3 × 1 s + (256 - 255) × 1 s / 256, less 0.1 s.
        let config = vrrp_config(100, "198.18.0.10");
        assert_eq!(
            resume_window(&config, None),
            Duration::from_micros(2_903_906)
        );
        // The previous lbd advertised every 100 ms: the backup takes over
        // 0.3 s after its last advert, whatever the config says now; less
        // half an interval, 50 ms.
        assert_eq!(
            resume_window(&config, Some(10)),
            Duration::from_micros(250_390)
        );
        // Every 3 s: the backup waits 9 s; less 0.1 s.
        assert_eq!(
            resume_window(&config, Some(300)),
            Duration::from_micros(8_911_718)
        );
        let at = 100 * SECOND;
        let fast = StateFile::new("fast", &format!("restarting {at} 10\n"));
        assert_eq!(
            decide(&fast.0, &config, at + SECOND / 10),
            Resumption::Resume
        );
        assert_eq!(decide(&fast.0, &config, at + SECOND), Resumption::No);
        let slow = StateFile::new("slow", &format!("restarting {at} 300\n"));
        assert_eq!(
            decide(&slow.0, &config, at + 8 * SECOND),
            Resumption::Resume
        );
        let older = StateFile::new("older", &format!("restarting {at}\n"));
        assert_eq!(decide(&older.0, &config, at + SECOND), Resumption::Resume);
        assert_eq!(
            decide(&older.0, &config, at + 2_500_000_000),
            Resumption::Resume
        );
        assert_eq!(decide(&older.0, &config, at + 3 * SECOND), Resumption::No);
    }

    /// The window ends a margin before the backup's timer runs out: 0.1 s,
    /// at most half the advert interval (what follows the decision takes
    /// milliseconds; the rest of the restart is what the window is for).
    /// Up to its last nanosecond a record resumes, from its end on it does
    /// not: a restart record 2.9 s after a 1 s advert (the backup waits
    /// 3.004 s) resumes, one 2.95 s after does not. No interval leaves the
    /// window empty.
    #[test]
    fn the_resume_window_keeps_a_margin_before_the_backup_takes_over() {
        let config = vrrp_config(100, "198.18.0.10");
        let at = 100 * SECOND;
        for (cs, master_down_ns, margin_ns) in [
            (100_u16, 3_003_906_000_u64, SECOND / 10),
            (300, 9_011_718_000, SECOND / 10),
            (20, 600_781_000, SECOND / 10),
            // 10 cs and less: half the interval.
            (10, 300_390_000, SECOND / 20),
            (5, 150_195_000, SECOND / 40),
            (1, 30_039_000, SECOND / 200),
        ] {
            let window = master_down_ns - margin_ns;
            assert_eq!(
                resume_window(&config, Some(cs)),
                Duration::from_nanos(window),
                "{cs} cs"
            );
            let record = Record::parse(&format!("restarting {at} {cs}"));
            assert_eq!(
                resume_decision(record, &config, at + window - 1),
                Resumption::Resume,
                "{cs} cs"
            );
            assert_eq!(
                resume_decision(record, &config, at + window),
                Resumption::No,
                "{cs} cs"
            );
        }
        let record = Record::parse(&format!("restarting {at} 100"));
        assert_eq!(
            resume_decision(record, &config, at + 2_900_000_000),
            Resumption::Resume
        );
        assert_eq!(
            resume_decision(record, &config, at + 2_950_000_000),
            Resumption::No
        );
    }

    /// An instance's config: VRID 51, 1 s adverts, `priority`, moving
    /// `address`.
    fn vrrp_config(priority: u8, address: &str) -> VrrpConfig {
        VrrpConfig {
            vrid: 51,
            priority,
            advert_interval: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            addresses: vec![address.parse().expect("address")],
            unicast_peers: Vec::new(),
            unicast_peer_hops: 0,
            unicast_src_ip: None,
            announce_count: 1,
            announce_interval: Duration::from_millis(100),
            announce_refresh: None,
            notify: None,
            track_dataplane: 0,
            track_interface: 0,
            track_no_backend: 0,
            sync_listen: None,
            sync_peer: None,
            sync_key_file: None,
        }
    }

    #[test]
    fn resumes_measures_against_the_shortest_master_down_interval() {
        // Ours is 3 s + (256 - 100) / 256 s = 3.609 s; a peer of priority
        // 200 (with nopreempt, so this node was master) takes over after
        // 3 s + 56 / 256 s = 3.219 s, and one of 255 after 3.004 s: the
        // window is that, less a 0.1 s margin.
        let vrrp = vrrp_config(100, "198.18.0.10");
        let now = crate::clock::monotonic_ns();
        let fresh = StateFile::new(
            "fresh",
            &format!(
                "restarting {}
",
                now - 1_900_000_000
            ),
        );
        assert!(Instance::resumes(&vrrp, Some(&fresh.0)));
        // 2.5 s (a restart with replication): still resumes.
        let restart = StateFile::new(
            "restart",
            &format!(
                "restarting {}
",
                now - 2_500_000_000
            ),
        );
        assert!(Instance::resumes(&vrrp, Some(&restart.0)));
        // 2.95 s: within the peer's 3.004 s, but not by the margin.
        let late = StateFile::new(
            "late",
            &format!(
                "restarting {}
",
                now - 2_950_000_000
            ),
        );
        assert!(!Instance::resumes(&vrrp, Some(&late.0)));
        // 3.3 s: within our own interval, but the peer may be master now.
        let taken = StateFile::new(
            "taken",
            &format!(
                "restarting {}
",
                now - 3_300_000_000
            ),
        );
        assert!(!Instance::resumes(&vrrp, Some(&taken.0)));
        let stale = StateFile::new(
            "stale",
            &format!(
                "restarting {}
",
                now - 4 * SECOND
            ),
        );
        assert!(!Instance::resumes(&vrrp, Some(&stale.0)));
        assert!(!Instance::resumes(&vrrp, None));
        // What a crash leaves, 1.2 s after the last advert: not resumed.
        let crashed = StateFile::new("crashed", &format!("master {}\n", now - 1_200_000_000));
        assert!(!Instance::resumes(&vrrp, Some(&crashed.0)));
    }

    /// A quick master→backup flip: the "master" command is slow, the
    /// "backup" one quick. Run side by side, "backup" ended first and the
    /// notes (whatever the commands drive) ended at "master" on a backup;
    /// queued, each starts once the one before it ended.
    #[tokio::test]
    async fn notify_commands_run_in_the_order_of_the_states() {
        let script = Script::writing(
            "order",
            "$(if [ \"$1\" = master ]; then echo 0.5; else echo 0; fi)",
            "$1 $2",
        );
        let notifies = Notifies::default();
        let config = VrrpConfig {
            notify: Some(script.dir.join("notify.sh")),
            ..vrrp_config(100, "198.18.0.10")
        };
        spawn_notify(&notifies, &config, "master");
        spawn_notify(&notifies, &config, "backup");
        wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
        assert_eq!(script.notes(), "master 51\nbackup 51\n");
        // One taken by an exit's wait still comes first: a command queued
        // later waits for it.
        spawn_notify(&notifies, &config, "master");
        let taken = notifies.take();
        spawn_notify(&notifies, &config, "stopped");
        wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
        drop(taken);
        assert_eq!(
            script.notes(),
            "master 51\nbackup 51\nmaster 51\nstopped 51\n"
        );
    }

    /// A flapping instance with a slow notify program: states queued
    /// while one command runs are merged into the newest, so at most one
    /// waits, nothing stale runs, and the last state is the last run.
    #[tokio::test]
    async fn states_queued_behind_a_running_notify_are_merged() {
        let script = Script::writing("merge", "0.3", "$1");
        let notifies = Notifies::default();
        let config = VrrpConfig {
            notify: Some(script.dir.join("notify.sh")),
            ..vrrp_config(100, "198.18.0.10")
        };
        for k in 0..20 {
            spawn_notify(
                &notifies,
                &config,
                if k % 2 == 0 { "master" } else { "backup" },
            );
        }
        spawn_notify(&notifies, &config, "stopped");
        let queued = notifies
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .running
            .len();
        assert!(queued <= 2, "{queued} commands queued");
        wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
        assert_eq!(script.notes(), "master\nstopped\n");
    }

    /// The program is checked again before each run: one made writable
    /// by others since the config was loaded is not run.
    #[tokio::test]
    async fn a_notify_program_changed_since_the_load_is_not_run() {
        let script = Script::writing("changed", "0", "$1");
        let program = script.dir.join("notify.sh");
        let notifies = Notifies::default();
        let config = VrrpConfig {
            notify: Some(program.clone()),
            ..vrrp_config(100, "198.18.0.10")
        };
        spawn_notify(&notifies, &config, "master");
        wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
        assert_eq!(script.notes(), "master\n");
        std::fs::set_permissions(
            &program,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o777),
        )
        .expect("chmod");
        spawn_notify(&notifies, &config, "backup");
        wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
        assert_eq!(script.notes(), "master\n", "an unsafe program ran");
    }

    #[tokio::test]
    async fn notify_tells_the_family_of_the_instance() {
        let script = Script::writing("family", "0", "$1 $2 $3 $LBD_VRRP_FAMILY");
        let notifies = Notifies::default();
        // One VRID, both families: the third argument tells them apart.
        let v4 = VrrpConfig {
            notify: Some(script.dir.join("notify.sh")),
            ..vrrp_config(100, "198.18.0.10")
        };
        let v6 = VrrpConfig {
            addresses: vec!["2001:db8::10".parse().expect("address")],
            ..v4.clone()
        };
        spawn_notify(&notifies, &v4, "master");
        wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
        spawn_notify(&notifies, &v6, "backup");
        wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
        assert_eq!(script.notes(), "master 51 ipv4 ipv4\nbackup 51 ipv6 ipv6\n");
        // No command configured: nothing runs.
        spawn_notify(&notifies, &vrrp_config(100, "198.18.0.10"), "master");
        assert!(notifies.take().is_empty());
    }

    /// A step-down records its new state before it releases the
    /// addresses: the release awaits netlink (dumps and a delete per
    /// address), and a restart that aborts it meanwhile must find no
    /// master record, or the next lbd resumes a mastership just lost.
    #[test]
    fn a_step_down_records_its_state_before_releasing_the_addresses() {
        for action in [Action::BecomeBackup, Action::BecomeInitialize] {
            let steps = transition_steps(action).expect("a transition");
            let release = steps
                .iter()
                .position(|step| *step == Step::ReleaseAddresses)
                .expect("a step-down releases the addresses");
            let recorded = steps[..release]
                .iter()
                .find_map(|step| match step {
                    Step::Record(recorded) => Some(*recorded),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{action:?} records nothing before its release"));
            // What a restart aborting the release then writes: nothing to
            // resume on.
            let record = Record {
                state: recorded,
                at: 100 * SECOND,
                advertised: Some(100),
            };
            assert_eq!(restart_record(Some(record)), None, "{action:?}");
        }
        assert!(transition_steps(Action::BecomeMaster)
            .expect("a transition")
            .contains(&Step::TakeAddresses));
        assert_eq!(transition_steps(Action::Refresh), None);
    }

    /// The master adds the VIPs as local addresses, so its kernel accepts
    /// what is sent to them: Accept_Mode is in effect true, and the
    /// settings say so rather than the RFC's default.
    #[test]
    fn the_settings_say_the_master_accepts_packets_to_its_addresses() {
        assert!(settings_of(&vrrp_config(100, "198.18.0.10")).accept_mode);
    }

    /// A carrier flap between two looks (the link down for less than the
    /// 0.5 s between them, so no look saw it down) moves the carrier
    /// counter: the next look tells the machine of an outage from the
    /// last look that saw the link steady, and a master advertises and
    /// announces its addresses again (the peer may have taken over
    /// meanwhile and step down silently on our next advert).
    #[test]
    fn a_carrier_flap_between_two_looks_is_reclaimed() {
        let t0 = Instant::now();
        let mut watch = LinkWatch::default();
        assert_eq!(watch.saw_counting(true, Some(4), t0), None);
        let look = t0 + ADDRESS_CHECK;
        assert_eq!(watch.saw_counting(true, Some(4), look), None);
        // Before each master advert: unchanged, steady up to then.
        let advert = look + Duration::from_millis(100);
        assert!(!watch.carrier_moved(Some(4), advert));
        // Down and up again, 400 ms, between two adverts and two looks.
        let next_advert = advert + Duration::from_millis(500);
        assert!(watch.carrier_moved(Some(6), next_advert));
        let change = watch.saw_counting(true, Some(6), next_advert);
        assert_eq!(change, Some(LinkChange::Flapped(advert)));
        assert_eq!(watch.saw_counting(true, Some(6), next_advert), None);
        assert!(!watch.carrier_moved(Some(6), next_advert));
        // The machine: a master at 100 ms adverts reclaims.
        let config = VrrpConfig {
            advert_interval: Duration::from_millis(100),
            ..vrrp_config(255, "198.18.0.10")
        };
        let mut m = Machine::new(settings_of(&config), ip("198.18.0.2"));
        m.startup(t0);
        assert_eq!(m.state(), State::Master);
        let Some(LinkChange::Flapped(since)) = change else {
            panic!("the flap is seen");
        };
        m.link_down(since);
        let actions = m.link_up(next_advert, 255);
        assert!(actions.contains(&Action::Reclaim), "{actions:?}");
        // No counter (not readable): no flap is made up.
        let mut watch = LinkWatch::default();
        watch.saw_counting(true, Some(4), t0);
        assert_eq!(watch.saw_counting(true, None, look), None);
        assert!(!watch.carrier_moved(Some(9), look));
        assert_eq!(watch.saw_counting(true, Some(9), look), None);
        // A flap a look sees down is the outage it is, not a flap too.
        assert_eq!(
            watch.saw_counting(false, Some(10), look + ADDRESS_CHECK),
            Some(LinkChange::Down(look))
        );
        assert_eq!(
            watch.saw_counting(true, Some(11), look + 2 * ADDRESS_CHECK),
            Some(LinkChange::Up)
        );
    }

    /// The carrier counter is read from sysfs for the interface of that
    /// name and index only (a renamed or re-created interface is not
    /// ours).
    #[test]
    fn the_carrier_counter_is_read_for_our_interface_only() {
        let lo = Interface {
            name: "lo".to_owned(),
            index: 1,
            mac: [0; 6],
        };
        if Path::new("/sys/class/net/lo/carrier_changes").exists() {
            assert!(carrier_changes(&lo).is_some());
        }
        let other = Interface { index: 0, ..lo };
        assert_eq!(carrier_changes(&other), None);
        let missing = Interface {
            name: "no-such-if0".to_owned(),
            index: 1,
            mac: [0; 6],
        };
        assert_eq!(carrier_changes(&missing), None);
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

    /// What a test driver announced: the MAC and address of each
    /// gratuitous ARP / NA.
    type Announced = Arc<Mutex<Vec<([u8; 6], IpAddr)>>>;

    /// The ends of a test driver's [`Inputs`], kept open while it runs.
    struct InputEnds {
        _priority: watch::Sender<u8>,
        _link_ups: watch::Sender<u64>,
        data_plane_mac: watch::Sender<[u8; 6]>,
        _synced: watch::Sender<bool>,
        _stop: oneshot::Sender<()>,
    }

    /// A driver of `config` on a test interface with MAC `mac` and index
    /// 0 (no interface has it: the real netlink requests of a transition
    /// fail at once, changing nothing), reading it through `looks`, its
    /// adverts sent over UDP from 127.0.0.1 to port `sink` (see
    /// `VrrpSocket::udp_for_tests`), its announcements recorded.
    async fn test_driver(
        config: VrrpConfig,
        mac: [u8; 6],
        looks: Looks,
        sink: u16,
    ) -> (Driver, Inputs, InputEnds, Announced) {
        let local = ip("127.0.0.1");
        let announced = Announced::default();
        let record = announced.clone();
        let (priority_tx, priority_rx) = watch::channel(config.priority);
        let (link_ups_tx, link_ups_rx) = watch::channel(0);
        let (data_plane_mac_tx, data_plane_mac_rx) = watch::channel(mac);
        let (synced_tx, synced_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = oneshot::channel();
        let status = watch::channel(InstanceStatus {
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
            no_source: false,
            no_source_since: None,
        })
        .0;
        let driver = Driver {
            interface: Interface {
                name: "lbd-test-none0".to_owned(),
                index: 0,
                mac,
            },
            netlink: Netlink::connect().expect("netlink socket"),
            looks,
            announce_with: Arc::new(move |_, mac, address| {
                record.lock().expect("record").push((mac, address));
                Ok(())
            }),
            data_plane_mac: mac,
            mac_change: MacChange::default(),
            link_read_from: None,
            addresses_read_from: None,
            socket: VrrpSocket::udp_for_tests(local, sink).expect("UDP socket"),
            machine: Machine::new(settings_of(&config), local),
            status,
            ignored: BTreeMap::new(),
            complaints: Complaints::default(),
            holding: true,
            release_failing: false,
            announcer: Announcer::default(),
            state_file: None,
            notifies: Notifies::default(),
            source_hold_began: false,
            source_checked_at: None,
            never: config.addresses.clone(),
            link: LinkWatch::default(),
            tracked: config.priority,
            send_failures: SendFailures::default(),
            link_query_log: LogLimit::new(LINK_QUERY_LOG_EVERY),
            config,
        };
        let inputs = Inputs {
            priority: priority_rx,
            link_ups: link_ups_rx,
            data_plane_mac: data_plane_mac_rx,
            synced: synced_rx,
            stop: stop_rx,
        };
        let ends = InputEnds {
            _priority: priority_tx,
            _link_ups: link_ups_tx,
            data_plane_mac: data_plane_mac_tx,
            _synced: synced_tx,
            _stop: stop_tx,
        };
        (driver, inputs, ends, announced)
    }

    /// The bytes a raw IPv4 socket would deliver for `ad` from `src` to
    /// the VRRP group: a 20-byte header (TTL 255) and the advert.
    fn raw_ipv4_advert(ad: &Advertisement, src: IpAddr) -> Vec<u8> {
        let dst = IpAddr::V4(super::super::packet::VRRP_MCAST_V4);
        let payload = ad
            .encode(src, dst, super::super::packet::ChecksumMode::PseudoHeader)
            .expect("encode");
        let total = u16::try_from(20 + payload.len()).expect("length");
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (src, dst) else {
            panic!("IPv4 only");
        };
        let mut bytes = vec![0x45, 0];
        bytes.extend(total.to_be_bytes());
        bytes.extend([0, 0, 0, 0, 255, 112, 0, 0]);
        bytes.extend(src.octets());
        bytes.extend(dst.octets());
        bytes.extend(payload);
        bytes
    }

    /// A backup whose Master_Down_Timer ran out while it did not run
    /// (SIGSTOP, a cgroup freeze), with the live master's advert waiting
    /// in its socket: the advert is heard before the timer is acted on,
    /// so the backup follows the master instead of taking over.
    #[tokio::test]
    async fn a_late_backup_hears_the_queued_advert_before_its_timer() {
        let config = vrrp_config(100, "198.18.0.10");
        let looks = Looks {
            addresses: Arc::new(|_| Box::pin(std::future::pending())),
            link: Arc::new(|_| {
                Box::pin(std::future::ready(Ok(Some(LinkState {
                    up: true,
                    xdp: None,
                    mac: Some([2, 0, 0, 0, 0, 1]),
                }))))
            }),
        };
        let (mut driver, _inputs, _ends, _) =
            test_driver(config.clone(), [2, 0, 0, 0, 0, 1], looks, 9).await;
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(10))
            .expect("uptime over 10 s");
        assert_eq!(driver.machine.startup(long_ago), [Action::BecomeBackup]);
        assert!(driver
            .machine
            .next_deadline()
            .is_some_and(|at| at < Instant::now()));
        let master = ip("198.18.0.3");
        let ad = Advertisement {
            vrid: config.vrid,
            priority: 150,
            max_adver_int_cs: 100,
            addresses: config.addresses.clone(),
        };
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("peer socket");
        let to = ("127.0.0.1", driver.socket.bound_port().expect("port"));
        peer.send_to(&raw_ipv4_advert(&ad, master), to)
            .expect("send");
        let actions = driver.on_deadline().await;
        assert!(!actions.contains(&Action::BecomeMaster), "{actions:?}");
        assert_eq!(driver.machine.state(), State::Backup);
        assert_eq!(driver.machine.master_address(), Some(master));
    }

    /// A master instance at 100 ms adverts to unicast peer 127.0.0.1 (the
    /// test's UDP sink), moving 198.18.0.10.
    fn fast_master_config() -> VrrpConfig {
        VrrpConfig {
            advert_interval: Duration::from_millis(100),
            unicast_peers: vec![ip("127.0.0.1")],
            ..vrrp_config(200, "198.18.0.10")
        }
    }

    /// A master whose looks at its link and addresses never answer (RTNL
    /// held, a reply netlink-proto lost) still sends its adverts on time,
    /// and keeps looking: each look is given up after `NETLINK_LIMIT`.
    #[tokio::test]
    async fn a_master_whose_looks_never_answer_advertises_on_time() {
        let sink = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("sink");
        let port = sink.local_addr().expect("sink address").port();
        let link_looks = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let looks = Looks {
            addresses: Arc::new(|_| Box::pin(std::future::pending())),
            link: Arc::new({
                let link_looks = link_looks.clone();
                move |_| {
                    link_looks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Box::pin(std::future::pending())
                }
            }),
        };
        let (driver, inputs, _ends, _) =
            test_driver(fast_master_config(), [2, 0, 0, 0, 0, 1], looks, port).await;
        let task = tokio::spawn(driver.run(inputs, true, false, false));
        let until = tokio::time::Instant::now() + Duration::from_millis(1500);
        let mut buffer = [0u8; 256];
        let mut adverts = 0;
        while let Ok(Ok(_)) = tokio::time::timeout_at(until, sink.recv(&mut buffer)).await {
            adverts += 1;
        }
        task.abort();
        assert!(
            adverts >= 10,
            "{adverts} adverts left in 1.5 s at 100 ms apart"
        );
        let looked = link_looks.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            looked >= 2,
            "{looked} looks at the link: a look that never answers is given up"
        );
    }

    /// A master whose look finds the interface with a new MAC announces
    /// its addresses with it only once the engine says the data plane
    /// accepts frames for it: before, they would be passed up the stack,
    /// which resets their connections.
    #[tokio::test]
    async fn a_new_mac_is_announced_once_the_data_plane_has_it() {
        let sink = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("sink");
        let port = sink.local_addr().expect("sink address").port();
        let (old, new) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let config = fast_master_config();
        let present = vec![
            InterfaceAddress {
                address: ip("127.0.0.1"),
                prefix_len: 8,
                secondary: false,
                state: crate::netlink::AddressState::default(),
            },
            InterfaceAddress {
                address: ip("198.18.0.10"),
                prefix_len: 32,
                secondary: true,
                state: crate::netlink::AddressState::default(),
            },
        ];
        let looks = Looks {
            addresses: Arc::new(move |_| Box::pin(std::future::ready(Ok(present.clone())))),
            link: Arc::new(move |_| {
                Box::pin(std::future::ready(Ok(Some(LinkState {
                    up: true,
                    xdp: None,
                    mac: Some(new),
                }))))
            }),
        };
        let (driver, inputs, ends, announced) = test_driver(config, old, looks, port).await;
        let task = tokio::spawn(driver.run(inputs, true, false, false));
        let with_new = |announced: &Announced| {
            announced
                .lock()
                .expect("record")
                .iter()
                .filter(|(mac, _)| *mac == new)
                .count()
        };
        // Three looks, and the engine's tick (1 s) has not written it yet.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(
            with_new(&announced),
            0,
            "{:?}",
            announced.lock().expect("record")
        );
        ends.data_plane_mac.send_replace(new);
        tokio::time::sleep(Duration::from_millis(300)).await;
        task.abort();
        assert_eq!(
            announced.lock().expect("record").last(),
            Some(&(new, ip("198.18.0.10")))
        );
    }

    /// A new MAC is followed at once when the data plane has it already,
    /// on the engine's word otherwise, and without it after
    /// `MAC_CONFIRM_LIMIT`; one changed back before is forgotten.
    #[test]
    fn a_mac_change_waits_for_the_data_plane_within_bounds() {
        let (old, new) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let t0 = Instant::now();
        let half = Duration::from_millis(500);
        // The engine wrote it first.
        let mut change = MacChange::default();
        assert_eq!(change.seen(old, Some(new), new, t0), Some(new));
        assert!(!change.waiting());
        // The driver saw it first: pending until the engine's word.
        assert_eq!(change.seen(old, Some(new), old, t0), None);
        assert!(change.waiting());
        assert_eq!(change.seen(old, Some(new), old, t0 + half), None);
        assert_eq!(change.confirmed(old), None);
        assert_eq!(change.confirmed(new), Some(new));
        assert!(!change.waiting());
        // No word: followed once overdue, from the first look that saw it.
        assert_eq!(change.seen(old, Some(new), old, t0), None);
        assert_eq!(change.seen(old, None, old, t0 + half), None, "no MAC read");
        assert_eq!(change.overdue(t0 + MAC_CONFIRM_LIMIT - half), None);
        assert_eq!(change.overdue(t0 + MAC_CONFIRM_LIMIT), Some(new));
        assert!(!change.waiting());
        // Changed back before the data plane took it: nothing to follow.
        assert_eq!(change.seen(old, Some(new), old, t0), None);
        assert_eq!(change.seen(old, Some(old), old, t0 + half), None);
        assert!(!change.waiting());
        assert_eq!(change.overdue(t0 + MAC_CONFIRM_LIMIT), None);
        // A MAC of zeroes is none.
        assert_eq!(change.seen(old, Some([0; 6]), old, t0), None);
        assert!(!change.waiting());
    }

    /// A look that finds the link down (keepalived's FAULT): the status
    /// says so, from when it was last seen up, so `lbctl status` and the
    /// metrics can tell a backup that will not take over from a healthy
    /// one; the link back, it says so no more.
    #[tokio::test]
    async fn a_backup_whose_link_is_down_says_so_in_its_status() {
        let config = vrrp_config(100, "198.18.0.10");
        let looks = Looks {
            addresses: Arc::new(|_| Box::pin(std::future::pending())),
            link: Arc::new(|_| Box::pin(std::future::pending())),
        };
        let (mut driver, _inputs, _ends, _) =
            test_driver(config, [2, 0, 0, 0, 0, 1], looks, 9).await;
        assert_eq!(
            driver.machine.startup(Instant::now()),
            [Action::BecomeBackup]
        );
        let read = |up: bool| LinkRead {
            started: Instant::now(),
            state: Ok(Some(LinkState {
                up,
                xdp: None,
                mac: Some([2, 0, 0, 0, 0, 1]),
            })),
            carrier: None,
        };
        driver.on_link_read(read(true));
        driver.publish();
        let status = driver.status.borrow().clone();
        assert!(!status.link_down, "{status:?}");
        assert_eq!(status.link_down_since, None);

        let before = std::time::SystemTime::now();
        let actions = driver.on_link_read(read(false));
        driver.carry_out(actions).await;
        let status = driver.status.borrow().clone();
        assert_eq!(status.state, State::Backup);
        assert!(status.link_down, "{status:?}");
        let since = status.link_down_since.expect("when the outage began");
        let before_s = before
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        assert!(
            since <= before_s && since + 5 >= before_s,
            "{since} vs {before_s}"
        );

        let actions = driver.on_link_read(read(true));
        driver.carry_out(actions).await;
        let status = driver.status.borrow().clone();
        assert!(!status.link_down, "{status:?}");
        assert_eq!(status.link_down_since, None);
    }

    /// A master whose address adverts go from is removed (networkd, a
    /// lapsed DHCP lease) while a lower-priority peer, hearing nothing,
    /// took over and advertises: it gives up mastership and the VIPs
    /// (keepalived's FAULT) and claims nothing against the peer, which it
    /// silences (no gratuitous ARP while the source is gone); once an
    /// address is back it is a backup first, and wins mastership back by
    /// preemption as ever.
    #[tokio::test]
    async fn a_master_whose_source_is_removed_gives_up_the_vips_until_it_is_back() {
        let sink = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("sink");
        let port = sink.local_addr().expect("sink address").port();
        let config = VrrpConfig {
            advert_interval: Duration::from_millis(500),
            unicast_peers: vec![ip("127.0.0.1")],
            ..vrrp_config(200, "198.18.0.10")
        };
        let present = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let looks = Looks {
            addresses: Arc::new({
                let present = present.clone();
                move |_| {
                    let mut addresses = vec![on_interface("198.18.0.10", 32, true)];
                    if present.load(std::sync::atomic::Ordering::Relaxed) {
                        addresses.insert(0, on_interface("127.0.0.1", 8, false));
                    }
                    Box::pin(std::future::ready(Ok(addresses)))
                }
            }),
            link: Arc::new(|_| {
                Box::pin(std::future::ready(Ok(Some(LinkState {
                    up: true,
                    xdp: None,
                    mac: Some([2, 0, 0, 0, 0, 1]),
                }))))
            }),
        };
        let (driver, inputs, _ends, announced) =
            test_driver(config.clone(), [2, 0, 0, 0, 0, 1], looks, port).await;
        let status = driver.status.subscribe();
        let to = ("127.0.0.1", driver.socket.bound_port().expect("port"));
        let task = tokio::spawn(driver.run(inputs, true, false, false));
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("peer socket");
        let peer_advert = raw_ipv4_advert(
            &Advertisement {
                vrid: config.vrid,
                priority: 100,
                max_adver_int_cs: 50,
                addresses: config.addresses.clone(),
            },
            ip("198.18.0.3"),
        );
        let state = || status.borrow().state;
        // Master, with the claim's announcements out.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(state(), State::Master);

        present.store(false, std::sync::atomic::Ordering::Relaxed);
        // The next look (every 0.5 s) finds the source gone.
        let seen_by = tokio::time::Instant::now() + Duration::from_millis(1200);
        while !status.borrow().no_source && tokio::time::Instant::now() < seen_by {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(status.borrow().no_source, "{:?}", *status.borrow());
        announced.lock().expect("record").clear();
        // The peer took over: its adverts every interval, for longer than
        // a master-down interval (1.5 s).
        for _ in 0..8 {
            peer.send_to(&peer_advert, to).expect("send");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let after_gone = status.borrow().clone();
        assert_eq!(after_gone.state, State::Backup, "{after_gone:?}");
        assert_eq!(after_gone.counters.became_backup, 1, "{after_gone:?}");
        assert!(after_gone.no_source, "{after_gone:?}");
        assert!(after_gone.no_source_since.is_some(), "{after_gone:?}");
        assert_eq!(
            *announced.lock().expect("record"),
            [],
            "no claim against the peer while no advert can leave"
        );

        // The source back: a backup first, then (priority 200 over 100,
        // preempt on) master again after a master-down interval.
        present.store(true, std::sync::atomic::Ordering::Relaxed);
        let back_by = tokio::time::Instant::now() + Duration::from_millis(4000);
        let mut saw_backup_without_fault = false;
        while tokio::time::Instant::now() < back_by && state() != State::Master {
            peer.send_to(&peer_advert, to).expect("send");
            let now = status.borrow().clone();
            saw_backup_without_fault |= now.state == State::Backup && !now.no_source;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        task.abort();
        let recovered = status.borrow().clone();
        assert!(saw_backup_without_fault, "back as a backup first");
        assert_eq!(recovered.state, State::Master, "{recovered:?}");
        assert!(!recovered.no_source, "{recovered:?}");
        assert_eq!(recovered.no_source_since, None);
        assert!(
            !announced.lock().expect("record").is_empty(),
            "the VIPs announced again as master"
        );
    }

    /// The answer of a look begun before one already taken is stale.
    #[test]
    fn an_older_look_answering_late_is_not_taken() {
        let t0 = Instant::now();
        let mut last = None;
        assert!(newer_look(&mut last, t0 + ADDRESS_CHECK));
        assert!(!newer_look(&mut last, t0), "begun earlier, answered later");
        assert!(newer_look(&mut last, t0 + ADDRESS_CHECK));
        assert!(newer_look(&mut last, t0 + 2 * ADDRESS_CHECK));
    }
}
