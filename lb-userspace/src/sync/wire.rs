//! The sync protocol's bytes, with no I/O: the encoding of records and
//! messages, length-prefixed framing, the handshake's proofs and the tags
//! that authenticate every frame of a session.
//!
//! # Frames
//! A frame is a big-endian `u32` body length (1 ..= [`MAX_FRAME_LEN`])
//! followed by the body. The two handshake frames carry a bare message;
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
//! A change to the messages bumps [`PROTOCOL_VERSION`], which both Hellos
//! carry; a node refuses a peer of another version in the handshake
//! (before any record), so a peer never reads a message it does not know.
//! Version 2 added NatBatch: a version-1 lbd refuses a version-2 peer with
//! "peer speaks sync protocol version 2", and the other way round.
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

use std::{
    hash::{BuildHasher, Hasher, RandomState},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{
    nat_record::{decode_nat_record, encode_nat_record, NAT_RECORD_LEN},
    FlowRecord, NatFlowRecord, SyncError,
};

type HmacSha256 = Hmac<Sha256>;

/// Version of this encoding, exchanged in Hello: a node refuses a peer
/// that speaks another. 2: NatBatch.
pub const PROTOCOL_VERSION: u16 = 2;
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
/// Header of a Batch message: type, seq, flags, count.
const BATCH_HEADER_LEN: usize = 1 + 8 + 1 + 2;
const PROOF_LABEL: &[u8] = b"lbd-sync/1 hello\0";
const TAG_LABEL: &[u8] = b"lbd-sync/1 frame\0";

// The largest sealed batch must fit in a frame.
const _: () = assert!(BATCH_HEADER_LEN + MAX_BATCH_RECORDS * RECORD_LEN + TAG_LEN <= MAX_FRAME_LEN);
const _: () =
    assert!(BATCH_HEADER_LEN + MAX_BATCH_RECORDS * NAT_RECORD_LEN + TAG_LEN <= MAX_FRAME_LEN);
const _: () = assert!(MAX_BATCH_RECORDS <= u16::MAX as usize);
const _: () = assert!(MAX_NODE_ID_LEN <= u8::MAX as usize);

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
        /// [`PROTOCOL_VERSION`] of the sender.
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

/// Appends an address: family byte and 16 bytes (IPv4 zero-padded).
pub(super) fn encode_addr(out: &mut Vec<u8>, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => {
            out.push(FAMILY_V4);
            out.extend_from_slice(&a.octets());
            out.extend_from_slice(&[0; 12]);
        }
        IpAddr::V6(a) => {
            out.push(FAMILY_V6);
            out.extend_from_slice(&a.octets());
        }
    }
}

/// Reads an address written by [`encode_addr`], checking family and
/// padding.
pub(super) fn decode_addr(r: &mut Reader<'_>, what: &'static str) -> Result<IpAddr, WireError> {
    let family = r.u8(what)?;
    let bytes = r.array::<16>(what)?;
    match family {
        FAMILY_V4 => {
            let [a, b, c, d, padding @ ..] = bytes;
            if padding.iter().any(|&byte| byte != 0) {
                return Err(WireError::AddressPadding { what });
            }
            Ok(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
        }
        FAMILY_V6 => Ok(IpAddr::V6(Ipv6Addr::from(bytes))),
        family => Err(WireError::UnknownFamily { what, family }),
    }
}

fn encode_record(out: &mut Vec<u8>, record: &FlowRecord) {
    encode_addr(out, record.vip);
    out.extend_from_slice(&record.vip_port.to_be_bytes());
    out.push(record.protocol);
    encode_addr(out, record.client);
    out.extend_from_slice(&record.client_port.to_be_bytes());
    encode_addr(out, record.backend);
    out.extend_from_slice(&record.age_ms.to_be_bytes());
    out.push(record.flags);
}

fn decode_record(r: &mut Reader<'_>) -> Result<FlowRecord, WireError> {
    Ok(FlowRecord {
        vip: decode_addr(r, "record vip")?,
        vip_port: r.u16("record vip port")?,
        protocol: r.u8("record protocol")?,
        client: decode_addr(r, "record client")?,
        client_port: r.u16("record client port")?,
        backend: decode_addr(r, "record backend")?,
        age_ms: r.u32("record age")?,
        flags: r.u8("record flags")?,
    })
}

/// A cursor over untrusted bytes whose every read is length-checked.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let (head, rest) = self.buf.split_at_checked(n).ok_or(WireError::Truncated {
            what,
            needed: n,
            available: self.buf.len(),
        })?;
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let available = self.buf.len();
        <[u8; N]>::try_from(self.take(N, what)?).map_err(|_| WireError::Truncated {
            what,
            needed: N,
            available,
        })
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        self.array::<1>(what).map(u8::from_be_bytes)
    }

    pub(super) fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        self.array::<2>(what).map(u16::from_be_bytes)
    }

    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        self.array::<4>(what).map(u32::from_be_bytes)
    }

    pub(super) fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        self.array::<8>(what).map(u64::from_be_bytes)
    }

    pub(super) fn finish(self, what: &'static str) -> Result<(), WireError> {
        match self.buf.len() {
            0 => Ok(()),
            extra => Err(WireError::TrailingBytes { what, extra }),
        }
    }
}

