//! Authentication: the handshake's proofs over both nonces and node ids,
//! and the per-direction, per-sequence tags that seal every later frame.

use std::{
    hash::{BuildHasher, Hasher, RandomState},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use hmac::Mac;
use sha2::{Digest, Sha256};

use super::{
    encode_backend_states_message, encode_batch, encode_config_digest, encode_heartbeat,
    encode_nat_batch, frame::frame_header, AuthError, BackendStateRecord, HmacSha256, Message,
    Nonce, Reader, Tag, VipDigest, WireError, BACKEND_STATES_VERSION, CONFIG_DIGEST_VERSION,
    FRAME_HEADER_LEN, NAT_BATCH_VERSION, PROOF_LABEL, PROTOCOL_VERSION, TAG_LABEL, TAG_LEN,
};
use crate::sync::{FlowRecord, NatFlowRecord, SyncError};

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

/// The sealer and opener of a session at [`PROTOCOL_VERSION`], for the
/// end playing `local` once the handshake in `t` has passed.
pub fn session(key: &[u8], local: Role, t: &Transcript<'_>) -> Result<(Sealer, Opener), AuthError> {
    session_at(key, local, t, PROTOCOL_VERSION)
}

/// [`session`] at the protocol `version` the handshake agreed on: the
/// messages it has (no NatBatch below [`NAT_BATCH_VERSION`]). Versions 1
/// and 2 seal frames alike; a later one that changes the tags picks its
/// own here.
pub fn session_at(
    key: &[u8],
    local: Role,
    t: &Transcript<'_>,
    version: u16,
) -> Result<(Sealer, Opener), AuthError> {
    Ok((
        Sealer {
            base: direction_mac(key, local, t)?,
            next_seq: 1,
            version,
        },
        Opener {
            base: direction_mac(key, local.peer(), t)?,
            expected_seq: 1,
            version,
        },
    ))
}

/// Turns outgoing session messages into sealed frames, numbering them.
#[derive(Clone)]
pub struct Sealer {
    base: HmacSha256,
    next_seq: u64,
    /// The session's protocol version.
    version: u16,
}

impl Sealer {
    /// The sequence number the next frame will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The session's protocol version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// A sealed Heartbeat frame.
    pub fn heartbeat(&mut self) -> Result<Vec<u8>, WireError> {
        self.seal(|seq, out| {
            encode_heartbeat(out, seq);
            Ok(())
        })
    }

    /// A sealed Batch frame of at most [`MAX_BATCH_RECORDS`](super::MAX_BATCH_RECORDS) records.
    pub fn batch(
        &mut self,
        full_sync: bool,
        last: bool,
        records: &[FlowRecord],
    ) -> Result<Vec<u8>, WireError> {
        self.seal(|seq, out| encode_batch(out, seq, full_sync, last, records))
    }

    /// A sealed NatBatch frame of at most [`MAX_BATCH_RECORDS`](super::MAX_BATCH_RECORDS) records;
    /// refused in a session below [`NAT_BATCH_VERSION`].
    pub fn nat_batch(
        &mut self,
        full_sync: bool,
        last: bool,
        records: &[NatFlowRecord],
    ) -> Result<Vec<u8>, WireError> {
        if self.version < NAT_BATCH_VERSION {
            return Err(WireError::NotInVersion {
                what: "NatBatch",
                version: self.version,
            });
        }
        self.seal(|seq, out| encode_nat_batch(out, seq, full_sync, last, records))
    }

    /// A sealed ConfigDigest frame; refused in a session below
    /// [`CONFIG_DIGEST_VERSION`].
    pub fn config_digest(&mut self, vips: &[VipDigest]) -> Result<Vec<u8>, WireError> {
        if self.version < CONFIG_DIGEST_VERSION {
            return Err(WireError::NotInVersion {
                what: "ConfigDigest",
                version: self.version,
            });
        }
        self.seal(|seq, out| encode_config_digest(out, seq, vips))
    }

    /// A sealed BackendStates frame; refused in a session below
    /// [`BACKEND_STATES_VERSION`] (a peer of an earlier release keeps its
    /// own states), and for a record that breaks the encoding's rules.
    pub fn backend_states(&mut self, states: &[BackendStateRecord]) -> Result<Vec<u8>, WireError> {
        if self.version < BACKEND_STATES_VERSION {
            return Err(WireError::NotInVersion {
                what: "BackendStates",
                version: self.version,
            });
        }
        self.seal(|seq, out| encode_backend_states_message(out, seq, states))
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
    /// The session's protocol version.
    version: u16,
}

impl Opener {
    /// The sequence number the next frame must carry.
    #[cfg(test)]
    pub(crate) fn expected_seq(&self) -> u64 {
        self.expected_seq
    }

    /// Checks a sealed frame's body (tag, then sequence number) and
    /// decodes its message, a Batch, NatBatch, Heartbeat, ConfigDigest or
    /// BackendStates, each only at a version that has it. Never panics.
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
            Message::NatBatch { .. } if self.version < NAT_BATCH_VERSION => {
                return Err(WireError::NotInVersion {
                    what: decoded.kind(),
                    version: self.version,
                }
                .into())
            }
            Message::ConfigDigest { .. } if self.version < CONFIG_DIGEST_VERSION => {
                return Err(WireError::NotInVersion {
                    what: decoded.kind(),
                    version: self.version,
                }
                .into())
            }
            Message::BackendStates { .. } if self.version < BACKEND_STATES_VERSION => {
                return Err(WireError::NotInVersion {
                    what: decoded.kind(),
                    version: self.version,
                }
                .into())
            }
            Message::Batch { .. }
            | Message::NatBatch { .. }
            | Message::Heartbeat { .. }
            | Message::ConfigDigest { .. }
            | Message::BackendStates { .. } => {}
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
