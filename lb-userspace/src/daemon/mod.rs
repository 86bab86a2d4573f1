//! lbd's life: load the config, start the engine (maps filled, program
//! attached, or a pinned data plane adopted), serve the admin API, and
//! react to health transitions, drain deadlines, neighbour changes and
//! signals: SIGHUP reloads; SIGTERM stops for a restart (the data plane
//! keeps forwarding, pinned, for the next lbd), unless the system is
//! shutting down or rebooting, when it stops as SIGINT does; SIGUSR1 stops
//! for a restart too, keeping the BGP announcements, and exits
//! [`EXIT_STOPPED_FOR_RESTART`] so that a next lbd always follows; SIGINT
//! stops for good and leaves the node as it was found.

pub mod engine;
pub mod events;
pub mod flow;
pub mod http;
pub mod nat_flow;
mod refused;
pub mod replication;
pub mod routes;
mod sd_notify;
mod shutdown_probe;
pub mod tunnel_flow;

pub use refused::{config_exit_status, EXIT_CONFIG_REFUSED, EXIT_OBJECT_REFUSED};

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, oneshot},
};
use tracing::{info, warn};

use crate::{
    api::{
        code,
        server::{ServeOptions, Server},
        Handler, Request, Response,
    },
    config::Config,
    dataplane::Released,
};

use engine::{
    flow_census::{self, Census, Censuses},
    Engine, Stop,
};

/// How often backends' MACs are looked up again and drain deadlines checked.
/// (The NAT reaper ticks on a timer of its own: `nat::reaper::pace`.)
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// Neighbour lookups happen every this many housekeeping ticks.
const MAC_REFRESH_TICKS: u32 = 5;
/// How often the VRRP master sends its recent flows to the backup.
const SYNC_INTERVAL: Duration = Duration::from_millis(250);

/// The next item of an optional channel (replicated batches, BIRD
/// outcomes), or never when the feature is off.
async fn next_of<T>(items: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match items {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// An API request on its way to the engine, with where the answer goes.
type Call = (Request, oneshot::Sender<Response>);

/// A read of flow counts, waiting for a census to answer it.
enum CountRead {
    /// An API request (status, the VIPs, one VIP, a backend's flows).
    Call(Call),
    /// A metrics scrape.
    Scrape(http::Scrape),
}

/// Answers `read` with `census` lent to its handler.
async fn answer_count_read(engine: &mut Engine, census: std::sync::Arc<Census>, read: CountRead) {
    match read {
        CountRead::Call((request, reply)) => {
            engine.lend_census(Some(census));
            let response = routes::handle(engine, request).await;
            engine.lend_census(None);
            let _ = reply.send(response);
        }
        CountRead::Scrape(reply) => {
            engine.lend_census(Some(census));
            let text = engine.render_metrics();
            engine.lend_census(None);
            let _ = reply.send(text);
        }
    }
}

/// Answers the requests still queued for the engine's loop, which reads
/// no more, and refuses further ones: otherwise each waits for an answer
/// that never comes and the API server's drain waits them out.
fn refuse_queued(calls: &mut mpsc::Receiver<Call>) {
    calls.close();
    while let Ok((_, reply)) = calls.try_recv() {
        let _ = reply.send(Response::error(
            503,
            code::INTERNAL,
            "lbd is shutting down; nothing was changed",
        ));
    }
}

/// The API server's handler: hands each request to the engine's loop.
struct ToEngine(mpsc::Sender<Call>);

impl Handler for ToEngine {
    async fn handle(&self, request: Request) -> Response {
        let change = may_change(&request);
        let (reply, answer) = oneshot::channel();
        if self.0.send((request, reply)).await.is_err() {
            return Response::error(503, code::INTERNAL, "lbd is shutting down");
        }
        answer.await.unwrap_or_else(|_| dropped_reply(change))
    }
}

/// Whether `request` may change something when carried out: not a read
/// (`GET`) and not a dry run. A malformed `dry_run` (refused before
/// anything is done) counts as a change: the answer that claims least.
fn may_change(request: &Request) -> bool {
    request.method != crate::api::Method::Get
        && !matches!(
            request.query.get("dry_run").map(String::as_str),
            Some("true" | "1")
        )
}

/// The answer to a request whose reply was dropped unanswered: the engine
/// task ended while carrying it out (a normal stop answers the requests
/// it queued, see `refuse_queued`). A change may be applied, in part or
/// whole, so it is a failure (500) with its own code (`maybe_applied`:
/// lbctl's exit 8), never "nothing was done" (503: lbctl would say try
/// again) nor a plain failure; a read or dry run changed nothing.
fn dropped_reply(change: bool) -> Response {
    if change {
        Response::error(
            500,
            code::MAYBE_APPLIED,
            "lbd's engine stopped while carrying out the change, before answering: it may be applied, in whole or in part; check `lbctl status` before trying again",
        )
    } else {
        Response::error(503, code::INTERNAL, "lbd is shutting down")
    }
}

/// lbd's exit status when a stop for good (SIGINT) ended with errors
/// (BIRD did not take the withdrawal of the node's announcements, the
/// program could not be detached): the systemd unit lists it in
/// `RestartPreventExitStatus=`, so a node taken off for good stays off
/// instead of being started again by `Restart=on-failure`. lbd's other
/// failures exit 1 (a usage error 2, from the argument parser).
pub const EXIT_STOPPED_FOR_GOOD_WITH_ERRORS: u8 = 10;

/// lbd's exit status after SIGUSR1 (the systemd unit's
/// `RestartKillSignal`) stopped it for a restart: its pinned data plane
/// forwards on and the unit's stop path keeps its BGP announcements, for
/// the next lbd. The unit lists it in `RestartForceExitStatus=` (and
/// `SuccessExitStatus=`, a clean stop), so a next lbd always follows,
/// also when the signal came from `systemctl kill -s USR1` or a stray
/// `kill`: with exit 0 nothing would, and BIRD would go on announcing a
/// node whose frozen program sends new flows to backends nobody checks.
pub const EXIT_STOPPED_FOR_RESTART: u8 = 11;

/// How a [`run`] that did not fail ended: its exit status tells the
/// service manager whether a next lbd must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A stop (SIGTERM, SIGINT; SIGUSR1 with `pin_dir = "off"`, which left
    /// nothing for a next lbd): exit 0.
    Done,
    /// A stop for a restart (SIGUSR1 with a pinned data plane): the
    /// program forwards on and the announcements stay for the next lbd;
    /// exit [`EXIT_STOPPED_FOR_RESTART`].
    ForRestart,
}

impl Stopped {
    /// lbd's exit status after this stop.
    pub fn exit_status(self) -> u8 {
        match self {
            Self::Done => 0,
            Self::ForRestart => EXIT_STOPPED_FOR_RESTART,
        }
    }
}

/// Marks the error of a stop for good (see
/// [`EXIT_STOPPED_FOR_GOOD_WITH_ERRORS`]) in the chain [`run`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoppedForGoodWithErrors;

impl std::fmt::Display for StoppedForGoodWithErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the stop for good (SIGINT, or SIGTERM while the system shuts down) ended with errors (exit status {EXIT_STOPPED_FOR_GOOD_WITH_ERRORS}, which the systemd unit does not restart)"
        )
    }
}

/// The exit status of an lbd whose [`run`] or [`offline`] action failed
/// with `error`: [`EXIT_STOPPED_FOR_GOOD_WITH_ERRORS`] for a stop for good,
/// [`EXIT_OBJECT_REFUSED`] when the kernel refused this build's object,
/// else 1.
pub fn exit_status(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<StoppedForGoodWithErrors>().is_some() {
        EXIT_STOPPED_FOR_GOOD_WITH_ERRORS
    } else if refused::object_refused(error) {
        EXIT_OBJECT_REFUSED
    } else {
        1
    }
}

