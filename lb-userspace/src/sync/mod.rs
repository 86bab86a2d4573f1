//! Connection-table replication between two lbd nodes, in the spirit of
//! IPVS's sync daemon: the VRRP master streams the flows it tracks to the
//! backup, so after a failover every established flow keeps its backend.
//!
//! This module owns what both ends share: the [`FlowRecord`] exchanged
//! (and, for NAT-mode flows, the [`NatFlowRecord`] of [`nat_record`]), the
//! [`SyncConfig`] (shared key and node id), the [`SyncError`] every part
//! returns and the [`SyncStats`] counters. [`wire`] owns the bytes (records,
//! messages, frames, handshake proofs and frame tags); [`channel`] owns the
//! tokio tasks (the backup's listener, the master's sender).
//!
//! The channel is generic: records name flows by addresses only, never by
//! either node's internal ids, which differ between nodes.

pub(crate) mod bind;
pub mod channel;
pub(crate) mod log_limit;
pub mod nat_record;
pub mod wire;

use std::{
    fmt,
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use serde::{Deserialize, Serialize};

pub use channel::{
    listen, listen_for, BatchKind, Closed, ListenerHandle, ReceivedBatch, Sender, Sources,
};
pub(crate) use channel::{Dump, Read};
pub use nat_record::{NatFlowRecord, NatHalf, NatTuple};
pub use wire::{AuthError, Versions, WireError};

/// One tracked flow as the master knows it: enough for the backup to pin
/// the same flow to the same backend address, whatever ids either node
/// uses internally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowRecord {
    /// The service's address (the VIP the flow is addressed to).
    pub vip: IpAddr,
    /// The service's port.
    pub vip_port: u16,
    /// The service's IP protocol (`IPPROTO_TCP`, `IPPROTO_UDP`).
    pub protocol: u8,
    /// The flow's source address.
    pub client: IpAddr,
    /// The flow's source port.
    pub client_port: u16,
    /// The backend the flow is pinned to.
    pub backend: IpAddr,
    /// Time since the flow's last packet on the sender, so the receiver
    /// can age the copy as the original ages.
    pub age_ms: u32,
    /// FIN/RST-seen bits, passed through untouched.
    pub flags: u8,
}

impl FlowRecord {
    /// The record `waited` later: its age grown by that (saturating), as
    /// the sender makes its frame (see [`age_ms`]).
    pub(crate) fn aged(self, waited: Duration) -> Self {
        Self {
            age_ms: self.age_ms.saturating_add(age_ms(waited)),
            ..self
        }
    }
}

/// `waited` in whole milliseconds, saturating: what a record's age grows
/// by between the read of its flow and the write of its frame (the walk,
/// the send queue, a peer down meanwhile), so a copy delayed on its way
/// never looks fresher than it is on the receiver.
pub(crate) fn age_ms(waited: Duration) -> u32 {
    u32::try_from(waited.as_millis()).unwrap_or(u32::MAX)
}

/// What one node needs to take part in sync: the key both ends share,
/// the name it gives itself (the receiver's [`ReceivedBatch::peer`]) and
/// the protocol versions it speaks.
#[derive(Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// The shared secret (at least [`wire::MIN_KEY_LEN`] bytes), read by
    /// the daemon from its key file. Never logged.
    pub key: Vec<u8>,
    /// This node's name, 1 to [`wire::MAX_NODE_ID_LEN`] bytes of UTF-8.
    pub node_id: String,
    /// The protocol versions this node speaks: [`Versions::RELEASE`]
    /// (tests narrow it to play an older release).
    pub versions: Versions,
}

impl SyncConfig {
    /// A config speaking every version of this release.
    pub fn new(key: Vec<u8>, node_id: impl Into<String>) -> Self {
        Self {
            key,
            node_id: node_id.into(),
            versions: Versions::RELEASE,
        }
    }

    /// Checks the key and node id, so a bad config fails at start instead
    /// of at every connection.
    pub fn validate(&self) -> Result<(), SyncError> {
        if self.key.len() < wire::MIN_KEY_LEN {
            return Err(SyncError::Config(format!(
                "key of {} bytes is shorter than {} bytes",
                self.key.len(),
                wire::MIN_KEY_LEN
            )));
        }
        let len = self.node_id.len();
        if len == 0 || len > wire::MAX_NODE_ID_LEN {
            return Err(SyncError::Config(format!(
                "node id of {len} bytes is outside 1..={}",
                wire::MAX_NODE_ID_LEN
            )));
        }
        Ok(())
    }
}