/// The body length a frame header announces, checked against the limits
/// before anything is allocated for it.
pub(crate) fn frame_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, WireError> {
    let len = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
    check_frame_len(len)?;
    Ok(len)
}

fn check_frame_len(len: usize) -> Result<(), WireError> {
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(WireError::FrameLength {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(())
}

/// Wraps a body in a frame (length prefix). Used for the handshake
/// messages; sealed frames come framed from [`Sealer`].
pub fn encode_frame(body: &[u8]) -> Result<Vec<u8>, WireError> {
    let header = frame_header(body.len())?;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    Ok(out)
}

fn frame_header(len: usize) -> Result<[u8; FRAME_HEADER_LEN], WireError> {
    check_frame_len(len)?;
    let len = u32::try_from(len).map_err(|_| WireError::FrameLength {
        len,
        max: MAX_FRAME_LEN,
    })?;
    Ok(len.to_be_bytes())
}

/// Takes one whole frame off the front of `bytes`: its body and what
/// follows. An incomplete frame is [`WireError::Truncated`].
pub fn split_frame(bytes: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let mut r = Reader::new(bytes);
    let len = frame_len(r.array::<FRAME_HEADER_LEN>("frame header")?)?;
    let body = r.take(len, "frame body")?;
    Ok((body, r.buf))
}

/// Which end of a session: the master connects and sends batches, the
/// backup listens and receives them. Also names the direction of frames
/// and proofs, so neither can be reflected back to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The VRRP master: connects, sends flows.
    Master,
    /// The backup: listens, receives flows.
    Backup,
}

impl Role {
    /// The other end.
    pub fn peer(self) -> Role {
        match self {
            Role::Master => Role::Backup,
            Role::Backup => Role::Master,
        }
    }

    fn byte(self) -> u8 {
        match self {
            Role::Master => 1,
            Role::Backup => 2,
        }
    }
}

/// What both Hellos said, in master/backup order whatever side computes
/// it: the input of the proofs and of the frame tags.
#[derive(Debug, Clone, Copy)]
pub struct Transcript<'a> {
    /// The master's Hello nonce.
    pub master_nonce: &'a Nonce,
    /// The backup's Hello nonce.
    pub backup_nonce: &'a Nonce,
    /// The master's node id.
    pub master_id: &'a str,
    /// The backup's node id.
    pub backup_id: &'a str,
}

fn keyed(key: &[u8]) -> Result<HmacSha256, AuthError> {
    HmacSha256::new_from_slice(key).map_err(|_| AuthError::InvalidKey)
}

fn proof_mac(key: &[u8], from: Role, t: &Transcript<'_>) -> Result<HmacSha256, AuthError> {
    let mut mac = keyed(key)?;
    mac.update(PROOF_LABEL);
    mac.update(&[from.byte()]);
    mac.update(t.master_nonce);
    mac.update(t.backup_nonce);
    // The length prefix keeps the concatenation unambiguous.
    for id in [t.master_id, t.backup_id] {
        mac.update(&u64::try_from(id.len()).unwrap_or(u64::MAX).to_be_bytes());
        mac.update(id.as_bytes());
    }
    Ok(mac)
}

