//! The sync protocol's bytes, with no I/O: the encoding of records and
//! messages, length-prefixed framing, the handshake's proofs and the tags
//! that authenticate every frame of a session.
//!
//! # Frames
//! A frame is a big-endian `u32` body length (1 ..= [`MAX_FRAME_LEN`])
//! followed by the body. The two handshake frames carry a bare message
//! (at most [`MAX_HANDSHAKE_FRAME_LEN`] bytes: a longer one is refused
//! from its header, before authentication allocates anything for it);
//! every frame after them is sealed: `message || tag`.
//!
//! # Messages
//! The first byte names the type; all integers are big-endian:
//! - `1` Hello: `version u16 | nonce [32] | id_len u8 | node id (UTF-8)`
//! - `2` HelloAck: `proof [32]`
//! - `3` Batch: `seq u64 | flags u8 | count u16 | count × record`, flags
//!   [`BATCH_FULL_SYNC`] and [`BATCH_LAST`], count ≤ [`MAX_BATCH_RECORDS`]
//! - `4` Heartbeat: `seq u64`
//! - `5` NatBatch (version 2): as Batch, with [`NAT_RECORD_LEN`]-byte NAT
//!   records (see [`nat_record`](super::nat_record)) instead of flow records
//! - `6` ConfigDigest (version 3): per VIP, a digest of the sender's
//!   Maglev inputs (see [`digest`])
//! - `7` BackendStates (version 4): the operator's backend states
//!   (drain, maintenance, enable) as the sender holds them, with when
//!   each was made (see [`backend_states`])
//!
//! A record is [`RECORD_LEN`] bytes: `vip addr | vip_port u16 | protocol
//! u8 | client addr | client_port u16 | backend addr | age_ms u32 | flags
//! u8`, an addr being a family byte (`4` or `6`) and 16 address bytes (an
//! IPv4 address fills the first 4, the rest must be zero).
//!
//! Decoding checks every length and value and rejects trailing bytes, so
//! any input yields a message or an error naming what was wrong.
//!
//! # Versions
//! A change to the messages bumps [`PROTOCOL_VERSION`]; version 2 added
//! NatBatch, version 3 ConfigDigest, version 4 BackendStates. A node
//! speaks a range of versions ([`Versions`]: this release 1 to 4) and a
//! session runs at the highest both ends speak, so nodes of different
//! releases keep replicating (a session below [`NAT_BATCH_VERSION`]
//! carries no NAT'd flows, one below [`BACKEND_STATES_VERSION`] no
//! backend states), and a peer never reads a message it does not know.
//! The master's Hello offers a version; the backup reads it before it
//! answers, with the session's version (a
//! backup of an earlier release speaks one version, answers with it and
//! closes if the offer differs: the master then offers that one). Each
//! end's range is authenticated by a mark at the end of its nonce (see
//! [`version`]), so a downgrade by a third party is
//! refused; a peer of an earlier release has no mark, and its version is
//! not authenticated (the proof format of versions 1 and 2 cannot change).
//!
//! # Authentication
//! Both ends know a shared key. Each sends a Hello with a fresh nonce, then
//! a HelloAck whose proof is HMAC-SHA256 over a label, the sender's role,
//! both nonces (master's first) and both node ids: each side proves it
//! knows the key for this very pair of nonces, and the role keeps one
//! side's proof from being reflected as the other's. Every later frame's
//! tag is HMAC-SHA256 over a label, the direction, both nonces, the
//! sequence number and the message; sequence numbers start at 1 in each
//! direction and must rise by exactly one, so frames cannot be forged,
//! modified, replayed (within or across sessions), reordered, dropped or
//! reflected. Tags and proofs are compared in constant time.

mod auth;
pub mod backend_states;
pub mod digest;
mod frame;
mod record;
#[cfg(test)]
mod tests;
pub mod version;

use hmac::Hmac;
use sha2::Sha256;

