//! The sync channel's tokio tasks: the backup's listener ([`fn@listen`]),
//! which accepts masters and hands their batches to the daemon, and the
//! master's [`Sender`], which keeps a connection to the backup
//! (reconnecting with backoff) and streams the batches it is given from a
//! bounded queue.
//!
//! Both ends run the same session once connected: the handshake of
//! [`wire`](super::wire) (at the highest protocol version both speak),
//! then a reader and a writer. Each side sends a
//! heartbeat every second; a peer silent for five seconds (or a write stuck
//! as long) closes the connection, and the sender connects again. Any authentication or
//! decoding error closes the connection too, logged and counted. A sender
//! that ends ([`Sender::close`], or a drop) closes its side after its last
//! frame and reads until the peer closes its own, so nothing written is
//! lost to a reset.

mod backend_states;
mod digest;
mod listen;
mod own_nonces;
mod queue;
mod sender;
mod session;
mod slots;
#[cfg(test)]
mod test_session;
#[cfg(test)]
mod tests;

pub use backend_states::{PeerBackendStates, STATES_EXPIRY};
pub use digest::{PeerDigests, DIGEST_EXPIRY};
pub use listen::{listen, listen_for, BatchKind, ListenerHandle, ReceivedBatch};
pub use sender::{Closed, Sender};
pub(crate) use sender::{Dump, Read};
pub use slots::Sources;

use std::time::Duration;

/// Batches the sender queues (each one `send` call, of any size) before it
/// drops the oldest incremental one.
pub(crate) const SEND_QUEUE_CAPACITY: usize = 64;
/// Records a sender queues beyond its newest full sync and its newest
/// incremental batch of each kind (flows, NAT flows) before it drops the
/// oldest incremental batch. The newest incremental is kept whatever its
/// size: one tick's scan of a busy node may exceed this bound, and
/// dropping it would leave the peer only the next full sync.
///
/// With [`SEND_QUEUE_CAPACITY`] this bounds one peer's queue: at most
/// the newest complete dump of each kind (a queued full sync drops every
/// older batch of its kind, which it supersedes; a periodic dump queued
/// while a session's dump waits is dropped instead, and one queued while
/// the session's dump is being written, kept behind it, counts as a
/// second dump only until that write ends), the newest incremental
/// batch of each kind (a subset of the table: at most a dump's size) plus
/// this many records, i.e. at most `2D + 65,536 × 208` bytes, where `D` is one dump (64
/// bytes per tracked flow, the size of a
/// [`FlowRecord`](super::FlowRecord), plus 208 per NAT'd flow, a
/// [`NatFlowRecord`](super::NatFlowRecord)) and 208 the larger record
/// size: 13 MiB beyond the dump (4 MiB when only flows are queued). A full mesh keeps
/// one queue per peer: at most `N × (2D + 13 MiB)` for N peers (a dump is
/// built once per tick and copied into each peer's queue). A slow or dead
/// peer loses its oldest incremental batches (counted in
/// `dropped_batches`); the next full sync repairs it, and
/// the others are not held back (each peer has its own queue and task).
pub(crate) const SEND_QUEUE_RECORDS: usize = 65_536;
/// Authenticated sessions a listener serves at once (a mesh has at most
/// 15 peers); a new session from a node id replaces that node's old one.
pub(crate) const MAX_SESSIONS: usize = 16;
/// Connections a listener lets shake hands at once, apart from its
/// sessions: what unauthenticated clients can hold, so they never lock
/// out an authenticated peer. When all are taken, a new connection takes
/// the slot of the handshake whose peer has sent least, the oldest of
/// those (see `slots`): idle connections give way before a handshake
/// under way.
pub(crate) const MAX_HANDSHAKES: usize = 16;
/// Handshakes at once from one source (one address; on a listener open to
/// any address, an IPv6 /64: see [`Sources::group`]): a single host
/// cannot take every handshake slot, and past this its new connections
/// displace only its own (those that have sent least first).
pub(crate) const MAX_HANDSHAKES_PER_SOURCE: usize = 4;
/// Read buffer of a connection.
pub(super) const READ_BUFFER: usize = 64 * 1024;

/// The channel's timers. Fixed in production; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// Silence after which a peer is taken for dead; also the longest a
    /// frame write may take.
    pub silence: Duration,
    /// Longest a handshake may take.
    pub handshake: Duration,
    /// Longest a listener waits for an accepted connection's first byte
    /// (a peer sends its Hello at once; an idle socket is cut early).
    pub first_byte: Duration,
    /// Longest a TCP connect may take.
    pub connect: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(1),
            silence: Duration::from_secs(5),
            handshake: Duration::from_secs(5),
            first_byte: Duration::from_secs(1),
            connect: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}
