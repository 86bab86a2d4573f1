//! What a drain's wait says: its progress and outcome as text, and as the
//! NDJSON lines of `--json` a script reads from stdout alone.

use std::net::IpAddr;

use lb_userspace::{
    api::{client::ClientError, schema::BackendState},
    model::FlowCount,
};
use serde_json::json;

use super::drain_end::DrainEnd;
use crate::{output, Failure};

/// A progress line of `drain --wait --json` (one JSON object): the
/// backend's live, closing and idle flows after `elapsed_s`, `counting`
/// while a NAT table sweep that counts them is under way.
pub(super) fn progress_line(
    backend: IpAddr,
    flows: FlowCount,
    counting: bool,
    elapsed_s: u64,
) -> String {
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
pub(super) fn drained_text(backend: IpAddr, idle: u64) -> String {
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
pub(super) fn outcome_line(
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
pub(super) fn failed_line(
    backend: IpAddr,
    failure: &Failure,
    warnings: &[String],
) -> Option<String> {
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

/// What `drain --wait` says when no live flow is left because the backend
/// was down during the drain: not drained, whatever the count says.
pub(super) fn went_down_text(backend: IpAddr) -> String {
    format!(
        "{backend}: no live flow left, but not drained: it went down (failed its health checks) during the drain, and its remaining flows were moved to other backends rather than finished on it"
    )
}

/// What `drain --wait` says when the drain's timeout ended it with
/// `live` flows last counted: for a NAT VIP, that they are still there.
pub(super) fn timed_out_text(backend: IpAddr, end: DrainEnd, live: u64) -> String {
    match end {
        DrainEnd::TimedOut { flows_cut: false } => format!(
            "{backend}: the drain's timeout ended the drain with {live} live connections left; it is in maintenance (no new flows), and a NAT VIP's connections stay on it until they end or it is removed"
        ),
        _ => format!(
            "{backend}: the drain's timeout cut its remaining flows; it is in maintenance"
        ),
    }
}