/// The HelloAck proof that `from` knows `key`, bound to this handshake's
/// nonces and node ids.
pub(crate) fn hello_proof(key: &[u8], from: Role, t: &Transcript<'_>) -> Result<Tag, AuthError> {
    Ok(proof_mac(key, from, t)?.finalize().into_bytes().into())
}

/// Checks the peer's HelloAck proof, in constant time.
pub(crate) fn verify_hello_proof(
    key: &[u8],
    from: Role,
    t: &Transcript<'_>,
    proof: &Tag,
) -> Result<(), AuthError> {
    proof_mac(key, from, t)?
        .verify_slice(proof)
        .map_err(|_| AuthError::BadProof)
}

/// The MAC state every tag of one direction of a session starts from:
/// key, label, direction and both nonces.
fn direction_mac(key: &[u8], from: Role, t: &Transcript<'_>) -> Result<HmacSha256, AuthError> {
    let mut mac = keyed(key)?;
    mac.update(TAG_LABEL);
    mac.update(&[from.byte()]);
    mac.update(t.master_nonce);
    mac.update(t.backup_nonce);
    Ok(mac)
}

fn frame_mac(base: &HmacSha256, seq: u64, message: &[u8]) -> HmacSha256 {
    let mut mac = base.clone();
    mac.update(&seq.to_be_bytes());
    mac.update(message);
    mac
}

/// The sealer and opener of a session, for the end playing `local` once
/// the handshake in `t` has passed.
pub fn session(key: &[u8], local: Role, t: &Transcript<'_>) -> Result<(Sealer, Opener), AuthError> {
    Ok((
        Sealer {
            base: direction_mac(key, local, t)?,
            next_seq: 1,
        },
        Opener {
            base: direction_mac(key, local.peer(), t)?,
            expected_seq: 1,
        },
    ))
}

/// Turns outgoing session messages into sealed frames, numbering them.
#[derive(Clone)]
pub struct Sealer {
    base: HmacSha256,
    next_seq: u64,
}

impl Sealer {
    /// The sequence number the next frame will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// A sealed Heartbeat frame.
    pub fn heartbeat(&mut self) -> Result<Vec<u8>, WireError> {
        self.seal(|seq, out| {
            encode_heartbeat(out, seq);
            Ok(())
        })
    }

    /// A sealed Batch frame of at most [`MAX_BATCH_RECORDS`] records.
    pub fn batch(
        &mut self,
        full_sync: bool,
        last: bool,
        records: &[FlowRecord],
    ) -> Result<Vec<u8>, WireError> {
        self.seal(|seq, out| encode_batch(out, seq, full_sync, last, records))
    }

    /// A sealed NatBatch frame of at most [`MAX_BATCH_RECORDS`] records.
    pub fn nat_batch(
        &mut self,
        full_sync: bool,
        last: bool,
        records: &[NatFlowRecord],
    ) -> Result<Vec<u8>, WireError> {
        self.seal(|seq, out| encode_nat_batch(out, seq, full_sync, last, records))
    }

    fn seal(
        &mut self,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<(), WireError>,
    ) -> Result<Vec<u8>, WireError> {
        let seq = self.next_seq;
        let next = seq.checked_add(1).ok_or(WireError::SequenceExhausted)?;
        let mut message = Vec::new();
        encode(seq, &mut message)?;
        let tag: Tag = frame_mac(&self.base, seq, &message)
            .finalize()
            .into_bytes()
            .into();
        let header = frame_header(message.len().saturating_add(TAG_LEN))?;
        let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + message.len() + TAG_LEN);
        frame.extend_from_slice(&header);
        frame.extend_from_slice(&message);
        frame.extend_from_slice(&tag);
        self.next_seq = next;
        Ok(frame)
    }
}

/// Checks and decodes incoming sealed frames, in order.
#[derive(Clone)]
pub struct Opener {
    base: HmacSha256,
    expected_seq: u64,
}

impl Opener {
    /// The sequence number the next frame must carry.
    #[cfg(test)]
    pub(crate) fn expected_seq(&self) -> u64 {
        self.expected_seq
    }

