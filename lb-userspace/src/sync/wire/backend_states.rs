//! The BackendStates message (version 4): the operator's backend states
//! (drain, maintenance, enable) as the sending node holds them, each with
//! the time it was made, so that peers converge on the latest change
//! wherever it was made: a drain made on one node of a pair or a mesh
//! holds on the node that takes the traffic next.
//!
//! `7` BackendStates: `seq u64 | count u16 | count × (vip addr | port u16
//! | protocol u8 | backend addr | state u8 | flags u8 | changed_unix_ms
//! u64 | drain_started_unix_ms u64 | drain_deadline_unix_ms u64)`, count
//! ≤ [`MAX_BACKEND_STATES`]; state `0` enabled, `1` draining, `2`
//! maintenance; flags bit 0 [`FLAG_DRAIN_TIMED_OUT`]; a deadline of 0 is
//! none (never), and the drain times are 0 unless draining.
//!
//! Decoding refuses a record whose addresses are of two families, an
//! unknown state or flag bit, and drain times that do not fit the state
//! (any on a record not draining, a deadline without a start); encoding
//! refuses the same (and a deadline of `Some(0)`, which the wire cannot
//! tell from none), so what is sent always decodes.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{decode_addr, encode_addr, Reader, WireError, ADDR_LEN};

#[cfg(test)]
pub(crate) mod tests;

/// The first protocol version with BackendStates: a session at an older
/// one carries none (a peer of an earlier release keeps its own states).
pub const BACKEND_STATES_VERSION: u16 = 4;
/// Most backend states in one message (a node has at most 4,095
/// backends).
pub(crate) const MAX_BACKEND_STATES: usize = 4096;
/// Flag bit: in maintenance because a drain's timeout ended it.
pub(crate) const FLAG_DRAIN_TIMED_OUT: u8 = 0x01;
/// Bytes of one encoded [`BackendStateRecord`].
pub(crate) const BACKEND_STATE_LEN: usize = ADDR_LEN + 2 + 1 + ADDR_LEN + 1 + 1 + 3 * 8;

/// A backend's operator state as the sync protocol names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SharedState {
    /// Takes new flows (an operator enabled it, or undrained it).
    Enabled,
    /// Takes no new flows; its established flows continue.
    Draining,
    /// Out at once.
    Maintenance,
}

/// One backend's operator state on the sending node, with when an
/// operator made it: a receiver takes it when it is later than its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BackendStateRecord {
    /// The VIP's address.
    pub vip: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its IP protocol number.
    pub protocol: u8,
    /// The backend's address.
    pub backend: IpAddr,
    /// Its state.
    pub state: SharedState,
    /// When an operator made this state (wall clock, on the node where it
    /// was made; nodes that pass it on keep the time): the later change
    /// wins.
    pub changed_unix_ms: u64,
    /// When the drain started (draining only; 0 otherwise).
    pub drain_started_unix_ms: u64,
    /// When the drain's timeout ends it (draining only; None: never).
    pub drain_deadline_unix_ms: Option<u64>,
    /// In maintenance because a drain's timeout ended it.
    pub drain_timed_out: bool,
}

/// The wire byte of [`SharedState::Enabled`].
const STATE_ENABLED: u8 = 0;
/// The wire byte of [`SharedState::Draining`].
const STATE_DRAINING: u8 = 1;
/// The wire byte of [`SharedState::Maintenance`].
const STATE_MAINTENANCE: u8 = 2;

impl SharedState {
    /// The byte that names the state on the wire.
    pub(crate) const fn byte(self) -> u8 {
        match self {
            SharedState::Enabled => STATE_ENABLED,
            SharedState::Draining => STATE_DRAINING,
            SharedState::Maintenance => STATE_MAINTENANCE,
        }
    }

    /// The state a byte names; an unknown one is an error (a peer of a
    /// later release cannot send one at a version it does not have).
    pub(crate) fn from_byte(byte: u8) -> Result<Self, WireError> {
        match byte {
            STATE_ENABLED => Ok(SharedState::Enabled),
            STATE_DRAINING => Ok(SharedState::Draining),
            STATE_MAINTENANCE => Ok(SharedState::Maintenance),
            other => Err(WireError::UnknownBackendState(other)),
        }
    }
}

