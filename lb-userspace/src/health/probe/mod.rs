//! The network side of a health check: one probe of one backend, TCP
//! connect, HTTP/1.1 GET or PostgreSQL StartupMessage (TCP and HTTP
//! optionally over TLS), bounded as a whole
//! by a timeout, and the classification of what went wrong. No state and
//! no retries: the [`machine`](super::machine) decides what a result
//! means.

mod connect;
mod http;
mod outcome;
mod postgres;
mod target;
#[cfg(test)]
mod tests;
mod tls;

use std::time::{Duration, Instant};

use tracing::trace;

use connect::tcp;
use http::{default_host, http};
pub(crate) use outcome::{FailureReason, Outcome};
use postgres::postgres;
pub(crate) use target::{CheckKind, ProbeResult, ProbeTarget};

/// Probes `target` once; the check, connect included, is bounded by
/// `timeout` up to its verdict (an HTTP body after the status gets only
/// a short grace, unless `expect_body` makes it part of the verdict). Never fails: every problem is a [`FailureReason`].
pub(crate) async fn probe(target: &ProbeTarget, timeout: Duration) -> ProbeResult {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let checked = match &target.kind {
        CheckKind::Tcp => within(deadline, tcp(target)).await,
        CheckKind::Http {
            path,
            host,
            expect_status,
            expect_body,
        } => {
            let host = match host {
                Some(host) => host.clone(),
                None => default_host(target.address),
            };
            let body = expect_body.as_deref();
            http(target, path, &host, *expect_status, body, deadline).await
        }
        CheckKind::Pgsql { user, database } => {
            postgres(target, user, database.as_deref(), deadline).await
        }
    };
    let outcome = match checked {
        Ok(()) => Outcome::Success,
        Err(reason) if reason.refuses_for_capacity() => Outcome::Full(reason),
        Err(reason) => Outcome::Failure(reason),
    };
    let latency = start.elapsed();
    trace!(address = %target.address, %outcome, ?latency, "probe done");
    ProbeResult { outcome, latency }
}

/// The result of a probe of `target` while the path of checks through
/// the tunnel is not attached (`unattached`: why; None: it is): such a
/// check is failed with that reason rather than sent, since unwrapped it
/// would not follow the data path (see [`FailureReason::PathNotAttached`]).
/// None: probe as usual (a direct check, or the path is there).
pub(crate) fn unattached_result(
    target: &ProbeTarget,
    unattached: Option<&str>,
) -> Option<ProbeResult> {
    let reason = unattached.filter(|_| target.through.is_some())?;
    Some(ProbeResult {
        outcome: Outcome::Failure(FailureReason::PathNotAttached(reason.to_owned())),
        latency: Duration::ZERO,
    })
}

/// `fut` unless `deadline` passes first (then a `Timeout`).
async fn within<T>(
    deadline: tokio::time::Instant,
    fut: impl std::future::Future<Output = Result<T, FailureReason>>,
) -> Result<T, FailureReason> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .unwrap_or(Err(FailureReason::Timeout))
}
