//! A backend's health in the status: the checks' verdict, the kind of
//! check, and its counters and last outcome.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

/// A backend's health as the status shows it: the checks' verdict, or
/// `unchecked` when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Checked, not decided yet (counts as up).
    Unknown,
    /// Passing its checks.
    Up,
    /// Failing its checks: no new flows, its flows hashed elsewhere.
    Down,
    /// Answering its checks that it is full (a `pgsql` check refused for
    /// capacity: "too many clients", PgBouncer's `max_client_conn`): no
    /// new flows, its established flows kept (alive), as in a drain.
    Full,
    /// Not checked (checks are off for its VIP): counts as up.
    Unchecked,
}

impl HealthStatus {
    /// Every value, for metrics that show one series per value.
    pub const ALL: [HealthStatus; 5] = [
        HealthStatus::Up,
        HealthStatus::Down,
        HealthStatus::Full,
        HealthStatus::Unknown,
        HealthStatus::Unchecked,
    ];

    /// The name on the wire and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Unknown => "unknown",
            HealthStatus::Up => "up",
            HealthStatus::Down => "down",
            HealthStatus::Full => "full",
            HealthStatus::Unchecked => "unchecked",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of a backend's health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A TCP connect.
    Tcp,
    /// An HTTP request and its status.
    Http,
    /// A PostgreSQL StartupMessage and the first answer.
    Pgsql,
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http => "http",
            CheckKind::Pgsql => "pgsql",
        })
    }
}

/// A backend's health checks in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckStatus {
    /// What the check does.
    pub kind: CheckKind,
    /// Checks run.
    pub checks: u64,
    /// Checks failed.
    pub failures: u64,
    /// Checks failed, by reason (`timeout`, `refused`, `http_status`,
    /// `http_body`, `tls`, ...).
    #[serde(default)]
    pub failures_by_reason: BTreeMap<String, u64>,
    /// Health transitions since lbd started.
    pub transitions: u64,
    /// Consecutive successes.
    pub consecutive_successes: u32,
    /// Consecutive failures.
    pub consecutive_failures: u32,
    /// Outcome of the last check.
    pub last: Option<String>,
    /// The last check's outcome in short: `ok`, `full`, or the label its
    /// failure counts under in `failures_by_reason` (`refused`,
    /// `timeout`, ...). Absent before the first check (and from an lbd
    /// before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_label: Option<String>,
    /// Latency of the last check, ms.
    pub last_latency_ms: Option<f64>,
    /// Successes in a row that bring the backend up (`rise`): with
    /// `consecutive_successes`, how far a backend coming back has got.
    /// Absent from an lbd before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    /// Failures in a row that take the backend down (`fall`), as `rise`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
    /// Seconds since the backend's health last changed (up, down, ...).
    /// Absent when it has not changed since lbd started, or since its
    /// check was set up (and from an lbd before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change_s: Option<u64>,
    /// When the backend's health last changed, Unix time in seconds: the
    /// wall clock read at the change (for
    /// `lbd_backend_health_last_change_timestamp_seconds`; `last_change_s`
    /// is the age, on lbd's monotonic clock). Absent as `last_change_s`
    /// is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change_unix_s: Option<u64>,
    /// Whether the check goes to the VIP through the backend's tunnel
    /// (`health.through_tunnel`) rather than to the backend's address.
    #[serde(default)]
    pub through_tunnel: bool,
    /// Where the check connects (`ADDRESS:PORT`: the VIP's for a check
    /// through the tunnel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}
