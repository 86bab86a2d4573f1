//! The wait of `drain --wait` and `backend wait`: polling the backend
//! until its drain ends, waiting through an lbd that does not answer for
//! a while, and the exit each end makes.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_common::Mode;
use lb_userspace::{
    api::{
        client::{Client, ClientError},
        schema::{BackendState, BackendStatus},
    },
    config::value,
    model::FlowCount,
    vip_id::VipId,
};

use super::{
    drain_end::{DrainEnd, DrainWatch},
    drain_report::{drained_text, outcome_line, progress_line, timed_out_text, went_down_text},
    EXIT_DRAIN_ENDED_ELSEWHERE, EXIT_DRAIN_TIMED_OUT, EXIT_DRAIN_WENT_DOWN,
};
use crate::{
    wait::{after_poll_error, note_unanswered, AfterPollError, POLL_INTERVAL},
    Failure,
};

/// The instant `s` seconds after `now`, `s` being the drain's `what`
/// (`timeout_s`, `drain_remaining_s`) in lbd's answer about `backend` of
/// `vip`. lbd's answer is not trusted: no drain lasts longer than a
/// request may ask (`value::drain_timeout_s`, a week), and a value past
/// that (or past what the clock can hold) is an error naming it, exit 1
/// saying that the drain was made, not a panic or a wait without end.
pub(super) fn drain_deadline(
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

/// Whose drain a wait watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Watching {
    /// The one `drain --wait` just made.
    Made,
    /// One already running (`backend wait`): a backend not draining at
    /// the first look had none to watch.
    Existing,
}

/// How long past the drain's deadline `drain --wait` still waits for an
/// lbd that does not answer: one back within it (a restart) ends a drain
/// whose deadline passed while it was down at once, and `--wait` reports
/// that as the timeout ending it.
const UNANSWERED_PAST_DEADLINE: Duration = Duration::from_secs(60);

/// How long a drain without a deadline (never cut) waits for an lbd that
/// does not answer: such a wait has no bound of its own, and an lbd
/// stopped for good (its socket gone) would otherwise be waited for
/// forever; a restart is back long before.
pub(super) const LONGEST_UNANSWERED_WITHOUT_DEADLINE: Duration = Duration::from_secs(600);

/// The instant a `--wait` stops waiting for an lbd that does not answer:
/// `give_up_at` (from the drain's deadline) if there is one, else
/// [`LONGEST_UNANSWERED_WITHOUT_DEADLINE`] after the outage began
/// (`unanswered`; None before its first failed look).
pub(super) fn unanswered_bound(
    give_up_at: Option<Instant>,
    unanswered: Option<Instant>,
) -> Option<Instant> {
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
pub(super) async fn wait_for_drain(
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
pub(super) fn drain_result(
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
pub(super) fn wait_failed(
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
