//! `lbctl backend add|remove|drain|wait|undrain|maintenance|weight|list`.
//!
//! `drain --wait` is the finish line of a rolling upgrade: it reports the
//! backend's live flows (read from the connection table) as they fall and
//! returns when none is left (exit 0), when the drain timeout ended the
//! drain (exit 6: the rest cut, or for a NAT VIP left on the backend until
//! they end), when another change ended the drain (exit 7), or when none
//! is left because the backend went down (exit 9: its flows were moved to
//! other backends, not finished; a script must not take that as drained).
//! Idle flows (silent past the idle timeout, not ended) do not hold it,
//! but are counted and named in the outcome: they are still sent to the
//! backend. `backend wait` watches a drain already running the same way,
//! changing nothing.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_common::Mode;
use lb_userspace::{
    api::{
        client::{Client, ClientError},
        schema::{BackendState, BackendStatus, HealthStatus, StateChange},
    },
    config::value,
    model::FlowCount,
    vip_id::VipId,
    vrrp::{driver::InstanceStatus, State},
};
use serde_json::json;

use crate::{
    flag_names,
    health_flags::HealthFlags,
    output,
    status::print_vip,
    vip::{parse_backend, parse_weight},
    wait::{after_poll_error, note_unanswered, AfterPollError},
    Failure,
};

/// Exit code when a drain's timeout ended it with flows left (cut, or a
/// NAT VIP's left on the backend).
pub(crate) const EXIT_DRAIN_TIMED_OUT: u8 = 6;
/// Exit code when another change ended a drain `--wait` was watching.
pub(crate) const EXIT_DRAIN_ENDED_ELSEWHERE: u8 = 7;
/// Exit code when a drain `--wait` was watching ran out of flows because
/// the backend went down: they were moved to other backends, not finished.
pub(crate) const EXIT_DRAIN_WENT_DOWN: u8 = 9;

/// Flags every change takes.
#[derive(Debug, clap::Args)]
pub(crate) struct ChangeFlags {
    /// Show what it would do (shares before and after); change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `lbctl backend ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Add a backend to a VIP (runtime change: see `lbctl reload --dry-run`).
    Add {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// ADDRESS[,weight=W][,mac=MAC][,port=P] (port: NAT VIPs only).
        #[arg(value_parser = |t: &str| parse_backend(t).map(Box::new))]
        backend: Box<lb_userspace::api::schema::BackendSpec>,
        #[command(flatten)]
        flags: ChangeFlags,
        /// Its own health checks: the flags given override its VIP's
        /// (last: their help has its own heading).
        #[command(flatten)]
        health: Box<HealthFlags>,
    },
    /// Remove a backend: its established flows are hashed to others (a
    /// NAT VIP's connections end: their translations are freed and their
    /// packets dropped, the clients not told).
    Remove {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        #[command(flatten)]
        flags: ChangeFlags,
    },
    /// Stop new flows to a backend; established flows keep going to it.
    ///
    /// Drains are per node: on a node that replicates to a peer, drain
    /// the backend on the peer too (the answer says so). A backend
    /// already draining keeps its drain's start and deadline unless
    /// --timeout is given, which sets the new one (the answer says
    /// which): running it again (with --wait, to watch) changes nothing
    /// else; `lbctl backend wait` watches a drain without making one.
    Drain {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        /// End the drain after this many seconds (0: never; default: the
        /// VIP's drain_timeout_s, else never): the backend goes to
        /// maintenance and its remaining flows are cut, but for a NAT
        /// VIP, whose connections stay on it until they end. The answer
        /// shows the effective deadline (0..=604800).
        #[arg(long, value_parser = parse_drain_timeout, allow_negative_numbers = true)]
        timeout: Option<u64>,
        /// Wait until no live flow is left (or the timeout ended the
        /// drain), reporting the count as it falls. Idle flows (silent
        /// past tcp_idle_timeout_s or udp_idle_timeout_s, not ended) do
        /// not hold it: they are counted, and the outcome says how many
        /// are still pinned to the backend (they break if it stops).
        #[arg(long, conflicts_with = "dry_run")]
        wait: bool,
        #[command(flatten)]
        flags: ChangeFlags,
    },
    /// Wait for a drain already running to end, changing nothing: what
    /// `drain --wait` does once its drain is made (after an ssh session
    /// dropped, say, or from another terminal). Same progress, outcome
    /// and exit codes; a backend not draining is exit 7 (6 if its
    /// drain's timeout ended it).
    Wait {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        /// Print NDJSON: the progress lines, then the outcome.
        #[arg(long)]
        json: bool,
    },
    /// Give a drained (or in maintenance) backend new flows again.
    Undrain {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        #[command(flatten)]
        flags: ChangeFlags,
    },
    /// Take a backend out at once (no new flows; its established flows
    /// move to others, but a NAT VIP's stay until they end), or back in
    /// with --off.
    Maintenance {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        /// End maintenance (only: a draining backend is refused, and
        /// nothing changes; `undrain` ends a drain).
        #[arg(long)]
        off: bool,
        #[command(flatten)]
        flags: ChangeFlags,
    },
    /// Change a backend's weight: its share of new flows only.
    Weight {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        /// 0..=10000.
        #[arg(value_parser = parse_weight, allow_negative_numbers = true)]
        weight: u32,
        #[command(flatten)]
        flags: ChangeFlags,
    },
    /// List a VIP's backends.
    List {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A drain's own timeout in seconds: 0 (never), else checked by the
/// VIP's `drain_timeout_s` rule, so that one out of range is refused
/// naming `--timeout` before lbd is asked (whose error would name its
/// API field).
fn parse_drain_timeout(text: &str) -> Result<u64, String> {
    let n: i64 = text.parse().map_err(|_| {
        format!("drain timeout {text:?} is not a whole number of seconds (0: never)")
    })?;
    if n != 0 {
        value::drain_timeout_s(n).map_err(|e| format!("drain timeout {e} (or 0: never)"))?;
    }
    u64::try_from(n).map_err(|_| format!("drain timeout {n} is negative"))
}

/// Runs a `backend` subcommand.
pub(crate) async fn run(client: &Client, command: Command) -> Result<(), Failure> {
    match command {
        Command::Add {
            vip,
            mut backend,
            health,
            flags,
        } => {
            backend.health = health.spec();
            let change = client
                .add_backend(vip, *backend, flags.dry_run)
                .await
                .map_err(|e| flag_names::refused(e, &[], true))?;
            output::change(&change, flags.json);
        }
        Command::Remove {
            vip,
            backend,
            flags,
        } => {
            let change = client.remove_backend(vip, backend, flags.dry_run).await?;
            output::change(&change, flags.json);
        }
        Command::Drain {
            vip,
            backend,
            timeout,
            wait,
            flags,
        } => {
            let body = StateChange {
                state: BackendState::Draining,
                timeout_s: timeout,
                from: None,
            };
            let change = client
                .set_state(vip, backend, body, flags.dry_run)
                .await
                .map_err(|e| flag_names::refused(e, flag_names::BACKEND_DRAIN, false))?;
            if wait && !flags.dry_run {
                // With --json, stdout is NDJSON: the change on one line,
                // then the progress lines and the outcome's.
                if flags.json {
                    outln!(
                        "{}",
                        output::json_line(&output::with_warnings(&change, &[]))
                    );
                    for warning in &change.warnings {
                        output::warning(warning);
                    }
                } else {
                    output::change(&change, false);
                }
                let deadline = match change.drain.as_ref().and_then(|d| d.timeout_s) {
                    Some(s) => Some(drain_deadline(
                        Instant::now(),
                        s,
                        "timeout_s",
                        (vip, backend),
                    )?),
                    None => None,
                };
                // The outcome line has every warning of the command.
                let mut warnings = change.warnings.clone();
                warnings.extend(vrrp_note(client, vip).await);
                let waited = wait_for_drain(
                    client,
                    (vip, backend),
                    deadline,
                    Watching::Made,
                    flags.json.then_some(&warnings[..]),
                )
                .await;
                if let (Err(failure), true) = (&waited, flags.json) {
                    if let Some(line) = failed_line(backend, failure, &warnings) {
                        outln!("{line}");
                    }
                }
                return waited;
            }
            output::change(&change, flags.json);
        }
        Command::Wait { vip, backend, json } => {
            let warnings: Vec<String> = vrrp_note(client, vip).await.into_iter().collect();
            // The deadline is lbd's: the first look takes it from
            // `drain_remaining_s`.
            let waited = wait_for_drain(
                client,
                (vip, backend),
                None,
                Watching::Existing,
                json.then_some(&warnings[..]),
            )
            .await;
            if let (Err(failure), true) = (&waited, json) {
                if let Some(line) = failed_line(backend, failure, &warnings) {
                    outln!("{line}");
                }
            }
            return waited;
        }
        Command::Undrain {
            vip,
            backend,
            flags,
        } => {
            set_state(client, vip, backend, BackendState::Enabled, &flags).await?;
        }
        Command::Maintenance {
            vip,
            backend,
            off: false,
            flags,
        } => {
            set_state(client, vip, backend, BackendState::Maintenance, &flags).await?;
        }
        Command::Maintenance {
            vip,
            backend,
            off: true,
            flags,
        } => {
            // The API has one way back to service, `enabled`, which ends
            // a drain as well: --off looks first, and ends only maintenance.
            // What it saw is the change's precondition (`from`): lbd
            // refuses it (409) if a drain came in between, rather than
            // ending that drain.
            let current = client
                .vip(vip)
                .await?
                .backends
                .into_iter()
                .find(|b| b.address == backend)
                .map(|b| b.state);
            if let Some(why) = not_in_maintenance(vip, backend, current) {
                return Err(Failure::new(ClientError::EXIT_USAGE, why));
            }
            let body = StateChange {
                state: BackendState::Enabled,
                timeout_s: None,
                from: current,
            };
            let change = client.set_state(vip, backend, body, flags.dry_run).await?;
            output::change(&change, flags.json);
        }
        Command::Weight {
            vip,
            backend,
            weight,
            flags,
        } => {
            let change = client
                .set_weight(vip, backend, weight, flags.dry_run)
                .await
                .map_err(|e| flag_names::refused(e, flag_names::BACKEND_WEIGHT, false))?;
            output::change(&change, flags.json);
        }
        Command::List { vip, json } => {
            let status = client.vip(vip).await?;
            if json {
                output::json(&status.backends);
            } else {
                // Which counters could not be read is in the whole status
                // (shown `-`, not as a count of 0).
                let unread = client.status().await?.traffic_unread;
                print_vip(&status, &unread);
            }
        }
    }
    Ok(())
}

/// Why `maintenance --off` refuses `backend` of `vip` in `state`: it
/// ends maintenance only, and sending `enabled` to a draining backend
/// would end its drain instead. One in maintenance or enabled (where
/// `enabled` changes nothing, as before) is not refused, nor one not
/// found (None: lbd's answer to the change names it, exit 3).
fn not_in_maintenance(vip: VipId, backend: IpAddr, state: Option<BackendState>) -> Option<String> {
    match state? {
        BackendState::Maintenance | BackendState::Enabled => None,
        BackendState::Draining => Some(format!(
            "backend {backend} of VIP {vip} is draining, not in maintenance: `maintenance --off` ends only maintenance, and nothing was changed; `lbctl backend undrain {vip} {backend}` ends the drain"
        )),
    }
}

/// The instant `s` seconds after `now`, `s` being the drain's `what`
/// (`timeout_s`, `drain_remaining_s`) in lbd's answer about `backend` of
/// `vip`. lbd's answer is not trusted: no drain lasts longer than a
/// request may ask (`value::drain_timeout_s`, a week), and a value past
/// that (or past what the clock can hold) is an error naming it, exit 1
/// saying that the drain was made, not a panic or a wait without end.
fn drain_deadline(
    now: Instant,
    s: u64,
    what: &str,
    (vip, backend): (VipId, IpAddr),
) -> Result<Instant, Failure> {
    let plausible = s == 0 || i64::try_from(s).is_ok_and(|n| value::drain_timeout_s(n).is_ok());
    plausible
        .then(|| now.checked_add(Duration::from_secs(s)))
        .flatten()
        .ok_or_else(|| {
            Failure::new(
                ClientError::EXIT_OTHER,
                format!(
                    "lbd's answer gives the drain of {backend} of VIP {vip} a {what} of {s} s, longer than any drain lasts (a week): not trusted, so not waited for; the drain was made (do not drain again with --timeout: that sets a new deadline): see `lbctl backend list {vip}`"
                ),
            )
        })
}

async fn set_state(
    client: &Client,
    vip: VipId,
    backend: IpAddr,
    state: BackendState,
    flags: &ChangeFlags,
) -> Result<(), Failure> {
    let body = StateChange {
        state,
        timeout_s: None,
        from: None,
    };
    let change = client.set_state(vip, backend, body, flags.dry_run).await?;
    output::change(&change, flags.json);
    Ok(())
}

/// Whose drain a wait watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watching {
    /// The one `drain --wait` just made.
    Made,
    /// One already running (`backend wait`): a backend not draining at
    /// the first look had none to watch.
    Existing,
}

/// How a drain that `--wait` watched ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DrainEnd {
    /// No live flow left while still draining.
    Drained,
    /// No live flow left while still draining, but the backend was down
    /// (failing its checks) during the drain: the data plane sent it
    /// nothing, and its flows were moved to other backends as their next
    /// packets came, rather than finished on it.
    WentDown,
    /// The drain's timeout ended it: the remaining flows were cut, or
    /// (`flows_cut` false: a NAT VIP) stay on the backend until they end.
    TimedOut {
        /// Whether the timeout cut the remaining flows.
        flows_cut: bool,
    },
    /// Another change ended the drain (undrained, maintenance, removed).
    EndedElsewhere,
}