/// Runs lbd with `config` (loaded from `path`, which reloads read again)
/// until SIGTERM, SIGUSR1 or SIGINT; says whether it stopped for a
/// restart. `early` holds the SIGHUP and SIGUSR1 streams `main` caught
/// before it read the config (see [`EarlySignals`]). A stop for good that
/// ends with errors fails with [`StoppedForGoodWithErrors`] in its chain.
pub async fn run(path: &Path, config: Config, early: EarlySignals) -> anyhow::Result<Stopped> {
    raise_open_file_limit();
    raise_locked_memory_limit();
    // Signals first: one that arrives during start-up waits for the loop
    // instead of killing lbd half-way.
    let mut signals = Signals::register(early)?;
    // systemd's notification socket and watchdog, if it set them.
    let mut systemd = sd_notify::Systemd::from_env();
    // From here a start that fails checks for a SIGINT that arrived
    // meanwhile: the operator's stop for good is then carried out (see
    // `stop_for_good_after_failed_start`), not dropped for systemd to
    // start lbd again.
    let (ownership, admin_options) = match claim(path, &config).await {
        Ok(claimed) => claimed,
        Err(error) => {
            return Err(stop_for_good_after_failed_start(
                error,
                StartFailed::BeforeClaim,
                &mut signals,
                &mut systemd,
                path,
                &config,
            )
            .await)
        }
    };
    let server = match bind(&config, &admin_options).await {
        Ok(server) => server,
        Err(error) => {
            // The cleanup claims the data plane itself: this lbd lets go
            // of it first.
            drop(ownership);
            return Err(stop_for_good_after_failed_start(
                error,
                StartFailed::AfterClaim,
                &mut signals,
                &mut systemd,
                path,
                &config,
            )
            .await);
        }
    };
    // The lbd that ran before, as its record named it: the running-state
    // record is restored only if that lbd wrote it (see
    // `engine::running_state`).
    let previous = ownership
        .previous_lbd()
        .map(engine::running_state::Writer::of);
    let (mut engine, events) = match Engine::start(path, config.clone(), previous).await {
        Ok(started) => started,
        Err(error) => {
            // The cleanup claims the data plane itself, and refuses while
            // an admin socket answers: this lbd lets go of both first.
            drop(server);
            drop(ownership);
            return Err(stop_for_good_after_failed_start(
                error,
                StartFailed::AfterClaim,
                &mut signals,
                &mut systemd,
                path,
                &config,
            )
            .await);
        }
    };
    let mut health_events = events.health;
    let mut sync_batches = events.sync;
    // BIRD's answers come back here: the exchanges run in tasks of their
    // own, so a BIRD that hangs never holds this loop.
    let mut bird_outcomes = engine.take_bird_outcomes();

    let (events_tx, mut dataplane_events) = mpsc::channel(256);
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (scrapes_tx, mut scrapes) = mpsc::channel::<http::Scrape>(16);
    // Changes through the API and reloads, counted: a scrape after one
    // gets a render of its own (see http::Renders).
    let changes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // The engine may have resumed VRRP mastership: a start that fails from
    // here steps down (priority 0, "stopped" recorded) like one that fails
    // inside Engine::start, rather than vanishing as master; on a node it
    // found without a data plane, it detaches the program and removes its
    // pins again.
    let (events_reader, metrics_server) = match finish_start(
        &mut engine,
        events_tx,
        scrapes_tx,
        Arc::clone(&changes),
        ready.clone(),
    )
    .await
    {
        Ok(started) => started,
        Err(error) => {
            if signals.interrupt_pending().await {
                return Err(stop_started_engine_for_good(
                    engine,
                    error,
                    &mut signals,
                    &mut systemd,
                )
                .await);
            }
            engine
                .fail_start("start-up failed after the engine started")
                .await;
            // A SIGINT that came while the start was undone: the rest of
            // the stop for good, as for a start that failed earlier.
            drop(engine);
            drop(server);
            drop(ownership);
            return Err(stop_for_good_after_failed_start(
                error,
                StartFailed::AfterClaim,
                &mut signals,
                &mut systemd,
                path,
                &config,
            )
            .await);
        }
    };
    info!(
        interface = %engine.interface_name(),
        hook = %engine.hooked(),
        vips = engine.vip_count(),
        admin_socket = %server.path().display(),
        "lbd ready"
    );
    let (calls_tx, mut calls) = mpsc::channel::<Call>(64);
    let (stop_api, api_stopped) = oneshot::channel::<()>();
    let api = tokio::spawn(server.run(Arc::new(ToEngine(calls_tx)), async move {
        let _ = api_stopped.await;
    }));
    // `Type=notify`: `systemctl start` returns (and the watchdog starts)
    // once lbd serves.
    systemd.ready();

    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u32 = 0;
    let mut sync_tick = tokio::time::interval(SYNC_INTERVAL);
    sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The NAT reaper's ticks: each says when the next one runs, a second
    // after it or sooner while there is much to free (`nat::reaper::pace`,
    // which bounds the loop's share they take).
    let reap = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(reap);
    // Reads of flow counts are answered from censuses of the connection
    // table made off this loop (see engine::flow_census).
    let (mut censuses, mut census_done) = Censuses::<CountRead>::new();
    // Replication walks the connection table off this loop too; its
    // records come back here (see replication::walks).
    let replication_walks = engine.replication_walk_ends();
    // Set when lbd lost its hook (its interface went) and the interface is
    // back: lbd then exits with it, for its service manager to start it
    // again on the interface (see engine::tracking).
    let mut lost_hook = None;
    // SIGUSR1 left the data plane and the announcements for a next lbd.
    let mut stopped = Stopped::Done;
    let stop = loop {
        tokio::select! {
            received = signals.next() => {
                // Only SIGTERM asks: systemd sends it at a shutdown or
                // reboot as at `systemctl stop`.
                let system_stopping =
                    received == Received::Terminate && shutdown_probe::system_stopping().await;
                let pinned = engine.is_pinned();
                info!(
                    signal = received.name(),
                    "{}",
                    what_the_signal_does(received, system_stopping, pinned)
                );
                match stop_kind(received, system_stopping) {
                    Some(stop) => {
                        if received == Received::Restart && pinned {
                            engine.mark_restart();
                            stopped = Stopped::ForRestart;
                        }
                        break stop;
                    }
                    None => {
                        // A refusal is logged by the reload itself.
                        let _ = engine.reload(false).await;
                        changes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
            Some((request, reply)) = calls.recv() => {
                if flow_census::reads_counts(&request) {
                    // A read: answered now, or parked for the next census.
                    let read = CountRead::Call((request, reply));
                    if let Some((census, read)) = censuses.read(&mut engine, read) {
                        answer_count_read(&mut engine, census, read).await;
                    }
                } else {
                    let change = request.method != crate::api::Method::Get;
                    let response = routes::handle(&mut engine, request).await;
                    if change {
                        // Before the answer: a scrape its client sends next
                        // sees the change.
                        changes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    let _ = reply.send(response);
                }
            }
            Some(event) = health_events.recv() => engine.on_health(event),
            Some(event) = dataplane_events.recv() => engine.on_dataplane_event(&event),
            Some(reply) = scrapes.recv() => {
                let read = CountRead::Scrape(reply);
                if let Some((census, read)) = censuses.read(&mut engine, read) {
                    answer_count_read(&mut engine, census, read).await;
                }
            }
            Some(census) = census_done.recv() => {
                for (census, read) in censuses.finished(&mut engine, census) {
                    answer_count_read(&mut engine, census, read).await;
                }
            }
            Some(batch) = next_of(&mut sync_batches) => engine.on_sync(&batch),
            Some(outcome) = next_of(&mut bird_outcomes) => engine.on_bird_outcome(outcome),
            _ = sync_tick.tick() => engine.sync_tick(),
            () = &mut reap => {
                let wait = engine.nat_reap();
                // From the tick's end: the loop serves the rest meanwhile.
                reap.as_mut().reset(tokio::time::Instant::now() + wait);
            }
            _ = replication::walk_ended(&replication_walks) => engine.replication_walk_ended(),
            // From this loop itself: a loop that stops turning stops the
            // pings, and systemd kills lbd as wedged.
            () = systemd.ping_due() => systemd.ping(),
            _ = housekeeping.tick() => {
                engine.expire_drains(std::time::Instant::now());
                engine.reconcile_health();
                engine.retry_guard();
                if let Some(error) = engine.check_link().await {
                    lost_hook = Some(error);
                    break Stop::Restart;
                }
                // `/readyz`: the data plane is attached (not while lbd
                // waits for its interface to come back).
                ready.store(engine.is_attached(), std::sync::atomic::Ordering::Relaxed);
                engine.track();
                engine.nat_tick().await;
                engine.watch_traffic();
                ticks = ticks.wrapping_add(1);
                if ticks.is_multiple_of(MAC_REFRESH_TICKS) {
                    engine.refresh_macs().await;
                }
            }
        }
        // Whatever happened, announcements follow (BIRD hears only of
        // changes).
        engine.announce();
    };
    ready.store(false, std::sync::atomic::Ordering::Relaxed);
    // The stop's steps ping from `while_stopping`; this one covers the
    // API's drain before them.
    systemd.ping();
    // Cancels a census in flight; the reads it would have answered are
    // told lbd is shutting down (their answers' channels close).
    drop(censuses);
    if let Some(server) = metrics_server {
        server.abort();
    }
    if let Some(reader) = events_reader {
        reader.abort();
    }
    refuse_queued(&mut calls);
    let _ = stop_api.send(());
    if let Err(error) = api.await {
        warn!(%error, "admin API task failed");
    }
    let pinned = engine.is_pinned();
    // What the stop does, for the signals that arrive while it runs.
    let doing = match (stop, pinned) {
        (Stop::Clean, _) => {
            "stopping for good (SIGINT, or SIGTERM while the system shuts down), removing the data plane"
        }
        (Stop::Restart, true) => {
            "stopping for a restart, leaving the pinned data plane forwarding for the next lbd"
        }
        (Stop::Restart, false) => "stopping, taking its program away with it (pin_dir is off)",
    };
    // pin_dir is off: the program goes with lbd, whatever the stop, so
    // the announcements must go too, and VRRP steps down (priority 0,
    // "stopped" recorded) as for a stop for good: otherwise the backup
    // waits out its master-down interval before it takes over, and the
    // next lbd would resume mastership with an empty data plane while the
    // peer holds the replicated flows. If BIRD does not take the
    // withdrawal, lbd still stops (nothing could forward if it stayed) but
    // fails.
    let withdrawal = match withdraw_first(stop, pinned, lost_hook.is_some()) {
        WithdrawFirst::HandOverAndWithdraw => {
            signals
                .while_stopping(doing, &mut systemd, async {
                    engine.final_sync().await;
                    let handed = engine.hand_over().await;
                    engine.withdraw_for_stop(&handed).await.err().map(|error| {
                        error.context("pin_dir is off, so the program goes with lbd, but BIRD did not take the withdrawal of this node's BGP announcements: the routers may still send flows to this node, which forwards nothing now; once BIRD answers, `lbd --release-vips` withdraws them")
                    })
                })
                .await
        }
        WithdrawFirst::Withdraw => {
            signals
                .while_stopping(
                    "stopping: the interface lost lbd's program; withdrawing the BGP announcements",
                    &mut systemd,
                    engine.withdraw_announcements(),
                )
                .await
                .err()
                .and_then(|error| {
                    if crate::bgp::bird::is_not_running(&error) {
                        // The routes file is emptied: a BIRD that starts
                        // reads it, and one not running announces nothing.
                        warn!(error = %format!("{error:#}"), "BGP: BIRD is not running, so it announces nothing of this node");
                        return None;
                    }
                    Some(error.context("the interface lost lbd's program, and BIRD did not take the withdrawal of this node's BGP announcements: the routers may still send flows to this node, which forwards nothing now; once BIRD answers, `lbd --release-vips` withdraws them"))
                })
        }
        WithdrawFirst::Nothing => None,
    };
    let admin_socket = engine.config().admin_socket.clone();
    let shutdown = signals
        .while_stopping(doing, &mut systemd, engine.shutdown(stop))
        .await;
    let released = match shutdown {
        Ok(released) => released,
        // Not to be restarted: the operator took the node off for good,
        // and a new lbd would adopt the data plane and serve again.
        Err(error) if stop == Stop::Clean => return Err(error.context(StoppedForGoodWithErrors)),
        Err(error) => return Err(error),
    };
    if stop == Stop::Clean {
        // The announcement is withdrawn (the shutdown fails otherwise): the
        // stop path must not empty the routes file again later, when
        // another lbd may use it.
        crate::ownership::held::forget_announcement(&admin_socket);
    }
    if let Some(error) = lost_hook {
        // VRRP stepped down when the hook was lost, and BGP withdrew
        // above (awaited: see `WithdrawFirst::Withdraw`), or failed to,
        // said below; the maps stay pinned for the next lbd.
        info!("lbd stopped; the interface lost its program, which the next lbd attaches again");
        drop(ownership);
        return Err(match withdrawal {
            Some(bgp) => error.context(format!("{bgp:#}")),
            None => error,
        });
    }
    if let Some(error) = withdrawal {
        drop(ownership);
        return Err(error);
    }
    match released {
        Released::StillForwarding => {
            info!("lbd stopped; the pinned data plane is still forwarding");
        }
        Released::NothingAttached => {
            info!("lbd stopped; no program was attached (its hook was lost); the maps stay pinned for the next lbd, which attaches anew");
        }
        Released::Detached if pinned => info!("lbd stopped; XDP program detached, pins removed"),
        Released::Detached => {
            info!("lbd stopped; XDP program detached (pin_dir is off: nothing outlives lbd)");
        }
    }
    drop(ownership);
    Ok(stopped)
}

/// What a stop does about the BGP announcements before the engine's
/// shutdown (which withdraws them itself only for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WithdrawFirst {
    /// Nothing: a stop for good withdraws in the shutdown; a restart
    /// whose pinned program still runs keeps them for the next lbd.
    Nothing,
    /// `pin_dir` is off, so the program goes with lbd: the last flows go
    /// to the peer, VRRP hands over, then the withdrawal, forwarding on
    /// while the traffic moves.
    HandOverAndWithdraw,
    /// The interface's hook was lost, so the program no longer runs
    /// (VRRP stepped down then): only the withdrawal, awaited. The loop
    /// planned it when the hook went, but may not have sent it (an
    /// exchange with BIRD was in flight when it exited).
    Withdraw,
}

/// [`WithdrawFirst`] for a stop `stop` of a data plane `pinned` or not,
/// after the interface's hook was lost (`lost_hook`) or not.
fn withdraw_first(stop: Stop, pinned: bool, lost_hook: bool) -> WithdrawFirst {
    match (stop, pinned, lost_hook) {
        (Stop::Clean, ..) => WithdrawFirst::Nothing,
        (Stop::Restart, false, _) => WithdrawFirst::HandOverAndWithdraw,
        (Stop::Restart, true, true) => WithdrawFirst::Withdraw,
        (Stop::Restart, true, false) => WithdrawFirst::Nothing,
    }
}

/// How lbd stops for `signal` while the system is stopping (shutting
/// down or rebooting, see [`shutdown_probe`]) or not; None for a signal
/// that is no stop (SIGHUP, a reload). SIGTERM is `systemctl stop`'s, and
/// a shutdown's too: at a shutdown no next lbd comes to adopt a pinned
/// data plane before the reboot, which the pins do not outlive, so it
/// stops for good as SIGINT does (the last flows to the VRRP peer, a
/// priority-0 hand-over, the BGP withdrawal), not leaving the peer to
/// wait out its master-down interval. SIGUSR1 is a restart whatever the
/// system does: systemd sends it only for a restart job.
fn stop_kind(signal: Received, system_stopping: bool) -> Option<Stop> {
    match (signal, system_stopping) {
        (Received::Interrupt, _) | (Received::Terminate, true) => Some(Stop::Clean),
        (Received::Terminate, false) | (Received::Restart, _) => Some(Stop::Restart),
        (Received::Hangup, _) => None,
    }
}

/// What lbd logs (at info) on `signal`: which stop it makes, or a reload,
/// and why, for the system stopping or not (`system_stopping`, asked at
/// SIGTERM only) and a data plane `pinned` or not. Kept beside
/// [`stop_kind`], whose choice it explains.
fn what_the_signal_does(signal: Received, system_stopping: bool, pinned: bool) -> String {
    match (signal, system_stopping, pinned) {
        (Received::Interrupt, ..) => "SIGINT: stopping for good and removing the data plane".to_owned(),
        (Received::Terminate, true, _) => "SIGTERM while the system shuts down or reboots: stopping for good as for SIGINT (the last flows to the VRRP peer, VRRP hands over with priority 0, the BGP announcements are withdrawn, the program is detached and its pins removed): no lbd comes back before the reboot, and the pins do not outlive it".to_owned(),
        (Received::Terminate, false, true) => "SIGTERM (the system is not shutting down): stopping; the pinned data plane keeps forwarding for the next lbd".to_owned(),
        (Received::Terminate, false, false) => "SIGTERM (the system is not shutting down): stopping; pin_dir is off, so the XDP program goes with lbd and VRRP steps down".to_owned(),
        (Received::Restart, _, true) => format!("SIGUSR1: stopping for a restart; BGP announcements and the pinned data plane stay (exit status {EXIT_STOPPED_FOR_RESTART}: the systemd unit starts the next lbd)"),
        // Nothing forwards once lbd is gone: announcing on would attract
        // traffic to a node that drops it.
        (Received::Restart, _, false) => "SIGUSR1: stopping; pin_dir is off, so the XDP program goes with lbd, VRRP steps down and the BGP announcements are withdrawn".to_owned(),
        (Received::Hangup, ..) => "SIGHUP: reloading the config".to_owned(),
    }
}

/// The part of the start before the engine, up to the claim: the
/// `LBD_TC_ATTACH` check, the admin socket's directory and the data
/// plane's locks (see `ownership::claim`); the admin socket's options,
/// for [`bind`].
async fn claim(
    path: &Path,
    config: &Config,
) -> anyhow::Result<(crate::ownership::Ownership, ServeOptions)> {
    // A wrong LBD_TC_ATTACH is refused before anything is loaded or
    // pinned (the attach would refuse it too, after the load).
    crate::ownership::cls_bpf::tc_path().map_err(|error| anyhow::anyhow!(error))?;
    let admin_options: ServeOptions = crate::privilege::admin_socket_options(config)?;
    if let Some(dir) = config.admin_socket.parent() {
        create_socket_dir(dir, admin_options.group)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    // Exactly one lbd per data plane: its locks are taken before anything
    // touches the pins or the interface, and held until lbd exits (the
    // kernel drops them then, also on kill -9). A second lbd stops here.
    let ownership = crate::ownership::claim(config, path).await?;
    let locks: Vec<String> = ownership.locks().map(|p| p.display().to_string()).collect();
    info!(
        ?locks,
        "this lbd owns the data plane of {}", config.interface
    );
    Ok((ownership, admin_options))
}

/// The admin socket, bound (after [`claim`]).
async fn bind(config: &Config, options: &ServeOptions) -> anyhow::Result<Server> {
    Server::bind(&config.admin_socket, options)
        .await
        .with_context(|| format!("admin socket {}", config.admin_socket.display()))
}

/// What a stop for good (SIGINT) says it is doing, when the start it
/// interrupted failed.
const STOPPING_AFTER_FAILED_START: &str =
    "stopping for good (SIGINT during a start that failed), removing the data plane";

/// A start that `failed` with `error` before the engine ran (or inside its
/// start, which undid what it did on a node it found without a data
/// plane): with a SIGINT pending, the operator's stop for good is carried
/// out (see [`after_failed_start`]): once this lbd had claimed the data
/// plane, as `lbd --cleanup` would (VIP addresses off, BGP announcements
/// withdrawn, the program detached and its pins removed, unless BIRD may
/// still announce the node; refused where another lbd owns the data
/// plane); before that, removing nothing. The error is then marked
/// [`StoppedForGoodWithErrors`], so systemd does not start lbd again.
/// Without one, `error` as it is.
async fn stop_for_good_after_failed_start(
    error: anyhow::Error,
    failed: StartFailed,
    signals: &mut Signals,
    systemd: &mut sd_notify::Systemd,
    path: &Path,
    config: &Config,
) -> anyhow::Error {
    match after_failed_start(failed, signals.interrupt_pending().await) {
        AfterFailedStart::Fail => return error,
        AfterFailedStart::StopForGood => return stopped_before_claim(error),
        AfterFailedStart::Remove => {}
    }
    warn!(error = %format!("{error:#}"), "SIGINT arrived during a start that failed: stopping for good, removing what lbd holds as `lbd --cleanup` does");
    let removal = signals
        .while_stopping(
            STOPPING_AFTER_FAILED_START,
            systemd,
            offline(path, Some(config), Offline::Cleanup),
        )
        .await;
    failed_start_interrupted(error, removal)
}

/// A start that failed with `error` once the engine ran (the metrics
/// listener, the privilege drop), SIGINT pending: the stop for good runs
/// as at any other SIGINT (see [`Engine::shutdown`]), and the error is
/// marked [`StoppedForGoodWithErrors`].
async fn stop_started_engine_for_good(
    engine: Engine,
    error: anyhow::Error,
    signals: &mut Signals,
    systemd: &mut sd_notify::Systemd,
) -> anyhow::Error {
    warn!(error = %format!("{error:#}"), "SIGINT arrived during a start that failed: stopping for good, removing the data plane");
    let admin_socket = engine.config().admin_socket.clone();
    let shutdown = signals
        .while_stopping(
            STOPPING_AFTER_FAILED_START,
            systemd,
            engine.shutdown(Stop::Clean),
        )
        .await;
    if shutdown.is_ok() {
        // As after any stop for good: the routes file is not emptied
        // again by the stop path, when another lbd may use it.
        crate::ownership::held::forget_announcement(&admin_socket);
    }
    failed_start_interrupted(error, shutdown.map(|_| ()))
}

/// How far a start got before it failed: whether what sits on the
/// interface and in the pin_dir is known to be this config's data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartFailed {
    /// Before this lbd claimed the data plane (its locks, and the check
    /// that the interface's program is the one pinned in its pin_dir): it
    /// may be another data plane's, which a refused lbd never touches.
    BeforeClaim,
    /// Once the claim succeeded: the data plane is this config's.
    AfterClaim,
}

/// What a start that failed does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterFailedStart {
    /// No SIGINT: it fails as it is (systemd may start lbd again).
    Fail,
    /// A SIGINT before the claim: a stop for good that removes nothing
    /// (exit [`EXIT_STOPPED_FOR_GOOD_WITH_ERRORS`], not restarted).
    StopForGood,
    /// A SIGINT after the claim: the stop for good removes what lbd holds
    /// as `lbd --cleanup` does, then exits as `StopForGood`.
    Remove,
}

/// What a start that `failed` does, a SIGINT pending or not
/// (`interrupted`).
fn after_failed_start(failed: StartFailed, interrupted: bool) -> AfterFailedStart {
    match (interrupted, failed) {
        (false, _) => AfterFailedStart::Fail,
        (true, StartFailed::BeforeClaim) => AfterFailedStart::StopForGood,
        (true, StartFailed::AfterClaim) => AfterFailedStart::Remove,
    }
}

/// The error of a start that failed with `error` before this lbd claimed
/// the data plane, a SIGINT pending: the stop for good it asked for, with
/// nothing removed (what is there may be another lbd's), marked
/// [`StoppedForGoodWithErrors`].
fn stopped_before_claim(error: anyhow::Error) -> anyhow::Error {
    warn!(error = %format!("{error:#}"), "SIGINT arrived during a start that failed before this lbd claimed the data plane: stopping for good, removing nothing (what is on the interface may be another lbd's; run `lbd --cleanup` to remove this config's data plane)");
    error
        .context("SIGINT arrived during the start, which failed before this lbd claimed the data plane: lbd stopped for good and removed nothing (run `lbd --cleanup` to remove what this config's lbd left)")
        .context(StoppedForGoodWithErrors)
}

/// The error of a start that failed with `error` while a SIGINT was
/// pending, once `removal` (the stop for good it carried out) ended:
/// marked [`StoppedForGoodWithErrors`] either way (exit status
/// [`EXIT_STOPPED_FOR_GOOD_WITH_ERRORS`]: the start failed, and systemd
/// must not start lbd again), saying what is left to do.
fn failed_start_interrupted(error: anyhow::Error, removal: anyhow::Result<()>) -> anyhow::Error {
    let outcome = match removal {
        Ok(()) => {
            info!("lbd stopped for good after its start failed: the data plane it held is removed");
            "SIGINT arrived during the start: lbd stopped for good, and the data plane it held is removed".to_owned()
        }
        Err(removal) => format!(
            "SIGINT arrived during the start, and the stop for good that followed failed too ({removal:#}): once that is fixed, run `lbd --cleanup` to remove what is left"
        ),
    };
    error.context(outcome).context(StoppedForGoodWithErrors)
}

/// How long a failed start waits for a SIGINT the kernel already
/// delivered to reach its stream (the runtime's signal driver reads it
/// from a pipe): a start that fails adds this much to its exit.
const SIGNAL_SETTLE: Duration = Duration::from_millis(20);

/// lbd's SIGHUP (a reload) and SIGUSR1 (a restart) streams, caught first
/// thing in lbd's `main`, before the config is read. Why: until a handler
/// is installed their default action ends the process. Killed by SIGHUP,
/// lbd exits in a way systemd counts as clean and does not restart
/// (`Restart=on-failure`), so a `kill -HUP` racing a restart would leave
/// the node without lbd. Killed by SIGUSR1 (the unit's RestartKillSignal:
/// a `systemctl restart` racing a start), lbd writes no restart marker,
/// so the unit's stop path withdraws the BGP announcements and the
/// restart is not hitless. Caught, one that arrives before the loop runs
/// waits for it: a reload, or a stop for a restart, once started. A start
/// that fails before the loop runs exits with its failure as before, a
/// SIGUSR1 that came meanwhile writing no restart marker.
/// SIGINT and SIGTERM keep their default action until [`run`]: a stop
/// before the claim ends lbd at once, nothing touched.
pub struct EarlySignals {
    /// SIGHUP: a reload.
    hangup: tokio::signal::unix::Signal,
    /// SIGUSR1: a stop for a restart.
    restart: tokio::signal::unix::Signal,
}

impl EarlySignals {
    /// Installs the SIGHUP and SIGUSR1 handlers (for good: the streams
    /// handed to [`run`] keep what arrives until the loop takes it).
    pub fn register() -> anyhow::Result<Self> {
        Ok(Self {
            hangup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
            restart: signal(SignalKind::user_defined1())
                .context("installing the SIGUSR1 handler")?,
        })
    }
}

/// The signals lbd acts on, registered before anything else starts
/// (SIGHUP and SIGUSR1 earlier still: see [`EarlySignals`]).
struct Signals {
    /// SIGINT: a stop for good.
    interrupt: tokio::signal::unix::Signal,
    /// SIGTERM: a stop for a restart (for good while the system shuts
    /// down, see [`stop_kind`]).
    terminate: tokio::signal::unix::Signal,
    /// SIGUSR1, the systemd unit's RestartKillSignal: a restart that
    /// leaves word for the unit's stop path to keep the BGP announcements.
    restart: tokio::signal::unix::Signal,
    /// SIGHUP: a reload.
    hangup: tokio::signal::unix::Signal,
}

/// A signal [`Signals`] received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Received {
    Interrupt,
    Terminate,
    Restart,
    Hangup,
}

impl Received {
    /// The signal's name.
    fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
            Self::Restart => "SIGUSR1",
            Self::Hangup => "SIGHUP",
        }
    }
}