pub(crate) use self::auth::{hello_proof, new_nonce, verify_hello_proof};
pub use self::auth::{session, session_at, Opener, Role, Sealer, Transcript};
use self::backend_states::{decode_backend_states, encode_backend_states, MAX_BACKEND_STATES};
pub use self::backend_states::{BackendStateRecord, SharedState, BACKEND_STATES_VERSION};
use self::digest::{decode_digests, encode_digests};
pub use self::digest::{VipDigest, CONFIG_DIGEST_VERSION};
#[cfg(test)]
pub(crate) use self::frame::frame_len;
pub(crate) use self::frame::frame_len_within;
pub use self::frame::{encode_frame, split_frame};
pub(in crate::sync) use self::record::{decode_addr, encode_addr, Reader};
use self::record::{decode_record, encode_record};
pub(crate) use self::version::{mark_nonce, nonce_versions};
pub use self::version::{Versions, MIN_PROTOCOL_VERSION, NAT_BATCH_VERSION, PROTOCOL_VERSION};
use super::{
    nat_record::{decode_nat_record, encode_nat_record, NAT_RECORD_LEN},
    FlowRecord, NatFlowRecord,
};

type HmacSha256 = Hmac<Sha256>;

/// Largest frame body: bounds what a peer can make us allocate.
pub(crate) const MAX_FRAME_LEN: usize = 1 << 20;
/// Bytes of the length prefix.
pub(crate) const FRAME_HEADER_LEN: usize = 4;
/// Most records in one Batch message; larger batches are split.
pub(crate) const MAX_BATCH_RECORDS: usize = 4096;
/// Longest node id, in bytes.
pub(crate) const MAX_NODE_ID_LEN: usize = 64;
/// Shortest shared key accepted, in bytes.
pub(crate) const MIN_KEY_LEN: usize = 16;
/// Bytes of a handshake nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes of a proof or frame tag (HMAC-SHA256).
pub const TAG_LEN: usize = 32;
/// Largest handshake frame body: a Hello with the longest node id (a
/// HelloAck is shorter). Handshake frames are read with this limit, not
/// [`MAX_FRAME_LEN`]: a client without the key cannot make a node
/// allocate more than this for it.
pub(crate) const MAX_HANDSHAKE_FRAME_LEN: usize = 1 + 2 + NONCE_LEN + 1 + MAX_NODE_ID_LEN;
/// Bytes of one encoded address: family and 16 address bytes.
pub(super) const ADDR_LEN: usize = 1 + 16;
/// Bytes of one encoded [`FlowRecord`].
pub(crate) const RECORD_LEN: usize = 3 * ADDR_LEN + 2 + 1 + 2 + 4 + 1;
/// Batch flag: the batch is part of a full sync (a complete dump of the
/// sender's flows) rather than an incremental update.
pub(crate) const BATCH_FULL_SYNC: u8 = 0x01;
/// Batch flag: the last frame of one batch the sender was given; with
/// [`BATCH_FULL_SYNC`], the full sync is complete.
pub(crate) const BATCH_LAST: u8 = 0x02;

const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;
const MSG_HELLO: u8 = 1;
const MSG_HELLO_ACK: u8 = 2;
const MSG_BATCH: u8 = 3;
const MSG_HEARTBEAT: u8 = 4;
const MSG_NAT_BATCH: u8 = 5;
const MSG_CONFIG_DIGEST: u8 = 6;
/// BackendStates' type byte (version 4).
const MSG_BACKEND_STATES: u8 = 7;
/// Header of a Batch message: type, seq, flags, count.
const BATCH_HEADER_LEN: usize = 1 + 8 + 1 + 2;
const PROOF_LABEL: &[u8] = b"lbd-sync/1 hello\0";
const TAG_LABEL: &[u8] = b"lbd-sync/1 frame\0";

// The largest sealed batch must fit in a frame.
const _: () = assert!(BATCH_HEADER_LEN + MAX_BATCH_RECORDS * RECORD_LEN + TAG_LEN <= MAX_FRAME_LEN);
const _: () =
    assert!(BATCH_HEADER_LEN + MAX_BATCH_RECORDS * NAT_RECORD_LEN + TAG_LEN <= MAX_FRAME_LEN);