/// Whether the flows of a backend of a VIP in `mode` are being moved off
/// it: it is down and the data plane sends it nothing. Not for a VIP that
/// fails open (its down backends stay alive and keep their flows), nor
/// for a NAT VIP (a translation cannot move: they stay until they end).
fn flows_moved_off(backend: &BackendStatus, mode: Mode) -> bool {
    backend.health == HealthStatus::Down && !backend.alive && mode != Mode::Nat
}

/// What one look at the backend of a VIP in `mode` says about its drain
/// (None: still going).
fn drain_end(backend: Option<&BackendStatus>, mode: Mode) -> Option<DrainEnd> {
    let Some(backend) = backend else {
        return Some(DrainEnd::EndedElsewhere);
    };
    match backend.state {
        // A NAT backend's count is the NAT table's last sweep: one that
        // began before the drain is no answer.
        BackendState::Draining if backend.flows.live == 0 && !backend.flows_counting => {
            if flows_moved_off(backend, mode) {
                Some(DrainEnd::WentDown)
            } else {
                Some(DrainEnd::Drained)
            }
        }
        BackendState::Draining => None,
        _ if backend.drain_timed_out => Some(DrainEnd::TimedOut {
            flows_cut: mode != Mode::Nat,
        }),
        _ => Some(DrainEnd::EndedElsewhere),
    }
}

/// What `drain --wait` has seen of a drain across its looks: a backend
/// that went down at one look and came back up before its count reached
/// 0 had flows moved off it all the same (a moved flow stays where it
/// went), so that drain did not finish cleanly either.
#[derive(Debug, Default)]
struct DrainWatch {
    /// Some look saw the backend draining with its flows moved off it.
    went_down: bool,
}

