//! What a probe is asked and what it answers: the kind of check, the
//! backend it goes to, and one probe's result. Apart from the probing
//! itself because the engine, the driver and the API share these types.

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::health::tunnel_socket::TunnelPath;

/// What a probe does to decide whether a backend is alive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckKind {
    /// The backend accepts a TCP connection: cheap, and enough for any TCP
    /// service.
    Tcp,
    /// The backend answers an HTTP/1.1 GET with the expected status: also
    /// catches an application that accepts connections but cannot serve.
    Http {
        /// Request path in origin form, e.g. "/healthz" (a missing leading
        /// '/' is added; empty means "/").
        path: String,
        /// `Host` header; `None` sends the target's IP (bracketed for IPv6).
        host: Option<String>,
        /// The only status that counts as healthy, e.g. 200.
        expect_status: u16,
        /// Text the body's first 16 KiB must contain too (None: the
        /// status alone decides), for a page that reports its own health.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect_body: Option<String>,
    },
    /// The backend, a PostgreSQL server or a PgBouncer, answers a
    /// StartupMessage with an authentication request (or, trusting the
    /// check, starts the session): also catches a server that accepts
    /// connections but refuses sessions (starting up, shutting down, too
    /// many clients, an unknown database).
    Pgsql {
        /// The role named in the StartupMessage.
        user: String,
        /// The database named (None: the server's default, the user's
        /// name).
        database: Option<String>,
    },
}

/// What to probe: where, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct ProbeTarget {
    /// The backend's address and check port (through a tunnel: the VIP's
    /// address, which the backend holds, and the check port).
    pub address: SocketAddr,
    /// The kind of check.
    pub kind: CheckKind,
    /// Checks that follow the data path: through the backend's tunnel
    /// (None: straight to `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through: Option<TunnelPath>,
    /// The check speaks TLS over the connection (`tls = true`): a TCP
    /// check passes once a handshake completes, an HTTP check's GET goes
    /// over it; for backends that take TLS straight (passthrough).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

/// The result of one probe, as the state machine and the status output
/// need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Healthy, or why not.
    pub outcome: Outcome,
    /// How long the probe took, connect included (about the timeout when it
    /// timed out).
    pub latency: Duration,
}