const _: () = assert!(MAX_BATCH_RECORDS <= u16::MAX as usize);
// The largest sealed BackendStates (type, seq, count, records) must fit
// in a frame, and its count in a u16.
const _: () = assert!(
    1 + 8 + 2 + MAX_BACKEND_STATES * backend_states::BACKEND_STATE_LEN + TAG_LEN <= MAX_FRAME_LEN
);
const _: () = assert!(MAX_BACKEND_STATES <= u16::MAX as usize);
const _: () = assert!(MAX_NODE_ID_LEN <= u8::MAX as usize);
// A HelloAck (type byte and proof) fits in a handshake frame.
const _: () = assert!(TAG_LEN < MAX_HANDSHAKE_FRAME_LEN);

/// A handshake nonce.
pub type Nonce = [u8; NONCE_LEN];
/// A handshake proof or frame tag.
pub(crate) type Tag = [u8; TAG_LEN];

/// What is wrong with bytes received (or a message that cannot be
/// encoded), named precisely enough to debug a peer from the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ends inside a field.
    #[error("{what} truncated: needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// Bytes follow a complete message.
    #[error("{extra} unexpected bytes after a {what} message")]
    TrailingBytes {
        /// The message type.
        what: &'static str,
        /// How many bytes follow it.
        extra: usize,
    },
    /// A frame's length prefix is zero or above [`MAX_FRAME_LEN`].
    #[error("frame length {len} is outside 1..={max}")]
    FrameLength {
        /// The length announced (or needed to encode).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message type byte is unknown.
    #[error("unknown message type {0}")]
    UnknownMessage(u8),
    /// An address's family byte is neither 4 nor 6.
    #[error("{what}: unknown address family {family}")]
    UnknownFamily {
        /// Which address.
        what: &'static str,
        /// The byte found.
        family: u8,
    },
    /// An IPv4 address's 12 padding bytes are not zero.
    #[error("{what}: IPv4 address with non-zero padding")]
    AddressPadding {
        /// Which address.
        what: &'static str,
    },
    /// A tuple's two addresses are of different families.
    #[error("{what}: addresses of two families")]
    MixedFamilies {
        /// Which tuple.
        what: &'static str,
    },
    /// A batch's flags have bits this version does not know.
    #[error("batch flags {0:#04x} have unknown bits")]
    UnknownFlags(u8),
    /// A backend state record's state byte is none this version knows.
    #[error("backend state: unknown state {0} (0 enabled, 1 draining, 2 maintenance)")]
    UnknownBackendState(u8),
    /// A backend state record's flags have bits this version does not
    /// know.
    #[error("backend state flags {0:#04x} have unknown bits")]
    UnknownBackendStateFlags(u8),
    /// A backend state record's drain times do not fit its state.
    #[error("backend state: {why}")]
    DrainTimes {
        /// What does not fit.
        why: &'static str,
    },
    /// A batch holds more records than [`MAX_BATCH_RECORDS`].
    #[error("batch of {count} records exceeds the limit of {max}")]
    TooManyRecords {
        /// Records in the batch.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A node id is empty or longer than [`MAX_NODE_ID_LEN`].
    #[error("node id of {len} bytes is outside 1..={max}")]
    NodeIdLength {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A node id is not UTF-8.
    #[error("node id is not valid UTF-8")]
    NodeIdUtf8,
    /// The 2^64 sequence numbers of a session are used up.
    #[error("session sequence numbers exhausted")]
    SequenceExhausted,
    /// A message the session's protocol version does not have (a NatBatch
    /// below [`NAT_BATCH_VERSION`], a ConfigDigest below
    /// [`CONFIG_DIGEST_VERSION`], a BackendStates below
    /// [`BACKEND_STATES_VERSION`]).
    #[error("{what} message in a session at protocol version {version}, which does not have it")]
    NotInVersion {
        /// The message type.
        what: &'static str,
        /// The session's version.
        version: u16,
    },
}

/// Why a peer failed authentication. Each closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The key cannot key HMAC (never happens for HMAC; kept for the
    /// API's sake).
    #[error("the key cannot be used for HMAC-SHA256")]
    InvalidKey,
    /// The peer's handshake proof is wrong.
    #[error("handshake proof does not match: wrong key, or a forged or replayed handshake")]
    BadProof,
    /// The peer's Hello carries our own nonce.
    #[error("peer echoed this node's nonce: reflected handshake")]
    ReflectedNonce,
    /// The peer's Hello carries a nonce this process issued: the
    /// connection is between this node's own sender and listener.
    #[error("peer is this node itself (its Hello carries this process's nonce): a sync peer address is one of this node's own")]
    OwnNonce,
    /// A Hello's version is not the one both ends' authenticated ranges
    /// (the marks of their nonces) agree on: it was changed on the way,
    /// a downgrade attempt.
    #[error("a Hello says protocol version {hello}, but the authenticated version ranges agree on {agreed}: modified in transit (a downgrade attempt)")]
    VersionMismatch {
        /// The version the Hello said.
        hello: u16,
        /// The version both ranges share.
        agreed: u16,
    },
    /// A frame's tag does not match its content.
    #[error("frame {seq} has a bad tag: forged, modified, reflected or from another session")]
    BadTag {
        /// The sequence number the frame claims.
        seq: u64,
    },
    /// A frame with a valid tag came out of order.
    #[error("frame sequence {got}, expected {expected}: replayed, reordered or dropped frame")]
    Sequence {
        /// The next sequence number due.
        expected: u64,
        /// The one received.
        got: u64,
    },
}

/// A message of the protocol, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Opens a connection (both ends send one): who is speaking, and the
    /// nonce the peer must prove the key over.
    Hello {
        /// The version the master offers; the backup's answer is the
        /// session's (see [`version`]).
        version: u16,
        /// The sender's [`SyncConfig::node_id`](super::SyncConfig).
        node_id: String,
        /// Fresh for this connection.
        nonce: Nonce,
    },
    /// Proves knowledge of the key over both Hellos.
    HelloAck {
        /// HMAC-SHA256, see [`hello_proof`].
        proof: Tag,
    },
    /// Flows, master to backup.
    Batch {
        /// The frame's sequence number.
        seq: u64,
        /// Part of a full sync rather than an incremental update.
        full_sync: bool,
        /// The last frame of one batch given to the sender.
        last: bool,
        /// At most [`MAX_BATCH_RECORDS`].
        records: Vec<FlowRecord>,
    },
    /// NAT'd flows, master to backup (version 2).
    NatBatch {
        /// The frame's sequence number.
        seq: u64,
        /// Part of a full sync rather than an incremental update.
        full_sync: bool,
        /// The last frame of one batch given to the sender.
        last: bool,
        /// At most [`MAX_BATCH_RECORDS`].
        records: Vec<NatFlowRecord>,
    },
    /// Keeps a quiet connection known alive, both ways.
    Heartbeat {
        /// The frame's sequence number.
        seq: u64,
    },
    /// The master's Maglev inputs per VIP (version 3), master to backup.
    ConfigDigest {
        /// The frame's sequence number.
        seq: u64,
        /// At most [`digest::MAX_DIGEST_VIPS`], one per VIP.
        vips: Vec<VipDigest>,
    },
    /// The sender's backend states (version 4), from any node's sender
    /// to its peer's listener, whatever the topology.
    BackendStates {
        /// The frame's sequence number.
        seq: u64,
        /// At most [`backend_states::MAX_BACKEND_STATES`], one per
        /// backend of a VIP.
        states: Vec<BackendStateRecord>,
    },
}