impl DrainWatch {
    /// One look at the backend of a VIP in `mode`: how the drain ended
    /// ([`drain_end`], with `Drained` made `WentDown` if an earlier look
    /// saw it down), None while it goes on.
    fn look(&mut self, backend: Option<&BackendStatus>, mode: Mode) -> Option<DrainEnd> {
        self.went_down |=
            backend.is_some_and(|b| b.state == BackendState::Draining && flows_moved_off(b, mode));
        match drain_end(backend, mode) {
            Some(DrainEnd::Drained) if self.went_down => Some(DrainEnd::WentDown),
            end => end,
        }
    }
}

/// How often `drain --wait` looks at the backend.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long past the drain's deadline `drain --wait` still waits for an
/// lbd that does not answer: one back within it (a restart) ends a drain
/// whose deadline passed while it was down at once, and `--wait` reports
/// that as the timeout ending it.
const UNANSWERED_PAST_DEADLINE: Duration = Duration::from_secs(60);

/// How long a drain without a deadline (never cut) waits for an lbd that
/// does not answer: such a wait has no bound of its own, and an lbd
/// stopped for good (its socket gone) would otherwise be waited for
/// forever; a restart is back long before.
const LONGEST_UNANSWERED_WITHOUT_DEADLINE: Duration = Duration::from_secs(600);

/// The instant a `--wait` stops waiting for an lbd that does not answer:
/// `give_up_at` (from the drain's deadline) if there is one, else
/// [`LONGEST_UNANSWERED_WITHOUT_DEADLINE`] after the outage began
/// (`unanswered`; None before its first failed look).
fn unanswered_bound(give_up_at: Option<Instant>, unanswered: Option<Instant>) -> Option<Instant> {
    give_up_at.or_else(|| unanswered.map(|since| since + LONGEST_UNANSWERED_WITHOUT_DEADLINE))
}

/// Polls the backend until none of its flows is live while it drains
/// (exit 0; exit 9 if it went down meanwhile: its flows were moved to
/// other backends, not finished), the drain's timeout ended it (exit 6:
/// the rest cut, or for a NAT VIP left on the backend until they end), or
/// another change ended the drain (exit 7). State and flows come from one
/// answer, so the outcome is never read off two different moments.
///
/// The drain is made (and kept across a restart of lbd): an lbd that
/// does not answer for a while (a restart, a slow answer) is waited for
/// until [`UNANSWERED_PAST_DEADLINE`] past the drain's `deadline` (None:
/// never cut, no bound), and any other failed look ends the wait with
/// exit 1, never 5 (which says nothing was done). `watching` says whose
/// drain: one `backend wait` finds not draining at its first look had
/// none (exit 7, saying so). `json`: with `--json`, the warnings of the
/// command for the outcome line (None: text).
async fn wait_for_drain(
    client: &Client,
    (vip, backend): (VipId, IpAddr),
    deadline: Option<Instant>,
    watching: Watching,
    json: Option<&[String]>,
) -> Result<(), Failure> {
    let as_json = json.is_some();
    let warnings = json.unwrap_or_default();
    let started = Instant::now();
    let mut first = true;
    let mut last: Option<(u64, u64, bool)> = None;
    let mut watch = DrainWatch::default();
    let mut give_up_at = deadline.map(|d| d + UNANSWERED_PAST_DEADLINE);
    let mut unanswered: Option<Instant> = None;
    loop {
        let status = match client.vip(vip).await {
            Ok(status) => Some(status),
            Err(error) if error.exit_code() == ClientError::EXIT_NOT_FOUND => None,
            Err(error) => match after_poll_error(
                &error,
                Instant::now(),
                unanswered_bound(give_up_at, unanswered),
            ) {
                AfterPollError::KeepWaiting => {
                    note_unanswered(&error, &mut unanswered, "the drain");
                    tokio::time::sleep(POLL_INTERVAL).await;
                    continue;
                }
                end => {
                    return Err(wait_failed(
                        (vip, backend),
                        &error,
                        end,
                        (unanswered, give_up_at),
                    ))
                }
            },
        };
        unanswered = None;
        let current = status
            .as_ref()
            .and_then(|s| s.backends.iter().find(|b| b.address == backend));
        let live = current.map_or(0, |b| b.flows.live);
        let idle = current.map_or(0, |b| b.flows.idle);
        let counting = current.is_some_and(|b| b.flows_counting);
        if last != Some((live, idle, counting)) {
            let closing = current.map_or(0, |b| b.flows.closing);
            if as_json {
                outln!(
                    "{}",
                    progress_line(
                        backend,
                        FlowCount {
                            live,
                            closing,
                            idle
                        },
                        counting,
                        started.elapsed().as_secs()
                    )
                );
            } else if counting {
                outln!(
                    "{backend}: counting its flows (a sweep of the NAT table is under way; last count {live} live, {closing} closing, {idle} idle) after {}s",
                    started.elapsed().as_secs()
                );
            } else {
                outln!(
                    "{backend}: {live} live flows ({closing} closing, {idle} idle) after {}s",
                    started.elapsed().as_secs()
                );
            }
            last = Some((live, idle, counting));
        }
        // Another drain of the backend (by someone else) may have moved
        // its deadline: the one lbd says now bounds the wait.
        if let Some(draining) = current.filter(|b| b.state == BackendState::Draining) {
            give_up_at = match draining.drain_remaining_s {
                Some(s) => {
                    let at =
                        drain_deadline(Instant::now(), s, "drain_remaining_s", (vip, backend))?;
                    at.checked_add(UNANSWERED_PAST_DEADLINE)
                }
                None => None,
            };
        }
        let mode = status.as_ref().map_or(Mode::DsrL2, |s| s.mode);
        let end = watch.look(current, mode);
        // `backend wait` on a backend that was not draining at all: no
        // drain of it ended, there was none.
        let none_to_watch = first && watching == Watching::Existing;
        first = false;
        let Some(end) = end else {
            tokio::time::sleep(POLL_INTERVAL).await;
            continue;
        };
        let result = drain_result((vip, backend), end, (live, idle), current, none_to_watch);
        if as_json {
            outln!(
                "{}",
                outcome_line(
                    backend,
                    end,
                    (live, idle),
                    current.map(|b| b.state),
                    (&result, warnings)
                )
            );
        } else if result.is_ok() {
            outln!("{}", drained_text(backend, idle));
        }
        return result;
    }
}

/// How a wait on the drain of `backend` of `vip` that ended by `end`
/// (the last count `(live, idle)`, the backend now `current`) exits:
/// Ok when it drained, else the failure (its exit code and message).
/// `none_to_watch`: `backend wait` found no drain at its first look.
fn drain_result(
    (vip, backend): (VipId, IpAddr),
    end: DrainEnd,
    (live, _idle): (u64, u64),
    current: Option<&BackendStatus>,
    none_to_watch: bool,
) -> Result<(), Failure> {
    match end {
        DrainEnd::Drained => Ok(()),
        DrainEnd::WentDown => Err(Failure::new(EXIT_DRAIN_WENT_DOWN, went_down_text(backend))),
        DrainEnd::TimedOut { .. } => Err(Failure::new(
            EXIT_DRAIN_TIMED_OUT,
            timed_out_text(backend, end, live),
        )),
        DrainEnd::EndedElsewhere if none_to_watch => {
            let now = current.map_or_else(|| "removed".to_owned(), |b| b.state.to_string());
            Err(Failure::new(
                EXIT_DRAIN_ENDED_ELSEWHERE,
                format!(
                    "{backend} of VIP {vip} is not draining ({now}): there is no drain to wait for (`lbctl backend drain {vip} {backend}` makes one)"
                ),
            ))
        }
        DrainEnd::EndedElsewhere => {
            let now = current.map_or_else(
                || "removed".to_owned(),
                |b| format!("{} by another change", b.state),
            );
            Err(Failure::new(
                EXIT_DRAIN_ENDED_ELSEWHERE,
                format!("{backend} is no longer draining: {now} (the drain did not finish)"),
            ))
        }
    }
}