/// Shows the node id and the key's length only: configs end up in logs.
impl fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncConfig")
            .field("key", &format_args!("<{} bytes>", self.key.len()))
            .field("node_id", &self.node_id)
            .field("versions", &format_args!("{}", self.versions))
            .finish()
    }
}

/// Errors of the sync channel, each naming what went wrong; a connection
/// that hits one is closed (and, for a sender, re-established).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The config cannot work (short key, bad node id).
    #[error("invalid sync config: {0}")]
    Config(String),
    /// [`Sender::start`] was called outside a tokio runtime.
    #[error("the sync sender needs a tokio runtime")]
    NoRuntime,
    /// A socket operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The peer sent bytes that are not a valid frame or message.
    #[error("malformed frame: {0}")]
    Wire(#[from] WireError),
    /// The peer failed authentication: wrong key, forged, modified,
    /// replayed, reordered or reflected frame.
    #[error("authentication failed: {0}")]
    Auth(#[from] AuthError),
    /// The peer speaks no protocol version this node does.
    #[error(
        "peer speaks sync protocol version {theirs}, this node speaks {ours}: no version in common"
    )]
    Version {
        /// Ours.
        ours: Versions,
        /// The peer's highest (a node of an earlier release speaks one).
        theirs: u16,
    },
    /// A backup of an earlier release answered the master's offer with
    /// the one version it speaks, and closes: the master offers that one
    /// next.
    #[error("peer speaks sync protocol version {theirs} only, not the {offered} offered (a node of an earlier release)")]
    Offer {
        /// The version offered.
        offered: u16,
        /// The peer's.
        theirs: u16,
    },
    /// A well-formed message that has no place at this point.
    #[error("unexpected {kind} message during {phase}")]
    Unexpected {
        /// The message type received.
        kind: &'static str,
        /// Where in the protocol it came.
        phase: &'static str,
    },
    /// Something took too long: a silent peer, a stuck write, a slow
    /// handshake or connect.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// The peer closed the connection between frames.
    #[error("connection closed by the peer")]
    Closed,
    /// The daemon dropped the receiving end of the batch channel.
    #[error("the batch receiver was dropped")]
    ReceiverClosed,
}

/// Counters of one node's sync channel, shared by its tasks and read by
/// the daemon's metrics and `lbctl` (through [`SyncStats::snapshot`]).
#[derive(Debug, Default)]
pub struct SyncStats {
    batches_sent: AtomicU64,
    records_sent: AtomicU64,
    batches_received: AtomicU64,
    records_received: AtomicU64,
    auth_failures: AtomicU64,
    decode_errors: AtomicU64,
    timeouts: AtomicU64,
    sessions: AtomicU64,
    reconnects: AtomicU64,
    dropped_batches: AtomicU64,
    dropped_records: AtomicU64,
    refused: AtomicU64,
    nat_withheld: AtomicU64,
}

/// The counters at one moment, as plain numbers to serialize.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatsSnapshot {
    /// Batch frames written (a batch given to [`Sender::send`] is split
    /// into frames of at most [`wire::MAX_BATCH_RECORDS`] records).
    pub batches_sent: u64,
    /// Records written in batch frames.
    pub records_sent: u64,
    /// Authenticated batch frames received.
    pub batches_received: u64,
    /// Records in them.
    pub records_received: u64,
    /// Connections closed for a wrong key, bad tag, replayed, reordered or
    /// reflected frame.
    pub auth_failures: u64,
    /// Connections closed for a malformed frame, unexpected message or
    /// protocol version mismatch.
    pub decode_errors: u64,
    /// Connections closed because the peer was silent or a handshake,
    /// connect or write took too long.
    pub timeouts: u64,
    /// Sessions established (handshake passed).
    pub sessions: u64,
    /// Connection attempts of the sender after its first one.
    pub reconnects: u64,
    /// Batches the sender's full queue dropped (a later full sync repairs).
    pub dropped_batches: u64,
    /// Records in them.
    pub dropped_records: u64,
    /// Connections the listener closed before authentication: from an
    /// address that is no configured peer's, or a handshake cut to make
    /// room for a newer one (absent from older lbds' status: 0).
    #[serde(default)]
    pub refused: u64,
    /// NAT'd flow records not sent because the session's protocol version
    /// has no NatBatch (a peer of an earlier release; absent from older
    /// lbds' status: 0).
    #[serde(default)]
    pub nat_withheld: u64,
}

