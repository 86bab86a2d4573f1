//! lbd's life: load the config, start the engine (maps filled, program
//! attached, or a pinned data plane adopted), serve the admin API, and
//! react to health transitions, drain deadlines, neighbour changes and
//! signals: SIGHUP reloads; SIGTERM stops for a restart (the data plane
//! keeps forwarding, pinned, for the next lbd), unless the system is
//! shutting down or rebooting, when it stops as SIGINT does; SIGUSR1 stops
//! for a restart too, keeping the BGP announcements, and exits
//! [`EXIT_STOPPED_FOR_RESTART`] so that a next lbd always follows; SIGINT
//! stops for good and leaves the node as it was found.

mod calls;
mod cls_bpf_probe;
pub mod engine;
pub mod events;
mod exit;
mod failed_start;
pub mod flow;
pub mod http;
mod limits;
pub mod nat_flow;
mod offline;
mod refused;
pub mod replication;
pub mod routes;
mod sd_notify;
mod shutdown_probe;
mod signals;
mod startup;
mod stopping;
pub mod tunnel_flow;

#[doc(hidden)]
pub use cls_bpf_probe::cls_bpf_ingress_programs;
pub use exit::{
    exit_status, Stopped, StoppedForGoodWithErrors, EXIT_STOPPED_FOR_GOOD_WITH_ERRORS,
    EXIT_STOPPED_FOR_RESTART,
};
pub use offline::{offline, Offline};
pub use refused::{config_exit_status, EXIT_CONFIG_REFUSED, EXIT_OBJECT_REFUSED};
pub use signals::EarlySignals;

use std::{path::Path, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::{config::Config, dataplane::Released};

use calls::{answer_count_read, may_change, refuse_queued, Call, CountRead, ToEngine};
use engine::{
    flow_census::{self, Censuses},
    Engine, Stop,
};
use failed_start::{stop_for_good_after_failed_start, stop_started_engine_for_good, StartFailed};
use limits::{raise_locked_memory_limit, raise_open_file_limit};
use signals::{Received, Signals};
use startup::{bind, claim, finish_start};
use stopping::{stop_kind, what_the_signal_does, withdraw_first, WithdrawFirst};

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
                    let change = may_change(&request);
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
                engine.run_timers(std::time::Instant::now());
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
