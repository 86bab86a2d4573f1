//! Whether one probe passed, and why not: the failure reasons with their
//! stable metric labels, and which of them are this node's own rather
//! than the backend's.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::health::pgsql;

#[cfg(test)]
mod tests;

/// Whether one probe found the backend healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The backend passed.
    Success,
    /// The backend answered that it is full: it refuses new sessions for
    /// want of resources (PostgreSQL's SQLSTATE class 53, PgBouncer's
    /// client limits) yet serves the ones it has, so the machine keeps its
    /// established flows rather than cut them (see [`Health::Full`]). The
    /// reason is the server's answer.
    ///
    /// [`Health::Full`]: crate::health::Health::Full
    Full(FailureReason),
    /// The backend failed, and why.
    Failure(FailureReason),
}

impl Outcome {
    /// Whether the probe passed, for tests that need no reason.
    #[cfg(test)]
    pub(crate) fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// The label a probe that did not pass counts under in the failures by
    /// reason (status, metrics): its [`FailureReason::label`], or `full`
    /// for a refusal for capacity. None for a success.
    pub(crate) fn failure_label(&self) -> Option<&'static str> {
        match self {
            Outcome::Success => None,
            Outcome::Full(_) => Some("full"),
            Outcome::Failure(reason) => Some(reason.label()),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => f.write_str("success"),
            Outcome::Full(reason) => write!(f, "full (refuses new sessions): {reason}"),
            Outcome::Failure(reason) => reason.fmt(f),
        }
    }
}

/// Why a probe failed; the text is short enough for a log line or a
/// transition reason, and [`FailureReason::label`] keys metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// Nothing decisive within the timeout (or the kernel gave up on the
    /// connect): the backend or the path to it is overloaded or gone.
    #[error("timeout")]
    Timeout,
    /// The backend host answered the connect with a reset: nothing listens.
    #[error("connection refused")]
    Refused,
    /// No route to the backend's host or network.
    #[error("unreachable")]
    Unreachable,
    /// Any other socket error, as the OS words it.
    #[error("I/O error: {0}")]
    Io(String),
    /// This node could not run the check (no port, descriptor, buffer or
    /// memory to spare): says nothing of the backend, so its state stays.
    #[error("not run here: {0}")]
    Local(String),
    /// A `tls = true` check's TLS handshake failed (the backend closed,
    /// answered no TLS, or offered nothing this check accepts), in
    /// rustls' words: the port listens, yet serves no TLS.
    #[error("{0}")]
    Tls(String),
    /// The HTTP answer came with another status than expected.
    #[error("HTTP status {got}, expected {expected}")]
    HttpStatus {
        /// Status received.
        got: u16,
        /// Status expected.
        expected: u16,
    },
    /// The HTTP answer had the expected status but its body, as far as
    /// the check reads it, lacks the `expect_body` text: the application
    /// answers yet says it is not well.
    #[error("HTTP body lacks {expected:?} (first 16 KiB read)")]
    HttpBody {
        /// The text looked for.
        expected: String,
    },
    /// The HTTP exchange failed: bad request settings, a malformed answer,
    /// or the connection closed before the answer.
    #[error("HTTP error: {0}")]
    Http(String),
    /// The PostgreSQL server (or PgBouncer) answered the StartupMessage
    /// with an error, in its own words.
    #[error("PostgreSQL {severity} {code}: {message}")]
    PgsqlError {
        /// `FATAL`, `ERROR`, ... ("?" when not given).
        severity: String,
        /// The SQLSTATE code, e.g. 57P03 ("?" when not given).
        code: String,
        /// The server's message ("?" when not given).
        message: String,
    },
    /// The PostgreSQL exchange failed: an answer that is neither an
    /// authentication request nor an error, malformed, cut short or longer
    /// than a check reads, or the connection closed or reset.
    #[error("PostgreSQL protocol: {0}")]
    Pgsql(String),
    /// A check through the tunnel was not run: the path that wraps it as
    /// clients' packets are wrapped (`tc_hc_encap` on egress) is not in
    /// place, and unwrapped it would be answered by this node or balanced
    /// as a client's flow, passing whatever the backend's state. A
    /// failure, not `Local`: a check that cannot follow the data path
    /// must not keep a backend up.
    #[error("check path not attached: {0}")]
    PathNotAttached(String),
    /// The check failed while the interface checks leave by was down: the
    /// failure is this node's link, not the backend's, so it moves no
    /// streak (a flap of the balancer's own link must not take every
    /// backend down).
    #[error("not counted, interface {interface} is down: {failure}")]
    InterfaceDown {
        /// The interface.
        interface: String,
        /// How the check failed.
        failure: Box<FailureReason>,
    },
}

impl FailureReason {
    /// A stable snake_case name for metrics labels, which must not change
    /// with the error's wording.
    pub fn label(&self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Refused => "refused",
            FailureReason::Unreachable => "unreachable",
            FailureReason::Io(_) => "io",
            FailureReason::Local(_) => "local",
            FailureReason::Tls(_) => "tls",
            FailureReason::HttpStatus { .. } => "http_status",
            FailureReason::HttpBody { .. } => "http_body",
            FailureReason::Http(_) => "http",
            FailureReason::PgsqlError { .. } => "pgsql_error",
            FailureReason::Pgsql(_) => "pgsql",
            FailureReason::PathNotAttached(_) => "path_not_attached",
            FailureReason::InterfaceDown { .. } => "interface_down",
        }
    }

    /// Whether the failure is this node's (no port or descriptor, its
    /// link down) rather than the backend's: such a failure moves no
    /// streak, and the backend's health stays as it is.
    pub(crate) fn is_local(&self) -> bool {
        matches!(
            self,
            FailureReason::Local(_) | FailureReason::InterfaceDown { .. }
        )
    }

    /// Whether the server refused the check's session for want of
    /// resources only (see [`pgsql::refuses_for_capacity`]): it still
    /// serves its established sessions, so the probe's outcome is
    /// [`Outcome::Full`], not a failure.
    pub(crate) fn refuses_for_capacity(&self) -> bool {
        match self {
            FailureReason::PgsqlError { code, message, .. } => {
                pgsql::refuses_for_capacity(code, message)
            }
            _ => false,
        }
    }
}