impl Message {
    /// The message type's name, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::HelloAck { .. } => "HelloAck",
            Message::Batch { .. } => "Batch",
            Message::NatBatch { .. } => "NatBatch",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::ConfigDigest { .. } => "ConfigDigest",
            Message::BackendStates { .. } => "BackendStates",
        }
    }

    /// The message's bytes (without frame header or tag). Fails on a
    /// message that breaks the limits (node id, records per batch).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        match self {
            Message::Hello {
                version,
                node_id,
                nonce,
            } => {
                let id_len = node_id_len(node_id.len())?;
                out.reserve(1 + 2 + NONCE_LEN + 1 + node_id.len());
                out.push(MSG_HELLO);
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(nonce);
                out.push(id_len);
                out.extend_from_slice(node_id.as_bytes());
            }
            Message::HelloAck { proof } => {
                out.push(MSG_HELLO_ACK);
                out.extend_from_slice(proof);
            }
            Message::Batch {
                seq,
                full_sync,
                last,
                records,
            } => encode_batch(&mut out, *seq, *full_sync, *last, records)?,
            Message::NatBatch {
                seq,
                full_sync,
                last,
                records,
            } => encode_nat_batch(&mut out, *seq, *full_sync, *last, records)?,
            Message::Heartbeat { seq } => encode_heartbeat(&mut out, *seq),
            Message::ConfigDigest { seq, vips } => encode_config_digest(&mut out, *seq, vips)?,
            Message::BackendStates { seq, states } => {
                encode_backend_states_message(&mut out, *seq, states)?
            }
        }
        Ok(out)
    }

    /// Decodes one message, which must fill `bytes` exactly. Never panics;
    /// any malformed input is an error saying what was wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let message = match r.u8("message type")? {
            MSG_HELLO => {
                let version = r.u16("hello version")?;
                let nonce = r.array::<NONCE_LEN>("hello nonce")?;
                let len = usize::from(r.u8("node id length")?);
                node_id_len(len)?;
                let id = r.take(len, "node id")?;
                let node_id = std::str::from_utf8(id)
                    .map_err(|_| WireError::NodeIdUtf8)?
                    .to_owned();
                r.finish("Hello")?;
                Message::Hello {
                    version,
                    node_id,
                    nonce,
                }
            }
            MSG_HELLO_ACK => {
                let proof = r.array::<TAG_LEN>("hello proof")?;
                r.finish("HelloAck")?;
                Message::HelloAck { proof }
            }
            MSG_BATCH => {
                let (seq, flags, records) =
                    decode_batch(&mut r, RECORD_LEN, "batch records", decode_record)?;
                r.finish("Batch")?;
                Message::Batch {
                    seq,
                    full_sync: flags & BATCH_FULL_SYNC != 0,
                    last: flags & BATCH_LAST != 0,
                    records,
                }
            }
            MSG_NAT_BATCH => {
                let (seq, flags, records) = decode_batch(
                    &mut r,
                    NAT_RECORD_LEN,
                    "nat batch records",
                    decode_nat_record,
                )?;
                r.finish("NatBatch")?;
                Message::NatBatch {
                    seq,
                    full_sync: flags & BATCH_FULL_SYNC != 0,
                    last: flags & BATCH_LAST != 0,
                    records,
                }
            }
            MSG_HEARTBEAT => {
                let seq = r.u64("heartbeat sequence number")?;
                r.finish("Heartbeat")?;
                Message::Heartbeat { seq }
            }
            MSG_CONFIG_DIGEST => {
                let (seq, vips) = decode_digests(&mut r)?;
                r.finish("ConfigDigest")?;
                Message::ConfigDigest { seq, vips }
            }
            MSG_BACKEND_STATES => {
                let (seq, states) = decode_backend_states(&mut r)?;
                r.finish("BackendStates")?;
                Message::BackendStates { seq, states }
            }
            other => return Err(WireError::UnknownMessage(other)),
        };
        Ok(message)
    }
}