/// How `drain --wait` of `backend` of `vip` ends when a look at lbd failed
/// with `error` (`end`: not waited through, see [`after_poll_error`];
/// `unanswered`: since when lbd has not answered): exit 1, saying that the
/// drain was made, never exit 5 (a script trying again would drain again
/// and push the drain's deadline further out).
fn wait_failed(
    (vip, backend): (VipId, IpAddr),
    error: &ClientError,
    end: AfterPollError,
    (unanswered, deadline): (Option<Instant>, Option<Instant>),
) -> Failure {
    let why = match (end, unanswered) {
        (AfterPollError::OutOfTime, Some(since)) if deadline.is_none() => format!(
            "lbd has not answered for {} s (the drain has no deadline): {error}",
            since.elapsed().as_secs()
        ),
        (AfterPollError::OutOfTime, Some(since)) => format!(
            "lbd has not answered for {} s, and the drain's deadline passed more than {} s ago: {error}",
            since.elapsed().as_secs(),
            UNANSWERED_PAST_DEADLINE.as_secs()
        ),
        (AfterPollError::OutOfTime, None) => format!(
            "lbd does not answer, and the drain's deadline passed more than {} s ago: {error}",
            UNANSWERED_PAST_DEADLINE.as_secs()
        ),
        _ => error.to_string(),
    };
    Failure::new(
        ClientError::EXIT_OTHER,
        format!(
            "{backend}: the drain was made (lbd keeps it across a restart, until its deadline), but waiting for it failed: {why}; do not drain again with --timeout (that would set a new deadline): follow it with `lbctl backend wait {vip} {backend}` or `lbctl backend list {vip}`"
        ),
    )
}

/// A progress line of `drain --wait --json` (one JSON object): the
/// backend's live, closing and idle flows after `elapsed_s`, `counting`
/// while a NAT table sweep that counts them is under way.
fn progress_line(backend: IpAddr, flows: FlowCount, counting: bool, elapsed_s: u64) -> String {
    output::json_line(&json!({
        "backend": backend,
        "live_flows": flows.live,
        "closing_flows": flows.closing,
        "idle_flows": flows.idle,
        "counting": counting,
        "elapsed_s": elapsed_s,
    }))
}

/// What `drain --wait` says when no live flow is left while draining
/// (exit 0). Idle flows (silent past the idle timeout, with no FIN or
/// RST seen: a pooled database connection between queries, say) do not
/// hold the wait, as they may stay silent for hours, but they are still
/// in the connection table and still sent to this backend: said, with
/// what stopping the backend does to them.
fn drained_text(backend: IpAddr, idle: u64) -> String {
    if idle == 0 {
        return format!("{backend} is drained: no live flow left");
    }
    format!(
        "{backend} is drained: no live flow left; {idle} idle flows still pinned here (silent past tcp_idle_timeout_s or udp_idle_timeout_s but not ended: their next packets still go to {backend}, and they break if the backend stops)"
    )
}

/// The last line of `drain --wait --json` (one JSON object): how the drain
/// ended, as the exit code says it (`drained` 0, `timed_out` 6,
/// `ended_elsewhere` 7, `went_down` 9), so a script reading stdout alone
/// has it: `exit_code` on every outcome (0 too), with `message` (what
/// lbctl puts on stderr) when it is not 0, and `warnings` (every warning
/// and note of the command, also on stderr; empty when none).
/// `(live, idle)`: the last count (idle flows, still pinned to the
/// backend, are given with `drained`); `state`: the backend's now (None:
/// removed); `result`: how lbctl exits ([`drain_result`]).
fn outcome_line(
    backend: IpAddr,
    end: DrainEnd,
    (live, idle): (u64, u64),
    state: Option<BackendState>,
    (result, warnings): (&Result<(), Failure>, &[String]),
) -> String {
    let mut line = match end {
        DrainEnd::Drained => json!({"outcome": "drained", "backend": backend, "idle_flows": idle}),
        DrainEnd::WentDown => json!({"outcome": "went_down", "backend": backend}),
        DrainEnd::TimedOut { flows_cut } => json!({
            "outcome": "timed_out",
            "backend": backend,
            "flows_cut": flows_cut,
            "live_flows": live,
        }),
        DrainEnd::EndedElsewhere => json!({
            "outcome": "ended_elsewhere",
            "backend": backend,
            "state": state.map_or("removed".to_owned(), |s| s.to_string()),
        }),
    };
    if let Some(object) = line.as_object_mut() {
        match result {
            Ok(()) => {
                object.insert("exit_code".into(), json!(0));
            }
            Err(failure) => {
                object.insert("exit_code".into(), json!(failure.code));
                object.insert("message".into(), json!(failure.message));
            }
        }
    }
    output::json_line(&output::with_warnings(&line, warnings))
}

/// The last line of `drain --wait --json` when the wait itself failed
/// (exit 1: a look at lbd failed, or lbd stopped answering for too long,
/// after the drain was made): `{"outcome":"failed"}` with the exit code,
/// the message lbctl puts on stderr and the command's `warnings`, so a
/// script reading stdout alone knows the drain was made and how the wait
/// ended, as every other end has its line (`outcome_line`). None for the
/// other failures: their outcome line is out already.
fn failed_line(backend: IpAddr, failure: &Failure, warnings: &[String]) -> Option<String> {
    (failure.code == ClientError::EXIT_OTHER).then(|| {
        output::json_line(&output::with_warnings(
            &json!({
                "outcome": "failed",
                "backend": backend,
                "exit_code": failure.code,
                "message": failure.message,
            }),
            warnings,
        ))
    })
}

/// Before `--wait` (or `backend wait`) watches a drain: a note when this
/// node is not the VRRP master of the VIP's address, as the status says
/// (one look; nothing is noted when it cannot be had). A backup forwards
/// none of the VIP's traffic, so the flows it counts are not the
/// master's, and drains are per node. On stderr (see
/// [`output::warning`]); returned for the `--json` outcome line's
/// `warnings`.
async fn vrrp_note(client: &Client, vip: VipId) -> Option<String> {
    let status = client.status().await.ok()?;
    let note = not_master_note(&status.vrrp, vip)?;
    output::note(&note);
    Some(note)
}

/// The note of [`vrrp_note`] for `vip` given the node's VRRP `instances`
/// (None: no instance moves its address, or the one that does is master).
fn not_master_note(instances: &[InstanceStatus], vip: VipId) -> Option<String> {
    let instance = instances
        .iter()
        .find(|i| i.addresses.contains(&vip.address))?;
    if instance.state == State::Master {
        return None;
    }
    let master = instance
        .master
        .map_or(String::new(), |m| format!(", master {m}"));
    Some(format!(
        "this node is not the VRRP master of {vip}'s address (vrid {} is {}{master}): it forwards none of the VIP's traffic now, so the flows counted here are not the master's, and drains are per node: drain the backend on the master too and wait there",
        instance.vrid, instance.state
    ))
}

/// What `drain --wait` says when no live flow is left because the backend
/// was down during the drain: not drained, whatever the count says.
fn went_down_text(backend: IpAddr) -> String {
    format!(
        "{backend}: no live flow left, but not drained: it went down (failed its health checks) during the drain, and its remaining flows were moved to other backends rather than finished on it"
    )
}

/// What `drain --wait` says when the drain's timeout ended it with
/// `live` flows last counted: for a NAT VIP, that they are still there.
fn timed_out_text(backend: IpAddr, end: DrainEnd, live: u64) -> String {
    match end {
        DrainEnd::TimedOut { flows_cut: false } => format!(
            "{backend}: the drain's timeout ended the drain with {live} live connections left; it is in maintenance (no new flows), and a NAT VIP's connections stay on it until they end or it is removed"
        ),
        _ => format!(
            "{backend}: the drain's timeout cut its remaining flows; it is in maintenance"
        ),
    }
}

#[cfg(test)]
mod tests {
    use lb_userspace::{api::schema::HealthStatus, model::FlowCount};

    use super::*;
    use crate::wait::tests::{Answer, FakeLbd};