impl BackendStateRecord {
    /// Whether the record can be sent as it is and read back the same:
    /// one address family, drain times only when draining, a deadline
    /// only with a start, and never a deadline of 0 (none on the wire).
    pub(crate) fn check(&self) -> Result<(), WireError> {
        if self.vip.is_ipv4() != self.backend.is_ipv4() {
            return Err(WireError::MixedFamilies {
                what: "backend state",
            });
        }
        let draining = self.state == SharedState::Draining;
        let deadline = self.drain_deadline_unix_ms;
        if !draining && (self.drain_started_unix_ms != 0 || deadline.is_some()) {
            return Err(WireError::DrainTimes {
                why: "drain times on a record that is not draining",
            });
        }
        if deadline == Some(0) {
            return Err(WireError::DrainTimes {
                why: "a drain deadline of 0, which the wire cannot tell from none",
            });
        }
        if deadline.is_some() && self.drain_started_unix_ms == 0 {
            return Err(WireError::DrainTimes {
                why: "a drain deadline without a drain start",
            });
        }
        Ok(())
    }
}

/// Appends a BackendStates message's body after its type byte, checking
/// the count and every record first (see [`BackendStateRecord::check`]).
pub(super) fn encode_backend_states(
    out: &mut Vec<u8>,
    seq: u64,
    states: &[BackendStateRecord],
) -> Result<(), WireError> {
    let count = u16::try_from(states.len())
        .ok()
        .filter(|&n| usize::from(n) <= MAX_BACKEND_STATES)
        .ok_or(WireError::TooManyRecords {
            count: states.len(),
            max: MAX_BACKEND_STATES,
        })?;
    for state in states {
        state.check()?;
    }
    out.reserve(8 + 2 + states.len() * BACKEND_STATE_LEN);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    for state in states {
        encode_addr(out, state.vip);
        out.extend_from_slice(&state.port.to_be_bytes());
        out.push(state.protocol);
        encode_addr(out, state.backend);
        out.push(state.state.byte());
        out.push(if state.drain_timed_out {
            FLAG_DRAIN_TIMED_OUT
        } else {
            0
        });
        out.extend_from_slice(&state.changed_unix_ms.to_be_bytes());
        out.extend_from_slice(&state.drain_started_unix_ms.to_be_bytes());
        let deadline = state.drain_deadline_unix_ms.unwrap_or(0);
        out.extend_from_slice(&deadline.to_be_bytes());
    }
    Ok(())
}

/// Reads a BackendStates message's body after its type byte, checking
/// the count and the whole length before allocating for it, and each
/// record's values.
pub(super) fn decode_backend_states(
    r: &mut Reader<'_>,
) -> Result<(u64, Vec<BackendStateRecord>), WireError> {
    let seq = r.u64("backend states sequence number")?;
    let count = usize::from(r.u16("backend states count")?);
    if count > MAX_BACKEND_STATES {
        return Err(WireError::TooManyRecords {
            count,
            max: MAX_BACKEND_STATES,
        });
    }
    let needed = count.saturating_mul(BACKEND_STATE_LEN);
    if r.remaining() < needed {
        return Err(WireError::Truncated {
            what: "backend states",
            needed,
            available: r.remaining(),
        });
    }
    let mut states = Vec::with_capacity(count);
    for _ in 0..count {
        states.push(decode_backend_state(r)?);
    }
    Ok((seq, states))
}

/// Reads one record, refusing what [`BackendStateRecord::check`] refuses.
fn decode_backend_state(r: &mut Reader<'_>) -> Result<BackendStateRecord, WireError> {
    let vip = decode_addr(r, "backend state vip")?;
    let port = r.u16("backend state port")?;
    let protocol = r.u8("backend state protocol")?;
    let backend = decode_addr(r, "backend state backend")?;
    let state = SharedState::from_byte(r.u8("backend state")?)?;
    let flags = r.u8("backend state flags")?;
    if flags & !FLAG_DRAIN_TIMED_OUT != 0 {
        return Err(WireError::UnknownBackendStateFlags(flags));
    }
    let changed_unix_ms = r.u64("backend state change time")?;
    let drain_started_unix_ms = r.u64("backend state drain start")?;
    let deadline = r.u64("backend state drain deadline")?;
    let record = BackendStateRecord {
        vip,
        port,
        protocol,
        backend,
        state,
        changed_unix_ms,
        drain_started_unix_ms,
        drain_deadline_unix_ms: (deadline != 0).then_some(deadline),
        drain_timed_out: flags & FLAG_DRAIN_TIMED_OUT != 0,
    };
    record.check()?;
    Ok(record)
}