/// Reads a batch after its type byte: sequence number, flags and records
/// of `record_len` bytes each, checking the count and the whole length
/// before allocating for it.
fn decode_batch<T>(
    r: &mut Reader<'_>,
    record_len: usize,
    what: &'static str,
    decode: impl Fn(&mut Reader<'_>) -> Result<T, WireError>,
) -> Result<(u64, u8, Vec<T>), WireError> {
    let seq = r.u64("batch sequence number")?;
    let flags = r.u8("batch flags")?;
    if flags & !(BATCH_FULL_SYNC | BATCH_LAST) != 0 {
        return Err(WireError::UnknownFlags(flags));
    }
    let count = usize::from(r.u16("batch record count")?);
    if count > MAX_BATCH_RECORDS {
        return Err(WireError::TooManyRecords {
            count,
            max: MAX_BATCH_RECORDS,
        });
    }
    let needed = count.saturating_mul(record_len);
    if r.remaining() < needed {
        return Err(WireError::Truncated {
            what,
            needed,
            available: r.remaining(),
        });
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(decode(r)?);
    }
    Ok((seq, flags, records))
}

/// Checks a node id's length, returning it as the byte it is sent as.
fn node_id_len(len: usize) -> Result<u8, WireError> {
    let err = WireError::NodeIdLength {
        len,
        max: MAX_NODE_ID_LEN,
    };
    if len == 0 || len > MAX_NODE_ID_LEN {
        return Err(err);
    }
    u8::try_from(len).map_err(|_| err)
}

fn encode_heartbeat(out: &mut Vec<u8>, seq: u64) {
    out.push(MSG_HEARTBEAT);
    out.extend_from_slice(&seq.to_be_bytes());
}

fn encode_config_digest(out: &mut Vec<u8>, seq: u64, vips: &[VipDigest]) -> Result<(), WireError> {
    out.push(MSG_CONFIG_DIGEST);
    encode_digests(out, seq, vips)
}

/// A whole BackendStates message: type byte, then the body (see
/// [`backend_states`]).
fn encode_backend_states_message(
    out: &mut Vec<u8>,
    seq: u64,
    states: &[BackendStateRecord],
) -> Result<(), WireError> {
    out.push(MSG_BACKEND_STATES);
    encode_backend_states(out, seq, states)
}

fn encode_batch(
    out: &mut Vec<u8>,
    seq: u64,
    full_sync: bool,
    last: bool,
    records: &[FlowRecord],
) -> Result<(), WireError> {
    let header = BatchHeader {
        message: MSG_BATCH,
        seq,
        full_sync,
        last,
    };
    encode_records(out, header, records, RECORD_LEN, encode_record)
}

fn encode_nat_batch(
    out: &mut Vec<u8>,
    seq: u64,
    full_sync: bool,
    last: bool,
    records: &[NatFlowRecord],
) -> Result<(), WireError> {
    let header = BatchHeader {
        message: MSG_NAT_BATCH,
        seq,
        full_sync,
        last,
    };
    encode_records(out, header, records, NAT_RECORD_LEN, encode_nat_record)
}

/// What precedes the records of a Batch or NatBatch.
#[derive(Clone, Copy)]
struct BatchHeader {
    message: u8,
    seq: u64,
    full_sync: bool,
    last: bool,
}

fn encode_records<T>(
    out: &mut Vec<u8>,
    header: BatchHeader,
    records: &[T],
    record_len: usize,
    encode: impl Fn(&mut Vec<u8>, &T),
) -> Result<(), WireError> {
    let count = u16::try_from(records.len())
        .ok()
        .filter(|&n| usize::from(n) <= MAX_BATCH_RECORDS)
        .ok_or(WireError::TooManyRecords {
            count: records.len(),
            max: MAX_BATCH_RECORDS,
        })?;
    let mut flags = 0;
    if header.full_sync {
        flags |= BATCH_FULL_SYNC;
    }
    if header.last {
        flags |= BATCH_LAST;
    }
    out.reserve(BATCH_HEADER_LEN + records.len() * record_len + TAG_LEN);
    out.push(header.message);
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&count.to_be_bytes());
    for record in records {
        encode(out, record);
    }
    Ok(())
}
