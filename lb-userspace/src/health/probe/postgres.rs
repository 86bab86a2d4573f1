//! The PostgreSQL check: a StartupMessage on a fresh connection, judged
//! by the first answer (the protocol itself is in
//! [`pgsql`]), then a graceful close.

use super::{
    connect::{connect, Close},
    within, FailureReason, ProbeTarget,
};
use crate::health::pgsql;

/// PostgreSQL check: a StartupMessage as `user` (of `database`) on a
/// fresh connection, judged by the first message back (see
/// [`pgsql::exchange`]); then a graceful close (see [`pgsql::close`]).
/// `deadline` bounds all of it, the close included.
pub(super) async fn postgres(
    target: &ProbeTarget,
    user: &str,
    database: Option<&str>,
    deadline: tokio::time::Instant,
) -> Result<(), FailureReason> {
    let startup = pgsql::startup_message(user, database)?;
    let mut stream = within(deadline, connect(target, Close::Graceful)).await?;
    // Only a latency nicety: the message is one small write anyway.
    let _ = stream.set_nodelay(true);
    let verdict = within(deadline, pgsql::exchange(&mut stream, &startup)).await;
    // Cut short by the deadline, the drop closes as it can (a reset if
    // the server's answer is left unread).
    let _ = tokio::time::timeout_at(deadline, pgsql::close(&mut stream)).await;
    verdict
}