    /// Checks a sealed frame's body (tag, then sequence number) and
    /// decodes its message, a Batch, NatBatch or Heartbeat. Never panics.
    pub fn open(&mut self, body: &[u8]) -> Result<Message, SyncError> {
        let split = body
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(WireError::Truncated {
                what: "frame tag",
                needed: TAG_LEN,
                available: body.len(),
            })?;
        let (message, tag) = body.split_at_checked(split).ok_or(WireError::Truncated {
            what: "frame tag",
            needed: TAG_LEN,
            available: body.len(),
        })?;
        let mut r = Reader::new(message);
        r.u8("message type")?;
        let seq = r.u64("sequence number")?;
        frame_mac(&self.base, seq, message)
            .verify_slice(tag)
            .map_err(|_| AuthError::BadTag { seq })?;
        if seq != self.expected_seq {
            return Err(AuthError::Sequence {
                expected: self.expected_seq,
                got: seq,
            }
            .into());
        }
        let decoded = Message::decode(message)?;
        match decoded {
            Message::Batch { .. } | Message::NatBatch { .. } | Message::Heartbeat { .. } => {}
            Message::Hello { .. } | Message::HelloAck { .. } => {
                return Err(SyncError::Unexpected {
                    kind: decoded.kind(),
                    phase: "session",
                })
            }
        }
        self.expected_seq = seq.checked_add(1).ok_or(WireError::SequenceExhausted)?;
        Ok(decoded)
    }
}

