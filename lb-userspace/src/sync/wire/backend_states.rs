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

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::ADDR_LEN;

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