    fn backend(state: BackendState, live: u64, timed_out: bool) -> BackendStatus {
        BackendStatus {
            address: "198.18.0.11".parse().unwrap(),
            mac: None,
            port: None,
            weight: 100,
            state,
            health: HealthStatus::Up,
            alive: true,
            share: 0.0,
            flows: FlowCount {
                live,
                closing: 0,
                idle: 0,
            },
            flows_counting: false,
            packets: 0,
            bytes: 0,
            new_flows: 0,
            traffic_read: true,
            drain_remaining_s: None,
            drain_timed_out: timed_out,
            held_s: None,
            check: None,
            runtime: false,
        }
    }

    /// lbd's answer about the VIP, its one backend `b`, as JSON.
    fn vip_answer(b: &BackendStatus) -> String {
        serde_json::json!({
            "vip": "198.18.0.100:80/tcp", "table_size": 251, "on_all_down": "drop",
            "all_down": false, "runtime": false, "packets": 0, "bytes": 0,
            "new_flows": 0, "backends": [b],
        })
        .to_string()
    }

    /// Runs `drain --wait` for 198.18.0.11 against a fake lbd giving
    /// `answers`: its exit code and message (0: drained), and how many
    /// times it asked.
    async fn drain_wait_against(tag: &str, answers: Vec<Answer>) -> (u8, String, usize) {
        let lbd = FakeLbd::start(tag, answers);
        let client = Client::new(&lbd.path, Duration::from_millis(300));
        let vip: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let address = "198.18.0.11".parse().unwrap();
        let (code, message) =
            match wait_for_drain(&client, (vip, address), None, Watching::Made, Some(&[])).await {
                Ok(()) => (0, String::new()),
                Err(failure) => (failure.code, failure.message),
            };
        (code, message, lbd.asked())
    }

    /// The drain is made when `--wait` starts: lbd restarting meanwhile
    /// (503 while it shuts down) or an answer slower than `--api-timeout`
    /// is waited through, not exit 5 ("nothing was done; try again
    /// later", which a script would take as its cue to drain again).
    #[tokio::test]
    async fn a_drain_wait_keeps_waiting_through_a_restarting_lbd() {
        let look = |live| Answer::Ok(vip_answer(&backend(BackendState::Draining, live, false)));
        let answers = vec![
            look(2),
            Answer::Error(503),
            Answer::Stall(Duration::from_secs(2)),
            Answer::Error(503),
            look(1),
            look(0),
        ];
        let (code, message, asked) = drain_wait_against("restart", answers).await;
        assert_eq!((code, message.as_str()), (0, ""), "{message}");
        assert_eq!(asked, 6);
    }

    /// lbd closing a look's connection without answering (it crashed,
    /// or stopped, mid-request; systemd starts it again) is lbd being
    /// unavailable for a while, waited through like a 503, not a garbled
    /// answer that ends the wait with exit 1.
    #[tokio::test]
    async fn a_drain_wait_keeps_waiting_through_a_connection_lbd_drops() {
        let look = |live| Answer::Ok(vip_answer(&backend(BackendState::Draining, live, false)));
        let answers = vec![look(2), Answer::Close, look(0)];
        let (code, message, asked) = drain_wait_against("dropped", answers).await;
        assert_eq!((code, message.as_str()), (0, ""), "{message}");
        assert_eq!(asked, 3);
    }

    /// A 404 for an endpoint lbd does not have (an older lbd) is not the
    /// backend's VIP having been removed (exit 7): the wait ends as for
    /// any other answer it cannot use, saying the drain was made.
    #[tokio::test]
    async fn a_drain_wait_does_not_take_a_missing_endpoint_for_a_removed_vip() {
        let look = Answer::Ok(vip_answer(&backend(BackendState::Draining, 2, false)));
        for (tag, code) in [
            ("no-endpoint", "no_endpoint"),
            ("no-endpoint-old", "not_found"),
        ] {
            let no_endpoint = Answer::Body(
                404,
                format!(
                    r#"{{"error":{{"code":"{code}","message":"no such endpoint: GET /v1/vips/x"}}}}"#
                ),
            );
            let (exit, message, asked) =
                drain_wait_against(tag, vec![look.clone(), no_endpoint]).await;
            assert_eq!(exit, ClientError::EXIT_OTHER, "{tag}: {message}");
            assert!(message.contains("the drain was made"), "{tag}: {message}");
            assert_eq!(asked, 2);
        }
        // The VIP itself gone: the drain was ended by that removal.
        let no_vip = Answer::Body(
            404,
            r#"{"error":{"code":"not_found","message":"no VIP 198.18.0.100:80/tcp"}}"#.to_owned(),
        );
        let (exit, message, _) = drain_wait_against("no-vip", vec![look, no_vip]).await;
        assert_eq!(exit, EXIT_DRAIN_ENDED_ELSEWHERE, "{message}");
    }