impl SyncStatsSnapshot {
    /// Adds `other`'s counters to these (one node's channel: its senders
    /// and its listener).
    pub(crate) fn absorb(&mut self, other: &SyncStatsSnapshot) {
        self.batches_sent += other.batches_sent;
        self.records_sent += other.records_sent;
        self.batches_received += other.batches_received;
        self.records_received += other.records_received;
        self.auth_failures += other.auth_failures;
        self.decode_errors += other.decode_errors;
        self.timeouts += other.timeouts;
        self.sessions += other.sessions;
        self.reconnects += other.reconnects;
        self.dropped_batches += other.dropped_batches;
        self.dropped_records += other.dropped_records;
        self.refused += other.refused;
        self.nat_withheld += other.nat_withheld;
    }
}

/// Which counter to bump; keeps the atomics private.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    BatchesSent,
    RecordsSent,
    BatchesReceived,
    RecordsReceived,
    AuthFailures,
    DecodeErrors,
    Timeouts,
    Sessions,
    Reconnects,
    DroppedBatches,
    DroppedRecords,
    Refused,
    NatWithheld,
}

impl SyncStats {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters now, for metrics and `lbctl`.
    pub(crate) fn snapshot(&self) -> SyncStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SyncStatsSnapshot {
            batches_sent: get(&self.batches_sent),
            records_sent: get(&self.records_sent),
            batches_received: get(&self.batches_received),
            records_received: get(&self.records_received),
            auth_failures: get(&self.auth_failures),
            decode_errors: get(&self.decode_errors),
            timeouts: get(&self.timeouts),
            sessions: get(&self.sessions),
            reconnects: get(&self.reconnects),
            dropped_batches: get(&self.dropped_batches),
            dropped_records: get(&self.dropped_records),
            refused: get(&self.refused),
            nat_withheld: get(&self.nat_withheld),
        }
    }

    /// Adds `n` to `counter`.
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let atomic = match counter {
            Counter::BatchesSent => &self.batches_sent,
            Counter::RecordsSent => &self.records_sent,
            Counter::BatchesReceived => &self.batches_received,
            Counter::RecordsReceived => &self.records_received,
            Counter::AuthFailures => &self.auth_failures,
            Counter::DecodeErrors => &self.decode_errors,
            Counter::Timeouts => &self.timeouts,
            Counter::Sessions => &self.sessions,
            Counter::Reconnects => &self.reconnects,
            Counter::DroppedBatches => &self.dropped_batches,
            Counter::DroppedRecords => &self.dropped_records,
            Counter::Refused => &self.refused,
            Counter::NatWithheld => &self.nat_withheld,
        };
        atomic.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts the error that closed a connection, under its kind.
    pub(crate) fn count_error(&self, error: &SyncError) {
        match error {
            SyncError::Auth(_) => self.add(Counter::AuthFailures, 1),
            SyncError::Wire(_)
            | SyncError::Version { .. }
            | SyncError::Offer { .. }
            | SyncError::Unexpected { .. } => {
                self.add(Counter::DecodeErrors, 1);
            }
            SyncError::Timeout { .. } => self.add(Counter::Timeouts, 1),
            SyncError::Config(_)
            | SyncError::NoRuntime
            | SyncError::Io { .. }
            | SyncError::Closed
            | SyncError::ReceiverClosed => {}
        }
    }
}

/// Counts a usize quantity (record counts) into a u64 counter.
pub(crate) fn count_of(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        let good = SyncConfig::new(vec![7; 16], "lb-a");
        good.validate().unwrap();
        let short = SyncConfig {
            key: vec![7; 15],
            ..good.clone()
        };
        assert!(matches!(short.validate(), Err(SyncError::Config(_))));
        let empty = SyncConfig {
            node_id: String::new(),
            ..good.clone()
        };
        assert!(empty.validate().is_err());
        let long = SyncConfig {
            node_id: "x".repeat(65),
            ..good.clone()
        };
        assert!(long.validate().is_err());
        let max = SyncConfig {
            node_id: "x".repeat(64),
            ..good.clone()
        };
        max.validate().unwrap();
    }

    #[test]
    fn debug_hides_the_key() {
        let config = SyncConfig::new(b"super-secret-key-bytes".to_vec(), "lb-a");
        let shown = format!("{config:?}");
        assert!(!shown.contains("super"), "{shown}");
        assert!(shown.contains("22 bytes"), "{shown}");
    }

    #[test]
    fn errors_are_counted_by_kind() {
        let stats = SyncStats::new();
        stats.count_error(&SyncError::Auth(AuthError::BadProof));
        stats.count_error(&SyncError::Wire(WireError::UnknownMessage(9)));
        stats.count_error(&SyncError::Timeout {
            what: "read",
            after: Duration::from_secs(5),
        });
        stats.count_error(&SyncError::Closed);
        let s = stats.snapshot();
        assert_eq!(
            (s.auth_failures, s.decode_errors, s.timeouts),
            (1, 1, 1),
            "{s:?}"
        );
    }
}
