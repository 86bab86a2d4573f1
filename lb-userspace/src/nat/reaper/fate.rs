//! What becomes of one entry: the pure judgement of a flow's state, idle
//! time and owner at a given time, apart from the walk of the table that
//! reads the entries and removes what this decides.

use std::time::Duration;

use lb_common::{
    consts::{FLOW_TOUCH_INTERVAL_NS, NAT_DIR_FORWARD, NAT_F_REPLIED},
    nat::NatFlowState,
    FlowKey, NatEntry,
};

use super::Owners;
use crate::config::NatTimeouts;

/// What becomes of an entry (and, when it goes, of its counterpart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Kept; a forward entry says its flow's state.
    Keep(Option<NatFlowState>),
    /// The flow was idle past its state's timeout.
    Expired(NatFlowState),
    /// The counterpart is missing and the entry is older than the SYN
    /// timeout.
    Orphan,
    /// Its backend is no longer one of its VIP's (or the VIP is gone or no
    /// longer NAT).
    BackendGone,
}

/// The idle timeout of a flow in `state`.
pub fn timeout_of(state: NatFlowState, timeouts: &NatTimeouts) -> Duration {
    match state {
        NatFlowState::TcpSynSent => timeouts.tcp_syn,
        NatFlowState::TcpEstablished => timeouts.tcp_established,
        NatFlowState::TcpClosing => timeouts.tcp_closing,
        NatFlowState::TcpTimeWait => timeouts.tcp_time_wait,
        NatFlowState::TcpClosed => timeouts.tcp_closed,
        NatFlowState::Udp => timeouts.udp,
    }
}

/// Idle time at `now_ns` of something last seen at `last_seen_ns` (zero
/// for a time in the future: a clock the reaper must not trust more).
fn idle(now_ns: u64, last_seen_ns: u64) -> Duration {
    Duration::from_nanos(now_ns.saturating_sub(last_seen_ns))
}

/// Whether an entry last seen at `last_seen_ns` has been quiet for longer
/// than `timeout` at `now_ns`. The data plane refreshes `last_seen_ns` at
/// most every `FLOW_TOUCH_INTERVAL_NS`, so an active flow's can be that
/// much old: the allowance is added (as the connection table's judgement
/// does), or a timeout as short as the configuration allows (1 s) would
/// free flows in use.
pub(super) fn quiet_past(now_ns: u64, last_seen_ns: u64, timeout: Duration) -> bool {
    idle(now_ns, last_seen_ns) > timeout + Duration::from_nanos(FLOW_TOUCH_INTERVAL_NS)
}

/// The fate of the entry `(key, entry)` whose counterpart is
/// `counterpart` (None: missing), at `now_ns` (CLOCK_MONOTONIC, the
/// data plane's clock). A reply entry with its counterpart is always
/// kept: its flow is judged from the forward entry.
pub fn fate(
    key: &FlowKey,
    entry: &NatEntry,
    counterpart: Option<&NatEntry>,
    now_ns: u64,
    timeouts: &NatTimeouts,
    owners: &Owners,
) -> Fate {
    if !owners.owns(key, entry) {
        return Fate::BackendGone;
    }
    let Some(other) = counterpart else {
        return if quiet_past(now_ns, entry.last_seen_ns, timeouts.tcp_syn) {
            Fate::Orphan
        } else {
            Fate::Keep(None)
        };
    };
    if entry.direction != NAT_DIR_FORWARD {
        return Fate::Keep(None);
    }
    let state = NatFlowState::of(key.proto, entry.flags, other.flags);
    let newest = entry.last_seen_ns.max(other.last_seen_ns);
    let mut timeout = timeout_of(state, timeouts);
    // Under pressure an unanswered flow goes sooner (`pressure`).
    let unanswered = other.flags & NAT_F_REPLIED == 0
        && matches!(state, NatFlowState::TcpSynSent | NatFlowState::Udp);
    if let Some(short) = timeouts.unreplied.filter(|_| unanswered) {
        timeout = timeout.min(short);
    }
    if quiet_past(now_ns, newest, timeout) {
        Fate::Expired(state)
    } else {
        Fate::Keep(Some(state))
    }
}