    /// `--json`'s stdout ends with an outcome line however the wait ends:
    /// a failed wait (exit 1) says so there too, with the message; the
    /// other ends printed theirs already.
    #[test]
    fn a_failed_drain_wait_ends_its_json_with_an_outcome_line() {
        let backend: IpAddr = "198.18.0.11".parse().unwrap();
        let failed = Failure::new(ClientError::EXIT_OTHER, "the drain was made; lbd: boom");
        let line = failed_line(backend, &failed, &["a note".to_owned()]).expect("a line");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            json!({"outcome": "failed", "backend": "198.18.0.11", "exit_code": 1,
                   "message": "the drain was made; lbd: boom", "warnings": ["a note"]})
        );
        assert!(!line.trim_end().contains('\n'), "one line: {line:?}");
        for code in [
            EXIT_DRAIN_TIMED_OUT,
            EXIT_DRAIN_ENDED_ELSEWHERE,
            EXIT_DRAIN_WENT_DOWN,
        ] {
            assert_eq!(failed_line(backend, &Failure::new(code, "x"), &[]), None);
        }
    }

    /// A look failing otherwise ends the wait with exit 1, saying that the
    /// drain was made (not 5: nothing done).
    #[tokio::test]
    async fn a_drain_wait_that_fails_says_the_drain_was_made() {
        let look = Answer::Ok(vip_answer(&backend(BackendState::Draining, 2, false)));
        let (code, message, asked) =
            drain_wait_against("fails", vec![look, Answer::Error(500)]).await;
        assert_eq!(code, ClientError::EXIT_OTHER, "{message}");
        assert!(message.contains("the drain was made"), "{message}");
        assert!(message.contains("do not drain again"), "{message}");
        assert!(
            message.contains("lbctl backend wait 198.18.0.100:80/tcp 198.18.0.11"),
            "{message}"
        );
        assert!(
            message.contains("lbctl backend list 198.18.0.100:80/tcp"),
            "{message}"
        );
        assert_eq!(asked, 2);
    }

    /// An lbd that does not answer past the drain's deadline (and the
    /// grace after it) ends the wait, exit 1, saying so.
    #[test]
    fn a_drain_wait_past_the_deadline_without_lbd_says_why_it_stopped() {
        let vip: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let error = ClientError::NotRunning {
            path: "/run/lbd/lbd.sock".into(),
        };
        let failure = wait_failed(
            (vip, "198.18.0.11".parse().unwrap()),
            &error,
            AfterPollError::OutOfTime,
            (Some(Instant::now()), Some(Instant::now())),
        );
        assert_eq!(failure.code, ClientError::EXIT_OTHER);
        assert!(
            failure.message.contains("deadline passed")
                && failure.message.contains("the drain was made")
                && failure.message.contains("lbd is not running"),
            "{}",
            failure.message
        );
    }

    /// A drain without a deadline (never cut) has no bound of its own: an
    /// lbd that stops answering (stopped for good, its socket gone) is
    /// waited for a while, not forever.
    #[test]
    fn a_drain_without_a_deadline_waits_for_an_unanswering_lbd_only_so_long() {
        let error = ClientError::NotRunning {
            path: "/run/lbd/lbd.sock".into(),
        };
        let now = Instant::now();
        let since = now - LONGEST_UNANSWERED_WITHOUT_DEADLINE;
        assert_eq!(
            after_poll_error(&error, now, unanswered_bound(None, None)),
            AfterPollError::KeepWaiting,
            "the first failed look starts the outage"
        );
        assert_eq!(
            after_poll_error(&error, now, unanswered_bound(None, Some(now))),
            AfterPollError::KeepWaiting
        );
        assert_eq!(
            after_poll_error(&error, now, unanswered_bound(None, Some(since))),
            AfterPollError::OutOfTime
        );
        // A deadline bounds the wait itself, however long the outage.
        let later = now + Duration::from_secs(3600);
        assert_eq!(
            after_poll_error(&error, now, unanswered_bound(Some(later), Some(since))),
            AfterPollError::KeepWaiting
        );
        let vip: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let failure = wait_failed(
            (vip, "198.18.0.11".parse().unwrap()),
            &error,
            AfterPollError::OutOfTime,
            (Some(since), None),
        );
        assert!(
            failure.message.contains("no deadline")
                && failure.message.contains("the drain was made"),
            "{}",
            failure.message
        );
    }

    /// Runs `lbctl backend ARGS` against a fake lbd giving `answers`: its
    /// exit code and message (0: done), and how many requests it made.
    async fn backend_command_against(
        tag: &str,
        answers: Vec<Answer>,
        args: &[&str],
    ) -> (u8, String, usize) {
        use clap::Parser as _;
        let lbd = FakeLbd::start(tag, answers);
        let cli = crate::Cli::try_parse_from(["lbctl", "backend"].iter().chain(args)).unwrap();
        let crate::Command::Backend(command) = cli.command else {
            panic!("not a backend command: {args:?}");
        };
        let client = Client::new(&lbd.path, Duration::from_millis(300));
        let (code, message) = match run(&client, command).await {
            Ok(()) => (0, String::new()),
            Err(failure) => (failure.code, failure.message),
        };
        (code, message, lbd.asked())
    }

    /// lbd's answer to a drain whose timeout is `timeout_s`.
    fn drain_answer(timeout_s: u64) -> String {
        serde_json::json!({
            "dry_run": false, "plan": [],
            "drain": {"timeout_s": timeout_s, "from": "request", "cuts_flows": true},
        })
        .to_string()
    }

    /// A drain timeout in lbd's answer past any drain's (a week) is not
    /// trusted: `drain --wait` ends with exit 1 naming the value and
    /// saying the drain was made, not a panic adding it to the clock.
    #[tokio::test]
    async fn a_drain_wait_refuses_an_absurd_timeout_in_lbds_answer() {
        let args = ["drain", "198.18.0.100:80", "198.18.0.11", "--wait"];
        let (code, message, asked) = backend_command_against(
            "absurd-timeout",
            vec![Answer::Ok(drain_answer(u64::MAX))],
            &args,
        )
        .await;
        assert_eq!(code, ClientError::EXIT_OTHER, "{message}");
        assert!(
            message.contains(&format!("timeout_s of {} s", u64::MAX))
                && message.contains("the drain was made"),
            "{message}"
        );
        assert_eq!(asked, 1);
        // A week is a drain lbd may give: waited for.
        let week = 7 * 86_400;
        assert!(drain_deadline(Instant::now(), week, "timeout_s", (vip(), addr())).is_ok());
        assert!(drain_deadline(Instant::now(), 0, "drain_remaining_s", (vip(), addr())).is_ok());
        let past = drain_deadline(Instant::now(), week + 1, "timeout_s", (vip(), addr()));
        assert!(past.is_err());
    }

    /// The same for the remaining time lbd gives while the wait polls.
    #[tokio::test]
    async fn a_drain_wait_refuses_an_absurd_remaining_time_in_lbds_answer() {
        let mut draining = backend(BackendState::Draining, 2, false);
        draining.drain_remaining_s = Some(u64::MAX);
        let (code, message, asked) =
            drain_wait_against("absurd-remaining", vec![Answer::Ok(vip_answer(&draining))]).await;
        assert_eq!(code, ClientError::EXIT_OTHER, "{message}");
        assert!(
            message.contains(&format!("drain_remaining_s of {} s", u64::MAX))
                && message.contains("the drain was made"),
            "{message}"
        );
        assert_eq!(asked, 1);
    }

    /// `maintenance --off` ends maintenance only: on a draining backend
    /// it is refused (exit 2, naming `undrain`) before any change is
    /// sent, rather than sending `enabled`, which would end the drain.
    #[tokio::test]
    async fn maintenance_off_does_not_end_a_drain() {
        let args = ["maintenance", "198.18.0.100:80", "198.18.0.11", "--off"];
        let change = Answer::Ok(r#"{"dry_run": false, "plan": []}"#.to_owned());
        let look = |state| Answer::Ok(vip_answer(&backend(state, 1, false)));
        let (code, message, asked) = backend_command_against(
            "off-draining",
            vec![look(BackendState::Draining), change.clone()],
            &args,
        )
        .await;
        assert_eq!(code, ClientError::EXIT_USAGE, "{message}");
        assert!(
            message.contains("is draining, not in maintenance")
                && message.contains("nothing was changed")
                && message.contains("lbctl backend undrain 198.18.0.100:80/tcp 198.18.0.11"),
            "{message}"
        );
        assert_eq!(asked, 1, "only looked: no change sent");
        // In maintenance (or enabled: nothing to end, as before): sent.
        for state in [BackendState::Maintenance, BackendState::Enabled] {
            let (code, message, asked) = backend_command_against(
                &format!("off-{state}"),
                vec![look(state), change.clone()],
                &args,
            )
            .await;
            assert_eq!((code, message.as_str(), asked), (0, "", 2), "{state}");
        }
    }

    /// `maintenance --off` sends its look's state as the change's
    /// precondition (`from`), so that lbd refuses it (409) when a drain
    /// lands between the look and the change rather than ending that
    /// drain; lbd's refusal is reported as such, exit 4.
    #[tokio::test]
    async fn maintenance_off_makes_its_look_a_precondition_of_the_change() {
        use clap::Parser as _;
        let look = Answer::Ok(vip_answer(&backend(BackendState::Maintenance, 0, false)));
        let conflict = Answer::Body(
            409,
            r#"{"error":{"code":"conflict","message":"backend 198.18.0.11 of VIP 198.18.0.100:80/tcp is draining, not maintenance: nothing was changed"}}"#
                .to_owned(),
        );
        let lbd = FakeLbd::start("off-raced", vec![look, conflict]);
        let cli = crate::Cli::try_parse_from([
            "lbctl",
            "backend",
            "maintenance",
            "198.18.0.100:80",
            "198.18.0.11",
            "--off",
        ])
        .unwrap();
        let crate::Command::Backend(command) = cli.command else {
            panic!("not a backend command");
        };
        let client = Client::new(&lbd.path, Duration::from_millis(300));
        let failure = run(&client, command).await.unwrap_err();
        assert_eq!(
            failure.code,
            ClientError::EXIT_CONFLICT,
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("is draining"),
            "{}",
            failure.message
        );
        let requests = lbd.requests();
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert!(
            requests[1].starts_with("PUT ")
                && requests[1].contains(r#""state":"enabled""#)
                && requests[1].contains(r#""from":"maintenance""#),
            "{}",
            requests[1]
        );
    }

    fn vip() -> VipId {
        "198.18.0.100:80/tcp".parse().unwrap()
    }

    fn addr() -> IpAddr {
        "198.18.0.11".parse().unwrap()
    }

    #[test]
    fn a_drain_refuses_to_wait_for_a_dry_run() {
        use clap::Parser as _;
        let parse = |extra: &[&str]| {
            let mut args = vec![
                "lbctl",
                "backend",
                "drain",
                "198.18.0.100:80",
                "198.18.0.11",
            ];
            args.extend_from_slice(extra);
            crate::Cli::try_parse_from(args).map_err(|e| e.to_string())
        };
        let error = parse(&["--wait", "--dry-run"]).unwrap_err();
        assert!(error.contains("--dry-run"), "{error}");
        assert!(parse(&["--wait"]).is_ok());
        assert!(parse(&["--dry-run"]).is_ok());
    }

    #[test]
    fn a_nat_backend_is_not_drained_while_its_flows_are_being_counted() {
        let mut counting = backend(BackendState::Draining, 0, false);
        counting.flows_counting = true;
        assert_eq!(drain_end(Some(&counting), Mode::Nat), None);
        counting.flows_counting = false;
        assert_eq!(
            drain_end(Some(&counting), Mode::Nat),
            Some(DrainEnd::Drained)
        );
    }

    #[test]
    fn a_drain_ends_in_one_of_three_ways() {
        let dsr = Mode::DsrL2;
        assert_eq!(
            drain_end(Some(&backend(BackendState::Draining, 3, false)), dsr),
            None
        );
        assert_eq!(
            drain_end(Some(&backend(BackendState::Draining, 0, false)), dsr),
            Some(DrainEnd::Drained)
        );
        // The timeout moved it to maintenance and cut flows: no live flow is
        // counted any more, and that is not "drained".
        assert_eq!(
            drain_end(Some(&backend(BackendState::Maintenance, 0, true)), dsr),
            Some(DrainEnd::TimedOut { flows_cut: true })
        );
        assert_eq!(
            drain_end(Some(&backend(BackendState::Enabled, 2, false)), dsr),
            Some(DrainEnd::EndedElsewhere)
        );
        assert_eq!(
            drain_end(Some(&backend(BackendState::Maintenance, 0, false)), dsr),
            Some(DrainEnd::EndedElsewhere)
        );
        assert_eq!(drain_end(None, dsr), Some(DrainEnd::EndedElsewhere));
    }

    /// A draining backend that fails its checks is taken out (not alive):
    /// its tracked flows are moved to other backends as their packets
    /// come, so its count falls to 0 without its flows having finished.
    /// That is not "drained".
    #[test]
    fn a_drain_emptied_by_the_backend_going_down_is_not_drained() {
        let mut down = backend(BackendState::Draining, 0, false);
        down.health = HealthStatus::Down;
        down.alive = false;
        assert_eq!(
            drain_end(Some(&down), Mode::DsrL2),
            Some(DrainEnd::WentDown)
        );
        let text = went_down_text(down.address);
        assert!(text.contains("not drained"), "{text}");
        assert!(text.contains("went down"), "{text}");
        assert!(text.contains("moved to other backends"), "{text}");
        // A NAT VIP's connections stay on a down backend until they end,
        // and a VIP that fails open keeps its down backends alive: their
        // flows finished there.
        assert_eq!(drain_end(Some(&down), Mode::Nat), Some(DrainEnd::Drained));
        down.alive = true;
        assert_eq!(drain_end(Some(&down), Mode::DsrL2), Some(DrainEnd::Drained));
    }

    /// A backend down for the whole drain: waited for while flows are
    /// pinned to it, then not "drained" when none is left.
    #[test]
    fn a_backend_down_for_the_whole_drain_is_not_drained() {
        let mut down = backend(BackendState::Draining, 2, false);
        down.health = HealthStatus::Down;
        down.alive = false;
        assert_eq!(drain_end(Some(&down), Mode::Ipip), None);
        down.flows.live = 0;
        assert_eq!(drain_end(Some(&down), Mode::Ipip), Some(DrainEnd::WentDown));
        // The same looks through `--wait`'s watch.
        let mut watch = DrainWatch::default();
        down.flows.live = 2;
        assert_eq!(watch.look(Some(&down), Mode::Ipip), None);
        down.flows.live = 0;
        assert_eq!(
            watch.look(Some(&down), Mode::Ipip),
            Some(DrainEnd::WentDown)
        );
    }

    /// A backend that went down during the drain and came back up before
    /// its count reached 0 had flows moved off it all the same.
    #[test]
    fn a_backend_that_went_down_and_up_during_the_drain_is_not_drained() {
        let mut b = backend(BackendState::Draining, 5, false);
        let mut watch = DrainWatch::default();
        assert_eq!(watch.look(Some(&b), Mode::Gue), None);
        (b.health, b.alive, b.flows.live) = (HealthStatus::Down, false, 2);
        assert_eq!(watch.look(Some(&b), Mode::Gue), None);
        (b.health, b.alive, b.flows.live) = (HealthStatus::Up, true, 0);
        assert_eq!(watch.look(Some(&b), Mode::Gue), Some(DrainEnd::WentDown));
        // Without a look at it down, the same end is a clean drain.
        assert_eq!(
            DrainWatch::default().look(Some(&b), Mode::Gue),
            Some(DrainEnd::Drained)
        );
        // Another change ends it: that is what is said.
        b.state = BackendState::Enabled;
        assert_eq!(
            watch.look(Some(&b), Mode::Gue),
            Some(DrainEnd::EndedElsewhere)
        );
    }

    /// `drain --wait --json` writes NDJSON: every line of its stdout (the
    /// change, the progress, the outcome) is one JSON object, the last the
    /// outcome, by the names of the exit codes.
    #[test]
    fn a_drain_wait_in_json_is_one_object_a_line_ending_with_the_outcome() {
        use lb_userspace::{
            api::schema::{Change, DrainPlan},
            model::{DrainTimeoutSource, PlanChange, VipPlan},
        };
        let address: IpAddr = "198.18.0.11".parse().unwrap();
        let change = Change {
            dry_run: false,
            plan: vec![VipPlan {
                vip: "198.18.0.100:80/tcp".into(),
                change: PlanChange::Changed,
                before: [(address, 1.0)].into_iter().collect(),
                after: [(address, 0.0)].into_iter().collect(),
                moved_fraction: Some(1.0),
            }],
            undone: Vec::new(),
            drain: Some(DrainPlan {
                timeout_s: Some(30),
                from: DrainTimeoutSource::Request,
                cuts_flows: true,
                draining_for_s: None,
            }),
            warnings: vec!["a warning".into()],
        };
        let ends = [
            (DrainEnd::Drained, "drained", None, 0),
            (
                DrainEnd::WentDown,
                "went_down",
                Some(BackendState::Draining),
                EXIT_DRAIN_WENT_DOWN,
            ),
            (
                DrainEnd::TimedOut { flows_cut: false },
                "timed_out",
                Some(BackendState::Maintenance),
                EXIT_DRAIN_TIMED_OUT,
            ),
            (
                DrainEnd::EndedElsewhere,
                "ended_elsewhere",
                Some(BackendState::Enabled),
                EXIT_DRAIN_ENDED_ELSEWHERE,
            ),
            (
                DrainEnd::EndedElsewhere,
                "ended_elsewhere",
                None,
                EXIT_DRAIN_ENDED_ELSEWHERE,
            ),
        ];
        let vip: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let warnings = ["a warning".to_owned(), "a note".to_owned()];
        for (end, name, state, code) in ends {
            let now = state.map(|s| backend(s, 0, false));
            let result = drain_result((vip, address), end, (0, 0), now.as_ref(), false);
            let stdout = [
                output::json_line(&change),
                progress_line(
                    address,
                    FlowCount {
                        live: 3,
                        closing: 1,
                        idle: 0,
                    },
                    false,
                    0,
                ),
                progress_line(
                    address,
                    FlowCount {
                        live: 0,
                        closing: 1,
                        idle: 5,
                    },
                    true,
                    2,
                ),
                outcome_line(address, end, (0, 0), state, (&result, &warnings)),
            ]
            .map(|line| line + "\n")
            .concat();
            let lines: Vec<serde_json::Value> = stdout
                .lines()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
                .collect();
            assert_eq!(lines.len(), 4, "{stdout}");
            let first: Change = serde_json::from_value(lines[0].clone()).unwrap();
            assert_eq!(first, change);
            assert_eq!(lines[1]["live_flows"], 3);
            assert_eq!(lines[2]["idle_flows"], 5);
            let last = &lines[3];
            assert_eq!(last["outcome"], name, "{stdout}");
            assert_eq!(last["backend"], "198.18.0.11");
            // The exit code on every outcome, 0 included; the message
            // lbctl puts on stderr on the others; the command's warnings
            // on all.
            assert_eq!(last["exit_code"], code, "{stdout}");
            assert_eq!(last.get("message").is_some(), code != 0, "{stdout}");
            assert_eq!(last["warnings"], json!(warnings), "{stdout}");
        }
    }

    /// A NAT VIP's drain timeout cuts nothing: `--wait` says its
    /// connections are still there, not that they were cut.
    #[test]
    fn a_nat_drain_timeout_does_not_claim_its_flows_were_cut() {
        let timed_out = backend(BackendState::Maintenance, 4, true);
        let end = drain_end(Some(&timed_out), Mode::Nat).unwrap();
        assert_eq!(end, DrainEnd::TimedOut { flows_cut: false });
        let text = timed_out_text(timed_out.address, end, 4);
        assert!(!text.contains("cut"), "{text}");
        assert!(text.contains("4 live connections left"), "{text}");
        let cut = drain_end(Some(&timed_out), Mode::Gue).unwrap();
        assert!(timed_out_text(timed_out.address, cut, 0).contains("cut its remaining flows"));
    }

    /// `backend drain --timeout` takes 0 (never) and the VIP's range, and
    /// refuses the rest on the command line, naming the flag.
    #[test]
    fn a_drain_timeout_out_of_range_is_refused_naming_the_flag() {
        use clap::Parser as _;
        let parse = |timeout: &str| {
            crate::Cli::try_parse_from([
                "lbctl",
                "backend",
                "drain",
                "198.18.0.100:80",
                "198.18.0.11",
                "--timeout",
                timeout,
            ])
            .map(|cli| format!("{cli:?}"))
            .map_err(|e| e.to_string())
        };
        for (good, shown) in [
            ("0", "Some(0)"),
            ("300", "Some(300)"),
            ("604800", "Some(604800)"),
        ] {
            let text = parse(good).unwrap();
            assert!(text.contains(&format!("timeout: {shown}")), "{text}");
        }
        for bad in ["700000", "604801", "-1", "x"] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("--timeout"), "{bad}: {error}");
            assert!(!error.contains("timeout_s"), "{bad}: {error}");
        }
        assert!(parse("700000")
            .unwrap_err()
            .contains("out of range 1..=604800 (or 0: never)"));
    }

    /// `backend remove --help` says what a removal does to a NAT VIP's
    /// connections: they end, not "hashed to others".
    #[test]
    fn the_remove_help_says_what_happens_to_a_nat_vips_connections() {
        use clap::CommandFactory as _;
        let mut command = crate::Cli::command();
        let remove = command
            .find_subcommand_mut("backend")
            .and_then(|c| c.find_subcommand_mut("remove"))
            .expect("backend remove");
        let help = remove.render_long_help().to_string();
        assert!(help.contains("NAT VIP's connections end"), "{help}");
    }

    /// A drain's help says what draining again does, and the wait's
    /// how idle flows count.
    #[test]
    fn the_drain_help_says_what_draining_again_does() {
        use clap::CommandFactory as _;
        let mut command = crate::Cli::command();
        let drain = command
            .find_subcommand_mut("backend")
            .and_then(|c| c.find_subcommand_mut("drain"))
            .expect("backend drain");
        let help = drain.render_long_help().to_string();
        assert!(
            help.contains("keeps its drain's start and deadline"),
            "{help}"
        );
        assert!(help.contains("lbctl backend wait"), "{help}");
        assert!(help.contains("Idle flows"), "{help}");
        assert!(help.contains("Drains are per node"), "{help}");
    }

    /// "Drained" with idle flows left says they are still pinned to the
    /// backend and break if it stops (the exit stays 0: they may stay
    /// silent for hours); without any, the short text.
    #[test]
    fn a_drain_with_idle_flows_left_says_they_are_still_pinned_here() {
        let address = addr();
        let text = drained_text(address, 300);
        assert!(
            text.starts_with(
                "198.18.0.11 is drained: no live flow left; 300 idle flows still pinned here"
            ),
            "{text}"
        );
        assert!(text.contains("break if the backend stops"), "{text}");
        assert_eq!(
            drained_text(address, 0),
            "198.18.0.11 is drained: no live flow left"
        );
        let mut idle = backend(BackendState::Draining, 0, false);
        idle.flows.idle = 300;
        assert_eq!(drain_end(Some(&idle), Mode::DsrL2), Some(DrainEnd::Drained));
        let line: serde_json::Value = serde_json::from_str(&outcome_line(
            address,
            DrainEnd::Drained,
            (0, 300),
            Some(BackendState::Draining),
            (&Ok(()), &[]),
        ))
        .unwrap();
        assert_eq!(line["idle_flows"], 300, "{line}");
    }

    /// `backend wait` watches a drain already running and changes
    /// nothing (no PUT); one of a backend not draining ends at once,
    /// exit 7, saying there is no drain to wait for.
    #[tokio::test]
    async fn a_backend_wait_watches_a_drain_without_making_one() {
        let args = ["wait", "198.18.0.100:80", "198.18.0.11"];
        let look = |state, live| Answer::Ok(vip_answer(&backend(state, live, false)));
        // The first request is the status, for the VRRP note (an error:
        // no note).
        let answers = vec![
            Answer::Error(500),
            look(BackendState::Draining, 2),
            look(BackendState::Draining, 0),
        ];
        let lbd = FakeLbd::start("wait-existing", answers);
        let (code, message) = {
            use clap::Parser as _;
            let cli = crate::Cli::try_parse_from(["lbctl", "backend"].iter().chain(&args)).unwrap();
            let crate::Command::Backend(command) = cli.command else {
                panic!("not a backend command");
            };
            let client = Client::new(&lbd.path, Duration::from_millis(300));
            match run(&client, command).await {
                Ok(()) => (0, String::new()),
                Err(failure) => (failure.code, failure.message),
            }
        };
        assert_eq!((code, message.as_str()), (0, ""), "{message}");
        let requests = lbd.requests();
        assert_eq!(requests.len(), 3, "{requests:?}");
        assert!(
            requests.iter().all(|r| r.starts_with("GET ")),
            "{requests:?}"
        );
        let (code, message, asked) = backend_command_against(
            "wait-none",
            vec![Answer::Error(500), look(BackendState::Enabled, 0)],
            &args,
        )
        .await;
        assert_eq!(code, EXIT_DRAIN_ENDED_ELSEWHERE, "{message}");
        assert!(
            message.contains("is not draining (enabled): there is no drain to wait for"),
            "{message}"
        );
        assert_eq!(asked, 2);
    }

    /// A node that is VRRP backup for the VIP's address is noted: its
    /// counts are not the master's. Master, or no instance moving the
    /// address: nothing.
    #[test]
    fn a_wait_on_a_vrrp_backup_notes_it_is_not_the_master() {
        let instance = |state: &str, addresses: &[&str]| -> InstanceStatus {
            serde_json::from_value(json!({
                "vrid": 51, "state": state, "configured_priority": 100, "priority": 100,
                "master": "198.18.2.12", "addresses": addresses,
                "counters": lb_userspace::vrrp::Counters::default(), "ignored": {},
            }))
            .unwrap()
        };
        let note =
            not_master_note(&[instance("backup", &["198.18.0.100"])], vip()).expect("a note");
        assert!(
            note.starts_with("this node is not the VRRP master of 198.18.0.100:80/tcp's address (vrid 51 is backup, master 198.18.2.12)"),
            "{note}"
        );
        assert_eq!(
            not_master_note(&[instance("master", &["198.18.0.100"])], vip()),
            None
        );
        assert_eq!(
            not_master_note(&[instance("backup", &["198.18.0.200"])], vip()),
            None
        );
    }
}