impl Signals {
    /// Registers SIGINT and SIGTERM beside `early`, caught already.
    fn register(early: EarlySignals) -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            restart: early.restart,
            hangup: early.hangup,
        })
    }

    /// The next signal. Of several pending at once (they arrived during a
    /// slow start, or together), SIGINT comes first: a stop for good wins
    /// over a restart, which a random pick would make one half the time;
    /// then SIGTERM, SIGUSR1, and a reload last. Only the signals are
    /// taken in order: the loop's other events stay served fairly.
    /// Cancel-safe: a signal not returned stays pending.
    async fn next(&mut self) -> Received {
        tokio::select! {
            biased;
            Some(()) = self.interrupt.recv() => Received::Interrupt,
            Some(()) = self.terminate.recv() => Received::Terminate,
            Some(()) = self.restart.recv() => Received::Restart,
            Some(()) = self.hangup.recv() => Received::Hangup,
            // The streams never end while lbd runs.
            else => std::future::pending().await,
        }
    }

    /// Whether a SIGINT is pending (taken if so), without waiting for
    /// one: for a start that failed, which no loop will read signals
    /// after. [`SIGNAL_SETTLE`] lets the runtime's signal driver hand over
    /// one the kernel delivered just now.
    async fn interrupt_pending(&mut self) -> bool {
        matches!(
            tokio::time::timeout(SIGNAL_SETTLE, self.interrupt.recv()).await,
            Ok(Some(()))
        )
    }

    /// Runs `stopping`, a step of lbd's stop (`doing` says which stop),
    /// to its end. A signal that arrives meanwhile (a second Ctrl-C, a
    /// SIGINT during a stop for a restart) is logged at warn and ignored:
    /// the stop goes on as it began, since one part done for a restart
    /// and the rest for good would leave neither. Else nothing would read
    /// it, and the operator would not know why it did nothing.
    /// systemd's watchdog is pinged meanwhile: a stop it did not start (a
    /// SIGINT from `systemctl kill` or the package's removal) runs with
    /// the watchdog armed, its steps bounded but together perhaps longer,
    /// and a kill would be restarted, undoing a stop for good.
    async fn while_stopping<T>(
        &mut self,
        doing: &str,
        systemd: &mut sd_notify::Systemd,
        stopping: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::pin!(stopping);
        loop {
            tokio::select! {
                biased;
                done = &mut stopping => return done,
                received = self.next() => {
                    let name = received.name();
                    warn!(signal = name, "{name} ignored: lbd is {doing}, and finishes that stop as it began (to remove a data plane a restart leaves, run `lbd --cleanup` once lbd has exited)");
                }
                () = systemd.ping_due() => systemd.ping(),
            }
        }
    }
}

