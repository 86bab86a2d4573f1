//! Why a call failed, sorted by what the user should do about it, and the
//! stable exit code each failure gives `lbctl`.

use std::{io, path::PathBuf, time::Duration};

use crate::api::{code, ApiError};

/// Why a call failed, sorted by what the user should do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket at the path: lbd is not running, or lbctl looks in the
    /// wrong place (the config's `admin_socket` is another path).
    #[error("no admin socket at {}: lbd is not running, or its config's admin_socket is elsewhere (pass --socket or set LBCTL_SOCKET; for `systemctl reload lbd`, whose ExecReload runs `lbctl reload`, add a drop-in with Environment=LBCTL_SOCKET=PATH)", path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// A socket file at the path, but nothing listening on it: left by an
    /// lbd that was killed or crashed (a clean stop removes it).
    #[error("lbd is not running: its admin socket {} exists but nothing listens on it (an lbd that was killed or crashed left it); start lbd again (it replaces the socket), or run `lbd --cleanup` if it is to stay down (it removes the socket too)", path.display())]
    NotListening {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the path (a regular file, a
    /// directory): the path is wrong, and lbd would refuse it too.
    #[error("{} is not a socket (it is {what}): not lbd's admin socket; check --socket (LBCTL_SOCKET) and the config's admin_socket", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What it is instead, as a person reads it ("a directory").
        what: &'static str,
    },
    /// The socket's listen backlog stayed full for as long as lbctl
    /// waited: lbd is very busy, or stuck.
    #[error("lbd's admin socket {} is busy: its queue of new connections stayed full for {after:?}; try again", path.display())]
    Busy {
        /// The socket path.
        path: PathBuf,
        /// How long lbctl tried.
        after: Duration,
    },
    /// The socket exists but this user may not connect to it.
    #[error("permission denied on lbd's admin socket {} (run as root, or as a member of the config's admin_socket_group)", path.display())]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// lbd did not answer a look in time.
    #[error("lbd did not answer within {after:?} (admin socket {})", path.display())]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// The timeout that expired.
        after: Duration,
    },
    /// lbd did not answer a change in time. lbd carries a change out even
    /// when its caller has gone, so it may be applied: not "unreachable".
    #[error("lbd did not answer the change within {after:?} (admin socket {}): it may have been applied or may still be; check `lbctl status` before trying again", path.display())]
    ChangeTimeout {
        /// The socket path.
        path: PathBuf,
        /// The timeout that expired.
        after: Duration,
    },
    /// The connection ended (or lbd's answer could not be read) after a
    /// change was sent, before its answer came: lbd carries a change out
    /// even when its caller has gone, so it may be applied, as after
    /// [`ClientError::ChangeTimeout`]; not "unreachable", nor a mere
    /// protocol error.
    #[error("the connection to lbd ended before it answered the change ({why}; admin socket {}): it may have been applied or may still be; check `lbctl status` before trying again", path.display())]
    ChangeCutOff {
        /// The socket path.
        path: PathBuf,
        /// What ended the exchange.
        why: String,
    },
    /// lbd closed (or reset) the connection before any answer came: it
    /// crashed or stopped mid-request (systemd starts it again), or its
    /// queue of new connections was dropped. For a look or a dry run
    /// nothing was done and trying again later may work; a change cut off
    /// so is [`ClientError::ChangeCutOff`] instead.
    #[error("lbd closed the connection without answering ({why}; admin socket {}): it is restarting or stopping; nothing was done, try again later", path.display())]
    Dropped {
        /// The socket path.
        path: PathBuf,
        /// What ended the exchange.
        why: String,
    },
    /// The socket path is one no socket can have (longer than a socket
    /// address holds, or under something that is no directory): the path
    /// is wrong, and trying again would not help.
    #[error("--socket (LBCTL_SOCKET) {}: {source}; no socket can be at this path, check it and the config's admin_socket", path.display())]
    BadSocketPath {
        /// The socket path.
        path: PathBuf,
        /// What the OS said of it.
        #[source]
        source: io::Error,
    },
    /// Connecting failed for another reason.
    #[error("connecting to lbd's admin socket {}: {source}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// lbd answered with an error (non-2xx).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The exchange itself went wrong: a malformed answer, a dropped connection,
    /// or a request that could not be built.
    #[error("talking to lbd: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Exit code for anything else (5xx, protocol errors).
    pub const EXIT_OTHER: u8 = 1;
    /// Exit code for a usage error (a socket path that is no socket, or
    /// that no socket can have, or one this user has no permission on:
    /// waiting mends none of them) or a request lbd rejected (4xx but 409
    /// and an object's 404; a 404 for an endpoint lbd does not have is
    /// one).
    pub const EXIT_USAGE: u8 = 2;
    /// Exit code for "no such thing": a 404 for a VIP, backend, ACL rule
    /// or limit (not for an endpoint).
    pub const EXIT_NOT_FOUND: u8 = 3;
    /// Exit code for a conflict with the current state (409).
    pub const EXIT_CONFLICT: u8 = 4;
    /// Exit code for lbd unreachable: not running (no socket, or nothing
    /// listening on it), too busy, no answer, or answering 503 (shutting
    /// down for a restart, or out of connections): nothing was done, and
    /// trying again later may work.
    pub const EXIT_UNAVAILABLE: u8 = 5;
    /// Exit code for a change lbd did not answer, in time or before the
    /// connection ended, or whose carrying out lbd's engine stopped in
    /// the middle of (its 500 `maybe_applied`): it may be applied.
    pub const EXIT_CHANGE_UNANSWERED: u8 = 8;

    /// The `lbctl` exit code for this error; stable, so scripts can branch on it.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotRunning { .. }
            | Self::NotListening { .. }
            | Self::Busy { .. }
            | Self::Timeout { .. }
            | Self::Dropped { .. }
            | Self::Connect { .. } => Self::EXIT_UNAVAILABLE,
            // Waiting mends none of these: a script looping on 5 ("try
            // again later") would loop for ever.
            Self::NotASocket { .. }
            | Self::PermissionDenied { .. }
            | Self::BadSocketPath { .. } => Self::EXIT_USAGE,
            Self::ChangeTimeout { .. } | Self::ChangeCutOff { .. } => Self::EXIT_CHANGE_UNANSWERED,
            Self::Api(e) if e.code == code::MAYBE_APPLIED => Self::EXIT_CHANGE_UNANSWERED,
            // A path lbd has no endpoint for (lbctl newer than lbd) is a
            // request it refused, not a missing VIP or backend.
            Self::Api(e) if e.is_no_endpoint() => Self::EXIT_USAGE,
            Self::Api(e) => match e.status {
                404 => Self::EXIT_NOT_FOUND,
                409 => Self::EXIT_CONFLICT,
                503 => Self::EXIT_UNAVAILABLE,
                400..=499 => Self::EXIT_USAGE,
                _ => Self::EXIT_OTHER,
            },
            Self::Protocol(_) => Self::EXIT_OTHER,
        }
    }
}