/// A fresh handshake nonce, from std alone: SipHash under the randomly
/// keyed [`RandomState`] (seeded from the OS per thread) of the time, the
/// pid and a process-wide counter, whitened through SHA-256. Unique per
/// connection and unpredictable enough that a recorded handshake never
/// matches a new one.
pub(crate) fn new_nonce() -> Nonce {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let pid = std::process::id();
    let mut digest = Sha256::new();
    digest.update(b"lbd-sync nonce\0");
    for lane in 0u64..4 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(count);
        hasher.write_u128(now);
        hasher.write_u32(pid);
        hasher.write_u64(lane);
        digest.update(hasher.finish().to_be_bytes());
    }
    digest.update(count.to_be_bytes());
    digest.update(now.to_be_bytes());
    digest.update(pid.to_be_bytes());
    digest.finalize().into()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::sync::nat_record::tests::nat_record;

    fn v4(i: u32) -> FlowRecord {
        FlowRecord {
            vip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            vip_port: 443,
            protocol: 6,
            client: IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 | i)),
            client_port: u16::try_from(i % 65536).unwrap(),
            backend: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            age_ms: i.wrapping_mul(31),
            flags: 0b01,
        }
    }

    fn v6(i: u32) -> FlowRecord {
        FlowRecord {
            vip: "2001:db8::1".parse().unwrap(),
            vip_port: 53,
            protocol: 17,
            client: IpAddr::V6(Ipv6Addr::from(
                0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(i),
            )),
            client_port: 65535,
            backend: "2001:db8:ffff::beef".parse().unwrap(),
            age_ms: u32::MAX,
            flags: 0xff,
        }
    }

    fn transcript<'a>(m: &'a Nonce, b: &'a Nonce) -> Transcript<'a> {
        Transcript {
            master_nonce: m,
            backup_nonce: b,
            master_id: "lb-a",
            backup_id: "lb-b",
        }
    }

    const KEY: &[u8] = b"0123456789abcdef-shared";

    fn every_message() -> Vec<Message> {
        vec![
            Message::Hello {
                version: PROTOCOL_VERSION,
                node_id: "lb-a.example".into(),
                nonce: [0xa5; NONCE_LEN],
            },
            Message::Hello {
                version: 0xfffe,
                node_id: "é".repeat(32),
                nonce: new_nonce(),
            },
            Message::HelloAck {
                proof: [0x3c; TAG_LEN],
            },
            Message::Batch {
                seq: 1,
                full_sync: true,
                last: true,
                records: vec![],
            },
            Message::Batch {
                seq: u64::MAX,
                full_sync: false,
                last: false,
                records: vec![v4(1), v6(2), v4(3)],
            },
            Message::Batch {
                seq: 77,
                full_sync: true,
                last: false,
                records: (0..4096)
                    .map(|i| if i % 2 == 0 { v4(i) } else { v6(i) })
                    .collect(),
            },
            Message::Heartbeat { seq: 0 },
            Message::Heartbeat {
                seq: 12_345_678_901,
            },
            Message::NatBatch {
                seq: 2,
                full_sync: true,
                last: true,
                records: vec![],
            },
            Message::NatBatch {
                seq: 3,
                full_sync: false,
                last: true,
                records: vec![nat_record(0), nat_record(1)],
            },
            Message::NatBatch {
                seq: 78,
                full_sync: true,
                last: false,
                records: (0..4096).map(nat_record).collect(),
            },
        ]
    }

    #[test]
    fn nat_batches_seal_and_open_and_say_what_is_wrong() {
        let (m, b) = ([5; NONCE_LEN], [6; NONCE_LEN]);
        let t = transcript(&m, &b);
        let (mut sealer, _) = session(KEY, Role::Master, &t).unwrap();
        let (_, mut opener) = session(KEY, Role::Backup, &t).unwrap();
        let records = vec![nat_record(2), nat_record(3)];
        let frame = sealer.nat_batch(true, true, &records).unwrap();
        let (body, _) = split_frame(&frame).unwrap();
        assert_eq!(
            opener.open(body).unwrap(),
            Message::NatBatch {
                seq: 1,
                full_sync: true,
                last: true,
                records
            }
        );
        let bytes = Message::NatBatch {
            seq: 1,
            full_sync: false,
            last: true,
            records: vec![nat_record(2)],
        }
        .encode()
        .unwrap();
        assert_eq!(bytes.first(), Some(&MSG_NAT_BATCH));
        assert_eq!(bytes.len(), BATCH_HEADER_LEN + NAT_RECORD_LEN);
        let mut bad = bytes.clone();
        *bad.get_mut(9).unwrap() = 0x80;
        assert_eq!(Message::decode(&bad), Err(WireError::UnknownFlags(0x80)));
        let mut bad = bytes.clone();
        bad.splice(10..12, 2u16.to_be_bytes());
        assert!(matches!(
            Message::decode(&bad),
            Err(WireError::Truncated {
                what: "nat batch records",
                ..
            })
        ));
        let mut bad = bytes.clone();
        bad.push(0);
        assert!(matches!(
            Message::decode(&bad),
            Err(WireError::TrailingBytes {
                what: "NatBatch",
                extra: 1
            })
        ));
    }

    #[test]
    fn record_round_trip_v4_and_v6() {
        let mixed = FlowRecord {
            backend: "2001:db8::2".parse().unwrap(),
            ..v4(9)
        };
        for record in [v4(0), v4(u32::MAX >> 16), v6(0), v6(u32::MAX), mixed] {
            let mut out = Vec::new();
            encode_record(&mut out, &record);
            assert_eq!(out.len(), RECORD_LEN);
            let mut r = Reader::new(&out);
            assert_eq!(decode_record(&mut r).unwrap(), record);
            r.finish("record").unwrap();
        }
    }

    #[test]
    fn record_layout_is_fixed_and_big_endian() {
        let mut out = Vec::new();
        encode_record(&mut out, &v4(0x0102));
        assert_eq!(out.first(), Some(&FAMILY_V4));
        assert_eq!(out.get(1..5), Some(&[10, 0, 0, 1][..]));
        assert_eq!(out.get(5..17), Some(&[0; 12][..]));
        assert_eq!(out.get(17..19), Some(&443u16.to_be_bytes()[..]));
        assert_eq!(out.get(19), Some(&6));
        assert_eq!(out.last(), Some(&0b01));
    }

    #[test]
    fn every_message_round_trips() {
        for message in every_message() {
            let bytes = message.encode().unwrap();
            assert_eq!(
                Message::decode(&bytes).unwrap(),
                message,
                "{}",
                message.kind()
            );
            let frame = encode_frame(&bytes).unwrap();
            let (body, rest) = split_frame(&frame).unwrap();
            assert_eq!(body, &bytes[..]);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn frames_split_one_at_a_time() {
        let a = encode_frame(&Message::Heartbeat { seq: 1 }.encode().unwrap()).unwrap();
        let b = encode_frame(&Message::HelloAck { proof: [1; 32] }.encode().unwrap()).unwrap();
        let joined = [a.clone(), b.clone()].concat();
        let (first, rest) = split_frame(&joined).unwrap();
        assert_eq!(
            Message::decode(first).unwrap(),
            Message::Heartbeat { seq: 1 }
        );
        let (second, rest) = split_frame(rest).unwrap();
        assert_eq!(
            Message::decode(second).unwrap(),
            Message::HelloAck { proof: [1; 32] }
        );
        assert!(rest.is_empty());
    }

    #[test]
    fn encode_refuses_what_decode_would_refuse() {
        let too_many = Message::Batch {
            seq: 1,
            full_sync: false,
            last: true,
            records: vec![v4(0); MAX_BATCH_RECORDS + 1],
        };
        assert!(matches!(
            too_many.encode(),
            Err(WireError::TooManyRecords { count: 4097, .. })
        ));
        for node_id in [String::new(), "x".repeat(MAX_NODE_ID_LEN + 1)] {
            let hello = Message::Hello {
                version: 1,
                node_id,
                nonce: [0; NONCE_LEN],
            };
            assert!(matches!(
                hello.encode(),
                Err(WireError::NodeIdLength { .. })
            ));
        }
        assert!(matches!(
            encode_frame(&[]),
            Err(WireError::FrameLength { len: 0, .. })
        ));
        assert!(encode_frame(&vec![0; MAX_FRAME_LEN + 1]).is_err());
        assert!(encode_frame(&vec![0; MAX_FRAME_LEN]).is_ok());
    }

    #[test]
    fn every_truncation_of_every_message_errors() {
        for message in every_message() {
            let bytes = message.encode().unwrap();
            let frame = encode_frame(&bytes).unwrap();
            for len in 0..bytes.len() {
                let cut = bytes.get(..len).unwrap();
                assert!(
                    Message::decode(cut).is_err(),
                    "{} cut at {len}",
                    message.kind()
                );
            }
            for len in 0..frame.len() {
                let cut = frame.get(..len).unwrap();
                assert!(
                    matches!(split_frame(cut), Err(WireError::Truncated { .. })),
                    "{} frame cut at {len}",
                    message.kind()
                );
            }
        }
    }

    #[test]
    fn every_truncation_of_a_sealed_frame_errors() {
        let (m, b) = ([1; NONCE_LEN], [2; NONCE_LEN]);
        let t = transcript(&m, &b);
        let (mut sealer, _) = session(KEY, Role::Master, &t).unwrap();
        let (_, opener) = session(KEY, Role::Backup, &t).unwrap();
        let frame = sealer.batch(false, true, &[v4(1), v6(2)]).unwrap();
        let (body, _) = split_frame(&frame).unwrap();
        for len in 0..body.len() {
            let mut fresh = opener.clone();
            let cut = body.get(..len).unwrap();
            assert!(fresh.open(cut).is_err(), "cut at {len}");
        }
        let mut fresh = opener.clone();
        assert!(fresh.open(body).is_ok());
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        let batch = Message::Batch {
            seq: 5,
            full_sync: false,
            last: true,
            records: vec![v4(1)],
        }
        .encode()
        .unwrap();
        let with = |at: usize, byte: u8| {
            let mut b = batch.clone();
            *b.get_mut(at).unwrap() = byte;
            Message::decode(&b)
        };
        // Offsets: type 0, seq 1..9, flags 9, count 10..12, record 12...
        assert_eq!(with(0, 99), Err(WireError::UnknownMessage(99)));
        assert_eq!(with(9, 0x04), Err(WireError::UnknownFlags(0x04)));
        assert!(matches!(
            with(12, 5),
            Err(WireError::UnknownFamily {
                what: "record vip",
                family: 5
            })
        ));
        assert!(matches!(
            with(20, 1),
            Err(WireError::AddressPadding { what: "record vip" })
        ));
        // Count says 2, one record present.
        assert!(matches!(
            with(11, 2),
            Err(WireError::Truncated {
                what: "batch records",
                ..
            })
        ));
        // Count says 0, one record present.
        assert!(matches!(
            with(11, 0),
            Err(WireError::TrailingBytes { what: "Batch", .. })
        ));
        // Count beyond the limit.
        let mut big = batch.clone();
        big.splice(10..12, 4097u16.to_be_bytes());
        assert!(matches!(
            Message::decode(&big),
            Err(WireError::TooManyRecords { count: 4097, .. })
        ));
        // Trailing byte after a heartbeat.
        let mut hb = Message::Heartbeat { seq: 1 }.encode().unwrap();
        hb.push(0);
        assert!(matches!(
            Message::decode(&hb),
            Err(WireError::TrailingBytes {
                what: "Heartbeat",
                extra: 1
            })
        ));
        // Hello with a non-UTF-8 id and with a zero-length id.
        let mut hello = Message::Hello {
            version: 1,
            node_id: "ab".into(),
            nonce: [0; NONCE_LEN],
        }
        .encode()
        .unwrap();
        *hello.last_mut().unwrap() = 0xff;
        assert_eq!(Message::decode(&hello), Err(WireError::NodeIdUtf8));
        let mut empty = hello.clone();
        empty.truncate(hello.len() - 3);
        empty.push(0);
        assert!(matches!(
            Message::decode(&empty),
            Err(WireError::NodeIdLength { len: 0, .. })
        ));
        // Frame lengths.
        assert!(matches!(
            frame_len([0, 0, 0, 0]),
            Err(WireError::FrameLength { len: 0, .. })
        ));
        assert!(matches!(
            frame_len([0, 0x10, 0, 1]),
            Err(WireError::FrameLength { .. })
        ));
        assert!(matches!(
            frame_len([0xff; 4]),
            Err(WireError::FrameLength { .. })
        ));
        assert_eq!(frame_len([0, 0x10, 0, 0]), Ok(MAX_FRAME_LEN));
        // Errors read well.
        let shown = with(12, 5).unwrap_err().to_string();
        assert_eq!(shown, "record vip: unknown address family 5");
    }

    /// A small deterministic generator for garbage (no rand crate).
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn garbage_never_panics() {
        let (m, b) = ([1; NONCE_LEN], [2; NONCE_LEN]);
        let t = transcript(&m, &b);
        let (_, opener) = session(KEY, Role::Backup, &t).unwrap();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        // Small valid messages to corrupt (the 4096-record batch would
        // only slow this down: its checks are the same).
        let valid: Vec<Vec<u8>> = every_message()
            .iter()
            .map(|m| m.encode().unwrap())
            .filter(|b| b.len() < 1000)
            .collect();
        for round in 0..20_000 {
            let len = usize::try_from(rng.next() % 300).unwrap();
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Half the time, start from a valid message and corrupt it, so
            // the decoder gets past the first checks.
            if round % 2 == 0 {
                bytes = valid[round / 2 % valid.len()].clone();
                for _ in 0..1 + rng.next() % 4 {
                    let at = usize::try_from(rng.next()).unwrap() % bytes.len();
                    bytes[at] ^= rng.next() as u8 | 1;
                }
            }
            let _ = Message::decode(&bytes);
            let _ = split_frame(&bytes);
            let _ = opener.clone().open(&bytes);
            if let Some(header) = bytes.first_chunk::<4>() {
                let _ = frame_len(*header);
            }
        }
    }

    #[test]
    fn sealed_frames_open_in_order_only() {
        let (m, b) = (new_nonce(), new_nonce());
        let t = transcript(&m, &b);
        let (mut master_sealer, mut master_opener) = session(KEY, Role::Master, &t).unwrap();
        let (mut backup_sealer, mut backup_opener) = session(KEY, Role::Backup, &t).unwrap();

        let records = vec![v4(1), v6(2)];
        let f1 = master_sealer.batch(true, false, &records).unwrap();
        let f2 = master_sealer.heartbeat().unwrap();
        let f3 = master_sealer.batch(true, true, &[]).unwrap();
        let body = |f: &[u8]| split_frame(f).unwrap().0.to_vec();
        let (b1, b2, b3) = (body(&f1), body(&f2), body(&f3));

        // Reordered: frame 2 before frame 1.
        let mut o = backup_opener.clone();
        assert!(matches!(
            o.open(&b2),
            Err(SyncError::Auth(AuthError::Sequence {
                expected: 1,
                got: 2
            }))
        ));

        assert_eq!(
            backup_opener.open(&b1).unwrap(),
            Message::Batch {
                seq: 1,
                full_sync: true,
                last: false,
                records
            }
        );
        // Replayed.
        assert!(matches!(
            backup_opener.clone().open(&b1),
            Err(SyncError::Auth(AuthError::Sequence {
                expected: 2,
                got: 1
            }))
        ));
        assert_eq!(
            backup_opener.open(&b2).unwrap(),
            Message::Heartbeat { seq: 2 }
        );
        assert!(matches!(
            backup_opener.open(&b3).unwrap(),
            Message::Batch {
                seq: 3,
                last: true,
                ..
            }
        ));
        assert_eq!(backup_opener.expected_seq(), 4);

        // Reflected: the master's own frame back to the master.
        let mut reflected = master_opener.clone();
        assert!(matches!(
            reflected.open(&b1),
            Err(SyncError::Auth(AuthError::BadTag { seq: 1 }))
        ));
        // The other direction works.
        let hb = backup_sealer.heartbeat().unwrap();
        assert_eq!(
            master_opener.open(split_frame(&hb).unwrap().0).unwrap(),
            Message::Heartbeat { seq: 1 }
        );

        // Another session (other nonces) or another key rejects it.
        let other_nonce = new_nonce();
        let t2 = transcript(&m, &other_nonce);
        let (_, mut other_session) = session(KEY, Role::Backup, &t2).unwrap();
        assert!(matches!(
            other_session.open(&b1),
            Err(SyncError::Auth(AuthError::BadTag { .. }))
        ));
        let (_, mut other_key) = session(b"another-key-0123456789", Role::Backup, &t).unwrap();
        assert!(matches!(
            other_key.open(&b1),
            Err(SyncError::Auth(AuthError::BadTag { .. }))
        ));
    }

    #[test]
    fn any_flipped_byte_is_rejected() {
        let (m, b) = ([3; NONCE_LEN], [4; NONCE_LEN]);
        let t = transcript(&m, &b);
        let (mut sealer, _) = session(KEY, Role::Master, &t).unwrap();
        let (_, opener) = session(KEY, Role::Backup, &t).unwrap();
        let frame = sealer.batch(false, true, &[v4(1), v6(1)]).unwrap();
        let (body, _) = split_frame(&frame).unwrap();
        for at in 0..body.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = body.to_vec();
                *bad.get_mut(at).unwrap() ^= bit;
                assert!(opener.clone().open(&bad).is_err(), "flip {bit:#x} at {at}");
            }
        }
    }

    #[test]
    fn hello_proofs_bind_key_role_nonces_and_ids() {
        let (m, b) = (new_nonce(), new_nonce());
        let t = transcript(&m, &b);
        let proof = hello_proof(KEY, Role::Master, &t).unwrap();
        verify_hello_proof(KEY, Role::Master, &t, &proof).unwrap();
        let fail = |r: Result<(), AuthError>| assert_eq!(r, Err(AuthError::BadProof));
        fail(verify_hello_proof(
            b"wrong-key-wrong-key",
            Role::Master,
            &t,
            &proof,
        ));
        // Reflected as the backup's proof.
        fail(verify_hello_proof(KEY, Role::Backup, &t, &proof));
        // Nonces swapped or replaced.
        fail(verify_hello_proof(
            KEY,
            Role::Master,
            &transcript(&b, &m),
            &proof,
        ));
        let fresh = new_nonce();
        fail(verify_hello_proof(
            KEY,
            Role::Master,
            &transcript(&m, &fresh),
            &proof,
        ));
        // Ids changed, including moving bytes between them.
        let moved = Transcript {
            master_id: "lb-ab",
            backup_id: "-b",
            ..t
        };
        fail(verify_hello_proof(KEY, Role::Master, &moved, &proof));
    }

    #[test]
    fn nonces_differ() {
        let nonces: HashSet<Nonce> = (0..1000).map(|_| new_nonce()).collect();
        assert_eq!(nonces.len(), 1000);
        let from_thread = std::thread::spawn(new_nonce).join().unwrap();
        assert!(!nonces.contains(&from_thread));
    }
}