/// Mode of the directories lbd creates for the admin socket when
/// `admin_socket_group` is set: that group may reach the socket (0660)
/// through them, whatever the umask (the systemd unit's is 0077).
const SOCKET_DIR_MODE: u32 = 0o750;

/// Creates `dir`, the admin socket's directory, with its missing parents.
/// With `group` (`admin_socket_group`'s gid), each directory created is
/// given to that group with mode [`SOCKET_DIR_MODE`], so its members can
/// reach the socket; directories that exist are left as they are. Without
/// a group the socket is root's only, and the umask decides.
fn create_socket_dir(dir: &Path, group: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(gid) = group else {
        return std::fs::create_dir_all(dir);
    };
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    for created in missing.into_iter().rev() {
        match std::fs::create_dir(created) {
            Ok(()) => {
                std::os::unix::fs::chown(created, None, Some(gid))?;
                std::fs::set_permissions(
                    created,
                    std::fs::Permissions::from_mode(SOCKET_DIR_MODE),
                )?;
                info!(
                    dir = %created.display(),
                    gid,
                    mode = format!("{SOCKET_DIR_MODE:04o}"),
                    "created the admin socket's directory, open to admin_socket_group"
                );
            }
            // Made meanwhile by someone else: theirs, left alone.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && created.is_dir() => {
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The rest of the start once the engine runs: the data-plane event
/// reader, the metrics listener, and dropping privileges. Returns the
/// reader's and the listener's tasks.
async fn finish_start(
    engine: &mut Engine,
    events_tx: mpsc::Sender<lb_common::DataplaneEvent>,
    scrapes_tx: mpsc::Sender<http::Scrape>,
    changes: Arc<std::sync::atomic::AtomicU64>,
    ready: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<(
    Option<tokio::task::JoinHandle<()>>,
    Option<tokio::task::JoinHandle<()>>,
)> {
    let events_reader = match engine.take_dataplane_events() {
        Some(ring) => Some(events::spawn(ring, events_tx).context("data-plane event reader")?),
        None => None,
    };
    let metrics_server = match engine.config().metrics_listen {
        Some(address) => match http::serve(address, scrapes_tx, changes, ready).await {
            Ok(server) => Some(server),
            Err(error) => {
                if let Some(reader) = events_reader {
                    reader.abort();
                }
                return Err(error);
            }
        },
        None => None,
    };
    // Everything is bound and attached: from here on lbd needs only the
    // capabilities it keeps (see privilege.rs).
    if let Err(error) =
        crate::privilege::drop_after_start(engine.config()).context("dropping privileges")
    {
        for task in [events_reader, metrics_server].into_iter().flatten() {
            task.abort();
        }
        return Err(error);
    }
    Ok((events_reader, metrics_server))
}

/// Raises the soft open-file limit to the hard one (before privileges are
/// dropped, though it needs none) and logs the result: the default 1024 is
/// too few for a node with many backends, and the listeners' bounds (see
/// `slots`) are sized against what is left.
fn raise_open_file_limit() {
    match crate::rlimit::raise_nofile() {
        Ok(limit) if limit.soft > limit.before => info!(
            soft = limit.soft,
            hard = limit.hard,
            was = limit.before,
            "open-file limit (RLIMIT_NOFILE) raised to the hard limit"
        ),
        Ok(limit) => info!(
            soft = limit.soft,
            hard = limit.hard,
            "open-file limit (RLIMIT_NOFILE) already at the hard limit"
        ),
        Err(error) => warn!(%error, "could not raise the open-file limit (RLIMIT_NOFILE)"),
    }
}

/// Raises the locked-memory limit to unlimited (kernels before 5.11
/// charge the maps to it: `sudo lbd` would fail to create them with a
/// misleading EPERM), best effort: a newer kernel charges them to the
/// memory cgroup instead, so a failure is only worth a warning before
/// 5.11.
fn raise_locked_memory_limit() {
    use aya::util::KernelVersion;
    match crate::rlimit::raise_memlock() {
        Ok(crate::rlimit::Memlock::Unlimited) => {
            tracing::debug!("locked-memory limit (RLIMIT_MEMLOCK) already unlimited");
        }
        Ok(crate::rlimit::Memlock::Raised { soft, hard }) => info!(
            was_soft = soft,
            was_hard = hard,
            "locked-memory limit (RLIMIT_MEMLOCK) raised to unlimited (kernels before 5.11 charge BPF maps to it)"
        ),
        Err(error) => {
            let charged = KernelVersion::current()
                .map_or(true, |version| version < KernelVersion::new(5, 11, 0));
            if charged {
                warn!(%error, "could not raise the locked-memory limit (RLIMIT_MEMLOCK) to unlimited: this kernel charges BPF maps to it, so creating them may fail with EPERM (raise it: `ulimit -l unlimited`, or LimitMEMLOCK=infinity as the systemd unit does)");
            } else {
                tracing::debug!(%error, "could not raise the locked-memory limit (RLIMIT_MEMLOCK); this kernel charges BPF maps to the memory cgroup instead");
            }
        }
    }
}

/// What `lbd --cleanup` and `lbd --release-vips` do, with no lbd running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offline {
    /// Remove the VRRP addresses the lbd that ran may have held from its
    /// interface (the systemd unit runs this after every stop, so a node
    /// that stays down never answers ARP for a VIP the peer now holds),
    /// and withdraw its BGP announcements unless it stopped for a restart.
    ReleaseVips,
    /// Remove the VIP addresses, withdraw the BGP announcements, detach
    /// the program, remove every pin and a stale admin socket, and put
    /// back the `forwarding` settings lbd switched on. A withdrawal BIRD
    /// did not take, BIRD running, keeps the program, its pins and the
    /// `forwarding` settings (see [`offline`]).
    Cleanup,
}

/// Runs an offline action for the lbd started with the config at `path`:
/// on what that lbd recorded it held (see `ownership::held`), so an edit
/// of the file since changes nothing; on what `config` says if it left no
/// record. The record is the one at the config's admin socket, else (the
/// admin socket edited since) the newest naming this config file (see
/// `held::find`). `config` is None when the file could not be read: the
/// record is then looked for (see `held::search_dirs`), and without one
/// nothing is done. Refused while an lbd owns that data plane (its locks,
/// see `ownership`), whatever admin socket the config names. A routes
/// file a running lbd uses now is not emptied (see
/// `held::lock_routes_file`).
pub async fn offline(path: &Path, config: Option<&Config>, action: Offline) -> anyhow::Result<()> {
    use crate::ownership::held::{self, Source};
    let record = match config {
        Some(config) => held::record_path(&config.admin_socket)
            .and_then(|p| held::read(&p))
            .or_else(|| {
                let runtime = std::env::var("RUNTIME_DIRECTORY").ok();
                let dirs = held::search_dirs_of(Some(&config.admin_socket), runtime.as_deref());
                let (found, record) = held::find(path, &dirs)?;
                info!(record = %found.display(), "no record at the config's admin socket: using the newest record of the lbd started with this config");
                Some(record)
            }),
        None => {
            let text = std::fs::read_to_string(path).ok();
            let runtime = std::env::var("RUNTIME_DIRECTORY").ok();
            let dirs = held::search_dirs(text.as_deref(), runtime.as_deref());
            let found = held::find(path, &dirs);
            if found.is_none() {
                anyhow::bail!(
                    "the config was not read, and no record of what the lbd started with {} held was found in {}: nothing released",
                    path.display(),
                    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                );
            }
            found.map(|(_, record)| record)
        }
    };
    let Some((plan, source)) = held::offline_plan(record.as_ref(), config.map(|c| (c, path)))
    else {
        anyhow::bail!("nothing to release: no config and no record");
    };
    match source {
        Source::Record if config.is_none() => info!(
            interface = %plan.interface, pid = plan.pid,
            "the config was not read: releasing what the lbd that ran recorded it held"
        ),
        Source::Record => info!(
            interface = %plan.interface, pid = plan.pid,
            "releasing what the lbd that ran recorded it held (not what the config says now)"
        ),
        Source::Config => info!(
            interface = %plan.interface,
            "no record of what the lbd that ran held: releasing what the config says"
        ),
    }
    let purpose = match action {
        Offline::Cleanup => crate::ownership::Purpose::Cleanup,
        Offline::ReleaseVips => crate::ownership::Purpose::ReleaseVips,
    };
    let also = config.map(|c| c.interface.as_str());
    let _ownership = crate::ownership::claim_offline(&plan, also, path, purpose)?;
    // Also an lbd that takes no locks (an older version, during an upgrade).
    if lbd_answers(&plan.admin_socket).await {
        anyhow::bail!(
            "lbd is running (it answers on {}); stop it first",
            plan.admin_socket.display()
        );
    }
    // BGP first: a node that stays down must stop attracting traffic. A
    // BIRD that is down or refuses must not keep the addresses on the
    // interface: the rest is done, and the BGP error returned at the end.
    // The program goes only if BIRD no longer announces the node: it took
    // the withdrawal, or it is not running (nothing listens on its control
    // socket: its sessions went with it, and it reads the emptied routes
    // file when it starts). A BIRD that refused or did not answer may
    // still announce it, and the routers still send it flows, which only
    // the program forwards: it stays attached and pinned, as after a stop
    // for good that BIRD refused (see `Engine::shutdown`).
    let bgp = match &plan.bgp {
        None => Ok(()),
        Some(bgp) => match held::lock_routes_file(bgp, path) {
            Err(error) => Err(error),
            // A running lbd announces through that file now: warned.
            Ok(None) => Ok(()),
            Ok(Some(_free)) => match action {
                Offline::ReleaseVips => {
                    engine::node::withdraw_unless_restarting(&plan.admin_socket, bgp).await
                }
                Offline::Cleanup => crate::bgp::announcer::withdraw_routes(bgp).await,
            },
        },
    };
    // (With `pin_dir = "off"` nothing of the program outlived lbd: there
    // is nothing to keep forwarding.)
    let keep_dataplane = action == Offline::Cleanup
        && plan.pin_dir.is_some()
        && bgp
            .as_ref()
            .is_err_and(|error| !crate::bgp::bird::is_not_running(error));
    if let Err(error) = &bgp {
        let anyway = match (action, keep_dataplane) {
            (Offline::ReleaseVips, _) => "removing the addresses anyway",
            (Offline::Cleanup, false) => "BIRD is not running: removing the addresses and pins anyway",
            (Offline::Cleanup, true) => "BIRD may still announce this node: removing the addresses, but keeping the program attached and its pins",
        };
        warn!(error = %format!("{error:#}"), "withdrawing the BGP announcements failed; {anyway}");
    }
    let local = release_locally(&plan, action, keep_dataplane).await;
    if let (Offline::Cleanup, Some(config)) = (action, config) {
        // A cleanup is a stop for good: the runtime changes a restart
        // would keep are forgotten, the next start is from the file (see
        // `engine::running_state`). Found by the config's own settings.
        engine::running_state::forget(config);
    }
    if action == Offline::Cleanup && bgp.is_ok() && local.is_ok() {
        // Nothing is held any more.
        if let Some(record) = held::record_path(&plan.admin_socket) {
            let _ = std::fs::remove_file(record);
        }
    }
    let bird = plan
        .bgp
        .as_ref()
        .map(|b| b.bird_socket.display().to_string())
        .unwrap_or_default();
    match (bgp, local) {
        (Ok(()), local) => local,
        (Err(error), local) if keep_dataplane => {
            let error = error.context(format!(
                "withdrawing the BGP announcements through BIRD (control socket {bird}) failed, and BIRD may still run and announce this node, so the routers may still send it flows: the program is left attached and its pins in place to forward them (the VIP addresses were removed). Fix what the error names (BIRD's configuration: `birdc configure` must succeed; its control socket; or the routes file lbd writes), or stop BIRD, then run `lbd --cleanup` again"
            ));
            match local {
                Ok(()) => Err(error),
                Err(local) => Err(local.context(format!("{error:#}; and the rest failed"))),
            }
        }
        (Err(error), Ok(())) => {
            Err(error.context("withdrawing the BGP announcements through BIRD (the rest was done)"))
        }
        (Err(error), Err(local)) => Err(local.context(format!(
            "withdrawing the BGP announcements through BIRD failed too: {error:#}"
        ))),
    }
}

/// The offline action's own part: the VRRP addresses off the interface
/// and, for a cleanup, a stale admin socket, the VRRP state files, every
/// pin, lbd's cls_bpf filters and the `forwarding` settings. An interface
/// that no longer exists took its addresses and filters with it: the rest
/// is done.
///
/// With `keep_dataplane` (BIRD may still announce the node), a cleanup
/// leaves the pins, the filters and the `forwarding` settings: the program
/// must go on forwarding what the routers still send.
async fn release_locally(
    plan: &crate::ownership::held::Held,
    action: Offline,
    keep_dataplane: bool,
) -> anyhow::Result<()> {
    let netlink = crate::netlink::Netlink::connect()?;
    let interface = match netlink.interface(&plan.interface).await {
        Ok(interface) => Some(interface),
        Err(crate::netlink::NetlinkError::NoSuchInterface(_)) => {
            warn!(
                interface = %plan.interface,
                "interface {} no longer exists: its VIP addresses and tc filters went with it; nothing to remove there (the tc filters left on `lo` for it still go)",
                plan.interface
            );
            None
        }
        Err(error) => return Err(error.into()),
    };
    if interface.is_some() {
        crate::ownership::held::remove_addresses(&netlink, &plan.interface, &plan.addresses)
            .await?;
    }
    if action == Offline::Cleanup {
        // The admin socket an lbd that was killed or crashed left (nobody
        // listens on it; a live one or a file that is not a socket stays).
        match crate::api::server::remove_stale_socket(&plan.admin_socket).await {
            Ok(true) => info!(socket = %plan.admin_socket.display(), "stale admin socket removed"),
            Ok(false) => {}
            Err(error) => warn!(%error, "admin socket left in place"),
        }
        // The VRRP state files (named after the admin socket): a release
        // keeps them (a restart may follow and resume mastership); a
        // cleanup forgets them.
        remove_vrrp_state_files(&plan.admin_socket);
        if keep_dataplane {
            info!("the program stays attached, its pins, tc filters and `forwarding` settings in place, while BIRD may announce this node");
            return Ok(());
        }
        if let Some(dir) = &plan.pin_dir {
            let pins = crate::pinning::PinDir::new(dir);
            let removed = pins.remove_all()?;
            info!(dir = %dir.display(), removed = removed.len(), "pinned links (XDP or tc) and maps removed");
        }
        // What cannot be pinned: the clsact + cls_bpf filters of an lbd
        // with `attach = "tc"` on a kernel without tcx, which outlive it.
        // Those on `lo` (checks through a tunnel) outlive the interface
        // too: with it gone, the ones whose interface no longer exists.
        match &interface {
            Some(interface) => {
                crate::ownership::cls_bpf::remove_left_filters(
                    &interface.name,
                    interface.index,
                    None,
                )
                .await?;
            }
            None => {
                crate::ownership::cls_bpf::remove_orphan_hc_filters().await?;
            }
        }
        crate::ownership::held::restore(&plan.forwarding);
    }
    Ok(())
}

/// Removes the VRRP state files of the lbd whose admin socket is
/// `admin_socket` (`<stem>.vrrp-<vrid>-<family>.state` beside it, see
/// `engine::vrrp_state_file`), whatever instances its config has now.
fn remove_vrrp_state_files(admin_socket: &Path) {
    let (Some(dir), Some(stem)) = (admin_socket.parent(), admin_socket.file_stem()) else {
        return;
    };
    let prefix = format!("{}.vrrp-", stem.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".state") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The programs of the cls_bpf filters on the ingress of `interface` (in
/// this thread's network namespace), from the netlink dump lbd's hook
/// check reads (whether its filter, attached without tcx, is still in
/// place; see `dataplane::attach`). Public for the lab tests only: that
/// check runs only on kernels without tcx, so a test places a filter with
/// tc and asks this dump, which must report the filter's program id and
/// name. Must run inside a tokio runtime.
#[doc(hidden)]
pub async fn cls_bpf_ingress_programs(interface: &str) -> anyhow::Result<Vec<u32>> {
    let netlink = crate::netlink::Netlink::connect()?;
    let index = netlink.interface(interface).await?.index;
    Ok(netlink
        .cls_bpf_ingress_programs(index)
        .await?
        .iter()
        .map(|f| f.program)
        .collect())
}

/// Whether an lbd answers on the admin socket (its API status).
async fn lbd_answers(socket: &Path) -> bool {
    let client = crate::api::client::Client::new(socket, Duration::from_secs(1));
    client.status().await.is_ok()
}

#[cfg(test)]
mod shutdown_tests {
    use super::*;

    #[tokio::test]
    async fn requests_queued_at_a_stop_are_answered_at_once() {
        let (tx, mut calls) = mpsc::channel::<Call>(4);
        let handler = ToEngine(tx);
        let request = || Request {
            method: crate::api::Method::Post,
            path: vec!["reload".to_owned()],
            query: Default::default(),
            body: serde_json::Value::Null,
        };
        let queued = tokio::spawn(async move {
            let first = handler.handle(request()).await;
            let later = handler.handle(request()).await;
            (first, later)
        });
        // The first request waits in the queue, unread.
        while calls.is_empty() {
            tokio::task::yield_now().await;
        }
        refuse_queued(&mut calls);
        let (first, later) = tokio::time::timeout(std::time::Duration::from_secs(1), queued)
            .await
            .expect("answered at once")
            .expect("task");
        assert_eq!(first.status, 503);
        assert_eq!(later.status, 503);
    }

    /// An engine that drops a request's reply unanswered (its task ended
    /// mid-request): a change may be applied (500, saying so), not "lbd
    /// is shutting down" (503, which lbctl reads as nothing was done); a
    /// read or a dry run changed nothing and stays 503.
    #[tokio::test]
    async fn a_change_whose_reply_is_dropped_may_be_applied() {
        let (tx, mut calls) = mpsc::channel::<Call>(4);
        let engine = tokio::spawn(async move {
            while let Some((_, reply)) = calls.recv().await {
                drop(reply);
            }
        });
        let handler = ToEngine(tx);
        let request = |method, path: &str, query: &[(&str, &str)]| Request {
            method,
            path: vec![path.to_owned()],
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: serde_json::Value::Null,
        };
        use crate::api::Method;
        let change = handler.handle(request(Method::Post, "reload", &[])).await;
        assert_eq!(change.status, 500, "{:?}", change.body);
        let message = change.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("may be applied") && !message.contains("shutting down"),
            "{message}"
        );
        // Its own code, which lbctl maps to its "may be applied" exit
        // status (8), apart from a 500 that changed nothing.
        let code = change.body["error"]["code"].as_str().unwrap_or_default();
        assert_eq!(code, "maybe_applied", "{:?}", change.body);
        let error = crate::api::client::ClientError::Api(crate::api::ApiError {
            status: change.status,
            code: code.to_owned(),
            message: message.to_owned(),
        });
        assert_eq!(
            error.exit_code(),
            crate::api::client::ClientError::EXIT_CHANGE_UNANSWERED
        );
        let not_dry = handler
            .handle(request(Method::Post, "reload", &[("dry_run", "false")]))
            .await;
        assert_eq!(not_dry.status, 500);
        for (method, path, query) in [
            (Method::Get, "status", &[][..]),
            (Method::Post, "reload", &[("dry_run", "true")][..]),
            (Method::Post, "reload", &[("dry_run", "1")][..]),
        ] {
            let answer = handler.handle(request(method, path, query)).await;
            assert_eq!(answer.status, 503, "{method} {path} {query:?}");
        }
        drop(handler);
        engine.await.expect("engine task");
    }
}

#[cfg(test)]
mod lifecycle_tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;

    /// A SIGINT pending when the start failed before this lbd claimed
    /// the data plane (refused: another data plane sits on the
    /// interface) stops for good and removes nothing: `--cleanup`'s
    /// removal would withdraw the routes and VIP addresses that data
    /// plane uses. After the claim it removes this config's data plane.
    #[test]
    fn a_sigint_removes_only_a_data_plane_this_lbd_claimed() {
        use AfterFailedStart::{Fail, Remove, StopForGood};
        use StartFailed::{AfterClaim, BeforeClaim};
        assert_eq!(after_failed_start(BeforeClaim, true), StopForGood);
        assert_eq!(after_failed_start(AfterClaim, true), Remove);
        assert_eq!(after_failed_start(BeforeClaim, false), Fail);
        assert_eq!(after_failed_start(AfterClaim, false), Fail);
        let error = stopped_before_claim(anyhow::anyhow!("refused"));
        assert_eq!(exit_status(&error), EXIT_STOPPED_FOR_GOOD_WITH_ERRORS);
        assert!(
            format!("{error:#}").contains("removed nothing"),
            "{error:#}"
        );
    }

    /// The values of the `key=` lines of a unit file, split on whitespace.
    fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
        unit.lines()
            .filter_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
            .flat_map(str::split_whitespace)
            .collect()
    }

    /// `Restart=on-failure` restarts any non-zero exit but those the unit
    /// lists: a stop for good that failed must stay stopped.
    #[test]
    fn the_systemd_unit_does_not_restart_a_stop_for_good_that_failed() {
        let unit = include_str!("../../../deploy/systemd/lbd.service");
        assert_eq!(unit_values(unit, "Restart"), ["on-failure"]);
        let prevented = unit_values(unit, "RestartPreventExitStatus");
        assert!(
            prevented.contains(&EXIT_STOPPED_FOR_GOOD_WITH_ERRORS.to_string().as_str()),
            "RestartPreventExitStatus={prevented:?} lacks {EXIT_STOPPED_FOR_GOOD_WITH_ERRORS}"
        );
        // lbd's other failures (1) and a usage error (2) are restarted.
        for restarted in ["1", "2"] {
            assert!(!prevented.contains(&restarted), "{prevented:?}");
        }
        // Not one of systemd's own (200 and up) nor a signal's (128 + n).
        assert!((3..126).contains(&EXIT_STOPPED_FOR_GOOD_WITH_ERRORS));
    }

    /// A stop for a restart (SIGUSR1, whoever sent it) leaves the routes
    /// announced for the next lbd: systemd must always start one, and
    /// count the stop as clean (`systemctl restart` sends the signal).
    #[test]
    fn the_systemd_unit_always_starts_an_lbd_after_a_stop_for_a_restart() {
        let unit = include_str!("../../../deploy/systemd/lbd.service");
        let status = EXIT_STOPPED_FOR_RESTART.to_string();
        for key in ["RestartForceExitStatus", "SuccessExitStatus"] {
            let listed = unit_values(unit, key);
            assert!(
                listed.contains(&status.as_str()),
                "{key}={listed:?} lacks {status}"
            );
        }
        assert!(!unit_values(unit, "RestartPreventExitStatus").contains(&status.as_str()));
        // Its own: not 0, a failure (1), a usage error (2), a stop for
        // good that failed, systemd's own (200 and up) nor a signal's.
        assert!((3..126).contains(&EXIT_STOPPED_FOR_RESTART));
        assert_ne!(EXIT_STOPPED_FOR_RESTART, EXIT_STOPPED_FOR_GOOD_WITH_ERRORS);
        assert_eq!(Stopped::ForRestart.exit_status(), EXIT_STOPPED_FOR_RESTART);
        assert_eq!(Stopped::Done.exit_status(), 0);
    }

    /// The values of the `key=` lines of section `[section]` of a unit.
    fn section_values(unit: &str, section: &str, key: &str) -> Vec<String> {
        let header = format!("[{section}]");
        let body: Vec<&str> = unit
            .lines()
            .skip_while(|line| line.trim() != header)
            .skip(1)
            .take_while(|line| !line.trim_start().starts_with('['))
            .collect();
        unit_values(&body.join("\n"), key)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// systemd's default start rate limit (5 starts in 10 s) would refuse
    /// the start that must follow a stop for a restart (which keeps the
    /// BGP routes announced) after a few quick `systemctl restart`s,
    /// leaving the routes with no lbd: the unit turns it off, in [Unit]
    /// (systemd ignores the key in [Service]), and no burst brings it back.
    #[test]
    fn the_systemd_unit_never_refuses_a_start_for_coming_too_often() {
        let unit = include_str!("../../../deploy/systemd/lbd.service");
        assert_eq!(section_values(unit, "Unit", "StartLimitIntervalSec"), ["0"]);
        for section in ["Service", "Install"] {
            for key in [
                "StartLimitIntervalSec",
                "StartLimitInterval",
                "StartLimitBurst",
            ] {
                assert!(
                    section_values(unit, section, key).is_empty(),
                    "[{section}] {key}="
                );
            }
        }
        assert!(section_values(unit, "Unit", "StartLimitBurst").is_empty());
        // What a refused start would strand: the routes a stop for a
        // restart keeps, for the lbd the unit always starts after it.
        assert!(unit_values(unit, "RestartForceExitStatus")
            .contains(&EXIT_STOPPED_FOR_RESTART.to_string().as_str()));
    }

    #[test]
    fn a_stop_for_good_that_failed_has_an_exit_status_of_its_own() {
        let other = anyhow::anyhow!("admin socket /run/lbd/lbd.sock: in use");
        assert_eq!(exit_status(&other), 1);
        let bird = anyhow::anyhow!("connecting to BIRD: no such file")
            .context("stopping for good: BIRD did not take the withdrawal");
        let stop = bird.context(StoppedForGoodWithErrors);
        assert_eq!(exit_status(&stop), EXIT_STOPPED_FOR_GOOD_WITH_ERRORS);
        // The log still names BIRD, and says why systemd does not restart.
        let logged = format!("{stop:#}");
        assert!(
            logged.contains("did not take the withdrawal") && logged.contains("does not restart"),
            "{logged}"
        );
        // Whatever context is added later, the status stays.
        assert_eq!(
            exit_status(&stop.context("lbd")),
            EXIT_STOPPED_FOR_GOOD_WITH_ERRORS
        );
    }

    /// A SIGINT that arrived during a start that failed is the operator's
    /// stop for good: whether that stop removed the data plane or not,
    /// lbd exits with the status systemd does not restart (not 1, which
    /// it restarts), and the log says what is left to do.
    #[test]
    fn a_start_that_failed_with_sigint_pending_is_not_restarted() {
        let start = || anyhow::anyhow!("[sync] listen 198.18.0.2:7946: address in use");
        let removed = failed_start_interrupted(start(), Ok(()));
        assert_eq!(exit_status(&removed), EXIT_STOPPED_FOR_GOOD_WITH_ERRORS);
        let logged = format!("{removed:#}");
        assert!(
            logged.contains("address in use") && logged.contains("data plane it held is removed"),
            "{logged}"
        );
        let failed = failed_start_interrupted(start(), Err(anyhow::anyhow!("BIRD did not answer")));
        assert_eq!(exit_status(&failed), EXIT_STOPPED_FOR_GOOD_WITH_ERRORS);
        let logged = format!("{failed:#}");
        assert!(
            logged.contains("BIRD did not answer") && logged.contains("lbd --cleanup"),
            "{logged}"
        );
    }

    /// A SIGINT the kernel delivered before a start failed is seen by the
    /// check that start makes; without one, the check says none (and a
    /// start that fails then exits 1, restarted as any other failure).
    #[tokio::test]
    async fn a_pending_sigint_is_seen_by_a_failed_start() {
        let mut signals = Signals::register(EarlySignals::register().unwrap()).expect("signals");
        assert!(!signals.interrupt_pending().await);
        // SAFETY: raise(3) on this process, whose SIGINT handler tokio
        // installed above.
        assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
        assert!(signals.interrupt_pending().await);
        // Taken: the next check sees none.
        assert!(!signals.interrupt_pending().await);
    }

    /// A SIGHUP caught by [`EarlySignals`] (first thing in `main`) before
    /// the other signals are registered, and before the loop runs, is
    /// kept: the loop's signals see it, a reload.
    #[tokio::test]
    async fn a_sighup_caught_first_is_a_reload_for_the_loop() {
        let early = EarlySignals::register().unwrap();
        // SAFETY: raise(3) on this process, whose SIGHUP handler tokio
        // installed above.
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        let mut signals = Signals::register(early).expect("signals");
        // The hangup stream alone: another test here raises SIGINT, which
        // `next` would take first.
        let taken = tokio::time::timeout(Duration::from_secs(10), signals.hangup.recv()).await;
        assert_eq!(taken, Ok(Some(())));
    }

    /// A SIGUSR1 (the unit's RestartKillSignal) caught by
    /// [`EarlySignals`] before the config was read is kept for the loop: a
    /// stop for a restart once lbd runs, which writes the restart marker
    /// (the stop path keeps the BGP announcements), not a death by the
    /// signal's default action, after which it would withdraw them.
    #[tokio::test]
    async fn a_sigusr1_caught_first_is_a_restart_for_the_loop() {
        let early = EarlySignals::register().unwrap();
        // SAFETY: raise(3) on this process, whose SIGUSR1 handler tokio
        // installed above.
        assert_eq!(unsafe { libc::raise(libc::SIGUSR1) }, 0);
        let mut signals = Signals::register(early).expect("signals");
        // The restart stream alone: another test here raises SIGINT and
        // SIGHUP, which `next` would take first.
        let taken = tokio::time::timeout(Duration::from_secs(10), signals.restart.recv()).await;
        assert_eq!(taken, Ok(Some(())));
        assert_eq!(stop_kind(Received::Restart, false), Some(Stop::Restart));
    }

    /// A stop because the hook was lost withdraws the announcements
    /// first, and awaits BIRD's answer, whatever is pinned: the program no
    /// longer runs, and the loop's own withdrawal may not have been sent
    /// yet (an exchange with BIRD was in flight). Other stops as before.
    #[test]
    fn a_stop_after_the_hook_was_lost_withdraws_first() {
        assert_eq!(
            withdraw_first(Stop::Restart, true, true),
            WithdrawFirst::Withdraw
        );
        assert_eq!(
            withdraw_first(Stop::Restart, false, true),
            WithdrawFirst::HandOverAndWithdraw
        );
        assert_eq!(
            withdraw_first(Stop::Restart, false, false),
            WithdrawFirst::HandOverAndWithdraw
        );
        assert_eq!(
            withdraw_first(Stop::Restart, true, false),
            WithdrawFirst::Nothing
        );
        assert_eq!(
            withdraw_first(Stop::Clean, true, false),
            WithdrawFirst::Nothing
        );
        assert_eq!(
            withdraw_first(Stop::Clean, false, false),
            WithdrawFirst::Nothing
        );
    }

    /// A host shutdown or reboot stops lbd with SIGTERM, as `systemctl
    /// stop` does: then it stops for good as for SIGINT (last flows to the
    /// peer, VRRP priority 0, BGP withdrawn, program detached), since no
    /// next lbd comes before the reboot and the pins do not survive it. A
    /// restart-style stop there would cost the VRRP peer its master-down
    /// interval and the flows of the last moments. Other signals as they
    /// were, whatever the system does.
    #[test]
    fn a_sigterm_while_the_system_stops_is_a_stop_for_good() {
        assert_eq!(stop_kind(Received::Terminate, true), Some(Stop::Clean));
        assert_eq!(stop_kind(Received::Terminate, false), Some(Stop::Restart));
        for system_stopping in [false, true] {
            assert_eq!(
                stop_kind(Received::Interrupt, system_stopping),
                Some(Stop::Clean)
            );
            assert_eq!(
                stop_kind(Received::Restart, system_stopping),
                Some(Stop::Restart)
            );
            assert_eq!(stop_kind(Received::Hangup, system_stopping), None);
        }
        // The log says which stop, and why.
        let at_shutdown = what_the_signal_does(Received::Terminate, true, true);
        assert!(
            at_shutdown.contains("shuts down or reboots")
                && at_shutdown.contains("stopping for good")
                && at_shutdown.contains("priority 0"),
            "{at_shutdown}"
        );
        for pinned in [false, true] {
            let stop = what_the_signal_does(Received::Terminate, false, pinned);
            assert!(
                stop.contains("the system is not shutting down") && !stop.contains("for good"),
                "{stop}"
            );
        }
    }

    fn mode_and_gid(path: &Path) -> (u32, u32) {
        let meta = std::fs::metadata(path).unwrap();
        (meta.permissions().mode() & 0o7777, meta.gid())
    }

    /// `admin_socket = "/run/lbd/admin/lbd.sock"` with `admin_socket_group`:
    /// the directories lbd makes let that group reach the 0660 socket
    /// (the unit's UMask=0077 would make them 0700); the ones that exist
    /// stay as they are.
    #[test]
    fn directories_made_for_the_admin_socket_let_its_group_through() {
        let base = std::env::temp_dir().join(format!("lbd-socket-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        let before = mode_and_gid(&base);
        let gid = 4321;
        let dir = base.join("admin").join("nested");
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            create_socket_dir(&dir, Some(gid)).unwrap();
            assert_eq!(mode_and_gid(&base.join("admin")), (0o750, gid));
            assert_eq!(mode_and_gid(&dir), (0o750, gid));
            assert_eq!(mode_and_gid(&base), before, "an existing directory changed");
            // Again: everything exists now, nothing changes.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            create_socket_dir(&dir, Some(gid)).unwrap();
            assert_eq!(mode_and_gid(&dir), (0o700, gid));
        } else {
            println!("not root: cannot give a directory to another group; group part skipped");
        }
        // Without a group: root's socket, created as before.
        let plain = base.join("plain").join("nested");
        create_socket_dir(&plain, None).unwrap();
        assert!(plain.is_dir());
        let _ = std::fs::remove_dir_all(&base);
    }
}
